# VM exits (SDM Vol. 3 chapter 27): record the exit information, save the
# guest state into the VMCS, leave non-root operation.
#
# The hosted (Python) hypervisor has no host code for the model to run, so the
# host-state area is checked at entry but not loaded at exit: control returns
# to Python, which is the host.  The guest's general registers stay in the
# register file, as they do on hardware (SDM 27.1).

from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC


cdef inline uint64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef void save_guest_state(Cpu* c) noexcept nogil:
    """SDM 27.3: the processor state saved into the guest-state area.

    Through vwt: a saved value that differs from the one the last VM entry
    loaded marks the checks that read it, so the next VMRESUME checks what
    the guest changed and nothing else (docs/architecture.rst, "Entry checks
    at VMRESUME").  This needs no argument about what the instructions can
    produce: whatever the guest did, a changed input is re-checked."""
    cdef int i
    cdef uint64_t changed = 0
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
    vwt(c, VMCS_OFF_GUEST_PENDING_DEBUG_EXCEPTIONS, 8, 0)
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
    if vpid_active(c) and c.paging != 3:
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
    if not (c.tlb_kept and vpid_active(c) and c.paging != 3 and
            c.tlb_vpid == vr(c, VMCS_OFF_VIRTUAL_PROCESSOR_ID, 2) and
            c.tlb_cr0 == c.cr0 & (CR0_PE | CR0_WP | CR0_PG) and c.tlb_cr3 == c.cr3 and
            c.tlb_cr4 == c.cr4 & (CR4_PSE | CR4_PAE | CR4_PGE | CR4_PCIDE | CR4_SMEP | CR4_SMAP) and
            c.tlb_efer == c.efer & (EFER_LMA | EFER_NXE) and
            c.tlb_eptp == (c.vmx.ctl.eptp if c.vmx.ept else 1)):
        tlb_flush(c)
    c.tlb_kept = 0


cdef void vm_exit(Cpu* c) noexcept nogil:
    """Perform the VM exit staged in c.x_* (SDM 27.2 exit information, 27.3
    guest state)."""
    cdef uint32_t reason = c.vmx.x_reason
    vw(c, VMCS_OFF_EXIT_REASON, 4, reason)
    vw(c, VMCS_OFF_EXIT_QUALIFICATION, 8, c.vmx.x_qual)
    vw(c, VMCS_OFF_VM_EXIT_INSTRUCTION_LENGTH, 4, c.vmx.x_len)
    vw(c, VMCS_OFF_VM_EXIT_INSTRUCTION_INFO, 4, c.vmx.x_info)
    vw(c, VMCS_OFF_VM_EXIT_INTERRUPTION_INFO, 4, c.vmx.x_intr_info)
    vw(c, VMCS_OFF_VM_EXIT_INTERRUPTION_ERROR_CODE, 4, c.vmx.x_intr_error)
    # SDM 27.2.4: valid only for exits during event delivery (staged by
    # handle_exception); the error code field is meaningful with bit 11.
    vw(c, VMCS_OFF_IDT_VECTORING_INFO, 4, c.vmx.x_idt_info)
    vw(c, VMCS_OFF_IDT_VECTORING_ERROR_CODE, 4, c.vmx.x_idt_error)
    c.vmx.x_idt_info = 0
    c.vmx.x_idt_error = 0
    if c.vmx.x_gla_valid:
        vw(c, VMCS_OFF_GUEST_LINEAR_ADDRESS, 8, c.vmx.x_gla)
    if reason == EXIT_REASON_EPT_VIOLATION or reason == EXIT_REASON_EPT_MISCONFIGURATION:
        vw(c, VMCS_OFF_GUEST_PHYSICAL_ADDRESS, 8, c.vmx.x_gpa)
    # SDM 27.2.3: the valid bit of the VM-entry interruption information is
    # cleared on every VM exit.
    vwt(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4,
        vr(c, VMCS_OFF_VM_ENTRY_INTERRUPTION_INFO, 4) & 0x7FFFFFFFULL)
    save_guest_state(c)
    events_save_timer(c, 0)     # [events] "save VMX-preemption timer value" (SDM 28.3.4)
    tlb_at_exit(c)
    c.vmx.non_root = 0
    c.vmx.ept = 0
    c.exit_count[reason & 0x7F] += 1
    c.acct_reason = reason & 0x7F
    c.exit_t0 = now_ns()


cdef inline void account_exit_time(Cpu* c) noexcept nogil:
    """Charge the time since the last VM exit to its reason (decision 10:
    wall time per exit, measured as it happens)."""
    if c.acct_reason >= 0:
        c.exit_ns[c.acct_reason] += now_ns() - c.exit_t0
        c.acct_reason = -1
