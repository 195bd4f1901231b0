# APIC virtualization and virtual interrupts (docs/architecture.rst, "APIC
# virtualization").
#
# SDM references are to the pinned edition (325462-080US, June 2023), Vol. 3C
# chapter 30: 30.1 the virtual-APIC page and its registers, TPR, PPR, EOI and
# self-IPI virtualization; 30.2 evaluation and delivery of virtual
# interrupts; 30.3 MOV to and from CR8; 30.4 the APIC-access page; 30.5 the
# x2APIC MSRs; 30.6 posted-interrupt processing.  Also 27.3.2.5 (what VM
# entry does with the guest interrupt status) and 27.7.7 (the TPR-threshold
# exit right after VM entry).
#
# The controls come from c.vmx.ctl (copied at VM entry).  The guest
# interrupt status (RVI, SVI) lives in c.vmx.rvi / c.vmx.svi while the guest
# runs and goes back to the VMCS at VM exit.  The virtual-APIC page is
# memory the VMM gave (RAM, or the hosted hypervisor's private memory); the
# processor reads and writes it at the offsets of 30.1.1.
#
# What an instruction starts and the SDM finishes "after the instruction
# completes" (trap-like: TPR virtualization, EOI and self-IPI virtualization,
# APIC-write emulation) is recorded in c.vmx.apic_pend and done at the next
# instruction boundary (apic_boundary, called first by event_boundary), so
# an exit it causes saves RIP of the next instruction.


cdef extern from *:
    int __builtin_clz(unsigned int) nogil


cdef enum:
    # c.vmx.apic_pend
    APIC_PEND_TPR = 1           # TPR virtualization (30.1.2)
    APIC_PEND_EOI = 2           # EOI virtualization (30.1.4)
    APIC_PEND_SELF_IPI = 4      # self-IPI virtualization with apic_pend_vec (30.1.5)
    APIC_PEND_WRITE = 8         # APIC-write emulation of a write at apic_pend_off (30.4.3.2)
    TRAP_BUS_LOCK = 16          # not the APIC's: a bus-lock exit after the instruction (core/vmx/buslock.pxi)

    # Virtual-APIC page offsets (30.1.1)
    VAPIC_ID = 0x20
    VAPIC_TPR = 0x80
    VAPIC_PPR = 0xA0
    VAPIC_EOI = 0xB0
    VAPIC_ISR = 0x100
    VAPIC_IRR = 0x200
    VAPIC_ICR_LO = 0x300
    VAPIC_SELF_IPI = 0x3F0

    # Access types of an APIC-access exit qualification, bits 15:12 (SDM
    # Table 28-6)
    APIC_ACC_LINEAR_READ = 0
    APIC_ACC_LINEAR_WRITE = 1
    APIC_ACC_LINEAR_FETCH = 2
    APIC_ACC_GPA_INSN = 15

    # x2APIC MSRs the virtualization names (30.5)
    MSR_X2APIC_TPR = 0x808
    MSR_X2APIC_EOI = 0x80B
    MSR_X2APIC_SELF_IPI = 0x83F


# --- the virtual-APIC page ----------------------------------------------------

cdef inline uint8_t* vapic_page(Cpu* c) noexcept nogil:
    """Host pointer to the virtual-APIC page, NULL if no memory backs it (an
    x86 hypervisor reaches only RAM, the hosted one its private memory too).
    Without memory the registers read as 0 and writes are lost."""
    return hpa_ptr(c, c.vmx.ctl.virtual_apic, 4096, c.vmx.host_x86)


cdef inline uint32_t vapic_get(Cpu* c, uint32_t off) noexcept nogil:
    cdef uint8_t* p = vapic_page(c)
    cdef uint32_t v = 0
    if p != NULL:
        memcpy(&v, p + off, 4)
    return v


cdef void vapic_written(Cpu* c, uint32_t off) noexcept nogil:
    """The processor wrote the virtual-APIC page: decoded code there is
    dropped and a dirty log sees the page, as for any write."""
    cdef uint64_t hpa = c.vmx.ctl.virtual_apic + off
    if hpa < c.ram_size and c.code_pages[hpa >> 12]:
        code_page_written(c, hpa)
    if c.dirty_log:
        dirty_note(c, hpa, ACC_WRITE)


cdef inline void vapic_set(Cpu* c, uint32_t off, uint32_t v) noexcept nogil:
    cdef uint8_t* p = vapic_page(c)
    if p != NULL:
        memcpy(p + off, &v, 4)
        vapic_written(c, off)


cdef inline uint32_t vreg_offset(uint32_t base, int vec) noexcept nogil:
    """VISR and VIRR: bit x is bit (x & 1FH) of the 32-bit field at
    base | ((x & E0H) >> 1) (30.1.1)."""
    return base | ((<uint32_t>vec & 0xE0) >> 1)


cdef inline void vreg_put(Cpu* c, uint32_t base, int vec, int on) noexcept nogil:
    cdef uint32_t off = vreg_offset(base, vec)
    cdef uint32_t v = vapic_get(c, off)
    if on:
        v |= 1U << (vec & 31)
    else:
        v &= ~(1U << (vec & 31))
    vapic_set(c, off, v)


cdef int vreg_highest(Cpu* c, uint32_t base) noexcept nogil:
    """The highest vector set in VISR or VIRR, -1 if none."""
    cdef int i
    cdef uint32_t v
    for i in range(7, -1, -1):
        v = vapic_get(c, base | (<uint32_t>i << 4))
        if v:
            return i * 32 + 31 - __builtin_clz(v)
    return -1


# --- 30.1.2 - 30.1.5, 30.2: the virtualizations and virtual interrupts ---------

cdef void ppr_virtualize(Cpu* c) noexcept nogil:
    """PPR virtualization (30.1.3): VPPR from VTPR and SVI; bytes 3:1 are 0."""
    cdef uint32_t vtpr = vapic_get(c, VAPIC_TPR)
    if ((vtpr >> 4) & 0xF) >= ((c.vmx.svi >> 4) & 0xF):
        vapic_set(c, VAPIC_PPR, vtpr & 0xFF)
    else:
        vapic_set(c, VAPIC_PPR, c.vmx.svi & 0xF0)


cdef void vint_evaluate(Cpu* c) noexcept nogil:
    """Evaluation of pending virtual interrupts (30.2.1): a virtual interrupt
    is recognized when RVI[7:4] > VPPR[7:4] and "interrupt-window exiting" is
    0.  Only VM entry and the virtualizations of this file evaluate; the
    recognition lasts until the interrupt is delivered (vint_deliver)."""
    if not (c.vmx.ctl.proc & PROC_INTERRUPT_WINDOW_EXITING) and \
            ((c.vmx.rvi >> 4) & 0xF) > ((vapic_get(c, VAPIC_PPR) >> 4) & 0xF):
        c.vmx.vint = 1


cdef int vint_deliver(Cpu* c) noexcept nogil:
    """Virtual-interrupt delivery (30.2.2): the vector RVI moves from VIRR to
    VISR, SVI and VPPR follow it, RVI becomes the next highest request, and
    the interrupt is delivered through the guest's IDT without a VM exit."""
    cdef int vec = <int>(c.vmx.rvi & 0xFF)
    cdef int nxt
    vreg_put(c, VAPIC_ISR, vec, 1)
    c.vmx.svi = <uint32_t>vec
    vapic_set(c, VAPIC_PPR, <uint32_t>vec & 0xF0)
    vreg_put(c, VAPIC_IRR, vec, 0)
    nxt = vreg_highest(c, VAPIC_IRR)
    c.vmx.rvi = <uint32_t>nxt if nxt > 0 else 0
    c.vmx.vint = 0
    return take_vectored(c, vec, 0)


cdef int tpr_virtualize(Cpu* c) noexcept nogil:
    """TPR virtualization (30.1.2).  Without "virtual-interrupt delivery" a
    VTPR[7:4] below the TPR threshold is a TPR-below-threshold VM exit
    (reason 43, trap-like, qualification 0); with it, PPR virtualization
    and an evaluation of pending virtual interrupts."""
    if not (c.vmx.ctl.proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY):
        if ((vapic_get(c, VAPIC_TPR) >> 4) & 0xF) < (c.vmx.ctl.tpr_threshold & 0xF):
            return vmexit_event(c, EXIT_REASON_TPR_BELOW_THRESHOLD, 0)
        return RC_OK
    ppr_virtualize(c)
    vint_evaluate(c)
    return RC_OK


cdef int eoi_virtualize(Cpu* c) noexcept nogil:
    """EOI virtualization (30.1.4): the vector SVI leaves VISR, SVI becomes
    the next highest in-service vector, PPR virtualization; a vector set in
    the EOI-exit bitmap is then a virtualized-EOI VM exit (reason 45,
    trap-like, the vector as qualification), any other an evaluation."""
    cdef int vec = <int>(c.vmx.svi & 0xFF)
    cdef int nxt
    vreg_put(c, VAPIC_ISR, vec, 0)
    nxt = vreg_highest(c, VAPIC_ISR)
    c.vmx.svi = <uint32_t>nxt if nxt > 0 else 0
    ppr_virtualize(c)
    if (c.vmx.ctl.eoi_exit[vec >> 6] >> (vec & 63)) & 1:
        return vmexit_event(c, EXIT_REASON_VIRTUALIZED_EOI, <uint64_t>vec)
    vint_evaluate(c)
    return RC_OK


cdef void self_ipi_virtualize(Cpu* c, int vec) noexcept nogil:
    """Self-IPI virtualization (30.1.5): VIRR[vec] = 1, RVI = max(RVI, vec),
    evaluation."""
    vreg_put(c, VAPIC_IRR, vec, 1)
    if <uint32_t>vec > c.vmx.rvi:
        c.vmx.rvi = <uint32_t>vec
    vint_evaluate(c)


cdef int apic_write_emulate(Cpu* c, uint32_t off) noexcept nogil:
    """APIC-write emulation (30.4.3.2) after a virtualized write at page
    offset off: TPR (080H) clears bytes 3:1 of VTPR and virtualizes the TPR;
    EOI (0B0H) with "virtual-interrupt delivery" is EOI virtualization; ICR
    low (300H) with it is self-IPI virtualization when VICR_LO asks for a
    fixed, edge-triggered self IPI (shorthand 01B) of a vector 16-255 with
    its reserved bits and delivery status 0.  Everything else is an
    APIC-write VM exit (reason 56, trap-like) whose qualification is the
    offset: the VMM emulates the register from the virtual-APIC page."""
    cdef uint32_t icr
    cdef int vid = (c.vmx.ctl.proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY) != 0
    if (off & ~3U) == VAPIC_TPR:
        vapic_set(c, VAPIC_TPR, vapic_get(c, VAPIC_TPR) & 0xFF)
        return tpr_virtualize(c)
    if (off & ~3U) == VAPIC_EOI and vid:
        return eoi_virtualize(c)
    if (off & ~3U) == VAPIC_ICR_LO and vid:
        icr = vapic_get(c, VAPIC_ICR_LO)
        # Must be 0: 31:20 and 17:16, 13 (reserved), 12 (delivery status),
        # 15 (trigger mode: edge), 10:8 (delivery mode: fixed).
        if (icr & 0xFFF3B700U) == 0 and ((icr >> 18) & 3) == 1 and (icr & 0xF0) != 0:
            self_ipi_virtualize(c, <int>(icr & 0xFF))
            return RC_OK
    return vmexit_event(c, EXIT_REASON_APIC_WRITE, off)


cdef inline void apic_defer(Cpu* c, uint32_t what) noexcept nogil:
    """Leave `what` (APIC_PEND_*) for the instruction boundary after this
    instruction.  Bumping code_writes ends a running translated block after
    this instruction (core/run.pxi), so the boundary is looked at."""
    c.vmx.apic_pend |= what
    c.code_writes += 1
    events_arm(c, c.icount + 1)


cdef inline void tpr_defer(Cpu* c) noexcept nogil:
    """TPR virtualization after a write of VTPR by MOV to CR8 or WRMSR.
    Without "virtual-interrupt delivery" its outcome is known now: only a
    VTPR below the threshold needs the boundary (for its exit), so a guest
    that keeps its TPR at or above the threshold pays nothing more.  With
    it, the evaluation may recognize an interrupt to deliver right after
    the instruction, which needs the boundary too."""
    if (c.vmx.ctl.proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY) or \
            ((vapic_get(c, VAPIC_TPR) >> 4) & 0xF) < (c.vmx.ctl.tpr_threshold & 0xF):
        apic_defer(c, APIC_PEND_TPR)


cdef int apic_boundary(Cpu* c) noexcept nogil:
    """The trap-like part of what the last instruction did (event_boundary
    calls this first): RC_OK, or RC_VMEXIT for an exit it staged."""
    cdef uint32_t pend = c.vmx.apic_pend
    cdef int rc = RC_OK
    c.vmx.apic_pend = 0
    if not c.vmx.non_root:
        return RC_OK
    if pend & APIC_PEND_WRITE:
        rc = apic_write_emulate(c, c.vmx.apic_pend_off)
    elif pend & APIC_PEND_TPR:
        rc = tpr_virtualize(c)
    elif pend & APIC_PEND_EOI:
        rc = eoi_virtualize(c)
    elif pend & APIC_PEND_SELF_IPI:
        self_ipi_virtualize(c, <int>c.vmx.apic_pend_vec)
    if pend & TRAP_BUS_LOCK:
        if rc == RC_OK:
            return vmexit_event(c, EXIT_REASON_BUS_LOCK, 0)
        # The APIC's exit comes first and carries the bus lock in bit 26.
        c.vmx.apic_pend |= TRAP_BUS_LOCK
    return rc


# --- VM entry and VM exit (27.3.2.5, 27.7.7, 28.3.3) ---------------------------

cdef void apicv_entry(Cpu* c) noexcept nogil:
    """After the guest state is loaded and the event injected: with
    "virtual-interrupt delivery", RVI and SVI come from the guest interrupt
    status, then PPR virtualization and an evaluation (27.3.2.5).  With
    "use TPR shadow" and without it, the TPR threshold is compared with VTPR
    before the first guest instruction (27.7.7): a TPR-below-threshold exit
    can follow the entry at once."""
    cdef uint32_t status
    c.vmx.apic_pend = 0
    c.vmx.vint = 0
    if c.vmx.ctl.proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY:
        status = <uint32_t>vr(c, VMCS_OFF_GUEST_INTERRUPT_STATUS, 2)
        c.vmx.rvi = status & 0xFF
        c.vmx.svi = status >> 8
        ppr_virtualize(c)
        vint_evaluate(c)
    elif c.vmx.ctl.proc & PROC_USE_TPR_SHADOW:
        c.vmx.apic_pend = APIC_PEND_TPR
    # (guest_slice arms the event check: events_each_boundary looks at
    # apic_pend and vint.)


cdef int apicv_reaches_vmcs(Cpu* c) noexcept nogil:
    """1 if the processor may write a VMCS region of the machine through the
    virtual-APIC page or the posted-interrupt descriptor: then VMRESUME
    cannot trust its record of what changed (decision of
    core/vmx/entry.pxi, "Entry checks at VMRESUME")."""
    cdef int k
    cdef uint64_t v
    for k in range(c.ncpus):
        v = c.cpus[k].vmx.vmcs_ptr
        if v == VMCS_PTR_NONE:
            continue
        if (c.vmx.ctl.proc & PROC_USE_TPR_SHADOW) and (c.vmx.ctl.virtual_apic & ~0xFFFULL) == (v & ~0xFFFULL):
            return 1
        if (c.vmx.ctl.pin & PIN_PROCESS_POSTED_INTERRUPTS) and (c.vmx.ctl.pi_desc & ~0xFFFULL) == (v & ~0xFFFULL):
            return 1
    return 0


cdef void apicv_exit(Cpu* c) noexcept nogil:
    """At VM exit, with "virtual-interrupt delivery": the guest interrupt
    status receives RVI and SVI (28.3.3)."""
    c.vmx.apic_pend = 0
    c.vmx.vint = 0
    if c.vmx.ctl.proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY:
        vwt(c, VMCS_OFF_GUEST_INTERRUPT_STATUS, 2, (c.vmx.rvi & 0xFF) | ((c.vmx.svi & 0xFF) << 8))


# --- 30.3: MOV to and from CR8 --------------------------------------------------

cdef int cr8_load(Cpu* c, Insn* d, uint64_t v) noexcept nogil:
    """MOV to CR8 with "use TPR shadow" (30.3), after the CR8-load exiting
    and #GP checks (core/insn/system.pxi): the value goes to VTPR[7:4], bits
    31:8 and 3:0 of VTPR cleared, and TPR virtualization follows the
    instruction (trap-like)."""
    vapic_set(c, VAPIC_TPR, <uint32_t>(v & 0xF) << 4)
    tpr_defer(c)
    return RC_OK


cdef int cr8_store(Cpu* c, Insn* d, uint64_t* v) noexcept nogil:
    """MOV from CR8 in VMX non-root operation (26.1.3, 30.3): CR8-store
    exiting exits (access type 1, the destination register); with "use TPR
    shadow" the value is VTPR[7:4]; otherwise the processor's CR8."""
    if c.vmx.ctl.proc & PROC_CR8_STORE_EXITING:
        return insn_exit(c, d, EXIT_REASON_CONTROL_REGISTER_ACCESS, cr_qual(8, 1, d.rm))
    if c.vmx.ctl.proc & PROC_USE_TPR_SHADOW:
        v[0] = (vapic_get(c, VAPIC_TPR) >> 4) & 0xF
    else:
        v[0] = c.cr8
    return RC_OK


# --- 30.4: the APIC-access page ---------------------------------------------------

cdef inline int apic_access_page(Cpu* c, uint64_t hpa) noexcept nogil:
    """Whether an access to physical address hpa is an access to the
    APIC-access page that the processor treats specially (30.4): in VMX
    non-root operation with "virtualize APIC accesses"; the page is the
    physical one (after EPT), and needs no memory behind it."""
    return c.vmx.non_root and (c.vmx.ctl.proc2 & PROC2_VIRTUALIZE_APIC_ACCESSES) and \
        (hpa & ~0xFFFULL) == (c.vmx.ctl.apic_access & ~0xFFFULL)


cdef int apic_access_exit(Cpu* c, uint32_t off, uint32_t kind) noexcept nogil:
    """Stage an APIC-access VM exit (reason 44): qualification bits 11:0 the
    page offset, 15:12 the access type (Table 28-6).  Fault-like: the
    instruction has not completed; the work a virtualized write of the same
    operation left is dropped with it."""
    c.vmx.apic_pend = 0
    vmexit_event(c, EXIT_REASON_APIC_ACCESS, (<uint64_t>kind << 12) | (off & 0xFFF))
    if kind == APIC_ACC_LINEAR_READ or kind == APIC_ACC_LINEAR_WRITE:
        c.vmx.x_len = <uint32_t>((c.next_rip - c.rip) & 0xF)
    return RC_VMEXIT


cdef int apic_touch(Cpu* c, uint64_t hpa, int kind, int final_access) noexcept nogil:
    """gpa_to_host found the APIC-access page.  A fetch is an APIC-access
    exit (type 2), an access that is not the final one of a linear address
    (a paging-structure entry) one of type 15 (a guest-physical access
    during instruction execution).  A data access goes the MMIO way
    (RC_MMIO with c.mmio_gpa, never a TLB entry), so lin_read/lin_write
    bring it with its size to apic_data_access."""
    if kind == ACC_FETCH:
        return apic_access_exit(c, <uint32_t>(hpa & 0xFFF), APIC_ACC_LINEAR_FETCH)
    if not final_access:
        return apic_access_exit(c, <uint32_t>(hpa & 0xFFF), APIC_ACC_GPA_INSN)
    c.mmio_gpa = hpa | MMIO_APIC_PAGE
    return RC_MMIO


cdef int apic_read_virtualized(Cpu* c, uint32_t off) noexcept nogil:
    """Whether a read of the 32-bit register at off (30.4.2) is served from
    the virtual-APIC page: TPR always, EOI and ICR low with "virtual-interrupt
    delivery", and with "APIC-register virtualization" the registers of
    30.4.2's list (ID, version, TPR, EOI, LDR, DFR, SVR, ISR, TMR, IRR, ESR,
    ICR, the LVT entries from 320H, initial count, divide configuration)."""
    if off == VAPIC_TPR:
        return 1
    if (c.vmx.ctl.proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY) and (off == VAPIC_EOI or off == VAPIC_ICR_LO):
        return 1
    if not (c.vmx.ctl.proc2 & PROC2_APIC_REGISTER_VIRTUALIZATION):
        return 0
    return (off == 0x20 or off == 0x30 or off == 0x80 or off == 0xB0 or off == 0xD0 or off == 0xE0 or
            off == 0xF0 or (0x100 <= off <= 0x270) or off == 0x280 or off == 0x300 or off == 0x310 or
            (0x320 <= off <= 0x370) or off == 0x380 or off == 0x3E0)


cdef int apic_write_virtualized(Cpu* c, uint32_t off) noexcept nogil:
    """Whether a write of the 32-bit register at off (30.4.3.1) goes to the
    virtual-APIC page: TPR always, EOI and ICR low with "virtual-interrupt
    delivery", and with "APIC-register virtualization" the writable
    registers (ID, TPR, EOI, LDR, DFR, SVR, ESR, LVT CMCI, ICR, the LVT
    entries, initial count, divide configuration)."""
    if off == VAPIC_TPR:
        return 1
    if (c.vmx.ctl.proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY) and (off == VAPIC_EOI or off == VAPIC_ICR_LO):
        return 1
    if not (c.vmx.ctl.proc2 & PROC2_APIC_REGISTER_VIRTUALIZATION):
        return 0
    return (off == 0x20 or off == 0x80 or off == 0xB0 or off == 0xD0 or off == 0xE0 or off == 0xF0 or
            off == 0x280 or off == 0x2F0 or off == 0x300 or off == 0x310 or (0x320 <= off <= 0x370) or
            off == 0x380 or off == 0x3E0)


cdef int apic_data_access(Cpu* c, uint64_t hpa, int size, int write, uint64_t* val) noexcept nogil:
    """A linear data access of `size` bytes at hpa on the APIC-access page
    (30.4.2, 30.4.3.1).  It exits (type 0 or 1) without "use TPR shadow",
    when wider than 32 bits, when not inside the low 4 bytes of its 16-byte
    register, after a virtualized write of the same operation, or at a
    register the controls do not virtualize.  Otherwise a read returns the
    bytes of the virtual-APIC page at the same offset, and a write lands
    there and leaves APIC-write emulation for the boundary after the
    instruction."""
    cdef uint32_t off = <uint32_t>(hpa & 0xFFF)
    cdef uint32_t kind = APIC_ACC_LINEAR_WRITE if write else APIC_ACC_LINEAR_READ
    cdef uint8_t* p
    cdef uint64_t v = 0
    if not (c.vmx.ctl.proc & PROC_USE_TPR_SHADOW) or size > 4 or (off & 0xF) + <uint32_t>size > 4 or \
            (c.vmx.apic_pend & APIC_PEND_WRITE):
        return apic_access_exit(c, off, kind)
    if not (apic_write_virtualized(c, off & ~0xFU) if write else apic_read_virtualized(c, off & ~0xFU)):
        return apic_access_exit(c, off, kind)
    p = vapic_page(c)
    if write:
        if p != NULL:
            memcpy(p + off, val, size)
            vapic_written(c, off)
        c.vmx.apic_pend_off = off
        apic_defer(c, APIC_PEND_WRITE)
    else:
        if p != NULL:
            memcpy(&v, p + off, size)
        val[0] = v
    return RC_OK


# --- 30.5: the x2APIC MSRs ---------------------------------------------------------

cdef int x2apic_rdmsr(Cpu* c, uint32_t msr, uint64_t* v) noexcept nogil:
    """RDMSR of 800H-8FFH in VMX non-root operation with "virtualize x2APIC
    mode", the MSR bitmap not exiting (30.5): 1 and the 64-bit value at page
    offset (ECX & FFH) << 4 for TPR (808H), and with "APIC-register
    virtualization" for the x2APIC registers of 30.5's list; 0 for the
    others, which RDMSR reads as it would without the control."""
    cdef uint32_t n = msr & 0xFF
    cdef uint8_t* p
    if msr != MSR_X2APIC_TPR:
        if not (c.vmx.ctl.proc2 & PROC2_APIC_REGISTER_VIRTUALIZATION):
            return 0
        if not (n == 0x02 or n == 0x03 or n == 0x08 or n == 0x0A or n == 0x0D or n == 0x0F or
                (0x10 <= n <= 0x28) or n == 0x2F or n == 0x30 or (0x32 <= n <= 0x38) or n == 0x3E):
            return 0
    p = vapic_page(c)
    v[0] = 0
    if p != NULL:
        memcpy(v, p + (n << 4), 8)
    return 1


cdef int x2apic_wrmsr(Cpu* c, uint32_t msr, uint64_t v, int* gp) noexcept nogil:
    """WRMSR of 800H-8FFH with "virtualize x2APIC mode", the MSR bitmap not
    exiting (30.5): 1 if virtualized, with gp[0] = 1 for #GP(0).  TPR (808H):
    bits 63:8 must be 0; the value goes to VTPR, TPR virtualization follows.
    With "virtual-interrupt delivery", EOI (80BH): the value must be 0; EOI
    virtualization follows.  SELF IPI (83FH): bits 63:8 must be 0; the
    value goes to offset 3F0H and self-IPI virtualization of that vector
    follows, or, for a vector below 16, an APIC-write exit at 3F0H."""
    cdef int vid = (c.vmx.ctl.proc2 & PROC2_VIRTUAL_INTERRUPT_DELIVERY) != 0
    gp[0] = 0
    if msr == MSR_X2APIC_TPR:
        if v >> 8:
            gp[0] = 1
            return 1
        vapic_set(c, VAPIC_TPR, <uint32_t>v)
        vapic_set(c, VAPIC_TPR + 4, 0)
        tpr_defer(c)
        return 1
    if msr == MSR_X2APIC_EOI and vid:
        if v:
            gp[0] = 1
            return 1
        vapic_set(c, VAPIC_EOI, 0)
        apic_defer(c, APIC_PEND_EOI)
        return 1
    if msr == MSR_X2APIC_SELF_IPI and vid:
        if v >> 8:
            gp[0] = 1
            return 1
        vapic_set(c, VAPIC_SELF_IPI, <uint32_t>v)
        if v < 16:
            c.vmx.apic_pend_off = VAPIC_SELF_IPI
            apic_defer(c, APIC_PEND_WRITE)
        else:
            c.vmx.apic_pend_vec = <uint32_t>v
            apic_defer(c, APIC_PEND_SELF_IPI)
        return 1
    return 0


# --- 30.6: posted-interrupt processing -----------------------------------------------

cdef int posted_interrupts(Cpu* c) noexcept nogil:
    """An external interrupt with the posted-interrupt notification vector
    arrived (the caller has acknowledged it) with "process posted
    interrupts" (30.6): the outstanding-notification bit (descriptor bit 256)
    is cleared, the posted-interrupt requests (bits 255:0) move into VIRR,
    RVI rises to the highest of them, and pending virtual interrupts are
    evaluated; no VM exit.  (The model's interrupt source needs no EOI.)  A
    descriptor no memory backs posts nothing."""
    cdef uint8_t* p = hpa_ptr(c, c.vmx.ctl.pi_desc, 64, c.vmx.host_x86)
    cdef uint32_t pir[8]
    cdef int i, vec, top = -1
    if p == NULL:
        return RC_OK
    p[32] &= 0xFE
    memcpy(pir, p, 32)
    memset(p, 0, 32)
    if c.dirty_log:
        dirty_ptr(c, p)
    for i in range(8):
        if pir[i]:
            vapic_set(c, VAPIC_IRR + (<uint32_t>i << 4), vapic_get(c, VAPIC_IRR + (<uint32_t>i << 4)) | pir[i])
            top = i * 32 + 31 - __builtin_clz(pir[i])
    if top > <int>c.vmx.rvi:
        c.vmx.rvi = <uint32_t>top
    vint_evaluate(c)
    return RC_OK
