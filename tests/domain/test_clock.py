"""Milliseconds and datetimes: the exchange's time unit and the engine's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from app.domain.clock import ms_from_utc, utc_from_ms

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
