"""The message log: every request and response, durable before the message moves on.

``record`` (records, their canonical encoding, the hash chain and Merkle leaf hashes;
pure), ``checkpoint`` (timestamped checkpoints and batch inclusion paths; pure),
``store`` (the SQLite file), ``writer`` (asyncio group commit), ``timestamper`` (asyncio
batch timestamping beside the writer) and ``verify`` (an auditor's check of a log file:
records, checkpoints, timestamps and paths).
"""

__all__: list[str] = []
