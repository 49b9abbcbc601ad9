"""Clean packages: build the sdist from a copy of the source tree, the wheel
from the unpacked sdist (what ``python -m build`` does), and check what they
hold; the gate run from a wheel says it needs a checkout; pytest inside a
checkout that shadows a non-editable install stops with one message.

The builds call setuptools' PEP 517 hooks in the test's interpreter (no
build isolation, nothing downloaded)."""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = re.compile(r"\.(c|cpp|html|so|pyd|o|pyc)$")
HAND_WRITTEN_C = ("kernel/bench/c/",)  # C loops the benchmarks compile at run time: sources, not output


def _tracked_files():
    """The files git tracks here, or None outside a git checkout (an sdist)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout:
        return None
    return sorted(f for f in out.stdout.split("\0") if f and (ROOT / f).is_file())


def _copy_sources(dest):
    """The source tree without build output: git's files, or (from an sdist)
    everything but what builds leave behind."""
    tracked = _tracked_files()
    if tracked is None:
        ignore = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".venv", "*.so", "*.html",
                                        ".hypothesis", ".benchmarks", "ci-report", ".gate-cache")
        shutil.copytree(ROOT, dest, ignore=ignore)
        for generated in (dest / "kernel" / "_cython").glob("*.c"):
            generated.unlink()
        return dest
    for name in tracked:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _pep517(hook, source, out):
    code = f"import sys; from setuptools import build_meta; print(build_meta.{hook}(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=source, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PIP_NO_INDEX": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(source copy, sdist path, unpacked sdist, wheel path)."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = _copy_sources(tmp / "source")
    sdist = _pep517("build_sdist", source, tmp / "dist")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", filter="data") if hasattr(tarfile, "data_filter") else \
            tar.extractall(tmp / "unpacked")
    unpacked = next((tmp / "unpacked").iterdir())
    wheel = _pep517("build_wheel", unpacked, tmp / "dist")
    return source, sdist, unpacked, wheel


def _sdist_names(sdist):
    with tarfile.open(sdist) as tar:
        return sorted(name.split("/", 1)[1] for name in tar.getnames() if "/" in name and tar.getmember(name).isfile())


def test_wheel_holds_the_extension_and_what_users_cimport_and_nothing_generated(built):
    source, _, _, wheel = built
    names = zipfile.ZipFile(wheel).namelist()
    kernel_files = [n for n in names if n.startswith("kernel/")]
    assert [n for n in kernel_files if re.match(r"kernel/_cython/kernels\..*\.so$", n)], names
    for name in ("kernels.pxd", "tracked.pxd", "atomics.pxd", "atomics.h"):
        assert f"kernel/_cython/{name}" in names
    # Every Python module of the package, whatever its layout.
    modules = {str(p.relative_to(source)) for p in (source / "kernel").rglob("*.py")}
    assert modules <= set(names), modules - set(names)
    # No sources the extension was built from, nothing generated.
    assert not [n for n in kernel_files if n.endswith((".pyx", ".pxi", ".c", ".cpp", ".html", ".o", ".pyc"))
                and not n.startswith(HAND_WRITTEN_C)]
    # Every C loop of the benchmark's registry (kernel.bench.cloops compiles them at run time).
    for source in ("baseline.c", "general.c", "tracked.c", "common.h"):
        assert f"kernel/bench/c/{source}" in names, source
    assert not [n for n in names if not n.startswith(("kernel/", "double11_kernel-"))]
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in meta
    assert [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]


def test_the_extension_carries_no_debug_info(built):
    _, _, _, wheel = built
    with zipfile.ZipFile(wheel) as z:
        so = z.read(next(n for n in z.namelist() if n.endswith(".so")))
    assert b".debug_info" not in so, "built with -g: set KERNEL_DEBUG_BUILD only when asked"


def test_sdist_carries_what_its_tests_need_and_nothing_generated(built):
    _, sdist, _, _ = built
    names = _sdist_names(sdist)
    for needed in ("LICENSE", "README.md", "pyproject.toml", "setup.py", "tests/conftest.py",
                   "bench/gate-baseline.json", "kernel/_cython/kernels.pyx",
                   "examples/cython_entry/sell.pyx", "examples/run_demo.py"):
        assert needed in names, needed
    assert [n for n in names if n.startswith(HAND_WRITTEN_C) and n.endswith(".c")]
    assert "kernel/bench/c/common.h" in names  # the header the C loops include
    assert not [n for n in names if GENERATED.search(n) and not n.startswith(HAND_WRITTEN_C)]
    tracked = _tracked_files()
    if tracked is not None:
        # Everything git tracks, but the CI plumbing that drives a checkout.
        wanted = {n for n in tracked if not n.startswith((".ci/", ".github/", ".gitignore"))}
        assert wanted <= set(names), sorted(wanted - set(names))


def test_no_build_step_writes_generated_sources_into_the_tree(built):
    source, _, unpacked, _ = built
    for tree in (source, unpacked):  # sdist made in one, wheel built in the other
        strays = [str(p.relative_to(tree)) for p in (tree / "kernel").rglob("*")
                  if GENERATED.search(p.name) and not str(p.relative_to(tree)).startswith(HAND_WRITTEN_C)]
        assert not strays, f"{tree}: {strays}"


def test_the_gate_from_a_wheel_says_it_needs_a_source_checkout(built, tmp_path):
    _, _, _, wheel = built
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    proc = subprocess.run([sys.executable, "-m", "kernel.bench.gate"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs a source checkout" in proc.stderr
    assert str(site / "kernel") in proc.stderr  # it ran the wheel's copy, not this checkout's
    assert "valgrind" not in proc.stdout + proc.stderr.split("needs a source checkout")[0]


def test_pytest_in_a_checkout_shadowing_a_non_editable_install_stops_with_one_message(built, tmp_path):
    """The issue's scenario: ``pip install .`` then ``python -m pytest``
    inside the checkout, which has no compiled extension."""
    source, _, _, wheel = built
    site = tmp_path / "site"  # stands for site-packages of the non-editable install
    zipfile.ZipFile(wheel).extractall(site)
    checkout = _copy_sources(tmp_path / "checkout")
    # What `pip install .` leaves in the checkout: metadata found before site-packages'.
    (checkout / "double11_kernel.egg-info").mkdir()
    (checkout / "double11_kernel.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.4\nName: double11-kernel\n"
                                                                   "Version: 0.1.0\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], cwd=checkout,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(site)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, out
    assert "shadows the installed, non-editable package" in out and "pip install -e" in out
    assert out.count("cannot be imported") == 1
    assert " passed" not in out and " failed" not in out and " error" not in out.lower().replace("importerror", "")
