# The 0F 00 group: SLDT, STR, LLDT, LTR, VERR, VERW (SDM Vol. 2; LDT and
# TSS descriptors, SDM Vol. 3A 3.5, 7.2; in IA-32e mode they are 16 bytes,
# 3.5.2).  SLDT, STR, LLDT and LTR exit under "descriptor-table exiting"
# (SDM 26.1.3) after the #UD and privilege checks and before any memory
# access; the exit is staged by the intercept module (ldtr_tr_exit).


cdef int read_system_descriptor(Cpu* c, uint16_t sel, uint64_t* lo, uint64_t* hi,
                                uint64_t* addr) noexcept nogil:
    """The LDT or TSS descriptor that sel names in the GDT: #GP(sel) if sel
    points into the LDT or past the GDT limit (16 bytes in IA-32e mode).
    hi is the upper half of a 16-byte descriptor, 0 outside IA-32e mode."""
    cdef uint64_t size = 16 if (c.efer & EFER_LMA) else 8
    cdef int rc
    if (sel & 4) or (sel & 0xFFF8) + size - 1 > c.gdtr_limit:
        return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    addr[0] = c.gdtr_base + (sel & 0xFFF8)
    rc = lin_read(c, addr[0], 8, AM_IMPLICIT, lo)
    if rc:
        return rc
    hi[0] = 0
    if size == 16:
        rc = lin_read(c, addr[0] + 8, 8, AM_IMPLICIT, hi)
        if rc:
            return rc
    return RC_OK


cdef int load_system_segment(Cpu* c, int sr, uint16_t sel) noexcept nogil:
    """LLDT (sr = S_LDTR) and LTR (S_TR) after their privilege checks (SDM
    Vol. 2 LLDT, LTR): the descriptor must be an LDT (type 2), or an
    available TSS (type 9, or 1 outside IA-32e mode), else #GP(sel); not
    present: #NP(sel); in IA-32e mode the upper half's type field must be 0
    and the base canonical, else #GP(sel).  LTR marks the descriptor busy in
    the GDT."""
    cdef uint64_t lo, hi, addr, base
    cdef uint32_t t
    cdef int rc
    cdef Seg* s = &c.seg[sr]
    if (sel & 0xFFFC) == 0:
        if sr == S_TR:
            return raise_gp0(c)
        # A null selector leaves LDTR unusable; a later LDT reference faults.
        s.sel = sel
        s.ar = AR_UNUSABLE
        return RC_OK
    rc = read_system_descriptor(c, sel, &lo, &hi, &addr)
    if rc:
        return rc
    t = (lo >> 40) & 0x1F          # S and type
    if sr == S_LDTR:
        if t != 2:
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    elif not (t == 9 or (t == 1 and not (c.efer & EFER_LMA))):
        return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    if not ((lo >> 47) & 1):
        return raise_exc(c, EXC_NP, 1, sel & 0xFFFC)
    base = 0
    if c.efer & EFER_LMA:
        if (hi >> 40) & 0x1F:
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
        base = (hi & 0xFFFFFFFFULL) << 32
        if not is_canonical(base | ((lo >> 16) & 0xFFFFFF) | (((lo >> 56) & 0xFF) << 24)):
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    if sr == S_TR:
        # Busy: type 9 -> B, 1 -> 3 (bit 1 of the type, byte 5 of the descriptor).
        rc = lin_write(c, addr + 5, 1, AM_IMPLICIT, ((lo >> 40) & 0xFF) | 2)
        if rc:
            return rc
        lo |= 2ULL << 40
    descriptor_to_seg(lo, s, sel)
    s.base |= base
    return RC_OK


cdef int verify_segment(Cpu* c, uint16_t sel, int write) noexcept nogil:
    """VERR (write = 0) / VERW: ZF = 1 if the segment sel names is readable
    (writable) at the CPL and RPL, else ZF = 0 (SDM Vol. 2 VERR/VERW).  A
    null selector, one past its table's limit, or a system descriptor gives
    ZF = 0; so does a fault-free failure of the privilege checks (conforming
    code segments skip them for VERR)."""
    cdef uint64_t desc, hi, addr
    cdef uint32_t t
    cdef int dpl, ok = 0
    cdef int rc
    cdef Seg* table
    if (sel & 0xFFFC) != 0:
        if sel & 4:
            table = &c.seg[S_LDTR]
            ok = not (table.ar & AR_UNUSABLE) and (sel | 7) <= table.limit
        else:
            ok = (sel | 7) <= c.gdtr_limit
        if ok:
            rc = load_descriptor(c, sel, &desc, &hi, &addr)
            if rc:
                return rc
            t = (desc >> 40) & 0x1F
            dpl = (desc >> 45) & 3
            if not (t & 0x10):
                ok = 0                                  # system descriptor
            elif write:
                ok = (t & 0xA) == 2                     # writable data
            else:
                ok = not (t & 8) or (t & 2)             # data, or readable code
            if ok and not ((t & 0xC) == 0xC and not write):    # not conforming code
                ok = dpl >= c.cpl and dpl >= (sel & 3)
    c.rflags = (c.rflags & ~(<uint64_t>F_ZF)) | (F_ZF if ok else 0)
    return RC_OK


cdef int h_0f00(Cpu* c, Insn* d) noexcept nogil:
    """0F 00 /0 SLDT, /1 STR, /2 LLDT, /3 LTR, /4 VERR, /5 VERW.  All are #UD
    in real-address and virtual-8086 mode.  SLDT and STR store the selector:
    16 bits to memory, zero-extended to the operand size in a register."""
    cdef uint64_t v
    cdef int rc
    cdef int op = d.ext
    if not (c.cr0 & CR0_PE) or (c.rflags & F_VM):
        return raise_ud(c)
    if op <= 1:
        # SLDT, STR: any CPL, unless CR4.UMIP (#GP(0) at CPL > 0, before the
        # VM exit: SDM Vol. 3A 2.5, Vol. 3C 26.1.1).
        if umip_denied(c):
            return raise_gp0(c)
        if c.vmx.non_root and (c.vmx.ctl.proc2 & PROC2_DESCRIPTOR_TABLE_EXITING):
            return ldtr_tr_exit(c, d, II_SLDT if op == 0 else II_STR)
        v = c.seg[S_LDTR if op == 0 else S_TR].sel
        if d.mod == 3:
            set_reg(c, d.rm, d.osz, v)
            return RC_OK
        return mem_write(c, d.seg, ea_offset(c, d), 2, v)
    if op <= 3:
        if c.cpl != 0:
            return raise_gp0(c)
        if c.vmx.non_root and (c.vmx.ctl.proc2 & PROC2_DESCRIPTOR_TABLE_EXITING):
            return ldtr_tr_exit(c, d, II_LLDT if op == 2 else II_LTR)
        rc = read_rm(c, d, 2, &v)
        if rc:
            return rc
        return load_system_segment(c, S_LDTR if op == 2 else S_TR, <uint16_t>v)
    rc = read_rm(c, d, 2, &v)
    if rc:
        return rc
    return verify_segment(c, <uint16_t>v, op == 5)
