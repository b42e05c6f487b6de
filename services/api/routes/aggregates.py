"""os-aggregates: host aggregates and the zones they define, named by Nova's integer id
(and shown with their uuid from 2.41)."""

from __future__ import annotations

from typing import Any

from berth.v1 import registry_pb2 as pb
from starlette.requests import Request
from starlette.responses import Response

from services.api.backend import PAGE
from services.api.faults import Fault
from services.api.requests import answer, at_least, body, iso

_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
# Nova allows null for "no zone".
_ZONE = {"type": ["string", "null"], "minLength": 1, "maxLength": 255}
_HOST = {
    "type": "object",
    "properties": {"host": _NAME},
    "required": ["host"],
    "additionalProperties": False,
}

CREATE = {
    "type": "object",
    "properties": {
        "aggregate": {
            "type": "object",
            "properties": {"name": _NAME, "availability_zone": _ZONE},
            "required": ["name"],
            "additionalProperties": False,
        }
    },
    "required": ["aggregate"],
    "additionalProperties": False,
}
UPDATE = {
    "type": "object",
    "properties": {
        "aggregate": {
            "type": "object",
            "properties": {"name": _NAME, "availability_zone": _ZONE},
            "additionalProperties": False,
            "anyOf": [{"required": ["name"]}, {"required": ["availability_zone"]}],
        }
    },
    "required": ["aggregate"],
    "additionalProperties": False,
}
ACTION = {
    "type": "object",
    "properties": {
        "add_host": _HOST,
        "remove_host": _HOST,
        "set_metadata": {
            "type": "object",
            "properties": {
                "metadata": {
                    "type": "object",
                    "patternProperties": {
                        "^[a-zA-Z0-9-_:. ]{1,255}$": {"type": ["string", "null"], "maxLength": 255}
                    },
                    "additionalProperties": False,
                }
            },
            "required": ["metadata"],
            "additionalProperties": False,
        },
    },
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
}


def view(request: Request, aggregate: pb.Aggregate, *, full: bool = True) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": aggregate.id,
        "name": aggregate.name,
        "availability_zone": aggregate.availability_zone or None,
        "created_at": iso(aggregate.created_at),
        "updated_at": iso(aggregate.updated_at),
        "deleted": False,
        "deleted_at": None,
    }
    if full:
        shown["hosts"] = list(aggregate.hosts)
        shown["metadata"] = dict(aggregate.metadata)
    if at_least(request, "2.41"):
        shown["uuid"] = aggregate.uuid
    return shown


def _id(request: Request) -> int:
    text = request.path_params["aggregate_id"]
    if not text.isdigit():
        raise Fault(400, f"Aggregate ID {text} must be an integer.")
    return int(text)


async def list_aggregates(request: Request) -> Response:
    backend = request.app.state.backend
    found = await backend.call(lambda: list(backend.registry.list_aggregates(page_size=PAGE)))
    return answer({"aggregates": [view(request, a) for a in sorted(found, key=lambda a: a.id)]})


async def create(request: Request) -> Response:
    data = (await body(request, CREATE))["aggregate"]
    backend = request.app.state.backend
    made = await backend.call(
        backend.registry.create_aggregate, data["name"].strip(), data.get("availability_zone") or ""
    )
    return answer({"aggregate": view(request, made, full=False)})


async def show(request: Request) -> Response:
    backend = request.app.state.backend
    found = await backend.call(backend.registry.get_aggregate, _id(request))
    return answer({"aggregate": view(request, found)})


async def update(request: Request) -> Response:
    data = (await body(request, UPDATE))["aggregate"]
    backend = request.app.state.backend
    zone = data.get("availability_zone", ...)
    changed = await backend.call(
        backend.registry.update_aggregate,
        _id(request),
        name=data.get("name", "").strip(),
        availability_zone=None if zone is ... else (zone or ""),
    )
    return answer({"aggregate": view(request, changed)})


async def delete(request: Request) -> Response:
    backend = request.app.state.backend
    await backend.call(backend.registry.delete_aggregate, _id(request))
    return Response(status_code=200)


async def action(request: Request) -> Response:
    """POST /os-aggregates/{id}/action: add_host, remove_host or set_metadata."""
    data = await body(request, ACTION)
    backend = request.app.state.backend
    ref = _id(request)
    ((name, argument),) = data.items()
    if name == "add_host":
        changed = await backend.call(backend.registry.add_aggregate_host, ref, argument["host"])
    elif name == "remove_host":
        changed = await backend.call(backend.registry.remove_aggregate_host, ref, argument["host"])
    else:
        metadata = {key: value or "" for key, value in argument["metadata"].items()}
        if not metadata:
            changed = await backend.call(backend.registry.get_aggregate, ref)
        else:
            changed = await backend.call(backend.registry.set_aggregate_metadata, ref, metadata)
    return answer({"aggregate": view(request, changed)})


ROUTES = [
    ("/os-aggregates", list_aggregates, ["GET"]),
    ("/os-aggregates", create, ["POST"]),
    ("/os-aggregates/{aggregate_id}", show, ["GET"]),
    ("/os-aggregates/{aggregate_id}", update, ["PUT"]),
    ("/os-aggregates/{aggregate_id}", delete, ["DELETE"]),
    ("/os-aggregates/{aggregate_id}/action", action, ["POST"]),
]
