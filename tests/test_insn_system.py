"""System instructions outside VMX operation, on the bare machine
(vtx.BareMetal): XSETBV/XGETBV and XCR0, INVD, WBINVD, RDTSCP, RDPMC,
MONITOR/MWAIT, PAUSE, CLTS/LMSW/SMSW, MOV DR, INVPCID and CPUID's report of
them (SDM Vol. 2 for each instruction; Vol. 1 13.3 for XCR0).  The guest
exits of the same instructions are in test_vmx_exits_insn.py.

The code runs in real-address mode at CPL 0 with an IVT whose vector-n
handler loads n into SI and halts, so a fault shows as its vector.
"""

import pytest

import vtx

CODE = 0x1000
STUBS = 0x600
NO_FAULT = 0xFFFF


def run_real(src, budget=10_000):
    """Run src (16-bit code) then HLT; returns (cpu, vector or None)."""
    hw = vtx.BareMetal(memory=1 << 20)
    ivt = b"".join((STUBS + 4 * v).to_bytes(2, "little") + b"\x00\x00" for v in range(32))
    hw.load(0, ivt)
    hw.load(STUBS, b"".join(b"\xbe" + v.to_bytes(2, "little") + b"\xf4" for v in range(32)))  # mov si, v; hlt
    hw.load(CODE, vtx.asm(src + "\nhlt\n", bits=16, org=CODE))
    cpu = hw.setup_real_mode(entry=CODE, stack=0x8000)
    cpu.rsi = NO_FAULT
    r = hw.run(max_instructions=budget)
    assert r.stop == "halted", r
    si = cpu.rsi & 0xFFFF
    return cpu, (None if si == NO_FAULT else si)


OSXSAVE_ON = "mov eax, cr4\nor eax, 1 << 18\nmov cr4, eax\n"


# --- XSETBV / XGETBV ---------------------------------------------------------------

@pytest.mark.parametrize("insn", ["xsetbv", "xgetbv"])
def test_xcr_instructions_ud_without_cr4_osxsave(insn):
    cpu, vec = run_real(f"xor ecx, ecx\nmov eax, 1\nxor edx, edx\n{insn}")
    assert vec == 6


@pytest.mark.parametrize("ecx,edx_eax,vector", [
    (0, 1, None),                  # x87 only
    (0, 3, None),                  # x87 and SSE state: what the model supports
    (1, 1, 13),                    # no XCR 1
    (0, 0, 13),                    # XCR0[0] must be 1
    (0, 5, 13),                    # AVX (and without SSE)
    (0, 1 | (1 << 40), 13),        # a reserved bit in EDX
])
def test_xsetbv_checks(ecx, edx_eax, vector):
    src = OSXSAVE_ON + f"""
        mov ecx, {ecx}
        mov eax, {edx_eax & 0xFFFFFFFF}
        mov edx, {edx_eax >> 32}
        xsetbv
        mov eax, -1
        mov edx, -1
        xor ecx, ecx
        xgetbv
    """
    cpu, vec = run_real(src)
    assert vec == vector
    if vector is None:
        assert (cpu.rax & 0xFFFFFFFF, cpu.rdx & 0xFFFFFFFF) == (edx_eax, 0)


def test_cpuid_reports_osxsave_after_cr4_write():
    src = """
        mov eax, 1
        cpuid
        mov edi, ecx
        mov eax, cr4
        or eax, 1 << 18
        mov cr4, eax
        mov eax, 1
        cpuid
        mov esi, 0xffff
    """
    cpu, vec = run_real(src)
    assert vec is None
    assert cpu.rdi & (1 << 26) and not cpu.rdi & (1 << 27)      # XSAVE; OSXSAVE clear
    assert cpu.rcx & (1 << 27) and cpu.rcx & (1 << 3)          # OSXSAVE now; MONITOR


def test_cpuid_leaves_0_7_d():
    src = """
        xor eax, eax
        cpuid
        mov edi, eax
        mov eax, 7
        xor ecx, ecx
        cpuid
        mov ebp, ebx
        mov eax, 0xd
        xor ecx, ecx
        cpuid
    """
    cpu, vec = run_real(src)
    assert cpu.rdi & 0xFFFFFFFF == 0xD
    assert cpu.rbp & (1 << 10)                                 # INVPCID
    assert (cpu.rax & 0xFFFFFFFF, cpu.rbx & 0xFFFFFFFF, cpu.rcx & 0xFFFFFFFF) == (3, 576, 576)    # x87 and SSE state


# --- cache and TSC instructions, RDPMC -----------------------------------------------

def test_invd_wbinvd_outside_vmx():
    cpu, vec = run_real("invd\nwbinvd\nmov ebx, 1")
    assert vec is None and cpu.rbx & 0xFFFF == 1


def test_rdtscp_outside_vmx_needs_no_control():
    src = """
        mov ecx, 0xc0000103
        mov eax, 0x55aa
        xor edx, edx
        wrmsr
        rdtsc
        mov ebx, eax
        rdtscp
    """
    cpu, vec = run_real(src)
    assert vec is None
    assert cpu.rcx & 0xFFFFFFFF == 0x55AA
    assert (cpu.rax - cpu.rbx) & 0xFFFFFFFF == 2


def test_rdpmc_no_counters():
    cpu, vec = run_real("xor ecx, ecx\nrdpmc")
    assert vec == 13


# --- MONITOR, MWAIT, PAUSE ------------------------------------------------------------

def test_monitor_mwait_pause_outside_vmx():
    cpu, vec = run_real("mov ax, 0x2000\nxor ecx, ecx\nxor edx, edx\nmonitor\nmwait\npause\nmov ebx, 3")
    assert vec is None and cpu.rbx & 0xFFFF == 3


def test_monitor_ecx_gp():
    cpu, vec = run_real("mov ecx, 1\nmonitor")
    assert vec == 13


# --- CR0: CLTS, LMSW, SMSW ---------------------------------------------------------------

def test_clts_lmsw_smsw_outside_vmx():
    src = """
        mov ax, 0x000e
        lmsw ax
        smsw bx
        clts
        smsw cx
    """
    cpu, vec = run_real(src)
    assert vec is None
    assert cpu.rbx & 0xF == 0xE                 # MP EM TS; PE still 0 (real mode)
    assert cpu.rcx & 0xF == 0x6                 # TS cleared by CLTS


def test_lmsw_enters_protected_mode():
    # LMSW can set PE (and not clear it): SMSW reads it back.
    cpu, vec = run_real("mov ax, 1\nlmsw ax\nsmsw bx\nxor ax, ax\nlmsw ax\nsmsw cx\njmp $+2")
    assert vec is None
    assert cpu.rbx & 1 and cpu.rcx & 1


# --- MOV DR -----------------------------------------------------------------------------

def test_mov_dr_outside_vmx():
    src = """
        mov eax, 0x1234
        mov dr3, eax
        mov ebx, dr3
        mov eax, 0x400f
        mov dr6, eax
        mov ecx, dr6
        mov eax, cr4
        or eax, 8
        mov cr4, eax
        mov edx, dr4
    """
    cpu, vec = run_real(src)
    assert cpu.rbx & 0xFFFFFFFF == 0x1234
    assert cpu.rcx & 0xFFFFFFFF == 0xFFFF4FFF     # B0-B3 and BS written; fixed 1s
    assert vec == 6                               # DR4 with CR4.DE = 1


# --- INVPCID ------------------------------------------------------------------------------

def test_invpcid_outside_vmx():
    src = """
        mov dword ptr [0x2000], 0
        mov dword ptr [0x2004], 0
        mov dword ptr [0x2008], 0x3000
        mov dword ptr [0x200c], 0
        xor eax, eax
        invpcid eax, [0x2000]
        mov ebx, 1
        mov eax, 4
        invpcid eax, [0x2000]
    """
    cpu, vec = run_real(src)
    assert cpu.rbx & 0xFFFF == 1
    assert vec == 13                              # type 4
