"""Microseconds per SupportResistanceDetector.support_resistance_zones call on real 100-candle windows (5m and resampled 15m).

    PYTHONPATH=. python benchmarks/sr_zones_speed.py [WINDOWS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from app.domain.risk import RiskLimits
from app.features.levels import SupportResistanceDetector

SAMPLE = Path(__file__).resolve().parents[1] / "app" / "data" / "sample" / "binance_BTCUSDT_5m.csv.gz"
LENGTH = 100


def load() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    frame = pd.read_csv(SAMPLE)
    high, low = frame["high"].to_numpy(np.float64), frame["low"].to_numpy(np.float64)
    cut = len(high) // 3 * 3
    return {"5m": (high, low), "15m": (high[:cut].reshape(-1, 3).max(axis=1), low[:cut].reshape(-1, 3).min(axis=1))}


def main() -> None:
    windows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    risk = SupportResistanceDetector(RiskLimits().sr_touch_threshold_pct)
    for timeframe, (high, low) in load().items():
        count = min(windows, len(high) - LENGTH)
        pairs = [(high[i:i + LENGTH], low[i:i + LENGTH]) for i in range(count)]
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for h, lo in pairs:
                risk.support_resistance_zones(h, lo)
            best = min(best, time.perf_counter() - started)
        print(f"{timeframe} x {LENGTH}: {count} windows, {best / count * 1e6:.1f} us/call (best of 3)")


if __name__ == "__main__":
    main()
