"""Bot processes for the harness: forked by a spawner that imported the app once, talked to through FIFOs."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.chaos.traffic import wait_until_dead

SPAWN_TIMEOUT_S = 15.0


class SpawnError(RuntimeError):
    """The spawner or a fresh bot did not come up: a harness failure."""


class Spawner:
    """`python -m tests.chaos.bot_process --spawner`: forks one bot per request and answers with its pid."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, env: dict[str, str], cwd: Path, stderr_path: Path) -> Spawner:
        with open(stderr_path, "ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.chaos.bot_process", "--spawner", cwd=cwd, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        return cls(process)

    async def spawn(self, request: dict[str, Any]) -> int:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write((json.dumps(request) + "\n").encode())
        await self._process.stdin.drain()
        line = await asyncio.wait_for(self._process.stdout.readline(), SPAWN_TIMEOUT_S)
        if not line.strip().isdigit():
            raise SpawnError(f"the spawner answered {line!r} (see bot-stderr.log)")
        return int(line)

    async def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), 10)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()


class BotProcess:
    """One bot: its pid, its protocol lines (`CHAOS <event> key=value ...`) out, its commands in."""

    def __init__(self, pid: int, reader: asyncio.StreamReader, read_transport: asyncio.BaseTransport,
                 write_transport: asyncio.WriteTransport) -> None:
        self.pid = pid
        self._reader = reader
        self._read_transport, self._write_transport = read_transport, write_transport
        self.cycles = 0
        self.ended_output = False  # its stdout closed: it died (or is dying)

    @classmethod
    async def spawn(cls, spawner: Spawner, env: dict[str, str], cwd: Path, stderr_path: Path,
                    name: str) -> BotProcess:
        stdin_path, stdout_path = cwd / f"{name}.in", cwd / f"{name}.out"
        for path in (stdin_path, stdout_path):
            os.mkfifo(path)
        stdout_fd = os.open(stdout_path, os.O_RDONLY | os.O_NONBLOCK)
        pid = await spawner.spawn({"env": env, "cwd": str(cwd), "stdin": str(stdin_path),
                                   "stdout": str(stdout_path), "stderr": str(stderr_path)})
        stdin_fd = await _open_for_writing(stdin_path, pid)
        for path in (stdin_path, stdout_path):
            path.unlink()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                         os.fdopen(stdout_fd, "rb", 0))
        write_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(stdin_fd, "wb", 0))
        return cls(pid, reader, read_transport, write_transport)

    async def next_event(self, timeout_s: float) -> dict[str, str] | None:
        """The next protocol line as a dict (`event` and its fields); None once the process has ended."""
        deadline = time.monotonic() + timeout_s
        while True:
            line = await asyncio.wait_for(self._reader.readline(), max(0.0, deadline - time.monotonic()))
            if not line:
                self.ended_output = True
                return None
            words = line.decode(errors="replace").split()
            if len(words) >= 2 and words[0] == "CHAOS":
                fields = dict(w.split("=", 1) for w in words[2:] if "=" in w)
                return {"event": words[1], **fields}

    async def send(self, command: str) -> None:
        if not self._write_transport.is_closing():
            self._write_transport.write(f"{command}\n".encode())  # to a dead process: dropped

    async def ended(self) -> None:
        """After its kill (or its own end): its output read to the end, the process gone."""
        await asyncio.to_thread(wait_until_dead, self.pid, 30.0)
        self._write_transport.close()
        self._read_transport.close()


async def _open_for_writing(path: Path, pid: int) -> int:
    """The writing end of the bot's stdin FIFO, once the bot has opened its reading end (after its stdout)."""
    deadline = time.monotonic() + SPAWN_TIMEOUT_S
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
        if time.monotonic() > deadline or not Path(f"/proc/{pid}").exists():
            raise SpawnError(f"bot {pid} did not open its stdin within {SPAWN_TIMEOUT_S} s (see bot-stderr.log)")
        await asyncio.sleep(0.005)
