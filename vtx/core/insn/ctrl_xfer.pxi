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


# cond(), the condition codes, reads the lazy flags: core/flags.pxi.


cdef int h_jcc(Cpu* c, Insn* d) noexcept nogil:
    if cond(c, d.ext):
        return branch_to(c, c.next_rip + d.imm, d.osz)
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
