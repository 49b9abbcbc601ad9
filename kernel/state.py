"""Where an inventory's state lives: one block of int64 words.

Every array the kernels touch (see :mod:`kernel.reference` for what each
holds) is a view into one block, laid out by :class:`Layout`.  The block is
private memory, a POSIX shared-memory segment, or a memory-mapped file; the
kernels cannot tell which, so processes that map the same segment reserve
from the same stock with the same lock-free CASes as threads do.

The block starts with a header (magic, layout version, sizes) so that a
process attaching to a segment can tell a kernel inventory from anything
else, and one of another layout from this one.  The magic is written last:
an attacher never sees a half-built block.
"""

import mmap
import os
import re
from collections import namedtuple

import numpy as np

from .codes import N_COUNTERS

__all__ = ["Layout", "Block", "STATE_ARRAYS", "STATE_NAMES", "StateArrays"]

MAGIC = int.from_bytes(b"D11KERNL", "little")
# 2: arrays in STATE_ARRAYS order (1 had the order table before the limit table).
LAYOUT_VERSION = 2
_HEADER = ("magic", "version", "total_words", "n_skus", "n_offers", "order_capacity", "limit_capacity",
           "fill_capacity", "tracked")
_HEADER_WORDS = 16  # room to grow; arrays start on the next cache line
_WORDS_PER_LINE = 8  # 64-byte cache lines: no array shares one with another

# The state arrays, in the one order used everywhere: the block's layout,
# Inventory.state_arrays(), the kernels' argument lists, the invariant checks
# and the TrackedState struct of kernel/_cython/kernels.pxd (tests/test_mirrors.py
# checks the struct against this tuple).  What each holds: kernel.reference.
STATE_ARRAYS = (
    ("stock", "n_offers"),
    ("price", "n_offers"),
    ("offer_start", "n_skus+1"),
    ("offer_by_priority", "n_offers"),
    ("offer_sku", "n_offers"),
    ("limit", "n_skus"),
    ("limit_key", "limit_capacity"),
    ("limit_count", "limit_capacity"),
    ("order_word", "order_capacity"),
    ("order_user", "order_capacity"),
    ("order_deadline", "order_capacity"),
    ("order_fill_start", "order_capacity"),
    ("order_fill_end", "order_capacity"),
    ("fill_offer", "fill_capacity"),
    ("fill_qty", "fill_capacity"),
    ("counters", "counters"),
)
STATE_NAMES = tuple(name for name, _ in STATE_ARRAYS)
# Inventory.state_arrays() returns one of these: a tuple (so ``*state`` passes
# the arrays positionally to a kernel) whose fields name them.
StateArrays = namedtuple("StateArrays", STATE_NAMES)


def _round_up(n, to):
    return -(-n // to) * to


class Layout:
    """Sizes and word offsets of every array in a block."""

    def __init__(self, n_skus, n_offers, order_capacity, limit_capacity, fill_capacity, tracked):
        self.sizes = {"n_skus": n_skus, "n_offers": n_offers, "order_capacity": order_capacity,
                      "limit_capacity": limit_capacity, "fill_capacity": fill_capacity, "tracked": int(tracked)}
        lengths = dict(self.sizes, **{"n_skus+1": n_skus + 1, "counters": N_COUNTERS})
        self.offsets = {}
        at = _HEADER_WORDS
        for name, key in STATE_ARRAYS:
            self.offsets[name] = (at, lengths[key])
            at = _round_up(at + lengths[key], _WORDS_PER_LINE)
        self.total_words = at

    @property
    def nbytes(self):
        return self.total_words * 8

    def header(self):
        values = dict(self.sizes, magic=MAGIC, version=LAYOUT_VERSION, total_words=self.total_words)
        return np.array([values[name] for name in _HEADER], dtype=np.int64)

    @classmethod
    def read(cls, header, n_words, where):
        """The layout a block's ``header`` (its first words, as bytes)
        describes, for a block of ``n_words``; ``ValueError`` naming
        ``where`` when the block is not a kernel inventory of this version."""
        if n_words < _HEADER_WORDS:
            raise ValueError(f"{where}: too small to be a kernel inventory ({n_words * 8} bytes)")
        head = dict(zip(_HEADER, np.frombuffer(header, dtype=np.int64, count=len(_HEADER)).tolist()))
        if head["magic"] != MAGIC:
            raise ValueError(f"{where}: not a kernel inventory (no magic number; foreign, or still being built)")
        if head["version"] != LAYOUT_VERSION:
            raise ValueError(f"{where}: layout version {head['version']}, this kernel reads {LAYOUT_VERSION}")
        layout = cls(head["n_skus"], head["n_offers"], head["order_capacity"], head["limit_capacity"],
                     head["fill_capacity"], head["tracked"])
        if layout.total_words != head["total_words"] or n_words < layout.total_words:
            raise ValueError(f"{where}: header and size disagree ({n_words * 8} bytes for a layout of "
                             f"{layout.nbytes})")
        return layout


_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def shm_path(name):
    """The POSIX shared-memory name for ``name`` (checked)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name: {name!r} must be 1-200 characters from A-Z a-z 0-9 _ . -")
    return "/" + name


def _shm():
    try:
        import _posixshmem  # CPython's shm_open / shm_unlink (what multiprocessing.shared_memory uses)
    except ImportError:
        raise OSError("shared inventories need POSIX shared memory (shm_open), which this platform lacks") from None
    return _posixshmem


def _create_exclusive(open_new, exists_message):
    """``open_new()`` (an O_EXCL open of a segment or file), with the error
    users see when the name is taken."""
    try:
        return open_new()
    except FileExistsError:
        raise FileExistsError(exists_message) from None


class Block:
    """One block of state: its words, its layout and the mapping behind it.

    ``kind`` is ``"private"``, ``"shared"`` (POSIX shared memory, ``where``
    is its name) or ``"file"`` (``where`` is the path).
    """

    def __init__(self, words, layout, kind, where, mapping=None):
        self.words = words
        self.layout = layout
        self.kind = kind
        self.where = where
        self._mapping = mapping

    def arrays(self):
        """The named views into the block, as a :data:`StateArrays`."""
        return StateArrays(*(self.words[at:at + n] for at, n in self.layout.offsets.values()))

    def prefault(self):
        """Touch every page now.  Fresh memory is mapped lazily: left alone,
        the first orders of a sale would each stop for a page fault (and
        the kernel zeroing a page) in the id table, the limit table and the
        fill log.  Writing zeros at creation moves that cost out of the
        sale (a memset, ~10 ms per 100 MB)."""
        self.words.fill(0)

    def publish(self):
        """Write the header, magic last: the block is now attachable."""
        header = self.layout.header()
        self.words[1:len(header)] = header[1:]
        self.words[0] = header[0]

    # --------------------------------------------------------------- creating
    @classmethod
    def private(cls, layout):
        return cls(np.zeros(layout.total_words, dtype=np.int64), layout, "private", None)

    @classmethod
    def create_shared(cls, name, layout):
        shm = _shm()
        path = shm_path(name)
        fd = _create_exclusive(lambda: shm.shm_open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600),
                               f"name: a shared segment {name!r} already exists (attach to it, or unlink it first)")
        return cls._map_new(fd, layout, "shared", name, on_error=lambda: shm.shm_unlink(path))

    @classmethod
    def create_file(cls, path, layout):
        path = os.fspath(path)
        fd = _create_exclusive(lambda: os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600),
                               f"path: {path!r} already exists (open it with Inventory.open_mapped, or remove it "
                               f"first)")
        return cls._map_new(fd, layout, "file", path, on_error=lambda: os.unlink(path))

    @classmethod
    def _map_new(cls, fd, layout, kind, where, on_error):
        try:
            os.ftruncate(fd, layout.nbytes)  # zero-filled: an empty state (see kernel.reference)
            mapping = mmap.mmap(fd, layout.nbytes)
        except BaseException:
            on_error()
            raise
        finally:
            os.close(fd)
        return cls(np.frombuffer(mapping, dtype=np.int64), layout, kind, where, mapping)

    # -------------------------------------------------------------- attaching
    @classmethod
    def attach_shared(cls, name):
        shm = _shm()
        try:
            fd = shm.shm_open(shm_path(name), os.O_RDWR, 0o600)
        except FileNotFoundError:
            raise FileNotFoundError(f"name: no shared inventory {name!r} (never created, or unlinked)") from None
        return cls._map_existing(fd, "shared", name, f"shared segment {name!r}")

    @classmethod
    def open_file(cls, path):
        path = os.fspath(path)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise FileNotFoundError(f"path: no such file {path!r}") from None
        return cls._map_existing(fd, "file", path, f"file {path!r}")

    @classmethod
    def _map_existing(cls, fd, kind, where, what):
        try:
            size = os.fstat(fd).st_size
            if size < _HEADER_WORDS * 8:
                raise ValueError(f"{what}: too small to be a kernel inventory ({size} bytes)")
            mapping = mmap.mmap(fd, size - size % 8)
        finally:
            os.close(fd)
        try:
            # A copy of the header: no view of the mapping exists until it is
            # known good, so a bad one can be unmapped at once.
            layout = Layout.read(mapping[:_HEADER_WORDS * 8], len(mapping) // 8, what)
        except ValueError:
            mapping.close()
            raise
        return cls(np.frombuffer(mapping, dtype=np.int64), layout, kind, where, mapping)

    # ---------------------------------------------------------------- closing
    def flush(self):
        """Write a file-backed block's pages to disk (``msync``)."""
        if self._mapping is not None:
            self._mapping.flush()

    def close(self):
        """Drop this process's mapping.  Views handed out earlier keep the
        pages mapped until they are garbage (numpy holds the mapping)."""
        self.words = None
        mapping, self._mapping = self._mapping, None
        if mapping is not None:
            try:
                mapping.close()
            except BufferError:
                pass  # a live view still uses it; it unmaps when that view goes

    def unlink(self):
        """Remove the segment's name or the file (mappings stay valid)."""
        if self.kind == "shared":
            try:
                _shm().shm_unlink(shm_path(self.where))
            except FileNotFoundError:
                pass
        elif self.kind == "file":
            try:
                os.unlink(self.where)
            except FileNotFoundError:
                pass
