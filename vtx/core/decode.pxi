# The decoder: legacy prefixes, REX, the one- and two-byte opcode maps,
# ModRM/SIB/displacement/immediate (SDM Vol. 2 chapter 2), and the decode
# cache keyed by host-physical address (docs/architecture.rst, decision 4).
#
# The opcode maps are defined once, in init_opcode_tables() at the end of this
# file: each entry names its operand format and its handler.

# Opcode format flags.
cdef enum:
    OPF_VALID = 1 << 0
    OPF_MODRM = 1 << 1
    OPF_BYTE = 1 << 2       # operand size is 8 bits
    OPF_IB = 1 << 3         # imm8
    OPF_IW = 1 << 4         # imm16
    OPF_IZ = 1 << 5         # imm16 or imm32 (by operand size; 32 in 64-bit)
    OPF_IV = 1 << 6         # imm16/32/64 by operand size (MOV r, imm)
    OPF_MOFFS = 1 << 7      # moffs: an address-size offset
    OPF_DEF64 = 1 << 8      # default operand size 64 in 64-bit mode
    OPF_F64 = 1 << 9        # operand size forced to 64 in 64-bit mode
    OPF_NO64 = 1 << 10      # invalid (#UD) in 64-bit mode
    OPF_GRP = 1 << 11       # handler chosen by ModRM.reg from group `ext`
    OPF_SRC8 = 1 << 12      # ModRM.rm operand is a byte register (MOVZX/MOVSX)
    OPF_SX = 1 << 13        # sign-extend the immediate to 64 bits
    OPF_SRC16 = 1 << 14     # ModRM.rm operand is 16-bit regardless of osz
    OPF_LOCK = 1 << 15      # LOCK is allowed (with a memory destination)
    OPF_LAZY = 1 << 16      # the handler keeps the status flags lazy (core/flags.pxi)
    OPF_END = 1 << 17       # a near branch: ends a translated block (core/run.pxi)
    OPF_P66 = 1 << 18       # record a 66 prefix in bit 3 of d.ext (instructions that a
                            # mandatory 66 prefix selects or makes invalid: VMCLEAR, VMREAD)
    OPF_MODREG = 1 << 19    # ModRM.mod is ignored: always the register form (MOV CR, MOV DR)
    OPF_M66 = 1 << 20       # 0F 38 map: valid only with the mandatory prefix 66 (and no F2/F3)
    OPF_P66KEEP = 1 << 21   # an OP2P/OP38P/OP3A entry whose 66 prefix is an operand-size
                            # prefix, not a mandatory one (MOVBE r16, ...)
    OPF_FARPTR = 1 << 22    # ptr16:16/32 (EA, 9A): the offset (16 or 32 bits by operand
                            # size) in imm, then the selector in disp
    OPF_MODRM_IMM = 1 << 30 # keep the ModRM byte in d.imm (x87: FOP records it, core/insn/x87.pxi)

# Insn.flags
cdef enum:
    INSN_RIPREL = 1
    INSN_REX = 2
    INSN_LOCK = 4
    INSN_SEGOVR = 8
    INSN_IMM_DX = 16
    INSN_LAZY = 32          # OPF_LAZY: may run with the flag record pending
    INSN_FUSED = 64         # a pair with the Jcc that follows (insn/fast.pxi)
    INSN_END = 128          # OPF_END

# Insn.cc2, bit 7 (its low 4 bits are a fused pair's condition): a Jcc of a
# translated block (alone or fused) whose target is the first byte of one of
# the block's own ops.  build_block sets it, with the target's op index and
# byte offset in the op's tag (a block's ops are not in the decode cache, so
# their tag is free: see OP_* in core/run.pxi); the block's checks
# (block_fits) cover the target too, so the branch needs no wrap, CS-limit
# or canonical check, and taken it returns RC_LOCAL: run_block goes on at
# that op without leaving the block.
cdef enum:
    CC2_LOCAL = 0x80

ctypedef struct OpInfo:
    handler_t fn
    uint32_t flags
    uint8_t ext
    uint8_t feat          # FEAT_<name> + 1 of the CPUID feature it needs; 0: none

cdef OpInfo OP1[256]
cdef OpInfo OP2[256]
cdef OpInfo OP38[256]             # the three-byte map 0F 38 (SDM Vol. 2 Table A-4)
# Instructions that a mandatory prefix selects (SDM Vol. 2 2.1.2; the SSE
# family, POPCNT, LZCNT, TZCNT, ...), indexed [PFX_*][opcode]: for the 0F map
# an entry here takes precedence over OP2 when its prefix is present and its
# feature is in the CPU model, else OP2 decides (F3 0F BC is TZCNT with BMI1
# and BSF without); the 0F 38 map looks here when OP38 has no entry; the
# 0F 3A map (an imm8 follows ModRM) lives only here.
cdef OpInfo OP2P[4][256]
cdef OpInfo OP38P[4][256]
cdef OpInfo OP3A[4][256]
cdef handler_t GRP[16][8]
cdef uint32_t GRP_FLAGS[16][8]    # extra format flags per group member (imm for F6/F7 /0 /1)

# Mandatory-prefix index: the last F2/F3 if any, else 66, else none.  The
# decoder leaves the prefix itself in d.rep (0, 0x66, 0xF3 or 0xF2) for the
# handler, and a 66 that selected the instruction does not change osz.
cdef enum:
    PFX_NONE = 0
    PFX_66 = 1
    PFX_F3 = 2
    PFX_F2 = 3

cdef enum:
    DECODE_OK = 0
    DECODE_MORE = 1        # ran out of bytes: fetch across the page boundary
    DECODE_UD = 2
    DECODE_GP = 3          # longer than 15 bytes

cdef enum:
    MAX_INSN = 15

# 16-bit addressing forms (SDM Vol. 2 Table 2-1): base and index by ModRM.rm.
cdef uint8_t MODRM16_BASE[8]
cdef uint8_t MODRM16_INDEX[8]
MODRM16_BASE[:] = [R_BX, R_BX, R_BP, R_BP, R_SI, R_DI, R_BP, R_BX]
MODRM16_INDEX[:] = [R_SI, R_DI, R_SI, R_DI, 0xFF, 0xFF, 0xFF, 0xFF]


cdef inline uint64_t rd_le(const uint8_t* p, int n) noexcept nogil:
    cdef uint64_t v = 0
    memcpy(&v, p, n)
    return v


cdef int decode(Cpu* c, const uint8_t* b, int avail, Insn* d) noexcept nogil:
    """Decode one instruction from b[0:avail] for the current mode.  Returns
    DECODE_MORE when the bytes end before the instruction does."""
    cdef int i = 0
    cdef int osz_pfx = 0, asz_pfx = 0
    cdef int rex = 0
    cdef int seg = -1
    cdef uint8_t op
    cdef const OpInfo* info
    cdef uint32_t fl
    cdef int mode = c.code_size
    cdef int modrm, sib, mod, reg, rm, base, index, ss, n
    cdef int asz, osz, pi
    d.rep = 0
    d.flags = 0
    d.cc2 = 0
    d.disp = 0
    d.imm = 0
    d.base = 0xFF
    d.index = 0xFF
    d.scale = 0
    d.mod = 3
    d.reg = 0
    d.rm = 0
    d.ext = 0
    # Legacy prefixes (SDM Vol. 2 2.1.1), then REX in 64-bit mode (2.2.1).
    while True:
        if i >= avail:
            return DECODE_MORE
        if i >= MAX_INSN:
            return DECODE_GP
        op = b[i]
        if op == 0x66:
            osz_pfx = 1
        elif op == 0x67:
            asz_pfx = 1
        elif op == 0xF2 or op == 0xF3:
            d.rep = op
        elif op == 0xF0:
            d.flags |= INSN_LOCK
        elif op == 0x26 or op == 0x2E or op == 0x36 or op == 0x3E:
            if mode != 8:       # ES/CS/SS/DS overrides are ignored in 64-bit mode
                seg = (op >> 3) & 3
        elif op == 0x64:
            seg = S_FS
        elif op == 0x65:
            seg = S_GS
        elif mode == 8 and (op & 0xF0) == 0x40:
            rex = op
            i += 1
            if i >= avail:
                return DECODE_MORE
            op = b[i]
            if op == 0x66 or op == 0x67 or op == 0xF2 or op == 0xF3 or op == 0xF0 or \
               (op & 0xF0) == 0x40 or op == 0x26 or op == 0x2E or op == 0x36 or op == 0x3E or \
               op == 0x64 or op == 0x65:
                rex = 0     # a REX not immediately before the opcode is ignored
                continue
            break
        else:
            break
        i += 1
    if rex:
        d.flags |= INSN_REX
    # Opcode.
    if op == 0x0F:
        i += 1
        if i >= avail:
            return DECODE_MORE
        op = b[i]
        pi = PFX_F3 if d.rep == 0xF3 else (PFX_F2 if d.rep == 0xF2 else (PFX_66 if osz_pfx else PFX_NONE))
        if op == 0x38 or op == 0x3A:
            # Three-byte maps 0F 38 and 0F 3A: 66, F2 and F3 are mandatory
            # prefixes that select the instruction (SDM Vol. 2 2.1.2), not
            # operand size or repeat.  The one in effect is kept in d.rep
            # (F2/F3 before 66), where the handler finds it.
            i += 1
            if i >= avail:
                return DECODE_MORE
            if d.rep == 0 and osz_pfx:
                d.rep = 0x66
            if op == 0x3A:
                op = b[i]
                info = &OP3A[pi][op]
            else:
                op = b[i]
                info = &OP38[op]
                if not (info.flags & OPF_VALID):
                    info = &OP38P[pi][op]
            if info.flags & OPF_M66:
                if d.rep != 0x66:
                    return DECODE_UD
            elif (info.flags & OPF_VALID) and not (info.flags & OPF_P66KEEP) and pi == PFX_66:
                osz_pfx = 0     # the 66 selected the instruction
        else:
            info = &OP2P[pi][op]
            if (info.flags & OPF_VALID) and (info.feat == 0 or cpu_has(c, info.feat - 1)):
                if pi == PFX_66 and not (info.flags & OPF_P66KEEP):
                    osz_pfx = 0     # the 66 selected the instruction
                    d.rep = 0x66
            else:
                info = &OP2[op]
    else:
        info = &OP1[op]
    i += 1
    d.op = op
    fl = info.flags
    if not (fl & OPF_VALID):
        return DECODE_UD
    if info.feat and not cpu_has(c, info.feat - 1):
        return DECODE_UD
    if mode == 8 and (fl & OPF_NO64):
        return DECODE_UD
    d.ext = info.ext
    # Operand and address size (SDM Vol. 1 3.6, Vol. 2 2.2.1.2).
    if mode == 8:
        asz = 4 if asz_pfx else 8
        if fl & OPF_F64:
            osz = 8
        elif rex & 8:
            osz = 8
        elif fl & OPF_DEF64:
            osz = 2 if osz_pfx else 8
        else:
            osz = 2 if osz_pfx else 4
    else:
        asz = (6 - mode) if asz_pfx else mode
        osz = (6 - mode) if osz_pfx else mode
    if fl & OPF_BYTE:
        osz = 1
    d.osz = osz
    d.asz = asz
    d.fn = info.fn
    # ModRM, SIB, displacement.
    if fl & OPF_MODRM:
        if i >= avail:
            return DECODE_MORE
        modrm = b[i]
        i += 1
        if fl & OPF_MODRM_IMM:
            d.imm = modrm
        mod = modrm >> 6
        if fl & OPF_MODREG:
            # MOV to/from CR and DR: "the 2 bits in the mod field are
            # ignored" (SDM Vol. 2 MOV CR, MOV DR): no memory operand, no
            # displacement.
            mod = 3
        reg = ((modrm >> 3) & 7) | ((rex & 4) << 1)
        rm = modrm & 7
        d.mod = mod
        if fl & OPF_GRP:
            d.fn = GRP[info.ext][(modrm >> 3) & 7]
            fl |= GRP_FLAGS[info.ext][(modrm >> 3) & 7]
            if (fl & OPF_BYTE) and (fl & OPF_IZ):
                fl = (fl & ~(<uint32_t>OPF_IZ)) | OPF_IB     # F6 /0: TEST r/m8, imm8
            if mode == 8 and (fl & (OPF_F64 | OPF_DEF64)) and not (rex & 8):
                if (fl & OPF_F64) or not osz_pfx:
                    osz = 8
                    d.osz = 8
            if d.fn == NULL:
                return DECODE_UD
            d.ext = (modrm >> 3) & 7
        if mod == 3:
            rm |= (rex & 1) << 3
            d.rm = rm
        elif asz == 2:
            d.base = MODRM16_BASE[rm]
            d.index = MODRM16_INDEX[rm]
            if mod == 0 and rm == 6:
                d.base = 0xFF
                if i + 2 > avail:
                    return DECODE_MORE
                d.disp = <int16_t>rd_le(b + i, 2)
                i += 2
            elif mod == 1:
                if i + 1 > avail:
                    return DECODE_MORE
                d.disp = <signed char>b[i]
                i += 1
            elif mod == 2:
                if i + 2 > avail:
                    return DECODE_MORE
                d.disp = <int16_t>rd_le(b + i, 2)
                i += 2
            if seg < 0:
                seg = S_SS if (d.base == R_BP) else S_DS
        else:
            if rm == 4:
                if i >= avail:
                    return DECODE_MORE
                sib = b[i]
                i += 1
                ss = sib >> 6
                index = ((sib >> 3) & 7) | ((rex & 2) << 2)
                base = (sib & 7) | ((rex & 1) << 3)
                d.index = 0xFF if index == 4 else index
                d.scale = ss
                if (sib & 7) == 5 and mod == 0:
                    d.base = 0xFF
                    n = 4
                else:
                    d.base = base
                    n = 0
            elif rm == 5 and mod == 0:
                if mode == 8:
                    d.flags |= INSN_RIPREL
                d.base = 0xFF
                n = 4
            else:
                d.base = rm | ((rex & 1) << 3)
                n = 0
            if mod == 1:
                n = 1
            elif mod == 2:
                n = 4
            if i + n > avail:
                return DECODE_MORE
            if n == 1:
                d.disp = <signed char>b[i]
            elif n == 4:
                d.disp = <int32_t>rd_le(b + i, 4)
            i += n
            if seg < 0:
                seg = S_SS if (d.base == R_SP or d.base == R_BP) else S_DS
        # Byte registers without REX: 4..7 are AH CH DH BH.
        if osz == 1 and not rex:
            if reg >= 4 and reg < 8 and not (fl & OPF_SRC8):
                reg += 12
            if mod == 3 and d.rm >= 4 and d.rm < 8:
                d.rm += 12
        elif (fl & OPF_SRC8) and not rex and mod == 3 and d.rm >= 4 and d.rm < 8:
            d.rm += 12
        d.reg = reg
    else:
        # Register in the low opcode bits (B0+r, 50+r, 90+r, ...).
        d.reg = (op & 7) | ((rex & 1) << 3)
        if osz == 1 and not rex and d.reg >= 4 and d.reg < 8:
            d.reg += 12
    if seg < 0:
        seg = S_DS
    else:
        d.flags |= INSN_SEGOVR
    d.seg = seg
    # Immediates.
    if fl & OPF_MOFFS:
        if i + asz > avail:
            return DECODE_MORE
        d.disp = <int64_t>rd_le(b + i, asz)
        i += asz
    if fl & OPF_IW:
        if i + 2 > avail:
            return DECODE_MORE
        d.imm = rd_le(b + i, 2)
        i += 2
        if fl & OPF_IB:      # ENTER-style iw, ib: second immediate in ext
            if i + 1 > avail:
                return DECODE_MORE
            d.ext = b[i]
            i += 1
    elif fl & OPF_IB:
        if i + 1 > avail:
            return DECODE_MORE
        d.imm = b[i]
        if fl & OPF_SX:
            d.imm = <uint64_t><int64_t><signed char>b[i]
        i += 1
    elif fl & OPF_IZ:
        n = 2 if osz == 2 else 4
        if i + n > avail:
            return DECODE_MORE
        d.imm = rd_le(b + i, n)
        if fl & OPF_SX or osz == 8:
            d.imm = <uint64_t>sext(d.imm, n)
        i += n
    elif fl & OPF_IV:
        n = osz
        if i + n > avail:
            return DECODE_MORE
        d.imm = rd_le(b + i, n)
        i += n
    elif fl & OPF_FARPTR:
        n = 2 if osz == 2 else 4
        if i + n + 2 > avail:
            return DECODE_MORE
        d.imm = rd_le(b + i, n)
        d.disp = <int64_t>rd_le(b + i + n, 2)
        i += n + 2
    if i > MAX_INSN:
        return DECODE_GP
    # LOCK is #UD unless the instruction is one of ADD ADC AND BTC BTR BTS
    # CMPXCHG CMPXCHG8B/16B DEC INC NEG NOT OR SBB SUB XOR XADD XCHG and its
    # destination is in memory (SDM Vol. 2 "LOCK").  Instructions without
    # ModRM keep d.mod = 3 and so fail the memory test too.
    if (d.flags & INSN_LOCK) and (not (fl & OPF_LOCK) or d.mod == 3):
        return DECODE_UD
    if (fl & OPF_P66) and osz_pfx:
        d.ext |= 8
    if fl & OPF_LAZY:
        d.flags |= INSN_LAZY
    if fl & OPF_END:
        d.flags |= INSN_END
    # F3 90 (without REX.B) is PAUSE, not XCHG (SDM Vol. 2 PAUSE): chosen
    # here, once per decode, so that plain 90 keeps its handler.
    if d.fn == h_xchg_ax_r and d.rep == 0xF3 and d.reg == 0:
        d.fn = h_pause
        d.flags &= ~INSN_LAZY    # it may exit: the flags are settled first
    d.len = i
    specialize(d)
    return DECODE_OK


cdef inline uint64_t ea_offset(Cpu* c, Insn* d) noexcept nogil:
    """Effective address (the offset within the segment) of a memory operand,
    wrapped to the address size."""
    cdef uint64_t a = <uint64_t>d.disp
    if d.flags & INSN_RIPREL:
        a += c.next_rip
    else:
        if d.base != 0xFF:
            a += c.regs[d.base]
        if d.index != 0xFF:
            a += c.regs[d.index] << d.scale
    return a & SIZE_MASK[d.asz]


cdef inline int read_rm(Cpu* c, Insn* d, int size, uint64_t* v) noexcept nogil:
    if d.mod == 3:
        v[0] = get_reg(c, d.rm, size)
        return RC_OK
    return mem_read(c, d.seg, ea_offset(c, d), size, v)


cdef inline int read_rm_rmw(Cpu* c, Insn* d, int size, uint64_t* v) noexcept nogil:
    """read_rm for the destination of a read-modify-write instruction: a
    memory operand is read with write intent (mem_read_rmw)."""
    cdef uint64_t off
    cdef int rc
    if d.mod == 3:
        v[0] = get_reg(c, d.rm, size)
        return RC_OK
    off = ea_offset(c, d)
    rc = mem_read_rmw(c, d.seg, off, size, v)
    if rc == RC_OK and (d.flags & INSN_LOCK):
        lock_note(c, d.seg, off, size)          # [bus-lock detection] core/vmx/buslock.pxi
    return rc


cdef inline int write_rm(Cpu* c, Insn* d, int size, uint64_t v) noexcept nogil:
    if d.mod == 3:
        set_reg(c, d.rm, size, v)
        return RC_OK
    return mem_write(c, d.seg, ea_offset(c, d), size, v)


# ---------------------------------------------------------------------------
# The opcode maps.  Handlers live in core/insn/*.pxi.

cdef void op_set(OpInfo* t, int opc, handler_t fn, uint32_t flags, int ext=0, int feat=-1) noexcept:
    """One opcode-table entry; feat is the FEAT_<name> it needs (-1: none)."""
    t[opc].fn = fn
    t[opc].flags = flags | OPF_VALID
    t[opc].ext = ext
    t[opc].feat = <uint8_t>(feat + 1)


cdef enum:
    G_ALU_IMM = 1    # 80-83
    G_SHIFT = 2      # C0 C1 D0-D3
    G_UNARY = 3      # F6 F7
    G_INCDEC8 = 4    # FE
    G_FF = 5         # FF
    G_POP = 6        # 8F
    G_MOVIMM = 7     # C6 C7
    G_0F01 = 8       # 0F 01 (VMCALL and friends, decoded by mod/rm)
    G_BT_IMM = 9     # 0F BA (BT BTS BTR BTC r/m, imm8)
    G_0FC7 = 10      # 0F C7 (VMPTRLD VMCLEAR VMXON VMPTRST, RDRAND RDSEED: core/vmx/insn.pxi)
    G_0F00 = 11      # 0F 00 (SLDT STR LLDT LTR VERR VERW)


cdef void init_opcode_tables() noexcept:
    cdef int i, k
    memset(OP1, 0, sizeof(OP1))
    memset(OP2, 0, sizeof(OP2))
    memset(OP38, 0, sizeof(OP38))
    memset(OP2P, 0, sizeof(OP2P))
    memset(OP38P, 0, sizeof(OP38P))
    memset(OP3A, 0, sizeof(OP3A))
    memset(GRP, 0, sizeof(GRP))
    memset(GRP_FLAGS, 0, sizeof(GRP_FLAGS))
    # ALU: ADD OR ADC SBB AND SUB XOR CMP, six forms each (SDM Vol. 2 Table A-2).
    for k in range(8):
        # every ALU op but CMP (k = 7) may take LOCK with a memory destination
        lk = OPF_LOCK if k != 7 else 0
        op_set(OP1, k * 8 + 0, h_alu_rm_r, OPF_MODRM | OPF_BYTE | lk | OPF_LAZY, k)
        op_set(OP1, k * 8 + 1, h_alu_rm_r, OPF_MODRM | lk | OPF_LAZY, k)
        op_set(OP1, k * 8 + 2, h_alu_r_rm, OPF_MODRM | OPF_BYTE | OPF_LAZY, k)
        op_set(OP1, k * 8 + 3, h_alu_r_rm, OPF_MODRM | OPF_LAZY, k)
        op_set(OP1, k * 8 + 4, h_alu_acc_imm, OPF_BYTE | OPF_IB | OPF_LAZY, k)
        op_set(OP1, k * 8 + 5, h_alu_acc_imm, OPF_IZ | OPF_SX | OPF_LAZY, k)
        GRP[G_ALU_IMM][k] = h_alu_rm_imm
        GRP_FLAGS[G_ALU_IMM][k] = lk | OPF_LAZY
    op_set(OP1, 0x80, NULL, OPF_MODRM | OPF_GRP | OPF_BYTE | OPF_IB, G_ALU_IMM)
    op_set(OP1, 0x81, NULL, OPF_MODRM | OPF_GRP | OPF_IZ | OPF_SX, G_ALU_IMM)
    op_set(OP1, 0x82, NULL, OPF_MODRM | OPF_GRP | OPF_BYTE | OPF_IB | OPF_NO64, G_ALU_IMM)
    op_set(OP1, 0x83, NULL, OPF_MODRM | OPF_GRP | OPF_IB | OPF_SX, G_ALU_IMM)
    # INC/DEC r (40-4F; REX in 64-bit mode), PUSH/POP r.
    for k in range(8):
        op_set(OP1, 0x40 + k, h_inc_r, OPF_NO64 | OPF_LAZY, 0)
        op_set(OP1, 0x48 + k, h_dec_r, OPF_NO64 | OPF_LAZY, 1)
        op_set(OP1, 0x50 + k, h_push_r, OPF_DEF64 | OPF_LAZY)
        op_set(OP1, 0x58 + k, h_pop_r, OPF_DEF64 | OPF_LAZY)
        op_set(OP1, 0xB0 + k, h_mov_r_imm, OPF_BYTE | OPF_IB | OPF_LAZY)
        op_set(OP1, 0xB8 + k, h_mov_r_imm, OPF_IV | OPF_LAZY)
        op_set(OP1, 0x90 + k, h_xchg_ax_r, OPF_LAZY)
    op_set(OP1, 0x63, h_movsxd, OPF_MODRM)      # 64-bit only; ARPL elsewhere
    op_set(OP1, 0x68, h_push_imm, OPF_IZ | OPF_SX | OPF_DEF64 | OPF_LAZY)
    op_set(OP1, 0x6A, h_push_imm, OPF_IB | OPF_SX | OPF_DEF64 | OPF_LAZY)
    op_set(OP1, 0x69, h_imul_r_rm_imm, OPF_MODRM | OPF_IZ | OPF_SX | OPF_LAZY)
    op_set(OP1, 0x6B, h_imul_r_rm_imm, OPF_MODRM | OPF_IB | OPF_SX | OPF_LAZY)
    op_set(OP1, 0x6C, h_ins, OPF_BYTE)
    op_set(OP1, 0x6D, h_ins, 0)
    op_set(OP1, 0x6E, h_outs, OPF_BYTE)
    op_set(OP1, 0x6F, h_outs, 0)
    for k in range(16):
        op_set(OP1, 0x70 + k, h_jcc, OPF_IB | OPF_SX | OPF_F64 | OPF_LAZY | OPF_END, k)
        op_set(OP2, 0x80 + k, h_jcc, OPF_IZ | OPF_SX | OPF_F64 | OPF_LAZY | OPF_END, k)
    op_set(OP1, 0x84, h_test_rm_r, OPF_MODRM | OPF_BYTE | OPF_LAZY)
    op_set(OP1, 0x85, h_test_rm_r, OPF_MODRM | OPF_LAZY)
    op_set(OP1, 0x86, h_xchg_rm_r, OPF_MODRM | OPF_BYTE | OPF_LOCK | OPF_LAZY)
    op_set(OP1, 0x87, h_xchg_rm_r, OPF_MODRM | OPF_LOCK | OPF_LAZY)
    op_set(OP1, 0x88, h_mov_rm_r, OPF_MODRM | OPF_BYTE | OPF_LAZY)
    op_set(OP1, 0x89, h_mov_rm_r, OPF_MODRM | OPF_LAZY)
    op_set(OP1, 0x8A, h_mov_r_rm, OPF_MODRM | OPF_BYTE | OPF_LAZY)
    op_set(OP1, 0x8B, h_mov_r_rm, OPF_MODRM | OPF_LAZY)
    op_set(OP1, 0x8C, h_mov_rm_sreg, OPF_MODRM)
    op_set(OP1, 0x8D, h_lea, OPF_MODRM | OPF_LAZY)
    op_set(OP1, 0x8E, h_mov_sreg_rm, OPF_MODRM)
    op_set(OP1, 0x8F, NULL, OPF_MODRM | OPF_GRP | OPF_DEF64, G_POP)
    GRP[G_POP][0] = h_pop_rm
    GRP_FLAGS[G_POP][0] = OPF_LAZY
    op_set(OP1, 0x98, h_cbw, 0)
    op_set(OP1, 0x99, h_cwd, 0)
    op_set(OP1, 0x9C, h_pushf, OPF_DEF64)
    op_set(OP1, 0x9D, h_popf, OPF_DEF64)
    op_set(OP1, 0xA0, h_mov_acc_moffs, OPF_BYTE | OPF_MOFFS | OPF_LAZY)
    op_set(OP1, 0xA1, h_mov_acc_moffs, OPF_MOFFS | OPF_LAZY)
    op_set(OP1, 0xA2, h_mov_moffs_acc, OPF_BYTE | OPF_MOFFS | OPF_LAZY)
    op_set(OP1, 0xA3, h_mov_moffs_acc, OPF_MOFFS | OPF_LAZY)
    op_set(OP1, 0xA8, h_test_acc_imm, OPF_BYTE | OPF_IB | OPF_LAZY)
    op_set(OP1, 0xA9, h_test_acc_imm, OPF_IZ | OPF_SX | OPF_LAZY)
    op_set(OP1, 0xC0, NULL, OPF_MODRM | OPF_GRP | OPF_BYTE | OPF_IB, G_SHIFT)
    op_set(OP1, 0xC1, NULL, OPF_MODRM | OPF_GRP | OPF_IB, G_SHIFT)
    op_set(OP1, 0xD0, NULL, OPF_MODRM | OPF_GRP | OPF_BYTE, G_SHIFT)
    op_set(OP1, 0xD1, NULL, OPF_MODRM | OPF_GRP, G_SHIFT)
    op_set(OP1, 0xD2, NULL, OPF_MODRM | OPF_GRP | OPF_BYTE, G_SHIFT)
    op_set(OP1, 0xD3, NULL, OPF_MODRM | OPF_GRP, G_SHIFT)
    for k in (0, 1, 2, 3):
        GRP[G_SHIFT][k] = h_rotate        # ROL ROR RCL RCR
    for k in (4, 5, 6, 7):
        GRP[G_SHIFT][k] = h_shift
        GRP_FLAGS[G_SHIFT][k] = OPF_LAZY
    op_set(OP1, 0xC2, h_ret_imm, OPF_IW | OPF_F64 | OPF_LAZY | OPF_END)
    op_set(OP1, 0xC3, h_ret, OPF_F64 | OPF_LAZY | OPF_END)
    op_set(OP1, 0xC6, NULL, OPF_MODRM | OPF_GRP | OPF_BYTE | OPF_IB, G_MOVIMM)
    op_set(OP1, 0xC7, NULL, OPF_MODRM | OPF_GRP | OPF_IZ | OPF_SX, G_MOVIMM)
    GRP[G_MOVIMM][0] = h_mov_rm_imm
    GRP_FLAGS[G_MOVIMM][0] = OPF_LAZY
    op_set(OP1, 0xE4, h_in_imm, OPF_BYTE | OPF_IB)
    op_set(OP1, 0xE5, h_in_imm, OPF_IB)
    op_set(OP1, 0xE6, h_out_imm, OPF_BYTE | OPF_IB)
    op_set(OP1, 0xE7, h_out_imm, OPF_IB)
    op_set(OP1, 0xE8, h_call_rel, OPF_IZ | OPF_SX | OPF_F64 | OPF_LAZY | OPF_END)
    op_set(OP1, 0xE9, h_jmp_rel, OPF_IZ | OPF_SX | OPF_F64 | OPF_LAZY | OPF_END)
    op_set(OP1, 0xEB, h_jmp_rel, OPF_IB | OPF_SX | OPF_F64 | OPF_LAZY | OPF_END)
    for k in range(0xE0, 0xE4):        # LOOPNE LOOPE LOOP JrCXZ
        op_set(OP1, k, h_loop, OPF_IB | OPF_SX | OPF_F64 | OPF_LAZY | OPF_END)
    op_set(OP1, 0xEC, h_in_dx, OPF_BYTE)
    op_set(OP1, 0xED, h_in_dx, 0)
    op_set(OP1, 0xEE, h_out_dx, OPF_BYTE)
    op_set(OP1, 0xEF, h_out_dx, 0)
    op_set(OP1, 0xF4, h_hlt, 0)
    op_set(OP1, 0xF5, h_flagop, 0, 0)     # CMC
    op_set(OP1, 0xF8, h_flagop, 0, 1)     # CLC
    op_set(OP1, 0xF9, h_flagop, 0, 2)     # STC
    op_set(OP1, 0xFC, h_flagop, 0, 3)     # CLD
    op_set(OP1, 0xFD, h_flagop, 0, 4)     # STD
    op_set(OP1, 0xFA, h_cli, 0)
    op_set(OP1, 0xFB, h_sti, 0)
    op_set(OP1, 0xF6, NULL, OPF_MODRM | OPF_GRP | OPF_BYTE, G_UNARY)
    op_set(OP1, 0xF7, NULL, OPF_MODRM | OPF_GRP, G_UNARY)
    GRP[G_UNARY][0] = h_test_rm_imm
    GRP[G_UNARY][1] = h_test_rm_imm       # /1 is an alias of /0 on Intel CPUs
    GRP[G_UNARY][2] = h_not
    GRP[G_UNARY][3] = h_neg
    GRP[G_UNARY][4] = h_muldiv
    GRP[G_UNARY][5] = h_muldiv
    GRP[G_UNARY][6] = h_muldiv
    GRP[G_UNARY][7] = h_muldiv
    GRP_FLAGS[G_UNARY][0] = OPF_IZ | OPF_SX | OPF_LAZY   # (becomes imm8 for F6 below)
    GRP_FLAGS[G_UNARY][1] = OPF_IZ | OPF_SX | OPF_LAZY
    GRP_FLAGS[G_UNARY][2] = OPF_LOCK          # NOT
    GRP_FLAGS[G_UNARY][3] = OPF_LOCK          # NEG
    op_set(OP1, 0xFE, NULL, OPF_MODRM | OPF_GRP | OPF_BYTE, G_INCDEC8)
    GRP[G_INCDEC8][0] = h_incdec_rm
    GRP[G_INCDEC8][1] = h_incdec_rm
    GRP_FLAGS[G_INCDEC8][0] = OPF_LOCK | OPF_LAZY
    GRP_FLAGS[G_INCDEC8][1] = OPF_LOCK | OPF_LAZY
    op_set(OP1, 0xFF, NULL, OPF_MODRM | OPF_GRP, G_FF)
    GRP[G_FF][0] = h_incdec_rm
    GRP[G_FF][1] = h_incdec_rm
    GRP[G_FF][2] = h_call_rm
    GRP[G_FF][4] = h_jmp_rm
    GRP[G_FF][6] = h_push_rm
    GRP_FLAGS[G_FF][0] = OPF_LOCK | OPF_LAZY             # INC
    GRP_FLAGS[G_FF][1] = OPF_LOCK | OPF_LAZY             # DEC
    GRP_FLAGS[G_FF][2] = OPF_F64 | OPF_LAZY | OPF_END
    GRP_FLAGS[G_FF][4] = OPF_F64 | OPF_LAZY | OPF_END
    GRP_FLAGS[G_FF][6] = OPF_DEF64 | OPF_LAZY
    # Software interrupts and IRET (core/insn/interrupt.pxi).
    op_set(OP1, 0xCC, h_int, 0)
    op_set(OP1, 0xCD, h_int, OPF_IB)
    op_set(OP1, 0xCE, h_int, OPF_NO64)
    op_set(OP1, 0xCF, h_iret, 0)
    # String instructions (core/insn/string.pxi).
    op_set(OP1, 0xA4, h_string, OPF_BYTE, STR_MOVS)
    op_set(OP1, 0xA5, h_string, 0, STR_MOVS)
    op_set(OP1, 0xA6, h_string, OPF_BYTE, STR_CMPS)
    op_set(OP1, 0xA7, h_string, 0, STR_CMPS)
    op_set(OP1, 0xAA, h_string, OPF_BYTE, STR_STOS)
    op_set(OP1, 0xAB, h_string, 0, STR_STOS)
    op_set(OP1, 0xAC, h_string, OPF_BYTE, STR_LODS)
    op_set(OP1, 0xAD, h_string, 0, STR_LODS)
    op_set(OP1, 0xAE, h_string, OPF_BYTE, STR_SCAS)
    op_set(OP1, 0xAF, h_string, 0, STR_SCAS)
    # Two-byte map.
    op_set(OP2, 0x01, NULL, OPF_MODRM | OPF_GRP, G_0F01)
    # 0F 01 /0 SGDT, /1 SIDT, /2 LGDT, /3 LIDT with a memory operand; with mod = 3,
    # /0 holds VMCALL (C1), VMLAUNCH (C2), VMRESUME (C3), VMXOFF (C4).
    # With mod = 3, /1 holds MONITOR (C8) and MWAIT (C9), /2 XGETBV (D0) and
    # XSETBV (D1).
    for k in range(4):
        GRP[G_0F01][k] = h_0f01
    GRP[G_0F01][4] = h_smsw
    GRP[G_0F01][6] = h_lmsw
    GRP[G_0F01][7] = h_invlpg       # with mod = 3: SWAPGS (not modeled: #UD), RDTSCP (F9)
    # 0F 00: /0 SLDT, /1 STR, /2 LLDT, /3 LTR, /4 VERR, /5 VERW (core/insn/systab.pxi).
    op_set(OP2, 0x00, NULL, OPF_MODRM | OPF_GRP, G_0F00)
    for k in range(6):
        GRP[G_0F00][k] = h_0f00
    op_set(OP2, 0x06, h_clts, 0)
    op_set(OP2, 0x08, h_invd, 0)
    op_set(OP2, 0x09, h_wbinvd, 0)
    op_set(OP2, 0x21, h_mov_r_dr, OPF_MODRM | OPF_MODREG | OPF_F64)
    op_set(OP2, 0x23, h_mov_dr_r, OPF_MODRM | OPF_MODREG | OPF_F64)
    op_set(OP2, 0x33, h_rdpmc, 0)
    # Three-byte map 0F 38.  66 0F 38 80 INVEPT and 66 0F 38 81 INVVPID
    # belong here too (the VMX instructions).
    op_set(OP38, 0x80, h_invept_invvpid, OPF_MODRM | OPF_M66)    # INVEPT (core/vmx/insn.pxi)
    op_set(OP38, 0x81, h_invept_invvpid, OPF_MODRM | OPF_M66)    # INVVPID
    op_set(OP38, 0x82, h_invpcid, OPF_MODRM | OPF_M66 | OPF_F64)
    op_set(OP2, 0x0B, h_ud, 0)           # UD2
    # VMX instructions (core/vmx/insn.pxi): VMREAD, VMWRITE, and the 0F C7
    # group's /6 and /7 (VMPTRLD, VMCLEAR with 66, VMXON with F3, VMPTRST;
    # RDRAND and RDSEED with a register operand).
    op_set(OP2, 0x37, h_getsec, 0)      # GETSEC (core/vmx/insn.pxi)
    op_set(OP2, 0x78, h_vmread, OPF_MODRM | OPF_P66)
    op_set(OP2, 0x79, h_vmwrite, OPF_MODRM | OPF_P66)
    op_set(OP2, 0xC7, NULL, OPF_MODRM | OPF_GRP | OPF_P66, G_0FC7)
    GRP[G_0FC7][6] = h_0fc7
    GRP[G_0FC7][7] = h_0fc7
    # 0F 18-1F: prefetch hints (0F 18 /0-/3) and the reserved hint NOPs, for
    # every ModRM (SDM Vol. 2 Table A-3 and "NOP"); no operand is accessed.
    for k in range(0x18, 0x20):
        op_set(OP2, k, h_nop, OPF_MODRM | OPF_LAZY)
    op_set(OP2, 0x20, h_mov_r_cr, OPF_MODRM | OPF_MODREG | OPF_F64)
    op_set(OP2, 0x22, h_mov_cr_r, OPF_MODRM | OPF_MODREG | OPF_F64)
    op_set(OP2, 0x30, h_wrmsr, 0)
    op_set(OP2, 0x31, h_rdtsc, 0)
    op_set(OP2, 0x32, h_rdmsr, 0)
    op_set(OP2, 0xA2, h_cpuid, 0)
    op_set(OP2, 0xAF, h_imul_r_rm, OPF_MODRM | OPF_LAZY)
    op_set(OP2, 0xB6, h_movzx, OPF_MODRM | OPF_SRC8 | OPF_LAZY)
    op_set(OP2, 0xB7, h_movzx, OPF_MODRM | OPF_SRC16 | OPF_LAZY)
    op_set(OP2, 0xBE, h_movsx, OPF_MODRM | OPF_SRC8 | OPF_LAZY)
    op_set(OP2, 0xBF, h_movsx, OPF_MODRM | OPF_SRC16 | OPF_LAZY)
    # SETcc, CMOVcc (core/insn/data_xfer.pxi).
    for k in range(16):
        op_set(OP2, 0x40 + k, h_cmovcc, OPF_MODRM | OPF_LAZY, k)
        op_set(OP2, 0x90 + k, h_setcc, OPF_MODRM | OPF_BYTE | OPF_LAZY, k)
    # Stack: segment registers, PUSHA POPA, ENTER LEAVE.
    op_set(OP1, 0x06, h_push_sreg, OPF_NO64, S_ES)
    op_set(OP1, 0x07, h_pop_sreg, OPF_NO64, S_ES)
    op_set(OP1, 0x0E, h_push_sreg, OPF_NO64, S_CS)
    op_set(OP1, 0x16, h_push_sreg, OPF_NO64, S_SS)
    op_set(OP1, 0x17, h_pop_sreg, OPF_NO64, S_SS)
    op_set(OP1, 0x1E, h_push_sreg, OPF_NO64, S_DS)
    op_set(OP1, 0x1F, h_pop_sreg, OPF_NO64, S_DS)
    op_set(OP2, 0xA0, h_push_sreg, OPF_DEF64, S_FS)
    op_set(OP2, 0xA1, h_pop_sreg, OPF_DEF64, S_FS)
    op_set(OP2, 0xA8, h_push_sreg, OPF_DEF64, S_GS)
    op_set(OP2, 0xA9, h_pop_sreg, OPF_DEF64, S_GS)
    op_set(OP1, 0x60, h_pusha, OPF_NO64)
    op_set(OP1, 0x61, h_popa, OPF_NO64)
    op_set(OP1, 0xC8, h_enter, OPF_IW | OPF_IB | OPF_DEF64)
    op_set(OP1, 0xC9, h_leave, OPF_DEF64)
    # LAHF SAHF (core/insn/system.pxi).
    op_set(OP1, 0x9E, h_sahf, 0)
    op_set(OP1, 0x9F, h_lahf, 0)
    # Bit tests, bit scans, double shifts, BSWAP (core/insn/bitops.pxi); ext & 3
    # of the BT family is the operation: 0 BT, 1 BTS, 2 BTR, 3 BTC.
    op_set(OP2, 0xA3, h_bt, OPF_MODRM, 0)
    op_set(OP2, 0xAB, h_bt, OPF_MODRM | OPF_LOCK, 1)
    op_set(OP2, 0xB3, h_bt, OPF_MODRM | OPF_LOCK, 2)
    op_set(OP2, 0xBB, h_bt, OPF_MODRM | OPF_LOCK, 3)
    op_set(OP2, 0xBA, NULL, OPF_MODRM | OPF_GRP | OPF_IB, G_BT_IMM)
    for k in (4, 5, 6, 7):
        GRP[G_BT_IMM][k] = h_bt
    GRP_FLAGS[G_BT_IMM][5] = OPF_LOCK
    GRP_FLAGS[G_BT_IMM][6] = OPF_LOCK
    GRP_FLAGS[G_BT_IMM][7] = OPF_LOCK
    op_set(OP2, 0xA4, h_shxd, OPF_MODRM | OPF_IB)
    op_set(OP2, 0xA5, h_shxd, OPF_MODRM)
    op_set(OP2, 0xAC, h_shxd, OPF_MODRM | OPF_IB)
    op_set(OP2, 0xAD, h_shxd, OPF_MODRM)
    op_set(OP2, 0xBC, h_bsf_bsr, OPF_MODRM)
    op_set(OP2, 0xBD, h_bsf_bsr, OPF_MODRM)
    for k in range(8):
        op_set(OP2, 0xC8 + k, h_bswap, 0)
    # XADD, CMPXCHG (core/insn/arith.pxi).
    op_set(OP2, 0xC0, h_xadd, OPF_MODRM | OPF_BYTE | OPF_LOCK)
    op_set(OP2, 0xC1, h_xadd, OPF_MODRM | OPF_LOCK)
    op_set(OP2, 0xB0, h_cmpxchg, OPF_MODRM | OPF_BYTE | OPF_LOCK)
    op_set(OP2, 0xB1, h_cmpxchg, OPF_MODRM | OPF_LOCK)
    # Far transfers, fast system calls and the protection instructions
    # (core/insn/far.pxi, core/insn/prot.pxi).
    init_prot_tables()
    init_misc_tables()      # core/insn/misc.pxi
    init_simdint_tables()     # MMX, SSE/SSE2 packed integer, SSSE3, SSE4 (core/insn/simd_int.pxi)
    init_sse_tables()          # core/insn/sse.pxi (and fxsave.pxi)
    init_x87_tables()
