"""Password hashing (argon2, off the event loop), throttled logins, access tokens (HS256 JWT) and encryption of
exchange keys at rest (Fernet)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import jwt
from cryptography.fernet import Fernet, InvalidToken
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from app.domain.clock import Clock, ms_from_utc
from app.domain.errors import ConfigurationError
from app.domain.records import AddressAttempt, LoginLimits, UserAccount, UsernameAttempt

T = TypeVar("T")


class HasherBusy(Exception):
    """More password hashes are waiting than the pool takes: answer 503 and let the client retry."""


class PasswordHasher:
    """argon2 with a bounded pool of worker threads: a hash takes ~0.5 s of CPU at the default cost, which on the
    event loop would stall every request and the trading cycle. argon2's C code releases the GIL while it works."""

    def __init__(self, time_cost: int = 3, memory_cost: int = 65536, workers: int = 1, max_pending: int = 32) -> None:
        self._hash = PasswordHash((Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost),))
        self._dummy = self._hash.hash("timing-equaliser")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2", initializer=_yield_cpu)
        self._max_pending = max_pending
        self._pending = 0

    def hash(self, password: str) -> str:
        return self._hash.hash(password)

    def verify(self, password: str, password_hash: str | None) -> bool:
        """Constant work whether or not the user exists, so timing does not reveal usernames."""
        return self._hash.verify(password, password_hash or self._dummy) and password_hash is not None

    async def hash_async(self, password: str) -> str:
        return await self._off_loop(lambda: self.hash(password))

    async def verify_async(self, password: str, password_hash: str | None) -> bool:
        return await self._off_loop(lambda: self.verify(password, password_hash))

    async def _off_loop(self, work: Callable[[], T]) -> T:
        if self._pending >= self._max_pending:
            raise HasherBusy(f"{self._pending} password checks are waiting")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work)
        finally:
            self._pending -= 1


class ThrottleStore(Protocol):
    """Atomic throttle counters (one statement each, so concurrent attempts are counted one by one)."""

    async def reserve_address(self, key: str, now_ms: int, limits: LoginLimits) -> AddressAttempt: ...
    async def reserve_username(self, key: str, now_ms: int, window_ms: int) -> UsernameAttempt: ...
    async def refund(self, key: str) -> None: ...
    async def forget(self, key: str) -> None: ...
    async def prune(self, older_than_ms: int, now_ms: int) -> int: ...


class UserLookup(Protocol):
    async def by_username(self, username: str) -> UserAccount | None: ...


class LoginStore(Protocol):
    @property
    def throttle(self) -> ThrottleStore: ...
    @property
    def users(self) -> UserLookup: ...
    async def commit(self) -> None: ...


class LoginRefused(Exception):
    """Too many attempts: answer 429 with Retry-After."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("too many failed logins; try again later")
        self.retry_after_s = max(1, retry_after_s)


class WrongCredentials(Exception):
    """Unknown username or wrong password (deliberately not told apart)."""


class LoginGuard:
    """Logs users in: counts the attempt before the password is checked (so concurrency cannot exceed a limit),
    checks it off the event loop, refunds a correct one, and now and then prunes forgotten throttle rows."""

    def __init__(self, hasher: PasswordHasher, clock: Clock, limits: LoginLimits) -> None:
        self.hasher, self.clock, self.limits = hasher, clock, limits
        self._next_prune_ms = 0

    async def login(self, store: LoginStore, username: str, password: str, address: str) -> UserAccount:
        now_ms = ms_from_utc(self.clock.now())
        await self._prune_now_and_then(store, now_ms)
        address_key, username_key = throttle_key("addr", address), throttle_key("user", username.casefold())
        await self._reserve(store, address_key, username_key, now_ms)
        user = await store.users.by_username(username)
        await store.commit()  # no connection is held while the hash is checked
        if not await self._password_matches(store, (address_key, username_key), password, user) or user is None:
            raise WrongCredentials()
        await store.throttle.refund(address_key)
        await store.throttle.forget(username_key)
        await store.commit()
        return user

    async def _password_matches(self, store: LoginStore, keys: tuple[str, str], password: str,
                                user: UserAccount | None) -> bool:
        try:
            return await self.hasher.verify_async(password, user.password_hash if user else None)
        except HasherBusy:
            for key in keys:  # never checked: not held against the address or the name
                await store.throttle.refund(key)
            await store.commit()
            raise

    async def _reserve(self, store: LoginStore, address_key: str, username_key: str, now_ms: int) -> None:
        address = await store.throttle.reserve_address(address_key, now_ms, self.limits)
        if not address.allowed:
            await store.commit()
            raise LoginRefused(_seconds_until(address.blocked_until_ms, now_ms))
        window_ms = self.limits.user_window_s * 1000
        name = await store.throttle.reserve_username(username_key, now_ms, window_ms)
        await store.commit()
        address_has_failed = address.attempts > 1
        if name.attempts > self.limits.user_max_failures and address_has_failed:
            raise LoginRefused(_seconds_until(name.window_start_ms + window_ms, now_ms))

    async def _prune_now_and_then(self, store: LoginStore, now_ms: int) -> None:
        if now_ms < self._next_prune_ms:
            return
        self._next_prune_ms = now_ms + self.limits.prune_interval_s * 1000
        keep_ms = max(self.limits.user_window_s, self.limits.address_window_s) * 1000
        await store.throttle.prune(now_ms - keep_ms, now_ms)
        await store.commit()


def throttle_key(kind: str, value: str) -> str:
    """`kind:value`, with a value too long for the column (only names no account can have) as its digest."""
    if len(value) > 100:
        value = hashlib.sha256(value.encode()).hexdigest()
    return f"{kind}:{value}"


def _seconds_until(until_ms: int, now_ms: int) -> int:
    return -(-(until_ms - now_ms) // 1000)  # rounded up


def _yield_cpu() -> None:
    """A hashing thread runs at a lower priority (Linux: per thread), so the event loop gets a core first."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    expires_at: datetime


class InvalidTokenError(Exception):
    """The token is missing, malformed, expired or signed with another key."""


class TokenService:
    """Issues and checks access tokens. A token that checked out is remembered (its signature and claims cannot
    change), so the next request with it costs a dictionary look-up and the expiry comparison."""

    ALGORITHM = "HS256"
    REMEMBERED_TOKENS = 10_000

    def __init__(self, secret: str, expire_minutes: int) -> None:
        self._secret = secret
        self.expire_minutes = expire_minutes
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()

    def issue(self, user_id: int, now: datetime) -> str:
        claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=self.expire_minutes)}
        return jwt.encode(claims, self._secret, algorithm=self.ALGORITHM)

    def verify(self, token: str, now: datetime) -> TokenClaims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token, now)
            self._verified[token] = claims
            if len(self._verified) > self.REMEMBERED_TOKENS:
                self._verified.popitem(last=False)
        if claims.expires_at <= now:
            raise InvalidTokenError("token expired")
        return claims

    def _decode(self, token: str, now: datetime) -> TokenClaims:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[self.ALGORITHM], options={"require": ["sub", "exp"], "verify_exp": False}
            )
            user_id = int(claims["sub"])
            expires_at = datetime.fromtimestamp(int(claims["exp"]), now.tzinfo)
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            raise InvalidTokenError("invalid token") from e
        return TokenClaims(user_id, expires_at)


class CredentialCipher:
    """Encrypts exchange API keys with CREDENTIALS_KEY; the plain values never leave this object but to the adapter."""

    def __init__(self, key: str | None) -> None:
        self._fernet = Fernet(key.encode()) if key else None

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def _require(self) -> Fernet:
        if self._fernet is None:
            raise ConfigurationError("CREDENTIALS_KEY is not set: exchange keys cannot be stored or read")
        return self._fernet

    def encrypt(self, plain: str) -> str:
        return self._require().encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._require().decrypt(token.encode()).decode()
        except InvalidToken as e:
            raise ConfigurationError("stored exchange keys cannot be decrypted with this CREDENTIALS_KEY") from e


def mask_key(api_key: str) -> str:
    if len(api_key) <= 8:
        return "*" * len(api_key)
    return f"{api_key[:4]}{'*' * (len(api_key) - 8)}{api_key[-4:]}"
