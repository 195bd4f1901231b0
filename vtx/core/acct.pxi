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


cdef void acct_copy(Cpu* c, Acct* b) noexcept nogil:
    """Copy into b the parts of c.acct a run's delta needs (acct_dict): the
    counts, the scalars and the rows of the reasons and tables in use (a
    reason not counted yet has all its rows zero), so that a snapshot costs
    little when few reasons occur."""
    cdef Acct* a = c.acct
    cdef int r
    memcpy(b.count, a.count, sizeof(a.count))
    for r in range(128):
        if a.count[r]:
            b.rt_ticks[r] = a.rt_ticks[r]
            b.handler_ticks[r] = a.handler_ticks[r]
            b.guest_ticks[r] = a.guest_ticks[r]
            b.guest_insns[r] = a.guest_insns[r]
            b.handler_insns[r] = a.handler_insns[r]
            b.min_ticks[r] = a.min_ticks[r]
            b.max_ticks[r] = a.max_ticks[r]
            if a.run_of[r] == a.run:
                b.run_min[r] = a.run_min[r]
                b.run_max[r] = a.run_max[r]
            else:
                b.run_min[r] = 0
                b.run_max[r] = 0
            memcpy(b.hist[r], a.hist[r], sizeof(a.hist[r]))
    if a.io.used or a.io.other:
        memcpy(&b.io, &a.io, sizeof(a.io))
    else:
        b.io.used = 0
        b.io.other = 0
    if a.msr.used or a.msr.other:
        memcpy(&b.msr, &a.msr, sizeof(a.msr))
    else:
        b.msr.used = 0
        b.msr.other = 0
    memcpy(b.cr, a.cr, sizeof(a.cr))
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
    memset(c.acct, 0, sizeof(Acct))
    c.acct.entries0 = e
    c.acct.guest_i0 = c.icount
    c.acct.exit_i0 = c.icount


cdef class AcctMark:
    """A run's accounting: ``begin`` snapshots the processor's before the
    run, ``end()`` after it, and ``to_dict()`` builds the difference when
    someone reads it (VM.run keeps one per run in RunResult.acct, so a run
    whose stats nobody reads pays two snapshots and no Python objects)."""
    cdef Cpu* c
    cdef Acct* base
    cdef Acct* last
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
        """Snapshot the accounting at the run's end (once)."""
        if self.last == NULL:
            self.last = _acct_get()
            acct_copy(self.c, self.last)
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
    """A mark at the start of a run; the run's minimum and maximum start
    again."""
    cdef AcctMark m = AcctMark.__new__(AcctMark)
    m.c = c
    m.owner = owner
    m.base = _acct_get()
    acct_copy(c, m.base)
    c.acct.run += 1
    return m
