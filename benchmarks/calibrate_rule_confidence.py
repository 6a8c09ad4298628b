"""Calibrate the rule-based analyst's confidence on real candles and check out of sample what it is worth:

    PYTHONPATH=. python benchmarks/calibrate_rule_confidence.py --data ../shared/data
        [--symbols BTCUSDT,ETHUSDT,SOLUSDT] [--start 2023-01-08] [--end 2025-01-01] [--points 21]
        [--validate 2025-01-08:2026-01-01 --validate 2022-08-08:2023-01-01] [--write]
    PYTHONPATH=. python benchmarks/calibrate_rule_confidence.py --trades var/bt/trades.csv [...]

Replays every 5m cycle of the span through the backtest's own feature pipeline and the rule-based analyst, keeps
each confirmed setup (what would be a BUY) with its raw score, and prints the quantile breakpoints of the scores per
setup kind as the Python source of app/analysts/rule_confidence_table.py (`--write` writes that file). Then, for
the calibration span and each `--validate` span, every setup as a trade of its own (the risk manager's adaptive
stop and target, the edge test's fill model and timeout, one trade per setup, overlaps and limits ignored) grouped by
confidence band: count, win rate, mean net and gross P&L %. `--trades` prints the same bands for backtests' trades
(trades.csv, column `confidence`): run them with the threshold at its floor so that every setup may trade.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

from app.analysts.rule_confidence import (
    CONFIDENCE_SPREAD,
    LOWEST_CONFIDENCE,
    ConfidenceScale,
    SetupKind,
)
from app.analysts.rules import RuleBasedAnalyzer
from app.assembly import build_backtest_engine
from app.backtest.data import load_candles, plan_span
from app.backtest.exit_simulation import Entries, ExitModel, SymbolTape, simulate
from app.backtest.runner import cycle_times
from app.config import Settings
from app.domain.clock import SimulatedClock
from app.domain.values import Side
from app.marketdata.candles import CandleStore
from app.risk.manager import EXIT_ATR_TIMEFRAME, RiskManager

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
CALIBRATION_START, CALIBRATION_END = "2023-01-08", "2025-01-01"
POINTS = 21  # breakpoints per setup kind: every 5 %
BANDS = 5  # confidence bands of the figures: each a fifth of the calibration's setups (9 points of confidence)
TABLE = Path(__file__).resolve().parents[1] / "app" / "analysts" / "rule_confidence_table.py"


@dataclass(frozen=True, slots=True)
class ScoredSetup:
    symbol: str
    time: datetime
    kind: SetupKind
    score: float
    stop_distance: float  # the risk manager's adaptive exits, as fractions of the entry
    target_distance: float


@dataclass(frozen=True, slots=True)
class Span:
    candles: CandleStore
    symbols: tuple[str, ...]
    start: datetime  # first decision (after the warm-up)
    end: datetime  # last decision
    setups: list[ScoredSetup]


def _settings() -> Settings:
    return Settings(_env_file=None, jwt_secret="calibration-only-not-a-secret-0123456789")


async def scan(data: Path, symbols: Sequence[str], start: datetime, end: datetime) -> Span:
    """Every confirmed setup of every 5m cycle from `start` to `end`, as the backtest's analysis sees them."""
    settings = _settings()
    candles = load_candles(data, symbols, start, end)
    span = plan_span(candles, symbols, start, end)
    engine = build_backtest_engine(settings, candles, SimulatedClock(span.start))
    analyst, risk = RuleBasedAnalyzer(), RiskManager(settings.risk_limits())
    setups = []
    for now in cycle_times(span.start, span.end, settings.trading_interval_seconds):
        engine.clock.set(now)
        for symbol in symbols:
            features = await engine.bot.market_features(symbol, now)
            setup = analyst.setup_of(features)
            if setup is None:
                continue
            atr = features.indicators.get(EXIT_ATR_TIMEFRAME, {}).get("atr", 0.0)
            plan = risk.calculate_adaptive_risk_reward(Side.BUY, features.last_price, features.levels, atr, symbol)
            entry = features.last_price
            setups.append(ScoredSetup(symbol, now, setup.kind, setup.score, float((entry - plan.stop_loss) / entry),
                                      float((plan.take_profit - entry) / entry)))
    return Span(candles, tuple(symbols), span.start, span.end, setups)


def calibrate(span: Span, points: int = POINTS) -> ConfidenceScale:
    """The quantile breakpoints of the span's scores per setup kind, and where they came from."""
    scores = {kind: [s.score for s in span.setups if s.kind == kind] for kind in SetupKind}
    counts = ", ".join(f"{len(values):,} {kind}" for kind, values in scores.items())
    source = (f"{', '.join(span.symbols)} 5m, decisions {span.start:%Y-%m-%d %H:%M} to {span.end:%Y-%m-%d %H:%M} "
              f"UTC: {counts} setups")
    return ConfidenceScale.from_scores(scores, points, source)


def render(scale: ConfidenceScale) -> str:
    """The table module's source: what `--write` stores and the test compares the stored file with."""
    lines = [
        '"""The rule-based analyst\'s confidence calibration (generated by benchmarks/calibrate_rule_confidence.py'
        ' --write)."""',
        "",
        "from app.analysts.rule_confidence import ConfidenceScale, SetupKind",
        "",
        "RULE_CONFIDENCE = ConfidenceScale(",
        "    source=(",
        *(f'        "{part}"' for part in textwrap.wrap(scale.source, 90, drop_whitespace=False)),
        "    ),",
        "    breakpoints={",
    ]
    for kind, points in scale.breakpoints.items():
        lines.append(f"        SetupKind.{kind.name}: (")
        for first in range(0, len(points), 7):
            lines.append("            " + " ".join(f"{p!r}," for p in points[first:first + 7]))
        lines.append("        ),")
    lines += ["    },", ")", ""]
    return "\n".join(lines)


def setup_returns(span: Span, model: ExitModel) -> tuple[np.ndarray, np.ndarray]:
    """Each setup taken as a trade of its own: net and gross P&L % (in the span's setup order)."""
    net, gross = np.empty(len(span.setups)), np.empty(len(span.setups))
    for symbol in span.symbols:
        index = np.array([i for i, s in enumerate(span.setups) if s.symbol == symbol], dtype=int)
        if len(index) == 0:
            continue
        tape = SymbolTape.of(span.candles, symbol, span.start, span.end)
        chosen = [span.setups[i] for i in index]
        entries = Entries(np.array([tape.entry_row(s.time) for s in chosen]),
                          np.array([s.stop_distance for s in chosen]), np.array([s.target_distance for s in chosen]))
        returns = simulate(tape, entries, model)
        net[index], gross[index] = returns.net_pct, returns.gross_pct
    return net, gross


def band_of(confidence: int) -> int:
    width = CONFIDENCE_SPREAD / BANDS
    return min(int((confidence - LOWEST_CONFIDENCE) // width), BANDS - 1)


def band_label(band: int) -> str:
    width = CONFIDENCE_SPREAD / BANDS
    low = LOWEST_CONFIDENCE + band * width
    return f"{low:.0f}-{low + width - (0 if band == BANDS - 1 else 1):.0f}"


def band_table(confidences: Sequence[int], net: Sequence[float], gross: Sequence[float] | None = None) -> list[str]:
    """Per confidence band: count, win rate, mean net (and gross) P&L %."""
    header = f"  {'confidence':>10} {'count':>7} {'win %':>6} {'net %':>7}" + (f" {'gross %':>7}" if gross else "")
    lines = [header]
    bands = np.array([band_of(c) for c in confidences])
    net_a = np.asarray(net, dtype=float)
    gross_a = None if gross is None else np.asarray(gross, dtype=float)
    for band in range(BANDS):
        inside = bands == band
        count = int(inside.sum())
        if count == 0:
            lines.append(f"  {band_label(band):>10} {0:>7}")
            continue
        line = f"  {band_label(band):>10} {count:>7,} {100 * (net_a[inside] > 0).mean():>6.1f} {net_a[inside].mean():>+7.3f}"
        if gross_a is not None:
            line += f" {gross_a[inside].mean():>+7.3f}"
        lines.append(line)
    total = f"  {'all':>10} {len(net_a):>7,} {100 * (net_a > 0).mean():>6.1f} {net_a.mean():>+7.3f}"
    lines.append(total + (f" {gross_a.mean():>+7.3f}" if gross_a is not None else ""))
    return lines


def span_figures(span: Span, scale: ConfidenceScale, model: ExitModel) -> list[str]:
    net, gross = setup_returns(span, model)
    lines = []
    for kind in (None, *SetupKind):
        chosen = [i for i, s in enumerate(span.setups) if kind is None or s.kind == kind]
        if not chosen:
            continue
        confidences = [scale.confidence(span.setups[i].kind, span.setups[i].score) for i in chosen]
        lines.append(f" {'every' if kind is None else kind} setup")
        lines += band_table(confidences, net[chosen].tolist(), gross[chosen].tolist())
    return lines


def trades_figures(paths: Iterable[Path]) -> list[str]:
    """The bands of backtests' closed trades (trades.csv: `confidence`, `profit_loss_pct`)."""
    confidences, net = [], []
    for path in paths:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row["profit_loss_pct"]:
                    confidences.append(int(row["confidence"]))
                    net.append(float(Decimal(row["profit_loss_pct"])))
    return band_table(confidences, net)


def _date(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _span(text: str) -> tuple[datetime, datetime]:
    start, _, end = text.partition(":")
    return _date(start), _date(end)


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--symbols", default=",".join(SYMBOLS))
    parser.add_argument("--start", default=CALIBRATION_START, help="first decision day of the calibration span")
    parser.add_argument("--end", default=CALIBRATION_END, help="the calibration span ends before this day")
    parser.add_argument("--points", type=int, default=POINTS, help="breakpoints per setup kind")
    parser.add_argument("--validate", action="append", default=[], metavar="START:END",
                        help="an out-of-sample span to show the bands of (repeatable)")
    parser.add_argument("--write", action="store_true", help=f"write the table to {TABLE}")
    parser.add_argument("--trades", type=Path, nargs="+", help="print the bands of these trades.csv files only")
    return parser.parse_args(argv)


async def _calibrate(args: argparse.Namespace) -> int:
    symbols = tuple(args.symbols.split(","))
    settings = _settings()
    model = ExitModel.of(settings.sim_fee_rate, settings.sim_slippage_pct, settings.stop_limit_gap_pct,
                         settings.position_timeout_minutes)
    span = await scan(args.data, symbols, _date(args.start), _date(args.end))
    scale = calibrate(span, args.points)
    print(render(scale))
    if args.write:
        TABLE.write_text(render(scale))
        print(f"written to {TABLE}")
    print(f"calibration span (in sample), each setup as its own trade, net after {2 * settings.sim_fee_rate:%} fees:")
    print("\n".join(span_figures(span, scale, model)))
    for text in args.validate:
        start, end = _span(text)
        other = await scan(args.data, symbols, start, end)
        print(f"out of sample {other.start:%Y-%m-%d} to {other.end - timedelta(minutes=5):%Y-%m-%d}:")
        print("\n".join(span_figures(other, scale, model)))
    return 0


def main(argv: Sequence[str]) -> int:
    args = _arguments(argv)
    if args.trades:
        print("\n".join(trades_figures(args.trades)))
        return 0
    if args.data is None:
        print("--data DIR is needed (e.g. ../shared/data)", file=sys.stderr)
        return 2
    return asyncio.run(_calibrate(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
