"""UMONITOR, UMWAIT, TPAUSE and IA32_UMWAIT_CONTROL (vtx/core/insn/waitpkg.pxi;
SDM Vol. 2), and their VMX side: "enable user wait and pause" and the UMWAIT
and TPAUSE exits (reasons 67 and 68) under "RDTSC exiting" (SDM Vol. 3C
25.6.2, 26.1.3, 28.2.5)."""

import pytest

import vtx
from vtx import ProcBased as P, ProcBased2 as P2
from vtx.cpu_model import CpuModel

from test_insn_system import run_real
from test_vmx_exits_insn import assert_exception, assert_insn_exit, first_exit, make_vm, run_to_hlt

UWP = P2.ENABLE_USER_WAIT_AND_PAUSE
STATUS = 0x8D5                      # CF PF AF ZF SF OF
SET_ALL = "mov eax, 0x8d5\npush eax\npopfd\n"      # every status flag set (32-bit code)
TSD = 1 << 2


def test_cpuid_reports_waitpkg_in_the_default_model_only():
    vm = vtx.VM(memory=1 << 20)
    assert vm.add_vcpu().model_cpuid(7, 0)[2] & (1 << 5)
    vm = vtx.VM(memory=1 << 20, cpu="skylake")
    assert not vm.add_vcpu().model_cpuid(7, 0)[2] & (1 << 5)


@pytest.mark.parametrize("insn", ["umwait ecx", "tpause ecx"])
def test_wait_ends_at_once_with_cf_0_and_the_flags_cleared(insn):
    vm = make_vm(SET_ALL + "xor ecx, ecx\nmov edx, -1\nmov eax, -1\n" + insn + "\npushfd\npop ebx", proc2=UWP)
    run_to_hlt(vm)
    assert vm.vcpu.ebx & 0xFFF == 0x002                # the status flags cleared, bit 1 fixed


@pytest.mark.parametrize("insn", ["umwait", "tpause"])
@pytest.mark.parametrize("ecx", [2, 0x80000000])
def test_reserved_source_bits_are_gp(insn, ecx):
    ex = first_exit(make_vm(f"mov ecx, {ecx:#x}\n{insn} ecx", proc2=UWP))
    assert_exception(ex, 13, 0)


def test_umonitor_arms_the_monitor_and_umwait_disarms_it():
    """MWAIT's exit qualification (bit 0: monitoring armed, SDM 28.2.1) shows
    the monitor's state."""
    vm = make_vm("mov eax, 0x2000\numonitor eax\nmwait", proc=P.MWAIT_EXITING, proc2=UWP)
    ex = first_exit(vm)
    assert ex.name == "MWAIT" and ex.qualification == 1
    vm = make_vm("mov eax, 0x2000\numonitor eax\nxor ecx, ecx\numwait ecx\nmwait", proc=P.MWAIT_EXITING, proc2=UWP)
    ex = first_exit(vm)
    assert ex.name == "MWAIT" and ex.qualification == 0


def test_umonitor_faults_like_a_byte_read():
    vm = make_vm("mov rax, 0x8000000000000000\numonitor rax", mode="long", proc2=UWP)
    assert_exception(first_exit(vm), 13, 0)          # non-canonical
    vm = make_vm("mov eax, 0x200000\numonitor eax", proc2=UWP)   # beyond the 1 MiB of RAM: EPT
    assert first_exit(vm).name == "EPT_VIOLATION"


@pytest.mark.parametrize("insn", ["umonitor eax", "umwait ecx", "tpause ecx"])
def test_ud_without_enable_user_wait_and_pause(insn):
    assert_exception(first_exit(make_vm("xor ecx, ecx\nxor eax, eax\n" + insn)), 6)


def test_ud_without_the_feature():
    vm = vtx.VM(memory=1 << 20, cpu=CpuModel("default", remove={"WAITPKG"}))
    vm.load(0x1000, vtx.asm("xor ecx, ecx\ntpause ecx\nhlt", bits=32, org=0x1000))
    v = vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)
    v.vmwrite(vtx.VmcsField.SECONDARY_PROC_BASED_CONTROLS,
              v.vmread(vtx.VmcsField.SECONDARY_PROC_BASED_CONTROLS) | UWP)
    assert_exception(first_exit(vm), 6)


@pytest.mark.parametrize("insn", ["umwait ecx", "tpause ecx"])
def test_cpl3_runs_them_unless_cr4_tsd(insn):
    vm = make_vm("xor ecx, ecx\n" + insn, proc2=UWP, ring3=True)
    ex = first_exit(vm)
    assert_exception(ex, 13, 0)                      # HLT at CPL 3: the wait itself went through
    assert ex.guest_rip == 0x1000 + len(vtx.asm("xor ecx, ecx\n" + insn, bits=32))
    vm = make_vm("xor ecx, ecx\n" + insn, proc2=UWP, proc=P.RDTSC_EXITING, ring3=True)
    vm.vcpu.cr4 |= TSD
    ex = first_exit(vm)
    assert_exception(ex, 13, 0)                      # the privilege fault comes before the exit
    assert ex.guest_rip == 0x1002


@pytest.mark.parametrize("mode,src,info,length", [
    ("protected", "umwait ecx", (1 << 3) | (1 << 11), 4),
    ("protected", "tpause edi", (7 << 3) | (1 << 11), 4),
    ("long", "umwait r9d", (9 << 3) | (1 << 11), 5),
    ("long", "tpause r14d", (14 << 3) | (1 << 11), 5),
])
def test_exit_under_rdtsc_exiting(mode, src, info, length):
    vm = make_vm("nop\n" + src, mode, proc=P.RDTSC_EXITING, proc2=UWP)
    ex = first_exit(vm)
    reason = 67 if src.startswith("umwait") else 68
    assert_insn_exit(ex, reason, length, 0x1001, info=info)
    assert ex.name == ("UMWAIT" if reason == 67 else "TPAUSE")


def test_umonitor_never_exits():
    vm = make_vm("mov eax, 0x2000\numonitor eax\nmov ebx, 5", proc=P.RDTSC_EXITING, proc2=UWP)
    run_to_hlt(vm)
    assert vm.vcpu.ebx == 5


def test_umwait_control_msr_on_a_bare_processor():
    cpu, vec = run_real("mov ecx, 0xe1\nmov eax, 0x186a0 << 2 | 1\nxor edx, edx\nwrmsr\n"
                        "xor eax, eax\nrdmsr\nmov edi, eax\nxor ecx, ecx\ntpause ecx\numwait ecx")
    assert vec is None
    assert cpu.rdi & 0xFFFFFFFF == (0x186A0 << 2) | 1 == cpu.rdmsr(0xE1)


@pytest.mark.parametrize("value", [2, 1 << 32])
def test_umwait_control_reserved_bits_are_gp(value):
    cpu, vec = run_real(f"mov ecx, 0xe1\nmov eax, {value & 0xFFFFFFFF:#x}\nmov edx, {value >> 32:#x}\nwrmsr")
    assert vec == 13 and cpu.rdmsr(0xE1) == 0
