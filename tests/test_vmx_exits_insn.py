"""Instruction-caused VM exits (SDM Vol. 3C 26.1.2 and 26.1.3, pinned
edition 325462-080US): INVD, WBINVD, RDTSCP, RDPMC, MONITOR, MWAIT, PAUSE
(and PAUSE-loop exiting), XSETBV, CLTS, LMSW, MOV DR, the descriptor-table
instructions and INVPCID.  For each: the exceptions that take priority over
the exit, the exit with its control set (reason, qualification, instruction
information, length, guest RIP) and the instruction's effect with it clear.
"""

import pytest

import vtx
from vtx import ExitReason as R, VmcsField as F, ProcBased as P, ProcBased2 as P2, Segment

MODES = {"real": 16, "protected": 32, "long": 64}
CODE = 0x1000
DATA = 0x20000
MEM = 1 << 20
VALID = 1 << 31
EC_VALID = 1 << 11
HW_EXCEPTION = 3

# Control-register access qualification (SDM Table 28-3)
CR_CLTS = 2 << 4
CR_LMSW = 3 << 4
LMSW_MEMORY = 1 << 6


def make_vm(src, mode="protected", proc=0, proc2=0, ring3=False):
    vm = vtx.VM(memory=MEM)
    vm.load(CODE, vtx.asm(src + "\nhlt\n", bits=MODES[mode], org=CODE))
    vm.add_vcpu()
    getattr(vm, f"setup_{mode}_mode")(entry=CODE)
    v = vm.vcpu
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | int(proc))
    v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) | int(proc2))
    if ring3:
        # 32-bit protected mode at CPL 3: flat DPL-3 code and data (the
        # guest-state checks read only the hidden parts, not the GDT).
        assert mode == "protected"
        v.cs = Segment(0x1B, 0, 0xFFFFFFFF, 0xC0FB)
        for name in ("ds", "es", "ss", "fs", "gs"):
            setattr(v, name, Segment(0x23, 0, 0xFFFFFFFF, 0xC0F3))
    return vm


def first_exit(vm, budget=10000):
    """Run to the first exit and stop there."""
    vm.default(lambda vcpu, ex: vtx.STOP)
    r = vm.run(max_instructions=budget)
    assert r.exit is not None, r.stop
    return r.exit


def run_to_hlt(vm, budget=10000):
    ex = first_exit(vm, budget)
    assert ex.reason == R.HLT, f"expected HLT, got {ex!r}"
    return ex


def prefix_len(src, mode):
    return len(vtx.asm(src, bits=MODES[mode], org=CODE)) if src else 0


def assert_exception(ex, vector, error_code=None):
    assert type(ex) is vtx.ExceptionExit and ex.reason == R.EXCEPTION_OR_NMI
    if error_code is None:
        assert ex.interruption_info == VALID | (HW_EXCEPTION << 8) | vector
    else:
        assert ex.interruption_info == VALID | EC_VALID | (HW_EXCEPTION << 8) | vector
        assert ex.interruption_error_code == error_code


def assert_insn_exit(ex, reason, length, rip, qual=0, info=0):
    assert ex.reason == reason and ex.raw_reason == reason
    assert ex.qualification == qual
    assert ex.instruction_length == length
    assert ex.instruction_info == info
    assert ex.guest_rip == rip


# ---------------------------------------------------------------------------
# INVD (13, unconditional) and WBINVD (54, "WBINVD exiting")
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_invd_exits_unconditionally(mode):
    pre = "mov eax, 1"
    vm = make_vm(pre + "\ninvd", mode)
    ex = first_exit(vm)
    assert_insn_exit(ex, 13, 2, CODE + prefix_len(pre, mode))
    assert ex.name == "INVD"


def test_invd_at_cpl3_is_gp_not_exit():
    ex = first_exit(make_vm("invd", ring3=True))
    assert_exception(ex, 13, 0)
    assert ex.guest_rip == CODE


@pytest.mark.parametrize("mode", MODES)
def test_wbinvd_exit(mode):
    vm = make_vm("nop\nwbinvd", mode, proc2=P2.WBINVD_EXITING)
    assert_insn_exit(first_exit(vm), 54, 2, CODE + 1)


@pytest.mark.parametrize("mode", MODES)
def test_wbinvd_without_exiting_executes(mode):
    vm = make_vm("wbinvd\nmov eax, 7", mode)
    run_to_hlt(vm)
    assert vm.vcpu.eax == 7


def test_wbinvd_needs_secondary_controls_active():
    # With "activate secondary controls" clear, the secondary controls read
    # as 0 (SDM 25.6.2).  Without them there is no unrestricted guest: the
    # long-mode setup has paging on.
    vm = make_vm("wbinvd", "long", proc2=P2.WBINVD_EXITING)
    v = vm.vcpu
    v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, int(P2.WBINVD_EXITING))
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS,
              v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) & ~int(P.ACTIVATE_SECONDARY_CONTROLS))
    run_to_hlt(vm)


def test_wbinvd_at_cpl3_is_gp_not_exit():
    ex = first_exit(make_vm("wbinvd", proc2=P2.WBINVD_EXITING, ring3=True))
    assert_exception(ex, 13, 0)


# ---------------------------------------------------------------------------
# RDTSCP (51): #UD unless "enable RDTSCP"; exits with "RDTSC exiting"
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_rdtscp_ud_without_enable(mode):
    vm = make_vm("rdtscp", mode, proc=P.RDTSC_EXITING)
    assert_exception(first_exit(vm), 6)


@pytest.mark.parametrize("mode", MODES)
def test_rdtscp_exit(mode):
    vm = make_vm("nop\nrdtscp", mode, proc=P.RDTSC_EXITING, proc2=P2.ENABLE_RDTSCP)
    ex = first_exit(vm)
    assert type(ex) is vtx.RdtscExit and ex.name == "RDTSCP"
    assert_insn_exit(ex, 51, 3, CODE + 1)


@pytest.mark.parametrize("mode", MODES)
def test_rdtscp_reads_tsc_and_tsc_aux(mode):
    src = """
        mov ecx, 0xc0000103
        mov eax, 0xabcd1234
        xor edx, edx
        wrmsr
        rdtsc
        mov esi, eax
        mov edi, edx
        rdtscp
    """
    # MSR bitmaps of zeros: the WRMSR of IA32_TSC_AUX does not exit
    vm = make_vm(src, mode, proc=P.USE_TSC_OFFSETTING | P.USE_MSR_BITMAPS, proc2=P2.ENABLE_RDTSCP)
    v = vm.vcpu
    v.vmwrite(F.TSC_OFFSET, 0x0123456700000000)
    run_to_hlt(vm)
    assert v.rcx == 0xABCD1234                   # IA32_TSC_AUX[31:0], zero-extended
    t1 = (v.edi << 32) | v.esi
    t2 = (v.edx << 32) | v.eax
    assert t2 - t1 == 3                          # three instructions retired in between
    assert v.edx == 0x01234567                   # the TSC offset applies as for RDTSC


def test_rdtscp_tsd_at_cpl3_is_gp_before_exit():
    vm = make_vm("rdtscp", proc=P.RDTSC_EXITING, proc2=P2.ENABLE_RDTSCP, ring3=True)
    vm.vcpu.cr4 |= 1 << 2                       # CR4.TSD
    assert_exception(first_exit(vm), 13, 0)


def test_rdtscp_ud_has_priority_over_tsd_gp():
    vm = make_vm("rdtscp", ring3=True)
    vm.vcpu.cr4 |= 1 << 2
    assert_exception(first_exit(vm), 6)


def test_rdtscp_in_cpuid_model():
    vm = make_vm("nop")
    assert vm.vcpu.model_cpuid(0x80000001)[3] & (1 << 27)


# ---------------------------------------------------------------------------
# RDPMC (15)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_rdpmc_exit(mode):
    vm = make_vm("xor ecx, ecx\nrdpmc", mode, proc=P.RDPMC_EXITING)
    assert_insn_exit(first_exit(vm), 15, 2, CODE + prefix_len("xor ecx, ecx", mode))


@pytest.mark.parametrize("mode", MODES)
def test_rdpmc_without_exiting_no_counters_gp(mode):
    ex = first_exit(make_vm("xor ecx, ecx\nrdpmc", mode))
    assert_exception(ex, 13, None if mode == "real" else 0)
    assert ex.guest_rip == CODE + prefix_len("xor ecx, ecx", mode)


def test_rdpmc_cpl3_without_pce_is_gp_before_exit():
    ex = first_exit(make_vm("rdpmc", proc=P.RDPMC_EXITING, ring3=True))
    assert_exception(ex, 13, 0)


def test_rdpmc_cpl3_with_pce_exits():
    vm = make_vm("rdpmc", proc=P.RDPMC_EXITING, ring3=True)
    vm.vcpu.cr4 |= 1 << 8                       # CR4.PCE
    assert_insn_exit(first_exit(vm), 15, 2, CODE)


# ---------------------------------------------------------------------------
# MONITOR (39), MWAIT (36)
# ---------------------------------------------------------------------------

ARM = f"mov eax, {DATA:#x}\nxor ecx, ecx\nxor edx, edx\nmonitor\n"


@pytest.mark.parametrize("mode", MODES)
def test_monitor_exit(mode):
    pre = f"mov eax, {DATA:#x}\nxor ecx, ecx"
    vm = make_vm(pre + "\nmonitor", mode, proc=P.MONITOR_EXITING)
    assert_insn_exit(first_exit(vm), 39, 3, CODE + prefix_len(pre, mode))


@pytest.mark.parametrize("mode", MODES)
def test_mwait_exit_armed(mode):
    vm = make_vm(ARM + "mwait", mode, proc=P.MWAIT_EXITING)
    ex = first_exit(vm)
    assert type(ex) is vtx.MwaitExit and ex.armed
    assert_insn_exit(ex, 36, 3, CODE + prefix_len(ARM, mode), qual=1)


@pytest.mark.parametrize("mode", MODES)
def test_mwait_exit_not_armed(mode):
    vm = make_vm("xor ecx, ecx\nmwait", mode, proc=P.MWAIT_EXITING)
    ex = first_exit(vm)
    assert type(ex) is vtx.MwaitExit and not ex.armed
    assert_insn_exit(ex, 36, 3, CODE + prefix_len("xor ecx, ecx", mode), qual=0)


def test_vm_exit_clears_monitoring():
    # SDM 28.5.6: the CPUID exit between MONITOR and MWAIT disarms it.
    vm = make_vm(ARM + "push eax\ncpuid\npop eax\nxor ecx, ecx\nmwait", proc=P.MWAIT_EXITING)
    seen = []

    @vm.default
    def h(vcpu, ex):
        seen.append(ex)
        return vtx.RESUME if ex.reason == R.CPUID else vtx.STOP

    vm.run(max_instructions=1000)
    assert [e.reason for e in seen] == [R.CPUID, R.MWAIT]
    assert seen[1].qualification == 0


def test_monitor_mwait_without_exiting_execute():
    vm = make_vm(ARM + "mwait\nmov esi, 5", "long")
    run_to_hlt(vm)
    assert vm.vcpu.esi == 5


@pytest.mark.parametrize("insn", ["monitor", "mwait"])
def test_monitor_mwait_ud_at_cpl3_before_exit(insn):
    vm = make_vm(f"xor ecx, ecx\n{insn}", proc=P.MONITOR_EXITING | P.MWAIT_EXITING, ring3=True)
    assert_exception(first_exit(vm), 6)


def test_monitor_ecx_nonzero_gp_after_exit_check():
    assert_exception(first_exit(make_vm(f"mov eax, {DATA:#x}\nmov ecx, 1\nmonitor")), 13, 0)
    # with MONITOR exiting the exit comes first (only #UD and privilege faults precede it)
    vm = make_vm(f"mov eax, {DATA:#x}\nmov ecx, 1\nmonitor", proc=P.MONITOR_EXITING)
    assert first_exit(vm).reason == R.MONITOR


def test_monitor_beyond_segment_limit_gp():
    vm = make_vm("mov eax, 0x2000\nxor ecx, ecx\nmonitor")
    vm.vcpu.ds = Segment(0x10, 0, 0x1FFF, 0x4093)          # DS limit 1FFF
    assert_exception(first_exit(vm), 13, 0)
    vm = make_vm("mov eax, 0x1fff\nxor ecx, ecx\nmonitor\nmov esi, 1")
    vm.vcpu.ds = Segment(0x10, 0, 0x1FFF, 0x4093)
    run_to_hlt(vm)
    assert vm.vcpu.esi == 1


def test_mwait_reserved_ecx_gp():
    assert_exception(first_exit(make_vm("mov ecx, 2\nmwait")), 13, 0)
    run_to_hlt(make_vm("mov ecx, 1\nmwait"))      # interrupt break-event: allowed


@pytest.mark.parametrize("insn", ["monitor", "mwait"])
def test_monitor_mwait_ud_with_misc_enable_18_clear(insn):
    # IA32_MISC_ENABLE[18] clear: MONITOR/MWAIT are #UD, before their exits,
    # and CPUID stops reporting them.  (MSR bitmaps of zeros: the MSR
    # accesses do not exit.)
    src = f"mov ecx, 0x1a0\nrdmsr\nand eax, ~(1 << 18)\nwrmsr\nxor ecx, ecx\n{insn}"
    vm = make_vm(src, proc=P.USE_MSR_BITMAPS | P.MONITOR_EXITING | P.MWAIT_EXITING)
    assert vm.vcpu.model_cpuid(1)[2] & (1 << 3)
    assert_exception(first_exit(vm), 6)
    assert not vm.vcpu.model_cpuid(1)[2] & (1 << 3)


def test_monitor_in_cpuid_model():
    vm = make_vm("nop")
    assert vm.vcpu.model_cpuid(1)[2] & (1 << 3)
    assert vm.vcpu.model_cpuid(5)[:3] == (64, 64, 3)


# ---------------------------------------------------------------------------
# PAUSE (40): "PAUSE exiting" and "PAUSE-loop exiting"
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_pause_exit(mode):
    vm = make_vm("nop\npause", mode, proc=P.PAUSE_EXITING)
    ex = first_exit(vm)
    assert_insn_exit(ex, 40, 2, CODE + 1)


@pytest.mark.parametrize("mode", MODES)
def test_nop_and_rep_xchg_are_not_pause(mode):
    src = "nop\nmov eax, 1\nmov ebx, 2\n.byte 0xf3, 0x93\n"      # F3 93: XCHG eAX, eBX with an ignored REP
    vm = make_vm(src, mode, proc=P.PAUSE_EXITING)
    run_to_hlt(vm)
    assert (vm.vcpu.eax, vm.vcpu.ebx) == (2, 1)


def test_rex_b_pause_is_xchg_r8():
    vm = make_vm("mov eax, 1\nmov r8d, 2\n.byte 0xf3, 0x41, 0x90", "long", proc=P.PAUSE_EXITING)
    run_to_hlt(vm)
    assert (vm.vcpu.eax, vm.vcpu.r8d) == (2, 1)


def test_pause_without_exiting_executes():
    vm = make_vm("pause\nmov eax, 3", "long")
    run_to_hlt(vm)
    assert vm.vcpu.eax == 3


def test_pause_exiting_at_cpl3():
    ex = first_exit(make_vm("pause", proc=P.PAUSE_EXITING, ring3=True))
    assert ex.reason == R.PAUSE


SPIN = "xor ecx, ecx\n1: inc ecx\npause\njmp 1b"


@pytest.mark.parametrize("mode", MODES)
def test_pause_loop_exiting(mode):
    # Each PAUSE follows the last after 3 instructions (the model's TSC
    # counts retired instructions): not more than PLE_Gap = 3, so one loop,
    # whose first PAUSE is the first after VM entry.  The PAUSE that finds
    # more than PLE_Window = 99 since that one exits: the 35th (3 * 34 > 99;
    # 3 * 33 = 99 does not exceed it).
    vm = make_vm(SPIN, mode, proc2=P2.PAUSE_LOOP_EXITING)
    vm.vcpu.vmwrite(F.PLE_GAP, 3)
    vm.vcpu.vmwrite(F.PLE_WINDOW, 99)
    ex = first_exit(vm)
    assert_insn_exit(ex, 40, 2, CODE + prefix_len("xor ecx, ecx\ninc ecx", mode))
    assert vm.vcpu.ecx == 35


def test_pause_loop_gap_just_exceeded_never_exits():
    # PLE_Gap = 2 < 3: every PAUSE starts a new loop; the run ends at its budget.
    vm = make_vm(SPIN, proc2=P2.PAUSE_LOOP_EXITING)
    vm.vcpu.vmwrite(F.PLE_GAP, 2)
    vm.vcpu.vmwrite(F.PLE_WINDOW, 0)
    vm.default(lambda vcpu, ex: vtx.STOP)
    r = vm.run(max_instructions=3000)
    assert r.exit is None and r.stop == "budget"
    assert vm.vcpu.ecx == 1000


def test_pause_loop_gap_exceeded_starts_new_loop():
    # Five instructions between PAUSEs > PLE_Gap = 2: every PAUSE is the
    # first of a loop, and none exits.
    src = "mov ecx, 200\n1: pause\nnop\nnop\nnop\nloop 1b"
    vm = make_vm(src, proc2=P2.PAUSE_LOOP_EXITING)
    vm.vcpu.vmwrite(F.PLE_GAP, 2)
    vm.vcpu.vmwrite(F.PLE_WINDOW, 10)
    run_to_hlt(vm)
    assert vm.vcpu.ecx == 0


def test_pause_loop_exiting_ignored_at_cpl3():
    src = "mov ecx, 100\n1: pause\nloop 1b"
    vm = make_vm(src, proc2=P2.PAUSE_LOOP_EXITING, ring3=True)
    vm.vcpu.vmwrite(F.PLE_GAP, 10)
    vm.vcpu.vmwrite(F.PLE_WINDOW, 0)
    # HLT at CPL 3 is #GP: the run reaches it only if no PAUSE exited.
    ex = first_exit(vm)
    assert_exception(ex, 13, 0)
    assert vm.vcpu.ecx == 0


def test_pause_loop_restarts_after_vm_entry():
    # After the handler resumes, the next PAUSE is the first of a new loop.
    vm = make_vm(SPIN, proc2=P2.PAUSE_LOOP_EXITING)
    vm.vcpu.vmwrite(F.PLE_GAP, 3)
    vm.vcpu.vmwrite(F.PLE_WINDOW, 99)
    counts = []

    @vm.default
    def h(vcpu, ex):
        assert ex.reason == R.PAUSE
        counts.append(vcpu.ecx)
        return vtx.RESUME if len(counts) < 3 else vtx.STOP

    vm.run(max_instructions=100000)
    assert counts == [35, 35 + 35, 35 + 35 + 35]


# ---------------------------------------------------------------------------
# XSETBV (55, unconditional), XGETBV, CPUID.OSXSAVE
# ---------------------------------------------------------------------------

OSXSAVE = 1 << 18


@pytest.mark.parametrize("insn", ["xsetbv", "xgetbv"])
def test_xcr_instructions_ud_without_osxsave(insn):
    vm = make_vm(f"xor ecx, ecx\nmov eax, 1\nxor edx, edx\n{insn}")
    assert_exception(first_exit(vm), 6)


@pytest.mark.parametrize("mode", MODES)
def test_xsetbv_exits_unconditionally(mode):
    pre = "xor ecx, ecx\nmov eax, 1\nxor edx, edx"
    vm = make_vm(pre + "\nxsetbv", mode)
    vm.vcpu.cr4 |= OSXSAVE
    assert_insn_exit(first_exit(vm), 55, 3, CODE + prefix_len(pre, mode))


def test_xsetbv_cpl3_gp_before_exit():
    vm = make_vm("xsetbv", ring3=True)
    vm.vcpu.cr4 |= OSXSAVE
    assert_exception(first_exit(vm), 13, 0)


@pytest.mark.parametrize("mode", MODES)
def test_xgetbv_reads_xcr0(mode):
    vm = make_vm("mov edx, -1\nxor ecx, ecx\nxgetbv", mode)
    vm.vcpu.cr4 |= OSXSAVE
    assert vm.vcpu.xcr0 == 1
    run_to_hlt(vm)
    assert (vm.vcpu.eax, vm.vcpu.edx) == (1, 0)


def test_xgetbv_ecx_1_gp():
    vm = make_vm("mov ecx, 1\nxgetbv")
    vm.vcpu.cr4 |= OSXSAVE
    assert_exception(first_exit(vm), 13, 0)


def test_xgetbv_at_cpl3():
    vm = make_vm("xor ecx, ecx\nxgetbv\nmov ebx, eax\nint3", ring3=True)
    vm.vcpu.cr4 |= OSXSAVE
    ex = first_exit(vm)
    assert ex.reason == R.EXCEPTION_OR_NMI and ex.vector == 3
    assert vm.vcpu.ebx == 1


def test_cpuid_xsave_and_osxsave_follow_cr4():
    vm = make_vm("nop")
    v = vm.vcpu
    ecx = v.model_cpuid(1)[2]
    assert ecx & (1 << 26) and not ecx & (1 << 27)
    v.cr4 |= OSXSAVE
    assert v.model_cpuid(1)[2] & (1 << 27)
    assert v.model_cpuid(0)[0] == 0xD
    assert v.model_cpuid(0xD, 0) == (3, 576, 576, 0)      # XCR0: x87 and SSE


# ---------------------------------------------------------------------------
# CLTS, LMSW (28, access types 2 and 3), SMSW and MOV from CR0 through the shadow
# ---------------------------------------------------------------------------

TS = 1 << 3


def cr0_setup(vm, mask, shadow, ts=None):
    v = vm.vcpu
    if ts is not None:
        v.cr0 = (v.cr0 & ~TS) | (TS if ts else 0)
    v.vmwrite(F.CR0_GUEST_HOST_MASK, mask)
    v.vmwrite(F.CR0_READ_SHADOW, shadow)


@pytest.mark.parametrize("mode", MODES)
def test_clts_exits_when_ts_masked_and_shadowed(mode):
    vm = make_vm("nop\nclts", mode)
    cr0_setup(vm, TS, TS)
    ex = first_exit(vm)
    assert type(ex) is vtx.CrAccessExit
    assert_insn_exit(ex, 28, 2, CODE + 1, qual=CR_CLTS)
    assert (ex.cr, ex.access_type, ex.gpr) == (0, 2, 0)
    assert ex.lmsw_source is None


@pytest.mark.parametrize("mode", MODES)
def test_clts_masked_shadow_clear_leaves_ts(mode):
    vm = make_vm("clts", mode)
    cr0_setup(vm, TS, 0, ts=True)
    run_to_hlt(vm)
    assert vm.vcpu.cr0 & TS


@pytest.mark.parametrize("mode", MODES)
def test_clts_unmasked_clears_ts(mode):
    vm = make_vm("clts", mode)
    cr0_setup(vm, 0, TS, ts=True)
    run_to_hlt(vm)
    assert not vm.vcpu.cr0 & TS


def test_clts_cpl3_gp_before_exit():
    vm = make_vm("clts", ring3=True)
    cr0_setup(vm, TS, TS)
    assert_exception(first_exit(vm), 13, 0)


@pytest.mark.parametrize("mode", MODES)
def test_lmsw_register_exit(mode):
    pre = "mov eax, 0x1239"             # PE, TS and bits 15:4 that LMSW ignores
    vm = make_vm(pre + "\nlmsw ax", mode)
    v = vm.vcpu
    cr0_setup(vm, 0xF, v.cr0 & ~TS)      # TS differs from the shadow
    ex = first_exit(vm)
    qual = CR_LMSW | (0x1239 << 16)
    assert_insn_exit(ex, 28, 3, CODE + prefix_len(pre, mode), qual=qual)
    assert ex.lmsw_source == 0x1239 and ex.lmsw_memory is False
    assert ex.access_type == 3 and ex.cr == 0


@pytest.mark.parametrize("mode,src,lin", [
    ("real", "mov bx, 0x200\nlmsw [bx+0x10]", 0x210),
    ("protected", "mov ebx, 0x20000\nlmsw [ebx+0x10]", 0x20010),
    ("long", "mov rbx, 0x20000\nlmsw [rbx+0x10]", 0x20010),
])
def test_lmsw_memory_exit_reports_linear_address(mode, src, lin):
    vm = make_vm(src, mode)
    vm.write(lin, (0x000E).to_bytes(2, "little"))
    v = vm.vcpu
    cr0_setup(vm, 0x4, 0)               # EM owned by the host, shadow 0; source sets it
    ex = first_exit(vm)
    assert ex.reason == 28
    assert ex.qualification == CR_LMSW | LMSW_MEMORY | (0x000E << 16)
    assert ex.lmsw_memory is True
    assert ex.guest_linear_address == lin
    assert v.vmread(F.GUEST_LINEAR_ADDRESS) == lin


def test_guest_linear_address_only_for_lmsw_with_memory():
    # An LMSW exit with a memory operand reports its linear address; the
    # CLTS and LMSW-register exits after it report none (0).
    vm = make_vm("mov ebx, 0x20000\nlmsw [ebx]\nclts\nlmsw ax")
    vm.write(0x20000, (0x0004).to_bytes(2, "little"))
    cr0_setup(vm, 0xF, TS)
    vm.vcpu.eax = 0
    seen = []

    @vm.default
    def h(vcpu, ex):
        seen.append((ex.access_type, ex.guest_linear_address))
        return vtx.RESUME if len(seen) < 3 else vtx.STOP

    vm.run(max_instructions=100)
    assert seen == [(3, 0x20000), (2, 0), (3, 0)]


def test_lmsw_pe_exit_only_when_setting_it():
    # Real mode (unrestricted guest) with PE owned by the host and a shadow
    # PE of 0: LMSW with PE = 1 exits, with PE = 0 it does not (LMSW never
    # clears PE, so it cannot "write" a 0 there).
    vm = make_vm("mov ax, 0\nlmsw ax\nmov ax, 1\nlmsw ax", "real")
    cr0_setup(vm, 0x1, 0)
    ex = first_exit(vm)
    assert ex.reason == 28 and ex.lmsw_source == 1
    assert ex.guest_rip == CODE + prefix_len("mov ax, 0\nlmsw ax\nmov ax, 1", "real")
    assert vm.vcpu.cr0 & 1 == 0


def test_lmsw_clearing_owned_pe_does_not_exit():
    # PE host-owned with a shadow PE of 1: an LMSW source with PE = 0 does
    # not exit (LMSW cannot clear PE), and PE stays set.
    vm = make_vm("xor eax, eax\nlmsw ax\nmov esi, 1")
    cr0_setup(vm, 0x1, 0x1)
    run_to_hlt(vm)
    assert vm.vcpu.esi == 1 and vm.vcpu.cr0 & 1


def test_lmsw_without_exit_loads_low_bits_and_keeps_pe():
    src = "mov eax, cr0\nand eax, ~0xe\nmov cr0, eax\nmov ax, 0x000e\nlmsw ax\nmov ebx, cr0\nxor ax, ax\nlmsw ax\nmov ecx, cr0"
    vm = make_vm(src)
    cr0_setup(vm, 0, 0)
    run_to_hlt(vm)
    v = vm.vcpu
    assert v.ebx & 0xF == 0xF            # MP EM TS set, PE kept
    assert v.ecx & 0xF == 0x1            # MP EM TS cleared; PE cannot be cleared


def test_lmsw_leaves_masked_bits():
    # TS is host-owned and the source's TS matches the shadow: no exit, and
    # the real CR0.TS keeps its value; MP (guest-owned) is loaded.
    vm = make_vm("mov ax, 0x000b\nlmsw ax")
    cr0_setup(vm, TS, TS, ts=False)
    run_to_hlt(vm)
    assert vm.vcpu.cr0 & 0xF == 0x3


def test_lmsw_cpl3_gp():
    vm = make_vm("lmsw ax", ring3=True)
    cr0_setup(vm, 0xF, 0)
    assert_exception(first_exit(vm), 13, 0)


@pytest.mark.parametrize("mode", MODES)
def test_smsw_and_mov_from_cr0_read_the_shadow(mode):
    src = "smsw eax\nmov ebx, 0\nsmsw bx\nmov ecx, cr0\nsmsw [0x2000]" if mode != "long" else \
          "smsw rax\nmov ebx, 0\nsmsw bx\nmov rcx, cr0\nsmsw [0x2000]"
    vm = make_vm(src, mode)
    v = vm.vcpu
    real = v.cr0 & ~TS
    cr0_setup(vm, TS | (1 << 30), TS, ts=False)  # TS and CD host-owned, shadow TS=1 CD=0
    v.cr0 = real
    run_to_hlt(vm)
    seen = (real & ~(1 << 30)) | TS
    assert v.rax == seen
    assert v.ebx == seen & 0xFFFF
    assert v.rcx == seen
    assert vm.read(0x2000, 2) == (seen & 0xFFFF).to_bytes(2, "little")


def test_smsw_at_cpl3_does_not_fault():
    vm = make_vm("smsw eax\nint3", ring3=True)
    ex = first_exit(vm)
    assert ex.reason == 0 and ex.vector == 3
    assert vm.vcpu.eax == vm.vcpu.cr0 & 0xFFFFFFFF


# ---------------------------------------------------------------------------
# MOV DR (29), qualification Table 28-4: 2:0 DR, 4 direction (1 = from DR), 11:8 GPR
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,insn,qual,length", [
    ("real", "mov dr3, ebx", 3 | (3 << 8), 3),
    ("real", "mov eax, dr6", 6 | (1 << 4), 3),
    ("protected", "mov dr0, esp", 0 | (4 << 8), 3),
    ("protected", "mov edi, dr7", 7 | (1 << 4) | (7 << 8), 3),
    ("long", "mov dr1, r9", 1 | (9 << 8), 4),
    ("long", "mov r15, dr2", 2 | (1 << 4) | (15 << 8), 4),
])
def test_mov_dr_exit(mode, insn, qual, length):
    vm = make_vm("nop\n" + insn, mode, proc=P.MOV_DR_EXITING)
    ex = first_exit(vm)
    assert type(ex) is vtx.MovDrExit
    assert_insn_exit(ex, 29, length, CODE + 1, qual=qual)
    assert ex.dr == qual & 7 and ex.gpr == qual >> 8
    assert ex.direction == ("from" if qual & 0x10 else "to")


def test_mov_dr_exit_has_priority_over_cpl_gp():
    ex = first_exit(make_vm("mov eax, dr7", proc=P.MOV_DR_EXITING, ring3=True))
    assert ex.reason == 29 and ex.qualification == 7 | (1 << 4)


def test_mov_dr_exit_has_priority_over_de_ud():
    vm = make_vm("mov dr4, eax", proc=P.MOV_DR_EXITING)
    vm.vcpu.cr4 |= 1 << 3                  # CR4.DE
    ex = first_exit(vm)
    assert ex.reason == 29 and ex.qualification == 4


@pytest.mark.parametrize("mode", MODES)
def test_mov_dr_without_exiting(mode):
    r = {"real": "e", "protected": "e", "long": "r"}[mode]
    src = f"""
        mov {r}ax, 0x1111
        mov dr0, {r}ax
        mov {r}ax, 0x2222
        mov dr1, {r}ax
        mov {r}ax, 0x3333
        mov dr2, {r}ax
        mov {r}ax, 0x4444
        mov dr3, {r}ax
        xor {r}ax, {r}ax
        mov dr6, {r}ax
        mov {r}ax, 0x3
        mov dr7, {r}ax
        mov {r}bx, dr6
        mov {r}cx, dr7
        mov {r}dx, dr2
    """
    vm = make_vm(src, mode)
    run_to_hlt(vm)
    v = vm.vcpu
    assert (v.dr0, v.dr1, v.dr2, v.dr3) == (0x1111, 0x2222, 0x3333, 0x4444)
    assert v.rbx == 0xFFFF0FF0                   # DR6: reserved bits read as 1
    assert v.rcx == 0x403                        # DR7: bit 10 reads as 1
    assert v.rdx == 0x3333
    assert v.dr6 == 0xFFFF0FF0
    assert v.dr7 == 0x403                        # saved into GUEST_DR7 at the exit


def test_mov_dr4_dr5_alias_dr6_dr7_without_de():
    vm = make_vm("mov eax, 0x1\nmov dr4, eax\nmov eax, 0x2\nmov dr5, eax\nmov ebx, dr6\nmov ecx, dr7")
    run_to_hlt(vm)
    assert vm.vcpu.ebx == 0xFFFF0FF1 and vm.vcpu.ecx == 0x402


def test_mov_dr4_ud_with_de():
    vm = make_vm("mov eax, dr5")
    vm.vcpu.cr4 |= 1 << 3
    assert_exception(first_exit(vm), 6)


def test_mov_dr_cpl3_gp():
    assert_exception(first_exit(make_vm("mov dr0, eax", ring3=True)), 13, 0)


def test_mov_dr7_high_bits_gp_in_64_bit_mode():
    vm = make_vm("mov rax, 0x100000000\nmov dr7, rax", "long")
    assert_exception(first_exit(vm), 13, 0)
    vm = make_vm("mov rax, 0x123456789a\nmov dr3, rax\nmov rbx, dr3", "long")
    run_to_hlt(vm)
    assert vm.vcpu.rbx == 0x123456789A


@pytest.mark.parametrize("mode", ["protected", "long"])
def test_mov_dr_cr_ignore_mod(mode):
    # "The 2 bits in the mod field are ignored" (SDM Vol. 2 MOV CR, MOV DR):
    # ModRM 43 (mod 01) is the register form, with no displacement byte.
    a = "rax" if mode == "long" else "eax"
    src = f"mov eax, 0x55\nmov dr1, {a}\n.byte 0x0f, 0x21, 0x4b\n.byte 0x0f, 0x20, 0x06\nmov edx, 7"
    vm = make_vm(src, mode)                  # mov ebx, dr1 ; mov esi, cr0
    run_to_hlt(vm)
    v = vm.vcpu
    assert (v.ebx, v.edx) == (0x55, 7)
    assert v.esi == v.cr0 & 0xFFFFFFFF
    vm = make_vm(".byte 0x0f, 0x21, 0x8b\nhlt", mode, proc=P.MOV_DR_EXITING)    # mod 10
    ex = first_exit(vm)
    assert ex.reason == 29 and ex.instruction_length == 3 and ex.qualification == 1 | (1 << 4) | (3 << 8)


def test_mov_from_cr4_reads_the_shadow():
    # The hosted hypervisor owns CR4.VMXE with a read shadow of 0; the guest
    # owns the rest.
    vm = make_vm("mov rax, cr4\nmov cr4, rax\nmov rbx, cr4", "long")
    v = vm.vcpu
    v.vmwrite(F.CR4_GUEST_HOST_MASK, (1 << 13) | (1 << 7))
    v.vmwrite(F.CR4_READ_SHADOW, 1 << 7)               # PGE reads as 1, VMXE as 0
    run_to_hlt(vm)
    assert v.cr4 & (1 << 13) and not v.cr4 & (1 << 7)
    assert v.rax == (v.cr4 & ~(1 << 13)) | (1 << 7)
    assert v.rbx == v.rax


def test_mov_dr8_ud_even_with_exiting():
    vm = make_vm(".byte 0x44, 0x0f, 0x23, 0xc0", "long", proc=P.MOV_DR_EXITING)   # mov dr8, rax
    assert_exception(first_exit(vm), 6)


# ---------------------------------------------------------------------------
# Descriptor-table exits: LGDT LIDT SGDT SIDT (46), LLDT LTR SLDT STR (47);
# instruction information Tables 28-10 and 28-11, qualification = displacement
# ---------------------------------------------------------------------------

def ii_mem(scale=0, asz=0, seg=3, index=None, base=None):
    v = scale | (asz << 7) | (seg << 15)
    v |= (1 << 22) if index is None else (index << 18)
    v |= (1 << 27) if base is None else (base << 23)
    return v


DT_CASES = [
    # mode, source, reason, identity, qualification, info (without identity), length
    ("real", "sgdt [bx+0x10]", 46, 0, 0x10, ii_mem(asz=0, base=3), 4),
    ("real", "sidt [bp-2]", 46, 1, (1 << 64) - 2, ii_mem(asz=0, seg=2, base=5), 4),
    ("real", "lgdt [0x300]", 46, 2, 0x300, ii_mem(asz=0), 5),
    ("real", "lidt es:[si]", 46, 3, 0, ii_mem(asz=0, seg=0, base=6), 4),
    ("protected", "lgdt [eax+ecx*4+8]", 46, 2, 8, ii_mem(scale=2, asz=1, index=1, base=0) | (1 << 11), 5),
    ("protected", "sidt [esp]", 46, 1, 0, ii_mem(asz=1, seg=2, base=4) | (1 << 11), 4),
    ("protected", "data16 sgdt [ebx]", 46, 0, 0, ii_mem(asz=1, base=3), 4),
    ("long", "lidt [r12+r13*8-0x100]", 46, 3, (1 << 64) - 0x100, ii_mem(scale=3, asz=2, index=13, base=12), 9),
    ("long", "sgdt fs:[eax]", 46, 0, 0, ii_mem(asz=1, seg=4, base=0), 5),
    ("protected", "sldt ax", 47, 0, 0, (1 << 10) | (1 << 7), 4),
    ("protected", "str [ebx+0x40]", 47, 1, 0x40, ii_mem(asz=1, base=3), 4),
    ("protected", "lldt si", 47, 2, 0, (1 << 10) | (6 << 3) | (1 << 7), 3),
    ("protected", "ltr word ptr [ecx]", 47, 3, 0, ii_mem(asz=1, base=1), 3),
    ("long", "str r10d", 47, 1, 0, (1 << 10) | (10 << 3) | (2 << 7), 4),
    ("long", "lldt word ptr [rsp+8]", 47, 2, 8, ii_mem(asz=2, seg=2, base=4), 5),
]


@pytest.mark.parametrize("mode,src,reason,ident,qual,info,length", DT_CASES)
def test_descriptor_table_exit(mode, src, reason, ident, qual, info, length):
    vm = make_vm("nop\n" + src, mode, proc2=P2.DESCRIPTOR_TABLE_EXITING)
    ex = first_exit(vm)
    assert type(ex) is vtx.DescriptorTableExit
    assert len(vtx.asm(src, bits=MODES[mode])) == length
    assert_insn_exit(ex, reason, length, CODE + 1, qual=qual, info=info | (ident << 28))
    names = {46: ("SGDT", "SIDT", "LGDT", "LIDT"), 47: ("SLDT", "STR", "LLDT", "LTR")}
    assert ex.instruction == names[reason][ident] and ex.identity == ident
    assert ex.register_operand == bool(info & (1 << 10))


def test_descriptor_table_exit_rip_relative():
    # RIP-relative: the qualification is the displacement plus the RIP of
    # the next instruction (SDM 28.2.1).
    src = "nop\nsgdt [rip+0x1234]"
    vm = make_vm(src, "long", proc2=P2.DESCRIPTOR_TABLE_EXITING)
    ex = first_exit(vm)
    assert ex.instruction_length == 7
    assert ex.qualification == CODE + 1 + 7 + 0x1234
    assert ex.instruction_info == ii_mem(asz=2) | (0 << 28)


@pytest.mark.parametrize("insn", ["lgdt [0x2000]", "lidt [0x2000]", "lldt ax", "ltr ax"])
def test_descriptor_table_loads_at_cpl3_gp_before_exit(insn):
    vm = make_vm(insn, proc2=P2.DESCRIPTOR_TABLE_EXITING, ring3=True)
    assert_exception(first_exit(vm), 13, 0)


@pytest.mark.parametrize("insn", ["sgdt [0x2000]", "sidt [0x2000]", "sldt ax", "str ax"])
def test_descriptor_table_stores_at_cpl3_exit(insn):
    vm = make_vm(insn, proc2=P2.DESCRIPTOR_TABLE_EXITING, ring3=True)
    assert first_exit(vm).reason in (46, 47)


@pytest.mark.parametrize("insn", ["sldt ax", "str ax", "lldt ax", "ltr ax", "verr ax", "verw ax"])
def test_0f00_group_ud_in_real_mode(insn):
    vm = make_vm(insn, "real", proc2=P2.DESCRIPTOR_TABLE_EXITING)
    assert_exception(first_exit(vm), 6)


def test_sgdt_lgdt_without_exiting_still_work():
    vm = make_vm("sgdt [0x2000]\nlidt [0x2000]", "protected")
    gdtr = vm.vcpu.gdtr
    run_to_hlt(vm)
    assert vm.vcpu.idtr.base == gdtr.base and vm.vcpu.idtr.limit == gdtr.limit


# --- the 0F 00 group's effect ---------------------------------------------------

LDT_DESC = 0x0000_8200_3000_00FF | (0x12 << 32)        # LDT at 0x123000, limit 0xFF, present
TSS_DESC = 0x0000_8900_4000_0067 | (0x00 << 32)        # 32-bit available TSS at 0x4000, limit 0x67


def gdt_base(vm):
    return vm.vcpu.gdtr.base


def put_desc(vm, sel, desc, hi=None):
    vm.write(gdt_base(vm) + sel, desc.to_bytes(8, "little"))
    if hi is not None:
        vm.write(gdt_base(vm) + sel + 8, hi.to_bytes(8, "little"))


def test_lldt_ltr_sldt_str_protected():
    src = "mov ax, 0x20\nlldt ax\nmov ax, 0x28\nltr ax\nmov ebx, -1\nsldt ebx\nstr [0x2000]"
    vm = make_vm(src)
    put_desc(vm, 0x20, LDT_DESC)
    put_desc(vm, 0x28, TSS_DESC)
    run_to_hlt(vm)
    v = vm.vcpu
    assert (v.ldtr.selector, v.ldtr.base, v.ldtr.limit, v.ldtr.access_rights) == (0x20, 0x123000, 0xFF, 0x82)
    assert (v.tr.selector, v.tr.base, v.tr.limit, v.tr.access_rights) == (0x28, 0x4000, 0x67, 0x8B)
    # the TSS descriptor is now busy in the GDT
    assert vm.read(gdt_base(vm) + 0x28 + 5, 1) == b"\x8b"
    assert v.ebx == 0x20                           # SLDT r32: zero-extended
    assert vm.read(0x2000, 2) == b"\x28\x00"


def test_lldt_ltr_long_mode_16_byte_descriptors():
    src = "mov ax, 0x20\nlldt ax\nmov ax, 0x30\nltr ax\nstr rbx"
    vm = make_vm(src, "long")
    put_desc(vm, 0x20, LDT_DESC, hi=0xFFFF8000)
    put_desc(vm, 0x30, TSS_DESC, hi=0x1)
    run_to_hlt(vm)
    v = vm.vcpu
    assert v.ldtr.base == 0xFFFF8000_00123000
    assert v.tr.base == 0x1_00004000 and v.tr.access_rights == 0x8B
    assert v.rbx == 0x30


def test_lldt_null_makes_ldtr_unusable():
    vm = make_vm("mov ax, 0x20\nlldt ax\nxor eax, eax\nlldt ax")
    put_desc(vm, 0x20, LDT_DESC)
    run_to_hlt(vm)
    assert vm.vcpu.ldtr.access_rights & (1 << 16)


@pytest.mark.parametrize("src,desc,vector,error", [
    ("mov ax, 0x24\nlldt ax", LDT_DESC, 13, 0x24),                # TI = 1
    ("mov ax, 0x48\nlldt ax", LDT_DESC, 13, 0x48),                # beyond the GDT limit
    ("mov ax, 0x20\nlldt ax", TSS_DESC, 13, 0x20),                # not an LDT
    ("mov ax, 0x20\nlldt ax", LDT_DESC & ~(1 << 47), 11, 0x20),   # not present
    ("xor eax, eax\nltr ax", TSS_DESC, 13, 0),                    # null
    ("mov ax, 0x20\nltr ax", TSS_DESC | (2 << 40), 13, 0x20),     # busy
    ("mov ax, 0x20\nltr ax", LDT_DESC, 13, 0x20),                 # not a TSS
    ("mov ax, 0x23\nltr ax", TSS_DESC & ~(1 << 47), 11, 0x20),    # not present (RPL dropped)
])
def test_lldt_ltr_faults(src, desc, vector, error):
    vm = make_vm(src)
    put_desc(vm, 0x20, desc)
    assert_exception(first_exit(vm), vector, error)


def test_ltr_long_mode_checks_upper_type_and_canonical_base():
    vm = make_vm("mov ax, 0x30\nltr ax", "long")
    put_desc(vm, 0x30, TSS_DESC, hi=1 << 40)             # type field of the upper half
    assert_exception(first_exit(vm), 13, 0x30)
    vm = make_vm("mov ax, 0x30\nltr ax", "long")
    put_desc(vm, 0x30, TSS_DESC, hi=0x00008000)          # base 0x00008000_00004000: not canonical
    assert_exception(first_exit(vm), 13, 0x30)


def test_verr_verw():
    src = """
        mov ax, 0x08
        verr ax
        setz bl
        verw ax
        setz bh
        mov ax, 0x10
        verr ax
        setz cl
        verw ax
        setz ch
        xor ax, ax
        verr ax
        setz dl
        mov ax, 0x50
        verw ax
        setz dh
    """
    vm = make_vm(src)
    run_to_hlt(vm)
    v = vm.vcpu
    assert (v.bl, v.bh, v.cl, v.ch, v.dl, v.dh) == (1, 0, 1, 1, 0, 0)


def test_verr_dpl_below_cpl():
    vm = make_vm("mov ax, 0x10\nverr ax\nsetz bl\nint3", ring3=True)
    ex = first_exit(vm)
    assert ex.vector == 3 and vm.vcpu.bl == 0             # DPL 0 data at CPL 3


# ---------------------------------------------------------------------------
# INVPCID (58): 66 0F 38 82, "enable INVPCID" and "INVLPG exiting"
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_invpcid_ud_without_enable(mode):
    vm = make_vm("invpcid eax, [0x2000]" if mode != "long" else "invpcid rax, [0x2000]", mode,
                 proc=P.INVLPG_EXITING)
    assert_exception(first_exit(vm), 6)


@pytest.mark.parametrize("mode,src,info,qual,length", [
    ("real", "invpcid eax, [bx+si+4]", ii_mem(asz=0, base=3, index=6) | (0 << 28), 4, 6),
    ("protected", "invpcid edx, [ebx+8]", ii_mem(asz=1, base=3) | (2 << 28), 8, 6),
    ("long", "invpcid r11, [rsp+rcx*2]", ii_mem(scale=1, asz=2, seg=2, index=1, base=4) | (11 << 28), 0, 7),
])
def test_invpcid_exit(mode, src, info, qual, length):
    vm = make_vm("nop\n" + src, mode, proc=P.INVLPG_EXITING, proc2=P2.ENABLE_INVPCID)
    ex = first_exit(vm)
    assert len(vtx.asm(src, bits=MODES[mode])) == length
    assert_insn_exit(ex, 58, length, CODE + 1, qual=qual, info=info)


@pytest.mark.parametrize("mode", MODES)
def test_invpcid_without_exiting_flushes(mode):
    r = "r" if mode == "long" else "e"
    src = f"""
        mov {r}ax, 0
        invpcid {r}ax, [0x2000]
        mov {r}ax, 1
        invpcid {r}ax, [0x2000]
        mov {r}ax, 2
        invpcid {r}ax, [0x2010]
        mov {r}ax, 3
        invpcid {r}ax, [0x2010]
        mov esi, 9
    """
    vm = make_vm(src, mode, proc2=P2.ENABLE_INVPCID)
    vm.write(0x2000, (0).to_bytes(8, "little") + (0x7000).to_bytes(8, "little"))
    vm.write(0x2010, (5).to_bytes(8, "little") + (1 << 63).to_bytes(8, "little"))   # ignored by types 2, 3
    run_to_hlt(vm)
    assert vm.vcpu.esi == 9


@pytest.mark.parametrize("typ,lo,hi", [
    (4, 0, 0),                     # no such type
    (0, 1 << 12, 0),               # descriptor bits 63:12
    (0, 0, 1 << 63),               # type 0: non-canonical address
    (1, 5, 0),                     # PCID != 0 with CR4.PCIDE = 0
])
def test_invpcid_gp(typ, lo, hi):
    vm = make_vm(f"mov rax, {typ}\ninvpcid rax, [0x2000]", "long", proc2=P2.ENABLE_INVPCID)
    vm.write(0x2000, lo.to_bytes(8, "little") + hi.to_bytes(8, "little"))
    assert_exception(first_exit(vm), 13, 0)


def test_invpcid_type_checked_after_exit():
    vm = make_vm("mov rax, 4\ninvpcid rax, [0x2000]", "long", proc=P.INVLPG_EXITING, proc2=P2.ENABLE_INVPCID)
    assert first_exit(vm).reason == 58


def test_invpcid_cpl3_gp_before_exit():
    vm = make_vm("invpcid eax, [0x2000]", proc=P.INVLPG_EXITING, proc2=P2.ENABLE_INVPCID, ring3=True)
    assert_exception(first_exit(vm), 13, 0)


@pytest.mark.parametrize("code", [
    b"\x0f\x38\x82\x00",            # no 66 prefix
    b"\xf3\x0f\x38\x82\x00",        # F3 instead of 66
    b"\x66\x0f\x38\x82\xc0",        # register operand
    b"\x66\x0f\x38\x80\xc0",        # INVEPT with a register operand
    b"\x0f\x38\x00\xc0",            # an empty slot of the 0F 38 map
])
def test_0f38_encodings_ud(code):
    vm = make_vm(".byte " + ", ".join(str(b) for b in code), "long",
                 proc=P.INVLPG_EXITING, proc2=P2.ENABLE_INVPCID)
    assert_exception(first_exit(vm), 6)


def test_invpcid_in_cpuid_model():
    vm = make_vm("nop")
    assert vm.vcpu.model_cpuid(7, 0)[1] & (1 << 10)


# ---------------------------------------------------------------------------
# Typed exits built without a guest
# ---------------------------------------------------------------------------

def test_fabricated_typed_exits():
    e = vtx.fabricate_exit(R.MOV_DR, qualification=3 | (1 << 4) | (9 << 8))
    assert type(e) is vtx.MovDrExit and (e.dr, e.direction, e.gpr) == (3, "from", 9)
    e = vtx.fabricate_exit(R.LDTR_TR_ACCESS, instruction_info=(3 << 28) | (1 << 10) | (5 << 3))
    assert type(e) is vtx.DescriptorTableExit
    assert (e.instruction, e.register_operand, e.register) == ("LTR", True, 5)
    e = vtx.fabricate_exit(R.GDTR_IDTR_ACCESS, instruction_info=(1 << 28), qualification=0x40)
    assert (e.instruction, e.register, e.displacement) == ("SIDT", None, 0x40)
    e = vtx.fabricate_exit(R.MWAIT, qualification=1)
    assert type(e) is vtx.MwaitExit and e.armed
    e = vtx.fabricate_exit(R.CONTROL_REGISTER_ACCESS, qualification=CR_LMSW | LMSW_MEMORY | (0xE << 16))
    assert (e.access_type, e.lmsw_source, e.lmsw_memory) == (3, 0xE, True)
    assert type(vtx.fabricate_exit(R.RDTSCP)) is vtx.RdtscExit


# ---------------------------------------------------------------------------
# Virtual-8086 mode (CPL 3, 16-bit code) and compatibility mode
# ---------------------------------------------------------------------------

def v86_vm(src, proc=0, proc2=0):
    """Protected mode with RFLAGS.VM = 1: every segment a 64-KiB DPL-3 data
    segment at selector * 16, as the guest-state checks require."""
    vm = vtx.VM(memory=MEM)
    vm.load(CODE, vtx.asm(src + "\nhlt\n", bits=16, org=CODE))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=CODE)
    v = vm.vcpu
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | int(proc))
    v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) | int(proc2))
    for name in ("es", "cs", "ss", "ds", "fs", "gs"):
        setattr(v, name, Segment(0, 0, 0xFFFF, 0xF3))
    v.rsp = 0x8000
    v.rflags = 0x20002
    return vm


@pytest.mark.parametrize("insn,vector", [
    ("invd", 13), ("wbinvd", 13), ("clts", 13), ("lmsw ax", 13), ("rdpmc", 13),
    ("mov dr0, eax", 13), ("mov eax, dr7", 13), ("xsetbv", 13), ("lgdt [0x2000]", 13),
    ("monitor", 6), ("mwait", 6),
    ("sldt ax", 6), ("str ax", 6), ("lldt ax", 6), ("ltr ax", 6), ("verr ax", 6), ("verw ax", 6),
    ("invpcid eax, [0x2000]", 6),
])
def test_v86_mode_faults(insn, vector):
    vm = v86_vm(insn, proc2=P2.ENABLE_INVPCID)
    vm.vcpu.cr4 |= OSXSAVE
    ex = first_exit(vm)
    assert_exception(ex, vector, 0 if vector == 13 else None)
    assert ex.guest_rip == CODE


@pytest.mark.parametrize("insn,proc,proc2,reason", [
    ("mov dr0, eax", P.MOV_DR_EXITING, 0, 29),       # MOV DR exit before the CPL #GP
    ("pause", P.PAUSE_EXITING, 0, 40),
    ("sgdt [0x2000]", 0, P2.DESCRIPTOR_TABLE_EXITING, 46),
])
def test_v86_mode_exits(insn, proc, proc2, reason):
    ex = first_exit(v86_vm(insn, proc=proc, proc2=proc2))
    assert ex.reason == reason and ex.guest_rip == CODE


def test_v86_mode_rdpmc_with_pce_exits_and_smsw_rdtscp_run():
    vm = v86_vm("rdpmc", proc=P.RDPMC_EXITING)
    vm.vcpu.cr4 |= 1 << 8
    assert first_exit(vm).reason == 15
    vm = v86_vm("smsw bx\nmov ecx, -1\nrdtscp\nint3", proc2=P2.ENABLE_RDTSCP)
    ex = first_exit(vm)
    assert ex.reason == 0 and ex.vector == 3
    assert vm.vcpu.bx == vm.vcpu.cr0 & 0xFFFF
    assert vm.vcpu.ecx == 0                      # IA32_TSC_AUX


def compat_vm(src, proc=0, proc2=0):
    """IA-32e mode with a 32-bit code segment: compatibility mode."""
    vm = vtx.VM(memory=MEM)
    vm.load(CODE, vtx.asm(src + "\nhlt\n", bits=32, org=CODE))
    vm.add_vcpu()
    vm.setup_long_mode(entry=CODE)
    v = vm.vcpu
    v.cs = Segment(0x08, 0, 0xFFFFFFFF, 0xC09B)
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | int(proc))
    v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) | int(proc2))
    return vm


def test_compat_mode_lldt_ltr_use_16_byte_descriptors():
    vm = compat_vm("mov ax, 0x20\nlldt ax\nmov ax, 0x30\nltr ax")
    put_desc(vm, 0x20, LDT_DESC, hi=0x2)
    put_desc(vm, 0x30, TSS_DESC, hi=0x3)
    run_to_hlt(vm)
    assert vm.vcpu.ldtr.base == 0x2_00123000
    assert vm.vcpu.tr.base == 0x3_00004000
    vm = compat_vm("mov ax, 0x38\nltr ax")      # 0x38 + 15 is past the GDT limit (0x3F)
    put_desc(vm, 0x38, TSS_DESC)
    assert_exception(first_exit(vm), 13, 0x38)


def test_compat_mode_32_bit_operands():
    vm = compat_vm("mov eax, 0x77\nmov dr2, eax\nmov ebx, dr2\nmov eax, 0\ninvpcid eax, [0x2000]\nsmsw ecx",
                   proc2=P2.ENABLE_INVPCID)
    vm.write(0x2000, bytes(16))
    run_to_hlt(vm)
    v = vm.vcpu
    assert v.ebx == 0x77 and v.dr2 == 0x77
    assert v.ecx == v.cr0 & 0xFFFFFFFF
    vm = compat_vm("invpcid esi, [ebp+0x10]", proc=P.INVLPG_EXITING, proc2=P2.ENABLE_INVPCID)
    ex = first_exit(vm)
    assert ex.reason == 58 and ex.qualification == 0x10
    assert ex.instruction_info == ii_mem(asz=1, seg=2, base=5) | (6 << 28)
