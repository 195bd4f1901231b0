"""Build the one Cython extension, vtx._core (docs/architecture.rst, decision 3).

Everything the interpreter runs is `include`d into vtx/_core.pyx so that the
C compiler sees one translation unit and can inline across the fragments.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CORE = os.path.join("vtx", "core")

debug = os.environ.get("VTX_DEBUG_BUILD") == "1"
extra = ["-O0", "-g"] if debug else ["-O2"]
link = []

# VTX_ASAN=1: AddressSanitizer and UndefinedBehaviorSanitizer (tools/asan_tests.sh).
# -O1 -g replaces the optimisation flags above. The module must then run
# with the compiler's libasan preloaded into python.
if os.environ.get("VTX_ASAN") == "1":
    sanitize = [
        "-fsanitize=address",
        "-fsanitize=undefined",
        "-fno-sanitize-recover=undefined",
        "-fno-omit-frame-pointer",
    ]
    extra = ["-O1", "-g"] + sanitize
    link = sanitize

ext = Extension(
    "vtx._core",
    sources=[os.path.join("vtx", "_core.pyx")],
    include_dirs=[os.path.join(HERE, CORE), os.path.join(HERE, "vtx")],
    # `cdef inline` is a promise here: the interpreter's small helpers (the
    # condition codes, the memory fast path) must be inlined into the
    # handlers for the constants to fold, and gcc's heuristics decline some.
    extra_compile_args=extra + ["-fno-strict-aliasing", "-Wno-unused-function",
                                "-DCYTHON_INLINE=__inline__ __attribute__((always_inline))"],
    extra_link_args=link,
)

setup(
    ext_modules=cythonize(
        [ext],
        language_level=3,
        include_path=[os.path.join(HERE, "vtx"), os.path.join(HERE, CORE)],
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
        annotate=os.environ.get("VTX_ANNOTATE") == "1",
    ),
)
