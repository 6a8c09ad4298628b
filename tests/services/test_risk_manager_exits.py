"""Adaptive stop and target: placement from S/R + ATR, and every clamp."""

from __future__ import annotations

from decimal import Decimal

from analysis_builders import buy, make_context, make_features

from app.domain.risk import RiskLimits
from app.domain.values import Side, SupportResistance
from app.risk.manager import RiskManager

ENTRY = Decimal("100")


def levels(support: float | None, resistance: float | None) -> tuple[SupportResistance, ...]:
    out = []
    if support is not None:
        out.append(SupportResistance(support, "support", 3, 0.8))
    if resistance is not None:
        out.append(SupportResistance(resistance, "resistance", 2, 0.6))
    return tuple(out)


def plan(support: float | None, resistance: float | None, atr: float = 0.2, symbol: str = "XYZUSDT",
         limits: RiskLimits | None = None):
    return RiskManager(limits or RiskLimits()).calculate_adaptive_risk_reward(
        Side.BUY, ENTRY, levels(support, resistance), atr, symbol
    )


def test_stop_below_support_by_atr_buffer_and_target_before_resistance() -> None:
    # default profile: 1.5 x ATR below support, target 0.15 % under resistance
    result = plan(99.0, 103.0)
    assert result.stop_loss == Decimal("98.7")
    assert result.take_profit == Decimal("102.8455")
    assert result.risk_reward == Decimal("2.1888")


def test_far_support_clamps_stop_to_max_distance() -> None:
    assert plan(95.0, 103.0).stop_loss == Decimal("97.5")


def test_near_support_widens_stop_to_min_distance() -> None:
    assert plan(99.95, 103.0, atr=0.0).stop_loss == Decimal("99.2")


def test_asset_profile_narrows_stop_range() -> None:
    # BTC allows at most 2.0 % although the global maximum is 2.5 %
    assert plan(95.0, 103.0, symbol="BTCUSDT").stop_loss == Decimal("98.0")


def test_close_resistance_pushes_target_to_min_risk_reward() -> None:
    result = plan(99.0, 100.5)  # risk 1.3 -> 1.5 R = 1.95
    assert result.take_profit == Decimal("101.95")
    assert result.risk_reward == Decimal("1.5")


def test_far_resistance_caps_target_at_max_risk_reward() -> None:
    result = plan(99.0, 120.0)  # risk 1.3 -> 3 R = 3.9 (inside the 5 % cap)
    assert result.take_profit == Decimal("103.9")
    assert result.risk_reward == Decimal("3")


def test_target_never_nearer_than_min_target_distance() -> None:
    result = plan(99.95, 100.5, atr=0.0)  # stop 0.8 %: 1.5 R is 1.2 %, below the 1.5 % floor
    assert result.take_profit == Decimal("101.5")
    assert result.risk_reward == Decimal("1.875")


def test_target_never_beyond_max_target_distance() -> None:
    limits = RiskLimits(max_risk_reward=Decimal("5"))
    assert plan(95.0, 120.0, limits=limits).take_profit == Decimal("105")  # 5 R would be 12.5 %


def test_no_levels_uses_atr_stop_and_two_r_target() -> None:
    result = plan(None, None, atr=0.5)  # 2 x 1.5 x 0.5 = 1.5 % stop, 2 R = 3 %
    assert result.stop_loss == Decimal("98.5")
    assert result.take_profit == Decimal("103")


def test_levels_on_the_wrong_side_are_ignored() -> None:
    wrong = (SupportResistance(101.0, "support", 3, 0.8), SupportResistance(99.0, "resistance", 2, 0.6))
    result = RiskManager(RiskLimits()).calculate_adaptive_risk_reward(Side.BUY, ENTRY, wrong, 0.5, "XYZUSDT")
    assert result.stop_loss == Decimal("98.5")


def test_inconsistent_ranges_give_a_plan_below_min_rr_that_validation_rejects() -> None:
    limits = RiskLimits(min_risk_reward=Decimal("3"), max_risk_reward=Decimal("4"))
    result = plan(95.0, 120.0, limits=limits)  # stop 2.5 %, 3 R = 7.5 % > 5 % cap
    assert result.risk_reward < Decimal("3")
    decision = RiskManager(limits).validate_trade_signal(
        buy(), make_features(levels=levels(95.0, 120.0)), make_context()
    )
    assert not decision.approved
    assert any(r.startswith("risk:reward 2.00 below minimum 3") for r in decision.reasons)


def test_sell_side_mirrors_the_plan() -> None:
    result = RiskManager(RiskLimits()).calculate_adaptive_risk_reward(
        Side.SELL, ENTRY, levels(97.0, 101.0), 0.2, "XYZUSDT"
    )
    assert result.stop_loss == Decimal("101.3")
    assert result.take_profit < ENTRY < result.stop_loss
    assert result.risk_reward >= Decimal("1.5")
