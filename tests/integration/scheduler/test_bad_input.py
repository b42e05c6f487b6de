"""Bad SelectDestinations input: INVALID_ARGUMENT naming the field, and no claim left behind."""

from __future__ import annotations

import grpc
import pytest
from berth.client.errors import from_rpc_error
from berth.v1 import scheduler_pb2
from grpc import aio

from tests.integration.scheduler.cloud import spec


def hinted(**hints) -> scheduler_pb2.SelectDestinationsRequest:
    return spec("m1.tiny", hints=scheduler_pb2.SchedulerHints(**hints))


CASES = [
    ("zero vcpus", spec(vcpus=0, memory_mb=512), "spec.flavor.vcpus"),
    ("negative memory", spec(vcpus=1, memory_mb=-1), "spec.flavor.memory_mb"),
    ("negative disk", spec(vcpus=1, memory_mb=512, disk_gb=-5), "spec.flavor.root_gb"),
    ("absurd vcpus", spec(vcpus=1 << 30, memory_mb=512), "spec.flavor.vcpus"),
    ("unknown flavor", spec("m1.enormous"), "spec.flavor.name"),
    ("no flavor at all", spec(), "spec.flavor.vcpus"),
    ("count 0", spec("m1.tiny", count=0), "spec.num_instances"),
    ("count above the limit", spec("m1.tiny", count=1001), "spec.num_instances"),
    ("unknown zone", spec("m1.tiny", availability_zone="atlantis"), "spec.availability_zone"),
    ("same_host not a uuid", hinted(same_host=["web-1"]), "spec.hints.same_host[0]"),
    ("different_host not a uuid", hinted(different_host=["x"]), "spec.hints.different_host[0]"),
    ("policy without a group", hinted(group_policy=2), "spec.hints.group"),
    ("group without a policy", hinted(group="web"), "spec.hints.group_policy"),
    ("unknown group policy", hinted(group="web", group_policy=9), "spec.hints.group_policy"),
    ("empty forced host", hinted(force_hosts=[""]), "spec.hints.force_hosts[0]"),
    (
        "fewer uuids than instances",
        spec("m1.tiny", count=2, instance_uuids=["0b8d7c1e-1111-4222-8333-944455556666"]),
        "spec.instance_uuids",
    ),
]


@pytest.mark.parametrize(("request_", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_input_names_the_field_and_claims_nothing(cloud, request_, field):
    await cloud.add_host("c1")
    _, stub = await cloud.start_scheduler()
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(request_)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    error = from_rpc_error(err.value)
    assert [v.field for v in error.violations] == [field]
    states = await stub.ListHostStates(scheduler_pb2.ListHostStatesRequest())
    assert [len(s.pending_claims) for s in states.host_states] == [0]


async def test_release_claims_needs_ids_and_a_missing_spec_is_named(cloud):
    _, stub = await cloud.start_scheduler()
    with pytest.raises(aio.AioRpcError) as err:
        await stub.ReleaseClaims(scheduler_pb2.ReleaseClaimsRequest())
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(scheduler_pb2.SelectDestinationsRequest())
    assert from_rpc_error(err.value).violations[0].field == "spec"
