"""RegistryClient and HostClient build the right requests and raise typed errors."""

from __future__ import annotations

import grpc
import pytest
from berth.client import HostClient, RegistryClient, errors
from berth.client.registry import aggregate_ref, looks_like_uuid, service_ref
from berth.v1 import common_pb2
from berth.v1 import host_pb2 as hpb
from berth.v1 import registry_pb2 as pb
from client_fakes import FakeChannel, FakeRpcError, FakeStreamCall

UUID = "6f1c1f9e-2a1b-4c3d-8e9f-0a1b2c3d4e5f"


def registry(**answers):
    channel = FakeChannel(**answers)
    return RegistryClient(channel, target="127.0.0.1:50051", timeout=5.0), channel


def updated(request):
    return pb.UpdateServiceResponse(service=pb.Service(uuid=UUID))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (UUID, True),
        (UUID.upper(), True),
        (UUID.replace("-", ""), True),
        ("rack1", False),
        (UUID[:-1], False),
        ("", False),
    ],
)
def test_a_string_looks_like_a_uuid_only_with_32_hex_digits(text, expected):
    assert looks_like_uuid(text) is expected


def test_an_aggregate_is_named_by_uuid_when_the_string_looks_like_one_else_by_name():
    assert aggregate_ref(UUID).WhichOneof("ref") == "uuid"
    assert aggregate_ref("rack1") == pb.AggregateRef(name="rack1")


def test_a_service_is_named_by_uuid_or_by_host_and_binary():
    assert service_ref(uuid=UUID) == pb.ServiceRef(uuid=UUID)
    assert service_ref(host="h1", binary="berth-compute") == pb.ServiceRef(
        key=pb.ServiceKey(host="h1", binary="berth-compute")
    )


@pytest.mark.parametrize(
    "kwargs", [{}, {"host": "h1"}, {"binary": "b"}, {"uuid": UUID, "host": "h", "binary": "b"}]
)
def test_a_service_ref_needs_exactly_a_uuid_or_a_host_and_binary(kwargs):
    with pytest.raises(errors.InvalidArgument):
        service_ref(**kwargs)


def test_list_services_pages_through_with_the_filters_and_the_clients_deadline():
    pages = [
        pb.ListServicesResponse(services=[pb.Service(host="h1")], next_page_token="t1"),
        pb.ListServicesResponse(services=[pb.Service(host="h2")]),
    ]
    client, channel = registry(ListServices=pages)

    hosts = [s.host for s in client.list_services(binary="berth-compute", page_size=1)]

    assert hosts == ["h1", "h2"]
    sent = [request for _, request, _ in channel.calls]
    assert [r.page_token for r in sent] == ["", "t1"]
    assert all(r.binary == "berth-compute" and r.page_size == 1 for r in sent)
    assert {timeout for _, _, timeout in channel.calls} == {5.0}


def test_update_service_sends_only_the_fields_it_was_given():
    client, channel = registry(UpdateService=updated)

    client.update_service(host="h1", binary="berth-compute", forced_down=True)

    request = channel.calls[0][1]
    assert request.HasField("forced_down") and request.forced_down
    assert not request.HasField("disabled")


@pytest.mark.parametrize(
    ("call", "fields"),
    [
        (lambda c: c.enable_service(uuid=UUID), {"disabled": False}),
        (
            lambda c: c.disable_service(uuid=UUID, reason="bad disk"),
            {"disabled": True, "disabled_reason": "bad disk"},
        ),
        (lambda c: c.force_down(uuid=UUID), {"forced_down": True}),
        (lambda c: c.force_down(uuid=UUID, unset=True), {"forced_down": False}),
    ],
    ids=["enable", "disable with a reason", "force down", "unset forced down"],
)
def test_the_conveniences_are_update_service_with_the_right_fields(call, fields):
    client, channel = registry(UpdateService=updated)

    service = call(client)

    assert service.uuid == UUID
    request = channel.calls[0][1]
    for name, value in fields.items():
        assert getattr(request, name) == value
        if name != "disabled_reason":
            assert request.HasField(name)


def test_set_aggregate_metadata_sends_empty_values_which_remove_keys():
    client, channel = registry(
        SetAggregateMetadata=pb.SetAggregateMetadataResponse(aggregate=pb.Aggregate(name="r1"))
    )

    aggregate = client.set_aggregate_metadata("r1", {"ssd": "true", "old": ""})

    assert aggregate.name == "r1"
    request = channel.calls[0][1]
    assert request.aggregate.name == "r1"
    assert dict(request.metadata) == {"ssd": "true", "old": ""}


def test_a_server_error_comes_out_as_the_typed_berth_error():
    sent = errors.NotFound("no service berth-compute on host h9")
    client, _ = registry(GetService=FakeRpcError.from_berth(sent))

    with pytest.raises(errors.NotFound, match="host h9"):
        client.get_service(host="h9", binary="berth-compute")


def test_an_unreachable_registry_is_named_in_the_error():
    refused = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect: Connection refused")
    client, _ = registry(DeleteAggregate=refused)

    with pytest.raises(errors.Unavailable) as caught:
        client.delete_aggregate("r1")

    assert str(caught.value) == "cannot reach the registry at 127.0.0.1:50051: connection refused"


def test_watch_services_yields_events_and_cancels_the_stream_when_the_caller_stops():
    events = [
        pb.WatchServicesResponse(type=common_pb2.EVENT_TYPE_ADDED, revision=r) for r in (1, 2)
    ]
    client, channel = registry(WatchServices=FakeStreamCall(events + events))

    watch = client.watch_services(start_revision=7)
    assert next(watch).revision == 1
    watch.close()

    assert channel.calls[0][1].start_revision == 7
    assert channel.calls[0][2] is None  # no deadline on a watch
    assert channel.streams[0].cancelled


def test_a_watch_that_fails_midway_raises_the_typed_error():
    too_old = errors.FailedPrecondition("revision 3 is too old", reason="REVISION_TOO_OLD")
    stream = FakeStreamCall(
        [pb.WatchServicesResponse(revision=9)], FakeRpcError.from_berth(too_old)
    )
    client, _ = registry(WatchServices=stream)

    with pytest.raises(errors.FailedPrecondition) as caught:
        list(client.watch_services(start_revision=3))

    assert caught.value.reason == "REVISION_TOO_OLD"


def test_the_host_client_shares_the_registry_channel_and_does_not_close_it():
    client, channel = registry(
        ListHosts=hpb.ListHostsResponse(hosts=[hpb.HostSummary(host_name="h1", service="compute")])
    )

    hosts = client.hosts
    assert [h.host_name for h in hosts.list_hosts(zone="az1")] == ["h1"]
    assert channel.calls[0][1].zone == "az1"
    hosts.close()
    assert not channel.closed


def test_a_client_closes_only_a_channel_it_owns():
    borrowed, owned = FakeChannel(), FakeChannel()
    with RegistryClient(borrowed):
        pass
    with HostClient(owned, owns_channel=True):
        pass

    assert not borrowed.closed
    assert owned.closed


def test_describe_host_returns_the_rows_as_a_list():
    rows = [
        hpb.HostResourceRow(host="h1", project="(total)", resources=common_pb2.Resources(vcpus=8)),
        hpb.HostResourceRow(host="h1", project="p1", resources=common_pb2.Resources(vcpus=2)),
    ]
    client = HostClient(FakeChannel(DescribeHost=hpb.DescribeHostResponse(rows=rows)))

    assert [row.project for row in client.describe_host("h1")] == ["(total)", "p1"]


def test_connect_parses_the_target_and_owns_its_channel():
    with RegistryClient.connect("grpc://127.0.0.1:1", token="t", timeout=3.0) as client:
        assert client.target == "127.0.0.1:1"
        assert client.timeout == 3.0
        assert client._owns_channel
