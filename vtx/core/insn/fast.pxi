# Handlers specialized at decode time (docs/architecture.rst, "Specialized
# handlers").  The generic handlers branch at run time on operand form
# (register or memory) and size; the forms below are the ones compiled code
# runs most, each an instantiation of one inline template with the operation
# and size as constants, which the C compiler folds.  specialize() picks one
# after an instruction is decoded; it must give exactly the generic handler's
# outcome (the tests run every form both ways: tests/test_insn*.py).  All of
# them keep the status flags lazy (core/flags.pxi).


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


cdef inline int t_mov_r_m(Cpu* c, Insn* d, int size) noexcept nogil:
    cdef uint64_t v
    cdef int rc = mem_read(c, d.seg, ea_offset(c, d), size, &v)
    if rc:
        return rc
    set_reg(c, d.reg, size, v)
    return RC_OK


cdef inline int t_mov_m_r(Cpu* c, Insn* d, int size) noexcept nogil:
    return mem_write(c, d.seg, ea_offset(c, d), size, c.regs[d.reg])


cdef inline int t_lea(Cpu* c, Insn* d, int size) noexcept nogil:
    set_reg(c, d.reg, size, ea_offset(c, d))
    return RC_OK


cdef inline int t_jcc(Cpu* c, Insn* d, int cc) noexcept nogil:
    if cond(c, cc):
        return branch_to(c, c.next_rip + d.imm, d.osz)
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
    if size == 1 or (d.flags & INSN_LOCK):
        return
    if fn == h_jcc:
        f = FAST_JCC[d.ext & 15]
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
    else:
        if fn == h_mov_r_rm:
            f = FAST_MOV_R_M[size]
        elif fn == h_mov_rm_r:
            f = FAST_MOV_M_R[size]
        elif fn == h_lea:
            f = FAST_LEA[size]
    if f != NULL:
        d.fn = f
