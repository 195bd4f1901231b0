# cython: language_level=3
"""The CPU core of vtx: a modeled x86 processor with VMX non-root operation.

One extension built from fragments (docs/architecture.rst, decision 3); the fragments under
vtx/core/ are included in dependency order.  Everything up to run.pxi runs
without the GIL; the classes at the end are the edge where Python enters.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t, int16_t, int8_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject_GenericSetAttr

include "core/spec_gen.pxi"
include "core/state.pxi"
include "core/flags.pxi"
include "core/vmx/intercept.pxi"
include "core/mmu.pxi"
include "core/decode.pxi"
include "core/insn/arith.pxi"
include "core/insn/bitops.pxi"
include "core/insn/data_xfer.pxi"
include "core/insn/ctrl_xfer.pxi"
include "core/insn/system.pxi"
include "core/insn/systab.pxi"
include "core/insn/simd.pxi"
include "core/insn/simd_int.pxi"
include "core/insn/sse4.pxi"
include "core/insn/x87.pxi"
include "core/task.pxi"
include "core/insn/sse.pxi"
include "core/insn/fxsave.pxi"
include "core/insn/xsaves.pxi"
include "core/insn/waitpkg.pxi"
include "core/insn/string.pxi"
include "core/insn/interrupt.pxi"
include "core/insn/far.pxi"
include "core/insn/prot.pxi"
include "core/insn/misc.pxi"
include "core/debugger.pxi"
include "core/insn/debug.pxi"
include "core/insn/fast.pxi"
include "core/insn/fast_mem.pxi"
include "core/vmx/vmcs.pxi"
include "core/exceptions.pxi"
include "core/vmx/events.pxi"
include "core/vmx/apicv.pxi"
include "core/vmx/spp.pxi"
include "core/vmx/buslock.pxi"
include "core/vmx/entry.pxi"
include "core/vmx/exit.pxi"
include "core/vmx/insn.pxi"
include "core/run.pxi"
include "core/acct.pxi"
include "core/exits.pxi"
include "core/hostmem.pxi"
include "core/bare.pxi"
include "core/reset.pxi"

init_opcode_tables()
init_fast_tables()
init_fast_mem_tables()
init_fuse_tables()

from vtx.errors import (ArgumentError, EntryCheckMismatch, GuestMemoryError, HandlerReturnError,
                        HostMemoryError, RegisterError, UnhandledExit, VmEntryError, VmFail, VmStateError,
                        VtxError)
from vtx.spec import ExitReason as _ExitReason, VmInstructionError as _VmInstructionError
from vtx.spec.entry_checks import ENTRY_CHECKS as _ENTRY_CHECKS
from vtx.spec.cpuid import FEATURES as _FEATURES, PRESETS as _CPUID_PRESETS, DEFAULT_PRESET as _DEFAULT_PRESET
from vtx.spec.capabilities import cr4_fixed1 as _cr4_fixed1
from vtx.cpu_model import CpuModel as _CpuModel
from vtx.types import DescriptorTable, Segment, VmcsView

#: Host-physical address of the hosted hypervisor's private memory (VMCS,
#: bitmaps, EPT tables): above any guest RAM, below 2^MAXPHYADDR.
PRIV_BASE = 1 << 38
MAX_RAM = PRIV_BASE
PAGE_SIZE = 4096
ICACHE_SIZE = ICACHE_ENTRIES

#: The most logical processors (vCPUs) a machine has.
MAX_CPUS = 64

#: The most steps (instructions retired plus events delivered) a run may be
#: given; far beyond any run, and small enough that counters never wrap.
MAX_BUDGET = 1 << 62


# --- which checks VMRESUME runs (docs/architecture.rst, "Entry checks at VMRESUME") ---

_ENTRY_CHECK_MODES = {"incremental": ENTRY_CHECKS_INCREMENTAL, "full": ENTRY_CHECKS_FULL,
                      "verify": ENTRY_CHECKS_VERIFY}


def set_entry_check_mode(mode):
    """Choose which VM-entry checks VMRESUME runs, for every vCPU; returns
    the previous mode.

    ``"incremental"`` (the default): the checks whose inputs changed since
    the last successful VM entry.  ``"full"``: every check, every time.
    ``"verify"``: both, raising :class:`~vtx.errors.EntryCheckMismatch` from
    the run if they disagree (for tests and fuzzing).  VMLAUNCH and
    ``vcpu.check_entry()`` always run every check.  The environment variable
    ``VTX_ENTRY_CHECKS`` sets the mode when vtx is imported."""
    global entry_check_mode
    if mode not in _ENTRY_CHECK_MODES:
        raise ArgumentError(f"the entry-check mode is one of {', '.join(_ENTRY_CHECK_MODES)}, not {mode!r}")
    old = get_entry_check_mode()
    entry_check_mode = _ENTRY_CHECK_MODES[mode]
    return old


def get_entry_check_mode():
    """The mode :func:`set_entry_check_mode` set."""
    for name, value in _ENTRY_CHECK_MODES.items():
        if value == entry_check_mode:
            return name


def _entry_check_mode_from_environment():
    import os
    mode = os.environ.get("VTX_ENTRY_CHECKS")
    if mode:
        try:
            set_entry_check_mode(mode)
        except ArgumentError:
            raise ArgumentError(f"VTX_ENTRY_CHECKS is one of {', '.join(_ENTRY_CHECK_MODES)}, "
                                f"not {mode!r}") from None


_entry_check_mode_from_environment()


cdef dict _REASONS = {}


cdef object _exit_reason_enum(uint32_t r):
    try:
        return _ExitReason(r)
    except ValueError:
        return r


cdef class Machine:
    """Guest-physical memory (slot 0, the guest's RAM) and the hosted
    hypervisor's private memory (slot 1), and the processor state."""

    def __cinit__(self, ram_size, priv_size):
        cdef Cpu* c
        self.c = NULL
        for what, size, top in (("guest memory", ram_size, MAX_RAM), ("private memory", priv_size, 1 << 30)):
            if isinstance(size, bool) or not isinstance(size, int):
                raise ArgumentError(f"{what} size is an int, not {size!r}")
            if size <= 0 or size % 4096:
                raise ArgumentError(f"{what} size must be a positive multiple of 4096 bytes, not {size:#x}")
            if size > top:
                raise ArgumentError(f"{what} size {size:#x} is larger than the model's limit {top:#x}")
        self.ram_size = ram_size
        self.priv_base = PRIV_BASE
        self.priv_size = priv_size
        # Anonymous mappings with guard pages (core/hostmem.pxi).
        self.ram_mem = HostMemory(ram_size, "guest memory")
        self.priv_mem = HostMemory(priv_size, "private memory")
        self.cpus = <Cpu**>calloc(MAX_CPUS, sizeof(Cpu*))
        if self.cpus == NULL:
            raise MemoryError()
        self._cpu_mem = []
        c = self._new_cpu()
        self.c = c
        self.icache_mem, self.block_mem = self._cpu_mem.pop(), self._cpu_mem.pop()
        c.code_pages = <uint8_t*>calloc(ram_size // 4096, 1)
        c.code_bits = <uint64_t*>calloc(ram_size // 4096, sizeof(uint64_t))
        c.code_gen = <uint32_t*>calloc(ram_size // 4096, sizeof(uint32_t))
        if c.code_pages == NULL or c.code_bits == NULL or c.code_gen == NULL:
            raise MemoryError()
        c.ram = self.ram_mem.ptr
        c.ram_size = ram_size
        c.slots[0].base = 0
        c.slots[0].size = ram_size
        c.slots[0].ptr = c.ram
        c.slots[0].guest_visible = 1
        c.slots[0].cached = 1
        c.mmio_on = 1
        self._extra = {}
        c.slots[1].base = PRIV_BASE
        c.slots[1].size = priv_size
        c.slots[1].ptr = self.priv_mem.ptr
        c.slots[1].guest_visible = 0
        c.nslots = 2
        c.vmx.vmcs = self.priv_mem.ptr
        c.vmx.vmcs_ptr = PRIV_BASE
        self.cpu_model = _CpuModel(_DEFAULT_PRESET)

    cdef Cpu* _new_cpu(self) except NULL:
        """A logical processor in its power-on state with its own TLB, decode
        cache and translated blocks, entered in cpus (docs/architecture.rst,
        "Several vCPUs").  Its HostMemory buffers are appended to _cpu_mem
        (block arena, then decode cache)."""
        cdef Cpu* c
        cdef int k
        if self.ncpus >= MAX_CPUS:
            raise ArgumentError(f"a machine has at most {MAX_CPUS} processors")
        # Translated blocks: the table, then the arena of their ops.
        block_mem = HostMemory((BLOCK_ENTRIES * sizeof(Block) + ARENA_INSNS * sizeof(Insn) + 4095) & ~4095,
                               "translated blocks")
        # The decode cache is direct-mapped by host address (decision 4): a
        # million slots keep code up to 1 MiB free of conflicts.  It is a
        # lazily backed mapping, so a VM pays only for the slots its code uses.
        icache_mem = HostMemory(((ICACHE_ENTRIES + 1) * sizeof(Insn) + 4095) & ~4095, "decode cache")
        c = <Cpu*>calloc(1, sizeof(Cpu))
        if c == NULL:
            raise MemoryError()
        c.tlb = <TlbEntry*>calloc(TLB_ENTRIES, sizeof(TlbEntry))
        if c.tlb == NULL:
            free(c)
            raise MemoryError()
        c.acct = <Acct*>calloc(1, sizeof(Acct))
        if c.acct == NULL:
            free(c.tlb)
            free(c)
            raise MemoryError()
        # Entered only once whole: code_page_written reaches every entry.
        self._cpu_mem.append(block_mem)
        self._cpu_mem.append(icache_mem)
        c.blocks = <Block*>block_mem.ptr
        c.arena = <Insn*>(block_mem.ptr + BLOCK_ENTRIES * sizeof(Block))
        c.block_epoch = 1
        c.icache = <Insn*>icache_mem.ptr
        self.cpus[self.ncpus] = c
        self.ncpus += 1
        for k in range(self.ncpus):
            self.cpus[k].cpus = self.cpus
            self.cpus[k].ncpus = self.ncpus
        c.cpu_index = self.ncpus - 1
        c.icache_mask = ICACHE_ENTRIES - 1
        c.tlb_gen = 1
        c.vmx.vmxon_ptr = VMCS_PTR_NONE
        c.icount_limit = 0xFFFFFFFFFFFFFFFFULL
        c.tlb_epoch = 1        # epoch 0 marks an entry INVLPG dropped
        c.acct_reason = -1
        # No entry has passed the checks yet (the first is a VMLAUNCH, which
        # runs them all; a launch state written raw makes it a VMRESUME).
        c.vmx.ck_dirty = CKM_ALL
        c.vmx.ck_ept_private = 1
        # Power-on state of the registers that have one (SDM Vol. 3 10.1.1).
        c.rflags = 2
        c.cr0 = 0x60000010ULL
        c.pat = 0x0007040600070406ULL
        c.dr6 = 0xFFFF0FF0ULL
        c.dr7 = 0x400
        c.xcr0 = 1             # x87 state: XCR0[0] is always 1 (SDM Vol. 1 13.3)
        c.apic_base = 0xFEE00900ULL
        c.misc_enable = 1 | (1 << 18)   # fast strings; MONITOR FSM (MONITOR/MWAIT) enabled
        # IA32_FEATURE_CONTROL as firmware leaves it on a machine with VMX:
        # locked, VMXON allowed outside SMX.
        c.feature_control = 5
        # x87 and SSE control state as FNINIT and the power-on MXCSR leave it
        # (SDM Vol. 1 8.1.5, 10.2.3): all exceptions masked, every register empty.
        c.fpu.fcw = 0x37F
        c.fpu.ftw = 0xFFFF
        c.fpu.mxcsr = 0x1F80
        return c

    def _add_cpu(self, uint64_t vmcs_offset):
        """Another logical processor sharing this machine's memory, with its
        current VMCS at ``vmcs_offset`` in the private memory (vtx.vm lays it
        out); returns its index for VCpu(machine, index)."""
        cdef Cpu* c
        if self._any_in_guest():
            raise VmStateError("a processor cannot be added while the guest runs")
        if vmcs_offset % 4096 or vmcs_offset + 4096 > self.priv_size:
            raise ArgumentError(f"a VMCS at {vmcs_offset:#x} is not a page of the private memory")
        c = self._new_cpu()
        # IA32_APIC_BASE of an application processor: BSP flag (bit 8) clear
        # (SDM Vol. 3A 11.4.4).
        c.apic_base = 0xFEE00800ULL
        c.vmx.vmcs = self.priv_mem.ptr + vmcs_offset
        c.vmx.vmcs_ptr = PRIV_BASE + vmcs_offset
        self._share()
        return self.ncpus - 1

    @property
    def processors(self):
        """How many logical processors the machine has."""
        return self.ncpus

    cdef int _share(self) except -1:
        """Give every processor the machine-wide state of cpus[0] (memory
        slots, the code-tracking arrays, MMIO ranges, the CPU model) and
        flush every TLB: what each one cached may be stale."""
        cdef Cpu* c0 = self.c
        cdef Cpu* c
        cdef int k
        for k in range(self.ncpus):
            c = self.cpus[k]
            if k:
                memcpy(c.slots, c0.slots, sizeof(c0.slots))
                c.nslots = c0.nslots
                c.ram = c0.ram
                c.ram_size = c0.ram_size
                c.code_pages = c0.code_pages
                c.code_bits = c0.code_bits
                c.code_gen = c0.code_gen
                c.mmio_on = c0.mmio_on
                memcpy(c.mmio_range, c0.mmio_range, sizeof(c0.mmio_range))
                c.mmio_nranges = c0.mmio_nranges
                c.mmio_n = 0
                c.dirty_log = c0.dirty_log
                c.features[0] = c0.features[0]
                c.features[1] = c0.features[1]
                c.cr4_fixed1 = c0.cr4_fixed1
                memcpy(c.cpuid_tab, c0.cpuid_tab, sizeof(c0.cpuid_tab))
                c.cpuid_n = c0.cpuid_n
                c.cpuid_max = c0.cpuid_max
                c.cpuid_max_ext = c0.cpuid_max_ext
                c.signature = c0.signature
            tlb_flush(c)
        return 0

    cdef int _any_in_guest(self):
        cdef int k
        for k in range(self.ncpus):
            if self.cpus[k].in_guest:
                return 1
        return 0

    @property
    def cpu_model(self):
        """The :class:`vtx.CpuModel` the processor follows: what CPUID
        answers, which instructions and CR4 bits exist, IA32_VMX_CR4_FIXED1."""
        return self._model

    @cpu_model.setter
    def cpu_model(self, model):
        cdef int i, j
        if isinstance(model, str):
            model = _CpuModel(model)
        if not isinstance(model, _CpuModel):
            raise TypeError(f"a CPU model is a vtx.CpuModel or a preset name, not {model!r}")
        rows = model.cpuid_leaves()
        if len(rows) > 48:
            raise ArgumentError(f"a CPU model has at most 48 fixed CPUID leaves, not {len(rows)}")
        self._set_features(sorted(model.features))
        for i, row in enumerate(rows):
            for j in range(6):
                self.c.cpuid_tab[i][j] = row[j]
        self.c.cpuid_n = len(rows)
        self.c.cpuid_max = model.max_leaf
        self.c.cpuid_max_ext = 0x80000008
        self.c.signature = model.signature
        self._model = model
        self._share()

    def _set_features(self, names):
        """Make the CPU model's feature set exactly `names` (FEATURES rows of
        vtx/spec/cpuid.py).  Decoded code is dropped: what decodes depends on it."""
        cdef uint64_t pg
        cdef int i
        index = {row[0]: i for i, row in enumerate(_FEATURES)}
        bits = [0, 0]
        for name in names:
            if name not in index:
                raise ArgumentError(f"unknown CPUID feature {name!r}; the model knows "
                                    f"{', '.join(row[0] for row in _FEATURES)}")
            bits[index[name] >> 6] |= 1 << (index[name] & 63)
        if self._any_in_guest():
            raise VmStateError("the CPU model cannot change while the guest runs")
        self.c.features[0] = bits[0]
        self.c.features[1] = bits[1]
        self.c.cr4_fixed1 = _cr4_fixed1(names)
        if self._model is not None and frozenset(names) != self._model.features:
            # A raw feature set: keep the identity, record the features.
            self._model = self._model._with_features(names)
        for pg in range(self.c.ram_size >> 12):
            if self.c.code_pages[pg]:
                code_page_written(self.c, pg << 12)
        self._share()

    def _features(self):
        """The names of the features in the CPU model's feature set."""
        return [row[0] for i, row in enumerate(_FEATURES) if cpu_has(self.c, i)]

    def map_rom(self, data, uint64_t base, uint64_t low):
        """Map a ROM image read-only at physical address ``base`` and, when
        ``low`` is not 0, its last ``low`` bytes again below 1 MiB (ending at
        0FFFFFH), as PC firmware appears.  The checks of sizes and addresses
        are vtx.vm's (map_rom there).  Guest writes to the ROM are ignored
        (core/mmu.pxi gpa_to_host); the low copy hides the RAM under it."""
        cdef const unsigned char[::1] src = memoryview(data).cast("B")
        cdef uint64_t n = src.shape[0]
        cdef HostMemory mem
        cdef Slot* s
        cdef uint64_t pg
        if self._any_in_guest():
            raise VmStateError("a ROM cannot be mapped while the guest runs")
        if self._roms:
            raise VmStateError("this machine has its ROM already (one per machine)")
        mem = HostMemory(n, "ROM")
        memcpy(mem.ptr, &src[0], n)
        self._roms = [mem]
        s = &self.c.slots[self.c.nslots]
        s.base = base
        s.size = n
        s.ptr = mem.ptr
        s.guest_visible = 1
        s.readonly = 1
        s.cached = 1
        self.c.nslots += 1
        if low:
            s = &self.c.slots[self.c.nslots]
            s.base = 0x100000 - low
            s.size = low
            s.ptr = mem.ptr + (n - low)
            s.guest_visible = 1
            s.readonly = 1
            s.cached = 1
            self.c.nslots += 1
            # The RAM under the low copy is out of sight: its decoded code goes.
            for pg in range((0x100000 - low) >> 12, min(0x100000, self.c.ram_size) >> 12):
                if self.c.code_pages[pg]:
                    code_page_written(self.c, pg << 12)
                self.c.code_gen[pg] += 1
        self._share()

    # --- guest memory slots beyond RAM (vtx.VM.add_memory; docs/architecture.rst,
    # "Memory slots and MMIO") ------------------------------------------------

    def add_slot(self, uint64_t base, uint64_t size, bint readonly, bint mmio_writes):
        """Back guest-physical [base, base + size) with new host memory
        (zeroed).  The checks of alignment and overlap are vtx.vm's."""
        cdef HostMemory mem
        cdef Slot* s
        if self._any_in_guest():
            raise VmStateError("memory cannot be added while the guest runs")
        if self.c.nslots >= 16:
            raise ArgumentError("a machine has at most 12 memory slots besides RAM and ROM")
        mem = HostMemory(size, "guest memory slot")
        s = &self.c.slots[self.c.nslots]
        memset(s, 0, sizeof(Slot))
        s.base = base
        s.size = size
        s.ptr = mem.ptr
        s.guest_visible = 1
        s.readonly = readonly
        s.mmio_writes = mmio_writes
        self.c.nslots += 1
        self._extra[base] = mem
        self._share()

    def remove_slot(self, uint64_t base):
        """Remove the slot at ``base`` (its bytes are gone).  Its code was
        never kept decoded (Slot.cached), so only the TLB is flushed."""
        cdef int i, j
        if self._any_in_guest():
            raise VmStateError("memory cannot be removed while the guest runs")
        for i in range(2, self.c.nslots):
            if self.c.slots[i].base == base and base in self._extra and \
                    self.c.slots[i].ptr == (<HostMemory>self._extra[base]).ptr:
                free(self.c.slots[i].dirty)
                for j in range(i, self.c.nslots - 1):
                    self.c.slots[j] = self.c.slots[j + 1]
                self.c.nslots -= 1
                memset(&self.c.slots[self.c.nslots], 0, sizeof(Slot))
                del self._extra[base]
                self._share()
                return
        raise ArgumentError(f"no memory slot starts at {base:#x}")

    def move_slot(self, uint64_t base, uint64_t new_base):
        """Move the slot at ``base`` to ``new_base``, keeping its bytes."""
        cdef int i
        if self._any_in_guest():
            raise VmStateError("memory cannot be moved while the guest runs")
        for i in range(2, self.c.nslots):
            if self.c.slots[i].base == base and base in self._extra and \
                    self.c.slots[i].ptr == (<HostMemory>self._extra[base]).ptr:
                self.c.slots[i].base = new_base
                self._extra[new_base] = self._extra.pop(base)
                self._share()
                return
        raise ArgumentError(f"no memory slot starts at {base:#x}")

    def set_dirty_log(self, uint64_t base, bint on):
        """Start (all pages clean) or stop logging the pages the guest writes
        in the slot at ``base`` (core/mmu.pxi, dirty-page logging)."""
        cdef Slot* s = self._slot_at(base)
        cdef int i
        if self.c.in_guest:
            raise VmStateError("dirty logging cannot change while the guest runs")
        if s.dirty != NULL:
            free(s.dirty)
            s.dirty = NULL
        if on:
            s.dirty = <uint64_t*>calloc((s.size >> 18) + 1, sizeof(uint64_t))
            if s.dirty == NULL:
                raise MemoryError()
        self.c.dirty_log = 0
        for i in range(self.c.nslots):
            if self.c.slots[i].dirty != NULL:
                self.c.dirty_log = 1
        self._share()

    def get_dirty_log(self, uint64_t base):
        """The slot's log as bytes (bit n: page n written since the last
        read), and a fresh log (KVM_GET_DIRTY_LOG)."""
        cdef Slot* s = self._slot_at(base)
        cdef uint64_t n
        if s.dirty == NULL:
            raise VmStateError(f"the memory at {base:#x} does not log dirty pages (vm.dirty_log first)")
        if self.c.in_guest:
            raise VmStateError("the dirty log cannot be read while the guest runs")
        n = ((s.size >> 12) + 7) >> 3
        out = PyBytes_FromStringAndSize(<char*>s.dirty, <Py_ssize_t>n)
        memset(s.dirty, 0, ((s.size >> 18) + 1) * sizeof(uint64_t))
        self._share()               # every processor's TLB: writes are caught again
        return out

    cdef Slot* _slot_at(self, uint64_t base) except NULL:
        cdef int i
        for i in range(self.c.nslots):
            if self.c.slots[i].base == base and self.c.slots[i].guest_visible and i != 1:
                return &self.c.slots[i]
        raise ArgumentError(f"no memory slot starts at {base:#x}")

    def slot_view(self, uint64_t base):
        """A writable memoryview of the extra slot at ``base`` (its code is
        never kept decoded, so a write through it needs no invalidation)."""
        if base not in self._extra:
            raise ArgumentError(f"no memory slot starts at {base:#x}")
        return memoryview(self._extra[base])

    def _mmio_ranges(self, ranges):
        """The guest-physical ranges [(base, end), ...] devices claim: data
        accesses there that no slot backs are emulated (RC_MMIO)."""
        cdef int i
        if self._any_in_guest():
            raise VmStateError("MMIO ranges cannot change while the guest runs")
        if len(ranges) > 32:
            raise ArgumentError(f"at most 32 MMIO ranges, not {len(ranges)}")
        for i, (base, end) in enumerate(ranges):
            self.c.mmio_range[i][0] = base
            self.c.mmio_range[i][1] = end
        self.c.mmio_nranges = len(ranges)
        self.c.mmio_on = 1
        self.c.mmio_n = 0
        self._share()

    def rom_bytes(self):
        """A copy of the ROM image (None without one)."""
        if not self._roms:
            return None
        mem = <HostMemory>self._roms[0]
        return PyBytes_FromStringAndSize(<char*>mem.ptr, mem.size)

    def __dealloc__(self):
        cdef int i, k
        if self.c != NULL:
            for i in range(self.c.nslots):
                free(self.c.slots[i].dirty)     # shared by every processor's copy of the slots
            free(self.c.code_pages)
            free(self.c.code_bits)
            free(self.c.code_gen)
        if self.cpus != NULL:
            for k in range(self.ncpus):
                free(self.cpus[k].tlb)
                free(self.cpus[k].acct)
                free(self.cpus[k].trace_buf)
                free(self.cpus[k])
            free(self.cpus)
            self.cpus = NULL
        self.c = NULL

    def read(self, addr, size):
        """Bytes of guest-physical memory."""
        _check_range(self, addr, size, "read of guest-physical")
        return PyBytes_FromStringAndSize(<char*>(self.c.ram + <uint64_t>addr), <Py_ssize_t>size)

    def write(self, addr, data):
        """Write bytes into guest-physical memory, dropping decoded
        instructions in the pages written."""
        cdef const unsigned char[::1] src = memoryview(data).cast("B")
        cdef uint64_t a, n, pg
        # Check the Python values before converting them, so a negative or
        # huge address is a GuestMemoryError rather than an OverflowError.
        _check_range(self, addr, src.shape[0], "write of guest-physical")
        if self._any_in_guest():
            raise VmStateError("guest memory cannot be written while the guest runs "
                               "(run() is active in another thread)")
        a = addr
        n = src.shape[0]
        if n == 0:
            return
        memcpy(self.c.ram + a, &src[0], n)
        for pg in range(a >> 12, ((a + n - 1) >> 12) + 1):
            if self.c.code_pages[pg]:
                code_page_written(self.c, pg << 12)
        self._share()

    def __reduce__(self):
        raise TypeError("a vtx Machine (guest memory and processor) cannot be copied or pickled; "
                        "save the VM with vm.save(path) and load it with VM.load_snapshot(path)")

    def ram_view(self):
        """A read-only memoryview of guest RAM (write with :meth:`write`, which
        keeps the decode cache coherent)."""
        return memoryview(self.ram_mem).toreadonly()

    def priv_bytes(self, offset=0, size=None):
        """A copy of bytes of the private memory: for looking, unlike
        :meth:`priv_view` no write can come through it, so the entry checks
        keep their record of what changed."""
        if size is None:
            size = self.priv_size - offset if isinstance(offset, int) else 0
        if isinstance(offset, bool) or not isinstance(offset, int) or isinstance(size, bool) or \
                not isinstance(size, int):
            raise TypeError("priv_bytes: offset and size are ints")
        if offset < 0 or size < 0 or offset + size > self.priv_size:
            raise ArgumentError(f"priv_bytes: [{offset:#x}, {offset + size:#x}) is outside the private "
                                f"memory [0, {self.priv_size:#x})")
        return PyBytes_FromStringAndSize(<char*>(self.priv_mem.ptr + <uint64_t>offset), <Py_ssize_t>size)

    def priv_view(self):
        """A writable memoryview of the hosted hypervisor's private memory.
        While it (or a view or object made from it) lives, and once after, a
        VMRESUME runs every VM-entry check, since the VMCS may have been
        written behind the API (docs/architecture.rst, "Entry checks at
        VMRESUME"); drop it, or use it in a ``with`` block, when done."""
        return memoryview(self.priv_mem)


cdef int _check_range(Machine m, object addr, object size, str what) except -1:
    if isinstance(addr, bool) or not isinstance(addr, int) or isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{what}: address and size are ints")
    if addr < 0 or size < 0 or addr > m.ram_size or size > m.ram_size - addr:
        raise GuestMemoryError(
            f"{what} [{addr:#x}, {addr + size:#x}) is outside guest memory [0, {m.ram_size:#x})")
    return 0


cdef inline uint64_t _fit(object value, int bits, str name) except? 0xFFFFFFFFFFFFFFFFULL:
    """Check a value for a register of `bits` bits; negative values are taken
    as two's complement."""
    cdef uint64_t v
    if type(value) is int and value >= 0:
        try:
            v = value
        except OverflowError:
            raise ValueError(f"{value:#x} does not fit in the {bits}-bit register {name}") from None
        if bits < 64 and (v >> bits):
            raise ValueError(f"{value:#x} does not fit in the {bits}-bit register {name}")
        return v
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"register {name} takes an int, not {type(value).__name__}")
    cdef object one = 1
    value = int(value)
    if value < -(one << (bits - 1)) or value >= (one << bits):
        raise ValueError(f"{value:#x} does not fit in the {bits}-bit register {name}")
    return <uint64_t>(value & ((one << bits) - 1))


cdef class VCpuBase:
    """The parts of :class:`VCpu` that are not generated register properties."""

    def __reduce__(self):
        raise TypeError("a vtx VCpu cannot be copied or pickled: it is the processor of one VM; save the "
                        "whole VM with vm.save(path)")

    def __cinit__(self, Machine machine not None, int index=0):
        # The machine owns the Cpu struct; holding it keeps the struct alive
        # as long as this vCPU (no call can reach a freed or NULL core).
        if machine.c == NULL:
            raise VmStateError("the machine has no processor (its construction failed)")
        if not 0 <= index < machine.ncpus:
            raise ArgumentError(f"the machine has processors 0-{machine.ncpus - 1}, not {index}")
        self.machine = machine
        self.c = machine.cpus[index]

    @property
    def index(self):
        """This vCPU's number in its VM: 0 for the first (the bootstrap
        processor), then 1, 2, ... in the order add_vcpu made them."""
        return self.c.cpu_index

    cdef uint64_t _vmcs_u64(self, int off) noexcept:
        cdef uint64_t v
        memcpy(&v, self.c.vmx.vmcs + off, 8)
        return v

    cdef int _vmcs_set_u64(self, int off, uint64_t v) except -1:
        _host_writes_vmcs(self.c)
        vwt(self.c, off, 8, v)
        return 0

    def __getattr__(self, name):
        raise RegisterError(f"the vCPU has no register or attribute {name!r}")

    def __setattr__(self, name, value):
        # Writing a register the vCPU does not have is a RegisterError too
        # (the generic path would raise a bare AttributeError).
        try:
            PyObject_GenericSetAttr(self, name, value)
        except AttributeError:
            if not hasattr(type(self), name):
                raise RegisterError(f"the vCPU has no register or attribute {name!r}") from None
            raise

    # --- the VMCS -----------------------------------------------------------

    def vmread(self, enc):
        """Read a VMCS component by encoding (VMREAD semantics)."""
        cdef int ok
        cdef uint64_t v
        cdef uint32_t e = _encoding(enc)
        v = vmcs_read_enc(self.c.vmx.vmcs, e, &ok)
        self.c.acct.vmread_api += 1
        if not ok:
            raise VtxError(f"VMCS has no component with encoding {e:#06x} "
                           f"(VMREAD would fail with VM-instruction error 12)")
        return v

    def vmwrite(self, enc, value):
        """Write a VMCS component by encoding.  The hosted hypervisor may also
        write the read-only exit-information fields (IA32_VMX_MISC bit 29)."""
        cdef uint32_t e = _encoding(enc)
        cdef int w = vmcs_field_width(e)
        if vmcs_field_offset(e) < 0 or w == 0:
            raise VtxError(f"VMCS has no component with encoding {e:#06x} "
                           f"(VMWRITE would fail with VM-instruction error 12)")
        cdef uint64_t v = _fit(value, 8 * w, f"VMCS field {e:#06x}")
        _host_writes_vmcs(self.c)
        self.c.acct.vmwrite_api += 1
        vmcs_write_tracked(self.c, e, v)

    @property
    def vmcs(self):
        """The VMCS as a mapping: ``vcpu.vmcs[VmcsField.GUEST_RIP] = ...``
        writes a field as :meth:`vmwrite` does, ``vcpu.vmcs[...]`` reads it."""
        return VmcsView(self)

    @property
    def launched(self):
        """The launch state of the VMCS: True after the first VM entry."""
        return self.c.vmx.vmcs[VMCS_OFF_LAUNCH_STATE] != 0

    def clear(self):
        """VMCLEAR: mark the VMCS clear, so the next entry is a VMLAUNCH."""
        _host_writes_vmcs(self.c)
        self.c.vmx.vmcs[VMCS_OFF_LAUNCH_STATE] = 0
        self.c.vmx.ck_dirty = CKM_ALL

    def reset(self):
        """Put the vCPU in the processor's power-on (RESET) state of SDM Vol.
        3A 10.1.1, Table 10-1: real mode at F000:FFF0 with CS.base FFFF0000H
        (the first fetch is at FFFFFFF0H, the reset vector), RFLAGS 2, EDX
        the processor signature (CPUID.01H:EAX of the CPU model), the other
        general registers 0, CR0 60000010H, CR2-CR4 0, DR7 400H, EFER 0,
        GDTR/IDTR limit FFFFH, the x87 FPU as at power-up.

        In VMX non-root operation the guest's state is the VMCS guest-state
        area, so that is what is set, for an entry with "unrestricted guest"
        (which the VM's controls have).  Two bits differ from Table 10-1
        because VMX fixes them, and the guest does not see it: CR0.NE is 1
        (IA32_VMX_CR0_FIXED0) and CR4.VMXE is 1 (IA32_VMX_CR4_FIXED0); the
        CR0 and CR4 guest/host masks own them, with read shadows 60000010H
        and 0, so MOV from CR0 and CR4 read the power-on values (a guest
        that sets CR0.NE exits to the hypervisor with a control-register
        access).  The next entry is a VMLAUNCH."""
        if self.c.in_guest or self.c.running:
            raise VmStateError("reset: the vCPU is running")
        self._reset_state()

    def _reset_state(self):
        cdef Cpu* c = self.c
        reset_common(c)
        reset_segments(c)
        for i in range(6):
            self._set_segment(i, Segment(c.seg[i].sel, c.seg[i].base, c.seg[i].limit, c.seg[i].ar),
                              ("es", "cs", "ss", "ds", "fs", "gs")[i])
        self._set_segment(6, Segment(0, 0, 0xFFFF, 0x82), "ldtr")
        self._set_segment(7, Segment(0, 0, 0xFFFF, 0x8B), "tr")
        self._set_table(0, DescriptorTable(0, 0xFFFF), "gdtr")
        self._set_table(1, DescriptorTable(0, 0xFFFF), "idtr")
        self.rip = 0xFFF0
        self.rsp = 0
        self.rflags = 2
        self._vmcs_set_u64(VMCS_OFF_GUEST_CR0, 0x60000010 | CR0_NE)
        self._vmcs_set_u64(VMCS_OFF_CR0_GUEST_HOST_MASK, CR0_NE)
        self._vmcs_set_u64(VMCS_OFF_CR0_READ_SHADOW, 0x60000010)
        self._vmcs_set_u64(VMCS_OFF_GUEST_CR3, 0)
        self._vmcs_set_u64(VMCS_OFF_GUEST_CR4, CR4_VMXE)
        self._vmcs_set_u64(VMCS_OFF_CR4_GUEST_HOST_MASK,
                           self._vmcs_u64(VMCS_OFF_CR4_GUEST_HOST_MASK) | CR4_VMXE)
        self._vmcs_set_u64(VMCS_OFF_CR4_READ_SHADOW, 0)
        self._vmcs_set_u64(VMCS_OFF_GUEST_DR7, 0x400)
        self._vmcs_set_u64(VMCS_OFF_GUEST_IA32_EFER, 0)
        self._vmcs_set_u64(VMCS_OFF_GUEST_IA32_PAT, 0x0007040600070406)
        self._vmcs_set_u64(VMCS_OFF_GUEST_PENDING_DEBUG_EXCEPTIONS, 0)
        _host_writes_vmcs(c)
        vwt(c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4, 0)
        vwt(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4, 0)
        vwt(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4,
            <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4) & ~(<uint32_t>ENTRY_CTL_IA32E_MODE_GUEST))
        vwt(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4, 0)
        tlb_flush(c)
        self.clear()

    # --- INIT and start-up IPIs (docs/architecture.rst, "Several vCPUs") -----

    @property
    def activity_state(self):
        """The guest's activity state (GUEST_ACTIVITY_STATE, SDM Vol. 3C
        25.4.2): 0 active, 1 HLT, 2 shutdown, 3 wait-for-SIPI."""
        return <uint32_t>vr(self.c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4)

    def init(self):
        """Put the vCPU in the state after INIT (SDM Vol. 3A 10.1, Table
        10-1, INIT column) and in the wait-for-SIPI activity state, as the
        processor is after an INIT IPI (9.4.4, the MP initialization of an
        application processor): the registers as :meth:`reset` sets them,
        except that the x87 FPU, MMX and SSE state is kept (Table 10-1:
        unchanged by INIT).  It runs again after :meth:`sipi`.  Pending
        interrupts, NMIs and INIT are dropped; a SIPI raised after the INIT
        stays pending (the INIT-SIPI sequence)."""
        cdef FpuState fpu = self.c.fpu
        cdef uint64_t xcr0 = self.c.xcr0
        if self.c.in_guest:
            raise VmStateError("init: the guest is running (run() is active in another thread)")
        self._reset_state()
        self.c.fpu = fpu
        self.c.xcr0 = xcr0
        self.c.init_pending = 0
        vwt(self.c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4, 3)

    def sipi(self, vector):
        """Start a vCPU that waits for a SIPI, as a start-up IPI with
        ``vector`` does (SDM Vol. 3A 9.4.4, 11.6.1): real mode at CS =
        vector << 8 (base vector << 12), IP = 0, active.  A VmStateError if
        the vCPU is not in the wait-for-SIPI state (:meth:`init`)."""
        if isinstance(vector, bool) or not isinstance(vector, int) or not 0 <= vector <= 255:
            raise ArgumentError(f"a SIPI vector is an int in [0, 255], not {vector!r}")
        if self.c.in_guest:
            raise VmStateError("sipi: the guest is running (run() is active in another thread)")
        if vr(self.c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4) != 3:
            raise VmStateError(f"sipi: vCPU {self.c.cpu_index} is not in the wait-for-SIPI state "
                               f"(activity state {vr(self.c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4)}); "
                               f"call init() first")
        self._set_segment(S_CS, Segment(vector << 8, vector << 12, 0xFFFF, 0x9B), "cs")
        self.rip = 0
        vwt(self.c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4, 0)

    def raise_init(self):
        """Signal INIT to the vCPU (an INIT IPI).  In VMX non-root operation
        it is a VM exit, reason 3 (INIT_SIGNAL, SDM Vol. 3C 26.2), at the
        next instruction boundary, before any other event, with nothing
        changed; the handler typically calls :meth:`init` and returns RETRY.
        In the wait-for-SIPI state INIT is blocked (27.7.2): it waits until
        the vCPU leaves it."""
        if self.c.in_guest:
            raise VmStateError("raise_init: the guest is running (run() is active in another thread)")
        self.c.init_pending = 1

    def raise_sipi(self, vector):
        """Send a start-up IPI with ``vector`` (0-255).  In the wait-for-SIPI
        state it is a VM exit, reason 4 (STARTUP_IPI, SDM Vol. 3C 26.2) whose
        exit qualification is the vector (28.2.1); the handler typically
        calls :meth:`sipi` with it and returns RETRY.  In any other activity
        state the SIPI is discarded (27.7.2), unless an INIT raised before it
        is still pending: it then waits for that INIT's exit."""
        if isinstance(vector, bool) or not isinstance(vector, int) or not 0 <= vector <= 255:
            raise ArgumentError(f"a SIPI vector is an int in [0, 255], not {vector!r}")
        if self.c.in_guest:
            raise VmStateError("raise_sipi: the guest is running (run() is active in another thread)")
        if vr(self.c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4) == 3 or self.c.init_pending:
            self.c.sipi_pending = 0x100 | <uint32_t>vector

    @property
    def init_pending(self):
        """Whether an INIT is raised and not yet taken."""
        return self.c.init_pending != 0

    @property
    def sipi_pending(self):
        """The vector of a SIPI raised and not yet taken, else None."""
        return (self.c.sipi_pending & 0xFF) if self.c.sipi_pending else None

    # --- XMM registers ---------------------------------------------------------

    def _set_xmm(self, int i, value):
        """XMMi = value, a 128-bit int (negative values as two's complement)."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"register xmm{i} takes an int, not {type(value).__name__}")
        if value < -(1 << 127) or value >= (1 << 128):
            raise ValueError(f"{value:#x} does not fit in the 128-bit register xmm{i}")
        value &= (1 << 128) - 1
        self.c.fpu.xmm[i][0] = <uint64_t>(value & 0xFFFFFFFFFFFFFFFF)
        self.c.fpu.xmm[i][1] = <uint64_t>(value >> 64)

    # --- segments and tables -----------------------------------------------

    def _get_segment(self, int i):
        cdef Cpu* c = self.c
        if not 0 <= i < 8:
            raise ArgumentError(f"segment register number {i} is not in [0, 7] (ES CS SS DS FS GS LDTR TR)")
        return Segment(<uint16_t>vr(c, off_sel(i), 2), vr(c, off_base(i), 8),
                       <uint32_t>vr(c, off_limit(i), 4), <uint32_t>vr(c, off_ar(i), 4))

    def _set_segment(self, int i, value, str name):
        if not 0 <= i < 8:
            raise ArgumentError(f"segment register number {i} is not in [0, 7] (ES CS SS DS FS GS LDTR TR)")
        if not isinstance(value, Segment):
            raise TypeError(f"{name} takes a vtx.Segment, not {type(value).__name__}")
        _host_writes_vmcs(self.c)
        vwt(self.c, off_sel(i), 2, value.selector)
        vwt(self.c, off_base(i), 8, value.base)
        vwt(self.c, off_limit(i), 4, value.limit)
        vwt(self.c, off_ar(i), 4, value.access_rights)

    def _get_table(self, int i):
        if i == 0:
            return DescriptorTable(vr(self.c, VMCS_OFF_GUEST_GDTR_BASE, 8), <uint32_t>vr(self.c, VMCS_OFF_GUEST_GDTR_LIMIT, 4))
        return DescriptorTable(vr(self.c, VMCS_OFF_GUEST_IDTR_BASE, 8), <uint32_t>vr(self.c, VMCS_OFF_GUEST_IDTR_LIMIT, 4))

    def _set_table(self, int i, value, str name):
        if not isinstance(value, DescriptorTable):
            raise TypeError(f"{name} takes a vtx.DescriptorTable, not {type(value).__name__}")
        _host_writes_vmcs(self.c)
        if i == 0:
            vwt(self.c, VMCS_OFF_GUEST_GDTR_BASE, 8, value.base)
            vwt(self.c, VMCS_OFF_GUEST_GDTR_LIMIT, 4, value.limit)
        else:
            vwt(self.c, VMCS_OFF_GUEST_IDTR_BASE, 8, value.base)
            vwt(self.c, VMCS_OFF_GUEST_IDTR_LIMIT, 4, value.limit)

    @property
    def efer(self):
        """IA32_EFER: the VMCS guest field when "load IA32_EFER" is set, else
        the processor's."""
        if vr(self.c, VMCS_OFF_VM_ENTRY_CONTROLS, 4) & ENTRY_CTL_LOAD_IA32_EFER:
            return vr(self.c, VMCS_OFF_GUEST_IA32_EFER, 8)
        return self.c.efer

    @efer.setter
    def efer(self, value):
        cdef uint64_t v = _fit(value, 64, "efer")
        _host_writes_vmcs(self.c)
        if vr(self.c, VMCS_OFF_VM_ENTRY_CONTROLS, 4) & ENTRY_CTL_LOAD_IA32_EFER:
            vwt(self.c, VMCS_OFF_GUEST_IA32_EFER, 8, v)
        else:
            self.c.efer = v

    # --- accounting ---------------------------------------------------------

    @property
    def instructions(self):
        """Guest instructions retired since the vCPU was made."""
        return self.c.icount

    @property
    def entries(self):
        """Successful VM entries since the vCPU was made."""
        return self.c.entries

    def exit_counts(self):
        """Exits per basic reason (a list of 128 counts)."""
        return [self.c.exit_count[i] for i in range(128)]

    def _acct(self):
        """The accounting's detail since the last reset, as a dict
        (core/acct.pxi; vtx.overhead.Stats reads it)."""
        return acct_cumulative(self.c)

    def _acct_mark(self):
        """A mark whose ``delta()`` is the accounting since it was made."""
        return _acct_mark_of(self.c, self)

    def _complete(self, uint64_t rip0, uint32_t length, object left):
        """The completion of an instruction a STOP left pending (vtx/vm.py,
        VM._before_run): when RIP is still rip0, step over it as RESUME does
        (step_over), ending blocking by STI and MOV SS only if the
        interruptibility state is still ``left``, the one the STOP left (None:
        any), since a state written after the STOP is the user's.  Returns the
        interruptibility state before, or None when RIP moved (nothing done)."""
        cdef Cpu* c = self.c
        cdef uint64_t rip
        cdef uint32_t intr
        _host_writes_vmcs(c)
        if vr(c, VMCS_OFF_GUEST_RIP, 8) != rip0:
            return None
        intr = <uint32_t>vr(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4)
        rip = rip0 + length
        if not ((vr(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4) & ENTRY_CTL_IA32E_MODE_GUEST)
                and (<uint32_t>vr(c, off_ar(S_CS), 4) & AR_L)):
            rip &= 0xFFFFFFFFULL            # outside 64-bit code EIP wraps
        vwt(c, VMCS_OFF_GUEST_RIP, 8, rip)
        if left is None or intr == left:
            vwt(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4, intr & ~3U)
        return intr

    def _intr_state(self):
        """GUEST_INTERRUPTIBILITY_STATE for vtx itself (VM._note_stop): not
        counted as an API VMREAD, and without vmread's checks of a field
        number it does not need."""
        return <uint32_t>vr(self.c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4)

    def _acct_reset(self):
        if self.c.running:
            raise VmStateError("the accounting is reset between runs, not during one")
        acct_reset(self.c)

    def exit_nanoseconds(self):
        """Wall-clock nanoseconds per basic reason, from the VM exit to the
        next successful VM entry: building the exit object, the handler, and
        the entry checks of VMRESUME (or to the moment run() returns)."""
        return [ticks_to_ns(self.c.exit_ticks[i]) for i in range(128)]

    def model_cpuid(self, leaf, subleaf=0):
        """What the modeled processor's CPUID returns (EAX, EBX, ECX, EDX): a
        handler that passes CPUID through can answer with it.  OSXSAVE
        (CPUID.01H:ECX[27]) follows the guest's CR4 in the VMCS, MONITOR
        (bit 3) its IA32_MISC_ENABLE[18]."""
        cdef uint32_t r[4]
        model_cpuid(self.c, self._vmcs_u64(VMCS_OFF_GUEST_CR4), <uint32_t>leaf, <uint32_t>subleaf, r)
        return (r[0], r[1], r[2], r[3])

    # --- the run loop -------------------------------------------------------

    def check_entry(self):
        """The VM-entry checks of SDM Vol. 3C 27.2 and 27.3.1 on the VMCS as
        it stands, without entering: None if VMLAUNCH (the VMCS is clear) or
        VMRESUME (it is launched) would pass them, else the
        :class:`~vtx.VmEntryError` the entry would fail with.  Nothing is
        written, so the VM-entry MSR-load area, which the entry loads with
        WRMSR after these checks (27.4), is not looked at.  After any exit, the guest state saved by the model passes
        (a guest cannot make its own VM unresumable)."""
        cdef int rc
        with nogil:
            rc = entry_checks(self.c, self.c.vmx.vmcs[VMCS_OFF_LAUNCH_STATE] == 0, &CKM_ALL)
        if rc == RC_OK:
            return None
        return _entry_error(self.c, rc)

    def invvpid(self):
        """Invalidate the guest's cached linear and combined mappings, as
        INVVPID does (SDM Vol. 3C 29.4.3.3).  With "enable VPID" set, the
        model keeps the guest's TLB across VM exits and entries like the
        processor does, so a hypervisor that changes the guest's paging
        structures behind its back (through a raw memory view) or its EPT
        tables calls this or :meth:`invept` before resuming.  Writes through
        ``vm.write`` invalidate by themselves.  The model invalidates all
        mappings (allowed for every INVVPID type)."""
        if self.c.in_guest:
            raise VmStateError("invvpid: the guest is running (run() is active in another thread)")
        tlb_flush(self.c)
        self.c.tlb_kept = 0

    def invept(self):
        """Invalidate mappings derived from EPT, as INVEPT does (SDM Vol.
        3C 29.4.3.1); see :meth:`invvpid`."""
        if self.c.in_guest:
            raise VmStateError("invept: the guest is running (run() is active in another thread)")
        tlb_flush(self.c)
        self.c.tlb_kept = 0

    def _dirty_checks(self):
        """The names of the checks the next VMRESUME would run in the
        incremental mode, in SDM order (for tests; docs/architecture.rst,
        "Entry checks at VMRESUME").  A view of the private memory makes it
        every check, as it does for the entry."""
        _host_writes_vmcs(self.c)          # it updates the record, as the entry would
        _note_raw_views(self.c, self.machine.priv_mem)
        cdef ck_mask_t d = resume_mask(self.c)
        return [_ENTRY_CHECKS[i][0] for i in range(CK_COUNT) if ck_has(&d, i)]

    def _set_dirty_checks(self, names):
        """Replace the record of the checks whose inputs changed with `names`
        (for tests: forgetting a change must make the verification mode
        raise, and the incremental mode miss it)."""
        index = {row[0]: i for i, row in enumerate(_ENTRY_CHECKS)}
        cdef ck_mask_t d
        ck_clear(&d)
        for name in names:
            ck_set(&d, index[name])
        _host_writes_vmcs(self.c)
        _note_raw_views(self.c, self.machine.priv_mem)
        self.c.vmx.ck_dirty = d

    # --- external events (core/vmx/events.pxi; docs/architecture.rst,
    # "Events and injection") ---------------------------------------------

    def inject(self, vector, kind="exception", error_code=None, instruction_length=0):
        """Inject an event at the next VM entry, as a hypervisor does (SDM
        Vol. 3C 25.8.3, 27.6): the VM-entry interruption-information field,
        with the error code and instruction length where they apply.
        ``kind``: "interrupt" (external, type 0), "nmi" (type 2, vector 2),
        "exception" (hardware exception, type 3: vectors 0-31; #DF, #TS, #NP,
        #SS, #GP, #PF, #AC and #CP deliver an error code, default 0),
        "software-interrupt" (INT n, type 4), "privileged-software-exception"
        (INT1, type 5) or "software-exception" (INT3/INTO, type 6); the
        three software kinds need the ``instruction_length`` (1-15) of the
        instruction that raised them.  The VM-entry checks judge the rest."""
        types = {"interrupt": 0, "nmi": 2, "exception": 3, "software-interrupt": 4,
                 "privileged-software-exception": 5, "software-exception": 6}
        if kind not in types:
            raise ArgumentError(f"an event kind is one of {', '.join(types)}, not {kind!r}")
        if isinstance(vector, bool) or not isinstance(vector, int) or not 0 <= vector <= 255:
            raise ArgumentError(f"a vector is an int in [0, 255], not {vector!r}")
        t = types[kind]
        if kind == "nmi" and vector != 2:
            raise ArgumentError("an NMI has vector 2")
        if kind == "exception" and vector > 31:
            raise ArgumentError(f"a hardware exception has a vector in [0, 31], not {vector}")
        has_error = kind == "exception" and vector in (8, 10, 11, 12, 13, 14, 17, 21)
        if error_code is not None and not has_error:
            raise ArgumentError(f"{kind} {vector} delivers no error code (SDM Vol. 3A Table 6-1)")
        if t in (4, 5, 6):
            if isinstance(instruction_length, bool) or not isinstance(instruction_length, int) or \
                    not 1 <= instruction_length <= 15:
                raise ArgumentError(f"a {kind} needs the instruction_length (1-15) of its instruction")
            self.vmwrite(VMCS_VM_ENTRY_INSTRUCTION_LENGTH, instruction_length)
        if has_error:
            ec = 0 if error_code is None else error_code
            if isinstance(ec, bool) or not isinstance(ec, int) or not 0 <= ec <= 0xFFFFFFFF:
                raise ArgumentError(f"an error code is a 32-bit int, not {error_code!r}")
            self.vmwrite(VMCS_VM_ENTRY_EXCEPTION_ERROR_CODE, ec)
        self.vmwrite(VMCS_VM_ENTRY_INTERRUPTION_INFO,
                     (1 << 31) | (0x800 if has_error else 0) | (t << 8) | vector)

    def raise_interrupt(self, vector):
        """Raise an external interrupt with ``vector`` (0-255), as an
        interrupt controller asserting INTR would.  It stays pending until
        the processor takes it at an instruction boundary: in VMX non-root
        operation with "external-interrupt exiting" a VM exit (reason 1,
        EXTERNAL_INTERRUPT; with "acknowledge interrupt on exit" the exit
        takes the vector and reports it in the interruption information,
        otherwise it stays pending), else delivery through the guest's IVT
        or IDT once RFLAGS.IF = 1 and no STI or MOV SS blocking is in effect.
        Several vectors may be pending; the highest is taken first.  A
        halted guest that can take it wakes up."""
        if isinstance(vector, bool) or not isinstance(vector, int) or not 0 <= vector <= 255:
            raise ArgumentError(f"an interrupt vector is an int in [0, 255], not {vector!r}")
        if self.c.in_guest:
            raise VmStateError("raise_interrupt: the guest is running (run() is active in another thread)")
        self.c.irr[vector >> 6] |= 1ULL << (vector & 63)

    def post_interrupt(self, vector):
        """Post virtual interrupt ``vector`` (16-255) to this vCPU, as a VMM
        or another processor does with posted interrupts (SDM Vol. 3C 30.6,
        core/vmx/apicv.pxi): set its bit in the posted-interrupt requests of
        the descriptor at POSTED_INTERRUPT_DESCRIPTOR_ADDRESS and, if the
        outstanding-notification bit (bit 256) was clear, set it and raise
        POSTED_INTERRUPT_NOTIFICATION_VECTOR as an external interrupt.  With
        "process posted interrupts" the guest then takes ``vector`` without
        a VM exit.  Returns whether a notification was sent."""
        cdef uint64_t addr
        cdef uint8_t* p
        cdef int nv
        if isinstance(vector, bool) or not isinstance(vector, int) or not 16 <= vector <= 255:
            raise ArgumentError(f"a posted interrupt's vector is an int in [16, 255], not {vector!r}")
        if self.c.in_guest:
            raise VmStateError("post_interrupt: the guest is running (run() is active in another thread)")
        addr = vr(self.c, VMCS_OFF_POSTED_INTERRUPT_DESCRIPTOR_ADDRESS, 8)
        nv = <int>(vr(self.c, VMCS_OFF_POSTED_INTERRUPT_NOTIFICATION_VECTOR, 2) & 0xFF)
        p = hpa_ptr(self.c, addr, 64, 0) if (addr & 0x3F) == 0 else NULL
        if p == NULL:
            raise GuestMemoryError(f"post_interrupt: no memory backs the 64-byte aligned posted-interrupt "
                                   f"descriptor at {addr:#x} (POSTED_INTERRUPT_DESCRIPTOR_ADDRESS)")
        p[vector >> 3] |= 1 << (vector & 7)
        if p[32] & 1:
            return False
        p[32] |= 1
        self.c.irr[nv >> 6] |= 1ULL << (nv & 63)
        return True

    def raise_nmi(self):
        """Raise a non-maskable interrupt.  It stays pending (one at most,
        as on the processor) until it can be taken: a VM exit (reason 0,
        interruption type 2, vector 2) with "NMI exiting", else delivery
        through vector 2 of the guest's IDT when there is no blocking by NMI
        (an NMI handler runs until its IRET) or by MOV SS."""
        if self.c.in_guest:
            raise VmStateError("raise_nmi: the guest is running (run() is active in another thread)")
        self.c.nmi_pending = 1

    def clear_interrupt(self, vector=None):
        """Withdraw a pending external interrupt (``vector``), or every one
        (None), as an interrupt controller would lower a level-triggered
        request."""
        if self.c.in_guest:
            raise VmStateError("clear_interrupt: the guest is running (run() is active in another thread)")
        if vector is None:
            memset(self.c.irr, 0, sizeof(self.c.irr))
            return
        if isinstance(vector, bool) or not isinstance(vector, int) or not 0 <= vector <= 255:
            raise ArgumentError(f"an interrupt vector is an int in [0, 255], not {vector!r}")
        self.c.irr[vector >> 6] &= ~(1ULL << (vector & 63))

    @property
    def pending_interrupts(self):
        """The external interrupt vectors raised and not yet taken, in
        ascending order."""
        return tuple(v for v in range(256) if (self.c.irr[v >> 6] >> (v & 63)) & 1)

    @property
    def nmi_pending(self):
        """Whether an NMI is raised and not yet taken."""
        return self.c.nmi_pending != 0

    @property
    def blocks_built(self):
        """Translated blocks decoded since the vCPU was made (the engine's
        re-translation work: docs/architecture.rst, "The fast path of the
        interpreter")."""
        return self.c.blocks_built

    @property
    def events(self):
        """Exceptions and interrupts delivered through the guest's IVT or
        IDT since the vCPU was made (INT n, INT3 and INTO count as
        instructions instead)."""
        return self.c.events

    def end_run_after(self, steps):
        """From an exit or MMIO handler: let the current run end, as its
        budget would, once ``steps`` more steps (instructions retired plus
        events delivered) are done, if that is sooner than the run's own
        budget.  A platform uses it when a device's next deadline moves
        inside the slice it is running (a timer programmed by MMIO)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ArgumentError(f"steps is a positive int, not {steps!r}")
        if not self.c.running:
            raise VmStateError("end_run_after is for a handler of a running vCPU")
        at = self.c.icount + self.c.events + steps
        if self.c.run_limit == 0 or at < self.c.run_limit:
            self.c.run_limit = at

    # --- the host debugger (core/debugger.pxi; vtx/debug/ drives it) -------

    def step(self):
        """Execute exactly one instruction (one iteration of a REP string
        instruction), or deliver one event, or take one VM exit and let its
        handler answer it, and never more; returns a
        :class:`vtx.debug.StepResult` saying what happened."""
        if self.vm is None:
            raise VmStateError("step() needs a vCPU made by vtx.VM.add_vcpu")
        return self.vm.step(self)

    def trace(self, *args, **kwargs):
        """Trace this vCPU's instructions: :meth:`vtx.VM.trace` with
        ``vcpus=[this vCPU]``."""
        if self.vm is None:
            raise VmStateError("trace() needs a vCPU made by vtx.VM.add_vcpu")
        return self.vm.trace(*args, vcpus=[self], **kwargs)


    def _debug_set(self, breakpoints, watchpoints, physical_breakpoints=()):
        """Arm the execute breakpoints (linear addresses, then guest-physical
        ones: a hit's index counts on from the linear ones) and the
        watchpoints ((addr, length, kind, phys) with kind 1 read, 2 write, 3
        access) of the host debugger, replacing the previous ones."""
        cdef Cpu* c = self.c
        cdef uint32_t i
        if c.in_guest:
            raise VmStateError("breakpoints cannot change while the guest runs in another thread")
        pbps = [int(a) for a in physical_breakpoints]
        if len(pbps) > 32:
            raise ArgumentError("the host debugger holds at most 32 physical breakpoints per vCPU")
        for a in pbps:
            if not 0 <= a <= 0xFFFFFFFFFFFFFFFF:
                raise ArgumentError(f"a breakpoint address is a 64-bit value, not {a:#x}")
        for i in range(len(pbps)):
            c.hbpp[i] = pbps[i]
        c.hbpp_n = len(pbps)
        bps = [int(a) for a in breakpoints]
        wps = [(int(a), int(n), int(k), bool(ph)) for a, n, k, ph in watchpoints]
        if len(bps) > 32 or len(wps) > 32:
            raise ArgumentError("the host debugger holds at most 32 breakpoints and 32 watchpoints per vCPU")
        for a in bps:
            if not 0 <= a <= 0xFFFFFFFFFFFFFFFF:
                raise ArgumentError(f"a breakpoint address is a 64-bit value, not {a:#x}")
        for a, n, k, ph in wps:
            if not 0 <= a <= 0xFFFFFFFFFFFFFFFF or not 0 < n <= (1 << 32) or k not in (1, 2, 3):
                raise ArgumentError(f"bad watchpoint ({a:#x}, {n}, {k})")
        for i in range(len(bps)):
            c.hbp[i] = bps[i]
        c.hbp_n = len(bps)
        for i in range(len(wps)):
            c.hwp[i].addr = wps[i][0]
            c.hwp[i].len = wps[i][1]
            c.hwp[i].kind = wps[i][2]
            c.hwp[i].phys = wps[i][3]
        c.hwp_n = len(wps)
        _hd_changed(c)

    def _debug_skip(self, addr):
        """Pass over the breakpoint at linear address addr at the next
        boundary if it is the first (resuming from a breakpoint); None: no."""
        if addr is None:
            self.c.hbp_skip_on = 0
        else:
            self.c.hbp_skip = <uint64_t>addr
            self.c.hbp_skip_on = 1

    def _debug_stop(self):
        """What stopped the last run with ``"debug"``: (kind, index, address,
        size, is_write), kind 1 a breakpoint, 2 a watchpoint; cleared."""
        cdef Cpu* c = self.c
        r = (c.hd_stop, c.hd_index, c.hd_addr, c.hd_size, bool(c.hd_write))
        c.hd_stop = 0
        return r

    def _trace_set(self, uint32_t capacity, uint64_t lo, uint64_t hi, uint32_t modes):
        """Trace the instructions at linear addresses [lo, hi] in the modes
        of the bit set ``modes`` into a buffer of ``capacity`` records
        (0: tracing off, the buffer freed)."""
        cdef Cpu* c = self.c
        cdef TraceRec* buf = NULL
        if c.in_guest:
            raise VmStateError("the trace cannot change while the guest runs in another thread")
        if capacity:
            buf = <TraceRec*>malloc(capacity * sizeof(TraceRec))
            if buf == NULL:
                raise MemoryError()
        free(c.trace_buf)
        c.trace_buf = buf
        c.trace_cap = capacity
        c.trace_n = 0
        c.trace_lo = lo
        c.trace_hi = hi
        c.trace_modes = modes
        _hd_changed(c)

    def _trace_take(self):
        """The trace records collected so far, as bytes (TRACE_RECORD_SIZE
        each); the buffer starts over."""
        cdef Cpu* c = self.c
        cdef bytes b = b""
        if c.trace_buf != NULL and c.trace_n:
            b = PyBytes_FromStringAndSize(<char*>c.trace_buf, c.trace_n * sizeof(TraceRec))
        c.trace_n = 0
        return b

    cdef int _mmio_answer(self) except -1:
        """RC_MMIO: perform the access the guest is waiting for through
        mmio_handler, append it to the log and let the instruction run again
        (core/mmu.pxi, "MMIO")."""
        cdef Cpu* c = self.c
        cdef MmioAccess* a
        cdef uint64_t mask
        if c.mmio_req.size == 0:
            raise _mmio_unsupported(c)
        h = self.mmio_handler
        if h is None:
            raise GuestMemoryError(
                f"the guest {'wrote' if c.mmio_req.write else 'read'} {c.mmio_req.size} bytes at "
                f"guest-physical address {c.mmio_req.gpa:#x}, which no memory slot backs, at rip {c.rip:#x}; "
                f"attach a device there (vm.map_mmio) or add memory (vm.add_memory)")
        c.exit_count[EXIT_REASON_EPT_VIOLATION] += 1     # the exit this is on the processor
        mask = 0xFFFFFFFFFFFFFFFFULL >> (64 - 8 * c.mmio_req.size)
        if c.mmio_req.write:
            h(self, c.mmio_req.gpa, c.mmio_req.size, True, c.mmio_req.value)
            value = c.mmio_req.value
        else:
            value = h(self, c.mmio_req.gpa, c.mmio_req.size, False, 0)
            if isinstance(value, bool) or not isinstance(value, int):
                raise HandlerReturnError(f"the MMIO handler {getattr(h, '__qualname__', h)!r} returned "
                                         f"{value!r} for a read of {c.mmio_req.size} bytes at "
                                         f"{c.mmio_req.gpa:#x}; a read returns an int")
            value &= mask
        if c.mmio_n != 0 and (c.icount != c.mmio_icount or c.events != c.mmio_events or c.rip != c.mmio_rip):
            c.mmio_n = 0
        a = &c.mmio_log[c.mmio_n]
        a.gpa = c.mmio_req.gpa
        a.size = c.mmio_req.size
        a.write = c.mmio_req.write
        a.value = <uint64_t>value
        c.mmio_n += 1
        c.mmio_icount = c.icount
        c.mmio_events = c.events
        c.mmio_rip = c.rip
        return 0

    def _run(self, list handlers not None, object default, object budget, object RESUME, object RETRY,
             object STOP, bint step=False):
        """Enter the guest and dispatch exits until a handler says STOP, the
        budget runs out or the guest halts.

        ``budget`` counts steps: instructions retired plus events delivered
        (0 = none).  A run is not re-entrant: calling it again from a handler,
        or from another thread while it runs, is a VmStateError.

        Returns (why, last_exit, per_reason, instructions, events):
        per_reason maps each basic exit reason that occurred in this run to
        (count, nanoseconds); the deltas are taken here, in C, so that a run
        costs no per-reason work in Python.

        With ``step`` the run ends after the first VM exit has been handled
        (why ``"step"``), so that an exit never lets a second instruction
        run (vtx/debug/)."""
        cdef Cpu* c = self.c
        cdef uint64_t counts0[128]
        cdef uint64_t ns0[128]
        cdef uint64_t i0, e0
        cdef int r
        self._check_run(handlers, budget)
        i0 = c.icount
        e0 = c.events
        why, last = self._run_counted(handlers, default, budget, RESUME, RETRY, STOP, step, counts0, ns0)
        per_reason = {}
        for r in range(128):
            if c.exit_count[r] != counts0[r]:
                per_reason[r] = (c.exit_count[r] - counts0[r], ticks_to_ns(c.exit_ticks[r] - ns0[r]))
        return why, last, per_reason, c.icount - i0, c.events - e0

    cdef int _check_run(self, list handlers, object budget) except -1:
        """The arguments of _run and _run_one, and no run active."""
        if len(handlers) != 128:
            raise ArgumentError("handlers must be a list of 128 entries")
        if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= MAX_BUDGET:
            raise ArgumentError(f"the budget is an int in [0, {MAX_BUDGET:#x}] (0 = none), not {budget!r}")
        if self.c.running:
            raise VmStateError("run() is already active on this vCPU (called from an exit handler or "
                               "another thread); return RESUME, RETRY or STOP from the handler instead")
        return 0

    cdef tuple _run_counted(self, list handlers, object default, object budget, object RESUME, object RETRY,
                            object STOP, bint step, uint64_t* counts0, uint64_t* ticks0):
        """The run itself, for _run and _run_one (after _check_run): the vCPU
        marked running, the exit counts and times before it copied into
        counts0 and ticks0, _run_inner.  Returns (why, last_exit)."""
        cdef Cpu* c = self.c
        c.running = 1
        c.run_limit = 0
        memcpy(counts0, c.exit_count, 128 * sizeof(uint64_t))
        memcpy(ticks0, c.exit_ticks, 128 * sizeof(uint64_t))
        try:
            return self._run_inner(handlers, default, budget, RESUME, RETRY, STOP, step)
        finally:
            c.running = 0
            c.in_guest = 0

    def _run_one(self, list handlers not None, object default, object budget, object RESUME, object RETRY,
                 object STOP, tuple keys not None, tuple complete=None):
        """_run for VM.run on one vCPU, with what VM.run needs of the run made
        here in C rather than in Python (vm.run() called in a loop is how
        users step a guest, and its fixed cost counts): the run's accounting
        mark, made before and ended after (core/acct.pxi), its wall time, and
        its exits and nanoseconds per reason in dicts keyed by ``keys[r]``
        (vtx/vm.py, _REASON_KEYS).  ``complete``, when a STOP left an
        instruction pending, is (rip, length, interruptibility state the
        STOP left or None): the completion _complete makes, first; when the
        entry then fails before any entry succeeded, it is undone and the
        VmEntryError carries the interruptibility state from before it as
        ``_completion_undone`` (VM._run_checked puts the pending completion
        back).  Returns (why, last_exit, exits, exit_ns,
        instructions, events, wall_ns, mark, pending), pending being, when a
        handler's STOP left an instruction of COMPLETED_ON_NEXT_RUN to
        complete, (guest_rip, instruction_length, interruptibility state
        now), else None (VM._note_stop)."""
        cdef Cpu* c = self.c
        cdef Exit ex
        cdef uint64_t counts0[128]
        cdef uint64_t ticks0[128]
        cdef uint64_t i0, e0, t0
        cdef int r
        cdef AcctMark mark
        cdef dict exits = {}
        cdef dict exit_ns = {}
        cdef uint64_t entries0
        cdef object intr0 = None
        if len(keys) != 128:
            raise ArgumentError("keys must have 128 entries")
        self._check_run(handlers, budget)
        if complete is not None:
            intr0 = self._complete(complete[0], complete[1], complete[2])
        entries0 = c.entries
        mark = _acct_mark_of(c, self)
        t0 = now_ticks()
        i0 = c.icount
        e0 = c.events
        try:
            why, last = self._run_counted(handlers, default, budget, RESUME, RETRY, STOP, False, counts0, ticks0)
        except VmEntryError as e:
            if intr0 is not None and c.entries == entries0:
                # The completion belongs to the entry that failed.
                _host_writes_vmcs(c)
                vwt(c, VMCS_OFF_GUEST_RIP, 8, <uint64_t>complete[0])
                vwt(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4, <uint32_t>intr0)
                e._completion_undone = intr0
            raise
        finally:
            mark.end()
        for r in range(128):
            if c.exit_count[r] != counts0[r]:
                k = keys[r]
                exits[k] = c.exit_count[r] - counts0[r]
                exit_ns[k] = ticks_to_ns(c.exit_ticks[r] - ticks0[r])
        pending = None
        if why == "stop" and last is not None:
            ex = <Exit>last
            if ex.reason < 128 and _completed_on_next_run[ex.reason] and ex.instruction_length:
                pending = (ex.guest_rip, ex.instruction_length,
                           <uint32_t>vr(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4))
        return (why, last, exits, exit_ns, c.icount - i0, c.events - e0, ticks_to_ns(now_ticks() - t0), mark,
                pending)

    cdef object _run_inner(self, list handlers, object default, uint64_t budget, object RESUME,
                           object RETRY, object STOP, bint step):
        cdef Cpu* c = self.c
        cdef int rc, launch
        cdef Exit ex
        cdef object h, r
        cdef uint32_t reason
        cdef uint64_t t_h
        cdef uint64_t limit = c.icount + c.events + budget if budget else 0xFFFFFFFFFFFFFFFFULL
        cdef HostMemory priv = self.machine.priv_mem
        while True:
            launch = c.vmx.vmcs[VMCS_OFF_LAUNCH_STATE] == 0
            _note_raw_views(c, priv)
            c.mmio_pos = 0          # [MMIO] a run takes the answered accesses from the first
            if c.run_limit and c.run_limit < limit:
                limit = c.run_limit     # a handler asked for an earlier end (end_run_after)
            # The entry and the first GIL_HOLD steps run with the GIL held:
            # most exits come sooner (an exit-heavy guest exits every few
            # instructions), and a release and take of the GIL cost about
            # as much as the rest of the round trip's model work.  A guest
            # that runs on releases it for the rest (other threads, other
            # VMs), as before.
            c.in_guest = 1
            rc = vm_entry(c, launch)
            if rc == RC_OK:
                rc = guest_slice(c, limit if limit <= c.icount + c.events + GIL_HOLD
                                 else c.icount + c.events + GIL_HOLD)
                if rc == RC_BUDGET and c.icount + c.events < limit:
                    with nogil:
                        rc = guest_slice(c, limit)
            c.in_guest = 0
            while (rc == RC_BUDGET and c.icount + c.events < limit) or (rc == RC_HOSTDBG and
                                                                       c.hd_stop == HDS_TRACE):
                # A slice ended inside the guest: look at Python's signals
                # without leaving non-root operation, then go on.  [hdbg] Or
                # the trace buffer is full: its handler takes the records.
                try:
                    if rc == RC_HOSTDBG:
                        c.hd_stop = 0
                        if self.trace_handler is not None:
                            self.trace_handler(self)
                        c.trace_n = 0
                    PyErr_CheckSignals()
                except BaseException:
                    # Ctrl-C: the guest state is saved, so the VM can run
                    # again from where it stopped.  in_guest: the model
                    # writes the VMCS, so no other thread may.
                    c.in_guest = 1
                    with nogil:
                        vm_leave(c)
                    c.in_guest = 0
                    raise
                c.in_guest = 1
                with nogil:
                    rc = guest_slice(c, limit)
                c.in_guest = 0
            if rc == RC_BUDGET:
                c.in_guest = 1
                with nogil:
                    vm_leave(c)
                c.in_guest = 0
            if rc == RC_VMEXIT:
                ex = make_exit(c)
                reason = ex.reason & 0x7F
                h = handlers[reason]
                if h is None:
                    h = default
                if h is None:
                    account_exit_time(c)
                    raise UnhandledExit(ex)
                # The handler's share of the round trip: part of the detail
                # (two clock reads per exit).
                t_h = now_ticks() if acct_detail else 0
                try:
                    r = h(self, ex)
                except BaseException:
                    account_exit_time(c)
                    raise
                finally:
                    if t_h:
                        c.acct.handler_ticks[reason] += now_ticks() - t_h
                if r is RESUME:
                    if ex.instruction_length == 0:
                        raise HandlerReturnError(
                            f"the handler for {ex.name} returned RESUME, but this exit has no "
                            f"instruction to step over (VM-exit instruction length 0); "
                            f"return RETRY after changing the guest state, or STOP")
                    step_over(c, ex.instruction_length)
                    if step:
                        account_exit_time(c)
                        return ("step", ex)
                    continue
                elif r is RETRY:
                    if step:
                        account_exit_time(c)
                        return ("step", ex)
                    continue
                # The time of an exit runs to the next VM entry (vm_entry adds
                # it); when no entry follows, it ends here.
                account_exit_time(c)
                if r is STOP:
                    return ("stop", ex)
                raise HandlerReturnError(
                    f"the handler {getattr(h, '__qualname__', h)!r} for {ex.name} returned {r!r}; "
                    f"an exit handler returns vtx.RESUME, vtx.RETRY or vtx.STOP")
            elif rc == RC_MMIO:
                # An MMIO access is an EPT violation on the processor (the
                # count is _mmio_answer's); here its time, all of it the
                # handler's: the model has no exit path for it.
                t_h = now_ticks()
                try:
                    self._mmio_answer()
                finally:
                    t_h = now_ticks() - t_h
                    acct_touch(c.acct, EXIT_REASON_EPT_VIOLATION)
                    c.acct.count[EXIT_REASON_EPT_VIOLATION] += 1
                    c.acct.rt_ticks[EXIT_REASON_EPT_VIOLATION] += t_h
                    c.acct.handler_ticks[EXIT_REASON_EPT_VIOLATION] += t_h
                    if acct_detail:
                        acct_sample(c.acct, EXIT_REASON_EPT_VIOLATION, t_h)
            elif rc == RC_HOSTDBG:
                # [hdbg] a breakpoint or watchpoint of the host debugger
                # (core/debugger.pxi); the guest state is saved.
                return ("debug", None)
            elif rc == RC_BUDGET:
                return ("budget", None)
            elif rc == RC_HALTED:
                return ("halted", None)
            elif rc == RC_SHUTDOWN:
                return ("shutdown", None)
            elif rc == RC_ENTRY_FAIL_CTL or rc == RC_ENTRY_FAIL_HOST or rc == RC_ENTRY_FAIL_GUEST:
                account_exit_time(c)
                raise _entry_error(c, rc)
            elif rc == RC_BAD_PHYS:
                raise GuestMemoryError(
                    f"the guest {'wrote' if c.bad_write else 'read'} host-physical address {c.bad_addr:#x}, "
                    f"which no memory slot backs (guest memory is [0, {c.ram_size:#x})), "
                    f"at rip {vr(c, VMCS_OFF_GUEST_RIP, 8):#x}")
            elif rc == RC_UNSUPPORTED:
                raise VtxError(_unsupported_message(c))
            elif rc == RC_ENTRY_CHECK_MISMATCH:
                account_exit_time(c)
                raise _mismatch_error(c)
            else:
                raise VtxError(f"internal error: run loop returned {rc}")


# The basic exit reasons whose instruction a STOP leaves for the next run to
# complete (vtx/vm.py, COMPLETED_ON_NEXT_RUN, which sets this table).
cdef uint8_t _completed_on_next_run[128]


def _set_completed_on_next_run(reasons):
    """Set the table VCpu._run_one reads from vtx/vm.py's
    COMPLETED_ON_NEXT_RUN (one source of truth)."""
    cdef int r
    for r in range(128):
        _completed_on_next_run[r] = 1 if r in reasons else 0


#: Bytes per record of the instruction trace (VCpu._trace_take).
TRACE_RECORD_SIZE = sizeof(TraceRec)


cdef void _hd_changed(Cpu* c) noexcept:
    """The host debugger's settings changed: the debug path on or off
    (Cpu.hdbg), the TLB entries made under the old watchpoints dropped, and
    every translated block (none may run while Cpu.hdbg is set)."""
    c.hdbg = ((HD_BREAK if c.hbp_n else 0) | (HD_WATCH if c.hwp_n else 0)
              | (HD_TRACE if c.trace_cap else 0) | (HD_PBREAK if c.hbpp_n else 0))
    tlb_flush(c)
    c.block_epoch += 1


cdef object _mmio_unsupported(Cpu* c):
    return GuestMemoryError(
        f"the guest {'wrote' if c.mmio_req.write else 'read'} guest-physical address {c.mmio_req.gpa:#x}, "
        f"which no memory slot backs (MMIO), through an access the model does not emulate (an exception "
        f"frame, a descriptor table, a task-state segment, an FXSAVE area or more than 32 accesses in one "
        f"instruction) at rip {c.rip:#x}")


cdef void step_over(Cpu* c, uint32_t length) noexcept nogil:
    """RESUME: step over the exiting instruction, as hypervisors do, and end
    blocking by STI / MOV SS (SDM Vol. 3C 25.4.2).  Through vwt: a RIP past
    the canonical range must fail the next VMRESUME's GUEST_RIP check."""
    cdef uint64_t rip = vr(c, VMCS_OFF_GUEST_RIP, 8) + length
    cdef uint32_t cs_ar = <uint32_t>vr(c, off_ar(S_CS), 4)
    if not ((vr(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4) & ENTRY_CTL_IA32E_MODE_GUEST) and (cs_ar & AR_L)):
        rip &= 0xFFFFFFFFULL
    vwt(c, VMCS_OFF_GUEST_RIP, 8, rip)
    vwt(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4, vr(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4) & ~3ULL)


cdef int _host_writes_vmcs(Cpu* c) except -1:
    """The API writes the VMCS only between runs of the guest: a write while
    another thread's run is inside the guest would race the entry checks and
    their record of what changed (docs/architecture.rst, "Entry checks at
    VMRESUME")."""
    if c.in_guest:
        raise VmStateError("the VMCS cannot be written while the guest runs "
                           "(run() is active in another thread)")
    return 0


cdef inline void _note_raw_views(Cpu* c, HostMemory priv) noexcept:
    """Mark every check dirty if the private memory (which holds the VMCS)
    has a buffer export alive, or has had one since the last look: Python
    may have written the VMCS through it, which no vwt saw."""
    if priv.exports or priv.export_gen != c.vmx.ck_view_gen:
        c.vmx.ck_dirty = CKM_ALL
        c.vmx.ck_view_gen = priv.export_gen


cdef object _check_outcome(Cpu* c, const ck_mask_t* d):
    """What entry_checks(VMRESUME, d) gives, in words (it writes only
    c.vmx.entry_check)."""
    cdef int rc
    with nogil:
        rc = entry_checks(c, 0, d)
    if rc == RC_OK:
        return "pass"
    if c.vmx.entry_check < 0:
        return f"VM-instruction error {-c.vmx.entry_check}"
    return f"{_ENTRY_CHECKS[c.vmx.entry_check][0]} failed"


cdef object _mismatch_error(Cpu* c):
    """The verification mode's report: both passes again (a failed entry
    leaves c.vmx.ck_dirty as it was), and what the incremental one re-checked."""
    cdef ck_mask_t d = resume_mask(c)
    inc = _check_outcome(c, &d)
    full = _check_outcome(c, &CKM_ALL)
    return EntryCheckMismatch(
        f"VMRESUME: the incremental entry checks gave {inc}, the full checks {full} "
        f"(re-checked: {', '.join([_ENTRY_CHECKS[i][0] for i in range(CK_COUNT) if ck_has(&d, i)])}); "
        f"an input of a check is missing from vtx/spec/entry_checks.py INPUTS, or a VMCS write "
        f"went around vwt")


cdef object _entry_error(Cpu* c, int rc):
    cdef int ck = c.vmx.entry_check
    if ck < 0:
        num = -ck
        name = _VmInstructionError(num).name
        return VmEntryError("vm-instruction-error", num, name, "31.4",
                            "VMLAUNCH needs a clear VMCS" if num == 4 else "VMRESUME needs a launched VMCS")
    cid, area, section, desc = _ENTRY_CHECKS[ck]
    if rc == RC_ENTRY_FAIL_GUEST and area == "msr":
        return VmEntryError("msr-loading", 34, cid, section,
                            f"VM-entry MSR-load entry {vr(c, VMCS_OFF_EXIT_QUALIFICATION, 8)}: {desc}")
    if rc == RC_ENTRY_FAIL_GUEST:
        return VmEntryError("invalid-guest-state", 33, cid, section, desc)
    num = 7 if rc == RC_ENTRY_FAIL_CTL else 8
    return VmEntryError("vm-instruction-error", num, cid, section, desc)


cdef str _unsupported_message(Cpu* c):
    return f"the guest executed a VMX instruction at rip {c.rip:#x} in root operation; not modeled yet"


cdef uint32_t _encoding(object enc) except? 0xFFFFFFFFULL:
    if isinstance(enc, str):
        from vtx.spec import field_by_name
        try:
            return int(field_by_name(enc).encoding)
        except (KeyError, ValueError):
            raise VtxError(f"no VMCS field is named {enc!r}") from None
    if isinstance(enc, bool) or not isinstance(enc, int):
        raise TypeError(f"a VMCS field is an encoding (int) or a name, not {enc!r}")
    if enc < 0 or enc > 0xFFFFFFFF:
        raise ArgumentError(f"a VMCS field encoding is a 32-bit value in [0, 0xffffffff], not {enc:#x}")
    return <uint32_t>enc


include "core/regs_gen.pxi"
include "core/snapshot.pxi"
