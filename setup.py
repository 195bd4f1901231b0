"""Build the one Cython extension, vtx._core (docs/architecture.rst, decision 3).

Everything the interpreter runs is `include`d into vtx/_core.pyx so that the
C compiler sees one translation unit and can inline across the fragments.
"""
import glob
import os
import shutil
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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

# Reusing the build.  pip builds in a fresh environment each time, where
# Cython's own headers are new, so `pip install -e '.[test]'` after
# `pip install -e .` would translate and compile the core again (minutes).
# When the in-tree module was built by this file in its plain flavour and is
# newer than every source of the core, it is copied instead.  The stamp
# beside it records the flavour (a sanitizer or debug build is never reused).
FLAVOUR = "release" if not any(os.environ.get(k) == "1" for k in ("VTX_ASAN", "VTX_DEBUG_BUILD", "VTX_ANNOTATE")) \
    else "special"
BUILT = os.path.join(HERE, "vtx", "_core" + sysconfig.get_config_var("EXT_SUFFIX"))
STAMP = os.path.join(HERE, "vtx", "_core.flavour")
CORE_SOURCES = ([os.path.join(HERE, "vtx", n) for n in ("_core.pyx", "_core.pxd")] +
                glob.glob(os.path.join(HERE, CORE, "**", "*.pxi"), recursive=True) +
                glob.glob(os.path.join(HERE, CORE, "**", "*.h"), recursive=True) +
                [os.path.abspath(__file__)])


def _reusable():
    try:
        with open(STAMP) as f:
            if f.read().strip() != FLAVOUR or FLAVOUR != "release":
                return False
        built = os.path.getmtime(BUILT)
    except OSError:
        return False
    return all(os.path.getmtime(s) < built for s in CORE_SOURCES)


class BuildExt(build_ext):
    """build_ext that reuses an up-to-date in-tree vtx._core (see above) and
    records the flavour of what it builds."""

    def build_extension(self, ext):
        target = os.path.abspath(self.get_ext_fullpath(ext.name))
        if _reusable():
            if target != BUILT:
                self.mkpath(os.path.dirname(target))
                shutil.copy2(BUILT, target)
            print(f"vtx._core: the in-tree build is up to date, reused ({BUILT})")
            return
        super().build_extension(ext)
        # An in-place build and an editable install copy the module they
        # built into the tree.
        if target == BUILT or self.inplace or getattr(self, "editable_mode", False):
            with open(STAMP, "w") as f:
                f.write(FLAVOUR + "\n")

    def copy_extensions_to_source(self):
        # setuptools builds an --inplace extension in build/ (self.inplace is
        # 0 while build_extension runs) and copies it into the tree here, so
        # `python setup.py build_ext --inplace` records its flavour at this
        # point, or the next pip install would translate and compile again.
        super().copy_extensions_to_source()
        with open(STAMP, "w") as f:
            f.write(FLAVOUR + "\n")


REUSE = _reusable()

ext = Extension(
    "vtx._core",
    sources=[os.path.join("vtx", "_core.c" if REUSE else "_core.pyx")],
    include_dirs=[os.path.join(HERE, CORE), os.path.join(HERE, "vtx")],
    # `cdef inline` is a promise here: the interpreter's small helpers (the
    # condition codes, the memory fast path) must be inlined into the
    # handlers for the constants to fold, and gcc's heuristics decline some.
    extra_compile_args=extra + ["-fno-strict-aliasing", "-Wno-unused-function", "-fno-tree-slp-vectorize",
                                "-DCYTHON_INLINE=__inline__ __attribute__((always_inline))"],
    extra_link_args=link,
)


def _extensions():
    if REUSE:
        return [ext]
    from Cython.Build import cythonize
    return cythonize(
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
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
