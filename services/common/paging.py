"""Opaque page tokens bound to the query that made them, and page-size rules (AIP-158);
and walking every page of another service's list RPC."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from berth.client.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Page:
    """Where a page starts (`after` an ordering key) and how many rows it holds."""

    after: str | int | None
    size: int

    @property
    def after_id(self) -> int | None:
        """`after` of a query ordered by an integer id."""
        return None if self.after is None else int(self.after)

    @property
    def after_name(self) -> str | None:
        """`after` of a query ordered by a name."""
        return None if self.after is None else str(self.after)


def _fingerprint(query: tuple[object, ...]) -> str:
    return hashlib.sha256(repr(query).encode()).hexdigest()[:16]


def encode_token(after: str | int, query: tuple[object, ...]) -> str:
    raw = json.dumps({"a": after, "q": _fingerprint(query)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_page(page_size: int, page_token: str, query: tuple[object, ...]) -> Page:
    """Validate size and token; a token from another query is INVALID_ARGUMENT."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", f"must not be negative (got {page_size})")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not page_token:
        return Page(None, size)
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after, fingerprint = doc["a"], doc["q"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.field("page_token", "is not a token this server issued") from None
    if fingerprint != _fingerprint(query):
        raise InvalidArgument.field(
            "page_token", "belongs to a different query: keep the filters of the first page"
        )
    return Page(after, size)


def next_token(rows: list[object], page: Page, key: str, query: tuple[object, ...]) -> str:
    """The token for the page after `rows` (fetched with size + 1), or '' on the last page."""
    if len(rows) <= page.size:
        return ""
    return encode_token(getattr(rows[page.size - 1], key), query)


async def every_item(
    fetch: Callable[[Any], Awaitable[Any]], request: Any, items: Callable[[Any], Iterable[T]]
) -> list[T]:
    """The items of every page a list RPC answers to `request` (its page_token is advanced
    in place), page after page, in order."""
    found: list[T] = []
    while True:
        page = await fetch(request)
        found.extend(items(page))
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token
