"""Adaptive confidence threshold: win-rate moves, seeded jitter, clamping."""

from __future__ import annotations

from datetime import timedelta

from analysis_builders import CYCLE

from app.domain.risk import RiskLimits
from app.risk.manager import RiskManager

FIXED = RiskManager(RiskLimits(randomize_thresholds=False))
JITTERED = RiskManager(RiskLimits())


def threshold(manager: RiskManager, results=(), base: int = 60, user: int = 1, symbol: str = "BTCUSDT",
              when=CYCLE) -> float:
    return manager.get_adaptive_confidence_threshold(base, results, user, symbol, when)


def test_base_without_history_or_jitter() -> None:
    assert threshold(FIXED) == 60.0


def test_low_win_rate_raises_the_bar() -> None:
    assert threshold(FIXED, [True] * 3 + [False] * 7) == 65.0


def test_high_win_rate_lowers_the_bar() -> None:
    assert threshold(FIXED, [True] * 7 + [False] * 3) == 50.0


def test_middle_win_rate_changes_nothing() -> None:
    assert threshold(FIXED, [True, False] * 5) == 60.0


def test_too_few_trades_change_nothing() -> None:
    assert threshold(FIXED, [False] * 9) == 60.0


def test_only_the_lookback_window_counts() -> None:
    # newest first: 20 wins, then 30 losses that are outside the window
    assert threshold(FIXED, [True] * 20 + [False] * 30) == 50.0


def test_jitter_is_deterministic() -> None:
    assert threshold(JITTERED) == threshold(RiskManager(RiskLimits()))


def test_jitter_stays_within_eight_percent() -> None:
    values = [threshold(JITTERED, when=CYCLE + timedelta(minutes=5 * i)) for i in range(200)]
    assert all(55.2 <= v <= 64.8 for v in values)
    assert len(set(values)) > 150  # it really varies


def test_jitter_differs_by_time_user_symbol_and_seed() -> None:
    base = threshold(JITTERED)
    assert threshold(JITTERED, when=CYCLE + timedelta(minutes=5)) != base
    assert threshold(JITTERED, user=2) != base
    assert threshold(JITTERED, symbol="ETHUSDT") != base
    assert threshold(RiskManager(RiskLimits(random_seed=43))) != base


def test_clamped_to_floor_and_ceiling() -> None:
    assert threshold(JITTERED, base=10) == 50.0
    assert threshold(JITTERED, base=100) == 95.0
    assert threshold(FIXED, [True] * 20, base=55) == 50.0
