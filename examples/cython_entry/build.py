"""Build sell.pyx against the installed kernel package:

    python build.py build_ext --inplace
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

import kernel._cython

setup(name="sell", ext_modules=cythonize(
    [Extension("sell", ["sell.pyx"], extra_compile_args=["-O2", "-fopenmp"], extra_link_args=["-fopenmp"])],
    include_path=[kernel._cython.get_include()]))
