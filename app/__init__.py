"""TRD Bot: a multi-user day-trading service for Binance spot pairs."""
