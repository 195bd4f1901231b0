# SSE, SSE2 and SSE3 floating point and data movement (SDM Vol. 1 chapters
# 10-12, Vol. 2 instruction pages): packed and scalar arithmetic, compares,
# conversions, moves, shuffles, unpacks and the bitwise logic on XMM
# registers.  The packed-integer instructions are in their own file.
#
# IEEE results are bit-exact because the host (an x86-64 processor) computes
# them: the guest's rounding control, FTZ and DAZ go into the host MXCSR with
# every exception masked, the host instruction runs on copies of the operands,
# and the flags it raises come back (the C helpers below, one inline-asm block
# each, so that no host code runs between the MXCSR load and store).  The
# guest's exception masks are then applied by the rules of SDM Vol. 1 11.5
# (sse_fp_check): see docs/architecture.rst for where this sits.

cdef extern from *:
    """
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>
    typedef struct { uint64_t q[2]; } vtx_x128;
    typedef uint32_t (*vtx_fpop_t)(uint32_t, uint64_t*, const uint64_t*);

    /* xmm0 = d, xmm1 = s; run `text` (dst xmm0, src xmm1) under MXCSR csr;
       d = xmm0; the raised flags are returned.  The host MXCSR is restored. */
    #define VTX_FPOP(name, text) \\
    static uint32_t name(uint32_t csr, uint64_t* d, const uint64_t* s) { \\
        uint32_t saved, out; \\
        __asm__ volatile("stmxcsr %[sv]\\n\\tldmxcsr %[cs]\\n\\t" \\
            "movdqu %[dv], %%xmm0\\n\\tmovdqu %[sr], %%xmm1\\n\\t" \\
            text "\\n\\tmovdqu %%xmm0, %[dv]\\n\\tstmxcsr %[o]\\n\\tldmxcsr %[sv]" \\
            : [dv] "+m" (*(vtx_x128*)d), [sv] "=m" (saved), [o] "=m" (out) \\
            : [sr] "m" (*(const vtx_x128*)s), [cs] "m" (csr) : "xmm0", "xmm1"); \\
        return out & 0x3F; }

    /* COMISS and friends: ZF PF CF of the host compare go to d[0]. */
    #define VTX_FPCOMI(name, text) \\
    static uint32_t name(uint32_t csr, uint64_t* d, const uint64_t* s) { \\
        uint32_t saved, out; uint8_t z, p, cf; \\
        __asm__ volatile("stmxcsr %[sv]\\n\\tldmxcsr %[cs]\\n\\t" \\
            "movdqu %[dv], %%xmm0\\n\\tmovdqu %[sr], %%xmm1\\n\\t" \\
            text " %%xmm1, %%xmm0\\n\\tsetz %[z]\\n\\tsetp %[p]\\n\\tsetc %[cf]\\n\\t" \\
            "stmxcsr %[o]\\n\\tldmxcsr %[sv]" \\
            : [sv] "=m" (saved), [o] "=m" (out), [z] "=qm" (z), [p] "=qm" (p), [cf] "=qm" (cf) \\
            : [dv] "m" (*(const vtx_x128*)d), [sr] "m" (*(const vtx_x128*)s), [cs] "m" (csr) \\
            : "xmm0", "xmm1", "cc"); \\
        d[0] = ((uint64_t)z << 6) | ((uint64_t)p << 2) | cf; \\
        return out & 0x3F; }

    #define VTX_FP4(base, ins) \\
        VTX_FPOP(vtx_##base##_ps, #ins "ps %%xmm1, %%xmm0") \\
        VTX_FPOP(vtx_##base##_pd, #ins "pd %%xmm1, %%xmm0") \\
        VTX_FPOP(vtx_##base##_ss, #ins "ss %%xmm1, %%xmm0") \\
        VTX_FPOP(vtx_##base##_sd, #ins "sd %%xmm1, %%xmm0")
    VTX_FP4(add, add)
    VTX_FP4(mul, mul)
    VTX_FP4(sub, sub)
    VTX_FP4(min, min)
    VTX_FP4(div, div)
    VTX_FP4(max, max)
    VTX_FP4(sqrt, sqrt)
    VTX_FPOP(vtx_rsqrtps, "rsqrtps %%xmm1, %%xmm0")
    VTX_FPOP(vtx_rsqrtss, "rsqrtss %%xmm1, %%xmm0")
    VTX_FPOP(vtx_rcpps, "rcpps %%xmm1, %%xmm0")
    VTX_FPOP(vtx_rcpss, "rcpss %%xmm1, %%xmm0")
    #define VTX_CMP4(k) \\
        VTX_FPOP(vtx_cmp##k##_ps, "cmpps $" #k ", %%xmm1, %%xmm0") \\
        VTX_FPOP(vtx_cmp##k##_pd, "cmppd $" #k ", %%xmm1, %%xmm0") \\
        VTX_FPOP(vtx_cmp##k##_ss, "cmpss $" #k ", %%xmm1, %%xmm0") \\
        VTX_FPOP(vtx_cmp##k##_sd, "cmpsd $" #k ", %%xmm1, %%xmm0")
    VTX_CMP4(0) VTX_CMP4(1) VTX_CMP4(2) VTX_CMP4(3)
    VTX_CMP4(4) VTX_CMP4(5) VTX_CMP4(6) VTX_CMP4(7)
    VTX_FPOP(vtx_cvtps2pd, "cvtps2pd %%xmm1, %%xmm0")
    VTX_FPOP(vtx_cvtpd2ps, "cvtpd2ps %%xmm1, %%xmm0")
    VTX_FPOP(vtx_cvtss2sd, "cvtss2sd %%xmm1, %%xmm0")
    VTX_FPOP(vtx_cvtsd2ss, "cvtsd2ss %%xmm1, %%xmm0")
    VTX_FPOP(vtx_cvtdq2ps, "cvtdq2ps %%xmm1, %%xmm0")
    VTX_FPOP(vtx_cvtps2dq, "cvtps2dq %%xmm1, %%xmm0")
    VTX_FPOP(vtx_cvttps2dq, "cvttps2dq %%xmm1, %%xmm0")
    VTX_FPOP(vtx_cvttpd2dq, "cvttpd2dq %%xmm1, %%xmm0")
    VTX_FPOP(vtx_cvtdq2pd, "cvtdq2pd %%xmm1, %%xmm0")
    VTX_FPOP(vtx_cvtpd2dq, "cvtpd2dq %%xmm1, %%xmm0")
    VTX_FPOP(vtx_haddpd, "haddpd %%xmm1, %%xmm0")
    VTX_FPOP(vtx_haddps, "haddps %%xmm1, %%xmm0")
    VTX_FPOP(vtx_hsubpd, "hsubpd %%xmm1, %%xmm0")
    VTX_FPOP(vtx_hsubps, "hsubps %%xmm1, %%xmm0")
    VTX_FPOP(vtx_addsubpd, "addsubpd %%xmm1, %%xmm0")
    VTX_FPOP(vtx_addsubps, "addsubps %%xmm1, %%xmm0")
    VTX_FPCOMI(vtx_comiss, "comiss")
    VTX_FPCOMI(vtx_comisd, "comisd")
    VTX_FPCOMI(vtx_ucomiss, "ucomiss")
    VTX_FPCOMI(vtx_ucomisd, "ucomisd")

    /* Indexed [base * 4 + form], form being the mandatory-prefix index of
       the decoder (0 none, 1 66, 2 F3, 3 F2); see the SSEOP_* bases. */
    #define VTX_C4(k) vtx_cmp##k##_ps, vtx_cmp##k##_pd, vtx_cmp##k##_ss, vtx_cmp##k##_sd
    static const vtx_fpop_t vtx_fpops[100] = {
        vtx_add_ps, vtx_add_pd, vtx_add_ss, vtx_add_sd,
        vtx_mul_ps, vtx_mul_pd, vtx_mul_ss, vtx_mul_sd,
        vtx_sub_ps, vtx_sub_pd, vtx_sub_ss, vtx_sub_sd,
        vtx_min_ps, vtx_min_pd, vtx_min_ss, vtx_min_sd,
        vtx_div_ps, vtx_div_pd, vtx_div_ss, vtx_div_sd,
        vtx_max_ps, vtx_max_pd, vtx_max_ss, vtx_max_sd,
        vtx_sqrt_ps, vtx_sqrt_pd, vtx_sqrt_ss, vtx_sqrt_sd,
        vtx_rsqrtps, 0, vtx_rsqrtss, 0,
        vtx_rcpps, 0, vtx_rcpss, 0,
        VTX_C4(0), VTX_C4(1), VTX_C4(2), VTX_C4(3),
        VTX_C4(4), VTX_C4(5), VTX_C4(6), VTX_C4(7),
        vtx_cvtps2pd, vtx_cvtpd2ps, vtx_cvtss2sd, vtx_cvtsd2ss,
        vtx_cvtdq2ps, vtx_cvtps2dq, vtx_cvttps2dq, 0,
        0, vtx_cvttpd2dq, vtx_cvtdq2pd, vtx_cvtpd2dq,
        0, vtx_haddpd, 0, vtx_haddps,
        0, vtx_hsubpd, 0, vtx_hsubps,
        0, vtx_addsubpd, 0, vtx_addsubps,
        vtx_comiss, vtx_comisd, 0, 0,
        vtx_ucomiss, vtx_ucomisd, 0, 0,
    };

    static inline uint32_t vtx_fp(int op, uint32_t csr, uint64_t* d, const uint64_t* s) {
        vtx_fpop_t f = (op >= 0 && op < 100) ? vtx_fpops[op] : 0;
        return f ? f(csr, d, s) : 0;
    }

    /* Whether one lane's result, rounded to the destination precision with
       an unbounded exponent range, is inexact: the precision exception an
       unmasked overflow or underflow reports with it (the result itself is
       not delivered).  op is the scalar operation (ADD/SUB/MUL/DIV SS or SD,
       or CVTSD2SS); x and y the lane's operands, DAZ already applied.  The
       operands are scaled by powers of two into the normal range, which is
       exact, and the scaled operation runs on the host. */
    #include <math.h>
    static int vtx_pe_unbounded(int op, uint64_t x, uint64_t y) {
        int dbl = (op & 3) == 3, base = op >> 2, ex = 0, ey = 0, k;
        uint64_t a[2] = {0, 0}, b[2] = {0, 0};
        if (base == 17) {                       /* CVTSD2SS: 53 -> 24 bits */
            double d, m; uint64_t mb;
            memcpy(&d, &x, 8);
            if (d == 0 || isinf(d) || isnan(d)) return 0;
            m = frexp(d, &ex);
            memcpy(&mb, &m, 8);
            return (mb & 0x1FFFFFFFULL) != 0;
        }
        if (dbl) {
            double p, q;
            memcpy(&p, &x, 8); memcpy(&q, &y, 8);
            if (p == 0 || q == 0) return 0;
            p = frexp(p, &ex); q = frexp(q, &ey);
            if (base == 0 || base == 2) {       /* ADD, SUB: one scale for both */
                if (abs(ex - ey) > 55) return 1;
                k = ex > ey ? ex : ey;
                p = ldexp(p, ex - k); q = ldexp(q, ey - k);
            }
            memcpy(&a[0], &p, 8); memcpy(&b[0], &q, 8);
        } else {
            float p, q; uint32_t t;
            t = (uint32_t)x; memcpy(&p, &t, 4);
            t = (uint32_t)y; memcpy(&q, &t, 4);
            if (p == 0 || q == 0) return 0;
            p = frexpf(p, &ex); q = frexpf(q, &ey);
            if (base == 0 || base == 2) {
                if (abs(ex - ey) > 26) return 1;
                k = ex > ey ? ex : ey;
                p = ldexpf(p, ex - k); q = ldexpf(q, ey - k);
            }
            memcpy(&t, &p, 4); a[0] = t;
            memcpy(&t, &q, 4); b[0] = t;
        }
        return (vtx_fpops[op](0x1F80, a, b) & 0x20) != 0;
    }

    /* CVTSI2SS/SD: k = 0 ss from int32, 1 ss from int64, 2 sd from int32,
       3 sd from int64; d is the destination XMM register (upper bits kept). */
    static uint32_t vtx_cvtsi2f(int k, uint32_t csr, uint64_t* d, int64_t v) {
        uint32_t saved, out;
        int32_t v32 = (int32_t)v;
    #define VTX_CVTI(text, arg) \\
        __asm__ volatile("stmxcsr %[sv]\\n\\tldmxcsr %[cs]\\n\\tmovdqu %[dv], %%xmm0\\n\\t" \\
            text "\\n\\tmovdqu %%xmm0, %[dv]\\n\\tstmxcsr %[o]\\n\\tldmxcsr %[sv]" \\
            : [dv] "+m" (*(vtx_x128*)d), [sv] "=m" (saved), [o] "=m" (out) \\
            : [v] "r" (arg), [cs] "m" (csr) : "xmm0")
        switch (k) {
        case 0: VTX_CVTI("cvtsi2ssl %[v], %%xmm0", v32); break;
        case 1: VTX_CVTI("cvtsi2ssq %[v], %%xmm0", v); break;
        case 2: VTX_CVTI("cvtsi2sdl %[v], %%xmm0", v32); break;
        default: VTX_CVTI("cvtsi2sdq %[v], %%xmm0", v); break;
        }
        return out & 0x3F;
    }

    /* CVT(T)SS2SI / CVT(T)SD2SI: k bit 0 a 64-bit result, bit 1 truncating,
       bit 2 from double.  The integer goes to *r (a 32-bit one zero-extended). */
    static uint32_t vtx_cvtf2i(int k, uint32_t csr, const uint64_t* s, uint64_t* r) {
        uint32_t saved, out, r32 = 0;
        uint64_t r64 = 0;
    #define VTX_CVTF(text, res) \\
        __asm__ volatile("stmxcsr %[sv]\\n\\tldmxcsr %[cs]\\n\\tmovdqu %[sr], %%xmm1\\n\\t" \\
            text "\\n\\tstmxcsr %[o]\\n\\tldmxcsr %[sv]" \\
            : [sv] "=m" (saved), [o] "=m" (out), [r] "=r" (res) \\
            : [sr] "m" (*(const vtx_x128*)s), [cs] "m" (csr) : "xmm1")
        switch (k & 7) {
        case 0: VTX_CVTF("cvtss2si %%xmm1, %[r]", r32); break;
        case 1: VTX_CVTF("cvtss2si %%xmm1, %[r]", r64); break;
        case 2: VTX_CVTF("cvttss2si %%xmm1, %[r]", r32); break;
        case 3: VTX_CVTF("cvttss2si %%xmm1, %[r]", r64); break;
        case 4: VTX_CVTF("cvtsd2si %%xmm1, %[r]", r32); break;
        case 5: VTX_CVTF("cvtsd2si %%xmm1, %[r]", r64); break;
        case 6: VTX_CVTF("cvttsd2si %%xmm1, %[r]", r32); break;
        default: VTX_CVTF("cvttsd2si %%xmm1, %[r]", r64); break;
        }
        *r = (k & 1) ? r64 : (uint64_t)r32;
        return out & 0x3F;
    }
    """
    uint32_t vtx_fp(int op, uint32_t csr, uint64_t* d, const uint64_t* s) nogil
    int vtx_pe_unbounded(int op, uint64_t x, uint64_t y) nogil
    uint32_t vtx_cvtsi2f(int k, uint32_t csr, uint64_t* d, int64_t v) nogil
    uint32_t vtx_cvtf2i(int k, uint32_t csr, const uint64_t* s, uint64_t* r) nogil


cdef enum:
    # MXCSR (SDM Vol. 1 10.2.3): flags 5:0, DAZ 6, masks 12:7, RC 14:13, FTZ 15.
    MX_IE = 1 << 0
    MX_DE = 1 << 1
    MX_ZE = 1 << 2
    MX_OE = 1 << 3
    MX_UE = 1 << 4
    MX_PE = 1 << 5
    MX_FLAGS = 0x3F
    MX_DAZ = 1 << 6
    MX_UM = 1 << 11
    MX_RC = 3 << 13
    MX_FTZ = 1 << 15
    # The writable MXCSR bits, reported as MXCSR_MASK by FXSAVE: every bit
    # of 15:0, DAZ included (SDM Vol. 1 11.6.6); 31:16 are reserved (#GP).
    MXCSR_MASK = 0xFFFF
    # Operation bases of vtx_fpops (index base * 4 + prefix form).
    SSEOP_ADD = 0
    SSEOP_MUL = 1
    SSEOP_SUB = 2
    SSEOP_MIN = 3
    SSEOP_DIV = 4
    SSEOP_MAX = 5
    SSEOP_SQRT = 6
    SSEOP_RSQRT = 7
    SSEOP_RCP = 8
    SSEOP_CMP = 9          # 9..16: predicate imm8[2:0]
    SSEOP_CVT5A = 17
    SSEOP_CVT5B = 18
    SSEOP_CVTE6 = 19
    SSEOP_HADD = 20
    SSEOP_HSUB = 21
    SSEOP_ADDSUB = 22
    SSEOP_COMI = 23
    SSEOP_UCOMI = 24
    SSEOP_COUNT = 100
    # Result shapes, for the tininess test of an unmasked underflow.
    RES_NONE = 0
    RES_PS = 1
    RES_SS = 2
    RES_PD = 3
    RES_SD = 4
    RES_PS2 = 5
    # SSE_MSZ: memory operand size, and this bit when it must be 16-byte aligned.
    MSZ_ALIGN = 0x80

cdef uint8_t SSE_MSZ[100]      # memory operand size | MSZ_ALIGN
cdef uint8_t SSE_RES[100]      # RES_*
cdef uint8_t SSE_FLMASK[100]   # the exceptions the instruction can report (its SDM page)


cdef inline uint32_t host_csr(uint32_t g) noexcept nogil:
    """The host MXCSR for an operation under guest MXCSR g: the guest's RC,
    DAZ, every exception masked, flags clear.  FTZ only while underflow is
    masked: flush-to-zero applies only then (SDM Vol. 1 10.2.3.3), and with
    it unmasked the exact tiny result is needed for the tininess test."""
    cdef uint32_t h = 0x1F80 | (g & (MX_RC | MX_DAZ))
    if g & MX_UM:
        h |= g & MX_FTZ
    return h


cdef int raise_xm(Cpu* c) noexcept nogil:
    """An unmasked SIMD floating-point exception: #XM with CR4.OSXMMEXCPT = 1,
    else #UD (SDM Vol. 1 11.5.3, Vol. 3 6.15 interrupt 19)."""
    if c.cr4 & CR4_OSXMMEXCPT:
        return raise_exc(c, EXC_XM, 0, 0)
    return raise_ud(c)


cdef inline bint f32_denormal(uint32_t x) noexcept nogil:
    return (x & 0x7F800000u) == 0 and (x & 0x7FFFFFu) != 0


cdef inline bint f64_denormal(uint64_t x) noexcept nogil:
    return (x & 0x7FF0000000000000ULL) == 0 and (x & 0xFFFFFFFFFFFFFULL) != 0


cdef bint res_tiny(int kind, const uint64_t* r) noexcept nogil:
    """Whether a result computed with underflow masked and FTZ off holds a
    tiny (denormal) element: with UM = 0 the underflow exception is raised
    for every tiny result, exact or not (SDM Vol. 1 11.5.2.5)."""
    if kind == RES_PS:
        return (f32_denormal(<uint32_t>r[0]) or f32_denormal(<uint32_t>(r[0] >> 32)) or
                f32_denormal(<uint32_t>r[1]) or f32_denormal(<uint32_t>(r[1] >> 32)))
    if kind == RES_PS2:
        return f32_denormal(<uint32_t>r[0]) or f32_denormal(<uint32_t>(r[0] >> 32))
    if kind == RES_SS:
        return f32_denormal(<uint32_t>r[0])
    if kind == RES_PD:
        return f64_denormal(r[0]) or f64_denormal(r[1])
    if kind == RES_SD:
        return f64_denormal(r[0])
    return False


cdef inline uint64_t lane_get(const uint64_t* v, int i, int w) noexcept nogil:
    if w == 64:
        return v[i]
    return (v[i >> 1] >> (32 * (i & 1))) & 0xFFFFFFFFULL


cdef inline uint64_t lane_daz(uint64_t x, int w, uint32_t mxcsr) noexcept nogil:
    """A denormal operand reads as a zero of its sign under DAZ."""
    if mxcsr & MX_DAZ:
        if w == 64 and f64_denormal(x):
            return x & 0x8000000000000000ULL
        if w == 32 and f32_denormal(<uint32_t>x):
            return x & 0x80000000ULL
    return x


cdef uint32_t sse_lane_flags(int op, uint32_t mxcsr, const uint64_t* d, const uint64_t* s) noexcept nogil:
    """The flags of an arithmetic operation with an unmasked exception,
    gathered lane by lane (each lane as the scalar operation on its two
    operands): an unmasked overflow or underflow delivers no result, and
    its lane reports precision only if the result rounded with an unbounded
    exponent is inexact (vtx_pe_unbounded; as the host processor does, and
    as the x87 reports it for its biased result, SDM Vol. 1 4.9.1.4-5), while
    the other lanes report their own flags.  0xFFFFFFFF for the operations
    this does not cover (the caller keeps the whole-register flags)."""
    cdef int base = op // 4, form = op & 3, lanes, i, w, sop, sbase
    cdef uint64_t a[2]
    cdef uint64_t b[2]
    cdef uint64_t x, y
    cdef uint32_t fl, total = 0, masks = (mxcsr >> 7) & MX_FLAGS
    cdef uint32_t csr = host_csr(mxcsr)
    if base == SSEOP_ADD or base == SSEOP_SUB or base == SSEOP_MUL or base == SSEOP_DIV:
        w = 32 if (form == 0 or form == 2) else 64
        lanes = (4 if w == 32 else 2) if form < 2 else 1
    elif base == SSEOP_ADDSUB or base == SSEOP_HADD or base == SSEOP_HSUB:
        w = 32 if form == 3 else 64
        lanes = 4 if w == 32 else 2
    elif op == SSEOP_CVT5A * 4 + 1 or op == SSEOP_CVT5A * 4 + 3:
        w = 64
        lanes = 2 if form == 1 else 1
    else:
        return 0xFFFFFFFFu
    for i in range(lanes):
        sbase = base
        if base == SSEOP_ADDSUB:
            sbase = SSEOP_SUB if (i & 1) == 0 else SSEOP_ADD
            x = lane_get(d, i, w)
            y = lane_get(s, i, w)
        elif base == SSEOP_HADD or base == SSEOP_HSUB:
            sbase = SSEOP_ADD if base == SSEOP_HADD else SSEOP_SUB
            if i < lanes // 2:
                x = lane_get(d, 2 * i, w)
                y = lane_get(d, 2 * i + 1, w)
            else:
                x = lane_get(s, 2 * i - lanes, w)
                y = lane_get(s, 2 * i - lanes + 1, w)
        elif base == SSEOP_CVT5A:
            x = lane_get(s, i, w)
            y = 0
        else:
            x = lane_get(d, i, w)
            y = lane_get(s, i, w)
        sop = sbase * 4 + (3 if w == 64 else 2)
        a[0] = x
        a[1] = 0
        b[0] = x if base == SSEOP_CVT5A else y
        b[1] = 0
        if base == SSEOP_CVT5A:
            a[0] = 0
        fl = vtx_fp(sop, csr, a, b)
        if fl & ~masks & (MX_OE | MX_UE):
            fl &= ~(<uint32_t>MX_PE)
            if vtx_pe_unbounded(sop, lane_daz(x, w, mxcsr), lane_daz(y, w, mxcsr)):
                fl |= MX_PE
        total |= fl
    return total


cdef int sse_fp_check(Cpu* c, uint32_t fl, int res, const uint64_t* r) noexcept nogil:
    """Merge the exceptions of an operation into MXCSR and decide whether
    its result may be written (RC_OK) or an unmasked exception is raised
    instead, the destination unchanged (SDM Vol. 1 11.5.1, 11.5.2 and the
    precedence of 11.5.2 / Table 11-? in Vol. 1 "SIMD Floating-Point
    Exception Conditions"): the pre-computation exceptions (invalid,
    denormal, divide-by-zero) of every element are detected first; if one
    of them is unmasked, their flags are set and no post-computation
    exception (overflow, underflow, precision) is reported.  Otherwise
    every flag is set, and an unmasked post-computation exception raises
    the fault without writing the destination."""
    cdef uint32_t masks = (c.fpu.mxcsr >> 7) & MX_FLAGS
    cdef uint32_t pre
    if res and not (masks & MX_UE) and res_tiny(res, r):
        fl |= MX_UE
    if not (fl & ~masks):
        c.fpu.mxcsr |= fl
        return RC_OK
    pre = fl & (MX_IE | MX_DE | MX_ZE)
    if pre & ~masks:
        c.fpu.mxcsr |= pre
    else:
        c.fpu.mxcsr |= fl
    return raise_xm(c)


# --- arithmetic, compares, conversions between XMM forms ----------------------

cdef int h_sse_fp(Cpu* c, Insn* d) noexcept nogil:
    """The two-operand floating-point instructions whose destination is an
    XMM register (ADD SUB MUL DIV MIN MAX SQRT RCP RSQRT, CMP with imm8,
    the XMM-to-XMM conversions, HADD HSUB ADDSUB): d.ext = base * 4 +
    prefix form; CMPccPS/PD/SS/SD add the predicate imm8[2:0] (bits 7:3
    are ignored by the legacy-SSE encoding)."""
    cdef int op = d.ext
    cdef uint64_t s[2]
    cdef uint64_t r[2]
    cdef uint32_t fl, lf, masks
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    if op // 4 == SSEOP_CMP:
        op += <int>(d.imm & 7) * 4
    rc = simd_load(c, d, SSE_MSZ[op] & 0x1F, 16 if (SSE_MSZ[op] & MSZ_ALIGN) else 0, s)
    if rc:
        return rc
    r[0] = c.fpu.xmm[d.reg][0]
    r[1] = c.fpu.xmm[d.reg][1]
    fl = vtx_fp(op, host_csr(c.fpu.mxcsr), r, s) & SSE_FLMASK[op]
    masks = (c.fpu.mxcsr >> 7) & MX_FLAGS
    if fl & ~masks & (MX_OE | MX_UE) and not (fl & ~masks & (MX_IE | MX_DE | MX_ZE)):
        lf = sse_lane_flags(op, c.fpu.mxcsr, c.fpu.xmm[d.reg], s)
        if lf != 0xFFFFFFFFu:
            fl = lf & SSE_FLMASK[op]
    rc = sse_fp_check(c, fl, SSE_RES[op], r)
    if rc:
        return rc
    c.fpu.xmm[d.reg][0] = r[0]
    c.fpu.xmm[d.reg][1] = r[1]
    return RC_OK


cdef int h_sse_comi(Cpu* c, Insn* d) noexcept nogil:
    """0F 2E UCOMISS, 0F 2F COMISS (66: the SD forms): ZF PF CF from the
    compare (unordered 111, less 001, equal 100, greater 000), OF SF AF
    cleared; COMIS* signal invalid on any NaN, UCOMIS* on SNaN only."""
    cdef int op = d.ext
    cdef uint64_t s[2]
    cdef uint64_t r[2]
    cdef uint32_t fl
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    rc = simd_load(c, d, SSE_MSZ[op] & 0x1F, 0, s)
    if rc:
        return rc
    r[0] = c.fpu.xmm[d.reg][0]
    r[1] = c.fpu.xmm[d.reg][1]
    fl = vtx_fp(op, host_csr(c.fpu.mxcsr), r, s) & SSE_FLMASK[op]
    rc = sse_fp_check(c, fl, RES_NONE, r)
    if rc:
        return rc
    c.rflags = (c.rflags & ~(<uint64_t>(F_OF | F_SF | F_AF | F_ZF | F_PF | F_CF))) | \
        (r[0] & (F_ZF | F_PF | F_CF))
    return RC_OK


cdef int h_cvtsi2f(Cpu* c, Insn* d) noexcept nogil:
    """F3 0F 2A CVTSI2SS, F2 0F 2A CVTSI2SD xmm, r/m32 (r/m64 with REX.W)."""
    cdef uint64_t v
    cdef uint64_t r[2]
    cdef uint32_t fl
    cdef int size = 8 if d.osz == 8 else 4
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    rc = read_rm(c, d, size, &v)
    if rc:
        return rc
    r[0] = c.fpu.xmm[d.reg][0]
    r[1] = c.fpu.xmm[d.reg][1]
    # A 32-bit integer converts exactly to double: only precision is possible.
    fl = vtx_cvtsi2f((2 if d.rep == 0xF2 else 0) + (1 if size == 8 else 0),
                     host_csr(c.fpu.mxcsr), r, <int64_t>v) & MX_PE
    rc = sse_fp_check(c, fl, RES_NONE, r)
    if rc:
        return rc
    c.fpu.xmm[d.reg][0] = r[0]
    return RC_OK


cdef int h_cvtf2si(Cpu* c, Insn* d) noexcept nogil:
    """F3 0F 2C/2D CVT(T)SS2SI, F2 0F 2C/2D CVT(T)SD2SI r32/r64, xmm/m32/m64:
    an out-of-range or NaN source gives the integer indefinite (80000000H
    or 8000000000000000H) with invalid (Vol. 2 CVTSS2SI)."""
    cdef uint64_t s[2]
    cdef uint64_t v
    cdef uint32_t fl
    cdef int dbl = d.rep == 0xF2
    cdef int size = 8 if d.osz == 8 else 4
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    rc = simd_load(c, d, 8 if dbl else 4, 0, s)
    if rc:
        return rc
    fl = vtx_cvtf2i((4 if dbl else 0) + (2 if d.op == 0x2C else 0) + (1 if size == 8 else 0),
                    host_csr(c.fpu.mxcsr), s, &v) & (MX_IE | MX_PE)
    rc = sse_fp_check(c, fl, RES_NONE, s)
    if rc:
        return rc
    set_reg(c, d.reg, size, v)
    return RC_OK


cdef int mmx_form_avail(Cpu* c) noexcept nogil:
    """An SSE instruction with an MMX register operand (CVTPI2PS and
    friends): the SSE checks, then #MF for a pending x87 exception (SDM
    Vol. 2 CVTPI2PS: "the exception is handled before" it executes)."""
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    if c.fpu.fsw & 0x80:
        return raise_exc(c, EXC_MF, 0, 0)
    return RC_OK


cdef int h_cvt_mmx(Cpu* c, Insn* d) noexcept nogil:
    """The conversions with an MMX operand (SDM Vol. 2): 0F 2A CVTPI2PS
    xmm, mm/m64; 66 0F 2A CVTPI2PD xmm, mm/m64; 0F 2C/2D CVT(T)PS2PI mm,
    xmm/m64; 66 0F 2C/2D CVT(T)PD2PI mm, xmm/m128.  Each is the matching
    XMM conversion on a zero-extended operand (zeros convert exactly).
    Referencing an MMX register makes the x87-to-MMX transition (TOP = 0,
    all tags valid)."""
    cdef uint64_t s[2]
    cdef uint64_t r[2]
    cdef uint32_t fl
    cdef int op, rc, mmreg
    cdef bint pd = d.rep == 0x66
    if d.op == 0x2A:
        mmreg = d.mod == 3
        rc = mmx_form_avail(c) if mmreg else sse_avail(c)
        if rc:
            return rc
        rc = mmx_load(c, d, s)
        if rc:
            return rc
        s[1] = 0
        op = SSEOP_CVTE6 * 4 + 2 if pd else SSEOP_CVT5B * 4    # CVTDQ2PD / CVTDQ2PS
        r[0] = r[1] = 0
        fl = vtx_fp(op, host_csr(c.fpu.mxcsr), r, s) & SSE_FLMASK[op]
        rc = sse_fp_check(c, fl, RES_NONE, r)
        if rc:
            return rc
        if mmreg:
            mmx_enter(c)
        c.fpu.xmm[d.reg][0] = r[0]
        if pd:
            c.fpu.xmm[d.reg][1] = r[1]
        return RC_OK
    rc = mmx_form_avail(c)
    if rc:
        return rc
    if pd:
        rc = simd_load(c, d, 16, 16, s)
        op = SSEOP_CVTE6 * 4 + (1 if d.op == 0x2C else 3)         # CVTTPD2DQ / CVTPD2DQ
    else:
        rc = simd_load(c, d, 8, 0, s)
        s[1] = 0
        op = SSEOP_CVT5B * 4 + (2 if d.op == 0x2C else 1)         # CVTTPS2DQ / CVTPS2DQ
    if rc:
        return rc
    r[0] = r[1] = 0
    fl = vtx_fp(op, host_csr(c.fpu.mxcsr), r, s) & SSE_FLMASK[op]
    rc = sse_fp_check(c, fl, RES_NONE, r)
    if rc:
        return rc
    mmx_enter(c)
    mmx_set(c, d.reg, r[0])
    return RC_OK


# --- data movement ----------------------------------------------------------

cdef inline int xmm_store_rm(Cpu* c, Insn* d, int size, int align, const uint64_t* v) noexcept nogil:
    """Write v to the r/m operand: a whole XMM register when mod = 3."""
    if d.mod == 3:
        c.fpu.xmm[d.rm][0] = v[0]
        c.fpu.xmm[d.rm][1] = v[1]
        return RC_OK
    return simd_store(c, d, size, align, v)


cdef int h_sse_mov(Cpu* c, Insn* d) noexcept nogil:
    """Loads and stores of whole registers and scalars: 0F 10/11 MOVUPS
    MOVUPD MOVSS MOVSD, 0F 28/29 MOVAPS MOVAPD, 66/F3 0F 6F/7F MOVDQA
    MOVDQU, 0F 2B MOVNTPS/PD, 66 0F E7 MOVNTDQ, F2 0F F0 LDDQU.  The
    non-temporal hint has no architectural effect here."""
    cdef uint64_t v[2]
    cdef int op = d.op, rc
    cdef int store = op == 0x11 or op == 0x29 or op == 0x7F or op == 0x2B or op == 0xE7
    cdef int align = 16 if (op == 0x28 or op == 0x29 or op == 0x2B or op == 0xE7 or
                             ((op == 0x6F or op == 0x7F) and d.rep == 0x66)) else 0
    cdef int size = 4 if d.rep == 0xF3 and (op == 0x10 or op == 0x11) else (
        8 if d.rep == 0xF2 and (op == 0x10 or op == 0x11) else 16)
    if (op == 0x2B or op == 0xE7 or op == 0xF0) and d.mod == 3:
        return raise_ud(c)
    rc = sse_avail(c)
    if rc:
        return rc
    if store:
        v[0] = c.fpu.xmm[d.reg][0]
        v[1] = c.fpu.xmm[d.reg][1]
        if size < 16:
            if d.mod == 3:
                # MOVSS/MOVSD xmm2, xmm1: only the low element moves.
                if size == 4:
                    c.fpu.xmm[d.rm][0] = (c.fpu.xmm[d.rm][0] & 0xFFFFFFFF00000000ULL) | (v[0] & 0xFFFFFFFFULL)
                else:
                    c.fpu.xmm[d.rm][0] = v[0]
                return RC_OK
            if size == 4:
                v[0] &= 0xFFFFFFFFULL
            return simd_store(c, d, size, 0, v)
        return xmm_store_rm(c, d, 16, align, v)
    if size < 16 and d.mod == 3:
        if size == 4:
            c.fpu.xmm[d.reg][0] = (c.fpu.xmm[d.reg][0] & 0xFFFFFFFF00000000ULL) | \
                (c.fpu.xmm[d.rm][0] & 0xFFFFFFFFULL)
        else:
            c.fpu.xmm[d.reg][0] = c.fpu.xmm[d.rm][0]
        return RC_OK
    # A scalar load from memory zeroes the rest of the register.
    rc = simd_load(c, d, size, align, v)
    if rc:
        return rc
    if size == 4:
        v[0] &= 0xFFFFFFFFULL
    c.fpu.xmm[d.reg][0] = v[0]
    c.fpu.xmm[d.reg][1] = v[1]
    return RC_OK


cdef inline uint64_t dup_lo32(uint64_t x) noexcept nogil:
    return (x & 0xFFFFFFFFULL) | (x << 32)


cdef inline uint64_t dup_hi32(uint64_t x) noexcept nogil:
    return (x >> 32) | (x & 0xFFFFFFFF00000000ULL)


cdef int h_sse_movlh(Cpu* c, Insn* d) noexcept nogil:
    """The half-register moves (SDM Vol. 2): 0F 12 MOVLPS xmm, m64 /
    MOVHLPS xmm, xmm; 66 0F 12 MOVLPD; 0F 13 / 66 0F 13 MOVLPS/MOVLPD m64,
    xmm; 0F 16 MOVHPS xmm, m64 / MOVLHPS xmm, xmm; 66 0F 16 MOVHPD; 0F 17 /
    66 0F 17 MOVHPS/MOVHPD m64, xmm; and SSE3's F3 0F 12 MOVSLDUP, F3 0F 16
    MOVSHDUP, F2 0F 12 MOVDDUP.  The 66 forms and the stores have no
    register form (#UD)."""
    cdef uint64_t v[2]
    cdef int op = d.op, rc
    cdef uint64_t* x = c.fpu.xmm[d.reg]
    if d.mod == 3 and (d.rep == 0x66 or op == 0x13 or op == 0x17):
        return raise_ud(c)
    rc = sse_avail(c)
    if rc:
        return rc
    if op == 0x13 or op == 0x17:
        v[0] = x[0] if op == 0x13 else x[1]
        return simd_store(c, d, 8, 0, v)
    if d.rep == 0xF3:
        rc = simd_load(c, d, 16, 16, v)
        if rc:
            return rc
        if op == 0x12:
            x[0] = dup_lo32(v[0])
            x[1] = dup_lo32(v[1])
        else:
            x[0] = dup_hi32(v[0])
            x[1] = dup_hi32(v[1])
        return RC_OK
    if d.rep == 0xF2:          # MOVDDUP xmm, xmm/m64
        rc = simd_load(c, d, 8, 0, v)
        if rc:
            return rc
        x[0] = v[0]
        x[1] = v[0]
        return RC_OK
    rc = simd_load(c, d, 8, 0, v)
    if rc:
        return rc
    if op == 0x12:
        x[0] = v[1] if d.mod == 3 else v[0]     # MOVHLPS takes the high half
    else:
        x[1] = v[0]                             # MOVHPS / MOVHPD / MOVLHPS
    return RC_OK


cdef int h_sse_shuf(Cpu* c, Insn* d) noexcept nogil:
    """Lane rearrangement (SDM Vol. 2): 0F 14/15 UNPCKLPS/UNPCKHPS, 66 0F
    14/15 UNPCKLPD/UNPCKHPD, 0F C6 SHUFPS and 66 0F C6 SHUFPD imm8; the
    bitwise 0F 54-57 ANDPS ANDNPS ORPS XORPS (and the PD forms)."""
    cdef uint64_t s[2]
    cdef uint32_t a[4]
    cdef uint32_t b[4]
    cdef uint64_t* x = c.fpu.xmm[d.reg]
    cdef int op = d.op, rc
    cdef uint32_t imm = <uint32_t>d.imm
    rc = sse_avail(c)
    if rc:
        return rc
    rc = simd_load(c, d, 16, 16, s)
    if rc:
        return rc
    if op == 0x54:
        x[0] &= s[0]
        x[1] &= s[1]
    elif op == 0x55:
        x[0] = ~x[0] & s[0]
        x[1] = ~x[1] & s[1]
    elif op == 0x56:
        x[0] |= s[0]
        x[1] |= s[1]
    elif op == 0x57:
        x[0] ^= s[0]
        x[1] ^= s[1]
    elif d.rep == 0x66:
        if op == 0x14:
            x[1] = s[0]
        elif op == 0x15:
            x[0] = x[1]
            x[1] = s[1]
        else:
            x[0], x[1] = x[imm & 1], s[(imm >> 1) & 1]
    else:
        memcpy(a, x, 16)
        memcpy(b, s, 16)
        if op == 0x14:
            x[0] = a[0] | (<uint64_t>b[0] << 32)
            x[1] = a[1] | (<uint64_t>b[1] << 32)
        elif op == 0x15:
            x[0] = a[2] | (<uint64_t>b[2] << 32)
            x[1] = a[3] | (<uint64_t>b[3] << 32)
        else:
            x[0] = a[imm & 3] | (<uint64_t>a[(imm >> 2) & 3] << 32)
            x[1] = b[(imm >> 4) & 3] | (<uint64_t>b[(imm >> 6) & 3] << 32)
    return RC_OK


cdef int h_movmskp(Cpu* c, Insn* d) noexcept nogil:
    """0F 50 MOVMSKPS, 66 0F 50 MOVMSKPD reg, xmm: the sign bits, zero-
    extended into the whole general register; no memory form (#UD)."""
    cdef uint64_t* x
    cdef uint64_t m
    cdef int rc
    if d.mod != 3:
        return raise_ud(c)
    rc = sse_avail(c)
    if rc:
        return rc
    x = c.fpu.xmm[d.rm]
    if d.rep == 0x66:
        m = (x[0] >> 63) | ((x[1] >> 63) << 1)
    else:
        m = ((x[0] >> 31) & 1) | ((x[0] >> 62) & 2) | (((x[1] >> 31) & 1) << 2) | (((x[1] >> 63) & 1) << 3)
    c.regs[d.reg] = m
    return RC_OK


cdef int h_movnti(Cpu* c, Insn* d) noexcept nogil:
    """0F C3 MOVNTI m32/m64, r32/r64: an ordinary store for the model; not
    an SSE-state instruction (no CR0/CR4 checks), memory form only."""
    if d.mod == 3:
        return raise_ud(c)
    return mem_write(c, d.seg, ea_offset(c, d), d.osz if d.osz == 8 else 4,
                     get_reg(c, d.reg, d.osz if d.osz == 8 else 4))


cdef int h_sse_movq(Cpu* c, Insn* d) noexcept nogil:
    """66 0F 6E MOVD/MOVQ xmm, r/m32/64 (REX.W); 66 0F 7E MOVD/MOVQ r/m32/64,
    xmm; F3 0F 7E MOVQ xmm, xmm/m64; 66 0F D6 MOVQ xmm/m64, xmm.  The XMM
    destination's upper bits are zeroed."""
    cdef uint64_t v[2]
    cdef int size = 8 if d.osz == 8 else 4
    cdef int rc = sse_avail(c)
    if rc:
        return rc
    if d.op == 0x6E:
        rc = read_rm(c, d, size, v)
        if rc:
            return rc
        c.fpu.xmm[d.reg][0] = v[0]
        c.fpu.xmm[d.reg][1] = 0
        return RC_OK
    if d.op == 0x7E and d.rep == 0x66:
        return write_rm(c, d, size, c.fpu.xmm[d.reg][0] & SIZE_MASK[size])
    if d.op == 0x7E:
        rc = simd_load(c, d, 8, 0, v)
        if rc:
            return rc
        c.fpu.xmm[d.reg][0] = v[0]
        c.fpu.xmm[d.reg][1] = 0
        return RC_OK
    v[0] = c.fpu.xmm[d.reg][0]
    v[1] = 0
    if d.mod == 3:
        return xmm_store_rm(c, d, 16, 0, v)
    return simd_store(c, d, 8, 0, v)


cdef int h_prefetchw(Cpu* c, Insn* d) noexcept nogil:
    """0F 0D /1 PREFETCHW m8 (and the other /r of 0F 0D): a hint that
    accesses nothing; there is no register form (SDM Vol. 2 PREFETCHW)."""
    if d.mod == 3:
        return raise_ud(c)
    return RC_OK


# --- tables ---------------------------------------------------------------

cdef void sse_op(int pfx, int opc, handler_t fn, uint32_t flags, int ext, int feat) noexcept:
    """An OP2P entry.  Every SSE handler but COMIS*/UCOMIS* leaves RFLAGS
    alone, so they run with the status flags lazy (OPF_LAZY) and do not end
    a translated block (core/run.pxi)."""
    if fn != h_sse_comi:
        flags |= OPF_LAZY
    op_set(OP2P[pfx], opc, fn, flags | OPF_MODRM, ext, feat)


cdef void sse_fp4(int opc, int base, int pfx, int feat, int msz, int res, int flmask) noexcept:
    """Register CMP/arithmetic entry base * 4 + pfx with its operand size,
    result shape and exception list (and all eight predicates for CMP)."""
    cdef int k, n = 8 if base == SSEOP_CMP else 1
    for k in range(n):
        SSE_MSZ[(base + k) * 4 + pfx] = msz
        SSE_RES[(base + k) * 4 + pfx] = res
        SSE_FLMASK[(base + k) * 4 + pfx] = flmask
    if base >= SSEOP_COMI:
        sse_op(pfx, opc, h_sse_comi, 0, base * 4 + pfx, feat)
    else:
        sse_op(pfx, opc, h_sse_fp, OPF_IB if base == SSEOP_CMP else 0, base * 4 + pfx, feat)


cdef void init_sse_tables() noexcept:
    cdef int k, base, opc
    cdef int A16 = 16 | MSZ_ALIGN
    cdef int ALL = MX_FLAGS
    cdef int PRE = MX_IE | MX_DE
    cdef int CVTI = MX_IE | MX_PE
    cdef int NOZE = MX_FLAGS & ~MX_ZE
    # Arithmetic 0F 51 58 59 5C 5D 5E 5F and CMP 0F C2, by prefix: PS PD SS SD
    # (Vol. 2 Table A-3; the exception lists from each instruction's page).
    for opc, base in ((0x58, SSEOP_ADD), (0x59, SSEOP_MUL), (0x5C, SSEOP_SUB), (0x5D, SSEOP_MIN),
                      (0x5E, SSEOP_DIV), (0x5F, SSEOP_MAX), (0x51, SSEOP_SQRT), (0xC2, SSEOP_CMP)):
        k = PRE if base == SSEOP_MIN or base == SSEOP_MAX or base == SSEOP_CMP else (
            (MX_IE | MX_DE | MX_PE) if base == SSEOP_SQRT else (
                ALL if base == SSEOP_DIV else NOZE))
        sse_fp4(opc, base, PFX_NONE, FEAT_SSE, A16, RES_NONE if k == PRE else RES_PS, k)
        sse_fp4(opc, base, PFX_66, FEAT_SSE2, A16, RES_NONE if k == PRE else RES_PD, k)
        sse_fp4(opc, base, PFX_F3, FEAT_SSE, 4, RES_NONE if k == PRE else RES_SS, k)
        sse_fp4(opc, base, PFX_F2, FEAT_SSE2, 8, RES_NONE if k == PRE else RES_SD, k)
    sse_fp4(0x52, SSEOP_RSQRT, PFX_NONE, FEAT_SSE, A16, RES_NONE, 0)
    sse_fp4(0x52, SSEOP_RSQRT, PFX_F3, FEAT_SSE, 4, RES_NONE, 0)
    sse_fp4(0x53, SSEOP_RCP, PFX_NONE, FEAT_SSE, A16, RES_NONE, 0)
    sse_fp4(0x53, SSEOP_RCP, PFX_F3, FEAT_SSE, 4, RES_NONE, 0)
    # Conversions between floating-point forms and packed dwords.
    sse_fp4(0x5A, SSEOP_CVT5A, PFX_NONE, FEAT_SSE2, 8, RES_NONE, PRE)          # CVTPS2PD
    sse_fp4(0x5A, SSEOP_CVT5A, PFX_66, FEAT_SSE2, A16, RES_PS2, NOZE)          # CVTPD2PS
    sse_fp4(0x5A, SSEOP_CVT5A, PFX_F3, FEAT_SSE2, 4, RES_NONE, PRE)            # CVTSS2SD
    sse_fp4(0x5A, SSEOP_CVT5A, PFX_F2, FEAT_SSE2, 8, RES_SS, NOZE)             # CVTSD2SS
    sse_fp4(0x5B, SSEOP_CVT5B, PFX_NONE, FEAT_SSE2, A16, RES_NONE, MX_PE)      # CVTDQ2PS
    sse_fp4(0x5B, SSEOP_CVT5B, PFX_66, FEAT_SSE2, A16, RES_NONE, CVTI)         # CVTPS2DQ
    sse_fp4(0x5B, SSEOP_CVT5B, PFX_F3, FEAT_SSE2, A16, RES_NONE, CVTI)         # CVTTPS2DQ
    sse_fp4(0xE6, SSEOP_CVTE6, PFX_66, FEAT_SSE2, A16, RES_NONE, CVTI)         # CVTTPD2DQ
    sse_fp4(0xE6, SSEOP_CVTE6, PFX_F3, FEAT_SSE2, 8, RES_NONE, 0)              # CVTDQ2PD
    sse_fp4(0xE6, SSEOP_CVTE6, PFX_F2, FEAT_SSE2, A16, RES_NONE, CVTI)         # CVTPD2DQ
    # SSE3 horizontal and alternating arithmetic.
    sse_fp4(0x7C, SSEOP_HADD, PFX_66, FEAT_SSE3, A16, RES_PD, NOZE)
    sse_fp4(0x7C, SSEOP_HADD, PFX_F2, FEAT_SSE3, A16, RES_PS, NOZE)
    sse_fp4(0x7D, SSEOP_HSUB, PFX_66, FEAT_SSE3, A16, RES_PD, NOZE)
    sse_fp4(0x7D, SSEOP_HSUB, PFX_F2, FEAT_SSE3, A16, RES_PS, NOZE)
    sse_fp4(0xD0, SSEOP_ADDSUB, PFX_66, FEAT_SSE3, A16, RES_PD, NOZE)
    sse_fp4(0xD0, SSEOP_ADDSUB, PFX_F2, FEAT_SSE3, A16, RES_PS, NOZE)
    # COMISS COMISD UCOMISS UCOMISD.
    sse_fp4(0x2F, SSEOP_COMI, PFX_NONE, FEAT_SSE, 4, RES_NONE, PRE)
    sse_fp4(0x2F, SSEOP_COMI, PFX_66, FEAT_SSE2, 8, RES_NONE, PRE)
    sse_fp4(0x2E, SSEOP_UCOMI, PFX_NONE, FEAT_SSE, 4, RES_NONE, PRE)
    sse_fp4(0x2E, SSEOP_UCOMI, PFX_66, FEAT_SSE2, 8, RES_NONE, PRE)
    # Conversions with general registers and MMX registers.
    sse_op(PFX_F3, 0x2A, h_cvtsi2f, 0, 0, FEAT_SSE)
    sse_op(PFX_F2, 0x2A, h_cvtsi2f, 0, 0, FEAT_SSE2)
    for opc in (0x2C, 0x2D):
        sse_op(PFX_F3, opc, h_cvtf2si, 0, 0, FEAT_SSE)
        sse_op(PFX_F2, opc, h_cvtf2si, 0, 0, FEAT_SSE2)
    for opc in (0x2A, 0x2C, 0x2D):
        sse_op(PFX_NONE, opc, h_cvt_mmx, 0, 0, FEAT_SSE)
        sse_op(PFX_66, opc, h_cvt_mmx, 0, 0, FEAT_SSE2)
    # Moves.
    for opc in (0x10, 0x11):
        sse_op(PFX_NONE, opc, h_sse_mov, 0, 0, FEAT_SSE)
        sse_op(PFX_66, opc, h_sse_mov, 0, 0, FEAT_SSE2)
        sse_op(PFX_F3, opc, h_sse_mov, 0, 0, FEAT_SSE)
        sse_op(PFX_F2, opc, h_sse_mov, 0, 0, FEAT_SSE2)
    for opc in (0x28, 0x29, 0x2B):
        sse_op(PFX_NONE, opc, h_sse_mov, 0, 0, FEAT_SSE)
        sse_op(PFX_66, opc, h_sse_mov, 0, 0, FEAT_SSE2)
    for opc in (0x6F, 0x7F):
        sse_op(PFX_66, opc, h_sse_mov, 0, 0, FEAT_SSE2)
        sse_op(PFX_F3, opc, h_sse_mov, 0, 0, FEAT_SSE2)
    sse_op(PFX_66, 0xE7, h_sse_mov, 0, 0, FEAT_SSE2)
    sse_op(PFX_F2, 0xF0, h_sse_mov, 0, 0, FEAT_SSE3)
    for opc in (0x12, 0x13, 0x16, 0x17):
        sse_op(PFX_NONE, opc, h_sse_movlh, 0, 0, FEAT_SSE)
        sse_op(PFX_66, opc, h_sse_movlh, 0, 0, FEAT_SSE2)
    sse_op(PFX_F3, 0x12, h_sse_movlh, 0, 0, FEAT_SSE3)
    sse_op(PFX_F3, 0x16, h_sse_movlh, 0, 0, FEAT_SSE3)
    sse_op(PFX_F2, 0x12, h_sse_movlh, 0, 0, FEAT_SSE3)
    for opc in (0x14, 0x15, 0x54, 0x55, 0x56, 0x57):
        sse_op(PFX_NONE, opc, h_sse_shuf, 0, 0, FEAT_SSE)
        sse_op(PFX_66, opc, h_sse_shuf, 0, 0, FEAT_SSE2)
    sse_op(PFX_NONE, 0xC6, h_sse_shuf, OPF_IB, 0, FEAT_SSE)
    sse_op(PFX_66, 0xC6, h_sse_shuf, OPF_IB, 0, FEAT_SSE2)
    sse_op(PFX_NONE, 0x50, h_movmskp, 0, 0, FEAT_SSE)
    sse_op(PFX_66, 0x50, h_movmskp, 0, 0, FEAT_SSE2)
    sse_op(PFX_NONE, 0xC3, h_movnti, 0, 0, FEAT_SSE2)
    sse_op(PFX_66, 0x6E, h_sse_movq, 0, 0, FEAT_SSE2)
    sse_op(PFX_66, 0x7E, h_sse_movq, 0, 0, FEAT_SSE2)
    sse_op(PFX_F3, 0x7E, h_sse_movq, 0, 0, FEAT_SSE2)
    sse_op(PFX_66, 0xD6, h_sse_movq, 0, 0, FEAT_SSE2)
    op_set(OP2, 0x0D, h_prefetchw, OPF_MODRM, 0, FEAT_PREFETCHW)
    init_fxsave_tables()
