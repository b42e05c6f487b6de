"""Compute API microversions: which one a request asks for, and the version documents.

A client names a version with `OpenStack-API-Version: compute 2.53` (or the older
`X-OpenStack-Nova-API-Version: 2.53`); none means 2.1, `latest` the highest served. Every
response says which version answered it, as Nova's does."""

from __future__ import annotations

import re
from typing import NamedTuple

from services.api.faults import Fault


class Version(NamedTuple):
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def of(cls, text: str) -> Version:
        major, minor = text.split(".")
        return cls(int(major), int(minor))


MIN = Version(2, 1)
# The highest microversion whose shapes berth-api serves for every endpoint it has:
# hypervisors as 2.88 (no statistics, no resource fields), services with uuids (2.53+),
# aggregates with uuids (2.41+), flavors with descriptions and extra specs (2.55, 2.61),
# servers as 2.75 and later show them.
MAX = Version(2, 88)
# When the v2.1 API came out (Nova's constant).
UPDATED = "2013-07-23T11:33:21Z"

HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
_FORMAT = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


def requested(headers: dict[str, str]) -> Version:
    """The version the headers ask for: 400 for one that is not N.N, 406 for one outside
    MIN..MAX."""
    text = None
    for part in headers.get(HEADER.lower(), "").split(","):
        service, _, value = part.strip().partition(" ")
        if service.lower() == "compute":
            text = value.strip()
    if text is None:
        text = headers.get(LEGACY_HEADER.lower(), "").strip() or None
    if text is None:
        return MIN
    if text.lower() == "latest":
        return MAX
    match = _FORMAT.match(text)
    if match is None:
        raise Fault(
            400,
            f"API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum.",
        )
    version = Version(int(match.group(1)), int(match.group(2)))
    if not MIN <= version <= MAX:
        raise Fault(
            406,
            f"Version {version} is not supported by the API. Minimum is {MIN} and maximum is {MAX}.",
        )
    return version


def response_headers(version: Version) -> dict[str, str]:
    return {
        HEADER: f"compute {version}",
        LEGACY_HEADER: str(version),
        "Vary": f"{HEADER}, {LEGACY_HEADER}",
    }


def v21_document(base_url: str) -> dict[str, object]:
    """The v2.1 version as `GET /` lists it and `GET /v2.1/` shows it."""
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": str(MAX),
        "min_version": str(MIN),
        "updated": UPDATED,
        "links": [{"href": f"{base_url}/v2.1/", "rel": "self"}],
    }


def show_document(base_url: str) -> dict[str, object]:
    """`GET /v2.1/`: the version with its documentation link and media types."""
    document = v21_document(base_url)
    document["links"] = [
        {"href": f"{base_url}/v2.1/", "rel": "self"},
        {"href": "http://docs.openstack.org/", "rel": "describedby", "type": "text/html"},
    ]
    document["media-types"] = [
        {"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}
    ]
    return {"version": document}
