"""The seed's path for `app.venues.binance` (see docs/architecture.md): a thin public entry module that re-exports it."""

from app.venues.binance.client import BinanceService, T, default_base_url, logger
from app.venues.binance.transport import SignatureRedactingFilter, install_log_redaction

__all__ = [
    "BinanceService",
    "SignatureRedactingFilter",
    "T",
    "default_base_url",
    "install_log_redaction",
    "logger",
]
