/* A small 64-bit kernel with one user program: the life of an OS on the
 * modeled CPU.  Entered in 64-bit mode at CPL 0 (the harness's flat
 * long-mode set-up), it builds its own GDT (kernel and user segments, a TSS
 * whose RSP0 is the kernel stack), IDT (#GP, #PF, INT 0x80 with DPL 3) and
 * 4-level page tables with 4 KiB pages (user pages U/S = 1; the page at
 * USER_HEAP not present), enables SYSCALL (EFER.SCE, STAR, LSTAR, FMASK),
 * and drops to ring 3 by IRETQ.  The user program:
 *   - prints "hi" with SYSCALL 1 (putc);
 *   - asks INT 0x80 to double 21;
 *   - stores the answer at USER_HEAP: a #PF (user, write, not present) that
 *     the kernel answers by mapping the page (demand paging), then re-runs;
 *   - executes CLI at CPL 3 with IOPL 0: #GP(0), which the kernel counts and
 *     skips;
 *   - exits with SYSCALL 3, carrying what it reads back from USER_HEAP.
 * The kernel then halts with: RAX = exit value, RBX = #PF error code,
 * RCX = CR2 of the fault, RDX = page faults taken, RSI = #GP count,
 * RDI = CS of the SYSCALL's caller frame check (user CS seen by INT 0x80),
 * R8 = RFLAGS the user had at SYSCALL (R11), R9 = user RSP at exit.
 * SDM Vol. 3A chapters 5 (protection), 6 (interrupts), 7 (tasks: the 64-bit
 * TSS) and Vol. 2 SYSCALL/SYSRET, IRET. */
        .intel_syntax noprefix
        .code64

        .set PML4,      0x20000
        .set PDPT,      0x21000
        .set PD,        0x22000
        .set PT,        0x23000
        .set KSTACK,    0x1F000         /* top of the kernel stack */
        .set USER_CODE, 0x4000          /* user pages: code, data/stack, heap */
        .set USER_STACK_TOP, 0x6000
        .set USER_HEAP, 0x6000

        .section .text.start, "ax"
        .globl  _start
_start:
        mov     rsp, KSTACK
        /* page tables: identity map 0-2 MiB with 4 KiB pages, supervisor,
         * except the user pages */
        mov     rdi, PML4
        mov     rcx, (0x4000 / 8)
        xor     eax, eax
        rep stosq
        mov     qword ptr [PML4], PDPT | 7
        mov     qword ptr [PDPT], PD | 7
        mov     qword ptr [PD], PT | 7
        xor     ecx, ecx
1:      mov     rax, rcx
        shl     rax, 12
        or      rax, 3                  /* P, R/W, supervisor */
        mov     [PT + rcx * 8], rax
        inc     ecx
        cmp     ecx, 512
        jne     1b
        mov     qword ptr [PT + (USER_CODE >> 12) * 8], USER_CODE | 5         /* P, U: read-only code */
        mov     qword ptr [PT + ((USER_CODE >> 12) + 1) * 8], (USER_CODE + 0x1000) | 7   /* stack */
        mov     qword ptr [PT + (USER_HEAP >> 12) * 8], 0                     /* not present */
        mov     rax, PML4
        mov     cr3, rax

        lgdt    [rip + gdt_desc]
        /* reload CS by far return, and the data segments */
        push    0x08
        lea     rax, [rip + 2f]
        push    rax
        rex.w retf
2:      mov     ax, 0x10
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        /* TSS descriptor base */
        lea     rax, [rip + tss]
        mov     [rip + gdt_tss + 2], ax
        shr     rax, 16
        mov     [rip + gdt_tss + 4], al
        mov     [rip + gdt_tss + 7], ah
        shr     rax, 16
        mov     [rip + gdt_tss + 8], eax
        mov     qword ptr [rip + tss + 4], KSTACK       /* RSP0 */
        mov     ax, 0x28
        ltr     ax

        /* IDT: gates for #GP (13), #PF (14) and INT 0x80 (DPL 3) */
        lea     rdi, [rip + idt]
        lea     rax, [rip + gp_handler]
        mov     ecx, 13
        mov     edx, 0x8E00             /* interrupt gate, DPL 0 */
        call    set_gate
        lea     rax, [rip + pf_handler]
        mov     ecx, 14
        call    set_gate
        lea     rax, [rip + int80_handler]
        mov     ecx, 0x80
        mov     edx, 0xEE00             /* interrupt gate, DPL 3 */
        call    set_gate
        lidt    [rip + idt_desc]

        /* SYSCALL: EFER.SCE, STAR (kernel CS 0x08; user base 0x10 -> SS 0x1B,
         * CS 0x23), LSTAR, FMASK (clear IF, TF, DF, AC) */
        mov     ecx, 0xC0000080
        rdmsr
        or      eax, 1
        wrmsr
        mov     ecx, 0xC0000081
        xor     eax, eax
        mov     edx, (0x10 << 16) | 0x08
        wrmsr
        mov     ecx, 0xC0000082
        lea     rax, [rip + syscall_entry]
        mov     rdx, rax
        shr     rdx, 32
        wrmsr
        mov     ecx, 0xC0000084
        mov     eax, 0x40700
        xor     edx, edx
        wrmsr

        /* to ring 3 */
        push    0x1B                    /* SS */
        push    USER_STACK_TOP          /* RSP */
        push    0x002                   /* RFLAGS: IOPL 0, IF 0 */
        push    0x23                    /* CS */
        push    USER_CODE               /* RIP */
        iretq

/* rdi = IDT, rcx = vector, rax = handler, edx = type/DPL word */
set_gate:
        shl     rcx, 4
        add     rcx, rdi
        mov     [rcx], ax               /* offset 15:0 */
        mov     word ptr [rcx + 2], 0x08
        mov     [rcx + 4], dx           /* IST 0, type, DPL, P */
        shr     rax, 16
        mov     [rcx + 6], ax
        shr     rax, 16
        mov     [rcx + 8], eax
        mov     dword ptr [rcx + 12], 0
        ret

syscall_entry:
        /* RCX = user RIP, R11 = user RFLAGS; the stack is still the user's */
        mov     [rip + user_rsp], rsp
        mov     rsp, KSTACK - 0x800
        mov     [rip + user_rflags], r11
        cmp     eax, 1
        je      sys_putc
        cmp     eax, 3
        je      sys_exit
        mov     rax, -1
        jmp     sys_ret
sys_putc:
        mov     eax, edi
        out     0xE9, al
        xor     eax, eax
sys_ret:
        mov     rsp, [rip + user_rsp]
        rex.w sysret
sys_exit:
        mov     al, 'E'
        out     0xE9, al
        mov     rax, rdi
        mov     rbx, [rip + pf_error]
        mov     rcx, [rip + pf_cr2]
        mov     rdx, [rip + pf_count]
        mov     rsi, [rip + gp_count]
        mov     rdi, [rip + int80_cs]
        mov     r8, [rip + user_rflags]
        mov     r9, [rip + user_rsp]
        .globl  kernel_halt
kernel_halt:
        hlt
        jmp     kernel_halt

int80_handler:
        /* frame: RIP, CS, RFLAGS, RSP, SS */
        mov     rax, [rsp + 8]
        mov     [rip + int80_cs], rax
        lea     rax, [rdi + rdi]
        iretq

pf_handler:
        push    rax
        mov     rax, [rsp + 8]          /* error code */
        mov     [rip + pf_error], rax
        mov     rax, cr2
        mov     [rip + pf_cr2], rax
        inc     qword ptr [rip + pf_count]
        and     rax, ~0xFFF
        or      rax, 7                  /* map it: P, R/W, U */
        mov     [PT + (USER_HEAP >> 12) * 8], rax
        mov     rax, cr2
        invlpg  [rax]
        pop     rax
        add     rsp, 8                  /* drop the error code */
        iretq

gp_handler:
        inc     qword ptr [rip + gp_count]
        mov     [rip + gp_error], rax
        add     qword ptr [rsp + 8], 1  /* skip the 1-byte CLI */
        add     rsp, 8
        iretq

        .p2align 4
gdt:    .quad   0
        .quad   0x00AF9A000000FFFF      /* 0x08 kernel code, 64-bit */
        .quad   0x00CF92000000FFFF      /* 0x10 kernel data */
        .quad   0x00CFF2000000FFFF      /* 0x18 user data, DPL 3 */
        .quad   0x00AFFA000000FFFF      /* 0x20 user code, 64-bit, DPL 3 */
gdt_tss:
        .quad   0x0000890000000067      /* 0x28 available 64-bit TSS, limit 0x67 */
        .quad   0
gdt_end:
gdt_desc:
        .word   gdt_end - gdt - 1
        .quad   gdt
idt_desc:
        .word   256 * 16 - 1
        .quad   idt
user_rsp:    .quad 0
user_rflags: .quad 0
pf_error:    .quad 0
pf_cr2:      .quad 0
pf_count:    .quad 0
gp_count:    .quad 0
gp_error:    .quad 0
int80_cs:    .quad 0
        .p2align 4
tss:    .fill   0x68, 1, 0

        .p2align 12
idt:    .fill   256 * 16, 1, 0

/* The user program, placed at USER_CODE by the .org below. */
        .org    USER_CODE - 0x1000
user:
        mov     edi, 'h'
        mov     eax, 1
        syscall
        mov     edi, 'i'
        mov     eax, 1
        syscall
        mov     edi, 21
        mov     eax, 2
        int     0x80                    /* RAX = 42 */
        mov     [USER_HEAP], rax        /* #PF, mapped on demand, re-run */
        cli                             /* #GP(0): CPL 3 > IOPL 0 */
        mov     rdi, [USER_HEAP]
        mov     eax, 3
        syscall
        ud2
