"""Application logic: trading engine services."""
