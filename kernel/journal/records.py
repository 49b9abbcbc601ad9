"""The on-disk format: segment headers, records, and their checksums.

A record is the after-image of every state word one call changed, so replay
is a scatter of values into a state block: deterministic whatever the
concurrent kernels decided, and idempotent (:mod:`kernel.journal.effects`
says which words each call writes).

Record (all little-endian, 8-byte aligned, ``RECORD_HEADER.size`` = 32)::

    u32 magic  u32 payload_len  u64 seq  u16 op  u16 n_sections  u32 crc  i64 aux
    payload: n_sections sections

``crc`` is CRC-32 over the header (with ``crc`` = 0) and the payload; ``aux``
is informational (the number of orders, or ``now`` of an expire).

Section (``SECTION_HEADER.size`` = 24)::

    u8 kind  u8 k  u8 array[6]  i64 count  i64 start
    kind INDEXED: i64 index[count], then i64 values[k][count]
    kind RANGE:   i64 values[k][count] for words start .. start+count-1

``array`` holds up to six indexes into :data:`kernel.state.STATE_NAMES`; the
``k`` arrays of one section share the index (one row of the order table is
one index and five values).

Segment file ``wal-<first seq, 20 digits>.seg``: ``SEGMENT_HEADER`` (64
bytes: magic, format, layout version, first seq, layout checksum, header
checksum), then records with consecutive sequence numbers.
"""

import os
import re
import struct
import zlib

import numpy as np

from ..state import LAYOUT_VERSION, STATE_NAMES

FORMAT_VERSION = 1
RECORD_MAGIC = 0x31314552  # b"RE11"
RECORD_HEADER = struct.Struct("<IIQHHIq")
SECTION_HEADER = struct.Struct("<BB6Bqq")
SEGMENT_MAGIC = b"D11WAL\0\0"
SEGMENT_HEADER = struct.Struct("<8sIIQII32x")  # magic, format, layout version, first seq, layout crc, crc
INDEXED, RANGE = 0, 1
MAX_ARRAYS_PER_SECTION = 6

# Operation codes (informational: replay does not look at them).
OPS = {1: "reserve", 2: "reserve_one", 3: "confirm", 4: "cancel", 5: "expire", 6: "recover", 7: "restock",
       8: "release"}
OP_CODES = {name: code for code, name in OPS.items()}

_SEGMENT_NAME = re.compile(r"^wal-(\d{20})\.seg$")
_ARRAY_ID = {name: i for i, name in enumerate(STATE_NAMES)}


class JournalError(RuntimeError):
    """The journal cannot be written or read as it should be."""


class JournalCorrupt(JournalError):
    """A journal or snapshot failed its checks where a crash cannot explain
    it (not at the tail of the newest segment): opening it would lose or
    invent acknowledged orders."""


def segment_name(first_seq):
    return f"wal-{first_seq:020d}.seg"


def segment_first_seq(name):
    """The first sequence number a segment file name promises, or None."""
    match = _SEGMENT_NAME.match(name)
    return int(match.group(1)) if match else None


def layout_crc(header_words):
    """Checksum of a state block's header words (magic, version, sizes):
    a journal belongs to one layout."""
    return zlib.crc32(np.ascontiguousarray(header_words, dtype=np.int64).tobytes())


def segment_header(first_seq, block_crc):
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, LAYOUT_VERSION, first_seq, block_crc, 0)
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, LAYOUT_VERSION, first_seq, block_crc,
                               zlib.crc32(head))


def read_segment_header(data, where):
    """``(first_seq, layout crc)`` of a segment's first bytes; ``None`` when
    they are too short or fail their checksum (a segment whose creation a
    crash cut short); JournalError for another format or layout version."""
    if len(data) < SEGMENT_HEADER.size:
        return None
    magic, fmt, layout, first, block_crc, crc = SEGMENT_HEADER.unpack_from(data)
    if zlib.crc32(SEGMENT_HEADER.pack(magic, fmt, layout, first, block_crc, 0)) != crc or magic != SEGMENT_MAGIC:
        return None
    if fmt != FORMAT_VERSION:
        raise JournalError(f"{where}: journal format version {fmt}, this kernel reads {FORMAT_VERSION}")
    if layout != LAYOUT_VERSION:
        raise JournalError(f"{where}: journal of layout version {layout}, this kernel reads {LAYOUT_VERSION}")
    return first, block_crc


class Effects:
    """A record's payload being built: sections of after-images."""

    def __init__(self):
        self.parts = []
        self.n_sections = 0

    def indexed(self, names, index, arrays):
        """The words ``index`` of each array in ``names`` (their current values)."""
        index = np.ascontiguousarray(index, dtype=np.int64)
        if index.size == 0:
            return
        ids = [_ARRAY_ID[name] for name in names] + [0] * (MAX_ARRAYS_PER_SECTION - len(names))
        self.parts.append(SECTION_HEADER.pack(INDEXED, len(names), *ids, index.size, 0))
        self.parts.append(index.tobytes())
        for name in names:
            self.parts.append(arrays[name][index].tobytes())
        self.n_sections += 1

    def range(self, names, start, stop, arrays):
        """The words ``start:stop`` of each array in ``names``."""
        if stop <= start:
            return
        ids = [_ARRAY_ID[name] for name in names] + [0] * (MAX_ARRAYS_PER_SECTION - len(names))
        self.parts.append(SECTION_HEADER.pack(RANGE, len(names), *ids, stop - start, start))
        for name in names:
            self.parts.append(arrays[name][start:stop].tobytes())
        self.n_sections += 1


def encode(seq, op, effects, aux=0):
    """One record's bytes."""
    payload = b"".join(effects.parts)
    head = RECORD_HEADER.pack(RECORD_MAGIC, len(payload), seq, op, effects.n_sections, 0, aux)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return RECORD_HEADER.pack(RECORD_MAGIC, len(payload), seq, op, effects.n_sections, crc, aux) + payload


class Record:
    __slots__ = ("seq", "op", "n_sections", "aux", "offset", "payload")

    def __init__(self, seq, op, n_sections, aux, offset, payload):
        self.seq, self.op, self.n_sections, self.aux, self.offset, self.payload = seq, op, n_sections, aux, offset, \
            payload

    @property
    def size(self):
        return RECORD_HEADER.size + len(self.payload)

    def sections(self):
        """``(kind, array names, count, start, index or None, values[k][count])`` per section."""
        data, at = self.payload, 0
        for _ in range(self.n_sections):
            kind, k, *ids, count, start = SECTION_HEADER.unpack_from(data, at)
            at += SECTION_HEADER.size
            index = None
            if kind == INDEXED:
                index = np.frombuffer(data, dtype=np.int64, count=count, offset=at)
                at += 8 * count
            values = np.frombuffer(data, dtype=np.int64, count=k * count, offset=at).reshape(k, count)
            at += 8 * k * count
            yield kind, [STATE_NAMES[i] for i in ids[:k]], count, start, index, values

    def apply(self, arrays):
        """Write the after-images into ``arrays`` (name -> int64 view)."""
        for kind, names, count, start, index, values in self.sections():
            for name, vals in zip(names, values):
                if kind == INDEXED:
                    arrays[name][index] = vals
                else:
                    arrays[name][start:start + count] = vals


def read_record(data, offset):
    """The valid record at ``offset`` of ``data``, or None (torn, zeroed,
    flipped: anything that fails its length, magic or checksum)."""
    if offset + RECORD_HEADER.size > len(data):
        return None
    magic, length, seq, op, n_sections, crc, aux = RECORD_HEADER.unpack_from(data, offset)
    if magic != RECORD_MAGIC or length % 8 or offset + RECORD_HEADER.size + length > len(data):
        return None
    payload = bytes(data[offset + RECORD_HEADER.size:offset + RECORD_HEADER.size + length])
    head = RECORD_HEADER.pack(magic, length, seq, op, n_sections, 0, aux)
    if zlib.crc32(payload, zlib.crc32(head)) != crc:
        return None
    record = Record(seq, op, n_sections, aux, offset, payload)
    try:
        for _ in record.sections():  # a checksummed payload parses, unless written by another program
            pass
    except (struct.error, ValueError, IndexError):
        return None
    return record


def next_valid_record(data, offset):
    """The first offset after ``offset`` (8-aligned) where a valid record
    starts, or None: tells corruption in the middle of a segment from a torn
    tail."""
    words = np.frombuffer(data, dtype=np.uint32, count=(len(data) // 8) * 2)
    starts = np.flatnonzero(words[0::2] == RECORD_MAGIC) * 8
    for at in starts[starts > offset]:
        if read_record(data, int(at)) is not None:
            return int(at)
    return None


def fsync_directory(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
