"""Appending records to the newest segment, and making them durable.

Policies (``fsync=``):

``"batch"``
    A call returns only once its record is on disk.  Records wait in memory;
    the first caller to find no flush running becomes the leader: it takes
    every record appended so far (its own and other threads'), writes them
    with one ``write`` and one ``fdatasync``, then wakes the callers those
    covered (a condition variable on the durable sequence number).  Callers
    that arrive meanwhile queue for the next flush: group commit.
``"interval"``
    Each record is written (``write``, into the OS page cache) before its
    call returns, and a background thread ``fdatasync``\\ s every
    ``interval_ms``.  A killed process loses nothing; a power loss or OS crash
    loses at most the calls acknowledged since the last completed
    ``fdatasync``: those of the last ``interval_ms`` plus one ``fdatasync``.
``"none"``
    Written before the call returns, never synced except at ``checkpoint``
    and ``close``: survives a killed process, not a power loss.

A private ``"batch"`` writer (one process) keeps up to ``PREALLOCATE``
bytes written as zeros and synced ahead of its records (a background
thread, as PostgreSQL's ``wal_init_zero``): a record then lands in blocks
the file already has, and its ``fdatasync`` flushes data only, not the
file's size and extents (a filesystem journal commit).  Measured on the
2-core VM: write + ``fdatasync`` of a 270 KB record 290-330 us appended,
150-230 us into zeroed room.  (``pwrite`` + ``fdatasync`` into a zeroed
file, alone, 30 interleaved rounds: 235 us for 64 KB, 339 for 230 KB, 367
for 270 KB, 471 for 400 KB: about 200 us fixed and 0.65 us per KB.  A record
15% smaller saves ~1.5% of a durable reserve of 10,000 orders; the fixed
part is why big batches pay.)  Recovery reads an all-zero tail after the last
record as free room, not as damage (:mod:`kernel.journal.recovery`);
``close`` cuts it off.  While flushes are big (over 128 KiB on average,
``BIG_FLUSH``) it keeps no room: the zeros, written beside the callers,
would cost them more than the faster ``fdatasync`` saves, and records then
extend the file.  The price: overwritten pages reach the disk in any
order, so a power loss during a group's ``fdatasync`` can keep a later
record of the group and lose an earlier one.  Each record says what was
synced when it was made (``synced``, :mod:`kernel.journal.records`), and
recovery cuts such a torn group off instead of calling it damage.
:meth:`SegmentWriter.make_room` (``DurableInventory.make_room``) asks for
room whatever the flushes' size, made at once, before a burst: records of a
burst into room made ahead sync without a journal commit and without zeros
being written beside them, until they have used it.

A private ``"batch"`` writer also recycles: a segment a checkpoint made
unnecessary is not removed but kept as the spare (``wal-spare.seg``), and
the next new segment (at the next checkpoint, or when the journal is opened
again) is the spare with a new header, renamed (:meth:`SegmentWriter._take_spare`;
PostgreSQL recycles its WAL segments so).  The records land in blocks the
file already has: their ``fdatasync`` flushes data only, as into zeroed
room, without the zeros.  Two files take turns: while a checkpoint's
snapshot is written (calls going on), the records after it go into the
spare, and the segment before it becomes the spare once the snapshot is
durable.  Where there is no spare yet (a new journal, the first checkpoint
after an ``open_durable``), or it is smaller than the room a segment starts
with, :meth:`SegmentWriter.prepare_spare` writes one of zeros first, outside
the call lock: so every segment starts with room for about a snapshot's
bytes, or what the segment before it wrote if more (``SEGMENT_ROOM_MAX``
at most), and records extend a file only past that.  Recovery reads the
first old record (numbered below the segment's first) as the end of the
segment.

A shared durable inventory (state in POSIX shared memory, several
processes) appends to one segment file: every process holds an ``O_APPEND``
descriptor on it, and the call lock is also an ``flock`` on
``DIR/journal.lock`` (released by the OS when its holder dies), so the
sequence number (``counters[JOURNAL_SEQ]``, in the shared state) and the
file order are the order the calls changed the state in.  Records are
written before the lock is released (a killed process cannot take one with
it), so any process's ``fdatasync`` makes every earlier record durable,
whoever wrote it: a call that depends on another process's call (a confirm
of its hold) is acknowledged only after that call's record is on disk.  A
process that dies inside the lock leaves ``counters[JOURNAL_BUSY]`` set; the
next one in cuts the log back to its last whole record and snapshots the
live state there (:meth:`SegmentWriter._after_dead_holder`).

Failure is fail-stop (as PostgreSQL does on an fsync error): once a write or
sync fails, the file is cut back to what was last made durable (best
effort), every waiting and later call raises :class:`JournalFailed`, and only
:func:`kernel.journal.open_durable` (a rebuild from disk) goes on.
"""

import fcntl
import mmap
import os
import threading
import time
import weakref

from ..codes import JOURNAL_BUSY, JOURNAL_SEGMENT, JOURNAL_SEQ
from .records import (SEGMENT_HEADER, SPARE_SEGMENT, JournalError, encode, encoded_size, fsync_directory,
                      read_record, segment_header, segment_name, write_new_file)

POLICIES = ("batch", "interval", "none")
_WAIT_SLICE = 1.0  # seconds between re-checks of a wait (a failed leader wakes everyone anyway)
COMMIT_DELAY = 200e-6  # seconds a flush leader waits at most for calls already under way
# Zeroed room a private writer keeps ahead of its records: refilled a chunk
# at a time whenever less than PREALLOCATE is left, so a record always
# lands in blocks zeroed and synced at least PREALLOCATE - PREALLOCATE_CHUNK
# bytes earlier, never in pages the preparer is still writing or flushing.
# The zeros go out in PREALLOCATE_PIECE writes, each synced before the next:
# a buffered write holds the file's inode lock, and a record's write must not
# wait behind 4 MiB; nor its fdatasync behind a chunk of unsynced zeros.
# The room grows with use (twice what the segment holds, at least one
# piece), so an inventory that writes little never zeroes 16 MiB.
# PREALLOCATE = 0: no room, every record appended (for comparisons).
PREALLOCATE = 16 << 20
PREALLOCATE_CHUNK = 4 << 20
PREALLOCATE_PIECE = 256 << 10
# Flushes bigger than this (a moving average of the bytes each one writes)
# get no new room: the records then extend the file, as appends.  Room pays
# where a flush writes little (its fdatasync then skips a filesystem journal
# commit: reserve_one from 1 thread 160 against ~400 us), and costs where it
# writes a lot: the zeros are as many bytes again, each piece with its own
# fdatasync, written by a third thread beside the callers' kernels (on two
# cores, beside two callers, it takes CPU from them).  Measured with
# bench/ab_journal_room.py (1M uniform tracked orders in batches, 9
# interleaved rounds; speed with no room at all over speed with it, 1
# caller / 2 callers): batches of 1,000 (27 KB records) 0.87x / 0.88x;
# 2,500 (67 KB) 0.88x / 1.08x; 5,000 (135 KB) 1.01x / 1.11x; 10,000 (270
# KB) 1.04x / 1.30x.  So the line is at 128 KiB (512 KiB before, chosen
# from 580 KB and 2.7 MB records): against 512 KiB, batches of 10,000 1.08x
# with 1 caller, 1.18x with 2; 5,000 1.02x / 1.22x; 2,500 (room kept: the
# same code) 0.99x / 0.92x, inside this VM's run-to-run swing.
BIG_FLUSH = 128 << 10
# A new segment of a private "batch" writer is never an empty file: it is
# the spare (a recycled segment, or zeros written and synced by
# SegmentWriter.prepare_spare outside the call lock), holding at least the
# room the next checkpoint interval is expected to write: as many bytes as
# the state (a snapshot), or as the segment it follows if that wrote more,
# up to SEGMENT_ROOM_MAX.  (Redis rewrites its AOF by default once the log
# has grown by the size of its base: a journal interval of about the
# snapshot's size.  PostgreSQL zeroes each 16 MB WAL segment when it
# creates it; TigerBeetle formats its whole WAL up front.)  Records of big
# flushes, which get no room from the preparer (BIG_FLUSH), then still land
# in blocks the file has.  Zeroing 64 MiB and its fdatasync took 35 ms on
# the 2-core VM.
SEGMENT_ROOM_MAX = 64 << 20


class JournalFailed(JournalError):
    """A record could not be made durable: the call that raised was not
    acknowledged, and this inventory refuses every later call (reopen it with
    ``open_durable``, which rebuilds from what the journal holds)."""


class CallLock:
    """Serializes the state-changing calls of an inventory: this process's
    threads (a ``threading.Lock``) and, shared, every process (``flock``)."""

    def __init__(self, lock_path=None):
        self._thread = threading.Lock()
        self._fd = None if lock_path is None else os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self):
        self._thread.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread.release()
                raise
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread.release()

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Critical:
    """``SegmentWriter.lock``: the call lock, plus (shared) the dead-holder
    check on the way in and the all-clear on the way out."""

    def __init__(self, writer, call_lock):
        # A proxy, not the writer: the writer holds this as its ``lock``, and
        # a cycle would keep a closed inventory's state block (through the
        # writer's counters view) until the garbage collector's next pass.
        self._writer = weakref.proxy(writer)
        self._lock = call_lock

    def __enter__(self):
        self._lock.__enter__()
        try:
            self._writer._enter_critical()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            self._writer._exit_critical()
        finally:
            self._lock.__exit__(*exc)

    def close(self):
        self._lock.close()


LOCK_FILE = "journal.lock"
OWNER_FILE = "journal.owner"


class OwnerLock:
    """Who may append to a journal directory, for as long as it is open:
    one process alone (private: an exclusive ``flock``), or any number of
    processes sharing the state (shared: a shared ``flock``).  A second
    private opener, or a private and a shared one, would interleave two
    logs; the OS drops the lock when its holder dies."""

    def __init__(self, directory, shared):
        self._fd = os.open(os.path.join(directory, OWNER_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise JournalError(f"{directory!r} is open in another process"
                               + ("" if shared else " (or another inventory of this one)")
                               + ("; several processes share one durable inventory with shared=name"
                                  if not shared else " without shared=: close it first")) from None

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SegmentWriter:
    """The segment being appended to, with its fsync policy.

    ``lock`` serializes the state-changing calls: a call holds it from
    before its kernel runs until its record has its sequence number and its
    after-images are copied (and, unless :attr:`packs_outside_lock`, until
    it is appended), so the journal's order is the order the calls changed
    the state in.  The flush (write and fsync) runs outside it.
    ``counters`` is the state's counters array: the sequence number lives
    there (``JOURNAL_SEQ``), so a snapshot and a record carry it, and
    processes sharing the state share it.

    ``attach=True`` (shared only): append to the segment the other
    processes use (``counters[JOURNAL_SEGMENT]``) instead of starting one.
    ``segment_room`` (private ``"batch"``): bytes of room a new segment
    starts with at least (the state's size; :meth:`prepare_spare`).
    """

    def __init__(self, directory, counters, block_crc, policy="batch", interval_ms=10, shared=False, attach=False,
                 owner=None, segment_room=0):
        if policy not in POLICIES:
            raise ValueError(f"fsync must be one of {POLICIES}, got {policy!r}")
        self.directory = directory
        self.policy = policy
        self.interval_ms = interval_ms
        self.block_crc = block_crc
        self.shared = shared
        self._owner = owner  # an OwnerLock this writer releases when it closes
        self._counters = counters
        self.lock = _Critical(self, CallLock(os.path.join(directory, LOCK_FILE) if shared else None))
        self.resync = None  # shared: snapshot(seq) of the live state, set by the inventory
        state_lock = threading.Lock()  # guards everything below; never held during I/O
        self._cond = threading.Condition(state_lock)    # waiters for the durable sequence number
        self._grown = threading.Condition(state_lock)   # a flush leader waiting for more records
        # Written at append (under the lock) rather than by the flush leader:
        # shared (others write the same file), or not "batch" (a killed
        # process must not take acknowledged records with it).
        self._write_through = shared or policy != "batch"
        self._pending = []           # batch, private: the parts of the encoded records not yet written
        self._early = {}             # batch, private: seq -> parts handed in before an earlier record
        last = int(counters[JOURNAL_SEQ])
        self._appended = last        # last record this writer appended
        self._seen = last            # every record up to here is written (by someone)
        self._durable = last         # every record up to here is on disk
        self._flushing = False       # a leader (or the flusher) is writing / syncing
        self._since_flush = 0        # records appended since a leader last took them
        self._last_group = 1         # records the last flush took
        self._failed = None
        self._fd = None
        self._durable_offset = 0     # end of the records at the last completed sync
        self._offset = 0             # end of the records after the last completed write
        # Private "batch": records go to explicit offsets (pwritev) into
        # zeroed room a background thread keeps ahead of them.  Otherwise:
        # O_APPEND writes (shared: from every process), so the file's size
        # is the end of the records.
        # Only under "batch": there every acknowledged record is synced, so
        # the writes whose pages may reach the disk out of order (one group
        # in flight) are exactly the ones no caller was told about.
        self._preallocate = not shared and policy == "batch" and PREALLOCATE > 0
        self._room = threading.Condition(state_lock)  # the preparer waiting for room to run low
        self._file_end = 0           # private: bytes the file holds (records, then zeros or recycled records)
        self._preparing = False      # private: the preparer is writing zeros from _file_end on
        self._flush_bytes = 0.0      # private: moving average of the bytes a flush writes (BIG_FLUSH)
        self._ready_until = 0        # private: room asked for by make_room, up to this offset of the segment
        self._prepare_error = None   # private: why the preparer stopped (a full disk), if it did
        self._preparer = None
        self._segment_room = segment_room
        self.fsyncs = 0
        self.fsync_seconds = 0.0
        self.bytes_written = 0
        try:
            if attach:
                self._open_segment(int(counters[JOURNAL_SEGMENT]), create=False)
            else:
                self.prepare_spare()
                self._open_segment(last + 1)
        except BaseException:
            self.lock.close()
            if owner is not None:
                owner.close()
            raise
        self._stop = threading.Event()
        if self._preallocate:
            self._preparer = threading.Thread(target=self._prepare_ahead, name="kernel-journal-preparer",
                                              daemon=True)
            self._preparer.start()
        self._flusher = None
        if policy == "interval":
            self._flusher = threading.Thread(target=self._flush_every, name="kernel-journal-flusher", daemon=True)
            self._flusher.start()

    # ----------------------------------------------------------- segments
    def _open_segment(self, first_seq, create=True):
        path = os.path.join(self.directory, segment_name(first_seq))
        mode = os.O_WRONLY if self._preallocate else os.O_WRONLY | os.O_APPEND
        if not create:
            fd = os.open(path, mode)
        elif (fd := self._take_spare(path, first_seq)) is None:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | mode, 0o600)
            except FileExistsError:
                if os.path.getsize(path) > SEGMENT_HEADER.size:
                    raise
                os.unlink(path)  # made by a process that died before it held a record: empty
                fd = os.open(path, os.O_CREAT | os.O_EXCL | mode, 0o600)
            try:
                _write_all(fd, segment_header(first_seq, self.block_crc))
                os.fsync(fd)
                fsync_directory(self.directory)
            except BaseException:
                os.close(fd)
                raise
            if self.shared:
                self._counters[JOURNAL_SEGMENT] = first_seq
        with self._cond:
            while self._preparing:  # not while it writes zeros into the old segment
                self._cond.wait(_WAIT_SLICE)
            old, self._fd = self._fd, fd
            old_end = self._offset
            self._file_end = os.lseek(fd, 0, os.SEEK_END)
            # Private "batch" writes at explicit offsets: its records start
            # after the header, whatever a recycled file holds past it (its
            # blocks count as room: _file_end).  O_APPEND: at the file's end.
            self._offset = self._durable_offset = SEGMENT_HEADER.size if self._preallocate else self._file_end
            # Room asked for and not used yet is asked for in the new segment
            # too (a checkpoint does not cancel a make_room): the recycled
            # blocks count first, the preparer zeroes the rest in the background.
            left = self._ready_until - old_end if old is not None else 0
            self._ready_until = self._offset + left if left > 0 else 0
            self._room.notify()
        self.segment = path
        self.segment_first_seq = first_seq
        if old is not None:
            # Everything in the old segment is synced (a checkpoint).  Its
            # tail (room, or old records it held before it was recycled) is
            # left as it is: recovery reads a segment that is not the newest
            # up to the first thing that is not its next record, and the
            # next segment must start right after that (recovery.py); the
            # blocks go on being useful when it becomes the spare.
            os.close(old)

    def _take_spare(self, path, first_seq):
        """Private ``"batch"``: the descriptor of the spare segment
        (:data:`~kernel.journal.records.SPARE_SEGMENT`, a segment an earlier
        checkpoint made unnecessary) renamed to ``path`` with a header for
        ``first_seq``; None when there is no spare (or this writer does not
        recycle).

        Why: a record written into blocks the file already has syncs without
        a filesystem journal commit (no new size, no new extents), as into
        zeroed room, but nothing had to write zeros first: the records after
        a checkpoint land in the blocks of the records of the checkpoint
        interval before the last one, for as long as that held as many bytes
        (PostgreSQL recycles its WAL segments so).  Measured on the 2-core
        VM (``python -m kernel.journal bench``, the "after ckpt" row): see
        the README.

        The old records it still holds after the new ones are not damage:
        every one has a sequence number below the segment's first, and says
        it was written when less than that was synced; recovery reads the
        first of them as the end of the segment (:mod:`kernel.journal.recovery`).
        Order of the steps, for a crash between them: the header first,
        synced, under the spare's name (recovery never reads the spare), then
        the rename: a file with a segment's name always has its header.  An
        I/O error before the rename changes nothing (the spare stays a
        spare); after it, the directory may or may not hold the new name on
        disk, and a segment after the current one would break the chain if
        the current one went on: fail-stop."""
        if not self._preallocate:
            return None
        spare = os.path.join(self.directory, SPARE_SEGMENT)
        try:
            fd = os.open(spare, os.O_WRONLY)
        except FileNotFoundError:
            return None
        try:
            _write_all(fd, segment_header(first_seq, self.block_crc), 0)
            os.fdatasync(fd)
            if os.path.exists(path):
                if os.path.getsize(path) > SEGMENT_HEADER.size:
                    raise FileExistsError(f"{path}: a segment with records is in the way of the spare")
                # else made by a process that died before it held a record: the rename replaces it
            os.rename(spare, path)
        except BaseException:
            os.close(fd)
            raise
        try:
            fsync_directory(self.directory)
        except OSError as error:
            os.close(fd)
            self.fail(error)
        return fd

    # ------------------------------------------------ shared: dead holders
    def _enter_critical(self):
        if self.shared:
            if int(self._counters[JOURNAL_BUSY]) != 0:
                self._after_dead_holder()
            self._counters[JOURNAL_BUSY] = os.getpid()

    def _exit_critical(self):
        if self.shared:
            self._counters[JOURNAL_BUSY] = 0

    def _after_dead_holder(self):
        """The last process in the critical section died there (SIGKILL):
        it may have taken a sequence number and written none, or half a
        record, and its call may have changed the shared state without a
        record.  Cut the log back to its last whole record, take the
        sequence number back to it, and snapshot the live state (which has
        whatever the dead call did) at that number: disk and memory agree
        again, and unfinished orders wait for ``recover()`` as always."""
        self.follow()
        with open(self.segment, "rb") as f:
            data = f.read()
        end, last = SEGMENT_HEADER.size, self.segment_first_seq - 1
        while (record := read_record(data, end)) is not None and record.seq == last + 1:
            end += record.size
            last = record.seq
        if end < len(data):
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        with self._cond:
            self._offset = self._durable_offset = end
            self._appended = min(self._appended, last)
            self._seen = min(self._seen, last)
            self._durable = min(self._durable, last)
        self._counters[JOURNAL_SEQ] = last
        if self.resync is not None:
            self.resync(last)

    def follow(self):
        """Shared, with ``lock`` held: switch to the segment another process
        started at its checkpoint (it synced the old one first)."""
        if self.shared and int(self._counters[JOURNAL_SEGMENT]) != self.segment_first_seq:
            self._hold_flush()
            try:
                self._open_segment(int(self._counters[JOURNAL_SEGMENT]), create=False)
            finally:
                self._release_flush()

    def rotate(self):
        """Start a new segment at the next sequence number (with ``lock``
        held and everything synced: at a checkpoint); a private ``"batch"``
        writer recycles the spare segment for it if there is one
        (:meth:`_take_spare`)."""
        self.follow()
        if self.segment_first_seq == self.last_seq + 1:
            return  # nothing in the current one yet
        self._hold_flush()
        try:
            self._open_segment(self.last_seq + 1)
        finally:
            self._release_flush()

    def prepare_spare(self):
        """Private ``"batch"``, outside the call lock (before the first
        segment, and by a checkpoint before it takes the lock): have the
        spare segment (:data:`~kernel.journal.records.SPARE_SEGMENT`) hold
        at least the room a new segment starts with, so that the next
        :meth:`_open_segment` recycles it whatever came before: zeros
        written and synced into a new file (then renamed to the spare's
        name, the directory synced), or after the end of a spare smaller
        than that.  The room: ``segment_room`` (the state's size), or what
        the current segment's records take if more, up to
        :data:`SEGMENT_ROOM_MAX`.

        Why: records written into blocks the file already has sync without a
        filesystem journal commit (see :meth:`_take_spare`), and without
        this, the first segment of a journal, and the first after each
        :func:`~kernel.journal.open_durable`, were new files that records
        extended.  On the 2-core VM (``python -m kernel.journal bench``, 1M
        uniform tracked orders in batches of 10,000, a new journal): see
        the README.

        A crash while the zeros are written leaves a temporary file
        (removed by the next ``open_durable``) or a spare with part of its
        zeros: recovery never reads the spare.  An I/O error (a full disk)
        removes the temporary file and raises :class:`JournalError` naming
        the file: nothing else changed."""
        if not self._preallocate:
            return
        room = min(SEGMENT_ROOM_MAX, max(self._segment_room, self._offset))
        spare = os.path.join(self.directory, SPARE_SEGMENT)
        try:
            size = os.path.getsize(spare)
        except FileNotFoundError:
            size = None
        if size is not None and size >= room:
            return
        target = spare if size is not None else f"{spare}.{os.getpid()}.tmp"
        try:
            if size is None:
                write_new_file(target, spare, lambda fd: _write_zeros(fd, 0, room))
            else:  # a recycled segment smaller than the room: zeros after it
                fd = os.open(spare, os.O_WRONLY)
                try:
                    _write_zeros(fd, size, room)
                finally:
                    os.close(fd)
        except OSError as error:
            raise JournalError(f"{target}: {room} bytes of room for the next segment could not be written: "
                               f"{error}") from error

    @property
    def recycles(self):
        """Whether a segment a checkpoint made unnecessary is kept as the
        spare (private ``"batch"``), rather than removed."""
        return self._preallocate

    # ----------------------------------------------------------- appending
    @property
    def failed(self):
        return self._failed

    @property
    def last_seq(self):
        """The last sequence number handed out (by any process, shared)."""
        return int(self._counters[JOURNAL_SEQ])

    @property
    def durable_seq(self):
        return self._durable

    def check(self):
        if self._failed is not None:
            raise JournalFailed(f"journal {self.directory!r} failed earlier ({self._failed}); this inventory "
                                f"refuses every call: reopen it with open_durable") from self._failed

    def next_seq(self):
        """Take the next sequence number (``lock`` held, before the record's
        effects are captured: the counters' after-image carries it)."""
        self.follow()
        seq = int(self._counters[JOURNAL_SEQ]) + 1
        self._counters[JOURNAL_SEQ] = seq
        return seq

    def seen(self):
        """``lock`` held, for a call that appends nothing: the last record
        whose effects it may have seen (written already, or pending here)."""
        self.follow()  # shared: that record may be in a segment started since
        seq = self.last_seq
        with self._cond:
            self._seen = max(self._seen, seq) if self._write_through else self._seen
        return seq

    @property
    def packs_outside_lock(self):
        """Whether :meth:`append` may run after the call lock is released
        (private ``"batch"``: the flush leader writes the records in sequence
        order whatever order they arrive in).  Otherwise a record is written
        at append, and its call must append it under the lock."""
        return not self._write_through

    def append(self, seq, op, effects, aux=0):
        """Append record ``seq`` (from :meth:`next_seq`): under ``lock``, or
        after it where :attr:`packs_outside_lock`."""
        # Into preallocated room a record can reach the disk before the
        # unsynced ones written before it: it says what was synced (see
        # records; any value up to the truth is right, and _durable only
        # grows).  An append says seq - 1.
        parts = encode(seq, op, effects, aux, self._durable if self._preallocate else None)
        if not self._write_through:
            # Encoded after the call lock, beside the next call's kernel, so
            # a later record can arrive first: it waits in _early until the
            # records before it are here, and the pending list stays in
            # sequence order (a segment holds consecutive records).
            with self._cond:
                self._early[seq] = parts
                while (parts := self._early.pop(self._appended + 1, None)) is not None:
                    self._pending += parts
                    self._appended += 1
                    self._since_flush += 1
                self._grown.notify()
                self._cond.notify_all()  # waiters for a record to be handed in
            return seq
        size = encoded_size(parts)
        try:
            self._write(parts, size)
        except OSError as error:
            self.fail(error, self._offset)
        with self._cond:  # a flush leader reads them together
            self._offset += size
            self._room_used()
            self._appended = self._seen = seq
            self._since_flush += 1
            self._grown.notify()
        self.bytes_written += size
        return seq

    def wait(self, seq, timeout=None):
        """Return once record ``seq`` is durable (``"batch"``; a no-op for the
        other policies), leading a group flush when none runs."""
        if self.policy != "batch":
            self.check()
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._durable < seq:
                self.check()
                # Not while the record is still being encoded by its caller: no flush
                # would take it (private "batch" encodes after the call lock).
                if seq <= max(self._appended, self._seen) and not self._flushing:
                    self._lead_flush()
                    continue
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"record {seq} not durable after {timeout} s")
                self._cond.wait(_WAIT_SLICE)
            self.check()

    def sync(self):
        """Make every record numbered so far durable, whatever the policy
        (waiting for those still being encoded outside the lock)."""
        with self._cond:
            while self._flushing or self._appended < self._numbered():
                self.check()
                self._cond.wait(_WAIT_SLICE)
            self.check()
            self._lead_flush(force_sync=True)
            self.check()

    def _numbered(self):
        """The last sequence number this writer must hand in before a sync
        covers everything: :attr:`last_seq`, private; shared, records are
        written under the lock, so what it appended."""
        return self._appended if self._write_through else self.last_seq

    def _lead_flush(self, force_sync=False):
        """Write what is pending and sync (called with ``_cond`` held, no
        flush running; drops ``_cond`` during the I/O)."""
        self._flushing = True
        if not force_sync and self._since_flush < self._last_group:
            # Commit delay (PostgreSQL's commit_delay, sized by the last group):
            # the callers the previous flush released are about to append.
            # Without this pause, at 8 threads the groups alternate 7 / 1.
            # One caller alone never waits (its group was 1).
            deadline = time.monotonic() + COMMIT_DELAY
            while self._since_flush < self._last_group and (left := deadline - time.monotonic()) > 0:
                self._grown.wait(left)
        self._last_group, self._since_flush = max(1, self._since_flush), 0
        data, self._pending = self._pending, []
        upto = max(self._appended, self._seen)
        synced_offset = self._offset  # written through: everything up to here is written
        size = encoded_size(data) if data else 0
        pad = 0
        if size:
            self._claim_room(self._offset + size)
            if self._preallocate:
                # Zeros up to the end of the last page written, where the
                # file has that page (room, or a recycled segment's old
                # records): a write that ends inside a page the page cache
                # has not got makes the OS read it from the disk first (the
                # bytes after the write must be kept).  Measured on the
                # 2-core VM, 1M orders in batches of 10,000 into a recycled
                # segment whose pages were evicted (POSIX_FADV_DONTNEED), 7
                # interleaved rounds: 117 ms without this, 107 with it (the
                # pages cached: 104 and 105).  The zeros cost no I/O: that
                # page is written anyway.  The next flush starts in it, a
                # page it now has.  To recovery they are what follows the
                # last record: room, or (before old records) a torn tail.
                pad = -(self._offset + size) % _PAGE
                if self._offset + size + pad > self._file_end:
                    pad = 0  # past the file's blocks: no page there to read
        self._cond.release()
        error = None
        try:
            if size:
                try:
                    _write_all(self._fd, data + [_ZEROS[:pad]] if pad else data,
                               self._offset if self._preallocate else None)
                except OSError as e:
                    error = e
                else:
                    self._offset += size
                    synced_offset = self._offset
                    self.bytes_written += size
            if error is None and (self.policy != "none" or force_sync):
                started = time.perf_counter()
                try:
                    os.fdatasync(self._fd)
                except OSError as e:
                    error = e
                self.fsync_seconds += time.perf_counter() - started
                self.fsyncs += 1
        finally:
            self._cond.acquire()
            self._flushing = False
            if error is None:
                self._durable = max(self._durable, upto)
                self._durable_offset = synced_offset
                if size:
                    self._flush_bytes += (size - self._flush_bytes) / 4
            self._room_used()
            self._cond.notify_all()
        if error is not None:
            # Cut off what no caller was told is durable: under "batch" all
            # since the last sync; written through, only a torn write.
            good = self._offset if self._write_through else self._durable_offset
            self._cond.release()
            try:
                self.fail(error, good)
            except JournalFailed:
                pass
            finally:
                self._cond.acquire()
            self.check()

    def fail(self, error, good_size=None):
        """Fail-stop: remember ``error``, cut the segment back to
        ``good_size`` (default: what was written whole; best effort: its tail
        held nothing acknowledged), wake every waiter and raise
        :class:`JournalFailed`."""
        if good_size is None:
            good_size = self._offset
        with self._cond:
            if self._failed is None:
                self._failed = error
            self._pending = []
            self._cond.notify_all()
        if not self.shared and self._fd is not None:  # shared, the tail may hold other processes' acknowledged records
            try:
                os.ftruncate(self._fd, good_size)
                os.fsync(self._fd)
            except OSError:
                pass  # a torn tail is cut off at the next open anyway
        self.check()

    # ------------------------------------------------- preallocated room
    def _write(self, parts, size):
        """Write-through (``lock`` held): ``parts`` at the end of the records."""
        if self._preallocate:
            with self._cond:
                self._claim_room(self._offset + size)
            _write_all(self._fd, parts, self._offset)
        else:
            _write_all(self._fd, parts)

    def _claim_room(self, end):
        """Private, ``_cond`` held, before records are written up to
        ``end``: never into bytes the preparer is zeroing.  Past the zeroed
        room (a record bigger than it, or the preparer behind), the write
        extends the file itself, as an append would."""
        if self._preallocate and end > self._file_end:
            while self._preparing:
                self._cond.wait(_WAIT_SLICE)
            self._file_end = max(self._file_end, end)

    def _room_used(self):
        """``_cond`` held, after a write: wake the preparer when the room
        ahead is below its target."""
        if self._preallocate and self._file_end - self._offset < self._room_target():
            self._room.notify()

    def _room_target(self):
        """Zeroed room to keep ahead (``_cond`` held): none while flushes
        are big (``BIG_FLUSH``), and at least what :meth:`make_room` asked
        for and records have not used yet."""
        asked = self._ready_until - self._offset
        if self._flush_bytes > BIG_FLUSH:
            return max(0, asked)
        return max(asked, min(PREALLOCATE, max(PREALLOCATE_PIECE, 2 * (self._offset - SEGMENT_HEADER.size))))

    def make_room(self, nbytes, timeout=None):
        """Private ``"batch"``: have ``nbytes`` of zeroed, synced room
        ahead of the records, whatever the flushes' size, and return once it
        is there (the room ready, in bytes).  Once records have used it, the
        usual rule (:meth:`_room_target`) applies again.  The why, and the
        errors: :meth:`kernel.journal.DurableInventory.make_room`.
        """
        if not self._preallocate:
            raise ValueError("make_room: only a private journal with fsync='batch' keeps room ahead of its "
                             f"records (this one: {'shared' if self.shared else 'fsync=' + repr(self.policy)}"
                             f"{', PREALLOCATE = 0' if self.policy == 'batch' and not self.shared else ''})")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self.check()
            self._ready_until = max(self._ready_until, self._offset + nbytes)
            self._room.notify()
            while self._file_end < self._ready_until:
                self.check()
                if self._prepare_error is not None:
                    raise JournalError(f"make_room: could not write zeros into {self.segment!r}: "
                                       f"{self._prepare_error}") from self._prepare_error
                if self._fd is None or self._stop.is_set():
                    raise JournalError("make_room: the journal is closed")
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"make_room: {self._file_end - self._offset} of {nbytes} bytes ready "
                                       f"after {timeout} s")
                self._cond.wait(_WAIT_SLICE if deadline is None else
                                max(0.0, min(_WAIT_SLICE, deadline - time.monotonic())))
            return self._file_end - self._offset

    def _prepare_ahead(self):
        """The preparer thread: keep :meth:`_room_target` bytes of synced
        zeros ahead of the records.  It only ever writes zeros past every record
        (from ``_file_end``, which a writer moves past its record before
        writing it), so a crash anywhere leaves records, then zeros.  An
        error here (a full disk) stops it: records then extend the file
        themselves, and their own write or sync reports the error."""
        zeros = bytes(PREALLOCATE_PIECE)
        with self._cond:
            while True:
                while not self._stop.is_set() and self._failed is None and self._fd is not None and (
                        self._file_end - self._offset >= self._room_target()):
                    self._room.wait(_WAIT_SLICE)
                if self._stop.is_set() or self._failed is not None or self._fd is None:
                    return
                fd, start = self._fd, self._file_end
                chunk = min(PREALLOCATE_CHUNK, self._room_target())
                self._preparing = True
                self._cond.release()
                ok = False
                try:
                    for at in range(start, start + chunk, PREALLOCATE_PIECE):
                        _write_all(fd, zeros, at)
                        # Each piece synced at once: a record's fdatasync writes
                        # every dirty page of the file, so zeros written and not
                        # yet synced ride along with it (up to a whole chunk
                        # when synced once per chunk).  Measured, 1M orders in
                        # records of 10,000, alternating processes: the median
                        # record fdatasync 750 -> 465 us, the round 279 -> 246 ms.
                        os.fdatasync(fd)
                    ok = True
                except OSError as error:
                    self._prepare_error = error
                finally:
                    self._cond.acquire()
                    self._preparing = False
                    if ok and fd == self._fd:
                        self._file_end = max(self._file_end, start + chunk)
                    self._cond.notify_all()
                if not ok:
                    return

    def _stop_preparer(self):
        self._stop.set()
        with self._cond:
            self._room.notify_all()
        if self._preparer is not None:
            self._preparer.join(timeout=60)

    # ----------------------------------------------------------- flushing
    def _hold_flush(self):
        with self._cond:
            while self._flushing:
                self._cond.wait(_WAIT_SLICE)
            self._flushing = True

    def _release_flush(self):
        with self._cond:
            self._flushing = False
            self._cond.notify_all()

    def _flush_every(self):
        while not self._stop.wait(self.interval_ms / 1000.0):
            with self._cond:
                if self._failed is not None or self._fd is None:
                    return
                if self._flushing or self._durable >= max(self._appended, self._seen):
                    continue
                try:
                    self._lead_flush()
                except JournalFailed:
                    return

    @property
    def closed(self):
        """Whether :meth:`close` has closed the segment."""
        return self._fd is None

    def close(self):
        """Sync and close the segment, cutting off its unused room (what
        failed stays failed)."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=10)
        if self._fd is None:
            return
        self._stop_preparer()
        try:
            if self._failed is None:
                self.sync()
                if self._preallocate:
                    os.ftruncate(self._fd, self._offset)
                    os.fsync(self._fd)
        finally:
            self._hold_flush()
            try:
                os.close(self._fd)
                self._fd = None
                self.lock.close()
                if self._owner is not None:
                    self._owner.close()
            finally:
                self._release_flush()


_IOV_MAX = 1024  # buffers one writev takes (Linux's IOV_MAX)
_PAGE = mmap.PAGESIZE
_ZEROS = memoryview(bytes(_PAGE))


def _write_zeros(fd, start, end):
    """Zeros from ``start`` to ``end`` of the file, synced (``fdatasync``)."""
    zeros = memoryview(bytes(min(PREALLOCATE_CHUNK, max(0, end - start))))
    for at in range(start, end, PREALLOCATE_CHUNK):
        _write_all(fd, zeros[:min(PREALLOCATE_CHUNK, end - at)], at)
    os.fdatasync(fd)


def _write_all(fd, data, offset=None):
    """Write ``data`` (bytes, or a list of bytes-like parts: one ``writev``,
    no joined copy) whole, whatever a call writes short: at the file's
    position (an O_APPEND descriptor: its end), or at ``offset``."""
    if not isinstance(data, list):
        data = [data]
    views = [view for view in (memoryview(part).cast("B") for part in data) if view.nbytes]
    at = 0
    while at < len(views):
        if offset is None:
            written = os.writev(fd, views[at:at + _IOV_MAX])
        else:
            written = os.pwritev(fd, views[at:at + _IOV_MAX], offset)
            offset += written
        while at < len(views) and written >= views[at].nbytes:
            written -= views[at].nbytes
            at += 1
        if written:
            views[at] = views[at][written:]
