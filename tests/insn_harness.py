"""Shared harness for the instruction and decoder tests: run a snippet of
guest code in real, protected or long mode until HLT, or until the first
other exit, and hand back the VM, the vCPU and the exit that stopped it."""

import vtx

CODE = 0x1000
STACK = 0x8000          # initial SP: below the code's page, above the IVT
DATA = 0x20000          # a scratch data area the snippets may use

# RFLAGS status bits (SDM Vol. 1 3.4.3.1).
CF = 1 << 0
PF = 1 << 2
AF = 1 << 4
ZF = 1 << 6
SF = 1 << 7
DF = 1 << 10
OF = 1 << 11
IF = 1 << 9
STATUS = CF | PF | AF | ZF | SF | OF

MODES = {16: "real", 32: "protected", 64: "long"}
ALL_MODES = [16, 32, 64]
WIDTH = {16: 2, 32: 4, 64: 8}

# Natural-size register names per mode.
_NAMES = {
    "a": ("ax", "eax", "rax"), "b": ("bx", "ebx", "rbx"), "c": ("cx", "ecx", "rcx"),
    "d": ("dx", "edx", "rdx"), "si": ("si", "esi", "rsi"), "di": ("di", "edi", "rdi"),
    "bp": ("bp", "ebp", "rbp"), "sp": ("sp", "esp", "rsp"),
}


def R(bits, name):
    """The register `name` at the mode's natural operand size."""
    return _NAMES[name][{16: 0, 32: 1, 64: 2}[bits]]


def PTR(bits):
    """The memory-operand size keyword of the mode's natural operand size."""
    return {16: "word", 32: "dword", 64: "qword"}[bits]


class Outcome:
    """What a run ended with: the vCPU, the VM, the exit that stopped it."""

    def __init__(self, vm, vcpu, result):
        self.vm = vm
        self.vcpu = vcpu
        self.result = result
        self.exit = result.exit

    @property
    def halted(self):
        return self.exit is not None and self.exit.reason == vtx.ExitReason.HLT

    def __getattr__(self, name):
        return getattr(self.vcpu, name)


def make_vm(bits, memory=1 << 20, entry=CODE, stack=STACK):
    vm = vtx.VM(memory=memory)
    vcpu = vm.add_vcpu()
    if bits == 16:
        vm.setup_real_mode(entry=entry, stack=stack)
    elif bits == 32:
        vm.setup_protected_mode(entry=entry, stack=stack)
    else:
        vm.setup_long_mode(entry=entry, stack=stack)
    return vm, vcpu


def run(src, bits, regs=None, rflags=None, data=None, memory=1 << 20, org=CODE,
        stack=STACK, max_instructions=100_000, setup=None):
    """Assemble ``src`` followed by ``hlt`` at ``org``, set the registers,
    run until HLT or any other exit (both stop the run) and return an
    Outcome.  ``data`` maps guest-physical addresses to bytes to load."""
    vm, vcpu = make_vm(bits, memory=memory, entry=org, stack=stack)
    vm.load(org, vtx.asm(src + "\nhlt\n", bits=bits, org=org))
    for addr, blob in (data or {}).items():
        vm.write(addr, blob)
    for name, value in (regs or {}).items():
        setattr(vcpu, name, value)
    if rflags is not None:
        vcpu.rflags = rflags
    if setup is not None:
        setup(vm, vcpu)

    @vm.default
    def stop(vcpu, exit):
        return vtx.STOP

    result = vm.run(max_instructions=max_instructions)
    assert result.stop == "stop", f"run ended with {result.stop!r}, not an exit"
    return Outcome(vm, vcpu, result)


def run_hlt(src, bits, **kw):
    """Like run(), but insist that the guest reached the final HLT."""
    out = run(src, bits, **kw)
    assert out.halted, f"expected HLT, got {out.exit!r}"
    return out
