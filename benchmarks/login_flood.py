"""/health latency while a flood of logins hits `trdbot serve` (issue 20, case 2).

Starts `trdbot serve` (paper mode, the default argon2 cost: ~0.5 s of CPU per hash) in a temporary directory, measures
/health at rest, then sends LOGINS logins for random usernames, CONCURRENCY at a time, while it keeps asking /health
every 20 ms (on a fixed schedule, not after the previous answer), and prints the latency figures and the logins' answers.

    PYTHONPATH=. .venv/bin/python benchmarks/login_flood.py [--logins 40] [--concurrency 40] [--addresses 40]
        [--checkout DIR]

--addresses N spreads the logins over N client addresses (X-Forwarded-For, trusted through FORWARDED_ALLOW_IPS),
so the per-address throttle lets every one of them be hashed: the worst case for the server. With --addresses 1
most of the flood is refused by the throttle before any hashing. --checkout runs another checkout's code (e.g. the
commit before the fix) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: Path, checkout: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "JWT_SECRET", "LOG_DIR")}
    env.update(PYTHONPATH=str(checkout), DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/flood.db",
               JWT_SECRET=secrets.token_urlsafe(48), LOG_DIR=str(workdir / "logs"), USE_MOCK_BINANCE="true",
               FORWARDED_ALLOW_IPS="127.0.0.1")
    log = (workdir / "serve.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=workdir, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


async def wait_healthy(client: httpx.AsyncClient, process: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"trdbot serve exited with {process.returncode}")
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("trdbot serve did not become healthy")


async def health_ms(client: httpx.AsyncClient) -> float:
    started = time.perf_counter()
    await client.get("/health")
    return (time.perf_counter() - started) * 1000


async def sample_until(client: httpx.AsyncClient, done: asyncio.Event, samples: list[float]) -> None:
    """A probe every 20 ms on a fixed schedule, each on its own: a stalled server delays many probes, not one."""
    probes = []
    while not done.is_set():
        probes.append(asyncio.create_task(health_ms(client)))
        await asyncio.sleep(0.02)
    samples.extend(await asyncio.gather(*probes))


async def flood(client: httpx.AsyncClient, logins: int, concurrency: int, addresses: int) -> Counter[int]:
    gate = asyncio.Semaphore(concurrency)
    answers: Counter[int] = Counter()

    async def one(i: int) -> None:
        async with gate:
            headers = {"X-Forwarded-For": f"10.77.{i % addresses // 250}.{i % addresses % 250 + 1}"}
            body = {"username": f"nobody_{secrets.token_hex(4)}", "password": "not-a-password"}
            answers[(await client.post("/auth/login", json=body, headers=headers)).status_code] += 1

    await asyncio.gather(*(one(i) for i in range(logins)))
    return answers


def describe(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return (f"{name:<14} n={len(samples):<4} median {statistics.median(samples):7.1f} ms   p95 {p95:7.1f} ms   "
            f"max {max(samples):7.1f} ms")


async def measure(args: argparse.Namespace, url: str, process: subprocess.Popen[bytes]) -> None:
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as logins, \
            httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=1000)) as probe:
        await wait_healthy(probe, process)
        at_rest = [await health_ms(probe) for _ in range(50)]
        done, during = asyncio.Event(), []
        sampler = asyncio.create_task(sample_until(probe, done, during))
        started = time.perf_counter()
        answers = await flood(logins, args.logins, args.concurrency, args.addresses)
        elapsed = time.perf_counter() - started
        done.set()
        await sampler
    print(f"{args.logins} logins, {args.concurrency} at a time, from {args.addresses} address(es): answers "
          f"{dict(sorted(answers.items()))} in {elapsed:.1f} s")
    print(describe("/health idle", at_rest))
    print(describe("/health flood", during))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--addresses", type=int, default=40)
    parser.add_argument("--checkout", type=Path, default=REPO, help="the code to serve (default: this checkout)")
    args = parser.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="login-flood-") as tmp:
        process = start_server(Path(tmp), args.checkout.resolve(), port)
        try:
            print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, code from {args.checkout.resolve()}")
            asyncio.run(measure(args, f"http://127.0.0.1:{port}", process))
        finally:
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    main()
