# Task switching (SDM Vol. 3A chapter 8, "Task Management", 8.3): JMP or
# CALL to a TSS descriptor or a task gate (core/insn/far.pxi), an interrupt
# or exception through a task gate in the IDT (core/exceptions.pxi), IRET
# with NT = 1 (core/insn/interrupt.pxi).  32-bit TSSs (type 9/B) and 16-bit
# TSSs (type 1/3); IA-32e mode has no task switching (the callers give #GP).
#
# In VMX non-root operation a task switch is a VM exit (reason 9) once the
# checks on the gate, the selector and the TSS descriptor have passed and
# before anything changes (SDM Vol. 3C 26.4.2); task_switch_exit stages it.

# The source of a task switch, numbered as the exit qualification of a
# task-switch VM exit numbers it (SDM Vol. 3C Table 28-2, bits 31:30).
cdef enum:
    # deliver_protected -> handle_event only: the event went through a task
    # gate, the switch completed, and a fault in the new task is pending.
    RC_TASK_FAULT = 100

cdef int DATA_ORDER[4]
DATA_ORDER[:] = [S_DS, S_ES, S_FS, S_GS]

cdef enum:
    TS_CALL = 0
    TS_IRET = 1
    TS_JMP = 2
    TS_GATE = 3        # an interrupt or exception through a task gate in the IDT


cdef int read_desc_ts(Cpu* c, uint16_t sel, uint32_t ext, uint64_t* lo, uint64_t* addr) noexcept nogil:
    """The descriptor sel names, for the segment loads of a task switch:
    #TS(sel) when it lies outside its table (SDM Vol. 3A Table 8-1)."""
    cdef uint64_t base
    cdef uint32_t limit
    if sel & 4:
        if c.seg[S_LDTR].ar & AR_UNUSABLE:
            return raise_exc(c, EXC_TS, 1, (sel & 0xFFFC) | ext)
        base = c.seg[S_LDTR].base
        limit = c.seg[S_LDTR].limit
    else:
        base = c.gdtr_base
        limit = c.gdtr_limit
    if (sel | 7) > limit:
        return raise_exc(c, EXC_TS, 1, (sel & 0xFFFC) | ext)
    addr[0] = base + (sel & 0xFFF8)
    return lin_read(c, addr[0], 8, AM_IMPLICIT, lo)


cdef int tss_descriptor(Cpu* c, uint16_t sel, int source, uint32_t ext, uint64_t* lo,
                        uint64_t* addr) noexcept nogil:
    """Checks 2-4 of SDM Vol. 3C 26.4.2 on the new TSS: the selector names
    the GDT within its limit, the descriptor is a TSS that is available
    (busy for IRET), present, and large enough (at least 67H bytes for a
    32-bit TSS, 2BH for a 16-bit one).  Error codes per SDM Vol. 2 JMP, CALL,
    INT n and IRET and Vol. 3A Table 8-1: a bad selector or type is #GP(sel)
    (#TS(sel) for IRET), not present #NP(sel), too small #TS(sel)."""
    cdef uint32_t t
    cdef uint64_t limit
    cdef int vec = EXC_TS if source == TS_IRET else EXC_GP
    cdef uint32_t err = (sel & 0xFFFC) | ext
    cdef int rc
    if (sel & 4) or (sel | 7) > c.gdtr_limit or (sel & 0xFFFC) == 0:
        return raise_exc(c, vec, 1, err)
    addr[0] = c.gdtr_base + (sel & 0xFFF8)
    rc = lin_read(c, addr[0], 8, AM_IMPLICIT, lo)
    if rc:
        return rc
    t = (lo[0] >> 40) & 0x1F
    if source == TS_IRET:
        if t != 0x0B and t != 0x03:
            return raise_exc(c, EXC_TS, 1, err)
    elif t != 0x09 and t != 0x01:
        return raise_exc(c, EXC_GP, 1, err)
    if not ((lo[0] >> 47) & 1):
        return raise_exc(c, EXC_NP, 1, err)
    limit = (lo[0] & 0xFFFF) | ((lo[0] >> 32) & 0xF0000)
    if (lo[0] >> 55) & 1:
        limit = (limit << 12) | 0xFFF
    if limit < <uint64_t>(0x67 if (t & 8) else 0x2B):
        return raise_exc(c, EXC_TS, 1, err)
    return RC_OK


cdef int task_switch_exit(Cpu* c, Insn* d, uint16_t sel, int source) noexcept nogil:
    """The VM exit that replaces a task switch in VMX non-root operation:
    reason 9, exit qualification bits 15:0 the new TSS selector and 31:30
    the source (SDM Vol. 3C Table 28-2).  An instruction's exit reports its
    length; a task gate in the IDT exits during the event's delivery."""
    cdef uint64_t qual = (<uint64_t>sel) | (<uint64_t>source << 30)
    if d != NULL:
        return insn_exit(c, d, EXIT_REASON_TASK_SWITCH, qual)
    return vmexit_event(c, EXIT_REASON_TASK_SWITCH, qual)


cdef int task_load_seg(Cpu* c, int sr, uint16_t sel, int cpl, uint32_t ext) noexcept nogil:
    """Load a segment register of the new task with the checks of SDM Vol.
    3A Table 8-1 (faults are in the new task's context; error code the
    selector, with EXT when an external event caused the switch)."""
    cdef uint64_t desc, addr
    cdef uint32_t t
    cdef uint32_t err = (sel & 0xFFFC) | ext
    cdef int dpl, rpl = sel & 3
    cdef int rc
    cdef Seg* s = &c.seg[sr]
    if (sel & 0xFFFC) == 0:
        if sr == S_CS or sr == S_SS:
            return raise_exc(c, EXC_TS, 1, err)
        s.sel = sel
        s.base = 0
        s.limit = 0
        s.ar = AR_UNUSABLE
        return RC_OK
    rc = read_desc_ts(c, sel, ext, &desc, &addr)
    if rc:
        return rc
    t = (desc >> 40) & 0x1F
    dpl = (desc >> 45) & 3
    if not (t & 0x10):
        return raise_exc(c, EXC_TS, 1, err)
    if sr == S_CS:
        if not (t & 8):
            return raise_exc(c, EXC_TS, 1, err)
        if (t & 4) and dpl > rpl:
            return raise_exc(c, EXC_TS, 1, err)
        if not (t & 4) and dpl != rpl:
            return raise_exc(c, EXC_TS, 1, err)
        if not ((desc >> 47) & 1):
            return raise_exc(c, EXC_NP, 1, err)
    elif sr == S_SS:
        if (t & 8) or not (t & 2) or rpl != cpl or dpl != cpl:
            return raise_exc(c, EXC_TS, 1, err)
        if not ((desc >> 47) & 1):
            return raise_exc(c, EXC_SS, 1, err)
    else:
        if (t & 0xA) == 8:                           # execute-only code
            return raise_exc(c, EXC_TS, 1, err)
        if (t & 0xC) != 0xC and (dpl < cpl or dpl < rpl):
            return raise_exc(c, EXC_TS, 1, err)
        if not ((desc >> 47) & 1):
            return raise_exc(c, EXC_NP, 1, err)
    if not (desc & (1ULL << 40)):
        rc = lin_write(c, addr + 5, 1, AM_IMPLICIT, ((desc >> 40) & 0xFF) | 1)
        if rc:
            return rc
        desc |= 1ULL << 40
    descriptor_to_seg(desc, s, sel)
    return RC_OK


cdef int task_switch(Cpu* c, uint16_t sel, uint64_t desc, uint64_t desc_addr, int source,
                     uint64_t ret_ip, int has_err, uint32_t err, uint32_t ext) noexcept nogil:
    """Switch from the current task to the one whose (checked) TSS
    descriptor desc at desc_addr names: SDM Vol. 3A 8.3 steps 5-13.  The
    new TSS is read whole and the old TSS's fields probed before anything
    changes, so a page fault there leaves the old task intact; faults on
    the new task's segments come after the switch, in its context.  ret_ip
    is the EIP the old task resumes at.  An exception with an error code
    through a task gate pushes it on the new task's stack (SDM Vol. 3A
    6.12.2).  Returns RC_OK with c.rip the new task's EIP (the caller must
    not advance it), or the fault of the new context."""
    cdef int new32 = ((desc >> 40) & 8) != 0
    cdef Seg* tr = &c.seg[S_TR]
    cdef int old32 = (tr.ar & 8) != 0
    cdef uint64_t nbase = ((desc >> 16) & 0xFFFFFF) | (((desc >> 56) & 0xFF) << 24)
    cdef uint64_t obase = tr.base
    cdef uint64_t v[24]
    cdef uint64_t oaddr, odesc, fl, cr3 = 0
    cdef uint16_t sels[7]          # ES CS SS DS FS GS LDT
    cdef uint16_t old_sel = tr.sel
    cdef int i, rc, cpl
    cdef uint64_t lin[1]
    cdef uint8_t* p
    # Read the new TSS (static and dynamic fields) before any change.
    if new32:
        for i in range(11):                      # CR3 (1CH) .. EDI (44H)
            rc = lin_read(c, nbase + 0x1C + 4 * i, 4, AM_IMPLICIT, &v[i])
            if rc:
                return rc
        for i in range(7):                       # ES .. GS (48H-5CH), LDT (60H)
            rc = lin_read(c, nbase + 0x48 + 4 * i, 2, AM_IMPLICIT, &v[18])
            if rc:
                return rc
            sels[i] = <uint16_t>v[18]
        cr3 = v[0]
    else:
        for i in range(10):                      # IP (0EH) .. DI (20H)
            rc = lin_read(c, nbase + 0x0E + 2 * i, 2, AM_IMPLICIT, &v[i + 1])
            if rc:
                return rc
        for i in range(4):                       # ES CS SS DS (22H-28H)
            rc = lin_read(c, nbase + 0x22 + 2 * i, 2, AM_IMPLICIT, &v[18])
            if rc:
                return rc
            sels[i] = <uint16_t>v[18]
        sels[4] = 0
        sels[5] = 0
        rc = lin_read(c, nbase + 0x2A, 2, AM_IMPLICIT, &v[18])
        if rc:
            return rc
        sels[6] = <uint16_t>v[18]
    # The old TSS must take the dynamic state: probe its pages for writing
    # (supervisor accesses, as every TSS access is).
    rc = translate(c, (obase + (0x20 if old32 else 0x0E)) & 0xFFFFFFFFULL, ACC_WRITE, AM_IMPLICIT, &p)
    if rc:
        return rc
    rc = translate(c, (obase + (0x5D if old32 else 0x29)) & 0xFFFFFFFFULL, ACC_WRITE, AM_IMPLICIT, &p)
    if rc:
        return rc
    # Step 7: IRET clears NT in the EFLAGS image it saves.
    fl = c.rflags & 0xFFFFFFFFULL
    if source == TS_IRET:
        fl &= ~(<uint64_t>F_NT)
    # Step 8: save the old task's dynamic state.
    if old32:
        lin_write(c, obase + 0x20, 4, AM_IMPLICIT, ret_ip & 0xFFFFFFFFULL)
        lin_write(c, obase + 0x24, 4, AM_IMPLICIT, fl)
        for i in range(8):
            lin_write(c, obase + 0x28 + 4 * i, 4, AM_IMPLICIT, c.regs[i] & 0xFFFFFFFFULL)
        for i in range(6):
            lin_write(c, obase + 0x48 + 4 * i, 2, AM_IMPLICIT, c.seg[i].sel)
    else:
        lin_write(c, obase + 0x0E, 2, AM_IMPLICIT, ret_ip & 0xFFFF)
        lin_write(c, obase + 0x10, 2, AM_IMPLICIT, fl & 0xFFFF)
        for i in range(8):
            lin_write(c, obase + 0x12 + 2 * i, 2, AM_IMPLICIT, c.regs[i] & 0xFFFF)
        for i in range(4):
            lin_write(c, obase + 0x22 + 2 * i, 2, AM_IMPLICIT, c.seg[i].sel)
    # Step 6: JMP and IRET make the old task available again.
    if source == TS_JMP or source == TS_IRET:
        if (old_sel | 7) <= c.gdtr_limit and not (old_sel & 4):
            oaddr = c.gdtr_base + (old_sel & 0xFFF8)
            if lin_read(c, oaddr, 8, AM_IMPLICIT, &odesc) == RC_OK:
                lin_write(c, oaddr + 5, 1, AM_IMPLICIT, ((odesc >> 40) & 0xFF) & ~2ULL)
    # Step 9: CALL and a task gate link the new task back to the old one.
    if source == TS_CALL or source == TS_GATE:
        rc = lin_write(c, nbase, 2, AM_IMPLICIT, old_sel)
        if rc:
            return rc
    # Step 10: the new TSS descriptor becomes busy (IRET finds it busy).
    if source != TS_IRET:
        rc = lin_write(c, desc_addr + 5, 1, AM_IMPLICIT, ((desc >> 40) & 0xFF) | 2)
        if rc:
            return rc
        desc |= 2ULL << 40
    # Step 11: TR, and CR0.TS (SDM Vol. 3A 2.5: set on every task switch).
    descriptor_to_seg(desc, tr, sel)
    c.cr0 |= CR0_TS
    # Step 12: the new task's state.  CR3 only from a 32-bit TSS with
    # paging on (SDM 8.2.1: a 16-bit TSS has no CR3 field).
    if new32 and (c.cr0 & CR0_PG) and cr3 != c.cr3:
        if c.paging == 3:
            rc = load_pdptes(c, cr3)
            if rc:
                return rc
        c.cr3 = cr3
        tlb_flush(c)
    if new32:
        c.rip = v[1]
        fl = v[2]
        for i in range(8):
            c.regs[i] = v[3 + i]
    else:
        c.rip = v[1]
        fl = (c.rflags & ~0xFFFFULL) | v[2]
        for i in range(8):
            c.regs[i] = (c.regs[i] & ~0xFFFFULL) | v[3 + i]
    if source == TS_CALL or source == TS_GATE:
        fl |= F_NT
    # Reserved bits of EFLAGS read as 0, bit 1 as 1; VM only from a 32-bit TSS.
    fl = (fl & 0x3F7FD5ULL) | F_FIXED1
    if not new32:
        fl &= ~(<uint64_t>F_VM)
    c.rflags = fl
    c.lf_kind = LF_NONE
    # Selectors first, descriptors after (LDTR, SS, CS, then the data
    # segments, the order of Table 8-1's checks); a register whose load has not happened
    # when a fault comes holds its selector and is unusable.
    for i in range(6):
        c.seg[i].sel = sels[i]
        c.seg[i].ar = AR_UNUSABLE
        c.seg[i].base = 0
        c.seg[i].limit = 0
    c.seg[S_LDTR].sel = sels[6]
    c.seg[S_LDTR].ar = AR_UNUSABLE
    if fl & F_VM:
        # A virtual-8086 task: segments as real mode makes them (SDM Vol. 3A
        # 20.2.1), CPL 3.
        for i in range(6):
            c.seg[i].base = (<uint64_t>sels[i]) << 4
            c.seg[i].limit = 0xFFFF
            c.seg[i].ar = 0xF3
        cpl = 3
    else:
        cpl = sels[1] & 3
        c.seg[S_SS].ar = AR_UNUSABLE | (<uint32_t>cpl << 5)
    update_mode(c)
    # LDTR (Table 8-1: a bad LDT selector or descriptor is #TS(LDT selector)).
    if (sels[6] & 0xFFFC) != 0:
        if (sels[6] & 4) or (sels[6] | 7) > c.gdtr_limit:
            return raise_exc(c, EXC_TS, 1, (sels[6] & 0xFFFC) | ext)
        rc = lin_read(c, c.gdtr_base + (sels[6] & 0xFFF8), 8, AM_IMPLICIT, &odesc)
        if rc:
            return rc
        if ((odesc >> 40) & 0x1F) != 2 or not ((odesc >> 47) & 1):
            return raise_exc(c, EXC_TS, 1, (sels[6] & 0xFFFC) | ext)
        descriptor_to_seg(odesc, &c.seg[S_LDTR], sels[6])
    if not (fl & F_VM):
        # SS before CS, as Table 8-1 lists their checks: a fault on a bad
        # code segment then finds the new task's stack usable.
        rc = task_load_seg(c, S_SS, sels[2], cpl, ext)
        if rc:
            return rc
        update_mode(c)
        rc = task_load_seg(c, S_CS, sels[1], cpl, ext)
        if rc:
            return rc
        update_mode(c)
        for i in range(4):
            # DS, ES, FS, GS
            rc = task_load_seg(c, DATA_ORDER[i], sels[DATA_ORDER[i]], cpl, ext)
            if rc:
                return rc
    update_mode(c)
    events_unmasked(c)
    if has_err:
        # The error code of an exception delivered through a task gate goes
        # on the new task's stack, 4 bytes for a 32-bit TSS, 2 for a 16-bit one.
        rc = push(c, 4 if new32 else 2, err)
        if rc:
            return rc
    return RC_OK
