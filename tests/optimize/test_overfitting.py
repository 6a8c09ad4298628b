"""PBO on synthetic trials and the deflated Sharpe ratio against the paper's worked example."""

import math

import numpy as np

from app.optimize.overfitting import (
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    probability_of_overfitting,
)


def test_pbo_is_near_1_when_no_trial_is_better_over_the_whole_sample() -> None:
    # pure noise, each trial demeaned: whatever wins one half must lose the other
    noise = np.random.default_rng(1).normal(0, 0.01, (600, 40))
    assert probability_of_overfitting(noise - noise.mean(axis=0)).pbo > 0.95


def test_pbo_of_independent_noise_is_a_coin_toss() -> None:
    # iid noise: the in-sample winner's out-of-sample rank is uniform, so PBO averages 0.5 (not 1)
    found = [probability_of_overfitting(np.random.default_rng(s).normal(0, 0.01, (400, 30)), blocks=10).pbo
             for s in range(8)]
    assert 0.3 < sum(found) / len(found) < 0.7


def test_pbo_is_near_0_for_a_planted_edge() -> None:
    returns = np.random.default_rng(2).normal(0, 0.01, (600, 40))
    returns[:, 13] += 0.003  # one trial with a real edge (Sharpe 0.3 a period)
    assert probability_of_overfitting(returns).pbo < 0.05


def test_deflated_sharpe_matches_the_papers_worked_example() -> None:
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example: N = 100 trials whose annualised
    # Sharpe ratios vary with V = 1/2, the best one 2.5 annualised, T = 1250 daily returns (250 a year), skewness -3,
    # kurtosis 10. The paper gets SR0 = 0.1132 (per day) and DSR = 0.9004.
    per_day = math.sqrt(250)
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert round(sr0, 4) == 0.1132
    assert round(probabilistic_sharpe(2.5 / per_day, sr0, 1250, -3, 10), 4) == 0.9004


def test_expected_max_sharpe_uses_euler_mascheroni() -> None:
    # (1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e)) with unit variance, N = 10: 0.4228 * 1.2816 + 0.5772 * 1.7892
    assert abs(expected_max_sharpe(10, 1.0) - (0.42278 * 1.28155 + 0.57722 * 1.78924)) < 1e-3


def test_deflated_sharpe_of_the_luckiest_noise_trial_is_not_significant() -> None:
    noise = np.random.default_rng(3).normal(0, 0.01, (365, 200))
    sharpes = noise.mean(axis=0) / noise.std(axis=0, ddof=1)
    best = int(np.argmax(sharpes))
    found = deflated_sharpe(noise[:, best], sharpes)
    assert found.sharpe > found.expected_max * 0.8
    assert found.dsr < 0.95
