"""A BerthError sent by a server comes back from from_rpc_error as the same typed error."""

from __future__ import annotations

import grpc
import pytest
from berth.client import errors
from client_fakes import FakeRpcError


@pytest.mark.parametrize(
    "error",
    [
        errors.NotFound("no service berth-compute on host h1"),
        errors.AlreadyExists("aggregate 'rack1' exists"),
        errors.FailedPrecondition("aggregate 'rack1' still has hosts", reason="NOT_EMPTY"),
        errors.Aborted("stale snapshot", reason="STALE_SNAPSHOT", metadata={"seq": "4"}),
        errors.ResourceExhausted("no node can hold 64 GiB"),
        errors.Unimplemented("host-describe needs the node service"),
        errors.Unauthenticated("the bearer token is not known", reason="BAD_CREDENTIALS"),
        errors.PermissionDenied("reader may not update services"),
        errors.Unavailable("database is down", reason="DATABASE_UNAVAILABLE"),
        errors.DeadlineExceeded("the node service did not answer"),
        errors.Internal("unexpected error, request id abc"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_each_error_comes_back_as_its_own_class_with_message_reason_and_metadata(error):
    back = errors.from_rpc_error(FakeRpcError.from_berth(error))

    assert type(back) is type(error)
    assert back.message == error.message
    assert back.reason == error.reason
    assert back.metadata == error.metadata
    assert back.code == error.code


def test_field_violations_survive_the_round_trip():
    error = errors.InvalidArgument(
        "bad request",
        violations=[
            errors.FieldViolation("service.key.host", "must not be empty"),
            errors.FieldViolation("page_size", "must not be negative"),
        ],
    )

    back = errors.from_rpc_error(FakeRpcError.from_berth(error))

    assert isinstance(back, errors.InvalidArgument)
    assert back.violations == error.violations


def test_a_call_without_status_details_still_maps_by_code():
    back = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "Method not found!"))

    assert isinstance(back, errors.NotFound)
    assert back.message == "Method not found!"
    assert back.reason == "NOT_FOUND"


def test_a_code_without_its_own_class_becomes_a_plain_berth_error_keeping_the_code():
    back = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.CANCELLED, "Cancelled"))

    assert type(back) is errors.BerthError
    assert back.code is grpc.StatusCode.CANCELLED
