"""`berth up`: run Berth's processes, an embedded Redis and a demo fleet of compute agents here,
until Ctrl-C."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit, urlunsplit

from berth.cli.children import dies_with_parent
from berth.cli.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from berth.cli.fleet import DEMO_FLEET, AgentSpec, agent_env, demo_fleet
from berth.cli.fleet import DRIVERS as DRIVERS  # `berth agent` imports them from here
from berth.cli.health import SERVING, health_status
from berth.cli.health import decode_health_status as decode_health_status
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
    redis: bool = False  # needs Redis: `berth up` starts an embedded one unless --redis-url
    http: bool = False  # serves HTTP (ready when GET /healthz answers 200), not gRPC


# Started in this order (each waits for the ones before to be healthy), stopped in reverse.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("registry", "services.registry", 50051, "registry.sqlite3"),
    ServiceSpec("node", "services.node", 50052, "node.sqlite3"),
    ServiceSpec("scheduler", "services.scheduler", 50053, redis=True),
    # The OpenStack Compute API, for `openstack` and openstacksdk (Nova's port).
    ServiceSpec("api", "services.api", 8774, http=True),
)

COMPUTE_MODULE = "services.compute"


class Process(Protocol):
    """What `berth up` needs of a child; subprocess.Popen, or a fake in tests."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class RedisServer(Protocol):
    """What `berth up` needs of its embedded Redis; EmbeddedRedis, or a fake in tests."""

    @property
    def url(self) -> str: ...
    @property
    def log_path(self) -> Path: ...
    def start(self) -> object: ...
    def running(self) -> bool: ...
    def stop(self) -> None: ...


@dataclass
class Child:
    spec: ServiceSpec
    address: str
    log_path: Path
    process: Process
    agent: AgentSpec | None = None  # set for a compute agent of the fleet
    metrics: str = ""  # where it serves /metrics, if it does

    @property
    def name(self) -> str:
        """How messages name it: `registry`, `node`, `agent kvm-1`."""
        return f"agent {self.agent.host}" if self.agent else self.spec.name

    @property
    def health_target(self) -> str:
        """What the health probe asks: the gRPC address, or an HTTP server's /healthz."""
        return f"http://{self.address}/healthz" if self.spec.http else self.address


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
        "--redis-url",
        default=None,
        metavar="URL",
        help="Use this Redis (redis://host:port/db) instead of starting an embedded one.",
    )
    p.add_argument(
        "--redis-port",
        type=int,
        default=0,
        metavar="PORT",
        help="Port of the embedded Redis on 127.0.0.1 (default: a free one).",
    )
    p.add_argument(
        "--metrics-port-base",
        type=int,
        default=0,
        metavar="PORT",
        help="Serve Prometheus metrics on 127.0.0.1: the registry on PORT, the node service "
        "on PORT+1, the scheduler on PORT+2, the agents on the ports after (default: off, "
        "or the port of $BERTH_METRICS_LISTEN).",
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
    redis_url: str | None = None,
) -> dict[str, str]:
    """The environment of one child: the caller's, plus where to listen, store and register,
    and where its peers and Redis are."""
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
    if "scheduler" in ports:
        env["BERTH_SCHEDULER_URL"] = f"127.0.0.1:{ports['scheduler']}"
    if redis_url:
        env["BERTH_REDIS_URL"] = redis_url
    if spec.database:
        env["BERTH_DATABASE_URL"] = f"sqlite:///{data_dir / spec.database}"
    return env


def spawn(spec: ServiceSpec, env: Mapping[str, str], log_path: Path) -> Process:
    """Start `python -m MODULE` with stdout and stderr appended to its log file."""
    with open(log_path, "ab") as log:
        # A session of its own keeps Ctrl-C away from the child, so `berth up` alone
        # decides the order of shutdown (SIGTERM, grace, SIGKILL).
        return subprocess.Popen(
            # even a SIGKILL of `berth up` takes it down
            dies_with_parent([sys.executable, "-m", spec.module]),
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
    make_redis: Callable[[Path, int], RedisServer] = EmbeddedRedis,
) -> int:
    """Start the embedded Redis (if a service needs one and --redis-url names none), every
    service, waiting until each is SERVING, then the fleet's agents; supervise them all until
    Ctrl-C/SIGTERM, then stop the agents first, the services in reverse, Redis last."""
    if find_missing(specs) or (fleet and not module_available(COMPUTE_MODULE)):
        only_agents = fleet and not find_missing(specs)
        hint = " (or start no agents: --no-fleet)" if only_agents else ""
        print(INSTALL_HINT + hint, file=err)
        return 1
    ports = {spec.name: int(getattr(args, f"{spec.name}_port")) for spec in specs}
    redis_url: str | None = args.redis_url
    embedded_redis = not redis_url and any(spec.redis for spec in specs)
    wanted = dict(ports)
    if embedded_redis and args.redis_port:
        wanted["redis"] = int(args.redis_port)
    for name, port in wanted.items():
        if not port_free(port):
            print(
                f"port {port} for the {name} is in use (is Berth already running?); "
                f"pick another with --{name}-port",
                file=err,
            )
            return 1
    env = os.environ if base_env is None else base_env
    # One metrics port per process: the same BERTH_METRICS_LISTEN in every child would
    # have them all fight over one port.
    metrics_base = args.metrics_port_base or metrics_port(env.get("BERTH_METRICS_LISTEN", ""))
    env = {k: v for k, v in env.items() if k != "BERTH_METRICS_LISTEN"}
    metrics_ports = list(range(metrics_base, metrics_base + len(specs) + len(fleet)))
    for port in metrics_ports if metrics_base else []:
        if not port_free(port):
            print(
                f"metrics port {port} is in use; pick another base with --metrics-port-base "
                f"(one port per process, {len(metrics_ports)} from there)",
                file=err,
            )
            return 1
    metrics_left = iter(metrics_ports if metrics_base else [])

    def metrics_env() -> dict[str, str]:
        port = next(metrics_left, None)
        return {"BERTH_METRICS_LISTEN": f"127.0.0.1:{port}"} if port else {}

    data_dir = Path(args.data_dir).expanduser().resolve()
    try:
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"cannot create {data_dir / 'logs'}: {exc.strerror} (see --data-dir)", file=err)
        return 1
    host = args.host or socket.gethostname()

    children: list[Child] = []
    redis: RedisServer | None = None
    previous = set_signal(signal.SIGTERM, _raise_stop)
    try:
        if embedded_redis:
            redis = make_redis(data_dir, int(args.redis_port or 0))
            print(f"starting redis: output goes to {redis.log_path}", file=out, flush=True)
            try:
                redis.start()
            except EmbeddedRedisError as exc:
                print(f"{exc}\n(or use a Redis of your own: --redis-url URL)", file=err)
                return 1
            redis_url = redis.url
        for spec in specs:
            log_path = data_dir / "logs" / f"{spec.name}.log"
            child_env = (
                service_env(
                    spec, ports=ports, data_dir=data_dir, host=host, base=env, redis_url=redis_url
                )
                | metrics_env()
            )
            print(f"starting {spec.name}: output goes to {log_path}", file=out, flush=True)
            child = Child(
                spec,
                f"127.0.0.1:{ports[spec.name]}",
                log_path,
                spawn(spec, child_env, log_path),
                metrics=child_env.get("BERTH_METRICS_LISTEN", ""),
            )
            children.append(child)
            if not _wait_ready(child, err, probe=probe, sleep=sleep, clock=clock):
                return 1
        agents = _start_fleet(
            fleet,
            ports,
            data_dir,
            env,
            out,
            spawn=spawn,
            pick_port=pick_port,
            extra_env=metrics_env,
        )
        children.extend(agents)
        # The agents start together and are waited for one after the other.
        for child in agents:
            if not _wait_ready(child, err, probe=probe, sleep=sleep, clock=clock):
                return 1
        _print_ready(children, data_dir, out, fleet, redis_url=redis_url, redis=redis)
        return _supervise(children, err, sleep=sleep, redis=redis)
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        _stop_all(children, out, sleep=sleep, clock=clock, redis=redis)
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
    extra_env: Callable[[], dict[str, str]] = dict,
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
        child_env = (
            agent_env(
                agent,
                listen=address,
                data_dir=agent_dir,
                registry_url=f"127.0.0.1:{ports['registry']}",
                node_url=f"127.0.0.1:{ports['node']}" if "node" in ports else "",
                base=env,
                scheduler_url=f"127.0.0.1:{ports['scheduler']}" if "scheduler" in ports else None,
            )
            | extra_env()
        )
        spec = ServiceSpec(agent.host, COMPUTE_MODULE, port)
        log_path = data_dir / "logs" / f"{agent.host}.log"
        print(
            f"starting agent {agent.host} ({agent.driver}) on {address}: output goes to {log_path}",
            file=out,
            flush=True,
        )
        process = spawn(spec, child_env, log_path)
        metrics = child_env.get("BERTH_METRICS_LISTEN", "")
        agents.append(Child(spec, address, log_path, process, agent=agent, metrics=metrics))
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
        if probe(child.health_target) == SERVING:
            return True
        sleep(0.2)
    print(
        f"{child.name} did not report SERVING on {child.address} within {READY_TIMEOUT:g} s.",
        file=err,
    )
    _print_tail(child.log_path, err)
    return False


def _print_ready(
    children: list[Child],
    data_dir: Path,
    out: TextIO,
    fleet: tuple[AgentSpec, ...] = (),
    *,
    redis_url: str | None = None,
    redis: RedisServer | None = None,
) -> None:
    print(f"\nBerth is up (data in {data_dir}):", file=out)
    width = max([len(child.name) for child in children] + [len("redis")])
    if redis is not None:
        print(f"  {'redis':<{width}}  {redis.url}  log: {redis.log_path}", file=out)
    elif redis_url:
        print(f"  {'redis':<{width}}  {hide_password(redis_url)}  (--redis-url)", file=out)
    for child in children:
        metrics = f"  metrics: http://{child.metrics}/metrics" if child.metrics else ""
        print(
            f"  {child.name:<{width}}  {child.address:<15}  log: {child.log_path}{metrics}",
            file=out,
        )
    addresses = {child.spec.name: child.address for child in children if child.agent is None}
    registry = addresses.get("registry")
    hint = path_hint(sys.argv[0], shutil.which("berth"))
    if hint:
        print(f"\n{hint}", file=out)
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
    if "api" in addresses:
        print(openstack_hint(addresses["api"]), file=out)
    print("Ctrl-C stops everything.", file=out, flush=True)


def openstack_hint(address: str) -> str:
    """Nova's own client against the Compute API: a command to paste, and the same as a
    clouds.yaml entry (`openstack --os-cloud berth ...`)."""
    endpoint = f"http://{address}/v2.1"
    return (
        f"\nthe OpenStack Compute API is on {endpoint}:\n"
        f"  openstack --os-auth-type none --os-endpoint {endpoint} "
        "--os-identity-api-version 3 hypervisor list\n"
        "  or in clouds.yaml (then: openstack --os-cloud berth hypervisor list):\n"
        "    clouds:\n"
        "      berth:\n"
        "        auth_type: none\n"
        f"        auth: {{endpoint: {endpoint}}}\n"
        "        identity_api_version: 3"
    )


def metrics_port(listen: str) -> int:
    """The port of a BERTH_METRICS_LISTEN value ("host:port"), 0 when unset or unreadable."""
    _, _, port = listen.rpartition(":")
    return int(port) if port.isdigit() else 0


def path_hint(running: str, on_path: str | None) -> str | None:
    """How to type `berth` in another terminal, when the `berth` running is not the one on
    PATH (`make run` runs .venv/bin/berth without activating the virtualenv)."""
    program = Path(running)
    if program.name != "berth" or (on_path and Path(on_path).resolve() == program.resolve()):
        return None
    where = os.path.relpath(program.parent)
    if where.startswith(".."):
        where = str(program.parent.resolve())
    return (
        f"berth is not on your PATH: in another terminal, run `. {where}/activate` first "
        f"(or type {where}/berth)"
    )


def hide_password(url: str) -> str:
    """The URL with its password (if any) replaced by ***, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def _supervise(
    children: list[Child],
    err: TextIO,
    *,
    sleep: Callable[[float], None],
    redis: RedisServer | None = None,
) -> int:
    """Watch the children (and the embedded Redis); one that dies on its own ends `berth up`
    with an error. An agent that ends cleanly had its host shut down (`berth host-action`):
    the rest go on without it."""
    shut_down: set[str] = set()
    while True:
        if redis is not None and not redis.running():
            print(f"the embedded redis exited; see {redis.log_path}", file=err)
            _print_tail(redis.log_path, err)
            return 1
        for child in children:
            code = child.process.poll()
            if code is None or child.name in shut_down:
                continue
            if code == 0 and child.agent is not None:
                shut_down.add(child.name)
                print(f"{child.name} stopped: its host was shut down; the rest go on", file=err)
                continue
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
    redis: RedisServer | None = None,
) -> None:
    """SIGTERM every running child (last started first), wait, then SIGKILL stragglers;
    the embedded Redis last, once nothing uses it any more."""
    if not children and redis is None:
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
        if redis is not None:
            redis.stop()
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
