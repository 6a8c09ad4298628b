"""The domain values' constructors: slot_init builds exactly what the dataclass-generated __init__ builds."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.domain import values
from app.domain.values import (
    AnalystReport,
    MarketFeatures,
    RegimeAnalysis,
    Signal,
    SignalType,
    SupportResistance,
    slot_init,
)

NOW = datetime(2025, 10, 1, tzinfo=UTC)


def _plain(cls: type) -> type:
    """A fresh, undecorated dataclass of the same fields: the generated __init__."""
    return dataclasses.make_dataclass(
        cls.__name__, [(f.name, f.type, f) for f in dataclasses.fields(cls)], frozen=True, slots=True)


def _dataclass_built(cls: type, *args: object, **kwargs: object) -> object:
    return dataclasses.astuple(_plain(cls)(*args, **kwargs))


CASES = [
    (Signal, (SignalType.HOLD, 0), {"reasoning": "no setup"}),
    (Signal, (SignalType.BUY, 80, Decimal("1.5"), Decimal("1.4"), Decimal("1.9"), "trend long"), {}),
    (AnalystReport, (Signal.hold("x"), "rules"), {}),
    (AnalystReport, (Signal.hold("x"), "gemini"), {"model": "m", "latency_ms": 5, "cost_usd": Decimal("0.01"),
                                                    "error": "e", "fallback_used": True}),
    (SupportResistance, (100.5, "support", 3, 0.5), {}),
    (RegimeAnalysis, ("ranging", True, "ADX low", 14.5, 0.8), {}),
    (MarketFeatures, ("BTCUSDT", NOW, Decimal("1"), {"5m": {}}, RegimeAnalysis("ranging", True, "", 1.0, 1.0), (),
                      50.0), {}),
    (MarketFeatures, ("BTCUSDT", NOW, Decimal("1"), {}, RegimeAnalysis("ranging", True, "", 1.0, 1.0), (), 50.0),
     {"recent": {"5m": ()}}),
]


@pytest.mark.parametrize(("cls", "args", "kwargs"), CASES)
def test_slot_init_builds_what_the_dataclass_init_builds(cls: type, args: tuple, kwargs: dict) -> None:
    assert dataclasses.astuple(cls(*args, **kwargs)) == _dataclass_built(cls, *args, **kwargs)


DECORATED = [cls for cls in vars(values).values()
             if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == values.__name__]


@pytest.mark.parametrize("cls", DECORATED, ids=lambda cls: cls.__name__)
def test_every_value_class_keeps_the_generated_parameters(cls: type) -> None:
    """Names, order, kinds and defaults (a factory's field defaults to a marker, as the generated one does)."""
    ours, theirs = inspect.signature(cls).parameters.values(), inspect.signature(_plain(cls)).parameters.values()
    assert [(p.name, p.kind) for p in ours] == [(p.name, p.kind) for p in theirs]
    for mine, generated, field in zip(ours, theirs, dataclasses.fields(cls), strict=True):
        if field.default_factory is dataclasses.MISSING:
            assert mine.default is generated.default
    assert any(name.startswith("_set_") for name in cls.__init__.__code__.co_names)  # slot_init's, not generated


def test_a_default_factory_gives_each_value_its_own_and_bad_calls_fail_as_before() -> None:
    regime = RegimeAnalysis("ranging", True, "", 1.0, 1.0)
    first, second = (MarketFeatures("BTCUSDT", NOW, Decimal("1"), {}, regime, (), 50.0) for _ in range(2))
    assert first.recent == {} and first.recent is not second.recent
    with pytest.raises(TypeError):
        Signal(SignalType.HOLD)  # type: ignore[call-arg]  # confidence missing
    with pytest.raises(TypeError):
        Signal(SignalType.HOLD, 0, unknown=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        SupportResistance(1.0, "support", 1, 0.5, "extra")  # type: ignore[call-arg]


def test_slot_init_refuses_what_it_does_not_build() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        a: int

    @dataclasses.dataclass(frozen=True)
    class WithoutSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        scale: dataclasses.InitVar[int] = 1

    for cls in (Derived, Checked, KeywordOnly, WithoutSlots, WithInitVar):
        with pytest.raises(TypeError, match="does not support"):
            slot_init(cls)


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
