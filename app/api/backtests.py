"""Backtests from the browser: queue a run of `trdbot backtest`, follow it, read its report, fetch its files."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse

from app.api.deps import ContainerDep, CurrentUser, Uow
from app.api.errors import ErrorAnswer, answers, as_utc, invalid
from app.api.http_guards import CheckedJsonRoute
from app.api.schemas import MAX_ID, BacktestCreate, BacktestDetail, BacktestPage, BacktestPublic
from app.backtest.report import read_report
from app.domain.analysts import BACKTEST_ANALYSTS
from app.domain.records import BacktestRun, BacktestStatus
from app.domain.symbols import TOP_RULE, normalised

router = APIRouter(prefix="/backtests", tags=["backtests"], route_class=CheckedJsonRoute, responses=answers(401))
RunId = Annotated[int, Path(ge=-MAX_ID, le=MAX_ID)]
# what a run's directory may serve: its self-contained report and its charts, nothing it was given or keeps
SERVED = re.compile(r"report\.html|(equity|edge|entries_by_hour|price_[A-Z0-9]{1,20})\.png")
MEDIA = {".html": "text/html; charset=utf-8", ".png": "image/png"}
# report.html inlines its styles and its charts; it runs no script and may be framed by the dashboard only
REPORT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox"
TOO_MANY: dict[int | str, dict[str, Any]] = {429: {"model": ErrorAnswer, "description": "the user has BACKTEST_MAX_QUEUED runs queued or running"}}
SECONDS_PER_DAY = Decimal(86400)


def _files(run: BacktestRun, directory: FilePath) -> list[str]:
    if run.status != BacktestStatus.DONE or not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if SERVED.fullmatch(p.name) and p.is_file())


def run_public(run: BacktestRun, directory: FilePath) -> dict[str, Any]:
    span_s = Decimal(int((run.end - run.start).total_seconds()))
    return dict(
        id=run.id, status=run.status.value, progress=run.progress, symbols=list(run.symbols), start=run.start,
        end=run.end, span_days=(span_s / SECONDS_PER_DAY).quantize(Decimal("0.01")), balance=run.balance,
        config=run.config, created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
        summary=run.summary, error=run.error, files=_files(run, directory),
    )


async def _checked(body: BacktestCreate, container: ContainerDep) -> tuple[tuple[str, ...], datetime, datetime]:
    """The pairs (known, at most BACKTEST_MAX_SYMBOLS) and the span (end after start, at most BACKTEST_MAX_DAYS),
    each problem a 422 naming its field."""
    settings = container.settings
    symbols = normalised(body.symbols)
    analyzer = body.config.analyzer
    if analyzer is not None and analyzer.value not in BACKTEST_ANALYSTS:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "config", "analyzer"), "input": analyzer,
                                       "msg": f"a backtest replays {' or '.join(BACKTEST_ANALYSTS)}, not {analyzer}"}])
    if any(TOP_RULE.match(s) for s in symbols):  # a backtest's top:N ranks every pair of the data directory
        raise invalid("body", "symbols", "name the pairs: a top:N rule would backtest every pair with data")
    if len(symbols) < len(body.symbols):
        raise invalid("body", "symbols", "a pair is named more than once")
    if len(symbols) > settings.backtest_max_symbols:
        raise invalid("body", "symbols", f"at most {settings.backtest_max_symbols} pairs per backtest")
    if problems := await container.symbol_problems(symbols):
        raise invalid("body", "symbols", "; ".join(problems))
    start, end = as_utc("body", "start", body.start), as_utc("body", "end", body.end)
    if end <= start:
        raise invalid("body", "end", "end must be after start")
    if (end - start).total_seconds() > settings.backtest_max_days * 86400:
        raise invalid("body", "end", f"a backtest covers at most {settings.backtest_max_days} days (BACKTEST_MAX_DAYS)")
    return symbols, start, end


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=BacktestPublic,
             responses={**answers(413, 422), **TOO_MANY})
async def queue_backtest(body: BacktestCreate, user: CurrentUser, container: ContainerDep, uow: Uow) -> Any:
    """Queues a run of `trdbot backtest` over the bundled (or MARKET_DATA_DIR) candles; one run at a time per
    server (BACKTEST_CONCURRENCY), each in a process of its own."""
    symbols, start, end = await _checked(body, container)
    if await uow.backtests.waiting(user.id) >= container.settings.backtest_max_queued:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"you have {container.settings.backtest_max_queued} backtests queued or running: wait "
                            "for one to finish, or delete one")
    run = await uow.backtests.add(BacktestRun(
        id=0, user_id=user.id, status=BacktestStatus.QUEUED, symbols=symbols, start=start, end=end,
        balance=body.balance, config=body.config.model_dump(mode="json", exclude_unset=True),
        created_at=container.clock.now(),
    ))
    await uow.commit()
    container.backtests.poke()
    return run_public(run, container.settings.backtest_run_dir(user.id, run.id))


@router.get("", response_model=BacktestPage, responses=answers(422))
async def list_backtests(user: CurrentUser, container: ContainerDep, uow: Uow,
                         limit: Annotated[int, Query(ge=1, le=100)] = 50) -> Any:
    runs = await uow.backtests.for_user(user.id, limit)
    return {"items": [run_public(r, container.settings.backtest_run_dir(user.id, r.id)) for r in runs]}


async def _own(uow: Uow, user_id: int, run_id: int) -> BacktestRun:
    run = await uow.backtests.get(user_id, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"backtest {run_id} not found")
    return run


@router.get("/{run_id}", response_model=BacktestDetail, responses=answers(404, 422))
async def get_backtest(run_id: RunId, user: CurrentUser, container: ContainerDep, uow: Uow) -> Any:
    """The run, and once done the whole report.json."""
    run = await _own(uow, user.id, run_id)
    directory = container.settings.backtest_run_dir(user.id, run.id)
    report = None
    if run.status == BacktestStatus.DONE and (directory / "report.json").is_file():
        report = await asyncio.to_thread(read_report, directory / "report.json")
    return {**run_public(run, directory), "report": report}


@router.get("/{run_id}/files/{name}", response_class=FileResponse, responses={
    200: {"content": {"text/html": {"schema": {"type": "string"}},
                      "image/png": {"schema": {"type": "string", "format": "binary"}}},
          "description": "report.html or one of the run's charts"},
    **answers(404, 422)})
async def backtest_file(run_id: RunId, name: Annotated[str, Path(max_length=64)], user: CurrentUser,
                        container: ContainerDep, uow: Uow) -> FileResponse:
    """report.html (self-contained) and the PNG charts of one of the user's finished runs; any other name is 404."""
    run = await _own(uow, user.id, run_id)
    directory = container.settings.backtest_run_dir(user.id, run.id)
    if name not in _files(run, directory):  # names listed from the run's own directory: no path reaches beyond it
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"backtest {run_id} has no file {name!r}")
    suffix = FilePath(name).suffix
    headers = {"Content-Security-Policy": REPORT_POLICY, "X-Frame-Options": "SAMEORIGIN"} if suffix == ".html" else {}
    return FileResponse(directory / name, media_type=MEDIA[suffix], headers=headers)


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT, responses=answers(404, 422))
async def delete_backtest(run_id: RunId, user: CurrentUser, container: ContainerDep, uow: Uow) -> Response:
    """Forgets a run and its files; a queued run never starts, a running one is stopped."""
    await _own(uow, user.id, run_id)
    await uow.backtests.delete(user.id, run_id)
    await uow.commit()
    await container.backtests.cancel(run_id)
    await asyncio.to_thread(shutil.rmtree, container.settings.backtest_run_dir(user.id, run_id), True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
