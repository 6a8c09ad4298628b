"""Backtest charts (equity and drawdown, price with entries and exits) as PNG, and the self-contained report.html."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from app.backtest.report import drawdown_series, entries_by_hour, exit_label, summary_text
from app.backtest.runner import BacktestResult
from app.domain.clock import ms_from_utc
from app.domain.values import Timeframe
from app.marketdata.candles import CandleStore

EXIT_COLOURS = {"TAKE_PROFIT": "tab:green", "STOP_LOSS": "tab:red", "TIMEOUT": "tab:orange"}


def equity_chart(result: BacktestResult, path: Path) -> Path:
    times = [t for t, _ in result.equity]
    values = [float(v) for _, v in result.equity]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=(3, 1))
    top.plot(times, values, color="tab:blue", linewidth=1)
    top.set_ylabel("equity (USDT)")
    top.set_title("Equity (marked to market hourly)")
    top.grid(alpha=0.3)
    bottom.fill_between(times, [-d for d in drawdown_series(result.equity)], color="tab:red", alpha=0.4)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def price_chart(result: BacktestResult, candles: CandleStore, symbol: str, path: Path) -> Path:
    spec = result.spec
    arrays = candles.arrays_between(symbol, Timeframe.H1, ms_from_utc(spec.start), ms_from_utc(spec.end))
    times = arrays.open_time_ms.astype("datetime64[ms]")
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.plot(times, arrays.close, color="0.35", linewidth=0.8, label=f"{symbol} 1h close")
    trades = [t for t in result.trades if t.symbol == symbol]
    ax.scatter([np.datetime64(t.executed_at.replace(tzinfo=None), "ms") for t in trades],
               [float(t.price) for t in trades], marker="^", color="tab:blue", s=28, label="entry", zorder=3)
    for label, colour in (*EXIT_COLOURS.items(), ("other", "tab:purple")):
        done = [t for t in trades if t.closed_at and _colour_key(exit_label(t, result.closed_at_end)) == label]
        if done:
            ax.scatter([np.datetime64(t.closed_at.replace(tzinfo=None), "ms") for t in done if t.closed_at],
                       [float(t.exit_price or 0) for t in done], marker="v", color=colour, s=28,
                       label=f"exit {label.lower()}", zorder=3)
    ax.set_title(f"{symbol}: entries and exits")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _colour_key(label: str) -> str:
    return label if label in EXIT_COLOURS else "other"


def edge_chart(edge: Mapping[str, Any], path: Path) -> Path:
    """The random entries' mean net P&L per trade, one per repetition, and where the run's entries fall."""
    fig, ax = plt.subplots(figsize=(11, 4))
    draws = edge["random"]["net_pct_by_repetition"]
    ax.hist(draws, bins=min(40, max(10, len(draws) // 5)), color="0.6", label=f"{len(draws)} sets of random entries")
    ax.axvline(edge["strategy"]["net_pct_per_trade"], color="tab:blue", linewidth=2, label="the run's entries")
    ax.set_xlabel("mean net P&L per trade (%)")
    ax.set_ylabel("sets")
    ax.set_title(f"Edge test: {edge['statement']}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def hours_chart(result: BacktestResult, path: Path) -> Path:
    """Entries per hour of the UTC day: a budget spent at midnight shows as one tall bar."""
    counts = entries_by_hour(result.trades)
    fig, ax = plt.subplots(figsize=(11, 2.8))
    ax.bar(range(24), counts, color="tab:blue")
    ax.set_xticks(range(24))
    ax.set_xlabel("hour of entry (UTC)")
    ax.set_ylabel("entries")
    ax.set_title(f"Entries by hour of day ({sum(counts)} in all)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_charts(result: BacktestResult, candles: CandleStore, out: Path,
                 edge: Mapping[str, Any] | None = None) -> list[Path]:
    paths = [equity_chart(result, out / "equity.png"), hours_chart(result, out / "entries_by_hour.png")]
    if edge is not None and "random" in edge:
        paths.append(edge_chart(edge, out / "edge.png"))
    traded = {t.symbol for t in result.trades}
    for symbol in [s for s in result.spec.symbols if s in traded or s in result.spec.config.symbols]:
        paths.append(price_chart(result, candles, symbol, out / f"price_{symbol}.png"))
    return paths


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(rows: Mapping[str, Mapping[str, Any]], title: str) -> str:
    if not rows:
        return ""
    columns = list(next(iter(rows.values())).keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [title, *columns])
    body = "".join(
        "<tr>" + f"<td>{html.escape(k)}</td>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in columns) + "</tr>"
        for k, r in rows.items()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _counts(counts: Mapping[str, int], title: str) -> str:
    return _table({k: {"count": v} for k, v in counts.items()}, title)


EDGE_HELP = (
    "Each set of random entries takes every trade of the run to another cycle of the same symbol (all by one seeded "
    "random shift, so their pattern stays) with the trade's own stop and target distances, and runs it through the "
    "same exits, fees and slippage. <b>Entries add</b> is the run's mean net P&amp;L per trade less the random sets' "
    "average; <b>percentile</b> the share of random sets the run beat; <b>p</b> the chance that entries with no "
    "edge do as well (below 0.05: unlikely to be luck). Gross is before fees. Buy and hold at the run's exposure "
    "is what holding the symbols with only the share of equity the run kept in positions would have made."
)


def _edge_section(edge: Mapping[str, Any] | None) -> str:
    if edge is None:
        return ""
    rows: dict[str, dict[str, Any]] = {}
    for label, key in (("the run's entries (replayed)", "strategy"), ("random entries (average)", "random"),
                       ("the run's trades as booked", "booked")):
        if key in edge:
            rows[label] = {"net % per trade": edge[key]["net_pct_per_trade"],
                           "gross % per trade": edge[key]["gross_pct_per_trade"]}
    exposure = {"exposure %": edge["exposure_pct"], "buy and hold at that exposure %": edge["buy_and_hold_at_exposure_pct"],
                "buy and hold %": edge["buy_and_hold_pct"]}
    return (f"<h2>Edge test</h2><p><b>{html.escape(edge['statement'])}</b></p>{_table(rows, 'per trade')}"
            f"{_table({'run': exposure}, '')}<p>{EDGE_HELP}</p>")


def write_html(report: Mapping[str, Any], charts: Sequence[Path], path: Path) -> Path:
    """One file with everything inline (PNGs as base64), so it can be mailed or archived on its own."""
    sections = [
        f"<h1>TRD Bot backtest</h1><pre>{html.escape(summary_text(report))}</pre>",
        _edge_section(report.get("edge")),
        "<h2>Charts</h2>" + "".join(_img(p) for p in charts),
        "<h2>Exit reasons</h2>" + _table(report["exit_reasons"], "exit reason"),
        "<h2>Per symbol</h2>" + _table(report["per_symbol"], "symbol"),
        "<h2>Rejected signals</h2>" + _counts(report["rejected_signals"], "reason"),
        "<h2>Skipped signals</h2>" + _counts(report["skipped_signals"], "reason"),
        f"<h2>report.json</h2><pre>{html.escape(json.dumps(report, indent=2))}</pre>",
    ]
    style = ("body{font-family:sans-serif;max-width:1150px;margin:auto}img{max-width:100%}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>TRD Bot backtest</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n")
    path.write_text(page)
    return path
