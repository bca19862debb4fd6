"""Errors of the message log; ``sqlite3`` errors never leave this package.

The gateway maps :class:`LogWriteError` to X-Road's ``LoggingFailed``: a message that
could not be logged is not forwarded.  The read-side errors are for auditors' tools.
"""

from __future__ import annotations

__all__ = [
    "MessageLogError",
    "LogWriteError",
    "LogOpenError",
    "LogFileMissing",
    "LogReadError",
    "CorruptRecord",
]


class MessageLogError(Exception):
    """Base of every message-log failure."""


class LogWriteError(MessageLogError):
    """Records could not be made durable; none of the batch was written."""


class LogOpenError(MessageLogError):
    """The log file cannot be opened: missing, not a message log, or a newer schema."""


class LogFileMissing(LogOpenError, FileNotFoundError):
    """An auditor asked to read a log file that does not exist.

    Also a ``FileNotFoundError``, so command-line code that reports missing files
    generically catches it too.
    """


class LogReadError(MessageLogError):
    """Stored records could not be read."""


class CorruptRecord(LogReadError):
    """A stored row cannot even be turned into a record (wrong types, bad identifiers).

    Verification reports it as the problem of that record instead of crashing.
    """

    def __init__(self, seq: int, message_id: str, reason: str) -> None:
        super().__init__(f"record {seq} (message {message_id}): {reason}")
        self.seq = seq
        self.message_id = message_id
        self.reason = reason
