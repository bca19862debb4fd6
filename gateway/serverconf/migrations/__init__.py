"""Alembic migrations of the server configuration store, run by ``ServerConfStore.open``."""
