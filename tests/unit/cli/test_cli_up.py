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
        self.serving_after = serving_after
        self.spawned: list[tuple[up.ServiceSpec, dict[str, str], Path]] = []
        self.args = argparse.Namespace(
            data_dir=str(tmp_path / "data"), host="cmp1", registry_port=50051
        )
        self.out, self.err = io.StringIO(), io.StringIO()
        self.interrupt_when_supervising = True

    def spawn(self, spec, env, log_path):
        self.spawned.append((spec, dict(env), log_path))
        log_path.write_text("".join(f"line {i}\n" for i in range(30)))
        return self.process

    def probe(self, address):
        self.probes += 1
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
