"""Metrics to alert on, scraped over HTTP from every process of `berth up` while real
things happen: a service forced down, a request no node fits, instances placed."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.berth_up import BERTH, Stack, berth_up
from tests.ports import free_run

pytestmark = pytest.mark.slow
PROCESSES = ["registry", "node", "scheduler", "api", "kvm-1", "vmware-1", "ironic-1"]


def exposition(stack: Stack, process: str) -> str:
    with urllib.request.urlopen(stack.metrics[process], timeout=10) as answer:
        return answer.read().decode()


def families(stack: Stack, process: str) -> set[str]:
    """The metric families a process declares (a labelled counter has no sample until
    something is counted, but is declared from the start)."""
    return {family.name for family in text_string_to_metric_families(exposition(stack, process))}


def scrape(stack: Stack, process: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = exposition(stack, process)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def berth(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BERTH, *stack.endpoints, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
    )


def eventually(check, within_s: float = 60):
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not true within {within_s} s"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = free_run(len(PROCESSES))
    data = Path(tmp_path_factory.mktemp("metrics")) / "data"
    with berth_up(data, "--metrics-port-base", str(base)) as running:
        running.metrics = {
            name: f"http://127.0.0.1:{base + index}/metrics" for index, name in enumerate(PROCESSES)
        }
        yield running


def test_each_process_serves_its_own_metrics_and_only_its_own(stack):
    for process in PROCESSES:
        assert f"metrics: {stack.metrics[process]}" in stack.banner
        names = families(stack, process)
        if process == "api":  # HTTP, not gRPC
            assert {"berth_api_requests", "berth_api_request_seconds"} <= names
            continue
        assert "berth_grpc_server_handled" in names, process
        # Maintenance is the registry's: no other process shows the counter.
        assert any(n.startswith("berth_maintenance_moves") for n in names) == (
            process == "registry"
        ), process
        assert any(n.startswith("berth_scheduler_") for n in names) == (process == "scheduler")


def test_the_registry_says_which_service_is_up_and_follows_a_forced_down(stack):
    def kvm(samples):
        return value(samples, "berth_service_up", binary="berth-compute", host="kvm-1", zone="nova")

    assert eventually(lambda: kvm(scrape(stack, "registry")) == 1.0)
    assert berth(stack, "service-force-down", "kvm-1", "berth-compute").returncode == 0
    try:
        eventually(lambda: kvm(scrape(stack, "registry")) == 0.0)
        down = value(
            scrape(stack, "registry"),
            "berth_services",
            binary="berth-compute",
            state="down",
            status="enabled",
        )
        assert down == 1.0
    finally:
        berth(stack, "service-force-down", "kvm-1", "berth-compute", "--unset")
    eventually(lambda: kvm(scrape(stack, "registry")) == 1.0)
    assert (value(scrape(stack, "registry"), "berth_heartbeats_total", result="stored") or 0) > 0


def test_the_node_service_shows_each_nodes_resources_as_placement_counts_them(stack):
    listed = json.loads(berth(stack, "--json", "hypervisor-show", "kvm-1").stdout)
    node = listed[0] if isinstance(listed, list) else listed
    samples = eventually(
        lambda: (
            (s := scrape(stack, "node"))
            and value(s, "berth_node_resource_total", host="kvm-1", node="kvm-1", resource="VCPU")
            and s
        )
    )
    total = value(samples, "berth_node_resource_total", host="kvm-1", node="kvm-1", resource="VCPU")
    assert total == float(node["total"]["vcpus"])
    ratio = value(
        samples,
        "berth_node_resource_allocation_ratio",
        host="kvm-1",
        node="kvm-1",
        resource="MEMORY_MB",
    )
    assert ratio == float(node["ram_allocation_ratio"])
    assert (value(samples, "berth_snapshots_total", result="changed") or 0) > 0


def test_the_scheduler_counts_placements_rejections_and_its_cache(stack):
    eventually(lambda: value(scrape(stack, "scheduler"), "berth_scheduler_cache_nodes") == 6.0)
    before = scrape(stack, "scheduler")
    assert berth(stack, "boot", "m", "--flavor", "m1.tiny", "--count", "2").returncode == 0
    refused = berth(stack, "boot", "big", "--flavor", "m1.xlarge", "--count", "50")
    assert refused.returncode != 0 and "RamFilter removed" in refused.stderr
    after = scrape(stack, "scheduler")

    def grew(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert grew("berth_scheduler_placements_total", result="placed") == 2
    assert grew("berth_scheduler_placements_total", result="no_valid_host") == 1
    assert grew("berth_scheduler_filter_rejections_total", filter="RamFilter") > 0
    assert value(after, "berth_scheduler_cache_ready") == 1.0


def test_the_api_counts_requests_by_route_method_and_status(stack):
    api = stack.compute_api
    with urllib.request.urlopen(f"{api}/os-services", timeout=30) as answer:
        assert answer.status == 200
    try:
        urllib.request.urlopen(f"{api}/os-aggregates/999999", timeout=30)
    except urllib.error.HTTPError as refused:
        assert refused.code == 404
    samples = scrape(stack, "api")
    labels = {"route": "services.list_services", "method": "GET", "status": "200"}
    assert (value(samples, "berth_api_requests_total", **labels) or 0) >= 1
    missing = {"route": "aggregates.show", "method": "GET", "status": "404"}
    assert (value(samples, "berth_api_requests_total", **missing) or 0) >= 1
    timed = value(
        samples, "berth_api_request_seconds_count", route="services.list_services", method="GET"
    )
    assert (timed or 0) >= 1
