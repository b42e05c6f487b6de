"""os-hosts (below 2.43, as in Nova): the hosts and their services, a host's resources in
total, in use and per project, enabling or disabling a host, its maintenance mode (Berth
moves its instances to other hosts of its aggregates) and power actions."""

from __future__ import annotations

from typing import Any

from berth.client.errors import DeadlineExceeded
from berth.client.host import POWER_ACTIONS
from berth.v1 import host_pb2 as pb
from starlette.requests import Request
from starlette.responses import Response

from services.api.faults import Fault
from services.api.requests import answer, at_least, body

UPDATE = {
    "type": "object",
    "properties": {
        "status": {
            "type": "string",
            "enum": ["enable", "disable", "Enable", "Disable", "ENABLE", "DISABLE"],
        },
        "maintenance_mode": {
            "type": "string",
            "enum": ["enable", "disable", "Enable", "Disable", "ENABLE", "DISABLE"],
        },
    },
    "anyOf": [{"required": ["status"]}, {"required": ["maintenance_mode"]}],
    "additionalProperties": False,
}


_STATUS = {"enable": pb.HOST_STATUS_ENABLED, "disable": pb.HOST_STATUS_DISABLED}
_MAINTENANCE = {"enable": pb.MAINTENANCE_MODE_ENABLED, "disable": pb.MAINTENANCE_MODE_DISABLED}


def _gone(request: Request) -> None:
    if at_least(request, "2.43"):
        raise Fault(404, "os-hosts is gone from 2.43; use os-services and os-hypervisors.")


async def list_hosts(request: Request) -> Response:
    _gone(request)
    backend = request.app.state.backend
    zone = request.query_params.get("zone", "")
    hosts = await backend.call(lambda: list(backend.hosts.list_hosts(zone=zone)))
    return answer(
        {"hosts": [{"host_name": h.host_name, "service": h.service, "zone": h.zone} for h in hosts]}
    )


async def show(request: Request) -> Response:
    _gone(request)
    backend = request.app.state.backend
    rows = await backend.call(backend.hosts.describe_host, request.path_params["host"])
    return answer(
        {
            "host": [
                {
                    "resource": {
                        "host": row.host,
                        "project": row.project,
                        "cpu": row.resources.vcpus,
                        "memory_mb": row.resources.memory_mb,
                        "disk_gb": row.resources.disk_gb,
                    }
                }
                for row in rows
            ]
        }
    )


async def update(request: Request) -> Response:
    """PUT /os-hosts/{host}: `status` enables or disables the host's compute service;
    `maintenance_mode` enters maintenance (the host's instances move within its aggregates)
    or leaves it. The answer comes when the moves are done, or when the API's deadline
    for one call passes first: the moves then go on (`berth migration-list`)."""
    _gone(request)
    data = await body(request, UPDATE)
    host = request.path_params["host"]
    status = data.get("status", "").lower()
    mode = data.get("maintenance_mode", "").lower()
    backend = request.app.state.backend

    # The registry takes one change per call; Nova's PUT may carry both (status first).
    changes: list[dict[str, Any]] = []
    if status:
        changes.append({"status": _STATUS[status]})
    if mode:
        changes.append({"maintenance_mode": _MAINTENANCE[mode]})

    def run(change: dict[str, Any]) -> pb.UpdateHostResponse | None:
        last = None
        try:
            for progress in backend.hosts.update_host(host, **change):
                last = progress
        except DeadlineExceeded:
            if last is None:
                raise
        return last

    last: pb.UpdateHostResponse | None = None
    for change in changes:
        last = await backend.call(run, change)
    if last is None:
        raise Fault(
            503, f"The registry ended the update of host {host} without an answer; ask again."
        )
    shown: dict[str, Any] = {"host": last.host}
    if status:
        shown["status"] = "enabled" if last.status == pb.HOST_STATUS_ENABLED else "disabled"
    if mode:
        shown["maintenance_mode"] = (
            "on_maintenance"
            if last.maintenance_mode == pb.MAINTENANCE_MODE_ENABLED
            else "off_maintenance"
        )
    return answer(shown)


async def power(request: Request) -> Response:
    _gone(request)
    action = request.path_params["action"]
    host = request.path_params["host"]
    if action not in POWER_ACTIONS:
        raise Fault(404, f"Unknown host action {action!r}; Nova's are {', '.join(POWER_ACTIONS)}.")
    backend = request.app.state.backend
    await backend.call(backend.hosts.host_action, host, action)
    return answer({"host": host, "power_action": action})


ROUTES = [
    ("/os-hosts", list_hosts, ["GET"]),
    ("/os-hosts/{host}", show, ["GET"]),
    ("/os-hosts/{host}", update, ["PUT"]),
    ("/os-hosts/{host}/{action:str}", power, ["GET"]),
]
