"""The analysis cache's two layers: the rules asked again over the kept views answer exactly what the live analysis
answers, for any rule settings; a trial with new rule thresholds reuses the month's features; a buy whose whole
features were not kept is analysed the live way."""

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.analysts.rules import RuleBasedAnalyzer, RuleSettings
from app.backtest.ahead import unpack
from app.backtest.runner import cycle_times
from app.domain.values import MarketFeatures, SignalType
from app.optimize import cache as cache_module
from app.optimize.cache import AnalysisCache, _analyse
from app.optimize.trial import run_settings
from tests.optimize.test_study import VALUES, base

START, END = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 4, tzinfo=UTC)
PERMISSIVE = RuleSettings(trend_adx=0, trend_min_confluence=0, range_min_confluence=0, rsi_low=0, rsi_high=100,
                          support_proximity_pct=100)
STRICT = RuleSettings(trend_adx=60, trend_min_confluence=90, range_min_confluence=95, rsi_low=55, rsi_high=60,
                      support_proximity_pct=0.1)


@pytest.fixture(scope="module")
def features() -> list[MarketFeatures]:
    """Every cycle's features over three days of the bundled sample, built by the live path."""
    trial = base(None, START, END)
    engine = trial.build_engine(*_engine_args(trial))
    engine.features.plan_until(END)

    async def build() -> list[MarketFeatures]:
        found = []
        for now in cycle_times(START, END, 300):
            engine.clock.set(now)
            f = await engine.bot.analysis.features_or_none("BTCUSDT", now)
            if f is not None:
                found.append(f)
        return found

    return asyncio.run(build())


def _engine_args(trial):  # the arguments run_settings gives the builder, with the default settings
    from app.backtest.command import build_settings
    from app.backtest.strategy import StrategyOverrides
    from app.domain.clock import SimulatedClock

    return build_settings(trial.options, {}), trial.candles, SimulatedClock(START), {}, StrategyOverrides.of({})


@pytest.mark.parametrize("rules", [RuleSettings(), PERMISSIVE, STRICT], ids=["default", "permissive", "strict"])
def test_the_rules_answer_the_same_from_their_view(features: list[MarketFeatures], rules: RuleSettings) -> None:
    analyst = RuleBasedAnalyzer(rules)
    answers = [(analyst.decide(f), analyst.decide(RuleBasedAnalyzer.view(f))) for f in features]
    assert all(whole == viewed for whole, viewed in answers)
    if rules is PERMISSIVE:  # the sample has buys to compare, and places where no settings buy
        assert any(whole.signal == SignalType.BUY for whole, _ in answers)
        assert any(not RuleBasedAnalyzer.could_buy(f) for f in features)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.builds(RuleSettings, trend_adx=st.floats(0, 60), trend_min_confluence=st.floats(0, 100),
                 range_min_confluence=st.floats(0, 100), rsi_low=st.floats(0, 100), rsi_high=st.floats(0, 100),
                 support_proximity_pct=st.floats(0, 100)))
def test_no_settings_buy_where_could_buy_says_none_can(features: list[MarketFeatures], rules: RuleSettings) -> None:
    analyst = RuleBasedAnalyzer(rules)
    for f in features:
        answer = analyst.decide(f)
        assert answer == analyst.decide(RuleBasedAnalyzer.view(f))
        if not RuleBasedAnalyzer.could_buy(f):
            assert answer.signal == SignalType.HOLD


def _live_answers(rules: dict) -> list:
    """The month's answers as a worker of app.backtest.ahead computes them (no cache), unpacked."""
    trial = base(None, START, END)
    args = list(_engine_args(trial))
    from app.backtest.strategy import StrategyOverrides

    args[4] = StrategyOverrides.of({"rule_analyst": rules})
    engine = trial.build_engine(*args)
    times = cycle_times(START, END, 300)
    return [_opened(p, now) for p, now in zip(asyncio.run(_analyse(engine, "BTCUSDT", "rules", times)), times,
                                               strict=True)]


def _opened(packed, now: datetime):
    analysis = unpack(packed, "BTCUSDT", now)
    return None if analysis is None else (dataclasses.replace(analysis, load_features=None),
                                          analysis.entry_features())


def _cached_answers(cache: AnalysisCache, rules: dict) -> list:
    run_settings(base(cache, START, END), {"rule_analyst": rules}, START, END)
    trial = base(cache, START, END)
    from app.backtest.command import build_config, build_settings
    from app.backtest.strategy import StrategyOverrides

    overrides = {"symbols": ["BTCUSDT"], "rule_analyst": rules}
    config = build_config(trial.options, build_settings(trial.options, overrides), overrides)
    kept = cache.analyses(lambda: None, trial.data_dir, build_settings(trial.options, overrides),  # all read: no build
                          StrategyOverrides.of(overrides), config, ("BTCUSDT",), START, END)
    return [_opened(kept._columns["BTCUSDT"][i], now) for i, now in enumerate(cycle_times(START, END, 300))]


def test_a_new_rule_threshold_reuses_the_features_and_answers_as_the_live_path(tmp_path: Path) -> None:
    cache = AnalysisCache(tmp_path / "cache")
    for number, rules in enumerate(({}, {"range_min_confluence": 40.0, "rsi_high": 80.0}), start=1):
        assert _cached_answers(cache, rules) == _live_answers(rules)
        assert (cache.misses, cache.market_misses) == (number, 1)  # the second set asked the rules only
    buys = [a for a in _live_answers({"range_min_confluence": 40.0, "rsi_high": 80.0}) if a and a[1] is not None]
    assert buys  # answers with features were compared
    run_settings(base(cache, START, END), {"sr_touch_threshold_pct": 0.3}, START, END)
    assert cache.market_misses == 2  # the features read the S/R touch threshold


def test_a_buy_without_kept_features_is_analysed_the_live_way(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache_module.RuleBasedAnalyzer, "could_buy", staticmethod(lambda _f: False))
    rules = {"range_min_confluence": 40.0, "rsi_high": 80.0}
    assert _cached_answers(AnalysisCache(tmp_path / "cache"), rules) == _live_answers(rules)


def test_trades_with_kept_features_equal_the_uncached_trades(tmp_path: Path) -> None:
    cache = AnalysisCache(tmp_path / "cache")
    loose = {**VALUES, "rule_analyst": {"range_min_confluence": 40.0, "rsi_high": 80.0}}
    run_settings(base(cache, START, END), VALUES, START, END)  # the features kept under other rule settings
    cached = run_settings(base(cache, START, END), loose, START, END)
    plain = run_settings(base(None, START, END), loose, START, END)
    assert cache.market_misses == 1
    assert cached.result.trades == plain.result.trades
    assert cached.result.decisions == plain.result.decisions
    assert plain.result.trades
