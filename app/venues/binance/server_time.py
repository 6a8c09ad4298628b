"""A venue's clock as our clients see it: the offset from the injected clock, kept current and shared per venue."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.domain.clock import Clock, ms_from_utc

DEFAULT_TIME_SYNC_INTERVAL_S = 60.0


class ServerTimeSync:
    """The server-time offset of one venue, added to the injected clock for `timestamp` and the closed-candle check.

    It is measured at start-up, again on -1021, and whenever the last attempt is older than `interval_s` of the
    injected clock: a venue whose clock runs at another rate than ours (the exchange simulator at `--speed 60`)
    drifts away from a one-off measurement by hours, and fresh candles would look "not closed yet". One instance
    serves every client of the venue, so a -1021 seen by a user's signed request corrects market data too.
    """

    def __init__(self, clock: Clock, interval_s: float = DEFAULT_TIME_SYNC_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._clock = clock
        self._interval = timedelta(seconds=interval_s)
        self._offset_ms = 0
        self._attempted_at: datetime | None = None

    @property
    def offset_ms(self) -> int:
        return self._offset_ms

    def local_ms(self) -> int:
        return ms_from_utc(self._clock.now())

    def server_now_ms(self) -> int:
        return self.local_ms() + self._offset_ms

    def is_due(self) -> bool:
        """True before the first measurement and once the last attempt is `interval_s` old."""
        return self._attempted_at is None or self._clock.now() - self._attempted_at >= self._interval

    def attempting(self) -> None:
        # counted from the attempt, not its success: a venue that does not answer is asked once an interval,
        # not before every request
        self._attempted_at = self._clock.now()

    def record(self, server_ms: int, sent_ms: int, received_ms: int) -> int:
        """The server read `server_ms` between our `sent_ms` and `received_ms`: taken as the middle. Returns the
        change of the offset in ms."""
        offset_ms = server_ms - (sent_ms + received_ms) // 2
        change_ms, self._offset_ms = offset_ms - self._offset_ms, offset_ms
        return change_ms


class ServerTimeSyncs:
    """One `ServerTimeSync` per venue (base URL): market data and every user's client on it share one offset."""

    def __init__(self, clock: Clock, interval_s: float = DEFAULT_TIME_SYNC_INTERVAL_S) -> None:
        self._clock, self._interval_s = clock, interval_s
        self._by_venue: dict[str, ServerTimeSync] = {}

    def for_venue(self, base_url: str) -> ServerTimeSync:
        key = base_url.rstrip("/")
        sync = self._by_venue.get(key)
        if sync is None:
            sync = self._by_venue[key] = ServerTimeSync(self._clock, self._interval_s)
        return sync
