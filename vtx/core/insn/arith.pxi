# Arithmetic and logic: ADD OR ADC SBB AND SUB XOR CMP, TEST, INC DEC NEG NOT,
# XADD CMPXCHG, SHL SHR SAR, MUL IMUL DIV IDIV, CBW/CWD.  (Rotates, double
# shifts and the bit instructions are in bitops.pxi.)  Flags as SDM Vol. 1 Appendix A
# and the per-instruction pages of Vol. 2; where the SDM leaves a flag
# undefined the choice is noted.

cdef extern from *:
    ctypedef unsigned long long u128 "unsigned __int128"
    ctypedef long long i128 "__int128"

cdef enum:
    ALU_ADD = 0
    ALU_OR = 1
    ALU_ADC = 2
    ALU_SBB = 3
    ALU_AND = 4
    ALU_SUB = 5
    ALU_XOR = 6
    ALU_CMP = 7


cdef inline uint64_t alu(int op, int size, uint64_t a, uint64_t b, uint64_t cf_in, uint64_t* fl) noexcept nogil:
    """The eight ALU operations on `size`-byte operands; returns the result
    and the new status flags in fl (CF PF AF ZF SF OF)."""
    cdef uint64_t m = SIZE_MASK[size]
    cdef uint64_t sb = sign_bit(size)
    cdef uint64_t r, f, cin = 0
    a &= m
    b &= m
    if op == ALU_ADD or op == ALU_ADC:
        if op == ALU_ADC:
            cin = cf_in & 1
        r = (a + b + cin) & m
        f = szp_flags(r, size) | ((a ^ b ^ r) & 0x10)
        if r < a or (cin and r == a):
            f |= F_CF
        if (a ^ r) & (b ^ r) & sb:
            f |= F_OF
    elif op == ALU_SUB or op == ALU_SBB or op == ALU_CMP:
        if op == ALU_SBB:
            cin = cf_in & 1
        r = (a - b - cin) & m
        f = szp_flags(r, size) | ((a ^ b ^ r) & 0x10)
        if a < b or (cin and a == b):
            f |= F_CF
        if (a ^ b) & (a ^ r) & sb:
            f |= F_OF
    else:
        if op == ALU_AND:
            r = a & b
        elif op == ALU_OR:
            r = a | b
        else:
            r = a ^ b
        # CF = OF = 0; AF is undefined, cleared here as QEMU and KVM's
        # emulator do.
        f = szp_flags(r, size)
    fl[0] = f
    return r


cdef inline uint32_t alu_lazy_kind(int op) noexcept nogil:
    """The flag record of an ALU operation (ADC and SBB keep none): a
    function rather than a table, so that a constant op folds."""
    if op == ALU_ADD:
        return LF_ADD
    if op == ALU_SUB or op == ALU_CMP:
        return LF_SUB
    if op == ALU_OR or op == ALU_AND or op == ALU_XOR:
        return LF_LOGIC
    return LF_NONE


cdef inline uint64_t alu_result(Cpu* c, int op, int size, uint64_t a, uint64_t b, uint64_t* fl) noexcept nogil:
    """The result of one of the eight ALU operations, flags not yet written
    (see alu_commit).  ADC and SBB read CF and compute their flags at once
    into fl; the others leave the flags to the lazy record."""
    cdef uint64_t m = SIZE_MASK[size]
    if op == ALU_ADD:
        return (a + b) & m
    if op == ALU_SUB or op == ALU_CMP:
        return (a - b) & m
    if op == ALU_AND:
        return a & b & m
    if op == ALU_OR:
        return (a | b) & m
    if op == ALU_XOR:
        return (a ^ b) & m
    return alu(op, size, a, b, lazy_cf(c), fl)


cdef inline void alu_commit(Cpu* c, int op, int size, uint64_t a, uint64_t b, uint64_t r, uint64_t fl) noexcept nogil:
    """Write the flags of alu_result's operation, once nothing can fault."""
    cdef uint64_t m
    if op == ALU_ADC or op == ALU_SBB:
        c.lf_kind = LF_NONE        # ADC and SBB write every status flag
        set_status_flags(c, fl)
    else:
        m = SIZE_MASK[size]
        set_lazy(c, alu_lazy_kind(op), size, a & m, b & m, r)


cdef int alu_to_rm(Cpu* c, Insn* d, uint64_t src) noexcept nogil:
    cdef uint64_t a, r, fl = 0
    cdef uint64_t off
    cdef int rc
    cdef int size = d.osz
    if d.mod == 3:
        a = get_reg(c, d.rm, size)
        r = alu_result(c, d.ext, size, a, src, &fl)
        if d.ext != ALU_CMP:
            set_reg(c, d.rm, size, r)
    else:
        off = ea_offset(c, d)
        if d.ext == ALU_CMP:
            rc = mem_read(c, d.seg, off, size, &a)
        else:
            rc = mem_read_rmw(c, d.seg, off, size, &a)
            if rc == RC_OK and (d.flags & INSN_LOCK):
                lock_note(c, d.seg, off, size)
        if rc:
            return rc
        r = alu_result(c, d.ext, size, a, src, &fl)
        if d.ext != ALU_CMP:
            rc = mem_write(c, d.seg, off, size, r)
            if rc:
                return rc
    alu_commit(c, d.ext, size, a, src, r, fl)
    return RC_OK


cdef int h_alu_rm_r(Cpu* c, Insn* d) noexcept nogil:
    return alu_to_rm(c, d, get_reg(c, d.reg, d.osz))


cdef int h_alu_rm_imm(Cpu* c, Insn* d) noexcept nogil:
    return alu_to_rm(c, d, d.imm)


cdef int h_alu_r_rm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t a, b, r, fl = 0
    cdef int rc = read_rm(c, d, d.osz, &b)
    if rc:
        return rc
    a = get_reg(c, d.reg, d.osz)
    r = alu_result(c, d.ext, d.osz, a, b, &fl)
    if d.ext != ALU_CMP:
        set_reg(c, d.reg, d.osz, r)
    alu_commit(c, d.ext, d.osz, a, b, r, fl)
    return RC_OK


cdef int h_alu_acc_imm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t a, r, fl = 0
    a = get_reg(c, R_AX, d.osz)
    r = alu_result(c, d.ext, d.osz, a, d.imm, &fl)
    if d.ext != ALU_CMP:
        set_reg(c, R_AX, d.osz, r)
    alu_commit(c, d.ext, d.osz, a, d.imm, r, fl)
    return RC_OK


cdef inline void test_flags(Cpu* c, uint64_t a, uint64_t b, int size) noexcept nogil:
    set_lazy(c, LF_LOGIC, size, 0, 0, a & b & SIZE_MASK[size])


cdef int h_test_rm_r(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t a
    cdef int rc = read_rm(c, d, d.osz, &a)
    if rc:
        return rc
    test_flags(c, a, get_reg(c, d.reg, d.osz), d.osz)
    return RC_OK


cdef int h_test_rm_imm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t a
    cdef int rc = read_rm(c, d, d.osz, &a)
    if rc:
        return rc
    test_flags(c, a, d.imm, d.osz)
    return RC_OK


cdef int h_test_acc_imm(Cpu* c, Insn* d) noexcept nogil:
    test_flags(c, get_reg(c, R_AX, d.osz), d.imm, d.osz)
    return RC_OK


cdef inline uint64_t incdec(Cpu* c, uint64_t a, int size, int dec) noexcept nogil:
    """INC/DEC: like ADD/SUB 1 but CF is preserved (kept in the record)."""
    cdef uint64_t m = SIZE_MASK[size]
    cdef uint64_t r
    c.lf_cf = lazy_cf(c)
    a &= m
    if dec:
        r = (a - 1) & m
        set_lazy(c, LF_DEC, size, a, 1, r)
    else:
        r = (a + 1) & m
        set_lazy(c, LF_INC, size, a, 1, r)
    return r


cdef int h_inc_r(Cpu* c, Insn* d) noexcept nogil:
    set_reg(c, d.reg, d.osz, incdec(c, get_reg(c, d.reg, d.osz), d.osz, 0))
    return RC_OK


cdef int h_dec_r(Cpu* c, Insn* d) noexcept nogil:
    set_reg(c, d.reg, d.osz, incdec(c, get_reg(c, d.reg, d.osz), d.osz, 1))
    return RC_OK


cdef int h_incdec_rm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t a, r, off, m
    cdef int rc
    if d.mod == 3:
        set_reg(c, d.rm, d.osz, incdec(c, get_reg(c, d.rm, d.osz), d.osz, d.ext))
        return RC_OK
    off = ea_offset(c, d)
    rc = mem_read_rmw(c, d.seg, off, d.osz, &a)
    if rc:
        return rc
    if d.flags & INSN_LOCK:
        lock_note(c, d.seg, off, d.osz)
    m = SIZE_MASK[d.osz]
    r = ((a - 1) if d.ext else (a + 1)) & m
    rc = mem_write(c, d.seg, off, d.osz, r)
    if rc:
        return rc          # the flags are untouched by a faulting INC/DEC
    incdec(c, a, d.osz, d.ext)
    return RC_OK


cdef int h_not(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t a
    cdef int rc = read_rm_rmw(c, d, d.osz, &a)
    if rc:
        return rc
    return write_rm(c, d, d.osz, ~a)


cdef int h_neg(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t a, r, fl
    cdef int rc = read_rm_rmw(c, d, d.osz, &a)
    if rc:
        return rc
    r = alu(ALU_SUB, d.osz, 0, a, 0, &fl)    # CF = (operand != 0)
    rc = write_rm(c, d, d.osz, r)
    if rc:
        return rc
    set_status_flags(c, fl)
    return RC_OK


# --- exchange and add, compare and exchange ----------------------------------

cdef int h_xadd(Cpu* c, Insn* d) noexcept nogil:
    """0F C0/C1 XADD r/m, r (SDM Vol. 2 XADD): TEMP = SRC + DEST; SRC = DEST;
    DEST = TEMP.  Flags as ADD.  With the same register as both operands the
    sum wins."""
    cdef int size = d.osz
    cdef uint64_t a, b, r, fl
    cdef int rc = read_rm_rmw(c, d, size, &a)
    if rc:
        return rc
    b = get_reg(c, d.reg, size)
    r = alu(ALU_ADD, size, a, b, 0, &fl)
    if d.mod == 3:
        set_reg(c, d.reg, size, a)
        set_reg(c, d.rm, size, r)
    else:
        rc = mem_write(c, d.seg, ea_offset(c, d), size, r)
        if rc:
            return rc
        set_reg(c, d.reg, size, a)
    set_status_flags(c, fl)
    return RC_OK


cdef int h_cmpxchg(Cpu* c, Insn* d) noexcept nogil:
    """0F B0/B1 CMPXCHG r/m, r (SDM Vol. 2 CMPXCHG).  Flags as CMP of the
    accumulator with the destination.  Equal: DEST = SRC, the accumulator is
    not written.  Not equal: the accumulator receives DEST; a memory
    destination gets a write cycle of its own value (so a read-only page
    faults either way), a register destination is not written.  So in 64-bit
    mode with a 32-bit operand, RAX keeps bits 63:32 when the values are equal
    and a register destination keeps them when they differ, as processors do
    (the SDM's pseudo-code writes DEST in both cases)."""
    cdef int size = d.osz
    cdef uint64_t t, acc, fl
    cdef int rc = read_rm_rmw(c, d, size, &t)
    if rc:
        return rc
    t &= SIZE_MASK[size]
    acc = get_reg(c, R_AX, size)
    alu(ALU_CMP, size, acc, t, 0, &fl)
    if acc == t:
        rc = write_rm(c, d, size, get_reg(c, d.reg, size))
        if rc:
            return rc
    else:
        if d.mod != 3:
            rc = mem_write(c, d.seg, ea_offset(c, d), size, t)
            if rc:
                return rc
        set_reg(c, R_AX, size, t)
    set_status_flags(c, fl)
    return RC_OK


# --- shifts (SDM Vol. 2 "SAL/SAR/SHL/SHR") --------------------------------

cdef int h_shift(Cpu* c, Insn* d) noexcept nogil:
    cdef int size = d.osz
    cdef int bits = size * 8
    cdef uint64_t a, r, m = SIZE_MASK[size]
    cdef uint64_t f, cf
    cdef unsigned int cnt
    cdef int rc
    # The count is masked to 5 bits (6 with a 64-bit operand).
    cnt = shift_count(c, d)
    rc = read_rm_rmw(c, d, size, &a)
    if rc:
        return rc
    if cnt == 0:
        # No flags change, but a memory operand is still accessed for write
        # (a fault on a read-only page is reported).
        if d.mod != 3:
            return mem_check_write(c, d.seg, ea_offset(c, d), size)
        # The destination is still written: a 32-bit register result is
        # zero-extended into bits 63:32 even when the count is 0 (SDM Vol. 1
        # 3.4.1.1, "32-bit operands generate a 32-bit result, zero-extended").
        if size == 4:
            set_reg(c, d.rm, 4, a)
        return RC_OK
    a &= m
    if d.ext == 5:                      # SHR
        r = (a >> cnt) if cnt < 64 else 0
        cf = (a >> (cnt - 1)) & 1 if cnt - 1 < 64 else 0
        f = cf
        # OF: the most significant bit of the original operand (defined for
        # a count of 1; hardware computes it the same way for larger counts).
        if a & sign_bit(size):
            f |= F_OF
    elif d.ext == 7:                    # SAR
        r = (<uint64_t>(sext(a, size) >> (cnt if cnt < 64 else 63))) & m
        cf = (<uint64_t>(sext(a, size) >> ((cnt - 1) if cnt - 1 < 64 else 63))) & 1
        f = cf                          # OF = 0
    else:                               # SHL / SAL (/4 and /6)
        r = (a << cnt) & m if cnt < 64 else 0
        if cnt <= <unsigned int>bits:
            cf = (a >> (bits - cnt)) & 1 if (bits - cnt) < 64 else 0
        else:
            cf = 0                      # undefined when count > width
        f = cf
        if ((r & sign_bit(size)) != 0) != (cf != 0):
            f |= F_OF
    # AF is undefined for shifts by a non-zero count; left clear.  SF ZF PF
    # come from the result when read (core/flags.pxi, LF_FIXED).
    rc = write_rm(c, d, size, r)
    if rc:
        return rc
    set_lazy(c, LF_FIXED, size, 0, 0, r)
    c.lf_cf = f
    return RC_OK


# --- multiply and divide ----------------------------------------------------

cdef int h_muldiv(Cpu* c, Insn* d) noexcept nogil:
    """F6/F7 /4 MUL, /5 IMUL, /6 DIV, /7 IDIV: implicit rAX (and rDX)."""
    cdef int size = d.osz
    cdef int bits = size * 8
    cdef uint64_t m = SIZE_MASK[size]
    cdef uint64_t src, lo, hi, q, rem
    cdef u128 ua, uq, ur, dividend, prod
    cdef i128 sa, sq, sr, sdividend, sprod
    cdef int64_t ss
    cdef uint64_t f
    cdef int rc = read_rm(c, d, size, &src)
    if rc:
        return rc
    src &= m
    if d.ext == 4 or d.ext == 5:
        if d.ext == 4:
            prod = <u128>(c.regs[R_AX] & m) * <u128>src
            lo = <uint64_t>prod & m
            hi = <uint64_t>(prod >> bits) & m
            f = (F_CF | F_OF) if hi != 0 else 0
        else:
            sprod = <i128>sext(c.regs[R_AX], size) * <i128>sext(src, size)
            lo = <uint64_t>sprod & m
            hi = <uint64_t>(sprod >> bits) & m
            f = (F_CF | F_OF) if sprod != <i128>sext(lo, size) else 0
        # SF ZF AF PF are undefined; set from the low half as QEMU does,
        # AF clear.
        f |= szp_flags(lo, size)
        if size == 1:
            set_reg(c, R_AX, 2, (hi << 8) | lo)
        else:
            set_reg(c, R_AX, size, lo)
            set_reg(c, R_DX, size, hi)
        set_status_flags(c, f)
        return RC_OK
    if src == 0:
        return raise_exc(c, EXC_DE, 0, 0)
    if size == 1:
        lo = c.regs[R_AX] & 0xFFFF
        dividend = lo
    else:
        lo = c.regs[R_AX] & m
        hi = c.regs[R_DX] & m
        dividend = (<u128>hi << bits) | lo
    if d.ext == 6:
        # Both operands as 128-bit: Cython takes u128 for a 64-bit type and
        # would otherwise truncate the dividend to 64 bits before dividing.
        uq = dividend / <u128>src
        ur = dividend % <u128>src
        if uq > m:
            return raise_exc(c, EXC_DE, 0, 0)
        q = <uint64_t>uq
        rem = <uint64_t>ur
    else:
        if size == 1:
            sdividend = <i128><int16_t>(lo & 0xFFFF)
        elif size == 8:
            sdividend = <i128>dividend      # already 128 bits: reinterpret
        elif dividend & ((<u128>1) << (2 * bits - 1)):
            # sign-extend the 2*bits-bit dividend
            sdividend = <i128>dividend - ((<i128>1) << (2 * bits))
        else:
            sdividend = <i128>dividend
        ss = sext(src, size)
        # Truncating division; the quotient must fit the signed range.  The
        # 128-bit arithmetic keeps INT_MIN / -1 defined in C.
        if size == 8:
            if (<i128>dividend < 0 and ss == -1 and dividend == ((<u128>1) << 127)):
                return raise_exc(c, EXC_DE, 0, 0)
        sq = sdividend / <i128>ss
        sr = sdividend % <i128>ss
        if sq > <i128>((1ULL << (bits - 1)) - 1) or sq < -(<i128>(1ULL << (bits - 1))):
            return raise_exc(c, EXC_DE, 0, 0)
        q = <uint64_t>sq & m
        rem = <uint64_t>sr & m
    if size == 1:
        set_reg(c, R_AX, 2, ((rem & 0xFF) << 8) | (q & 0xFF))
    else:
        set_reg(c, R_AX, size, q)
        set_reg(c, R_DX, size, rem)
    # All six status flags are undefined after DIV/IDIV: left unchanged.
    return RC_OK


cdef inline int imul2(Cpu* c, Insn* d, uint64_t a, uint64_t b) noexcept nogil:
    return imul2_sized(c, d, a, b, d.osz)


cdef inline int imul2_sized(Cpu* c, Insn* d, uint64_t a, uint64_t b, int size) noexcept nogil:
    """IMUL r, r/m (, imm): the low half to the register; CF = OF = 1 when
    the signed product does not fit."""
    cdef int64_t p64
    cdef uint64_t lo64
    if size <= 4:
        # A product of two 32-bit values fits 64 bits: no 128-bit multiply.
        p64 = sext(a, size) * sext(b, size)
        lo64 = <uint64_t>p64 & SIZE_MASK[size]
        set_reg(c, d.reg, size, lo64)
        set_lazy(c, LF_FIXED, size, 0, 0, lo64)
        c.lf_cf = (F_CF | F_OF) if p64 != sext(lo64, size) else 0
        return RC_OK
    cdef i128 p = <i128>sext(a, size) * <i128>sext(b, size)
    cdef uint64_t lo = <uint64_t>p & SIZE_MASK[size]
    cdef uint64_t f = (F_CF | F_OF) if p != <i128>sext(lo, size) else 0
    set_reg(c, d.reg, size, lo)
    # SF ZF PF (undefined) from the result as before, AF clear: LF_FIXED.
    set_lazy(c, LF_FIXED, size, 0, 0, lo)
    c.lf_cf = f
    return RC_OK


cdef int h_imul_r_rm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t b
    cdef int rc = read_rm(c, d, d.osz, &b)
    if rc:
        return rc
    return imul2(c, d, get_reg(c, d.reg, d.osz), b)


cdef int h_imul_r_rm_imm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t b
    cdef int rc = read_rm(c, d, d.osz, &b)
    if rc:
        return rc
    return imul2(c, d, b, d.imm)


cdef int h_cbw(Cpu* c, Insn* d) noexcept nogil:
    """CBW / CWDE / CDQE: sign-extend the lower half of rAX into rAX."""
    set_reg(c, R_AX, d.osz, <uint64_t>sext(c.regs[R_AX], d.osz // 2))
    return RC_OK


cdef int h_cwd(Cpu* c, Insn* d) noexcept nogil:
    """CWD / CDQ / CQO: fill rDX with the sign of rAX."""
    cdef uint64_t v = SIZE_MASK[d.osz] if (c.regs[R_AX] & sign_bit(d.osz)) else 0
    set_reg(c, R_DX, d.osz, v)
    return RC_OK
