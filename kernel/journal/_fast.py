"""Numba versions of the hot loops of effect capture, for big calls.

Capturing a 10,000-order batch spent much of its time in hash probes
(numpy's vectorised probe makes several passes per step) and in packing
ROWS sections (per column a shift, a mask, a min, a max, a subtract and a
cast); one compiled pass does each in a fraction of that.  Measured per
tracked reserve of 10,000 orders on the 2-core VM: capture 0.45 ms with
numpy, 0.36 ms compiled.  (Each vector's value range is numpy's ``min`` and
``max``: see :func:`value_range`.)  Used for at least ``MIN_SIZE`` keys;
:func:`kernel.tracking.probe` and :class:`~kernel.journal.records.Effects`
are the reference and the small-call path, and the tests compare them byte
for byte.  Nothing here changes a record's bytes.  (A tracked reserve's pair
probe, once here too, is gone: the kernels report the pair slots.)  A
tracked reserve's order and pair rows are derived from its batch and report
(:func:`order_rows`, :func:`pair_rows`) in two compiled passes each, where
numpy made about fifteen masked selections and column stores per call: more
time than the gathers of the rows they replace.

Tried and not kept: packing those sections straight from the batch and the
report, each column made from the batch's arrays (no rows matrix, no second
pass over it).  Measured in the lone "batch" caller's profile (1M uniform
tracked orders, batches of 10,000): 13 + 9 ms for the order and pair
sections, against 6 + 3 ms for the two row passes plus 12-14 ms of
:func:`pack_rows`: no gain.  The rows matrix is cheap (one 320 KB sequential
write); the column passes are what costs, and they cost the same either
way.  The first version, one pass per row splitting it into every column
with the ranges kept in arrays, took 44 + 38 ms: LLVM keeps neither the row
nor the ranges in registers there.

Why the columns' passes cost what they did, and what is done instead: a
column pass that kept the value range as it went (``lo = min(lo, v)``,
``hi = max(hi, v)`` beside the extraction) is a loop-carried select per
value, never vectorized: ~1 ns a value.  Split into an extraction loop and
then a min loop and a max loop over the contiguous column, LLVM vectorizes
the ranges (vpminsq / vpmaxsq) and the extraction of rows given word by
word: the 7 column ranges of a 10,000-order section take ~6 us that way.
Measured alone (medians of 400, the VM busy), deriving and packing a
10,000-order accepted section took 108-113 us before and 63-96 us now.  So the derived rows are made word by word
(:func:`order_rows`, :func:`pair_rows`: (stride, n) arrays, handed on as
their (n, stride) transposes), :func:`pack_rows` packs those with
``rows_vectors_by_word``, and every big vector is packed by one compiled
``pack_column`` (:func:`pack_vector`: the fill-log range, where numpy's
min, max, subtract and cast took ~11 us a vector).  In the lone caller's
profile above, per 1M orders: ``pack_rows`` 11-12 -> 7.5-9.5 ms, the
fill-log and counter vectors 4.1-4.6 -> 1.7-2.4 ms (``--scale 0.1``,
``kernel.journal`` bench case, 3 runs each).

The ROWS packers then extracted every field into one (fields + 1, n)
matrix before packing any: 560 KB for a 10,000-order section, written and
read back twice, right after a kernel that has flushed the caches.  Now
each field goes into one reused column (80 KB, it stays in L2 for its
range and its bytes) and is packed at once, into room sized for the widest
width (only what is packed is written; the section is a view of it).
Measured inside durable reserves (1M uniform tracked orders, batches of
10,000, old and new alternating batch by batch, 3 rounds, 290 calls each):
``rows_vectors_by_word`` 71 -> 50 us a call (median; p90 206 -> 94 us),
two calls per reserve: about 2% of a durable reserve.  Run alone on a hot
cache (the same 10,000-row section, 400 interleaved calls each): 47 -> 35 us.
"""

import numpy as np

from .. import codes as spec
from ..reference.tracked import hash_slot

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
        def vector_width(n, low, high):
            # records._vector's choice (the span as unsigned: no overflow).
            if n <= 8:
                return 8
            span = np.uint64(high) - np.uint64(low)
            if span == 0:
                return 0
            if span < np.uint64(1 << 8):
                return 1
            if span < np.uint64(1 << 16):
                return 2
            if span < np.uint64(1 << 32):
                return 4
            return 8

        @njit(cache=True, nogil=True)
        def put_vector(out, at, values, low, width):
            # One vector (records.VECTOR_HEADER, then its values) at out[at:];
            # returns where the next one starts.  Headers and data are
            # multiples of 8 bytes, so every view below is aligned.
            n = values.size
            base = np.uint64(0) if width == 8 else np.uint64(low)
            for b in range(8):
                out[at + b] = np.uint8((base >> np.uint64(8 * b)) & np.uint64(0xFF))
                out[at + 8 + b] = 0
            out[at + 8] = np.uint8(width)
            at += 16
            if width == 0:
                return at
            size = ((width * n + 7) // 8) * 8
            data = out[at:at + size]
            data[:] = 0
            if width == 1:
                for i in range(n):
                    data[i] = np.uint8(np.uint64(values[i]) - base)
            elif width == 2:
                view = data.view(np.uint16)
                for i in range(n):
                    view[i] = np.uint16(np.uint64(values[i]) - base)
            elif width == 4:
                view = data.view(np.uint32)
                for i in range(n):
                    view[i] = np.uint32(np.uint64(values[i]) - base)
            else:
                view = data.view(np.int64)
                for i in range(n):
                    view[i] = values[i]
            return at + size

        @njit(cache=True, nogil=True)
        def put_column(out, at, column):
            # One vector of ``column`` at out[at:] (its range, its width,
            # its bytes); returns where the next one starts.  The range is
            # two passes over the contiguous values with nothing else in the
            # loop: LLVM vectorizes them (vpminsq / vpmaxsq), ~0.1 ns a
            # value, where a range kept while the column was being extracted
            # took ~1 ns (a loop-carried select per value; see the module's
            # docstring for the numbers).
            n = column.size
            lo = np.iinfo(np.int64).max
            for i in range(n):
                lo = min(lo, column[i])
            hi = np.iinfo(np.int64).min
            for i in range(n):
                hi = max(hi, column[i])
            return put_vector(out, at, column, lo, vector_width(n, lo, hi))

        @njit(cache=True, nogil=True)
        def pack_column(values):
            # One vector of a contiguous int64 array as one buffer (a view
            # of room sized for the widest width).
            out = np.empty(16 + 8 * values.size, dtype=np.uint8)
            return out[:put_column(out, 0, values)]

        @njit(cache=True, nogil=True)
        def fields_out(n, k):
            # Room for the row numbers and k fields at the widest width
            # (8 bytes a value); the section is out[:end] of it.  Untouched
            # room costs nothing: only what is packed is written.
            return np.empty((k + 1) * (16 + 8 * n), dtype=np.uint8)

        @njit(cache=True, nogil=True)
        def rows_vectors(rows, index, words, shifts, masks):
            # records.Effects.rows' vectors (the row numbers, then one per
            # field of the gathered ``rows``, an (n, stride) C array): each
            # field extracted into one reused column, then packed (see
            # rows_vectors_by_word for why not all columns first).
            n = index.size
            k = words.size
            out = fields_out(n, k)
            at = put_column(out, 0, index)
            column = np.empty(n, dtype=np.int64)
            for j in range(k):
                word, shift, field_mask = words[j], shifts[j], masks[j]
                for i in range(n):
                    column[i] = (rows[i, word] >> shift) & field_mask
                at = put_column(out, at, column)
            return out[:at]

        @njit(cache=True, nogil=True)
        def rows_vectors_by_word(by_word, index, words, shifts, masks):
            # rows_vectors of rows given word by word (``by_word``: a C
            # (stride, n) array, row i's word w at [w, i]), as the derived
            # rows of a tracked reserve are: each field's extraction reads
            # one contiguous word array, and LLVM vectorizes it.
            # One field at a time into one reused column (80 KB for 10,000
            # rows: it stays in L2 for its range and its packing), where
            # every column extracted first filled a (fields + 1, n) matrix
            # (560 KB) that the packing then read back from further out:
            # measured inside a durable reserve of 10,000 orders, right
            # after the kernel, the order section took ~130 us that way
            # against ~50 us run alone (module docstring: the figures now).
            n = index.size
            k = words.size
            out = fields_out(n, k)
            at = put_column(out, 0, index)
            column = np.empty(n, dtype=np.int64)
            for j in range(k):
                source = by_word[words[j]]
                shift, field_mask = shifts[j], masks[j]
                for i in range(n):
                    column[i] = (source[i] >> shift) & field_mask
                at = put_column(out, at, column)
            return out[:at]

        accepted, out_of_stock, limit_exceeded = spec.ACCEPTED, spec.OUT_OF_STOCK, spec.LIMIT_EXCEEDED
        held_word = np.int64(spec.HELD) << np.int64(spec.STATE_SHIFT)
        refused_word = np.int64(spec.REFUSED) << np.int64(spec.STATE_SHIFT)
        word_at, user_at, deadline_at, fills_at = (spec.ORDER_WORD_AT, spec.ORDER_USER_AT, spec.ORDER_DEADLINE_AT,
                                                   spec.ORDER_FILLS_AT)
        key_at, count_at = spec.PAIR_KEY_AT, spec.PAIR_COUNT_AT
        order_stride, pair_stride = spec.ORDER_STRIDE, spec.PAIR_STRIDE

        @njit(cache=True, nogil=True)
        def order_rows(order_slot, status, order_id, user_id, deadline, order_fills):
            # effects.order_rows in two passes (count, then fill): numpy's
            # version is ~15 masked selections and column stores per call.
            n_accepted = n_others = n_refused = 0
            for i in range(order_slot.size):
                if order_slot[i] >= 0:
                    if status[i] == accepted:
                        n_accepted += 1
                    else:
                        n_others += 1
                        if status[i] == out_of_stock or status[i] == limit_exceeded:
                            n_refused += 1
            derived = n_refused == n_others
            accepted_slots = np.empty(n_accepted, dtype=np.int64)
            # Word by word ((stride, n): the caller gets the transpose, an
            # (n, stride) view): each word is a contiguous array, which
            # rows_vectors_by_word packs with vectorized passes.
            accepted_rows = np.empty((order_stride, n_accepted), dtype=np.int64)
            other_slots = np.empty(n_others, dtype=np.int64)
            other_rows = np.zeros((order_stride, n_others if derived else 0), dtype=np.int64)
            a = o = 0
            for i in range(order_slot.size):
                slot = order_slot[i]
                if slot < 0:
                    continue
                if status[i] == accepted:
                    accepted_slots[a] = slot
                    accepted_rows[word_at, a] = held_word | order_id[i]
                    accepted_rows[user_at, a] = user_id[i]
                    accepted_rows[deadline_at, a] = deadline[i]
                    accepted_rows[fills_at, a] = order_fills[i]
                    a += 1
                else:
                    other_slots[o] = slot
                    if derived:
                        other_rows[word_at, o] = refused_word | order_id[i]
                    o += 1
            return accepted_slots, accepted_rows, other_slots, other_rows, derived

        @njit(cache=True, nogil=True)
        def pair_rows(pair_slot, line_order, one_line_per_order, status, user_id, sku, qty, n_skus):
            # effects.pair_changes in two passes.
            n = 0
            for line in range(pair_slot.size):
                n += pair_slot[line] >= 0
            slots = np.empty(n, dtype=np.int64)
            rows = np.empty((pair_stride, n), dtype=np.int64)  # word by word, as order_rows'
            k = 0
            for line in range(pair_slot.size):
                if pair_slot[line] < 0:
                    continue
                owner = line if one_line_per_order else line_order[line]
                slots[k] = pair_slot[line]
                rows[key_at, k] = np.int64(user_id[owner]) * n_skus + np.int64(sku[line]) + 1
                rows[count_at, k] = np.int64(qty[line]) if status[owner] == accepted else 0
                k += 1
            return slots, rows

        _compiled = (probe, rows_vectors, order_rows, pair_rows, rows_vectors_by_word, pack_column)
    return _compiled


def order_rows(report, status):
    """:func:`kernel.journal.effects.order_rows`, compiled, for big calls;
    None for small ones."""
    fast = _compile() if report.order_slot.size >= MIN_SIZE else False
    if not fast:
        return None
    slots, rows, other_slots, other_rows, derived = fast[2](
        report.order_slot, status, report.order_id, report.user_id, report.deadline, report.order_fills)
    return slots, rows.T, other_slots, other_rows.T if derived else None, bool(derived)


def pair_rows(report, status, n_skus):
    """:func:`kernel.journal.effects.pair_changes`, compiled, for big calls;
    None for small ones."""
    fast = _compile() if report.pair_slot.size >= MIN_SIZE else False
    if not fast:
        return None
    one_line = report.line_order is None
    line_order = report.pair_slot if one_line else report.line_order  # (unread when one_line)
    slots, by_word = fast[3](report.pair_slot, line_order, one_line, status, report.user_id, report.sku,
                             report.qty, np.int64(n_skus))
    return slots, by_word.T


# Up to this many keys are probed one by one in Python: the vectorised
# probe's dozen numpy calls cost ~20 us whatever the size, a scalar probe
# ~1 us a key (a service's confirm or cancel of one id).
SCALAR_KEYS = 8


def _probe_scalar(table, keys, id_mask):
    """:func:`kernel.tracking.probe` for a few keys (the same linear
    probing as :func:`kernel.reference.tracked.find_order`)."""
    mask = table.size - 1
    found = np.full(keys.size, -1, dtype=np.int64)
    for i, key in enumerate(keys.tolist()):
        slot = hash_slot(key, mask)
        while (word := int(table[slot])) != 0:
            if word & id_mask == key:
                found[i] = slot
                break
            slot = (slot + 1) & mask
    return found


def probe(table, keys, id_mask=-1):
    """:func:`kernel.tracking.probe`: scalar for a few ``keys``, compiled
    for big ones."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    if keys.size <= SCALAR_KEYS:
        return _probe_scalar(table, keys, id_mask)
    fast = _compile() if keys.size >= MIN_SIZE else False
    if not fast:
        from ..tracking import probe as numpy_probe
        return numpy_probe(table, keys, id_mask)
    out = np.empty(keys.size, dtype=np.int64)
    fast[0](table, keys, np.int64(id_mask), out)
    return out


def pack_vector(values):
    """One vector (``records.VECTOR_HEADER``, the packed values, padding)
    of a big contiguous int64 ``values`` as one uint8 buffer, byte for byte
    what :func:`kernel.journal.records._vector` makes with numpy; None when
    it is small.  (A tracked reserve's fill-log range: two per call, where
    numpy's min, max, subtract and cast took ~11 us each for 10,000
    values.)"""
    fast = _compile() if values.size >= MIN_SIZE else False
    if not fast:
        return None
    return fast[5](values)


def value_range(values):
    """``(min, max)`` of a non-empty int64 vector as Python ints.  numpy's
    ``min`` and ``max`` are SIMD loops: measured with numpy 2.4, both together
    take 2.8 us for 10,000 values (14 us for 100,000), where one compiled
    pass with a compare-and-branch per value took 7.7 us (72 us)."""
    return int(values.min()), int(values.max())


def field_arrays(plan):
    """A ROWS field plan (``(word, shift, bits or None)`` per field) as the
    compiled packer's read-only ``(words, shifts, masks)`` arrays."""
    words = np.array([word for word, _, _ in plan], dtype=np.int64)
    shifts = np.array([shift for _, shift, _ in plan], dtype=np.int64)
    masks = np.array([-1 if bits is None else (1 << bits) - 1 for _, _, bits in plan], dtype=np.int64)
    for column in (words, shifts, masks):
        column.flags.writeable = False
    return words, shifts, masks


def pack_rows(rows, index, columns):
    """The vectors of a ROWS section (the row numbers ``index``, then one per
    field of the gathered ``rows``; ``columns``: :func:`field_arrays` of the
    field plan) as one uint8 buffer, byte for byte what
    :meth:`kernel.journal.records.Effects.pack` makes with numpy; None when
    the section is small."""
    fast = _compile() if index.size >= MIN_SIZE else False
    if not fast:
        return None
    words, shifts, masks = columns
    if not rows.flags.c_contiguous and rows.T.flags.c_contiguous:  # derived word by word (order_rows)
        return fast[4](rows.T, index, words, shifts, masks)
    return fast[1](np.ascontiguousarray(rows), index, words, shifts, masks)
