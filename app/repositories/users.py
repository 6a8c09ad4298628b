"""The people: user accounts, their encrypted exchange credentials and the login throttle."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.records import UserAccount
from app.domain.values import TradingMode
from app.models import ExchangeCredential, LoginThrottle, User


def _user(row: User) -> UserAccount:
    return UserAccount(row.id, row.username, row.email, row.password_hash, TradingMode(row.mode), row.created_at)


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, username: str, email: str, password_hash: str, now: datetime) -> UserAccount:
        row = User(username=username, email=email, password_hash=password_hash, mode="paper", created_at=now)
        self.session.add(row)
        await self.session.flush()
        return _user(row)

    async def get(self, user_id: int) -> UserAccount | None:
        row = await self.session.get(User, user_id)
        return _user(row) if row else None

    async def by_username(self, username: str) -> UserAccount | None:
        row = await self.session.scalar(select(User).where(User.username == username))
        return _user(row) if row else None

    async def taken(self, username: str, email: str) -> list[str]:
        rows = (await self.session.execute(
            select(User.username, User.email).where((User.username == username) | (User.email == email))
        )).all()
        fields = []
        if any(r.username == username for r in rows):
            fields.append("username")
        if any(r.email == email for r in rows):
            fields.append("email")
        return fields

    async def set_mode(self, user_id: int, mode: TradingMode) -> None:
        row = await self.session.get(User, user_id)
        if row is not None:
            row.mode = mode.value


class CredentialRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> ExchangeCredential | None:
        return await self.session.scalar(select(ExchangeCredential).where(ExchangeCredential.user_id == user_id))

    async def upsert(self, user_id: int, key_token: str, secret_token: str, masked: str, mode: str, now: datetime) -> None:
        row = await self.get(user_id)
        if row is None:
            row = ExchangeCredential(user_id=user_id)
            self.session.add(row)
        row.api_key_encrypted, row.api_secret_encrypted = key_token, secret_token
        row.api_key_masked, row.mode, row.updated_at = masked, mode, now
        await self.session.flush()

    async def delete(self, user_id: int) -> bool:
        result = await self.session.execute(delete(ExchangeCredential).where(ExchangeCredential.user_id == user_id))
        return bool(getattr(result, "rowcount", 0))


class ThrottleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, key: str) -> LoginThrottle | None:
        return await self.session.get(LoginThrottle, key)

    async def record_failure(self, key: str, now: datetime, window_s: int, max_failures: int) -> None:
        row = await self.get(key)
        if row is None or (now - row.window_start).total_seconds() > window_s:
            if row is None:
                row = LoginThrottle(username=key)
                self.session.add(row)
            row.failures, row.window_start, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= max_failures:
            row.locked_until = now + timedelta(seconds=window_s)

    async def reset(self, key: str) -> None:
        await self.session.execute(delete(LoginThrottle).where(LoginThrottle.username == key))
