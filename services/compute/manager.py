"""ComputeManager: the driver's nodes, one ResourceTracker each, and the instances on them.

driver.nodes() --(start, every update_resources_interval)--> one tracker per node
    new node      -> tracker + pusher, first snapshot
    known node    -> fresh inventory, snapshot
    vanished node -> tracker stopped; DeleteComputeNode; forgotten (unless it has instances)
BuildInstance  -> claim on the tracker + persist (under its lock) -> spawn -> ACTIVE, snapshot
                  (already here, same node and resources: answered as it is; see _rebuild)
DeleteInstance -> destroy -> forget + persist -> snapshot (its claim reported as released)
                  Both answer once the node service accepted that snapshot (report_soon).
SetMaintenance -> persist the flag; while set, BuildInstance refuses (HOST_IN_MAINTENANCE)
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from berth.client.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from berth.v1 import common_pb2, node_pb2_grpc

from services.common.supervise import stop_tasks, supervised
from services.compute.drivers.base import Driver, NodeInventory
from services.compute.pusher import REPORT_TIMEOUT_S, SnapshotPusher, delete_node
from services.compute.settings import ComputeSettings
from services.compute.snapshot_stream import SnapshotStream
from services.compute.state import AgentState, InstanceRecord, InstanceState
from services.compute.tracker import CapacityPolicy, Clock, ResourceTracker, utcnow

log = logging.getLogger(__name__)

_NAMED_IN_ERRORS = 10  # nodes listed in a "no such node" message; a rack may have thousands
IN_MAINTENANCE = "HOST_IN_MAINTENANCE"
# A retried build finds the instance in one of these and answers it as it is.
_BUILT = {InstanceState.ACTIVE, InstanceState.STOPPED}


class ComputeManager:
    """Owns the trackers; the servicer calls it, and it calls the driver and the state."""

    def __init__(
        self,
        settings: ComputeSettings,
        driver: Driver,
        state: AgentState,
        node_stub: node_pb2_grpc.NodeServiceAsyncStub | None,
        metadata: tuple[tuple[str, str], ...] = (),
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.host = settings.host
        self.driver = driver
        self.state = state
        self.trackers: dict[str, ResourceTracker] = {}
        self._settings = settings
        self._policy = CapacityPolicy.from_settings(settings)
        self._node_stub = node_stub
        self._metadata = metadata
        # Every node's snapshots go over one stream to the node service.
        self._snapshots = (
            SnapshotStream(node_stub, metadata, timeout_s=REPORT_TIMEOUT_S)
            if node_stub is not None
            else None
        )
        self._clock = clock
        self._refresh_lock = asyncio.Lock()
        self._kept: set[str] = set()  # vanished nodes kept for their instances (warned once)
        self._deletions: dict[str, asyncio.Task[None]] = {}
        self._periodic: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._node_stub is None:
            log.warning("BERTH_NODE_URL is empty: this agent's snapshots go nowhere")
        await self.refresh_nodes()
        self._periodic = supervised("refresh-nodes", self._refresh_forever)

    async def stop(self) -> None:
        await stop_tasks(self._periodic, *self._deletions.values())
        for tracker in self.trackers.values():
            if tracker.pusher is not None:
                await tracker.pusher.stop()
        if self._snapshots is not None:
            await self._snapshots.close()

    # -- nodes -------------------------------------------------------------------------

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.update_resources_interval)
            try:
                await self.refresh_nodes()
            except Exception:
                log.exception("cannot refresh the nodes from the driver; trying next interval")

    async def refresh_nodes(self) -> None:
        """Ask the driver for its nodes and bring the trackers in line; each reports."""
        async with self._refresh_lock:
            inventories = {inventory.nodename: inventory for inventory in await self.driver.nodes()}
            appeared = [i for name, i in inventories.items() if name not in self.trackers]
            for nodename, inventory in inventories.items():
                if nodename in self.trackers:
                    self.trackers[nodename].update_available_resource(inventory)
            forgotten: dict[str, str] = {}
            for nodename in (set(self.trackers) | self.state.nodenames()) - set(inventories):
                forgotten |= await self._node_vanished(nodename)
            new = [self._track(inventory) for inventory in appeared]
            if new or forgotten:
                # Node uuids are on disk before any snapshot carries them: once per refresh,
                # as a rack of thousands of nodes appears at once.
                await self.state.persist()
            for tracker in new:
                self._start_reporting(tracker)
            for nodename, node_uuid in forgotten.items():
                self._forget_in_node_service(nodename, node_uuid)

    def _track(self, inventory: NodeInventory) -> ResourceTracker:
        nodename = inventory.nodename
        self._kept.discard(nodename)
        pending = self._deletions.pop(nodename, None)
        if pending is not None:  # it came back before the node service heard it was gone
            pending.cancel()
        node_uuid = self.state.node_uuid(nodename, inventory.uuid)
        tracker = ResourceTracker(
            self.host, inventory, node_uuid, self.state, self._policy, clock=self._clock
        )
        self.trackers[nodename] = tracker
        return tracker

    def _start_reporting(self, tracker: ResourceTracker) -> None:
        if self._snapshots is not None:
            tracker.pusher = SnapshotPusher(
                self._snapshots,
                node_service=self._settings.node_url,
                on_node_uuid=functools.partial(self._node_uuid_reported, tracker),
            )
            tracker.pusher.start(tracker.nodename)
        tracker.queue_snapshot()
        inventory = tracker.inventory
        log.info(
            "node appeared",
            extra={
                "node": tracker.nodename,
                "node_uuid": tracker.node_uuid,
                "hypervisor_type": inventory.hypervisor_type,
                "vcpus": inventory.total.vcpus,
                "memory_mb": inventory.total.memory_mb,
                "disk_gb": inventory.total.disk_gb,
                "instances": len(self.state.instances_on(tracker.nodename)),
            },
        )

    async def _node_vanished(self, nodename: str) -> dict[str, str]:
        """Stop tracking a node the driver no longer reports -> {nodename: uuid} if forgotten."""
        tracker = self.trackers.pop(nodename, None)
        if tracker is not None and tracker.pusher is not None:
            await tracker.pusher.stop()
        holding = len(self.state.instances_on(nodename))
        if holding:
            if nodename not in self._kept:
                self._kept.add(nodename)
                log.warning(
                    "node vanished from the driver but still holds instances; keeping it",
                    extra={"node": nodename, "instances": holding},
                )
            return {}
        node_uuid = self.state.node_uuids.get(nodename, "")
        self.state.forget_node(nodename)
        log.info("node vanished", extra={"node": nodename, "node_uuid": node_uuid or "-"})
        return {nodename: node_uuid} if node_uuid else {}

    def _forget_in_node_service(self, nodename: str, node_uuid: str) -> None:
        if self._node_stub is None:
            return
        task = asyncio.create_task(
            delete_node(self._node_stub, self._metadata, nodename, node_uuid),
            name=f"delete-node:{nodename}",
        )
        self._deletions[nodename] = task
        task.add_done_callback(functools.partial(self._deletion_done, nodename))

    async def wait_nodes_deleted(self, timeout_s: float | None = None) -> None:
        """Wait until the node service has heard of every vanished node (or given up)."""
        async with asyncio.timeout(timeout_s):
            while self._deletions:
                await asyncio.wait(list(self._deletions.values()))

    def _deletion_done(self, nodename: str, task: asyncio.Task[None]) -> None:
        if self._deletions.get(nodename) is task:
            del self._deletions[nodename]

    async def _node_uuid_reported(self, tracker: ResourceTracker, node_uuid: str) -> None:
        """The node service knows the node under another uuid (a replaced state file?).
        It is the authority on node identity, unless the driver has its own."""
        fields = {"node": tracker.nodename, "ours": tracker.node_uuid, "node_service": node_uuid}
        if tracker.inventory.uuid is not None:
            log.error("the node service has another uuid for a driver-named node", extra=fields)
            return
        log.warning(
            "the node service knows this node under another uuid; adopting it", extra=fields
        )
        tracker.node_uuid = node_uuid
        self.state.node_uuids[tracker.nodename] = node_uuid
        await self.state.persist()

    def tracker_for(self, nodename: str) -> ResourceTracker:
        """The node named, or the only node when no name is given."""
        if not self.trackers:
            raise FailedPrecondition(
                f"host {self.host} has no nodes: its driver reports none", reason="NO_NODES"
            )
        if not nodename:
            if len(self.trackers) == 1:
                return next(iter(self.trackers.values()))
            raise InvalidArgument.field(
                "nodename",
                f"must name a node: host {self.host} has {len(self.trackers)} "
                f"({self._some_nodes()})",
            )
        tracker = self.trackers.get(nodename)
        if tracker is None:
            raise NotFound(
                f"no node {nodename!r} on host {self.host}; nodes: {self._some_nodes()}",
                reason="NODE_NOT_FOUND",
                metadata={"host": self.host, "nodename": nodename},
            )
        return tracker

    def _some_nodes(self) -> str:
        names = sorted(self.trackers)
        shown = ", ".join(names[:_NAMED_IN_ERRORS])
        more = len(names) - _NAMED_IN_ERRORS
        return f"{shown}, … ({len(names)} in all)" if more > 0 else shown or "none"

    # -- instances ---------------------------------------------------------------------

    async def build_instance(self, request: InstanceRecord) -> tuple[InstanceRecord, str]:
        """Claim, spawn and record `request` on its node -> (the ACTIVE instance, node uuid)."""
        tracker = self.tracker_for(request.nodename)
        record = replace(request, nodename=tracker.nodename, state=InstanceState.BUILDING)
        async with tracker.lock:
            existing = self.state.find(record.uuid)
            if existing is not None:
                if self._rebuild(existing, record) is existing:
                    return existing, tracker.node_uuid
                self._admit(record)
                # An interrupted build: its resources are still held on this node.
                self.state.put(record)
                await self.state.persist()
            else:
                self._admit(record)
                tracker.instance_claim(record)
                await self._persist_or_forget(record.uuid)
        tracker.queue_snapshot()
        try:
            await self.driver.spawn(record, tracker.nodename)
        except BaseException as exc:  # cancelled calls too: the claim must not outlive the build
            async with tracker.lock:
                self.state.remove(record.uuid)
                await self.state.persist()
            tracker.claim_ended(record.claim_id)
            tracker.queue_snapshot()
            log.warning(
                "instance build failed; claim released",
                extra={"instance": record.uuid, "node": record.nodename, "error": repr(exc)},
            )
            raise
        record = replace(record, state=InstanceState.ACTIVE)
        async with tracker.lock:
            self.state.put(record)
            await self.state.persist()
        await tracker.report_soon(tracker.queue_snapshot())
        log.info(
            "instance built",
            extra={
                "instance": record.uuid,
                "project": record.project_id,
                "node": record.nodename,
                "claim": record.claim_id or "-",
                "vcpus": record.resources.vcpus,
                "memory_mb": record.resources.memory_mb,
                "disk_gb": record.resources.disk_gb,
            },
        )
        return record, tracker.node_uuid

    def _rebuild(self, existing: InstanceRecord, request: InstanceRecord) -> InstanceRecord | None:
        """A build of an instance this agent already has: a retry (the caller lost the answer,
        or a maintenance move resumes). The same node and resources: `existing` when it is
        built, None when a stop interrupted its build (ERROR: spawn it again). Anything else
        is refused."""
        where = {"instance": request.uuid, "nodename": existing.nodename}
        if existing.nodename != request.nodename or existing.resources != request.resources:
            raise AlreadyExists(
                f"instance {request.uuid} already exists on node {existing.nodename} with "
                f"{existing.resources.vcpus} vCPUs, {existing.resources.memory_mb} MiB, "
                f"{existing.resources.disk_gb} GiB",
                reason="INSTANCE_EXISTS",
                metadata=where,
            )
        if existing.state in _BUILT:
            log.info("instance already built; build retried", extra={"instance": request.uuid})
            return existing
        if existing.state is not InstanceState.ERROR:
            raise FailedPrecondition(
                f"instance {request.uuid} is {existing.state.value.lower()}; retry when that ends",
                reason="INSTANCE_BUSY",
                metadata=where,
            )
        return None

    def _admit(self, record: InstanceRecord) -> None:
        """The host-wide checks of a build, made with no await between them and recording
        the instance, so two concurrent builds cannot both pass."""
        self._refuse_in_maintenance(record)
        self._refuse_group_conflict(record)

    def _refuse_group_conflict(self, record: InstanceRecord) -> None:
        """Anti-affinity's last guard, as Nova's compute re-checks the group policy: two
        scheduler replicas placing members of one group at once may both choose this
        host; the second build is refused and the client takes its alternate."""
        if record.group_policy != common_pb2.GROUP_POLICY_ANTI_AFFINITY:
            return
        for other in self.state.all_instances():
            if other.server_group == record.server_group and other.uuid != record.uuid:
                raise FailedPrecondition(
                    f"host {self.host} already holds instance {other.uuid} of anti-affinity "
                    f"server group {record.server_group!r}",
                    reason="GROUP_POLICY_VIOLATION",
                    metadata={"host": self.host, "instance": record.uuid, "member": other.uuid},
                )

    def _refuse_in_maintenance(self, record: InstanceRecord) -> None:
        if self.state.maintenance_since is not None:
            raise FailedPrecondition(
                f"host {self.host} is in maintenance and takes no new instances",
                reason=IN_MAINTENANCE,
                metadata={"host": self.host, "instance": record.uuid},
            )

    # -- maintenance -------------------------------------------------------------------

    async def set_maintenance(self, enabled: bool) -> None:
        """Enter or leave maintenance (idempotent). A build that passed the check before
        this is already recorded, so whoever lists the instances afterwards sees it."""
        if enabled == (self.state.maintenance_since is not None):
            return
        before = self.state.maintenance_since
        self.state.maintenance_since = self._clock() if enabled else None
        try:
            await self.state.persist()
        except BaseException:
            self.state.maintenance_since = before
            raise
        log.info(
            "host entered maintenance: new builds are refused"
            if enabled
            else "host left maintenance: builds are accepted again",
            extra={"host": self.host, "instances": self.instance_count()},
        )

    def maintenance(self) -> tuple[datetime | None, int]:
        """(when the host entered maintenance or None, how many instances it holds)."""
        return self.state.maintenance_since, self.instance_count()

    def instance_count(self) -> int:
        return sum(1 for _ in self.state.all_instances())

    async def _persist_or_forget(self, instance_uuid: str) -> None:
        """Persist a new claim; if the disk refuses, the claim is dropped, not half-kept."""
        try:
            await self.state.persist()
        except BaseException:
            self.state.remove(instance_uuid)
            raise

    async def delete_instance(self, instance_uuid: str) -> None:
        record = self._find(instance_uuid)
        tracker = self.trackers.get(record.nodename)
        async with tracker.lock if tracker is not None else asyncio.Lock():
            record = self._find(instance_uuid)  # a concurrent delete may have won
            if record.state is InstanceState.BUILDING:
                raise FailedPrecondition(
                    f"instance {instance_uuid} is still building; delete it when the build ends",
                    reason="INSTANCE_BUSY",
                    metadata={"instance": instance_uuid},
                )
            await self.driver.destroy(record)
            self.state.remove(instance_uuid)
            await self.state.persist()
        if tracker is not None:
            tracker.claim_ended(record.claim_id)
            await tracker.report_soon(tracker.queue_snapshot())
        log.info(
            "instance deleted",
            extra={
                "instance": instance_uuid,
                "node": record.nodename,
                "claim": record.claim_id or "-",
            },
        )

    def _find(self, instance_uuid: str) -> InstanceRecord:
        record = self.state.find(instance_uuid)
        if record is None:
            raise NotFound(
                f"no instance {instance_uuid} on host {self.host}",
                reason="INSTANCE_NOT_FOUND",
                metadata={"instance": instance_uuid},
            )
        return record

    def list_instances(self, nodename: str, after: str | None, limit: int) -> list[InstanceRecord]:
        """Instances by uuid after `after`, on `nodename` if given (NOT_FOUND if unknown)."""
        if nodename and nodename not in self.trackers and nodename not in self.state.nodenames():
            self.tracker_for(nodename)  # raises NOT_FOUND naming the nodes
        records: Iterable[InstanceRecord] = (
            self.state.instances_on(nodename).values() if nodename else self.state.all_instances()
        )
        ordered = sorted((r for r in records if after is None or r.uuid > after), key=_uuid)
        return ordered[:limit]

    def node_uuid_of(self, record: InstanceRecord) -> str:
        return self.state.node_uuids.get(record.nodename, "")


def _uuid(record: InstanceRecord) -> str:
    return record.uuid
