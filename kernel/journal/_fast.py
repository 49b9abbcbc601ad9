"""Numba versions of the two hot loops of effect capture, for big calls.

Capturing a 10,000-order batch spends most of its time in hash probes
(numpy's vectorised probe makes several passes per step) and in finding
each vector's value range.  One compiled pass does each in a fraction of
that.  Used for vectors of at least ``MIN_SIZE`` elements when numba is
installed; :func:`kernel.tracking.probe` and numpy's ``min``/``max`` are the
reference and the fallback, and the tests compare them.  Nothing here
changes a record's bytes.
"""

import numpy as np

from .. import codes as spec

MIN_SIZE = 2048  # below this numpy is as fast, and a small call never imports numba
_compiled = None


def _compile():
    global _compiled
    if _compiled is None:
        try:
            from numba import njit
        except ImportError:
            _compiled = False
            return _compiled
        multiplier = np.uint64(spec.HASH_MULTIPLIER)

        @njit(cache=True, nogil=True)
        def probe(table, keys, id_mask, out):  # kernel.reference.find_order for each key
            mask = table.size - 1
            for i in range(keys.size):
                key = keys[i]
                slot = np.int64(((np.uint64(key) * multiplier) >> np.uint64(32)) & np.uint64(mask))
                while True:
                    word = table[slot]
                    if word == 0:
                        out[i] = -1
                        break
                    if word & id_mask == key:
                        out[i] = slot
                        break
                    slot = (slot + 1) & mask

        @njit(cache=True, nogil=True)
        def value_range(values):
            low = high = values[0]
            for v in values:
                if v < low:
                    low = v
                elif v > high:
                    high = v
            return low, high

        _compiled = (probe, value_range)
    return _compiled


def probe(table, keys, id_mask=-1):
    """:func:`kernel.tracking.probe`, compiled for big ``keys``."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    fast = _compile() if keys.size >= MIN_SIZE else False
    if not fast:
        from ..tracking import probe as numpy_probe
        return numpy_probe(table, keys, id_mask)
    out = np.empty(keys.size, dtype=np.int64)
    fast[0](table, keys, np.int64(id_mask), out)
    return out


def value_range(values):
    """``(min, max)`` of a non-empty int64 vector as Python ints, in one pass for big ones."""
    fast = _compile() if values.size >= MIN_SIZE else False
    if not fast:
        return int(values.min()), int(values.max())
    low, high = fast[1](values)
    return int(low), int(high)
