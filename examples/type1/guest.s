# The guest both hypervisors run (examples/type1_hypervisor.py): a 64-bit
# program that writes a line to port 0xE9, asks CPUID for the vendor,
# writes that too, and halts.  Every OUT, the CPUID and the HLT exit.

    lea rsi, [rip + msg]
1:  lodsb
    test al, al
    jz 2f
    out 0xE9, al
    jmp 1b
2:  xor eax, eax
    cpuid
    mov [rip + vendor], ebx
    mov [rip + vendor + 4], edx
    mov [rip + vendor + 8], ecx
    lea rsi, [rip + vendor]
    mov ecx, 12
3:  lodsb
    out 0xE9, al
    loop 3b
    mov al, 10
    out 0xE9, al
    hlt

msg: .asciz "hello from the guest; my hypervisor is "
vendor: .space 12
