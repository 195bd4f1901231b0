"""Task switches (SDM Vol. 3A chapter 8, "Task Management"): JMP and CALL to
a TSS descriptor or a task gate, INT n and exceptions through a task gate
in the IDT, IRET with NT = 1 back along the previous-task link; the busy
bits, NT, the link, CR0.TS, the state saved in the old TSS and loaded from
the new one, and the faults of Table 8-1 with their error codes.  In VMX
non-root operation the switch is a VM exit (reason 9) after the checks on
the TSS descriptor (SDM Vol. 3C 26.4.2, Table 28-2)."""

import pytest

import vtx
from prot_harness import (CODE0, CODE3, DATA0, DATA3, FREE, GDT, IDT, STACK0, TSS, TSS2, TSS3, TSS_SEL,
                          Prot, gate, seg, tss_desc)

TASK_B = 0x3000             # the new task's code
B_SEL = FREE                # its TSS descriptor
GATE_SEL = FREE + 8         # a task gate for it in the GDT
CR0_TS = 1 << 3
NT = 1 << 14


def tss32(eip, eflags=0x2, regs=(), segs=None, ldt=0, cr3=0, esp0=0x5800, ss0=DATA0):
    """A 32-bit TSS image (SDM Vol. 3A Figure 8-2)."""
    t = bytearray(0x68)
    t[4:8] = esp0.to_bytes(4, "little")
    t[8:10] = ss0.to_bytes(2, "little")
    t[0x1C:0x20] = cr3.to_bytes(4, "little")
    t[0x20:0x24] = eip.to_bytes(4, "little")
    t[0x24:0x28] = eflags.to_bytes(4, "little")
    for i, v in enumerate(regs):
        t[0x28 + 4 * i:0x2C + 4 * i] = v.to_bytes(4, "little")
    segs = segs or {}
    for i, name in enumerate(("es", "cs", "ss", "ds", "fs", "gs")):
        t[0x48 + 4 * i:0x4A + 4 * i] = segs.get(name, CODE0 if name == "cs" else DATA0).to_bytes(2, "little")
    t[0x60:0x62] = ldt.to_bytes(2, "little")
    return bytes(t)


B_REGS = (0xA0, 0xC0, 0xD0, 0xB0, 0x5000, 0xB9, 0xFFFF, 0xFFFF)   # EAX ECX EDX EBX ESP EBP ESI EDI
# (ESI and EDI as the harness's "no fault" mark)


def machine(b_code="mov eax, 0x42\nhlt", **tss_kw):
    m = Prot()
    m.gdt[B_SEL] = tss_desc(TSS2)
    m.gdt[GATE_SEL] = gate(B_SEL, typ=0x5, dpl=0)
    m.hw.write(TSS2, tss32(TASK_B, regs=B_REGS, **tss_kw))
    m.hw.write(TASK_B, vtx.asm(b_code, bits=32))
    return m


def test_jmp_to_tss_switches_task():
    m = machine("mov edi, 0x1234\nhlt")   # the stubs use ESI/EDI; B keeps them
    cpu, v, e = m.run("mov eax, 0x77\nmov ebx, 0x88\njmp far ptr {}:0\nafter:".format(B_SEL))
    assert cpu.tr.selector == B_SEL and cpu.tr.base == TSS2
    assert cpu.rip == TASK_B + 6          # past B's mov and hlt
    assert (cpu.rcx, cpu.rdx, cpu.rbx, cpu.rsp, cpu.rbp) == (0xC0, 0xD0, 0xB0, 0x5000, 0xB9)
    assert cpu.rdi == 0x1234 and cpu.cs.selector == CODE0
    assert cpu.cr0 & CR0_TS and not cpu.rflags & NT
    # the old task's state, saved; its TSS available again; B busy
    assert m.u32(TSS + 0x28) == 0x77 and m.u32(TSS + 0x34) == 0x88
    assert m.u32(TSS + 0x20) > 0x1000 and m.u16(TSS + 0x4C) == CODE0
    assert (m.desc(TSS_SEL) >> 40) & 0xF == 0x9
    assert (m.desc(B_SEL) >> 40) & 0xF == 0xB
    assert m.u16(TSS2) == 0               # JMP writes no link


def test_call_to_tss_links_and_iret_returns():
    m = machine("mov eax, 0x42\npushfd\npop ebx\niretd")
    cpu, v, e = m.run(f"mov ecx, 0x99\ncall far ptr {B_SEL}:0\nmov edx, eax\n")
    assert v is None
    # back in the first task: its registers restored (EAX as saved: 0),
    # B's EBX image saved in B's TSS
    assert cpu.tr.selector == TSS_SEL and cpu.rcx == 0x99
    assert m.u16(TSS2) == TSS_SEL                            # the previous-task link
    assert m.u32(TSS2 + 0x34) & NT                           # B ran with NT = 1
    assert m.u32(TSS2 + 0x28) == 0x42
    assert m.u32(TSS2 + 0x24) & NT == 0                      # IRET saved B's EFLAGS without NT
    assert (m.desc(B_SEL) >> 40) & 0xF == 0x9                # IRET made B available
    assert (m.desc(TSS_SEL) >> 40) & 0xF == 0xB              # the first task stayed busy
    assert not cpu.rflags & NT and cpu.cr0 & CR0_TS


def test_jmp_through_task_gate_in_gdt():
    m = machine()
    cpu, v, e = m.run(f"jmp far ptr {GATE_SEL}:0")
    assert cpu.tr.selector == B_SEL and cpu.rax == 0x42


def test_int_through_task_gate_in_idt():
    m = machine("mov eax, 0x42\niretd")
    m.idt[0x30] = (gate(B_SEL, typ=0x5, dpl=0), 0)
    cpu, v, e = m.run("int 0x30\nmov ebx, 0x55")
    assert v is None and cpu.tr.selector == TSS_SEL and cpu.rbx == 0x55
    assert m.u16(TSS2) == TSS_SEL and m.u32(TSS2 + 0x28) == 0x42


def test_exception_through_task_gate_pushes_error_code_on_new_stack():
    # #GP through a task gate: the error code goes on the new task's stack.
    m = machine("pop eax\nhlt")
    m.idt[13] = (gate(B_SEL, typ=0x5, dpl=0), 0)
    cpu, v, e = m.run("mov ax, 0x1F8\nmov ds, ax")
    assert cpu.tr.selector == B_SEL and cpu.rax == 0x1F8 and cpu.rsp == 0x5000
    assert m.u16(TSS2) == TSS_SEL and cpu.rflags & NT


def test_task_gate_dpl_checked_for_int_n():
    m = machine()
    m.idt[0x30] = (gate(B_SEL, typ=0x5, dpl=0), 0)
    cpu, v, e = m.run("""
        push 0x3B
        push 0x7000
        pushfd
        push 0x33
        push offset user
        iretd
    user:
        int 0x30
    """)
    assert (v, e) == (13, 0x30 * 8 + 2)


@pytest.mark.parametrize("desc,vec,err", [
    (tss_desc(TSS2, typ=0xB), 13, B_SEL),           # busy: #GP(sel)
    (tss_desc(TSS2, p=0), 11, B_SEL),               # not present: #NP(sel)
    (tss_desc(TSS2, limit=0x66), 10, B_SEL),        # limit below 67H: #TS(sel)
    (tss_desc(TSS2, dpl=0), None, None),            # DPL 0 from CPL 0: fine
])
def test_jmp_to_tss_descriptor_checks(desc, vec, err):
    m = machine()
    m.gdt[B_SEL] = desc
    cpu, v, e = m.run(f"jmp far ptr {B_SEL}:0")
    assert (v, e) == (vec, err)
    if vec is not None:
        assert cpu.tr.selector == TSS_SEL


def test_tss_dpl_below_rpl_is_gp():
    m = machine()
    cpu, v, e = m.run(f"jmp far ptr {B_SEL | 3}:0")
    assert (v, e) == (13, B_SEL)


def test_task_gate_naming_ldt_selector_is_gp():
    m = machine()
    m.gdt[GATE_SEL] = gate(B_SEL | 4, typ=0x5)
    cpu, v, e = m.run(f"jmp far ptr {GATE_SEL}:0")
    assert (v, e) == (13, B_SEL | 4)


def test_bad_code_segment_in_new_task_is_ts_in_its_context():
    m = machine(segs={"cs": DATA0})
    cpu, v, e = m.run(f"jmp far ptr {B_SEL}:0")
    assert (v, e) == (10, DATA0)
    assert cpu.tr.selector == B_SEL          # the switch happened first
    assert m.u16(TSS + 0x4C) == CODE0


TS_TASK = FREE + 24          # a task for #TS (IDT vector 10 is a task gate to it)
TS_CODE = 0x3800


def with_ts_task(m, vector=10):
    """#TS (or #SS) through a task gate, the way a kernel survives a bad
    TSS: the handler task starts with a good stack whatever the faulting
    task's state.  It pops the error code into EDI and records the vector
    in ESI."""
    m.gdt[TS_TASK] = tss_desc(TSS3)
    m.hw.write(TSS3, tss32(TS_CODE, regs=(0, 0, 0, 0, 0x6000, 0, 0, 0)))
    m.hw.write(TS_CODE, vtx.asm(f"pop edi\nmov esi, {vector}\nhlt", bits=32))
    m.idt[vector] = (gate(TS_TASK, typ=0x5), 0)


@pytest.mark.parametrize("segs,vec,err", [
    ({"ss": DATA3}, 10, DATA3 & ~3),                 # SS RPL != CPL (CS.RPL)
    ({"ss": 0}, 10, 0),                              # null SS
    ({"ss": CODE0}, 10, CODE0),                      # SS not writable data
    ({"ss": FREE + 16}, 12, FREE + 16),              # SS not present: #SS(sel)
    ({"cs": DATA0}, 10, DATA0),                      # CS not code
    ({"cs": CODE3}, 10, DATA0),                      # CPL 3 (CS.RPL), SS RPL 0: #TS(SS) first
    ({"ds": FREE + 16}, 11, FREE + 16),              # DS not present: #NP(sel)
    ({"ds": 0x1F8}, 10, 0x1F8),                      # DS beyond the GDT: #TS(sel)
    ({"es": CODE0 | 3}, None, None),                 # readable code: OK for ES at RPL 3? DPL 0 < RPL 3
    ({"cs": CODE3, "ss": DATA3}, 10, DATA0),         # CPL 3 with DS DPL 0: #TS(DS)
    ({"cs": CODE3, "ss": DATA3, "ds": DATA3, "es": DATA3, "fs": DATA3, "gs": DATA3}, None, None),
])
def test_new_task_segment_checks(segs, vec, err):
    m = machine("int 0x40", segs=segs)
    m.gdt[FREE + 16] = seg(typ=0x3, p=0)
    with_ts_task(m, 12 if vec == 12 else 10)
    cpu, v, e = m.run(f"jmp far ptr {B_SEL}:0")
    if segs.get("es") == CODE0 | 3:
        # non-conforming code with DPL 0 < RPL 3 in ES: #TS(ES)
        assert (v, e) == (10, CODE0)
        return
    assert (v, e) == (vec, err)
    if vec in (10, 12):
        # the #TS / #SS handler task was called from task B: linked, B busy
        assert cpu.tr.selector == TS_TASK and m.u16(TSS3) == B_SEL
        assert (m.desc(B_SEL) >> 40) & 0xF == 0xB


def test_iret_with_nt_and_link_not_busy_is_ts():
    m = machine()
    m.hw.write(TSS, (B_SEL).to_bytes(2, "little"))      # link to B, which is available
    cpu, v, e = m.run("pushfd\nor dword ptr [esp], 0x4000\npopfd\niretd")
    assert (v, e) == (10, B_SEL)


def test_16_bit_tss():
    m = machine()
    t = bytearray(0x2C)
    t[0x0E:0x10] = TASK_B.to_bytes(2, "little")       # IP
    t[0x10:0x12] = (0x2).to_bytes(2, "little")         # FLAGS
    t[0x12:0x14] = (0x1111).to_bytes(2, "little")      # AX
    t[0x1A:0x1C] = (0x6000).to_bytes(2, "little")      # SP
    t[0x1E:0x22] = b"\xff\xff\xff\xff"                  # SI, DI: the harness's "no fault"
    for off, sel in ((0x22, DATA0), (0x24, CODE0), (0x26, DATA0), (0x28, DATA0)):
        t[off:off + 2] = sel.to_bytes(2, "little")
    m.hw.write(TSS3, bytes(t))
    m.gdt[FREE + 16] = tss_desc(TSS3, limit=0x2B, typ=0x1)
    m.hw.write(TASK_B, vtx.asm("mov ebx, eax\nhlt", bits=32))
    cpu, v, e = m.run(f"mov eax, 0xFFFF0000\njmp far ptr {FREE + 16}:0")
    assert v is None and cpu.tr.selector == FREE + 16
    assert cpu.rbx == 0xFFFF1111 and cpu.rsp & 0xFFFF == 0x6000
    assert (m.desc(FREE + 16) >> 40) & 0xF == 0x3


def test_ia32e_mode_has_no_task_switch():
    m = Prot(64)
    m.gdt[FREE] = tss_desc(TSS2)
    m.gdt[FREE + 8] = 0
    cpu, v, e = m.run(f"""
        lea rax, [rip + ptr]
        jmp fword ptr [rax]
    ptr: .long 0
        .word {FREE}
    """)
    assert (v, e) == (13, FREE)


# --- VMX non-root operation: exit reason 9 --------------------------------------

def _guest_with_tss(src):
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(src, bits=32, org=0x1000))
    vm.add_vcpu()
    v = vm.setup_protected_mode(entry=0x1000, stack=0x8000)
    vm.write(v.gdtr.base + 0x28, tss_desc(0x9000).to_bytes(8, "little"))
    vm.write(v.gdtr.base + 0x30, tss_desc(0x9000, typ=0xB).to_bytes(8, "little"))
    seen = []
    vm.default(lambda vcpu, ex: seen.append(ex) or vtx.STOP)
    vm.run(max_instructions=10)
    return v, seen[0]


@pytest.mark.parametrize("insn,source,length", [
    ("jmp far ptr 0x28:0", 2, 7),
    ("call far ptr 0x28:0", 0, 7),
])
def test_task_switch_exits_in_non_root(insn, source, length):
    v, ex = _guest_with_tss(insn)
    assert ex.reason == vtx.ExitReason.TASK_SWITCH
    assert ex.qualification == 0x28 | (source << 30) and ex.instruction_length == length
    assert v.rip == 0x1000                 # nothing happened: the exit comes before the switch


def test_busy_tss_faults_before_the_exit_in_non_root():
    v, ex = _guest_with_tss("jmp far ptr 0x30:0")
    # the default VMCS intercepts every exception: #GP(busy TSS), no exit 9
    assert ex.reason == vtx.ExitReason.EXCEPTION_OR_NMI
    assert (ex.vector, ex.error_code) == (13, 0x30)


# --- random system tables: any descriptors, any far transfer, an outcome ---------

def _random_system(rng):
    m = Prot()
    for i in range(8):
        sel = FREE + 8 * i
        k = rng.randrange(8)
        if k == 0:
            m.gdt[sel] = gate(rng.choice((CODE0, CODE3, 0x60 | 1, FREE, 0)), rng.choice((TASK_B, 0, 0xFFFFF)),
                              typ=rng.choice((0x4, 0xC)), dpl=rng.randrange(4), count=rng.randrange(32),
                              p=rng.random() < 0.9)
        elif k == 1:
            base = rng.choice((TSS2, TSS3, TSS, 0x1FF000))
            m.gdt[sel] = tss_desc(base, limit=rng.choice((0x67, 0x2B, 0x10, 0xFFFF)),
                                  typ=rng.choice((0x9, 0xB, 0x1, 0x3)), dpl=rng.randrange(4), p=rng.random() < 0.9)
        elif k == 2:
            m.gdt[sel] = gate(FREE + 8 * rng.randrange(8) | rng.randrange(8), typ=0x5, dpl=rng.randrange(4))
        elif k == 3:
            m.gdt[sel] = seg(typ=rng.choice((0x3, 0xB, 0xF, 0x9, 0x7)), dpl=rng.randrange(4), p=rng.random() < 0.9)
        else:
            m.gdt[sel] = rng.getrandbits(64)
    for base in (TSS2, TSS3):
        img = bytearray(rng.getrandbits(8) for _ in range(0x68))
        if rng.random() < 0.7:
            img[:] = tss32(TASK_B, eflags=rng.choice((0x2, 0x4002, 0x20002, 0x3202)),
                           segs={n: rng.choice((CODE0, DATA0, CODE3, DATA3, 0, FREE, FREE + 8)) if rng.random() < 0.3
                                 else (CODE0 if n == "cs" else DATA0) for n in ("es", "cs", "ss", "ds", "fs", "gs")},
                           ldt=rng.choice((0, 0, FREE, FREE + 16)))
        m.hw.write(base, bytes(img))
    for v in (8, 10, 11, 12, 13, 0x30):
        if rng.random() < 0.3:
            m.idt[v] = (gate(FREE + 8 * rng.randrange(8), typ=0x5, dpl=rng.randrange(4)), 0)
    m.hw.write(TASK_B, bytes(rng.getrandbits(8) for _ in range(16)))
    return m


@pytest.mark.parametrize("seed", range(60))
def test_random_system_tables_end_in_an_architectural_outcome(seed):
    import random
    rng = random.Random(seed)
    m = _random_system(rng)
    lines = []
    for _ in range(6):
        sel = (FREE + 8 * rng.randrange(8)) | rng.randrange(4)
        lines.append(rng.choice((f"jmp far ptr {sel}:0", f"call far ptr {sel}:0", "int 0x30",
                                 f"push {sel}\npush 0\nretf", "pushfd\nor dword ptr [esp], 0x4000\npopfd\niretd",
                                 f"mov ax, {sel}\nmov ds, ax", "ud2")))
    m.write_tables()
    code = vtx.asm(m.preamble() + "\n".join(lines) + "\nhlt\n", bits=32, org=0x1000)
    m.hw.load(0x1000, code)
    cpu = m.hw.setup_protected_mode(entry=0x1000, stack=STACK0)
    r = m.hw.run(max_instructions=2000)
    assert r.stop in ("halted", "shutdown", "budget")
    for i in range(8):
        cpu.get_segment(i)
    assert cpu.rflags & 2


LDT_SEL = FREE + 32
LDT_BASE = 0x16000


@pytest.mark.parametrize("ldt_type,vec,err", [(0x2, None, None), (0x9, 10, LDT_SEL)])
def test_new_task_ldt_loaded(ldt_type, vec, err):
    # The new task's LDTR from its TSS, then DS from that LDT (TI = 1); an
    # LDT selector naming something else than an LDT is #TS(LDT selector).
    m = machine("mov eax, ds:[0]\nhlt", segs={"ds": 0x8 | 4}, ldt=LDT_SEL)
    m.gdt[LDT_SEL] = seg(LDT_BASE, 0xF, typ=ldt_type, s=0, g=0, db=0)
    m.hw.write(LDT_BASE + 8, seg(0x17000, 0xFFF, typ=0x3, g=0).to_bytes(8, "little"))
    m.hw.write(0x17000, (0xCAFE).to_bytes(4, "little"))
    with_ts_task(m)                 # the fault comes before SS is loaded: a task gate takes it
    cpu, v, e = m.run(f"jmp far ptr {B_SEL}:0")
    assert (v, e) == (vec, err)
    if vec is None:
        assert cpu.ldtr.selector == LDT_SEL and cpu.ldtr.base == LDT_BASE
        assert cpu.ds.selector == 0xC and cpu.ds.base == 0x17000 and cpu.rax == 0xCAFE


def test_new_task_cr3_loaded_with_paging():
    # Paging on (32-bit, 4 MiB pages identity-mapping the first 4 MiB): the
    # new task's CR3 names another page directory, which maps linear 400000H
    # to physical 0 as well.
    m = machine("mov eax, cr3\nmov ebx, ds:[0x400000 + 0x17000]\nhlt", cr3=0x19000)
    pd1 = (0x83 | 0x0).to_bytes(4, "little")                 # 4 MiB page at 0
    m.hw.write(0x18000, pd1)
    m.hw.write(0x19000, pd1 + pd1)                             # PDE 1 -> physical 0 too
    m.hw.write(0x17000, (0xBEEF).to_bytes(4, "little"))
    cpu, v, e = m.run(f"""
        mov eax, 0x18000
        mov cr3, eax
        mov eax, cr4
        or eax, 0x10              # PSE
        mov cr4, eax
        mov eax, cr0
        or eax, 0x80000000
        mov cr0, eax
        jmp far ptr {B_SEL}:0
    """)
    assert v is None and cpu.rax == 0x19000 and cpu.rbx == 0xBEEF
