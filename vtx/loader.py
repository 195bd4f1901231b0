"""Guests from files: ELF executables and flat binaries loaded into a VM.

:func:`load_elf` reads the program headers of a little-endian x86 ELF file
(ELF32 for EM_386, ELF64 for EM_X86_64: System V ABI, "Program Header") and
copies each PT_LOAD segment to guest-physical memory, at its physical address
(``p_paddr``, as a boot loader does) or at its virtual address (``p_vaddr``,
for an image whose page tables map it one-to-one).  The bytes of a segment
beyond its file image (``p_memsz - p_filesz``, the .bss) are zeroed.
:func:`load_flat` copies a flat binary.  Both return a :class:`LoadedImage`
and can point the first vCPU at the entry point and set up its mode
(docs/architecture.rst, "Guests from files").
"""

from __future__ import annotations

import os
import struct
from typing import Optional, Union

import attrs

from .errors import ArgumentError, GuestMemoryError, VtxError

from .vm import VM

__all__ = ["ElfError", "LoadedImage", "Segment", "load_elf", "load_flat", "parse_elf"]

PT_LOAD = 1
EM_386 = 3
EM_X86_64 = 62
_MACHINES = {EM_386: "EM_386", EM_X86_64: "EM_X86_64"}
_MODE_BITS = {16: 16, 32: 32, 64: 64, "real": 16, "protected": 32, "long": 64}

Source = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]


class ElfError(VtxError, ValueError):
    """The file is not an ELF executable vtx can load (not ELF, not x86,
    big-endian, truncated, or segments that overlap)."""


@attrs.frozen
class Segment:
    """One PT_LOAD segment as loaded: ``addr`` in guest-physical memory,
    ``filesz`` bytes from the file, ``memsz`` bytes in all (the rest zeroed)."""

    addr: int
    filesz: int
    memsz: int
    vaddr: int
    paddr: int
    flags: int


@attrs.frozen
class LoadedImage:
    """What a loader put into a VM.

    ``entry`` is the entry point (for an ELF file loaded at its physical
    addresses, the physical address of ``e_entry``), ``bits`` the mode the
    vCPU was set up in (16, 32 or 64), else the code size the file declares
    (32 for ELF32, 64 for ELF64; None for a flat binary), ``segments`` the loaded ranges and ``symbols`` the
    ELF symbol table (name to value; empty for a flat binary or a stripped
    file)."""

    entry: int
    bits: Optional[int]
    segments: tuple
    symbols: dict = attrs.field(factory=dict)

    @property
    def end(self) -> int:
        """One past the highest loaded byte."""
        return max((s.addr + s.memsz for s in self.segments), default=self.entry)


def _read_source(source: Source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read()
    raise TypeError(f"a guest is bytes or a path, not {type(source).__name__}")


def parse_elf(data: bytes):
    """(bits, e_entry, [program headers as Segment with addr = p_paddr],
    symbols) of an ELF file; :class:`ElfError` when it cannot be loaded."""
    if len(data) < 16 or data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file (no \\x7fELF magic)")
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (1, 2):
        raise ElfError(f"unknown ELF class {ei_class} (1 is ELF32, 2 is ELF64)")
    if ei_data == 2:
        raise ElfError("a big-endian ELF file: x86 code is little-endian")
    if ei_data != 1:
        raise ElfError(f"unknown ELF data encoding {ei_data}")
    is64 = ei_class == 2
    hdr = struct.Struct("<HHIQQQIHHHHHH" if is64 else "<HHIIIIIHHHHHH")
    if len(data) < 16 + hdr.size:
        raise ElfError(f"truncated ELF header ({len(data)} bytes)")
    (e_type, e_machine, _version, e_entry, e_phoff, e_shoff, _flags, _ehsize, e_phentsize, e_phnum,
     e_shentsize, e_shnum, _shstrndx) = hdr.unpack_from(data, 16)
    if e_machine not in _MACHINES:
        raise ElfError(f"the ELF file is for machine {e_machine}, not x86 (EM_386 = 3, EM_X86_64 = 62)")
    if (e_machine == EM_X86_64) != is64:
        raise ElfError(f"an ELF{64 if is64 else 32} file for {_MACHINES[e_machine]}: vtx loads ELF32 "
                       "EM_386 and ELF64 EM_X86_64 files")
    if e_type not in (2, 3):
        raise ElfError(f"ELF type {e_type} is not an executable (ET_EXEC = 2; a relocatable object "
                       "must be linked first)")
    ph = struct.Struct("<IIQQQQQQ" if is64 else "<IIIIIIII")
    if e_phnum and e_phentsize < ph.size:
        raise ElfError(f"program header entries of {e_phentsize} bytes (at least {ph.size})")
    if e_phoff + e_phnum * e_phentsize > len(data):
        raise ElfError(f"truncated: the program headers end at {e_phoff + e_phnum * e_phentsize:#x}, "
                       f"the file at {len(data):#x}")
    segments = []
    for i in range(e_phnum):
        fields = ph.unpack_from(data, e_phoff + i * e_phentsize)
        if is64:
            p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _align = fields
        else:
            p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, _align = fields
        if p_type != PT_LOAD or p_memsz == 0:
            continue
        if p_filesz > p_memsz:
            raise ElfError(f"segment {i}: p_filesz {p_filesz:#x} exceeds p_memsz {p_memsz:#x}")
        if p_offset + p_filesz > len(data):
            raise ElfError(f"truncated: segment {i} needs file bytes up to {p_offset + p_filesz:#x}, "
                           f"the file has {len(data):#x}")
        segments.append((Segment(p_paddr, p_filesz, p_memsz, p_vaddr, p_paddr, p_flags), p_offset))
    if not segments:
        raise ElfError("the ELF file has no PT_LOAD segment")
    symbols = _symbols(data, is64, e_shoff, e_shentsize, e_shnum)
    return (64 if is64 else 32), e_entry, segments, symbols


def _symbols(data, is64, shoff, shentsize, shnum):
    """The named symbols of the first SHT_SYMTAB section (name -> value);
    empty when there is none or the section headers are damaged."""
    sh = struct.Struct("<IIQQQQIIQQ" if is64 else "<IIIIIIIIII")
    sym = struct.Struct("<IBBHQQ" if is64 else "<IIIBBH")
    if not shoff or shentsize < sh.size or shoff + shnum * shentsize > len(data):
        return {}
    headers = [sh.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    out = {}
    for h in headers:
        if h[1] != 2:                    # SHT_SYMTAB
            continue
        offset, size, link = h[4], h[5], h[6]
        if link >= len(headers) or offset + size > len(data):
            return {}
        stroff, strsize = headers[link][4], headers[link][5]
        strtab = data[stroff:stroff + strsize]
        for off in range(offset, offset + size - sym.size + 1, sym.size):
            fields = sym.unpack_from(data, off)
            name_off, value, info = (fields[0], fields[4], fields[1]) if is64 else fields[:2] + (fields[3],)
            if info & 0xF in (3, 4):         # STT_SECTION, STT_FILE: not addresses of the program
                continue
            end = strtab.find(b"\0", name_off)
            name = strtab[name_off:end].decode("ascii", "replace") if end > name_off else ""
            if name:
                out[name] = value
        break
    return out


def _check_fits(vm: VM, segs):
    spans = sorted((s.addr, s.addr + s.memsz) for s in segs)
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        if b0 < a1:
            raise ElfError(f"segments overlap: [{a0:#x}, {a1:#x}) and [{b0:#x}, {b1:#x})")
    for s in segs:
        if s.addr + s.memsz > vm.memory_size and not _in_other_slot(vm, s):
            raise GuestMemoryError(
                f"a segment at [{s.addr:#x}, {s.addr + s.memsz:#x}) lies outside guest memory "
                f"[0, {vm.memory_size:#x}): give the VM more memory or link the guest lower")


def _in_other_slot(vm, s):
    """Whether a memory slot beyond RAM (vm.add_memory) holds the segment."""
    for base, size, _readonly in getattr(vm, "memory_slots", ()):
        if base <= s.addr and s.addr + s.memsz <= base + size:
            return True
    return False


def _setup(vm: VM, entry: int, mode, set_entry: bool):
    if mode is not None:
        setups = {16: vm.setup_real_mode, 32: vm.setup_protected_mode, 64: vm.setup_long_mode,
                  "real": vm.setup_real_mode, "protected": vm.setup_protected_mode, "long": vm.setup_long_mode}
        if mode not in setups:
            raise ArgumentError(f"mode is 16, 32, 64, 'real', 'protected' or 'long', not {mode!r}")
        setups[mode](entry=entry)
    elif set_entry and vm.vcpus:
        vm.vcpu.rip = entry
        vm._set_up = True


def load_elf(vm: VM, source: Source, physical: bool = True, set_entry: bool = True,
             mode: Union[int, str, None] = None) -> LoadedImage:
    """Load an ELF executable (bytes or a path) into ``vm``.

    Every PT_LOAD segment goes to its physical address ``p_paddr`` (or, with
    ``physical=False``, to its virtual address ``p_vaddr``); the part beyond
    the file image is zeroed.  With ``mode`` (16, 32, 64 or "real",
    "protected", "long") the first vCPU is set up in that mode at the entry
    point (:meth:`vtx.VM.setup_real_mode` and the others); without it, and
    with ``set_entry``, only its RIP is set to the entry point.  Returns a
    :class:`LoadedImage`.

    Raises :class:`ElfError` for a file that is not a little-endian x86 ELF
    executable, is truncated, or has overlapping segments, and
    :class:`vtx.errors.GuestMemoryError` for a segment outside guest memory;
    nothing is written then."""
    data = _read_source(source)
    bits, e_entry, raw, symbols = parse_elf(data)
    segs = []
    for s, offset in raw:
        addr = s.paddr if physical else s.vaddr
        segs.append((attrs.evolve(s, addr=addr), offset))
    _check_fits(vm, [s for s, _ in segs])
    for s, offset in segs:
        vm.write(s.addr, data[offset:offset + s.filesz])
        if s.memsz > s.filesz:
            vm.write(s.addr + s.filesz, bytes(s.memsz - s.filesz))
    entry = e_entry
    if physical:
        # e_entry is a virtual address: the physical one is in the segment
        # whose virtual range holds it (a kernel linked high, loaded low).
        for s, _ in segs:
            if s.vaddr <= e_entry < s.vaddr + s.memsz:
                entry = s.paddr + (e_entry - s.vaddr)
                break
    _setup(vm, entry, mode, set_entry)
    bits = _MODE_BITS.get(mode, bits)
    return LoadedImage(entry, bits, tuple(s for s, _ in segs), symbols)


def load_flat(vm: VM, source: Source, addr: int, entry: Optional[int] = None, set_entry: bool = True,
              mode: Union[int, str, None] = None) -> LoadedImage:
    """Load a flat binary (bytes or a path) at guest-physical ``addr``; the
    entry point is ``entry`` (default ``addr``).  ``mode`` and ``set_entry``
    as for :func:`load_elf`.  Data that :func:`vtx.asm` assembled for another
    ``org`` is refused as :meth:`vtx.VM.load` refuses it."""
    if isinstance(addr, bool) or not isinstance(addr, int) or addr < 0:
        raise ArgumentError(f"addr is a guest-physical address, not {addr!r}")
    data = source if hasattr(source, "org") else _read_source(source)
    if addr + len(data) > vm.memory_size and not _in_other_slot(vm, Segment(addr, len(data), len(data),
                                                                             addr, addr, 0)):
        raise GuestMemoryError(f"{len(data)} bytes at {addr:#x} do not fit in guest memory "
                               f"[0, {vm.memory_size:#x})")
    vm.load(addr, data)
    entry = addr if entry is None else entry
    _setup(vm, entry, mode, set_entry)
    bits = _MODE_BITS.get(mode)
    return LoadedImage(entry, bits, (Segment(addr, len(data), len(data), addr, addr, 0),), {})
