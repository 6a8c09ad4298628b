"""An analyst on any OpenAI-compatible chat-completions server (Ollama, vLLM...): same prompt, same checks."""

from __future__ import annotations

from decimal import Decimal

import httpx
from pydantic import BaseModel, ValidationError

from app.analysts.llm_base import (
    AnalystCallFailed,
    CircuitBreaker,
    LLMAnalyzerBase,
    LLMAnswer,
    is_retryable_status,
    translate_transport_error,
)
from app.analysts.validation import strict_json_schema
from app.domain.clock import Clock
from app.domain.ports import SignalProvider
from app.domain.values import ZERO

SCHEMA_NAME = "trade_signal"


class _ChatMessage(BaseModel):
    content: str | None = None


class _ChatChoice(BaseModel):
    message: _ChatMessage
    finish_reason: str | None = None


class _ChatUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatCompletion(BaseModel):
    """The part of a chat-completions response body we read."""

    choices: list[_ChatChoice] = []
    usage: _ChatUsage | None = None


class OpenAICompatibleAnalyzer(LLMAnalyzerBase):
    """For users who will not send market data to Google: a self-hosted model behind the same validation."""

    name = "openai_compatible"

    def __init__(
        self,
        http: httpx.AsyncClient | None,
        base_url: str | None,
        model: str,
        clock: Clock,
        api_key: str | None = None,
        timeout_s: float = 20,
        max_retries: int = 2,
        breaker: CircuitBreaker | None = None,
        fallback: SignalProvider | None = None,
        max_entry_deviation_pct: Decimal = Decimal("1"),
        input_price_per_m: Decimal = ZERO,
        output_price_per_m: Decimal = ZERO,
        *,
        retry_base_delay_s: float = 1.0,
        retry_max_delay_s: float = 30.0,
    ) -> None:
        super().__init__(
            model=model, clock=clock, timeout_s=timeout_s, max_retries=max_retries, breaker=breaker,
            fallback=fallback, max_entry_deviation_pct=max_entry_deviation_pct,
            retry_base_delay_s=retry_base_delay_s, retry_max_delay_s=retry_max_delay_s,
        )
        self._http = http
        self._base_url = (base_url or "").rstrip("/")
        self._api_key = api_key
        self.input_price_per_m = input_price_per_m
        self.output_price_per_m = output_price_per_m

    @property
    def configured(self) -> bool:
        return self._http is not None and bool(self._base_url) and bool(self.model)

    async def _request(self, prompt: str) -> LLMAnswer:
        assert self._http is not None  # checked by configured before any call
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            response = await self._http.post(
                f"{self._base_url}/chat/completions", json=self._body(prompt), headers=headers, timeout=self.timeout_s
            )
        except Exception as e:  # httpx transport errors, translated once here
            raise translate_transport_error(e) from e
        if response.status_code != 200:
            raise AnalystCallFailed(
                f"chat completions HTTP {response.status_code}: {response.text[:200]}",
                retryable=is_retryable_status(response.status_code),
                retry_after_s=_retry_after_s(response.headers.get("Retry-After")),
            )
        return answer_from_body(response.text)

    def _body(self, prompt: str) -> dict[str, object]:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": strict_json_schema()},
            },
        }


def answer_from_body(body: str) -> LLMAnswer:
    """The first choice's content and the token counts; an unreadable body is an answer with a problem."""
    try:
        completion = ChatCompletion.model_validate_json(body)
    except ValidationError:
        return LLMAnswer(body[:4000], problem="malformed chat completion body")
    usage = completion.usage or _ChatUsage()
    if not completion.choices:
        return LLMAnswer(None, usage.prompt_tokens, usage.completion_tokens, problem="no choices in answer")
    choice = completion.choices[0]
    finish = choice.finish_reason
    problem = None if finish in (None, "stop") else f"no usable answer: finish_reason {finish}"
    return LLMAnswer(choice.message.content, usage.prompt_tokens, usage.completion_tokens, problem)


def _retry_after_s(header: str | None) -> float | None:
    try:
        return float(header) if header else None
    except ValueError:
        return None  # an HTTP date; our own backoff is good enough
