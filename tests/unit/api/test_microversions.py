"""Which microversion a request asks for, and how Berth's errors read in Nova's shape."""

from __future__ import annotations

import pytest
from berth.client.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)

from services.api import microversions
from services.api.faults import Fault, from_berth
from services.api.microversions import MAX, MIN, Version


def asked(**headers: str) -> Version:
    return microversions.requested({k.lower().replace("_", "-"): v for k, v in headers.items()})


def test_no_header_is_the_minimum_and_latest_the_maximum():
    assert asked() == MIN == Version(2, 1)
    assert asked(OpenStack_API_Version="compute latest") == MAX


def test_the_new_header_wins_and_names_its_service():
    assert asked(OpenStack_API_Version="compute 2.53") == Version(2, 53)
    assert asked(OpenStack_API_Version="volume 3.1, compute 2.60") == Version(2, 60)
    assert asked(X_OpenStack_Nova_API_Version="2.11") == Version(2, 11)
    both = asked(OpenStack_API_Version="compute 2.88", X_OpenStack_Nova_API_Version="2.11")
    assert both == Version(2, 88)
    # Another service's version only: the legacy header or the minimum.
    assert asked(OpenStack_API_Version="volume 3.1") == MIN


def test_versions_compare_as_numbers_not_text():
    assert Version.of("2.9") < Version.of("2.10") < Version.of("2.88")


@pytest.mark.parametrize(
    ("text", "status"),
    [("2.x", 400), ("2", 400), ("2.01", 400), ("3.0", 406), ("2.0", 406), ("2.89", 406)],
)
def test_a_bad_or_unserved_version_is_refused(text: str, status: int):
    with pytest.raises(Fault) as raised:
        asked(OpenStack_API_Version=f"compute {text}")
    assert raised.value.status == status


def test_answers_name_the_version_they_were_served_at():
    headers = microversions.response_headers(Version(2, 53))
    assert headers["OpenStack-API-Version"] == "compute 2.53"
    assert headers["X-OpenStack-Nova-API-Version"] == "2.53"
    assert "OpenStack-API-Version" in headers["Vary"]


@pytest.mark.parametrize(
    ("error", "status", "name"),
    [
        (NotFound("no host"), 404, "itemNotFound"),
        (AlreadyExists("taken"), 409, "conflict"),
        (FailedPrecondition("has instances"), 409, "conflict"),
        (ResourceExhausted("no room"), 409, "conflict"),
        (PermissionDenied("no"), 403, "forbidden"),
        (Unavailable("down"), 503, "serviceUnavailable"),
        (Internal("boom"), 500, "computeFault"),
    ],
)
def test_berths_errors_become_novas(error, status: int, name: str):
    fault = from_berth(error)
    assert fault.status == status
    assert list(fault.body()) == [name]
    # Berth's sentence says what to do; an internal one says only where to look.
    assert fault.body()[name]["message"] == (error.message if status != 500 else fault.message)
