"""Microseconds per build_market_features / analyze / validate on real windows of 288 x 5m, 100 x 15m, 168 x 1h.

    PYTHONPATH=. python benchmarks/feature_speed.py [SYMBOL] [CYCLES]
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from app.analysts.rules import RuleBasedAnalyzer
from app.domain.clock import ms_from_utc, utc_from_ms
from app.domain.risk import RiskLimits, TradingConfig, UserRiskContext
from app.features.builder import MarketFeatureBuilder, build_market_features
from app.features.levels import SupportResistanceDetector
from app.features.regime import MarketRegimeAnalyzer
from app.risk.manager import RiskManager
from benchmarks.approvals_per_day import TF_MS, WINDOWS, load, symbol_rules


def main() -> None:
    symbol = sys.argv[1] if len(sys.argv) > 1 else "BTCUSDT"
    cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    start = datetime(2025, 10, 1, tzinfo=UTC)
    lo, hi = ms_from_utc(start - timedelta(days=8)), ms_from_utc(start + timedelta(days=10))
    data = {tf: load(symbol, tf, lo, hi) for tf in WINDOWS}
    times = {tf: np.array([c.open_time_ms for c in cs]) for tf, cs in data.items()}
    first = int(np.searchsorted(times["5m"], ms_from_utc(start)))
    steps = []
    for i in range(first, first + cycles):
        now_ms = data["5m"][i - 1].open_time_ms + TF_MS["5m"]
        win = {}
        for tf, n in WINDOWS.items():
            k = int(np.searchsorted(times[tf], now_ms - TF_MS[tf], side="right"))
            win[tf] = data[tf][k - n : k]
        steps.append((utc_from_ms(now_ms), win))
    limits = RiskLimits()
    regime, risk, levels = MarketRegimeAnalyzer(), RiskManager(limits), SupportResistanceDetector(limits.sr_touch_threshold_pct)
    builder, analyzer = MarketFeatureBuilder(regime, levels), RuleBasedAnalyzer()
    ctx = UserRiskContext(1, TradingConfig(1), Decimal("10000"), (), 0, (), symbol_rules(symbol), start)

    t0 = time.perf_counter()
    feats = [builder.build(symbol, now, w["5m"], w["15m"], w["1h"]) for now, w in steps]
    t1 = time.perf_counter()
    for now, w in steps[:200]:
        build_market_features(symbol, now, w["5m"], w["15m"], w["1h"], regime, levels)
    t2 = time.perf_counter()
    signals = [analyzer.decide(f) for f in feats]
    t3 = time.perf_counter()
    for s, f in zip(signals, feats, strict=True):
        risk.validate_trade_signal(s, f, ctx)
    t4 = time.perf_counter()
    n = len(steps)
    print(f"{symbol}: {n} cycles")
    print(f"  MarketFeatureBuilder.build (cached arrays): {(t1 - t0) / n * 1e6:8.1f} us")
    print(f"  build_market_features (no cache, 200 runs): {(t2 - t1) / 200 * 1e6:8.1f} us")
    print(f"  RuleBasedAnalyzer.decide:                   {(t3 - t2) / n * 1e6:8.1f} us")
    print(f"  RiskManager.validate_trade_signal:          {(t4 - t3) / n * 1e6:8.1f} us")
    print(f"  total per symbol-cycle (cached):            {(t1 - t0 + t4 - t2) / n * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
