"""Alembic environment: migrations run on the connection :mod:`gateway.serverconf.store` hands over.

There is no ``alembic.ini``; the store builds the Config in code and passes an open
connection as ``config.attributes["connection"]``, so the same code path migrates
SQLite files and PostgreSQL databases, also from an installed tree.  The revisions are
named ``sc...``, so a database of another xweg store is refused, not taken for this one.
"""

from __future__ import annotations

from alembic import context

from gateway.serverconf.store import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("server configuration migrations run through ServerConfStore.open")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
