# Fast system calls and the smaller protection instructions: SYSCALL/SYSRET
# (0F 05/0F 07), SYSENTER/SYSEXIT (0F 34/0F 35), SWAPGS (0F 01 F8),
# LDS/LES/LSS/LFS/LGS (C5, C4, 0F B2, 0F B4, 0F B5), LAR/LSL (0F 02/0F 03)
# and ARPL (63 outside 64-bit mode), each per its SDM Vol. 2 page; and
# init_prot_tables(), which registers them with the far transfers of
# core/insn/far.pxi.


cdef inline void flat_seg(Seg* s, uint16_t sel, uint32_t ar) noexcept nogil:
    """A flat segment as SYSCALL, SYSRET, SYSENTER and SYSEXIT load it:
    base 0, limit 4 GiB, the given access rights (they do not read the
    descriptor table)."""
    s.sel = sel
    s.base = 0
    s.limit = 0xFFFFFFFFU
    s.ar = ar


cdef int h_syscall(Cpu* c, Insn* d) noexcept nogil:
    """0F 05 SYSCALL (SDM Vol. 2 SYSCALL): only in 64-bit mode on Intel
    processors, with EFER.SCE (else #UD).  RCX = the next RIP, R11 =
    RFLAGS; RIP = IA32_LSTAR; RFLAGS &= ~IA32_FMASK (bits 31:0); CS =
    STAR[47:32] & FFFCH (64-bit code, DPL 0), SS = that + 8 (data, DPL 0)."""
    cdef uint16_t sel = <uint16_t>((c.star >> 32) & 0xFFFC)
    if not c.long64 or not (c.efer & EFER_SCE):
        return raise_ud(c)
    c.regs[R_CX] = c.next_rip
    c.regs[11] = c.rflags & ~(<uint64_t>F_RF)
    c.rflags = (c.rflags & ~(c.fmask & 0xFFFFFFFFULL) & ~(<uint64_t>F_RF)) | F_FIXED1
    flat_seg(&c.seg[S_CS], sel, 0xA09B)                          # L, G, P, code XRA
    flat_seg(&c.seg[S_SS], <uint16_t>((sel + 8) & 0xFFFF), 0xC093)   # B, G, P, data RWA
    update_mode(c)
    c.next_rip = c.lstar
    return RC_OK


cdef int h_sysret(Cpu* c, Insn* d) noexcept nogil:
    """0F 07 SYSRET (SDM Vol. 2 SYSRET): #UD outside 64-bit mode or without
    EFER.SCE, #GP(0) at CPL > 0; with REX.W to 64-bit code (RIP = RCX,
    which must be canonical: #GP(0) at CPL 0, as Intel processors raise it),
    else to compatibility mode (EIP = ECX).  RFLAGS = R11 (reserved bits
    cleared, bit 1 set, RF and VM cleared); CS = STAR[63:48] (+ 16 for
    64-bit), SS = STAR[63:48] + 8, both with RPL 3, DPL 3."""
    cdef uint16_t base = <uint16_t>(c.star >> 48)
    cdef uint64_t rip
    if not c.long64 or not (c.efer & EFER_SCE):
        return raise_ud(c)
    if c.cpl != 0:
        return raise_gp0(c)
    if d.osz == 8:
        rip = c.regs[R_CX]
        if not is_canonical(rip):
            return raise_gp0(c)
        flat_seg(&c.seg[S_CS], <uint16_t>((base + 16) | 3), 0xA0FB)
    else:
        rip = c.regs[R_CX] & 0xFFFFFFFFULL
        flat_seg(&c.seg[S_CS], <uint16_t>(base | 3), 0xC0FB)
    if (c.regs[11] & F_IF) and not (c.rflags & F_IF):
        events_unmasked(c)
    c.rflags = (c.regs[11] & 0x3C7FD7ULL) | F_FIXED1
    flat_seg(&c.seg[S_SS], <uint16_t>((base + 8) | 3), 0xC0F3)
    update_mode(c)
    c.next_rip = rip
    return RC_OK


cdef int h_sysenter(Cpu* c, Insn* d) noexcept nogil:
    """0F 34 SYSENTER (SDM Vol. 2 SYSENTER): #GP(0) in real-address mode or
    with IA32_SYSENTER_CS[15:2] = 0.  VM, IF and RF are cleared; CS =
    SYSENTER_CS & FFFCH (64-bit code in IA-32e mode, else 32-bit), SS = CS
    + 8, both DPL 0; (E/R)SP and (E/R)IP from IA32_SYSENTER_ESP/EIP (32
    bits outside IA-32e mode)."""
    cdef uint16_t sel = <uint16_t>(c.sysenter_cs & 0xFFFC)
    if not (c.cr0 & CR0_PE) or sel == 0:
        return raise_gp0(c)
    c.rflags &= ~(<uint64_t>(F_VM | F_IF | F_RF))
    if c.efer & EFER_LMA:
        flat_seg(&c.seg[S_CS], sel, 0xA09B)
        c.regs[R_SP] = c.sysenter_esp
        c.next_rip = c.sysenter_eip
    else:
        flat_seg(&c.seg[S_CS], sel, 0xC09B)
        c.regs[R_SP] = c.sysenter_esp & 0xFFFFFFFFULL
        c.next_rip = c.sysenter_eip & 0xFFFFFFFFULL
    flat_seg(&c.seg[S_SS], <uint16_t>(sel + 8), 0xC093)
    update_mode(c)
    return RC_OK


cdef int h_sysexit(Cpu* c, Insn* d) noexcept nogil:
    """0F 35 SYSEXIT (SDM Vol. 2 SYSEXIT): #GP(0) in real-address mode,
    with IA32_SYSENTER_CS[15:2] = 0 or at CPL > 0.  With REX.W to 64-bit
    code: RSP = RCX, RIP = RDX (both canonical, else #GP(0)), CS =
    SYSENTER_CS + 32, SS = + 40; otherwise to 32-bit code: ESP = ECX, EIP =
    EDX, CS = + 16, SS = + 24; RPL and DPL 3."""
    cdef uint16_t base = <uint16_t>c.sysenter_cs
    cdef uint64_t rsp, rip
    if not (c.cr0 & CR0_PE) or (base & 0xFFFC) == 0 or c.cpl != 0:
        return raise_gp0(c)
    if d.osz == 8:
        rsp = c.regs[R_CX]
        rip = c.regs[R_DX]
        if not is_canonical(rsp) or not is_canonical(rip):
            return raise_gp0(c)
        flat_seg(&c.seg[S_CS], <uint16_t>((base + 32) | 3), 0xA0FB)
        flat_seg(&c.seg[S_SS], <uint16_t>((base + 40) | 3), 0xC0F3)
    else:
        rsp = c.regs[R_CX] & 0xFFFFFFFFULL
        rip = c.regs[R_DX] & 0xFFFFFFFFULL
        flat_seg(&c.seg[S_CS], <uint16_t>((base + 16) | 3), 0xC0FB)
        flat_seg(&c.seg[S_SS], <uint16_t>((base + 24) | 3), 0xC0F3)
    update_mode(c)
    c.regs[R_SP] = rsp
    c.next_rip = rip
    return RC_OK


cdef int h_swapgs(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 F8 SWAPGS (SDM Vol. 2 SWAPGS): #UD outside 64-bit mode, #GP(0)
    at CPL > 0; exchanges GS.base with IA32_KERNEL_GS_BASE."""
    cdef uint64_t t
    if not c.long64:
        return raise_ud(c)
    if c.cpl != 0:
        return raise_gp0(c)
    t = c.seg[S_GS].base
    c.seg[S_GS].base = c.kernel_gs_base
    c.kernel_gs_base = t
    return RC_OK


cdef int h_0f01_7(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 /7: INVLPG with a memory operand; with mod = 3, F8 SWAPGS, F9
    RDTSCP (both in h_invlpg's dispatch before), the rest #UD."""
    if d.mod == 3 and (d.rm & 7) == 0:
        return h_swapgs(c, d)
    return h_invlpg(c, d)


cdef int h_load_far_ptr(Cpu* c, Insn* d) noexcept nogil:
    """C5 LDS, C4 LES (not in 64-bit mode), 0F B2 LSS, 0F B4 LFS, 0F B5 LGS
    (SDM Vol. 2 LDS/LES/LFS/LGS/LSS): a far pointer m16:16/32/64 (offset of
    the operand size, then the selector) into Sreg:r.  A register operand is
    #UD.  The segment is loaded as MOV Sreg loads it, then the register; a
    fault leaves both unchanged.  (LSS does not block interrupts for the next
    instruction: only MOV SS and POP SS do.)"""
    cdef uint64_t off, sel, ea
    cdef int rc
    if d.mod == 3:
        return raise_ud(c)
    ea = ea_offset(c, d)
    rc = mem_read(c, d.seg, ea, d.osz, &off)
    if rc:
        return rc
    rc = mem_read(c, d.seg, (ea + d.osz) & SIZE_MASK[d.asz], 2, &sel)
    if rc:
        return rc
    rc = load_seg(c, d.ext, <uint16_t>sel)
    if rc:
        return rc
    set_reg(c, d.reg, d.osz, off)
    return RC_OK


cdef int h_lar_lsl(Cpu* c, Insn* d) noexcept nogil:
    """0F 02 LAR, 0F 03 LSL r, r/m16 (SDM Vol. 2 LAR, LSL): #UD in
    real-address and virtual-8086 mode.  ZF = 1 and the destination written
    when the selector names, within its table, a descriptor of a type the
    instruction accepts that is visible at CPL and RPL (conforming code
    segments are always visible); otherwise ZF = 0 and the destination
    unchanged.  LAR stores the second doubleword of the descriptor masked
    with 00F0FF00H (FF00H for a 16-bit operand; bits 19:16, which the SDM
    leaves undefined, as 0); LSL the byte-granular limit.  System types:
    LAR 1-5, 9, B, C; LSL 1-3, 9, B; in IA-32e mode LAR 2, 9, B, C and LSL
    2, 9, B."""
    cdef uint64_t v, desc, hi, addr, res
    cdef uint32_t t, limit
    cdef uint16_t sel
    cdef int ok = 0, dpl, rc
    cdef int lar = d.op == 0x02
    if not (c.cr0 & CR0_PE) or (c.rflags & F_VM):
        return raise_ud(c)
    rc = read_rm(c, d, 2, &v)
    if rc:
        return rc
    sel = <uint16_t>v
    if (sel & 0xFFFC) != 0:
        if sel & 4:
            ok = not (c.seg[S_LDTR].ar & AR_UNUSABLE) and (sel | 7) <= c.seg[S_LDTR].limit
        else:
            ok = (sel | 7) <= c.gdtr_limit
    if ok:
        rc = load_descriptor(c, sel, &desc, &hi, &addr)
        if rc:
            return rc
        t = (desc >> 40) & 0x1F
        dpl = (desc >> 45) & 3
        if not (t & 0x10):
            if c.efer & EFER_LMA:
                ok = t == 2 or t == 9 or t == 0xB or (lar and t == 0xC)
            elif lar:
                ok = (t >= 1 and t <= 5) or t == 9 or t == 0xB or t == 0xC
            else:
                ok = (t >= 1 and t <= 3) or t == 9 or t == 0xB
        if ok and (t & 0x1C) != 0x1C and (dpl < c.cpl or dpl < (sel & 3)):
            ok = 0
    if ok:
        if lar:
            res = (desc >> 32) & (0xFF00 if d.osz == 2 else 0x00F0FF00)
        else:
            limit = <uint32_t>((desc & 0xFFFF) | ((desc >> 32) & 0xF0000))
            if (desc >> 55) & 1:
                limit = (limit << 12) | 0xFFF
            res = limit
        set_reg(c, d.reg, d.osz, res)
    c.rflags = (c.rflags & ~(<uint64_t>F_ZF)) | (F_ZF if ok else 0)
    return RC_OK


cdef int h_arpl_movsxd(Cpu* c, Insn* d) noexcept nogil:
    """63: MOVSXD in 64-bit mode; elsewhere ARPL r/m16, r16 (SDM Vol. 2
    ARPL): #UD in real-address and virtual-8086 mode; if the destination's
    RPL is below the source's, raise it and set ZF, else clear ZF."""
    cdef uint64_t dst, src
    cdef int rc
    if c.long64:
        return h_movsxd(c, d)
    if not (c.cr0 & CR0_PE) or (c.rflags & F_VM):
        return raise_ud(c)
    rc = read_rm_rmw(c, d, 2, &dst)
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


cdef void init_prot_tables() noexcept:
    """Far transfers (core/insn/far.pxi) and the instructions above, in the
    maps of core/decode.pxi."""
    op_set(OP1, 0xEA, h_far_ptr, OPF_FARPTR | OPF_NO64)
    op_set(OP1, 0x9A, h_far_ptr, OPF_FARPTR | OPF_NO64)
    op_set(OP1, 0xCA, h_retf, OPF_IW)
    op_set(OP1, 0xCB, h_retf, 0)
    GRP[G_FF][3] = h_far_mem
    GRP[G_FF][5] = h_far_mem
    op_set(OP1, 0x63, h_arpl_movsxd, OPF_MODRM)
    op_set(OP1, 0xC4, h_load_far_ptr, OPF_MODRM | OPF_NO64, S_ES)
    op_set(OP1, 0xC5, h_load_far_ptr, OPF_MODRM | OPF_NO64, S_DS)
    op_set(OP2, 0xB2, h_load_far_ptr, OPF_MODRM, S_SS)
    op_set(OP2, 0xB4, h_load_far_ptr, OPF_MODRM, S_FS)
    op_set(OP2, 0xB5, h_load_far_ptr, OPF_MODRM, S_GS)
    op_set(OP2, 0x02, h_lar_lsl, OPF_MODRM | OPF_SRC16)
    op_set(OP2, 0x03, h_lar_lsl, OPF_MODRM | OPF_SRC16)
    op_set(OP2, 0x05, h_syscall, 0, 0, FEAT_SYSCALL)
    op_set(OP2, 0x07, h_sysret, 0, 0, FEAT_SYSCALL)
    op_set(OP2, 0x34, h_sysenter, 0, 0, FEAT_SEP)
    op_set(OP2, 0x35, h_sysexit, 0, 0, FEAT_SEP)
    GRP[G_0F01][7] = h_0f01_7
