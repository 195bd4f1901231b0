# Control transfer: JMP, Jcc, CALL, RET (near: relative and indirect).
# Far transfers, task switches and interrupts come with the protection issue.


cdef inline int branch_to(Cpu* c, uint64_t target, int osz) noexcept nogil:
    """Set the next RIP to a near branch target: wrapped to the operand size,
    checked against the CS limit (#GP(0)) outside 64-bit mode and for
    canonical form (#GP(0)) in it.  RIP is left unchanged on a fault."""
    if c.long64:
        if osz == 2:
            target &= 0xFFFF
        if not is_canonical(target):
            return raise_gp0(c)
    else:
        target &= SIZE_MASK[osz]
        if target > c.seg[S_CS].limit:
            return raise_gp0(c)
    c.next_rip = target
    return RC_OK


cdef inline int taken(int rc) noexcept nogil:
    """A conditional branch's outcome when it is taken: RC_BRANCHED, or the
    fault branch_to raised."""
    return RC_BRANCHED if rc == RC_OK else rc


# cond(), the condition codes, reads the lazy flags: core/flags.pxi.


cdef int h_jcc(Cpu* c, Insn* d) noexcept nogil:
    """Jcc: RC_BRANCHED when taken (see RC_BRANCHED)."""
    if cond(c, d.ext):
        return taken(branch_to(c, c.next_rip + d.imm, d.osz))
    return RC_OK


cdef int h_loop(Cpu* c, Insn* d) noexcept nogil:
    """E0 LOOPNE, E1 LOOPE, E2 LOOP, E3 JCXZ/JECXZ/JRCXZ rel8 (SDM Vol. 2
    LOOP/LOOPcc and Jcc).  The count register is CX, ECX or RCX by the
    address size; LOOP decrements it without touching the flags and
    branches while it is not zero (LOOPE also while ZF = 1, LOOPNE while
    ZF = 0); JCXZ branches when it is zero.  A target outside the CS limit
    (non-canonical in 64-bit mode) is #GP(0); a fault leaves no trace of the
    instruction, so the count keeps its value.  With a 32-bit address size
    in 64-bit mode the count is ECX, and writing it clears RCX[63:32]."""
    cdef uint64_t m = SIZE_MASK[d.asz]
    cdef uint64_t old = c.regs[R_CX]
    cdef uint64_t count = old & m
    cdef int take
    cdef int rc
    if d.op == 0xE3:
        take = count == 0
    else:
        count = (count - 1) & m
        set_reg(c, R_CX, d.asz, count)
        take = count != 0
        if d.op == 0xE1:
            take = take and cond(c, 4)          # ZF = 1
        elif d.op == 0xE0:
            take = take and cond(c, 5)          # ZF = 0
    if take:
        rc = branch_to(c, c.next_rip + d.imm, d.osz)
        if rc:
            c.regs[R_CX] = old
            return rc
    return RC_OK


cdef int h_jmp_rel(Cpu* c, Insn* d) noexcept nogil:
    return branch_to(c, c.next_rip + d.imm, d.osz)


cdef int h_jmp_rm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t t
    cdef int rc = read_rm(c, d, d.osz, &t)
    if rc:
        return rc
    return branch_to(c, t, d.osz)


cdef int call_to(Cpu* c, uint64_t target, int osz) noexcept nogil:
    cdef uint64_t ret = c.next_rip
    cdef uint64_t saved_sp = c.regs[R_SP]
    cdef int rc = branch_to(c, target, osz)
    if rc:
        return rc
    rc = push(c, osz, ret)
    if rc:
        c.next_rip = ret
        c.regs[R_SP] = saved_sp
    return rc


cdef int h_call_rel(Cpu* c, Insn* d) noexcept nogil:
    return call_to(c, c.next_rip + d.imm, d.osz)


cdef int h_call_rm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t t
    cdef int rc = read_rm(c, d, d.osz, &t)
    if rc:
        return rc
    return call_to(c, t, d.osz)


cdef int h_ret(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t t, saved_sp = c.regs[R_SP]
    cdef int rc = pop(c, d.osz, &t)
    if rc:
        return rc
    rc = branch_to(c, t, d.osz)
    if rc:
        c.regs[R_SP] = saved_sp
    return rc


cdef int h_ret_imm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t saved_sp = c.regs[R_SP]
    cdef int rc = h_ret(c, d)
    if rc:
        return rc
    set_sp(c, (c.regs[R_SP] & SIZE_MASK[c.stack_size]) + (d.imm & 0xFFFF))
    return RC_OK
