"""FastAPI routers, dependencies, schemas and error handlers: thin."""
