# Rotates, double-precision shifts, bit tests, bit scans and byte swap:
# ROL ROR RCL RCR (group 2 /0-/3), SHLD SHRD, BT BTS BTR BTC, BSF BSR, BSWAP.
# Semantics from the SDM Vol. 2 instruction pages; where a flag or a result is
# undefined the choice made here is noted next to it.

cdef extern from *:
    uint32_t bswap32 "__builtin_bswap32"(uint32_t x) nogil
    uint64_t bswap64 "__builtin_bswap64"(uint64_t x) nogil
    int ctz64 "__builtin_ctzll"(unsigned long long x) nogil
    int clz64 "__builtin_clzll"(unsigned long long x) nogil


cdef inline uint64_t shl64(uint64_t v, unsigned int n) noexcept nogil:
    """v << n with C's undefined cases (n >= 64) defined as 0."""
    return v << n if n < 64 else 0


cdef inline uint64_t shr64(uint64_t v, unsigned int n) noexcept nogil:
    return v >> n if n < 64 else 0


cdef inline unsigned int shift_count(Cpu* c, Insn* d) noexcept nogil:
    """The count of a group 2 instruction: 1 (D0 D1), CL (D2 D3) or imm8
    (C0 C1), masked to 5 bits, or 6 bits with a 64-bit operand."""
    cdef unsigned int cnt
    if d.op == 0xD0 or d.op == 0xD1:
        cnt = 1
    elif d.op == 0xD2 or d.op == 0xD3:
        cnt = <unsigned int>(c.regs[R_CX] & 0xFF)
    else:
        cnt = <unsigned int>(d.imm & 0xFF)
    return cnt & (0x3F if d.osz == 8 else 0x1F)


cdef inline int shift_count_zero(Cpu* c, Insn* d, uint64_t a) noexcept nogil:
    """A shift or rotate whose masked count is 0 changes no flag; the memory
    destination has already been probed for write (read_rm_rmw), and a 32-bit
    register destination is still written, so bits 63:32 are cleared in 64-bit
    mode (SDM Vol. 1 3.4.1.1)."""
    if d.mod == 3 and d.osz == 4:
        set_reg(c, d.rm, 4, a)
    return RC_OK


# --- ROL ROR RCL RCR (SDM Vol. 2 "RCL/RCR/ROL/ROR") ----------------------------

cdef int h_rotate(Cpu* c, Insn* d) noexcept nogil:
    """Group 2 /0 ROL, /1 ROR, /2 RCL, /3 RCR.  Only CF and OF change.  The
    rotate count is the masked count modulo the width (ROL ROR) or modulo the
    width + 1 for 8- and 16-bit RCL RCR; CF is updated whenever the masked
    count is non-zero, even when the rotation is a whole turn.  OF is defined
    for a masked count of 1; for other counts it is computed by the same
    formula (Intel processors and QEMU do so)."""
    cdef int size = d.osz
    cdef unsigned int bits = size * 8
    cdef uint64_t m = SIZE_MASK[size]
    cdef uint64_t sb = sign_bit(size)
    cdef uint64_t a, r, cf, cin, of
    cdef unsigned int cnt, t
    cdef int rc
    cnt = shift_count(c, d)
    rc = read_rm_rmw(c, d, size, &a)
    if rc:
        return rc
    a &= m
    if cnt == 0:
        return shift_count_zero(c, d, a)
    cin = c.rflags & F_CF
    if d.ext == 0:                              # ROL
        t = cnt % bits
        r = ((a << t) | shr64(a, bits - t)) & m if t else a
        cf = r & 1
        of = ((r & sb) != 0) ^ cf
    elif d.ext == 1:                            # ROR
        t = cnt % bits
        r = (shl64(a, bits - t) | (a >> t)) & m if t else a
        cf = (r & sb) != 0
        of = ((r & sb) != 0) ^ ((r & (sb >> 1)) != 0)
    elif d.ext == 2:                            # RCL: rotate CF:dest left
        t = cnt % (bits + 1) if size < 4 else cnt
        if t == 0:
            r = a
            cf = cin
        else:
            r = (shl64(a, t) | shl64(cin, t - 1) | shr64(a, bits + 1 - t)) & m
            cf = shr64(a, bits - t) & 1
        of = ((r & sb) != 0) ^ cf
    else:                                       # RCR: rotate dest:CF right
        t = cnt % (bits + 1) if size < 4 else cnt
        # OF is MSB(DEST) XOR CF taken before the rotation (SDM RCR).
        of = ((a & sb) != 0) ^ cin
        if t == 0:
            r = a
            cf = cin
        else:
            r = (shr64(a, t) | shl64(cin, bits - t) | shl64(a, bits + 1 - t)) & m
            cf = shr64(a, t - 1) & 1
    rc = write_rm(c, d, size, r)
    if rc:
        return rc
    c.rflags = (c.rflags & ~(<uint64_t>(F_CF | F_OF))) | cf | (F_OF if of else 0)
    return RC_OK


# --- SHLD SHRD (SDM Vol. 2 "SHLD", "SHRD") -------------------------------------

cdef int h_shxd(Cpu* c, Insn* d) noexcept nogil:
    """0F A4/A5 SHLD r/m, r, imm8/CL and 0F AC/AD SHRD.  The count is masked
    to 5 bits (6 with a 64-bit operand); a masked count of 0 changes nothing.
    CF is the last bit shifted out of the destination; SF ZF PF follow the
    result; OF is defined for a count of 1 (the sign changed) and computed the
    same way otherwise; AF is undefined and left clear.  A 16-bit operand with
    a count above 16 has an undefined result: it is computed here as Intel
    processors do, shifting the 48-bit value dest:src:dest."""
    cdef int size = d.osz
    cdef unsigned int bits = size * 8
    cdef uint64_t m = SIZE_MASK[size]
    cdef uint64_t sb = sign_bit(size)
    cdef uint64_t a, src, r, cf, f, v
    cdef unsigned int cnt
    cdef int left = d.op == 0xA4 or d.op == 0xA5
    cdef int rc
    if d.op == 0xA4 or d.op == 0xAC:
        cnt = <unsigned int>(d.imm & 0xFF)
    else:
        cnt = <unsigned int>(c.regs[R_CX] & 0xFF)
    cnt &= 0x3F if size == 8 else 0x1F
    rc = read_rm_rmw(c, d, size, &a)
    if rc:
        return rc
    a &= m
    if cnt == 0:
        return shift_count_zero(c, d, a)
    src = get_reg(c, d.reg, size)
    if cnt > bits:
        # only a 16-bit operand gets here (count 17..31)
        v = (a << 32) | (src << 16) | a
        if left:
            r = (v >> (32 - cnt)) & m
            cf = (v >> (48 - cnt)) & 1
        else:
            r = (v >> cnt) & m
            cf = (v >> (cnt - 1)) & 1
    elif left:
        r = (shl64(a, cnt) | shr64(src, bits - cnt)) & m
        cf = shr64(a, bits - cnt) & 1
    else:
        r = (shr64(a, cnt) | shl64(src, bits - cnt)) & m
        cf = (a >> (cnt - 1)) & 1
    f = cf | szp_flags(r, size)
    if (r ^ a) & sb:
        f |= F_OF
    rc = write_rm(c, d, size, r)
    if rc:
        return rc
    set_status_flags(c, f)
    return RC_OK


# --- BT BTS BTR BTC (SDM Vol. 2 "BT", "BTS", "BTR", "BTC") ----------------------

cdef int h_bt(Cpu* c, Insn* d) noexcept nogil:
    """0F A3 BT, 0F AB BTS, 0F B3 BTR, 0F BB BTC r/m, r and 0F BA /4-/7 r/m,
    imm8; ext & 3 selects the operation (0 test, 1 set, 2 reset, 3 complement).
    CF receives the selected bit; ZF is unchanged; OF SF AF PF are undefined
    and left unchanged.

    With an immediate, or a register destination, the bit offset is taken
    modulo the operand width.  With a memory destination and a register bit
    offset, the offset is a signed integer that addresses the bit string
    beyond the operand: the access is at EA + size * floor(offset / width)."""
    cdef int size = d.osz
    cdef unsigned int bits = size * 8
    cdef int kind = d.ext & 3
    cdef uint64_t off_bits, a, r, bit
    cdef uint64_t addr = 0
    cdef int64_t soff
    cdef int rc
    if d.op == 0xBA:
        off_bits = d.imm & 0xFF
    else:
        off_bits = get_reg(c, d.reg, size)
    bit = off_bits & (bits - 1)
    if d.mod == 3:
        a = get_reg(c, d.rm, size)
    else:
        addr = ea_offset(c, d)
        if d.op != 0xBA:
            soff = sext(off_bits, size)
            # floor division by the width: an arithmetic shift
            soff = soff >> (3 + (1 if size == 2 else (2 if size == 4 else 3)))
            addr = (addr + <uint64_t>soff * <uint64_t>size) & SIZE_MASK[d.asz]
        if kind == 0:
            rc = mem_read(c, d.seg, addr, size, &a)
        else:
            rc = mem_read_rmw(c, d.seg, addr, size, &a)
            if rc == RC_OK and (d.flags & INSN_LOCK):
                lock_note(c, d.seg, addr, size)
        if rc:
            return rc
    if kind != 0:
        if kind == 1:
            r = a | (1ULL << bit)
        elif kind == 2:
            r = a & ~(1ULL << bit)
        else:
            r = a ^ (1ULL << bit)
        if d.mod == 3:
            set_reg(c, d.rm, size, r)
        else:
            rc = mem_write(c, d.seg, addr, size, r)
            if rc:
                return rc
    c.rflags = (c.rflags & ~(<uint64_t>F_CF)) | ((a >> bit) & 1)
    return RC_OK


# --- BSF BSR (SDM Vol. 2 "BSF", "BSR") -----------------------------------------

cdef int h_bsf_bsr(Cpu* c, Insn* d) noexcept nogil:
    """0F BC BSF, 0F BD BSR.  ZF = (source == 0).  With a zero source the
    SDM leaves the destination undefined; it keeps its value here as Intel and
    AMD processors do, except that a 32-bit destination is written back (Intel
    clears bits 63:32 in 64-bit mode).  CF OF SF AF PF are undefined and left
    unchanged.  (F3 0F BC/BD, TZCNT/LZCNT, run as BSF/BSR: the model reports
    neither BMI1 nor LZCNT, and such processors ignore the prefix.)"""
    cdef int size = d.osz
    cdef uint64_t s
    cdef int rc = read_rm(c, d, size, &s)
    if rc:
        return rc
    s &= SIZE_MASK[size]
    if s == 0:
        if size == 4:
            set_reg(c, d.reg, 4, get_reg(c, d.reg, 4))
        c.rflags |= F_ZF
        return RC_OK
    if d.op == 0xBC:
        set_reg(c, d.reg, size, <uint64_t>ctz64(s))
    else:
        set_reg(c, d.reg, size, <uint64_t>(63 - clz64(s)))
    c.rflags &= ~(<uint64_t>F_ZF)
    return RC_OK


# --- BSWAP (SDM Vol. 2 "BSWAP") -----------------------------------------------

cdef int h_bswap(Cpu* c, Insn* d) noexcept nogil:
    """0F C8+rd: reverse the bytes of a 32- or 64-bit register.  With a 16-bit
    operand the result is undefined; Intel processors clear the low word, and
    so does the model."""
    if d.osz == 8:
        c.regs[d.reg] = bswap64(c.regs[d.reg])
    elif d.osz == 4:
        set_reg(c, d.reg, 4, bswap32(<uint32_t>c.regs[d.reg]))
    else:
        set_reg(c, d.reg, 2, 0)
    return RC_OK
