"""VM-instruction error numbers (Intel SDM Vol. 3C, Section 31.4).

When a VMX instruction fails with VMfailValid, the processor writes one of
these numbers into the VM-instruction-error VMCS field.  Each row is
``(name, number, description)``.  Numbers 14, 21 and 27 are not used.
"""

__all__ = ["VM_INSTRUCTION_ERRORS"]

VM_INSTRUCTION_ERRORS = (
    ("VMCALL_IN_VMX_ROOT", 1, "VMCALL executed in VMX root operation"),
    ("VMCLEAR_INVALID_ADDRESS", 2, "VMCLEAR with an invalid physical address"),
    ("VMCLEAR_VMXON_POINTER", 3, "VMCLEAR with the VMXON pointer"),
    ("VMLAUNCH_NONCLEAR_VMCS", 4, "VMLAUNCH with a VMCS whose launch state is not clear"),
    ("VMRESUME_NONLAUNCHED_VMCS", 5, "VMRESUME with a VMCS whose launch state is not launched"),
    ("VMRESUME_AFTER_VMXOFF", 6, "VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME)"),
    ("ENTRY_INVALID_CONTROL_FIELDS", 7, "VM entry with invalid control field(s)"),
    ("ENTRY_INVALID_HOST_STATE", 8, "VM entry with invalid host-state field(s)"),
    ("VMPTRLD_INVALID_ADDRESS", 9, "VMPTRLD with an invalid physical address"),
    ("VMPTRLD_VMXON_POINTER", 10, "VMPTRLD with the VMXON pointer"),
    ("VMPTRLD_INCORRECT_REVISION", 11, "VMPTRLD with an incorrect VMCS revision identifier"),
    ("UNSUPPORTED_VMCS_COMPONENT", 12, "VMREAD or VMWRITE of an unsupported VMCS component"),
    ("VMWRITE_READ_ONLY_COMPONENT", 13, "VMWRITE to a read-only VMCS component"),
    ("VMXON_IN_VMX_ROOT", 15, "VMXON executed in VMX root operation"),
    ("ENTRY_INVALID_EXECUTIVE_VMCS_POINTER", 16, "VM entry with an invalid executive-VMCS pointer"),
    ("ENTRY_NONLAUNCHED_EXECUTIVE_VMCS", 17, "VM entry with a non-launched executive VMCS"),
    ("ENTRY_EXECUTIVE_VMCS_NOT_VMXON_POINTER", 18,
     "VM entry with an executive-VMCS pointer that is not the VMXON pointer "
     "(deactivating the dual-monitor treatment of SMIs and SMM)"),
    ("VMCALL_NONCLEAR_VMCS", 19,
     "VMCALL with a VMCS that is not clear (activating the dual-monitor treatment of SMIs and SMM)"),
    ("VMCALL_INVALID_EXIT_CONTROLS", 20, "VMCALL with invalid VM-exit control fields"),
    ("VMCALL_INCORRECT_MSEG_REVISION", 22,
     "VMCALL with an incorrect MSEG revision identifier (activating the dual-monitor treatment)"),
    ("VMXOFF_UNDER_DUAL_MONITOR", 23, "VMXOFF under the dual-monitor treatment of SMIs and SMM"),
    ("VMCALL_INVALID_SMM_MONITOR_FEATURES", 24,
     "VMCALL with invalid SMM-monitor features (activating the dual-monitor treatment)"),
    ("ENTRY_INVALID_EXECUTIVE_CONTROLS", 25,
     "VM entry with invalid VM-execution control fields in the executive VMCS (return from SMM)"),
    ("ENTRY_EVENTS_BLOCKED_BY_MOV_SS", 26, "VM entry with events blocked by MOV SS"),
    ("INVALID_OPERAND_TO_INVEPT_INVVPID", 28, "Invalid operand to INVEPT or INVVPID"),
)
