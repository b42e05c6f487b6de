"""A database that cannot answer in time is UNAVAILABLE with a sentence, never INTERNAL."""

from __future__ import annotations

import pytest
from berth.client.errors import Unavailable
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.common import db


@pytest.mark.parametrize(
    "exc",
    [TimeoutError(), PoolTimeout("QueuePool limit reached"), ConnectionRefusedError()],
    ids=["a statement or connect timed out", "no pooled connection came free", "refused"],
)
def test_infrastructure_failures_become_unavailable(exc):
    error = db.unavailable_database(exc)
    assert isinstance(error, Unavailable)
    assert error.reason == "DATABASE_UNAVAILABLE" and "database" in error.message


def test_a_bug_is_left_for_internal():
    assert db.unavailable_database(ValueError("bug")) is None
