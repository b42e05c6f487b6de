"""`berth up`: run Berth's processes and a demo fleet of compute agents here, until Ctrl-C."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

import grpc

from berth.cli.output import Output

READY_TIMEOUT = 20.0  # seconds a service may take to answer health checks
STOP_GRACE = 15.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL = 20  # lines of a failed service's log to show

INSTALL_HINT = "berth up needs the Berth services installed: pip install -e . from the repository"


@dataclass(frozen=True)
class ServiceSpec:
    """One Berth process `berth up` runs; a later service is one more entry in SERVICES."""

    name: str  # short name: the --NAME-port option, the log file, the printed block
    module: str  # run as `python -m MODULE`
    default_port: int
    database: str | None = None  # SQLite file in the data dir, if the service owns tables


# Started in this order (each waits for the ones before to be healthy), stopped in reverse.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("registry", "services.registry", 50051, "registry.sqlite3"),
    ServiceSpec("node", "services.node", 50052, "node.sqlite3"),
)

COMPUTE_MODULE = "services.compute"
DRIVERS = ("fake", "fake-cluster", "fake-ironic", "local")


@dataclass(frozen=True)
class AgentSpec:
    """One compute agent: its host, its virt driver, and the sizes the driver should report
    (None leaves the driver's own default)."""

    host: str
    driver: str = "fake"
    vcpus: int | None = None
    memory_mb: int | None = None
    disk_gb: int | None = None
    nodes: int | None = None  # fake-ironic: how many bare-metal nodes
    members: int | None = None  # fake-cluster: how many machines in the cluster
    pool: str | None = None  # fake-ironic: the pool its nodes come from
    update_interval: float | None = None  # seconds between periodic snapshots


# The demo fleet `berth up` starts after the services: one agent per kind of driver.
DEMO_FLEET: tuple[AgentSpec, ...] = (
    AgentSpec("kvm-1", "fake"),
    AgentSpec("vmware-1", "fake-cluster", members=3),
    AgentSpec("ironic-1", "fake-ironic", nodes=4),
)


def demo_fleet(prefix: str = "") -> tuple[AgentSpec, ...]:
    """DEMO_FLEET with `prefix` before every host name."""
    return tuple(replace(agent, host=prefix + agent.host) for agent in DEMO_FLEET)


class Process(Protocol):
    """What `berth up` needs of a child; subprocess.Popen, or a fake in tests."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


@dataclass
class Child:
    spec: ServiceSpec
    address: str
    log_path: Path
    process: Process
    agent: AgentSpec | None = None  # set for a compute agent of the fleet

    @property
    def name(self) -> str:
        """How messages name it: `registry`, `node`, `agent kvm-1`."""
        return f"agent {self.agent.host}" if self.agent else self.spec.name


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `up` sub-command, with a --NAME-port option per service and the fleet's."""
    p = sub.add_parser("up", parents=[common], help="Run Berth on this machine until Ctrl-C.")
    p.add_argument("--data-dir", default="data", help="Databases and logs (default: ./data).")
    p.add_argument("--host", default=None, help="Host name to register (default: this machine's).")
    for spec in SERVICES:
        p.add_argument(
            f"--{spec.name}-port",
            type=int,
            default=spec.default_port,
            metavar="PORT",
            help=f"Port of the {spec.name} service on 127.0.0.1 (default: {spec.default_port}).",
        )
    p.add_argument(
        "--no-fleet",
        action="store_true",
        help="Start no compute agents (default: "
        + ", ".join(f"{agent.host} ({agent.driver})" for agent in DEMO_FLEET)
        + ").",
    )
    p.add_argument(
        "--fleet-prefix",
        default="",
        metavar="PREFIX",
        help="Put PREFIX before the demo agents' host names.",
    )
    p.set_defaults(func=up_command, client=None)


def up_command(_client: None, args: argparse.Namespace, out: Output) -> int:
    fleet = () if args.no_fleet else demo_fleet(args.fleet_prefix)
    return up(args, out.stream, sys.stderr, fleet=fleet)


def module_available(module: str) -> bool:
    """True if `python -m module` could run here (the services distribution is separate)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package itself is missing
        return False


def find_missing(specs: tuple[ServiceSpec, ...] = SERVICES) -> list[ServiceSpec]:
    """Services whose module is not importable here."""
    return [spec for spec in specs if not module_available(spec.module)]


def service_env(
    spec: ServiceSpec,
    *,
    ports: Mapping[str, int],
    data_dir: Path,
    host: str,
    base: Mapping[str, str],
) -> dict[str, str]:
    """The environment of one child: the caller's, plus where to listen, store and register."""
    env = dict(base)
    env.update(
        BERTH_LISTEN=f"127.0.0.1:{ports[spec.name]}",
        BERTH_DATA_DIR=str(data_dir),
        BERTH_HOST=host,
        BERTH_REGISTRY_URL=f"127.0.0.1:{ports['registry']}",
    )
    if "node" in ports:
        # The registry asks the node service for host-describe; agents push snapshots there.
        env["BERTH_NODE_URL"] = f"127.0.0.1:{ports['node']}"
    if spec.database:
        env["BERTH_DATABASE_URL"] = f"sqlite:///{data_dir / spec.database}"
    return env


def agent_env(
    agent: AgentSpec,
    *,
    listen: str,
    data_dir: Path,
    registry_url: str,
    node_url: str,
    base: Mapping[str, str],
    token: str | None = None,
    tls_ca_file: str | None = None,
) -> dict[str, str]:
    """The environment of one compute agent: the caller's, plus who it is, where it listens
    and stores, whom it reports to, and its driver's sizes (only those given)."""
    env = dict(base)
    env.update(
        BERTH_HOST=agent.host,
        BERTH_LISTEN=listen,
        BERTH_DATA_DIR=str(data_dir),
        BERTH_REGISTRY_URL=registry_url,
        BERTH_NODE_URL=node_url,
        BERTH_DRIVER=agent.driver,
    )
    optional = {
        "BERTH_FAKE_VCPUS": agent.vcpus,
        "BERTH_FAKE_MEMORY_MB": agent.memory_mb,
        "BERTH_FAKE_DISK_GB": agent.disk_gb,
        "BERTH_FAKE_NODES": agent.nodes,
        "BERTH_FAKE_CLUSTER_MEMBERS": agent.members,
        "BERTH_FAKE_IRONIC_POOL": agent.pool,
        "BERTH_UPDATE_RESOURCES_INTERVAL": agent.update_interval,
        "BERTH_TOKEN": token,
        "BERTH_TLS_CA_FILE": tls_ca_file,
    }
    for name, value in optional.items():
        if value is not None and value != "":
            env[name] = f"{value:g}" if isinstance(value, float) else str(value)
    return env


def spawn(spec: ServiceSpec, env: Mapping[str, str], log_path: Path) -> Process:
    """Start `python -m MODULE` with stdout and stderr appended to its log file."""
    with open(log_path, "ab") as log:
        # A session of its own keeps Ctrl-C away from the child, so `berth up` alone
        # decides the order of shutdown (SIGTERM, grace, SIGKILL).
        return subprocess.Popen(
            [sys.executable, "-m", spec.module],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick); a demo agent will bind it next."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    """False if something already listens on 127.0.0.1:port (e.g. an earlier `berth up`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Connections of a server that just stopped linger in TIME_WAIT; the servers bind
        # with SO_REUSEADDR and ignore them, so the probe must too (Linux and macOS
        # semantics: still refused while anything listens there).
        if sys.platform != "win32":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- health: grpc.health.v1 without the grpcio-health-checking dependency -------------------

SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING


def decode_health_status(data: bytes) -> int:
    """HealthCheckResponse bytes -> its `status` (field 1, a varint; absent means UNKNOWN 0)."""
    status, i = 0, 0
    while i < len(data):
        key, i = _varint(data, i)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:  # varint
            value, i = _varint(data, i)
            if field == 1:
                status = value
        elif wire_type == 2:  # length-delimited: skip a field a newer server might add
            length, i = _varint(data, i)
            i += length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type} in a health response")
    return status


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def health_status(address: str, timeout: float = 1.0) -> int:
    """Ask the whole server (service "") how it is; 0 when it does not answer yet."""
    with grpc.insecure_channel(address) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            # HealthCheckRequest{service: ""} has no set fields, so it encodes to no bytes.
            request_serializer=lambda _request: b"",
            response_deserializer=decode_health_status,
        )
        try:
            return int(check(None, timeout=timeout))
        except grpc.RpcError:
            return 0


# -- the supervisor ---------------------------------------------------------------------------


class _Stop(Exception):
    """SIGTERM arrived: stop the children like Ctrl-C does."""


def up(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    *,
    specs: tuple[ServiceSpec, ...] = SERVICES,
    fleet: tuple[AgentSpec, ...] = (),
    spawn: Callable[[ServiceSpec, Mapping[str, str], Path], Process] = spawn,
    probe: Callable[[str], int] = health_status,
    port_free: Callable[[int], bool] = port_is_free,
    pick_port: Callable[[], int] = free_port,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    base_env: Mapping[str, str] | None = None,
) -> int:
    """Start every service, waiting until each is SERVING, then the fleet's agents; supervise
    them all until Ctrl-C/SIGTERM, then stop the agents first and the services in reverse."""
    if find_missing(specs) or (fleet and not module_available(COMPUTE_MODULE)):
        only_agents = fleet and not find_missing(specs)
        hint = " (or start no agents: --no-fleet)" if only_agents else ""
        print(INSTALL_HINT + hint, file=err)
        return 1
    ports = {spec.name: int(getattr(args, f"{spec.name}_port")) for spec in specs}
    for spec in specs:
        if not port_free(ports[spec.name]):
            print(
                f"port {ports[spec.name]} for the {spec.name} is in use (is Berth already "
                f"running?); pick another with --{spec.name}-port",
                file=err,
            )
            return 1
    data_dir = Path(args.data_dir).expanduser().resolve()
    try:
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"cannot create {data_dir / 'logs'}: {exc.strerror} (see --data-dir)", file=err)
        return 1
    host = args.host or socket.gethostname()
    env = os.environ if base_env is None else base_env

    children: list[Child] = []
    previous = set_signal(signal.SIGTERM, _raise_stop)
    try:
        for spec in specs:
            log_path = data_dir / "logs" / f"{spec.name}.log"
            child_env = service_env(spec, ports=ports, data_dir=data_dir, host=host, base=env)
            print(f"starting {spec.name}: output goes to {log_path}", file=out, flush=True)
            child = Child(
                spec, f"127.0.0.1:{ports[spec.name]}", log_path, spawn(spec, child_env, log_path)
            )
            children.append(child)
            if not _wait_ready(child, err, probe=probe, sleep=sleep, clock=clock):
                return 1
        agents = _start_fleet(fleet, ports, data_dir, env, out, spawn=spawn, pick_port=pick_port)
        children.extend(agents)
        # The agents start together and are waited for one after the other.
        for child in agents:
            if not _wait_ready(child, err, probe=probe, sleep=sleep, clock=clock):
                return 1
        _print_ready(children, data_dir, out, fleet)
        return _supervise(children, err, sleep=sleep)
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        _stop_all(children, out, sleep=sleep, clock=clock)
        set_signal(signal.SIGTERM, previous)


def _start_fleet(
    fleet: tuple[AgentSpec, ...],
    ports: Mapping[str, int],
    data_dir: Path,
    env: Mapping[str, str],
    out: TextIO,
    *,
    spawn: Callable[[ServiceSpec, Mapping[str, str], Path], Process],
    pick_port: Callable[[], int],
) -> list[Child]:
    """Spawn one compute agent per AgentSpec, each on a free port with a data dir of its own."""
    agents: list[Child] = []
    taken = set(ports.values())
    for agent in fleet:
        port = pick_port()
        while port in taken:  # the kernel may hand out a port again until someone binds it
            port = pick_port()
        taken.add(port)
        address = f"127.0.0.1:{port}"
        agent_dir = data_dir / "agents" / agent.host
        agent_dir.mkdir(parents=True, exist_ok=True)
        child_env = agent_env(
            agent,
            listen=address,
            data_dir=agent_dir,
            registry_url=f"127.0.0.1:{ports['registry']}",
            node_url=f"127.0.0.1:{ports['node']}" if "node" in ports else "",
            base=env,
        )
        spec = ServiceSpec(agent.host, COMPUTE_MODULE, port)
        log_path = data_dir / "logs" / f"{agent.host}.log"
        print(
            f"starting agent {agent.host} ({agent.driver}) on {address}: output goes to {log_path}",
            file=out,
            flush=True,
        )
        process = spawn(spec, child_env, log_path)
        agents.append(Child(spec, address, log_path, process, agent=agent))
    return agents


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def set_signal(signum: int, handler: Any) -> Any:
    """signal.signal, skipped off the main thread (where Python refuses it, e.g. in tests)."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signum, handler)


def _wait_ready(
    child: Child,
    err: TextIO,
    *,
    probe: Callable[[str], int],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> bool:
    deadline = clock() + READY_TIMEOUT
    while clock() < deadline:
        code = child.process.poll()
        if code is not None:
            print(f"{child.name} exited with code {code} before it was ready.", file=err)
            _print_tail(child.log_path, err)
            return False
        if probe(child.address) == SERVING:
            return True
        sleep(0.2)
    print(
        f"{child.name} did not report SERVING on {child.address} within {READY_TIMEOUT:g} s.",
        file=err,
    )
    _print_tail(child.log_path, err)
    return False


def _print_ready(
    children: list[Child], data_dir: Path, out: TextIO, fleet: tuple[AgentSpec, ...] = ()
) -> None:
    print(f"\nBerth is up (data in {data_dir}):", file=out)
    width = max(len(child.name) for child in children)
    for child in children:
        print(f"  {child.name:<{width}}  {child.address:<15}  log: {child.log_path}", file=out)
    addresses = {child.spec.name: child.address for child in children if child.agent is None}
    registry = addresses.get("registry")
    if registry:
        print(
            f"\ntry: berth service-list / berth host-list / grpcurl -plaintext {registry} list",
            file=out,
        )
    if "node" in addresses:
        also = ["berth hypervisor-list", "berth hypervisor-stats"]
        if fleet:
            also.append(f"berth host-describe {fleet[0].host}")
        print("     " + " / ".join(also), file=out)
    print("Ctrl-C stops everything.", file=out, flush=True)


def _supervise(children: list[Child], err: TextIO, *, sleep: Callable[[float], None]) -> int:
    """Watch the children; one that dies on its own ends `berth up` with an error."""
    while True:
        for child in children:
            code = child.process.poll()
            if code is not None:
                print(f"{child.name} exited with code {code}; see {child.log_path}", file=err)
                _print_tail(child.log_path, err)
                return 1
        sleep(0.5)


def _stop_all(
    children: list[Child],
    out: TextIO,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    """SIGTERM every running child (last started first), wait, then SIGKILL stragglers."""
    if not children:
        return
    # A second Ctrl-C or SIGTERM while we wait must not leave children behind half-stopped.
    previous_int = set_signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = set_signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        for child in reversed(children):
            if child.process.poll() is None:
                child.process.terminate()
        deadline = clock() + STOP_GRACE
        while clock() < deadline and any(c.process.poll() is None for c in children):
            sleep(0.1)
        for child in children:
            if child.process.poll() is None:
                print(f"{child.name} ignored SIGTERM for {STOP_GRACE:g} s; killing it", file=out)
                child.process.kill()
                child.process.wait()
        print("stopped", file=out, flush=True)
    finally:
        set_signal(signal.SIGINT, previous_int)
        set_signal(signal.SIGTERM, previous_term)


def _print_tail(log_path: Path, err: TextIO) -> None:
    lines = tail(log_path, LOG_TAIL)
    if lines:
        print(f"last {len(lines)} lines of {log_path}:", file=err)
        for line in lines:
            print(f"  {line}", file=err)


def tail(path: Path, count: int) -> list[str]:
    """The last `count` lines of a text file; [] if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-count:]
