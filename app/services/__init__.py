"""Application services: the analysts and, later, the engine that uses them."""
