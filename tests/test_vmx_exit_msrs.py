"""The VM-exit MSR-store and MSR-load areas (Intel SDM Vol. 3C 28.4 "Saving
MSRs", 28.6 "Loading MSRs", 28.7 "VMX Aborts"; 325462-080US): a VM exit
stores the guest's MSRs into the store area, then loads the host's MSRs from
the load area; what it cannot process is a VMX abort with indicator 1 or 4.
Guests are launched from Python on a bare machine (tests/test_vmx_root.py)
and by x86 host code."""

import pytest

import vtx
from vtx import ExitReason as R, VmcsField as F
from test_vmx_root import GUEST_CODE, VMCS_A, good_guest_vmcs

STORE, LOAD, MSR_BITMAP = 0x5000, 0x5800, 0x6000
STAR, LSTAR, EFER, TSC_AUX, SMBASE = 0xC0000081, 0xC0000082, 0xC0000080, 0xC0000103, 0x9E
X2APIC_TPR = 0x808

# The guest writes STAR and TSC_AUX (no exits: MSR bitmaps, all zero), then
# CPUID exits.
GUEST = f"""
    mov ecx, {STAR}
    mov eax, 0x11223344
    mov edx, 0x00230010
    wrmsr
    mov ecx, {TSC_AUX}
    mov eax, 7
    xor edx, edx
    wrmsr
    cpuid
    hlt
"""


def entries(*pairs):
    out = b""
    for index, value in pairs:
        out += index.to_bytes(8, "little") + value.to_bytes(8, "little")
    return out


def launch(store=(), load=(), guest=GUEST):
    hw = vtx.BareMetal(memory=4 << 20)
    cpu = good_guest_vmcs(hw)
    hw.load(GUEST_CODE, vtx.asm(guest, bits=64, org=GUEST_CODE))
    cpu.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, cpu.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | (1 << 28))
    cpu.vmwrite(F.MSR_BITMAP, MSR_BITMAP)
    if store:
        hw.write(STORE, entries(*store))
        cpu.vmwrite(F.VM_EXIT_MSR_STORE_ADDRESS, STORE)
        cpu.vmwrite(F.VM_EXIT_MSR_STORE_COUNT, len(store))
    if load:
        hw.write(LOAD, entries(*load))
        cpu.vmwrite(F.VM_EXIT_MSR_LOAD_ADDRESS, LOAD)
        cpu.vmwrite(F.VM_EXIT_MSR_LOAD_COUNT, len(load))
    cpu.vmlaunch()
    r = hw.run(max_instructions=1000)
    return hw, cpu, r


def u64(hw, addr):
    return int.from_bytes(hw.read(addr, 8), "little")


def test_exit_stores_the_guest_msrs_into_the_store_area():
    hw, cpu, r = launch(store=[(STAR, 0xDEAD), (TSC_AUX, 0xDEAD), (EFER, 0xDEAD)])
    assert r.stop == "vmexit" and r.exit.reason == R.CPUID
    assert u64(hw, STORE + 8) == 0x0023001011223344
    assert u64(hw, STORE + 24) == 7
    assert u64(hw, STORE + 40) == cpu.vmread(F.GUEST_IA32_EFER) or u64(hw, STORE + 40) == cpu.efer
    # the index quadwords are untouched
    assert u64(hw, STORE) == STAR and u64(hw, STORE + 16) == TSC_AUX


def test_exit_loads_the_host_msrs_from_the_load_area():
    hw, cpu, r = launch(load=[(STAR, 0x0013000800000000), (LSTAR, 0xFFFFFFFF81000000), (TSC_AUX, 3)])
    assert r.stop == "vmexit" and r.exit.reason == R.CPUID
    # the guest wrote STAR and TSC_AUX; the exit loaded the host's values over them
    assert cpu.rdmsr(STAR) == 0x0013000800000000
    assert cpu.rdmsr(LSTAR) == 0xFFFFFFFF81000000
    assert cpu.rdmsr(TSC_AUX) == 3


def test_store_happens_before_load():
    """SDM 28.4 precedes 28.6: the store area sees the guest's value even
    when the load area then replaces it."""
    hw, cpu, r = launch(store=[(TSC_AUX, 0)], load=[(TSC_AUX, 99)])
    assert u64(hw, STORE + 8) == 7 and cpu.rdmsr(TSC_AUX) == 99


@pytest.mark.parametrize("store, load, indicator", [
    ([(X2APIC_TPR, 0)], (), 1),                       # x2APIC range in the store area
    ([(SMBASE, 0)], (), 1),                           # IA32_SMBASE outside SMM
    ([(STAR | (1 << 32), 0)], (), 1),                 # reserved bits 63:32 of the index quadword
    ([(0x12345, 0)], (), 1),                          # no such MSR: RDMSR would #GP
    ((), [(0xC0000100, 0)], 4),                       # IA32_FS_BASE may not be loaded this way
    ((), [(X2APIC_TPR, 0)], 4),
    ((), [(EFER, 1 << 3)], 4),                        # WRMSR would #GP: reserved EFER bit
])
def test_unprocessable_entry_is_a_vmx_abort(store, load, indicator):
    hw, cpu, r = launch(store=store, load=load)
    assert r.stop == "shutdown"
    assert int.from_bytes(hw.read(VMCS_A + 4, 4), "little") == indicator


def test_load_area_entries_before_a_failing_one_stay_loaded():
    hw, cpu, r = launch(load=[(TSC_AUX, 5), (0x12345, 0)])
    assert r.stop == "shutdown"
    assert cpu.rdmsr(TSC_AUX) == 5
    assert int.from_bytes(hw.read(VMCS_A + 4, 4), "little") == 4


def test_hosted_hypervisor_gets_the_store_area_filled():
    """The hosted (Python) hypervisor's VMCS: the same SDM 28.4 store, into
    guest RAM the hypervisor reads back."""
    vm = vtx.VM(memory=1 << 20)
    v = vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    vm.load(0x1000, vtx.asm(GUEST, bits=64, org=0x1000))
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | (1 << 28))
    vm.write(STORE, entries((STAR, 0), (TSC_AUX, 0)))
    v.vmwrite(F.VM_EXIT_MSR_STORE_ADDRESS, STORE)
    v.vmwrite(F.VM_EXIT_MSR_STORE_COUNT, 2)
    vm.on(R.CPUID)(lambda vcpu, exit: vtx.STOP)
    r = vm.run(max_instructions=1000)
    assert r.exit.reason == R.CPUID
    assert vm.read_u64(STORE + 8) == 0x0023001011223344 and vm.read_u64(STORE + 24) == 7
