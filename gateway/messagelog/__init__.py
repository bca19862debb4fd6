"""The message log: every request and response, durable before the message moves on.

``record`` (records, their canonical encoding, the hash chain; pure), ``store`` (the
SQLite file), ``writer`` (asyncio group commit) and ``verify`` (an auditor's check of a
log file, record by record).  Merkle checkpoints are to be built on ``record``'s bytes.
"""

__all__: list[str] = []
