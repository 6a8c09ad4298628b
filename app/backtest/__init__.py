"""The backtester: the live engine on a simulated clock, with in-memory books, reports and charts."""
