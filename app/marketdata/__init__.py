"""Candles: the store of closed candles, their files and resampling."""
