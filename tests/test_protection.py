"""Privilege and protection (SDM Vol. 1 19.5 I/O protection, Vol. 3A 2.5
CR4.UMIP, 5.x privilege checks, 6.12 interrupt delivery, 20.2 virtual-8086
mode; Vol. 2 for each instruction): POPF and IRET at CPL > 0 silently
keeping IF and IOPL, CLI/STI by IOPL, the I/O permission bitmap, the
descriptor-table reads with and without UMIP, SYSCALL/SYSRET,
SYSENTER/SYSEXIT, SWAPGS, the FS/GS base MSRs, LDS and friends, LAR/LSL,
ARPL, virtual-8086 mode entered by IRET and left by an interrupt, IST and
the 64-bit stack alignment of interrupt delivery."""

import pytest

import vtx
from prot_harness import (CODE0, CODE3, CODE64, CODE64_3, CONF0, DATA0, DATA3, FREE, IST1, STACK0, STACK3,
                          TSS_SEL, Prot, seg, to_ring3)

IF = 1 << 9
IOPL3 = 3 << 12
ZF = 1 << 6


# --- the Popek-Goldberg point: POPF and IRET are not privileged, they just ignore ---

def test_popf_at_cpl3_silently_keeps_if_and_iopl():
    """At CPL 3 with IOPL 0, POPF of a value with IF = 0 and IOPL = 3
    changes neither and does not fault: a deprivileged kernel cannot be
    trapped here, which is why x86 is not classically virtualizable."""
    m = Prot()
    cpu, v, e = m.run("sti\n" + to_ring3() + """
    user:
        pushfd
        pop eax                 # IF = 1, IOPL = 0 as user code sees them
        push 0x3002             # IF = 0, IOPL = 3
        popfd
        pushfd
        pop ebx
        int 0x40
    """)
    assert v is None
    assert cpu.rax & (IF | IOPL3) == IF
    assert cpu.rbx & (IF | IOPL3) == IF          # unchanged, and no fault


def test_popf_at_cpl0_changes_if_and_iopl():
    m = Prot()
    cpu, v, e = m.run("push 0x3202\npopfd\npushfd\npop ebx")
    assert v is None and cpu.rbx & (IF | IOPL3) == IF | IOPL3


def test_popf_with_iopl3_at_cpl3_changes_if_not_iopl():
    m = Prot()
    cpu, v, e = m.run("push 0x3002\npopfd\n" + to_ring3() + """
    user:
        push 0x0202             # IF = 1, IOPL = 0
        popfd
        pushfd
        pop ebx
        int 0x40
    """)
    assert v is None and cpu.rbx & (IF | IOPL3) == IF | IOPL3


def test_iret_at_cpl3_keeps_if_and_iopl():
    m = Prot()
    cpu, v, e = m.run("sti\n" + to_ring3() + f"""
    user:
        push 0x3002
        push {CODE3}
        push offset back
        iretd
    back:
        pushfd
        pop ebx
        int 0x40
    """)
    assert v is None and cpu.rbx & (IF | IOPL3) == IF


@pytest.mark.parametrize("insn", ["cli", "sti"])
@pytest.mark.parametrize("iopl,vec", [(0, 13), (3, None)])
def test_cli_sti_by_iopl(insn, iopl, vec):
    m = Prot()
    cpu, v, e = m.run(f"push {0x2 | (iopl << 12)}\npopfd\n" + to_ring3() + f"user:\n{insn}\nint 0x40")
    assert v == vec and (e == 0 if vec else True)


# --- the I/O permission bitmap -----------------------------------------------------

@pytest.mark.parametrize("insn,port,clear,vec", [
    ("in al, 0x60", 0x60, [0x60], None),
    ("in al, 0x60", 0x60, [], 13),
    ("in ax, 0x60", 0x60, [0x60], 13),              # both bits of a word access must be clear
    ("in ax, 0x60", 0x60, [0x60, 0x61], None),
    ("mov dx, 0x3f8\nout dx, eax", 0x3F8, [0x3F8, 0x3F9, 0x3FA, 0x3FB], None),
    ("mov dx, 0x3f8\nout dx, eax", 0x3F8, [0x3F8, 0x3F9, 0x3FA], 13),
    ("mov dx, 0x3f8\nmov esi, 0x20000\nouts dx, byte ptr [esi]", 0x3F8, [0x3F8], None),
])
def test_io_bitmap_at_cpl3(insn, port, clear, vec):
    m = Prot(iomap_bytes=0x80)                     # ports 0-3FFH
    bm = bytearray(b"\xff" * 0x80)
    for p in clear:
        bm[p >> 3] &= ~(1 << (p & 7))
    m.hw.write(0x13000 + 0x68, bytes(bm))
    got = []
    m.hw.on_io(port, port + 1, port + 2, port + 3)(lambda p, s, i, val: got.append((p, s)) or 0)
    cpu, v, e = m.run(to_ring3() + f"""
    user:
        mov ax, {DATA3}
        mov ds, ax
        mov es, ax
        {insn}
        int 0x40
    """)
    assert v == vec
    if "outs" not in insn:
        assert bool(got) == (vec is None)


def test_io_beyond_the_tss_limit_is_gp():
    m = Prot()                                  # no bitmap: the offset is past the limit
    cpu, v, e = m.run(to_ring3() + "user:\nin al, 0x60\nint 0x40")
    assert (v, e) == (13, 0)


def test_io_at_cpl3_with_iopl3_needs_no_bitmap():
    m = Prot()
    m.hw.on_io(0x60)(lambda p, s, i, val: 0x5A)
    cpu, v, e = m.run("push 0x3002\npopfd\n" + to_ring3() + "user:\nin al, 0x60\nint 0x40")
    assert v is None and cpu.rax & 0xFF == 0x5A


# --- SGDT SIDT SLDT STR SMSW and UMIP -----------------------------------------------

UMIP_ON = "mov eax, cr4\nor eax, 1 << 11\nmov cr4, eax\n"


@pytest.mark.parametrize("insn", ["sgdt [0x20000]", "sidt [0x20000]", "sldt ax", "str ax", "smsw ax"])
@pytest.mark.parametrize("umip", [False, True])
def test_umip(insn, umip):
    m = Prot()
    cpu, v, e = m.run((UMIP_ON if umip else "") + to_ring3() + f"""
    user:
        mov ax, {DATA3}
        mov ds, ax
        {insn}
        int 0x40
    """)
    assert (v, e) == ((13, 0) if umip else (None, None))


def test_umip_allows_cpl0():
    m = Prot()
    cpu, v, e = m.run(UMIP_ON + "sgdt [0x20000]\nstr bx\nsmsw cx")
    assert v is None and cpu.rbx & 0xFFFF == TSS_SEL and cpu.rcx & 1


def test_cpuid_reports_sep_syscall_umip():
    m = Prot()
    cpu, v, e = m.run("""
        mov eax, 1
        cpuid
        mov ebp, edx
        mov eax, 7
        xor ecx, ecx
        cpuid
        mov esp, ecx
        mov eax, 0x80000001
        cpuid
    """)
    assert cpu.rbp & (1 << 11) and cpu.rsp & (1 << 2) and cpu.rdx & (1 << 11)


# --- SYSCALL / SYSRET ------------------------------------------------------------------

LSTAR_TARGET = 0x3000


def syscall_machine(kernel_code):
    m = Prot(64)
    # SYSRET to 64-bit code: CS = STAR[63:48] + 16 = 0x40 (CODE64_3), SS = + 8 = 0x38 (DATA3);
    # SYSCALL: CS = STAR[47:32] = 0x18, SS = 0x20 (what the selector names is not read).
    m.hw.write(LSTAR_TARGET, vtx.asm(kernel_code, bits=64))
    return m


def msr_setup(sce=True, fmask=0x200):
    return f"""
        mov ecx, 0xC0000080
        rdmsr
        {'or eax, 1' if sce else 'and eax, ~1'}
        wrmsr
        mov ecx, 0xC0000081
        xor eax, eax
        mov edx, 0x00300018
        wrmsr
        mov ecx, 0xC0000082
        mov eax, {LSTAR_TARGET}
        xor edx, edx
        wrmsr
        mov ecx, 0xC0000084
        mov eax, {fmask}
        xor edx, edx
        wrmsr
    """


def test_syscall_and_sysret_round_trip():
    m = syscall_machine("""
        mov r12, rcx
        mov r13, r11
        mov r14, cs
        mov r15, ss
        pushfq
        pop rbx
        mov rcx, r12
        sysretq
    """)
    cpu, v, e = m.run("sti\n" + msr_setup() + to_ring3(64) + """
    user:
        mov rax, 0x1234
        syscall
    back:
        mov rbp, cs
        mov rdx, ss
        pushfq
        pop r8
        int 0x40
    """)
    assert v is None
    assert (cpu.r14 & 0xFFFF, cpu.r15 & 0xFFFF) == (0x18, 0x20)
    assert cpu.rbx & IF == 0                 # FMASK cleared IF
    assert cpu.r13 & IF                       # R11 = the user's RFLAGS
    assert (cpu.rbp & 0xFFFF, cpu.rdx & 0xFFFF) == (0x43, 0x3B)
    assert cpu.r8 & IF                        # RFLAGS back from R11
    assert cpu.r12 > 0x1000                   # RCX: the user's next RIP


def test_syscall_ud_without_sce():
    m = syscall_machine("hlt")
    cpu, v, e = m.run(msr_setup(sce=False) + "syscall")
    assert v == 6


def test_syscall_ud_outside_64_bit_mode():
    m = Prot()
    cpu, v, e = m.run("mov ecx, 0xC0000080\nrdmsr\nor eax, 1\nwrmsr\nsyscall")
    assert v == 6


def test_sysret_non_canonical_rcx_is_gp_at_cpl0():
    m = syscall_machine("hlt")
    cpu, v, e = m.run(msr_setup() + "mov rcx, 0x0000800000000000\nsysretq")
    assert (v, e) == (13, 0) and cpu.cs.selector == CODE64


def test_sysret_to_compatibility_mode():
    m = syscall_machine("hlt")
    cpu, v, e = m.run(msr_setup() + """
        lea rcx, [rip + compat]
        mov r11, 0x202
        .byte 0x0f, 0x07          # SYSRET without REX.W: to compatibility mode
    compat:
        .code32
        mov ebx, cs
        int 0x40
        .code64
    """)
    assert v is None and cpu.rbx & 0xFFFF == 0x33


def test_sysret_at_cpl3_is_gp():
    m = syscall_machine("hlt")
    cpu, v, e = m.run(msr_setup() + to_ring3(64) + "user:\nsysretq")
    assert (v, e) == (13, 0)


# --- SYSENTER / SYSEXIT ------------------------------------------------------------------

def sysenter_msrs(cs=CODE0):
    return f"""
        mov ecx, 0x174
        mov eax, {cs}
        xor edx, edx
        wrmsr
        mov ecx, 0x175
        mov eax, {STACK0 - 0x100}
        wrmsr
        mov ecx, 0x176
        mov eax, offset kentry
        wrmsr
    """


def test_sysenter_sysexit_32():
    # SYSENTER_CS = FREE: SYSENTER loads CS FREE, SS FREE + 8; SYSEXIT CS
    # FREE + 16 | 3, SS FREE + 24 | 3 (flat, whatever the GDT holds there;
    # descriptors that match are put there as an OS would).
    m = Prot()
    m.gdt[FREE] = seg(typ=0xB)
    m.gdt[FREE + 8] = seg(typ=0x3)
    m.gdt[FREE + 16] = seg(typ=0xB, dpl=3)
    m.gdt[FREE + 24] = seg(typ=0x3, dpl=3)
    cpu, v, e = m.run(sysenter_msrs(cs=FREE) + f"""
        mov ecx, {STACK3}
        mov edx, offset user
        sysexit
    user:
        mov ebp, cs
        mov eax, ss
        mov edi, esp
        sysenter
    kentry:
        mov ebx, cs
        mov ecx, ss
        mov edx, esp
        mov esi, 0xffff
    """)
    assert v is None
    assert (cpu.rbp & 0xFFFF, cpu.rax & 0xFFFF) == (FREE + 16 | 3, FREE + 24 | 3)
    assert (cpu.rbx & 0xFFFF, cpu.rcx & 0xFFFF, cpu.rdx) == (FREE, FREE + 8, STACK0 - 0x100)
    assert cpu.cs.access_rights == 0xC09B and cpu.ss.access_rights == 0xC093


def test_sysenter_with_null_cs_is_gp():
    m = Prot()
    cpu, v, e = m.run(sysenter_msrs(cs=0) + "sysenter\nkentry:")
    assert (v, e) == (13, 0)


def test_sysexit_at_cpl3_is_gp():
    m = Prot()
    cpu, v, e = m.run(sysenter_msrs() + to_ring3() + "user:\nsysexit\nkentry:")
    assert (v, e) == (13, 0)


def test_sysexit_64_with_rex_w():
    m = Prot(64)
    # SYSENTER_CS = 0x10: SYSEXIT 64 -> CS 0x30|3 (ring-3 32-bit code? no: +32 = 0x30)
    m.gdt[0x30] = seg(typ=0xB, dpl=3, l=1, db=0)
    cpu, v, e = m.run(f"""
        mov ecx, 0x174
        mov eax, 0x10
        xor edx, edx
        wrmsr
        lea rdx, [rip + user]
        mov rcx, {STACK3}
        rex64 sysexit
    user:
        mov rbx, cs
        mov rbp, ss
        mov r8, rsp
        int 0x40
    """)
    assert v is None
    assert (cpu.rbx & 0xFFFF, cpu.rbp & 0xFFFF, cpu.r8) == (0x33, 0x3B, STACK3)


# --- SWAPGS and the FS/GS base MSRs ---------------------------------------------------------

def test_swapgs_and_base_msrs():
    m = Prot(64)
    cpu, v, e = m.run("""
        mov ecx, 0xC0000101
        mov eax, 0x1000
        xor edx, edx
        wrmsr
        mov ecx, 0xC0000102
        mov eax, 0x2000
        wrmsr
        mov ecx, 0xC0000100
        mov eax, 0x3000
        wrmsr
        swapgs
        mov rbx, gs:[0]
        mov ecx, 0xC0000101
        rdmsr
        mov r8, rax
        mov ecx, 0xC0000102
        rdmsr
        mov r9, rax
        mov r10, fs:[0]
    """)
    assert v is None
    assert (cpu.r8, cpu.r9) == (0x2000, 0x1000)
    assert cpu.rbx == m.u64(0x2000) and cpu.r10 == m.u64(0x3000)


def test_swapgs_at_cpl3_is_gp():
    m = Prot(64)
    cpu, v, e = m.run(to_ring3(64) + "user:\nswapgs")
    assert (v, e) == (13, 0)


def test_swapgs_outside_64_bit_mode_is_ud():
    m = Prot()
    cpu, v, e = m.run(".byte 0x0f, 0x01, 0xf8")
    assert v == 6


def test_non_canonical_fs_base_wrmsr_is_gp():
    m = Prot(64)
    cpu, v, e = m.run("mov ecx, 0xC0000100\nxor eax, eax\nmov edx, 0x8000\nwrmsr")
    assert (v, e) == (13, 0)


# --- LDS LES LSS LFS LGS ------------------------------------------------------------------------

@pytest.mark.parametrize("insn,sreg", [("lds", "ds"), ("les", "es"), ("lss", "ss"), ("lfs", "fs"), ("lgs", "gs")])
def test_load_far_pointer(insn, sreg):
    m = Prot()
    m.hw.write(0x20000, (0x12345678).to_bytes(4, "little") + DATA3.to_bytes(2, "little"))
    # DATA3 (DPL 3) loads at CPL 0 for a data register; SS needs DPL = CPL, so use DATA0 there
    sel = DATA0 if sreg == "ss" else DATA3
    m.hw.write(0x20004, sel.to_bytes(2, "little"))
    cpu, v, e = m.run(f"mov eax, 0x20000\n{insn} ebx, [eax]\nmov cx, {sreg}")
    assert v is None
    assert cpu.rbx == 0x12345678 and cpu.rcx & 0xFFFF == sel


def test_load_far_pointer_bad_selector_changes_nothing():
    m = Prot()
    m.hw.write(0x20000, (0x12345678).to_bytes(4, "little") + (0x1F8).to_bytes(2, "little"))
    cpu, v, e = m.run("mov ebx, 7\nmov eax, 0x20000\nlfs ebx, [eax]")
    assert (v, e) == (13, 0x1F8) and cpu.rbx == 7 and cpu.fs.selector == DATA0


def test_lss_with_dpl3_at_cpl0_is_gp():
    m = Prot()
    m.hw.write(0x20000, (0x1000).to_bytes(4, "little") + DATA3.to_bytes(2, "little"))
    cpu, v, e = m.run("mov eax, 0x20000\nlss esp, [eax]")
    assert (v, e) == (13, DATA3 & ~3)


def test_lds_is_ud_in_64_bit_mode():
    m = Prot(64)
    cpu, v, e = m.run(".byte 0xc5, 0x00")      # C5 /r: VEX in 64-bit mode, AVX not advertised
    assert v == 6


def test_lfs_m16_64_in_64_bit_mode():
    m = Prot(64)
    m.hw.write(0x20000, (0x123456789A).to_bytes(8, "little") + DATA0.to_bytes(2, "little"))
    cpu, v, e = m.run("mov eax, 0x20000\n.byte 0x48, 0x0f, 0xb4, 0x18      # lfs rbx, [rax] (m16:64)")
    assert v is None and cpu.rbx == 0x123456789A


# --- LAR LSL ARPL --------------------------------------------------------------------------------

@pytest.mark.parametrize("sel,lar,lsl", [
    # bits 19:16 (limit 19:16, which the SDM leaves undefined) read as 0
    (CODE0, 0x00C09B00, 0xFFFFFFFF),
    (DATA3, 0x00C0F300, 0xFFFFFFFF),
    (TSS_SEL, 0x00008B00, 0x67),          # the busy TSS (LTR marked it)
    (0, None, None),                      # null: ZF = 0
    (0x1F8, None, None),                  # beyond the GDT: ZF = 0
])
def test_lar_lsl(sel, lar, lsl):
    m = Prot()
    cpu, v, e = m.run(f"""
        mov ecx, {sel}
        mov eax, 0xdeadbeef
        mov ebx, 0xdeadbeef
        lar eax, ecx
        pushfd
        pop edx
        lsl ebx, ecx
        pushfd
        pop ebp
    """)
    assert v is None
    if lar is None:
        assert not cpu.rdx & ZF and not cpu.rbp & ZF
        assert cpu.rax == 0xDEADBEEF and cpu.rbx == 0xDEADBEEF
    else:
        assert cpu.rdx & ZF and cpu.rbp & ZF
        assert (cpu.rax, cpu.rbx) == (lar, lsl)


def test_lar_privilege_at_cpl3():
    m = Prot()
    cpu, v, e = m.run(to_ring3() + f"""
    user:
        mov ecx, {DATA0}
        lar eax, ecx               # DPL 0 < CPL 3: ZF = 0
        pushfd
        pop ebx
        mov ecx, {CONF0}
        lar eax, ecx               # conforming code: visible
        pushfd
        pop edx
        int 0x40
    """)
    assert v is None and not cpu.rbx & ZF and cpu.rdx & ZF and cpu.rax == 0x00C09F00


def test_lar_ud_in_real_mode():
    hw = vtx.BareMetal(memory=1 << 20)
    hw.load(0x1000, vtx.asm("lar ax, cx\nhlt", bits=16))
    hw.load(0, b"\x00\x20\x00\x00" * 8)              # every vector to 0000:2000
    hw.load(0x2000, b"\xbb\x06\x00\xf4")              # mov bx, 6; hlt
    cpu = hw.setup_real_mode(entry=0x1000, stack=0x8000)
    hw.run(max_instructions=10)
    assert cpu.rbx == 6


@pytest.mark.parametrize("dst,src,out,zf", [(0x10, 0x3, 0x13, 1), (0x13, 0x1, 0x13, 0), (0x12, 0x2, 0x12, 0)])
def test_arpl(dst, src, out, zf):
    m = Prot()
    cpu, v, e = m.run(f"mov eax, {dst}\nmov ebx, {src}\narpl ax, bx\npushfd\npop edx")
    assert v is None and cpu.rax & 0xFFFF == out and bool(cpu.rdx & ZF) == bool(zf)


def test_movsxd_still_in_64_bit_mode():
    m = Prot(64)
    cpu, v, e = m.run("mov ecx, 0x80000000\nmovsxd rax, ecx")
    assert cpu.rax == 0xFFFFFFFF80000000


# --- virtual-8086 mode ---------------------------------------------------------------------------

def test_iret_to_v86_and_interrupt_back():
    m = Prot()
    m.hw.write(0x5000, bytes([0xB8, 0x34, 0x12,        # mov ax, 0x1234
                              0x8C, 0xCB,              # mov bx, cs
                              0xCD, 0x40]))            # int 0x40 (IOPL 3 allows it)
    cpu, v, e = m.run("""
        push 0x0300               # GS
        push 0x0200               # FS
        push 0x0100               # DS
        push 0x0080               # ES
        push 0x0700               # SS
        push 0x0100               # ESP
        push 0x23002              # EFLAGS: VM, IOPL 3
        push 0x0400               # CS (base 4000H)
        push 0x1000               # EIP: linear 5000H
        iretd
    """)
    assert v is None
    assert cpu.rax & 0xFFFF == 0x1234 and cpu.rbx & 0xFFFF == 0x400
    # INT from virtual-8086 mode: ring-0 stack with GS FS DS ES on top of the frame
    frame = [m.u32(STACK0 - 36 + 4 * i) for i in range(9)]
    assert frame == [0x1007, 0x400, frame[2], 0x100, 0x700, 0x80, 0x100, 0x200, 0x300]
    assert frame[2] & (1 << 17)                  # the saved EFLAGS has VM
    assert cpu.ds.selector == 0 and cpu.es.selector == 0 and not cpu.rflags & (1 << 17)


def test_v86_cli_with_iopl0_is_gp():
    m = Prot()
    m.hw.write(0x5000, bytes([0xFA]))           # cli
    cpu, v, e = m.run("""
        push 0
        push 0
        push 0
        push 0
        push 0x0700
        push 0x0100
        push 0x20002              # VM, IOPL 0
        push 0x0400
        push 0x1000
        iretd
    """)
    assert (v, e) == (13, 0)


# --- interrupt delivery in IA-32e mode: IST and alignment ---------------------------------------

def test_ist_and_alignment_in_long_mode():
    m = Prot(64)
    stub_lo, stub_hi = m.idt[0x40]
    cpu, v, e = m.run("""
        mov rsp, 0x8ff8           # misaligned: delivery aligns to 16 first
        int 0x40
    """)
    assert v is None and cpu.rsp == 0x8FF0 - 40
    m2 = Prot(64)
    m2.idt[0x40] = (stub_lo | (1 << 32), stub_hi)
    cpu, v, e = m2.run("int 0x40")
    assert v is None and cpu.rsp == IST1 - 40


def test_iret_in_v86_with_iopl3_is_real_mode_style():
    # INT n / IRET inside virtual-8086 mode with IOPL 3: IRET pops IP, CS,
    # FLAGS like real mode and leaves IOPL and VM (SDM Vol. 2 IRET).  Here
    # the v86 code calls itself with a near "interrupt frame" built by hand.
    m = Prot()
    m.hw.write(0x5000, bytes([
        0x9C,                         # pushf
        0x0E,                         # push cs
        0x68, 0x09, 0x10,             # push 0x1009 (return IP)
        0xCF,                         # iret  -> 0400:1009
        0xF4, 0xF4, 0xF4,             # (skipped)
        0x9C,                         # 1009: pushf
        0x58,                         # pop ax
        0xCD, 0x40]))                 # int 0x40
    cpu, v, e = m.run("""
        push 0
        push 0
        push 0
        push 0
        push 0x0700
        push 0x0100
        push 0x23002              # VM, IOPL 3
        push 0x0400
        push 0x1000
        iretd
    """)
    assert v is None
    assert cpu.rax & 0xFFFF == 0x3002            # IOPL 3 kept (FLAGS image: VM is above bit 15)
    assert m.u32(STACK0 - 36 + 8) & (1 << 17)    # still in virtual-8086 mode at the INT


# --- nested faults: #DF and the triple fault -----------------------------------------------------

def test_fault_delivering_gp_is_double_fault():
    # #GP whose gate is not present: #NP(EXT) while delivering it, two
    # contributory exceptions: #DF with error code 0 (SDM Vol. 3A 6.15, Table 6-5).
    m = Prot()
    lo, hi = m.idt[13]
    m.idt[13] = (lo & ~(1 << 47), hi)
    cpu, v, e = m.run("mov ax, 0x1F8\nmov ds, ax")
    assert (v, e) == (8, 0)


def test_fault_delivering_double_fault_is_a_triple_fault():
    m = Prot()
    for vec in (8, 13):
        lo, hi = m.idt[vec]
        m.idt[vec] = (lo & ~(1 << 47), hi)
    cpu, v, e = m.run("mov ax, 0x1F8\nmov ds, ax")
    assert m.result.stop == "shutdown" and cpu.halted == 2


def test_np_on_gate_for_int_n_has_idt_bit_and_no_ext():
    m = Prot()
    lo, hi = m.idt[0x30]
    m.idt[0x30] = (lo & ~(1 << 47), hi)
    cpu, v, e = m.run("int 0x30")
    assert (v, e) == (11, 0x30 * 8 + 2)


def test_interrupt_to_ring0_with_bad_ss0_from_ring3_is_ts_then_double_fault():
    # The ring-0 stack of the TSS is a code segment: #TS(SS0 selector) while
    # delivering from CPL 3, and delivering that #TS needs the same stack:
    # #DF, whose delivery needs it again: a triple fault.
    m = Prot()
    m.hw.write(0x13008, CODE0.to_bytes(2, "little"))
    cpu, v, e = m.run(to_ring3() + "user:\nint 0x40")
    assert m.result.stop == "shutdown"
