"""Settings come from BERTH_* variables and a TOML file; bad values stop the process by name."""

import pytest

from services.common.settings import load_settings
from services.registry.settings import RegistrySettings


def test_environment_values_are_typed(monkeypatch):
    monkeypatch.setenv("BERTH_SERVICE_DOWN_TIME", "30")
    monkeypatch.setenv("BERTH_LISTEN", "127.0.0.1:6000")
    settings = load_settings(RegistrySettings)
    assert settings.service_down_time == 30.0 and settings.listen_address == "127.0.0.1:6000"


def test_the_default_listen_address_is_loopback_on_the_service_port():
    assert RegistrySettings().listen_address == "127.0.0.1:50051"


def test_a_config_file_fills_in_and_the_environment_wins(monkeypatch, tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text('default_availability_zone = "az-file"\nservice_down_time = 90\n')
    monkeypatch.setenv("BERTH_CONFIG", str(path))
    monkeypatch.setenv("BERTH_SERVICE_DOWN_TIME", "45")
    settings = load_settings(RegistrySettings)
    assert settings.default_availability_zone == "az-file" and settings.service_down_time == 45


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BERTH_REPORT_INTERVAL", "-1"),
        ("BERTH_LISTEN", "nowhere"),
        ("BERTH_LISTEN", "h:70000"),
        ("BERTH_LOG_LEVEL", "LOUD"),
    ],
)
def test_an_invalid_value_stops_with_a_message_naming_the_variable(
    monkeypatch, capsys, name, value
):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stop:
        load_settings(RegistrySettings)
    assert stop.value.code == 2
    assert f"invalid setting {name}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "named", "why"),
    [
        (("cert",), "BERTH_TLS_CLIENT_KEY_FILE", "give its key too"),
        (("key",), "BERTH_TLS_CLIENT_KEY_FILE", "needs BERTH_TLS_CLIENT_CERT_FILE too"),
        (("cert", "key", "missing-cert"), "BERTH_TLS_CLIENT_CERT_FILE", "not point to a file"),
        (("cert", "key", "missing-key"), "BERTH_TLS_CLIENT_KEY_FILE", "not point to a file"),
    ],
)
def test_a_client_certificate_needs_its_key_and_both_files_must_exist(
    monkeypatch, capsys, tmp_path, given, named, why
):
    for kind in ("cert", "key"):
        path = tmp_path / f"client.{kind}"
        path.write_text("PEM")
        if f"missing-{kind}" in given:
            path = tmp_path / f"absent.{kind}"
        if kind in given:
            monkeypatch.setenv(f"BERTH_TLS_CLIENT_{kind.upper()}_FILE", str(path))
    with pytest.raises(SystemExit) as stop:
        load_settings(RegistrySettings)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert f"invalid setting {named}" in err and why in err
    assert len(err.strip().splitlines()) == 1, err  # one line: the cause, not its echo


def test_a_client_certificate_and_its_key_are_read_from_the_environment(monkeypatch, tmp_path):
    for kind in ("cert", "key"):
        (tmp_path / f"client.{kind}").write_text("PEM")
        monkeypatch.setenv(
            f"BERTH_TLS_CLIENT_{kind.upper()}_FILE", str(tmp_path / f"client.{kind}")
        )
    settings = load_settings(RegistrySettings)
    assert settings.tls_client_cert_file == tmp_path / "client.cert"
    assert settings.tls_client_key_file == tmp_path / "client.key"
