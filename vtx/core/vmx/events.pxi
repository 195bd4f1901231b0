# Events at instruction boundaries and VM-entry event injection
# (docs/architecture.rst, "Events and injection").
#
# SDM references are to the pinned edition (325462-080US, June 2023), Vol. 3C:
# 25.4.2 interruptibility and activity state, 25.6.1 and 25.6.2 the pin- and
# processor-based controls, 26.2 what causes VM exits, 26.3 IRET in non-root
# operation, 26.7.5 and 26.7.6 interrupt- and NMI-window exiting, 27.6 event
# injection, 27.7 the special features of VM entry, 28.2.2 the VM-exit
# interruption information; Vol. 3A 6.7.1 NMI handling, 6.9 the priority
# among simultaneous events (Table 6-2).
#
# The platform raises external interrupts and NMIs from Python
# (VCpu.raise_interrupt, VCpu.raise_nmi).  They wait in Cpu.irr and
# Cpu.nmi_pending until an instruction boundary where the processor can take
# them.  The run loop looks at boundaries only while there is something to
# look at: events_arm lowers icount_limit, so the loop's one test of the
# budget (c.icount >= c.icount_limit) also leads here, and with nothing
# pending the hot path pays nothing.  An interrupt masked by IF = 0 or an
# NMI held by blocking by NMI costs nothing either: STI, POPF and IRET,
# the only instructions that end those, arm the check (events_unmasked).
# Only while a boundary alone can change the outcome (an STI or MOV SS
# shadow, a window-exiting control, the monitor trap flag) does the loop
# look after every instruction (a block then runs only one instruction).
#
# Everything here works from the processor's own state and, in VMX non-root
# operation only, from the controls the entry copied (c.vmx.ctl): outside
# non-root operation an event goes through the IDT as on any x86 processor.

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


cdef enum:
    # What event_ready found takeable, in the order of SDM Vol. 3A Table 6-2
    # and Vol. 3C 26.5.1, 26.5.2, 26.7.5, 26.7.6: an MTF exit comes first,
    # then the VMX-preemption timer, an NMI-window exit, an NMI, an
    # interrupt-window exit and last an external interrupt.
    EVR_NONE = 0
    EVR_MTF = 1
    EVR_TIMER = 2
    EVR_NMI_WINDOW = 3
    EVR_NMI = 4
    EVR_INTR_WINDOW = 5
    EVR_INTR = 6
    EVR_INIT = 7
    EVR_SIPI = 8
    EVR_VINTR = 9       # a recognized virtual interrupt (core/vmx/apicv.pxi)

    # SDM 28.2.2 / 27.6: bit 31 of an interruption-information field.
    INTR_INFO_VALID = 0x80000000


cdef inline int irr_any(Cpu* c) noexcept nogil:
    return (c.irr[0] | c.irr[1] | c.irr[2] | c.irr[3]) != 0


cdef inline int irr_highest(Cpu* c) noexcept nogil:
    """The highest pending vector (an interrupt controller offers the one of
    highest priority first), -1 if none."""
    cdef int i
    for i in range(3, -1, -1):
        if c.irr[i]:
            return i * 64 + 63 - __builtin_clzll(c.irr[i])
    return -1


cdef inline int events_each_boundary(Cpu* c) noexcept nogil:
    """Whether the loop must look at every instruction boundary: an event
    is pending that an instruction boundary alone may unblock, a
    window-exiting control or the monitor trap flag is set, the processor
    is halted, or the VM entry staged an exit or an MTF exit.

    An external interrupt masked by RFLAGS.IF = 0 (without STI or MOV SS
    shadow, without "external-interrupt exiting") and an NMI held by
    blocking by NMI wait for an instruction to change that: only STI, POPF
    and IRET set IF, only IRET ends blocking by NMI, and those call
    events_unmasked, so the guest runs at full speed meanwhile."""
    cdef uint32_t pin = 0
    cdef uint32_t proc = 0
    if c.vmx.non_root:
        pin = c.vmx.ctl.pin
        proc = c.vmx.ctl.proc
    if c.activity != 0 or c.vmx.x_pending or c.vmx.mtf_pending or c.init_pending or c.sipi_pending or \
            c.vmx.apic_pend or (c.vmx.vint and ((c.rflags & F_IF) or (c.interruptibility & 3))) or \
            (proc & (PROC_INTERRUPT_WINDOW_EXITING | PROC_NMI_WINDOW_EXITING | PROC_MONITOR_TRAP_FLAG)):
        return 1
    if c.nmi_pending and not ((c.interruptibility & 8) and not (pin & PIN_VIRTUAL_NMIS)):
        return 1
    return irr_any(c) and ((c.rflags & F_IF) or (pin & PIN_EXTERNAL_INTERRUPT_EXITING) or
                           (c.interruptibility & 3))


cdef inline int events_wanted(Cpu* c) noexcept nogil:
    """Whether the loop must look at instruction boundaries at all: at
    every one (events_each_boundary), or when the VMX-preemption timer
    runs out."""
    return events_each_boundary(c) or (c.vmx.non_root and c.vmx.pt_active)


cdef inline uint64_t tsc_now(Cpu* c) noexcept nogil:
    """The processor's TSC: one tick per retired instruction
    (docs/architecture.rst, decision 11)."""
    return c.tsc_base + c.icount


cdef inline uint64_t events_next(Cpu* c) noexcept nogil:
    """The icount at which the loop must look next: the next boundary, or
    the one where the VMX-preemption timer runs out (its deadline is in TSC
    ticks, which advance with icount), or never."""
    cdef uint64_t t
    if events_each_boundary(c):
        return c.icount + 1
    if c.vmx.non_root and c.vmx.pt_active:
        t = tsc_now(c)
        return c.icount + (c.vmx.pt_deadline - t if c.vmx.pt_deadline > t else 0)
    return 0xFFFFFFFFFFFFFFFFULL


cdef inline void events_arm(Cpu* c, uint64_t at) noexcept nogil:
    """Make the loop call event_boundary when icount reaches `at` (or at the
    end of the budget or slice, if that comes first)."""
    if not c.ev_armed:
        c.ev_armed = 1
        c.ev_limit = c.icount_limit
    if at < c.icount_limit:
        c.icount_limit = at


cdef inline void events_unmasked(Cpu* c) noexcept nogil:
    """STI, POPF or IRET set RFLAGS.IF, or IRET ended blocking by NMI:
    look at the boundary after the instruction if an event waits."""
    if c.nmi_pending or irr_any(c) or c.vmx.vint:
        events_arm(c, c.icount + 1)


cdef int event_ready(Cpu* c) noexcept nogil:
    """The event the processor would take at this boundary (EVR_*), without
    taking it.

    Blocking (SDM Vol. 3C 25.4.2, Table 25-3): STI and MOV SS block
    external interrupts for one instruction, MOV SS also NMIs; the model
    does not let STI's shadow block NMIs (the SDM leaves that to the
    implementation; the VM-entry check on NMI injection looks only at MOV
    SS).  Blocking by NMI (bit 3) blocks NMIs, except with "virtual NMIs",
    where it is virtual-NMI blocking and blocks only NMI-window exits (SDM
    27.7.1).  With "external-interrupt exiting" RFLAGS.IF does not mask
    external interrupts (SDM 25.6.1, Table 25-5); the STI and MOV SS
    shadows still do."""
    cdef uint32_t ib = c.interruptibility
    cdef uint32_t pin = 0
    cdef uint32_t proc = 0
    if c.vmx.non_root:
        # INIT and SIPI in VMX non-root operation (SDM Vol. 3C 26.2): INIT
        # exits, except in the wait-for-SIPI state, which blocks it (and
        # external interrupts, NMIs; 27.7.2); a SIPI exits only in that state
        # and the others discard it.  INIT comes before the MTF, the
        # preemption timer and the lower events (Vol. 3A Table 6-2: external
        # hardware interventions, priority 3).  A SIPI raised behind an
        # INIT waits for the INIT's exit, whose handler may enter
        # wait-for-SIPI (the INIT-SIPI sequence, raised back to back).
        if c.activity == 3:
            return EVR_SIPI if c.sipi_pending else EVR_NONE
        if c.init_pending:
            return EVR_INIT
        c.sipi_pending = 0
    if c.activity > 1:
        # The shutdown state (entered only by VM entry: a triple fault in
        # non-root operation exits instead): INIT (above) and NMIs end it
        # (SDM Vol. 3A 6.15 "Interrupt 8", Vol. 3C 25.4.2); nothing else.
        if c.activity == 2 and c.nmi_pending and not (c.interruptibility & 8):
            return EVR_NMI
        return EVR_NONE
    if c.vmx.non_root:
        pin = c.vmx.ctl.pin
        proc = c.vmx.ctl.proc
        # SDM 26.5.2: with the monitor trap flag, an MTF exit is pending
        # after an instruction retires (each iteration of a REP string
        # instruction, as the model counts them) or an event is delivered;
        # VM entry may inject one (27.6.2).
        if c.vmx.mtf_pending or ((proc & PROC_MONITOR_TRAP_FLAG) and
                                 c.icount + c.events != c.vmx.mtf_mark):
            return EVR_MTF
        # SDM 26.5.1: the VMX-preemption timer counted down to 0.
        if c.vmx.pt_active and tsc_now(c) >= c.vmx.pt_deadline:
            return EVR_TIMER
    # SDM 26.7.6: an exit before any instruction when there is no
    # virtual-NMI blocking and no blocking by MOV SS.
    if (proc & PROC_NMI_WINDOW_EXITING) and not (ib & 0xA):
        return EVR_NMI_WINDOW
    if c.nmi_pending and not (ib & 2) and not ((ib & 8) and not (pin & PIN_VIRTUAL_NMIS)):
        return EVR_NMI
    # SDM 26.7.5: an exit before any instruction when RFLAGS.IF = 1 and
    # there is no blocking by STI or MOV SS.
    if (proc & PROC_INTERRUPT_WINDOW_EXITING) and (c.rflags & F_IF) and not (ib & 3):
        return EVR_INTR_WINDOW
    # SDM 30.2.2: a recognized virtual interrupt, at the priority of an
    # interrupt-window exit (whose control being 0 the recognition needed),
    # before external interrupts.
    if c.vmx.vint and c.vmx.non_root and (c.rflags & F_IF) and not (ib & 3):
        return EVR_VINTR
    if irr_any(c) and not (ib & 3) and ((pin & PIN_EXTERNAL_INTERRUPT_EXITING) or (c.rflags & F_IF)):
        return EVR_INTR
    return EVR_NONE


cdef int take_vectored(Cpu* c, int vec, int typ) noexcept nogil:
    """Deliver an external interrupt (type 0) or NMI (type 2) through the
    IVT or IDT, with the return address on this instruction.  The exception
    bitmap does not apply to it, but does to a fault while delivering it,
    and such an exit reports it as IDT-vectoring information (SDM 28.2.4).
    Taking it ends the HLT state (SDM Vol. 2 HLT)."""
    c.activity = 0
    c.exc_vector = vec
    c.exc_type = typ
    c.exc_has_error = 0
    c.exc_error = 0
    c.exc_len = 0
    c.exc_cr2 = 0
    c.next_rip = c.rip
    return handle_event(c, EV_NO_BITMAP)


cdef int event_take(Cpu* c, int ev) noexcept nogil:
    """Take the event event_ready found: a VM exit the controls ask for, or
    a delivery to the guest."""
    cdef int vec
    cdef uint32_t pin = c.vmx.ctl.pin if c.vmx.non_root else 0
    if ev == EVR_INIT:
        # SDM 26.2: the exit changes no register state and clears no pending
        # event; exit qualification 0 (28.2.1).
        c.init_pending = 0
        return vmexit_event(c, EXIT_REASON_INIT_SIGNAL, 0)
    if ev == EVR_SIPI:
        # SDM 28.2.1, Table 28-1: the exit qualification is the SIPI vector.
        vec = <int>(c.sipi_pending & 0xFF)
        c.sipi_pending = 0
        return vmexit_event(c, EXIT_REASON_STARTUP_IPI, <uint64_t>vec)
    if ev == EVR_MTF:
        c.vmx.mtf_pending = 0
        c.vmx.mtf_mark = c.icount + c.events
        return vmexit_event(c, EXIT_REASON_MONITOR_TRAP_FLAG, 0)
    if ev == EVR_TIMER:
        return vmexit_event(c, EXIT_REASON_VMX_PREEMPTION_TIMER_EXPIRED, 0)
    if ev == EVR_NMI_WINDOW:
        return vmexit_event(c, EXIT_REASON_NMI_WINDOW, 0)
    if ev == EVR_INTR_WINDOW:
        return vmexit_event(c, EXIT_REASON_INTERRUPT_WINDOW, 0)
    if ev == EVR_VINTR:
        return vint_deliver(c)
    if ev == EVR_NMI:
        c.nmi_pending = 0
        if pin & PIN_NMI_EXITING:
            # SDM 26.2: exit reason 0; the interruption information says
            # NMI (type 2, vector 2), SDM 28.2.2.
            vmexit_event(c, EXIT_REASON_EXCEPTION_OR_NMI, 0)
            c.vmx.x_intr_info = INTR_INFO_VALID | (2 << 8) | EXC_NMI
            return RC_VMEXIT
        return take_vectored(c, EXC_NMI, 2)
    vec = irr_highest(c)
    if (pin & PIN_PROCESS_POSTED_INTERRUPTS) and vec == <int>(c.vmx.ctl.pi_vector & 0xFF):
        # SDM 30.6: the notification vector is acknowledged and the posted
        # interrupts processed, without a VM exit (core/vmx/apicv.pxi).
        c.irr[vec >> 6] &= ~(1ULL << (vec & 63))
        return posted_interrupts(c)
    if pin & PIN_EXTERNAL_INTERRUPT_EXITING:
        # SDM 26.2, 28.2.2: with "acknowledge interrupt on exit" the
        # processor acknowledges the interrupt controller and saves the
        # vector (type 0); without it the interruption information is
        # invalid and the interrupt stays pending for the host to handle.
        vmexit_event(c, EXIT_REASON_EXTERNAL_INTERRUPT, 0)
        if c.vmx.ctl.exit_ctl & EXIT_CTL_ACKNOWLEDGE_INTERRUPT_ON_EXIT:
            c.irr[vec >> 6] &= ~(1ULL << (vec & 63))
            c.vmx.x_intr_info = INTR_INFO_VALID | <uint32_t>vec
        return RC_VMEXIT
    c.irr[vec >> 6] &= ~(1ULL << (vec & 63))
    return take_vectored(c, vec, 0)


cdef int event_boundary(Cpu* c) noexcept nogil:
    """The run loop found icount at icount_limit with the event check armed:
    put the real limit back and look at this boundary.  RC_OK to go on
    executing (an event may have been delivered); RC_VMEXIT for a staged
    exit; RC_BUDGET at the end of the budget or slice; RC_HALTED when the
    processor is in the HLT state and nothing it can take is pending; or
    what delivering an event returned."""
    cdef int ev, rc
    # (An MTF exit is taken even at the end of the budget: it belongs to
    # the instruction or delivery just done, and a run that stopped before
    # it would lose it.)
    c.ev_armed = 0
    c.icount_limit = c.ev_limit
    if c.vmx.x_pending:
        # The VM entry's injected event faulted into a VM exit (SDM
        # 27.6.1.2): that exit comes before anything else.
        c.vmx.x_pending = 0
        return RC_VMEXIT
    if c.vmx.apic_pend:
        # [APIC virtualization] What the last instruction left for after it
        # (trap-like), even at the end of the budget: it belongs to the
        # instruction (core/vmx/apicv.pxi).
        rc = apic_boundary(c)
        if rc != RC_OK:
            return rc
    flags_sync(c)                   # delivery pushes RFLAGS, and IF is read
    ev = event_ready(c)
    if c.icount >= c.icount_limit and ev != EVR_MTF:
        # The budget or slice ends here; the event waits for the next one
        # (guest_slice arms again).  A halted processor that nothing can
        # wake says so, as it would without a budget.
        return RC_HALTED if (ev == EVR_NONE and c.activity != 0) else RC_BUDGET
    if ev == EVR_NONE and c.activity == 1 and c.vmx.non_root and c.vmx.pt_active:
        # Halted with only the VMX-preemption timer to wake it: the time
        # passes while nothing executes, so the TSC moves on to the moment
        # the timer reaches 0 (SDM 26.5.1: the timer counts in the HLT state).
        c.tsc_base += c.vmx.pt_deadline - tsc_now(c)
        ev = EVR_TIMER
    if ev != EVR_NONE:
        rc = event_take(c, ev)
        if rc == RC_OK and events_wanted(c):
            # The boundary before the handler's first instruction is a
            # boundary too: another event may be taken there.
            events_arm(c, c.icount)
        return rc
    if c.activity != 0:
        return RC_HALTED
    if events_wanted(c):
        events_arm(c, events_next(c))
    return RC_OK


cdef inline int pt_rate() noexcept nogil:
    """The VMX-preemption timer ticks when this bit of the TSC changes
    (IA32_VMX_MISC bits 4:0, SDM A.6)."""
    return <int>(VMX_CAP_MISC & 0x1F)


cdef void events_save_timer(Cpu* c, int always) noexcept nogil:
    """At a VM exit with "save VMX-preemption timer value" (SDM 28.3.4),
    or (always = 1) when the model leaves non-root operation without an
    exit (the budget, a halt), so that the next entry goes on counting from
    where the guest stopped: the ticks left."""
    cdef uint64_t t = tsc_now(c)
    if not c.vmx.pt_active:
        return
    if not always and not (c.vmx.ctl.exit_ctl & EXIT_CTL_SAVE_VMX_PREEMPTION_TIMER):
        return
    vwt(c, VMCS_OFF_VMX_PREEMPTION_TIMER_VALUE, 4,
        ((c.vmx.pt_deadline >> pt_rate()) - (t >> pt_rate())) if c.vmx.pt_deadline > t else 0)


cdef int entry_events(Cpu* c) noexcept nogil:
    """The last step of a successful VM entry, after the guest state is
    loaded: vectored-event injection (SDM 27.6.1).  The event in the
    VM-entry interruption-information field is delivered as the processor
    would deliver it in the guest, through its IVT or IDT, for every type:
    software events (4-6) push RIP + VM-entry instruction length, the
    others RIP; a hardware exception pushes the VM-entry exception error
    code when bit 11 says so.  The exception bitmap does not apply to the
    injected event (27.6.1.2), but a fault while delivering it is an
    exception like any other: it may exit (with the injected event as the
    IDT-vectoring information), become a #DF or a triple fault.  That exit
    is staged here and performed by the run loop at its first boundary.

    A vectoring entry leaves no blocking by STI or MOV SS (27.7.1) and the
    processor active (27.7.2); an injected NMI sets blocking by NMI, or
    virtual-NMI blocking with "virtual NMIs" (27.6.1.2; delivered() in
    core/exceptions.pxi).  Type 7 (other event, vector 0) is not
    vectoring: it makes an MTF exit pending (27.6.2).  The MTF mark and the
    VMX-preemption timer start here too.

    Returns RC_OK, or the run loop's error code if delivery cannot go on
    (the entry is then undone).  An event vectored through a task gate is a
    task-switch VM exit (reason 9), staged like any fault while delivering."""
    cdef uint32_t info = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4)
    cdef uint64_t t
    cdef int rc
    c.vmx.x_pending = 0
    c.vmx.mtf_pending = 0
    # The MTF counts what happens from here: an injected event delivered
    # makes an MTF exit pending before the first instruction (26.5.2).
    c.vmx.mtf_mark = c.icount + c.events
    # SDM 27.7.4: the VMX-preemption timer starts with the value in the
    # VMCS; it counts down by one each time bit 5 of the TSC changes
    # (IA32_VMX_MISC bits 4:0 = 5), so it reaches 0 at the V-th multiple
    # of 32 from now, and at once when V = 0.
    c.vmx.pt_active = (c.vmx.ctl.pin & PIN_ACTIVATE_VMX_PREEMPTION_TIMER) != 0
    if c.vmx.pt_active:
        t = tsc_now(c)
        c.vmx.pt_deadline = t if vr(c, VMCS_OFF_VMX_PREEMPTION_TIMER_VALUE, 4) == 0 else \
            ((t >> pt_rate()) + vr(c, VMCS_OFF_VMX_PREEMPTION_TIMER_VALUE, 4)) << pt_rate()
    if not (info & INTR_INFO_VALID):
        return RC_OK
    if ((info >> 8) & 7) == 7:
        # Type 7, vector 0 (the entry checks allow nothing else): a pending
        # MTF VM exit, even without the control (SDM 27.6.2).  Not
        # vectoring: blocking and activity stay as loaded.
        c.vmx.mtf_pending = 1
        vwt(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4, info & ~(<uint32_t>INTR_INFO_VALID))
        return RC_OK
    c.interruptibility &= ~(<uint32_t>3)
    c.activity = 0
    c.exc_vector = <int>(info & 0xFF)
    c.exc_type = <int>((info >> 8) & 7)
    c.exc_has_error = (info >> 11) & 1
    c.exc_error = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_EXCEPTION_ERROR_CODE, 4)
    c.exc_len = <uint32_t>vr(c, VMCS_OFF_VM_ENTRY_INSTRUCTION_LENGTH, 4)
    c.exc_cr2 = c.cr2               # injecting #PF does not write CR2: the VMM did
    c.next_rip = (c.rip + c.exc_len) & SIZE_MASK[c.code_size]
    rc = handle_event(c, EV_NO_BITMAP | EV_INJECTED)
    if rc == RC_VMEXIT:
        c.vmx.x_pending = 1
        rc = RC_OK
    if rc == RC_OK:
        # The valid bit is cleared at the next VM exit (SDM 28.2.3,
        # core/vmx/exit.pxi); the model clears it now as well, so that a run
        # that leaves non-root operation without an exit (the budget, a
        # halt) does not inject the event a second time at the next entry.
        vwt(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4, info & ~(<uint32_t>INTR_INFO_VALID))
    return rc
