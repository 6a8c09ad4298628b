"""Overfitting statistics of a study: the probability of backtest overfitting by combinatorially symmetric
cross-validation (Bailey, Borwein, López de Prado and Zhu, 2015) and the deflated Sharpe ratio (Bailey and
López de Prado, 2014)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329  # the Euler-Mascheroni constant
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class Pbo:
    pbo: float  # the share of splits whose in-sample best ranks in the lower half out of sample
    splits: int  # combinations of S/2 blocks of S
    blocks: int  # S
    logits: tuple[float, ...]  # lambda per split: log(w / (1 - w)), w the relative out-of-sample rank


def probability_of_overfitting(returns: np.ndarray, blocks: int = 16) -> Pbo:
    """CSCV over a T x N matrix (T periods, N trials, each column a trial's per-period returns).

    The T rows are cut into S blocks (S even, at most T); every choice of S/2 blocks is an in-sample set and the
    rest its out-of-sample complement. For each, the trial with the best in-sample Sharpe ratio is ranked among all
    trials out of sample: w = rank / (N + 1), lambda = logit(w). PBO is the share of splits with lambda <= 0.
    """
    matrix = np.asarray(returns, dtype=float)
    periods, trials = matrix.shape
    if trials < 2:
        raise ValueError("PBO needs at least 2 trials")
    blocks = min(blocks, periods - periods % 2)
    if blocks < 2:
        raise ValueError(f"PBO needs at least 2 periods, got {periods}")
    parts = np.array_split(matrix, blocks)
    sums = np.array([p.sum(axis=0) for p in parts])  # S x N
    squares = np.array([(p ** 2).sum(axis=0) for p in parts])
    counts = np.array([len(p) for p in parts], dtype=float)
    logits = []
    for chosen in itertools.combinations(range(blocks), blocks // 2):
        inside = np.zeros(blocks, dtype=bool)
        inside[list(chosen)] = True
        best = int(np.argmax(_sharpe(sums[inside], squares[inside], counts[inside])))
        outside = _sharpe(sums[~inside], squares[~inside], counts[~inside])
        rank = _average_rank(outside, best)
        w = rank / (trials + 1)
        logits.append(math.log(w / (1 - w)))
    share = sum(1 for x in logits if x <= 0) / len(logits)
    return Pbo(share, len(logits), blocks, tuple(logits))


def _sharpe(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    n = counts.sum()
    total, total_sq = sums.sum(axis=0), squares.sum(axis=0)
    mean = total / n
    var = np.maximum(total_sq / n - mean ** 2, 0.0) * n / max(n - 1, 1)
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, mean / np.where(std > 0, std, 1.0), 0.0)


def _average_rank(values: np.ndarray, index: int) -> float:
    """1 = worst, N = best; ties share their average rank."""
    value = values[index]
    below = float(np.sum(values < value))
    equal = float(np.sum(values == value))
    return below + (equal + 1) / 2


def expected_max_sharpe(trials: int, variance: float) -> float:
    """E[max SR] of `trials` independent trials whose Sharpe ratios have this variance and true mean 0
    (the false-strategy theorem): sqrt(V) ((1 - gamma) Z^-1(1 - 1/N) + gamma Z^-1(1 - 1/(N e)))."""
    if trials < 2:
        return 0.0
    z = _NORMAL.inv_cdf
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * z(1 - 1 / trials) + EULER_GAMMA * z(1 - 1 / (trials * math.e)))


def probabilistic_sharpe(sharpe: float, benchmark: float, periods: int, skew: float, kurtosis: float) -> float:
    """P(true SR > benchmark) given an estimate over `periods` returns with this skewness and (non-excess)
    kurtosis; Sharpe ratios per period, not annualised."""
    denominator = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe ** 2
    if periods < 2 or denominator <= 0:
        return float("nan")
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(periods - 1) / math.sqrt(denominator))


@dataclass(frozen=True, slots=True)
class DeflatedSharpe:
    sharpe: float  # the selected trial's per-period Sharpe ratio
    expected_max: float  # SR0: the best Sharpe ratio expected from this many skill-less trials
    dsr: float  # P(true SR > 0) after deflating for the trials
    trials: int
    periods: int
    skew: float
    kurtosis: float


def deflated_sharpe(best_returns: Sequence[float], trial_sharpes: Sequence[float]) -> DeflatedSharpe:
    """The deflated Sharpe ratio of the selected trial's per-period returns, given every trial's Sharpe ratio
    (their number and variance set the benchmark)."""
    r = np.asarray(best_returns, dtype=float)
    sharpes = np.asarray(trial_sharpes, dtype=float)
    sr, skew, kurt = moments(r)
    variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
    sr0 = expected_max_sharpe(len(sharpes), variance)
    return DeflatedSharpe(sr, sr0, probabilistic_sharpe(sr, sr0, len(r), skew, kurt), len(sharpes), len(r), skew, kurt)


def moments(returns: np.ndarray) -> tuple[float, float, float]:
    """Per-period Sharpe ratio, skewness and non-excess kurtosis (0, 0, 3 when the returns do not vary)."""
    if len(returns) < 2:
        return 0.0, 0.0, 3.0
    mean, std = float(np.mean(returns)), float(np.std(returns, ddof=1))
    if std == 0:
        return 0.0, 0.0, 3.0
    z = (returns - mean) / float(np.std(returns))
    return mean / std, float(np.mean(z ** 3)), float(np.mean(z ** 4))


def sharpe_of(returns: Sequence[float]) -> float:
    return moments(np.asarray(returns, dtype=float))[0]
