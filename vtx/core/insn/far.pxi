# Far control transfers (SDM Vol. 2 JMP, CALL, RET; Vol. 3A 5.8 "Privilege
# level checking when transferring program control between code segments"):
# EA/9A ptr16:16/32, FF /5 and FF /3 m16:16/32/64, CA/CB far RET, in real
# and virtual-8086 mode, protected mode and IA-32e mode; directly to a code
# segment (conforming or not), through a call gate (16-, 32- or 64-bit: to
# more privilege with the stack switch from the TSS and the parameter copy),
# or to a TSS or task gate (a task switch, core/task.pxi).


cdef inline int seg_is_code(uint64_t desc) noexcept nogil:
    return ((desc >> 43) & 3) == 3        # S = 1 and type bit 3


cdef inline void set_accessed(Cpu* c, uint64_t desc, uint64_t addr) noexcept nogil:
    """The accessed bit of a descriptor just loaded into a segment register
    (SDM Vol. 3A 3.4.5.1); a failure to write it is ignored (the descriptor
    was readable a moment ago)."""
    if not (desc & (1ULL << 40)):
        lin_write(c, addr + 5, 1, AM_IMPLICIT, ((desc >> 40) & 0xFF) | 1)


cdef void null_outer_segments(Cpu* c, int cpl) noexcept nogil:
    """After a return to an outer privilege level: ES, DS, FS and GS that
    the new CPL may not use (data or non-conforming code with DPL < CPL)
    become null (SDM Vol. 2 RET and IRET, RETURN-TO-OUTER-PRIVILEGE-LEVEL)."""
    cdef int i
    cdef uint32_t ar
    for i in range(S_ES, S_GS + 1):
        if i == S_CS or i == S_SS:
            continue
        ar = c.seg[i].ar
        if not (ar & AR_UNUSABLE) and (ar & 0xC) != 0xC and ((ar >> 5) & 3) < <uint32_t>cpl:
            c.seg[i].sel = 0
            c.seg[i].ar = AR_UNUSABLE


cdef int check_target(Cpu* c, Seg* ncs, uint64_t* off, int width) noexcept nogil:
    """The new RIP of a far transfer: width bytes of offset; canonical for a
    64-bit code segment in IA-32e mode, within the limit otherwise; #GP(0)."""
    off[0] &= SIZE_MASK[width]
    if (c.efer & EFER_LMA) and (ncs.ar & AR_L):
        if not is_canonical(off[0]):
            return raise_gp0(c)
    elif off[0] > ncs.limit:
        return raise_gp0(c)
    return RC_OK


cdef int push_pair(Cpu* c, int size, uint64_t hi, uint64_t lo) noexcept nogil:
    """Push hi then lo (CS then the return offset) on the current stack,
    probing both slots before writing either; RSP moves only on success."""
    cdef uint64_t sm = SIZE_MASK[c.stack_size]
    cdef uint64_t sp = c.regs[R_SP]
    cdef int rc = mem_check_write(c, S_SS, (sp - <uint64_t>size) & sm, size)
    if rc:
        return rc
    rc = mem_check_write(c, S_SS, (sp - <uint64_t>(2 * size)) & sm, size)
    if rc:
        return rc
    mem_write(c, S_SS, (sp - <uint64_t>size) & sm, size, hi)
    mem_write(c, S_SS, (sp - <uint64_t>(2 * size)) & sm, size, lo)
    set_sp(c, sp - <uint64_t>(2 * size))
    return RC_OK


cdef int read_tss_stack(Cpu* c, int cpl, uint64_t* sp, uint16_t* ss, uint32_t ext) noexcept nogil:
    """The stack for privilege level cpl from the current TSS: SS:ESP of a
    32-bit TSS (ESPn at 4 + 8n), SS:SP of a 16-bit one (SPn at 2 + 4n), or
    RSPn (4 + 8n) of a 64-bit TSS in IA-32e mode.  #TS(TSS selector) when
    the TSS is too small (SDM Vol. 2 CALL, "CALL-GATE-TO-MORE-PRIVILEGE"),
    with EXT for an event external to the program."""
    cdef Seg* tr = &c.seg[S_TR]
    cdef uint64_t v
    cdef uint32_t at, last
    cdef int rc
    if c.efer & EFER_LMA:
        at = 4 + 8 * cpl
        last = at + 7
    elif tr.ar & 8:
        at = 4 + 8 * cpl
        last = at + 5
    else:
        at = 2 + 4 * cpl
        last = at + 3
    if (tr.ar & AR_UNUSABLE) or last > tr.limit:
        return raise_exc(c, EXC_TS, 1, (tr.sel & 0xFFFC) | ext)
    if c.efer & EFER_LMA:
        rc = lin_read(c, tr.base + at, 8, AM_IMPLICIT, sp)
        ss[0] = 0
        return rc
    if tr.ar & 8:
        rc = lin_read(c, tr.base + at, 4, AM_IMPLICIT, sp)
        if rc:
            return rc
        rc = lin_read(c, tr.base + at + 4, 2, AM_IMPLICIT, &v)
    else:
        rc = lin_read(c, tr.base + at, 2, AM_IMPLICIT, sp)
        if rc:
            return rc
        rc = lin_read(c, tr.base + at + 2, 2, AM_IMPLICIT, &v)
    ss[0] = <uint16_t>v
    return rc


cdef int far_real(Cpu* c, Insn* d, uint16_t sel, uint64_t off, int call) noexcept nogil:
    """Real-address and virtual-8086 mode: CS = sel, base sel * 16; the
    target must lie within the CS limit (#GP(0))."""
    cdef int rc
    off &= SIZE_MASK[d.osz]
    if off > c.seg[S_CS].limit:
        return raise_gp0(c)
    if call:
        rc = push_pair(c, d.osz, c.seg[S_CS].sel, c.next_rip & SIZE_MASK[d.osz])
        if rc:
            return rc
    c.seg[S_CS].sel = sel
    c.seg[S_CS].base = (<uint64_t>sel) << 4
    c.next_rip = off
    return RC_OK


cdef int call_gate_more_privilege(Cpu* c, Seg* ncs, int new_cpl, uint64_t target, int gsize,
                                  int nparams) noexcept nogil:
    """CALL through a call gate to a non-conforming segment of higher
    privilege (SDM Vol. 2 CALL, CALL-GATE-TO-MORE-PRIVILEGE; Vol. 3A 5.8.5):
    the stack of the new level from the TSS, checked; the caller's SS and
    (E/R)SP, then nparams parameters copied from the caller's stack (legacy
    gates only), then CS and the return offset, pushed there."""
    cdef uint64_t tss_sp, ssdesc = 0, ssaddr = 0, new_sp, old_sp, sm, lim_top
    cdef uint64_t vals[36]
    cdef uint64_t lin[36]
    cdef uint16_t new_ss
    cdef Seg nss
    cdef int n = 0, i, rc
    cdef int psize = gsize
    rc = read_tss_stack(c, new_cpl, &tss_sp, &new_ss, 0)
    if rc:
        return rc
    if gsize == 8:
        # IA-32e mode: SS becomes a null selector with RPL = the new CPL.
        if not is_canonical(tss_sp):
            return raise_exc(c, EXC_SS, 1, 0)
        nss.sel = <uint16_t>new_cpl
        nss.base = 0
        nss.limit = 0
        nss.ar = AR_UNUSABLE | (<uint32_t>new_cpl << 5)
        new_sp = tss_sp
        vals[n] = c.seg[S_SS].sel; n += 1
        vals[n] = c.regs[R_SP]; n += 1
        vals[n] = c.seg[S_CS].sel; n += 1
        vals[n] = c.next_rip; n += 1
        for i in range(n):
            lin[i] = new_sp - 8 * (i + 1)
            if not is_canonical(lin[i]):
                return raise_exc(c, EXC_SS, 1, 0)
    else:
        if (new_ss & 0xFFFC) == 0:
            return raise_exc(c, EXC_TS, 1, 0)
        rc = read_desc_ts(c, new_ss, 0, &ssdesc, &ssaddr)
        if rc:
            return rc
        if (new_ss & 3) != new_cpl or ((ssdesc >> 45) & 3) != <uint64_t>new_cpl or \
                ((ssdesc >> 41) & 0xD) != 0x9:       # S = 1, data, writable
            return raise_exc(c, EXC_TS, 1, new_ss & 0xFFFC)
        if not ((ssdesc >> 47) & 1):
            return raise_exc(c, EXC_SS, 1, new_ss & 0xFFFC)
        descriptor_to_seg(ssdesc, &nss, new_ss)
        sm = 0xFFFFFFFFULL if (nss.ar & AR_DB) else 0xFFFF
        new_sp = tss_sp & sm
        old_sp = c.regs[R_SP] & SIZE_MASK[c.stack_size]
        vals[n] = c.seg[S_SS].sel; n += 1
        vals[n] = c.regs[R_SP] & SIZE_MASK[psize]; n += 1
        for i in range(nparams - 1, -1, -1):
            rc = mem_read(c, S_SS, (old_sp + <uint64_t>(psize * i)) & SIZE_MASK[c.stack_size], psize, &vals[n])
            if rc:
                return rc
            n += 1
        vals[n] = c.seg[S_CS].sel; n += 1
        vals[n] = c.next_rip & SIZE_MASK[psize]; n += 1
        # Room for all of it on the new stack, within its limit: #SS(SS).
        lim_top = sm if (nss.ar & 0xC) == 4 else nss.limit
        for i in range(n):
            old_sp = (new_sp - <uint64_t>(psize * (i + 1))) & sm
            if old_sp + psize - 1 > lim_top or ((nss.ar & 0xC) == 4 and old_sp <= nss.limit):
                return raise_exc(c, EXC_SS, 1, new_ss & 0xFFFC)
            lin[i] = (nss.base + old_sp) & 0xFFFFFFFFULL
    rc = stack_write(c, lin, n, psize, vals)
    if rc:
        return rc
    if gsize != 8:
        set_accessed(c, ssdesc, ssaddr)
        nss.ar |= 1
    ncs.sel = (ncs.sel & 0xFFFC) | <uint16_t>new_cpl
    c.seg[S_CS] = ncs[0]
    c.seg[S_SS] = nss
    update_mode(c)
    if c.stack_size == 8:
        c.regs[R_SP] = new_sp - <uint64_t>(8 * n)
    else:
        set_sp(c, new_sp - <uint64_t>(psize * n))
    c.next_rip = target
    return RC_OK


cdef int far_transfer(Cpu* c, Insn* d, uint16_t sel, uint64_t off, int call) noexcept nogil:
    """JMP far (call = 0) and CALL far (call = 1) to sel:off, with the
    protected-mode checks of SDM Vol. 2 JMP and CALL in their order."""
    cdef uint64_t desc, hi = 0, addr, csdesc, csaddr, target, dummy
    cdef uint32_t t
    cdef int rc, dpl, rpl = sel & 3, cpl = c.cpl, gsize, new_cpl
    cdef uint16_t cs_sel, tss_sel
    cdef Seg ncs
    if not (c.cr0 & CR0_PE) or (c.rflags & F_VM):
        return far_real(c, d, sel, off, call)
    if (sel & 0xFFFC) == 0:
        return raise_gp0(c)
    rc = load_descriptor(c, sel, &desc, &hi, &addr)
    if rc:
        return rc
    t = (desc >> 40) & 0x1F
    dpl = (desc >> 45) & 3
    if t & 0x10:
        # CONFORMING-CODE-SEGMENT / NONCONFORMING-CODE-SEGMENT
        if not (t & 8):
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
        if (t & 4) and dpl > cpl:
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
        if not (t & 4) and (rpl > cpl or dpl != cpl):
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
        if not ((desc >> 47) & 1):
            return raise_exc(c, EXC_NP, 1, sel & 0xFFFC)
        if (c.efer & EFER_LMA) and ((desc >> 53) & 1) and ((desc >> 54) & 1):
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)      # L = 1 with D = 1
        descriptor_to_seg(desc, &ncs, sel)
        target = off
        rc = check_target(c, &ncs, &target, d.osz)
        if rc:
            return rc
        if call:
            rc = push_pair(c, d.osz, c.seg[S_CS].sel, c.next_rip & SIZE_MASK[d.osz])
            if rc:
                return rc
        set_accessed(c, desc, addr)
        ncs.ar |= 1
        ncs.sel = (sel & 0xFFFC) | <uint16_t>cpl
        c.seg[S_CS] = ncs
        update_mode(c)
        c.next_rip = target
        return RC_OK
    if c.efer & EFER_LMA:
        # IA-32e mode: only 64-bit call gates (type C, 16 bytes, the upper
        # half's type 0); TSSs and task gates are #GP(sel).
        if t != 0x0C or (sel | 7) + 8 > (c.seg[S_LDTR].limit if (sel & 4) else c.gdtr_limit):
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
        rc = lin_read(c, addr + 8, 8, AM_IMPLICIT, &hi)
        if rc:
            return rc
        if (hi >> 40) & 0x1F:
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
        gsize = 8
    elif t == 0x04 or t == 0x0C:
        gsize = 4 if t == 0x0C else 2
    elif t == 0x01 or t == 0x09 or t == 0x03 or t == 0x0B or t == 0x05:
        # TASK-STATE-SEGMENT / TASK-GATE: privilege, presence, then the
        # TSS checks (core/task.pxi).
        if dpl < cpl or dpl < rpl:
            return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
        if t == 0x05:
            if not ((desc >> 47) & 1):
                return raise_exc(c, EXC_NP, 1, sel & 0xFFFC)
            tss_sel = <uint16_t>(desc >> 16)
            rc = tss_descriptor(c, tss_sel, TS_CALL if call else TS_JMP, 0, &desc, &addr)
        else:
            tss_sel = sel
            if t == 0x03 or t == 0x0B:
                return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)     # busy
            rc = tss_descriptor(c, tss_sel, TS_CALL if call else TS_JMP, 0, &desc, &addr)
        if rc:
            return rc
        if c.vmx.non_root:
            return task_switch_exit(c, d, tss_sel, TS_CALL if call else TS_JMP)
        rc = task_switch(c, tss_sel, desc, addr, TS_CALL if call else TS_JMP, c.next_rip, 0, 0, 0)
        c.next_rip = c.rip
        return rc
    else:
        return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    # CALL-GATE
    if dpl < cpl or dpl < rpl:
        return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    if not ((desc >> 47) & 1):
        return raise_exc(c, EXC_NP, 1, sel & 0xFFFC)
    cs_sel = <uint16_t>(desc >> 16)
    if (cs_sel & 0xFFFC) == 0:
        return raise_gp0(c)
    rc = load_descriptor(c, cs_sel, &csdesc, &dummy, &csaddr)
    if rc:
        return rc
    dpl = (csdesc >> 45) & 3
    if not seg_is_code(csdesc) or dpl > cpl:
        return raise_exc(c, EXC_GP, 1, cs_sel & 0xFFFC)
    if not call and not ((csdesc >> 42) & 1) and dpl != cpl:
        return raise_exc(c, EXC_GP, 1, cs_sel & 0xFFFC)
    if gsize == 8 and (not ((csdesc >> 53) & 1) or ((csdesc >> 54) & 1)):
        return raise_exc(c, EXC_GP, 1, cs_sel & 0xFFFC)      # a 64-bit gate needs 64-bit code
    if not ((csdesc >> 47) & 1):
        return raise_exc(c, EXC_NP, 1, cs_sel & 0xFFFC)
    descriptor_to_seg(csdesc, &ncs, cs_sel)
    ncs.ar |= 1
    # The gate's offset: 16, 32 or 64 bits.
    target = (desc & 0xFFFF) | (((desc >> 48) & 0xFFFF) << 16)
    if gsize == 8:
        target |= (hi & 0xFFFFFFFFULL) << 32
    rc = check_target(c, &ncs, &target, gsize)
    if rc:
        return rc
    new_cpl = dpl if not ((csdesc >> 42) & 1) else cpl
    if call and new_cpl < cpl:
        rc = call_gate_more_privilege(c, &ncs, new_cpl, target, gsize, <int>((desc >> 32) & 0x1F))
        if rc == RC_OK:
            set_accessed(c, csdesc, csaddr)
        return rc
    if call:
        # CALL-GATE-TO-SAME-PRIVILEGE: CS and the return offset, gate-sized.
        rc = push_pair(c, gsize, c.seg[S_CS].sel, c.next_rip & SIZE_MASK[gsize])
        if rc:
            return rc
    set_accessed(c, csdesc, csaddr)
    ncs.sel = (cs_sel & 0xFFFC) | <uint16_t>cpl
    c.seg[S_CS] = ncs
    update_mode(c)
    c.next_rip = target
    return RC_OK


cdef int h_far_ptr(Cpu* c, Insn* d) noexcept nogil:
    """EA JMP ptr16:16/32, 9A CALL ptr16:16/32 (not in 64-bit mode): the
    offset is in imm, the selector in disp (the decoder's OPF_FARPTR)."""
    return far_transfer(c, d, <uint16_t>d.disp, d.imm, d.op == 0x9A)


cdef int h_far_mem(Cpu* c, Insn* d) noexcept nogil:
    """FF /3 CALL m16:16/32/64, FF /5 JMP m16:16/32/64: offset (operand
    size; 64 bits with REX.W) then the selector.  A register operand is #UD."""
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
    return far_transfer(c, d, <uint16_t>sel, off, d.ext == 3)


cdef int h_retf(Cpu* c, Insn* d) noexcept nogil:
    """CB RET far, CA iw RET far imm16 (SDM Vol. 2 RET): pop the offset and
    CS (operand size each: 16, 32, or 64 with REX.W), and at an outer
    privilege level (E/R)SP and SS too; imm16 is released from both stacks."""
    cdef int size = d.osz
    cdef uint64_t sm = SIZE_MASK[c.stack_size]
    cdef uint64_t sp = c.regs[R_SP] & sm
    cdef uint64_t ip, cs, nsp = 0, nss = 0, desc, hi, addr, imm = d.imm & 0xFFFF if d.op == 0xCA else 0
    cdef int rc, rpl, dpl, outer, saved_cpl
    cdef Seg ncs, oss
    rc = mem_read(c, S_SS, sp, size, &ip)
    if rc:
        return rc
    rc = mem_read(c, S_SS, (sp + <uint64_t>size) & sm, size, &cs)
    if rc:
        return rc
    cs &= 0xFFFF
    if not (c.cr0 & CR0_PE) or (c.rflags & F_VM):
        ip &= SIZE_MASK[size]
        if ip > c.seg[S_CS].limit:
            return raise_gp0(c)
        c.seg[S_CS].sel = <uint16_t>cs
        c.seg[S_CS].base = cs << 4
        set_sp(c, sp + <uint64_t>(2 * size) + imm)
        c.next_rip = ip
        return RC_OK
    rpl = <int>(cs & 3)
    if (cs & 0xFFFC) == 0:
        return raise_gp0(c)
    if rpl < c.cpl:
        return raise_exc(c, EXC_GP, 1, <uint32_t>(cs & 0xFFFC))
    rc = load_descriptor(c, <uint16_t>cs, &desc, &hi, &addr)
    if rc:
        return rc
    dpl = (desc >> 45) & 3
    if not seg_is_code(desc):
        return raise_exc(c, EXC_GP, 1, <uint32_t>(cs & 0xFFFC))
    if ((desc >> 42) & 1) and dpl > rpl:
        return raise_exc(c, EXC_GP, 1, <uint32_t>(cs & 0xFFFC))
    if not ((desc >> 42) & 1) and dpl != rpl:
        return raise_exc(c, EXC_GP, 1, <uint32_t>(cs & 0xFFFC))
    if not ((desc >> 47) & 1):
        return raise_exc(c, EXC_NP, 1, <uint32_t>(cs & 0xFFFC))
    if (c.efer & EFER_LMA) and ((desc >> 53) & 1) and ((desc >> 54) & 1):
        return raise_exc(c, EXC_GP, 1, <uint32_t>(cs & 0xFFFC))
    descriptor_to_seg(desc, &ncs, <uint16_t>cs)
    ncs.ar |= 1
    outer = rpl > c.cpl
    if outer:
        rc = mem_read(c, S_SS, (sp + <uint64_t>(2 * size) + imm) & sm, size, &nsp)
        if rc:
            return rc
        rc = mem_read(c, S_SS, (sp + <uint64_t>(3 * size) + imm) & sm, size, &nss)
        if rc:
            return rc
        nss &= 0xFFFF
    rc = check_target(c, &ncs, &ip, size)
    if rc:
        return rc
    if outer:
        oss = c.seg[S_SS]
        if (nss & 0xFFFC) == 0 and c.long64 and (ncs.ar & AR_L) and rpl < 3:
            # 64-bit mode may return to 64-bit code at CPL 1 or 2 with a null SS.
            c.seg[S_SS].sel = <uint16_t>nss
            c.seg[S_SS].base = 0
            c.seg[S_SS].limit = 0
            c.seg[S_SS].ar = AR_UNUSABLE | (<uint32_t>rpl << 5)
        else:
            if (nss & 0xFFFC) == 0:
                return raise_gp0(c)
            if (nss & 3) != <uint64_t>rpl:
                return raise_exc(c, EXC_GP, 1, <uint32_t>(nss & 0xFFFC))
            # MOV SS's checks at the new privilege level: #GP(SS) for the
            # wrong type or DPL, #SS(SS) when not present.
            saved_cpl = c.cpl
            c.cpl = rpl
            rc = load_seg(c, S_SS, <uint16_t>nss)
            c.cpl = saved_cpl
            if rc:
                c.seg[S_SS] = oss
                update_mode(c)
                return rc
        set_accessed(c, desc, addr)
        ncs.sel = <uint16_t>cs
        c.seg[S_CS] = ncs
        update_mode(c)
        if c.stack_size == 8:
            c.regs[R_SP] = nsp + imm
        else:
            set_sp(c, nsp + imm)
        null_outer_segments(c, rpl)
    else:
        set_accessed(c, desc, addr)
        ncs.sel = <uint16_t>cs
        c.seg[S_CS] = ncs
        update_mode(c)
        set_sp(c, sp + <uint64_t>(2 * size) + imm)
    c.next_rip = ip
    return RC_OK
