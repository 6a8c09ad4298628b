"""Analysts: rule-based, LLM (Gemini, OpenAI-compatible), replay, their prompt and validation."""
