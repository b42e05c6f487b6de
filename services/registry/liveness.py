"""When a service counts as up, by the registry's clock only.

Up means: not forced down, and heard within `service_down_time`. Two more rules keep the
registry from calling live services dead for a silence that was its own:

* until it has listened for a whole `service_down_time` (it just started, or heartbeats
  could not be stored), a service that was up when last published stays up;
* silence is measured up to the arrival of the oldest heartbeat this registry received
  but has not stored yet (`judged_at`): a database that answers slowly delays what the
  table says, never who counts as heard. Admin changes never touch `last_seen_up`, so
enabling a dead service cannot make it look alive (Nova bug 1420848).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class LivenessFacts(Protocol):
    forced_down: bool
    last_seen_up: datetime | None
    reported_up: bool


class Liveness:
    def __init__(self, down_time_s: float, clock: Clock = utcnow) -> None:
        self.down_time = timedelta(seconds=down_time_s)
        self.clock = clock
        self.listening_since: datetime | None = clock()
        # Arrival of the oldest heartbeat received but not yet stored (set by the batcher).
        self.unstored_since: datetime | None = None

    def in_grace(self, now: datetime) -> bool:
        """True while this registry has not yet listened for a full down time."""
        return self.listening_since is None or now - self.listening_since < self.down_time

    def judged_at(self, now: datetime) -> datetime:
        """The moment up to which the table knows every heartbeat: take it before reading
        rows, and judge them with it."""
        if self.unstored_since is None:
            return now
        return min(now, self.unstored_since)

    def is_up(self, service: LivenessFacts, now: datetime) -> bool:
        """Up as of `now`, a `judged_at` moment taken before the row was read."""
        if service.forced_down:
            return False
        if service.last_seen_up is not None and now - service.last_seen_up <= self.down_time:
            return True
        return service.reported_up and self.in_grace(now)

    def cutoff(self, now: datetime) -> datetime:
        return now - self.down_time

    def listening(self) -> None:
        """Heartbeats are being stored again; the grace period runs from now."""
        if self.listening_since is None:
            self.listening_since = self.clock()
            log.info(
                "heartbeats are stored again; down detection resumes after one service_down_time"
            )

    def deaf(self) -> None:
        """Heartbeats cannot be stored; nobody may be declared down for missing them."""
        if self.listening_since is not None:
            log.warning("heartbeats cannot be stored; no service will be marked down meanwhile")
        self.listening_since = None
