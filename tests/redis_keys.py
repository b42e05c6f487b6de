"""The tests' share of a Redis: keys under a prefix of their own, deleted by that prefix.

A Redis named by BERTH_TEST_REDIS_URL holds somebody else's data too, so the tests never
empty a database: each writes under a fresh prefix (the scheduler's BERTH_REDIS_PREFIX) and
deletes only what starts with it.
"""

from __future__ import annotations

import uuid

import redis

_BATCH = 1000


def new_prefix(kind: str = "t") -> str:
    """A prefix no other test (or run) uses; the scheduler's prefix allows [A-Za-z0-9_.-]."""
    return f"berth-test-{kind}-{uuid.uuid4().hex[:12]}"


def delete_keys(url: str, prefix: str) -> int:
    """Delete every key under `prefix:` at `url` (what a flush does to one scheduler's
    cache, and the end of a test); no other key is touched. Returns how many went."""
    client = redis.Redis.from_url(url)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=_BATCH):
            batch.append(key)
            if len(batch) == _BATCH:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
        return deleted
    finally:
        client.close()
