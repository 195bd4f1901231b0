"""The VM-entry checks the model performs, in SDM order (docs/architecture.rst, decision 6).

Each row is (ID, area, SDM section, what the check requires).  The area says how
a failure is reported (SDM Vol. 3 chapter 26):

- ``control``: VMfailValid with VM-instruction error 7 (invalid control fields);
- ``host``: VMfailValid with VM-instruction error 8 (invalid host-state fields);
- ``guest``: a VM exit with basic reason 33 and bit 31 set (invalid guest state).

The generator numbers the rows in this order and writes ``CK_<ID>`` into the C
header; the core records the number of the check that failed and the Python
error names it from this table.
"""

CONTROL, HOST, GUEST = "control", "host", "guest"

ENTRY_CHECKS = [
    # 26.2.1.1 VM-execution control fields
    ("PIN_BASED_CONTROLS", CONTROL, "26.2.1.1",
     "pin-based VM-execution controls respect IA32_VMX_TRUE_PINBASED_CTLS"),
    ("PRIMARY_PROC_BASED_CONTROLS", CONTROL, "26.2.1.1",
     "primary processor-based VM-execution controls respect IA32_VMX_TRUE_PROCBASED_CTLS"),
    ("SECONDARY_PROC_BASED_CONTROLS", CONTROL, "26.2.1.1",
     "secondary processor-based VM-execution controls respect IA32_VMX_PROCBASED_CTLS2"),
    ("CR3_TARGET_COUNT", CONTROL, "26.2.1.1",
     "the CR3-target count is not greater than 4"),
    ("IO_BITMAP_ADDRESSES", CONTROL, "26.2.1.1",
     "with 'use I/O bitmaps', both bitmap addresses are 4-KByte aligned and within the physical-address width"),
    ("MSR_BITMAP_ADDRESS", CONTROL, "26.2.1.1",
     "with 'use MSR bitmaps', the MSR-bitmap address is 4-KByte aligned and within the physical-address width"),
    ("VIRTUAL_NMIS", CONTROL, "26.2.1.1",
     "'virtual NMIs' is 0 unless 'NMI exiting' is 1, and 'NMI-window exiting' is 0 unless 'virtual NMIs' is 1"),
    ("EPT_POINTER", CONTROL, "26.2.1.1",
     "with 'enable EPT', the EPT pointer has a supported memory type, a page-walk length of 4, "
     "no unsupported accessed/dirty flag and no reserved bits set"),
    ("VPID_NONZERO", CONTROL, "26.2.1.1",
     "with 'enable VPID', the VPID is not 0000H"),
    ("UNRESTRICTED_GUEST_NEEDS_EPT", CONTROL, "26.2.1.1",
     "'unrestricted guest' is 0 unless 'enable EPT' is 1"),
    ("VM_FUNCTION_CONTROLS", CONTROL, "27.2.1.1",
     "with 'enable VM functions', the VM-function controls set only functions IA32_VMX_VMFUNC allows"),
    ("EPTP_SWITCHING", CONTROL, "27.2.1.1",
     "with the EPTP-switching VM function, 'enable EPT' is 1 and the EPTP-list address is 4-KByte aligned "
     "and within the physical-address width"),
    # 26.2.1.2 VM-exit control fields
    ("VM_EXIT_CONTROLS", CONTROL, "26.2.1.2",
     "VM-exit controls respect IA32_VMX_TRUE_EXIT_CTLS, and 'save VMX-preemption timer value' is 0 unless "
     "'activate VMX-preemption timer' is 1"),
    ("VM_EXIT_MSR_AREAS", CONTROL, "26.2.1.2",
     "VM-exit MSR-store and MSR-load counts are 0 (the model has no MSR areas yet)"),
    # 26.2.1.3 VM-entry control fields
    ("VM_ENTRY_CONTROLS", CONTROL, "26.2.1.3",
     "VM-entry controls respect IA32_VMX_TRUE_ENTRY_CTLS"),
    ("VM_ENTRY_INTERRUPTION_INFO", CONTROL, "26.2.1.3",
     "the VM-entry interruption-information field is valid: type and vector agree, reserved bits 30:12 "
     "are 0, deliver-error-code is set exactly for hardware exceptions that push one (in protected mode), "
     "the error code fits 16 bits, and software events have an instruction length of 1-15"),
    ("VM_ENTRY_MSR_LOAD_AREA", CONTROL, "26.2.1.3",
     "the VM-entry MSR-load count is 0 (the model has no MSR areas yet)"),
    # 26.2.2 - 26.2.4 host state
    ("HOST_CR0", HOST, "26.2.2",
     "host CR0 respects IA32_VMX_CR0_FIXED0 and IA32_VMX_CR0_FIXED1"),
    ("HOST_CR4", HOST, "26.2.2",
     "host CR4 respects IA32_VMX_CR4_FIXED0 and IA32_VMX_CR4_FIXED1"),
    ("HOST_CR3", HOST, "26.2.2",
     "host CR3 has no bits set beyond the physical-address width"),
    ("HOST_CANONICAL_ADDRESSES", HOST, "26.2.2",
     "host IA32_SYSENTER_ESP/EIP and the FS, GS, TR, GDTR and IDTR bases are canonical"),
    ("HOST_IA32_PAT", HOST, "26.2.2",
     "with 'load IA32_PAT', every host PAT entry is a valid memory type"),
    ("HOST_IA32_EFER", HOST, "26.2.2",
     "with 'load IA32_EFER', host IA32_EFER has no reserved bits set and LMA = LME = 'host address-space size'"),
    ("HOST_SELECTORS", HOST, "26.2.3",
     "host selectors have RPL and TI 0; CS and TR are not 0000H; SS is not 0000H unless the host is 64-bit"),
    ("HOST_ADDRESS_SPACE_SIZE", HOST, "26.2.4",
     "in IA-32e mode (the hosted hypervisor always is) 'host address-space size' is 1, outside it that "
     "control and 'IA-32e mode guest' are 0; with the control host CR4.PAE is 1 and host RIP canonical, "
     "without it host CR4.PCIDE is 0 and host RIP fits in 32 bits"),
    # 26.3.1.1 guest control registers, debug registers and MSRs
    ("GUEST_CR0", GUEST, "26.3.1.1",
     "guest CR0 respects the fixed bits (PE and PG may be 0 with 'unrestricted guest'); PG=1 requires PE=1"),
    ("GUEST_CR4", GUEST, "26.3.1.1",
     "guest CR4 respects IA32_VMX_CR4_FIXED0 and IA32_VMX_CR4_FIXED1"),
    ("GUEST_CR3", GUEST, "26.3.1.1",
     "guest CR3 has no bits set beyond the physical-address width"),
    ("GUEST_IA32E_MODE_PAGING", GUEST, "26.3.1.1",
     "with 'IA-32e mode guest', CR0.PG and CR4.PAE are 1; without it CR4.PCIDE is 0"),
    ("GUEST_DR7", GUEST, "26.3.1.1",
     "with 'load debug controls', bits 63:32 of DR7 are 0"),
    ("GUEST_SYSENTER_CANONICAL", GUEST, "26.3.1.1",
     "guest IA32_SYSENTER_ESP and IA32_SYSENTER_EIP are canonical"),
    ("GUEST_IA32_PAT", GUEST, "26.3.1.1",
     "with 'load IA32_PAT', every guest PAT entry is a valid memory type"),
    ("GUEST_IA32_EFER", GUEST, "26.3.1.1",
     "with 'load IA32_EFER', guest IA32_EFER has no reserved bits set, LMA equals 'IA-32e mode guest', "
     "and LME equals LMA when CR0.PG is 1"),
    # 26.3.1.2 segment registers
    ("GUEST_TR_LDTR_TI", GUEST, "26.3.1.2",
     "the TI flag of TR is 0, and of LDTR when LDTR is usable"),
    ("GUEST_SS_RPL", GUEST, "26.3.1.2",
     "SS.RPL equals CS.RPL (unless 'unrestricted guest'), outside virtual-8086 mode"),
    ("GUEST_V86_SEGMENTS", GUEST, "26.3.1.2",
     "in virtual-8086 mode, each segment's base is selector*16, limit FFFFH, access rights 00F3H"),
    ("GUEST_SEGMENT_BASES", GUEST, "26.3.1.2",
     "TR, FS and GS bases (and LDTR's if usable) are canonical; bits 63:32 of the CS base, "
     "and of usable SS, DS and ES bases, are 0"),
    ("GUEST_CS_ACCESS_RIGHTS", GUEST, "26.3.1.2",
     "CS: type 9, 11, 13 or 15 (or 3 with 'unrestricted guest'), S=1, DPL consistent with its type and SS.DPL, "
     "P=1, reserved bits 0, D/B=0 when L=1 in an IA-32e mode guest, G consistent with the limit"),
    ("GUEST_SS_ACCESS_RIGHTS", GUEST, "26.3.1.2",
     "SS: DPL equals RPL (unless 'unrestricted guest') and is 0 with CS type 3 or CR0.PE=0; if usable, "
     "type 3 or 7, S=1, P=1, reserved bits 0, G consistent with the limit"),
    ("GUEST_DATA_SEGMENT_ACCESS_RIGHTS", GUEST, "26.3.1.2",
     "DS, ES, FS, GS if usable: accessed type, readable if code, S=1, DPL >= RPL for data and "
     "non-conforming code (unless 'unrestricted guest'), P=1, reserved bits 0, G consistent with the limit"),
    ("GUEST_TR_ACCESS_RIGHTS", GUEST, "26.3.1.2",
     "TR: busy TSS type (11, or 3 outside IA-32e mode), S=0, P=1, usable, reserved bits 0, "
     "G consistent with the limit"),
    ("GUEST_LDTR_ACCESS_RIGHTS", GUEST, "26.3.1.2",
     "LDTR if usable: type 2, S=0, P=1, reserved bits 0, G consistent with the limit"),
    # 26.3.1.3 descriptor-table registers
    ("GUEST_DESCRIPTOR_TABLES", GUEST, "26.3.1.3",
     "GDTR and IDTR bases are canonical and bits 31:16 of their limits are 0"),
    # 26.3.1.4 RIP and RFLAGS
    ("GUEST_RIP", GUEST, "26.3.1.4",
     "RIP bits 63:32 are 0 unless the guest is in 64-bit mode (IA-32e mode and CS.L=1), where RIP is canonical"),
    ("GUEST_RFLAGS", GUEST, "26.3.1.4",
     "RFLAGS reserved bits (63:22, 15, 5, 3) are 0 and bit 1 is 1; VM is 0 in an IA-32e mode guest "
     "or with CR0.PE=0; IF is 1 when injecting an external interrupt"),
    # 26.3.1.5 non-register state
    ("GUEST_ACTIVITY_STATE", GUEST, "26.3.1.5",
     "the activity state is active or HLT (the states the model supports), not HLT with SS.DPL != 0, "
     "and active while blocking by STI or MOV SS is set; in the HLT state only an external interrupt, an NMI, "
     "#DB, #MC or a pending MTF exit may be injected"),
    ("GUEST_INTERRUPTIBILITY_STATE", GUEST, "26.3.1.5",
     "interruptibility-state reserved bits 31:5 are 0; blocking by STI and by MOV SS are not both set; "
     "blocking by STI is 0 when RFLAGS.IF is 0; no blocking by SMI outside SMM; no STI/MOV SS blocking "
     "when injecting an external interrupt, no MOV SS blocking when injecting an NMI, and no "
     "(virtual-)NMI blocking when injecting an NMI with 'virtual NMIs'"),
    ("GUEST_PENDING_DEBUG_EXCEPTIONS", GUEST, "26.3.1.5",
     "pending debug exceptions: reserved bits are 0"),
    ("GUEST_VMCS_LINK_POINTER", GUEST, "26.3.1.5",
     "the VMCS link pointer is FFFFFFFF_FFFFFFFFH (the model has no VMCS shadowing)"),
    # 26.3.1.6 PDPTEs
    ("GUEST_PDPTES", GUEST, "26.3.1.6",
     "with PAE paging and 'enable EPT', the guest PDPTEs have no reserved bits set"),
]


# ---------------------------------------------------------------------------
# What each check reads (docs/architecture.rst, "Entry checks at VMRESUME").
#
# A VMRESUME re-runs only the checks whose inputs changed since the last
# successful VM entry; these are those inputs, read off the code of
# vtx/core/vmx/entry.pxi check by check, including the values a check uses
# only to decide whether it applies ("unrestricted guest", "IA-32e mode
# guest", RFLAGS.VM).  An input is a VMCS field name, or (name, bits) when the
# check looks at only those bits of the field.  The generator turns this into
# vmcs_check_mask(): for a change of a field, the checks it can affect.
#
# Listing too much costs a re-check; listing too little would let an invalid
# value through, so when in doubt a field is listed whole.
# ---------------------------------------------------------------------------

RFLAGS_IF = 1 << 9
RFLAGS_VM = 1 << 17
#: RFLAGS bits that must be 0 (63:22, 15, 5, 3), SDM 26.3.1.4; bit 1 must be 1.
RFLAGS_RESERVED = 0xFFFF_FFFF_FFC0_8028
CR0_PE = 1 << 0
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
CR4_PCIDE = 1 << 17

_UG = ("PRIMARY_PROC_BASED_CONTROLS", "SECONDARY_PROC_BASED_CONTROLS")     # "unrestricted guest"
_EPT = _UG                                                                 # "enable EPT"
_ENTRY = ("VM_ENTRY_CONTROLS",)           # "IA-32e mode guest", "load debug controls/IA32_PAT/IA32_EFER"
_V86 = (("GUEST_RFLAGS", RFLAGS_VM),)     # the segment checks differ in virtual-8086 mode


def _seg(segs, *kinds):
    return tuple(f"GUEST_{s}_{k}" for s in segs.split() for k in kinds)


_ALL_SEG_PARTS = ("SELECTOR", "BASE", "LIMIT", "ACCESS_RIGHTS")

INPUTS = {
    # 26.2.1.1
    "PIN_BASED_CONTROLS": ("PIN_BASED_CONTROLS",),
    "PRIMARY_PROC_BASED_CONTROLS": ("PRIMARY_PROC_BASED_CONTROLS",),
    "SECONDARY_PROC_BASED_CONTROLS": ("PRIMARY_PROC_BASED_CONTROLS", "SECONDARY_PROC_BASED_CONTROLS"),
    "CR3_TARGET_COUNT": ("CR3_TARGET_COUNT",),
    "IO_BITMAP_ADDRESSES": ("PRIMARY_PROC_BASED_CONTROLS", "IO_BITMAP_A", "IO_BITMAP_B"),
    "MSR_BITMAP_ADDRESS": ("PRIMARY_PROC_BASED_CONTROLS", "MSR_BITMAP"),
    "VIRTUAL_NMIS": ("PIN_BASED_CONTROLS", "PRIMARY_PROC_BASED_CONTROLS"),
    "EPT_POINTER": _EPT + ("EPT_POINTER",),
    "VPID_NONZERO": _EPT + ("VIRTUAL_PROCESSOR_ID",),
    "UNRESTRICTED_GUEST_NEEDS_EPT": _UG,
    "VM_FUNCTION_CONTROLS": _UG + ("VM_FUNCTION_CONTROLS",),
    "EPTP_SWITCHING": _UG + ("VM_FUNCTION_CONTROLS", "EPTP_LIST_ADDRESS"),
    # 26.2.1.2
    "VM_EXIT_CONTROLS": ("VM_EXIT_CONTROLS", "PIN_BASED_CONTROLS"),
    "VM_EXIT_MSR_AREAS": ("VM_EXIT_MSR_STORE_COUNT", "VM_EXIT_MSR_LOAD_COUNT"),
    # 26.2.1.3
    "VM_ENTRY_CONTROLS": ("VM_ENTRY_CONTROLS",),
    "VM_ENTRY_INTERRUPTION_INFO": ("VM_ENTRY_INTERRUPTION_INFO", "VM_ENTRY_EXCEPTION_ERROR_CODE",
                                   "VM_ENTRY_INSTRUCTION_LENGTH", ("GUEST_CR0", CR0_PE)) + _UG,
    "VM_ENTRY_MSR_LOAD_AREA": ("VM_ENTRY_MSR_LOAD_COUNT",),
    # 26.2.2 - 26.2.4
    "HOST_CR0": ("HOST_CR0",),
    "HOST_CR4": ("HOST_CR4",),
    "HOST_CR3": ("HOST_CR3",),
    "HOST_CANONICAL_ADDRESSES": ("HOST_IA32_SYSENTER_ESP", "HOST_IA32_SYSENTER_EIP", "HOST_FS_BASE",
                                 "HOST_GS_BASE", "HOST_TR_BASE", "HOST_GDTR_BASE", "HOST_IDTR_BASE"),
    "HOST_IA32_PAT": ("VM_EXIT_CONTROLS", "HOST_IA32_PAT"),
    "HOST_IA32_EFER": ("VM_EXIT_CONTROLS", "HOST_IA32_EFER"),
    "HOST_SELECTORS": tuple(f"HOST_{s}_SELECTOR" for s in "ES CS SS DS FS GS TR".split()),
    "HOST_ADDRESS_SPACE_SIZE": ("VM_EXIT_CONTROLS", "HOST_CR4", "HOST_RIP") + _ENTRY,
    # 26.3.1.1
    "GUEST_CR0": ("GUEST_CR0",) + _UG,
    "GUEST_CR4": ("GUEST_CR4",),
    "GUEST_CR3": ("GUEST_CR3",),
    "GUEST_IA32E_MODE_PAGING": _ENTRY + (("GUEST_CR0", CR0_PG), ("GUEST_CR4", CR4_PAE | CR4_PCIDE)),
    "GUEST_DR7": _ENTRY + ("GUEST_DR7",),
    "GUEST_SYSENTER_CANONICAL": ("GUEST_IA32_SYSENTER_ESP", "GUEST_IA32_SYSENTER_EIP"),
    "GUEST_IA32_PAT": _ENTRY + ("GUEST_IA32_PAT",),
    "GUEST_IA32_EFER": _ENTRY + ("GUEST_IA32_EFER", ("GUEST_CR0", CR0_PG)),
    # 26.3.1.2
    "GUEST_TR_LDTR_TI": ("GUEST_TR_SELECTOR", "GUEST_LDTR_SELECTOR", "GUEST_LDTR_ACCESS_RIGHTS"),
    "GUEST_SS_RPL": _V86 + _UG + ("GUEST_SS_SELECTOR", "GUEST_CS_SELECTOR"),
    "GUEST_V86_SEGMENTS": _V86 + _seg("ES CS SS DS FS GS", *_ALL_SEG_PARTS),
    "GUEST_SEGMENT_BASES": _seg("TR FS GS CS", "BASE") + _seg("LDTR ES SS DS", "BASE", "ACCESS_RIGHTS"),
    "GUEST_CS_ACCESS_RIGHTS": _V86 + _UG + _ENTRY + _seg("CS", "ACCESS_RIGHTS", "LIMIT")
    + _seg("SS", "ACCESS_RIGHTS"),
    "GUEST_SS_ACCESS_RIGHTS": _V86 + _UG + _seg("SS", "ACCESS_RIGHTS", "LIMIT", "SELECTOR")
    + _seg("CS", "ACCESS_RIGHTS") + (("GUEST_CR0", CR0_PE),),
    "GUEST_DATA_SEGMENT_ACCESS_RIGHTS": _V86 + _UG + _seg("ES DS FS GS", "ACCESS_RIGHTS", "LIMIT", "SELECTOR"),
    "GUEST_TR_ACCESS_RIGHTS": _ENTRY + _seg("TR", "ACCESS_RIGHTS", "LIMIT"),
    "GUEST_LDTR_ACCESS_RIGHTS": _seg("LDTR", "ACCESS_RIGHTS", "LIMIT"),
    # 26.3.1.3
    "GUEST_DESCRIPTOR_TABLES": ("GUEST_GDTR_BASE", "GUEST_IDTR_BASE", "GUEST_GDTR_LIMIT", "GUEST_IDTR_LIMIT"),
    # 26.3.1.4
    "GUEST_RIP": _ENTRY + ("GUEST_RIP",) + _seg("CS", "ACCESS_RIGHTS"),
    "GUEST_RFLAGS": _ENTRY + (("GUEST_RFLAGS", RFLAGS_RESERVED | (1 << 1) | RFLAGS_VM | RFLAGS_IF),
                              ("GUEST_CR0", CR0_PE), "VM_ENTRY_INTERRUPTION_INFO"),
    # 26.3.1.5
    "GUEST_ACTIVITY_STATE": ("GUEST_ACTIVITY_STATE", "GUEST_INTERRUPTIBILITY_STATE", "VM_ENTRY_INTERRUPTION_INFO")
    + _seg("SS", "ACCESS_RIGHTS"),
    "GUEST_INTERRUPTIBILITY_STATE": ("GUEST_INTERRUPTIBILITY_STATE", ("GUEST_RFLAGS", RFLAGS_IF),
                                     "VM_ENTRY_INTERRUPTION_INFO", "PIN_BASED_CONTROLS"),
    "GUEST_PENDING_DEBUG_EXCEPTIONS": ("GUEST_PENDING_DEBUG_EXCEPTIONS",),
    "GUEST_VMCS_LINK_POINTER": ("VMCS_LINK_POINTER",),
    # 26.3.1.6: also the guest's memory (the PDPTEs that CR3 points to without
    # EPT), which the guest and vm.write change without any VMCS write, so
    # the check is in ALWAYS; its inputs are listed for the documentation.
    "GUEST_PDPTES": _EPT + _ENTRY + (("GUEST_CR0", CR0_PG), ("GUEST_CR4", CR4_PAE), "GUEST_CR3")
    + tuple(f"GUEST_PDPTE{i}" for i in range(4)),
}

#: Checks that read something besides VMCS fields: re-run at every VM entry.
ALWAYS = ("GUEST_PDPTES",)
