# XSAVES and XRSTORS (SDM Vol. 1 13.11 and 13.12; Vol. 2 XSAVES, XRSTORS):
# the supervisor forms of the XSAVE feature set.  They manage the components
# of XCR0 | IA32_XSS in the compacted format only, at CPL 0.  The model's one
# supervisor component is PASID state (IA32_XSS[10], the IA32_PASID MSR),
# offered by the CPU model's XSS_PASID feature; the ENQCMD/ENQCMDS
# instructions that consume the PASID need a device that accepts enqueue
# stores and are not modelled (CPUID.(EAX=07H,ECX=0):ECX[29] = 0), so the
# MSR is state a supervisor saves and restores, nothing more.
#
# In VMX non-root operation (SDM Vol. 3C 25.6.2, 25.6.20, 26.1.3): without
# "enable XSAVES/XRSTORS" both are #UD; with it, each exits (reasons 63 and
# 64) when EDX:EAX, IA32_XSS and the XSS-exiting bitmap share a bit.  IA32_XSS
# is not in the VMCS: the guest's value is the processor's, as on hardware,
# and a hypervisor that gives its guest another one switches it itself.
# The area layout, XINUSE and the shared checks are core/insn/fxsave.pxi's
# (xsave_do, xrstor_do, xsave_avail); docs/architecture.rst, "XSAVES,
# XRSTORS and the XSS-exiting bitmap", places them in the picture.


cdef inline uint64_t xss_supported(Cpu* c) noexcept nogil:
    """The IA32_XSS bits that may be set: CPUID.(EAX=0DH,ECX=1):EDX:ECX."""
    return <uint64_t>XSS_PASID if cpu_has(c, FEAT_XSS_PASID) else 0


cdef int xss_exit(Cpu* c, Insn* d, uint32_t reason) noexcept nogil:
    """Stage the exit of XSAVES (63) or XRSTORS (64): the exit qualification
    is the memory operand's displacement (SDM 28.2.1) and the instruction
    information has the format of VMCLEAR, VMPTRLD, VMPTRST and VMXON
    (Table 28-13: the operand, bit 10 clear; SDM 28.2.5)."""
    return insn_exit_info(c, d, reason, insn_qual_disp(c, d), vmx_mem_info(d))


cdef int h_xsaves(Cpu* c, Insn* d) noexcept nogil:
    """0F C7 /5 XSAVES mem (XSAVES64 with REX.W): no register form, and
    no F2/F3 form."""
    if d.mod == 3 or d.rep:
        return raise_ud(c)
    return xsave_do(c, d, 3)


cdef int h_xrstors(Cpu* c, Insn* d) noexcept nogil:
    """0F C7 /3 XRSTORS mem (XRSTORS64 with REX.W): no register form, and
    no F2/F3 form."""
    if d.mod == 3 or d.rep:
        return raise_ud(c)
    return xrstor_do(c, d, 1)


cdef void init_xsaves_tables() noexcept:
    GRP[G_0FC7][3] = h_xrstors
    GRP[G_0FC7][5] = h_xsaves
