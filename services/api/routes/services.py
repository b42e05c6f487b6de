"""os-services: Berth's processes as Nova lists them, enabled / disabled, forced down,
deleted. From 2.53 a service is named by its uuid; before, by host and binary (and an
integer id)."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from berth.v1 import registry_pb2 as pb
from starlette.requests import Request
from starlette.responses import Response

from services.api.backend import PAGE
from services.api.faults import Fault
from services.api.requests import answer, at_least, body, iso

_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
_REASON = {"type": "string", "minLength": 1, "maxLength": 255}

# PUT /os-services/{uuid} (2.53+).
UPDATE = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["enabled", "disabled"]},
        "disabled_reason": _REASON,
        "forced_down": {"type": "boolean"},
    },
    "additionalProperties": False,
}
# PUT /os-services/{enable,disable,disable-log-reason,force-down} (before 2.53).
LEGACY: dict[str, dict[str, Any]] = {
    "enable": {"host": _NAME, "binary": _NAME},
    "disable": {"host": _NAME, "binary": _NAME},
    "disable-log-reason": {"host": _NAME, "binary": _NAME, "disabled_reason": _REASON},
    "force-down": {"host": _NAME, "binary": _NAME, "forced_down": {"type": "boolean"}},
}


def view(request: Request, service: pb.Service) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": service.uuid if at_least(request, "2.53") else service.id,
        "binary": service.binary,
        "host": service.host,
        "zone": service.availability_zone,
        "status": "disabled" if service.disabled else "enabled",
        "state": "up" if service.up else "down",
        # Nova's updated_at moves with every heartbeat; Berth's last heartbeat is the same.
        "updated_at": iso(service.last_seen_up) or iso(service.updated_at),
        "disabled_reason": service.disabled_reason or None,
    }
    if at_least(request, "2.11"):
        shown["forced_down"] = service.forced_down
    return shown


async def list_services(request: Request) -> Response:
    backend = request.app.state.backend
    host = request.query_params.get("host", "")
    binary = request.query_params.get("binary", "")
    services = await backend.call(
        lambda: list(backend.registry.list_services(host=host, binary=binary, page_size=PAGE))
    )
    return answer({"services": [view(request, s) for s in services]})


async def update(request: Request) -> Response:
    """PUT /os-services/{service_id}: the 2.53 form (a uuid), or before it the legacy
    actions (`enable`, `disable`, `disable-log-reason`, `force-down`)."""
    target = request.path_params["service_id"]
    if at_least(request, "2.53"):
        return await _update_by_uuid(request, _uuid(target))
    return await _legacy_update(request, target)


async def _update_by_uuid(request: Request, uuid: str) -> Response:
    data = await body(request, UPDATE)
    if not data:
        raise Fault(
            400, "No updates were requested. Fields 'status' or 'forced_down' should be specified."
        )
    status = data.get("status")
    if "disabled_reason" in data and status != "disabled":
        raise Fault(400, "Specifying 'disabled_reason' with status 'enabled' is invalid.")
    if "status" not in data and "forced_down" not in data:
        raise Fault(
            400, "No updates were requested. Fields 'status' or 'forced_down' should be specified."
        )
    backend = request.app.state.backend
    service = await backend.call(
        backend.registry.update_service,
        uuid,
        disabled=None if status is None else status == "disabled",
        disabled_reason=data.get("disabled_reason", ""),
        forced_down=data.get("forced_down"),
    )
    return answer({"service": view(request, service)})


async def _legacy_update(request: Request, action: str) -> Response:
    if action not in LEGACY or (action == "force-down" and not at_least(request, "2.11")):
        raise Fault(404, f"Unknown action {action!r}")
    fields = LEGACY[action]
    data = await body(
        request,
        {
            "type": "object",
            "properties": fields,
            "required": list(fields),
            "additionalProperties": False,
        },
    )
    backend = request.app.state.backend
    host, binary = data["host"], data["binary"]
    if action == "force-down":
        service = await backend.call(
            backend.registry.update_service,
            host=host,
            binary=binary,
            forced_down=data["forced_down"],
        )
        return answer(
            {"service": {"binary": binary, "host": host, "forced_down": service.forced_down}}
        )
    service = await backend.call(
        backend.registry.update_service,
        host=host,
        binary=binary,
        disabled=action != "enable",
        disabled_reason=data.get("disabled_reason", ""),
    )
    shown = {
        "binary": binary,
        "host": host,
        "status": "disabled" if service.disabled else "enabled",
    }
    if action == "disable-log-reason":
        shown["disabled_reason"] = service.disabled_reason
    return answer({"service": shown})


async def delete(request: Request) -> Response:
    """DELETE /os-services/{id}: refused (409) while the host's nodes have instances."""
    backend = request.app.state.backend
    target = request.path_params["service_id"]
    if at_least(request, "2.53"):
        uuid = _uuid(target)
    else:
        uuid = await _uuid_of_id(request, target)
    await backend.call(backend.registry.delete_service, uuid)
    return Response(status_code=204)


def _uuid(text: str) -> str:
    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        raise Fault(400, f"Invalid uuid {text}") from None


async def _uuid_of_id(request: Request, text: str) -> str:
    """Before 2.53 a service is named by its integer id."""
    if not text.isdigit():
        raise Fault(400, f"Service id {text} is not an integer")
    backend = request.app.state.backend
    services = await backend.call(lambda: list(backend.registry.list_services(page_size=PAGE)))
    for service in services:
        if service.id == int(text):
            return str(service.uuid)
    raise Fault(404, f"Service {text} could not be found.")


ROUTES = [
    ("/os-services", list_services, ["GET"]),
    ("/os-services/{service_id}", update, ["PUT"]),
    ("/os-services/{service_id}", delete, ["DELETE"]),
]
