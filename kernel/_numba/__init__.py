"""Numba backend: :mod:`.kernels` is the module the registry loads; it
re-exports the family modules (:mod:`.stock`, :mod:`.single`, :mod:`.general`,
:mod:`.tracked`, :mod:`.one`), which mirror :mod:`kernel.reference` module for
module, built on :mod:`.atomics` (CPU atomics) and dispatched by :mod:`._jit`.

Importing this package compiles nothing (every dispatcher is lazy and cached
on disk), but it does settle two process-wide Numba settings that must be
fixed before numba is first imported / first runs a parallel kernel:

* ``NUMBA_NUM_THREADS`` defaults to ``max(os.cpu_count(), 8)``.  Numba sizes
  its thread pool once, from this variable, when it is imported; a caller
  can later *lower* the count per call (``numba.set_num_threads``) but never
  raise it.  Defaulting to at least 8 lets tests and callers ask for 8
  threads even on a 2-core box (oversubscribed, but correct, which is what
  the concurrency tests need).  A user-set value wins (``setdefault``).  If
  numba was already imported before this package we leave the environment
  alone: numba re-reads it before every compilation and refuses a changed
  ``NUMBA_NUM_THREADS`` once its pool is running, so setting it late would
  break compilation rather than grow the pool.
"""

import os
import sys

if "numba" not in sys.modules:
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(os.cpu_count() or 1, 8)))
