"""Replays recorded LLM answers, keyed by the prompt's hash, so a backtest never asks a model about the past."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.analysts.prompt import PROMPT_VERSION, build_mtf_prompt, prompt_hash
from app.analysts.validation import parse_answer, validate_signal
from app.domain.errors import DataError
from app.domain.ports import DetailedSignalProvider
from app.domain.values import AnalystReport, MarketFeatures, Signal


@dataclass(frozen=True, slots=True)
class RecordedAnswer:
    """One stored model answer: what a decision-log row keeps of a call."""

    prompt_hash: str
    raw_response: str
    model: str | None = None
    symbol: str | None = None
    created_at: str | None = None

    def to_json(self) -> str:
        return json.dumps({"prompt_hash": self.prompt_hash, "raw_response": self.raw_response, "model": self.model,
                           "symbol": self.symbol, "created_at": self.created_at}, sort_keys=True)


def read_recorded_answers(path: Path) -> dict[str, RecordedAnswer]:
    """JSON lines written by `trdbot decisions export`; a bad line is named."""
    answers: dict[str, RecordedAnswer] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data: dict[str, Any] = json.loads(line)
            answer = RecordedAnswer(str(data["prompt_hash"]), str(data["raw_response"]), data.get("model"),
                                    data.get("symbol"), data.get("created_at"))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: line {number}: not a recorded answer ({e})") from e
        answers[answer.prompt_hash] = answer
    return answers


def write_recorded_answers(path: Path, answers: Iterable[RecordedAnswer]) -> int:
    """Writes one answer per prompt hash (the last one given wins), sorted so the file is stable."""
    unique = {a.prompt_hash: a for a in answers}
    lines = [unique[key].to_json() for key in sorted(unique)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def merge_recorded_answers(store: Path, incoming: Path) -> tuple[int, int]:
    """Adds a file's answers to the replay store; returns (added, total)."""
    current = read_recorded_answers(store) if store.exists() else {}
    new = read_recorded_answers(incoming)
    added = len(set(new) - set(current))
    total = write_recorded_answers(store, [*current.values(), *new.values()])
    return added, total


class ReplayAnalyzer:
    """A DetailedSignalProvider that answers from recordings; a missing answer is hold, or a live call if given."""

    def __init__(self, answers: Mapping[str, RecordedAnswer], live: DetailedSignalProvider | None = None,
                 max_entry_deviation_pct: Decimal = Decimal("1"), name: str = "gemini") -> None:
        self.name = name  # the analyst it stands in for: both LLM analysts ask the same prompt
        self.answers = answers
        self.live = live
        self.max_entry_deviation_pct = max_entry_deviation_pct
        self.hits = 0
        self.misses = 0

    async def analyze(self, features: MarketFeatures) -> Signal:
        return (await self.analyze_detailed(features)).signal

    async def analyze_detailed(self, features: MarketFeatures) -> AnalystReport:
        prompt = build_mtf_prompt(features)
        key = prompt_hash(prompt)
        recorded = self.answers.get(key)
        if recorded is None:
            self.misses += 1
            if self.live is not None:
                return await self.live.analyze_detailed(features)
            return AnalystReport(Signal.hold("no recorded answer for this prompt"), self.name, prompt=prompt,
                                 prompt_version=PROMPT_VERSION, prompt_hash=key, error="replay miss")
        self.hits += 1
        signal, reason = validate_signal(parse_answer(recorded.raw_response), features.last_price,
                                         self.max_entry_deviation_pct)
        return AnalystReport(signal, self.name, model=recorded.model, prompt=prompt,
                             prompt_version=PROMPT_VERSION, prompt_hash=key, raw_response=recorded.raw_response,
                             error=reason)
