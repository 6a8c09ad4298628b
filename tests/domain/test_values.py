"""Domain values: reasons that carry their rule's code, and events that serialise themselves."""

from __future__ import annotations


def test_a_reason_is_its_text_with_a_code_and_survives_pickling() -> None:
    import pickle

    from app.domain.values import Reason

    reason = Reason("daily trade limit reached", "daily trade limit reached: 5 of 5 entries today")
    assert reason == "daily trade limit reached: 5 of 5 entries today" and reason.code == "daily trade limit reached"
    copy = pickle.loads(pickle.dumps(reason))
    assert copy == reason and copy.code == reason.code and isinstance(copy, Reason)


def test_events_serialise_money_as_text_and_leave_unset_optionals_out() -> None:
    from decimal import Decimal

    from app.domain.events import EmergencyExit, EngineError, TradeExecuted

    executed = TradeExecuted(7, "BTCUSDT", Decimal("0.00105"), Decimal("94805.19"), Decimal("93000"), Decimal("97000"),
                             "trd1-BTCUSDT-1-p1")
    assert executed.type == "trade_executed"
    assert executed.data() == {"trade_id": 7, "symbol": "BTCUSDT", "amount": "0.00105", "price": "94805.19",
                               "stop_loss": "93000", "take_profit": "97000", "oco_order_id": "trd1-BTCUSDT-1-p1"}
    assert EngineError("exit failed", trade_id=7).data() == {"message": "exit failed", "trade_id": 7}
    assert EmergencyExit(7, "BTCUSDT", "no OCO", None).data()["exit_price"] is None  # says the sale is not done


def test_canonical_is_the_plain_text_form_read_back_for_every_decimal() -> None:
    """The fast canonical equals its definition, Decimal(format_decimal(x)), in value and in how it is written:
    trailing zeros, exponents both ways, signed zeros, 38-digit Money values, NaN and infinities."""
    from decimal import Decimal

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from app.domain.values import canonical, format_decimal

    def same(value: Decimal) -> None:
        assert str(canonical(value)) == str(Decimal(format_decimal(value))), value

    for text in ("65000.120000000000000000", "100.000", "0E-18", "-0.00", "0E+5", "1E+30", "1.5E-7", "NaN",
                 "-Infinity", "12345678901234567890.123456789012345678", "99999999999999999999999999999999999999"):
        same(Decimal(text))

    @settings(max_examples=3000, deadline=None)
    @given(st.decimals(allow_nan=True, allow_infinity=True, places=None)
           | st.builds(lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
                       st.integers(-(10**38), 10**38), st.integers(-40, 40)))
    def check(value: Decimal) -> None:
        same(value)

    check()
