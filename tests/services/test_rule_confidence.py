"""The rule-based confidence scale: a raw score's rank among calibration setups, 50 to 95, monotone."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from app.analysts.rule_confidence import ConfidenceScale, SetupKind, quantiles
from app.analysts.rule_confidence_table import RULE_CONFIDENCE

TREND, RANGE = SetupKind.TREND, SetupKind.RANGE


def sweep(points: tuple[float, ...], steps: int = 5000) -> np.ndarray:
    """Scores from below the lowest breakpoint to above the highest."""
    margin = points[-1] - points[0]
    return np.linspace(points[0] - margin / 10, points[-1] + margin / 10, steps)


@pytest.mark.parametrize("kind", list(SetupKind))
def test_shipped_scale_is_monotone_and_spans_50_to_95(kind: SetupKind) -> None:
    scores = sweep(RULE_CONFIDENCE.breakpoints[kind])
    confidences = [RULE_CONFIDENCE.confidence(kind, float(score)) for score in scores]
    assert all(a <= b for a, b in itertools.pairwise(confidences))
    assert set(confidences) == set(range(50, 96)), "every confidence 50-95 is some score's"


@pytest.mark.parametrize("kind", list(SetupKind))
def test_each_breakpoint_is_its_share_of_the_calibration_setups(kind: SetupKind) -> None:
    points = RULE_CONFIDENCE.breakpoints[kind]
    last = len(points) - 1
    for i, score in enumerate(points):
        if 0 < i < last and points[i - 1] < score < points[i + 1]:
            assert RULE_CONFIDENCE.share_below(kind, score) == pytest.approx(i / last)
    assert RULE_CONFIDENCE.share_below(kind, points[0]) == 0.0
    assert RULE_CONFIDENCE.share_below(kind, points[-1]) == 1.0


def test_shipped_table_names_its_span_and_symbols() -> None:
    assert "2023-01-08" in RULE_CONFIDENCE.source and "BTCUSDT, ETHUSDT, SOLUSDT" in RULE_CONFIDENCE.source
    assert set(RULE_CONFIDENCE.breakpoints) == set(SetupKind)


def test_a_scale_from_scores_ranks_them_evenly() -> None:
    rng = np.random.default_rng(18)
    scores = {TREND: rng.normal(82, 5, 4000).tolist(), RANGE: rng.normal(78, 1, 1000).tolist()}
    scale = ConfidenceScale.from_scores(scores, 21, "synthetic")
    for kind, values in scores.items():
        assert scale.breakpoints[kind] == pytest.approx(np.quantile(values, np.linspace(0, 1, 21)), abs=1e-4)
        confidences = np.array([scale.confidence(kind, v) for v in values])
        for confidence in (59, 72, 86):  # a threshold C admits about 1 - (C - 50) / 45 of the setups
            assert (confidences >= confidence).mean() == pytest.approx(1 - (confidence - 50) / 45, abs=0.03)


def test_quantiles_interpolate_between_order_statistics() -> None:
    assert quantiles([4.0, 0.0, 2.0, 1.0, 3.0], 5) == (0.0, 1.0, 2.0, 3.0, 4.0)
    assert quantiles([0.0, 10.0], 3) == (0.0, 5.0, 10.0)


def test_tied_breakpoints_jump_over_the_tie() -> None:
    scale = ConfidenceScale("ties", {TREND: (1.0, 2.0, 2.0, 3.0)})
    assert scale.share_below(TREND, 1.999) < 1 / 3 < scale.share_below(TREND, 2.0) == pytest.approx(2 / 3)
    assert scale.confidence(TREND, 3.5) == 95 and scale.confidence(TREND, 0.0) == 50


@pytest.mark.parametrize("points", [(1.0,), (2.0, 1.0), ()])
def test_breakpoints_must_be_two_ascending_scores(points: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="ascending"):
        ConfidenceScale("bad", {TREND: points})


def test_a_score_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="not a number"):
        RULE_CONFIDENCE.confidence(TREND, float("nan"))
