"""Users, their encrypted exchange credentials, login throttling and paper exchange accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(16), default="paper")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# one account per name and per address however they are capitalised (usernames are ASCII, so lower() agrees
# on SQLite and PostgreSQL)
Index("uq_users_username_lower", func.lower(User.username), unique=True)
Index("uq_users_email_lower", func.lower(User.email), unique=True)


class ExchangeCredential(Base):
    __tablename__ = "exchange_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    api_secret_encrypted: Mapped[str] = mapped_column(Text)
    api_key_masked: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LoginThrottle(Base):
    """One counter per case-folded username (`user:...`) or client address (`addr:...`). Times are epoch
    milliseconds of the service clock, so one SQL statement can do the arithmetic on SQLite and PostgreSQL."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    window_start_ms: Mapped[int] = mapped_column(BigInteger)
    last_attempt_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    blocked_until_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    backoff_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    allowed: Mapped[bool] = mapped_column(Boolean, default=True)  # the verdict on the row's latest attempt


class SimAccount(Base):
    """The simulated exchange's state for one paper account, as JSON (Decimals as strings). `version` counts its
    saves: a process that cached the state reads only the version to know it is current, and saves only over the
    version it read (compare and set), so no two processes overwrite each other."""

    __tablename__ = "sim_accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
