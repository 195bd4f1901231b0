"""LOOP, LOOPE, LOOPNE and JCXZ/JECXZ/JRCXZ (E0-E3; SDM Vol. 2 LOOP/LOOPcc,
Jcc): the count register by address size, no flag changes, the ZF
conditions, and a faulting target that leaves the count alone."""

import pytest

import vtx
from vtx import ExitReason as R

from conftest import guest, needs_as

pytestmark = needs_as


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_loop_counts_down_without_flags(bits):
    """LOOP runs its body 5 times; the flags set before the loop survive."""
    vm = guest("""
        mov eax, 0
        mov ecx, 5
        stc
    1:  lea eax, [eax + 3]
        loop 1b
        setc bl
        hlt
    """ if bits != 16 else """
        mov ax, 0
        mov cx, 5
        stc
    1:  add ax, 3
        loop 1b
        setc bl
        hlt
    """, bits)
    r = vm.run()
    v = vm.vcpu
    assert r.exit.reason == R.HLT
    if bits == 16:
        # ADD resets CF in 16-bit code: the loop body sets flags there
        assert v.ax == 15 and v.cx == 0
    else:
        assert v.eax == 15 and v.ecx == 0 and v.bl == 1     # LEA and LOOP leave CF alone


@pytest.mark.parametrize("op", ["loope", "loopne"])
def test_loope_loopne(op):
    """ECX counts down from 10.  LOOPNE: ZF = 1 only when ECX (before the
    decrement) is 8; LOOPE: ZF = 0 only then.  Either way the third
    iteration ends the loop with ECX = 7, though ECX is not zero."""
    cmp = "cmp ecx, 8" if op == "loopne" else "cmp ecx, 8\n sete dl\n cmp dl, 0"
    vm = guest(f"""
        mov ecx, 10
    1:  inc eax
        {cmp}
        {op} 1b
        hlt
    """, 32)
    r = vm.run()
    v = vm.vcpu
    assert r.exit.reason == R.HLT
    assert v.eax == 3 and v.ecx == 7


@pytest.mark.parametrize("bits,count_reg,asm", [
    (32, "ecx", "jecxz 1f"),
    (64, "rcx", "jrcxz 1f"),
    (16, "cx", "jcxz 1f"),
])
def test_jcxz(bits, count_reg, asm):
    for count, taken in ((0, True), (1, False), (0x10000, bits == 16)):
        vm = guest(f"""
            mov ebx, 0
            {asm}
            mov ebx, 1
        1:  hlt
        """, bits)
        v = vm.vcpu
        setattr(v, "rcx", count)
        vm.run()
        assert v.ebx == (0 if taken else 1), (count, bits)
        assert v.rcx == count                  # JrCXZ does not change the count


def test_loop_with_32_bit_address_size_in_64_bit_mode():
    """67h LOOP in 64-bit mode counts in ECX and clears RCX[63:32]."""
    vm = guest("""
        mov rcx, 0x100000003
    1:  inc eax
        .byte 0x67, 0xe2, 0xfb      # addr32 loop 1b (rel8 -5: back over INC EAX, FF C0)
        hlt
    """, 64)
    r = vm.run()
    v = vm.vcpu
    assert r.exit.reason == R.HLT and v.eax == 3 and v.rcx == 0


def test_loop_target_beyond_cs_limit_faults_with_the_count_kept():
    vm = guest("""
        mov ecx, 2
        loop 1f
        hlt
        .fill 40, 1, 0x90
    1:  hlt
    """, 32)
    v = vm.vcpu
    cs = v.cs
    v.cs = vtx.Segment(cs.selector, cs.base, 0x1000 + 20, cs.access_rights & ~0x8000)
    seen = []
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: seen.append(e) or vtx.STOP)
    vm.run()
    assert seen[0].vector == 13 and seen[0].guest_rip == 0x1005
    assert v.ecx == 2
