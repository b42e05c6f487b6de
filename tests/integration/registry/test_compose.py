"""docker-compose.yml without Docker: its settings and tokens start a working registry and
node service, its agents' tokens report only for their own hosts, and the scheduler is wired
to Redis, the registry and the node service with a token of its own."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from pathlib import Path

import grpc
import pytest
import yaml
from berth.v1 import (
    host_pb2,
    host_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from grpc import aio

from services.common.auth import TokenTable
from services.node.app import start_node_service
from services.node.settings import NodeSettings
from services.registry.app import start_registry
from services.registry.settings import RegistrySettings
from tests.integration.node.support import instance, snapshot
from tests.integration.registry.support import status_of
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[3]
ADMIN = (("authorization", "Bearer change-me-admin"),)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(compose: dict, service: str) -> dict[str, str]:
    return dict(compose["services"][service]["environment"])


def _tokens_file(compose: dict) -> Path:
    return ROOT / compose["services"]["registry"]["volumes"][0].split(":")[0]


def test_compose_wires_every_process_and_each_agent_has_its_own_token(compose):
    services = compose["services"]
    assert {
        "postgres",
        "redis",
        "registry",
        "node",
        "scheduler",
        "api",
        "compute-1",
        "vmware-1",
        "ironic-1",
    } <= set(services)
    assert services["registry"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert _env(compose, "registry")["BERTH_NODE_URL"] == "node:50052"
    assert (ROOT / "Dockerfile").exists()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"
    table = TokenTable.load(_tokens_file(compose))
    drivers = set()
    for agent in ("compute-1", "vmware-1", "ironic-1"):
        env = _env(compose, agent)
        principal = table.authenticate(f"Bearer {env['BERTH_TOKEN']}")
        assert principal.host == env["BERTH_HOST"] == agent
        drivers.add(env["BERTH_DRIVER"])
    assert drivers == {"fake", "fake-cluster", "fake-ironic"}
    # berth-api boots and deletes servers and changes hosts for its own callers: admin.
    api = _env(compose, "api")
    assert table.authenticate(f"Bearer {api['BERTH_TOKEN']}").is_admin
    assert api["BERTH_AUTH_FILE"] == "/etc/berth/tokens.toml"  # its callers need tokens too
    assert "8774:8774" in services["api"]["ports"]


def test_the_registry_may_pass_host_actions_on_to_the_agents_and_a_shut_down_host_stays_off(
    compose,
):
    services = compose["services"]
    # Every agent checks tokens from the same file as the registry, where the registry's own
    # token (the one it calls agents with) is an admin's: HostPowerAction is admin-only.
    for agent in ("compute-1", "vmware-1", "ironic-1"):
        assert _env(compose, agent)["BERTH_AUTH_FILE"] == "/etc/berth/tokens.toml"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[agent]["volumes"]}
        assert mounts["/etc/berth/tokens.toml"] == services["registry"]["volumes"][0].split(":")[0]
        # An agent whose host was shut down exits 0; Docker must not start it again.
        assert services[agent]["restart"] == "on-failure"
    table = TokenTable.load(_tokens_file(compose))
    assert table.authenticate(f"Bearer {_env(compose, 'registry')['BERTH_TOKEN']}").is_admin


def test_compose_runs_the_scheduler_on_redis_with_a_token_like_the_node_services(
    compose, monkeypatch
):
    services = compose["services"]
    scheduler = services["scheduler"]
    assert scheduler["command"] == ["python", "-m", "services.scheduler"]
    assert scheduler["build"] == services["registry"]["build"]  # the one Berth image
    assert set(scheduler["depends_on"]) == {"redis", "registry", "node"}
    assert "50053:50053" in scheduler["ports"]
    env = _env(compose, "scheduler")
    assert env["BERTH_REDIS_URL"] == "redis://redis:6379/0"
    assert (env["BERTH_REGISTRY_URL"], env["BERTH_NODE_URL"]) == ("registry:50051", "node:50052")
    assert env["BERTH_LISTEN"] == "0.0.0.0:50053"
    # Listening beyond loopback needs credentials: the tokens file, and a token of its own
    # that may register and heartbeat for its host and read the watch streams (as the node
    # service's does), and nothing an admin may.
    assert env["BERTH_AUTH_FILE"] == "/etc/berth/tokens.toml"
    table = TokenTable.load(_tokens_file(compose))
    own = table.authenticate(f"Bearer {env['BERTH_TOKEN']}")
    node = table.authenticate(f"Bearer {_env(compose, 'node')['BERTH_TOKEN']}")
    assert own.host == env["BERTH_HOST"] == "scheduler"
    assert own.roles == node.roles == {"agent", "reader"}
    assert not own.is_admin
    # The compose environment is valid scheduler settings.
    settings_module = pytest.importorskip("services.scheduler.settings")
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    settings = settings_module.SchedulerSettings()
    assert (settings.redis_url, settings.node_url, settings.host) == (
        "redis://redis:6379/0",
        "node:50052",
        "scheduler",
    )


async def test_the_compose_settings_start_a_registry_and_node_service_that_work_together(
    compose, database, tmp_path
):
    if database.backend == "sqlite":
        pytest.skip("compose runs on PostgreSQL")
    tokens_file = _tokens_file(compose)
    reg_env, node_env = _env(compose, "registry"), _env(compose, "node")
    common = {
        "database_url": database.url,  # the test's database instead of the compose host
        "listen": "0.0.0.0:0",  # public, as in compose: allowed because a tokens file is set
        "auth_file": tokens_file,
        "report_interval": 0.2,
        "data_dir": tmp_path,
    }
    # Compose names the peers (node:50052, registry:50051); here they are local ports.
    registry_port = free_port()
    node_service = await start_node_service(
        NodeSettings(
            **common,
            token=node_env["BERTH_TOKEN"],
            host=node_env["BERTH_HOST"],
            registry_url=f"127.0.0.1:{registry_port}",
        )
    )
    registry = None
    try:
        registry = await start_registry(
            RegistrySettings(
                **(common | {"listen": f"0.0.0.0:{registry_port}"}),
                token=reg_env["BERTH_TOKEN"],
                host=reg_env["BERTH_HOST"],
                node_url=node_service.address,
            )
        )
        for process in (registry, node_service):
            await asyncio.wait_for(process.reporter.registered.wait(), 10)
        async with (
            aio.insecure_channel(registry.address) as rc,
            aio.insecure_channel(node_service.address) as nc,
        ):
            listed = (
                await registry_pb2_grpc.RegistryServiceStub(rc).ListServices(
                    registry_pb2.ListServicesRequest(), metadata=ADMIN
                )
            ).services
            assert {(s.host, s.binary) for s in listed} == {
                ("registry", "berth-registry"),
                ("node", "berth-node"),
            }
            nodes = node_pb2_grpc.NodeServiceStub(nc)
            agent = (("authorization", f"Bearer {_env(compose, 'compute-1')['BERTH_TOKEN']}"),)
            own = snapshot("compute-1", instances=(instance("demo"),))
            await nodes.ReportSnapshot(node_pb2.ReportSnapshotRequest(snapshot=own), metadata=agent)
            other = node_pb2.ReportSnapshotRequest(snapshot=snapshot("vmware-1"))
            denied = nodes.ReportSnapshot(other, metadata=agent)
            assert await status_of(denied) is grpc.StatusCode.PERMISSION_DENIED
            rows = (
                await host_pb2_grpc.HostServiceStub(rc).DescribeHost(
                    host_pb2.DescribeHostRequest(host="compute-1"), metadata=ADMIN
                )
            ).rows
            assert [r.project for r in rows] == ["(total)", "(used_now)", "(used_max)", "demo"]
    finally:
        if registry is not None:
            await registry.stop(0)
        await node_service.stop(0)


# --- what an operator needs from the file (checked without Docker) ----------------------

BERTH_MODULES = {
    "services.registry": "RegistrySettings",
    "services.node": "NodeSettings",
    "services.scheduler": "SchedulerSettings",
    "services.compute": "ComputeSettings",
    "services.api": "ApiSettings",
}
# What the `berth` CLI reads from its environment (clients/python/src/berth/cli/main.py).
CLI_SETTINGS = {"BERTH_REGISTRY_URL", "BERTH_NODE_URL", "BERTH_SCHEDULER_URL", "BERTH_TOKEN"}


def _berth_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if "build" in s}


def _settings_of(module: str) -> set[str]:
    settings = importlib.import_module(f"{module}.settings")
    cls = getattr(settings, BERTH_MODULES[module])
    return {f"BERTH_{name.upper()}" for name in cls.model_fields}


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies(compose):
    services = compose["services"]
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name in ("prometheus", "grafana", "cli"):
            continue
        assert check.get("test"), f"{name} has no health check"
        if name in _berth_services(compose):
            assert check["test"][:3] == ["CMD", "berth", "health"], name
            # host:port of a gRPC server, or berth-api's http://host:port/healthz
            port = check["test"][3].removesuffix("/healthz").rsplit(":", 1)[1]
            assert service["environment"]["BERTH_LISTEN"].endswith(f":{port}"), name
    for name, service in services.items():
        needs = service.get("depends_on") or {}
        for needed in needs:
            how = needs[needed] if isinstance(needs, dict) else {}
            if "healthcheck" in services[needed]:
                assert how.get("condition") == "service_healthy", f"{name} -> {needed}"


def test_every_variable_is_a_real_setting_and_every_command_a_real_program(compose):
    for name, service in _berth_services(compose).items():
        command = service["command"]
        env = set(service.get("environment", {}))
        if command[:2] == ["python", "-m"]:
            assert command[2] in BERTH_MODULES, name
            unknown = env - _settings_of(command[2])
        else:
            assert command[0] == "berth", name
            unknown = env - CLI_SETTINGS
        assert not unknown, f"{name}: no such setting {sorted(unknown)}"


def test_redis_keeps_its_data_and_no_port_collides_with_node_exporter(compose):
    redis = compose["services"]["redis"]
    volume = redis["volumes"][0].split(":")[0]
    assert volume in compose["volumes"] and "--appendonly" in redis["command"]
    published = [
        str(port).split(":")[-2] if str(port).count(":") else str(port)
        for service in compose["services"].values()
        for port in service.get("ports", [])
    ]
    assert "9100" not in published, published


def test_prometheus_scrapes_every_berth_process_where_it_serves_metrics(compose):
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    expected = {
        f"{name}:{service['environment']['BERTH_METRICS_LISTEN'].rsplit(':', 1)[1]}"
        for name, service in _berth_services(compose).items()
        if "BERTH_METRICS_LISTEN" in service.get("environment", {})
    }
    assert targets == expected
    assert len(expected) == 7  # registry, node, scheduler, api, three agents


def test_the_dashboard_and_alerts_use_only_metrics_berth_serves():
    declared = set()
    for source in (ROOT / "services").rglob("*.py"):
        declared.update(re.findall(r'"(berth_[a-z_]+)"', source.read_text()))
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "berth.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    alerts = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    used = {
        re.sub(r"_(bucket|sum|count)$", "", m)
        for e in exprs
        for m in re.findall(r"berth_[a-z_]+", e)
    }
    missing = {m for m in used if m not in declared}
    assert not missing, missing
    assert len(used) >= 12
