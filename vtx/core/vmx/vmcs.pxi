# The VMCS region (docs/architecture.rst, decision 7): 4 KiB of host memory, fields at the
# offsets spec_gen.h derives from their encodings.  These accessors are the
# only code that touches the bytes.

cdef inline uint64_t vr(Cpu* c, int off, int width) noexcept nogil:
    cdef uint64_t v = 0
    memcpy(&v, c.vmx.vmcs + off, width)
    return v


cdef inline void vw(Cpu* c, int off, int width, uint64_t v) noexcept nogil:
    """Write a field no VM-entry check reads (the exit-information fields),
    or one whose change the caller marks itself; every other write is vwt."""
    memcpy(c.vmx.vmcs + off, &v, width)


cdef void vmcs_mark(Cpu* c, int off, uint64_t delta) noexcept nogil:
    """Mark the entry checks that read a bit of the field at `off` in
    `delta` (out of line: vwt stays small enough to inline)."""
    vmcs_check_mark(&c.vmx.ck_dirty, off, delta)


cdef inline void vwt(Cpu* c, int off, int width, uint64_t v) noexcept nogil:
    """Write a field of `width` bytes (2, 4 or 8) and mark the entry checks that read a bit of it that
    changed, so the next VMRESUME re-runs them (docs/architecture.rst, "Entry
    checks at VMRESUME").  An unchanged value marks nothing."""
    # Constant widths at the call sites fold this to one load, compare and
    # store; a copy the compiler keeps out of line still avoids calling
    # memcpy with a variable size.
    cdef uint64_t old
    if width == 8:
        old = vr(c, off, 8)
    elif width == 4:
        old = vr(c, off, 4)
        v &= 0xFFFFFFFFULL
    else:
        old = vr(c, off, 2)
        v &= 0xFFFFULL
    if old != v:
        vmcs_mark(c, off, old ^ v)
        if width == 8:
            memcpy(c.vmx.vmcs + off, &v, 8)
        elif width == 4:
            memcpy(c.vmx.vmcs + off, &v, 4)
        else:
            memcpy(c.vmx.vmcs + off, &v, 2)


cdef inline int vmcs_write_tracked(Cpu* c, uint32_t enc, uint64_t v) noexcept nogil:
    """VMWRITE of component `enc` through vwt: 0 for an unsupported
    component.  The high half of a 64-bit field is a change of that field."""
    cdef int off = vmcs_field_offset(enc)
    cdef int w = vmcs_field_width(enc)
    if off < 0 or w == 0:
        return 0
    if (enc & 1) and ((enc >> 13) & 3) == 1:
        vwt(c, off - 4, 8, (vr(c, off - 4, 4)) | (v << 32))
    else:
        vwt(c, off, w, v)
    return 1


cdef inline uint64_t vmcs_read_enc(uint8_t* vmcs, uint32_t enc, int* ok) noexcept nogil:
    """VMREAD semantics on a region: 0 and ok=0 for an unsupported component."""
    cdef int off = vmcs_field_offset(enc)
    cdef int w = vmcs_field_width(enc)
    cdef uint64_t v = 0
    if off < 0 or w == 0:
        ok[0] = 0
        return 0
    memcpy(&v, vmcs + off, w)
    ok[0] = 1
    return v


cdef inline int vmcs_write_enc(uint8_t* vmcs, uint32_t enc, uint64_t v) noexcept nogil:
    cdef int off = vmcs_field_offset(enc)
    cdef int w = vmcs_field_width(enc)
    if off < 0 or w == 0:
        return 0
    memcpy(vmcs + off, &v, w)
    return 1


# Per-segment field offsets in VMCS order (ES CS SS DS FS GS LDTR TR): the
# encodings of each kind are consecutive indices, so the offsets are too.
cdef inline int off_sel(int s) noexcept nogil:
    return VMCS_OFF_GUEST_ES_SELECTOR + 2 * s

cdef inline int off_limit(int s) noexcept nogil:
    return VMCS_OFF_GUEST_ES_LIMIT + 4 * s

cdef inline int off_ar(int s) noexcept nogil:
    return VMCS_OFF_GUEST_ES_ACCESS_RIGHTS + 4 * s

cdef inline int off_base(int s) noexcept nogil:
    return VMCS_OFF_GUEST_ES_BASE + 8 * s


cdef int vmx_cap_msr(Cpu* c, uint32_t msr, uint64_t* v) noexcept nogil:
    """The VMX capability MSRs (SDM Vol. 3 Appendix A); 1 if msr is not one."""
    if msr == MSR_IA32_VMX_BASIC:
        v[0] = VMX_CAP_BASIC
    elif msr == MSR_IA32_VMX_PINBASED_CTLS:
        v[0] = VMX_CAP_PINBASED_CTLS
    elif msr == MSR_IA32_VMX_PROCBASED_CTLS:
        v[0] = VMX_CAP_PROCBASED_CTLS
    elif msr == MSR_IA32_VMX_EXIT_CTLS:
        v[0] = VMX_CAP_EXIT_CTLS
    elif msr == MSR_IA32_VMX_ENTRY_CTLS:
        v[0] = VMX_CAP_ENTRY_CTLS
    elif msr == MSR_IA32_VMX_MISC:
        v[0] = VMX_CAP_MISC
    elif msr == MSR_IA32_VMX_CR0_FIXED0:
        v[0] = VMX_CAP_CR0_FIXED0
    elif msr == MSR_IA32_VMX_CR0_FIXED1:
        v[0] = VMX_CAP_CR0_FIXED1
    elif msr == MSR_IA32_VMX_CR4_FIXED0:
        v[0] = VMX_CAP_CR4_FIXED0
    elif msr == MSR_IA32_VMX_CR4_FIXED1:
        v[0] = c.cr4_fixed1 | CR4_VMXE
    elif msr == MSR_IA32_VMX_VMCS_ENUM:
        v[0] = VMX_CAP_VMCS_ENUM
    elif msr == MSR_IA32_VMX_VMFUNC:
        v[0] = VMX_CAP_VMFUNC
    elif msr == MSR_IA32_VMX_PROCBASED_CTLS2:
        v[0] = VMX_CAP_PROCBASED_CTLS2
    elif msr == MSR_IA32_VMX_EPT_VPID_CAP:
        v[0] = VMX_CAP_EPT_VPID_CAP
    elif msr == MSR_IA32_VMX_TRUE_PINBASED_CTLS:
        v[0] = VMX_CAP_TRUE_PINBASED_CTLS
    elif msr == MSR_IA32_VMX_TRUE_PROCBASED_CTLS:
        v[0] = VMX_CAP_TRUE_PROCBASED_CTLS
    elif msr == MSR_IA32_VMX_TRUE_EXIT_CTLS:
        v[0] = VMX_CAP_TRUE_EXIT_CTLS
    elif msr == MSR_IA32_VMX_TRUE_ENTRY_CTLS:
        v[0] = VMX_CAP_TRUE_ENTRY_CTLS
    else:
        return 1
    return 0
