"""`berth agent`: run one compute agent (`python -m services.compute`) in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

from berth.cli.children import dies_with_parent
from berth.cli.output import Output, UsageError
from berth.cli.up import (
    COMPUTE_MODULE,
    DRIVERS,
    AgentSpec,
    agent_env,
    free_port,
    module_available,
    port_is_free,
    set_signal,
)
from berth.client.flavors import resource_class_problem

DEFAULT_PORT = 50054
INSTALL_HINT = (
    "berth agent needs the Berth services installed: pip install -e . from the repository"
)


class ForegroundProcess(Protocol):
    """What `berth agent` needs of its child; subprocess.Popen, or a fake in tests."""

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...


@dataclass(frozen=True)
class AgentCommand:
    """Everything needed to start one agent, decided before anything runs."""

    argv: list[str]
    env: dict[str, str]
    address: str
    data_dir: Path
    agent: AgentSpec


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `agent` sub-command."""
    p = sub.add_parser(
        "agent",
        parents=[common],
        help="Run one compute agent on this machine until Ctrl-C.",
        description="Run `python -m services.compute` in the foreground; it registers with "
        "--registry and reports its nodes to --node. Ctrl-C stops it.",
    )
    p.add_argument("--host", default=None, help="Host name to register (default: this machine's).")
    p.add_argument("--driver", choices=DRIVERS, default="fake", help="Virt driver (default: fake).")
    p.add_argument("--vcpus", type=_count, help="vCPUs a fake driver reports per node.")
    p.add_argument("--memory-mb", type=_count, metavar="MB", help="Memory a fake node reports.")
    p.add_argument("--disk-gb", type=_count, metavar="GB", help="Disk a fake node reports.")
    p.add_argument("--nodes", type=_count, metavar="N", help="fake-ironic: how many nodes.")
    p.add_argument("--members", type=_count, metavar="N", help="fake-cluster: how many machines.")
    p.add_argument("--pool", help="fake-ironic: the pool its nodes come from.")
    p.add_argument(
        "--resource-class",
        metavar="CLASS",
        help="fake-ironic: the resource class its nodes offer (default: CUSTOM_BAREMETAL); "
        "flavors ask for it with resources:CLASS=1.",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"Port on 127.0.0.1 (default: {DEFAULT_PORT}; 0 picks a free one).",
    )
    p.add_argument("--data-dir", default=None, help="Agent state (default: data/agents/HOST).")
    p.add_argument(
        "--update-interval",
        type=_seconds,
        metavar="SECONDS",
        help="Seconds between periodic resource snapshots (default: the agent's).",
    )
    p.set_defaults(func=agent_command, client=None)


def agent_spec(args: argparse.Namespace, host: str) -> AgentSpec:
    """The agent the options describe; options of another driver are a usage error."""
    only = {
        "nodes": "fake-ironic",
        "pool": "fake-ironic",
        "resource_class": "fake-ironic",
        "members": "fake-cluster",
    }
    for option, driver in only.items():
        if getattr(args, option) is not None and args.driver != driver:
            flag = option.replace("_", "-")
            raise UsageError(f"--{flag} applies to --driver {driver}, not {args.driver}")
    if args.resource_class is not None:
        problem = resource_class_problem(args.resource_class)
        if problem:
            raise UsageError(f"--resource-class: {problem}")
    return AgentSpec(
        host=host,
        driver=args.driver,
        vcpus=args.vcpus,
        memory_mb=args.memory_mb,
        disk_gb=args.disk_gb,
        nodes=args.nodes,
        members=args.members,
        pool=args.pool,
        resource_class=args.resource_class,
        update_interval=args.update_interval,
    )


def build_command(
    args: argparse.Namespace,
    *,
    port: int,
    base_env: Mapping[str, str],
    default_host: str,
    python: str = sys.executable,
) -> AgentCommand:
    """The agent's command line and environment from the options (a pure function)."""
    host = args.host or default_host
    agent = agent_spec(args, host)
    data_dir = Path(args.data_dir or Path("data") / "agents" / host).expanduser().absolute()
    address = f"127.0.0.1:{port}"
    env = agent_env(
        agent,
        listen=address,
        data_dir=data_dir,
        registry_url=args.registry,
        node_url=args.node,
        base=base_env,
        token=args.token,
        tls_ca_file=args.tls_ca_file,
        tls_client_cert_file=args.tls_cert_file,
        tls_client_key_file=args.tls_key_file,
    )
    return AgentCommand([python, "-m", COMPUTE_MODULE], env, address, data_dir, agent)


def agent_command(_client: None, args: argparse.Namespace, out: Output) -> int:
    return run_agent(args, out.stream, sys.stderr)


def spawn(command: AgentCommand) -> ForegroundProcess:
    """Start the agent with this terminal's output. A session of its own keeps Ctrl-C away
    from it: `berth agent` forwards the signal once, rather than the agent getting two."""
    return subprocess.Popen(
        dies_with_parent(command.argv),  # a SIGKILL of `berth agent` takes the agent down too
        env=command.env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def run_agent(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    *,
    spawn: Callable[[AgentCommand], ForegroundProcess] = spawn,
    pick_port: Callable[[], int] = free_port,
    port_free: Callable[[int], bool] = port_is_free,
    available: Callable[[str], bool] = module_available,
    base_env: Mapping[str, str] | None = None,
) -> int:
    """Start the agent, forward SIGINT/SIGTERM to it, and return its exit code."""
    if not available(COMPUTE_MODULE):
        print(INSTALL_HINT, file=err)
        return 1
    # Options first (a usage error whatever the machine), then what the machine has.
    command = build_command(
        args,
        port=args.port or pick_port(),
        base_env=os.environ if base_env is None else base_env,
        default_host=socket.gethostname(),
    )
    if args.port and not port_free(args.port):
        print(
            f"port {args.port} is in use (is an agent already running?); pick another with "
            "--port (0 picks a free one)",
            file=err,
        )
        return 1
    try:
        command.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"cannot create {command.data_dir}: {exc.strerror} (see --data-dir)", file=err)
        return 1
    print(
        f"compute agent {command.agent.host} ({command.agent.driver}) on {command.address}, "
        f"data in {command.data_dir}; Ctrl-C stops it",
        file=out,
        flush=True,
    )
    return wait_forwarding_signals(spawn(command))


def wait_forwarding_signals(process: ForegroundProcess) -> int:
    """Wait for the child, passing SIGINT and SIGTERM on to it; its exit code, or 128+N
    when signal N ended it (as a shell reports it)."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    previous = {signum: set_signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                code = process.wait()
                break
            except KeyboardInterrupt:  # no handler (not the main thread): forward it here
                process.send_signal(signal.SIGINT)
    finally:
        for signum, handler in previous.items():
            set_signal(signum, handler)
    return code if code >= 0 else 128 - code
