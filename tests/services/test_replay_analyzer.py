"""Recorded model answers replay by prompt hash: hits give the recorded signal, misses hold, files name bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.analysts.prompt import build_mtf_prompt, prompt_hash
from app.analysts.replay import (
    RecordedAnswer,
    ReplayAnalyzer,
    merge_recorded_answers,
    read_recorded_answers,
    write_recorded_answers,
)
from app.domain.errors import DataError
from app.domain.values import AnalystReport, MarketFeatures, Signal, SignalType
from tests.services.llm_fake_server import answer, make_features


class LiveStub:
    name = "live"

    def __init__(self) -> None:
        self.calls = 0

    async def analyze(self, features: MarketFeatures) -> Signal:
        return (await self.analyze_detailed(features)).signal

    async def analyze_detailed(self, features: MarketFeatures) -> AnalystReport:
        self.calls += 1
        return AnalystReport(Signal.hold("live says hold"), self.name)


def _recorded_for(features, text: str) -> RecordedAnswer:  # type: ignore[no-untyped-def]
    return RecordedAnswer(prompt_hash(build_mtf_prompt(features)), text, "gemini-2.5-flash", features.symbol)


async def test_a_recorded_answer_replays_exactly() -> None:
    features = make_features()
    recorded = _recorded_for(features, answer(signal="buy", confidence=77))
    replay = ReplayAnalyzer({recorded.prompt_hash: recorded})
    report = await replay.analyze_detailed(features)
    assert report.signal.signal == SignalType.BUY and report.signal.confidence == 77
    assert report.raw_response == recorded.raw_response and report.prompt_hash == recorded.prompt_hash
    assert (replay.hits, replay.misses) == (1, 0)


async def test_a_missing_answer_holds_or_asks_the_live_analyst() -> None:
    features = make_features(last_price="64000")
    assert (await ReplayAnalyzer({}).analyze(features)).signal == SignalType.HOLD
    live = LiveStub()
    report = await ReplayAnalyzer({}, live=live).analyze_detailed(features)
    assert report.analyzer == "live" and live.calls == 1


async def test_an_insane_recorded_answer_is_still_validated() -> None:
    features = make_features()
    recorded = _recorded_for(features, answer(signal="buy", entry=65000.0, stop=66000.0, target=67000.0))
    report = await ReplayAnalyzer({recorded.prompt_hash: recorded}).analyze_detailed(features)
    assert report.signal.signal == SignalType.HOLD and report.error


def test_files_round_trip_merge_and_name_bad_lines(tmp_path: Path) -> None:
    first = RecordedAnswer("a" * 64, '{"signal": "hold"}', "m", "BTCUSDT")
    second = RecordedAnswer("b" * 64, '{"signal": "buy"}', "m", "ETHUSDT")
    assert write_recorded_answers(tmp_path / "one.jsonl", [first, first]) == 1
    write_recorded_answers(tmp_path / "two.jsonl", [second])
    store = tmp_path / "store" / "gemini.jsonl"
    assert merge_recorded_answers(store, tmp_path / "one.jsonl") == (1, 1)
    assert merge_recorded_answers(store, tmp_path / "two.jsonl") == (1, 2)
    assert read_recorded_answers(store) == {first.prompt_hash: first, second.prompt_hash: second}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(first.to_json() + "\n{not json\n")
    with pytest.raises(DataError, match="line 2"):
        read_recorded_answers(bad)
