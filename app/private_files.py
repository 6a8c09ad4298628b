"""Files the service creates are its owner's alone: the database, logs and var/ hold secrets and books."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def private_files(database_url: str | None = None) -> Iterator[None]:
    """Files created meanwhile (database, logs, var/) are readable by their owner only; an existing SQLite
    database file is tightened too."""
    previous = make_files_private(database_url)
    try:
        yield
    finally:
        os.umask(previous)


def make_files_private(database_url: str | None = None) -> int:
    """From now on this process creates files readable by their owner only, and an existing SQLite database file
    is tightened; returns the umask it replaced."""
    previous = os.umask(0o077)
    if database_url and database_url.startswith("sqlite") and "///" in database_url:
        for suffix in ("", "-wal", "-shm"):
            path = Path(database_url.split("///", 1)[1] + suffix)
            if path.exists():
                path.chmod(0o600)
    return previous
