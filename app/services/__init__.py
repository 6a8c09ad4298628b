"""Application logic: the trading engine, its analysts, risk manager, exchanges and notifications."""
