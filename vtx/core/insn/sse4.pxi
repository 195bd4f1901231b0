# SSE4.1 and SSE4.2 instructions that are not plain dst = op(dst, src)
# (those are in core/insn/simd_int.pxi): sign/zero extension (PMOVSX/ZX),
# PTEST, MOVNTDQA, inserts and extracts, the string compares PCMPxSTRx
# (SDM Vol. 2 4.1 "Imm8 Control Byte Operation for PCMPESTRI / PCMPESTRM /
# PCMPISTRI / PCMPISTRM"), and the floating-point ones ROUNDPS/PD/SS/SD and
# DPPS/DPPD, which run on the host's own SSE4.1 under the guest's MXCSR.


# --- the host's SSE4.1 under the guest MXCSR --------------------------------
#
# The host is x86-64; whether it has SSE4.1 is asked once at start-up
# (si_host_sse41).  One asm
# statement loads the guest's rounding control, FTZ and DAZ with every
# exception masked and the flags clear, runs the instruction with its
# immediate (an immediate needs one copy of the instruction per value), and
# reads back the flags it raised; the host MXCSR is then restored.
cdef extern from *:
    """
    typedef double vtx_si_v2df __attribute__((vector_size(16)));
    #define VTX_SI_ASM(OPC, I) __asm__ volatile("ldmxcsr %[min]\\n\\t" OPC " %[imm], %[src], %[dst]\\n\\tstmxcsr %[mout]" \
        : [dst] "+x"(va), [mout] "=m"(mo) : [src] "x"(vb), [imm] "i"(I), [min] "m"(mi))
    #define VTX_SI_C1(O, I) case (I): VTX_SI_ASM(O, (I) & 0xFF); break;
    #define VTX_SI_C4(O, I) VTX_SI_C1(O, I) VTX_SI_C1(O, (I) + 1) VTX_SI_C1(O, (I) + 2) VTX_SI_C1(O, (I) + 3)
    #define VTX_SI_C16(O, I) VTX_SI_C4(O, I) VTX_SI_C4(O, (I) + 4) VTX_SI_C4(O, (I) + 8) VTX_SI_C4(O, (I) + 12)
    #define VTX_SI_C64(O, I) VTX_SI_C16(O, I) VTX_SI_C16(O, (I) + 16) VTX_SI_C16(O, (I) + 32) VTX_SI_C16(O, (I) + 48)
    #define VTX_SI_C256(O) VTX_SI_C64(O, 0) VTX_SI_C64(O, 64) VTX_SI_C64(O, 128) VTX_SI_C64(O, 192)

    static int vtx_si_host_has_sse41(void) { __builtin_cpu_init(); return __builtin_cpu_supports("sse4.1"); }

    /* op: 0 ROUNDPS 1 ROUNDPD 2 ROUNDSS 3 ROUNDSD 4 DPPS 5 DPPD.  a is the
       destination (in/out), b the source; returns MXCSR bits 5:0 raised. */
    static uint32_t vtx_si_host_fp(int op, int imm, uint64_t *a, const uint64_t *b, uint32_t mxcsr)
    {
        vtx_si_v2df va, vb;
        uint32_t saved, mi, mo = 0;
        memcpy(&va, a, 16);
        memcpy(&vb, b, 16);
        mi = (mxcsr & 0xFFC0u) | 0x1F80u;
        __asm__ volatile("stmxcsr %0" : "=m"(saved));
        switch (op * 256 + (imm & 0xFF)) {
        VTX_SI_C16("roundps", 0)
        VTX_SI_C16("roundpd", 256)
        VTX_SI_C16("roundss", 512)
        VTX_SI_C16("roundsd", 768)
        default:
            if (op == 4) {
                switch (imm & 0xFF) { VTX_SI_C256("dpps") }
            } else if (op == 5) {
                switch (imm & 0xFF) { VTX_SI_C256("dppd") }
            }
            break;
        }
        __asm__ volatile("ldmxcsr %0" : : "m"(saved));
        memcpy(a, &va, 16);
        return mo & 0x3F;
    }
    """
    uint32_t vtx_si_host_fp(int op, int imm, uint64_t* a, const uint64_t* b, uint32_t mxcsr) nogil
    int vtx_si_host_has_sse41() nogil

# Set once at start-up: the host can run ROUND*/DPP* for the guest.  Without
# it (an x86-64 host older than SSE4.1) those instructions are #UD rather
# than an illegal instruction in the host process.
cdef int si_host_sse41 = 0


cdef int h_sse4_fp(Cpu* c, Insn* d) noexcept nogil:
    """66 0F 3A 08-0B ROUNDPS/PD/SS/SD and 40/41 DPPS/DPPD (SDM Vol. 2)."""
    cdef uint64_t A[2]
    cdef uint64_t B[2]
    cdef int op, msz, rc
    cdef uint32_t raised
    rc = sse_avail(c)
    if rc:
        return rc
    if not si_host_sse41:
        return raise_ud(c)
    if d.op >= 0x40:
        op = 4 + (d.op - 0x40)
        msz = 16
    else:
        op = d.op - 0x08
        msz = 4 if op == 2 else (8 if op == 3 else 16)
    rc = si_src(c, d, 1, msz, 16 if msz == 16 else 0, B)
    if rc:
        return rc
    A[0] = c.fpu.xmm[d.reg][0]
    A[1] = c.fpu.xmm[d.reg][1]
    raised = vtx_si_host_fp(op, <int>d.imm, A, B, c.fpu.mxcsr)
    # MXCSR and #XM/#UD as for every SSE floating-point instruction
    # (sse_fp_check in core/insn/sse.pxi).  Limit: the flags come from a run
    # with everything masked, so an exact tiny result with underflow
    # unmasked is not reported as underflow.
    rc = sse_fp_check(c, raised, 0, NULL)
    if rc:
        return rc
    c.fpu.xmm[d.reg][0] = A[0]
    c.fpu.xmm[d.reg][1] = A[1]
    return RC_OK


# --- PMOVSX / PMOVZX, PTEST, MOVNTDQA ---------------------------------------

cdef int h_pmovx(Cpu* c, Insn* d) noexcept nogil:
    """66 0F 38 20-25 PMOVSX{BW,BD,BQ,WD,WQ,DQ}, 30-35 PMOVZX: the low
    elements of the source widened; a memory source is only as wide as what
    is read (m64, m32 or m16) and has no alignment rule."""
    cdef int k = d.op & 0xF
    cdef int ins = 1 if k < 3 else (2 if k < 5 else 4)        # source element size
    cdef int outs = 2 if k == 0 else (4 if (k == 1 or k == 3) else 8)
    cdef int cnt = 16 // outs
    cdef int sx = d.op < 0x30
    cdef uint64_t B[2]
    cdef uint64_t R[2]
    cdef uint64_t v
    cdef int i, rc
    rc = sse_avail(c)
    if rc:
        return rc
    rc = si_src(c, d, 1, cnt * ins, 0, B)
    if rc:
        return rc
    for i in range(cnt):
        v = si_lane(<uint8_t*>B + i * ins, ins)
        if sx:
            v = <uint64_t>sext(v, ins)
        si_set_lane(<uint8_t*>R + i * outs, outs, v)
    c.fpu.xmm[d.reg][0] = R[0]
    c.fpu.xmm[d.reg][1] = R[1]
    return RC_OK


cdef int h_ptest(Cpu* c, Insn* d) noexcept nogil:
    """66 0F 38 17 PTEST: ZF = (dst AND src) = 0, CF = (NOT dst AND src) = 0,
    AF OF PF SF cleared."""
    cdef uint64_t B[2]
    cdef uint64_t f = 0
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    rc = si_src(c, d, 1, 16, 16, B)
    if rc:
        return rc
    if ((c.fpu.xmm[d.reg][0] & B[0]) | (c.fpu.xmm[d.reg][1] & B[1])) == 0:
        f |= F_ZF
    if ((~c.fpu.xmm[d.reg][0] & B[0]) | (~c.fpu.xmm[d.reg][1] & B[1])) == 0:
        f |= F_CF
    set_status_flags(c, f)
    return RC_OK


cdef int h_movntdqa(Cpu* c, Insn* d) noexcept nogil:
    """66 0F 38 2A MOVNTDQA xmm, m128 (aligned; a register source is #UD)."""
    cdef uint64_t B[2]
    cdef int rc
    if d.mod == 3:
        return raise_ud(c)
    rc = sse_avail(c)
    if rc:
        return rc
    rc = si_mem_read(c, d, 16, 16, B)
    if rc:
        return rc
    c.fpu.xmm[d.reg][0] = B[0]
    c.fpu.xmm[d.reg][1] = B[1]
    return RC_OK


# --- inserts and extracts ------------------------------------------------------

cdef int h_pextr(Cpu* c, Insn* d) noexcept nogil:
    """66 0F 3A 14 PEXTRB, 15 PEXTRW, 16 PEXTRD/PEXTRQ (REX.W), 17 EXTRACTPS:
    an element of XMM[reg] to a general register (zero-extended to 32, or
    64 bits in 64-bit mode) or to memory of the element's size."""
    cdef int size
    cdef uint64_t v
    cdef uint8_t* x = <uint8_t*>c.fpu.xmm[d.reg]
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    if d.op == 0x14:
        size = 1
    elif d.op == 0x15:
        size = 2
    elif d.op == 0x16 and d.osz == 8:
        size = 8
    else:
        size = 4
    v = si_lane(x + (<int>d.imm & (16 // size - 1)) * size, size)
    if d.mod == 3:
        set_reg(c, d.rm, 8 if c.long64 else 4, v)
        return RC_OK
    return mem_write(c, d.seg, ea_offset(c, d), size, v)


cdef int h_pinsr(Cpu* c, Insn* d) noexcept nogil:
    """66 0F 3A 20 PINSRB xmm, r32/m8, 22 PINSRD/PINSRQ xmm, r/m32 (r/m64),
    21 INSERTPS xmm, xmm/m32 (imm8: source element 7:6 for a register,
    destination element 5:4, zero mask 3:0)."""
    cdef int size, i
    cdef uint64_t v = 0
    cdef uint64_t R[2]
    cdef int imm = <int>d.imm
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    R[0] = c.fpu.xmm[d.reg][0]
    R[1] = c.fpu.xmm[d.reg][1]
    if d.op == 0x21:
        if d.mod == 3:
            v = (<uint32_t*>c.fpu.xmm[d.rm])[(imm >> 6) & 3]
        else:
            rc = mem_read(c, d.seg, ea_offset(c, d), 4, &v)
            if rc:
                return rc
        (<uint32_t*>R)[(imm >> 4) & 3] = <uint32_t>v
        for i in range(4):
            if (imm >> i) & 1:
                (<uint32_t*>R)[i] = 0
    else:
        size = 1 if d.op == 0x20 else (8 if d.osz == 8 else 4)
        if d.mod == 3:
            v = c.regs[d.rm] & SIZE_MASK[size]
        else:
            rc = mem_read(c, d.seg, ea_offset(c, d), size, &v)
            if rc:
                return rc
        si_set_lane(<uint8_t*>R + (imm & (16 // size - 1)) * size, size, v)
    c.fpu.xmm[d.reg][0] = R[0]
    c.fpu.xmm[d.reg][1] = R[1]
    return RC_OK


# --- PCMPESTRI / PCMPESTRM / PCMPISTRI / PCMPISTRM (SSE4.2) ---------------------

cdef inline int si_elem(const uint8_t* p, int i, int fmt) noexcept nogil:
    """Element i of a string operand in format imm8[1:0]: unsigned bytes,
    unsigned words, signed bytes, signed words."""
    if fmt == 0:
        return p[i]
    if fmt == 1:
        return (<const uint16_t*>p)[i]
    if fmt == 2:
        return <signed char>p[i]
    return (<const int16_t*>p)[i]


cdef int si_strlen_implicit(const uint8_t* p, int n, int fmt) noexcept nogil:
    cdef int i
    for i in range(n):
        if si_elem(p, i, fmt) == 0:
            return i
    return n


cdef int si_strlen_explicit(uint64_t reg, int wide, int n) noexcept nogil:
    """|EAX| or |EDX| (|RAX|/|RDX| with REX.W), saturated to the element count."""
    cdef int64_t v = <int64_t>reg if wide else <int64_t>(<int32_t>(reg & 0xFFFFFFFFULL))
    if v < 0:
        if v < -<int64_t>n:
            return n
        v = -v
    return n if v > n else <int>v


cdef int h_pcmpstr(Cpu* c, Insn* d) noexcept nogil:
    """66 0F 3A 60 PCMPESTRM, 61 PCMPESTRI, 62 PCMPISTRM, 63 PCMPISTRI.

    SDM Vol. 2 4.1: the elements of xmm1 (a, length la) and xmm2/m128 (b,
    length lb) are compared by the aggregation of imm8[3:2] into IntRes1,
    whose bit j concerns b's element j; imm8[5:4] sets the polarity
    (IntRes2); the index forms put the least (imm8[6] = 0) or most
    significant set bit of IntRes2 in ECX (n when none), the mask forms
    IntRes2 in XMM0 as bits (imm8[6] = 0) or expanded to elements.  Flags:
    CF = IntRes2 != 0, ZF = lb < n, SF = la < n, OF = IntRes2[0], AF = PF =
    0.  The memory operand need not be aligned."""
    cdef int imm = <int>d.imm
    cdef int fmt = imm & 3
    cdef int agg = (imm >> 2) & 3
    cdef int pol = (imm >> 4) & 3
    cdef int n = 8 if (imm & 1) else 16
    cdef int explicit = d.op < 0x62
    cdef uint64_t A[2]
    cdef uint64_t B[2]
    cdef uint8_t* a = <uint8_t*>A
    cdef uint8_t* b = <uint8_t*>B
    cdef int la, lb, i, j, k, bv, r, x, ok
    cdef uint32_t res1 = 0, res2
    cdef uint64_t f = 0
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    rc = si_src(c, d, 1, 16, 0, B)
    if rc:
        return rc
    A[0] = c.fpu.xmm[d.reg][0]
    A[1] = c.fpu.xmm[d.reg][1]
    if explicit:
        la = si_strlen_explicit(c.regs[R_AX], d.osz == 8, n)
        lb = si_strlen_explicit(c.regs[R_DX], d.osz == 8, n)
    else:
        la = si_strlen_implicit(a, n, fmt)
        lb = si_strlen_implicit(b, n, fmt)
    for j in range(n):
        bv = j < lb
        if agg == 0:            # equal any: b[j] is one of a's valid elements
            r = 0
            if bv:
                x = si_elem(b, j, fmt)
                for i in range(la):
                    if si_elem(a, i, fmt) == x:
                        r = 1
                        break
        elif agg == 1:          # ranges: a[2k] <= b[j] <= a[2k+1] for a valid pair
            r = 0
            if bv:
                x = si_elem(b, j, fmt)
                i = 0
                while i + 1 < la:
                    if si_elem(a, i, fmt) <= x and x <= si_elem(a, i + 1, fmt):
                        r = 1
                        break
                    i += 2
        elif agg == 2:          # equal each: a[j] = b[j]; both invalid is true
            if j < la and bv:
                r = si_elem(a, j, fmt) == si_elem(b, j, fmt)
            else:
                r = (j >= la) and not bv
        else:                   # equal ordered: a occurs in b at j
            r = 1
            k = 0
            while j + k < n:
                if k >= la:
                    break       # a invalid: true whatever b holds
                if j + k >= lb:
                    r = 0       # a valid, b invalid: false
                    break
                if si_elem(a, k, fmt) != si_elem(b, j + k, fmt):
                    r = 0
                    break
                k += 1
        res1 |= <uint32_t>r << j
    if pol == 1:
        res2 = ~res1
    elif pol == 3:
        res2 = res1 ^ ((1U << lb) - 1)
    else:
        res2 = res1
    res2 &= (1U << n) - 1
    if res2:
        f |= F_CF
    if lb < n:
        f |= F_ZF
    if la < n:
        f |= F_SF
    if res2 & 1:
        f |= F_OF
    if d.op & 1:                # index
        if res2 == 0:
            i = n
        elif imm & 0x40:
            i = 63 - clz64(res2)
        else:
            i = ctz64(res2)
        c.regs[R_CX] = <uint64_t>i
    else:                       # mask
        if imm & 0x40:
            A[0] = 0
            A[1] = 0
            k = 16 // n
            for j in range(n):
                if (res2 >> j) & 1:
                    memset(a + j * k, 0xFF, k)
        else:
            A[0] = res2
            A[1] = 0
        c.fpu.xmm[0][0] = A[0]
        c.fpu.xmm[0][1] = A[1]
    set_status_flags(c, f)
    return RC_OK


cdef void init_sse4_tables() noexcept:
    global si_host_sse41
    cdef int op
    si_host_sse41 = vtx_si_host_has_sse41() != 0
    cdef uint32_t RM = OPF_MODRM
    for op in (0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35):
        op_set(OP38P[PFX_66], op, h_pmovx, RM, 0, FEAT_SSE4_1)
    op_set(OP38P[PFX_66], 0x17, h_ptest, RM, 0, FEAT_SSE4_1)
    op_set(OP38P[PFX_66], 0x2A, h_movntdqa, RM, 0, FEAT_SSE4_1)
    for op in (0x14, 0x15, 0x16, 0x17):
        op_set(OP3A[PFX_66], op, h_pextr, RM | OPF_IB, 0, FEAT_SSE4_1)
    for op in (0x20, 0x21, 0x22):
        op_set(OP3A[PFX_66], op, h_pinsr, RM | OPF_IB, 0, FEAT_SSE4_1)
    for op in (0x08, 0x09, 0x0A, 0x0B, 0x40, 0x41):
        op_set(OP3A[PFX_66], op, h_sse4_fp, RM | OPF_IB, 0, FEAT_SSE4_1)
    for op in (0x60, 0x61, 0x62, 0x63):
        op_set(OP3A[PFX_66], op, h_pcmpstr, RM | OPF_IB, 0, FEAT_SSE4_2)
