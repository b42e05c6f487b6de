"""Turn a paged List RPC (page_size, page_token, next_page_token) into an iterator of items."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, Self, TypeVar

from berth.client.errors import Internal

T = TypeVar("T")


class PagedRequest(Protocol):
    """A List RPC's request message (AIP-158)."""

    page_token: str

    def CopyFrom(self, other_msg: Self, /) -> None: ...


R = TypeVar("R", bound=PagedRequest)


def paginate(
    call: Callable[[R], Any],
    request: R,
    items: Callable[[Any], Iterable[T]],
) -> Iterator[T]:
    """Yield every item of every page, fetching the next page only when the caller wants it.

    `call` sends one request and returns its response; `items` picks the repeated field
    out of a response (e.g. `lambda r: r.services`). The request is copied, never changed.
    """
    page = type(request)()
    page.CopyFrom(request)
    seen: set[str] = set()
    while True:
        response = call(page)
        yield from items(response)
        token = response.next_page_token
        if not token:
            return
        # A server that hands back a token it already gave would make this loop forever.
        if token in seen:
            raise Internal(f"the server returned page token {token!r} twice; stopping")
        seen.add(token)
        page.page_token = token
