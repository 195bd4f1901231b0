# The VMX instructions (SDM Vol. 3C chapter 31, pinned edition: see
# docs/architecture.rst, "The VMX layer"): VMXON, VMXOFF, VMCLEAR, VMPTRLD,
# VMPTRST, VMREAD, VMWRITE, VMLAUNCH, VMRESUME, VMCALL, INVEPT, INVVPID and
# VMFUNC; GETSEC, which exits from a guest; and RDRAND/RDSEED, which share
# the 0F C7 opcode group.
#
# Each instruction is two layers.  The vmx_op_* functions are the operation
# proper, after the #UD, VM-exit and #GP checks: they return VMX_SUCCEED,
# VMX_FAIL_INVALID or a VM-instruction error number (VMfailValid), and are
# what both the x86 instructions and the Python low-level API
# (vtx.BareCpu.vmxon, ...) execute.  The h_* handlers add the checks in the
# order of the SDM's Operation sections, read and write the operands, and
# turn the outcome into RFLAGS (vmx_flags).

cdef enum:
    VMX_SUCCEED = 0
    VMX_FAIL_INVALID = -1

cdef uint64_t VMCS_PTR_NONE = 0xFFFFFFFFFFFFFFFFULL

# CF PF AF ZF SF OF: the flags every VMX instruction outcome writes (SDM 31.2).
cdef uint64_t VMX_STATUS_FLAGS = F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF


cdef inline int vmx_current_valid(Cpu* c) noexcept nogil:
    return c.vmx.vmcs_ptr != VMCS_PTR_NONE and c.vmx.vmcs != NULL


cdef inline int vmx_fail(Cpu* c, int err) noexcept nogil:
    """VMfail(err) of the SDM: VMfailValid(err) with a current VMCS,
    VMfailInvalid without one."""
    return err if vmx_current_valid(c) else VMX_FAIL_INVALID


cdef void vmx_set_none(Cpu* c) noexcept nogil:
    c.vmx.vmcs_ptr = VMCS_PTR_NONE
    c.vmx.vmcs = NULL
    c.vmx.vmcs_in_ram = 0


cdef void vmcs_ram_written(Cpu* c, uint64_t pa) noexcept nogil:
    """The model wrote the VMCS region at pa (in RAM) through a host pointer:
    decoded code in that page, however unlikely, must go like any other
    written code (docs/architecture.rst, "Self-modifying code")."""
    if pa < c.ram_size and c.code_pages[pa >> 12]:
        code_page_written(c, pa)


cdef inline void vmx_flags(Cpu* c, int st) noexcept nogil:
    """RFLAGS for the outcome st (SDM 31.2): VMsucceed clears CF PF AF ZF
    SF OF; VMfailInvalid sets CF; VMfailValid sets ZF and writes the error
    number into the VM-instruction error field of the current VMCS."""
    c.rflags &= ~VMX_STATUS_FLAGS
    if st == VMX_FAIL_INVALID:
        c.rflags |= F_CF
    elif st > 0:
        c.rflags |= F_ZF
        vw(c, VMCS_OFF_VM_INSTRUCTION_ERROR, 4, <uint64_t>st)
        if c.vmx.vmcs_in_ram:
            vmcs_ram_written(c, c.vmx.vmcs_ptr)


cdef inline int vmx_pa_ok(uint64_t pa) noexcept nogil:
    """A VMXON, VMCS or VMCLEAR pointer: 4 KiB aligned, within MAXPHYADDR."""
    return (pa & 0xFFF) == 0 and (pa >> MAXPHYADDR) == 0


cdef uint32_t vmx_region_revision(Cpu* c, uint64_t pa) noexcept nogil:
    """The first 32 bits of the region at pa; all ones where no RAM backs
    the whole region (reads of nothing float high), which no revision
    identifier matches."""
    cdef uint8_t* p = hpa_ptr(c, pa, VMCS_REGION_SIZE, 1)
    cdef uint32_t rev
    if p == NULL:
        return 0xFFFFFFFFU
    memcpy(&rev, p, 4)
    return rev


# --- the operations ------------------------------------------------------------

cdef int vmx_op_vmxon(Cpu* c, uint64_t pa) noexcept nogil:
    """VMXON outside VMX operation, past its #UD and #GP checks."""
    cdef uint32_t rev
    if not vmx_pa_ok(pa):
        return VMX_FAIL_INVALID
    rev = vmx_region_revision(c, pa)
    if (rev & 0x7FFFFFFFU) != VMX_CAP_VMCS_REVISION_ID or (rev & 0x80000000U):
        return VMX_FAIL_INVALID
    c.vmx.on = 1
    c.vmx.non_root = 0
    c.vmx.vmxon_ptr = pa
    c.vmx.vmxon_count += 1
    vmx_set_none(c)
    return VMX_SUCCEED


cdef int vmx_op_vmxoff(Cpu* c) noexcept nogil:
    """VMXOFF in VMX root operation: leave VMX operation.  The current-VMCS
    pointer goes with it (a later VMXON starts with none).  Whoever executed
    it, x86 code is what runs next on the processor, so it is the root-mode
    software again: a later VMXON by that code must not find the machine
    handed to Python (BareMetal.run would refuse to go on)."""
    c.vmx.on = 0
    c.vmx.host_x86 = 1
    vmx_set_none(c)
    return VMX_SUCCEED


cdef int vmx_op_vmclear(Cpu* c, uint64_t pa) noexcept nogil:
    """VMCLEAR: the launch state of the VMCS at pa becomes clear; if it is
    the current VMCS, there is no current VMCS any more.  The region's
    revision identifier is not checked (SDM 31.3, VMCLEAR)."""
    cdef uint8_t* p
    if not vmx_pa_ok(pa):
        return vmx_fail(c, VMXERR_VMCLEAR_INVALID_ADDRESS)
    if pa == c.vmx.vmxon_ptr:
        return vmx_fail(c, VMXERR_VMCLEAR_VMXON_POINTER)
    p = hpa_ptr(c, pa, VMCS_REGION_SIZE, 1)
    if p != NULL:
        p[VMCS_OFF_LAUNCH_STATE] = 0
        vmcs_ram_written(c, pa)
    if pa == c.vmx.vmcs_ptr:
        vmx_set_none(c)
    return VMX_SUCCEED


cdef int vmx_op_vmptrld(Cpu* c, uint64_t pa) noexcept nogil:
    """VMPTRLD: make the VMCS at pa current."""
    cdef uint32_t rev
    if not vmx_pa_ok(pa):
        return vmx_fail(c, VMXERR_VMPTRLD_INVALID_ADDRESS)
    if pa == c.vmx.vmxon_ptr:
        return vmx_fail(c, VMXERR_VMPTRLD_VMXON_POINTER)
    rev = vmx_region_revision(c, pa)
    # Bit 31 (shadow VMCS) needs the "VMCS shadowing" control, not offered.
    if (rev & 0x7FFFFFFFU) != VMX_CAP_VMCS_REVISION_ID or (rev & 0x80000000U):
        return vmx_fail(c, VMXERR_VMPTRLD_INCORRECT_REVISION)
    c.vmx.vmcs_ptr = pa
    c.vmx.vmcs = hpa_ptr(c, pa, VMCS_REGION_SIZE, 1)
    c.vmx.vmcs_in_ram = 1
    c.vmx.ck_dirty = CKM_ALL
    return VMX_SUCCEED


cdef int vmx_op_vmread(Cpu* c, uint64_t enc, uint64_t* v) noexcept nogil:
    """VMREAD of the component with encoding enc from the current VMCS."""
    cdef int ok
    if not vmx_current_valid(c):
        return VMX_FAIL_INVALID
    if enc >> 32:
        return VMXERR_UNSUPPORTED_VMCS_COMPONENT
    v[0] = vmcs_read_enc(c.vmx.vmcs, <uint32_t>enc, &ok)
    if not ok:
        return VMXERR_UNSUPPORTED_VMCS_COMPONENT
    return VMX_SUCCEED


cdef int vmx_op_vmwrite(Cpu* c, uint64_t enc, uint64_t v) noexcept nogil:
    """VMWRITE of v into the component with encoding enc of the current
    VMCS.  The read-only (VM-exit information) fields are writable because
    IA32_VMX_MISC bit 29 is 1, as on current Intel processors; error 13 is
    reachable only on a model that clears it."""
    cdef int off, w
    if not vmx_current_valid(c):
        return VMX_FAIL_INVALID
    if enc >> 32:
        return VMXERR_UNSUPPORTED_VMCS_COMPONENT
    off = vmcs_field_offset(<uint32_t>enc)
    w = vmcs_field_width(<uint32_t>enc)
    if off < 0 or w == 0:
        return VMXERR_UNSUPPORTED_VMCS_COMPONENT
    if ((enc >> 10) & 3) == 1 and not (VMX_CAP_MISC & (1ULL << 29)):
        return VMXERR_VMWRITE_READ_ONLY_COMPONENT
    vmcs_write_tracked(c, <uint32_t>enc, v)
    if c.vmx.vmcs_in_ram:
        vmcs_ram_written(c, c.vmx.vmcs_ptr)
    return VMX_SUCCEED


cdef int vmx_entry_precheck(Cpu* c, int launch) noexcept nogil:
    """The checks of VMLAUNCH/VMRESUME before the VM-entry checks (SDM 31.3
    and 27.1): a current VMCS, no blocking by MOV SS, the launch state.  A
    VMCS launched before the last VMXON gives error 6 at VMRESUME."""
    cdef uint8_t ls
    cdef uint32_t epoch
    if not vmx_current_valid(c):
        return VMX_FAIL_INVALID
    if c.interruptibility & 2:
        return VMXERR_ENTRY_EVENTS_BLOCKED_BY_MOV_SS
    ls = c.vmx.vmcs[VMCS_OFF_LAUNCH_STATE]
    if launch and ls:
        return VMXERR_VMLAUNCH_NONCLEAR_VMCS
    if not launch:
        if not ls:
            return VMXERR_VMRESUME_NONLAUNCHED_VMCS
        memcpy(&epoch, c.vmx.vmcs + VMCS_OFF_LAUNCH_EPOCH, 4)
        if c.vmx.vmcs_in_ram and epoch != c.vmx.vmxon_count:
            return VMXERR_VMRESUME_AFTER_VMXOFF
    return VMX_SUCCEED


cdef int vmx_op_enter(Cpu* c, int launch, int x86_host) noexcept nogil:
    """VMLAUNCH (launch=1) or VMRESUME by root-mode x86 code (x86_host=1),
    whose exits then load the host state, or by the Python low-level API
    (x86_host=0), whose exits return to Python.  Returns RC_TRANSFERRED
    with the guest running (or, for x86 code after a VM-entry failure
    reported like an exit, the host state loaded: SDM 27.8), RC_OK with
    RFLAGS reporting VMfail, RC_ENTRY_FAIL_GUEST for Python after such a
    failure, or an error code of the run loop."""
    cdef int st = vmx_entry_precheck(c, launch)
    cdef int rc
    if st != VMX_SUCCEED:
        vmx_flags(c, st)
        return RC_OK
    c.vmx.host_x86 = x86_host
    rc = vm_entry(c, launch)
    if rc == RC_OK:
        if launch:
            memcpy(c.vmx.vmcs + VMCS_OFF_LAUNCH_EPOCH, &c.vmx.vmxon_count, 4)
        if c.vmx.vmcs_in_ram:
            vmcs_ram_written(c, c.vmx.vmcs_ptr)
        return RC_TRANSFERRED
    if rc == RC_ENTRY_FAIL_CTL or rc == RC_ENTRY_FAIL_HOST:
        # vm_entry wrote the error number (7 or 8) into the VMCS.
        c.rflags = (c.rflags & ~VMX_STATUS_FLAGS) | F_ZF
        return RC_OK
    if rc == RC_ENTRY_FAIL_GUEST:
        if x86_host:
            return entry_failure_to_host(c)
        record_exit(c, <uint32_t>vr(c, VMCS_OFF_EXIT_REASON, 4))     # 33 or 34
    return rc


# --- the instructions ------------------------------------------------------------

cdef inline int vmx_ud(Cpu* c) noexcept nogil:
    """The #UD conditions the VMX instructions share (SDM 31.3): outside
    VMX operation, in real-address or virtual-8086 mode, or in
    compatibility mode."""
    return (not c.vmx.on and not c.vmx.non_root) or not (c.cr0 & CR0_PE) or (c.rflags & F_VM) != 0 or \
        ((c.efer & EFER_LMA) != 0 and not c.long64)


cdef inline uint32_t vmx_mem_info(Insn* d) noexcept nogil:
    """Instruction information of VMCLEAR, VMPTRLD, VMPTRST and VMXON (SDM
    28.2.5): the memory operand, bit 10 clear."""
    return insn_info_operand(d) & ~(<uint32_t>II_REG_OPERAND)


cdef inline int vmx_retire(Cpu* c, int st) noexcept nogil:
    vmx_flags(c, st)
    return RC_OK


cdef int h_vmxon(Cpu* c, Insn* d) noexcept nogil:
    """F3 0F C7 /6 VMXON m64."""
    cdef uint64_t pa
    cdef int rc
    if not (c.cr0 & CR0_PE) or not (c.cr4 & CR4_VMXE) or (c.rflags & F_VM) or \
            ((c.efer & EFER_LMA) and not c.long64):
        return raise_ud(c)
    if c.vmx.non_root:
        return insn_exit_info(c, d, EXIT_REASON_VMXON, insn_qual_disp(c, d), vmx_mem_info(d))
    if c.vmx.on:
        if c.cpl != 0:
            return raise_gp0(c)
        return vmx_retire(c, vmx_fail(c, VMXERR_VMXON_IN_VMX_ROOT))
    # Outside VMX operation: CPL 0, CR0 and CR4 within the fixed bits, and
    # IA32_FEATURE_CONTROL locked with VMXON outside SMX enabled.
    if c.cpl != 0 or (c.cr0 & VMX_CAP_CR0_FIXED0) != VMX_CAP_CR0_FIXED0 or (c.cr0 & ~VMX_CAP_CR0_FIXED1) or \
            (c.cr4 & VMX_CAP_CR4_FIXED0) != VMX_CAP_CR4_FIXED0 or (c.cr4 & ~c.cr4_fixed1) or \
            (c.feature_control & 5) != 5:
        return raise_gp0(c)
    rc = mem_read(c, d.seg, ea_offset(c, d), 8, &pa)
    if rc:
        return rc
    return vmx_retire(c, vmx_op_vmxon(c, pa))


cdef int h_vmx_c7_mem(Cpu* c, Insn* d) noexcept nogil:
    """0F C7 /6 and /7 with a memory operand: VMPTRLD (no prefix), VMCLEAR
    (66), VMXON (F3), VMPTRST (/7).  Bit 3 of d.ext records a 66 prefix
    (OPF_P66)."""
    cdef int digit = d.ext & 7
    cdef int p66 = (d.ext & 8) != 0
    cdef uint64_t pa
    cdef uint32_t reason
    cdef int rc
    if d.rep == 0xF2 or (digit == 7 and (d.rep or p66)):
        return raise_ud(c)
    if digit == 6 and d.rep == 0xF3:
        return h_vmxon(c, d)
    if vmx_ud(c):
        return raise_ud(c)
    if c.vmx.non_root:
        reason = EXIT_REASON_VMPTRST if digit == 7 else (EXIT_REASON_VMCLEAR if p66 else EXIT_REASON_VMPTRLD)
        return insn_exit_info(c, d, reason, insn_qual_disp(c, d), vmx_mem_info(d))
    if c.cpl != 0:
        return raise_gp0(c)
    if digit == 7:
        rc = mem_write(c, d.seg, ea_offset(c, d), 8, c.vmx.vmcs_ptr)
        if rc:
            return rc
        return vmx_retire(c, VMX_SUCCEED)
    rc = mem_read(c, d.seg, ea_offset(c, d), 8, &pa)
    if rc:
        return rc
    return vmx_retire(c, vmx_op_vmclear(c, pa) if p66 else vmx_op_vmptrld(c, pa))


cdef int h_vmread(Cpu* c, Insn* d) noexcept nogil:
    """0F 78 VMREAD r/m64, r64 (r/m32, r32 outside 64-bit mode): the field
    whose encoding is in the register operand, into the r/m operand."""
    cdef int size = 8 if c.long64 else 4
    cdef uint64_t v = 0
    cdef int st, rc
    if d.rep or (d.ext & 8):
        return raise_ud(c)
    if vmx_ud(c):
        return raise_ud(c)
    if c.vmx.non_root:
        return insn_exit_info(c, d, EXIT_REASON_VMREAD, insn_qual_disp(c, d),
                              insn_info_operand(d) | ((<uint32_t>d.reg & 15) << 28))
    if c.cpl != 0:
        return raise_gp0(c)
    acct_vmx_access(c, 0)           # accounting (docs/architecture.rst, "Accounting and cost profiles")
    st = vmx_op_vmread(c, get_reg(c, d.reg, size), &v)
    if st == VMX_SUCCEED:
        # A field wider than the operand gives its low bits; a narrower one
        # is zero-extended (SDM 31.3, VMREAD).
        if d.mod == 3:
            set_reg(c, d.rm, size, v)
        else:
            rc = mem_write(c, d.seg, ea_offset(c, d), size, v)
            if rc:
                return rc
    return vmx_retire(c, st)


cdef int h_vmwrite(Cpu* c, Insn* d) noexcept nogil:
    """0F 79 VMWRITE r64, r/m64 (r32, r/m32 outside 64-bit mode): the r/m
    operand into the field whose encoding is in the register operand."""
    cdef int size = 8 if c.long64 else 4
    cdef uint64_t v, enc
    cdef int rc, off
    if d.rep or (d.ext & 8):
        return raise_ud(c)
    if vmx_ud(c):
        return raise_ud(c)
    if c.vmx.non_root:
        return insn_exit_info(c, d, EXIT_REASON_VMWRITE, insn_qual_disp(c, d),
                              insn_info_operand(d) | ((<uint32_t>d.reg & 15) << 28))
    if c.cpl != 0:
        return raise_gp0(c)
    acct_vmx_access(c, 1)           # accounting (docs/architecture.rst, "Accounting and cost profiles")
    enc = get_reg(c, d.reg, size)
    if not vmx_current_valid(c):
        return vmx_retire(c, VMX_FAIL_INVALID)
    # The failures come before the operand is read (SDM 31.3, VMWRITE).
    off = vmcs_field_offset(<uint32_t>enc) if not (enc >> 32) else -1
    if off < 0 or vmcs_field_width(<uint32_t>enc) == 0:
        return vmx_retire(c, VMXERR_UNSUPPORTED_VMCS_COMPONENT)
    if d.mod == 3:
        v = get_reg(c, d.rm, size)
    else:
        rc = mem_read(c, d.seg, ea_offset(c, d), size, &v)
        if rc:
            return rc
    return vmx_retire(c, vmx_op_vmwrite(c, enc, v))


cdef int h_vmcall_group(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 C1 VMCALL, C2 VMLAUNCH, C3 VMRESUME, C4 VMXOFF."""
    cdef int rc
    if not c.vmx.on and not c.vmx.non_root:
        return raise_ud(c)
    # VMLAUNCH, VMRESUME and VMXOFF are #UD with CR0.PE = 0, in
    # virtual-8086 mode and in compatibility mode, and that check comes
    # before the non-root VM exit; VMCALL has no such check (SDM 31.3,
    # the Operation sections of VMCALL, VMLAUNCH/VMRESUME, VMXOFF).
    if d.rm != 1 and vmx_ud(c):
        return raise_ud(c)
    if c.vmx.non_root:
        if d.rm == 1:
            return insn_exit(c, d, EXIT_REASON_VMCALL, 0)
        elif d.rm == 2:
            return insn_exit(c, d, EXIT_REASON_VMLAUNCH, 0)
        elif d.rm == 3:
            return insn_exit(c, d, EXIT_REASON_VMRESUME, 0)
        return insn_exit(c, d, EXIT_REASON_VMXOFF, 0)
    if c.cpl != 0 and d.rm != 1:
        return raise_gp0(c)
    if d.rm == 1:
        # VMCALL in root operation without the dual-monitor treatment of
        # SMIs and SMM (not modeled): VMfail(1), at any CPL.
        return vmx_retire(c, vmx_fail(c, VMXERR_VMCALL_IN_VMX_ROOT))
    if d.rm == 4:
        return vmx_retire(c, vmx_op_vmxoff(c))
    rc = vmx_op_enter(c, d.rm == 2, 1)
    if rc == RC_TRANSFERRED:
        c.icount += 1                  # the VMLAUNCH/VMRESUME retired; RIP is the guest's or HOST_RIP
    return rc


# --- VMFUNC (0F 01 D4) ---------------------------------------------------------------

cdef int h_vmfunc(Cpu* c, Insn* d) noexcept nogil:
    """VMFUNC: invoke VM function EAX in VMX non-root operation (SDM 26.5.6,
    31.3).  #UD outside it and without "enable VM functions"; a function
    the VM-function controls do not enable, or one that fails, is a VM exit
    (reason 59).  Function 0, EPTP switching: ECX indexes the 512-entry
    EPTP list; a valid EPTP there becomes the EPT pointer, with no exit."""
    cdef uint32_t fn = <uint32_t>c.regs[R_AX]
    cdef uint64_t idx = c.regs[R_CX] & 0xFFFFFFFFULL
    cdef uint64_t eptp
    cdef uint8_t* p
    if not c.vmx.non_root or not (c.vmx.ctl.proc2 & PROC2_ENABLE_VM_FUNCTIONS):
        return raise_ud(c)
    if fn > 63 or not ((vr(c, VMCS_OFF_VM_FUNCTION_CONTROLS, 8) >> fn) & 1):
        return insn_exit(c, d, EXIT_REASON_VMFUNC, 0)
    # fn == 0: the only function IA32_VMX_VMFUNC offers (entry checks keep
    # the controls to it).  The list lies in the hypervisor's memory.
    if idx >= 512:
        return insn_exit(c, d, EXIT_REASON_VMFUNC, 0)
    p = hpa_ptr(c, vr(c, VMCS_OFF_EPTP_LIST_ADDRESS, 8) + 8 * idx, 8, 0)
    if p == NULL:
        return insn_exit(c, d, EXIT_REASON_VMFUNC, 0)
    memcpy(&eptp, p, 8)
    if not eptp_valid(eptp):
        return insn_exit(c, d, EXIT_REASON_VMFUNC, 0)
    vwt(c, VMCS_OFF_EPT_POINTER, 8, eptp)
    c.vmx.ctl.eptp = eptp
    # Translations through the old EPT no longer apply; the model's TLB has
    # no EPTP tags, so it goes.  The guest may now reach other memory: the
    # next VMRESUME runs every check (the EPT pointer is an input of them).
    tlb_flush(c)
    c.vmx.ck_ept_private = 1
    return RC_OK


# --- GETSEC (0F 37) ------------------------------------------------------------------

cdef int h_getsec(Cpu* c, Insn* d) noexcept nogil:
    """GETSEC: the model has no Safer Mode Extensions (CPUID.01H:ECX.SMX = 0,
    and CR4.SMXE cannot be set), so outside VMX non-root operation it is
    #UD; in VMX non-root operation it causes a VM exit unconditionally,
    before that check (reason 11; SDM 26.1.2)."""
    if c.vmx.non_root:
        return insn_exit(c, d, EXIT_REASON_GETSEC, 0)
    return raise_ud(c)


# --- INVEPT, INVVPID (66 0F 38 80, 81) --------------------------------------------

cdef inline int eptp_valid(uint64_t eptp) noexcept nogil:
    """An EPTP VM entry with "enable EPT" would accept (eptp_failure in
    core/vmx/entry.pxi, every condition)."""
    return eptp_failure(eptp, &CKM_ALL) < 0


cdef int vmx_op_invept(Cpu* c, uint64_t typ, uint64_t eptp) noexcept nogil:
    """INVEPT of type typ (1 single-context, 2 global) with the EPTP of the
    descriptor.  The types IA32_VMX_EPT_VPID_CAP reports (bits 25, 26) are
    accepted; a single-context EPTP must be one VM entry would accept.  The
    model's TLB has no EPTP tags: it is flushed (more than asked, allowed)."""
    if not ((typ == 1 and (VMX_CAP_EPT_VPID_CAP & (1ULL << 25))) or
            (typ == 2 and (VMX_CAP_EPT_VPID_CAP & (1ULL << 26)))):
        return vmx_fail(c, VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID)
    if typ == 1 and not eptp_valid(eptp):
        return vmx_fail(c, VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID)
    tlb_flush(c)
    c.tlb_kept = 0
    return VMX_SUCCEED


cdef int vmx_op_invvpid(Cpu* c, uint64_t typ, uint64_t lo, uint64_t hi) noexcept nogil:
    """INVVPID of type typ (0 individual address, 1 single context, 2 all
    contexts, 3 single context retaining globals; IA32_VMX_EPT_VPID_CAP
    bits 40-43) with the descriptor lo (VPID in bits 15:0, bits 63:16
    reserved) and hi (the linear address).  Flushes the model's TLB."""
    if typ > 3 or not (VMX_CAP_EPT_VPID_CAP & (1ULL << (40 + typ))):
        return vmx_fail(c, VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID)
    if lo >> 16:
        return vmx_fail(c, VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID)
    if typ != 2 and (lo & 0xFFFF) == 0:
        return vmx_fail(c, VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID)
    if typ == 0 and not is_canonical(hi):
        return vmx_fail(c, VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID)
    tlb_flush(c)
    c.tlb_kept = 0
    return VMX_SUCCEED


cdef int h_invept_invvpid(Cpu* c, Insn* d) noexcept nogil:
    """66 0F 38 80 INVEPT r, m128 and 66 0F 38 81 INVVPID r, m128: the type
    in the register (64-bit in 64-bit mode, else 32-bit), the 128-bit
    descriptor in memory (SDM 31.3)."""
    cdef int vpid = d.op == 0x81
    cdef uint64_t typ, lo, hi, off
    cdef int rc
    # #UD where the processor lacks the instruction (IA32_VMX_EPT_VPID_CAP
    # bit 20 for INVEPT, 32 for INVVPID), for a register operand, and by
    # the VMX instructions' common conditions.
    if not (VMX_CAP_EPT_VPID_CAP & (1ULL << (32 if vpid else 20))) or d.mod == 3 or vmx_ud(c):
        return raise_ud(c)
    if c.vmx.non_root:
        return insn_exit_info(c, d, EXIT_REASON_INVVPID if vpid else EXIT_REASON_INVEPT, insn_qual_disp(c, d),
                              vmx_mem_info(d) | ((<uint32_t>d.reg & 15) << 28))
    if c.cpl != 0:
        return raise_gp0(c)
    typ = get_reg(c, d.reg, 8 if c.long64 else 4)
    if vpid:
        if typ > 3 or not (VMX_CAP_EPT_VPID_CAP & (1ULL << (40 + typ))):
            return vmx_retire(c, vmx_fail(c, VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID))
    elif not ((typ == 1 and (VMX_CAP_EPT_VPID_CAP & (1ULL << 25))) or
              (typ == 2 and (VMX_CAP_EPT_VPID_CAP & (1ULL << 26)))):
        return vmx_retire(c, vmx_fail(c, VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID))
    off = ea_offset(c, d)
    rc = mem_read(c, d.seg, off, 8, &lo)
    if rc:
        return rc
    rc = mem_read(c, d.seg, (off + 8) & SIZE_MASK[d.asz], 8, &hi)
    if rc:
        return rc
    return vmx_retire(c, vmx_op_invvpid(c, typ, lo, hi) if vpid else vmx_op_invept(c, typ, lo))


# --- RDRAND, RDSEED (0F C7 /6, /7 with a register operand) -----------------------

cdef inline uint64_t rng_next(Cpu* c) noexcept nogil:
    """A deterministic generator (splitmix64): runs repeat exactly
    (decision 11); the values are not for cryptography."""
    cdef uint64_t z
    c.rng += 0x9E3779B97F4A7C15ULL
    z = c.rng
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef int h_rdrand_rdseed(Cpu* c, Insn* d) noexcept nogil:
    """RDRAND r (0F C7 /6) and RDSEED r (0F C7 /7): a random value and CF =
    1 (the model's generator never runs dry); OF SF ZF AF PF cleared.  In
    VMX non-root operation they exit with "RDRAND exiting" / "RDSEED
    exiting" (reasons 57 and 61; instruction information: the destination
    register in bits 6:3, the operand size in bits 12:11, SDM 28.2.5)."""
    cdef int seed = (d.ext & 7) == 7
    cdef uint32_t info
    if d.rep:
        return raise_ud(c)          # F3 0F C7 /7 is RDPID, F2: no instruction
    if not cpu_has(c, FEAT_RDSEED if seed else FEAT_RDRAND):
        return raise_ud(c)          # not in the CPU model (vtx/cpu_model.py)
    if c.vmx.non_root and (c.vmx.ctl.proc2 & (PROC2_RDSEED_EXITING if seed else PROC2_RDRAND_EXITING)):
        info = ((<uint32_t>d.rm & 15) << 3) | (<uint32_t>(0 if d.osz == 2 else (1 if d.osz == 4 else 2)) << 11)
        return insn_exit_info(c, d, EXIT_REASON_RDSEED if seed else EXIT_REASON_RDRAND, 0, info)
    set_reg(c, d.rm, d.osz, rng_next(c))
    c.rflags = (c.rflags & ~VMX_STATUS_FLAGS) | F_CF
    return RC_OK


cdef int h_0fc7(Cpu* c, Insn* d) noexcept nogil:
    """0F C7 /6 and /7: by the operand form (and F3 0F C7 /7 with a
    register operand: RDPID, core/insn/misc.pxi)."""
    if d.mod == 3:
        if (d.ext & 7) == 7 and d.rep == 0xF3:
            return h_rdpid(c, d)
        return h_rdrand_rdseed(c, d)
    return h_vmx_c7_mem(c, d)
