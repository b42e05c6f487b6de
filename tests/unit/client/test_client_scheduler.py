"""SchedulerClient builds the right requests, pages, and raises typed errors."""

from __future__ import annotations

import grpc
import pytest
from berth.client import SchedulerClient, errors
from berth.v1 import scheduler_pb2 as pb
from client_fakes import FakeChannel, FakeRpcError


def scheduler(**answers):
    channel = FakeChannel(**answers)
    return SchedulerClient(channel, target="127.0.0.1:50053", timeout=5.0), channel


def sent(channel):
    return [request for _, request, _ in channel.calls]


def test_select_destinations_sends_the_spec_and_returns_one_selection_per_instance():
    selections = [
        pb.Selection(instance_uuid="i1", primary=pb.Claim(claim_id="c1", host="h1")),
        pb.Selection(instance_uuid="i2", primary=pb.Claim(claim_id="c2", host="h2")),
    ]
    client, channel = scheduler(
        SelectDestinations=pb.SelectDestinationsResponse(selections=selections)
    )
    spec = pb.RequestSpec(flavor=pb.Flavor(name="m1.small"), num_instances=2, project_id="p")

    got = client.select_destinations(spec)

    assert got == selections
    assert sent(channel) == [pb.SelectDestinationsRequest(spec=spec)]
    assert channel.calls[0][2] == 5.0


def test_nothing_fits_comes_back_as_resource_exhausted_with_its_reason():
    refusal = errors.ResourceExhausted(
        "no node can hold 1 instance: RamFilter removed 3", reason="NO_VALID_HOST"
    )
    client, _ = scheduler(SelectDestinations=FakeRpcError.from_berth(refusal))

    with pytest.raises(errors.ResourceExhausted) as caught:
        client.select_destinations(pb.RequestSpec(num_instances=1))
    assert caught.value.reason == "NO_VALID_HOST"
    assert "RamFilter" in caught.value.message


def test_release_claims_sends_the_ids_and_returns_how_many_were_released():
    client, channel = scheduler(ReleaseClaims=pb.ReleaseClaimsResponse(released=1))

    assert client.release_claims(["c1", "", "c2"]) == 1
    assert sent(channel) == [pb.ReleaseClaimsRequest(claim_ids=["c1", "c2"])]


def test_releasing_no_claims_makes_no_call():
    client, channel = scheduler()

    assert client.release_claims([]) == 0
    assert client.release_claims([""]) == 0
    assert channel.calls == []


def test_list_host_states_pages_through_with_the_host_filter():
    pages = [
        pb.ListHostStatesResponse(host_states=[pb.HostState(nodename="a")], next_page_token="t"),
        pb.ListHostStatesResponse(host_states=[pb.HostState(nodename="b")]),
    ]
    client, channel = scheduler(ListHostStates=pages)

    states = client.list_host_states(host="h1", page_size=1)
    assert channel.calls == []  # nothing is fetched until iterated

    assert [s.nodename for s in states] == ["a", "b"]
    assert [(r.host, r.page_size, r.page_token) for r in sent(channel)] == [
        ("h1", 1, ""),
        ("h1", 1, "t"),
    ]


def test_resync_returns_what_was_rebuilt():
    done = pb.ResyncResponse(nodes=12, services=4, duration_ms=31)
    client, channel = scheduler(Resync=done)

    assert client.resync() == done
    assert sent(channel) == [pb.ResyncRequest()]


def test_an_unreachable_scheduler_is_named_in_the_error():
    client, _ = scheduler(Resync=FakeRpcError(grpc.StatusCode.UNAVAILABLE, "Connection refused"))

    with pytest.raises(errors.Unavailable) as caught:
        client.resync()
    assert str(caught.value) == "cannot reach the scheduler at 127.0.0.1:50053: connection refused"
