# Exceptions: the VM exit when the exception bitmap intercepts the vector
# (SDM Vol. 3 25.2), otherwise delivery through the IVT (real mode) or the IDT
# (protected and IA-32e mode), with double and triple faults (SDM Vol. 3 6.15,
# Table 6-5).

cdef inline int exc_class(int v) noexcept nogil:
    """0 benign, 1 contributory, 2 page fault, 3 double fault (Table 6-4)."""
    if v == 0 or (v >= 10 and v <= 13):
        return 1
    if v == EXC_PF:
        return 2
    if v == EXC_DF:
        return 3
    return 0


cdef inline int exc_is_fault(int v) noexcept nogil:
    """Fault-class exceptions (SDM Vol. 3A Table 6-1): #DE #BR #UD #NM #TS
    #NP #SS #GP #PF #MF #AC #XM #VE #CP.  #DB is a fault or a trap by its
    cause and counts as neither here (an instruction-breakpoint handler sets
    RF itself)."""
    return v == 0 or (v >= 5 and v <= 7) or (v >= 10 and v <= 14) or v == 16 or v == 17 or \
        (v >= 19 and v <= 21)


cdef inline int exc_has_error_code(int v) noexcept nogil:
    return v == EXC_DF or (v >= 10 and v <= 14) or v == EXC_AC or v == 21


cdef int exception_intercepted(Cpu* c, int vec, uint32_t err) noexcept nogil:
    """Exception bitmap, and for #PF the error-code mask/match (SDM 25.2)."""
    cdef int bit = (c.vmx.ctl.exception_bitmap >> vec) & 1
    if vec == EXC_PF:
        if (err & c.vmx.ctl.pfec_mask) == c.vmx.ctl.pfec_match:
            return bit
        return not bit
    return bit


# Event types (the interruption-type field of SDM Vol. 3C 25.8.3 and 28.2.2):
# 0 external interrupt, 2 NMI, 3 hardware exception, 4 software interrupt
# (INT n), 5 privileged software exception (INT1), 6 software exception
# (INT3, INTO).  The software types return past their instruction; the
# others are external to the program (the EXT bit of an error code for a
# fault while delivering them, SDM Vol. 3A 6.13).

cdef inline int event_is_soft(int typ) noexcept nogil:
    """Types 4-6: the pushed return address is the next instruction."""
    return typ == 4 or typ == 5 or typ == 6


cdef int stack_write(Cpu* c, uint64_t* lin, int n, int size, uint64_t* vals) noexcept nogil:
    """Write n values to linear addresses, probing every one first so a fault
    leaves memory untouched (supervisor accesses)."""
    cdef int i, rc
    cdef uint8_t* p
    for i in range(n):
        rc = translate(c, lin[i], ACC_WRITE, 0, &p)
        if rc:
            return rc
        if (lin[i] & 0xFFF) + size > 4096:
            # the next page, wrapping at 4 GiB outside 64-bit mode as lin_write does
            rc = translate(c, ((lin[i] | 0xFFF) + 1) & (0xFFFFFFFFFFFFFFFFULL if c.long64 else 0xFFFFFFFFULL),
                           ACC_WRITE, 0, &p)
            if rc:
                return rc
    for i in range(n):
        rc = lin_write(c, lin[i], size, 0, vals[i])
        if rc:
            return rc
    return RC_OK


cdef int deliver_real(Cpu* c, int vec) noexcept nogil:
    """Real-address mode: IVT entry at IDTR.base + 4*vector (SDM Vol. 3 20.1.4)."""
    cdef uint64_t ent, sp, lin[3], vals[3]
    cdef int rc, i
    # Software events return to the next instruction; faults, interrupts
    # and NMIs to this one.
    cdef uint64_t ret = c.next_rip if event_is_soft(c.exc_type) else c.rip
    if <uint32_t>(vec * 4 + 3) > c.idtr_limit:
        return raise_exc(c, EXC_GP, 1, vec * 8 + 2)
    rc = lin_read(c, (c.idtr_base + vec * 4) & 0xFFFFFFFFULL, 4, AM_IMPLICIT, &ent)
    if rc:
        return rc
    sp = c.regs[R_SP] & 0xFFFF
    vals[0] = c.rflags & 0xFFFF
    vals[1] = c.seg[S_CS].sel
    vals[2] = ret & 0xFFFF
    for i in range(3):
        sp = (sp - 2) & 0xFFFF
        lin[i] = (c.seg[S_SS].base + sp) & 0xFFFFFFFFULL
    rc = stack_write(c, lin, 3, 2, vals)
    if rc:
        return rc
    set_sp(c, sp)
    c.rflags &= ~(<uint64_t>(F_IF | F_TF | F_AC))
    c.seg[S_CS].sel = <uint16_t>(ent >> 16)
    c.seg[S_CS].base = (ent >> 16) << 4
    c.rip = ent & 0xFFFF
    return RC_OK


cdef int deliver_protected(Cpu* c, int vec, int has_err, uint32_t err) noexcept nogil:
    """Protected mode and IA-32e mode through an interrupt or trap gate (SDM
    Vol. 3 6.12, 6.14), from virtual-8086 mode too (SDM Vol. 3B 20.3.1.1),
    or a task gate (a task switch, core/task.pxi)."""
    cdef int gsize = 16 if (c.efer & EFER_LMA) else 8
    cdef uint64_t g_lo, g_hi = 0, off, csdesc, hi, addr, ssdesc, soff
    cdef uint64_t new_sp, lin[10], vals[10], tss_sp, ss_base = 0, tdesc, taddr
    cdef int v86 = (c.rflags & F_VM) != 0
    cdef uint64_t ret = c.next_rip if event_is_soft(c.exc_type) else c.rip
    # INT n, INT3 and INTO: the gate's DPL is checked, and a fault while
    # delivering them has EXT = 0; INT1 (type 5) and the events external to
    # the program have EXT = 1 and no DPL check (SDM Vol. 3A 6.12.1.1, 6.13).
    cdef int soft = c.exc_type == 4 or c.exc_type == 6
    cdef uint32_t ext = 0 if soft else 1
    # Error code for a fault on the IDT entry: IDT bit, and EXT unless a
    # software event caused the delivery (SDM Vol. 3 6.13).
    cdef uint32_t idt_err = vec * 8 + (2 if soft else 3)
    cdef int gtype, rc, dpl, ist, n, i, psize, new_cpl, priv
    cdef uint16_t sel, new_ss = 0
    cdef Seg ncs, nss
    if <uint32_t>(vec * gsize + gsize - 1) > c.idtr_limit:
        return raise_exc(c, EXC_GP, 1, idt_err)
    rc = lin_read(c, c.idtr_base + vec * gsize, 8, AM_IMPLICIT, &g_lo)
    if rc:
        return rc
    if gsize == 16:
        rc = lin_read(c, c.idtr_base + vec * gsize + 8, 8, AM_IMPLICIT, &g_hi)
        if rc:
            return rc
    gtype = (g_lo >> 40) & 0x1F
    if gsize == 16:
        if gtype != 0x0E and gtype != 0x0F:
            return raise_exc(c, EXC_GP, 1, idt_err)
    elif gtype == 0x05:
        # A task gate: its DPL (for INT n, INT3, INTO) and P bit are checked
        # as for the other gates, then the TSS it names (SDM Vol. 2 INT n,
        # TASK-GATE), then the task switch (core/task.pxi), which in VMX
        # non-root operation is a VM exit instead (reason 9, source 3: a task
        # gate in the IDT; SDM Vol. 3C 26.4.2 and Table 28-2), during the
        # event's delivery (the caller records the IDT-vectoring information).
        if soft and ((g_lo >> 45) & 3) < <uint64_t>c.cpl:
            return raise_exc(c, EXC_GP, 1, idt_err)
        if not ((g_lo >> 47) & 1):
            return raise_exc(c, EXC_NP, 1, idt_err)
        sel = <uint16_t>(g_lo >> 16)
        rc = tss_descriptor(c, sel, TS_GATE, 0 if soft else 1, &tdesc, &taddr)
        if rc:
            return rc
        if c.vmx.non_root:
            return task_switch_exit(c, NULL, sel, TS_GATE)
        rc = task_switch(c, sel, tdesc, taddr, TS_GATE, ret, has_err, err, 0 if soft else 1)
        if rc == RC_EXCEPTION:
            # A fault after the switch belongs to the new task: the event
            # that caused the switch was delivered (SDM Vol. 3A 8.3, 6.12.2).
            return RC_TASK_FAULT
        return rc
    elif gtype != 0x0E and gtype != 0x0F and gtype != 0x06 and gtype != 0x07:
        return raise_exc(c, EXC_GP, 1, idt_err)
    if soft and ((g_lo >> 45) & 3) < <uint64_t>c.cpl:
        # INT n, INT3 and INTO need a gate DPL >= CPL (SDM Vol. 3 6.12.1.1).
        return raise_exc(c, EXC_GP, 1, idt_err)
    if not ((g_lo >> 47) & 1):
        return raise_exc(c, EXC_NP, 1, idt_err)
    sel = <uint16_t>(g_lo >> 16)
    off = (g_lo & 0xFFFF) | (((g_lo >> 48) & 0xFFFF) << 16)
    if gsize == 16:
        off |= (g_hi & 0xFFFFFFFFULL) << 32
    ist = <int>((g_lo >> 32) & 7) if gsize == 16 else 0
    if (sel & 0xFFFC) == 0:
        return raise_exc(c, EXC_GP, 1, 1)
    rc = load_descriptor(c, sel, &csdesc, &hi, &addr)
    if rc:
        return rc
    dpl = (csdesc >> 45) & 3
    if ((csdesc >> 43) & 3) != 3 or dpl > c.cpl:     # must be a code segment
        return raise_exc(c, EXC_GP, 1, (sel & 0xFFFC) | ext)
    if not ((csdesc >> 47) & 1):
        return raise_exc(c, EXC_NP, 1, (sel & 0xFFFC) | ext)
    if gsize == 16 and (not ((csdesc >> 53) & 1) or ((csdesc >> 54) & 1)):
        return raise_exc(c, EXC_GP, 1, (sel & 0xFFFC) | ext)
    descriptor_to_seg(csdesc, &ncs, sel)
    ncs.ar |= 1
    # The handler's address: canonical through a 64-bit gate, within the new
    # CS limit otherwise, or #GP(EXT) before anything is pushed (SDM Vol. 2
    # INT n, "IA-32e mode" and "INTRA-PRIVILEGE-LEVEL-INTERRUPT").  A saved
    # non-canonical RIP would also fail the next VM entry.
    if gsize == 16:
        if not is_canonical(off):
            return raise_exc(c, EXC_GP, 1, 0 if soft else 1)
    elif (off & (0xFFFFFFFFULL if (gtype & 8) else 0xFFFF)) > ncs.limit:
        return raise_exc(c, EXC_GP, 1, 0 if soft else 1)
    # A conforming code segment keeps the CPL; otherwise CPL becomes its DPL.
    new_cpl = c.cpl if ((csdesc >> 42) & 1) else dpl
    priv = new_cpl < c.cpl
    if v86 and new_cpl != 0:
        # From virtual-8086 mode only to a non-conforming segment at DPL 0
        # (SDM Vol. 2 INT n, INTERRUPT-FROM-VIRTUAL-8086-MODE).
        return raise_exc(c, EXC_GP, 1, (sel & 0xFFFC) | (0 if soft else 1))
    psize = 8 if gsize == 16 else (4 if (gtype & 8) else 2)
    nss = c.seg[S_SS]
    if gsize == 16:
        if priv or ist:
            if c.seg[S_TR].limit < 0x67:
                return raise_exc(c, EXC_TS, 1, (c.seg[S_TR].sel & 0xFFFC) | ext)
            rc = lin_read(c, c.seg[S_TR].base + (0x24 + 8 * (ist - 1) if ist else 4 + 8 * new_cpl), 8, AM_IMPLICIT, &tss_sp)
            if rc:
                return rc
            new_sp = tss_sp
        else:
            new_sp = c.regs[R_SP]
        new_sp &= ~0xFULL
        if priv:
            new_ss = <uint16_t>new_cpl
            nss.sel = new_ss
            nss.base = 0
            nss.limit = 0
            nss.ar = AR_UNUSABLE | (<uint32_t>new_cpl << 5)
        n = 0
        vals[n] = c.seg[S_SS].sel; n += 1
        vals[n] = c.regs[R_SP]; n += 1
        vals[n] = c.rflags; n += 1
        vals[n] = c.seg[S_CS].sel; n += 1
        vals[n] = ret; n += 1
        if has_err:
            vals[n] = err; n += 1
        for i in range(n):
            lin[i] = new_sp - 8 * (i + 1)
            if not is_canonical(lin[i]):
                return raise_exc(c, EXC_SS, 1, ext)
        rc = stack_write(c, lin, n, 8, vals)
        if rc:
            return rc
        new_sp = new_sp - 8 * n
    else:
        n = 0
        if priv:
            # SS:ESP for the new level from a 32-bit TSS, SS:SP from a 16-bit one.
            rc = read_tss_stack(c, new_cpl, &tss_sp, &new_ss, ext)
            if rc:
                return rc
            # A selector outside its table is #TS too (SDM Vol. 2 INT n,
            # INTER-PRIVILEGE-LEVEL-INTERRUPT).
            rc = read_desc_ts(c, new_ss, ext, &ssdesc, &addr)
            if rc:
                return rc
            if (new_ss & 3) != new_cpl or ((ssdesc >> 45) & 3) != <uint64_t>new_cpl or \
                    ((ssdesc >> 41) & 5) != 1 or not ((ssdesc >> 44) & 1):
                return raise_exc(c, EXC_TS, 1, (new_ss & 0xFFFC) | ext)
            if not ((ssdesc >> 47) & 1):
                return raise_exc(c, EXC_SS, 1, (new_ss & 0xFFFC) | ext)
            descriptor_to_seg(ssdesc, &nss, new_ss)
            new_sp = tss_sp & 0xFFFFFFFFULL
            if v86:
                # GS FS DS ES of the virtual-8086 task go first; the handler
                # then finds them null.
                vals[n] = c.seg[S_GS].sel; n += 1
                vals[n] = c.seg[S_FS].sel; n += 1
                vals[n] = c.seg[S_DS].sel; n += 1
                vals[n] = c.seg[S_ES].sel; n += 1
            vals[n] = c.seg[S_SS].sel; n += 1
            vals[n] = c.regs[R_SP] & 0xFFFFFFFFULL; n += 1
        else:
            new_sp = c.regs[R_SP] & SIZE_MASK[c.stack_size]
        vals[n] = c.rflags & 0xFFFFFFFFULL; n += 1
        vals[n] = c.seg[S_CS].sel; n += 1
        vals[n] = ret & 0xFFFFFFFFULL; n += 1
        if has_err:
            vals[n] = err; n += 1
        ss_base = nss.base
        # The frame must fit the stack segment: an unusable SS (a task
        # switch that faulted before loading it) or a slot outside an
        # expand-up segment's limit is #SS(EXT) (SDM Vol. 2 INT n, "IF
        # stack does not have room").
        if nss.ar & AR_UNUSABLE:
            return raise_exc(c, EXC_SS, 1, ext)
        for i in range(n):
            soff = (new_sp - psize * (i + 1)) & (0xFFFFFFFFULL if (nss.ar & AR_DB) else 0xFFFF)
            if (nss.ar & 0xC) != 4 and soff + psize - 1 > nss.limit:
                return raise_exc(c, EXC_SS, 1, ext | ((new_ss & 0xFFFC) if priv else 0))
            lin[i] = (ss_base + soff) & 0xFFFFFFFFULL
        rc = stack_write(c, lin, n, psize, vals)
        if rc:
            return rc
        new_sp = new_sp - psize * n
    # Commit.
    ncs.sel = (sel & 0xFFFC) | <uint16_t>new_cpl
    c.seg[S_CS] = ncs
    c.seg[S_SS] = nss
    if v86:
        for i in range(S_ES, S_GS + 1):
            if i == S_CS or i == S_SS:
                continue
            c.seg[i].sel = 0
            c.seg[i].base = 0
            c.seg[i].limit = 0
            c.seg[i].ar = AR_UNUSABLE
    c.rflags &= ~(<uint64_t>(F_TF | F_NT | F_RF | F_VM))
    if not (gtype & 1):
        c.rflags &= ~(<uint64_t>F_IF)        # interrupt gate
    update_mode(c)
    if c.stack_size == 8:
        c.regs[R_SP] = new_sp
    else:
        set_sp(c, new_sp)
    c.rip = off if psize != 2 else (off & 0xFFFF)
    return RC_OK


cdef inline void stage_idt_vectoring(Cpu* c, int vec, int typ, uint32_t length, int has_err,
                                     uint32_t err) noexcept nogil:
    """Record the event whose delivery a VM exit interrupted (SDM Vol. 3C
    27.2.4, IDT-vectoring information: 7:0 vector, 10:8 type, 11 error code
    valid, 31 valid).  For a software event the exit also reports the
    instruction length (SDM 28.2.5)."""
    c.vmx.x_idt_info = (<uint32_t>vec) | (<uint32_t>typ << 8) | ((<uint32_t>has_err) << 11) | 0x80000000ULL
    c.vmx.x_idt_error = err if has_err else 0
    if event_is_soft(typ):
        c.vmx.x_len = length


cdef inline void delivered(Cpu* c, int typ, int retire) noexcept nogil:
    """An event went through the IVT or IDT.  Blocking by STI and by MOV SS
    ends: it covers only the instruction after STI or MOV SS, and that
    instruction did not complete (SDM Vol. 3A 6.8.3; Vol. 3C 25.4.2, Table
    25-3); kept, it would be saved with RFLAGS.IF = 0 and fail the
    interruptibility check of the next VM entry.  An NMI blocks further NMIs
    until the next IRET (SDM Vol. 3A 6.7.1), and an injected NMI with
    "virtual NMIs" sets virtual-NMI blocking (SDM 27.6.1.2): bit 3 of the
    interruptibility state either way.  INT n, INT3 and INTO executed by
    the guest retire (retire = 1: RIP moves past them); any other event,
    injected software events included, counts toward the budget as one
    step, so a guest whose every instruction faults still reaches it."""
    c.interruptibility &= ~(<uint32_t>3)
    # [debug] Traps pending for the instruction that raised the event are
    # dropped: TF comes back with IRET (core/insn/debug.pxi).
    c.dbg_pending = 0
    if typ == 2:
        c.interruptibility |= 8
    if retire:
        c.icount += 1
    else:
        c.events += 1
        spend(c, 1)
    c.acct.delivered[typ & 7] += 1     # accounting (docs/architecture.rst, "Accounting and cost profiles")


cdef enum:
    # handle_event's flags: how the event in c.exc_* came about.
    EV_NO_BITMAP = 1    # not subject to the exception bitmap (an external interrupt or NMI the
                        # processor takes, or an event VM entry injects, SDM 27.6.1.2); faults
                        # while delivering it are
    EV_INJECTED = 2     # injected by VM entry: a software event does not retire an instruction


cdef inline int handle_exception(Cpu* c) noexcept nogil:
    """An exception raised by an instruction (handle_event)."""
    return handle_event(c, 0)


cdef int handle_event(Cpu* c, int flags) noexcept nogil:
    """Turn the pending event (c.exc_*) into a VM exit or a delivery;
    a fault while delivering becomes a double fault, then a triple fault.

    In non-root operation an exception that occurs while another is being
    delivered is checked against the exception bitmap first: if it exits,
    the exit reports it and the IDT-vectoring information reports the event
    being delivered; only if it does not exit do the double-fault rules of
    SDM Vol. 3A Table 6-5 apply.  A #DF made that way that exits does so
    directly, without IDT-vectoring information, and a fault while
    delivering #DF that does not exit is a triple fault (SDM Vol. 3C 26.2,
    27.2.4)."""
    cdef int vec, has_err, rc, typ
    cdef uint32_t err
    cdef int cur = -1              # the event being delivered when this one arose
    cdef int cur_type = 3
    cdef uint32_t cur_len = 0
    cdef int cur_has_err = 0
    cdef uint32_t cur_err = 0
    cdef int iret_nmi = c.exc_iret_nmi
    c.exc_iret_nmi = 0
    if c.exc_type == 2:
        # Blocking by NMI (virtual-NMI blocking with "virtual NMIs") starts
        # with the delivery of the NMI: a VM exit during it saves the
        # blocking in effect (SDM 28.3.4; Vol. 3A 6.7.1).
        c.interruptibility |= 8
    while True:
        vec = c.exc_vector
        typ = c.exc_type
        # Real-address mode pushes no error codes (SDM Vol. 3 20.1.4), and the
        # exit information says so.
        has_err = c.exc_has_error and (c.cr0 & CR0_PE) != 0
        err = c.exc_error if has_err else 0
        if typ == 3 and exc_is_fault(vec) and (c.cr0 & CR0_PE) and cur < 0 and not (flags & EV_INJECTED):
            # The RFLAGS image of a fault has RF set, so that the
            # instruction it returns to does not hit its instruction
            # breakpoint again (SDM Vol. 3B 18.3.1.1); a VM exit saves RF as
            # that image would have it (SDM Vol. 3C 28.3.3).  An event VM
            # entry injects is pushed with RFLAGS as the guest-state area
            # has it (the hypervisor sets RF), and a fault while delivering
            # another event leaves RF as that event found it.
            c.rflags |= F_RF
        # INT n is not an exception: the exception bitmap does not apply to
        # it (SDM Vol. 3C 26.2); INT3 and INTO are software exceptions and do.
        # Nor to external interrupts and NMIs (their own controls decide,
        # core/vmx/events.pxi) or to the event VM entry injects (SDM
        # 27.6.1.2), though it does to a fault while delivering them.
        if c.vmx.non_root and (typ == 3 or typ == 5 or typ == 6) and not (flags & EV_NO_BITMAP) and \
                exception_intercepted(c, vec, err):
            # #DB: the exit qualification holds its DR6 bits (B0-B3, BD, BS;
            # Table 28-1) and DR6 and DR7 stay as they were (SDM 28.1).
            vmexit_event(c, EXIT_REASON_EXCEPTION_OR_NMI, c.exc_cr2 if vec == EXC_PF else (
                c.exc_dr6 & 0x600F if (vec == EXC_DB and typ == 3 and not (flags & EV_INJECTED)) else 0))
            c.vmx.x_intr_info = (<uint32_t>vec) | (<uint32_t>typ << 8) | ((<uint32_t>has_err) << 11) | 0x80000000ULL
            c.vmx.x_intr_error = err
            if typ == 5 or typ == 6:
                c.vmx.x_len = c.exc_len
            if iret_nmi:
                # The exception is a fault on an IRET that removed (virtual-)
                # NMI blocking: "NMI unblocking due to IRET" (SDM 28.2.2).
                c.vmx.x_intr_info |= 1 << 12
            if cur >= 0:
                stage_idt_vectoring(c, cur, cur_type, cur_len, cur_has_err, cur_err)
            return RC_VMEXIT
        if vec == EXC_PF and typ == 3:
            c.cr2 = c.exc_cr2
        if vec == EXC_DB and typ == 3 and not (flags & EV_INJECTED):
            dbg_report(c, c.exc_dr6)        # [debug] DR6 and DR7.GD (core/insn/debug.pxi)
        if c.cr0 & CR0_PE:
            rc = deliver_protected(c, vec, has_err, err)
        else:
            rc = deliver_real(c, vec)
        if rc == RC_OK:
            delivered(c, typ, event_is_soft(typ) and not (flags & EV_INJECTED))
            return RC_OK
        if rc == RC_TASK_FAULT:
            # The event went through a task gate and the switch completed;
            # the fault on the new task's segments is a new event in the new
            # task, not one during this delivery (core/task.pxi).
            delivered(c, typ, event_is_soft(typ) and not (flags & EV_INJECTED))
            flags = 0
            iret_nmi = 0
            cur = -1
            continue
        if rc == RC_VMEXIT:
            # An EPT violation or misconfiguration while delivering.
            stage_idt_vectoring(c, vec, typ, c.exc_len, has_err, err)
            return rc
        if rc != RC_EXCEPTION:
            return rc
        # A second exception while delivering the first: an exception like
        # any other (the bitmap applies), whatever the first was.
        flags = 0
        iret_nmi = 0
        cur = vec
        cur_type = typ
        cur_len = c.exc_len
        cur_has_err = has_err
        cur_err = err
        if c.vmx.non_root and exception_intercepted(
                c, c.exc_vector, c.exc_error if (c.exc_has_error and (c.cr0 & CR0_PE)) else 0):
            continue
        if vec == EXC_DF:
            if c.vmx.non_root:
                return vmexit_event(c, EXIT_REASON_TRIPLE_FAULT, 0)
            c.activity = 2
            return RC_SHUTDOWN
        if typ == 3 and ((exc_class(vec) == 1 and exc_class(c.exc_vector) == 1) or
                         (vec == EXC_PF and exc_class(c.exc_vector) >= 1)):
            c.exc_vector = EXC_DF
            c.exc_has_error = 1
            c.exc_error = 0
            cur = -1
