"""A backtest with `--analyzer gemini` replays recorded answers: the same trades twice, and no model is asked."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

from app.analysts.prompt import build_mtf_prompt, prompt_hash
from app.analysts.replay import RecordedAnswer, ReplayAnalyzer
from app.analysts.rules import RuleBasedAnalyzer
from app.backtest.runner import run_backtest
from app.domain.values import MarketFeatures, Signal
from tests.backtest.backtest_helpers import backtest_engine, fast_settings, trade_facts

SYMBOLS = ("BTCUSDT", "SOLUSDT")
START, END = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 4, tzinfo=UTC)


class RecordingModel:
    """Stands in for Gemini while recording: answers like the rule-based analyst, and keeps every answer."""

    name = "gemini"

    def __init__(self) -> None:
        self.rules = RuleBasedAnalyzer()
        self.recorded: dict[str, RecordedAnswer] = {}

    async def analyze(self, features: MarketFeatures) -> Signal:
        signal = await self.rules.analyze(features)
        text = json.dumps({
            "signal": signal.signal.value, "confidence": signal.confidence,
            "entry_price": str(signal.entry_price) if signal.entry_price else None,
            "stop_loss": str(signal.stop_loss) if signal.stop_loss else None,
            "take_profit": str(signal.take_profit) if signal.take_profit else None,
            "reasoning": signal.reasoning,
        })
        key = prompt_hash(build_mtf_prompt(features))
        self.recorded[key] = RecordedAnswer(key, text, "recorded-model", features.symbol)
        return signal


async def _replay(recorded: dict[str, RecordedAnswer]) -> tuple[list[tuple[object, ...]], ReplayAnalyzer]:
    settings = fast_settings()
    engine, spec = backtest_engine(settings, SYMBOLS, START, END)
    replay = ReplayAnalyzer(recorded)
    engine.bot.analysts = {"rules": RuleBasedAnalyzer(), "gemini": replay}
    result = await run_backtest(engine, dataclasses.replace(spec, config=dataclasses.replace(spec.config,
                                                                                              analyzer="gemini")))
    return trade_facts(result.trades), replay


async def test_replayed_gemini_backtest_gives_the_same_trades_twice() -> None:
    settings = fast_settings()
    engine, spec = backtest_engine(settings, SYMBOLS, START, END)
    model = RecordingModel()
    engine.bot.analysts = {"rules": RuleBasedAnalyzer(), "gemini": model}
    gemini_spec = dataclasses.replace(spec, config=dataclasses.replace(spec.config, analyzer="gemini"))
    recorded_run = trade_facts((await run_backtest(engine, gemini_spec)).trades)
    assert recorded_run, "the recording run trades"

    first, replay = await _replay(model.recorded)
    second, _ = await _replay(model.recorded)
    assert first == second == recorded_run
    assert replay.misses == 0 and replay.hits > 0


async def test_a_replay_without_recordings_holds_and_trades_nothing() -> None:
    trades, replay = await _replay({})
    assert trades == [] and replay.hits == 0 and replay.misses > 0


async def test_live_misses_ask_the_model_only_for_unrecorded_prompts() -> None:
    from datetime import timedelta

    from pydantic import SecretStr

    from tests.services.llm_fake_server import ScriptedServer, answer, gemini_ok

    with ScriptedServer() as server:
        for _ in range(40):
            server.add(gemini_ok(answer(signal="hold", confidence=30)))
        settings = fast_settings(replay_live_misses=True, gemini_api_key=SecretStr("test-key"),
                                 gemini_base_url=server.url)
        engine, spec = backtest_engine(settings, ("BTCUSDT",), START, START + timedelta(hours=1))
        await run_backtest(engine, dataclasses.replace(spec, config=dataclasses.replace(spec.config,
                                                                                        analyzer="gemini")))
        replay = engine.bot.analysts["gemini"]
        assert isinstance(replay, ReplayAnalyzer)
        assert replay.misses == len(server.requests) > 0


async def test_openai_replays_the_recordings_under_its_own_name() -> None:
    """Both LLM analysts ask the same prompt, so `--analyzer openai` replays the same store: the same trades as the
    recording run, and the decision log names the analyst the user chose."""
    settings = fast_settings()
    engine, spec = backtest_engine(settings, SYMBOLS, START, END)
    model = RecordingModel()
    engine.bot.analysts = {"rules": RuleBasedAnalyzer(), "gemini": model}
    recorded_run = trade_facts((await run_backtest(engine, dataclasses.replace(
        spec, config=dataclasses.replace(spec.config, analyzer="gemini")))).trades)

    engine, spec = backtest_engine(settings, SYMBOLS, START, END)
    replay = engine.bot.analysts["openai"]
    assert isinstance(replay, ReplayAnalyzer) and replay.name == "openai"
    replay.answers = model.recorded
    result = await run_backtest(engine, dataclasses.replace(spec, config=dataclasses.replace(spec.config,
                                                                                              analyzer="openai")))
    assert trade_facts(result.trades) == recorded_run and recorded_run
    assert replay.misses == 0 and replay.hits > 0
