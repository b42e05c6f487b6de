"""Server-group membership: who is in a group, and with which policy.

Two sources, one answer. An instance the scheduler just placed is a *pending* member in
Redis (written with its claims, kept as long as a claim lives); once built, the instance
carries its group and policy to the node service, which is the durable record. The members
are the union of both, so membership survives a flushed or lost Redis and a pending member
counts before its node reports it.

Members are read, filtered and claimed for without a lock, so two replicas placing members
of one group at once do not see each other's choice. Anti-affinity's last guard is the
agent (it refuses a second member; the client takes an alternate). Affinity cannot be
guarded by one agent, since the member it should refuse goes elsewhere: the group's host is
held in Redis instead (`hold_host`, atomic on the group's key), fixed by the first member
claimed, and a member claimed on any other host is released and placed again there.
"""

from __future__ import annotations

import functools

from berth.client.errors import InvalidArgument, Unavailable
from berth.v1 import node_pb2, node_pb2_grpc
from grpc import aio

from services.common import paging
from services.common.channels import call_metadata
from services.scheduler.request import GroupPolicy
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store.placement import PlacementStore


class ServerGroups:
    def __init__(
        self,
        settings: SchedulerSettings,
        store: PlacementStore,
        node_channel: aio.Channel | None,
    ) -> None:
        """Without a node channel only pending members count (benchmarks, unit tests)."""
        self._settings = settings
        self._store = store
        self._node = node_pb2_grpc.NodeServiceStub(node_channel) if node_channel else None

    async def members(self, name: str, policy: GroupPolicy) -> tuple[set[str], str]:
        """The group's instance uuids, and the host an affinity group's first member fixed
        ("" if none is held); INVALID_ARGUMENT when the group exists with another policy,
        UNAVAILABLE when the node service cannot say (a group rule is never checked
        against half the members)."""
        stored, pending, host = await self._store.group(name)
        policies = {GroupPolicy(stored)} if stored else set()
        members = set(pending)
        for instance in await self._built(name):
            members.add(instance.uuid)
            policies.add(GroupPolicy.from_proto(instance.group_policy))
        policies.discard(GroupPolicy.NONE)
        other = policies - {policy}
        if other:
            raise InvalidArgument.field(
                "spec.hints.group_policy",
                f"server group {name!r} has policy {other.pop().value}; "
                f"its members cannot be placed with {policy.value}",
            )
        return members, host

    async def hold_host(self, name: str, policy: GroupPolicy, host: str) -> str:
        """Where an affinity group lives: `host` when this member is the first to say, else
        the host an earlier member (of any replica) fixed."""
        return await self._store.hold_group_host(name, policy.value, host)

    async def add(self, name: str, policy: GroupPolicy, instance_uuids: list[str]) -> None:
        await self._store.add_group_members(name, policy.value, instance_uuids)

    async def _built(self, name: str) -> list[node_pb2.Instance]:
        if self._node is None:
            return []
        return await paging.every_item(
            functools.partial(self._ask_node, self._node, name),
            node_pb2.ListNodeInstancesRequest(server_group=name, page_size=paging.MAX_PAGE_SIZE),
            lambda page: page.instances,
        )

    async def _ask_node(
        self,
        node: node_pb2_grpc.NodeServiceAsyncStub,
        name: str,
        request: node_pb2.ListNodeInstancesRequest,
    ) -> node_pb2.ListNodeInstancesResponse:
        url = self._settings.node_url
        try:
            return await node.ListNodeInstances(
                request, metadata=call_metadata(self._settings, url), timeout=10
            )
        except aio.AioRpcError as exc:
            raise Unavailable(
                f"cannot read the members of server group {name!r} from the node service "
                f"at {url} ({exc.code().name}: {exc.details()}); retry when it is back",
                reason="NODE_SERVICE_UNAVAILABLE",
            ) from None
