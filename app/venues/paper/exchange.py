"""The simulated Binance spot exchange: one account's balances and orders, filled from a market's candles and prices
at clock time (replayed files, or a live venue's public data)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from app.domain.clock import Clock, ms_from_utc
from app.domain.errors import InsufficientFunds, TemporaryExchangeError
from app.domain.values import Balance, Candle, ListStatus, OcoOrder, Order, Side, SymbolRules, Timeframe
from app.venues.binance.protocol import MAX_KLINES
from app.venues.paper.account_cache import StaleAccount
from app.venues.paper.accounts import (
    SimAccountState,
    SimAccountStore,
    asset_balance,
    oco_answer,
    open_lists,
    prune_finished,
)
from app.venues.paper.market import MarketNeeds, PaperMarket
from app.venues.paper.matcher import Matcher
from app.venues.paper.orders import (
    INSUFFICIENT_BALANCE,
    NEW_ORDER_REJECTED,
    MarketRequest,
    OcoRequest,
    OrderEntry,
    find_list,
    find_order,
)

T = TypeVar("T")
STALE_RETRIES = 3  # a call redone on a fresh read this many times before it gives up (TemporaryExchangeError)


class MockBinanceService:
    """`ExchangeAdapter` for one simulated account; depends only on `clock.now()`, so it runs at any speed."""

    def __init__(self, account_id: str, market: PaperMarket, store: SimAccountStore, clock: Clock) -> None:
        self._account_id = account_id
        self._market = market
        self._store = store
        self._clock = clock
        self._matcher = Matcher(market)
        self._orders = OrderEntry(market)
        self._lock = asyncio.Lock()

    @classmethod
    async def open_account(
        cls,
        account_id: str,
        market: PaperMarket,
        store: SimAccountStore,
        clock: Clock,
        balances: Mapping[str, Decimal] | None = None,
    ) -> MockBinanceService:
        """The service for an account; `balances` fund it only if the store has never seen it (restarts keep state)."""
        service = cls(account_id, market, store, clock)
        if await store.load(account_id) is None:
            state = SimAccountState()
            for asset, amount in (balances or {}).items():
                state.move(asset, free_delta=Decimal(amount))
            await store.save(account_id, state)
        return service

    async def fund(self, asset: str, amount: Decimal) -> Balance:
        """Deposit (or, with a negative amount, withdraw) free balance: paper accounts only."""

        def deposit(state: SimAccountState, _now_ms: int) -> Balance:
            if state.free(asset) + amount < 0:
                raise InsufficientFunds(f"{INSUFFICIENT_BALANCE} (withdraw {-amount} {asset})", NEW_ORDER_REJECTED)
            state.move(asset, free_delta=Decimal(amount))
            return asset_balance(state, asset)

        return await self._transact(deposit)

    async def state_snapshot(self) -> dict[str, Any]:
        """The account in its dict form, brought up to date with the clock."""
        return await self._transact(lambda state, _now_ms: state.to_dict())

    # -- market data ------------------------------------------------------------------------------------------
    async def get_symbol_rules(self, symbol: str) -> SymbolRules:
        await self._market.prepare(MarketNeeds(symbol), ms_from_utc(self._clock.now()))
        return self._market.rules(symbol)

    async def get_klines(self, symbol: str, timeframe: Timeframe, limit: int) -> Sequence[Candle]:
        return await self._market.klines(symbol, timeframe, self._clock.now(), max(1, min(MAX_KLINES, limit)))

    async def get_symbol_price(self, symbol: str) -> Decimal:
        now_ms = ms_from_utc(self._clock.now())
        await self._market.prepare(MarketNeeds(symbol, price=True), now_ms)
        return self._market.last_price(symbol, now_ms)

    # -- account ----------------------------------------------------------------------------------------------
    async def get_balances(self) -> list[Balance]:
        def balances(state: SimAccountState, _now_ms: int) -> list[Balance]:
            return [asset_balance(state, a) for a in sorted(state.balances) if asset_balance(state, a).total != 0]

        return await self._transact(balances)

    async def get_account_balance(self, asset: str = "USDT") -> Balance:
        return await self._transact(lambda state, _now_ms: asset_balance(state, asset))

    # -- orders -----------------------------------------------------------------------------------------------
    async def place_market_order(
        self, symbol: str, side: Side, quantity: Decimal, client_order_id: str, *, available_qty: Decimal | None = None
    ) -> Order:
        """`available_qty` is the book's liquidity (None: unlimited); beyond it the order ends EXPIRED, part-filled."""
        request = MarketRequest(symbol, Side(side), quantity, client_order_id, available_qty)
        return await self._transact(lambda state, now_ms: self._orders.market_order(state, now_ms, request),
                                    symbol, price=True)

    async def place_oco_order(
        self,
        symbol: str,
        quantity: Decimal,
        take_profit: Decimal,
        stop_price: Decimal,
        stop_limit_price: Decimal,
        list_client_order_id: str,
    ) -> OcoOrder:
        request = OcoRequest(symbol, quantity, take_profit, stop_price, stop_limit_price, list_client_order_id)
        return await self._transact(lambda state, now_ms: self._orders.place_oco(state, now_ms, request),
                                    symbol, price=True)

    async def get_oco_order_status(self, symbol: str, list_client_order_id: str) -> OcoOrder:
        return await self._transact(
            lambda state, _now_ms: oco_answer(state, find_list(state, symbol, list_client_order_id))
        )

    async def cancel_oco_order(self, symbol: str, list_client_order_id: str) -> OcoOrder:
        def cancel(state: SimAccountState, now_ms: int) -> OcoOrder:
            order_list = find_list(state, symbol, list_client_order_id)
            self._orders.cancel_list(state, order_list, now_ms)
            return oco_answer(state, order_list)

        return await self._transact(cancel, symbol)

    async def get_order(self, symbol: str, client_order_id: str) -> Order:
        return await self._transact(lambda state, _now_ms: find_order(state, symbol, client_order_id).to_order())

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order:
        return await self._transact(
            lambda state, now_ms: self._orders.cancel_order(state, symbol, client_order_id, now_ms), symbol
        )

    async def list_orders(self) -> list[Order]:
        """Every order the account still keeps (open and recent final ones), oldest first."""
        return await self._transact(lambda state, _now_ms: [o.to_order() for _, o in sorted(state.orders.items())])

    async def list_order_lists(self) -> list[OcoOrder]:
        """Every order list the account still keeps, oldest first."""
        return await self._transact(
            lambda state, _now_ms: [oco_answer(state, x) for _, x in sorted(state.order_lists.items())]
        )

    async def get_open_oco_orders(self) -> list[OcoOrder]:
        def open_oco_lists(state: SimAccountState, _now_ms: int) -> list[OcoOrder]:
            executing = [x for x in open_lists(state) if x.status == ListStatus.EXECUTING]
            return [oco_answer(state, x) for x in executing]

        return await self._transact(open_oco_lists)

    # -- internals --------------------------------------------------------------------------------------------
    async def _transact(
        self, action: Callable[[SimAccountState, int], T], symbol: str | None = None, *, price: bool = False
    ) -> T:
        """Load, have the market fetch what the call reads (the symbol's rules, its price if asked, the candles the
        catch-up walks), catch up with every candle closed since the last call, act, and save if anything changed.
        A save that another process beat (StaleAccount: nothing was saved) is redone on the account as it is now.
        A catch-up or action that fails with nothing to save leaves the account as stored: the store drops the state
        it may keep (CachedSimAccountStore hands the same object to the next call), since the revision is all this
        sees of what they did, and a change made without counting one would otherwise outlive the failure."""
        async with self._lock:
            for _ in range(STALE_RETRIES):
                try:
                    return await self._attempt(action, symbol, price)
                except StaleAccount:
                    continue
            raise TemporaryExchangeError(f"paper account {self._account_id} changed under {STALE_RETRIES} calls in a row")

    async def _attempt(self, action: Callable[[SimAccountState, int], T], symbol: str | None, price: bool) -> T:
        state = await self._store.load(self._account_id) or SimAccountState()
        revision = state.revision
        now_ms = ms_from_utc(self._clock.now())
        needs = MarketNeeds(symbol, price, self._matcher.candles_needed(state, now_ms))
        await self._market.prepare(needs, now_ms)
        try:
            self._matcher.catch_up(state, now_ms)
            return action(state, now_ms)
        except BaseException:
            if state.revision == revision:
                self._store.forget(self._account_id)
            raise
        finally:
            if state.revision != revision:
                prune_finished(state)
                await self._store.save(self._account_id, state)
