# VM entry (SDM Vol. 3C chapter 27, edition 325462-080US): the checks on the
# controls, the host state and the guest state, one function per area in SDM
# order (decision 6), then loading the guest state.  Each check is one
# condition of the SDM; a failed check records its CK_* number (the table is
# vtx/spec/entry_checks.py) so the Python error can name it.
#
# Each check runs only if its bit is set in `d`, a set of checks (ck_mask_t):
# every check for VMLAUNCH and check_entry(), and for VMRESUME the checks
# whose inputs changed since the last successful VM entry (c.vmx.ck_dirty,
# kept by vwt and the API) plus CKM_ALWAYS.  The checks left out passed then
# and read the same values now, so the first failing check is the one the
# full pass would name (docs/architecture.rst, "Entry checks at VMRESUME").
# Values a check only uses to decide whether it applies (ug, ia32e, v86) are
# read unconditionally.  Where the SDM states one rule for several segment
# registers, the loop over them takes each register's check number from the
# family's array (CKS_*, generated from the table).

cdef inline int ctls_ok(uint32_t v, uint64_t cap) noexcept nogil:
    """A control word respects a capability MSR: allowed-0 settings in bits
    31:0 must be 1, allowed-1 settings in bits 63:32 bound what may be 1
    (SDM Vol. 3D A.3)."""
    cdef uint32_t must1 = <uint32_t>(cap & 0xFFFFFFFFULL)
    cdef uint32_t may1 = <uint32_t>(cap >> 32)
    return (v & must1) == must1 and (v & ~may1) == 0


cdef inline int phys_ok(uint64_t a) noexcept nogil:
    return (a >> MAXPHYADDR) == 0


cdef inline int fail(Cpu* c, int check, int rc) noexcept nogil:
    c.vmx.entry_check = check
    return rc


cdef inline int pat_entry_ok(uint64_t pat, int i) noexcept nogil:
    """Entry PAi of a PAT value is a memory type WRMSR accepts: 0 (UC), 1 (WC),
    4 (WT), 5 (WP), 6 (WB) or 7 (UC-) (SDM 27.2.2, 27.3.1.1)."""
    cdef uint32_t t = (pat >> (8 * i)) & 0xFF
    return t == 0 or t == 1 or (t >= 4 and t <= 7)


# Interruption types of the VM-entry interruption-information field (SDM
# Vol. 3C 25.8.3).
cdef enum:
    INTR_EXTERNAL = 0
    INTR_NMI = 2
    INTR_HW_EXCEPTION = 3
    INTR_SW_INTERRUPT = 4
    INTR_PRIV_SW_EXCEPTION = 5
    INTR_SW_EXCEPTION = 6
    INTR_OTHER_EVENT = 7
    # (INTR_INFO_VALID, bit 31, is core/vmx/events.pxi's)


cdef inline int vector_has_error_code(uint32_t vec) noexcept nogil:
    """#DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP push an error code."""
    return vec == 8 or (vec >= 10 and vec <= 14) or vec == 17 or vec == 21


cdef int eptp_failure(uint64_t eptp, const ck_mask_t* d) noexcept nogil:
    """The first EPTP condition of SDM 27.2.1.1 that `eptp` fails, among
    the checks in `d` (a CK_* number), or -1.  The one statement of what a
    valid EPTP is: VM entry, INVEPT and VMFUNC's EPTP switching ask here."""
    cdef uint64_t walk = (eptp >> 3) & 7
    # Memory types: UC (0) with IA32_VMX_EPT_VPID_CAP bit 8, WB (6) with
    # bit 14; walk lengths (bits 5:3 + 1): 4 with bit 6, 5 with bit 7.
    if ck_has(d, CK_EPT_POINTER_MEMORY_TYPE) and \
            not ((eptp & 7) == 0 and (VMX_CAP_EPT_VPID_CAP & (1ULL << 8))) and \
            not ((eptp & 7) == 6 and (VMX_CAP_EPT_VPID_CAP & (1ULL << 14))):
        return CK_EPT_POINTER_MEMORY_TYPE
    if ck_has(d, CK_EPT_POINTER_WALK_LENGTH) and \
            not (walk == 3 and (VMX_CAP_EPT_VPID_CAP & (1ULL << 6))) and \
            not (walk == 4 and (VMX_CAP_EPT_VPID_CAP & (1ULL << 7))):
        return CK_EPT_POINTER_WALK_LENGTH
    # EPTP bit 6 (accessed and dirty flags) is allowed: the model has them
    # (IA32_VMX_EPT_VPID_CAP bit 21).
    if ck_has(d, CK_EPT_POINTER_SUPERVISOR_SHADOW_STACK) and (eptp & 0x80) and \
            not (VMX_CAP_EPT_VPID_CAP & (1ULL << 23)):
        return CK_EPT_POINTER_SUPERVISOR_SHADOW_STACK
    if ck_has(d, CK_EPT_POINTER_RESERVED_BITS) and (eptp & 0xF00):
        return CK_EPT_POINTER_RESERVED_BITS
    if ck_has(d, CK_EPT_POINTER_WIDTH) and not phys_ok(eptp):
        return CK_EPT_POINTER_WIDTH
    return -1


cdef int check_controls(Cpu* c, const ck_mask_t* d) noexcept nogil:
    """SDM 27.2.1: VM-execution, VM-exit and VM-entry control fields (the
    checks in `d`)."""
    cdef uint32_t pin = <uint32_t>vr(c, VMCS_OFF_PIN_BASED_CONTROLS, 4)
    cdef uint32_t proc = <uint32_t>vr(c, VMCS_OFF_PRIMARY_PROC_BASED_CONTROLS, 4)
    cdef uint32_t proc2 = 0
    cdef uint32_t exitc = <uint32_t>vr(c, VMCS_OFF_VM_EXIT_CONTROLS, 4)
    cdef uint32_t entryc = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4)
    cdef uint64_t a, b
    cdef int ck
    cdef uint32_t info, itype, vec
    cdef int real_ug
    cdef uint8_t* p
    cdef int R = RC_ENTRY_FAIL_CTL
    if not ck_any(d, &CKM_CONTROL):
        return RC_OK
    # 27.2.1.1
    if ck_has(d, CK_PIN_BASED_CONTROLS) and not ctls_ok(pin, VMX_CAP_TRUE_PINBASED_CTLS):
        return fail(c, CK_PIN_BASED_CONTROLS, R)
    if ck_has(d, CK_PRIMARY_PROC_BASED_CONTROLS) and not ctls_ok(proc, VMX_CAP_TRUE_PROCBASED_CTLS):
        return fail(c, CK_PRIMARY_PROC_BASED_CONTROLS, R)
    # Without "activate secondary controls" the secondary controls count as 0
    # and are not checked.
    if proc & PROC_ACTIVATE_SECONDARY_CONTROLS:
        proc2 = <uint32_t>vr(c, VMCS_OFF_SECONDARY_PROC_BASED_CONTROLS, 4)
        if ck_has(d, CK_SECONDARY_PROC_BASED_CONTROLS) and not ctls_ok(proc2, VMX_CAP_PROCBASED_CTLS2):
            return fail(c, CK_SECONDARY_PROC_BASED_CONTROLS, R)
    if ck_has(d, CK_CR3_TARGET_COUNT) and \
            vr(c, VMCS_OFF_CR3_TARGET_COUNT, 4) > ((VMX_CAP_MISC >> 16) & 0x1FF):
        return fail(c, CK_CR3_TARGET_COUNT, R)
    if proc & PROC_USE_IO_BITMAPS:
        a = vr(c, VMCS_OFF_IO_BITMAP_A, 8)
        b = vr(c, VMCS_OFF_IO_BITMAP_B, 8)
        if ck_has(d, CK_IO_BITMAP_A_ALIGNMENT) and (a & 0xFFF):
            return fail(c, CK_IO_BITMAP_A_ALIGNMENT, R)
        if ck_has(d, CK_IO_BITMAP_B_ALIGNMENT) and (b & 0xFFF):
            return fail(c, CK_IO_BITMAP_B_ALIGNMENT, R)
        if ck_has(d, CK_IO_BITMAP_A_WIDTH) and not phys_ok(a):
            return fail(c, CK_IO_BITMAP_A_WIDTH, R)
        if ck_has(d, CK_IO_BITMAP_B_WIDTH) and not phys_ok(b):
            return fail(c, CK_IO_BITMAP_B_WIDTH, R)
    if proc & PROC_USE_MSR_BITMAPS:
        a = vr(c, VMCS_OFF_MSR_BITMAP, 8)
        if ck_has(d, CK_MSR_BITMAP_ALIGNMENT) and (a & 0xFFF):
            return fail(c, CK_MSR_BITMAP_ALIGNMENT, R)
        if ck_has(d, CK_MSR_BITMAP_WIDTH) and not phys_ok(a):
            return fail(c, CK_MSR_BITMAP_WIDTH, R)
    # APIC virtualization (SDM 27.2.1.1; core/vmx/apicv.pxi).  VTPR is read
    # from the virtual-APIC page (0 where no memory backs it).
    if proc & PROC_USE_TPR_SHADOW:
        a = vr(c, VMCS_OFF_VIRTUAL_APIC_ADDRESS, 8)
        if ck_has(d, CK_VIRTUAL_APIC_ADDRESS_ALIGNMENT) and (a & 0xFFF):
            return fail(c, CK_VIRTUAL_APIC_ADDRESS_ALIGNMENT, R)
        if ck_has(d, CK_VIRTUAL_APIC_ADDRESS_WIDTH) and not phys_ok(a):
            return fail(c, CK_VIRTUAL_APIC_ADDRESS_WIDTH, R)
        if not (proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY):
            b = vr(c, VMCS_OFF_TPR_THRESHOLD, 4)
            if ck_has(d, CK_TPR_THRESHOLD_RESERVED_BITS) and (b >> 4):
                return fail(c, CK_TPR_THRESHOLD_RESERVED_BITS, R)
            if ck_has(d, CK_TPR_THRESHOLD_VTPR) and not (proc2 & PROC2_VIRTUALIZE_APIC_ACCESSES):
                p = hpa_ptr(c, a + 0x80, 1, c.vmx.host_x86)
                if (b & 0xF) > ((p[0] >> 4) if p != NULL else 0):
                    return fail(c, CK_TPR_THRESHOLD_VTPR, R)
    if ck_has(d, CK_VIRTUAL_NMIS) and (pin & PIN_VIRTUAL_NMIS) and not (pin & PIN_NMI_EXITING):
        return fail(c, CK_VIRTUAL_NMIS, R)
    if ck_has(d, CK_NMI_WINDOW_EXITING) and (proc & PROC_NMI_WINDOW_EXITING) and not (pin & PIN_VIRTUAL_NMIS):
        return fail(c, CK_NMI_WINDOW_EXITING, R)
    if proc2 & PROC2_VIRTUALIZE_APIC_ACCESSES:
        a = vr(c, VMCS_OFF_APIC_ACCESS_ADDRESS, 8)
        if ck_has(d, CK_APIC_ACCESS_ADDRESS_ALIGNMENT) and (a & 0xFFF):
            return fail(c, CK_APIC_ACCESS_ADDRESS_ALIGNMENT, R)
        if ck_has(d, CK_APIC_ACCESS_ADDRESS_WIDTH) and not phys_ok(a):
            return fail(c, CK_APIC_ACCESS_ADDRESS_WIDTH, R)
    if ck_has(d, CK_APIC_VIRTUALIZATION_NEEDS_TPR_SHADOW) and not (proc & PROC_USE_TPR_SHADOW) and \
            (proc2 & (PROC2_VIRTUALIZE_X2APIC_MODE | PROC2_APIC_REGISTER_VIRTUALIZATION |
                      PROC2_VIRTUAL_INTERRUPT_DELIVERY)):
        return fail(c, CK_APIC_VIRTUALIZATION_NEEDS_TPR_SHADOW, R)
    if ck_has(d, CK_VIRTUALIZE_X2APIC_MODE_EXCLUSIVE) and (proc2 & PROC2_VIRTUALIZE_X2APIC_MODE) and \
            (proc2 & PROC2_VIRTUALIZE_APIC_ACCESSES):
        return fail(c, CK_VIRTUALIZE_X2APIC_MODE_EXCLUSIVE, R)
    if ck_has(d, CK_VIRTUAL_INTERRUPT_DELIVERY_NEEDS_EXTERNAL_INTERRUPT_EXITING) and \
            (proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY) and not (pin & PIN_EXTERNAL_INTERRUPT_EXITING):
        return fail(c, CK_VIRTUAL_INTERRUPT_DELIVERY_NEEDS_EXTERNAL_INTERRUPT_EXITING, R)
    if pin & PIN_PROCESS_POSTED_INTERRUPTS:
        if ck_has(d, CK_POSTED_INTERRUPTS_NEED_VIRTUAL_INTERRUPT_DELIVERY) and \
                not (proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY):
            return fail(c, CK_POSTED_INTERRUPTS_NEED_VIRTUAL_INTERRUPT_DELIVERY, R)
        if ck_has(d, CK_POSTED_INTERRUPTS_NEED_ACKNOWLEDGE_ON_EXIT) and \
                not (exitc & EXIT_CTL_ACKNOWLEDGE_INTERRUPT_ON_EXIT):
            return fail(c, CK_POSTED_INTERRUPTS_NEED_ACKNOWLEDGE_ON_EXIT, R)
        if ck_has(d, CK_POSTED_INTERRUPT_NOTIFICATION_VECTOR) and \
                (vr(c, VMCS_OFF_POSTED_INTERRUPT_NOTIFICATION_VECTOR, 2) >> 8):
            return fail(c, CK_POSTED_INTERRUPT_NOTIFICATION_VECTOR, R)
        a = vr(c, VMCS_OFF_POSTED_INTERRUPT_DESCRIPTOR_ADDRESS, 8)
        if ck_has(d, CK_POSTED_INTERRUPT_DESCRIPTOR_ALIGNMENT) and (a & 0x3F):
            return fail(c, CK_POSTED_INTERRUPT_DESCRIPTOR_ALIGNMENT, R)
        if ck_has(d, CK_POSTED_INTERRUPT_DESCRIPTOR_WIDTH) and not phys_ok(a):
            return fail(c, CK_POSTED_INTERRUPT_DESCRIPTOR_WIDTH, R)
    if ck_has(d, CK_VPID_NONZERO) and (proc2 & PROC2_ENABLE_VPID) and vr(c, VMCS_OFF_VIRTUAL_PROCESSOR_ID, 2) == 0:
        return fail(c, CK_VPID_NONZERO, R)
    if proc2 & PROC2_ENABLE_EPT:
        ck = eptp_failure(vr(c, VMCS_OFF_EPT_POINTER, 8), d)
        if ck >= 0:
            return fail(c, ck, R)
    if proc2 & PROC2_ENABLE_PML:
        # The page-modification log (SDM 29.3.6; core/mmu.pxi ept_dirty).
        a = vr(c, VMCS_OFF_PML_ADDRESS, 8)
        if ck_has(d, CK_PML_NEEDS_EPT) and not (proc2 & PROC2_ENABLE_EPT):
            return fail(c, CK_PML_NEEDS_EPT, R)
        if ck_has(d, CK_PML_ADDRESS_ALIGNMENT) and (a & 0xFFF):
            return fail(c, CK_PML_ADDRESS_ALIGNMENT, R)
        if ck_has(d, CK_PML_ADDRESS_WIDTH) and not phys_ok(a):
            return fail(c, CK_PML_ADDRESS_WIDTH, R)
    if ck_has(d, CK_UNRESTRICTED_GUEST_NEEDS_EPT) and (proc2 & PROC2_UNRESTRICTED_GUEST) and \
            not (proc2 & PROC2_ENABLE_EPT):
        return fail(c, CK_UNRESTRICTED_GUEST_NEEDS_EPT, R)
    if proc2 & PROC2_ENABLE_VM_FUNCTIONS:
        a = vr(c, VMCS_OFF_VM_FUNCTION_CONTROLS, 8)
        if ck_has(d, CK_VM_FUNCTION_CONTROLS) and (a & ~VMX_CAP_VMFUNC):
            return fail(c, CK_VM_FUNCTION_CONTROLS, R)
        b = vr(c, VMCS_OFF_EPTP_LIST_ADDRESS, 8)
        if a & 1:
            # EPTP switching (27.2.1.1).
            if ck_has(d, CK_EPTP_SWITCHING_NEEDS_EPT) and not (proc2 & PROC2_ENABLE_EPT):
                return fail(c, CK_EPTP_SWITCHING_NEEDS_EPT, R)
            if ck_has(d, CK_EPTP_LIST_ADDRESS_ALIGNMENT) and (b & 0xFFF):
                return fail(c, CK_EPTP_LIST_ADDRESS_ALIGNMENT, R)
            if ck_has(d, CK_EPTP_LIST_ADDRESS_WIDTH) and not phys_ok(b):
                return fail(c, CK_EPTP_LIST_ADDRESS_WIDTH, R)
    if proc2 & PROC2_SUB_PAGE_WRITE_PERMISSIONS:
        # Sub-page write permissions (SDM 29.3.4; core/vmx/spp.pxi).
        a = vr(c, VMCS_OFF_SUB_PAGE_PERMISSION_TABLE_POINTER, 8)
        if ck_has(d, CK_SUB_PAGE_WRITE_PERMISSIONS_NEED_EPT) and not (proc2 & PROC2_ENABLE_EPT):
            return fail(c, CK_SUB_PAGE_WRITE_PERMISSIONS_NEED_EPT, R)
        if ck_has(d, CK_SPPTP_ALIGNMENT) and (a & 0xFFF):
            return fail(c, CK_SPPTP_ALIGNMENT, R)
        if ck_has(d, CK_SPPTP_WIDTH) and not phys_ok(a):
            return fail(c, CK_SPPTP_WIDTH, R)
    # 27.2.1.2
    if ck_has(d, CK_VM_EXIT_CONTROLS) and not ctls_ok(exitc, VMX_CAP_TRUE_EXIT_CTLS):
        return fail(c, CK_VM_EXIT_CONTROLS, R)
    if ck_has(d, CK_VM_EXIT_SAVE_VMX_PREEMPTION_TIMER) and (exitc & EXIT_CTL_SAVE_VMX_PREEMPTION_TIMER) and \
            not (pin & PIN_ACTIVATE_VMX_PREEMPTION_TIMER):
        return fail(c, CK_VM_EXIT_SAVE_VMX_PREEMPTION_TIMER, R)
    # The VM-exit MSR-store and MSR-load areas: 16-byte entries, within the
    # physical-address width to their last bytes.
    a = vr(c, VMCS_OFF_VM_EXIT_MSR_STORE_COUNT, 4)
    if a:
        b = vr(c, VMCS_OFF_VM_EXIT_MSR_STORE_ADDRESS, 8)
        if ck_has(d, CK_VM_EXIT_MSR_STORE_ADDRESS_ALIGNMENT) and (b & 0xF):
            return fail(c, CK_VM_EXIT_MSR_STORE_ADDRESS_ALIGNMENT, R)
        if ck_has(d, CK_VM_EXIT_MSR_STORE_ADDRESS_WIDTH) and not phys_ok(b):
            return fail(c, CK_VM_EXIT_MSR_STORE_ADDRESS_WIDTH, R)
        if ck_has(d, CK_VM_EXIT_MSR_STORE_LAST_BYTE_WIDTH) and not phys_ok(b + a * 16 - 1):
            return fail(c, CK_VM_EXIT_MSR_STORE_LAST_BYTE_WIDTH, R)
    a = vr(c, VMCS_OFF_VM_EXIT_MSR_LOAD_COUNT, 4)
    if a:
        b = vr(c, VMCS_OFF_VM_EXIT_MSR_LOAD_ADDRESS, 8)
        if ck_has(d, CK_VM_EXIT_MSR_LOAD_ADDRESS_ALIGNMENT) and (b & 0xF):
            return fail(c, CK_VM_EXIT_MSR_LOAD_ADDRESS_ALIGNMENT, R)
        if ck_has(d, CK_VM_EXIT_MSR_LOAD_ADDRESS_WIDTH) and not phys_ok(b):
            return fail(c, CK_VM_EXIT_MSR_LOAD_ADDRESS_WIDTH, R)
        if ck_has(d, CK_VM_EXIT_MSR_LOAD_LAST_BYTE_WIDTH) and not phys_ok(b + a * 16 - 1):
            return fail(c, CK_VM_EXIT_MSR_LOAD_LAST_BYTE_WIDTH, R)
    # 27.2.1.3
    if ck_has(d, CK_VM_ENTRY_CONTROLS) and not ctls_ok(entryc, VMX_CAP_TRUE_ENTRY_CTLS):
        return fail(c, CK_VM_ENTRY_CONTROLS, R)
    info = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4)
    if info & INTR_INFO_VALID:
        itype = (info >> 8) & 7
        vec = info & 0xFF
        # Type 1 is reserved; type 7 (other event) is reserved unless
        # "monitor trap flag" may be 1.
        if ck_has(d, CK_VM_ENTRY_INTERRUPTION_TYPE_RESERVED) and itype == 1:
            return fail(c, CK_VM_ENTRY_INTERRUPTION_TYPE_RESERVED, R)
        if ck_has(d, CK_VM_ENTRY_INTERRUPTION_TYPE_OTHER_EVENT) and itype == INTR_OTHER_EVENT and \
                not ((VMX_CAP_TRUE_PROCBASED_CTLS >> 32) & PROC_MONITOR_TRAP_FLAG):
            return fail(c, CK_VM_ENTRY_INTERRUPTION_TYPE_OTHER_EVENT, R)
        if ck_has(d, CK_VM_ENTRY_INTERRUPTION_VECTOR_NMI) and itype == INTR_NMI and vec != 2:
            return fail(c, CK_VM_ENTRY_INTERRUPTION_VECTOR_NMI, R)
        if ck_has(d, CK_VM_ENTRY_INTERRUPTION_VECTOR_HARDWARE_EXCEPTION) and itype == INTR_HW_EXCEPTION and \
                vec > 31:
            return fail(c, CK_VM_ENTRY_INTERRUPTION_VECTOR_HARDWARE_EXCEPTION, R)
        if ck_has(d, CK_VM_ENTRY_INTERRUPTION_VECTOR_OTHER_EVENT) and itype == INTR_OTHER_EVENT and vec != 0:
            return fail(c, CK_VM_ENTRY_INTERRUPTION_VECTOR_OTHER_EVENT, R)
        # Deliver-error-code (bit 11): 1 if and only if ("unrestricted
        # guest" is 0 or guest CR0.PE is 1) and a hardware exception that
        # pushes an error code (IA32_VMX_BASIC bit 56 is 0: no relaxation).
        real_ug = (proc2 & PROC2_UNRESTRICTED_GUEST) != 0 and not (vr(c, VMCS_OFF_GUEST_CR0, 8) & CR0_PE)
        if ck_has(d, CK_VM_ENTRY_DELIVER_ERROR_CODE_REQUIRED) and not (info & 0x800) and not real_ug and \
                itype == INTR_HW_EXCEPTION and vector_has_error_code(vec):
            return fail(c, CK_VM_ENTRY_DELIVER_ERROR_CODE_REQUIRED, R)
        if info & 0x800:
            if ck_has(d, CK_VM_ENTRY_DELIVER_ERROR_CODE_REAL_MODE) and real_ug:
                return fail(c, CK_VM_ENTRY_DELIVER_ERROR_CODE_REAL_MODE, R)
            if ck_has(d, CK_VM_ENTRY_DELIVER_ERROR_CODE_TYPE) and itype != INTR_HW_EXCEPTION:
                return fail(c, CK_VM_ENTRY_DELIVER_ERROR_CODE_TYPE, R)
            if ck_has(d, CK_VM_ENTRY_DELIVER_ERROR_CODE_VECTOR) and not vector_has_error_code(vec):
                return fail(c, CK_VM_ENTRY_DELIVER_ERROR_CODE_VECTOR, R)
        if ck_has(d, CK_VM_ENTRY_INTERRUPTION_INFO_RESERVED_BITS) and (info & 0x7FFFF000ULL):
            return fail(c, CK_VM_ENTRY_INTERRUPTION_INFO_RESERVED_BITS, R)
        if ck_has(d, CK_VM_ENTRY_EXCEPTION_ERROR_CODE) and (info & 0x800) and \
                (vr(c, VMCS_OFF_VM_ENTRY_EXCEPTION_ERROR_CODE, 4) >> 16):
            return fail(c, CK_VM_ENTRY_EXCEPTION_ERROR_CODE, R)
        # Software interrupts and (privileged) software exceptions: length
        # 0-15, and 0 only with IA32_VMX_MISC bit 30.
        if itype == INTR_SW_INTERRUPT or itype == INTR_PRIV_SW_EXCEPTION or itype == INTR_SW_EXCEPTION:
            a = vr(c, VMCS_OFF_VM_ENTRY_INSTRUCTION_LENGTH, 4)
            if ck_has(d, CK_VM_ENTRY_INSTRUCTION_LENGTH) and a > 15:
                return fail(c, CK_VM_ENTRY_INSTRUCTION_LENGTH, R)
            if ck_has(d, CK_VM_ENTRY_INSTRUCTION_LENGTH_ZERO) and a == 0 and not (VMX_CAP_MISC & (1ULL << 30)):
                return fail(c, CK_VM_ENTRY_INSTRUCTION_LENGTH_ZERO, R)
    # The VM-entry MSR-load area: 16-byte entries, within the physical-address
    # width to its last byte (the sum is computed wider than the width).
    a = vr(c, VMCS_OFF_VM_ENTRY_MSR_LOAD_COUNT, 4)
    if a:
        b = vr(c, VMCS_OFF_VM_ENTRY_MSR_LOAD_ADDRESS, 8)
        if ck_has(d, CK_VM_ENTRY_MSR_LOAD_ADDRESS_ALIGNMENT) and (b & 0xF):
            return fail(c, CK_VM_ENTRY_MSR_LOAD_ADDRESS_ALIGNMENT, R)
        if ck_has(d, CK_VM_ENTRY_MSR_LOAD_ADDRESS_WIDTH) and not phys_ok(b):
            return fail(c, CK_VM_ENTRY_MSR_LOAD_ADDRESS_WIDTH, R)
        if ck_has(d, CK_VM_ENTRY_MSR_LOAD_LAST_BYTE_WIDTH) and not phys_ok(b + a * 16 - 1):
            return fail(c, CK_VM_ENTRY_MSR_LOAD_LAST_BYTE_WIDTH, R)
    return RC_OK


cdef int check_host(Cpu* c, const ck_mask_t* d) noexcept nogil:
    """SDM 27.2.2 - 27.2.4: host control registers, MSRs, selectors and the
    address-space size (the checks in `d`).  The hosted hypervisor is a
    64-bit program, so the processor counts as being in IA-32e mode; x86
    host code is in IA-32e mode when its EFER.LMA is 1."""
    cdef int host_ia32e = (c.efer & EFER_LMA) != 0 if c.vmx.host_x86 else 1
    cdef uint64_t cr0 = vr(c, VMCS_OFF_HOST_CR0, 8)
    cdef uint64_t cr4 = vr(c, VMCS_OFF_HOST_CR4, 8)
    cdef uint32_t exitc = <uint32_t>vr(c, VMCS_OFF_VM_EXIT_CONTROLS, 4)
    cdef int has = (exitc & EXIT_CTL_HOST_ADDRESS_SPACE_SIZE) != 0
    cdef uint64_t efer, pat, rip
    cdef uint16_t sel
    cdef int i
    cdef int R = RC_ENTRY_FAIL_HOST
    if not ck_any(d, &CKM_HOST):
        return RC_OK
    # 27.2.2
    if ck_has(d, CK_HOST_CR0) and \
            ((cr0 & VMX_CAP_CR0_FIXED0) != VMX_CAP_CR0_FIXED0 or (cr0 & ~VMX_CAP_CR0_FIXED1)):
        return fail(c, CK_HOST_CR0, R)
    if ck_has(d, CK_HOST_CR4) and \
            ((cr4 & VMX_CAP_CR4_FIXED0) != VMX_CAP_CR4_FIXED0 or (cr4 & ~(c.cr4_fixed1 | CR4_VMXE))):
        return fail(c, CK_HOST_CR4, R)
    if ck_has(d, CK_HOST_CR3) and not phys_ok(vr(c, VMCS_OFF_HOST_CR3, 8)):
        return fail(c, CK_HOST_CR3, R)
    if ck_has(d, CK_HOST_SYSENTER_ESP_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_HOST_IA32_SYSENTER_ESP, 8)):
        return fail(c, CK_HOST_SYSENTER_ESP_CANONICAL, R)
    if ck_has(d, CK_HOST_SYSENTER_EIP_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_HOST_IA32_SYSENTER_EIP, 8)):
        return fail(c, CK_HOST_SYSENTER_EIP_CANONICAL, R)
    if exitc & EXIT_CTL_LOAD_IA32_PAT:
        pat = vr(c, VMCS_OFF_HOST_IA32_PAT, 8)
        for i in range(8):
            if ck_has(d, CK_HOST_IA32_PAT_PA0 + i) and not pat_entry_ok(pat, i):
                return fail(c, CK_HOST_IA32_PAT_PA0 + i, R)
    if exitc & EXIT_CTL_LOAD_IA32_EFER:
        efer = vr(c, VMCS_OFF_HOST_IA32_EFER, 8)
        if ck_has(d, CK_HOST_IA32_EFER_RESERVED_BITS) and \
                (efer & ~(<uint64_t>(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))):
            return fail(c, CK_HOST_IA32_EFER_RESERVED_BITS, R)
        if ck_has(d, CK_HOST_IA32_EFER_LMA) and ((efer & EFER_LMA) != 0) != has:
            return fail(c, CK_HOST_IA32_EFER_LMA, R)
        if ck_has(d, CK_HOST_IA32_EFER_LME) and ((efer & EFER_LME) != 0) != has:
            return fail(c, CK_HOST_IA32_EFER_LME, R)
    # 27.2.3: RPL and TI of each selector, in VMCS order ES CS SS DS FS GS TR
    # (the family arrays' index).
    for i in range(7):
        sel = <uint16_t>vr(c, VMCS_OFF_HOST_ES_SELECTOR + 2 * i, 2)
        if ck_has(d, CKS_HOST_SELECTOR_RPL[i]) and (sel & 3):
            return fail(c, CKS_HOST_SELECTOR_RPL[i], R)
    for i in range(7):
        sel = <uint16_t>vr(c, VMCS_OFF_HOST_ES_SELECTOR + 2 * i, 2)
        if ck_has(d, CKS_HOST_SELECTOR_TI[i]) and (sel & 4):
            return fail(c, CKS_HOST_SELECTOR_TI[i], R)
    if ck_has(d, CK_HOST_CS_SELECTOR_NULL) and vr(c, VMCS_OFF_HOST_CS_SELECTOR, 2) == 0:
        return fail(c, CK_HOST_CS_SELECTOR_NULL, R)
    if ck_has(d, CK_HOST_TR_SELECTOR_NULL) and vr(c, VMCS_OFF_HOST_TR_SELECTOR, 2) == 0:
        return fail(c, CK_HOST_TR_SELECTOR_NULL, R)
    if ck_has(d, CK_HOST_SS_SELECTOR_NULL) and not has and vr(c, VMCS_OFF_HOST_SS_SELECTOR, 2) == 0:
        return fail(c, CK_HOST_SS_SELECTOR_NULL, R)
    if ck_has(d, CK_HOST_FS_BASE_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_HOST_FS_BASE, 8)):
        return fail(c, CK_HOST_FS_BASE_CANONICAL, R)
    if ck_has(d, CK_HOST_GS_BASE_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_HOST_GS_BASE, 8)):
        return fail(c, CK_HOST_GS_BASE_CANONICAL, R)
    if ck_has(d, CK_HOST_GDTR_BASE_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_HOST_GDTR_BASE, 8)):
        return fail(c, CK_HOST_GDTR_BASE_CANONICAL, R)
    if ck_has(d, CK_HOST_IDTR_BASE_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_HOST_IDTR_BASE, 8)):
        return fail(c, CK_HOST_IDTR_BASE_CANONICAL, R)
    if ck_has(d, CK_HOST_TR_BASE_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_HOST_TR_BASE, 8)):
        return fail(c, CK_HOST_TR_BASE_CANONICAL, R)
    # 27.2.4.  (The SDM's "IA-32e mode guest is 0 when 'host address-space
    # size' is 0" cannot fail on its own: outside IA-32e mode the first check
    # below covers it, inside it the control must be 1.)
    if not host_ia32e:
        if ck_has(d, CK_IA32E_MODE_GUEST_OUTSIDE_IA32E) and \
                (vr(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4) & ENTRY_CTL_IA32E_MODE_GUEST):
            return fail(c, CK_IA32E_MODE_GUEST_OUTSIDE_IA32E, R)
        if ck_has(d, CK_HOST_ADDRESS_SPACE_SIZE_OUTSIDE_IA32E) and has:
            return fail(c, CK_HOST_ADDRESS_SPACE_SIZE_OUTSIDE_IA32E, R)
    elif ck_has(d, CK_HOST_ADDRESS_SPACE_SIZE_IN_IA32E) and not has:
        return fail(c, CK_HOST_ADDRESS_SPACE_SIZE_IN_IA32E, R)
    rip = vr(c, VMCS_OFF_HOST_RIP, 8)
    if not has:
        if ck_has(d, CK_HOST_CR4_PCIDE) and (cr4 & CR4_PCIDE):
            return fail(c, CK_HOST_CR4_PCIDE, R)
        if ck_has(d, CK_HOST_RIP_HIGH_BITS) and (rip >> 32):
            return fail(c, CK_HOST_RIP_HIGH_BITS, R)
    else:
        if ck_has(d, CK_HOST_CR4_PAE) and not (cr4 & CR4_PAE):
            return fail(c, CK_HOST_CR4_PAE, R)
        if ck_has(d, CK_HOST_RIP_CANONICAL) and not is_canonical(rip):
            return fail(c, CK_HOST_RIP_CANONICAL, R)
    return RC_OK


cdef inline int g_low_ok(uint32_t limit, uint32_t ar) noexcept nogil:
    """G is 0 if a bit of limit bits 11:0 is 0 (SDM 27.3.1.2)."""
    return not ((limit & 0xFFF) != 0xFFF and (ar & AR_G))


cdef inline int g_high_ok(uint32_t limit, uint32_t ar) noexcept nogil:
    """G is 1 if a bit of limit bits 31:20 is 1 (SDM 27.3.1.2)."""
    return not ((limit & 0xFFF00000ULL) and not (ar & AR_G))


# The segment registers in the order the SDM lists them (27.3.1.2), by
# their S_* numbers (the index of the CKS_GUEST_SEG_* arrays).
cdef int SDM_SEG[6]
SDM_SEG[0] = S_CS
SDM_SEG[1] = S_SS
SDM_SEG[2] = S_DS
SDM_SEG[3] = S_ES
SDM_SEG[4] = S_FS
SDM_SEG[5] = S_GS


cdef inline int cpu_has_rtm(Cpu* c) noexcept nogil:
    """CPUID.(EAX=07H,ECX=0):EBX.RTM[bit 11] of the model."""
    cdef uint32_t r[4]
    model_cpuid(c, c.cr4, 7, 0, r)
    return (r[1] >> 11) & 1


cdef int check_guest_segments(Cpu* c, const ck_mask_t* d, int ug, int ia32e, int v86, uint64_t cr0) noexcept nogil:
    """SDM 27.3.1.2: the guest segment registers (the checks in `d`)."""
    cdef uint32_t ar, lim, t, cs_ar, ss_ar
    cdef uint16_t sel
    cdef int i, k, s, usable, dpl
    cdef int R = RC_ENTRY_FAIL_GUEST
    cdef uint32_t ldtr_ar = <uint32_t>vr(c, off_ar(S_LDTR), 4)
    # Selectors
    if ck_has(d, CK_GUEST_TR_SELECTOR_TI) and (vr(c, off_sel(S_TR), 2) & 4):
        return fail(c, CK_GUEST_TR_SELECTOR_TI, R)
    if ck_has(d, CK_GUEST_LDTR_SELECTOR_TI) and not (ldtr_ar & AR_UNUSABLE) and (vr(c, off_sel(S_LDTR), 2) & 4):
        return fail(c, CK_GUEST_LDTR_SELECTOR_TI, R)
    if ck_has(d, CK_GUEST_SS_SELECTOR_RPL) and not v86 and not ug and \
            (vr(c, off_sel(S_SS), 2) & 3) != (vr(c, off_sel(S_CS), 2) & 3):
        return fail(c, CK_GUEST_SS_SELECTOR_RPL, R)
    # Base addresses
    if v86:
        for k in range(6):
            s = SDM_SEG[k]
            if ck_has(d, CKS_GUEST_SEG_BASE_V86[s]) and \
                    vr(c, off_base(s), 8) != (<uint64_t>vr(c, off_sel(s), 2) << 4):
                return fail(c, CKS_GUEST_SEG_BASE_V86[s], R)
    if ck_has(d, CK_GUEST_TR_BASE_CANONICAL) and not is_canonical(vr(c, off_base(S_TR), 8)):
        return fail(c, CK_GUEST_TR_BASE_CANONICAL, R)
    if ck_has(d, CK_GUEST_FS_BASE_CANONICAL) and not is_canonical(vr(c, off_base(S_FS), 8)):
        return fail(c, CK_GUEST_FS_BASE_CANONICAL, R)
    if ck_has(d, CK_GUEST_GS_BASE_CANONICAL) and not is_canonical(vr(c, off_base(S_GS), 8)):
        return fail(c, CK_GUEST_GS_BASE_CANONICAL, R)
    if ck_has(d, CK_GUEST_LDTR_BASE_CANONICAL) and not (ldtr_ar & AR_UNUSABLE) and \
            not is_canonical(vr(c, off_base(S_LDTR), 8)):
        return fail(c, CK_GUEST_LDTR_BASE_CANONICAL, R)
    if ck_has(d, CK_GUEST_CS_BASE_HIGH_BITS) and (vr(c, off_base(S_CS), 8) >> 32):
        return fail(c, CK_GUEST_CS_BASE_HIGH_BITS, R)
    for k in range(1, 4):           # SS, DS, ES
        s = SDM_SEG[k]
        if ck_has(d, CKS_GUEST_SEG_BASE_HIGH_BITS[s]) and not (vr(c, off_ar(s), 4) & AR_UNUSABLE) and \
                (vr(c, off_base(s), 8) >> 32):
            return fail(c, CKS_GUEST_SEG_BASE_HIGH_BITS[s], R)
    # Limits and access rights in virtual-8086 mode
    if v86:
        for k in range(6):
            s = SDM_SEG[k]
            if ck_has(d, CKS_GUEST_SEG_LIMIT_V86[s]) and vr(c, off_limit(s), 4) != 0xFFFF:
                return fail(c, CKS_GUEST_SEG_LIMIT_V86[s], R)
        for k in range(6):
            s = SDM_SEG[k]
            if ck_has(d, CKS_GUEST_SEG_ACCESS_RIGHTS_V86[s]) and vr(c, off_ar(s), 4) != 0xF3:
                return fail(c, CKS_GUEST_SEG_ACCESS_RIGHTS_V86[s], R)
    else:
        cs_ar = <uint32_t>vr(c, off_ar(S_CS), 4)
        ss_ar = <uint32_t>vr(c, off_ar(S_SS), 4)
        # Type (bits 3:0)
        t = cs_ar & 0xF
        if ck_has(d, CK_GUEST_CS_TYPE) and not (t == 9 or t == 11 or t == 13 or t == 15 or (ug and t == 3)):
            return fail(c, CK_GUEST_CS_TYPE, R)
        t = ss_ar & 0xF
        if ck_has(d, CK_GUEST_SS_TYPE) and not (ss_ar & AR_UNUSABLE) and t != 3 and t != 7:
            return fail(c, CK_GUEST_SS_TYPE, R)
        for k in range(2, 6):       # DS, ES, FS, GS
            s = SDM_SEG[k]
            ar = <uint32_t>vr(c, off_ar(s), 4)
            if ck_has(d, CKS_GUEST_SEG_TYPE_ACCESSED[s]) and not (ar & AR_UNUSABLE) and not (ar & 1):
                return fail(c, CKS_GUEST_SEG_TYPE_ACCESSED[s], R)
        for k in range(2, 6):
            s = SDM_SEG[k]
            ar = <uint32_t>vr(c, off_ar(s), 4)
            if ck_has(d, CKS_GUEST_SEG_TYPE_READABLE[s]) and not (ar & AR_UNUSABLE) and (ar & 8) and not (ar & 2):
                return fail(c, CKS_GUEST_SEG_TYPE_READABLE[s], R)
        # S (bit 4): CS, or the register if usable
        for k in range(6):
            s = SDM_SEG[k]
            ar = <uint32_t>vr(c, off_ar(s), 4)
            if ck_has(d, CKS_GUEST_SEG_S[s]) and (s == S_CS or not (ar & AR_UNUSABLE)) and not (ar & AR_S):
                return fail(c, CKS_GUEST_SEG_S[s], R)
        # DPL (bits 6:5).  The CS and SS rules hold whether or not SS is usable.
        t = cs_ar & 0xF
        dpl = (cs_ar >> 5) & 3
        if ck_has(d, CK_GUEST_CS_DPL_TYPE_3) and t == 3 and dpl != 0:
            return fail(c, CK_GUEST_CS_DPL_TYPE_3, R)
        if ck_has(d, CK_GUEST_CS_DPL_NONCONFORMING) and (t == 9 or t == 11) and dpl != <int>((ss_ar >> 5) & 3):
            return fail(c, CK_GUEST_CS_DPL_NONCONFORMING, R)
        if ck_has(d, CK_GUEST_CS_DPL_CONFORMING) and (t == 13 or t == 15) and dpl > <int>((ss_ar >> 5) & 3):
            return fail(c, CK_GUEST_CS_DPL_CONFORMING, R)
        if ck_has(d, CK_GUEST_SS_DPL_RPL) and not ug and ((ss_ar >> 5) & 3) != (vr(c, off_sel(S_SS), 2) & 3):
            return fail(c, CK_GUEST_SS_DPL_RPL, R)
        if ck_has(d, CK_GUEST_SS_DPL_ZERO) and (t == 3 or not (cr0 & CR0_PE)) and ((ss_ar >> 5) & 3) != 0:
            return fail(c, CK_GUEST_SS_DPL_ZERO, R)
        for k in range(2, 6):
            s = SDM_SEG[k]
            ar = <uint32_t>vr(c, off_ar(s), 4)
            if ck_has(d, CKS_GUEST_SEG_DPL_RPL[s]) and not ug and not (ar & AR_UNUSABLE) and (ar & 0xF) <= 11 and \
                    ((ar >> 5) & 3) < (vr(c, off_sel(s), 2) & 3):
                return fail(c, CKS_GUEST_SEG_DPL_RPL[s], R)
        # P (bit 7), reserved bits 11:8: CS, or the register if usable
        for k in range(6):
            s = SDM_SEG[k]
            ar = <uint32_t>vr(c, off_ar(s), 4)
            if ck_has(d, CKS_GUEST_SEG_P[s]) and (s == S_CS or not (ar & AR_UNUSABLE)) and not (ar & AR_P):
                return fail(c, CKS_GUEST_SEG_P[s], R)
        for k in range(6):
            s = SDM_SEG[k]
            ar = <uint32_t>vr(c, off_ar(s), 4)
            if ck_has(d, CKS_GUEST_SEG_RESERVED_11_8[s]) and (s == S_CS or not (ar & AR_UNUSABLE)) and (ar & 0xF00):
                return fail(c, CKS_GUEST_SEG_RESERVED_11_8[s], R)
        # D/B (bit 14) of CS with L (bit 13) in an IA-32e mode guest
        if ck_has(d, CK_GUEST_CS_DB_WITH_L) and ia32e and (cs_ar & AR_L) and (cs_ar & AR_DB):
            return fail(c, CK_GUEST_CS_DB_WITH_L, R)
        # G (bit 15) against the limit, reserved bits 31:17
        for k in range(6):
            s = SDM_SEG[k]
            ar = <uint32_t>vr(c, off_ar(s), 4)
            if ck_has(d, CKS_GUEST_SEG_G_LIMIT_LOW[s]) and (s == S_CS or not (ar & AR_UNUSABLE)) and \
                    not g_low_ok(<uint32_t>vr(c, off_limit(s), 4), ar):
                return fail(c, CKS_GUEST_SEG_G_LIMIT_LOW[s], R)
        for k in range(6):
            s = SDM_SEG[k]
            ar = <uint32_t>vr(c, off_ar(s), 4)
            if ck_has(d, CKS_GUEST_SEG_G_LIMIT_HIGH[s]) and (s == S_CS or not (ar & AR_UNUSABLE)) and \
                    not g_high_ok(<uint32_t>vr(c, off_limit(s), 4), ar):
                return fail(c, CKS_GUEST_SEG_G_LIMIT_HIGH[s], R)
        for k in range(6):
            s = SDM_SEG[k]
            ar = <uint32_t>vr(c, off_ar(s), 4)
            if ck_has(d, CKS_GUEST_SEG_RESERVED_31_17[s]) and (s == S_CS or not (ar & AR_UNUSABLE)) and \
                    (ar & 0xFFFE0000ULL):
                return fail(c, CKS_GUEST_SEG_RESERVED_31_17[s], R)
    # TR (in every mode)
    ar = <uint32_t>vr(c, off_ar(S_TR), 4)
    lim = <uint32_t>vr(c, off_limit(S_TR), 4)
    t = ar & 0xF
    if ck_has(d, CK_GUEST_TR_TYPE) and not (t == 11 or (t == 3 and not ia32e)):
        return fail(c, CK_GUEST_TR_TYPE, R)
    if ck_has(d, CK_GUEST_TR_S) and (ar & AR_S):
        return fail(c, CK_GUEST_TR_S, R)
    if ck_has(d, CK_GUEST_TR_P) and not (ar & AR_P):
        return fail(c, CK_GUEST_TR_P, R)
    if ck_has(d, CK_GUEST_TR_RESERVED_11_8) and (ar & 0xF00):
        return fail(c, CK_GUEST_TR_RESERVED_11_8, R)
    if ck_has(d, CK_GUEST_TR_G_LIMIT_LOW) and not g_low_ok(lim, ar):
        return fail(c, CK_GUEST_TR_G_LIMIT_LOW, R)
    if ck_has(d, CK_GUEST_TR_G_LIMIT_HIGH) and not g_high_ok(lim, ar):
        return fail(c, CK_GUEST_TR_G_LIMIT_HIGH, R)
    if ck_has(d, CK_GUEST_TR_UNUSABLE) and (ar & AR_UNUSABLE):
        return fail(c, CK_GUEST_TR_UNUSABLE, R)
    if ck_has(d, CK_GUEST_TR_RESERVED_31_17) and (ar & 0xFFFE0000ULL):
        return fail(c, CK_GUEST_TR_RESERVED_31_17, R)
    # LDTR, if usable
    if not (ldtr_ar & AR_UNUSABLE):
        ar = ldtr_ar
        lim = <uint32_t>vr(c, off_limit(S_LDTR), 4)
        if ck_has(d, CK_GUEST_LDTR_TYPE) and (ar & 0xF) != 2:
            return fail(c, CK_GUEST_LDTR_TYPE, R)
        if ck_has(d, CK_GUEST_LDTR_S) and (ar & AR_S):
            return fail(c, CK_GUEST_LDTR_S, R)
        if ck_has(d, CK_GUEST_LDTR_P) and not (ar & AR_P):
            return fail(c, CK_GUEST_LDTR_P, R)
        if ck_has(d, CK_GUEST_LDTR_RESERVED_11_8) and (ar & 0xF00):
            return fail(c, CK_GUEST_LDTR_RESERVED_11_8, R)
        if ck_has(d, CK_GUEST_LDTR_G_LIMIT_LOW) and not g_low_ok(lim, ar):
            return fail(c, CK_GUEST_LDTR_G_LIMIT_LOW, R)
        if ck_has(d, CK_GUEST_LDTR_G_LIMIT_HIGH) and not g_high_ok(lim, ar):
            return fail(c, CK_GUEST_LDTR_G_LIMIT_HIGH, R)
        if ck_has(d, CK_GUEST_LDTR_RESERVED_31_17) and (ar & 0xFFFE0000ULL):
            return fail(c, CK_GUEST_LDTR_RESERVED_31_17, R)
    return RC_OK


cdef int check_guest(Cpu* c, const ck_mask_t* d) noexcept nogil:
    """SDM 27.3.1: the guest-state area (the checks in `d`)."""
    cdef uint32_t pin = <uint32_t>vr(c, VMCS_OFF_PIN_BASED_CONTROLS, 4)
    cdef uint32_t proc = <uint32_t>vr(c, VMCS_OFF_PRIMARY_PROC_BASED_CONTROLS, 4)
    cdef uint32_t proc2 = <uint32_t>vr(c, VMCS_OFF_SECONDARY_PROC_BASED_CONTROLS, 4) \
        if (proc & PROC_ACTIVATE_SECONDARY_CONTROLS) else 0
    cdef uint32_t entryc = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4)
    cdef int ug = (proc2 & PROC2_UNRESTRICTED_GUEST) != 0
    cdef int ia32e = (entryc & ENTRY_CTL_IA32E_MODE_GUEST) != 0
    cdef uint64_t cr0 = vr(c, VMCS_OFF_GUEST_CR0, 8)
    cdef uint64_t cr4 = vr(c, VMCS_OFF_GUEST_CR4, 8)
    cdef uint64_t rflags = vr(c, VMCS_OFF_GUEST_RFLAGS, 8)
    cdef uint64_t fixed0 = VMX_CAP_CR0_FIXED0
    cdef uint64_t efer, rip, pdpte, pat, pend, link, debugctl
    cdef uint32_t cs_ar, ss_ar, info, intr, act, itype, vec, rev
    cdef uint8_t* p
    cdef int i, rc, injecting, bs_rule
    cdef int R = RC_ENTRY_FAIL_GUEST
    if not ck_any(d, &CKM_GUEST):
        return RC_OK
    # 27.3.1.1
    if ck_any(d, &CKM_SDM_27_3_1_1):
        if ug:
            fixed0 &= ~(<uint64_t>(CR0_PE | CR0_PG))
        if ck_has(d, CK_GUEST_CR0) and ((cr0 & fixed0) != fixed0 or (cr0 & ~VMX_CAP_CR0_FIXED1)):
            return fail(c, CK_GUEST_CR0, R)
        if ck_has(d, CK_GUEST_CR0_PG_WITHOUT_PE) and (cr0 & CR0_PG) and not (cr0 & CR0_PE):
            return fail(c, CK_GUEST_CR0_PG_WITHOUT_PE, R)
        if ck_has(d, CK_GUEST_CR4) and \
                ((cr4 & VMX_CAP_CR4_FIXED0) != VMX_CAP_CR4_FIXED0 or (cr4 & ~(c.cr4_fixed1 | CR4_VMXE))):
            return fail(c, CK_GUEST_CR4, R)
        if ck_has(d, CK_GUEST_IA32_DEBUGCTL) and (entryc & ENTRY_CTL_LOAD_DEBUG_CONTROLS) and \
                (vr(c, VMCS_OFF_GUEST_IA32_DEBUGCTL, 8) & ~VMX_CAP_DEBUGCTL_SUPPORTED):
            return fail(c, CK_GUEST_IA32_DEBUGCTL, R)
        if ia32e:
            if ck_has(d, CK_GUEST_IA32E_MODE_CR0_PG) and not (cr0 & CR0_PG):
                return fail(c, CK_GUEST_IA32E_MODE_CR0_PG, R)
            if ck_has(d, CK_GUEST_IA32E_MODE_CR4_PAE) and not (cr4 & CR4_PAE):
                return fail(c, CK_GUEST_IA32E_MODE_CR4_PAE, R)
        elif ck_has(d, CK_GUEST_CR4_PCIDE) and (cr4 & CR4_PCIDE):
            return fail(c, CK_GUEST_CR4_PCIDE, R)
        if ck_has(d, CK_GUEST_CR3) and not phys_ok(vr(c, VMCS_OFF_GUEST_CR3, 8)):
            return fail(c, CK_GUEST_CR3, R)
        if ck_has(d, CK_GUEST_DR7) and (entryc & ENTRY_CTL_LOAD_DEBUG_CONTROLS) and (vr(c, VMCS_OFF_GUEST_DR7, 8) >> 32):
            return fail(c, CK_GUEST_DR7, R)
        if ck_has(d, CK_GUEST_SYSENTER_ESP_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_GUEST_IA32_SYSENTER_ESP, 8)):
            return fail(c, CK_GUEST_SYSENTER_ESP_CANONICAL, R)
        if ck_has(d, CK_GUEST_SYSENTER_EIP_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_GUEST_IA32_SYSENTER_EIP, 8)):
            return fail(c, CK_GUEST_SYSENTER_EIP_CANONICAL, R)
        if entryc & ENTRY_CTL_LOAD_IA32_PAT:
            pat = vr(c, VMCS_OFF_GUEST_IA32_PAT, 8)
            for i in range(8):
                if ck_has(d, CK_GUEST_IA32_PAT_PA0 + i) and not pat_entry_ok(pat, i):
                    return fail(c, CK_GUEST_IA32_PAT_PA0 + i, R)
        if entryc & ENTRY_CTL_LOAD_IA32_EFER:
            efer = vr(c, VMCS_OFF_GUEST_IA32_EFER, 8)
            if ck_has(d, CK_GUEST_IA32_EFER_RESERVED_BITS) and \
                    (efer & ~(<uint64_t>(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))):
                return fail(c, CK_GUEST_IA32_EFER_RESERVED_BITS, R)
            if ck_has(d, CK_GUEST_IA32_EFER_LMA) and ((efer & EFER_LMA) != 0) != ia32e:
                return fail(c, CK_GUEST_IA32_EFER_LMA, R)
            if ck_has(d, CK_GUEST_IA32_EFER_LME) and (cr0 & CR0_PG) and \
                    ((efer & EFER_LME) != 0) != ((efer & EFER_LMA) != 0):
                return fail(c, CK_GUEST_IA32_EFER_LME, R)
    # 27.3.1.2
    if ck_any(d, &CKM_SDM_27_3_1_2):
        rc = check_guest_segments(c, d, ug, ia32e, (rflags & F_VM) != 0, cr0)
        if rc:
            return rc
    # 27.3.1.3
    if ck_any(d, &CKM_SDM_27_3_1_3):
        if ck_has(d, CK_GUEST_GDTR_BASE_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_GUEST_GDTR_BASE, 8)):
            return fail(c, CK_GUEST_GDTR_BASE_CANONICAL, R)
        if ck_has(d, CK_GUEST_IDTR_BASE_CANONICAL) and not is_canonical(vr(c, VMCS_OFF_GUEST_IDTR_BASE, 8)):
            return fail(c, CK_GUEST_IDTR_BASE_CANONICAL, R)
        if ck_has(d, CK_GUEST_GDTR_LIMIT) and (vr(c, VMCS_OFF_GUEST_GDTR_LIMIT, 4) >> 16):
            return fail(c, CK_GUEST_GDTR_LIMIT, R)
        if ck_has(d, CK_GUEST_IDTR_LIMIT) and (vr(c, VMCS_OFF_GUEST_IDTR_LIMIT, 4) >> 16):
            return fail(c, CK_GUEST_IDTR_LIMIT, R)
    # 27.3.1.4
    info = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4)
    injecting = (info & INTR_INFO_VALID) != 0
    itype = (info >> 8) & 7
    vec = info & 0xFF
    if ck_any(d, &CKM_SDM_27_3_1_4):
        cs_ar = <uint32_t>vr(c, off_ar(S_CS), 4)
        rip = vr(c, VMCS_OFF_GUEST_RIP, 8)
        if ia32e and (cs_ar & AR_L):
            if ck_has(d, CK_GUEST_RIP_CANONICAL) and not is_canonical(rip):
                return fail(c, CK_GUEST_RIP_CANONICAL, R)
        elif ck_has(d, CK_GUEST_RIP_HIGH_BITS) and (rip >> 32):
            return fail(c, CK_GUEST_RIP_HIGH_BITS, R)
        if ck_has(d, CK_GUEST_RFLAGS_RESERVED_BITS) and (rflags & RFLAGS_RESERVED_BITS):
            return fail(c, CK_GUEST_RFLAGS_RESERVED_BITS, R)
        if ck_has(d, CK_GUEST_RFLAGS_BIT_1) and not (rflags & F_FIXED1):
            return fail(c, CK_GUEST_RFLAGS_BIT_1, R)
        if ck_has(d, CK_GUEST_RFLAGS_VM_IA32E) and ia32e and (rflags & F_VM):
            return fail(c, CK_GUEST_RFLAGS_VM_IA32E, R)
        if ck_has(d, CK_GUEST_RFLAGS_VM_CR0_PE) and not (cr0 & CR0_PE) and (rflags & F_VM):
            return fail(c, CK_GUEST_RFLAGS_VM_CR0_PE, R)
        if ck_has(d, CK_GUEST_RFLAGS_IF) and injecting and itype == INTR_EXTERNAL and not (rflags & F_IF):
            return fail(c, CK_GUEST_RFLAGS_IF, R)
    # 27.3.1.5: activity state (IA32_VMX_MISC bits 8:6 say which of HLT,
    # shutdown and wait-for-SIPI are supported; the model: HLT and
    # wait-for-SIPI, in which no event may be injected)
    if ck_any(d, &CKM_SDM_27_3_1_5):
        act = <uint32_t>vr(c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4)
        intr = <uint32_t>vr(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4)
        ss_ar = <uint32_t>vr(c, off_ar(S_SS), 4)
        if ck_has(d, CK_GUEST_ACTIVITY_STATE_RANGE) and act > 3:
            return fail(c, CK_GUEST_ACTIVITY_STATE_RANGE, R)
        # (Every state of the range is supported: IA32_VMX_MISC bits 8:6.)
        if ck_has(d, CK_GUEST_ACTIVITY_STATE_HLT_SS_DPL) and act == 1 and ((ss_ar >> 5) & 3) != 0:
            return fail(c, CK_GUEST_ACTIVITY_STATE_HLT_SS_DPL, R)
        if ck_has(d, CK_GUEST_ACTIVITY_STATE_BLOCKING) and act != 0 and (intr & 3):
            return fail(c, CK_GUEST_ACTIVITY_STATE_BLOCKING, R)
        # Events HLT does not block (SDM 27.3.1.5, the injection rule of the
        # activity state): external interrupts, NMIs, #DB and #MC, and a pending
        # MTF VM exit (type 7, vector 0).
        if ck_has(d, CK_GUEST_ACTIVITY_STATE_HLT_INJECTION) and act == 1 and injecting and \
                not (itype == INTR_EXTERNAL or itype == INTR_NMI or
                     (itype == INTR_HW_EXCEPTION and (vec == 1 or vec == 18)) or
                     (itype == INTR_OTHER_EVENT and vec == 0)):
            return fail(c, CK_GUEST_ACTIVITY_STATE_HLT_INJECTION, R)
        # The same rule for wait-for-SIPI: no event at all (the same inputs:
        # the activity state and the interruption information).
        if ck_has(d, CK_GUEST_ACTIVITY_STATE_HLT_INJECTION) and act == 3 and injecting:
            return fail(c, CK_GUEST_ACTIVITY_STATE_HLT_INJECTION, R)
        # And for the shutdown state: an NMI or a machine check only.
        if ck_has(d, CK_GUEST_ACTIVITY_STATE_HLT_INJECTION) and act == 2 and injecting and \
                not (itype == INTR_NMI or (itype == INTR_HW_EXCEPTION and vec == 18)):
            return fail(c, CK_GUEST_ACTIVITY_STATE_HLT_INJECTION, R)
        # interruptibility state
        if ck_has(d, CK_GUEST_INTERRUPTIBILITY_RESERVED_BITS) and (intr & 0xFFFFFFE0ULL):
            return fail(c, CK_GUEST_INTERRUPTIBILITY_RESERVED_BITS, R)
        if ck_has(d, CK_GUEST_INTERRUPTIBILITY_STI_AND_MOV_SS) and (intr & 3) == 3:
            return fail(c, CK_GUEST_INTERRUPTIBILITY_STI_AND_MOV_SS, R)
        if ck_has(d, CK_GUEST_INTERRUPTIBILITY_STI_IF) and (intr & 1) and not (rflags & F_IF):
            return fail(c, CK_GUEST_INTERRUPTIBILITY_STI_IF, R)
        if injecting and itype == INTR_EXTERNAL:
            if ck_has(d, CK_GUEST_INTERRUPTIBILITY_STI_EXTERNAL_INTERRUPT) and (intr & 1):
                return fail(c, CK_GUEST_INTERRUPTIBILITY_STI_EXTERNAL_INTERRUPT, R)
            if ck_has(d, CK_GUEST_INTERRUPTIBILITY_MOV_SS_EXTERNAL_INTERRUPT) and (intr & 2):
                return fail(c, CK_GUEST_INTERRUPTIBILITY_MOV_SS_EXTERNAL_INTERRUPT, R)
        if ck_has(d, CK_GUEST_INTERRUPTIBILITY_MOV_SS_NMI) and injecting and itype == INTR_NMI and (intr & 2):
            return fail(c, CK_GUEST_INTERRUPTIBILITY_MOV_SS_NMI, R)
        if ck_has(d, CK_GUEST_INTERRUPTIBILITY_SMI) and (intr & 4):
            return fail(c, CK_GUEST_INTERRUPTIBILITY_SMI, R)
        if ck_has(d, CK_GUEST_INTERRUPTIBILITY_NMI_VIRTUAL_NMIS) and (pin & PIN_VIRTUAL_NMIS) and injecting and \
                itype == INTR_NMI and (intr & 8):
            return fail(c, CK_GUEST_INTERRUPTIBILITY_NMI_VIRTUAL_NMIS, R)
        if ck_has(d, CK_GUEST_INTERRUPTIBILITY_ENCLAVE) and (intr & 0x10):
            return fail(c, CK_GUEST_INTERRUPTIBILITY_ENCLAVE, R)
        # pending debug exceptions
        pend = vr(c, VMCS_OFF_GUEST_PENDING_DEBUG_EXCEPTIONS, 8)
        if ck_has(d, CK_GUEST_PENDING_DEBUG_RESERVED_BITS) and (pend & ~0x1500FULL):
            return fail(c, CK_GUEST_PENDING_DEBUG_RESERVED_BITS, R)
        # The BS rules apply with blocking by STI or MOV SS, or in the HLT state:
        # a single-step trap is then pending exactly when TF is 1 and BTF 0.
        if (intr & 3) or act == 1:
            debugctl = vr(c, VMCS_OFF_GUEST_IA32_DEBUGCTL, 8)
            bs_rule = (rflags & F_TF) != 0 and not (debugctl & 2)
            if ck_has(d, CK_GUEST_PENDING_DEBUG_BS_SET) and bs_rule and not (pend & 0x4000):
                return fail(c, CK_GUEST_PENDING_DEBUG_BS_SET, R)
            if ck_has(d, CK_GUEST_PENDING_DEBUG_BS_CLEAR) and not bs_rule and (pend & 0x4000):
                return fail(c, CK_GUEST_PENDING_DEBUG_BS_CLEAR, R)
        if pend & 0x10000:
            if ck_has(d, CK_GUEST_PENDING_DEBUG_RTM_BITS_11_0) and (pend & 0xFFF):
                return fail(c, CK_GUEST_PENDING_DEBUG_RTM_BITS_11_0, R)
            if ck_has(d, CK_GUEST_PENDING_DEBUG_RTM_BITS_15_13) and (pend & 0xE000):
                return fail(c, CK_GUEST_PENDING_DEBUG_RTM_BITS_15_13, R)
            if ck_has(d, CK_GUEST_PENDING_DEBUG_RTM_BIT_12) and not (pend & 0x1000):
                return fail(c, CK_GUEST_PENDING_DEBUG_RTM_BIT_12, R)
            if ck_has(d, CK_GUEST_PENDING_DEBUG_RTM_SUPPORT) and not cpu_has_rtm(c):
                return fail(c, CK_GUEST_PENDING_DEBUG_RTM_SUPPORT, R)
        # VMCS link pointer.  The 32 bits it references are read from the
        # hypervisor's memory: RAM for x86 host code, RAM or the private memory
        # for the hosted hypervisor.  Where nothing backs them, the read gives
        # all ones (as VMPTRLD's), which no revision identifier matches.
        link = vr(c, VMCS_OFF_VMCS_LINK_POINTER, 8)
        if link != 0xFFFFFFFFFFFFFFFFULL:
            if ck_has(d, CK_GUEST_VMCS_LINK_POINTER_ALIGNMENT) and (link & 0xFFF):
                return fail(c, CK_GUEST_VMCS_LINK_POINTER_ALIGNMENT, R)
            if ck_has(d, CK_GUEST_VMCS_LINK_POINTER_WIDTH) and not phys_ok(link):
                return fail(c, CK_GUEST_VMCS_LINK_POINTER_WIDTH, R)
            rev = 0xFFFFFFFFU
            p = hpa_ptr(c, link, 4, c.vmx.host_x86)
            if p != NULL:
                memcpy(&rev, p, 4)
            if ck_has(d, CK_GUEST_VMCS_LINK_POINTER_REVISION) and (rev & 0x7FFFFFFFU) != VMX_CAP_VMCS_REVISION_ID:
                return fail(c, CK_GUEST_VMCS_LINK_POINTER_REVISION, R)
            if ck_has(d, CK_GUEST_VMCS_LINK_POINTER_SHADOW) and \
                    ((rev >> 31) != 0) != ((proc2 & PROC2_VMCS_SHADOWING) != 0):
                return fail(c, CK_GUEST_VMCS_LINK_POINTER_SHADOW, R)
            if ck_has(d, CK_GUEST_VMCS_LINK_POINTER_CURRENT_VMCS) and link == c.vmx.vmcs_ptr:
                return fail(c, CK_GUEST_VMCS_LINK_POINTER_CURRENT_VMCS, R)
    # 27.3.1.6: the PDPTEs of a PAE guest, from the VMCS fields with EPT and
    # from the table that guest CR3 points to without it (a table outside the
    # guest's memory cannot be read: the entry fails rather than reading
    # memory the guest was not given).
    if (cr0 & CR0_PG) and (cr4 & CR4_PAE) and not ia32e:
        for i in range(4):
            if not ck_has(d, CK_GUEST_PDPTE0 + i):
                continue
            if proc2 & PROC2_ENABLE_EPT:
                pdpte = vr(c, VMCS_OFF_GUEST_PDPTE0 + 8 * i, 8)
            else:
                p = hpa_ptr(c, (vr(c, VMCS_OFF_GUEST_CR3, 8) & 0xFFFFFFE0ULL) + 8 * i, 8, 1)
                if p == NULL:
                    return fail(c, CK_GUEST_PDPTE0 + i, R)
                memcpy(&pdpte, p, 8)
            if (pdpte & 1) and (pdpte & RSVD_PDPTE):
                return fail(c, CK_GUEST_PDPTE0 + i, R)
    return RC_OK


cdef void load_controls(Cpu* c) noexcept nogil:
    """Copy the controls the handlers test into the typed struct (decision 5)."""
    cdef int i
    c.vmx.ctl.pin = <uint32_t>vr(c, VMCS_OFF_PIN_BASED_CONTROLS, 4)
    c.vmx.ctl.proc = <uint32_t>vr(c, VMCS_OFF_PRIMARY_PROC_BASED_CONTROLS, 4)
    c.vmx.ctl.proc2 = <uint32_t>vr(c, VMCS_OFF_SECONDARY_PROC_BASED_CONTROLS, 4) \
        if (c.vmx.ctl.proc & PROC_ACTIVATE_SECONDARY_CONTROLS) else 0
    c.vmx.ctl.exit_ctl = <uint32_t>vr(c, VMCS_OFF_VM_EXIT_CONTROLS, 4)
    c.vmx.ctl.entry_ctl = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4)
    c.vmx.ctl.exception_bitmap = <uint32_t>vr(c, VMCS_OFF_EXCEPTION_BITMAP, 4)
    c.vmx.ctl.pfec_mask = <uint32_t>vr(c, VMCS_OFF_PAGE_FAULT_ERROR_CODE_MASK, 4)
    c.vmx.ctl.pfec_match = <uint32_t>vr(c, VMCS_OFF_PAGE_FAULT_ERROR_CODE_MATCH, 4)
    c.vmx.ctl.io_bitmap_a = vr(c, VMCS_OFF_IO_BITMAP_A, 8)
    c.vmx.ctl.io_bitmap_b = vr(c, VMCS_OFF_IO_BITMAP_B, 8)
    c.vmx.ctl.msr_bitmap = vr(c, VMCS_OFF_MSR_BITMAP, 8)
    c.vmx.ctl.tsc_offset = vr(c, VMCS_OFF_TSC_OFFSET, 8)
    c.vmx.ctl.eptp = vr(c, VMCS_OFF_EPT_POINTER, 8)
    c.vmx.ctl.cr0_mask = vr(c, VMCS_OFF_CR0_GUEST_HOST_MASK, 8)
    c.vmx.ctl.cr4_mask = vr(c, VMCS_OFF_CR4_GUEST_HOST_MASK, 8)
    c.vmx.ctl.cr0_shadow = vr(c, VMCS_OFF_CR0_READ_SHADOW, 8)
    c.vmx.ctl.cr4_shadow = vr(c, VMCS_OFF_CR4_READ_SHADOW, 8)
    c.vmx.ctl.ple_gap = <uint32_t>vr(c, VMCS_OFF_PLE_GAP, 4)
    c.vmx.ctl.ple_window = <uint32_t>vr(c, VMCS_OFF_PLE_WINDOW, 4)
    c.vmx.ctl.virtual_apic = vr(c, VMCS_OFF_VIRTUAL_APIC_ADDRESS, 8)
    c.vmx.ctl.apic_access = vr(c, VMCS_OFF_APIC_ACCESS_ADDRESS, 8)
    c.vmx.ctl.tpr_threshold = <uint32_t>vr(c, VMCS_OFF_TPR_THRESHOLD, 4)
    c.vmx.ctl.pi_vector = <uint32_t>vr(c, VMCS_OFF_POSTED_INTERRUPT_NOTIFICATION_VECTOR, 2)
    c.vmx.ctl.pi_desc = vr(c, VMCS_OFF_POSTED_INTERRUPT_DESCRIPTOR_ADDRESS, 8)
    for i in range(4):
        c.vmx.ctl.eoi_exit[i] = vr(c, VMCS_OFF_EOI_EXIT_BITMAP_0 + 8 * i, 8)
    # The XSS-exiting bitmap exists only with "enable XSAVES/XRSTORS" (SDM
    # 25.6.20); XSAVES and XRSTORS test it only then (26.1.3).
    c.vmx.ctl.xss_bitmap = vr(c, VMCS_OFF_XSS_EXITING_BITMAP, 8) \
        if (c.vmx.ctl.proc2 & PROC2_ENABLE_XSAVES_XRSTORS) else 0
    c.vmx.ctl.spptp = vr(c, VMCS_OFF_SUB_PAGE_PERMISSION_TABLE_POINTER, 8)
    # The first PAUSE at CPL 0 after VM entry starts a loop (SDM 26.1.3).
    c.vmx.ple_valid = 0
    c.vmx.ept = (c.vmx.ctl.proc2 & PROC2_ENABLE_EPT) != 0


cdef void load_guest_state(Cpu* c) noexcept nogil:
    """SDM 27.3.2: load the guest-state area into the processor."""
    cdef int i
    cdef uint8_t* p
    c.cr0 = vr(c, VMCS_OFF_GUEST_CR0, 8)
    c.cr3 = vr(c, VMCS_OFF_GUEST_CR3, 8)
    c.cr4 = vr(c, VMCS_OFF_GUEST_CR4, 8)
    if c.vmx.ctl.entry_ctl & ENTRY_CTL_LOAD_DEBUG_CONTROLS:
        c.dr7 = vr(c, VMCS_OFF_GUEST_DR7, 8)
        c.debugctl = vr(c, VMCS_OFF_GUEST_IA32_DEBUGCTL, 8)
    c.regs[R_SP] = vr(c, VMCS_OFF_GUEST_RSP, 8)
    c.rip = vr(c, VMCS_OFF_GUEST_RIP, 8)
    c.rflags = vr(c, VMCS_OFF_GUEST_RFLAGS, 8)
    for i in range(8):
        c.seg[i].sel = <uint16_t>vr(c, off_sel(i), 2)
        c.seg[i].base = vr(c, off_base(i), 8)
        c.seg[i].limit = <uint32_t>vr(c, off_limit(i), 4)
        c.seg[i].ar = <uint32_t>vr(c, off_ar(i), 4)
    c.gdtr_base = vr(c, VMCS_OFF_GUEST_GDTR_BASE, 8)
    c.gdtr_limit = <uint32_t>vr(c, VMCS_OFF_GUEST_GDTR_LIMIT, 4)
    c.idtr_base = vr(c, VMCS_OFF_GUEST_IDTR_BASE, 8)
    c.idtr_limit = <uint32_t>vr(c, VMCS_OFF_GUEST_IDTR_LIMIT, 4)
    c.sysenter_cs = vr(c, VMCS_OFF_GUEST_IA32_SYSENTER_CS, 4)
    c.sysenter_esp = vr(c, VMCS_OFF_GUEST_IA32_SYSENTER_ESP, 8)
    c.sysenter_eip = vr(c, VMCS_OFF_GUEST_IA32_SYSENTER_EIP, 8)
    if c.vmx.ctl.entry_ctl & ENTRY_CTL_LOAD_IA32_EFER:
        c.efer = vr(c, VMCS_OFF_GUEST_IA32_EFER, 8)
    else:
        # Without "load IA32_EFER", LMA and LME follow "IA-32e mode guest"
        # (SDM 27.3.2.1).
        if c.vmx.ctl.entry_ctl & ENTRY_CTL_IA32E_MODE_GUEST:
            c.efer |= EFER_LMA | EFER_LME
        else:
            c.efer &= ~(<uint64_t>(EFER_LMA | EFER_LME))
    if c.vmx.ctl.entry_ctl & ENTRY_CTL_LOAD_IA32_PAT:
        c.pat = vr(c, VMCS_OFF_GUEST_IA32_PAT, 8)
    if (c.cr0 & CR0_PG) and (c.cr4 & CR4_PAE) and not (c.efer & EFER_LMA):
        # SDM 27.3.2.4: with EPT from the VMCS, without it from
        # the guest's CR3 (check_guest made sure that table is in its RAM).
        for i in range(4):
            if c.vmx.ept:
                c.pdpte[i] = vr(c, VMCS_OFF_GUEST_PDPTE0 + 8 * i, 8)
            else:
                p = hpa_ptr(c, (c.cr3 & 0xFFFFFFE0ULL) + 8 * i, 8, 1)
                if p != NULL:
                    memcpy(&c.pdpte[i], p, 8)
    c.activity = <uint32_t>vr(c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4)
    c.interruptibility = <uint32_t>vr(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4)
    # [debug] Pending debug exceptions (B0-B3, enabled breakpoint, BS) are
    # delivered at the first boundary not blocked by MOV SS (SDM Vol. 3C
    # 27.7.3; core/insn/debug.pxi).  Breakpoints set from Python between
    # runs: the TLB is made to see them.
    c.dbg_pending = vr(c, VMCS_OFF_GUEST_PENDING_DEBUG_EXCEPTIONS, 8) & 0x500FULL
    if (c.dr7 & 0xFF) or c.dbg_pending:
        dbg_changed(c)


cdef int entry_checks(Cpu* c, int launch, const ck_mask_t* d) noexcept nogil:
    """The checks of VMLAUNCH (launch=1) or VMRESUME in SDM order, those in
    `d` (CKM_ALL: every one), writing nothing to the VMCS: RC_OK, or the
    failure code with c.vmx.entry_check.  The launch state is always checked."""
    cdef int rc
    cdef uint8_t launched = c.vmx.vmcs[VMCS_OFF_LAUNCH_STATE]
    if launch and launched:
        c.vmx.entry_check = -VMXERR_VMLAUNCH_NONCLEAR_VMCS
        return RC_ENTRY_FAIL_CTL
    if not launch and not launched:
        c.vmx.entry_check = -VMXERR_VMRESUME_NONLAUNCHED_VMCS
        return RC_ENTRY_FAIL_CTL
    rc = check_controls(c, d)
    if rc == RC_OK:
        rc = check_host(c, d)
    if rc == RC_OK:
        rc = check_guest(c, d)
    return rc


# Which checks VMRESUME runs (docs/architecture.rst, "Entry checks at
# VMRESUME"); set from Python by set_entry_check_mode().
cdef enum:
    # vm_entry's result in verification mode when the two passes disagree;
    # far from the RC_* of core/state.pxi, which the interpreter extends.
    RC_ENTRY_CHECK_MISMATCH = 64

cdef enum:
    ENTRY_CHECKS_INCREMENTAL = 0   # the checks whose inputs changed (c.vmx.ck_dirty) and CKM_ALWAYS
    ENTRY_CHECKS_FULL = 1          # every check, every time
    ENTRY_CHECKS_VERIFY = 2        # both, and RC_ENTRY_CHECK_MISMATCH if they disagree

cdef int entry_check_mode = ENTRY_CHECKS_INCREMENTAL


# --- can the guest write the VMCS? ---------------------------------------
#
# Without EPT the guest reaches only guest-visible slots (its RAM).  With EPT
# it reaches the host-physical pages the EPT paging structures map, and those
# may include the private memory where the VMCS lives: a guest write there
# changes check inputs behind vwt.  ept_reaches_private over-approximates:
# 1 if a leaf may map a page of a slot the guest does not see, if a paging
# structure lies in memory the guest or vm.write can change (then the mapping
# can change during the run), or if the structures are too big to walk.

cdef enum:
    EPT_WALK_BUDGET = 1 << 18     # entries; a 256 GiB guest's one-to-one EPT has 132k


cdef int hpa_in_hidden_slot(Cpu* c, uint64_t hpa, uint64_t size) noexcept nogil:
    """1 if [hpa, hpa+size) overlaps a slot the guest does not see."""
    cdef int i
    for i in range(c.nslots):
        if not c.slots[i].guest_visible and hpa < c.slots[i].base + c.slots[i].size and \
                c.slots[i].base < hpa + size:
            return 1
    return 0


cdef int ept_table_reaches_private(Cpu* c, uint64_t table, int level, int* budget) noexcept nogil:
    cdef uint64_t phys = ((1ULL << MAXPHYADDR) - 1) & ~0xFFFULL
    cdef uint64_t e, size
    cdef uint8_t* p = hpa_ptr(c, table, 4096, 0)
    cdef int i
    if p == NULL:
        return 0                  # no memory: every walk through it fails
    if not hpa_in_hidden_slot(c, table, 4096):
        return 1                  # the guest (or vm.write) may rewrite this structure
    for i in range(512):
        budget[0] -= 1
        if budget[0] < 0:
            return 1
        memcpy(&e, p + 8 * i, 8)
        if not (e & 7):
            continue
        if e & 0x000FFFFFFFFFF000ULL & ~phys:
            return 1              # reserved address bits: a misconfiguration, taken as unknown
        if level == 1 or ((level == 2 or level == 3) and (e & 0x80)):
            size = 1ULL << (12 + 9 * (level - 1))
            if hpa_in_hidden_slot(c, e & phys & ~(size - 1), size):
                return 1
        elif ept_table_reaches_private(c, e & phys, level - 1, budget):
            return 1
    return 0


cdef int ept_reaches_private(Cpu* c) noexcept nogil:
    """1 if a guest entered from the VMCS as it stands might write memory
    outside the guest-visible slots (the VMCS among it)."""
    cdef uint32_t proc = <uint32_t>vr(c, VMCS_OFF_PRIMARY_PROC_BASED_CONTROLS, 4)
    cdef uint64_t eptp = vr(c, VMCS_OFF_EPT_POINTER, 8)
    cdef int budget = EPT_WALK_BUDGET
    if not (proc & PROC_ACTIVATE_SECONDARY_CONTROLS) or \
            not (vr(c, VMCS_OFF_SECONDARY_PROC_BASED_CONTROLS, 4) & PROC2_ENABLE_EPT):
        return 0
    if eptp & 0x000FFFFFFFFFF000ULL & ~(((1ULL << MAXPHYADDR) - 1)):
        return 1
    return ept_table_reaches_private(c, eptp & ((1ULL << MAXPHYADDR) - 1) & ~0xFFFULL, 4, &budget)


cdef ck_mask_t resume_mask(Cpu* c) noexcept nogil:
    """The checks an incremental VMRESUME runs: those whose inputs changed
    since the last successful entry, CKM_ALWAYS, and every check if the
    guest that ran since could reach the VMCS (c.vmx.ck_ept_private)."""
    if c.vmx.ck_ept_private:
        return CKM_ALL
    cdef ck_mask_t d = c.vmx.ck_dirty
    ck_or(&d, &CKM_ALWAYS)
    return d


cdef int vmresume_checks(Cpu* c) noexcept nogil:
    """The checks of a VMRESUME under entry_check_mode.  In verification mode
    both passes run, and RC_ENTRY_CHECK_MISMATCH says they disagreed (on
    passing, or on the check that failed first)."""
    cdef int rc, rc_inc, ck_inc
    cdef ck_mask_t d
    if entry_check_mode == ENTRY_CHECKS_FULL:
        return entry_checks(c, 0, &CKM_ALL)
    d = resume_mask(c)
    rc = entry_checks(c, 0, &d)
    if entry_check_mode == ENTRY_CHECKS_VERIFY:
        rc_inc = rc
        ck_inc = c.vmx.entry_check
        rc = entry_checks(c, 0, &CKM_ALL)
        if rc != rc_inc or (rc != RC_OK and c.vmx.entry_check != ck_inc):
            return RC_ENTRY_CHECK_MISMATCH
    return rc


cdef int load_entry_msrs(Cpu* c, uint64_t* failed) noexcept nogil:
    """SDM 27.4: load the MSRs of the VM-entry MSR-load area, entry after
    entry, with the model's WRMSR; RC_OK, or RC_ENTRY_FAIL_GUEST with
    c.vmx.entry_check the MSR_LOAD_* check and failed[0] the entry's index
    counted from 1 (the MSRs of the entries before it stay loaded).  The
    area is read from the hypervisor's memory (RAM for x86 host code, RAM or
    the private memory for the hosted hypervisor); 16 bytes nothing backs
    read as all ones, whose reserved bits fail the entry."""
    cdef uint64_t count = vr(c, VMCS_OFF_VM_ENTRY_MSR_LOAD_COUNT, 4)
    cdef uint64_t addr = vr(c, VMCS_OFF_VM_ENTRY_MSR_LOAD_ADDRESS, 8)
    cdef uint64_t limit = 512 * (((VMX_CAP_MISC >> 25) & 7) + 1)
    cdef uint64_t i
    cdef uint64_t e[2]
    cdef uint32_t idx
    cdef uint8_t* p
    cdef int ck
    for i in range(count):
        ck = -1
        if i >= limit:
            # Appendix A.6: more entries than the recommended maximum give
            # undefined behavior; the model fails at the first one beyond it
            # (as KVM does), so no count makes an entry run for long.
            ck = CK_MSR_LOAD_COUNT
        else:
            p = hpa_ptr(c, addr + 16 * i, 16, c.vmx.host_x86)
            if p == NULL:
                e[0] = 0xFFFFFFFFFFFFFFFFULL
                e[1] = 0xFFFFFFFFFFFFFFFFULL
            else:
                memcpy(e, p, 16)
            idx = <uint32_t>e[0]
            if idx == MSR_IA32_FS_BASE or idx == MSR_IA32_GS_BASE:
                ck = CK_MSR_LOAD_FS_GS_BASE
            elif (idx >> 8) == 0x8:
                ck = CK_MSR_LOAD_X2APIC
            elif idx == MSR_IA32_SMM_MONITOR_CTL:
                ck = CK_MSR_LOAD_SMM_MONITOR_CTL
            elif e[0] >> 32:
                ck = CK_MSR_LOAD_RESERVED_BITS
            elif msr_write(c, idx, e[1]):
                ck = CK_MSR_LOAD_WRMSR
        if ck >= 0:
            c.vmx.entry_check = ck
            failed[0] = i + 1
            return RC_ENTRY_FAIL_GUEST
    return RC_OK


cdef inline uint64_t entry_failure_qualification(int check) noexcept nogil:
    """The exit qualification of a guest-state entry failure (SDM 27.8)."""
    if check >= CK_GUEST_VMCS_LINK_POINTER_ALIGNMENT and check <= CK_GUEST_VMCS_LINK_POINTER_CURRENT_VMCS:
        return 4
    if check >= CK_GUEST_PDPTE0 and check <= CK_GUEST_PDPTE3:
        return 2
    return 0


cdef int vm_entry(Cpu* c, int launch) noexcept nogil:
    """VMLAUNCH (launch=1) or VMRESUME on the current VMCS: checks, then load.
    Returns RC_OK with the processor in VMX non-root operation.  VMLAUNCH
    runs every check; VMRESUME those vmresume_checks picks.  A failure
    after the guest state was loaded (exit reason 34) returns
    RC_ENTRY_FAIL_GUEST too: the exit-reason field tells them apart."""
    cdef int rc
    cdef uint64_t msr_index = 0
    # A VMCS in RAM may have been written with MOV behind VMWRITE: every
    # check, every time (the record of what changed covers the API only).
    rc = entry_checks(c, launch, &CKM_ALL) if (launch or c.vmx.vmcs_in_ram) else vmresume_checks(c)
    if rc == RC_ENTRY_CHECK_MISMATCH:
        return rc
    if rc == RC_ENTRY_FAIL_CTL and c.vmx.entry_check < 0:
        return rc
    if rc == RC_ENTRY_FAIL_CTL or rc == RC_ENTRY_FAIL_HOST:
        vw(c, VMCS_OFF_VM_INSTRUCTION_ERROR, 4,
           VMXERR_ENTRY_INVALID_CONTROL_FIELDS if rc == RC_ENTRY_FAIL_CTL else VMXERR_ENTRY_INVALID_HOST_STATE)
        return rc
    if rc:
        # SDM 27.8: basic reason 33 with bit 31 set; the guest state is not
        # loaded and nothing is saved.  The exit qualification is 0 except 2
        # for a PDPTE problem and 4 for an invalid VMCS link pointer (SDM
        # Vol. 3C 27.8, "VM-entry failures during or after loading guest
        # state").
        vw(c, VMCS_OFF_EXIT_REASON, 4, 0x80000000ULL | EXIT_REASON_ENTRY_FAILURE_INVALID_GUEST_STATE)
        vw(c, VMCS_OFF_EXIT_QUALIFICATION, 8, entry_failure_qualification(c.vmx.entry_check))
        return rc
    load_controls(c)
    load_guest_state(c)
    if load_entry_msrs(c, &msr_index):
        # SDM 27.8: basic reason 34 with bit 31 set, the exit qualification
        # the failing entry's index; the guest state stays as loaded.
        vw(c, VMCS_OFF_EXIT_REASON, 4, 0x80000000ULL | EXIT_REASON_ENTRY_FAILURE_MSR_LOADING)
        vw(c, VMCS_OFF_EXIT_QUALIFICATION, 8, msr_index)
        return RC_ENTRY_FAIL_GUEST
    c.vmx.vmcs[VMCS_OFF_LAUNCH_STATE] = 1
    # Every check passed on the VMCS as it stands: the new baseline.  Where
    # EPT points was among the changes (always so at VMLAUNCH, which finds
    # every check dirty): look again whether the guest can reach the VMCS.
    # (EPT_POINTER_WIDTH reads every bit of EPT_POINTER and "enable EPT".)
    if ck_has(&c.vmx.ck_dirty, CK_EPT_POINTER_WIDTH) and not c.vmx.vmcs_in_ram:
        c.vmx.ck_ept_private = ept_reaches_private(c)
    if not c.vmx.vmcs_in_ram and apicv_reaches_vmcs(c):
        c.vmx.ck_ept_private = 1
    ck_clear(&c.vmx.ck_dirty)
    c.vmx.non_root = 1
    c.vmx.on = 1
    compute_mode(c)
    tlb_at_entry(c)         # flushes unless VPID keeps the guest's mappings
    apicv_entry(c)          # [APIC virtualization] RVI, SVI, VPPR (core/vmx/apicv.pxi)
    # [events] Event injection (SDM 27.6), core/vmx/events.pxi.  Only a
    # delivery that cannot go on fails here: undo the entry.
    rc = entry_events(c)
    if rc != RC_OK:
        c.vmx.non_root = 0
        c.vmx.ept = 0
        return rc
    c.entries += 1
    account_exit_time(c)
    return RC_OK
