"""A user's trading config as it may be changed: one schema for `PUT /trading/config` and for the trading fields of
`trdbot backtest --config`, so a backtest can never run on limits the service would refuse."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.domain.analysts import AnalystKind

# what a Money column holds (NUMERIC(38, 18)): more digits would be rounded or refused by the database
MoneyIn = Annotated[Decimal, Field(max_digits=38, decimal_places=18, allow_inf_nan=False)]
Symbol = Annotated[str, Field(min_length=1, max_length=20)]
Analyzer = AnalystKind  # the registry in app/domain/analysts.py


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


NOT_NULL_SETTINGS = ("symbols", "exclude_symbols", "risk_per_trade_pct", "max_open_positions", "daily_trade_limit",
                     "min_signal_confidence", "max_balance_trade_ratio", "position_timeout_minutes", "analyzer")


class ConfigUpdate(Strict):
    """Absent fields keep their value; only the trading hours may be null (no window)."""

    symbols: Annotated[list[Symbol], Field(min_length=1, max_length=20)] | None = None
    exclude_symbols: Annotated[list[Symbol], Field(max_length=50)] | None = None
    risk_per_trade_pct: Annotated[MoneyIn, Field(ge=Decimal("0.1"), le=2)] | None = None
    max_open_positions: Annotated[int, Field(ge=1, le=10)] | None = None
    daily_trade_limit: Annotated[int, Field(ge=1, le=50)] | None = None
    min_signal_confidence: Annotated[int, Field(ge=50, le=95)] | None = None
    max_balance_trade_ratio: Annotated[MoneyIn, Field(gt=0, le=1)] | None = None
    trading_hours_start: time | None = None
    trading_hours_end: time | None = None
    position_timeout_minutes: Annotated[int, Field(ge=5, le=1440)] | None = None
    analyzer: Analyzer | None = None

    @field_validator(*NOT_NULL_SETTINGS, mode="before")
    @classmethod
    def _not_null(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            raise ValueError(f"{info.field_name} cannot be null (leave it out to keep its value)")
        return value
