"""The pure checks on an LLM answer: parsing into the boundary model and the sanity rules."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.analysts.validation import MAX_REASONING_CHARS, GeminiSignal, parse_answer, validate_signal
from app.domain.values import SignalType

LAST = Decimal("65000")
MAX_DEV = Decimal("1")


def buy(**overrides: object) -> GeminiSignal:
    fields: dict[str, object] = {"signal": "buy", "confidence": 80, "entry_price": "65010.5", "stop_loss": 64500,
                                 "take_profit": 66000.25, "reasoning": "trend"}
    return GeminiSignal.model_validate(fields | overrides)


def test_good_buy_becomes_a_decimal_signal() -> None:
    signal, reason = validate_signal(buy(), LAST, MAX_DEV)

    assert reason is None and signal.signal == SignalType.BUY and signal.confidence == 80
    assert (signal.entry_price, signal.stop_loss, signal.take_profit) == (
        Decimal("65010.5"), Decimal("64500"), Decimal("66000.25"))


def test_float_prices_keep_their_short_repr() -> None:
    signal, _ = validate_signal(buy(take_profit=0.1 + 0.2 + 65999.7), LAST, MAX_DEV)

    assert signal.take_profit == Decimal(str(0.1 + 0.2 + 65999.7))  # never the float's long binary expansion


@pytest.mark.parametrize(
    ("parsed", "reason"),
    [
        (None, "no answer"),
        ("malformed JSON: x", "malformed JSON: x"),
        (buy(confidence=-1), "confidence -1 outside 0-100"),
        (buy(entry_price=None), "buy without entry_price, stop_loss and take_profit"),
        (buy(stop_loss="65010.5"), "buy with stop_loss 65010.5 not below entry_price 65010.5"),
        (buy(take_profit="65010.5"), "buy with take_profit 65010.5 not above entry_price 65010.5"),
        (buy(entry_price="abc"), "entry_price 'abc' is not a number"),
        (buy(entry_price="NaN"), "entry_price NaN is not a positive price"),
        (buy(stop_loss=0), "stop_loss 0.0 is not a positive price"),
        (buy(entry_price="65651", stop_loss="65000", take_profit="67000"), "entry_price 65651 is 1.00% from"),
    ],
)
def test_refusals_are_hold_with_reason(parsed: GeminiSignal | str | None, reason: str) -> None:
    signal, got = validate_signal(parsed, LAST, MAX_DEV)

    assert signal.signal == SignalType.HOLD and signal.confidence == 0
    assert got is not None and got.startswith(reason)


def test_entry_exactly_at_the_deviation_limit_passes() -> None:
    _, reason = validate_signal(buy(entry_price="65650", stop_loss="65000", take_profit="67000"), LAST, MAX_DEV)

    assert reason is None


def test_sell_and_hold_are_kept_and_reasoning_is_capped() -> None:
    sell, sell_reason = validate_signal(GeminiSignal(signal="sell", confidence=70, reasoning="x" * 5000), LAST, MAX_DEV)
    hold, hold_reason = validate_signal(GeminiSignal(signal="hold", confidence=40), LAST, MAX_DEV)

    assert sell.signal == SignalType.SELL and sell_reason is None and len(sell.reasoning) == MAX_REASONING_CHARS
    assert hold.signal == SignalType.HOLD and hold.confidence == 40 and hold_reason is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "empty answer"),
        ("  ", "empty answer"),
        ("[1, 2]", "off-schema: expected a JSON object, got list"),
        ('{"signal": "long", "confidence": 5}', "unknown signal 'long'"),
        ('{"signal": "buy"}', "off-schema: confidence: Field required"),
        ("buy now!", "malformed JSON"),
    ],
)
def test_parse_answer_reasons(text: str | None, reason: str) -> None:
    result = parse_answer(text)

    assert isinstance(result, str) and result.startswith(reason)


def test_parse_answer_accepts_fences_and_upper_case_signal() -> None:
    text = "```json\n" + json.dumps({"signal": " BUY", "confidence": 75, "reasoning": "r"}) + "\n```"

    result = parse_answer(text)

    assert isinstance(result, GeminiSignal) and result.signal == "buy" and result.confidence == 75
