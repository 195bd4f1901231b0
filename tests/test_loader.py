"""vtx.load_elf and vtx.load_flat (vtx/loader.py): segments at their
physical or virtual addresses, .bss zeroed, the entry point, and a clear
error for every file that cannot be loaded.  The ELF files are made here,
byte by byte, from the System V ABI's header layouts."""

import shutil
import struct

import pytest

import vtx
from vtx.loader import ElfError

needs_as = pytest.mark.skipif(shutil.which("as") is None, reason="GNU as is not installed")
R = vtx.ExitReason


def make_elf(segments, entry, bits=64, machine=None, data_encoding=1, etype=2):
    """An ELF executable: segments are (paddr, vaddr, data, memsz)."""
    is64 = bits == 64
    machine = machine if machine is not None else (62 if is64 else 3)
    ehdr = struct.Struct("<HHIQQQIHHHHHH" if is64 else "<HHIIIIIHHHHHH")
    ph = struct.Struct("<IIQQQQQQ" if is64 else "<IIIIIIII")
    phoff = 16 + ehdr.size
    offset = phoff + ph.size * len(segments)
    headers, blobs = [], []
    for paddr, vaddr, data, memsz in segments:
        if is64:
            headers.append(ph.pack(1, 7, offset, vaddr, paddr, len(data), memsz, 0x1000))
        else:
            headers.append(ph.pack(1, offset, vaddr, paddr, len(data), memsz, 7, 0x1000))
        blobs.append(data)
        offset += len(data)
    ident = b"\x7fELF" + bytes([2 if is64 else 1, data_encoding, 1]) + bytes(9)
    head = ehdr.pack(etype, machine, 1, entry, phoff, 0, 0, 16 + ehdr.size, ph.size, len(segments), 0, 0, 0)
    return ident + head + b"".join(headers) + b"".join(blobs)


def new_vm(memory=1 << 20):
    vm = vtx.VM(memory=memory)
    vm.add_vcpu()
    return vm


def test_segments_at_physical_addresses_bss_zeroed_entry_translated():
    vm = new_vm()
    vm.write(0x3000, b"\xff" * 0x200)              # where the .bss goes (to 0x31f0): zeroed
    elf = make_elf([(0x2000, 0xFFFF800000002000, b"\x90\xf4", 2),
                    (0x2ff0, 0xFFFF800000002ff0, b"ABCD", 0x200)], entry=0xFFFF800000002000)
    img = vtx.load_elf(vm, elf)
    assert img.entry == 0x2000 and img.bits == 64
    assert [(s.addr, s.filesz, s.memsz) for s in img.segments] == [(0x2000, 2, 2), (0x2ff0, 4, 0x200)]
    assert vm.read(0x2000, 2) == b"\x90\xf4"
    assert vm.read(0x2ff0, 4) == b"ABCD"
    assert vm.read(0x2ff4, 0x1fc) == bytes(0x1fc)
    assert vm.read(0x31f0, 0x10) == b"\xff" * 0x10        # one past the segment: untouched
    assert vm.vcpu.rip == 0x2000 and img.end == 0x31f0


def test_virtual_addresses_when_asked():
    vm = new_vm()
    elf = make_elf([(0x80000, 0x4000, b"\xf4", 1)], entry=0x4000, bits=32)
    img = vtx.load_elf(vm, elf, physical=False, set_entry=False)
    assert img.entry == 0x4000 and img.bits == 32
    assert vm.read(0x4000, 1) == b"\xf4" and vm.read(0x80000, 1) == b"\x00"
    assert vm.vcpu.rip == 0                               # set_entry=False


@needs_as
@pytest.mark.parametrize("bits,mode", [(32, "protected"), (64, "long"), (32, 32)])
def test_elf_runs_in_the_mode_asked(bits, mode):
    code = vtx.asm("mov eax, 0x1234abcd\nlea ebx, [eax + 1]\nhlt", bits=bits, org=0x5000)
    vm = new_vm()
    vtx.load_elf(vm, make_elf([(0x5000, 0x5000, code, len(code))], 0x5000, bits=bits), mode=mode)
    vm.on(R.HLT)(lambda vcpu, exit: vtx.STOP)
    r = vm.run(max_instructions=100)
    assert r.exit.guest_rip == 0x5000 + len(code) - 1
    assert (vm.vcpu.rax, vm.vcpu.rbx, r.instructions) == (0x1234ABCD, 0x1234ABCE, 2)
    assert vm.vcpu.cr0 & 1 and bool(vm.vcpu.efer & 0x400) == (bits == 64)


def test_from_a_path(tmp_path):
    p = tmp_path / "guest.elf"
    p.write_bytes(make_elf([(0x1000, 0x1000, b"\xf4", 1)], 0x1000, bits=32))
    vm = new_vm()
    assert vtx.load_elf(vm, str(p)).entry == 0x1000
    assert vtx.load_elf(vm, p).entry == 0x1000


@pytest.mark.parametrize("mutate,message", [
    (lambda e: b"MZ" + e[2:], "not an ELF file"),
    (lambda e: e[:5] + b"\x02" + e[6:], "big-endian"),
    (lambda e: e[:4] + b"\x03" + e[5:], "unknown ELF class 3"),
    (lambda e: e[:40], "truncated"),
    (lambda e: e[:-1], "truncated: segment 0 needs file bytes up to 0x7a"),
])
def test_bad_files(mutate, message):
    elf = make_elf([(0x1000, 0x1000, b"\x90\xf4", 2)], 0x1000)
    vm = new_vm()
    with pytest.raises(ElfError, match=message):
        vtx.load_elf(vm, mutate(elf))


def test_not_x86_and_not_executable():
    vm = new_vm()
    with pytest.raises(ElfError, match="machine 183, not x86"):
        vtx.load_elf(vm, make_elf([(0x1000, 0x1000, b"\0", 1)], 0x1000, machine=183))   # EM_AARCH64
    with pytest.raises(ElfError, match="ELF32 file for EM_X86_64"):
        vtx.load_elf(vm, make_elf([(0x1000, 0x1000, b"\0", 1)], 0x1000, bits=32, machine=62))
    with pytest.raises(ElfError, match="ELF type 1 is not an executable"):
        vtx.load_elf(vm, make_elf([(0x1000, 0x1000, b"\0", 1)], 0x1000, etype=1))
    with pytest.raises(ElfError, match="no PT_LOAD"):
        vtx.load_elf(vm, make_elf([], 0x1000))
    with pytest.raises(TypeError, match="bytes or a path"):
        vtx.load_elf(vm, 1234)


def test_overlap_and_outside_memory_write_nothing():
    vm = new_vm()
    with pytest.raises(ElfError, match=r"segments overlap: \[0x1000, 0x1100\) and \[0x10f0, 0x10f1\)"):
        vtx.load_elf(vm, make_elf([(0x1000, 0x1000, b"\x11", 0x100), (0x10f0, 0x10f0, b"\x22", 1)], 0x1000))
    assert vm.read(0x1000, 1) == b"\0"
    with pytest.raises(vtx.GuestMemoryError, match=r"\[0xff000, 0x101000\) lies outside guest memory"):
        vtx.load_elf(vm, make_elf([(0x1000, 0x1000, b"\x11", 1), (0xff000, 0xff000, b"\x22", 0x2000)], 0x1000))
    assert vm.read(0x1000, 1) == b"\0"
    # a segment in a memory slot beyond RAM is fine
    vm.add_memory(0x200000, 0x10000)
    vtx.load_elf(vm, make_elf([(0x200000, 0x200000, b"\x33", 0x10)], 0x200000))
    assert vm.read(0x200000, 2) == b"\x33\x00"


@needs_as
def test_flat_binary_and_its_mode():
    vm = new_vm()
    code = vtx.asm("mov ax, 7\nhlt", bits=16, org=0x7c00)
    img = vtx.load_flat(vm, code, 0x7c00, mode="real")
    assert (img.entry, img.bits, img.segments[0].memsz) == (0x7c00, 16, len(code))
    vm.on(R.HLT)(lambda vcpu, exit: vtx.STOP)
    r = vm.run(max_instructions=10)
    assert vm.vcpu.ax == 7 and r.exit.guest_rip == 0x7c03
    with pytest.raises(vtx.GuestMemoryError, match="do not fit"):
        vtx.load_flat(vm, b"\0" * 0x20, (1 << 20) - 0x10)
    with pytest.raises(vtx.ArgumentError, match="mode is 16, 32, 64"):
        vtx.load_flat(vm, b"\xf4", 0x1000, mode="v86")
