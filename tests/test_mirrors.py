"""One semantics, three implementations: the names and codes tie together.

The reference (:mod:`kernel.reference`) is the spec; each kernel family has
the same file stem in ``kernel/reference/``, ``kernel/_cython/`` (a ``.pxi``
included by ``kernels.pyx``) and ``kernel/_numba/``.  These tests look every
function of the spec up by name in both compiled families, check that no
backend grew a kernel the spec lacks, that every shared code has one value
everywhere (the Python module, both backends, the ``.pxd`` files users
``cimport``), and that the ``TrackedState`` struct users fill lists the state
arrays in the one order of :data:`kernel.state.STATE_NAMES`.
"""

import importlib
import re
from pathlib import Path

import pytest

import kernel._cython
from kernel import codes, reference
from kernel.state import STATE_NAMES

CYTHON_DIR = Path(kernel._cython.__file__).parent
FAMILIES = list(reference.FAMILIES)

# Public names a backend may have that the spec has no twin for, each with
# the reason.  Everything else public in a family file must mirror the spec.
BACKEND_ONLY = {
    "cython": {
        "reserve_one_c": "the C-level reserve_one users' Cython cimports (kernels.pxd)",
        "tracked_state_from_arrays": "fills the TrackedState struct for reserve_one_c (kernels.pxd)",
        "ReserveOne": "the bound reserve_one callable (an extension type with a vectorcall entry)",
        "make_word": "packs state and id into an order word (the spec writes the expression inline)",
        "state_of": "unpacks the state of an order word (the spec writes the expression inline)",
    },
    "numba": {},
}

_CYTHON_DEF = re.compile(r"^(?:cdef|cpdef|def)\b[^(=\n]*?\b([A-Za-z]\w*)\s*\(", re.M)
_CYTHON_CLASS = re.compile(r"^cdef class ([A-Za-z]\w*)", re.M)


def cython_functions(family):
    """Names defined at the top level of ``kernel/_cython/<family>.pxi``."""
    text = (CYTHON_DIR / f"{family}.pxi").read_text()
    return set(_CYTHON_DEF.findall(text)) | set(_CYTHON_CLASS.findall(text))


def numba_functions(family):
    """Public callables defined in ``kernel/_numba/<family>.py`` (dispatchers
    count as defined where their Python function is)."""
    module = importlib.import_module(f"kernel._numba.{family}")
    names = set()
    for name, obj in vars(module).items():
        defined_in = getattr(getattr(obj, "py_func", obj), "__module__", None)
        if callable(obj) and not name.startswith("_") and defined_in == module.__name__:
            names.add(name)
    return names


@pytest.mark.parametrize("family", FAMILIES)
def test_every_spec_function_has_a_twin_of_the_same_name_in_each_backend_family_file(family):
    spec = set(reference.functions(family))
    assert spec, f"kernel/reference/{family}.py defines no kernel function"
    assert not spec - numba_functions(family), f"kernel/_numba/{family}.py lacks {sorted(spec - numba_functions(family))}"
    assert not spec - cython_functions(family), f"kernel/_cython/{family}.pxi lacks {sorted(spec - cython_functions(family))}"


@pytest.mark.parametrize("family", FAMILIES)
def test_no_backend_family_file_has_a_public_kernel_the_spec_lacks(family):
    spec = set(reference.functions(family))
    numba_extra = numba_functions(family) - spec - set(BACKEND_ONLY["numba"])
    cython_extra = {name for name in cython_functions(family) - spec - set(BACKEND_ONLY["cython"])
                    if not name.startswith("_")}
    assert not numba_extra, f"kernel/_numba/{family}.py: {sorted(numba_extra)} mirror nothing in the spec"
    assert not cython_extra, f"kernel/_cython/{family}.pxi: {sorted(cython_extra)} mirror nothing in the spec"


def test_each_spec_function_lives_in_exactly_one_family():
    seen = {}
    for family in FAMILIES:
        for name in reference.functions(family):
            assert name not in seen, f"{name} is in both {seen[name]} and {family}"
            seen[name] = family


@pytest.mark.parametrize("backend", ["kernel._cython.kernels", "kernel._numba.kernels", "kernel.reference"])
def test_every_backend_module_exposes_every_spec_function_and_code(backend):
    module = importlib.import_module(backend)
    for family in FAMILIES:
        for name in reference.functions(family):
            if backend == "kernel._cython.kernels" and not callable(getattr(module, name, None)):
                continue  # cdef inline helpers are C-level only; the .pxi check above covers them
            assert callable(getattr(module, name, None)), f"{backend}.{name} is missing"
    for name, value in codes.CODES.items():
        assert getattr(module, name) == value, f"{backend}.{name} = {getattr(module, name)!r}, codes says {value}"


def test_batch_kernels_the_facade_calls_are_python_callables_in_both_compiled_backends():
    facade_calls = ["reserve_single", "reserve_single_ordered", "reserve_carts", "reserve_carts_ordered",
                    "reserve_general", "reserve_general_ordered", "give_back", "take_budgets", "claim_orders",
                    "claim_and_reserve", "reserve_tracked", "settle_refused", "confirm_orders", "cancel_orders", "expire_orders",
                    "recover_orders", "reserve_one", "bind_reserve_one"]
    for backend in ("kernel._cython.kernels", "kernel._numba.kernels"):
        module = importlib.import_module(backend)
        missing = [name for name in facade_calls if not callable(getattr(module, name, None))]
        assert not missing, f"{backend} lacks {missing}"


def _pxd_codes(text):
    """``K_NAME = value`` enum members and ``#define K_NAME ((type)0x...)``
    constants of a .pxd, by NAME."""
    found = {name: int(value) for name, value in re.findall(r"^\s*K_(\w+)\s*=\s*(-?\d+)\s*(?:#.*)?$", text, re.M)}
    for name, value in re.findall(r"#define K_(\w+)\s+\(\(\w+\)(0x[0-9A-Fa-f]+)\w*\)", text):
        found[name] = int(value, 16)
    return found


def test_every_code_has_the_same_value_in_codes_pxd():
    pxd = _pxd_codes((CYTHON_DIR / "codes.pxd").read_text())
    assert pxd == codes.CODES


def test_the_users_pxd_answers_with_the_status_codes():
    # tracked.pxd gives users reserve_one_c's answers as RESERVE_<STATUS>;
    # each must be the status code of the same name.
    text = (CYTHON_DIR / "tracked.pxd").read_text()
    reserve_codes = dict(re.findall(r"^\s*RESERVE_(\w+)\s*=\s*K_(\w+)\s*$", text, re.M))
    assert set(reserve_codes) == {"ACCEPTED", "OUT_OF_STOCK", "DUPLICATE", "LIMIT_EXCEEDED", "CANCELLED",
                                  "ORDER_TABLE_FULL", "LIMIT_TABLE_FULL", "FILL_LOG_FULL"}
    assert all(reserve == code for reserve, code in reserve_codes.items())


def test_the_tracked_state_struct_lists_the_state_arrays_in_the_one_order():
    text = (CYTHON_DIR / "kernels.pxd").read_text()
    struct = re.search(r"cdef struct TrackedState:(.*?)\n\S", text, re.S).group(1)
    pointers = re.findall(r"^\s*(?:const\s+)?int64_t\s*\*\s*(\w+)", struct, re.M)
    assert tuple(pointers) == STATE_NAMES


def test_the_backend_only_allowances_name_what_exists():
    # A stale allowance would let a future extra name in unexamined.
    cython_names = set().union(*(cython_functions(family) for family in FAMILIES))
    numba_names = set().union(*(numba_functions(family) for family in FAMILIES))
    assert set(BACKEND_ONLY["cython"]) <= cython_names
    assert set(BACKEND_ONLY["numba"]) <= numba_names
