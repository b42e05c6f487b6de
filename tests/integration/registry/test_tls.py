"""TLS and mutual TLS by settings, with certificates made by openssl for the test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from berth.v1 import registry_pb2, registry_pb2_grpc
from grpc import aio

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=berth-test-ca",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                 "-CAcreateserial", "-days", "1", "-extfile", str(d / "ext.cnf"), "-out", str(d / f"{name}.pem"))  # fmt: skip  # noqa: E501
    return d


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


async def test_mutual_tls_refuses_a_client_without_a_certificate(start, pki, database):
    if database.backend != "sqlite":
        pytest.skip("transport security does not depend on the database")
    registry = await start(
        tls_cert_file=pki / "server.pem",
        tls_key_file=pki / "server.key",
        tls_client_ca_file=pki / "ca.pem",
    )
    ca = (pki / "ca.pem").read_bytes()
    with_cert = grpc.ssl_channel_credentials(
        ca, (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes()
    )
    await _list(registry.address, with_cert)
    with pytest.raises(aio.AioRpcError) as err:
        await _list(registry.address, grpc.ssl_channel_credentials(ca))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
