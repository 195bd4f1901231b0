"""Build benchmarks/guests/*.c into flat binaries with the system gcc and ld.

The same tools, flags and layout as the test guests (tests/guests/build.py,
whose flags, linker script and cache directory this reuses): freestanding
code for -m32 or -m64, linked at LOAD_ADDRESS with tests/guests/link.ld.  A
benchmark guest is one C file with its own entry (no runtime: the kernels
must not measure the tests' printf), so the tests' builder, which always
links its runtime, is not called as such.  Images are cached by content
(source, linker script, flags, gcc version): a session builds each variant
once, and later sessions reuse it while nothing changed.
"""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUESTS = HERE / "guests"
TESTS_GUESTS = HERE.parent / "tests" / "guests"

# Loaded from its path under a name of its own: both directories are called
# "guests", and a run of tests/ and benchmarks/ together must not mix them up.
_spec = importlib.util.spec_from_file_location("_vtx_test_guest_build", TESTS_GUESTS / "build.py")
_tests_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tests_build)

LOAD_ADDRESS = _tests_build.LOAD_ADDRESS
LINK_SCRIPT = TESTS_GUESTS / "link.ld"
BuildError = _tests_build.BuildError
missing_tools = _tests_build.missing_tools
symbols = _tests_build.symbols


def _run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise BuildError(f"{' '.join(cmd)}\n{p.stdout}{p.stderr}")


def build(name, bits, opt="-O2"):
    """(image, symbols) of benchmarks/guests/NAME.c built for 32- or 64-bit
    code at optimization level opt."""
    m, emul = _tests_build.ARCH[bits]
    flags = [m] + _tests_build.CFLAGS + [opt]
    source = GUESTS / f"{name}.c"
    key = hashlib.sha256()
    for part in [_tests_build.gcc_version(), " ".join(flags), emul]:
        key.update(part.encode() + b"\0")
    for f in (source, LINK_SCRIPT):
        key.update(f.read_bytes() + b"\0")
    tag = f"bench-{name}-{bits}{opt}-{key.hexdigest()[:16]}"
    out = _tests_build.cache_dir() / f"{tag}.bin"
    mapfile = out.with_suffix(".map")
    if not out.exists():
        with tempfile.TemporaryDirectory(prefix="vtx-bench-guest-") as tmp:
            obj, binary, tmpmap = (str(Path(tmp) / n) for n in ("guest.o", "guest.bin", "guest.map"))
            _run(["gcc"] + flags + ["-c", str(source), "-o", obj], tmp)
            _run(["ld", "-m", emul, "-nostdlib", "--build-id=none", "-T", str(LINK_SCRIPT),
                  "--oformat", "binary", "-Map", tmpmap, "-o", binary, obj], tmp)
            # Publish atomically (the map first): parallel runs may build the same image.
            for src, dst in ((tmpmap, mapfile), (binary, out)):
                part = dst.with_suffix(dst.suffix + f".{os.getpid()}.tmp")
                shutil.copyfile(src, part)
                os.replace(part, dst)
    return out.read_bytes(), symbols(mapfile)
