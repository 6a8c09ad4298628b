"""Pure numeric functions: technical indicators on float arrays."""
