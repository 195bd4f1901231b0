/* The entry of a vtx.cc guest: the linker script puts .text.start first, at
 * the load address.  Nothing is set up here: the hypervisor has loaded the
 * stack pointer and flat segments (vtx.VM.setup_*_mode).  main's return value
 * stays in EAX/RAX for the hypervisor to read at the HLT exit, at _halt.
 * Top-level assembly in a C file, so that a 16-bit build (gcc -m16) puts it
 * under the .code16gcc the compiler emits: the CALL then pushes 32 bits, as
 * the compiled RET pops. */
__asm__(".section .text.start, \"ax\"\n"
        ".globl _start\n"
        ".globl _halt\n"
        "_start:\n"
        "        call main\n"
        "_halt:\n"
        "        hlt\n"
        "        jmp _halt\n"
        ".previous\n");
