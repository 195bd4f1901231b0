/* Entry of the C guests built without -mgeneral-regs-only (x87 and SSE in
 * use): what an operating system does before it runs such code.  CR0.EM = 0
 * (x87 instructions execute), MP = 1 (WAIT honours TS), NE = 1 (x87 errors
 * as #MF); CR4.OSFXSR = 1 (SSE instructions and FXSAVE's XMM state) and
 * OSXMMEXCPT = 1 (SIMD floating-point errors as #XM); FNINIT (SDM Vol. 1
 * 8.1.5 and 13.1, Vol. 3A 9.2 "x87 FPU and SSE initialization"). */
        .section .text.start, "ax"
        .globl  _start
_start:
#ifdef __x86_64__
        mov     %cr0, %rax
        and     $~4, %rax
        or      $0x22, %rax
        mov     %rax, %cr0
        mov     %cr4, %rax
        or      $0x600, %rax
        mov     %rax, %cr4
#else
        mov     %cr0, %eax
        and     $~4, %eax
        or      $0x22, %eax
        mov     %eax, %cr0
#ifndef X87_ONLY        /* the x87-only guests run on CPU models without FXSR/SSE */
        mov     %cr4, %eax
        or      $0x600, %eax
        mov     %eax, %cr4
#endif
#endif
        fninit
        call    main
        .globl  guest_halt
guest_halt:
        hlt
        jmp     guest_halt
