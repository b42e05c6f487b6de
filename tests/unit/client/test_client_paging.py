"""paginate turns a paged List RPC into one lazy iterator of items."""

from __future__ import annotations

import pytest
from berth.client.errors import Internal
from berth.client.paging import paginate
from berth.v1 import registry_pb2 as pb


class FakeList:
    """ListServices over `hosts`, `size` per page, with the offset as page token."""

    def __init__(self, hosts: list[str], size: int) -> None:
        self.hosts, self.size = hosts, size
        self.requests: list[pb.ListServicesRequest] = []

    def __call__(self, request: pb.ListServicesRequest) -> pb.ListServicesResponse:
        copy = pb.ListServicesRequest()
        copy.CopyFrom(request)
        self.requests.append(copy)
        start = int(request.page_token or 0)
        end = start + self.size
        return pb.ListServicesResponse(
            services=[pb.Service(host=h) for h in self.hosts[start:end]],
            next_page_token=str(end) if end < len(self.hosts) else "",
        )


def hosts_of(services):
    return [service.host for service in services]


def test_every_item_of_every_page_comes_out_once_and_in_order():
    fake = FakeList([f"h{i}" for i in range(7)], size=3)

    items = paginate(fake, pb.ListServicesRequest(), lambda page: page.services)

    assert hosts_of(items) == [f"h{i}" for i in range(7)]
    assert [r.page_token for r in fake.requests] == ["", "3", "6"]


def test_the_next_page_is_fetched_only_when_the_caller_wants_it():
    fake = FakeList([f"h{i}" for i in range(6)], size=2)
    items = paginate(fake, pb.ListServicesRequest(), lambda page: page.services)

    assert fake.requests == []
    next(items)
    next(items)
    assert len(fake.requests) == 1
    next(items)
    assert len(fake.requests) == 2


def test_filters_and_page_size_go_with_every_page_and_the_request_is_left_unchanged():
    fake = FakeList(["a", "b", "c"], size=1)
    request = pb.ListServicesRequest(binary="berth-compute", page_size=1)

    list(paginate(fake, request, lambda page: page.services))

    assert all(r.binary == "berth-compute" and r.page_size == 1 for r in fake.requests)
    assert request.page_token == ""


def test_an_empty_first_page_gives_an_empty_iterator():
    assert (
        list(paginate(FakeList([], size=5), pb.ListServicesRequest(), lambda p: p.services)) == []
    )


def test_a_server_repeating_a_page_token_is_stopped_instead_of_looping_forever():
    def stuck(request):
        return pb.ListServicesResponse(services=[pb.Service(host="x")], next_page_token="same")

    with pytest.raises(Internal, match="twice"):
        list(paginate(stuck, pb.ListServicesRequest(), lambda page: page.services))
