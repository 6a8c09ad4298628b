"""The shared LLM analyst machinery without HTTP: breaker states, backoff, and the never-raise guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llm_fake_server import FastClock, make_features

from app.analysts.llm_base import (
    AnalystCallFailed,
    BreakerState,
    CircuitBreaker,
    LLMAnalyzerBase,
    LLMAnswer,
    translate_transport_error,
)
from app.domain.clock import SimulatedClock
from app.domain.values import MarketFeatures, Signal, SignalType


class ScriptedAnalyzer(LLMAnalyzerBase):
    """An LLM analyst whose 'HTTP exchange' returns or raises what the test lists."""

    name = "scripted"

    def __init__(self, outcomes: list[LLMAnswer | Exception], **kwargs: object) -> None:
        super().__init__(model="m", clock=kwargs.pop("clock", FastClock()), **kwargs)  # type: ignore[arg-type]
        self.outcomes = outcomes
        self.calls = 0

    @property
    def configured(self) -> bool:
        return True

    async def _request(self, prompt: str) -> LLMAnswer:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class BrokenFallback:
    name = "broken"

    async def analyze(self, features: MarketFeatures) -> Signal:
        raise RuntimeError("boom")


def test_breaker_opens_after_threshold_and_half_opens_after_cool_down() -> None:
    clock = SimulatedClock(datetime(2025, 1, 1, tzinfo=UTC))
    breaker = CircuitBreaker(clock, failure_threshold=3, reset_after_s=300)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.allow() and breaker.state == BreakerState.CLOSED

    breaker.record_failure()
    assert not breaker.allow() and breaker.open_until == clock.now() + timedelta(seconds=300)
    assert "open until 2025-01-01T00:05:00+00:00" in breaker.describe()

    clock.advance(timedelta(seconds=300))
    assert breaker.allow() and breaker.state == BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one trial call at a time
    breaker.record_success()
    assert breaker.state == BreakerState.CLOSED and breaker.consecutive_failures == 0 and breaker.allow()


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(FastClock(), failure_threshold=2)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()

    assert breaker.state == BreakerState.CLOSED


@pytest.mark.asyncio
async def test_backoff_is_exponential_and_capped() -> None:
    clock = FastClock()
    failures: list[LLMAnswer | Exception] = [AnalystCallFailed("503", retryable=True, retry_after_s=100)]
    failures += [AnalystCallFailed("503", retryable=True) for _ in range(3)]
    analyzer = ScriptedAnalyzer(failures + [LLMAnswer('{"signal": "hold", "confidence": 10}')], clock=clock,
                                max_retries=4, retry_base_delay_s=1, retry_max_delay_s=5)

    report = await analyzer.analyze_detailed(make_features())

    assert clock.sleeps == [5, 2, 4, 5] and analyzer.calls == 5
    assert report.signal.signal == SignalType.HOLD and report.signal.confidence == 10 and report.error is None


@pytest.mark.asyncio
async def test_unexpected_exception_becomes_hold_not_a_crash() -> None:
    report = await ScriptedAnalyzer([ZeroDivisionError("bug")]).analyze_detailed(make_features())

    assert report.signal.signal == SignalType.HOLD and report.error == "internal error ZeroDivisionError: bug"


@pytest.mark.asyncio
async def test_failing_fallback_still_holds() -> None:
    analyzer = ScriptedAnalyzer([], fallback=BrokenFallback())
    for _ in range(5):
        analyzer.breaker.record_failure()

    report = await analyzer.analyze_detailed(make_features())

    assert analyzer.calls == 0 and report.fallback_used and report.signal.signal == SignalType.HOLD
    assert "fallback broken failed: RuntimeError" in report.signal.reasoning


@pytest.mark.asyncio
async def test_symbol_mismatch_is_refused() -> None:
    report = await ScriptedAnalyzer([]).analyze_market_data_mtf("ETHUSDT", make_features("BTCUSDT"))

    assert report.signal.signal == SignalType.HOLD and report.error == "asked ETHUSDT, features of BTCUSDT"


def test_transport_errors_are_translated_by_kind() -> None:
    import httpx

    timeout = translate_transport_error(httpx.ReadTimeout("slow"))
    refused = translate_transport_error(httpx.ConnectError("refused"))
    other = translate_transport_error(KeyError("x"))

    assert timeout.args[0].startswith("timeout") and not timeout.retryable
    assert refused.args[0].startswith("connection failed") and refused.retryable
    assert other.args[0].startswith("unexpected KeyError") and not other.retryable
