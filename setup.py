"""Builds the codec's Cython kernels; everything else is declared in setup.cfg."""
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = [
    Extension(
        "codec.pyx.lossless",
        ["codec/pyx/lossless.pyx"],
        include_dirs=[numpy.get_include(), "codec/pyx"],     # codec/pyx/xxhash: the vendored XXH3
        extra_compile_args=["-O3", "-fopenmp"],
        extra_link_args=["-fopenmp"],       # tile loops run on OpenMP's threads (see model_tiles)
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
]

setup(ext_modules=cythonize(KERNELS, language_level=3,
                            compiler_directives={"boundscheck": False, "wraparound": False,
                                                 "cdivision": True, "initializedcheck": False}))
