"""A tiny durable event log: one file, one checksummed JSON line per append (a batch is one line).

Not part of lighthouse-testkit: it stands for "your store" in the example of testing a third-party
store with the kit. Rules: an append returns only after ``fsync`` (unless ``fsync=False``); a line
without its newline at the very end is a torn write and is cut on open; a line whose checksum does
not match is corruption and the log refuses to open (:class:`LogCorrupted`); a failed write is cut
back so that the file never holds half a line before a good one.
"""

from jsonl_store.log import JsonlLog, LogCorrupted, LogError, LogReadOnly

__all__ = ["JsonlLog", "LogCorrupted", "LogError", "LogReadOnly"]
