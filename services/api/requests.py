"""What every endpoint reads from a request: its microversion, its JSON body checked
against the endpoint's schema (Nova's checks, Nova's messages), query parameters, and
the address links are built from."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import jsonschema
from google.protobuf.timestamp_pb2 import Timestamp
from jsonschema.exceptions import best_match
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.api.faults import Fault
from services.api.microversions import Version


def version(request: Request) -> Version:
    """The microversion the middleware read off this request."""
    found: Version = request.state.version
    return found


def at_least(request: Request, text: str) -> bool:
    return version(request) >= Version.of(text)


async def body(request: Request, schema: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON body, valid against `schema`; anything else answers 400 with
    what is wrong, before anything is changed."""
    limit: int = request.app.state.settings.max_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():  # a body without a length is bounded too
        size += len(chunk)
        if size > limit:
            raise Fault(413, "Request is too large.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise Fault(400, "The request body is empty; send a JSON object.")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Fault(400, f"Malformed request body: {exc}") from None
    error = best_match(jsonschema.Draft4Validator(schema).iter_errors(data))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path)
        value = error.instance if not isinstance(error.instance, (dict, list)) else "..."
        if where:
            message = f"Invalid input for field/attribute {where}. Value: {value}. {error.message}"
        else:
            message = f"Invalid input in the request body: {error.message}"
        raise Fault(400, message[:1000])
    result: dict[str, Any] = data
    return result


def query_int(request: Request, name: str, *, minimum: int = 0) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise Fault(400, f"Invalid value {text!r} for '{name}': it must be an integer.") from None
    if value < minimum:
        raise Fault(400, f"Invalid value {value} for '{name}': it must be {minimum} or more.")
    return value


def query_bool(request: Request, name: str) -> bool:
    text = request.query_params.get(name, "false").strip().lower()
    if text in ("1", "true", "yes", "on", "t", "y"):
        return True
    if text in ("0", "false", "no", "off", "f", "n", ""):
        return False
    raise Fault(400, f"Invalid value {text!r} for '{name}': it must be a boolean.")


def base_url(request: Request) -> str:
    """`http://host:port` as clients reach the API (BERTH_PUBLIC_URL, else the request's)."""
    configured: str = request.app.state.settings.public_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


def link(request: Request, *path: str) -> list[dict[str, str]]:
    """Nova's self and bookmark links of a resource."""
    tail = "/".join(path)
    root = base_url(request)
    return [
        {"href": f"{root}/v2.1/{tail}", "rel": "self"},
        {"href": f"{root}/{tail}", "rel": "bookmark"},
    ]


def iso(stamp: Timestamp, *, seconds_only: bool = False) -> str | None:
    """A proto timestamp as Nova writes times (naive UTC, microseconds); unset is None."""
    if not stamp.seconds and not stamp.nanos:
        return None
    moment = stamp.ToDatetime(tzinfo=UTC).replace(tzinfo=None)
    return (
        moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        if seconds_only
        else moment.isoformat(timespec="microseconds")
    )


def answer(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status)


def paged(
    request: Request, items: list[Any], key: str, *, collection: str
) -> tuple[list[Any], list[dict[str, str]]]:
    """Nova's `limit` / `marker` paging over `items` (already in order); `key(item)` is what
    a marker names. A next link when a limit cut the list short."""
    limit = query_int(request, "limit", minimum=0)
    marker = request.query_params.get("marker")
    start = 0
    if marker is not None:
        keys = [str(item[key]) for item in items]
        if marker not in keys:
            raise Fault(400, f"marker [{marker}] not found")
        start = keys.index(marker) + 1
    if limit is None:
        return items[start:], []
    page = items[start : start + limit]
    links = []
    if page and start + limit < len(items):
        links = [
            {
                "href": f"{base_url(request)}/v2.1/{collection}?limit={limit}&marker={page[-1][key]}",
                "rel": "next",
            }
        ]
    return page, links
