# Architectural state helpers: register access by size, RFLAGS bits, the
# derived processor mode.  Included into vtx/_core.pyx.

# Return codes of the inner loop and of every handler.  0 means "retired,
# go on"; everything else leaves the loop or is handled by it.
cdef enum:
    RC_OK = 0
    RC_EXCEPTION = 1       # c.exc_* describe a fault to deliver or intercept
    RC_VMEXIT = 2          # c.x_* describe a VM exit to perform
    RC_BUDGET = 3          # instruction budget reached
    RC_HALTED = 4          # HLT without HLT exiting: nothing can wake the CPU
    RC_ENTRY_FAIL_CTL = 5  # VMfailValid(7): control-field check
    RC_ENTRY_FAIL_HOST = 6 # VMfailValid(8): host-state check
    RC_ENTRY_FAIL_GUEST = 7  # exit reason 33 (invalid guest state)
    RC_BAD_PHYS = 8        # guest-physical access outside every slot (no EPT)
    RC_SHUTDOWN = 9        # triple fault outside VMX non-root operation
    RC_UNSUPPORTED = 10    # a valid request the model does not implement yet
    RC_REP_PAUSED = 11     # a REP string instruction stopped between iterations
                           # at the budget: RIP stays on it, the iterations done
                           # are counted, and executing it again continues it
    RC_TRANSFERRED = 12    # the handler moved the processor to another context
                           # (a VM entry, or a VM exit to x86 host code): it set
                           # RIP and retired the instruction itself
    RC_IO_HOST = 13        # port I/O in root operation for Python to answer (c.io_*)
    RC_MMIO = 14           # an MMIO access for the host to answer (c.mmio_req); from
                           # translate: the page is MMIO (c.mmio_gpa)
    RC_BRANCHED = 15       # a conditional branch retired and was taken (c.next_rip is its
                           # target): RC_OK to every caller but the block runner, for
                           # which it is a side exit (core/run.pxi)
    RC_LOCAL = 16          # a Jcc of a translated block retired and was taken to the
                           # start of one of the block's own ops (CC2_LOCAL): only
                           # run_block sees it, and it goes on at that op (core/run.pxi)

# General-purpose register numbers (SDM Vol. 2 Table 2-2 order).
cdef enum:
    R_AX = 0
    R_CX = 1
    R_DX = 2
    R_BX = 3
    R_SP = 4
    R_BP = 5
    R_SI = 6
    R_DI = 7

# Segment register numbers: the encoding of the sreg field in ModRM and the
# VMCS order of guest segment fields.
cdef enum:
    S_ES = 0
    S_CS = 1
    S_SS = 2
    S_DS = 3
    S_FS = 4
    S_GS = 5
    S_LDTR = 6
    S_TR = 7

# RFLAGS bits (SDM Vol. 1 3.4.3).
cdef enum:
    F_CF = 1 << 0
    F_FIXED1 = 1 << 1
    F_PF = 1 << 2
    F_AF = 1 << 4
    F_ZF = 1 << 6
    F_SF = 1 << 7
    F_TF = 1 << 8
    F_IF = 1 << 9
    F_DF = 1 << 10
    F_OF = 1 << 11
    F_IOPL = 3 << 12
    F_NT = 1 << 14
    F_RF = 1 << 16
    F_VM = 1 << 17
    F_AC = 1 << 18
    F_VIF = 1 << 19
    F_VIP = 1 << 20
    F_ID = 1 << 21
    F_STATUS = 0x8D5      # CF PF AF ZF SF OF

cdef enum:
    CR0_PE = 1 << 0
    CR0_MP = 1 << 1
    CR0_EM = 1 << 2
    CR0_TS = 1 << 3
    CR0_ET = 1 << 4
    CR0_NE = 1 << 5
    CR0_WP = 1 << 16
    CR0_AM = 1 << 18
    CR0_NW = 1 << 29
    CR0_CD = 1 << 30

cdef uint64_t CR0_PG = 1ULL << 31

cdef enum:
    CR4_PSE = 1 << 4
    CR4_PAE = 1 << 5
    CR4_PGE = 1 << 7
    CR4_TSD = 1 << 2
    CR4_DE = 1 << 3
    CR4_PCE = 1 << 8
    CR4_OSFXSR = 1 << 9
    CR4_OSXMMEXCPT = 1 << 10
    CR4_UMIP = 1 << 11
    CR4_FSGSBASE = 1 << 16
    CR4_OSXSAVE = 1 << 18
    CR4_VMXE = 1 << 13
    CR4_PCIDE = 1 << 17
    CR4_SMEP = 1 << 20
    CR4_SMAP = 1 << 21

cdef enum:
    EFER_SCE = 1 << 0
    EFER_LME = 1 << 8
    EFER_LMA = 1 << 10
    EFER_NXE = 1 << 11

# Access-rights bits (VMX format).
cdef enum:
    AR_TYPE = 0xF
    AR_S = 1 << 4
    AR_P = 1 << 7
    AR_L = 1 << 13
    AR_DB = 1 << 14
    AR_G = 1 << 15
    AR_UNUSABLE = 1 << 16

# Exception vectors (SDM Vol. 3 Table 6-1).
cdef enum:
    EXC_DE = 0
    EXC_DB = 1
    EXC_NMI = 2
    EXC_BP = 3
    EXC_OF = 4
    EXC_BR = 5
    EXC_UD = 6
    EXC_NM = 7
    EXC_DF = 8
    EXC_TS = 10
    EXC_NP = 11
    EXC_SS = 12
    EXC_GP = 13
    EXC_PF = 14
    EXC_MF = 16
    EXC_AC = 17
    EXC_XM = 19            # SIMD floating-point exception

cdef extern from *:
    """
    /* The mask of an operand size in bytes (1, 2, 4, 8).  A const table, so
       that gcc folds SIZE_MASK[size] where size is a constant: the handlers
       instantiated for one size (core/insn/fast.pxi) then carry no load. */
    static const uint64_t VTX_SIZE_MASK[9] = {
        0, 0xFFull, 0xFFFFull, 0, 0xFFFFFFFFull, 0, 0, 0, 0xFFFFFFFFFFFFFFFFull};
    """
    const uint64_t SIZE_MASK "VTX_SIZE_MASK"[9]

cdef uint8_t PARITY[256]
for _i in range(256):
    PARITY[_i] = F_PF if (bin(_i).count("1") % 2 == 0) else 0


cdef inline int cpu_has(Cpu* c, int feat) noexcept nogil:
    """The CPU model has CPUID feature FEAT_<name> (vtx/spec/cpuid.py)."""
    return <int>((c.features[feat >> 6] >> (feat & 63)) & 1)


cdef inline uint64_t sign_bit(int size) noexcept nogil:
    return 1ULL << (size * 8 - 1)


cdef inline int64_t sext(uint64_t v, int size) noexcept nogil:
    """Sign-extend the low `size` bytes of v."""
    if size == 1:
        return <int64_t>(<signed char>(v & 0xFF))
    elif size == 2:
        return <int64_t>(<short>(v & 0xFFFF))
    elif size == 4:
        return <int64_t>(<int32_t>(v & 0xFFFFFFFFULL))
    return <int64_t>v


cdef inline uint64_t get_reg(Cpu* c, int r, int size) noexcept nogil:
    """Read a general register operand.  For size 1, numbers 16..19 are
    AH CH DH BH (the legacy high-byte registers, reachable only without REX)."""
    if size == 1:
        if r >= 16:
            return (c.regs[r - 16] >> 8) & 0xFF
        return c.regs[r] & 0xFF
    return c.regs[r] & SIZE_MASK[size]


cdef extern from *:
    """
    /* A whole-register store.  Left alone, gcc turns the merge of an 8- or
       16-bit result into a narrow store, and the next full-width load of
       the register then cannot be forwarded from it (a stall of a dozen
       cycles on every 16-bit loop counter). */
    static inline void vtx_store64(uint64_t *p, uint64_t v) {
        __asm__("" : "+r"(v));
        *p = v;
    }
    """
    void vtx_store64(uint64_t* p, uint64_t v) nogil


cdef inline void set_reg(Cpu* c, int r, int size, uint64_t v) noexcept nogil:
    """Write a general register operand with x86 merge rules: 8- and 16-bit
    writes keep the other bits, 32-bit writes zero bits 63:32 (SDM Vol. 1
    3.4.1.1), 64-bit writes replace the register."""
    if size == 4:
        c.regs[r] = v & 0xFFFFFFFFULL
    elif size == 8:
        c.regs[r] = v
    elif size == 2:
        vtx_store64(&c.regs[r], (c.regs[r] & ~0xFFFFULL) | (v & 0xFFFF))
    elif r >= 16:
        vtx_store64(&c.regs[r - 16], (c.regs[r - 16] & ~0xFF00ULL) | ((v & 0xFF) << 8))
    else:
        vtx_store64(&c.regs[r], (c.regs[r] & ~0xFFULL) | (v & 0xFF))


cdef inline void set_status_flags(Cpu* c, uint64_t flags) noexcept nogil:
    c.rflags = (c.rflags & ~(<uint64_t>F_STATUS)) | (flags & F_STATUS)


cdef inline uint64_t szp_flags(uint64_t r, int size) noexcept nogil:
    """SF, ZF and PF of a result of `size` bytes."""
    cdef uint64_t f = PARITY[r & 0xFF]
    r &= SIZE_MASK[size]
    if r == 0:
        f |= F_ZF
    if r & sign_bit(size):
        f |= F_SF
    return f


cdef void update_mode(Cpu* c) noexcept nogil:
    """Recompute the derived mode after CR0, CR4, EFER or CS changed.  The
    TLB's fast path starts over (the run loop's fetch page is checked
    against the TLB generation); its entries survive unless the paging
    controls their permissions were computed under changed (core/mmu.pxi,
    "The TLB")."""
    compute_mode(c)
    if tlb_config(c) != c.tlb_cfg:
        tlb_flush(c)
    c.tlb_gen += 1


cdef void compute_mode(Cpu* c) noexcept nogil:
    """update_mode without the flush: for VM entry, which flushes only
    where the SDM requires it (core/vmx/exit.pxi, tlb_kept_for)."""
    cdef uint32_t csar = c.seg[S_CS].ar
    if (c.efer & EFER_LMA) and (csar & AR_L):
        c.long64 = 1
        c.code_size = 8
    else:
        c.long64 = 0
        if (c.cr0 & CR0_PE) and not (c.rflags & F_VM):
            c.code_size = 4 if (csar & AR_DB) else 2
        else:
            c.code_size = 2
    if c.long64:
        c.stack_size = 8
    elif (c.cr0 & CR0_PE) and not (c.rflags & F_VM) and (c.seg[S_SS].ar & AR_DB):
        c.stack_size = 4
    else:
        c.stack_size = 2
    if not (c.cr0 & CR0_PE):
        c.cpl = 0
    elif c.rflags & F_VM:
        c.cpl = 3
    else:
        # The CPL is SS.DPL (SDM Vol. 3C 25.4.1 note: the VMCS keeps it there).
        c.cpl = (c.seg[S_SS].ar >> 5) & 3
    if not (c.cr0 & CR0_PG):
        c.paging = 0
    elif c.efer & EFER_LMA:
        c.paging = 4
    elif c.cr4 & CR4_PAE:
        c.paging = 3
    else:
        c.paging = 2
    tlb_set_salt(c)


cdef inline int is_canonical(uint64_t a) noexcept nogil:
    cdef int64_t s = (<int64_t>(a << 16)) >> 16
    return <uint64_t>s == a


# ---------------------------------------------------------------------------
# The run's budget and its slices (docs/architecture.rst, "Budgets and
# signals").  The loop leaves with RC_BUDGET when icount reaches icount_limit;
# the host sets that limit to the end of the budget or of the current slice,
# whichever comes first, and checks Python's signals between slices.  Work
# that retires no instruction spends the slice instead, so no guest can keep
# the loop from reaching a check: event delivery (which also counts toward the
# budget, see VCpu._run), dropping decoded code, page walks.

cdef inline void spend(Cpu* c, uint64_t n) noexcept nogil:
    """Bring the end of the current slice n steps nearer.  While the event
    check is armed (core/vmx/events.pxi) the end of the slice is put aside
    in ev_limit, and that is the one to bring nearer too."""
    if c.icount_limit - c.icount > n and c.icount_limit > c.icount:
        c.icount_limit -= n
    else:
        c.icount_limit = c.icount
    if c.ev_armed:
        if c.ev_limit - c.icount > n and c.ev_limit > c.icount:
            c.ev_limit -= n
        else:
            c.ev_limit = c.icount
