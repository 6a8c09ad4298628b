"""`trdbot backtest` and `trdbot optimize` import only what a backtest runs: not the web framework, the database and
its migrations, or google-genai (together ~1 s of every run's start, before the first cycle)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNUSED = ("fastapi", "starlette", "uvicorn", "alembic", "google.genai", "sqlalchemy", "jwt", "pwdlib",
          "app.container", "app.db", "app.main", "app.api")
RUN = """
import json, sys
from app.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
SPAN = ["--symbols", "BTCUSDT", "--start", "2025-10-01", "--end", "2025-10-02", "--quiet"]


def _modules_after(args: list[str], cwd: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-c", RUN, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["code"] == 0, done.stderr
    return answer["modules"]


@pytest.mark.parametrize("args", [
    ["backtest", *SPAN, "--workers", "0", "--edge-repetitions", "5"],
    ["optimize", *SPAN, "--trials", "2", "--jobs", "1", "--min-trades", "0", "--no-cache"],
], ids=["backtest", "optimize"])
def test_the_backtest_commands_leave_the_service_unimported(args: list[str], tmp_path: Path) -> None:
    modules = _modules_after(args, tmp_path)
    assert "app.engine.bot" in modules  # the command did run the engine
    loaded = [m for m in modules if any(m == u or m.startswith(u + ".") for u in UNUSED)]
    assert not loaded, f"imported though unused: {loaded[:10]}"
