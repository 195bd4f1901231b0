"""Freestanding C guests built with the system gcc and GNU ld: :func:`cc`.

A guest is the C source given plus vtx's small runtime (``vtx/runtime``):
``start.c`` (``_start`` calls ``main``, then HLT at ``_halt`` with main's
value in EAX/RAX), ``rt.c`` and ``rt.h`` (the memory functions gcc may call,
``inb``/``outb``, and a ``printf`` that writes to the debug port E9H, one OUT
and so one VM exit per character).  It is compiled freestanding for the mode
(``-m16`` for real mode, ``-m32`` for protected mode, ``-m64`` for long mode;
no red zone, no PIC, no stack protector, integer registers only) and linked
with ``vtx/runtime/link.ld`` at the load address into an ELF file.  Builds are
cached by content (sources, flags, gcc version) in ``$VTX_GUEST_CACHE`` or
``<tmp>/vtx-guests``.  docs/tutorials/c_guest.rst walks through one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import attrs

from .errors import ArgumentError, AssemblerNotFound, VtxError
from .loader import LoadedImage, load_elf, parse_elf

from .vm import VM

__all__ = ["CGuest", "CompileError", "cc", "RUNTIME_DIR", "CFLAGS"]

#: The runtime's sources and the linker script.
RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"

#: The flags of every build (docs/architecture.rst, "Guests from files"):
#: freestanding code that needs nothing the guest has not set up.
CFLAGS = ("-ffreestanding", "-fno-pic", "-fno-pie", "-nostdlib", "-fno-stack-protector",
          "-fno-asynchronous-unwind-tables", "-mno-red-zone", "-mgeneral-regs-only")

_MODES = {16: ("-m16", "elf_i386"), 32: ("-m32", "elf_i386"), 64: ("-m64", "elf_x86_64")}
_MODE_NAMES = {"real": 16, "protected": 32, "long": 64}


class CompileError(VtxError):
    """gcc or ld rejected the guest: the message has the command and its output."""


@attrs.frozen
class CGuest:
    """A built C guest: ``elf`` (the linked ELF file), ``image`` (the flat
    binary of its loaded bytes, from ``load_address``), ``entry``, ``bits``
    (16, 32 or 64), ``symbols`` (name to address: ``main``, ``_halt``...)."""

    elf: bytes = attrs.field(repr=False)
    image: bytes = attrs.field(repr=False)
    load_address: int
    entry: int
    bits: int
    symbols: dict = attrs.field(repr=False)

    @property
    def halt_address(self) -> int:
        """Where the guest halts after main returns (the HLT exit's RIP)."""
        return self.symbols["_halt"]

    def load(self, vm: VM, setup: bool = True) -> LoadedImage:
        """Load the guest into ``vm`` (:func:`vtx.load_elf`) and, with
        ``setup``, set up the first vCPU in the guest's mode at its entry."""
        return load_elf(vm, self.elf, mode=self.bits if setup else None)


def missing_tools() -> list:
    """The names of the tools a build needs that are not installed."""
    return [t for t in ("gcc", "ld") if shutil.which(t) is None]


def _cache_dir() -> Path:
    d = Path(os.environ.get("VTX_GUEST_CACHE") or Path(tempfile.gettempdir()) / "vtx-guests")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _looks_like_source(s: str) -> bool:
    return "\n" in s or "{" in s or ";" in s


def _inputs(source_or_files) -> list:
    """[(file name, bytes)] of the user's inputs."""
    if isinstance(source_or_files, str) and _looks_like_source(source_or_files):
        return [("guest.c", source_or_files.encode())]
    if isinstance(source_or_files, (str, os.PathLike)):
        source_or_files = [source_or_files]
    if isinstance(source_or_files, (bytes, bytearray)) or not isinstance(source_or_files, Iterable):
        raise TypeError("cc() takes C source text, a path, or a list of paths (.c, .S, .s)")
    out = []
    for f in source_or_files:
        p = Path(f)
        if p.suffix not in (".c", ".S", ".s"):
            raise ArgumentError(f"{p}: cc() builds .c, .S and .s files")
        out.append((p.name, p.read_bytes()))
    if not out:
        raise ArgumentError("cc() needs at least one source")
    return out


def _run(cmd, cwd):
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise AssemblerNotFound(f"{cmd[0]} is not installed: vtx.cc needs gcc and GNU ld") from None
    if p.returncode:
        raise CompileError(f"{' '.join(cmd)}\n{p.stdout}{p.stderr}")


def cc(source_or_files: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
       mode: Union[int, str] = 64, opt: str = "-O2", runtime: bool = True,
       cflags: Sequence[str] = (), load_address: int = 0x1000,
       include_dirs: Sequence[Union[str, "os.PathLike[str]"]] = ()) -> CGuest:
    """Build a freestanding C guest for ``mode`` (16 or "real", 32 or
    "protected", 64 or "long").

    ``source_or_files`` is C source text (a string with a newline, a brace or
    a semicolon) or a path or a list of paths to ``.c``, ``.S`` or ``.s``
    files.  ``runtime`` links vtx's runtime (the entry ``_start`` and the
    ``printf`` of ``rt.h``, which the source may ``#include``); without it the
    sources provide ``_start`` in section ``.text.start``.  ``opt`` is the
    optimization flag, ``cflags`` more flags for gcc.  The guest is linked at
    ``load_address`` (below 64 KiB, with room for the stack, for a 16-bit
    guest).  Returns a :class:`CGuest`; raises :class:`CompileError` when gcc
    or ld fails and :class:`vtx.errors.AssemblerNotFound` without them."""
    bits = _MODE_NAMES.get(mode, mode)
    if bits not in _MODES:
        raise ArgumentError(f"mode is 16, 32, 64, 'real', 'protected' or 'long', not {mode!r}")
    if isinstance(load_address, bool) or not isinstance(load_address, int) or load_address < 0 \
            or load_address % 16:
        raise ArgumentError(f"load_address is a non-negative multiple of 16, not {load_address!r}")
    if bits == 16 and load_address >= 0x10000:
        raise ArgumentError(f"a 16-bit guest runs in the first 64 KiB (CS = 0): load_address "
                            f"{load_address:#x} is beyond")
    inputs = _inputs(source_or_files)
    m, emul = _MODES[bits]
    flags = [m, *CFLAGS, opt, *cflags]
    rt = [(n, (RUNTIME_DIR / n).read_bytes()) for n in ("start.c", "rt.c")] if runtime else []
    script = (RUNTIME_DIR / "link.ld").read_text().replace("{load}", f"{load_address:#x}")
    key = hashlib.sha256()
    gcc_version = _gcc_version()
    for part in [gcc_version, " ".join(flags), emul, script, (RUNTIME_DIR / "rt.h").read_text()]:
        key.update(part.encode() + b"\0")
    for name, data in rt + inputs:
        key.update(name.encode() + b"\0" + data + b"\0")
    for d in include_dirs:
        key.update(os.fspath(d).encode() + b"\0")
    out = _cache_dir() / f"cc-{bits}{opt}-{key.hexdigest()[:20]}.elf"
    if not out.exists():
        with tempfile.TemporaryDirectory(prefix="vtx-cc-") as tmp:
            objs = []
            includes = ["-I", str(RUNTIME_DIR)] + [a for d in include_dirs for a in ("-I", os.fspath(d))]
            for i, (name, data) in enumerate(rt + inputs):
                src = Path(tmp) / f"{i}-{name}"
                src.write_bytes(data)
                obj = str(Path(tmp) / f"{i}.o")
                _run(["gcc", *flags, *includes, "-c", str(src), "-o", obj], tmp)
                objs.append(obj)
            ld_script = Path(tmp) / "link.ld"
            ld_script.write_text(script)
            elf = Path(tmp) / "guest.elf"
            _run(["ld", "-m", emul, "-nostdlib", "--build-id=none", "-T", str(ld_script), "-o", str(elf)]
                 + objs, tmp)
            part = out.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(elf, part)
            os.replace(part, out)         # atomically: parallel builds may make the same guest
    elf = out.read_bytes()
    _bits, entry, segments, symbols = parse_elf(elf)
    return CGuest(elf, _flat(elf, segments, load_address), load_address, entry, bits, symbols)


def _flat(elf: bytes, segments, base: int) -> bytes:
    """The loaded bytes from ``base`` to the end of the last file image (the
    .bss beyond is left out: fresh guest memory is zero)."""
    end = max(s.paddr + s.filesz for s, _ in segments)
    image = bytearray(max(0, end - base))
    for s, offset in segments:
        if s.filesz:
            image[s.paddr - base:s.paddr - base + s.filesz] = elf[offset:offset + s.filesz]
    return bytes(image)


_version: Optional[str] = None


def _gcc_version() -> str:
    global _version
    if _version is None:
        try:
            _version = subprocess.run(["gcc", "--version"], capture_output=True, text=True,
                                      check=True).stdout.splitlines()[0]
        except (OSError, subprocess.CalledProcessError):
            raise AssemblerNotFound("gcc is not installed: vtx.cc needs gcc and GNU ld") from None
    return _version
