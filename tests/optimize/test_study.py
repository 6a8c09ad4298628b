"""Studies over real backtests on the bundled sample: reproducible for a seed, cached analyses identical to
uncached ones, and the chosen settings accepted by `trdbot backtest --config` and by PUT /trading/config."""

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from app.assembly import build_backtest_engine
from app.backtest.command import BacktestOptions, read_config_file
from app.backtest.data import load_candles
from app.cli import main
from app.config import BUNDLED_DATA_DIR
from app.optimize.cache import AnalysisCache
from app.optimize.command import api_config, backtest_config
from app.optimize.space import config_of, read_space
from app.optimize.study import Objective, StudyOptions, run_study
from app.optimize.trial import TrialBase, run_settings
from app.user_config import ConfigUpdate

START, END = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 6, tzinfo=UTC)
SYMBOLS = ("BTCUSDT",)
VALUES = {"min_signal_confidence": 55, "rule_analyst": {"rsi_high": 75.0},
          "asset_profiles": {"BTC": {"atr_stop_multiplier": 1.5}}}


def base(cache: AnalysisCache | None = None, start: datetime = START, end: datetime = END) -> TrialBase:
    options = BacktestOptions(symbols=SYMBOLS, start=start, end=end, data=None, balance=Decimal(10000),
                              analyzer="rules", seed=42, config=None, out=None, quiet=True)
    candles = load_candles(BUNDLED_DATA_DIR, SYMBOLS, start, end)
    return TrialBase(options, {"symbols": list(SYMBOLS)}, candles, BUNDLED_DATA_DIR, build_backtest_engine, cache)


def test_a_study_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text("[min_signal_confidence]\nlow = 50\nhigh = 80\nstep = 5\n"
                     "[asset_profiles.BTC.atr_stop_multiplier]\nlow = 0.5\nhigh = 2.0\n")
    options = StudyOptions(trials=3, objective=Objective.NET_RETURN, min_trades=0, seed=7, jobs=1, storage=None,
                           name="t")
    trial_base = base(AnalysisCache(tmp_path / "cache"))
    runs = [run_study(trial_base, read_space(space), START, END, options) for _ in range(2)]
    first, second = ([(t.params, t.value) for t in study.trials] for study in runs)
    assert first == second
    assert runs[0].best_value == runs[1].best_value
    assert len({json.dumps(p, sort_keys=True) for p, _ in first}) > 1  # the sampler did move


def test_cached_analyses_give_the_uncached_trades(tmp_path: Path) -> None:
    cache = AnalysisCache(tmp_path / "cache")
    plain = run_settings(base(), VALUES, START, END)
    computed = run_settings(base(cache), VALUES, START, END)
    read = run_settings(base(cache), VALUES, START, END)
    assert (cache.misses, cache.hits) == (1, 1)
    for run in (computed, read):
        assert run.result.trades == plain.result.trades
        assert run.result.final_balance == plain.result.final_balance
        assert run.result.decisions == plain.result.decisions
    assert plain.result.trades  # something to compare


def test_analyses_cached_by_month_give_the_uncached_trades_across_months(tmp_path: Path) -> None:
    # the cache keeps each calendar month apart: a span over a month's end is two sets, each computed by an engine of
    # its own from the month's first cycle, and a span sharing a month with it reads that month
    cache = AnalysisCache(tmp_path / "cache")
    start, end = datetime(2025, 10, 29, tzinfo=UTC), datetime(2025, 11, 3, tzinfo=UTC)
    plain = run_settings(base(None, start, end), VALUES, start, end)
    cached = run_settings(base(cache, start, end), VALUES, start, end)
    assert (cache.misses, cache.hits) == (2, 0)
    assert cached.result.trades == plain.result.trades
    assert cached.result.decisions == plain.result.decisions
    assert cached.result.final_balance == plain.result.final_balance
    assert any(t.executed_at.month == 11 for t in plain.result.trades)  # trades on both sides of the cut
    assert any(t.executed_at.month == 10 for t in plain.result.trades)
    later_start = datetime(2025, 10, 30, tzinfo=UTC)
    later = run_settings(base(cache, start, end), VALUES, later_start, end)
    assert (cache.misses, cache.hits) == (3, 1)  # its October is new, its November the same as before
    assert later.result.trades == run_settings(base(None, start, end), VALUES, later_start, end).result.trades


def test_cache_key_changes_with_analysis_settings_and_data(tmp_path: Path) -> None:
    cache = AnalysisCache(tmp_path / "cache")
    run_settings(base(cache), VALUES, START, END)
    run_settings(base(cache), {**VALUES, "min_signal_confidence": 70}, START, END)  # engine-only: reused
    assert (cache.misses, cache.hits) == (1, 1)
    run_settings(base(cache), {**VALUES, "sr_touch_threshold_pct": 0.3}, START, END)  # analysis setting: new
    assert cache.misses == 2
    data = tmp_path / "data"
    data.mkdir()
    for f in BUNDLED_DATA_DIR.glob("*BTCUSDT*"):
        (data / f.name).write_bytes(f.read_bytes())
    (data / "exchange_info.json").write_text((BUNDLED_DATA_DIR / "exchange_info.json").read_text())
    moved = dataclasses.replace(base(cache), data_dir=data)
    run_settings(moved, VALUES, START, END)  # same content elsewhere: same key
    assert cache.misses == 2
    (data / "exchange_info.json").write_text((BUNDLED_DATA_DIR / "exchange_info.json").read_text() + " ")
    run_settings(moved, VALUES, START, END)  # content changed: computed again
    assert cache.misses == 3


def test_the_written_config_is_accepted_by_the_api_and_the_backtest(tmp_path: Path, capsys) -> None:
    chosen = config_of({p.name: p.high for p in read_space(None).params})
    api = api_config(chosen)
    assert set(api) <= set(ConfigUpdate.model_fields)
    ConfigUpdate.model_validate(api)
    full = tmp_path / "backtest_config.json"
    full.write_text(json.dumps(backtest_config(chosen, {})))
    assert read_config_file(full)["rule_analyst"]["rsi_high"] == 75.0
    api_file = tmp_path / "config.json"
    api_file.write_text(json.dumps(api))
    for path in (api_file, full):
        code = main(["backtest", "--symbols", "BTCUSDT", "--start", "2025-10-01", "--end", "2025-10-02",
                     "--config", str(path), "--quiet", "--workers", "0", "--edge-repetitions", "5"])
        assert code == 0, capsys.readouterr().err


def test_the_backtest_applies_the_strategy_sections(tmp_path: Path) -> None:
    # the tuned thresholds are read: an RSI band no 15m RSI reaches leaves no trade
    strict = {"rule_analyst": {"rsi_low": 99.0, "rsi_high": 99.5}}
    assert run_settings(base(), VALUES, START, END).result.trades
    assert not run_settings(base(), strict, START, END).result.trades
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"asset_profiles": {"BTC": {"atr_multiplier": 1}}}))
    assert main(["backtest", "--symbols", "BTCUSDT", "--config", str(bad), "--quiet"]) == 2
