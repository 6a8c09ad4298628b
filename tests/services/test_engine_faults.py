"""The engine under exchange faults (through HTTP and the simulator): nothing sent twice, nothing left unprotected."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from app.devtools.faults import FaultPlan, FaultRule
from app.domain.values import ExitReason
from tests.services.live_harness import live_engine, run_hours

HOURS = 12
pytestmark = pytest.mark.one_engine  # faults at the exchange are under test; the SQL is the engine tests'


@pytest.mark.parametrize("rule", [
    FaultRule("lost_response", endpoint="POST /api/v3/order", times=2),
    FaultRule("rate_limit", endpoint="*", times=6, retry_after_s=30),
    FaultRule("server_error", endpoint="POST /api/v3/orderList/oco", status=503, execute=True, times=2),
    FaultRule("lost_response", endpoint="POST /api/v3/orderList/oco", times=1),
], ids=["entry-response-lost", "429-storm", "5xx-on-oco-after-entry", "oco-response-lost"])
async def test_faults_leave_the_books_matching_the_exchange(settings: Settings, tmp_path: Path, rule: FaultRule) -> None:
    async with live_engine(settings, tmp_path, FaultPlan([rule])) as live:
        await run_hours(live.container, live.clock, HOURS)
        assert rule.hits > 0, "the fault was never hit"
        assert await live.trades(), "the engine keeps trading after the fault"
        await live.assert_books_match_the_exchange()


async def test_rejected_oco_ends_in_an_emergency_exit(settings: Settings, tmp_path: Path) -> None:
    rule = FaultRule("reject", endpoint="POST /api/v3/orderList/oco", code=-2010, times=settings.oco_place_retries,
                     msg="The relationship of the prices for the orders is not correct.")
    async with live_engine(settings, tmp_path, FaultPlan([rule])) as live:
        await run_hours(live.container, live.clock, HOURS)
        first = (await live.trades())[0]
        assert first.exit_reason == ExitReason.EMERGENCY
        await live.assert_books_match_the_exchange()


async def test_a_wrong_secret_is_a_clear_configuration_error(settings: Settings, tmp_path: Path) -> None:
    wrong = "not-the-secret-0123456789"
    async with live_engine(settings, tmp_path, secret=wrong) as live:
        await run_hours(live.container, live.clock, 1)
        async with live.container.uow() as uow:
            events = await uow.events.for_user(live.user_id)
        assert not await live.trades()
    errors = [e.data["message"] for e in events if e.type == "error"]
    assert errors and all(wrong not in message for message in errors)
    assert any("rejected the API key/signature" in message and "BINANCE_SECRET_KEY" in message for message in errors)
