"""The seed corpus of the streams campaign: small guest programs that do
something meaningful (REP string instructions, INT n and IRET through the
IVT/IDT, stack work, MOV CR, LGDT/LIDT, far jumps, self-modifying stores,
loops, exiting instructions), kept as machine code so that fuzzing never
needs GNU as.  The mutators in streams.py start from these bytes.

SOURCES holds the assembly each entry came from ({r} is the register prefix
of the mode, "", "e" or "r"; {e} is "e" in 16- and 32-bit code and "r" in
64-bit code); the bytes were assembled at org 0x1000.  tests/test_fuzz.py
re-assembles them (when GNU as is installed) and fails if they drift.
"""

ORG = 0x1000

#: (name, modes it is written for as bit widths, Intel-syntax source)
SOURCES = [
 ('rep_movs', (16, 32, 64), """
    cld
    mov {r}cx, 0x40
    mov {r}si, 0x2000
    mov {r}di, 0x3000
    rep movsb
    rep movsw
    rep movsd
    hlt"""),
 ('rep_stos_backwards', (16, 32, 64), """
    std
    mov eax, 0x41424344
    mov {r}cx, 0x100
    mov {r}di, 0x4000
    rep stosd
    rep stosb
    cld
    hlt"""),
 ('rep_cmps_scas_lods', (16, 32, 64), """
    mov {r}cx, 0x20
    mov {r}si, 0x1000
    mov {r}di, 0x1010
    repe cmpsb
    repne scasb
    rep lodsb
    repne cmpsw
    hlt"""),
 ('rep_ins_outs', (16, 32, 64), """
    mov dx, 0x80
    mov {r}cx, 4
    mov {r}di, 0x3000
    rep insb
    mov {r}si, 0x3000
    rep outsw
    outsb
    hlt"""),
 ('rep_stos_over_itself', (16, 32, 64), """
    call 1f
1:  pop {r}di
    cld
    mov al, 0x90
    mov {r}cx, 64
    rep stosb
    hlt"""),
 ('counted_loop', (16, 32, 64), """
    mov {r}cx, 50
1:  add {r}ax, {r}cx
    dec {r}bx
    loop 1b
    jecxz 2f
2:  hlt"""),
 ('endless_loop', (16, 32, 64), """
1:  inc {r}ax
    jmp 1b"""),
 ('tight_self_jump', (16, 32, 64), """
    jmp ."""),
 ('push_pop_call', (16, 32, 64), """
    push {r}ax
    push {r}bx
    pop {r}cx
    pop {r}dx
    pushf
    popf
    call 1f
1:  pop {r}ax
    push 0x1234
    ret"""),
 ('pusha_enter_leave', (16, 32), """
    pusha
    enter 16, 1
    leave
    popa
    enter 0x100, 3
    leave
    hlt"""),
 ('enter_leave_64', (64,), """
    enter 16, 1
    leave
    enter 0x100, 5
    leave
    hlt"""),
 ('stack_exhaustion', (16, 32, 64), """
1:  push {r}ax
    jmp 1b"""),
 ('endless_recursion', (16, 32, 64), """
1:  call 1b"""),
 ('mov_cr', (16, 32, 64), """
    mov {e}ax, cr0
    mov cr0, {e}ax
    mov {e}bx, cr4
    mov cr4, {e}bx
    mov {e}dx, cr3
    mov cr3, {e}dx
    mov {e}ax, cr2
    hlt"""),
 ('cr0_toggle_pe_pg', (16, 32, 64), """
    mov {e}ax, cr0
    xor eax, 0x80000001
    mov cr0, {e}ax
    nop
    hlt"""),
 ('cr8_and_efer', (64,), """
    mov rax, cr8
    mov cr8, rax
    mov ecx, 0xc0000080
    rdmsr
    wrmsr
    hlt"""),
 ('descriptor_tables', (16, 32, 64), """
    mov {r}bx, 0x5000
    sgdt [{r}bx]
    sidt [{r}bx+16]
    lgdt [{r}bx]
    lidt [{r}bx+16]
    int 3
    hlt"""),
 ('real_to_protected', (16,), """
    cli
    lgdt [gdtd]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    ljmp 0x08, offset pm
pm: .code32
    mov ax, 0x10
    mov ds, ax
    mov ss, ax
    mov esp, 0x9000
    push eax
    hlt
gdtd: .word 23
    .long gdt
gdt: .quad 0
    .quad 0x00CF9B000000FFFF
    .quad 0x00CF93000000FFFF"""),
 ('ivt_int_iret', (16,), """
    mov word ptr [0x200], offset handler
    mov word ptr [0x202], cs
    int 0x80
    int 0x80
    hlt
handler:
    inc ax
    iret"""),
 ('ivt_fault_loop', (16,), """
    mov word ptr [0x0], offset handler
    mov word ptr [0x2], cs
    xor cx, cx
    div cx
    hlt
handler:
    div cx
    iret"""),
 ('idt32_int_iret', (32,), """
    mov eax, offset handler
    mov edi, 0x5000 + 8 * 0x80
    mov word ptr [edi], ax
    mov word ptr [edi+2], 0x08
    mov word ptr [edi+4], 0x8E00
    shr eax, 16
    mov word ptr [edi+6], ax
    lidt [idtd]
    int 0x80
    int 0x80
    hlt
handler:
    inc ebx
    iretd
idtd: .word 0x7ff
    .long 0x5000"""),
 ('idt32_fault_loop', (32,), """
    mov ecx, 32
    mov edi, 0x5000
1:  mov eax, offset handler
    mov word ptr [edi], ax
    mov word ptr [edi+2], 0x08
    mov word ptr [edi+4], 0x8E00
    shr eax, 16
    mov word ptr [edi+6], ax
    add edi, 8
    dec ecx
    jnz 1b
    lidt [idtd]
    ud2
handler:
    ud2
idtd: .word 0xff
    .long 0x5000"""),
 ('idt64_int_iret', (64,), """
    lea rax, [rip + handler]
    mov edi, 0x5000 + 16 * 0x80
    mov word ptr [rdi], ax
    mov word ptr [rdi+2], 0x18
    mov word ptr [rdi+4], 0x8E00
    shr rax, 16
    mov word ptr [rdi+6], ax
    shr rax, 16
    mov dword ptr [rdi+8], eax
    mov dword ptr [rdi+12], 0
    lidt [rip + idtd]
    int 0x80
    int3
    hlt
handler:
    inc rbx
    iretq
idtd: .word 0xfff
    .quad 0x5000"""),
 ('idt64_fault_loop', (64,), """
    lea rax, [rip + handler]
    mov edi, 0x5000
    mov ecx, 32
1:  mov word ptr [rdi], ax
    mov word ptr [rdi+2], 0x18
    mov word ptr [rdi+4], 0x8E00
    mov rdx, rax
    shr rdx, 16
    mov word ptr [rdi+6], dx
    shr rdx, 16
    mov dword ptr [rdi+8], edx
    mov dword ptr [rdi+12], 0
    add edi, 16
    dec ecx
    jnz 1b
    lidt [rip + idtd]
    xor ecx, ecx
    div ecx
handler:
    div ecx
idtd: .word 0x1ff
    .quad 0x5000"""),
 ('faults', (16, 32, 64), """
    int3
    int 1
    ud2
    xor {r}cx, {r}cx
    div {r}cx
    mov {r}ax, [{r}di - 1]
    hlt"""),
 ('into_bound', (16, 32), """
    mov al, 0x7f
    add al, 1
    into
    bound {r}ax, [{r}bx]
    hlt"""),
 ('self_modifying_store', (16, 32, 64), """
    call 1f
1:  pop {r}bx
    mov byte ptr [{r}bx + 9], 0xf4
    nop
    nop
    nop
    nop
    inc {r}ax
    jmp 1b"""),
 ('exiting_instructions', (16, 32, 64), """
    cpuid
    rdtsc
    mov ecx, 0x10
    rdmsr
    wrmsr
    in al, 0x60
    out 0x80, al
    in eax, dx
    vmcall
    hlt"""),
 ('interrupt_shadow', (16, 32, 64), """
    mov ax, ss
    mov ss, ax
    sti
    nop
    cli
    pushf
    pop {r}ax
    push {r}ax
    popf
    hlt"""),
 ('single_step', (16, 32, 64), """
    pushf
    mov {r}bp, {r}sp
    or word ptr [{r}bp], 0x100
    popf
    nop
    inc {r}ax
    nop
    hlt"""),
 ('protected_far_jumps', (32,), """
    ljmp 0x08, offset 1f
1:  push 0x08
    push offset 2f
    retf
2:  pushfd
    push 0x08
    push offset 3f
    iretd
3:  mov ax, 0x20
    mov ds, ax
    hlt"""),
 ('long_far_return', (64,), """
    push 0x18
    lea rax, [rip + 1f]
    push rax
    retfq
1:  mov rax, rsp
    push 0x10
    push rax
    pushfq
    push 0x18
    lea rax, [rip + 2f]
    push rax
    iretq
2:  syscall
    hlt"""),
 ('arith_mix', (16, 32, 64), """
    mov {r}ax, -7
    mov {r}cx, 3
    imul {r}cx
    idiv {r}cx
    shld {r}ax, {r}cx, 5
    bsf {r}dx, {r}ax
    bt {r}ax, 3
    xchg {r}ax, {r}dx
    cmpxchg {r}bx, {r}cx
    xadd {r}bx, {r}cx
    sete al
    cmovne {r}ax, {r}cx
    hlt"""),
 ('memory_at_the_edge', (16, 32, 64), """
    mov {r}bx, -1
    mov al, [{r}bx]
    mov {r}sp, 1
    push {r}ax
    hlt"""),
 ('segment_loads', (16, 32, 64), """
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ax, 0x28
    mov fs, ax
    mov ax, 3
    mov gs, ax
    mov ax, 0x18
    mov ss, ax
    hlt"""),
 ('address_size_strings', (16, 32, 64), """
    mov {e}cx, 0x10000
    .byte 0x67, 0xf3, 0xaa      # rep stosb with the other address size
    .byte 0x66, 0xf3, 0xa5      # rep movs with the other operand size
    .byte 0xf3, 0x2e, 0xa4      # rep cs movsb
    hlt"""),
 ('vmx_instructions', (16, 32, 64), """
    vmcall
    .byte 0x0f, 0x01, 0xc4      # vmxoff
    .byte 0x0f, 0x01, 0xc2      # vmlaunch
    .byte 0x0f, 0x01, 0xc3      # vmresume
    hlt"""),
 ('rep_huge_count', (16, 32, 64), """
    mov {e}cx, -1
    mov {r}di, 0x3000
    rep stosb
    rep lodsw
    hlt"""),
 ('halt_with_interrupts', (16, 32, 64), """
    sti
    hlt
    cli
    hlt"""),
]

#: (name, bits) -> the assembled bytes as hex
HEX = {
    ('rep_movs', 16): "fcb94000be0020bf0030f3a4f3a566f3a5f4",
    ('rep_movs', 32): "fcb940000000be00200000bf00300000f3a466f3a5f3a5f4",
    ('rep_movs', 64): "fc48c7c14000000048c7c60020000048c7c700300000f3a466f3a5f3a5f4",
    ('rep_stos_backwards', 16): "fd66b844434241b90001bf004066f3abf3aafcf4",
    ('rep_stos_backwards', 32): "fdb844434241b900010000bf00400000f3abf3aafcf4",
    ('rep_stos_backwards', 64): "fdb84443424148c7c10001000048c7c700400000f3abf3aafcf4",
    ('rep_cmps_scas_lods', 16): "b92000be0010bf1010f3a6f2aef3acf2a7f4",
    ('rep_cmps_scas_lods', 32): "b920000000be00100000bf10100000f3a6f2aef3ac66f2a7f4",
    ('rep_cmps_scas_lods', 64): "48c7c12000000048c7c60010000048c7c710100000f3a6f2aef3ac66f2a7f4",
    ('rep_ins_outs', 16): "ba8000b90400bf0030f36cbe0030f36f6ef4",
    ('rep_ins_outs', 32): "66ba8000b904000000bf00300000f36cbe0030000066f36f6ef4",
    ('rep_ins_outs', 64): "66ba800048c7c10400000048c7c700300000f36c48c7c60030000066f36f6ef4",
    ('rep_stos_over_itself', 16): "e800005ffcb090b94000f3aaf4",
    ('rep_stos_over_itself', 32): "e8000000005ffcb090b940000000f3aaf4",
    ('rep_stos_over_itself', 64): "e8000000005ffcb09048c7c140000000f3aaf4",
    ('counted_loop', 16): "b9320001c84be2fb67e300f4",
    ('counted_loop', 32): "b93200000001c84be2fbe300f4",
    ('counted_loop', 64): "48c7c1320000004801c848ffcbe2f867e300f4",
    ('endless_loop', 16): "40ebfd",
    ('endless_loop', 32): "40ebfd",
    ('endless_loop', 64): "48ffc0ebfb",
    ('tight_self_jump', 16): "ebfe",
    ('tight_self_jump', 32): "ebfe",
    ('tight_self_jump', 64): "ebfe",
    ('push_pop_call', 16): "5053595a9c9de8000058683412c3",
    ('push_pop_call', 32): "5053595a9c9de800000000586834120000c3",
    ('push_pop_call', 64): "5053595a9c9de800000000586834120000c3",
    ('pusha_enter_leave', 16): "60c8100001c961c8000103c9f4",
    ('pusha_enter_leave', 32): "60c8100001c961c8000103c9f4",
    ('enter_leave_64', 64): "c8100001c9c8000105c9f4",
    ('stack_exhaustion', 16): "50ebfd",
    ('stack_exhaustion', 32): "50ebfd",
    ('stack_exhaustion', 64): "50ebfd",
    ('endless_recursion', 16): "e8fdff",
    ('endless_recursion', 32): "e8fbffffff",
    ('endless_recursion', 64): "e8fbffffff",
    ('mov_cr', 16): "0f20c00f22c00f20e30f22e30f20da0f22da0f20d0f4",
    ('mov_cr', 32): "0f20c00f22c00f20e30f22e30f20da0f22da0f20d0f4",
    ('mov_cr', 64): "0f20c00f22c00f20e30f22e30f20da0f22da0f20d0f4",
    ('cr0_toggle_pe_pg', 16): "0f20c06635010000800f22c090f4",
    ('cr0_toggle_pe_pg', 32): "0f20c035010000800f22c090f4",
    ('cr0_toggle_pe_pg', 64): "0f20c035010000800f22c090f4",
    ('cr8_and_efer', 64): "440f20c0440f22c0b9800000c00f320f30f4",
    ('descriptor_tables', 16): "bb00500f01070f014f100f01170f015f10ccf4",
    ('descriptor_tables', 32): "bb005000000f01030f014b100f01130f015b10ccf4",
    ('descriptor_tables', 64): "48c7c3005000000f01030f014b100f01130f015b10ccf4",
    ('real_to_protected', 16): "fa0f011622100f20c00c010f22c0ea1310080066b810008ed88ed0bc0090000050f41700281000000000000000000000ffff0000009bcf00ffff00000093cf00",
    ('ivt_int_iret', 16): "c70600020f108c0e0202cd80cd80f440cf",
    ('ivt_fault_loop', 16): "c70600000f108c0e020031c9f7f1f4f7f1cf",
    ('idt32_int_iret', 32): "b82c100000bf0054000066890766c74702080066c74704008ec1e810668947060f011d2e100000cd80cd80f443cfff0700500000",
    ('idt32_fault_loop', 32): "b920000000bf00500000b83410000066890766c74702080066c74704008ec1e8106689470683c7084975df0f011d361000000f0b0f0bff0000500000",
    ('idt64_int_iret', 64): "488d0535000000bf0058000066890766c74702180066c74704008e48c1e8106689470648c1e810894708c7470c000000000f011d09000000cd80ccf448ffc348cfff0f0050000000000000",
    ('idt64_fault_loop', 64): "488d0544000000bf00500000b92000000066890766c74702180066c74704008e4889c248c1ea106689570648c1ea10895708c7470c0000000083c710ffc975d10f011d0600000031c9f7f1f7f1ff010050000000000000",
    ('faults', 16): "cccd010f0b31c9f7f18b45fff4",
    ('faults', 32): "cccd010f0b31c9f7f18b47fff4",
    ('faults', 64): "cccd010f0b4831c948f7f1488b47fff4",
    ('into_bound', 16): "b07f0401ce6207f4",
    ('into_bound', 32): "b07f0401ce6203f4",
    ('self_modifying_store', 16): "e800005bc64709f49090909040ebf4",
    ('self_modifying_store', 32): "e8000000005bc64309f49090909040ebf4",
    ('self_modifying_store', 64): "e8000000005bc64309f49090909048ffc0ebf2",
    ('exiting_instructions', 16): "0fa20f3166b9100000000f320f30e460e68066ed0f01c1f4",
    ('exiting_instructions', 32): "0fa20f31b9100000000f320f30e460e680ed0f01c1f4",
    ('exiting_instructions', 64): "0fa20f31b9100000000f320f30e460e680ed0f01c1f4",
    ('interrupt_shadow', 16): "8cd08ed0fb90fa9c58509df4",
    ('interrupt_shadow', 32): "668cd08ed0fb90fa9c58509df4",
    ('interrupt_shadow', 64): "668cd08ed0fb90fa9c58509df4",
    ('single_step', 16): "9c89e5814e0000019d904090f4",
    ('single_step', 32): "9c89e566814d0000019d904090f4",
    ('single_step', 64): "9c4889e566814d0000019d9048ffc090f4",
    ('protected_far_jumps', 32): "ea0710000008006a08680f100000cb9c6a086818100000cf66b820008ed8f4",
    ('long_far_return', 64): "6a18488d05030000005048cb4889e06a10509c6a18488d05030000005048cf0f05f4",
    ('arith_mix', 16): "b8f9ffb90300f7e9f7f90fa4c8050fbcd00fbae003920fb1cb0fc1cb0f94c00f45c1f4",
    ('arith_mix', 32): "b8f9ffffffb903000000f7e9f7f90fa4c8050fbcd00fbae003920fb1cb0fc1cb0f94c00f45c1f4",
    ('arith_mix', 64): "48c7c0f9ffffff48c7c10300000048f7e948f7f9480fa4c805480fbcd0480fbae0034892480fb1cb480fc1cb0f94c0480f45c1f4",
    ('memory_at_the_edge', 16): "bbffff8a07bc010050f4",
    ('memory_at_the_edge', 32): "bbffffffff8a03bc0100000050f4",
    ('memory_at_the_edge', 64): "48c7c3ffffffff8a0348c7c40100000050f4",
    ('segment_loads', 16): "b810008ed88ec0b828008ee0b803008ee8b818008ed0f4",
    ('segment_loads', 32): "66b810008ed88ec066b828008ee066b803008ee866b818008ed0f4",
    ('segment_loads', 64): "66b810008ed88ec066b828008ee066b803008ee866b818008ed0f4",
    ('address_size_strings', 16): "66b90000010067f3aa66f3a5f32ea4f4",
    ('address_size_strings', 32): "b90000010067f3aa66f3a5f32ea4f4",
    ('address_size_strings', 64): "48c7c10000010067f3aa66f3a5f32ea4f4",
    ('vmx_instructions', 16): "0f01c10f01c40f01c20f01c3f4",
    ('vmx_instructions', 32): "0f01c10f01c40f01c20f01c3f4",
    ('vmx_instructions', 64): "0f01c10f01c40f01c20f01c3f4",
    ('rep_huge_count', 16): "66b9ffffffffbf0030f3aaf3adf4",
    ('rep_huge_count', 32): "b9ffffffffbf00300000f3aa66f3adf4",
    ('rep_huge_count', 64): "48c7c1ffffffff48c7c700300000f3aa66f3adf4",
    ('halt_with_interrupts', 16): "fbf4faf4",
    ('halt_with_interrupts', 32): "fbf4faf4",
    ('halt_with_interrupts', 64): "fbf4faf4",
}


_PREFIX = {16: "", 32: "e", 64: "r"}
_WIDE = {16: "e", 32: "e", 64: "r"}


def source_for(name, bits):
    """The assembly of entry name for a bits-wide mode, placeholders filled in."""
    for n, widths, src in SOURCES:
        if n == name and bits in widths:
            return src.replace("{r}", _PREFIX[bits]).replace("{e}", _WIDE[bits])
    raise KeyError((name, bits))


#: bits -> [(name, bytes)], built once at import (the table is small).
BY_BITS = {bits: [(n, bytes.fromhex(h)) for (n, b), h in HEX.items() if b == bits] for bits in (16, 32, 64)}
