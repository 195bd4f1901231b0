"""Load a Linux kernel into a :class:`vtx.VM` by the 64-bit boot protocol.

The boot protocol document (Documentation/arch/x86/boot.rst, "64-bit Boot
Protocol") asks of a 64-bit loader:

* the protected-mode kernel at its load address (``pref_address`` for a
  relocatable kernel), with ``init_size`` bytes from there free for the
  kernel's decompression;
* a ``struct boot_params`` (the "zero page", Documentation/arch/x86/
  zero-page.rst) holding the setup header copied from the image, the E820
  memory map, the command line's and the initrd's addresses;
* the processor in 64-bit mode with paging on, the kernel's range, the zero
  page and the command line identity-mapped; a GDT with flat segments
  __BOOT_CS (10H, execute/read) and __BOOT_DS (18H, read/write), CS = 10H and
  DS = ES = SS = 18H; interrupts disabled; RSI = the address of boot_params;
  and a jump to the load address + 200H.

Low-memory layout this loader uses (all of it in the first usable E820
range, below the EBDA):

========  =============================================
1000H     the GDT (null, null, __BOOT_CS, __BOOT_DS)
7000H     boot_params (4 KiB); the stack (unused by the
          kernel's entry) grows down from here
9000H     the page tables (28 KiB: PML4, PDPT, 4 PDs)
20000H    the command line
========  =============================================
"""

import os
import pathlib

import attrs

from ..errors import ArgumentError
from ..types import DescriptorTable, Segment
from ..vm import long_mode_tables
from .bzimage import (CAN_USE_HEAP, ENTRY_64, FIELDS, LOADED_HIGH, BzImage)

GDT_ADDRESS = 0x1000
BOOT_PARAMS_ADDRESS = 0x7000
STACK_TOP = 0x7000
PAGE_TABLES_ADDRESS = 0x9000
CMDLINE_ADDRESS = 0x20000

BOOT_CS = 0x10
BOOT_DS = 0x18
#: null, null, __BOOT_CS: 64-bit code (L=1, G=1, P, S, type execute/read,
#: accessed), __BOOT_DS: flat 4 GiB data (D/B=1, G=1, P, S, read/write,
#: accessed).  SDM Vol. 3A 3.4.5, 5.2.1.
BOOT_GDT = (0, 0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF)

#: The low-memory E820 layout of a PC: usable RAM to the EBDA at 9FC00H
#: (639 KiB), then the EBDA, video memory and the BIOS area reserved to 1 MiB.
LOW_RAM_END = 0x9FC00
HIGH_RAM_START = 0x100000

E820_RAM = 1
E820_RESERVED = 2
E820_MAX_ENTRIES = 128          # the table in boot_params holds 128 (zero-page.rst)

# boot_params offsets (zero-page.rst).
BP_ACPI_RSDP_ADDR = 0x070
BP_EXT_RAMDISK_IMAGE = 0x0C0
BP_EXT_RAMDISK_SIZE = 0x0C4
BP_EXT_CMD_LINE_PTR = 0x0C8
BP_E820_ENTRIES = 0x1E8
BP_SENTINEL = 0x1EF
BP_HDR = 0x1F1
BP_E820_TABLE = 0x2D0
BOOT_PARAMS_SIZE = 0x1000

TYPE_OF_LOADER_UNDEFINED = 0xFF
#: heap_end_ptr: the end of the setup heap, from the start of the real-mode
#: code, less 200H.  The 64-bit entry does not run the setup code; the value
#: is the one a loader of the setup code at 9000:0000 would give (heap to E000H).
HEAP_END_PTR = 0xE000 - 0x200

# CR0: PE, MP, ET, NE, WP, PG; CR4: PAE; EFER: LME, LMA (SDM Vol. 3A 2.5, 9.8.5).
CR0_BOOT = 0x80010033
CR4_BOOT = 1 << 5
EFER_BOOT = 0x500


@attrs.frozen
class BootInfo:
    """Where :func:`load_linux` put everything."""

    image: BzImage
    load_address: int
    entry: int
    kernel_size: int
    init_size: int
    boot_params: int
    cmdline_address: int
    cmdline: str
    initrd_address: int
    initrd_size: int
    gdt: int
    page_tables: int
    e820: tuple

    @property
    def protocol(self):
        return self.image.protocol

    @property
    def kernel_version(self):
        return self.image.version_string


def _int(name, value, lo=0, hi=(1 << 64) - 1):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ArgumentError(f"{name} is an int in [{lo:#x}, {hi:#x}], not {value!r}")
    return value


def e820_map(ram_size, reserved=()):
    """The E820 map of a VM with ``ram_size`` bytes of RAM at 0: usable
    [0, 9FC00H), reserved [9FC00H, 100000H), usable [100000H, ram_size), and
    each ``(base, size)`` of ``reserved`` as type 2, cut out of the usable
    ranges it overlaps.  A list of (address, size, type) sorted by address."""
    _int("ram_size", ram_size, HIGH_RAM_START + 0x1000)
    holes = [(LOW_RAM_END, HIGH_RAM_START)]
    try:
        items = list(reserved)
    except TypeError:
        raise ArgumentError(f"reserved is a list of (base, size) pairs, not {reserved!r}") from None
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ArgumentError(f"a reserved range is a (base, size) pair, not {item!r}")
        base, size = item
        _int("a reserved range's base", base)
        _int("a reserved range's size", size, 1, (1 << 64) - base)
        holes.append((base, base + size))
    holes.sort()
    for (b0, e0), (b1, e1) in zip(holes, holes[1:]):
        if b1 < e0:
            raise ArgumentError(f"reserved ranges overlap: [{b0:#x}, {e0:#x}) and [{b1:#x}, {e1:#x})")
    entries = [(b, e - b, E820_RESERVED) for b, e in holes]
    for start, end in ((0, LOW_RAM_END), (HIGH_RAM_START, ram_size)):
        for b, e in holes:
            if b >= end or e <= start:
                continue
            if b > start:
                entries.append((start, b - start, E820_RAM))
            start = max(start, e)
        if start < end:
            entries.append((start, end - start, E820_RAM))
    entries.sort()
    if len(entries) > E820_MAX_ENTRIES:
        raise ArgumentError(f"the E820 map has {len(entries)} entries; boot_params holds {E820_MAX_ENTRIES}")
    return entries


def build_boot_params(image, cmdline_ptr, initrd_address=0, initrd_size=0, e820=(), acpi_rsdp=0):
    """The 4 KiB of boot_params (zero-page.rst): zeros, the setup header of
    ``image`` at 1F1H with the fields a loader writes, the E820 table at
    2D0H and its count at 1E8H.  Addresses above 4 GiB go into the ``ext_*``
    fields (their upper 32 bits)."""
    bp = bytearray(BOOT_PARAMS_SIZE)
    hdr = image.setup_header_bytes
    bp[BP_HDR:BP_HDR + len(hdr)] = hdr

    def put(off, size, value):
        bp[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def put_hdr(name, value):
        off, size = FIELDS[name]
        put(off, size, value)

    put_hdr("type_of_loader", TYPE_OF_LOADER_UNDEFINED)
    put_hdr("loadflags", image.field("loadflags") | LOADED_HIGH | CAN_USE_HEAP)
    put_hdr("heap_end_ptr", HEAP_END_PTR)
    put_hdr("cmd_line_ptr", cmdline_ptr)
    put(BP_EXT_CMD_LINE_PTR, 4, cmdline_ptr >> 32)
    put_hdr("ramdisk_image", initrd_address)
    put(BP_EXT_RAMDISK_IMAGE, 4, initrd_address >> 32)
    put_hdr("ramdisk_size", initrd_size)
    put(BP_EXT_RAMDISK_SIZE, 4, initrd_size >> 32)
    put(BP_ACPI_RSDP_ADDR, 8, acpi_rsdp)
    # sentinel (1EFH) stays 0: a nonzero one tells the kernel the loader
    # copied the boot sector wholesale and did not clear what it should.
    entries = list(e820)
    if len(entries) > E820_MAX_ENTRIES:
        raise ArgumentError(f"the E820 map has {len(entries)} entries; boot_params holds {E820_MAX_ENTRIES}")
    put(BP_E820_ENTRIES, 1, len(entries))
    for i, (addr, size, kind) in enumerate(entries):
        off = BP_E820_TABLE + 20 * i       # struct boot_e820_entry: u64 addr, u64 size, u32 type
        put(off, 8, addr)
        put(off + 8, 8, size)
        put(off + 16, 4, kind)
    return bytes(bp)


def _bytes_of(what, name):
    """Bytes from bytes-like data or a path."""
    if isinstance(what, (str, os.PathLike)):
        try:
            return pathlib.Path(os.fspath(what)).read_bytes()
        except OSError as e:
            raise ArgumentError(f"cannot read the {name} at {what}: {e.strerror}") from None
    try:
        return bytes(memoryview(what).cast("B"))
    except TypeError:
        raise TypeError(f"the {name} is bytes or a path, not {type(what).__name__}") from None


def _place_initrd(size, e820, low, limit):
    """The highest page-aligned address in a usable E820 range, at or above
    ``low``, where ``size`` bytes end at or below ``limit``; None if none."""
    best = None
    for addr, length, kind in e820:
        if kind != E820_RAM:
            continue
        end = min(addr + length, limit)
        at = (end - size) & ~0xFFF
        if at >= max(addr, low) and (best is None or at > best):
            best = at
    return best


def load_linux(vm, kernel, initrd=None, cmdline="console=ttyS0", vcpu=None, reserved=(), acpi_rsdp=0):
    """Load ``kernel`` (a :class:`BzImage`, its bytes, or a path) and
    ``initrd`` (bytes, a path, or None) into ``vm`` and set the vCPU (``vcpu``,
    default the VM's, made if it has none) at the kernel's 64-bit entry.
    ``reserved`` lists (base, size) ranges the E820 map marks reserved (MMIO);
    ``acpi_rsdp`` is the ACPI RSDP's address for boot_params (0: none).
    Returns a :class:`BootInfo`."""
    if not isinstance(kernel, BzImage):
        kernel = BzImage(_bytes_of(kernel, "kernel"))
    image = kernel
    h = image.header
    if not isinstance(cmdline, str):
        raise TypeError(f"cmdline is a str, not {type(cmdline).__name__}")
    cmd = cmdline.encode("ascii", "strict") if cmdline.isascii() else None
    if cmd is None or b"\0" in cmd:
        raise ArgumentError("cmdline is ASCII text without NUL characters")
    if len(cmd) > h.cmdline_size:
        raise ArgumentError(f"the command line is {len(cmd)} bytes; this kernel takes at most {h.cmdline_size} "
                            f"(cmdline_size)")
    _int("acpi_rsdp", acpi_rsdp)
    ram = vm.memory_size
    e820 = e820_map(ram, reserved)
    low_end = CMDLINE_ADDRESS + len(cmd) + 1
    if not any(k == E820_RAM and a <= GDT_ADDRESS and low_end <= a + n for a, n, k in e820):
        raise ArgumentError(f"the loader's tables and command line need [{GDT_ADDRESS:#x}, {low_end:#x}) "
                            f"in usable RAM; a reserved range covers part of it")

    # The load address (boot protocol, "relocatable_kernel", "pref_address"):
    # a relocatable kernel goes at any address aligned to kernel_alignment,
    # preferably pref_address (16 MiB if that is below 1 MiB); a kernel that
    # is not relocatable moves itself to pref_address whatever the load
    # address, so it is loaded there (or at the classic 1 MiB without one).
    if h.relocatable_kernel:
        align = h.kernel_alignment or 0x200000
        load = h.pref_address if h.pref_address >= HIGH_RAM_START else 0x1000000
        load = -(-load // align) * align
    else:
        load = h.pref_address if h.pref_address >= HIGH_RAM_START else HIGH_RAM_START
    kernel_bytes = image.kernel
    span = max(h.init_size, len(kernel_bytes))
    if not any(k == E820_RAM and a <= load and load + span <= a + n for a, n, k in e820):
        raise ArgumentError(f"the kernel needs [{load:#x}, {load + span:#x}) (init_size {h.init_size:#x} from its "
                            f"load address) in usable RAM; the VM has {ram:#x} bytes")

    # The initrd: as high as it fits, page aligned, above the kernel's
    # init_size, its last byte at or below initrd_addr_max, and below 4 GiB
    # even when the kernel would take it above (XLF_CAN_BE_LOADED_ABOVE_4G):
    # the page tables of the entry map the first 4 GiB.
    initrd_bytes = b"" if initrd is None else _bytes_of(initrd, "initrd")
    initrd_addr = 0
    if initrd_bytes:
        limit = min(h.initrd_addr_max + 1, 1 << 32)
        initrd_addr = _place_initrd(len(initrd_bytes), e820, load + span, limit)
        if initrd_addr is None:
            raise ArgumentError(f"no room for the {len(initrd_bytes):#x}-byte initrd in usable RAM between the "
                                f"kernel's end ({load + span:#x}) and {min(limit, ram):#x}")

    if vcpu is None:
        vcpu = vm.vcpus[0] if vm.vcpus else vm.add_vcpu()
    elif not any(vcpu is own for own in vm.vcpus):
        raise ArgumentError(f"vcpu {vcpu!r} is not a vCPU of this VM (vm.add_vcpu() makes one)")
    v = vcpu

    vm.load(load, kernel_bytes)
    if initrd_bytes:
        vm.load(initrd_addr, initrd_bytes)
    vm.load(CMDLINE_ADDRESS, cmd + b"\0")
    vm.load(BOOT_PARAMS_ADDRESS, build_boot_params(image, CMDLINE_ADDRESS, initrd_addr, len(initrd_bytes),
                                                   e820, acpi_rsdp))
    vm.load(GDT_ADDRESS, b"".join(d.to_bytes(8, "little") for d in BOOT_GDT))
    vm.load(PAGE_TABLES_ADDRESS, long_mode_tables(PAGE_TABLES_ADDRESS))

    entry = load + ENTRY_64
    vm._common(v, entry)                  # RFLAGS = 2 (IF clear), RIP, activity, LDTR
    v.gdtr = DescriptorTable(GDT_ADDRESS, 8 * len(BOOT_GDT) - 1)
    v.idtr = DescriptorTable(0, 0)
    v.cs = Segment(BOOT_CS, 0, 0xFFFFFFFF, 0xA09B)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(v, name, Segment(BOOT_DS, 0, 0xFFFFFFFF, 0xC093))
    v.tr = Segment(0, 0, 0x67, 0x8B)
    v.cr0 = CR0_BOOT
    v.cr3 = PAGE_TABLES_ADDRESS
    vm._set_cr4(v, CR4_BOOT)
    v.efer = EFER_BOOT
    v.rsp = STACK_TOP
    v.rsi = BOOT_PARAMS_ADDRESS
    vm._entry_ia32e(v, True)
    return BootInfo(image=image, load_address=load, entry=entry, kernel_size=len(kernel_bytes),
                    init_size=h.init_size, boot_params=BOOT_PARAMS_ADDRESS, cmdline_address=CMDLINE_ADDRESS,
                    cmdline=cmdline, initrd_address=initrd_addr, initrd_size=len(initrd_bytes), gdt=GDT_ADDRESS,
                    page_tables=PAGE_TABLES_ADDRESS, e820=tuple(e820))
