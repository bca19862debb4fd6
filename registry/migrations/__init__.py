"""Alembic migrations of the registry store; run by :meth:`registry.store.RegistryStore.open`."""
