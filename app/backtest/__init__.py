"""Backtests: the live engine on a simulated clock over historical candles (backtest issue)."""
