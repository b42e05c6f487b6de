"""`berth agent` builds the agent's command from its options and runs it in the foreground."""

from __future__ import annotations

import io
import signal
from pathlib import Path

import pytest
from berth.cli import agent
from berth.cli.main import build_parser
from berth.cli.output import UsageError
from cli_fakes import Run

BASE = {"PATH": "/usr/bin", "BERTH_LISTEN": "0.0.0.0:1"}


def parse(*argv: str, env: dict[str, str] | None = None):
    return build_parser(env or {}).parse_args(["agent", *argv])


def command(*argv: str, port: int = 50054, env: dict[str, str] | None = None):
    return agent.build_command(
        parse(*argv, env=env), port=port, base_env=BASE, default_host="this-box", python="py"
    )


def test_the_defaults_run_a_fake_agent_for_this_machine_on_50054():
    built = command()

    assert built.argv == ["py", "-m", "services.compute"]
    assert built.address == "127.0.0.1:50054"
    assert built.data_dir == (Path("data") / "agents" / "this-box").absolute()
    assert built.env == {
        "PATH": "/usr/bin",
        "BERTH_HOST": "this-box",
        "BERTH_LISTEN": "127.0.0.1:50054",
        "BERTH_DATA_DIR": str(built.data_dir),
        "BERTH_REGISTRY_URL": "127.0.0.1:50051",
        "BERTH_NODE_URL": "127.0.0.1:50052",
        "BERTH_DRIVER": "fake",
    }


def test_every_option_given_becomes_its_berth_variable():
    built = command(
        "--host",
        "bm-host",
        "--driver",
        "fake-ironic",
        "--vcpus",
        "8",
        "--memory-mb",
        "16384",
        "--disk-gb",
        "200",
        "--nodes",
        "4",
        "--pool",
        "gold",
        "--resource-class",
        "CUSTOM_BAREMETAL_GOLD",
        "--port",
        "6100",
        "--data-dir",
        "/srv/agent",
        "--update-interval",
        "2.5",
        "--registry",
        "grpcs://reg:443",
        "--node",
        "node:7",
        "--token",
        "agent-token",
        "--tls-ca-file",
        "/ca.pem",
        "--tls-cert-file",
        "/agent.pem",
        "--tls-key-file",
        "/agent.key",
        port=6100,
    )

    assert built.env == {
        "PATH": "/usr/bin",
        "BERTH_HOST": "bm-host",
        "BERTH_LISTEN": "127.0.0.1:6100",
        "BERTH_DATA_DIR": "/srv/agent",
        "BERTH_REGISTRY_URL": "grpcs://reg:443",
        "BERTH_NODE_URL": "node:7",
        "BERTH_DRIVER": "fake-ironic",
        "BERTH_FAKE_VCPUS": "8",
        "BERTH_FAKE_MEMORY_MB": "16384",
        "BERTH_FAKE_DISK_GB": "200",
        "BERTH_FAKE_NODES": "4",
        "BERTH_FAKE_IRONIC_POOL": "gold",
        "BERTH_FAKE_IRONIC_RESOURCE_CLASS": "CUSTOM_BAREMETAL_GOLD",
        "BERTH_UPDATE_RESOURCES_INTERVAL": "2.5",
        "BERTH_TOKEN": "agent-token",
        "BERTH_TLS_CA_FILE": "/ca.pem",
        "BERTH_TLS_CLIENT_CERT_FILE": "/agent.pem",
        "BERTH_TLS_CLIENT_KEY_FILE": "/agent.key",
    }


def test_a_cluster_agent_gets_its_member_count():
    built = command("--driver", "fake-cluster", "--members", "3")

    assert built.env["BERTH_FAKE_CLUSTER_MEMBERS"] == "3"
    assert "BERTH_FAKE_NODES" not in built.env


def test_the_registry_and_node_addresses_come_from_the_environment_like_every_command():
    built = command(env={"BERTH_REGISTRY_URL": "r:1", "BERTH_NODE_URL": "n:2"})

    assert (built.env["BERTH_REGISTRY_URL"], built.env["BERTH_NODE_URL"]) == ("r:1", "n:2")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nodes", "4"], "--nodes applies to --driver fake-ironic, not fake"),
        (["--driver", "fake-cluster", "--pool", "p"], "--pool applies to --driver fake-ironic"),
        (["--driver", "fake-ironic", "--members", "3"], "--members applies to --driver fake-c"),
        (["--resource-class", "CUSTOM_X"], "--resource-class applies to --driver fake-ironic"),
        (
            ["--driver", "fake-ironic", "--resource-class", "gold"],
            "--resource-class: 'gold' is not a custom resource class",
        ),
    ],
)
def test_an_option_of_another_driver_is_a_usage_error(argv, message):
    with pytest.raises(UsageError, match=message):
        command(*argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["agent", "--driver", "qemu"],
        ["agent", "--vcpus", "0"],
        ["agent", "--port", "70000"],
        ["agent", "--update-interval", "0"],
        ["agent", "--nodes", "2"],
    ],
    ids=lambda argv: " ".join(argv[1:]),
)
def test_bad_agent_options_exit_2_with_usage(argv, capsys):
    run = Run(argv)

    assert run.code == 2
    assert run.connected == []
    assert "usage:" in capsys.readouterr().err


# -- running it ------------------------------------------------------------------------------


class FakeChild:
    """A foreground agent: `wait` runs `during_wait` once, then returns `exit_code`."""

    def __init__(self, exit_code: int = 0, during_wait=None) -> None:
        self.exit_code = exit_code
        self.during_wait = during_wait
        self.signals: list[int] = []
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)

    def wait(self, timeout: float | None = None) -> int:
        if self.during_wait:
            during, self.during_wait = self.during_wait, None
            during()
        self.returncode = self.exit_code
        return self.exit_code


class Harness:
    def __init__(self, tmp_path: Path, *argv: str, child: FakeChild | None = None) -> None:
        self.args = parse("--host", "kvm-9", "--data-dir", str(tmp_path / "agent"), *argv)
        self.child = child or FakeChild()
        self.spawned: list[agent.AgentCommand] = []
        self.out, self.err = io.StringIO(), io.StringIO()

    def spawn(self, built: agent.AgentCommand) -> FakeChild:
        self.spawned.append(built)
        return self.child

    def run(self, **overrides) -> int:
        options = dict(
            spawn=self.spawn,
            pick_port=lambda: 41234,
            port_free=lambda port: True,
            available=lambda module: True,
            base_env={"PATH": "/usr/bin"},
        )
        options.update(overrides)
        return agent.run_agent(self.args, self.out, self.err, **options)


def test_run_agent_starts_the_agent_says_where_and_returns_its_exit_code(tmp_path):
    harness = Harness(tmp_path, child=FakeChild(exit_code=3))

    assert harness.run() == 3

    (built,) = harness.spawned
    assert built.env["BERTH_HOST"] == "kvm-9"
    assert (tmp_path / "agent").is_dir()
    assert harness.out.getvalue().startswith("compute agent kvm-9 (fake) on 127.0.0.1:50054")


def test_port_0_picks_a_free_port(tmp_path):
    harness = Harness(tmp_path, "--port", "0")

    assert harness.run() == 0
    assert harness.spawned[0].env["BERTH_LISTEN"] == "127.0.0.1:41234"


def test_a_port_in_use_is_reported_before_anything_starts(tmp_path):
    harness = Harness(tmp_path)

    assert harness.run(port_free=lambda port: False) == 1

    assert "port 50054 is in use" in harness.err.getvalue()
    assert harness.spawned == []


def test_without_the_services_installed_it_says_how_to_install_them(tmp_path):
    harness = Harness(tmp_path)

    assert harness.run(available=lambda module: module != "services.compute") == 1

    assert harness.err.getvalue().strip() == agent.INSTALL_HINT
    assert harness.spawned == []


def test_ctrl_c_and_sigterm_are_forwarded_to_the_agent(tmp_path):
    def signals_arrive():
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)

    harness = Harness(tmp_path, child=FakeChild(during_wait=signals_arrive))
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    assert harness.run() == 0

    assert harness.child.signals == [signal.SIGINT, signal.SIGTERM]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_an_agent_killed_by_a_signal_exits_128_plus_its_number():
    assert agent.wait_forwarding_signals(FakeChild(exit_code=-signal.SIGKILL)) == 128 + 9


def test_the_agent_command_needs_no_client():
    args = parse()

    assert args.client is None and args.func is agent.agent_command
