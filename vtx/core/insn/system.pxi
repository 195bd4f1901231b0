# System instructions: flag control, CLI/STI, HLT, IN/OUT/INS/OUTS, CPUID,
# RDMSR/WRMSR, RDTSC, MOV to/from CR, LGDT/LIDT/SGDT/SIDT, VMCALL, and the
# VMX instructions that exit unconditionally in non-root operation.  Each
# checks its VM-exit condition where it executes (docs/architecture.rst, decision 5) and
# after the exceptions that take priority over it (SDM Vol. 3 26.1.1).


cdef int h_nop(Cpu* c, Insn* d) noexcept nogil:
    return RC_OK


cdef int h_ud(Cpu* c, Insn* d) noexcept nogil:
    return raise_ud(c)


cdef int h_flagop(Cpu* c, Insn* d) noexcept nogil:
    if d.ext == 0:
        c.rflags ^= F_CF
    elif d.ext == 1:
        c.rflags &= ~(<uint64_t>F_CF)
    elif d.ext == 2:
        c.rflags |= F_CF
    elif d.ext == 3:
        c.rflags &= ~(<uint64_t>F_DF)
    else:
        c.rflags |= F_DF
    return RC_OK


cdef int h_lahf(Cpu* c, Insn* d) noexcept nogil:
    """9F LAHF: AH = SF:ZF:0:AF:0:PF:1:CF.  Valid in 64-bit mode because the
    model reports CPUID.80000001H:ECX.LAHF-SAHF[bit 0]."""
    c.regs[R_AX] = (c.regs[R_AX] & ~0xFF00ULL) | (((c.rflags & 0xD5) | 2) << 8)
    return RC_OK


cdef int h_sahf(Cpu* c, Insn* d) noexcept nogil:
    """9E SAHF: SF ZF AF PF CF = AH bits 7 6 4 2 0; bits 1, 3, 5 of RFLAGS
    keep their fixed values."""
    c.rflags = (c.rflags & ~0xD5ULL) | ((c.regs[R_AX] >> 8) & 0xD5)
    return RC_OK


cdef inline int umip_denied(Cpu* c) noexcept nogil:
    """SGDT, SIDT, SLDT, SMSW and STR at CPL > 0 with CR4.UMIP = 1: #GP(0)
    (SDM Vol. 3A 2.5, CR4.UMIP; virtual-8086 mode is CPL 3)."""
    return (c.cr4 & CR4_UMIP) != 0 and c.cpl > 0 and (c.cr0 & CR0_PE) != 0


cdef inline int iopl_ok(Cpu* c) noexcept nogil:
    if not (c.cr0 & CR0_PE):
        return 1
    return c.cpl <= ((c.rflags >> 12) & 3)


cdef int h_cli(Cpu* c, Insn* d) noexcept nogil:
    if not iopl_ok(c):
        return raise_gp0(c)
    c.rflags &= ~(<uint64_t>F_IF)
    return RC_OK


cdef int h_sti(Cpu* c, Insn* d) noexcept nogil:
    if not iopl_ok(c):
        return raise_gp0(c)
    if not (c.rflags & F_IF):
        # Blocking by STI for one instruction (SDM Vol. 3C 25.4.2).
        c.interruptibility |= 1
        events_unmasked(c)      # [events] a masked interrupt may be taken soon
    c.rflags |= F_IF
    return RC_OK


cdef int h_hlt(Cpu* c, Insn* d) noexcept nogil:
    if c.cpl != 0:
        return raise_gp0(c)
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_HLT_EXITING):
        return insn_exit(c, d, EXIT_REASON_HLT, 0)
    # HLT retires here (the loop does not retire an instruction that
    # returns anything but RC_OK), and blocking by STI or MOV SS ends with it
    # (the STI; HLT idiom): a halted processor saved with that blocking would
    # fail the activity-state check of VM entry (SDM Vol. 3C 27.3.1.5).  The
    # HLT state then lasts until an event the processor can take
    # (core/vmx/events.pxi), which returns past the HLT.
    c.rip = c.next_rip
    c.icount += 1
    c.interruptibility &= ~(<uint32_t>3)
    c.activity = 1
    return RC_HALTED


# --- port I/O (SDM Vol. 1 chapter 19; VMX: SDM Vol. 3 26.1.3) -----------------

cdef int io_permitted(Cpu* c, uint32_t port, int size) noexcept nogil:
    """CPL > IOPL (or virtual-8086 mode): consult the TSS I/O permission
    bitmap (SDM Vol. 1 19.5.2).  Returns RC_OK or a #GP(0)."""
    cdef Seg* tr = &c.seg[S_TR]
    cdef uint64_t v, bm
    cdef uint32_t off
    cdef int rc
    if not (c.cr0 & CR0_PE):
        return RC_OK
    if not (c.rflags & F_VM) and c.cpl <= ((c.rflags >> 12) & 3):
        return RC_OK
    if (tr.ar & AR_UNUSABLE) or ((tr.ar & 0xF) != 0xB and (tr.ar & 0xF) != 0x9) or tr.limit < 0x67:
        return raise_gp0(c)
    rc = lin_read(c, tr.base + 0x66, 2, AM_IMPLICIT, &bm)
    if rc:
        return rc
    off = <uint32_t>bm + (port >> 3)
    if off + 1 > tr.limit:
        return raise_gp0(c)
    rc = lin_read(c, tr.base + off, 2, AM_IMPLICIT, &v)
    if rc:
        return rc
    if (v >> (port & 7)) & ((1 << size) - 1):
        return raise_gp0(c)
    return RC_OK


cdef int io_exits(Cpu* c, uint32_t port, int size) noexcept nogil:
    """Does an I/O instruction on [port, port+size) cause a VM exit?"""
    cdef uint32_t p
    cdef uint8_t* bm
    if not c.vmx.non_root:
        return 0
    if c.vmx.ctl.proc & PROC_USE_IO_BITMAPS:
        for p in range(port, port + size):
            if p > 0xFFFF:
                return 1        # wraps around the I/O space: always exits
            if p < 0x8000:
                bm = hpa_ptr(c, c.vmx.ctl.io_bitmap_a + (p >> 3), 1, 0)
            else:
                bm = hpa_ptr(c, c.vmx.ctl.io_bitmap_b + ((p - 0x8000) >> 3), 1, 0)
            if bm == NULL or (bm[0] >> (p & 7)) & 1:
                return 1
        return 0
    return (c.vmx.ctl.proc & PROC_UNCONDITIONAL_IO_EXITING) != 0


cdef inline uint64_t io_qual(int size, int is_in, int string, int rep, int imm, uint32_t port) noexcept nogil:
    """Exit qualification for I/O instructions (SDM Vol. 3 Table 28-5)."""
    return (<uint64_t>(size - 1) | (<uint64_t>is_in << 3) | (<uint64_t>string << 4) |
            (<uint64_t>rep << 5) | (<uint64_t>imm << 6) | (<uint64_t>port << 16))


cdef int do_io(Cpu* c, Insn* d, uint32_t port, int is_in, int imm) noexcept nogil:
    cdef int size = 4 if d.osz == 8 else d.osz
    cdef int rc = io_permitted(c, port, size)
    if rc:
        return rc
    if io_exits(c, port, size):
        return insn_exit(c, d, EXIT_REASON_IO_INSTRUCTION, io_qual(size, is_in, 0, 0, imm, port))
    if c.dr7 & 0xFF:
        dbg_io(c, port, size)       # [debug] I/O breakpoints (core/insn/debug.pxi)
    if c.io_to_host:
        # A bare machine: the port is the platform's, and Python answers
        # (core/bare.pxi); the instruction retires when it has.
        c.io_port = port
        c.io_size = <uint32_t>size
        c.io_in = is_in
        c.io_value = c.regs[R_AX] & SIZE_MASK[size]
        c.io_len = d.len
        return RC_IO_HOST
    # No device model behind the port: reads float high, writes vanish.
    if is_in:
        set_reg(c, R_AX, size, 0xFFFFFFFFULL)
    return RC_OK


cdef int h_in_imm(Cpu* c, Insn* d) noexcept nogil:
    return do_io(c, d, <uint32_t>(d.imm & 0xFF), 1, 1)


cdef int h_out_imm(Cpu* c, Insn* d) noexcept nogil:
    return do_io(c, d, <uint32_t>(d.imm & 0xFF), 0, 1)


cdef int h_in_dx(Cpu* c, Insn* d) noexcept nogil:
    return do_io(c, d, <uint32_t>(c.regs[R_DX] & 0xFFFF), 1, 0)


cdef int h_out_dx(Cpu* c, Insn* d) noexcept nogil:
    return do_io(c, d, <uint32_t>(c.regs[R_DX] & 0xFFFF), 0, 0)


cdef int string_io(Cpu* c, Insn* d, int is_in) noexcept nogil:
    """INS/OUTS, one iteration per execution (a REP form re-executes until
    rCX is 0, as the SDM allows an interruptible REP to)."""
    cdef int size = 4 if d.osz == 8 else d.osz
    cdef uint32_t port = <uint32_t>(c.regs[R_DX] & 0xFFFF)
    cdef uint64_t am = SIZE_MASK[d.asz]
    cdef int r_idx = R_DI if is_in else R_SI
    cdef int sr = S_ES if is_in else d.seg
    cdef uint64_t off = c.regs[r_idx] & am
    cdef uint64_t lin, v
    cdef int rc
    cdef int step
    if d.rep and (c.regs[R_CX] & am) == 0:
        return RC_OK
    rc = io_permitted(c, port, size)
    if rc:
        return rc
    if io_exits(c, port, size):
        insn_exit(c, d, EXIT_REASON_IO_INSTRUCTION, io_qual(size, is_in, 1, d.rep != 0, 0, port))
        # VM-exit instruction information for INS/OUTS (SDM Table 28-8):
        # address size in bits 9:7, segment in bits 17:15 (OUTS only).
        c.vmx.x_info = (<uint32_t>(0 if d.asz == 2 else (1 if d.asz == 4 else 2)) << 7)
        if not is_in:
            c.vmx.x_info |= (<uint32_t>sr) << 15
        if seg_linear(c, sr, off, size, ACC_WRITE if is_in else ACC_READ, &lin) == RC_OK:
            c.vmx.x_gla = lin
            c.vmx.x_gla_valid = 1
        return RC_VMEXIT
    if is_in:
        rc = mem_write(c, S_ES, off, size, SIZE_MASK[size])
    else:
        rc = mem_read(c, sr, off, size, &v)
    if rc:
        return rc
    if c.dr7 & 0xFF:
        dbg_io(c, port, size)       # [debug] I/O breakpoints (core/insn/debug.pxi)
    step = -size if (c.rflags & F_DF) else size
    set_reg(c, r_idx, d.asz, c.regs[r_idx] + step)
    if d.rep:
        set_reg(c, R_CX, d.asz, c.regs[R_CX] - 1)
        if (c.regs[R_CX] & am) != 0:
            c.next_rip = c.rip
    return RC_OK


cdef int h_ins(Cpu* c, Insn* d) noexcept nogil:
    return string_io(c, d, 1)


cdef int h_outs(Cpu* c, Insn* d) noexcept nogil:
    return string_io(c, d, 0)


# --- CPUID ----------------------------------------------------------------

cdef enum:
    # XCR0 bits the model supports (CPUID.(EAX=0DH,ECX=0):EDX:EAX): x87
    # state, which XCR0[0] always enables, and SSE state (SDM Vol. 1 13.3).
    # The model has no AVX state, so XCR0[2] is reserved.
    XCR0_X87 = 1 << 0
    XCR0_SSE = 1 << 1
    XCR0_AVX = 1 << 2
    XCR0_SUPPORTED = XCR0_X87 | XCR0_SSE
    # The XSAVE area for the supported components: the legacy region (512
    # bytes, which holds both x87 and SSE state) and the XSAVE header (64),
    # CPUID.(EAX=0DH,ECX=0):EBX/ECX and, compacted, (EAX=0DH,ECX=1):EBX.
    XSAVE_AREA_SIZE = 576
    # IA32_XSS bits (SDM Vol. 1 13.3): the one supervisor state component
    # the model has, PASID state (bit 10: IA32_PASID, 8 bytes), offered with
    # the CPU model's XSS_PASID feature (core/insn/xsaves.pxi).
    XSS_PASID = 1 << 10
    XSAVE_PASID_SIZE = 8
    # IA32_PASID: the PASID in bits 19:0 and the valid bit 31; the others
    # are reserved (SDM Vol. 4 Table 2-2, MSR D93H).
    PASID_VALID_BITS = 0x800FFFFF
    # IA32_MISC_ENABLE[18], "ENABLE MONITOR FSM": MONITOR/MWAIT exist (and
    # CPUID reports them) only while it is set (SDM Vol. 4 Table 2-2).
    MISC_ENABLE_MONITOR = 1 << 18


cdef void model_cpuid(Cpu* c, uint64_t cr4, uint32_t leaf, uint32_t sub, uint32_t* out) noexcept nogil:
    """CPUID as the modeled processor answers it (root operation; in non-root
    operation CPUID always exits, SDM Vol. 3 26.1.2).  The CPU model
    (vtx/cpu_model.py) gives the fixed leaves (Cpu.cpuid_tab: vendor,
    signature, caches, topology, brand string) and the feature set
    (Cpu.features), whose bits are ORed in: only what the model implements.
    A leaf above the highest basic or extended leaf answers as the highest
    basic leaf does (SDM Vol. 2A CPUID, "If a value entered for CPUID.EAX is
    higher than the maximum input value ..."); leaves within range that the
    model does not describe answer 0.  CPUID.01H:ECX.OSXSAVE reflects
    CR4.OSXSAVE and CPUID.01H:ECX.MONITOR reflects IA32_MISC_ENABLE[18] (SDM
    Vol. 2 CPUID; Vol. 4 Table 2-2): cr4 is the guest's."""
    cdef int f, i
    out[0] = out[1] = out[2] = out[3] = 0
    if leaf >= 0x80000000ULL:
        if leaf > c.cpuid_max_ext:
            leaf = c.cpuid_max
    elif leaf > c.cpuid_max:
        leaf = c.cpuid_max
    # ECX selects a subleaf only for the leaves that have them (SDM Vol. 2
    # CPUID: 04H, 07H, 0BH, 0DH, ...); the others ignore it.
    if leaf != 4 and leaf != 7 and leaf != 0xB and leaf != 0xD and leaf != 0x1F:
        sub = 0
    for i in range(c.cpuid_n):
        if c.cpuid_tab[i][0] == leaf and c.cpuid_tab[i][1] == sub:
            out[0] = c.cpuid_tab[i][2]
            out[1] = c.cpuid_tab[i][3]
            out[2] = c.cpuid_tab[i][4]
            out[3] = c.cpuid_tab[i][5]
            break
    for f in range(FEAT_COUNT):
        if FEAT_LEAF[f] == leaf and FEAT_SUBLEAF[f] == sub and cpu_has(c, f):
            out[FEAT_REG[f]] |= 1u << FEAT_BIT[f]
    if leaf == 0xB:
        # EDX: the x2APIC ID of this processor, whatever the subleaf; an
        # invalid level still reports its number in ECX[7:0].
        out[2] = (out[2] & ~0xFFu) | (sub & 0xFF)
        out[3] = <uint32_t>c.cpu_index
    elif leaf == 1:
        # EBX[31:24]: the initial APIC ID, the processor's number in its machine.
        out[1] = (out[1] & 0x00FFFFFFu) | (<uint32_t>c.cpu_index << 24)
        if not (c.misc_enable & MISC_ENABLE_MONITOR):
            out[2] &= ~(1u << 3)
        if cr4 & CR4_OSXSAVE:
            out[2] |= 1u << 27
        else:
            out[2] &= ~(1u << 27)
    elif leaf == 5:
        # MONITOR/MWAIT: monitor-line size 64 bytes (EAX smallest, EBX
        # largest); ECX: MWAIT extensions enumerated (0), interrupts as
        # break events even with EFLAGS.IF = 0 (1).  No C-state sub-states.
        if cpu_has(c, FEAT_MONITOR):
            out[0] = 64
            out[1] = 64
            out[2] = 3
    elif leaf == 0xD:
        if sub == 0 and cpu_has(c, FEAT_XSAVE):
            out[0] = XCR0_SUPPORTED
            out[1] = XSAVE_AREA_SIZE    # for the components enabled in XCR0 (both in the legacy region)
            out[2] = XSAVE_AREA_SIZE
        elif sub == 1 and cpu_has(c, FEAT_XSAVE):
            # EAX: XSAVEOPT (bit 0), XSAVEC (bit 1) and XSAVES (bit 3), ECX
            # the IA32_XSS bits (bit 10, PASID), from the feature set; EBX:
            # the size of the compacted area for XCR0 | IA32_XSS as they are
            # now (SDM Vol. 2 CPUID, leaf 0DH), the legacy region and header
            # and, with IA32_XSS[10], PASID state after them.
            if cpu_has(c, FEAT_XSAVEC) or cpu_has(c, FEAT_XSAVES):
                out[1] = XSAVE_AREA_SIZE + (XSAVE_PASID_SIZE if (c.xss & XSS_PASID) else 0)
        elif sub == 10 and cpu_has(c, FEAT_XSAVE) and cpu_has(c, FEAT_XSS_PASID):
            # Component 10: its size (EAX), no standard-form offset (EBX = 0
            # for a supervisor component), ECX[0] = 1 supervisor (in
            # IA32_XSS, not XCR0), ECX[1] = 0 no 64-byte alignment when
            # compacted.
            out[0] = XSAVE_PASID_SIZE
            out[1] = 0
            out[2] = 1
            out[3] = 0
        elif sub >= 2:
            out[0] = out[1] = out[2] = out[3] = 0


cdef int h_cpuid(Cpu* c, Insn* d) noexcept nogil:
    cdef uint32_t r[4]
    if c.vmx.non_root:
        return insn_exit(c, d, EXIT_REASON_CPUID, 0)
    model_cpuid(c, c.cr4, <uint32_t>c.regs[R_AX], <uint32_t>c.regs[R_CX], r)
    c.regs[R_AX] = r[0]
    c.regs[R_BX] = r[1]
    c.regs[R_CX] = r[2]
    c.regs[R_DX] = r[3]
    return RC_OK


# --- TSC ----------------------------------------------------------------------

cdef inline uint64_t guest_tsc(Cpu* c) noexcept nogil:
    """The TSC advances by one per retired instruction, so runs are
    deterministic; non-root reads add TSC_OFFSET (SDM Vol. 3 27.3)."""
    cdef uint64_t t = c.tsc_base + c.icount
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_USE_TSC_OFFSETTING):
        t += c.vmx.ctl.tsc_offset
    return t


cdef int h_rdtsc(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t t
    if (c.cr4 & CR4_TSD) and c.cpl != 0 and (c.cr0 & CR0_PE):
        return raise_gp0(c)
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_RDTSC_EXITING):
        return insn_exit(c, d, EXIT_REASON_RDTSC, 0)
    t = guest_tsc(c)
    c.regs[R_AX] = t & 0xFFFFFFFFULL
    c.regs[R_DX] = t >> 32
    return RC_OK


cdef int rdtscp(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 F9 RDTSCP: EDX:EAX = TSC (with TSC offsetting as RDTSC), ECX =
    IA32_TSC_AUX[31:0].  In non-root operation it is #UD unless "enable
    RDTSCP" is 1, before any other exception (SDM 26.3); it exits when
    "RDTSC exiting" is 1 too (SDM 26.1.3), after the CR4.TSD #GP."""
    cdef uint64_t t
    if not cpu_has(c, FEAT_RDTSCP):
        return raise_ud(c)          # not in the CPU model (vtx/cpu_model.py)
    if c.vmx.non_root and not (c.vmx.ctl.proc2 & PROC2_ENABLE_RDTSCP):
        return raise_ud(c)
    if (c.cr4 & CR4_TSD) and c.cpl != 0 and (c.cr0 & CR0_PE):
        return raise_gp0(c)
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_RDTSC_EXITING):
        return insn_exit(c, d, EXIT_REASON_RDTSCP, 0)
    t = guest_tsc(c)
    c.regs[R_AX] = t & 0xFFFFFFFFULL
    c.regs[R_DX] = t >> 32
    c.regs[R_CX] = c.tsc_aux & 0xFFFFFFFFULL
    return RC_OK


cdef int h_rdpmc(Cpu* c, Insn* d) noexcept nogil:
    """0F 33 RDPMC.  #GP(0) at CPL > 0 with CR4.PCE = 0 in protected and
    virtual-8086 mode (a privilege fault: before the VM exit, SDM 26.1.1);
    then the exit under "RDPMC exiting" (SDM 26.1.3).  The model has no
    performance-monitoring counters (CPUID.0AH reports version 0), so every
    counter index in ECX is invalid: #GP(0)."""
    if (c.cr0 & CR0_PE) and c.cpl != 0 and not (c.cr4 & CR4_PCE):
        return raise_gp0(c)
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_RDPMC_EXITING):
        return insn_exit(c, d, EXIT_REASON_RDPMC, 0)
    return raise_gp0(c)


# --- MSRs ---------------------------------------------------------------------

cdef int msr_exits(Cpu* c, uint32_t msr, int write) noexcept nogil:
    """MSR bitmaps (SDM Vol. 3 25.6.9): read-low, read-high, write-low and
    write-high bitmaps of 1 KiB each."""
    cdef uint64_t off
    cdef uint32_t bit
    cdef uint8_t* p
    if not (c.vmx.ctl.proc & PROC_USE_MSR_BITMAPS):
        return 1
    if msr <= 0x1FFF:
        off = 0
        bit = msr
    elif msr >= 0xC0000000ULL and msr <= 0xC0001FFFULL:
        off = 1024
        bit = msr - 0xC0000000ULL
    else:
        return 1
    if write:
        off += 2048
    p = hpa_ptr(c, c.vmx.ctl.msr_bitmap + off + (bit >> 3), 1, 0)
    return p == NULL or ((p[0] >> (bit & 7)) & 1)


cdef int msr_read(Cpu* c, uint32_t msr, uint64_t* v) noexcept nogil:
    """RDMSR of the modeled processor; 1 when the MSR does not exist."""
    if msr == MSR_IA32_TIME_STAMP_COUNTER:
        v[0] = guest_tsc(c)
    elif msr == MSR_IA32_EFER:
        v[0] = c.efer
    elif msr == MSR_IA32_APIC_BASE:
        v[0] = c.apic_base
    elif msr == MSR_IA32_FEATURE_CONTROL:
        v[0] = c.feature_control
    elif msr == MSR_IA32_SYSENTER_CS:
        v[0] = c.sysenter_cs
    elif msr == MSR_IA32_SYSENTER_ESP:
        v[0] = c.sysenter_esp
    elif msr == MSR_IA32_SYSENTER_EIP:
        v[0] = c.sysenter_eip
    elif msr == MSR_IA32_MISC_ENABLE:
        v[0] = c.misc_enable
    elif msr == MSR_IA32_BIOS_SIGN_ID:
        # The model runs no microcode update: revision 0 (SDM Vol. 3A 9.11.7.1).
        v[0] = 0
    elif msr == MSR_IA32_DEBUGCTL:
        v[0] = c.debugctl
    elif msr == MSR_IA32_PAT:
        v[0] = c.pat
    elif msr == MSR_IA32_FS_BASE:
        v[0] = c.seg[S_FS].base
    elif msr == MSR_IA32_GS_BASE:
        v[0] = c.seg[S_GS].base
    elif msr == MSR_IA32_KERNEL_GS_BASE:
        v[0] = c.kernel_gs_base
    elif msr == MSR_IA32_STAR:
        v[0] = c.star
    elif msr == MSR_IA32_LSTAR:
        v[0] = c.lstar
    elif msr == MSR_IA32_CSTAR:
        v[0] = c.cstar
    elif msr == MSR_IA32_FMASK:
        v[0] = c.fmask
    elif msr == MSR_IA32_TSC_AUX:
        v[0] = c.tsc_aux
    elif msr == MSR_IA32_XSS and cpu_has(c, FEAT_XSAVES):
        v[0] = c.xss
    elif msr == MSR_IA32_PASID and cpu_has(c, FEAT_XSS_PASID):
        v[0] = c.pasid
    elif msr == MSR_IA32_UMWAIT_CONTROL and cpu_has(c, FEAT_WAITPKG):
        v[0] = c.umwait_control
    else:
        return vmx_cap_msr(c, msr, v)
    return 0


cdef inline int pat_valid(uint64_t pat) noexcept nogil:
    cdef int i
    cdef uint64_t t
    for i in range(8):
        t = (pat >> (8 * i)) & 0xFF
        if t == 2 or t == 3 or t > 7:
            return 0
    return 1


cdef int msr_write(Cpu* c, uint32_t msr, uint64_t v) noexcept nogil:
    """WRMSR of the modeled processor; 1 means #GP(0) (no such MSR, reserved
    bits, or a value the MSR rejects)."""
    if msr == MSR_IA32_TIME_STAMP_COUNTER:
        c.tsc_base = v - c.icount
    elif msr == MSR_IA32_EFER:
        if v & ~(<uint64_t>(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)):
            return 1
        # NXE and LME are reserved on a processor without XD or Intel 64
        # (SDM Vol. 3A 2.2.1, Table 2-1 note; the CPU model's NX and LM).
        if ((v & EFER_NXE) and not cpu_has(c, FEAT_NX)) or ((v & EFER_LME) and not cpu_has(c, FEAT_LM)):
            return 1
        if (c.cr0 & CR0_PG) and ((v ^ c.efer) & EFER_LME):
            return 1
        c.efer = (v & ~(<uint64_t>EFER_LMA)) | (c.efer & EFER_LMA)   # LMA is read-only
        update_mode(c)
    elif msr == MSR_IA32_APIC_BASE:
        c.apic_base = v
    elif msr == MSR_IA32_FEATURE_CONTROL:
        # Writable until locked (bit 0); the model offers the lock bit and
        # the VMXON enables inside (bit 1) and outside (bit 2) SMX.
        if (c.feature_control & 1) or (v & ~7ULL):
            return 1
        c.feature_control = v
    elif msr == MSR_IA32_SYSENTER_CS:
        c.sysenter_cs = v & 0xFFFFFFFFULL
    elif msr == MSR_IA32_SYSENTER_ESP:
        if not is_canonical(v):
            return 1
        c.sysenter_esp = v
    elif msr == MSR_IA32_SYSENTER_EIP:
        if not is_canonical(v):
            return 1
        c.sysenter_eip = v
    elif msr == MSR_IA32_MISC_ENABLE:
        c.misc_enable = v
    elif msr == MSR_IA32_BIOS_SIGN_ID:
        # Software writes 0 before CPUID to read the revision (SDM Vol. 3A
        # 9.11.7.1); the model keeps nothing.
        pass
    elif msr == MSR_IA32_DEBUGCTL:
        # Bits the model does not implement are reserved: #GP(0) (SDM Vol. 3C
        # 27.3.1.1 checks the guest value against the same set).
        if v & ~VMX_CAP_DEBUGCTL_SUPPORTED:
            return 1
        c.debugctl = v
    elif msr == MSR_IA32_PAT:
        # Each of the eight entries must be a valid memory type (0, 1, 4-7):
        # #GP(0) otherwise (SDM Vol. 3A 13.12.2), and the VM-entry check on
        # the guest PAT would fail (SDM Vol. 3C 27.3.1.1).
        if not pat_valid(v):
            return 1
        c.pat = v
    elif msr == MSR_IA32_FS_BASE or msr == MSR_IA32_GS_BASE or msr == MSR_IA32_KERNEL_GS_BASE or \
         msr == MSR_IA32_LSTAR or msr == MSR_IA32_CSTAR:
        if not is_canonical(v):
            return 1
        if msr == MSR_IA32_FS_BASE:
            c.seg[S_FS].base = v
        elif msr == MSR_IA32_GS_BASE:
            c.seg[S_GS].base = v
        elif msr == MSR_IA32_KERNEL_GS_BASE:
            c.kernel_gs_base = v
        elif msr == MSR_IA32_LSTAR:
            c.lstar = v
        else:
            c.cstar = v
    elif msr == MSR_IA32_STAR:
        c.star = v
    elif msr == MSR_IA32_FMASK:
        c.fmask = v
    elif msr == MSR_IA32_TSC_AUX:
        c.tsc_aux = v & 0xFFFFFFFFULL
    elif msr == MSR_IA32_XSS and cpu_has(c, FEAT_XSAVES):
        # Only the supervisor components CPUID.(EAX=0DH,ECX=1):EDX:ECX
        # enumerates may be set (SDM Vol. 1 13.3).
        if v & ~xss_supported(c):
            return 1
        c.xss = v
    elif msr == MSR_IA32_PASID and cpu_has(c, FEAT_XSS_PASID):
        if v & ~(<uint64_t>PASID_VALID_BITS):
            return 1
        c.pasid = v
    elif msr == MSR_IA32_UMWAIT_CONTROL and cpu_has(c, FEAT_WAITPKG):
        # Bit 1 and bits 63:32 are reserved (SDM Vol. 4 Table 2-2, MSR E1H).
        if v & ~0xFFFFFFFDULL:
            return 1
        c.umwait_control = v
    else:
        return 1
    return 0


cdef int h_rdmsr(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t v
    cdef uint32_t msr = <uint32_t>c.regs[R_CX]
    if c.cpl != 0:
        return raise_gp0(c)
    if c.vmx.non_root and msr_exits(c, msr, 0):
        return insn_exit(c, d, EXIT_REASON_RDMSR, 0)
    if c.vmx.non_root and (c.vmx.ctl.proc2 & PROC2_VIRTUALIZE_X2APIC_MODE) and (msr >> 8) == 8 and \
            x2apic_rdmsr(c, msr, &v):
        pass                    # read from the virtual-APIC page (core/vmx/apicv.pxi)
    elif msr_read(c, msr, &v):
        return raise_gp0(c)
    c.regs[R_AX] = v & 0xFFFFFFFFULL
    c.regs[R_DX] = v >> 32
    return RC_OK


cdef int h_wrmsr(Cpu* c, Insn* d) noexcept nogil:
    cdef uint32_t msr = <uint32_t>c.regs[R_CX]
    cdef uint64_t v = (c.regs[R_AX] & 0xFFFFFFFFULL) | ((c.regs[R_DX] & 0xFFFFFFFFULL) << 32)
    cdef int gp
    if c.cpl != 0:
        return raise_gp0(c)
    if c.vmx.non_root and msr_exits(c, msr, 1):
        return insn_exit(c, d, EXIT_REASON_WRMSR, 0)
    if c.vmx.non_root and (c.vmx.ctl.proc2 & PROC2_VIRTUALIZE_X2APIC_MODE) and (msr >> 8) == 8 and \
            x2apic_wrmsr(c, msr, v, &gp):
        # virtualized (core/vmx/apicv.pxi)
        return raise_gp0(c) if gp else RC_OK
    if msr_write(c, msr, v):
        return raise_gp0(c)
    return RC_OK


# --- control registers (SDM Vol. 2 MOV CR; VMX: SDM Vol. 3 26.1.3, 25.3) ------

cdef inline uint64_t cr_qual(int cr, int access, int gpr) noexcept nogil:
    """Exit qualification for control-register accesses (SDM Table 28-3)."""
    return <uint64_t>cr | (<uint64_t>access << 4) | (<uint64_t>gpr << 8)


cdef int cr3_target_hit(Cpu* c, uint64_t v) noexcept nogil:
    cdef uint32_t n
    cdef uint32_t i
    cdef uint64_t t
    memcpy(&n, c.vmx.vmcs + VMCS_OFF_CR3_TARGET_COUNT, 4)
    for i in range(min(n, 4)):
        memcpy(&t, c.vmx.vmcs + VMCS_OFF_CR3_TARGET_VALUE_0 + 8 * i, 8)
        if t == v:
            return 1
    return 0


cdef int load_pdptes(Cpu* c, uint64_t cr3) noexcept nogil:
    """PAE paging: loading CR3 loads the four PDPTEs (SDM Vol. 3 4.4.1);
    a reserved bit set is #GP(0)."""
    cdef int i, rc
    cdef uint64_t e[4]
    cdef uint8_t* p
    cdef uint64_t hpa
    cdef uint32_t perm
    for i in range(4):
        rc = gpa_to_host(c, (cr3 & 0xFFFFFFE0ULL) + 8 * i, ACC_READ, 0, 0, 0, &p, &hpa, &perm)
        if rc:
            return rc
        memcpy(&e[i], p, 8)
        if (e[i] & 1) and (e[i] & RSVD_PDPTE):
            return raise_gp0(c)
    for i in range(4):
        c.pdpte[i] = e[i]
    return RC_OK


cdef int write_cr0(Cpu* c, uint64_t v) noexcept nogil:
    cdef uint64_t fixed0
    cdef int rc
    if v >> 32:
        return raise_gp0(c)
    v |= CR0_ET
    if (v & CR0_PG) and not (v & CR0_PE):
        return raise_gp0(c)
    if (v & CR0_NW) and not (v & CR0_CD):
        return raise_gp0(c)
    if c.vmx.on:
        # In VMX operation CR0 must respect the fixed bits (SDM 24.8); an
        # unrestricted guest may clear PE and PG.
        fixed0 = VMX_CAP_CR0_FIXED0
        if c.vmx.non_root and (c.vmx.ctl.proc2 & PROC2_UNRESTRICTED_GUEST) and \
                (c.vmx.ctl.proc & PROC_ACTIVATE_SECONDARY_CONTROLS):
            fixed0 &= ~(<uint64_t>(CR0_PE | CR0_PG))
        if (v & fixed0) != fixed0:
            return raise_gp0(c)
    if (v & CR0_PG) and not (c.cr0 & CR0_PG) and (c.efer & EFER_LME):
        if not (c.cr4 & CR4_PAE):
            return raise_gp0(c)
        c.efer |= EFER_LMA
    elif not (v & CR0_PG) and (c.cr0 & CR0_PG) and (c.efer & EFER_LMA):
        # Leaving IA-32e mode: not from 64-bit mode, and not with CR4.PCIDE
        # set (SDM Vol. 2 MOV CR, "#GP(0) ... clear CR0.PG while CR4.PCIDE=1").
        if c.long64 or (c.cr4 & CR4_PCIDE):
            return raise_gp0(c)
        c.efer &= ~(<uint64_t>EFER_LMA)
    if (v & CR0_PG) and (c.cr4 & CR4_PAE) and not (c.efer & EFER_LMA) and not (c.cr0 & CR0_PG):
        # Loading the PDPTEs can fault (#GP), exit (an EPT violation or
        # misconfiguration on the read) or reach no memory: pass that on.
        rc = load_pdptes(c, c.cr3)
        if rc:
            return rc
    c.cr0 = v
    update_mode(c)
    return RC_OK


cdef int write_cr4(Cpu* c, uint64_t v) noexcept nogil:
    cdef int rc
    # The bits of the CPU model's features (Cpu.cr4_fixed1); VMXE also in
    # VMX operation, whatever the model tells a hosted guest through CPUID
    # (the processor running it has VMX; the guest's own VMXE is the host's,
    # through the CR4 guest/host mask).
    if v & ~(c.cr4_fixed1 | (<uint64_t>CR4_VMXE if c.vmx.on else 0)):
        return raise_gp0(c)
    # CR4.UMIP is reserved on a processor without UMIP (CPUID.7.0:ECX[2]).
    if (v & CR4_UMIP) and not cpu_has(c, FEAT_UMIP):
        return raise_gp0(c)
    # CR4.PCIDE: only in IA-32e mode, and set only while CR3[11:0] = 0 (SDM
    # Vol. 2 MOV CR, "Protected Mode Exceptions"); a PCIDE outside IA-32e mode
    # would also fail the next VM entry (SDM Vol. 3C 27.3.1.1).
    if (v & CR4_PCIDE) and not (c.efer & EFER_LMA):
        return raise_gp0(c)
    if (v & CR4_PCIDE) and not (c.cr4 & CR4_PCIDE) and (c.cr3 & 0xFFF):
        return raise_gp0(c)
    if c.vmx.on and not (v & CR4_VMXE):
        return raise_gp0(c)
    if (c.efer & EFER_LMA) and not (v & CR4_PAE):
        return raise_gp0(c)
    if (c.cr0 & CR0_PG) and (v & CR4_PAE) and not (c.efer & EFER_LMA) and \
            ((v ^ c.cr4) & (CR4_PAE | CR4_PSE | CR4_PGE | CR4_SMEP)):
        rc = load_pdptes(c, c.cr3)
        if rc:
            return rc
    c.cr4 = v
    update_mode(c)
    return RC_OK


cdef int h_mov_cr_r(Cpu* c, Insn* d) noexcept nogil:
    """MOV CRn, r (0F 22)."""
    cdef int cr = d.reg
    cdef int noflush
    cdef int size = 8 if c.long64 else 4
    cdef uint64_t v = get_reg(c, d.rm, size)
    cdef uint64_t mask
    cdef int rc
    if c.cpl != 0:
        return raise_gp0(c)
    if cr == 0:
        if c.vmx.non_root:
            mask = c.vmx.ctl.cr0_mask
            if (v ^ c.vmx.ctl.cr0_shadow) & mask:
                return insn_exit(c, d, EXIT_REASON_CONTROL_REGISTER_ACCESS, cr_qual(0, 0, d.rm))
            v = (v & ~mask) | (c.cr0 & mask)
        return write_cr0(c, v)
    elif cr == 3:
        if c.vmx.non_root and (c.vmx.ctl.proc & PROC_CR3_LOAD_EXITING) and not cr3_target_hit(c, v):
            return insn_exit(c, d, EXIT_REASON_CONTROL_REGISTER_ACCESS, cr_qual(3, 0, d.rm))
        noflush = 0
        if c.long64:
            # Bit 63 is the "do not invalidate" hint with CR4.PCIDE = 1 and is
            # not stored; without PCIDE it is reserved.  Bits 62:MAXPHYADDR
            # are reserved (SDM Vol. 3A 4.10.4.1, Vol. 2 MOV CR): #GP(0),
            # never a stored value that the next VM entry would reject.
            if (v >> 63) and (c.cr4 & CR4_PCIDE):
                v &= ~(1ULL << 63)
                noflush = 1
            if v >> MAXPHYADDR:
                return raise_gp0(c)
        if c.paging == 3:
            rc = load_pdptes(c, v)
            if rc:
                return rc
        c.cr3 = v
        tlb_set_salt(c)
        # SDM Vol. 3A 4.10.4.1: the entries of the new PCID (000H without
        # PCIDE) go, except global ones; none with bit 63 set.  The other
        # PCIDs keep theirs.
        if noflush:
            c.tlb_gen += 1
        else:
            tlb_flush_pcid(c, tlb_pcid(c))
        return RC_OK
    elif cr == 4:
        if c.vmx.non_root:
            mask = c.vmx.ctl.cr4_mask
            if (v ^ c.vmx.ctl.cr4_shadow) & mask:
                return insn_exit(c, d, EXIT_REASON_CONTROL_REGISTER_ACCESS, cr_qual(4, 0, d.rm))
            v = (v & ~mask) | (c.cr4 & mask)
        return write_cr4(c, v)
    elif cr == 2:
        c.cr2 = v
        return RC_OK
    elif cr == 8:
        # CR8-load exiting comes before the reserved-bit check; "use TPR
        # shadow" sends the value to VTPR (core/vmx/apicv.pxi, SDM 30.3).
        if c.vmx.non_root and (c.vmx.ctl.proc & PROC_CR8_LOAD_EXITING):
            return insn_exit(c, d, EXIT_REASON_CONTROL_REGISTER_ACCESS, cr_qual(8, 0, d.rm))
        if v & ~0xFULL:
            return raise_gp0(c)
        if c.vmx.non_root and (c.vmx.ctl.proc & PROC_USE_TPR_SHADOW):
            return cr8_load(c, d, v)
        c.cr8 = v
        return RC_OK
    return raise_ud(c)


cdef int h_mov_r_cr(Cpu* c, Insn* d) noexcept nogil:
    """MOV r, CRn (0F 20).  In non-root operation the bits the host owns
    read from the read shadows (SDM Vol. 3 25.3)."""
    cdef int cr = d.reg
    cdef int size = 8 if c.long64 else 4
    cdef uint64_t v
    cdef int rc
    if c.cpl != 0:
        return raise_gp0(c)
    if cr == 0:
        v = c.cr0
        if c.vmx.non_root:
            v = (v & ~c.vmx.ctl.cr0_mask) | (c.vmx.ctl.cr0_shadow & c.vmx.ctl.cr0_mask)
    elif cr == 2:
        v = c.cr2
    elif cr == 3:
        if c.vmx.non_root and (c.vmx.ctl.proc & PROC_CR3_STORE_EXITING):
            return insn_exit(c, d, EXIT_REASON_CONTROL_REGISTER_ACCESS, cr_qual(3, 1, d.rm))
        v = c.cr3
    elif cr == 4:
        v = c.cr4
        if c.vmx.non_root:
            v = (v & ~c.vmx.ctl.cr4_mask) | (c.vmx.ctl.cr4_shadow & c.vmx.ctl.cr4_mask)
    elif cr == 8:
        if c.vmx.non_root:
            rc = cr8_store(c, d, &v)
            if rc:
                return rc
        else:
            v = c.cr8
    else:
        return raise_ud(c)
    set_reg(c, d.rm, size, v)
    return RC_OK


# --- 0F 01: descriptor tables, VMCALL and the VMX instructions ---------------

cdef int h_invlpg(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 /7 with a memory operand: INVLPG m (SDM Vol. 2 INVLPG).  #GP(0)
    outside CPL 0 (virtual-8086 mode included), checked before the VM exit
    as privilege faults are (SDM Vol. 3C 26.1.1).  With INVLPG exiting the
    exit qualification is the operand's linear address (SDM Vol. 3C 28.2.1).
    It invalidates the entries for the page that holds the address in the
    current PCID, and the global ones whatever PCID filled them (of a large page, all the 4 KiB entries
    the model split it into; core/mmu.pxi tlb_invalidate_page).  No memory
    is accessed, so there is no limit or canonical check."""
    cdef uint64_t lin
    if d.mod == 3:
        if (d.rm & 7) == 1:
            return rdtscp(c, d)
        return raise_ud(c)      # F8 SWAPGS (not modeled), FA-FF
    lin = ea_offset(c, d)
    if c.cpl != 0:
        return raise_gp0(c)
    if c.long64:
        if d.seg == S_FS or d.seg == S_GS:
            lin += c.seg[d.seg].base
    else:
        lin = (c.seg[d.seg].base + lin) & 0xFFFFFFFFULL
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_INVLPG_EXITING):
        return insn_exit(c, d, EXIT_REASON_INVLPG, lin)
    tlb_invalidate_page(c, lin, tlb_pcid(c), 1)
    return RC_OK


cdef int stac_clac(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 CA CLAC / 0F 01 CB STAC: clear or set RFLAGS.AC, which lets
    explicit supervisor-mode accesses reach user pages under SMAP.  #UD
    without SMAP in the CPU model and at CPL > 0, virtual-8086 mode
    included (SDM Vol. 2 CLAC, STAC)."""
    if not cpu_has(c, FEAT_SMAP) or c.cpl != 0:
        return raise_ud(c)
    if (d.rm & 7) == 3:
        c.rflags |= F_AC
    else:
        c.rflags &= ~(<uint64_t>F_AC)
    return RC_OK


cdef int h_0f01(Cpu* c, Insn* d) noexcept nogil:
    cdef uint64_t off, lim, base
    cdef int rc
    cdef int bsize
    if d.mod == 3:
        if d.ext == 0 and d.rm >= 1 and d.rm <= 4:
            # VMCALL C1, VMLAUNCH C2, VMRESUME C3, VMXOFF C4 (core/vmx/insn.pxi)
            return h_vmcall_group(c, d)
        if d.ext == 1 and (d.rm & 7) == 0:
            return monitor(c, d)
        if d.ext == 1 and (d.rm & 7) == 1:
            return mwait(c, d)
        if d.ext == 1 and ((d.rm & 7) == 2 or (d.rm & 7) == 3):
            return stac_clac(c, d)
        if d.ext == 2 and (d.rm & 7) == 0:
            return xgetbv(c, d)
        if d.ext == 2 and (d.rm & 7) == 1:
            return xsetbv(c, d)
        if d.ext == 2 and (d.rm & 7) == 4:
            return h_vmfunc(c, d)      # 0F 01 D4 (core/vmx/insn.pxi)
        return raise_ud(c)
    if d.ext > 3:
        return raise_ud(c)
    off = ea_offset(c, d)
    bsize = 8 if c.long64 else 4
    if d.ext == 2 or d.ext == 3:
        # LGDT / LIDT: 16-bit limit then a 24-, 32- or 64-bit base.
        if c.cpl != 0:
            return raise_gp0(c)
        # "Descriptor-table exiting" (SDM 26.1.3): after the privilege
        # check, before the operand is read.  d.ext is the identity of
        # Table 28-10 (0 SGDT, 1 SIDT, 2 LGDT, 3 LIDT).
        if c.vmx.non_root and (c.vmx.ctl.proc2 & PROC2_DESCRIPTOR_TABLE_EXITING):
            return desc_table_exit(c, d, d.ext)
        rc = mem_read(c, d.seg, off, 2, &lim)
        if rc:
            return rc
        rc = mem_read(c, d.seg, (off + 2) & SIZE_MASK[d.asz], bsize, &base)
        if rc:
            return rc
        if not c.long64 and d.osz == 2:
            base &= 0xFFFFFF
        if c.long64 and not is_canonical(base):
            return raise_gp0(c)
        if d.ext == 2:
            c.gdtr_base = base
            c.gdtr_limit = <uint32_t>lim
        else:
            c.idtr_base = base
            c.idtr_limit = <uint32_t>lim
        return RC_OK
    # SGDT / SIDT: any CPL, unless CR4.UMIP (SDM Vol. 3A 2.5: #GP(0) at
    # CPL > 0), a fault that comes before the VM exit (SDM Vol. 3C 26.1.1).
    if umip_denied(c):
        return raise_gp0(c)
    if c.vmx.non_root and (c.vmx.ctl.proc2 & PROC2_DESCRIPTOR_TABLE_EXITING):
        return desc_table_exit(c, d, d.ext)
    if d.ext == 0:
        base = c.gdtr_base
        lim = c.gdtr_limit
    else:
        base = c.idtr_base
        lim = c.idtr_limit
    rc = mem_check_write(c, d.seg, (off + 2) & SIZE_MASK[d.asz], bsize)
    if rc:
        return rc
    rc = mem_write(c, d.seg, off, 2, lim)
    if rc:
        return rc
    return mem_write(c, d.seg, (off + 2) & SIZE_MASK[d.asz], bsize, base)


# --- caches: INVD, WBINVD -----------------------------------------------------

cdef int h_invd(Cpu* c, Insn* d) noexcept nogil:
    """0F 08 INVD.  #GP(0) at CPL > 0 (virtual-8086 mode included), then
    the VM exit that INVD always causes in non-root operation (SDM 26.1.2).
    The model has no caches: nothing to invalidate."""
    if c.cpl != 0:
        return raise_gp0(c)
    if c.vmx.non_root:
        return insn_exit(c, d, EXIT_REASON_INVD, 0)
    return RC_OK


cdef int h_wbinvd(Cpu* c, Insn* d) noexcept nogil:
    """0F 09 WBINVD (F3 0F 09 WBNOINVD is not reported by CPUID, so the F3
    is ignored and it is WBINVD).  #GP(0) at CPL > 0, then the exit under
    "WBINVD exiting" (SDM 26.1.3)."""
    if c.cpl != 0:
        return raise_gp0(c)
    if c.vmx.non_root and (c.vmx.ctl.proc2 & PROC2_WBINVD_EXITING):
        return insn_exit(c, d, EXIT_REASON_WBINVD, 0)
    return RC_OK


# --- CR0 through CLTS, LMSW and SMSW (SDM 26.1.3, 26.3) --------------------------

cdef inline uint64_t cr0_shadowed(Cpu* c) noexcept nogil:
    """CR0 as the guest reads it: in non-root operation the bits set in the
    CR0 guest/host mask come from the CR0 read shadow (SDM 26.3)."""
    cdef uint64_t v = c.cr0
    if c.vmx.non_root:
        v = (v & ~c.vmx.ctl.cr0_mask) | (c.vmx.ctl.cr0_shadow & c.vmx.ctl.cr0_mask)
    return v


cdef int h_clts(Cpu* c, Insn* d) noexcept nogil:
    """0F 06 CLTS: CR0.TS = 0.  #GP(0) at CPL > 0.  In non-root operation
    (SDM 26.1.3, 26.3): TS set in both the CR0 guest/host mask and the read
    shadow: a control-register-access exit, access type 2 (Table 28-3); TS
    set in the mask only: CLTS completes and leaves CR0.TS alone."""
    if c.cpl != 0:
        return raise_gp0(c)
    if c.vmx.non_root and (c.vmx.ctl.cr0_mask & CR0_TS):
        if c.vmx.ctl.cr0_shadow & CR0_TS:
            return insn_exit(c, d, EXIT_REASON_CONTROL_REGISTER_ACCESS, cr_qual(0, 2, 0))
        return RC_OK
    c.cr0 &= ~(<uint64_t>CR0_TS)
    return RC_OK


cdef int h_lmsw(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 /6 LMSW r/m16: load CR0[3:0] (PE MP EM TS) from the source; it
    never clears PE.  #GP(0) at CPL > 0.  The source is read first: a fault
    reading it comes before the VM exit, which depends on its value (SDM
    26.1.1).  In non-root operation LMSW exits if it would write, for a bit
    of the CR0 guest/host mask's low four, a value other than the read
    shadow's (for PE: only a 1 over a shadow 0, since LMSW cannot clear it)
    (SDM 26.1.3).  The exit qualification (Table 28-3): CR 0, access type 3,
    bit 6 the operand type (1 memory), bits 31:16 the source; with a memory
    operand the guest-linear address field holds its linear address (SDM
    28.2.1).  Without an exit the masked bits keep their value (SDM 26.3)."""
    cdef uint64_t src, mask, shadow, keep, v, lin
    cdef int rc
    if c.cpl != 0:
        return raise_gp0(c)
    rc = read_rm(c, d, 2, &src)
    if rc:
        return rc
    src &= 0xFFFF
    if c.vmx.non_root:
        mask = c.vmx.ctl.cr0_mask & 0xF
        shadow = c.vmx.ctl.cr0_shadow
        if (mask & src & ~shadow & CR0_PE) or (mask & 0xE & (src ^ shadow)):
            insn_exit(c, d, EXIT_REASON_CONTROL_REGISTER_ACCESS,
                      cr_qual(0, 3, 0) | (<uint64_t>(d.mod != 3) << 6) | (src << 16))
            if d.mod != 3 and seg_linear(c, d.seg, ea_offset(c, d), 2, ACC_READ, &lin) == RC_OK:
                c.vmx.x_gla = lin
                c.vmx.x_gla_valid = 1
            return RC_VMEXIT
    else:
        mask = 0
    keep = mask | CR0_PE          # bits LMSW leaves: the host's, and PE unless set
    v = (c.cr0 & ~(<uint64_t>0xF)) | (c.cr0 & keep) | (src & 0xF & ~mask)
    return write_cr0(c, v)


cdef int h_smsw(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 /4 SMSW: store CR0 (as the guest reads it, through the read
    shadow in non-root operation).  To memory: 16 bits; to a register: the
    operand size (the upper bits of CR0 for a 32- or 64-bit register, as
    Intel processors store them).  Any CPL unless CR4.UMIP: then #GP(0) at
    CPL > 0 (SDM Vol. 3A 2.5).  No VM exit."""
    cdef uint64_t v = cr0_shadowed(c)
    if umip_denied(c):
        return raise_gp0(c)
    if d.mod == 3:
        set_reg(c, d.rm, d.osz, v)
        return RC_OK
    return mem_write(c, d.seg, ea_offset(c, d), 2, v & 0xFFFF)


# --- debug registers: MOV DR (SDM Vol. 2 MOV DR; Vol. 3 18.2) -----------------

cdef enum:
    DR6_FIXED1 = 0xFFFF0FF0      # bits that read as 1 (no bus-lock or RTM detection)
    DR6_WRITABLE = 0xE00F        # B0-B3, BD, BS, BT
    DR7_FIXED1 = 0x400
    DR7_WRITABLE = 0xFFFF23FF    # bits 11 (RTM), 12, 14 and 15 read as 0


cdef int mov_dr_checks(Cpu* c, Insn* d, int to_dr, int* dr) noexcept nogil:
    """The checks of MOV DR in their order.  "MOV-DR exiting" (SDM 26.1.3)
    takes priority over the #GP for CPL > 0 and the #UD for DR4/DR5 with
    CR4.DE = 1, unlike other exits; DR8-DR15 (REX.R) are #UD before it.
    Exit qualification: Table 28-4.  DR4 and DR5 alias DR6 and DR7 when
    CR4.DE = 0.  With DR7.GD = 1 any access is a #DB fault with DR6.BD
    (SDM Vol. 3B 18.2.4), after the #GP and #UD checks (which decode-time
    and privilege faults precede, Vol. 3A Table 6-2) and after the VM exit."""
    cdef int n = d.reg
    if n > 7:
        return raise_ud(c)
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_MOV_DR_EXITING):
        return insn_exit(c, d, EXIT_REASON_MOV_DR,
                         <uint64_t>n | (<uint64_t>(0 if to_dr else 1) << 4) | ((<uint64_t>d.rm & 15) << 8))
    if c.cpl != 0:
        return raise_gp0(c)
    if n == 4 or n == 5:
        if c.cr4 & CR4_DE:
            return raise_ud(c)
        n += 2
    if c.dr7 & DR7_GD:
        return dbg_raise(c, DR6_BD)
    dr[0] = n
    return RC_OK


cdef int h_mov_r_dr(Cpu* c, Insn* d) noexcept nogil:
    """0F 21 MOV r, DRn (32-bit operand outside 64-bit mode, 64-bit in it)."""
    cdef int n
    cdef uint64_t v
    cdef int rc = mov_dr_checks(c, d, 0, &n)
    if rc:
        return rc
    if n < 4:
        v = c.dr[n]
    elif n == 6:
        v = c.dr6
    else:
        v = c.dr7
    set_reg(c, d.rm, 8 if c.long64 else 4, v)
    return RC_OK


cdef int h_mov_dr_r(Cpu* c, Insn* d) noexcept nogil:
    """0F 23 MOV DRn, r.  In 64-bit mode a value with bits 63:32 set is
    #GP(0) for DR6 and DR7; DR0-DR3 take any linear address."""
    cdef int n
    cdef uint64_t v = get_reg(c, d.rm, 8 if c.long64 else 4)
    cdef int rc = mov_dr_checks(c, d, 1, &n)
    if rc:
        return rc
    if n < 4:
        c.dr[n] = v
        dbg_changed(c)          # [debug] breakpoints in the TLB (core/insn/debug.pxi)
        return RC_OK
    if v >> 32:
        return raise_gp0(c)
    if n == 6:
        c.dr6 = (v & DR6_WRITABLE) | DR6_FIXED1
    else:
        c.dr7 = (v & DR7_WRITABLE) | DR7_FIXED1
        dbg_changed(c)
    return RC_OK


# --- PAUSE, MONITOR, MWAIT ------------------------------------------------------

cdef int h_pause(Cpu* c, Insn* d) noexcept nogil:
    """F3 90 PAUSE (chosen at decode).  In non-root operation (SDM 26.1.3):
    with "PAUSE exiting" it always exits; otherwise, at CPL 0 only, "PAUSE-
    loop exiting" exits when the PAUSE is part of a loop (each PAUSE within
    PLE_Gap of the one before) that has spun longer than PLE_Window since its
    first PAUSE.  Time is the TSC, which the model advances by one per
    retired instruction (docs/architecture.rst, decision 11)."""
    cdef uint64_t now
    if not c.vmx.non_root:
        return RC_OK
    if c.vmx.ctl.proc & PROC_PAUSE_EXITING:
        return insn_exit(c, d, EXIT_REASON_PAUSE, 0)
    if (c.vmx.ctl.proc2 & PROC2_PAUSE_LOOP_EXITING) and c.cpl == 0:
        now = c.tsc_base + c.icount
        if not c.vmx.ple_valid or now - c.vmx.ple_last > c.vmx.ctl.ple_gap:
            c.vmx.ple_first = now          # the first PAUSE of a loop
            c.vmx.ple_valid = 1
        elif now - c.vmx.ple_first > c.vmx.ctl.ple_window:
            return insn_exit(c, d, EXIT_REASON_PAUSE, 0)
        c.vmx.ple_last = now
    return RC_OK


cdef int monitor(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 C8 MONITOR: arm address-range monitoring at DS:rAX (segment
    override allowed, rAX by address size).  #UD at CPL > 0 or with
    IA32_MISC_ENABLE[18] clear (CPUID.01H:ECX.MONITOR = 0), then the exit
    under "MONITOR exiting" (SDM 26.1.3; only #UD and privilege faults come
    before it, SDM 26.1.1), then #GP(0) for ECX != 0 (no extensions) and the
    faults of a one-byte read of the address (limit, paging, EPT)."""
    cdef uint64_t off, v, lin
    cdef int rc
    if c.cpl != 0 or not (c.misc_enable & MISC_ENABLE_MONITOR):
        return raise_ud(c)
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_MONITOR_EXITING):
        return insn_exit(c, d, EXIT_REASON_MONITOR, 0)
    if <uint32_t>c.regs[R_CX] != 0:
        return raise_gp0(c)
    off = c.regs[R_AX] & SIZE_MASK[d.asz]
    rc = mem_read(c, d.seg, off, 1, &v)
    if rc:
        return rc
    rc = seg_linear(c, d.seg, off, 1, ACC_READ, &lin)
    if rc:
        return rc
    c.monitor_addr = lin
    c.monitor_armed = 1
    return RC_OK


cdef int mwait(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 C9 MWAIT.  #UD at CPL > 0 or with IA32_MISC_ENABLE[18] clear,
    then the exit under "MWAIT exiting", whose qualification is 1 if
    monitoring was armed (SDM 28.2.1), then #GP(0) for ECX[31:1] != 0 (CPUID.05H:ECX reports extensions with
    interrupt break events only).  The model leaves the optimized state at
    once, as the SDM allows for implementation-dependent events: MWAIT
    disarms the monitor and continues."""
    if c.cpl != 0 or not (c.misc_enable & MISC_ENABLE_MONITOR):
        return raise_ud(c)
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_MWAIT_EXITING):
        return insn_exit(c, d, EXIT_REASON_MWAIT, 1 if c.monitor_armed else 0)
    if (<uint32_t>c.regs[R_CX]) >> 1:
        return raise_gp0(c)
    c.monitor_armed = 0
    return RC_OK


# --- XCR0: XGETBV, XSETBV (SDM Vol. 1 13.3, Vol. 2 XSETBV) --------------------

cdef int xgetbv(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 D0 XGETBV: EDX:EAX = XCR[ECX].  #UD with CR4.OSXSAVE = 0;
    #GP(0) for any ECX but 0 (XGETBV with ECX = 1 is not reported).  Any
    CPL; no VM exit."""
    if not (c.cr4 & CR4_OSXSAVE):
        return raise_ud(c)
    if <uint32_t>c.regs[R_CX] != 0:
        return raise_gp0(c)
    c.regs[R_AX] = c.xcr0 & 0xFFFFFFFFULL
    c.regs[R_DX] = c.xcr0 >> 32
    return RC_OK


cdef int xsetbv(Cpu* c, Insn* d) noexcept nogil:
    """0F 01 D1 XSETBV: XCR[ECX] = EDX:EAX.  #UD with CR4.OSXSAVE = 0, #GP(0)
    at CPL > 0 (virtual-8086 mode included), then the VM exit XSETBV always
    causes in non-root operation (SDM 26.1.2); then #GP(0) for ECX != 0, a
    bit the model does not support (CPUID.(EAX=0DH,ECX=0):EDX:EAX), XCR0[0]
    clear, or AVX without SSE."""
    cdef uint64_t v
    if not (c.cr4 & CR4_OSXSAVE):
        return raise_ud(c)
    if c.cpl != 0:
        return raise_gp0(c)
    if c.vmx.non_root:
        return insn_exit(c, d, EXIT_REASON_XSETBV, 0)
    v = (c.regs[R_AX] & 0xFFFFFFFFULL) | ((c.regs[R_DX] & 0xFFFFFFFFULL) << 32)
    if <uint32_t>c.regs[R_CX] != 0:
        return raise_gp0(c)
    if (v & ~(<uint64_t>XCR0_SUPPORTED)) or not (v & XCR0_X87) or \
            ((v & XCR0_AVX) and not (v & XCR0_SSE)):
        return raise_gp0(c)
    c.xcr0 = v
    return RC_OK


# --- INVPCID (66 0F 38 82; SDM Vol. 2 INVPCID) -----------------------------------

cdef int h_invpcid(Cpu* c, Insn* d) noexcept nogil:
    """INVPCID r32/r64, m128: invalidate by PCID, type in the register (0
    individual address, 1 single context, 2 all contexts with globals, 3 all
    but globals), descriptor in memory (PCID in bits 11:0, bits 63:12 zero,
    linear address in bits 127:64).  In non-root operation #UD unless
    "enable INVPCID" is 1, before anything else (SDM 26.3); #UD for a
    register operand and in virtual-8086 mode; #GP(0) at CPL > 0; then the
    exit under "INVLPG exiting" (SDM 26.1.3) with the instruction
    information of Table 28-9; then the type and the descriptor.  What each
    type drops is exactly what the SDM names (core/mmu.pxi, "The TLB"):
    type 0 the entries of the address in that PCID except global ones, type
    1 the PCID's non-global entries, type 2 everything, type 3 every
    non-global entry."""
    cdef uint64_t typ, off, lo, hi
    cdef int rc
    if not cpu_has(c, FEAT_INVPCID):
        return raise_ud(c)          # not in the CPU model (vtx/cpu_model.py)
    if c.vmx.non_root and not (c.vmx.ctl.proc2 & PROC2_ENABLE_INVPCID):
        return raise_ud(c)
    if d.mod == 3 or (c.rflags & F_VM):
        return raise_ud(c)
    if c.cpl != 0:
        return raise_gp0(c)
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_INVLPG_EXITING):
        return invpcid_exit(c, d)
    typ = get_reg(c, d.reg, 8 if c.long64 else 4)
    if typ > 3:
        return raise_gp0(c)
    off = ea_offset(c, d)
    rc = mem_read(c, d.seg, off, 8, &lo)
    if rc:
        return rc
    rc = mem_read(c, d.seg, (off + 8) & SIZE_MASK[d.asz], 8, &hi)
    if rc:
        return rc
    if lo >> 12:
        return raise_gp0(c)
    if typ == 0 and not is_canonical(hi):
        return raise_gp0(c)
    if typ <= 1 and (lo & 0xFFF) != 0 and not (c.cr4 & CR4_PCIDE):
        return raise_gp0(c)
    if typ == 0:
        tlb_invalidate_page(c, hi, <uint32_t>(lo & 0xFFF), 0)
    elif typ == 1:
        tlb_flush_pcid(c, <uint32_t>(lo & 0xFFF))
    elif typ == 2:
        tlb_flush(c)
    else:
        tlb_flush_nonglobal(c)
    return RC_OK
