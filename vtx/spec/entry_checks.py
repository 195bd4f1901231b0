"""The VM-entry checks the model performs, one per condition of the SDM, in
SDM order (docs/architecture.rst, decision 6).

The pinned edition is 325462-080US (June 2023), Vol. 3C chapter 27 "VM
Entries": 27.2 checks on the VMX controls and the host-state area, 27.3.1
checks on the guest-state area.  Each row is (ID, area, SDM section, what the
check requires).  The area says how a failure is reported (SDM 27.1, 27.8):

- ``control``: VMfailValid with VM-instruction error 7 (invalid control fields);
- ``host``: VMfailValid with VM-instruction error 8 (invalid host-state fields);
- ``guest``: a VM exit with basic reason 33 and bit 31 set (invalid guest state);
- ``msr``: a VM exit with basic reason 34 and bit 31 set (failure while loading
  the MSRs of the VM-entry MSR-load area, SDM 27.4), the exit qualification
  the failing entry's index counted from 1.

Where the SDM states one rule for several registers ("for each of CS, SS,
DS, ES, FS and GS ..."), each register gets its own check, so a failure
names the register: a *family* (FAMILIES below) is such a set of rows, and
the generator writes a C array of its check numbers, indexed by register, that
the core's loop over the registers uses.

The generator numbers the rows in this order and writes ``CK_<ID>`` into the C
header; the core records the number of the check that failed and the Python
error names it from this table.
"""

CONTROL, HOST, GUEST, MSR = "control", "host", "guest", "msr"

#: Guest segment registers in the order of their VMCS fields (the core's S_*
#: numbers): the index of a family's C array.
GUEST_SEGMENTS = ("ES", "CS", "SS", "DS", "FS", "GS", "LDTR", "TR")
#: Host selector fields in VMCS order (HOST_ES_SELECTOR + 2 * index).
HOST_SELECTORS = ("ES", "CS", "SS", "DS", "FS", "GS", "TR")
#: The order in which the SDM lists the segment registers (27.3.1.2).
SDM_SEGMENTS = ("CS", "SS", "DS", "ES", "FS", "GS")

#: family name -> (ID pattern with {}, the registers in index order).
FAMILIES = {}


def _family(name, pattern, order, segs, area, section, desc):
    """Rows of a family, one per register of `segs` in SDM order; `desc` may
    name the register as {}."""
    FAMILIES[name] = (pattern, order)
    return [(pattern.format(s), area, section, desc.format(s)) for s in segs]


def _guest_family(stem, segs, section, desc):
    return _family(f"GUEST_SEG_{stem}", "GUEST_{}_" + stem, GUEST_SEGMENTS, segs, GUEST, section, desc)


_DATA = ("DS", "ES", "FS", "GS")
_NOT_V86 = "outside virtual-8086 mode, "

ENTRY_CHECKS = [
    # 27.2.1.1 VM-execution control fields
    ("PIN_BASED_CONTROLS", CONTROL, "27.2.1.1",
     "pin-based VM-execution controls respect IA32_VMX_TRUE_PINBASED_CTLS"),
    ("PRIMARY_PROC_BASED_CONTROLS", CONTROL, "27.2.1.1",
     "primary processor-based VM-execution controls respect IA32_VMX_TRUE_PROCBASED_CTLS"),
    ("SECONDARY_PROC_BASED_CONTROLS", CONTROL, "27.2.1.1",
     "with 'activate secondary controls', the secondary processor-based VM-execution controls respect "
     "IA32_VMX_PROCBASED_CTLS2"),
    ("CR3_TARGET_COUNT", CONTROL, "27.2.1.1",
     "the CR3-target count is not greater than 4 (IA32_VMX_MISC bits 24:16)"),
    ("IO_BITMAP_A_ALIGNMENT", CONTROL, "27.2.1.1",
     "with 'use I/O bitmaps', bits 11:0 of the address of I/O bitmap A are 0"),
    ("IO_BITMAP_B_ALIGNMENT", CONTROL, "27.2.1.1",
     "with 'use I/O bitmaps', bits 11:0 of the address of I/O bitmap B are 0"),
    ("IO_BITMAP_A_WIDTH", CONTROL, "27.2.1.1",
     "with 'use I/O bitmaps', the address of I/O bitmap A sets no bit beyond the physical-address width"),
    ("IO_BITMAP_B_WIDTH", CONTROL, "27.2.1.1",
     "with 'use I/O bitmaps', the address of I/O bitmap B sets no bit beyond the physical-address width"),
    ("MSR_BITMAP_ALIGNMENT", CONTROL, "27.2.1.1",
     "with 'use MSR bitmaps', bits 11:0 of the MSR-bitmap address are 0"),
    ("MSR_BITMAP_WIDTH", CONTROL, "27.2.1.1",
     "with 'use MSR bitmaps', the MSR-bitmap address sets no bit beyond the physical-address width"),
    # APIC virtualization (SDM 27.2.1.1; chapter 30)
    ("VIRTUAL_APIC_ADDRESS_ALIGNMENT", CONTROL, "27.2.1.1",
     "with 'use TPR shadow', bits 11:0 of the virtual-APIC address are 0"),
    ("VIRTUAL_APIC_ADDRESS_WIDTH", CONTROL, "27.2.1.1",
     "with 'use TPR shadow', the virtual-APIC address sets no bit beyond the physical-address width"),
    ("TPR_THRESHOLD_RESERVED_BITS", CONTROL, "27.2.1.1",
     "with 'use TPR shadow' and without 'virtual-interrupt delivery', bits 31:4 of the TPR threshold are 0"),
    ("TPR_THRESHOLD_VTPR", CONTROL, "27.2.1.1",
     "with 'use TPR shadow' and neither 'virtualize APIC accesses' nor 'virtual-interrupt delivery', bits 3:0 "
     "of the TPR threshold are not greater than bits 7:4 of VTPR (offset 080H of the virtual-APIC page)"),
    ("VIRTUAL_NMIS", CONTROL, "27.2.1.1",
     "'virtual NMIs' is 0 unless 'NMI exiting' is 1"),
    ("NMI_WINDOW_EXITING", CONTROL, "27.2.1.1",
     "'NMI-window exiting' is 0 unless 'virtual NMIs' is 1"),
    ("APIC_ACCESS_ADDRESS_ALIGNMENT", CONTROL, "27.2.1.1",
     "with 'virtualize APIC accesses', bits 11:0 of the APIC-access address are 0"),
    ("APIC_ACCESS_ADDRESS_WIDTH", CONTROL, "27.2.1.1",
     "with 'virtualize APIC accesses', the APIC-access address sets no bit beyond the physical-address width"),
    ("APIC_VIRTUALIZATION_NEEDS_TPR_SHADOW", CONTROL, "27.2.1.1",
     "without 'use TPR shadow', 'virtualize x2APIC mode', 'APIC-register virtualization' and "
     "'virtual-interrupt delivery' are 0"),
    ("VIRTUALIZE_X2APIC_MODE_EXCLUSIVE", CONTROL, "27.2.1.1",
     "with 'virtualize x2APIC mode', 'virtualize APIC accesses' is 0"),
    ("VIRTUAL_INTERRUPT_DELIVERY_NEEDS_EXTERNAL_INTERRUPT_EXITING", CONTROL, "27.2.1.1",
     "with 'virtual-interrupt delivery', 'external-interrupt exiting' is 1"),
    ("POSTED_INTERRUPTS_NEED_VIRTUAL_INTERRUPT_DELIVERY", CONTROL, "27.2.1.1",
     "with 'process posted interrupts', 'virtual-interrupt delivery' is 1"),
    ("POSTED_INTERRUPTS_NEED_ACKNOWLEDGE_ON_EXIT", CONTROL, "27.2.1.1",
     "with 'process posted interrupts', the VM-exit control 'acknowledge interrupt on exit' is 1"),
    ("POSTED_INTERRUPT_NOTIFICATION_VECTOR", CONTROL, "27.2.1.1",
     "with 'process posted interrupts', bits 15:8 of the posted-interrupt notification vector are 0"),
    ("POSTED_INTERRUPT_DESCRIPTOR_ALIGNMENT", CONTROL, "27.2.1.1",
     "with 'process posted interrupts', bits 5:0 of the posted-interrupt descriptor address are 0"),
    ("POSTED_INTERRUPT_DESCRIPTOR_WIDTH", CONTROL, "27.2.1.1",
     "with 'process posted interrupts', the posted-interrupt descriptor address sets no bit beyond the "
     "physical-address width"),
    ("VPID_NONZERO", CONTROL, "27.2.1.1",
     "with 'enable VPID', the VPID is not 0000H"),
    ("EPT_POINTER_MEMORY_TYPE", CONTROL, "27.2.1.1",
     "with 'enable EPT', the EPT memory type (EPTP bits 2:0) is one IA32_VMX_EPT_VPID_CAP reports "
     "(WB, bit 14; UC would need bit 8)"),
    ("EPT_POINTER_WALK_LENGTH", CONTROL, "27.2.1.1",
     "with 'enable EPT', EPTP bits 5:3 (page-walk length - 1) give a supported length: 4 (bit 6 of "
     "IA32_VMX_EPT_VPID_CAP; 5 would need bit 7)"),
    ("EPT_POINTER_SUPERVISOR_SHADOW_STACK", CONTROL, "27.2.1.1",
     "with 'enable EPT', EPTP bit 7 (supervisor shadow-stack control) is 0 unless IA32_VMX_EPT_VPID_CAP "
     "bit 23 is 1"),
    ("EPT_POINTER_RESERVED_BITS", CONTROL, "27.2.1.1",
     "with 'enable EPT', EPTP reserved bits 11:8 are 0"),
    ("EPT_POINTER_WIDTH", CONTROL, "27.2.1.1",
     "with 'enable EPT', EPTP bits 63:N (N the physical-address width) are 0"),
    ("PML_NEEDS_EPT", CONTROL, "27.2.1.1",
     "with 'enable PML', 'enable EPT' is 1"),
    ("PML_ADDRESS_ALIGNMENT", CONTROL, "27.2.1.1",
     "with 'enable PML', bits 11:0 of the PML address are 0"),
    ("PML_ADDRESS_WIDTH", CONTROL, "27.2.1.1",
     "with 'enable PML', the PML address sets no bit beyond the physical-address width"),
    ("UNRESTRICTED_GUEST_NEEDS_EPT", CONTROL, "27.2.1.1",
     "'unrestricted guest' is 0 unless 'enable EPT' is 1"),
    ("VM_FUNCTION_CONTROLS", CONTROL, "27.2.1.1",
     "with 'enable VM functions', the VM-function controls set only functions IA32_VMX_VMFUNC allows"),
    ("EPTP_SWITCHING_NEEDS_EPT", CONTROL, "27.2.1.1",
     "with the EPTP-switching VM function enabled, 'enable EPT' is 1"),
    ("EPTP_LIST_ADDRESS_ALIGNMENT", CONTROL, "27.2.1.1",
     "with the EPTP-switching VM function enabled, bits 11:0 of the EPTP-list address are 0"),
    ("EPTP_LIST_ADDRESS_WIDTH", CONTROL, "27.2.1.1",
     "with the EPTP-switching VM function enabled, the EPTP-list address sets no bit beyond the "
     "physical-address width"),
    ("SUB_PAGE_WRITE_PERMISSIONS_NEED_EPT", CONTROL, "27.2.1.1",
     "with 'sub-page write permissions for EPT', 'enable EPT' is 1"),
    ("SPPTP_ALIGNMENT", CONTROL, "27.2.1.1",
     "with 'sub-page write permissions for EPT', bits 11:0 of the SPP-table pointer are 0"),
    ("SPPTP_WIDTH", CONTROL, "27.2.1.1",
     "with 'sub-page write permissions for EPT', the SPP-table pointer sets no bit beyond the "
     "physical-address width"),
    # 27.2.1.2 VM-exit control fields
    ("VM_EXIT_CONTROLS", CONTROL, "27.2.1.2",
     "VM-exit controls respect IA32_VMX_TRUE_EXIT_CTLS"),
    ("VM_EXIT_SAVE_VMX_PREEMPTION_TIMER", CONTROL, "27.2.1.2",
     "'save VMX-preemption timer value' is 0 unless 'activate VMX-preemption timer' is 1"),
    ("VM_EXIT_MSR_STORE_ADDRESS_ALIGNMENT", CONTROL, "27.2.1.2",
     "with a VM-exit MSR-store count other than 0, bits 3:0 of the VM-exit MSR-store address are 0"),
    ("VM_EXIT_MSR_STORE_ADDRESS_WIDTH", CONTROL, "27.2.1.2",
     "with a VM-exit MSR-store count other than 0, the VM-exit MSR-store address sets no bit beyond the "
     "physical-address width"),
    ("VM_EXIT_MSR_STORE_LAST_BYTE_WIDTH", CONTROL, "27.2.1.2",
     "with a VM-exit MSR-store count other than 0, the address of the last byte of the area (address + "
     "count * 16 - 1) sets no bit beyond the physical-address width"),
    ("VM_EXIT_MSR_LOAD_ADDRESS_ALIGNMENT", CONTROL, "27.2.1.2",
     "with a VM-exit MSR-load count other than 0, bits 3:0 of the VM-exit MSR-load address are 0"),
    ("VM_EXIT_MSR_LOAD_ADDRESS_WIDTH", CONTROL, "27.2.1.2",
     "with a VM-exit MSR-load count other than 0, the VM-exit MSR-load address sets no bit beyond the "
     "physical-address width"),
    ("VM_EXIT_MSR_LOAD_LAST_BYTE_WIDTH", CONTROL, "27.2.1.2",
     "with a VM-exit MSR-load count other than 0, the address of the last byte of the area (address + "
     "count * 16 - 1) sets no bit beyond the physical-address width"),
    # 27.2.1.3 VM-entry control fields
    ("VM_ENTRY_CONTROLS", CONTROL, "27.2.1.3",
     "VM-entry controls respect IA32_VMX_TRUE_ENTRY_CTLS"),
    ("VM_ENTRY_INTERRUPTION_TYPE_RESERVED", CONTROL, "27.2.1.3",
     "a valid VM-entry interruption-information field does not have interruption type 1 (reserved)"),
    ("VM_ENTRY_INTERRUPTION_TYPE_OTHER_EVENT", CONTROL, "27.2.1.3",
     "a valid VM-entry interruption-information field has interruption type 7 (other event) only if "
     "'monitor trap flag' may be 1"),
    ("VM_ENTRY_INTERRUPTION_VECTOR_NMI", CONTROL, "27.2.1.3",
     "an injected NMI has vector 2"),
    ("VM_ENTRY_INTERRUPTION_VECTOR_HARDWARE_EXCEPTION", CONTROL, "27.2.1.3",
     "an injected hardware exception has a vector of at most 31"),
    ("VM_ENTRY_INTERRUPTION_VECTOR_OTHER_EVENT", CONTROL, "27.2.1.3",
     "an injected other event (pending MTF VM exit) has vector 0"),
    ("VM_ENTRY_DELIVER_ERROR_CODE_REQUIRED", CONTROL, "27.2.1.3",
     "deliver-error-code (bit 11) is 1 for a hardware exception that pushes an error code (8, 10-14, 17, 21) "
     "unless 'unrestricted guest' is 1 and guest CR0.PE is 0"),
    ("VM_ENTRY_DELIVER_ERROR_CODE_REAL_MODE", CONTROL, "27.2.1.3",
     "deliver-error-code is 0 when 'unrestricted guest' is 1 and guest CR0.PE is 0"),
    ("VM_ENTRY_DELIVER_ERROR_CODE_TYPE", CONTROL, "27.2.1.3",
     "deliver-error-code is 0 when the interruption type is not hardware exception"),
    ("VM_ENTRY_DELIVER_ERROR_CODE_VECTOR", CONTROL, "27.2.1.3",
     "deliver-error-code is 0 for an exception that does not push an error code"),
    ("VM_ENTRY_INTERRUPTION_INFO_RESERVED_BITS", CONTROL, "27.2.1.3",
     "reserved bits 30:12 of a valid VM-entry interruption-information field are 0"),
    ("VM_ENTRY_EXCEPTION_ERROR_CODE", CONTROL, "27.2.1.3",
     "with deliver-error-code, bits 31:16 of the VM-entry exception error code are 0"),
    ("VM_ENTRY_INSTRUCTION_LENGTH", CONTROL, "27.2.1.3",
     "a software interrupt or (privileged) software exception has a VM-entry instruction length of at most 15"),
    ("VM_ENTRY_INSTRUCTION_LENGTH_ZERO", CONTROL, "27.2.1.3",
     "a software interrupt or (privileged) software exception has a VM-entry instruction length other than 0 "
     "(0 needs IA32_VMX_MISC bit 30)"),
    ("VM_ENTRY_MSR_LOAD_ADDRESS_ALIGNMENT", CONTROL, "27.2.1.3",
     "with a VM-entry MSR-load count other than 0, bits 3:0 of the VM-entry MSR-load address are 0"),
    ("VM_ENTRY_MSR_LOAD_ADDRESS_WIDTH", CONTROL, "27.2.1.3",
     "with a VM-entry MSR-load count other than 0, the VM-entry MSR-load address sets no bit beyond the "
     "physical-address width"),
    ("VM_ENTRY_MSR_LOAD_LAST_BYTE_WIDTH", CONTROL, "27.2.1.3",
     "with a VM-entry MSR-load count other than 0, the address of the last byte of the area (address + "
     "count * 16 - 1) sets no bit beyond the physical-address width"),
    # 27.2.2 host control registers and MSRs
    ("HOST_CR0", HOST, "27.2.2",
     "host CR0 respects IA32_VMX_CR0_FIXED0 and IA32_VMX_CR0_FIXED1"),
    ("HOST_CR4", HOST, "27.2.2",
     "host CR4 respects IA32_VMX_CR4_FIXED0 and IA32_VMX_CR4_FIXED1"),
    ("HOST_CR3", HOST, "27.2.2",
     "host CR3 has no bits set beyond the physical-address width"),
    ("HOST_SYSENTER_ESP_CANONICAL", HOST, "27.2.2",
     "the host IA32_SYSENTER_ESP field is canonical"),
    ("HOST_SYSENTER_EIP_CANONICAL", HOST, "27.2.2",
     "the host IA32_SYSENTER_EIP field is canonical"),
] + [
    (f"HOST_IA32_PAT_PA{i}", HOST, "27.2.2",
     f"with 'load IA32_PAT', entry PA{i} (bits {8 * i + 7}:{8 * i}) of the host PAT is a valid memory type "
     "(0, 1, 4, 5, 6 or 7)") for i in range(8)
] + [
    ("HOST_IA32_EFER_RESERVED_BITS", HOST, "27.2.2",
     "with 'load IA32_EFER', the host IA32_EFER has no reserved bit set"),
    ("HOST_IA32_EFER_LMA", HOST, "27.2.2",
     "with 'load IA32_EFER', host IA32_EFER.LMA equals 'host address-space size'"),
    ("HOST_IA32_EFER_LME", HOST, "27.2.2",
     "with 'load IA32_EFER', host IA32_EFER.LME equals 'host address-space size'"),
    # 27.2.3 host segment and descriptor-table registers
] + _family("HOST_SELECTOR_RPL", "HOST_{}_SELECTOR_RPL", HOST_SELECTORS, HOST_SELECTORS, HOST, "27.2.3",
            "the RPL (bits 1:0) of the host {} selector is 0") \
  + _family("HOST_SELECTOR_TI", "HOST_{}_SELECTOR_TI", HOST_SELECTORS, HOST_SELECTORS, HOST, "27.2.3",
            "the TI flag (bit 2) of the host {} selector is 0") + [
    ("HOST_CS_SELECTOR_NULL", HOST, "27.2.3", "the host CS selector is not 0000H"),
    ("HOST_TR_SELECTOR_NULL", HOST, "27.2.3", "the host TR selector is not 0000H"),
    ("HOST_SS_SELECTOR_NULL", HOST, "27.2.3",
     "the host SS selector is not 0000H when 'host address-space size' is 0"),
    ("HOST_FS_BASE_CANONICAL", HOST, "27.2.3", "the host FS base is canonical"),
    ("HOST_GS_BASE_CANONICAL", HOST, "27.2.3", "the host GS base is canonical"),
    ("HOST_GDTR_BASE_CANONICAL", HOST, "27.2.3", "the host GDTR base is canonical"),
    ("HOST_IDTR_BASE_CANONICAL", HOST, "27.2.3", "the host IDTR base is canonical"),
    ("HOST_TR_BASE_CANONICAL", HOST, "27.2.3", "the host TR base is canonical"),
    # 27.2.4 checks related to address-space size
    ("IA32E_MODE_GUEST_OUTSIDE_IA32E", HOST, "27.2.4",
     "outside IA-32e mode (x86 host code with IA32_EFER.LMA 0), 'IA-32e mode guest' is 0"),
    ("HOST_ADDRESS_SPACE_SIZE_OUTSIDE_IA32E", HOST, "27.2.4",
     "outside IA-32e mode, 'host address-space size' is 0"),
    ("HOST_ADDRESS_SPACE_SIZE_IN_IA32E", HOST, "27.2.4",
     "in IA-32e mode (the hosted hypervisor always is), 'host address-space size' is 1"),
    ("HOST_CR4_PCIDE", HOST, "27.2.4",
     "with 'host address-space size' 0, host CR4.PCIDE (bit 17) is 0"),
    ("HOST_RIP_HIGH_BITS", HOST, "27.2.4",
     "with 'host address-space size' 0, bits 63:32 of host RIP are 0"),
    ("HOST_CR4_PAE", HOST, "27.2.4",
     "with 'host address-space size' 1, host CR4.PAE (bit 5) is 1"),
    ("HOST_RIP_CANONICAL", HOST, "27.2.4",
     "with 'host address-space size' 1, host RIP is canonical"),
    # 27.3.1.1 guest control registers, debug registers and MSRs
    ("GUEST_CR0", GUEST, "27.3.1.1",
     "guest CR0 respects IA32_VMX_CR0_FIXED0 and IA32_VMX_CR0_FIXED1 (PE and PG may be 0 with "
     "'unrestricted guest')"),
    ("GUEST_CR0_PG_WITHOUT_PE", GUEST, "27.3.1.1",
     "guest CR0.PE is 1 if CR0.PG is 1"),
    ("GUEST_CR4", GUEST, "27.3.1.1",
     "guest CR4 respects IA32_VMX_CR4_FIXED0 and IA32_VMX_CR4_FIXED1"),
    ("GUEST_IA32_DEBUGCTL", GUEST, "27.3.1.1",
     "with 'load debug controls', the guest IA32_DEBUGCTL sets no reserved bit (the model implements "
     "LBR and BTF, bits 1:0)"),
    ("GUEST_IA32E_MODE_CR0_PG", GUEST, "27.3.1.1",
     "with 'IA-32e mode guest', guest CR0.PG is 1"),
    ("GUEST_IA32E_MODE_CR4_PAE", GUEST, "27.3.1.1",
     "with 'IA-32e mode guest', guest CR4.PAE is 1"),
    ("GUEST_CR4_PCIDE", GUEST, "27.3.1.1",
     "without 'IA-32e mode guest', guest CR4.PCIDE is 0"),
    ("GUEST_CR3", GUEST, "27.3.1.1",
     "guest CR3 has no bits set beyond the physical-address width"),
    ("GUEST_DR7", GUEST, "27.3.1.1",
     "with 'load debug controls', bits 63:32 of guest DR7 are 0"),
    ("GUEST_SYSENTER_ESP_CANONICAL", GUEST, "27.3.1.1",
     "the guest IA32_SYSENTER_ESP field is canonical"),
    ("GUEST_SYSENTER_EIP_CANONICAL", GUEST, "27.3.1.1",
     "the guest IA32_SYSENTER_EIP field is canonical"),
] + [
    (f"GUEST_IA32_PAT_PA{i}", GUEST, "27.3.1.1",
     f"with 'load IA32_PAT', entry PA{i} (bits {8 * i + 7}:{8 * i}) of the guest PAT is a valid memory type "
     "(0, 1, 4, 5, 6 or 7)") for i in range(8)
] + [
    ("GUEST_IA32_EFER_RESERVED_BITS", GUEST, "27.3.1.1",
     "with 'load IA32_EFER', the guest IA32_EFER has no reserved bit set"),
    ("GUEST_IA32_EFER_LMA", GUEST, "27.3.1.1",
     "with 'load IA32_EFER', guest IA32_EFER.LMA equals 'IA-32e mode guest'"),
    ("GUEST_IA32_EFER_LME", GUEST, "27.3.1.1",
     "with 'load IA32_EFER' and guest CR0.PG 1, guest IA32_EFER.LME equals IA32_EFER.LMA"),
    # 27.3.1.2 segment registers: selectors
    ("GUEST_TR_SELECTOR_TI", GUEST, "27.3.1.2", "the TI flag of the guest TR selector is 0"),
    ("GUEST_LDTR_SELECTOR_TI", GUEST, "27.3.1.2", "the TI flag of a usable guest LDTR selector is 0"),
    ("GUEST_SS_SELECTOR_RPL", GUEST, "27.3.1.2",
     _NOT_V86 + "without 'unrestricted guest', the RPL of SS equals the RPL of CS"),
    # base addresses
] + _guest_family("BASE_V86", SDM_SEGMENTS, "27.3.1.2",
                  "in virtual-8086 mode, the {} base is the selector shifted left 4 bits") + [
    ("GUEST_TR_BASE_CANONICAL", GUEST, "27.3.1.2", "the guest TR base is canonical"),
    ("GUEST_FS_BASE_CANONICAL", GUEST, "27.3.1.2", "the guest FS base is canonical"),
    ("GUEST_GS_BASE_CANONICAL", GUEST, "27.3.1.2", "the guest GS base is canonical"),
    ("GUEST_LDTR_BASE_CANONICAL", GUEST, "27.3.1.2", "the base of a usable guest LDTR is canonical"),
    ("GUEST_CS_BASE_HIGH_BITS", GUEST, "27.3.1.2", "bits 63:32 of the guest CS base are 0"),
] + _guest_family("BASE_HIGH_BITS", ("SS", "DS", "ES"), "27.3.1.2",
                  "bits 63:32 of the base of a usable guest {} are 0") \
  + _guest_family("LIMIT_V86", SDM_SEGMENTS, "27.3.1.2", "in virtual-8086 mode, the {} limit is 0000FFFFH") \
  + _guest_family("ACCESS_RIGHTS_V86", SDM_SEGMENTS, "27.3.1.2",
                  "in virtual-8086 mode, the {} access rights are 000000F3H") + [
    # access rights outside virtual-8086 mode, by field of the access rights
    ("GUEST_CS_TYPE", GUEST, "27.3.1.2",
     _NOT_V86 + "the CS type is 9, 11, 13 or 15 (accessed code), or 3 with 'unrestricted guest'"),
    ("GUEST_SS_TYPE", GUEST, "27.3.1.2", _NOT_V86 + "the type of a usable SS is 3 or 7 (read/write data)"),
] + _guest_family("TYPE_ACCESSED", _DATA, "27.3.1.2",
                  _NOT_V86 + "the type of a usable {} has bit 0 (accessed) set") \
  + _guest_family("TYPE_READABLE", _DATA, "27.3.1.2",
                  _NOT_V86 + "a usable {} of a code type is readable (type bit 1)") \
  + _guest_family("S", SDM_SEGMENTS, "27.3.1.2", _NOT_V86 + "the S flag (bit 4) of {} is 1 (if usable)") + [
    ("GUEST_CS_DPL_TYPE_3", GUEST, "27.3.1.2", _NOT_V86 + "the DPL of a CS of type 3 is 0"),
    ("GUEST_CS_DPL_NONCONFORMING", GUEST, "27.3.1.2",
     _NOT_V86 + "the DPL of a non-conforming CS (type 9 or 11) equals the DPL of SS"),
    ("GUEST_CS_DPL_CONFORMING", GUEST, "27.3.1.2",
     _NOT_V86 + "the DPL of a conforming CS (type 13 or 15) is at most the DPL of SS"),
    ("GUEST_SS_DPL_RPL", GUEST, "27.3.1.2",
     _NOT_V86 + "without 'unrestricted guest', the DPL of SS equals the RPL of its selector"),
    ("GUEST_SS_DPL_ZERO", GUEST, "27.3.1.2",
     _NOT_V86 + "the DPL of SS is 0 when CS has type 3 or guest CR0.PE is 0"),
] + _guest_family("DPL_RPL", _DATA, "27.3.1.2",
                  _NOT_V86 + "without 'unrestricted guest', the DPL of a usable {} of a data or non-conforming "
                  "code type (0-11) is at least the RPL of its selector") \
  + _guest_family("P", SDM_SEGMENTS, "27.3.1.2", _NOT_V86 + "the P flag (bit 7) of {} is 1 (if usable)") \
  + _guest_family("RESERVED_11_8", SDM_SEGMENTS, "27.3.1.2",
                  _NOT_V86 + "access-rights bits 11:8 of {} are 0 (if usable)") + [
    ("GUEST_CS_DB_WITH_L", GUEST, "27.3.1.2",
     _NOT_V86 + "with 'IA-32e mode guest' and CS.L 1, CS.D/B is 0"),
] + _guest_family("G_LIMIT_LOW", SDM_SEGMENTS, "27.3.1.2",
                  _NOT_V86 + "G (bit 15) of {} is 0 if a bit of limit bits 11:0 is 0 (if usable)") \
  + _guest_family("G_LIMIT_HIGH", SDM_SEGMENTS, "27.3.1.2",
                  _NOT_V86 + "G of {} is 1 if a bit of limit bits 31:20 is 1 (if usable)") \
  + _guest_family("RESERVED_31_17", SDM_SEGMENTS, "27.3.1.2",
                  _NOT_V86 + "access-rights bits 31:17 of {} are 0 (if usable)") + [
    ("GUEST_TR_TYPE", GUEST, "27.3.1.2",
     "the TR type is 11 (busy 32-bit TSS), or 3 (busy 16-bit TSS) without 'IA-32e mode guest'"),
    ("GUEST_TR_S", GUEST, "27.3.1.2", "the S flag of TR is 0"),
    ("GUEST_TR_P", GUEST, "27.3.1.2", "the P flag of TR is 1"),
    ("GUEST_TR_RESERVED_11_8", GUEST, "27.3.1.2", "access-rights bits 11:8 of TR are 0"),
    ("GUEST_TR_G_LIMIT_LOW", GUEST, "27.3.1.2", "G of TR is 0 if a bit of limit bits 11:0 is 0"),
    ("GUEST_TR_G_LIMIT_HIGH", GUEST, "27.3.1.2", "G of TR is 1 if a bit of limit bits 31:20 is 1"),
    ("GUEST_TR_UNUSABLE", GUEST, "27.3.1.2", "TR is usable (bit 16 is 0)"),
    ("GUEST_TR_RESERVED_31_17", GUEST, "27.3.1.2", "access-rights bits 31:17 of TR are 0"),
    ("GUEST_LDTR_TYPE", GUEST, "27.3.1.2", "the type of a usable LDTR is 2"),
    ("GUEST_LDTR_S", GUEST, "27.3.1.2", "the S flag of a usable LDTR is 0"),
    ("GUEST_LDTR_P", GUEST, "27.3.1.2", "the P flag of a usable LDTR is 1"),
    ("GUEST_LDTR_RESERVED_11_8", GUEST, "27.3.1.2", "access-rights bits 11:8 of a usable LDTR are 0"),
    ("GUEST_LDTR_G_LIMIT_LOW", GUEST, "27.3.1.2", "G of a usable LDTR is 0 if a bit of limit bits 11:0 is 0"),
    ("GUEST_LDTR_G_LIMIT_HIGH", GUEST, "27.3.1.2", "G of a usable LDTR is 1 if a bit of limit bits 31:20 is 1"),
    ("GUEST_LDTR_RESERVED_31_17", GUEST, "27.3.1.2", "access-rights bits 31:17 of a usable LDTR are 0"),
    # 27.3.1.3 descriptor-table registers
    ("GUEST_GDTR_BASE_CANONICAL", GUEST, "27.3.1.3", "the guest GDTR base is canonical"),
    ("GUEST_IDTR_BASE_CANONICAL", GUEST, "27.3.1.3", "the guest IDTR base is canonical"),
    ("GUEST_GDTR_LIMIT", GUEST, "27.3.1.3", "bits 31:16 of the guest GDTR limit are 0"),
    ("GUEST_IDTR_LIMIT", GUEST, "27.3.1.3", "bits 31:16 of the guest IDTR limit are 0"),
    # 27.3.1.4 RIP and RFLAGS
    ("GUEST_RIP_HIGH_BITS", GUEST, "27.3.1.4",
     "bits 63:32 of guest RIP are 0 without 'IA-32e mode guest' or with CS.L 0"),
    ("GUEST_RIP_CANONICAL", GUEST, "27.3.1.4",
     "with 'IA-32e mode guest' and CS.L 1, guest RIP is canonical"),
    ("GUEST_RFLAGS_RESERVED_BITS", GUEST, "27.3.1.4", "RFLAGS reserved bits 63:22, 15, 5 and 3 are 0"),
    ("GUEST_RFLAGS_BIT_1", GUEST, "27.3.1.4", "RFLAGS reserved bit 1 is 1"),
    ("GUEST_RFLAGS_VM_IA32E", GUEST, "27.3.1.4", "RFLAGS.VM is 0 with 'IA-32e mode guest'"),
    ("GUEST_RFLAGS_VM_CR0_PE", GUEST, "27.3.1.4", "RFLAGS.VM is 0 when guest CR0.PE is 0"),
    ("GUEST_RFLAGS_IF", GUEST, "27.3.1.4", "RFLAGS.IF is 1 when an external interrupt is injected"),
    # 27.3.1.5 non-register state: activity state
    ("GUEST_ACTIVITY_STATE_RANGE", GUEST, "27.3.1.5", "the activity state is in the range 0-3"),
    ("GUEST_ACTIVITY_STATE_HLT_SS_DPL", GUEST, "27.3.1.5", "the activity state is not HLT when SS.DPL is not 0"),
    ("GUEST_ACTIVITY_STATE_BLOCKING", GUEST, "27.3.1.5",
     "the activity state is active when the interruptibility state has blocking by STI or by MOV SS"),
    ("GUEST_ACTIVITY_STATE_HLT_INJECTION", GUEST, "27.3.1.5",
     "in the HLT state, the injected event is one HLT does not block: an external interrupt, an NMI, "
     "a hardware exception #DB or #MC, or an other event with vector 0; in the shutdown state an NMI or "
     "#MC; in wait-for-SIPI, no event"),
    # interruptibility state
    ("GUEST_INTERRUPTIBILITY_RESERVED_BITS", GUEST, "27.3.1.5",
     "interruptibility-state reserved bits 31:5 are 0"),
    ("GUEST_INTERRUPTIBILITY_STI_AND_MOV_SS", GUEST, "27.3.1.5",
     "blocking by STI (bit 0) and by MOV SS (bit 1) are not both set"),
    ("GUEST_INTERRUPTIBILITY_STI_IF", GUEST, "27.3.1.5", "blocking by STI is 0 when RFLAGS.IF is 0"),
    ("GUEST_INTERRUPTIBILITY_STI_EXTERNAL_INTERRUPT", GUEST, "27.3.1.5",
     "blocking by STI is 0 when an external interrupt is injected"),
    ("GUEST_INTERRUPTIBILITY_MOV_SS_EXTERNAL_INTERRUPT", GUEST, "27.3.1.5",
     "blocking by MOV SS is 0 when an external interrupt is injected"),
    ("GUEST_INTERRUPTIBILITY_MOV_SS_NMI", GUEST, "27.3.1.5",
     "blocking by MOV SS is 0 when an NMI is injected"),
    ("GUEST_INTERRUPTIBILITY_SMI", GUEST, "27.3.1.5",
     "blocking by SMI (bit 2) is 0 outside SMM (the model never is in SMM)"),
    ("GUEST_INTERRUPTIBILITY_NMI_VIRTUAL_NMIS", GUEST, "27.3.1.5",
     "with 'virtual NMIs', blocking by NMI (bit 3) is 0 when an NMI is injected"),
    ("GUEST_INTERRUPTIBILITY_ENCLAVE", GUEST, "27.3.1.5",
     "enclave interruption (bit 4) is 0 (the model does not support SGX)"),
    # pending debug exceptions
    ("GUEST_PENDING_DEBUG_RESERVED_BITS", GUEST, "27.3.1.5",
     "pending-debug-exceptions reserved bits 63:17, 15, 13 and 11:4 are 0"),
    ("GUEST_PENDING_DEBUG_BS_SET", GUEST, "27.3.1.5",
     "with blocking by STI or MOV SS or in the HLT state, BS (bit 14) is 1 if RFLAGS.TF is 1 and "
     "IA32_DEBUGCTL.BTF is 0"),
    ("GUEST_PENDING_DEBUG_BS_CLEAR", GUEST, "27.3.1.5",
     "with blocking by STI or MOV SS or in the HLT state, BS is 0 if RFLAGS.TF is 0 or "
     "IA32_DEBUGCTL.BTF is 1"),
    ("GUEST_PENDING_DEBUG_RTM_BITS_11_0", GUEST, "27.3.1.5", "with RTM (bit 16) set, bits 11:0 are 0"),
    ("GUEST_PENDING_DEBUG_RTM_BITS_15_13", GUEST, "27.3.1.5", "with RTM set, bits 15:13 are 0"),
    ("GUEST_PENDING_DEBUG_RTM_BIT_12", GUEST, "27.3.1.5", "with RTM set, bit 12 (enabled breakpoint) is 1"),
    ("GUEST_PENDING_DEBUG_RTM_SUPPORT", GUEST, "27.3.1.5",
     "RTM is set only if the processor supports RTM (the model does not)"),
    # VMCS link pointer (exit qualification 4)
    ("GUEST_VMCS_LINK_POINTER_ALIGNMENT", GUEST, "27.3.1.5",
     "a VMCS link pointer other than FFFFFFFF_FFFFFFFFH has bits 11:0 clear"),
    ("GUEST_VMCS_LINK_POINTER_WIDTH", GUEST, "27.3.1.5",
     "a VMCS link pointer other than FFFFFFFF_FFFFFFFFH sets no bit beyond the physical-address width"),
    ("GUEST_VMCS_LINK_POINTER_REVISION", GUEST, "27.3.1.5",
     "bits 30:0 of the 32 bits the VMCS link pointer references hold the VMCS revision identifier"),
    ("GUEST_VMCS_LINK_POINTER_SHADOW", GUEST, "27.3.1.5",
     "bit 31 of the 32 bits the VMCS link pointer references equals 'VMCS shadowing' (not offered: 0)"),
    ("GUEST_VMCS_LINK_POINTER_CURRENT_VMCS", GUEST, "27.3.1.5",
     "the VMCS link pointer is not the current-VMCS pointer (the model is never in SMM)"),
] + [
    # 27.3.1.6 PDPTEs (exit qualification 2)
    (f"GUEST_PDPTE{i}", GUEST, "27.3.1.6",
     f"with PAE paging, PDPTE{i} (the VMCS field with 'enable EPT', else the table guest CR3 references) "
     "sets no reserved bit if present") for i in range(4)
] + [
    # 27.4 loading MSRs: after the guest state, each entry of the VM-entry
    # MSR-load area in turn (exit reason 34, exit qualification the entry's
    # index counted from 1).
    ("MSR_LOAD_COUNT", MSR, "27.4",
     "the entry is within the recommended maximum of 512 * (IA32_VMX_MISC bits 27:25 + 1) entries (beyond it "
     "Appendix A.6 leaves the behavior undefined; the model fails there)"),
    ("MSR_LOAD_FS_GS_BASE", MSR, "27.4",
     "the entry's MSR index (bits 31:0) is not IA32_FS_BASE (C0000100H) or IA32_GS_BASE (C0000101H)"),
    ("MSR_LOAD_X2APIC", MSR, "27.4",
     "bits 31:8 of the entry's MSR index are not 000008H (the x2APIC MSRs 800H-8FFH)"),
    ("MSR_LOAD_SMM_MONITOR_CTL", MSR, "27.4",
     "the entry's MSR is not IA32_SMM_MONITOR_CTL (9BH), which only SMM may write (the model is never in SMM)"),
    ("MSR_LOAD_RESERVED_BITS", MSR, "27.4",
     "bits 63:32 of the entry (reserved) are 0"),
    ("MSR_LOAD_WRMSR", MSR, "27.4",
     "WRMSR of the entry's data (bits 127:64) to its MSR at CPL 0 would not cause #GP"),
]


#: Checks that apply only to a model that offers a control (True: the check
#: needs the 1-setting of the control to be allowed) or that does not (False:
#: the condition is about processors without it): the table keeps them so
#: the core stays right if the capabilities change; a test excuses those
#: the capabilities make unreachable.  check -> (group prefix, control, offered).
NEEDS_CONTROL = {
    "VIRTUAL_NMIS": ("PIN", "VIRTUAL_NMIS", True),
    "NMI_WINDOW_EXITING": ("PROC", "NMI_WINDOW_EXITING", True),
    "VM_ENTRY_INTERRUPTION_TYPE_OTHER_EVENT": ("PROC", "MONITOR_TRAP_FLAG", False),
    "VM_ENTRY_INTERRUPTION_VECTOR_OTHER_EVENT": ("PROC", "MONITOR_TRAP_FLAG", True),
    "VM_EXIT_SAVE_VMX_PREEMPTION_TIMER": ("EXIT_CTL", "SAVE_VMX_PREEMPTION_TIMER", True),
    "GUEST_INTERRUPTIBILITY_NMI_VIRTUAL_NMIS": ("PIN", "VIRTUAL_NMIS", True),
}

#: Checks with an exit qualification other than 0 (SDM 27.8).
EXIT_QUALIFICATION = {name: 4 for name, *_ in ENTRY_CHECKS if name.startswith("GUEST_VMCS_LINK_POINTER")}
EXIT_QUALIFICATION.update({f"GUEST_PDPTE{i}": 2 for i in range(4)})


# ---------------------------------------------------------------------------
# What each check reads (docs/architecture.rst, "Entry checks at VMRESUME").
#
# A VMRESUME re-runs only the checks whose inputs changed since the last
# successful VM entry; these are those inputs, read off the code of
# vtx/core/vmx/entry.pxi check by check, including the values a check uses
# only to decide whether it applies ("unrestricted guest", "IA-32e mode
# guest", RFLAGS.VM).  An input is a VMCS field name, or (name, bits) when the
# check looks at only those bits of the field.  The generator turns this into
# vmcs_check_mark(): for a change of a field, the checks it can affect.
#
# Listing too much costs a re-check; listing too little would let an invalid
# value through, so when in doubt a field is listed whole.
# ---------------------------------------------------------------------------

RFLAGS_TF = 1 << 8
RFLAGS_IF = 1 << 9
RFLAGS_VM = 1 << 17
#: RFLAGS bits that must be 0 (63:22, 15, 5, 3), SDM 27.3.1.4; bit 1 must be 1.
RFLAGS_RESERVED = 0xFFFF_FFFF_FFC0_8028
CR0_PE = 1 << 0
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
CR4_PCIDE = 1 << 17
AR_TYPE, AR_S, AR_DPL, AR_P, AR_L, AR_DB, AR_G, AR_UNUSABLE = 0xF, 0x10, 0x60, 0x80, 1 << 13, 1 << 14, 1 << 15, 1 << 16

_PROC = ("PRIMARY_PROC_BASED_CONTROLS",)
_UG = ("PRIMARY_PROC_BASED_CONTROLS", "SECONDARY_PROC_BASED_CONTROLS")     # "unrestricted guest"
_EPT = _UG                                                                 # "enable EPT"
_ENTRY = ("VM_ENTRY_CONTROLS",)           # "IA-32e mode guest", "load debug controls/IA32_PAT/IA32_EFER"
_EXIT = ("VM_EXIT_CONTROLS",)
_V86 = (("GUEST_RFLAGS", RFLAGS_VM),)     # the segment checks differ in virtual-8086 mode
_INFO = ("VM_ENTRY_INTERRUPTION_INFO",)


def _g(seg, *kinds):
    return tuple(f"GUEST_{seg}_{k}" for k in kinds)


def _ar(seg, bits=None):
    name = f"GUEST_{seg}_ACCESS_RIGHTS"
    return (name,) if bits is None else ((name, bits),)


INPUTS = {
    # 27.2.1.1
    "PIN_BASED_CONTROLS": ("PIN_BASED_CONTROLS",),
    "PRIMARY_PROC_BASED_CONTROLS": _PROC,
    "SECONDARY_PROC_BASED_CONTROLS": _UG,
    "CR3_TARGET_COUNT": ("CR3_TARGET_COUNT",),
    "IO_BITMAP_A_ALIGNMENT": _PROC + ("IO_BITMAP_A",),
    "IO_BITMAP_B_ALIGNMENT": _PROC + ("IO_BITMAP_B",),
    "IO_BITMAP_A_WIDTH": _PROC + ("IO_BITMAP_A",),
    "IO_BITMAP_B_WIDTH": _PROC + ("IO_BITMAP_B",),
    "MSR_BITMAP_ALIGNMENT": _PROC + ("MSR_BITMAP",),
    "MSR_BITMAP_WIDTH": _PROC + ("MSR_BITMAP",),
    "VIRTUAL_APIC_ADDRESS_ALIGNMENT": _PROC + (("VIRTUAL_APIC_ADDRESS", 0xFFF),),
    "VIRTUAL_APIC_ADDRESS_WIDTH": _PROC + ("VIRTUAL_APIC_ADDRESS",),
    "TPR_THRESHOLD_RESERVED_BITS": _UG + ("TPR_THRESHOLD",),
    # Also VTPR, in the virtual-APIC page, which the guest and vm.write
    # change without a VMCS write: in ALWAYS.
    "TPR_THRESHOLD_VTPR": _UG + ("TPR_THRESHOLD", "VIRTUAL_APIC_ADDRESS"),
    "APIC_VIRTUALIZATION_NEEDS_TPR_SHADOW": _UG,
    "VIRTUALIZE_X2APIC_MODE_EXCLUSIVE": _UG,
    "VIRTUAL_INTERRUPT_DELIVERY_NEEDS_EXTERNAL_INTERRUPT_EXITING": ("PIN_BASED_CONTROLS",) + _UG,
    "POSTED_INTERRUPTS_NEED_VIRTUAL_INTERRUPT_DELIVERY": ("PIN_BASED_CONTROLS",) + _UG,
    "POSTED_INTERRUPTS_NEED_ACKNOWLEDGE_ON_EXIT": ("PIN_BASED_CONTROLS",) + _EXIT,
    "POSTED_INTERRUPT_NOTIFICATION_VECTOR": ("PIN_BASED_CONTROLS", "POSTED_INTERRUPT_NOTIFICATION_VECTOR"),
    "POSTED_INTERRUPT_DESCRIPTOR_ALIGNMENT": ("PIN_BASED_CONTROLS", ("POSTED_INTERRUPT_DESCRIPTOR_ADDRESS", 0x3F)),
    "POSTED_INTERRUPT_DESCRIPTOR_WIDTH": ("PIN_BASED_CONTROLS", "POSTED_INTERRUPT_DESCRIPTOR_ADDRESS"),
    "VIRTUAL_NMIS": ("PIN_BASED_CONTROLS",),
    "NMI_WINDOW_EXITING": ("PIN_BASED_CONTROLS",) + _PROC,
    "APIC_ACCESS_ADDRESS_ALIGNMENT": _UG + (("APIC_ACCESS_ADDRESS", 0xFFF),),
    "APIC_ACCESS_ADDRESS_WIDTH": _UG + ("APIC_ACCESS_ADDRESS",),
    "VPID_NONZERO": _EPT + ("VIRTUAL_PROCESSOR_ID",),
    "EPT_POINTER_MEMORY_TYPE": _EPT + (("EPT_POINTER", 0x7),),
    "EPT_POINTER_WALK_LENGTH": _EPT + (("EPT_POINTER", 0x38),),
    "EPT_POINTER_SUPERVISOR_SHADOW_STACK": _EPT + (("EPT_POINTER", 0x80),),
    "EPT_POINTER_RESERVED_BITS": _EPT + (("EPT_POINTER", 0xF00),),
    # Every bit: a change of where EPT points must mark a check (vm_entry
    # then looks again whether the guest can reach the VMCS).
    "EPT_POINTER_WIDTH": _EPT + ("EPT_POINTER",),
    "PML_NEEDS_EPT": _UG,
    "PML_ADDRESS_ALIGNMENT": _UG + (("PML_ADDRESS", 0xFFF),),
    "PML_ADDRESS_WIDTH": _UG + ("PML_ADDRESS",),
    "UNRESTRICTED_GUEST_NEEDS_EPT": _UG,
    "VM_FUNCTION_CONTROLS": _UG + ("VM_FUNCTION_CONTROLS",),
    "EPTP_SWITCHING_NEEDS_EPT": _UG + (("VM_FUNCTION_CONTROLS", 1),),
    "EPTP_LIST_ADDRESS_ALIGNMENT": _UG + (("VM_FUNCTION_CONTROLS", 1), ("EPTP_LIST_ADDRESS", 0xFFF)),
    "EPTP_LIST_ADDRESS_WIDTH": _UG + (("VM_FUNCTION_CONTROLS", 1), "EPTP_LIST_ADDRESS"),
    "SUB_PAGE_WRITE_PERMISSIONS_NEED_EPT": _UG,
    "SPPTP_ALIGNMENT": _UG + (("SUB_PAGE_PERMISSION_TABLE_POINTER", 0xFFF),),
    "SPPTP_WIDTH": _UG + ("SUB_PAGE_PERMISSION_TABLE_POINTER",),
    # 27.2.1.2
    "VM_EXIT_CONTROLS": _EXIT,
    "VM_EXIT_SAVE_VMX_PREEMPTION_TIMER": ("PIN_BASED_CONTROLS",) + _EXIT,
    **{f"VM_EXIT_MSR_{k}_{c}": (f"VM_EXIT_MSR_{k}_COUNT", f"VM_EXIT_MSR_{k}_ADDRESS")
       for k in ("STORE", "LOAD") for c in ("ADDRESS_ALIGNMENT", "ADDRESS_WIDTH", "LAST_BYTE_WIDTH")},
    # 27.2.1.3
    "VM_ENTRY_CONTROLS": _ENTRY,
    "VM_ENTRY_INTERRUPTION_TYPE_RESERVED": (("VM_ENTRY_INTERRUPTION_INFO", 0x80000700),),
    "VM_ENTRY_INTERRUPTION_TYPE_OTHER_EVENT": (("VM_ENTRY_INTERRUPTION_INFO", 0x80000700),),
    "VM_ENTRY_INTERRUPTION_VECTOR_NMI": (("VM_ENTRY_INTERRUPTION_INFO", 0x800007FF),),
    "VM_ENTRY_INTERRUPTION_VECTOR_HARDWARE_EXCEPTION": (("VM_ENTRY_INTERRUPTION_INFO", 0x800007FF),),
    "VM_ENTRY_INTERRUPTION_VECTOR_OTHER_EVENT": (("VM_ENTRY_INTERRUPTION_INFO", 0x800007FF),),
    "VM_ENTRY_DELIVER_ERROR_CODE_REQUIRED": (("VM_ENTRY_INTERRUPTION_INFO", 0x80000FFF), ("GUEST_CR0", CR0_PE)) + _UG,
    "VM_ENTRY_DELIVER_ERROR_CODE_REAL_MODE": (("VM_ENTRY_INTERRUPTION_INFO", 0x80000800), ("GUEST_CR0", CR0_PE))
    + _UG,
    "VM_ENTRY_DELIVER_ERROR_CODE_TYPE": (("VM_ENTRY_INTERRUPTION_INFO", 0x80000F00),),
    "VM_ENTRY_DELIVER_ERROR_CODE_VECTOR": (("VM_ENTRY_INTERRUPTION_INFO", 0x80000FFF),),
    "VM_ENTRY_INTERRUPTION_INFO_RESERVED_BITS": (("VM_ENTRY_INTERRUPTION_INFO", 0xFFFFF000),),
    "VM_ENTRY_EXCEPTION_ERROR_CODE": (("VM_ENTRY_INTERRUPTION_INFO", 0x80000800), "VM_ENTRY_EXCEPTION_ERROR_CODE"),
    "VM_ENTRY_INSTRUCTION_LENGTH": (("VM_ENTRY_INTERRUPTION_INFO", 0x80000700), "VM_ENTRY_INSTRUCTION_LENGTH"),
    "VM_ENTRY_INSTRUCTION_LENGTH_ZERO": (("VM_ENTRY_INTERRUPTION_INFO", 0x80000700), "VM_ENTRY_INSTRUCTION_LENGTH"),
    "VM_ENTRY_MSR_LOAD_ADDRESS_ALIGNMENT": ("VM_ENTRY_MSR_LOAD_COUNT", ("VM_ENTRY_MSR_LOAD_ADDRESS", 0xF)),
    "VM_ENTRY_MSR_LOAD_ADDRESS_WIDTH": ("VM_ENTRY_MSR_LOAD_COUNT", "VM_ENTRY_MSR_LOAD_ADDRESS"),
    "VM_ENTRY_MSR_LOAD_LAST_BYTE_WIDTH": ("VM_ENTRY_MSR_LOAD_COUNT", "VM_ENTRY_MSR_LOAD_ADDRESS"),
    # 27.2.2
    "HOST_CR0": ("HOST_CR0",),
    "HOST_CR4": ("HOST_CR4",),
    "HOST_CR3": ("HOST_CR3",),
    "HOST_SYSENTER_ESP_CANONICAL": ("HOST_IA32_SYSENTER_ESP",),
    "HOST_SYSENTER_EIP_CANONICAL": ("HOST_IA32_SYSENTER_EIP",),
    **{f"HOST_IA32_PAT_PA{i}": _EXIT + (("HOST_IA32_PAT", 0xFF << (8 * i)),) for i in range(8)},
    "HOST_IA32_EFER_RESERVED_BITS": _EXIT + ("HOST_IA32_EFER",),
    "HOST_IA32_EFER_LMA": _EXIT + (("HOST_IA32_EFER", 1 << 10),),
    "HOST_IA32_EFER_LME": _EXIT + (("HOST_IA32_EFER", 1 << 8),),
    # 27.2.3
    **{f"HOST_{s}_SELECTOR_RPL": ((f"HOST_{s}_SELECTOR", 3),) for s in HOST_SELECTORS},
    **{f"HOST_{s}_SELECTOR_TI": ((f"HOST_{s}_SELECTOR", 4),) for s in HOST_SELECTORS},
    "HOST_CS_SELECTOR_NULL": ("HOST_CS_SELECTOR",),
    "HOST_TR_SELECTOR_NULL": ("HOST_TR_SELECTOR",),
    "HOST_SS_SELECTOR_NULL": _EXIT + ("HOST_SS_SELECTOR",),
    **{f"HOST_{r}_BASE_CANONICAL": (f"HOST_{r}_BASE",) for r in ("FS", "GS", "GDTR", "IDTR", "TR")},
    # 27.2.4 (also the processor's IA32_EFER.LMA for x86 host code, whose VMCS
    # is in RAM and checked in full at every entry)
    "IA32E_MODE_GUEST_OUTSIDE_IA32E": _ENTRY,
    "HOST_ADDRESS_SPACE_SIZE_OUTSIDE_IA32E": _EXIT,
    "HOST_ADDRESS_SPACE_SIZE_IN_IA32E": _EXIT,
    "HOST_CR4_PCIDE": _EXIT + (("HOST_CR4", CR4_PCIDE),),
    "HOST_RIP_HIGH_BITS": _EXIT + ("HOST_RIP",),
    "HOST_CR4_PAE": _EXIT + (("HOST_CR4", CR4_PAE),),
    "HOST_RIP_CANONICAL": _EXIT + ("HOST_RIP",),
    # 27.3.1.1
    "GUEST_CR0": ("GUEST_CR0",) + _UG,
    "GUEST_CR0_PG_WITHOUT_PE": (("GUEST_CR0", CR0_PE | CR0_PG),),
    "GUEST_CR4": ("GUEST_CR4",),
    "GUEST_IA32_DEBUGCTL": _ENTRY + ("GUEST_IA32_DEBUGCTL",),
    "GUEST_IA32E_MODE_CR0_PG": _ENTRY + (("GUEST_CR0", CR0_PG),),
    "GUEST_IA32E_MODE_CR4_PAE": _ENTRY + (("GUEST_CR4", CR4_PAE),),
    "GUEST_CR4_PCIDE": _ENTRY + (("GUEST_CR4", CR4_PCIDE),),
    "GUEST_CR3": ("GUEST_CR3",),
    "GUEST_DR7": _ENTRY + ("GUEST_DR7",),
    "GUEST_SYSENTER_ESP_CANONICAL": ("GUEST_IA32_SYSENTER_ESP",),
    "GUEST_SYSENTER_EIP_CANONICAL": ("GUEST_IA32_SYSENTER_EIP",),
    **{f"GUEST_IA32_PAT_PA{i}": _ENTRY + (("GUEST_IA32_PAT", 0xFF << (8 * i)),) for i in range(8)},
    "GUEST_IA32_EFER_RESERVED_BITS": _ENTRY + ("GUEST_IA32_EFER",),
    "GUEST_IA32_EFER_LMA": _ENTRY + (("GUEST_IA32_EFER", 1 << 10),),
    "GUEST_IA32_EFER_LME": _ENTRY + (("GUEST_IA32_EFER", (1 << 10) | (1 << 8)), ("GUEST_CR0", CR0_PG)),
    # 27.3.1.2
    "GUEST_TR_SELECTOR_TI": (("GUEST_TR_SELECTOR", 4),),
    "GUEST_LDTR_SELECTOR_TI": (("GUEST_LDTR_SELECTOR", 4),) + _ar("LDTR", AR_UNUSABLE),
    "GUEST_SS_SELECTOR_RPL": _V86 + _UG + (("GUEST_SS_SELECTOR", 3), ("GUEST_CS_SELECTOR", 3)),
    **{f"GUEST_{s}_BASE_V86": _V86 + _g(s, "SELECTOR", "BASE") for s in SDM_SEGMENTS},
    **{f"GUEST_{s}_BASE_CANONICAL": _g(s, "BASE") for s in ("TR", "FS", "GS")},
    "GUEST_LDTR_BASE_CANONICAL": _g("LDTR", "BASE") + _ar("LDTR", AR_UNUSABLE),
    "GUEST_CS_BASE_HIGH_BITS": (("GUEST_CS_BASE", 0xFFFFFFFF << 32),),
    **{f"GUEST_{s}_BASE_HIGH_BITS": ((f"GUEST_{s}_BASE", 0xFFFFFFFF << 32),) + _ar(s, AR_UNUSABLE)
       for s in ("SS", "DS", "ES")},
    **{f"GUEST_{s}_LIMIT_V86": _V86 + _g(s, "LIMIT") for s in SDM_SEGMENTS},
    **{f"GUEST_{s}_ACCESS_RIGHTS_V86": _V86 + _ar(s) for s in SDM_SEGMENTS},
    "GUEST_CS_TYPE": _V86 + _UG + _ar("CS", AR_TYPE),
    "GUEST_SS_TYPE": _V86 + _ar("SS", AR_TYPE | AR_UNUSABLE),
    **{f"GUEST_{s}_TYPE_ACCESSED": _V86 + _ar(s, 1 | AR_UNUSABLE) for s in _DATA},
    **{f"GUEST_{s}_TYPE_READABLE": _V86 + _ar(s, 0xA | AR_UNUSABLE) for s in _DATA},
    "GUEST_CS_S": _V86 + _ar("CS", AR_S),
    **{f"GUEST_{s}_S": _V86 + _ar(s, AR_S | AR_UNUSABLE) for s in SDM_SEGMENTS[1:]},
    "GUEST_CS_DPL_TYPE_3": _V86 + _ar("CS", AR_TYPE | AR_DPL),
    "GUEST_CS_DPL_NONCONFORMING": _V86 + _ar("CS", AR_TYPE | AR_DPL) + _ar("SS", AR_DPL),
    "GUEST_CS_DPL_CONFORMING": _V86 + _ar("CS", AR_TYPE | AR_DPL) + _ar("SS", AR_DPL),
    "GUEST_SS_DPL_RPL": _V86 + _UG + _ar("SS", AR_DPL) + (("GUEST_SS_SELECTOR", 3),),
    "GUEST_SS_DPL_ZERO": _V86 + _ar("CS", AR_TYPE) + _ar("SS", AR_DPL) + (("GUEST_CR0", CR0_PE),),
    **{f"GUEST_{s}_DPL_RPL": _V86 + _UG + _ar(s, AR_TYPE | AR_DPL | AR_UNUSABLE) + ((f"GUEST_{s}_SELECTOR", 3),)
       for s in _DATA},
    "GUEST_CS_P": _V86 + _ar("CS", AR_P),
    **{f"GUEST_{s}_P": _V86 + _ar(s, AR_P | AR_UNUSABLE) for s in SDM_SEGMENTS[1:]},
    "GUEST_CS_RESERVED_11_8": _V86 + _ar("CS", 0xF00),
    **{f"GUEST_{s}_RESERVED_11_8": _V86 + _ar(s, 0xF00 | AR_UNUSABLE) for s in SDM_SEGMENTS[1:]},
    "GUEST_CS_DB_WITH_L": _V86 + _ENTRY + _ar("CS", AR_L | AR_DB),
    "GUEST_CS_G_LIMIT_LOW": _V86 + _ar("CS", AR_G) + (("GUEST_CS_LIMIT", 0xFFF),),
    **{f"GUEST_{s}_G_LIMIT_LOW": _V86 + _ar(s, AR_G | AR_UNUSABLE) + ((f"GUEST_{s}_LIMIT", 0xFFF),)
       for s in SDM_SEGMENTS[1:]},
    "GUEST_CS_G_LIMIT_HIGH": _V86 + _ar("CS", AR_G) + (("GUEST_CS_LIMIT", 0xFFF00000),),
    **{f"GUEST_{s}_G_LIMIT_HIGH": _V86 + _ar(s, AR_G | AR_UNUSABLE) + ((f"GUEST_{s}_LIMIT", 0xFFF00000),)
       for s in SDM_SEGMENTS[1:]},
    "GUEST_CS_RESERVED_31_17": _V86 + _ar("CS", 0xFFFE0000),
    **{f"GUEST_{s}_RESERVED_31_17": _V86 + _ar(s, 0xFFFE0000 | AR_UNUSABLE) for s in SDM_SEGMENTS[1:]},
    "GUEST_TR_TYPE": _ENTRY + _ar("TR", AR_TYPE),
    "GUEST_TR_S": _ar("TR", AR_S),
    "GUEST_TR_P": _ar("TR", AR_P),
    "GUEST_TR_RESERVED_11_8": _ar("TR", 0xF00),
    "GUEST_TR_G_LIMIT_LOW": _ar("TR", AR_G) + (("GUEST_TR_LIMIT", 0xFFF),),
    "GUEST_TR_G_LIMIT_HIGH": _ar("TR", AR_G) + (("GUEST_TR_LIMIT", 0xFFF00000),),
    "GUEST_TR_UNUSABLE": _ar("TR", AR_UNUSABLE),
    "GUEST_TR_RESERVED_31_17": _ar("TR", 0xFFFE0000),
    "GUEST_LDTR_TYPE": _ar("LDTR", AR_TYPE | AR_UNUSABLE),
    "GUEST_LDTR_S": _ar("LDTR", AR_S | AR_UNUSABLE),
    "GUEST_LDTR_P": _ar("LDTR", AR_P | AR_UNUSABLE),
    "GUEST_LDTR_RESERVED_11_8": _ar("LDTR", 0xF00 | AR_UNUSABLE),
    "GUEST_LDTR_G_LIMIT_LOW": _ar("LDTR", AR_G | AR_UNUSABLE) + (("GUEST_LDTR_LIMIT", 0xFFF),),
    "GUEST_LDTR_G_LIMIT_HIGH": _ar("LDTR", AR_G | AR_UNUSABLE) + (("GUEST_LDTR_LIMIT", 0xFFF00000),),
    "GUEST_LDTR_RESERVED_31_17": _ar("LDTR", 0xFFFF0000),
    # 27.3.1.3
    "GUEST_GDTR_BASE_CANONICAL": ("GUEST_GDTR_BASE",),
    "GUEST_IDTR_BASE_CANONICAL": ("GUEST_IDTR_BASE",),
    "GUEST_GDTR_LIMIT": (("GUEST_GDTR_LIMIT", 0xFFFF0000),),
    "GUEST_IDTR_LIMIT": (("GUEST_IDTR_LIMIT", 0xFFFF0000),),
    # 27.3.1.4
    "GUEST_RIP_HIGH_BITS": _ENTRY + (("GUEST_RIP", 0xFFFFFFFF << 32),) + _ar("CS", AR_L),
    "GUEST_RIP_CANONICAL": _ENTRY + ("GUEST_RIP",) + _ar("CS", AR_L),
    "GUEST_RFLAGS_RESERVED_BITS": (("GUEST_RFLAGS", RFLAGS_RESERVED),),
    "GUEST_RFLAGS_BIT_1": (("GUEST_RFLAGS", 2),),
    "GUEST_RFLAGS_VM_IA32E": _ENTRY + (("GUEST_RFLAGS", RFLAGS_VM),),
    "GUEST_RFLAGS_VM_CR0_PE": (("GUEST_RFLAGS", RFLAGS_VM), ("GUEST_CR0", CR0_PE)),
    "GUEST_RFLAGS_IF": (("GUEST_RFLAGS", RFLAGS_IF), ("VM_ENTRY_INTERRUPTION_INFO", 0x80000700)),
    # 27.3.1.5
    "GUEST_ACTIVITY_STATE_RANGE": ("GUEST_ACTIVITY_STATE",),
    "GUEST_ACTIVITY_STATE_HLT_SS_DPL": ("GUEST_ACTIVITY_STATE",) + _ar("SS", AR_DPL),
    "GUEST_ACTIVITY_STATE_BLOCKING": ("GUEST_ACTIVITY_STATE", ("GUEST_INTERRUPTIBILITY_STATE", 3)),
    "GUEST_ACTIVITY_STATE_HLT_INJECTION": ("GUEST_ACTIVITY_STATE", ("VM_ENTRY_INTERRUPTION_INFO", 0x800007FF)),
    "GUEST_INTERRUPTIBILITY_RESERVED_BITS": (("GUEST_INTERRUPTIBILITY_STATE", 0xFFFFFFE0),),
    "GUEST_INTERRUPTIBILITY_STI_AND_MOV_SS": (("GUEST_INTERRUPTIBILITY_STATE", 3),),
    "GUEST_INTERRUPTIBILITY_STI_IF": (("GUEST_INTERRUPTIBILITY_STATE", 1), ("GUEST_RFLAGS", RFLAGS_IF)),
    "GUEST_INTERRUPTIBILITY_STI_EXTERNAL_INTERRUPT": (("GUEST_INTERRUPTIBILITY_STATE", 1),
                                                      ("VM_ENTRY_INTERRUPTION_INFO", 0x80000700)),
    "GUEST_INTERRUPTIBILITY_MOV_SS_EXTERNAL_INTERRUPT": (("GUEST_INTERRUPTIBILITY_STATE", 2),
                                                         ("VM_ENTRY_INTERRUPTION_INFO", 0x80000700)),
    "GUEST_INTERRUPTIBILITY_MOV_SS_NMI": (("GUEST_INTERRUPTIBILITY_STATE", 2),
                                          ("VM_ENTRY_INTERRUPTION_INFO", 0x80000700)),
    "GUEST_INTERRUPTIBILITY_SMI": (("GUEST_INTERRUPTIBILITY_STATE", 4),),
    "GUEST_INTERRUPTIBILITY_NMI_VIRTUAL_NMIS": ("PIN_BASED_CONTROLS", ("GUEST_INTERRUPTIBILITY_STATE", 8),
                                                ("VM_ENTRY_INTERRUPTION_INFO", 0x80000700)),
    "GUEST_INTERRUPTIBILITY_ENCLAVE": (("GUEST_INTERRUPTIBILITY_STATE", 0x10),),
    "GUEST_PENDING_DEBUG_RESERVED_BITS": (("GUEST_PENDING_DEBUG_EXCEPTIONS", ~0x1500F & ((1 << 64) - 1)),),
    "GUEST_PENDING_DEBUG_BS_SET": (("GUEST_PENDING_DEBUG_EXCEPTIONS", 1 << 14), ("GUEST_INTERRUPTIBILITY_STATE", 3),
                                   "GUEST_ACTIVITY_STATE", ("GUEST_RFLAGS", RFLAGS_TF),
                                   ("GUEST_IA32_DEBUGCTL", 2)),
    "GUEST_PENDING_DEBUG_BS_CLEAR": (("GUEST_PENDING_DEBUG_EXCEPTIONS", 1 << 14),
                                     ("GUEST_INTERRUPTIBILITY_STATE", 3), "GUEST_ACTIVITY_STATE",
                                     ("GUEST_RFLAGS", RFLAGS_TF), ("GUEST_IA32_DEBUGCTL", 2)),
    "GUEST_PENDING_DEBUG_RTM_BITS_11_0": (("GUEST_PENDING_DEBUG_EXCEPTIONS", 0x10FFF),),
    "GUEST_PENDING_DEBUG_RTM_BITS_15_13": (("GUEST_PENDING_DEBUG_EXCEPTIONS", 0x1E000),),
    "GUEST_PENDING_DEBUG_RTM_BIT_12": (("GUEST_PENDING_DEBUG_EXCEPTIONS", 0x11000),),
    "GUEST_PENDING_DEBUG_RTM_SUPPORT": (("GUEST_PENDING_DEBUG_EXCEPTIONS", 0x10000),),
    "GUEST_VMCS_LINK_POINTER_ALIGNMENT": ("VMCS_LINK_POINTER",),
    "GUEST_VMCS_LINK_POINTER_WIDTH": ("VMCS_LINK_POINTER",),
    # The two below read the memory the link pointer references, which
    # changes without a VMCS write: in ALWAYS.
    "GUEST_VMCS_LINK_POINTER_REVISION": ("VMCS_LINK_POINTER",),
    "GUEST_VMCS_LINK_POINTER_SHADOW": ("VMCS_LINK_POINTER",) + _UG,
    # (also the current-VMCS pointer: a VMPTRLD marks every check)
    "GUEST_VMCS_LINK_POINTER_CURRENT_VMCS": ("VMCS_LINK_POINTER",),
    # 27.3.1.6: also the guest's memory (the PDPTEs that CR3 points to without
    # EPT), which the guest and vm.write change without any VMCS write, so
    # the checks are in ALWAYS; their inputs are listed for the documentation.
    **{f"GUEST_PDPTE{i}": _EPT + _ENTRY + (("GUEST_CR0", CR0_PG), ("GUEST_CR4", CR4_PAE), "GUEST_CR3",
                                           f"GUEST_PDPTE{i}") for i in range(4)},
    # 27.4: the area's contents, in memory (the core runs these while loading,
    # at every entry, not among the checks of 27.2 and 27.3).
    **{name: ("VM_ENTRY_MSR_LOAD_COUNT", "VM_ENTRY_MSR_LOAD_ADDRESS") for name, area, *_ in ENTRY_CHECKS
       if area == MSR},
}

#: Checks that read something besides VMCS fields: re-run at every VM entry.
ALWAYS = ("TPR_THRESHOLD_VTPR", "GUEST_VMCS_LINK_POINTER_REVISION", "GUEST_VMCS_LINK_POINTER_SHADOW") + \
    tuple(f"GUEST_PDPTE{i}" for i in range(4)) + tuple(name for name, area, *_ in ENTRY_CHECKS if area == MSR)

assert set(INPUTS) == {row[0] for row in ENTRY_CHECKS}, set(INPUTS) ^ {row[0] for row in ENTRY_CHECKS}
INPUTS = {row[0]: INPUTS[row[0]] for row in ENTRY_CHECKS}
