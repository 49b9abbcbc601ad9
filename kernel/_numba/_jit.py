"""The Numba backend's dispatch machinery, all of it, so that the family
modules (:mod:`.stock`, :mod:`.single`, :mod:`.general`, :mod:`.tracked`,
:mod:`.one`) stay plain loops (numbagg keeps its in one ``decorators.py`` for
the same reason).  Nothing here mirrors a reference function.

Two dispatchers per kernel
    Every batch kernel is written once, as a plain Python function using
    ``numba.prange``, and compiled lazily into two cached dispatchers
    (:func:`_dispatchers`): a parallel one (``parallel=True``; ``prange`` runs
    on the thread pool) and a serial one (``prange`` is plain ``range``).  The
    public names are small Python wrappers that pick one (:func:`_run`);
    nothing compiles at import time, and the on-disk cache means a second
    process loads machine code from ``__pycache__`` instead of compiling.

Threads
    ``n_threads > 1`` (and parallel allowed) runs the parallel dispatcher on
    ``min(n_threads, numba.config.NUMBA_NUM_THREADS)`` threads
    (``numba.set_num_threads`` is per calling thread, so concurrent callers do
    not disturb each other); otherwise the serial one runs.

Threading layer
    ``threadsafe`` (TBB, else OpenMP) unless the user set
    ``NUMBA_THREADING_LAYER``: Numba's fallback ``workqueue`` layer is not
    safe when several Python threads launch parallel kernels at once (these
    kernels release the GIL).  :func:`threading_layer` reports what loaded.

Fork safety
    GNU OpenMP's thread pool does not survive ``fork()`` (Numba aborts the
    child).  The facade handles it for every backend: in a child forked after
    a parallel kernel ran, :func:`kernel.backends.resolve_threads` passes
    ``n_threads=1``, so only the serial dispatchers run there.

Errors
    Kernels do not validate, and (as in kernels.pyx) do not check bounds:
    the facade passes only checked indices (batches are validated once, at
    construction), so an out-of-bounds index is a bug, not an input error
    (``atomics.py``, "Indices are not checked").  Under
    ``KERNEL_NUMBA_BOUNDSCHECK=1`` every access checks its index first and
    raises ``IndexError``.  Numba propagates an exception raised in a
    ``prange`` body only when it happens on the calling thread (as a
    ``SystemError`` caused by it, which :func:`_run` turns back into the
    ``IndexError``); one raised on a pool worker is lost (numba#9673,
    numba#6976), though memory is still never touched out of bounds.

The on-disk cache
    Numba's ``cache=True`` keys a function by its own file only, so a kernel
    would load stale machine code after an edit of a helper or a code it
    takes from another file; :func:`njit` installs
    :class:`BackendSourcesCache`, whose key covers every source file of the
    backend (the class says how).
"""

import fcntl
import hashlib
import os
import types as _pytypes
from pathlib import Path

import numba
import numba.core.cpu
import numpy as np
from numba.core.caching import FunctionCache

from .atomics import CHECK_BOUNDS

__all__ = ["threading_layer", "njit", "BackendSourcesCache", "CACHE_LOCK", "SOURCES_DIGEST", "backend_sources"]

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "threadsafe"

# How the batch kernels split their work into prange items (the families
# share these; the family-only sizes live in the family modules).
#
# Orders per prange work item.  Big enough that scheduling overhead and the
# run-coalescing boundary effects vanish, small enough to balance 2..8 threads
# on batches of ~100k orders and up.
_CHUNK = 16384
# The general path does far more work per order, so smaller chunks balance better.
_GENERAL_CHUNK = 1024
# Orders an ordered-path thread sifts at a time (kernels.pyx PART_BLOCK): its
# gathered indices and SKUs (16 KiB each) stay in L1 while it serves them.
_PART_BLOCK = 2048

# error_model="numpy": no ZeroDivisionError checks around ``%`` / ``//`` in
# the hot loops (no divisor here can be zero).  boundscheck=False explicitly;
# NUMBA_BOUNDSCHECK=1 in the environment still overrides it (numba's
# BaseContext.enable_boundscheck), but only for plain ``a[i]``: the hot loops
# index through atomics.py's accessors (intrinsics), which check only under
# KERNEL_NUMBA_BOUNDSCHECK.
#
# _nrt=False: no Numba runtime, so no reference counting at all.  With it,
# every array a helper takes is increfed/decrefed around the helper's body
# (out-of-line NRT_incref / NRT_decref calls, a locked add each, on refcount
# words every thread shares), and Numba's refcount pruning gives up on
# helpers whose loops exit early (line_available's ``break``s, take_order's
# ``return``s): take_order paid ~11 such calls per order, line_available 4
# per line, inlined or not.  Cython has no refcounts here; now neither do
# we.  The kernels only read and write caller-owned arrays (the ordered
# paths' gather buffers come from the wrapper, see _scratch), so they need
# no runtime.
# ``_nrt`` is an underscored (undocumented) Numba option: where a Numba
# release drops it, the kernels still compile, with the runtime, and only
# lose the speed described above.
_NO_RUNTIME = {"_nrt": False} if hasattr(numba.core.cpu.CPUTargetOptions, "_nrt") else {}
_jit = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False, **_NO_RUNTIME)
# Helpers called once per order are also inlined at the Numba IR level,
# so the per-order loop is one function, as in kernels.pyx.
#
# It is also what makes the first call slow: compiling the gate's cases
# (one thread, every family) took 105 s with it and 18.5 s with ``_inline``
# set to plain ``_jit`` (LLVM then decides), most of it the tracked chunk
# (``_claim_reserve_chunk`` and the chain it inlines: 35-48 s per
# serial dispatcher).  Without it the tracked kernels counted 22-83% more
# instructions (LLVM left the big helpers as calls, each passing a dozen
# arrays), so the IR inlining stays; the on-disk cache pays the compile once
# per install.  The one exception is ``general.take_cart``: as a plain
# call it counted 14% fewer instructions and ran 4-11% faster (general.py
# gives the interleaved figures), so it is compiled with ``_jit``.
_inline = dict(_jit, inline="always")


# ------------------------------------------------------------- on-disk cache

def backend_sources():
    """Every file the compiled kernels are built from: this package's
    modules and the shared codes (:mod:`kernel.codes`)."""
    package = Path(__file__).resolve().parent
    return sorted(package.glob("*.py")) + [package.parent / "codes.py"]


def _digest(paths):
    """sha256 over the names and contents of ``paths``, in order."""
    digest = hashlib.sha256()
    for path in paths:
        for part in (path.parent.name, path.name, path.read_bytes()):
            digest.update(part if isinstance(part, bytes) else part.encode())
            digest.update(b"\0")
    return digest.hexdigest()


# Read once, when the backend is imported: the dispatchers compile the code
# that was imported then, whatever happens to the files afterwards.  The
# bounds-check switch changes the machine code as an edit would, so it is in
# the key too.
SOURCES_DIGEST = _digest(backend_sources()) + ("+boundscheck" if CHECK_BOUNDS else "")


# The file, in each cache directory, whose lock serializes saves (BackendSourcesCache.save_overload).
CACHE_LOCK = "kernel-numba-cache.lock"


class BackendSourcesCache(FunctionCache):
    """Numba's on-disk function cache, with :data:`SOURCES_DIGEST` (a hash
    of the contents of every ``kernel/_numba/*.py`` and ``kernel/codes.py``)
    added to every index key.

    Why: numba 0.68 files a function's machine code under an index key of
    (signature, target, hash of the function's *own* bytecode and closure),
    in an index that is thrown away only when the function's *own* source
    file changes (its mtime and size: the index's "source stamp").  What the
    machine code also depends on is invisible to it: a helper of another
    module inlined at the IR level (``single._single_chunk`` inlines
    ``stock.take_exactly``) or compiled and linked into it, and a code of
    :mod:`kernel.codes` frozen into it as a constant.  Edit one of those and
    the kernel would go on loading its old machine code.  With the digest in
    the key, an edit of any backend source is a miss for every kernel (they
    recompile once and the cache holds the new code); an unchanged tree hits
    as before.

    A changed key adds an entry to the function's index rather than
    resetting it, so entries of older sources stay in the index (and their
    ``.nbc`` files on disk) until the function's own file changes: a few
    dead files per edit, in a development tree only.  ``_index_key`` is
    numba's private hook (numba-dpex and numba-cuda override it too); if a
    numba release renames it, the override is skipped and the cache goes
    back to numba's own, per-file key, which :mod:`tests.test_numba_cache`
    catches.
    """

    def _index_key(self, sig, codegen):
        return super()._index_key(sig, codegen) + (SOURCES_DIGEST,)

    def save_overload(self, sig, data):
        """Numba's save, holding an exclusive ``flock`` on
        :data:`CACHE_LOCK` in the cache directory.

        Why: numba saves an entry by reading the function's index, picking
        the first data-file name the index does not use, then writing the
        index and the data.  Two processes saving two different signatures
        of one function at once (service workers starting cold, a test run
        and its warm-up, :mod:`kernel.bench.warm`) both pick the same name:
        the index can end up naming, for one signature, the machine code of
        the other, which the next process loads and calls with the wrong
        argument types (numba#10128 reports the segfaults).  Saves are rare
        (once per kernel and signature) and short next to a compile, so they
        queue on the lock; loads take none (a load that finds an entry whose
        data is not written yet misses and compiles).  Where the lock file
        cannot be opened (a read-only cache numba still chose), the save
        goes on unlocked, as numba's own would.
        """
        try:
            self._impl.locator.ensure_cache_path()
            lock = open(os.path.join(self._cache_path, CACHE_LOCK), "ab")
        except OSError:
            return super().save_overload(sig, data)
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
            return super().save_overload(sig, data)


def njit(**options):
    """``numba.njit(**options)``, except that ``cache=True`` installs
    :class:`BackendSourcesCache` instead of numba's plain ``FunctionCache``.

    Every dispatcher of the backend is made here (the family modules use
    this, never ``numba.njit``), so every one gets the backend-wide key."""
    cache = options.pop("cache", False)

    def make_dispatcher(fn):
        dispatcher = numba.njit(**options)(fn)
        # What Dispatcher.enable_caching() does, with our cache class
        # (NUMBA_DISABLE_JIT hands back the plain function: nothing to cache).
        if cache and hasattr(dispatcher, "enable_caching"):
            dispatcher._cache = BackendSourcesCache(dispatcher.py_func)
        return dispatcher

    return make_dispatcher


# ------------------------------------------------------------- thread control

def threading_layer():
    """The Numba threading layer in use (``None`` until a parallel kernel ran)."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _threads(n_threads):
    """Threads to run on: 1 means use the serial dispatcher."""
    if n_threads > 1:
        return min(int(n_threads), numba.config.NUMBA_NUM_THREADS)
    return 1


def _run(par, ser, nt, args, dynamic=False):
    """Run ``par`` on ``nt`` threads, or ``ser`` when ``nt == 1``.

    ``dynamic``: hand the prange iterations (chunks of orders) out one at a
    time, like kernels.pyx's ``schedule='dynamic'``, instead of Numba's
    default static split into one block per thread: chunk cost varies (runs,
    sold-out SKUs), and on a shared machine a descheduled thread must not
    hold back half the batch.  The chunk size is per calling thread, so it is
    restored afterwards."""
    try:
        if nt > 1:
            numba.set_num_threads(nt)
            if not dynamic:
                return par(*args)
            old = numba.set_parallel_chunksize(1)
            try:
                return par(*args)
            finally:
                numba.set_parallel_chunksize(old)
        return ser(*args)
    except SystemError as exc:  # an IndexError raised inside a prange body
        if isinstance(exc.__cause__, IndexError):
            raise exc.__cause__ from None
        raise


def _scratch(nt):
    """Per-thread gather buffers for the ordered paths (rows ``[t, 0]`` and
    ``[t, 1]``, ``_PART_BLOCK`` int64 each): allocated here rather than with
    ``np.empty`` in the kernel, so the kernels need no NRT at all (see _jit)."""
    return np.empty((nt, 2, _PART_BLOCK), np.int64)


def _clone(fn, suffix):
    # The parallel and serial dispatchers need distinct functions: Numba's
    # on-disk cache is keyed by qualname + bytecode + signature, not by the
    # ``parallel`` flag, so sharing one function would let one variant load
    # the other's machine code.
    g = _pytypes.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    g.__module__ = fn.__module__
    g.__doc__ = fn.__doc__
    return g


def _dispatchers(fn):
    return (njit(parallel=True, **_jit)(_clone(fn, "_parallel")),
            njit(**_jit)(_clone(fn, "_serial")))

