# The accounting's detail read out to Python (docs/architecture.rst,
# "Accounting and cost profiles").  Counting happens in C at the points the
# model passes anyway (record_exit and account_exit_time in
# core/vmx/exit.pxi, a flush and a walk in core/mmu.pxi, an event in
# core/exceptions.pxi, VMREAD and VMWRITE in core/vmx/insn.pxi and the API);
# here the counts become a dict, cumulative or as a run's delta, for
# vtx/overhead/stats.py.

from libc.stdlib cimport malloc


def set_accounting(on):
    """Switch the accounting's detail on (the default) or off for every
    processor: the guest-time split, the distribution of the round trip per
    reason and the qualification kinds.  The counts per reason, their
    round-trip time and the other counters stay on.  Off only to measure
    what the detail costs (benchmarks/test_overhead.py)."""
    global acct_detail
    if not isinstance(on, bool):
        raise TypeError(f"set_accounting takes a bool, not {on!r}")
    acct_detail = 1 if on else 0


def accounting_enabled():
    """Whether the accounting's detail is on (set_accounting)."""
    return acct_detail != 0


def nanoseconds_per_tick():
    """The ratio the accounting converts the host's tick counts with."""
    return ns_per_tick()


# Buffers for the marks of runs, kept for reuse: an Acct is some 80 KiB, and
# a run takes two snapshots of it (before and after); allocating and freeing
# that much per run costs more than the run's fixed cost (page faults).
cdef Acct* _acct_pool[8]
cdef int _acct_pool_n = 0


cdef Acct* _acct_get() except NULL:
    global _acct_pool_n
    cdef Acct* b
    if _acct_pool_n:
        _acct_pool_n -= 1
        return _acct_pool[_acct_pool_n]
    b = <Acct*>malloc(sizeof(Acct))
    if b == NULL:
        raise MemoryError()
    return b


cdef void _acct_put(Acct* b) noexcept:
    global _acct_pool_n
    if _acct_pool_n < 8:
        _acct_pool[_acct_pool_n] = b
        _acct_pool_n += 1
    else:
        free(b)


cdef void acct_scalars(Cpu* c, Acct* b) noexcept nogil:
    """Copy into b the counters of c.acct that are not per reason (a mark's
    start and end take them whole: a few hundred bytes)."""
    cdef Acct* a = c.acct
    memcpy(b.delivered, a.delivered, sizeof(a.delivered))
    b.vmread_x86 = a.vmread_x86
    b.vmwrite_x86 = a.vmwrite_x86
    b.vmread_x86_exits = a.vmread_x86_exits
    b.vmwrite_x86_exits = a.vmwrite_x86_exits
    b.vmread_api = a.vmread_api
    b.vmwrite_api = a.vmwrite_api
    b.tlb_flushes = a.tlb_flushes
    b.page_walks = a.page_walks
    b.entries0 = c.entries          # in a snapshot: the entries so far


cdef void acct_run_rows(Cpu* c, uint32_t run, Acct* base, Acct* last) noexcept nogil:
    """At the end of run ``run``: into ``base`` the rows and tables of the
    reasons it had as they were before it (saved by acct_touch at each
    one's first change), into ``last`` as they are now; every other reason
    gets a count of zero in both, so acct_dict sees no difference there
    and reads nothing else of it."""
    cdef Acct* a = c.acct
    cdef AcctRow* s
    cdef int r
    for r in range(128):
        if a.saved_of[r] != run:
            base.count[r] = 0
            last.count[r] = 0
            continue
        s = &a.saved[r]
        base.count[r] = s.count
        base.rt_ticks[r] = s.rt_ticks
        base.handler_ticks[r] = s.handler_ticks
        base.guest_ticks[r] = s.guest_ticks
        base.guest_insns[r] = s.guest_insns
        base.handler_insns[r] = s.handler_insns
        memcpy(base.hist[r], s.hist, sizeof(s.hist))
        last.count[r] = a.count[r]
        last.rt_ticks[r] = a.rt_ticks[r]
        last.handler_ticks[r] = a.handler_ticks[r]
        last.guest_ticks[r] = a.guest_ticks[r]
        last.guest_insns[r] = a.guest_insns[r]
        last.handler_insns[r] = a.handler_insns[r]
        if a.run_of[r] == run:          # the run's own extremes (acct_sample)
            last.run_min[r] = a.run_min[r]
            last.run_max[r] = a.run_max[r]
        else:
            last.run_min[r] = 0
            last.run_max[r] = 0
        memcpy(last.hist[r], a.hist[r], sizeof(a.hist[r]))
    if a.io_saved_of == run:
        memcpy(&base.io, &a.io_saved, sizeof(a.io))
        memcpy(&last.io, &a.io, sizeof(a.io))
    else:
        base.io.used = last.io.used = 0
        base.io.other = last.io.other = 0
    if a.msr_saved_of == run:
        memcpy(&base.msr, &a.msr_saved, sizeof(a.msr))
        memcpy(&last.msr, &a.msr, sizeof(a.msr))
    else:
        base.msr.used = last.msr.used = 0
        base.msr.other = last.msr.other = 0
    if a.cr_saved_of == run:
        memcpy(base.cr, a.cr_saved, sizeof(a.cr))
        memcpy(last.cr, a.cr, sizeof(a.cr))
    else:
        memset(base.cr, 0, sizeof(a.cr))
        memset(last.cr, 0, sizeof(a.cr))


cdef dict _qual_dict(AcctQual* t, AcctQual* base):
    cdef dict d = {}
    cdef uint64_t n
    cdef int i
    if t.used == 0:
        return d
    for i in range(64):
        if t.key[i]:
            n = t.count[i]
            if base != NULL and base.used and base.key[i] == t.key[i]:
                n -= base.count[i]
            if n:
                d[t.key[i] - 1] = n
    return d


cdef dict acct_dict(Acct* a, Acct* base, uint64_t entries):
    """The accounting as a dict: ``a`` cumulative since the last reset (base
    NULL, the extremes of all time) or a snapshot at a run's end and
    ``base`` one at its start (the run's own extremes); ``entries`` the VM
    entries of the view.  Times are nanoseconds; the histogram's buckets
    stay in ticks (bucket index -> count), the extremes too, with
    ``ns_per_tick`` to convert them (vtx/overhead/stats.py)."""
    cdef dict reasons = {}
    cdef dict hist
    cdef uint64_t n, h
    cdef int r, i
    cdef int delta
    cdef double k = ns_per_tick()
    for r in range(128):
        n = a.count[r] - (base.count[r] if base != NULL else 0)
        if n == 0:
            continue
        delta = base != NULL and base.count[r] != 0
        hist = {}
        for i in range(128):
            h = a.hist[r][i]
            if delta:
                h -= base.hist[r][i]
            if h:
                hist[i] = h
        if delta:
            reasons[r] = (n, <uint64_t>((a.rt_ticks[r] - base.rt_ticks[r]) * k),
                          <uint64_t>((a.handler_ticks[r] - base.handler_ticks[r]) * k),
                          <uint64_t>((a.guest_ticks[r] - base.guest_ticks[r]) * k),
                          a.guest_insns[r] - base.guest_insns[r], a.handler_insns[r] - base.handler_insns[r],
                          a.run_min[r], a.run_max[r], hist)
        else:
            reasons[r] = (n, <uint64_t>(a.rt_ticks[r] * k), <uint64_t>(a.handler_ticks[r] * k),
                          <uint64_t>(a.guest_ticks[r] * k), a.guest_insns[r], a.handler_insns[r],
                          a.run_min[r] if base != NULL else a.min_ticks[r],
                          a.run_max[r] if base != NULL else a.max_ticks[r], hist)
    cr = {}
    for i in range(64):
        n = a.cr[i] - (base.cr[i] if base != NULL else 0)
        if n:
            cr[i] = n
    return {
        "reasons": reasons,
        "io": _qual_dict(&a.io, &base.io if base != NULL else NULL),
        "io_other": a.io.other - (base.io.other if base != NULL else 0),
        "msr": _qual_dict(&a.msr, &base.msr if base != NULL else NULL),
        "msr_other": a.msr.other - (base.msr.other if base != NULL else 0),
        "cr": cr,
        "vmread_x86": a.vmread_x86 - (base.vmread_x86 if base != NULL else 0),
        "vmwrite_x86": a.vmwrite_x86 - (base.vmwrite_x86 if base != NULL else 0),
        "vmread_x86_exits": a.vmread_x86_exits - (base.vmread_x86_exits if base != NULL else 0),
        "vmwrite_x86_exits": a.vmwrite_x86_exits - (base.vmwrite_x86_exits if base != NULL else 0),
        "vmread_api": a.vmread_api - (base.vmread_api if base != NULL else 0),
        "vmwrite_api": a.vmwrite_api - (base.vmwrite_api if base != NULL else 0),
        "delivered": [a.delivered[i] - (base.delivered[i] if base != NULL else 0) for i in range(8)],
        "tlb_flushes": a.tlb_flushes - (base.tlb_flushes if base != NULL else 0),
        "page_walks": a.page_walks - (base.page_walks if base != NULL else 0),
        "entries": entries,
        "ns_per_tick": k,
    }


cdef dict acct_cumulative(Cpu* c):
    return acct_dict(c.acct, NULL, c.entries - c.acct.entries0)


cdef void acct_reset(Cpu* c) noexcept nogil:
    """Zero the detail (the cumulative view starts again).  Cpu.exit_count,
    exit_ticks, icount and entries, the processor's history that snapshots
    keep, are not touched."""
    cdef uint64_t e = c.entries
    cdef uint32_t run = c.acct.run
    memset(c.acct, 0, sizeof(Acct))
    # The run number goes on: a run that a handler resets in the middle
    # saves its rows again, as zero, at their next change (acct_touch), so
    # its stats are what came after the reset.
    c.acct.run = run
    c.acct.entries0 = e
    c.acct.guest_i0 = c.icount
    c.acct.exit_i0 = c.icount


cdef class AcctMark:
    """A run's accounting.  Made before the run (``_acct_mark_of``), it
    copies the counters that are not per reason and starts a new run
    number; during the run the exit path keeps each reason's rows as they
    were at its first change in the run (acct_touch, core/vmx/exit.pxi);
    ``end()``, right after the run, copies those and the current rows of
    just the reasons the run had; ``to_dict()`` builds the difference when
    someone reads it.  So a run whose stats nobody reads copies a few
    hundred bytes and makes no Python objects.  ``end()`` belongs before the
    next mark of the same processor (which starts another run: VM.run and
    BareMetal.run end each mark at once)."""
    cdef Cpu* c
    cdef Acct* base
    cdef Acct* last
    cdef uint32_t run
    cdef dict cached
    cdef object owner         # keeps the machine, and so the Cpu, alive

    def __dealloc__(self):
        if self.base != NULL:
            _acct_put(self.base)
            self.base = NULL
        if self.last != NULL:
            _acct_put(self.last)
            self.last = NULL

    def end(self):
        """Take the run's rows at its end (once)."""
        if self.last == NULL and self.base != NULL:
            self.last = _acct_get()
            acct_scalars(self.c, self.last)
            acct_run_rows(self.c, self.run, self.base, self.last)
        return self

    def to_dict(self):
        if self.cached is None:
            self.end()
            self.cached = acct_dict(self.last, self.base, self.last.entries0 - self.base.entries0)
            _acct_put(self.base)
            _acct_put(self.last)
            self.base = self.last = NULL
        return self.cached

    def delta(self):
        """end() and to_dict()."""
        return self.end().to_dict()


cdef AcctMark _acct_mark_of(Cpu* c, object owner):
    """A mark at the start of a run: a new run number, so that the rows, the
    tables and the extremes of each reason start again lazily, at its first
    exit in the run (acct_touch, run_of)."""
    cdef AcctMark m = AcctMark.__new__(AcctMark)
    m.c = c
    m.owner = owner
    m.base = _acct_get()
    acct_scalars(c, m.base)
    c.acct.run += 1
    m.run = c.acct.run
    return m
