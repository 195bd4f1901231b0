"""The model's VMX capabilities, as the VMX capability MSRs report them
(Intel SDM Vol. 3D, Appendix A).

Everything here is computed from a few choices: the revision id, which optional
controls the model implements, and what the model supports of EPT, VPID, CR4
and the activity states.  The control MSRs put the allowed 0-settings in bits
31:0 (a 1 there means the control must be 1) and the allowed 1-settings in bits
63:32 (a 1 there means the control may be 1).

Because ``BASIC`` sets bit 55, VM entry checks the controls against the TRUE
MSRs.  The TRUE MSRs report the same as the plain ones except for the two
default1 controls CR3-load exiting and CR3-store exiting, which the TRUE
primary processor-based MSR lets a VMM clear (as real processors do).  The
plain MSR must still report them as allowed-0 = 1 (they are default1), so
they are also allowed-1: the core implements them.
"""

from . import controls as _controls
from .msrs import MSRS as _MSRS
from .vmcs_fields import FIELDS as _FIELDS, VMCS_REGION_SIZE, field_index as _field_index

__all__ = [
    "VMCS_REVISION_ID",
    "MAXPHYADDR",
    "SUPPORTED_CONTROLS",
    "TRUE_CLEARABLE",
    "allowed0",
    "allowed1",
    "BASIC",
    "PINBASED_CTLS",
    "PROCBASED_CTLS",
    "PROCBASED_CTLS2",
    "EXIT_CTLS",
    "ENTRY_CTLS",
    "TRUE_PINBASED_CTLS",
    "TRUE_PROCBASED_CTLS",
    "TRUE_EXIT_CTLS",
    "TRUE_ENTRY_CTLS",
    "MISC",
    "CR0_FIXED0",
    "CR0_FIXED1",
    "CR4_FIXED0",
    "CR4_FIXED1",
    "CR4_FEATURES",
    "cr4_fixed1",
    "EPT_VPID_CAP",
    "VMCS_ENUM",
    "VMFUNC",
    "VALUES",
    "MSR_VALUES",
]

#: VMCS revision identifier the model reports (bits 30:0 of IA32_VMX_BASIC).
VMCS_REVISION_ID = 0x00000001
#: Physical-address width of the model (CPUID.80000008H:EAX[7:0]).
MAXPHYADDR = 39
#: Memory type for the VMCS and the structures it points to: 6 = write-back.
VMCS_MEMORY_TYPE_WB = 6

#: The optional controls the model implements, by group prefix (besides the default1 bits).
SUPPORTED_CONTROLS = {
    "PIN": ("EXTERNAL_INTERRUPT_EXITING", "NMI_EXITING", "VIRTUAL_NMIS", "ACTIVATE_VMX_PREEMPTION_TIMER",
            "PROCESS_POSTED_INTERRUPTS"),
    "PROC": (
        "INTERRUPT_WINDOW_EXITING",
        "NMI_WINDOW_EXITING",
        "USE_TSC_OFFSETTING",
        "HLT_EXITING",
        "INVLPG_EXITING",
        "MWAIT_EXITING",
        "RDPMC_EXITING",
        "RDTSC_EXITING",
        "CR8_LOAD_EXITING",
        "CR8_STORE_EXITING",
        "USE_TPR_SHADOW",
        "MOV_DR_EXITING",
        "UNCONDITIONAL_IO_EXITING",
        "USE_IO_BITMAPS",
        "USE_MSR_BITMAPS",
        "MONITOR_EXITING",
        "PAUSE_EXITING",
        "MONITOR_TRAP_FLAG",
        "ACTIVATE_SECONDARY_CONTROLS",
    ),
    "PROC2": (
        "VIRTUALIZE_APIC_ACCESSES",
        "ENABLE_EPT",
        "DESCRIPTOR_TABLE_EXITING",
        "ENABLE_RDTSCP",
        "VIRTUALIZE_X2APIC_MODE",
        "ENABLE_VPID",
        "WBINVD_EXITING",
        "UNRESTRICTED_GUEST",
        "APIC_REGISTER_VIRTUALIZATION",
        "VIRTUAL_INTERRUPT_DELIVERY",
        "PAUSE_LOOP_EXITING",
        "RDRAND_EXITING",
        "ENABLE_INVPCID",
        "ENABLE_VM_FUNCTIONS",
        "RDSEED_EXITING",
        "ENABLE_PML",
        "ENABLE_XSAVES_XRSTORS",
        "ENABLE_USER_WAIT_AND_PAUSE",
        "SUB_PAGE_WRITE_PERMISSIONS",
        "VMM_BUS_LOCK_DETECTION",
    ),
    "EXIT_CTL": (
        "HOST_ADDRESS_SPACE_SIZE",
        "ACKNOWLEDGE_INTERRUPT_ON_EXIT",
        "SAVE_IA32_PAT",
        "LOAD_IA32_PAT",
        "SAVE_IA32_EFER",
        "LOAD_IA32_EFER",
        "SAVE_VMX_PREEMPTION_TIMER",
    ),
    "ENTRY_CTL": ("IA32E_MODE_GUEST", "LOAD_IA32_PAT", "LOAD_IA32_EFER"),
}

#: Default1 controls that the TRUE MSRs allow to be 0, by group prefix.
TRUE_CLEARABLE = {
    "PROC": ("CR3_LOAD_EXITING", "CR3_STORE_EXITING"),
}


def _mask(group, names):
    mask = 0
    for name in names:
        mask |= group.mask(name)
    return mask


def allowed0(prefix, true=False):
    """Controls of group ``prefix`` that must be 1 (plain MSR, or TRUE MSR with ``true``)."""
    group = _controls.group_by_prefix(prefix)
    must = group.default1_mask
    if true:
        must &= ~_mask(group, TRUE_CLEARABLE.get(prefix, ()))
    return must


def allowed1(prefix):
    """Controls of group ``prefix`` that may be 1."""
    group = _controls.group_by_prefix(prefix)
    return group.default1_mask | _mask(group, SUPPORTED_CONTROLS.get(prefix, ()))


def _ctls(prefix, true=False):
    return (allowed1(prefix) << 32) | allowed0(prefix, true)


# --- IA32_VMX_BASIC (A.1) ------------------------------------------------------
BASIC = (
    VMCS_REVISION_ID  # bits 30:0 revision id (bit 31 is 0)
    | (VMCS_REGION_SIZE << 32)  # bits 44:32 bytes to allocate for a VMCS region
    # bit 48 = 0: addresses are limited only by MAXPHYADDR; bit 49 = 0: no dual-monitor treatment
    | (VMCS_MEMORY_TYPE_WB << 50)  # bits 53:50 memory type
    | (1 << 54)  # INS/OUTS VM exits report the instruction-information field
    | (1 << 55)  # the TRUE control MSRs exist
)

# --- Control MSRs (A.3-A.5) -------------------------------------------------------
PINBASED_CTLS = _ctls("PIN")
PROCBASED_CTLS = _ctls("PROC")
PROCBASED_CTLS2 = _ctls("PROC2")
EXIT_CTLS = _ctls("EXIT_CTL")
ENTRY_CTLS = _ctls("ENTRY_CTL")
TRUE_PINBASED_CTLS = _ctls("PIN", true=True)
TRUE_PROCBASED_CTLS = _ctls("PROC", true=True)
TRUE_EXIT_CTLS = _ctls("EXIT_CTL", true=True)
TRUE_ENTRY_CTLS = _ctls("ENTRY_CTL", true=True)

# --- IA32_VMX_MISC (A.6) --------------------------------------------------------
MISC_PREEMPTION_TIMER_RATE = 5  # the timer ticks when bit 5 of the TSC changes
MISC_CR3_TARGET_COUNT = 4
MISC_MAX_MSR_LIST = 0  # recommended maximum MSRs per list: 512 * (N + 1)
MISC_MSEG_REVISION = 0
MISC = (
    MISC_PREEMPTION_TIMER_RATE  # bits 4:0
    | (1 << 5)  # VM exits store EFER.LMA into the "IA-32e mode guest" entry control
    | (1 << 6)  # activity state HLT is supported (bits 8:6: HLT, shutdown, wait-for-SIPI)
    | (1 << 7)  # and shutdown (entered by VM entry; left by an NMI or INIT, core/vmx/events.pxi)
    | (1 << 8)  # and wait-for-SIPI (vcpu.init(), vcpu.sipi(); SDM 27.3.1.5, 27.7.2)
    | (MISC_CR3_TARGET_COUNT << 16)  # bits 24:16
    | (MISC_MAX_MSR_LIST << 25)  # bits 27:25
    | (1 << 29)  # VMWRITE may write the VM-exit information fields
    | (MISC_MSEG_REVISION << 32)  # bits 63:32
)

# --- CR0 / CR4 fixed bits (A.7, A.8) --------------------------------------------
CR0_PE, CR0_NE, CR0_PG = 1 << 0, 1 << 5, 1 << 31
CR0_FIXED0 = CR0_PE | CR0_NE | CR0_PG
CR0_FIXED1 = 0xFFFFFFFF

#: CR4 bits by name (SDM Vol. 3A, "Control Registers").
CR4_BITS = {
    "VME": 0,
    "PVI": 1,
    "TSD": 2,
    "DE": 3,
    "PSE": 4,
    "PAE": 5,
    "MCE": 6,
    "PGE": 7,
    "PCE": 8,
    "OSFXSR": 9,
    "OSXMMEXCPT": 10,
    "UMIP": 11,
    "LA57": 12,
    "VMXE": 13,
    "SMXE": 14,
    "FSGSBASE": 16,
    "PCIDE": 17,
    "OSXSAVE": 18,
    "SMEP": 20,
    "SMAP": 21,
    "PKE": 22,
    "CET": 23,
}
#: CR4 bits the model implements, each with the CPUID feature that enumerates
#: it (None: every processor of the model's generation has it).  MOV to CR4
#: and IA32_VMX_CR4_FIXED1 allow a bit only while its feature is in the CPU
#: model (SDM Vol. 3A 2.5, "CR4": "...reserved if the corresponding CPUID bit
#: is 0"; Vol. 3D A.8), so a preset without the feature makes setting the bit
#: #GP(0): see :func:`cr4_fixed1`.
CR4_FEATURES = {
    "VME": "VME",
    "PVI": "VME",
    "TSD": "TSC",
    "DE": "DE",
    "PSE": "PSE",
    "PAE": "PAE",
    "MCE": "MCE",
    "PGE": "PGE",
    "PCE": None,
    "OSFXSR": "FXSR",
    "OSXMMEXCPT": "SSE",
    "UMIP": "UMIP",
    "VMXE": "VMX",
    "FSGSBASE": "FSGSBASE",
    "PCIDE": "PCID",
    "OSXSAVE": "XSAVE",
    "SMEP": "SMEP",
    "SMAP": "SMAP",
}
CR4_SUPPORTED = tuple(CR4_FEATURES)
CR4_FIXED0 = 1 << CR4_BITS["VMXE"]


def cr4_fixed1(features):
    """The CR4 bits that may be 1 on a processor with CPUID features
    ``features`` (names of vtx/spec/cpuid.py): IA32_VMX_CR4_FIXED1, and the
    bits MOV to CR4 accepts."""
    features = set(features)
    mask = 0
    for name, feature in CR4_FEATURES.items():
        if feature is None or feature in features:
            mask |= 1 << CR4_BITS[name]
    return mask


#: IA32_VMX_CR4_FIXED1 of a processor with every feature the model knows (the
#: value a particular CPU model reports is ``cr4_fixed1`` of its features).
CR4_FIXED1 = cr4_fixed1(feature for feature in CR4_FEATURES.values() if feature)

# --- IA32_VMX_EPT_VPID_CAP (A.10) -----------------------------------------------
#: Bits of IA32_VMX_EPT_VPID_CAP by name.
EPT_VPID_CAP_BITS = {
    "EXECUTE_ONLY": 0,
    "PAGE_WALK_LENGTH_4": 6,
    "PAGE_WALK_LENGTH_5": 7,
    "MEMORY_TYPE_UC": 8,
    "MEMORY_TYPE_WB": 14,
    "PDE_2MB_PAGES": 16,
    "PDPTE_1GB_PAGES": 17,
    "INVEPT": 20,
    "ACCESSED_DIRTY_FLAGS": 21,
    "ADVANCED_EXIT_INFORMATION": 22,
    "SUPERVISOR_SHADOW_STACK": 23,
    "INVEPT_SINGLE_CONTEXT": 25,
    "INVEPT_ALL_CONTEXT": 26,
    "INVVPID": 32,
    "INVVPID_INDIVIDUAL_ADDRESS": 40,
    "INVVPID_SINGLE_CONTEXT": 41,
    "INVVPID_ALL_CONTEXT": 42,
    "INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS": 43,
}
#: EPT and VPID features the model implements.
EPT_VPID_SUPPORTED = (
    "PAGE_WALK_LENGTH_4",
    "MEMORY_TYPE_WB",
    "PDE_2MB_PAGES",
    "PDPTE_1GB_PAGES",
    "INVEPT",
    "ACCESSED_DIRTY_FLAGS",
    "INVEPT_SINGLE_CONTEXT",
    "INVEPT_ALL_CONTEXT",
    "INVVPID",
    "INVVPID_INDIVIDUAL_ADDRESS",
    "INVVPID_SINGLE_CONTEXT",
    "INVVPID_ALL_CONTEXT",
    "INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS",
)
EPT_VPID_CAP = 0
for _name in EPT_VPID_SUPPORTED:
    EPT_VPID_CAP |= 1 << EPT_VPID_CAP_BITS[_name]

# --- IA32_VMX_VMFUNC (A.11) -------------------------------------------------------
#: The VM functions the model offers: bit 0, EPTP switching.
VMFUNC = 1

# --- IA32_DEBUGCTL ----------------------------------------------------------------
#: IA32_DEBUGCTL bits the model implements: LBR (0) and BTF (1), the two the
#: first VMX processors supported (SDM Vol. 3C 27.3.1.1); the others are
#: reserved here, so WRMSR of them is #GP(0) and a guest IA32_DEBUGCTL that
#: sets them fails VM entry.
DEBUGCTL_SUPPORTED = (1 << 0) | (1 << 1)

# --- IA32_VMX_VMCS_ENUM (A.9) ----------------------------------------------------
VMCS_ENUM = max(_field_index(enc) for _n, enc, _d in _FIELDS) << 1

del _name

#: Every capability value, in the order the generator emits them: ``(name, value, description)``.
VALUES = (
    ("VMCS_REVISION_ID", VMCS_REVISION_ID, "VMCS revision identifier"),
    ("BASIC", BASIC, "IA32_VMX_BASIC"),
    ("PINBASED_CTLS", PINBASED_CTLS, "IA32_VMX_PINBASED_CTLS"),
    ("PROCBASED_CTLS", PROCBASED_CTLS, "IA32_VMX_PROCBASED_CTLS"),
    ("PROCBASED_CTLS2", PROCBASED_CTLS2, "IA32_VMX_PROCBASED_CTLS2"),
    ("EXIT_CTLS", EXIT_CTLS, "IA32_VMX_EXIT_CTLS"),
    ("ENTRY_CTLS", ENTRY_CTLS, "IA32_VMX_ENTRY_CTLS"),
    ("TRUE_PINBASED_CTLS", TRUE_PINBASED_CTLS, "IA32_VMX_TRUE_PINBASED_CTLS"),
    ("TRUE_PROCBASED_CTLS", TRUE_PROCBASED_CTLS, "IA32_VMX_TRUE_PROCBASED_CTLS"),
    ("TRUE_EXIT_CTLS", TRUE_EXIT_CTLS, "IA32_VMX_TRUE_EXIT_CTLS"),
    ("TRUE_ENTRY_CTLS", TRUE_ENTRY_CTLS, "IA32_VMX_TRUE_ENTRY_CTLS"),
    ("MISC", MISC, "IA32_VMX_MISC"),
    ("CR0_FIXED0", CR0_FIXED0, "IA32_VMX_CR0_FIXED0"),
    ("CR0_FIXED1", CR0_FIXED1, "IA32_VMX_CR0_FIXED1"),
    ("CR4_FIXED0", CR4_FIXED0, "IA32_VMX_CR4_FIXED0"),
    ("CR4_FIXED1", CR4_FIXED1, "IA32_VMX_CR4_FIXED1"),
    ("EPT_VPID_CAP", EPT_VPID_CAP, "IA32_VMX_EPT_VPID_CAP"),
    ("VMCS_ENUM", VMCS_ENUM, "IA32_VMX_VMCS_ENUM"),
    ("VMFUNC", VMFUNC, "IA32_VMX_VMFUNC"),
    ("MAXPHYADDR", MAXPHYADDR, "Physical-address width in bits"),
    ("DEBUGCTL_SUPPORTED", DEBUGCTL_SUPPORTED, "IA32_DEBUGCTL bits the model implements (LBR, BTF)"),
)

_MSR_NUMBERS = {name: number for name, number, _ in _MSRS}

#: What RDMSR returns for each VMX capability MSR the model has, by MSR number.
#: The others (IA32_VMX_PROCBASED_CTLS3, IA32_VMX_EXIT_CTLS2) do
#: not exist on this model because the controls that enable them cannot be 1.
MSR_VALUES = {
    _MSR_NUMBERS[msr]: value
    for _name, value, msr in VALUES
    if msr.startswith("IA32_VMX_")
}
