"""Who may call: with BERTH_AUTH_FILE, `X-Auth-Token` carries one of Berth's bearer tokens
and its roles apply as on the gRPC servers (reader: GET only; admin: everything). Without
the file every caller is admitted, and the API listens on loopback only."""

from __future__ import annotations

from berth.client.errors import Unauthenticated
from starlette.requests import Request

from services.api.faults import Fault
from services.common.auth import TokenTable

READ_METHODS = frozenset({"GET", "HEAD"})


def check(table: TokenTable | None, request: Request) -> str:
    """The caller's name ('anonymous' without a tokens file); 401 or 403 as Nova answers."""
    if table is None:
        return "anonymous"
    token = request.headers.get("x-auth-token", "").strip()
    if not token:
        raise Fault(401, "The request you have made requires authentication: send X-Auth-Token.")
    try:
        principal = table.authenticate(f"Bearer {token}")
    except Unauthenticated:
        raise Fault(401, "The X-Auth-Token is not one this API knows.") from None
    if principal.is_admin or (request.method in READ_METHODS and "reader" in principal.roles):
        return principal.name
    raise Fault(
        403,
        f"Policy doesn't allow {request.method} {request.url.path} to be performed by "
        f"{principal.name} (roles: {', '.join(sorted(principal.roles))}).",
    )
