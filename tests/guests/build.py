"""Build the C guests under tests/guests/ with the system gcc and ld into flat
binaries loaded at 0x1000, cached by content.

A guest is start.S + rt.c (vtx/runtime) + NAME.c, compiled for 32-bit (-m32, linked with
``ld -m elf_i386``) or 64-bit code (``-m64``, ``elf_x86_64``) with the
freestanding flags below and one optimization level, and linked with
link.ld.  Images are cached in a temporary directory under a key made of
every input file, the flags and the gcc version, so a test run builds each
variant once and a changed source builds anew.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The C runtime (rt.c, rt.h) is vtx's public one (vtx/runtime, used by vtx.cc).
RUNTIME_DIR = HERE.parent.parent / "vtx" / "runtime"
LOAD_ADDRESS = 0x1000

BASE_CFLAGS = ["-ffreestanding", "-fno-pic", "-fno-pie", "-nostdlib", "-fno-stack-protector",
               "-fno-asynchronous-unwind-tables", "-mno-red-zone"]
CFLAGS = BASE_CFLAGS + ["-mgeneral-regs-only"]
RUNTIME = ["start.S", "rt.c"]
ARCH = {32: ("-m32", "elf_i386"), 64: ("-m64", "elf_x86_64")}

# Flavours of a build:
#   "general": the integer-only guests (-mgeneral-regs-only), entered at start.S;
#   "fp":      ordinary gcc output: x87 and SSE in use (-msse2 for 32-bit code,
#              which keeps floating point on the x87), entered at start_fp.S,
#              which enables the FPU and SSE as an OS would;
#   "native":  the "fp" code as a static Linux user program for the host CPU,
#              the oracle the "fp" guests are compared with (an ELF file).
FLAVOURS = {
    "general": (CFLAGS, ["start.S", "rt.c"]),
    "fp": (BASE_CFLAGS, ["start_fp.S", "rt.c"]),
    "native": (BASE_CFLAGS + ["-DGUEST_NATIVE"], ["start_native.S", "rt.c"]),
    # 32-bit code with all floating point on the x87 and no SSE at all
    # (tests/test_insn_x87.py), and the same as a host program
    "x87": (BASE_CFLAGS + ["-mno-sse", "-mfpmath=387", "-DX87_ONLY"], ["start_fp.S", "rt.c"]),
    "x87native": (BASE_CFLAGS + ["-mno-sse", "-mfpmath=387", "-DGUEST_NATIVE"], ["start_native.S", "rt.c"]),
}


class BuildError(Exception):
    """gcc or ld failed: the message has the command and its output."""


def missing_tools():
    """The names of the tools a build needs that are not installed."""
    return [t for t in ("gcc", "ld") if shutil.which(t) is None]


_gcc_version = None


def gcc_version():
    global _gcc_version
    if _gcc_version is None:
        _gcc_version = subprocess.run(["gcc", "--version"], capture_output=True, text=True,
                                      check=True).stdout.splitlines()[0]
    return _gcc_version


def cache_dir():
    d = Path(os.environ.get("VTX_GUEST_CACHE") or Path(tempfile.gettempdir()) / "vtx-guests")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise BuildError(f"{' '.join(cmd)}\n{p.stdout}{p.stderr}")


def build(name, bits, opt="-O2", flavour="general"):
    """The flat binary image of guest NAME (tests/guests/NAME.c) for 32- or
    64-bit code at optimization level opt, and the path of its linker map.
    For the "native" flavour the image is a static Linux executable (its
    bytes; the map's sibling ``.elf`` path runs it)."""
    m, emul = ARCH[bits]
    base_flags, runtime = FLAVOURS[flavour]
    sources = runtime + [f"{name}.c"]
    flags = [m] + base_flags + [opt]
    if flavour in ("fp", "native") and bits == 32:
        flags.append("-msse2")
    key = hashlib.sha256()
    for part in [gcc_version(), " ".join(flags), emul, flavour]:
        key.update(part.encode() + b"\0")
    for f in sources + ["rt.h", "link.ld"]:
        key.update(f.encode() + b"\0" + _source(f).read_bytes() + b"\0")
    tag = f"{name}-{flavour}-{bits}{opt}-{key.hexdigest()[:16]}"
    out = cache_dir() / f"{tag}.bin"
    mapfile = cache_dir() / f"{tag}.map"
    if out.exists():
        return out.read_bytes(), mapfile
    with tempfile.TemporaryDirectory(prefix="vtx-guest-") as tmp:
        objs = []
        for src in sources:
            obj = str(Path(tmp) / (Path(src).stem + ".o"))
            _run(["gcc"] + flags + ["-I", str(HERE), "-I", str(RUNTIME_DIR), "-c", str(_source(src)), "-o", obj],
                 tmp)
            objs.append(obj)
        binary = str(Path(tmp) / "guest.bin")
        if flavour in ("native", "x87native"):
            _run(["ld", "-m", emul, "-static", "-nostdlib", "--build-id=none", "-Map",
                  str(Path(tmp) / "guest.map"), "-o", binary] + objs, tmp)
        else:
            _run(["ld", "-m", emul, "-nostdlib", "--build-id=none", "-T", str(HERE / "link.ld"),
                  "--oformat", "binary", "-Map", str(Path(tmp) / "guest.map"), "-o", binary] + objs, tmp)
        data = _publish(tmp, binary, out, mapfile)
    return data, mapfile


def _source(name):
    """The path of a build input: the runtime's in vtx/runtime, the rest here."""
    return RUNTIME_DIR / name if name in ("rt.c", "rt.h") else HERE / name


def _publish(tmp, binary, out, mapfile):
    """Copy a fresh build's image and map into the cache, atomically
    (parallel test runs may build the same image); the image's bytes."""
    data = Path(binary).read_bytes()
    for src_path, dst in ((Path(tmp) / "guest.map", mapfile), (Path(binary), out)):
        part = dst.with_suffix(dst.suffix + f".{os.getpid()}.tmp")
        shutil.copyfile(src_path, part)
        os.replace(part, dst)
    return data


def build_asm(name, bits):
    """The flat binary image of the assembly guest tests/guests/NAME.S (which
    may switch modes with .code16/.code32/.code64), linked at 0x1000 with
    link.ld, and the path of its linker map."""
    m, emul = ARCH[bits]
    key = hashlib.sha256()
    for part in [gcc_version(), m, emul]:
        key.update(part.encode() + b"\0")
    for f in [f"{name}.S", "link.ld"]:
        key.update(f.encode() + b"\0" + (HERE / f).read_bytes() + b"\0")
    tag = f"{name}-asm{bits}-{key.hexdigest()[:16]}"
    out = cache_dir() / f"{tag}.bin"
    mapfile = cache_dir() / f"{tag}.map"
    if out.exists():
        return out.read_bytes(), mapfile
    with tempfile.TemporaryDirectory(prefix="vtx-guest-") as tmp:
        obj = str(Path(tmp) / "guest.o")
        _run(["gcc", m, "-c", str(HERE / f"{name}.S"), "-o", obj], tmp)
        binary = str(Path(tmp) / "guest.bin")
        _run(["ld", "-m", emul, "-nostdlib", "--build-id=none", "-T", str(HERE / "link.ld"),
              "--oformat", "binary", "-Map", str(Path(tmp) / "guest.map"), "-o", binary, obj], tmp)
        data = _publish(tmp, binary, out, mapfile)
    return data, mapfile


def run_native(name, bits, opt="-O2", timeout=60, flavour="native"):
    """Build guest NAME as a Linux program and run it on the host CPU: its
    standard output (text) and exit status."""
    data, mapfile = build(name, bits, opt, flavour=flavour)
    exe = mapfile.with_suffix(".elf")
    if not exe.exists():
        part = exe.with_suffix(f".{os.getpid()}.tmp")
        part.write_bytes(data)
        part.chmod(0o755)
        os.replace(part, exe)
    p = subprocess.run([str(exe)], capture_output=True, timeout=timeout)
    return p.stdout.decode(), p.returncode


def symbols(mapfile):
    """Global symbol addresses from an ld map file (for test diagnostics)."""
    syms = {}
    for line in Path(mapfile).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("0x") and parts[1].isidentifier():
            syms[parts[1]] = int(parts[0], 16)
    return syms
