"""OpenAICompatibleAnalyzer over a real httpx client against a scripted local chat-completions server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
from llm_fake_server import (
    FastClock,
    FixedAnalyst,
    Reply,
    ScriptedServer,
    answer,
    chat_error,
    chat_ok,
    make_features,
)

from app.analysts.llm_base import CircuitBreaker
from app.analysts.openai_compatible import OpenAICompatibleAnalyzer
from app.analysts.prompt import PROMPT_VERSION
from app.domain.values import SignalType

MODEL = "qwen2.5:7b"


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def analyzer_for(
    http: httpx.AsyncClient, server: ScriptedServer, clock: FastClock | None = None, **kwargs: object
) -> OpenAICompatibleAnalyzer:
    return OpenAICompatibleAnalyzer(http, server.url + "/v1/", MODEL, clock or FastClock(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_good_answer_with_schema_on_the_wire(http: httpx.AsyncClient) -> None:
    with ScriptedServer() as server:
        server.add(chat_ok(answer(), prompt_tokens=900, completion_tokens=60))
        analyzer = analyzer_for(http, server, api_key="local-key", input_price_per_m=Decimal("0.10"),
                                output_price_per_m=Decimal("0.40"))
        report = await analyzer.analyze_detailed(make_features())

    (seen,) = server.requests
    assert seen.path == "/v1/chat/completions" and seen.headers["authorization"] == "Bearer local-key"
    assert seen.body["model"] == MODEL and seen.body["messages"][0]["content"] == report.prompt
    json_schema = seen.body["response_format"]["json_schema"]
    assert seen.body["response_format"]["type"] == "json_schema" and json_schema["strict"] is True
    assert json_schema["schema"]["properties"]["signal"]["enum"] == ["buy", "sell", "hold"]
    assert report.signal.signal == SignalType.BUY and report.signal.take_profit == Decimal("66100.5")
    assert report.error is None and report.analyzer == "openai_compatible" and report.model == MODEL
    assert (report.input_tokens, report.output_tokens) == (900, 60)
    assert report.cost_usd == (900 * Decimal("0.10") + 60 * Decimal("0.40")) / 1_000_000
    assert report.prompt_version == PROMPT_VERSION


@pytest.mark.asyncio
async def test_same_prompt_as_gemini_for_the_same_features(http: httpx.AsyncClient) -> None:
    from app.analysts.gemini import GeminiAnalyzer

    gemini = GeminiAnalyzer(None, "gemini-2.5-flash", FastClock())
    with ScriptedServer() as server:
        server.add(chat_ok(answer()))
        report = await analyzer_for(http, server).analyze_detailed(make_features())

    assert report.prompt == gemini._generate_mtf_prompt(make_features())


@pytest.mark.asyncio
async def test_fenced_json_from_a_local_model_is_accepted(http: httpx.AsyncClient) -> None:
    with ScriptedServer() as server:
        server.add(chat_ok("```json\n" + answer() + "\n```"))
        report = await analyzer_for(http, server).analyze_detailed(make_features())

    assert report.signal.signal == SignalType.BUY and report.error is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("reply", "reason_start"),
    [
        (chat_ok("I think you should buy"), "malformed JSON"),
        (chat_ok(answer(confidence=None)), "off-schema: confidence"),
        (chat_ok(answer(stop=65200.0)), "buy with stop_loss 65200.0 not below"),
        (chat_ok(answer(entry=60000.0, stop=59000.0, target=62000.0)), "entry_price 60000.0 is 7.69% from"),
        (Reply(200, "<html>proxy error</html>"), "malformed chat completion body"),
    ],
)
async def test_bad_answers_become_hold(http: httpx.AsyncClient, reply: Reply, reason_start: str) -> None:
    with ScriptedServer() as server:
        server.add(reply)
        report = await analyzer_for(http, server).analyze_detailed(make_features())

    assert report.signal.signal == SignalType.HOLD
    assert report.error is not None and report.error.startswith(reason_start)


@pytest.mark.asyncio
async def test_429_then_success_waits_retry_after(http: httpx.AsyncClient) -> None:
    clock = FastClock()
    with ScriptedServer() as server:
        server.add(chat_error(429, "slow down", retry_after="2"), chat_ok(answer()))
        report = await analyzer_for(http, server, clock).analyze_detailed(make_features())

    assert len(server.requests) == 2 and clock.sleeps == [2.0]
    assert report.signal.signal == SignalType.BUY


@pytest.mark.asyncio
async def test_503_until_the_breaker_opens(http: httpx.AsyncClient) -> None:
    clock = FastClock()
    fallback = FixedAnalyst()
    breaker = CircuitBreaker(clock, failure_threshold=2, reset_after_s=300)
    with ScriptedServer(default=chat_error(503, "model loading")) as server:
        analyzer = analyzer_for(http, server, clock, max_retries=2, breaker=breaker, fallback=fallback)
        reports = [await analyzer.analyze_detailed(make_features()) for _ in range(4)]

    assert len(server.requests) == 6  # 2 calls x 3 attempts, then the breaker holds the rest back
    assert clock.sleeps == [1.0, 2.0, 1.0, 2.0]  # exponential backoff inside each call
    assert [r.fallback_used for r in reports] == [False, False, True, True]
    assert reports[0].error and reports[0].error.startswith("chat completions HTTP 503")
    assert reports[3].signal == fallback.signal and fallback.calls == 2


@pytest.mark.asyncio
async def test_slow_server_times_out_to_hold(http: httpx.AsyncClient) -> None:
    with ScriptedServer() as server:
        server.add(Reply(200, chat_ok(answer()).body, delay_s=6.0))
        report = await analyzer_for(http, server, timeout_s=1.0).analyze_detailed(make_features())

    assert report.signal.signal == SignalType.HOLD
    assert report.error and report.error.startswith("timeout")
    # a timeout is not retried; under a loaded CI machine the server may not even have read the request yet
    assert len(server.requests) <= 1


@pytest.mark.asyncio
async def test_connection_refused_is_retried_then_hold(http: httpx.AsyncClient) -> None:
    clock = FastClock()
    with ScriptedServer() as server:
        url = server.url
    analyzer = OpenAICompatibleAnalyzer(http, url, MODEL, clock, max_retries=1)  # the server is gone
    report = await analyzer.analyze_detailed(make_features())

    assert report.signal.signal == SignalType.HOLD and clock.sleeps == [1.0]
    assert report.error and report.error.startswith("connection failed (ConnectError")


@pytest.mark.asyncio
async def test_unconfigured_uses_the_fallback() -> None:
    fallback = FixedAnalyst()
    report = await OpenAICompatibleAnalyzer(None, None, MODEL, FastClock(), fallback=fallback).analyze_detailed(
        make_features()
    )

    assert report.fallback_used and report.signal == fallback.signal
    assert report.error == "openai_compatible not configured; fallback: rules"
