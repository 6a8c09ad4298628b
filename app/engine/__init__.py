"""The trading engine: the cycle, entries, protection, exits and reconciliation."""
