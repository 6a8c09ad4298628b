"""Any pair with candles trades on the paper venue; `top:N` picks the most traded pairs of the hour, from candles
closed before it, once per cycle however many users ask."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from app.config import BUNDLED_DATA_DIR, Settings
from app.container import Container
from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.values import ZERO, RulesSource, Timeframe, TradeStatus
from app.marketdata.candles import CandleStore
from app.marketdata.directory import CandleDirectory
from app.marketdata.exchange_info import rules_for_candles
from tests.books import add_paper_user, carried_cost

START = datetime(2025, 9, 8, tzinfo=UTC)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The bundled sample, plus XRPUSDT: real candles (BNB's, renamed) and no stored rules for it."""
    directory = tmp_path / "candles"
    shutil.copytree(BUNDLED_DATA_DIR, directory)
    shutil.copy(BUNDLED_DATA_DIR / "binance_BNBUSDT_5m.csv.gz", directory / "binance_XRPUSDT_5m.csv.gz")
    return directory


async def _users(container: Container, clock: SimulatedClock, *configs: dict[str, object]) -> list[int]:
    return [await add_paper_user(container, clock.now(), f"user{n}", **changes) for n, changes in enumerate(configs)]


async def test_a_pair_with_only_candle_files_trades_on_inferred_rules(settings: Settings, data_dir: Path) -> None:
    settings = settings.model_copy(update={"market_data_dir": data_dir})
    clock = SimulatedClock(START)
    container = Container(settings, market_clock=clock)
    rules = await container.market_data.get_symbol_rules("XRPUSDT")
    assert rules.source is RulesSource.INFERRED
    [user] = await _users(container, clock, {"symbols": ("XRPUSDT",)})
    while clock.now() < START + timedelta(days=4):
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    async with container.uow() as uow:
        trades, _ = await uow.trades.page(user, limit=500)
        positions = await uow.positions.for_user(user)
    assert trades and {t.symbol for t in trades} == {"XRPUSDT"}
    assert all(t.amount % rules.step_size == 0 and t.amount * t.price >= rules.min_notional for t in trades)
    assert all(p.oco_order_id for p in positions)  # every open position protected
    exchange = await container.exchanges.for_user(user)
    closed = [t for t in trades if t.status == TradeStatus.CLOSED]
    open_cost = sum((t.amount * t.price for t in trades if t.status == TradeStatus.FILLED), ZERO)
    realised = sum((t.profit_loss or ZERO for t in closed), ZERO)
    usdt = await exchange.get_account_balance("USDT")
    carried = await carried_cost(container.uow, user, {"XRPUSDT"})
    assert usdt.total + carried == settings.paper_start_balance + realised - open_cost
    await container.db.dispose()


def quote_volume(candles: CandleStore, symbol: str, hour: datetime) -> Decimal:
    """The ranking's measure, worked out independently: exact close x volume of the 5m candles of the day before
    the hour."""
    found = candles.candles_between(symbol, Timeframe.M5, ms_from_utc(hour - timedelta(days=1)), ms_from_utc(hour))
    return sum((c.close * c.volume for c in found), Decimal(0))


async def test_top_n_is_the_most_traded_pairs_of_the_hour_analysed_once_for_everyone(
    settings: Settings, data_dir: Path
) -> None:
    settings = settings.model_copy(update={"market_data_dir": data_dir})
    now = START + timedelta(hours=5, minutes=35)
    clock = SimulatedClock(now)
    container = Container(settings, market_clock=clock)
    users = await _users(container, clock, {"symbols": ("top:2",)}, {"symbols": ("top:2", "SOLUSDT")},
                         {"symbols": ("top:3",), "exclude_symbols": ("BTCUSDT",)})
    hour = now.replace(minute=0)
    volumes = {s: quote_volume(container.candles, s, hour) for s in container.candles.symbols()}
    by_volume = sorted(volumes, key=lambda s: -volumes[s])
    async with container.uow() as uow:
        active = await uow.configs.active()
    resolved = await container.bot.choices.resolve(active, now)
    assert [c.symbols for c in resolved] == [
        tuple(by_volume[:2]),
        ("SOLUSDT", *[s for s in by_volume[:2] if s != "SOLUSDT"]),
        tuple([s for s in by_volume if s != "BTCUSDT"][:3]),
    ]
    summary = await container.bot.run_cycle(now)
    assert summary.analyses == len({s for c in resolved for s in c.symbols})  # each symbol once, not per user
    assert len(users) == 3
    await container.db.dispose()


def test_rankings_use_no_candle_after_their_hour() -> None:
    """Cutting the data at T leaves every ranking before T as it was, and a ranking is the same when asked twice."""
    full = CandleStore.load(BUNDLED_DATA_DIR)
    rules = rules_for_candles(full, BUNDLED_DATA_DIR)
    cut_at = datetime(2025, 10, 20, 13, 0, tzinfo=UTC)
    whole, cut = CandleDirectory(full, rules), CandleDirectory(full.between(None, cut_at), rules)
    times = [cut_at - timedelta(minutes=5 * k) for k in range(1, 12 * 24 * 6, 7)]
    assert [whole.ranking_at(t) for t in times] == [cut.ranking_at(t) for t in times]
    changed = {whole.ranking_at(t) for t in times}
    assert len(changed) > 1, "the rankings over six days should not all be the same (else the test proves little)"
    assert whole.ranking_at(times[0]) == CandleDirectory(full, rules).ranking_at(times[0])
