"""A Redis named by BERTH_TEST_REDIS_URL holds other data: the tests leave every key of it
alone but their own, even the test that flushes the scheduler's cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from berth.cli.embedded_redis import EmbeddedRedis, EmbeddedRedisError

ROOT = Path(__file__).resolve().parents[2]
# A test that drops the scheduler's whole cache and waits until it is rebuilt.
FLUSHING_TEST = (
    "tests/integration/scheduler/test_cache.py"
    "::test_a_flushed_redis_is_rebuilt_with_the_claims_and_scheduling_goes_on"
)


def test_a_redis_of_ones_own_keeps_its_data_through_the_tests(tmp_path):
    try:
        server = EmbeddedRedis(tmp_path, appendonly=False).start()
    except EmbeddedRedisError as exc:
        pytest.skip(f"no redis-server to stand in for the user's: {exc}")
    try:
        client = redis.Redis.from_url(server.url)
        client.set("users:42", "somebody else's data")
        client.hset("berth:hosts", mapping={"kvm-1": "a production scheduler's cache"})

        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", FLUSHING_TEST],
            cwd=ROOT,
            env=os.environ | {"BERTH_TEST_REDIS_URL": server.url, "BERTH_TEST_REQUIRE": "redis"},
            capture_output=True,
            text=True,
            timeout=600,  # bounds a hang only
        )

        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert sorted(client.scan_iter()) == [b"berth:hosts", b"users:42"]
        assert client.get("users:42") == b"somebody else's data"
        client.close()
    finally:
        server.stop()
