"""vcpu.inject: event injection from Python (SDM Vol. 3C 25.8.3, 27.6)."""

import pytest

import vtx
from vtx import VmcsField as F

GUEST = """
    lea rax, [rip + h13]
    mov rdi, 0x8000 + 13 * 16
    call gate
    lea rax, [rip + h32]
    mov rdi, 0x8000 + 0x32 * 16
    call gate
    lea rax, [rip + h3]
    mov rdi, 0x8000 + 3 * 16
    call gate
    lidt [rip + idtr]
    cpuid
    hlt
gate:
    mov word ptr [rdi], ax
    mov word ptr [rdi + 2], 0x18
    mov word ptr [rdi + 4], 0x8E00
    shr rax, 16
    mov word ptr [rdi + 6], ax
    shr rax, 16
    mov dword ptr [rdi + 8], eax
    ret
h13:
    pop r8              # the error code
    mov r9, [rsp]       # the RIP pushed
    hlt
h32:
    mov r10, [rsp]
    hlt
h3:
    mov r11, [rsp]
    hlt
idtr: .word 0xFFF
      .quad 0x8000
"""


def vm_at_cpuid(inject):
    vm = vtx.VM(memory=1 << 20)
    code = vtx.asm(GUEST, bits=64)
    vm.load(0x1000, code)
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    stops = []

    @vm.on("CPUID")
    def cpuid(vcpu, exit):
        inject(vcpu, exit)
        return vtx.RETRY

    @vm.on("HLT")
    def hlt(vcpu, exit):
        stops.append(vcpu.rip)
        return vtx.STOP
    vm.run(max_instructions=1000)
    return vm, code.index(b"\x0f\xa2") + 0x1000


def test_inject_gp_with_error_code():
    vm, at = vm_at_cpuid(lambda v, e: v.inject(13, error_code=0x18))
    assert vm.vcpu.r8 == 0x18 and vm.vcpu.r9 == at


def test_inject_external_interrupt():
    def inject(v, e):
        v.rflags |= 0x200
        v.inject(0x32, kind="interrupt")
    vm, at = vm_at_cpuid(inject)
    assert vm.vcpu.r10 == at


def test_inject_external_interrupt_with_if_clear_fails_the_entry():
    with pytest.raises(vtx.VmEntryError, match="GUEST_RFLAGS_IF"):
        vm_at_cpuid(lambda v, e: v.inject(0x32, kind="interrupt"))


def test_inject_software_exception_returns_after_the_instruction():
    vm, at = vm_at_cpuid(lambda v, e: v.inject(3, kind="software-exception", instruction_length=2))
    assert vm.vcpu.r11 == at + 2


def test_inject_writes_the_fields():
    vm = vtx.VM(memory=1 << 20)
    v = vm.add_vcpu()
    v.inject(14, error_code=6)
    assert v.vmread(F.VM_ENTRY_INTERRUPTION_INFO) == 0x80000B0E
    assert v.vmread(F.VM_ENTRY_EXCEPTION_ERROR_CODE) == 6
    v.inject(2, kind="nmi")
    assert v.vmread(F.VM_ENTRY_INTERRUPTION_INFO) == 0x80000202
    v.inject(0x80, kind="software-interrupt", instruction_length=2)
    assert v.vmread(F.VM_ENTRY_INTERRUPTION_INFO) == 0x80000480
    assert v.vmread(F.VM_ENTRY_INSTRUCTION_LENGTH) == 2


@pytest.mark.parametrize("args,kw,msg", [
    ((3,), {"kind": "exceptional"}, "event kind"),
    ((256,), {}, "vector"),
    ((32,), {}, r"\[0, 31\]"),
    ((6,), {"error_code": 0}, "no error code"),
    ((3,), {"kind": "nmi"}, "vector 2"),
    ((3,), {"kind": "software-exception"}, "instruction_length"),
    ((13,), {"error_code": -1}, "32-bit"),
])
def test_inject_bad_arguments(args, kw, msg):
    v = vtx.VM(memory=1 << 20).add_vcpu()
    with pytest.raises(vtx.ArgumentError, match=msg):
        v.inject(*args, **kw)
    assert v.vmread(F.VM_ENTRY_INTERRUPTION_INFO) == 0


def test_end_run_after_from_a_handler():
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("1: cpuid\n    inc rbx\n    jmp 1b", bits=64))
    v = vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)

    @vm.on("CPUID")
    def cpuid(vcpu, exit):
        vcpu.end_run_after(2)           # the run ends 2 steps after this instruction starts
        return vtx.RESUME
    r = vm.run(max_instructions=1000)
    assert r.stop == "budget" and r.instructions == 2    # CPUID and INC
    assert v.rbx == 1
    with pytest.raises(vtx.VmStateError, match="handler of a running vCPU"):
        v.end_run_after(5)
    with pytest.raises(vtx.ArgumentError):
        v.end_run_after(0)
