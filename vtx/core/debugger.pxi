# The host debugger: execute breakpoints, watchpoints and the instruction
# trace that vtx.debug (and its GDB stub) set from Python.  They are the
# hypervisor's, not the guest's: the guest sees no DR register change, no
# #DB and no byte of its memory patched (docs/architecture.rst, "Debugging").
#
# They ride on the debug path of core/insn/debug.pxi: while Cpu.hdbg is not
# zero, dbg_on() holds, so no translated block is built or run and every
# instruction goes one at a time through dbg_boundary (where the execute
# breakpoints are compared with the linear address of CS:RIP, before the
# fetch, as an instruction breakpoint of DR7 is) and dbg_exec (after which a
# watchpoint hit stops the loop, the access done, as a data breakpoint's trap
# follows its instruction).  Watchpoints use the data breakpoints' way
# through the TLB: a page holding a watched byte gets no TLB entry with the
# permission the watch needs, so those accesses leave the inline path for
# lin_read/lin_write, which report them to hd_data.  Breakpoints on a
# guest-physical address are compared once the fetch is translated, just
# before the instruction runs (hd_fetched).  With nothing set the cost is one
# more OR in dbg_on and one test in build_block.
#
# The loop leaves with RC_HOSTDBG; Cpu.hd_stop says why.  An instruction
# trace fills Cpu.trace_buf; when it is full the loop leaves with
# HDS_TRACE before the next traced instruction, Python takes the records,
# and the run goes on without leaving the guest.

cdef enum:
    RC_HOSTDBG = 40         # the host debugger stops the loop (Cpu.hd_stop says why)
    HD_BREAK = 1            # Cpu.hdbg bits
    HD_WATCH = 2
    HD_TRACE = 4
    HD_PBREAK = 8           # physical execute breakpoints (checked once the fetch is translated)
    HDS_BREAK = 1           # Cpu.hd_stop
    HDS_WATCH = 2
    HDS_TRACE = 3
    TRACE_REAL = 0          # TraceRec.mode; Cpu.trace_modes has one bit per mode
    TRACE_V86 = 1
    TRACE_PROT16 = 2
    TRACE_PROT32 = 3
    TRACE_LONG64 = 4


cdef inline uint64_t hd_lin(Cpu* c) noexcept nogil:
    """The linear address of CS:RIP (outside 64-bit mode, 32 bits)."""
    if c.long64:
        return c.rip
    return (c.seg[S_CS].base + c.rip) & 0xFFFFFFFFULL


cdef inline int hd_mode(Cpu* c) noexcept nogil:
    """The execution mode the trace records: real-address, virtual-8086,
    16- or 32-bit protected (compatibility mode included) or 64-bit."""
    if not (c.cr0 & CR0_PE):
        return TRACE_REAL
    if c.rflags & F_VM:
        return TRACE_V86
    if c.long64:
        return TRACE_LONG64
    return TRACE_PROT32 if c.code_size == 4 else TRACE_PROT16


cdef int hd_boundary(Cpu* c) noexcept nogil:
    """Before the fetch: stop at an execute breakpoint on CS:RIP, unless the
    run resumes from that very breakpoint (hbp_skip, cleared when an
    instruction starts)."""
    cdef uint64_t lin = hd_lin(c)
    cdef uint32_t i
    if c.hbp_skip_on and lin == c.hbp_skip:
        return RC_OK
    for i in range(c.hbp_n):
        if c.hbp[i] == lin:
            c.hd_stop = HDS_BREAK
            c.hd_index = <int32_t>i
            c.hd_addr = lin
            return RC_HOSTDBG
    return RC_OK


cdef int hd_fetched(Cpu* c, uint64_t lin, uint8_t* p, Insn* d, uint64_t pa) noexcept nogil:
    """The instruction at lin is fetched (host bytes at p, guest-physical
    address pa) and about to run: stop at a physical execute breakpoint
    (unless the run resumes from it), then record it in the trace."""
    cdef uint32_t i
    if c.hbpp_n and not (c.hbp_skip_on and lin == c.hbp_skip):
        for i in range(c.hbpp_n):
            if c.hbpp[i] == pa:
                c.hd_stop = HDS_BREAK
                c.hd_index = <int32_t>(c.hbp_n + i)
                c.hd_addr = lin
                return RC_HOSTDBG
    if c.hdbg & HD_TRACE:
        return hd_trace(c, lin, p, d)
    return RC_OK


cdef int hd_trace(Cpu* c, uint64_t lin, uint8_t* p, Insn* d) noexcept nogil:
    """Record the instruction about to run at lin (host bytes at p) if the
    filters take it; RC_HOSTDBG, nothing run, when the buffer is full."""
    cdef int mode = hd_mode(c)
    cdef TraceRec* r
    cdef int n
    if not ((c.trace_modes >> mode) & 1) or lin < c.trace_lo or lin > c.trace_hi:
        return RC_OK
    if c.trace_n >= c.trace_cap:
        c.hd_stop = HDS_TRACE
        return RC_HOSTDBG
    r = &c.trace_buf[c.trace_n]
    r.lin = lin
    r.rip = c.rip
    r.icount = c.icount
    r.events = c.events
    r.cs = c.seg[S_CS].sel
    r.mode = <uint8_t>mode
    r.len = d.len
    # The bytes of this page only: the rest of an instruction that crosses
    # into the next one is read by Python through the guest's paging.
    n = 4096 - <int>(lin & 0xFFF)
    if n > d.len:
        n = d.len
    r.nbytes = <uint8_t>n
    memcpy(r.bytes, p, n)
    c.trace_n += 1
    return RC_OK


cdef inline int hd_phys(Cpu* c, uint64_t lin, uint64_t* pa) noexcept nogil:
    """The guest-physical address of lin from the TLB entry the access just
    used (0 when there is none: MMIO makes no entry)."""
    cdef TlbEntry* e = tlb_slot(c, lin)
    if e.page != (lin >> 12):
        return 0
    pa[0] = e.hpa | (lin & 0xFFF)
    return 1


cdef uint32_t hd_tlb_perm(Cpu* c, uint64_t lin, uint64_t hpa, uint32_t perm) noexcept nogil:
    """TLB permissions for a page that holds a watched byte: no write for a
    write watch, no read and no write for a read or access watch, so those
    accesses reach hd_data."""
    cdef uint64_t page
    cdef uint32_t i
    cdef HostWatch* w
    for i in range(c.hwp_n):
        w = &c.hwp[i]
        page = (hpa if w.phys else lin) & ~0xFFFULL
        if w.addr < page + 4096 and page < w.addr + w.len:
            perm &= ~(<uint32_t>(TLB_W | TLB_UW | TLB_WC | TLB_UWC))
            if w.kind & 1:
                perm &= ~(<uint32_t>(TLB_R | TLB_UR))
    return perm


cdef void hd_data(Cpu* c, uint64_t lin, int size, int write) noexcept nogil:
    """A completed data access of size bytes at lin: note the first
    watchpoint it hits (the loop stops after the instruction)."""
    cdef uint32_t i
    cdef uint64_t a, pa, lin2
    cdef int n0, part, parts, sz
    cdef HostWatch* w
    if c.hd_stop == HDS_WATCH:
        return
    for i in range(c.hwp_n):
        w = &c.hwp[i]
        if not (w.kind & (2 if write else 1)):
            continue
        if not w.phys:
            if lin < w.addr + w.len and w.addr < lin + <uint64_t>size:
                a = lin
            else:
                continue
        else:
            # Each page's part by its own translation.
            n0 = 4096 - <int>(lin & 0xFFF)
            parts = 2 if n0 < size else 1
            a = 0xFFFFFFFFFFFFFFFFULL
            for part in range(parts):
                lin2 = lin if part == 0 else ((lin + <uint64_t>n0) & (0xFFFFFFFFFFFFFFFFULL if c.long64
                                                                     else 0xFFFFFFFFULL))
                sz = (n0 if parts == 2 else size) if part == 0 else size - n0
                if hd_phys(c, lin2, &pa) and pa < w.addr + w.len and w.addr < pa + <uint64_t>sz:
                    a = pa - (0 if part == 0 else <uint64_t>n0)
                    break
            if a == 0xFFFFFFFFFFFFFFFFULL:
                continue
        c.hd_stop = HDS_WATCH
        c.hd_index = <int32_t>i
        c.hd_addr = a
        c.hd_size = <uint32_t>size
        c.hd_write = <uint32_t>write
        return
