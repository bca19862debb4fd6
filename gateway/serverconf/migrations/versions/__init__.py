"""Alembic revisions of the server configuration store, oldest first."""
