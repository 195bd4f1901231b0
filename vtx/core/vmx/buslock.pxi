# VMM bus-lock detection (secondary control 30; exit reason 74; docs/
# architecture.rst, "Bus-lock detection").
#
# A bus lock is a locked access the cache cannot keep to itself: a split
# lock (a locked operand that crosses a 64-byte cache line, on write-back
# memory) or a locked access to uncacheable memory.  The model's RAM is
# write-back and it has no uncacheable memory a locked access reaches (MMIO
# is the host's to emulate), so a bus lock here is a split lock.  The
# locked read-modify-write instructions (LOCK-prefixed, and XCHG with
# memory, implicitly locked) report their operand through lock_note when
# they have read it; with the control set in VMX non-root operation the
# exit follows the instruction (trap-like: RIP is the next instruction's),
# at the boundary where the APIC's trap-like work is done (apic_boundary).
# An exit that comes first instead (an APIC-write exit at the same
# boundary, an exception the last instruction raised) reports the bus lock
# in bit 26 of its exit reason (SDM 28.2.1), and the bus-lock exit is not
# taken.

cdef enum:
    EXIT_REASON_FLAG_BUS_LOCK = 1 << 26


cdef inline void lock_note(Cpu* c, int s, uint64_t off, int size) noexcept nogil:
    """A locked read-modify-write of [off, off + size) in segment s has
    read its operand: with "VMM bus-lock detection", a split lock makes the
    bus-lock exit pending after the instruction."""
    cdef uint64_t lin
    if not c.vmx.non_root or not (c.vmx.ctl.proc2 & PROC2_VMM_BUS_LOCK_DETECTION):
        return
    if c.long64:
        lin = off + (c.seg[s].base if s == S_FS or s == S_GS else 0)
    else:
        lin = (c.seg[s].base + off) & 0xFFFFFFFFULL
    if (lin & 63) + <uint64_t>size > 64:
        apic_defer(c, TRAP_BUS_LOCK)
