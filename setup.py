"""Build the one Cython extension, vtx._core (DESIGN.md decision 3).

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

ext = Extension(
    "vtx._core",
    sources=[os.path.join("vtx", "_core.pyx")],
    include_dirs=[os.path.join(HERE, CORE), os.path.join(HERE, "vtx")],
    extra_compile_args=extra + ["-fno-strict-aliasing", "-Wno-unused-function"],
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
