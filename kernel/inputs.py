"""Input coercion and checks shared by the facade: every array a user hands in
passes through :func:`as_int64` once, so every error names the field and the
first bad position the same way."""

import operator

import numpy as np

INT64_MAX = int(np.iinfo(np.int64).max)

__all__ = ["INT64_MAX", "as_int64", "check_at_least", "check_below", "check_sum_fits", "check_threads"]


def as_int64(name, values, *, copy=False):
    """Return ``values`` as a 1-D C-contiguous native ``int64`` array.

    int32, big-endian, non-contiguous and read-only inputs are converted (or
    passed through untouched when already in that form, unless ``copy``);
    floats are accepted only when they hold whole numbers.  With ``copy`` the
    result never shares memory with ``values``.

    Raises
    ------
    TypeError
        Non-integral values (fractions, NaN, inf, booleans, non-numbers),
        naming the field and the first bad position.
    ValueError
        Wrong shape, or integers outside the int64 range.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "USV" and not isinstance(values, np.ndarray):
        # A list mixing numbers and text becomes all text: look at the items
        # as given, so the error names the first one that is not an integer.
        arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    kind = arr.dtype.kind
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if kind == "i":
        return np.array(arr, dtype=np.int64, order="C", copy=True if copy else None)
    if kind == "u":
        too_big = arr > INT64_MAX
        if too_big.any():
            pos = int(too_big.argmax())
            raise ValueError(f"{name}[{pos}] = {arr[pos]} does not fit in int64")
        return np.array(arr, dtype=np.int64, order="C", copy=True if copy else None)
    if kind == "f":
        # 2**63 is exactly representable; anything >= it does not fit int64.
        good = np.isfinite(arr) & (arr == np.trunc(arr)) & (np.abs(arr) < 2.0**63)
        if not good.all():
            pos = int((~good).argmax())
            raise TypeError(f"{name}[{pos}] = {arr[pos].item()!r} is not an integer")
        return arr.astype(np.int64)
    if kind == "O":
        out = np.empty(arr.size, dtype=np.int64)
        for pos, value in enumerate(arr):
            try:
                as_int = operator.index(value)
            except TypeError:
                raise TypeError(f"{name}[{pos}] = {value!r} is not an integer") from None
            if not -INT64_MAX - 1 <= as_int <= INT64_MAX:
                raise ValueError(f"{name}[{pos}] = {as_int} does not fit in int64")
            out[pos] = as_int
        return out
    raise TypeError(f"{name}: values of dtype {arr.dtype} are not integers")


def check_at_least(name, arr, low, what):
    """Raise ``ValueError`` naming the first position where ``arr < low``."""
    if arr.size and arr.min() < low:
        pos = int((arr < low).argmax())
        raise ValueError(f"{name}[{pos}] = {arr[pos]} must be {what}")


def check_below(name, arr, high):
    """Raise ``ValueError`` naming the first position where ``arr >= high``
    (for ids already known to be ``>= 0``): ``sku[2] = 3 is out of range [0, 3)``."""
    if arr.size and arr.max() >= high:
        pos = int((arr >= high).argmax())
        raise ValueError(f"{name}[{pos}] = {arr[pos]} is out of range [0, {high})")


def check_sum_fits(name, arr):
    """Raise ``ValueError`` if the running sum of a non-negative ``arr``
    would overflow int64, naming the position where it first would."""
    if arr.size == 0 or int(arr.max()) <= INT64_MAX // arr.size:
        return  # cheap proof: n * max cannot overflow
    running = 0
    for pos, value in enumerate(arr.tolist()):
        running += value
        if running > INT64_MAX:
            raise ValueError(f"{name}[{pos}]: the running total {running} overflows int64")


def check_threads(threads):
    """Validate a thread count (``None`` means every core this process may use)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)
