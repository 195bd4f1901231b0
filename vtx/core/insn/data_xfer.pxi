# Data transfer: MOV (register, memory, immediate, moffs, segment register,
# control register), MOVZX MOVSX MOVSXD, LEA, XCHG, SETcc CMOVcc, the stack
# (PUSH POP of registers and segment registers, PUSHA POPA, PUSHF POPF, ENTER
# LEAVE).


cdef int h_mov_rm_r(Cpu* c, Insn* d) noexcept nogil:
    return write_rm(c, d, d.osz, get_reg(c, d.reg, d.osz))


cdef int h_mov_r_rm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t v
    cdef int rc = read_rm(c, d, d.osz, &v)
    if rc:
        return rc
    set_reg(c, d.reg, d.osz, v)
    return RC_OK


cdef int h_mov_r_imm(Cpu* c, Insn* d) noexcept nogil:
    set_reg(c, d.reg, d.osz, d.imm)
    return RC_OK


cdef int h_mov_rm_imm(Cpu* c, Insn* d) noexcept nogil:
    return write_rm(c, d, d.osz, d.imm)


cdef int h_mov_acc_moffs(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t v
    cdef int rc = mem_read(c, d.seg, <uint64_t>d.disp & SIZE_MASK[d.asz], d.osz, &v)
    if rc:
        return rc
    set_reg(c, R_AX, d.osz, v)
    return RC_OK


cdef int h_mov_moffs_acc(Cpu* c, Insn* d) noexcept nogil:
    return mem_write(c, d.seg, <uint64_t>d.disp & SIZE_MASK[d.asz], d.osz, get_reg(c, R_AX, d.osz))


cdef int h_movzx(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t v
    cdef int ssz = 1 if d.op == 0xB6 else 2
    cdef int rc = read_rm(c, d, ssz, &v)
    if rc:
        return rc
    set_reg(c, d.reg, d.osz, v)
    return RC_OK


cdef int h_movsx(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t v
    cdef int ssz = 1 if d.op == 0xBE else 2
    cdef int rc = read_rm(c, d, ssz, &v)
    if rc:
        return rc
    set_reg(c, d.reg, d.osz, <uint64_t>sext(v, ssz))
    return RC_OK


cdef int h_arpl(Cpu* c, Insn* d) noexcept nogil:
    """63 /r outside 64-bit mode: ARPL r/m16, r16 (SDM Vol. 2 ARPL).  When the
    RPL of the destination selector is below the source's, raise it to the
    source's and set ZF, else clear ZF; no other flag changes.  The operand
    size is 16 bits whatever the prefixes; real-address and virtual-8086 mode
    do not recognize the instruction (#UD)."""
    cdef uint64_t dst, src
    cdef int rc
    if not (c.cr0 & CR0_PE) or (c.rflags & F_VM):
        return raise_ud(c)
    rc = read_rm(c, d, 2, &dst)
    if rc:
        return rc
    src = get_reg(c, d.reg, 2)
    if (dst & 3) < (src & 3):
        rc = write_rm(c, d, 2, (dst & ~3ULL) | (src & 3))
        if rc:
            return rc
        c.rflags |= F_ZF
    else:
        c.rflags &= ~(<uint64_t>F_ZF)
    return RC_OK


cdef int h_movsxd(Cpu* c, Insn* d) noexcept nogil:
    """63 /r: MOVSXD in 64-bit mode, ARPL outside it."""
    cdef uint64_t v
    cdef int rc
    if not c.long64:
        return h_arpl(c, d)
    rc = read_rm(c, d, 4 if d.osz == 8 else d.osz, &v)
    if rc:
        return rc
    set_reg(c, d.reg, d.osz, <uint64_t>sext(v, 4) if d.osz == 8 else v)
    return RC_OK


cdef int h_lea(Cpu* c, Insn* d) noexcept nogil:
    if d.mod == 3:
        return raise_ud(c)
    set_reg(c, d.reg, d.osz, ea_offset(c, d))
    return RC_OK


cdef int h_xchg_rm_r(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t a, b
    cdef int rc = read_rm_rmw(c, d, d.osz, &a)
    if rc:
        return rc
    if d.mod != 3:
        lock_note(c, d.seg, ea_offset(c, d), d.osz)     # XCHG with memory is locked
    b = get_reg(c, d.reg, d.osz)
    rc = write_rm(c, d, d.osz, b)
    if rc:
        return rc
    set_reg(c, d.reg, d.osz, a)
    return RC_OK


cdef int h_setcc(Cpu* c, Insn* d) noexcept nogil:
    """0F 90-9F SETcc r/m8: 1 if the condition (ext) holds, else 0.  ModRM.reg
    is ignored."""
    return write_rm(c, d, 1, <uint64_t>cond(c, d.ext))


cdef int h_cmovcc(Cpu* c, Insn* d) noexcept nogil:
    """0F 40-4F CMOVcc r, r/m (SDM Vol. 2 CMOVcc).  The source is read (and
    may fault) whatever the condition.  With a false condition and a 32-bit
    operand the destination is still written in 64-bit mode: bits 63:32 are
    cleared."""
    cdef uint64_t v
    cdef int rc = read_rm(c, d, d.osz, &v)
    if rc:
        return rc
    if cond(c, d.ext):
        set_reg(c, d.reg, d.osz, v)
    elif d.osz == 4:
        set_reg(c, d.reg, 4, get_reg(c, d.reg, 4))
    return RC_OK


cdef int h_xchg_ax_r(Cpu* c, Insn* d) noexcept nogil:
    """90+r.  90 without REX.B is NOP (even with a 32-bit operand, it does not
    clear the upper half of RAX in 64-bit mode); F3 90 is PAUSE."""
    cdef uint64_t a
    if d.reg == 0:
        return RC_OK
    a = get_reg(c, R_AX, d.osz)
    set_reg(c, R_AX, d.osz, get_reg(c, d.reg, d.osz))
    set_reg(c, d.reg, d.osz, a)
    return RC_OK


# --- the stack (SDM Vol. 1 6.2) ----------------------------------------------

cdef inline void set_sp(Cpu* c, uint64_t v) noexcept nogil:
    if c.stack_size == 8:
        c.regs[R_SP] = v
    elif c.stack_size == 4:
        c.regs[R_SP] = v & 0xFFFFFFFFULL
    else:
        vtx_store64(&c.regs[R_SP], (c.regs[R_SP] & ~0xFFFFULL) | (v & 0xFFFF))


cdef inline int push(Cpu* c, int size, uint64_t v) noexcept nogil:
    cdef uint64_t sp = (c.regs[R_SP] - size) & SIZE_MASK[c.stack_size]
    cdef int rc = mem_write(c, S_SS, sp, size, v)
    if rc:
        return rc
    set_sp(c, sp)
    return RC_OK


cdef inline int pop(Cpu* c, int size, uint64_t* v) noexcept nogil:
    cdef uint64_t sp = c.regs[R_SP] & SIZE_MASK[c.stack_size]
    cdef int rc = mem_read(c, S_SS, sp, size, v)
    if rc:
        return rc
    set_sp(c, sp + size)
    return RC_OK


cdef int h_push_r(Cpu* c, Insn* d) noexcept nogil:
    return push(c, d.osz, get_reg(c, d.reg, d.osz))


cdef int h_pop_r(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t v
    cdef int rc = pop(c, d.osz, &v)
    if rc:
        return rc
    set_reg(c, d.reg, d.osz, v)
    return RC_OK


cdef int h_push_imm(Cpu* c, Insn* d) noexcept nogil:
    return push(c, d.osz, d.imm)


cdef int h_push_rm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t v
    cdef int rc = read_rm(c, d, d.osz, &v)
    if rc:
        return rc
    return push(c, d.osz, v)


cdef int h_pop_rm(Cpu* c, Insn* d) noexcept nogil:
    """8F /0.  The stack pointer is incremented before the destination address
    is computed (SDM Vol. 2 POP: "if the ESP register is used as a base
    register ... computed after the POP")."""
    cdef uint64_t v, saved = c.regs[R_SP]
    cdef int rc = pop(c, d.osz, &v)
    if rc:
        return rc
    rc = write_rm(c, d, d.osz, v)
    if rc:
        c.regs[R_SP] = saved
    return rc


cdef inline void set_sp_sized(Cpu* c, uint64_t v, int stack_size) noexcept nogil:
    """set_sp for a given stack-address size (POP SS changes c.stack_size
    before the pop's own increment lands)."""
    if stack_size == 8:
        c.regs[R_SP] = v
    elif stack_size == 4:
        c.regs[R_SP] = v & 0xFFFFFFFFULL
    else:
        vtx_store64(&c.regs[R_SP], (c.regs[R_SP] & ~0xFFFFULL) | (v & 0xFFFF))


cdef int h_pusha(Cpu* c, Insn* d) noexcept nogil:
    """60 PUSHA/PUSHAD (invalid in 64-bit mode): push AX CX DX BX, the SP
    value from before the first push, BP SI DI.  All eight slots are probed
    before anything is written."""
    cdef int size = d.osz
    cdef uint64_t sm = SIZE_MASK[c.stack_size]
    cdef uint64_t sp = c.regs[R_SP]
    cdef uint64_t vals[8]
    cdef int i, rc
    for i in range(8):
        vals[i] = get_reg(c, i, size)      # R_AX .. R_DI; R_SP is the original
    for i in range(8):
        rc = mem_check_write(c, S_SS, (sp - <uint64_t>(size * (i + 1))) & sm, size)
        if rc:
            return rc
    for i in range(8):
        rc = mem_write(c, S_SS, (sp - <uint64_t>(size * (i + 1))) & sm, size, vals[i])
        if rc:
            return rc
    set_sp(c, sp - <uint64_t>(8 * size))
    return RC_OK


cdef int h_popa(Cpu* c, Insn* d) noexcept nogil:
    """61 POPA/POPAD (invalid in 64-bit mode): pop DI SI BP, skip the saved
    SP, pop BX DX CX AX.  All reads happen before any register changes."""
    cdef int size = d.osz
    cdef uint64_t sm = SIZE_MASK[c.stack_size]
    cdef uint64_t sp = c.regs[R_SP]
    cdef uint64_t vals[8]
    cdef int i, rc
    for i in range(8):
        if i == 3:
            continue                       # the SP slot is skipped, not read
        rc = mem_read(c, S_SS, (sp + <uint64_t>(size * i)) & sm, size, &vals[7 - i])
        if rc:
            return rc
    for i in range(8):
        if i != R_SP:
            set_reg(c, i, size, vals[i])
    set_sp(c, sp + <uint64_t>(8 * size))
    return RC_OK


cdef int h_leave(Cpu* c, Insn* d) noexcept nogil:
    """C9 LEAVE: (E/R)SP = (E/R)BP by the stack-address size, then pop (E/R)BP
    by the operand size (64 or 16 in 64-bit mode)."""
    cdef uint64_t v
    cdef uint64_t sp = c.regs[R_BP] & SIZE_MASK[c.stack_size]
    cdef int rc = mem_read(c, S_SS, sp, d.osz, &v)
    if rc:
        return rc
    set_sp(c, sp + d.osz)
    set_reg(c, R_BP, d.osz, v)
    return RC_OK


cdef int h_enter(Cpu* c, Insn* d) noexcept nogil:
    """C8 iw ib ENTER AllocSize, NestingLevel (SDM Vol. 2 ENTER).  Push the
    frame pointer; for a nesting level L > 0 push L - 1 frame pointers copied
    from the enclosing frame ([BP - size], [BP - 2 * size], ...) and then the
    new frame pointer; BP = the new frame pointer; SP -= AllocSize.  The level
    is taken modulo 32.  Reads and write probes all come before any change,
    and a new SP outside the stack segment (non-canonical in 64-bit mode)
    raises #SS(0)."""
    cdef int size = d.osz
    cdef int ssz = c.stack_size
    cdef uint64_t sm = SIZE_MASK[ssz]
    cdef uint64_t alloc = d.imm & 0xFFFF
    cdef int level = d.ext & 31
    cdef uint64_t sp = c.regs[R_SP]
    cdef uint64_t tbp = c.regs[R_BP]
    cdef uint64_t vals[33]
    cdef uint64_t frame, final_sp, lin
    cdef int n = 0, i, rc
    vals[n] = get_reg(c, R_BP, size)
    n += 1
    # FrameTemp: the stack pointer register as it is after that first push
    if ssz == 2:
        frame = (sp & ~0xFFFFULL) | ((sp - <uint64_t>size) & 0xFFFF)
    else:
        frame = (sp - <uint64_t>size) & sm
    if level > 0:
        for i in range(1, level):
            tbp = (tbp - <uint64_t>size) & sm
            rc = mem_read(c, S_SS, tbp, size, &vals[n])
            if rc:
                return rc
            n += 1
        vals[n] = frame
        n += 1
    for i in range(n):
        rc = mem_check_write(c, S_SS, (sp - <uint64_t>(size * (i + 1))) & sm, size)
        if rc:
            return rc
    final_sp = (sp - <uint64_t>(size * n) - alloc) & sm
    if alloc:
        rc = seg_linear(c, S_SS, final_sp, 1, ACC_WRITE, &lin)
        if rc:
            return rc
    for i in range(n):
        rc = mem_write(c, S_SS, (sp - <uint64_t>(size * (i + 1))) & sm, size, vals[i])
        if rc:
            return rc
    set_reg(c, R_BP, size, frame)
    set_sp(c, final_sp)
    return RC_OK


cdef enum:
    FLAGS_WRITABLE_ALWAYS = F_CF | F_PF | F_AF | F_ZF | F_SF | F_TF | F_DF | F_OF | F_NT | F_AC | F_ID


cdef int h_pushf(Cpu* c, Insn* d) noexcept nogil:
    if (c.rflags & F_VM) and ((c.rflags >> 12) & 3) < 3:
        return raise_gp0(c)
    # VM and RF are stored as 0 (SDM Vol. 2 PUSHF).
    return push(c, d.osz, c.rflags & ~(<uint64_t>(F_VM | F_RF)))


cdef int h_popf(Cpu* c, Insn* d) noexcept nogil:
    """POPF: which bits change depends on CPL and IOPL (SDM Vol. 2 POPF)."""
    cdef uint64_t v, mask
    cdef int rc
    cdef int iopl = (c.rflags >> 12) & 3
    if (c.rflags & F_VM) and iopl < 3:
        return raise_gp0(c)
    rc = pop(c, d.osz, &v)
    if rc:
        return rc
    mask = FLAGS_WRITABLE_ALWAYS
    if c.cpl == 0:
        mask |= F_IOPL | F_IF
    elif c.cpl <= iopl:
        mask |= F_IF
    if d.osz == 2:
        mask &= 0xFFFF
    if (v & mask & F_IF) and not (c.rflags & F_IF):
        events_unmasked(c)      # [events] a masked interrupt may be taken now
    c.rflags = (c.rflags & ~mask) | (v & mask) | F_FIXED1
    return RC_OK


# --- segment registers -------------------------------------------------------

cdef int load_descriptor(Cpu* c, uint16_t sel, uint64_t* lo, uint64_t* hi, uint64_t* addr) noexcept nogil:
    """Read the 8-byte descriptor for sel from the GDT or LDT; #GP(sel) when
    it lies outside the table limit."""
    cdef uint64_t base
    cdef uint32_t limit
    cdef int rc
    if sel & 4:
        if c.seg[S_LDTR].ar & AR_UNUSABLE:
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
        base = c.seg[S_LDTR].base
        limit = c.seg[S_LDTR].limit
    else:
        base = c.gdtr_base
        limit = c.gdtr_limit
    if (sel | 7) > limit:
        return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    addr[0] = base + (sel & 0xFFF8)
    rc = lin_read(c, addr[0], 8, AM_IMPLICIT, lo)
    if rc:
        return rc
    hi[0] = 0
    return RC_OK


cdef inline void descriptor_to_seg(uint64_t desc, Seg* s, uint16_t sel) noexcept nogil:
    cdef uint32_t limit = <uint32_t>((desc & 0xFFFF) | ((desc >> 32) & 0xF0000))
    s.sel = sel
    s.base = ((desc >> 16) & 0xFFFFFF) | (((desc >> 56) & 0xFF) << 24)
    s.ar = <uint32_t>((desc >> 40) & 0xF0FF)
    if s.ar & AR_G:
        limit = (limit << 12) | 0xFFF
    s.limit = limit


cdef int load_seg(Cpu* c, int sr, uint16_t sel) noexcept nogil:
    """MOV Sreg / POP Sreg semantics for DS ES FS GS SS (SDM Vol. 2 MOV)."""
    cdef uint64_t desc, hi, addr
    cdef int rc, dpl, rpl
    cdef uint32_t t
    cdef Seg* s = &c.seg[sr]
    if c.rflags & F_VM:
        # Virtual-8086 mode: base = selector * 16, a 64 KiB read/write data
        # segment at DPL 3 (SDM Vol. 3B 20.2.1; the VMX guest-state checks
        # require exactly these attributes, SDM Vol. 3C 27.3.1.2).
        s.sel = sel
        s.base = (<uint64_t>sel) << 4
        s.limit = 0xFFFF
        s.ar = 0xF3
        return RC_OK
    if not (c.cr0 & CR0_PE):
        # Real-address mode: base = selector * 16 (SDM Vol. 3B 20.1.1).  The
        # limit, D/B and G stay (so "unreal mode" keeps working); the segment
        # becomes a usable, present, accessed read/write data segment at DPL 0
        # even if it held a null selector loaded in protected mode, as Bochs
        # models it.  Keeping the old type could save a present data segment
        # of type 0 (not accessed), which fails the next VM entry.
        s.sel = sel
        s.base = (<uint64_t>sel) << 4
        s.ar = (s.ar & (<uint32_t>(AR_DB | AR_G))) | AR_P | AR_S | 3
        return RC_OK
    rpl = sel & 3
    if (sel & 0xFFFC) == 0:
        if sr == S_SS and not (c.long64 and c.cpl < 3 and rpl == c.cpl):
            return raise_gp0(c)
        s.sel = sel
        s.base = 0
        s.limit = 0
        s.ar = AR_UNUSABLE
        if sr == S_SS:
            s.ar |= (<uint32_t>c.cpl) << 5
        return RC_OK
    rc = load_descriptor(c, sel, &desc, &hi, &addr)
    if rc:
        return rc
    t = (desc >> 40) & 0x1F
    dpl = (desc >> 45) & 3
    if not (t & 0x10):                  # system descriptor
        return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    if sr == S_SS:
        if rpl != c.cpl or dpl != c.cpl or (t & 8) or not (t & 2):
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    else:
        if (t & 0xA) == 8:              # execute-only code
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
        if not ((t & 0xC) == 0xC) and (dpl < c.cpl or dpl < rpl):   # not conforming code
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    if not ((desc >> 47) & 1):
        return raise_exc(c, EXC_SS if sr == S_SS else EXC_NP, 1, sel & 0xFFFC)
    if not (desc & (1ULL << 40)):
        # Set the accessed bit in the descriptor (SDM Vol. 3 3.4.5.1).
        rc = lin_write(c, addr + 5, 1, AM_IMPLICIT, ((desc >> 40) & 0xFF) | 1)
        if rc:
            return rc
        desc |= 1ULL << 40
    descriptor_to_seg(desc, s, sel)
    if sr == S_SS:
        update_mode(c)
    return RC_OK


cdef int h_mov_sreg_rm(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t v
    cdef int sr = d.reg & 7
    cdef int rc
    if sr == S_CS or sr > S_GS:
        return raise_ud(c)
    rc = read_rm(c, d, 2, &v)
    if rc:
        return rc
    rc = load_seg(c, sr, <uint16_t>v)
    if rc:
        return rc
    if sr == S_SS:
        # MOV SS blocks interrupts and debug traps for one instruction.
        c.interruptibility |= 2
    return RC_OK


cdef int h_mov_rm_sreg(Cpu* c, Insn* d) noexcept nogil:
    cdef int sr = d.reg & 7
    if sr > S_GS:
        return raise_ud(c)
    if d.mod == 3:
        # To a register: zero-extended to the operand size.
        set_reg(c, d.rm, d.osz, c.seg[sr].sel)
        return RC_OK
    return mem_write(c, d.seg, ea_offset(c, d), 2, c.seg[sr].sel)


cdef int h_push_sreg(Cpu* c, Insn* d) noexcept nogil:
    """06 0E 16 1E PUSH ES CS SS DS (not in 64-bit mode), 0F A0 / 0F A8 PUSH
    FS / GS; ext is the segment register.  The stack pointer moves by the
    operand size, but with a 32- or 64-bit operand only the 16-bit selector is
    written and the rest of the slot keeps its bytes, as recent Intel
    processors do (SDM Vol. 2 PUSH: a 16-bit move)."""
    cdef uint64_t sp = (c.regs[R_SP] - d.osz) & SIZE_MASK[c.stack_size]
    cdef int rc = mem_write(c, S_SS, sp, 2, c.seg[d.ext].sel)
    if rc:
        return rc
    set_sp(c, sp)
    return RC_OK


cdef int h_pop_sreg(Cpu* c, Insn* d) noexcept nogil:
    """07 17 1F POP ES SS DS (not in 64-bit mode), 0F A1 / 0F A9 POP FS / GS.
    The selector is the low 16 bits of the popped operand and is loaded as MOV
    Sreg loads it; the stack pointer moves only when the load succeeds, by the
    stack-address size in force before a POP SS.  POP SS blocks interrupts for
    one instruction, as MOV SS does.  (0F is the two-byte escape: there is no
    POP CS.)"""
    cdef uint64_t v
    cdef int ssz = c.stack_size
    cdef uint64_t sp = c.regs[R_SP] & SIZE_MASK[ssz]
    cdef int rc = mem_read(c, S_SS, sp, d.osz, &v)
    if rc:
        return rc
    rc = load_seg(c, d.ext, <uint16_t>(v & 0xFFFF))
    if rc:
        return rc
    set_sp_sized(c, sp + d.osz, ssz)
    if d.ext == S_SS:
        c.interruptibility |= 2
    return RC_OK
