"""The `berth` command line: global options, sub-command dispatch, errors as one line."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from berth import __version__
from berth.cli import (
    agent,
    aggregates,
    health,
    host_update,
    hosts,
    hypervisors,
    migrations,
    scheduler,
    servers,
    services,
    up,
    zones,
)
from berth.cli.output import FORMATS, Output, UsageError
from berth.client.channel import DEFAULT_TIMEOUT
from berth.client.compute import ComputeClient
from berth.client.errors import BerthError
from berth.client.node import NodeClient
from berth.client.registry import RegistryClient
from berth.client.scheduler import SchedulerClient

DEFAULT_REGISTRY = "127.0.0.1:50051"
DEFAULT_NODE = "127.0.0.1:50052"
DEFAULT_SCHEDULER = "127.0.0.1:50053"

# Builds a client from the parsed options: `connect(args)` the registry's, `connect(args,
# "node")` the node service's, `connect(args, "scheduler")` the scheduler's, and
# `connect(args, "compute", endpoint)` a compute agent's. Tests pass one that returns fakes;
# a fake taking only `args` still serves every command that needs only the registry.
Connect = Callable[..., Any]

# The servers a command may name in `client=`, joined with "+" when it needs several.
SERVERS = ("node", "registry", "scheduler", "agents")


@dataclass(frozen=True)
class Clients:
    """What a command that joins several views gets (`client="node+registry"`, ...): the
    clients it named, and with "agents", `agent(endpoint)` to open a compute agent's client
    (the command closes those itself)."""

    node: Any = None
    registry: Any = None
    scheduler: Any = None
    agent: Callable[[str], Any] | None = None


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The whole command line; `env` supplies the BERTH_* defaults."""
    parser = argparse.ArgumentParser(
        prog="berth",
        description="Berth: services, hosts, hypervisors, aggregates and instances of a "
        "compute cloud.",
        epilog="Options may come before or after the sub-command.",
    )
    parser.add_argument("--version", action="version", version=f"berth {__version__}")
    _add_global_options(parser, env, suppress=False)
    # The same options again on every sub-command, without defaults, so that
    # `berth service-list --json` works and an option given first is not overwritten.
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, env, suppress=True)

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    services.add_commands(sub, common)
    hosts.add_commands(sub, common)
    host_update.add_commands(sub, common)
    migrations.add_commands(sub, common)
    hypervisors.add_commands(sub, common)
    servers.add_commands(sub, common)
    scheduler.add_commands(sub, common)
    aggregates.add_commands(sub, common)
    up.add_commands(sub, common)
    agent.add_commands(sub, common)
    health.add_commands(sub, common)
    zones.add_commands(sub, common)
    for subparser in sub.choices.values():
        # Commands report bad combinations through their own parser's usage line.
        subparser.set_defaults(subparser=subparser)
    return parser


def _add_global_options(
    parser: argparse.ArgumentParser, env: Mapping[str, str], *, suppress: bool
) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--registry",
        metavar="URL",
        default=default(env.get("BERTH_REGISTRY_URL") or DEFAULT_REGISTRY),
        help="host:port, grpc://host:port or grpcs://host:port of the registry "
        f"(default: $BERTH_REGISTRY_URL, else {DEFAULT_REGISTRY}).",
    )
    group.add_argument(
        "--node",
        metavar="URL",
        default=default(env.get("BERTH_NODE_URL") or DEFAULT_NODE),
        help="host:port, grpc://host:port or grpcs://host:port of the node service "
        f"(default: $BERTH_NODE_URL, else {DEFAULT_NODE}).",
    )
    group.add_argument(
        "--scheduler",
        metavar="URL",
        default=default(env.get("BERTH_SCHEDULER_URL") or DEFAULT_SCHEDULER),
        help="host:port, grpc://host:port or grpcs://host:port of the scheduler "
        f"(default: $BERTH_SCHEDULER_URL, else {DEFAULT_SCHEDULER}).",
    )
    group.add_argument(
        "--token",
        default=default(env.get("BERTH_TOKEN") or None),
        help="Bearer token (default: $BERTH_TOKEN).",
    )
    group.add_argument(
        "--tls-ca-file",
        metavar="PATH",
        default=default(env.get("BERTH_TLS_CA_FILE") or None),
        help="CA bundle to verify the server; implies TLS (default: $BERTH_TLS_CA_FILE).",
    )
    group.add_argument(
        "--tls-cert-file",
        metavar="PATH",
        default=default(env.get("BERTH_TLS_CLIENT_CERT_FILE") or None),
        help="Client certificate, for servers that require one (mutual TLS); implies TLS "
        "(default: $BERTH_TLS_CLIENT_CERT_FILE).",
    )
    group.add_argument(
        "--tls-key-file",
        metavar="PATH",
        default=default(env.get("BERTH_TLS_CLIENT_KEY_FILE") or None),
        help="Key of that certificate (default: $BERTH_TLS_CLIENT_KEY_FILE).",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=default(DEFAULT_TIMEOUT),
        help=f"Deadline of each call (default: {DEFAULT_TIMEOUT:g}).",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="Print JSON (an array or an object) instead of tables; the same as -f json.",
    )
    group.add_argument(
        "-f",
        "--format",
        choices=FORMATS,
        default=default(None),
        help="Output format, as OpenStack's CLI: table (default), json, csv, or value "
        "(the cells alone, space-separated).",
    )
    group.add_argument(
        "-c",
        "--column",
        action="append",
        metavar="COLUMN",
        default=default(None),
        help="Show only this column of a table, csv or value output (repeatable, in order).",
    )
    group.add_argument(
        "--sort-column",
        action="append",
        metavar="COLUMN",
        default=default(None),
        help="Sort the rows by this column (repeatable: ties go to the next one).",
    )


def connect_server(args: argparse.Namespace, server: str = "registry", target: str = "") -> Any:
    """The real client of `server` ("registry", "node", "scheduler", or "compute": the agent
    at `target`) at the address the options give, with their token, TLS and deadline.

    The registry's client also serves HostService (`.hosts`) on the same channel.
    """
    client_class: Any = ComputeClient
    if server != "compute":
        by_server = {
            "node": (NodeClient, args.node),
            "scheduler": (SchedulerClient, args.scheduler),
        }
        client_class, target = by_server.get(server, (RegistryClient, args.registry))
    return client_class.connect(
        target,
        token=args.token,
        tls_ca_file=args.tls_ca_file,
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_key_file,
        timeout=args.timeout,
    )


def run(args: argparse.Namespace, out: Output, connect: Connect) -> int:
    """Hand the sub-command the client it asked for with `client=`: "registry", "hosts"
    (the registry's HostService), "node", "scheduler", several of SERVERS joined with "+"
    (a Clients of them, e.g. "node+registry"), or None (`up`, `agent`). Every client opened
    here is closed when the command returns."""
    wanted = args.client
    if wanted is None:
        return int(args.func(None, args, out))
    with contextlib.ExitStack() as stack:

        def opened(server: str) -> Any:
            # connect(args) alone for the registry keeps one-argument connect fakes working.
            client = connect(args) if server == "registry" else connect(args, server)
            return stack.enter_context(client)

        def agent(endpoint: str) -> Any:
            return connect(args, "compute", endpoint)

        names = wanted.split("+")
        unknown = [name for name in names if name not in SERVERS]
        client: Any
        if wanted == "hosts":
            client = opened("registry").hosts
        elif unknown or len(set(names)) != len(names):
            raise ValueError(f"command {args.command!r} asks for an unknown client {wanted!r}")
        elif len(names) == 1 and wanted != "agents":
            client = opened(wanted)
        else:
            client = Clients(
                **{name: opened(name) for name in names if name != "agents"},
                agent=agent if "agents" in names else None,
            )
        return int(args.func(client, args, out))


def print_error(exc: BerthError, stream: TextIO) -> None:
    """`ERROR (NotFound): sentence`, then one `  field: description` line per violation."""
    print(f"ERROR ({type(exc).__name__}): {exc.message}", file=stream)
    for violation in exc.violations:
        line = f"{violation.field}: {violation.description}"
        if line != exc.message:  # InvalidArgument.field() already put it in the sentence
            print(f"  {line}", file=stream)


def main(
    argv: Sequence[str] | None = None,
    *,
    connect: Connect | None = None,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one `berth` command; returns the exit code (0, 1 error, 2 usage, 130 Ctrl-C)."""
    env = os.environ if env is None else env
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args: argparse.Namespace | None = None
    try:
        args = build_parser(env).parse_args(argv)
        args.stderr = stderr  # progress lines of long commands (boot, delete) go here
        output = Output(
            stdout,
            format=args.format or ("json" if args.json else "table"),
            columns=args.column or (),
            sort_columns=args.sort_column or (),
        )
        return run(args, output, connect or connect_server)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    except UsageError as exc:
        assert args is not None
        try:
            args.subparser.error(str(exc))
        except SystemExit as usage:
            return usage.code if isinstance(usage.code, int) else 2
        return 2
    except BerthError as exc:
        print_error(exc, stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `berth service-list | head`: the reader left; say nothing, as other tools do.
        _silence_stdout()
        return 1
    except Exception as exc:
        if env.get("BERTH_DEBUG"):
            raise
        print(
            f"ERROR ({type(exc).__name__}): {exc} (a bug in berth? BERTH_DEBUG=1 shows where)",
            file=stderr,
        )
        return 1


def _silence_stdout() -> None:
    # Python flushes stdout at exit and would fail again on the closed pipe.
    # ValueError/OSError: stdout is not a real file (captured in tests); nothing to do then.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
