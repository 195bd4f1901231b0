# The processor of a bare machine (vtx.BareMetal; docs/architecture.rst, "The
# VMX layer"): no hypervisor above it, so its state is read and written
# directly rather than through a VMCS, x86 code runs on it in VMX root
# operation (a type-1 hypervisor on the model executes VMXON, VMLAUNCH and
# takes its exits at HOST_RIP), and Python can drive the same VMX
# operations through the low-level methods below.  Port I/O that no VM exit
# intercepts reaches the platform, which is Python (RC_IO_HOST).


cdef enum:
    BARE_REAL = 0
    BARE_PROTECTED = 1
    BARE_LONG = 2


cdef int bare_slice(Cpu* c, uint64_t limit) noexcept nogil:
    """Run until something needs Python, the budget (``limit`` in steps) or
    the end of a slice.  Nothing is saved or left: the processor stays in
    whatever operation it is (root or non-root) for the next slice."""
    cdef uint64_t used = c.icount + c.events
    cdef int rc
    if c.activity == 2:
        return RC_SHUTDOWN
    # As guest_slice: a staged exit or pending MTF happens even at the budget.
    if used >= limit and not c.vmx.x_pending and not c.vmx.mtf_pending:
        return RC_BUDGET
    c.icount_limit = c.icount + ((limit - used if limit - used <= SLICE else SLICE) if used < limit else 0)
    # The HLT state, a pending event or an open window: the event check
    # decides at the first boundary (core/vmx/events.pxi).
    if events_wanted(c):
        events_arm(c, c.icount)
    rc = run_loop(c)
    c.ev_armed = 0
    return rc


cdef object _vmfail(str insn, int st):
    if st == VMX_FAIL_INVALID:
        return VmFail(insn, 0, "FAIL_INVALID", "no current VMCS (VMfailInvalid)")
    e = _VmInstructionError(st)
    from vtx.spec.vm_instruction_errors import VM_INSTRUCTION_ERRORS
    desc = {n: d for _, n, d in VM_INSTRUCTION_ERRORS}.get(st, "")
    return VmFail(insn, st, e.name, desc)


cdef class Processor:
    """The processor of a :class:`vtx.BareMetal` machine.

    General registers by name (rax ... r15), rip, rsp and rflags read and
    write; control registers, EFER, segments and descriptor tables read (set
    them with the machine's ``setup_*`` methods, or from x86 code).  The VMX
    state: ``in_vmx_operation``, ``non_root``, ``vmxon_pointer``,
    ``current_vmcs``; and the VMX instructions as methods that raise
    :class:`vtx.VmFail` where the instruction would VMfail."""

    def __cinit__(self, Machine machine not None):
        if machine.c == NULL:
            raise VmStateError("the machine has no processor (its construction failed)")
        self.machine = machine
        self.c = machine.c
        c = self.c
        # Bare hardware: outside VMX operation, no current VMCS, the
        # platform's ports answered by Python.
        c.vmx.on = 0
        c.vmx.non_root = 0
        c.vmx.host_x86 = 1
        c.vmx.vmxon_ptr = VMCS_PTR_NONE
        vmx_set_none(c)
        c.io_to_host = 1
        c.rng = 0x5654585F52444E47ULL     # fixed: runs repeat (decision 11)

    def __reduce__(self):
        raise TypeError("a vtx Processor cannot be copied or pickled: it is the processor of one machine; save the whole machine with bare.save(path)")

    cdef int _idle(self) except -1:
        if self.c.in_guest:
            raise VmStateError("the processor is running (run() is active in another thread)")
        return 0

    # --- registers ------------------------------------------------------------

    def get_gpr(self, int i):
        if not 0 <= i < 16:
            raise ArgumentError(f"general register number {i} is not in [0, 15]")
        return self.c.regs[i]

    def set_gpr(self, int i, value):
        if not 0 <= i < 16:
            raise ArgumentError(f"general register number {i} is not in [0, 15]")
        self._idle()
        self.c.regs[i] = _fit(value, 64, "a general register")

    @property
    def rip(self):
        return self.c.rip

    @rip.setter
    def rip(self, value):
        cdef uint64_t v = _fit(value, 64, "rip")
        self._idle()
        if self.c.long64 and not is_canonical(v):
            raise ValueError(f"rip {v:#x} is not canonical (64-bit mode)")
        if not self.c.long64 and v >> 32:
            raise ValueError(f"rip {v:#x} does not fit in 32 bits outside 64-bit mode")
        self.c.rip = v

    @property
    def rflags(self):
        return self.c.rflags

    @rflags.setter
    def rflags(self, value):
        cdef uint64_t v = _fit(value, 64, "rflags")
        self._idle()
        if (v & RFLAGS_RESERVED_BITS) or not (v & 2) or ((v & F_VM) and (self.c.efer & EFER_LMA)):
            raise ValueError(f"rflags {v:#x}: reserved bits must be 0 and bit 1 must be 1 "
                             f"(and VM is 0 in IA-32e mode)")
        self.c.rflags = v
        compute_mode(self.c)
        tlb_flush(self.c)

    # The debug registers (core/insn/debug.pxi): DR0-DR3 any linear address;
    # DR6 and DR7 keep their fixed bits, as MOV DR writes them.
    def get_dr(self, int i):
        """DRi for i in 0-3, 6, 7."""
        if 0 <= i <= 3:
            return self.c.dr[i]
        if i == 6:
            return self.c.dr6
        if i == 7:
            return self.c.dr7
        raise ValueError(f"no debug register DR{i} (0-3, 6, 7)")

    def set_dr(self, int i, value):
        cdef uint64_t v = _fit(value, 64, f"DR{i}")
        self._idle()
        if 0 <= i <= 3:
            self.c.dr[i] = v
        elif i == 6 or i == 7:
            if v >> 32:
                raise ValueError(f"DR{i} {v:#x}: bits 63:32 must be 0")
            if i == 6:
                self.c.dr6 = (v & DR6_WRITABLE) | DR6_FIXED1
            else:
                self.c.dr7 = (v & DR7_WRITABLE) | DR7_FIXED1
        else:
            raise ValueError(f"no debug register DR{i} (0-3, 6, 7)")
        dbg_changed(self.c)

    @property
    def cr0(self):
        return self.c.cr0

    @property
    def cr2(self):
        return self.c.cr2

    @property
    def cr3(self):
        return self.c.cr3

    @property
    def cr4(self):
        return self.c.cr4

    @property
    def efer(self):
        return self.c.efer

    def get_segment(self, int i):
        if not 0 <= i < 8:
            raise ArgumentError(f"segment register number {i} is not in [0, 7] (ES CS SS DS FS GS LDTR TR)")
        cdef Seg* s = &self.c.seg[i]
        return Segment(s.sel, s.base, s.limit, s.ar)

    @property
    def gdtr(self):
        return DescriptorTable(self.c.gdtr_base, self.c.gdtr_limit)

    @property
    def idtr(self):
        return DescriptorTable(self.c.idtr_base, self.c.idtr_limit)

    @property
    def cpl(self):
        return self.c.cpl

    @property
    def halted(self):
        """The activity state: 0 active, 1 HLT, 2 shutdown."""
        return self.c.activity

    def rdmsr(self, index):
        """RDMSR of the model (as at CPL 0 in root operation)."""
        cdef uint64_t v
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 0xFFFFFFFF:
            raise ArgumentError(f"an MSR index is a 32-bit int, not {index!r}")
        if msr_read(self.c, <uint32_t>index, &v):
            raise VtxError(f"RDMSR {index:#x}: the model has no such MSR (RDMSR would #GP)")
        return v

    def wrmsr(self, index, value):
        """WRMSR of the model (as at CPL 0 in root operation)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 0xFFFFFFFF:
            raise ArgumentError(f"an MSR index is a 32-bit int, not {index!r}")
        cdef uint64_t v = _fit(value, 64, f"MSR {index:#x}")
        self._idle()
        if msr_write(self.c, <uint32_t>index, v):
            raise VtxError(f"WRMSR {index:#x} <- {v:#x}: rejected (WRMSR would #GP: no such MSR, "
                           f"a reserved bit, or a locked MSR)")

    def _setup(self, int mode, uint64_t entry, uint64_t stack, uint64_t gdt, uint32_t gdt_limit, uint64_t cr3,
               uint64_t tr_base):
        """The state firmware hands over in: real mode (CS:IP = 0:entry,
        flat 64 KiB segments), 32-bit protected mode (flat, paging off), or
        64-bit mode (4-level paging at cr3).  The GDT at gdt is vm.py's:
        code32 0x08, data 0x10, code64 0x18, a 64-bit TSS at 0x20 (long
        mode) or a 32-bit one (protected mode)."""
        cdef Cpu* c = self.c
        cdef int i
        self._idle()
        if c.vmx.on or c.vmx.non_root:
            raise VmStateError("the processor is in VMX operation: set up modes before VMXON")
        memset(c.regs, 0, sizeof(c.regs))
        c.rflags = 2
        c.activity = 0
        c.interruptibility = 0
        c.lf_kind = LF_NONE
        c.cr2 = 0
        c.dr7 = 0x400
        c.idtr_base = 0
        c.seg[S_LDTR].sel = 0
        c.seg[S_LDTR].base = 0
        c.seg[S_LDTR].limit = 0xFFFF
        c.seg[S_LDTR].ar = 0x82
        if mode == BARE_REAL:
            for i in range(6):
                c.seg[i].sel = 0
                c.seg[i].base = 0
                c.seg[i].limit = 0xFFFF
                c.seg[i].ar = 0x93
            c.seg[S_CS].ar = 0x9B
            c.seg[S_TR].sel = 0
            c.seg[S_TR].base = 0
            c.seg[S_TR].limit = 0xFFFF
            c.seg[S_TR].ar = 0x8B
            c.gdtr_base = 0
            c.gdtr_limit = 0xFFFF
            c.idtr_limit = 0x3FF
            c.cr0 = 0x60000010ULL
            c.cr3 = 0
            c.cr4 = 0
            c.efer = 0
            c.rip = entry & 0xFFFF
            c.regs[R_SP] = stack & 0xFFFF
        else:
            for i in range(6):
                c.seg[i].sel = 0x10
                c.seg[i].base = 0
                c.seg[i].limit = 0xFFFFFFFFU
                c.seg[i].ar = 0xC093
            c.seg[S_TR].sel = 0x20
            c.seg[S_TR].base = tr_base
            c.seg[S_TR].limit = 0x67
            c.seg[S_TR].ar = 0x8B
            c.gdtr_base = gdt
            c.gdtr_limit = gdt_limit
            c.idtr_limit = 0
            if mode == BARE_PROTECTED:
                c.seg[S_CS].sel = 0x08
                c.seg[S_CS].ar = 0xC09B
                c.cr0 = 0x00000031ULL       # PE ET NE
                c.cr3 = 0
                c.cr4 = 0
                c.efer = 0
            else:
                c.seg[S_CS].sel = 0x18
                c.seg[S_CS].ar = 0xA09B
                c.cr0 = 0x80010031ULL       # PG WP NE ET PE
                c.cr3 = cr3
                c.cr4 = CR4_PAE
                c.efer = EFER_LME | EFER_LMA
            c.rip = entry
            c.regs[R_SP] = stack
        update_mode(c)

    def reset(self):
        """The power-on (RESET) state of SDM Vol. 3A 10.1.1, Table 10-1:
        outside VMX operation, real mode at F000:FFF0 with CS.base
        FFFF0000H (the first fetch is at FFFFFFF0H: map a ROM there with
        ``machine.map_rom``), RFLAGS 2, EDX the processor signature, CR0
        60000010H, CR2-CR4 0, EFER 0, DR7 400H, the x87 FPU as at power-up."""
        cdef Cpu* c = self.c
        self._idle()
        c.vmx.on = 0
        c.vmx.non_root = 0
        c.vmx.vmxon_ptr = VMCS_PTR_NONE
        vmx_set_none(c)
        reset_common(c)
        reset_segments(c)
        c.rip = 0xFFF0
        c.rflags = 2
        c.cr0 = 0x60000010ULL
        c.cr3 = 0
        c.cr4 = 0
        compute_mode(c)
        tlb_flush(c)

    # --- VMX state and the low-level VMX operations --------------------------------

    @property
    def in_vmx_operation(self):
        return bool(self.c.vmx.on or self.c.vmx.non_root)

    @property
    def non_root(self):
        """VMX non-root operation: a guest runs (after vmlaunch, or a VMLAUNCH by x86 code)."""
        return bool(self.c.vmx.non_root)

    @property
    def vmxon_pointer(self):
        """The VMXON pointer, or None outside VMX operation."""
        return self.c.vmx.vmxon_ptr if self.c.vmx.on else None

    @property
    def current_vmcs(self):
        """The current-VMCS pointer (None when there is no current VMCS)."""
        return self.c.vmx.vmcs_ptr if vmx_current_valid(self.c) else None

    cdef int _root(self, str insn) except -1:
        """The checks the instruction would make before its operation, as
        Python errors: #UD and #GP conditions, and non-root operation."""
        cdef Cpu* c = self.c
        self._idle()
        if c.vmx.non_root:
            raise VmStateError(f"{insn}: the processor is in VMX non-root operation (a guest runs; "
                               f"the instruction would cause a VM exit)")
        if not c.vmx.on and insn != "VMXON":
            raise VmStateError(f"{insn}: the processor is not in VMX operation (the instruction would #UD); "
                               f"execute vmxon first")
        if not (c.cr0 & CR0_PE) or (c.rflags & F_VM) or ((c.efer & EFER_LMA) and not c.long64):
            raise VmStateError(f"{insn}: the VMX instructions need protected mode, not virtual-8086 or "
                               f"compatibility mode (the instruction would #UD)")
        if c.cpl != 0:
            raise VmStateError(f"{insn}: CPL is {c.cpl}, not 0 (the instruction would #GP(0))")
        return 0

    cdef int _done(self, str insn, int st) except -1:
        vmx_flags(self.c, st)
        if st != VMX_SUCCEED:
            raise _vmfail(insn, st)
        return 0

    def vmxon(self, pointer):
        """VMXON with the VMXON region at physical address ``pointer``."""
        cdef Cpu* c = self.c
        cdef uint64_t pa = _fit(pointer, 64, "the VMXON pointer")
        self._root("VMXON")
        if c.vmx.on:
            return self._done("VMXON", vmx_fail(c, VMXERR_VMXON_IN_VMX_ROOT))
        if not (c.cr4 & CR4_VMXE):
            raise VmStateError("VMXON: CR4.VMXE is 0 (VMXON would #UD)")
        if (c.cr0 & VMX_CAP_CR0_FIXED0) != VMX_CAP_CR0_FIXED0 or (c.cr0 & ~VMX_CAP_CR0_FIXED1) or \
                (c.cr4 & VMX_CAP_CR4_FIXED0) != VMX_CAP_CR4_FIXED0 or (c.cr4 & ~c.cr4_fixed1):
            raise VmStateError(f"VMXON: CR0 {c.cr0:#x} or CR4 {c.cr4:#x} is outside the VMX fixed bits "
                               f"(VMXON would #GP(0))")
        if (c.feature_control & 5) != 5:
            raise VmStateError(f"VMXON: IA32_FEATURE_CONTROL is {c.feature_control:#x}; it needs the lock "
                               f"bit and VMXON outside SMX (bits 0 and 2), else VMXON would #GP(0)")
        self._done("VMXON", vmx_op_vmxon(c, pa))

    def vmxoff(self):
        self._root("VMXOFF")
        self._done("VMXOFF", vmx_op_vmxoff(self.c))

    def vmclear(self, pointer):
        cdef uint64_t pa = _fit(pointer, 64, "the VMCS pointer")
        self._root("VMCLEAR")
        self._done("VMCLEAR", vmx_op_vmclear(self.c, pa))

    def vmptrld(self, pointer):
        cdef uint64_t pa = _fit(pointer, 64, "the VMCS pointer")
        self._root("VMPTRLD")
        self._done("VMPTRLD", vmx_op_vmptrld(self.c, pa))

    def vmptrst(self):
        """The current-VMCS pointer, as VMPTRST stores it (all ones for none)."""
        self._root("VMPTRST")
        self._done("VMPTRST", VMX_SUCCEED)
        return self.c.vmx.vmcs_ptr

    def vmread(self, enc):
        cdef uint64_t v = 0
        cdef uint32_t e = _encoding(enc)
        self._root("VMREAD")
        self.c.acct.vmread_api += 1
        self._done("VMREAD", vmx_op_vmread(self.c, e, &v))
        return v

    def vmwrite(self, enc, value):
        cdef uint32_t e = _encoding(enc)
        cdef uint64_t v = _fit(value, 64, f"VMCS field {e:#06x}")
        self._root("VMWRITE")
        self.c.acct.vmwrite_api += 1
        self._done("VMWRITE", vmx_op_vmwrite(self.c, e, v))

    @property
    def failed_entry_check(self):
        """The name of the VM-entry check (vtx/spec/entry_checks.py) that the
        last VMLAUNCH or VMRESUME failing a check named, from x86 code or
        Python; None if none has."""
        ck = self.c.vmx.entry_check
        return _ENTRY_CHECKS[ck][0] if 0 <= ck < CK_COUNT else None
    def invept(self, type, eptp=0):
        """INVEPT: ``type`` 1 (single context, of ``eptp``) or 2 (global)."""
        cdef uint64_t t = _fit(type, 64, "the INVEPT type")
        cdef uint64_t e = _fit(eptp, 64, "the EPTP")
        self._root("INVEPT")
        self._done("INVEPT", vmx_op_invept(self.c, t, e))

    def invvpid(self, type, vpid=0, address=0):
        """INVVPID: ``type`` 0 (one ``address`` of ``vpid``), 1 (``vpid``), 2
        (every VPID but 0) or 3 (``vpid``, keeping global translations)."""
        cdef uint64_t t = _fit(type, 64, "the INVVPID type")
        cdef uint64_t lo = _fit(vpid, 64, "the VPID")
        cdef uint64_t hi = _fit(address, 64, "the linear address")
        self._root("INVVPID")
        self._done("INVVPID", vmx_op_invvpid(self.c, t, lo, hi))

    def vmlaunch(self):
        """VMLAUNCH with Python as the host: the guest runs at the next
        :meth:`BareMetal.run`, whose VM exits return to Python (the host
        state is checked but not loaded).  A failure on the guest state
        raises :class:`vtx.VmEntryError` (exit reason 33)."""
        self._enter("VMLAUNCH", 1)

    def vmresume(self):
        self._enter("VMRESUME", 0)

    cdef int _enter(self, str insn, int launch) except -1:
        cdef Cpu* c = self.c
        cdef int rc
        self._root(insn)
        c.in_guest = 1
        with nogil:
            rc = vmx_op_enter(c, launch, 0)
        c.in_guest = 0
        if rc == RC_TRANSFERRED:
            return 0
        if rc == RC_OK:
            # VMfail: the flags say which.
            if c.rflags & F_CF:
                raise _vmfail(insn, VMX_FAIL_INVALID)
            err = _vmfail(insn, <int>vr(c, VMCS_OFF_VM_INSTRUCTION_ERROR, 4))
            if (err.number == 7 or err.number == 8) and c.vmx.entry_check >= 0:
                # The check that failed (vtx/spec/entry_checks.py), as VmEntryError names it.
                err.check, _area, err.section, _desc = _ENTRY_CHECKS[c.vmx.entry_check]
            raise err
        if rc == RC_ENTRY_FAIL_GUEST:
            # Reported like an exit (reason 33 with bit 31); nothing was loaded.
            raise _entry_error(c, rc)
        if rc == RC_UNSUPPORTED:
            raise VtxError(_unsupported_message(c))
        raise VtxError(f"internal error: VM entry returned {rc}")

    # --- running ------------------------------------------------------------------

    def _run(self, uint64_t budget, object io):
        """Run until the budget, a halt, a shutdown, or a VM exit to Python;
        port I/O goes to io(port, size, is_in, value), which returns the
        value for IN (or None: all ones) and may raise to stop the run.
        Returns (why, exit or None, instructions)."""
        cdef Cpu* c = self.c
        cdef uint64_t limit
        cdef uint64_t i0 = c.icount
        cdef int rc
        cdef object v
        cdef uint64_t value
        if c.running:
            raise VmStateError("run() is already active on this machine")
        if c.vmx.on and not c.vmx.non_root and not c.vmx.host_x86:
            raise VmStateError("Python is the root-mode software here: the guest it launched has exited, so "
                               "there is no x86 code to run; vmresume() or vmlaunch() a guest (or vmxoff()) first")
        limit = c.icount + c.events + budget if budget else 0xFFFFFFFFFFFFFFFFULL
        c.running = 1
        try:
            while True:
                c.in_guest = 1
                with nogil:
                    rc = bare_slice(c, limit)
                c.in_guest = 0
                if rc == RC_BUDGET:
                    if c.icount + c.events < limit:
                        PyErr_CheckSignals()
                        continue
                    return ("budget", None, c.icount - i0)
                if rc == RC_IO_HOST:
                    v = io(c.io_port, c.io_size, bool(c.io_in), c.io_value)
                    if c.io_in:
                        value = SIZE_MASK[c.io_size] if v is None else _fit(v, 8 * c.io_size, "the IN value")
                        set_reg(c, R_AX, <int>c.io_size, value)
                    c.rip = (c.rip + c.io_len) & SIZE_MASK[c.code_size]
                    c.icount += 1
                    c.interruptibility &= ~(<uint32_t>3)
                    continue
                if rc == RC_VMEXIT:
                    return ("vmexit", make_exit(c), c.icount - i0)
                if rc == RC_HALTED:
                    return ("halted", None, c.icount - i0)
                if rc == RC_SHUTDOWN:
                    return ("shutdown", None, c.icount - i0)
                if rc == RC_BAD_PHYS:
                    raise GuestMemoryError(
                        f"the processor {'wrote' if c.bad_write else 'read'} physical address {c.bad_addr:#x}, "
                        f"which no memory backs (memory is [0, {c.ram_size:#x})), at rip {c.rip:#x}")
                if rc == RC_UNSUPPORTED:
                    raise VtxError(_unsupported_message(c))
                raise VtxError(f"internal error: the run loop returned {rc}")
        finally:
            c.running = 0
            c.in_guest = 0

    # --- accounting ------------------------------------------------------------------

    @property
    def instructions(self):
        return self.c.icount

    @property
    def events(self):
        """Events delivered (interrupts, exceptions, VM exits staged at an
        event boundary): with :attr:`instructions`, the steps a run's budget
        counts."""
        return self.c.events

    def _acct(self):
        """The accounting's detail since the last reset (core/acct.pxi)."""
        return acct_cumulative(self.c)

    def _acct_mark(self):
        return _acct_mark_of(self.c, self)

    def _acct_reset(self):
        if self.c.running:
            raise VmStateError("the accounting is reset between runs, not during one")
        acct_reset(self.c)

    def exit_counts(self):
        """VM exits per basic reason (a list of 128 counts): those x86 host
        code took at HOST_RIP and those that returned to Python."""
        return [self.c.exit_count[i] for i in range(128)]

    @property
    def entries(self):
        return self.c.entries
