"""Case 3: the failed-login limit holds under concurrency, and concurrent attempts never answer 500."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.conftest import register


async def test_forty_wrong_passwords_twenty_at_a_time_check_exactly_the_limit(client: httpx.AsyncClient) -> None:
    await register(client, "carol")
    wrong = {"username": "carol", "password": "not her password"}
    codes: Counter[int] = Counter()
    for _ in range(2):
        answers = await asyncio.gather(*(client.post("/auth/login", json=wrong) for _ in range(20)))
        codes.update(a.status_code for a in answers)
    assert codes == {401: 5, 429: 35}, codes  # LOGIN_MAX_FAILURES = 5 passwords were checked, no more


async def test_concurrent_attempts_on_new_usernames_never_fail(client: httpx.AsyncClient) -> None:
    """The first attempts on a name create its throttle row: concurrent ones must not collide on it."""
    answers = await asyncio.gather(*(
        client.post("/auth/login", json={"username": f"ghost{i % 3}", "password": "whatever"}) for i in range(12)
    ))
    assert {a.status_code for a in answers} <= {401, 429}, [a.text for a in answers if a.status_code >= 500]
