"""The risk rules: validation, sizing, adaptive exits and the per-asset profiles."""
