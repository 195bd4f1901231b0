"""Far JMP, CALL and RET (SDM Vol. 2 JMP, CALL, RET; Vol. 3A 5.8): real
mode, protected mode directly to code segments (conforming and not) and
through call gates (16-, 32- and 64-bit, to more privilege with the stack
switch and the parameter copy), the return to an outer level, and each
privilege check with its fault and error code.  The oracle is the SDM's
pseudo-code (KVM's emulator is known to be wrong on gates)."""

import pytest

import vtx
from prot_harness import (CODE, CODE0, CODE1, CODE16, CODE3, CODE64, CODE64_3, CONF0, DATA0, DATA1, DATA3,
                          FREE, STACK0, STACK1, STACK3, Prot, gate, seg, to_ring3)

CALLEE = 0x3000
FRAME = 0x20000


def test_real_mode_far_call_jmp_retf():
    hw = vtx.BareMetal(memory=1 << 20)
    src = """
        call far ptr 0x0200:0x0010
        mov bx, cs
        jmp far ptr 0x0000:done
    done:
        hlt
    """
    hw.load(0x1000, vtx.asm(src, bits=16, org=0x1000))
    # at 0200:0010 (linear 2010H): mov ax, cs; mov cx, sp; retf
    hw.load(0x2010, vtx.asm("mov ax, cs\nmov cx, sp\nmov dx, [esp]\nretf", bits=16))
    cpu = hw.setup_real_mode(entry=0x1000, stack=0x8000)
    assert hw.run(max_instructions=100).stop == "halted"
    assert cpu.rax & 0xFFFF == 0x0200 and cpu.rcx & 0xFFFF == 0x7FFC
    assert cpu.rdx & 0xFFFF == 0x1005                 # the return IP
    assert cpu.rbx & 0xFFFF == 0 and cpu.cs.selector == 0 and cpu.rsp == 0x8000


def test_same_privilege_call_retf_pushes_cs_and_eip():
    m = Prot()
    cpu, vec, err = m.run("""
        mov edx, offset after
        call far ptr 0x08:target
    after:
        jmp out
    target:
        mov eax, [esp]
        mov ebx, [esp + 4]
        mov ecx, esp
        retf
    out:
    """)
    assert vec is None
    assert cpu.rcx == STACK0 - 8 and cpu.rbx == CODE0
    assert cpu.rax == cpu.rdx                  # the return EIP: the instruction after the CALL
    assert cpu.rsp == STACK0 and cpu.cs.selector == CODE0


def test_retf_imm_releases_bytes():
    m = Prot()
    cpu, vec, _ = m.run("""
        push 1
        push 2
        call far ptr 0x08:target
        jmp out
    target:
        retf 8
    out:
    """)
    assert vec is None and cpu.rsp == STACK0


def test_jmp_far_to_16_bit_code_and_back():
    m = Prot()
    cpu, vec, _ = m.run(f"""
        jmp far ptr {CODE16}:code16
    code16:
        .code16
        mov ax, cs
        jmp far ptr {CODE0}:back
        .code32
    back:
    """)
    assert vec is None and cpu.rax & 0xFFFF == CODE16 and cpu.cs.selector == CODE0


@pytest.mark.parametrize("sel,vec,err", [
    (0, 13, 0),                         # null selector: #GP(0)
    (0x03, 13, 0),                      # null with an RPL
    (0x1F8, 13, 0x1F8),                 # beyond the GDT limit: #GP(sel)
    (DATA0, 13, DATA0),                 # a data segment
    (CODE3, 13, CODE3 & ~3),            # non-conforming, DPL 3 != CPL 0
    (FREE, 11, FREE),                   # not present: #NP(sel)
    (FREE + 8, 13, FREE + 8),           # a system descriptor of another type (LDT)
    (FREE + 16, 13, FREE + 16),         # a busy TSS
])
def test_jmp_far_checks(sel, vec, err):
    m = Prot()
    m.gdt[FREE] = seg(typ=0xB, p=0)
    m.gdt[FREE + 8] = seg(typ=0x2, s=0)
    m.gdt[FREE + 16] = seg(0x14000, 0x67, typ=0xB, s=0, g=0, db=0)
    cpu, v, e = m.run(f"jmp far ptr {sel}:0")
    assert (v, e) == (vec, err)
    assert cpu.cs.selector == CODE0


def test_rpl_above_cpl_to_nonconforming_is_gp():
    m = Prot()
    cpu, v, e = m.run(f"jmp far ptr {CODE0 | 3}:0")
    assert (v, e) == (13, CODE0)


def test_conforming_segment_keeps_cpl():
    m = Prot()
    m.hw.write(CALLEE, vtx.asm("mov ax, cs\nmov bx, ss\nint 0x40", bits=32))
    cpu, v, e = m.run(to_ring3() + f"user:\njmp far ptr {CONF0}:{CALLEE}")
    assert v is None
    assert cpu.rax & 0xFFFF == CONF0 | 3 and cpu.rbx & 0xFFFF == DATA3


def test_jmp_beyond_limit_is_gp0():
    m = Prot()
    m.gdt[FREE] = seg(limit=0xFFF, typ=0xB, g=0)
    cpu, v, e = m.run(f"jmp far ptr {FREE}:0x1000")
    assert (v, e) == (13, 0)


def test_call_gate_to_ring0_copies_parameters_and_switches_stack():
    m = Prot()
    m.gdt[FREE] = gate(CODE0, CALLEE, typ=0xC, dpl=3, count=2)
    m.hw.write(CALLEE, vtx.asm(f"""
        mov [{FRAME + 0x40}], ss
        mov [{FRAME + 0x44}], esp
        mov esi, esp
        mov edi, {FRAME}
        mov ecx, 6
        rep movsd
        mov ax, 0x10
        mov ds, ax            # a DPL-0 data segment: null after the return
        retf 8
    """, bits=32))
    cpu, v, e = m.run(to_ring3() + f"""
    user:
        mov ax, {DATA3}
        mov es, ax
        mov ds, ax
        push 0x11111111
        push 0x22222222
        call far ptr {FREE | 3}:0
    ret_here:
        mov edx, esp
        mov ax, ds
        mov bx, es
        mov cx, ss
        int 0x40
    """)
    assert v is None
    assert m.u16(FRAME + 0x40) == DATA0 and m.u32(FRAME + 0x44) == STACK0 - 24
    # the new stack, from the top: EIP, CS, the parameters (as on the old
    # stack), ESP, SS
    frame = [m.u32(FRAME + 4 * i) for i in range(6)]
    assert frame[1:] == [CODE3, 0x22222222, 0x11111111, STACK3 - 8, DATA3]
    assert frame[0] > CODE
    assert cpu.rdx == STACK3          # retf 8 released the parameters
    assert cpu.rax & 0xFFFF == 0      # DS (DPL 0) nulled by the return to CPL 3
    assert cpu.rbx & 0xFFFF == DATA3 and cpu.rcx & 0xFFFF == DATA3


def test_call_gate_to_ring1_uses_ss1_esp1():
    m = Prot()
    m.gdt[FREE] = gate(CODE1, CALLEE, typ=0xC, dpl=3)
    m.hw.write(CALLEE, vtx.asm("mov eax, ss\nmov ebx, esp\nmov ecx, cs\nint 0x40", bits=32))
    cpu, v, e = m.run(to_ring3() + f"user:\ncall far ptr {FREE}:0")
    assert v is None
    assert (cpu.rax & 0xFFFF, cpu.rbx, cpu.rcx & 0xFFFF) == (DATA1, STACK1 - 16, CODE1)


def test_16_bit_call_gate_pushes_words():
    m = Prot()
    m.gdt[FREE] = gate(CODE0, CALLEE, typ=0x4, dpl=3, count=1)
    m.hw.write(CALLEE, vtx.asm("mov ecx, esp\nint 0x40", bits=32))
    cpu, v, e = m.run(to_ring3() + f"user:\npush 0x1234abcd\ncall far ptr {FREE}:0")
    assert v is None
    assert cpu.rcx == STACK0 - 10
    words = [m.u16(STACK0 - 10 + 2 * i) for i in range(5)]
    assert words[1:] == [CODE3, 0xABCD, (STACK3 - 4) & 0xFFFF, DATA3]


@pytest.mark.parametrize("gate_kw,vec,err", [
    (dict(dpl=0), 13, FREE),                       # gate DPL < CPL: #GP(gate)
    (dict(dpl=3, p=0), 11, FREE),                  # gate not present: #NP(gate)
    (dict(dpl=3, sel=0), 13, 0),                   # null code selector: #GP(0)
    (dict(dpl=3, sel=DATA0), 13, DATA0),           # not a code segment: #GP(sel)
    (dict(dpl=3, sel=0x1F8), 13, 0x1F8),           # beyond the GDT: #GP(sel)
    (dict(dpl=3, sel=FREE + 8), 11, FREE + 8),     # code segment not present: #NP(sel)
])
def test_call_gate_checks_from_ring3(gate_kw, vec, err):
    m = Prot()
    sel = gate_kw.pop("sel", CODE0)
    m.gdt[FREE] = gate(sel, CALLEE, typ=0xC, **gate_kw)
    m.gdt[FREE + 8] = seg(typ=0xB, p=0)
    cpu, v, e = m.run(to_ring3() + f"user:\ncall far ptr {FREE | 3}:0")
    assert (v, e) == (vec, err)


def test_call_gate_rpl_above_gate_dpl():
    m = Prot()
    m.gdt[FREE] = gate(CODE0, CALLEE, typ=0xC, dpl=2)
    cpu, v, e = m.run(f"call far ptr {FREE | 3}:0")
    assert (v, e) == (13, FREE)


def test_jmp_through_call_gate_to_more_privileged_nonconforming_is_gp():
    m = Prot()
    m.gdt[FREE] = gate(CODE0, CALLEE, typ=0xC, dpl=3)
    cpu, v, e = m.run(to_ring3() + f"user:\njmp far ptr {FREE}:0")
    assert (v, e) == (13, CODE0)


@pytest.mark.parametrize("ss1,vec,err", [
    (DATA3, 10, DATA3 & ~3),          # RPL 3 != the new CPL 1: #TS(SS)
    (DATA0 | 1, 10, DATA0),           # DPL 0 != 1: #TS(SS)
    (CODE1, 10, CODE1 & ~3),          # not a writable data segment: #TS(SS)
    (0x1F9, 10, 0x1F8),               # beyond the GDT: #TS(SS)
    (FREE + 8 | 1, 12, FREE + 8),     # not present: #SS(SS)
])
def test_call_gate_bad_tss_stack(ss1, vec, err):
    # The ring-1 stack of the TSS is bad; the fault goes to ring 0, whose
    # stack is good (a bad SS0 would fault again delivering the fault: a
    # triple fault, test_bad_ss0_is_a_triple_fault).
    m = Prot()
    m.gdt[FREE] = gate(CODE1, CALLEE, typ=0xC, dpl=3)
    m.gdt[FREE + 8] = seg(typ=0x3, dpl=1, p=0)
    m.hw.write(0x13010, ss1.to_bytes(2, "little"))
    cpu, v, e = m.run(to_ring3() + f"user:\ncall far ptr {FREE}:0")
    assert (v, e) == (vec, err)


def test_bad_ss0_is_a_triple_fault():
    m = Prot()
    m.gdt[FREE] = gate(CODE0, CALLEE, typ=0xC, dpl=3)
    m.hw.write(0x13008, (DATA3).to_bytes(2, "little"))    # SS0 with RPL 3
    cpu, v, e = m.run(to_ring3() + f"user:\ncall far ptr {FREE}:0")
    assert m.result.stop == "shutdown" and cpu.cs.selector == CODE3


def test_retf_to_outer_checks_ss_rpl():
    m = Prot()
    cpu, v, e = m.run(f"""
        push {DATA0}              # SS with RPL 0 for a return to CPL 3
        push {STACK3}
        push {CODE3}
        push 0x1000
        retf
    """)
    assert (v, e) == (13, DATA0)


def test_retf_to_inner_level_is_gp():
    m = Prot()
    cpu, v, e = m.run(to_ring3() + f"user:\npush {CODE0}\npush 0x1000\nretf")
    assert (v, e) == (13, CODE0)


# --- IA-32e mode ------------------------------------------------------------------

def test_64_bit_far_jmp_to_compatibility_mode_and_back():
    m = Prot(64)
    cpu, v, e = m.run(f"""
        lea rax, [rip + compat]
        mov [rip + ptr], eax
        mov word ptr [rip + ptr + 4], {CODE0}
        jmp fword ptr [rip + ptr]
    ptr: .long 0
        .word 0
    compat:
        .code32
        mov ebx, cs
        push {CODE64}
        call next
    next:
        add dword ptr [esp], back - next
        retf
        .code64
    back:
        mov ecx, cs
    """)
    assert v is None
    assert (cpu.rbx & 0xFFFF, cpu.rcx & 0xFFFF, cpu.cs.selector) == (CODE0, CODE64, CODE64)


def test_64_bit_far_jmp_m16_64_with_rex_w():
    m = Prot(64)
    cpu, v, e = m.run(f"""
        lea rax, [rip + target]
        mov [rip + ptr], rax
        mov word ptr [rip + ptr + 8], {CODE64}
        rex64 jmp fword ptr [rip + ptr]
        hlt
    ptr: .quad 0
        .word 0
    target:
        mov ebx, 7
    """)
    assert v is None and cpu.rbx == 7


def test_ea_is_ud_in_64_bit_mode():
    m = Prot(64)
    cpu, v, e = m.run(".byte 0xea, 0, 0, 0, 0, 8, 0")
    assert v == 6


def test_64_bit_call_gate_from_ring3():
    m = Prot(64)
    m.gdt[FREE] = gate(CODE64, CALLEE, typ=0xC, dpl=3)
    m.gdt[FREE + 8] = 0                       # upper half: offset 63:32 = 0, type 0
    m.hw.write(CALLEE, vtx.asm("mov rax, ss\nmov rbx, rsp\nmov rcx, cs\nint 0x40", bits=64))
    cpu, v, e = m.run(to_ring3(64) + f"""
    user:
        lea rax, [rip + ptr]
        rex64 call fword ptr [rax]
    ptr: .quad 0
        .word {FREE | 3}
    """)
    assert v is None
    assert (cpu.rax & 0xFFFF, cpu.rbx, cpu.rcx & 0xFFFF) == (0, STACK0 - 32, CODE64)
    frame = [m.u64(STACK0 - 32 + 8 * i) for i in range(4)]
    assert frame[1:] == [CODE64_3, STACK3, DATA3]


def test_64_bit_call_gate_needs_64_bit_code():
    m = Prot(64)
    m.gdt[FREE] = gate(CODE0, CALLEE, typ=0xC, dpl=3)
    m.gdt[FREE + 8] = 0
    cpu, v, e = m.run(f"""
        lea rax, [rip + ptr]
        call fword ptr [rax]
    ptr: .long 0
        .word {FREE}
    """)
    assert (v, e) == (13, CODE0)


def test_32_bit_call_gate_is_gp_in_ia32e_mode():
    m = Prot(64)
    m.gdt[FREE] = gate(CODE64, CALLEE, typ=0x4, dpl=3)
    m.gdt[FREE + 8] = 0
    cpu, v, e = m.run(f"""
        lea rax, [rip + ptr]
        call fword ptr [rax]
    ptr: .long 0
        .word {FREE}
    """)
    assert (v, e) == (13, FREE)
