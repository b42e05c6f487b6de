"""NodeClient: typed, synchronous calls to the node service (compute nodes, Nova's hypervisors)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from berth.client.base import BaseClient
from berth.client.errors import InvalidArgument, NotFound
from berth.client.paging import paginate
from berth.client.registry import looks_like_uuid
from berth.v1 import node_pb2 as pb
from berth.v1 import node_pb2_grpc

# ListNodeInstances filters on at most this many uuids.
LOOKUP_CHUNK = 1000


def node_ref(
    uuid: str | None = None, host: str | None = None, nodename: str | None = None
) -> pb.ComputeNodeRef:
    """A ComputeNodeRef from a uuid, or from both host and nodename."""
    if uuid:
        if host or nodename:
            raise InvalidArgument.field("node", "give a uuid or host and nodename, not both")
        return pb.ComputeNodeRef(uuid=uuid)
    if host and nodename:
        return pb.ComputeNodeRef(key=pb.ComputeNodeKey(host=host, nodename=nodename))
    raise InvalidArgument.field("node", "give a uuid, or both host and nodename")


class NodeClient(BaseClient[node_pb2_grpc.NodeServiceStub]):
    """The node service's NodeService: what every node can hold and holds now."""

    server_name = "node service"
    stub_class = node_pb2_grpc.NodeServiceStub

    def list_nodes(self, host: str = "", page_size: int = 0) -> Iterator[pb.ComputeNode]:
        """Every node (of `host`, if given); pages are fetched as you iterate."""
        request = pb.ListComputeNodesRequest(host=host, page_size=page_size)
        return paginate(self._list_nodes, request, lambda page: page.nodes)

    def _list_nodes(self, request: pb.ListComputeNodesRequest) -> pb.ListComputeNodesResponse:
        return self._call(self._stub.ListComputeNodes, request)

    def get_node(
        self, uuid: str | None = None, host: str | None = None, nodename: str | None = None
    ) -> pb.ComputeNode:
        """One node, by uuid or by (host, nodename)."""
        request = pb.GetComputeNodeRequest(node=node_ref(uuid, host, nodename))
        return self._call(self._stub.GetComputeNode, request).node

    def search_nodes(self, pattern: str, page_size: int = 0) -> Iterator[pb.ComputeNode]:
        """Nodes whose nodename contains `pattern`; pages are fetched as you iterate."""
        request = pb.SearchComputeNodesRequest(nodename_pattern=pattern, page_size=page_size)
        return paginate(self._search_nodes, request, lambda page: page.nodes)

    def _search_nodes(self, request: pb.SearchComputeNodesRequest) -> pb.SearchComputeNodesResponse:
        return self._call(self._stub.SearchComputeNodes, request)

    def statistics(self) -> pb.GetStatisticsResponse:
        """Counts and sums over every node (hypervisor-stats)."""
        return self._call(self._stub.GetStatistics, pb.GetStatisticsRequest())

    def node_instances(
        self,
        uuid: str | None = None,
        host: str | None = None,
        nodename: str | None = None,
        page_size: int = 0,
        instance_uuids: Iterable[str] = (),
        name: str = "",
    ) -> Iterator[pb.Instance]:
        """The instances of one node (uuid, or host and nodename), of every node of `host`
        when only the host is given, or of every node when neither is; only those among
        `instance_uuids` (at most 1,000) if given, only those called `name` if given. Pages
        are fetched as you iterate."""
        if uuid or nodename:
            request = pb.ListNodeInstancesRequest(
                node=node_ref(uuid, host, nodename), page_size=page_size
            )
        else:
            request = pb.ListNodeInstancesRequest(host=host or "", page_size=page_size)
        request.instance_uuids.extend(instance_uuids)
        request.name = name
        return paginate(self._node_instances, request, lambda page: page.instances)

    def instances_by_uuid(self, uuids: Iterable[str]) -> Iterator[pb.Instance]:
        """The instances of these uuids wherever they are, any number of them (asked
        LOOKUP_CHUNK at a time); one being moved may come from two nodes."""
        wanted = list(uuids)
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            yield from self.node_instances(instance_uuids=wanted[start : start + LOOKUP_CHUNK])

    def find_instance(self, name_or_uuid: str) -> str:
        """The uuid of the instance `name_or_uuid` names: a uuid as given, or the uuid of
        the one instance of that name. NotFound when none has it; InvalidArgument (reason
        AMBIGUOUS_NAME) naming each uuid when several do, as names need not be unique."""
        if looks_like_uuid(name_or_uuid):
            return name_or_uuid.strip()
        found = sorted({instance.uuid for instance in self.node_instances(name=name_or_uuid)})
        if not found:
            raise NotFound(
                f"no instance is named {name_or_uuid!r} (give its uuid, from berth server-list)",
                reason="INSTANCE_NOT_FOUND",
            )
        if len(found) > 1:
            raise InvalidArgument(
                f"{len(found)} instances are named {name_or_uuid!r} ({', '.join(found)}); "
                "give the uuid of the one you mean",
                reason="AMBIGUOUS_NAME",
            )
        return found[0]

    def _node_instances(self, request: pb.ListNodeInstancesRequest) -> pb.ListNodeInstancesResponse:
        return self._call(self._stub.ListNodeInstances, request)

    def host_usage(self, host: str) -> pb.GetHostUsageResponse:
        """Totals, used now, used max and per-project usage of one host."""
        return self._call(self._stub.GetHostUsage, pb.GetHostUsageRequest(host=host))

    def delete_node(
        self, uuid: str | None = None, host: str | None = None, nodename: str | None = None
    ) -> None:
        """Soft-delete one node and forget its instances."""
        request = pb.DeleteComputeNodeRequest(node=node_ref(uuid, host, nodename))
        self._call(self._stub.DeleteComputeNode, request)

    def delete_host_nodes(self, host: str) -> int:
        """Soft-delete every node of `host`; returns how many went. Refused while any has
        instances."""
        request = pb.DeleteHostNodesRequest(host=host)
        return int(self._call(self._stub.DeleteHostNodes, request).deleted)

    def report_snapshot(self, snapshot: pb.ResourceSnapshot) -> pb.ReportSnapshotResponse:
        """Push one ResourceTracker snapshot (what compute agents do)."""
        request = pb.ReportSnapshotRequest(snapshot=snapshot)
        return self._call(self._stub.ReportSnapshot, request)

    def watch_nodes(self, start_revision: int = 0) -> Iterator[pb.WatchComputeNodesResponse]:
        """Nodes as ADDED events, SYNCED, then every change; never ends on its own. Stop
        iterating (or close the iterator) to cancel the stream."""
        request = pb.WatchComputeNodesRequest(start_revision=start_revision)
        return self._stream(self._stub.WatchComputeNodes, request)

    def __repr__(self) -> str:
        return f"NodeClient(target={self.target!r})"
