"""vtx: a software model of Intel VT-x.

Run real x86 machine code in VMX non-root operation on a modeled CPU, handle
its VM exits in Python, and measure what they cost::

    import vtx

    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("mov al, 'h'; out 0xe9, al; hlt", bits=16))
    vm.add_vcpu()
    vm.setup_real_mode(entry=0x1000)

    @vm.on(vtx.ExitReason.IO_INSTRUCTION)
    def out(vcpu, exit):
        print(chr(exit.value), end="")
        return vtx.RESUME

    @vm.on(vtx.ExitReason.HLT)
    def hlt(vcpu, exit):
        return vtx.STOP

    print(vm.run().table())
"""

from ._core import (CpuidExit, CrAccessExit, DescriptorTableExit, EptMisconfigExit, EptViolationExit,
                    ExceptionExit, Exit, ExternalInterruptExit, HltExit, IoExit, MovDrExit, MsrExit, MwaitExit,
                    RdtscExit, TripleFaultExit, VCpu, VmcallExit, VmxInstructionExit, fabricate_exit)
from . import debug
from .asm import asm
from .cguest import CGuest, CompileError, cc
from .loader import ElfError, LoadedImage, load_elf, load_flat
from .bare import BareCpu, BareMetal, BareRunResult
from .cpu_model import CpuModel
from .errors import (ArgumentError, AsmError, AssemblerNotFound, GuestMemoryError, HandlerReturnError,
                     HostMemoryError, RegisterError, SnapshotError, UnhandledExit, VmEntryError, VmFail,
                     VmStateError, VtxError, VtxWarning)
from .spec import (EntryControls, ExitControls, ExitReason, Msr, PinBased, ProcBased, ProcBased2,
                   VmcsField, VmInstructionError)
from .types import DescriptorTable, Segment
from .vm import RESUME, RETRY, STOP, Action, RunResult, VM

__version__ = "0.1.0"

__all__ = [
    "VM", "VCpu", "RunResult", "CpuModel", "BareMetal", "BareCpu", "BareRunResult", "VmFail", "Action", "RESUME", "RETRY", "STOP",
    "Exit", "IoExit", "CpuidExit", "MsrExit", "HltExit", "VmcallExit", "RdtscExit", "ExceptionExit",
    "TripleFaultExit", "ExternalInterruptExit", "EptViolationExit", "EptMisconfigExit", "CrAccessExit",
    "VmxInstructionExit", "MovDrExit", "DescriptorTableExit", "MwaitExit",
    "ExitReason", "VmcsField", "VmInstructionError", "PinBased", "ProcBased", "ProcBased2",
    "ExitControls", "EntryControls", "Msr", "Segment", "DescriptorTable",
    "asm", "fabricate_exit", "debug", "load_elf", "load_flat", "LoadedImage", "ElfError", "cc", "CGuest", "CompileError",
    "VtxWarning",
    "VtxError", "AsmError", "AssemblerNotFound", "GuestMemoryError", "RegisterError", "VmEntryError",
    "UnhandledExit", "HandlerReturnError", "VmStateError", "ArgumentError", "HostMemoryError", "SnapshotError",
]
