"""docker-compose.yml without Docker: its registry settings and tokens start a working registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from berth.v1 import registry_pb2, registry_pb2_grpc
from grpc import aio

from services.common.auth import TokenTable
from services.registry.settings import RegistrySettings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_wires_postgres_redis_and_the_registry(compose):
    services = compose["services"]
    assert {"postgres", "redis", "registry"} <= set(services)
    registry = services["registry"]
    assert registry["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (ROOT / "Dockerfile").exists()
    source = registry["volumes"][0].split(":")[0]
    assert (ROOT / source).exists(), f"{source} is mounted but missing"


async def test_the_compose_settings_start_a_registry_that_registers_itself(
    compose, database, tmp_path
):
    if database.backend == "sqlite":
        pytest.skip("compose runs the registry on PostgreSQL")
    env = dict(compose["services"]["registry"]["environment"])
    tokens_file = ROOT / compose["services"]["registry"]["volumes"][0].split(":")[0]
    TokenTable.load(tokens_file)  # parses, or the test fails with the file's error
    settings = RegistrySettings(
        database_url=database.url,  # the test's database instead of the compose host
        listen="0.0.0.0:0",  # public, as in compose: allowed because a tokens file is set
        auth_file=tokens_file,
        token=env["BERTH_TOKEN"],
        host=env["BERTH_HOST"],
        report_interval=0.2,
        data_dir=tmp_path,
    )
    from services.registry.app import start_registry

    registry = await start_registry(settings)
    try:
        await asyncio.wait_for(registry.reporter.registered.wait(), 10)
        async with aio.insecure_channel(registry.address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            admin = (("authorization", "Bearer change-me-admin"),)
            listed = (
                await stub.ListServices(registry_pb2.ListServicesRequest(), metadata=admin)
            ).services
        assert [(s.host, s.binary) for s in listed] == [("registry", "berth-registry")]
    finally:
        await registry.stop(0)
