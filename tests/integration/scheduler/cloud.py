"""Cloud: drives a registry, a node service and schedulers the way agents and users do."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from berth.v1 import (
    common_pb2,
    node_pb2,
    node_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)

from services.registry.app import Registry
from services.scheduler.app import Scheduler, start_scheduler
from services.scheduler.settings import SchedulerSettings
from tests.integration.node.support import instance, snapshot
from tests.integration.registry.support import register


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], within_s: float = 60.0, what: str = ""
) -> None:
    """Wait until `check()` (or the awaitable it returns) is true; fail after `within_s`."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within_s} s: {what or check}")
        await asyncio.sleep(0.02)


class Cloud:
    def __init__(
        self,
        registry: Registry,
        node_url: str,
        redis_url: str,
        tmp_path: Path,
        *,
        redis_prefix: str = "berth",  # on a Redis of the test's own; else the test's prefix
    ) -> None:
        self.registry = registry
        self.node_url = node_url
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix  # the cloud's schedulers share their HostStates
        self.tmp_path = tmp_path
        self._registry_channel = grpc.aio.insecure_channel(registry.address)
        self.registry_stub = registry_pb2_grpc.RegistryServiceStub(self._registry_channel)
        self._node_channel = grpc.aio.insecure_channel(node_url)
        self.nodes = node_pb2_grpc.NodeServiceStub(self._node_channel)
        self.schedulers: list[Scheduler] = []
        self._channels: list[grpc.aio.Channel] = []
        self._sequence = itertools.count(1)
        self.instances: dict[tuple[str, str], list[node_pb2.Instance]] = {}

    async def close(self) -> None:
        for scheduler in self.schedulers:
            await scheduler.stop(0)
        for channel in self._channels:
            await channel.close()
        await self._registry_channel.close()
        await self._node_channel.close()

    async def start_scheduler(
        self, **overrides
    ) -> tuple[Scheduler, scheduler_pb2_grpc.SchedulerServiceStub]:
        values = {
            "listen": "127.0.0.1:0",
            "data_dir": self.tmp_path,
            "registry_url": self.registry.address,
            "node_url": self.node_url,
            "redis_url": self.redis_url,
            "redis_prefix": self.redis_prefix,
            "cache_check_interval": 0.1,
        }
        scheduler = await start_scheduler(
            SchedulerSettings(**(values | overrides)), report_self=False, wait_ready_s=10
        )
        self.schedulers.append(scheduler)
        channel = grpc.aio.insecure_channel(scheduler.address)
        self._channels.append(channel)
        return scheduler, scheduler_pb2_grpc.SchedulerServiceStub(channel)

    async def add_host(self, host: str, *, nodes: int = 1, **sizes) -> list[str]:
        """Register the host's compute service and report its nodes; returns node uuids."""
        await register(self.registry_stub, host)
        uuids = []
        for index in range(nodes):
            nodename = host if nodes == 1 else f"{host}-n{index}"
            uuids.append(await self.report(host, nodename, **sizes))
        return uuids

    async def report(self, host: str, nodename: str | None = None, **sizes) -> str:
        nodename = nodename or host
        instances = tuple(self.instances.get((host, nodename), ()))
        snap = snapshot(host, nodename, next(self._sequence), instances, **sizes)
        response = await self.nodes.ReportSnapshot(node_pb2.ReportSnapshotRequest(snapshot=snap))
        return response.node_uuid

    async def place(self, host: str, nodename: str, claim: scheduler_pb2.Claim, **sizes) -> None:
        """What an agent does after building: report the instance with its claim."""
        resources = claim.resources
        self.instances.setdefault((host, nodename), []).append(
            instance(
                vcpus=resources.vcpus,
                memory_mb=resources.memory_mb,
                disk_gb=resources.disk_gb,
                uuid=claim.instance_uuid,
                claim_id=claim.claim_id,
            )
        )
        await self.report(host, nodename, **sizes)

    async def disable(self, host: str, reason: str = "testing") -> None:
        await self.registry_stub.UpdateService(
            registry_pb2.UpdateServiceRequest(
                service=registry_pb2.ServiceRef(
                    key=registry_pb2.ServiceKey(host=host, binary="berth-compute")
                ),
                disabled=True,
                disabled_reason=reason,
            )
        )


def spec(
    flavor: str = "",
    *,
    vcpus: int = 0,
    memory_mb: int = 0,
    disk_gb: int = 0,
    count: int = 1,
    seed: int | None = 7,
    **fields,
) -> scheduler_pb2.SelectDestinationsRequest:
    hints = fields.pop("hints", None)
    message = scheduler_pb2.RequestSpec(
        flavor=scheduler_pb2.Flavor(name=flavor, vcpus=vcpus, memory_mb=memory_mb, root_gb=disk_gb),
        num_instances=count,
        hints=hints or scheduler_pb2.SchedulerHints(),
        **fields,
    )
    if seed is not None:
        message.seed = seed
    return scheduler_pb2.SelectDestinationsRequest(spec=message)


def resources(vcpus: int, memory_mb: int, disk_gb: int) -> common_pb2.Resources:
    return common_pb2.Resources(vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb)
