"""Build the Cython kernels (kernel/_cython/kernels.pyx).

Project metadata lives in pyproject.toml; this file only describes the
extension.  Cython runs inside ``build_ext`` and writes the generated C into
the build directory (``build_temp``), never into the source tree, so
``sdist`` and metadata commands need neither Cython nor NumPy.

OpenMP is used when the C compiler can compile *and link* a tiny OpenMP
program; ``KERNEL_DISABLE_OPENMP=1`` forces serial kernels.  The kernels
report what they got through ``kernel._cython.kernels.openmp_enabled()``
(it reads the compiler's own ``_OPENMP`` macro, so it cannot lie).

The extension is built without debug information (``-g0``: it would triple
the size of the wheel's only binary); ``KERNEL_DEBUG_BUILD=1`` keeps ``-g``.
"""

import os
import shutil
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_OPENMP_TEST = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n > 0 ? omp_get_max_threads() : 0);
    return 0;
}
"""

CYTHON_DIRECTIVES = {"language_level": 3, "boundscheck": False, "wraparound": False, "cdivision": True}


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


def _openmp_flags(compiler_type):
    if compiler_type == "msvc":
        return ["/openmp"], []
    return ["-fopenmp"], ["-fopenmp"]


def _compiler_supports_openmp(compiler):
    """Compile and link a tiny OpenMP program with ``compiler`` (the one
    setuptools will build the extension with)."""
    cflags, ldflags = _openmp_flags(compiler.compiler_type)
    tmp = tempfile.mkdtemp(prefix="kernel-omp-")
    cwd = os.getcwd()
    try:
        os.chdir(tmp)  # relative paths keep the probe's objects inside tmp
        with open("omp_test.c", "w") as f:
            f.write(_OPENMP_TEST)
        objs = compiler.compile(["omp_test.c"], extra_postargs=cflags)
        compiler.link_executable(objs, "omp_test", extra_postargs=ldflags)
        return True
    except Exception:
        return False
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    """Cythonize into the build directory, probe OpenMP with the real
    compiler, then add the flags."""

    def finalize_options(self):
        super().finalize_options()
        # Imported here, not at the top: only building the extension needs them
        # (pyproject's build-system lists both).
        import Cython
        import numpy as np
        from Cython.Build import cythonize

        for ext in self.extensions:
            ext.include_dirs = [np.get_include(), *ext.include_dirs]
            # The Cython that generated the C, for kernels.build_info(): the
            # performance gate only compares counts made by the same toolchain.
            ext.define_macros = [*ext.define_macros, ("KERNEL_CYTHON_VERSION", f'"{Cython.__version__}"')]
        generated = cythonize(self.extensions, compiler_directives=CYTHON_DIRECTIVES,
                              build_dir=os.path.join(self.build_temp, "cython"), quiet=True)
        # Keep setuptools' own Extension objects (it has set attributes on
        # them); only their sources change, from the .pyx to the generated C.
        sources = {ext.name: ext.sources for ext in generated}
        for ext in self.extensions:
            ext.sources = sources[ext.name]

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if _flag("KERNEL_DISABLE_OPENMP"):
            use_omp = False
            print("kernel build: OpenMP disabled by KERNEL_DISABLE_OPENMP, building serial kernels")
        else:
            use_omp = _compiler_supports_openmp(self.compiler)
            if use_omp:
                print(f"kernel build: OpenMP enabled ({' '.join(_openmp_flags(ctype)[0])})")
            else:
                print("kernel build: OpenMP not available, building serial kernels")
        opt = ["/O2"] if ctype == "msvc" else ["-O3"]  # no -march=native: wheels must stay portable
        if ctype != "msvc":
            # After Python's own CFLAGS (which carry -g), so this one wins.
            opt.append("-g" if _flag("KERNEL_DEBUG_BUILD") else "-g0")
            print(f"kernel build: debug info {'on (KERNEL_DEBUG_BUILD)' if _flag('KERNEL_DEBUG_BUILD') else 'off (-g0)'}")
        cflags, ldflags = _openmp_flags(ctype) if use_omp else ([], [])
        for ext in self.extensions:
            ext.extra_compile_args = opt + cflags + list(ext.extra_compile_args or [])
            ext.extra_link_args = ldflags + list(ext.extra_link_args or [])
        sys.stdout.flush()
        super().build_extensions()


extensions = [
    Extension(
        "kernel._cython.kernels",
        ["kernel/_cython/kernels.pyx"],
        include_dirs=["kernel/_cython"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
