"""Compile the backtester's numba loops (app.indicators.kernels) now, once, into numba's on-disk cache:
`python -m app.indicators.precompile` (`make` runs it when it installs). Without it the first backtest or
optimisation after an install stalls ~20 s without a word while numba compiles; every later process loads the
cached machine code in well under a second. The cache sits in app/indicators/__pycache__ (or NUMBA_CACHE_DIR),
keyed by the source file and this CPU: editing kernels.py or moving to another machine compiles again."""

from __future__ import annotations

import sys
import time


def precompile() -> tuple[int, int, float]:
    """(signatures compiled, signatures loaded from the cache, seconds)."""
    import numpy as np

    from app.indicators.batch import compiled_kernels, warm_up

    began = time.perf_counter()
    kernels = compiled_kernels()
    if kernels is None:
        return 0, 0, time.perf_counter() - began
    warm_up()  # fill_windows, bollinger_windows, sr_zone_windows as the backtest calls them
    bars = np.linspace(100.0, 110.0, 64)
    kernels.sr_zones(np.sort(bars), bars + 1.0, bars - 1.0, 0.005)  # the S/R detector's own call
    compiled = loaded = 0
    for name in ("fill_windows", "bollinger_windows", "sr_zone_windows", "sr_zones"):
        stats = getattr(kernels, name).stats
        compiled += sum(stats.cache_misses.values())
        loaded += sum(stats.cache_hits.values())
    return compiled, loaded, time.perf_counter() - began


def main() -> int:
    print("compiling numba kernels (once, ~20 s)...", end=" ", flush=True)
    compiled, loaded, seconds = precompile()
    if compiled == loaded == 0:
        print("numba unavailable: backtests use the numpy replay (slower, same numbers)")
        return 0
    what = f"{compiled} compiled" if compiled else "all up to date"
    print(f"{what}, {loaded} from the cache, {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
