"""``DurableInventory``: an :class:`~kernel.Inventory` whose every
state-changing call is journaled before it is acknowledged.

Each such call holds the journal's lock from before its kernel runs until
its record (the after-image of the words it changed,
:mod:`kernel.journal.effects`) is appended; then, outside the lock, it waits
until the record is durable (group commit, :mod:`kernel.journal.writer`).
The kernels still run on every thread a call asks for; what the lock
serializes is calls, so the journal's order is the order the calls changed
the state in.  A call that changes nothing (a duplicate id, a refused
argument) still waits until everything it may have seen is durable, so no
answer depends on a call that a crash could take back.
"""

import os
import shutil
import threading
import time
import warnings
import weakref

import numpy as np

from .. import codes as spec
from ..codes import JOURNAL_BUSY
from ..inputs import INT64_MAX
from ..inventory import Inventory
from ..lifecycle import checked_int
from ..state import Block, shm_path
from ..codes import Status
from ..codes import Outcome
from ..tracking import CapacityError
from . import effects
from .records import OP_CODES, SPARE_SEGMENT, JournalError, fsync_directory, layout_crc, segment_first_seq
from .recovery import check_directory, recover, repair, write_marker
from .snapshot import abandoned_temporaries, snapshot_seq, write_snapshot
from .writer import LOCK_FILE, POLICIES, CallLock, JournalFailed, OwnerLock, SegmentWriter

__all__ = ["DurableInventory", "create_durable", "open_durable"]


class DurableInventory(Inventory):
    """An inventory whose state lives in memory and in a journal directory.

    Made by :meth:`kernel.Inventory.create_durable` and
    :meth:`kernel.Inventory.open_durable`; every method of
    :class:`~kernel.Inventory` works, and returns only once its effects are
    durable (``fsync="batch"``).

    Notes
    -----
    Failure is fail-stop: if a record cannot be written or synced, the call
    raises :class:`kernel.journal.JournalFailed` (its effects were applied in
    memory but are not acknowledged), and every later call raises it too.
    :meth:`~kernel.Inventory.open_durable` rebuilds the state from the
    journal, which holds every acknowledged call.

    Kernels called directly on :meth:`~kernel.Inventory.state_arrays` (from
    compiled code) bypass the journal: their effects are not durable.

    Close it (:meth:`close`, or ``with``).  Dropped without that, it closes
    its journal when it is collected, as a file does, and warns
    (``ResourceWarning``).
    """

    # ------------------------------------------------------------ plumbing
    def _check_open(self):
        state = super()._check_open()
        self._journal.check()
        return state

    def _journaled(self, op, call, capture, before=None, aux=0):
        """Run ``call``; ``capture(result, before())`` says what changed: None
        (nothing) or a function making the record.  The record is appended
        under the lock, and waited for outside it."""
        # Why the capture runs after the kernel, on the calling thread, and
        # not beside it: a big tracked reserve was tried in pieces, each
        # piece's sections captured (one compiled, GIL-free call) and written
        # into the file by a capture thread while the next piece's kernel
        # ran, leaving only the header and one fdatasync for the end (kept
        # on the branch exp/streamed-capture of this repository).  On the
        # 2-core VM it was slower: 0.30-0.35x of plain against 0.37-0.41x
        # this way (batch 10,000, interleaved).  Four thread hand-offs per
        # call cost about 15 ms per 1M orders, and the kernel and the
        # capture slowed each other down more than the overlap saved, even
        # with sync_file_range cutting the last fdatasync from ~450 to
        # ~190 us.
        #
        # What does run beside the next call's kernel: the record's encoding.
        # Under the lock the capture only copies what it reads from the state
        # (gathers of the touched rows, the log range); a private "batch"
        # journal packs and checksums those copies after the lock is
        # released (writer.append keeps the records in sequence order).  With
        # two callers that took ~25 of ~140 ms per 1M orders (batch 10,000)
        # out of the lock every call holds.
        journal = self._journal
        record = None
        with journal.lock:
            self._check_open()
            seen = before() if before is not None else None
            try:
                result = call()
            except (TypeError, ValueError, CapacityError):
                raise  # refused before anything changed
            except BaseException as error:  # (an interrupt between two kernel calls): the state may have moved
                journal.fail(error)
            # The kernel has run: from here, failing to journal is fail-stop.
            try:
                make = capture(result, seen)
                if make is None:
                    seq = journal.seen()
                else:
                    seq = journal.next_seq()
                    record = make()  # the after-images, copied out of the state
                    if not journal.packs_outside_lock:
                        journal.append(seq, OP_CODES[op], record, aux)
                        record = None
            except JournalFailed:
                raise
            except BaseException as error:
                journal.fail(error)
        if record is not None:
            try:
                journal.append(seq, OP_CODES[op], record, aux)
            except JournalFailed:
                raise
            except BaseException as error:  # its number is taken: nothing after it could become durable
                journal.fail(error)
        journal.wait(seq)
        return result

    def _arrays(self):
        return self._state._asdict()

    def _cursor(self):
        return int(self._state.counters[spec.FILL_CURSOR])

    # ------------------------------------------------------------- writes
    def reserve(self, orders, *, ordered=False, threads=None, hold_until=None):
        call = lambda: Inventory.reserve(self, orders, ordered=ordered, threads=threads, hold_until=hold_until)
        if self.tracks_orders:
            def capture(result, cursor):
                if orders.n_orders == 0:
                    return None
                return lambda: effects.reserve_tracked(self._arrays(), self._tracked.last_reserve, result.status,
                                                       cursor)
            return self._journaled("reserve", call, capture, self._cursor, aux=orders.n_orders)
        capture = lambda result, _: lambda: effects.stock_only(self._arrays(), result.fills.offer)
        return self._journaled("reserve", call, capture, aux=getattr(orders, "n_orders", 0))

    def release(self, orders, result, *, threads=None):
        capture = lambda _, __: lambda: effects.stock_only(self._arrays(), result.fills.offer)
        return self._journaled("release", lambda: Inventory.release(self, orders, result, threads=threads), capture)

    def reserve_one(self, sku, qty=1, *, order_id, user_id=0, max_price=None, hold_until=None):
        def capture(status, cursor):
            if status == Status.DUPLICATE or (status == Status.CANCELLED and self._cursor() == cursor):
                return None  # the kernel answered from the table: nothing changed
            return lambda: effects.reserve_one(self._arrays(), int(order_id), int(user_id), int(sku), cursor)
        call = lambda: Inventory.reserve_one(self, sku, qty, order_id=order_id, user_id=user_id,
                                             max_price=max_price, hold_until=hold_until)
        return self._journaled("reserve_one", call, capture, self._cursor, aux=1)

    def confirm(self, order_ids, *, threads=None):
        def capture(outcome, _):
            if not (outcome == Outcome.DONE).any():
                return None
            return lambda: effects.rows(self._arrays(), np.atleast_1d(np.asarray(order_ids, np.int64)))
        return self._journaled("confirm", lambda: Inventory.confirm(self, order_ids, threads=threads), capture,
                               aux=int(np.size(order_ids)))

    def cancel(self, order_ids, *, threads=None):
        def capture(outcome, _):
            if not ((outcome == Outcome.DONE) | (outcome == Outcome.REMEMBERED)).any():  # (np.isin: ~40 us)
                return None
            ids = np.atleast_1d(np.asarray(order_ids, np.int64))
            return lambda: effects.rows_and_fills(self._arrays(), _slots(self, ids))
        return self._journaled("cancel", lambda: Inventory.cancel(self, order_ids, threads=threads), capture,
                               aux=int(np.size(order_ids)))

    def expire(self, now, *, threads=None):
        capture = lambda expired, _: ((lambda: effects.rows_and_fills(self._arrays(), _slots(self, expired)))
                                      if expired.size else None)
        return self._journaled("expire", lambda: Inventory.expire(self, now, threads=threads), capture,
                               aux=int(now) if isinstance(now, (int, np.integer)) else 0)

    def recover(self):
        capture = lambda count, slots: (lambda: effects.rows_and_fills(self._arrays(), slots)) if count else None
        before = lambda: effects.unfinished_slots(self._arrays()) if self.tracks_orders else None
        return self._journaled("recover", lambda: Inventory.recover(self), capture, before)

    def restock(self, offer, qty, *, threads=None):
        capture = lambda _, __: lambda: effects.stock_only(self._arrays(), np.atleast_1d(np.asarray(offer, np.int64)))
        return self._journaled("restock", lambda: Inventory.restock(self, offer, qty, threads=threads), capture)

    # -------------------------------------------------------------- reads
    def _wait_seen(self):
        """Reads answer only from durable state: wait for every record
        appended so far (taken under the lock, so no call is half way)."""
        with self._journal.lock:
            seq = self._journal.seen()
        self._journal.wait(seq)

    def state_of(self, order_ids):
        self._check_open()
        self._wait_seen()
        return Inventory.state_of(self, order_ids)

    def limit_used(self, user_ids, skus):
        self._check_open()
        self._wait_seen()
        return Inventory.limit_used(self, user_ids, skus)

    # ---------------------------------------------------------- journal
    @property
    def directory(self):
        """The journal directory."""
        return self._directory

    @property
    def fsync_policy(self):
        return self._journal.policy

    @property
    def last_seq(self):
        """Sequence number of the last record appended."""
        return self._journal.last_seq

    @property
    def durable_seq(self):
        """Sequence number of the last record known to be on disk."""
        return self._journal.durable_seq

    def journal_stats(self):
        """``{"records", "durable", "fsyncs", "fsync_seconds", "bytes",
        "checkpoints", "checkpoint_pause_seconds", "checkpoint_seconds"}`` of
        this process's journal writer since it opened (the pause: how long
        its checkpoints held the calls back, in all; the seconds: how long
        they took)."""
        j = self._journal
        count, paused, took = self._checkpoint_stats
        return {"records": j.last_seq, "durable": j.durable_seq, "fsyncs": j.fsyncs,
                "fsync_seconds": j.fsync_seconds, "bytes": j.bytes_written, "checkpoints": count,
                "checkpoint_pause_seconds": paused, "checkpoint_seconds": took}

    def make_room(self, nbytes, *, timeout=None):
        """Zero and sync ``nbytes`` of journal ahead of the records now,
        before a burst, and return once they are on disk.

        Parameters
        ----------
        nbytes : int
            Bytes of room: about what the burst's records will take
            (:meth:`journal_stats` ``"bytes"`` over a trial run; a uniform
            tracked reserve of 10,000 single-line orders writes ~270 KB).
        timeout : float, optional
            Seconds to wait at most (:class:`TimeoutError` after them; the
            room goes on being made in the background).

        Returns
        -------
        int
            Bytes of room ready ahead of the records (at least ``nbytes``,
            less only if other calls wrote records meanwhile).

        Notes
        -----
        A record written into zeroed, synced room syncs without a
        filesystem journal commit (its blocks and the file's size are on
        disk already): on the 2-core VM, 1M uniform tracked orders in
        batches of 10,000 ran at ~0.48x of the plain tracked path into room
        made ahead, against ~0.44x appended.  Every segment of a private
        ``"batch"`` journal starts with room for about a snapshot's bytes
        (``kernel.journal.writer.SEGMENT_ROOM_MAX`` at most), and it keeps
        room ahead by itself while its flushes are small
        (``kernel.journal.writer.BIG_FLUSH``): refilled beside the callers,
        the zeros cost big flushes more than they save.  Ask for more here
        before a burst bigger than that: made before a peak (a sale that
        starts at midnight), the zeros cost the peak nothing.  The
        room stays asked for across :meth:`checkpoint` (the next segment gets
        what was left; the blocks of a segment the checkpoint recycled count
        as room, zeroed or not); :meth:`close` cuts off what was not used.  Only a
        private journal with ``fsync="batch"`` keeps room: for the others
        this raises ``ValueError``, as for a negative ``nbytes``
        (``TypeError``: not an integer); zeros that
        cannot be written (a full disk) raise
        :class:`kernel.journal.JournalError` and change nothing else.
        """
        nbytes = checked_int("nbytes", nbytes, 0, INT64_MAX)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.number))
                                    or not timeout >= 0):
            raise ValueError(f"make_room: timeout must be None or >= 0 seconds, got {timeout!r}")
        self._check_open()
        return self._journal.make_room(nbytes, timeout)

    def sync(self):
        """Make every record appended so far durable (for ``"interval"`` and
        ``"none"``; a ``"batch"`` call is durable when it returns)."""
        self._check_open()
        self._journal.sync()

    def checkpoint(self):
        """Write a snapshot of the whole state and drop the journal before it.

        The snapshot (temporary file, fsync, rename, directory fsync) holds
        the state after the last record; the segments and snapshots it makes
        unnecessary are removed.  Calls go on while it is written: they wait
        only while the journal is synced, the state block copied and the
        next segment started (on the 2-core VM 26-29 ms for a state of 2M
        orders of capacity, 334 MB, against 0.3-3.8 s for the whole
        checkpoint);
        their records go into the next segment meanwhile.  A private
        ``"batch"`` journal keeps the segment the snapshot ends as its spare
        and recycles it for the records after the next checkpoint, so their
        ``fdatasync`` needs no filesystem journal commit (see
        :mod:`kernel.journal.writer`); without a spare big enough (the first
        checkpoint), it first writes one of zeros, before calls wait.
        Checkpoints of one inventory run one at a time; :meth:`close` waits
        for one under way.

        Returns
        -------
        int
            The sequence number the snapshot holds.

        Raises
        ------
        kernel.journal.JournalError
            The snapshot or the next segment could not be written (a full
            disk): nothing acknowledged is at risk, the journal goes on
            (fail-stop, :class:`~kernel.journal.JournalFailed`, only where a
            segment was half started).

        Notes
        -----
        Memory: the copy is one state block more (as big as the snapshot)
        while the snapshot is written.  A crash while it is written leaves
        the previous snapshot and every segment after it: recovery replays
        them, and removes the unfinished snapshot's temporary file.
        """
        journal = self._journal
        with self._checkpointing:
            started = time.perf_counter()
            self._check_open()
            try:
                # The next segment's room, zeroed here, beside the calls: a
                # private "batch" journal then never starts an empty segment
                # (SegmentWriter.prepare_spare).
                journal.prepare_spare()
            except JournalError as error:
                raise JournalError(f"checkpoint of {self.directory!r} failed: {error}") from error
            # The copy's memory is allocated and touched before the lock:
            # a new 334 MB array faults its pages in on the first write,
            # which took 220 ms (4 KiB pages) to 1.8 s (numpy asks for huge
            # pages, and the kernel may compact memory to find them) on the
            # 2-core VM; a copy into touched memory takes 25-60 ms.
            words = np.empty_like(self._block.words)
            words.fill(0)
            with journal.lock:
                held = time.perf_counter()  # from here calls wait
                self._check_open()
                journal.follow()  # shared: the segment every process appends to now
                journal.sync()
                seq = journal.last_seq
                # Why a copy, and the snapshot written outside the lock: the
                # snapshot takes ~10x as long as the copy (checksum, 334 MB of
                # writes and their fsync at 2M orders of capacity), and the
                # records after ``seq`` need no snapshot to be recovered (the
                # previous snapshot and the segments after it hold them).
                np.copyto(words, self._block.words)
                # (Shared: the copy says this process is inside the lock,
                # which it is not in the snapshot's state.)
                words[self._block.layout.offsets["counters"][0] + JOURNAL_BUSY] = 0
                try:
                    journal.rotate()
                except OSError as error:
                    raise JournalError(f"checkpoint of {self.directory!r} failed: {error}") from error
                paused = time.perf_counter() - held
            try:
                write_snapshot(self.directory, words, seq)
            except OSError as error:
                raise JournalError(f"checkpoint of {self.directory!r} failed: {error}") from error
            del words
            try:
                _drop_before(self.directory, seq, keep_spare=journal.recycles)
            except OSError as error:  # the snapshot is durable: the old files only take room
                raise JournalError(f"checkpoint of {self.directory!r}: snapshot {seq} written, removing the "
                                   f"files before it failed: {error}") from error
            self._checkpoint_stats[0] += 1
            self._checkpoint_stats[1] += paused
            self._checkpoint_stats[2] += time.perf_counter() - started
        return seq

    def _snapshot(self, seq):
        """With the lock held and the journal synced up to ``seq``: the
        snapshot, the next segment, the old ones dropped (the writer's
        resync after a dead process, in shared inventories)."""
        try:
            write_snapshot(self.directory, self._block.words, seq)
            self._journal.rotate()
        except OSError as error:
            # The state itself is durable in the journal: only this
            # checkpoint failed.  Nothing acknowledged is at risk.
            raise JournalError(f"checkpoint of {self.directory!r} failed: {error}") from error
        _drop_before(self.directory, seq)

    def close(self):
        """Sync and close the journal, then the state (the directory stays);
        after a checkpoint under way in another thread."""
        journal = getattr(self, "_journal", None)
        if journal is not None:
            with self._checkpointing:
                try:
                    journal.close()
                finally:
                    Inventory.close(self)

    def __repr__(self):
        return (f"DurableInventory({self.directory!r}, n_skus={self.n_skus}, n_offers={self.n_offers}, "
                f"fsync={self.fsync_policy!r}, backend={self.backend!r})")


def _slots(inv, ids):
    from ._fast import probe
    return probe(effects.order_words(inv.state._asdict()), np.ascontiguousarray(ids, dtype=np.int64), spec.ID_MASK)


def _drop_before(directory, seq, keep_spare=False):
    """Remove the segments wholly at or before ``seq``, older snapshots and
    the temporary files of snapshot writers that died; ``keep_spare``: the
    newest such segment becomes the spare instead (replacing an older spare),
    for the writer to recycle."""
    names = os.listdir(directory)
    segments = sorted((first, name) for name in names if (first := segment_first_seq(name)) is not None
                      and first <= seq)
    changed = False
    spare = os.path.join(directory, SPARE_SEGMENT)
    if keep_spare and segments:
        os.replace(os.path.join(directory, segments.pop()[1]), spare)
        changed = True
    elif not keep_spare and SPARE_SEGMENT in names:  # left by a private "batch" writer: opened otherwise now
        os.unlink(spare)
        changed = True
    old_snapshots = [name for name in names if (s := snapshot_seq(name)) is not None and s < seq]
    for name in [name for _, name in segments] + old_snapshots + abandoned_temporaries(directory):
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass  # shared: another process's checkpoint removed it first (both run outside the call lock)
        changed = True
    if changed:
        fsync_directory(directory)


def _check_policy(fsync, interval_ms, shared, backend):
    if fsync not in POLICIES:
        raise ValueError(f"fsync must be one of {POLICIES}, got {fsync!r}")
    if fsync == "interval" and (isinstance(interval_ms, bool) or not isinstance(interval_ms, (int, float))
                                or not interval_ms > 0):
        raise ValueError(f"interval_ms must be a positive number, got {interval_ms!r}")
    if shared is not None:
        shm_path(shared)  # checks the name
        if backend == "reference":
            raise ValueError("backend: 'reference' is the single-process spec; use a compiled backend for a shared "
                             "durable inventory")


def _into_shared(name, words, layout):
    """A new shared segment holding ``words`` (magic last: attachable only when whole)."""
    block = Block.create_shared(name, layout)
    block.words[1:] = words[1:]
    block.words[0] = words[0]
    return block


def create_durable(directory, stock=None, *, offers=None, n_skus=None, backend="auto", threads=None,
                   max_orders=None, limit_per_user=None, max_user_skus=None, max_fills=None, fsync="batch",
                   interval_ms=10, shared=None):
    """See :meth:`kernel.Inventory.create_durable`."""
    _check_policy(fsync, interval_ms, shared, backend)
    directory = os.fspath(directory)
    if (stock is None) == (offers is None):
        raise TypeError("give exactly one of stock or offers=(sku, qty, price)")
    options = dict(backend=backend, threads=threads, max_orders=max_orders, limit_per_user=limit_per_user,
                   max_user_skus=max_user_skus, max_fills=max_fills)
    if stock is not None:
        if n_skus is not None:
            raise TypeError("n_skus: only with offers= (stock has one entry per SKU)")
        base = Inventory(stock, **options)
    else:
        if not isinstance(offers, (tuple, list)) or len(offers) != 3:
            raise TypeError("offers: must be a tuple (sku, qty, price)")
        base = Inventory.from_offers(*offers, n_skus, **options)
    made_directory = not os.path.exists(directory)
    if not made_directory and (not os.path.isdir(directory) or os.listdir(directory)):
        raise FileExistsError(f"directory: {directory!r} exists and is not an empty directory (open a durable "
                              f"inventory with Inventory.open_durable)")
    layout = base._block.layout
    block = writer = None
    try:
        if made_directory:
            os.makedirs(directory)
        write_snapshot(directory, base._block.words, 0)
        if shared is None:
            block = Block(base._block.words, layout, "durable", directory)
        else:
            block = _into_shared(shared, base._block.words, layout)
        writer = SegmentWriter(directory, block.arrays().counters, layout_crc(layout.header()), fsync,
                               interval_ms, shared=shared is not None,
                               owner=OwnerLock(directory, shared is not None), segment_room=block.words.nbytes)
        write_marker(directory)  # last: before it, the directory is not an inventory
    except BaseException:
        if writer is not None:  # its preparer thread and descriptor
            try:
                writer.close()
            except OSError:
                pass
        if block is not None and shared is not None:
            block.close()
            block.unlink()
        if made_directory:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            for name in os.listdir(directory) if os.path.isdir(directory) else ():
                os.unlink(os.path.join(directory, name))
        raise
    return _bound(block, base._kernels, base.threads, writer, directory)


def open_durable(directory, *, backend="auto", threads=None, fsync="batch", interval_ms=10, shared=None):
    """See :meth:`kernel.Inventory.open_durable`."""
    _check_policy(fsync, interval_ms, shared, backend)
    directory = check_directory(directory)
    owner = OwnerLock(directory, shared is not None)  # before recovery touches a file
    if shared is None:
        try:
            block, directory = _recovered(directory, None)
        except BaseException:
            owner.close()
            raise
        writer = SegmentWriter(directory, block.arrays().counters, layout_crc(block.layout.header()), fsync,
                               interval_ms, owner=owner, segment_room=block.words.nbytes)
        return _bound(block, backend, threads, writer, directory)
    # Shared: attach to the live segment if there is one, else rebuild it
    # from disk; one process at a time decides (the journal's lock).
    gate = CallLock(os.path.join(directory, LOCK_FILE))
    try:
        with gate:
            try:
                block = Block.attach_shared(shared)
                attach = True
            except FileNotFoundError:
                block, _ = _recovered(directory, shared)
                attach = False
            try:
                writer = SegmentWriter(directory, block.arrays().counters, layout_crc(block.layout.header()),
                                       fsync, interval_ms, shared=True, attach=attach, owner=owner)
            except BaseException:
                block.close()
                if not attach:
                    block.unlink()
                raise
    except BaseException:
        owner.close()
        raise
    finally:
        gate.close()
    return _bound(block, backend, threads, writer, directory)


def _recovered(directory, shared):
    """The state rebuilt from ``directory`` (in a new shared segment
    ``shared``, or private), its torn tail cut off."""
    found = recover(directory)
    repair(found)
    for name in os.listdir(found.directory):
        if name.endswith(".tmp"):  # a snapshot or marker a crash cut short
            os.unlink(os.path.join(found.directory, name))
    if shared is None:
        return Block(found.words, found.layout, "durable", found.directory), found.directory
    counters = found.layout.offsets["counters"][0]
    found.words[counters + JOURNAL_BUSY] = 0  # whoever was inside is gone with the old memory
    return _into_shared(shared, found.words, found.layout), found.directory


def _bound(block, backend, threads, writer, directory):
    inv = DurableInventory.__new__(DurableInventory)
    inv._journal = writer
    inv._checkpointing = threading.Lock()  # one checkpoint at a time (its snapshot is written outside the call lock)
    inv._checkpoint_stats = [0, 0.0, 0.0]  # checkpoints, seconds calls waited for them, seconds they took
    inv._directory = directory
    if writer.shared:
        snapshot = weakref.WeakMethod(inv._snapshot)  # (no cycle: see _Critical in writer)
        writer.resync = lambda seq: snapshot()(seq)
    try:
        inv._bind(block, backend, threads)
        if inv._tracked is not None:
            inv._tracked.report_slots = True  # the capture of a tracked reserve reads them
    except BaseException:
        writer.close()
        raise
    # Dropped without close() (an exception path, a forgotten close), the
    # inventory closes its journal when it goes, as a file does, and warns
    # as a file does (ResourceWarning): its records are synced ("interval",
    # "none"), its preparer stops, and the directory's owner lock is let go,
    # so this process can open the directory again.  Before, the writer
    # and its thread lived on and open_durable said the directory was open.
    # Only in this process: a forked child holds a copy of the writer, whose
    # offsets and pending records are the parent's as they were at the fork;
    # closing that copy (sync, cut the room off) would write over the
    # parent's records.
    weakref.finalize(inv, _close_dropped, writer, directory, os.getpid())
    return inv


def _close_dropped(writer, directory, pid):
    if writer.closed or os.getpid() != pid:
        return
    warnings.warn(f"durable inventory {directory!r} was dropped without close(); closing its journal",
                  ResourceWarning, stacklevel=1)
    writer.close()
