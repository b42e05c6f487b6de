"""The state file: written atomically, read back whole, and refused when it is not ours."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.server import StartupError
from services.compute.state import (
    STATE_FILE,
    AgentState,
    InstanceRecord,
    InstanceState,
    Resources,
    write_atomically,
)


def record(state: InstanceState = InstanceState.ACTIVE, nodename: str = "kvm-1"):
    return InstanceRecord(
        uuid=str(uuid.uuid4()),
        project_id="demo",
        user_id="alice",
        resources=Resources(2, 2048, 20),
        state=state,
        claim_id="claim-1",
        nodename=nodename,
    )


async def test_node_uuids_and_instances_survive_a_round_trip(tmp_path: Path):
    state = AgentState.load(tmp_path, "kvm-1")
    node_uuid = state.node_uuid("kvm-1")
    kept = record()
    state.put(kept)
    await state.persist()
    state.close()

    again = AgentState.load(tmp_path, "kvm-1")
    assert again.node_uuid("kvm-1") == node_uuid
    assert again.find(kept.uuid) == kept
    assert list(again.instances_on("kvm-1")) == [kept.uuid]
    again.close()


async def test_an_instances_flavor_extra_specs_survive_and_older_files_have_none(tmp_path: Path):
    state = AgentState.load(tmp_path, "ironic-1")
    metal = dataclasses.replace(
        record(nodename="bm-0"),
        flavor_extra_specs=(("resources:CUSTOM_BAREMETAL_GOLD", "1"), ("ssd", "true")),
    )
    state.put(metal)
    await state.persist()
    state.close()
    doc = json.loads((tmp_path / STATE_FILE).read_text())
    assert doc["instances"][0]["flavor_extra_specs"] == {
        "resources:CUSTOM_BAREMETAL_GOLD": "1",
        "ssd": "true",
    }

    again = AgentState.load(tmp_path, "ironic-1")
    assert again.find(metal.uuid) == metal
    assert again.find(metal.uuid).resource_class == "CUSTOM_BAREMETAL_GOLD"
    again.close()
    # A file written before instances kept their flavor's specs.
    del doc["instances"][0]["flavor_extra_specs"]
    (tmp_path / STATE_FILE).write_text(json.dumps(doc))
    older = AgentState.load(tmp_path, "ironic-1")
    assert older.find(metal.uuid).flavor_extra_specs == ()
    assert older.find(metal.uuid).resource_class == ""
    older.close()


async def test_an_instances_creation_time_survives_and_older_files_have_none(tmp_path: Path):
    state = AgentState.load(tmp_path, "kvm-1")
    made = dataclasses.replace(record(), created_at=datetime(2026, 12, 5, 9, 30, 1, tzinfo=UTC))
    state.put(made)
    await state.persist()
    state.close()
    doc = json.loads((tmp_path / STATE_FILE).read_text())
    assert doc["instances"][0]["created_at"] == "2026-12-05T09:30:01+00:00"
    again = AgentState.load(tmp_path, "kvm-1")
    assert again.find(made.uuid) == made
    assert again.find(made.uuid).to_proto("kvm-1", "n").created_at.ToSeconds() == 1796463001
    again.close()
    del doc["instances"][0]["created_at"]  # written before instances kept the time
    (tmp_path / STATE_FILE).write_text(json.dumps(doc))
    older = AgentState.load(tmp_path, "kvm-1")
    assert older.find(made.uuid).created_at is None
    assert not older.find(made.uuid).to_proto("kvm-1", "n").HasField("created_at")
    older.close()


async def test_maintenance_survives_a_round_trip_and_older_files_are_not_in_it(tmp_path: Path):
    state = AgentState.load(tmp_path, "kvm-1")
    assert state.maintenance_since is None  # a new file, as one written before maintenance
    since = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
    state.maintenance_since = since
    await state.persist()
    state.close()

    again = AgentState.load(tmp_path, "kvm-1")
    assert again.maintenance_since == since
    again.maintenance_since = None
    await again.persist()
    again.close()
    assert "maintenance_since" not in json.loads((tmp_path / STATE_FILE).read_text())


def test_a_node_uuid_is_made_once_unless_the_driver_has_its_own():
    state = AgentState("h")
    made = state.node_uuid("kvm-1")
    assert state.node_uuid("kvm-1") == made and uuid.UUID(made)
    assert state.node_uuid("metal", "0b1e2c44-7a43-4c69-9d62-1f3f7f6e5c10") == (
        "0b1e2c44-7a43-4c69-9d62-1f3f7f6e5c10"
    )


def test_a_new_data_directory_is_claimed_for_the_host_at_once(tmp_path: Path):
    AgentState.load(tmp_path / "new", "kvm-1").close()
    assert json.loads((tmp_path / "new" / STATE_FILE).read_text())["host"] == "kvm-1"


def test_an_atomic_write_replaces_the_file_whole_and_leaves_no_temp_file(tmp_path: Path):
    path = tmp_path / "f.json"
    path.write_text("old")
    write_atomically(path, b"new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_data_directory_of_another_host_is_refused(tmp_path: Path):
    AgentState.load(tmp_path, "a").close()
    with pytest.raises(StartupError) as refused:
        AgentState.load(tmp_path, "b")
    message = str(refused.value)
    assert "belongs to host 'a' but BERTH_HOST is 'b'" in message
    assert "renaming a compute host is not supported" in message


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param("[]", id="not-an-object"),
        pytest.param('{"host": "kvm-1"}', id="missing-keys"),
        pytest.param(
            '{"host": "kvm-1", "node_uuids": {"kvm-1": "nope"}, "instances": []}',
            id="bad-uuid",
        ),
        pytest.param(
            '{"host": "kvm-1", "node_uuids": {}, "instances": [{"uuid": "x"}]}',
            id="bad-instance",
        ),
        pytest.param(
            '{"host": "kvm-1", "node_uuids": {}, "instances": [], "maintenance_since": 5}',
            id="bad-maintenance",
        ),
        pytest.param(
            '{"host": "kvm-1", "node_uuids": {}, "instances": [],'
            ' "maintenance_since": "2026-01-01T00:00:00"}',
            id="maintenance-without-zone",
        ),
        pytest.param(
            '{"host": "kvm-1", "node_uuids": {}, "instances": [{"uuid": '
            '"0b1e2c44-7a43-4c69-9d62-1f3f7f6e5c10", "project_id": "p", "user_id": "", '
            '"resources": {"vcpus": 1, "memory_mb": 1, "disk_gb": 1}, "state": "ACTIVE", '
            '"claim_id": "", "nodename": "kvm-1", '
            '"flavor_extra_specs": {"resources:CUSTOM_gold": "1"}}]}',
            id="bad-resource-class",
        ),
    ],
)
def test_a_corrupt_state_file_is_refused_naming_the_file(tmp_path: Path, content: str):
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(StartupError) as refused:
        AgentState.load(tmp_path, "kvm-1")
    assert str(tmp_path / STATE_FILE) in str(refused.value)


def test_a_second_agent_on_the_same_data_directory_is_refused(tmp_path: Path):
    first = AgentState.load(tmp_path, "kvm-1")
    with pytest.raises(StartupError, match="another berth-compute already uses"):
        AgentState.load(tmp_path, "kvm-1")
    first.close()
    AgentState.load(tmp_path, "kvm-1").close()


async def test_instances_caught_mid_build_come_back_as_error(tmp_path: Path):
    state = AgentState.load(tmp_path, "kvm-1")
    building, active = record(InstanceState.BUILDING), record(InstanceState.ACTIVE)
    state.put(building)
    state.put(active)
    await state.persist()
    state.close()
    again = AgentState.load(tmp_path, "kvm-1")
    assert again.find(building.uuid).state is InstanceState.ERROR  # type: ignore[union-attr]
    assert again.find(active.uuid).state is InstanceState.ACTIVE  # type: ignore[union-attr]
    again.close()


def test_removing_the_last_instance_of_a_node_leaves_no_empty_index():
    state = AgentState("h")
    only = record(nodename="n1")
    state.put(only)
    assert state.remove(only.uuid) == only
    assert state.instances_on("n1") == {} and state.nodenames() == set()
