"""Development tools: the Binance-compatible HTTP simulator and its fault injection (CLI and tests only)."""
