"""A whole stack under mutual TLS: every server requires a client certificate signed by the
CA, every process presents one on its own calls (registration, heartbeats, watches, peer and
agent links), and a caller without one is refused at the handshake."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import grpc
import pytest
from berth.client import RegistryClient, Unavailable
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.fleet import Fleet, eventually
from tests.e2e.test_processes import BERTH
from tests.pki import make_pki, needs_openssl

pytestmark = [pytest.mark.slow, needs_openssl]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Fleet]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    fleet = Fleet(tmp_path_factory.mktemp("fleet"), pki=pki)
    try:
        fleet.services()
        fleet.agent("kvm-1", "fake")
        yield fleet
    finally:
        fleet.close()


def berth(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against the fleet with only the options given (no client certificate)."""
    return subprocess.run(
        [BERTH, "--registry", fleet.registry, "--node", fleet.node, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_every_process_registers_and_heartbeats_over_mutual_tls(fleet):
    def all_up() -> dict[tuple[str, str], dict]:
        rows = {(s["host"], s["binary"]): s for s in fleet.berth("service-list")}
        for key in [
            ("registry", "berth-registry"),
            ("node", "berth-node"),
            ("kvm-1", "berth-compute"),
        ]:
            assert key in rows, f"{key} not registered: {sorted(rows)}"
            assert rows[key]["up"] and int(rows[key]["report_count"]) >= 2, rows[key]
        return rows

    eventually(all_up, within_s=30)


def test_the_agents_node_reaches_the_node_service_and_the_registry_reaches_both(fleet):
    nodes = eventually(lambda: [n for n in fleet.berth("hypervisor-list") if n["host"] == "kvm-1"])
    assert [n["nodename"] for n in nodes] == ["kvm-1"]
    # host-describe: the registry asks the node service over its peer link.
    described = fleet.berth("host-describe", "kvm-1")
    assert described[0]["project"] == "(total)"
    # host-action: the registry asks the agent; the fake driver's own refusal comes back,
    # so the call got through the agent's mutual TLS.
    refused = berth(fleet, *fleet.cli_tls(), "host-action", "kvm-1", "--action", "startup")
    assert refused.returncode == 1
    assert refused.stderr.startswith("ERROR (Unimplemented)") and "fake driver" in refused.stderr


def test_a_caller_without_a_client_certificate_is_refused_by_every_server(fleet):
    assert fleet.pki is not None
    ca = str(fleet.pki / "ca.pem")
    listed = berth(fleet, "--tls-ca-file", ca, "service-list")
    assert listed.returncode == 1 and "Traceback" not in listed.stderr
    assert listed.stderr.startswith("ERROR (Unavailable)"), listed.stderr
    assert "client certificate" in listed.stderr  # the hint names what may be missing
    client = RegistryClient.connect(fleet.registry, tls_ca_file=ca)
    with client, pytest.raises(Unavailable):
        list(client.list_services())
    without_cert = grpc.ssl_channel_credentials(fleet.pki.joinpath("ca.pem").read_bytes())
    for name in ("registry", "node", "kvm-1"):
        for channel in (
            grpc.secure_channel(fleet.addresses[name], without_cert),
            grpc.insecure_channel(fleet.addresses[name]),
        ):
            with channel, pytest.raises(grpc.RpcError) as err:
                health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE, (name, err.value)


def test_the_scheduler_follows_both_watches_and_places_an_instance_over_mutual_tls(
    fleet, redis_url, redis_prefix
):
    fleet.redis_url, fleet.redis_prefix = redis_url, redis_prefix
    fleet.scheduler("scheduler-1")
    fleet.ready(nodes=1)
    (instance,) = fleet.berth("boot", "tls-demo", "--flavor", "m1.tiny")
    assert (instance["status"], instance["host"]) == ("active", "kvm-1"), instance
    deleted = fleet.berth("delete", instance["instance_uuid"])
    assert deleted[0]["status"] == "deleted"
