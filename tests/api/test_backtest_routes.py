"""Backtests from the browser: POST /backtests queues a `trdbot backtest` process, GET follows it, its files are
served from its own directory only, DELETE stops and forgets it, and a restart fails what was running."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.backtest_jobs import INTERRUPTED, BacktestJobs
from app.config import Settings
from app.container import Container
from app.domain.records import BacktestRun, BacktestStatus
from app.main import create_app
from tests.conftest import register

RUN = {"symbols": ["BTCUSDT"], "start": "2025-10-01", "end": "2025-10-02", "config": {"risk_per_trade_pct": "0.5"}}
Command = Callable[[BacktestRun, Path, Settings], Sequence[str]]


def script(code: str) -> Command:
    """A stand-in for `trdbot backtest`: a Python process running `code`."""
    return lambda run, out, settings: [sys.executable, "-c", code]


SLEEPER = script("import time; time.sleep(60)")


@pytest.fixture
async def app_with(settings: Settings) -> AsyncIterator[Callable[[Command | None], Any]]:
    """An app whose backtest runner runs `command` (None: the real `trdbot backtest`); the runner is started."""
    made: list[Container] = []

    async def make(command: Command | None) -> tuple[httpx.AsyncClient, Container]:
        container = Container(settings)
        if command is not None:
            container.backtests = BacktestJobs(container.uow, settings, container.clock, command)
        made.append(container)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)), base_url="http://test")
        return client, container

    yield make
    for container in made:
        await container.backtests.stop()
        await container.db.dispose()


async def _until(client: httpx.AsyncClient, headers: dict[str, str], run_id: int, *statuses: str,
                 timeout_s: float = 120) -> dict[str, Any]:
    for _ in range(int(timeout_s * 10)):
        body: dict[str, Any] = (await client.get(f"/backtests/{run_id}", headers=headers)).json()
        if body["status"] in statuses:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"backtest {run_id} stayed {body['status']}")


async def test_a_real_run_from_queue_to_report(app_with: Callable[..., Any]) -> None:
    client, container = await app_with(None)
    headers, _ = await register(client)
    queued = await client.post("/backtests", headers=headers, json=RUN)
    assert queued.status_code == 202, queued.text
    assert queued.json()["status"] == "queued" and queued.json()["span_days"] == "1"
    container.backtests.start()
    done = await _until(client, headers, queued.json()["id"], "done", "failed")
    assert done["status"] == "done", done["error"]
    assert done["progress"] == 1 and done["finished_at"] and done["started_at"]
    assert done["summary"]["start_balance"] == "10000.00" and isinstance(done["summary"]["trades"], int)
    assert done["report"]["span"]["symbols"] == ["BTCUSDT"] and done["report"]["analyzer"] == "rules"
    assert {"report.html", "equity.png", "price_BTCUSDT.png"} <= set(done["files"])
    assert "report.json" not in done["files"] and "config.json" not in done["files"]
    html = await client.get(f"/backtests/{done['id']}/files/report.html", headers=headers)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "sandbox" in html.headers["content-security-policy"] and "<img" in html.text
    png = await client.get(f"/backtests/{done['id']}/files/equity.png", headers=headers)
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    listed = (await client.get("/backtests", headers=headers)).json()["items"]
    assert [r["id"] for r in listed] == [done["id"]] and listed[0]["summary"] == done["summary"]
    await client.aclose()


async def test_progress_and_the_runs_own_error(app_with: Callable[..., Any]) -> None:
    code = ("import sys, time\n"
            "sys.stderr.write(' 50%|#   | 50/100 [00:01<00:01]\\r'); sys.stderr.flush(); time.sleep(1.5)\n"
            "sys.stderr.write('trdbot backtest: no 5m candles for BTCUSDT in the span\\n'); sys.exit(2)")
    client, container = await app_with(script(code))
    headers, _ = await register(client)
    run_id = (await client.post("/backtests", headers=headers, json=RUN)).json()["id"]
    container.backtests.start()
    running = await _until(client, headers, run_id, "running", timeout_s=10)
    assert running["status"] == "running"
    seen = 0.0
    for _ in range(30):
        body = (await client.get(f"/backtests/{run_id}", headers=headers)).json()
        seen = max(seen, body["progress"])
        if body["status"] == "failed":
            break
        await asyncio.sleep(0.1)
    assert seen == 0.5
    failed = await _until(client, headers, run_id, "failed", timeout_s=10)
    assert failed["error"] == "no 5m candles for BTCUSDT in the span"
    assert failed["report"] is None and failed["files"] == [] and failed["summary"] is None
    await client.aclose()


async def test_one_run_at_a_time_a_per_user_cap_and_delete_stops_a_run(app_with: Callable[..., Any]) -> None:
    client, container = await app_with(SLEEPER)
    headers, _ = await register(client)
    ids = [(await client.post("/backtests", headers=headers, json=RUN)).json()["id"] for _ in range(3)]
    fourth = await client.post("/backtests", headers=headers, json=RUN)
    assert fourth.status_code == 429 and "3 backtests queued or running" in fourth.json()["detail"]
    container.backtests.start()
    await _until(client, headers, ids[0], "running", timeout_s=10)
    await asyncio.sleep(0.5)
    statuses = [(await client.get(f"/backtests/{i}", headers=headers)).json()["status"] for i in ids]
    assert statuses == ["running", "queued", "queued"]  # BACKTEST_CONCURRENCY 1
    assert (await client.delete(f"/backtests/{ids[0]}", headers=headers)).status_code == 204
    assert (await client.get(f"/backtests/{ids[0]}", headers=headers)).status_code == 404
    await _until(client, headers, ids[1], "running", timeout_s=10)  # the slot went to the next one
    assert (await client.delete(f"/backtests/{ids[2]}", headers=headers)).status_code == 204
    assert (await client.post("/backtests", headers=headers, json=RUN)).status_code == 202
    await client.aclose()


async def test_a_run_that_outlasts_its_time_is_stopped(settings: Settings, app_with: Callable[..., Any]) -> None:
    settings.backtest_timeout_seconds = 0.5
    client, container = await app_with(SLEEPER)
    headers, _ = await register(client)
    run_id = (await client.post("/backtests", headers=headers, json=RUN)).json()["id"]
    container.backtests.start()
    failed = await _until(client, headers, run_id, "failed", timeout_s=10)
    assert failed["error"].startswith("stopped after 0.5 s (BACKTEST_TIMEOUT_SECONDS)")
    await client.aclose()


async def test_a_restart_fails_what_was_running_and_runs_what_was_queued(app_with: Callable[..., Any]) -> None:
    client, container = await app_with(SLEEPER)
    headers, _ = await register(client)
    first = (await client.post("/backtests", headers=headers, json=RUN)).json()["id"]
    second = (await client.post("/backtests", headers=headers, json=RUN)).json()["id"]
    async with container.uow() as uow:  # the previous process claimed the first, then died
        await uow.backtests.claim_next(datetime(2025, 1, 1, tzinfo=UTC))
        await uow.commit()
    container.backtests.start()
    interrupted = await _until(client, headers, first, "failed", timeout_s=10)
    assert interrupted["error"] == INTERRUPTED == "interrupted by a restart: start it again"
    await _until(client, headers, second, "running", timeout_s=10)
    await client.aclose()


async def _done_run(container: Container, client: httpx.AsyncClient, headers: dict[str, str], user_id: int) -> int:
    """A queued run made `done` by hand, with files of every kind in its directory and a secret beside it."""
    run_id: int = (await client.post("/backtests", headers=headers, json=RUN)).json()["id"]
    async with container.uow() as uow:
        await uow.backtests.finish(run_id, BacktestStatus.DONE, datetime(2025, 1, 1, tzinfo=UTC), {"trades": 1})
        await uow.commit()
    directory = container.settings.backtest_run_dir(user_id, run_id)
    directory.mkdir(parents=True)
    for name in ("report.html", "equity.png", "report.json", "config.json", "summary.txt", "trades.csv"):
        (directory / name).write_text("{}" if name.endswith(".json") else name)
    (directory.parent / "secret.html").write_text("not yours")
    return run_id


@pytest.mark.parametrize("name", ["report.json", "config.json", "summary.txt", "trades.csv", "nothing.png",
                                  "..%2Fsecret.html", "%2E%2E%2Fsecret.html", "%2E%2E", "%2E", "%2Fetc%2Fpasswd",
                                  "report.html%00.png", "..%5Csecret.html", "x" * 65])
async def test_files_of_the_run_only(app_with: Callable[..., Any], name: str) -> None:
    client, container = await app_with(SLEEPER)
    headers, user_id = await register(client)
    run_id = await _done_run(container, client, headers, user_id)
    assert (await client.get(f"/backtests/{run_id}/files/report.html", headers=headers)).text == "report.html"
    answer = await client.get(f"/backtests/{run_id}/files/{name}", headers=headers)
    assert answer.status_code in (404, 422), answer.text
    assert "not yours" not in answer.text
    await client.aclose()


async def test_another_users_run_is_404_everywhere(app_with: Callable[..., Any]) -> None:
    client, container = await app_with(SLEEPER)
    headers, user_id = await register(client)
    other, _ = await register(client, "bob")
    run_id = await _done_run(container, client, headers, user_id)
    for path in (f"/backtests/{run_id}", f"/backtests/{run_id}/files/report.html"):
        assert (await client.get(path, headers=other)).status_code == 404
    assert (await client.delete(f"/backtests/{run_id}", headers=other)).status_code == 404
    assert (await client.get("/backtests", headers=other)).json() == {"items": []}
    assert (await client.get(f"/backtests/{run_id}", headers=headers)).status_code == 200
    assert (await client.delete(f"/backtests/{run_id}", headers=headers)).status_code == 204
    assert not container.settings.backtest_run_dir(user_id, run_id).exists()
    await client.aclose()


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"symbols": ["DOGEUSDT"]}, "symbols", "DOGEUSDT"),
    ({"symbols": []}, "symbols", None),
    ({"symbols": [f"A{i}USDT" for i in range(11)]}, "symbols", "at most 10 pairs"),
    ({"symbols": ["BTCUSDT", "btcusdt"]}, "symbols", "more than once"),
    ({"symbols": ["top:3"]}, "symbols", "name the pairs"),
    ({"end": "2025-09-30"}, "end", "end must be after start"),
    ({"end": "2026-03-01"}, "end", "at most 92 days"),
    ({"start": 1}, "start", "start must be a date (YYYY-MM-DD) or an ISO date-time"),
    ({"start": "2025-13-01"}, "start", None),
    ({"start": "9999-12-31T23:59:59-14:00"}, "start", "outside the calendar"),
    ({"config": {"risk_per_trade_pct": "5"}}, "risk_per_trade_pct", None),
    ({"config": {"symbols": ["ETHUSDT"]}}, "config", "name the pairs in symbols, not in config"),
    ({"config": {"leverage": 10}}, "leverage", None),
    ({"balance": "0"}, "balance", None),
    ({"balance": "NaN"}, "balance", None),
    ({"seed": 7}, "seed", None),
])
async def test_bad_requests_are_422_naming_the_field(app_with: Callable[..., Any], change: dict[str, Any],
                                                     field: str, message: str | None) -> None:
    client, _ = await app_with(SLEEPER)
    headers, _ = await register(client)
    answer = await client.post("/backtests", headers=headers, json={**RUN, **change})
    assert answer.status_code == 422, answer.text
    error = answer.json()["detail"][0]
    assert error["loc"][-1] == field and not error["msg"].startswith("Value error")
    if message is not None:
        assert message in error["msg"]
    assert (await client.get("/backtests", headers=headers)).json() == {"items": []}
    await client.aclose()


@pytest.mark.parametrize("path", ["/backtests/abc", "/backtests/2147483648", "/backtests/-1", "/backtests/0",
                                  "/backtests?limit=0", "/backtests?limit=101"])
async def test_hostile_ids_and_limits(client: httpx.AsyncClient, path: str) -> None:
    headers, _ = await register(client)
    assert (await client.get(path, headers=headers)).status_code in (404, 422)
    assert (await client.get(path)).status_code == 401


async def test_a_number_no_float_holds_is_422_naming_the_balance(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    body = '{"symbols": ["BTCUSDT"], "start": "2025-10-01", "end": "2025-10-02", "balance": 1e400}'
    answer = await client.post("/backtests", headers={**headers, "Content-Type": "application/json"}, content=body)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "balance"]
