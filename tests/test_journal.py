"""Durable inventories in one process: replay rebuilds the live state word
for word, power loss simulated on copies of the directory (truncation, zeroed
and flipped bytes), the recovery rules, bad input, injected I/O errors
(fail-stop), the fsync policies and group commit, and the CLI."""

import errno
import mmap
import os
import select
import shutil
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import kernel
from kernel import Inventory, OrderBatch, Status
from kernel.journal import JournalCorrupt, JournalError, JournalFailed
from kernel.journal.records import (FORMAT_VERSION, RECORD_HEADER, SEGMENT_HEADER, SEGMENT_MAGIC, SPARE_SEGMENT,
                                    Effects, encode, read_record, read_segment_header, segment_first_seq,
                                    segment_header, segment_name, valid_records_after)
from kernel.journal.recovery import MARKER, recover

from conftest import ALL_BACKENDS

N_SKUS = 5


def _offers():
    # Two priced offers for SKUs 0-2, one for 3-4: multi-offer fills.
    sku = np.array([0, 0, 1, 1, 2, 2, 3, 4], np.int64)
    qty = np.array([6, 9, 5, 7, 3, 8, 20, 4], np.int64)
    price = np.array([10, 12, 5, 9, 7, 7, 1, 3], np.int64)
    return sku, qty, price


def _create(path, backend="auto", **options):
    return Inventory.create_durable(path, offers=_offers(), backend=backend, max_orders=400, limit_per_user=5,
                                    max_user_skus=400, **options)


def _run_calls(inv, seed, n_calls=40):
    """A seeded mix of every state-changing call; returns {seq: state words}
    after each call (the state replay of the first ``seq`` records must equal)."""
    rng = np.random.default_rng(seed)
    states = {inv.last_seq: inv._block.words.copy()}
    next_id = 0
    for _ in range(n_calls):
        kind = rng.choice(["batch", "batch", "one", "one", "confirm", "cancel", "expire", "restock"])
        if kind == "batch":
            n = int(rng.integers(1, 12))
            lines = rng.integers(1, 3, n)
            offsets = np.concatenate(([0], np.cumsum(lines)))
            n_lines = int(offsets[-1])
            ids = np.arange(next_id, next_id + n) if rng.random() < 0.8 else rng.integers(0, next_id + n, n)
            next_id += n
            orders = OrderBatch(rng.integers(0, N_SKUS, n_lines), rng.integers(1, 4, n_lines), offsets,
                                max_price=rng.integers(4, 15, n_lines), order_id=ids,
                                user_id=rng.integers(0, 6, n))
            inv.reserve(orders, hold_until=rng.integers(0, 100, n), ordered=bool(rng.integers(2)))
        elif kind == "one":
            inv.reserve_one(int(rng.integers(N_SKUS)), int(rng.integers(1, 3)), order_id=int(next_id),
                            user_id=int(rng.integers(6)), hold_until=int(rng.integers(0, 100)))
            next_id += 1
        elif kind == "confirm":  # one id (a service's) takes the scalar capture, several the vector one
            inv.confirm(rng.integers(0, next_id + 3, int(rng.choice([1, 4]))))
        elif kind == "cancel":
            inv.cancel(rng.integers(0, next_id + 3, int(rng.choice([1, 3]))))
        elif kind == "expire":
            inv.expire(int(rng.integers(0, 100)))
        else:
            inv.restock(rng.integers(0, 8, 2), rng.integers(0, 4, 2))
        states[inv.last_seq] = inv._block.words.copy()
    return states


def _newest_segment(path):
    return os.path.join(path, max((n for n in os.listdir(path) if segment_first_seq(n) is not None),
                                  key=segment_first_seq))


def _record_ends(segment):
    """End offset of every valid record of a segment, in order (up to a
    recycled segment's old records, numbered below its first)."""
    data = open(segment, "rb").read()
    ends, at = [], SEGMENT_HEADER.size
    first = segment_first_seq(os.path.basename(segment))
    while (record := read_record(data, at)) is not None and record.seq >= first:
        at += record.size
        ends.append(at)
    return ends


@pytest.fixture
def journal(tmp_path):
    """A closed durable inventory after 40 seeded calls, and its states."""
    path = str(tmp_path / "inv")
    inv = _create(path)
    states = _run_calls(inv, seed=1)
    inv.close()
    return path, states


def _copy(path, tmp_path, name="copy"):
    target = str(tmp_path / name)
    shutil.copytree(path, target)
    return target


def _reopened_equals(path, states):
    inv = Inventory.open_durable(path)
    try:
        assert inv.last_seq in states
        assert np.array_equal(inv._block.words, states[inv.last_seq]), "replay differs from the live state"
        return inv.last_seq
    finally:
        inv.close()


# ------------------------------------------------------------------ replay
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_replay_rebuilds_the_live_state_word_for_word(tmp_path, backend):
    path = str(tmp_path / "inv")
    inv = _create(path, backend=backend)
    states = _run_calls(inv, seed=2)
    last = inv.last_seq
    assert inv.durable_seq == last
    inv.close()
    assert _reopened_equals(path, states) == last
    # Reopened, it goes on from there, and a checkpoint keeps it exact.
    inv = Inventory.open_durable(path, backend=backend)
    more = _run_calls(inv, seed=3, n_calls=10)
    seq = inv.checkpoint()
    more.update(_run_calls(inv, seed=4, n_calls=10))
    inv.close()
    names = os.listdir(path)
    assert [n for n in names if n.endswith(".snap")] == [f"snap-{seq:020d}.snap"]
    segments = [segment_first_seq(n) for n in names if segment_first_seq(n) is not None]
    assert all(first > seq for first in segments), "segments before the snapshot dropped"
    assert _reopened_equals(path, more) == max(more)


def test_untracked_inventory_replays_reserve_release_restock(tmp_path):
    path = str(tmp_path / "plain")
    inv = Inventory.create_durable(path, [5, 3, 8])
    orders = OrderBatch([0, 1, 2, 0], [2, 3, 4, 9])
    result = inv.reserve(orders)
    inv.restock([1], [2])
    inv.release(orders, result)
    inv.reserve(OrderBatch([2, 2], [3, 3], offsets=[0, 2]))
    live = inv._block.words.copy()
    inv.close()
    assert _reopened_equals(path, {4: live}) == 4


# ------------------------------------------------------------- power loss
def test_truncation_anywhere_recovers_an_acknowledged_prefix(journal, tmp_path):
    path, states = journal
    segment = _newest_segment(path)
    ends = _record_ends(segment)
    size = os.path.getsize(segment)
    rng = np.random.default_rng(5)
    cuts = sorted(set(rng.integers(SEGMENT_HEADER.size, size, 12).tolist()) | {ends[0] - 1, ends[-2], size - 1})
    for cut in cuts:
        copy = _copy(path, tmp_path, f"cut{cut}")
        with open(_newest_segment(copy), "r+b") as f:
            f.truncate(cut)
        whole = sum(1 for end in ends if end <= cut)  # records wholly before the cut
        assert _reopened_equals(copy, states) == whole
        # The torn tail was cut off: it reopens the same, and appends go on.
        inv = Inventory.open_durable(copy)
        assert inv.last_seq == whole
        inv.reserve_one(0, 1, order_id=10_000, user_id=1)
        inv.close()
        with Inventory.open_durable(copy) as reopened:
            assert reopened.state_of([10_000])[0] != 0


@pytest.mark.parametrize("damage", ["zero", "flip"])
def test_damaged_last_record_is_cut_off(journal, tmp_path, damage):
    path, states = journal
    ends = _record_ends(_newest_segment(path))
    rng = np.random.default_rng(6)
    for trial in range(6):
        copy = _copy(path, tmp_path, f"{damage}{trial}")
        segment = _newest_segment(copy)
        data = bytearray(open(segment, "rb").read())
        if damage == "zero":  # from a non-zero byte on, so something changes
            nonzero = [i for i in range(ends[-2], ends[-1]) if data[i]]
            at = nonzero[int(rng.integers(len(nonzero)))]
            end = min(at + int(rng.integers(1, 64)), ends[-1])
            data[at:end] = bytes(end - at)
        else:
            at = int(rng.integers(ends[-2], ends[-1]))
            data[at] ^= 1 << int(rng.integers(8))
        open(segment, "wb").write(bytes(data[:ends[-1]]))
        assert _reopened_equals(copy, states) == len(ends) - 1


def test_damage_before_the_tail_refuses_to_open(journal, tmp_path):
    path, states = journal
    ends = _record_ends(_newest_segment(path))
    copy = _copy(path, tmp_path)
    segment = _newest_segment(copy)
    data = bytearray(open(segment, "rb").read())
    at = ends[3] + RECORD_HEADER.size + 3  # inside record 5's payload
    data[at] ^= 0x10
    open(segment, "wb").write(bytes(data))
    with pytest.raises(JournalCorrupt, match=rf"{os.path.basename(segment)} offset {ends[3]}"):
        Inventory.open_durable(copy)
    assert open(segment, "rb").read() == bytes(data), "a refused open changes no file"
    result = subprocess.run([sys.executable, "-m", "kernel.journal", "verify", copy], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and f"offset {ends[3]}" in result.stdout + result.stderr


# ------------------------------------------------------ preallocated room
def _live_with_room(path, seed=21):
    """An open durable inventory after seeded calls, once its preparer has
    zeroed room past the records (bounded wait); its states."""
    from kernel.journal import recovery

    inv = _create(path)
    states = _run_calls(inv, seed=seed)
    segment = _newest_segment(path)
    for _ in range(5000):
        if os.path.getsize(segment) > _record_ends(segment)[-1]:
            break
        threading.Event().wait(0.002)
    found = recovery.recover(path, apply=False)
    assert found.segments[-1].free > 0, "the writer keeps zeroed room after its records"
    return inv, states


def test_preallocated_room_is_free_space_not_damage(tmp_path):
    """A copy of a live journal (as a power loss leaves it: records, then
    the preparer's zeros) opens with every record, the room cut off; close
    leaves no room behind."""
    path = str(tmp_path / "inv")
    inv, states = _live_with_room(path)
    copy = _copy(path, tmp_path)
    segment = _newest_segment(copy)
    ends = _record_ends(segment)
    data = open(segment, "rb").read()
    assert len(data) > ends[-1] and not any(data[ends[-1]:])
    result = subprocess.run([sys.executable, "-m", "kernel.journal", "verify", copy], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "preallocated room" in result.stdout, result.stdout + result.stderr
    assert "torn" not in result.stdout
    assert _reopened_equals(copy, states) == max(states)
    assert os.path.getsize(segment) == ends[-1], "open cut the room off the old segment"
    inv.close()
    assert os.path.getsize(_newest_segment(path)) == _record_ends(_newest_segment(path))[-1]
    assert _reopened_equals(path, states) == max(states)


def test_torn_record_before_the_room_is_cut_off_and_truncation_anywhere_keeps_a_prefix(tmp_path):
    """Power loss on a live journal: the last record damaged (zeroed or
    flipped bytes) with the room after it, or the file cut anywhere in the
    records or the room: recovery is a replay of an acknowledged prefix."""
    path = str(tmp_path / "inv")
    inv, states = _live_with_room(path)
    segment = _newest_segment(path)
    ends = _record_ends(segment)
    size = os.path.getsize(segment)
    rng = np.random.default_rng(8)
    for trial in range(4):
        copy = _copy(path, tmp_path, f"damage{trial}")
        data = bytearray(open(_newest_segment(copy), "rb").read())
        at = int(rng.integers(ends[-2], ends[-1]))
        if trial % 2:
            data[at] ^= 1 << int(rng.integers(8))
        else:
            data[ends[-2]:at + 1] = bytes(at + 1 - ends[-2])  # the record's start zeroed, its rest kept
        open(_newest_segment(copy), "wb").write(bytes(data))
        assert _reopened_equals(copy, states) == len(ends) - 1
    cuts = sorted(set(rng.integers(SEGMENT_HEADER.size, size, 8).tolist()) | {ends[-1], ends[-1] + 1, size - 1})
    for cut in cuts:
        copy = _copy(path, tmp_path, f"cut{cut}")
        with open(_newest_segment(copy), "r+b") as f:
            f.truncate(cut)
        assert _reopened_equals(copy, states) == sum(1 for end in ends if end <= cut)
    inv.close()


def test_the_journal_checksum_is_the_standard_librarys_crc32():
    """records.crc32 (zlib-ng's) is zlib's CRC-32 value for value, chained
    over parts as a record's are (numpy arrays of several widths, bytes,
    empty parts): a journal written with one reads with the other."""
    import zlib

    from kernel.journal.records import crc32

    rng = np.random.default_rng(11)
    for trial in range(20):
        parts = []
        for size in rng.integers(0, 300_000, rng.integers(1, 6)):
            kind = rng.integers(3)
            values = rng.integers(0, 256, int(size), dtype=np.uint8)
            parts.append(values.tobytes() if kind == 0 else values[:size - size % 8].view(np.int64) if kind == 1
                         else values[:size - size % 2].view(np.uint16))
        mine = theirs = int(rng.integers(0, 2**32))
        for part in parts:
            mine, theirs = crc32(part, mine), zlib.crc32(part, theirs)
            assert mine == theirs, (trial, len(parts))


def _rewrite_synced(data, at, synced):
    """Give the record at ``at`` another ``synced`` (checksum redone)."""
    import zlib

    magic, length, seq, op, n_sections, _, aux, _ = RECORD_HEADER.unpack_from(data, at)
    payload = bytes(data[at + RECORD_HEADER.size:at + RECORD_HEADER.size + length])
    crc = zlib.crc32(payload, zlib.crc32(RECORD_HEADER.pack(magic, length, seq, op, n_sections, 0, aux, synced)))
    data[at:at + RECORD_HEADER.size] = RECORD_HEADER.pack(magic, length, seq, op, n_sections, crc, aux, synced)


@pytest.mark.parametrize("group", [True, False])
def test_a_torn_group_is_cut_off_but_damage_under_a_later_synced_record_refuses(journal, tmp_path, group):
    """Power loss during a group's fdatasync into preallocated room may keep
    a later record of the group and lose an earlier one: the later ones
    were made before the earlier one was synced (their ``synced`` is lower),
    so the damage is a torn write: cut off with what follows.  The same
    damage under a record made after it was synced refuses to open."""
    path, states = journal
    ends = _record_ends(_newest_segment(path))
    copy = _copy(path, tmp_path)
    segment = _newest_segment(copy)
    data = bytearray(open(segment, "rb").read())
    first = len(ends) - 2  # the last three records (numbered from 1): one group
    if group:
        for at in ends[-4:-1]:
            _rewrite_synced(data, at, first - 1)  # made when record first - 1 was the last synced
    data[ends[-4] + RECORD_HEADER.size + 5] ^= 0x20  # damage the group's first record
    open(segment, "wb").write(bytes(data))
    if group:
        assert _reopened_equals(copy, states) == first - 1
    else:
        with pytest.raises(JournalCorrupt, match=rf"offset {ends[-4]}"):
            Inventory.open_durable(copy)


def test_group_commit_records_say_what_was_synced(tmp_path):
    """Records of concurrent callers share fsyncs: each one's ``synced`` is
    what was on disk when it was made (below its own number), and an append
    (``"none"``) says ``seq - 1``."""
    from kernel.journal.records import read_record

    path = str(tmp_path / "inv")
    inv = _create(path)
    workers = [threading.Thread(target=lambda k=k: [inv.reserve_one(k, 1, order_id=100 * k + i, user_id=k)
                                                    for i in range(20)]) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    inv.close()
    data = open(_newest_segment(path), "rb").read()
    records = [read_record(data, at) for at in [SEGMENT_HEADER.size] + _record_ends(_newest_segment(path))[:-1]]
    assert [r.seq for r in records] == list(range(1, 81))
    assert all(r.synced < r.seq for r in records)
    assert [r.synced for r in records] == sorted(r.synced for r in records)
    other = str(tmp_path / "none")
    inv = _create(other, fsync="none")
    _run_calls(inv, seed=3, n_calls=5)
    inv.close()
    data = open(_newest_segment(other), "rb").read()
    ends = _record_ends(_newest_segment(other))
    assert [read_record(data, at).synced for at in [SEGMENT_HEADER.size] + ends[:-1]] == list(range(len(ends)))


def test_a_record_bigger_than_the_room_extends_the_file(tmp_path):
    """A record past the zeroed room (a first big batch) is written as an
    append would; every record replays."""
    path = str(tmp_path / "inv")
    n = 40_000  # about 1 MB of record: past the first room of 256 KiB
    rng = np.random.default_rng(4)
    inv = Inventory.create_durable(path, [200] * 1000, max_orders=3 * n, limit_per_user=4, max_user_skus=3 * n)
    for round_ in range(3):
        inv.reserve(OrderBatch(rng.integers(0, 1000, n), rng.integers(1, 3, n),
                               order_id=np.arange(round_ * n, (round_ + 1) * n), user_id=rng.integers(0, n, n)))
    live = inv._block.words.copy()
    assert _record_ends(_newest_segment(path))[-1] > 2 << 20
    copy = _copy(path, tmp_path)  # before close: as a crash leaves it
    inv.close()
    assert _reopened_equals(copy, {3: live}) == 3
    assert _reopened_equals(path, {3: live}) == 3


# ---------------------------------------------------------- recovery rules
def test_missing_segment_is_an_error(tmp_path):
    path = str(tmp_path / "inv")
    inv = _create(path)
    _run_calls(inv, seed=7, n_calls=5)
    inv.close()
    for reopen in range(2):  # each open starts a new segment
        inv = Inventory.open_durable(path)
        _run_calls(inv, seed=8 + reopen, n_calls=5)
        inv.close()
    segments = sorted(n for n in os.listdir(path) if n.endswith(".seg"))
    assert len(segments) == 3
    os.unlink(os.path.join(path, segments[1]))
    gap = f"records {int(segments[1][4:24])}..{int(segments[2][4:24]) - 1}"
    with pytest.raises(JournalError, match=f"missing segment: {gap}"):
        Inventory.open_durable(path)
    os.unlink(os.path.join(path, segments[0]))
    with pytest.raises(JournalError, match="missing segment"):
        Inventory.open_durable(path)


def test_records_before_the_snapshot_are_never_applied_twice(tmp_path):
    path = str(tmp_path / "inv")
    inv = _create(path)
    states = _run_calls(inv, seed=9, n_calls=15)
    before = _copy(path, tmp_path, "before")  # every segment, snapshot 0
    seq = inv.checkpoint()
    states.update(_run_calls(inv, seed=10, n_calls=5))
    inv.close()
    # A crash between writing the snapshot and dropping the old segments:
    # both are there; the old records must be skipped.
    snap = f"snap-{seq:020d}.snap"
    shutil.copy(os.path.join(path, snap), before)
    for name in os.listdir(path):
        if name.endswith(".seg"):
            shutil.copy(os.path.join(path, name), before)
    assert _reopened_equals(before, states) == max(states)


def test_a_damaged_snapshot_is_named(tmp_path):
    path = str(tmp_path / "inv")
    inv = _create(path)
    _run_calls(inv, seed=12, n_calls=5)
    seq = inv.checkpoint()
    inv.close()
    snap = os.path.join(path, f"snap-{seq:020d}.snap")
    data = bytearray(open(snap, "rb").read())
    data[200] ^= 0xFF
    open(snap, "wb").write(bytes(data))
    # The checkpoint removed the older snapshot and the segments it needed.
    with pytest.raises(JournalCorrupt, match=f"no valid snapshot.*{os.path.basename(snap)}: the state block fails"):
        Inventory.open_durable(path)


def test_torn_segment_creation_and_leftover_temporaries_are_cleaned(journal, tmp_path):
    path, states = journal
    copy = _copy(path, tmp_path)
    last = max(states)
    open(os.path.join(copy, f"wal-{last + 1:020d}.seg"), "wb").write(segment_header(last + 1, 0)[:20])
    open(os.path.join(copy, f"snap-{last:020d}.snap.tmp"), "wb").write(b"half a snapshot")
    assert _reopened_equals(copy, states) == last
    assert not [n for n in os.listdir(copy) if n.endswith(".tmp")]


def test_not_an_inventory_or_another_version_is_a_clear_error(journal, tmp_path):
    path, _ = journal
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(JournalError, match="not a durable inventory"):
        Inventory.open_durable(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Inventory.open_durable(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        Inventory.open_durable(tmp_path / "file")

    other = _copy(path, tmp_path, "format")
    with open(os.path.join(other, MARKER), "w") as f:
        f.write('{"kind": "kernel durable inventory", "format": 99, "layout_version": 2}')
    with pytest.raises(JournalError, match="format version 99"):
        Inventory.open_durable(other)
    # A journal of format 1 (single-word after-images, before ROWS and
    # SUBTRACT sections): refused by name, never misread.
    with open(os.path.join(other, MARKER), "w") as f:
        f.write('{"kind": "kernel durable inventory", "format": 1, "layout_version": 2}')
    with pytest.raises(JournalError, match=f"format version 1, this kernel reads {FORMAT_VERSION}"):
        Inventory.open_durable(other)
    segment = _newest_segment(path)
    header = bytearray(open(segment, "rb").read(SEGMENT_HEADER.size))
    magic, _, layout, first, block_crc, _ = SEGMENT_HEADER.unpack_from(header)
    import zlib
    old = SEGMENT_HEADER.pack(magic, 1, layout, first, block_crc, 0)
    old = SEGMENT_HEADER.pack(magic, 1, layout, first, block_crc, zlib.crc32(old))
    with pytest.raises(JournalError, match=f"format version 1, this kernel reads {FORMAT_VERSION}"):
        read_segment_header(old, segment)

    other = _copy(path, tmp_path, "layout")
    segment = _newest_segment(other)
    data = bytearray(open(segment, "rb").read())
    import struct
    import zlib
    fields = list(struct.unpack_from("<8sIIQII", data))
    fields[2], fields[5] = 1, 0  # layout version 1, with a valid header checksum
    head = struct.pack("<8sIIQII", *fields)
    fields[5] = zlib.crc32(head + bytes(32))
    data[:SEGMENT_HEADER.size] = struct.pack("<8sIIQII", *fields) + bytes(32)
    assert data[:8] == SEGMENT_MAGIC
    open(segment, "wb").write(bytes(data))
    with pytest.raises(JournalError, match="layout version 1"):
        Inventory.open_durable(other)


def test_create_refuses_a_used_directory_and_bad_arguments(journal, tmp_path):
    path, _ = journal
    with pytest.raises(FileExistsError, match="open_durable"):
        _create(path)
    with pytest.raises(ValueError, match="fsync must be one of"):
        _create(str(tmp_path / "a"), fsync="always")
    with pytest.raises(ValueError, match="interval_ms"):
        _create(str(tmp_path / "b"), fsync="interval", interval_ms=0)
    with pytest.raises(TypeError, match="exactly one of stock or offers"):
        Inventory.create_durable(str(tmp_path / "c"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_read_only_directory_is_a_clear_error(journal, tmp_path, monkeypatch):
    path, _ = journal
    copy = _copy(path, tmp_path)
    readonly = tmp_path / "ro"
    readonly.mkdir()
    if os.geteuid() == 0:
        # Permission bits do not bind root: refuse writes there as the OS would.
        real_open = os.open

        def refusing(file, flags, *args, **kwargs):
            if str(file).startswith((copy, str(readonly))) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise PermissionError(errno.EACCES, "Permission denied (read-only, simulated)", file)
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing)
    else:
        for target in (copy, str(readonly)):
            os.chmod(target, 0o555)
    try:
        with pytest.raises(PermissionError):
            Inventory.create_durable(str(readonly / "new"), [3])
        assert not (readonly / "new").exists() or not os.listdir(readonly / "new")
        with pytest.raises(PermissionError):
            Inventory.open_durable(copy)
    finally:
        monkeypatch.undo()
        for target in (copy, str(readonly)):
            os.chmod(target, 0o755)
    assert _reopened_equals(copy, journal[1]) == max(journal[1]), "a refused open changed nothing"


# ------------------------------------------------------ failure: fail-stop
@pytest.mark.parametrize("fsync", ["batch", "interval"])
@pytest.mark.parametrize("what", ["write", "fdatasync"])
def test_an_io_error_fails_stop_and_the_journal_holds_only_acknowledged_calls(tmp_path, monkeypatch, fsync, what):
    if fsync == "interval" and what == "fdatasync":
        return _interval_sync_error(tmp_path, monkeypatch)
    path = str(tmp_path / "inv")
    inv = _create(path, fsync=fsync, interval_ms=1000)
    acked = {}
    for i in range(5):
        acked[i] = inv.reserve_one(i % N_SKUS, 1, order_id=i, user_id=i)
    states = {inv.last_seq: inv._block.words.copy()}
    # Records go out with os.writev, or os.pwritev into preallocated room
    # (header and columns, no joined copy): "write" breaks every write call.
    names = ("write", "writev", "pwrite", "pwritev") if what == "write" else (what,)

    def breaking(real):
        def broken(fd, *args):
            if fd == inv._journal._fd:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return real(fd, *args)
        return broken

    for name in names:
        monkeypatch.setattr(os, name, breaking(getattr(os, name)))
    with pytest.raises(JournalFailed, match="No space left"):
        inv.reserve_one(0, 1, order_id=99, user_id=9)
    monkeypatch.undo()
    for call in (lambda: inv.reserve_one(1, 1, order_id=100), lambda: inv.confirm([0]), lambda: inv.checkpoint(),
                 lambda: inv.state_of([0]), lambda: inv.restock([0], [1])):
        with pytest.raises(JournalFailed, match="refuses every call"):
            call()
    inv.close()
    inv = Inventory.open_durable(path)
    assert inv.state_of([99])[0] == 0, "the failed call is not in the journal"
    assert np.array_equal(inv._block.words, states[inv.last_seq])
    inv.close()


def _interval_sync_error(tmp_path, monkeypatch):
    """Under "interval" a call does not wait for the sync: the flusher's
    failure stops every later call; what was written (acknowledged) stays."""
    path = str(tmp_path / "inv")
    inv = _create(path, fsync="interval", interval_ms=1)
    real = os.fdatasync

    def broken(fd):
        if fd == inv._journal._fd:
            raise OSError(errno.EIO, "Input/output error (injected)")
        return real(fd)

    monkeypatch.setattr(os, "fdatasync", broken)
    assert inv.reserve_one(0, 1, order_id=1) == Status.ACCEPTED
    live = inv._block.words.copy()
    for _ in range(5000):  # until the flusher has tried (bounded)
        if inv._journal.failed is not None:
            break
        threading.Event().wait(0.002)
    with pytest.raises(JournalFailed, match="Input/output error"):
        inv.reserve_one(0, 1, order_id=2)
    monkeypatch.setattr(os, "fdatasync", real)
    inv.close()
    assert _reopened_equals(path, {1: live}) == 1


def test_an_interrupted_call_fails_stop(tmp_path, monkeypatch):
    """An exception inside one facade call, after its kernel changed state
    (claim_and_reserve ran, the budgets are not given back yet), leaves state
    no record describes."""
    path = str(tmp_path / "inv")
    inv = _create(path)
    inv.reserve_one(0, 1, order_id=1)

    class Interrupted(BaseException):
        pass

    class Kernels:  # the real backend, but interrupted right after claim_and_reserve
        def __init__(self, real):
            self._real = real

        def __getattr__(self, name):
            return getattr(self._real, name)

        def claim_and_reserve(self, *args):
            self._real.claim_and_reserve(*args)
            raise Interrupted()

    # The tracked-order component holds the kernel module it runs.
    monkeypatch.setattr(inv._tracked, "kernels", Kernels(inv.kernels))
    with pytest.raises(JournalFailed):
        inv.reserve(OrderBatch([0], [1], order_id=[2], user_id=[2]))
    with pytest.raises(JournalFailed):
        inv.reserve_one(0, 1, order_id=3)
    inv.close()
    reopened = Inventory.open_durable(path)
    assert reopened.state_of([1, 2]).tolist() == [kernel.OrderState.HELD, 0]
    reopened.close()


def test_file_size_limit_in_a_subprocess_fails_stop(tmp_path):
    """A real write error from the kernel (EFBIG under RLIMIT_FSIZE)."""
    path = str(tmp_path / "inv")
    _create(path).close()
    script = f"""
import resource, signal, sys, kernel
from kernel.journal import JournalFailed
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
inv = kernel.Inventory.open_durable({path!r})
resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))
i = 0
try:
    while True:
        status = inv.reserve_one(i % 5, 1, order_id=i, user_id=i % 7)
        print("ack", i, int(status), flush=True)
        i += 1
except JournalFailed as error:
    print("failed", i, error, flush=True)
try:
    inv.reserve_one(0, 1, order_id=10**6)
except JournalFailed:
    print("refused", flush=True)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = result.stdout.split("\n")
    assert any(line.startswith("failed") for line in lines) and "refused" in lines, result.stdout + result.stderr
    acks = {int(line.split()[1]): int(line.split()[2]) for line in lines if line.startswith("ack")}
    failed = int(next(line for line in lines if line.startswith("failed")).split()[1])
    assert acks and failed == max(acks) + 1
    inv = Inventory.open_durable(path)
    states = inv.state_of(list(acks) + [failed])
    expected = {Status.ACCEPTED: kernel.OrderState.HELD, Status.OUT_OF_STOCK: kernel.OrderState.REFUSED,
                Status.LIMIT_EXCEEDED: kernel.OrderState.REFUSED}
    assert [int(s) for s in states[:-1]] == [int(expected[Status(acks[i])]) for i in acks]
    assert states[-1] == 0
    inv.close()


# ------------------------------------------------------------- policies
def test_group_commit_shares_fsyncs_between_threads(tmp_path):
    path = str(tmp_path / "inv")
    inv = Inventory.create_durable(path, [10**6] * 4, max_orders=20_000)
    per_thread, n_threads = 150, 8
    errors = []

    def work(t):
        try:
            for i in range(per_thread):
                assert inv.reserve_one(i % 4, 1, order_id=t * per_thread + i) == Status.ACCEPTED
                assert inv.durable_seq >= 1
        except BaseException as e:  # reported below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors and not any(w.is_alive() for w in workers)
    stats = inv.journal_stats()
    assert stats["records"] == stats["durable"] == per_thread * n_threads
    assert stats["fsyncs"] < per_thread * n_threads, "no fsync was shared"
    live = inv._block.words.copy()
    inv.close()
    assert _reopened_equals(path, {per_thread * n_threads: live})


def _hold_packing_on_thread(monkeypatch, name):
    """``(held, go)``: a record packed on the thread called ``name`` sets
    ``held`` and waits (30 s at most) for ``go`` before it is packed."""
    held, go = threading.Event(), threading.Event()
    real_pack = Effects.pack

    def pack(effects):
        if threading.current_thread().name == name:
            held.set()
            assert go.wait(30), f"the test never let the {name} record go"
        return real_pack(effects)

    monkeypatch.setattr(Effects, "pack", pack)
    return held, go


def test_records_encoded_after_the_call_lock_are_durable_in_sequence_order(tmp_path, monkeypatch):
    """Under "batch" a call encodes its record after releasing the call lock,
    so a later call's record can be ready first: it is not written, and its
    call not acknowledged, before every earlier record is (no flush runs for
    it meanwhile); a sync waits for the record still being encoded; the
    segment holds the records in sequence order and replays to the live
    state."""
    path = str(tmp_path / "inv")
    inv = _create(path)
    inv.reserve_one(0, 1, order_id=0, user_id=1)
    first = inv.last_seq
    held, go = _hold_packing_on_thread(monkeypatch, "slow")
    done, errors = {}, []

    def call(name, order_id):
        try:
            done[name] = inv.reserve_one(1, 1, order_id=order_id, user_id=2)
        except BaseException as error:  # reported below
            errors.append(error)

    slow = threading.Thread(target=call, args=("slow", 1), name="slow")
    slow.start()
    assert held.wait(30)
    fsyncs = inv.journal_stats()["fsyncs"]
    fast = threading.Thread(target=call, args=("fast", 2), name="fast")
    fast.start()
    fast.join(timeout=0.5)
    assert fast.is_alive() and "fast" not in done, "acknowledged before an earlier record was written"
    assert inv.last_seq == first + 2 and inv.durable_seq == first
    sync = threading.Thread(target=inv.sync)
    sync.start()
    sync.join(timeout=0.5)
    assert sync.is_alive(), "a sync returned while a record was still being encoded"
    assert inv.journal_stats()["fsyncs"] == fsyncs, "a flush ran with nothing new to write"
    go.set()
    for thread in (slow, fast, sync):
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert not errors and done == {"slow": Status.ACCEPTED, "fast": Status.ACCEPTED}
    assert inv.last_seq == inv.durable_seq == first + 2
    live = inv._block.words.copy()
    inv.close()
    data = open(_newest_segment(path), "rb").read()
    seqs, at = [], SEGMENT_HEADER.size
    while (record := read_record(data, at)) is not None:
        seqs.append(record.seq)
        at += record.size
    assert seqs == list(range(seqs[0], first + 3))
    assert _reopened_equals(path, {first + 2: live}) == first + 2


@pytest.mark.parametrize("n", [200, 5000], ids=["small", "compiled"])
def test_a_tracked_record_derived_after_the_lock_is_the_call_it_journals(tmp_path, monkeypatch, n):
    """A tracked reserve's rows are derived when its record is packed, after
    the call lock: by then the next call has run its kernel on the same
    reused work arrays (order and pair slots).  Held there while another
    reserve runs, the record still journals its own call: replay equals the
    live state word for word."""
    path = str(tmp_path / "inv")
    inv = Inventory.create_durable(path, [10] * 50, max_orders=8 * n, limit_per_user=4, max_user_skus=8 * n)
    rng = np.random.default_rng(n)
    held, go = _hold_packing_on_thread(monkeypatch, "slow")
    errors = []

    def call(first_id):
        try:
            inv.reserve(OrderBatch(rng.integers(0, 50, n), rng.integers(1, 3, n),
                                   order_id=np.arange(first_id, first_id + n), user_id=rng.integers(0, n // 4, n)))
        except BaseException as error:  # reported below
            errors.append(error)

    slow = threading.Thread(target=call, args=(0,), name="slow")
    slow.start()
    assert held.wait(30)
    fast = threading.Thread(target=call, args=(n,), name="fast")
    fast.start()
    deadline = time.monotonic() + 30
    while inv._tracked.last_reserve.order_id[0] != n and time.monotonic() < deadline:
        time.sleep(0.01)  # until the second call's kernel has run (its record then waits for the first)
    assert inv._tracked.last_reserve.order_id[0] == n
    go.set()
    for thread in (slow, fast):
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert not errors
    live = inv._block.words.copy()
    seq = inv.last_seq
    inv.close()
    assert _reopened_equals(path, {seq: live}) == seq


def test_a_record_that_fails_to_encode_fails_stop(tmp_path, monkeypatch):
    """An error while encoding outside the lock: the call is not
    acknowledged, every later call is refused, the journal holds the rest."""
    path = str(tmp_path / "inv")
    inv = _create(path)
    inv.reserve_one(0, 1, order_id=0, user_id=1)
    live = inv._block.words.copy()

    def pack(effects):
        raise MemoryError("no room to encode")

    monkeypatch.setattr(Effects, "pack", pack)
    with pytest.raises(JournalFailed, match="no room to encode"):
        inv.reserve_one(1, 1, order_id=1, user_id=1)
    monkeypatch.undo()
    with pytest.raises(JournalFailed):
        inv.reserve_one(2, 1, order_id=2, user_id=1)
    inv.close()
    assert _reopened_equals(path, {1: live}) == 1


@pytest.mark.parametrize("fsync", ["interval", "none"])
def test_interval_and_none_policies(tmp_path, fsync):
    path = str(tmp_path / "inv")
    inv = _create(path, fsync=fsync, interval_ms=5)
    states = _run_calls(inv, seed=11, n_calls=10)
    if fsync == "interval":
        for _ in range(2000):  # the flusher catches up (bounded wait, no timing claim)
            if inv.durable_seq == inv.last_seq:
                break
            threading.Event().wait(0.005)
        assert inv.durable_seq == inv.last_seq
    inv.sync()
    assert inv.durable_seq == inv.last_seq
    assert inv.journal_stats()["fsyncs"] >= 1
    inv.close()
    assert _reopened_equals(path, states) == max(states)


def test_reads_and_duplicates_answer_only_from_durable_state(tmp_path):
    path = str(tmp_path / "inv")
    inv = _create(path)
    assert inv.reserve_one(0, 1, order_id=1) == Status.ACCEPTED
    seq = inv.last_seq
    assert inv.reserve_one(0, 1, order_id=1) == Status.DUPLICATE
    assert inv.last_seq == seq, "a call that changed nothing appends nothing"
    assert inv.kind == "durable" and inv.directory == path
    inv.close()


# -------------------------------------------------------------------- CLI
def test_inspect_and_verify(journal, tmp_path):
    path, states = journal
    run = lambda *args: subprocess.run([sys.executable, "-m", "kernel.journal", *args], capture_output=True,
                                       text=True, timeout=60)
    result = run("inspect", path)
    assert result.returncode == 0, result.stderr
    assert f"last sequence number: {max(states)}" in result.stdout and "reserve_one" in result.stdout
    result = run("verify", path)
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout + result.stderr
    copy = _copy(path, tmp_path)
    with open(_newest_segment(copy), "r+b") as f:
        f.truncate(os.path.getsize(_newest_segment(copy)) - 5)
    result = run("verify", copy)
    assert result.returncode == 0 and "torn tail" in result.stdout
    result = run("inspect", str(tmp_path))
    assert result.returncode == 1 and "not a durable inventory" in result.stderr


def test_scalar_probe_of_a_few_keys_matches_numpy(tmp_path):
    """Up to _fast.SCALAR_KEYS keys are probed one by one in Python (a
    service's confirm or cancel of one id): the same slots as the numpy
    probe, for ids present, absent and colliding, in the order table (ids
    under a mask) and the (user, SKU) pair table (whole words)."""
    from kernel.journal import _fast
    from kernel.tracking import probe as numpy_probe

    rng = np.random.default_rng(5)
    inv = Inventory.create_durable(str(tmp_path / "inv"), [50] * 20, max_orders=64, limit_per_user=40,
                                   max_user_skus=64)
    ids = rng.permutation(1 << 20)[:48]  # 48 of 64 slots: long probe runs
    orders = OrderBatch(rng.integers(0, 20, ids.size), rng.integers(1, 3, ids.size), order_id=ids,
                        user_id=rng.integers(0, 9, ids.size))
    inv.reserve(orders)
    tables = [(inv.state.order_table[::kernel.codes.ORDER_STRIDE], kernel.tracking.MAX_ORDER_ID, ids),
              (inv.state.limit_table[::kernel.codes.PAIR_STRIDE], -1,
               orders.user_id * 20 + orders.sku + 1)]
    for table, mask, present in tables:
        assert (table != 0).sum() > 8
        for size in range(_fast.SCALAR_KEYS + 1):
            keys = np.concatenate([rng.choice(present, size), rng.integers(1 << 20, 1 << 21, size)])[
                rng.permutation(2 * size)][:size]
            expected = numpy_probe(table, keys, mask)
            assert np.array_equal(_fast.probe(table, keys, mask), expected)
            assert size < 2 or (expected >= 0).any()  # (the present ones are found)
    inv.close()


def test_compiled_capture_helpers_match_numpy_and_big_calls_replay_exactly(tmp_path):
    """Calls of at least _fast.MIN_SIZE ids take the compiled probe and
    value range (when numba is installed): same answers as numpy, and replay
    of such calls is still word for word."""
    from kernel.journal import _fast
    from kernel.tracking import probe as numpy_probe

    rng = np.random.default_rng(13)
    path = str(tmp_path / "big")
    n = 3 * _fast.MIN_SIZE
    inv = Inventory.create_durable(path, [3] * 500, max_orders=4 * n, limit_per_user=2, max_user_skus=4 * n)
    orders = OrderBatch(rng.integers(0, 500, n), rng.integers(1, 3, n), order_id=rng.permutation(4 * n)[:n],
                        user_id=rng.integers(0, n // 4, n))
    inv.reserve(orders, hold_until=rng.integers(0, 10, n))
    inv.cancel(orders.order_id[:n // 2])
    inv.expire(5)
    keys = np.concatenate([orders.order_id, rng.integers(0, 1 << 40, n)])
    assert np.array_equal(_fast.probe(inv.state.order_table[::kernel.codes.ORDER_STRIDE], keys, kernel.tracking.MAX_ORDER_ID),
                          numpy_probe(inv.state.order_table[::kernel.codes.ORDER_STRIDE], keys, kernel.tracking.MAX_ORDER_ID))
    values = rng.integers(-(1 << 62), 1 << 62, n)
    assert _fast.value_range(values) == (int(values.min()), int(values.max()))
    live = inv._block.words.copy()
    inv.close()
    assert _reopened_equals(path, {3: live}) == 3


def _record_bytes(effects):
    effects.pack()
    return b"".join(bytes(memoryview(part).cast("B")) for part in effects.parts)


@pytest.mark.parametrize("span", [0, 1 << 7, 1 << 15, 1 << 31, 1 << 62])
def test_compiled_rows_section_is_byte_for_byte_numpys(monkeypatch, span):
    """A big ROWS section (``_fast.pack_rows``) is the bytes numpy makes,
    for every vector width (0, 1, 2, 4, 8 bytes), negative values and a
    signed top field included."""
    from kernel.journal import _fast, records

    rng = np.random.default_rng(span % 1000)
    n = 2 * _fast.MIN_SIZE
    table = rng.integers(-span, span + 1, 4 * 3 * n) if span else np.full(4 * 3 * n, -7)
    index = rng.choice(3 * n, n, replace=False)
    fields = ((0, 0), (0, 40), (1, 0), (2, 0), (3, 0), (3, 8))
    compiled = records.Effects()
    compiled.rows("order_table", 4, index, fields, {"order_table": table})
    assert len(compiled.pack().parts) == 3  # section header, fields, one compiled buffer
    monkeypatch.setattr(_fast, "MIN_SIZE", 1 << 62)
    reference = records.Effects()
    reference.rows("order_table", 4, index, fields, {"order_table": table})
    assert _record_bytes(compiled) == _record_bytes(reference)
    monkeypatch.undo()
    # Rows derived word by word (a tracked reserve's: an (n, stride) view of
    # a (stride, n) array) take the other compiled packer: the same bytes.
    gathered = np.take(table.reshape(-1, 4), index, axis=0)
    by_word = np.ascontiguousarray(gathered.T).T
    assert not by_word.flags.c_contiguous
    plan, _, columns = records._rows_layout(4, fields)
    assert bytes(_fast.pack_rows(by_word, index, columns)) == bytes(_fast.pack_rows(gathered, index, columns)) \
        == b"".join(bytes(memoryview(part).cast("B")) for part in records._rows_parts(gathered, index, plan, columns))


@pytest.mark.parametrize("span", [0, 1 << 7, 1 << 15, 1 << 31, 1 << 62])
def test_compiled_vector_is_byte_for_byte_numpys(monkeypatch, span):
    """A big vector (``_fast.pack_vector``: a tracked reserve's fill-log
    range) is the bytes numpy makes, for every width, negative values
    included, and owns its bytes (the state may change before it is
    written)."""
    from kernel.journal import _fast, records

    rng = np.random.default_rng(span % 997)
    n = 2 * _fast.MIN_SIZE + 3  # a width times n that needs padding
    values = rng.integers(-span, span + 1, n) if span else np.full(n, -7)
    original = values.copy()
    compiled = records._vector(values)
    assert len(compiled) == 1
    values[:] = 0  # what was packed is a copy
    monkeypatch.setattr(_fast, "MIN_SIZE", 1 << 62)
    reference = records._vector(original)
    assert b"".join(bytes(memoryview(p).cast("B")) for p in compiled) == \
        b"".join(bytes(memoryview(p).cast("B")) for p in reference)


def test_compiled_reserve_capture_is_byte_for_byte_numpys(tmp_path, monkeypatch):
    """A big tracked reserve's effects (compiled ROWS packing of its order
    and pair rows) are the bytes the numpy capture makes of the same call;
    and the pair rows are exactly those the call changed: every slot whose
    words differ from before the call is one the kernels reported, and each
    reported slot holds its line's pair (found by a probe of its key)."""
    from kernel.journal import _fast, effects
    from kernel.tracking import probe

    rng = np.random.default_rng(17)
    n = 3 * _fast.MIN_SIZE
    caps = np.where(np.arange(600) % 3 == 0, kernel.codes.NO_LIMIT, 3)  # a third of the SKUs uncapped
    inv = Inventory([4] * 300 + [50] * 300, max_orders=2 * n, limit_per_user=caps, max_user_skus=2 * n)
    inv._tracked.report_slots = True  # as a durable inventory sets it
    ids = rng.permutation(2 * n)[:n]
    ids[-10:] = ids[:10]  # duplicates: not claimed
    orders = OrderBatch(rng.integers(0, 600, n), rng.integers(1, 3, n), order_id=ids,
                        user_id=rng.integers(0, n // 8, n))
    cursor = int(inv.state.counters[kernel.codes.FILL_CURSOR])
    pairs_before = inv.state.limit_table.reshape(-1, kernel.codes.PAIR_STRIDE).copy()
    result = inv.reserve(orders)
    report = inv._tracked.last_reserve
    args = (inv.state._asdict(), report, result.status, cursor)
    compiled = _record_bytes(effects.reserve_tracked(*args))
    monkeypatch.setattr(_fast, "MIN_SIZE", 1 << 62)
    assert compiled == _record_bytes(effects.reserve_tracked(*args))

    pair_slot = report.pair_slot
    reported = pair_slot >= 0
    assert reported.sum() > 1000
    changed = np.flatnonzero((inv.state.limit_table.reshape(-1, kernel.codes.PAIR_STRIDE) != pairs_before).any(1))
    assert changed.size and np.isin(changed, pair_slot[reported]).all()
    keys = orders.user_id[orders.line_order] * 600 + orders.sku + 1
    pair_keys = inv.state.limit_table[kernel.codes.PAIR_KEY_AT::kernel.codes.PAIR_STRIDE]
    np.testing.assert_array_equal(pair_slot[reported], probe(pair_keys, keys[reported]))
    assert (caps[orders.sku[reported]] != kernel.codes.NO_LIMIT).all()
    claimed = report.order_slot >= 0
    assert not reported[~claimed[orders.line_order]].any()  # duplicates' lines are never reached


def _capture_cases():
    """(name, inventory options, batch maker, reserve options): single lines
    and carts, one offer per SKU (the direct path) and priced offers, caps
    that refuse, scarce stock that sells out, duplicates, 1 and 2 threads,
    ordered mode."""
    for lines in (False, True):
        for priced in (False, True):
            for threads, ordered in ((1, False), (2, False), (2, True)):
                name = f"{'carts' if lines else 'single'}-{'priced' if priced else 'direct'}-{threads}t" + (
                    "-ordered" if ordered else "")
                yield pytest.param(lines, priced, threads, ordered, id=name)


@pytest.mark.parametrize("lines, priced, threads, ordered", list(_capture_cases()))
def test_tracked_reserve_capture_derives_exactly_the_rows_the_kernels_wrote(compiled_backend, lines, priced,
                                                                             threads, ordered):
    """The journal derives a tracked reserve's order and pair rows from the
    batch and the facade's report, without loading them from the tables:
    accepted orders' records, refused orders' records (when no order rolled
    back), and each counted line's pair key and cap-count change must equal
    what the kernels wrote, on every path (direct and priced offers, single
    lines and carts, 1 and 2 threads, ordered), over several calls on one
    inventory (pairs already in the table, sold-out SKUs)."""
    from kernel.journal import _fast, effects

    rng = np.random.default_rng(31 + lines + 2 * priced + 4 * threads + 8 * ordered)
    n_skus, n = 50, 4000
    caps = np.where(np.arange(n_skus) % 4 == 0, kernel.codes.NO_LIMIT, 5)
    options = dict(backend=compiled_backend, threads=threads, max_orders=8 * n, limit_per_user=caps,
                   max_user_skus=8 * n * 3)
    if priced:
        sku = np.repeat(np.arange(n_skus), 3)
        inv = Inventory.from_offers(sku, rng.integers(10, 60, sku.size), rng.integers(1, 20, sku.size), n_skus,
                                    **options)
    else:
        inv = Inventory(rng.integers(20, 200, n_skus), **options)
    inv._tracked.report_slots = True  # as a durable inventory sets it
    table = inv.state.order_table.reshape(-1, kernel.codes.ORDER_STRIDE)
    pairs = inv.state.limit_table.reshape(-1, kernel.codes.PAIR_STRIDE)
    derived_refused = 0
    for call in range(4):
        per = rng.integers(1, 4, n) if lines else np.ones(n, np.int64)
        offsets = np.concatenate(([0], np.cumsum(per))) if lines else None
        n_lines = int(per.sum())
        ids = np.arange(call * n, (call + 1) * n)
        ids[-20:] = ids[:20]  # duplicates within the batch
        orders = OrderBatch(rng.integers(0, n_skus, n_lines), rng.integers(1, 4, n_lines), offsets,
                            max_price=rng.integers(3, 25, n_lines) if priced else None, order_id=ids,
                            user_id=rng.integers(0, n // 4, n))
        inv.restock(np.arange(inv.stock.size), rng.integers(0, 150, inv.stock.size))
        counts_before = pairs[:, kernel.codes.PAIR_COUNT_AT].copy()
        result = inv.reserve(orders, threads=threads, ordered=ordered, hold_until=rng.integers(0, 50, n))
        report = inv._tracked.last_reserve
        assert result.n_accepted > 0
        slots, rows, other_slots, other_rows, derived = effects.order_rows(report, result.status)
        assert slots.size == result.n_accepted
        np.testing.assert_array_equal(rows, table[slots])
        claimed = report.order_slot >= 0
        np.testing.assert_array_equal(np.sort(other_slots), np.sort(report.order_slot[claimed & (result.status != 0)]))
        assert derived and other_rows is not None  # (no cancel ran during the call)
        if derived:
            derived_refused += other_slots.size
            np.testing.assert_array_equal(other_rows, table[other_slots])
        slots, rows = effects.pair_changes(report, result.status, n_skus)
        np.testing.assert_array_equal(rows[:, kernel.codes.PAIR_KEY_AT], pairs[slots, kernel.codes.PAIR_KEY_AT])
        expected = counts_before.copy()
        np.add.at(expected, slots, rows[:, kernel.codes.PAIR_COUNT_AT])
        np.testing.assert_array_equal(expected, pairs[:, kernel.codes.PAIR_COUNT_AT])
        compiled = effects.order_rows(report, result.status), effects.pair_changes(report, result.status, n_skus)
        with pytest.MonkeyPatch.context() as patch:  # numpy's versions: the same arrays
            patch.setattr(_fast, "MIN_SIZE", 1 << 62)
            numpy = effects.order_rows(report, result.status), effects.pair_changes(report, result.status, n_skus)
        for mine, theirs in zip([*compiled[0], *compiled[1]], [*numpy[0], *numpy[1]]):
            np.testing.assert_array_equal(mine, theirs)
    assert derived_refused > 0, "some refused records should be derived, not read"
    assert inv.state.counters[kernel.codes.ROLLBACKS] > 0 or not lines, "carts should have rolled back"


@pytest.mark.parametrize("compiled", [False, True])
def test_a_record_reads_the_rows_of_orders_a_cancel_ended_during_the_call(monkeypatch, compiled):
    """An order a cancel ended during its reserve (status CANCELLED with a
    claimed slot: only kernels called beside a durable inventory's lock can
    do that) has a record the journal cannot derive: the others' rows are
    then read from the table, and the record replays to it."""
    from kernel.journal import _fast, effects
    from kernel.lifecycle import ReserveReport

    monkeypatch.setattr(_fast, "MIN_SIZE", 1 if compiled else 1 << 62)
    c = kernel.codes
    statuses = np.array([Status.ACCEPTED, Status.DUPLICATE, Status.CANCELLED, Status.OUT_OF_STOCK], np.int8)
    report = ReserveReport(order_slot=np.array([3, -1, 5, 7]), pair_slot=np.array([-1, -1, -1, -1]),
                           order_fills=np.array([9 << c.FILL_COUNT_BITS | 1, 0, 0, 0]), rolled_back=True,
                           order_id=np.array([30, 31, 32, 33]), user_id=np.array([1, 2, 3, 4]),
                           deadline=np.array([100, 100, 100, 100]), sku=np.zeros(4, np.int64),
                           qty=np.ones(4, np.int64), line_order=None)
    slots, rows, others, other_rows, derived = effects.order_rows(report, statuses)
    assert not derived and other_rows is None and list(others) == [5, 7] and list(slots) == [3]
    table = np.zeros(8 * c.ORDER_STRIDE, np.int64).reshape(-1, c.ORDER_STRIDE)
    table[3] = (c.HELD << c.STATE_SHIFT | 30, 1, 100, 9 << c.FILL_COUNT_BITS | 1)
    table[5] = (c.CANCELLED_HOLD << c.STATE_SHIFT | 32, 3, 100, 4 << c.FILL_COUNT_BITS | 1)  # kept by the cancel
    table[7] = (c.REFUSED << c.STATE_SHIFT | 33, 0, 0, 0)
    state = {"order_table": table.ravel(), "fill_offer": np.zeros(16, np.int64), "fill_qty": np.zeros(16, np.int64),
             "stock": np.zeros(4, np.int64), "limit": np.zeros(4, np.int64), "limit_table": np.zeros(16, np.int64),
             "counters": np.zeros(16, np.int64)}
    record = read_record(b"".join(bytes(memoryview(p).cast("B")) for p in
                                  encode(1, 1, effects.reserve_tracked(state, report, statuses, 0))), 0)
    replayed = {name: np.zeros_like(a) for name, a in state.items()}
    record.apply(replayed)
    np.testing.assert_array_equal(replayed["order_table"], state["order_table"])


@pytest.mark.parametrize("big_flush", [1 << 40, 1024], ids=["small flushes", "big flushes"])
def test_zeroed_room_is_kept_ahead_only_while_flushes_are_small(tmp_path, monkeypatch, big_flush):
    """A private "batch" journal keeps zeroed room ahead of its records
    while its flushes are small; once they average more than BIG_FLUSH it
    prepares none, and the records extend the file (appends).  Either way
    every record is there and replay equals the live state.  (The segment
    starts with no room of its own here, SEGMENT_ROOM_MAX = 0: what is
    tested is the preparer.)"""
    from kernel.journal import writer

    monkeypatch.setattr(writer, "BIG_FLUSH", big_flush)
    monkeypatch.setattr(writer, "SEGMENT_ROOM_MAX", 0)
    path = str(tmp_path / "inv")
    inv = Inventory.create_durable(path, [1000] * 50, max_orders=40_000, limit_per_user=50, max_user_skus=40_000)
    rng = np.random.default_rng(4)
    for call in range(30):
        n = 1000
        inv.reserve(OrderBatch(rng.integers(0, 50, n), rng.integers(1, 3, n),
                               order_id=np.arange(call * n, (call + 1) * n), user_id=rng.integers(0, 300, n)))
    segment = _newest_segment(path)
    deadline = time.monotonic() + 30
    while True:  # the preparer runs beside the calls: let it catch up (small flushes) or not (big)
        room = os.path.getsize(segment) - inv.journal_stats()["bytes"] - SEGMENT_HEADER.size
        if big_flush > 1 << 30 and room <= 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            continue
        break
    if big_flush > 1 << 30:
        assert room > 0, "no zeroed room ahead of small flushes"
    else:
        assert room == 0, f"{room} bytes of room prepared for big flushes"
    live = inv._block.words.copy()
    seq = inv.last_seq
    inv.close()
    assert _reopened_equals(path, {seq: live}) == seq


def _burst(inv, first_call, n_calls, n=1000, seed=5):
    rng = np.random.default_rng(seed + first_call)
    for call in range(first_call, first_call + n_calls):
        inv.reserve(OrderBatch(rng.integers(0, 50, n), rng.integers(1, 3, n),
                               order_id=np.arange(call * n, (call + 1) * n), user_id=rng.integers(0, 300, n)))


def _big_flush_inventory(path, monkeypatch):
    """A private "batch" journal whose flushes count as big from the first
    (BIG_FLUSH 1 KiB): it keeps no room of its own once they have begun
    (and its segments start with none: SEGMENT_ROOM_MAX = 0)."""
    from kernel.journal import writer

    monkeypatch.setattr(writer, "BIG_FLUSH", 1024)
    monkeypatch.setattr(writer, "SEGMENT_ROOM_MAX", 0)
    return Inventory.create_durable(path, [1000] * 50, max_orders=60_000, limit_per_user=50, max_user_skus=60_000)


def test_room_made_ahead_takes_a_burst_of_big_flushes(tmp_path, monkeypatch):
    """make_room zeroes and syncs the room before it returns; a burst of big
    flushes then lands in it (the file does not grow) although such flushes
    get no room of their own; a copy taken mid-burst (records, then zeros:
    a power loss) and the closed journal both replay to the live state, and
    close cuts the unused room off."""
    from kernel.journal import writer

    path = str(tmp_path / "inv")
    inv = _big_flush_inventory(path, monkeypatch)
    _burst(inv, 0, 3)  # the flushes are big from here on: no new room of the journal's own
    segment = _newest_segment(path)
    records_end = SEGMENT_HEADER.size + inv.journal_stats()["bytes"]
    assert os.path.getsize(segment) - records_end <= writer.PREALLOCATE_PIECE, "only the first piece, made at once"
    ask = 4 << 20
    ready = inv.make_room(ask, timeout=60)
    assert ready >= ask
    made = os.path.getsize(segment)
    assert made >= records_end + ask and not any(open(segment, "rb").read()[records_end:])
    _burst(inv, 3, 20)
    used = inv.journal_stats()["bytes"] + SEGMENT_HEADER.size - records_end
    assert writer.PREALLOCATE_PIECE < used < ask, "a burst bigger than the first piece of room, smaller than the room"
    assert os.path.getsize(segment) == made, "the burst's records landed in the room made ahead"
    live, seq = inv._block.words.copy(), inv.last_seq
    copy = _copy(path, tmp_path)
    assert _reopened_equals(copy, {seq: live}) == seq
    inv.close()
    assert os.path.getsize(segment) == _record_ends(segment)[-1], "close cut the unused room off"
    assert _reopened_equals(path, {seq: live}) == seq


# ------------------------------------------------------- recycled segments
def _recycled(tmp_path, n_after=3):
    """A private "batch" inventory, still open: 30 calls, a checkpoint (its
    segment becomes the spare), one call, a checkpoint (the spare recycled
    for the records after it), ``n_after`` calls in it (fewer bytes than the
    30 left there).  ``(inv, path, states, seq, old records)``: ``seq`` is the
    second checkpoint's, ``old records`` the recycled file's bytes before."""
    path = str(tmp_path / "inv")
    inv = _create(path)
    states = _run_calls(inv, seed=21, n_calls=30)
    old = _newest_segment(path)
    inode, before = os.stat(old).st_ino, open(old, "rb").read()
    inv.checkpoint()
    spare = os.path.join(path, SPARE_SEGMENT)
    assert not os.path.exists(old) and os.stat(spare).st_ino == inode, "the segment the snapshot ended is the spare"
    states.update(_run_calls(inv, seed=20, n_calls=1))
    seq = inv.checkpoint()
    recycled = os.path.join(path, segment_name(seq + 1))
    assert os.stat(recycled).st_ino == inode, "the second checkpoint's records go into the spare's file"
    assert os.path.exists(spare) and os.stat(spare).st_ino != inode, "and the segment it ended is the spare now"
    states.update(_run_calls(inv, seed=22, n_calls=n_after))
    return inv, path, states, seq, before


def test_a_checkpoint_recycles_the_spare_and_recovery_stops_at_the_old_records(tmp_path):
    """After a checkpoint the records go into the blocks of the spare (the
    segment the checkpoint before ended; renamed, new header): a copy taken
    then (a crash: the old records still after the new ones) and the closed
    journal replay to the live state; close cuts the old records off."""
    inv, path, states, seq, before = _recycled(tmp_path)
    segment = _newest_segment(path)
    ends = _record_ends(segment)
    assert len(ends) >= 2 and ends[-1] < len(before)
    data = open(segment, "rb").read()
    # The last flush wrote zeros to the end of its page (no page read from
    # the disk first); the old records follow from there.
    page_end = ends[-1] + -ends[-1] % mmap.PAGESIZE
    assert not any(data[ends[-1]:page_end]) and page_end < len(before)
    assert data[page_end:len(before)] == before[page_end:], "the old records are still after the new ones"
    assert read_segment_header(data, segment)[0] == seq + 1
    crash = _copy(path, tmp_path)
    last = inv.last_seq
    assert _reopened_equals(crash, states) == last
    inv.close()
    assert os.path.getsize(segment) == _record_ends(segment)[-1], "close cut the old records off"
    assert _reopened_equals(path, states) == last


def test_a_new_segment_starts_with_zeroed_room_for_a_snapshot_of_bytes(tmp_path, monkeypatch):
    """A private "batch" journal never starts an empty segment: its first
    one, the first checkpoint's (no spare existed: zeros made before the
    call lock) and a reopened journal's are the spare renamed, holding
    zeroed room for as many bytes as the state (prepare_spare), and the
    records land in it (the file does not grow); once a segment's records
    take more than that, the next segment gets as much (a spare smaller
    than it gets zeros after its end).  Other policies start with none.
    (The preparer, which adds room beside small flushes, is off here: what
    is tested is the room a segment starts with.)"""
    from kernel.journal import writer

    monkeypatch.setattr(writer.SegmentWriter, "_prepare_ahead", lambda self: None)
    path = str(tmp_path / "inv")
    inv = _create(path)
    room = inv._block.words.nbytes
    first = _newest_segment(path)
    assert SPARE_SEGMENT not in os.listdir(path), "the first segment is the spare, renamed"
    assert os.path.getsize(first) == room and not any(open(first, "rb").read()[SEGMENT_HEADER.size:])
    states = _run_calls(inv, seed=40, n_calls=10)
    assert os.path.getsize(first) == room > _record_ends(first)[-1], "the records landed in the room"
    seq = inv.checkpoint()
    second = _newest_segment(path)
    assert second == os.path.join(path, segment_name(seq + 1)) and os.path.getsize(second) == room
    assert os.path.getsize(os.path.join(path, SPARE_SEGMENT)) == room, "the segment the snapshot ended is the spare"
    # Records past the room: the file grows, and the next segment gets as
    # much room as they took (the spare, smaller, gets zeros after its end).
    while inv.journal_stats()["bytes"] < 2 * room:
        states.update(_run_calls(inv, seed=41 + len(states), n_calls=20))
    took = _record_ends(second)[-1]
    assert os.path.getsize(second) == took > room
    spare_inode = os.stat(os.path.join(path, SPARE_SEGMENT)).st_ino
    seq = inv.checkpoint()
    third = _newest_segment(path)
    assert os.stat(third).st_ino == spare_inode and os.path.getsize(third) >= took
    assert not any(open(third, "rb").read()[room:took]), "zeros after the recycled segment's end"
    states.update(_run_calls(inv, seed=45, n_calls=5))
    spare_inode = os.stat(os.path.join(path, SPARE_SEGMENT)).st_ino
    inv.close()
    # Reopened: the spare (the second segment, as big as its records) is the
    # new segment, recycled; reopened once more (no spare: close cut the
    # last one's room off), zeros as many bytes as the state.
    inv = Inventory.open_durable(path)
    assert os.stat(_newest_segment(path)).st_ino == spare_inode and os.path.getsize(_newest_segment(path)) >= took
    states.update(_run_calls(inv, seed=46, n_calls=5))
    last = inv.last_seq
    inv.close()
    assert SPARE_SEGMENT not in os.listdir(path)
    inv = Inventory.open_durable(path)
    assert os.path.getsize(_newest_segment(path)) == room
    inv.close()
    assert _reopened_equals(path, states) == last
    for policy in ("interval", "none"):
        other = _create(str(tmp_path / policy), fsync=policy)
        assert os.path.getsize(_newest_segment(str(tmp_path / policy))) == SEGMENT_HEADER.size
        assert SPARE_SEGMENT not in os.listdir(tmp_path / policy)
        other.close()


def test_room_that_cannot_be_zeroed_fails_only_the_checkpoint_or_the_creation(tmp_path, monkeypatch):
    """A full disk while the next segment's room is zeroed (ENOSPC,
    injected after the first bytes): the checkpoint raises JournalError
    naming the file, leaves no temporary file and changes nothing; the
    calls go on and the next checkpoint succeeds.  At create_durable the
    directory it made is gone again; a temporary file a crash left is
    removed when the journal is opened."""
    from kernel.journal import writer

    zeros = writer._write_zeros

    def full_disk(fd, start, end):
        zeros(fd, start, min(end, start + 4096))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    path = str(tmp_path / "inv")
    inv = _create(path)
    states = _run_calls(inv, seed=46, n_calls=8)
    before = sorted(os.listdir(path))
    monkeypatch.setattr(writer, "_write_zeros", full_disk)
    with pytest.raises(JournalError, match=r"checkpoint of .* failed: .*wal-spare\.seg\.\d+\.tmp: \d+ bytes of room "
                                           r"for the next segment could not be written: .*No space left"):
        inv.checkpoint()
    assert sorted(os.listdir(path)) == before
    with pytest.raises(JournalError, match=r"wal-spare\.seg\.\d+\.tmp: .*No space left"):
        _create(str(tmp_path / "new"))
    assert not os.path.exists(tmp_path / "new")
    monkeypatch.undo()
    states.update(_run_calls(inv, seed=47, n_calls=8))
    seq = inv.checkpoint()
    assert seq == inv.last_seq == max(states)
    inv.close()
    leftover = os.path.join(path, f"{SPARE_SEGMENT}.999999.tmp")
    open(leftover, "wb").write(bytes(4096))
    assert _reopened_equals(path, states) == seq
    assert not os.path.exists(leftover)


def test_a_reopened_journal_starts_its_segment_in_the_spare(tmp_path):
    """Opened again, a private "batch" journal's first new segment is the
    spare, recycled; the one before it (the last one written, not the
    newest any more) is read up to its last record."""
    inv, path, states, seq, before = _recycled(tmp_path)
    last = inv.last_seq
    spare_inode = os.stat(os.path.join(path, SPARE_SEGMENT)).st_ino
    inv.close()
    inv = Inventory.open_durable(path)
    assert os.stat(os.path.join(path, segment_name(last + 1))).st_ino == spare_inode
    assert not os.path.exists(os.path.join(path, SPARE_SEGMENT))
    states.update(_run_calls(inv, seed=29, n_calls=5))
    crash = _copy(path, tmp_path)
    inv.close()
    assert _reopened_equals(crash, states) == _reopened_equals(path, states) == max(states)


def test_an_old_record_right_after_the_new_ones_ends_the_recycled_segment(tmp_path):
    """A whole old record (valid checksum, numbered below the segment's
    first) where the next record would start is where the records end, not
    damage; it and what follows are cut off at the next open."""
    inv, path, states, seq, before = _recycled(tmp_path)
    last = inv.last_seq
    crash = _copy(path, tmp_path)
    inv.close()
    segment = os.path.join(crash, segment_name(seq + 1))
    ends = _record_ends(segment)
    old = read_record(before, SEGMENT_HEADER.size)
    assert old is not None and old.seq <= seq
    with open(segment, "r+b") as f:
        f.seek(ends[-1])
        f.write(before[SEGMENT_HEADER.size:SEGMENT_HEADER.size + old.size])
    found = recover(crash, apply=False)
    assert found.segments[-1].torn_at == ends[-1] and found.last_seq == last
    assert _reopened_equals(crash, states) == last
    assert os.path.getsize(segment) == ends[-1]


def test_damage_before_the_tail_of_a_recycled_segment_refuses_to_open(tmp_path):
    """The old records after the new ones do not hide damage: a flipped
    byte in a new record that a later one was written after it was synced
    refuses to open, naming the segment and the offset."""
    inv, path, states, seq, before = _recycled(tmp_path)
    inv.close()
    segment = _newest_segment(path)
    ends = _record_ends(segment)
    data = bytearray(open(segment, "rb").read())
    data[SEGMENT_HEADER.size + RECORD_HEADER.size + 3] ^= 0x5A
    open(segment, "wb").write(bytes(data))
    with pytest.raises(JournalCorrupt, match=f"{segment_name(seq + 1)} offset {SEGMENT_HEADER.size}: damaged record"):
        Inventory.open_durable(path)
    assert len(ends) >= 2


def test_power_loss_in_a_recycled_segment_recovers_an_acknowledged_prefix(tmp_path):
    """A copy of a live recycled segment (new records, then old ones) whose
    last new record lost some pages (the old bytes there again) or a bit:
    recovery replays the records before it, never an old one."""
    inv, path, states, seq, before = _recycled(tmp_path, n_after=15)
    live = _copy(path, tmp_path, "live")
    inv.close()
    name = segment_name(seq + 1)
    ends = _record_ends(os.path.join(live, name))
    assert len(ends) >= 3 and ends[-1] < len(before)
    rng = np.random.default_rng(7)
    for trial in range(8):
        copy = _copy(live, tmp_path, f"t{trial}")
        segment = os.path.join(copy, name)
        data = bytearray(open(segment, "rb").read())
        at = int(rng.integers(ends[-2], ends[-1]))
        if trial % 2:
            data[at] ^= 1 << int(rng.integers(8))
        else:  # the record's pages from `at` on never reached the disk
            at = max(at - at % 4096, ends[-2])  # from a page boundary (or the record's start) on
            assert data[at:ends[-1]] != before[at:ends[-1]]
            data[at:ends[-1]] = before[at:ends[-1]]
        open(segment, "wb").write(bytes(data))
        assert _reopened_equals(copy, states) == seq + len(ends) - 1


def _checkpoint_with(inv, monkeypatch, during):
    """``inv.checkpoint()`` with ``during()`` run where its snapshot is
    being written (the call lock released); returns (seq, during's result)."""
    from kernel.journal import durable

    write = durable.write_snapshot
    seen = []

    def hooked(directory, words, seq):
        if not seen:  # (only the first: during() may checkpoint too)
            seen.append(None)
            seen[0] = during()
        return write(directory, words, seq)
    monkeypatch.setattr(durable, "write_snapshot", hooked)
    try:
        seq = inv.checkpoint()
    finally:
        monkeypatch.setattr(durable, "write_snapshot", write)
    return seq, seen[0]


def test_calls_go_on_while_the_snapshot_is_written_and_a_crash_then_loses_none(tmp_path, monkeypatch):
    """While a checkpoint writes its snapshot, calls from another thread
    are acknowledged (their records go into the next segment, the spare
    recycled); a crash at that moment (a copy of the directory: the old
    snapshot, the segment the checkpoint ended with old records after its
    own, the new one) replays every one of them.  The snapshot holds the
    state at the checkpoint's record, not later calls'."""
    inv, path, states, seq, before = _recycled(tmp_path, n_after=6)
    crashes = []

    def during():
        worker_states = {}
        worker = threading.Thread(target=lambda: worker_states.update(_run_calls(inv, seed=30, n_calls=8)))
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "a call waited for the snapshot"
        crashes.append(_copy(path, tmp_path, "crash"))
        return worker_states
    at_checkpoint = inv._block.words.copy()
    seq2, during_states = _checkpoint_with(inv, monkeypatch, during)
    states.update(during_states)
    assert max(during_states) > seq2 == min(during_states)
    names = os.listdir(crashes[0])
    older = segment_name(seq + 1)
    assert older in names and segment_name(seq2 + 1) in names and f"snap-{seq2:020d}.snap" not in names
    found = recover(crashes[0], apply=False)
    ended = found.segments[[s.name for s in found.segments].index(older)]
    assert ended.ended_at is not None and ended.ended_at < os.path.getsize(os.path.join(crashes[0], older)), \
        "the segment before the new one ends at old records, not at its file's end"
    inspect = lambda where: subprocess.run([sys.executable, "-m", "kernel.journal", "inspect", where],
                                           capture_output=True, text=True, timeout=60).stdout
    assert f"{older}: records {seq + 1}..{seq2} " in inspect(crashes[0])
    assert f"records end at offset {ended.ended_at} (then " in inspect(crashes[0])
    assert _reopened_equals(crashes[0], states) == max(during_states)
    assert f"spare {SPARE_SEGMENT}: {os.path.getsize(os.path.join(path, SPARE_SEGMENT))} bytes" in inspect(path)
    found = recover(path, apply=False)
    assert found.snapshot_seq == seq2
    snapshot = found.words.copy()
    assert np.array_equal(snapshot, at_checkpoint) and not np.array_equal(snapshot, inv._block.words)
    last = inv.last_seq
    inv.close()
    assert _reopened_equals(path, states) == last


def test_damage_in_a_segment_before_the_newest_refuses_to_open_naming_it(tmp_path, monkeypatch):
    """In a segment that is not the newest, the first thing that is not its
    next record ends it; where the next segment does not start right after,
    that is damage, named by segment and offset (not a missing segment)."""
    inv, path, states, seq, before = _recycled(tmp_path, n_after=15)
    seq2, crash = _checkpoint_with(inv, monkeypatch, lambda: (_run_calls(inv, seed=31, n_calls=3),
                                                               _copy(path, tmp_path, "crash"))[1])
    inv.close()
    older = os.path.join(crash, segment_name(seq + 1))
    ends = _record_ends(older)
    assert len(ends) >= 3
    data = bytearray(open(older, "rb").read())
    data[ends[0] + RECORD_HEADER.size + 2] ^= 0x11  # its second record (the one after it was written later)
    open(older, "wb").write(bytes(data))
    with pytest.raises(JournalCorrupt, match=f"{segment_name(seq + 1)} offset {ends[0]}: damaged record"):
        Inventory.open_durable(crash)


def _checkpointed_once(tmp_path, seeds, n_calls):
    """A private "batch" inventory, still open: calls, a checkpoint (its
    segment becomes the spare), more calls.  ``(inv, path, states)``."""
    path = str(tmp_path / "inv")
    inv = _create(path)
    states = _run_calls(inv, seed=seeds[0], n_calls=n_calls[0])
    inv.checkpoint()
    states.update(_run_calls(inv, seed=seeds[1], n_calls=n_calls[1]))
    return inv, path, states


@pytest.mark.parametrize("cut", ["spare has the new header", "renamed, no record yet"])
def test_a_crash_inside_the_recycling_opens_and_goes_on(tmp_path, cut):
    """Recycling writes the spare's new header (synced) and then renames
    it: a crash before the rename leaves a spare recovery does not read; a
    crash after it, a segment with no record of its own (old ones after its
    header).  Either opens at the last record and goes on from there."""
    inv, path, states = _checkpointed_once(tmp_path, seeds=(23, 24), n_calls=(20, 4))
    if cut == "spare has the new header":
        crash = _copy(path, tmp_path)
        spare = os.path.join(crash, SPARE_SEGMENT)
        block_crc = read_segment_header(open(spare, "rb").read(), spare)[1]
        with open(spare, "r+b") as f:
            f.write(segment_header(inv.last_seq + 1, block_crc))
        expected = inv.last_seq
    else:
        expected = inv.checkpoint()
        crash = _copy(path, tmp_path)
        assert _record_ends(os.path.join(crash, segment_name(expected + 1))) == []
    inv.close()
    assert _reopened_equals(crash, states) == expected
    inv = Inventory.open_durable(crash)
    more = _run_calls(inv, seed=25, n_calls=5)
    last = inv.last_seq
    inv.close()
    assert last > expected and _reopened_equals(crash, more) == last


@pytest.mark.parametrize("step", ["header", "directory"])
def test_a_failed_recycling_changes_nothing_or_fails_stop(tmp_path, monkeypatch, step):
    """An I/O error writing the spare's new header changes nothing: the
    checkpoint raises JournalError and calls go on in the segment they were
    in.  One syncing the directory after the rename (the new name may or
    may not be on disk) fails stop: JournalFailed, then and for every later
    call.  Reopened, either has every acknowledged call."""
    from kernel.journal import writer

    inv, path, states = _checkpointed_once(tmp_path, seeds=(28, 27), n_calls=(15, 3))
    if step == "header":
        write_all = writer._write_all

        def fails(fd, data, offset=None):
            if offset == 0:
                raise OSError(errno.EIO, "injected")
            return write_all(fd, data, offset)
        monkeypatch.setattr(writer, "_write_all", fails)
        with pytest.raises(JournalError, match="checkpoint of .* failed: .*injected") as raised:
            inv.checkpoint()
        assert not isinstance(raised.value, JournalFailed)
        monkeypatch.undo()
        states.update(_run_calls(inv, seed=26, n_calls=3))
        assert os.path.exists(os.path.join(path, SPARE_SEGMENT))
    else:
        def fails(directory):
            raise OSError(errno.EIO, "injected")
        monkeypatch.setattr(writer, "fsync_directory", fails)
        with pytest.raises(JournalFailed):
            inv.checkpoint()
        monkeypatch.undo()
        with pytest.raises(JournalFailed):
            inv.reserve_one(0, 1, order_id=1_000, user_id=1)
    last = inv.last_seq
    inv.close()
    assert _reopened_equals(path, states) == last == max(states)


def test_a_segment_whose_header_names_another_record_is_damage(tmp_path):
    """A header naming another first record than the file's name refuses
    to open, naming the segment (the newest one, or the one right after the
    snapshot)."""
    path = str(tmp_path / "inv")
    inv = _create(path)
    _run_calls(inv, seed=25, n_calls=10)
    seq = inv.checkpoint()
    _run_calls(inv, seed=26, n_calls=10)
    last = inv.last_seq
    inv.close()
    inv = Inventory.open_durable(path)  # a new segment from last + 1
    _run_calls(inv, seed=27, n_calls=3)
    inv.close()
    for name, other in ((segment_name(last + 1), seq + 1), (segment_name(seq + 1), seq)):
        copy = _copy(path, tmp_path, f"copy{other}")
        segment = os.path.join(copy, name)
        with open(segment, "r+b") as f:
            f.write(segment_header(other, read_segment_header(open(segment, "rb").read(), segment)[1]))
        with pytest.raises(JournalCorrupt, match=f"{name} offset 0: header says it starts at record {other}"):
            Inventory.open_durable(copy)


def test_checkpoints_run_one_at_a_time_and_close_waits_for_one(tmp_path, monkeypatch):
    """A second checkpoint, or close, from another thread while a
    checkpoint writes its snapshot waits for it; other policies keep no
    spare."""
    inv = _create(str(tmp_path / "inv"))
    _run_calls(inv, seed=32, n_calls=5)
    for other_call in ("checkpoint", "close"):
        order = []

        def during():
            call = inv.checkpoint if other_call == "checkpoint" else inv.close
            other = threading.Thread(target=lambda: (call(), order.append(other_call)))
            other.start()
            time.sleep(0.2)  # (not a timing assertion: it must not finish, however long this waits)
            order.append("snapshot written")
            return other
        _run_calls(inv, seed=34, n_calls=2)
        seq, other = _checkpoint_with(inv, monkeypatch, during)
        other.join(timeout=60)
        assert not other.is_alive() and order == ["snapshot written", other_call]
    assert inv.closed
    for policy in ("interval", "none"):
        other = _create(str(tmp_path / policy), fsync=policy)
        _run_calls(other, seed=33, n_calls=4)
        other.checkpoint()
        other.close()
        assert SPARE_SEGMENT not in os.listdir(tmp_path / policy)
    # A "batch" journal's spare, opened with another policy: its next
    # checkpoint removes the spare (nothing would recycle it).
    path = str(tmp_path / "batch")
    other = _create(path)
    _run_calls(other, seed=38, n_calls=4)
    other.checkpoint()
    other.close()
    assert SPARE_SEGMENT in os.listdir(path)
    other = Inventory.open_durable(path, fsync="none")
    states = _run_calls(other, seed=39, n_calls=4)
    other.checkpoint()
    other.close()
    assert SPARE_SEGMENT not in os.listdir(path)
    assert _reopened_equals(path, states) == max(states)


def test_a_snapshot_that_cannot_be_written_fails_only_the_checkpoint(tmp_path, monkeypatch):
    """The snapshot is written after the next segment started: a full disk
    there (ENOSPC, injected after the first write) raises JournalError (not
    JournalFailed) and leaves no temporary file; calls go on into the new
    segment, reopening replays them all from the previous snapshot, and the
    next checkpoint succeeds."""
    from kernel.journal import snapshot as snapshot_module

    inv, path, states, seq, before = _recycled(tmp_path, n_after=6)

    class DiskFills:
        writes = 0

        def __getattr__(self, attribute):
            return getattr(os, attribute)

        def write(self, fd, data):
            DiskFills.writes += 1
            if DiskFills.writes > 1:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return os.write(fd, data)
    monkeypatch.setattr(snapshot_module, "os", DiskFills())
    with pytest.raises(JournalError, match="checkpoint of .* failed: .*No space left") as raised:
        inv.checkpoint()
    monkeypatch.undo()
    assert not isinstance(raised.value, JournalFailed) and DiskFills.writes == 2
    assert not [n for n in os.listdir(path) if n.endswith(".tmp")]
    last = inv.last_seq
    assert os.path.exists(os.path.join(path, segment_name(last + 1))), "the next segment had started"
    states.update(_run_calls(inv, seed=40, n_calls=8))
    assert _reopened_equals(_copy(path, tmp_path), states) == inv.last_seq
    seq = inv.checkpoint()
    inv.close()
    assert _reopened_equals(path, states) == seq == max(states)


def test_two_processes_checkpointing_one_shared_journal_at_once(tmp_path, monkeypatch):
    """Shared journals checkpoint outside the call lock too, so two
    processes (here two handles in one process, each with its own writer)
    can write the snapshot of the same sequence number at once: each writes
    its own temporary file, both succeed, and the snapshot is whole.  A
    temporary file whose writer died is removed by the next checkpoint; one
    of a live writer is not."""
    from kernel.journal.snapshot import read_snapshot, snapshot_name

    path = str(tmp_path / "shared")
    name = f"kernel-test-ckpt-{os.getpid()}-{time.monotonic_ns()}"
    Inventory.create_durable(path, offers=_offers(), max_orders=400, limit_per_user=5, max_user_skus=400,
                             shared=name).close()
    first = second = None
    try:
        first = Inventory.open_durable(path, shared=name)
        second = Inventory.open_durable(path, shared=name)
        states = _run_calls(first, seed=35, n_calls=20)
        states.update(_run_calls(second, seed=36, n_calls=5))
        # The second checkpoint runs when the first has written and synced
        # its temporary file, just before renaming it.
        from kernel.journal import snapshot as snapshot_module
        others = []

        write = snapshot_module.write_new_file

        def rename_late(temporary, target, fill):
            def filled(fd):
                fill(fd)  # written and synced; the rename follows
                if not others:
                    others.append(None)
                    others[0] = second.checkpoint()
            write(temporary, target, filled)
        monkeypatch.setattr(snapshot_module, "write_new_file", rename_late)
        seq = first.checkpoint()
        monkeypatch.undo()
        assert others[0] == seq == max(states)
        snap_seq, words, _ = read_snapshot(os.path.join(path, snapshot_name(seq)))
        assert snap_seq == seq and np.array_equal(words, states[seq])
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, timeout=60, check=True)
        abandoned = f"{snapshot_name(seq)}.{int(dead.stdout)}-1.tmp"
        alive = f"{snapshot_name(seq)}.{os.getpid()}-1.tmp"
        for leftover in (abandoned, alive):
            open(os.path.join(path, leftover), "wb").write(b"half a snapshot")
        states.update(_run_calls(second, seed=37, n_calls=5))
        second.checkpoint()
        names = os.listdir(path)
        assert abandoned not in names and alive in names
        assert SPARE_SEGMENT not in names, "shared journals start a new segment and keep no spare"
        last = second.last_seq
    finally:
        for inv in (first, second):
            if inv is not None:
                inv.close()
        Inventory.attach(name).unlink()
    assert _reopened_equals(path, states) == last


def test_room_asked_for_carries_over_a_checkpoint(tmp_path, monkeypatch):
    """What make_room asked for and records have not used is made again in
    the segment a checkpoint starts."""
    path = str(tmp_path / "inv")
    inv = _big_flush_inventory(path, monkeypatch)
    _burst(inv, 0, 3)
    ask = 2 << 20
    inv.make_room(ask, timeout=60)
    written = inv.journal_stats()["bytes"]
    _burst(inv, 3, 5)
    used = inv.journal_stats()["bytes"] - written
    inv.checkpoint()
    assert inv.make_room(0, timeout=60) >= ask - used  # waits for the carried-over room
    segment = _newest_segment(path)
    ends = _record_ends(segment)
    assert os.path.getsize(segment) >= (ends[-1] if ends else SEGMENT_HEADER.size) + ask - used
    # The room is the segment the checkpoint recycled: its old records (all
    # numbered below the new first), then zeros; no record of its own.
    first = segment_first_seq(os.path.basename(segment))
    assert all(r.seq < first for r in valid_records_after(open(segment, "rb").read(), SEGMENT_HEADER.size - 8))
    live, seq = inv._block.words.copy(), inv.last_seq
    inv.close()
    assert _reopened_equals(path, {seq: live}) == seq


def test_make_room_refuses_bad_arguments_and_journals_that_keep_no_room(tmp_path):
    """A clear ValueError (TypeError: not an integer) naming the argument,
    or saying which journals keep room; a closed inventory says it is
    closed; a timeout says how much was ready."""
    inv = _create(str(tmp_path / "inv"))
    with pytest.raises(ValueError, match=r"nbytes = -1 is out of range \[0, "):
        inv.make_room(-1)
    for bad in (1.5, "4096", None):
        with pytest.raises(TypeError, match="nbytes = .* is not an integer"):
            inv.make_room(bad)
    for bad in (-1.0, "1", True):
        with pytest.raises(ValueError, match="timeout"):
            inv.make_room(4096, timeout=bad)
    with pytest.raises(TimeoutError, match="ready after 0 s"):
        inv.make_room(64 << 20, timeout=0)  # checked before the preparer can run: it needs the writer's lock
    live, seq = inv._block.words.copy(), inv.last_seq
    inv.close()
    with pytest.raises(ValueError, match="closed"):
        inv.make_room(4096)
    assert _reopened_equals(str(tmp_path / "inv"), {seq: live}) == seq
    for fsync in ("interval", "none"):
        other = _create(str(tmp_path / fsync), fsync=fsync)
        with pytest.raises(ValueError, match=f"fsync='batch'.*fsync='{fsync}'"):
            other.make_room(4096)
        other.close()
    name = f"kernel-test-room-{os.getpid()}-{time.monotonic_ns()}"
    Inventory.create_durable(str(tmp_path / "shared"), [10] * 5, max_orders=100, shared=name).close()
    try:
        shared = Inventory.open_durable(str(tmp_path / "shared"), shared=name)
        with pytest.raises(ValueError, match="shared"):
            shared.make_room(4096)
        shared.close()
    finally:
        Inventory.attach(name).unlink()


def test_make_room_on_a_full_disk_raises_and_the_journal_goes_on(tmp_path, monkeypatch):
    """Zeros that cannot be written (ENOSPC, injected) stop the preparer:
    make_room raises JournalError naming the segment, nothing fails, and
    records go on extending the file (each acknowledged call replays)."""
    from kernel.journal import writer

    real = writer._write_all

    def no_room_for_zeros(fd, data, offset=None):
        if type(data) is bytes and len(data) == writer.PREALLOCATE_PIECE:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real(fd, data, offset)
    monkeypatch.setattr(writer, "_write_all", no_room_for_zeros)
    path = str(tmp_path / "inv")
    inv = _create(path)
    with pytest.raises(JournalError, match=r"make_room: could not write zeros into .*wal-.*No space left"):
        inv.make_room(1 << 20, timeout=60)
    states = _run_calls(inv, seed=8, n_calls=10)
    inv.close()
    assert _reopened_equals(path, states) == max(states)


def test_the_room_ab_tool_runs_every_variant_checked_and_restores_the_writer(capsys):
    """bench/ab_journal_room.py (how BIG_FLUSH was chosen) runs each variant
    (room made ahead too) on real journals, checked by durable_round, and
    leaves the writer's settings as it found them."""
    import importlib.util

    from kernel.journal import writer
    from kernel.bench import gate

    path = gate.source_checkout() / "bench" / "ab_journal_room.py"
    spec = importlib.util.spec_from_file_location("ab_journal_room", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    before = writer.BIG_FLUSH, writer.PREALLOCATE
    assert tool.main(["--scale", "0.002", "--batch-sizes", "5000", "--callers", "1,2", "--rounds", "2",
                      "--big-flush", "512,0,ahead"]) == 0
    assert (writer.BIG_FLUSH, writer.PREALLOCATE) == before
    out = capsys.readouterr().out
    assert out.count("batch 5000,") == 2
    assert out.count("BIG_FLUSH  512 KiB") == 2 and out.count("BIG_FLUSH    0 KiB (no room)") == 2
    assert out.count("room made ahead    ") == 2
    with pytest.raises(SystemExit):  # one round has no quartiles: refused before any run
        tool.main(["--rounds", "1"])
    assert "--rounds must be >= 2" in capsys.readouterr().err


def test_one_private_owner_at_a_time(tmp_path):
    path = str(tmp_path / "inv")
    inv = _create(path)
    with pytest.raises(JournalError, match="open in another process"):
        Inventory.open_durable(path)
    inv.close()
    Inventory.open_durable(path).close()  # free again once closed


def test_rows_and_subtract_sections_round_trip():
    """ROWS split words into bit fields (each with its own frame of
    reference) and join them back exactly, negative words included;
    SUBTRACT adds repeats up.  Fields that do not tile a word are refused."""
    rng = np.random.default_rng(5)
    state = {name: np.zeros(size, np.int64) for name, size in
             (("order_table", 4 * 64), ("stock", 10), ("fill_offer", 30), ("fill_qty", 30), ("counters", 8))}
    table = state["order_table"]
    table[:] = rng.integers(-(1 << 63), (1 << 63) - 1, table.size, dtype=np.int64)
    table[::4] = (rng.integers(0, 5, 64) << 56) | rng.integers(0, 1 << 56, 64)
    state["stock"][:] = 100
    state["fill_offer"][:] = rng.integers(0, 10, 30)
    state["fill_qty"][:] = rng.integers(0, 4, 30)
    effects = Effects()
    rows = rng.permutation(64)[:40]
    fields = ((0, 0), (0, 56), (1, 0), (2, 0), (3, 0), (3, 24))
    effects.rows("order_table", 4, rows, fields, state)
    effects.range(("fill_offer", "fill_qty"), 5, 25, state)
    effects.subtract("stock", "fill_offer", "fill_qty", 5, 25)
    parts = encode(7, 1, effects)
    record = read_record(b"".join(parts), 0)
    assert record is not None and record.seq == 7
    replayed = {name: np.zeros_like(a) for name, a in state.items()}
    replayed["stock"][:] = 100
    record.apply(replayed)
    mine = (rows[:, None] * 4 + np.arange(4)).ravel()
    assert np.array_equal(replayed["order_table"][mine], table[mine])
    expected = np.full(10, 100, np.int64)
    np.subtract.at(expected, state["fill_offer"][5:25], state["fill_qty"][5:25])
    assert np.array_equal(replayed["stock"], expected)
    for bad in (((0, 0), (1, 0), (2, 0)), ((0, 8), (1, 0), (2, 0), (3, 0)), ((0, 0), (0, 0), (1, 0), (2, 0), (3, 0))):
        with pytest.raises(ValueError):
            Effects().rows("order_table", 4, rows, bad, state)


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_contended_two_thread_reserves_replay_word_for_word(tmp_path, backend):
    """Big multi-line batches on 2 kernel threads over few, scarce, priced
    offers: rollbacks, re-runs of refused orders, refused orders' rows, new
    (user, SKU) pairs colliding.  The record's stock is the SUBTRACT of its
    fill range, and replay still equals the live state word for word."""
    if backend not in kernel.available_backends():
        pytest.skip(f"{backend} not built")
    rng = np.random.default_rng(21)
    n_skus, n = 40, 6000
    sku = np.repeat(np.arange(n_skus), 3)
    qty = rng.integers(20, 60, sku.size)
    price = rng.integers(1, 20, sku.size)
    path = str(tmp_path / "inv")
    inv = Inventory.create_durable(path, offers=(sku, qty, price), n_skus=n_skus, backend=backend, threads=2,
                                   max_orders=8 * n, limit_per_user=4, max_user_skus=8 * n)
    next_id = 0
    for _ in range(4):
        lines = rng.integers(1, 4, n)
        offsets = np.concatenate(([0], np.cumsum(lines)))
        n_lines = int(offsets[-1])
        orders = OrderBatch(rng.integers(0, n_skus, n_lines), rng.integers(1, 4, n_lines), offsets,
                            max_price=rng.integers(5, 25, n_lines), order_id=np.arange(next_id, next_id + n),
                            user_id=rng.integers(0, n // 3, n))
        next_id += n
        result = inv.reserve(orders, threads=2, hold_until=rng.integers(0, 50, n))
        inv.cancel(orders.order_id[rng.random(n) < 0.2], threads=2)
        inv.restock(rng.integers(0, sku.size, 30), rng.integers(1, 30, 30))
    assert 0 < result.n_accepted < n, "the batches should both sell and refuse"
    assert inv.state.counters[kernel.codes.ROLLBACKS] > 0, "some orders should have rolled back a take"
    live = inv._block.words.copy()
    seq = inv.last_seq
    inv.close()
    assert _reopened_equals(path, {seq: live}) == seq


def test_durable_round_after_a_checkpoint_times_the_recycled_segment_and_checks_its_rebuild(tmp_path, monkeypatch):
    """``durable_round(after_checkpoint=True)``: an earlier sale, a
    checkpoint, its expiry, a checkpoint that recycles the sale's segment,
    then the timed batches (the same statuses as its plain baseline, one
    fsync each, the earlier sale's not counted; the checkpoints' pauses
    reported); a journal that rebuilds another state than the live one
    raises, naming the array."""
    from kernel.bench.workloads import make_case
    from kernel.invariants import InvariantViolation
    from kernel.journal import bench as journal_bench
    from kernel.journal import writer

    case = make_case("uniform", 0.002)
    recycled = []
    take_spare = writer.SegmentWriter._take_spare

    def counted(self, path, first):
        fd = take_spare(self, path, first)
        if fd is not None:
            recycled.append(first)
        return fd
    monkeypatch.setattr(writer.SegmentWriter, "_take_spare", counted)
    _, accepted, _, stats = journal_bench.durable_round(case, "cython", 1, batch_size=500, where=str(tmp_path),
                                                        after_checkpoint=True)
    plain = journal_bench.durable_round(case, "cython", 1, batch_size=500, durable=False, after_checkpoint=True)
    # Every segment is the spare renamed (prepare_spare): the first, the
    # first checkpoint's (after the sale's records), the second's (after
    # the expiry's: the sale's segment recycled, the timed calls' records go
    # there), then the check's reopen after the timed calls.
    calls = -(-case.n_orders // 500)
    assert recycled == [1, calls + 1, calls + 2, 2 * calls + 2]
    assert accepted == plain[1] > 0 and stats["fsyncs"] == -(-case.n_orders // 500)
    # (Their durations are the bench's to report: its report test checks the row.)
    assert stats["checkpoints"] == 2
    opened = Inventory.open_durable.__func__

    def rebuilt_off_by_one(cls, directory, **kwargs):
        inv = opened(cls, directory, **kwargs)
        inv.restock(0, 1)
        return inv
    monkeypatch.setattr(Inventory, "open_durable", classmethod(rebuilt_off_by_one))
    with pytest.raises(InvariantViolation, match="stock rebuilt from the journal differs from the live state"):
        journal_bench.durable_round(case, "cython", 1, batch_size=500, where=str(tmp_path), after_checkpoint=True)


def test_the_journal_bench_reports_every_path_from_checked_rounds(tmp_path, monkeypatch):
    """``python -m kernel.journal bench`` at a small scale: a row per fsync
    policy and caller count, each from rounds whose invariants were checked
    (durable_round checks every round), with the fsyncs each path should
    make (a lone "batch" caller one per batch; "none" one, at the end) and
    the journal's bytes per order; the "room ahead" row's journal gets room
    made ahead, more than the same round's "batch" run wrote; the untimed
    warm-up round runs first, on a tenth of the workload."""
    from kernel.journal import bench as journal_bench

    rounds_run = []
    real_round = journal_bench.durable_round

    def counted(case, *args, **kwargs):
        rounds_run.append((case.n_orders, kwargs.get("durable", True), kwargs.get("fsync"), kwargs.get("callers"),
                           kwargs.get("room", 0) > 0, kwargs.get("after_checkpoint", False)))
        return real_round(case, *args, **kwargs)
    monkeypatch.setattr(journal_bench, "durable_round", counted)
    monkeypatch.setattr(journal_bench, "reserve_one_threads",
                        lambda n, calls, **kw: dict(orders_per_s=1.0, p50_us=1.0, p99_us=1.0, fsyncs=1,
                                                    fsync_ms_each=0.1))
    lines = []
    journal_bench.main("uniform", 0.01, backend="cython", threads=1, batch_sizes=(10_000,), rounds=1,
                       where=str(tmp_path), out=lines.append)
    n_orders = 100_000
    # Warm-up on a tenth first (plain, then every path), then the timed round.
    assert [r[0] for r in rounds_run] == [n_orders // 10] * 8 + [n_orders] * 8
    assert [r[1:] for r in rounds_run[:8]] == [r[1:] for r in rounds_run[8:]]
    assert [r[-2] for r in rounds_run[8:]] == [False] * 5 + [True, False, False]
    # The "after a checkpoint" row and its plain baseline, both after an earlier sale.
    assert [(r[1], r[-1]) for r in rounds_run[-2:]] == [(False, True), (True, True)]
    assert not any(r[-1] for r in rounds_run[8:-2])
    rows = {line[:26].strip(): line[26:].split() for line in lines[2:10]}
    assert list(rows) == ["tracked (not durable)", "durable batch", "durable batch, 2 callers", "durable interval",
                          "durable none", "durable batch, room ahead", "tracked, after a sale",
                          "durable batch, after ckpt"]
    for label, cells in rows.items():
        assert cells[0] == "10000" and float(cells[1].replace(",", "")) > 0, (label, cells)
    for label in ("durable batch", "durable batch, room ahead", "durable batch, after ckpt"):
        assert int(rows[label][4]) == n_orders // 10_000  # one record, one fsync per call: the timed calls' alone
    assert int(rows["durable none"][4]) == 1  # the sync at the end of the round
    for label in ("durable batch", "durable none"):
        assert 10 < float(rows[label][7]) < 60, rows[label]  # journal bytes per order
    # The "after ckpt" row is followed by its checkpoints' line (how long calls were held back).
    assert lines[10].startswith("  its checkpoints") and "calls held back" in lines[10], lines[10]


@pytest.mark.parametrize("fsync", ["batch", "none"])
def test_reserve_one_threads_checks_the_run_and_the_state_rebuilt_from_its_journal(tmp_path, monkeypatch, fsync):
    """The ``reserve_one`` thread benchmark counts only a checked run: a
    clean one passes; a live state off by one unit, or a journal that
    rebuilds a different state, raises and names what is wrong."""
    from kernel.invariants import InvariantViolation
    from kernel.journal import bench as journal_bench

    figures = journal_bench.reserve_one_threads(3, 20, backend="cython", fsync=fsync, where=str(tmp_path))
    assert figures["calls"] == 60 and figures["orders_per_s"] > 0
    assert (figures["fsyncs"] >= 1) if fsync == "batch" else figures["fsyncs"] == 0

    create, reopen = Inventory.create_durable, Inventory.open_durable

    def with_a_stray_unit(*args, **kwargs):
        inv = create(*args, **kwargs)
        inv.restock(5, 1)  # one unit no order accounts for
        return inv
    monkeypatch.setattr(Inventory, "create_durable", with_a_stray_unit)
    with pytest.raises(InvariantViolation, match="offer 5|SKU 5"):
        journal_bench.reserve_one_threads(2, 10, backend="cython", fsync=fsync, where=str(tmp_path))

    def rebuilt_without_order_0(*args, **kwargs):
        inv = reopen(*args, **kwargs)
        inv.cancel([0])  # as if order 0's record had been lost
        return inv
    monkeypatch.setattr(Inventory, "create_durable", create)
    monkeypatch.setattr(Inventory, "open_durable", rebuilt_without_order_0)
    with pytest.raises(InvariantViolation, match="rebuilt from the journal: order 0 is not HELD"):
        journal_bench.reserve_one_threads(2, 10, backend="cython", fsync=fsync, where=str(tmp_path))
    assert not list(tmp_path.iterdir()), "the benchmark's journals are removed, checked or not"


@pytest.mark.parametrize("fsync", ["batch", "interval", "none"])
def test_a_durable_inventory_dropped_without_close_closes_its_journal(tmp_path, fsync):
    """Dropped without close(), a durable inventory closes its journal as a
    file does, with a ResourceWarning: what it appended is synced (also
    under "interval" and "none"), its background threads stop and its owner
    lock goes, so this process can open the directory again and finds every
    call.  Closed, it does not warn."""
    path = str(tmp_path / "inv")
    threads_before = {t.ident for t in threading.enumerate()}
    inv = Inventory.create_durable(path, [5, 5], max_orders=64, limit_per_user=4, max_user_skus=64, fsync=fsync,
                                   interval_ms=60_000)
    for k in range(3):
        inv.reserve(OrderBatch([0, 1], [1, 1], order_id=[2 * k + 1, 2 * k + 2], user_id=[k, k]))
    live = inv.state_of(np.arange(1, 7))
    ours = {t.ident for t in threading.enumerate()} - threads_before
    with pytest.warns(ResourceWarning, match="dropped without close"):
        del inv
    assert not ({t.ident for t in threading.enumerate() if t.is_alive()} & ours), "its threads outlived it"
    with Inventory.open_durable(path) as reopened:  # the owner lock is free
        np.testing.assert_array_equal(reopened.state_of(np.arange(1, 7)), live)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        inv = Inventory.open_durable(path, fsync=fsync)
        inv.close()
        del inv


def test_a_forked_child_dropping_a_durable_inventory_leaves_the_journal_alone(tmp_path):
    """A child forked while a durable inventory is open holds a copy of its
    journal writer; dropping the copy there must not close it: a close
    would sync and cut the segment at the offsets of the fork, under the
    records the parent acknowledged since."""
    path = str(tmp_path / "inv")
    inv = Inventory.create_durable(path, [50, 50], max_orders=64, limit_per_user=40, max_user_skus=64)
    inv.reserve(OrderBatch([0, 1], [1, 1], order_id=[1, 2], user_id=[1, 1]))
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: once the parent has appended, drop its copy and leave
        code = 0
        try:
            os.close(go_write)
            select.select([go_read], [], [], 60)
            del inv
            import gc
            gc.collect()
        except BaseException:
            code = 1
        os._exit(code)
    os.close(go_read)
    try:
        for k in range(2, 6):  # acknowledged, durable, after the fork
            inv.reserve(OrderBatch([0, 1], [1, 1], order_id=[2 * k + 1, 2 * k + 2], user_id=[k, k]))
        os.write(go_write, b"x")
    finally:
        os.close(go_write)
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    live = inv.state_of(np.arange(1, 13))
    inv.close()
    with Inventory.open_durable(path) as reopened:
        np.testing.assert_array_equal(reopened.state_of(np.arange(1, 13)), live)
