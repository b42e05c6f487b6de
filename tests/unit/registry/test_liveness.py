"""The liveness rules, on a clock the test moves."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.registry.liveness import Liveness

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Row:
    last_seen_up: datetime | None
    forced_down: bool = False
    reported_up: bool = True


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _liveness() -> tuple[Liveness, Clock]:
    clock = Clock()
    return Liveness(60, clock), clock


def test_heard_within_the_down_time_is_up_and_later_is_down():
    live, clock = _liveness()
    clock.now = T0 + timedelta(seconds=120)  # grace over
    assert live.is_up(Row(T0 + timedelta(seconds=60)), clock.now)
    assert not live.is_up(Row(T0 + timedelta(seconds=59)), clock.now)


def test_forced_down_is_down_even_when_just_heard():
    live, clock = _liveness()
    assert not live.is_up(Row(clock.now, forced_down=True), clock.now)


def test_during_grace_a_service_published_up_stays_up_but_a_down_one_stays_down():
    live, clock = _liveness()
    clock.now = T0 + timedelta(seconds=30)
    stale = T0 - timedelta(days=1)
    assert live.is_up(Row(stale, reported_up=True), clock.now)
    assert not live.is_up(Row(stale, reported_up=False), clock.now)


def test_deaf_suspends_judgement_until_a_full_down_time_after_listening_again():
    live, clock = _liveness()
    clock.now = T0 + timedelta(seconds=500)
    live.deaf()
    stale = T0
    assert live.is_up(Row(stale), clock.now)
    live.listening()
    clock.now += timedelta(seconds=59)
    assert live.is_up(Row(stale), clock.now)
    clock.now += timedelta(seconds=2)
    assert not live.is_up(Row(stale), clock.now)


def test_silence_is_measured_only_up_to_the_oldest_heartbeat_not_yet_stored():
    live, clock = _liveness()
    clock.now = T0 + timedelta(seconds=500)  # grace over
    stored = clock.now - timedelta(seconds=90)  # the table says: silent for 90 s
    live.unstored_since = clock.now - timedelta(seconds=40)  # but a beat waits to be stored
    assert live.judged_at(clock.now) == live.unstored_since
    assert live.is_up(Row(stored), live.judged_at(clock.now))
    live.unstored_since = None  # stored: the table is the whole truth again
    assert not live.is_up(Row(stored), live.judged_at(clock.now))
