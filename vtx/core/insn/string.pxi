# String instructions: MOVS STOS LODS CMPS SCAS with REP/REPE/REPNE
# (SDM Vol. 1 7.3.9, Vol. 2 "REP/REPE/REPZ/REPNE/REPNZ").  A REP form runs its
# iterations in one call until rCX runs out, its condition ends it, a fault, or
# the budget; registers are updated after each iteration, so a fault in the
# middle leaves rCX/rSI/rDI where the SDM says and re-executing the instruction
# continues it.  Each iteration counts as one instruction retired (in the TSC
# and the budget); at the budget the instruction pauses between iterations with
# RIP on it, as it would for an interrupt (SDM Vol. 2 "REP": "the processor
# ... allows interrupts to be serviced between iterations").

cdef enum:
    STR_MOVS = 0
    STR_STOS = 1
    STR_LODS = 2
    STR_CMPS = 3
    STR_SCAS = 4


cdef int h_string(Cpu* c, Insn* d) noexcept nogil:
    cdef int size = d.osz
    cdef uint64_t am = SIZE_MASK[d.asz]
    cdef int64_t step = -size if (c.rflags & F_DF) else size
    cdef int kind = d.ext
    cdef uint64_t a, b, r, fl
    cdef int rc
    cdef int rep = d.rep != 0
    while True:
        if rep and (c.regs[R_CX] & am) == 0:
            return RC_OK
        if kind == STR_MOVS:
            rc = mem_read(c, d.seg, c.regs[R_SI] & am, size, &a)
            if rc:
                return rc
            rc = mem_write(c, S_ES, c.regs[R_DI] & am, size, a)
            if rc:
                return rc
            set_reg(c, R_SI, d.asz, c.regs[R_SI] + step)
            set_reg(c, R_DI, d.asz, c.regs[R_DI] + step)
        elif kind == STR_STOS:
            rc = mem_write(c, S_ES, c.regs[R_DI] & am, size, get_reg(c, R_AX, size))
            if rc:
                return rc
            set_reg(c, R_DI, d.asz, c.regs[R_DI] + step)
        elif kind == STR_LODS:
            rc = mem_read(c, d.seg, c.regs[R_SI] & am, size, &a)
            if rc:
                return rc
            set_reg(c, R_AX, size, a)
            set_reg(c, R_SI, d.asz, c.regs[R_SI] + step)
        else:
            if kind == STR_CMPS:
                rc = mem_read(c, d.seg, c.regs[R_SI] & am, size, &a)
                if rc:
                    return rc
            else:
                a = get_reg(c, R_AX, size)
            rc = mem_read(c, S_ES, c.regs[R_DI] & am, size, &b)
            if rc:
                return rc
            alu(ALU_SUB, size, a, b, 0, &fl)
            set_status_flags(c, fl)
            if kind == STR_CMPS:
                set_reg(c, R_SI, d.asz, c.regs[R_SI] + step)
            set_reg(c, R_DI, d.asz, c.regs[R_DI] + step)
        if not rep:
            return RC_OK
        set_reg(c, R_CX, d.asz, c.regs[R_CX] - 1)
        # The last iteration is counted by the run loop when it retires the
        # instruction; the others here.
        if (c.regs[R_CX] & am) == 0:
            return RC_OK
        if kind >= STR_CMPS:
            # REPE stops when ZF = 0, REPNE when ZF = 1.
            if (d.rep == 0xF3) != ((c.rflags & F_ZF) != 0):
                return RC_OK
        c.icount += 1
        # [debug] Single-step and data breakpoints see each iteration
        # (core/insn/debug.pxi).
        if c.icount >= c.icount_limit or (c.rflags & F_TF) or c.dbg_hits or c.hd_stop:
            return RC_REP_PAUSED
