"""The on-disk format: segment headers, records, and their checksums.

A record is the after-image of every state word one call changed (and, for
a tracked reserve, the stock decrement its fill-log range implies), so replay
is a scatter of values into a state block: deterministic whatever the
concurrent kernels decided (:mod:`kernel.journal.effects` says which words
each call writes).

Record (all little-endian, 8-byte aligned, ``RECORD_HEADER.size`` = 40)::

    u32 magic  u32 payload_len  u64 seq  u16 op  u16 n_sections  u32 crc  i64 aux  i64 synced
    payload: n_sections sections

``crc`` is CRC-32 over the header (with ``crc`` = 0) and the payload; ``aux``
is informational (the number of orders, or ``now`` of an expire).
``synced``: every record up to this sequence number reaches the disk
before this one can.  An append (the file grows) writes ``seq - 1``: the
filesystem keeps appended data in order.  A write into preallocated room
(:mod:`kernel.journal.writer`) writes the last record known synced when it
was made: the pages of one unsynced group may reach the disk in any order,
and this is how recovery tells such a torn group from damage to a record
that was on disk (:mod:`kernel.journal.recovery`).

Section (``SECTION_HEADER.size`` = 24)::

    u8 kind  u8 k  u8 array[6]  i64 count  i64 start
    kind INDEXED:  vector index, then k vectors of values
    kind RANGE:    k vectors of values for words start .. start+count-1
    kind ROWS:     one array (array[0]) of rows of array[1] words; then
                   ``FIELDS`` (16 bytes: k pairs u8 word, u8 shift), the
                   vector of row numbers, and k vectors of field values
                   (a word byte with ``ADD`` (0x80) set: that word's one
                   field is added to it, not stored; repeats add up)
    kind SUBTRACT: no payload; array[0][array[1][i]] -= array[2][i] for
                   i in start .. start+count-1, read from the state as the
                   earlier sections of this record left it (repeats add up)

A ROWS section is an after-image of whole rows stored column by column, and
a word may be split into bit fields (a field at ``shift`` holds the bits
from ``shift`` up to the next field's shift of that word; the top field
keeps the sign): an order word ``state << 56 | id`` packs as a 1-byte state
and a 2-4-byte id instead of 8 bytes, since each column gets its own frame
of reference.  The fields of a word must start at bit 0.

A tracked reserve's (user, SKU) pair rows store the key and add the cap
count's change (format 4): the change is what the call's accepted lines
counted, which the facade knows from the batch, where an after-image of the
count is a random load from the limit table per line.

SUBTRACT and ADD fields are the parts that are not after-images: a tracked reserve's
stock decrement is exactly what its fill-log range took (each take is
logged, a give-back zeroes its entry first), so the record carries the range
once instead of the touched offers' stock.  Such a record must be applied
exactly once: replay applies only records after the snapshot's sequence
number, each once, in sequence order (``recovery``), so that holds.

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
checksum), then records with consecutive sequence numbers; then, in a
recycled segment, the old records it held before (numbered below its first
seq: the end of its records), or zeros (room).

``wal-spare.seg`` (:data:`SPARE_SEGMENT`): a segment a checkpoint made
unnecessary, kept to hold the records after the next checkpoint (a private
``"batch"`` journal recycles it, :mod:`kernel.journal.writer`).  Recovery
never reads it: whatever it holds is older than the snapshot.
"""

import functools
import os
import re
import struct

import numpy as np
from zlib_ng.zlib_ng import crc32  # zlib's CRC-32, folded with SIMD: see below

from ..state import LAYOUT_VERSION, STATE_NAMES
from ._fast import field_arrays, pack_rows, pack_vector, value_range

# 4: ROWS fields may add (ADD); 3: records say what was synced before them
# (2: ROWS and SUBTRACT sections; 1: after-images of single words only).  A
# format-3 journal is read as it is: it is format 4 without ADD fields.
FORMAT_VERSION = 4
READABLE_FORMATS = (3, 4)
RECORD_MAGIC = 0x31314552  # b"RE11"
RECORD_HEADER = struct.Struct("<IIQHHIqq")
SECTION_HEADER = struct.Struct("<BB6Bqq")
VECTOR_HEADER = struct.Struct("<qB7x")
FIELDS = struct.Struct("<16B")  # ROWS: up to 8 (word, shift) pairs, zero-padded
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32}
SEGMENT_MAGIC = b"D11WAL\0\0"
SEGMENT_HEADER = struct.Struct("<8sIIQII32x")  # magic, format, layout version, first seq, layout crc, crc
INDEXED, RANGE, ROWS, SUBTRACT = 0, 1, 2, 3
MAX_ARRAYS_PER_SECTION = 6
MAX_FIELDS = 8
ADD = 0x80  # ROWS: in a field's word byte, "add this field's values to the word"

# Operation codes (informational: replay does not look at them).
OPS = {1: "reserve", 2: "reserve_one", 3: "confirm", 4: "cancel", 5: "expire", 6: "recover", 7: "restock",
       8: "release"}
OP_CODES = {name: code for code, name in OPS.items()}

# Why zlib-ng's crc32 and not the standard library's: the same CRC-32 (the
# same polynomial and values; a journal written with either reads with
# either), about 8x faster.  A tracked reserve of 10,000 orders is a
# 270 KB record: zlib.crc32 took 41 us of it, zlib-ng's 4.8 (median of 200,
# the same parts).  On the lone "batch" caller's path every step is in
# turn, so that was ~4 ms per 1M orders; recovery and snapshots check
# whole files with it too.
_SEGMENT_NAME = re.compile(r"^wal-(\d{20})\.seg$")
_ARRAY_ID = {name: i for i, name in enumerate(STATE_NAMES)}


class JournalError(RuntimeError):
    """The journal cannot be written or read as it should be."""


class JournalCorrupt(JournalError):
    """A journal or snapshot failed its checks where a crash cannot explain
    it (not at the tail of the newest segment): opening it would lose or
    invent acknowledged orders."""


SPARE_SEGMENT = "wal-spare.seg"  # (not a segment name: recovery ignores it)


def segment_name(first_seq):
    return f"wal-{first_seq:020d}.seg"


def segment_first_seq(name):
    """The first sequence number a segment file name promises, or None."""
    match = _SEGMENT_NAME.match(name)
    return int(match.group(1)) if match else None


def layout_crc(header_words):
    """Checksum of a state block's header words (magic, version, sizes):
    a journal belongs to one layout."""
    return crc32(np.ascontiguousarray(header_words, dtype=np.int64).tobytes())


def segment_header(first_seq, block_crc):
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, LAYOUT_VERSION, first_seq, block_crc, 0)
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, LAYOUT_VERSION, first_seq, block_crc,
                               crc32(head))


def read_segment_header(data, where):
    """``(first_seq, layout crc)`` of a segment's first bytes; ``None`` when
    they are too short or fail their checksum (a segment whose creation a
    crash cut short); JournalError for another format or layout version."""
    if len(data) < SEGMENT_HEADER.size:
        return None
    magic, fmt, layout, first, block_crc, crc = SEGMENT_HEADER.unpack_from(data)
    if crc32(SEGMENT_HEADER.pack(magic, fmt, layout, first, block_crc, 0)) != crc or magic != SEGMENT_MAGIC:
        return None
    if fmt not in READABLE_FORMATS:
        raise JournalError(f"{where}: journal format version {fmt}, this kernel reads {FORMAT_VERSION}")
    if layout != LAYOUT_VERSION:
        raise JournalError(f"{where}: journal of layout version {layout}, this kernel reads {LAYOUT_VERSION}")
    return first, block_crc


# Vectors of up to this many values are stored raw (width 8): packing would
# cost more than it saves (reserve_one's sections, counters of one order).
_TINY = 8
_RAW = VECTOR_HEADER.pack(0, 8)


def _tiny_vector(values):
    """A vector of at most ``_TINY`` int64 values, raw, as one new ``bytes``
    (no view of the state: it may be written after the call lock)."""
    return _RAW + np.ascontiguousarray(values, dtype=np.int64).tobytes()


def _vector(values):
    """A vector's parts (header, packed values, padding): bytes-like objects,
    written with the record's other parts by one ``writev``, possibly after
    the call lock is released, so never a view of the live state."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    if values.size <= _TINY:
        return [_tiny_vector(values)]
    packed = pack_vector(values)  # big: the same bytes, compiled (a new buffer: no view of the state)
    if packed is not None:
        return [packed]
    low, high = value_range(values)
    span = high - low
    if span == 0:
        return [VECTOR_HEADER.pack(low, 0)]
    width = 1 if span < 1 << 8 else 2 if span < 1 << 16 else 4 if span < 1 << 32 else 8
    if width == 8:
        return [VECTOR_HEADER.pack(0, 8), values.copy()]  # (may be a view of the live state)
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


def _field_plan(fields):
    """``(word, shift, bits or None)`` per field of a ROWS section (``word``
    without its ``ADD`` bit; ``None``: the top field of its word, sign
    kept); ValueError unless every word's fields start at bit 0 and have
    distinct shifts below 64, and an added word is its own one field."""
    plan, by_word, added = [], {}, set()
    for word, shift in fields:
        by_word.setdefault(word & ~ADD, []).append(shift)
        if word & ADD:
            added.add(word & ~ADD)
    for word, shifts in by_word.items():
        if min(shifts) != 0 or len(set(shifts)) != len(shifts) or max(shifts) > 63:
            raise ValueError(f"ROWS fields of word {word}: shifts {shifts}")
        if word in added and len(shifts) != 1:
            raise ValueError(f"ROWS fields of word {word}: an added word must be one field")
    for word, shift in fields:
        above = [s for s in by_word[word & ~ADD] if s > shift]
        plan.append((word & ~ADD, shift, min(above) - shift if above else None))
    return plan


def _covers(fields, stride):
    """Whether the ROWS ``fields`` name every word of a row, and no other."""
    return sorted({word & ~ADD for word, _ in fields}) == list(range(stride))


@functools.lru_cache(maxsize=64)
def _rows_layout(stride, fields):
    """A ROWS layout's field plan, FIELDS bytes and the compiled packer's
    column arrays (:func:`kernel.journal._fast.field_arrays`), made once per
    layout: a tracked reserve's capture writes three ROWS sections of two
    layouts per call, and rebuilding these cost it ~30 us each time.
    ValueError unless the fields cover every word of a row."""
    if not _covers(fields, stride):
        raise ValueError(f"ROWS fields {list(fields)} do not cover a row of {stride} words")
    plan = tuple(_field_plan(fields))
    packed = FIELDS.pack(*[x for field in fields for x in field], *[0] * (16 - 2 * len(fields)))
    return plan, packed, field_arrays(plan)


class Effects:
    """A record's payload being built: sections of after-images.

    Two steps.  The section methods read the state and keep private copies
    of what they read (the gathered rows, the ranges, the indexes); they run
    under the call lock, right after the kernel, where the state is this
    record's after-image.  :meth:`pack` turns the copies into the record's
    bytes (frames of reference, the compiled column passes); :func:`encode`
    calls it, and a private ``"batch"`` journal encodes after the call lock
    is released, beside the next caller's kernel
    (:meth:`kernel.journal.writer.SegmentWriter.append`).
    """

    def __init__(self):
        self.parts = []       # bytes-like parts, and (until packed) callables returning lists of them
        self.n_sections = 0
        self._unpacked = False

    def _section(self, kind, k, ids, count, start):
        self.parts.append(_section_header(kind, k, ids, count, start))
        self.n_sections += 1

    def _later(self, make):
        """``make()`` returns parts: packed by :meth:`pack`, from copies only."""
        self.parts.append(make)
        self._unpacked = True

    def pack(self):
        """Turn the copies into bytes (idempotent; reads no state)."""
        if self._unpacked:
            parts = []
            for part in self.parts:
                if callable(part):
                    parts += part()
                else:
                    parts.append(part)
            self.parts, self._unpacked = parts, False
        return self

    def indexed(self, names, index, arrays):
        """The words ``index`` of each array in ``names`` (their current
        values; an index may repeat)."""
        index = _owned(index)
        if index.size == 0:
            return
        self._section(INDEXED, len(names), [_ARRAY_ID[name] for name in names], index.size, 0)
        values = [arrays[name][index] for name in names]  # fancy indexing: copies
        if index.size <= _TINY:
            self.parts.append(b"".join(_tiny_vector(vector) for vector in (index, *values)))
        else:
            self._later(lambda: [part for vector in (index, *values) for part in _vector(vector)])

    def range(self, names, start, stop, arrays):
        """The words ``start:stop`` of each array in ``names``."""
        if stop <= start:
            return
        self._section(RANGE, len(names), [_ARRAY_ID[name] for name in names], stop - start, start)
        if stop - start <= _TINY:
            self.parts.append(b"".join(_tiny_vector(arrays[name][start:stop]) for name in names))
            return
        values = [arrays[name][start:stop].copy() for name in names]  # a slice is a view of the live state
        self._later(lambda: [part for vector in values for part in _vector(vector)])

    def rows(self, name, stride, index, fields, arrays):
        """The whole rows ``index`` of ``name`` (rows of ``stride`` words),
        column by column: ``fields`` is ``(word, shift)`` per column and must
        cover every word of a row (each word's fields from bit 0).  A word
        with ``ADD`` set (one field, added at replay) needs its values given:
        :meth:`rows_later`."""
        index = _owned(index)
        if index.size == 0:
            return
        plan, packed_fields, columns = _rows_layout(stride, tuple((word, shift) for word, shift in fields))
        if any(word & ADD for word, _ in fields):
            raise ValueError("ROWS fields that add need their values given (Effects.rows_later)")
        self._section(ROWS, len(fields), [_ARRAY_ID[name], stride], index.size, 0)
        self.parts.append(packed_fields)
        # One gather of whole rows (a row is one cache line or less).  np.take
        # along axis 0 copies each row as one block: about 10x faster than
        # table[index] on a 2-D view, which goes element by element, and 3x
        # faster than a compiled gather loop for 10,000 random rows.
        rows = np.take(arrays[name].reshape(-1, stride), index, axis=0)
        self._later(lambda: _rows_parts(rows, index, plan, columns))

    def rows_later(self, name, stride, fields, make):
        """:meth:`rows` of rows the caller knows without reading the state,
        made by :meth:`pack`: ``make()`` returns ``(index, values)``
        (``values``: an ``(index.size, stride)`` int64 array; for an ``ADD``
        word, what to add) and must read no state; the section is left out
        if ``index`` is empty.  For rows worked out from copies the caller
        owns (a tracked reserve's, derived from its batch): after the call
        lock is released, beside the next call's kernel, leaving only the
        copies under the lock."""
        plan, packed_fields, columns = _rows_layout(stride, tuple((word, shift) for word, shift in fields))

        def parts():
            index, values = make()
            index = _owned(index)
            if index.size == 0:
                return []
            if values.shape != (index.size, stride) or values.dtype != np.int64:
                raise ValueError(f"ROWS values: shape {values.shape} {values.dtype}, expected ({index.size}, "
                                 f"{stride}) int64")
            self.n_sections += 1
            return [_section_header(ROWS, len(fields), [_ARRAY_ID[name], stride], index.size, 0), packed_fields,
                    *_rows_parts(values, index, plan, columns)]
        self._later(parts)

    def subtract(self, target, index_name, amount_name, start, stop):
        """Replay does ``target[index_name[i]] -= amount_name[i]`` for ``i`` in
        ``start:stop`` (values as replay has them by then)."""
        if stop <= start:
            return
        self._section(SUBTRACT, 3, [_ARRAY_ID[target], _ARRAY_ID[index_name], _ARRAY_ID[amount_name]],
                      stop - start, start)


def _section_header(kind, k, ids, count, start):
    return SECTION_HEADER.pack(kind, k, *ids, *[0] * (MAX_ARRAYS_PER_SECTION - len(ids)), count, start)


def _owned(index):
    """``index`` as int64 this record owns: packed after the call lock is
    released, it must not be a view of a buffer someone reuses (the facade's
    work arrays)."""
    index = np.ascontiguousarray(index, dtype=np.int64)
    return index.copy() if index.base is not None else index


def _rows_parts(rows, index, plan, columns):
    """A ROWS section's vectors (the row numbers, then one per field) of the
    gathered ``rows``."""
    packed = pack_rows(rows, index, columns)  # big sections: the same bytes, compiled
    if packed is not None:
        return [packed]
    parts = _vector(index)
    for word, shift, bits in plan:
        column = rows[:, word]
        if shift:
            column = column >> shift
        if bits is not None:
            column = column & ((1 << bits) - 1)
        parts += _vector(column)
    return parts


_JOIN_BELOW = 16 << 10  # payload bytes under which encode joins the parts


def encode(seq, op, effects, aux=0, synced=None):
    """One record as a list of bytes-like parts (header first), for one
    ``os.writev``: a big payload is never joined into one copy (a small one,
    under ``_JOIN_BELOW`` bytes, is: one part is cheaper).  ``synced``:
    see the module's docstring (default ``seq - 1``, an append's)."""
    parts = effects.pack().parts
    synced = seq - 1 if synced is None else synced
    length = sum(memoryview(part).nbytes for part in parts)
    if length <= _JOIN_BELOW:
        # A small record (reserve_one, a confirm of a few ids): one joined
        # payload, one checksum call, one buffer for writev, where a part
        # each cost ~1 us of Python per part and step.
        parts = [b"".join(parts)]
    crc = crc32(RECORD_HEADER.pack(RECORD_MAGIC, length, seq, op, effects.n_sections, 0, aux, synced))
    for part in parts:  # no copy of a big payload just for its checksum
        crc = crc32(part, crc)
    return [RECORD_HEADER.pack(RECORD_MAGIC, length, seq, op, effects.n_sections, crc, aux, synced), *parts]


def encoded_size(parts):
    return sum(memoryview(part).nbytes for part in parts)


class Record:
    __slots__ = ("seq", "op", "n_sections", "aux", "synced", "offset", "payload")

    def __init__(self, seq, op, n_sections, aux, synced, offset, payload):
        self.seq, self.op, self.n_sections, self.aux, self.synced = seq, op, n_sections, aux, synced
        self.offset, self.payload = offset, payload

    @property
    def size(self):
        return RECORD_HEADER.size + len(self.payload)

    def sections(self):
        """``(kind, array names, count, start, index or None, [values per
        array or field], fields or None)`` per section (ROWS: ``names`` is
        ``[array]`` and ``start`` the row stride)."""
        data, at = self.payload, 0
        for _ in range(self.n_sections):
            kind, k, *ids, count, start = SECTION_HEADER.unpack_from(data, at)
            at += SECTION_HEADER.size
            if count < 0:
                raise ValueError("bad section header")
            index, values, fields = None, [], None
            if kind in (INDEXED, RANGE):
                if not 1 <= k <= MAX_ARRAYS_PER_SECTION:
                    raise ValueError("bad section header")
                names = [STATE_NAMES[i] for i in ids[:k]]
                if kind == INDEXED:
                    index, at = _read_vector(data, at, count)
                for _ in range(k):
                    vector, at = _read_vector(data, at, count)
                    values.append(vector)
            elif kind == ROWS:
                stride = ids[1]
                if not 1 <= k <= MAX_FIELDS or stride < 1:
                    raise ValueError("bad section header")
                pairs = FIELDS.unpack_from(data, at)
                at += FIELDS.size
                fields = [(pairs[2 * i], pairs[2 * i + 1]) for i in range(k)]
                if not _covers(fields, stride):
                    raise ValueError("bad ROWS fields")
                _field_plan(fields)  # ValueError when the fields do not tile the words
                names, start = [STATE_NAMES[ids[0]]], stride
                index, at = _read_vector(data, at, count)
                for _ in range(k):
                    vector, at = _read_vector(data, at, count)
                    values.append(vector)
            elif kind == SUBTRACT:
                if k != 3:
                    raise ValueError("bad section header")
                names = [STATE_NAMES[i] for i in ids[:3]]
            else:
                raise ValueError("bad section header")
            yield kind, names, count, start, index, values, fields

    def apply(self, arrays):
        """Write the after-images into ``arrays`` (name -> int64 view)."""
        for kind, names, count, start, index, values, fields in self.sections():
            if kind == INDEXED:
                for name, vals in zip(names, values):
                    arrays[name][index] = vals
            elif kind == RANGE:
                for name, vals in zip(names, values):
                    arrays[name][start:start + count] = vals
            elif kind == ROWS:
                words = {}
                base = index * start  # start: the stride
                target = arrays[names[0]]
                for (word, shift), vals in zip(fields, values):
                    if word & ADD:  # the word's one field (_field_plan): added, repeats add up
                        np.add.at(target, base + (word & ~ADD), vals)
                        continue
                    part = vals << shift if shift else vals
                    words[word] = part if word not in words else words[word] | part
                for word, vals in words.items():
                    target[base + word] = vals
            else:  # SUBTRACT
                target, by, amount = (arrays[name] for name in names)
                np.subtract.at(target, by[start:start + count], amount[start:start + count])


def read_record(data, offset):
    """The valid record at ``offset`` of ``data``, or None (torn, zeroed,
    flipped: anything that fails its length, magic or checksum)."""
    if offset + RECORD_HEADER.size > len(data):
        return None
    magic, length, seq, op, n_sections, crc, aux, synced = RECORD_HEADER.unpack_from(data, offset)
    if magic != RECORD_MAGIC or length % 8 or offset + RECORD_HEADER.size + length > len(data):
        return None
    payload = bytes(data[offset + RECORD_HEADER.size:offset + RECORD_HEADER.size + length])
    head = RECORD_HEADER.pack(magic, length, seq, op, n_sections, 0, aux, synced)
    if crc32(payload, crc32(head)) != crc:
        return None
    record = Record(seq, op, n_sections, aux, synced, offset, payload)
    try:
        for _ in record.sections():  # a checksummed payload parses, unless written by another program
            pass
    except (struct.error, ValueError, IndexError):
        return None
    return record


def valid_records_after(data, offset):
    """Every valid record starting after ``offset`` (8-aligned), in order:
    tells corruption in the middle of a segment from a torn tail."""
    words = np.frombuffer(data, dtype=np.uint32, count=(len(data) // 8) * 2)
    starts = np.flatnonzero(words[0::2] == RECORD_MAGIC) * 8
    for at in starts[starts > offset]:
        if (record := read_record(data, int(at))) is not None:
            yield record


def fsync_directory(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(temporary, path, fill):
    """Create ``temporary``, let ``fill(fd)`` write it and sync it, rename it
    to ``path`` and sync the directory: a crash leaves the old ``path`` or
    the whole new one.  Any failure before the rename removes ``temporary``
    (after a full disk, the part written would keep its blocks for as long as
    this process lives) and re-raises."""
    fd = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        try:
            fill(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    fsync_directory(os.path.dirname(path))
