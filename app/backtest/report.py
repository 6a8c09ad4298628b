"""Backtest metrics (returns, drawdown, ratios, trade statistics) and the report.json / trades.csv / summary text."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.backtest.runner import BacktestResult
from app.domain.errors import DataError
from app.domain.records import TradeRecord
from app.domain.values import ZERO, TradeStatus
from app.marketdata.candles import CandleStore

END_OF_BACKTEST = "END_OF_BACKTEST"
DAYS_PER_YEAR = 365  # crypto trades every day
TRADE_COLUMNS = (
    "trade_id", "symbol", "entry_time", "entry_price", "exit_time", "exit_price", "amount", "stop_loss",
    "take_profit", "exit_reason", "entry_fee", "exit_fee", "fees", "profit_loss", "profit_loss_pct",
    "duration_s", "confidence",
)


def money(value: Decimal | None, places: str = "0.01") -> str:
    return "" if value is None else format(value.quantize(Decimal(places)), "f")


def exact(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def exit_label(trade: TradeRecord, closed_at_end: Sequence[int]) -> str:
    if trade.id in closed_at_end:
        return END_OF_BACKTEST
    return trade.exit_reason.value if trade.exit_reason else ""


# ---- trades ---------------------------------------------------------------------------------------------------


def trade_rows(result: BacktestResult) -> list[dict[str, str]]:
    rows = []
    for t in result.trades:
        rows.append({
            "trade_id": str(t.id), "symbol": t.symbol, "entry_time": t.executed_at.isoformat(),
            "entry_price": exact(t.price), "exit_time": t.closed_at.isoformat() if t.closed_at else "",
            "exit_price": exact(t.exit_price), "amount": exact(t.amount), "stop_loss": exact(t.stop_loss),
            "take_profit": exact(t.take_profit), "exit_reason": exit_label(t, result.closed_at_end),
            "entry_fee": exact(t.entry_fee), "exit_fee": exact(t.exit_fee), "fees": exact(t.fees),
            "profit_loss": exact(t.profit_loss), "profit_loss_pct": exact(t.profit_loss_percentage),
            "duration_s": "" if t.duration_seconds is None else str(t.duration_seconds),
            "confidence": str(t.ai_signal_confidence),
        })
    return rows


def trades_csv(result: BacktestResult) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TRADE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(trade_rows(result))
    return out.getvalue()


# ---- equity ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drawdown:
    max_pct: float
    peak_at: datetime | None
    trough_at: datetime | None
    recovered_at: datetime | None
    duration: timedelta  # peak to recovery, or to the end when the equity never recovered


def max_drawdown(equity: Sequence[tuple[datetime, Decimal]]) -> Drawdown:
    best = Drawdown(0.0, None, None, None, timedelta(0))
    peak_value, peak_at = -math.inf, equity[0][0] if equity else None
    for when, value in equity:
        v = float(value)
        if v > peak_value:
            peak_value, peak_at = v, when
        depth = (peak_value - v) / peak_value * 100 if peak_value > 0 else 0.0
        if depth > best.max_pct:
            best = Drawdown(depth, peak_at, when, None, timedelta(0))
    if best.peak_at is None or best.trough_at is None:
        return best
    peak = next(float(v) for t, v in equity if t == best.peak_at)
    recovered = next((t for t, v in equity if t > best.trough_at and float(v) >= peak), None)
    until = recovered or equity[-1][0]
    return Drawdown(best.max_pct, best.peak_at, best.trough_at, recovered, until - best.peak_at)


def drawdown_series(equity: Sequence[tuple[datetime, Decimal]]) -> list[float]:
    peak, out = -math.inf, []
    for _, value in equity:
        peak = max(peak, float(value))
        out.append((peak - float(value)) / peak * 100 if peak > 0 else 0.0)
    return out


def daily_equity(equity: Sequence[tuple[datetime, Decimal]]) -> list[float]:
    """The last mark of each UTC day, preceded by the starting equity."""
    by_day: dict[Any, float] = {}
    for when, value in equity:
        by_day[when.date()] = float(value)
    return [float(equity[0][1]), *by_day.values()] if equity else []


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0] if values else 0.0), 0.0
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def daily_returns(daily: Sequence[float]) -> list[float]:
    """Each day's return from the day-end equity before it (a day after a zero equity has none)."""
    return [b / a - 1 for a, b in itertools.pairwise(daily) if a > 0]


def ratios(daily: Sequence[float], annual_return_pct: float, max_dd_pct: float) -> dict[str, float | None]:
    """Sharpe and Sortino from daily returns (annualised with sqrt 365, risk-free 0); Calmar = CAGR / max DD."""
    returns = daily_returns(daily)
    mean, std = _mean_std(returns)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns)) if returns else 0.0
    scale = math.sqrt(DAYS_PER_YEAR)
    return {
        "sharpe": round(mean / std * scale, 3) if std > 0 else None,
        "sortino": round(mean / downside * scale, 3) if downside > 0 else None,
        "calmar": round(annual_return_pct / max_dd_pct, 3) if max_dd_pct > 0 else None,
    }


# ---- trade statistics -----------------------------------------------------------------------------------------


def _closed(trades: Sequence[TradeRecord]) -> list[TradeRecord]:
    return [t for t in trades if t.status == TradeStatus.CLOSED and t.profit_loss is not None]


def trade_stats(trades: Sequence[TradeRecord]) -> dict[str, Any]:
    closed = _closed(trades)
    pnl = [t.profit_loss or ZERO for t in closed]
    wins, losses = [p for p in pnl if p > 0], [p for p in pnl if p <= 0]
    gross_win, gross_loss = sum(wins, ZERO), -sum(losses, ZERO)
    durations = [t.duration_seconds or 0 for t in closed]
    best = max(closed, key=lambda t: (t.profit_loss_percentage or ZERO, -t.id), default=None)
    worst = min(closed, key=lambda t: (t.profit_loss_percentage or ZERO, t.id), default=None)
    return {
        "trades": len(closed),
        "wins": len(wins),
        "losses": len(losses),
        "win_rate_pct": round(len(wins) * 100 / len(closed), 2) if closed else None,
        "profit_total": money(sum(pnl, ZERO)),
        "gross_profit": money(gross_win),
        "gross_loss": money(gross_loss),
        "profit_factor": round(float(gross_win / gross_loss), 3) if gross_loss > 0 else None,
        "expectancy": money(sum(pnl, ZERO) / len(pnl)) if pnl else None,
        "avg_win": money(gross_win / len(wins)) if wins else None,
        "avg_loss": money(-gross_loss / len(losses)) if losses else None,
        "fees_paid": money(sum((t.fees for t in trades), ZERO)),
        "avg_duration_s": round(sum(durations) / len(durations)) if durations else None,
        "longest_duration_s": max(durations, default=None),
        "best_trade": _trade_brief(best),
        "worst_trade": _trade_brief(worst),
    }


def _trade_brief(trade: TradeRecord | None) -> dict[str, Any] | None:
    if trade is None:
        return None
    return {"id": trade.id, "symbol": trade.symbol, "entry_time": trade.executed_at.isoformat(),
            "profit_loss": money(trade.profit_loss), "profit_loss_pct": money(trade.profit_loss_percentage)}


def grouped(trades: Sequence[TradeRecord], key_of: Any) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[TradeRecord]] = {}
    for t in _closed(trades):
        groups.setdefault(key_of(t), []).append(t)
    out = {}
    for key, items in sorted(groups.items()):
        pnl = [t.profit_loss or ZERO for t in items]
        wins = sum(1 for p in pnl if p > 0)
        pct = [t.profit_loss_percentage or ZERO for t in items]
        out[key] = {"trades": len(items), "wins": wins, "win_rate_pct": round(wins * 100 / len(items), 2),
                    "profit_total": money(sum(pnl, ZERO)), "avg_profit_pct": money(sum(pct, ZERO) / len(pct)),
                    "fees": money(sum((t.fees for t in items), ZERO))}
    return out


# ---- the whole report -----------------------------------------------------------------------------------------


def buy_and_hold(candles: CandleStore, symbols: Sequence[str], start: datetime, end: datetime) -> dict[str, float]:
    """Each symbol's return from the first decision's price to the last one's, and their equal-weight mean."""
    out = {}
    for symbol in symbols:
        try:
            out[symbol] = round(float(candles.price_at(symbol, end) / candles.price_at(symbol, start) - 1) * 100, 3)
        except DataError:  # a symbol a top:N rule could pick that has no candle at one end of the span
            continue
    out["mean"] = round(sum(out.values()) / len(out), 3) if out else 0.0
    return out


def build_report(result: BacktestResult, candles: CandleStore, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    spec = result.spec
    start_value, final = spec.balance, result.final_balance
    days = max((spec.end - spec.start).total_seconds() / 86400, 1 / 288)
    total = float(final / start_value - 1)
    annual = ((1 + total) ** (DAYS_PER_YEAR / days) - 1) * 100 if total > -1 else -100.0
    dd = max_drawdown(result.equity)
    exit_of = {t.id: exit_label(t, result.closed_at_end) for t in result.trades}
    return {
        "span": {"start": spec.start.isoformat(), "end": spec.end.isoformat(), "days": round(days, 3),
                 "cycles": result.cycles, "symbols": list(spec.config.symbols), "universe": list(spec.symbols)},
        **(dict(extra) if extra else {}),
        "start_balance": money(start_value), "final_balance": exact(final), "final_balance_rounded": money(final),
        "total_return_pct": round(total * 100, 3), "annualised_return_pct": round(annual, 3),
        "buy_and_hold_return_pct": buy_and_hold(candles, spec.symbols, spec.start, spec.end),
        "max_drawdown_pct": round(dd.max_pct, 3),
        "max_drawdown_peak": dd.peak_at.isoformat() if dd.peak_at else None,
        "max_drawdown_trough": dd.trough_at.isoformat() if dd.trough_at else None,
        "max_drawdown_recovered": dd.recovered_at.isoformat() if dd.recovered_at else None,
        "max_drawdown_duration_s": int(dd.duration.total_seconds()),
        **ratios(daily_equity(result.equity), annual, dd.max_pct),
        **trade_stats(result.trades),
        "exit_reasons": grouped(result.trades, lambda t: exit_of[t.id]),
        "per_symbol": grouped(result.trades, lambda t: t.symbol),
        "rejected_signals": _counts(result.decisions, "rejected"),
        "skipped_signals": _counts(result.decisions, "skipped"),
        "risk_rejections_by_rule": dict(sorted(result.rejections.items())),
        "events": dict(sorted(result.events.items())),
        "errors": error_summary(result.errors),
        "entries_by_hour_utc": entries_by_hour(result.trades),
    }


def entries_by_hour(trades: Sequence[TradeRecord]) -> list[int]:
    """How many entries each hour of the UTC day saw (index 0 = 00:00-00:59): where the daily budget is spent."""
    counts = [0] * 24
    for trade in trades:
        counts[trade.executed_at.hour] += 1
    return counts


ERRORS_SHOWN = 5


def error_kind(message: str) -> str:
    """An error message without its particulars (quantities, prices, ids, parenthesised details), to count by."""
    kind = re.sub(r"\([^)]*\)", "", message)
    kind = re.sub(r"[-+]?\d[\d.,:eE+-]*", "N", kind)
    return " ".join(kind.split())[:120]


def error_summary(errors: Sequence[tuple[datetime, str]]) -> dict[str, Any]:
    """How many errors the run met, by kind (most frequent first), and the first few as they were."""
    kinds: dict[str, int] = {}
    for _, message in errors:
        kinds[error_kind(message)] = kinds.get(error_kind(message), 0) + 1
    return {"count": len(errors), "by_kind": dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
            "first": [f"{when.isoformat()} {message}" for when, message in errors[:ERRORS_SHOWN]]}


def _counts(decisions: Mapping[tuple[str, str], int], kind: str) -> dict[str, int]:
    items = [(reason, n) for (decision, reason), n in decisions.items() if decision == kind]
    return dict(sorted(items, key=lambda item: (-item[1], item[0])))


def write_files(out: Path, report: Mapping[str, Any], result: BacktestResult) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "trades.csv").write_text(trades_csv(result))


# ---- terminal -------------------------------------------------------------------------------------------------


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    return f"{d}d {h:02d}:{rest // 60:02d}" if d else f"{h:02d}:{rest // 60:02d}"


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def summary_text(report: Mapping[str, Any]) -> str:
    span, bh = report["span"], report["buy_and_hold_return_pct"]
    best, worst = report["best_trade"], report["worst_trade"]
    lines = [
        f"Backtest {', '.join(span['symbols'])}  {span['start'][:16]} -> {span['end'][:16]}  "
        f"({span['days']:g} days, {span['cycles']} cycles)",
        f"  balance          {report['start_balance']} -> {report['final_balance_rounded']} USDT",
        f"  total return     {report['total_return_pct']:+.3f} %   annualised {report['annualised_return_pct']:+.3f} %",
        f"  buy and hold     {bh['mean']:+.3f} %   ({', '.join(f'{k} {v:+.2f} %' for k, v in bh.items() if k != 'mean')})",
        f"  max drawdown     {report['max_drawdown_pct']:.3f} %   lasting {_duration(report['max_drawdown_duration_s'])}",
        f"  sharpe / sortino / calmar   {_fmt(report['sharpe'])} / {_fmt(report['sortino'])} / {_fmt(report['calmar'])}",
        f"  trades           {report['trades']}   win rate {_fmt(report['win_rate_pct'], ' %')}   "
        f"profit factor {_fmt(report['profit_factor'])}   expectancy {_fmt(report['expectancy'])} USDT",
        f"  duration         avg {_duration(report['avg_duration_s'])}   longest {_duration(report['longest_duration_s'])}",
        f"  best / worst     {_fmt(best and best['profit_loss_pct'], ' %')} / {_fmt(worst and worst['profit_loss_pct'], ' %')}"
        f"   fees paid {report['fees_paid']} USDT",
    ]
    lines += _edge_lines(report.get("edge"))
    lines += _table("exit reason", report["exit_reasons"]) + _table("symbol", report["per_symbol"])
    lines += error_lines(report["errors"]) + hour_lines(report.get("entries_by_hour_utc"))
    rejected = report["rejected_signals"]
    if rejected:
        lines.append("  rejected signals: " + ", ".join(f"{reason} x{n}" for reason, n in list(rejected.items())[:8]))
    lines += [f"  warning          {warning}" for warning in report.get("warnings", ())]
    return "\n".join(lines)


def hour_lines(counts: Sequence[int] | None) -> list[str]:
    if not counts or not any(counts):
        return []
    blocks = [" ".join(f"{n:>3}" for n in counts[h:h + 12]) for h in (0, 12)]
    return [f"  entries by hour  00-11h {blocks[0]}", f"    (UTC)        12-23h {blocks[1]}"]


def error_lines(errors: Mapping[str, Any]) -> list[str]:
    if not errors["count"]:
        return []
    kinds = ", ".join(f"{kind} x{n}" for kind, n in list(errors["by_kind"].items())[:4])
    return [f"  ERRORS           {errors['count']} during the run: {kinds}",
            *(f"    {line}" for line in errors["first"])]


def _edge_lines(edge: Mapping[str, Any] | None) -> list[str]:
    """The edge test (app/backtest/edge.py): the entries against random ones, gross beside net, exposure."""
    if edge is None:
        return []
    lines = [f"  edge test        {edge['statement']}"]
    if "strategy" in edge:
        own, chance = edge["strategy"], edge["random"]
        lines.append(f"                   per trade: net {own['net_pct_per_trade']:+.3f} %, gross "
                     f"{own['gross_pct_per_trade']:+.3f} % before fees; {edge['repetitions']} x {edge['trades']} "
                     f"random entries: net {chance['net_pct_per_trade']:+.3f} %, gross {chance['gross_pct_per_trade']:+.3f} %")
    lines.append(f"  exposure         {edge['exposure_pct']:.2f} % of equity on average: buy and hold at that exposure "
                 f"{edge['buy_and_hold_at_exposure_pct']:+.3f} % (fully invested {edge['buy_and_hold_pct']:+.3f} %)")
    return lines


def _table(title: str, rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = [f"  {title:<16} {'trades':>6} {'win %':>7} {'profit USDT':>12} {'avg %':>7}"]
    for key, row in rows.items():
        out.append(f"  {key:<16} {row['trades']:>6} {row['win_rate_pct']:>7.2f} {row['profit_total']:>12} "
                   f"{row['avg_profit_pct']:>7}")
    return out


def read_report(path: Path) -> dict[str, Any]:
    """A run's report.json, a NaN or Infinity in it read as null (no JSON an answer may carry). Blocking: a long
    run's report is megabytes, so callers on the event loop run it in a thread."""
    report: dict[str, Any] = json.loads(path.read_text(), parse_constant=lambda _: None)
    return report
