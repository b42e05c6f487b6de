"""os-availability-zone: the zones of compute hosts (a zone is available while one of its
compute services is enabled), and with /detail every zone's hosts and services, the
other processes in Nova's `internal` zone."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.api.backend import PAGE
from services.api.requests import answer, iso
from services.common.settings import COMPUTE_BINARY

INTERNAL_ZONE = "internal"


async def _services(request: Request) -> list[Any]:
    backend = request.app.state.backend
    found: list[Any] = await backend.call(
        lambda: list(backend.registry.list_services(page_size=PAGE))
    )
    return found


def _compute_zones(services: list[Any]) -> dict[str, bool]:
    """Zone -> available, over compute services only (as Nova's list)."""
    zones: dict[str, bool] = {}
    for service in services:
        if service.binary == COMPUTE_BINARY:
            zone = service.availability_zone
            zones[zone] = zones.get(zone, False) or not service.disabled
    return zones


async def list_zones(request: Request) -> Response:
    zones = _compute_zones(await _services(request))
    return answer(
        {
            "availabilityZoneInfo": [
                {"zoneName": zone, "zoneState": {"available": available}, "hosts": None}
                for zone, available in sorted(zones.items(), key=lambda z: (not z[1], z[0]))
            ]
        }
    )


async def detail(request: Request) -> Response:
    services = await _services(request)
    zones = _compute_zones(services)
    hosts: dict[str, dict[str, dict[str, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for service in services:
        zone = service.availability_zone if service.binary == COMPUTE_BINARY else INTERNAL_ZONE
        hosts[zone][service.host][service.binary] = {
            "available": service.up,
            "active": not service.disabled,
            "updated_at": iso(service.last_seen_up) or iso(service.updated_at),
        }
    listed: list[dict[str, Any]] = []
    if INTERNAL_ZONE in hosts:
        listed.append(
            {
                "zoneName": INTERNAL_ZONE,
                "zoneState": {"available": True},
                "hosts": hosts[INTERNAL_ZONE],
            }
        )
    for zone, available in sorted(zones.items(), key=lambda z: (not z[1], z[0])):
        listed.append(
            {
                "zoneName": zone,
                "zoneState": {"available": available},
                "hosts": hosts[zone] if available else None,
            }
        )
    return answer({"availabilityZoneInfo": listed})


ROUTES = [
    ("/os-availability-zone", list_zones, ["GET"]),
    ("/os-availability-zone/detail", detail, ["GET"]),
]
