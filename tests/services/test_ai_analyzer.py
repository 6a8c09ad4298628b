"""GeminiAnalyzer through the real google-genai SDK against a scripted local Gemini server."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal

import pytest
from llm_fake_server import (
    FastClock,
    FixedAnalyst,
    Reply,
    ScriptedServer,
    answer,
    gemini_error,
    gemini_ok,
    make_features,
)

from app.analysts.gemini import GeminiAnalyzer, make_gemini_client
from app.analysts.llm_base import BreakerState, CircuitBreaker
from app.analysts.prompt import PROMPT_VERSION
from app.domain.values import SignalType

MODEL = "gemini-2.5-flash"


def analyzer_for(server: ScriptedServer, clock: FastClock | None = None, **kwargs: object) -> GeminiAnalyzer:
    clock = clock or FastClock()
    client = make_gemini_client("test-key", server.url, api_version="v1beta", timeout_s=5)
    return GeminiAnalyzer(client, MODEL, clock, **kwargs)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_good_answer_is_parsed_and_costed() -> None:
    with ScriptedServer() as server:
        reply = gemini_ok(answer(), prompt_tokens=1200, output_tokens=80, thoughts=20)
        reply.delay_s = 0.05
        server.add(reply)
        report = await analyzer_for(server).analyze_detailed(make_features())

    assert report.error is None and not report.fallback_used
    assert report.signal.signal == SignalType.BUY and report.signal.confidence == 82
    assert report.signal.entry_price == Decimal("65000.0")
    assert report.signal.stop_loss == Decimal("64350.0")
    assert report.signal.take_profit == Decimal("66100.5")
    assert (report.input_tokens, report.output_tokens) == (1200, 100)  # thinking tokens are billed as output
    assert report.cost_usd == (1200 * Decimal("0.30") + 100 * Decimal("2.50")) / 1_000_000
    assert report.latency_ms >= 50  # the server waited 50 ms before answering
    assert report.analyzer == "gemini" and report.model == MODEL and report.prompt_version == PROMPT_VERSION
    assert report.raw_response == answer()
    assert report.prompt and report.prompt_hash == hashlib.sha256(report.prompt.encode()).hexdigest()


@pytest.mark.asyncio
async def test_request_carries_prompt_schema_and_key_on_the_wire() -> None:
    with ScriptedServer() as server:
        server.add(gemini_ok(answer()))
        report = await analyzer_for(server).analyze_detailed(make_features())

    (seen,) = server.requests
    assert seen.path == f"/v1beta/models/{MODEL}:generateContent"
    assert seen.headers["x-goog-api-key"] == "test-key"
    assert seen.body["contents"][0]["parts"][0]["text"] == report.prompt
    config = seen.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["properties"]["signal"]["enum"] == ["buy", "sell", "hold"]


@pytest.mark.asyncio
async def test_thinking_budget_and_price_override() -> None:
    with ScriptedServer() as server:
        server.add(gemini_ok(answer(), prompt_tokens=1000, output_tokens=100))
        analyzer = analyzer_for(server, thinking_budget=0, prices_usd_per_m=(Decimal("1"), Decimal("10")))
        report = await analyzer.analyze_detailed(make_features())

    thinking = server.requests[0].body["generationConfig"]["thinkingConfig"]
    assert thinking.get("thinking_budget", thinking.get("thinkingBudget")) == 0
    assert report.cost_usd == Decimal("0.002")


@pytest.mark.asyncio
async def test_same_features_give_the_same_prompt_hash() -> None:
    with ScriptedServer() as server:
        server.add(gemini_ok(answer()), gemini_ok(answer(signal="hold")))
        analyzer = analyzer_for(server)
        first = await analyzer.analyze_detailed(make_features())
        second = await analyzer.analyze_detailed(make_features())
        other = await analyzer.analyze_detailed(make_features(last_price="65001"))

    assert first.prompt_hash == second.prompt_hash
    assert other.prompt_hash != first.prompt_hash


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("text", "reason_start"),
    [
        ('{"signal": "buy", "confidence": 80', "malformed JSON"),
        (answer(confidence="very high"), "off-schema: confidence"),
        (answer(signal="short"), "unknown signal 'short'"),
        (answer(confidence=140), "confidence 140 outside 0-100"),
        (answer(stop=65500.0), "buy with stop_loss 65500.0 not below entry_price"),
        (answer(target=64000.0), "buy with take_profit 64000.0 not above entry_price"),
        (answer(entry=70000.0, stop=69000.0, target=72000.0), "entry_price 70000.0 is 7.69% from last price"),
        (answer(stop=-1), "stop_loss -1.0 is not a positive price"),
    ],
)
async def test_bad_answers_become_hold_with_the_reason(text: str, reason_start: str) -> None:
    with ScriptedServer() as server:
        server.add(gemini_ok(text))
        analyzer = analyzer_for(server)
        report = await analyzer.analyze_detailed(make_features())

    assert report.signal.signal == SignalType.HOLD
    assert report.error is not None and report.error.startswith(reason_start)
    assert reason_start in report.signal.reasoning
    assert report.raw_response == text
    assert analyzer.breaker.consecutive_failures == 0  # the endpoint worked; the model answered badly


@pytest.mark.asyncio
async def test_sell_is_kept_as_sell() -> None:
    with ScriptedServer() as server:
        server.add(gemini_ok(answer(signal="sell", entry=None, stop=None, target=None)))
        report = await analyzer_for(server).analyze_detailed(make_features())

    assert report.signal.signal == SignalType.SELL and report.error is None


@pytest.mark.asyncio
async def test_answer_cut_by_max_tokens_is_hold() -> None:
    with ScriptedServer() as server:
        server.add(gemini_ok(None, finish="MAX_TOKENS"))
        report = await analyzer_for(server).analyze_detailed(make_features())

    assert report.signal.signal == SignalType.HOLD
    assert report.error == "no usable answer: finish_reason MAX_TOKENS"


@pytest.mark.asyncio
async def test_429_then_success_retries_once_after_backoff() -> None:
    clock = FastClock()
    with ScriptedServer() as server:
        server.add(gemini_error(429, "RESOURCE_EXHAUSTED", retry_delay="3s"), gemini_ok(answer()))
        analyzer = analyzer_for(server, clock)
        report = await analyzer.analyze_detailed(make_features())

    assert len(server.requests) == 2
    assert clock.sleeps == [3.0]  # the server's retryDelay beats the 1 s first backoff
    assert report.signal.signal == SignalType.BUY and report.error is None


@pytest.mark.asyncio
async def test_503_until_the_breaker_opens_then_no_more_calls() -> None:
    clock = FastClock()
    breaker = CircuitBreaker(clock, failure_threshold=2, reset_after_s=300)
    fallback = FixedAnalyst()
    with ScriptedServer(default=gemini_error(503, "UNAVAILABLE")) as server:
        analyzer = analyzer_for(server, clock, max_retries=1, breaker=breaker, fallback=fallback)
        first = await analyzer.analyze_detailed(make_features())
        second = await analyzer.analyze_detailed(make_features())
        calls_when_opened = len(server.requests)
        third = await analyzer.analyze_detailed(make_features())
        calls_after_open = len(server.requests)
        status = analyzer.status()

        clock._offset += timedelta(seconds=301)  # cool-down over: one trial call goes out
        server.default = gemini_ok(answer())
        fourth = await analyzer.analyze_detailed(make_features())

    assert first.signal.signal == SignalType.HOLD and "gemini HTTP 503 UNAVAILABLE" in (first.error or "")
    assert clock.sleeps == [1.0, 1.0]  # one bounded retry per call
    assert second.error and "attempt 2 of 2" in second.error
    assert calls_when_opened == 4 and calls_after_open == 4
    assert third.fallback_used and third.signal == fallback.signal and fallback.calls == 1
    assert third.error and "circuit breaker open" in third.error and third.error.endswith("fallback: rules")
    assert status["breaker"] == "open" and status["fallback"] == "rules" and status["breaker_open_until"]
    assert fourth.signal.signal == SignalType.BUY and len(server.requests) == 5
    assert breaker.state == BreakerState.CLOSED and analyzer.status()["breaker"] == "closed"


@pytest.mark.asyncio
async def test_half_open_trial_failure_reopens_the_breaker() -> None:
    clock = FastClock()
    breaker = CircuitBreaker(clock, failure_threshold=1, reset_after_s=60)
    with ScriptedServer(default=gemini_error(500, "INTERNAL")) as server:
        analyzer = analyzer_for(server, clock, max_retries=0, breaker=breaker)
        await analyzer.analyze_detailed(make_features())
        clock._offset += timedelta(seconds=61)
        trial = await analyzer.analyze_detailed(make_features())
        after = await analyzer.analyze_detailed(make_features())

    assert len(server.requests) == 2
    assert trial.error and "500" in trial.error and not trial.fallback_used
    assert after.fallback_used and after.signal.signal == SignalType.HOLD
    assert after.error and after.error.endswith("fallback: hold")


@pytest.mark.asyncio
async def test_client_error_is_not_retried() -> None:
    clock = FastClock()
    with ScriptedServer(default=gemini_error(400, "INVALID_ARGUMENT", "API key not valid")) as server:
        report = await analyzer_for(server, clock).analyze_detailed(make_features())

    assert len(server.requests) == 1 and clock.sleeps == []
    assert report.error and report.error.startswith("gemini HTTP 400 INVALID_ARGUMENT: API key not valid")


@pytest.mark.asyncio
async def test_slow_server_times_out_to_hold() -> None:
    with ScriptedServer() as server:
        server.add(Reply(200, gemini_ok(answer()).body, delay_s=6.0))
        analyzer = analyzer_for(server, timeout_s=1.0)
        report = await analyzer.analyze_detailed(make_features())

    assert report.signal.signal == SignalType.HOLD
    assert report.error and report.error.startswith("timeout")
    # a timeout is not retried; under a loaded CI machine the server may not even have read the request yet
    assert len(server.requests) <= 1 and not report.fallback_used


@pytest.mark.asyncio
async def test_unconfigured_uses_the_fallback_without_calling() -> None:
    fallback = FixedAnalyst()
    analyzer = GeminiAnalyzer(make_gemini_client("", None), MODEL, FastClock(), fallback=fallback)
    report = await analyzer.analyze_detailed(make_features())
    signal = await analyzer.analyze(make_features())

    assert report.fallback_used and report.signal == fallback.signal and signal == fallback.signal
    assert report.error == "gemini not configured; fallback: rules"
    assert report.prompt_hash is not None  # still keyed, so the decision log can show what would have been asked


@pytest.mark.asyncio
async def test_unconfigured_without_fallback_holds() -> None:
    report = await GeminiAnalyzer(None, MODEL, FastClock()).analyze_market_data_mtf("BTCUSDT", make_features())

    assert report.signal.signal == SignalType.HOLD and report.fallback_used
    assert report.error == "gemini not configured; fallback: hold"
