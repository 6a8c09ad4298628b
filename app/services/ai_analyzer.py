"""The seed's path for `app.analysts.gemini` (see docs/architecture.md): a thin public entry module that re-exports it."""

from app.analysts.gemini import (
    DEFAULT_API_VERSION,
    GEMINI_25_FLASH_INPUT_USD_PER_M,
    GEMINI_25_FLASH_OUTPUT_USD_PER_M,
    GEMINI_PRICES_USD_PER_M,
    GeminiAnalyzer,
    answer_from_response,
    make_gemini_client,
)

__all__ = [
    "DEFAULT_API_VERSION",
    "GEMINI_25_FLASH_INPUT_USD_PER_M",
    "GEMINI_25_FLASH_OUTPUT_USD_PER_M",
    "GEMINI_PRICES_USD_PER_M",
    "GeminiAnalyzer",
    "answer_from_response",
    "make_gemini_client",
]
