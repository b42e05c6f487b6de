"""Fake registry, node, scheduler and compute agent clients for CLI tests: record each call,
answer from canned data."""

from __future__ import annotations

import io
from typing import Any

from berth.cli.main import main
from berth.client import errors
from berth.client.node import NodeClient
from berth.v1 import common_pb2
from berth.v1 import host_pb2 as hpb
from berth.v1 import node_pb2 as npb
from berth.v1 import registry_pb2 as pb
from berth.v1 import scheduler_pb2 as spb
from google.protobuf.timestamp_pb2 import Timestamp

UUID = "6f1c1f9e-2a1b-4c3d-8e9f-0a1b2c3d4e5f"
AGG_UUID = "0b8d7c1e-1111-4222-8333-944455556666"


def service(**fields: Any) -> pb.Service:
    defaults: dict[str, Any] = dict(
        uuid=UUID,
        host="cmp1",
        binary="berth-compute",
        availability_zone="nova",
        up=True,
        last_seen_up=Timestamp(seconds=1_700_000_000, nanos=123_456_000),
    )
    defaults.update(fields)
    return pb.Service(**defaults)


def aggregate(**fields: Any) -> pb.Aggregate:
    defaults: dict[str, Any] = dict(
        uuid=AGG_UUID,
        name="rack1",
        availability_zone="az1",
        hosts=["cmp1", "cmp2"],
        metadata={"availability_zone": "az1", "ssd": "true"},
    )
    defaults.update(fields)
    return pb.Aggregate(**defaults)


class FakeRegistry:
    """Stands in for RegistryClient (and, as `.hosts`, for HostClient)."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail = fail or {}
        down = service(
            uuid="u2",
            host="cmp2",
            disabled=True,
            up=False,
            disabled_reason="bad disk",
            forced_down=True,
        )
        self.services = [service(), down]
        self.closed = False

    def __enter__(self) -> FakeRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    @property
    def hosts(self) -> FakeRegistry:
        return self

    def _record(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        if method in self.fail:
            raise self.fail[method]

    def list_services(self, **kwargs: Any) -> Any:
        self._record("list_services", **kwargs)
        return iter(self.services)

    def get_service(self, **kwargs: Any) -> pb.Service:
        """A compute service serves its agent on HOST:50054 unless it says otherwise."""
        self._record("get_service", **kwargs)
        for candidate in self.services:
            if (candidate.host, candidate.binary) == (kwargs.get("host"), kwargs.get("binary")):
                found = pb.Service()
                found.CopyFrom(candidate)
                found.endpoint = found.endpoint or f"{found.host}:50054"
                return found
        raise errors.NotFound(f"no service {kwargs.get('binary')} on host {kwargs.get('host')}")

    def enable_service(self, **kwargs: Any) -> pb.Service:
        self._record("enable_service", **kwargs)
        return service()

    def disable_service(self, **kwargs: Any) -> pb.Service:
        self._record("disable_service", **kwargs)
        return service(disabled=True, disabled_reason=kwargs.get("reason", ""))

    def force_down(self, **kwargs: Any) -> pb.Service:
        self._record("force_down", **kwargs)
        return service(forced_down=not kwargs.get("unset"))

    def delete_service(self, **kwargs: Any) -> None:
        self._record("delete_service", **kwargs)

    def list_hosts(self, **kwargs: Any) -> Any:
        self._record("list_hosts", **kwargs)
        return iter(
            [
                hpb.HostSummary(host_name="cmp1", service="compute", zone="nova"),
                hpb.HostSummary(host_name="ctl1", service="registry", zone="internal"),
            ]
        )

    def describe_host(self, host: str) -> list[hpb.HostResourceRow]:
        self._record("describe_host", host)
        total = common_pb2.Resources(vcpus=16, memory_mb=65536, disk_gb=900)
        used = common_pb2.Resources(vcpus=4, memory_mb=8192, disk_gb=80)
        used_max = common_pb2.Resources(vcpus=3, memory_mb=6144, disk_gb=60)
        return [
            hpb.HostResourceRow(host=host, project="(total)", resources=total),
            hpb.HostResourceRow(host=host, project="(used_now)", resources=used),
            hpb.HostResourceRow(host=host, project="(used_max)", resources=used_max),
            hpb.HostResourceRow(
                host=host,
                project="p-alpha",
                resources=common_pb2.Resources(vcpus=2, memory_mb=4096, disk_gb=40),
            ),
            hpb.HostResourceRow(
                host=host,
                project="p-beta",
                resources=common_pb2.Resources(vcpus=1, memory_mb=2048, disk_gb=20),
            ),
        ]

    def update_host(self, host: str, **kwargs: Any) -> Any:
        """Streams `self.progress` (default: one answer, done)."""
        self._record("update_host", host, **kwargs)
        return iter(getattr(self, "progress", [hpb.UpdateHostResponse(host=host, done=True)]))

    def list_migrations(self, host: str = "") -> list[hpb.Migration]:
        """Two moves off cmp1 (one failed, one done) and one off cmp2, not in host order."""
        self._record("list_migrations", host)
        moves = [
            hpb.Migration(instance_uuid="inst-2", source_host="cmp2", state="pending"),
            hpb.Migration(
                instance_uuid="inst-9",
                source_host="cmp1",
                state="failed",
                reason="no room for it in the aggregate",
            ),
            hpb.Migration(
                instance_uuid="inst-1",
                source_host="cmp1",
                dest_host="cmp3",
                dest_node="cmp3",
                state="done",
                updated_at=Timestamp(seconds=1_700_000_000),
            ),
        ]
        return [m for m in moves if not host or m.source_host == host]

    def host_action(self, host: str, action: str, **kwargs: Any) -> hpb.HostActionResponse:
        """A bare-metal host (ironic-1) answers each of its two nodes' power; others a result."""
        self._record("host_action", host, action, **kwargs)
        number = hpb.PowerAction.Value(f"POWER_ACTION_{action.upper()}")
        done = hpb.HostActionResponse(
            host=host,
            action=number,
            result="rebooting" if host != "ironic-1" else "powered off 2 nodes through the BMC",
            requested_at=Timestamp(seconds=1_700_000_000, nanos=250_000_000),
        )
        if host == "ironic-1":
            for name in ("bm-0", "bm-1"):
                done.nodes.add(nodename=name, power_state=hpb.POWER_STATE_OFF)
        return done

    def create_aggregate(self, name: str, **kwargs: Any) -> pb.Aggregate:
        self._record("create_aggregate", name, **kwargs)
        return aggregate(name=name, availability_zone=kwargs.get("availability_zone", ""))

    def delete_aggregate(self, name: str) -> None:
        self._record("delete_aggregate", name)

    def list_aggregates(self) -> Any:
        self._record("list_aggregates")
        return iter([aggregate(), aggregate(uuid="a2", name="rack2", availability_zone="")])

    def get_aggregate(self, name: str) -> pb.Aggregate:
        self._record("get_aggregate", name)
        return aggregate(name=name)

    def add_aggregate_host(self, name: str, host: str) -> pb.Aggregate:
        self._record("add_aggregate_host", name, host)
        return aggregate(name=name)

    def remove_aggregate_host(self, name: str, host: str) -> pb.Aggregate:
        self._record("remove_aggregate_host", name, host)
        return aggregate(name=name, hosts=["cmp2"])

    def set_aggregate_metadata(self, name: str, metadata: dict[str, str]) -> pb.Aggregate:
        self._record("set_aggregate_metadata", name, metadata)
        return aggregate(name=name)

    def update_aggregate(self, which: str, /, **kwargs: Any) -> pb.Aggregate:
        self._record("update_aggregate", which, **kwargs)
        return aggregate(name=kwargs.get("name") or which)


NODE_UUID = "3d0c5a8e-7b6f-4e1d-9c2b-1a2b3c4d5e6f"
IRONIC_UUID = "9a9a9a9a-1b1b-4c4c-8d8d-0e0e0e0e0e0e"


# What an ironic node states besides its hypervisor type.
BARE_METAL: dict[str, Any] = {
    "hypervisor_type": "ironic",
    "resource_class": "CUSTOM_BAREMETAL_GOLD",
    "whole_machine": True,
}


def node(**fields: Any) -> npb.ComputeNode:
    defaults: dict[str, Any] = dict(
        uuid=NODE_UUID,
        host="cmp1",
        nodename="cmp1",
        hypervisor_type="fake",
        hypervisor_version="1.0",
        cpu_info='{"arch": "x86_64"}',
        total=common_pb2.Resources(vcpus=16, memory_mb=65536, disk_gb=900),
        used=common_pb2.Resources(vcpus=4, memory_mb=8704, disk_gb=80),
        free_ram_mb=56832,
        free_disk_gb=820,
        disk_available_least_gb=800,
        running_vms=2,
        current_workload=1,
        host_ip="192.0.2.10",
        cpu_allocation_ratio=16.0,
        ram_allocation_ratio=1.5,
        disk_allocation_ratio=1.0,
        reserved_host_memory_mb=512,
        reserved_host_disk_mb=0,
        reserved_host_cpus=0,
        pci_device_pools=[
            npb.PciDevicePool(vendor_id="8086", product_id="1520", count=4),
            npb.PciDevicePool(vendor_id="10de", product_id="1db4", count=2),
        ],
        numa_topology=npb.NumaTopology(
            cells=[
                npb.NumaCell(id=0, cpus=[0, 1, 2, 3], memory_mb=32768, cpu_usage=2),
                npb.NumaCell(id=1, cpus=[4, 5, 6, 7], memory_mb=32768, memory_usage_mb=4096),
            ]
        ),
        supported_instances=["x86_64/fake/hvm", "i686/fake/hvm"],
        generation=7,
        created_at=Timestamp(seconds=1_700_000_000),
        updated_at=Timestamp(seconds=1_700_000_060, nanos=500_000_000),
    )
    defaults.update(fields)
    return npb.ComputeNode(**defaults)


def instance(**fields: Any) -> npb.Instance:
    defaults: dict[str, Any] = dict(
        uuid="inst-1",
        name="web-1",
        flavor_name="m1.medium",
        project_id="p-alpha",
        user_id="u-1",
        resources=common_pb2.Resources(vcpus=2, memory_mb=4096, disk_gb=40),
        state=npb.INSTANCE_STATE_ACTIVE,
        node_uuid=NODE_UUID,
        host="cmp1",
        nodename="cmp1",
    )
    defaults.update(fields)
    return npb.Instance(**defaults)


class FakeNode:
    """Stands in for NodeClient: cmp1 (one node, up), cmp2 (one node, its service down and
    disabled), ironic-1 (two bare-metal nodes, no compute service) and `shared`, a
    nodename two hosts have."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail = fail or {}
        self.closed = False
        self.nodes = [
            node(),
            node(uuid="n2", host="cmp2", nodename="cmp2"),
            node(uuid=IRONIC_UUID, host="ironic-1", nodename="bm-0", **BARE_METAL),
            node(uuid="n4", host="ironic-1", nodename="bm-1", **BARE_METAL),
            node(uuid="n5", host="cmp1", nodename="shared"),
            node(uuid="n6", host="cmp2", nodename="shared"),
        ]

    def __enter__(self) -> FakeNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def _record(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        if method in self.fail:
            raise self.fail[method]

    def list_nodes(self, **kwargs: Any) -> Any:
        self._record("list_nodes", **kwargs)
        host = kwargs.get("host", "")
        return iter([n for n in self.nodes if not host or n.host == host])

    def get_node(self, **kwargs: Any) -> npb.ComputeNode:
        self._record("get_node", **kwargs)
        for candidate in self.nodes:
            if candidate.uuid == kwargs.get("uuid") or (
                (candidate.host, candidate.nodename) == (kwargs.get("host"), kwargs.get("nodename"))
            ):
                return candidate
        raise errors.NotFound("no such compute node")

    def search_nodes(self, pattern: str) -> Any:
        self._record("search_nodes", pattern)
        return iter([n for n in self.nodes if pattern in n.nodename])

    def statistics(self) -> npb.GetStatisticsResponse:
        self._record("statistics")
        return npb.GetStatisticsResponse(
            count=3,
            total=common_pb2.Resources(vcpus=48, memory_mb=196608, disk_gb=2700),
            used=common_pb2.Resources(vcpus=12, memory_mb=26112, disk_gb=240),
            free_ram_mb=170496,
            free_disk_gb=2460,
            disk_available_least_gb=2400,
            running_vms=6,
            current_workload=1,
        )

    instances = (
        instance(),
        instance(
            uuid="inst-2",
            name="",
            flavor_name="",
            project_id="",
            user_id="",
            state=npb.INSTANCE_STATE_UNSPECIFIED,
        ),
    )

    # The real client's lookups, over the canned node_instances below.
    find_instance = NodeClient.find_instance
    instances_by_uuid = NodeClient.instances_by_uuid

    def node_instances(self, **kwargs: Any) -> Any:
        self._record("node_instances", **kwargs)
        wanted = set(kwargs.get("instance_uuids", ()))
        name = kwargs.get("name", "")
        return iter(
            [
                i
                for i in self.instances
                if (not wanted or i.uuid in wanted) and (not name or i.name == name)
            ]
        )


def claim(instance_uuid: str, host: str) -> spb.Claim:
    return spb.Claim(
        claim_id=f"claim-{instance_uuid[:8]}-{host}",
        instance_uuid=instance_uuid,
        host=host,
        nodename=host,
        node_uuid=f"node-{host}",
        resources=common_pb2.Resources(vcpus=1, memory_mb=2048, disk_gb=20),
    )


def host_state(**fields: Any) -> spb.HostState:
    defaults: dict[str, Any] = dict(
        node_uuid=NODE_UUID,
        host="cmp1",
        nodename="cmp1",
        total=common_pb2.Resources(vcpus=16, memory_mb=65536, disk_gb=900),
        used=common_pb2.Resources(vcpus=4, memory_mb=8704, disk_gb=80),
        claimed=common_pb2.Resources(vcpus=1, memory_mb=2048, disk_gb=20),
        cpu_allocation_ratio=16.0,
        ram_allocation_ratio=1.5,
        disk_allocation_ratio=1.0,
        service_up=True,
        availability_zone="nova",
        hypervisor_type="fake",
        num_instances=2,
        generation=7,
        pending_claims=[claim("6f1c1f9e-0000-4000-8000-000000000001", "cmp1")],
    )
    defaults.update(fields)
    return spb.HostState(**defaults)


class FakeScheduler:
    """Stands in for SchedulerClient: every instance's primary on the hosts of `plan` in
    order (cmp1, then cmp2 as its alternate); releases are recorded."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail = fail or {}
        self.closed = False
        self.plan = ["cmp1", "cmp2"]
        self.released: list[str] = []
        self.states = [
            host_state(),
            host_state(
                node_uuid=IRONIC_UUID,
                host="ironic-1",
                nodename="bm-0",
                hypervisor_type="ironic",
                total=common_pb2.Resources(vcpus=32, memory_mb=131072, disk_gb=1000),
                used=common_pb2.Resources(),
                claimed=common_pb2.Resources(),
                service_up=False,
                service_disabled=True,
                availability_zone="",
                num_instances=0,
                generation=3,
                pending_claims=[],
            ),
        ]

    def __enter__(self) -> FakeScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def _record(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        if method in self.fail:
            raise self.fail[method]

    def select_destinations(self, spec: spb.RequestSpec) -> list[spb.Selection]:
        self._record("select_destinations", spec)
        selections = []
        for uuid in spec.instance_uuids:
            primary, *alternates = [claim(uuid, host) for host in self.plan]
            selections.append(
                spb.Selection(instance_uuid=uuid, primary=primary, alternates=alternates)
            )
        return selections

    def release_claims(self, claim_ids: Any) -> int:
        ids = list(claim_ids)
        self._record("release_claims", ids)
        self.released += ids
        return len(ids)

    def list_host_states(self, **kwargs: Any) -> Any:
        self._record("list_host_states", **kwargs)
        host = kwargs.get("host", "")
        return iter([s for s in self.states if not host or s.host == host])

    def resync(self) -> spb.ResyncResponse:
        self._record("resync")
        return spb.ResyncResponse(nodes=6, services=3, duration_ms=42)


class FakeAgent:
    """Stands in for one host's ComputeClient; `refusal` makes every build fail with it."""

    def __init__(self, endpoint: str, refusal: BaseException | None = None) -> None:
        self.endpoint = endpoint
        self.refusal = refusal
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def build_instance(self, uuid: str, **kwargs: Any) -> npb.Instance:
        self.calls.append(("build_instance", (uuid,), kwargs))
        if self.refusal is not None:
            raise self.refusal
        host = self.endpoint.split(":")[0]
        return instance(uuid=uuid, host=host, nodename=kwargs["nodename"], node_uuid=f"node-{host}")

    def delete_instance(self, uuid: str) -> None:
        self.calls.append(("delete_instance", (uuid,), {}))
        if self.refusal is not None:
            raise self.refusal


class Run:
    """One `berth` invocation against a FakeRegistry, a FakeNode, a FakeScheduler and a
    FakeAgent per endpoint (made on first use unless given): exit code, output."""

    def __init__(
        self,
        argv: list[str],
        fake: FakeRegistry | None = None,
        env: dict | None = None,
        node: FakeNode | None = None,
        scheduler: FakeScheduler | None = None,
        agents: dict[str, FakeAgent] | None = None,
    ) -> None:
        self.fake = fake or FakeRegistry()
        self.node = node or FakeNode()
        self.scheduler = scheduler or FakeScheduler()
        self.agents = agents if agents is not None else {}
        self.connected: list[Any] = []
        self.servers: list[str] = []
        out, err = io.StringIO(), io.StringIO()

        def connect(args: Any, server: str = "registry", target: str = "") -> Any:
            self.connected.append(args)
            self.servers.append(server)
            if server == "compute":
                return self.agents.setdefault(target, FakeAgent(target))
            return {"node": self.node, "scheduler": self.scheduler}.get(server, self.fake)

        self.code = main(argv, connect=connect, env=env or {}, stdout=out, stderr=err)
        self.out, self.err = out.getvalue(), err.getvalue()
