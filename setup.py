"""Build the Cython kernels (kernel/_cython/kernels.pyx).

Project metadata lives in pyproject.toml; this file only describes the
extension.  OpenMP is used when the C compiler can compile *and link* a tiny
OpenMP program; ``KERNEL_DISABLE_OPENMP=1`` forces serial kernels.  The
kernels report what they got through ``kernel._cython.kernels.openmp_enabled()``
(it reads the compiler's own ``_OPENMP`` macro, so it cannot lie).
"""

import os
import shutil
import sys
import tempfile

import numpy as np
import Cython
from Cython.Build import cythonize
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
    """Probe OpenMP with the real compiler, then add the flags."""

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if os.environ.get("KERNEL_DISABLE_OPENMP", "") not in ("", "0"):
            use_omp = False
            print("kernel build: OpenMP disabled by KERNEL_DISABLE_OPENMP, building serial kernels")
        else:
            use_omp = _compiler_supports_openmp(self.compiler)
            if use_omp:
                print(f"kernel build: OpenMP enabled ({' '.join(_openmp_flags(ctype)[0])})")
            else:
                print("kernel build: OpenMP not available, building serial kernels")
        opt = ["/O2"] if ctype == "msvc" else ["-O3"]  # no -march=native: wheels must stay portable
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
        include_dirs=[np.get_include(), "kernel/_cython"],
        # The Cython that generated the C, for kernels.build_info(): the
        # performance gate only compares counts made by the same toolchain.
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("KERNEL_CYTHON_VERSION", f'"{Cython.__version__}"')],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
