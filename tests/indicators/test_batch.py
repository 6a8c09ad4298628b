"""batch_latest_indicators: every window bit-identical to latest_indicators (keys, order and every bit)."""

from __future__ import annotations

import gc
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.indicators import batch, talib_rounding
from app.indicators.batch import batch_latest_indicators
from app.indicators.indicator_row import INDICATOR_NAMES, row_to_dict
from app.indicators.talib_rounding import _fused_mul_add
from app.indicators.technical import _BBANDS, latest_indicators

SAMPLE = Path(__file__).resolve().parents[2] / "app" / "data" / "sample" / "binance_BTCUSDT_5m.csv.gz"


@pytest.fixture(scope="module")
def btc() -> tuple[np.ndarray, ...]:
    frame = pd.read_csv(SAMPLE)
    return tuple(frame[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume"))


def bits(values: dict[str, float]) -> list[tuple[str, bytes]]:
    return [(name, struct.pack("<d", value)) for name, value in values.items()]


def assert_identical(arrays: tuple[np.ndarray, ...], ends: np.ndarray, length: int, chunk: int = 4096) -> None:
    compiled = batch_latest_indicators(*arrays, ends, length, chunk=chunk)
    replayed = batch_latest_indicators(*arrays, ends, length, chunk=chunk, compiled=False)
    assert compiled.shape == replayed.shape == (len(ends), len(INDICATOR_NAMES))
    for row, again, end in zip(compiled, replayed, ends.tolist(), strict=True):
        expected = latest_indicators(*(a[end - length + 1:end + 1] for a in arrays))
        assert bits(row_to_dict(row)) == bits(expected), ("compiled", length, end)
        assert bits(row_to_dict(again)) == bits(expected), ("numpy", length, end)


def test_the_compiled_loops_are_the_ones_in_use() -> None:
    assert batch.compiled_kernels() is not None  # numba is a dependency: the tests above ran the compiled path


@pytest.mark.parametrize("length", [288, 100, 30])
def test_compiled_and_numpy_agree_for_a_talib_built_without_fma(
    btc: tuple[np.ndarray, ...], length: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other TA-Lib build cannot be checked here against TA-Lib itself; the two replays must still agree."""
    monkeypatch.setattr(talib_rounding, "talib_fuses", lambda: False)
    ends = np.arange(length - 1 + 3000, length - 1 + 3600)
    unfused = batch_latest_indicators(*btc, ends, length)
    assert np.array_equal(unfused, batch_latest_indicators(*btc, ends, length, compiled=False), equal_nan=True)
    monkeypatch.undo()
    fused = batch_latest_indicators(*btc, ends, length)
    assert not np.array_equal(unfused, fused, equal_nan=True)  # the switch reached the arithmetic


def test_names_follow_latest_indicators_insertion_order(btc: tuple[np.ndarray, ...]) -> None:
    window = tuple(a[:300] for a in btc)
    assert tuple(latest_indicators(*window)) == INDICATOR_NAMES


@pytest.mark.parametrize("length", [288, 100, 168])
def test_real_windows_of_the_backtest_lengths(btc: tuple[np.ndarray, ...], length: int) -> None:
    ends = np.arange(length - 1 + 7000, length - 1 + 9000)
    assert_identical(btc, ends, length, chunk=700)


@pytest.mark.parametrize("length", [1, 2, 5, 14, 15, 20, 27, 28, 29, 30, 34, 50, 200])
def test_real_short_windows(btc: tuple[np.ndarray, ...], length: int) -> None:
    ends = np.arange(length - 1, length - 1 + 1500)
    assert_identical(btc, ends, length)


def test_scattered_ends_and_repeated_ends(btc: tuple[np.ndarray, ...]) -> None:
    rng = np.random.default_rng(5)
    ends = np.sort(rng.choice(np.arange(287, len(btc[0])), 600))
    assert_identical(btc, ends, 288, chunk=256)


def test_no_windows_gives_an_empty_table(btc: tuple[np.ndarray, ...]) -> None:
    assert batch_latest_indicators(*btc, np.array([], dtype=np.int64), 288).shape == (0, len(INDICATOR_NAMES))


def test_a_window_outside_the_series_is_refused(btc: tuple[np.ndarray, ...]) -> None:
    with pytest.raises(ValueError):
        batch_latest_indicators(*btc, np.array([10]), 288)


@st.composite
def candles(draw: st.DrawFn) -> tuple[tuple[np.ndarray, ...], np.ndarray, int]:
    n = draw(st.integers(1, 140))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, draw(st.sampled_from([0.0, 1e-9, 1e-3, 0.03])), n)
    steps[rng.random(n) < draw(st.floats(0, 0.9))] = 0.0  # flat runs: equal closes hit TA-Lib's special cases
    close = np.round(100 * np.exp(np.cumsum(steps)), draw(st.sampled_from([2, 6, 12])))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.random(n) * draw(st.sampled_from([0.0, 1e-3])))
    low = np.minimum(open_, close) * (1 - rng.random(n) * draw(st.sampled_from([0.0, 1e-3])))
    volume = np.where(rng.random(n) < 0.3, 0.0, rng.random(n) * 50)
    length = draw(st.integers(1, n))
    ends = np.unique(rng.integers(length - 1, n, draw(st.integers(1, 12))))
    return (open_, high, low, close, volume), ends, length


@settings(max_examples=400, deadline=None, derandomize=True)  # a fixed sample in CI; 3,000 random ones passed
@given(candles())
def test_random_series_match_bit_for_bit(case: tuple[tuple[np.ndarray, ...], np.ndarray, int]) -> None:
    arrays, ends, length = case
    assert_identical(arrays, ends, length, chunk=5)


def exactly_rounded(a: float, b: float, c: float) -> float:
    """a * b + c with one rounding to nearest even (Fraction's float() rounds correctly)."""
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def assert_fused_exact(a: np.ndarray, b: float, c: np.ndarray) -> None:
    want = np.array([exactly_rounded(x, b, y) for x, y in zip(a.tolist(), c.tolist(), strict=True)])
    for near_c in (True, False):  # both lane checks
        assert _fused_mul_add(a.copy(), b, c.copy(), near_c).tobytes() == want.tobytes()


@pytest.mark.parametrize("b", [13.0 / 14.0, 2.0 / 10.0, 2.0 / 22.0, 2.0 / 201.0, 2.0 / 27.0, 0.5])
def test_fused_mul_add_rounds_once_like_ema_and_atr_steps(b: float) -> None:
    """The fast check (plain sum unless single and double rounding may differ) against exact arithmetic, on the
    operand shapes of the EMA and ATR steps and on constructed ties."""
    rng = np.random.default_rng(11)
    prev = 100 * np.exp(rng.normal(0, 0.5, 20_000))
    x = prev * (1 + rng.normal(0, 0.01, 20_000))
    assert_fused_exact(x - prev, b, prev)  # EMA: (x - prev) * k + prev
    assert_fused_exact(prev, b, np.round(x, 2) * (1.0 - b))  # ATR: prev * c1 + x * c2
    halfway = np.ldexp(1.0, -53)  # 1 + 2**-53 is a tie; a hair either side is not
    ties = np.array([1.0, 1.0 + 2 * halfway, 3.0, 1.0, -1.0, 0.0, 2.0**-1070])
    assert_fused_exact(ties * 0 + halfway / b, b, ties)
    assert_fused_exact(ties * 0 + np.nextafter(halfway / b, 1.0), b, ties)
    assert_fused_exact(ties * 0 + np.nextafter(halfway / b, 0.0), b, -ties)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(-1e30, 1e30), st.floats(-1e30, 1e30)), min_size=1, max_size=30),
       st.floats(-1e3, 1e3))
def test_fused_mul_add_matches_exact_arithmetic(pairs: list[tuple[float, float]], b: float) -> None:
    assert_fused_exact(np.array([a for a, _ in pairs]), b, np.array([c for _, c in pairs]))


def test_fused_mul_add_below_a_power_of_two() -> None:
    """1 - 2**-54 - 2**-107: two roundings tie up to 1.0, one rounding gives 1 - 2**-53 (the gap below a power
    of two is half the gap above it)."""
    b = float(np.nextafter(1.0, 0.0))  # 1 - 2**-53
    a = np.array([-(2.0**-54) * (1 + 2.0**-52), 2.0**-54 * (1 + 2.0**-52)])
    c = np.array([1.0, -1.0])
    assert_fused_exact(a, b, c)
    assert _fused_mul_add(a.copy(), b, c.copy(), False)[0] == 1 - 2.0**-53


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1), st.integers(20, 900), st.sampled_from([0.0, 1e-9, 1e-6, 1e-3, 0.05]),
       st.floats(0, 1), st.sampled_from([None, 10.0, 1e3, 1e-3]), st.sampled_from([1.0, 1e-8, 1e8]))
def test_compiled_bollinger_bands_follow_talib_through_flat_runs_spikes_and_rebuilds(
    seed: int, n: int, scale: float, flat: float, spike: float | None, level: float
) -> None:
    """TA-Lib rebuilds its running sums when the variance collapses (flat runs), when a spike leaves the window
    and every 640 bars (windows of up to 900 bars): the compiled bands follow it bit for bit."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, scale, n)
    steps[rng.random(n) < flat] = 0.0
    close = np.round(100 * np.exp(np.cumsum(steps)), 8) * level
    if spike is not None:
        close[rng.integers(0, n)] *= spike
    ones = np.ones(n)
    ends = np.unique(rng.integers(19, n, 5))
    length = int(rng.integers(20, int(ends[0]) + 2))
    rows = batch_latest_indicators(close, close, close, close, ones, ends, length)
    for row, end in zip(rows, ends.tolist(), strict=True):
        upper, middle, lower = _BBANDS(close[end - length + 1:end + 1], timeperiod=20, nbdevup=2.0, nbdevdn=2.0,
                                       matype=0)
        got = row_to_dict(row)
        assert bits({k: got[k] for k in ("bb_upper", "bb_middle", "bb_lower")}) == bits(
            {"bb_upper": upper[-1], "bb_middle": middle[-1], "bb_lower": lower[-1]})


@pytest.mark.parametrize("enabled", [True, False])
def test_warm_up_runs_with_the_garbage_collector_paused_and_leaves_it_as_it_was(
        monkeypatch: pytest.MonkeyPatch, enabled: bool) -> None:
    """Loading the compiled loops allocates heavily; a full collection then would walk every loaded candle."""
    loaded = batch.batch_latest_indicators
    during: list[bool] = []

    def allocating(*args: object, **kwargs: object) -> np.ndarray:
        during.append(gc.isenabled())
        garbage = [{"n": i} for i in range(50_000)]  # far past the first generation's threshold
        del garbage
        return loaded(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "batch_latest_indicators", allocating)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        batch.warm_up.__wrapped__()  # the load itself, whether or not this process did it already
        after = gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert during == [False] and after is enabled
