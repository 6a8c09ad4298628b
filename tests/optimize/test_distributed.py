"""`trdbot optimize --storage URL --study NAME` workers as real processes on the throwaway PostgreSQL (the
PostgreSQL pass only): two workers join one study and no trial is lost or run twice; a worker killed mid-trial
leaves the study consistent, and running the command again finishes it (the dead trial failed by its stale
heartbeat and retried with the same parameters)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import optuna
import pytest
from sqlalchemy.engine import make_url

from app.optimize.study import storage_url

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 6
SPACE = """
[min_signal_confidence]
low = 50
high = 80
step = 5
[asset_profiles.BTC.atr_stop_multiplier]
low = 0.5
high = 2.5
"""
STATES = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}


@pytest.fixture
def storage(database_url: str) -> Iterator[str]:
    """A database of its own on the test server (Optuna's tables beside the service's would share alembic_version)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the distributed test runs in the PostgreSQL pass")
    url = make_url(database_url)
    name = f"optuna_{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _worker(storage: str, study: str, seed: int, tmp: Path, log: str, end: str = "2025-10-06") -> subprocess.Popen[bytes]:
    (tmp / "space.toml").write_text(SPACE)
    command = [sys.executable, "-m", "app.cli", "optimize", "--symbols", "BTCUSDT", "--start", "2025-10-01",
               "--end", end, "--trials", str(TRIALS), "--min-trades", "0", "--objective", "net_return",
               "--jobs", "1", "--storage", storage, "--study", study, "--heartbeat", "1", "--seed", str(seed),
               "--space", str(tmp / "space.toml"), "--cache", str(tmp / "cache"), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (tmp / log).open("wb") as out:
        return subprocess.Popen(command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)


def _finished(process: subprocess.Popen[bytes], tmp: Path, log: str) -> None:
    assert process.wait(timeout=120) == 0, (tmp / log).read_text()


def _trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage_url(storage)).get_trials(deepcopy=False)


def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(storage: str, tmp_path: Path) -> None:
    workers = [_worker(storage, "shared", seed, tmp_path, f"w{seed}.log") for seed in (1, 2)]
    for seed, worker in zip((1, 2), workers, strict=True):
        _finished(worker, tmp_path, f"w{seed}.log")
    trials = _trials(storage, "shared")
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))  # every trial numbered once, none missing
    assert {t.state for t in trials} <= STATES  # nothing left running, waiting or failed
    assert TRIALS <= len(trials) <= TRIALS + 1  # the target, overshot by at most the other worker's last trial
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    assert all("metrics" in t.user_attrs for t in trials)


def _killed_mid_trial(storage: str, tmp: Path, attempt: int) -> optuna.trial.FrozenTrial | None:
    """A worker killed (SIGKILL) while a trial of its runs, after at least one finished: the trial it left running,
    or None when the trial ended between being seen running and the kill."""
    worker = _worker(storage, "killed", 1, tmp, f"killed{attempt}.log", end="2025-11-01")  # trials of ~1 s
    deadline = time.monotonic() + 60
    running: optuna.trial.FrozenTrial | None = None
    while running is None:
        assert time.monotonic() < deadline and worker.poll() is None, (tmp / f"killed{attempt}.log").read_text()
        try:
            trials = _trials(storage, "killed")
        except KeyError:  # the study is not created yet
            trials = []
        judged = [t for t in trials if t.state in STATES]
        running = next((t for t in trials if t.state == optuna.trial.TrialState.RUNNING), None) if judged else None
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    left = {t.number: t for t in _trials(storage, "killed")}
    return running if left[running.number].state == optuna.trial.TrialState.RUNNING else None


def test_a_worker_killed_mid_trial_leaves_a_study_another_run_finishes(storage: str, tmp_path: Path) -> None:
    running = None
    for attempt in range(3):
        running = _killed_mid_trial(storage, tmp_path, attempt)
        if running is not None:
            break
    assert running is not None, "no worker was caught mid-trial in three attempts"
    left = {t.number: t for t in _trials(storage, "killed")}
    assert len([t for t in left.values() if t.state in STATES]) < TRIALS
    assert all(t.state in STATES for n, t in left.items() if n != running.number)  # the rest consistent

    time.sleep(2.5)  # twice the heartbeat: the dead trial is stale
    _finished(_worker(storage, "killed", 1, tmp_path, "rerun.log", end="2025-11-01"), tmp_path, "rerun.log")
    trials = {t.number: t for t in _trials(storage, "killed")}
    assert sorted(trials) == list(range(len(trials)))
    assert trials[running.number].state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == running.number]
    assert len(retries) == 1 and retries[0].state in STATES
    dead = trials[running.number].params  # what it had drawn before it was killed (possibly nothing yet)
    assert retries[0].params.items() >= dead.items()  # the same settings, run again
    assert {t.state for n, t in trials.items() if n != running.number} <= STATES
    assert len([t for t in trials.values() if t.state in STATES]) == TRIALS  # the target, exactly (one worker)
