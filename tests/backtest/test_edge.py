"""The edge test: deterministic for a seed, near-uniform p for entries at random, p at its floor for clairvoyance."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.assembly import build_backtest_engine
from app.backtest.command import BacktestOptions, exit_model, run_command
from app.backtest.edge import average_exposure, closed_trades, edge_report, planned_trades
from app.backtest.exit_simulation import SymbolTape, exit_prices
from app.backtest.runner import BacktestResult, BacktestSpec, run_backtest
from app.config import Settings
from app.domain.clock import ms_from_utc
from app.domain.records import TradeRecord
from app.domain.risk import TradingConfig
from app.domain.values import ExitReason, MarketFeatures, Signal, SignalType, Timeframe, TradeStatus
from app.marketdata.candles import CandleStore
from tests.backtest.backtest_helpers import SAMPLE, backtest_engine, fast_settings

SYMBOL = ("BTCUSDT",)
FIRST_START = datetime(2025, 9, 8, tzinfo=UTC)  # the sample's first full 7-day warm-up
SPAN = timedelta(days=7)
SEEDS = 40


class RandomAnalyst:
    """Says buy at seeded random cycles (a coin per symbol and cycle), blind to the prices: no edge by design."""

    name = "rules"

    def __init__(self, seed: int, buys_per_thousand: int = 20) -> None:
        self.seed, self.buys_per_thousand = seed, buys_per_thousand

    async def analyze(self, features: MarketFeatures) -> Signal:
        key = f"{self.seed}:{features.symbol}:{ms_from_utc(features.time)}".encode()
        if int.from_bytes(hashlib.sha256(key).digest()[:4], "big") % 1000 >= self.buys_per_thousand:
            return Signal.hold("not this cycle")
        return _buy(features.last_price)


@dataclass
class ClairvoyantAnalyst:
    """Cheats: buys when the close two hours ahead is 0.5 % higher (reads candles the bot could not have)."""

    candles: CandleStore
    name: str = "rules"

    async def analyze(self, features: MarketFeatures) -> Signal:
        ahead = self.candles.price_at(features.symbol, features.time + timedelta(hours=2))
        return _buy(features.last_price) if ahead > features.last_price * Decimal("1.005") else Signal.hold("no")


def _buy(price: Decimal) -> Signal:
    return Signal(SignalType.BUY, 90, price, price * Decimal("0.985"), price * Decimal("1.03"), "test")


def _run(settings: Settings, start: datetime, analyst: Any = None) -> tuple[BacktestResult, CandleStore]:
    engine, spec = backtest_engine(settings, SYMBOL, start, start + SPAN)
    engine.bot.analysts = {"rules": analyst(engine.candles) if callable(analyst) else analyst}
    return asyncio.run(run_backtest(engine, spec)), engine.candles


def _edge(result: BacktestResult, candles: CandleStore, settings: Settings, seed: int,
          repetitions: int = 100) -> dict[str, Any]:
    return edge_report(result, candles, exit_model(settings, result.spec.config), seed, repetitions)


def test_the_edge_test_is_deterministic_for_a_seed() -> None:
    settings = fast_settings(backtest_workers=0)
    result, candles = _run(settings, FIRST_START, RandomAnalyst(1))
    first = _edge(result, candles, settings, seed=7)
    assert first["trades"] > 5 and first == _edge(result, candles, settings, seed=7)
    other = _edge(result, candles, settings, seed=8)
    assert other["strategy"] == first["strategy"] and other["random"] != first["random"]
    assert first["statement"].startswith("entries add ") and 0 < first["p_value"] <= 1


def test_p_values_of_entries_at_random_cycles_are_near_uniform() -> None:
    """40 random analysts on one symbol, each over its own week: about 5 % below 0.05, about half below 0.5."""
    settings = fast_settings(backtest_workers=0)
    p_values = []
    for seed in range(SEEDS):
        result, candles = _run(settings, FIRST_START + seed * timedelta(days=2), RandomAnalyst(seed))
        p_values.append(_edge(result, candles, settings, seed)["p_value"])
    p = np.sort(np.array(p_values))
    assert (p < 0.05).sum() <= 7, p  # Binomial(40, 0.05): 2 expected, more than 7 has odds below 1 in 3000
    assert 11 <= (p < 0.5).sum() <= 29, p  # Binomial(40, 0.5): 20 expected
    uniform = np.arange(1, SEEDS + 1) / SEEDS
    assert np.abs(p - uniform).max() < 0.26, p  # Kolmogorov-Smirnov distance, 1 % critical value for 40 draws


def test_entries_that_see_the_future_beat_every_random_repetition() -> None:
    settings = fast_settings(backtest_workers=0)
    result, candles = _run(settings, FIRST_START, ClairvoyantAnalyst)
    edge = _edge(result, candles, settings, seed=3)
    assert edge["trades"] > 5
    assert edge["p_value"] == pytest.approx(1 / 101, abs=1e-4) and edge["percentile"] == 100
    assert edge["entries_add_pct_per_trade"] > 0.3


def test_the_exit_model_replays_the_engine_s_own_exits() -> None:
    """Targets, stops, timeouts and the run's end at the engine's prices (the model and the paper venue share the
    stop-limit fill rule, app/venues/paper/fill_rules.py; the engine's prices are on the tick, the model's not)."""
    settings = fast_settings(backtest_workers=0)
    result, candles = _run(settings, FIRST_START, RandomAnalyst(2))
    model = exit_model(settings, result.spec.config)
    tape = SymbolTape.of(candles, SYMBOL[0], result.spec.start, result.spec.end)
    trades = closed_trades(result)
    reasons = set()
    for trade, plan in zip(trades, planned_trades(trades, {SYMBOL[0]: tape}), strict=True):
        entry = tape.close[plan.row] * (1 + model.slippage)
        stop, target = entry * (1 - plan.stop_distance), entry * (1 + plan.target_distance)
        price = exit_prices(tape, np.array([plan.row]), np.array([stop]), np.array([target]), model)[0]
        reasons.add(trade.exit_reason)
        assert price == pytest.approx(float(trade.exit_price or 0), rel=1e-5), trade
    assert {ExitReason.TAKE_PROFIT, ExitReason.TIMEOUT, ExitReason.STOP_LOSS} <= reasons


def test_exposure_is_the_time_weighted_share_of_equity_held_in_positions() -> None:
    start = datetime(2025, 10, 1, tzinfo=UTC)
    equity = [(start + timedelta(hours=h), Decimal(10000)) for h in range(11)]
    trade = TradeRecord(id=1, user_id=1, symbol="BTCUSDT", side="BUY", status=TradeStatus.CLOSED, amount=Decimal("0.01"),
                        price=Decimal(100000), stop_loss=Decimal(99000), take_profit=Decimal(102000),
                        ai_signal_confidence=90, entry_client_order_id="e", entry_fee=Decimal(1),
                        executed_at=start + timedelta(hours=2), closed_at=start + timedelta(hours=7))
    spec = BacktestSpec(TradingConfig(user_id=1, symbols=SYMBOL), start, start + timedelta(hours=10), Decimal(10000))
    result = BacktestResult(spec, 121, [trade], equity, Decimal(10000))
    assert average_exposure(result) == pytest.approx(1000 / 10000 * 5 / 10)


def test_a_run_without_trades_says_there_is_nothing_to_test() -> None:
    settings = fast_settings(backtest_workers=0)
    engine, spec = backtest_engine(settings, SYMBOL, FIRST_START, FIRST_START + timedelta(days=1))
    result = BacktestResult(spec, 1, [], [(spec.start, spec.balance), (spec.end, spec.balance)], spec.balance)
    edge = _edge(result, engine.candles, settings, seed=1)
    assert edge["trades"] == 0 and edge["statement"] == "no closed trades: nothing to test"
    assert edge["exposure_pct"] == 0 and Timeframe.M5 in engine.candles.timeframes("BTCUSDT")


def test_every_report_carries_the_edge_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = BacktestOptions(
        symbols=("BTCUSDT", "ETHUSDT"), start=datetime(2025, 10, 1, tzinfo=UTC), end=datetime(2025, 10, 6, tzinfo=UTC),
        data=SAMPLE, balance=Decimal("10000"), analyzer="rules", seed=5, config=None, out=tmp_path, quiet=True,
        workers=0, edge_repetitions=50,
    )
    assert run_command(options, build_backtest_engine, time.perf_counter) == 0
    edge = json.loads((tmp_path / "report.json").read_text())["edge"]
    assert edge["repetitions"] == len(edge["random"]["net_pct_by_repetition"]) == 50 and edge["seed"] == 5
    assert edge["trades"] > 0 and set(edge["strategy"]) == set(edge["booked"]) == {"net_pct_per_trade",
                                                                                  "gross_pct_per_trade"}
    assert edge["model"] == {"fee_rate": 0.001, "slippage_pct": 0.02, "stop_limit_gap_pct": 0.2,
                             "position_timeout_minutes": 480}
    assert 0 < edge["exposure_pct"] < 100
    assert edge["buy_and_hold_at_exposure_pct"] == pytest.approx(edge["buy_and_hold_pct"] * edge["exposure_pct"] / 100,
                                                                 abs=1e-3)
    out = capsys.readouterr().out
    assert f"edge test        {edge['statement']}" in out and "gross" in out and "at that exposure" in out
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Edge test</h2>" in page and edge["statement"] in page and (tmp_path / "edge.png").stat().st_size > 1000
