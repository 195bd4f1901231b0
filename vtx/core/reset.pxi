# The processor's power-on (RESET) state, SDM Vol. 3A 10.1.1 ("Processor
# State After Reset"), Table 10-1: what vcpu.reset() and cpu.reset() give.
# The state that lives in the Cpu struct is set here; the hosted VCpu keeps
# the rest of it in the VMCS guest-state area (VCpuBase.reset in _core.pyx),
# the bare Processor in the struct too (Processor.reset in core/bare.pxi).

cdef void reset_common(Cpu* c) noexcept nogil:
    """Registers Table 10-1 gives a power-up value that are not in the VMCS
    guest-state area: the general registers (EDX = the processor signature,
    CPUID.01H:EAX; EAX = 0, no BIST), CR2, DR0-DR3 and DR6, the x87 FPU
    (control word 0040H, tag word 5555H: every register +0.0), MXCSR 1F80H,
    the XMM registers, XCR0 = 1, IA32_XSS and IA32_PASID 0, EFER, PAT, and the event state."""
    memset(c.regs, 0, sizeof(c.regs))
    c.regs[R_DX] = c.signature
    c.cr2 = 0
    c.cr8 = 0
    memset(c.dr, 0, sizeof(c.dr))
    c.dr6 = 0xFFFF0FF0ULL
    c.dr7 = 0x400
    memset(&c.fpu, 0, sizeof(c.fpu))
    c.fpu.fcw = 0x0040
    c.fpu.ftw = 0x5555
    c.fpu.mxcsr = 0x1F80
    c.xcr0 = 1
    c.xss = 0
    c.pasid = 0
    c.umwait_control = 0
    c.efer = 0
    c.pat = 0x0007040600070406ULL
    c.sysenter_cs = c.sysenter_esp = c.sysenter_eip = 0
    c.star = c.lstar = c.cstar = c.fmask = c.kernel_gs_base = c.tsc_aux = 0
    c.lf_kind = LF_NONE
    c.activity = 0
    c.interruptibility = 0
    c.monitor_armed = 0
    memset(c.irr, 0, sizeof(c.irr))
    c.nmi_pending = 0


cdef void reset_segments(Cpu* c) noexcept nogil:
    """Table 10-1: CS selector F000H, base FFFF0000H, limit FFFFH, a present
    readable accessed code segment; the data segments 0 / 0 / FFFFH, present
    writable accessed; GDTR and IDTR base 0 limit FFFFH; LDTR and TR selector
    0, base 0, limit FFFFH, present (an LDT, and a busy TSS: the type VM entry
    takes in real mode with "unrestricted guest", SDM 27.3.1.2)."""
    cdef int i
    for i in range(6):
        c.seg[i].sel = 0
        c.seg[i].base = 0
        c.seg[i].limit = 0xFFFF
        c.seg[i].ar = 0x93
    c.seg[S_CS].sel = 0xF000
    c.seg[S_CS].base = 0xFFFF0000ULL
    c.seg[S_CS].ar = 0x9B
    c.seg[S_LDTR].sel = 0
    c.seg[S_LDTR].base = 0
    c.seg[S_LDTR].limit = 0xFFFF
    c.seg[S_LDTR].ar = 0x82
    c.seg[S_TR].sel = 0
    c.seg[S_TR].base = 0
    c.seg[S_TR].limit = 0xFFFF
    c.seg[S_TR].ar = 0x8B
    c.gdtr_base = 0
    c.gdtr_limit = 0xFFFF
    c.idtr_base = 0
    c.idtr_limit = 0xFFFF
