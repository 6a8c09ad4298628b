"""The paper venue's fill rules for a sell stop-limit: the best price its candle offers at or above its limit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.venues.paper.fill_rules import resting_limit_sell_price, triggered_stop_limit_sell_price

D = Decimal
TRIGGER, LIMIT, SLIPPAGE = D("100"), D("99.8"), D("0.0002")


@pytest.mark.parametrize(("open_", "high", "low", "expected", "why"), [
    (D("101"), D("101.5"), D("99"), D("99.98"), "trades down through the trigger: the trigger less the slippage"),
    (D("101"), D("101.5"), D("99.99"), D("99.99"), "only just reaches the trigger: never below the candle's low"),
    (D("99.9"), D("100.2"), D("99"), D("99.88002"), "opens between trigger and limit: the open less the slippage"),
    (D("99.5"), D("99.9"), D("99"), D("99.8"), "opens below the limit and rises back to it: the limit"),
    (D("99.5"), D("99.7"), D("99"), None, "the whole candle below the limit: it rests"),
])
def test_a_triggered_sell_stop_limit_fills_at_the_best_price_its_candle_offers(
        open_: Decimal, high: Decimal, low: Decimal, expected: Decimal | None, why: str) -> None:
    price = triggered_stop_limit_sell_price(open_, high, low, TRIGGER, LIMIT, SLIPPAGE)
    assert price == expected, why
    if price is not None:
        assert low <= price <= high and price >= LIMIT


def test_a_slippage_wider_than_the_gap_still_never_fills_below_the_limit() -> None:
    assert triggered_stop_limit_sell_price(D("101"), D("102"), D("98"), TRIGGER, LIMIT, D("0.01")) == LIMIT


def test_floats_follow_the_same_rule() -> None:
    assert triggered_stop_limit_sell_price(101.0, 101.5, 99.0, 100.0, 99.8, 0.0002) == pytest.approx(99.98)
    assert triggered_stop_limit_sell_price(99.5, 99.7, 99.0, 100.0, 99.8, 0.0002) is None


@pytest.mark.parametrize(("open_", "high", "expected"), [
    (D("99.9"), D("100"), D("99.9")),  # opens above the limit: the open
    (D("99"), D("99.8"), D("99.8")),  # rises to the limit: the limit
    (D("99"), D("99.7"), None),  # stays below: still resting
])
def test_a_resting_sell_limit_fills_at_the_open_above_it_else_at_the_limit(
        open_: Decimal, high: Decimal, expected: Decimal | None) -> None:
    assert resting_limit_sell_price(open_, high, LIMIT) == expected
