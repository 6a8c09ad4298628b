"""Microseconds per window of batch_latest_indicators over a year of BTCUSDT: 288 x 5m, 100 x 15m, 168 x 1h.

    PYTHONPATH=. python benchmarks/indicator_batch_speed.py [CHUNK]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from app.indicators.batch import DEFAULT_CHUNK, batch_latest_indicators

DATA = Path("/work/shared/data")
RUNS = ((("5m", 288, 105_120)), ("15m", 100, 35_040), ("1h", 168, 8_760))


def load(timeframe: str) -> tuple[np.ndarray, ...]:
    frame = pd.read_csv(DATA / f"binance_BTCUSDT_{timeframe}.csv.gz")
    return tuple(frame[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume"))


def main() -> None:
    chunk = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CHUNK
    for timeframe, length, windows in RUNS:
        arrays = load(timeframe)
        ends = np.arange(len(arrays[0]) - windows, len(arrays[0]))
        started = time.perf_counter()
        batch_latest_indicators(*arrays, ends, length, chunk=chunk)
        took = time.perf_counter() - started
        print(f"{timeframe} x {length}: {windows} windows in {took:.2f} s, {took / windows * 1e6:.1f} us/window "
              f"(chunk {chunk})")


if __name__ == "__main__":
    main()
