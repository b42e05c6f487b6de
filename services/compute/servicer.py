"""ComputeAgentService over gRPC: validate the request, call the manager, answer in protos."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import cast

from berth.client.errors import InvalidArgument
from berth.v1 import common_pb2, compute_pb2, compute_pb2_grpc, host_pb2

from services.common import paging, validation
from services.compute import power
from services.compute.drivers.base import AfterAnswer, PowerOutcome
from services.compute.manager import ComputeManager
from services.compute.settings import MAX_DISK_GB, MAX_MEMORY_MB, MAX_VCPUS
from services.compute.state import InstanceRecord, InstanceState, Resources, extra_specs

_LIMITS = (("vcpus", MAX_VCPUS), ("memory_mb", MAX_MEMORY_MB), ("disk_gb", MAX_DISK_GB))
# As many extra specs as the scheduler takes in one flavor.
MAX_EXTRA_SPECS = 100


def resources(field: str, message: common_pb2.Resources) -> Resources:
    for name, limit in _LIMITS:
        value = getattr(message, name)
        if not 0 <= value <= limit:
            raise InvalidArgument.field(
                f"{field}.{name}", f"must be from 0 to {limit} (got {value})"
            )
    return Resources.from_proto(message)


def flavor_extra_specs(field: str, specs: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A flavor's extra specs, bounded and printable, asking for at most one resource class."""
    if len(specs) > MAX_EXTRA_SPECS:
        raise InvalidArgument.field(field, f"at most {MAX_EXTRA_SPECS} (got {len(specs)})")
    for key, value in specs.items():
        validation.name(field, key)
        validation.text(f"{field}[{key}]", value)
    return extra_specs(specs)


def build_request(request: compute_pb2.BuildInstanceRequest) -> InstanceRecord:
    """The instance a BuildInstance asks for, every field checked."""
    if not request.HasField("instance"):
        raise InvalidArgument.field("instance", "is required")
    instance = request.instance
    # The claim may ride on the request or on the instance; the request's wins. Claim ids
    # are uuid-sized; the node service takes at most 64 characters.
    claim_id = validation.text("claim_id", request.claim_id or instance.claim_id, max_length=64)
    return InstanceRecord(
        uuid=validation.uuid("instance.uuid", instance.uuid),
        project_id=validation.name("instance.project_id", instance.project_id),
        user_id=validation.name("instance.user_id", instance.user_id, required=False),
        resources=resources("instance.resources", instance.resources),
        state=InstanceState.BUILDING,
        claim_id=claim_id,
        nodename=validation.name("nodename", request.nodename, required=False),
        server_group=validation.name(
            "instance.server_group", instance.server_group, required=False
        ),
        group_policy=cast(
            "common_pb2.GroupPolicy.ValueType",
            validation.enum(
                "instance.group_policy",
                instance.group_policy,
                common_pb2.GroupPolicy,
                allow_unspecified=True,
            ),
        ),
        flavor_extra_specs=flavor_extra_specs(
            "instance.flavor_extra_specs", instance.flavor_extra_specs
        ),
        name=validation.text("instance.name", instance.name),
        flavor_name=validation.text("instance.flavor_name", instance.flavor_name),
        created_at=datetime.now(UTC),
    )


class ComputeAgentServicer(compute_pb2_grpc.ComputeAgentServiceServicer):
    def __init__(
        self, manager: ComputeManager, after_power: Callable[[PowerOutcome], None]
    ) -> None:
        self._manager = manager
        # Called once a power action's answer is out: the agent stops or reboots itself.
        self._after_power = after_power

    async def BuildInstance(self, request, context):
        built, node_uuid = await self._manager.build_instance(build_request(request))
        return compute_pb2.BuildInstanceResponse(
            instance=built.to_proto(self._manager.host, node_uuid)
        )

    async def DeleteInstance(self, request, context):
        await self._manager.delete_instance(validation.uuid("instance_uuid", request.instance_uuid))
        return compute_pb2.DeleteInstanceResponse()

    async def ListInstances(self, request, context):
        nodename = validation.name("nodename", request.nodename, required=False)
        query = ("instances", nodename)
        page = paging.read_page(request.page_size, request.page_token, query)
        after = page.after if isinstance(page.after, str) else None
        rows = self._manager.list_instances(nodename, after, page.size + 1)
        host = self._manager.host
        return compute_pb2.ListInstancesResponse(
            instances=[r.to_proto(host, self._manager.node_uuid_of(r)) for r in rows[: page.size]],
            next_page_token=paging.next_token(list(rows), page, "uuid", query),
        )

    async def HostPowerAction(self, request, context):
        action = power.action("action", request.action)
        nodename = validation.name("nodename", request.nodename, required=False)
        outcome = await power.act(self._manager, action, nodename)
        if outcome.then is not AfterAnswer.STAY:
            # Not before the answer is out: stopping the server here would cut this call off.
            context.add_done_callback(lambda _: self._after_power(outcome))
        return power.response(action, outcome)

    async def SetMaintenance(self, request, context):
        mode = validation.enum("mode", request.mode, host_pb2.MaintenanceMode)
        await self._manager.set_maintenance(mode == host_pb2.MAINTENANCE_MODE_ENABLED)
        return compute_pb2.SetMaintenanceResponse(status=self._maintenance_status())

    async def GetMaintenance(self, request, context):
        return compute_pb2.GetMaintenanceResponse(status=self._maintenance_status())

    def _maintenance_status(self) -> compute_pb2.MaintenanceStatus:
        since, instances = self._manager.maintenance()
        status = compute_pb2.MaintenanceStatus(
            mode=host_pb2.MAINTENANCE_MODE_DISABLED
            if since is None
            else host_pb2.MAINTENANCE_MODE_ENABLED,
            instances=instances,
        )
        if since is not None:
            status.started_at.FromDatetime(since)
        return status
