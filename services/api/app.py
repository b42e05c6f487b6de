"""The ASGI application: Nova's URL map over the route modules, each request's
microversion, credentials and size checked first, every answer in Nova's shape with the
version it was served at, and a log line and metrics for each."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from berth.cli.health import SERVING, channel_health
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from services.api import access, microversions
from services.api.backend import Backend
from services.api.faults import Fault
from services.api.metrics import REQUESTS, SECONDS
from services.api.requests import answer, base_url
from services.api.routes import aggregates, flavors, hosts, hypervisors, servers, services, zones
from services.api.settings import ApiSettings
from services.common.auth import TokenTable

log = logging.getLogger("berth.api")

RESOURCES = (services, hypervisors, hosts, aggregates, zones, flavors, servers)
# How long /readyz waits for each Berth service's health answer.
READY_TIMEOUT = 2.0


async def versions(request: Request) -> Response:
    return answer({"versions": [microversions.v21_document(base_url(request))]})


async def version(request: Request) -> Response:
    return answer(microversions.show_document(base_url(request)))


async def healthz(request: Request) -> Response:
    return answer({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready while the registry and the node service answer their health checks."""
    backend: Backend = request.app.state.backend

    found = {
        "registry": await anyio.to_thread.run_sync(
            channel_health, backend.registry.channel, READY_TIMEOUT
        ),
        "node": await anyio.to_thread.run_sync(channel_health, backend.node.channel, READY_TIMEOUT),
    }
    ready = all(status == SERVING for status in found.values())
    shown = {
        name: "serving" if status == SERVING else "not serving" for name, status in found.items()
    }
    return JSONResponse({"ready": ready, **shown}, status_code=200 if ready else 503)


def _api_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [Route("/", version, methods=["GET"])]
    for module in RESOURCES:
        routes += [
            Route(path, endpoint, methods=methods) for path, endpoint, methods in module.ROUTES
        ]
    return routes


class ComputeApi(BaseHTTPMiddleware):
    """Per request: an id, the microversion, the caller, the body's size; then the answer
    with the version headers, a log line and the metrics."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        request_id = f"req-{uuid.uuid4()}"
        request.state.request_id = request_id
        request.state.version = microversions.MIN
        caller = request.state.caller = "anonymous"
        path = request.url.path.rstrip("/")
        versioned = path.startswith("/v2.1/")
        try:
            if versioned:
                request.state.version = microversions.requested(request.headers)  # type: ignore[arg-type]
            if path not in ("", "/healthz", "/readyz", "/v2.1"):
                caller = request.state.caller = access.check(request.app.state.tokens, request)
            length = request.headers.get("content-length", "0")
            if length.isdigit() and int(length) > request.app.state.settings.max_body_bytes:
                raise Fault(413, "Request is too large.")
            response = await call_next(request)
        except Fault as fault:
            response = JSONResponse(fault.body(), status_code=fault.status)
        except Exception:
            log.exception(
                "unexpected error", extra={"request_id": request_id, "path": request.url.path}
            )
            unexpected = Fault(
                500, f"Unexpected API Error. The berth-api log has the details under {request_id}."
            )
            response = JSONResponse(unexpected.body(), status_code=500)
        if versioned:
            response.headers.update(microversions.response_headers(request.state.version))
        response.headers["X-Compute-Request-Id"] = request_id
        response.headers["X-OpenStack-Request-Id"] = request_id
        route = _route_name(request.scope.get("endpoint"))
        elapsed = time.perf_counter() - started
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        SECONDS.labels(route, request.method).observe(elapsed)
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "version": str(request.state.version),
                "ms": round(elapsed * 1000, 2),
                "caller": caller,
                "request_id": request_id,
            },
        )
        return response


def _route_name(endpoint: Any) -> str:
    """`servers.create` for the endpoint that answered; `unmatched` when none did."""
    name = getattr(endpoint, "__name__", None)
    if name is None or not endpoint.__module__.startswith("services.api"):
        return "unmatched"
    return f"{endpoint.__module__.rsplit('.', 1)[-1]}.{name}"


async def _fault(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Fault)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's own 404 / 405, in Nova's shape."""
    assert isinstance(exc, HTTPException)
    message = "The resource could not be found." if exc.status_code == 404 else str(exc.detail)
    return JSONResponse(Fault(exc.status_code, message).body(), status_code=exc.status_code)


def create_app(settings: ApiSettings, backend: Backend | None = None) -> Starlette:
    """The application; `backend` is made from the settings unless given (tests)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.backend = backend or Backend(settings)
        try:
            yield
        finally:
            app.state.backend.close()

    api = _api_routes()
    app = Starlette(
        routes=[
            Route("/", versions, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/v2.1", version, methods=["GET"]),
            Mount("/v2.1", routes=api),
            # Nova's URLs may carry the project id; Berth has no projects to check it against.
            Mount("/v2.1/{project_id}", routes=api),
        ],
        middleware=[Middleware(ComputeApi)],
        exception_handlers={Fault: _fault, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = TokenTable.load(settings.auth_file) if settings.auth_file else None
    return app
