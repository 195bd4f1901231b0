# Debug exceptions (#DB, vector 1): RFLAGS.TF single-step, RFLAGS.RF, the
# breakpoints of DR0-DR3 as DR7 arms them (instruction, data write, data
# read/write, I/O with CR4.DE), DR6 as the processor reports them, and
# DR7.GD general detect (SDM Vol. 3B chapter 18, "Debug, Branch Profile, TSC,
# and Intel Resource Director Technology Features", 18.2-18.3; Vol. 3A 6.15
# "Interrupt 1-Debug Exception").  INT1 is core/insn/misc.pxi, MOV DR
# core/insn/system.pxi.
#
# How it fits the run loop (docs/architecture.rst, "The fast path of the
# interpreter"): while TF or RF is set, any breakpoint is enabled in DR7
# (L0-L3/G0-G3) or a debug trap is held pending, translated blocks do not run
# (dbg_on; while a breakpoint is armed no block is even built, dbg_changed)
# and every instruction takes the one-at-a-time path through
# dbg_boundary (before the fetch: held traps, instruction breakpoints) and
# dbg_exec (the instruction, then its traps).  Data breakpoints see accesses
# through the memory slow path: translate_slow keeps read or write permission
# out of the TLB for a page that holds a watched byte (dbg_tlb_perm), so each
# access there reaches lin_read/lin_write, which report to dbg_data.  Nothing
# of this costs anything while debugging is off but one test per block.
#
# Choices where the SDM leaves room (18.2.3, 18.3.1):
# - DR6.B0-B3 report only the enabled breakpoints that matched (the SDM says
#   disabled ones "may or may not" be set); every #DB the processor raises
#   clears B0-B3 first and ORs in its conditions ("certain debug exceptions
#   may clear bits 0-3"); BD BS BT are never cleared by the processor.  INT1
#   reports nothing in DR6 and leaves it alone.
# - Delivering any hardware #DB clears DR7.GD (18.2.4: the processor clears
#   GD on entry to the debug handler).  A #DB that causes a VM exit changes
#   neither DR6 nor DR7: the exit qualification carries the DR6 bits (SDM
#   Vol. 3C 28.2.1, Table 28-1).
# - An event delivered through the IDT discards the debug traps pending for
#   the instruction that raised it (a fault, INT n, INT3, INTO): the handler
#   does not start with a #DB, and TF, cleared by the delivery, comes back
#   with IRET (18.3.1.4: debuggers emulate INT n to step over it).
# - A REP string instruction single-steps (and reports a data breakpoint)
#   iteration by iteration, RIP staying on it until the last.
# - MOV SS and POP SS hold their debug traps, and the next instruction's, to
#   the boundary after that instruction (Vol. 3A 6.8.3), where they are
#   delivered as one #DB; instruction breakpoints on that next instruction
#   are not reported.

cdef enum:
    DR6_BD = 1 << 13
    DR6_BS = 1 << 14
    DR6_BT = 1 << 15
    DR7_GD = 1 << 13
    # pending debug exceptions (the VMCS guest-state field's format, SDM
    # Vol. 3C 25.4.2, Table 25-4): B0-B3 in 3:0, bit 12 "enabled breakpoint",
    # BS in bit 14 -- the DR6 positions, so c.dbg_pending keeps this form
    PDE_ENABLED_BP = 1 << 12


cdef inline int dbg_guest_on(Cpu* c) noexcept nogil:
    """dbg_on without the host debugger: what an instruction can change
    (the block runner's test after a last op that is not lazy; the host
    debugger changes only from Python, and no block runs while it is on)."""
    return ((c.dr7 & 0xFF) | (c.rflags & (F_TF | F_RF)) | c.dbg_pending) != 0


cdef inline int dbg_on(Cpu* c) noexcept nogil:
    """Whether instructions must go one at a time through the debug path:
    TF or RF set, a breakpoint enabled in DR7, or a trap held pending; or
    the host debugger's breakpoints, watchpoints or trace (core/debugger.pxi)."""
    return ((c.dr7 & 0xFF) | (c.rflags & (F_TF | F_RF)) | c.dbg_pending | c.hdbg) != 0


cdef inline uint64_t dbg_addr(Cpu* c, int i) noexcept nogil:
    """DRi as the breakpoint's linear address: outside IA-32e mode only its
    low 32 bits take part (SDM 18.2.1)."""
    if c.efer & EFER_LMA:
        return c.dr[i]
    return c.dr[i] & 0xFFFFFFFFULL


cdef inline uint64_t dbg_len(Cpu* c, int i) noexcept nogil:
    """DR7.LENi in bytes: 00 1, 01 2, 10 8, 11 4 (SDM 18.2.4, 18.2.5)."""
    cdef uint64_t n = (c.dr7 >> (18 + 4 * i)) & 3
    return 1 if n == 0 else (2 if n == 1 else (8 if n == 2 else 4))


cdef inline uint64_t dbg_rw(Cpu* c, int i) noexcept nogil:
    """DR7.R/Wi: 00 execution, 01 data writes, 10 I/O (CR4.DE = 1), 11 data
    reads and writes."""
    return (c.dr7 >> (16 + 4 * i)) & 3


cdef inline int dbg_hit(Cpu* c, int i, uint64_t a, uint64_t size) noexcept nogil:
    """Whether [a, a + size) touches breakpoint i's range: DRi with its low
    bits below LENi ignored (a breakpoint is aligned to its length, SDM
    18.2.5) and LENi bytes long."""
    cdef uint64_t n = dbg_len(c, i)
    cdef uint64_t lo = dbg_addr(c, i) & ~(n - 1)
    return a < lo + n and lo < a + size


cdef inline int dbg_raise(Cpu* c, uint64_t dr6) noexcept nogil:
    """Raise #DB (a hardware exception, event type 3) whose conditions are
    dr6 (B0-B3 BD BS BT); handle_event reports them in DR6 or in the exit
    qualification."""
    c.exc_vector = EXC_DB
    c.exc_type = 3
    c.exc_has_error = 0
    c.exc_error = 0
    c.exc_len = 0
    c.exc_dr6 = dr6 & (0xF | DR6_BD | DR6_BS | DR6_BT)
    return RC_EXCEPTION


cdef inline void dbg_report(Cpu* c, uint64_t dr6) noexcept nogil:
    """A #DB is delivered through the IDT: DR6 takes its conditions (B0-B3
    replaced, BD BS BT added) and DR7.GD is cleared (SDM 18.2.3, 18.2.4)."""
    c.dr6 = (c.dr6 & ~0xFULL) | dr6 | DR6_FIXED1
    c.dr7 &= ~(<uint64_t>DR7_GD)


cdef int dbg_boundary(Cpu* c) noexcept nogil:
    """At an instruction boundary, before the fetch (SDM Vol. 3A 6.9, Table
    6-2: traps of the previous instruction, then code breakpoints, then
    fetch faults): traps held pending (loaded by VM entry, or left after a
    MOV SS shadow) are delivered with RIP on this instruction; then the
    instruction breakpoints at its first byte's linear address, unless
    RF is set, raise a fault.  Both wait while blocking by MOV SS lasts."""
    cdef uint64_t lin, hits = 0
    cdef int i, rc
    if c.hbp_n:
        # [hdbg] the host debugger's execute breakpoints come first: they
        # stop before anything of this boundary happens (core/debugger.pxi).
        rc = hd_boundary(c)
        if rc:
            return rc
    if c.interruptibility & 2:
        return RC_OK
    if c.dbg_pending:
        hits = c.dbg_pending & ~(<uint64_t>PDE_ENABLED_BP)
        c.dbg_pending = 0
        return dbg_raise(c, hits)
    if (c.rflags & F_RF) or not (c.dr7 & 0xFF):
        return RC_OK
    lin = c.rip if c.long64 else ((c.seg[S_CS].base + c.rip) & 0xFFFFFFFFULL)
    for i in range(4):
        if (c.dr7 >> (2 * i)) & 3 and dbg_rw(c, i) == 0 and dbg_hit(c, i, lin, 1):
            hits |= 1ULL << i
    if hits:
        return dbg_raise(c, hits)
    return RC_OK


cdef int dbg_exec(Cpu* c, Insn* d) noexcept nogil:
    """Run one decoded instruction with its debug traps (the run loop's
    one-at-a-time step while dbg_on), retiring it as the loop does.  RF is
    cleared as the instruction starts, after the instruction-breakpoint
    check (SDM 18.3.1.1; IRET and task switches load it again); an
    instruction that does not start after all (a VM exit in its place, port
    I/O waiting for Python) keeps it.  Then the traps it caused: single-step
    (BS) when TF was 1 before it (an instruction that sets TF, POPF or IRET,
    is not followed by one; one that clears it is, 18.3.1.4) and the data or
    I/O breakpoints it hit.  A REP string instruction paused after an
    iteration that is not its last (RC_REP_PAUSED) raises them with RIP
    still on it and RF = 1 in the pushed image (18.3.1.1).  Traps are held
    while the instruction left blocking by MOV SS."""
    cdef uint64_t tf0 = c.rflags & F_TF
    cdef uint64_t rf0 = c.rflags & F_RF
    cdef uint32_t shadow = c.interruptibility & 3
    cdef uint64_t traps
    cdef int rc
    c.dbg_hits = 0
    c.hbp_skip_on = 0           # [hdbg] an instruction starts: breakpoints count again
    c.hd_stop = 0
    if c.lf_kind != LF_NONE and not (d.flags & INSN_LAZY):
        flags_compute(c)
    c.rflags &= ~(<uint64_t>F_RF)
    rc = d.fn(c, d)
    if rc == RC_BRANCHED:
        rc = RC_OK
    if rc == RC_OK:
        c.rip = c.next_rip
        c.icount += 1
        if shadow:
            c.interruptibility &= ~shadow
    elif rc == RC_EXCEPTION or rc == RC_TRANSFERRED or rc == RC_HALTED:
        return rc
    elif rc != RC_REP_PAUSED:
        c.rflags |= rf0
        return rc
    traps = c.dbg_hits | (DR6_BS if tf0 else 0)
    c.dbg_hits = 0
    if c.hd_stop == HDS_WATCH:
        # [hdbg] a watchpoint of the host debugger: the loop stops after the
        # instruction (or the REP iteration); its own debug traps wait for
        # the next boundary as pending debug exceptions.
        if traps:
            c.dbg_pending |= traps | (PDE_ENABLED_BP if (traps & 0xF) else 0)
        if rc == RC_REP_PAUSED and c.dbg_pending:
            c.rflags |= F_RF
        return RC_HOSTDBG
    if traps == 0 and c.dbg_pending == 0:
        return rc
    if c.interruptibility & 2:
        c.dbg_pending |= traps | (PDE_ENABLED_BP if (traps & 0xF) else 0)
        return rc
    traps |= c.dbg_pending & ~(<uint64_t>PDE_ENABLED_BP)
    c.dbg_pending = 0
    if rc == RC_REP_PAUSED:
        c.rflags |= F_RF
    return dbg_raise(c, traps)


cdef uint32_t dbg_tlb_perm(Cpu* c, uint64_t lin, uint64_t hpa, uint32_t perm) noexcept nogil:
    """TLB permissions for the linear page of lin while data breakpoints are
    enabled: a page that holds a watched byte keeps write permission (R/W =
    01) or read and write permission (R/W = 11) out of the TLB, so those
    accesses take the slow path and reach dbg_data."""
    cdef uint64_t page = lin & ~0xFFFULL
    cdef int i
    cdef uint64_t rw
    if c.hwp_n:
        perm = hd_tlb_perm(c, lin, hpa, perm)      # [hdbg] core/debugger.pxi
    for i in range(4):
        if not ((c.dr7 >> (2 * i)) & 3):
            continue
        rw = dbg_rw(c, i)
        if (rw == 1 or rw == 3) and dbg_hit(c, i, page, 4096):
            perm &= ~(<uint32_t>(TLB_W | TLB_UW | TLB_WC | TLB_UWC))
            if rw == 3:
                perm &= ~(<uint32_t>(TLB_R | TLB_UR))
    return perm


cdef void dbg_data(Cpu* c, uint64_t lin, int size, int write) noexcept nogil:
    """A data access of size bytes at lin: note the enabled data breakpoints
    it touches (a write for R/W = 01, a read or write for 11) as conditions
    of the current instruction's #DB trap (SDM 18.3.1.2)."""
    cdef int i
    cdef uint64_t rw
    if c.hwp_n:
        hd_data(c, lin, size, write)                # [hdbg] core/debugger.pxi
    for i in range(4):
        if not ((c.dr7 >> (2 * i)) & 3):
            continue
        rw = dbg_rw(c, i)
        if (rw == 3 or (rw == 1 and write)) and dbg_hit(c, i, lin, <uint64_t>size):
            c.dbg_hits |= 1U << i


cdef void dbg_io(Cpu* c, uint32_t port, int size) noexcept nogil:
    """An I/O access to [port, port + size): with CR4.DE = 1 the enabled
    breakpoints with R/W = 10 match on DRi's port address (SDM 18.2.4,
    18.3.1.2).  Called once the instruction is known to complete."""
    cdef int i
    if not (c.dr7 & 0xFF) or not (c.cr4 & CR4_DE):
        return
    for i in range(4):
        if (c.dr7 >> (2 * i)) & 3 and dbg_rw(c, i) == 2:
            if dbg_hit(c, i, <uint64_t>port, <uint64_t>size):
                c.dbg_hits |= 1U << i


cdef inline void dbg_changed(Cpu* c) noexcept nogil:
    """DR0-DR3, DR7 or CR4.DE changed, or VM entry loaded them: TLB entries
    made under the old breakpoints may let a watched access through, so
    they go; and while a breakpoint is enabled or a trap pending no
    translated block may run, so every block is dropped (build_block makes
    none while that lasts, and block_fits need only test TF and RF)."""
    tlb_flush(c)
    if (c.dr7 & 0xFF) or c.dbg_pending:
        c.block_epoch += 1
