"""Errors of the message log; ``sqlite3`` errors never leave this package.

The gateway maps :class:`LogWriteError` to X-Road's ``LoggingFailed``: a message that
could not be logged is not forwarded; and :class:`TimestampingOverdue` to
``LoggingFailed.TimestamperFailed``: no new traffic while records wait too long for a
timestamp.  The read-side errors are for auditors' tools.
"""

from __future__ import annotations

import datetime as dt

__all__ = [
    "MessageLogError",
    "LogWriteError",
    "LogOpenError",
    "LogFileMissing",
    "LogReadError",
    "CorruptRecord",
    "CorruptCheckpoint",
    "TsaUnavailable",
    "TimestampingOverdue",
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


class CorruptCheckpoint(LogReadError):
    """A stored checkpoint or record path cannot be read back as one."""

    def __init__(self, size: int | None, reason: str) -> None:
        where = "a checkpoint" if size is None else f"checkpoint {size}"
        super().__init__(f"{where}: {reason}")
        self.size = size
        self.reason = reason


class TsaUnavailable(MessageLogError):
    """A time-stamping authority could not be asked: refused, HTTP error, timeout, oversized answer.

    Says nothing about the TSA's tokens; the timestamper tries the next TSA.
    """


class TimestampingOverdue(MessageLogError):
    """Records have waited for a timestamp longer than the acceptable period.

    The pipelines answer ``Server.ClientProxy.LoggingFailed.TimestamperFailed`` and take
    no new traffic until a timestamping round succeeds again.
    """

    def __init__(self, since: dt.datetime, acceptable_s: float, last_error: str | None) -> None:
        reason = last_error or "no timestamping round has succeeded yet"
        super().__init__(
            f"records logged since {since.isoformat()} have no timestamp, longer than the acceptable "
            f"{acceptable_s:g} s; last timestamping error: {reason}"
        )
        self.since = since
        self.acceptable_s = acceptable_s
        self.last_error = last_error
