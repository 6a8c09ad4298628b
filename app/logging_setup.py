"""Daily log files in LOG_DIR (trading_bot_, trades_, metrics_ YYYY-MM-DD.log) plus stdout."""

from __future__ import annotations

import copy
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = "%(asctime)sZ %(levelname)s %(name)s: %(message)s"


class DailyFileHandler(logging.Handler):
    """Writes each record to `<prefix>_<UTC date>.log`, switching files at midnight UTC."""

    def __init__(self, directory: Path, prefix: str) -> None:
        super().__init__()
        self.directory, self.prefix = directory, prefix
        self._date: str | None = None
        self._stream: logging.FileHandler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        date = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d")
        if date != self._date:
            if self._stream is not None:
                self._stream.close()
            self.directory.mkdir(parents=True, exist_ok=True)
            self._stream = logging.FileHandler(self.directory / f"{self.prefix}_{date}.log", encoding="utf-8")
            self._stream.setFormatter(self.formatter)
            self._date = date
        assert self._stream is not None
        self._stream.emit(record)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        super().close()


def configure_logging(log_dir: Path, level: str = "INFO") -> None:
    formatter = logging.Formatter(FORMAT)
    formatter.converter = __import__("time").gmtime
    root = logging.getLogger("trdbot")
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    targets = {"trdbot": "trading_bot", "trdbot.trades": "trades", "trdbot.metrics": "metrics"}
    for name, prefix in targets.items():
        handler = DailyFileHandler(log_dir, prefix)
        handler.setFormatter(formatter)
        logger = logging.getLogger(name)
        if name != "trdbot":
            for old in list(logger.handlers):
                logger.removeHandler(old)
                old.close()
        logger.addHandler(handler)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    root.addHandler(console)


_TOKEN_PARAMETER = re.compile(r"((?:^|[?&;])(?:access_)?token=)[^&\s\"']*", re.IGNORECASE)


def redact_tokens(text: str) -> str:
    """`/ws/1?token=eyJ...` -> `/ws/1?token=[redacted]`: bearer tokens in URLs are credentials."""
    return _TOKEN_PARAMETER.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Removes token query parameters from log records (uvicorn's access and WebSocket lines carry full URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with `RedactTokens` on its handlers."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_tokens")
    return config
