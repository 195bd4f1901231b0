# Handlers specialized at decode time (docs/architecture.rst, "The fast path
# of the interpreter").  The generic handlers branch at run time on operand form
# (register or memory) and size; the forms below are the ones compiled code
# runs most, each an instantiation of one inline template with the operation
# and size as constants, which the C compiler folds.  specialize() picks one
# after an instruction is decoded; it must give exactly the generic handler's
# outcome (tests/test_engine_flags.py runs every form against the host CPU).
# All of them keep the status flags lazy (core/flags.pxi).


# --- templates ----------------------------------------------------------------

cdef inline int t_alu_rr(Cpu* c, Insn* d, int op, int size) noexcept nogil:
    """op r/m, r with a register destination (ModRM.rm); ADD OR AND SUB XOR
    CMP only (ADC and SBB stay generic)."""
    cdef uint64_t m = SIZE_MASK[size]
    cdef uint64_t a = c.regs[d.rm] & m
    cdef uint64_t b = c.regs[d.reg] & m
    cdef uint64_t r
    cdef uint64_t fl = 0
    r = alu_result(c, op, size, a, b, &fl)
    if op != ALU_CMP:
        set_reg(c, d.rm, size, r)
    alu_commit(c, op, size, a, b, r, fl)
    return RC_OK


cdef inline int t_alu_ri(Cpu* c, Insn* d, int op, int size) noexcept nogil:
    """op r, imm (ModRM.rm or the accumulator, moved to d.rm by specialize)."""
    cdef uint64_t m = SIZE_MASK[size]
    cdef uint64_t a = c.regs[d.rm] & m
    cdef uint64_t b = d.imm & m
    cdef uint64_t r
    cdef uint64_t fl = 0
    r = alu_result(c, op, size, a, b, &fl)
    if op != ALU_CMP:
        set_reg(c, d.rm, size, r)
    alu_commit(c, op, size, a, b, r, fl)
    return RC_OK


cdef inline int t_test_rr(Cpu* c, Insn* d, int size) noexcept nogil:
    set_lazy(c, LF_LOGIC, size, 0, 0, c.regs[d.rm] & c.regs[d.reg] & SIZE_MASK[size])
    return RC_OK


cdef inline int t_test_ri(Cpu* c, Insn* d, int size) noexcept nogil:
    set_lazy(c, LF_LOGIC, size, 0, 0, c.regs[d.rm] & d.imm & SIZE_MASK[size])
    return RC_OK


cdef inline int t_incdec_r(Cpu* c, Insn* d, int dec, int size) noexcept nogil:
    set_reg(c, d.rm, size, incdec(c, c.regs[d.rm], size, dec))
    return RC_OK


cdef inline int t_mov_rr(Cpu* c, Insn* d, int size) noexcept nogil:
    set_reg(c, d.rm, size, c.regs[d.reg])
    return RC_OK


cdef inline int t_mov_ri(Cpu* c, Insn* d, int size) noexcept nogil:
    set_reg(c, d.reg, size, d.imm)
    return RC_OK


cdef int mov_r_m_slow(Cpu* c, Insn* d, uint64_t off, int size) noexcept nogil:
    """t_mov_r_m past the inline lookup.  Called through LOAD_SLOW, a
    pointer the C compiler cannot see through, so that it stays out of line
    and the call is a tail call: the inline path then keeps nothing on the
    stack."""
    cdef uint64_t v
    cdef int rc = mem_read_slow(c, d.seg, off, size, &v)
    if rc:
        return rc
    set_reg(c, d.reg, size, v)
    return RC_OK


ctypedef int (*load_slow_t)(Cpu* c, Insn* d, uint64_t off, int size) noexcept nogil
cdef load_slow_t LOAD_SLOW = mov_r_m_slow


cdef inline int t_mov_r_m(Cpu* c, Insn* d, int size) noexcept nogil:
    cdef uint64_t off = ea_offset(c, d)
    cdef uint8_t* p = data_hit(c, d.seg, off, size, ACC_READ)
    if p == NULL:
        return LOAD_SLOW(c, d, off, size)
    set_reg(c, d.reg, size, load_le(p, size))
    return RC_OK


cdef inline int t_mov_m_r(Cpu* c, Insn* d, int size) noexcept nogil:
    return mem_write(c, d.seg, ea_offset(c, d), size, c.regs[d.reg])


cdef inline int t_lea(Cpu* c, Insn* d, int size) noexcept nogil:
    set_reg(c, d.reg, size, ea_offset(c, d))
    return RC_OK


cdef inline int t_jcc(Cpu* c, Insn* d, int cc) noexcept nogil:
    if cond(c, cc):
        if d.cc2 & CC2_LOCAL:           # to an op of its block: checked with it
            return RC_LOCAL
        return taken(branch_to(c, c.next_rip + d.imm, d.osz))
    return RC_OK


cdef inline int t_cmov(Cpu* c, Insn* d, int cc) noexcept nogil:
    """CMOVcc with a constant condition: as h_cmovcc."""
    cdef uint64_t v
    cdef int rc = read_rm(c, d, d.osz, &v)
    if rc:
        return rc
    if cond(c, cc):
        set_reg(c, d.reg, d.osz, v)
    elif d.osz == 4:
        set_reg(c, d.reg, 4, get_reg(c, d.reg, 4))
    return RC_OK


cdef inline int t_imul(Cpu* c, Insn* d, int size, int with_imm) noexcept nogil:
    """IMUL r, r/m and IMUL r, r/m, imm of a constant size."""
    cdef uint64_t b
    cdef int rc = read_rm(c, d, size, &b)
    if rc:
        return rc
    if with_imm:
        return imul2_sized(c, d, b, d.imm, size)
    return imul2_sized(c, d, c.regs[d.reg], b, size)


cdef inline int t_shift_ri(Cpu* c, Insn* d, int op, int size) noexcept nogil:
    """SHL/SAL (op 4), SHR (5) or SAR (7) of a register by a constant count,
    which specialize() masked and put in d.imm (1 to 31, or 63 with a 64-bit
    operand: a count that masks to 0 keeps the generic h_shift, which
    changes no flag).  Results and flags as h_shift (core/insn/arith.pxi)."""
    cdef unsigned int cnt = <unsigned int>d.imm
    cdef uint64_t m = SIZE_MASK[size]
    cdef uint64_t a = c.regs[d.rm] & m
    cdef uint64_t r, f
    if op == 5:
        r = a >> cnt
        f = (a >> (cnt - 1)) & 1
        if (a >> (size * 8 - 1)) & 1:
            f |= F_OF
    elif op == 7:
        r = (<uint64_t>(sext(a, size) >> cnt)) & m
        f = (<uint64_t>(sext(a, size) >> (cnt - 1))) & 1
    else:
        r = (a << cnt) & m
        f = (a >> (size * 8 - cnt)) & 1
        if ((r >> (size * 8 - 1)) & 1) != f:
            f |= F_OF
    c.regs[d.rm] = r                # a 32-bit result zero-extends (r is cut to size)
    set_lazy(c, LF_FIXED, size, 0, 0, r)
    c.lf_cf = f
    return RC_OK


# --- instantiations -------------------------------------------------------------

cdef int h_add_rr16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_ADD, 2)

cdef int h_add_ri16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_ADD, 2)

cdef int h_add_rr32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_ADD, 4)

cdef int h_add_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_ADD, 4)

cdef int h_add_rr64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_ADD, 8)

cdef int h_add_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_ADD, 8)

cdef int h_or_rr16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_OR, 2)

cdef int h_or_ri16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_OR, 2)

cdef int h_or_rr32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_OR, 4)

cdef int h_or_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_OR, 4)

cdef int h_or_rr64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_OR, 8)

cdef int h_or_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_OR, 8)

cdef int h_and_rr16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_AND, 2)

cdef int h_and_ri16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_AND, 2)

cdef int h_and_rr32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_AND, 4)

cdef int h_and_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_AND, 4)

cdef int h_and_rr64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_AND, 8)

cdef int h_and_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_AND, 8)

cdef int h_sub_rr16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_SUB, 2)

cdef int h_sub_ri16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_SUB, 2)

cdef int h_sub_rr32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_SUB, 4)

cdef int h_sub_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_SUB, 4)

cdef int h_sub_rr64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_SUB, 8)

cdef int h_sub_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_SUB, 8)

cdef int h_xor_rr16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_XOR, 2)

cdef int h_xor_ri16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_XOR, 2)

cdef int h_xor_rr32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_XOR, 4)

cdef int h_xor_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_XOR, 4)

cdef int h_xor_rr64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_XOR, 8)

cdef int h_xor_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_XOR, 8)

cdef int h_cmp_rr16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_CMP, 2)

cdef int h_cmp_ri16(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_CMP, 2)

cdef int h_cmp_rr32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_CMP, 4)

cdef int h_cmp_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_CMP, 4)

cdef int h_cmp_rr64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_rr(c, d, ALU_CMP, 8)

cdef int h_cmp_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_ri(c, d, ALU_CMP, 8)

cdef int h_test_rr16(Cpu* c, Insn* d) noexcept nogil:
    return t_test_rr(c, d, 2)

cdef int h_test_ri16(Cpu* c, Insn* d) noexcept nogil:
    return t_test_ri(c, d, 2)

cdef int h_inc_r16(Cpu* c, Insn* d) noexcept nogil:
    return t_incdec_r(c, d, 0, 2)

cdef int h_dec_r16(Cpu* c, Insn* d) noexcept nogil:
    return t_incdec_r(c, d, 1, 2)

cdef int h_mov_rr16(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_rr(c, d, 2)

cdef int h_mov_ri16(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_ri(c, d, 2)

cdef int h_mov_r_m16(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_r_m(c, d, 2)

cdef int h_mov_m_r16(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_m_r(c, d, 2)

cdef int h_lea16(Cpu* c, Insn* d) noexcept nogil:
    return t_lea(c, d, 2)

cdef int h_test_rr32(Cpu* c, Insn* d) noexcept nogil:
    return t_test_rr(c, d, 4)

cdef int h_test_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_test_ri(c, d, 4)

cdef int h_inc_r32(Cpu* c, Insn* d) noexcept nogil:
    return t_incdec_r(c, d, 0, 4)

cdef int h_dec_r32(Cpu* c, Insn* d) noexcept nogil:
    return t_incdec_r(c, d, 1, 4)

cdef int h_mov_rr32(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_rr(c, d, 4)

cdef int h_mov_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_ri(c, d, 4)

cdef int h_mov_r_m32(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_r_m(c, d, 4)

cdef int h_mov_m_r32(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_m_r(c, d, 4)

cdef int h_lea32(Cpu* c, Insn* d) noexcept nogil:
    return t_lea(c, d, 4)

cdef int h_test_rr64(Cpu* c, Insn* d) noexcept nogil:
    return t_test_rr(c, d, 8)

cdef int h_test_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_test_ri(c, d, 8)

cdef int h_inc_r64(Cpu* c, Insn* d) noexcept nogil:
    return t_incdec_r(c, d, 0, 8)

cdef int h_dec_r64(Cpu* c, Insn* d) noexcept nogil:
    return t_incdec_r(c, d, 1, 8)

cdef int h_mov_rr64(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_rr(c, d, 8)

cdef int h_mov_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_ri(c, d, 8)

cdef int h_mov_r_m64(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_r_m(c, d, 8)

cdef int h_mov_m_r64(Cpu* c, Insn* d) noexcept nogil:
    return t_mov_m_r(c, d, 8)

cdef int h_lea64(Cpu* c, Insn* d) noexcept nogil:
    return t_lea(c, d, 8)

cdef int h_jcc0(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 0)

cdef int h_jcc1(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 1)

cdef int h_jcc2(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 2)

cdef int h_jcc3(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 3)

cdef int h_jcc4(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 4)

cdef int h_jcc5(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 5)

cdef int h_jcc6(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 6)

cdef int h_jcc7(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 7)

cdef int h_jcc8(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 8)

cdef int h_jcc9(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 9)

cdef int h_jcca(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 10)

cdef int h_jccb(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 11)

cdef int h_jccc(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 12)

cdef int h_jccd(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 13)

cdef int h_jcce(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 14)

cdef int h_jccf(Cpu* c, Insn* d) noexcept nogil:
    return t_jcc(c, d, 15)



cdef int h_cmov0(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 0)

cdef int h_cmov1(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 1)

cdef int h_cmov2(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 2)

cdef int h_cmov3(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 3)

cdef int h_cmov4(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 4)

cdef int h_cmov5(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 5)

cdef int h_cmov6(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 6)

cdef int h_cmov7(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 7)

cdef int h_cmov8(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 8)

cdef int h_cmov9(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 9)

cdef int h_cmova(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 10)

cdef int h_cmovb(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 11)

cdef int h_cmovc(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 12)

cdef int h_cmovd(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 13)

cdef int h_cmove(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 14)

cdef int h_cmovf(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov(c, d, 15)

cdef int h_shl_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_shift_ri(c, d, 4, 4)

cdef int h_shr_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_shift_ri(c, d, 5, 4)

cdef int h_sar_ri32(Cpu* c, Insn* d) noexcept nogil:
    return t_shift_ri(c, d, 7, 4)

cdef int h_shl_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_shift_ri(c, d, 4, 8)

cdef int h_shr_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_shift_ri(c, d, 5, 8)

cdef int h_sar_ri64(Cpu* c, Insn* d) noexcept nogil:
    return t_shift_ri(c, d, 7, 8)

cdef int h_imul16(Cpu* c, Insn* d) noexcept nogil:
    return t_imul(c, d, 2, 0)

cdef int h_imul_imm16(Cpu* c, Insn* d) noexcept nogil:
    return t_imul(c, d, 2, 1)

cdef int h_imul32(Cpu* c, Insn* d) noexcept nogil:
    return t_imul(c, d, 4, 0)

cdef int h_imul_imm32(Cpu* c, Insn* d) noexcept nogil:
    return t_imul(c, d, 4, 1)

cdef int h_imul64(Cpu* c, Insn* d) noexcept nogil:
    return t_imul(c, d, 8, 0)

cdef int h_imul_imm64(Cpu* c, Insn* d) noexcept nogil:
    return t_imul(c, d, 8, 1)


# --- selection ------------------------------------------------------------------

cdef handler_t FAST_ALU_RR[8][9]     # [ALU op][size]; NULL: keep the generic handler
cdef handler_t FAST_ALU_RI[8][9]
cdef handler_t FAST_TEST_RR[9]
cdef handler_t FAST_TEST_RI[9]
cdef handler_t FAST_INCDEC_R[2][9]
cdef handler_t FAST_MOV_RR[9]
cdef handler_t FAST_MOV_RI[9]
cdef handler_t FAST_MOV_R_M[9]
cdef handler_t FAST_MOV_M_R[9]
cdef handler_t FAST_LEA[9]
cdef handler_t FAST_JCC[16]
cdef handler_t FAST_CMOV[16]
cdef handler_t FAST_IMUL[9]
cdef handler_t FAST_IMUL_IMM[9]
cdef handler_t FAST_SHIFT_RI[8][9]  # [group 2 op /4 /5 /6 /7][size]


cdef void init_fast_tables() noexcept:
    memset(FAST_ALU_RR, 0, sizeof(FAST_ALU_RR))
    memset(FAST_ALU_RI, 0, sizeof(FAST_ALU_RI))
    memset(FAST_TEST_RR, 0, sizeof(FAST_TEST_RR))
    memset(FAST_TEST_RI, 0, sizeof(FAST_TEST_RI))
    memset(FAST_INCDEC_R, 0, sizeof(FAST_INCDEC_R))
    memset(FAST_MOV_RR, 0, sizeof(FAST_MOV_RR))
    memset(FAST_MOV_RI, 0, sizeof(FAST_MOV_RI))
    memset(FAST_MOV_R_M, 0, sizeof(FAST_MOV_R_M))
    memset(FAST_MOV_M_R, 0, sizeof(FAST_MOV_M_R))
    memset(FAST_LEA, 0, sizeof(FAST_LEA))
    memset(FAST_IMUL, 0, sizeof(FAST_IMUL))
    memset(FAST_IMUL_IMM, 0, sizeof(FAST_IMUL_IMM))
    memset(FAST_SHIFT_RI, 0, sizeof(FAST_SHIFT_RI))
    FAST_SHIFT_RI[4][4] = h_shl_ri32
    FAST_SHIFT_RI[6][4] = h_shl_ri32        # SAL is SHL
    FAST_SHIFT_RI[5][4] = h_shr_ri32
    FAST_SHIFT_RI[7][4] = h_sar_ri32
    FAST_SHIFT_RI[4][8] = h_shl_ri64
    FAST_SHIFT_RI[6][8] = h_shl_ri64
    FAST_SHIFT_RI[5][8] = h_shr_ri64
    FAST_SHIFT_RI[7][8] = h_sar_ri64
    FAST_CMOV[0] = h_cmov0
    FAST_CMOV[1] = h_cmov1
    FAST_CMOV[2] = h_cmov2
    FAST_CMOV[3] = h_cmov3
    FAST_CMOV[4] = h_cmov4
    FAST_CMOV[5] = h_cmov5
    FAST_CMOV[6] = h_cmov6
    FAST_CMOV[7] = h_cmov7
    FAST_CMOV[8] = h_cmov8
    FAST_CMOV[9] = h_cmov9
    FAST_CMOV[10] = h_cmova
    FAST_CMOV[11] = h_cmovb
    FAST_CMOV[12] = h_cmovc
    FAST_CMOV[13] = h_cmovd
    FAST_CMOV[14] = h_cmove
    FAST_CMOV[15] = h_cmovf
    FAST_IMUL[2] = h_imul16
    FAST_IMUL_IMM[2] = h_imul_imm16
    FAST_IMUL[4] = h_imul32
    FAST_IMUL_IMM[4] = h_imul_imm32
    FAST_IMUL[8] = h_imul64
    FAST_IMUL_IMM[8] = h_imul_imm64

    FAST_ALU_RR[ALU_ADD][2] = h_add_rr16
    FAST_ALU_RI[ALU_ADD][2] = h_add_ri16

    FAST_ALU_RR[ALU_ADD][4] = h_add_rr32
    FAST_ALU_RI[ALU_ADD][4] = h_add_ri32

    FAST_ALU_RR[ALU_ADD][8] = h_add_rr64
    FAST_ALU_RI[ALU_ADD][8] = h_add_ri64

    FAST_ALU_RR[ALU_OR][2] = h_or_rr16
    FAST_ALU_RI[ALU_OR][2] = h_or_ri16

    FAST_ALU_RR[ALU_OR][4] = h_or_rr32
    FAST_ALU_RI[ALU_OR][4] = h_or_ri32

    FAST_ALU_RR[ALU_OR][8] = h_or_rr64
    FAST_ALU_RI[ALU_OR][8] = h_or_ri64

    FAST_ALU_RR[ALU_AND][2] = h_and_rr16
    FAST_ALU_RI[ALU_AND][2] = h_and_ri16

    FAST_ALU_RR[ALU_AND][4] = h_and_rr32
    FAST_ALU_RI[ALU_AND][4] = h_and_ri32

    FAST_ALU_RR[ALU_AND][8] = h_and_rr64
    FAST_ALU_RI[ALU_AND][8] = h_and_ri64

    FAST_ALU_RR[ALU_SUB][2] = h_sub_rr16
    FAST_ALU_RI[ALU_SUB][2] = h_sub_ri16

    FAST_ALU_RR[ALU_SUB][4] = h_sub_rr32
    FAST_ALU_RI[ALU_SUB][4] = h_sub_ri32

    FAST_ALU_RR[ALU_SUB][8] = h_sub_rr64
    FAST_ALU_RI[ALU_SUB][8] = h_sub_ri64

    FAST_ALU_RR[ALU_XOR][2] = h_xor_rr16
    FAST_ALU_RI[ALU_XOR][2] = h_xor_ri16

    FAST_ALU_RR[ALU_XOR][4] = h_xor_rr32
    FAST_ALU_RI[ALU_XOR][4] = h_xor_ri32

    FAST_ALU_RR[ALU_XOR][8] = h_xor_rr64
    FAST_ALU_RI[ALU_XOR][8] = h_xor_ri64

    FAST_ALU_RR[ALU_CMP][2] = h_cmp_rr16
    FAST_ALU_RI[ALU_CMP][2] = h_cmp_ri16

    FAST_ALU_RR[ALU_CMP][4] = h_cmp_rr32
    FAST_ALU_RI[ALU_CMP][4] = h_cmp_ri32

    FAST_ALU_RR[ALU_CMP][8] = h_cmp_rr64
    FAST_ALU_RI[ALU_CMP][8] = h_cmp_ri64

    FAST_TEST_RR[2] = h_test_rr16

    FAST_TEST_RI[2] = h_test_ri16

    FAST_MOV_RR[2] = h_mov_rr16

    FAST_MOV_RI[2] = h_mov_ri16

    FAST_MOV_R_M[2] = h_mov_r_m16

    FAST_MOV_M_R[2] = h_mov_m_r16

    FAST_LEA[2] = h_lea16

    FAST_INCDEC_R[0][2] = h_inc_r16
    FAST_INCDEC_R[1][2] = h_dec_r16

    FAST_TEST_RR[4] = h_test_rr32

    FAST_TEST_RI[4] = h_test_ri32

    FAST_MOV_RR[4] = h_mov_rr32

    FAST_MOV_RI[4] = h_mov_ri32

    FAST_MOV_R_M[4] = h_mov_r_m32

    FAST_MOV_M_R[4] = h_mov_m_r32

    FAST_LEA[4] = h_lea32

    FAST_INCDEC_R[0][4] = h_inc_r32
    FAST_INCDEC_R[1][4] = h_dec_r32

    FAST_TEST_RR[8] = h_test_rr64

    FAST_TEST_RI[8] = h_test_ri64

    FAST_MOV_RR[8] = h_mov_rr64

    FAST_MOV_RI[8] = h_mov_ri64

    FAST_MOV_R_M[8] = h_mov_r_m64

    FAST_MOV_M_R[8] = h_mov_m_r64

    FAST_LEA[8] = h_lea64

    FAST_INCDEC_R[0][8] = h_inc_r64
    FAST_INCDEC_R[1][8] = h_dec_r64

    FAST_JCC[0] = h_jcc0

    FAST_JCC[1] = h_jcc1

    FAST_JCC[2] = h_jcc2

    FAST_JCC[3] = h_jcc3

    FAST_JCC[4] = h_jcc4

    FAST_JCC[5] = h_jcc5

    FAST_JCC[6] = h_jcc6

    FAST_JCC[7] = h_jcc7

    FAST_JCC[8] = h_jcc8

    FAST_JCC[9] = h_jcc9

    FAST_JCC[10] = h_jcca

    FAST_JCC[11] = h_jccb

    FAST_JCC[12] = h_jccc

    FAST_JCC[13] = h_jccd

    FAST_JCC[14] = h_jcce

    FAST_JCC[15] = h_jccf


cdef void specialize(Insn* d) noexcept nogil:
    """Replace a freshly decoded instruction's generic handler by a
    specialized one where one exists.  Operand fields may be moved so that
    the specialized handler finds its register destination in d.rm.  Byte
    operands (AH..BH aliasing), LOCK and segment-override-free details stay
    with the generic handlers."""
    cdef handler_t fn = d.fn
    cdef handler_t f = NULL
    cdef int size = d.osz
    cdef uint8_t t
    cdef unsigned int cnt
    cdef int form
    if size == 1 or (d.flags & INSN_LOCK):
        return
    if fn == h_jcc:
        f = FAST_JCC[d.ext & 15]
    elif fn == h_cmovcc:
        f = FAST_CMOV_RR[d.ext & 15] if d.mod == 3 else FAST_CMOV[d.ext & 15]
    elif fn == h_push_r:
        if size == 8:
            f = h_push_r64
        elif size == 4:
            f = h_push_r32
    elif fn == h_pop_r:
        if size == 8:
            f = h_pop_r64
        elif size == 4:
            f = h_pop_r32
    elif fn == h_imul_r_rm:
        form = ea_form(d) if d.mod != 3 else -1
        f = FAST_IMUL_M_FORM[form][size] if form >= 0 else NULL
        if f == NULL:
            f = FAST_IMUL[size]
    elif fn == h_imul_r_rm_imm:
        f = FAST_IMUL_IMM[size]
    elif d.mod == 3:
        if fn == h_alu_rm_r:
            f = FAST_ALU_RR[d.ext & 7][size]
        elif fn == h_alu_r_rm:
            f = FAST_ALU_RR[d.ext & 7][size]
            if f != NULL:           # register destination in d.rm
                t = d.reg
                d.reg = d.rm
                d.rm = t
        elif fn == h_alu_rm_imm:
            f = FAST_ALU_RI[d.ext & 7][size]
        elif fn == h_test_rm_r:
            f = FAST_TEST_RR[size]
        elif fn == h_test_rm_imm:
            f = FAST_TEST_RI[size]
        elif fn == h_incdec_rm:
            f = FAST_INCDEC_R[d.ext & 1][size]
        elif fn == h_mov_rm_r:
            f = FAST_MOV_RR[size]
        elif fn == h_mov_r_rm:
            f = FAST_MOV_RR[size]
            if f != NULL:
                t = d.reg
                d.reg = d.rm
                d.rm = t
        elif fn == h_alu_acc_imm:
            f = FAST_ALU_RI[d.ext & 7][size]
            d.rm = R_AX
        elif fn == h_test_acc_imm:
            f = FAST_TEST_RI[size]
            d.rm = R_AX
        elif fn == h_inc_r or fn == h_dec_r:
            f = FAST_INCDEC_R[1 if fn == h_dec_r else 0][size]
            d.rm = d.reg
        elif fn == h_mov_r_imm:
            f = FAST_MOV_RI[size]
        elif fn == h_shift and (d.op == 0xC1 or d.op == 0xD1):
            # A constant count (imm8, or 1): masked here, once (shift_count).
            cnt = 1 if d.op == 0xD1 else <unsigned int>(d.imm & 0xFF)
            cnt &= 0x3F if size == 8 else 0x1F
            if cnt != 0:
                f = FAST_SHIFT_RI[d.ext & 7][size]
                if f != NULL:
                    d.imm = cnt
    else:
        form = ea_form(d)
        if fn == h_mov_r_rm:
            f = FAST_LOAD_FORM[form][size] if form >= 0 else NULL
            if f == NULL:
                f = FAST_MOV_R_M[size]
        elif fn == h_mov_rm_r:
            f = FAST_STORE_FORM[form][size] if form >= 0 else NULL
            if f == NULL:
                f = FAST_MOV_M_R[size]
        elif fn == h_lea:
            f = FAST_LEA_FORM[form][size] if form >= 0 else NULL
            if f == NULL:
                f = FAST_LEA[size]
        elif fn == h_alu_r_rm and form >= 0 and (d.ext & 7) != ALU_ADC and (d.ext & 7) != ALU_SBB:
            f = FAST_ALU_R_M_FORM[form][size]
        elif fn == h_alu_rm_r and form >= 0 and (d.ext & 7) == ALU_CMP:
            f = FAST_CMP_M_R_FORM[form][size]
    if f != NULL:
        d.fn = f
# --- compare-and-branch fusion ------------------------------------------------------
# A register ALU, TEST, INC or DEC instruction directly followed (in the same
# page, no prefix) by a Jcc is decoded as one pair (decode_at, fuse): one
# dispatch runs both, which count as two instructions, the Jcc reading the
# flag record the first just wrote.  The first cannot fault; if the Jcc faults,
# the first has retired and RIP is left on the Jcc, as if run one by one.  The
# run loop runs a pair split (unfuse) where one instruction at a time is
# needed: one step of budget left, blocking by STI or MOV SS, or a CS limit
# that ends between the two.

cdef inline int fused_branch(Cpu* c, Insn* d, int taken_) noexcept nogil:
    """The Jcc of a pair once its condition is known."""
    cdef int rc
    if taken_:
        if d.cc2 & CC2_LOCAL:           # to an op of its block: checked with it
            return RC_LOCAL
        rc = branch_to(c, c.next_rip + <uint64_t>d.disp, c.code_size)
        if rc:
            # The first instruction retired, the Jcc faults: one counted
            # here (the caller counts both only when the pair completes).
            c.icount += 1
            c.rip = (c.next_rip - d.len2) & SIZE_MASK[c.code_size]
            return rc
        return RC_BRANCHED
    return RC_OK


cdef int fused_jcc_rest(Cpu* c, Insn* d) noexcept nogil:
    """t_fused_jcc for a condition the record does not give inline (O and P
    after anything, the carry conditions after ADD, INC or DEC): out of
    line, reached by a tail call through FUSED_JCC_REST, so that the common
    pairs need no stack frame."""
    return fused_branch(c, d, cond_slow(c, d.cc2 & 15))


cdef handler_t FUSED_JCC_REST = fused_jcc_rest


cdef inline int t_fused_jcc(Cpu* c, Insn* d) noexcept nogil:
    """The Jcc of a pair, after the first instruction retired (c.next_rip is
    the address after the Jcc; d.disp its displacement, sign-extended).
    The first instruction's kind of flag record is a constant here (each
    pair's handler is instantiated for one operation), so the test of
    which conditions cond() gives inline folds away.  The pair's two
    instructions are counted by the caller when it completes (run_block
    from the op's tag, run_loop by INSN_FUSED), not here: a count in the
    Cpu made by every pair would chain a loop's iterations through memory."""
    cdef int cc = d.cc2 & 15
    if not cond_inline_ok(c.lf_kind, cc >> 1):
        return FUSED_JCC_REST(c, d)
    return fused_branch(c, d, cond_record(c, cc))


cdef int h_add_rr16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_ADD, 2)
    return t_fused_jcc(c, d)


cdef int h_add_ri16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_ADD, 2)
    return t_fused_jcc(c, d)


cdef int h_add_rr32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_ADD, 4)
    return t_fused_jcc(c, d)


cdef int h_add_ri32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_ADD, 4)
    return t_fused_jcc(c, d)


cdef int h_add_rr64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_ADD, 8)
    return t_fused_jcc(c, d)


cdef int h_add_ri64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_ADD, 8)
    return t_fused_jcc(c, d)


cdef int h_or_rr16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_OR, 2)
    return t_fused_jcc(c, d)


cdef int h_or_ri16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_OR, 2)
    return t_fused_jcc(c, d)


cdef int h_or_rr32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_OR, 4)
    return t_fused_jcc(c, d)


cdef int h_or_ri32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_OR, 4)
    return t_fused_jcc(c, d)


cdef int h_or_rr64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_OR, 8)
    return t_fused_jcc(c, d)


cdef int h_or_ri64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_OR, 8)
    return t_fused_jcc(c, d)


cdef int h_and_rr16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_AND, 2)
    return t_fused_jcc(c, d)


cdef int h_and_ri16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_AND, 2)
    return t_fused_jcc(c, d)


cdef int h_and_rr32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_AND, 4)
    return t_fused_jcc(c, d)


cdef int h_and_ri32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_AND, 4)
    return t_fused_jcc(c, d)


cdef int h_and_rr64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_AND, 8)
    return t_fused_jcc(c, d)


cdef int h_and_ri64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_AND, 8)
    return t_fused_jcc(c, d)


cdef int h_sub_rr16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_SUB, 2)
    return t_fused_jcc(c, d)


cdef int h_sub_ri16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_SUB, 2)
    return t_fused_jcc(c, d)


cdef int h_sub_rr32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_SUB, 4)
    return t_fused_jcc(c, d)


cdef int h_sub_ri32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_SUB, 4)
    return t_fused_jcc(c, d)


cdef int h_sub_rr64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_SUB, 8)
    return t_fused_jcc(c, d)


cdef int h_sub_ri64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_SUB, 8)
    return t_fused_jcc(c, d)


cdef int h_xor_rr16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_XOR, 2)
    return t_fused_jcc(c, d)


cdef int h_xor_ri16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_XOR, 2)
    return t_fused_jcc(c, d)


cdef int h_xor_rr32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_XOR, 4)
    return t_fused_jcc(c, d)


cdef int h_xor_ri32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_XOR, 4)
    return t_fused_jcc(c, d)


cdef int h_xor_rr64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_XOR, 8)
    return t_fused_jcc(c, d)


cdef int h_xor_ri64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_XOR, 8)
    return t_fused_jcc(c, d)


cdef int h_cmp_rr16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_CMP, 2)
    return t_fused_jcc(c, d)


cdef int h_cmp_ri16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_CMP, 2)
    return t_fused_jcc(c, d)


cdef int h_cmp_rr32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_CMP, 4)
    return t_fused_jcc(c, d)


cdef int h_cmp_ri32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_CMP, 4)
    return t_fused_jcc(c, d)


cdef int h_cmp_rr64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_rr(c, d, ALU_CMP, 8)
    return t_fused_jcc(c, d)


cdef int h_cmp_ri64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_alu_ri(c, d, ALU_CMP, 8)
    return t_fused_jcc(c, d)


cdef int h_test_rr16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_test_rr(c, d, 2)
    return t_fused_jcc(c, d)


cdef int h_test_ri16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_test_ri(c, d, 2)
    return t_fused_jcc(c, d)


cdef int h_inc_r16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_incdec_r(c, d, 0, 2)
    return t_fused_jcc(c, d)


cdef int h_dec_r16_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_incdec_r(c, d, 1, 2)
    return t_fused_jcc(c, d)


cdef int h_test_rr32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_test_rr(c, d, 4)
    return t_fused_jcc(c, d)


cdef int h_test_ri32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_test_ri(c, d, 4)
    return t_fused_jcc(c, d)


cdef int h_inc_r32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_incdec_r(c, d, 0, 4)
    return t_fused_jcc(c, d)


cdef int h_dec_r32_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_incdec_r(c, d, 1, 4)
    return t_fused_jcc(c, d)


cdef int h_test_rr64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_test_rr(c, d, 8)
    return t_fused_jcc(c, d)


cdef int h_test_ri64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_test_ri(c, d, 8)
    return t_fused_jcc(c, d)


cdef int h_inc_r64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_incdec_r(c, d, 0, 8)
    return t_fused_jcc(c, d)


cdef int h_dec_r64_jcc(Cpu* c, Insn* d) noexcept nogil:
    t_incdec_r(c, d, 1, 8)
    return t_fused_jcc(c, d)

cdef enum:
    NFUSED = 48

cdef handler_t FUSE_FIRST[NFUSED]
cdef handler_t FUSE_PAIR[NFUSED]


cdef void init_fuse_tables() noexcept:

    FUSE_FIRST[0] = h_add_rr16
    FUSE_PAIR[0] = h_add_rr16_jcc

    FUSE_FIRST[1] = h_add_ri16
    FUSE_PAIR[1] = h_add_ri16_jcc

    FUSE_FIRST[2] = h_add_rr32
    FUSE_PAIR[2] = h_add_rr32_jcc

    FUSE_FIRST[3] = h_add_ri32
    FUSE_PAIR[3] = h_add_ri32_jcc

    FUSE_FIRST[4] = h_add_rr64
    FUSE_PAIR[4] = h_add_rr64_jcc

    FUSE_FIRST[5] = h_add_ri64
    FUSE_PAIR[5] = h_add_ri64_jcc

    FUSE_FIRST[6] = h_or_rr16
    FUSE_PAIR[6] = h_or_rr16_jcc

    FUSE_FIRST[7] = h_or_ri16
    FUSE_PAIR[7] = h_or_ri16_jcc

    FUSE_FIRST[8] = h_or_rr32
    FUSE_PAIR[8] = h_or_rr32_jcc

    FUSE_FIRST[9] = h_or_ri32
    FUSE_PAIR[9] = h_or_ri32_jcc

    FUSE_FIRST[10] = h_or_rr64
    FUSE_PAIR[10] = h_or_rr64_jcc

    FUSE_FIRST[11] = h_or_ri64
    FUSE_PAIR[11] = h_or_ri64_jcc

    FUSE_FIRST[12] = h_and_rr16
    FUSE_PAIR[12] = h_and_rr16_jcc

    FUSE_FIRST[13] = h_and_ri16
    FUSE_PAIR[13] = h_and_ri16_jcc

    FUSE_FIRST[14] = h_and_rr32
    FUSE_PAIR[14] = h_and_rr32_jcc

    FUSE_FIRST[15] = h_and_ri32
    FUSE_PAIR[15] = h_and_ri32_jcc

    FUSE_FIRST[16] = h_and_rr64
    FUSE_PAIR[16] = h_and_rr64_jcc

    FUSE_FIRST[17] = h_and_ri64
    FUSE_PAIR[17] = h_and_ri64_jcc

    FUSE_FIRST[18] = h_sub_rr16
    FUSE_PAIR[18] = h_sub_rr16_jcc

    FUSE_FIRST[19] = h_sub_ri16
    FUSE_PAIR[19] = h_sub_ri16_jcc

    FUSE_FIRST[20] = h_sub_rr32
    FUSE_PAIR[20] = h_sub_rr32_jcc

    FUSE_FIRST[21] = h_sub_ri32
    FUSE_PAIR[21] = h_sub_ri32_jcc

    FUSE_FIRST[22] = h_sub_rr64
    FUSE_PAIR[22] = h_sub_rr64_jcc

    FUSE_FIRST[23] = h_sub_ri64
    FUSE_PAIR[23] = h_sub_ri64_jcc

    FUSE_FIRST[24] = h_xor_rr16
    FUSE_PAIR[24] = h_xor_rr16_jcc

    FUSE_FIRST[25] = h_xor_ri16
    FUSE_PAIR[25] = h_xor_ri16_jcc

    FUSE_FIRST[26] = h_xor_rr32
    FUSE_PAIR[26] = h_xor_rr32_jcc

    FUSE_FIRST[27] = h_xor_ri32
    FUSE_PAIR[27] = h_xor_ri32_jcc

    FUSE_FIRST[28] = h_xor_rr64
    FUSE_PAIR[28] = h_xor_rr64_jcc

    FUSE_FIRST[29] = h_xor_ri64
    FUSE_PAIR[29] = h_xor_ri64_jcc

    FUSE_FIRST[30] = h_cmp_rr16
    FUSE_PAIR[30] = h_cmp_rr16_jcc

    FUSE_FIRST[31] = h_cmp_ri16
    FUSE_PAIR[31] = h_cmp_ri16_jcc

    FUSE_FIRST[32] = h_cmp_rr32
    FUSE_PAIR[32] = h_cmp_rr32_jcc

    FUSE_FIRST[33] = h_cmp_ri32
    FUSE_PAIR[33] = h_cmp_ri32_jcc

    FUSE_FIRST[34] = h_cmp_rr64
    FUSE_PAIR[34] = h_cmp_rr64_jcc

    FUSE_FIRST[35] = h_cmp_ri64
    FUSE_PAIR[35] = h_cmp_ri64_jcc

    FUSE_FIRST[36] = h_test_rr16
    FUSE_PAIR[36] = h_test_rr16_jcc

    FUSE_FIRST[37] = h_test_ri16
    FUSE_PAIR[37] = h_test_ri16_jcc

    FUSE_FIRST[38] = h_inc_r16
    FUSE_PAIR[38] = h_inc_r16_jcc

    FUSE_FIRST[39] = h_dec_r16
    FUSE_PAIR[39] = h_dec_r16_jcc

    FUSE_FIRST[40] = h_test_rr32
    FUSE_PAIR[40] = h_test_rr32_jcc

    FUSE_FIRST[41] = h_test_ri32
    FUSE_PAIR[41] = h_test_ri32_jcc

    FUSE_FIRST[42] = h_inc_r32
    FUSE_PAIR[42] = h_inc_r32_jcc

    FUSE_FIRST[43] = h_dec_r32
    FUSE_PAIR[43] = h_dec_r32_jcc

    FUSE_FIRST[44] = h_test_rr64
    FUSE_PAIR[44] = h_test_rr64_jcc

    FUSE_FIRST[45] = h_test_ri64
    FUSE_PAIR[45] = h_test_ri64_jcc

    FUSE_FIRST[46] = h_inc_r64
    FUSE_PAIR[46] = h_inc_r64_jcc

    FUSE_FIRST[47] = h_dec_r64
    FUSE_PAIR[47] = h_dec_r64_jcc

cdef void fuse(Cpu* c, Insn* d, const uint8_t* nxt, int avail) noexcept nogil:
    """Fuse the decoded instruction d with a Jcc in the avail bytes at nxt
    that follow it, when d is one of FUSE_FIRST and those bytes are a
    prefix-free Jcc (70-7F rel8; 0F 80-8F rel32 outside 16-bit code, where
    it would take rel16)."""
    cdef int i, len2
    cdef int64_t rel
    cdef uint8_t cc
    cdef int32_t r32
    if avail < 2 or not ((nxt[0] >= 0x70 and nxt[0] <= 0x7F) or (nxt[0] == 0x0F and (nxt[1] & 0xF0) == 0x80)):
        return
    for i in range(NFUSED):
        if FUSE_FIRST[i] == d.fn:
            break
    else:
        return
    if avail >= 2 and nxt[0] >= 0x70 and nxt[0] <= 0x7F:
        len2 = 2
        cc = nxt[0] & 15
        rel = <signed char>nxt[1]
    elif avail >= 6 and nxt[0] == 0x0F and nxt[1] >= 0x80 and nxt[1] <= 0x8F and c.code_size != 2:
        len2 = 6
        cc = nxt[1] & 15
        memcpy(&r32, nxt + 2, 4)
        rel = r32
    else:
        return
    d.fn = FUSE_PAIR[i]
    d.cc2 = cc
    d.len2 = <uint8_t>len2
    d.disp = rel
    d.len = <uint8_t>(d.len + len2)
    d.flags |= INSN_FUSED


cdef Insn* unfuse(Cpu* c, Insn* d) noexcept nogil:
    """The first instruction of the pair d alone, in the scratch slot."""
    cdef Insn* s = &c.icache[c.icache_mask + 1]
    cdef int i
    s[0] = d[0]
    for i in range(NFUSED):
        if FUSE_PAIR[i] == d.fn:
            s.fn = FUSE_FIRST[i]
            break
    s.len = <uint8_t>(d.len - d.len2)
    s.flags &= ~(<uint8_t>INSN_FUSED)
    s.tag = 0
    return s
