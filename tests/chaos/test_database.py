"""The databases of the registry and the node service frozen (SIGSTOP: connections hang)
and stopped (connections refused), under real processes: calls answer UNAVAILABLE within
the database timeout, and once the databases are back nobody was ever reported down."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from berth.v1 import node_pb2, registry_pb2, registry_pb2_grpc

from tests.chaos.conftest import DOWN_TIME
from tests.e2e.fleet import Fleet
from tests.frozen_proxy import FrozenProxy

pytestmark = pytest.mark.chaos

DATABASE_TIMEOUT = 1.0
# The pool's ping and the statement are each bounded by the timeout.
ANSWER_WITHIN = 2 * DATABASE_TIMEOUT + 1.5
EXPECTED = {
    ("registry", "berth-registry"),
    ("node", "berth-node"),
    ("kvm-1", "berth-compute"),
    ("kvm-2", "berth-compute"),
}


class DownWatcher:
    """Follows WatchServices like a scheduler and notes every service reported down."""

    def __init__(self, registry: str) -> None:
        self.down: list[str] = []
        self._stop = threading.Event()
        self._channel = grpc.insecure_channel(registry)
        self._call = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        while not self._stop.is_set():
            self._call = stub.WatchServices(registry_pb2.WatchServicesRequest())
            try:
                for event in self._call:
                    if event.HasField("service") and not event.service.up:
                        self.down.append(f"{event.service.host}/{event.service.binary}")
            except grpc.RpcError:
                self._stop.wait(0.2)  # the registry could not read its feed: watch again

    def close(self) -> None:
        self._stop.set()
        if self._call is not None:
            self._call.cancel()
        self._thread.join(10)
        self._channel.close()


@pytest.fixture
def proxied_fleet(tmp_path, pg_databases, monkeypatch) -> Iterator[tuple[Fleet, list, tuple]]:
    """Registry and node service reaching PostgreSQL through a proxy each; two agents."""
    proxies = [FrozenProxy(url) for url in pg_databases]
    monkeypatch.setenv("BERTH_DATABASE_TIMEOUT", str(DATABASE_TIMEOUT))
    fleet = Fleet(tmp_path)
    try:
        fleet.services(down_time=DOWN_TIME, databases=(proxies[0].url, proxies[1].url))
        for host in ("kvm-1", "kvm-2"):
            fleet.agent(host, "fake")
        yield fleet, proxies, pg_databases
    finally:
        fleet.close()
        for proxy in proxies:
            proxy.close()


def _services(fleet: Fleet, timeout: float | None = 10) -> dict[tuple[str, str], object]:
    with grpc.insecure_channel(fleet.registry) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        rows = stub.ListServices(registry_pb2.ListServicesRequest(), timeout=timeout).services
    return {(s.host, s.binary): s for s in rows}


def _all_beating_again(fleet: Fleet, since: dict, within_s: float) -> dict:
    """Wait until every service has heartbeated since `since` and the registry has judged
    for a whole DOWN_TIME after the outage; every one must be up all along."""
    back = time.monotonic()
    while True:
        try:
            now = _services(fleet)
        except grpc.RpcError:  # the pool reconnecting: ask again
            now = None
        if now is not None:
            assert now.keys() == EXPECTED, sorted(now)
            down = [k for k, s in now.items() if not s.up]
            assert not down, f"reported down after the database came back: {down}"
            grown = all(now[k].report_count > since[k].report_count for k in EXPECTED)
            if grown and time.monotonic() - back > 1.5 * DOWN_TIME:
                return now
        assert time.monotonic() - back < within_s, "heartbeats did not resume"
        time.sleep(0.2)


def _unavailable_in_time(call) -> None:
    """`call()` (no client deadline) answers UNAVAILABLE, with a sentence, in time."""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        call()
    elapsed = time.monotonic() - started
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE, caught.value
    assert "database" in caught.value.details(), caught.value.details()
    assert elapsed < ANSWER_WITHIN, f"answered after {elapsed:.1f} s"


def _calls_during_outage(fleet: Fleet) -> None:
    with fleet.stubs() as (registry, nodes):
        _unavailable_in_time(lambda: registry.ListServices(registry_pb2.ListServicesRequest()))
        _unavailable_in_time(
            lambda: registry.CreateAggregate(registry_pb2.CreateAggregateRequest(name="rack-9"))
        )
        _unavailable_in_time(lambda: nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest()))


@pytest.mark.parametrize("outage", ["frozen", "stopped"])
def test_a_database_outage_answers_unavailable_and_marks_nobody_down(proxied_fleet, outage):
    fleet, proxies, databases = proxied_fleet
    before = _all_beating_again(fleet, _services(fleet), within_s=30)
    watcher = DownWatcher(fleet.registry)
    try:
        if outage == "frozen":
            for proxy in proxies:
                proxy.freeze()
        else:
            ports = [proxy.port for proxy in proxies]
            for proxy in proxies:
                proxy.close()
        outage_started = time.monotonic()
        _calls_during_outage(fleet)
        # The outage lasts longer than service_down_time: a registry judging by stored
        # heartbeats alone would call everyone dead.
        time.sleep(max(0.0, 1.5 * DOWN_TIME - (time.monotonic() - outage_started)))
        if outage == "frozen":
            for proxy in proxies:
                proxy.thaw()
        else:
            proxies[:] = [
                FrozenProxy(url, port) for url, port in zip(databases, ports, strict=True)
            ]
        after = _all_beating_again(fleet, before, within_s=40)
    finally:
        watcher.close()
    assert not watcher.down, f"WatchServices reported down: {sorted(set(watcher.down))}"
    assert {k: s.uuid for k, s in after.items()} == {k: s.uuid for k, s in before.items()}
    # Nothing a refused call asked for was written.
    with grpc.insecure_channel(fleet.registry) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        names = [
            a.name for a in stub.ListAggregates(registry_pb2.ListAggregatesRequest()).aggregates
        ]
    assert "rack-9" not in names
    for name in ("registry", "node"):
        assert fleet.procs[name].poll() is None
        assert "Traceback" not in fleet.log(name), fleet.tail(name, 60)
