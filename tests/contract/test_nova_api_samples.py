"""berth-api's JSON against Nova's own published API samples (nova/doc/api_samples, in
nova_api_samples/), endpoint by endpoint and microversion by microversion: the same keys
at every level, values of the same JSON type. Run over real HTTP against a `berth up`
stack, with objects made through the API itself.

Where Berth cannot have what Nova's sample shows, the difference is listed in BERTH_HAS_NO
with the reason; nothing else may differ."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.berth_up import Stack, berth_up

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).parent / "nova_api_samples"

# Objects whose keys are data (host names, metadata keys, network names), not fields.
DATA_KEYED = {"metadata", "extra_specs", "addresses", "hosts", "cpu_info"}
# (sample key path) -> why Berth's value differs in type from the sample's.
BERTH_HAS_NO = {
    # Berth has no images: a server boots from its flavor's disk, shown as Nova shows a
    # server booted from a volume ("").
    "server.image": "no images",
    "servers[].image": "no images",
}


@dataclass(frozen=True)
class Case:
    sample: str  # path under nova_api_samples/
    version: str
    method: str
    path: str  # under /v2.1, with {placeholders} from the fixture's objects
    body: dict[str, Any] | None = None


CASES = [
    Case("os-services/services-list-get-resp.json", "2.1", "GET", "/os-services"),
    Case("os-services/v2.11/services-list-get-resp.json", "2.11", "GET", "/os-services"),
    Case("os-services/v2.53/services-list-get-resp.json", "2.53", "GET", "/os-services"),
    Case(
        "os-services/service-disable-put-resp.json",
        "2.1",
        "PUT",
        "/os-services/disable",
        {"host": "vmware-1", "binary": "berth-compute"},
    ),
    Case(
        "os-services/service-disable-log-put-resp.json",
        "2.1",
        "PUT",
        "/os-services/disable-log-reason",
        {"host": "vmware-1", "binary": "berth-compute", "disabled_reason": "test"},
    ),
    Case(
        "os-services/service-enable-put-resp.json",
        "2.1",
        "PUT",
        "/os-services/enable",
        {"host": "vmware-1", "binary": "berth-compute"},
    ),
    Case(
        "os-services/v2.11/service-force-down-put-resp.json",
        "2.11",
        "PUT",
        "/os-services/force-down",
        {"host": "vmware-1", "binary": "berth-compute", "forced_down": False},
    ),
    Case(
        "os-services/v2.53/service-disable-log-put-resp.json",
        "2.53",
        "PUT",
        "/os-services/{vmware_service}",
        {"status": "disabled", "disabled_reason": "maintenance"},
    ),
    Case(
        "os-services/v2.53/service-enable-put-resp.json",
        "2.53",
        "PUT",
        "/os-services/{vmware_service}",
        {"status": "enabled"},
    ),
    Case("os-hypervisors/hypervisors-list-resp.json", "2.1", "GET", "/os-hypervisors"),
    Case("os-hypervisors/hypervisors-detail-resp.json", "2.1", "GET", "/os-hypervisors/detail"),
    Case("os-hypervisors/hypervisors-show-resp.json", "2.1", "GET", "/os-hypervisors/{kvm_id}"),
    Case(
        "os-hypervisors/hypervisors-statistics-resp.json",
        "2.1",
        "GET",
        "/os-hypervisors/statistics",
    ),
    Case(
        "os-hypervisors/hypervisors-uptime-resp.json",
        "2.1",
        "GET",
        "/os-hypervisors/{kvm_id}/uptime",
    ),
    Case("os-hypervisors/hypervisors-search-resp.json", "2.1", "GET", "/os-hypervisors/kvm/search"),
    Case(
        "os-hypervisors/hypervisors-with-servers-resp.json",
        "2.1",
        "GET",
        "/os-hypervisors/{kvm_name}/servers",
    ),
    Case(
        "os-hypervisors/v2.53/hypervisors-list-resp.json", "2.53", "GET", "/os-hypervisors?limit=1"
    ),
    Case(
        "os-hypervisors/v2.53/hypervisors-detail-resp.json",
        "2.53",
        "GET",
        "/os-hypervisors/detail?limit=1",
    ),
    Case(
        "os-hypervisors/v2.53/hypervisors-show-resp.json",
        "2.53",
        "GET",
        "/os-hypervisors/{kvm_uuid}",
    ),
    Case(
        "os-hypervisors/v2.53/hypervisors-show-with-servers-resp.json",
        "2.53",
        "GET",
        "/os-hypervisors/{kvm_uuid}?with_servers=true",
    ),
    Case(
        "os-hypervisors/v2.53/hypervisors-search-resp.json",
        "2.53",
        "GET",
        "/os-hypervisors?hypervisor_hostname_pattern=kvm",
    ),
    Case(
        "os-hypervisors/v2.53/hypervisors-statistics-resp.json",
        "2.53",
        "GET",
        "/os-hypervisors/statistics",
    ),
    Case(
        "os-hypervisors/v2.53/hypervisors-uptime-resp.json",
        "2.53",
        "GET",
        "/os-hypervisors/{kvm_uuid}/uptime",
    ),
    Case(
        "os-hypervisors/v2.88/hypervisors-list-resp.json", "2.88", "GET", "/os-hypervisors?limit=1"
    ),
    Case(
        "os-hypervisors/v2.88/hypervisors-detail-resp.json",
        "2.88",
        "GET",
        "/os-hypervisors/detail?limit=1",
    ),
    Case(
        "os-hypervisors/v2.88/hypervisors-show-resp.json",
        "2.88",
        "GET",
        "/os-hypervisors/{kvm_uuid}",
    ),
    Case(
        "os-hypervisors/v2.88/hypervisors-show-with-servers-resp.json",
        "2.88",
        "GET",
        "/os-hypervisors/{kvm_uuid}?with_servers=true",
    ),
    Case("os-hosts/hosts-list-resp.json", "2.1", "GET", "/os-hosts"),
    Case("os-hosts/host-get-resp.json", "2.1", "GET", "/os-hosts/kvm-1"),
    Case(
        "os-hosts/host-put-maintenance-resp.json",
        "2.1",
        "PUT",
        "/os-hosts/vmware-1",
        {"status": "enable", "maintenance_mode": "disable"},
    ),
    Case("os-aggregates/aggregates-list-get-resp.json", "2.1", "GET", "/os-aggregates"),
    Case("os-aggregates/aggregates-get-resp.json", "2.1", "GET", "/os-aggregates/{aggregate}"),
    Case("os-aggregates/v2.41/aggregates-list-get-resp.json", "2.41", "GET", "/os-aggregates"),
    Case(
        "os-aggregates/v2.41/aggregates-get-resp.json", "2.41", "GET", "/os-aggregates/{aggregate}"
    ),
    Case(
        "os-aggregates/v2.41/aggregate-post-resp.json",
        "2.41",
        "POST",
        "/os-aggregates",
        {"aggregate": {"name": "contract-made", "availability_zone": "contract-az"}},
    ),
    Case(
        "os-aggregates/v2.41/aggregate-update-post-resp.json",
        "2.41",
        "PUT",
        "/os-aggregates/{aggregate}",
        {"aggregate": {"name": "contract-agg", "availability_zone": "az-c"}},
    ),
    Case(
        "os-aggregates/v2.41/aggregates-metadata-post-resp.json",
        "2.41",
        "POST",
        "/os-aggregates/{aggregate}/action",
        {"set_metadata": {"metadata": {"key": "value"}}},
    ),
    Case(
        "os-aggregates/v2.41/aggregates-add-host-post-resp.json",
        "2.41",
        "POST",
        "/os-aggregates/{aggregate}/action",
        {"add_host": {"host": "ironic-1"}},
    ),
    Case(
        "os-aggregates/v2.41/aggregates-remove-host-post-resp.json",
        "2.41",
        "POST",
        "/os-aggregates/{aggregate}/action",
        {"remove_host": {"host": "ironic-1"}},
    ),
    Case(
        "os-availability-zone/availability-zone-list-resp.json",
        "2.1",
        "GET",
        "/os-availability-zone",
    ),
    Case(
        "os-availability-zone/availability-zone-detail-resp.json",
        "2.1",
        "GET",
        "/os-availability-zone/detail",
    ),
    Case("flavors/flavors-list-resp.json", "2.1", "GET", "/flavors"),
    Case("flavors/flavors-detail-resp.json", "2.1", "GET", "/flavors/detail"),
    Case("flavors/flavor-get-resp.json", "2.1", "GET", "/flavors/2"),
    Case("flavors/v2.55/flavors-detail-resp.json", "2.55", "GET", "/flavors/detail"),
    Case("flavors/v2.61/flavor-get-resp.json", "2.61", "GET", "/flavors/2"),
    Case("flavors/v2.75/flavors-detail-resp.json", "2.75", "GET", "/flavors/detail"),
    Case("flavors/v2.75/flavor-get-resp.json", "2.75", "GET", "/flavors/2"),
    Case("servers/servers-list-resp.json", "2.1", "GET", "/servers?limit=1"),
    Case("servers/servers-details-resp.json", "2.1", "GET", "/servers/detail?limit=1"),
    Case("servers/server-get-resp.json", "2.1", "GET", "/servers/{server}"),
    Case("servers/v2.47/server-get-resp.json", "2.47", "GET", "/servers/{server}"),
    Case("servers/v2.73/server-get-resp.json", "2.73", "GET", "/servers/{server}"),
    Case(
        "servers/v2.47/server-create-resp.json",
        "2.47",
        "POST",
        "/servers",
        {"server": {"name": "contract-vm", "flavorRef": "1", "networks": "none"}},
    ),
]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def shape_problems(sample: Any, ours: Any, where: str = "") -> list[str]:
    """How `ours` differs from `sample` in keys and JSON types (null matches anything:
    Nova's samples and Berth both leave optional fields null)."""
    if sample is None or ours is None or where in BERTH_HAS_NO:
        return []
    if _kind(sample) != _kind(ours):
        return [f"{where or '.'}: Nova has {_kind(sample)}, Berth {_kind(ours)} ({ours!r:.60})"]
    if isinstance(sample, dict):
        if where.rsplit(".", 1)[-1].rstrip("[]") in DATA_KEYED:
            return []
        at = (lambda key: f"{where}.{key}") if where else str
        problems = [f"{at(key)}: missing" for key in sorted(sample.keys() - ours.keys())]
        problems += [f"{at(key)}: not in Nova's" for key in sorted(ours.keys() - sample.keys())]
        for key in sorted(sample.keys() & ours.keys()):
            problems += shape_problems(sample[key], ours[key], at(key))
        return problems
    if isinstance(sample, list) and sample and ours:
        # Items side by side when the lists match in length (links: self, describedby),
        # else each of ours against Nova's first.
        pairs = (
            zip(sample, ours, strict=True)
            if len(sample) == len(ours)
            else ((sample[0], o) for o in ours[:3])
        )
        problems = []
        for nova_item, item in pairs:
            problems += shape_problems(nova_item, item, f"{where}[]")
        return problems
    return []


def test_the_comparison_finds_missing_extra_and_retyped_keys():
    sample = {"a": 1, "b": {"c": "x"}, "d": [{"e": True}], "metadata": {"k": "v"}}
    assert shape_problems(sample, {"a": 2, "b": {"c": "y"}, "d": [], "metadata": {}}) == []
    assert shape_problems(sample, {"a": "1", "b": {}, "d": [{"e": 1}], "z": 0, "metadata": {}}) == [
        "z: not in Nova's",
        "a: Nova has number, Berth string ('1')",
        "b.c: missing",
        "d[].e: Nova has boolean, Berth number (1)",
    ]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """The stack's API, and the objects the cases name (made through the API)."""
    stack: Stack
    with (
        berth_up(tmp_path_factory.mktemp("contract") / "data") as stack,
        httpx.Client(base_url=stack.compute_api, timeout=120) as client,
    ):
        latest = {"OpenStack-API-Version": "compute 2.88"}
        old = {"OpenStack-API-Version": "compute 2.1"}
        nodes = client.get("/os-hypervisors", headers=latest).json()["hypervisors"]
        kvm = next(n for n in nodes if n["hypervisor_hostname"] == "kvm-1")
        kvm_id = next(
            n["id"]
            for n in client.get("/os-hypervisors", headers=old).json()["hypervisors"]
            if n["hypervisor_hostname"] == "kvm-1"
        )
        services = client.get("/os-services?host=vmware-1", headers=latest).json()
        made = client.post(
            "/os-aggregates",
            json={"aggregate": {"name": "contract-agg", "availability_zone": "az-c"}},
        ).json()["aggregate"]
        client.post(f"/os-aggregates/{made['id']}/action", json={"add_host": {"host": "kvm-1"}})
        server = client.post(
            "/servers",
            json={
                "server": {
                    "name": "contract",
                    "flavorRef": "1",
                    "networks": "none",
                    "availability_zone": "az-c",
                    "min_count": 2,
                }
            },
        )
        assert server.status_code == 202, server.text
        names = {
            "kvm_uuid": kvm["id"],
            "kvm_id": str(kvm_id),
            "kvm_name": "kvm-1",
            "vmware_service": services["services"][0]["id"],
            "aggregate": str(made["id"]),
            "server": server.json()["server"]["id"],
        }
        yield client, names


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.sample}@{c.version}")
def test_berths_json_has_novas_shape(api, case: Case):
    client, names = api
    response = client.request(
        case.method,
        case.path.format(**names),
        json=case.body,
        headers={"OpenStack-API-Version": f"compute {case.version}"},
    )
    assert response.status_code < 300, response.text
    assert response.headers["OpenStack-API-Version"] == f"compute {case.version}"
    sample = json.loads((SAMPLES / case.sample).read_text())
    problems = shape_problems(sample, response.json())
    assert not problems, "\n".join(problems)


def test_version_documents_have_novas_shape(api):
    client, _ = api
    root = httpx.get(str(client.base_url).removesuffix("/v2.1/").removesuffix("/v2.1"))
    sample = json.loads((SAMPLES / "versions/versions-get-resp.json").read_text())
    (v21,) = [v for v in sample["versions"] if v["id"] == "v2.1"]
    (ours,) = root.json()["versions"]
    assert not shape_problems(v21, ours)
    shown = client.get("/")
    assert not shape_problems(
        json.loads((SAMPLES / "versions/v21-version-get-resp.json").read_text()), shown.json()
    )
