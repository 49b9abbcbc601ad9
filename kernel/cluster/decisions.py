"""The coordinator's log: what each try-confirm-cancel round tried and
what it decided, so a recovery can finish a round a crash cut short.

One file per coordinator (``DIR/coordinators/NAME.log``), held under an
exclusive ``flock`` while its coordinator lives; the OS drops the lock
when the process dies, which is how a recovery knows a log is orphaned.

Records (little-endian; ``crc`` is CRC-32 of the header before it and of
the payload)::

    magic u32 | kind u32 | tx u64 | n u64 | deadline i64 | crc u32 | payload

* ``TRY``    (fsync'd before any try is sent): the carts' ids and their
  shard bit masks (``2 * n`` int64).
* ``DECIDE`` (fsync'd before the second phase): the ids that commit
  (confirm); every other cart of the round is cancelled.
* ``END``    (not synced): the second phase reached every shard.  A lost
  END only makes a recovery repeat the second phase, which is idempotent.

A record cut short at the tail (a crash mid-append) was never acted on: it
is cut off when the log is opened.
"""

import fcntl
import os
import struct
import time

import numpy as np

from ..journal.records import crc32, fsync_directory

__all__ = ["DecisionLog", "Round", "LogBusy", "LogFailed", "TRY", "DECIDE", "END"]

MAGIC = 0x4B434F4F  # "KCOO"
TRY, DECIDE, END = 1, 2, 3
_HEADER = struct.Struct("<IIQQqI")
_COMPACT_BYTES = 1 << 20  # drop a log this big once every round in it is finished


class Round:
    """One try-confirm-cancel round as the log holds it."""

    __slots__ = ("tx", "deadline", "ids", "masks", "committed")

    def __init__(self, tx, deadline, ids, masks):
        self.tx, self.deadline, self.ids, self.masks = tx, deadline, ids, masks
        self.committed = None  # None: no decision on disk (so: cancel every cart)


class LogBusy(RuntimeError):
    """Another live process holds this coordinator's log."""


class LogFailed(RuntimeError):
    """A write or sync of the log failed: this coordinator stops (its
    rounds are finished by the recovery of the next one to open the log)."""


class DecisionLog:
    """Append-only, fsync'd log of one coordinator's rounds.

    Parameters
    ----------
    path : str
        The log file (created if missing).
    wait : bool
        Block until the lock is free (``False``: raise :class:`LogBusy`).
    """

    def __init__(self, path, *, wait=False):
        self.path = path
        created = not os.path.exists(path)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self._fd)
            raise LogBusy(f"coordinator log {path!r} is held by a live process") from None
        if created:
            fsync_directory(os.path.dirname(path) or ".")
        self.rounds = {}
        self.fsync_seconds = 0.0  # time this process spent in the log's fdatasync calls
        self.failed = None  # the error that stopped this log (fail-stop)
        good = self._read()
        if good != os.fstat(self._fd).st_size:  # a torn tail: never acted on
            os.ftruncate(self._fd, good)
            os.fsync(self._fd)
        os.lseek(self._fd, 0, os.SEEK_END)
        self._next_tx = self._last_tx + 1

    def _read(self):
        with os.fdopen(os.dup(self._fd), "rb") as f:
            data = f.read()
        pos = 0
        self._last_tx = 0
        while pos + _HEADER.size <= len(data):
            magic, kind, tx, n, deadline, crc = _HEADER.unpack_from(data, pos)
            size = {TRY: 16 * n, DECIDE: 8 * n, END: 0}.get(kind)
            end = pos + _HEADER.size + (size or 0)
            if magic != MAGIC or size is None or end > len(data):
                break
            payload = data[pos + _HEADER.size:end]
            if crc32(payload, crc32(data[pos:pos + _HEADER.size - 4])) != crc:
                break
            self._last_tx = max(self._last_tx, tx)
            words = np.frombuffer(payload, dtype="<i8").astype(np.int64)
            if kind == TRY:
                self.rounds[tx] = Round(tx, deadline, words[:n], words[n:])
            elif tx in self.rounds:
                if kind == DECIDE:
                    self.rounds[tx].committed = words
                else:
                    del self.rounds[tx]
            pos = end
        return pos

    def _append(self, kind, tx, n, deadline, payload, sync):
        if self.failed is not None:
            raise LogFailed(f"coordinator log {self.path!r} failed earlier ({self.failed}); close this coordinator "
                            f"and open it again: its recovery follows what is on disk")
        head = _HEADER.pack(MAGIC, kind, tx, n, deadline, 0)[:-4]
        record = head + struct.pack("<I", crc32(payload, crc32(head))) + payload
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(f"short write to {self.path!r} ({written} of {len(record)} bytes)")
            if sync:
                start = time.perf_counter()
                os.fdatasync(self._fd)
                self.fsync_seconds += time.perf_counter() - start
        except OSError as error:
            # Fail-stop: the record may or may not be on disk, so this
            # process can no longer know what a recovery will read.
            self.failed = error
            raise LogFailed(f"coordinator log {self.path!r}: {error}; close this coordinator and open it again: "
                            f"its recovery follows what is on disk") from error

    def begin(self, deadline, ids, masks):
        """Log a new round's carts (durably) and return its number."""
        tx = self._next_tx
        self._next_tx += 1
        ids = np.ascontiguousarray(ids, dtype="<i8")
        masks = np.ascontiguousarray(masks, dtype="<i8")
        self._append(TRY, tx, ids.size, int(deadline), ids.tobytes() + masks.tobytes(), sync=True)
        self.rounds[tx] = Round(tx, int(deadline), ids.astype(np.int64), masks.astype(np.int64))
        return tx

    def decide(self, tx, committed):
        """Log (durably) which carts of round ``tx`` commit."""
        committed = np.ascontiguousarray(committed, dtype="<i8")
        self._append(DECIDE, tx, committed.size, 0, committed.tobytes(), sync=True)
        self.rounds[tx].committed = committed.astype(np.int64)

    def end(self, tx):
        """Log that round ``tx`` reached every shard; compact when all ended."""
        self._append(END, tx, 0, 0, b"", sync=False)
        self.rounds.pop(tx, None)
        if not self.rounds and os.fstat(self._fd).st_size > _COMPACT_BYTES:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            os.lseek(self._fd, 0, os.SEEK_SET)

    def unfinished(self):
        """The rounds without an END, oldest first."""
        return [self.rounds[tx] for tx in sorted(self.rounds)]

    def close(self):
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None
