"""The seed's path for `app.venues.binance.client` (see docs/architecture.md): a thin public entry module that re-exports it."""

from app.venues.binance.client import (
    BinanceService,
    SignatureRedactingFilter,
    T,
    default_base_url,
    install_log_redaction,
    logger,
)

__all__ = [
    "BinanceService",
    "SignatureRedactingFilter",
    "T",
    "default_base_url",
    "install_log_redaction",
    "logger",
]
