"""Alembic environment: migrations run on the connection :mod:`registry.store` hands over.

There is no ``alembic.ini``; the store builds the Config in code and passes an open
connection as ``config.attributes["connection"]``, so the same code path migrates
SQLite files and PostgreSQL databases, also from an installed tree.
"""

from __future__ import annotations

from alembic import context

from registry.store import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("registry migrations run through registry.store.RegistryStore.open")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
