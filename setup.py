"""Builds the compiled modules: every .pyx of kdp/_fast (the pipeline stages and their
tables) and of kdp/io (capture files; TAP ports later) becomes an extension module.

KDP_DEBUG=1 turns bounds checks, wraparound and C assertions back on and builds
with -O0 -g, for development and fuzzing.
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("KDP_DEBUG", "") not in ("", "0")
# KDP_ONLY=lpm,pcap builds just those modules (quicker while working on one); a name is a
# module's file name without .pyx, so no two packages may have a module of the same name.
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

# the packages whose .pyx are compiled (each also ships its .pxd/.pyx: pyproject.toml)
PACKAGES = ("kdp/_fast", "kdp/io")

sources = sorted(path for package in PACKAGES for path in glob.glob(package + "/*.pyx"))
names = [os.path.splitext(os.path.basename(path))[0] for path in sources]
clashes = sorted({name for name in names if names.count(name) > 1})
if clashes:
    raise SystemExit(f"setup.py: module names {clashes} are used in more than one of {PACKAGES}")
unknown = sorted(ONLY - set(names))
if unknown:
    raise SystemExit(f"setup.py: KDP_ONLY names no module: {unknown} (modules: {names})")

# C headers beside the modules (kdp/_fast/lpm*_kernels.h): a header edit rebuilds the
# modules of its package (pyproject.toml ships them in the sdist and wheel)
headers = {package: sorted(glob.glob(package + "/*.h")) for package in PACKAGES}

extensions = [
    Extension(
        os.path.splitext(path)[0].replace("/", "."),
        [path],
        include_dirs=[numpy.get_include(), "kdp/_fast", os.path.dirname(path)],
        depends=headers[os.path.dirname(path)],
        extra_compile_args=compile_args,
        define_macros=macros,
    )
    for path, name in zip(sources, names)
    if not ONLY or name in ONLY
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
