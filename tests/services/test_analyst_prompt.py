"""The multi-timeframe prompt: complete, deterministic and free of anything but market features."""

from __future__ import annotations

import dataclasses

from llm_fake_server import make_features

from app.analysts.prompt import build_mtf_prompt, format_number, prompt_hash


def test_prompt_holds_every_section_the_seed_lists() -> None:
    prompt = build_mtf_prompt(make_features())

    for text in ("BTCUSDT", "Last price: 65000", "confluence score", ": 78.5", "trending_up", "ADX 30 > 25",
                 "support 64200", "resistance 66500", "=== 1h", "=== 15m", "=== 5m", "ADX > 25", "1:1.5",
                 "1 to 5 trades", "long-only", '"signal": "buy" | "sell" | "hold"'):
        assert text in prompt, text
    assert prompt.index("=== 1h") < prompt.index("=== 15m") < prompt.index("=== 5m")


def test_indicators_are_listed_in_sorted_order_with_any_names() -> None:
    features = make_features()
    features.indicators["15m"] = {"zeta": 1.0, "alpha_new": 2.0, "rsi": 50.0}

    prompt = build_mtf_prompt(features)

    assert "Indicators: alpha_new=2, rsi=50, zeta=1" in prompt


def test_recent_candles_are_bounded_and_oldest_first() -> None:
    prompt = build_mtf_prompt(make_features(), max_candles=2)
    section = prompt.split("=== 5m")[1]

    assert "2025-01-01 01:30 65018 65068 64978 65028 12.5\n2025-01-01 01:35 65019" in section
    assert "01:25" not in section


def test_same_features_same_text_and_hash() -> None:
    first, second = build_mtf_prompt(make_features()), build_mtf_prompt(make_features())

    assert first == second and prompt_hash(first) == prompt_hash(second) and len(prompt_hash(first)) == 64
    changed = dataclasses.replace(make_features(), confluence=40.0)
    assert prompt_hash(build_mtf_prompt(changed)) != prompt_hash(first)


def test_extra_timeframe_comes_after_the_seed_three() -> None:
    features = make_features()
    features.indicators["4h"] = {"rsi": 61.0}

    prompt = build_mtf_prompt(features)

    assert prompt.index("=== 5m") < prompt.index("=== 4h timeframe (additional context)")


def test_format_number_is_plain_and_stable() -> None:
    assert [format_number(v) for v in (65000.12345678, 0.000012345, 1234567890.4, -0.0, 0.5, float("nan"))] == [
        "65000.123", "0.000012345", "1234567890", "0", "0.5", "n/a"]
