"""Snapshots: the whole state block and the last sequence number it holds.

File ``snap-<seq, 20 digits>.snap``: ``SNAPSHOT_HEADER`` (64 bytes: magic,
format, layout version, seq, block bytes, block CRC-32, header CRC-32), then
the block (its own header included, so :meth:`kernel.state.Layout.read`
checks it as it checks a shared segment).  Written to a temporary name
(the writer's own: ``snap-<seq>.snap.<pid>-<n>.tmp``),
fsynced, renamed, and the directory fsynced: a crash leaves the old
snapshot or the new one, never half of one.
"""

import os
import re
import itertools
import struct

import numpy as np

from ..state import LAYOUT_VERSION, Layout
from .records import FORMAT_VERSION, READABLE_FORMATS, JournalCorrupt, JournalError, crc32, write_new_file

SNAPSHOT_MAGIC = b"D11SNAP\0"
SNAPSHOT_HEADER = struct.Struct("<8sIIQQII24x")
_NAME = re.compile(r"^snap-(\d{20})\.snap$")
_WRITES = itertools.count()  # numbers this process's temporary snapshot files
_TEMPORARY = re.compile(r"^snap-\d{20}\.snap\.(\d+)-\d+\.tmp$")


def snapshot_name(seq):
    return f"snap-{seq:020d}.snap"


def snapshot_seq(name):
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def abandoned_temporaries(directory):
    """Names of temporary snapshot files whose writer process is gone (it
    died while writing: a shared journal's worker SIGKILLed during a
    checkpoint); open_durable removes every one, but a shared journal may
    never be opened from disk again while its processes come and go."""
    names = []
    for name in os.listdir(directory):
        match = _TEMPORARY.match(name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            names.append(name)
        except OSError:
            pass  # (alive, another user's: not ours to judge)
    return names


def write_snapshot(directory, words, seq):
    """Write ``words`` (a whole state block, not changing meanwhile: a copy,
    or the live block with the call lock held) as the snapshot at ``seq``;
    return its path."""
    data = memoryview(np.ascontiguousarray(words)).cast("B")  # (no copy: the checkpoint made one)
    crc = crc32(data)
    head = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, FORMAT_VERSION, LAYOUT_VERSION, seq, len(data), crc, 0)
    head = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, FORMAT_VERSION, LAYOUT_VERSION, seq, len(data), crc,
                                crc32(head))
    path = os.path.join(directory, snapshot_name(seq))
    # A name of this writer's own: processes sharing a journal checkpoint
    # with the call lock released while they write, so two can write the
    # snapshot of one sequence number at once (the second had no new record
    # to wait for); one temporary file for both would be truncated by one
    # while the other renamed it.  (open_durable removes leftover *.tmp.)
    temporary = f"{path}.{os.getpid()}-{next(_WRITES)}.tmp"

    def fill(fd):
        for part in (head, data):
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    write_new_file(temporary, path, fill)
    return path


def read_snapshot(path):
    """``(seq, words, layout)`` of a snapshot file; JournalCorrupt when it
    fails its checks, JournalError when it is of another format or layout."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < SNAPSHOT_HEADER.size:
        raise JournalCorrupt(f"{path}: too short to be a snapshot ({len(data)} bytes)")
    magic, fmt, layout_version, seq, nbytes, crc, head_crc = SNAPSHOT_HEADER.unpack_from(data)
    check = crc32(SNAPSHOT_HEADER.pack(magic, fmt, layout_version, seq, nbytes, crc, 0))
    if magic != SNAPSHOT_MAGIC or check != head_crc:
        raise JournalCorrupt(f"{path}: not a snapshot, or its header is damaged")
    if fmt not in READABLE_FORMATS:
        raise JournalError(f"{path}: snapshot format version {fmt}, this kernel reads {FORMAT_VERSION}")
    if layout_version != LAYOUT_VERSION:
        raise JournalError(f"{path}: snapshot of layout version {layout_version}, this kernel reads "
                           f"{LAYOUT_VERSION}")
    body = data[SNAPSHOT_HEADER.size:]
    if len(body) != nbytes or nbytes % 8 or crc32(body) != crc:
        raise JournalCorrupt(f"{path}: the state block fails its checksum")
    words = np.frombuffer(bytearray(body), dtype=np.int64)  # writable: replay writes into it
    try:
        layout = Layout.read(body[:16 * 8], words.size, path)
    except ValueError as error:
        raise JournalError(str(error)) from None
    return seq, words, layout
