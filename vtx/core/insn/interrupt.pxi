# Software interrupts and the return from an interrupt handler: INT3, INT n,
# INTO and IRET (SDM Vol. 2 "INT n/INTO/INT3/INT1", "IRET/IRETD/IRETQ").
# Delivery itself is core/exceptions.pxi; task switches core/task.pxi.


cdef int h_int(Cpu* c, Insn* d) noexcept nogil:
    """CC INT3 and CE INTO raise software exceptions (#BP, #OF: type 6, the
    exception bitmap applies); CD ib INT n a software interrupt (type 4)."""
    if d.op == 0xCC:
        c.exc_vector = EXC_BP
        c.exc_type = 6
    elif d.op == 0xCE:
        if not (c.rflags & F_OF):
            return RC_OK
        c.exc_vector = EXC_OF
        c.exc_type = 6
    else:
        if (c.rflags & F_VM) and ((c.rflags >> 12) & 3) < 3:
            return raise_gp0(c)
        c.exc_vector = <int>(d.imm & 0xFF)
        c.exc_type = 4
    c.exc_has_error = 0
    c.exc_error = 0
    c.exc_len = d.len
    return RC_EXCEPTION


cdef int load_code_segment(Cpu* c, uint16_t sel, int rpl, Seg* out) noexcept nogil:
    """The CS checks of a return to privilege level rpl (SDM Vol. 2 IRET)."""
    cdef uint64_t desc, hi, addr
    cdef int rc, dpl
    if (sel & 0xFFFC) == 0:
        return raise_gp0(c)
    rc = load_descriptor(c, sel, &desc, &hi, &addr)
    if rc:
        return rc
    dpl = (desc >> 45) & 3
    if ((desc >> 43) & 3) != 3:                     # not a code segment
        return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    if ((desc >> 42) & 1) and dpl > rpl:            # conforming
        return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    if not ((desc >> 42) & 1) and dpl != rpl:       # non-conforming
        return raise_exc(c, EXC_GP, 1, sel & 0xFFFC)
    if not ((desc >> 47) & 1):
        return raise_exc(c, EXC_NP, 1, sel & 0xFFFC)
    descriptor_to_seg(desc, out, sel)
    out.ar |= 1
    return RC_OK


cdef int h_iret(Cpu* c, Insn* d) noexcept nogil:
    """IRET ends blocking by NMI, even when it faults (SDM Vol. 3A 6.7.1).
    In VMX non-root operation with "NMI exiting" the blocking of real NMIs
    is the host's and IRET leaves it; with "virtual NMIs" too, bit 3 is
    virtual-NMI blocking and IRET removes it (SDM Vol. 3C 26.3, "IRET").  A
    fault, an EPT violation, a full page-modification log or an SPP-related
    event on an IRET that unblocked reports it: bit 12 of the VM-exit
    interruption information or of the exit qualification (SDM 28.2.1,
    28.2.2)."""
    cdef int unblocked = 0
    cdef int rc
    cdef uint64_t flags_before = c.rflags
    if (c.interruptibility & 8) and not (c.vmx.non_root and (c.vmx.ctl.pin & PIN_NMI_EXITING)
                                         and not (c.vmx.ctl.pin & PIN_VIRTUAL_NMIS)):
        c.interruptibility &= ~(<uint32_t>8)
        unblocked = 1
    rc = iret(c, d)
    if unblocked or (rc == RC_OK and (c.rflags & F_IF) and not (flags_before & F_IF)):
        # [events] A held NMI or a masked interrupt may be taken now (the
        # NMI even if IRET faulted: it unblocked NMIs all the same).
        events_unmasked(c)
    if unblocked and c.vmx.non_root:
        if rc == RC_EXCEPTION:
            c.exc_iret_nmi = 1
        elif rc == RC_VMEXIT and (c.vmx.x_reason == EXIT_REASON_EPT_VIOLATION or
                                  c.vmx.x_reason == EXIT_REASON_PAGE_MODIFICATION_LOG_FULL or
                                  c.vmx.x_reason == EXIT_REASON_SPP_RELATED_EVENT):
            c.vmx.x_qual |= 1 << 12
    return rc


cdef int iret(Cpu* c, Insn* d) noexcept nogil:
    """IRET in real mode, in protected and IA-32e mode to the same or an
    outer privilege level, from CPL 0 to virtual-8086 mode, and with NT = 1
    the return from a nested task (core/task.pxi)."""
    cdef int size = d.osz
    cdef uint64_t sp = c.regs[R_SP] & SIZE_MASK[c.stack_size]
    cdef uint64_t ip, cs, fl, nsp = 0, nss = 0, mask, v, tdesc, taddr
    cdef int rc, rpl, outer, i
    cdef uint64_t vals[5]
    cdef Seg ncs, nseg
    cdef int iopl = (c.rflags >> 12) & 3
    if (c.rflags & F_VM) and iopl < 3:
        return raise_gp0(c)
    if (c.cr0 & CR0_PE) and (c.rflags & F_NT):
        # A return from a nested task to the TSS selector in the previous-
        # task link (bytes 1:0 of the current TSS): a task switch (SDM Vol. 2
        # IRET, TASK-RETURN; core/task.pxi) after the checks on that TSS
        # descriptor (busy, present, large enough); in VMX non-root operation
        # those checks come first, then a VM exit, reason 9 with source 1
        # (IRET) and that selector (SDM Vol. 3C 26.4.2, Table 28-2).  In
        # IA-32e mode IRET with NT is #GP(0).
        if c.efer & EFER_LMA:
            return raise_gp0(c)
        rc = lin_read(c, c.seg[S_TR].base, 2, AM_IMPLICIT, &v)
        if rc:
            return rc
        rc = tss_descriptor(c, <uint16_t>v, TS_IRET, 0, &tdesc, &taddr)
        if rc:
            return rc
        if c.vmx.non_root:
            return task_switch_exit(c, d, <uint16_t>v, TS_IRET)
        rc = task_switch(c, <uint16_t>v, tdesc, taddr, TS_IRET, c.next_rip, 0, 0, 0)
        c.next_rip = c.rip
        return rc
    # Pop the frame (RIP, CS, RFLAGS, and RSP, SS where they are there).
    for i in range(3):
        rc = mem_read(c, S_SS, (sp + size * i) & SIZE_MASK[c.stack_size], size, &vals[i])
        if rc:
            return rc
    ip = vals[0]
    cs = vals[1] & 0xFFFF
    fl = vals[2]
    if not (c.cr0 & CR0_PE) or (c.rflags & F_VM):
        # Real-address mode, and virtual-8086 mode with IOPL 3 (checked
        # above), where IRET leaves IOPL and VM alone (SDM Vol. 2 IRET).
        if ip > c.seg[S_CS].limit:
            return raise_gp0(c)
        c.seg[S_CS].sel = <uint16_t>cs
        c.seg[S_CS].base = cs << 4
        mask = FLAGS_WRITABLE_ALWAYS | F_IF
        if not (c.rflags & F_VM):
            mask |= F_IOPL
        if size == 2:
            mask &= 0xFFFF
        c.rflags = (c.rflags & ~mask) | (fl & mask) | F_FIXED1
        set_sp(c, sp + 3 * size)
        c.next_rip = ip & SIZE_MASK[size]
        return RC_OK
    if size == 4 and (fl & F_VM) and c.cpl == 0 and not (c.efer & EFER_LMA):
        return iret_to_v86(c, sp, ip, cs, fl)
    rpl = <int>(cs & 3)
    if rpl < c.cpl:
        return raise_exc(c, EXC_GP, 1, <uint32_t>(cs & 0xFFFC))
    outer = rpl > c.cpl
    if c.long64 or outer:
        for i in range(3, 5):
            rc = mem_read(c, S_SS, (sp + size * i) & SIZE_MASK[c.stack_size], size, &vals[i])
            if rc:
                return rc
        nsp = vals[3]
        nss = vals[4] & 0xFFFF
    rc = load_code_segment(c, <uint16_t>cs, rpl, &ncs)
    if rc:
        return rc
    if c.efer & EFER_LMA and (ncs.ar & AR_L) and not is_canonical(ip):
        return raise_gp0(c)
    if not (ncs.ar & AR_L) and ip > ncs.limit:
        return raise_gp0(c)
    nseg = c.seg[S_SS]
    if c.long64 or outer:
        if (nss & 0xFFFC) == 0 and c.long64 and (ncs.ar & AR_L) and rpl < 3:
            nseg.sel = <uint16_t>nss
            nseg.base = 0
            nseg.limit = 0
            nseg.ar = AR_UNUSABLE | (<uint32_t>rpl << 5)
        else:
            # Reuse MOV SS's checks at the new privilege level.
            i = c.cpl
            nseg = c.seg[S_SS]
            c.cpl = rpl
            rc = load_seg(c, S_SS, <uint16_t>nss)
            c.cpl = i
            if rc:
                c.seg[S_SS] = nseg
                update_mode(c)
                return rc
            nseg = c.seg[S_SS]
    # Which flags IRET may change (SDM Vol. 2 IRET, "EFLAGS" operation).
    mask = FLAGS_WRITABLE_ALWAYS | F_RF
    if c.cpl == 0:
        mask |= F_IOPL | F_IF | F_VIF | F_VIP
    elif c.cpl <= iopl:
        mask |= F_IF
    if size == 2:
        mask &= 0xFFFF
    c.rflags = (c.rflags & ~mask) | (fl & mask) | F_FIXED1
    ncs.sel = (ncs.sel & 0xFFFC) | <uint16_t>rpl
    c.seg[S_CS] = ncs
    c.seg[S_SS] = nseg
    update_mode(c)
    if c.long64 or outer:
        if c.stack_size == 8:
            c.regs[R_SP] = nsp
        else:
            set_sp(c, nsp)
    else:
        set_sp(c, sp + 3 * size)
    if outer:
        # Data segments the new privilege level may not use become null
        # (SDM Vol. 2 IRET, RETURN-TO-OUTER-PRIVILEGE-LEVEL).
        for i in range(S_ES, S_GS + 1):
            if i == S_CS or i == S_SS:
                continue
            v = c.seg[i].ar
            if not (v & AR_UNUSABLE) and ((v & 0xC) != 0xC) and ((v >> 5) & 3) < <uint64_t>rpl:
                c.seg[i].sel = 0
                c.seg[i].ar = AR_UNUSABLE
    c.next_rip = ip if c.long64 else (ip & SIZE_MASK[size if size < 8 else 4])
    return RC_OK


cdef int iret_to_v86(Cpu* c, uint64_t sp, uint64_t ip, uint64_t cs, uint64_t fl) noexcept nogil:
    """IRET from CPL 0 with VM set in the popped EFLAGS (32-bit operand
    size, outside IA-32e mode): RETURN-TO-VIRTUAL-8086-MODE of SDM Vol. 2
    IRET.  ESP, SS, ES, DS, FS and GS follow EIP, CS and EFLAGS on the
    stack; every segment is loaded as virtual-8086 mode makes it (base =
    selector * 16, limit FFFFH, DPL 3: SDM Vol. 3B 20.2.1) and CPL is 3."""
    cdef uint64_t vals[6]
    cdef int i, rc
    cdef uint16_t sels[6]
    for i in range(6):
        rc = mem_read(c, S_SS, (sp + 12 + 4 * i) & SIZE_MASK[c.stack_size], 4, &vals[i])
        if rc:
            return rc
    # ES CS SS DS FS GS in the segment-register numbering
    sels[S_ES] = <uint16_t>vals[2]
    sels[S_CS] = <uint16_t>cs
    sels[S_SS] = <uint16_t>vals[1]
    sels[S_DS] = <uint16_t>vals[3]
    sels[S_FS] = <uint16_t>vals[4]
    sels[S_GS] = <uint16_t>vals[5]
    c.rflags = (fl & 0x3F7FD5ULL) | F_FIXED1
    for i in range(6):
        c.seg[i].sel = sels[i]
        c.seg[i].base = (<uint64_t>sels[i]) << 4
        c.seg[i].limit = 0xFFFF
        c.seg[i].ar = 0xF3
    update_mode(c)
    c.regs[R_SP] = vals[0] & 0xFFFFFFFFULL
    c.next_rip = ip & 0xFFFFFFFFULL
    return RC_OK
