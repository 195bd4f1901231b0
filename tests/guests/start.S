/* Entry of every C guest: the linker script puts .text.start first, at the
 * load address.  Nothing is set up: the hypervisor has loaded the stack
 * pointer and flat segments.  main's return value stays in EAX/RAX for the
 * test to read at the HLT exit. */
        .section .text.start, "ax"
        .globl  _start
_start:
        call    main
1:      hlt
        jmp     1b
