"""The people: user accounts, their encrypted exchange credentials and the login throttle."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, case, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.records import AddressAttempt, LoginLimits, UserAccount, UsernameAttempt
from app.domain.values import TradingMode
from app.models import ExchangeCredential, LoginThrottle, User


class AlreadyTaken(Exception):
    """The username or email belongs to another account (HTTP 409)."""

    def __init__(self, fields: list[str]) -> None:
        super().__init__(f"{' and '.join(fields)} already taken")
        self.fields = fields


def _user(row: User) -> UserAccount:
    return UserAccount(row.id, row.username, row.email, row.password_hash, TradingMode(row.mode), row.created_at)


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, username: str, email: str, password_hash: str, now: datetime) -> UserAccount:
        """Raises `AlreadyTaken` when a concurrent registration won the name or address (the unique indexes)."""
        row = User(username=username, email=email, password_hash=password_hash, mode="paper", created_at=now)
        self.session.add(row)
        try:
            await self.session.flush()
        except IntegrityError as e:
            await self.session.rollback()
            raise AlreadyTaken(await self.taken(username, email) or ["username or email"]) from e
        return _user(row)

    async def get(self, user_id: int) -> UserAccount | None:
        row = await self.session.get(User, user_id)
        return _user(row) if row else None

    async def by_username(self, username: str) -> UserAccount | None:
        """Whatever the capitalisation: `Alice` finds `alice`."""
        row = await self.session.scalar(select(User).where(func.lower(User.username) == func.lower(username)))
        return _user(row) if row else None

    async def taken(self, username: str, email: str) -> list[str]:
        """Which of the two another account already has, compared case-insensitively (as the unique indexes do)."""
        same_name = func.lower(User.username) == func.lower(username)
        same_email = func.lower(User.email) == func.lower(email)
        rows = (await self.session.execute(
            select(same_name.label("name"), same_email.label("email")).where(same_name | same_email)
        )).all()
        fields = []
        if any(r.name for r in rows):
            fields.append("username")
        if any(r.email for r in rows):
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


def _ms(value: int) -> Any:
    """A millisecond value bound as BIGINT (PostgreSQL would take a bare literal next to an INTEGER as int4)."""
    return literal(value, BigInteger())


class ThrottleRepository:
    """Login throttle counters, each changed by one INSERT ... ON CONFLICT DO UPDATE ... RETURNING statement: the
    database serialises concurrent attempts on a key, on SQLite and PostgreSQL alike."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _insert(self) -> Any:
        dialect = self.session.get_bind().dialect.name
        return (postgresql_insert if dialect == "postgresql" else sqlite_insert)(LoginThrottle)

    async def reserve_address(self, key: str, now_ms: int, limits: LoginLimits) -> AddressAttempt:
        """Counts an attempt unless the address must still wait; an attempt past the free ones sets the next wait
        (the previous one doubled, up to the cap)."""
        t = LoginThrottle
        now, zero = _ms(now_ms), _ms(0)
        first, cap = _ms(limits.address_backoff_s * 1000), _ms(limits.address_max_backoff_s * 1000)
        blocked = t.blocked_until_ms > now
        forgotten = t.last_attempt_ms <= _ms(now_ms - limits.address_window_s * 1000)
        attempts = case((forgotten, 1), else_=t.attempts + 1)
        free = attempts <= limits.address_free_attempts
        backoff = case(
            (free, zero), ((t.backoff_ms == 0) | forgotten, first), (t.backoff_ms * 2 > cap, cap),
            else_=t.backoff_ms * 2,
        )
        statement = self._insert().values(  # a first attempt is free (LOGIN_ADDRESS_FREE_ATTEMPTS >= 1)
            key=key, attempts=1, window_start_ms=now_ms, last_attempt_ms=now_ms, blocked_until_ms=0, backoff_ms=0,
            allowed=True,
        )
        statement = statement.on_conflict_do_update(index_elements=[t.key], set_={
            "attempts": case((blocked, t.attempts), else_=attempts),
            "window_start_ms": case((blocked, t.window_start_ms), (forgotten, now), else_=t.window_start_ms),
            "last_attempt_ms": case((blocked, t.last_attempt_ms), else_=now),
            "backoff_ms": case((blocked, t.backoff_ms), else_=backoff),
            "blocked_until_ms": case((blocked, t.blocked_until_ms), (free, zero), else_=now + backoff),
            "allowed": case((blocked, False), else_=True),
        }).returning(t.allowed, t.attempts, t.blocked_until_ms)
        row = (await self.session.execute(statement)).one()
        return AddressAttempt(bool(row.allowed), row.attempts, row.blocked_until_ms)

    async def reserve_username(self, key: str, now_ms: int, window_ms: int) -> UsernameAttempt:
        """Counts an attempt on a username in its window (a new window starts once the last one has passed)."""
        t = LoginThrottle
        expired = t.window_start_ms <= _ms(now_ms - window_ms)
        statement = self._insert().values(
            key=key, attempts=1, window_start_ms=now_ms, last_attempt_ms=now_ms, blocked_until_ms=0, backoff_ms=0,
            allowed=True,
        )
        statement = statement.on_conflict_do_update(index_elements=[t.key], set_={
            "attempts": case((expired, 1), else_=t.attempts + 1),
            "window_start_ms": case((expired, _ms(now_ms)), else_=t.window_start_ms),
            "last_attempt_ms": _ms(now_ms),
        }).returning(t.attempts, t.window_start_ms)
        row = (await self.session.execute(statement)).one()
        return UsernameAttempt(row.attempts, row.window_start_ms)

    async def refund(self, key: str) -> None:
        """A correct password: its attempt is not held against the address."""
        await self.session.execute(
            update(LoginThrottle).where(LoginThrottle.key == key, LoginThrottle.attempts > 0)
            .values(attempts=LoginThrottle.attempts - 1)
        )

    async def forget(self, key: str) -> None:
        await self.session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))

    async def prune(self, older_than_ms: int, now_ms: int) -> int:
        """Deletes rows without an attempt since `older_than_ms` that block nothing any more."""
        result = await self.session.execute(
            delete(LoginThrottle).where(LoginThrottle.last_attempt_ms < older_than_ms,
                                        LoginThrottle.blocked_until_ms <= now_ms)
        )
        return int(getattr(result, "rowcount", 0) or 0)
