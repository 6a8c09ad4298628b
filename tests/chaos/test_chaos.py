"""The chaos suite (issue 15): the live bot killed -9 again and again under seeded exchange faults; after every
restart and at the end, the exchange's own view must match the books. CHAOS_SEED picks another schedule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.devtools.faults import FaultKind
from tests.chaos.harness import ChaosConfig, ChaosRun

SEED = int(os.environ.get("CHAOS_SEED", "20250908"))
MIN_KILLS = 30
pytestmark = pytest.mark.one_engine  # SQLite only: the bot's books are a file the harness shares with it


async def test_the_harness_finds_nothing_without_faults_and_with_kills_between_cycles(tmp_path: Path) -> None:
    """The control run: every restart and every picture of the harness, none of the chaos. A violation here is
    the harness's own error (or a bug outside the order path)."""
    config = ChaosConfig(seed=SEED, run_dir=tmp_path / f"calm-{SEED}", kills=6, calm=True, cover_kinds=False)
    report = await ChaosRun(config).run()
    print(report.text())
    assert report.kills >= 6 and report.faults == 0 and report.checks >= 6, report.summary()
    assert report.trades > 0 and report.closed_trades > 0, report.summary()
    assert not report.findings, f"CHAOS_SEED={SEED}: violations without any chaos\n{report.text()}"


async def test_killed_and_faulted_the_bot_keeps_the_books_equal_to_the_exchange(tmp_path: Path) -> None:
    report = await ChaosRun(ChaosConfig(seed=SEED, run_dir=tmp_path / f"chaos-{SEED}", kills=MIN_KILLS)).run()
    print(report.text())
    assert report.kills >= MIN_KILLS, report.summary()
    assert all(report.faults_by_kind[kind.value] > 0 for kind in FaultKind), report.summary()
    assert report.partial_fills["BUY"] > 0 and report.partial_fills["SELL"] > 0, report.summary()
    assert report.frozen_venues > 0, report.summary()
    assert {"entry", "exit", "re-protection"} <= set(report.kills_by_cue()), report.summary()
    assert report.checks > report.kills // 2, report.summary()
    assert not report.findings, f"CHAOS_SEED={SEED}: invariants violated\n{report.text()}"
