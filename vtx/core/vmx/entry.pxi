# VM entry (SDM Vol. 3 chapter 26): the checks on the controls, the host state
# and the guest state, one function per area in SDM order (decision 6), then
# loading the guest state.  A failed check records its CK_* number (the table
# is vtx/spec/entry_checks.py) so the Python error can name it.
#
# Each check runs only if its bit is set in `d`, a CKM_* mask: every bit for
# VMLAUNCH and check_entry(), and for VMRESUME the checks whose inputs changed
# since the last successful VM entry (c.vmx.ck_dirty, kept by vwt and the API) plus
# CKM_ALWAYS.  The checks left out passed then and read the same values now,
# so the first failing check is the one the full pass would name
# (docs/architecture.rst, "Entry checks at VMRESUME").  Values a check only
# uses to decide whether it applies (ug, ia32e, v86) are read unconditionally.

cdef inline int ctls_ok(uint32_t v, uint64_t cap) noexcept nogil:
    """A control word respects a capability MSR: allowed-0 settings in bits
    31:0 must be 1, allowed-1 settings in bits 63:32 bound what may be 1
    (SDM Vol. 3 A.3)."""
    cdef uint32_t must1 = <uint32_t>(cap & 0xFFFFFFFFULL)
    cdef uint32_t may1 = <uint32_t>(cap >> 32)
    return (v & must1) == must1 and (v & ~may1) == 0


cdef inline int phys_ok(uint64_t a) noexcept nogil:
    return (a >> MAXPHYADDR) == 0


cdef inline int fail(Cpu* c, int check, int rc) noexcept nogil:
    c.vmx.entry_check = check
    return rc


cdef int check_controls(Cpu* c, uint64_t d) noexcept nogil:
    """SDM 26.2.1: VM-execution, VM-exit and VM-entry control fields (the
    checks in `d`)."""
    cdef uint32_t pin = <uint32_t>vr(c, VMCS_OFF_PIN_BASED_CONTROLS, 4)
    cdef uint32_t proc = <uint32_t>vr(c, VMCS_OFF_PRIMARY_PROC_BASED_CONTROLS, 4)
    cdef uint32_t proc2 = 0
    cdef uint32_t exitc = <uint32_t>vr(c, VMCS_OFF_VM_EXIT_CONTROLS, 4)
    cdef uint32_t entryc = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4)
    cdef uint64_t a, b, eptp
    cdef uint32_t info, itype, vec
    cdef int err_ok
    cdef int R = RC_ENTRY_FAIL_CTL
    if not (d & CKM_CONTROL):
        return RC_OK
    if (d & CKM_PIN_BASED_CONTROLS) and not ctls_ok(pin, VMX_CAP_TRUE_PINBASED_CTLS):
        return fail(c, CK_PIN_BASED_CONTROLS, R)
    if (d & CKM_PRIMARY_PROC_BASED_CONTROLS) and not ctls_ok(proc, VMX_CAP_TRUE_PROCBASED_CTLS):
        return fail(c, CK_PRIMARY_PROC_BASED_CONTROLS, R)
    if proc & PROC_ACTIVATE_SECONDARY_CONTROLS:
        proc2 = <uint32_t>vr(c, VMCS_OFF_SECONDARY_PROC_BASED_CONTROLS, 4)
        if (d & CKM_SECONDARY_PROC_BASED_CONTROLS) and not ctls_ok(proc2, VMX_CAP_PROCBASED_CTLS2):
            return fail(c, CK_SECONDARY_PROC_BASED_CONTROLS, R)
    if (d & CKM_CR3_TARGET_COUNT) and vr(c, VMCS_OFF_CR3_TARGET_COUNT, 4) > 4:
        return fail(c, CK_CR3_TARGET_COUNT, R)
    if (d & CKM_IO_BITMAP_ADDRESSES) and (proc & PROC_USE_IO_BITMAPS):
        a = vr(c, VMCS_OFF_IO_BITMAP_A, 8)
        b = vr(c, VMCS_OFF_IO_BITMAP_B, 8)
        if (a & 0xFFF) or (b & 0xFFF) or not phys_ok(a) or not phys_ok(b):
            return fail(c, CK_IO_BITMAP_ADDRESSES, R)
    if (d & CKM_MSR_BITMAP_ADDRESS) and (proc & PROC_USE_MSR_BITMAPS):
        a = vr(c, VMCS_OFF_MSR_BITMAP, 8)
        if (a & 0xFFF) or not phys_ok(a):
            return fail(c, CK_MSR_BITMAP_ADDRESS, R)
    # SDM 27.2.1.1: "virtual NMIs" needs "NMI exiting", and "NMI-window
    # exiting" needs "virtual NMIs".
    if (d & CKM_VIRTUAL_NMIS) and (((pin & PIN_VIRTUAL_NMIS) and not (pin & PIN_NMI_EXITING)) or
                                   ((proc & PROC_NMI_WINDOW_EXITING) and not (pin & PIN_VIRTUAL_NMIS))):
        return fail(c, CK_VIRTUAL_NMIS, R)
    if (d & CKM_EPT_POINTER) and (proc2 & PROC2_ENABLE_EPT):
        eptp = vr(c, VMCS_OFF_EPT_POINTER, 8)
        # Memory type WB (6) is the one IA32_VMX_EPT_VPID_CAP reports (bit
        # 14); UC (0) would need bit 8.  Walk length - 1 in bits 5:3 must be
        # 3; bit 6 (accessed/dirty flags) needs EPT_VPID_CAP bit 21; bits
        # 11:7 are reserved.
        if ((eptp & 7) != 6 and not ((eptp & 7) == 0 and (VMX_CAP_EPT_VPID_CAP & (1ULL << 8)))) or \
                ((eptp >> 3) & 7) != 3 or \
                ((eptp & 0x40) and not (VMX_CAP_EPT_VPID_CAP & (1ULL << 21))) or \
                (eptp & 0xF80) or not phys_ok(eptp):
            return fail(c, CK_EPT_POINTER, R)
    if (d & CKM_VPID_NONZERO) and (proc2 & PROC2_ENABLE_VPID) and vr(c, VMCS_OFF_VIRTUAL_PROCESSOR_ID, 2) == 0:
        return fail(c, CK_VPID_NONZERO, R)
    if (d & CKM_UNRESTRICTED_GUEST_NEEDS_EPT) and (proc2 & PROC2_UNRESTRICTED_GUEST) and \
            not (proc2 & PROC2_ENABLE_EPT):
        return fail(c, CK_UNRESTRICTED_GUEST_NEEDS_EPT, R)
    if proc2 & PROC2_ENABLE_VM_FUNCTIONS:
        a = vr(c, VMCS_OFF_VM_FUNCTION_CONTROLS, 8)
        if (d & CKM_VM_FUNCTION_CONTROLS) and (a & ~VMX_CAP_VMFUNC):
            return fail(c, CK_VM_FUNCTION_CONTROLS, R)
        b = vr(c, VMCS_OFF_EPTP_LIST_ADDRESS, 8)
        if (d & CKM_EPTP_SWITCHING) and (a & 1) and \
                (not (proc2 & PROC2_ENABLE_EPT) or (b & 0xFFF) or not phys_ok(b)):
            return fail(c, CK_EPTP_SWITCHING, R)
    # 26.2.1.2
    # SDM 27.2.1.2: "save VMX-preemption timer value" needs "activate
    # VMX-preemption timer".
    if (d & CKM_VM_EXIT_CONTROLS) and (not ctls_ok(exitc, VMX_CAP_TRUE_EXIT_CTLS) or (
            (exitc & EXIT_CTL_SAVE_VMX_PREEMPTION_TIMER) and not (pin & PIN_ACTIVATE_VMX_PREEMPTION_TIMER))):
        return fail(c, CK_VM_EXIT_CONTROLS, R)
    if (d & CKM_VM_EXIT_MSR_AREAS) and \
            (vr(c, VMCS_OFF_VM_EXIT_MSR_STORE_COUNT, 4) or vr(c, VMCS_OFF_VM_EXIT_MSR_LOAD_COUNT, 4)):
        return fail(c, CK_VM_EXIT_MSR_AREAS, R)
    # 26.2.1.3
    if (d & CKM_VM_ENTRY_CONTROLS) and not ctls_ok(entryc, VMX_CAP_TRUE_ENTRY_CTLS):
        return fail(c, CK_VM_ENTRY_CONTROLS, R)
    info = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4)
    if (d & CKM_VM_ENTRY_INTERRUPTION_INFO) and (info & 0x80000000ULL):
        # SDM Vol. 3C 27.2.1.3 (26.2.1.3 in older editions): type 1 is
        # reserved, and type 7 (other event) is reserved without the 1-setting
        # of "monitor trap flag" in the capabilities, and vector 0 the only
        # one for it (a pending MTF exit); NMI has
        # vector 2, hardware exceptions at most 31; bits 30:12 are reserved.
        itype = (info >> 8) & 7
        vec = info & 0xFF
        if (info & 0x7FFFF000ULL) or itype == 1 or (itype == 2 and vec != 2) or \
                (itype == 3 and vec > 31) or \
                (itype == 7 and (vec != 0 or not ((VMX_CAP_TRUE_PROCBASED_CTLS >> 32) & PROC_MONITOR_TRAP_FLAG))):
            return fail(c, CK_VM_ENTRY_INTERRUPTION_INFO, R)
        # Deliver-error-code (bit 11) is 1 if and only if "unrestricted guest"
        # is 0 or guest CR0.PE is 1, the type is hardware exception, and the
        # vector is one that pushes an error code (IA32_VMX_BASIC[56] = 0).
        err_ok = (itype == 3 and (not (proc2 & PROC2_UNRESTRICTED_GUEST) or (vr(c, VMCS_OFF_GUEST_CR0, 8) & CR0_PE))
                  and (vec == 8 or (vec >= 10 and vec <= 14) or vec == 17 or vec == 21))
        if ((info & 0x800) != 0) != err_ok:
            return fail(c, CK_VM_ENTRY_INTERRUPTION_INFO, R)
        # With an error code to deliver, bits 31:16 of the error code are 0.
        if (info & 0x800) and (vr(c, VMCS_OFF_VM_ENTRY_EXCEPTION_ERROR_CODE, 4) >> 16):
            return fail(c, CK_VM_ENTRY_INTERRUPTION_INFO, R)
        # Software interrupts and (privileged) software exceptions need an
        # instruction length of 1-15 (0 only with IA32_VMX_MISC[30]).
        if (itype == 4 or itype == 5 or itype == 6):
            a = vr(c, VMCS_OFF_VM_ENTRY_INSTRUCTION_LENGTH, 4)
            if a > 15 or (a == 0 and not (VMX_CAP_MISC & (1ULL << 30))):
                return fail(c, CK_VM_ENTRY_INTERRUPTION_INFO, R)
    if (d & CKM_VM_ENTRY_MSR_LOAD_AREA) and vr(c, VMCS_OFF_VM_ENTRY_MSR_LOAD_COUNT, 4):
        return fail(c, CK_VM_ENTRY_MSR_LOAD_AREA, R)
    return RC_OK


cdef int check_host(Cpu* c, uint64_t d) noexcept nogil:
    """SDM 27.2.2 - 27.2.4: host control registers, MSRs, selectors and the
    address-space size (the checks in `d`).  The hosted hypervisor is a
    64-bit program, so the processor counts as being in IA-32e mode; x86
    host code is in IA-32e mode when its EFER.LMA is 1."""
    cdef int host_ia32e = (c.efer & EFER_LMA) != 0 if c.vmx.host_x86 else 1
    cdef uint64_t cr0 = vr(c, VMCS_OFF_HOST_CR0, 8)
    cdef uint64_t cr4 = vr(c, VMCS_OFF_HOST_CR4, 8)
    cdef uint32_t exitc = <uint32_t>vr(c, VMCS_OFF_VM_EXIT_CONTROLS, 4)
    cdef uint64_t efer
    cdef int i
    cdef int R = RC_ENTRY_FAIL_HOST
    if not (d & CKM_HOST):
        return RC_OK
    if (d & CKM_HOST_CR0) and \
            ((cr0 & VMX_CAP_CR0_FIXED0) != VMX_CAP_CR0_FIXED0 or (cr0 & ~VMX_CAP_CR0_FIXED1)):
        return fail(c, CK_HOST_CR0, R)
    if (d & CKM_HOST_CR4) and \
            ((cr4 & VMX_CAP_CR4_FIXED0) != VMX_CAP_CR4_FIXED0 or (cr4 & ~VMX_CAP_CR4_FIXED1)):
        return fail(c, CK_HOST_CR4, R)
    if (d & CKM_HOST_CR3) and not phys_ok(vr(c, VMCS_OFF_HOST_CR3, 8)):
        return fail(c, CK_HOST_CR3, R)
    if (d & CKM_HOST_CANONICAL_ADDRESSES) and not (is_canonical(vr(c, VMCS_OFF_HOST_IA32_SYSENTER_ESP, 8)) and
            is_canonical(vr(c, VMCS_OFF_HOST_IA32_SYSENTER_EIP, 8)) and
            is_canonical(vr(c, VMCS_OFF_HOST_FS_BASE, 8)) and
            is_canonical(vr(c, VMCS_OFF_HOST_GS_BASE, 8)) and
            is_canonical(vr(c, VMCS_OFF_HOST_TR_BASE, 8)) and
            is_canonical(vr(c, VMCS_OFF_HOST_GDTR_BASE, 8)) and
            is_canonical(vr(c, VMCS_OFF_HOST_IDTR_BASE, 8))):
        return fail(c, CK_HOST_CANONICAL_ADDRESSES, R)
    if (d & CKM_HOST_IA32_PAT) and (exitc & EXIT_CTL_LOAD_IA32_PAT) and \
            not pat_valid(vr(c, VMCS_OFF_HOST_IA32_PAT, 8)):
        return fail(c, CK_HOST_IA32_PAT, R)
    if (d & CKM_HOST_IA32_EFER) and (exitc & EXIT_CTL_LOAD_IA32_EFER):
        efer = vr(c, VMCS_OFF_HOST_IA32_EFER, 8)
        if (efer & ~(<uint64_t>(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))) or \
                ((efer & EFER_LMA) != 0) != ((exitc & EXIT_CTL_HOST_ADDRESS_SPACE_SIZE) != 0) or \
                ((efer & EFER_LME) != 0) != ((exitc & EXIT_CTL_HOST_ADDRESS_SPACE_SIZE) != 0):
            return fail(c, CK_HOST_IA32_EFER, R)
    if d & CKM_HOST_SELECTORS:
        for i in range(7):
            if vr(c, VMCS_OFF_HOST_ES_SELECTOR + 2 * i, 2) & 7:
                return fail(c, CK_HOST_SELECTORS, R)
        if vr(c, VMCS_OFF_HOST_CS_SELECTOR, 2) == 0 or vr(c, VMCS_OFF_HOST_TR_SELECTOR, 2) == 0:
            return fail(c, CK_HOST_SELECTORS, R)
    # 27.2.4: in IA-32e mode "host address-space size" must be 1; outside
    # it, that control and "IA-32e mode guest" must be 0.  With the control
    # 1, CR4.PAE is 1 and HOST_RIP canonical; with it 0, CR4.PCIDE is 0 and
    # HOST_RIP has no bits above 31.
    if d & CKM_HOST_ADDRESS_SPACE_SIZE:
        if host_ia32e and not (exitc & EXIT_CTL_HOST_ADDRESS_SPACE_SIZE):
            return fail(c, CK_HOST_ADDRESS_SPACE_SIZE, R)
        if not host_ia32e and ((exitc & EXIT_CTL_HOST_ADDRESS_SPACE_SIZE) or
                               (vr(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4) & ENTRY_CTL_IA32E_MODE_GUEST)):
            return fail(c, CK_HOST_ADDRESS_SPACE_SIZE, R)
        if exitc & EXIT_CTL_HOST_ADDRESS_SPACE_SIZE:
            if not (cr4 & CR4_PAE) or not is_canonical(vr(c, VMCS_OFF_HOST_RIP, 8)):
                return fail(c, CK_HOST_ADDRESS_SPACE_SIZE, R)
        elif (cr4 & CR4_PCIDE) or (vr(c, VMCS_OFF_HOST_RIP, 8) >> 32):
            return fail(c, CK_HOST_ADDRESS_SPACE_SIZE, R)
    return RC_OK


cdef inline int g_ok(uint32_t limit, uint32_t ar) noexcept nogil:
    """Granularity consistent with the limit (SDM 26.3.1.2)."""
    if (limit & 0xFFF) != 0xFFF and (ar & AR_G):
        return 0
    if (limit & 0xFFF00000ULL) and not (ar & AR_G):
        return 0
    return 1


cdef int check_guest(Cpu* c, uint64_t d) noexcept nogil:
    """SDM 26.3.1: the guest-state area (the checks in `d`)."""
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
    cdef uint64_t efer, rip, base, pdpte
    cdef uint32_t ar, lim, t, cs_ar, ss_ar, info, intr, act, itype
    cdef uint16_t sel
    cdef uint8_t* p
    cdef int i, v86, dpl
    cdef int R = RC_ENTRY_FAIL_GUEST
    if not (d & CKM_GUEST):
        return RC_OK
    # 26.3.1.1
    if ug:
        fixed0 &= ~(<uint64_t>(CR0_PE | CR0_PG))
    if (d & CKM_GUEST_CR0) and \
            ((cr0 & fixed0) != fixed0 or (cr0 & ~VMX_CAP_CR0_FIXED1) or ((cr0 & CR0_PG) and not (cr0 & CR0_PE))):
        return fail(c, CK_GUEST_CR0, R)
    if (d & CKM_GUEST_CR4) and \
            ((cr4 & VMX_CAP_CR4_FIXED0) != VMX_CAP_CR4_FIXED0 or (cr4 & ~VMX_CAP_CR4_FIXED1)):
        return fail(c, CK_GUEST_CR4, R)
    if (d & CKM_GUEST_CR3) and not phys_ok(vr(c, VMCS_OFF_GUEST_CR3, 8)):
        return fail(c, CK_GUEST_CR3, R)
    if (d & CKM_GUEST_IA32E_MODE_PAGING) and \
            ((ia32e and (not (cr0 & CR0_PG) or not (cr4 & CR4_PAE))) or (not ia32e and (cr4 & CR4_PCIDE))):
        return fail(c, CK_GUEST_IA32E_MODE_PAGING, R)
    if (d & CKM_GUEST_DR7) and (entryc & ENTRY_CTL_LOAD_DEBUG_CONTROLS) and (vr(c, VMCS_OFF_GUEST_DR7, 8) >> 32):
        return fail(c, CK_GUEST_DR7, R)
    if (d & CKM_GUEST_SYSENTER_CANONICAL) and \
            (not is_canonical(vr(c, VMCS_OFF_GUEST_IA32_SYSENTER_ESP, 8)) or
             not is_canonical(vr(c, VMCS_OFF_GUEST_IA32_SYSENTER_EIP, 8))):
        return fail(c, CK_GUEST_SYSENTER_CANONICAL, R)
    if (d & CKM_GUEST_IA32_PAT) and (entryc & ENTRY_CTL_LOAD_IA32_PAT) and \
            not pat_valid(vr(c, VMCS_OFF_GUEST_IA32_PAT, 8)):
        return fail(c, CK_GUEST_IA32_PAT, R)
    if (d & CKM_GUEST_IA32_EFER) and (entryc & ENTRY_CTL_LOAD_IA32_EFER):
        efer = vr(c, VMCS_OFF_GUEST_IA32_EFER, 8)
        if (efer & ~(<uint64_t>(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))) or \
                ((efer & EFER_LMA) != 0) != ia32e or \
                ((cr0 & CR0_PG) and ((efer & EFER_LME) != 0) != ((efer & EFER_LMA) != 0)):
            return fail(c, CK_GUEST_IA32_EFER, R)
    # 26.3.1.2
    v86 = (rflags & F_VM) != 0
    if (d & CKM_GUEST_TR_LDTR_TI) and \
            ((vr(c, off_sel(S_TR), 2) & 4) or
             (not (vr(c, off_ar(S_LDTR), 4) & AR_UNUSABLE) and (vr(c, off_sel(S_LDTR), 2) & 4))):
        return fail(c, CK_GUEST_TR_LDTR_TI, R)
    if (d & CKM_GUEST_SS_RPL) and not v86 and not ug and \
            (vr(c, off_sel(S_SS), 2) & 3) != (vr(c, off_sel(S_CS), 2) & 3):
        return fail(c, CK_GUEST_SS_RPL, R)
    if (d & CKM_GUEST_V86_SEGMENTS) and v86:
        for i in range(6):
            sel = <uint16_t>vr(c, off_sel(i), 2)
            if vr(c, off_base(i), 8) != (<uint64_t>sel << 4) or vr(c, off_limit(i), 4) != 0xFFFF or \
                    vr(c, off_ar(i), 4) != 0xF3:
                return fail(c, CK_GUEST_V86_SEGMENTS, R)
    if d & CKM_GUEST_SEGMENT_BASES:
        if not is_canonical(vr(c, off_base(S_TR), 8)) or not is_canonical(vr(c, off_base(S_FS), 8)) or \
                not is_canonical(vr(c, off_base(S_GS), 8)) or \
                (not (vr(c, off_ar(S_LDTR), 4) & AR_UNUSABLE) and not is_canonical(vr(c, off_base(S_LDTR), 8))) or \
                (vr(c, off_base(S_CS), 8) >> 32):
            return fail(c, CK_GUEST_SEGMENT_BASES, R)
        for i in range(S_ES, S_DS + 1):
            if i == S_CS:
                continue
            if not (vr(c, off_ar(i), 4) & AR_UNUSABLE) and (vr(c, off_base(i), 8) >> 32):
                return fail(c, CK_GUEST_SEGMENT_BASES, R)
    cs_ar = <uint32_t>vr(c, off_ar(S_CS), 4)
    ss_ar = <uint32_t>vr(c, off_ar(S_SS), 4)
    if not v86:
        # CS
        t = cs_ar & 0xF
        lim = <uint32_t>vr(c, off_limit(S_CS), 4)
        dpl = (cs_ar >> 5) & 3
        if (d & CKM_GUEST_CS_ACCESS_RIGHTS) and \
                (not (t == 9 or t == 11 or t == 13 or t == 15 or (ug and t == 3)) or
                 not (cs_ar & AR_S) or not (cs_ar & AR_P) or (cs_ar & 0xF00) or (cs_ar & 0xFFFE0000ULL) or
                 (cs_ar & AR_UNUSABLE) or not g_ok(lim, cs_ar) or
                 (t == 3 and dpl != 0) or
                 ((t == 9 or t == 11) and dpl != ((ss_ar >> 5) & 3)) or
                 ((t == 13 or t == 15) and dpl > ((ss_ar >> 5) & 3)) or
                 (ia32e and (cs_ar & AR_L) and (cs_ar & AR_DB))):
            return fail(c, CK_GUEST_CS_ACCESS_RIGHTS, R)
        # SS.  The DPL rules apply whether or not SS is usable (SDM Vol. 3C
        # 27.3.1.2 / 26.3.1.2, "Bits 6:5 (DPL)"); type, S, P, reserved bits
        # and G only to a usable SS.
        if (d & CKM_GUEST_SS_ACCESS_RIGHTS) and \
                ((not ug and ((ss_ar >> 5) & 3) != (vr(c, off_sel(S_SS), 2) & 3)) or
                 (((cs_ar & 0xF) == 3 or not (cr0 & CR0_PE)) and ((ss_ar >> 5) & 3) != 0)):
            return fail(c, CK_GUEST_SS_ACCESS_RIGHTS, R)
        if (d & CKM_GUEST_SS_ACCESS_RIGHTS) and not (ss_ar & AR_UNUSABLE):
            t = ss_ar & 0xF
            lim = <uint32_t>vr(c, off_limit(S_SS), 4)
            if (t != 3 and t != 7) or not (ss_ar & AR_S) or not (ss_ar & AR_P) or (ss_ar & 0xF00) or \
                    (ss_ar & 0xFFFE0000ULL) or not g_ok(lim, ss_ar):
                return fail(c, CK_GUEST_SS_ACCESS_RIGHTS, R)
        # DS ES FS GS
        for i in range(S_ES, S_GS + 1):
            if not (d & CKM_GUEST_DATA_SEGMENT_ACCESS_RIGHTS):
                break
            ar = <uint32_t>vr(c, off_ar(i), 4)
            if i == S_CS or i == S_SS or (ar & AR_UNUSABLE):
                continue
            t = ar & 0xF
            lim = <uint32_t>vr(c, off_limit(i), 4)
            if not (t & 1) or ((t & 8) and not (t & 2)) or not (ar & AR_S) or not (ar & AR_P) or \
                    (ar & 0xF00) or (ar & 0xFFFE0000ULL) or not g_ok(lim, ar) or \
                    (not ug and t <= 11 and ((ar >> 5) & 3) < (vr(c, off_sel(i), 2) & 3)):
                return fail(c, CK_GUEST_DATA_SEGMENT_ACCESS_RIGHTS, R)
    # TR
    ar = <uint32_t>vr(c, off_ar(S_TR), 4)
    t = ar & 0xF
    if (d & CKM_GUEST_TR_ACCESS_RIGHTS) and \
            (not (t == 11 or (t == 3 and not ia32e)) or (ar & AR_S) or not (ar & AR_P) or (ar & 0xF00) or
             (ar & 0xFFFE0000ULL) or (ar & AR_UNUSABLE) or not g_ok(<uint32_t>vr(c, off_limit(S_TR), 4), ar)):
        return fail(c, CK_GUEST_TR_ACCESS_RIGHTS, R)
    ar = <uint32_t>vr(c, off_ar(S_LDTR), 4)
    if (d & CKM_GUEST_LDTR_ACCESS_RIGHTS) and not (ar & AR_UNUSABLE):
        if (ar & 0xF) != 2 or (ar & AR_S) or not (ar & AR_P) or (ar & 0xF00) or (ar & 0xFFFE0000ULL) or \
                not g_ok(<uint32_t>vr(c, off_limit(S_LDTR), 4), ar):
            return fail(c, CK_GUEST_LDTR_ACCESS_RIGHTS, R)
    # 26.3.1.3
    if (d & CKM_GUEST_DESCRIPTOR_TABLES) and \
            (not is_canonical(vr(c, VMCS_OFF_GUEST_GDTR_BASE, 8)) or
             not is_canonical(vr(c, VMCS_OFF_GUEST_IDTR_BASE, 8)) or
             (vr(c, VMCS_OFF_GUEST_GDTR_LIMIT, 4) >> 16) or (vr(c, VMCS_OFF_GUEST_IDTR_LIMIT, 4) >> 16)):
        return fail(c, CK_GUEST_DESCRIPTOR_TABLES, R)
    # 26.3.1.4
    if d & CKM_GUEST_RIP:
        rip = vr(c, VMCS_OFF_GUEST_RIP, 8)
        if ia32e and (cs_ar & AR_L):
            if not is_canonical(rip):
                return fail(c, CK_GUEST_RIP, R)
        elif rip >> 32:
            return fail(c, CK_GUEST_RIP, R)
    info = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4)
    if (d & CKM_GUEST_RFLAGS) and \
            ((rflags & RFLAGS_RESERVED_BITS) or not (rflags & 2) or
             ((ia32e or not (cr0 & CR0_PE)) and (rflags & F_VM)) or
             ((info & 0x80000000ULL) and ((info >> 8) & 7) == 0 and not (rflags & F_IF))):
        return fail(c, CK_GUEST_RFLAGS, R)
    # 26.3.1.5
    # Activity state: a supported state (IA32_VMX_MISC bits 8:6 offer HLT
    # only), not HLT with SS.DPL != 0, and active whenever the
    # interruptibility state blocks by STI or MOV SS.
    act = <uint32_t>vr(c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4)
    intr = <uint32_t>vr(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4)
    # In the HLT state the only events VM entry may inject are external
    # interrupts, NMIs, #DB and #MC and a pending MTF exit (SDM 27.3.1.5).
    itype = (info >> 8) & 7
    if (d & CKM_GUEST_ACTIVITY_STATE) and \
            (act > 1 or (act == 1 and ((ss_ar >> 5) & 3) != 0) or (act != 0 and (intr & 3)) or
             (act == 1 and (info & 0x80000000ULL) and not (
                 itype == 0 or itype == 2 or (itype == 3 and ((info & 0xFF) == 1 or (info & 0xFF) == 18)) or
                 (itype == 7 and (info & 0xFF) == 0)))):
        return fail(c, CK_GUEST_ACTIVITY_STATE, R)
    # Interruptibility state: bits 31:5 reserved; STI and MOV-SS blocking not
    # both; no STI blocking with IF = 0; no SMI blocking (bit 2) outside SMM;
    # no STI or MOV-SS blocking when injecting an external interrupt, no
    # MOV-SS blocking when injecting an NMI, and with "virtual NMIs" no
    # virtual-NMI blocking (bit 3) when injecting an NMI.
    if (d & CKM_GUEST_INTERRUPTIBILITY_STATE) and \
            ((intr & 0xFFFFFFE0ULL) or ((intr & 3) == 3) or ((intr & 1) and not (rflags & F_IF)) or
             (intr & 4) or
             ((info & 0x80000000ULL) and itype == 0 and (intr & 3)) or
             ((info & 0x80000000ULL) and itype == 2 and (intr & 2)) or
             ((info & 0x80000000ULL) and itype == 2 and (intr & 8) and
              (vr(c, VMCS_OFF_PIN_BASED_CONTROLS, 4) & PIN_VIRTUAL_NMIS))):
        return fail(c, CK_GUEST_INTERRUPTIBILITY_STATE, R)
    if (d & CKM_GUEST_PENDING_DEBUG_EXCEPTIONS) and vr(c, VMCS_OFF_GUEST_PENDING_DEBUG_EXCEPTIONS, 8) & ~0x1500FULL:
        return fail(c, CK_GUEST_PENDING_DEBUG_EXCEPTIONS, R)
    if (d & CKM_GUEST_VMCS_LINK_POINTER) and vr(c, VMCS_OFF_VMCS_LINK_POINTER, 8) != 0xFFFFFFFFFFFFFFFFULL:
        return fail(c, CK_GUEST_VMCS_LINK_POINTER, R)
    # 26.3.1.6: the PDPTEs of a PAE guest, from the VMCS fields with EPT and
    # from the table that guest CR3 points to without it (a table outside the
    # guest's memory cannot be read: the entry fails rather than reading
    # memory the guest was not given).
    if (d & CKM_GUEST_PDPTES) and (cr0 & CR0_PG) and (cr4 & CR4_PAE) and not ia32e:
        for i in range(4):
            if proc2 & PROC2_ENABLE_EPT:
                pdpte = vr(c, VMCS_OFF_GUEST_PDPTE0 + 8 * i, 8)
            else:
                p = hpa_ptr(c, (vr(c, VMCS_OFF_GUEST_CR3, 8) & 0xFFFFFFE0ULL) + 8 * i, 8, 1)
                if p == NULL:
                    return fail(c, CK_GUEST_PDPTES, R)
                memcpy(&pdpte, p, 8)
            if (pdpte & 1) and (pdpte & RSVD_PDPTE):
                return fail(c, CK_GUEST_PDPTES, R)
    return RC_OK


cdef void load_controls(Cpu* c) noexcept nogil:
    """Copy the controls the handlers test into the typed struct (decision 5)."""
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
    # The first PAUSE at CPL 0 after VM entry starts a loop (SDM 26.1.3).
    c.vmx.ple_valid = 0
    c.vmx.ept = (c.vmx.ctl.proc2 & PROC2_ENABLE_EPT) != 0


cdef void load_guest_state(Cpu* c) noexcept nogil:
    """SDM 26.3.2: load the guest-state area into the processor."""
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
        # (SDM 26.3.2.1).
        if c.vmx.ctl.entry_ctl & ENTRY_CTL_IA32E_MODE_GUEST:
            c.efer |= EFER_LMA | EFER_LME
        else:
            c.efer &= ~(<uint64_t>(EFER_LMA | EFER_LME))
    if c.vmx.ctl.entry_ctl & ENTRY_CTL_LOAD_IA32_PAT:
        c.pat = vr(c, VMCS_OFF_GUEST_IA32_PAT, 8)
    if (c.cr0 & CR0_PG) and (c.cr4 & CR4_PAE) and not (c.efer & EFER_LMA):
        # SDM 27.3.2.4 (26.3.2.4): with EPT from the VMCS, without it from
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


cdef int entry_checks(Cpu* c, int launch, uint64_t d) noexcept nogil:
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


cdef uint64_t resume_mask(Cpu* c) noexcept nogil:
    """The checks an incremental VMRESUME runs: those whose inputs changed
    since the last successful entry, CKM_ALWAYS, and every check if the
    guest that ran since could reach the VMCS (c.vmx.ck_ept_private)."""
    if c.vmx.ck_ept_private:
        return CKM_ALL
    return c.vmx.ck_dirty | CKM_ALWAYS


cdef int vmresume_checks(Cpu* c) noexcept nogil:
    """The checks of a VMRESUME under entry_check_mode.  In verification mode
    both passes run, and RC_ENTRY_CHECK_MISMATCH says they disagreed (on
    passing, or on the check that failed first)."""
    cdef int rc, rc_inc, ck_inc
    if entry_check_mode == ENTRY_CHECKS_FULL:
        return entry_checks(c, 0, CKM_ALL)
    rc = entry_checks(c, 0, resume_mask(c))
    if entry_check_mode == ENTRY_CHECKS_VERIFY:
        rc_inc = rc
        ck_inc = c.vmx.entry_check
        rc = entry_checks(c, 0, CKM_ALL)
        if rc != rc_inc or (rc != RC_OK and c.vmx.entry_check != ck_inc):
            return RC_ENTRY_CHECK_MISMATCH
    return rc


cdef int vm_entry(Cpu* c, int launch) noexcept nogil:
    """VMLAUNCH (launch=1) or VMRESUME on the current VMCS: checks, then load.
    Returns RC_OK with the processor in VMX non-root operation.  VMLAUNCH
    runs every check; VMRESUME those vmresume_checks picks."""
    cdef int rc
    # A VMCS in RAM may have been written with MOV behind VMWRITE: every
    # check, every time (the record of what changed covers the API only).
    rc = entry_checks(c, launch, CKM_ALL) if (launch or c.vmx.vmcs_in_ram) else vmresume_checks(c)
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
        # for a PDPTE problem and 4 for an invalid VMCS link pointer (SDM Vol.
        # 3C 27.8 / 26.7, "VM-entry failures during or after loading guest
        # state").
        vw(c, VMCS_OFF_EXIT_REASON, 4, 0x80000000ULL | EXIT_REASON_ENTRY_FAILURE_INVALID_GUEST_STATE)
        vw(c, VMCS_OFF_EXIT_QUALIFICATION, 8,
           4 if c.vmx.entry_check == CK_GUEST_VMCS_LINK_POINTER else (2 if c.vmx.entry_check == CK_GUEST_PDPTES else 0))
        return rc
    load_controls(c)
    load_guest_state(c)
    c.vmx.vmcs[VMCS_OFF_LAUNCH_STATE] = 1
    # Every check passed on the VMCS as it stands: the new baseline.  Where
    # EPT points was among the changes (always so at VMLAUNCH, which finds
    # every check dirty): look again whether the guest can reach the VMCS.
    if (c.vmx.ck_dirty & CKM_EPT_POINTER) and not c.vmx.vmcs_in_ram:
        c.vmx.ck_ept_private = ept_reaches_private(c)
    c.vmx.ck_dirty = 0
    c.vmx.non_root = 1
    c.vmx.on = 1
    compute_mode(c)
    tlb_at_entry(c)         # flushes unless VPID keeps the guest's mappings
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
