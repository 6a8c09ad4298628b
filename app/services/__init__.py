"""Application services: market data, exchanges, analysts, risk and the trading loop."""
