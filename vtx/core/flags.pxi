# Lazy status flags (docs/architecture.rst, "The fast path of the interpreter").
#
# The common flag-setting instructions (ADD SUB CMP AND OR XOR TEST INC DEC)
# do not compute CF PF AF ZF SF OF.  They record what the flags are a function
# of: the kind of operation, its size, both operands and the result.  A flag
# is computed only when something reads it.  While c.lf_kind != LF_NONE the
# status bits of c.rflags are stale and the record is the truth.
#
# Who may see the record: only handlers whose opcode-table entry carries
# OPF_LAZY (they read flags through cond() and lazy_cf() and write them through
# alu_commit() / set_lazy()).  The run loop materializes the flags
# (flags_sync) before any other handler runs and before it delivers an
# exception, performs a VM exit or returns, so everything outside the loop's
# fast path (exception delivery, VM exits, the Python API, REP string
# instructions, PUSHF, LAHF, ADC...) sees a plain RFLAGS.

cdef enum:
    LF_NONE = 0
    LF_ADD = 1        # ADD:      r = a + b
    LF_SUB = 2        # SUB, CMP, NEG: r = a - b
    LF_LOGIC = 3      # AND OR XOR TEST: r; CF = OF = 0, AF cleared (see arith.pxi)
    LF_INC = 4        # INC: r = a + 1, CF kept in lf_cf
    LF_DEC = 5        # DEC: r = a - 1, CF kept in lf_cf
    LF_FIXED = 6      # IMUL, shifts: CF OF AF already known (lf_cf holds
                      # those flag bits), SF ZF PF from r


cdef inline void set_lazy(Cpu* c, uint32_t kind, uint32_t size, uint64_t a, uint64_t b, uint64_t r) noexcept nogil:
    """Record a flag-setting operation; a, b and r are already cut to size."""
    c.lf_kind = kind
    c.lf_size = size
    c.lf_a = a
    c.lf_b = b
    c.lf_r = r


cdef void flags_compute(Cpu* c) noexcept nogil:
    """Write the status flags the record describes into c.rflags (SDM Vol. 1
    Appendix A and the instruction pages of Vol. 2: the same values the eager
    alu() in arith.pxi computes) and drop the record."""
    cdef uint32_t size = c.lf_size
    cdef uint64_t a = c.lf_a, b = c.lf_b, r = c.lf_r
    cdef uint64_t sb = sign_bit(size)
    cdef uint64_t f = szp_flags(r, size)
    cdef uint32_t k = c.lf_kind
    if k == LF_ADD or k == LF_INC:
        f |= (a ^ b ^ r) & F_AF
        if (a ^ r) & (b ^ r) & sb:
            f |= F_OF
        if k == LF_ADD:
            if r < a:
                f |= F_CF
        else:
            f |= c.lf_cf
    elif k == LF_SUB or k == LF_DEC:
        f |= (a ^ b ^ r) & F_AF
        if (a ^ b) & (a ^ r) & sb:
            f |= F_OF
        if k == LF_SUB:
            if a < b:
                f |= F_CF
        else:
            f |= c.lf_cf
    elif k == LF_FIXED:
        f |= c.lf_cf & (F_CF | F_OF | F_AF)
    c.rflags = (c.rflags & ~(<uint64_t>F_STATUS)) | f
    c.lf_kind = LF_NONE


cdef inline void flags_sync(Cpu* c) noexcept nogil:
    if c.lf_kind != LF_NONE:
        flags_compute(c)


cdef inline uint64_t lazy_cf(Cpu* c) noexcept nogil:
    """CF (0 or 1) without materializing the other flags."""
    cdef uint32_t k = c.lf_kind
    if k > LF_LOGIC:                # INC, DEC and the fixed kinds keep it (first:
        return c.lf_cf & F_CF       # a DEC after a DEC is the counted loop)
    if k == LF_SUB:
        return c.lf_a < c.lf_b
    if k == LF_ADD:
        return c.lf_r < c.lf_a
    if k == LF_NONE:
        return c.rflags & F_CF
    return 0                        # LF_LOGIC


cdef int cond_slow(Cpu* c, int cc) noexcept nogil:
    """cond() for the cases the inline part does not read from the record:
    materialize the flags and test them."""
    cdef uint64_t f
    cdef int r
    cdef int k = cc >> 1
    cdef uint32_t kind = c.lf_kind
    cdef uint32_t size
    if kind == LF_LOGIC:                            # CF = OF = 0
        size = c.lf_size
        if k == 0 or k == 1:                        # O / NO, B / AE
            return cc & 1
        if k == 3:                                  # BE / A: ZF
            return (c.lf_r == 0) ^ (cc & 1)
        if k == 6:                                  # L / GE: SF
            return ((c.lf_r & sign_bit(size)) != 0) ^ (cc & 1)
        if k == 7:                                  # LE / G: ZF or SF
            return (c.lf_r == 0 or (c.lf_r & sign_bit(size)) != 0) ^ (cc & 1)
    flags_sync(c)
    f = c.rflags
    if k == 0:
        r = (f & F_OF) != 0
    elif k == 1:
        r = (f & F_CF) != 0
    elif k == 2:
        r = (f & F_ZF) != 0
    elif k == 3:
        r = (f & (F_CF | F_ZF)) != 0
    elif k == 4:
        r = (f & F_SF) != 0
    elif k == 5:
        r = (f & F_PF) != 0
    elif k == 6:
        r = ((f & F_SF) != 0) != ((f & F_OF) != 0)
    else:
        r = ((f & F_ZF) != 0) or (((f & F_SF) != 0) != ((f & F_OF) != 0))
    return r ^ (cc & 1)


cdef inline int cond_record(Cpu* c, int cc) noexcept nogil:
    """cond() where cond_inline_ok: E, NE, S, NS after any record (E, NE
    from RFLAGS without one); B, AE, BE, A, L, GE, LE, G after LF_SUB and
    LF_LOGIC.  Anything else gives 0: the caller has checked."""
    cdef int k = cc >> 1
    cdef uint32_t kind = c.lf_kind
    if kind != LF_NONE:
        if k == 2:                                  # E / NE: ZF
            return (c.lf_r == 0) ^ (cc & 1)
        if k == 4:                                  # S / NS: SF
            return ((c.lf_r & sign_bit(c.lf_size)) != 0) ^ (cc & 1)
        if kind == LF_SUB:
            if k == 1:                              # B / AE: CF
                return (c.lf_a < c.lf_b) ^ (cc & 1)
            if k == 3:                              # BE / A: CF or ZF
                return (c.lf_a <= c.lf_b) ^ (cc & 1)
            if k == 6:                              # L / GE: SF != OF
                return (sext(c.lf_a, c.lf_size) < sext(c.lf_b, c.lf_size)) ^ (cc & 1)
            if k == 7:                              # LE / G: ZF or SF != OF
                return (sext(c.lf_a, c.lf_size) <= sext(c.lf_b, c.lf_size)) ^ (cc & 1)
        elif kind == LF_LOGIC:                      # CF = OF = 0
            if k == 1:                              # B / AE: CF
                return cc & 1
            if k == 3:                              # BE / A: ZF
                return (c.lf_r == 0) ^ (cc & 1)
            if k == 6:                              # L / GE: SF
                return ((c.lf_r & sign_bit(c.lf_size)) != 0) ^ (cc & 1)
            if k == 7:                              # LE / G: ZF or SF
                return (c.lf_r == 0 or (c.lf_r & sign_bit(c.lf_size)) != 0) ^ (cc & 1)
    elif k == 2:
        return ((c.rflags & F_ZF) != 0) ^ (cc & 1)
    return 0


cdef inline int cond_inline_ok(uint32_t kind, int k) noexcept nogil:
    """Whether cond_record gives condition pair k (cc >> 1) for a record of
    this kind."""
    if kind == LF_NONE:
        return k == 2
    return k == 2 or k == 4 or ((kind == LF_SUB or kind == LF_LOGIC) and k != 0 and k != 5)


cdef inline int cond(Cpu* c, int cc) noexcept nogil:
    """Condition codes tttn (SDM Vol. 1 Appendix B).  The conditions a
    compiler branches on right after CMP, SUB, TEST, logic or DEC are read
    from the record directly (cond_record); small enough to inline, and with
    a constant cc (the specialized Jcc handlers) only one test remains.  The
    rest is cond_slow."""
    if cond_inline_ok(c.lf_kind, cc >> 1):
        return cond_record(c, cc)
    return cond_slow(c, cc)
