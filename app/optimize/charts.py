"""The optimisation report's charts (history, parameter importance, in- vs out-of-sample equity) and report.html."""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import optuna

from app.backtest.charts import _img
from app.backtest.runner import BacktestResult

if TYPE_CHECKING:
    from app.optimize.command import WindowOutcome

READING = (
    "<p><b>PBO</b> (probability of backtest overfitting, CSCV): the trials' daily returns are cut into 16 blocks; "
    "for every choice of half the blocks, the trial best on that half is ranked among all trials on the other half. "
    "PBO is the share of choices where it ranks in the lower half. Near 0: the in-sample winner keeps winning; "
    "about 0.5: its rank out of sample is a coin toss (the search found noise); near 1: the search picks what "
    "fails. <b>DSR</b> (deflated Sharpe ratio): the probability that the chosen trial's true Sharpe ratio is above "
    "zero once the best of this many trials is expected to look good by luck (SR0, from their number and the "
    "variance of their Sharpe ratios), with its skewness, kurtosis and length. Below 0.95 the selection is not "
    "significant.</p>")


def history_chart(outcomes: Sequence[WindowOutcome], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 4))
    for o in outcomes:
        done = [t for t in o.study.get_trials(deepcopy=False) if t.value is not None]
        if done:
            numbers, values = [t.number for t in done], [float(t.value) for t in done]  # type: ignore[arg-type]
            best = [max(values[: i + 1]) for i in range(len(values))]
            line = ax.plot(numbers, best, linewidth=1.2, label=f"window {o.window.index + 1} best")
            ax.scatter(numbers, values, s=8, color=line[0].get_color(), alpha=0.5)
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.set_title("Optimisation history (complete trials; pruned ones have no value)")
    ax.grid(alpha=0.3)
    if len(outcomes) <= 12:
        ax.legend(fontsize=7)
    return _save(fig, path)


def importances(study: optuna.Study) -> dict[str, float]:
    """fANOVA when scikit-learn is installed, else PED-ANOVA (needs neither); empty when too few trials."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    evaluators: list[Any] = []
    try:
        import sklearn  # type: ignore[import-not-found]  # noqa: F401

        evaluators.append(optuna.importance.FanovaImportanceEvaluator(seed=0))
    except ImportError:
        pass
    with warnings.catch_warnings():  # experimental in optuna 4
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        evaluators.append(optuna.importance.PedAnovaImportanceEvaluator())
    for evaluator in evaluators:
        try:
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
    return {}


def importance_chart(outcomes: Sequence[WindowOutcome], path: Path) -> Path | None:
    totals: dict[str, float] = {}
    for o in outcomes:
        for name, value in importances(o.study).items():
            totals[name] = totals.get(name, 0.0) + value / len(outcomes)
    if not totals:
        return None
    names = sorted(totals, key=totals.get)  # type: ignore[arg-type]
    fig, ax = plt.subplots(figsize=(11, max(3, 0.3 * len(names) + 1)))
    ax.barh(names, [totals[n] for n in names], color="tab:blue")
    ax.set_title("Parameter importance (mean over windows)")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def equity_chart(outcomes: Sequence[WindowOutcome], oos: BacktestResult | None, path: Path) -> Path:
    """Each window's chosen trial in sample (growth of 1, dashed) and the stitched out-of-sample equity."""
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for o in outcomes:
        if o.best is None:
            continue
        returns = o.study.best_trial.user_attrs.get("daily_returns") or []
        growth, times = [1.0], [o.window.train_start]
        for i, r in enumerate(returns, start=1):
            growth.append(growth[-1] * (1 + r))
            times.append(o.window.train_start + timedelta(days=i))
        ax.plot(times, growth,  # type: ignore[arg-type]
                linestyle="--", linewidth=0.9, alpha=0.8)
    if oos is not None:
        start = float(oos.spec.balance)
        ax.plot([t for t, _ in oos.equity],  # type: ignore[arg-type]
                [float(v) / start for _, v in oos.equity], color="black", linewidth=1.6,
                label="out of sample (stitched)")
        ax.legend()
    ax.set_ylabel("growth of 1")
    ax.set_title("In sample (each window's chosen trial, dashed) and out of sample")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_optimize_charts(outcomes: Sequence[WindowOutcome], oos: BacktestResult | None, out: Path) -> list[Path]:
    charts = [history_chart(outcomes, out / "history.png"), importance_chart(outcomes, out / "importance.png"),
              equity_chart(outcomes, oos, out / "equity.png")]
    return [c for c in charts if c is not None]


def write_optimize_html(report: Mapping[str, Any], charts: Sequence[Path], path: Path) -> Path:
    from app.optimize.command import summary

    sections = [f"<h1>TRD Bot optimisation</h1><pre>{html.escape(summary(report))}</pre>", READING,
                "<h2>Charts</h2>" + "".join(_img(p) for p in charts),
                f"<h2>report.json</h2><pre>{html.escape(json.dumps(report, indent=2, default=str))}</pre>"]
    style = "body{font-family:sans-serif;max-width:1150px;margin:auto}img{max-width:100%}"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>TRD Bot optimisation</title>"
                    f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n")
    return path
