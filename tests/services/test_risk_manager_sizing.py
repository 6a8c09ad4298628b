"""Position size: exact Decimal, risk-based, capped by value, rounded down to the step."""

from __future__ import annotations

from decimal import Decimal

from analysis_builders import make_rules

from app.risk.manager import RiskManager

size = RiskManager.calculate_position_size


def test_one_percent_risk_over_stop_distance() -> None:
    qty = size(Decimal("10000"), Decimal("1"), Decimal("100"), Decimal("98"), make_rules(), Decimal("1"))
    assert qty == Decimal("50.000")  # 100 USDT risk / 2 per unit


def test_rounds_down_to_step() -> None:
    qty = size(Decimal("10000"), Decimal("1"), Decimal("100"), Decimal("97"), make_rules(), Decimal("1"))
    assert qty == Decimal("33.333")  # 33.3333... never rounded up


def test_capped_by_balance_ratio() -> None:
    qty = size(Decimal("10000"), Decimal("1"), Decimal("100"), Decimal("98"), make_rules(), Decimal("0.01"))
    assert qty == Decimal("1.000")
    assert qty * Decimal("100") <= Decimal("100")


def test_cap_is_exact_even_when_the_division_does_not_terminate() -> None:
    rules = make_rules(step_size=Decimal("0.00000001"))
    qty = size(Decimal("1000"), Decimal("1"), Decimal("3"), Decimal("2.9"), rules, Decimal("0.01"))
    assert qty == Decimal("3.33333333")
    assert qty * Decimal("3") <= Decimal("10")


def test_coarse_step_can_round_to_zero() -> None:
    rules = make_rules(step_size=Decimal("1"), min_qty=Decimal("1"))
    assert size(Decimal("100"), Decimal("1"), Decimal("60000"), Decimal("59000"), rules, Decimal("1")) == 0


def test_degenerate_inputs_give_zero() -> None:
    rules = make_rules()
    assert size(Decimal("100"), Decimal("1"), Decimal("50"), Decimal("50"), rules, Decimal("1")) == 0
    assert size(Decimal("0"), Decimal("1"), Decimal("50"), Decimal("49"), rules, Decimal("1")) == 0


def test_a_whole_balance_position_leaves_room_for_the_market_buys_slippage() -> None:
    """Ratio 1 and a tight stop would size the whole balance; a market buy fills above the last price, so the
    position is capped at the balance / (1 + 0.5 %) (the issue's backtest: 295 entries refused for funds)."""
    qty = size(Decimal("10000"), Decimal("2"), Decimal("100"), Decimal("99.9"), make_rules(), Decimal("1"))
    assert qty == Decimal("99.502")  # 10000 / 100.5, rounded down to the step
    assert qty * Decimal("100") * Decimal("1.005") <= Decimal("10000")
