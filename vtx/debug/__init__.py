"""Debugging a guest: single steps, breakpoints and watchpoints, an
instruction trace with disassembly, and a GDB remote stub
(docs/tutorials/debugging.rst; docs/architecture.rst, "Debugging").

Everything here is reached from a :class:`vtx.VM`: ``vcpu.step()``,
``vm.add_breakpoint()``, ``vm.add_watchpoint()``, ``vm.trace()`` and
``vm.gdb_serve()``.
"""

from .debugger import (KINDS, Breakpoint, BreakpointHit, StepResult, Watchpoint, WatchpointHit, linear_rip,
                       mode_of)
from .disasm import MODES, backend, disassemble
from .trace import TraceEntry, Tracer

__all__ = ["Breakpoint", "Watchpoint", "BreakpointHit", "WatchpointHit", "StepResult", "TraceEntry", "Tracer",
           "MODES", "KINDS", "disassemble", "backend", "linear_rip", "mode_of", "GdbServer"]


def __getattr__(name):
    if name == "GdbServer":
        from .gdbstub import GdbServer
        return GdbServer
    raise AttributeError(name)
