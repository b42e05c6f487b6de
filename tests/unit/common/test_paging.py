"""Page tokens are opaque, bound to their query, and sizes are bounded."""

import pytest
from berth.client.errors import InvalidArgument

from services.common import paging


def test_a_token_round_trips_for_the_same_query():
    token = paging.encode_token(42, ("services", "h", ""))
    assert paging.read_page(10, token, ("services", "h", "")).after == 42


def test_a_token_from_another_query_is_refused():
    token = paging.encode_token(42, ("services", "h", ""))
    with pytest.raises(InvalidArgument) as err:
        paging.read_page(10, token, ("services", "other", ""))
    assert err.value.violations[0].field == "page_token"


@pytest.mark.parametrize("garbage", ["x", "!!!", "e30", "bm90IGpzb24"])
def test_garbage_tokens_are_refused(garbage):
    with pytest.raises(InvalidArgument):
        paging.read_page(10, garbage, ("q",))


@pytest.mark.parametrize(("asked", "got"), [(0, 100), (5, 5), (1000, 1000), (5000, 1000)])
def test_page_sizes_default_and_cap(asked, got):
    assert paging.read_page(asked, "", ("q",)).size == got


def test_a_negative_page_size_is_refused():
    with pytest.raises(InvalidArgument, match="page_size"):
        paging.read_page(-1, "", ("q",))
