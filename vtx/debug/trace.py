"""The instruction trace: every instruction a vCPU executes, with its mode,
CS:RIP, bytes and disassembly.

The core records instructions into a buffer while a trace is on
(core/debugger.pxi); when it fills, or a run ends, the records come here and
go to a callback, a file, or :attr:`Tracer.entries`.  The address range and
the modes are filtered in the core, so an instruction outside them costs
no record and no Python; but while a trace is on every instruction takes
the one-at-a-time path (the tight loop of benchmarks/test_debug.py runs
about 7 times slower with a trace that records nothing).  While no trace is
on, the run loop pays nothing.
"""

import attrs

from ..errors import ArgumentError
from .. import _core
from .debugger import RECORD_FORMAT, _Rec
from .disasm import MODES, disassemble

_RECORD = RECORD_FORMAT
assert _RECORD.size == _core.TRACE_RECORD_SIZE


@attrs.frozen
class TraceEntry:
    """One traced instruction: ``vcpu`` (its index), ``mode`` (one of
    :data:`vtx.debug.MODES`), ``cs`` (the selector), ``rip``, ``address``
    (linear), ``bytes``, and ``icount`` (instructions the vCPU had retired
    before it).  A REP string instruction appears once per iteration."""

    vcpu: int
    mode: str
    cs: int
    rip: int
    address: int
    bytes: bytes
    icount: int

    @property
    def disassembly(self):
        return disassemble(self.bytes, self.rip, self.mode)[0]

    def format(self):
        """``vcpu mode CS:RIP  bytes  disassembly`` on one line."""
        width = 16 if self.mode == "long64" else 8 if self.mode == "prot32" else 4
        return (f"cpu{self.vcpu} {self.mode:<6} {self.cs:04x}:{self.rip:0{width}x}  "
                f"{self.bytes.hex(' '):<29}  {self.disassembly}")

    __str__ = format


class Tracer:
    """An instruction trace of a VM (made by :meth:`vtx.VM.trace`).

    ``callback(entry)`` is called with each :class:`TraceEntry` in order;
    ``file`` (a path or a text file) receives one formatted line per entry;
    with neither, entries collect in :attr:`entries`.  Only instructions
    whose linear address lies in ``[start, end]`` and whose mode is in
    ``modes`` (names of :data:`vtx.debug.MODES`; default all) are traced, on
    ``vcpus`` (default every vCPU, those added later too).  ``capacity``
    records are buffered in the core between two deliveries.  Stop with
    :meth:`stop` or by leaving a ``with`` block.
    """

    def __init__(self, vm, callback=None, file=None, start=0, end=(1 << 64) - 1, modes=None, vcpus=None,
                 capacity=4096):
        if callback is not None and not callable(callback):
            raise TypeError(f"callback is callable, not {callback!r}")
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
                raise ArgumentError(f"{name} is a 64-bit linear address, not {value!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= 1 << 20:
            raise ArgumentError(f"capacity is an int in [1, 1048576], not {capacity!r}")
        modes = tuple(MODES) if modes is None else tuple([modes] if isinstance(modes, str) else modes)
        for m in modes:
            if m not in MODES:
                raise ArgumentError(f"a mode is one of {', '.join(MODES)}, not {m!r}")
        self.vm = vm
        self.callback = callback
        self._own_file = isinstance(file, (str, bytes)) or hasattr(file, "__fspath__")
        self.file = open(file, "w") if self._own_file else file
        self.entries = [] if callback is None and file is None else None
        self._range = (start, end)
        self._mask = sum(1 << MODES.index(m) for m in set(modes))
        self._capacity = capacity
        self._only = None if vcpus is None else [v.index for v in vcpus]
        self._last = {}
        self.active = True
        for v in vm.vcpus:
            self._attach(v)

    def _attach(self, v):
        if self._only is not None and v.index not in self._only:
            return
        v.trace_handler = self._flush
        v._trace_set(self._capacity, self._range[0], self._range[1], self._mask)

    def _flush(self, v):
        self._records(v, v._trace_take())

    def _records(self, v, raw):
        if not raw:
            return
        last = self._last.get(v.index)
        index = v.index
        for lin, rip, icount, events, cs, mode, length, nbytes, code in _RECORD.iter_unpack(raw):
            key = (icount, events, rip)
            if key == last:
                continue        # the same instruction run again (MMIO answered): once
            last = key
            code = code[:nbytes]
            if nbytes < length:
                code = self.vm._record_bytes(v, _Rec(lin, rip, icount, events, cs, MODES[mode], length, code))
            self._emit(TraceEntry(index, MODES[mode], cs, rip, lin, code, icount))
        self._last[index] = last

    def _emit(self, entry):
        if self.callback is not None:
            self.callback(entry)
        if self.file is not None:
            self.file.write(entry.format() + "\n")
        if self.entries is not None:
            self.entries.append(entry)

    def stop(self):
        """End the trace: the records still buffered are delivered first."""
        if not self.active:
            return
        self.active = False
        for v in self.vm.vcpus:
            if self._only is None or v.index in self._only:
                self._flush(v)
                v._trace_set(0, 0, 0, 0)
                v.trace_handler = None
        if self._own_file:
            self.file.close()
        elif self.file is not None:
            self.file.flush()
        self.vm._tracer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
