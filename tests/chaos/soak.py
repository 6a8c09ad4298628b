"""`make chaos`: the long soak. CHAOS_KILLS (200), CHAOS_FAULTS (2000), CHAOS_SEED (random), CHAOS_MAX_WALL_S
(3600) and CHAOS_DIR (a temporary directory) choose the run; it prints its figures and exits 1 on a violation."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import tempfile
from pathlib import Path

from tests.chaos.faults import FaultProfile
from tests.chaos.harness import ChaosConfig, ChaosRun


def config_from_env() -> ChaosConfig:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 1_000_000))
    run_dir = Path(os.environ.get("CHAOS_DIR") or tempfile.mkdtemp(prefix="trdbot-chaos-")) / f"seed-{seed}"
    kills, faults = int(os.environ.get("CHAOS_KILLS", "200")), int(os.environ.get("CHAOS_FAULTS", "2000"))
    per_life = max(4, faults // max(1, kills))  # enough rules that the faults arrive with the kills
    profile = FaultProfile(rules_per_life=(per_life, per_life * 2), frozen_delay_s=(0.3, 1.5), slow_pct=2)
    return ChaosConfig(seed=seed, run_dir=run_dir, kills=kills, min_faults=faults, profile=profile,
                       max_wall_s=float(os.environ.get("CHAOS_MAX_WALL_S", "3600")), life_s=(0.6, 4.0),
                       progress_every=10)


def _not_a_cut_answer(record: logging.LogRecord) -> bool:
    return "returned without completing response" not in record.getMessage()


def main() -> int:
    # the simulator logs every fault it injects, and uvicorn every answer a lost-response fault cuts short (its
    # level is reset when the server starts, so a filter): thousands of lines that say nothing new
    logging.getLogger("app.devtools").setLevel(logging.CRITICAL)
    logging.getLogger("uvicorn.error").addFilter(_not_a_cut_answer)
    config = config_from_env()
    print(f"chaos soak: seed {config.seed}, {config.kills} kills, {config.min_faults} faults, in {config.run_dir}",
          flush=True)
    report = asyncio.run(ChaosRun(config).run())
    print(report.text())
    if report.kills < config.kills or report.faults < config.min_faults:
        print(f"the soak stopped short ({report.stopped_by})", file=sys.stderr)
        return 2
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
