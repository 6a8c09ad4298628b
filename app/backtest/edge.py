"""The edge test: the run's entries against as many entries at seeded random cycles, with the same exits and costs.

Each repetition moves every trade of the run to a random cycle on the same symbol, keeping its stop and target
distances: all entries of a repetition are rotated by one seeded random offset (wrapping round the span), so the
random entries keep the run's pattern (one position per symbol at a time, entries of several symbols at the same
hour) and only their timing against the prices changes. Drawing each cycle on its own instead spreads the random
means wider than the run's, and p comes out too large (80 one-week runs of a random analyst: the spread of the
run's z-score against the random means was 0.81 for independent draws, 0.92 for the rotation, 1 being exact).
The random entries and the run's own go through the same exit model (app/backtest/exit_simulation.py), so both
are measured alike (the books' rounding and dust play no part). The statistic is the mean net return per trade;
p is one-sided, (1 + repetitions at least as good) / (1 + repetitions): small when the entries beat chance.
Floats throughout: this is a statistic, not money."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.backtest.exit_simulation import Entries, ExitModel, Returns, SymbolTape, simulate
from app.backtest.report import buy_and_hold
from app.backtest.runner import BacktestResult
from app.domain.records import TradeRecord
from app.domain.values import TradeStatus
from app.marketdata.candles import CandleStore

EDGE_REPETITIONS = 200


@dataclass(frozen=True, slots=True)
class PlannedTrade:
    """A trade of the run as the edge test replays it: where it entered and its exit distances (fractions)."""

    symbol: str
    row: int
    stop_distance: float
    target_distance: float


@dataclass(frozen=True, slots=True)
class EdgeTest:
    strategy: Returns  # the run's own entries, one value per trade
    random_gross_pct: np.ndarray  # mean per trade, one value per repetition
    random_net_pct: np.ndarray

    @property
    def strategy_net_pct(self) -> float:
        return float(self.strategy.net_pct.mean())

    @property
    def p_value(self) -> float:
        at_least = int((self.random_net_pct >= self.strategy_net_pct).sum())
        return (1 + at_least) / (1 + len(self.random_net_pct))

    @property
    def percentile(self) -> float:
        """The share of repetitions (in %) the run's entries beat; ties count half."""
        below = (self.random_net_pct < self.strategy_net_pct).sum()
        ties = (self.random_net_pct == self.strategy_net_pct).sum()
        return float((below + ties / 2) * 100 / len(self.random_net_pct))


def run_edge_test(trades: Sequence[PlannedTrade], tapes: Mapping[str, SymbolTape], model: ExitModel, seed: int,
                  repetitions: int = EDGE_REPETITIONS) -> EdgeTest:
    """The run's trades and `repetitions` sets of random entries through the same exits (deterministic per seed)."""
    offsets = np.random.default_rng(seed).random(repetitions)  # of each symbol's span, one per repetition
    strategy = Returns(np.empty(len(trades)), np.empty(len(trades)))
    gross, net = np.empty((repetitions, len(trades))), np.empty((repetitions, len(trades)))
    for symbol, tape in tapes.items():
        columns = np.array([k for k, t in enumerate(trades) if t.symbol == symbol], dtype=np.int64)
        if len(columns) == 0:
            continue
        planned = [trades[k] for k in columns]
        own_rows = np.array([t.row for t in planned], dtype=np.int64)
        own = simulate(tape, _entries(planned, own_rows[None, :]), model)
        strategy.gross_pct[columns], strategy.net_pct[columns] = own.gross_pct, own.net_pct
        rows = (own_rows[None, :] + (offsets[:, None] * len(tape)).astype(np.int64)) % len(tape)
        drawn = simulate(tape, _entries(planned, rows), model)
        gross[:, columns] = drawn.gross_pct.reshape(rows.shape)
        net[:, columns] = drawn.net_pct.reshape(rows.shape)
    return EdgeTest(strategy, gross.mean(axis=1), net.mean(axis=1))


def _entries(trades: Sequence[PlannedTrade], rows: np.ndarray) -> Entries:
    """Entries at `rows` (sets x trades) with the trades' stop and target distances."""
    stops = np.array([t.stop_distance for t in trades])
    targets = np.array([t.target_distance for t in trades])
    return Entries(rows.ravel(), np.tile(stops, rows.shape[0]), np.tile(targets, rows.shape[0]))


# ---- from a backtest ------------------------------------------------------------------------------------------


def closed_trades(result: BacktestResult) -> list[TradeRecord]:
    closed = [t for t in result.trades if t.status == TradeStatus.CLOSED and t.profit_loss is not None]
    return sorted(closed, key=lambda t: (t.executed_at, t.id))


def planned_trades(trades: Sequence[TradeRecord], tapes: Mapping[str, SymbolTape]) -> list[PlannedTrade]:
    planned = []
    for t in trades:
        row = tapes[t.symbol].entry_row(t.executed_at)
        if row >= 0 and t.price > 0:
            planned.append(PlannedTrade(t.symbol, row, float(1 - t.stop_loss / t.price),
                                        float(t.take_profit / t.price - 1)))
    return planned


def edge_report(result: BacktestResult, candles: CandleStore, model: ExitModel, seed: int,
                repetitions: int = EDGE_REPETITIONS) -> dict[str, Any]:
    """The report's `edge` object: the test, gross beside net, and buy-and-hold at the run's exposure."""
    spec = result.spec
    trades = closed_trades(result)
    tapes = {s: SymbolTape.of(candles, s, spec.start, spec.end) for s in sorted({t.symbol for t in trades})}
    planned = planned_trades(trades, tapes)
    exposure = average_exposure(result)
    held = buy_and_hold(candles, spec.symbols, spec.start, spec.end)["mean"]
    figures = (_test_figures(run_edge_test(planned, tapes, model, seed, repetitions)) if planned
               else {"statement": "no closed trades: nothing to test"})
    return {
        **figures, "trades": len(planned), "repetitions": repetitions, "seed": seed, "booked": _booked(trades),
        "exposure_pct": round(exposure * 100, 3), "buy_and_hold_pct": held,
        "buy_and_hold_at_exposure_pct": round(held * exposure, 3),
        "model": {"fee_rate": model.fee_rate, "slippage_pct": round(model.slippage * 100, 6),
                  "stop_limit_gap_pct": round(model.stop_limit_gap * 100, 6),
                  "position_timeout_minutes": model.timeout_ms // 60_000},
    }


def _test_figures(test: EdgeTest) -> dict[str, Any]:
    added = test.strategy_net_pct - float(test.random_net_pct.mean())
    percentile, p = test.percentile, test.p_value
    return {
        "statement": f"entries add {added:+.3f} % per trade against random entries "
                     f"(percentile {percentile:.0f}, p = {p:.3f})",
        "entries_add_pct_per_trade": round(added, 4), "percentile": round(percentile, 1), "p_value": round(p, 4),
        "strategy": {"net_pct_per_trade": round(test.strategy_net_pct, 4),
                     "gross_pct_per_trade": round(float(test.strategy.gross_pct.mean()), 4)},
        "random": {"net_pct_per_trade": round(float(test.random_net_pct.mean()), 4),
                   "gross_pct_per_trade": round(float(test.random_gross_pct.mean()), 4),
                   **{f"net_pct_p{q}": round(float(np.percentile(test.random_net_pct, q)), 4) for q in (5, 50, 95)},
                   "net_pct_by_repetition": [round(float(v), 4) for v in test.random_net_pct]},
    }


def _booked(trades: Sequence[TradeRecord]) -> dict[str, float | None]:
    """The same trades as the books hold them (gross: before both fees), mean % of entry cost per trade."""
    costs = [float(t.amount * t.price) for t in trades]
    net = [float(t.profit_loss or 0) / c * 100 for t, c in zip(trades, costs, strict=True) if c > 0]
    gross = [float((t.profit_loss or 0) + t.fees) / c * 100 for t, c in zip(trades, costs, strict=True) if c > 0]
    return {"net_pct_per_trade": round(sum(net) / len(net), 4) if net else None,
            "gross_pct_per_trade": round(sum(gross) / len(gross), 4) if gross else None}


def average_exposure(result: BacktestResult) -> float:
    """Time-weighted fraction of equity held in positions: each trade's entry cost over the time it was open,
    divided by the equity (the hourly marks, each held until the next) over the run."""
    equity_s = sum(float(value) * (until - since).total_seconds()
                   for (since, value), (until, _) in itertools.pairwise(result.equity))
    if equity_s <= 0:
        return 0.0
    held_s = sum(float(t.amount * t.price) * ((t.closed_at or result.spec.end) - t.executed_at).total_seconds()
                 for t in result.trades)
    return held_s / equity_s
