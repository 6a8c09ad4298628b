"""`trdbot optimize`: a study per span (or per walk-forward window), the chosen settings tested on the next window,
the out-of-sample runs stitched, overfitting statistics, and the report files."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from app.backtest.command import (
    CONFIG_FIELDS,
    BacktestOptions,
    BacktestUsageError,
    EngineBuilder,
    build_settings,
    exit_model,
    read_config_file,
)
from app.backtest.data import load_candles
from app.backtest.edge import edge_report
from app.backtest.report import build_report
from app.backtest.runner import BacktestResult
from app.domain.records import TradeRecord
from app.optimize.cache import AnalysisCache
from app.optimize.overfitting import deflated_sharpe, probability_of_overfitting, sharpe_of
from app.optimize.space import SearchSpace, config_of, read_space
from app.optimize.study import METRICS, StudyOptions, run_study
from app.optimize.trial import TrialBase, TrialRun, merged, run_settings
from app.optimize.windows import Length, Window, walk_forward_windows
from app.user_config import ConfigUpdate


@dataclass(frozen=True, slots=True)
class OptimizeOptions:
    backtest: BacktestOptions  # symbols, start, end, data, balance, seed, config, out, quiet
    space: Path | None
    study: StudyOptions
    walk_forward: tuple[Length, Length] | None
    anchored: bool
    cache: Path | None  # None: no analysis cache


@dataclass(slots=True)
class WindowOutcome:
    window: Window
    study: optuna.Study
    best: dict[str, float] | None  # the chosen values (None: no trial met --min-trades)
    in_sample: dict[str, Any]
    out_of_sample: TrialRun | None
    pbo: dict[str, Any] | None
    dsr: dict[str, Any] | None


def run_optimize(options: OptimizeOptions, build_engine: EngineBuilder) -> int:
    bt = options.backtest
    if not bt.symbols or bt.start is None or bt.end is None:
        raise BacktestUsageError("optimize needs --symbols (named pairs), --start and --end")
    space = read_space(options.space).for_symbols(bt.symbols)
    if space.unused and not bt.quiet:
        print(f"not tuned (no symbol of the study trades under these profiles): {', '.join(space.unused)}",
              file=sys.stderr)
    overrides = read_config_file(bt.config) if bt.config else {}
    directory = bt.data or build_settings(bt, overrides).data_dir
    candles = load_candles(directory, bt.symbols, bt.start, bt.end)
    cache = AnalysisCache(options.cache) if options.cache else None
    base = TrialBase(bt, {**overrides, "symbols": list(bt.symbols)}, candles, directory, build_engine, cache)
    windows = _windows(options)
    outcomes = [_optimise_window(base, space, w, options, len(windows)) for w in windows]
    oos = stitched(outcomes)
    report = build_optimize_report(options, space, base, outcomes, oos)
    print(summary(report))
    if bt.out is not None:
        write_optimize_outputs(bt.out, report, outcomes, oos, base)
        print(f"  report           {bt.out}/report.html")
    return 0


def _windows(options: OptimizeOptions) -> list[Window]:
    bt = options.backtest
    assert bt.start is not None and bt.end is not None
    if options.walk_forward is None:
        return [Window(0, bt.start, bt.end, bt.end)]  # one span, no test window
    return walk_forward_windows(bt.start, bt.end, *options.walk_forward, anchored=options.anchored)


def _optimise_window(base: TrialBase, space: SearchSpace, window: Window, options: OptimizeOptions,
                     count: int) -> WindowOutcome:
    name = options.study.name if count == 1 else f"{options.study.name}-w{window.index}"
    study_options = dataclasses.replace(options.study, name=name, seed=options.study.seed + window.index)
    label = f"window {window.index + 1}/{count} train {window.train_start:%Y-%m-%d}..{window.train_end:%Y-%m-%d}"
    with _progress(options.backtest.quiet, options.study.trials, label) as tick:
        study = run_study(base, space, window.train_start, window.train_end, study_options, tick)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return WindowOutcome(window, study, None, {}, None, None, None)
    best_trial = study.best_trial
    best = {k: float(v) for k, v in best_trial.params.items()}
    test = None
    if window.test_end > window.test_start:
        test = run_settings(base, config_of(best), window.test_start, window.test_end)
    return WindowOutcome(window, study, best, dict(best_trial.user_attrs["metrics"]), test, _pbo(complete),
                         _dsr(best_trial, complete))


class _progress:
    """The backtest's progress bar (tqdm on stderr), here counting trials; nothing with --quiet."""

    def __init__(self, quiet: bool, total: int, label: str) -> None:
        self._quiet, self._total, self._label = quiet, total, label
        self._bar: Any = None

    def __enter__(self) -> Callable[[int], None] | None:
        if self._quiet:
            return None
        from tqdm import tqdm

        self._bar = tqdm(total=self._total, unit="trial", file=sys.stderr, dynamic_ncols=True, desc=self._label)
        return self._bar.update

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _returns_matrix(trials: Sequence[optuna.trial.FrozenTrial]) -> np.ndarray | None:
    """Per-day returns of every complete trial, one column each (cut to the shortest)."""
    columns = [t.user_attrs.get("daily_returns") or [] for t in trials]
    length = min((len(c) for c in columns), default=0)
    if len(columns) < 2 or length < 2:
        return None
    return np.array([c[:length] for c in columns]).T


def _pbo(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, Any] | None:
    matrix = _returns_matrix(trials)
    if matrix is None:
        return None
    found = probability_of_overfitting(matrix)
    return {"pbo": round(found.pbo, 4), "splits": found.splits, "blocks": found.blocks, "trials": matrix.shape[1],
            "periods": matrix.shape[0], "median_logit": round(float(np.median(found.logits)), 4)}


def _dsr(best: optuna.trial.FrozenTrial, trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, Any]:
    sharpes = [sharpe_of(t.user_attrs.get("daily_returns") or []) for t in trials]
    found = deflated_sharpe(best.user_attrs.get("daily_returns") or [], sharpes)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in dataclasses.asdict(found).items()}


# ---- stitching and the report ----------------------------------------------------------------------------------


def stitched(outcomes: Sequence[WindowOutcome]) -> BacktestResult | None:
    """The test windows' runs as one: each window's equity continues from where the previous one ended."""
    runs = [o.out_of_sample.result for o in outcomes if o.out_of_sample is not None]
    if not runs:
        return None
    balance = runs[0].spec.balance
    scale = Decimal(1)
    equity: list[tuple[datetime, Decimal]] = []
    trades: list[TradeRecord] = []
    closed: list[int] = []
    next_id = 1
    for run in runs:
        equity.extend((when, value * scale) for when, value in run.equity)
        renumber = {}
        for trade in run.trades:
            renumber[trade.id] = next_id
            trades.append(dataclasses.replace(trade, id=next_id))
            next_id += 1
        closed.extend(renumber[t] for t in run.closed_at_end if t in renumber)
        scale *= run.final_balance / balance
    spec = dataclasses.replace(runs[0].spec, start=runs[0].spec.start, end=runs[-1].spec.end)
    return BacktestResult(spec=spec, cycles=sum(r.cycles for r in runs), trades=trades, equity=equity,
                          final_balance=balance * scale, closed_at_end=tuple(closed))


def build_optimize_report(options: OptimizeOptions, space: SearchSpace, base: TrialBase,
                          outcomes: Sequence[WindowOutcome], oos: BacktestResult | None) -> dict[str, Any]:
    """`oos`: the windows' out-of-sample runs stitched (`stitched(outcomes)`)."""
    bt = options.backtest
    overall = None
    if oos is not None:
        settings = build_settings(bt, base.overrides)
        last = outcomes[-1].out_of_sample
        assert last is not None
        extra = {"edge": edge_report(oos, base.candles, exit_model(settings, last.result.spec.config), bt.seed,
                                     bt.edge_repetitions)}
        overall = build_report(oos, base.candles, extra)
    chosen = next((o.best for o in reversed(outcomes) if o.best is not None), None)
    stored = None if base.cache is None else base.cache.stored()
    return {
        "symbols": list(bt.symbols or ()), "start": bt.start.isoformat() if bt.start else None,
        "end": bt.end.isoformat() if bt.end else None, "seed": bt.seed,
        "objective": options.study.objective.value, "min_trades": options.study.min_trades,
        "trials_per_window": options.study.trials, "space": space.source, "space_params": space.names(),
        "space_unused": list(space.unused),
        "walk_forward": None if options.walk_forward is None else {
            "train": str(options.walk_forward[0]), "test": str(options.walk_forward[1]), "anchored": options.anchored},
        "windows": [_window_row(o) for o in outcomes],
        "in_sample_mean": _mean_metrics([o.in_sample for o in outcomes if o.in_sample]),
        "out_of_sample": None if overall is None else {k: overall.get(k) for k in (*METRICS, "edge", "final_balance")},
        "chosen_settings": None if chosen is None else config_of(chosen),
        "analysis_cache": None if base.cache is None else {
            "computed": (stored or 0) - base.cache.stored_at_start, "stored": stored,
            "directory": str(base.cache.directory)},
    }


def _window_row(o: WindowOutcome) -> dict[str, Any]:
    w = o.window
    states = [t.state.name for t in o.study.get_trials(deepcopy=False)]
    oos = o.out_of_sample
    return {
        "index": w.index, "train": [w.train_start.isoformat(), w.train_end.isoformat()],
        "test": None if w.test_end <= w.test_start else [w.test_start.isoformat(), w.test_end.isoformat()],
        "trials": {s: states.count(s) for s in sorted(set(states))},
        "best_value": o.study.best_value if o.best is not None else None, "best_params": o.best,
        "in_sample": o.in_sample, "out_of_sample": None if oos is None else {k: oos.report[k] for k in METRICS},
        "pbo": o.pbo, "deflated_sharpe": o.dsr,
    }


def _mean_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in METRICS:
        values = [float(r[key]) for r in rows if r.get(key) is not None]
        out[key] = round(sum(values) / len(values), 3) if values else None
    return out


def api_config(chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The part PUT /trading/config accepts (ConfigUpdate's fields), validated by it."""
    fields = {k: (str(v) if isinstance(v, float) else v) for k, v in chosen.items() if k in ConfigUpdate.model_fields}
    return ConfigUpdate.model_validate(fields).model_dump(mode="json", exclude_none=True)


def backtest_config(chosen: Mapping[str, Any], base_overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Everything `trdbot backtest --config` needs to rerun the chosen settings (the base --config beneath)."""
    values = merged(base_overrides, chosen)
    return {k: (str(v) if isinstance(v, float) and k in CONFIG_FIELDS else v) for k, v in values.items()}


def summary(report: Mapping[str, Any]) -> str:
    lines = [f"Optimise {', '.join(report['symbols'])}  {report['start'][:10]} -> {report['end'][:10]}  "
             f"objective {report['objective']} (min {report['min_trades']} trades), "
             f"{report['trials_per_window']} trials per window"]
    lines.append("  window  train                  test                   IS value  IS ret %  OOS ret %  OOS sharpe"
                 "  trades  PBO    DSR")
    for row in report["windows"]:
        oos = row["out_of_sample"] or {}
        test = row["test"] or ["", ""]
        lines.append(f"  {row['index'] + 1:>6}  {row['train'][0][:10]}..{row['train'][1][:10]}  "
                     f"{test[0][:10]}..{test[1][:10]}  {_f(row['best_value']):>8}  "
                     f"{_f(row['in_sample'].get('total_return_pct')):>8}  {_f(oos.get('total_return_pct')):>9}  "
                     f"{_f(oos.get('sharpe')):>10}  {_f(oos.get('trades')):>6}  "
                     f"{_f((row['pbo'] or {}).get('pbo')):>5}  {_f((row['deflated_sharpe'] or {}).get('dsr')):>5}")
    ins, oos = report["in_sample_mean"], report["out_of_sample"]
    lines.append(f"  in-sample (mean of windows): return {_f(ins.get('total_return_pct'))} %, sharpe "
                 f"{_f(ins.get('sharpe'))}, trades {_f(ins.get('trades'))}")
    if oos:
        lines.append(f"  out-of-sample (stitched):    return {_f(oos['total_return_pct'])} %, sharpe "
                     f"{_f(oos['sharpe'])}, trades {oos['trades']}, max drawdown {_f(oos['max_drawdown_pct'])} %")
        edge = oos.get("edge") or {}
        if edge.get("entries_add_pct_per_trade") is not None:
            lines.append(f"  edge test (OOS trades):      entries add {edge['entries_add_pct_per_trade']:+.3f} % per trade "
                         f"(percentile {edge.get('percentile')}, p = {edge.get('p_value')})")
    if report.get("analysis_cache"):
        cache = report["analysis_cache"]
        lines.append(f"  analysis cache               {cache['computed']} analysis sets computed by this run, "
                     f"{cache['stored']} in {cache['directory']}")
    return "\n".join(lines)


def _f(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_optimize_outputs(out: Path, report: Mapping[str, Any], outcomes: Sequence[WindowOutcome],
                           oos: BacktestResult | None, base: TrialBase) -> None:
    from app.optimize.charts import write_optimize_charts, write_optimize_html

    out.mkdir(parents=True, exist_ok=True)
    chosen = report.get("chosen_settings")
    if chosen is not None:
        (out / "config.json").write_text(json.dumps(api_config(chosen), indent=2) + "\n")
        (out / "backtest_config.json").write_text(json.dumps(backtest_config(chosen, _base_only(base)), indent=2)
                                                  + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    charts = write_optimize_charts(outcomes, oos, out)
    write_optimize_html(report, charts, out / "report.html")


def _base_only(base: TrialBase) -> dict[str, Any]:
    return {k: v for k, v in base.overrides.items() if k != "symbols"}

