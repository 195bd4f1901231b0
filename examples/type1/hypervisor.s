# A type-1 hypervisor in x86-64 assembly for the bare (modeled) machine of
# vtx.BareMetal.  It starts in 64-bit mode in VMX root operation's absence,
# enters VMX operation (CR4.VMXE, VMXON), builds a VMCS with VMWRITE (the
# controls adjusted to the capability MSRs, as a real hypervisor does),
# VMLAUNCHes a 64-bit guest at GUEST_ENTRY that shares its page tables, and
# handles the guest's exits at HOST_RIP: I/O (the guest's OUT reaches the
# machine's port), CPUID (answered with its own vendor string) and HLT (the
# guest is done: VMXOFF, and the machine halts).  It counts the exits per
# reason at COUNTS.  Encodings and MSR numbers: Intel SDM Vol. 3D, Appendices
# A and B.  See examples/type1_hypervisor.py, which runs it.

    .set VMXON_REGION, 0x10000
    .set VMCS_REGION, 0x11000
    .set COUNTS, 0x12000          # 128 counters of 8 bytes, one per basic exit reason
    .set FAILURE, 0x12400         # 0, or: 1 VMfail (then +8: VM-instruction error), 2 unexpected exit
    .set HOST_STACK, 0xA000
    .set GUEST_ENTRY, 0x20000
    .set GUEST_STACK, 0x30000

start:
    mov rax, cr4
    or eax, 0x2000                # CR4.VMXE
    mov cr4, rax
    mov ecx, 0x480                # IA32_VMX_BASIC: the revision identifier in bits 30:0
    rdmsr
    and eax, 0x7FFFFFFF
    mov [VMXON_REGION], eax
    mov [VMCS_REGION], eax
    vmxon [rip + vmxon_ptr]
    jbe vmfail                    # CF (VMfailInvalid) or ZF (VMfailValid)
    vmclear [rip + vmcs_ptr]
    jbe vmfail
    vmptrld [rip + vmcs_ptr]
    jbe vmfail

    # The controls we want, adjusted to what the processor allows.
    mov ecx, 0x48D                # IA32_VMX_TRUE_PINBASED_CTLS
    xor esi, esi
    mov edi, 0x4000               # PIN_BASED_CONTROLS
    call set_control
    mov ecx, 0x48E                # IA32_VMX_TRUE_PROCBASED_CTLS
    mov esi, (1 << 7) | (1 << 24) # HLT exiting, unconditional I/O exiting
    mov edi, 0x4002               # PRIMARY_PROC_BASED_CONTROLS
    call set_control
    mov ecx, 0x48F                # IA32_VMX_TRUE_EXIT_CTLS
    mov esi, (1 << 9)             # host address-space size (a 64-bit host)
    mov edi, 0x400C               # VM_EXIT_CONTROLS
    call set_control
    mov ecx, 0x490                # IA32_VMX_TRUE_ENTRY_CTLS
    mov esi, (1 << 9)             # IA-32e mode guest
    mov edi, 0x4012               # VM_ENTRY_CONTROLS
    call set_control

    # Constant fields: (encoding, value) pairs, ended by an encoding of -1.
    lea rbx, [rip + fields]
1:  mov rdx, [rbx]
    cmp rdx, -1
    je 2f
    vmwrite rdx, [rbx + 8]
    jbe vmfail
    add rbx, 16
    jmp 1b
2:
    # Host and guest share the control registers and the GDT.
    mov rax, cr0
    mov edx, 0x6C00               # HOST_CR0
    vmwrite rdx, rax
    mov edx, 0x6800               # GUEST_CR0
    vmwrite rdx, rax
    mov rax, cr3
    mov edx, 0x6C02               # HOST_CR3
    vmwrite rdx, rax
    mov edx, 0x6802               # GUEST_CR3
    vmwrite rdx, rax
    mov rax, cr4
    mov edx, 0x6C04               # HOST_CR4
    vmwrite rdx, rax
    mov edx, 0x6804               # GUEST_CR4
    vmwrite rdx, rax
    sgdt [rip + gdtr]
    mov rbx, [rip + gdtr + 2]     # the GDT's base
    mov edx, 0x6C0C               # HOST_GDTR_BASE
    vmwrite rdx, rbx
    mov edx, 0x6816               # GUEST_GDTR_BASE
    vmwrite rdx, rbx
    movzx eax, word ptr [rip + gdtr]
    mov edx, 0x4810               # GUEST_GDTR_LIMIT
    vmwrite rdx, rax
    # The TSS base, from its 16-byte descriptor at GDT + 0x20.
    movzx eax, word ptr [rbx + 0x22]
    movzx ecx, byte ptr [rbx + 0x24]
    shl ecx, 16
    or eax, ecx
    movzx ecx, byte ptr [rbx + 0x27]
    shl ecx, 24
    or eax, ecx
    mov ecx, [rbx + 0x28]
    shl rcx, 32
    or rax, rcx
    mov edx, 0x6C0A               # HOST_TR_BASE
    vmwrite rdx, rax
    mov edx, 0x6814               # GUEST_TR_BASE
    vmwrite rdx, rax
    lea rax, [rip + exit_handler]
    mov edx, 0x6C16               # HOST_RIP
    vmwrite rdx, rax

    vmlaunch
    # Here only if VMLAUNCH failed.
vmfail:
    mov qword ptr [FAILURE], 1
    mov edx, 0x4400               # VM_INSTRUCTION_ERROR
    vmread rax, rdx
    mov [FAILURE + 8], rax
    hlt

set_control:                      # ecx: capability MSR, esi: wanted bits, edi: field
    rdmsr                         # eax: bits that must be 1, edx: bits that may be 1
    or esi, eax
    and esi, edx
    vmwrite rdi, rsi
    ret

exit_handler:                     # RSP = HOST_STACK; the guest's registers are live
    push rax
    push rcx
    push rdx
    push rbx
    push rsi
    push rdi                      # [rsp]: rdi, +8 rsi, +16 rbx, +24 rdx, +32 rcx, +40 rax
    mov edx, 0x4402               # EXIT_REASON
    vmread rax, rdx
    movzx eax, ax
    inc qword ptr [COUNTS + rax * 8]
    cmp eax, 30
    je io_exit
    cmp eax, 10
    je cpuid_exit
    cmp eax, 12
    je hlt_exit
    mov qword ptr [FAILURE], 2
    mov [FAILURE + 8], rax
    hlt

io_exit:
    mov edx, 0x6400               # EXIT_QUALIFICATION: port 31:16, IN bit 3, size - 1 in 2:0
    vmread rbx, rdx
    test bl, 8
    jnz next                      # the guest does no IN; it would read what RAX held
    mov rdx, rbx
    shr edx, 16
    mov rax, [rsp + 40]           # the guest's AL
    out dx, al                    # on to the machine's port
    jmp next

cpuid_exit:                       # every leaf: highest leaf 0, vendor "VtxType1Hyp!"
    mov qword ptr [rsp + 40], 0
    mov dword ptr [rsp + 16], 0x54787456   # "VtxT" in EBX
    mov dword ptr [rsp + 20], 0
    mov dword ptr [rsp + 24], 0x31657079   # "ype1" in EDX
    mov dword ptr [rsp + 28], 0
    mov dword ptr [rsp + 32], 0x21707948   # "Hyp!" in ECX
    mov dword ptr [rsp + 36], 0

next:                             # step over the exiting instruction, resume
    mov edx, 0x681E               # GUEST_RIP
    vmread rax, rdx
    mov edx, 0x440C               # VM_EXIT_INSTRUCTION_LENGTH
    vmread rcx, rdx
    add rax, rcx
    mov edx, 0x681E
    vmwrite rdx, rax
    pop rdi
    pop rsi
    pop rbx
    pop rdx
    pop rcx
    pop rax
    vmresume
    jmp vmfail

hlt_exit:                         # the guest is done
    add rsp, 48
    vmxoff
    hlt

    .balign 8
vmxon_ptr: .quad VMXON_REGION
vmcs_ptr: .quad VMCS_REGION
gdtr: .word 0
    .quad 0
    .balign 8
fields:
    .quad 0x4004, 0               # EXCEPTION_BITMAP: the guest's exceptions stay its own
    .quad 0x2800, -1              # VMCS_LINK_POINTER
    .quad 0x0C00, 0x10            # HOST_ES_SELECTOR
    .quad 0x0C02, 0x18            # HOST_CS_SELECTOR (64-bit code)
    .quad 0x0C04, 0x10            # HOST_SS_SELECTOR
    .quad 0x0C06, 0x10            # HOST_DS_SELECTOR
    .quad 0x0C08, 0x10            # HOST_FS_SELECTOR
    .quad 0x0C0A, 0x10            # HOST_GS_SELECTOR
    .quad 0x0C0C, 0x20            # HOST_TR_SELECTOR
    .quad 0x6C14, HOST_STACK      # HOST_RSP
    .quad 0x0800, 0x10            # GUEST_ES_SELECTOR, then base, limit, access rights
    .quad 0x6806, 0
    .quad 0x4800, 0xFFFFFFFF
    .quad 0x4814, 0xC093
    .quad 0x0802, 0x18            # GUEST_CS: 64-bit code
    .quad 0x6808, 0
    .quad 0x4802, 0xFFFFFFFF
    .quad 0x4816, 0xA09B
    .quad 0x0804, 0x10            # GUEST_SS
    .quad 0x680A, 0
    .quad 0x4804, 0xFFFFFFFF
    .quad 0x4818, 0xC093
    .quad 0x0806, 0x10            # GUEST_DS
    .quad 0x680C, 0
    .quad 0x4806, 0xFFFFFFFF
    .quad 0x481A, 0xC093
    .quad 0x0808, 0x10            # GUEST_FS
    .quad 0x680E, 0
    .quad 0x4808, 0xFFFFFFFF
    .quad 0x481C, 0xC093
    .quad 0x080A, 0x10            # GUEST_GS
    .quad 0x6810, 0
    .quad 0x480A, 0xFFFFFFFF
    .quad 0x481E, 0xC093
    .quad 0x080C, 0               # GUEST_LDTR: unusable
    .quad 0x4820, 0x10000
    .quad 0x080E, 0x20            # GUEST_TR: the host's TSS (base set above)
    .quad 0x480E, 0x67
    .quad 0x4822, 0x8B
    .quad 0x4812, 0               # GUEST_IDTR_LIMIT (base 0)
    .quad 0x6820, 2               # GUEST_RFLAGS
    .quad 0x681C, GUEST_STACK     # GUEST_RSP
    .quad 0x681E, GUEST_ENTRY     # GUEST_RIP
    .quad -1
