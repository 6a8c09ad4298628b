"""Milliseconds and datetimes (the exchange's time unit and the engine's); the clock that follows a venue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.clock import SimulatedClock, VenueClock, ms_from_utc, utc_from_ms

# hypothesis takes naive bounds and attaches the zone
INSTANTS = st.datetimes(min_value=datetime(1969, 1, 1), max_value=datetime(2100, 1, 1),  # noqa: DTZ001
                        timezones=st.just(UTC))


@given(st.lists(INSTANTS, min_size=1, max_size=20), st.lists(st.integers(0, 19), max_size=40))
def test_any_sequence_of_conversions_gives_each_instants_own_milliseconds(instants: list[datetime],
                                                                          order: list[int]) -> None:
    """The last conversion is kept for the same datetime object: asking again, for an equal object, for another
    instant and back in any order still gives floor((t - epoch) / 1 ms)."""
    for i in [*range(len(instants)), *order]:
        when = instants[i % len(instants)]
        expected = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        assert ms_from_utc(when) == expected
        assert ms_from_utc(when) == expected  # the same object again
        assert ms_from_utc(when.replace()) == expected  # an equal, distinct object
        assert ms_from_utc(when.astimezone(timezone(timedelta(hours=-5)))) == expected  # the same instant elsewhere
        assert utc_from_ms(expected) <= when < utc_from_ms(expected + 1)


# ---------------------------------------------------------------- the venue clock

WALL_START = datetime(2026, 1, 5, 9, 0, 7, tzinfo=UTC)
VENUE_START = datetime(2025, 9, 8, 12, 0, tzinfo=UTC)


class FakeVenue:
    """A venue's server clock running `speed` times the fake wall clock; its speed and time can be changed, its
    answers take `latency` of wall time (the venue reads its clock halfway), or fail."""

    def __init__(self, wall: SimulatedClock, speed: float, latency: timedelta = timedelta(0)) -> None:
        self.wall, self.latency, self.answering = wall, latency, True
        self.samples = 0
        self._at, self._wall_at, self.speed = VENUE_START, wall.now(), speed

    def now(self) -> datetime:
        return self._at + (self.wall.now() - self._wall_at) * self.speed

    def change(self, speed: float, at: datetime | None = None) -> None:
        self._at, self._wall_at, self.speed = at or self.now(), self.wall.now(), speed

    async def server_time_ms(self) -> int:
        if not self.answering:
            raise ConnectionError("the venue does not answer")
        self.samples += 1
        self.wall.advance(self.latency / 2)
        read = ms_from_utc(self.now())
        self.wall.advance(self.latency / 2)
        return read


@pytest.fixture
def wall() -> SimulatedClock:
    return SimulatedClock(WALL_START)


async def started(venue: FakeVenue, **kwargs: Any) -> VenueClock:
    clock = VenueClock(venue.server_time_ms, wall=venue.wall, **kwargs)
    await clock.start()
    return clock


@pytest.mark.parametrize("speed", [0.5, 1, 60, 3600])
async def test_venue_clock_estimates_the_venues_rate_and_follows_it(wall: SimulatedClock, speed: float) -> None:
    venue = FakeVenue(wall, speed)
    clock = await started(venue)
    assert clock.rate == speed
    assert clock.now() == venue.now()
    wall.advance(timedelta(seconds=7))  # no sample: extrapolated at the estimated rate
    assert clock.now() == venue.now()


@pytest.mark.parametrize("speed", [0.5, 1, 60, 1000])  # 300 / speed is whole microseconds: the fake wall's unit
async def test_sleep_waits_seconds_over_rate_of_wall_time(wall: SimulatedClock, speed: float) -> None:
    venue = FakeVenue(wall, speed)
    clock = await started(venue, max_wall_wait_s=3600)
    wall_before, market_before = wall.now(), clock.now()
    await clock.sleep(300)
    assert wall.now() - wall_before == timedelta(seconds=300 / speed)
    assert clock.now() == venue.now() == market_before + timedelta(seconds=300)


async def test_a_long_sleep_samples_the_venue_after_each_bounded_wall_wait(wall: SimulatedClock) -> None:
    venue = FakeVenue(wall, 1)
    clock = await started(venue, max_wall_wait_s=10)
    samples = venue.samples
    await clock.sleep(60)
    assert venue.samples - samples == 6
    assert clock.now() == venue.now()


async def test_a_venue_that_slows_down_is_slept_on_until_it_reaches_the_target(wall: SimulatedClock) -> None:
    """The estimate says 60x, the venue now runs at 30x: waking after 5 s finds the venue short of the target, so the
    clock samples and sleeps on; it never wakes early, and the rate follows the venue once the old samples are gone."""
    venue = FakeVenue(wall, 60)
    clock = await started(venue, window=4)
    venue.change(speed=30)
    for _ in range(4):
        target = clock.now() + timedelta(seconds=300)
        await clock.sleep(300)
        assert target <= venue.now() <= target + timedelta(milliseconds=30)  # the last wait is at least 1 ms
    assert clock.rate == pytest.approx(30)


async def test_now_never_goes_backwards(wall: SimulatedClock) -> None:
    """A venue slower than estimated, then one restarted behind: time holds until the venue passes it again."""
    venue = FakeVenue(wall, 60)
    clock = await started(venue)
    venue.change(speed=30)
    wall.advance(timedelta(seconds=10))
    ahead = clock.now()  # estimated at 60x: 300 s ahead of the venue
    await clock.sync()
    assert clock.now() == ahead > venue.now()
    venue.change(speed=30, at=VENUE_START)  # restarted from its start
    await clock.sync()
    assert clock.now() == ahead
    assert clock.rate == pytest.approx(360 / 11)  # the restart's single sample says nothing about the rate
    wall.advance(timedelta(seconds=20))  # the venue is at 12:10, still behind
    await clock.sync()
    assert clock.now() == ahead > venue.now()
    wall.advance(timedelta(seconds=20))
    await clock.sync()
    assert clock.now() == venue.now() > ahead


async def test_network_latency_never_puts_the_clock_ahead_of_the_venue(wall: SimulatedClock) -> None:
    venue = FakeVenue(wall, 60, latency=timedelta(milliseconds=200))
    clock = await started(venue)
    assert clock.rate == 60
    assert venue.now() - timedelta(seconds=6) <= clock.now() <= venue.now()  # at most half the latency, at 60x
    await clock.sleep(300)
    assert clock.now() <= venue.now()


async def test_a_venue_that_does_not_answer_stops_neither_sleep_nor_time(wall: SimulatedClock) -> None:
    venue = FakeVenue(wall, 60)
    clock = await started(venue)
    venue.answering = False
    before = clock.now()
    await clock.sleep(300)  # on the last estimate
    assert clock.now() == before + timedelta(seconds=300) == venue.now()


async def test_a_venue_clock_starts_only_from_an_answering_venue(wall: SimulatedClock) -> None:
    venue = FakeVenue(wall, 60)
    clock = VenueClock(venue.server_time_ms, wall=wall)
    with pytest.raises(RuntimeError, match="no sample"):
        clock.now()
    venue.answering = False
    with pytest.raises(ConnectionError):
        await clock.start()
