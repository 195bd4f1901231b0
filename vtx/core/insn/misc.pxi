# The remaining general-purpose instructions (SDM Vol. 2): the BCD adjustments
# DAA DAS AAA AAS AAM AAD, BOUND, XLAT, CMPXCHG8B/CMPXCHG16B, POPCNT, LZCNT,
# MOVBE, CRC32, ADCX/ADOX, RDPID, INT1 (ICEBP), UD0/UD1.  Each is gated on the
# CPUID feature that reports it (vtx/spec/cpuid.py); registered by
# init_misc_tables().
#
# Flags the SDM leaves undefined: the model takes the values Unicorn (QEMU's
# x86 translator) produces, so the differential tests compare every flag; each
# handler names its choice.  Where the host CPU (AMD) differs, the tests say so.


# --- BCD adjustments (SDM Vol. 2 "DAA", "DAS", "AAA", "AAS", "AAM", "AAD") ---
# All are #UD in 64-bit mode (OPF_NO64).

cdef int h_daa_das(Cpu* c, Insn* d) noexcept nogil:
    """27 DAA, 2F DAS: the SDM's pseudo-code.  SF ZF PF from AL; OF is
    undefined and cleared (as Unicorn does)."""
    cdef uint64_t al = c.regs[R_AX] & 0xFF
    cdef uint64_t old_al = al
    cdef uint64_t old_cf = c.rflags & F_CF
    cdef uint64_t f = 0
    if d.op == 0x27:
        if (al & 0xF) > 9 or (c.rflags & F_AF):
            al = (al + 6) & 0xFF
            f |= F_AF
        if old_al > 0x99 or old_cf:
            al = (al + 0x60) & 0xFF
            f |= F_CF
    else:
        if (al & 0xF) > 9 or (c.rflags & F_AF):
            # CF = old CF or the borrow of AL - 6
            if al < 6 or old_cf:
                f |= F_CF
            al = (al - 6) & 0xFF
            f |= F_AF
        if old_al > 0x99 or old_cf:
            al = (al - 0x60) & 0xFF
            f |= F_CF
    set_reg(c, R_AX, 1, al)
    set_status_flags(c, f | szp_flags(al, 1))
    return RC_OK


cdef int h_aaa_aas(Cpu* c, Insn* d) noexcept nogil:
    """37 AAA: AX = AX + 106H; 3F AAS: AX = AX - 6, AH = AH - 1; then AL
    keeps its low nibble (the SDM's pseudo-code for processors since the
    Intel386: the adjustment carries into AH).  AF = CF = whether it
    adjusted; OF SF ZF PF are undefined and keep their values (as Unicorn
    does)."""
    cdef uint64_t ax = c.regs[R_AX] & 0xFFFF
    cdef uint64_t f = c.rflags & ~(<uint64_t>(F_AF | F_CF))
    if (ax & 0xF) > 9 or (c.rflags & F_AF):
        if d.op == 0x37:
            ax = (ax + 0x106) & 0xFFFF
        else:
            ax = (ax - 6) & 0xFFFF
            ax = (ax - 0x100) & 0xFFFF
        f |= F_AF | F_CF
    set_reg(c, R_AX, 2, ax & 0xFF0F)
    c.rflags = f
    return RC_OK


cdef int h_aam(Cpu* c, Insn* d) noexcept nogil:
    """D4 ib AAM: AH = AL / imm8, AL = AL mod imm8; imm8 = 0 is #DE.  SF ZF
    PF from AL; OF AF CF undefined and cleared (as Unicorn does)."""
    cdef uint64_t base = d.imm & 0xFF
    cdef uint64_t al = c.regs[R_AX] & 0xFF
    if base == 0:
        return raise_exc(c, EXC_DE, 0, 0)
    set_reg(c, R_AX, 2, ((al // base) << 8) | (al % base))
    set_status_flags(c, szp_flags(al % base, 1))
    return RC_OK


cdef int h_aad(Cpu* c, Insn* d) noexcept nogil:
    """D5 ib AAD: AL = (AL + AH * imm8) & FFH, AH = 0.  SF ZF PF from AL; OF
    AF CF undefined and cleared (as Unicorn does)."""
    cdef uint64_t ax = c.regs[R_AX]
    cdef uint64_t al = ((ax & 0xFF) + ((ax >> 8) & 0xFF) * (d.imm & 0xFF)) & 0xFF
    set_reg(c, R_AX, 2, al)
    set_status_flags(c, szp_flags(al, 1))
    return RC_OK


# --- BOUND, XLAT ------------------------------------------------------------------

cdef int h_bound(Cpu* c, Insn* d) noexcept nogil:
    """62 /r BOUND r16/32, m16&16/m32&32 (not in 64-bit mode, where 62 is
    the EVEX prefix: OPF_NO64).  #BR (vector 5, a fault) when the signed
    index lies outside [lower, upper]; a register operand is #UD."""
    cdef uint64_t lo, hi, off
    cdef int64_t idx
    cdef int size = d.osz
    cdef int rc
    if d.mod == 3:
        return raise_ud(c)
    off = ea_offset(c, d)
    rc = mem_read(c, d.seg, off, size, &lo)
    if rc:
        return rc
    rc = mem_read(c, d.seg, (off + <uint64_t>size) & SIZE_MASK[d.asz], size, &hi)
    if rc:
        return rc
    idx = sext(get_reg(c, d.reg, size), size)
    if idx < sext(lo, size) or idx > sext(hi, size):
        return raise_exc(c, EXC_BR, 0, 0)
    return RC_OK


cdef int h_xlat(Cpu* c, Insn* d) noexcept nogil:
    """D7 XLAT: AL = [seg:rBX + AL] (DS unless overridden), the sum wrapped
    to the address size."""
    cdef uint64_t v
    cdef int rc = mem_read(c, d.seg, (c.regs[R_BX] + (c.regs[R_AX] & 0xFF)) & SIZE_MASK[d.asz], 1, &v)
    if rc:
        return rc
    set_reg(c, R_AX, 1, v)
    return RC_OK


# --- CMPXCHG8B, CMPXCHG16B (0F C7 /1) -----------------------------------------------

cdef int h_cmpxchg8b(Cpu* c, Insn* d) noexcept nogil:
    """0F C7 /1 m64 CMPXCHG8B (CX8), REX.W 0F C7 /1 m128 CMPXCHG16B (CX16, a
    misaligned m128 is #GP(0)).  Equal to rDX:rAX: ZF = 1 and the memory
    receives rCX:rBX; else ZF = 0, rDX:rAX receive the memory, which gets a
    write of its own value (SDM Vol. 2 CMPXCHG8B/CMPXCHG16B).  The
    destination is probed for writing before anything is read, so either
    access faults first as the locked read-modify-write does.  Other flags
    are unaffected; a register operand is #UD."""
    cdef uint64_t off, lo, hi
    cdef int rc
    cdef int half = 8 if d.osz == 8 else 4
    if d.mod == 3:
        return raise_ud(c)
    if half == 8:
        if not cpu_has(c, FEAT_CX16):
            return raise_ud(c)
    elif not cpu_has(c, FEAT_CX8):
        return raise_ud(c)
    off = ea_offset(c, d)
    if half == 8:
        if off & 15:
            return raise_gp0(c)
        # The whole 16 bytes: the same segment, page and EPT checks as a
        # write of each half (an aligned m128 lies within one page).
        rc = mem_check_write(c, d.seg, off, 8)
        if rc == RC_OK:
            rc = mem_check_write(c, d.seg, (off + 8) & SIZE_MASK[d.asz], 8)
    else:
        rc = mem_check_write(c, d.seg, off, 8)
    if rc:
        return rc
    if half == 8:
        rc = mem_read(c, d.seg, off, 8, &lo)
        if rc == RC_OK:
            rc = mem_read(c, d.seg, (off + 8) & SIZE_MASK[d.asz], 8, &hi)
    else:
        rc = mem_read(c, d.seg, off, 8, &lo)
        hi = lo >> 32
        lo &= 0xFFFFFFFFULL
    if rc:
        return rc
    if d.flags & INSN_LOCK:
        lock_note(c, d.seg, off, 2 * half)     # (an m128 is aligned: never split)
    if lo == get_reg(c, R_AX, half) and hi == get_reg(c, R_DX, half):
        lo = get_reg(c, R_BX, half)
        hi = get_reg(c, R_CX, half)
        c.rflags |= F_ZF
    else:
        set_reg(c, R_AX, half, lo)
        set_reg(c, R_DX, half, hi)
        c.rflags &= ~(<uint64_t>F_ZF)
    if half == 8:
        rc = mem_write(c, d.seg, off, 8, lo)
        if rc == RC_OK:
            rc = mem_write(c, d.seg, (off + 8) & SIZE_MASK[d.asz], 8, hi)
        return rc
    return mem_write(c, d.seg, off, 8, lo | (hi << 32))


# --- POPCNT, LZCNT -------------------------------------------------------------------

cdef extern from *:
    """
    static inline int vtx_popcount64(unsigned long long v) { return __builtin_popcountll(v); }
    """
    int vtx_popcount64(uint64_t v) nogil


cdef int h_popcnt(Cpu* c, Insn* d) noexcept nogil:
    """F3 0F B8 /r POPCNT (POPCNT): the number of 1 bits.  ZF = (source ==
    0); OF SF AF CF PF are cleared (SDM Vol. 2 POPCNT)."""
    cdef uint64_t s
    cdef int rc = read_rm(c, d, d.osz, &s)
    if rc:
        return rc
    s &= SIZE_MASK[d.osz]
    set_reg(c, d.reg, d.osz, <uint64_t>vtx_popcount64(s))
    set_status_flags(c, F_ZF if s == 0 else 0)
    return RC_OK


cdef int h_lzcnt(Cpu* c, Insn* d) noexcept nogil:
    """F3 0F BD /r LZCNT (ABM; without it the decoder falls back to BSR): the
    number of leading zero bits, the operand width for a zero source.  CF =
    (source == 0), ZF = (result == 0).  OF SF PF AF are undefined: cleared,
    as Unicorn does (the result is at most 64, so its sign is 0 anyway)."""
    cdef uint64_t s, r
    cdef int bits = d.osz * 8
    cdef int rc = read_rm(c, d, d.osz, &s)
    if rc:
        return rc
    s &= SIZE_MASK[d.osz]
    if s == 0:
        r = <uint64_t>bits
    else:
        r = <uint64_t>(clz64(s) - (64 - bits))
    set_reg(c, d.reg, d.osz, r)
    set_status_flags(c, (F_CF if s == 0 else 0) | (F_ZF if r == 0 else 0))
    return RC_OK


# --- MOVBE, CRC32, ADCX, ADOX (0F 38 F0 F1 F6) ------------------------------------

cdef inline uint64_t byteswap(uint64_t v, int size) noexcept nogil:
    if size == 8:
        return bswap64(v)
    if size == 4:
        return bswap32(<uint32_t>v)
    return ((v >> 8) & 0xFF) | ((v & 0xFF) << 8)


cdef int h_movbe(Cpu* c, Insn* d) noexcept nogil:
    """0F 38 F0 MOVBE r, m; 0F 38 F1 MOVBE m, r (MOVBE): a load or store
    with the bytes reversed; 66 makes it 16-bit.  A register operand is #UD
    (SDM Vol. 2 MOVBE)."""
    cdef uint64_t v
    cdef int rc
    if d.mod == 3:
        return raise_ud(c)
    if d.op == 0xF0:
        rc = mem_read(c, d.seg, ea_offset(c, d), d.osz, &v)
        if rc:
            return rc
        set_reg(c, d.reg, d.osz, byteswap(v, d.osz))
        return RC_OK
    return mem_write(c, d.seg, ea_offset(c, d), d.osz, byteswap(get_reg(c, d.reg, d.osz), d.osz))


cdef uint32_t CRC32C_TABLE[256]


cdef void init_crc32c_table() noexcept:
    """CRC32's polynomial 11EDC6F41H (SDM Vol. 2 CRC32), bit-reflected as the
    instruction's BIT_REFLECT steps make it: 82F63B78H, one byte at a time."""
    cdef uint32_t r
    cdef int i, k
    for i in range(256):
        r = <uint32_t>i
        for k in range(8):
            r = (r >> 1) ^ (0x82F63B78U if (r & 1) else 0)
        CRC32C_TABLE[i] = r


cdef int h_crc32(Cpu* c, Insn* d) noexcept nogil:
    """F2 0F 38 F0 CRC32 r32/r64, r/m8; F2 0F 38 F1 CRC32 r32/r64, r/m16/32/64
    (SSE4_2).  The source's bytes, lowest first, update the CRC in the low 32
    bits of the destination; no pre- or post-inversion (software does
    that).  A 64-bit destination (REX.W) gets bits 63:32 cleared.  Flags
    unaffected."""
    cdef int n = 1 if d.op == 0xF0 else d.osz
    cdef uint64_t s
    cdef uint32_t crc
    cdef int rc, i
    if n == 1:
        if d.mod == 3:
            s = get_reg(c, d.rm, 1)
            rc = RC_OK
        else:
            rc = mem_read(c, d.seg, ea_offset(c, d), 1, &s)
    else:
        rc = read_rm(c, d, n, &s)
    if rc:
        return rc
    crc = <uint32_t>c.regs[d.reg]
    for i in range(n):
        crc = (crc >> 8) ^ CRC32C_TABLE[(crc ^ <uint32_t>(s >> (8 * i))) & 0xFF]
    c.regs[d.reg] = crc            # a 32- or 64-bit destination: bits 63:32 = 0
    return RC_OK


cdef int h_adcx_adox(Cpu* c, Insn* d) noexcept nogil:
    """66 0F 38 F6 ADCX (CF in and out), F3 0F 38 F6 ADOX (OF in and out)
    (ADX): an unsigned add with carry that writes only that one flag."""
    cdef int size = 8 if d.osz == 8 else 4
    cdef uint64_t a, b, r, cin
    cdef uint64_t fbit = F_CF if d.rep == 0x66 else F_OF
    cdef int rc = read_rm(c, d, size, &b)
    if rc:
        return rc
    a = get_reg(c, d.reg, size)
    b &= SIZE_MASK[size]
    cin = 1 if (c.rflags & fbit) else 0
    r = (a + b + cin) & SIZE_MASK[size]
    set_reg(c, d.reg, size, r)
    if r < a or (cin and r == a):
        c.rflags |= fbit
    else:
        c.rflags &= ~fbit
    return RC_OK


# --- RDPID, INT1 -------------------------------------------------------------------

cdef int h_rdpid(Cpu* c, Insn* d) noexcept nogil:
    """F3 0F C7 /7 with a register operand: RDPID (RDPID) reads IA32_TSC_AUX
    into r64 in 64-bit mode, r32 elsewhere.  In VMX non-root operation it is
    #UD unless "enable RDTSCP" is 1 (SDM Vol. 3C 26.3); it never exits."""
    if not cpu_has(c, FEAT_RDPID):
        return raise_ud(c)
    if c.vmx.non_root and not (c.vmx.ctl.proc2 & PROC2_ENABLE_RDTSCP):
        return raise_ud(c)
    if c.long64:
        c.regs[d.rm] = c.tsc_aux
    else:
        set_reg(c, d.rm, 4, c.tsc_aux & 0xFFFFFFFFULL)
    return RC_OK


cdef int h_int1(Cpu* c, Insn* d) noexcept nogil:
    """F1 INT1 (ICEBP): a debug exception as a privileged software exception
    (event type 5): it returns past the instruction, its gate's DPL is not
    checked, a fault while delivering it has EXT = 1 (SDM Vol. 2 "INT n/INTO/
    INT3/INT1", Vol. 3A 6.12.1.1) and it reports no condition in DR6 (core/
    insn/debug.pxi).  In VMX non-root operation the exception bitmap's bit 1
    decides, with interruption type 5 and the instruction length."""
    c.exc_vector = EXC_DB
    c.exc_type = 5
    c.exc_has_error = 0
    c.exc_error = 0
    c.exc_len = d.len
    c.exc_dr6 = 0
    return RC_EXCEPTION


# ---------------------------------------------------------------------------------

cdef void init_misc_tables() noexcept:
    init_crc32c_table()
    op_set(OP1, 0x27, h_daa_das, OPF_NO64)
    op_set(OP1, 0x2F, h_daa_das, OPF_NO64)
    op_set(OP1, 0x37, h_aaa_aas, OPF_NO64)
    op_set(OP1, 0x3F, h_aaa_aas, OPF_NO64)
    op_set(OP1, 0xD4, h_aam, OPF_IB | OPF_NO64)
    op_set(OP1, 0xD5, h_aad, OPF_IB | OPF_NO64)
    op_set(OP1, 0x62, h_bound, OPF_MODRM | OPF_NO64)
    op_set(OP1, 0xD7, h_xlat, 0)
    op_set(OP1, 0xF1, h_int1, 0)
    # D6 (SALC on some processors) is a blank cell of the one-byte map (SDM
    # Vol. 2 Table A-2): #UD, as every unassigned opcode.
    # 0F C7 /1: CMPXCHG8B/16B (the group's handler h_0fc7 keeps /6 and /7).
    GRP[G_0FC7][1] = h_cmpxchg8b
    GRP_FLAGS[G_0FC7][1] = OPF_LOCK
    # F3 0F B8 POPCNT, F3 0F BD LZCNT (mandatory prefix; without the feature
    # F3 0F BD stays BSR and F3 0F B8 is #UD, as JMPE is not modeled).
    op_set(OP2P[PFX_F3], 0xB8, h_popcnt, OPF_MODRM, 0, FEAT_POPCNT)
    op_set(OP2P[PFX_F3], 0xBD, h_lzcnt, OPF_MODRM, 0, FEAT_ABM)
    # 0F 38 F0/F1: MOVBE without a prefix or with 66 (operand size), CRC32
    # with F2 (66 F2: a 16-bit source).
    op_set(OP38P[PFX_NONE], 0xF0, h_movbe, OPF_MODRM, 0, FEAT_MOVBE)
    op_set(OP38P[PFX_NONE], 0xF1, h_movbe, OPF_MODRM, 0, FEAT_MOVBE)
    op_set(OP38P[PFX_66], 0xF0, h_movbe, OPF_MODRM | OPF_P66KEEP, 0, FEAT_MOVBE)
    op_set(OP38P[PFX_66], 0xF1, h_movbe, OPF_MODRM | OPF_P66KEEP, 0, FEAT_MOVBE)
    op_set(OP38P[PFX_F2], 0xF0, h_crc32, OPF_MODRM | OPF_SRC8 | OPF_P66KEEP, 0, FEAT_SSE4_2)
    op_set(OP38P[PFX_F2], 0xF1, h_crc32, OPF_MODRM | OPF_P66KEEP, 0, FEAT_SSE4_2)
    op_set(OP38P[PFX_66], 0xF6, h_adcx_adox, OPF_MODRM, 0, FEAT_ADX)
    op_set(OP38P[PFX_F3], 0xF6, h_adcx_adox, OPF_MODRM, 0, FEAT_ADX)
    # UD0 (0F FF /r) and UD1 (0F B9 /r): invalid opcodes with a ModRM byte.
    op_set(OP2, 0xFF, h_ud, OPF_MODRM)
    op_set(OP2, 0xB9, h_ud, OPF_MODRM)
