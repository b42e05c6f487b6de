"""Real processes: `python -m services.registry`, the `berth` CLI against it, and `berth up`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests import processes
from tests.e2e.berth_up import berth_up
from tests.ports import free_port

pytestmark = pytest.mark.slow
BERTH = str(Path(sys.executable).with_name("berth"))


def _wait_serving(address: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise AssertionError(f"{address} never became SERVING")


@pytest.fixture
def registry_process(tmp_path):
    port = free_port()
    env = os.environ | {
        "BERTH_LISTEN": f"127.0.0.1:{port}",
        "BERTH_DATABASE_URL": f"sqlite:///{tmp_path}/registry.sqlite3",
        "BERTH_HOST": "ctl-1",
        "BERTH_REPORT_INTERVAL": "0.2",
    }
    log = (tmp_path / "registry.log").open("w")
    proc = processes.spawn(
        [sys.executable, "-m", "services.registry"], env=env, stdout=log, stderr=log
    )
    try:
        _wait_serving(f"127.0.0.1:{port}")
        yield proc, f"127.0.0.1:{port}"
    finally:
        processes.kill(proc)
        log.close()


def berth(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BERTH, "--registry", address, *args], capture_output=True, text=True, timeout=30
    )


def test_the_registry_registers_itself_and_heartbeats(registry_process):
    _, address = registry_process
    deadline = time.monotonic() + 60  # bounds a hang only
    while time.monotonic() < deadline:
        services = json.loads(berth(address, "--json", "service-list").stdout)
        if services and int(services[0]["report_count"]) >= 2:
            break
        time.sleep(0.2)
    (me,) = services
    assert (me["host"], me["binary"], me["up"]) == ("ctl-1", "berth-registry", True)
    assert int(me["report_count"]) >= 2


def test_the_cli_prints_tables_and_one_line_errors(registry_process):
    _, address = registry_process
    created = berth(address, "aggregate-create", "rack-1", "az1")
    assert created.returncode == 0 and "rack-1" in created.stdout and "+--" in created.stdout
    missing = berth(address, "service-disable", "ghost", "berth-compute", "--reason", "gone")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[0].startswith("ERROR (NotFound)")
    assert "Traceback" not in missing.stderr
    bad = berth(address, "aggregate-create", "x" * 300)
    assert bad.returncode == 1 and "name" in bad.stderr


def test_sigterm_stops_the_registry_promptly_and_cleanly(registry_process):
    proc, address = registry_process
    with grpc.insecure_channel(address) as channel:  # a watcher holds a stream open
        from berth.v1 import registry_pb2, registry_pb2_grpc

        watch = registry_pb2_grpc.RegistryServiceStub(channel).WatchServices(
            registry_pb2.WatchServicesRequest()
        )
        next(watch)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 5, (
            "open streams must not hold shutdown for the whole grace"
        )


def _refused_start(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    """Start `python -m services.registry` with `env`; it must stop by itself."""
    env = (
        os.environ
        | {
            "BERTH_LISTEN": "127.0.0.1:0",
            "BERTH_DATABASE_URL": f"sqlite:///{tmp_path}/registry.sqlite3",
            "BERTH_DATA_DIR": str(tmp_path),
        }
        | env
    )
    return subprocess.run(
        [sys.executable, "-m", "services.registry"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,  # a start that is not refused serves until killed
    )


@contextlib.contextmanager
def _held_port() -> Iterator[str]:
    """An address another process (this test) already listens on."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield f"127.0.0.1:{held.getsockname()[1]}"


def test_a_grpc_port_in_use_stops_the_start_with_one_line(tmp_path):
    with _held_port() as address:
        done = _refused_start(tmp_path, BERTH_LISTEN=address)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "WARNING" not in line]
    assert len(lines) == 1, done.stderr
    assert address in lines[0] and "already in use" in lines[0]


def test_a_metrics_port_in_use_stops_the_start_with_one_line(tmp_path):
    with _held_port() as address:
        done = _refused_start(tmp_path, BERTH_METRICS_LISTEN=address)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert address in done.stderr and "already in use" in done.stderr


def test_metrics_beyond_loopback_without_credentials_refuse_to_start(tmp_path):
    done = _refused_start(tmp_path, BERTH_METRICS_LISTEN=f"0.0.0.0:{free_port()}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert "BERTH_METRICS_LISTEN" in done.stderr and "without credentials" in done.stderr


def test_berth_up_runs_the_services_and_the_demo_fleet_and_stops_on_ctrl_c(tmp_path):
    port, node_port, scheduler_port = free_port(), free_port(), free_port()
    proc = processes.spawn(
        [
            BERTH,
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--registry-port",
            str(port),
            "--node-port",
            str(node_port),
            "--scheduler-port",
            str(scheduler_port),
            "--host",
            "demo-1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60  # bounds a hang only
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "service-list" in line:
                break
        banner = "".join(lines)
        assert f"127.0.0.1:{port}" in banner, banner
        assert f"127.0.0.1:{scheduler_port}" in banner and "redis://" in banner, banner
        listed = berth(f"127.0.0.1:{port}", "--json", "service-list")
        assert any(s["binary"] == "berth-registry" for s in json.loads(listed.stdout))
        node = ("--node", f"127.0.0.1:{node_port}")
        deadline = time.monotonic() + 60  # bounds a hang only
        hosts: list[str] = []
        while time.monotonic() < deadline and len(hosts) < 6:
            listed = berth(f"127.0.0.1:{port}", *node, "--json", "hypervisor-list")
            hosts = sorted(n["host"] for n in json.loads(listed.stdout or "[]"))
            time.sleep(0.3)
        # The demo fleet: a KVM-like host, a VMware-like cluster, four bare-metal nodes.
        assert hosts == ["ironic-1"] * 4 + ["kvm-1", "vmware-1"], hosts
        described = berth(f"127.0.0.1:{port}", *node, "--json", "host-describe", "kvm-1")
        assert json.loads(described.stdout)[0]["project"] == "(total)"
        _boot_list_and_delete(
            f"127.0.0.1:{port}", *node, "--scheduler", f"127.0.0.1:{scheduler_port}"
        )
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)  # bounds a hang only
        assert proc.returncode in (0, 130)
        assert "stopped" in rest
        assert (tmp_path / "data" / "registry.sqlite3").exists()
    finally:
        processes.kill(proc)


def _boot_list_and_delete(registry: str, *servers: str) -> None:
    """Through the CLI against `berth up`: boot an instance, find it in server-list, delete it."""
    deadline = time.monotonic() + 60  # bounds a hang only
    while True:  # the scheduler's cache fills as the demo agents report
        booted = berth(registry, *servers, "--json", "boot", "demo", "--flavor", "m1.tiny")
        if booted.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert booted.returncode == 0, booted.stderr
    assert "built on" in booted.stderr and "Traceback" not in booted.stderr
    (instance,) = json.loads(booted.stdout)
    assert instance["status"] == "active" and instance["name"] == "demo"
    assert instance["host"] in ("kvm-1", "vmware-1", "ironic-1"), instance
    deadline = time.monotonic() + 60  # bounds a hang only
    listed: list[dict] = []
    while time.monotonic() < deadline:
        listed = json.loads(berth(registry, *servers, "--json", "server-list").stdout)
        if any(s["uuid"] == instance["instance_uuid"] for s in listed):
            break
        time.sleep(0.3)
    (shown,) = [s for s in listed if s["uuid"] == instance["instance_uuid"]]
    assert (shown["host"], shown["nodename"]) == (instance["host"], instance["nodename"])
    deleted = berth(registry, *servers, "--json", "delete", instance["instance_uuid"])
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)[0]["status"] == "deleted"
    deadline = time.monotonic() + 60  # bounds a hang only
    while time.monotonic() < deadline:
        listed = json.loads(berth(registry, *servers, "--json", "server-list").stdout)
        if all(s["uuid"] != instance["instance_uuid"] for s in listed):
            break
        time.sleep(0.3)
    assert all(s["uuid"] != instance["instance_uuid"] for s in listed), listed


def test_a_killed_berth_up_leaves_no_process_behind(tmp_path):
    """SIGKILL gives `berth up` no chance to stop its children: the kernel does it."""
    with berth_up(tmp_path / "data") as stack:
        children = processes.descendants(stack.proc.pid)
        # Redis, registry, node service, scheduler, berth-api and the three demo agents.
        commands = sorted(_command(pid) for pid in children)
        assert len(children) == 8, commands  # 3 services, the API, 3 agents, Redis
        assert sum("redis-server" in c for c in commands) == 1, commands
        stack.proc.kill()
        stack.proc.wait()
        # Each exit wakes the wait; the bound only ends a hang.
        alive = processes.wait_all_exit(children, within_s=120)
        for pid in alive:  # a failing test leaves nothing behind either
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not alive, f"still running after berth up was killed: {alive}"


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
