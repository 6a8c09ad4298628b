"""The Gemini analyst: the seed's multi-timeframe prompt sent through google-genai's async client."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from app.analysts.llm_base import (
    AnalystCallFailed,
    CircuitBreaker,
    LLMAnalyzerBase,
    LLMAnswer,
    is_retryable_status,
    translate_transport_error,
)
from app.analysts.validation import GeminiSignal
from app.domain.clock import Clock
from app.domain.ports import SignalProvider

# Gemini Developer API paid tier, USD per 1M tokens, for gemini-2.5-flash (text input; output includes thinking
# tokens). Not in reference/gemini-api.md; taken from public price lists (ai.google.dev/gemini-api/docs/pricing).
GEMINI_25_FLASH_INPUT_USD_PER_M = Decimal("0.30")
GEMINI_25_FLASH_OUTPUT_USD_PER_M = Decimal("2.50")
GEMINI_PRICES_USD_PER_M: dict[str, tuple[Decimal, Decimal]] = {
    "gemini-2.5-flash": (GEMINI_25_FLASH_INPUT_USD_PER_M, GEMINI_25_FLASH_OUTPUT_USD_PER_M),
}
DEFAULT_API_VERSION = "v1beta"  # SDK 3.x defaults to v1; set it explicitly so the bot and a fake server agree


def make_gemini_client(
    api_key: str | None, base_url: str | None = None, api_version: str = DEFAULT_API_VERSION, timeout_s: float = 20.0
) -> genai.Client | None:
    """A google-genai client with the SDK's own retries off (ours back off on the injected clock), or None
    when no key is set, which makes the analyst fall back."""
    if not api_key or not api_key.strip():
        return None
    options = types.HttpOptions(
        base_url=base_url or None,
        api_version=api_version,
        timeout=max(1, int(timeout_s * 1000)),  # milliseconds
        retry_options=types.HttpRetryOptions(attempts=1),  # one try; also disables the implicit aiohttp retry
    )
    return genai.Client(api_key=api_key.strip(), http_options=options)


class GeminiAnalyzer(LLMAnalyzerBase):
    """SignalProvider and DetailedSignalProvider on Gemini; any failure is hold (or the fallback) with a reason."""

    name = "gemini"

    def __init__(
        self,
        client: genai.Client | None,
        model: str,
        clock: Clock,
        timeout_s: float = 20,
        max_retries: int = 2,
        breaker: CircuitBreaker | None = None,
        fallback: SignalProvider | None = None,
        max_entry_deviation_pct: Decimal = Decimal("1"),
        *,
        retry_base_delay_s: float = 1.0,
        retry_max_delay_s: float = 30.0,
        thinking_budget: int | None = None,
        prices_usd_per_m: tuple[Decimal, Decimal] | None = None,
    ) -> None:
        """`thinking_budget` caps 2.5-series thinking (billed as output; 0 turns it off, None is the model's
        default). `prices_usd_per_m` (input, output) overrides the price table for models it does not know."""
        super().__init__(
            model=model, clock=clock, timeout_s=timeout_s, max_retries=max_retries, breaker=breaker,
            fallback=fallback, max_entry_deviation_pct=max_entry_deviation_pct,
            retry_base_delay_s=retry_base_delay_s, retry_max_delay_s=retry_max_delay_s,
        )
        self._client = client
        self._thinking_budget = thinking_budget
        prices = prices_usd_per_m or GEMINI_PRICES_USD_PER_M.get(model.removeprefix("models/"))
        if prices:  # an unknown model without an override is costed at zero rather than guessed
            self.input_price_per_m, self.output_price_per_m = prices

    @property
    def configured(self) -> bool:
        return self._client is not None and bool(self.model)

    async def _request(self, prompt: str) -> LLMAnswer:
        assert self._client is not None  # checked by configured before any call
        budget = self._thinking_budget
        thinking = None if budget is None else types.ThinkingConfig(thinking_budget=budget)
        config = types.GenerateContentConfig(
            temperature=0,  # the same prompt should get the same answer as far as the model allows
            response_mime_type="application/json",
            response_schema=GeminiSignal,
            thinking_config=thinking,
        )
        try:
            response = await self._client.aio.models.generate_content(model=self.model, contents=prompt, config=config)
        except genai_errors.APIError as e:
            raise _api_failure(e) from e
        except Exception as e:  # httpx2 / httpx transport errors are not APIError
            raise translate_transport_error(e) from e
        return answer_from_response(response)


def answer_from_response(response: types.GenerateContentResponse) -> LLMAnswer:
    """Text and token counts of candidate 0; we parse the text ourselves, since `parsed` is silently None on
    invalid JSON and hides why."""
    usage = response.usage_metadata
    input_tokens = (usage.prompt_token_count or 0) if usage else 0
    output_tokens = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
    text = _candidate_text(response)
    return LLMAnswer(text, input_tokens, output_tokens, _answer_problem(response, text))


def _candidate_text(response: types.GenerateContentResponse) -> str | None:
    if not response.candidates or not response.candidates[0].content or not response.candidates[0].content.parts:
        return None
    texts = [p.text for p in response.candidates[0].content.parts if p.text is not None and not p.thought]
    return "".join(texts) if texts else None


def _answer_problem(response: types.GenerateContentResponse, text: str | None) -> str | None:
    if not response.candidates:
        feedback = response.prompt_feedback
        block = feedback.block_reason if feedback and feedback.block_reason else "none"
        return f"no candidates (block reason {block})"
    finish = response.candidates[0].finish_reason
    if finish is not None and finish != types.FinishReason.STOP:
        return f"no usable answer: finish_reason {finish.value}"
    return None if text is not None else "answer without text"


def _api_failure(error: genai_errors.APIError) -> AnalystCallFailed:
    message = (error.message or "")[:200]
    return AnalystCallFailed(
        f"gemini HTTP {error.code} {error.status or ''}: {message}".strip(),
        retryable=is_retryable_status(error.code),
        retry_after_s=_retry_delay_s(error.details),
    )


def _retry_delay_s(details: Any) -> float | None:
    """The `RetryInfo.retryDelay` ("26s") of a Google RPC error body, if present."""
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items if isinstance(items, list) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)s", delay) if isinstance(delay, str) else None
        if match:
            return float(match.group(1))
    return None
