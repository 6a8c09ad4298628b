"""The simulated exchange: the market replaying candles, paper accounts and their order matching."""
