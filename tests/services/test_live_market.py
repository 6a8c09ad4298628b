"""LiveMarket: a paper account on a live source's ticker, rules and closed 5m candles, as the source publishes them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from app.config import BUNDLED_DATA_DIR
from app.devtools.simulator import ExchangeSimulator, create_simulator_app
from app.devtools.simulator_thread import SimulatorThread
from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.errors import ConfigurationError
from app.domain.values import Candle, ListStatus, Side, SymbolRules, Timeframe
from app.marketdata.candles import CandleStore
from app.venues.binance.client import BinanceService
from app.venues.paper.accounts import InMemorySimAccountStore
from app.venues.paper.exchange import MockBinanceService
from app.venues.paper.live_market import LiveMarket, RecentCandles
from app.venues.paper.market import SimulatedMarket
from tests.bundled import bundled_rules
from tests.services.exchange_sim_builders import CANDLE_PATH, T0, at

BTC = "BTCUSDT"
M5_MS = Timeframe.M5.ms


def ms(minutes: int) -> int:
    return ms_from_utc(at(minutes))


class PublicSource:
    """A live venue's public data (the `MarketSource` port): BTCUSDT's rules, a ticker price, and the scripted
    candles of `CANDLE_PATH` as far as the venue has published them."""

    def __init__(self) -> None:
        start = ms_from_utc(T0)
        self.candles = [Candle(start + i * M5_MS, *(D(v) for v in ohlc), D(1)) for i, ohlc in enumerate(CANDLE_PATH)]
        self.published_until_ms = self.candles[-1].open_time_ms + M5_MS
        self.price = D("100")
        self.reads: list[tuple[int, int]] = []  # the [start, end) of every klines read

    async def get_symbol_rules(self, symbol: str) -> SymbolRules:
        if symbol != BTC:
            raise ConfigurationError(f"Binance: exchangeInfo has no symbol {symbol}")
        return bundled_rules()[BTC]

    async def get_symbol_price(self, symbol: str) -> D:
        return self.price

    async def get_klines(self, symbol: str, timeframe: Timeframe, limit: int) -> Sequence[Candle]:
        return self.candles[-limit:]

    async def get_klines_between(self, symbol: str, timeframe: Timeframe, start_ms: int,
                                 end_ms: int) -> Sequence[Candle]:
        self.reads.append((start_ms, end_ms))
        end_ms = min(end_ms, self.published_until_ms)
        return [c for c in self.candles if start_ms <= c.open_time_ms < end_ms]


async def paper_account(source: PublicSource, now: datetime) -> tuple[MockBinanceService, SimulatedClock]:
    clock = SimulatedClock(now)
    market = LiveMarket(source, slippage_pct=D("0.02"), fee_rate=D("0.001"))
    service = await MockBinanceService.open_account("acct", market, InMemorySimAccountStore(), clock,
                                                    {"USDT": D("1000")})
    return service, clock


async def test_a_market_buy_fills_at_the_sources_last_price_with_slippage_and_fee() -> None:
    source = PublicSource()
    source.price = D("101.37")
    service, _ = await paper_account(source, at(60))
    order = await service.place_market_order(BTC, Side.BUY, D("0.5"), "buy-1")
    (fill,) = order.fills
    assert fill.price == D("101.40")  # 101.37 * 1.0002 = 101.390274, up to the 0.01 tick against the buyer
    assert (fill.commission, fill.commission_asset) == (D("0.0005"), "BTC")
    assert (await service.get_account_balance("USDT")).free == D("1000") - D("0.5") * D("101.40")


async def test_a_pair_the_source_does_not_list_is_refused_naming_it() -> None:
    service, _ = await paper_account(PublicSource(), at(60))
    with pytest.raises(ConfigurationError, match="no symbol XRPUSDT"):
        await service.place_market_order("XRPUSDT", Side.BUY, D("1"), "buy-1")


async def test_the_oco_waits_for_a_candle_the_source_has_not_published_instead_of_walking_past_it() -> None:
    source = PublicSource()
    service, clock = await paper_account(source, at(120))
    await service.place_market_order(BTC, Side.BUY, D("1"), "buy-1")
    await service.place_oco_order(BTC, D("0.999"), D("110"), D("95"), D("94.9"), "L1")
    source.published_until_ms = ms(125)  # the 02:05 candle (high 111: the take-profit) is late
    clock.advance(timedelta(minutes=35))  # 02:35: the drop through the stop at 02:25 has closed too
    assert (await service.get_oco_order_status(BTC, "L1")).list_status == ListStatus.EXECUTING
    source.published_until_ms = ms(300)
    clock.advance(timedelta(seconds=1))
    done = await service.get_oco_order_status(BTC, "L1")
    assert done.list_status == ListStatus.ALL_DONE and done.filled_leg == done.take_profit_leg
    assert done.take_profit_leg.fills[0].price == D("110") and done.take_profit_leg.transact_time == at(130)


async def test_an_oco_left_alone_for_days_is_matched_from_where_it_was_placed() -> None:
    source = PublicSource()
    last = source.candles[-1]
    source.candles += [Candle(last.open_time_ms + i * M5_MS, last.open, last.high, last.low, last.close, D(1))
                       for i in range(1, 3 * 288)]
    source.published_until_ms = source.candles[-1].open_time_ms + M5_MS
    service, clock = await paper_account(source, at(0))
    await service.place_market_order(BTC, Side.BUY, D("1"), "buy-1")
    await service.place_oco_order(BTC, D("0.999"), D("110"), D("95"), D("94.9"), "L1")
    clock.advance(timedelta(days=2))
    done = await service.get_oco_order_status(BTC, "L1")
    assert done.list_status == ListStatus.ALL_DONE
    assert done.filled_leg == done.take_profit_leg and done.take_profit_leg.transact_time == at(130)


async def test_recent_candles_fetch_only_what_they_lack() -> None:
    source = PublicSource()
    recent = RecentCandles(source)
    await recent.cover(BTC, ms(60), ms(120))
    await recent.cover(BTC, ms(90), ms(120))  # held already
    await recent.cover(BTC, ms(60), ms(150))  # the tail
    assert source.reads == [(ms(60), ms(120)), (ms(120), ms(150))]
    assert recent.known_until(BTC, ms(60), ms(200)) == ms(150)
    assert recent.known_until(BTC, ms(30), ms(200)) == ms(30)  # from before the span: nothing is known
    await recent.cover(BTC, ms(30), ms(150))  # further back: a new span
    assert source.reads[-1] == (ms(30), ms(150))
    assert recent.known_until(BTC, ms(30), ms(200)) == ms(150)
    assert recent.store.candles_between(BTC, Timeframe.M5, ms(30), ms(150)) == source.candles[6:30]


async def test_the_binance_client_reads_a_long_span_of_klines_in_pages() -> None:
    store = CandleStore.load(BUNDLED_DATA_DIR, symbols=(BTC,))
    clock = SimulatedClock(datetime(2025, 9, 20, tzinfo=UTC))
    simulator = ExchangeSimulator(SimulatedMarket(store), clock, [])
    with SimulatorThread(create_simulator_app(simulator)) as server:
        client = BinanceService("", "", server.base_url, clock)
        start_ms, end_ms = ms_from_utc(datetime(2025, 9, 10, tzinfo=UTC)), ms_from_utc(clock.now())
        candles = await client.get_klines_between(BTC, Timeframe.M5, start_ms, end_ms + M5_MS)
        await client.aclose()
    assert len(candles) == 10 * 288  # three reads of up to 1000, and not the candle still open at 20 Sep 00:00
    assert candles == store.candles_between(BTC, Timeframe.M5, start_ms, end_ms)
