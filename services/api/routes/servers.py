"""servers: instances booted through the scheduler and the agents exactly as `berth boot`
does (and deleted as `berth delete`), listed and shown in Nova's shapes.

Berth has no images, networks or volumes: a server boots from its flavor's local disk
(`imageRef` empty, or a blank local `block_device_mapping_v2` as `openstack server create
--block-device ...` sends), with `networks: "none"` (or "auto": there is nothing to
attach). Nova accepts a boot and reports a failure later as a server in ERROR; Berth keeps
no record of an instance no agent holds, so the answer waits for the build: 202 once the
instances are built, 409 with the scheduler's or agent's reason when none could be."""

from __future__ import annotations

import hashlib
import re
import uuid as uuidlib
from typing import Any

from berth.client.errors import ResourceExhausted
from berth.client.flavors import flavor
from berth.client.servers import boot, delete
from berth.v1 import common_pb2, node_pb2, scheduler_pb2
from starlette.requests import Request
from starlette.responses import Response

from services.api.backend import PAGE
from services.api.faults import Fault
from services.api.requests import answer, at_least, body, iso, link, paged
from services.api.routes.flavors import FLAVOR_IDS, flavor_named
from services.common.settings import COMPUTE_BINARY

_UUIDS = {
    "oneOf": [{"type": "string", "format": "uuid"}, {"type": "array", "items": {"type": "string"}}]
}
_COUNT = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1}
CREATE = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 255},
                "flavorRef": {"type": ["string", "integer"], "minLength": 1},
                "imageRef": {"type": "string", "maxLength": 0},
                "networks": {
                    "oneOf": [
                        {"type": "string", "enum": ["none", "auto"]},
                        {"type": "array", "maxItems": 0},
                    ]
                },
                "availability_zone": {"type": "string", "minLength": 1, "maxLength": 255},
                "min_count": _COUNT,
                "max_count": _COUNT,
                "return_reservation_id": {"type": "boolean"},
                "description": {"type": ["string", "null"], "maxLength": 255},
                "metadata": {"type": "object", "maxProperties": 0},
                "block_device_mapping_v2": {
                    "type": "array",
                    "maxItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "source_type": {"enum": ["blank"]},
                            "destination_type": {"enum": ["local"]},
                            "boot_index": {"type": ["integer", "string"]},
                            "delete_on_termination": {"type": "boolean"},
                        },
                    },
                },
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": False,
        },
        "os:scheduler_hints": {
            "type": "object",
            "properties": {
                "same_host": _UUIDS,
                "different_host": _UUIDS,
                # Berth's server groups are named and take their policy at the first boot:
                # `group` with `group_policy` (affinity / anti-affinity).
                "group": {"type": "string", "minLength": 1, "maxLength": 255},
                "group_policy": {"enum": ["affinity", "anti-affinity"]},
            },
            "additionalProperties": False,
            "dependencies": {"group": ["group_policy"], "group_policy": ["group"]},
        },
        "OS-SCH-HNT:scheduler_hints": {"type": "object"},
    },
    "required": ["server"],
    "additionalProperties": False,
}

_STATUS = {
    node_pb2.INSTANCE_STATE_BUILDING: ("BUILD", "building", 0),
    node_pb2.INSTANCE_STATE_ACTIVE: ("ACTIVE", "active", 1),
    node_pb2.INSTANCE_STATE_STOPPED: ("SHUTOFF", "stopped", 4),
    node_pb2.INSTANCE_STATE_DELETING: ("ACTIVE", "active", 1),
    node_pb2.INSTANCE_STATE_ERROR: ("ERROR", "error", 0),
    node_pb2.INSTANCE_STATE_MIGRATING: ("MIGRATING", "active", 1),
}
_POLICIES = {
    "affinity": common_pb2.GROUP_POLICY_AFFINITY,
    "anti-affinity": common_pb2.GROUP_POLICY_ANTI_AFFINITY,
}


def _list_of(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _count(value: int | str | None, field: str) -> int | None:
    if value is None:
        return None
    number = int(value)
    if number < 1:
        raise Fault(
            400, f"Invalid input for field/attribute {field}. Value: {value}. must be 1 or more"
        )
    return number


def request_spec(
    data: dict[str, Any], *, project_id: str, user_id: str
) -> tuple[scheduler_pb2.RequestSpec, str, int]:
    """The RequestSpec, base name and fewest instances worth keeping (min_count) a create
    body describes."""
    server = data["server"]
    for mapping in server.get("block_device_mapping_v2", []):
        if str(mapping.get("boot_index", 0)) not in ("0", "-1"):
            raise Fault(400, "Berth boots from the flavor's local disk: give boot_index 0 or none.")
    min_count = _count(server.get("min_count"), "server/min_count")
    max_count = _count(server.get("max_count"), "server/max_count")
    if min_count and max_count and min_count > max_count:
        raise Fault(400, "min_count must be <= max_count")
    count = max_count or min_count or 1
    hints_in = data.get("os:scheduler_hints") or {}
    hints = scheduler_pb2.SchedulerHints(
        same_host=_list_of(hints_in.get("same_host", [])),
        different_host=_list_of(hints_in.get("different_host", [])),
    )
    if "group" in hints_in:
        hints.group, hints.group_policy = hints_in["group"], _POLICIES[hints_in["group_policy"]]
    zone = server.get("availability_zone", "")
    # Nova's admin form `zone:host[:node]` forces a host (and node).
    zone, _, forced = zone.partition(":")
    host, _, node = forced.partition(":")
    if host:
        hints.force_hosts.append(host)
    if node:
        hints.force_nodes.append(node)
    try:
        flavor_name = flavor_named(str(server["flavorRef"]))
    except Fault:  # Nova: a bad flavorRef is the request's fault (400), not a missing resource
        known = ", ".join(f"{i} ({n})" for n, i in FLAVOR_IDS.items())
        raise Fault(
            400, f"Invalid flavorRef {server['flavorRef']!r} provided; flavors: {known}."
        ) from None
    spec = scheduler_pb2.RequestSpec(
        flavor=flavor(flavor_name),
        num_instances=count,
        instance_uuids=[str(uuidlib.uuid4()) for _ in range(count)],
        availability_zone=zone,
        hints=hints,
        project_id=project_id,
        user_id=user_id,
    )
    return spec, server["name"], min_count or 1


def instance_names(name: str, uuids: list[str]) -> dict[str, str]:
    """NAME for one instance, NAME-1 ... NAME-n for several (as Nova and `berth boot`)."""
    if len(uuids) == 1:
        return {uuids[0]: name}
    return {uuid: f"{name}-{index}" for index, uuid in enumerate(uuids, 1)}


async def create(request: Request) -> Response:
    data = await body(request, CREATE)
    # The project: the URL's (Nova's /v2.1/{project_id}/servers), a proxy's X-Project-Id,
    # else the configured default; the user: the caller (its token's name).
    project = (
        request.path_params.get("project_id")
        or request.headers.get("x-project-id", "").strip()
        or request.app.state.settings.default_project
    )
    spec, name, minimum = request_spec(data, project_id=project, user_id=request.state.caller)
    backend = request.app.state.backend
    names = instance_names(name, list(spec.instance_uuids))

    def run() -> list[Any]:
        # Instances named by name in hints become uuids, as `berth boot` does.
        for field in ("same_host", "different_host"):
            refs = getattr(spec.hints, field)
            refs[:] = [backend.node.find_instance(ref) for ref in refs]
        try:
            return boot(
                spec,
                scheduler=backend.scheduler,
                registry=backend.registry,
                connect_agent=backend.agent,
                names=names,
            )
        except ResourceExhausted as exc:  # the scheduler's reason, in Nova's opening words
            raise Fault(409, f"No valid host was found. {exc.message}") from None

    results = await backend.call(run)
    built = [r for r in results if r.ok]
    if len(built) < minimum:
        if built:
            await backend.call(
                delete,
                [r.instance_uuid for r in built],
                node=backend.node,
                registry=backend.registry,
                connect_agent=backend.agent,
            )
        reasons = sorted({r.error for r in results if not r.ok})
        raise Fault(409, f"No valid host was found. {'; '.join(reasons)}"[:1000])
    if data["server"].get("return_reservation_id"):
        return answer({"reservation_id": _reservation(spec)}, 202)
    first = built[0].instance_uuid
    shown = {
        "id": first,
        "links": link(request, "servers", first),
        "OS-DCF:diskConfig": "MANUAL",
        "adminPass": "",
        "security_groups": [{"name": "default"}],
    }
    return answer({"server": shown}, 202)


def _reservation(spec: scheduler_pb2.RequestSpec) -> str:
    return "r-" + hashlib.sha1(spec.instance_uuids[0].encode()).hexdigest()[:8]


def _host_id(instance: node_pb2.Instance) -> str:
    """Nova's hostId: the same for one project's servers on one host, opaque otherwise."""
    return (
        hashlib.sha224((instance.project_id + instance.host).encode()).hexdigest()
        if instance.host
        else ""
    )


def view(
    request: Request,
    instance: node_pb2.Instance,
    zones: dict[str, str],
    hosts_up: dict[str, bool],
    *,
    detail: bool,
) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": instance.uuid,
        "name": instance.name,
        "links": link(request, "servers", instance.uuid),
    }
    if not detail:
        return shown
    status, vm_state, power_state = _STATUS.get(instance.state, ("UNKNOWN", "error", 0))
    shown.update(
        {
            "status": status,
            "tenant_id": instance.project_id,
            "user_id": instance.user_id,
            "metadata": {},
            "hostId": _host_id(instance),
            "image": "",
            "flavor": _flavor(request, instance),
            # When its agent accepted the build; Berth keeps no later change time.
            "created": iso(instance.created_at, seconds_only=True),
            "updated": iso(instance.created_at, seconds_only=True),
            "addresses": {},
            "accessIPv4": "",
            "accessIPv6": "",
            "OS-DCF:diskConfig": "MANUAL",
            "progress": 0,
            "OS-EXT-AZ:availability_zone": zones.get(instance.host, ""),
            "config_drive": "",
            "key_name": None,
            "OS-SRV-USG:launched_at": iso(instance.created_at),
            "OS-SRV-USG:terminated_at": None,
            "OS-EXT-SRV-ATTR:host": instance.host,
            "OS-EXT-SRV-ATTR:instance_name": instance.name,
            "OS-EXT-SRV-ATTR:hypervisor_hostname": instance.nodename,
            "OS-EXT-STS:task_state": "deleting"
            if instance.state == node_pb2.INSTANCE_STATE_DELETING
            else None,
            "OS-EXT-STS:vm_state": vm_state,
            "OS-EXT-STS:power_state": power_state,
            "os-extended-volumes:volumes_attached": [],
            # Nova shows the default group of a server without ports too.
            "security_groups": [{"name": "default"}],
        }
    )
    if at_least(request, "2.3"):
        shown.update(
            {
                "OS-EXT-SRV-ATTR:reservation_id": "",
                "OS-EXT-SRV-ATTR:launch_index": 0,
                "OS-EXT-SRV-ATTR:hostname": instance.name,
                "OS-EXT-SRV-ATTR:kernel_id": "",
                "OS-EXT-SRV-ATTR:ramdisk_id": "",
                "OS-EXT-SRV-ATTR:root_device_name": None,
                "OS-EXT-SRV-ATTR:user_data": None,
            }
        )
    if at_least(request, "2.9"):
        shown["locked"] = False
    if at_least(request, "2.16"):
        shown["host_status"] = "UP" if hosts_up.get(instance.host) else "DOWN"
    if at_least(request, "2.19"):
        shown["description"] = None
    if at_least(request, "2.26"):
        shown["tags"] = []
    if at_least(request, "2.63"):
        shown["trusted_image_certificates"] = None
    if at_least(request, "2.71"):
        shown["server_groups"] = [instance.server_group] if instance.server_group else []
    if at_least(request, "2.73"):
        shown["locked_reason"] = None
    return shown


def _flavor(request: Request, instance: node_pb2.Instance) -> dict[str, Any]:
    """The flavor a server was built from: a link to it, or from 2.47 its sizes."""
    if not at_least(request, "2.47"):
        flavor_id = FLAVOR_IDS.get(instance.flavor_name, instance.flavor_name)
        return {"id": flavor_id, "links": link(request, "flavors", flavor_id)[1:]}
    return {
        "original_name": instance.flavor_name,
        "vcpus": instance.resources.vcpus,
        "ram": instance.resources.memory_mb,
        "disk": instance.resources.disk_gb,
        "ephemeral": 0,
        "swap": 0,
        "extra_specs": dict(instance.flavor_extra_specs),
    }


async def _context(request: Request) -> tuple[dict[str, str], dict[str, bool]]:
    """Each host's zone and whether its compute service is up."""
    backend = request.app.state.backend
    services = await backend.call(
        lambda: list(backend.registry.list_services(binary=COMPUTE_BINARY, page_size=PAGE))
    )
    return {s.host: s.availability_zone for s in services}, {s.host: s.up for s in services}


def _unique(instances: list[node_pb2.Instance]) -> list[node_pb2.Instance]:
    """One entry per instance (one being moved is reported by two nodes)."""
    seen: dict[str, node_pb2.Instance] = {}
    for instance in instances:
        seen.setdefault(instance.uuid, instance)
    return list(seen.values())


async def _listing(request: Request, *, detail: bool) -> Response:
    backend = request.app.state.backend
    query = request.query_params
    host = query.get("host", "")
    instances = _unique(
        await backend.call(
            lambda: list(backend.node.node_instances(host=host or None, page_size=PAGE))
        )
    )
    if "name" in query:
        try:
            pattern = re.compile(query["name"])
        except re.error:
            raise Fault(
                400, f"Invalid name filter {query['name']!r}: not a regular expression."
            ) from None
        instances = [i for i in instances if pattern.search(i.name)]
    if "flavor" in query:
        wanted = flavor_named(query["flavor"])
        instances = [i for i in instances if i.flavor_name == wanted]
    zones, hosts_up = await _context(request)
    shown = [
        view(request, i, zones, hosts_up, detail=True)
        for i in sorted(instances, key=lambda i: i.uuid)
    ]
    if "status" in query:
        shown = [s for s in shown if s["status"] == query["status"].upper()]
    if not detail:
        shown = [{key: s[key] for key in ("id", "name", "links")} for s in shown]
    page, links = paged(request, shown, "id", collection="servers/detail" if detail else "servers")
    data: dict[str, Any] = {"servers": page}
    if links:
        data["servers_links"] = links
    return answer(data)


async def list_servers(request: Request) -> Response:
    return await _listing(request, detail=False)


async def detail(request: Request) -> Response:
    return await _listing(request, detail=True)


async def _instance(request: Request) -> node_pb2.Instance:
    text = request.path_params["server_id"]
    try:
        uuid = str(uuidlib.UUID(text))
    except ValueError:
        raise Fault(404, f"Instance {text} could not be found.") from None
    backend = request.app.state.backend
    found = await backend.call(lambda: list(backend.node.instances_by_uuid([uuid])))
    if not found:
        raise Fault(404, f"Instance {text} could not be found.")
    instance: node_pb2.Instance = found[0]
    return instance


async def show(request: Request) -> Response:
    instance = await _instance(request)
    zones, hosts_up = await _context(request)
    return answer({"server": view(request, instance, zones, hosts_up, detail=True)})


async def remove(request: Request) -> Response:
    instance = await _instance(request)
    backend = request.app.state.backend
    (result,) = await backend.call(
        delete,
        [instance.uuid],
        node=backend.node,
        registry=backend.registry,
        connect_agent=backend.agent,
    )
    if result.not_found:
        raise Fault(404, f"Instance {instance.uuid} could not be found.")
    if not result.ok:
        raise Fault(409, f"Cannot delete instance {instance.uuid}: {result.error}")
    return Response(status_code=204)


ROUTES = [
    ("/servers", list_servers, ["GET"]),
    ("/servers", create, ["POST"]),
    ("/servers/detail", detail, ["GET"]),
    ("/servers/{server_id}", show, ["GET"]),
    ("/servers/{server_id}", remove, ["DELETE"]),
]
