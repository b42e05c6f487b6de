"""Bad input to berth-api gets Nova's error body with a sentence to act on, never a 500 or
a traceback, and changes nothing: malformed JSON, wrong types, unknown fields, huge
bodies, bad ids and versions, and a few thousand random bodies on every write endpoint.
Over real HTTP against a `berth up` stack."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.berth_up import berth_up

pytestmark = pytest.mark.slow

LATEST = {"OpenStack-API-Version": "compute 2.88"}
OLD = {"OpenStack-API-Version": "compute 2.1"}
NOVA_ERRORS = {"badRequest", "itemNotFound", "conflict", "overLimit", "badMethod", "computeFault"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    with (
        berth_up(tmp_path_factory.mktemp("bad-input") / "data") as stack,
        httpx.Client(base_url=stack.compute_api, timeout=120) as client,
    ):
        made = client.post("/os-aggregates", json={"aggregate": {"name": "kept"}})
        assert made.status_code == 200, made.text
        service = client.get("/os-services?host=kvm-1", headers=LATEST).json()["services"][0]
        yield client, {"aggregate": str(made.json()["aggregate"]["id"]), "service": service["id"]}


def state(client: httpx.Client) -> Any:
    """Everything a bad request could have changed."""
    return (
        client.get("/os-aggregates", headers=LATEST).json(),
        [
            {k: v for k, v in s.items() if k not in ("updated_at", "state")}
            for s in client.get("/os-services", headers=LATEST).json()["services"]
        ],
        client.get("/servers/detail", headers=LATEST).json(),
    )


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    ((name, fault),) = body.items()
    assert name in NOVA_ERRORS and fault["code"] == status, body
    message: str = fault["message"]
    assert message and "Traceback" not in message and 'File "' not in message
    return message


CASES = [
    # (method, path, body (bytes or JSON), headers, status, words in the message)
    ("POST", "/os-aggregates", b"{not json", LATEST, 400, "Malformed request body"),
    ("POST", "/os-aggregates", b"\xff\xfe\x00", LATEST, 400, "Malformed request body"),
    ("POST", "/os-aggregates", b"", LATEST, 400, "empty"),
    ("POST", "/os-aggregates", [], LATEST, 400, "is not of type 'object'"),
    ("POST", "/os-aggregates", {"aggregate": "x"}, LATEST, 400, "aggregate"),
    ("POST", "/os-aggregates", {"aggregate": {"name": 5}}, LATEST, 400, "aggregate/name"),
    ("POST", "/os-aggregates", {"aggregate": {"name": ""}}, LATEST, 400, "aggregate/name"),
    (
        "POST",
        "/os-aggregates",
        {"aggregate": {"name": "a", "colour": "red"}},
        LATEST,
        400,
        "colour",
    ),
    ("PUT", "/os-aggregates/{aggregate}", {"aggregate": {}}, LATEST, 400, "aggregate"),
    ("GET", "/os-aggregates/abc", None, LATEST, 400, "must be an integer"),
    ("GET", "/os-aggregates/999999", None, LATEST, 404, "999999"),
    ("POST", "/os-aggregates/{aggregate}/action", {"explode": {}}, LATEST, 400, "explode"),
    (
        "POST",
        "/os-aggregates/{aggregate}/action",
        {"add_host": {"host": "kvm-1"}, "remove_host": {"host": "kvm-1"}},
        LATEST,
        400,
        "",
    ),
    (
        "POST",
        "/os-aggregates/{aggregate}/action",
        {"add_host": {"host": "nowhere"}},
        LATEST,
        404,
        "nowhere",
    ),
    ("PUT", "/os-services/{service}", {"status": "maybe"}, LATEST, 400, "status"),
    ("PUT", "/os-services/{service}", {"forced_down": "yes"}, LATEST, 400, "forced_down"),
    ("PUT", "/os-services/{service}", {}, LATEST, 400, "No updates"),
    (
        "PUT",
        "/os-services/{service}",
        {"status": "enabled", "disabled_reason": "x"},
        LATEST,
        400,
        "disabled_reason",
    ),
    ("PUT", "/os-services/not-a-uuid", {"status": "enabled"}, LATEST, 400, "Invalid uuid"),
    ("PUT", "/os-services/disable", {"host": "kvm-1"}, OLD, 400, "binary"),
    ("DELETE", "/os-services/not-a-uuid", None, LATEST, 400, "Invalid uuid"),
    ("PUT", "/os-hosts/kvm-1", {"status": "sideways"}, OLD, 400, "status"),
    ("GET", "/os-hosts", None, LATEST, 404, "2.43"),
    ("POST", "/servers", {"server": {"name": "x", "flavorRef": "99"}}, LATEST, 400, "flavorRef"),
    (
        "POST",
        "/servers",
        {"server": {"name": "x", "flavorRef": "1", "bogus": 1}},
        LATEST,
        400,
        "bogus",
    ),
    (
        "POST",
        "/servers",
        {"server": {"name": "x", "flavorRef": "1", "min_count": 0}},
        LATEST,
        400,
        "min_count",
    ),
    (
        "POST",
        "/servers",
        {"server": {"name": "x", "flavorRef": "1", "min_count": "abc"}},
        LATEST,
        400,
        "min_count",
    ),
    (
        "POST",
        "/servers",
        {"server": {"name": "x", "flavorRef": "1", "min_count": 3, "max_count": 2}},
        LATEST,
        400,
        "min_count",
    ),
    (
        "POST",
        "/servers",
        {"server": {"name": "x", "flavorRef": "1", "networks": [{"uuid": "net"}]}},
        LATEST,
        400,
        "networks",
    ),
    (
        "POST",
        "/servers",
        {"server": {"name": "x", "flavorRef": "1", "imageRef": "cirros"}},
        LATEST,
        400,
        "imageRef",
    ),
    ("GET", "/servers/not-a-uuid", None, LATEST, 404, "not-a-uuid"),
    (
        "DELETE",
        "/servers/00000000-0000-0000-0000-000000000000",
        None,
        LATEST,
        404,
        "could not be found",
    ),
    ("GET", "/os-hypervisors?limit=-1", None, LATEST, 400, "limit"),
    ("GET", "/os-hypervisors?marker=nope", None, LATEST, 400, "marker"),
    ("GET", "/os-hypervisors/statistics", None, LATEST, 404, "2.88"),
    ("GET", "/flavors/nope", None, LATEST, 404, "nope"),
    (
        "GET",
        "/os-hypervisors",
        None,
        {"OpenStack-API-Version": "compute 2.x"},
        400,
        "invalid format",
    ),
    (
        "GET",
        "/os-hypervisors",
        None,
        {"OpenStack-API-Version": "compute 3.0"},
        406,
        "maximum is 2.88",
    ),
    ("GET", "/no-such-thing", None, LATEST, 404, "could not be found"),
    ("DELETE", "/flavors", None, LATEST, 405, ""),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]} {c[1]} {c[4]}")
def test_bad_input_is_refused_in_novas_shape_and_changes_nothing(api, case):
    client, names = api
    method, path, body, headers, status, words = case
    before = state(client)
    content = (
        body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    )
    response = client.request(method, path.format(**names), content=content, headers=headers)
    message = refused(response, status)
    assert words in message
    assert state(client) == before


def test_a_huge_body_is_refused_whether_or_not_it_says_its_length(api):
    client, _ = api
    before = state(client)
    huge = json.dumps({"aggregate": {"name": "x" * 200_000}}).encode()
    assert "too large" in refused(client.post("/os-aggregates", content=huge, headers=LATEST), 413)
    chunked = client.post(
        "/os-aggregates", content=iter([huge[:100_000], huge[100_000:]]), headers=LATEST
    )
    assert "too large" in refused(chunked, 413)
    assert state(client) == before


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.randint(-(2**63), 2**63)
    if choice == 3:
        return rng.random() * 10 ** rng.randint(-5, 300)
    if choice == 4:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(0, 300)))
    if choice == 5:
        return rng.choice(["", "enabled", "disabled", "none", "auto", "1", "kvm-1", "x" * 300])
    if choice == 6:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [
        "name",
        "host",
        "binary",
        "status",
        "aggregate",
        "server",
        "flavorRef",
        "networks",
        "metadata",
        "add_host",
        "remove_host",
        "set_metadata",
        "forced_down",
        "disabled_reason",
        "availability_zone",
        "min_count",
        "maintenance_mode",
        "os:scheduler_hints",
    ]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_random_bodies_on_every_write_endpoint_never_answer_500_nor_change_on_refusal(api):
    client, names = api
    rng = random.Random(1414)
    writes = [
        ("POST", "/os-aggregates", LATEST),
        ("PUT", "/os-aggregates/{aggregate}", LATEST),
        ("POST", "/os-aggregates/{aggregate}/action", LATEST),
        ("PUT", "/os-services/{service}", LATEST),
        ("PUT", "/os-services/disable-log-reason", OLD),
        ("PUT", "/os-hosts/kvm-1", OLD),
        ("POST", "/servers", LATEST),
    ]
    answered: dict[int, int] = {}
    current = state(client)
    for _ in range(100):
        for method, path, headers in writes:
            body = _random_json(rng)
            # Mostly shaped like the endpoint's body, so the checks past the first are reached.
            if rng.random() < 0.6 and isinstance(body, dict):
                wrapper = {"/os-aggregates": "aggregate", "/servers": "server"}.get(path)
                body = {wrapper: body} if wrapper else body
            content = json.dumps(body).encode()
            response = client.request(
                method, path.format(**names), content=content, headers=headers
            )
            answered[response.status_code] = answered.get(response.status_code, 0) + 1
            assert response.status_code < 500, f"{method} {path} {body!r:.300} -> {response.text}"
            after = state(client)
            if response.status_code >= 400:
                refused(response, response.status_code)
                assert after == current, f"{method} {path} {body!r:.300} was refused but changed"
            current = after
    print("answers:", answered)
    assert sum(n for code, n in answered.items() if code >= 400) > 500  # the checks were reached
