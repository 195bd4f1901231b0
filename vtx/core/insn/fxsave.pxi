# Saving and restoring the x87/SSE state, MXCSR, and the rest of the 0F AE
# group: FXSAVE FXRSTOR LDMXCSR STMXCSR XSAVE XRSTOR XSAVEOPT CLFLUSH
# CLFLUSHOPT, the fences, RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE; and XSAVEC
# (0F C7 /4).  The images follow SDM Vol. 2 FXSAVE (Tables 3-43 to 3-46) and
# SDM Vol. 1 chapter 13 (the XSAVE feature set), for the state components
# the model has: x87 (XCR0[0]) and SSE (XCR0[1]), and the supervisor PASID
# state (IA32_XSS[10]) that only XSAVES and XRSTORS reach (core/insn/xsaves.pxi).
# docs/architecture.rst places the FPU state (Cpu.fpu) in the picture.

cdef enum:
    FX_SIZE = 512
    XSAVE_HDR = 512             # the XSAVE header follows the legacy region
    XSAVE_SIZE = 576            # legacy region + header: CPUID.(EAX=0DH,ECX=0):EBX/ECX
    # The compacted form places each component i >= 2 of XCOMP_BV after the
    # header in the order of i (SDM Vol. 1 13.4.3); the model has none of
    # components 2-9, so PASID state (10, 8 bytes, no 64-byte alignment:
    # CPUID.(EAX=0DH,ECX=10):ECX[1] = 0) is always the first, at 576.
    XSAVE_PASID_OFF = 576
    XSAVE_MAX = 584             # the largest area: legacy region + header + PASID state
    FP_INIT_FCW = 0x37F


cdef inline int fx_xmm_count(Cpu* c) noexcept nogil:
    """XMM0-XMM15 in 64-bit mode, XMM0-XMM7 elsewhere (SDM Vol. 2 FXSAVE)."""
    return 16 if c.long64 else 8


cdef int x87_tag(const uint8_t* r) noexcept nogil:
    """The tag an x87 register's contents earn (SDM Vol. 1 8.1.7, and the
    FXRSTOR rule that rebuilds the full tag word): 01 zero, 10 special (NaN,
    infinity, denormal, unnormal/unsupported), 00 valid."""
    cdef uint16_t se
    cdef uint64_t m
    memcpy(&m, r, 8)
    memcpy(&se, r + 8, 2)
    se &= 0x7FFF
    if se == 0x7FFF:
        return 2
    if se == 0:
        return 1 if m == 0 else 2
    return 0 if (m >> 63) else 2


cdef uint8_t ftw_abridged(Cpu* c) noexcept nogil:
    """The abridged tag byte: bit i = 1 unless physical register i is empty."""
    cdef uint8_t t = 0
    cdef int i
    for i in range(8):
        if ((c.fpu.ftw >> (2 * i)) & 3) != 3:
            t |= <uint8_t>(1 << i)
    return t


cdef void fx_image(Cpu* c, uint8_t* img, int rexw) noexcept nogil:
    """The 512-byte legacy image of the current state: the FXSAVE layout
    (32-bit format, or the REX.W format with 64-bit FPU IP and DP).  The
    reserved bytes of each register slot are written as 0; bytes 464-511
    are never stored by the callers."""
    cdef int i, top = (c.fpu.fsw >> 11) & 7
    cdef uint32_t v32
    cdef uint32_t mask = MXCSR_MASK
    memset(img, 0, FX_SIZE)
    memcpy(img, &c.fpu.fcw, 2)
    memcpy(img + 2, &c.fpu.fsw, 2)
    img[4] = ftw_abridged(c)
    img[6] = c.fpu.fop & 0xFF
    img[7] = (c.fpu.fop >> 8) & 0x07
    if rexw:
        memcpy(img + 8, &c.fpu.fip, 8)
        memcpy(img + 16, &c.fpu.fdp, 8)
    else:
        v32 = <uint32_t>c.fpu.fip
        memcpy(img + 8, &v32, 4)
        memcpy(img + 12, &c.fpu.fcs, 2)
        v32 = <uint32_t>c.fpu.fdp
        memcpy(img + 16, &v32, 4)
        memcpy(img + 20, &c.fpu.fds, 2)
    memcpy(img + 24, &c.fpu.mxcsr, 4)
    memcpy(img + 28, &mask, 4)
    for i in range(8):
        memcpy(img + 32 + 16 * i, c.fpu.st[(top + i) & 7], 10)
    for i in range(fx_xmm_count(c)):
        memcpy(img + 160 + 16 * i, c.fpu.xmm[i], 16)


cdef void fx_load_x87(Cpu* c, const uint8_t* img, int rexw) noexcept nogil:
    """Load the x87 part of a legacy image (FXRSTOR, XRSTOR): the full tag
    word is rebuilt from the abridged one and the registers' contents."""
    cdef int i, top
    cdef uint32_t v32
    cdef uint16_t ftw = 0
    memcpy(&c.fpu.fcw, img, 2)
    memcpy(&c.fpu.fsw, img + 2, 2)
    c.fpu.fop = (img[6] | (img[7] << 8)) & 0x7FF
    if rexw:
        memcpy(&c.fpu.fip, img + 8, 8)
        memcpy(&c.fpu.fdp, img + 16, 8)
        c.fpu.fcs = 0
        c.fpu.fds = 0
    else:
        memcpy(&v32, img + 8, 4)
        c.fpu.fip = v32
        memcpy(&c.fpu.fcs, img + 12, 2)
        memcpy(&v32, img + 16, 4)
        c.fpu.fdp = v32
        memcpy(&c.fpu.fds, img + 20, 2)
    top = (c.fpu.fsw >> 11) & 7
    for i in range(8):
        memset(c.fpu.st[(top + i) & 7], 0, 16)
        memcpy(c.fpu.st[(top + i) & 7], img + 32 + 16 * i, 10)
    for i in range(8):
        if img[4] & (1 << i):
            ftw |= <uint16_t>(x87_tag(c.fpu.st[i]) << (2 * i))
        else:
            ftw |= <uint16_t>(3 << (2 * i))
    c.fpu.ftw = ftw


cdef void fx_load_xmm(Cpu* c, const uint8_t* img) noexcept nogil:
    cdef int i
    for i in range(fx_xmm_count(c)):
        memcpy(c.fpu.xmm[i], img + 160 + 16 * i, 16)


cdef void xsave_x87_init(Cpu* c) noexcept nogil:
    """The x87 state's initial configuration (SDM Vol. 1 13.6): FCW 037FH,
    FSW 0, all registers empty, FOP/FIP/FDP/FCS/FDS 0, the registers 0."""
    memset(c.fpu.st, 0, sizeof(c.fpu.st))
    c.fpu.fcw = FP_INIT_FCW
    c.fpu.fsw = 0
    c.fpu.ftw = 0xFFFF
    c.fpu.fop = 0
    c.fpu.fip = 0
    c.fpu.fdp = 0
    c.fpu.fcs = 0
    c.fpu.fds = 0


cdef uint64_t xinuse(Cpu* c) noexcept nogil:
    """XINUSE for the model's components (SDM Vol. 1 13.6): bit i is 0 only
    while component i is in its initial configuration; the model tests the
    whole component, so an init-optimized save never loses a value."""
    cdef uint64_t r = 0
    cdef int i
    if not (c.fpu.fcw == FP_INIT_FCW and c.fpu.fsw == 0 and c.fpu.ftw == 0xFFFF and c.fpu.fop == 0 and
            c.fpu.fip == 0 and c.fpu.fdp == 0 and c.fpu.fcs == 0 and c.fpu.fds == 0):
        r |= XCR0_X87
    else:
        for i in range(8):
            if c.fpu.st[i][0] | c.fpu.st[i][1] | c.fpu.st[i][2] | c.fpu.st[i][3] | c.fpu.st[i][4] | \
               c.fpu.st[i][5] | c.fpu.st[i][6] | c.fpu.st[i][7] | c.fpu.st[i][8] | c.fpu.st[i][9]:
                r |= XCR0_X87
                break
    if c.fpu.mxcsr != 0x1F80:
        r |= XCR0_SSE
    else:
        for i in range(16):
            if c.fpu.xmm[i][0] | c.fpu.xmm[i][1]:
                r |= XCR0_SSE
                break
    if c.pasid != 0:
        r |= XSS_PASID           # its initial configuration is IA32_PASID = 0
    return r


cdef int mem_put(Cpu* c, Insn* d, uint64_t off, const uint8_t* img, int start, int end) noexcept nogil:
    """Store img[start:end] (8-byte multiples) at off + start."""
    cdef uint64_t v
    cdef int k, rc
    k = start
    while k < end:
        memcpy(&v, img + k, 8)
        rc = mem_write(c, d.seg, (off + k) & SIZE_MASK[d.asz], 8, v)
        if rc:
            return rc
        k += 8
    return RC_OK


cdef int mem_get(Cpu* c, Insn* d, uint64_t off, uint8_t* img, int start, int end) noexcept nogil:
    cdef uint64_t v
    cdef int k, rc
    k = start
    while k < end:
        rc = mem_read(c, d.seg, (off + k) & SIZE_MASK[d.asz], 8, &v)
        if rc:
            return rc
        memcpy(img + k, &v, 8)
        k += 8
    return RC_OK


cdef inline int fx_rexw(Cpu* c, Insn* d) noexcept nogil:
    return c.long64 and d.osz == 8


# --- FXSAVE FXRSTOR LDMXCSR STMXCSR ------------------------------------------

cdef int fx_avail(Cpu* c) noexcept nogil:
    """FXSAVE/FXRSTOR: #UD without FXSR; #NM with CR0.TS or CR0.EM (SDM Vol. 2
    FXSAVE, "Protected Mode Exceptions")."""
    if not cpu_has(c, FEAT_FXSR):
        return raise_ud(c)
    if c.cr0 & (CR0_TS | CR0_EM):
        return raise_exc(c, EXC_NM, 0, 0)
    return RC_OK


cdef int h_fxsave(Cpu* c, Insn* d) noexcept nogil:
    """0F AE /0 FXSAVE m512byte (FXSAVE64 with REX.W).  With CR4.OSFXSR = 0
    the XMM registers and MXCSR are not saved: the SDM leaves it to the
    implementation ("may not save"), and the model does not."""
    cdef uint8_t img[FX_SIZE]
    cdef uint64_t off
    cdef int rc = fx_avail(c)
    cdef int end = 160 + 16 * fx_xmm_count(c)
    if rc:
        return rc
    off = ea_offset(c, d)
    rc = simd_misaligned(c, d, off, 16)
    if rc:
        return rc
    rc = mem_check_write(c, d.seg, off, end)
    if rc:
        return rc
    fx_image(c, img, fx_rexw(c, d))
    if not (c.cr4 & CR4_OSFXSR):
        rc = mem_put(c, d, off, img, 0, 24)
        if rc:
            return rc
        return mem_put(c, d, off, img, 32, 160)
    return mem_put(c, d, off, img, 0, end)


cdef int h_fxrstor(Cpu* c, Insn* d) noexcept nogil:
    """0F AE /1 FXRSTOR m512byte: #GP(0) for a reserved MXCSR bit, nothing
    loaded then.  With CR4.OSFXSR = 0 XMM and MXCSR are not restored."""
    cdef uint8_t img[FX_SIZE]
    cdef uint32_t mx
    cdef uint64_t off
    cdef int rc = fx_avail(c)
    cdef int end = 160 + 16 * fx_xmm_count(c)
    if rc:
        return rc
    off = ea_offset(c, d)
    rc = simd_misaligned(c, d, off, 16)
    if rc:
        return rc
    rc = mem_get(c, d, off, img, 0, end)
    if rc:
        return rc
    memcpy(&mx, img + 24, 4)
    if c.cr4 & CR4_OSFXSR:
        if mx & ~(<uint32_t>MXCSR_MASK):
            return raise_gp0(c)
        c.fpu.mxcsr = mx
        fx_load_xmm(c, img)
    fx_load_x87(c, img, fx_rexw(c, d))
    return RC_OK


cdef int h_ldmxcsr(Cpu* c, Insn* d) noexcept nogil:
    """0F AE /2 LDMXCSR m32: #GP(0) for a reserved bit (31:16)."""
    cdef uint64_t v
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    rc = mem_read(c, d.seg, ea_offset(c, d), 4, &v)
    if rc:
        return rc
    if v & ~(<uint64_t>MXCSR_MASK):
        return raise_gp0(c)
    c.fpu.mxcsr = <uint32_t>v
    return RC_OK


cdef int h_stmxcsr(Cpu* c, Insn* d) noexcept nogil:
    """0F AE /3 STMXCSR m32."""
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    return mem_write(c, d.seg, ea_offset(c, d), 4, c.fpu.mxcsr)


# --- the XSAVE feature set ----------------------------------------------------

cdef int xsave_avail(Cpu* c, Insn* d, uint64_t* off, uint32_t sup_exit) noexcept nogil:
    """The checks common to XSAVE XSAVEOPT XSAVEC XSAVES XRSTOR XRSTORS (SDM
    Vol. 1 13.7 to 13.12), in the order of their priority: #UD with
    CR4.OSXSAVE = 0 (and, for the supervisor forms, sup_exit = their exit
    reason: without XSAVES in the CPU model, or in VMX non-root operation
    without "enable XSAVES/XRSTORS", SDM Vol. 3C 25.6.2); #NM with CR0.TS =
    1 (these are faults of decoding the instruction, SDM Vol. 3A Table 6-2);
    for the supervisor forms #GP(0) at CPL > 0 and then the VM exit under
    the XSS-exiting bitmap (a privilege fault has priority over an exit, a
    memory fault does not: SDM Vol. 3C 26.1.1); last #GP(0) for an area
    that is not 64-byte aligned."""
    cdef uint64_t req
    if not cpu_has(c, FEAT_XSAVE) or not (c.cr4 & CR4_OSXSAVE):
        return raise_ud(c)
    if sup_exit and (not cpu_has(c, FEAT_XSAVES) or
                     (c.vmx.non_root and not (c.vmx.ctl.proc2 & PROC2_ENABLE_XSAVES_XRSTORS))):
        return raise_ud(c)
    if c.cr0 & CR0_TS:
        return raise_exc(c, EXC_NM, 0, 0)
    if sup_exit:
        if c.cpl != 0:
            return raise_gp0(c)
        # SDM Vol. 3C 26.1.3: an exit when EDX:EAX, IA32_XSS and the
        # XSS-exiting bitmap share a bit (the bitmap is 0 without the control).
        req = ((c.regs[R_DX] & 0xFFFFFFFFULL) << 32) | (c.regs[R_AX] & 0xFFFFFFFFULL)
        if c.vmx.non_root and (req & c.xss & c.vmx.ctl.xss_bitmap):
            return xss_exit(c, d, sup_exit)
    off[0] = ea_offset(c, d)
    return simd_misaligned(c, d, off[0], 64)


cdef int xsave_do(Cpu* c, Insn* d, int kind) noexcept nogil:
    """kind 0 XSAVE (standard format, every requested component), 1 XSAVEOPT
    (the init optimization: a component in its initial configuration is not
    written; the modified optimization is not used), 2 XSAVEC and 3 XSAVES
    (compacted: XCOMP_BV = 8000000000000000H | RFBM, init optimization; the
    modified optimization of XSAVES is not used either).  RFBM = XCR0 &
    EDX:EAX, and (XCR0 | IA32_XSS) & EDX:EAX for XSAVES.  XSTATE_BV[i] =
    XINUSE[i] for requested i; XSAVE and XSAVEOPT keep its other bits, the
    compacted forms clear them; bytes 464-511 and header bytes 63:16 are
    never written."""
    cdef uint8_t img[XSAVE_MAX]
    cdef uint64_t off, bv, rfbm, inuse, save, hdr[2]
    cdef int rc = xsave_avail(c, d, &off, EXIT_REASON_XSAVES if kind == 3 else 0)
    cdef int xend = 160 + 16 * fx_xmm_count(c)
    cdef int size = XSAVE_SIZE
    if rc:
        return rc
    rfbm = ((c.regs[R_DX] & 0xFFFFFFFFULL) << 32) | (c.regs[R_AX] & 0xFFFFFFFFULL)
    rfbm &= (c.xcr0 | c.xss) if kind == 3 else c.xcr0
    inuse = xinuse(c)
    save = rfbm if kind == 0 else (rfbm & inuse)
    if rfbm & XSS_PASID:
        size = XSAVE_MAX
    rc = mem_check_write(c, d.seg, off, size)
    if rc:
        return rc
    if kind < 2:
        rc = mem_read(c, d.seg, (off + XSAVE_HDR) & SIZE_MASK[d.asz], 8, &bv)
        if rc:
            return rc
        hdr[0] = (bv & ~rfbm) | (inuse & rfbm)
    else:
        hdr[0] = inuse & rfbm
        hdr[1] = 0x8000000000000000ULL | rfbm
    fx_image(c, img, fx_rexw(c, d))
    memcpy(img + XSAVE_HDR, hdr, 16)
    memcpy(img + XSAVE_PASID_OFF, &c.pasid, 8)
    if save & XCR0_X87:
        rc = mem_put(c, d, off, img, 0, 24)
        if not rc:
            rc = mem_put(c, d, off, img, 32, 160)
        if rc:
            return rc
    # MXCSR and MXCSR_MASK belong to SSE state, but XSAVE and XSAVEOPT store
    # them whenever RFBM[1] or RFBM[2] is set (no optimization applies);
    # XSAVEC and XSAVES only with the SSE component (SDM Vol. 1 13.7, 13.9,
    # 13.10, 13.11).
    if (kind < 2 and (rfbm & (XCR0_SSE | XCR0_AVX))) or (save & XCR0_SSE):
        rc = mem_put(c, d, off, img, 24, 32)
        if rc:
            return rc
    if save & XCR0_SSE:
        rc = mem_put(c, d, off, img, 160, xend)
        if rc:
            return rc
    if save & XSS_PASID:
        rc = mem_put(c, d, off, img, XSAVE_PASID_OFF, XSAVE_PASID_OFF + 8)
        if rc:
            return rc
    return mem_put(c, d, off, img, XSAVE_HDR, XSAVE_HDR + (8 if kind < 2 else 16))


cdef int h_xsave(Cpu* c, Insn* d) noexcept nogil:
    return xsave_do(c, d, 0)


cdef int h_xsaveopt(Cpu* c, Insn* d) noexcept nogil:
    if not cpu_has(c, FEAT_XSAVEOPT):
        return raise_ud(c)
    return xsave_do(c, d, 1)


cdef int h_xsavec(Cpu* c, Insn* d) noexcept nogil:
    """0F C7 /4 XSAVEC mem (XSAVEC64 with REX.W); no register form."""
    if d.mod == 3 or not cpu_has(c, FEAT_XSAVEC):
        return raise_ud(c)
    return xsave_do(c, d, 2)


cdef int xrstor_do(Cpu* c, Insn* d, int sup) noexcept nogil:
    """XRSTOR (sup 0; 0F AE /5, SDM Vol. 1 13.8) and XRSTORS (sup 1; 0F C7
    /3, 13.12).  The header decides XRSTOR's form: XCOMP_BV[63] = 0 the
    standard form, which #GPs if XSTATE_BV has a bit outside XCR0 or bytes
    23:8 of the header are not 0, and loads MXCSR whenever RFBM[1] or
    RFBM[2] is set; XCOMP_BV[63] = 1 the compacted form (with XSAVEC),
    which #GPs if XCOMP_BV[62:0] is not within XCR0, XSTATE_BV not within
    XCOMP_BV, or bytes 63:16 are not 0, and initializes MXCSR to 1F80H with
    XSTATE_BV[1] = 0.  XRSTORS takes only the compacted form (#GP(0) with
    XCOMP_BV[63] = 0), within XCR0 | IA32_XSS, with RFBM = (XCR0 | IA32_XSS)
    & EDX:EAX; a supervisor component whose value its MSR would refuse is
    #GP(0) (IA32_PASID with a reserved bit).  Each requested component i is
    loaded when XSTATE_BV[i] = 1, else put in its initial configuration.
    Every check precedes any change."""
    cdef uint8_t img[XSAVE_MAX]
    cdef uint64_t off, rfbm, bv, comp, h[8], pasid = 0
    cdef uint64_t allowed = (c.xcr0 | c.xss) if sup else c.xcr0
    cdef uint32_t mx
    cdef int rc = xsave_avail(c, d, &off, EXIT_REASON_XRSTORS if sup else 0)
    cdef int i, compact, load_mx = 0
    if rc:
        return rc
    rfbm = allowed & (((c.regs[R_DX] & 0xFFFFFFFFULL) << 32) | (c.regs[R_AX] & 0xFFFFFFFFULL))
    rc = mem_get(c, d, off, img, XSAVE_HDR, XSAVE_SIZE)
    if rc:
        return rc
    memcpy(h, img + XSAVE_HDR, 64)
    bv = h[0]
    comp = h[1]
    compact = (comp >> 63) != 0
    if compact:
        if (not sup and not cpu_has(c, FEAT_XSAVEC)) or (comp & ~(0x8000000000000000ULL | allowed)) or \
                (bv & ~comp):
            return raise_gp0(c)
        for i in range(2, 8):
            if h[i]:
                return raise_gp0(c)
    elif sup:
        return raise_gp0(c)
    else:
        if (bv & ~c.xcr0) or comp or h[2]:
            return raise_gp0(c)
    rc = mem_get(c, d, off, img, 0, 160 + 16 * fx_xmm_count(c))
    if rc:
        return rc
    if (rfbm & bv & XSS_PASID) and (comp & XSS_PASID):
        rc = mem_get(c, d, off, img, XSAVE_PASID_OFF, XSAVE_PASID_OFF + 8)
        if rc:
            return rc
        memcpy(&pasid, img + XSAVE_PASID_OFF, 8)
        if pasid & ~(<uint64_t>PASID_VALID_BITS):
            return raise_gp0(c)
    memcpy(&mx, img + 24, 4)
    if compact:
        load_mx = (rfbm & XCR0_SSE) and (bv & XCR0_SSE)
    else:
        load_mx = (rfbm & (XCR0_SSE | XCR0_AVX)) != 0
    if load_mx and (mx & ~(<uint32_t>MXCSR_MASK)):
        return raise_gp0(c)
    if rfbm & XCR0_X87:
        if bv & XCR0_X87:
            fx_load_x87(c, img, fx_rexw(c, d))
        else:
            xsave_x87_init(c)
    if rfbm & XCR0_SSE:
        if bv & XCR0_SSE:
            fx_load_xmm(c, img)
        else:
            for i in range(fx_xmm_count(c)):
                c.fpu.xmm[i][0] = 0
                c.fpu.xmm[i][1] = 0
            if compact:
                c.fpu.mxcsr = 0x1F80
    if load_mx:
        c.fpu.mxcsr = mx
    if rfbm & XSS_PASID:
        c.pasid = pasid             # 0, its initial configuration, when XSTATE_BV[10] = 0
    return RC_OK


cdef int h_xrstor(Cpu* c, Insn* d) noexcept nogil:
    return xrstor_do(c, d, 0)


# --- cache control, fences, FS/GS base -----------------------------------------

cdef int h_clflush(Cpu* c, Insn* d) noexcept nogil:
    """0F AE /7 CLFLUSH m8 and 66 0F AE /7 CLFLUSHOPT m8: no cache to flush,
    but the operand is checked as a byte read (segment, paging, EPT)
    without touching the memory behind it (SDM Vol. 2 CLFLUSH: the faults
    of a byte load)."""
    cdef uint64_t lin
    cdef uint8_t* p
    cdef int rc = seg_linear(c, d.seg, ea_offset(c, d), 1, ACC_READ, &lin)
    if rc:
        return rc
    return translate(c, lin, ACC_READ, c.cpl == 3, &p)


cdef int h_fsgsbase(Cpu* c, Insn* d) noexcept nogil:
    """F3 0F AE /0-/3 (register form) RDFSBASE RDGSBASE WRFSBASE WRGSBASE
    r32/r64: #UD outside 64-bit mode, with CR4.FSGSBASE = 0, or without
    the feature; a write of a non-canonical base is #GP(0) (SDM Vol. 2)."""
    cdef int size = 8 if d.osz == 8 else 4
    cdef int s = S_GS if (d.reg & 1) else S_FS
    cdef uint64_t v
    if not c.long64 or not (c.cr4 & CR4_FSGSBASE) or not cpu_has(c, FEAT_FSGSBASE):
        return raise_ud(c)
    if (d.reg & 7) < 2:
        set_reg(c, d.rm, size, c.seg[s].base)
        return RC_OK
    v = get_reg(c, d.rm, size)
    if not is_canonical(v):
        return raise_gp0(c)
    c.seg[s].base = v
    return RC_OK


cdef int h_0fae(Cpu* c, Insn* d) noexcept nogil:
    """The 0F AE group (SDM Vol. 2 Table A-6, group 15) by ModRM.reg, the
    operand form and the mandatory prefix: memory forms /0 FXSAVE /1 FXRSTOR
    /2 LDMXCSR /3 STMXCSR /4 XSAVE /5 XRSTOR /6 XSAVEOPT /7 CLFLUSH (66:
    CLFLUSHOPT); register forms /5 LFENCE /6 MFENCE /7 SFENCE, and with F3
    /0-/3 the FS/GS base instructions, and /6 with F3, F2 or 66: UMONITOR,
    UMWAIT and TPAUSE (core/insn/waitpkg.pxi).  The forms the model does not
    have (PTWRITE, CLWB, CLRSSBSY, INCSSP) are #UD."""
    cdef int r = d.reg & 7
    if d.mod == 3:
        if r == 6 and d.rep != 0:
            return h_waitpkg(c, d)
        if d.rep == 0xF3:
            if r < 4:
                return h_fsgsbase(c, d)
            return raise_ud(c)
        if d.rep != 0 or r < 5:
            return raise_ud(c)
        if not cpu_has(c, FEAT_SSE if r == 7 else FEAT_SSE2):
            return raise_ud(c)
        return RC_OK          # the fences: every access is already in order
    if d.rep == 0xF2 or (d.rep == 0xF3 and r >= 4) or (d.rep == 0x66 and r == 6):
        return raise_ud(c)
    if r == 0:
        return h_fxsave(c, d)
    if r == 1:
        return h_fxrstor(c, d)
    if r == 2 or r == 3:
        if not cpu_has(c, FEAT_SSE):
            return raise_ud(c)
        return h_ldmxcsr(c, d) if r == 2 else h_stmxcsr(c, d)
    if r == 4:
        return h_xsave(c, d)
    if r == 5:
        return h_xrstor(c, d)
    if r == 6:
        return h_xsaveopt(c, d)
    if d.rep == 0x66:
        if not cpu_has(c, FEAT_CLFLUSHOPT):
            return raise_ud(c)
    elif not cpu_has(c, FEAT_CLFSH):
        return raise_ud(c)
    return h_clflush(c, d)


cdef void init_fxsave_tables() noexcept:
    op_set(OP2, 0xAE, h_0fae, OPF_MODRM)
    # The 66 and F3 forms go through the same handler, which reads the prefix
    # in d.rep (an OP2P entry leaves it there).
    op_set(OP2P[PFX_66], 0xAE, h_0fae, OPF_MODRM)
    op_set(OP2P[PFX_F3], 0xAE, h_0fae, OPF_MODRM)
    op_set(OP2P[PFX_F2], 0xAE, h_0fae, OPF_MODRM)
    GRP[G_0FC7][4] = h_xsavec
    init_xsaves_tables()            # core/insn/xsaves.pxi: /3 XRSTORS, /5 XSAVES
