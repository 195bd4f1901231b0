"""Guest-physical memory of a :class:`vtx.VM`: slots and MMIO.

Like KVM's user memory regions, a VM's guest-physical space is made of
*slots*: its RAM at address 0 (``VM(memory=...)``) and further ranges added,
moved and removed at run time with :meth:`MemoryMap.add_memory`.  The hosted
hypervisor's EPT maps each slot at its own address.  Everything else is a
hole.  A hole that a device claims with :meth:`MemoryMap.map_mmio` is MMIO:
a guest access there stops the instruction and comes to Python *decoded*
(guest-physical address, size, direction, the value of a write), the device
answers, and vtx completes the instruction, whatever its form
(docs/architecture.rst, "Memory slots and MMIO").  A hole nobody claims keeps
the raw VT-x view: an EPT-violation exit with its qualification.
"""

import array
import bisect

from . import _core
from .errors import ArgumentError, GuestMemoryError

_PAGE = 4096
_2M = 1 << 21
_RWX, _RX = 7, 5
_WB = 6 << 3
#: The guest-physical address width the model gives a VM's slots and MMIO:
#: 38 bits (the hosted hypervisor's private memory sits above).
PHYS_LIMIT = _core.PRIV_BASE


def _check_range(what, base, size):
    for name, v in (("address", base), ("size", size)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{what}: the {name} is an int, not {v!r}")
    if base < 0 or size <= 0:
        raise ArgumentError(f"{what}: [{base:#x}, +{size:#x}) needs a non-negative address and a positive size")
    if base % _PAGE or size % _PAGE:
        raise ArgumentError(f"{what}: address {base:#x} and size {size:#x} must be multiples of 4 KiB")
    if base + size > PHYS_LIMIT:
        raise ArgumentError(f"{what}: [{base:#x}, {base + size:#x}) exceeds the model's guest-physical "
                            f"address width (38 bits: below {PHYS_LIMIT:#x})")


class _Region:
    __slots__ = ("base", "end", "device", "read", "write")

    def __init__(self, base, end, device):
        self.base = base
        self.end = end
        self.device = device
        if callable(device) and not hasattr(device, "mmio_read"):
            # handler(vcpu, gpa, size, is_write, value) -> value
            self.read = lambda vcpu, gpa, size, dev=device: dev(vcpu, gpa, size, False, 0)
            self.write = lambda vcpu, gpa, size, value, dev=device: dev(vcpu, gpa, size, True, value)
        else:
            self.read = lambda vcpu, gpa, size, dev=device: dev.mmio_read(gpa, size)
            self.write = lambda vcpu, gpa, size, value, dev=device: dev.mmio_write(gpa, size, value)


class MemoryMap:
    """The slot and MMIO half of :class:`vtx.VM` (a mixin: the VM provides
    ``_machine``, ``memory_size``, ``_priv_u64``, ``_priv``, ``_vcpus`` and
    the EPT table pool ``_pool_base``/``_pool_pages``)."""

    def _init_memory_map(self):
        self._slots = {}          # base -> [size, readonly, on_write]
        self._regions = []        # _Region, sorted by base
        self._region_bases = []
        self._pool_next = 0
        self._pool_free = []
        self._pd_of = {}          # GiB index -> private offset of its PD (beyond RAM's)
        self._pt_of = {}          # 2 MiB region -> private offset of its page table

    # --- slots ------------------------------------------------------------------

    def _overlaps(self, base, end, skip=None):
        if base < self.memory_size:
            return f"the VM's RAM [0, {self.memory_size:#x})"
        for b, (size, _ro, _w) in self._slots.items():
            if b != skip and base < b + size and b < end:
                return f"the memory slot [{b:#x}, {b + size:#x})"
        for r in self._regions:
            if base < r.end and r.base < end:
                return f"the MMIO range [{r.base:#x}, {r.end:#x}) of {_name(r.device)}"
        rom = self._machine.rom_bytes()
        if rom is not None and end > (1 << 32) - len(rom) and base < (1 << 32):
            return f"the ROM [{(1 << 32) - len(rom):#x}, 0x100000000)"
        return None

    def add_memory(self, gpa, size, readonly=False, on_write=None):
        """Back guest-physical ``[gpa, gpa + size)`` with new zeroed memory (a
        slot; KVM_SET_USER_MEMORY_REGION).  ``readonly``: guest writes do not
        reach it; with ``on_write(vcpu, gpa, size, value)`` they come to
        Python as decoded MMIO writes, without it they are ignored (a ROM).
        Code runs from it, decoded at every fetch (only RAM and the ROM keep
        decoded code).  Returns a writable memoryview of the slot."""
        _check_range("add_memory", gpa, size)
        if on_write is not None and not (readonly and callable(on_write)):
            raise ArgumentError("on_write is a callable, for a readonly slot")
        what = self._overlaps(gpa, gpa + size)
        if what:
            raise ArgumentError(f"add_memory: [{gpa:#x}, {gpa + size:#x}) overlaps {what}")
        self._machine.add_slot(gpa, size, bool(readonly), on_write is not None)
        self._slots[gpa] = [size, bool(readonly), on_write]
        # A read-only slot whose writes are ignored keeps write permission in
        # the EPT (the slot itself drops them, as a ROM does); one whose writes
        # go to Python does not, so they reach the processor's MMIO path.
        self._ept_map(gpa, size, _RX if on_write is not None else _RWX)
        return self._machine.slot_view(gpa)

    def remove_memory(self, gpa):
        """Remove the slot that starts at ``gpa``; its contents are gone and
        the range becomes a hole."""
        if gpa not in self._slots:
            raise ArgumentError(f"remove_memory: no memory slot starts at {gpa!r}")
        size = self._slots.pop(gpa)[0]
        self._machine.remove_slot(gpa)
        self._ept_map(gpa, size, 0)

    def move_memory(self, gpa, new_gpa):
        """Move the slot at ``gpa`` to ``new_gpa``, contents kept."""
        if gpa not in self._slots:
            raise ArgumentError(f"move_memory: no memory slot starts at {gpa!r}")
        size = self._slots[gpa][0]
        _check_range("move_memory", new_gpa, size)
        what = self._overlaps(new_gpa, new_gpa + size, skip=gpa)
        if what:
            raise ArgumentError(f"move_memory: [{new_gpa:#x}, {new_gpa + size:#x}) overlaps {what}")
        entry = self._slots.pop(gpa)
        self._machine.move_slot(gpa, new_gpa)
        self._slots[new_gpa] = entry
        self._ept_map(gpa, size, 0)
        self._ept_map(new_gpa, size, _RX if entry[2] is not None else _RWX)

    def dirty_log(self, gpa=0, enable=True):
        """Start (every page clean) or stop logging which 4 KiB pages the
        guest writes in the slot at ``gpa`` (0: the RAM).  The processor's
        own updates of accessed and dirty flags in paging structures count
        as writes; writes from Python (vm.write) do not."""
        self._machine.set_dirty_log(gpa, bool(enable))

    def get_dirty_log(self, gpa=0):
        """The dirty log of the slot at ``gpa`` as bytes, bit n (of byte
        n // 8, bit n % 8) for the slot's page n, and a fresh log
        (KVM_GET_DIRTY_LOG)."""
        return self._machine.get_dirty_log(gpa)

    def dirty_pages(self, gpa=0):
        """The guest-physical addresses of the pages written since the log
        was last read, in order; reads (and so clears) the log."""
        log = self.get_dirty_log(gpa)
        return [gpa + ((i * 8 + b) << 12) for i, byte in enumerate(log) if byte for b in range(8) if byte >> b & 1]

    @property
    def memory_slots(self):
        """The slots besides RAM, as (gpa, size, readonly) in address order."""
        return tuple((b, s[0], s[1]) for b, s in sorted(self._slots.items()))

    # --- APIC virtualization ----------------------------------------------------------

    def map_apic_access_page(self, gpa=0xFEE00000):
        """Map the guest-physical page ``gpa`` (the xAPIC's default base)
        one-to-one in the EPT, for use as the APIC-access page of "virtualize
        APIC accesses" (VMCS field APIC_ACCESS_ADDRESS; SDM Vol. 3C 30.4).
        An access there is decided on its physical address after EPT, so
        the EPT must map it; the page needs no memory, since every access
        either exits (APIC_ACCESS) or is virtualized to the virtual-APIC page
        (docs/architecture.rst, "APIC virtualization").  Without the control
        an access to it is what it was before: MMIO if a device serves the
        range, else an EPT violation of nothing behind it."""
        if isinstance(gpa, bool) or not isinstance(gpa, int) or gpa % 4096 or not 0 <= gpa < (1 << 38):
            raise ArgumentError(f"map_apic_access_page: gpa is a 4 KiB-aligned guest-physical address "
                                f"below 2**38, not {gpa!r}")
        if gpa >= self.memory_size:            # the RAM's EPT maps it already
            self._ept_map(gpa, 4096, _RWX)

    # --- sub-page write permissions ---------------------------------------------------

    def protect_subpages(self, gpa, writable):
        """Sub-page write permissions for EPT (SDM Vol. 3C 29.3.4) on the
        4 KiB guest-physical page ``gpa``: ``writable`` is a 32-bit mask, bit
        i letting the guest write the 128-byte sub-page i (0: the page is
        read-only to the guest, 0xFFFFFFFF: writable all over, and still
        looked up); ``None`` ends the protection and makes the page writable
        again.  A refused write is an EPT-violation exit (reason 48), reads
        and fetches are not affected.

        The page becomes a read-only 4 KiB EPT leaf with bit 61 set (a 2 MiB
        leaf around it is split); the SPP table lives in the EPT pool of the
        private memory, and every vCPU gets the SPP-table pointer and
        "sub-page write permissions for EPT" (docs/architecture.rst,
        "Sub-page write permissions")."""
        from .spec import ProcBased2, VmcsField as F
        if isinstance(gpa, bool) or not isinstance(gpa, int) or gpa % _PAGE or not 0 <= gpa < PHYS_LIMIT:
            raise ArgumentError(f"protect_subpages: gpa is a 4 KiB-aligned guest-physical address, not {gpa!r}")
        if writable is not None and (isinstance(writable, bool) or not isinstance(writable, int)
                                     or not 0 <= writable <= 0xFFFFFFFF):
            raise ArgumentError(f"protect_subpages: writable is a 32-bit mask of sub-pages or None, "
                                f"not {writable!r}")
        if not self._vcpus:
            raise ArgumentError("protect_subpages: the VM has no vCPU yet (add_vcpu first)")
        leaf_off = self._ept_leaf_4k(gpa)
        leaf = self._ept_entry(leaf_off)
        if not leaf & (1 << 61):
            if writable is None:
                return                  # not protected: nothing to end
            if not leaf & 2:
                raise ArgumentError(f"protect_subpages: {gpa:#x} is read-only memory already")
        base = _core.PRIV_BASE
        # The SPP table's root: the pointer the vCPUs hold, or a new page.
        v0 = self._vcpus[0]
        on = v0.vmread(F.SECONDARY_PROC_BASED_CONTROLS) & ProcBased2.SUB_PAGE_WRITE_PERMISSIONS
        root = v0.vmread(F.SUB_PAGE_PERMISSION_TABLE_POINTER) - base if on else None
        if root is None or not 0 <= root < self._machine.priv_size:
            root = self._pool_page()
        table = root
        for level in (4, 3, 2):
            off = table + 8 * ((gpa >> (12 + 9 * (level - 1))) & 511)
            e = self._ept_entry(off)
            if not e & 1:
                if writable is None:
                    break
                nxt = self._pool_page()
                self._priv_u64(off, (base + nxt) | 1)
                table = nxt
            else:
                table = (e & 0x000FFFFFFFFFF000) - base
        else:
            vec = 0
            for i in range(32):
                if writable is not None and (writable >> i) & 1:
                    vec |= 1 << (2 * i)
            self._priv_u64(table + 8 * ((gpa >> 12) & 511), vec)
        if writable is None:
            leaf = (leaf | 2) & ~(1 << 61)
        else:
            leaf = (leaf & ~2) | (1 << 61)
        self._priv_u64(leaf_off, leaf)
        for v in self._vcpus:
            v.vmwrite(F.SUB_PAGE_PERMISSION_TABLE_POINTER, base + root)
            v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS,
                      v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) | ProcBased2.SUB_PAGE_WRITE_PERMISSIONS)
            v.invept()

    def _ept_leaf_4k(self, gpa):
        """The private-memory offset of the 4 KiB EPT leaf that maps gpa,
        splitting a 2 MiB leaf first (ArgumentError if EPT maps nothing there)."""
        base = _core.PRIV_BASE
        v0 = self._vcpus[0]
        from .spec import VmcsField as F
        for attempt in (0, 1):
            table = (v0.vmread(F.EPT_POINTER) & 0x000FFFFFFFFFF000) - base
            for level in (4, 3, 2, 1):
                off = table + 8 * ((gpa >> (12 + 9 * (level - 1))) & 511)
                e = self._ept_entry(off)
                if not e & 7:
                    raise ArgumentError(f"protect_subpages: the EPT maps nothing at {gpa:#x}")
                if level == 1:
                    return off
                if e & 0x80:
                    if level == 3 or attempt:
                        raise ArgumentError(f"protect_subpages: {gpa:#x} is in a 1 GiB EPT page")
                    # A 2 MiB leaf: _ept_map splits it and keeps the rest.
                    self._ept_map(gpa, _PAGE, e & 7)
                    break
                table = (e & 0x000FFFFFFFFFF000) - base
        raise ArgumentError(f"protect_subpages: no 4 KiB EPT leaf for {gpa:#x}")

    # --- MMIO ---------------------------------------------------------------------

    def map_mmio(self, base, size, device):
        """Let ``device`` serve guest-physical ``[base, base + size)``, a hole:
        a :class:`vtx.devices.Device` (its ``mmio_read(gpa, size)`` and
        ``mmio_write(gpa, size, value)``), or a function
        ``handler(vcpu, gpa, size, is_write, value)`` returning the value of
        a read.  Sizes are 1, 2, 4 or 8 bytes (a 16-byte SSE access comes as
        two 8-byte ones, an access across the range's end in two parts)."""
        _check_range("map_mmio", base, size)
        if not (callable(device) or hasattr(device, "mmio_read")):
            raise ArgumentError(f"map_mmio: {device!r} is neither a device with mmio_read/mmio_write "
                                f"nor a handler function")
        what = self._overlaps(base, base + size)
        if what:
            raise ArgumentError(f"map_mmio: [{base:#x}, {base + size:#x}) overlaps {what}")
        if len(self._regions) >= 32:
            raise ArgumentError("a VM has at most 32 MMIO ranges")
        i = bisect.bisect(self._region_bases, base)
        self._regions.insert(i, _Region(base, base + size, device))
        self._region_bases.insert(i, base)
        self._machine._mmio_ranges([(r.base, r.end) for r in self._regions])

    def unmap_mmio(self, base):
        """Remove the MMIO range that starts at ``base``."""
        if base not in self._region_bases:
            raise ArgumentError(f"unmap_mmio: no MMIO range starts at {base!r}")
        i = self._region_bases.index(base)
        del self._regions[i], self._region_bases[i]
        self._machine._mmio_ranges([(r.base, r.end) for r in self._regions])

    def _mmio(self, vcpu, gpa, size, is_write, value):
        """The core's MMIO callback (VCpu.mmio_handler)."""
        i = bisect.bisect(self._region_bases, gpa) - 1
        if i >= 0 and gpa < self._regions[i].end:
            r = self._regions[i]
            if is_write:
                r.write(vcpu, gpa, size, value)
                return 0
            return r.read(vcpu, gpa, size)
        for b, (s, _ro, on_write) in self._slots.items():
            if b <= gpa < b + s and on_write is not None:
                on_write(vcpu, gpa, size, value)
                return 0
        raise GuestMemoryError(f"MMIO access at {gpa:#x} with no device")   # the core checked the ranges

    # --- guest-virtual to guest-physical ------------------------------------------------

    def translate(self, linear, vcpu=None, write=False, user=False):
        """The guest-physical address the guest's paging maps ``linear`` to,
        or None when it is not mapped (or not with the access asked: a
        ``write``, a ``user``-mode access).  Reads the guest's paging
        structures as they are (CR0, CR3, CR4, EFER of ``vcpu``) and changes
        nothing: no accessed or dirty flag is set, no TLB entry made."""
        v = vcpu or self.vcpu
        cr0, cr4, efer = v.cr0, v.cr4, v.efer
        if not cr0 & (1 << 31):
            return linear & 0xFFFFFFFF if not efer & (1 << 10) else linear
        def ok(e):
            return e & 1 and (not write or e & 2 or (not user and not cr0 & (1 << 16))) and (not user or e & 4)
        if not cr4 & (1 << 5):                      # 32-bit paging (SDM Vol. 3A 4.3)
            linear &= 0xFFFFFFFF
            pde = self._rd(v.cr3 & 0xFFFFF000 | (linear >> 22) << 2, 4)
            if pde is None or not ok(pde):
                return None
            if pde & 0x80 and cr4 & (1 << 4):
                return (pde & 0xFFC00000) | ((pde >> 13) & 0xFF) << 32 | (linear & 0x3FFFFF)
            pte = self._rd(pde & 0xFFFFF000 | ((linear >> 12) & 0x3FF) << 2, 4)
            if pte is None or not ok(pte):
                return None
            return pte & 0xFFFFF000 | (linear & 0xFFF)
        mask = 0x000FFFFFFFFFF000
        if efer & (1 << 10):                        # 4-level paging (4.5)
            table, levels = v.cr3 & mask, 4
        else:                                       # PAE paging (4.4)
            linear &= 0xFFFFFFFF
            pdpte = self._rd((v.cr3 & 0xFFFFFFE0) + 8 * (linear >> 30), 8)
            if pdpte is None or not pdpte & 1:
                return None
            table, levels = pdpte & mask, 2
        for level in range(levels, 0, -1):
            shift = 12 + 9 * (level - 1)
            e = self._rd(table + 8 * ((linear >> shift) & 511), 8)
            if e is None or not ok(e):
                return None
            if level == 1 or (level <= 3 and e & 0x80):
                return (e & mask & ~((1 << shift) - 1)) | (linear & ((1 << shift) - 1))
            table = e & mask
        return None

    def _rd(self, gpa, n):
        try:
            return int.from_bytes(self.read(gpa, n), "little")
        except GuestMemoryError:
            return None

    def read(self, addr, size):
        """Read size bytes of guest-physical memory at addr (RAM or a slot)."""
        s = self._slot_at(addr, size)
        if s is None:
            return self._machine.read(addr, size)
        view = self._machine.slot_view(s)
        return bytes(view[addr - s:addr - s + size])

    def write(self, addr, data):
        """Write bytes into guest-physical memory at addr (RAM or a slot)."""
        n = len(memoryview(data).cast("B"))
        s = self._slot_at(addr, n)
        if s is None:
            return self._machine.write(addr, data)
        view = self._machine.slot_view(s)
        view[addr - s:addr - s + n] = memoryview(data).cast("B")

    load = write

    def _slot_at(self, addr, size):
        if not self._slots or not isinstance(addr, int) or isinstance(addr, bool) or addr < self.memory_size:
            return None
        for b, (s, _ro, _w) in self._slots.items():
            if b <= addr and addr + size <= b + s:
                return b
        return None

    # --- the EPT for slots (the RAM's and the ROM's are vtx.vm's) ---------------------

    def _pool_page(self):
        if self._pool_free:
            off = self._pool_free.pop()
        else:
            if self._pool_next >= self._pool_pages:
                raise ArgumentError("the VM's EPT table pool is full: too many scattered memory slots")
            off = self._pool_base + _PAGE * self._pool_next
            self._pool_next += 1
        self._priv_u64_fill(off, bytes(_PAGE))
        return off

    def _priv_u64_fill(self, off, data):
        priv = self._priv
        priv[off:off + len(data)] = data
        del priv

    def _ept_entry(self, off):
        return int.from_bytes(self._machine.priv_bytes(off, 8), "little")

    def _ept_map(self, gpa, size, perm):
        """Map [gpa, gpa + size) one-to-one with EPT permissions ``perm``
        (0: unmap), 4 KiB pages in a page table per 2 MiB region, and
        invalidate every vCPU's EPT-derived translations (INVEPT)."""
        base = _core.PRIV_BASE
        from .vm import _EPT_PDPT, _le
        end = gpa + size
        a = gpa
        while a < end:
            g = a >> 30
            pdpte_off = _EPT_PDPT + 8 * g
            pdpte = self._ept_entry(pdpte_off)
            if not pdpte & 7:
                if not perm:
                    a = ((a >> 30) + 1) << 30
                    continue
                pd = self._pool_page()
                self._priv_u64(pdpte_off, (base + pd) | _RWX)
            else:
                pd = (pdpte & 0x000FFFFFFFFFF000) - base
            region = a & ~(_2M - 1)
            pde_off = pd + 8 * ((a >> 21) & 511)
            pde = self._ept_entry(pde_off)
            if a == region and region + _2M <= end and (not pde & 7 or pde & 0x80):
                # A whole 2 MiB region: one large-page entry (bit 7).
                self._priv_u64(pde_off, (a | perm | _WB | 0x80) if perm else 0)
                a = region + _2M
                continue
            if not pde & 7 or pde & 0x80:
                if not perm and not pde & 7:
                    a = region + _2M
                    continue
                pt = self._pool_page()
                if pde & 0x80:          # a 2 MiB leaf split: keep the other 4 KiB parts
                    ptes = array.array("Q", range((pde & ~0x1FFFFF & 0x000FFFFFFFFFF000) | (pde & 0x7F),
                                                  (pde & ~0x1FFFFF & 0x000FFFFFFFFFF000) + _2M, _PAGE))
                    self._priv_u64_fill(pt, _le(ptes))
                self._priv_u64(pde_off, (base + pt) | _RWX)
            else:
                pt = (pde & 0x000FFFFFFFFFF000) - base
            stop = min(end, region + _2M)
            first = (a - region) >> 12
            n = (stop - a) >> 12
            if perm:
                ptes = array.array("Q", range(a | perm | _WB, stop, _PAGE))
            else:
                ptes = array.array("Q", bytes(8 * n))
            self._priv_u64_fill(pt + 8 * first, _le(ptes))
            a = stop
        for v in self._vcpus:
            v.invept()


def _name(device):
    return getattr(device, "name", None) or getattr(device, "__qualname__", None) or type(device).__name__
