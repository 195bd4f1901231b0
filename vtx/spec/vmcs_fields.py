"""Every VMCS component, by its VMREAD/VMWRITE encoding (Intel SDM Vol. 3D, Appendix B).

This table is the one place where VMCS encodings are typed.  Each row is
``(name, encoding, description)``; ``encoding`` is the *full* encoding.  A
64-bit field also has an access-type-high encoding (``encoding | 1``) that
reads or writes its upper 32 bits; it is derived, never listed.

Everything else about a field comes from the bits of its encoding (SDM Vol. 3C,
"VMREAD, VMWRITE, and Encodings of VMCS Fields"):

======  =====================================================================
bits    meaning
======  =====================================================================
0       access type: 0 full, 1 high (64-bit fields only)
9:1     index, which tells apart fields of the same width and type
11:10   type: 0 control, 1 read-only data (VM-exit information), 2 guest
        state, 3 host state
12      reserved (0)
14:13   width: 0 16-bit, 1 64-bit, 2 32-bit, 3 natural width
31:15   reserved (0)
======  =====================================================================

The VMCS region layout used by the model (docs/architecture.rst, decision 7) is derived
here too, by :func:`compute_layout`.

The FRED rows (``INJECTED_EVENT_DATA``, ``ORIGINAL_EVENT_DATA``, the
``*_IA32_FRED_*`` state) come from Intel's FRED architecture specification,
which adds them to the Appendix B encoding space.
"""

from enum import IntEnum

__all__ = [
    "FIELDS",
    "FieldType",
    "FieldWidth",
    "access_is_high",
    "field_index",
    "field_type",
    "field_width",
    "width_bits",
    "width_bytes",
    "is_valid_encoding",
    "VMCS_REGION_SIZE",
    "OFF_REVISION",
    "OFF_ABORT",
    "OFF_LAUNCH_STATE",
    "OFF_LAUNCH_EPOCH",
    "FEATURE",
    "FIELDS_START",
    "SHADOW_VMCS_INDICATOR",
    "Layout",
    "compute_layout",
]


class FieldWidth(IntEnum):
    """Bits 14:13 of an encoding."""

    BITS16 = 0
    BITS64 = 1
    BITS32 = 2
    NATURAL = 3


class FieldType(IntEnum):
    """Bits 11:10 of an encoding."""

    CONTROL = 0
    READ_ONLY = 1  # read-only data: the VM-exit information fields
    GUEST = 2
    HOST = 3


#: Bits of an encoding that must be 0 in every valid encoding (bit 12, bits 31:15).
RESERVED_ENCODING_BITS = 0xFFFF_8000 | (1 << 12)


def access_is_high(enc):
    """True for the access-type-high encoding of a 64-bit field (bit 0)."""
    return bool(enc & 1)


def field_index(enc):
    """Bits 9:1: the field's index within its (width, type) group."""
    return (enc >> 1) & 0x1FF


def field_type(enc):
    """Bits 11:10 as a :class:`FieldType`."""
    return FieldType((enc >> 10) & 3)


def field_width(enc):
    """Bits 14:13 as a :class:`FieldWidth`."""
    return FieldWidth((enc >> 13) & 3)


#: Number of bits each width holds in this (64-bit) model; natural width is 64.
_WIDTH_BITS = {
    FieldWidth.BITS16: 16,
    FieldWidth.BITS32: 32,
    FieldWidth.BITS64: 64,
    FieldWidth.NATURAL: 64,
}


def width_bits(width):
    """Bits a field of ``width`` holds (natural width is 64 on this model)."""
    return _WIDTH_BITS[FieldWidth(width)]


def width_bytes(width):
    """Bytes a field of ``width`` takes in the VMCS region (2, 4, 8 or 8)."""
    return _WIDTH_BITS[FieldWidth(width)] // 8


def is_valid_encoding(enc):
    """True if ``enc`` is well formed: no reserved bit set, high access only on 64-bit."""
    if enc < 0 or enc & RESERVED_ENCODING_BITS:
        return False
    if access_is_high(enc) and field_width(enc) != FieldWidth.BITS64:
        return False
    return True


# ---------------------------------------------------------------------------
# The table.  Order follows Appendix B: by width (16, 64, 32, natural), then by
# type (control, read-only, guest, host), then by index.
# ---------------------------------------------------------------------------

_SEGS = ("ES", "CS", "SS", "DS", "FS", "GS", "LDTR", "TR")
_HOST_SEGS = ("ES", "CS", "SS", "DS", "FS", "GS", "TR")

FIELDS = (
    # --- B.1.1 16-bit control fields -------------------------------------
    ("VIRTUAL_PROCESSOR_ID", 0x0000, "Virtual-processor identifier (VPID) tagging the guest's TLB entries"),
    ("POSTED_INTERRUPT_NOTIFICATION_VECTOR", 0x0002, "Vector that signals posted interrupts to a guest"),
    ("EPTP_INDEX", 0x0004, "Index of the current EPTP in the EPTP list (EPT-violation #VE)"),
    ("HLAT_PREFIX_SIZE", 0x0006, "Number of upper linear-address bits that select HLAT paging"),
    ("LAST_PID_POINTER_INDEX", 0x0008, "Last valid index in the PID-pointer table (IPI virtualization)"),
    # --- B.1.2 16-bit guest-state fields ---------------------------------
    *((f"GUEST_{s}_SELECTOR", 0x0800 + 2 * i, f"Guest {s} segment selector") for i, s in enumerate(_SEGS)),
    ("GUEST_INTERRUPT_STATUS", 0x0810, "Guest interrupt status: RVI (low byte) and SVI (high byte)"),
    ("PML_INDEX", 0x0812, "Index of the next entry to write in the page-modification log"),
    ("GUEST_UINV", 0x0814, "Guest user-interrupt notification vector"),
    # --- B.1.3 16-bit host-state fields ----------------------------------
    *((f"HOST_{s}_SELECTOR", 0x0C00 + 2 * i, f"Host {s} segment selector loaded on VM exit")
      for i, s in enumerate(_HOST_SEGS)),
    # --- B.2.1 64-bit control fields -------------------------------------
    ("IO_BITMAP_A", 0x2000, "Physical address of I/O bitmap A (ports 0000h-7FFFh)"),
    ("IO_BITMAP_B", 0x2002, "Physical address of I/O bitmap B (ports 8000h-FFFFh)"),
    ("MSR_BITMAP", 0x2004, "Physical address of the 4 KiB MSR bitmaps"),
    ("VM_EXIT_MSR_STORE_ADDRESS", 0x2006, "Physical address of the VM-exit MSR-store area"),
    ("VM_EXIT_MSR_LOAD_ADDRESS", 0x2008, "Physical address of the VM-exit MSR-load area"),
    ("VM_ENTRY_MSR_LOAD_ADDRESS", 0x200A, "Physical address of the VM-entry MSR-load area"),
    ("EXECUTIVE_VMCS_POINTER", 0x200C, "Executive-VMCS pointer (dual-monitor treatment of SMIs and SMM)"),
    ("PML_ADDRESS", 0x200E, "Physical address of the page-modification log"),
    ("TSC_OFFSET", 0x2010, "Value added to the TSC as the guest reads it"),
    ("VIRTUAL_APIC_ADDRESS", 0x2012, "Physical address of the virtual-APIC page"),
    ("APIC_ACCESS_ADDRESS", 0x2014, "Physical address of the APIC-access page"),
    ("POSTED_INTERRUPT_DESCRIPTOR_ADDRESS", 0x2016, "Physical address of the posted-interrupt descriptor"),
    ("VM_FUNCTION_CONTROLS", 0x2018, "Bit mask of the VM functions VMFUNC may invoke"),
    ("EPT_POINTER", 0x201A, "EPT pointer (EPTP): root of the EPT paging structures and their attributes"),
    *((f"EOI_EXIT_BITMAP_{i}", 0x201C + 2 * i, f"EOI-exit bitmap {i} (vectors {64 * i}-{64 * i + 63})")
      for i in range(4)),
    ("EPTP_LIST_ADDRESS", 0x2024, "Physical address of the EPTP list (EPTP switching)"),
    ("VMREAD_BITMAP_ADDRESS", 0x2026, "Physical address of the VMREAD bitmap (VMCS shadowing)"),
    ("VMWRITE_BITMAP_ADDRESS", 0x2028, "Physical address of the VMWRITE bitmap (VMCS shadowing)"),
    ("VIRTUALIZATION_EXCEPTION_INFORMATION_ADDRESS", 0x202A,
     "Physical address of the virtualization-exception (#VE) information area"),
    ("XSS_EXITING_BITMAP", 0x202C, "IA32_XSS bits that make XSAVES/XRSTORS exit"),
    ("ENCLS_EXITING_BITMAP", 0x202E, "ENCLS leaf functions that cause VM exits"),
    ("SUB_PAGE_PERMISSION_TABLE_POINTER", 0x2030, "Physical address of the sub-page permission table"),
    ("TSC_MULTIPLIER", 0x2032, "TSC multiplier used by TSC scaling"),
    ("TERTIARY_PROC_BASED_CONTROLS", 0x2034, "Tertiary processor-based VM-execution controls"),
    ("ENCLV_EXITING_BITMAP", 0x2036, "ENCLV leaf functions that cause VM exits"),
    ("LOW_PASID_DIRECTORY_ADDRESS", 0x2038, "Physical address of the low PASID directory (PASID translation)"),
    ("HIGH_PASID_DIRECTORY_ADDRESS", 0x203A, "Physical address of the high PASID directory (PASID translation)"),
    ("SHARED_EPT_POINTER", 0x203C, "Shared-EPT pointer (used by TDX)"),
    ("PCONFIG_EXITING_BITMAP", 0x203E, "PCONFIG leaf functions that cause VM exits"),
    ("HLAT_POINTER", 0x2040, "Hypervisor-managed linear-address translation pointer (HLATP)"),
    ("PID_POINTER_TABLE_ADDRESS", 0x2042, "Physical address of the PID-pointer table (IPI virtualization)"),
    ("SECONDARY_VM_EXIT_CONTROLS", 0x2044, "Secondary VM-exit controls"),
    ("IA32_SPEC_CTRL_MASK", 0x204A, "IA32_SPEC_CTRL bits the guest may not change (virtualized SPEC_CTRL)"),
    ("IA32_SPEC_CTRL_SHADOW", 0x204C, "Value the guest reads from IA32_SPEC_CTRL (virtualized SPEC_CTRL)"),
    ("INJECTED_EVENT_DATA", 0x2052, "Event data delivered with an injected event (FRED)"),
    # --- B.2.2 64-bit read-only data fields -------------------------------
    ("GUEST_PHYSICAL_ADDRESS", 0x2400, "Guest-physical address of an EPT violation or misconfiguration"),
    ("ORIGINAL_EVENT_DATA", 0x2404, "Event data of the event whose delivery was interrupted (FRED)"),
    # --- B.2.3 64-bit guest-state fields ---------------------------------
    ("VMCS_LINK_POINTER", 0x2800, "VMCS link pointer (all ones unless VMCS shadowing is used)"),
    ("GUEST_IA32_DEBUGCTL", 0x2802, "Guest IA32_DEBUGCTL MSR"),
    ("GUEST_IA32_PAT", 0x2804, "Guest IA32_PAT MSR"),
    ("GUEST_IA32_EFER", 0x2806, "Guest IA32_EFER MSR"),
    ("GUEST_IA32_PERF_GLOBAL_CTRL", 0x2808, "Guest IA32_PERF_GLOBAL_CTRL MSR"),
    *((f"GUEST_PDPTE{i}", 0x280A + 2 * i, f"Guest PAE page-directory-pointer-table entry {i}") for i in range(4)),
    ("GUEST_IA32_BNDCFGS", 0x2812, "Guest IA32_BNDCFGS MSR (MPX)"),
    ("GUEST_IA32_RTIT_CTL", 0x2814, "Guest IA32_RTIT_CTL MSR (Intel PT)"),
    ("GUEST_IA32_LBR_CTL", 0x2816, "Guest IA32_LBR_CTL MSR (architectural LBRs)"),
    ("GUEST_IA32_PKRS", 0x2818, "Guest IA32_PKRS MSR (supervisor protection keys)"),
    ("GUEST_IA32_FRED_CONFIG", 0x281A, "Guest IA32_FRED_CONFIG MSR"),
    *((f"GUEST_IA32_FRED_RSP{i}", 0x281A + 2 * i, f"Guest IA32_FRED_RSP{i} MSR") for i in (1, 2, 3)),
    ("GUEST_IA32_FRED_STKLVLS", 0x2822, "Guest IA32_FRED_STKLVLS MSR"),
    *((f"GUEST_IA32_FRED_SSP{i}", 0x2822 + 2 * i, f"Guest IA32_FRED_SSP{i} MSR") for i in (1, 2, 3)),
    # --- B.2.4 64-bit host-state fields ----------------------------------
    ("HOST_IA32_PAT", 0x2C00, "Host IA32_PAT MSR loaded on VM exit"),
    ("HOST_IA32_EFER", 0x2C02, "Host IA32_EFER MSR loaded on VM exit"),
    ("HOST_IA32_PERF_GLOBAL_CTRL", 0x2C04, "Host IA32_PERF_GLOBAL_CTRL MSR loaded on VM exit"),
    ("HOST_IA32_PKRS", 0x2C06, "Host IA32_PKRS MSR loaded on VM exit"),
    ("HOST_IA32_FRED_CONFIG", 0x2C08, "Host IA32_FRED_CONFIG MSR loaded on VM exit"),
    *((f"HOST_IA32_FRED_RSP{i}", 0x2C08 + 2 * i, f"Host IA32_FRED_RSP{i} MSR loaded on VM exit") for i in (1, 2, 3)),
    ("HOST_IA32_FRED_STKLVLS", 0x2C10, "Host IA32_FRED_STKLVLS MSR loaded on VM exit"),
    *((f"HOST_IA32_FRED_SSP{i}", 0x2C10 + 2 * i, f"Host IA32_FRED_SSP{i} MSR loaded on VM exit") for i in (1, 2, 3)),
    # --- B.3.1 32-bit control fields -------------------------------------
    ("PIN_BASED_CONTROLS", 0x4000, "Pin-based VM-execution controls"),
    ("PRIMARY_PROC_BASED_CONTROLS", 0x4002, "Primary processor-based VM-execution controls"),
    ("EXCEPTION_BITMAP", 0x4004, "One bit per exception vector: 1 makes that exception exit"),
    ("PAGE_FAULT_ERROR_CODE_MASK", 0x4006, "Mask applied to a #PF error code before the match test"),
    ("PAGE_FAULT_ERROR_CODE_MATCH", 0x4008, "Value the masked #PF error code is compared with"),
    ("CR3_TARGET_COUNT", 0x400A, "Number of valid CR3-target values"),
    ("VM_EXIT_CONTROLS", 0x400C, "Primary VM-exit controls"),
    ("VM_EXIT_MSR_STORE_COUNT", 0x400E, "Number of MSRs stored on VM exit"),
    ("VM_EXIT_MSR_LOAD_COUNT", 0x4010, "Number of MSRs loaded on VM exit"),
    ("VM_ENTRY_CONTROLS", 0x4012, "VM-entry controls"),
    ("VM_ENTRY_MSR_LOAD_COUNT", 0x4014, "Number of MSRs loaded on VM entry"),
    ("VM_ENTRY_INTERRUPTION_INFO", 0x4016, "VM-entry interruption-information field (event injection)"),
    ("VM_ENTRY_EXCEPTION_ERROR_CODE", 0x4018, "Error code delivered with an injected exception"),
    ("VM_ENTRY_INSTRUCTION_LENGTH", 0x401A, "Instruction length for an injected software event"),
    ("TPR_THRESHOLD", 0x401C, "TPR threshold (use TPR shadow)"),
    ("SECONDARY_PROC_BASED_CONTROLS", 0x401E, "Secondary processor-based VM-execution controls"),
    ("PLE_GAP", 0x4020, "PAUSE-loop exiting: largest gap between two PAUSEs of one loop"),
    ("PLE_WINDOW", 0x4022, "PAUSE-loop exiting: longest a loop may spin before it exits"),
    ("INSTRUCTION_TIMEOUT_CONTROL", 0x4024, "Instruction-timeout control (notify window)"),
    # --- B.3.2 32-bit read-only data fields ------------------------------
    ("VM_INSTRUCTION_ERROR", 0x4400, "Error number of the last failing VMX instruction (VMfailValid)"),
    ("EXIT_REASON", 0x4402, "Exit reason: basic reason in bits 15:0 plus flag bits"),
    ("VM_EXIT_INTERRUPTION_INFO", 0x4404, "Vectored event that caused the VM exit"),
    ("VM_EXIT_INTERRUPTION_ERROR_CODE", 0x4406, "Error code of the event that caused the VM exit"),
    ("IDT_VECTORING_INFO", 0x4408, "Event being delivered when the VM exit occurred"),
    ("IDT_VECTORING_ERROR_CODE", 0x440A, "Error code of the event being delivered"),
    ("VM_EXIT_INSTRUCTION_LENGTH", 0x440C, "Length of the instruction that caused the VM exit"),
    ("VM_EXIT_INSTRUCTION_INFO", 0x440E, "Operand details of the instruction that caused the VM exit"),
    # --- B.3.3 32-bit guest-state fields ---------------------------------
    *((f"GUEST_{s}_LIMIT", 0x4800 + 2 * i, f"Guest {s} segment limit") for i, s in enumerate(_SEGS)),
    ("GUEST_GDTR_LIMIT", 0x4810, "Guest GDTR limit"),
    ("GUEST_IDTR_LIMIT", 0x4812, "Guest IDTR limit"),
    *((f"GUEST_{s}_ACCESS_RIGHTS", 0x4814 + 2 * i, f"Guest {s} segment access rights")
      for i, s in enumerate(_SEGS)),
    ("GUEST_INTERRUPTIBILITY_STATE", 0x4824, "Guest interruptibility state (STI, MOV SS, SMI, NMI blocking)"),
    ("GUEST_ACTIVITY_STATE", 0x4826, "Guest activity state (active, HLT, shutdown, wait-for-SIPI)"),
    ("GUEST_SMBASE", 0x4828, "Guest SMBASE"),
    ("GUEST_IA32_SYSENTER_CS", 0x482A, "Guest IA32_SYSENTER_CS MSR"),
    ("VMX_PREEMPTION_TIMER_VALUE", 0x482E, "Current value of the VMX-preemption timer"),
    # --- B.3.4 32-bit host-state field -----------------------------------
    ("HOST_IA32_SYSENTER_CS", 0x4C00, "Host IA32_SYSENTER_CS MSR loaded on VM exit"),
    # --- B.4.1 natural-width control fields ------------------------------
    ("CR0_GUEST_HOST_MASK", 0x6000, "CR0 bits owned by the host: guest writes to them exit"),
    ("CR4_GUEST_HOST_MASK", 0x6002, "CR4 bits owned by the host: guest writes to them exit"),
    ("CR0_READ_SHADOW", 0x6004, "Value the guest reads for host-owned CR0 bits"),
    ("CR4_READ_SHADOW", 0x6006, "Value the guest reads for host-owned CR4 bits"),
    *((f"CR3_TARGET_VALUE_{i}", 0x6008 + 2 * i, f"CR3-target value {i}: MOV to CR3 with it does not exit")
      for i in range(4)),
    # --- B.4.2 natural-width read-only data fields -----------------------
    ("EXIT_QUALIFICATION", 0x6400, "Exit qualification: reason-specific details of the VM exit"),
    ("IO_RCX", 0x6402, "RCX before an I/O instruction right after which an SMI arrived"),
    ("IO_RSI", 0x6404, "RSI before an I/O instruction right after which an SMI arrived"),
    ("IO_RDI", 0x6406, "RDI before an I/O instruction right after which an SMI arrived"),
    ("IO_RIP", 0x6408, "RIP of an I/O instruction right after which an SMI arrived"),
    ("GUEST_LINEAR_ADDRESS", 0x640A, "Guest-linear address involved in the VM exit"),
    # --- B.4.3 natural-width guest-state fields --------------------------
    ("GUEST_CR0", 0x6800, "Guest CR0"),
    ("GUEST_CR3", 0x6802, "Guest CR3"),
    ("GUEST_CR4", 0x6804, "Guest CR4"),
    *((f"GUEST_{s}_BASE", 0x6806 + 2 * i, f"Guest {s} segment base address") for i, s in enumerate(_SEGS)),
    ("GUEST_GDTR_BASE", 0x6816, "Guest GDTR base address"),
    ("GUEST_IDTR_BASE", 0x6818, "Guest IDTR base address"),
    ("GUEST_DR7", 0x681A, "Guest DR7"),
    ("GUEST_RSP", 0x681C, "Guest RSP"),
    ("GUEST_RIP", 0x681E, "Guest RIP"),
    ("GUEST_RFLAGS", 0x6820, "Guest RFLAGS"),
    ("GUEST_PENDING_DEBUG_EXCEPTIONS", 0x6822, "Guest pending debug exceptions (DR6-like bits)"),
    ("GUEST_IA32_SYSENTER_ESP", 0x6824, "Guest IA32_SYSENTER_ESP MSR"),
    ("GUEST_IA32_SYSENTER_EIP", 0x6826, "Guest IA32_SYSENTER_EIP MSR"),
    ("GUEST_IA32_S_CET", 0x6828, "Guest IA32_S_CET MSR"),
    ("GUEST_SSP", 0x682A, "Guest shadow-stack pointer (SSP)"),
    ("GUEST_IA32_INTERRUPT_SSP_TABLE_ADDR", 0x682C, "Guest IA32_INTERRUPT_SSP_TABLE_ADDR MSR"),
    # --- B.4.4 natural-width host-state fields ---------------------------
    ("HOST_CR0", 0x6C00, "Host CR0 loaded on VM exit"),
    ("HOST_CR3", 0x6C02, "Host CR3 loaded on VM exit"),
    ("HOST_CR4", 0x6C04, "Host CR4 loaded on VM exit"),
    ("HOST_FS_BASE", 0x6C06, "Host FS base address loaded on VM exit"),
    ("HOST_GS_BASE", 0x6C08, "Host GS base address loaded on VM exit"),
    ("HOST_TR_BASE", 0x6C0A, "Host TR base address loaded on VM exit"),
    ("HOST_GDTR_BASE", 0x6C0C, "Host GDTR base address loaded on VM exit"),
    ("HOST_IDTR_BASE", 0x6C0E, "Host IDTR base address loaded on VM exit"),
    ("HOST_IA32_SYSENTER_ESP", 0x6C10, "Host IA32_SYSENTER_ESP MSR loaded on VM exit"),
    ("HOST_IA32_SYSENTER_EIP", 0x6C12, "Host IA32_SYSENTER_EIP MSR loaded on VM exit"),
    ("HOST_RSP", 0x6C14, "Host RSP loaded on VM exit"),
    ("HOST_RIP", 0x6C16, "Host RIP: where execution continues after a VM exit"),
    ("HOST_IA32_S_CET", 0x6C18, "Host IA32_S_CET MSR loaded on VM exit"),
    ("HOST_SSP", 0x6C1A, "Host shadow-stack pointer (SSP) loaded on VM exit"),
    ("HOST_IA32_INTERRUPT_SSP_TABLE_ADDR", 0x6C1C, "Host IA32_INTERRUPT_SSP_TABLE_ADDR MSR loaded on VM exit"),
)


# ---------------------------------------------------------------------------
# Which feature each field belongs to (SDM Vol. 3C 25.1 and Appendix B: "a
# processor that does not support a feature does not support the VMCS fields
# associated with it"; VMREAD and VMWRITE of such a field fail with
# VM-instruction error 12).  A field listed here exists in the model only if
# one of its controls (``"PREFIX.NAME"``, see controls.py) may be 1 in the
# capability MSRs; a string instead of a tuple names a feature the model has
# no control for and does not offer.  Fields not listed exist on every
# processor with VMX.
# ---------------------------------------------------------------------------

FEATURE = {
    "VIRTUAL_PROCESSOR_ID": ("PROC2.ENABLE_VPID",),
    "POSTED_INTERRUPT_NOTIFICATION_VECTOR": ("PIN.PROCESS_POSTED_INTERRUPTS",),
    "POSTED_INTERRUPT_DESCRIPTOR_ADDRESS": ("PIN.PROCESS_POSTED_INTERRUPTS",),
    "EPTP_INDEX": ("PROC2.EPT_VIOLATION_VE",),
    "VIRTUALIZATION_EXCEPTION_INFORMATION_ADDRESS": ("PROC2.EPT_VIOLATION_VE",),
    "HLAT_PREFIX_SIZE": ("PROC3.ENABLE_HLAT",),
    "HLAT_POINTER": ("PROC3.ENABLE_HLAT",),
    "LAST_PID_POINTER_INDEX": ("PROC3.IPI_VIRTUALIZATION",),
    "PID_POINTER_TABLE_ADDRESS": ("PROC3.IPI_VIRTUALIZATION",),
    "GUEST_INTERRUPT_STATUS": ("PROC2.VIRTUAL_INTERRUPT_DELIVERY",),
    "EOI_EXIT_BITMAP_0": ("PROC2.VIRTUAL_INTERRUPT_DELIVERY",),
    "EOI_EXIT_BITMAP_1": ("PROC2.VIRTUAL_INTERRUPT_DELIVERY",),
    "EOI_EXIT_BITMAP_2": ("PROC2.VIRTUAL_INTERRUPT_DELIVERY",),
    "EOI_EXIT_BITMAP_3": ("PROC2.VIRTUAL_INTERRUPT_DELIVERY",),
    "PML_INDEX": ("PROC2.ENABLE_PML",),
    "PML_ADDRESS": ("PROC2.ENABLE_PML",),
    "GUEST_UINV": ("ENTRY_CTL.LOAD_UINV", "EXIT_CTL.CLEAR_UINV"),
    "EXECUTIVE_VMCS_POINTER": "the dual-monitor treatment of SMIs and SMM",
    "VIRTUAL_APIC_ADDRESS": ("PROC.USE_TPR_SHADOW",),
    "TPR_THRESHOLD": ("PROC.USE_TPR_SHADOW",),
    "APIC_ACCESS_ADDRESS": ("PROC2.VIRTUALIZE_APIC_ACCESSES",),
    "VM_FUNCTION_CONTROLS": ("PROC2.ENABLE_VM_FUNCTIONS",),
    "EPTP_LIST_ADDRESS": ("PROC2.ENABLE_VM_FUNCTIONS",),
    "EPT_POINTER": ("PROC2.ENABLE_EPT",),
    "GUEST_PDPTE0": ("PROC2.ENABLE_EPT",),
    "GUEST_PDPTE1": ("PROC2.ENABLE_EPT",),
    "GUEST_PDPTE2": ("PROC2.ENABLE_EPT",),
    "GUEST_PDPTE3": ("PROC2.ENABLE_EPT",),
    "VMREAD_BITMAP_ADDRESS": ("PROC2.VMCS_SHADOWING",),
    "VMWRITE_BITMAP_ADDRESS": ("PROC2.VMCS_SHADOWING",),
    "XSS_EXITING_BITMAP": ("PROC2.ENABLE_XSAVES_XRSTORS",),
    "ENCLS_EXITING_BITMAP": ("PROC2.ENABLE_ENCLS_EXITING",),
    "ENCLV_EXITING_BITMAP": ("PROC2.ENABLE_ENCLV_EXITING",),
    "SUB_PAGE_PERMISSION_TABLE_POINTER": ("PROC2.SUB_PAGE_WRITE_PERMISSIONS",),
    "TSC_MULTIPLIER": ("PROC2.USE_TSC_SCALING",),
    "TERTIARY_PROC_BASED_CONTROLS": ("PROC.ACTIVATE_TERTIARY_CONTROLS",),
    "LOW_PASID_DIRECTORY_ADDRESS": ("PROC2.PASID_TRANSLATION",),
    "HIGH_PASID_DIRECTORY_ADDRESS": ("PROC2.PASID_TRANSLATION",),
    "SHARED_EPT_POINTER": "Intel TDX",
    "PCONFIG_EXITING_BITMAP": ("PROC2.ENABLE_PCONFIG",),
    "SECONDARY_VM_EXIT_CONTROLS": ("EXIT_CTL.ACTIVATE_SECONDARY_CONTROLS",),
    "IA32_SPEC_CTRL_MASK": ("PROC3.VIRTUALIZE_IA32_SPEC_CTRL",),
    "IA32_SPEC_CTRL_SHADOW": ("PROC3.VIRTUALIZE_IA32_SPEC_CTRL",),
    "INJECTED_EVENT_DATA": ("ENTRY_CTL.LOAD_IA32_FRED",),
    "ORIGINAL_EVENT_DATA": ("ENTRY_CTL.LOAD_IA32_FRED",),
    "GUEST_IA32_PERF_GLOBAL_CTRL": ("ENTRY_CTL.LOAD_IA32_PERF_GLOBAL_CTRL", "EXIT_CTL.SAVE_IA32_PERF_GLOBAL_CTRL"),
    "HOST_IA32_PERF_GLOBAL_CTRL": ("EXIT_CTL.LOAD_IA32_PERF_GLOBAL_CTRL",),
    "GUEST_IA32_BNDCFGS": ("ENTRY_CTL.LOAD_IA32_BNDCFGS", "EXIT_CTL.CLEAR_IA32_BNDCFGS"),
    "GUEST_IA32_RTIT_CTL": ("ENTRY_CTL.LOAD_IA32_RTIT_CTL", "EXIT_CTL.CLEAR_IA32_RTIT_CTL"),
    "GUEST_IA32_LBR_CTL": ("ENTRY_CTL.LOAD_IA32_LBR_CTL", "EXIT_CTL.CLEAR_IA32_LBR_CTL"),
    "GUEST_IA32_PKRS": ("ENTRY_CTL.LOAD_PKRS",),
    "HOST_IA32_PKRS": ("EXIT_CTL.LOAD_PKRS",),
    "GUEST_IA32_FRED_CONFIG": ("ENTRY_CTL.LOAD_IA32_FRED",),
    "GUEST_IA32_FRED_RSP1": ("ENTRY_CTL.LOAD_IA32_FRED",),
    "GUEST_IA32_FRED_RSP2": ("ENTRY_CTL.LOAD_IA32_FRED",),
    "GUEST_IA32_FRED_RSP3": ("ENTRY_CTL.LOAD_IA32_FRED",),
    "GUEST_IA32_FRED_STKLVLS": ("ENTRY_CTL.LOAD_IA32_FRED",),
    "GUEST_IA32_FRED_SSP1": ("ENTRY_CTL.LOAD_IA32_FRED",),
    "GUEST_IA32_FRED_SSP2": ("ENTRY_CTL.LOAD_IA32_FRED",),
    "GUEST_IA32_FRED_SSP3": ("ENTRY_CTL.LOAD_IA32_FRED",),
    "HOST_IA32_FRED_CONFIG": ("EXIT2_CTL.LOAD_IA32_FRED",),
    "HOST_IA32_FRED_RSP1": ("EXIT2_CTL.LOAD_IA32_FRED",),
    "HOST_IA32_FRED_RSP2": ("EXIT2_CTL.LOAD_IA32_FRED",),
    "HOST_IA32_FRED_RSP3": ("EXIT2_CTL.LOAD_IA32_FRED",),
    "HOST_IA32_FRED_STKLVLS": ("EXIT2_CTL.LOAD_IA32_FRED",),
    "HOST_IA32_FRED_SSP1": ("EXIT2_CTL.LOAD_IA32_FRED",),
    "HOST_IA32_FRED_SSP2": ("EXIT2_CTL.LOAD_IA32_FRED",),
    "HOST_IA32_FRED_SSP3": ("EXIT2_CTL.LOAD_IA32_FRED",),
    "GUEST_IA32_S_CET": ("ENTRY_CTL.LOAD_CET_STATE",),
    "GUEST_SSP": ("ENTRY_CTL.LOAD_CET_STATE",),
    "GUEST_IA32_INTERRUPT_SSP_TABLE_ADDR": ("ENTRY_CTL.LOAD_CET_STATE",),
    "HOST_IA32_S_CET": ("EXIT_CTL.LOAD_CET_STATE",),
    "HOST_SSP": ("EXIT_CTL.LOAD_CET_STATE",),
    "HOST_IA32_INTERRUPT_SSP_TABLE_ADDR": ("EXIT_CTL.LOAD_CET_STATE",),
    "PLE_GAP": ("PROC2.PAUSE_LOOP_EXITING",),
    "PLE_WINDOW": ("PROC2.PAUSE_LOOP_EXITING",),
    "INSTRUCTION_TIMEOUT_CONTROL": ("PROC2.INSTRUCTION_TIMEOUT",),
    "VMX_PREEMPTION_TIMER_VALUE": ("PIN.ACTIVATE_VMX_PREEMPTION_TIMER",),
}


# ---------------------------------------------------------------------------
# The VMCS region layout (docs/architecture.rst, decision 7).
# ---------------------------------------------------------------------------

VMCS_REGION_SIZE = 4096
#: Bytes 0-3: VMCS revision identifier in bits 30:0, shadow-VMCS indicator in bit 31.
OFF_REVISION = 0
#: Bytes 4-7: VMX-abort indicator.
OFF_ABORT = 4
#: Bytes 8-15 are the model's own; byte 8 holds the launch state (0 clear, 1 launched).
OFF_LAUNCH_STATE = 8
#: Bytes 12-15: which VMXON (counted from 1) the VMCS was launched under; a VMRESUME
#: under a later one fails with VM-instruction error 6 (VMRESUME after VMXOFF).
OFF_LAUNCH_EPOCH = 12
#: The field groups start here.
FIELDS_START = 16
#: Bit 31 of the revision dword marks a shadow VMCS.
SHADOW_VMCS_INDICATOR = 1 << 31

#: Group order in the region: width 16, 32, 64, natural; within a width, the types in order.
GROUP_WIDTH_ORDER = (FieldWidth.BITS16, FieldWidth.BITS32, FieldWidth.BITS64, FieldWidth.NATURAL)
GROUP_TYPE_ORDER = (FieldType.CONTROL, FieldType.READ_ONLY, FieldType.GUEST, FieldType.HOST)


class Layout:
    """Where each field lives in the 4 KiB VMCS region.

    ``groups`` is a tuple of ``(width, type, base, slots, size)`` in region
    order; ``offsets`` maps a field name to its byte offset; ``end`` is the
    first byte after the last group.
    """

    __slots__ = ("groups", "offsets", "end")

    def __init__(self, groups, offsets, end):
        self.groups = groups
        self.offsets = offsets
        self.end = end


def _align(value, to):
    return (value + to - 1) // to * to


def compute_layout(fields=FIELDS):
    """Lay the fields out: one group per (width, type), ``max index + 1`` slots each.

    Each group starts at the next multiple of its slot size, so every field is
    aligned to its size.  Raises AssertionError if the layout does not fit.
    """
    max_index = {}
    for _name, enc, _desc in fields:
        key = (field_width(enc), field_type(enc))
        max_index[key] = max(max_index.get(key, -1), field_index(enc))
    groups = []
    bases = {}
    pos = FIELDS_START
    for width in GROUP_WIDTH_ORDER:
        size = width_bytes(width)
        for ftype in GROUP_TYPE_ORDER:
            slots = max_index.get((width, ftype), -1) + 1
            if slots == 0:
                continue
            pos = _align(pos, size)
            bases[(width, ftype)] = pos
            groups.append((width, ftype, pos, slots, size))
            pos += slots * size
    offsets = {}
    for name, enc, _desc in fields:
        width = field_width(enc)
        size = width_bytes(width)
        off = bases[(width, field_type(enc))] + field_index(enc) * size
        assert off % size == 0, f"{name}: offset {off} not aligned to {size}"
        assert off + size <= VMCS_REGION_SIZE, f"{name}: offset {off} beyond the VMCS region"
        offsets[name] = off
    assert pos <= VMCS_REGION_SIZE, f"VMCS layout needs {pos} bytes, more than {VMCS_REGION_SIZE}"
    return Layout(tuple(groups), offsets, pos)
