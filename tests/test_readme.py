"""The README's shell blocks work as written (issue 22): every ```bash block is marked `run` (run here as it
stands), `with-demo` (run while `make demo` serves, as the README says to) or `skip (why)`, and the runnable ones
are run verbatim in a fresh directory that holds this checkout's code and environment but none of its var/."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"^```bash\n(.*?)^```$", re.M | re.S)
MARK = re.compile(r"<!-- readme-test: (run|with-demo|skip)(?: \((.+)\))? -->\n\Z")
DEMO_PORT = 8000  # the README's own URLs name it


@dataclass(frozen=True)
class Block:
    line: int
    kind: str
    why: str | None
    script: str


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for fence in FENCE.finditer(text):
        line = text.count("\n", 0, fence.start()) + 1
        before = text[:fence.start()]
        mark = MARK.search(before[before.rfind("<!--", max(0, len(before) - 400)):]) if "<!--" in before else None
        if mark is None:
            blocks.append(Block(line, "unmarked", None, fence.group(1)))
        else:
            blocks.append(Block(line, mark.group(1), mark.group(2), fence.group(1)))
    return blocks


def test_every_shell_block_is_run_or_says_why_not() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 5
    unmarked = [b.line for b in blocks if b.kind == "unmarked"]
    assert not unmarked, f"README.md lines {unmarked}: a ```bash block needs <!-- readme-test: run|with-demo|skip (why) -->"
    unexplained = [b.line for b in blocks if b.kind == "skip" and not b.why]
    assert not unexplained, f"README.md lines {unexplained}: a skipped block says why"
    assert {"run", "with-demo"} <= {b.kind for b in blocks}


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Iterator[Path]:
    """A directory like a fresh clone after `make install`: the code and the environment this suite runs in (its
    make stamps newer than pyproject.toml, so make installs nothing), and no var/."""
    venv = Path(sys.prefix)
    if not (venv / ".stamp-run").exists():
        pytest.skip(f"{venv} was not built by make (no .stamp-run): make would install into it")
    for name in ("app", "benchmarks", "scripts"):
        (tmp_path / name).symlink_to(REPO / name)
    for name in ("Makefile", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    os.utime(tmp_path / "pyproject.toml", (0, 0))  # older than the stamps: nothing to reinstall
    (tmp_path / ".venv").symlink_to(venv)
    yield tmp_path


def _environment() -> dict[str, str]:
    drop = ("DATABASE_URL", "JWT_SECRET", "JWT_SECRET_FILE", "CREDENTIALS_KEY", "LOG_DIR", "VIRTUAL_ENV",
            "PYTHONPATH", "API_WORKERS", "USE_MOCK_BINANCE", "MARKET_SOURCE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def _run(block: Block, cwd: Path, activate: bool) -> subprocess.CompletedProcess[str]:
    script = ("source .venv/bin/activate\n" if activate else "") + block.script
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=_environment(),
                          capture_output=True, text=True, timeout=600)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_the_readmes_commands_run_as_written(fresh_clone: Path) -> None:
    blocks = readme_blocks()
    for block in (b for b in blocks if b.kind == "run"):
        done = _run(block, fresh_clone, activate="source .venv/bin/activate" not in block.script)
        assert done.returncode == 0, f"README.md line {block.line}:\n{block.script}\n{done.stdout}\n{done.stderr}"

    if not _port_free(DEMO_PORT):
        pytest.skip(f"port {DEMO_PORT}, which the README's examples name, is taken on this machine")
    output = fresh_clone / "demo.log"
    with output.open("w") as out:
        demo = subprocess.Popen(["make", "demo"], cwd=fresh_clone, env=_environment(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert demo.poll() is None, output.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{DEMO_PORT}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            raise AssertionError(f"make demo never answered /health:\n{output.read_text()}")
        for block in (b for b in blocks if b.kind == "with-demo"):
            done = _run(block, fresh_clone, activate=True)
            where = f"README.md line {block.line}:\n{block.script}\n{done.stdout}\n{done.stderr}"
            assert done.returncode == 0 and done.stdout.strip(), where
            assert '"detail"' not in done.stdout and "Internal Server Error" not in done.stdout, where
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
