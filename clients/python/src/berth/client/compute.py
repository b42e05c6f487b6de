"""ComputeClient: typed, synchronous calls to one host's compute agent (ComputeAgentService)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from berth.client.base import BaseClient
from berth.client.paging import paginate
from berth.v1 import common_pb2, compute_pb2_grpc, host_pb2, node_pb2
from berth.v1 import compute_pb2 as pb


class ComputeClient(BaseClient[compute_pb2_grpc.ComputeAgentServiceStub]):
    """One compute agent: build and delete instances, power actions, maintenance."""

    server_name = "compute agent"
    stub_class = compute_pb2_grpc.ComputeAgentServiceStub

    def build_instance(
        self,
        uuid: str,
        *,
        project_id: str = "",
        user_id: str = "",
        vcpus: int = 0,
        memory_mb: int = 0,
        disk_gb: int = 0,
        nodename: str = "",
        claim_id: str = "",
        server_group: str = "",
        group_policy: common_pb2.GroupPolicy.ValueType = common_pb2.GROUP_POLICY_UNSPECIFIED,
        flavor_extra_specs: Mapping[str, str] | None = None,
        name: str = "",
        flavor_name: str = "",
    ) -> node_pb2.Instance:
        """Build an instance on `nodename` (one of this agent's nodes), consuming `claim_id`
        if the scheduler gave one; the agent's tracker has the final word on capacity, and
        refuses a node whose resource class is not the one `flavor_extra_specs` ask for
        (`resources:CUSTOM_<CLASS>=1`; none: a node of VMs). The server group, if any, and
        the flavor's extra specs are recorded on the instance, with its name and its flavor's
        name."""
        instance = node_pb2.Instance(
            uuid=uuid,
            project_id=project_id,
            user_id=user_id,
            resources=common_pb2.Resources(vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb),
            claim_id=claim_id,
            server_group=server_group,
            group_policy=group_policy,
            flavor_extra_specs=dict(flavor_extra_specs or {}),
            name=name,
            flavor_name=flavor_name,
        )
        request = pb.BuildInstanceRequest(instance=instance, nodename=nodename, claim_id=claim_id)
        return self._call(self._stub.BuildInstance, request).instance

    def delete_instance(self, uuid: str) -> None:
        """Destroy an instance and free its resources."""
        self._call(self._stub.DeleteInstance, pb.DeleteInstanceRequest(instance_uuid=uuid))

    def list_instances(self, nodename: str = "", page_size: int = 0) -> Iterator[node_pb2.Instance]:
        """The instances on this host (on `nodename` only, if given); pages fetched as you
        iterate."""
        request = pb.ListInstancesRequest(nodename=nodename, page_size=page_size)
        return paginate(self._list_instances, request, lambda page: page.instances)

    def _list_instances(self, request: pb.ListInstancesRequest) -> pb.ListInstancesResponse:
        return self._call(self._stub.ListInstances, request)

    def power_action(
        self, action: host_pb2.PowerAction.ValueType, nodename: str = ""
    ) -> pb.HostPowerActionResponse:
        """Start up, shut down or reboot the host (or one bare-metal node); UNIMPLEMENTED
        where the driver cannot."""
        request = pb.HostPowerActionRequest(action=action, nodename=nodename)
        return self._call(self._stub.HostPowerAction, request)

    def set_maintenance(self, enabled: bool) -> pb.MaintenanceStatus:
        """Enter (True) or leave (False) maintenance mode on this agent only: it then refuses
        new builds. Moving the host's instances away is the registry's host-update."""
        mode = host_pb2.MAINTENANCE_MODE_ENABLED if enabled else host_pb2.MAINTENANCE_MODE_DISABLED
        request = pb.SetMaintenanceRequest(mode=mode)
        return self._call(self._stub.SetMaintenance, request).status

    def get_maintenance(self) -> pb.MaintenanceStatus:
        """Whether the host is in maintenance (since when), and how many instances it holds."""
        return self._call(self._stub.GetMaintenance, pb.GetMaintenanceRequest()).status

    def __repr__(self) -> str:
        return f"ComputeClient(target={self.target!r})"
