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
    kind INDEXED: vector index, then k vectors of values
    kind RANGE:   k vectors of values for words start .. start+count-1

Vector (frame of reference, so a record is about half the size of raw
int64s, which is what an fsync has to move)::

    i64 base  u8 width  7 pad bytes, then count values of ``width`` bytes
    (0: every value is ``base``; 1, 2, 4: unsigned offsets from ``base``;
    8: raw int64), padded to 8 bytes

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
from ._fast import value_range

FORMAT_VERSION = 1
RECORD_MAGIC = 0x31314552  # b"RE11"
RECORD_HEADER = struct.Struct("<IIQHHIq")
SECTION_HEADER = struct.Struct("<BB6Bqq")
VECTOR_HEADER = struct.Struct("<qB7x")
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32}
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


def _vector(values):
    """A vector's parts (header, packed values, padding): bytes-like objects
    the record joins once, so no part is copied on its own."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    if values.size <= 8:  # tiny (reserve_one): packing would cost more than it saves
        return [VECTOR_HEADER.pack(0, 8), values]
    low, high = value_range(values)
    span = high - low
    if span == 0:
        return [VECTOR_HEADER.pack(low, 0)]
    width = 1 if span < 1 << 8 else 2 if span < 1 << 16 else 4 if span < 1 << 32 else 8
    if width == 8:
        return [VECTOR_HEADER.pack(0, 8), values]
    data = (values - low).astype(_UNSIGNED[width])  # in [0, span]: no overflow
    return [VECTOR_HEADER.pack(low, width), data, bytes(-data.nbytes % 8)]


def _read_vector(data, at, count):
    base, width = VECTOR_HEADER.unpack_from(data, at)
    at += VECTOR_HEADER.size
    if width == 0:
        return np.full(count, base, dtype=np.int64), at
    if width == 8:
        return np.frombuffer(data, dtype=np.int64, count=count, offset=at), at + 8 * count
    if width not in _UNSIGNED:
        raise ValueError(f"vector width {width}")
    values = np.frombuffer(data, dtype=_UNSIGNED[width], count=count, offset=at).astype(np.int64) + base
    return values, at + width * count + (-width * count) % 8


class Effects:
    """A record's payload being built: sections of after-images."""

    def __init__(self):
        self.parts = []
        self.n_sections = 0

    def _section(self, kind, names, count, start):
        ids = [_ARRAY_ID[name] for name in names] + [0] * (MAX_ARRAYS_PER_SECTION - len(names))
        self.parts.append(SECTION_HEADER.pack(kind, len(names), *ids, count, start))
        self.n_sections += 1

    def indexed(self, names, index, arrays):
        """The words ``index`` of each array in ``names`` (their current
        values; an index may repeat)."""
        index = np.ascontiguousarray(index, dtype=np.int64)
        if index.size == 0:
            return
        self._section(INDEXED, names, index.size, 0)
        self.parts += _vector(index)
        for name in names:
            self.parts += _vector(arrays[name][index])

    def range(self, names, start, stop, arrays):
        """The words ``start:stop`` of each array in ``names``."""
        if stop <= start:
            return
        self._section(RANGE, names, stop - start, start)
        for name in names:
            self.parts += _vector(arrays[name][start:stop])


def encode(seq, op, effects, aux=0):
    """One record's bytes."""
    parts = effects.parts
    length = sum(memoryview(part).nbytes for part in parts)
    crc = zlib.crc32(RECORD_HEADER.pack(RECORD_MAGIC, length, seq, op, effects.n_sections, 0, aux))
    for part in parts:  # no copy of the payload just for its checksum
        crc = zlib.crc32(part, crc)
    return b"".join([RECORD_HEADER.pack(RECORD_MAGIC, length, seq, op, effects.n_sections, crc, aux), *parts])


class Record:
    __slots__ = ("seq", "op", "n_sections", "aux", "offset", "payload")

    def __init__(self, seq, op, n_sections, aux, offset, payload):
        self.seq, self.op, self.n_sections, self.aux, self.offset, self.payload = seq, op, n_sections, aux, offset, \
            payload

    @property
    def size(self):
        return RECORD_HEADER.size + len(self.payload)

    def sections(self):
        """``(kind, array names, count, start, index or None, [values per array])`` per section."""
        data, at = self.payload, 0
        for _ in range(self.n_sections):
            kind, k, *ids, count, start = SECTION_HEADER.unpack_from(data, at)
            at += SECTION_HEADER.size
            if kind not in (INDEXED, RANGE) or not 1 <= k <= MAX_ARRAYS_PER_SECTION or count < 0:
                raise ValueError("bad section header")
            index = None
            if kind == INDEXED:
                index, at = _read_vector(data, at, count)
            values = []
            for _ in range(k):
                vector, at = _read_vector(data, at, count)
                values.append(vector)
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
