"""Each sub-command parses its arguments and calls the client the way its help says."""

from __future__ import annotations

import pytest
from berth.cli.main import DEFAULT_REGISTRY, build_parser
from cli_fakes import UUID, Run

KEY = {"host": "cmp1", "binary": "berth-compute"}


@pytest.mark.parametrize(
    ("argv", "call"),
    [
        (["service-list"], ("list_services", (), {"host": "", "binary": ""})),
        (
            ["service-list", "--host", "cmp1", "--binary", "berth-compute"],
            ("list_services", (), KEY),
        ),
        (["service-enable", "cmp1", "berth-compute"], ("enable_service", (), KEY)),
        (["service-enable", "--uuid", UUID], ("enable_service", (), {"uuid": UUID})),
        (
            ["service-disable", "cmp1", "berth-compute", "--reason", "bad disk"],
            ("disable_service", (), {**KEY, "reason": "bad disk"}),
        ),
        (
            ["service-disable", "--uuid", UUID],
            ("disable_service", (), {"uuid": UUID, "reason": ""}),
        ),
        (
            ["service-force-down", "cmp1", "berth-compute"],
            ("force_down", (), {**KEY, "unset": False}),
        ),
        (
            ["service-force-down", "cmp1", "berth-compute", "--unset"],
            ("force_down", (), {**KEY, "unset": True}),
        ),
        (["service-delete", UUID], ("delete_service", (), {"uuid": UUID})),
        (["service-delete", "cmp1", "berth-compute"], ("delete_service", (), KEY)),
        (["service-delete", "cmp1 berth-compute"], ("delete_service", (), KEY)),
        (["host-list"], ("list_hosts", (), {"zone": ""})),
        (["host-list", "--zone", "az1"], ("list_hosts", (), {"zone": "az1"})),
        (["host-describe", "cmp1"], ("describe_host", ("cmp1",), {})),
        (
            ["host-action", "cmp1", "--action", "reboot"],
            ("host_action", ("cmp1", "reboot"), {"nodename": ""}),
        ),
        (
            ["host-action", "ironic-1", "--action", "startup", "--nodename", "bm-1"],
            ("host_action", ("ironic-1", "startup"), {"nodename": "bm-1"}),
        ),
        (
            ["aggregate-create", "rack1"],
            ("create_aggregate", ("rack1",), {"availability_zone": ""}),
        ),
        (
            ["aggregate-create", "rack1", "az1"],
            ("create_aggregate", ("rack1",), {"availability_zone": "az1"}),
        ),
        (["aggregate-delete", "rack1"], ("delete_aggregate", ("rack1",), {})),
        (["aggregate-list"], ("list_aggregates", (), {})),
        (["aggregate-show", "rack1"], ("get_aggregate", ("rack1",), {})),
        (["aggregate-add-host", "rack1", "cmp3"], ("add_aggregate_host", ("rack1", "cmp3"), {})),
        (
            ["aggregate-remove-host", "rack1", "cmp3"],
            ("remove_aggregate_host", ("rack1", "cmp3"), {}),
        ),
        (
            ["aggregate-set-metadata", "rack1", "ssd=true", "old=", "url=a=b"],
            ("set_aggregate_metadata", ("rack1", {"ssd": "true", "old": "", "url": "a=b"}), {}),
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_a_sub_command_calls_the_client_once_with_its_arguments(argv, call):
    run = Run(argv)

    assert run.code == 0, run.err
    assert run.fake.calls == [call]
    assert run.err == ""


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["service-enable"],
        ["service-enable", "cmp1"],
        ["service-enable", "cmp1", "berth-compute", "--uuid", UUID],
        ["service-force-down", "--unset"],
        ["service-delete"],
        ["service-delete", "not-a-uuid"],
        ["service-delete", "a", "b", "c"],
        ["host-describe"],
        ["host-action", "cmp1"],
        ["host-action", "cmp1", "--action", "hibernate"],
        ["host-action", "--action", "reboot"],
        ["aggregate-create"],
        ["aggregate-add-host", "rack1"],
        ["aggregate-set-metadata", "rack1"],
        ["aggregate-set-metadata", "rack1", "no-equals-sign"],
        ["aggregate-set-metadata", "rack1", "=value"],
        ["service-list", "--timeout", "soon"],
    ],
    ids=lambda argv: " ".join(argv) or "nothing",
)
def test_a_usage_error_exits_2_without_calling_the_server(argv, capsys):
    run = Run(argv)

    assert run.code == 2
    assert run.fake.calls == []
    assert "usage:" in capsys.readouterr().err


def test_the_global_options_default_to_the_local_registry_in_plaintext():
    args = build_parser({}).parse_args(["service-list"])

    assert args.registry == DEFAULT_REGISTRY
    assert args.token is None and args.tls_ca_file is None
    assert args.tls_cert_file is None and args.tls_key_file is None
    assert args.json is False
    assert args.timeout == 10.0


def test_the_global_options_default_to_the_berth_environment_variables():
    env = {
        "BERTH_REGISTRY_URL": "grpcs://registry.example:443",
        "BERTH_TOKEN": "s3cret",
        "BERTH_TLS_CA_FILE": "/etc/berth/ca.pem",
        "BERTH_TLS_CLIENT_CERT_FILE": "/etc/berth/me.pem",
        "BERTH_TLS_CLIENT_KEY_FILE": "/etc/berth/me.key",
    }

    args = build_parser(env).parse_args(["host-list"])

    assert args.registry == "grpcs://registry.example:443"
    assert args.token == "s3cret"
    assert args.tls_ca_file == "/etc/berth/ca.pem"
    assert (args.tls_cert_file, args.tls_key_file) == ("/etc/berth/me.pem", "/etc/berth/me.key")


def test_a_flag_wins_over_the_environment():
    args = build_parser({"BERTH_REGISTRY_URL": "a:1"}).parse_args(
        ["--registry", "b:2", "host-list"]
    )

    assert args.registry == "b:2"


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--registry", "r:1", "--token", "t", "service-list"],
        ["service-list", "--json", "--registry", "r:1", "--token", "t"],
        ["--registry", "r:1", "service-list", "--token", "t", "--json"],
    ],
)
def test_global_options_work_before_and_after_the_sub_command(argv):
    run = Run(argv)

    assert run.code == 0
    args = run.connected[0]
    assert (args.json, args.registry, args.token) == (True, "r:1", "t")


@pytest.mark.parametrize(
    "argv",
    [
        ["service-list", "--binary", "nova-compute"],
        ["service-disable", "kvm-1", "nova-compute"],
        ["service-delete", "kvm-1", "nova-compute"],
    ],
)
def test_a_binary_named_like_novas_gets_berths_name(argv, capsys):
    run = Run(argv)
    assert run.code == 2
    assert "'nova-compute' is Nova's; Berth's is 'berth-compute'" in capsys.readouterr().err
    assert run.fake.calls == []
