"""The compute agents `berth up` and `berth agent` run: the demo fleet and each agent's
environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

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
    resource_class: str | None = None  # fake-ironic: the class its nodes offer (CUSTOM_...)
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
    tls_client_cert_file: str | None = None,
    tls_client_key_file: str | None = None,
    scheduler_url: str | None = None,
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
        "BERTH_FAKE_IRONIC_RESOURCE_CLASS": agent.resource_class,
        "BERTH_UPDATE_RESOURCES_INTERVAL": agent.update_interval,
        "BERTH_TOKEN": token,
        "BERTH_TLS_CA_FILE": tls_ca_file,
        "BERTH_TLS_CLIENT_CERT_FILE": tls_client_cert_file,
        "BERTH_TLS_CLIENT_KEY_FILE": tls_client_key_file,
        "BERTH_SCHEDULER_URL": scheduler_url,
    }
    for name, value in optional.items():
        if value is not None and value != "":
            env[name] = f"{value:g}" if isinstance(value, float) else str(value)
    return env
