# Sub-page write permissions for EPT (SDM Vol. 3C 29.3.4 of the pinned
# edition; docs/architecture.rst, "Sub-page write permissions").
#
# With the secondary control "sub-page write permissions for EPT" (bit 23),
# a write that EPT refuses only because its 4-KByte leaf withholds write
# permission (the cumulative read permission is 1) is looked up again when
# that leaf sets bit 61 (SPP): the SPP table, rooted at the SPP-table pointer
# (VMCS 2030H) and indexed like EPT by guest-physical address bits 47:12,
# gives one 64-bit write-permission vector per page, bit 2i for the 128-byte
# sub-page i (the odd bits are reserved).  A set bit lets the write through;
# a clear one leaves the EPT violation.  A non-leaf SPP entry that is not
# present (bit 0 = 0) is an SPPT miss, one with a reserved bit (11:1 and
# beyond the physical-address width) or a leaf with an odd bit set an SPPT
# misconfiguration: both are "SPP-related event" VM exits (reason 66),
# qualification bit 11 set for a miss, with the guest-physical and
# guest-linear addresses.  Accesses to guest paging structures are never
# eligible.  A write is looked up at the sub-page of its first byte in each
# page (as Bochs does); the TLB never gets write permission for such a
# page, so every write comes back here.

cdef enum:
    SPP_QUAL_MISS = 1 << 11
    EPT_LEAF_SPP = 61               # bit 61 of an EPT PTE


cdef int spp_exit(Cpu* c, uint64_t gpa, uint64_t lin, uint64_t qual) noexcept nogil:
    vmexit_event(c, EXIT_REASON_SPP_RELATED_EVENT, qual)
    c.vmx.x_gpa = gpa
    c.vmx.x_gla = lin
    c.vmx.x_gla_valid = 1
    return RC_VMEXIT


cdef int spp_write_allowed(Cpu* c, uint64_t gpa, uint64_t lin, int* allowed) noexcept nogil:
    """Walk the SPP table for gpa: allowed[0] = the write-permission bit of
    gpa's sub-page, or an SPP-related exit staged (RC_VMEXIT)."""
    cdef uint64_t table = c.vmx.ctl.spptp & PHYS_MASK
    cdef uint64_t entry = 0
    cdef uint64_t addr
    cdef uint8_t* p
    cdef int level
    for level in range(4, 0, -1):
        addr = table + ((gpa >> (12 + 9 * (level - 1))) & 511) * 8
        p = hpa_ptr(c, addr, 8, 0)
        if p == NULL:
            c.bad_addr = addr
            c.bad_write = 0
            return RC_BAD_PHYS
        memcpy(&entry, p, 8)
        if level == 1:
            break
        if not (entry & 1):
            return spp_exit(c, gpa, lin, SPP_QUAL_MISS)
        if entry & ~(PHYS_MASK | 1ULL):
            return spp_exit(c, gpa, lin, 0)
        table = entry & PHYS_MASK
    if entry & 0xAAAAAAAAAAAAAAAAULL:
        return spp_exit(c, gpa, lin, 0)
    allowed[0] = <int>((entry >> (2 * ((gpa & 0xFFF) >> 7))) & 1)
    return RC_OK
