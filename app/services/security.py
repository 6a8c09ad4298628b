"""Password hashing (argon2), access tokens (HS256 JWT) and encryption of exchange keys at rest (Fernet)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from cryptography.fernet import Fernet, InvalidToken
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from app.domain.errors import ConfigurationError


class PasswordHasher:
    def __init__(self, time_cost: int = 3, memory_cost: int = 65536) -> None:
        self._hash = PasswordHash((Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost),))
        self._dummy = self._hash.hash("timing-equaliser")

    def hash(self, password: str) -> str:
        return self._hash.hash(password)

    def verify(self, password: str, password_hash: str | None) -> bool:
        """Constant work whether or not the user exists, so timing does not reveal usernames."""
        return self._hash.verify(password, password_hash or self._dummy) and password_hash is not None


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    expires_at: datetime


class InvalidTokenError(Exception):
    """The token is missing, malformed, expired or signed with another key."""


class TokenService:
    ALGORITHM = "HS256"

    def __init__(self, secret: str, expire_minutes: int) -> None:
        self._secret = secret
        self.expire_minutes = expire_minutes

    def issue(self, user_id: int, now: datetime) -> str:
        claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=self.expire_minutes)}
        return jwt.encode(claims, self._secret, algorithm=self.ALGORITHM)

    def verify(self, token: str, now: datetime) -> TokenClaims:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[self.ALGORITHM], options={"require": ["sub", "exp"], "verify_exp": False}
            )
            user_id = int(claims["sub"])
            expires_at = datetime.fromtimestamp(int(claims["exp"]), now.tzinfo)
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            raise InvalidTokenError("invalid token") from e
        if expires_at <= now:
            raise InvalidTokenError("token expired")
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
