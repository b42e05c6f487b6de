"""os-hypervisors: Berth's compute nodes as Nova's hypervisors. A node's state and status
are those of the compute service of its host. At 2.88 the resource fields are gone (Nova
sends clients to Placement for them) and `uptime` joins the detail; `statistics` and
`uptime` below 2.88 only."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from berth.v1 import node_pb2, registry_pb2
from starlette.requests import Request
from starlette.responses import Response

from services.api.backend import PAGE
from services.api.faults import Fault
from services.api.requests import answer, at_least, paged, query_bool
from services.common.settings import COMPUTE_BINARY


def hypervisor_version(text: str) -> int:
    """Nova's integer form of a version ("8.2.2" -> 8002002, as libvirt's); 0 if unreadable."""
    number = 0
    for part in [*text.split("."), "0", "0", "0"][:3]:
        digits = "".join(c for c in part if c.isdigit()) or "0"
        number = number * 1000 + min(int(digits), 999)
    return number


def uptime(node: node_pb2.ComputeNode, now: datetime) -> str | None:
    """How long the node has been reported without a restart of its tracker, in the shape
    of `uptime`'s output that Nova relays (" 08:32:11 up 93 days, 18:25")."""
    if not node.HasField("boot_epoch"):
        return None
    seconds = max(0, int((now - node.boot_epoch.ToDatetime(tzinfo=UTC)).total_seconds()))
    days, rest = divmod(seconds, 86400)
    return f" {now:%H:%M:%S} up {days} days, {rest // 3600:02d}:{rest % 3600 // 60:02d}"


class Fleet:
    """The nodes (in Nova's order, by id) and the compute services of their hosts."""

    def __init__(
        self, nodes: list[node_pb2.ComputeNode], services: list[registry_pb2.Service]
    ) -> None:
        self.nodes = sorted(nodes, key=lambda n: n.id)
        self.services = {s.host: s for s in services if s.binary == COMPUTE_BINARY}


async def _fleet(request: Request, pattern: str = "") -> Fleet:
    backend = request.app.state.backend

    def nodes() -> list[node_pb2.ComputeNode]:
        found = (
            backend.node.search_nodes(pattern, page_size=PAGE)
            if pattern
            else backend.node.list_nodes(page_size=PAGE)
        )
        return list(found)

    def services() -> list[registry_pb2.Service]:
        return list(backend.registry.list_services(binary=COMPUTE_BINARY, page_size=PAGE))

    # The node service and the registry are asked at once.
    listed, computes = await asyncio.gather(backend.call(nodes), backend.call(services))
    return Fleet(listed, computes)


async def _servers_by_node(request: Request) -> dict[str, list[dict[str, str]]]:
    backend = request.app.state.backend
    instances = await backend.call(lambda: list(backend.node.node_instances(page_size=PAGE)))
    found: dict[str, list[dict[str, str]]] = defaultdict(list)
    for instance in instances:
        found[instance.node_uuid].append({"name": instance.name, "uuid": instance.uuid})
    return found


def view(
    request: Request, fleet: Fleet, node: node_pb2.ComputeNode, *, detail: bool
) -> dict[str, Any]:
    service = fleet.services.get(node.host)
    modern = at_least(request, "2.53")
    shown: dict[str, Any] = {
        "id": node.uuid if modern else node.id,
        "hypervisor_hostname": node.nodename,
        "state": "up" if service is not None and service.up else "down",
        "status": "disabled" if service is not None and service.disabled else "enabled",
    }
    if not detail:
        return shown
    shown.update(
        hypervisor_type=node.hypervisor_type,
        hypervisor_version=hypervisor_version(node.hypervisor_version),
        host_ip=node.host_ip,
        service={
            "host": node.host,
            "id": (service.uuid if modern else service.id) if service is not None else None,
            "disabled_reason": (service.disabled_reason or None) if service is not None else None,
        },
    )
    if at_least(request, "2.88"):
        shown["uptime"] = uptime(node, datetime.now(UTC))
        return shown
    shown.update(
        vcpus=node.total.vcpus,
        memory_mb=node.total.memory_mb,
        local_gb=node.total.disk_gb,
        vcpus_used=node.used.vcpus,
        memory_mb_used=node.used.memory_mb,
        local_gb_used=node.used.disk_gb,
        free_ram_mb=node.free_ram_mb,
        free_disk_gb=node.free_disk_gb,
        current_workload=node.current_workload,
        running_vms=node.running_vms,
        disk_available_least=node.disk_available_least_gb,
        cpu_info=_cpu_info(request, node.cpu_info),
    )
    return shown


def _cpu_info(request: Request, text: str) -> Any:
    """A JSON object from 2.28, the text before (Nova's change)."""
    if not at_least(request, "2.28"):
        return text
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        return text
    return parsed if isinstance(parsed, dict) else text


async def _listing(request: Request, *, detail: bool) -> Response:
    pattern = ""
    with_servers = False
    if at_least(request, "2.53"):
        pattern = request.query_params.get("hypervisor_hostname_pattern", "")
        with_servers = query_bool(request, "with_servers")
        if pattern and ("limit" in request.query_params or "marker" in request.query_params):
            raise Fault(
                400,
                "Paging over hypervisors with the hypervisor_hostname_pattern query parameter is not supported.",
            )
    fleet = await _fleet(request, pattern)
    if pattern and not fleet.nodes:
        raise Fault(404, f"No hypervisor matching '{pattern}' could be found.")
    shown = [view(request, fleet, node, detail=detail) for node in fleet.nodes]
    if with_servers:
        _add_servers(request, shown, fleet, await _servers_by_node(request))
    collection = "os-hypervisors/detail" if detail else "os-hypervisors"
    page, links = paged(request, shown, "id", collection=collection)
    data: dict[str, Any] = {"hypervisors": page}
    if links:
        data["hypervisors_links"] = links
    return answer(data)


def _add_servers(
    request: Request,
    shown: list[dict[str, Any]],
    fleet: Fleet,
    servers: dict[str, list[dict[str, str]]],
) -> None:
    """Each node's servers; a node without any has none listed, or from 2.75 an empty list."""
    always = at_least(request, "2.75")
    for entry, node in zip(shown, fleet.nodes, strict=True):
        if servers.get(node.uuid) or always:
            entry["servers"] = servers.get(node.uuid, [])


async def list_hypervisors(request: Request) -> Response:
    return await _listing(request, detail=False)


async def detail(request: Request) -> Response:
    return await _listing(request, detail=True)


async def _one(request: Request) -> tuple[Fleet, node_pb2.ComputeNode]:
    text = request.path_params["hypervisor_id"]
    fleet = await _fleet(request)
    for node in fleet.nodes:
        if (at_least(request, "2.53") and node.uuid == text) or (
            not at_least(request, "2.53") and str(node.id) == text
        ):
            return fleet, node
    raise Fault(404, f"Hypervisor {text} could not be found.")


async def show(request: Request) -> Response:
    fleet, node = await _one(request)
    shown = view(request, fleet, node, detail=True)
    if at_least(request, "2.53") and query_bool(request, "with_servers"):
        _add_servers(
            request,
            [shown],
            Fleet([node], list(fleet.services.values())),
            await _servers_by_node(request),
        )
    return answer({"hypervisor": shown})


async def show_uptime(request: Request) -> Response:
    if at_least(request, "2.88"):
        raise Fault(
            404, "The uptime API is gone from 2.88: the uptime is in the hypervisor's detail."
        )
    fleet, node = await _one(request)
    shown = view(request, fleet, node, detail=False)
    shown["uptime"] = uptime(node, datetime.now(UTC))
    return answer({"hypervisor": shown})


async def statistics(request: Request) -> Response:
    if at_least(request, "2.88"):
        raise Fault(404, "The statistics API is gone from 2.88 (Nova's own removal).")
    backend = request.app.state.backend
    stats = await backend.call(backend.node.statistics)
    return answer(
        {
            "hypervisor_statistics": {
                "count": stats.count,
                "vcpus": stats.total.vcpus,
                "memory_mb": stats.total.memory_mb,
                "local_gb": stats.total.disk_gb,
                "vcpus_used": stats.used.vcpus,
                "memory_mb_used": stats.used.memory_mb,
                "local_gb_used": stats.used.disk_gb,
                "free_ram_mb": stats.free_ram_mb,
                "free_disk_gb": stats.free_disk_gb,
                "current_workload": stats.current_workload,
                "running_vms": stats.running_vms,
                "disk_available_least": stats.disk_available_least_gb,
            }
        }
    )


async def legacy_search(request: Request) -> Response:
    """GET /os-hypervisors/{pattern}/search and /servers (before 2.53)."""
    if at_least(request, "2.53"):
        raise Fault(404, "Use hypervisor_hostname_pattern from 2.53.")
    pattern = request.path_params["pattern"]
    fleet = await _fleet(request, pattern)
    if not fleet.nodes:
        raise Fault(404, f"No hypervisor matching '{pattern}' could be found.")
    shown = [view(request, fleet, node, detail=False) for node in fleet.nodes]
    if request.url.path.endswith("/servers"):
        _add_servers(request, shown, fleet, await _servers_by_node(request))
    return answer({"hypervisors": shown})


ROUTES = [
    ("/os-hypervisors", list_hypervisors, ["GET"]),
    ("/os-hypervisors/detail", detail, ["GET"]),
    ("/os-hypervisors/statistics", statistics, ["GET"]),
    ("/os-hypervisors/{pattern}/search", legacy_search, ["GET"]),
    ("/os-hypervisors/{pattern}/servers", legacy_search, ["GET"]),
    ("/os-hypervisors/{hypervisor_id}/uptime", show_uptime, ["GET"]),
    ("/os-hypervisors/{hypervisor_id}", show, ["GET"]),
]
