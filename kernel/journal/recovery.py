"""Reading a journal directory back: the newest valid snapshot, then every
record after it, in sequence order.

Rules (each has a test in ``tests/test_journal.py``):

* Zero bytes from the end of a segment's records to the end of its file are
  room the writer preallocated (:mod:`kernel.journal.writer`), not damage;
  ``repair`` cuts them off.
* A private ``"batch"`` journal recycles segments (``SegmentWriter._take_spare``):
  a spare segment gets a new header and its name, and the new records
  overwrite the old ones.  A valid record numbered below its segment's
  first is such a leftover: the segment's records end there, as at a torn
  record (below, and what follows is judged the same way: an old record
  says it was written when less than the damaged one was synced).  The
  spare (``wal-spare.seg``) is never read.
* A segment that is not the newest ends at the first thing that is not its
  next record (old records, page padding, room): everything in it was
  synced before the next segment got a record.  The next segment must start
  right after its last record; where it does not, the first thing that
  ended it is damage (:class:`JournalCorrupt` naming that offset).
* A record that fails its checks (length, magic, checksum) in the newest
  segment, where no valid record after it was written once it was on disk
  (each record's ``synced``, :mod:`kernel.journal.records`), was torn by a
  crash before it was acknowledged: it is cut off, with whatever follows it
  (``repair``).  Records written after it into preallocated room, in the
  same unsynced group, may have reached the disk when it did not.
* Anything else that fails its checks (a bad record followed by a valid one
  written after it was on disk, a bad record in an older segment, a record
  out of sequence) refuses to open with :class:`JournalCorrupt` naming the
  segment and the offset.
* The segments must chain: the first must start at or before the record
  after the snapshot, each next one right after the last record of the one
  before; a gap is a missing segment (an error naming the records missing).
* Records at or before the snapshot's sequence number are skipped: nothing
  is applied twice.
* A directory without the marker file is not a durable inventory; another
  format or layout version is refused by name.

Replay cost: one numpy scatter per section, so a record costs a few
microseconds plus about 1 ns per word it carries.
"""

import json
import os

import numpy as np

from ..state import LAYOUT_VERSION
from .records import (FORMAT_VERSION, OPS, READABLE_FORMATS, SEGMENT_HEADER, JournalCorrupt, JournalError,
                      fsync_directory, layout_crc, read_record, read_segment_header, segment_first_seq,
                      valid_records_after)
from .snapshot import read_snapshot, snapshot_seq

MARKER = "kernel-journal.json"


def write_marker(directory):
    path = os.path.join(directory, MARKER)
    with open(path + ".tmp", "w") as f:
        json.dump({"kind": "kernel durable inventory", "format": FORMAT_VERSION, "layout_version": LAYOUT_VERSION},
                  f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
    fsync_directory(directory)


def check_directory(directory):
    """Raise unless ``directory`` is a durable inventory of this format."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory: {directory!r} does not exist or is not a directory")
    path = os.path.join(directory, MARKER)
    try:
        with open(path) as f:
            marker = json.load(f)
    except FileNotFoundError:
        raise JournalError(f"{directory!r} is not a durable inventory (no {MARKER}; create one with "
                           f"Inventory.create_durable)") from None
    except (ValueError, UnicodeDecodeError):
        raise JournalCorrupt(f"{path}: unreadable") from None
    if not isinstance(marker, dict) or marker.get("kind") != "kernel durable inventory":
        raise JournalError(f"{path}: not a kernel durable inventory marker")
    if marker.get("format") not in READABLE_FORMATS:
        raise JournalError(f"{directory!r}: journal format version {marker.get('format')}, this kernel reads "
                           f"{FORMAT_VERSION}")
    if marker.get("layout_version") != LAYOUT_VERSION:
        raise JournalError(f"{directory!r}: journal of layout version {marker.get('layout_version')}, this "
                           f"kernel reads {LAYOUT_VERSION}")
    return directory


class Segment:
    """What a scan found in one segment file."""

    def __init__(self, path, first_seq):
        self.path = path
        self.first_seq = first_seq
        self.last_seq = first_seq - 1
        self.records = 0
        self.size = 0
        self.valid_end = 0       # where the good records end
        self.torn_at = None      # offset of a torn tail (cut off by repair)
        self.ended_at = None     # not the newest: where its records end, before old records or padding
        self.free = 0            # bytes of zeros after the records: preallocated room
        self.skipped = False     # wholly before the snapshot: not read
        self.ops = {}

    @property
    def name(self):
        return os.path.basename(self.path)


class Recovery:
    """The state rebuilt from a directory, and what was found on the way."""

    def __init__(self, directory):
        self.directory = directory
        self.snapshot_path = None
        self.snapshot_seq = None
        self.snapshots_rejected = []  # (path, why)
        self.words = None
        self.layout = None
        self.segments = []
        self.last_seq = None
        self.replayed = 0

    @property
    def torn(self):
        return [s for s in self.segments if s.torn_at is not None]


def recover(directory, *, apply=True):
    """Scan ``directory`` and rebuild its state (``apply=False``: check
    only, the state stays the snapshot's).  Raises JournalCorrupt /
    JournalError as the rules above say; changes no file."""
    directory = check_directory(directory)
    found = Recovery(directory)
    names = os.listdir(directory)
    snapshots = sorted((seq, name) for name in names if (seq := snapshot_seq(name)) is not None)
    for seq, name in reversed(snapshots):
        path = os.path.join(directory, name)
        try:
            found.snapshot_seq, found.words, found.layout = read_snapshot(path)
        except JournalCorrupt as error:
            found.snapshots_rejected.append((path, str(error)))
            continue
        if found.snapshot_seq != seq:
            raise JournalCorrupt(f"{path}: holds sequence number {found.snapshot_seq}, its name says {seq}")
        found.snapshot_path = path
        break
    if found.snapshot_path is None:
        why = "; ".join(reason for _, reason in found.snapshots_rejected) or "none there"
        raise JournalCorrupt(f"{directory!r}: no valid snapshot ({why})")
    arrays = _arrays(found)
    block_crc = layout_crc(found.words[:len(found.layout.header())])

    segments = sorted((seq, name) for name in names if (seq := segment_first_seq(name)) is not None)
    start = max((i for i, (seq, _) in enumerate(segments) if seq <= found.snapshot_seq + 1), default=None)
    if start is None:
        first = segments[0][0] if segments else None
        rejected = "".join(f"; rejected {reason}" for _, reason in found.snapshots_rejected)
        raise JournalError(f"{directory!r}: missing segment: the records after snapshot {found.snapshot_seq} "
                           f"are in no segment (" + (f"the oldest starts at {first})" if segments else
                                                      "there are none)") + rejected)
    for seq, name in segments[:start]:
        skipped = Segment(os.path.join(directory, name), seq)
        skipped.skipped = True
        found.segments.append(skipped)
    expected = None  # the next sequence number the chain needs
    last_index = len(segments) - 1
    for index in range(start, len(segments)):
        seq, name = segments[index]
        segment = Segment(os.path.join(directory, name), seq)
        found.segments.append(segment)
        if expected is not None and seq != expected:
            before = found.segments[-2]
            if before.ended_at is not None:  # its records stop early: damage there, not a missing segment
                raise _damaged(before.path, before.ended_at)
            if seq > expected:
                raise JournalError(f"{directory!r}: missing segment: records {expected}..{seq - 1} are in no "
                                   f"segment (between {found.segments[-2].name} and {name})")
            raise JournalCorrupt(f"{segment.path}: starts at record {seq}, but the segment before ends at "
                                 f"{expected - 1}")
        with open(segment.path, "rb") as f:
            data = f.read()
        segment.size = len(data)
        header = read_segment_header(data, segment.path)
        if header is None:
            if index == last_index and segment.size <= SEGMENT_HEADER.size:
                segment.torn_at = 0  # created by the call a crash cut short: nothing in it
                expected = seq
                continue
            raise JournalCorrupt(f"{segment.path} offset 0: damaged segment header")
        if header[1] != block_crc:
            raise JournalError(f"{segment.path}: journal of another inventory layout than the snapshot's")
        if header[0] != seq:
            raise JournalCorrupt(f"{segment.path} offset 0: header says it starts at record {header[0]}")
        offset = SEGMENT_HEADER.size
        next_seq = seq
        while offset < len(data):
            record = read_record(data, offset)
            if record is not None and record.seq < seq:
                record = None  # recycled: the first old record after this segment's own (writer._take_spare)
            if record is None:
                if not _any_nonzero(data, offset):
                    segment.free = len(data) - offset
                    break
                if index == last_index and not _written_after_synced(data, offset, next_seq):
                    segment.torn_at = offset
                    break
                if index < last_index:
                    # Not the newest: whatever follows its records (old
                    # records, room and page padding) ends it; the next
                    # segment must start right after, or this is damage.
                    segment.ended_at = offset
                    break
                raise _damaged(segment.path, offset)
            if record.seq != next_seq:
                raise JournalCorrupt(f"{segment.path} offset {offset}: record {record.seq} where record "
                                     f"{next_seq} belongs")
            if apply and record.seq > found.snapshot_seq:
                record.apply(arrays)
                found.replayed += 1
            segment.records += 1
            op = OPS.get(record.op, str(record.op))
            segment.ops[op] = segment.ops.get(op, 0) + 1
            next_seq += 1
            offset += record.size
        segment.valid_end = offset if segment.torn_at is None else segment.torn_at
        segment.last_seq = next_seq - 1
        expected = next_seq
    found.last_seq = max(found.snapshot_seq, expected - 1)
    return found


def _damaged(path, offset):
    return JournalCorrupt(f"{path} offset {offset}: damaged record (bad length, magic or checksum) before the "
                          f"end of the journal; refusing to open so no acknowledged order is lost silently")


def _written_after_synced(data, offset, seq):
    """Whether a valid record after ``offset`` was written once record
    ``seq`` (the damaged one at ``offset``) was on disk: then the damage is
    not a torn write."""
    return any(record.synced >= seq for record in valid_records_after(data, offset))


def _any_nonzero(data, offset):
    """Whether ``data[offset:]`` holds a byte other than zero (one SIMD pass)."""
    return bool(np.frombuffer(data, dtype=np.uint8, offset=offset).any())


def _arrays(found):
    """Named writable views into the snapshot's words."""
    return {name: found.words[at:at + n] for name, (at, n) in found.layout.offsets.items()}


def repair(found):
    """Cut the torn tail off the newest segment (or remove a segment whose
    header a crash cut short, and a last segment with no record), and the
    preallocated room off every segment, so new records follow the last
    good one and no file keeps unused room."""
    changed = False
    for segment in found.segments:
        if segment.torn_at == 0 or (segment is found.segments[-1] and segment.records == 0
                                    and not segment.skipped):
            os.unlink(segment.path)
            changed = True
        elif segment.torn_at is not None or segment.free:
            with open(segment.path, "r+b") as f:
                f.truncate(segment.valid_end)
                f.flush()
                os.fsync(f.fileno())
            changed = True
    if changed:
        fsync_directory(found.directory)
