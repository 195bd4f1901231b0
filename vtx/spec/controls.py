"""VMX control bits (Intel SDM Vol. 3C, "VM-Execution Control Fields", "VM-Exit
Control Fields", "VM-Entry Control Fields"; default settings from Appendix A.3-A.5).

Each group lists ``(name, bit, description)`` rows for one control field.  The
names carry no prefix here; the generated C header spells them
``<prefix>_<name>`` (``PROC_HLT_EXITING``) and the Python API as members of an
IntFlag (``ProcBased.HLT_EXITING``).

``default1`` lists the bits of the "default1" class: reserved bits that older
processors require to be 1.  A VMM that reads only the plain capability MSRs
must set them; the TRUE capability MSRs may allow some of them to be 0.
"""

__all__ = [
    "ControlGroup",
    "PIN_BASED",
    "PRIMARY_PROC_BASED",
    "SECONDARY_PROC_BASED",
    "TERTIARY_PROC_BASED",
    "VM_EXIT",
    "SECONDARY_VM_EXIT",
    "VM_ENTRY",
    "GROUPS",
    "group_by_prefix",
]


class ControlGroup:
    """One VMX control field and its bits."""

    __slots__ = ("prefix", "pyname", "title", "field", "bits", "width", "default1", "msr", "true_msr")

    def __init__(self, prefix, pyname, title, field, width, bits, default1=(), msr=None, true_msr=None):
        self.prefix = prefix  # C prefix, e.g. "PROC" -> PROC_HLT_EXITING
        self.pyname = pyname  # name of the Python IntFlag
        self.title = title  # SDM name of the field
        self.field = field  # VMCS field name (vmcs_fields.FIELDS)
        self.width = width  # 32 or 64
        self.bits = tuple(bits)  # (name, bit, description)
        self.default1 = tuple(default1)  # bit numbers of the default1 class
        self.msr = msr  # capability MSR (msrs.MSRS name)
        self.true_msr = true_msr  # TRUE capability MSR, if any

    def mask(self, name):
        """Mask of the control called ``name``."""
        for n, bit, _ in self.bits:
            if n == name:
                return 1 << bit
        raise KeyError(f"{self.prefix}: no control named {name!r}")

    @property
    def default1_mask(self):
        mask = 0
        for bit in self.default1:
            mask |= 1 << bit
        return mask

    def __repr__(self):
        return f"ControlGroup({self.prefix!r}, {len(self.bits)} bits)"


PIN_BASED = ControlGroup(
    "PIN", "PinBased", "Pin-based VM-execution controls", "PIN_BASED_CONTROLS", 32,
    (
        ("EXTERNAL_INTERRUPT_EXITING", 0, "External interrupts cause VM exits instead of guest delivery"),
        ("NMI_EXITING", 3, "NMIs cause VM exits instead of guest delivery"),
        ("VIRTUAL_NMIS", 5, "NMIs are virtualized: the VMM tracks virtual-NMI blocking"),
        ("ACTIVATE_VMX_PREEMPTION_TIMER", 6, "The VMX-preemption timer counts down in non-root operation"),
        ("PROCESS_POSTED_INTERRUPTS", 7, "Interrupts with the notification vector are posted to the guest"),
    ),
    default1=(1, 2, 4),
    msr="IA32_VMX_PINBASED_CTLS", true_msr="IA32_VMX_TRUE_PINBASED_CTLS",
)

PRIMARY_PROC_BASED = ControlGroup(
    "PROC", "ProcBased", "Primary processor-based VM-execution controls", "PRIMARY_PROC_BASED_CONTROLS", 32,
    (
        ("INTERRUPT_WINDOW_EXITING", 2, "Exit as soon as the guest can take an external interrupt"),
        ("USE_TSC_OFFSETTING", 3, "RDTSC, RDTSCP and IA32_TIME_STAMP_COUNTER reads add the TSC offset"),
        ("HLT_EXITING", 7, "HLT causes a VM exit"),
        ("INVLPG_EXITING", 9, "INVLPG (and INVPCID) cause VM exits"),
        ("MWAIT_EXITING", 10, "MWAIT causes a VM exit"),
        ("RDPMC_EXITING", 11, "RDPMC causes a VM exit"),
        ("RDTSC_EXITING", 12, "RDTSC and RDTSCP cause VM exits"),
        ("CR3_LOAD_EXITING", 15, "MOV to CR3 exits unless the value is one of the CR3-target values"),
        ("CR3_STORE_EXITING", 16, "MOV from CR3 causes a VM exit"),
        ("ACTIVATE_TERTIARY_CONTROLS", 17, "The tertiary processor-based controls are used"),
        ("CR8_LOAD_EXITING", 19, "MOV to CR8 causes a VM exit"),
        ("CR8_STORE_EXITING", 20, "MOV from CR8 causes a VM exit"),
        ("USE_TPR_SHADOW", 21, "TPR virtualization through the virtual-APIC page"),
        ("NMI_WINDOW_EXITING", 22, "Exit as soon as there is no virtual-NMI blocking"),
        ("MOV_DR_EXITING", 23, "MOV to or from a debug register causes a VM exit"),
        ("UNCONDITIONAL_IO_EXITING", 24, "Every I/O instruction causes a VM exit (ignored with I/O bitmaps)"),
        ("USE_IO_BITMAPS", 25, "I/O bitmaps A and B select which ports exit"),
        ("MONITOR_TRAP_FLAG", 27, "Exit after each guest instruction (single-stepping)"),
        ("USE_MSR_BITMAPS", 28, "MSR bitmaps select which RDMSR/WRMSR exit"),
        ("MONITOR_EXITING", 29, "MONITOR causes a VM exit"),
        ("PAUSE_EXITING", 30, "PAUSE causes a VM exit"),
        ("ACTIVATE_SECONDARY_CONTROLS", 31, "The secondary processor-based controls are used"),
    ),
    default1=(1, 4, 5, 6, 8, 13, 14, 15, 16, 26),
    msr="IA32_VMX_PROCBASED_CTLS", true_msr="IA32_VMX_TRUE_PROCBASED_CTLS",
)

SECONDARY_PROC_BASED = ControlGroup(
    "PROC2", "ProcBased2", "Secondary processor-based VM-execution controls", "SECONDARY_PROC_BASED_CONTROLS", 32,
    (
        ("VIRTUALIZE_APIC_ACCESSES", 0, "Accesses to the APIC-access page are virtualized or exit"),
        ("ENABLE_EPT", 1, "Extended page tables translate guest-physical addresses"),
        ("DESCRIPTOR_TABLE_EXITING", 2, "LGDT, LIDT, LLDT, LTR, SGDT, SIDT, SLDT and STR cause VM exits"),
        ("ENABLE_RDTSCP", 3, "RDTSCP is allowed (otherwise it raises #UD)"),
        ("VIRTUALIZE_X2APIC_MODE", 4, "x2APIC MSR accesses are virtualized"),
        ("ENABLE_VPID", 5, "Cached translations are tagged with the VPID"),
        ("WBINVD_EXITING", 6, "WBINVD and WBNOINVD cause VM exits"),
        ("UNRESTRICTED_GUEST", 7, "The guest may run with paging off or in real mode"),
        ("APIC_REGISTER_VIRTUALIZATION", 8, "Reads of most APIC registers are served from the virtual-APIC page"),
        ("VIRTUAL_INTERRUPT_DELIVERY", 9, "Pending virtual interrupts are evaluated and delivered"),
        ("PAUSE_LOOP_EXITING", 10, "A spinning PAUSE loop longer than PLE_Window causes a VM exit"),
        ("RDRAND_EXITING", 11, "RDRAND causes a VM exit"),
        ("ENABLE_INVPCID", 12, "INVPCID is allowed (otherwise it raises #UD)"),
        ("ENABLE_VM_FUNCTIONS", 13, "VMFUNC is allowed"),
        ("VMCS_SHADOWING", 14, "VMREAD/VMWRITE in non-root operation may use a shadow VMCS"),
        ("ENABLE_ENCLS_EXITING", 15, "ENCLS exits for leaves set in the ENCLS-exiting bitmap"),
        ("RDSEED_EXITING", 16, "RDSEED causes a VM exit"),
        ("ENABLE_PML", 17, "Writes that set EPT dirty flags are logged in the page-modification log"),
        ("EPT_VIOLATION_VE", 18, "Some EPT violations raise #VE in the guest instead of exiting"),
        ("CONCEAL_VMX_FROM_PT", 19, "Intel PT hides non-root operation"),
        ("ENABLE_XSAVES_XRSTORS", 20, "XSAVES and XRSTORS are allowed"),
        ("PASID_TRANSLATION", 21, "ENQCMD and ENQCMDS translate the guest PASID"),
        ("MODE_BASED_EXECUTE_CONTROL", 22, "EPT execute permission is split into user and supervisor"),
        ("SUB_PAGE_WRITE_PERMISSIONS", 23, "EPT write permission at 128-byte granularity"),
        ("PT_USES_GUEST_PHYSICAL_ADDRESSES", 24, "Intel PT output addresses are guest-physical"),
        ("USE_TSC_SCALING", 25, "Guest TSC reads are scaled by the TSC multiplier"),
        ("ENABLE_USER_WAIT_AND_PAUSE", 26, "UMWAIT, UMONITOR and TPAUSE are allowed"),
        ("ENABLE_PCONFIG", 27, "PCONFIG is allowed"),
        ("ENABLE_ENCLV_EXITING", 28, "ENCLV exits for leaves set in the ENCLV-exiting bitmap"),
        ("VMM_BUS_LOCK_DETECTION", 30, "A bus lock caused by the guest causes a VM exit"),
        ("INSTRUCTION_TIMEOUT", 31, "A VM exit when no instruction completes within the timeout window"),
    ),
    msr="IA32_VMX_PROCBASED_CTLS2",
)

TERTIARY_PROC_BASED = ControlGroup(
    "PROC3", "ProcBased3", "Tertiary processor-based VM-execution controls", "TERTIARY_PROC_BASED_CONTROLS", 64,
    (
        ("LOADIWKEY_EXITING", 0, "LOADIWKEY causes a VM exit"),
        ("ENABLE_HLAT", 1, "Hypervisor-managed linear-address translation"),
        ("EPT_PAGING_WRITE_CONTROL", 2, "EPT paging-write permission for HLAT"),
        ("GUEST_PAGING_VERIFICATION", 3, "Guest-paging verification for HLAT"),
        ("IPI_VIRTUALIZATION", 4, "Interprocessor interrupts are virtualized"),
        ("ENABLE_MSR_LIST_INSTRUCTIONS", 6, "RDMSRLIST and WRMSRLIST are allowed"),
        ("VIRTUALIZE_IA32_SPEC_CTRL", 7, "Guest IA32_SPEC_CTRL accesses go through the mask and shadow"),
    ),
    msr="IA32_VMX_PROCBASED_CTLS3",
)

VM_EXIT = ControlGroup(
    "EXIT_CTL", "ExitControls", "Primary VM-exit controls", "VM_EXIT_CONTROLS", 32,
    (
        ("SAVE_DEBUG_CONTROLS", 2, "DR7 and IA32_DEBUGCTL are saved into the guest-state area"),
        ("HOST_ADDRESS_SPACE_SIZE", 9, "The host runs in 64-bit mode after the VM exit"),
        ("LOAD_IA32_PERF_GLOBAL_CTRL", 12, "IA32_PERF_GLOBAL_CTRL is loaded from the host-state area"),
        ("ACKNOWLEDGE_INTERRUPT_ON_EXIT", 15, "An exiting external interrupt is acknowledged and its vector saved"),
        ("SAVE_IA32_PAT", 18, "IA32_PAT is saved into the guest-state area"),
        ("LOAD_IA32_PAT", 19, "IA32_PAT is loaded from the host-state area"),
        ("SAVE_IA32_EFER", 20, "IA32_EFER is saved into the guest-state area"),
        ("LOAD_IA32_EFER", 21, "IA32_EFER is loaded from the host-state area"),
        ("SAVE_VMX_PREEMPTION_TIMER", 22, "The VMX-preemption timer value is saved"),
        ("CLEAR_IA32_BNDCFGS", 23, "IA32_BNDCFGS is cleared"),
        ("CONCEAL_VMX_FROM_PT", 24, "Intel PT does not report the VM exit"),
        ("CLEAR_IA32_RTIT_CTL", 25, "IA32_RTIT_CTL is cleared"),
        ("CLEAR_IA32_LBR_CTL", 26, "IA32_LBR_CTL is cleared"),
        ("CLEAR_UINV", 27, "UINV is cleared"),
        ("LOAD_CET_STATE", 28, "CET state (IA32_S_CET, SSP, interrupt SSP table) is loaded from the host-state area"),
        ("LOAD_PKRS", 29, "IA32_PKRS is loaded from the host-state area"),
        ("SAVE_IA32_PERF_GLOBAL_CTRL", 30, "IA32_PERF_GLOBAL_CTRL is saved into the guest-state area"),
        ("ACTIVATE_SECONDARY_CONTROLS", 31, "The secondary VM-exit controls are used"),
    ),
    default1=(0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 16, 17),
    msr="IA32_VMX_EXIT_CTLS", true_msr="IA32_VMX_TRUE_EXIT_CTLS",
)

SECONDARY_VM_EXIT = ControlGroup(
    "EXIT2_CTL", "ExitControls2", "Secondary VM-exit controls", "SECONDARY_VM_EXIT_CONTROLS", 64,
    (
        ("SAVE_IA32_FRED", 0, "The guest FRED MSRs are saved into the guest-state area"),
        ("LOAD_IA32_FRED", 1, "The host FRED MSRs are loaded from the host-state area"),
        ("PREMATURELY_BUSY_SHADOW_STACK", 2, "Controls the reporting of a prematurely busy shadow stack"),
    ),
    msr="IA32_VMX_EXIT_CTLS2",
)

VM_ENTRY = ControlGroup(
    "ENTRY_CTL", "EntryControls", "VM-entry controls", "VM_ENTRY_CONTROLS", 32,
    (
        ("LOAD_DEBUG_CONTROLS", 2, "DR7 and IA32_DEBUGCTL are loaded from the guest-state area"),
        ("IA32E_MODE_GUEST", 9, "The guest runs in IA-32e mode after VM entry"),
        ("ENTRY_TO_SMM", 10, "The VM entry goes to SMM (dual-monitor treatment)"),
        ("DEACTIVATE_DUAL_MONITOR", 11, "The dual-monitor treatment of SMIs and SMM is turned off"),
        ("LOAD_IA32_PERF_GLOBAL_CTRL", 13, "IA32_PERF_GLOBAL_CTRL is loaded from the guest-state area"),
        ("LOAD_IA32_PAT", 14, "IA32_PAT is loaded from the guest-state area"),
        ("LOAD_IA32_EFER", 15, "IA32_EFER is loaded from the guest-state area"),
        ("LOAD_IA32_BNDCFGS", 16, "IA32_BNDCFGS is loaded from the guest-state area"),
        ("CONCEAL_VMX_FROM_PT", 17, "Intel PT does not report the VM entry"),
        ("LOAD_IA32_RTIT_CTL", 18, "IA32_RTIT_CTL is loaded from the guest-state area"),
        ("LOAD_UINV", 19, "UINV is loaded from the guest-state area"),
        ("LOAD_CET_STATE", 20, "CET state is loaded from the guest-state area"),
        ("LOAD_IA32_LBR_CTL", 21, "IA32_LBR_CTL is loaded from the guest-state area"),
        ("LOAD_PKRS", 22, "IA32_PKRS is loaded from the guest-state area"),
        ("LOAD_IA32_FRED", 23, "The guest FRED MSRs are loaded from the guest-state area"),
    ),
    default1=(0, 1, 2, 3, 4, 5, 6, 7, 8, 12),
    msr="IA32_VMX_ENTRY_CTLS", true_msr="IA32_VMX_TRUE_ENTRY_CTLS",
)

#: Every group, in the order the generator emits them.
GROUPS = (
    PIN_BASED,
    PRIMARY_PROC_BASED,
    SECONDARY_PROC_BASED,
    TERTIARY_PROC_BASED,
    VM_EXIT,
    SECONDARY_VM_EXIT,
    VM_ENTRY,
)


def group_by_prefix(prefix):
    """The :class:`ControlGroup` whose C prefix is ``prefix`` (``"PROC"``, ``"EXIT_CTL"``, ...)."""
    for group in GROUPS:
        if group.prefix == prefix:
            return group
    raise KeyError(prefix)
