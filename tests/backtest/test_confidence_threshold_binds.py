"""The rule-based confidence on real candles: the calibration script's table, and a threshold that binds."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from app.analysts.rule_confidence import SetupKind
from app.analysts.rule_confidence_table import RULE_CONFIDENCE
from benchmarks.calibrate_rule_confidence import TABLE, calibrate, render, scan
from tests.backtest.backtest_helpers import SAMPLE, fast_settings, run_span, trade_facts

MONTH = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC)
PAIRS = ("BTCUSDT", "ETHUSDT")


async def test_the_script_ranks_the_setups_the_backtest_analyst_finds_on_a_real_slice() -> None:
    start, end = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 5, tzinfo=UTC)
    span = await scan(SAMPLE, PAIRS, start, end)
    engine, _ = await run_span(fast_settings(), PAIRS, start, end, keep_log=True)
    buys = [(a.symbol, a.created_at, a.confidence) for a in engine.store.tables.analyses if a.signal == "buy"]
    assert sorted(buys) == sorted((s.symbol, s.time, RULE_CONFIDENCE.confidence(s.kind, s.score)) for s in span.setups)
    scale = calibrate(span, points=5)
    scores = {kind: [s.score for s in span.setups if s.kind == kind] for kind in SetupKind}
    assert min(len(values) for values in scores.values()) >= 10, "four days of two pairs hold both kinds of setup"
    for kind, values in scores.items():
        assert scale.breakpoints[kind] == pytest.approx(np.quantile(values, np.linspace(0, 1, 5)), abs=1e-4)
        confidences = [scale.confidence(kind, score) for score in values]
        assert min(confidences) == 50 and max(confidences) == 95
    assert "BTCUSDT, ETHUSDT 5m, decisions 2025-10-01 00:00 to 2025-10-05 00:00 UTC" in scale.source
    setup = span.setups[0]
    assert 0 < setup.stop_distance < setup.target_distance < 0.1, "the risk manager's exits, as fractions"


def test_the_stored_table_is_what_the_script_writes() -> None:
    assert TABLE.read_text() == render(RULE_CONFIDENCE), "edit the table only through the script's --write"
    namespace: dict[str, object] = {}
    exec(compile(render(RULE_CONFIDENCE), "table", "exec"), namespace)  # our own generated source
    assert namespace["RULE_CONFIDENCE"] == RULE_CONFIDENCE


async def test_a_month_of_the_sample_spreads_confidence_and_the_seed_changes_the_trades() -> None:
    _, first = await run_span(fast_settings(random_seed=1), PAIRS, *MONTH)
    _, second = await run_span(fast_settings(random_seed=2), PAIRS, *MONTH)
    for result in (first, second):
        confidences = [t.ai_signal_confidence for t in result.trades]
        assert len(set(confidences)) >= 15, sorted(confidences)
        assert min(confidences) < 60 * 1.08, "some trade passed a threshold jittered below its top"
        assert result.rejections.get("confidence below threshold", 0) >= 20, result.rejections
    assert trade_facts(first.trades) != trade_facts(second.trades)

