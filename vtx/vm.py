"""The hosted hypervisor's API: a VM with guest memory, vCPUs, exit handlers.

A :class:`VM` owns guest-physical memory and the hosted hypervisor's private
memory (the VMCSs, the I/O and MSR bitmaps and the EPT tables live there, where
the guest cannot reach them).  :meth:`VM.add_vcpu` makes a vCPU and fills its
VMCS with controls that make a useful teaching hypervisor: HLT, all port I/O,
all MSR accesses, CPUID and every exception exit; EPT maps guest memory
one-to-one, and "unrestricted guest" lets the guest run in real mode.
"""

from __future__ import annotations

import array
import enum
import operator
import sys
import threading
import time
import warnings
from typing import Callable, Optional, Union

import attrs

from . import _core
from .debug.debugger import Debugging
from .errors import ArgumentError, VmEntryError, VmStateError, VtxWarning
from .memory import MemoryMap
from .overhead.stats import Stats, write_csv
from .spec import (EntryControls, ExitControls, ExitReason, ProcBased, ProcBased2, VmcsField as F,
                   capabilities)
from .types import DescriptorTable, Segment


class Action(enum.Enum):
    """What an exit handler asks the VM to do next."""

    #: Step over the exiting instruction (RIP += VM-exit instruction length)
    #: and enter the guest again.
    RESUME = "resume"
    #: Enter the guest again at the same RIP (after the handler changed state).
    RETRY = "retry"
    #: Return from :meth:`VM.run`, the guest at the exiting instruction.
    #: For the exit of an instruction the hypervisor emulates (HLT, IN/OUT,
    #: CPUID, RDMSR/WRMSR, VMCALL, RDTSC/RDTSCP, XSETBV: :data:`COMPLETED_ON_NEXT_RUN`)
    #: the instruction is pending completion: the next run steps over it
    #: first, as RESUME would have, unless RIP was moved meanwhile (or the
    #: vCPU set up anew or restored).  So a STOP at a HLT does not stop
    #: at the same HLT again on the next run.
    STOP = "stop"

    def __repr__(self):
        return f"vtx.{self.name}"


RESUME = Action.RESUME
RETRY = Action.RETRY
STOP = Action.STOP

#: An exit handler: ``handler(vcpu, exit)`` returns RESUME, RETRY or STOP.
Handler = Callable[[_core.VCpu, _core.Exit], Action]

#: The exit reasons after whose STOP the next run completes the instruction
#: (steps over it) before entering the guest: instructions a hypervisor
#: emulates, whose second execution would repeat the exit (a HLT forever) or
#: its side effect (an OUT's byte twice).  docs/architecture.rst, "STOP".

COMPLETED_ON_NEXT_RUN = frozenset({
    ExitReason.HLT, ExitReason.IO_INSTRUCTION, ExitReason.CPUID, ExitReason.RDMSR, ExitReason.WRMSR,
    ExitReason.VMCALL, ExitReason.RDTSC, ExitReason.RDTSCP, ExitReason.XSETBV})
_core._set_completed_on_next_run(COMPLETED_ON_NEXT_RUN)

# Layout of the private memory (host-physical addresses from _core.PRIV_BASE).
_VMCS = 0x0000
_IO_BITMAP_A = 0x1000
_IO_BITMAP_B = 0x2000
_MSR_BITMAP = 0x3000
_EPT_PML4 = 0x4000
_EPT_PDPT = 0x5000
_EPT_PD = 0x6000          # one page per GiB of guest memory, then one page table
_EPT_POOL_PAGES = 64      # EPT tables for memory slots beyond RAM (vtx.memory)
# Then one VMCS page for each vCPU after the first (whose VMCS is at _VMCS);
# the bitmaps and the EPT are shared.

#: The most vCPUs a VM has.
MAX_VCPUS = _core.MAX_CPUS

#: The instructions (steps) a vCPU runs in its turn when a VM with several
#: vCPUs runs them round-robin (:meth:`VM.run`).
DEFAULT_QUANTUM = 10000

GiB = 1 << 30
_2M = 1 << 21


def _le(a):
    """The bytes of an array of 64-bit entries in little-endian order."""
    if sys.byteorder != "little":
        a = array.array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


@attrs.frozen(slots=False)
class RunResult:
    """What one :meth:`VM.run` did.

    ``stop`` says why it returned: ``"stop"`` (a handler returned STOP; the
    exit is in ``exit``, the vCPU that exited in ``vcpu``), ``"budget"``
    (``max_instructions`` steps done, over all vCPUs), ``"halted"`` (every
    vCPU halted without HLT exiting or waiting for a SIPI, with nothing
    pending that wakes it), ``"shutdown"`` (``vcpu`` says which), or
    ``"breakpoint"`` / ``"watchpoint"`` (the debugger's, :mod:`vtx.debug`:
    ``hit`` says which, and ``vcpu``).  ``exits`` counts the exits of this run per
    :class:`~vtx.ExitReason`, ``exit_ns`` the wall-clock nanoseconds spent per
    reason from the exit to the next entry (handler included),
    ``instructions`` the guest instructions retired (a REP string instruction
    counts once per iteration), ``events`` the exceptions and interrupts
    delivered through the guest's IVT or IDT, and ``wall_ns`` the run's
    duration.
    """

    stop: str
    exit: object
    exits: dict
    exit_ns: dict
    instructions: int
    wall_ns: int
    events: int = 0
    vcpu: object = None
    #: The core's accounting of the run, raw (a list of the marks of
    #: vtx/core/acct.pxi, one per vCPU): :attr:`stats` reads it.
    acct: list = attrs.field(factory=list, repr=False, eq=False)
    #: The host debugger's breakpoint or watchpoint that stopped the run
    #: (stop "breakpoint" or "watchpoint"), else None.
    hit: object = None

    @property
    def stats(self):
        """The run's accounting in detail (:class:`vtx.overhead.Stats`): the
        time split and distribution per reason, the I/O port, MSR and CR
        kinds, VMREAD/VMWRITE, entries, events, TLB flushes and page walks.
        Made when first read, so a run that nobody asks costs only the
        counting."""
        return Stats.from_runs(self.acct, self.instructions, self.events, self.wall_ns)

    @property
    def total_exits(self) -> int:
        """The exits of the run, all reasons."""
        return sum(self.exits.values())

    def ns_per_exit(self, reason) -> float:
        """The mean wall-clock nanoseconds from an exit of ``reason`` to the
        next entry, handler included (0.0 when the run had none)."""
        n = self.exits.get(reason, 0)
        return self.exit_ns.get(reason, 0) / n if n else 0.0

    # --- export: what a user keeps of a run (the distribution per reason
    # is in :attr:`stats`, which has its own to_dict/to_json/to_csv/chart).

    #: The columns of :meth:`to_csv`, one row per exit reason.
    CSV_COLUMNS = ("reason", "number", "count", "total_ns", "ns_per_exit")

    def to_dict(self) -> dict:
        """Plain data (JSON-ready): why the run stopped (``stop``; the exit
        that stopped it as its reason's name and number, the vCPU's index,
        the breakpoint or watchpoint hit), ``instructions``, ``events``,
        ``wall_ns`` and ``exits``, one entry per reason in number order with
        ``count``, ``total_ns`` and ``ns_per_exit``."""
        exit = self.exit
        hit = self.hit
        return {
            "stop": self.stop,
            "exit": None if exit is None else {"reason": exit.name, "number": int(exit.reason)},
            "vcpu": None if self.vcpu is None else self.vcpu.index,
            "hit": None if hit is None else {
                "kind": hit.kind, "rip": hit.rip,
                "id": hit.breakpoint.id if hit.kind == "breakpoint" else hit.watchpoint.id},
            "instructions": self.instructions,
            "events": self.events,
            "wall_ns": self.wall_ns,
            "exits": [{"reason": r.name, "number": int(r), "count": self.exits[r],
                       "total_ns": self.exit_ns.get(r, 0), "ns_per_exit": round(self.ns_per_exit(r), 1)}
                      for r in sorted(self.exits, key=int)],
        }

    def to_json(self, **kw) -> str:
        """:meth:`to_dict` as JSON (``kw`` go to :func:`json.dumps`)."""
        import json
        return json.dumps(self.to_dict(), **kw)

    def to_csv(self, file=None) -> Optional[str]:
        """One row per exit reason (:attr:`CSV_COLUMNS`); written to ``file``
        (a text file) or returned as a string."""
        return write_csv(self.to_dict()["exits"], self.CSV_COLUMNS, file)

    def table(self) -> str:
        """The exits per reason as a text table with nanoseconds per exit."""
        rows = [("exit reason", "count", "ns/exit")]
        for reason in sorted(self.exits):
            rows.append((f"{reason.name} ({int(reason)})", str(self.exits[reason]),
                         f"{self.ns_per_exit(reason):.0f}"))
        rows.append(("total", str(self.total_exits), ""))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}" for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(-1, "-" * len(lines[0]))
        return "\n".join(lines)


# RunResult is frozen without slots, so that vm.run() can fill a new one's
# __dict__ directly: the generated __init__ writes each field through
# object.__setattr__ (frozen), and slot descriptors called one by one cost as
# much; a dict store is a fraction of either, and every vm.run() pays it
# (docs/architecture.rst, "Accounting and cost profiles", the cost of a run).
_FIELDS = ("stop", "exit", "exits", "exit_ns", "instructions", "wall_ns", "events", "vcpu", "acct", "hit")
assert tuple(f.name for f in attrs.fields(RunResult)) == _FIELDS
_new = object.__new__


def _run_result(stop, exit, exits, exit_ns, instructions, wall_ns, events, vcpu, acct, hit):
    r = _new(RunResult)
    d = r.__dict__
    d["stop"] = stop
    d["exit"] = exit
    d["exits"] = exits
    d["exit_ns"] = exit_ns
    d["instructions"] = instructions
    d["wall_ns"] = wall_ns
    d["events"] = events
    d["vcpu"] = vcpu
    d["acct"] = acct
    d["hit"] = hit
    return r


# --- the system tables the setup_* methods write (shared with vtx.bare) -------------

#: The GDT both kinds of machine get: null, 32-bit code 0x08, flat data 0x10,
#: 64-bit code 0x18, then four free entries 0x20-0x38 (a bare machine puts
#: its TSS there).
GDT = (0,
       0x00CF9B000000FFFF,   # 0x08: 32-bit code, flat
       0x00CF93000000FFFF,   # 0x10: data, flat
       0x00AF9B000000FFFF,   # 0x18: 64-bit code
       0, 0, 0, 0)
GDT_LIMIT = 8 * len(GDT) - 1


def gdt_bytes():
    return b"".join(d.to_bytes(8, "little") for d in GDT)


def long_mode_tables(pml4):
    """4-level paging structures at pml4 (28 KiB: the PML4 page, a PDPT page,
    four PD pages) that identity-map the first 4 GiB with 2 MiB pages,
    present and writable, as a small KVM VMM builds them.  Built by array
    from ranges rather than entry by entry (VM creation to first exit is a
    benchmark: docs/architecture.rst)."""
    pdpt, pd = pml4 + 0x1000, pml4 + 0x2000
    tables = array.array("Q", bytes(0x7000))
    tables[0] = pdpt | 3
    tables[512:516] = array.array("Q", range(pd | 3, pd + 0x4000, 0x1000))
    tables[1024:1024 + 2048] = array.array("Q", range(0x83, 4 * GiB, _2M))
    return _le(tables)


_get_ident = threading.get_ident
# The stops whose RunResult names the vCPU.
_VCPU_STOPS = frozenset(("stop", "shutdown", "breakpoint", "watchpoint"))
# RunResult keys: the ExitReason member for each basic reason the table
# defines, the bare number otherwise.
_REASON_KEYS = tuple(ExitReason(r) if r in ExitReason._value2member_map_ else r for r in range(128))


def _reason(r):
    if isinstance(r, ExitReason):
        return r
    if isinstance(r, str):
        try:
            return ExitReason[r.upper()]
        except KeyError:
            raise ValueError(f"no exit reason is named {r!r}") from None
    if isinstance(r, int) and not isinstance(r, bool):
        try:
            return ExitReason(r)
        except ValueError:
            raise ValueError(f"{r} is not a basic exit reason") from None
    raise TypeError(f"an exit reason is a vtx.ExitReason, its name or its number, not {r!r}")


def _check_memory_size(memory):
    if isinstance(memory, bool) or not isinstance(memory, int):
        raise TypeError(f"memory is a size in bytes, not {memory!r}")
    if memory <= 0 or memory % 4096:
        raise ValueError(f"memory must be a positive multiple of 4096 bytes, not {memory:#x}")
    if memory > _core.MAX_RAM:
        raise ArgumentError(f"memory {memory:#x} exceeds the model's limit of {_core.MAX_RAM:#x} bytes")


class _Memory:
    """Physical memory access shared by :class:`VM` and :class:`vtx.BareMetal`
    (both keep a ``_core.Machine`` in ``self._machine``): writes go through
    the core, which drops decoded code they reach.  Addresses are physical:
    guest-physical for a VM, the machine's for a bare machine."""

    @property
    def memory(self):
        """Memory as a read-only memoryview (write with :meth:`write`)."""
        return self._machine.ram_view()

    def load(self, addr, data):
        """Copy bytes (an image) into memory at addr."""
        self._machine.write(addr, data)

    def write(self, addr: int, data) -> None:
        """Write bytes into memory at addr."""
        self._machine.write(addr, data)

    def read(self, addr: int, size: int) -> bytes:
        """Read size bytes of memory at addr."""
        return self._machine.read(addr, size)

    def read_u8(self, addr: int) -> int:
        """The byte at guest-physical ``addr``."""
        return self.read(addr, 1)[0]

    def read_u16(self, addr: int) -> int:
        """The little-endian 16-bit word at guest-physical ``addr``."""
        return int.from_bytes(self.read(addr, 2), "little")

    def read_u32(self, addr: int) -> int:
        """The little-endian 32-bit doubleword at guest-physical ``addr``."""
        return int.from_bytes(self.read(addr, 4), "little")

    def read_u64(self, addr: int) -> int:
        """The little-endian 64-bit quadword at guest-physical ``addr``."""
        return int.from_bytes(self.read(addr, 8), "little")

    def _write_uint(self, addr, value, size):
        if isinstance(value, bool):
            raise TypeError(f"value is an int, not {value!r}")
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"value is an int, not {value!r}") from None
        if not 0 <= value < 1 << (8 * size):
            raise ArgumentError(f"value {value:#x} does not fit in {8 * size} bits (write the two's "
                                f"complement, value & {(1 << (8 * size)) - 1:#x}, for a negative one)")
        self.write(addr, value.to_bytes(size, "little"))

    def write_u8(self, addr: int, value: int) -> None:
        """Write the byte ``value`` (0..0xFF) at guest-physical ``addr``."""
        self._write_uint(addr, value, 1)

    def write_u16(self, addr: int, value: int) -> None:
        """Write ``value`` (0..0xFFFF) little-endian at guest-physical ``addr``."""
        self._write_uint(addr, value, 2)

    def write_u32(self, addr: int, value: int) -> None:
        """Write ``value`` (0..0xFFFFFFFF) little-endian at guest-physical ``addr``."""
        self._write_uint(addr, value, 4)

    def write_u64(self, addr: int, value: int) -> None:
        """Write ``value`` (0..2**64-1) little-endian at guest-physical ``addr``."""
        self._write_uint(addr, value, 8)

    # --- the CPU model and the firmware ROM -------------------------------------------

    @property
    def cpu_model(self):
        """The :class:`vtx.CpuModel` of the processor (docs/tutorials/cpu_model.rst):
        set a model or a preset name to change what CPUID reports and what the
        processor does."""
        return self._machine.cpu_model

    @cpu_model.setter
    def cpu_model(self, model):
        self._machine.cpu_model = model

    def map_rom(self, image, low=None):
        """Map a firmware ROM image as a PC does: all of it at the top of the
        4 GiB physical space (ending at FFFFFFFFH, so the reset vector
        FFFFFFF0H is its last 16 bytes) and its last ``low`` bytes (by
        default 128 KiB, or all of a smaller image; 0 for none) again below
        1 MiB, ending at FFFFFH, over the
        RAM there.  The image is a multiple of 4 KiB, at most 16 MiB; memory
        must end below the ROM.  The ROM is read-only: a write to it (from
        the processor) is ignored, as on a PC, and neither faults nor exits;
        ``rom_bytes()`` returns the image.  One ROM per machine."""
        data = bytes(memoryview(image).cast("B"))
        size = len(data)
        if size == 0 or size % 4096 or size > 16 << 20:
            raise ArgumentError(f"a ROM image is a multiple of 4 KiB and at most 16 MiB, not {size:#x} bytes")
        if low is None:
            low = min(size, 0x20000)
        if isinstance(low, bool) or not isinstance(low, int):
            raise TypeError(f"low is a size in bytes, not {low!r}")
        if low < 0 or low % 4096 or low > min(size, 0x100000):
            raise ArgumentError(f"low ({low:#x}) is a multiple of 4 KiB, at most the image and 1 MiB")
        base = (1 << 32) - size
        if self.memory_size > base:
            raise ArgumentError(f"memory ({self.memory_size:#x} bytes) reaches the ROM at {base:#x}")
        self._machine.map_rom(data, base, low)
        self._rom_mapped(base, size)

    def _rom_mapped(self, base, size):
        pass

    def rom_bytes(self):
        """The ROM image :meth:`map_rom` mapped (None without one)."""
        return self._machine.rom_bytes()

    # --- snapshots (vtx/snapshot.py; docs/architecture.rst, "Snapshots") ------------

    #: The ``extra`` dict of the snapshot last restored into this machine
    #: (None before any restore).
    snapshot_extra = None
    #: The thread whose run() is active (VM.run), for snapshots.
    _run_thread = None

    def save(self, path, extra=None):
        """Save the whole machine to the file ``path``: every vCPU's processor
        and VMX state, the private memory (VMCS, bitmaps, EPT), RAM, the ROM
        and ``extra``, a dict of JSON data of the platform's (device states).
        Allowed between runs and from an exit handler (the state of that
        exit is saved); returns the file's size in bytes.  Handlers are code
        and are not saved."""
        from . import snapshot
        return snapshot.save(self, path, extra)

    def restore(self, path):
        """Bring this machine back to the state saved in ``path``, and return
        the snapshot's ``extra`` (also in :attr:`snapshot_extra`).  The file is
        read and checked whole first: a file that is not a snapshot, truncated,
        corrupted, from another vtx version or processor layout, or of a
        machine of another memory size raises :class:`vtx.errors.SnapshotError`
        and leaves this machine as it was.  Not during a run
        (:class:`~vtx.VmStateError`).  The TLB, the decoded instructions and
        the translated blocks start empty; exit handlers stay as registered."""
        from . import snapshot
        snap = snapshot.read(path)
        return snapshot.apply(snap, self)

    @classmethod
    def load_snapshot(cls, path):
        """A new machine made from the snapshot in ``path``, with its memory
        size and CPU model; its ``extra`` is in :attr:`snapshot_extra`.
        Register the exit handlers again before running it."""
        from . import snapshot
        snap = snapshot.read(path)
        if snap.kind != cls.__name__ and not any(k.__name__ == snap.kind for k in cls.__mro__):
            raise snapshot.SnapshotError(f"the snapshot is of a {snap.kind}, not of a {cls.__name__}")
        machine = cls(memory=snap.ram_size, cpu=snap.cpu_model)
        snapshot.apply(snap, machine)
        return machine

    def _tables_at(self, tables):
        """Where the setup_* methods put their 32 KiB of system tables."""
        if tables is None:
            tables = self.memory_size - 0x8000
        if tables < 0 or tables % 4096 or tables + 0x8000 > self.memory_size:
            raise ValueError(f"the system tables need 32 KiB of memory at a page boundary; "
                             f"{tables:#x} does not fit in {self.memory_size:#x} bytes")
        return tables


class VM(MemoryMap, _Memory, Debugging):
    """A virtual machine: guest-physical memory, one vCPU, exit handlers.

    ``memory`` is the size of guest-physical memory in bytes (a multiple of
    4 KiB); it appears at guest-physical address 0.
    """

    def __reduce__(self):
        raise TypeError("a vtx.VM cannot be copied or pickled: it owns host memory and a modeled processor "
                        "mid-run; save it with vm.save(path) and make a copy with VM.load_snapshot(path)")

    def __copy__(self):
        self.__reduce__()

    def __deepcopy__(self, memo):
        self.__reduce__()

    def __init__(self, memory: int = 16 << 20, cpu="default") -> None:
        _check_memory_size(memory)
        self._pd_pages = (memory + GiB - 1) // GiB
        # The EPT: the PDs, the page table of a tail, then a PD and a page
        # table for a ROM at the top of 4 GiB (map_rom).
        priv = _EPT_PD + 4096 * (self._pd_pages + 3)
        # Then a pool of pages for the EPT tables of further slots (vtx.memory).
        self._pool_base, self._pool_pages = priv, _EPT_POOL_PAGES
        priv += 4096 * _EPT_POOL_PAGES
        self._vmcs_more = priv
        priv += 4096 * (MAX_VCPUS - 1)
        self._machine = _core.Machine(memory, priv)
        self.memory_size = memory
        self.cpu_model = cpu
        self._vcpus = []
        self._next = 0            # the vCPU whose turn comes first in the next run
        self._running = False
        #: Called as ``on_turn(vcpu)`` before each turn of a vCPU in a run of
        #: several (a platform sets the vCPU's TSC offset and injects its
        #: interrupts there); a true result ends the run, "budget", before
        #: that turn.
        self.on_turn = None
        self._handlers = [None] * 128
        self._default = None
        # Per vCPU: the handler table its runs use (the VM's own table, or a
        # copy with the vCPU's own handlers over it: vm.on(..., vcpu=v)).
        self._tables = []
        self._own = {}            # vCPU index -> {reason: handler} of that vCPU alone
        self._set_up = False      # a setup_*_mode, a loader or a restore gave the vCPU its state
        self._checked = False     # the first run's look at the entry point is done
        self._pending = {}        # vCPU index -> the Exit a STOP left pending completion
        self._pending_intr = {}   # vCPU index -> the interruptibility state that STOP left
        self._init_memory_map()
        self._build_ept()
        self._init_debug()

    def load(self, addr: int, data) -> None:
        """Copy bytes (an image) into guest-physical memory at ``addr``.

        Code from :func:`vtx.asm` remembers its ``org``: loaded elsewhere, and
        different from what ``org=addr`` assembles (it has absolute
        addresses), it is refused with :class:`~vtx.ArgumentError` for 32-
        and 64-bit code; for 16-bit code, where a segment base can make up
        the difference, a :class:`~vtx.VtxWarning` says so."""
        org = getattr(data, "org", None)
        if org is not None and org != addr and hasattr(data, "same_at"):
            bits = data.bits
            same = data.same_at(addr) if bits != 16 else data.same_at(addr & 0xFFFF)
            if not same:
                msg = (f"code assembled for org {org:#x} loaded at {addr:#x}: its absolute addresses "
                       f"(labels used as addresses) would be wrong; assemble it with org={addr:#x}")
                if bits != 16:
                    raise ArgumentError(msg)
                warnings.warn(msg + " (or run it with a CS base that makes up the difference)", VtxWarning,
                              stacklevel=2)
        self.write(addr, data)

    # --- hosted-hypervisor private memory -------------------------------------

    @property
    def _priv(self):
        """A fresh writable view of the private memory (VMCS, bitmaps, EPT).
        Not kept: while a view lives, VMRESUME runs every entry check, since
        the VMCS may be written through it (docs/architecture.rst, "Entry
        checks at VMRESUME")."""
        return self._machine.priv_view()

    def _priv_u64(self, off, value):
        self._priv[off:off + 8] = int(value).to_bytes(8, "little")

    def _build_ept(self):
        """EPT that maps guest-physical [0, memory) one-to-one (SDM Vol. 3
        29.3): 2 MiB pages where whole, 4 KiB pages for a tail.  Nothing else
        is mapped, so a guest access beyond its memory is an EPT violation."""
        base = _core.PRIV_BASE
        rwx = 7
        mem = self.memory_size
        priv = self._priv
        self._priv_u64(_EPT_PML4, (base + _EPT_PDPT) | rwx)
        for g in range(self._pd_pages):
            self._priv_u64(_EPT_PDPT + 8 * g, (base + _EPT_PD + 4096 * g) | rwx)
        pt = _EPT_PD + 4096 * self._pd_pages
        whole = mem // _2M                    # PDs are consecutive pages
        # WB (6 << 3), 2 MiB pages (bit 7) where whole.
        pds = array.array("Q", range(rwx | (6 << 3) | 0x80, whole * _2M, _2M))
        priv[_EPT_PD:_EPT_PD + 8 * whole] = _le(pds)
        if mem % _2M:
            addr = whole * _2M
            self._priv_u64(_EPT_PD + 8 * whole, (base + pt) | rwx)
            ptes = array.array("Q", range(addr | rwx | (6 << 3), mem, 4096))
            priv[pt:pt + 8 * len(ptes)] = _le(ptes)

    def _rom_mapped(self, base, size):
        """Extend the EPT to the ROM at [base, 4 GiB), one-to-one: 2 MiB pages
        where whole, a page table for the rest.  Writes stay allowed in the
        EPT: the ROM itself ignores them."""
        priv_base = _core.PRIV_BASE
        rwx_wb = 7 | (6 << 3)
        priv = self._priv
        if self._pd_pages >= 4:
            pd = _EPT_PD + 3 * 4096
        else:
            pd = _EPT_PD + 4096 * (self._pd_pages + 1)
            self._priv_u64(_EPT_PDPT + 8 * 3, (priv_base + pd) | 7)
        rom_pt = _EPT_PD + 4096 * (self._pd_pages + 2)
        top = 1 << 32
        region = base & ~(_2M - 1)
        while region < top:
            idx = (region >> 21) & 511
            if region >= base:
                self._priv_u64(pd + 8 * idx, region | rwx_wb | 0x80)
            else:
                old = int.from_bytes(priv[pd + 8 * idx:pd + 8 * idx + 8], "little")
                pt = (old & ~0xFFF) - priv_base if old & 7 and not old & 0x80 else rom_pt
                self._priv_u64(pd + 8 * idx, (priv_base + pt) | 7)
                for a in range(base, region + _2M, 4096):
                    self._priv_u64(pt + 8 * ((a >> 12) & 511), a | rwx_wb)
            region += _2M
        del priv
        for v in self._vcpus:
            v.invept()

    # --- vCPUs -----------------------------------------------------------------

    def add_vcpu(self, wait_for_sipi: bool = False) -> _core.VCpu:
        """Make a vCPU (up to :data:`MAX_VCPUS`) with its own VMCS, whose
        controls exit on HLT, port I/O, MSR accesses, CPUID, VMCALL and every
        exception, with VPID 1, 2, ... in the order made, and whose guest
        state is real mode at 0000:0000.  The vCPUs share the guest memory,
        the bitmaps and the EPT.

        With ``wait_for_sipi=True`` the vCPU is an application processor after
        INIT: it waits in the wait-for-SIPI activity state, and does not run,
        until :meth:`~vtx.VCpu.sipi` (or a start-up IPI raised with
        ``raise_sipi`` whose exit the handler answers with it)."""
        if not isinstance(wait_for_sipi, bool):
            raise TypeError(f"wait_for_sipi is a bool, not {wait_for_sipi!r}")
        if self._running:
            raise VmStateError("add_vcpu: the VM is running (call it between runs)")
        n = len(self._vcpus)
        if n >= MAX_VCPUS:
            raise VmStateError(f"this VM has {MAX_VCPUS} vCPUs, the most the model runs")
        if n == 0:
            vcpu = _core.VCpu(self._machine)
        else:
            vcpu = _core.VCpu(self._machine, self._machine._add_cpu(self._vmcs_offset(n)))
        vcpu.mmio_handler = self._mmio
        self._vcpus.append(vcpu)
        self._tables.append(self._handlers)
        self._debug_vcpu_added(vcpu)
        self._init_vmcs(vcpu)
        set_up = self._set_up
        self.setup_real_mode(entry=0, vcpu=vcpu)
        self._set_up = set_up or wait_for_sipi     # (not an entry the user chose)
        if wait_for_sipi:
            vcpu.init()
        return vcpu

    def _vmcs_offset(self, index):
        """Where vCPU ``index``'s VMCS lies in the private memory."""
        return _VMCS if index == 0 else self._vmcs_more + 4096 * (index - 1)

    @property
    def vcpu(self):
        """The VM's first vCPU (VmStateError if add_vcpu has not been called)."""
        if not self._vcpus:
            raise VmStateError("the VM has no vCPU; call vm.add_vcpu() first")
        return self._vcpus[0]

    @property
    def vcpus(self):
        """The vCPUs, in the order add_vcpu made them (``vcpu.index``)."""
        return tuple(self._vcpus)

    def _init_vmcs(self, v):
        base = _core.PRIV_BASE
        off = self._vmcs_offset(v.index)
        self._priv[off:off + 4] = capabilities.VMCS_REVISION_ID.to_bytes(4, "little")
        def a0(msr_value):
            return msr_value & 0xFFFFFFFF
        v.vmwrite(F.PIN_BASED_CONTROLS, a0(capabilities.TRUE_PINBASED_CTLS))
        v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS,
                  a0(capabilities.TRUE_PROCBASED_CTLS) | ProcBased.HLT_EXITING
                  | ProcBased.UNCONDITIONAL_IO_EXITING | ProcBased.ACTIVATE_SECONDARY_CONTROLS)
        # VPID, as KVM gives its guests: the guest's TLB survives the exit
        # round trip (invalidate with vcpu.invvpid() after editing its paging
        # structures through a raw view; vm.write invalidates by itself).
        v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS,
                  ProcBased2.ENABLE_EPT | ProcBased2.UNRESTRICTED_GUEST | ProcBased2.ENABLE_VPID)
        v.vmwrite(F.VIRTUAL_PROCESSOR_ID, len(self._vcpus))      # 1, 2, ...: 0 is the host's
        v.vmwrite(F.VM_EXIT_CONTROLS,
                  a0(capabilities.TRUE_EXIT_CTLS) | ExitControls.HOST_ADDRESS_SPACE_SIZE
                  | ExitControls.SAVE_IA32_EFER | ExitControls.LOAD_IA32_EFER
                  | ExitControls.SAVE_IA32_PAT | ExitControls.LOAD_IA32_PAT)
        v.vmwrite(F.VM_ENTRY_CONTROLS,
                  a0(capabilities.TRUE_ENTRY_CTLS) | EntryControls.LOAD_IA32_EFER | EntryControls.LOAD_IA32_PAT)
        v.vmwrite(F.EXCEPTION_BITMAP, 0xFFFFFFFF)
        v.vmwrite(F.IO_BITMAP_A, base + _IO_BITMAP_A)
        v.vmwrite(F.IO_BITMAP_B, base + _IO_BITMAP_B)
        v.vmwrite(F.MSR_BITMAP, base + _MSR_BITMAP)
        v.vmwrite(F.EPT_POINTER, (base + _EPT_PML4) | 6 | (3 << 3))
        v.vmwrite(F.CR4_GUEST_HOST_MASK, 1 << 13)     # the host owns CR4.VMXE
        v.vmwrite(F.VMCS_LINK_POINTER, 0xFFFFFFFFFFFFFFFF)
        # Host state: a 64-bit host, as the hosted hypervisor is (checked at
        # entry, SDM 27.2.2-27.2.4).
        v.vmwrite(F.HOST_CR0, 0x80050033)
        v.vmwrite(F.HOST_CR4, 0x2020)
        v.vmwrite(F.HOST_CS_SELECTOR, 0x10)
        v.vmwrite(F.HOST_SS_SELECTOR, 0x18)
        v.vmwrite(F.HOST_TR_SELECTOR, 0x40)
        v.vmwrite(F.HOST_IA32_EFER, 0x500)
        v.vmwrite(F.HOST_IA32_PAT, 0x0007040600070406)
        v.vmwrite(F.GUEST_IA32_PAT, 0x0007040600070406)
        v.vmwrite(F.GUEST_DR7, 0x400)

    # --- the three modes --------------------------------------------------------

    def _set_cr4(self, v, cr4):
        v.cr4 = cr4 | (1 << 13)              # VMXE is fixed to 1 in VMX operation
        v.vmwrite(F.CR4_READ_SHADOW, cr4)   # the guest reads its own value

    def _common(self, v, entry):
        self._set_up = True
        self._pending.pop(v.index, None)
        self._pending_intr.pop(v.index, None)
        v.rflags = 2
        v.rip = entry
        v.vmwrite(F.GUEST_ACTIVITY_STATE, 0)
        v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 0)
        v.ldtr = Segment(0, 0, 0, 0x10000)
        v.vmwrite(F.CR0_GUEST_HOST_MASK, 0)     # reset() may have shadowed CR0.NE
        v.clear()

    def _entry_ia32e(self, v, on):
        ctl = v.vmread(F.VM_ENTRY_CONTROLS)
        ctl = (ctl | EntryControls.IA32E_MODE_GUEST) if on else (ctl & ~EntryControls.IA32E_MODE_GUEST)
        v.vmwrite(F.VM_ENTRY_CONTROLS, ctl)

    def setup_real_mode(self, entry: int = 0, stack: Optional[int] = None, cs: int = 0,
                        vcpu: Optional[_core.VCpu] = None) -> _core.VCpu:
        """Real-address mode (with "unrestricted guest"): CS = cs, IP = entry,
        all data segments and SS = 0, SP = stack (default 0, so the first push
        lands at 0000:FFFE), IVT at 0."""
        v = vcpu or self.vcpu
        if not 0 <= entry <= 0xFFFF or not 0 <= cs <= 0xFFFF:
            raise ValueError("real mode needs a 16-bit entry offset and CS selector")
        self._common(v, entry)
        v.cs = Segment(cs, cs << 4, 0xFFFF, 0x9B)
        for name in ("ds", "es", "ss", "fs", "gs"):
            setattr(v, name, Segment(0, 0, 0xFFFF, 0x93))
        v.tr = Segment(0, 0, 0xFFFF, 0x8B)
        v.gdtr = DescriptorTable(0, 0xFFFF)
        v.idtr = DescriptorTable(0, 0x3FF)
        v.cr0 = 0x30                        # ET, NE (NE is fixed to 1)
        v.cr3 = 0
        self._set_cr4(v, 0)
        v.efer = 0
        v.rsp = (stack if stack is not None else 0) & 0xFFFF
        self._entry_ia32e(v, False)
        return v

    def _write_gdt(self, at):
        self.write(at, gdt_bytes())
        return DescriptorTable(at, GDT_LIMIT)

    def setup_protected_mode(self, entry: int, stack: Optional[int] = None, tables: Optional[int] = None,
                             vcpu: Optional[_core.VCpu] = None) -> _core.VCpu:
        """32-bit protected mode with flat 4 GiB segments and paging off.

        A GDT (null, code 0x08, data 0x10, 64-bit code 0x18, four free
        entries 0x20-0x38) is written at
        ``tables`` (default: the last 32 KiB of guest memory); ESP defaults to
        just below it."""
        v = vcpu or self.vcpu
        at = self._tables_at(tables)
        self._common(v, entry)
        v.gdtr = self._write_gdt(at)
        v.idtr = DescriptorTable(0, 0)
        v.cs = Segment(0x08, 0, 0xFFFFFFFF, 0xC09B)
        for name in ("ds", "es", "ss", "fs", "gs"):
            setattr(v, name, Segment(0x10, 0, 0xFFFFFFFF, 0xC093))
        v.tr = Segment(0, 0, 0x67, 0x8B)
        v.cr0 = 0x31                        # PE, ET, NE
        v.cr3 = 0
        self._set_cr4(v, 0)
        v.efer = 0
        v.rsp = stack if stack is not None else at
        self._entry_ia32e(v, False)
        return v

    def setup_long_mode(self, entry: int, stack: Optional[int] = None, tables: Optional[int] = None,
                        vcpu: Optional[_core.VCpu] = None) -> _core.VCpu:
        """64-bit mode: 4-level paging with identity-mapped 2 MiB pages for the
        first 4 GiB (as a small KVM VMM builds them), a GDT with a 64-bit code
        segment (0x18) and flat data (0x10).  The tables occupy ``tables``
        (default: the last 32 KiB of guest memory); RSP defaults below them."""
        v = vcpu or self.vcpu
        at = self._tables_at(tables)
        self._common(v, entry)
        v.gdtr = self._write_gdt(at)
        pml4 = at + 0x1000
        self.write(pml4, long_mode_tables(pml4))
        v.idtr = DescriptorTable(0, 0)
        v.cs = Segment(0x18, 0, 0xFFFFFFFF, 0xA09B)
        for name in ("ds", "es", "ss", "fs", "gs"):
            setattr(v, name, Segment(0x10, 0, 0xFFFFFFFF, 0xC093))
        v.tr = Segment(0, 0, 0x67, 0x8B)
        v.cr0 = 0x80010031                  # PG, WP, NE, ET, PE
        v.cr3 = pml4
        self._set_cr4(v, 1 << 5)            # PAE
        v.efer = 0x500                      # LME, LMA
        v.rsp = stack if stack is not None else at
        self._entry_ia32e(v, True)
        return v

    # --- exit handlers -----------------------------------------------------------

    def on(self, *reasons: Union[ExitReason, str, int],
           vcpu: Optional[_core.VCpu] = None) -> Callable[[Handler], Handler]:
        """Decorator: register ``handler(vcpu, exit)`` for one or more exit
        reasons (a :class:`vtx.ExitReason`, its name, or its number).  With
        ``vcpu``, for that vCPU's exits alone: its own handler comes before
        the VM's for those reasons (each vCPU has its own VMCS, so its own
        exits; the others keep the VM's handlers)."""
        if not reasons:
            raise TypeError("vm.on() needs at least one exit reason")
        rs = [_reason(r) for r in reasons]
        index = self._vcpu_index(vcpu)

        def register(handler):
            if not callable(handler):
                raise TypeError(f"an exit handler must be callable, not {handler!r}")
            if index is None:
                for r in rs:
                    self._handlers[int(r)] = handler
            else:
                own = self._own.setdefault(index, {})
                for r in rs:
                    own[int(r)] = handler
            self._rebuild_tables()
            return handler
        return register

    def default(self, handler: Handler) -> Handler:
        """Decorator: the handler for every exit reason without its own."""
        if not callable(handler):
            raise TypeError(f"an exit handler must be callable, not {handler!r}")
        self._default = handler
        return handler

    def remove_handler(self, reason: Union[ExitReason, str, int], vcpu: Optional[_core.VCpu] = None) -> None:
        """Unregister the handler of ``reason`` (its exits then go to the
        default handler, or raise :class:`~vtx.UnhandledExit`).  With
        ``vcpu``, that vCPU's own handler (its exits go to the VM's again)."""
        r = int(_reason(reason))
        index = self._vcpu_index(vcpu)
        if index is None:
            self._handlers[r] = None
        else:
            own = self._own.get(index, {})
            if r not in own:
                raise ArgumentError(f"vCPU {index} has no handler of its own for {ExitReason(r).name}")
            del own[r]
            if not own:
                del self._own[index]
        self._rebuild_tables()

    def _vcpu_index(self, vcpu):
        if vcpu is None:
            return None
        if not isinstance(vcpu, _core.VCpu):
            raise TypeError(f"vcpu is a vtx.VCpu of this VM, not {vcpu!r}")
        for i, w in enumerate(self._vcpus):
            if w is vcpu:
                return i
        raise ArgumentError("vcpu is a vCPU of another VM")

    def _rebuild_tables(self):
        """Each vCPU's handler table: the VM's, or a copy with its own over it."""
        for i in range(len(self._vcpus)):
            own = self._own.get(i)
            if own is None:
                self._tables[i] = self._handlers
            else:
                t = list(self._handlers)
                for r, h in own.items():
                    t[r] = h
                self._tables[i] = t

    # --- running -----------------------------------------------------------------

    def run(self, max_instructions: Optional[int] = None, quantum: int = DEFAULT_QUANTUM) -> RunResult:
        """Enter the guest and handle its exits until a handler returns STOP,
        the budget is spent, or the guest halts for good.

        ``max_instructions`` bounds the steps of the run: instructions retired
        (a REP string instruction counts once per iteration, and stops between
        iterations at the budget with RIP on it, as for an interrupt) plus
        exceptions and interrupts delivered through the guest's IVT or IDT, so
        a guest whose every instruction faults stops at its budget too.  At
        most ``vtx._core.MAX_BUDGET``; None runs without a bound.  Ctrl-C (any
        Python signal handler that raises) stops a run within milliseconds,
        whatever the guest does, and leaves the VM able to run again.

        With several vCPUs they run round-robin, in the order of
        :attr:`vcpus`, ``quantum`` steps each per turn (fewer when a handler
        stops the run or the budget ends), so a run repeats exactly; the
        budget counts the steps of all of them.  A vCPU halted with nothing
        pending, or waiting for a SIPI with none raised, is passed over; the
        run ends ``"halted"`` when every vCPU is.  The next run starts with
        the vCPU whose turn it stopped in (a STOP) or the next one.
        :attr:`on_turn`, when set, is called before each turn.

        A handler that returns STOP leaves the guest at the exiting
        instruction; for HLT, IN/OUT and the other instructions of
        :data:`COMPLETED_ON_NEXT_RUN` the next run steps over it first, as
        RESUME would have (unless RIP was moved; :meth:`discard_pending`
        enters it again).  The first run of a VM whose first vCPU nothing set
        up and whose 0000:0000 holds zeros raises :class:`~vtx.VmStateError`.

        A handler that raises stops the run; the exception reaches the caller
        and the VM stays consistent (the guest is at the exiting instruction),
        so it can run again.  A run is not re-entrant: calling ``run()`` from a
        handler raises :class:`~vtx.VmStateError`."""
        v = self.vcpu
        if max_instructions is not None:
            if isinstance(max_instructions, bool) or not isinstance(max_instructions, int) \
                    or not 0 < max_instructions <= _core.MAX_BUDGET:
                raise ArgumentError(f"max_instructions is an int in [1, {_core.MAX_BUDGET:#x}] or None, "
                                    f"not {max_instructions!r}")
        if quantum is not DEFAULT_QUANTUM and (isinstance(quantum, bool) or not isinstance(quantum, int)
                                               or not 0 < quantum <= _core.MAX_BUDGET):
            raise ArgumentError(f"quantum is an int in [1, {_core.MAX_BUDGET:#x}], not {quantum!r}")
        if self._checked and len(self._vcpus) == 1:
            # One vCPU: its completion, if a STOP left one, is made by the
            # core with the run (VCpu._run_one).
            return self._run_checked(v, max_instructions, quantum, True)
        # Nothing pending and the first run's look done: no completion to make.
        undo = self._before_run(v) if (self._pending or not self._checked) else None
        if undo:
            try:
                return self._run_checked(v, max_instructions, quantum)
            except VmEntryError:
                # A completion belongs to the entry that follows it: the
                # vCPUs that did not enter get their instruction back.
                for w, rip, intr, entries, pending, left in undo:
                    if w.entries == entries:
                        w.rip = rip
                        w.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, intr)
                        self._pending[w.index] = pending
                        self._pending_intr[w.index] = left
                raise
        return self._run_checked(v, max_instructions, quantum)

    def _run_checked(self, v, max_instructions, quantum, complete=False):
        """run() past its argument checks and the completions (with
        ``complete``, one vCPU's completion is made here, by the core)."""
        if len(self._vcpus) > 1:
            return self._note_stop(self._run_all(max_instructions, quantum))
        budget = max_instructions or 0
        # The thread of the run, so that a snapshot taken from its handlers is
        # allowed and one from another thread is not (vtx/snapshot.py).
        outer = not _core._vcpu_busy(v)
        if outer:
            self._run_thread = _get_ident()
        comp = None
        if complete and outer and self._pending:
            p = self._pending.pop(v.index, None)
            if p is not None:
                # RESUME's step (EIP wraps outside 64-bit code), ending
                # blocking by STI and by MOV SS (SDM Vol. 3C 25.4.2) unless
                # the state was written since the STOP: then it is the user's.
                comp = (p[0], p[1], self._pending_intr.pop(v.index, None))
        # The debugger's work around a run, skipped while it has nothing to
        # do (no breakpoint, no trace, no stop to pass over): vm.run() in a
        # loop is how users step a guest, and its fixed cost counts (the
        # accounting mark, the wall time and the exit counts are made in the
        # core too, VCpu._run_one).
        debugging = self._bps or self._bp_stopped or self._tracer is not None
        try:
            if debugging:
                self._debug_before(v)
            why, last, exits, exit_ns, instructions, events, wall, mark, pending = v._run_one(
                self._tables[0], self._default, budget, RESUME, RETRY, STOP, _REASON_KEYS, comp)
        except VmEntryError as e:
            intr = getattr(e, "_completion_undone", None)
            if intr is not None:
                # The core undid the completion: it is pending again.
                self._pending[v.index] = comp[:2]
                self._pending_intr[v.index] = intr if comp[2] is None else comp[2]
            raise
        finally:
            if outer:
                self._run_thread = None
        if debugging or why == "debug":
            why, hit = self._debug_after(v, why)
        else:
            self.last_hit = hit = None
        if why == "stop" and pending is not None:
            # As _note_stop, with what it reads made by the core.
            self._pending[v.index] = pending[:2]
            self._pending_intr[v.index] = pending[2]
        return _run_result(why, last, exits, exit_ns, instructions, wall, events,
                           v if why in _VCPU_STOPS else None, [mark], hit)

    # --- STOP and the first run: no traps (docs/architecture.rst, "STOP") --------

    def _note_stop(self, result):
        exit = result.exit
        if result.stop == "stop" and exit is not None and result.vcpu is not None:
            reason = int(exit.reason) & 0xFFFF       # int(): no enum arithmetic
            if reason in COMPLETED_ON_NEXT_RUN and exit.instruction_length:
                v = result.vcpu
                self._pending[v.index] = (exit.guest_rip, exit.instruction_length)
                # The interruptibility state the exit left: the completion
                # ends its STI/MOV-SS blocking only if nobody wrote it since.
                self._pending_intr[v.index] = v._intr_state()
        return result

    def pending_completion(self, vcpu: Optional[_core.VCpu] = None) -> Optional[tuple]:
        """``(rip, length)`` of the instruction the next :meth:`run` completes
        (steps over) first, left by a STOP from its exit's handler (see
        :data:`vtx.STOP`), or None."""
        v = vcpu or self.vcpu
        p = self._pending.get(v.index)
        return p if p is not None and v.rip == p[0] else None

    def discard_pending(self, vcpu: Optional[_core.VCpu] = None) -> None:
        """Make the next run execute the instruction a STOP left pending
        again (enter at it) instead of completing it."""
        self._pending.pop((vcpu or self.vcpu).index, None)
        self._pending_intr.pop((vcpu or self.vcpu).index, None)

    def _before_run(self, v):
        """Complete what STOPs left pending, and look at the first run's entry
        point; the completions made, to be undone if the entry fails:
        [(vcpu, rip, interruptibility, entries, pending)]."""
        if self._running or _core._vcpu_busy(v):
            return None            # run() refuses this itself
        if not self._checked:
            self._check_entry(v)
            self._checked = True
        undo = []
        for w in self._vcpus:
            p = self._pending.pop(w.index, None)
            if p is None:
                continue
            left = self._pending_intr.pop(w.index, None)
            # RESUME's step (EIP wraps outside 64-bit code), ending blocking
            # by STI and by MOV SS (SDM Vol. 3C 25.4.2) unless the state was
            # written since the STOP: then it is the user's.
            intr = w._complete(p[0], p[1], left)
            if intr is not None:
                undo.append((w, p[0], intr, w.entries, p, intr if left is None else left))
        return undo

    def _check_entry(self, v):
        """The first run's look at where the guest starts: zeros at 0000:0000
        on a vCPU nothing set up is a forgotten setup_*_mode (an error);
        zeros elsewhere, code not loaded where RIP points (a warning)."""
        if v.activity_state == 3:
            return
        start = v.cs.base + v.rip
        try:
            gpa = self.translate(start, v)          # through the guest's paging, if it is on
            code = self.read(gpa, 16) if gpa is not None and gpa + 16 <= self.memory_size else None
        except Exception:          # MMIO, a hole, damaged tables: nothing to say
            return
        if code != bytes(16):
            return
        if not self._set_up and start == 0:
            raise VmStateError(
                "the vCPU was never set up and would run zeros from 0000:0000: call "
                "vm.setup_real_mode / setup_protected_mode / setup_long_mode(entry=...) or "
                "vtx.load_elf / load_flat (or set the registers yourself) before run()")
        warnings.warn(f"the guest starts at {start:#x} (CS base + RIP), where memory holds zeros: was the "
                      f"code loaded somewhere else?", VtxWarning, stacklevel=3)

    def _run_all(self, max_instructions, quantum):
        """The round-robin of :meth:`run` over several vCPUs."""
        if self._running:
            raise VmStateError("run() is already active on this VM (called from an exit handler or "
                               "another thread); return RESUME, RETRY or STOP from the handler instead")
        vcpus = self._vcpus
        left = max_instructions
        exits, exit_ns = {}, {}
        instructions = events = 0
        idle = 0                  # vCPUs in a row that had nothing to do
        # One accounting mark per vCPU for the whole run, not one per turn: a
        # run of many short turns (an interrupt storm, a guest that exits
        # often) would otherwise keep a mark, and its buffers, per turn.
        acct = [w._acct_mark() for w in vcpus]
        i = self._next % len(vcpus)
        t0 = time.perf_counter_ns()
        self._running = True
        try:
            while True:
                v = vcpus[i]
                self._next = i
                if v.activity_state == 3 and v.sipi_pending is None:
                    # Wait-for-SIPI and no SIPI: it does not run (INIT is
                    # blocked in this state, SDM Vol. 3C 27.7.2).
                    why, last, per_reason, n, ev = "halted", None, {}, 0, 0
                elif self.on_turn is not None and self.on_turn(v):
                    return RunResult("budget", None, exits, exit_ns, instructions,
                                     time.perf_counter_ns() - t0, events, None, acct)
                else:
                    q = quantum if left is None else min(quantum, left)
                    self._debug_before(v)
                    try:
                        why, last, per_reason, n, ev = v._run(self._tables[i], self._default, q,
                                                              RESUME, RETRY, STOP)
                    finally:
                        if self._tracer is not None:
                            self._tracer._flush(v)
                    why, hit = self._debug_after(v, why)
                for r, (cnt, ns) in per_reason.items():
                    key = _REASON_KEYS[r]
                    exits[key] = exits.get(key, 0) + cnt
                    exit_ns[key] = exit_ns.get(key, 0) + ns
                instructions += n
                events += ev
                if left is not None:
                    left -= n + ev
                if why in ("stop", "shutdown", "breakpoint", "watchpoint"):
                    return self._result_all(why, last, exits, exit_ns, instructions, t0, events, v, acct, hit)
                idle = idle + 1 if (why == "halted" and n + ev == 0 and not per_reason) else 0
                i = (i + 1) % len(vcpus)
                self._next = i
                if idle >= len(vcpus):
                    return self._result_all("halted", None, exits, exit_ns, instructions, t0, events, None, acct)
                if left is not None and left <= 0:
                    return self._result_all("budget", None, exits, exit_ns, instructions, t0, events, None, acct)
        finally:
            self._running = False
            for mark in acct:
                mark.end()

    @staticmethod
    def _result_all(why, last, exits, exit_ns, instructions, t0, events, vcpu, acct, hit=None):
        return RunResult(why, last, exits, exit_ns, instructions, time.perf_counter_ns() - t0, events, vcpu,
                         acct, hit=hit)

    # --- accounting (docs/architecture.rst, "Accounting and cost profiles") -----------

    def stats(self):
        """The accounting since the vCPUs were made or :meth:`reset_stats`, all
        vCPUs summed (:class:`vtx.overhead.Stats`: per exit reason the count,
        time split and round-trip distribution, the I/O port, MSR and CR
        kinds, VMREAD/VMWRITE, entries, events, TLB flushes, page walks).
        ``instructions`` and ``events`` are those since the vCPUs were
        made."""
        total = None
        for v in self._vcpus:
            s = Stats.from_core(v._acct(), v.instructions, v.events)
            total = s if total is None else total.merged(s)
        return total if total is not None else Stats({}, {}, {}, {})

    def reset_stats(self):
        """Start the accounting of :meth:`stats` again (between runs).  The
        vCPUs' exit counts since they were made (``exit_counts()``), which
        snapshots keep, are not touched."""
        if self._running:
            raise VmStateError("reset_stats: the VM is running (call it between runs)")
        for v in self._vcpus:
            v._acct_reset()
