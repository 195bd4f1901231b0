"""INT3, INT n, INTO and IRET; delivery through the guest's IVT and IDT."""

import vtx
from conftest import guest, needs_as

pytestmark = needs_as

F = vtx.VmcsField


def clear_bitmap_bit(vm, vector):
    v = vm.vcpu
    v.vmwrite(F.EXCEPTION_BITMAP, v.vmread(F.EXCEPTION_BITMAP) & ~(1 << vector))


def test_real_mode_int_n_through_the_ivt_and_iret():
    vm = guest("""
        mov word ptr [0x21 * 4], offset handler
        mov word ptr [0x21 * 4 + 2], 0
        mov sp, 0x8000
        stc
        int 0x21
        hlt
    handler:
        mov bx, 0x1234
        mov ax, [esp]               # the return IP the CPU pushed
        iret
    """, bits=16)
    r = vm.run()
    v = vm.vcpu
    assert r.exits == {vtx.ExitReason.HLT: 1}      # INT n does not exit
    assert v.bx == 0x1234
    assert v.ax == 0x1000 + 18                      # the instruction after INT 0x21
    assert v.sp == 0x8000 and v.rflags & 1          # IRET restored SP and CF
    assert v.rip == v.ax


def test_int3_is_a_software_exception_exit_with_a_length():
    vm = guest("int3\nmov eax, 7\nhlt")
    seen = []

    @vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)
    def bp(vcpu, exit):
        seen.append((exit.vector, exit.type, exit.instruction_length, exit.error_code, exit.exception))
        return vtx.RESUME

    r = vm.run()
    assert seen == [(3, 6, 1, None, "#BP")]
    assert vm.vcpu.eax == 7 and r.stop == "stop"


def test_into_only_with_overflow():
    vm = guest("""
        mov al, 0x7f
        into                # OF = 0: nothing
        add al, 1           # OF = 1
        into
        hlt
    """)
    vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)(lambda v, e: vtx.STOP)
    r = vm.run()
    assert r.exit.vector == 4 and r.exit.type == 6 and r.exit.instruction_length == 1
    assert r.exit.guest_rip == 0x1000 + 2 + 1 + 2


def test_long_mode_int_through_an_idt_gate_and_iretq():
    # A 64-bit interrupt gate (type 0xE) for vector 0x80 to `handler`, CS 0x18.
    vm = guest("""
        lea rax, [rip + handler]
        mov rdi, 0x6000             # the IDT
        mov word ptr [rdi + 0x80 * 16], ax
        mov word ptr [rdi + 0x80 * 16 + 2], 0x18
        mov word ptr [rdi + 0x80 * 16 + 4], 0x8e00
        shr rax, 16
        mov word ptr [rdi + 0x80 * 16 + 6], ax
        shr rax, 16
        mov dword ptr [rdi + 0x80 * 16 + 8], eax
        mov dword ptr [rdi + 0x80 * 16 + 12], 0
        lidt [rip + idtr]
        mov rbp, rsp
        sti
        int 0x80
        hlt
    handler:
        mov rbx, 42
        pushfq
        pop rcx                     # IF is clear inside an interrupt gate
        iretq
    idtr: .word 0xfff
          .quad 0x6000
    """, bits=64)
    r = vm.run()
    v = vm.vcpu
    assert r.exits == {vtx.ExitReason.HLT: 1}
    assert v.rbx == 42
    assert not (v.rcx & (1 << 9))
    assert v.rflags & (1 << 9)                      # IRETQ restored IF
    assert v.rsp == v.rbp
    assert v.idtr == vtx.DescriptorTable(0x6000, 0xFFF)


def test_protected_mode_fault_delivered_through_the_idt():
    vm = guest("""
        mov eax, offset handler
        mov edi, 0x6000
        mov word ptr [edi], ax          # vector 0: 32-bit trap gate (type 0xF)
        mov word ptr [edi + 2], 0x08
        mov word ptr [edi + 4], 0x8f00
        shr eax, 16
        mov word ptr [edi + 6], ax
        lidt [idtr]
        mov ecx, 0
        mov eax, 10
        div ecx                          # #DE, two bytes long
        mov esi, 99
        hlt
    handler:
        add dword ptr [esp], 2           # return past the DIV
        mov edx, 0x77
        iretd
    idtr: .word 0x7ff
          .long 0x6000
    """)
    clear_bitmap_bit(vm, 0)
    r = vm.run()
    v = vm.vcpu
    assert r.exits == {vtx.ExitReason.HLT: 1}
    assert (v.edx, v.esi) == (0x77, 99)


def test_int_n_through_a_gate_with_low_dpl_from_ring_3_is_gp():
    # Ring-3 code cannot use a DPL-0 gate: #GP with the IDT error code
    # (vector*8 + 2, EXT clear for a software interrupt).
    vm = guest("hlt", bits=32)
    v = vm.vcpu
    vm.write(0x6000 + 0x40 * 8, (0x0000_8E00_0008_0000).to_bytes(8, "little"))
    v.idtr = vtx.DescriptorTable(0x6000, 0x7FF)
    vm.write(0x1000, vtx.asm("int 0x40", bits=32))
    v.cs = vtx.Segment(0x1B, 0, 0xFFFFFFFF, 0xC0FB)
    v.ss = vtx.Segment(0x23, 0, 0xFFFFFFFF, 0xC0F3)
    v.ds = v.es = v.fs = v.gs = vtx.Segment(0x23, 0, 0xFFFFFFFF, 0xC0F3)
    vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)(lambda vcpu, e: vtx.STOP)
    r = vm.run()
    assert (r.exit.vector, r.exit.error_code) == (13, 0x40 * 8 + 2)
