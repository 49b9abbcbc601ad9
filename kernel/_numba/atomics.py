"""CPU atomics for Numba kernels: the Numba counterpart of the C11 atomics the
Cython backend (``kernel/_cython``) uses.

Each public function takes a 1-D C-contiguous array and an index, checks
``0 <= i < a.size`` *before* any memory is touched (raising ``IndexError``,
which Numba propagates out of serial and ``prange`` code alike), then runs a
single LLVM atomic instruction built with llvmlite in a
``numba.extending.intrinsic``:

``atomic_load(a, i)``                     relaxed (LLVM ``monotonic``) load
``atomic_cas(a, i, expected, desired)``   compare-and-swap; returns the value
                                          observed, success iff it equals
                                          ``expected``
``atomic_add(a, i, v)``                   fetch-and-add; returns the old value

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
* Publication of the plain outputs (``status``, ``taken``) to the caller does
  not rely on these orders at all: the parallel region's join (the thread
  pool barrier at the end of ``prange``) is a full synchronisation point.
"""

import numba
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["atomic_load", "atomic_cas", "atomic_add"]


def _check_array(a):
    if not isinstance(a, types.Array) or a.ndim != 1 or not isinstance(a.dtype, types.Integer):
        raise numba.core.errors.TypingError("atomics need a 1-D integer array, got %s" % (a,))


def _item_pointer(context, builder, aryty, ary, idxty, idx):
    arr = context.make_array(aryty)(context, builder, ary)
    idx = context.cast(builder, idx, idxty, types.intp)
    # No bounds check here: the njit wrappers below have already checked.
    return cgutils.get_item_pointer(context, builder, aryty, arr, [idx], wraparound=False, boundscheck=False)


def _align(context, dtype):
    return context.get_abi_sizeof(context.get_data_type(dtype))


@intrinsic
def _load(typingctx, a, i):
    _check_array(a)

    def codegen(context, builder, sig, args):
        ptr = _item_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load_atomic(ptr, "monotonic", _align(context, sig.args[0].dtype))

    return a.dtype(a, i), codegen


@intrinsic
def _cas(typingctx, a, i, expected, desired):
    _check_array(a)

    def codegen(context, builder, sig, args):
        aryty, idxty, expty, desty = sig.args
        ary, idx, exp, des = args
        ptr = _item_pointer(context, builder, aryty, ary, idxty, idx)
        exp = context.cast(builder, exp, expty, aryty.dtype)
        des = context.cast(builder, des, desty, aryty.dtype)
        pair = builder.cmpxchg(ptr, exp, des, "acq_rel", "monotonic")
        return builder.extract_value(pair, 0)  # the value observed (old)

    return a.dtype(a, i, expected, desired), codegen


@intrinsic
def _add(typingctx, a, i, v):
    _check_array(a)

    def codegen(context, builder, sig, args):
        aryty, idxty, vty = sig.args
        ary, idx, val = args
        ptr = _item_pointer(context, builder, aryty, ary, idxty, idx)
        val = context.cast(builder, val, vty, aryty.dtype)
        return builder.atomic_rmw("add", ptr, val, "acq_rel")

    return a.dtype(a, i, v), codegen


# The wrappers check bounds before the atomic touches memory.  They are small
# njit functions; LLVM inlines them into the kernels (they are linked into the
# same module), so the check costs a compare and a predictable branch.


@njit(cache=True, nogil=True)
def atomic_load(a, i):
    """Relaxed atomic load of ``a[i]``; ``IndexError`` when out of bounds."""
    if i < 0 or i >= a.size:
        raise IndexError("atomic_load: index out of bounds")
    return _load(a, i)


@njit(cache=True, nogil=True)
def atomic_cas(a, i, expected, desired):
    """Atomically ``if a[i] == expected: a[i] = desired``; return the value
    observed (success iff it equals ``expected``)."""
    if i < 0 or i >= a.size:
        raise IndexError("atomic_cas: index out of bounds")
    return _cas(a, i, expected, desired)


@njit(cache=True, nogil=True)
def atomic_add(a, i, v):
    """Atomically ``a[i] += v``; return the old value."""
    if i < 0 or i >= a.size:
        raise IndexError("atomic_add: index out of bounds")
    return _add(a, i, v)
