# VM exits (SDM Vol. 3C chapter 28): record the exit information, save the
# guest state into the VMCS, leave non-root operation, and then either load
# the host state and go on with x86 code at HOST_RIP (root-mode software on
# the model: c.vmx.host_x86) or return to the Python hypervisor, for which
# the host-state area is checked at entry but not loaded (Python is the
# host).  The guest's general registers stay in the register file, as they
# do on hardware (SDM 28.1).

from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC


cdef extern from *:
    """
    #include <time.h>
    #if defined(__x86_64__) || defined(__i386__)
    #include <x86intrin.h>
    static inline uint64_t vtx_ticks(void) { return __rdtsc(); }
    #define VTX_TICKS_ARE_NS 0
    #else
    static inline uint64_t vtx_ticks(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    #define VTX_TICKS_ARE_NS 1
    #endif
    """
    uint64_t vtx_ticks() nogil
    int VTX_TICKS_ARE_NS


cdef inline uint64_t now_ticks() noexcept nogil:
    """The clock of the exit accounting (decision 10): the time-stamp counter
    where the host has one (about 10 ns a read against 23 for the monotonic
    clock, and read twice per exit round trip), converted to nanoseconds
    only when the figures are read (ticks_to_ns).  Elsewhere nanoseconds."""
    return vtx_ticks()


cdef inline uint64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


# The ticks-to-nanoseconds ratio, measured against the monotonic clock from
# the first look (at import) to the latest; frozen once the interval is long
# enough to make it precise (the host's TSC is constant and non-stop).
cdef uint64_t _tick_ns0 = now_ns()
cdef uint64_t _tick_t0 = now_ticks()
cdef double _ns_per_tick = 0.0


cdef double ns_per_tick() noexcept nogil:
    global _ns_per_tick
    cdef uint64_t dn, dt
    if VTX_TICKS_ARE_NS:
        return 1.0
    if _ns_per_tick != 0.0:
        return _ns_per_tick
    dn = now_ns() - _tick_ns0
    dt = now_ticks() - _tick_t0
    if dt == 0 or dn == 0:
        return 1.0
    if dn >= 50000000:             # 50 ms: precise to better than a part in 10^4
        _ns_per_tick = <double>dn / <double>dt
        return _ns_per_tick
    return <double>dn / <double>dt


cdef inline uint64_t ticks_to_ns(uint64_t ticks) noexcept nogil:
    return <uint64_t>(<double>ticks * ns_per_tick())


cdef void save_guest_state(Cpu* c) noexcept nogil:
    """SDM 27.3: the processor state saved into the guest-state area.

    Through vwt: a saved value that differs from the one the last VM entry
    loaded marks the checks that read it, so the next VMRESUME checks what
    the guest changed and nothing else (docs/architecture.rst, "Entry checks
    at VMRESUME").  This needs no argument about what the instructions can
    produce: whatever the guest did, a changed input is re-checked."""
    cdef int i
    cdef uint64_t changed = 0
    cdef uint64_t pend
    vwt(c, VMCS_OFF_GUEST_CR0, 8, c.cr0)
    vwt(c, VMCS_OFF_GUEST_CR3, 8, c.cr3)
    vwt(c, VMCS_OFF_GUEST_CR4, 8, c.cr4)
    if c.vmx.ctl.exit_ctl & EXIT_CTL_SAVE_DEBUG_CONTROLS:
        vwt(c, VMCS_OFF_GUEST_DR7, 8, c.dr7)
        vwt(c, VMCS_OFF_GUEST_IA32_DEBUGCTL, 8, c.debugctl)
    vwt(c, VMCS_OFF_GUEST_RSP, 8, c.regs[R_SP])
    vwt(c, VMCS_OFF_GUEST_RIP, 8, c.rip)
    vwt(c, VMCS_OFF_GUEST_RFLAGS, 8, c.rflags)
    # The segment registers rarely change between exits: compare all 32
    # fields without a branch first, and go field by field only if one did.
    for i in range(8):
        changed |= (vr(c, off_sel(i), 2) ^ c.seg[i].sel) | (vr(c, off_base(i), 8) ^ c.seg[i].base) | \
                   (vr(c, off_limit(i), 4) ^ c.seg[i].limit) | (vr(c, off_ar(i), 4) ^ c.seg[i].ar)
    if changed:
        for i in range(8):
            vwt(c, off_sel(i), 2, c.seg[i].sel)
            vwt(c, off_base(i), 8, c.seg[i].base)
            vwt(c, off_limit(i), 4, c.seg[i].limit)
            vwt(c, off_ar(i), 4, c.seg[i].ar)
    vwt(c, VMCS_OFF_GUEST_GDTR_BASE, 8, c.gdtr_base)
    vwt(c, VMCS_OFF_GUEST_GDTR_LIMIT, 4, c.gdtr_limit)
    vwt(c, VMCS_OFF_GUEST_IDTR_BASE, 8, c.idtr_base)
    vwt(c, VMCS_OFF_GUEST_IDTR_LIMIT, 4, c.idtr_limit)
    vwt(c, VMCS_OFF_GUEST_IA32_SYSENTER_CS, 4, c.sysenter_cs)
    vwt(c, VMCS_OFF_GUEST_IA32_SYSENTER_ESP, 8, c.sysenter_esp)
    vwt(c, VMCS_OFF_GUEST_IA32_SYSENTER_EIP, 8, c.sysenter_eip)
    if c.vmx.ctl.exit_ctl & EXIT_CTL_SAVE_IA32_EFER:
        vwt(c, VMCS_OFF_GUEST_IA32_EFER, 8, c.efer)
    if c.vmx.ctl.exit_ctl & EXIT_CTL_SAVE_IA32_PAT:
        vwt(c, VMCS_OFF_GUEST_IA32_PAT, 8, c.pat)
    if c.vmx.ept and c.paging == 3:
        for i in range(4):
            vwt(c, VMCS_OFF_GUEST_PDPTE0 + 8 * i, 8, c.pdpte[i])
    vwt(c, VMCS_OFF_GUEST_ACTIVITY_STATE, 4, c.activity)
    vwt(c, VMCS_OFF_GUEST_INTERRUPTIBILITY_STATE, 4, c.interruptibility)
    apicv_exit(c)       # the guest interrupt status (core/vmx/apicv.pxi)
    # Pending debug exceptions (SDM 28.3.4): the debug traps held for a
    # later boundary (core/insn/debug.pxi: those of a MOV SS and the
    # instruction after it, B0-B3 with bit 12 and BS); and in a STI or
    # MOV-SS shadow or the HLT state with RFLAGS.TF 1 and IA32_DEBUGCTL.BTF 0
    # a single-step trap is pending, recorded as BS (bit 14).  The entry
    # check of 27.3.1.5 demands exactly that BS, so the saved state always
    # enters again.
    pend = c.dbg_pending
    if (c.interruptibility & 3) or c.activity == 1:
        pend = (pend & ~0x4000ULL) | (0x4000 if (c.rflags & F_TF) and not (c.debugctl & 2) else 0)
    vwt(c, VMCS_OFF_GUEST_PENDING_DEBUG_EXCEPTIONS, 8, pend)
    c.dbg_pending = 0           # the guest's: VM entry loads them back
    # "IA-32e mode guest" records EFER.LMA on every exit (IA32_VMX_MISC bit 5).
    if c.efer & EFER_LMA:
        c.vmx.ctl.entry_ctl |= ENTRY_CTL_IA32E_MODE_GUEST
    else:
        c.vmx.ctl.entry_ctl &= ~(<uint32_t>ENTRY_CTL_IA32E_MODE_GUEST)
    vwt(c, VMCS_OFF_VM_ENTRY_CONTROLS, 4, c.vmx.ctl.entry_ctl)


# --- the TLB across VM exits and entries (SDM Vol. 3C 29.4.3.3) --------------
# Without VPID (or with VPID 0) every VM exit and VM entry invalidates the
# mappings of VPID 0000H, so the TLB is flushed.  With VPID enabled the
# guest's mappings are tagged with its VPID and survive the round trip; the
# hypervisor invalidates them with INVVPID/INVEPT (VCpu.invvpid, .invept).
# The model keeps them when the entry comes back to the same context
# (VPID, EPTP, CR3, and the CR0/CR4/EFER bits its permissions were computed
# with) and flushes otherwise, which is always allowed.  PAE paging, whose
# PDPTEs entry reloads, is flushed too.

cdef inline int vpid_active(Cpu* c) noexcept nogil:
    return (c.vmx.ctl.proc2 & PROC2_ENABLE_VPID) != 0 and vr(c, VMCS_OFF_VIRTUAL_PROCESSOR_ID, 2) != 0


cdef void tlb_at_exit(Cpu* c) noexcept nogil:
    # An x86 host uses the TLB itself: the model's TLB has no VPID tags,
    # so the guest's mappings go (flushing is always allowed).
    if vpid_active(c) and c.paging != 3 and not c.vmx.host_x86:
        c.tlb_kept = 1
        c.tlb_vpid = <uint32_t>vr(c, VMCS_OFF_VIRTUAL_PROCESSOR_ID, 2)
        c.tlb_cr0 = c.cr0 & (CR0_PE | CR0_WP | CR0_PG)
        c.tlb_cr3 = c.cr3
        c.tlb_cr4 = c.cr4 & (CR4_PSE | CR4_PAE | CR4_PGE | CR4_PCIDE | CR4_SMEP | CR4_SMAP)
        c.tlb_efer = c.efer & (EFER_LMA | EFER_NXE)
        c.tlb_eptp = c.vmx.ctl.eptp if c.vmx.ept else 1
    else:
        c.tlb_kept = 0
        tlb_flush(c)


cdef void tlb_at_entry(Cpu* c) noexcept nogil:
    """After the guest state and controls are loaded."""
    if c.vmx.host_x86 or not (c.tlb_kept and vpid_active(c) and c.paging != 3 and
            c.tlb_vpid == vr(c, VMCS_OFF_VIRTUAL_PROCESSOR_ID, 2) and
            c.tlb_cr0 == c.cr0 & (CR0_PE | CR0_WP | CR0_PG) and c.tlb_cr3 == c.cr3 and
            c.tlb_cr4 == c.cr4 & (CR4_PSE | CR4_PAE | CR4_PGE | CR4_PCIDE | CR4_SMEP | CR4_SMAP) and
            c.tlb_efer == c.efer & (EFER_LMA | EFER_NXE) and
            c.tlb_eptp == (c.vmx.ctl.eptp if c.vmx.ept else 1) and c.tlb_cfg == tlb_config(c)):
        tlb_flush(c)
    c.tlb_kept = 0


# CR0 bits VM exit loads from HOST_CR0; the others (ET, CD, NW, reserved)
# keep their values (SDM 28.5.1).
cdef uint64_t CR0_HOST_LOADED = CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_NE | CR0_WP | CR0_AM | CR0_PG


cdef int vmx_abort(Cpu* c, uint32_t indicator) noexcept nogil:
    """VMX abort (SDM 28.7): the indicator into bytes 4-7 of the VMCS region,
    then the shutdown state."""
    vw(c, VMCS_OFF_ABORT, 4, indicator)
    c.activity = 2
    return RC_SHUTDOWN


cdef int exit_msr_area(Cpu* c, int store) noexcept nogil:
    """The VM-exit MSR areas: with store = 1 the MSR-store area (SDM 28.4,
    "Saving MSRs"): the value of each MSR it lists goes into bits 127:64 of
    its entry, as RDMSR reads it in VMX root operation; with store = 0 the
    MSR-load area (SDM 28.6, "Loading MSRs"): each MSR it lists is loaded as
    WRMSR would.  An entry the processor cannot process (index bits 31:8 =
    8, the x2APIC range; reserved bits 63:32 of the first quadword set;
    IA32_SMBASE outside SMM for a store; IA32_FS_BASE, IA32_GS_BASE or
    IA32_SMM_MONITOR_CTL for a load; an MSR that RDMSR or WRMSR would fault
    on) is a VMX abort with indicator 1 (store) or 4 (load) (SDM 28.7).  So
    is an area nothing backs, and an entry beyond the recommended maximum
    (Appendix A.6: 512 * (IA32_VMX_MISC[27:25] + 1); more is undefined and
    the model aborts, as for the VM-entry area).  RC_OK or RC_SHUTDOWN."""
    cdef uint64_t count = vr(c, VMCS_OFF_VM_EXIT_MSR_STORE_COUNT if store else VMCS_OFF_VM_EXIT_MSR_LOAD_COUNT, 4)
    cdef uint64_t addr = vr(c, VMCS_OFF_VM_EXIT_MSR_STORE_ADDRESS if store else VMCS_OFF_VM_EXIT_MSR_LOAD_ADDRESS, 8)
    cdef uint64_t limit = 512 * (((VMX_CAP_MISC >> 25) & 7) + 1)
    cdef uint32_t indicator = 1 if store else 4
    cdef uint64_t i, v, hpa
    cdef uint64_t e[2]
    cdef uint32_t idx
    cdef uint8_t* p
    for i in range(count):
        hpa = addr + 16 * i
        p = hpa_ptr(c, hpa, 16, c.vmx.host_x86)
        if i >= limit or p == NULL:
            return vmx_abort(c, indicator)
        memcpy(e, p, 16)
        idx = <uint32_t>e[0]
        if (idx >> 8) == 0x8 or (e[0] >> 32):
            return vmx_abort(c, indicator)
        if store:
            if idx == MSR_IA32_SMBASE or msr_read(c, idx, &v):
                return vmx_abort(c, indicator)
            memcpy(p + 8, &v, 8)
            # The processor wrote RAM: decoded code there is stale.
            if hpa < c.ram_size and (c.code_pages[hpa >> 12] or c.code_pages[(hpa + 15) >> 12]):
                code_page_written(c, hpa & ~0xFFFULL)
                code_page_written(c, (hpa + 15) & ~0xFFFULL)
        else:
            if idx == MSR_IA32_FS_BASE or idx == MSR_IA32_GS_BASE or idx == MSR_IA32_SMM_MONITOR_CTL \
                    or msr_write(c, idx, e[1]):
                return vmx_abort(c, indicator)
    return RC_OK


cdef int load_host_state(Cpu* c) noexcept nogil:
    """SDM 28.5: load the host-state area into the processor for x86 code at
    HOST_RIP.  RC_OK, or RC_SHUTDOWN after a VMX abort."""
    cdef uint32_t exitc = c.vmx.ctl.exit_ctl
    cdef int host64 = (exitc & EXIT_CTL_HOST_ADDRESS_SPACE_SIZE) != 0
    cdef int i
    cdef uint16_t sel
    cdef uint8_t* p
    # 28.5.1: control registers, debug registers, MSRs.
    c.cr0 = (vr(c, VMCS_OFF_HOST_CR0, 8) & CR0_HOST_LOADED) | (c.cr0 & ~CR0_HOST_LOADED)
    c.cr3 = vr(c, VMCS_OFF_HOST_CR3, 8)
    c.cr4 = vr(c, VMCS_OFF_HOST_CR4, 8)
    if host64:
        c.cr4 |= CR4_PAE
    else:
        c.cr4 &= ~(<uint64_t>CR4_PCIDE)
    c.dr7 = 0x400
    c.debugctl = 0
    c.sysenter_cs = vr(c, VMCS_OFF_HOST_IA32_SYSENTER_CS, 4)
    c.sysenter_esp = vr(c, VMCS_OFF_HOST_IA32_SYSENTER_ESP, 8)
    c.sysenter_eip = vr(c, VMCS_OFF_HOST_IA32_SYSENTER_EIP, 8)
    if not host64:
        c.sysenter_esp &= 0xFFFFFFFFULL
        c.sysenter_eip &= 0xFFFFFFFFULL
    if exitc & EXIT_CTL_LOAD_IA32_PAT:
        c.pat = vr(c, VMCS_OFF_HOST_IA32_PAT, 8)
    if exitc & EXIT_CTL_LOAD_IA32_EFER:
        c.efer = vr(c, VMCS_OFF_HOST_IA32_EFER, 8)
    elif host64:
        c.efer |= EFER_LMA | EFER_LME
    else:
        c.efer &= ~(<uint64_t>(EFER_LMA | EFER_LME))
    # 28.5.2: segment and descriptor-table registers.  CS is a flat code
    # segment (64-bit with "host address-space size"), SS DS ES FS GS flat
    # data segments, unusable where the selector is 0; TR a busy TSS.
    c.seg[S_CS].sel = <uint16_t>vr(c, VMCS_OFF_HOST_CS_SELECTOR, 2)
    c.seg[S_CS].base = 0
    c.seg[S_CS].limit = 0xFFFFFFFFU
    c.seg[S_CS].ar = 0xB | AR_S | AR_P | AR_G | (AR_L if host64 else AR_DB)
    for i in range(S_ES, S_GS + 1):
        if i == S_CS:
            continue
        sel = <uint16_t>vr(c, VMCS_OFF_HOST_ES_SELECTOR + 2 * i, 2)
        c.seg[i].sel = sel
        c.seg[i].base = 0
        c.seg[i].limit = 0xFFFFFFFFU
        c.seg[i].ar = (3 | AR_S | AR_P | AR_DB | AR_G) if sel != 0 else AR_UNUSABLE
    c.seg[S_FS].base = vr(c, VMCS_OFF_HOST_FS_BASE, 8)
    c.seg[S_GS].base = vr(c, VMCS_OFF_HOST_GS_BASE, 8)
    c.seg[S_TR].sel = <uint16_t>vr(c, VMCS_OFF_HOST_TR_SELECTOR, 2)
    c.seg[S_TR].base = vr(c, VMCS_OFF_HOST_TR_BASE, 8)
    c.seg[S_TR].limit = 0x67
    c.seg[S_TR].ar = 0xB | AR_P
    c.seg[S_LDTR].sel = 0
    c.seg[S_LDTR].base = 0
    c.seg[S_LDTR].limit = 0
    c.seg[S_LDTR].ar = AR_UNUSABLE
    c.gdtr_base = vr(c, VMCS_OFF_HOST_GDTR_BASE, 8)
    c.gdtr_limit = 0xFFFF
    c.idtr_base = vr(c, VMCS_OFF_HOST_IDTR_BASE, 8)
    c.idtr_limit = 0xFFFF
    # 28.5.3: RIP, RSP, RFLAGS (only bit 1 set); no blocking by STI or MOV SS.
    c.rip = vr(c, VMCS_OFF_HOST_RIP, 8)
    c.regs[R_SP] = vr(c, VMCS_OFF_HOST_RSP, 8)
    c.rflags = 2
    c.interruptibility &= ~(<uint32_t>3)
    c.activity = 0
    update_mode(c)
    # 28.5.4: a PAE host outside IA-32e mode gets its PDPTEs from CR3; one
    # that cannot be loaded is a VMX abort (indicator 4).
    if (c.cr0 & CR0_PG) and (c.cr4 & CR4_PAE) and not (c.efer & EFER_LMA):
        for i in range(4):
            p = hpa_ptr(c, (c.cr3 & 0xFFFFFFE0ULL) + 8 * i, 8, 1)
            if p == NULL:
                return vmx_abort(c, 4)
            memcpy(&c.pdpte[i], p, 8)
            if (c.pdpte[i] & 1) and (c.pdpte[i] & RSVD_PDPTE):
                return vmx_abort(c, 4)
    return RC_OK


# The run-time switch of the accounting's detail (vtx._core.set_accounting):
# with it off an exit costs what it did before the detail existed (the
# counts and the round-trip time per reason stay), so a benchmark can state
# what the detail costs (docs/architecture.rst, "Accounting and cost
# profiles").
cdef int acct_detail = 1


cdef inline void acct_qual(AcctQual* t, uint64_t key) noexcept nogil:
    """Count key in a small open-addressed table; a full table counts it in
    ``other`` (64 distinct ports or MSRs is more than a workload shows)."""
    cdef uint32_t i = <uint32_t>((key * 0x9E3779B97F4A7C15ULL) >> 58)
    cdef int n
    for n in range(64):
        if t.key[i] == key + 1:
            t.count[i] += 1
            return
        if t.key[i] == 0:
            t.key[i] = key + 1
            t.count[i] = 1
            t.used += 1
            return
        i = (i + 1) & 63
    t.other += 1


cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


cdef inline uint32_t acct_bucket(uint64_t t) noexcept nogil:
    """The histogram bucket of a round trip of t ticks: four buckets per
    power of two (quarter octaves; bucket b >= 4 holds [(4 + b % 4) << (b / 4
    - 1), ...) ticks), so a percentile read from it is within 19% (9% from
    the bucket's geometric middle).  Below 4 ticks one bucket per tick; the
    last bucket takes everything from 7 << 30 ticks up."""
    cdef int k
    if t < 4:
        return <uint32_t>t
    k = 63 - __builtin_clzll(t)
    if k > 32:
        return 127
    return <uint32_t>(4 * (k - 1) + ((t >> (k - 2)) & 3))


cdef inline void acct_sample(Acct* a, int r, uint64_t d) noexcept nogil:
    """One round trip of d ticks for reason r: its extremes (0 stands for
    none, so a round trip under a tick counts as one) and its bucket."""
    if a.min_ticks[r] == 0 or d < a.min_ticks[r]:
        a.min_ticks[r] = d if d else 1
    if d > a.max_ticks[r]:
        a.max_ticks[r] = d
    if a.run_of[r] != a.run:
        # The first of this reason in the current run: its extremes start
        # again (lazily, so that marking a run resets nothing).
        a.run_of[r] = a.run
        a.run_min[r] = 0
        a.run_max[r] = 0
    if a.run_min[r] == 0 or d < a.run_min[r]:
        a.run_min[r] = d if d else 1
    if d > a.run_max[r]:
        a.run_max[r] = d
    a.hist[r][acct_bucket(d)] += 1


cdef void acct_save(Acct* a, int r) noexcept nogil:
    """acct_touch's work, out of line: keep reason r's rows, and the table
    its qualification counts in, as they are before the current run
    changes them."""
    cdef AcctRow* s = &a.saved[r]
    a.saved_of[r] = a.run
    s.count = a.count[r]
    s.rt_ticks = a.rt_ticks[r]
    s.handler_ticks = a.handler_ticks[r]
    s.guest_ticks = a.guest_ticks[r]
    s.guest_insns = a.guest_insns[r]
    s.handler_insns = a.handler_insns[r]
    memcpy(s.hist, a.hist[r], sizeof(s.hist))
    if r == EXIT_REASON_IO_INSTRUCTION and a.io_saved_of != a.run:
        a.io_saved_of = a.run
        memcpy(&a.io_saved, &a.io, sizeof(a.io))
    elif (r == EXIT_REASON_RDMSR or r == EXIT_REASON_WRMSR) and a.msr_saved_of != a.run:
        a.msr_saved_of = a.run
        memcpy(&a.msr_saved, &a.msr, sizeof(a.msr))
    elif r == EXIT_REASON_CONTROL_REGISTER_ACCESS and a.cr_saved_of != a.run:
        a.cr_saved_of = a.run
        memcpy(a.cr_saved, a.cr, sizeof(a.cr))


cdef inline void acct_touch(Acct* a, int r) noexcept nogil:
    """Before the current run first changes reason r's rows: keep them as
    they are, the run's base, so that marking a run copies nothing up front
    and its end copies only the reasons the run had (core/acct.pxi)."""
    if a.saved_of[r] != a.run:
        acct_save(a, r)


cdef inline void acct_vmx_access(Cpu* c, int write) noexcept nogil:
    """A VMREAD (write 0) or VMWRITE executed by x86 code; apart, those of
    an exit's handling (from the exit to the next entry: acct_reason set),
    which the cost model prices as the handler's (set-up code is not)."""
    if write:
        c.acct.vmwrite_x86 += 1
        if c.acct_reason >= 0:
            c.acct.vmwrite_x86_exits += 1
    else:
        c.acct.vmread_x86 += 1
        if c.acct_reason >= 0:
            c.acct.vmread_x86_exits += 1


cdef void record_exit(Cpu* c, uint32_t reason) noexcept nogil:
    """Accounting of an exit (decision 10): count it, charge the guest
    execution since the last entry to it, count its qualification kind where
    the cost model needs one, and start its clock."""
    cdef uint32_t r = reason & 0x7F
    cdef uint64_t t = now_ticks()
    cdef Acct* a = c.acct
    c.exit_count[r] += 1
    c.acct_reason = r
    c.exit_t0 = t
    acct_touch(a, r)
    a.count[r] += 1
    a.exit_i0 = c.icount
    if not acct_detail:
        return
    if a.guest_t0 and t > a.guest_t0:
        a.guest_ticks[r] += t - a.guest_t0
    a.guest_insns[r] += c.icount - a.guest_i0
    if r == EXIT_REASON_IO_INSTRUCTION:
        # Port (bits 31:16), IN (bit 3), size - 1 (bits 2:0), SDM Table 28-5.
        acct_qual(&a.io, ((c.vmx.x_qual >> 16) & 0xFFFF) | (((c.vmx.x_qual >> 3) & 1) << 16)
                  | (((c.vmx.x_qual & 7) + 1) << 17))
    elif r == EXIT_REASON_RDMSR or r == EXIT_REASON_WRMSR:
        # The MSR is in ECX (SDM 26.1.3); the guest's registers are still
        # in the register file.
        acct_qual(&a.msr, (c.regs[R_CX] & 0xFFFFFFFFULL) | (<uint64_t>(r == EXIT_REASON_WRMSR) << 32))
    elif r == EXIT_REASON_CONTROL_REGISTER_ACCESS:
        # CR number (bits 3:0) and access type (bits 5:4), SDM Table 28-3.
        a.cr[c.vmx.x_qual & 0x3F] += 1


cdef int vm_exit(Cpu* c) noexcept nogil:
    """Perform the VM exit staged in c.vmx.x_* (SDM 28.2 exit information,
    28.3 guest state), then load the host state for an x86 host.  Returns
    RC_VMEXIT when the Python hypervisor is the host (the run loop returns
    to it), RC_OK when x86 code goes on at HOST_RIP, RC_SHUTDOWN after a VMX
    abort."""
    cdef uint32_t reason = c.vmx.x_reason
    # The fields this reason defines, from its spec row (vtx/spec/exit_reasons.py
    # EXIT_INFO); the others are cleared, so no stale value reads as information.
    cdef uint32_t fields = exit_info_fields(reason & 0xFFFF)
    cdef uint32_t idt_type = (c.vmx.x_idt_info >> 8) & 7
    cdef int rc
    if (c.vmx.x_idt_info & 0x80000000U) and (idt_type == 4 or idt_type == 5 or idt_type == 6):
        # An exit while delivering a software interrupt or exception reports
        # that instruction's length, whatever the reason (SDM 28.2.5).
        fields |= EXIT_INFO_INSTRUCTION_LENGTH
    if c.vmx.apic_pend & TRAP_BUS_LOCK:
        # [bus-lock detection] The instruction acquired a bus lock, and this
        # exit came before the bus-lock exit (core/vmx/buslock.pxi).
        c.vmx.apic_pend &= ~(<uint32_t>TRAP_BUS_LOCK)
        reason |= EXIT_REASON_FLAG_BUS_LOCK
    vw(c, VMCS_OFF_EXIT_REASON, 4, reason)
    vw(c, VMCS_OFF_EXIT_QUALIFICATION, 8, c.vmx.x_qual if fields & EXIT_INFO_QUALIFICATION else 0)
    vw(c, VMCS_OFF_VM_EXIT_INSTRUCTION_LENGTH, 4, c.vmx.x_len if fields & EXIT_INFO_INSTRUCTION_LENGTH else 0)
    vw(c, VMCS_OFF_VM_EXIT_INSTRUCTION_INFO, 4, c.vmx.x_info if fields & EXIT_INFO_INSTRUCTION_INFO else 0)
    vw(c, VMCS_OFF_VM_EXIT_INTERRUPTION_INFO, 4,
       c.vmx.x_intr_info if fields & EXIT_INFO_INTERRUPTION_INFO else 0)
    vw(c, VMCS_OFF_VM_EXIT_INTERRUPTION_ERROR_CODE, 4,
       c.vmx.x_intr_error if fields & EXIT_INFO_INTERRUPTION_ERROR_CODE else 0)
    # SDM 28.2.4: valid only for exits during event delivery (staged by
    # handle_exception); the error code field is meaningful with bit 11.
    vw(c, VMCS_OFF_IDT_VECTORING_INFO, 4, c.vmx.x_idt_info)
    vw(c, VMCS_OFF_IDT_VECTORING_ERROR_CODE, 4, c.vmx.x_idt_error)
    c.vmx.x_idt_info = 0
    c.vmx.x_idt_error = 0
    # "VM exits clear any address-range monitoring that may be in effect"
    # (SDM 28.5.6): MWAIT after the next entry finds the monitor unarmed.
    c.monitor_armed = 0
    if fields & EXIT_INFO_GUEST_LINEAR_ADDRESS:
        vw(c, VMCS_OFF_GUEST_LINEAR_ADDRESS, 8, c.vmx.x_gla if c.vmx.x_gla_valid else 0)
    if fields & EXIT_INFO_GUEST_PHYSICAL_ADDRESS:
        vw(c, VMCS_OFF_GUEST_PHYSICAL_ADDRESS, 8, c.vmx.x_gpa)
    # SDM 28.2.3: the valid bit of the VM-entry interruption information is
    # cleared on every VM exit.
    vwt(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4,
        vr(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4) & 0x7FFFFFFFULL)
    save_guest_state(c)
    events_save_timer(c, 0)     # [events] "save VMX-preemption timer value" (SDM 28.3.4)
    tlb_at_exit(c)
    c.vmx.non_root = 0
    c.vmx.ept = 0
    record_exit(c, reason)
    if c.vmx.vmcs_in_ram:
        vmcs_ram_written(c, c.vmx.vmcs_ptr)
    # SDM 28.4 then 28.5 then 28.6: guest MSRs saved, host state loaded
    # (x86 host code only: Python keeps its own), host MSRs loaded.
    rc = exit_msr_area(c, 1)
    if rc == RC_OK and c.vmx.host_x86:
        rc = load_host_state(c)
    if rc == RC_OK:
        rc = exit_msr_area(c, 0)
    if rc != RC_OK:
        return rc
    return RC_OK if c.vmx.host_x86 else RC_VMEXIT


cdef int entry_failure_to_host(Cpu* c) noexcept nogil:
    """A VM entry by x86 code failed a guest-state check or the loading of
    an MSR (vm_entry wrote exit reason 33 or 34 with bit 31, and the
    qualification): the processor loads the
    host state as for a VM exit, saving no guest state (SDM 27.8).  Returns
    RC_TRANSFERRED, or RC_SHUTDOWN after a VMX abort.  The controls passed
    their checks, so the exit controls are read from the VMCS."""
    cdef int rc
    c.vmx.ctl.exit_ctl = <uint32_t>vr(c, VMCS_OFF_VM_EXIT_CONTROLS, 4)
    record_exit(c, <uint32_t>vr(c, VMCS_OFF_EXIT_REASON, 4))     # 33, or 34 (MSR loading)
    if c.vmx.vmcs_in_ram:
        vmcs_ram_written(c, c.vmx.vmcs_ptr)
    # "the processor loads host state and MSRs as it would on a VM exit"
    # (SDM 27.8): the host state, then the VM-exit MSR-load area.
    rc = load_host_state(c)
    if rc == RC_OK:
        rc = exit_msr_area(c, 0)
    return RC_TRANSFERRED if rc == RC_OK else rc


cdef inline void account_exit_time(Cpu* c) noexcept nogil:
    """Charge the time since the last VM exit to its reason (decision 10:
    wall time per exit, measured as it happens)."""
    cdef uint64_t t, d
    cdef int r = c.acct_reason
    cdef Acct* a = c.acct
    if r >= 0:
        t = now_ticks()
        d = t - c.exit_t0 if t > c.exit_t0 else 0
        c.exit_ticks[r] += d
        c.acct_reason = -1
        acct_touch(a, r)        # an x86 handler's exit may end in a later run
        a.rt_ticks[r] += d
        # Root-mode instructions since the exit: an x86 hypervisor's handler
        # (its VMRESUME included: it retires after this entry); none for
        # Python, which runs no instructions on the model.
        a.handler_insns[r] += c.icount - a.exit_i0 + (1 if c.vmx.host_x86 else 0)
        if acct_detail:
            acct_sample(a, r, d)
        a.guest_t0 = t
    elif acct_detail:
        a.guest_t0 = now_ticks()
    a.guest_i0 = c.icount + (1 if c.vmx.host_x86 else 0)
