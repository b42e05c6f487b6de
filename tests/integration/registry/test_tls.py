"""TLS and mutual TLS by settings, with certificates made by openssl for the test."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from berth.v1 import registry_pb2, registry_pb2_grpc
from grpc import aio

from services.common.channels import aio_channel
from services.common.settings import CommonSettings
from tests.pki import make_pki, needs_openssl

pytestmark = needs_openssl


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    return make_pki(tmp_path_factory.mktemp("pki"))


async def _list(address: str, credentials: grpc.ChannelCredentials | None) -> None:
    channel = (
        aio.secure_channel(address, credentials) if credentials else aio.insecure_channel(address)
    )
    async with channel:
        await registry_pb2_grpc.RegistryServiceStub(channel).ListServices(
            registry_pb2.ListServicesRequest(), timeout=5
        )


async def test_tls_serves_verified_clients_and_refuses_plaintext(start, pki, database):
    if database.backend != "sqlite":
        pytest.skip("transport security does not depend on the database")
    registry = await start(tls_cert_file=pki / "server.pem", tls_key_file=pki / "server.key")
    await _list(registry.address, grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes()))
    with pytest.raises(aio.AioRpcError) as err:
        await _list(registry.address, None)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


async def _start_mutual_tls(start, pki: Path):  # type: ignore[no-untyped-def]
    """A registry serving TLS that requires a client certificate signed by the test CA."""
    return await start(
        tls_cert_file=pki / "server.pem",
        tls_key_file=pki / "server.key",
        tls_client_ca_file=pki / "ca.pem",
    )


async def test_mutual_tls_refuses_a_client_without_a_certificate(start, pki, database):
    if database.backend != "sqlite":
        pytest.skip("transport security does not depend on the database")
    registry = await _start_mutual_tls(start, pki)
    ca = (pki / "ca.pem").read_bytes()
    with_cert = grpc.ssl_channel_credentials(
        ca, (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes()
    )
    await _list(registry.address, with_cert)
    with pytest.raises(aio.AioRpcError) as err:
        await _list(registry.address, grpc.ssl_channel_credentials(ca))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def _process_settings(pki: Path, *, client_cert: bool) -> CommonSettings:
    """A process's outgoing settings: the CA, and the client certificate when asked."""
    cert = {"tls_client_cert_file": pki / "client.pem", "tls_client_key_file": pki / "client.key"}
    return CommonSettings(tls_ca_file=pki / "ca.pem", **(cert if client_cert else {}))


async def _list_from_process(target: str, settings: CommonSettings) -> None:
    async with aio_channel(target, settings) as channel:
        await registry_pb2_grpc.RegistryServiceStub(channel).ListServices(
            registry_pb2.ListServicesRequest(), timeout=5
        )


async def test_a_process_presents_its_client_certificate_to_a_mutual_tls_server(
    start, pki, database
):
    if database.backend != "sqlite":
        pytest.skip("transport security does not depend on the database")
    registry = await _start_mutual_tls(start, pki)
    await _list_from_process(registry.address, _process_settings(pki, client_cert=True))
    with pytest.raises(aio.AioRpcError) as err:
        await _list_from_process(registry.address, _process_settings(pki, client_cert=False))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_process_with_a_client_certificate_reaches_a_plaintext_target_without_it(
    start, pki, database
):
    if database.backend != "sqlite":
        pytest.skip("transport security does not depend on the database")
    registry = await start()
    # One process may talk to TLS and plaintext peers: grpc:// goes without TLS, so without
    # the certificate, rather than failing.
    await _list_from_process(f"grpc://{registry.address}", _process_settings(pki, client_cert=True))
