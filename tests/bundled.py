"""The bundled sample's exchange rules (real Binance filters, stored beside its candles), for tests that need a
symbol's rules without a market."""

import shutil
from pathlib import Path

from app.config import BUNDLED_DATA_DIR
from app.domain.values import SymbolRules
from app.marketdata.exchange_info import EXCHANGE_INFO_FILE, read_exchange_info


def bundled_rules() -> dict[str, SymbolRules]:
    return read_exchange_info(BUNDLED_DATA_DIR / EXCHANGE_INFO_FILE)


def store_bundled_rules(directory: Path) -> None:
    """Writes the bundled exchange_info.json beside candle files a test writes (else their rules are inferred)."""
    shutil.copy(BUNDLED_DATA_DIR / EXCHANGE_INFO_FILE, directory / EXCHANGE_INFO_FILE)
