"""Basic exit reasons (Intel SDM Vol. 3D, Appendix C "VMX Basic Exit Reasons").

Each row is ``(name, number, description)``.  The number is what bits 15:0 of
the exit-reason VMCS field hold after a VM exit (or a VM-entry failure that is
reported like one).  Numbers 35, 38, 42 and 71 are not used by the SDM.

``EXIT_REASON_FLAGS`` are the other defined bits of the exit-reason field
(SDM Vol. 3C, "Basic VM-Exit Information").
"""

__all__ = ["EXIT_REASONS", "EXIT_REASON_FLAGS"]

EXIT_REASONS = (
    ("EXCEPTION_OR_NMI", 0, "An exception selected by the exception bitmap, or an NMI with NMI exiting set"),
    ("EXTERNAL_INTERRUPT", 1, "An external interrupt arrived while external-interrupt exiting was set"),
    ("TRIPLE_FAULT", 2, "The guest hit a triple fault"),
    ("INIT_SIGNAL", 3, "An INIT signal arrived"),
    ("STARTUP_IPI", 4, "A start-up IPI arrived while the guest was in wait-for-SIPI"),
    ("IO_SMI", 5, "An SMI arrived right after an I/O instruction (SMM VM exit)"),
    ("OTHER_SMI", 6, "Any other SMI arrived (SMM VM exit)"),
    ("INTERRUPT_WINDOW", 7, "The guest became able to take interrupts (interrupt-window exiting)"),
    ("NMI_WINDOW", 8, "No more virtual-NMI blocking (NMI-window exiting)"),
    ("TASK_SWITCH", 9, "The guest attempted a task switch"),
    ("CPUID", 10, "The guest executed CPUID"),
    ("GETSEC", 11, "The guest executed GETSEC"),
    ("HLT", 12, "The guest executed HLT with HLT exiting set"),
    ("INVD", 13, "The guest executed INVD"),
    ("INVLPG", 14, "The guest executed INVLPG with INVLPG exiting set"),
    ("RDPMC", 15, "The guest executed RDPMC with RDPMC exiting set"),
    ("RDTSC", 16, "The guest executed RDTSC with RDTSC exiting set"),
    ("RSM", 17, "The guest executed RSM in SMM"),
    ("VMCALL", 18, "The guest executed VMCALL"),
    ("VMCLEAR", 19, "The guest executed VMCLEAR"),
    ("VMLAUNCH", 20, "The guest executed VMLAUNCH"),
    ("VMPTRLD", 21, "The guest executed VMPTRLD"),
    ("VMPTRST", 22, "The guest executed VMPTRST"),
    ("VMREAD", 23, "The guest executed VMREAD"),
    ("VMRESUME", 24, "The guest executed VMRESUME"),
    ("VMWRITE", 25, "The guest executed VMWRITE"),
    ("VMXOFF", 26, "The guest executed VMXOFF"),
    ("VMXON", 27, "The guest executed VMXON"),
    ("CONTROL_REGISTER_ACCESS", 28, "The guest accessed a control register (MOV CR, CLTS, LMSW) in a way that exits"),
    ("MOV_DR", 29, "The guest executed MOV to or from a debug register with MOV-DR exiting set"),
    ("IO_INSTRUCTION", 30, "The guest executed an I/O instruction (IN, OUT, INS, OUTS) that exits"),
    ("RDMSR", 31, "The guest executed RDMSR and it exits"),
    ("WRMSR", 32, "The guest executed WRMSR and it exits"),
    ("ENTRY_FAILURE_INVALID_GUEST_STATE", 33, "VM entry failed a guest-state check"),
    ("ENTRY_FAILURE_MSR_LOADING", 34, "VM entry failed while loading MSRs from the VM-entry MSR-load area"),
    ("MWAIT", 36, "The guest executed MWAIT with MWAIT exiting set"),
    ("MONITOR_TRAP_FLAG", 37, "The monitor trap flag fired after a guest instruction"),
    ("MONITOR", 39, "The guest executed MONITOR with MONITOR exiting set"),
    ("PAUSE", 40, "The guest executed PAUSE with PAUSE exiting or PAUSE-loop exiting in effect"),
    ("ENTRY_FAILURE_MACHINE_CHECK", 41, "A machine-check event occurred during VM entry"),
    ("TPR_BELOW_THRESHOLD", 43, "The virtual TPR dropped below the TPR threshold"),
    ("APIC_ACCESS", 44, "The guest accessed the APIC-access page"),
    ("VIRTUALIZED_EOI", 45, "EOI virtualization for a vector set in the EOI-exit bitmap"),
    ("GDTR_IDTR_ACCESS", 46, "The guest executed LGDT, LIDT, SGDT or SIDT with descriptor-table exiting set"),
    ("LDTR_TR_ACCESS", 47, "The guest executed LLDT, LTR, SLDT or STR with descriptor-table exiting set"),
    ("EPT_VIOLATION", 48, "A guest-physical access was not allowed by the EPT paging structures"),
    ("EPT_MISCONFIGURATION", 49, "An EPT paging-structure entry was misconfigured"),
    ("INVEPT", 50, "The guest executed INVEPT"),
    ("RDTSCP", 51, "The guest executed RDTSCP with RDTSC exiting set"),
    ("VMX_PREEMPTION_TIMER_EXPIRED", 52, "The VMX-preemption timer counted down to zero"),
    ("INVVPID", 53, "The guest executed INVVPID"),
    ("WBINVD", 54, "The guest executed WBINVD or WBNOINVD with WBINVD exiting set"),
    ("XSETBV", 55, "The guest executed XSETBV"),
    ("APIC_WRITE", 56, "The guest wrote a virtual-APIC register that needs the VMM (trap-like)"),
    ("RDRAND", 57, "The guest executed RDRAND with RDRAND exiting set"),
    ("INVPCID", 58, "The guest executed INVPCID with INVLPG exiting set"),
    ("VMFUNC", 59, "The guest invoked a VM function that failed or is not enabled"),
    ("ENCLS", 60, "The guest executed ENCLS with a leaf selected to exit"),
    ("RDSEED", 61, "The guest executed RDSEED with RDSEED exiting set"),
    ("PAGE_MODIFICATION_LOG_FULL", 62, "The page-modification log was full when a write needed logging"),
    ("XSAVES", 63, "The guest executed XSAVES and the XSS-exiting bitmap selects it"),
    ("XRSTORS", 64, "The guest executed XRSTORS and the XSS-exiting bitmap selects it"),
    ("PCONFIG", 65, "The guest executed PCONFIG with a leaf selected to exit"),
    ("SPP_RELATED_EVENT", 66, "A sub-page-permission (SPP) miss or misconfiguration"),
    ("UMWAIT", 67, "The guest executed UMWAIT"),
    ("TPAUSE", 68, "The guest executed TPAUSE"),
    ("LOADIWKEY", 69, "The guest executed LOADIWKEY with LOADIWKEY exiting set"),
    ("ENCLV", 70, "The guest executed ENCLV with a leaf selected to exit"),
    ("ENQCMD_PASID_TRANSLATION_FAILURE", 72, "PASID translation failed for ENQCMD"),
    ("ENQCMDS_PASID_TRANSLATION_FAILURE", 73, "PASID translation failed for ENQCMDS"),
    ("BUS_LOCK", 74, "The guest caused a bus lock (VMM bus-lock detection)"),
    ("INSTRUCTION_TIMEOUT", 75, "The processor made no progress for longer than the instruction-timeout window"),
    ("SEAMCALL", 76, "The guest executed SEAMCALL"),
    ("TDCALL", 77, "The guest executed TDCALL"),
    ("RDMSRLIST", 78, "The guest executed RDMSRLIST"),
    ("WRMSRLIST", 79, "The guest executed WRMSRLIST"),
)

#: Flag bits of the exit-reason field besides the basic reason: ``(name, bit, description)``.
EXIT_REASON_FLAGS = (
    ("BUS_LOCK_DETECTED", 26, "A bus lock was asserted while the guest ran (VMM bus-lock detection)"),
    ("ENCLAVE_MODE", 27, "The VM exit came from an SGX enclave"),
    ("PENDING_MTF", 28, "A monitor-trap-flag VM exit was pending (SMM VM exits)"),
    ("FROM_VMX_ROOT", 29, "The VM exit came from VMX root operation (SMM VM exits)"),
    ("ENTRY_FAILURE", 31, "VM entry failed; the basic reason is 33, 34 or 41"),
)


# ---------------------------------------------------------------------------
# The exit information of each reason (SDM Vol. 3C 28.2, pinned edition
# 325462-080US): which exit-information fields it defines, and the format of
# its exit qualification as bit fields ``(name, low bit, high bit)`` with the
# SDM table that defines it.  The model writes exactly the listed fields at
# a VM exit and clears the others (the SDM leaves them undefined); typed
# exits decode the qualification from these rows.
# ---------------------------------------------------------------------------

#: The exit-information fields a row may list (the VMCS fields they stand for).
INFO_FIELDS = (
    ("qualification", "EXIT_QUALIFICATION"),
    ("instruction_length", "VM_EXIT_INSTRUCTION_LENGTH"),
    ("instruction_info", "VM_EXIT_INSTRUCTION_INFO"),
    ("interruption_info", "VM_EXIT_INTERRUPTION_INFO"),
    ("interruption_error_code", "VM_EXIT_INTERRUPTION_ERROR_CODE"),
    ("guest_linear_address", "GUEST_LINEAR_ADDRESS"),
    ("guest_physical_address", "GUEST_PHYSICAL_ADDRESS"),
)

_Q, _L, _I = "qualification", "instruction_length", "instruction_info"
_INTR = ("interruption_info", "interruption_error_code")
_DISP = (("displacement", 0, 63),)
_MEMOP = ((_Q, _L, _I), "28.2.1: the memory operand's displacement; 28.2.5 instruction information", _DISP)
_INSN = ((_L,), "", ())

#: ``reason name: (fields, where the qualification is defined, bit fields)``.
#: Reasons without a row define none of the fields.
EXIT_INFO = {
    "EXCEPTION_OR_NMI": ((_Q, _L) + _INTR, "Table 28-1 for #DB; the linear address for #PF; else 0",
                         (("b0_b3", 0, 3), ("bd", 13, 13), ("bs", 14, 14), ("rtm", 16, 16))),
    "EXTERNAL_INTERRUPT": (_INTR, "", ()),
    "STARTUP_IPI": ((_Q,), "28.2.1: the SIPI vector", (("vector", 0, 7),)),
    "TASK_SWITCH": ((_Q, _L), "Table 28-2", (("selector", 0, 15), ("source", 30, 31))),
    "CPUID": _INSN,
    "GETSEC": _INSN,
    "HLT": _INSN,
    "INVD": _INSN,
    "INVLPG": ((_Q, _L), "28.2.1: the linear address of the operand", (("linear_address", 0, 63),)),
    "RDPMC": _INSN,
    "RDTSC": _INSN,
    "VMCALL": _INSN,
    "VMCLEAR": _MEMOP,
    "VMLAUNCH": _INSN,
    "VMPTRLD": _MEMOP,
    "VMPTRST": _MEMOP,
    "VMREAD": _MEMOP,
    "VMRESUME": _INSN,
    "VMWRITE": _MEMOP,
    "VMXOFF": _INSN,
    "VMXON": _MEMOP,
    "CONTROL_REGISTER_ACCESS": ((_Q, _L, "guest_linear_address"), "Table 28-3",
                                (("cr", 0, 3), ("access_type", 4, 5), ("lmsw_memory", 6, 6), ("gpr", 8, 11),
                                 ("lmsw_source", 16, 31))),
    "MOV_DR": ((_Q, _L), "Table 28-4", (("dr", 0, 2), ("direction", 4, 4), ("gpr", 8, 11))),
    "IO_INSTRUCTION": ((_Q, _L, _I, "guest_linear_address"), "Table 28-5",
                       (("size_minus_1", 0, 2), ("direction", 3, 3), ("string", 4, 4), ("rep", 5, 5),
                        ("immediate", 6, 6), ("port", 16, 31))),
    "RDMSR": _INSN,
    "WRMSR": _INSN,
    "ENTRY_FAILURE_INVALID_GUEST_STATE": ((_Q,), "27.8: 0, 2 (PDPTEs), 3 (NMI injection) or 4 (link pointer)",
                                          (("detail", 0, 63),)),
    "ENTRY_FAILURE_MSR_LOADING": ((_Q,), "27.8: the failing MSR-load entry, counted from 1", (("entry", 0, 63),)),
    "MWAIT": ((_Q, _L), "28.2.1: bit 0, monitor hardware armed", (("armed", 0, 0),)),
    "MONITOR": _INSN,
    "PAUSE": _INSN,
    "APIC_ACCESS": ((_Q, _L), "Table 28-6", (("offset", 0, 11), ("access_type", 12, 15))),
    "VIRTUALIZED_EOI": ((_Q,), "28.2.1: the vector", (("vector", 0, 7),)),
    "GDTR_IDTR_ACCESS": _MEMOP,
    "LDTR_TR_ACCESS": _MEMOP,
    "EPT_VIOLATION": ((_Q, "guest_linear_address", "guest_physical_address"), "Table 28-7",
                      (("read", 0, 0), ("write", 1, 1), ("fetch", 2, 2), ("readable", 3, 3), ("writable", 4, 4),
                       ("executable", 5, 5), ("user_executable", 6, 6), ("gla_valid", 7, 7),
                       ("translation", 8, 8), ("nmi_unblocking", 12, 12))),
    "EPT_MISCONFIGURATION": (("guest_physical_address",), "", ()),
    "INVEPT": _MEMOP,
    "RDTSCP": _INSN,
    "INVVPID": _MEMOP,
    "WBINVD": _INSN,
    "XSETBV": _INSN,
    "APIC_WRITE": ((_Q,), "28.2.1: the offset of the APIC register written", (("offset", 0, 11),)),
    "RDRAND": ((_L, _I), "", ()),
    "INVPCID": _MEMOP,
    "VMFUNC": _INSN,
    "RDSEED": ((_L, _I), "", ()),
    "PAGE_MODIFICATION_LOG_FULL": ((_Q,), "28.2.1: bit 12, NMI unblocking due to IRET",
                                   (("nmi_unblocking", 12, 12),)),
    "XSAVES": _MEMOP,
    "XRSTORS": _MEMOP,
    "SPP_RELATED_EVENT": ((_Q, "guest_linear_address", "guest_physical_address"),
                          "28.2.1: bit 11 an SPPT miss (0: an SPPT misconfiguration), bit 12 NMI unblocking",
                          (("sppt_miss", 11, 11), ("nmi_unblocking", 12, 12))),
    "UMWAIT": ((_L, _I), "", ()),
    "TPAUSE": ((_L, _I), "", ()),
}
