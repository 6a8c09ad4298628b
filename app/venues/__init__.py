"""Exchange adapters: Binance's REST API (binance/) and the simulated paper venue (paper/)."""
