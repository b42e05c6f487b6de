"""A user's mypy sees Berth's responses typed: berth-client ships .pyi stubs and declares
the typing packages they need, and its clients are generic over their generated stubs."""

from __future__ import annotations

import textwrap

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is a development dependency")

SCRIPT = textwrap.dedent(
    """
    from berth.client.registry import RegistryClient

    with RegistryClient.connect("127.0.0.1:50051") as client:
        services = list(client.list_services(binary="berth-compute"))
        reveal_type(services)
        reveal_type(services[0].availability_zone)
        reveal_type(client.heartbeat("uuid").report_count)
        client.get_service(uuid=42)  # a mistake mypy must catch
    """
)


def test_a_users_script_gets_typed_responses_and_its_mistakes_caught(tmp_path):
    script = tmp_path / "ops.py"
    script.write_text(SCRIPT)
    # A user's mypy: none of this repository's configuration (`--config-file ""`), run
    # from elsewhere; berth-client is found as an installed package.
    stdout, _, status = mypy_api.run(
        [
            str(script),
            "--config-file",
            "",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert 'Revealed type is "list[berth.v1.registry_pb2.Service]"' in stdout, stdout
    assert 'Revealed type is "str"' in stdout, stdout
    assert 'Revealed type is "int"' in stdout, stdout  # an int64 field
    assert 'error: Argument "uuid" to "get_service"' in stdout, stdout
    assert status == 1  # only for the mistake
    assert stdout.count("error:") == 1, stdout
