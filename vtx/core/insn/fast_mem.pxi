# Data moves specialized for their addressing form as well (docs/architecture.rst,
# "The fast path of the interpreter").  The generic effective-address
# computation (ea_offset) tests at run time for RIP-relative addressing, a
# base, an index and the address size; compiled code addresses memory almost
# always as base + displacement or base + index * scale + displacement with
# the mode's own address size, and for those forms specialize() picks a handler
# here whose address is one or two loads and adds.  Everything else about the
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
    path keeps (RIP-relative, no base, 16-bit addresses)."""
    if (d.flags & INSN_RIPREL) or d.base == 0xFF or (d.asz != 4 and d.asz != 8):
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


cdef inline int t_load_form(Cpu* c, Insn* d, int size, int form) noexcept nogil:
    """MOV r, m (8B /r) of size 4 or 8 with a known addressing form."""
    cdef uint64_t off = ea_of_form(c, d, form)
    cdef uint8_t* p = data_hit(c, d.seg, off, size, ACC_READ)
    if p == NULL:
        return LOAD_SLOW(c, d, off, size)
    set_reg(c, d.reg, size, load_le(p, size))
    return RC_OK


cdef inline int t_store_form(Cpu* c, Insn* d, int size, int form) noexcept nogil:
    """MOV m, r (89 /r) of size 4 or 8 with a known addressing form."""
    cdef uint64_t off = ea_of_form(c, d, form)
    cdef uint64_t v = c.regs[d.reg]
    cdef uint8_t* p = data_hit(c, d.seg, off, size, ACC_WRITE)
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


cdef handler_t FAST_LOAD_FORM[EA_FORMS][9]     # [form][size]; NULL: FAST_MOV_R_M
cdef handler_t FAST_STORE_FORM[EA_FORMS][9]


cdef void init_fast_mem_tables() noexcept:
    memset(FAST_LOAD_FORM, 0, sizeof(FAST_LOAD_FORM))
    memset(FAST_STORE_FORM, 0, sizeof(FAST_STORE_FORM))
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
