"""The simulator's request weight per minute and IP bans, counted and answered as Binance does."""

from __future__ import annotations

from app.devtools.api_errors import BinanceApiError
from app.venues.binance.protocol import MINUTE_MS, RETRY_AFTER_HEADER, USED_WEIGHT_HEADER, Endpoint

# successful order placements and cancels cost no weight (reference section 4)
_FREE_WHEN_OK = frozenset({("POST", Endpoint.ORDER), ("POST", Endpoint.ORDER_LIST_OCO), ("DELETE", Endpoint.ORDER),
                           ("DELETE", Endpoint.ORDER_LIST)})


class RequestLimits:
    """The weight used in the current minute against the limit, and when the IP's ban ends."""

    def __init__(self, weight_limit: int) -> None:
        self.weight_limit = weight_limit
        self._weight_minute = -1
        self._used_weight = 0
        self._banned_until_ms = 0

    def check(self, weight: int, now_ms: int) -> None:
        """Refuses a request of `weight` while banned (418) or past the minute's weight (429, which bans until
        Retry-After)."""
        self._check_ban(now_ms)
        self._check_weight(weight, now_ms)

    def ban(self, until_ms: int) -> None:
        """Bans the IP until `until_ms` (a ban already running longer stays)."""
        self._banned_until_ms = max(self._banned_until_ms, until_ms)

    def charge(self, method: str, path: str, weight: int, status: int, now_ms: int) -> None:
        """Counts an answered request's weight."""
        self._roll_weight_window(now_ms)
        if not (status == 200 and (method, path) in _FREE_WHEN_OK):
            self._used_weight += weight

    def headers(self) -> dict[str, str]:
        return {USED_WEIGHT_HEADER: str(self._used_weight)}

    def _check_ban(self, now_ms: int) -> None:
        if now_ms < self._banned_until_ms:
            retry_after_s = -(-(self._banned_until_ms - now_ms) // 1000)
            raise BinanceApiError(-1003, f"Way too much request weight used; IP banned for {retry_after_s} s.", 418,
                                  {RETRY_AFTER_HEADER: str(retry_after_s)})

    def _roll_weight_window(self, now_ms: int) -> None:
        minute = now_ms // MINUTE_MS
        if minute != self._weight_minute:
            self._weight_minute, self._used_weight = minute, 0

    def _check_weight(self, weight: int, now_ms: int) -> None:
        self._roll_weight_window(now_ms)
        if self._used_weight + weight > self.weight_limit:
            retry_after_s = -(-((self._weight_minute + 1) * MINUTE_MS - now_ms) // 1000)
            self.ban(now_ms + retry_after_s * 1000)
            raise BinanceApiError(-1003, status=429, headers={RETRY_AFTER_HEADER: str(retry_after_s)})
