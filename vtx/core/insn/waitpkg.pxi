# WAITPKG (SDM Vol. 2 UMONITOR, UMWAIT, TPAUSE): the user-level monitor and
# timed waits, and IA32_UMWAIT_CONTROL (E1H).  CPUID.(EAX=07H,ECX=0):ECX[5].
#
# The model leaves the optimized state at once: the SDM lets other
# implementation-dependent events end the wait, and the model's TSC counts
# retired instructions (docs/architecture.rst, decision 11), so a wait would
# stall virtual time for nothing.  The result is the one of an early wake-up:
# CF = 0 (the OS time limit of IA32_UMWAIT_CONTROL did not end the wait), the
# other status flags cleared; UMWAIT disarms the monitor.  Software that
# waits for a deadline (Linux's udelay with TPAUSE) reads the TSC and waits
# again, as it must on hardware.
#
# In VMX non-root operation (SDM Vol. 3C 25.6.2, 26.1.3): without "enable
# user wait and pause" all three are #UD; with it and "RDTSC exiting",
# UMWAIT and TPAUSE exit (reasons 67 and 68) with the instruction
# information of RDRAND and RDSEED (SDM 28.2.5: the source register in bits
# 6:3, the operand size in bits 12:11).  UMONITOR never exits.


cdef int h_waitpkg(Cpu* c, Insn* d) noexcept nogil:
    """0F AE /6 register forms: F3 UMONITOR r16/r32/r64, F2 UMWAIT r32, 66
    TPAUSE r32."""
    cdef uint64_t off, v, lin
    cdef uint32_t src
    cdef uint32_t info
    cdef int rc
    if not cpu_has(c, FEAT_WAITPKG) or \
            (c.vmx.non_root and not (c.vmx.ctl.proc2 & PROC2_ENABLE_USER_WAIT_AND_PAUSE)):
        return raise_ud(c)
    if d.rep == 0xF3:
        # UMONITOR: the register holds the offset (its size is the address
        # size), in DS unless overridden; the faults of a one-byte read.
        off = c.regs[d.rm & 15] & SIZE_MASK[d.asz]
        rc = mem_read(c, d.seg, off, 1, &v)
        if rc:
            return rc
        rc = seg_linear(c, d.seg, off, 1, ACC_READ, &lin)
        if rc:
            return rc
        c.monitor_addr = lin
        c.monitor_armed = 1
        return RC_OK
    # UMWAIT and TPAUSE read the TSC: CR4.TSD makes them privileged, a
    # fault that comes before the exit (SDM 26.1.1).
    if (c.cr4 & CR4_TSD) and c.cpl != 0:
        return raise_gp0(c)
    if c.vmx.non_root and (c.vmx.ctl.proc & PROC_RDTSC_EXITING):
        info = ((<uint32_t>d.rm & 15) << 3) | (<uint32_t>(2 if d.osz == 8 else 1) << 11)
        return insn_exit_info(c, d, EXIT_REASON_UMWAIT if d.rep == 0xF2 else EXIT_REASON_TPAUSE, 0, info)
    src = <uint32_t>c.regs[d.rm & 15]
    if src >> 1:
        return raise_gp0(c)         # bit 0 selects C0.1 or C0.2; bits 31:1 are reserved
    if d.rep == 0xF2:
        c.monitor_armed = 0
    c.rflags &= ~(<uint64_t>(F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF))
    return RC_OK
