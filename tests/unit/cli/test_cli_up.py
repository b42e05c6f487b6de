"""`berth up` starts each service, waits for SERVING, and stops them all in order; no sockets."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from berth.cli import up
from berth.cli.main import build_parser

# `json` is importable everywhere, so find_spec succeeds without the services installed.
REGISTRY = up.ServiceSpec("registry", "json", 50051, "registry.sqlite3")


class FakeProcess:
    """A child that runs until terminated (or, if stubborn, until killed)."""

    def __init__(self, *, exit_code: int | None = None, stubborn: bool = False) -> None:
        self.pid = 4242
        self.returncode = exit_code
        self.stubborn = stubborn
        self.signals: list[str] = []

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.signals.append("TERM")
        if not self.stubborn:
            self.returncode = -15

    def kill(self) -> None:
        self.signals.append("KILL")
        self.returncode = -9

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None
        return self.returncode


class Harness:
    """Runs up.up() with fake processes, health probe, clock and sleep."""

    def __init__(self, tmp_path: Path, process: FakeProcess, *, serving_after: int = 0) -> None:
        self.process = process
        self.now = 0.0
        self.probes = 0
        self.probed: list[str] = []
        self.serving_after = serving_after
        self.spawned: list[tuple[up.ServiceSpec, dict[str, str], Path]] = []
        self.args = argparse.Namespace(
            data_dir=str(tmp_path / "data"),
            host="cmp1",
            registry_port=50051,
            redis_url=None,
            redis_port=0,
            metrics_port_base=0,
        )
        self.out, self.err = io.StringIO(), io.StringIO()
        self.interrupt_when_supervising = True

    def spawn(self, spec, env, log_path):
        self.spawned.append((spec, dict(env), log_path))
        log_path.write_text("".join(f"line {i}\n" for i in range(30)))
        return self.process

    def probe(self, address):
        self.probes += 1
        self.probed.append(address)
        return up.SERVING if self.probes > self.serving_after else 0

    def sleep(self, seconds):
        # The supervisor naps 0.5 s between checks: that is where Ctrl-C lands.
        if seconds == 0.5 and self.interrupt_when_supervising:
            raise KeyboardInterrupt
        self.now += seconds

    def run(self, **overrides) -> int:
        options = dict(
            specs=(REGISTRY,),
            spawn=self.spawn,
            probe=self.probe,
            port_free=lambda port: True,
            sleep=self.sleep,
            clock=lambda: self.now,
            base_env={"PATH": "/usr/bin", "BERTH_LISTEN": "ignored:1"},
        )
        options.update(overrides)
        return up.up(self.args, self.out, self.err, **options)


def test_up_is_a_sub_command_with_a_port_option_per_service():
    args = build_parser({}).parse_args(["up", "--registry-port", "6000", "--data-dir", "/tmp/b"])

    assert (args.registry_port, args.data_dir, args.client) == (6000, "/tmp/b", None)


def test_a_missing_services_package_is_named_with_how_to_install_it(tmp_path):
    harness = Harness(tmp_path, FakeProcess())
    missing = up.ServiceSpec("registry", "berth_no_such_package.registry", 50051)

    assert harness.run(specs=(missing,)) == 1
    assert harness.err.getvalue().strip() == up.INSTALL_HINT
    assert harness.spawned == []


def test_each_child_gets_where_to_listen_store_and_register_on_top_of_the_callers_env(tmp_path):
    env = up.service_env(
        REGISTRY,
        ports={"registry": 6000},
        data_dir=tmp_path,
        host="cmp1",
        base={"PATH": "/usr/bin", "BERTH_LISTEN": "0.0.0.0:1"},
    )

    assert env == {
        "PATH": "/usr/bin",
        "BERTH_LISTEN": "127.0.0.1:6000",
        "BERTH_DATA_DIR": str(tmp_path),
        "BERTH_HOST": "cmp1",
        "BERTH_REGISTRY_URL": "127.0.0.1:6000",
        "BERTH_DATABASE_URL": f"sqlite:///{tmp_path}/registry.sqlite3",
    }


def test_up_starts_the_registry_waits_for_serving_prints_where_and_stops_on_ctrl_c(tmp_path):
    harness = Harness(tmp_path, FakeProcess(), serving_after=3)

    assert harness.run() == 0

    _spec, env, log_path = harness.spawned[0]
    assert log_path == (tmp_path / "data" / "logs" / "registry.log").resolve()
    assert env["BERTH_LISTEN"] == "127.0.0.1:50051"
    assert harness.probes == 4
    out = harness.out.getvalue()
    assert f"output goes to {log_path}" in out
    assert "registry  127.0.0.1:50051" in out
    assert (
        "try: berth service-list / berth host-list / grpcurl -plaintext 127.0.0.1:50051 list" in out
    )
    assert out.rstrip().endswith("stopped")
    assert harness.process.signals == ["TERM"]


def test_a_child_that_exits_before_it_is_ready_shows_the_end_of_its_log(tmp_path):
    harness = Harness(tmp_path, FakeProcess(exit_code=3))

    assert harness.run() == 1

    err = harness.err.getvalue()
    assert "registry exited with code 3 before it was ready" in err
    assert "  line 29" in err and "  line 10" in err and "line 9\n" not in err


def test_a_child_that_never_reports_serving_is_given_up_after_the_deadline(tmp_path):
    harness = Harness(tmp_path, FakeProcess(), serving_after=10**9)

    assert harness.run() == 1

    assert f"within {up.READY_TIMEOUT:g} s" in harness.err.getvalue()
    assert harness.process.signals == ["TERM"]


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    harness = Harness(tmp_path, FakeProcess(stubborn=True))

    assert harness.run() == 0

    assert harness.process.signals == ["TERM", "KILL"]
    assert harness.now >= up.STOP_GRACE
    assert "killing it" in harness.out.getvalue()


def test_a_child_that_dies_while_running_ends_up_with_an_error(tmp_path):
    process = FakeProcess()
    harness = Harness(tmp_path, process)
    harness.interrupt_when_supervising = False

    def crash_then_sleep(seconds):
        process.returncode = 1
        harness.now += seconds

    assert harness.run(sleep=crash_then_sleep) == 1
    assert "registry exited with code 1" in harness.err.getvalue()


def test_a_port_in_use_is_reported_before_anything_starts(tmp_path):
    harness = Harness(tmp_path, FakeProcess())

    assert harness.run(port_free=lambda port: False) == 1

    assert "port 50051 for the registry is in use" in harness.err.getvalue()
    assert "--registry-port" in harness.err.getvalue()
    assert harness.spawned == []


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 0),  # status absent: UNKNOWN
        (b"\x08\x01", 1),  # SERVING
        (b"\x08\x02", 2),  # NOT_SERVING
        (b"\x12\x03abc\x08\x01", 1),  # an unknown length-delimited field is skipped
        (b"\x08\x81\x01", 129),  # a multi-byte varint
    ],
)
def test_a_health_response_is_decoded_by_hand(data, status):
    assert up.decode_health_status(data) == status


def test_tail_gives_the_last_lines_or_nothing_for_a_missing_file(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("a\nb\nc\n")

    assert up.tail(log, 2) == ["b", "c"]
    assert up.tail(tmp_path / "missing.log", 2) == []


def test_find_missing_names_only_the_modules_that_are_not_installed():
    absent = up.ServiceSpec("node", "berth_no_such_package.node", 50052)

    assert up.find_missing((REGISTRY, absent)) == [absent]


def test_a_data_dir_that_cannot_be_created_is_reported_in_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    harness = Harness(tmp_path, FakeProcess())
    harness.args.data_dir = str(blocker)

    assert harness.run() == 1

    assert harness.err.getvalue().startswith("cannot create")
    assert harness.spawned == []


# -- the node service and the demo fleet -------------------------------------------------------

NODE = up.ServiceSpec("node", "json", 50052, "node.sqlite3")


def test_the_node_service_starts_right_after_the_registry_then_the_scheduler_then_the_api():
    assert list(up.SERVICES) == [
        up.ServiceSpec("registry", "services.registry", 50051, "registry.sqlite3"),
        up.ServiceSpec("node", "services.node", 50052, "node.sqlite3"),
        up.ServiceSpec("scheduler", "services.scheduler", 50053, redis=True),
        up.ServiceSpec("api", "services.api", 8774, http=True),
    ]


def test_the_api_is_ready_when_its_healthz_answers_and_the_banner_says_how_to_use_it(tmp_path):
    api = up.ServiceSpec("api", "services.api", 8774, http=True)
    harness = Harness(tmp_path, FakeProcess())
    harness.args.api_port = 8774
    assert harness.run(specs=(REGISTRY, api)) == 0
    assert harness.probed[-1] == "http://127.0.0.1:8774/healthz"
    assert "--os-endpoint http://127.0.0.1:8774/v2.1" in harness.out.getvalue()
    assert "auth: {endpoint: http://127.0.0.1:8774/v2.1}" in harness.out.getvalue()


def test_every_child_learns_the_node_services_address():
    env = up.service_env(
        REGISTRY,
        ports={"registry": 6000, "node": 6001},
        data_dir=Path("/d"),
        host="cmp1",
        base={},
    )

    assert env["BERTH_NODE_URL"] == "127.0.0.1:6001"
    assert env["BERTH_LISTEN"] == "127.0.0.1:6000"


def test_up_parses_the_node_port_and_the_fleet_options():
    args = build_parser({}).parse_args(
        ["up", "--node-port", "6001", "--no-fleet", "--fleet-prefix", "demo-"]
    )

    assert (args.node_port, args.no_fleet, args.fleet_prefix) == (6001, True, "demo-")
    assert build_parser({}).parse_args(["up"]).no_fleet is False


@pytest.mark.parametrize(
    ("argv", "hosts"),
    [
        (["up"], ["kvm-1", "vmware-1", "ironic-1"]),
        (["up", "--fleet-prefix", "demo-"], ["demo-kvm-1", "demo-vmware-1", "demo-ironic-1"]),
        (["up", "--no-fleet"], []),
    ],
)
def test_the_up_command_starts_the_demo_fleet_unless_told_not_to(argv, hosts, monkeypatch):
    seen = {}

    def fake_up(args, out, err, **kwargs):
        seen.update(kwargs)
        return 0

    monkeypatch.setattr(up, "up", fake_up)
    args = build_parser({}).parse_args(argv)

    assert args.func(None, args, type("Out", (), {"stream": io.StringIO()})()) == 0
    assert [agent.host for agent in seen["fleet"]] == hosts


class Fleet(Harness):
    """A Harness whose children each get a process of their own, recording stop order."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(tmp_path, FakeProcess())
        monkeypatch.setattr(up, "COMPUTE_MODULE", "json")  # importable: "installed"
        self.args.node_port = 50052
        self.processes: dict[str, FakeProcess] = {}
        self.stopped: list[str] = []
        self.ports = iter([50051, 41001, 41001, 41002, 41003])
        self.exit_early: dict[str, int] = {}

    def spawn(self, spec, env, log_path):
        self.spawned.append((spec, dict(env), log_path))
        log_path.write_text(f"{spec.name} says goodbye\n")
        process = FakeProcess(exit_code=self.exit_early.get(spec.name))
        stopped = self.stopped

        def terminate(name=spec.name, process=process):
            stopped.append(name)
            process.returncode = -15

        process.terminate = terminate
        self.processes[spec.name] = process
        return process

    def run(self, **overrides) -> int:
        options = dict(
            specs=(REGISTRY, NODE), fleet=up.DEMO_FLEET, pick_port=lambda: next(self.ports)
        )
        options.update(overrides)
        return super().run(**options)


def test_up_starts_an_agent_per_fleet_host_on_its_own_free_port_and_data_dir(tmp_path, monkeypatch):
    fleet = Fleet(tmp_path, monkeypatch)

    assert fleet.run() == 0, fleet.err.getvalue()

    names = [spec.name for spec, _, _ in fleet.spawned]
    assert names == ["registry", "node", "kvm-1", "vmware-1", "ironic-1"]
    data = (tmp_path / "data").resolve()
    envs = {spec.name: env for spec, env, _ in fleet.spawned}
    # The registry's port and a port handed out twice are skipped.
    assert [envs[h]["BERTH_LISTEN"] for h in ("kvm-1", "vmware-1", "ironic-1")] == [
        "127.0.0.1:41001",
        "127.0.0.1:41002",
        "127.0.0.1:41003",
    ]
    kvm = envs["kvm-1"]
    assert kvm["BERTH_HOST"] == "kvm-1"
    assert kvm["BERTH_DRIVER"] == "fake"
    assert kvm["BERTH_DATA_DIR"] == str(data / "agents" / "kvm-1")
    assert (data / "agents" / "kvm-1").is_dir()
    assert kvm["BERTH_REGISTRY_URL"] == "127.0.0.1:50051"
    assert "BERTH_DATABASE_URL" not in kvm  # agents own no tables
    assert envs["vmware-1"]["BERTH_DRIVER"] == "fake-cluster"
    assert envs["vmware-1"]["BERTH_FAKE_CLUSTER_MEMBERS"] == "3"
    assert envs["ironic-1"]["BERTH_DRIVER"] == "fake-ironic"
    assert envs["ironic-1"]["BERTH_FAKE_NODES"] == "4"
    assert {env["BERTH_NODE_URL"] for env in envs.values()} == {"127.0.0.1:50052"}
    assert [spec.module for spec, _, _ in fleet.spawned[2:]] == ["json"] * 3
    assert [log.name for _, _, log in fleet.spawned[2:]] == [
        "kvm-1.log",
        "vmware-1.log",
        "ironic-1.log",
    ]


def test_up_prints_every_agents_address_and_a_hint_with_the_hypervisor_commands(
    tmp_path, monkeypatch
):
    fleet = Fleet(tmp_path, monkeypatch)

    fleet.run()

    out = fleet.out.getvalue()
    assert "starting agent vmware-1 (fake-cluster) on 127.0.0.1:41002" in out
    assert "  agent kvm-1     127.0.0.1:41001  log:" in out
    assert "  node            127.0.0.1:50052  log:" in out
    assert "berth hypervisor-list" in out
    assert "berth host-describe kvm-1" in out


def test_the_agents_stop_first_then_the_services_in_reverse(tmp_path, monkeypatch):
    fleet = Fleet(tmp_path, monkeypatch)

    fleet.run()

    assert fleet.stopped == ["ironic-1", "vmware-1", "kvm-1", "node", "registry"]


def test_an_agent_that_dies_at_start_stops_everything_and_shows_its_log(tmp_path, monkeypatch):
    fleet = Fleet(tmp_path, monkeypatch)
    fleet.exit_early = {"vmware-1": 3}

    assert fleet.run() == 1

    err = fleet.err.getvalue()
    assert "agent vmware-1 exited with code 3 before it was ready." in err
    assert "vmware-1.log" in err and "  vmware-1 says goodbye" in err
    assert set(fleet.stopped) == {"registry", "node", "kvm-1", "ironic-1"}


def test_an_agent_whose_host_was_shut_down_leaves_the_rest_running(tmp_path, monkeypatch):
    fleet = Fleet(tmp_path, monkeypatch)
    naps = 0

    def shut_down_kvm_then_ctrl_c(seconds):
        nonlocal naps
        if seconds == 0.5:
            naps += 1
            if naps == 1:
                fleet.processes["kvm-1"].returncode = 0  # `berth host-action kvm-1 shutdown`
            elif naps == 3:
                raise KeyboardInterrupt
        fleet.now += seconds

    assert fleet.run(sleep=shut_down_kvm_then_ctrl_c) == 0

    err = fleet.err.getvalue()
    assert err.count("agent kvm-1 stopped: its host was shut down; the rest go on") == 1
    assert "exited with code" not in err and naps == 3
    assert fleet.stopped == ["ironic-1", "vmware-1", "node", "registry"]


def test_without_the_compute_agent_installed_up_suggests_no_fleet(tmp_path, monkeypatch):
    fleet = Fleet(tmp_path, monkeypatch)
    monkeypatch.setattr(up, "COMPUTE_MODULE", "berth_no_such_package.compute")

    assert fleet.run() == 1

    assert fleet.err.getvalue().strip() == up.INSTALL_HINT + " (or start no agents: --no-fleet)"
    assert fleet.spawned == []


def test_no_fleet_starts_only_the_services_and_needs_no_compute_agent(tmp_path, monkeypatch):
    fleet = Fleet(tmp_path, monkeypatch)
    monkeypatch.setattr(up, "COMPUTE_MODULE", "berth_no_such_package.compute")

    assert fleet.run(fleet=()) == 0

    assert [spec.name for spec, _, _ in fleet.spawned] == ["registry", "node"]
    assert "host-describe" not in fleet.out.getvalue()
    assert "berth hypervisor-list" in fleet.out.getvalue()


def test_demo_fleet_puts_the_prefix_before_each_host():
    assert [agent.host for agent in up.demo_fleet("x-")] == ["x-kvm-1", "x-vmware-1", "x-ironic-1"]
    assert [agent.driver for agent in up.demo_fleet()] == ["fake", "fake-cluster", "fake-ironic"]


@pytest.mark.parametrize(
    ("module", "available"),
    [("json", True), ("berth_no_such_package.compute", False), ("berth_no_such_package", False)],
)
def test_a_module_is_available_when_it_can_be_found(module, available):
    assert up.module_available(module) is available


# -- the scheduler and its Redis -----------------------------------------------------------------

SCHEDULER = up.ServiceSpec("scheduler", "json", 50053, redis=True)


class FakeRedis:
    """An embedded Redis that records when it starts and stops."""

    def __init__(self, data_dir: Path, port: int, events: list[str], *, fail: str = "") -> None:
        self.data_dir, self.port, self.events, self.fail = data_dir, port or 6390, events, fail
        self.log_path = data_dir / "logs" / "redis.log"
        self.alive = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> FakeRedis:
        self.events.append("redis start")
        if self.fail:
            raise up.EmbeddedRedisError(self.fail)
        self.alive = True
        return self

    def running(self) -> bool:
        return self.alive

    def stop(self) -> None:
        self.events.append("redis stop")
        self.alive = False


class WithScheduler(Fleet):
    """A Fleet that runs the registry, node and scheduler, with a fake embedded Redis."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **redis) -> None:
        super().__init__(tmp_path, monkeypatch)
        self.args.scheduler_port = 50053
        self.redis: list[FakeRedis] = []
        self.redis_options = redis

    def make_redis(self, data_dir, port):
        self.redis.append(FakeRedis(data_dir, port, self.stopped, **self.redis_options))
        return self.redis[-1]

    def run(self, **overrides) -> int:
        options = dict(specs=(REGISTRY, NODE, SCHEDULER), make_redis=self.make_redis)
        options.update(overrides)
        return super().run(**options)


def test_up_parses_the_scheduler_port_and_the_redis_options():
    args = build_parser({}).parse_args(
        ["up", "--scheduler-port", "6003", "--redis-url", "redis://r:1/2", "--redis-port", "7"]
    )
    defaults = build_parser({}).parse_args(["up"])

    assert (args.scheduler_port, args.redis_url, args.redis_port) == (6003, "redis://r:1/2", 7)
    assert (defaults.scheduler_port, defaults.redis_url, defaults.redis_port) == (50053, None, 0)


def test_every_child_learns_the_schedulers_address_and_the_redis_url():
    env = up.service_env(
        SCHEDULER,
        ports={"registry": 6000, "node": 6001, "scheduler": 6002},
        data_dir=Path("/d"),
        host="cmp1",
        base={},
        redis_url="redis://127.0.0.1:6390/0",
    )

    assert env["BERTH_LISTEN"] == "127.0.0.1:6002"
    assert env["BERTH_SCHEDULER_URL"] == "127.0.0.1:6002"
    assert env["BERTH_REDIS_URL"] == "redis://127.0.0.1:6390/0"
    assert "BERTH_DATABASE_URL" not in env  # its store is Redis


def test_up_starts_redis_first_gives_its_url_to_the_services_and_stops_it_last(
    tmp_path, monkeypatch
):
    fleet = WithScheduler(tmp_path, monkeypatch)

    assert fleet.run() == 0, fleet.err.getvalue()

    (redis,) = fleet.redis
    assert redis.data_dir == (tmp_path / "data").resolve() and redis.port == 6390
    names = [spec.name for spec, _, _ in fleet.spawned]
    assert names == ["registry", "node", "scheduler", "kvm-1", "vmware-1", "ironic-1"]
    envs = {spec.name: env for spec, env, _ in fleet.spawned}
    assert envs["scheduler"]["BERTH_REDIS_URL"] == "redis://127.0.0.1:6390/0"
    assert envs["scheduler"]["BERTH_LISTEN"] == "127.0.0.1:50053"
    assert envs["scheduler"]["BERTH_NODE_URL"] == "127.0.0.1:50052"
    assert {env["BERTH_SCHEDULER_URL"] for env in envs.values()} == {"127.0.0.1:50053"}
    assert fleet.stopped == [
        "redis start",
        "ironic-1",
        "vmware-1",
        "kvm-1",
        "scheduler",
        "node",
        "registry",
        "redis stop",
    ]
    out = fleet.out.getvalue()
    assert out.index("starting redis") < out.index("starting registry")
    assert f"  redis           redis://127.0.0.1:6390/0  log: {redis.log_path}" in out
    assert "  scheduler       127.0.0.1:50053  log:" in out


def test_a_redis_url_of_ones_own_starts_no_embedded_redis(tmp_path, monkeypatch):
    fleet = WithScheduler(tmp_path, monkeypatch)
    fleet.args.redis_url = "redis://:secret@cache:6379/3"

    assert fleet.run(fleet=()) == 0, fleet.err.getvalue()

    assert fleet.redis == []
    envs = {spec.name: env for spec, env, _ in fleet.spawned}
    assert envs["scheduler"]["BERTH_REDIS_URL"] == "redis://:secret@cache:6379/3"
    out = fleet.out.getvalue()
    assert "redis://:***@cache:6379/3  (--redis-url)" in out
    assert "secret" not in out


def test_a_redis_that_cannot_start_is_reported_before_any_service_starts(tmp_path, monkeypatch):
    fleet = WithScheduler(tmp_path, monkeypatch, fail="no redis-server found: install it")

    assert fleet.run() == 1

    err = fleet.err.getvalue()
    assert "no redis-server found: install it" in err and "--redis-url" in err
    assert fleet.spawned == []
    assert fleet.stopped == ["redis start", "redis stop"]


def test_no_redis_is_started_when_no_service_needs_one(tmp_path, monkeypatch):
    fleet = WithScheduler(tmp_path, monkeypatch)

    assert fleet.run(specs=(REGISTRY, NODE), fleet=()) == 0

    assert fleet.redis == []
    assert "BERTH_REDIS_URL" not in fleet.spawned[0][1]


def test_a_redis_that_dies_while_running_ends_up_with_an_error(tmp_path, monkeypatch):
    fleet = WithScheduler(tmp_path, monkeypatch)
    fleet.interrupt_when_supervising = False

    def redis_dies(seconds):
        fleet.redis[0].alive = False
        fleet.now += seconds

    assert fleet.run(fleet=(), sleep=redis_dies) == 1
    assert "the embedded redis exited; see" in fleet.err.getvalue()


def test_a_redis_port_in_use_is_reported_before_anything_starts(tmp_path, monkeypatch):
    fleet = WithScheduler(tmp_path, monkeypatch)
    fleet.args.redis_port = 6390

    assert fleet.run(port_free=lambda port: port != 6390) == 1

    assert "port 6390 for the redis is in use" in fleet.err.getvalue()
    assert "--redis-port" in fleet.err.getvalue()
    assert fleet.spawned == [] and fleet.redis == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@r:6379/0", "redis://:***@r:6379/0"),
        ("rediss://user:pw@r:6380/1", "rediss://user:***@r:6380/1"),
    ],
)
def test_a_redis_password_is_never_printed(url, shown):
    assert up.hide_password(url) == shown


def test_the_banner_says_how_to_type_berth_when_it_is_not_on_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "berth").touch()
    hint = up.path_hint(str(venv / "berth"), None)
    assert hint == (
        "berth is not on your PATH: in another terminal, run `. .venv/bin/activate` first "
        "(or type .venv/bin/berth)"
    )
    # On PATH (an activated virtualenv, or installed): nothing to say.
    assert up.path_hint(str(venv / "berth"), str(venv / "berth")) is None
    # Another program (tests call up() from python): nothing to say either.
    assert up.path_hint("/usr/bin/python3", None) is None


NODE = up.ServiceSpec("node", "json", 50052, "node.sqlite3")


def test_each_process_gets_its_own_metrics_port_from_the_base(tmp_path):
    harness = Harness(tmp_path, FakeProcess())
    harness.args.node_port = 50052
    harness.args.metrics_port_base = 9300
    harness.run(specs=(REGISTRY, NODE))
    listens = [env.get("BERTH_METRICS_LISTEN") for _, env, _ in harness.spawned]
    assert listens == ["127.0.0.1:9300", "127.0.0.1:9301"]
    assert "metrics: http://127.0.0.1:9301/metrics" in harness.out.getvalue()


def test_an_inherited_metrics_listen_becomes_the_base_never_a_shared_port(tmp_path):
    harness = Harness(tmp_path, FakeProcess())
    harness.args.node_port = 50052
    harness.run(
        specs=(REGISTRY, NODE), base_env={"PATH": "/usr/bin", "BERTH_METRICS_LISTEN": ":9400"}
    )
    listens = [env.get("BERTH_METRICS_LISTEN") for _, env, _ in harness.spawned]
    assert listens == ["127.0.0.1:9400", "127.0.0.1:9401"]


def test_a_taken_metrics_port_stops_the_start_with_one_line(tmp_path):
    harness = Harness(tmp_path, FakeProcess())
    harness.args.metrics_port_base = 9300
    assert harness.run(port_free=lambda port: port != 9300) == 1
    assert harness.err.getvalue().strip() == (
        "metrics port 9300 is in use; pick another base with --metrics-port-base "
        "(one port per process, 1 from there)"
    )
    assert harness.spawned == []


def test_without_a_base_no_child_serves_metrics(tmp_path):
    harness = Harness(tmp_path, FakeProcess())
    harness.run()
    assert all("BERTH_METRICS_LISTEN" not in env for _, env, _ in harness.spawned)
