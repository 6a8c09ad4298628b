"""`python -m app.indicators.precompile` (run by `make` at install) leaves the numba loops in the on-disk cache: the
next process loads every one of them and compiles nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _precompile() -> str:
    done = subprocess.run([sys.executable, "-m", "app.indicators.precompile"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_second_process_finds_every_kernel_compiled() -> None:
    first = _precompile()  # compiles only where the cache is missing or stale (not after `make`)
    assert first.startswith("compiling numba kernels (once, ~20 s)...")
    second = _precompile()
    assert "all up to date, 4 from the cache" in second, second
