"""Builds the compiled modules: every .pyx of kdp/_fast (the pipeline stages and their
tables) and of kdp/io (capture files; TAP ports later) becomes an extension module.

KDP_DEBUG=1 turns bounds checks, wraparound and C assertions back on and builds
with -O0 -g, for development and fuzzing.
"""
import glob
import os
import re

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("KDP_DEBUG", "") not in ("", "0")
# KDP_ONLY=lpm,pcap builds just those modules (quicker while working on one); a name is a
# module's file name without .pyx, so no two packages may have a module of the same name.
ONLY = {m for m in os.environ.get("KDP_ONLY", "").split(",") if m}

# KDP_MARCH chooses the target CPU. The default, x86-64-v3 (AVX2, BMI2: every x86 server
# since Intel Haswell and AMD Zen), makes a build that runs on any such machine: a wheel
# built on one server never dies with SIGILL on another; KDP_MARCH=x86-64-v2 reaches older
# CPUs. The IPv6 LPM walk is compiled for x86-64-v2, AVX2 and AVX-512 as well and chosen
# at run time (kdp/_fast/lpm6_kernels.h), so a portable build keeps its AVX-512 speed.
# KDP_MARCH=native tunes everything for the building machine (bench/README.md,
# "Portable builds", measures the difference).
MARCH = os.environ.get("KDP_MARCH", "x86-64-v3")
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


def header_depends(pyx):
    """The C headers (e.g. kdp/_fast/lpm*_kernels.h) a module's code reaches: named by
    `cdef extern from "x.h"` in its .pyx or in a .pxd it cimports (transitively), or
    #include'd by such a header.  They are its depends, so that editing one rebuilds it
    (pyproject.toml ships them in the sdist and the wheel)."""
    extern = re.compile(r'cdef\s+extern\s+from\s+"([^"]+\.h)"')
    cimport = re.compile(r"^\s*(?:from\s+([\w.]+)\s+cimport|cimport\s+([\w.]+))", re.M)
    include = re.compile(r'#include\s+"([^"]+\.h)"')
    seen, todo = set(), [pyx, pyx[:-4] + ".pxd"]
    while todo:
        path = todo.pop()
        if path in seen or not os.path.exists(path):
            continue
        seen.add(path)
        text = open(path).read()
        here = os.path.dirname(path)
        names = include.findall(text) if path.endswith(".h") else extern.findall(text)
        todo += [os.path.join(here, name) for name in names]
        if not path.endswith(".h"):
            todo += [(a or b).replace(".", "/") + ".pxd" for a, b in cimport.findall(text)]
    return sorted(path for path in seen if path.endswith(".h"))


extensions = [
    Extension(
        os.path.splitext(path)[0].replace("/", "."),
        [path],
        include_dirs=[numpy.get_include(), "kdp/_fast", os.path.dirname(path)],
        depends=header_depends(path),
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
