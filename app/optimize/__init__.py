"""`trdbot optimize`: parameter search and walk-forward validation over the backtest engine."""
