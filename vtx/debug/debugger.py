"""Breakpoints, watchpoints and single steps of a :class:`vtx.VM`.

They are the hypervisor's, not the guest's (docs/architecture.rst,
"Debugging"): the core compares CS:RIP with the execute breakpoints before
each instruction and watches data accesses through the TLB
(core/debugger.pxi); the guest sees no debug register change, no #DB and no
byte of its memory patched.  While none is set, the run loop pays nothing.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Tuple, Union

import attrs

from ..errors import ArgumentError, VmStateError
from .disasm import MODES, disassemble

if TYPE_CHECKING:
    from .trace import Tracer

#: Watchpoint kinds and the core's bits for them (read 1, write 2).
KINDS = {"read": 1, "write": 2, "access": 3}

_HDS_BREAK = 1
_HDS_WATCH = 2


@attrs.frozen
class Breakpoint:
    """An execute breakpoint at a linear ``address`` (CS base + RIP), or
    with ``physical`` at the guest-physical address of the instruction's
    first byte."""

    id: int
    address: int
    physical: bool = False


@attrs.frozen
class Watchpoint:
    """A watchpoint on ``size`` bytes at ``address``, linear or (with
    ``physical``) guest-physical; ``kind`` is ``"read"``, ``"write"`` or
    ``"access"`` (either)."""

    id: int
    address: int
    size: int
    kind: str
    physical: bool = False


@attrs.frozen
class BreakpointHit:
    """A run stopped before the instruction at a breakpoint: ``vcpu`` is
    there with RIP ``rip`` (the breakpoint's linear address is
    ``breakpoint.address``)."""

    breakpoint: Breakpoint
    vcpu: object
    rip: int

    kind = "breakpoint"


@attrs.frozen
class WatchpointHit:
    """A run stopped after the instruction (or REP iteration) that touched a
    watchpoint: ``address`` (linear, or guest-physical for a physical
    watchpoint) and ``size`` of the access, ``access`` ``"read"`` or
    ``"write"``, ``value`` the little-endian contents of those bytes after it
    (None where they cannot be read, MMIO), ``rip`` the next instruction."""

    watchpoint: Watchpoint
    vcpu: object
    rip: int
    address: int
    size: int
    access: str
    value: object

    kind = "watchpoint"


@attrs.frozen
class StepResult:
    """What :meth:`vtx.VCpu.step` did.

    ``stop`` is ``"step"`` (one instruction retired or one event delivered),
    ``"exit"`` (a VM exit happened and its handler answered it: ``exit``),
    ``"stop"`` (the handler returned STOP), ``"breakpoint"`` or
    ``"watchpoint"`` (``hit``), ``"halted"`` or ``"shutdown"``.
    ``rip_before``/``rip_after`` and ``cs`` bracket the step; ``bytes`` and
    ``length`` are the instruction's at ``rip_before`` (empty when an event
    came first); ``instructions`` counts what retired (0 or 1), ``event``
    whether an exception or interrupt was delivered through the guest's
    IVT or IDT.
    """

    vcpu: object
    stop: str
    rip_before: int
    rip_after: int
    cs: int
    mode: str
    bytes: bytes
    length: int
    instructions: int
    event: bool
    exit: object = None
    hit: object = None

    @property
    def disassembly(self):
        """The instruction in Intel syntax ("" when none ran)."""
        if not self.bytes:
            return ""
        return disassemble(self.bytes, self.rip_before, self.mode)[0]

    def __str__(self):
        out = f"{self.cs:04x}:{self.rip_before:x} {self.bytes.hex(' ')}  {self.disassembly} -> {self.rip_after:x}"
        if self.exit is not None:
            out += f" [{self.exit.name}]"
        if self.event:
            out += " [event]"
        return out


def linear_rip(v):
    """The linear address of the vCPU's CS:RIP."""
    cs = v.cs
    if v.efer & (1 << 10) and cs.access_rights & (1 << 13):
        return v.rip
    return (cs.base + v.rip) & 0xFFFFFFFF


def mode_of(v):
    """The vCPU's execution mode, one of :data:`vtx.debug.MODES`."""
    if not v.cr0 & 1:
        return "real"
    if v.rflags & (1 << 17):
        return "vm86"
    cs = v.cs
    if v.efer & (1 << 10) and cs.access_rights & (1 << 13):
        return "long64"
    return "prot32" if cs.access_rights & (1 << 14) else "prot16"


def _u64(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is an int, not {value!r}")
    if not 0 <= value < 1 << 64:
        raise ArgumentError(f"{name} {value:#x} is not a 64-bit address")
    return value


class Debugging:
    """The debugging half of :class:`vtx.VM` (a mixin): breakpoints,
    watchpoints, :meth:`step`, :meth:`trace` and :meth:`gdb_serve`."""

    def _init_debug(self):
        self._bps = {}
        self._wps = {}
        self._debug_next = 1
        self._tracer = None
        self._bp_stopped = {}       # vCPU index -> where a breakpoint stopped it
        #: The :class:`BreakpointHit` or :class:`WatchpointHit` that ended
        #: the last run or step (None when something else ended it): what a
        #: loop around :meth:`run`, such as a platform's, reads after it.
        self.last_hit = None

    # --- breakpoints and watchpoints -----------------------------------------------

    def add_breakpoint(self, address: int, physical: bool = False) -> Breakpoint:
        """Stop every run before the instruction at linear ``address``
        (CS base + RIP) executes, on any vCPU; with ``physical=True``, before
        an instruction whose first byte is at guest-physical ``address``
        (through whatever linear address the guest's paging maps there).  The run returns with
        ``stop == "breakpoint"`` and the :class:`BreakpointHit` in
        ``result.hit``.  The next run of that vCPU from there passes over
        the breakpoint it stopped at, so that calling :meth:`run` again
        continues (as gdb continues from a breakpoint); a run that merely
        starts on a breakpoint's address stops there at once.
        Returns the :class:`Breakpoint` (give it to
        :meth:`remove_breakpoint`)."""
        if not isinstance(physical, bool):
            raise TypeError(f"physical is a bool, not {physical!r}")
        bp = Breakpoint(self._debug_next, _u64("address", address), physical)
        if sum(1 for b in self._bps.values() if b.physical == physical) >= 32:
            raise ArgumentError("at most 32 breakpoints at a time")
        self._debug_next += 1
        self._bps[bp.id] = bp
        self._debug_sync()
        return bp

    def add_watchpoint(self, address: int, size: int = 1, kind: str = "write", physical: bool = False) -> Watchpoint:
        """Stop a run after an instruction reads (``kind="read"``), writes
        (``"write"``) or does either (``"access"``) any of ``size`` bytes at
        ``address``: a linear address, or with ``physical=True`` a
        guest-physical one.  The run returns with ``stop == "watchpoint"``
        and the :class:`WatchpointHit` (the access's address, size and the
        value there after it) in ``result.hit``.  Data accesses of the
        instructions count; instruction fetches, page walks and the
        processor's own accesses to descriptor tables, exception frames and
        the TSS do not."""
        _u64("address", address)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= 1 << 32:
            raise ArgumentError(f"size is a positive int of at most 4 GiB, not {size!r}")
        if address + size > 1 << 64:
            raise ArgumentError(f"a watchpoint of {size} bytes at {address:#x} runs past the address space")
        if kind not in KINDS:
            raise ArgumentError(f"kind is one of {', '.join(KINDS)}, not {kind!r}")
        if not isinstance(physical, bool):
            raise TypeError(f"physical is a bool, not {physical!r}")
        if len(self._wps) >= 32:
            raise ArgumentError("at most 32 watchpoints at a time")
        wp = Watchpoint(self._debug_next, address, size, kind, physical)
        self._debug_next += 1
        self._wps[wp.id] = wp
        self._debug_sync()
        return wp

    def remove_breakpoint(self, bp: Union[Breakpoint, int]) -> None:
        """Remove a breakpoint (the :class:`Breakpoint` or its id)."""
        key = bp.id if isinstance(bp, Breakpoint) else bp
        if self._bps.pop(key, None) is None:
            raise ArgumentError(f"no breakpoint {bp!r}")
        self._debug_sync()

    def remove_watchpoint(self, wp: Union[Watchpoint, int]) -> None:
        """Remove a watchpoint (the :class:`Watchpoint` or its id)."""
        key = wp.id if isinstance(wp, Watchpoint) else wp
        if self._wps.pop(key, None) is None:
            raise ArgumentError(f"no watchpoint {wp!r}")
        self._debug_sync()

    def clear_breakpoints(self) -> None:
        """Remove every breakpoint and watchpoint."""
        self._bps.clear()
        self._wps.clear()
        self._debug_sync()

    @property
    def breakpoints(self) -> Tuple[Breakpoint, ...]:
        """The :class:`Breakpoint` objects set, in the order they were added."""
        return tuple(self._bps.values())

    @property
    def watchpoints(self) -> Tuple[Watchpoint, ...]:
        """The :class:`Watchpoint` objects set, in the order they were added."""
        return tuple(self._wps.values())

    def _bp_order(self):
        """The breakpoints in the core's order: linear, then physical."""
        return ([b for b in self._bps.values() if not b.physical] +
                [b for b in self._bps.values() if b.physical])

    def _debug_sync(self, vcpus=None):
        bps = [b.address for b in self._bps.values() if not b.physical]
        pbps = [b.address for b in self._bps.values() if b.physical]
        wps = [(w.address, w.size, KINDS[w.kind], w.physical) for w in self._wps.values()]
        for v in (vcpus if vcpus is not None else self._vcpus):
            v._debug_set(bps, wps, pbps)

    def _debug_vcpu_added(self, v):
        v.vm = self
        self._debug_sync([v])
        if self._tracer is not None:
            self._tracer._attach(v)

    # --- around a run ------------------------------------------------------------------

    def _debug_before(self, v, step=False):
        """A run or step starts on v: pass over the breakpoint at CS:RIP if
        the last run stopped there (a step always does)."""
        at = self._bp_stopped.pop(v.index, None)
        if self._bps:
            here = linear_rip(v)
            v._debug_skip(here if step or at == here else None)

    def _debug_after(self, v, why):
        """A run or step of v ended with ``why``: the trace's records to its
        tracer; a debug stop as ("breakpoint" | "watchpoint", hit)."""
        if self._tracer is not None:
            self._tracer._flush(v)
        self.last_hit = None
        if why != "debug":
            return why, None
        kind, index, addr, size, write = v._debug_stop()
        if kind == _HDS_BREAK:
            bp = self._bp_order()[index]
            self._bp_stopped[v.index] = addr        # the linear address of CS:RIP
            self.last_hit = BreakpointHit(bp, v, v.rip)
            return "breakpoint", self.last_hit
        wp = list(self._wps.values())[index]
        value = self._debug_value(v, addr, size, wp.physical)
        self.last_hit = WatchpointHit(wp, v, v.rip, addr, size, "write" if write else "read", value)
        return "watchpoint", self.last_hit

    def _debug_value(self, v, addr, size, physical):
        try:
            data = self.read(addr, size) if physical else self.read_linear(addr, size, vcpu=v)
        except Exception:       # MMIO or unmapped: no value to show
            return None
        return int.from_bytes(data, "little")

    def read_linear(self, address: int, size: int, vcpu: Any = None) -> bytes:
        """Read ``size`` bytes at a linear address through the vCPU's paging
        (:meth:`translate`, page by page); GuestMemoryError where a page is
        not mapped or not backed by memory."""
        from ..errors import GuestMemoryError
        v = vcpu or self.vcpu
        out = bytearray()
        while size > 0:
            pa = self.translate(address, vcpu=v)
            n = min(size, 4096 - (address & 0xFFF))
            if pa is None:
                raise GuestMemoryError(f"linear address {address:#x} is not mapped")
            out += self.read(pa, n)
            address += n
            size -= n
        return bytes(out)

    def write_linear(self, address: int, data: bytes, vcpu: Any = None) -> None:
        """Write bytes at a linear address through the vCPU's paging."""
        from ..errors import GuestMemoryError
        v = vcpu or self.vcpu
        data = bytes(data)
        pas = []
        at, left, off = address, len(data), 0
        while left > 0:
            pa = self.translate(at, vcpu=v, write=False)
            n = min(left, 4096 - (at & 0xFFF))
            if pa is None:
                raise GuestMemoryError(f"linear address {at:#x} is not mapped")
            pas.append((pa, off, n))
            at, left, off = at + n, left - n, off + n
        for pa, off, n in pas:
            self.write(pa, data[off:off + n])

    # --- one step -------------------------------------------------------------------------

    def step(self, vcpu: Any = None) -> StepResult:
        """Run exactly one step of ``vcpu`` (default the first): one
        instruction (one iteration of a REP string instruction, as the model
        counts), or the delivery of one event, or one VM exit that its
        handler answers (RESUME steps over the instruction) -- never a
        second instruction.  Returns a :class:`StepResult`.  A breakpoint at
        the current CS:RIP does not stop the step."""
        v = vcpu or self.vcpu
        if self._running:
            raise VmStateError("step() while run() is active on this VM")
        rip0, cs0, mode0 = v.rip, v.cs.selector, mode_of(v)
        own = self._tracer is None
        if own:
            v._trace_set(1, 0, (1 << 64) - 1, 0x1F)
        else:
            self._tracer._flush(v)
        try:
            self._debug_before(v, step=True)
            from ..vm import RESUME, RETRY, STOP
            why, last, _per, n, ev = v._run(self._tables[v.index], self._default, 1, RESUME, RETRY, STOP, True)
        finally:
            raw = v._trace_take()
            if own:
                v._trace_set(0, 0, 0, 0)
            else:
                self._tracer._records(v, raw)
        why, hit = self._debug_after(v, why)
        code = b""
        if raw:
            rec = _last_record(raw)
            code = self._record_bytes(v, rec)
        if why == "step":
            why = "exit"            # the handler answered the exit (RESUME or RETRY)
        elif why == "budget":
            why = "step"
        return StepResult(v, why, rip0, v.rip, cs0, mode0, code, len(code), n, ev > 0, last, hit)

    def _record_bytes(self, v, rec):
        """The bytes of a trace record's instruction (the part in the next
        page read through the paging)."""
        code = rec.bytes
        if len(code) < rec.length:
            try:
                code += self.read_linear(rec.address + len(code), rec.length - len(code), vcpu=v)
            except Exception:
                pass
        return code

    # --- tracing and the GDB stub ----------------------------------------------------------

    def trace(self, callback: Optional[Callable[[Any], None]] = None, file: Any = None, start: int = 0,
              end: int = (1 << 64) - 1, modes: Union[str, Sequence[str], None] = None,
              vcpus: Optional[Sequence[Any]] = None, capacity: int = 4096) -> Tracer:
        """Trace the instructions the vCPUs execute from now on (see
        :class:`vtx.debug.Tracer`); returns the tracer, which is also a
        context manager (tracing ends with it).  Only one tracer at a
        time."""
        from .trace import Tracer
        if self._tracer is not None:
            raise VmStateError("a trace is already on; stop it first (tracer.stop())")
        self._tracer = Tracer(self, callback, file, start, end, modes, vcpus, capacity)
        return self._tracer

    def gdb_serve(self, port: int = 1234, host: str = "127.0.0.1", ready: Optional[Callable[[int], None]] = None,
                  run: Optional[Callable[[Optional[int]], str]] = None) -> None:
        """Serve one GDB remote-protocol connection on ``host:port`` (see
        :class:`vtx.debug.GdbServer`): blocks until gdb detaches or kills.
        ``port=0`` picks a free port; ``ready(port)`` is called once it
        listens.  ``run(max_instructions)``, if given, is what gdb's continue
        calls instead of :meth:`run` (a platform's run loop, which keeps
        its devices' time); it returns why it stopped, ``"budget"`` when
        the budget ran out."""
        from .gdbstub import GdbServer
        server = GdbServer(self, port, host, run)
        if ready is not None:
            ready(server.port)
        server.serve()


@attrs.frozen
class _Rec:
    address: int
    rip: int
    icount: int
    events: int
    cs: int
    mode: str
    length: int
    bytes: bytes


#: The layout of the core's TraceRec (vtx/_core.pxd), padding included.
RECORD_FORMAT = struct.Struct("<QQQQHBBB15s4x")


def parse_records(raw):
    """The core's trace records (bytes from ``VCpu._trace_take``)."""
    return [_Rec(lin, rip, ic, ev, cs, MODES[mode], length, code[:nb])
            for lin, rip, ic, ev, cs, mode, length, nb, code in RECORD_FORMAT.iter_unpack(raw)]


def _last_record(raw):
    return parse_records(raw[-RECORD_FORMAT.size:])[0]
