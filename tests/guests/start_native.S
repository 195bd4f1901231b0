/* Entry of a guest built as a Linux user program for the host CPU (the
 * native oracle): the kernel has already enabled x87 and SSE; run main and
 * exit with its return value's low byte. */
        .text
        .globl  _start
_start:
#ifdef __x86_64__
        and     $~15, %rsp
        call    main
        mov     %eax, %edi
        mov     $60, %eax
        syscall
#else
        and     $~15, %esp
        call    main
        mov     %eax, %ebx
        mov     $1, %eax
        int     $0x80
#endif
        hlt
