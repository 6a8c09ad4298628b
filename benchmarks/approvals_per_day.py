"""Replay real 5m cycles through features -> rules analyzer -> risk validation; report approvals/day and speed.

Not a test and not the backtester: one paper user, exits checked on the following 5m highs/lows (stop first
when a candle touches both), timeout after the configured minutes. Usage:

    PYTHONPATH=. python benchmarks/approvals_per_day.py [--start 2025-09-01] [--days 61] [BTCUSDT ETHUSDT ...]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

from app.analysts.rules import RuleBasedAnalyzer
from app.domain.clock import ms_from_utc, utc_from_ms
from app.domain.risk import RiskLimits, TradingConfig, UserRiskContext
from app.domain.values import Candle, SymbolRules
from app.features.builder import MarketFeatureBuilder
from app.features.levels import SupportResistanceDetector
from app.features.regime import MarketRegimeAnalyzer
from app.risk.manager import RiskManager

DATA = Path("/work/shared/data")
WINDOWS = {"5m": 288, "15m": 100, "1h": 168}
TF_MS = {"5m": 300_000, "15m": 900_000, "1h": 3_600_000}
RULES = {
    "BTCUSDT": ("0.01", "0.00001"), "ETHUSDT": ("0.01", "0.0001"),
    "SOLUSDT": ("0.01", "0.001"), "BNBUSDT": ("0.01", "0.001"),
}


def load(symbol: str, tf: str, start_ms: int, end_ms: int) -> list[Candle]:
    rows = []
    with gzip.open(DATA / f"binance_{symbol}_{tf}.csv.gz", "rt") as fh:
        for r in csv.DictReader(fh):
            t = int(r["open_time_ms"])
            if start_ms <= t < end_ms:
                rows.append(Candle(t, *(Decimal(r[k]) for k in ("open", "high", "low", "close", "volume"))))
    return rows


def symbol_rules(symbol: str) -> SymbolRules:
    tick, step = RULES.get(symbol, ("0.01", "0.001"))
    return SymbolRules(symbol, symbol[:-4], "USDT", Decimal(tick), Decimal(step), Decimal(step),
                       Decimal("9000"), Decimal("5"))


def exit_of(candles: list[Candle], i: int, stop: Decimal, target: Decimal, timeout: int) -> tuple[int, bool]:
    """Index of the 5m candle that closes the trade and whether it was a win."""
    for j in range(i, min(i + timeout, len(candles))):
        if candles[j].low <= stop:
            return j, False
        if candles[j].high >= target:
            return j, True
    j = min(i + timeout, len(candles) - 1)
    return j, candles[j].close > candles[i - 1].close


def run_symbol(symbol: str, start: datetime, days: int) -> dict:
    warm = timedelta(days=8)
    lo, hi = ms_from_utc(start - warm), ms_from_utc(start + timedelta(days=days))
    data = {tf: load(symbol, tf, lo, hi) for tf in WINDOWS}
    times = {tf: np.array([c.open_time_ms for c in cs]) for tf, cs in data.items()}
    limits = RiskLimits()
    risk, builder = RiskManager(limits), MarketFeatureBuilder(MarketRegimeAnalyzer(), SupportResistanceDetector(limits.sr_touch_threshold_pct))
    analyzer, config, rules = RuleBasedAnalyzer(), TradingConfig(user_id=1), symbol_rules(symbol)
    first = int(np.searchsorted(times["5m"], ms_from_utc(start)))
    busy_until, results, per_day, reasons, signals = -1, [], Counter(), Counter(), 0
    build_s = 0.0
    for i in range(first + 1, len(data["5m"])):
        now_ms = data["5m"][i - 1].open_time_ms + TF_MS["5m"]
        windows = {}
        for tf, n in WINDOWS.items():
            k = int(np.searchsorted(times[tf], now_ms - TF_MS[tf], side="right"))
            windows[tf] = data[tf][max(0, k - n) : k]
        t0 = time.perf_counter()
        features = builder.build(symbol, utc_from_ms(now_ms), windows["5m"], windows["15m"], windows["1h"])
        build_s += time.perf_counter() - t0
        signal = analyzer.decide(features)
        if signal.signal.value != "buy":
            continue
        signals += 1
        day = utc_from_ms(now_ms).date()
        context = UserRiskContext(
            1, config, Decimal("10000"), (symbol,) if i <= busy_until else (), per_day[day],
            tuple(reversed(results)), rules, utc_from_ms(now_ms),
        )
        decision = risk.validate_trade_signal(signal, features, context)
        if not decision.approved:
            reasons.update(r.split(" ")[0] + " " + r.split(" ")[1] for r in decision.reasons)
            continue
        per_day[day] += 1
        busy_until, won = exit_of(data["5m"], i, decision.stop_loss, decision.take_profit,
                                  config.position_timeout_minutes // 5)
        results.append(won)
    cycles = len(data["5m"]) - first - 1
    return {
        "symbol": symbol, "cycles": cycles, "buy_signals": signals, "approved": sum(per_day.values()),
        "per_day": sum(per_day.values()) / days, "win_rate": (sum(results) / len(results)) if results else 0.0,
        "days_with_entry": len(per_day), "us_per_build": build_s / max(cycles, 1) * 1e6,
        "top_rejections": reasons.most_common(5),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("symbols", nargs="*", default=["BTCUSDT", "ETHUSDT"])
    parser.add_argument("--start", default="2025-09-01")
    parser.add_argument("--days", type=int, default=61)
    args = parser.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    for symbol in args.symbols:
        print(run_symbol(symbol, start, args.days))


if __name__ == "__main__":
    main()
