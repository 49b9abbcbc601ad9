"""CPU atomics for Numba kernels: the Numba counterpart of the C11 atomics the
Cython backend (``kernel/_cython``) uses.

Each atomic takes a 1-D C-contiguous array and an index and runs a single
LLVM atomic instruction built with llvmlite in a
``numba.extending.intrinsic``:

``atomic_load(a, i)``                     relaxed (LLVM ``monotonic``) load
``atomic_load_acquire(a, i)``             acquire load (a plain ``mov`` on x86)
``atomic_store_release(a, i, v)``         release store (a plain ``mov`` on x86)
``atomic_cas(a, i, expected, desired)``   compare-and-swap; returns the value
                                          observed, success iff it equals
                                          ``expected``
``atomic_add(a, i, v)``                   fetch-and-add; returns the old value
``prefetch_write(a, i)``                  write-intent prefetch hint of ``a[i]``
                                          (LLVM ``llvm.prefetch``, rw=1,
                                          locality=3, data cache); never
                                          checks, never raises, never faults

Plus two plain (non-atomic) accessors for the hot loops:

``load(a, i)``                            ``a[i]``
``store(a, i, v)``                        ``a[i] = v``

and one raw-memory constructor, *unchecked*:

``array_at(address, n)``                  the 1-D C-contiguous int64 array of
                                          ``n`` words at ``address`` (no owner,
                                          no refcount: the caller keeps the
                                          memory alive)

Indices are not checked (as in kernels.pyx)
-------------------------------------------
The kernels index with what the facade validated once, at construction
(SKUs, offers, line offsets, order indices), with slots masked into their
table, and with loop counters bounded by the array sizes: an index out of
``[0, a.size)`` is a kernel bug, not an input error.  So the atomics and
``load``/``store`` form ``data + i`` directly, as Cython indexes raw
pointers, with neither a bounds check nor ``a[i]``'s negative-index
wraparound (``i < 0 ? i + size : i``, which Numba emits on every ``a[i]``
with a signed index even with ``boundscheck=False``).

Why not check: the check is one compare and a branch, but it keeps every
array's size live in a register (or reloads it from the stack) and a cold
exit per access, and in the cart loop that pressure spilled and shuffled
registers on every line.  Measured with callgrind (the gate's cases, one
thread): with checks on the stock atomics, carts/concurrent 2,329,606
instructions, 28% over the 1,666,543 without, Cython 1,656,673; tracked
flash sale 6% over, the single-line paths 6% over.

``KERNEL_NUMBA_BOUNDSCHECK=1`` in the environment (read at import) turns the
checks on, for hunting a kernel bug: every atomic, ``load`` and ``store``
then checks ``0 <= i < a.size`` *before* any memory is touched and raises
``IndexError`` (Numba propagates it out of serial code and from a
``prange`` body on the calling thread; see ``_jit.py``, "Errors").  The
flag is part of the on-disk cache key (``_jit.SOURCES_DIGEST``), so checked
and unchecked machine code never load in place of each other.

Why these memory orders
-----------------------
* Every stock word is an independent counter: no kernel infers anything about
  *other* memory from the value it reads in a stock word, so loads need only
  atomicity (no torn or stale-forever reads), i.e. ``monotonic`` / relaxed.
  A load is only ever a *hint*: every decision that writes goes through a CAS
  that re-validates the value.
* The CAS is what makes a take atomic (read-check-write as one step, so two
  threads can never both spend the same units); ``acq_rel`` on success orders
  it with the thread's surrounding plain stores (``taken``, ``status``) at no
  extra cost on x86 (``lock cmpxchg`` is a full barrier anyway), and the
  failure path is ``monotonic`` because a failed CAS is just a fresh load.
* ``atomic_add`` (give-backs, rollbacks, the rollback counter) is ``acq_rel``
  for the same reason.
* Tracked orders (kernels.py, "Tracked orders") publish a record through one
  word: plain stores of the record fields, then the CAS that moves the word
  to HELD (its release half orders the fields before it).  A reader that
  reads the fields after seeing HELD needs an acquire to pair with it: a
  successful CAS has one (``acq_rel``), and ``atomic_load_acquire`` is for
  readers that decide *before* they CAS (expiry reads the deadline of a word
  it has only loaded).  ``atomic_store_release`` is for a word's last step
  when no CAS is needed (only one thread may take it) but other threads may
  be loading the word atomically at the time: a non-atomic store racing an
  atomic load is undefined in LLVM's model, a release store is not, and it
  costs the same ``mov``.
* Publication of the plain outputs (``status``, ``taken``) to the caller does
  not rely on these orders at all: the parallel region's join (the thread
  pool barrier at the end of ``prange``) is a full synchronisation point.
"""

import os

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["atomic_load", "atomic_load_acquire", "atomic_store_release", "atomic_cas", "atomic_add",
           "atomic_exchange", "prefetch_write", "load", "store", "array_at", "CHECK_BOUNDS"]

# Bounds-checked accessors (module doc, "Indices are not checked"): off
# unless KERNEL_NUMBA_BOUNDSCHECK is set to something other than 0.
CHECK_BOUNDS = os.environ.get("KERNEL_NUMBA_BOUNDSCHECK", "0").strip() not in ("", "0")

# Why intrinsics and not small njit functions wrapping them
# ---------------------------------------------------------
# Every njit function increfs its array arguments on entry and decrefs them on
# exit (NRT_incref / NRT_decref: out-of-line calls doing an atomic add on the
# array's refcount).  LLVM inlines a small njit helper, but not those calls,
# and Numba's refcount pruning gives up once the helper contains a loop and a
# raise path -- so a bounds-checked njit wrapper cost two NRT calls (two more
# locked instructions, on a refcount word every thread shares) per atomic.
# Code generated by an intrinsic has no prologue: the bounds check below (only
# under KERNEL_NUMBA_BOUNDSCHECK) is an unsigned compare and a branch to a cold
# block that raises ``IndexError`` through the calling convention, exactly as
# a ``raise`` in njit code would.


def _check_array(a):
    if not isinstance(a, types.Array) or a.ndim != 1 or not isinstance(a.dtype, types.Integer):
        raise numba.core.errors.TypingError("atomics need a 1-D integer array, got %s" % (a,))


def _check_index(i):
    if not isinstance(i, types.Integer):
        raise numba.core.errors.TypingError("atomics need an integer index, got %s" % (i,))


def _index(context, builder, idxty, idx):
    return context.cast(builder, idx, idxty, types.intp)


def _in_bounds(builder, arr, idx):
    # One unsigned compare covers both 0 <= i and i < size.
    return builder.icmp_unsigned("<", idx, arr.nitems)


def _pointer(context, builder, aryty, ary, idxty, idx, what):
    """Pointer to ``ary[idx]``: C-contiguous 1-D, so ``data + idx`` (no
    wraparound).  Under :data:`CHECK_BOUNDS`, first raises ``IndexError``
    (cold path) when ``idx`` is out of bounds."""
    arr = context.make_array(aryty)(context, builder, ary)
    idx = _index(context, builder, idxty, idx)
    if CHECK_BOUNDS:
        with cgutils.if_unlikely(builder, builder.not_(_in_bounds(builder, arr, idx))):
            context.call_conv.return_user_exc(builder, IndexError, ("%s: index out of bounds" % what,))
    return builder.gep(arr.data, [idx], inbounds=True)


def _align(context, dtype):
    return context.get_abi_sizeof(context.get_data_type(dtype))


@intrinsic
def atomic_load(typingctx, a, i):
    """Relaxed atomic load of ``a[i]``."""
    _check_array(a)
    _check_index(i)

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1], "atomic_load")
        return builder.load_atomic(ptr, "monotonic", _align(context, sig.args[0].dtype))

    return a.dtype(a, i), codegen


@intrinsic
def atomic_load_acquire(typingctx, a, i):
    """Acquire atomic load of ``a[i]`` (LLVM ``load atomic ... acquire``):
    memory written before the release that stored the value seen is visible
    after it."""
    _check_array(a)
    _check_index(i)

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1], "atomic_load_acquire")
        return builder.load_atomic(ptr, "acquire", _align(context, sig.args[0].dtype))

    return a.dtype(a, i), codegen


@intrinsic
def atomic_store_release(typingctx, a, i, v):
    """Release atomic store ``a[i] = v`` (LLVM ``store atomic ... release``):
    memory written before it is visible to an acquire that sees ``v``."""
    _check_array(a)
    _check_index(i)
    if not a.mutable:
        raise numba.core.errors.TypingError("atomic_store_release needs a writable array, got %s" % (a,))

    def codegen(context, builder, sig, args):
        aryty, idxty, vty = sig.args
        ptr = _pointer(context, builder, aryty, args[0], idxty, args[1], "atomic_store_release")
        builder.store_atomic(context.cast(builder, args[2], vty, aryty.dtype), ptr, "release",
                             _align(context, aryty.dtype))
        return context.get_dummy_value()

    return types.none(a, i, v), codegen


@intrinsic
def atomic_cas(typingctx, a, i, expected, desired):
    """Atomically ``if a[i] == expected: a[i] = desired``; return the value
    observed (success iff it equals ``expected``)."""
    _check_array(a)
    _check_index(i)

    def codegen(context, builder, sig, args):
        aryty, idxty, expty, desty = sig.args
        ary, idx, exp, des = args
        ptr = _pointer(context, builder, aryty, ary, idxty, idx, "atomic_cas")
        exp = context.cast(builder, exp, expty, aryty.dtype)
        des = context.cast(builder, des, desty, aryty.dtype)
        pair = builder.cmpxchg(ptr, exp, des, "acq_rel", "monotonic")
        return builder.extract_value(pair, 0)  # the value observed (old)

    return a.dtype(a, i, expected, desired), codegen


@intrinsic
def atomic_add(typingctx, a, i, v):
    """Atomically ``a[i] += v``; return the old value."""
    _check_array(a)
    _check_index(i)

    def codegen(context, builder, sig, args):
        aryty, idxty, vty = sig.args
        ary, idx, val = args
        ptr = _pointer(context, builder, aryty, ary, idxty, idx, "atomic_add")
        val = context.cast(builder, val, vty, aryty.dtype)
        return builder.atomic_rmw("add", ptr, val, "acq_rel")

    return a.dtype(a, i, v), codegen


@intrinsic
def atomic_exchange(typingctx, a, i, v):
    """Atomically ``old = a[i]; a[i] = v``; return ``old``.  (Gives a
    fill-log entry back exactly once when a live cancel and a recovery race
    for it.)"""
    _check_array(a)
    _check_index(i)

    def codegen(context, builder, sig, args):
        aryty, idxty, vty = sig.args
        ary, idx, val = args
        ptr = _pointer(context, builder, aryty, ary, idxty, idx, "atomic_exchange")
        val = context.cast(builder, val, vty, aryty.dtype)
        return builder.atomic_rmw("xchg", ptr, val, "acq_rel")

    return a.dtype(a, i, v), codegen


def _prefetch_fn(builder):
    # llvm.prefetch is overloaded on the pointer type: ``.p0`` with opaque
    # pointers (LLVM >= 15, what current llvmlite emits), ``.p0i8`` with typed ones.
    i8p = ir.IntType(8).as_pointer()
    name = "llvm.prefetch.p0" if str(i8p) == "ptr" else "llvm.prefetch.p0i8"
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    return cgutils.get_or_insert_function(builder.module, fnty, name), i8p


@intrinsic
def prefetch_write(typingctx, a, i):
    """Hint that ``a[i]`` will soon be written (``__builtin_prefetch(p, 1, 3)``).

    Only a hint: it never faults, changes no memory and checks nothing (not
    even under ``KERNEL_NUMBA_BOUNDSCHECK``), as Cython's ``prefetch_rw``."""
    _check_array(a)
    _check_index(i)

    def codegen(context, builder, sig, args):
        aryty, idxty = sig.args
        arr = context.make_array(aryty)(context, builder, args[0])
        idx = _index(context, builder, idxty, args[1])
        # Why no bounds check: it was an unsigned compare against the array's
        # size and a branch per prefetch, and the size kept live (reloaded
        # from the stack in the tracked chunk loop, which has more arrays than
        # registers): 5 prefetches an order there.  Why that is safe: the GEP
        # is *not* inbounds, so an index past the array is plain wrapping
        # address arithmetic in LLVM (no poison), and llvm.prefetch of any
        # address has no effect on the program's behaviour (it cannot fault).
        ptr = builder.gep(arr.data, [idx], inbounds=False)
        fn, i8p = _prefetch_fn(builder)
        i32 = ir.IntType(32)
        # rw=1 (write), locality=3 (keep in all cache levels), cache type=1 (data)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.none(a, i), codegen


@intrinsic
def load(typingctx, a, i):
    """Plain ``a[i]``: ``i`` must be in ``[0, a.size)`` (see module doc)."""
    _check_array(a)
    _check_index(i)

    def codegen(context, builder, sig, args):
        return builder.load(_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1], "load"))

    return a.dtype(a, i), codegen


@intrinsic
def store(typingctx, a, i, v):
    """Plain ``a[i] = v``: ``i`` must be in ``[0, a.size)`` (see module doc)."""
    _check_array(a)
    _check_index(i)
    if not a.mutable:
        raise numba.core.errors.TypingError("store needs a writable array, got %s" % (a,))

    def codegen(context, builder, sig, args):
        aryty, idxty, vty = sig.args
        ptr = _pointer(context, builder, aryty, args[0], idxty, args[1], "store")
        builder.store(context.cast(builder, args[2], vty, aryty.dtype), ptr)
        return context.get_dummy_value()

    return types.none(a, i, v), codegen


@intrinsic
def array_at(typingctx, address, n):
    """The 1-D C-contiguous int64 array of ``n`` words at the integer
    ``address``, UNCHECKED: the memory must be live, int64-aligned and
    writable for as long as the array is used.  The array has no owner
    (no meminfo, no parent), so it costs nothing to make and nothing to drop.

    What it is for: :func:`kernels.bind_reserve_one` passes the state's
    addresses as plain integers, which Numba's dispatcher converts far faster
    than arrays (see there)."""
    _check_index(address)
    _check_index(n)
    aryty = types.Array(types.int64, 1, "C")

    def codegen(context, builder, sig, args):
        addrty, nty = sig.args
        ary = context.make_array(aryty)(context, builder)
        addr = context.cast(builder, args[0], addrty, types.intp)
        data = builder.inttoptr(addr, context.get_data_type(types.int64).as_pointer())
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(types.int64)))
        shape = cgutils.pack_array(builder, [context.cast(builder, args[1], nty, types.intp)])
        strides = cgutils.pack_array(builder, [itemsize])
        context.populate_array(ary, data=data, shape=shape, strides=strides, itemsize=itemsize, meminfo=None)
        return ary._getvalue()

    return aryty(address, n), codegen
