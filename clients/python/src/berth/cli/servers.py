"""boot, delete and server-list: instances placed by the scheduler and built by the agents."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import uuid as uuidlib
from collections.abc import Sequence
from typing import Any, TextIO

from berth.cli.hypervisors import NODE_HELP, find_node, instance_state
from berth.cli.output import Output, UsageError, dash, message_dict
from berth.client import servers
from berth.client.errors import InvalidArgument
from berth.client.flavors import explicit_flavor, flavor, flavor_names, with_resource_class
from berth.client.registry import looks_like_uuid
from berth.client.servers import BootResult, DeleteResult
from berth.v1 import common_pb2
from berth.v1 import scheduler_pb2 as pb

DEFAULT_PROJECT = "demo"
BOOT_COLUMNS = ("ID", "Host", "Node", "Status")
DELETE_COLUMNS = ("ID", "Name", "Host", "Status")
LIST_COLUMNS = (
    "ID",
    "Name",
    "Flavor",
    "Host",
    "Node",
    "Project",
    "vcpus",
    "memory_mb",
    "disk_gb",
    "State",
)

# --hint KEY -> the SchedulerHints field it fills.
HINTS = {
    "same_host": "same_host",
    "different_host": "different_host",
    "force_host": "force_hosts",
    "force_node": "force_nodes",
    "ignore_host": "ignore_hosts",
    "same_aggregate_as_host": "same_aggregate_as_host",
}
_INSTANCE_HINTS = ("same_host", "different_host")
_POLICIES = {
    "affinity": common_pb2.GROUP_POLICY_AFFINITY,
    "anti-affinity": common_pb2.GROUP_POLICY_ANTI_AFFINITY,
}


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add boot, delete and server-list to `sub` (argparse's subparsers object)."""
    p = sub.add_parser(
        "boot",
        parents=[common],
        help="Place instances with the scheduler and build them on the chosen hosts.",
        description="Ask the scheduler for a claimed destination (and alternates) per "
        "instance, then build each on its host's compute agent, falling back to the "
        "alternates when an agent refuses. Claims not used are released.",
    )
    p.add_argument(
        "name",
        metavar="NAME",
        nargs="?",
        default="",
        help="The instance's name (NAME-1, NAME-2, ... with --count), kept with it: "
        "server-list shows it, and delete and the instance hints take it when only one "
        "instance has it.",
    )
    size = p.add_argument_group("size: a flavor, or --vcpus and --memory-mb (and --disk-gb)")
    size.add_argument("--flavor", help=f"One of {', '.join(flavor_names())}.")
    size.add_argument("--vcpus", type=_at_least_one, metavar="N")
    size.add_argument("--memory-mb", type=_at_least_one, metavar="MB")
    size.add_argument("--disk-gb", type=_not_negative, metavar="GB", help="Root disk (default 0).")
    p.add_argument("--count", type=_at_least_one, default=1, metavar="N", help="Instances (1).")
    p.add_argument(
        "--project", default=DEFAULT_PROJECT, help=f"Project id (default: {DEFAULT_PROJECT})."
    )
    p.add_argument("--user", default="", help="User id.")
    p.add_argument("--az", default="", metavar="ZONE", help="Only hosts in this zone.")
    p.add_argument(
        "--hint",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Scheduler hint, repeatable: "
        + ", ".join(f"{key}={_hint_value(key)}" for key in HINTS)
        + " (INSTANCE: a uuid, or a name only one instance has).",
    )
    p.add_argument("--group", default="", help="Server group name (with --group-policy).")
    p.add_argument("--group-policy", choices=sorted(_POLICIES), help="The group's policy.")
    p.add_argument("--hypervisor-type", default="", metavar="TYPE", help="e.g. QEMU, ironic.")
    p.add_argument(
        "--resource-class",
        default="",
        metavar="CLASS",
        help="A whole bare-metal node of this class (CUSTOM_..., as its agent states it): "
        "adds resources:CLASS=1 to the flavor's extra specs, replacing any class it asked "
        "for. Without a class, instances go to nodes of VMs only.",
    )
    p.add_argument("--seed", type=int, help="Seeds the scheduler's choice (replayable).")
    p.add_argument(
        "--parallel",
        type=_at_least_one,
        default=servers.MAX_PARALLEL,
        metavar="N",
        help=f"Instances built at once (default: {servers.MAX_PARALLEL}).",
    )
    p.set_defaults(func=boot, client="scheduler+registry+node+agents")

    p = sub.add_parser(
        "delete", parents=[common], help="Delete instances on the hosts that hold them."
    )
    p.add_argument(
        "uuids",
        metavar="INSTANCE",
        nargs="+",
        help="Instance uuid, or a name only one instance has.",
    )
    p.add_argument(
        "--parallel",
        type=_at_least_one,
        default=servers.MAX_PARALLEL,
        metavar="N",
        help=f"Instances deleted at once (default: {servers.MAX_PARALLEL}).",
    )
    p.set_defaults(func=delete, client="node+registry+agents")

    p = sub.add_parser(
        "server-list",
        parents=[common],
        help="List instances as their compute nodes report them.",
    )
    p.add_argument("--host", default="", help="Only the instances of this host's nodes.")
    # Not --node: that is the node service's URL.
    p.add_argument("--hypervisor", default="", metavar="NODE", help=f"Only this node: {NODE_HELP}")
    p.set_defaults(func=server_list, client="node")


def _hint_value(key: str) -> str:
    return "INSTANCE" if key in _INSTANCE_HINTS else "NODE" if key == "force_node" else "HOST"


# -- boot ------------------------------------------------------------------------------------


def parse_hints(texts: Sequence[str]) -> pb.SchedulerHints:
    """`--hint KEY=VALUE` options as SchedulerHints; a malformed one is a UsageError naming it."""
    hints = pb.SchedulerHints()
    known = ", ".join(HINTS)
    for text in texts:
        key, sep, value = (part.strip() for part in text.partition("="))
        if not sep or not key or not value:
            raise UsageError(f"--hint {text!r} is not KEY=VALUE (keys: {known})")
        if key not in HINTS:
            raise UsageError(f"--hint {text!r}: unknown hint {key!r} (keys: {known})")
        name = HINTS[key]
        if name == "same_aggregate_as_host":
            if hints.same_aggregate_as_host not in ("", value):
                raise UsageError(f"--hint {text!r}: give {key} once")
            hints.same_aggregate_as_host = value
        else:
            getattr(hints, name).append(value)
    return hints


def resolve_instance_hints(hints: pb.SchedulerHints, node: Any) -> None:
    """Replace each instance a hint names by name with its uuid (the scheduler knows
    instances by uuid); a name no instance or several have is the node client's error."""
    for key in _INSTANCE_HINTS:
        refs = getattr(hints, HINTS[key])
        refs[:] = [node.find_instance(ref) for ref in refs]


def request_spec(args: argparse.Namespace) -> pb.RequestSpec:
    """The RequestSpec the boot options describe; bad combinations are UsageErrors."""
    sizes = {"--vcpus": args.vcpus, "--memory-mb": args.memory_mb, "--disk-gb": args.disk_gb}
    given = [option for option, value in sizes.items() if value is not None]
    if args.flavor:
        if given:
            raise UsageError(f"give --flavor or sizes, not both (--flavor with {given[0]})")
        try:
            chosen = flavor(args.flavor)
        except InvalidArgument as exc:
            raise UsageError(str(exc)) from None
    elif args.vcpus is not None and args.memory_mb is not None:
        chosen = explicit_flavor(args.vcpus, args.memory_mb, args.disk_gb or 0)
    else:
        raise UsageError(f"give --flavor ({', '.join(flavor_names())}) or --vcpus and --memory-mb")
    if args.resource_class:
        try:
            specs = with_resource_class(chosen.extra_specs, args.resource_class)
        except InvalidArgument as exc:
            raise UsageError(f"--resource-class: {exc.violations[0].description}") from None
        chosen.extra_specs.clear()
        chosen.extra_specs.update(specs)
    hints = parse_hints(args.hint)
    if bool(args.group) != bool(args.group_policy):
        raise UsageError("--group and --group-policy go together")
    if args.group:
        hints.group, hints.group_policy = args.group, _POLICIES[args.group_policy]
    spec = pb.RequestSpec(
        flavor=chosen,
        num_instances=args.count,
        # Chosen here, so that progress lines can name each instance as it is built.
        instance_uuids=[str(uuidlib.uuid4()) for _ in range(args.count)],
        project_id=args.project,
        user_id=args.user,
        availability_zone=args.az,
        hints=hints,
        hypervisor_type=args.hypervisor_type,
    )
    if args.seed is not None:
        spec.seed = args.seed
    return spec


def instance_label(name: str, index: int, count: int) -> str:
    """NAME for one instance, NAME-1 ... NAME-n for several (as Nova names them)."""
    if not name:
        return ""
    return name if count == 1 else f"{name}-{index}"


def boot(clients: Any, args: argparse.Namespace, out: Output) -> int:
    spec = request_spec(args)
    resolve_instance_hints(spec.hints, clients.node)
    err: TextIO = getattr(args, "stderr", sys.stderr)
    count = spec.num_instances
    labels = {
        uuid: instance_label(args.name, i, count) for i, uuid in enumerate(spec.instance_uuids, 1)
    }
    done = 0

    def progress(result: BootResult) -> None:
        nonlocal done
        done += 1
        label = labels.get(result.instance_uuid, "")
        who = f"{label} ({result.instance_uuid})" if label else result.instance_uuid
        if result.ok:
            line = f"[{done}/{count}] {who} built on {result.host}/{result.nodename}"
        else:
            line = f"[{done}/{count}] {who} FAILED: {result.error}"
        print(line, file=err, flush=True)

    results = servers.boot(
        spec,
        scheduler=clients.scheduler,
        registry=clients.registry,
        connect_agent=clients.agent,
        max_parallel=args.parallel,
        progress=progress,
        names={uuid: label for uuid, label in labels.items() if label},
    )
    out.table(
        BOOT_COLUMNS,
        [[r.instance_uuid, dash(r.host), dash(r.nodename), _boot_status(r)] for r in results],
        [
            {
                "name": labels.get(r.instance_uuid, ""),
                **dataclasses.asdict(r),
                "status": _boot_status(r),
            }
            for r in results
        ],
    )
    return _failures(results, "built", err)


def _boot_status(result: BootResult) -> str:
    return "active" if result.ok else "error"


def _failures(
    results: Sequence[BootResult] | Sequence[DeleteResult], done: str, err: TextIO
) -> int:
    """Name each failed instance on stderr; 1 if any failed."""
    failed = [r for r in results if not r.ok]
    for result in failed:
        print(f"ERROR: instance {result.instance_uuid} was not {done}: {result.error}", file=err)
    if failed:
        print(f"{len(failed)} of {len(results)} instance(s) not {done}", file=err)
    return 1 if failed else 0


# -- delete ----------------------------------------------------------------------------------


def delete(clients: Any, args: argparse.Namespace, out: Output) -> int:
    err: TextIO = getattr(args, "stderr", sys.stderr)
    results = servers.delete(
        [clients.node.find_instance(ref) for ref in args.uuids],
        node=clients.node,
        registry=clients.registry,
        connect_agent=clients.agent,
        max_parallel=args.parallel,
    )

    def status(result: DeleteResult) -> str:
        return "deleted" if result.ok else "not found" if result.not_found else "error"

    out.table(
        DELETE_COLUMNS,
        [[r.instance_uuid, dash(r.name), dash(r.host), status(r)] for r in results],
        [{**dataclasses.asdict(r), "status": status(r)} for r in results],
    )
    return _failures(results, "deleted", err)


# -- server-list -----------------------------------------------------------------------------


def server_list(client: Any, args: argparse.Namespace, out: Output) -> int:
    if args.hypervisor:
        ref = args.hypervisor
        if args.host and "/" not in ref and not looks_like_uuid(ref):
            ref = f"{args.host}/{ref}"
        node = find_node(client, ref)
        if args.host and node.host != args.host:
            raise UsageError(f"node {node.host}/{node.nodename} is not on host {args.host}")
        instances = list(client.node_instances(uuid=node.uuid))
    elif args.host:
        instances = list(client.node_instances(host=args.host))
    else:
        instances = list(client.node_instances())
    instances.sort(key=lambda i: (i.name, i.host, i.uuid))
    out.table(
        LIST_COLUMNS,
        [
            [
                instance.uuid,
                dash(instance.name),
                dash(instance.flavor_name),
                instance.host,
                instance.nodename,
                dash(instance.project_id),
                instance.resources.vcpus,
                instance.resources.memory_mb,
                instance.resources.disk_gb,
                instance_state(instance),
            ]
            for instance in instances
        ],
        [message_dict(instance) for instance in instances],
    )
    return 0
