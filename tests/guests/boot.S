/* A boot sequence as firmware and a kernel perform it, all in guest code:
 * real mode -> protected mode (far JMP) -> 32-bit PAE paging -> IA-32e
 * compatibility mode -> 64-bit mode (far JMP) -> back to a 32-bit
 * compatibility-mode segment by far RET, then HLT.  Each stage writes one
 * character to the debug port 0xE9 and leaves a value the test checks:
 *   R  real mode             P  protected mode, flat segments
 *   A  PAE paging on, and an alias mapping (linear 1 GiB -> physical 0) reads
 *      the same bytes as the identity mapping (X if not)
 *   C  IA-32e mode, compatibility mode      L  64-bit mode
 *   c  compatibility mode again, after RETF from 64-bit mode
 * Loaded at 0x1000 (tests/guests/link.ld), entered in real mode at 0000:1000.
 * SDM Vol. 3A 10.9 (ed. 080 "Mode Switching") and 10.8.5 "Initializing IA-32e Mode". */
        .intel_syntax noprefix

        .set PAE_PDPT, 0x10000
        .set PAE_PD,   0x11000
        .set PML4,     0x12000
        .set LM_PDPT,  0x13000
        .set LM_PD,    0x14000
        .set STACK,    0x9000
        .set RESULT,   0x8000      /* the 64-bit stage's result */

        .macro putc ch
        mov     al, \ch
        out     0xE9, al
        .endm

        .section .text.start, "ax"
        .code16
        .globl  _start
_start:
        cli
        xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, STACK
        putc    'R'
        lgdt    [gdt_desc]
        mov     eax, cr0
        or      eax, 1                  /* CR0.PE */
        mov     cr0, eax
        ljmp    0x08, offset pm32

        .code32
pm32:
        mov     ax, 0x10
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     esp, STACK
        putc    'P'

        /* PAE paging: PDPT entries 0 and 1 both point at one page directory
         * whose entry 0 maps a 2 MiB page at physical 0. */
        mov     edi, PAE_PDPT
        mov     ecx, (0x2000 / 4)
        xor     eax, eax
        rep stosd                       /* clear the PDPT page and the PD */
        mov     dword ptr [PAE_PDPT], PAE_PD | 1
        mov     dword ptr [PAE_PDPT + 8], PAE_PD | 1
        mov     dword ptr [PAE_PD], 0x83          /* P, R/W, PS */
        mov     eax, cr4
        or      eax, 1 << 5             /* CR4.PAE */
        mov     cr4, eax
        mov     eax, PAE_PDPT
        mov     cr3, eax
        mov     eax, cr0
        or      eax, 1 << 31            /* CR0.PG: the PDPTEs load now */
        mov     cr0, eax
        mov     eax, [marker]
        cmp     eax, [marker + 0x40000000]
        jne     1f
        putc    'A'
        jmp     2f
1:      putc    'X'
2:
        /* IA-32e mode: paging off, 4-level tables, EFER.LME, paging on. */
        mov     eax, cr0
        and     eax, ~(1 << 31)
        mov     cr0, eax
        mov     edi, PML4
        mov     ecx, (0x3000 / 4)
        xor     eax, eax
        rep stosd
        mov     dword ptr [PML4], LM_PDPT | 3
        mov     dword ptr [LM_PDPT], LM_PD | 3
        mov     dword ptr [LM_PD], 0x83
        mov     eax, PML4
        mov     cr3, eax
        mov     ecx, 0xC0000080         /* IA32_EFER */
        rdmsr
        or      eax, 1 << 8             /* LME */
        wrmsr
        mov     eax, cr0
        or      eax, 1 << 31
        mov     cr0, eax                /* EFER.LMA = 1: compatibility mode */
        putc    'C'
        ljmp    0x18, offset lm64

        .code64
lm64:
        putc    'L'
        mov     rax, 0x0123456789ABCDEF
        rol     rax, 8
        mov     rcx, rsp                /* 64-bit stack pointer in use */
        mov     [RESULT], rax
        /* far return to a 32-bit (compatibility-mode) code segment */
        push    0x08
        lea     rax, [rip + back32]
        push    rax
        rex.w retf

        .code32
        .globl  back32
back32:
        putc    'c'
        mov     eax, [RESULT + 4]
        hlt
        jmp     back32

        .p2align 3
marker: .long   0x5EC0DE00
gdt:    .quad   0
        .quad   0x00CF9A000000FFFF      /* 0x08: 32-bit code, base 0, 4 GiB */
        .quad   0x00CF92000000FFFF      /* 0x10: data */
        .quad   0x00AF9A000000FFFF      /* 0x18: 64-bit code (L = 1) */
gdt_end:
gdt_desc:
        .word   gdt_end - gdt - 1
        .long   gdt
