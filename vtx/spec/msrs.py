"""Model-specific register numbers the model uses (Intel SDM Vol. 4).

Each row is ``(name, number, description)``.  The C header spells them
``MSR_<name>``; the Python API as ``Msr.<name>``.
"""

__all__ = ["MSRS"]

MSRS = (
    ("IA32_TIME_STAMP_COUNTER", 0x10, "Time-stamp counter"),
    ("IA32_APIC_BASE", 0x1B, "APIC base address and enable bits"),
    ("IA32_FEATURE_CONTROL", 0x3A, "Lock bit and VMXON enables (inside and outside SMX)"),
    ("IA32_TSC_ADJUST", 0x3B, "Per-thread adjustment added to the TSC"),
    ("IA32_BIOS_SIGN_ID", 0x8B, "Microcode update signature (the revision in bits 63:32 after CPUID)"),
    ("IA32_SMM_MONITOR_CTL", 0x9B, "SMM monitor configuration (written only in SMM)"),
    ("IA32_SMBASE", 0x9E, "SMRAM base address (readable only in SMM)"),
    ("IA32_SYSENTER_CS", 0x174, "SYSENTER target code segment"),
    ("IA32_SYSENTER_ESP", 0x175, "SYSENTER target stack pointer"),
    ("IA32_SYSENTER_EIP", 0x176, "SYSENTER target instruction pointer"),
    ("IA32_MISC_ENABLE", 0x1A0, "Miscellaneous feature enables"),
    ("IA32_DEBUGCTL", 0x1D9, "Debug control (LBR, BTF, ...)"),
    ("IA32_PAT", 0x277, "Page attribute table"),
    ("IA32_PERF_GLOBAL_CTRL", 0x38F, "Global enable of the performance counters"),
    ("IA32_VMX_BASIC", 0x480, "VMX basic information: revision id, VMCS size, memory type, TRUE-controls flag"),
    ("IA32_VMX_PINBASED_CTLS", 0x481, "Allowed settings of the pin-based controls"),
    ("IA32_VMX_PROCBASED_CTLS", 0x482, "Allowed settings of the primary processor-based controls"),
    ("IA32_VMX_EXIT_CTLS", 0x483, "Allowed settings of the primary VM-exit controls"),
    ("IA32_VMX_ENTRY_CTLS", 0x484, "Allowed settings of the VM-entry controls"),
    ("IA32_VMX_MISC", 0x485, "Miscellaneous VMX data: timer rate, activity states, CR3 targets, MSR-list size"),
    ("IA32_VMX_CR0_FIXED0", 0x486, "CR0 bits that must be 1 in VMX operation"),
    ("IA32_VMX_CR0_FIXED1", 0x487, "CR0 bits that may be 1 in VMX operation"),
    ("IA32_VMX_CR4_FIXED0", 0x488, "CR4 bits that must be 1 in VMX operation"),
    ("IA32_VMX_CR4_FIXED1", 0x489, "CR4 bits that may be 1 in VMX operation"),
    ("IA32_VMX_VMCS_ENUM", 0x48A, "Highest index used in any VMCS field encoding (bits 9:1)"),
    ("IA32_VMX_PROCBASED_CTLS2", 0x48B, "Allowed settings of the secondary processor-based controls"),
    ("IA32_VMX_EPT_VPID_CAP", 0x48C, "EPT and VPID capabilities"),
    ("IA32_VMX_TRUE_PINBASED_CTLS", 0x48D, "Allowed settings of the pin-based controls, default1 bits included"),
    ("IA32_VMX_TRUE_PROCBASED_CTLS", 0x48E, "Allowed settings of the primary processor-based controls, default1 bits included"),
    ("IA32_VMX_TRUE_EXIT_CTLS", 0x48F, "Allowed settings of the VM-exit controls, default1 bits included"),
    ("IA32_VMX_TRUE_ENTRY_CTLS", 0x490, "Allowed settings of the VM-entry controls, default1 bits included"),
    ("IA32_VMX_VMFUNC", 0x491, "VM functions that may be enabled"),
    ("IA32_VMX_PROCBASED_CTLS3", 0x492, "Allowed 1-settings of the tertiary processor-based controls"),
    ("IA32_VMX_EXIT_CTLS2", 0x493, "Allowed 1-settings of the secondary VM-exit controls"),
    ("IA32_EFER", 0xC0000080, "Extended feature enables (SCE, LME, LMA, NXE)"),
    ("IA32_STAR", 0xC0000081, "SYSCALL/SYSRET segment selectors (and legacy target)"),
    ("IA32_LSTAR", 0xC0000082, "SYSCALL target RIP in 64-bit mode"),
    ("IA32_CSTAR", 0xC0000083, "SYSCALL target RIP in compatibility mode"),
    ("IA32_FMASK", 0xC0000084, "RFLAGS bits cleared by SYSCALL"),
    ("IA32_FS_BASE", 0xC0000100, "FS segment base"),
    ("IA32_GS_BASE", 0xC0000101, "GS segment base"),
    ("IA32_KERNEL_GS_BASE", 0xC0000102, "GS base swapped in by SWAPGS"),
    ("IA32_TSC_AUX", 0xC0000103, "Auxiliary TSC value returned by RDTSCP and RDPID"),
)
