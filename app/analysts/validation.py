"""The LLM's answer is untrusted: parse it into a boundary model, sanity-check it, and turn anything odd into hold."""

from __future__ import annotations

import functools
import json
from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from app.domain.values import Signal, SignalType

MAX_REASONING_CHARS = 2000
SIGNALS = ("buy", "sell", "hold")

PriceField = float | str | None


class GeminiSignal(BaseModel):
    """The answer schema sent to the model (response_schema / json_schema) and used to parse its text."""

    model_config = ConfigDict(extra="ignore")

    signal: Literal["buy", "sell", "hold"]
    confidence: int
    entry_price: PriceField = None
    stop_loss: PriceField = None
    take_profit: PriceField = None
    reasoning: str = ""


@functools.cache
def strict_json_schema() -> dict[str, object]:
    """GeminiSignal as a JSON schema with every field required and nothing extra (OpenAI's strict mode); built
    once (about 0.7 ms), callers only serialise it."""
    schema = GeminiSignal.model_json_schema()
    properties = {
        name: {k: v for k, v in spec.items() if k not in ("default", "title")}  # strict mode rejects defaults
        for name, spec in schema["properties"].items()
    }
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def parse_answer(text: str | None) -> GeminiSignal | str:
    """The model's text as a GeminiSignal, or the reason it is not one."""
    if text is None or not text.strip():
        return "empty answer"
    try:
        data = json.loads(_strip_code_fence(text))
    except json.JSONDecodeError as e:
        return f"malformed JSON: {e.msg} at char {e.pos}"
    if not isinstance(data, dict):
        return f"off-schema: expected a JSON object, got {type(data).__name__}"
    signal = data.get("signal")
    if isinstance(signal, str) and signal.strip().lower() in SIGNALS:
        data["signal"] = signal.strip().lower()
    else:
        return f"unknown signal {str(signal)[:40]!r}"
    try:
        return GeminiSignal.model_validate(data)
    except ValidationError as e:
        return "off-schema: " + "; ".join(_describe(err) for err in e.errors()[:3])


def validate_signal(
    parsed_or_error: GeminiSignal | str | None, last_price: Decimal, max_entry_deviation_pct: Decimal
) -> tuple[Signal, str | None]:
    """A domain Signal and None, or hold and the reason the answer was refused."""
    if parsed_or_error is None:
        return _refuse("no answer")
    if isinstance(parsed_or_error, str):
        return _refuse(parsed_or_error)
    answer = parsed_or_error
    if not 0 <= answer.confidence <= 100:
        return _refuse(f"confidence {answer.confidence} outside 0-100")
    try:
        entry, stop, target = (_price(answer, name) for name in ("entry_price", "stop_loss", "take_profit"))
    except ValueError as e:
        return _refuse(str(e))
    problem = _level_problem(answer.signal, entry, stop, target) or _deviation_problem(
        entry, last_price, max_entry_deviation_pct
    )
    if problem:
        return _refuse(problem)
    reasoning = answer.reasoning.strip()[:MAX_REASONING_CHARS]
    return Signal(SignalType(answer.signal), answer.confidence, entry, stop, target, reasoning), None


def _refuse(reason: str) -> tuple[Signal, str]:
    return Signal.hold(f"analyst answer refused: {reason}"), reason


def _price(answer: GeminiSignal, name: str) -> Decimal | None:
    raw = getattr(answer, name)
    if raw is None:
        return None
    try:
        value = Decimal(str(raw).strip())  # str() keeps the float's shortest repr, never its binary expansion
    except InvalidOperation as e:
        raise ValueError(f"{name} {str(raw)[:40]!r} is not a number") from e
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} {raw} is not a positive price")
    return value


def _level_problem(signal: str, entry: Decimal | None, stop: Decimal | None, target: Decimal | None) -> str | None:
    if signal != "buy":
        return None  # hold needs no levels; a sell is only recorded (spot never shorts)
    if entry is None or stop is None or target is None:
        return "buy without entry_price, stop_loss and take_profit"
    if stop >= entry:
        return f"buy with stop_loss {stop} not below entry_price {entry}"
    if target <= entry:
        return f"buy with take_profit {target} not above entry_price {entry}"
    return None


def _deviation_problem(entry: Decimal | None, last_price: Decimal, max_pct: Decimal) -> str | None:
    if entry is None or last_price <= 0:
        return None
    deviation_pct = abs(entry - last_price) / last_price * 100
    if deviation_pct > max_pct:
        return f"entry_price {entry} is {deviation_pct:.2f}% from last price {last_price} (max {max_pct}%)"
    return None


def _strip_code_fence(text: str) -> str:
    """Local models often wrap JSON in ```json fences despite the JSON mode."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return stripped


def _describe(error: ErrorDetails) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "answer"
    return f"{where}: {error['msg']}"
