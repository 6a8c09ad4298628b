"""The simulator's API keys: the funded account behind each, and Binance's key, signature and timestamp checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from app.devtools.api_errors import BinanceApiError
from app.devtools.request_params import int_param, recv_window_ms, required
from app.domain.clock import Clock, ms_from_utc
from app.venues.binance.protocol import timestamp_error, verify_signature
from app.venues.paper.accounts import SimAccountStore
from app.venues.paper.exchange import MockBinanceService
from app.venues.paper.market import SimulatedMarket


@dataclass(frozen=True, slots=True)
class ApiAccount:
    """One simulated account reachable with an API key and its HMAC secret, funded once with `balances`."""

    api_key: str
    api_secret: str
    balances: Mapping[str, Decimal] = field(default_factory=dict)


class ApiKeys:
    """The simulated exchange behind each API key, opened on one market, clock and account store."""

    def __init__(self, accounts: Sequence[ApiAccount], market: SimulatedMarket, clock: Clock, store: SimAccountStore,
                 check_timestamps: bool) -> None:
        if len({a.api_key for a in accounts}) != len(accounts):
            raise ValueError("API keys must be unique")
        self._accounts = {a.api_key: a for a in accounts}
        self._market = market
        self._clock = clock
        self._store = store
        self._services: dict[str, MockBinanceService] = {}
        self._check_timestamps = check_timestamps

    async def open(self) -> None:
        """Open (and fund, the first time) every account; idempotent."""
        for key, account in self._accounts.items():
            if key not in self._services:
                self._services[key] = await MockBinanceService.open_account(
                    f"api-{len(self._services) + 1}", self._market, self._store, self._clock, account.balances
                )

    def account(self, api_key: str) -> MockBinanceService:
        return self._services[api_key]

    def authenticate(self, api_key: str | None, query: str, body: str,
                     params: Mapping[str, str]) -> MockBinanceService:
        """The account a signed request acts on, once its key, signature and timestamp pass."""
        if not api_key:
            raise BinanceApiError(-2014)
        account = self._accounts.get(api_key)
        service = self._services.get(api_key)
        if account is None or service is None:
            raise BinanceApiError(-2015)
        required(params, "signature")
        timestamp_ms = int_param(params, "timestamp")
        window_ms = recv_window_ms(params)
        if not verify_signature(query, body, account.api_secret):
            raise BinanceApiError(-1022)
        if self._check_timestamps and (problem := timestamp_error(timestamp_ms, self._now_ms(), window_ms)):
            raise BinanceApiError(-1021, problem)
        return service

    def _now_ms(self) -> int:
        return ms_from_utc(self._clock.now())
