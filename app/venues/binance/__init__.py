"""Binance spot: the REST client, its wire protocol, boundary models, errors and server time."""
