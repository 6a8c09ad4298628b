"""The analysts a user can choose, in one place: the settings, the API, the container and the backtest read it."""

from __future__ import annotations

from enum import StrEnum


class AnalystKind(StrEnum):
    RULES = "rules"  # deterministic, needs no key; the default and every LLM's fallback
    GEMINI = "gemini"  # Google Gemini (google-genai)
    OPENAI = "openai"  # any OpenAI-compatible server (a local Ollama or vLLM)


ANALYST_NAMES = tuple(kind.value for kind in AnalystKind)
# what a backtest can run: the rules, or recorded LLM answers replayed by prompt hash (never a model asked about
# the past)
BACKTEST_ANALYSTS = (AnalystKind.RULES.value, AnalystKind.GEMINI.value, AnalystKind.OPENAI.value)
