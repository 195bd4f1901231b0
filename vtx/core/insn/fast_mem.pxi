# Memory operands specialized for their addressing form as well (docs/architecture.rst,
# "The fast path of the interpreter").  The generic effective-address
# computation (ea_offset) tests at run time for RIP-relative addressing, a
# base, an index and the address size; compiled code addresses memory almost
# always as base + displacement or base + index * scale + displacement with
# the mode's own address size, and for those forms specialize() picks a handler
# here whose address is one or two loads and adds (MOV r, m and m, r; IMUL
# r, m; ADD OR AND SUB XOR CMP r, m; CMP m, r).  Everything else about the
# access is mem_read/mem_write's (core/mmu.pxi): the same inline lookup, the
# same out-of-line checks.


cdef enum:
    EA_B64 = 0          # base + disp, 64-bit address size
    EA_B32 = 1          # base + disp, 32-bit address size (wraps at 4 GiB)
    EA_BI64 = 2         # base + (index << scale) + disp, 64-bit
    EA_BI32 = 3         # base + (index << scale) + disp, 32-bit
    EA_FORMS = 4


cdef inline int ea_form(Insn* d) noexcept nogil:
    """The addressing form of a memory operand, or -1 for one the generic
    path keeps (RIP-relative, no base, 16-bit addresses, FS or GS)."""
    if (d.flags & INSN_RIPREL) or d.base == 0xFF or (d.asz != 4 and d.asz != 8) or d.seg == S_FS or d.seg == S_GS:
        return -1
    if d.index == 0xFF:
        return EA_B64 if d.asz == 8 else EA_B32
    return EA_BI64 if d.asz == 8 else EA_BI32


cdef inline uint64_t ea_of_form(Cpu* c, Insn* d, int form) noexcept nogil:
    """ea_offset for a known form (a constant in every caller)."""
    cdef uint64_t a = c.regs[d.base] + <uint64_t>d.disp
    if form == EA_BI64 or form == EA_BI32:
        a += c.regs[d.index] << d.scale
    if form == EA_B32 or form == EA_BI32:
        a &= 0xFFFFFFFFULL
    return a


cdef inline uint8_t* form_hit(Cpu* c, Insn* d, uint64_t off, int size, int kind, int form) noexcept nogil:
    """data_hit for a known form.  A 64-bit address size exists only in
    64-bit mode (decoded instructions are kept per mode), and ea_form left
    FS and GS out: the offset is the linear address, the TLB alone decides."""
    if form == EA_B64 or form == EA_BI64:
        return tlb_hit(c, off, size, kind)
    return data_hit(c, d.seg, off, size, kind)


cdef inline int t_load_form(Cpu* c, Insn* d, int size, int form) noexcept nogil:
    """MOV r, m (8B /r) of size 4 or 8 with a known addressing form."""
    cdef uint64_t off = ea_of_form(c, d, form)
    cdef uint8_t* p = form_hit(c, d, off, size, ACC_READ, form)
    if p == NULL:
        return LOAD_SLOW(c, d, off, size)
    set_reg(c, d.reg, size, load_le(p, size))
    return RC_OK


cdef inline int t_store_form(Cpu* c, Insn* d, int size, int form) noexcept nogil:
    """MOV m, r (89 /r) of size 4 or 8 with a known addressing form."""
    cdef uint64_t off = ea_of_form(c, d, form)
    cdef uint64_t v = c.regs[d.reg]
    cdef uint8_t* p = form_hit(c, d, off, size, ACC_WRITE, form)
    if p == NULL:
        return mem_write_slow(c, d.seg, off, size, v)
    store_le(p, size, v)
    return RC_OK


cdef int h_load32_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_load_form(c, d, 4, EA_B64)

cdef int h_store32_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_store_form(c, d, 4, EA_B64)

cdef int h_load64_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_load_form(c, d, 8, EA_B64)

cdef int h_store64_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_store_form(c, d, 8, EA_B64)

cdef int h_load32_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_load_form(c, d, 4, EA_B32)

cdef int h_store32_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_store_form(c, d, 4, EA_B32)

cdef int h_load64_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_load_form(c, d, 8, EA_B32)

cdef int h_store64_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_store_form(c, d, 8, EA_B32)

cdef int h_load32_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_load_form(c, d, 4, EA_BI64)

cdef int h_store32_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_store_form(c, d, 4, EA_BI64)

cdef int h_load64_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_load_form(c, d, 8, EA_BI64)

cdef int h_store64_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_store_form(c, d, 8, EA_BI64)

cdef int h_load32_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_load_form(c, d, 4, EA_BI32)

cdef int h_store32_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_store_form(c, d, 4, EA_BI32)

cdef int h_load64_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_load_form(c, d, 8, EA_BI32)

cdef int h_store64_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_store_form(c, d, 8, EA_BI32)


# --- memory source operands ---------------------------------------------------------
# IMUL r, m; ADD/OR/AND/SUB/XOR/CMP r, m; CMP m, r.  Where the inline lookup
# misses, the generic handler runs the whole instruction again from the
# start (nothing was changed yet), reached through a pointer the C compiler
# does not inline: the tail call keeps the inline part free of a frame.

cdef handler_t SLOW_IMUL_R_RM = h_imul_r_rm
cdef handler_t SLOW_ALU_R_RM = h_alu_r_rm
cdef handler_t SLOW_ALU_RM_R = h_alu_rm_r


cdef inline int t_imul_m_form(Cpu* c, Insn* d, int size, int form) noexcept nogil:
    """IMUL r, m (0F AF /r) of size 4 or 8 (CF = OF = signed overflow)."""
    cdef uint64_t off = ea_of_form(c, d, form)
    cdef uint8_t* p = form_hit(c, d, off, size, ACC_READ, form)
    if p == NULL:
        return SLOW_IMUL_R_RM(c, d)
    return imul2_sized(c, d, c.regs[d.reg], load_le(p, size), size)


cdef inline int t_alu_r_m_form(Cpu* c, Insn* d, int size, int form) noexcept nogil:
    """ADD, OR, AND, SUB, XOR or CMP r, m (the 03 0B 23 2B 33 3B forms; the
    operation is d.ext, chosen at decode among those six)."""
    cdef uint64_t off = ea_of_form(c, d, form)
    cdef uint8_t* p = form_hit(c, d, off, size, ACC_READ, form)
    cdef uint64_t m = SIZE_MASK[size]
    cdef uint64_t a, b, r
    cdef uint64_t fl = 0
    if p == NULL:
        return SLOW_ALU_R_RM(c, d)
    a = c.regs[d.reg] & m
    b = load_le(p, size)
    r = alu_result(c, d.ext, size, a, b, &fl)
    if d.ext != ALU_CMP:
        set_reg(c, d.reg, size, r)
    alu_commit(c, d.ext, size, a, b, r, fl)
    return RC_OK


cdef inline int t_cmp_m_r_form(Cpu* c, Insn* d, int size, int form) noexcept nogil:
    """CMP m, r (39 /r): the memory operand is the first."""
    cdef uint64_t off = ea_of_form(c, d, form)
    cdef uint8_t* p = form_hit(c, d, off, size, ACC_READ, form)
    cdef uint64_t m = SIZE_MASK[size]
    cdef uint64_t a, b
    if p == NULL:
        return SLOW_ALU_RM_R(c, d)
    a = load_le(p, size)
    b = c.regs[d.reg] & m
    set_lazy(c, LF_SUB, size, a, b, (a - b) & m)
    return RC_OK

cdef int h_imul32_m_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_imul_m_form(c, d, 4, EA_B64)

cdef int h_alu32_r_m_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_r_m_form(c, d, 4, EA_B64)

cdef int h_cmp32_m_r_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_cmp_m_r_form(c, d, 4, EA_B64)

cdef int h_imul64_m_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_imul_m_form(c, d, 8, EA_B64)

cdef int h_alu64_r_m_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_r_m_form(c, d, 8, EA_B64)

cdef int h_cmp64_m_r_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_cmp_m_r_form(c, d, 8, EA_B64)

cdef int h_imul32_m_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_imul_m_form(c, d, 4, EA_B32)

cdef int h_alu32_r_m_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_r_m_form(c, d, 4, EA_B32)

cdef int h_cmp32_m_r_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_cmp_m_r_form(c, d, 4, EA_B32)

cdef int h_imul64_m_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_imul_m_form(c, d, 8, EA_B32)

cdef int h_alu64_r_m_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_r_m_form(c, d, 8, EA_B32)

cdef int h_cmp64_m_r_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_cmp_m_r_form(c, d, 8, EA_B32)

cdef int h_imul32_m_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_imul_m_form(c, d, 4, EA_BI64)

cdef int h_alu32_r_m_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_r_m_form(c, d, 4, EA_BI64)

cdef int h_cmp32_m_r_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_cmp_m_r_form(c, d, 4, EA_BI64)

cdef int h_imul64_m_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_imul_m_form(c, d, 8, EA_BI64)

cdef int h_alu64_r_m_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_r_m_form(c, d, 8, EA_BI64)

cdef int h_cmp64_m_r_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_cmp_m_r_form(c, d, 8, EA_BI64)

cdef int h_imul32_m_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_imul_m_form(c, d, 4, EA_BI32)

cdef int h_alu32_r_m_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_r_m_form(c, d, 4, EA_BI32)

cdef int h_cmp32_m_r_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_cmp_m_r_form(c, d, 4, EA_BI32)

cdef int h_imul64_m_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_imul_m_form(c, d, 8, EA_BI32)

cdef int h_alu64_r_m_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_alu_r_m_form(c, d, 8, EA_BI32)

cdef int h_cmp64_m_r_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_cmp_m_r_form(c, d, 8, EA_BI32)


# --- LEA, and the register stack -------------------------------------------------------

cdef inline int t_lea_form(Cpu* c, Insn* d, int size, int form) noexcept nogil:
    """LEA r, m (8D /r) of size 4 or 8: the offset, cut to the operand size."""
    set_reg(c, d.reg, size, ea_of_form(c, d, form))
    return RC_OK


cdef handler_t SLOW_PUSH_R = h_push_r
cdef handler_t SLOW_POP_R = h_pop_r


cdef int h_push_r64(Cpu* c, Insn* d) noexcept nogil:
    """PUSH r64 (50+r) in 64-bit mode (an 8-byte push exists only there):
    SS has no base or limit, so the new RSP is the linear address.  PUSH
    RSP stores the value before the decrement."""
    cdef uint64_t sp = c.regs[R_SP] - 8
    cdef uint8_t* p = tlb_hit(c, sp, 8, ACC_WRITE)
    if p == NULL:
        return SLOW_PUSH_R(c, d)
    store_le(p, 8, c.regs[d.reg])
    c.regs[R_SP] = sp
    return RC_OK


cdef int h_pop_r64(Cpu* c, Insn* d) noexcept nogil:
    """POP r64 (58+r) in 64-bit mode.  RSP is incremented before the
    destination is written: POP RSP leaves the value popped."""
    cdef uint64_t sp = c.regs[R_SP]
    cdef uint8_t* p = tlb_hit(c, sp, 8, ACC_READ)
    cdef uint64_t v
    if p == NULL:
        return SLOW_POP_R(c, d)
    v = load_le(p, 8)
    c.regs[R_SP] = sp + 8
    c.regs[d.reg] = v
    return RC_OK


cdef int h_push_r32(Cpu* c, Insn* d) noexcept nogil:
    """PUSH r32 with a 32-bit stack (B = 1) through a flat SS; anything else
    (a 16-bit stack, a based or limited SS, a miss) goes to h_push_r."""
    cdef uint64_t sp = (c.regs[R_SP] - 4) & 0xFFFFFFFFULL
    cdef uint8_t* p
    if c.stack_size != 4:
        return SLOW_PUSH_R(c, d)
    p = data_hit(c, S_SS, sp, 4, ACC_WRITE)
    if p == NULL:
        return SLOW_PUSH_R(c, d)
    store_le(p, 4, c.regs[d.reg])
    c.regs[R_SP] = sp
    return RC_OK


cdef int h_pop_r32(Cpu* c, Insn* d) noexcept nogil:
    """POP r32 with a 32-bit stack through a flat SS (as h_push_r32)."""
    cdef uint64_t sp = c.regs[R_SP] & 0xFFFFFFFFULL
    cdef uint8_t* p
    cdef uint64_t v
    if c.stack_size != 4:
        return SLOW_POP_R(c, d)
    p = data_hit(c, S_SS, sp, 4, ACC_READ)
    if p == NULL:
        return SLOW_POP_R(c, d)
    v = load_le(p, 4)
    c.regs[R_SP] = (sp + 4) & 0xFFFFFFFFULL
    c.regs[d.reg] = v
    return RC_OK

cdef int h_lea32_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_lea_form(c, d, 4, EA_B64)

cdef int h_lea64_b64(Cpu* c, Insn* d) noexcept nogil:
    return t_lea_form(c, d, 8, EA_B64)

cdef int h_lea32_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_lea_form(c, d, 4, EA_B32)

cdef int h_lea64_b32(Cpu* c, Insn* d) noexcept nogil:
    return t_lea_form(c, d, 8, EA_B32)

cdef int h_lea32_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_lea_form(c, d, 4, EA_BI64)

cdef int h_lea64_bi64(Cpu* c, Insn* d) noexcept nogil:
    return t_lea_form(c, d, 8, EA_BI64)

cdef int h_lea32_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_lea_form(c, d, 4, EA_BI32)

cdef int h_lea64_bi32(Cpu* c, Insn* d) noexcept nogil:
    return t_lea_form(c, d, 8, EA_BI32)


# --- CMOVcc between registers ---------------------------------------------------------

cdef inline int t_cmov_rr(Cpu* c, Insn* d, int cc) noexcept nogil:
    """CMOVcc r, r with a constant condition (as h_cmovcc: a false condition
    with a 32-bit operand still clears bits 63:32 of the destination)."""
    cdef uint64_t v = c.regs[d.rm]
    if cond(c, cc):
        set_reg(c, d.reg, d.osz, v)
    elif d.osz == 4:
        c.regs[d.reg] &= 0xFFFFFFFFULL
    return RC_OK

cdef int h_cmov_rr0(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 0)

cdef int h_cmov_rr1(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 1)

cdef int h_cmov_rr2(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 2)

cdef int h_cmov_rr3(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 3)

cdef int h_cmov_rr4(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 4)

cdef int h_cmov_rr5(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 5)

cdef int h_cmov_rr6(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 6)

cdef int h_cmov_rr7(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 7)

cdef int h_cmov_rr8(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 8)

cdef int h_cmov_rr9(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 9)

cdef int h_cmov_rra(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 10)

cdef int h_cmov_rrb(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 11)

cdef int h_cmov_rrc(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 12)

cdef int h_cmov_rrd(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 13)

cdef int h_cmov_rre(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 14)

cdef int h_cmov_rrf(Cpu* c, Insn* d) noexcept nogil:
    return t_cmov_rr(c, d, 15)


cdef handler_t FAST_LOAD_FORM[EA_FORMS][9]     # [form][size]; NULL: FAST_MOV_R_M
cdef handler_t FAST_STORE_FORM[EA_FORMS][9]
cdef handler_t FAST_IMUL_M_FORM[EA_FORMS][9]
cdef handler_t FAST_ALU_R_M_FORM[EA_FORMS][9]   # ADD OR AND SUB XOR CMP (d.ext)
cdef handler_t FAST_CMP_M_R_FORM[EA_FORMS][9]
cdef handler_t FAST_LEA_FORM[EA_FORMS][9]
cdef handler_t FAST_CMOV_RR[16]


cdef void init_fast_mem_tables() noexcept:
    memset(FAST_LOAD_FORM, 0, sizeof(FAST_LOAD_FORM))
    memset(FAST_STORE_FORM, 0, sizeof(FAST_STORE_FORM))
    memset(FAST_IMUL_M_FORM, 0, sizeof(FAST_IMUL_M_FORM))
    memset(FAST_ALU_R_M_FORM, 0, sizeof(FAST_ALU_R_M_FORM))
    memset(FAST_CMP_M_R_FORM, 0, sizeof(FAST_CMP_M_R_FORM))
    memset(FAST_LEA_FORM, 0, sizeof(FAST_LEA_FORM))
    FAST_LOAD_FORM[EA_B64][4] = h_load32_b64
    FAST_STORE_FORM[EA_B64][4] = h_store32_b64
    FAST_LOAD_FORM[EA_B64][8] = h_load64_b64
    FAST_STORE_FORM[EA_B64][8] = h_store64_b64
    FAST_LOAD_FORM[EA_B32][4] = h_load32_b32
    FAST_STORE_FORM[EA_B32][4] = h_store32_b32
    FAST_LOAD_FORM[EA_B32][8] = h_load64_b32
    FAST_STORE_FORM[EA_B32][8] = h_store64_b32
    FAST_LOAD_FORM[EA_BI64][4] = h_load32_bi64
    FAST_STORE_FORM[EA_BI64][4] = h_store32_bi64
    FAST_LOAD_FORM[EA_BI64][8] = h_load64_bi64
    FAST_STORE_FORM[EA_BI64][8] = h_store64_bi64
    FAST_LOAD_FORM[EA_BI32][4] = h_load32_bi32
    FAST_STORE_FORM[EA_BI32][4] = h_store32_bi32
    FAST_LOAD_FORM[EA_BI32][8] = h_load64_bi32
    FAST_STORE_FORM[EA_BI32][8] = h_store64_bi32
    FAST_IMUL_M_FORM[EA_B64][4] = h_imul32_m_b64
    FAST_ALU_R_M_FORM[EA_B64][4] = h_alu32_r_m_b64
    FAST_CMP_M_R_FORM[EA_B64][4] = h_cmp32_m_r_b64
    FAST_IMUL_M_FORM[EA_B64][8] = h_imul64_m_b64
    FAST_ALU_R_M_FORM[EA_B64][8] = h_alu64_r_m_b64
    FAST_CMP_M_R_FORM[EA_B64][8] = h_cmp64_m_r_b64
    FAST_IMUL_M_FORM[EA_B32][4] = h_imul32_m_b32
    FAST_ALU_R_M_FORM[EA_B32][4] = h_alu32_r_m_b32
    FAST_CMP_M_R_FORM[EA_B32][4] = h_cmp32_m_r_b32
    FAST_IMUL_M_FORM[EA_B32][8] = h_imul64_m_b32
    FAST_ALU_R_M_FORM[EA_B32][8] = h_alu64_r_m_b32
    FAST_CMP_M_R_FORM[EA_B32][8] = h_cmp64_m_r_b32
    FAST_IMUL_M_FORM[EA_BI64][4] = h_imul32_m_bi64
    FAST_ALU_R_M_FORM[EA_BI64][4] = h_alu32_r_m_bi64
    FAST_CMP_M_R_FORM[EA_BI64][4] = h_cmp32_m_r_bi64
    FAST_IMUL_M_FORM[EA_BI64][8] = h_imul64_m_bi64
    FAST_ALU_R_M_FORM[EA_BI64][8] = h_alu64_r_m_bi64
    FAST_CMP_M_R_FORM[EA_BI64][8] = h_cmp64_m_r_bi64
    FAST_IMUL_M_FORM[EA_BI32][4] = h_imul32_m_bi32
    FAST_ALU_R_M_FORM[EA_BI32][4] = h_alu32_r_m_bi32
    FAST_CMP_M_R_FORM[EA_BI32][4] = h_cmp32_m_r_bi32
    FAST_IMUL_M_FORM[EA_BI32][8] = h_imul64_m_bi32
    FAST_ALU_R_M_FORM[EA_BI32][8] = h_alu64_r_m_bi32
    FAST_CMP_M_R_FORM[EA_BI32][8] = h_cmp64_m_r_bi32
    FAST_LEA_FORM[EA_B64][4] = h_lea32_b64
    FAST_LEA_FORM[EA_B64][8] = h_lea64_b64
    FAST_LEA_FORM[EA_B32][4] = h_lea32_b32
    FAST_LEA_FORM[EA_B32][8] = h_lea64_b32
    FAST_LEA_FORM[EA_BI64][4] = h_lea32_bi64
    FAST_LEA_FORM[EA_BI64][8] = h_lea64_bi64
    FAST_LEA_FORM[EA_BI32][4] = h_lea32_bi32
    FAST_LEA_FORM[EA_BI32][8] = h_lea64_bi32
    FAST_CMOV_RR[0] = h_cmov_rr0
    FAST_CMOV_RR[1] = h_cmov_rr1
    FAST_CMOV_RR[2] = h_cmov_rr2
    FAST_CMOV_RR[3] = h_cmov_rr3
    FAST_CMOV_RR[4] = h_cmov_rr4
    FAST_CMOV_RR[5] = h_cmov_rr5
    FAST_CMOV_RR[6] = h_cmov_rr6
    FAST_CMOV_RR[7] = h_cmov_rr7
    FAST_CMOV_RR[8] = h_cmov_rr8
    FAST_CMOV_RR[9] = h_cmov_rr9
    FAST_CMOV_RR[10] = h_cmov_rra
    FAST_CMOV_RR[11] = h_cmov_rrb
    FAST_CMOV_RR[12] = h_cmov_rrc
    FAST_CMOV_RR[13] = h_cmov_rrd
    FAST_CMOV_RR[14] = h_cmov_rre
    FAST_CMOV_RR[15] = h_cmov_rrf
