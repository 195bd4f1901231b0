"""Compare-and-branch fusion (vtx/core/insn/fast.pxi): a register ALU, TEST,
INC or DEC instruction and the Jcc after it run as one dispatch.  Nothing of
that may show: the budget still counts single instructions and can end
between the two, a Jcc that faults leaves the first instruction retired and
RIP on the Jcc, a CS limit between the two faults on the Jcc, the flags after
the pair are exact, and rewriting the Jcc's bytes is seen at once.
"""

import pytest

import vtx
from vtx import ExitReason as R

from conftest import guest, needs_as

pytestmark = needs_as

STATUS = 0x8D5          # CF PF AF ZF SF OF
ZF = 0x40

LOOP = """
    mov ecx, 5
1:  dec ecx
    jnz 1b
    hlt
"""
MOV_LEN = {16: 3, 32: 5, 64: 5}       # mov ecx, imm32 (16-bit code: mov ecx needs 66h)


@pytest.mark.parametrize("bits", [16, 32, 64])
@pytest.mark.parametrize("budget", range(1, 12))
def test_budget_ends_between_the_two(bits, budget):
    """Steps: MOV, then DEC and JNZ five times, then HLT.  A budget of k
    stops after exactly k instructions, wherever k falls in a pair."""
    src = LOOP.replace("mov ecx, 5", "mov ecx, 5" if bits != 16 else ".byte 0x66, 0xb9; .long 5")
    vm = guest(src, bits)
    v = vm.vcpu
    r = vm.run(max_instructions=budget)
    assert r.stop == "budget" and r.instructions == budget
    decs = budget // 2
    assert v.ecx == 5 - decs
    dec_at = 0x1000 + (5 if bits != 16 else 6)
    dec_len = {16: 2, 32: 1, 64: 2}[bits]        # 66 49 / 49 / FF C9
    if budget == 11:
        assert v.rip == dec_at + dec_len + 2     # the last JNZ fell through to HLT
    elif budget % 2:
        assert v.rip == dec_at                   # after MOV or a JNZ back
    else:
        assert v.rip == dec_at + dec_len         # between DEC and JNZ
        assert (v.rflags & ZF) == (ZF if v.ecx == 0 else 0)
    r = vm.run()
    assert r.exit.reason == R.HLT and v.ecx == 0


def test_jcc_fault_after_first_retired():
    """The Jcc's target lies beyond the CS limit: #GP(0) on the Jcc, with
    CMP retired (its flags visible) and RIP on the Jcc."""
    vm = guest("""
        mov eax, 1
        cmp eax, 1
        je 1f
        hlt
        .fill 64, 1, 0x90
    1:  hlt
    """, 32)
    v = vm.vcpu
    cs = v.cs
    v.cs = vtx.Segment(cs.selector, cs.base, 0x1000 + 5 + 3 + 2 + 1 + 10, cs.access_rights & ~0x8000)
    seen = []
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: seen.append(e) or vtx.STOP)
    r = vm.run()
    ex = seen[-1]
    assert ex.vector == 13 and ex.error_code == 0
    assert ex.guest_rip == 0x1000 + 5 + 3              # the JE
    assert r.instructions == 2
    assert v.rflags & STATUS == ZF | 0x4               # 1 - 1: ZF, PF


def test_cs_limit_between_the_two():
    """CS ends on CMP's last byte: CMP retires, fetching JE faults."""
    vm = guest("""
        mov eax, 2
        cmp eax, 1
        je 1f
    1:  hlt
    """, 32)
    v = vm.vcpu
    cs = v.cs
    v.cs = vtx.Segment(cs.selector, cs.base, 0x1000 + 5 + 3 - 1, cs.access_rights & ~0x8000)
    seen = []
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: seen.append(e) or vtx.STOP)
    r = vm.run()
    assert seen[-1].vector == 13 and seen[-1].guest_rip == 0x1000 + 8
    assert r.instructions == 2
    assert v.rflags & STATUS == 0                      # 2 - 1 = 1: no flag


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("a,b,want", [
    (5, 7, 0x91),                 # CF AF SF
    (7, 7, 0x44),                 # ZF PF
    (0x80000000, 1, 0x814),       # OF AF PF: 0x7FFFFFFF
    (0, 0x80000000, 0x885),       # CF SF OF PF
])
def test_flags_after_pair_at_exit(bits, a, b, want):
    """CMP; JNE fused, then an exit: the hypervisor reads exact flags."""
    vm = guest(f"""
        mov eax, {a}
        mov ebx, {b}
        cmp eax, ebx
        jne 1f
    1:  out 0x80, al
        hlt
    """, bits)
    seen = []
    vm.on(R.IO_INSTRUCTION)(lambda vcpu, e: seen.append(vcpu.rflags) or vtx.STOP)
    vm.run()
    assert seen[0] & STATUS == want


@pytest.mark.parametrize("bits", [32, 64])
def test_rewritten_jcc_of_a_pair(bits):
    """DEC; JZ runs fused (taken), then the guest rewrites JZ into JNZ and
    runs the pair again: the new JNZ falls through."""
    vm = guest("""
    start:
        mov ecx, 1
        dec ecx
    2:  jz 3f
        hlt
    3:  inc ebx
        cmp ebx, 2
        je 4f
        mov byte ptr [2b], 0x75
        jmp start
    4:  mov eax, 0xaa
        hlt
    """, bits)
    v = vm.vcpu
    r = vm.run()
    assert r.exit.reason == R.HLT
    assert v.ebx == 1 and v.eax != 0xAA
    assert r.exit.guest_rip == 0x1000 + 5 + {32: 1, 64: 2}[bits] + 2    # the first HLT


@pytest.mark.parametrize("cc,taken", [(0x70, 1), (0x71, 0), (0x72, 0), (0x73, 1), (0x74, 0), (0x75, 1),
                                      (0x76, 0), (0x77, 1), (0x78, 0), (0x79, 1), (0x7A, 1), (0x7B, 0),
                                      (0x7C, 1), (0x7D, 0), (0x7E, 1), (0x7F, 0)])
def test_every_condition_after_sub(cc, taken):
    """SUB 0x80000000 - 1 = 0x7FFFFFFF: no borrow, signed overflow, PF and
    AF set, so O AE NE A NS P L LE hold and the others do not: each Jcc
    fused to it branches as its condition says."""
    vm = guest(f"""
        mov eax, 0x80000000
        sub eax, 1
        .byte {cc}, 2
        hlt
        nop
        mov ebx, 1
        hlt
    """, 32)
    vm.run()
    assert vm.vcpu.ebx == taken
