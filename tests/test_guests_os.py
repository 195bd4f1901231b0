"""Guests that run themselves, as firmware and an operating system do
(tests/guests/boot.S, tests/guests/kernel64.S, assembled by GNU as at test
time): a boot sequence from real mode through protected mode and PAE paging
to 64-bit mode by far jumps; and a 64-bit kernel that drops to ring 3, takes
system calls (SYSCALL, INT 0x80), a demand-paging page fault and a #GP from
a privileged instruction, and returns.

Each runs twice: on a bare processor (vtx.BareMetal, no hypervisor) and as
the guest of a hosted hypervisor in Python that intercepts nothing the guest
handles itself (exception bitmap 0, MSR bitmaps).  Both must end in the same
state.
"""

import pytest

import vtx
from vtx.spec import ProcBased, VmcsField as F
from guests.build import build_asm, missing_tools, symbols

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"needs {' and '.join(missing_tools())}")

R = vtx.ExitReason
MEMORY = 4 << 20


def hosted(image, mode):
    """A hosted VM for an OS guest: the hypervisor lets the guest take its
    own exceptions and MSRs, keeps port 0xE9 as a console, stops at HLT."""
    vm = vtx.VM(memory=MEMORY)
    v = vm.add_vcpu()
    if mode == "real":
        vm.setup_real_mode(entry=0x1000)
    else:
        vm.setup_long_mode(entry=0x1000, tables=MEMORY - 0x10000)
    vm.load(0x1000, image)
    v.vmwrite(F.EXCEPTION_BITMAP, 0)
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS,
              v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | ProcBased.USE_MSR_BITMAPS)
    out = []

    @vm.on(R.IO_INSTRUCTION)
    def port(vcpu, exit):
        assert exit.direction == "out" and exit.port == 0xE9, exit
        out.append(chr(exit.value & 0xFF))
        return vtx.RESUME

    @vm.on(R.HLT)
    def hlt(vcpu, exit):
        return vtx.STOP

    result = vm.run(max_instructions=1_000_000)
    return "".join(out), result, v


def bare(image, mode):
    m = vtx.BareMetal(memory=MEMORY)
    if mode == "real":
        cpu = m.setup_real_mode(entry=0x1000)
    else:
        cpu = m.setup_long_mode(entry=0x1000, tables=MEMORY - 0x10000)
    m.load(0x1000, image)
    result = m.run(max_instructions=1_000_000)
    return m.console.decode(), result, cpu


# ============================================================================
# real mode -> protected mode -> PAE -> IA-32e -> 64-bit -> compatibility
# ============================================================================

def test_boot_sequence_on_bare_metal():
    image, mapfile = build_asm("boot", 32)
    text, result, cpu = bare(image, "real")
    back32 = symbols(mapfile)["back32"]
    assert result.stop == "halted", result
    assert text == "RPACLc"
    assert cpu.eax == 0x23456789
    assert cpu.cs.selector == 0x08 and cpu.efer & 0x500 == 0x500
    assert cpu.cr0 & 0x80000001 == 0x80000001 and cpu.cr4 & 0x20 and cpu.cr3 == 0x12000
    assert back32 < cpu.rip < back32 + 32


def test_boot_sequence_under_a_python_hypervisor():
    image, _ = build_asm("boot", 32)
    text, result, v = hosted(image, "real")
    assert result.exit.reason == R.HLT, result.exit
    assert text == "RPACLc"
    assert v.eax == 0x23456789
    assert v.cs.selector == 0x08 and v.efer & 0x500 == 0x500
    assert v.cr0 & 0x80000001 == 0x80000001 and v.cr4 & 0x20 and v.cr3 == 0x12000
    # the exit saved EFER.LMA into the "IA-32e mode guest" entry control
    assert v.vmread(F.VM_ENTRY_CONTROLS) & (1 << 9)


# ============================================================================
# a 64-bit kernel: ring 3, SYSCALL, INT 0x80, #PF demand paging, #GP
# ============================================================================

def check_kernel(text, regs):
    assert text == "hiE"
    assert regs["rax"] == 42                  # INT 0x80 doubled 21; read back after the #PF
    assert regs["rbx"] == 6                   # #PF error code: user (4) | write (2), not present
    assert regs["rcx"] == 0x6000              # CR2
    assert regs["rdx"] == 1                   # one page fault
    assert regs["rsi"] == 1                   # one #GP (CLI at CPL 3)
    assert regs["rdi"] == 0x23                # CS pushed by INT 0x80 from ring 3
    assert regs["r8"] == 0x202 or regs["r8"] == 0x002   # RFLAGS at SYSCALL (R11): IF as the user had it
    assert regs["r9"] == 0x6000               # user RSP at exit
    assert regs["cs"] == 0x08                 # back at CPL 0


def regs_of(cpu):
    return {n: getattr(cpu, n) for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9")} | \
        {"cs": cpu.cs.selector}


def test_kernel_with_a_user_program_on_bare_metal():
    image, mapfile = build_asm("kernel64", 64)
    text, result, cpu = bare(image, "long")
    assert result.stop == "halted", (result, text)
    assert cpu.rip == symbols(mapfile)["kernel_halt"] + 1
    check_kernel(text, regs_of(cpu))


def test_kernel_with_a_user_program_under_a_python_hypervisor():
    image, mapfile = build_asm("kernel64", 64)
    text, result, v = hosted(image, "long")
    assert result.exit.reason == R.HLT, (result.exit, text)
    assert result.exit.guest_rip == symbols(mapfile)["kernel_halt"]
    check_kernel(text, regs_of(v))
    # the guest handled its own faults: no exception exits
    assert set(result.exits) <= {R.IO_INSTRUCTION, R.HLT}
