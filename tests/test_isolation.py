"""Isolation: a guest never reaches memory it was not given.

The hosted hypervisor keeps its private memory (the VMCS, the I/O and MSR
bitmaps and the EPT paging structures) at host-physical PRIV_BASE, above any
guest RAM; EPT maps only guest-physical [0, memory).  Each test here is one
attack on that boundary: accesses, pushes and string instructions at and
across the end of RAM in real, protected and long mode; guest paging
structures (4-level, 32-bit with PSE and PSE-36, PAE) whose entries point at
the private memory or past RAM or set reserved bits; CR3, IDTR and GDTR
pointing there; self-modifying code in the last bytes of RAM; and the same
with EPT turned off, where only the guest's own RAM backs guest-physical
addresses.

Every attack is run through :func:`attack`, which checks the property itself:

(a) the private memory is byte-identical afterwards, except the VMCS page,
    which VM exits write legitimately;
(b) guest RAM changed only where the test allows (what the guest wrote
    itself, its stack, the accessed and dirty flags of its page tables);
(c) no guest general-purpose register holds a value of the private memory
    that the guest could not have made itself: the EPT entries that point
    into the private memory, and canary qwords planted in the MSR bitmap
    page (harmless there: the VMs here do not use MSR bitmaps, so every
    RDMSR/WRMSR exits without consulting it);

and the test then asserts the exact architectural outcome: the VM exit with
its reason, qualification, guest-physical and guest-linear address, vector,
error code and IDT-vectoring information, the budget, or (EPT off) the
GuestMemoryError that names the host-physical address.
"""

import types

import pytest

import vtx
from vtx import ExitReason as R, VmcsField as F
from vtx.spec import ProcBased

from conftest import needs_as

pytestmark = needs_as

BASE = vtx._core.PRIV_BASE       # the hosted hypervisor's private memory
VMCS = BASE                      # offsets as vtx/vm.py lays them out
MSR_BITMAP = BASE + 0x3000
EPT_PML4 = BASE + 0x4000
EPT_PDPT = BASE + 0x5000
EPT_PD = BASE + 0x6000

ENTRY = 0x1000
MEM = 1 << 20                    # protected- and long-mode guests
RMEM = 0x20000                   # real-mode guests: DS = 0x1FFF reaches its end
TABLES = 0x10000                 # GDT and long-mode page tables, far from the end
# setup_long_mode's identity tables at TABLES: PML4, PDPT, four PDs, and one
# free page for the tests' own page table.
PML4, PDPT, PD, FREE = TABLES + 0x1000, TABLES + 0x2000, TABLES + 0x3000, TABLES + 0x7000
LM_TABLES = (PML4, TABLES + 0x8000)      # accessed/dirty flags land here
STACK = (0x8000, TABLES)                 # what pushes below TABLES may write

GiB = 1 << 30
BITS = {"real": 16, "protected": 32, "long": 64}
GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

# #PF error code bits (SDM Vol. 3A 4.7).
PF_P, PF_W, PF_RSVD = 1, 2, 8
VEC_UD, VEC_GP, VEC_PF = 6, 13, 14


def canary(i):
    """A qword whose two halves are both distinctive."""
    return ((0x5EC00000 | i) << 32) | (0xCA7E0000 | i)


CANARY_DWORDS = frozenset(d for i in range(512) for d in (0x5EC00000 | i, 0xCA7E0000 | i))


# ---------------------------------------------------------------------------
# Building and running an attack
# ---------------------------------------------------------------------------

def build(mode, source, *, memory=None, ept=True, exception_bitmap=None, regs=None, **setup):
    """A VM in `mode` with `source` at ENTRY, canaries in the MSR bitmap page,
    and the given registers.  ept=False clears "enable EPT" and
    "unrestricted guest" (SDM 26.2.1.1: unrestricted guest needs EPT)."""
    if memory is None:
        memory = RMEM if mode == "real" else MEM
    vm = vtx.VM(memory=memory)
    vm.load(ENTRY, vtx.asm(source, bits=BITS[mode], org=ENTRY))
    vm.add_vcpu()
    if mode != "real":
        setup.setdefault("tables", TABLES)
    getattr(vm, f"setup_{mode}_mode")(entry=ENTRY, **setup)
    v = vm.vcpu
    for i in range(512):
        vm._priv_u64(0x3000 + 8 * i, canary(i))
    if not ept:
        v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, 0)
    if exception_bitmap is not None:
        v.vmwrite(F.EXCEPTION_BITMAP, exception_bitmap)
    for name, value in (regs or {}).items():
        setattr(v, name, value)
    vm.default(lambda vcpu, e: vtx.STOP)
    # The processor sets accessed and dirty flags in the guest's own tables.
    vm.page_tables = [LM_TABLES] if mode == "long" else []
    return vm


def _changed(before, after):
    """Offsets of the bytes that differ (compared a page at a time)."""
    if before == after:
        return []
    out = []
    for p in range(0, len(before), 4096):
        if before[p:p + 4096] != after[p:p + 4096]:
            out.extend(i for i in range(p, min(p + 4096, len(before))) if before[i] != after[i])
    return out


def attack(vm, *, writable=(), budget=10_000):
    """Run the guest and check (a), (b) and (c) of the module docstring.

    `writable` lists the [start, end) ranges of guest RAM the guest may
    change.  Returns a namespace with the run's `result` and `exit`, or the
    GuestMemoryError in `error`."""
    priv0 = bytes(vm._priv)
    ram0 = bytes(vm.memory)
    # The values a leak would show: EPT entries that hold private addresses
    # (>= 2^32) and the canaries; the EPT leaf entries that map guest RAM
    # hold guest-physical addresses the guest knows anyway.
    secrets = {int.from_bytes(priv0[i:i + 8], "little") for i in range(0x1000, len(priv0), 8)}
    secrets = {q for q in secrets if q >> 32}
    out = types.SimpleNamespace(result=None, exit=None, error=None)
    try:
        out.result = vm.run(max_instructions=budget)
        out.exit = out.result.exit
    except vtx.GuestMemoryError as e:
        out.error = e
    # (a) the private memory, but for the VMCS page the exits write
    priv1 = bytes(vm._priv)
    diff = _changed(priv0[0x1000:], priv1[0x1000:])
    assert not diff, f"private memory changed at offsets {[hex(0x1000 + i) for i in diff[:8]]}"
    # (b) guest RAM outside what the guest may write
    stray = [i for i in _changed(ram0, bytes(vm.memory))
             if not any(a <= i < b for a, b in list(writable) + vm.page_tables)]
    assert not stray, f"guest RAM changed outside the allowed ranges at {[hex(i) for i in stray[:8]]}"
    # (c) nothing from the private memory in the guest's registers
    v = vm.vcpu
    for name in GPRS:
        val = getattr(v, name)
        assert val not in secrets, f"{name} = {val:#x} is a qword of the private memory"
        for half in (val & 0xFFFFFFFF, val >> 32):
            assert half not in CANARY_DWORDS, f"{name} = {val:#x} holds a canary of the private memory"
    return out


def ept_qualification(access, final=True, linear=True):
    """EPT-violation exit qualification (SDM Vol. 3C Table 28-7) for an access
    to a guest-physical address that EPT does not map (bits 5:3 = 0)."""
    q = {"read": 1, "write": 2, "fetch": 4}[access]
    if linear:
        q |= 0x80 | (0x100 if final else 0)
    return q


def assert_ept_violation(out, gpa, access, gla=None, final=True, rip=None):
    ex = out.exit
    assert out.error is None, out.error
    assert ex is not None and ex.reason == R.EPT_VIOLATION, (out.result, ex)
    assert ex.gpa == gpa, f"guest-physical address {ex.gpa:#x}, expected {gpa:#x}"
    assert ex.qualification == ept_qualification(access, final, gla is not None), hex(ex.qualification)
    if gla is not None:
        assert ex.gla == gla, f"guest-linear address {ex.gla:#x}, expected {gla:#x}"
    if rip is not None:
        assert ex.guest_rip == rip, f"rip {ex.guest_rip:#x}, expected {rip:#x}"


def assert_exception(out, vector, error_code=None, qualification=0, rip=None):
    ex = out.exit
    assert out.error is None, out.error
    assert ex is not None and ex.reason == R.EXCEPTION_OR_NMI, (out.result, ex)
    assert ex.vector == vector and ex.type == 3, ex
    assert ex.error_code == error_code, ex
    assert ex.qualification == qualification, hex(ex.qualification)
    if rip is not None:
        assert ex.guest_rip == rip, f"rip {ex.guest_rip:#x}, expected {rip:#x}"


def assert_bad_phys(out, addr, wrote):
    """EPT off: the run stops with a GuestMemoryError naming the address."""
    assert out.error is not None, (out.result, out.exit)
    msg = str(out.error)
    assert f"host-physical address {addr:#x}," in msg, msg
    assert msg.startswith("the guest wrote" if wrote else "the guest read"), msg


def rip_after(mode, prefix):
    """The address of the instruction that follows `prefix` at ENTRY."""
    return ENTRY + len(vtx.asm(prefix, bits=BITS[mode], org=ENTRY))


# ---------------------------------------------------------------------------
# Reads, writes and pushes at and across the end of RAM
# ---------------------------------------------------------------------------

REG = {1: "al", 2: "ax", 4: "eax", 8: "rax"}
INDEX = {"real": "bx", "protected": "ebx", "long": "rbx"}
PATTERN = 0x8877665544332211


@pytest.mark.parametrize("mode,size,op", [
    (mode, size, op)
    for mode, sizes in (("real", (1, 2, 4)), ("protected", (1, 2, 4)), ("long", (1, 2, 4, 8)))
    for size in sizes for op in ("read", "write")])
def test_access_at_end_of_ram(mode, size, op):
    """A 1-byte access to the first byte past RAM, and wider accesses whose
    first byte is the last byte of RAM: EPT violation at the end of RAM,
    before any byte moves.  In real mode DS = 0x1FFF puts offset 0x10 at
    the end of the 128 KiB guest."""
    end = RMEM if mode == "real" else MEM
    start = end - size + 1 if size > 1 else end
    reg, idx = REG[size], INDEX[mode]
    insn = f"mov {reg}, [{idx}]" if op == "read" else f"mov [{idx}], {reg}"
    vm = build(mode, insn + "\nhlt", regs=dict(rax=PATTERN))
    if mode == "real":
        vm.vcpu.ds = vtx.Segment(0x1FFF, 0x1FFF0, 0xFFFF, 0x93)
        vm.vcpu.rbx = start - 0x1FFF0
    else:
        vm.vcpu.rbx = start
    vm.write(end - 8, bytes(range(0xF8, 0x100)))
    out = attack(vm)
    assert_ept_violation(out, end, op, gla=end, rip=ENTRY)
    assert vm.vcpu.rax == PATTERN               # a read wrote nothing into the register
    assert vm.read(end - 8, 8) == bytes(range(0xF8, 0x100))


@pytest.mark.parametrize("mode,memory,regs,insn,gpa,access", [
    # SS:SP = 0:0 pushes at 0xFFFE, past a 32 KiB guest
    ("real", 0x8000, dict(rsp=0), "push ax", 0xFFFE, "write"),
    # SS = 0x1FFF: SP 0x12 pushes at the first byte past RAM, SP 0x11 straddles it
    ("real", RMEM, dict(rsp=0x12, ss=0x1FFF), "push ax", RMEM, "write"),
    ("real", RMEM, dict(rsp=0x11, ss=0x1FFF), "push ax", RMEM, "write"),
    # ESP = 0 wraps to 0xFFFFFFFC (flat SS, 4 GiB limit)
    ("protected", MEM, dict(rsp=0), "push eax", 0xFFFFFFFC, "write"),
    ("protected", MEM, dict(rsp=MEM + 2), "push eax", MEM, "write"),
    ("protected", MEM, dict(rsp=MEM + 4, rbx=0x2000), "call ebx", MEM, "write"),
    ("long", MEM, dict(rsp=MEM + 4), "push rax", MEM, "write"),
    ("long", MEM, dict(rsp=MEM + 8, rbx=0x2000), "call rbx", MEM, "write"),
    # push of a memory operand that straddles the end: the read faults first
    ("long", MEM, dict(rsp=0x9000, rbx=MEM - 4), "push qword ptr [rbx]", MEM, "read"),
])
def test_push_at_end_of_ram(mode, memory, regs, insn, gpa, access):
    """Pushes (and CALL's return address) with the stack pointer at 0 or
    just past the end of RAM: an EPT violation, RSP unchanged, no byte
    written."""
    vm = build(mode, insn + "\nhlt", memory=memory, regs=dict(rax=PATTERN))
    v = vm.vcpu
    if "ss" in regs:
        sel = regs.pop("ss")
        v.ss = vtx.Segment(sel, sel << 4, 0xFFFF, 0x93)
    for name, value in regs.items():
        setattr(v, name, value)
    rsp = v.rsp
    out = attack(vm)
    # real-mode linear addresses and the identity tables: linear = physical
    assert_ept_violation(out, gpa, access, gla=gpa, rip=ENTRY)
    assert v.rsp == rsp


def test_long_mode_push_with_rsp_zero():
    """RSP = 0 in 64-bit mode: the push goes to 0xFFFFFFFFFFFFFFF8, which the
    identity tables leave unmapped (PML4 entry 511 is not present): #PF with
    W/R = 1, P = 0; a #PF that exits leaves CR2 alone (SDM Vol. 3C 27.1)."""
    vm = build("long", "push rax\nhlt", regs=dict(rsp=0, rax=PATTERN))
    out = attack(vm)
    assert_exception(out, VEC_PF, PF_W, qualification=0xFFFFFFFFFFFFFFF8, rip=ENTRY)
    assert vm.vcpu.rsp == 0 and vm.vcpu.cr2 == 0


# ---------------------------------------------------------------------------
# Guest page tables that point at the private memory (4-level paging)
# ---------------------------------------------------------------------------

# Entries the tests write into setup_long_mode's identity tables at TABLES.
# PML4 entry 0 covers [0, 512 GiB), so PDPT entry 256 maps linear PRIV_BASE.
PDPTE_PRIV = PDPT + 8 * ((BASE >> 30) & 511)
PD1 = PD + 0x1000                       # the PD of linear [1 GiB, 2 GiB)
PAGE_1G, PAGE_2M, TABLE = 0x83, 0x83, 0x03


def ept(gpa, access="read", final=True):
    return ("ept", gpa, access, final)


def pf(error):
    return ("pf", error)


LONG_PAGING = {
    # leaves that map the private memory
    "1g-page-at-ept-pml4": ([(PDPTE_PRIV, BASE | PAGE_1G)], "read", EPT_PML4, ept(EPT_PML4)),
    "1g-page-write-canary": ([(PDPTE_PRIV, BASE | PAGE_1G)], "write", MSR_BITMAP + 8,
                             ept(MSR_BITMAP + 8, "write")),
    "1g-page-fetch-vmcs": ([(PDPTE_PRIV, BASE | PAGE_1G)], "fetch", VMCS + 0x10,
                           ept(VMCS + 0x10, "fetch")),
    "2m-page-at-priv": ([(PD1, BASE | PAGE_2M)], "read", GiB + 0x4008, ept(EPT_PML4 + 8)),
    "4k-page-at-ept-pml4": ([(PD1 + 8, FREE | TABLE), (FREE, EPT_PML4 | 3)], "read",
                            GiB + 0x200000, ept(EPT_PML4)),
    # the last qword below the private memory (a 1 GiB page just under it)
    "1g-page-below-priv": ([(PDPT + 8 * 5, (BASE - GiB) | PAGE_1G)], "read", 6 * GiB - 8,
                           ept(BASE - 8)),
    # non-leaf entries that make the EPT structures or the VMCS a guest
    # paging structure: the walk itself reads the private memory (a
    # paging-structure access: qualification bit 8 clear)
    "pml4e-to-ept-pdpt": ([(PML4 + 8, EPT_PDPT | TABLE)], "read", 1 << 39, ept(EPT_PDPT, final=False)),
    "pdpte-to-ept-pd": ([(PDPT + 8 * 4, EPT_PD | TABLE)], "write", 4 * GiB, ept(EPT_PD, final=False)),
    "pde-to-vmcs": ([(PD1 + 16, VMCS | TABLE)], "read", GiB + 0x400000 + 0x5000,
                    ept(VMCS + 8 * 5, final=False)),
    "pde-fetch-via-ept-pml4": ([(PD1 + 16, EPT_PML4 | TABLE)], "fetch", GiB + 0x400000,
                               ept(EPT_PML4, final=False)),
    # reserved bits (SDM Vol. 3A 4.5.4): bits 51:MAXPHYADDR (39), PS in a
    # PML4 entry, bits 29:13 of a 1 GiB page, bits 20:13 of a 2 MiB page,
    # XD with IA32_EFER.NXE = 0: #PF with RSVD, whatever the address says
    "1g-page-bit-39": ([(PDPTE_PRIV, BASE | (1 << 39) | PAGE_1G)], "read", BASE, pf(PF_P | PF_RSVD)),
    "pml4e-bit-51-write": ([(PML4 + 8, EPT_PDPT | (1 << 51) | TABLE)], "write", 1 << 39,
                           pf(PF_P | PF_W | PF_RSVD)),
    "pml4e-ps": ([(PML4 + 8, BASE | 0x83)], "read", 1 << 39, pf(PF_P | PF_RSVD)),
    "1g-page-bit-13": ([(PDPTE_PRIV, BASE | 0x2000 | PAGE_1G)], "read", BASE + 0x4000, pf(PF_P | PF_RSVD)),
    "2m-page-bit-13": ([(PD1, BASE | 0x2000 | PAGE_2M)], "write", GiB, pf(PF_P | PF_W | PF_RSVD)),
    "1g-page-xd-without-nxe": ([(PDPTE_PRIV, BASE | (1 << 63) | PAGE_1G)], "read", BASE,
                               pf(PF_P | PF_RSVD)),
    # a not-present entry: its address bits mean nothing
    "1g-page-not-present": ([(PDPTE_PRIV, BASE | 0x82)], "read", BASE, pf(0)),
}

ACCESS_INSN = {"read": "mov rax, [rbx]", "write": "mov [rbx], rax", "fetch": "jmp rbx"}
ACCESS_INSN32 = {"read": "mov eax, [ebx]", "write": "mov [ebx], eax", "fetch": "jmp ebx"}


@pytest.mark.parametrize("case", LONG_PAGING)
def test_long_mode_page_tables(case):
    entries, access, linear, expect = LONG_PAGING[case]
    vm = build("long", ACCESS_INSN[access] + "\nhlt", regs=dict(rax=PATTERN, rbx=linear))
    for addr, value in entries:
        vm.write_u64(addr, value)
    assert_paging_outcome(vm, access, linear, expect)
    assert vm.vcpu.cr2 == 0
    assert vm.vcpu.rax == PATTERN


def assert_paging_outcome(vm, access, linear, expect):
    """Run the attack; the outcome is the EPT violation or the #PF `expect`
    names.  A fetch faults at the target, a data access at the instruction."""
    out = attack(vm)
    rip = linear if access == "fetch" else ENTRY
    if expect[0] == "ept":
        _, gpa, kind, final = expect
        assert_ept_violation(out, gpa, kind, gla=linear, final=final, rip=rip)
    else:
        assert_exception(out, VEC_PF, expect[1], qualification=linear, rip=rip)


# ---------------------------------------------------------------------------
# 32-bit paging (PSE, PSE-36) and PAE paging
# ---------------------------------------------------------------------------

PD32, PT32, PT32B = 0x20000, 0x21000, 0x22000     # guest tables, in RAM


def paged32(source, pse=True, **kw):
    """Protected mode with 32-bit paging set up by the hypervisor: PDE 0 ->
    a page table that identity-maps the first 4 MiB (RAM and the 3 MiB past
    it); CR4.PSE = pse."""
    vm = build("protected", source, **kw)
    v = vm.vcpu
    vm.write_u32(PD32, PT32 | 3)
    vm.write(PT32, b"".join(((i << 12) | 3).to_bytes(4, "little") for i in range(1024)))
    v.cr3 = PD32
    v.cr0 = 0x80000031                      # PG, NE, ET, PE
    vm._set_cr4(v, 0x10 if pse else 0)
    vm.page_tables = [(PD32, PT32B + 0x1000)]
    return vm


def PSE36(phys):
    """A 4 MiB-page PDE for phys: bits 31:22 in place, bits 39:32 in 20:13."""
    return (phys & 0xFFC00000) | (((phys >> 32) & 0xFF) << 13) | 0x83


L4M = 0x400000                          # linear 4 MiB: PDE 1

PAGING32 = {
    # a 4 MiB page past RAM
    "4m-page-past-ram": ([(PD32 + 4, 0xFFC00083)], "read", L4M + 0x3FFFFC, ept(0xFFFFFFFC)),
    # PSE-36: PDE bits 20:13 are physical bits 39:32 (SDM Vol. 3A 4.3), so
    # bit 19 reaches PRIV_BASE = 2^38
    "pse36-page-at-ept-pml4": ([(PD32 + 4, PSE36(BASE))], "read", L4M + 0x4000, ept(EPT_PML4)),
    "pse36-write-canary": ([(PD32 + 4, PSE36(BASE))], "write", L4M + 0x3000, ept(MSR_BITMAP, "write")),
    "pse36-fetch-vmcs": ([(PD32 + 4, PSE36(BASE))], "fetch", L4M + 0x10, ept(VMCS + 0x10, "fetch")),
    # With MAXPHYADDR = 39, bits 21:20 of a 4 MiB PDE are reserved (SDM Vol.
    # 3A Table 4-4: bits 21:(M-19); 4.7): #PF with RSVD, never an access.
    "pse36-bit-21-reserved": ([(PD32 + 4, 0x83 | (1 << 21))], "read", L4M, pf(PF_P | PF_RSVD)),
    "pse36-bit-20-beyond-maxphyaddr": ([(PD32 + 4, PSE36(BASE) | (1 << 20))], "read", L4M + 0x4000,
                                       pf(PF_P | PF_RSVD)),
    # a page table past RAM (the walk faults), a 4 KiB page past RAM
    "pde-to-table-past-ram": ([(PD32 + 4, 0xFFFFF003)], "read", L4M, ept(0xFFFFF000, final=False)),
    "pte-past-ram-write": ([(PD32 + 8, PT32B | 3), (PT32B, 0xFFFFE003)], "write", 2 * L4M,
                           ept(0xFFFFE000, "write")),
}


@pytest.mark.parametrize("case", PAGING32)
def test_32bit_paging(case):
    entries, access, linear, expect = PAGING32[case]
    vm = paged32(ACCESS_INSN32[access] + "\nhlt", regs=dict(rax=0x44332211, rbx=linear))
    for addr, value in entries:
        vm.write_u32(addr, value)
    assert_paging_outcome(vm, access, linear, expect)
    assert vm.vcpu.rax == 0x44332211


def test_32bit_paging_ps_ignored_without_pse():
    """With CR4.PSE = 0 the PS flag of a PDE is ignored (SDM Vol. 3A 4.3): the
    PSE-36 entry for PRIV_BASE is then a page-table pointer to 0x80000, a
    zero page in RAM, so the access is a not-present #PF and nothing above
    RAM is touched."""
    vm = paged32("mov eax, [ebx]\nhlt", pse=False, regs=dict(rax=0x44332211, rbx=L4M + 0x4000))
    vm.write_u32(PD32 + 4, PSE36(BASE))
    out = attack(vm)
    assert_exception(out, VEC_PF, 0, qualification=L4M + 0x4000, rip=ENTRY)


def test_paging_off_flushes_stale_translations():
    """MOV to CR0 that clears PG invalidates every TLB entry (SDM Vol. 3A
    4.10.4.1).  Linear 4 MiB maps RAM through a 4 MiB page; once paging is
    off, linear 4 MiB is guest-physical 4 MiB, past the 1 MiB of RAM, and
    the same load must be an EPT violation, not a read of RAM through the
    translation paging had."""
    vm = paged32("""
        mov eax, [ebx]                 # through the 4 MiB page: RAM 0x10
        mov ecx, cr0
        and ecx, 0x7fffffff
        mov cr0, ecx                   # paging off
        mov edx, [ebx]                 # linear = guest-physical 0x400010
        hlt
    """, regs=dict(rbx=L4M + 0x10, rdx=0))
    vm.write_u32(PD32 + 4, 0x83)
    vm.write_u32(0x10, 0xA5A5A5A5)
    out = attack(vm)
    rip = rip_after("protected", "mov eax, [ebx]\nmov ecx, cr0\nand ecx, 0x7fffffff\nmov cr0, ecx")
    assert vm.vcpu.rax == 0xA5A5A5A5
    assert_ept_violation(out, L4M + 0x10, "read", gla=L4M + 0x10, rip=rip)
    assert vm.vcpu.rdx == 0


PDPT_PAE, PD_PAE, PT_PAE = 0x20000, 0x21000, 0x22000
# The guest turns PAE paging on itself: MOV CR0 loads the four PDPTEs from
# CR3 (SDM Vol. 3A 4.4.1), through EPT.
PAE_ON = """
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x20000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
"""
PAE_LOAD = PAE_ON + "mov cr0, eax\n"


def paged_pae(attack_source, prologue=PAE_LOAD, **kw):
    """Protected mode; the guest enables PAE paging with PDPTE 0 -> PD whose
    entry 0 identity-maps the first 2 MiB with a 2 MiB page."""
    vm = build("protected", prologue + attack_source + "\nhlt", **kw)
    vm.write_u64(PDPT_PAE, PD_PAE | 1)
    vm.write_u64(PD_PAE, 0x83)
    vm.page_tables = [(PDPT_PAE, PT_PAE + 0x1000)]
    return vm


PAE_PAGING = {
    # PDPTE 1 -> a page directory at PRIV_BASE: the walk reads it
    "pdpte-to-priv": ([(PDPT_PAE + 8, BASE | 1)], "read", GiB + 0x18, ept(BASE + 0, final=False)),
    "pde-2m-page-at-priv": ([(PD_PAE + 8, BASE | 0x83)], "read", 0x204000, ept(EPT_PML4)),
    "pte-at-ept-pml4-write": ([(PD_PAE + 16, PT_PAE | 3), (PT_PAE, EPT_PML4 | 3)], "write", 0x400000,
                              ept(EPT_PML4, "write")),
    "pde-fetch-from-vmcs": ([(PD_PAE + 8, BASE | 0x83)], "fetch", 0x200020, ept(VMCS + 0x20, "fetch")),
    # reserved bits: PAE PDEs and PTEs reserve bits 62:MAXPHYADDR (SDM Vol.
    # 3A 4.4.2), 2 MiB pages bits 20:13 too
    "pde-bit-40": ([(PD_PAE + 8, BASE | (1 << 40) | 0x83)], "read", 0x204000, pf(PF_P | PF_RSVD)),
    "pde-bit-13": ([(PD_PAE + 8, BASE | 0x2000 | 0x83)], "write", 0x204000, pf(PF_P | PF_W | PF_RSVD)),
    "pde-bit-62": ([(PD_PAE + 8, BASE | (1 << 62) | 0x83)], "read", 0x204000, pf(PF_P | PF_RSVD)),
}


@pytest.mark.parametrize("case", PAE_PAGING)
def test_pae_paging(case):
    entries, access, linear, expect = PAE_PAGING[case]
    vm = paged_pae(ACCESS_INSN32[access], regs=dict(rbx=linear, rdx=0x44332211))
    for addr, value in entries:
        vm.write_u64(addr, value)
    out = attack(vm)
    rip = linear if access == "fetch" else rip_after("protected", PAE_LOAD)
    if expect[0] == "ept":
        _, gpa, kind, final = expect
        assert_ept_violation(out, gpa, kind, gla=linear, final=final, rip=rip)
    else:
        assert_exception(out, VEC_PF, expect[1], qualification=linear, rip=rip)
    assert vm.vcpu.rdx == 0x44332211


@pytest.mark.parametrize("bit", [40, 63])
def test_pae_pdpte_reserved_bits(bit):
    """A PDPTE with P = 1 and a reserved bit (bits 63:MAXPHYADDR, SDM Vol. 3A
    Table 4-8) makes the MOV to CR0 that loads it #GP(0); the PDPTEs are not
    loaded and paging stays off."""
    vm = paged_pae("", regs=dict(rbx=GiB))
    vm.write_u64(PDPT_PAE + 8, BASE | (1 << bit) | 1)
    out = attack(vm)
    assert_exception(out, VEC_GP, 0, rip=rip_after("protected", PAE_ON))
    assert not vm.vcpu.cr0 & 0x80000000


@pytest.mark.parametrize("loader", ["mov-cr3", "mov-cr0"])
def test_pae_pdptes_past_ram(loader):
    """The PDPTEs are loaded by MOV to CR3 with PAE paging on, and by the MOV
    to CR0 that turns PAE paging on (SDM Vol. 3A 4.4.1).  With CR3 past RAM
    that load is an EPT violation with no guest-linear address
    (qualification bit 7 clear, SDM Vol. 3C Table 28-7), at the MOV, which
    does not complete."""
    v_cr3 = "mov eax, 0x7ffff000\n"
    if loader == "mov-cr3":
        vm = paged_pae(v_cr3 + "mov cr3, eax")
        rip = rip_after("protected", PAE_LOAD + v_cr3)
    else:
        prologue = PAE_ON.replace("0x20000", "0x7ffff000")
        vm = paged_pae("mov cr0, eax", prologue=prologue)
        rip = rip_after("protected", prologue)
    out = attack(vm)
    assert_ept_violation(out, 0x7FFFF000, "read", gla=None, rip=rip)
    if loader == "mov-cr3":
        assert vm.vcpu.cr3 == 0x20000
    else:
        assert not vm.vcpu.cr0 & 0x80000000


# ---------------------------------------------------------------------------
# CR3 pointing past RAM or into the private memory
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cr3", [EPT_PML4, VMCS, MSR_BITMAP, 0x40000000, MEM])
def test_long_mode_cr3_outside_ram(cr3):
    """MOV to CR3 with the EPT PML4 (or the VMCS, the bitmaps, an address
    past RAM) as the guest's PML4: the fetch of the next instruction walks
    it, and that paging-structure read is the EPT violation."""
    vm = build("long", "mov cr3, rax\nhlt", regs=dict(rax=cr3))
    out = attack(vm)
    nxt = ENTRY + 3                                  # 0F 22 D8
    assert_ept_violation(out, cr3, "read", gla=nxt, final=False, rip=nxt)
    assert vm.vcpu.cr3 == cr3


def test_long_mode_cr3_beyond_maxphyaddr():
    """CR3 bits 63:MAXPHYADDR are reserved in IA-32e mode: #GP(0), CR3 kept."""
    vm = build("long", "mov cr3, rax\nhlt", regs=dict(rax=EPT_PML4 | (1 << 39)))
    cr3 = vm.vcpu.cr3
    out = attack(vm)
    assert_exception(out, VEC_GP, 0, rip=ENTRY)
    assert vm.vcpu.cr3 == cr3


def test_hypervisor_set_cr3_at_ept_tables():
    """A guest CR3 the hypervisor itself set to the EPT PML4: the first fetch
    walks it through EPT, which does not map it."""
    vm = build("long", "hlt")
    vm.vcpu.cr3 = EPT_PML4
    out = attack(vm)
    assert_ept_violation(out, EPT_PML4, "read", gla=ENTRY, final=False, rip=ENTRY)


def test_32bit_paging_cr3_past_ram():
    """The guest loads CR3 past RAM and turns 32-bit paging on: the next fetch
    reads the page directory there."""
    vm = build("protected", "mov cr3, eax\nmov cr0, ecx\nhlt", regs=dict(rax=0xFFFFF000, rcx=0x80000031))
    out = attack(vm)
    nxt = ENTRY + 6
    assert_ept_violation(out, 0xFFFFF000, "read", gla=nxt, final=False, rip=nxt)


# ---------------------------------------------------------------------------
# IDTR and GDTR past RAM or at the private memory
# ---------------------------------------------------------------------------

DESC = 0x3000            # where the tests put the LIDT/LGDT operand


def pseudo_descriptor(limit, base, size):
    return limit.to_bytes(2, "little") + base.to_bytes(size, "little")


def gate32(offset, sel=0x08):
    """A 32-bit interrupt gate (type 0xE, present, DPL 0)."""
    return ((offset & 0xFFFF) | (sel << 16) | (0x8E << 40) | ((offset >> 16) << 48)).to_bytes(8, "little")


def gate64(offset, sel=0x18):
    return gate32(offset & 0xFFFFFFFF, sel) + (offset >> 32).to_bytes(8, "little")


def idt_info(vector, type_, error=False):
    """IDT-vectoring information (SDM Vol. 3C 25.9.3)."""
    return vector | (type_ << 8) | (0x800 if error else 0) | 0x80000000


@pytest.mark.parametrize("mode,base,trigger,vector,type_,length,error", [
    # real mode: the IVT entry of #UD, of INT 21h (a software interrupt: the
    # exit reports its length, SDM Vol. 3C 27.2.5)
    ("real", RMEM, "ud2", VEC_UD, 3, 0, False),
    ("real", RMEM, "int 0x21", 0x21, 4, 2, False),
    ("protected", MEM, "ud2", VEC_UD, 3, 0, False),
    # #GP(0) from the DS limit, delivered with its error code
    ("protected", 0xFFFFF000, "mov ebx, 0xfffffffe\nmov eax, [ebx]", VEC_GP, 3, 0, True),
    # a gate that straddles the end of RAM (a software exception: INT3)
    ("protected", MEM - 0x1C, "int3", 3, 6, 1, False),
    # long mode: linear PRIV_BASE mapped to guest-physical PRIV_BASE
    ("long", BASE, "ud2", VEC_UD, 3, 0, False),
    ("long", EPT_PML4, "int 0x80", 0x80, 4, 2, False),
])
def test_idt_outside_ram(mode, base, trigger, vector, type_, length, error):
    """LIDT with a base past RAM or at the private memory, then an event
    delivered through the IDT (exception bitmap 0): reading the gate is the
    EPT violation, and the exit says which event it was delivering."""
    size = {"real": 4, "protected": 4, "long": 8}[mode]
    lidt = f"lidt [{INDEX[mode]}]"
    vm = build(mode, f"{lidt}\n{trigger}\nhlt", exception_bitmap=0, regs=dict(rbx=DESC, rax=PATTERN))
    vm.write(DESC, pseudo_descriptor(0xFFF, base, size))
    if mode == "long":
        vm.write_u64(PDPTE_PRIV, BASE | PAGE_1G)
    out = attack(vm)
    gate = base + vector * {"real": 4, "protected": 8, "long": 16}[mode]
    end = RMEM if mode == "real" else MEM
    rip = rip_after(mode, "\n".join([lidt] + trigger.split("\n")[:-1]))
    # a gate that straddles the end faults on its second page
    gpa = gate if gate >= end else end
    assert_ept_violation(out, gpa, "read", gla=gpa, rip=rip)
    ex = out.exit
    assert ex.idt_vectoring_info == idt_info(vector, type_, error)
    assert ex.idt_vectoring_error_code == 0
    assert ex.instruction_length == length
    assert vm.vcpu.rax == PATTERN


def test_idt_at_unmapped_priv_base_page_fault():
    """LIDT at linear PRIV_BASE + 0x4000, which the guest's tables do not
    map, and only #PF intercepted: delivering #UD takes a #PF on the gate;
    that exits with CR2-to-be in the qualification and #UD in the
    IDT-vectoring information."""
    vm = build("long", "lidt [rbx]\nud2\nhlt", exception_bitmap=1 << VEC_PF, regs=dict(rbx=DESC))
    vm.write(DESC, pseudo_descriptor(0xFFF, EPT_PML4, 8))
    out = attack(vm)
    assert_exception(out, VEC_PF, 0, qualification=EPT_PML4 + 16 * VEC_UD, rip=ENTRY + 3)
    assert out.exit.idt_vectoring_info == idt_info(VEC_UD, 3)


def test_idt_at_unmapped_priv_base_triple_fault():
    """The same with nothing intercepted: #UD, #PF on its gate, #PF on the
    #PF gate (#DF), #PF on the #DF gate: a triple fault (SDM Vol. 3A 6.15),
    which exits (reason 2)."""
    vm = build("long", "lidt [rbx]\nud2\nhlt", exception_bitmap=0, regs=dict(rbx=DESC))
    vm.write(DESC, pseudo_descriptor(0xFFF, EPT_PML4, 8))
    out = attack(vm)
    assert out.error is None and out.exit.reason == R.TRIPLE_FAULT, out.exit
    assert out.exit.guest_rip == ENTRY + 3


@pytest.mark.parametrize("mode,rsp,gpa", [
    ("protected", MEM + 8, MEM + 4),       # EFLAGS at ESP - 4: past RAM
    ("protected", MEM + 2, MEM),           # EFLAGS straddles the end; CS, EIP inside RAM
    ("long", MEM + 0x20, MEM + 0x18),      # SS at RSP - 8 (RSP 16-aligned)
])
def test_exception_frame_past_ram(mode, rsp, gpa):
    """The IDT is in RAM but the stack is just past it: delivering #UD
    writes the frame there.  Every slot is probed before any is written, so
    the frame's slots that lie inside RAM stay untouched."""
    idt = 0x4000
    vm = build(mode, "ud2\nhlt", exception_bitmap=0, regs=dict(rsp=rsp))
    gate = gate64(0x1800) if mode == "long" else gate32(0x1800)
    vm.write(idt + len(gate) * VEC_UD, gate)
    vm.vcpu.idtr = vtx.DescriptorTable(idt, 0xFFF)
    vm.write(MEM - 0x40, b"\xEE" * 0x40)
    out = attack(vm)
    assert_ept_violation(out, gpa, "write", gla=gpa, rip=ENTRY)
    assert vm.read(MEM - 0x40, 0x40) == b"\xEE" * 0x40
    assert out.exit.idt_vectoring_info == idt_info(VEC_UD, 3)
    assert vm.vcpu.rsp == rsp


@pytest.mark.parametrize("mode,base,sel", [
    ("protected", MEM, 0x10),
    ("protected", MEM - 0xC, 0x08),          # the descriptor straddles the end of RAM
    ("long", BASE, 0x10),
    ("long", EPT_PML4, 0x18),
])
def test_gdt_outside_ram(mode, base, sel):
    """LGDT with a base past RAM or at the private memory, then MOV DS: the
    descriptor read is the EPT violation."""
    lgdt = f"lgdt [{INDEX[mode]}]"
    vm = build(mode, f"{lgdt}\nmov ds, ax\nhlt", regs=dict(rbx=DESC, rax=sel))
    vm.write(DESC, pseudo_descriptor(0xFFFF, base, 8 if mode == "long" else 4))
    if mode == "long":
        vm.write_u64(PDPTE_PRIV, BASE | PAGE_1G)
    ds = vm.vcpu.ds
    out = attack(vm)
    gpa = max(base + sel, MEM) if mode == "protected" else base + sel
    assert_ept_violation(out, gpa, "read", gla=gpa, rip=ENTRY + 3)
    assert out.exit.idt_vectoring_info == 0
    assert vm.vcpu.ds == ds


def test_real_mode_segment_load_ignores_gdt():
    """In real mode MOV DS does not read the GDT (SDM Vol. 3A 20.1.1): a GDTR
    past RAM is never used, and the guest reaches its HLT."""
    vm = build("real", "lgdt [bx]\nmov ds, ax\nhlt", regs=dict(rbx=DESC, rax=0x1234))
    vm.write(DESC, pseudo_descriptor(0xFFFF, RMEM, 4))
    out = attack(vm)
    assert out.exit.reason == R.HLT
    assert vm.vcpu.ds.base == 0x12340 and vm.vcpu.gdtr.base == RMEM


# ---------------------------------------------------------------------------
# String instructions whose range runs across the end of RAM
# ---------------------------------------------------------------------------

M64 = (1 << 64) - 1


@pytest.mark.parametrize("name,mode,source,regs,fault,after,writable", [
    # MOVSB from the last 16 bytes of RAM: 16 copies, then the read faults
    ("movsb-source", "protected", "rep movsb", dict(rsi=MEM - 0x10, rdi=0x2000, rcx=0x100),
     ("ept", MEM, "read"), dict(rcx=0xF0, rsi=MEM, rdi=0x2010), [(0x2000, 0x2010)]),
    ("stosb-huge-ecx", "protected", "rep stosb", dict(rdi=MEM - 0x10, rcx=0xFFFFFFFF, rax=0xAB),
     ("ept", MEM, "write"), dict(rcx=0xFFFFFFEF, rdi=MEM), [(MEM - 0x10, MEM)]),
    # STOSQ whose third qword straddles the end: that one writes nothing
    ("stosq-straddle", "long", "rep stosq", dict(rdi=MEM - 0x14, rcx=M64, rax=PATTERN),
     ("ept", MEM, "write"), dict(rcx=M64 - 2, rdi=MEM - 4), [(MEM - 0x14, MEM - 4)]),
    ("lodsb", "long", "rep lodsb", dict(rsi=MEM - 8, rcx=M64, rax=0),
     ("ept", MEM, "read"), dict(rcx=M64 - 8, rsi=MEM, rax=0xFF), []),
    # into and out of the private memory (linear PRIV_BASE mapped 1:1)
    ("movsq-from-canaries", "long", "rep movsq", dict(rsi=MSR_BITMAP, rdi=0x2000, rcx=0x200),
     ("ept", MSR_BITMAP, "read"), dict(rcx=0x200, rsi=MSR_BITMAP, rdi=0x2000), []),
    ("movsb-into-ept", "long", "rep movsb", dict(rsi=0x2000, rdi=EPT_PML4, rcx=0x1000),
     ("ept", EPT_PML4, "write"), dict(rcx=0x1000, rdi=EPT_PML4), []),
    # downwards through address 0: 17 bytes, then RDI = 2^64 - 1 (unmapped)
    ("std-stosb-through-zero", "long", "std\nrep stosb", dict(rdi=0x10, rcx=0x100, rax=0),
     ("pf", PF_W, M64), dict(rcx=0x100 - 17, rdi=M64), [(0, 0x11)]),
    # downwards through 0 with 32-bit addresses: EDI wraps to 0xFFFFFFFC
    ("std-stosd-wraps", "protected", "std\nrep stosd", dict(rdi=8, rcx=0x100, rax=0),
     ("ept", 0xFFFFFFFC, "write"), dict(rcx=0x100 - 3, rdi=0xFFFFFFFC), [(0, 12)]),
    # real mode: ES = 0x1FFF puts DI = 0x10 at the end of the 128 KiB guest
    ("real-movsb", "real", "rep movsb", dict(rsi=0x2000, rdi=0, rcx=0x8000, es=0x1FFF),
     ("ept", RMEM, "write"), dict(rcx=0x8000 - 0x10, rdi=0x10), [(RMEM - 0x10, RMEM)]),
    ("real-lodsd", "real", "rep lodsd", dict(rsi=0, rcx=0x100, ds=0x1FFF),
     ("ept", RMEM, "read"), dict(rcx=0x100 - 4, rsi=0x10), []),
])
def test_string_instruction_across_end(name, mode, source, regs, fault, after, writable):
    """REP MOVS/STOS/LODS run until the first access outside RAM, which is
    the exit; the registers say where they stopped (SDM Vol. 2B REP: a fault
    leaves rCX, rSI, rDI at the faulting iteration)."""
    vm = build(mode, source + "\nhlt")
    v = vm.vcpu
    for name_, value in regs.items():
        if name_ in ("es", "ds"):
            setattr(v, name_, vtx.Segment(value, value << 4, 0xFFFF, 0x93))
        else:
            setattr(v, name_, value)
    if mode == "long":
        vm.write_u64(PDPTE_PRIV, BASE | PAGE_1G)
    end = RMEM if mode == "real" else MEM
    vm.write(end - 0x10, bytes(range(0xF0, 0x100)))
    vm.write(0x2000, bytes(range(0x10)) * 0x100)
    out = attack(vm, writable=writable)
    rip = rip_after(mode, source.split("\n")[0]) if "\n" in source else ENTRY
    if fault[0] == "ept":
        assert_ept_violation(out, fault[1], fault[2], gla=fault[1], rip=rip)
    else:
        assert_exception(out, VEC_PF, fault[1], qualification=fault[2], rip=rip)
    for reg, value in after.items():
        assert getattr(v, reg) == value, f"{reg} = {getattr(v, reg):#x}, expected {value:#x}"
    if name == "movsb-source":
        assert vm.read(0x2000, 0x10) == vm.read(MEM - 0x10, 0x10)
    if name == "stosb-huge-ecx":
        assert vm.read(MEM - 0x10, 0x10) == b"\xAB" * 0x10


def io_passthrough(vm, bitmaps=False):
    """Let IN/OUT/INS/OUTS run in the guest: no unconditional I/O exiting;
    with bitmaps, the (all-zero) I/O bitmaps in the private memory decide."""
    v = vm.vcpu
    ctl = v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) & ~ProcBased.UNCONDITIONAL_IO_EXITING
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, ctl | (ProcBased.USE_IO_BITMAPS if bitmaps else 0))


@pytest.mark.parametrize("mode,source,regs,fault,after,writable,bitmaps", [
    # INSB with nothing behind port 0x80 stores 0xFF: 8 of them, then the fault
    ("protected", "rep insb", dict(rdi=MEM - 8, rcx=0x1000), ("write", MEM),
     dict(rcx=0x1000 - 8, rdi=MEM), [(MEM - 8, MEM)], False),
    ("long", "rep outsb", dict(rsi=MEM - 8, rcx=0x1000), ("read", MEM),
     dict(rcx=0x1000 - 8, rsi=MEM), [], False),
    # the first dword straddles the end: nothing is stored
    ("long", "rep insd", dict(rdi=MEM - 2, rcx=5), ("write", MEM), dict(rcx=5, rdi=MEM - 2), [], False),
    ("long", "rep outsd", dict(rsi=MSR_BITMAP, rcx=4), ("read", MSR_BITMAP),
     dict(rcx=4, rsi=MSR_BITMAP), [], False),
    # the same through the I/O bitmaps (read from the private memory, never written)
    ("protected", "rep insw", dict(rdi=MEM - 6, rcx=0x1000), ("write", MEM),
     dict(rcx=0x1000 - 3, rdi=MEM), [(MEM - 6, MEM)], True),
])
def test_string_io_across_end(mode, source, regs, fault, after, writable, bitmaps):
    """INS/OUTS executed by the guest (I/O exiting off) across the end of RAM
    or into the private memory: one iteration per execution, and the
    iteration that leaves RAM is the EPT violation."""
    vm = build(mode, source + "\nhlt", regs=dict(rdx=0x80, **regs))
    io_passthrough(vm, bitmaps)
    if mode == "long":
        vm.write_u64(PDPTE_PRIV, BASE | PAGE_1G)
    out = attack(vm, writable=writable)
    assert_ept_violation(out, fault[1], fault[0], gla=fault[1], rip=ENTRY)
    for reg, value in after.items():
        assert getattr(vm.vcpu, reg) == value, f"{reg} = {getattr(vm.vcpu, reg):#x}"
    if writable:
        a, b = writable[0]
        assert vm.read(a, b - a) == b"\xFF" * (b - a)


def test_string_io_huge_count_stops_at_budget():
    """REP OUTSB with RCX = 2^64 - 1 re-executes once per iteration, so the
    instruction budget stops it exactly, long before it leaves RAM."""
    vm = build("long", "rep outsb\nhlt", regs=dict(rsi=0x2000, rcx=M64, rdx=0x80))
    io_passthrough(vm)
    out = attack(vm, budget=5000)
    assert out.result.stop == "budget" and out.result.instructions == 5000
    assert vm.vcpu.rcx == M64 - 5000 and vm.vcpu.rsi == 0x2000 + 5000 and vm.vcpu.rip == ENTRY


def test_string_io_exit_reports_the_buffer():
    """With I/O exiting (the default) REP INSB exits before touching memory;
    the exit names the port, direction, string and REP (SDM Vol. 3C Table
    28-5), the 32-bit address size (Table 28-8) and ES:EDI as the linear
    address, even when that is the last byte of RAM."""
    vm = build("protected", "rep insb\nhlt", regs=dict(rdi=MEM - 1, rcx=0x100, rdx=0x80))
    out = attack(vm)
    ex = out.exit
    assert ex.reason == R.IO_INSTRUCTION
    assert ex.qualification == (0x80 << 16) | 0x20 | 0x10 | 0x08
    assert ex.instruction_length == 2 and ex.instruction_info == 1 << 7
    assert ex.guest_linear_address == MEM - 1
    assert vm.vcpu.rcx == 0x100 and vm.vcpu.rdi == MEM - 1


# ---------------------------------------------------------------------------
# Self-modifying code at the end of RAM
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["protected", "long"])
def test_patching_the_last_bytes_of_ram(mode):
    """The last three bytes of RAM are a subroutine, MOV AL, imm8; RET.  The
    guest calls it, patches its immediate (the second-to-last byte) and
    calls it again, then replaces the RET (the last byte of RAM) with a NOP
    and calls it a third time, so execution runs off the end: a fetch EPT
    violation at the end of RAM, after both patches took effect (the decoded
    copy of the subroutine is dropped when its bytes are written)."""
    sub = MEM - 3
    vm = build(mode, f"""
        mov ebx, {sub:#x}
        call rbx
        mov cl, al
        mov byte ptr [{sub + 1:#x}], 0x22
        call rbx
        mov dl, al
        mov byte ptr [{sub + 2:#x}], 0x90
        call rbx
        hlt
    """.replace("rbx", "ebx" if mode == "protected" else "rbx"))
    vm.write(sub, b"\xB0\x11\xC3")               # mov al, 0x11; ret
    out = attack(vm, writable=[STACK, (sub, MEM)])
    assert_ept_violation(out, MEM, "fetch", gla=MEM, rip=MEM)
    v = vm.vcpu
    assert (v.rcx & 0xFF, v.rdx & 0xFF, v.rax & 0xFF) == (0x11, 0x22, 0x22)
    assert vm.read(sub, 3) == b"\xB0\x22\x90"


@pytest.mark.parametrize("mode,insn", [
    ("protected", b"\xB8"),                 # MOV EAX, imm32 with no immediate in RAM
    ("long", b"\x48\xB8\x01\x02\x03"),      # MOV RAX, imm64 with 3 of 8 bytes in RAM
])
def test_guest_writes_an_instruction_that_straddles_the_end(mode, insn):
    """The guest stores the start of an instruction in the last bytes of RAM
    and jumps to it: the fetch of its remaining bytes is the EPT violation,
    at the instruction (RIP = its first byte), and RAX is untouched."""
    at = MEM - len(insn)
    stores = "\n".join(f"mov byte ptr [{at + i:#x}], {b:#x}" for i, b in enumerate(insn))
    vm = build(mode, f"{stores}\nmov ebx, {at:#x}\njmp {'ebx' if mode == 'protected' else 'rbx'}",
               regs=dict(rax=PATTERN if mode == "long" else 0x44332211))
    rax = vm.vcpu.rax
    out = attack(vm, writable=[(at, MEM)])
    assert_ept_violation(out, MEM, "fetch", gla=MEM, rip=at)
    assert vm.vcpu.rax == rax and vm.read(at, len(insn)) == insn


def test_straddling_store_over_code_at_the_end():
    """A dword store at MEM - 2 over the code's own last two bytes: the store
    exits before writing either page, so those code bytes survive."""
    vm = build("protected", "mov ebx, 0xffffe\nmov dword ptr [ebx], 0x90909090\nhlt")
    vm.write(MEM - 2, b"\xEB\xFE")             # jmp $ : code in the last bytes
    out = attack(vm)
    assert_ept_violation(out, MEM, "write", gla=MEM, rip=ENTRY + 5)
    assert vm.read(MEM - 2, 2) == b"\xEB\xFE"


def test_rep_stosb_rewrites_code_up_to_the_end():
    """REP STOSB turns the last 0x20 bytes of RAM, code that already ran once
    (INC EBX; CMP; JE back), into NOPs: the second pass must run the NOPs
    and fall off the end, a fetch EPT violation, with EBX = 1; a stale
    decoded copy would run INC EBX again and reach a HLT."""
    start, tail = MEM - 0x40, MEM - 0x20
    vm = build("long", f"mov edx, {start:#x}\njmp rdx", regs=dict(rbx=0, rax=0x90, rcx=0x20, rdi=tail))
    vm.write(start, vtx.asm("""
        jmp tail
    back:
        rep stosb
        jmp tail
        .org 0x20, 0xf4
    tail:
        inc ebx
        cmp ebx, 1
        je back
        .org 0x40, 0xf4
    """, bits=64, org=start))
    out = attack(vm, writable=[(tail, MEM)])
    assert_ept_violation(out, MEM, "fetch", gla=MEM, rip=MEM)
    assert vm.vcpu.rbx == 1 and vm.vcpu.rcx == 0
    assert vm.read(tail, 0x20) == b"\x90" * 0x20


# ---------------------------------------------------------------------------
# EPT off: guest-physical is host-physical, and only the guest's RAM backs it
# ---------------------------------------------------------------------------
#
# Without "unrestricted guest" the guest needs CR0.PE = CR0.PG = 1 (SDM
# 26.3.1.1), so the protected-mode cases use 32-bit paging.  The EPT tables
# stay in the private memory: a guest that could read them would find valid
# -looking paging-structure entries, which is why the walks below target them.

def lm_no_ept(source, **regs):
    """Long mode without EPT, linear PRIV_BASE mapped to PRIV_BASE (1 GiB)."""
    vm = build("long", source + "\nhlt", ept=False, regs=dict(rax=PATTERN, **regs))
    vm.write_u64(PDPTE_PRIV, BASE | PAGE_1G)
    return vm


def test_ept_off_reads_past_ram():
    """A load from the first byte past RAM (identity-mapped by the guest)."""
    vm = paged32("mov eax, [ebx]\nhlt", ept=False, regs=dict(rbx=MEM, rax=0x44332211))
    out = attack(vm)
    assert_bad_phys(out, MEM, wrote=False)
    assert vm.vcpu.rax == 0x44332211 and vm.vcpu.rip == ENTRY


def test_ept_off_straddling_write():
    """A dword store across the end of RAM: refused before either byte in RAM
    is written."""
    vm = paged32("mov [ebx], eax\nhlt", ept=False, regs=dict(rbx=MEM - 2, rax=0x44332211))
    vm.write(MEM - 2, b"\xAA\xBB")
    out = attack(vm)
    assert_bad_phys(out, MEM, wrote=True)
    assert vm.read(MEM - 2, 2) == b"\xAA\xBB"


@pytest.mark.parametrize("access,linear,addr", [
    ("read", L4M + 0x4000, EPT_PML4),
    ("write", L4M + 0x3000, MSR_BITMAP),
    ("fetch", L4M + 0x10, VMCS + 0x10),
])
def test_ept_off_pse36_page_at_priv(access, linear, addr):
    """A PSE-36 4 MiB page at PRIV_BASE: a host-physical address of the
    private memory, which is no guest-visible slot."""
    vm = paged32(ACCESS_INSN32[access] + "\nhlt", ept=False, regs=dict(rbx=linear, rax=0x44332211))
    vm.write_u32(PD32 + 4, PSE36(BASE))
    out = attack(vm)
    assert_bad_phys(out, addr, wrote=access == "write")
    assert vm.vcpu.rip == (linear if access == "fetch" else ENTRY)


def test_ept_off_idt_past_ram():
    """#UD delivered through an IDT past RAM (exception bitmap 0)."""
    vm = paged32("lidt [ebx]\nud2\nhlt", ept=False, exception_bitmap=0, regs=dict(rbx=DESC))
    vm.write(DESC, pseudo_descriptor(0xFFF, MEM, 4))
    out = attack(vm)
    assert_bad_phys(out, MEM + 8 * VEC_UD, wrote=False)


def pae_then_ept_off(attack_source):
    """Without EPT the guest cannot turn paging off to switch to PAE paging
    (CR0.PG is fixed to 1 without unrestricted guest), so it enables PAE
    paging under EPT, and its VMCALL asks the hypervisor to turn EPT and
    unrestricted guest off before it goes on."""
    vm = paged_pae("vmcall\n" + attack_source)

    @vm.on(R.VMCALL)
    def ept_off(vcpu, exit):
        vcpu.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, 0)
        return vtx.RESUME
    return vm


def test_ept_off_pae_walk_into_ept_pd():
    """PDPTE 1 names the EPT PD as the guest's page directory: with EPT off
    the walk is a host-physical read of the private memory, refused."""
    vm = pae_then_ept_off("mov eax, [ebx]")
    vm.vcpu.rbx = GiB + 0x18
    vm.write_u64(PDPT_PAE + 8, EPT_PD | 1)
    out = attack(vm)
    assert_bad_phys(out, EPT_PD, wrote=False)
    assert vm.vcpu.rip == rip_after("protected", PAE_LOAD + "vmcall")


def test_ept_off_pae_pdptes_past_ram():
    """With PAE paging on, MOV to CR3 past RAM loads the PDPTEs from memory
    no slot backs: the run stops with a GuestMemoryError, CR3 unchanged."""
    vm = pae_then_ept_off("mov eax, 0x7ffff000\nmov cr3, eax")
    out = attack(vm)
    assert_bad_phys(out, 0x7FFFF000, wrote=False)
    assert vm.vcpu.cr3 == 0x20000


def test_ept_off_hypervisor_set_pae_pdptes():
    """A PAE guest set up by the hypervisor with EPT off: VM entry loads the
    PDPTEs from the table CR3 names (SDM Vol. 3C 26.3.2.4), and PDPTE 1
    points past RAM, so the access through it reads memory no slot backs."""
    vm = build("protected", "mov eax, [ebx]\nhlt", ept=False, regs=dict(rbx=GiB))
    v = vm.vcpu
    vm.write_u64(PDPT_PAE, PD_PAE | 1)
    vm.write_u64(PDPT_PAE + 8, 0x7FFFF000 | 1)
    vm.write_u64(PD_PAE, 0x83)
    v.cr3 = PDPT_PAE
    v.cr0 = 0x80000031
    vm._set_cr4(v, 0x20)
    vm.page_tables = [(PDPT_PAE, PT_PAE)]
    out = attack(vm)
    assert_bad_phys(out, 0x7FFFF000, wrote=False)
    assert vm.vcpu.rip == ENTRY


@pytest.mark.parametrize("name,source,regs,addr,wrote", [
    ("read-canary", "mov rax, [rbx]", dict(rbx=MSR_BITMAP), MSR_BITMAP, False),
    ("write-ept-pml4", "mov [rbx], rax", dict(rbx=EPT_PML4), EPT_PML4, True),
    ("fetch-vmcs", "jmp rbx", dict(rbx=VMCS + 0x10), VMCS + 0x10, False),
    ("cr3-at-ept-pml4", "mov cr3, rbx", dict(rbx=EPT_PML4), EPT_PML4, False),
    ("pml4e-to-ept-pdpt", "mov rax, [rbx]", dict(rbx=1 << 39), EPT_PDPT, False),
    ("push-past-ram", "push rax", dict(rsp=MEM + 4), MEM, True),
    ("rep-movsb-across-end", "rep movsb", dict(rsi=MEM - 0x10, rdi=0x2000, rcx=0x100), MEM, False),
    ("idt-at-priv", "lidt [rbx]\nud2", dict(rbx=DESC), BASE + 16 * VEC_UD, False),
])
def test_ept_off_long_mode(name, source, regs, addr, wrote):
    """Long mode without EPT: linear PRIV_BASE is mapped 1:1 by a 1 GiB page
    and PML4 entry 1 names the EPT PDPT, yet every path to the private
    memory (or past RAM) ends in a GuestMemoryError with nothing written."""
    vm = lm_no_ept(source, **regs)
    vm.write_u64(PML4 + 8, EPT_PDPT | TABLE)
    if name == "idt-at-priv":
        vm.vcpu.vmwrite(F.EXCEPTION_BITMAP, 0)
        vm.write(DESC, pseudo_descriptor(0xFFF, BASE, 8))
    rsp = vm.vcpu.rsp
    out = attack(vm, writable=[(0x2000, 0x2010)])
    assert_bad_phys(out, addr, wrote)
    assert vm.vcpu.rax == PATTERN and vm.vcpu.rsp == rsp
    if name == "rep-movsb-across-end":
        assert (vm.vcpu.rcx, vm.vcpu.rsi, vm.vcpu.rdi) == (0xF0, MEM, 0x2010)
