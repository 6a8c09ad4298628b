"""Trade validation: the approved case, each rule rejecting on its own, and properties of approvals."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from analysis_builders import CYCLE, buy, make_context, make_features, make_rules
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.risk import RiskLimits, TradingConfig
from app.domain.values import Signal, SignalType, SupportResistance
from app.risk.manager import RiskManager

RISK = RiskManager(RiskLimits())


def test_a_good_signal_is_approved_with_rounded_exits_and_size() -> None:
    decision = RISK.validate_trade_signal(buy(), make_features(), make_context())
    assert decision.approved, decision.reasons
    assert decision.entry_price == Decimal("100")
    assert decision.stop_loss == Decimal("98.70")
    assert decision.take_profit == Decimal("102.85")  # 102.8455 rounded up to the tick
    assert decision.quantity == Decimal("1.000")  # risk allows 76.9 units, the 0.01 x balance cap allows 1
    assert decision.risk_amount == Decimal("1.30000")
    assert 50 <= decision.confidence_threshold <= 95


def reasons_for(signal=None, features=None, context=None, limits=None) -> tuple[str, ...]:
    manager = RiskManager(limits) if limits else RISK
    decision = manager.validate_trade_signal(signal or buy(), features or make_features(), context or make_context())
    assert not decision.approved
    return decision.reasons


def test_sell_is_rejected_as_no_long_entry() -> None:
    signal = Signal(SignalType.SELL, 90, reasoning="bearish")
    assert reasons_for(signal=signal) == ("spot cannot short: sell means no long entry",)


def test_hold_is_rejected_as_hold() -> None:
    reasons = reasons_for(signal=Signal(SignalType.HOLD, 90, reasoning="nothing to do"))
    assert reasons == ("hold: nothing to do",)


def test_low_confidence_is_rejected_with_both_numbers() -> None:
    no_jitter = RiskLimits(randomize_thresholds=False)
    assert reasons_for(signal=buy(confidence=59), limits=no_jitter) == ("confidence 59 below threshold 60",)


def test_open_position_cap() -> None:
    context = make_context(open_symbols=("AUSDT", "BUSDT", "CUSDT"))
    assert reasons_for(context=context) == ("open positions 3 at the limit of 3",)


def test_symbol_already_held() -> None:
    assert reasons_for(context=make_context(open_symbols=("XYZUSDT",))) == ("already holding XYZUSDT",)


def test_daily_trade_limit() -> None:
    reasons = reasons_for(context=make_context(entries_today=5))
    assert reasons == ("daily trade limit reached: 5 of 5 entries today",)


def test_the_daily_budget_is_spread_over_the_day() -> None:
    """Five a day: floor(5 x 300/86400) + 1 = 1 by 00:05, floor(5 x 0.5) + 1 = 3 by noon, 5 from 19:12; the limit
    itself still says the last word."""
    midnight = CYCLE.replace(hour=0, minute=5)
    noon = CYCLE.replace(hour=12, minute=0)
    paced = "daily budget paced: 1 of 5 entries today, at most 1 by 00:05 UTC"
    assert reasons_for(context=make_context(entries_today=1, cycle_time=midnight)) == (paced,)
    assert RISK.validate_trade_signal(buy(), make_features(), make_context(entries_today=0,
                                                                           cycle_time=midnight)).approved
    assert RISK.validate_trade_signal(buy(), make_features(), make_context(entries_today=2, cycle_time=noon)).approved
    assert reasons_for(context=make_context(entries_today=3, cycle_time=noon)) == (
        "daily budget paced: 3 of 5 entries today, at most 3 by 12:00 UTC",)
    evening = CYCLE.replace(hour=19, minute=15)
    assert RISK.validate_trade_signal(buy(), make_features(), make_context(entries_today=4,
                                                                           cycle_time=evening)).approved
    assert reasons_for(context=make_context(entries_today=5, cycle_time=evening)) == (
        "daily trade limit reached: 5 of 5 entries today",)
    unpaced = RiskManager(replace(RiskLimits(), daily_pacing=False))
    assert unpaced.validate_trade_signal(buy(), make_features(), make_context(entries_today=1,
                                                                             cycle_time=midnight)).approved


def test_balance_below_minimum() -> None:
    reasons = reasons_for(context=make_context(usdt_balance=Decimal("9.99")))
    assert "balance 9.99 USDT below minimum account balance 10" in reasons


def test_regime_that_forbids_trading() -> None:
    reasons = reasons_for(features=make_features(regime="volatile", allowed=False))
    assert reasons == ("regime volatile does not allow entries: volatile for the test",)


def test_exit_plan_rule_names_each_broken_range() -> None:
    # the adaptive plan always lands inside the ranges; the rule still guards against anything else
    problems = RISK.rules.check_exit_plan(Decimal("100"), Decimal("97"), Decimal("106"))
    assert problems == ("stop distance 3.00% outside 0.8-2.5%", "target distance 6.00% outside 1.5-5%")
    assert RISK.rules.check_exit_plan(Decimal("100"), Decimal("99"), Decimal("101.2")) == (
        "risk:reward 1.20 below minimum 1.5", "target distance 1.20% outside 1.5-5%")
    assert RISK.rules.check_exit_plan(Decimal("100"), Decimal("101"), Decimal("103"))[0].startswith("exit plan: need stop")


def test_position_value_below_min_notional() -> None:
    reasons = reasons_for(context=make_context(rules=make_rules(min_notional=Decimal("150"))))
    assert reasons == ("position value 100.00 below minimum 150 (min trade value 5, min notional 150)",)


def test_position_value_below_min_trade_value() -> None:
    config = TradingConfig(user_id=7, max_balance_trade_ratio=Decimal("0.0004"))  # cap 4 USDT
    reasons = reasons_for(context=make_context(config=config))
    assert reasons == ("position value 4.00 below minimum 5 (min trade value 5, min notional 5)",)


def test_position_value_above_cap_rule() -> None:
    problems = RISK.rules.check_position_value(Decimal("2"), Decimal("100"), make_context())
    assert problems == ("position value 200.00 above cap 100.00 (0.01 x balance)",)


def test_quantity_below_min_qty() -> None:
    reasons = reasons_for(context=make_context(rules=make_rules(min_qty=Decimal("2"))))
    assert len(reasons) == 1
    assert reasons[0].startswith("quantity 1.0") and reasons[0].endswith("below minimum quantity 2")


def test_all_failing_rules_are_reported_together() -> None:
    context = make_context(open_symbols=("XYZUSDT", "AUSDT", "BUSDT"), entries_today=9)
    reasons = reasons_for(signal=buy(confidence=10), context=context,
                          features=make_features(regime="trending_down", allowed=False))
    assert len(reasons) == 5
    assert [r.split(" ")[0] for r in reasons] == ["confidence", "open", "already", "daily", "regime"]


def test_tick_rounding_keeps_a_minimum_rr_plan_valid() -> None:
    # a plan clamped to exactly 1.5 R at an awkward price: rounding the stop down must not break the R:R
    levels = (SupportResistance(6824.06, "support", 2, 0.5), SupportResistance(6842.15, "resistance", 2, 0.5))
    features = make_features(price="6831.52", levels=levels, atr=49.99)
    rules = make_rules(step_size=Decimal("0.00001"), min_qty=Decimal("0.00001"))
    decision = RISK.validate_trade_signal(buy(), features, make_context(rules=rules))
    assert decision.approved, decision.reasons
    risk, reward = decision.entry_price - decision.stop_loss, decision.take_profit - decision.entry_price
    assert reward / risk >= Decimal("1.5")


def test_analyst_levels_are_ignored_for_the_final_exits() -> None:
    wild = replace(buy(), stop_loss=Decimal("50"), take_profit=Decimal("500"))
    assert RISK.validate_trade_signal(wild, make_features(), make_context()).stop_loss == Decimal("98.70")


def test_missing_price_rejects_instead_of_raising() -> None:
    decision = RISK.validate_trade_signal(buy(), make_features(price="0", indicators={}), make_context())
    assert not decision.approved
    assert decision.reasons[0].startswith("price")


prices = st.decimals(min_value=Decimal("0.5"), max_value=Decimal("90000"), places=2)
fractions = st.floats(min_value=0.0005, max_value=0.08)


@settings(max_examples=150, deadline=None)
@given(price=prices, below=fractions, above=fractions, atr_frac=st.floats(0.0, 0.02),
       balance=st.decimals(min_value=Decimal("10"), max_value=Decimal("1000000"), places=2),
       ratio=st.sampled_from([Decimal("0.01"), Decimal("0.1"), Decimal("1")]))
def test_approved_decisions_always_respect_the_limits(price, below, above, atr_frac, balance, ratio) -> None:
    p = float(price)
    levels = (SupportResistance(p * (1 - below), "support", 2, 0.5), SupportResistance(p * (1 + above), "resistance",
                                                                                        2, 0.5))
    features = make_features(price=str(price), levels=levels, atr=p * atr_frac)
    context = make_context(usdt_balance=balance, config=TradingConfig(user_id=7, max_balance_trade_ratio=ratio),
                           rules=make_rules(tick_size=Decimal("0.01"), step_size=Decimal("0.0001"),
                                            min_qty=Decimal("0.0001")))
    decision = RISK.validate_trade_signal(buy(), features, context)
    if not decision.approved:
        return
    entry, stop, target = decision.entry_price, decision.stop_loss, decision.take_profit
    assert stop < entry < target
    assert (target - entry) / (entry - stop) >= Decimal("1.5")
    assert Decimal("0.8") <= (entry - stop) / entry * 100 <= Decimal("2.5")
    assert Decimal("1.5") <= (target - entry) / entry * 100 <= Decimal("5")
    assert decision.position_value <= balance * ratio
    assert decision.risk_amount <= balance / 100


def test_every_rejection_carries_its_rules_code_so_counting_needs_no_parsing() -> None:
    cases = {
        "open positions at the limit": make_context(open_symbols=("AUSDT", "BUSDT", "CUSDT")),
        "already holding": make_context(open_symbols=("XYZUSDT",)),
    }
    for code, context in cases.items():
        (reason,) = reasons_for(context=context)
        assert reason.code == code  # type: ignore[attr-defined]
    (low,) = reasons_for(signal=buy(confidence=59), limits=RiskLimits(randomize_thresholds=False))
    assert low.code == "confidence below threshold"  # type: ignore[attr-defined]


def test_the_engines_pre_checks_are_the_validations_own_rules() -> None:
    """The cheap checks the engine asks before reading the balance say what validation would say, word for word."""
    config = make_context().config
    for open_symbols in (("XYZUSDT",), ("AUSDT", "BUSDT", "CUSDT")):
        skipped = RISK.skip_reason(config, "XYZUSDT", buy(), open_symbols, make_context().cycle_time)
        assert skipped is not None
        assert (skipped, skipped.code) in {(r, r.code) for r in reasons_for(context=make_context(open_symbols=open_symbols))}
    hold = Signal(SignalType.HOLD, 90, reasoning="nothing to do")
    assert RISK.skip_reason(config, "XYZUSDT", hold, (), make_context().cycle_time) == reasons_for(signal=hold)[0]
    sell = Signal(SignalType.SELL, 90, reasoning="bearish")
    assert RISK.skip_reason(config, "XYZUSDT", sell, (), make_context().cycle_time) is None  # judged in full
