"""boot and delete against in-process fake servers (scheduler, registry, node service and one
compute agent per host) on port 0: destinations in order, and no claim left behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import pytest
from berth.client import (
    ComputeClient,
    NodeClient,
    RegistryClient,
    SchedulerClient,
    errors,
)
from berth.client.channel import translate_error
from berth.client.flavors import flavor
from berth.client.servers import boot, delete
from berth.v1 import (
    common_pb2,
    compute_pb2,
    compute_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from client_fakes import FakeRpcError
from grpc_status import rpc_status

UUIDS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 10)]
SMALL = common_pb2.Resources(vcpus=1, memory_mb=2048, disk_gb=20)


def abort(context: grpc.ServicerContext, error: errors.BerthError) -> None:
    """Fail the call as a Berth server's interceptor would: status, reason, violations."""
    context.abort_with_status(rpc_status.to_status(error.to_status()))


def claim(instance: str, host: str) -> scheduler_pb2.Claim:
    return scheduler_pb2.Claim(
        claim_id=f"claim-{instance[-1]}-{host}",
        instance_uuid=instance,
        host=host,
        nodename=f"{host}-node",
        node_uuid=f"node-uuid-{host}",
        resources=SMALL,
    )


def selection(instance: str, *hosts: str) -> scheduler_pb2.Selection:
    """`instance` claimed on hosts[0], unclaimed alternates on the rest, in order."""
    primary, *alternates = [claim(instance, host) for host in hosts]
    for alternate in alternates:
        alternate.ClearField("claim_id")
    return scheduler_pb2.Selection(instance_uuid=instance, primary=primary, alternates=alternates)


# -- the fake servers ------------------------------------------------------------------------


class FakeScheduler(scheduler_pb2_grpc.SchedulerServiceServicer):
    """Answers SelectDestinations with the test's selections, claims alternates (or refuses
    those of `alternate_refusals`' hosts); records every claim and release."""

    def __init__(self) -> None:
        self.selections: list[scheduler_pb2.Selection] = []
        self.refusal: errors.BerthError | None = None
        self.alternate_refusals: dict[str, errors.BerthError] = {}
        self.alternates_claimed: list[str] = []
        self.alternate_specs: list[scheduler_pb2.RequestSpec] = []
        self.specs: list[scheduler_pb2.RequestSpec] = []
        self.released: list[str] = []
        # The next this many ReleaseClaims fail (Redis down); each call is in release_calls.
        self.release_failures = 0
        self.release_calls: list[list[str]] = []
        self._lock = threading.Lock()

    def SelectDestinations(self, request, context):
        self.specs.append(request.spec)
        if self.refusal is not None:
            abort(context, self.refusal)
        return scheduler_pb2.SelectDestinationsResponse(selections=self.selections)

    def ClaimAlternate(self, request, context):
        host = request.node_uuid.removeprefix("node-uuid-")
        with self._lock:
            self.alternate_specs.append(request.spec)
        if host in self.alternate_refusals:
            abort(context, self.alternate_refusals[host])
        claimed = claim(request.instance_uuid, host)
        with self._lock:
            self.alternates_claimed.append(claimed.claim_id)
        return scheduler_pb2.ClaimAlternateResponse(claim=claimed)

    def ReleaseClaims(self, request, context):
        with self._lock:
            self.release_calls.append(list(request.claim_ids))
            failing, self.release_failures = self.release_failures > 0, self.release_failures - 1
        if failing:
            abort(context, errors.Unavailable("redis is down"))
        with self._lock:
            self.released.extend(request.claim_ids)
        return scheduler_pb2.ReleaseClaimsResponse(released=len(request.claim_ids))

    @property
    def issued(self) -> list[str]:
        return [s.primary.claim_id for s in self.selections] + self.alternates_claimed


class FakeAgent(compute_pb2_grpc.ComputeAgentServiceServicer):
    """One host's agent: builds (or refuses with `refusal`) and deletes instances."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.refusal: errors.BerthError | None = None
        self.builds: list[compute_pb2.BuildInstanceRequest] = []
        self.instances: dict[str, node_pb2.Instance] = {}
        self.deleted: list[str] = []
        self._lock = threading.Lock()

    def BuildInstance(self, request, context):
        with self._lock:
            self.builds.append(request)
        if self.refusal is not None:
            abort(context, self.refusal)
        built = node_pb2.Instance()
        built.CopyFrom(request.instance)
        built.host, built.nodename = self.host, request.nodename
        built.node_uuid, built.state = f"node-uuid-{self.host}", node_pb2.INSTANCE_STATE_ACTIVE
        with self._lock:
            self.instances[built.uuid] = built
        return compute_pb2.BuildInstanceResponse(instance=built)

    def DeleteInstance(self, request, context):
        with self._lock:
            gone = self.instances.pop(request.instance_uuid, None)
        if gone is None:
            abort(context, errors.NotFound("no such instance", reason="INSTANCE_NOT_FOUND"))
        self.deleted.append(request.instance_uuid)
        return compute_pb2.DeleteInstanceResponse()

    @property
    def consumed(self) -> list[str]:
        return [b.claim_id for b in self.builds if b.instance.uuid in self.instances]


class FakeRegistry(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self) -> None:
        self.services: dict[str, registry_pb2.Service] = {}
        self.lookups: list[str] = []

    def GetService(self, request, context):
        host = request.service.key.host
        self.lookups.append(host)
        found = self.services.get(host)
        if found is None or request.service.key.binary != "berth-compute":
            abort(context, errors.NotFound(f"no berth-compute on {host}"))
        return registry_pb2.GetServiceResponse(service=found)


class FakeNodeService(node_pb2_grpc.NodeServiceServicer):
    """ListNodeInstances over what the agents hold."""

    def __init__(self, agents: dict[str, FakeAgent]) -> None:
        self.agents = agents
        self.requests: list[node_pb2.ListNodeInstancesRequest] = []

    def ListNodeInstances(self, request, context):
        self.requests.append(request)
        wanted = set(request.instance_uuids)
        found = [
            instance
            for agent in self.agents.values()
            for instance in agent.instances.values()
            if not wanted or instance.uuid in wanted
        ]
        return node_pb2.ListNodeInstancesResponse(instances=found)


class Recording(ComputeClient):
    """A ComputeClient that remembers being closed."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


@dataclass
class Cloud:
    """The fake servers, clients of them, and the agent clients a workflow opened."""

    scheduler: FakeScheduler
    registry: FakeRegistry
    node: FakeNodeService
    agents: dict[str, FakeAgent]
    clients: dict[str, object]
    serve: object
    opened: list[Recording] = field(default_factory=list)

    def add_agent(self, host: str, *, up: bool = True, endpoint: str | None = None) -> FakeAgent:
        agent = FakeAgent(host)
        self.agents[host] = agent
        address = self.serve((compute_pb2_grpc.add_ComputeAgentServiceServicer_to_server, agent))
        self.registry.services[host] = registry_pb2.Service(
            host=host,
            binary="berth-compute",
            endpoint=address if endpoint is None else endpoint,
            up=up,
        )
        return agent

    def connect_agent(self, endpoint: str) -> Recording:
        client = Recording.connect(endpoint, timeout=5.0)
        self.opened.append(client)
        return client

    def boot(self, count: int = 1, flavor_name: str = "m1.small", **kwargs) -> list:
        spec = scheduler_pb2.RequestSpec(
            flavor=flavor(flavor_name), num_instances=count, project_id="p1", user_id="u1"
        )
        return boot(
            spec,
            scheduler=self.clients["scheduler"],
            registry=self.clients["registry"],
            connect_agent=self.connect_agent,
            **kwargs,
        )

    def delete(self, uuids: list[str], **kwargs) -> list:
        return delete(
            uuids,
            node=self.clients["node"],
            registry=self.clients["registry"],
            connect_agent=self.connect_agent,
            **kwargs,
        )

    def assert_no_claim_left(self) -> None:
        """Every claim handed out was consumed by a build or released, and not both."""
        consumed = [c for agent in self.agents.values() for c in agent.consumed]
        released = self.scheduler.released
        assert sorted(consumed + released) == sorted(self.scheduler.issued)


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    servers: list[grpc.Server] = []

    def serve(*servicers) -> str:
        server = grpc.server(ThreadPoolExecutor(max_workers=8))
        for add, servicer in servicers:
            add(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    scheduler, registry, agents = FakeScheduler(), FakeRegistry(), {}
    node = FakeNodeService(agents)
    address = serve(
        (scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server, scheduler),
        (registry_pb2_grpc.add_RegistryServiceServicer_to_server, registry),
        (node_pb2_grpc.add_NodeServiceServicer_to_server, node),
    )
    clients = {
        "scheduler": SchedulerClient.connect(address, timeout=5.0),
        "registry": RegistryClient.connect(address, timeout=5.0),
        "node": NodeClient.connect(address, timeout=5.0),
    }
    yield Cloud(scheduler, registry, node, agents, clients, serve)
    for client in clients.values():
        client.close()
    for server in servers:
        server.stop(None)


# -- boot ------------------------------------------------------------------------------------


def test_boot_builds_each_instance_on_its_primary_and_claims_no_alternate(cloud):
    h1, h2 = cloud.add_agent("h1"), cloud.add_agent("h2")
    cloud.scheduler.selections = [
        selection(UUIDS[0], "h1", "h2"),
        selection(UUIDS[1], "h2", "h1"),
        selection(UUIDS[2], "h1", "h2"),
    ]

    results = cloud.boot(3)

    assert [(r.instance_uuid, r.host, r.nodename, r.node_uuid, r.ok) for r in results] == [
        (UUIDS[0], "h1", "h1-node", "node-uuid-h1", True),
        (UUIDS[1], "h2", "h2-node", "node-uuid-h2", True),
        (UUIDS[2], "h1", "h1-node", "node-uuid-h1", True),
    ]
    assert [r.claim_id for r in results] == [
        "claim-1-h1",
        "claim-2-h2",
        "claim-3-h1",
    ]
    build = h2.builds[0]
    assert (build.nodename, build.claim_id) == ("h2-node", "claim-2-h2")
    assert (build.instance.project_id, build.instance.user_id) == ("p1", "u1")
    assert build.instance.resources == SMALL
    assert not cloud.scheduler.alternates_claimed and not cloud.scheduler.released
    cloud.assert_no_claim_left()
    assert len(h1.builds) == 2


def test_the_flavors_extra_specs_go_to_the_agent_with_the_build(cloud):
    metal = cloud.add_agent("ironic-1")
    cloud.scheduler.selections = [selection(UUIDS[0], "ironic-1")]

    (result,) = cloud.boot(flavor_name="baremetal")

    assert result.ok, result
    (build,) = metal.builds
    assert dict(build.instance.flavor_extra_specs) == {"resources:CUSTOM_BAREMETAL": "1"}
    (spec,) = cloud.scheduler.specs
    assert dict(spec.flavor.extra_specs) == {"resources:CUSTOM_BAREMETAL": "1"}


def test_boot_asks_the_scheduler_once_for_every_instance(cloud):
    cloud.add_agent("h1")
    cloud.scheduler.selections = [selection(u, "h1") for u in UUIDS[:4]]

    cloud.boot(4)

    (spec,) = cloud.scheduler.specs
    assert (spec.num_instances, spec.flavor.name, spec.project_id) == (4, "m1.small", "p1")


def test_a_refusing_primary_gives_way_to_the_next_alternate_claimed_only_then(cloud):
    full, h3 = cloud.add_agent("h1"), cloud.add_agent("h3")
    cloud.add_agent("h2")
    full.refusal = errors.ResourceExhausted(
        "node h1-node cannot hold 2048 MB", reason="INSUFFICIENT"
    )
    cloud.scheduler.selections = [selection(UUIDS[0], "h1", "h2", "h3")]

    (result,) = cloud.boot()

    assert (result.ok, result.host, result.attempts, result.claim_id) == (
        True,
        "h2",
        2,
        "claim-1-h2",
    )
    assert [b.claim_id for b in full.builds] == ["claim-1-h1"]
    assert not h3.builds
    assert cloud.scheduler.alternates_claimed == ["claim-1-h2"]  # h3 was never claimed
    (one,) = cloud.scheduler.alternate_specs
    assert (one.num_instances, list(one.instance_uuids)) == (1, [UUIDS[0]])
    assert sorted(cloud.scheduler.released) == ["claim-1-h1"]
    cloud.assert_no_claim_left()


def test_an_alternate_the_scheduler_will_not_claim_is_skipped_for_the_next(cloud):
    cloud.add_agent("h1").refusal = errors.Unavailable("agent restarting")
    h2, h3 = cloud.add_agent("h2"), cloud.add_agent("h3")
    cloud.scheduler.alternate_refusals["h2"] = errors.ResourceExhausted(
        "alternate h2/h2-node no longer passes RamFilter", reason="CLAIM_REFUSED"
    )
    cloud.scheduler.selections = [selection(UUIDS[0], "h1", "h2", "h3")]

    (result,) = cloud.boot()

    assert (result.ok, result.host, result.attempts) == (True, "h3", 3)
    assert not h2.builds and len(h3.builds) == 1
    cloud.assert_no_claim_left()


@pytest.mark.parametrize(
    "refusal",
    [
        errors.Unavailable("the node service is stopping"),
        errors.FailedPrecondition("node is in maintenance"),
        errors.NotFound("no node h1-node on host h1", reason="NODE_NOT_FOUND"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_kind_of_refusal_moves_on_to_the_alternate(cloud, refusal):
    cloud.add_agent("h1").refusal = refusal
    cloud.add_agent("h2")
    cloud.scheduler.selections = [selection(UUIDS[0], "h1", "h2")]

    (result,) = cloud.boot()

    assert (result.ok, result.host) == (True, "h2")
    cloud.assert_no_claim_left()


def test_agents_down_unregistered_or_unreachable_are_skipped(cloud):
    cloud.add_agent("down", up=False)
    cloud.add_agent("gone", endpoint="127.0.0.1:1")  # nothing listens there
    cloud.add_agent("ok")
    cloud.scheduler.selections = [selection(UUIDS[0], "down", "unknown", "gone", "ok")]

    (result,) = cloud.boot()

    assert (result.ok, result.host, result.attempts) == (True, "ok", 4)
    assert not cloud.agents["down"].builds
    assert sorted(cloud.scheduler.released) == ["claim-1-down", "claim-1-gone", "claim-1-unknown"]
    cloud.assert_no_claim_left()


def test_when_every_destination_refuses_the_failure_is_reported_and_every_claim_released(cloud):
    cloud.add_agent("h1").refusal = errors.ResourceExhausted("h1 is full", reason="INSUFFICIENT")
    cloud.add_agent("h2", up=False)
    cloud.add_agent("h3")
    cloud.scheduler.selections = [
        selection(UUIDS[0], "h1", "h2"),
        selection(UUIDS[1], "h3", "h1"),
    ]

    failed, built = cloud.boot(2)

    assert not failed.ok and built.ok
    assert (failed.instance_uuid, failed.host, failed.attempts) == (UUIDS[0], "", 2)
    assert "h1/h1-node: h1 is full" in failed.error
    assert "h2/h2-node: the compute agent of host h2 is down" in failed.error
    assert failed.reason == "AGENT_DOWN"
    assert set(cloud.scheduler.released) == {"claim-1-h1", "claim-1-h2"}
    cloud.assert_no_claim_left()


def test_a_request_the_agent_rejects_as_invalid_is_not_tried_elsewhere(cloud):
    cloud.add_agent("h1").refusal = errors.InvalidArgument.field("instance.project_id", "bad")
    h2 = cloud.add_agent("h2")
    cloud.scheduler.selections = [selection(UUIDS[0], "h1", "h2")]

    (result,) = cloud.boot()

    assert not result.ok and result.reason == "INVALID_ARGUMENT"
    assert not h2.builds and not cloud.scheduler.alternates_claimed
    assert sorted(cloud.scheduler.released) == ["claim-1-h1"]


class CutAfterBuilding(Recording):
    """An agent that builds, then dies before it answers: grpc-core reports the reset."""

    def build_instance(self, *args, **kwargs):
        super().build_instance(*args, **kwargs)
        reset = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "recvmsg:Connection reset by peer")
        raise translate_error(reset, server="compute agent", target=self.target)


def test_a_build_whose_connection_broke_is_not_tried_elsewhere_as_it_may_exist(cloud):
    h1, h2 = cloud.add_agent("h1"), cloud.add_agent("h2")
    cloud.scheduler.selections = [selection(UUIDS[0], "h1", "h2")]

    def connect(endpoint: str) -> Recording:
        client = CutAfterBuilding.connect(endpoint, timeout=5.0)
        cloud.opened.append(client)
        return client

    cloud.connect_agent = connect
    (result,) = cloud.boot()

    # Built on h1 (which answers nothing): an alternate would run it on two hosts.
    assert list(h1.instances) == [UUIDS[0]] and not h2.builds
    assert not result.ok and result.reason == "CONNECTION_LOST", result
    assert "may have been carried out" in result.error
    assert not cloud.scheduler.alternates_claimed
    assert cloud.scheduler.released == ["claim-1-h1"]  # h1's report counts the room


def test_nothing_placeable_raises_the_schedulers_error_and_builds_nothing(cloud):
    h1 = cloud.add_agent("h1")
    cloud.scheduler.refusal = errors.ResourceExhausted(
        "RamFilter removed 3 of 3 nodes", reason="NO_VALID_HOST"
    )

    with pytest.raises(errors.ResourceExhausted, match="RamFilter"):
        cloud.boot()
    assert not h1.builds and not cloud.scheduler.released


def test_progress_is_called_once_per_instance_and_agents_are_reached_once_per_host(cloud):
    cloud.add_agent("h1")
    cloud.add_agent("h2")
    cloud.scheduler.selections = [
        selection(u, "h1" if i % 2 else "h2", "h2" if i % 2 else "h1") for i, u in enumerate(UUIDS)
    ]
    seen: list[str] = []

    results = cloud.boot(
        len(UUIDS), max_parallel=4, progress=lambda r: seen.append(r.instance_uuid)
    )

    assert sorted(seen) == sorted(UUIDS) and all(r.ok for r in results)
    assert [r.instance_uuid for r in results] == UUIDS  # in the scheduler's order
    assert sorted(cloud.registry.lookups) == ["h1", "h2"]
    assert len(cloud.opened) == 2 and all(client.closed for client in cloud.opened)
    cloud.assert_no_claim_left()


def test_an_exception_midway_still_releases_every_claim_not_consumed(cloud):
    cloud.add_agent("h1")
    cloud.add_agent("h2")
    cloud.scheduler.selections = [selection(u, "h1", "h2") for u in UUIDS[:5]]

    def explode(result):
        raise RuntimeError("the progress display broke")

    with pytest.raises(RuntimeError, match="display broke"):
        cloud.boot(5, max_parallel=1, progress=explode)
    assert len(cloud.agents["h1"].instances) == 1  # the rest never started
    cloud.assert_no_claim_left()
    assert all(client.closed for client in cloud.opened)


def test_claims_the_scheduler_could_not_release_are_tried_once_more_at_the_end(cloud):
    cloud.add_agent("h1").refusal = errors.ResourceExhausted("h1 is full", reason="INSUFFICIENT")
    cloud.add_agent("h2")
    cloud.scheduler.selections = [selection(UUIDS[0], "h1", "h2")]
    cloud.scheduler.release_failures = 1

    (result,) = cloud.boot()

    assert result.ok and result.host == "h2"
    assert cloud.scheduler.release_calls == [["claim-1-h1"], ["claim-1-h1"]]
    cloud.assert_no_claim_left()


def test_max_parallel_below_one_is_invalid(cloud):
    cloud.add_agent("h1")
    cloud.scheduler.selections = [selection(UUIDS[0], "h1")]

    with pytest.raises(errors.InvalidArgument):
        cloud.boot(max_parallel=0)
    cloud.assert_no_claim_left()


# -- delete ----------------------------------------------------------------------------------


def test_delete_finds_each_instances_host_and_deletes_it_there(cloud):
    h1, h2 = cloud.add_agent("h1"), cloud.add_agent("h2")
    cloud.scheduler.selections = [selection(UUIDS[0], "h1"), selection(UUIDS[1], "h2")]
    cloud.boot(2)

    results = cloud.delete([UUIDS[1].upper(), UUIDS[0], UUIDS[1]])

    assert [(r.instance_uuid, r.host, r.nodename, r.ok) for r in results] == [
        (UUIDS[1], "h2", "h2-node", True),
        (UUIDS[0], "h1", "h1-node", True),
    ]
    assert (h1.deleted, h2.deleted) == ([UUIDS[0]], [UUIDS[1]])
    (lookup,) = cloud.node.requests
    assert sorted(lookup.instance_uuids) == sorted(UUIDS[:2])
    assert (lookup.host, lookup.HasField("node")) == ("", False)
    assert all(client.closed for client in cloud.opened)


def test_an_instance_no_node_reports_is_not_found_and_the_others_are_deleted(cloud):
    cloud.add_agent("h1")
    cloud.scheduler.selections = [selection(UUIDS[0], "h1")]
    cloud.boot()

    missing, deleted = cloud.delete([UUIDS[5], UUIDS[0]])

    assert (missing.ok, missing.not_found, missing.host) == (False, True, "")
    assert UUIDS[5] in missing.error
    assert deleted.ok and not deleted.not_found


def test_an_instance_the_agent_no_longer_has_is_not_found(cloud):
    h1 = cloud.add_agent("h1")
    cloud.scheduler.selections = [selection(UUIDS[0], "h1")]
    cloud.boot()
    listed = dict(h1.instances)
    h1.instances.clear()  # deleted behind the node service's back
    cloud.node.agents = {"h1": FakeAgent("h1")}
    cloud.node.agents["h1"].instances = listed

    (result,) = cloud.delete([UUIDS[0]])

    assert result.not_found and result.host == "h1"


def test_a_down_agent_is_reported_as_the_failure(cloud):
    cloud.add_agent("h1")
    cloud.scheduler.selections = [selection(UUIDS[0], "h1")]
    cloud.boot()
    cloud.registry.services["h1"].up = False

    (result,) = cloud.delete([UUIDS[0]])

    assert not result.ok and not result.not_found
    assert result.reason == "AGENT_DOWN" and "down" in result.error


def test_a_malformed_uuid_is_invalid_before_anything_is_deleted(cloud):
    with pytest.raises(errors.InvalidArgument) as caught:
        cloud.delete([UUIDS[0], "not-a-uuid"])

    assert caught.value.violations[0].field == "uuids[1]"
    assert not cloud.node.requests
