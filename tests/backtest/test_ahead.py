"""Analyses computed ahead by worker processes give exactly the backtest the engine gives on its own."""

from __future__ import annotations

import dataclasses
import itertools
import os
import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.backtest import ahead
from app.backtest.ahead import (
    PackedColumn,
    WorkerAnalyses,
    WorkerFailed,
    block_bounds,
    pack,
    start_analyses_ahead,
    unpack,
)
from app.backtest.runner import BacktestEngine, BacktestResult, cycle_times, run_backtest
from app.domain.values import AnalystReport, MarketFeatures, RegimeAnalysis, Signal, SignalType, SupportResistance
from app.engine.bot import SymbolAnalysis
from app.marketdata.candles import CandleWindow
from tests.backtest.backtest_helpers import backtest_engine, fast_settings, trade_facts

SYMBOLS = ("BTCUSDT", "SOLUSDT")
START, END = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 4, tzinfo=UTC)


async def _run(workers: int, block: int) -> tuple[BacktestEngine, BacktestResult, set[type]]:
    engine, spec = backtest_engine(fast_settings(), SYMBOLS, START, END, keep_log=True)
    engine.workers, engine.ahead_blocks = workers, (block, 4 * block)
    sources: set[type] = set()
    result = await run_backtest(engine, spec, on_cycle=lambda *_: sources.add(type(engine.bot.ahead)))
    return engine, result, sources


async def test_worker_processes_give_the_same_decision_log_and_trades_as_one_process() -> None:
    alone, alone_result, alone_sources = await _run(workers=0, block=20)
    ahead, ahead_result, ahead_sources = await _run(workers=2, block=20)
    assert alone_sources == {type(None)} and ahead_sources == {WorkerAnalyses}
    log_alone, log_ahead = alone.store.tables, ahead.store.tables
    assert len(log_alone.analyses) == 2 * alone_result.cycles
    signals = {a.signal for a in log_alone.analyses}
    assert {"hold", "buy"} <= signals, "both kinds of answer must cross from the workers"
    assert log_ahead.analyses == log_alone.analyses
    assert [dataclasses.astuple(d) for d in log_ahead.decisions] == [dataclasses.astuple(d) for d in log_alone.decisions]
    assert alone_result.trades, "the span should trade"
    assert trade_facts(ahead_result.trades) == trade_facts(alone_result.trades)
    assert ahead_result.final_balance == alone_result.final_balance


def _analysis(report: AnalystReport) -> SymbolAnalysis:
    regime = RegimeAnalysis("ranging", True, "ADX low", 14.5, 0.8)
    features = MarketFeatures("BTCUSDT", START, Decimal("60123.45"), {"5m": {"rsi": 51.0}}, regime, (), 61.25)
    return SymbolAnalysis.of(features, report)


def test_a_plain_hold_travels_as_values_and_comes_back_without_features() -> None:
    analysis = _analysis(AnalystReport(Signal.hold("range setup not confirmed"), "rules"))
    packed = pack(analysis)
    assert isinstance(packed, tuple)
    assert unpack(packed, "BTCUSDT", START) == dataclasses.replace(analysis, features=None)


def test_any_other_answer_travels_whole_its_features_unpickled_when_first_needed() -> None:
    buy = Signal(SignalType.BUY, 80, Decimal("60123.450"), Decimal("5.9E+4"), Decimal("62000"), "trend long")
    errored = AnalystReport(Signal.hold("analyst error: boom"), "rules", error="boom")
    for report in (AnalystReport(buy, "rules"), errored):
        analysis = _analysis(report)
        back = unpack(pickle.loads(pickle.dumps(pack(analysis))), "BTCUSDT", START)
        assert back is not None and back.features is None  # not unpickled yet
        assert back.entry_features() == analysis.features and back.features == analysis.features
        assert back == analysis
        for name in ("entry_price", "stop_loss", "take_profit"):  # digits and exponent as they were
            assert str(getattr(back.report.signal, name)) == str(getattr(report.signal, name))
    # the price's text, on the analysis and on the features rebuilt around it; an analysis whose features are not its
    # own (built otherwise than SymbolAnalysis.of) brings them whole
    priced = _analysis(AnalystReport(buy, "rules"))
    features = dataclasses.replace(priced.features, last_price=Decimal("6.01E+4"))
    own = SymbolAnalysis.of(features, priced.report)
    other_price = dataclasses.replace(own, last_price=Decimal("60100"))
    other_time = dataclasses.replace(own, time=START + timedelta(minutes=5))
    for analysis in (own, other_price, other_time):
        back = unpack(pickle.loads(pickle.dumps(pack(analysis))), "BTCUSDT", analysis.time)
        assert back is not None and str(back.last_price) == str(analysis.last_price)
        loaded = back.entry_features()
        assert loaded == analysis.features and str(loaded.last_price) == "6.01E+4"
    assert pack(None) is None and unpack(None, "BTCUSDT", START) is None


def test_a_column_of_answers_crosses_whole_holds_by_column_the_rest_by_offset() -> None:
    buy = Signal(SignalType.BUY, 80, Decimal("60123.45"), Decimal("59000"), Decimal("62000"), "trend long")
    holds = [_analysis(AnalystReport(Signal.hold(f"no setup {i}"), "rules")) for i in range(3)]
    holds[1].last_price = Decimal("60123.450")  # the text keeps the exponent: equal and alike after the trip
    holds[2].last_price = Decimal("6.1E+4")
    answers = [holds[0], None, _analysis(AnalystReport(buy, "rules")), holds[1], holds[2]]
    column = pickle.loads(pickle.dumps(PackedColumn.of([pack(a) for a in answers])))
    assert len(column) == len(answers)
    back = [unpack(column[i], "BTCUSDT", START) for i in range(len(answers))]
    assert back[1] is None
    assert back[2] is not None and back[2].entry_features() == answers[2].features and back[2] == answers[2]
    for i in (0, 3, 4):
        assert back[i] == dataclasses.replace(answers[i], features=None)
        assert str(back[i].last_price) == str(answers[i].last_price)
    assert len(PackedColumn.of([None, None])) == 2 and PackedColumn.of([None, None])[1] is None


def test_a_hold_with_any_field_besides_its_reasoning_set_travels_with_everything() -> None:
    report_changes = {"model": "m", "prompt": "p", "prompt_version": "v", "prompt_hash": "h", "raw_response": "r",
                      "latency_ms": 1, "input_tokens": 1, "output_tokens": 1, "cost_usd": Decimal("0.01"),
                      "fallback_used": True, "error": "e"}
    signal_changes = {"signal": SignalType.SELL, "confidence": 1, "entry_price": Decimal(1), "stop_loss": Decimal(1),
                      "take_profit": Decimal(1)}
    assert set(report_changes) == {f.name for f in dataclasses.fields(AnalystReport)} - {"signal", "analyzer"}
    assert set(signal_changes) == {f.name for f in dataclasses.fields(Signal)} - {"reasoning"}
    hold = AnalystReport(Signal.hold("no setup"), "rules")
    assert len(pack(_analysis(hold)) or ()) == 5  # a plain hold: its values only
    changed = [dataclasses.replace(hold, **{name: value}) for name, value in report_changes.items()]
    changed += [dataclasses.replace(hold, signal=dataclasses.replace(hold.signal, **{name: value}))
                for name, value in signal_changes.items()]
    for report in changed:
        analysis = _analysis(report)
        packed = pack(analysis)
        assert len(packed or ()) == 8, report  # with its signal, report and features
        back = unpack(pickle.loads(pickle.dumps(packed)), "BTCUSDT", START)
        assert back is not None and back.report == report and back.entry_features() == analysis.features
        assert back == analysis


def test_workers_start_only_for_a_long_enough_span_with_the_local_analyst() -> None:
    engine, spec = backtest_engine(fast_settings(), SYMBOLS, START, END)
    times = [START] * 100
    engine.workers, engine.ahead_blocks = 2, (50, 200)
    replay = dataclasses.replace(spec.config, analyzer="gemini")
    assert start_analyses_ahead(engine, replay, times) is None  # a replay may ask the live model: engine order
    assert start_analyses_ahead(engine, spec.config, times[:99]) is None  # under two blocks: not worth a fork
    engine.workers = 0
    assert start_analyses_ahead(engine, spec.config, times) is None


def test_blocks_grow_from_the_first_to_the_largest_and_shrink_again_at_the_end() -> None:
    bounds = block_bounds(1000, 16, 128)
    sizes = [stop - start for start, stop in bounds]
    assert bounds[0] == (0, 16) and bounds[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # contiguous, nothing skipped
    assert sizes[:4] == [16, 32, 64, 128] and max(sizes) == 128
    assert sizes[-1] <= 16 and sizes[-2] < 128
    assert block_bounds(10, 16, 128) == [(0, 10)] and block_bounds(0, 16, 128) == []


async def test_features_from_the_candle_store_cross_without_their_series() -> None:
    engine, spec = backtest_engine(fast_settings(), SYMBOLS, START, END)
    engine.clock.set(spec.start)
    features = await engine.bot.market_features("BTCUSDT", spec.start)
    data = pickle.dumps(features)
    assert len(data) < 20_000  # the 5m series alone is megabytes
    back = pickle.loads(data)
    assert back == features
    assert all(type(candles) is tuple and len(candles) == 5 for candles in back.recent.values())


async def test_while_shared_with_forks_a_window_crosses_as_a_reference_to_the_same_candles() -> None:
    engine, spec = backtest_engine(fast_settings(), SYMBOLS, START, END)
    engine.clock.set(spec.start)
    features = await engine.bot.market_features("BTCUSDT", spec.start)
    assert b"Candle" in pickle.dumps(features)
    with engine.candles.share_with_forks():
        data = pickle.dumps(features)
        back = pickle.loads(data)
    assert b"Candle" not in data  # no candle of the 15 travels
    assert back == features
    assert all(type(w) is CandleWindow and list(w) == list(features.recent[tf]) for tf, w in back.recent.items())
    with pytest.raises(pickle.UnpicklingError, match="does not share"):
        pickle.loads(data)  # sharing over: the reference means nothing any more


async def test_a_worker_that_dies_stops_the_backtest_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, spec = backtest_engine(fast_settings(), SYMBOLS, START, END)
    engine.workers, engine.ahead_blocks = 2, (20, 80)

    async def die(*_: object) -> list[PackedColumn]:
        os._exit(3)  # as the kernel's OOM killer would end it, without a word

    monkeypatch.setattr(ahead, "_columns", die)  # the forked workers inherit it
    with pytest.raises(WorkerFailed, match="--workers 0"):
        await run_backtest(engine, spec)
    assert engine.bot.ahead is None


def test_by_default_one_worker_per_core_and_none_on_a_single_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2})
    assert ahead.default_workers() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0})
    assert ahead.default_workers() == 0
    engine, spec = backtest_engine(fast_settings(), SYMBOLS, START, END)
    engine.workers, engine.ahead_blocks = None, (50, 200)
    assert start_analyses_ahead(engine, spec.config, [START] * 100) is None


async def test_blocks_the_engine_skips_are_dropped_and_later_ones_still_come_in_order() -> None:
    """A user left unreconciled for a while takes no analyses: the blocks it skipped must not reach a worker after
    later ones (its clock only moves forward)."""
    engine, spec = backtest_engine(fast_settings(), SYMBOLS, START, END)
    times = cycle_times(spec.start, spec.end, 300)
    ahead_ = WorkerAnalyses(engine, spec.config, times, workers=1, blocks=(20, 20))
    try:
        taken = [(i, ahead_.take("BTCUSDT", times[i])) for i in (0, 45, 65, 66, 130)]  # blocks 0, 2, 3, 3, 6
        with pytest.raises(RuntimeError, match="in order"):
            ahead_.take("BTCUSDT", times[30])
    finally:
        ahead_.close()
    for i, analysis in taken:
        engine.clock.set(times[i])
        assert analysis == unpack(pack(await engine.bot.analyse_symbol("BTCUSDT", "rules", times[i])), "BTCUSDT", times[i])


def test_the_values_an_answer_carries_come_back_equal_through_pickle() -> None:
    buy = Signal(SignalType.BUY, 80, Decimal("60123.45"), Decimal("59000"), Decimal("62000"), "trend long")
    report = AnalystReport(buy, "gemini", model="m", prompt="p", latency_ms=5, cost_usd=Decimal("0.001"), error="e")
    level = SupportResistance(59000.5, "support", 3, 0.61)
    regime = RegimeAnalysis("trending_up", True, "ADX 31", 31.2, 0.9)
    features = MarketFeatures("BTCUSDT", START, Decimal("60123.45"), {"5m": {"rsi": 51.0}}, regime, (level,), 61.25,
                              {"5m": ()})
    for value in (buy, report, level, regime, features):
        assert pickle.loads(pickle.dumps(value)) == value
