"""bench/fleet.py, the sizing tool of the README, run small and quick: a fleet of 40
agents at short intervals holds, and every figure it reports was measured (a simulator
whose agents silently did nothing would report zeros)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL, _create_postgres, _drop_postgres

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_a_small_fleet_holds_and_every_figure_is_measured():
    probe = f"berth_fleet_probe_{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_postgres(probe))  # skips (or fails when required) without PostgreSQL
    asyncio.run(_drop_postgres(probe))
    run = subprocess.run(
        [sys.executable, "bench/fleet.py", "--nodes", "40", "--ramp", "1", "--duration", "4",
         "--report-interval", "0.5", "--snapshot-interval", "1", "--churn", "0.5",
         "--postgres-url", POSTGRES_URL, "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (fleet,) = json.loads(run.stdout)["fleets"]
    assert fleet["holds"], fleet["reasons"]
    assert fleet["nodes"] == 40 and fleet["snapshot_failures"] == 0
    assert fleet["heartbeats_per_s"] > 40, "agents heartbeat about twice a second"
    assert fleet["snapshots_per_s"] > 20, "agents report about once a second"
    assert fleet["cache_lag_samples"] > 0 and fleet["snapshot_p99_ms"] > 0
    assert all(fleet["cpu_pct"][name] > 0 for name in ("registry", "node", "scheduler"))
