"""Targets, TLS options, the token and deadline interceptor, and errors that never reached a server."""

from __future__ import annotations

from types import SimpleNamespace

import grpc
import pytest
from berth.client import errors
from berth.client.channel import (
    _DefaultsInterceptor,
    open_channel,
    parse_target,
    translate_error,
)
from client_fakes import FakeRpcError


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("127.0.0.1:50051", ("127.0.0.1:50051", None)),
        ("grpc://registry:50051", ("registry:50051", False)),
        ("grpcs://registry.example:443", ("registry.example:443", True)),
        ("grpcs://registry.example:443/", ("registry.example:443", True)),
        ("[::1]:50051", ("[::1]:50051", None)),
        ("  localhost:1 ", ("localhost:1", None)),
    ],
)
def test_a_target_names_an_address_and_says_whether_tls_was_asked_for(target, expected):
    assert parse_target(target) == expected


@pytest.mark.parametrize(
    "target",
    ["", "registry", "registry:", ":50051", "registry:port", "registry:0", "registry:70000"],
)
def test_a_target_without_a_usable_port_is_refused_with_a_sentence(target):
    with pytest.raises(errors.InvalidArgument, match="host:port") as caught:
        parse_target(target)
    assert caught.value.violations[0].field == "target"


def test_a_target_with_an_unknown_scheme_is_refused_naming_the_scheme():
    with pytest.raises(errors.InvalidArgument, match="'http'"):
        parse_target("http://registry:50051")


def test_tls_files_on_an_explicitly_plaintext_target_are_refused():
    with pytest.raises(errors.InvalidArgument, match="grpcs://"):
        open_channel("grpc://registry:50051", tls_ca_file="/etc/ca.pem")


def test_a_client_certificate_without_its_key_is_refused():
    with pytest.raises(errors.InvalidArgument, match="key"):
        open_channel("grpcs://registry:50051", tls_cert_file="/etc/cert.pem")


def test_an_unreadable_ca_file_is_named_in_the_error(tmp_path):
    missing = tmp_path / "nope.pem"
    with pytest.raises(errors.InvalidArgument, match=r"nope\.pem") as caught:
        open_channel("registry:50051", tls_ca_file=str(missing))
    assert caught.value.violations[0].field == "tls_ca_file"


def test_opening_a_channel_touches_no_network():
    # grpc connects lazily, on the first call; open and close must work with no server.
    channel = open_channel("127.0.0.1:1", token="t")
    channel.close()


def details(timeout=None, metadata=None):
    return SimpleNamespace(
        method="/berth.v1.RegistryService/GetService",
        timeout=timeout,
        metadata=metadata,
        credentials=None,
        wait_for_ready=None,
        compression=None,
    )


def capture():
    seen = []

    def continuation(call_details, request):
        seen.append(call_details)
        return "outcome"

    return seen, continuation


def test_the_interceptor_adds_the_bearer_token_and_the_default_deadline_to_unary_calls():
    seen, continuation = capture()
    interceptor = _DefaultsInterceptor([("authorization", "Bearer s3cret")], 10.0)

    assert interceptor.intercept_unary_unary(continuation, details(), object()) == "outcome"

    assert seen[0].metadata == [("authorization", "Bearer s3cret")]
    assert seen[0].timeout == 10.0
    assert isinstance(seen[0], grpc.ClientCallDetails)


def test_the_interceptor_keeps_the_callers_deadline_and_metadata():
    seen, continuation = capture()
    interceptor = _DefaultsInterceptor([("authorization", "Bearer t")], 10.0)

    interceptor.intercept_unary_unary(
        continuation, details(timeout=2.5, metadata=[("x-request-id", "r1")]), object()
    )

    assert seen[0].timeout == 2.5
    assert seen[0].metadata == [("x-request-id", "r1"), ("authorization", "Bearer t")]


def test_the_interceptor_gives_server_streams_no_default_deadline_so_watches_stay_open():
    seen, continuation = capture()

    _DefaultsInterceptor([], 10.0).intercept_unary_stream(continuation, details(), object())

    assert seen[0].timeout is None


def refused():
    return FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:50051: "
        "Failed to connect to remote host: Connection refused",
    )


def test_a_refused_connection_becomes_a_sentence_naming_the_server_and_address():
    error = translate_error(refused(), server="registry", target="127.0.0.1:50051")

    assert isinstance(error, errors.Unavailable)
    assert str(error) == "cannot reach the registry at 127.0.0.1:50051: connection refused"
    assert error.reason == "UNREACHABLE"


def test_a_connection_lost_during_a_call_says_the_call_may_have_been_carried_out():
    reset = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "recvmsg:Connection reset by peer")

    error = translate_error(reset, server="compute agent", target="127.0.0.1:50054")

    assert isinstance(error, errors.Unavailable)
    assert error.reason == "CONNECTION_LOST"
    assert str(error) == (
        "lost the connection to the compute agent at 127.0.0.1:50054 during the call "
        "(connection reset); it may have been carried out"
    )


def test_a_reset_while_connecting_never_reached_the_server():
    raw = FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:50054: "
        "recvmsg:Connection reset by peer",
    )

    error = translate_error(raw, server="compute agent", target="127.0.0.1:50054")

    assert error.reason == "UNREACHABLE"
    assert str(error) == "cannot reach the compute agent at 127.0.0.1:50054: connection reset"


def test_an_unknown_host_name_is_said_plainly():
    raw = FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "errors resolving nope.invalid:50051: [field:hostname lookup error:Domain name not found]",
    )

    error = translate_error(raw, server="registry", target="nope.invalid:50051")

    assert str(error) == "cannot reach the registry at nope.invalid:50051: unknown host name"


def test_a_client_side_deadline_says_how_long_it_waited():
    raw = FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    error = translate_error(raw, server="registry", target="r:50051", timeout=10.0)

    assert isinstance(error, errors.DeadlineExceeded)
    assert str(error) == "the registry at r:50051 did not answer within 10 s"


def test_an_unavailable_sent_by_the_server_keeps_the_servers_sentence_and_reason():
    sent = errors.Unavailable("the database is not reachable", reason="DATABASE_UNAVAILABLE")

    error = translate_error(FakeRpcError.from_berth(sent), server="registry", target="r:1")

    assert str(error) == "the database is not reachable"
    assert error.reason == "DATABASE_UNAVAILABLE"


def test_other_errors_pass_through_as_their_typed_class():
    sent = errors.NotFound("no aggregate 'rack9'")

    error = translate_error(FakeRpcError.from_berth(sent), server="registry", target="r:1")

    assert isinstance(error, errors.NotFound)
    assert str(error) == "no aggregate 'rack9'"
