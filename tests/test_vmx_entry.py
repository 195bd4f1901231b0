"""VM-entry checks, in the kvm-unit-tests style: start from the known-good
VMCS that add_vcpu + setup_*_mode produce, change ONE field, and assert the
exact failure (SDM Vol. 3C 325462-080US chapter 27 "VM Entries"):

- control-field checks fail the VMLAUNCH with VM-instruction error 7,
- host-state checks with VM-instruction error 8,
- guest-state checks with a VM exit of basic reason 33 (bit 31 set),

each naming the check (vtx/spec/entry_checks.py).  Then the field is put back
and the VM runs.  At the end: the VMCS region itself (VMREAD/VMWRITE of
unsupported components, field widths, and the documented layout).
"""

import pytest

import vtx
from vtx import (EntryControls as EC, ExitControls as XC, PinBased, ProcBased, ProcBased2,
                 VmcsField as F, Segment, DescriptorTable)
from vtx.spec import FIELDS, MODEL_FIELDS, OFF_LAUNCH_STATE, OFF_REVISION, VMCS_REGION_SIZE, capabilities, field_offset, \
    field_size
from vtx.spec.entry_checks import ENTRY_CHECKS

from conftest import apply_changes, clrb, setb

MODES = {"real": 16, "protected": 32, "long": 64}
CODE = 0x1000
MEM = 1 << 20
PRIV = vtx._core.PRIV_BASE
CHECKS = {cid: (area, section) for cid, area, section, _ in ENTRY_CHECKS}
NONCANON = 0x0000800000000000

CTL, HOST, GUEST = ("vm-instruction-error", 7), ("vm-instruction-error", 8), ("invalid-guest-state", 33)


def good_vm(mode="real"):
    vm = vtx.VM(memory=MEM)
    vm.load(CODE, vtx.asm("nop\nhlt", bits=MODES[mode]))
    vm.add_vcpu()
    getattr(vm, f"setup_{mode}_mode")(entry=CODE)
    vm.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    return vm


def assert_runs(vm):
    r = vm.run()
    assert r.stop == "stop" and r.exit.reason == 12 and r.exit.guest_rip == CODE + 1
    assert vm.vcpu.launched


def test_known_good_vmcs_runs_in_every_mode():
    for mode in MODES:
        vm = good_vm(mode)
        assert not vm.vcpu.launched
        e0 = vm.vcpu.entries
        assert_runs(vm)
        assert vm.vcpu.entries == e0 + 1


def expect_failure(vm, kind, number, check):
    v = vm.vcpu
    before = bytes(vm._priv[0:VMCS_REGION_SIZE])
    with pytest.raises(vtx.VmEntryError) as ei:
        vm.run()
    e = ei.value
    assert (e.kind, e.number, e.check) == (kind, number, check)
    area, section = CHECKS[check]
    assert e.section == section
    assert {"vm-instruction-error": {7: "control", 8: "host"}, "invalid-guest-state": {33: "guest"}}[kind][number] == area
    assert check in str(e) and section in str(e)
    assert not v.launched
    after = bytes(vm._priv[0:VMCS_REGION_SIZE])
    changed = {i for i in range(VMCS_REGION_SIZE) if before[i] != after[i]}
    if number in (7, 8):
        # VMfailValid: only the VM-instruction error field changes (SDM 31.2).
        off = field_offset(F.VM_INSTRUCTION_ERROR)
        assert changed <= set(range(off, off + 4))
        assert v.vmread(F.VM_INSTRUCTION_ERROR) == number
    else:
        # SDM 27.8: the exit reason and qualification are written, nothing
        # else (the guest-state area is not modified, and the valid bit of
        # the VM-entry interruption information is not cleared).
        allowed = set()
        for f in (F.EXIT_REASON, F.EXIT_QUALIFICATION):
            allowed |= set(range(field_offset(f), field_offset(f) + field_size(f)))
        assert changed <= allowed
        assert v.vmread(F.EXIT_REASON) == 0x80000021
    return e


def mutate_and_check(mode, changes, kind_number, check, qual=0):
    """changes: [(field, new value or function old -> new)]; each is put back
    after the failure and the VM must then run."""
    vm = good_vm(mode)
    v = vm.vcpu
    old = apply_changes(v, changes)
    v.vmwrite(F.VM_INSTRUCTION_ERROR, 0)
    v.vmwrite(F.EXIT_REASON, 0x1234)
    expect_failure(vm, *kind_number, check)
    if kind_number[1] == 33:
        assert v.vmread(F.EXIT_QUALIFICATION) == qual
        # A guest-state failure does not write the VM-instruction error.
        assert v.vmread(F.VM_INSTRUCTION_ERROR) == 0
    else:
        assert v.vmread(F.EXIT_REASON) == 0x1234
    # Fix the field: the same VMCS enters (a VMLAUNCH: the failure left it clear).
    for field, o in reversed(old):
        v.vmwrite(field, o)
    assert_runs(vm)


# ---------------------------------------------------------------------------
# 27.2.1: VM-execution, VM-exit and VM-entry control fields -> error 7
# ---------------------------------------------------------------------------

CONTROL_CASES = [
    # pin-based: a reserved bit, an unsupported control, a default1 bit cleared
    ("pin-reserved-bit-31", "real", [(F.PIN_BASED_CONTROLS, setb(1 << 31))], "PIN_BASED_CONTROLS"),
    ("pin-posted-interrupts", "real", [(F.PIN_BASED_CONTROLS, setb(PinBased.PROCESS_POSTED_INTERRUPTS))],
     "POSTED_INTERRUPTS_NEED_VIRTUAL_INTERRUPT_DELIVERY"),
    ("pin-virtual-nmis-without-nmi-exiting", "real", [(F.PIN_BASED_CONTROLS, setb(PinBased.VIRTUAL_NMIS))],
     "VIRTUAL_NMIS"),
    ("proc-nmi-window-without-virtual-nmis", "real",
     [(F.PIN_BASED_CONTROLS, setb(PinBased.NMI_EXITING)),
      (F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.NMI_WINDOW_EXITING))], "NMI_WINDOW_EXITING"),
    ("pin-default1-cleared", "real", [(F.PIN_BASED_CONTROLS, clrb(1 << 1))], "PIN_BASED_CONTROLS"),
    # primary processor-based
    ("proc-tertiary", "real", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.ACTIVATE_TERTIARY_CONTROLS))],
     "PRIMARY_PROC_BASED_CONTROLS"),
    ("proc-default1-cleared", "real", [(F.PRIMARY_PROC_BASED_CONTROLS, clrb(1 << 1))],
     "PRIMARY_PROC_BASED_CONTROLS"),
    ("proc-default1-bit26-cleared", "protected", [(F.PRIMARY_PROC_BASED_CONTROLS, clrb(1 << 26))],
     "PRIMARY_PROC_BASED_CONTROLS"),
    # secondary
    ("proc2-vmcs-shadowing", "real", [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.VMCS_SHADOWING))],
     "SECONDARY_PROC_BASED_CONTROLS"),
    # APIC virtualization (SDM 27.2.1.1)
    ("tpr-shadow-vapic-misaligned", "real", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_TPR_SHADOW)),
                                             (F.VIRTUAL_APIC_ADDRESS, PRIV + 0x3008)],
     "VIRTUAL_APIC_ADDRESS_ALIGNMENT"),
    ("tpr-shadow-vapic-beyond-maxphyaddr", "long", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_TPR_SHADOW)),
                                                    (F.VIRTUAL_APIC_ADDRESS, 1 << 39)],
     "VIRTUAL_APIC_ADDRESS_WIDTH"),
    ("tpr-threshold-bit-4", "real", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_TPR_SHADOW)),
                                     (F.TPR_THRESHOLD, 0x10)], "TPR_THRESHOLD_RESERVED_BITS"),
    # VTPR of a virtual-APIC page no memory backs reads 0: a threshold of 1 is above it
    ("tpr-threshold-above-vtpr", "protected", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_TPR_SHADOW)),
                                               (F.VIRTUAL_APIC_ADDRESS, 1 << 38), (F.TPR_THRESHOLD, 1)],
     "TPR_THRESHOLD_VTPR"),
    ("x2apic-mode-without-tpr-shadow", "real",
     [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.VIRTUALIZE_X2APIC_MODE))],
     "APIC_VIRTUALIZATION_NEEDS_TPR_SHADOW"),
    ("apic-register-virtualization-without-tpr-shadow", "long",
     [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.APIC_REGISTER_VIRTUALIZATION))],
     "APIC_VIRTUALIZATION_NEEDS_TPR_SHADOW"),
    ("vid-without-tpr-shadow", "real",
     [(F.PIN_BASED_CONTROLS, setb(PinBased.EXTERNAL_INTERRUPT_EXITING)),
      (F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.VIRTUAL_INTERRUPT_DELIVERY))],
     "APIC_VIRTUALIZATION_NEEDS_TPR_SHADOW"),
    ("x2apic-mode-and-apic-accesses", "real",
     [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_TPR_SHADOW)),
      (F.SECONDARY_PROC_BASED_CONTROLS,
       setb(ProcBased2.VIRTUALIZE_X2APIC_MODE | ProcBased2.VIRTUALIZE_APIC_ACCESSES))],
     "VIRTUALIZE_X2APIC_MODE_EXCLUSIVE"),
    ("vid-without-external-interrupt-exiting", "real",
     [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_TPR_SHADOW)),
      (F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.VIRTUAL_INTERRUPT_DELIVERY))],
     "VIRTUAL_INTERRUPT_DELIVERY_NEEDS_EXTERNAL_INTERRUPT_EXITING"),
    ("posted-interrupts-without-acknowledge", "real",
     [(F.PIN_BASED_CONTROLS, setb(PinBased.EXTERNAL_INTERRUPT_EXITING | PinBased.PROCESS_POSTED_INTERRUPTS)),
      (F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_TPR_SHADOW)),
      (F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.VIRTUAL_INTERRUPT_DELIVERY))],
     "POSTED_INTERRUPTS_NEED_ACKNOWLEDGE_ON_EXIT"),
    ("posted-interrupt-vector-above-255", "real",
     [(F.PIN_BASED_CONTROLS, setb(PinBased.EXTERNAL_INTERRUPT_EXITING | PinBased.PROCESS_POSTED_INTERRUPTS)),
      (F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_TPR_SHADOW)),
      (F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.VIRTUAL_INTERRUPT_DELIVERY)),
      (F.VM_EXIT_CONTROLS, setb(XC.ACKNOWLEDGE_INTERRUPT_ON_EXIT)),
      (F.POSTED_INTERRUPT_NOTIFICATION_VECTOR, 0x100)],
     "POSTED_INTERRUPT_NOTIFICATION_VECTOR"),
    ("posted-interrupt-descriptor-misaligned", "long",
     [(F.PIN_BASED_CONTROLS, setb(PinBased.EXTERNAL_INTERRUPT_EXITING | PinBased.PROCESS_POSTED_INTERRUPTS)),
      (F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_TPR_SHADOW)),
      (F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.VIRTUAL_INTERRUPT_DELIVERY)),
      (F.VM_EXIT_CONTROLS, setb(XC.ACKNOWLEDGE_INTERRUPT_ON_EXIT)),
      (F.POSTED_INTERRUPT_DESCRIPTOR_ADDRESS, 0x1020)],
     "POSTED_INTERRUPT_DESCRIPTOR_ALIGNMENT"),
    ("posted-interrupt-descriptor-beyond-maxphyaddr", "real",
     [(F.PIN_BASED_CONTROLS, setb(PinBased.EXTERNAL_INTERRUPT_EXITING | PinBased.PROCESS_POSTED_INTERRUPTS)),
      (F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_TPR_SHADOW)),
      (F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.VIRTUAL_INTERRUPT_DELIVERY)),
      (F.VM_EXIT_CONTROLS, setb(XC.ACKNOWLEDGE_INTERRUPT_ON_EXIT)),
      (F.POSTED_INTERRUPT_DESCRIPTOR_ADDRESS, 1 << 39)],
     "POSTED_INTERRUPT_DESCRIPTOR_WIDTH"),
    ("apic-access-misaligned", "real",
     [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.VIRTUALIZE_APIC_ACCESSES)),
      (F.APIC_ACCESS_ADDRESS, 0xFEE00010)], "APIC_ACCESS_ADDRESS_ALIGNMENT"),
    ("apic-access-beyond-maxphyaddr", "protected",
     [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.VIRTUALIZE_APIC_ACCESSES)),
      (F.APIC_ACCESS_ADDRESS, 1 << 39)], "APIC_ACCESS_ADDRESS_WIDTH"),
    ("proc2-bit31", "long", [(F.SECONDARY_PROC_BASED_CONTROLS, setb(1 << 31))], "SECONDARY_PROC_BASED_CONTROLS"),
    ("proc2-ept-violation-ve", "protected", [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.EPT_VIOLATION_VE))],
     "SECONDARY_PROC_BASED_CONTROLS"),
    # CR3-target count
    ("cr3-target-count-5", "real", [(F.CR3_TARGET_COUNT, 5)], "CR3_TARGET_COUNT"),
    ("cr3-target-count-huge", "real", [(F.CR3_TARGET_COUNT, 0xFFFFFFFF)], "CR3_TARGET_COUNT"),
    # I/O bitmaps (checked only with "use I/O bitmaps")
    ("io-bitmap-a-misaligned", "real", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_IO_BITMAPS)),
                                        (F.IO_BITMAP_A, PRIV + 0x1008)], "IO_BITMAP_A_ALIGNMENT"),
    ("io-bitmap-b-misaligned", "real", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_IO_BITMAPS)),
                                        (F.IO_BITMAP_B, PRIV + 0x2001)], "IO_BITMAP_B_ALIGNMENT"),
    ("io-bitmap-a-beyond-maxphyaddr", "real", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_IO_BITMAPS)),
                                               (F.IO_BITMAP_A, 1 << 39)], "IO_BITMAP_A_WIDTH"),
    # MSR bitmap
    ("msr-bitmap-misaligned", "real", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_MSR_BITMAPS)),
                                       (F.MSR_BITMAP, PRIV + 0x3800)], "MSR_BITMAP_ALIGNMENT"),
    ("msr-bitmap-beyond-maxphyaddr", "real", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_MSR_BITMAPS)),
                                              (F.MSR_BITMAP, (1 << 40) | 0x3000)], "MSR_BITMAP_WIDTH"),
    # EPT pointer: walk length, memory type, A/D, reserved bits, width
    ("eptp-walk-length-3", "real", [(F.EPT_POINTER, lambda o: (o & ~0x38) | (2 << 3))], "EPT_POINTER_WALK_LENGTH"),
    ("eptp-walk-length-5", "long", [(F.EPT_POINTER, lambda o: (o & ~0x38) | (4 << 3))], "EPT_POINTER_WALK_LENGTH"),
    ("eptp-memory-type-uc", "real", [(F.EPT_POINTER, lambda o: o & ~7)], "EPT_POINTER_MEMORY_TYPE"),
    ("eptp-memory-type-1", "real", [(F.EPT_POINTER, lambda o: (o & ~7) | 1)], "EPT_POINTER_MEMORY_TYPE"),
    ("pml-without-ept", "real",
     [(F.SECONDARY_PROC_BASED_CONTROLS, lambda v: (v | ProcBased2.ENABLE_PML) & ~ProcBased2.ENABLE_EPT)],
     "PML_NEEDS_EPT"),
    ("pml-address-misaligned", "long", [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.ENABLE_PML)),
                                        (F.PML_ADDRESS, 0x5010)], "PML_ADDRESS_ALIGNMENT"),
    ("pml-address-beyond-maxphyaddr", "protected", [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.ENABLE_PML)),
                                                    (F.PML_ADDRESS, 1 << 39)], "PML_ADDRESS_WIDTH"),
    ("eptp-reserved-bit-7", "real", [(F.EPT_POINTER, setb(1 << 7))], "EPT_POINTER_SUPERVISOR_SHADOW_STACK"),
    ("eptp-reserved-bit-11", "real", [(F.EPT_POINTER, setb(1 << 11))], "EPT_POINTER_RESERVED_BITS"),
    ("eptp-beyond-maxphyaddr", "real", [(F.EPT_POINTER, setb(1 << 39))], "EPT_POINTER_WIDTH"),
    # VPID
    ("vpid-zero", "real", [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.ENABLE_VPID)),
                           (F.VIRTUAL_PROCESSOR_ID, 0)], "VPID_NONZERO"),
    # unrestricted guest without EPT
    ("ug-without-ept", "real", [(F.SECONDARY_PROC_BASED_CONTROLS, clrb(ProcBased2.ENABLE_EPT))],
     "UNRESTRICTED_GUEST_NEEDS_EPT"),
    # VM functions (IA32_VMX_VMFUNC offers EPTP switching only)
    ("vmfunc-unsupported-function", "long", [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.ENABLE_VM_FUNCTIONS)),
                                             (F.VM_FUNCTION_CONTROLS, 1 << 1)], "VM_FUNCTION_CONTROLS"),
    ("eptp-list-misaligned", "long", [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.ENABLE_VM_FUNCTIONS)),
                                      (F.VM_FUNCTION_CONTROLS, 1), (F.EPTP_LIST_ADDRESS, 0x5008)],
     "EPTP_LIST_ADDRESS_ALIGNMENT"),
    ("eptp-list-beyond-maxphyaddr", "long", [(F.SECONDARY_PROC_BASED_CONTROLS,
                                              setb(ProcBased2.ENABLE_VM_FUNCTIONS)),
                                             (F.VM_FUNCTION_CONTROLS, 1), (F.EPTP_LIST_ADDRESS, 1 << 39)],
     "EPTP_LIST_ADDRESS_WIDTH"),
    ("eptp-switching-without-ept", "long", [(F.SECONDARY_PROC_BASED_CONTROLS,
                                             lambda o: (o | ProcBased2.ENABLE_VM_FUNCTIONS)
                                             & ~(ProcBased2.ENABLE_EPT | ProcBased2.UNRESTRICTED_GUEST)),
                                            (F.VM_FUNCTION_CONTROLS, 1), (F.EPTP_LIST_ADDRESS, 0x5000)],
     "EPTP_SWITCHING_NEEDS_EPT"),
    # Sub-page write permissions (SDM 29.3.4)
    ("spp-without-ept", "long",
     [(F.SECONDARY_PROC_BASED_CONTROLS, lambda o: (o | ProcBased2.SUB_PAGE_WRITE_PERMISSIONS)
       & ~(ProcBased2.ENABLE_EPT | ProcBased2.UNRESTRICTED_GUEST)),
      (F.SUB_PAGE_PERMISSION_TABLE_POINTER, 0x9000)], "SUB_PAGE_WRITE_PERMISSIONS_NEED_EPT"),
    ("spptp-misaligned", "long", [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.SUB_PAGE_WRITE_PERMISSIONS)),
                                  (F.SUB_PAGE_PERMISSION_TABLE_POINTER, 0x9800)], "SPPTP_ALIGNMENT"),
    ("spptp-beyond-maxphyaddr", "protected",
     [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.SUB_PAGE_WRITE_PERMISSIONS)),
      (F.SUB_PAGE_PERMISSION_TABLE_POINTER, 1 << 39)], "SPPTP_WIDTH"),
    # VM-exit controls
    ("exit-default1-cleared", "real", [(F.VM_EXIT_CONTROLS, clrb(1 << 2))], "VM_EXIT_CONTROLS"),
    ("exit-perf-global-unsupported", "real", [(F.VM_EXIT_CONTROLS, setb(XC.LOAD_IA32_PERF_GLOBAL_CTRL))],
     "VM_EXIT_CONTROLS"),
    ("exit-save-preemption-timer", "long", [(F.VM_EXIT_CONTROLS, setb(XC.SAVE_VMX_PREEMPTION_TIMER))],
     "VM_EXIT_SAVE_VMX_PREEMPTION_TIMER"),
    ("exit-bit-31", "real", [(F.VM_EXIT_CONTROLS, setb(1 << 31))], "VM_EXIT_CONTROLS"),
    ("exit-msr-store-misaligned", "real", [(F.VM_EXIT_MSR_STORE_ADDRESS, 0x5004), (F.VM_EXIT_MSR_STORE_COUNT, 1)],
     "VM_EXIT_MSR_STORE_ADDRESS_ALIGNMENT"),
    ("exit-msr-store-beyond-maxphyaddr", "protected", [(F.VM_EXIT_MSR_STORE_ADDRESS, 1 << 40),
     (F.VM_EXIT_MSR_STORE_COUNT, 1)], "VM_EXIT_MSR_STORE_ADDRESS_WIDTH"),
    ("exit-msr-store-last-byte", "long", [(F.VM_EXIT_MSR_STORE_ADDRESS, (1 << 39) - 0x10),
     (F.VM_EXIT_MSR_STORE_COUNT, 2)], "VM_EXIT_MSR_STORE_LAST_BYTE_WIDTH"),
    ("exit-msr-load-misaligned", "long", [(F.VM_EXIT_MSR_LOAD_ADDRESS, 0x5004), (F.VM_EXIT_MSR_LOAD_COUNT, 1)],
     "VM_EXIT_MSR_LOAD_ADDRESS_ALIGNMENT"),
    ("exit-msr-load-beyond-maxphyaddr", "real", [(F.VM_EXIT_MSR_LOAD_ADDRESS, 1 << 40),
     (F.VM_EXIT_MSR_LOAD_COUNT, 1)], "VM_EXIT_MSR_LOAD_ADDRESS_WIDTH"),
    ("exit-msr-load-last-byte", "protected", [(F.VM_EXIT_MSR_LOAD_ADDRESS, (1 << 39) - 0x10),
     (F.VM_EXIT_MSR_LOAD_COUNT, 2)], "VM_EXIT_MSR_LOAD_LAST_BYTE_WIDTH"),
    # VM-entry controls
    ("entry-to-smm", "real", [(F.VM_ENTRY_CONTROLS, setb(EC.ENTRY_TO_SMM))], "VM_ENTRY_CONTROLS"),
    ("entry-deactivate-dual-monitor", "real", [(F.VM_ENTRY_CONTROLS, setb(EC.DEACTIVATE_DUAL_MONITOR))],
     "VM_ENTRY_CONTROLS"),
    ("entry-default1-cleared", "protected", [(F.VM_ENTRY_CONTROLS, clrb(EC.LOAD_DEBUG_CONTROLS))],
     "VM_ENTRY_CONTROLS"),
    ("exit-save-timer-without-timer", "real",
     [(F.VM_EXIT_CONTROLS, setb(vtx.ExitControls.SAVE_VMX_PREEMPTION_TIMER))], "VM_EXIT_SAVE_VMX_PREEMPTION_TIMER"),
    # VM-entry MSR-load area (checked only with a count other than 0)
    ("entry-msr-load-misaligned", "real", [(F.VM_ENTRY_MSR_LOAD_ADDRESS, 0x5008), (F.VM_ENTRY_MSR_LOAD_COUNT, 1)],
     "VM_ENTRY_MSR_LOAD_ADDRESS_ALIGNMENT"),
    ("entry-msr-load-beyond-maxphyaddr", "long", [(F.VM_ENTRY_MSR_LOAD_ADDRESS, 1 << 39),
                                                  (F.VM_ENTRY_MSR_LOAD_COUNT, 1)], "VM_ENTRY_MSR_LOAD_ADDRESS_WIDTH"),
    ("entry-msr-load-last-byte", "protected", [(F.VM_ENTRY_MSR_LOAD_ADDRESS, (1 << 39) - 0x8000),
                                               (F.VM_ENTRY_MSR_LOAD_COUNT, 0x801)],
     "VM_ENTRY_MSR_LOAD_LAST_BYTE_WIDTH"),
    # VM-entry interruption information (event injection fields)
    ("inject-type-1-reserved", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000100 | 32)],
     "VM_ENTRY_INTERRUPTION_TYPE_RESERVED"),
    ("inject-type-7-vector-1", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000701)],
     "VM_ENTRY_INTERRUPTION_VECTOR_OTHER_EVENT"),
    ("inject-reserved-bit-12", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80001306)],
     "VM_ENTRY_INTERRUPTION_INFO_RESERVED_BITS"),
    ("inject-nmi-vector-3", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000203)],
     "VM_ENTRY_INTERRUPTION_VECTOR_NMI"),
    ("inject-hw-exception-vector-32", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000320)],
     "VM_ENTRY_INTERRUPTION_VECTOR_HARDWARE_EXCEPTION"),
    ("inject-ud-with-error-code", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000B06)],
     "VM_ENTRY_DELIVER_ERROR_CODE_VECTOR"),
    ("inject-gp-without-error-code", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x8000030D)],
     "VM_ENTRY_DELIVER_ERROR_CODE_REQUIRED"),
    ("inject-gp-error-code-real-mode-ug", "real", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000B0D)],
     "VM_ENTRY_DELIVER_ERROR_CODE_REAL_MODE"),
    ("inject-ext-interrupt-with-error-code", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000820)],
     "VM_ENTRY_DELIVER_ERROR_CODE_TYPE"),
    ("inject-error-code-bits-31-16", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000B0D),
                                                   (F.VM_ENTRY_EXCEPTION_ERROR_CODE, 0x10000)],
     "VM_ENTRY_EXCEPTION_ERROR_CODE"),
    ("inject-soft-int-length-0", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000480)],
     "VM_ENTRY_INSTRUCTION_LENGTH_ZERO"),
    ("inject-soft-exception-length-16", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000603),
                                                      (F.VM_ENTRY_INSTRUCTION_LENGTH, 16)],
     "VM_ENTRY_INSTRUCTION_LENGTH"),
]


@pytest.mark.parametrize("name,mode,changes,check", CONTROL_CASES, ids=[c[0] for c in CONTROL_CASES])
def test_control_field_checks(name, mode, changes, check):
    mutate_and_check(mode, changes, CTL, check)


@pytest.mark.parametrize("mode,changes", [
    # a clearable default1 bit per the TRUE MSR (CR3-load exiting)
    ("long", [(F.PRIMARY_PROC_BASED_CONTROLS, clrb(ProcBased.CR3_LOAD_EXITING | ProcBased.CR3_STORE_EXITING))]),
    ("real", [(F.CR3_TARGET_COUNT, 4)]),
    # the MSR-load address is not checked while the count is 0
    ("real", [(F.VM_ENTRY_MSR_LOAD_ADDRESS, (1 << 64) - 1)]),
    # an area ending at the last byte of the physical-address width
    ("long", [(F.VM_ENTRY_MSR_LOAD_ADDRESS, (1 << 39) - 0x8000), (F.VM_ENTRY_MSR_LOAD_COUNT, 0)]),
    # bitmap addresses are not checked while their controls are 0
    ("real", [(F.IO_BITMAP_A, PRIV + 0x1008), (F.IO_BITMAP_B, 1 << 45), (F.MSR_BITMAP, 0x123)]),
    # secondary controls are ignored when "activate secondary controls" is 0
    ("long", [(F.PRIMARY_PROC_BASED_CONTROLS, clrb(ProcBased.ACTIVATE_SECONDARY_CONTROLS)),
              (F.SECONDARY_PROC_BASED_CONTROLS, 0xFFFFFFFF)]),
    ("real", [(F.SECONDARY_PROC_BASED_CONTROLS, setb(ProcBased2.ENABLE_VPID)), (F.VIRTUAL_PROCESSOR_ID, 1)]),
    ("real", [(F.EXCEPTION_BITMAP, 0)]),
    # an invalid injection field is not checked while its valid bit is 0
    ("protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x7FFFFFFF)]),
    # host SS may be 0 for a 64-bit host
    ("long", [(F.HOST_SS_SELECTOR, 0)]),
    # host PAT and EFER are not checked without their load controls
    ("real", [(F.VM_EXIT_CONTROLS, clrb(XC.LOAD_IA32_PAT)), (F.HOST_IA32_PAT, 0x02)]),
    # a usable-bit DS skips the data-segment checks
    ("protected", [(F.GUEST_DS_ACCESS_RIGHTS, 0x10000)]),
    # real-mode CS of type 3 (data) is allowed with "unrestricted guest" and DPL 0
    ("real", [(F.GUEST_CS_ACCESS_RIGHTS, 0x93)]),
    # 16-bit busy TSS outside IA-32e mode
    ("protected", [(F.GUEST_TR_ACCESS_RIGHTS, 0x83)]),
    ("protected", [(F.GUEST_INTERRUPTIBILITY_STATE, 1), (F.GUEST_RFLAGS, 0x202)]),
    ("long", [(F.GUEST_INTERRUPTIBILITY_STATE, 2)]),
    ("long", [(F.GUEST_IA32_SYSENTER_EIP, 0xFFFF800000000000)]),
])
def test_settings_that_must_enter(mode, changes):
    vm = good_vm(mode)
    v = vm.vcpu
    for field, new in changes:
        v.vmwrite(field, new(v.vmread(field)) if callable(new) else new)
    assert_runs(vm)


@pytest.mark.parametrize("info,err,mode,gp", [
    (0x80000B0D, 0x1234, "protected", 0x80000B0D),     # #GP with error code
    (0x80000306, 0, "protected", 0x80000B0D),          # #UD
    (0x80000020, 0, "protected", 0x80000B0D),          # external interrupt 32 (IF = 1 below)
    (0x8000030D, 0, "real", 0x8000030D),               # #GP without error code: CR0.PE = 0 with UG
])
def test_valid_injection_passes_checks(info, err, mode, gp):
    """A well-formed injection passes the entry checks and is delivered
    (tests/test_vmx_events.py has the deliveries); with an IDT (IVT) limit
    of 0 its delivery raises #GP, which the exception bitmap turns into an
    exit that reports the injected event as IDT-vectoring information."""
    vm = good_vm(mode)
    v = vm.vcpu
    v.rflags = 0x202
    v.idtr = vtx.DescriptorTable(0, 0)
    v.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, info)
    v.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, err)
    assert v.check_entry() is None
    vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)(lambda v, e: vtx.STOP)
    r = vm.run()
    e = r.exit
    assert (e.reason, e.interruption_info, e.guest_rip) == (0, gp, CODE)
    # The #GP's error code: the IDT entry (vector * 8 + 2) with EXT = 1 (an
    # event external to the program); real mode pushes none.
    assert e.interruption_error_code == ((info & 0xFF) * 8 + 3 if mode == "protected" else 0)
    assert (e.idt_vectoring_info, e.idt_vectoring_error_code) == (info, err)
    assert v.vmread(F.VM_ENTRY_INTERRUPTION_INFO) == info & 0x7FFFFFFF


# ---------------------------------------------------------------------------
# 27.2.2 - 27.2.4: host state -> error 8
# ---------------------------------------------------------------------------

HOST_CASES = [
    ("cr0-pe-clear", [(F.HOST_CR0, 0x80050032)], "HOST_CR0"),
    ("cr0-ne-clear", [(F.HOST_CR0, 0x80050013)], "HOST_CR0"),
    ("cr0-pg-clear", [(F.HOST_CR0, 0x00050033)], "HOST_CR0"),
    ("cr0-bit-32", [(F.HOST_CR0, 0x180050033)], "HOST_CR0"),
    ("cr4-vmxe-clear", [(F.HOST_CR4, 0x20)], "HOST_CR4"),
    ("cr4-la57-unsupported", [(F.HOST_CR4, 0x3020)], "HOST_CR4"),
    ("cr3-beyond-maxphyaddr", [(F.HOST_CR3, 1 << 39)], "HOST_CR3"),
    ("sysenter-esp", [(F.HOST_IA32_SYSENTER_ESP, NONCANON)], "HOST_SYSENTER_ESP_CANONICAL"),
    ("sysenter-eip", [(F.HOST_IA32_SYSENTER_EIP, 0x00FF000000000000)], "HOST_SYSENTER_EIP_CANONICAL"),
    ("fs-base", [(F.HOST_FS_BASE, NONCANON)], "HOST_FS_BASE_CANONICAL"),
    ("gs-base", [(F.HOST_GS_BASE, 0x8000000000000000)], "HOST_GS_BASE_CANONICAL"),
    ("tr-base", [(F.HOST_TR_BASE, NONCANON)], "HOST_TR_BASE_CANONICAL"),
    ("gdtr-base", [(F.HOST_GDTR_BASE, NONCANON)], "HOST_GDTR_BASE_CANONICAL"),
    ("idtr-base", [(F.HOST_IDTR_BASE, NONCANON)], "HOST_IDTR_BASE_CANONICAL"),
    ("pat-type-2", [(F.HOST_IA32_PAT, 0x0007040600070402)], "HOST_IA32_PAT_PA0"),
    ("pat-type-8", [(F.HOST_IA32_PAT, 0x0807040600070406)], "HOST_IA32_PAT_PA7"),
    ("efer-lma-clear", [(F.HOST_IA32_EFER, 0x100)], "HOST_IA32_EFER_LMA"),
    ("efer-lme-clear", [(F.HOST_IA32_EFER, 0x400)], "HOST_IA32_EFER_LME"),
    ("efer-reserved-bit", [(F.HOST_IA32_EFER, 0x502)], "HOST_IA32_EFER_RESERVED_BITS"),
    ("cs-rpl", [(F.HOST_CS_SELECTOR, 0x13)], "HOST_CS_SELECTOR_RPL"),
    ("ss-rpl", [(F.HOST_SS_SELECTOR, 0x19)], "HOST_SS_SELECTOR_RPL"),
    ("ds-ti", [(F.HOST_DS_SELECTOR, 0x1C)], "HOST_DS_SELECTOR_TI"),
    ("es-rpl", [(F.HOST_ES_SELECTOR, 0x3)], "HOST_ES_SELECTOR_RPL"),
    ("fs-ti", [(F.HOST_FS_SELECTOR, 0x4)], "HOST_FS_SELECTOR_TI"),
    ("gs-rpl", [(F.HOST_GS_SELECTOR, 0x2)], "HOST_GS_SELECTOR_RPL"),
    ("tr-rpl", [(F.HOST_TR_SELECTOR, 0x41)], "HOST_TR_SELECTOR_RPL"),
    ("cs-zero", [(F.HOST_CS_SELECTOR, 0)], "HOST_CS_SELECTOR_NULL"),
    ("tr-zero", [(F.HOST_TR_SELECTOR, 0)], "HOST_TR_SELECTOR_NULL"),
    ("rip-noncanonical", [(F.HOST_RIP, NONCANON)], "HOST_RIP_CANONICAL"),
    ("cr4-pae-clear", [(F.HOST_CR4, 0x2000)], "HOST_CR4_PAE"),
    ("address-space-size-clear", [(F.VM_EXIT_CONTROLS, clrb(XC.HOST_ADDRESS_SPACE_SIZE | XC.LOAD_IA32_EFER))],
     "HOST_ADDRESS_SPACE_SIZE_IN_IA32E"),
    # with "load IA32_EFER" the EFER check sees LMA != host address-space size first
    ("address-space-size-clear-efer", [(F.VM_EXIT_CONTROLS, clrb(XC.HOST_ADDRESS_SPACE_SIZE))], "HOST_IA32_EFER_LMA"),
]


@pytest.mark.parametrize("name,changes,check", HOST_CASES, ids=[c[0] for c in HOST_CASES])
@pytest.mark.parametrize("mode", ["real", "long"])
def test_host_state_checks(mode, name, changes, check):
    mutate_and_check(mode, changes, HOST, check)


def test_control_checks_come_before_host_checks():
    vm = good_vm("real")
    v = vm.vcpu
    v.vmwrite(F.HOST_CR0, 0)
    v.vmwrite(F.CR3_TARGET_COUNT, 9)
    e = expect_failure(vm, *CTL, "CR3_TARGET_COUNT")
    v.vmwrite(F.CR3_TARGET_COUNT, 0)
    expect_failure(vm, *HOST, "HOST_CR0")


def test_host_checks_come_before_guest_checks():
    vm = good_vm("real")
    v = vm.vcpu
    v.vmwrite(F.HOST_TR_SELECTOR, 0)
    v.vmwrite(F.VMCS_LINK_POINTER, 0)
    expect_failure(vm, *HOST, "HOST_TR_SELECTOR_NULL")
    v.vmwrite(F.HOST_TR_SELECTOR, 0x40)
    expect_failure(vm, *GUEST, "GUEST_VMCS_LINK_POINTER_REVISION")


# ---------------------------------------------------------------------------
# 27.3.1: guest state -> VM exit, basic reason 33 with bit 31 set
# ---------------------------------------------------------------------------

def seg_ar(name):
    return getattr(F, f"GUEST_{name}_ACCESS_RIGHTS")


GUEST_CASES = [
    # 27.3.1.1 control registers, DR7, MSRs
    ("cr0-pg-without-pe", "real", [(F.GUEST_CR0, 0x80000030)], "GUEST_CR0_PG_WITHOUT_PE"),
    ("cr0-ne-clear", "real", [(F.GUEST_CR0, 0x10)], "GUEST_CR0"),
    ("cr0-ne-clear-long", "long", [(F.GUEST_CR0, clrb(0x20))], "GUEST_CR0"),
    ("cr0-bit-32", "protected", [(F.GUEST_CR0, setb(1 << 32))], "GUEST_CR0"),
    ("cr0-pe-clear-without-ug", "real", [(F.SECONDARY_PROC_BASED_CONTROLS, clrb(ProcBased2.UNRESTRICTED_GUEST))],
     "GUEST_CR0"),
    ("cr0-pg-clear-without-ug", "protected", [(F.SECONDARY_PROC_BASED_CONTROLS, clrb(ProcBased2.UNRESTRICTED_GUEST))],
     "GUEST_CR0"),
    ("cr4-vmxe-clear", "real", [(F.GUEST_CR4, 0)], "GUEST_CR4"),
    ("cr4-vmxe-clear-long", "long", [(F.GUEST_CR4, clrb(0x2000))], "GUEST_CR4"),
    ("cr4-unsupported-bit", "protected", [(F.GUEST_CR4, setb(1 << 12))], "GUEST_CR4"),
    ("cr3-beyond-maxphyaddr", "protected", [(F.GUEST_CR3, 1 << 39)], "GUEST_CR3"),
    ("ia32e-without-pae", "long", [(F.GUEST_CR4, clrb(0x20))], "GUEST_IA32E_MODE_CR4_PAE"),
    ("ia32e-without-pg", "long", [(F.GUEST_CR0, clrb(1 << 31))], "GUEST_IA32E_MODE_CR0_PG"),
    ("pcide-outside-ia32e", "protected", [(F.GUEST_CR4, setb(1 << 17))], "GUEST_CR4_PCIDE"),
    ("dr7-high-bits", "protected", [(F.GUEST_DR7, 0x100000400)], "GUEST_DR7"),
    ("sysenter-esp", "long", [(F.GUEST_IA32_SYSENTER_ESP, NONCANON)], "GUEST_SYSENTER_ESP_CANONICAL"),
    ("sysenter-eip", "real", [(F.GUEST_IA32_SYSENTER_EIP, NONCANON)], "GUEST_SYSENTER_EIP_CANONICAL"),
    ("pat-type-3", "real", [(F.GUEST_IA32_PAT, 0x0007040600070403)], "GUEST_IA32_PAT_PA0"),
    ("efer-lma-without-ia32e", "protected", [(F.GUEST_IA32_EFER, 0x500)], "GUEST_IA32_EFER_LMA"),
    ("efer-lma-clear-ia32e", "long", [(F.GUEST_IA32_EFER, 0x100)], "GUEST_IA32_EFER_LMA"),
    ("efer-lme-clear-with-pg", "long", [(F.GUEST_IA32_EFER, 0x400)], "GUEST_IA32_EFER_LME"),
    ("efer-reserved-bit", "real", [(F.GUEST_IA32_EFER, 0x2)], "GUEST_IA32_EFER_RESERVED_BITS"),
    ("efer-reserved-bit-63", "long", [(F.GUEST_IA32_EFER, setb(1 << 63))], "GUEST_IA32_EFER_RESERVED_BITS"),
    # 27.3.1.2 segment registers
    ("tr-ti", "protected", [(F.GUEST_TR_SELECTOR, 0x44)], "GUEST_TR_SELECTOR_TI"),
    ("ldtr-ti-usable", "protected", [(F.GUEST_LDTR_SELECTOR, 0x4), (F.GUEST_LDTR_ACCESS_RIGHTS, 0x82)],
     "GUEST_LDTR_SELECTOR_TI"),
    ("ss-rpl-without-ug", "long", [(F.SECONDARY_PROC_BASED_CONTROLS, clrb(ProcBased2.UNRESTRICTED_GUEST)),
                                   (F.GUEST_SS_SELECTOR, 0x13)], "GUEST_SS_SELECTOR_RPL"),
    ("v86-segments", "protected", [(F.GUEST_RFLAGS, 0x20002)], "GUEST_CS_BASE_V86"),
    ("cs-base-high", "long", [(F.GUEST_CS_BASE, 1 << 32)], "GUEST_CS_BASE_HIGH_BITS"),
    ("ss-base-high", "protected", [(F.GUEST_SS_BASE, 1 << 32)], "GUEST_SS_BASE_HIGH_BITS"),
    ("fs-base-noncanonical", "long", [(F.GUEST_FS_BASE, NONCANON)], "GUEST_FS_BASE_CANONICAL"),
    ("tr-base-noncanonical", "real", [(F.GUEST_TR_BASE, NONCANON)], "GUEST_TR_BASE_CANONICAL"),
    ("cs-read-only-data-type", "protected", [(seg_ar("CS"), 0xC091)], "GUEST_CS_TYPE"),
    ("cs-code-not-accessed", "long", [(seg_ar("CS"), 0xA09A)], "GUEST_CS_TYPE"),
    ("cs-not-present", "protected", [(seg_ar("CS"), 0xC01B)], "GUEST_CS_P"),
    ("cs-system", "long", [(seg_ar("CS"), 0xA08B)], "GUEST_CS_S"),
    ("cs-l-and-db", "long", [(seg_ar("CS"), 0xE09B)], "GUEST_CS_DB_WITH_L"),
    ("cs-reserved-8", "protected", [(seg_ar("CS"), 0xC19B)], "GUEST_CS_RESERVED_11_8"),
    ("cs-reserved-17", "protected", [(seg_ar("CS"), 0x2C09B)], "GUEST_CS_RESERVED_31_17"),
    ("cs-g-limit", "protected", [(F.GUEST_CS_LIMIT, 0xFFF00000), (seg_ar("CS"), 0x409B)],
     "GUEST_CS_G_LIMIT_HIGH"),
    ("cs-g-low-bits", "protected", [(F.GUEST_CS_LIMIT, 0xFFFF0000)], "GUEST_CS_G_LIMIT_LOW"),
    ("cs-type3-dpl3", "real", [(seg_ar("CS"), 0xF3)], "GUEST_CS_DPL_TYPE_3"),
    ("cs-dpl-ne-ss-dpl", "protected", [(seg_ar("CS"), 0xC0BB)], "GUEST_CS_DPL_NONCONFORMING"),
    ("ss-code-type", "protected", [(seg_ar("SS"), 0xC09B)], "GUEST_SS_TYPE"),
    ("ss-not-present", "long", [(seg_ar("SS"), 0xC013)], "GUEST_SS_P"),
    # (CS of type 3 keeps the CS DPL rules satisfied with any SS.DPL)
    ("ss-dpl3-real-mode", "real", [(seg_ar("CS"), 0x93), (seg_ar("SS"), 0xF3)], "GUEST_SS_DPL_ZERO"),
    ("ss-dpl3-unusable-real-mode", "real", [(seg_ar("CS"), 0x93), (seg_ar("SS"), 0x100F3)],
     "GUEST_SS_DPL_ZERO"),
    ("ss-dpl-ne-rpl-without-ug", "long", [(F.SECONDARY_PROC_BASED_CONTROLS, clrb(ProcBased2.UNRESTRICTED_GUEST)),
                                          (seg_ar("CS"), 0xA09F), (seg_ar("SS"), 0xC0B3)],
     "GUEST_SS_DPL_RPL"),
    ("ds-not-accessed", "protected", [(seg_ar("DS"), 0xC092)], "GUEST_DS_TYPE_ACCESSED"),
    ("es-execute-only", "protected", [(seg_ar("ES"), 0xC099)], "GUEST_ES_TYPE_READABLE"),
    ("fs-system", "long", [(seg_ar("FS"), 0xC083)], "GUEST_FS_S"),
    ("gs-not-present", "real", [(seg_ar("GS"), 0x13)], "GUEST_GS_P"),
    ("ds-g-limit", "real", [(F.GUEST_DS_LIMIT, 0x1000), (seg_ar("DS"), 0x8093)], "GUEST_DS_G_LIMIT_LOW"),
    ("ds-dpl-below-rpl-without-ug", "long", [(F.SECONDARY_PROC_BASED_CONTROLS, clrb(ProcBased2.UNRESTRICTED_GUEST)),
                                             (F.GUEST_DS_SELECTOR, 0x13)], "GUEST_DS_DPL_RPL"),
    ("tr-available-tss", "protected", [(seg_ar("TR"), 0x89)], "GUEST_TR_TYPE"),
    ("tr-16bit-busy-ia32e", "long", [(seg_ar("TR"), 0x83)], "GUEST_TR_TYPE"),
    ("tr-unusable", "real", [(seg_ar("TR"), 0x1008B)], "GUEST_TR_UNUSABLE"),
    ("tr-s-bit", "protected", [(seg_ar("TR"), 0x9B)], "GUEST_TR_S"),
    ("tr-not-present", "long", [(seg_ar("TR"), 0x0B)], "GUEST_TR_P"),
    ("ldtr-wrong-type", "protected", [(seg_ar("LDTR"), 0x83)], "GUEST_LDTR_TYPE"),
    ("ldtr-not-present", "long", [(seg_ar("LDTR"), 0x02)], "GUEST_LDTR_P"),
    # 27.3.1.3 descriptor tables
    ("gdtr-base", "long", [(F.GUEST_GDTR_BASE, NONCANON)], "GUEST_GDTR_BASE_CANONICAL"),
    ("idtr-base", "protected", [(F.GUEST_IDTR_BASE, 0xFFFF000000000000)], "GUEST_IDTR_BASE_CANONICAL"),
    ("idtr-limit", "real", [(F.GUEST_IDTR_LIMIT, 0x10000)], "GUEST_IDTR_LIMIT"),
    ("gdtr-limit", "long", [(F.GUEST_GDTR_LIMIT, 0xFFFFFFFF)], "GUEST_GDTR_LIMIT"),
    # 27.3.1.4 RIP and RFLAGS
    ("rip-noncanonical-64", "long", [(F.GUEST_RIP, NONCANON)], "GUEST_RIP_CANONICAL"),
    ("rip-high-32", "protected", [(F.GUEST_RIP, (1 << 32) | CODE)], "GUEST_RIP_HIGH_BITS"),
    ("rip-high-real", "real", [(F.GUEST_RIP, (1 << 40) | CODE)], "GUEST_RIP_HIGH_BITS"),
    ("rip-high-compat", "long", [(seg_ar("CS"), 0xC09B), (F.GUEST_RIP, (1 << 32) | CODE)], "GUEST_RIP_HIGH_BITS"),
    ("rflags-bit1-clear", "real", [(F.GUEST_RFLAGS, 0)], "GUEST_RFLAGS_BIT_1"),
    ("rflags-bit3", "protected", [(F.GUEST_RFLAGS, 0xA)], "GUEST_RFLAGS_RESERVED_BITS"),
    ("rflags-bit5", "long", [(F.GUEST_RFLAGS, 0x22)], "GUEST_RFLAGS_RESERVED_BITS"),
    ("rflags-bit15", "protected", [(F.GUEST_RFLAGS, 0x8002)], "GUEST_RFLAGS_RESERVED_BITS"),
    ("rflags-bit22", "real", [(F.GUEST_RFLAGS, 0x400002)], "GUEST_RFLAGS_RESERVED_BITS"),
    ("rflags-bit63", "long", [(F.GUEST_RFLAGS, (1 << 63) | 2)], "GUEST_RFLAGS_RESERVED_BITS"),
    ("rflags-if-clear-injecting-interrupt", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000020)],
     "GUEST_RFLAGS_IF"),
    # 27.3.1.5 non-register state
    ("activity-shutdown-injecting-interrupt", "real", [(F.GUEST_ACTIVITY_STATE, 2), (F.GUEST_RFLAGS, setb(1 << 9)),
                                                       (F.VM_ENTRY_INTERRUPTION_INFO, 0x80000030)],
     "GUEST_ACTIVITY_STATE_HLT_INJECTION"),
    ("activity-wait-for-sipi-injecting-nmi", "long", [(F.GUEST_ACTIVITY_STATE, 3),
                                                      (F.VM_ENTRY_INTERRUPTION_INFO, 0x80000202)],
     "GUEST_ACTIVITY_STATE_HLT_INJECTION"),
    ("activity-4", "protected", [(F.GUEST_ACTIVITY_STATE, 4)], "GUEST_ACTIVITY_STATE_RANGE"),
    ("activity-hlt-with-mov-ss-blocking", "long", [(F.GUEST_ACTIVITY_STATE, 1),
                                                    (F.GUEST_INTERRUPTIBILITY_STATE, 2)], "GUEST_ACTIVITY_STATE_BLOCKING"),
    ("intr-reserved-bit-5", "real", [(F.GUEST_INTERRUPTIBILITY_STATE, 1 << 5)], "GUEST_INTERRUPTIBILITY_RESERVED_BITS"),
    ("intr-reserved-bit-31", "long", [(F.GUEST_INTERRUPTIBILITY_STATE, 1 << 31)], "GUEST_INTERRUPTIBILITY_RESERVED_BITS"),
    ("activity-hlt-injecting-int-n", "protected", [(F.GUEST_ACTIVITY_STATE, 1),
                                                   (F.VM_ENTRY_INSTRUCTION_LENGTH, 2),
                                                   (F.VM_ENTRY_INTERRUPTION_INFO, 0x80000480)],
     "GUEST_ACTIVITY_STATE_HLT_INJECTION"),
    ("activity-hlt-injecting-ud", "long", [(F.GUEST_ACTIVITY_STATE, 1),
                                           (F.VM_ENTRY_INTERRUPTION_INFO, 0x80000306)],
     "GUEST_ACTIVITY_STATE_HLT_INJECTION"),
    ("intr-sti-and-mov-ss", "protected", [(F.GUEST_RFLAGS, 0x202), (F.GUEST_INTERRUPTIBILITY_STATE, 3)],
     "GUEST_INTERRUPTIBILITY_STI_AND_MOV_SS"),
    ("intr-sti-with-if-clear", "protected", [(F.GUEST_INTERRUPTIBILITY_STATE, 1)], "GUEST_INTERRUPTIBILITY_STI_IF"),
    ("intr-smi-outside-smm", "long", [(F.GUEST_INTERRUPTIBILITY_STATE, 4)], "GUEST_INTERRUPTIBILITY_SMI"),
    ("intr-mov-ss-injecting-interrupt", "protected", [(F.GUEST_RFLAGS, 0x202),
                                                      (F.VM_ENTRY_INTERRUPTION_INFO, 0x80000020),
                                                      (F.GUEST_INTERRUPTIBILITY_STATE, 2)],
     "GUEST_INTERRUPTIBILITY_MOV_SS_EXTERNAL_INTERRUPT"),
    ("intr-mov-ss-injecting-nmi", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000202),
                                                (F.GUEST_INTERRUPTIBILITY_STATE, 2)],
     "GUEST_INTERRUPTIBILITY_MOV_SS_NMI"),
    ("intr-virtual-nmi-blocking-injecting-nmi", "protected",
     [(F.PIN_BASED_CONTROLS, setb(PinBased.NMI_EXITING | PinBased.VIRTUAL_NMIS)),
      (F.VM_ENTRY_INTERRUPTION_INFO, 0x80000202), (F.GUEST_INTERRUPTIBILITY_STATE, 8)],
     "GUEST_INTERRUPTIBILITY_NMI_VIRTUAL_NMIS"),
    ("pending-dbg-reserved-bit-4", "real", [(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x10)],
     "GUEST_PENDING_DEBUG_RESERVED_BITS"),
    ("pending-dbg-bit-63", "long", [(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 1 << 63)], "GUEST_PENDING_DEBUG_RESERVED_BITS"),
]


@pytest.mark.parametrize("name,mode,changes,check", GUEST_CASES, ids=[c[0] for c in GUEST_CASES])
def test_guest_state_checks(name, mode, changes, check):
    mutate_and_check(mode, changes, GUEST, check)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value,check", [(0, "GUEST_VMCS_LINK_POINTER_REVISION"),
                                         (0xFFFFFFFF, "GUEST_VMCS_LINK_POINTER_ALIGNMENT"),
                                         (0x1000, "GUEST_VMCS_LINK_POINTER_REVISION")])
def test_vmcs_link_pointer_exit_qualification_4(mode, value, check):
    """An invalid VMCS link pointer fails with exit qualification 4 (SDM
    27.8: "failure was due to an invalid VMCS link pointer"); the 32 bits at
    0 (zeros) and at CODE (the guest's code) hold no revision identifier."""
    mutate_and_check(mode, [(F.VMCS_LINK_POINTER, value)], GUEST, check, qual=4)


def pae_vm():
    """Protected mode with PAE paging (EPT on): PDPTEs come from the VMCS."""
    vm = good_vm("protected")
    v = vm.vcpu
    pdpt, pd = 0x10000, 0x11000
    vm.write_u64(pdpt, pd | 1)
    vm.write_u64(pd, 0x83)                      # 2 MiB identity page
    v.cr3 = pdpt
    v.cr4 = 0x2020
    v.cr0 = 0x80000031
    v.vmwrite(F.GUEST_PDPTE0, pd | 1)
    return vm


def test_pae_guest_runs():
    assert_runs(pae_vm())


@pytest.mark.parametrize("pdpte", [0x11000 | 1 | 2, 0x11000 | 1 | 0x80, 0x11000 | 1 | (1 << 40), 3 << 5 | 1])
def test_pdpte_checks_exit_qualification_2(pdpte):
    vm = pae_vm()
    v = vm.vcpu
    v.vmwrite(F.GUEST_PDPTE2, pdpte)
    v.vmwrite(F.VM_INSTRUCTION_ERROR, 0)
    expect_failure(vm, *GUEST, "GUEST_PDPTE2")
    assert v.vmread(F.EXIT_QUALIFICATION) == 2
    # A not-present PDPTE is not checked.
    v.vmwrite(F.GUEST_PDPTE2, pdpte & ~1)
    assert_runs(vm)


def test_rflags_vm_in_real_mode():
    """Virtual-8086 segments are consistent, but VM = 1 with CR0.PE = 0 is
    invalid (27.3.1.4)."""
    vm = good_vm("real")
    v = vm.vcpu
    for name in ("es", "cs", "ss", "ds", "fs", "gs"):
        setattr(v, name, Segment(0, 0, 0xFFFF, 0xF3))
    v.rflags = 0x20002
    expect_failure(vm, *GUEST, "GUEST_RFLAGS_VM_CR0_PE")


def test_activity_hlt_with_ss_dpl_3():
    """HLT is not a valid activity state when SS.DPL != 0.  (A conforming CS
    keeps the CS checks satisfied with SS.DPL = 3.)"""
    vm = good_vm("protected")
    v = vm.vcpu
    v.cs = Segment(0x08, 0, 0xFFFFFFFF, 0xC09F)
    v.ss = Segment(0x13, 0, 0xFFFFFFFF, 0xC0F3)
    # SS.DPL 3 itself is fine (UG ignores RPLs): the entry succeeds, and the
    # guest runs at CPL 3 (= SS.DPL), where HLT is #GP(0).
    vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)(lambda v, e: vtx.STOP)
    r = vm.run()
    assert r.exit.reason == 0 and r.exit.vector == 13 and r.exit.guest_rip == CODE + 1
    vm = good_vm("protected")
    v = vm.vcpu
    v.cs = Segment(0x08, 0, 0xFFFFFFFF, 0xC09F)
    v.ss = Segment(0x13, 0, 0xFFFFFFFF, 0xC0F3)
    v.vmwrite(F.GUEST_ACTIVITY_STATE, 1)
    expect_failure(vm, *GUEST, "GUEST_ACTIVITY_STATE_HLT_SS_DPL")


def test_entry_in_hlt_state_halts():
    vm = good_vm("protected")
    v = vm.vcpu
    v.vmwrite(F.GUEST_ACTIVITY_STATE, 1)
    r = vm.run()
    assert r.stop == "halted" and r.instructions == 0 and v.rip == CODE


def test_vm_instruction_error_and_exit_reason_fields():
    vm = good_vm("real")
    v = vm.vcpu
    v.vmwrite(F.PIN_BASED_CONTROLS, 0)
    expect_failure(vm, *CTL, "PIN_BASED_CONTROLS")
    assert v.vmread(F.VM_INSTRUCTION_ERROR) == vtx.VmInstructionError(7) == 7
    v.vmwrite(F.PIN_BASED_CONTROLS, 0x16)
    v.vmwrite(F.HOST_CR4, 0)
    expect_failure(vm, *HOST, "HOST_CR4")
    assert v.vmread(F.VM_INSTRUCTION_ERROR) == 8
    v.vmwrite(F.HOST_CR4, 0x2020)
    v.vmwrite(F.GUEST_RFLAGS, 0)
    expect_failure(vm, *GUEST, "GUEST_RFLAGS_BIT_1")
    assert v.vmread(F.EXIT_REASON) == 0x80000021
    assert v.vmread(F.VM_INSTRUCTION_ERROR) == 8       # not written by a guest-state failure
    v.vmwrite(F.GUEST_RFLAGS, 2)
    assert_runs(vm)
    assert v.vmread(F.EXIT_REASON) == 12


def test_failure_after_launch_is_a_vmresume_failure():
    """Once launched the next entry is a VMRESUME; its checks fail the same
    way and leave the VMCS launched."""
    vm = good_vm("protected")
    v = vm.vcpu
    assert_runs(vm)
    v.vmwrite(F.GUEST_CR4, 0)
    with pytest.raises(vtx.VmEntryError) as ei:
        vm.run()
    assert ei.value.check == "GUEST_CR4"
    assert v.launched
    # The failed entry did not consume the completion of the HLT the STOP
    # left (vtx.STOP): RIP is still at it.
    assert v.rip == CODE + 1 and vm.pending_completion() == (CODE + 1, 1)
    v.vmwrite(F.GUEST_CR4, 0x2000)
    vm.discard_pending()                   # enter at the HLT again
    r = vm.run()
    assert r.exit.reason == 12 and r.exit.guest_rip == CODE + 1     # STOP left RIP at the HLT


def test_clear_makes_next_entry_a_launch():
    vm = good_vm("real")
    v = vm.vcpu
    assert_runs(vm)
    assert vm._priv[OFF_LAUNCH_STATE] == 1
    v.clear()
    assert not v.launched and vm._priv[OFF_LAUNCH_STATE] == 0


# (every check of the table is failed by a test here or in
# tests/test_vmx_entry_conditions.py: the meta-test is there)


# ---------------------------------------------------------------------------
# The VMCS region: VMREAD/VMWRITE and the layout (docs/architecture.rst, decision 7)
# ---------------------------------------------------------------------------

@pytest.fixture
def vcpu_vm():
    vm = vtx.VM(memory=1 << 16)
    return vm.add_vcpu(), vm


@pytest.mark.parametrize("enc", [
    0x0001,                  # a 16-bit field with access type "high"
    0x4001,                  # a 32-bit field with access type "high"
    0x6001,                  # natural width: no high access
    0x6C01,
    0x00FE,                  # an index no 16-bit control field has
    0x8000,                  # bit 15 set: width 2 does not exist (bits 14:13 = 0 with bit 15)
    0x10000,                 # bits 31:15 must be 0
    0xFFFFFFFF,
])
def test_unsupported_encodings_raise(vcpu_vm, enc):
    v, vm = vcpu_vm
    with pytest.raises(vtx.VtxError) as ei:
        v.vmread(enc)
    assert "12" in str(ei.value)
    with pytest.raises(vtx.VtxError):
        v.vmwrite(enc, 0)


def test_bad_encoding_types(vcpu_vm):
    v, vm = vcpu_vm
    for bad in (1.0, None, True):
        with pytest.raises(TypeError):
            v.vmread(bad)
    # An int out of the 32-bit encoding range is a value error naming the range.
    for bad in (-1, 1 << 32):
        with pytest.raises(vtx.ArgumentError, match=r"\[0, 0xffffffff\]"):
            v.vmread(bad)
        with pytest.raises(vtx.ArgumentError, match=r"\[0, 0xffffffff\]"):
            v.vmwrite(bad, 0)
    with pytest.raises(vtx.VtxError):
        v.vmread("NO_SUCH_FIELD")
    assert v.vmread("GUEST_RIP") == v.vmread(F.GUEST_RIP)
    assert v.vmread("vmcs_guest_rip") == v.vmread(F.GUEST_RIP)


@pytest.mark.parametrize("field,bits", [
    (F.GUEST_ES_SELECTOR, 16), (F.VIRTUAL_PROCESSOR_ID, 16), (F.HOST_TR_SELECTOR, 16),
    (F.PIN_BASED_CONTROLS, 32), (F.GUEST_ES_LIMIT, 32), (F.EXIT_REASON, 32),
    (F.TSC_OFFSET, 64), (F.VMCS_LINK_POINTER, 64), (F.GUEST_IA32_EFER, 64),
    (F.GUEST_RIP, 64), (F.HOST_CR0, 64), (F.EXIT_QUALIFICATION, 64),
])
def test_field_widths(vcpu_vm, field, bits):
    v, vm = vcpu_vm
    off, size = field_offset(field), field_size(field)
    assert size * 8 == bits
    vm._priv[off - 8:off + size + 8] = b"\xAA" * (size + 16)
    top = (1 << bits) - 1
    v.vmwrite(field, top)
    assert v.vmread(field) == top
    assert bytes(vm._priv[off:off + size]) == b"\xff" * size
    # the bytes around the field are untouched
    assert bytes(vm._priv[off - 8:off]) == b"\xAA" * 8 and bytes(vm._priv[off + size:off + size + 8]) == b"\xAA" * 8
    with pytest.raises(ValueError):
        v.vmwrite(field, 1 << bits)
    assert v.vmread(field) == top          # a rejected write changes nothing
    v.vmwrite(field, -1)                   # negative values are two's complement
    assert v.vmread(field) == top
    with pytest.raises(ValueError):
        v.vmwrite(field, -(1 << bits))
    with pytest.raises(TypeError):
        v.vmwrite(field, 1.5)
    v.vmwrite(field, 0x1234)
    assert v.vmread(field) == 0x1234


def test_high_access_of_64_bit_fields(vcpu_vm):
    v, vm = vcpu_vm
    v.vmwrite(F.TSC_OFFSET, 0x1111111122222222)
    assert v.vmread(F.TSC_OFFSET | 1) == 0x11111111
    v.vmwrite(F.TSC_OFFSET | 1, 0xDEADBEEF)
    assert v.vmread(F.TSC_OFFSET) == 0xDEADBEEF22222222
    off = field_offset(F.TSC_OFFSET)
    assert field_offset(F.TSC_OFFSET | 1) == off + 4
    assert bytes(vm._priv[off + 4:off + 8]) == (0xDEADBEEF).to_bytes(4, "little")
    with pytest.raises(ValueError):
        v.vmwrite(F.TSC_OFFSET | 1, 1 << 32)


def test_layout_offsets_match_the_region(vcpu_vm):
    """Every field the spec lists lands at spec.field_offset in the VMCS
    region, no two fields overlap, and none touches the header (revision id,
    abort indicator, launch state)."""
    v, vm = vcpu_vm
    seen = {}
    header_end = OFF_LAUNCH_STATE + 1
    for i, (name, enc, _) in enumerate(FIELDS):
        off, size = field_offset(enc), field_size(enc)
        assert header_end <= off and off + size <= VMCS_REGION_SIZE, name
        for b in range(off, off + size):
            assert b not in seen, f"{name} overlaps {seen[b]}"
            seen[b] = name
        if name not in MODEL_FIELDS:
            continue
        value = int.from_bytes(bytes(((i * 7 + k * 13 + 1) & 0xFF) for k in range(size)), "little")
        v.vmwrite(enc, value)
        assert bytes(vm._priv[off:off + size]) == value.to_bytes(size, "little"), name
    for i, (name, enc, _) in enumerate(FIELDS):
        if name not in MODEL_FIELDS:
            with pytest.raises(vtx.VtxError, match="error 12"):
                v.vmread(enc)
            continue
        size = field_size(enc)
        value = int.from_bytes(bytes(((i * 7 + k * 13 + 1) & 0xFF) for k in range(size)), "little")
        assert v.vmread(enc) == value, name
    assert int.from_bytes(vm._priv[OFF_REVISION:OFF_REVISION + 4], "little") == capabilities.VMCS_REVISION_ID


def test_register_properties_are_vmcs_fields(vcpu_vm):
    v, vm = vcpu_vm
    v.rip = 0x1234
    v.rsp = 0xFFF0
    v.rflags = 0x202
    v.cr0 = 0x31
    v.cs = Segment(0x08, 0x10000, 0xFFFFF, 0xC09B)
    v.gdtr = DescriptorTable(0x5000, 0x27)
    assert v.vmread(F.GUEST_RIP) == 0x1234 and v.vmread(F.GUEST_RSP) == 0xFFF0
    assert v.vmread(F.GUEST_RFLAGS) == 0x202 and v.vmread(F.GUEST_CR0) == 0x31
    assert (v.vmread(F.GUEST_CS_SELECTOR), v.vmread(F.GUEST_CS_BASE), v.vmread(F.GUEST_CS_LIMIT),
            v.vmread(F.GUEST_CS_ACCESS_RIGHTS)) == (0x08, 0x10000, 0xFFFFF, 0xC09B)
    assert (v.vmread(F.GUEST_GDTR_BASE), v.vmread(F.GUEST_GDTR_LIMIT)) == (0x5000, 0x27)
    v.vmwrite(F.GUEST_RIP, 0x4321)
    assert v.rip == 0x4321
