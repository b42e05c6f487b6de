"""Fleet: real Berth processes (registry, node service, schedulers, compute agents of every
fake driver) under one temporary directory, each with its own log, and the helpers the
end-to-end tests share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from berth.client import NodeClient, RegistryClient, ResourceExhausted, SchedulerClient, Unavailable
from berth.client.flavors import flavor
from berth.client.servers import BootResult, boot
from berth.v1 import node_pb2_grpc, registry_pb2_grpc, scheduler_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests import processes
from tests.e2e.test_processes import BERTH
from tests.ports import free_port

# One fake machine: a KVM node, a cluster member, a bare-metal server.
SIZES = {"BERTH_FAKE_VCPUS": "8", "BERTH_FAKE_MEMORY_MB": "16384", "BERTH_FAKE_DISK_GB": "100"}
# What the scheduling tests' processes use: heartbeats every half second, and a host is
# down once the registry went `DOWN_TIME` seconds without one.
REPORT_INTERVAL = "0.5"
DOWN_TIME = 3.0
LOG_TAIL = 30
# m1.small is 1 vCPU, 2048 MB, 20 GB; a KVM-like node of this much memory (with the 512 MB
# the agent reserves for the host, no over-commit) holds exactly `n` of them.
SMALL_MB = 2048
RESERVED_MB = 512


def room_for_small(n: int) -> dict[str, str]:
    """Agent settings for a fake node with room for exactly `n` m1.small."""
    return {
        "BERTH_FAKE_MEMORY_MB": str(n * SMALL_MB + RESERVED_MB),
        "BERTH_RAM_ALLOCATION_RATIO": "1.0",
    }


class Fleet:
    """Berth processes under one temporary directory, each with its own log."""

    def __init__(
        self, root: Path, *, redis_url: str = "", redis_prefix: str = "", pki: Path | None = None
    ) -> None:
        self.root = root
        # With a pki (tests.pki.make_pki: ca, server and client certificates) every process
        # serves mutual TLS and presents the client certificate on its own calls, and so do
        # the fleet's clients.
        self.pki = pki
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # How each process was started (module, environment), so it can be started again.
        self.launches: dict[str, tuple[str, dict[str, str]]] = {}
        self.addresses: dict[str, str] = {}
        self.registry = f"127.0.0.1:{free_port()}"
        self.node = f"127.0.0.1:{free_port()}"
        self.agents: dict[str, str] = {}
        self.schedulers: dict[str, str] = {}
        # Addresses handed out before their process starts (the registry's scheduler).
        self.reserved: dict[str, str] = {}
        self.redis_url = redis_url
        # Every key the fleet's schedulers write starts with this: tests sharing a Redis
        # database never see each other's HostStates.
        self.redis_prefix = redis_prefix or f"e2e-{uuidlib.uuid4().hex[:8]}"

    # -- processes -----------------------------------------------------------------------

    def tls_env(self) -> dict[str, str]:
        """The settings of a process under mutual TLS (none without a pki)."""
        if self.pki is None:
            return {}
        return {
            "BERTH_TLS_CERT_FILE": str(self.pki / "server.pem"),
            "BERTH_TLS_KEY_FILE": str(self.pki / "server.key"),
            "BERTH_TLS_CLIENT_CA_FILE": str(self.pki / "ca.pem"),
            "BERTH_TLS_CA_FILE": str(self.pki / "ca.pem"),
            "BERTH_TLS_CLIENT_CERT_FILE": str(self.pki / "client.pem"),
            "BERTH_TLS_CLIENT_KEY_FILE": str(self.pki / "client.key"),
        }

    def client_tls(self) -> dict[str, str]:
        """The client library's TLS keywords for the fleet's clients (none without a pki)."""
        if self.pki is None:
            return {}
        return {
            "tls_ca_file": str(self.pki / "ca.pem"),
            "tls_cert_file": str(self.pki / "client.pem"),
            "tls_key_file": str(self.pki / "client.key"),
        }

    def cli_tls(self) -> list[str]:
        """The same as `berth` options."""
        return [f"--{key.replace('_', '-')}={value}" for key, value in self.client_tls().items()]

    def _channel(self, address: str) -> grpc.Channel:
        if self.pki is None:
            return grpc.insecure_channel(address)
        credentials = grpc.ssl_channel_credentials(
            (self.pki / "ca.pem").read_bytes(),
            (self.pki / "client.key").read_bytes(),
            (self.pki / "client.pem").read_bytes(),
        )
        return grpc.secure_channel(address, credentials)

    @contextmanager
    def stubs(
        self,
    ) -> Iterator[tuple[registry_pb2_grpc.RegistryServiceStub, node_pb2_grpc.NodeServiceStub]]:
        """Raw stubs of the registry and the node service, for calls the client library
        would refuse to make or would retry."""
        with self._channel(self.registry) as registry, self._channel(self.node) as nodes:
            yield (
                registry_pb2_grpc.RegistryServiceStub(registry),
                node_pb2_grpc.NodeServiceStub(nodes),
            )

    def start(self, name: str, module: str, address: str, *, wait: bool = True, **env: str) -> None:
        """Run `python -m module` as `name` (its BERTH_HOST too); wait until it is SERVING
        unless `wait` is false (then call wait_serving())."""
        log = (self.root / f"{name}.log").open("ab")
        values = os.environ | {
            "BERTH_LISTEN": address,
            "BERTH_DATA_DIR": str(self.root / name),
            "BERTH_REGISTRY_URL": self.registry,
            "BERTH_NODE_URL": self.node,
            "BERTH_REPORT_INTERVAL": REPORT_INTERVAL,
            "BERTH_HOST": name,
        }
        self.procs[name] = processes.spawn(
            [sys.executable, "-m", module],
            env=values | self.tls_env() | env,
            stdout=log,
            stderr=log,
        )
        self.addresses[name] = address
        self.launches[name] = (module, env)
        log.close()
        if wait:
            self.wait_serving(name)

    def wait_serving(self, *names: str, within_s: float = 90) -> None:
        """Wait until each named process (default: every running one) answers SERVING; a
        process that exits first fails with the end of its log."""
        deadline = time.monotonic() + within_s
        for name in names or list(self.procs):
            proc, address = self.procs[name], self.addresses[name]
            with self._channel(address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                while True:
                    code = proc.poll()
                    if code is not None:
                        raise AssertionError(
                            f"{name} exited with {code} before serving:\n{self.tail(name)}"
                        )
                    try:
                        status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                        if status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    except grpc.RpcError:
                        pass
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"{name} never became SERVING on {address}:\n{self.tail(name)}"
                        )
                    time.sleep(0.1)

    def services(
        self,
        *,
        down_time: float = DOWN_TIME,
        wait: bool = True,
        databases: tuple[str, str] | None = None,
        node_env: dict[str, str] | None = None,
        **registry_env: str,
    ) -> None:
        """The registry (a host is down after `down_time` s without a heartbeat, published
        within 0.2 s) and the node service, each on its own SQLite file unless `databases`
        gives their URLs. The registry asks the scheduler named `scheduler-1` where
        maintenance moves go."""
        registry_db, node_db = databases or (
            f"sqlite:///{self.root}/registry.sqlite3",
            f"sqlite:///{self.root}/node.sqlite3",
        )
        scheduler = self.reserved.setdefault("scheduler-1", f"127.0.0.1:{free_port()}")
        self.start(
            "registry",
            "services.registry",
            self.registry,
            wait=False,
            **(
                {
                    "BERTH_DATABASE_URL": registry_db,
                    "BERTH_SERVICE_DOWN_TIME": f"{down_time:g}",
                    "BERTH_SWEEP_INTERVAL": "0.2",
                    "BERTH_SCHEDULER_URL": scheduler,
                }
                | registry_env
            ),
        )
        self.start(
            "node",
            "services.node",
            self.node,
            wait=False,
            **({"BERTH_DATABASE_URL": node_db} | (node_env or {})),
        )
        if wait:
            self.wait_serving("registry", "node")

    def agent(self, host: str, driver: str, *, wait: bool = True, **env: str) -> str:
        address = self.agents.get(host) or f"127.0.0.1:{free_port()}"
        self.agents[host] = address
        self.start(
            host,
            "services.compute",
            address,
            wait=wait,
            BERTH_DRIVER=driver,
            BERTH_UPDATE_RESOURCES_INTERVAL="1",
            **(SIZES | env),
        )
        return address

    def scheduler(self, name: str = "scheduler", *, wait: bool = True, **env: str) -> str:
        """A scheduler process on the fleet's Redis (and key prefix), checking every 0.2 s
        that Redis still holds its cache."""
        if not self.redis_url:
            raise AssertionError("a scheduler needs the fleet's redis_url")
        address = (
            self.schedulers.get(name) or self.reserved.pop(name, "") or f"127.0.0.1:{free_port()}"
        )
        self.schedulers[name] = address
        self.start(
            name,
            "services.scheduler",
            address,
            wait=wait,
            **(
                {
                    "BERTH_REDIS_URL": self.redis_url,
                    "BERTH_REDIS_PREFIX": self.redis_prefix,
                    "BERTH_CACHE_CHECK_INTERVAL": "0.2",
                }
                | env
            ),
        )
        return address

    def restart(self, name: str, *, wait: bool = True) -> None:
        """Start `name` again as it was started before (same address, data and database)."""
        assert name not in self.procs, f"{name} is still running"
        module, env = self.launches[name]
        self.start(name, module, self.addresses[name], wait=wait, **env)

    def stop(self, name: str) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=20)

    def send(self, name: str, signum: signal.Signals) -> None:
        """SIGSTOP freezes a process (its sockets stay open, it says nothing); SIGCONT thaws
        it; SIGKILL ends it without a goodbye."""
        self.procs[name].send_signal(signum)
        if signum == signal.SIGKILL:
            self.procs.pop(name).wait(timeout=20)

    def close(self) -> None:
        for proc in self.procs.values():
            processes.kill(proc)  # its group; stopped (SIGSTOP) processes die of SIGKILL too
        self.procs.clear()

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def tail(self, name: str, lines: int = LOG_TAIL) -> str:
        return "\n".join(self.log(name).splitlines()[-lines:])

    # -- clients -------------------------------------------------------------------------

    def berth(self, *args: str) -> Any:
        command = [BERTH, "--registry", self.registry, "--node", self.node]
        command += self.cli_tls()
        if self.schedulers:
            command += ["--scheduler", next(iter(self.schedulers.values()))]
        done = subprocess.run(
            [*command, "--json", *args], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def scheduler_address(self, scheduler: str | None = None) -> str:
        return self.schedulers[scheduler] if scheduler else next(iter(self.schedulers.values()))

    @contextmanager
    def scheduler_client(self, scheduler: str | None = None) -> Iterator[SchedulerClient]:
        with SchedulerClient.connect(
            self.scheduler_address(scheduler), **self.client_tls()
        ) as client:
            yield client

    def boot(
        self, spec: scheduler_pb2.RequestSpec, scheduler: str | None = None
    ) -> list[BootResult]:
        """berth.client.servers.boot() through one of the fleet's schedulers."""
        with (
            SchedulerClient.connect(
                self.scheduler_address(scheduler), **self.client_tls()
            ) as scheduler_client,
            RegistryClient.connect(self.registry, **self.client_tls()) as registry,
        ):
            return boot(spec, scheduler=scheduler_client, registry=registry)

    def host_states(self, scheduler: str | None = None) -> list[scheduler_pb2.HostState]:
        with self.scheduler_client(scheduler) as client:
            return list(client.list_host_states())

    def instances(self) -> dict[str, str]:
        """instance uuid -> host, as the node service reports them."""
        with NodeClient.connect(self.node, **self.client_tls()) as nodes:
            return {i.uuid: i.host for i in nodes.node_instances()}

    def ready(self, nodes: int, *, within_s: float = 90) -> None:
        """Wait until every scheduler has its cache built and sees `nodes` nodes, each with
        its host up and enabled."""
        for name in self.schedulers:

            def schedulable(name: str = name) -> bool:
                states = self.host_states(name)
                usable = [s for s in states if s.service_up and not s.service_disabled]
                assert len(usable) == nodes, f"{name}: {len(usable)} of {nodes} nodes usable"
                # Side-effect free: nothing is of this type, so nothing is claimed. Until
                # its cache is built the scheduler answers UNAVAILABLE instead.
                probe = spec("m1.tiny", hypervisor_type="no-such-hypervisor")
                with self.scheduler_client(name) as client:
                    try:
                        client.select_destinations(probe)
                    except Unavailable as exc:
                        raise AssertionError(f"{name}: {exc}") from None
                    except ResourceExhausted:
                        return True
                raise AssertionError(f"{name} placed an instance on no-such-hypervisor")

            eventually(schedulable, within_s)


def spec(
    flavor_name: str = "m1.tiny",
    *,
    count: int = 1,
    hints: scheduler_pb2.SchedulerHints | None = None,
    project_id: str = "e2e",
    **fields: Any,
) -> scheduler_pb2.RequestSpec:
    """A RequestSpec for `count` instances of a default flavor, with fresh instance uuids."""
    return scheduler_pb2.RequestSpec(
        flavor=flavor(flavor_name),
        num_instances=count,
        instance_uuids=[str(uuidlib.uuid4()) for _ in range(count)],
        project_id=project_id,
        hints=hints or scheduler_pb2.SchedulerHints(),
        **fields,
    )


def eventually(check: Callable[[], Any], within_s: float = 60) -> Any:
    """Poll until `check()` returns something true (or stops raising AssertionError); the
    bound only ends a hang: a busy machine may take long, a passing check returns at once."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within_s} s: {check}")
        time.sleep(0.2)


def amounts(resources: dict[str, Any]) -> list[int]:
    """[vcpus, memory_mb, disk_gb] of a Resources in --json output (int64s are strings there)."""
    return [int(resources.get(k, 0)) for k in ("vcpus", "memory_mb", "disk_gb")]


def built(results: Sequence[BootResult]) -> list[BootResult]:
    """The results, each asserted built."""
    for result in results:
        assert result.ok, f"{result.instance_uuid}: {result.error} ({result.reason})"
    return list(results)
