"""A bare machine: the modeled computer with no hypervisor above it.

Where :class:`vtx.VM` is a *hosted* (type 2) hypervisor written in Python, a
:class:`BareMetal` machine runs x86 code directly on the modeled processor in
VMX root operation, so that code can itself be a hypervisor (type 1): it
executes VMXON, builds a VMCS with VMWRITE, VMLAUNCHes its guest and takes
the guest's VM exits at HOST_RIP.  Both kinds use the one VMX implementation
of the core (docs/architecture.rst, "The VMX layer").

The platform is Python: port I/O that reaches it (from root-mode code, or
from a guest whose hypervisor does not intercept the port) calls the handler
registered for the port with :meth:`BareMetal.on_io`; bytes written to port
0xE9 (the debug console of Bochs and QEMU) collect in :attr:`BareMetal.console`.

The processor's VMX instructions are also methods of :attr:`BareMetal.cpu`
(``vmxon``, ``vmptrld``, ``vmwrite``, ``vmlaunch``, ...), which raise
:class:`vtx.VmFail` where the instruction would VMfail: the low-level view of
VMX from Python, whose guests' exits return from :meth:`BareMetal.run`.
"""

import time

import attrs

from . import _core
from .errors import ArgumentError
from .overhead.stats import Stats
from .spec import ExitReason
from .types import VmcsView
from .vm import GDT_LIMIT, _check_memory_size, _Memory, gdt_bytes, long_mode_tables

__all__ = ["BareMetal", "BareCpu", "BareRunResult"]

_GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
_SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs", "ldtr", "tr")

#: The debug-console port: bytes written to it collect in BareMetal.console.
DEBUG_CONSOLE_PORT = 0xE9


class BareCpu(_core.Processor):
    """The processor of a :class:`BareMetal` machine: general registers by
    name (``rax`` ... ``r15``, and their low halves ``eax`` ... ``r15d``, read
    and write), ``rip``, ``rflags``, the
    control registers, ``efer``, the segment registers (``cs`` ... ``tr``,
    :class:`vtx.Segment`) and ``gdtr``/``idtr`` (read), ``rdmsr``/``wrmsr``,
    and the VMX instructions as methods (``vmcs[field]`` reads and writes
    the current VMCS by VMREAD and VMWRITE)."""

    @property
    def vmcs(self):
        return VmcsView(self)


def _gpr(i, name):
    def get(self):
        return self.get_gpr(i)

    def put(self, value):
        self.set_gpr(i, value)
    return property(get, put, doc=f"{name.upper()} (64 bits).")


def _seg(i, name):
    def get(self):
        return self.get_segment(i)
    return property(get, doc=f"{name.upper()}: a vtx.Segment (read-only; x86 code loads segments).")


def _fpu(name):
    def get(self):
        return _core._x87_read(self.machine, name)

    def put(self, value):
        _core._x87_write(self.machine, name, value)
    return property(get, put, doc=f"The x87 {name} (vtx/spec/registers.py: fcw, fsw, ftw 16 bits; "
                                  f"st0-st7 80-bit ST(i) in stack order).")


def _gpr32(i, name):
    def get(self):
        return self.get_gpr(i) & 0xFFFFFFFF

    def put(self, value):
        # as a 32-bit register write: zero-extended into the 64-bit register
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise ArgumentError(f"{name} is a 32-bit unsigned int, not {value!r}")
        self.set_gpr(i, value)
    return property(get, put, doc=f"{name.upper()}: bits 31:0 of the register (a write zero-extends).")


_GPRS32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi") + tuple(f"r{i}d" for i in range(8, 16))

for _i, _name in enumerate(_GPRS):
    setattr(BareCpu, _name, _gpr(_i, _name))
for _i, _name in enumerate(_GPRS32):
    setattr(BareCpu, _name, _gpr32(_i, _name))
for _name in ("fcw", "fsw", "ftw") + tuple(f"st{_i}" for _i in range(8)):
    setattr(BareCpu, _name, _fpu(_name))
for _i, _name in enumerate(_SEGMENTS):
    setattr(BareCpu, _name, _seg(_i, _name))


@attrs.frozen
class BareRunResult:
    """What one :meth:`BareMetal.run` did.

    ``stop``: ``"halted"`` (HLT with nothing to wake the processor),
    ``"shutdown"`` (a triple fault or VMX abort in root operation),
    ``"budget"``, or ``"vmexit"`` (a guest that Python launched with
    ``cpu.vmlaunch()`` exited; the exit is in ``exit``).  ``exits`` counts the
    VM exits of the run per :class:`vtx.ExitReason`, whoever handled them
    (x86 code at HOST_RIP or Python); ``instructions`` the instructions
    retired, root and non-root together; ``wall_ns`` the run's duration."""

    stop: str
    exit: object
    exits: dict
    instructions: int
    wall_ns: int
    #: The core's accounting of the run, raw (an AcctMark of vtx/core/acct.pxi).
    acct: object = attrs.field(default=None, repr=False, eq=False)
    events: int = 0

    @property
    def stats(self):
        """The run's accounting in detail (:class:`vtx.overhead.Stats`),
        made when first read."""
        return Stats.from_runs([self.acct] if self.acct else [], self.instructions, self.events, self.wall_ns)

    @property
    def total_exits(self):
        return sum(self.exits.values())


class BareMetal(_Memory):
    """A modeled computer with ``memory`` bytes of RAM at physical address 0
    and one processor, outside VMX operation until its code executes VMXON.

    IA32_FEATURE_CONTROL is locked with VMXON enabled outside SMX, as
    firmware leaves it on a machine with VMX."""

    def __reduce__(self):
        raise TypeError("a vtx.BareMetal machine cannot be copied or pickled; save it with machine.save(path) "
                        "and make a copy with BareMetal.load_snapshot(path)")

    def __init__(self, memory=16 << 20, cpu="default"):
        _check_memory_size(memory)
        self._machine = _core.Machine(memory, 4096)
        self.memory_size = memory
        self.cpu_model = cpu
        self.cpu = BareCpu(self._machine)
        self._io = {}
        self.console = bytearray()

    # --- the state firmware hands over in -------------------------------------------

    def _tss(self, at, long):
        """A TSS at at + 0x7000 and its descriptor in GDT entry 0x20 (a
        64-bit TSS takes 0x20 and 0x28)."""
        tss = at + 0x7000
        self.write(tss, bytes(0x68))
        # Limit 67H, base, type 9 (available 32-bit or 64-bit TSS), present.
        low = 0x67 | ((tss & 0xFFFFFF) << 16) | (0x89 << 40) | (((tss >> 24) & 0xFF) << 56)
        self.write(at + 0x20, low.to_bytes(8, "little"))
        if long:
            self.write(at + 0x28, (tss >> 32).to_bytes(8, "little"))
        return tss

    def setup_real_mode(self, entry=0, stack=0):
        """Real-address mode at 0000:entry, flat 64 KiB segments, IVT at 0."""
        if not 0 <= entry <= 0xFFFF or not 0 <= stack <= 0xFFFF:
            raise ValueError("real mode needs a 16-bit entry offset and stack pointer")
        self.cpu._setup(0, entry, stack, 0, 0xFFFF, 0, 0)
        return self.cpu

    def setup_protected_mode(self, entry, stack=None, tables=None):
        """32-bit protected mode with flat segments and paging off: the GDT
        of :class:`vtx.VM` (code 0x08, data 0x10, 64-bit code 0x18) with a
        TSS at 0x20, written at ``tables`` (default: the last 32 KiB)."""
        at = self._tables_at(tables)
        self.write(at, gdt_bytes())
        tss = self._tss(at, False)
        self.cpu._setup(1, entry, stack if stack is not None else at, at, GDT_LIMIT, 0, tss)
        return self.cpu

    def setup_long_mode(self, entry, stack=None, tables=None):
        """64-bit mode: 4-level paging identity-mapping the first 4 GiB with
        2 MiB pages, the GDT of :class:`vtx.VM` with a 64-bit TSS at 0x20;
        the tables take the 32 KiB at ``tables`` (default: the last 32 KiB of
        memory), RSP defaults to just below them."""
        at = self._tables_at(tables)
        self.write(at, gdt_bytes())
        pml4 = at + 0x1000
        self.write(pml4, long_mode_tables(pml4))
        tss = self._tss(at, True)
        self.cpu._setup(2, entry, stack if stack is not None else at, at, GDT_LIMIT, pml4, tss)
        return self.cpu

    # --- the platform's ports ----------------------------------------------------

    def on_io(self, *ports):
        """Decorator: ``handler(port, size, is_in, value)`` for the ports
        given; for IN it returns the value read (None: all ones).  A handler
        that raises stops the run with its exception."""
        for p in ports:
            if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 0xFFFF:
                raise ArgumentError(f"an I/O port is an int in [0, 0xffff], not {p!r}")

        def register(handler):
            if not callable(handler):
                raise TypeError(f"an I/O handler must be callable, not {handler!r}")
            for p in ports:
                self._io[p] = handler
            return handler
        return register

    def _port(self, port, size, is_in, value):
        h = self._io.get(port)
        if h is not None:
            return h(port, size, is_in, value)
        if port == DEBUG_CONSOLE_PORT and not is_in:
            self.console += value.to_bytes(size, "little")
        return None

    # --- running ---------------------------------------------------------------------

    def run(self, max_instructions=None):
        """Run the processor until it halts or shuts down, the budget of
        ``max_instructions`` steps (instructions retired plus events
        delivered) is spent, or a guest that Python launched exits."""
        if max_instructions is not None:
            if isinstance(max_instructions, bool) or not isinstance(max_instructions, int) \
                    or not 0 < max_instructions <= _core.MAX_BUDGET:
                raise ArgumentError(f"max_instructions is an int in [1, {_core.MAX_BUDGET:#x}] or None, "
                                    f"not {max_instructions!r}")
        before = self.cpu.exit_counts()
        mark = self.cpu._acct_mark()
        ev0 = self.cpu.events
        t0 = time.perf_counter_ns()
        why, ex, n = self.cpu._run(max_instructions or 0, self._port)
        wall = time.perf_counter_ns() - t0
        after = self.cpu.exit_counts()
        exits = {}
        for r in range(128):
            if after[r] != before[r]:
                exits[ExitReason(r) if r in ExitReason._value2member_map_ else r] = after[r] - before[r]
        return BareRunResult(why, ex, exits, n, wall, mark.end(), self.cpu.events - ev0)

    def stats(self):
        """The accounting since the machine was made or :meth:`reset_stats`
        (:class:`vtx.overhead.Stats`; see :meth:`vtx.VM.stats`)."""
        return Stats.from_core(self.cpu._acct(), self.cpu.instructions, self.cpu.events)

    def reset_stats(self):
        """Start the accounting of :meth:`stats` again (between runs)."""
        self.cpu._acct_reset()
