# Packed-integer SIMD: MMX (SDM Vol. 1 chapter 9), the integer instructions
# of SSE/SSE2 (Vol. 1 10.4.4, 11.4.3), SSSE3 (Vol. 1 12.9) and the integer
# part of SSE4.1/SSE4.2 (Vol. 1 12.10-12.11); instruction pages in Vol. 2.
#
# Each operation is written once, over a byte buffer of n bytes: n = 8 for
# the MMX register form (no mandatory prefix) and n = 16 for the XMM form
# (mandatory 66), so PADDB mm and PADDB xmm are the same loop.  The string
# compares (PCMPxSTRx), the blends, inserts, extracts and the instructions
# that round (ROUND*, DPPS/DPPD) live in core/insn/sse4.pxi.
#
# Exception checks (SDM Vol. 2 2.5 and the instruction pages): an MMX
# register form checks CR0.EM (#UD), CR0.TS (#NM) and a pending x87
# exception (#MF) (mmx_avail, core/insn/simd.pxi), whether it came with MMX
# or was added by SSE/SSE2, and the SSSE3 ones (PSHUFB mm, ... "Exceptions
# Type 4") also CR4.OSFXSR; an XMM form checks CR0.EM/CR4.OSFXSR (#UD)
# and CR0.TS (#NM) (sse_avail).  A 128-bit memory operand of a legacy-SSE
# instruction must be 16-byte aligned (#GP(0)) unless the instruction says
# otherwise; MMX memory operands have no alignment rule.  Every MMX
# instruction but EMMS puts the x87 unit in MMX state (TOP = 0, all tags
# valid: mmx_enter), once its operands have been read.

# Which table an operation came from (OpInfo.ext): the key of the shared
# operation switch is map << 8 | opcode.
cdef enum:
    SI_MAP0F = 0
    SI_MAP38 = 1
    SI_MAP3A = 2


cdef inline int si_sat_s8(int v) noexcept nogil:
    return -128 if v < -128 else (127 if v > 127 else v)


cdef inline int si_sat_u8(int v) noexcept nogil:
    return 0 if v < 0 else (255 if v > 255 else v)


cdef inline int si_sat_s16(int v) noexcept nogil:
    return -32768 if v < -32768 else (32767 if v > 32767 else v)


cdef inline int si_sat_u16(int v) noexcept nogil:
    return 0 if v < 0 else (65535 if v > 65535 else v)


cdef inline int si_avail(Cpu* c, int xmm) noexcept nogil:
    if xmm:
        return sse_avail(c)
    return mmx_avail(c)


cdef int si_mem_read(Cpu* c, Insn* d, int size, int align, uint64_t* out) noexcept nogil:
    """`size` bytes (1, 2, 4, 8 or 16) of the r/m memory operand, zero-extended
    into out[0..1]; `align` (0: none) is the alignment the instruction needs."""
    cdef uint64_t off = ea_offset(c, d)
    cdef int rc = simd_misaligned(c, d, off, align)
    if rc:
        return rc
    out[0] = 0
    out[1] = 0
    if size <= 8:
        return mem_read(c, d.seg, off, size, out)
    rc = mem_read(c, d.seg, off, 8, out)
    if rc:
        return rc
    return mem_read(c, d.seg, (off + 8) & SIZE_MASK[d.asz], 8, out + 1)


cdef inline int si_src(Cpu* c, Insn* d, int xmm, int msize, int align, uint64_t* b) noexcept nogil:
    """The r/m source: an XMM or MMX register, or msize bytes of memory."""
    if d.mod == 3:
        if xmm:
            b[0] = c.fpu.xmm[d.rm][0]
            b[1] = c.fpu.xmm[d.rm][1]
        else:
            b[0] = mmx_get(c, d.rm)
            b[1] = 0
        return RC_OK
    return si_mem_read(c, d, msize, align, b)


cdef inline void si_dst_get(Cpu* c, Insn* d, int xmm, uint64_t* a) noexcept nogil:
    if xmm:
        a[0] = c.fpu.xmm[d.reg][0]
        a[1] = c.fpu.xmm[d.reg][1]
    else:
        a[0] = mmx_get(c, d.reg)
        a[1] = 0


cdef inline void si_dst_set(Cpu* c, Insn* d, int xmm, const uint64_t* r) noexcept nogil:
    if xmm:
        c.fpu.xmm[d.reg][0] = r[0]
        c.fpu.xmm[d.reg][1] = r[1]
    else:
        mmx_enter(c)
        mmx_set(c, d.reg, r[0])


cdef inline uint64_t si_lane(const uint8_t* p, int size) noexcept nogil:
    cdef uint64_t v = 0
    memcpy(&v, p, size)
    return v


cdef inline void si_set_lane(uint8_t* p, int size, uint64_t v) noexcept nogil:
    memcpy(p, &v, size)


cdef void si_shift(uint8_t* r, int n, int lane, int kind, uint64_t cnt) noexcept nogil:
    """PSRL (kind 0), PSRA (1), PSLL (2) of each `lane`-byte element of r by
    cnt: a count above the element width gives 0, or copies of the sign bit
    for PSRA (SDM Vol. 2 PSRLW/PSRLD/PSRLQ, PSRAW/PSRAD, PSLLW/PSLLD/PSLLQ)."""
    cdef int bits = lane * 8
    cdef int i
    cdef uint64_t v
    cdef int64_t s
    for i in range(n // lane):
        v = si_lane(r + i * lane, lane)
        if kind == 1:
            s = sext(v, lane)
            s >>= (bits - 1) if cnt > <uint64_t>(bits - 1) else <int>cnt
            v = <uint64_t>s
        elif cnt >= <uint64_t>bits:
            v = 0
        elif kind == 0:
            v >>= cnt
        else:
            v <<= cnt
        si_set_lane(r + i * lane, lane, v)


cdef void si_pack(const uint8_t* a, const uint8_t* b, uint8_t* r, int n, int kind) noexcept nogil:
    """PACKSSWB (0), PACKUSWB (1), PACKSSDW (2), PACKUSDW (3): the elements of
    a then those of b, each narrowed to half its width with saturation."""
    cdef int i, half, v
    cdef const uint8_t* src
    if kind < 2:
        half = n // 2
        for i in range(n):
            src = a if i < half else b
            v = (<const int16_t*>src)[i % half]
            r[i] = <uint8_t>(si_sat_s8(v) if kind == 0 else si_sat_u8(v))
    else:
        half = n // 4
        for i in range(n // 2):
            src = a if i < half else b
            v = (<const int32_t*>src)[i % half]
            (<uint16_t*>r)[i] = <uint16_t>(si_sat_s16(v) if kind == 2 else si_sat_u16(v))


cdef void si_unpack(const uint8_t* a, const uint8_t* b, uint8_t* r, int n, int lane, int high) noexcept nogil:
    """PUNPCKL*/PUNPCKH*: interleave the low (or high) halves of a and b,
    element of a first."""
    cdef int i, m = n // 2 // lane
    cdef int base = (n // 2) if high else 0
    for i in range(m):
        memcpy(r + 2 * i * lane, a + base + i * lane, lane)
        memcpy(r + (2 * i + 1) * lane, b + base + i * lane, lane)


cdef void si_hop(const uint8_t* a, const uint8_t* b, uint8_t* r, int n, int lane, int kind) noexcept nogil:
    """PHADD/PHSUB (kind 0 add, 1 sub, 2 add saturating, 3 sub saturating):
    adjacent pairs of a, then of b (SDM Vol. 2 PHADDW/PHADDD, PHSUBW/PHSUBD,
    PHADDSW, PHSUBSW)."""
    cdef int i, m = n // lane, half = m // 2
    cdef const uint8_t* src
    cdef int64_t x, y, v
    for i in range(m):
        src = a if i < half else b
        x = sext(si_lane(src + (2 * (i % half)) * lane, lane), lane)
        y = sext(si_lane(src + (2 * (i % half) + 1) * lane, lane), lane)
        v = x - y if (kind & 1) else x + y
        if kind >= 2:
            v = si_sat_s16(<int>v)
        si_set_lane(r + i * lane, lane, <uint64_t>v)


cdef inline uint64_t si_clmul(uint64_t x, uint64_t y, uint64_t* hi) noexcept nogil:
    """Carry-less product of x and y (PCLMULQDQ, SDM Vol. 2): low 64 bits
    returned, high 64 bits in hi."""
    cdef uint64_t lo = 0, h = 0
    cdef int i
    for i in range(64):
        if (y >> i) & 1:
            lo ^= x << i
            if i:
                h ^= x >> (64 - i)
    hi[0] = h
    return lo


cdef int si_op(Cpu* c, int key, int n, const uint8_t* a, const uint8_t* b, uint8_t* r, int imm) noexcept nogil:
    """The two-operand packed-integer operations: r = op(a, b) on n bytes,
    a the destination's old value, b the source; key = map << 8 | opcode.
    Returns 1 for an opcode it does not know (a table bug: #UD)."""
    cdef int i, j, k, m, v, x, y
    cdef int64_t s
    cdef uint64_t u, hi
    cdef const uint16_t* aw = <const uint16_t*>a
    cdef const uint16_t* bw = <const uint16_t*>b
    cdef uint16_t* rw = <uint16_t*>r
    cdef const uint32_t* ad = <const uint32_t*>a
    cdef const uint32_t* bd = <const uint32_t*>b
    cdef uint32_t* rd = <uint32_t*>r
    cdef const uint64_t* aq = <const uint64_t*>a
    cdef const uint64_t* bq = <const uint64_t*>b
    cdef uint64_t* rq = <uint64_t*>r
    cdef const uint8_t* m0
    if key == 0x60 or key == 0x61 or key == 0x62 or key == 0x6C:      # PUNPCKL BW WD DQ QDQ
        si_unpack(a, b, r, n, 8 if key == 0x6C else (1 << (key - 0x60)), 0)
    elif key == 0x68 or key == 0x69 or key == 0x6A or key == 0x6D:    # PUNPCKH BW WD DQ QDQ
        si_unpack(a, b, r, n, 8 if key == 0x6D else (1 << (key - 0x68)), 1)
    elif key == 0x63:
        si_pack(a, b, r, n, 0)                 # PACKSSWB
    elif key == 0x67:
        si_pack(a, b, r, n, 1)                 # PACKUSWB
    elif key == 0x6B:
        si_pack(a, b, r, n, 2)                 # PACKSSDW
    elif key == 0x12B:
        si_pack(a, b, r, n, 3)                 # PACKUSDW
    elif key == 0x64:                          # PCMPGTB
        for i in range(n):
            r[i] = 0xFF if <signed char>a[i] > <signed char>b[i] else 0
    elif key == 0x65:                          # PCMPGTW
        for i in range(n // 2):
            rw[i] = 0xFFFF if <int16_t>aw[i] > <int16_t>bw[i] else 0
    elif key == 0x66:                          # PCMPGTD
        for i in range(n // 4):
            rd[i] = 0xFFFFFFFFU if <int32_t>ad[i] > <int32_t>bd[i] else 0
    elif key == 0x137:                         # PCMPGTQ
        for i in range(n // 8):
            rq[i] = 0xFFFFFFFFFFFFFFFFULL if <int64_t>aq[i] > <int64_t>bq[i] else 0
    elif key == 0x74:                          # PCMPEQB
        for i in range(n):
            r[i] = 0xFF if a[i] == b[i] else 0
    elif key == 0x75:                          # PCMPEQW
        for i in range(n // 2):
            rw[i] = 0xFFFF if aw[i] == bw[i] else 0
    elif key == 0x76:                          # PCMPEQD
        for i in range(n // 4):
            rd[i] = 0xFFFFFFFFU if ad[i] == bd[i] else 0
    elif key == 0x129:                         # PCMPEQQ
        for i in range(n // 8):
            rq[i] = 0xFFFFFFFFFFFFFFFFULL if aq[i] == bq[i] else 0
    elif key == 0xD1 or key == 0xD2 or key == 0xD3 or key == 0xE1 or key == 0xE2 or \
            key == 0xF1 or key == 0xF2 or key == 0xF3:
        # shifts by the count in the source's low 64 bits
        memcpy(r, a, n)
        si_shift(r, n, 1 << (key & 3), 0 if key < 0xE0 else (1 if key < 0xF0 else 2), bq[0])
    elif key == 0xD4 or key == 0xFB:           # PADDQ PSUBQ
        for i in range(n // 8):
            rq[i] = aq[i] + bq[i] if key == 0xD4 else aq[i] - bq[i]
    elif key == 0xD5:                          # PMULLW
        for i in range(n // 2):
            rw[i] = <uint16_t>(<int>(<int16_t>aw[i]) * <int>(<int16_t>bw[i]))
    elif key == 0xE5:                          # PMULHW
        for i in range(n // 2):
            rw[i] = <uint16_t>((<int>(<int16_t>aw[i]) * <int>(<int16_t>bw[i])) >> 16)
    elif key == 0xE4:                          # PMULHUW
        for i in range(n // 2):
            rw[i] = <uint16_t>((<uint32_t>aw[i] * <uint32_t>bw[i]) >> 16)
    elif key == 0xF4:                          # PMULUDQ
        for i in range(n // 8):
            rq[i] = <uint64_t>ad[2 * i] * <uint64_t>bd[2 * i]
    elif key == 0x128:                         # PMULDQ
        for i in range(n // 8):
            rq[i] = <uint64_t>(<int64_t>(<int32_t>ad[2 * i]) * <int64_t>(<int32_t>bd[2 * i]))
    elif key == 0x140:                         # PMULLD
        for i in range(n // 4):
            rd[i] = <uint32_t>(<uint64_t>ad[i] * <uint64_t>bd[i])
    elif key == 0xF5:                          # PMADDWD
        for i in range(n // 4):
            u = <uint64_t>(<int64_t>(<int16_t>aw[2 * i]) * <int16_t>bw[2 * i] +
                           <int64_t>(<int16_t>aw[2 * i + 1]) * <int16_t>bw[2 * i + 1])
            rd[i] = <uint32_t>u
    elif key == 0xF6:                          # PSADBW
        for i in range(n // 8):
            v = 0
            for j in range(8):
                x = <int>a[8 * i + j] - <int>b[8 * i + j]
                v += x if x >= 0 else -x
            rq[i] = <uint64_t>v
    elif key == 0xD8 or key == 0xDC or key == 0xE8 or key == 0xEC:   # PSUBUSB PADDUSB PSUBSB PADDSB
        for i in range(n):
            if key == 0xD8:
                r[i] = <uint8_t>si_sat_u8(<int>a[i] - <int>b[i])
            elif key == 0xDC:
                r[i] = <uint8_t>si_sat_u8(<int>a[i] + <int>b[i])
            elif key == 0xE8:
                r[i] = <uint8_t>si_sat_s8(<int>(<signed char>a[i]) - <int>(<signed char>b[i]))
            else:
                r[i] = <uint8_t>si_sat_s8(<int>(<signed char>a[i]) + <int>(<signed char>b[i]))
    elif key == 0xD9 or key == 0xDD or key == 0xE9 or key == 0xED:   # ... W
        for i in range(n // 2):
            if key == 0xD9:
                rw[i] = <uint16_t>si_sat_u16(<int>aw[i] - <int>bw[i])
            elif key == 0xDD:
                rw[i] = <uint16_t>si_sat_u16(<int>aw[i] + <int>bw[i])
            elif key == 0xE9:
                rw[i] = <uint16_t>si_sat_s16(<int>(<int16_t>aw[i]) - <int>(<int16_t>bw[i]))
            else:
                rw[i] = <uint16_t>si_sat_s16(<int>(<int16_t>aw[i]) + <int>(<int16_t>bw[i]))
    elif key == 0xDA or key == 0xDE:           # PMINUB PMAXUB
        for i in range(n):
            r[i] = a[i] if ((a[i] < b[i]) == (key == 0xDA)) else b[i]
    elif key == 0x138 or key == 0x13C:         # PMINSB PMAXSB
        for i in range(n):
            r[i] = a[i] if ((<signed char>a[i] < <signed char>b[i]) == (key == 0x138)) else b[i]
    elif key == 0xEA or key == 0xEE:           # PMINSW PMAXSW
        for i in range(n // 2):
            rw[i] = aw[i] if ((<int16_t>aw[i] < <int16_t>bw[i]) == (key == 0xEA)) else bw[i]
    elif key == 0x13A or key == 0x13E:         # PMINUW PMAXUW
        for i in range(n // 2):
            rw[i] = aw[i] if ((aw[i] < bw[i]) == (key == 0x13A)) else bw[i]
    elif key == 0x139 or key == 0x13D:         # PMINSD PMAXSD
        for i in range(n // 4):
            rd[i] = ad[i] if ((<int32_t>ad[i] < <int32_t>bd[i]) == (key == 0x139)) else bd[i]
    elif key == 0x13B or key == 0x13F:         # PMINUD PMAXUD
        for i in range(n // 4):
            rd[i] = ad[i] if ((ad[i] < bd[i]) == (key == 0x13B)) else bd[i]
    elif key == 0xDB or key == 0xDF or key == 0xEB or key == 0xEF:   # PAND PANDN POR PXOR
        for i in range(n // 8):
            if key == 0xDB:
                rq[i] = aq[i] & bq[i]
            elif key == 0xDF:
                rq[i] = ~aq[i] & bq[i]
            elif key == 0xEB:
                rq[i] = aq[i] | bq[i]
            else:
                rq[i] = aq[i] ^ bq[i]
    elif key == 0xE0:                          # PAVGB
        for i in range(n):
            r[i] = <uint8_t>((<int>a[i] + <int>b[i] + 1) >> 1)
    elif key == 0xE3:                          # PAVGW
        for i in range(n // 2):
            rw[i] = <uint16_t>((<uint32_t>aw[i] + <uint32_t>bw[i] + 1) >> 1)
    elif key == 0xF8 or key == 0xFC:           # PSUBB PADDB
        for i in range(n):
            r[i] = <uint8_t>(a[i] - b[i] if key == 0xF8 else a[i] + b[i])
    elif key == 0xF9 or key == 0xFD:           # PSUBW PADDW
        for i in range(n // 2):
            rw[i] = <uint16_t>(aw[i] - bw[i] if key == 0xF9 else aw[i] + bw[i])
    elif key == 0xFA or key == 0xFE:           # PSUBD PADDD
        for i in range(n // 4):
            rd[i] = ad[i] - bd[i] if key == 0xFA else ad[i] + bd[i]
    # --- SSSE3 (0F 38 00-0B, 1C-1E; 0F 3A 0F) ---
    elif key == 0x100:                         # PSHUFB
        for i in range(n):
            r[i] = 0 if (b[i] & 0x80) else a[b[i] & (n - 1)]
    elif key == 0x101 or key == 0x102 or key == 0x105 or key == 0x106:  # PHADDW PHADDD PHSUBW PHSUBD
        si_hop(a, b, r, n, 2 if (key & 3) == 1 else 4, 1 if key >= 0x105 else 0)
    elif key == 0x103 or key == 0x107:         # PHADDSW PHSUBSW
        si_hop(a, b, r, n, 2, 2 if key == 0x103 else 3)
    elif key == 0x104:                         # PMADDUBSW: unsigned bytes of a, signed of b
        for i in range(n // 2):
            rw[i] = <uint16_t>si_sat_s16(<int>a[2 * i] * <int>(<signed char>b[2 * i]) +
                                         <int>a[2 * i + 1] * <int>(<signed char>b[2 * i + 1]))
    elif key == 0x10B:                         # PMULHRSW
        for i in range(n // 2):
            v = <int>(<int16_t>aw[i]) * <int>(<int16_t>bw[i])
            rw[i] = <uint16_t>(((v >> 14) + 1) >> 1)
    elif key == 0x108 or key == 0x109 or key == 0x10A:   # PSIGNB PSIGNW PSIGND
        k = 1 << (key - 0x108)
        for i in range(n // k):
            s = sext(si_lane(b + i * k, k), k)
            u = si_lane(a + i * k, k)
            if s < 0:
                u = <uint64_t>(-<int64_t>u)
            elif s == 0:
                u = 0
            si_set_lane(r + i * k, k, u)
    elif key == 0x11C or key == 0x11D or key == 0x11E:   # PABSB PABSW PABSD
        k = 1 << (key - 0x11C)
        for i in range(n // k):
            s = sext(si_lane(b + i * k, k), k)
            si_set_lane(r + i * k, k, <uint64_t>(-s if s < 0 else s))
    elif key == 0x20F:                         # PALIGNR: (a:b) >> imm bytes
        for i in range(n):
            j = i + imm
            r[i] = b[j] if j < n else (a[j - n] if j < 2 * n else 0)
    # --- SSE4.1 (66 0F 38 / 66 0F 3A) ---
    elif key == 0x110 or key == 0x114 or key == 0x115:   # PBLENDVB BLENDVPS BLENDVPD: mask XMM0
        k = 1 if key == 0x110 else (4 if key == 0x114 else 8)
        m0 = <const uint8_t*>c.fpu.xmm[0]
        for i in range(n):
            r[i] = b[i] if (m0[(i // k) * k + k - 1] & 0x80) else a[i]
    elif key == 0x141:                         # PHMINPOSUW
        j = 0
        for i in range(1, 8):
            if bw[i] < bw[j]:
                j = i
        rq[0] = <uint64_t>bw[j] | (<uint64_t>j << 16)
        rq[1] = 0
    elif key == 0x20C or key == 0x20D or key == 0x20E:   # BLENDPS BLENDPD PBLENDW
        k = 4 if key == 0x20C else (8 if key == 0x20D else 2)
        for i in range(n):
            r[i] = b[i] if ((imm >> (i // k)) & 1) else a[i]
    elif key == 0x242:                         # MPSADBW
        x = (imm & 4)                          # offset into a: 0 or 4 bytes
        y = (imm & 3) * 4                      # offset into b
        for i in range(8):
            v = 0
            for j in range(4):
                m = <int>a[x + i + j] - <int>b[y + j]
                v += m if m >= 0 else -m
            rw[i] = <uint16_t>v
    elif key == 0x244:                         # PCLMULQDQ
        rq[0] = si_clmul(aq[imm & 1], bq[(imm >> 4) & 1], &hi)
        rq[1] = hi
    else:
        return 1
    return 0


cdef int h_pint(Cpu* c, Insn* d) noexcept nogil:
    """dst = op(dst, src) for the packed-integer instructions of the 0F,
    0F 38 and 0F 3A maps (OpInfo.ext says which map; an imm8 if the entry
    has one).  The MMX PUNPCKL* read 32 bits of memory (SDM Vol. 2
    PUNPCKLBW: "mm, mm/m32"); XMM memory operands are 16-byte aligned."""
    cdef int xmm = d.rep == 0x66
    cdef int n = 16 if xmm else 8
    cdef int msz = n
    cdef uint64_t A[2]
    cdef uint64_t B[2]
    cdef uint64_t R[2]
    cdef int rc
    if not xmm and d.ext != SI_MAP0F and not (c.cr4 & CR4_OSFXSR):
        # The MMX forms of SSSE3 take the SSE checks of "Exceptions Type 4"
        # (SDM Vol. 2 2.5, Table 2-21: CR4.OSFXSR = 0 is #UD) as well as
        # the MMX ones (#MF for a pending x87 exception).
        return raise_ud(c)
    rc = si_avail(c, xmm)
    if rc:
        return rc
    if not xmm and d.ext == SI_MAP0F and d.op >= 0x60 and d.op <= 0x62:
        msz = 4
    rc = si_src(c, d, xmm, msz, 16 if xmm else 0, B)
    if rc:
        return rc
    si_dst_get(c, d, xmm, A)
    R[0] = 0
    R[1] = 0
    if si_op(c, (d.ext << 8) | d.op, n, <uint8_t*>A, <uint8_t*>B, <uint8_t*>R, <int>d.imm):
        return raise_ud(c)
    si_dst_set(c, d, xmm, R)
    return RC_OK


cdef int h_pshift_imm(Cpu* c, Insn* d) noexcept nogil:
    """0F 71/72/73 /r ib: PSRLW/PSRAW/PSLLW, PSRLD/PSRAD/PSLLD, PSRLQ/PSLLQ
    and (66 only) PSRLDQ/PSLLDQ of the register in ModRM.rm by imm8.  A
    memory form or an unassigned ModRM.reg is #UD (SDM Vol. 2 Table A-6,
    groups 12-14)."""
    cdef int xmm = d.rep == 0x66
    cdef int n = 16 if xmm else 8
    cdef int g = (d.reg & 7)
    cdef int lane = 1 << (d.op - 0x70)          # 2, 4, 8
    cdef int kind, i
    cdef uint64_t R[2]
    cdef uint64_t cnt = d.imm & 0xFF
    cdef uint8_t* r = <uint8_t*>R
    cdef uint8_t tmp[16]
    cdef int rc
    if d.mod != 3:
        return raise_ud(c)
    if g == 2:
        kind = 0
    elif g == 4 and d.op != 0x73:
        kind = 1
    elif g == 6:
        kind = 2
    elif (g == 3 or g == 7) and d.op == 0x73 and xmm:
        kind = 3 if g == 3 else 4
    else:
        return raise_ud(c)
    rc = si_avail(c, xmm)
    if rc:
        return rc
    if xmm:
        R[0] = c.fpu.xmm[d.rm][0]
        R[1] = c.fpu.xmm[d.rm][1]
    else:
        R[0] = mmx_get(c, d.rm)
        R[1] = 0
    if kind <= 2:
        si_shift(r, n, lane, kind, cnt)
    else:
        # PSRLDQ / PSLLDQ: whole-register byte shifts; a count above 15 clears it
        memcpy(tmp, r, 16)
        for i in range(16):
            if kind == 3:
                r[i] = tmp[i + cnt] if i + <int>cnt < 16 else 0
            else:
                r[i] = tmp[i - cnt] if i >= <int>cnt else 0
    if xmm:
        c.fpu.xmm[d.rm][0] = R[0]
        c.fpu.xmm[d.rm][1] = R[1]
    else:
        mmx_enter(c)
        mmx_set(c, d.rm, R[0])
    return RC_OK


cdef int h_pshuf(Cpu* c, Insn* d) noexcept nogil:
    """0F 70 ib: PSHUFW mm (none), PSHUFD (66), PSHUFHW (F3), PSHUFLW (F2)."""
    cdef int xmm = d.rep != 0
    cdef uint64_t B[2]
    cdef uint64_t R[2]
    cdef uint16_t* bw = <uint16_t*>B
    cdef uint16_t* rw = <uint16_t*>R
    cdef uint32_t* bd = <uint32_t*>B
    cdef uint32_t* rd = <uint32_t*>R
    cdef int imm = <int>d.imm, i
    cdef int rc = si_avail(c, xmm)
    if rc:
        return rc
    rc = si_src(c, d, xmm, 16 if xmm else 8, 16 if xmm else 0, B)
    if rc:
        return rc
    R[0] = B[0]
    R[1] = B[1]
    if d.rep == 0:
        for i in range(4):
            rw[i] = bw[(imm >> (2 * i)) & 3]
        mmx_enter(c)
        mmx_set(c, d.reg, R[0])
        return RC_OK
    if d.rep == 0x66:
        for i in range(4):
            rd[i] = bd[(imm >> (2 * i)) & 3]
    elif d.rep == 0xF3:
        for i in range(4):
            rw[4 + i] = bw[4 + ((imm >> (2 * i)) & 3)]
    else:
        for i in range(4):
            rw[i] = bw[(imm >> (2 * i)) & 3]
    c.fpu.xmm[d.reg][0] = R[0]
    c.fpu.xmm[d.reg][1] = R[1]
    return RC_OK


cdef int h_emms(Cpu* c, Insn* d) noexcept nogil:
    """EMMS: every x87 tag empty (SDM Vol. 2 EMMS)."""
    cdef int rc = mmx_avail(c)
    if rc:
        return rc
    c.fpu.ftw = 0xFFFF
    return RC_OK


cdef int h_movd_mm(Cpu* c, Insn* d) noexcept nogil:
    """0F 6E MOVD/MOVQ mm, r/m32 (r/m64 with REX.W): zero-extended; 0F 7E
    MOVD/MOVQ r/m32 (r/m64), mm."""
    cdef int size = 8 if d.osz == 8 else 4
    cdef uint64_t v = 0
    cdef int rc = mmx_avail(c)
    if rc:
        return rc
    if d.op == 0x6E:
        rc = read_rm(c, d, size, &v)
        if rc:
            return rc
        mmx_enter(c)
        mmx_set(c, d.reg, v & SIZE_MASK[size])
        return RC_OK
    v = mmx_get(c, d.reg) & SIZE_MASK[size]
    rc = write_rm(c, d, size, v)
    if rc:
        return rc
    mmx_enter(c)
    return RC_OK


cdef int h_movq_mm(Cpu* c, Insn* d) noexcept nogil:
    """0F 6F MOVQ mm, mm/m64; 0F 7F MOVQ mm/m64, mm; 0F E7 MOVNTQ m64, mm
    (memory only: the non-temporal hint changes nothing here)."""
    cdef uint64_t v
    cdef int rc = mmx_avail(c)
    if rc:
        return rc
    if d.op == 0x6F:
        rc = mmx_load(c, d, &v)
        if rc:
            return rc
        mmx_enter(c)
        mmx_set(c, d.reg, v)
        return RC_OK
    if d.op == 0xE7 and d.mod == 3:
        return raise_ud(c)
    v = mmx_get(c, d.reg)
    if d.mod == 3:
        mmx_enter(c)
        mmx_set(c, d.rm, v)
        return RC_OK
    rc = mem_write(c, d.seg, ea_offset(c, d), 8, v)
    if rc:
        return rc
    mmx_enter(c)
    return RC_OK


cdef int h_pinsrw(Cpu* c, Insn* d) noexcept nogil:
    """0F C4 PINSRW mm, r32/m16, imm8 (word imm & 3); 66: xmm (imm & 7)."""
    cdef int xmm = d.rep == 0x66
    cdef uint64_t v = 0
    cdef uint64_t A[2]
    cdef int rc = si_avail(c, xmm)
    if rc:
        return rc
    if d.mod == 3:
        v = c.regs[d.rm] & 0xFFFF
    else:
        rc = mem_read(c, d.seg, ea_offset(c, d), 2, &v)
        if rc:
            return rc
    si_dst_get(c, d, xmm, A)
    (<uint16_t*>A)[d.imm & (7 if xmm else 3)] = <uint16_t>v
    si_dst_set(c, d, xmm, A)
    return RC_OK


cdef int h_pextrw_c5(Cpu* c, Insn* d) noexcept nogil:
    """0F C5 PEXTRW r32/r64, mm/xmm, imm8: the word zero-extended into the
    general register; a memory operand is #UD (that form is 66 0F 3A 15)."""
    cdef int xmm = d.rep == 0x66
    cdef uint64_t B[2]
    cdef int rc
    if d.mod != 3:
        return raise_ud(c)
    rc = si_avail(c, xmm)
    if rc:
        return rc
    si_src(c, d, xmm, 16, 0, B)
    if not xmm:
        mmx_enter(c)
    set_reg(c, d.reg, 8 if d.osz == 8 else 4, (<uint16_t*>B)[d.imm & (7 if xmm else 3)])
    return RC_OK


cdef int h_pmovmskb(Cpu* c, Insn* d) noexcept nogil:
    """0F D7 PMOVMSKB reg, mm/xmm: the most significant bit of each byte."""
    cdef int xmm = d.rep == 0x66
    cdef int n = 16 if xmm else 8
    cdef uint64_t B[2]
    cdef uint8_t* b = <uint8_t*>B
    cdef uint64_t m = 0
    cdef int i, rc
    if d.mod != 3:
        return raise_ud(c)
    rc = si_avail(c, xmm)
    if rc:
        return rc
    si_src(c, d, xmm, 16, 0, B)
    for i in range(n):
        m |= <uint64_t>(b[i] >> 7) << i
    if not xmm:
        mmx_enter(c)
    set_reg(c, d.reg, 8 if d.osz == 8 else 4, m)
    return RC_OK


cdef int h_maskmov(Cpu* c, Insn* d) noexcept nogil:
    """0F F7 MASKMOVQ mm1, mm2 / 66 0F F7 MASKMOVDQU xmm1, xmm2: the bytes of
    the first operand whose mask byte (second operand) has bit 7 set are
    stored at DS:rDI (segment override allowed; rDI by address size).  No
    alignment rule; the selected bytes are all checked before any is
    written."""
    cdef int xmm = d.rep == 0x66
    cdef int n = 16 if xmm else 8
    cdef uint64_t A[2]
    cdef uint64_t M[2]
    cdef uint8_t* a = <uint8_t*>A
    cdef uint8_t* m = <uint8_t*>M
    cdef uint64_t base
    cdef int i, rc
    if d.mod != 3:
        return raise_ud(c)
    rc = si_avail(c, xmm)
    if rc:
        return rc
    si_dst_get(c, d, xmm, A)
    si_src(c, d, xmm, 16, 0, M)
    base = c.regs[R_DI]
    for i in range(n):
        if m[i] & 0x80:
            rc = mem_check_write(c, d.seg, (base + i) & SIZE_MASK[d.asz], 1)
            if rc:
                return rc
    for i in range(n):
        if m[i] & 0x80:
            rc = mem_write(c, d.seg, (base + i) & SIZE_MASK[d.asz], 1, a[i])
            if rc:
                return rc
    if not xmm:
        mmx_enter(c)
    return RC_OK


cdef int h_movq2dq(Cpu* c, Insn* d) noexcept nogil:
    """F3 0F D6 MOVQ2DQ xmm, mm (zero-extended) and F2 0F D6 MOVDQ2Q mm,
    xmm (low quadword): register forms only; both touch the x87 state, so
    both the SSE checks and a pending x87 exception (#MF) apply."""
    cdef int rc
    if d.mod != 3:
        return raise_ud(c)
    rc = sse_avail(c)
    if rc:
        return rc
    if c.fpu.fsw & 0x80:
        return raise_exc(c, EXC_MF, 0, 0)
    mmx_enter(c)
    if d.rep == 0xF3:
        c.fpu.xmm[d.reg][0] = mmx_get(c, d.rm)
        c.fpu.xmm[d.reg][1] = 0
    else:
        mmx_set(c, d.reg, c.fpu.xmm[d.rm][0])
    return RC_OK


cdef void init_simdint_tables() noexcept:
    """Register MMX, the SSE/SSE2 packed-integer instructions, SSSE3, SSE4.1,
    SSE4.2 (but CRC32/POPCNT) and PCLMULQDQ (SDM Vol. 2 Tables A-3 to A-5)."""
    cdef int op
    cdef int fm
    cdef uint32_t RM = OPF_MODRM
    # 0F map: MMX form (no prefix) and XMM form (66) of each two-operand op.
    for op in list(range(0x60, 0x6C)) + [0x74, 0x75, 0x76, 0xD1, 0xD2, 0xD3, 0xD5, 0xD8, 0xD9,
                                         0xDB, 0xDC, 0xDD, 0xDF, 0xE1, 0xE2, 0xE5, 0xE8, 0xE9,
                                         0xEB, 0xEC, 0xED, 0xEF, 0xF1, 0xF2, 0xF3, 0xF5, 0xF8,
                                         0xF9, 0xFA, 0xFC, 0xFD, 0xFE]:
        op_set(OP2P[PFX_NONE], op, h_pint, RM, SI_MAP0F, FEAT_MMX)
        op_set(OP2P[PFX_66], op, h_pint, RM, SI_MAP0F, FEAT_SSE2)
    # the MMX-register instructions SSE added (SDM Vol. 1 10.4.4)
    for op in (0xDA, 0xDE, 0xE0, 0xE3, 0xE4, 0xEA, 0xEE, 0xF6):
        op_set(OP2P[PFX_NONE], op, h_pint, RM, SI_MAP0F, FEAT_SSE)
        op_set(OP2P[PFX_66], op, h_pint, RM, SI_MAP0F, FEAT_SSE2)
    # and those SSE2 added (Vol. 1 11.4.3)
    for op in (0xD4, 0xF4, 0xFB):
        op_set(OP2P[PFX_NONE], op, h_pint, RM, SI_MAP0F, FEAT_SSE2)
        op_set(OP2P[PFX_66], op, h_pint, RM, SI_MAP0F, FEAT_SSE2)
    op_set(OP2P[PFX_66], 0x6C, h_pint, RM, SI_MAP0F, FEAT_SSE2)     # PUNPCKLQDQ
    op_set(OP2P[PFX_66], 0x6D, h_pint, RM, SI_MAP0F, FEAT_SSE2)     # PUNPCKHQDQ
    for op in (0x71, 0x72, 0x73):
        op_set(OP2P[PFX_NONE], op, h_pshift_imm, RM | OPF_IB, 0, FEAT_MMX)
        op_set(OP2P[PFX_66], op, h_pshift_imm, RM | OPF_IB, 0, FEAT_SSE2)
    op_set(OP2P[PFX_NONE], 0x70, h_pshuf, RM | OPF_IB, 0, FEAT_SSE)   # PSHUFW
    op_set(OP2P[PFX_66], 0x70, h_pshuf, RM | OPF_IB, 0, FEAT_SSE2)    # PSHUFD
    op_set(OP2P[PFX_F3], 0x70, h_pshuf, RM | OPF_IB, 0, FEAT_SSE2)    # PSHUFHW
    op_set(OP2P[PFX_F2], 0x70, h_pshuf, RM | OPF_IB, 0, FEAT_SSE2)    # PSHUFLW
    op_set(OP2P[PFX_NONE], 0x77, h_emms, 0, 0, FEAT_MMX)
    op_set(OP2P[PFX_NONE], 0x6E, h_movd_mm, RM, 0, FEAT_MMX)
    op_set(OP2P[PFX_NONE], 0x7E, h_movd_mm, RM, 0, FEAT_MMX)
    op_set(OP2P[PFX_NONE], 0x6F, h_movq_mm, RM, 0, FEAT_MMX)
    op_set(OP2P[PFX_NONE], 0x7F, h_movq_mm, RM, 0, FEAT_MMX)
    op_set(OP2P[PFX_NONE], 0xE7, h_movq_mm, RM, 0, FEAT_SSE)         # MOVNTQ
    op_set(OP2P[PFX_NONE], 0xC4, h_pinsrw, RM | OPF_IB, 0, FEAT_SSE)
    op_set(OP2P[PFX_66], 0xC4, h_pinsrw, RM | OPF_IB, 0, FEAT_SSE2)
    op_set(OP2P[PFX_NONE], 0xC5, h_pextrw_c5, RM | OPF_IB, 0, FEAT_SSE)
    op_set(OP2P[PFX_66], 0xC5, h_pextrw_c5, RM | OPF_IB, 0, FEAT_SSE2)
    op_set(OP2P[PFX_NONE], 0xD7, h_pmovmskb, RM, 0, FEAT_SSE)
    op_set(OP2P[PFX_66], 0xD7, h_pmovmskb, RM, 0, FEAT_SSE2)
    op_set(OP2P[PFX_NONE], 0xF7, h_maskmov, RM, 0, FEAT_SSE)          # MASKMOVQ
    op_set(OP2P[PFX_66], 0xF7, h_maskmov, RM, 0, FEAT_SSE2)           # MASKMOVDQU
    op_set(OP2P[PFX_F3], 0xD6, h_movq2dq, RM, 0, FEAT_SSE2)           # MOVQ2DQ
    op_set(OP2P[PFX_F2], 0xD6, h_movq2dq, RM, 0, FEAT_SSE2)           # MOVDQ2Q
    # 0F 38: SSSE3, MMX and XMM forms.
    for op in (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B,
               0x1C, 0x1D, 0x1E):
        op_set(OP38P[PFX_NONE], op, h_pint, RM, SI_MAP38, FEAT_SSSE3)
        op_set(OP38P[PFX_66], op, h_pint, RM, SI_MAP38, FEAT_SSSE3)
    op_set(OP3A[PFX_NONE], 0x0F, h_pint, RM | OPF_IB, SI_MAP3A, FEAT_SSSE3)   # PALIGNR
    op_set(OP3A[PFX_66], 0x0F, h_pint, RM | OPF_IB, SI_MAP3A, FEAT_SSSE3)
    # 66 0F 38: SSE4.1 and SSE4.2 two-operand ops.
    for op in (0x10, 0x14, 0x15, 0x28, 0x29, 0x2B, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E,
               0x3F, 0x40, 0x41):
        op_set(OP38P[PFX_66], op, h_pint, RM, SI_MAP38, FEAT_SSE4_1)
    op_set(OP38P[PFX_66], 0x37, h_pint, RM, SI_MAP38, FEAT_SSE4_2)   # PCMPGTQ
    for op in (0x0C, 0x0D, 0x0E, 0x42):
        op_set(OP3A[PFX_66], op, h_pint, RM | OPF_IB, SI_MAP3A, FEAT_SSE4_1)
    op_set(OP3A[PFX_66], 0x44, h_pint, RM | OPF_IB, SI_MAP3A, FEAT_PCLMULQDQ)
    init_sse4_tables()
