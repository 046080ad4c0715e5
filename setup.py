"""Builds the Cython core: every kdp/_fast/*.pyx becomes an extension module.

KDP_DEBUG=1 turns bounds checks, wraparound and C assertions back on and builds
with -O0 -g, for development and fuzzing.
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("KDP_DEBUG", "") not in ("", "0")
# KDP_ONLY=lpm,packet builds just those modules (quicker while working on one).
ONLY = {m for m in os.environ.get("KDP_ONLY", "").split(",") if m}

# KDP_MARCH chooses the target CPU; the default tunes for the machine that builds,
# which is where kdp runs (pip builds it from source there).
MARCH = os.environ.get("KDP_MARCH", "native")
compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-march=" + MARCH, "-fno-strict-aliasing"]
if os.uname().machine not in ("x86_64", "AMD64"):
    compile_args = [a for a in compile_args if not a.startswith("-march")]
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if not DEBUG:
    macros.append(("NDEBUG", "1"))

extensions = [
    Extension(
        "kdp._fast." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[numpy.get_include(), "kdp/_fast"],
        extra_compile_args=compile_args,
        define_macros=macros,
    )
    for path in sorted(glob.glob("kdp/_fast/*.pyx"))
    if not ONLY or os.path.splitext(os.path.basename(path))[0] in ONLY
]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

setup(ext_modules=cythonize(extensions, compiler_directives=directives, nthreads=2))
