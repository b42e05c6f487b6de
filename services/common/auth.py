"""Who is calling and what they may do: bearer tokens mapped to roles, from a TOML file.

    [[tokens]]                 # an operator
    name = "ops"
    token_sha256 = "9f86d0..." # or: token = "plain text"
    roles = ["admin"]

    [[tokens]]                 # a compute agent: may register, heartbeat, report for one host
    name = "agent-compute-1"
    token = "..."
    roles = ["agent"]
    host = "compute-1"

Roles: `admin` may do everything; `reader` may call read-only methods; `agent` may call the
methods a service marks as agent methods, for its own host only (the servicer checks the
host with `require_host`, as only it knows which host a request is about).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from berth.client.errors import PermissionDenied, Unauthenticated

ROLES = frozenset({"admin", "reader", "agent"})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    name: str
    roles: frozenset[str]
    host: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


# With no credentials configured (loopback only), every caller is this.
ANONYMOUS_ADMIN = Principal("anonymous", frozenset({"admin"}))

current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "current_principal", default=ANONYMOUS_ADMIN
)


@dataclass(frozen=True)
class MethodPolicy:
    """Which methods readers and agents may call; all others are admin-only."""

    read_methods: frozenset[str] = field(default_factory=frozenset)
    agent_methods: frozenset[str] = field(default_factory=frozenset)

    def merged(self, other: MethodPolicy) -> MethodPolicy:
        return MethodPolicy(
            self.read_methods | other.read_methods, self.agent_methods | other.agent_methods
        )

    def allows(self, principal: Principal, method: str) -> bool:
        if principal.is_admin:
            return True
        if method in self.read_methods and "reader" in principal.roles:
            return True
        return method in self.agent_methods and "agent" in principal.roles


class TokenTable:
    """Bearer token -> Principal, compared by SHA-256 digest in constant time."""

    def __init__(self, entries: Iterable[tuple[bytes, Principal]]) -> None:
        self._entries = list(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated(
                "no credentials: send an 'authorization: Bearer <token>' header",
                reason="MISSING_CREDENTIALS",
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "the authorization header must be 'Bearer <token>'", reason="BAD_CREDENTIALS"
            )
        digest = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for expected, principal in self._entries:  # no early exit: timing says nothing
            if hmac.compare_digest(digest, expected):
                found = principal
        if found is None:
            raise Unauthenticated(
                "the bearer token is not known to this server", reason="BAD_CREDENTIALS"
            )
        return found

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        """Read and validate a tokens file; ValueError names the entry that is wrong."""
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
        entries = []
        for i, raw in enumerate(doc.get("tokens", [])):
            where = f"{path}: tokens[{i}]"
            name = str(raw.get("name") or f"token-{i}")
            roles = raw.get("roles", [raw["role"]] if "role" in raw else [])
            if isinstance(roles, str):
                roles = [roles]
            unknown = set(roles) - ROLES
            if not roles or unknown:
                raise ValueError(f"{where}: roles must be some of {sorted(ROLES)}, got {roles}")
            host = raw.get("host")
            if "agent" in roles and not host:
                raise ValueError(f"{where}: an agent token needs the host it speaks for")
            if "token_sha256" in raw:
                digest = bytes.fromhex(raw["token_sha256"])
            elif "token" in raw and str(raw["token"]).strip():
                digest = hashlib.sha256(str(raw["token"]).strip().encode()).digest()
            else:
                raise ValueError(f"{where}: needs token or token_sha256")
            entries.append((digest, Principal(name, frozenset(roles), host)))
        if not entries:
            raise ValueError(f"{path}: no [[tokens]] entries")
        return cls(entries)


def require_host(host: str) -> None:
    """Agents may act only for their own host; admins for any."""
    principal = current_principal.get()
    if principal.is_admin or principal.host == host:
        return
    raise PermissionDenied(
        f"{principal.name} speaks for host {principal.host!r} and may not act for {host!r}",
        reason="WRONG_HOST",
        metadata={"host": host},
    )
