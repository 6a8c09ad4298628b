"""Fifty users on one symbol cause one Gemini call per cycle, and every user's decision is logged against it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from tests.services.llm_fake_server import ScriptedServer, answer, gemini_ok

USERS = 50


async def test_fifty_users_one_model_call_per_cycle(settings: Settings) -> None:
    with ScriptedServer() as server:
        for _ in range(4):
            server.add(gemini_ok(answer(signal="hold", confidence=40)))
        gemini = settings.model_copy(update={"gemini_api_key": SecretStr("test-key"), "gemini_base_url": server.url})
        clock = SimulatedClock(datetime(2025, 9, 10, tzinfo=UTC))
        container = Container(gemini, market_clock=clock)
        ids = []
        async with container.uow() as uow:
            for n in range(USERS):
                user = await uow.users.add(f"u{n}", f"u{n}@example.com", "hash", clock.now())
                ids.append(user.id)
                config = dataclasses.replace(container.default_config(user.id), is_active=True,
                                             symbols=("BTCUSDT",), analyzer="gemini")
                await uow.configs.create(config, clock.now())
                await uow.portfolios.create(user.id, gemini.paper_start_balance, clock.now())
            await uow.commit()
        for _ in range(2):
            clock.advance(timedelta(minutes=5))
            await container.bot.run_cycle(clock.now())
        calls = len(server.requests)
        async with container.uow() as uow:
            logged = await uow.analyses.for_user(ids[0], limit=10)
            last_user = await uow.analyses.for_user(ids[-1], limit=10)
        await container.db.dispose()

    assert calls == 2
    assert [a.analyzer for a in logged] == ["gemini", "gemini"]
    assert logged[0].model == "gemini-2.5-flash" and logged[0].prompt_hash and logged[0].raw_response
    assert logged[0].input_tokens > 0 and logged[0].cost_usd > 0
    assert [a.id for a in last_user] == [a.id for a in logged]
    assert all(a.decision is not None and a.decision.value == "skipped" for a in last_user)


async def test_unconfigured_gemini_falls_back_visibly(settings: Settings) -> None:
    clock = SimulatedClock(datetime(2025, 9, 10, tzinfo=UTC))
    container = Container(settings, market_clock=clock)
    async with container.uow() as uow:
        user = await uow.users.add("g", "g@example.com", "hash", clock.now())
        config = dataclasses.replace(container.default_config(user.id), is_active=True, symbols=("ETHUSDT",),
                                     analyzer="gemini")
        await uow.configs.create(config, clock.now())
        await uow.portfolios.create(user.id, settings.paper_start_balance, clock.now())
        await uow.commit()
    clock.advance(timedelta(minutes=5))
    await container.bot.run_cycle(clock.now())
    async with container.uow() as uow:
        (record,) = await uow.analyses.for_user(user.id)
    await container.db.dispose()
    assert record.fallback_used and record.signal == "hold"
    assert record.error and "fallback" in record.error
