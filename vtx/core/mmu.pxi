# Memory: host-physical slots, linear -> guest-physical (paging), guest-physical
# -> host-physical (EPT), the TLB that caches the whole chain as a host pointer,
# and the segmented accessors the instruction handlers use.

from libc.string cimport memcpy, memset

# c.mmio_gpa of an access to the APIC-access page (core/vmx/apicv.pxi): no
# guest-physical address has bit 63.
cdef uint64_t MMIO_APIC_PAGE = 1ULL << 63

cdef enum:
    ACC_READ = 0
    ACC_WRITE = 1
    ACC_FETCH = 2

# TLB permission bits: supervisor read/write/fetch, user read/write/fetch.
cdef enum:
    TLB_R = 1
    TLB_W = 2
    TLB_X = 4
    TLB_UR = 8
    TLB_UW = 16
    TLB_UX = 32
    # Writable, but the page holds decoded code: a write must first look at
    # which 64-byte chunks of the page hold it (code_write_ok).  They replace
    # TLB_W / TLB_UW, so a write never takes the inline fast path there.
    TLB_WC = 64
    TLB_UWC = 128

cdef enum:
    TLB_ENTRIES = 4096
    MAXPHYADDR = 39
    EPERM_ROM = 8           # gpa_to_host: the page is in a ROM slot (writes are ignored)

cdef uint64_t PHYS_MASK = ((1ULL << MAXPHYADDR) - 1) & ~0xFFFULL
cdef uint64_t RSVD_HIGH = (((1ULL << 52) - 1) & ~((1ULL << MAXPHYADDR) - 1))
# PAE paging reserves more than 4-level paging does (SDM Vol. 3A 4.4.2, Tables
# 4-8 to 4-11): a PDPTE's bits 63:MAXPHYADDR, 8:5 and 2:1; a PDE's or PTE's
# bits 62:MAXPHYADDR (bit 63 is XD).  4-level paging ignores bits 62:52.
cdef uint64_t RSVD_PDPTE = RSVD_HIGH | (0xFFFULL << 52) | 0x1E6
cdef uint64_t RSVD_PAE = RSVD_HIGH | (0x7FFULL << 52)
# 32-bit paging, 4 MiB page with PSE-36: bits 20:13 hold physical address
# bits 39:32, so those beyond MAXPHYADDR are reserved, and bit 21 always (SDM
# Vol. 3A 4.3, Table 4-4).
cdef uint64_t RSVD_PDE4M = (0x3FFULL << 12) & ~((1ULL << (13 + MAXPHYADDR - 32)) - 1) & 0x3FE000


# Writes to a ROM slot land here and are forgotten (gpa_to_host): a page and
# the 16 bytes an access may run past it.  Never read.
cdef uint8_t ROM_SINK[4096 + 16]


cdef inline uint8_t* hpa_ptr(Cpu* c, uint64_t hpa, uint64_t size, int guest_only) noexcept nogil:
    """Host pointer for [hpa, hpa+size) if one slot backs all of it (the
    last slot first: a ROM mapped over RAM wins, as in gpa_to_host)."""
    cdef int i
    cdef Slot* s
    for i in range(c.nslots - 1, -1, -1):
        s = &c.slots[i]
        if hpa >= s.base and hpa - s.base + size <= s.size and size <= s.size:
            if guest_only and not s.guest_visible:
                return NULL
            return s.ptr + (hpa - s.base)
    return NULL


# --- The TLB (docs/architecture.rst, "The TLB") ----------------------------------
# One entry per 4 KiB linear page, direct-mapped, each holding the host
# pointer and the permissions its walk computed (an entry of a larger page
# maps its 4 KiB part and remembers the page size in lshift).  An entry is
# used inline while its gen equals Cpu.tlb_gen; every flush and mode change
# advances tlb_gen, which also ends the run loop's cached fetch page and block
# chains.  What a flush spares is decided when a stale entry is next looked
# at (tlb_revalidate): it is valid again if no flush of everything happened
# since it was filled (epoch) and it is global, or it belongs to the current
# PCID and neither its PCID's generation nor tlb_ngen moved.  So:
# - MOV to CR3 keeps global entries (SDM Vol. 3A 4.10.4.1) and, with
#   CR4.PCIDE = 1, the entries of the other PCIDs, and all entries of the new
#   PCID when bit 63 is set;
# - INVLPG and INVPCID drop exactly what the SDM names (4.10.4.1, INVPCID);
# - a change of the paging controls the permissions were computed under
#   (CR0.PG/WP, CR4.PSE/PAE/PGE/PCIDE/SMEP/SMAP, EFER.NXE/LMA) drops
#   everything, which the SDM requires for PGE, PCIDE 1 -> 0, PAE, PG and
#   SMEP 0 -> 1 and allows for the others (a processor may always invalidate
#   more than asked).

cdef inline uint32_t tlb_pcid(Cpu* c) noexcept nogil:
    """The current PCID: CR3[11:0] with CR4.PCIDE = 1, else 000H (SDM 4.10.1)."""
    return <uint32_t>(c.cr3 & 0xFFF) if (c.cr4 & CR4_PCIDE) else 0


cdef inline TlbEntry* tlb_slot(Cpu* c, uint64_t lin) noexcept nogil:
    """The entry for lin: direct-mapped by the page number XOR a salt of the
    current PCID (Cpu.tlb_salt, tlb_set_salt), so the same page in two
    PCIDs has two entries and a switch back finds its own.  Correctness
    never depends on the salt: an entry is used only when its page, its
    generation and (stale) its PCID match."""
    return &c.tlb[((lin >> 12) ^ c.tlb_salt) & (TLB_ENTRIES - 1)]


cdef inline void tlb_set_salt(Cpu* c) noexcept nogil:
    c.tlb_salt = (<uint64_t>tlb_pcid(c) * 0x9E5ULL) & (TLB_ENTRIES - 1)


cdef inline uint64_t tlb_config(Cpu* c) noexcept nogil:
    return ((c.cr0 & (CR0_PG | CR0_WP)) |
            (c.cr4 & (CR4_PSE | CR4_PAE | CR4_PGE | CR4_PCIDE | CR4_SMEP | CR4_SMAP)) |
            ((c.efer & (EFER_NXE | EFER_LMA)) << 32))


cdef inline void tlb_flush(Cpu* c) noexcept nogil:
    """Drop every entry, global ones and those of every PCID."""
    c.acct.tlb_flushes += 1
    c.tlb_gen += 1
    c.tlb_epoch += 1
    c.tlb_large = 0
    c.tlb_cfg = tlb_config(c)


cdef inline void tlb_flush_pcid(Cpu* c, uint32_t pcid) noexcept nogil:
    """Drop the non-global entries of one PCID."""
    c.acct.tlb_flushes += 1
    c.pcid_gen[pcid & 0xFFF] += 1
    c.tlb_gen += 1


cdef inline void tlb_flush_nonglobal(Cpu* c) noexcept nogil:
    """Drop the non-global entries of every PCID (INVPCID type 3)."""
    c.acct.tlb_flushes += 1
    c.tlb_ngen += 1
    c.tlb_gen += 1


# Cpu.tlb_large: which entries INVLPG must look for outside the slot of its
# own page.  An entry of a larger page (split into 4 KiB entries, each in its
# own page's slot) sets the bit of its region, (lin >> lshift) ^ lshift mod 16;
# a global entry with CR4.PCIDE (it may sit in another PCID's slot) sets bit
# 31, which means "look always".  A set bit may be a collision: the look then
# finds nothing, as before this summary, which only saves looking where no
# such entry can be (INVLPG of a 4 KiB page in a guest that maps its kernel
# with large pages: 4096 entries read per INVLPG otherwise).  Zero after a
# flush of everything.
cdef enum:
    TLB_LARGE_ALWAYS = 1 << 31


cdef inline uint32_t tlb_large_bit(uint64_t lin, int lshift) noexcept nogil:
    if lshift != 21 and lshift != 22 and lshift != 30:
        return TLB_LARGE_ALWAYS         # (no other large page size exists)
    return 1U << (((lin >> lshift) ^ <uint64_t>lshift) & 15)


cdef void tlb_invalidate_page(Cpu* c, uint64_t lin, uint32_t pcid, int globals_too) noexcept nogil:
    """Drop the entries that translate linear address lin in PCID pcid, and
    with globals_too the global ones whatever PCID filled them (INVLPG: the
    current PCID and globals, SDM Vol. 3A 4.10.4.1), or without them
    (INVPCID type 0).  An entry of a larger page is one of the 4 KiB entries
    the model split it into: all of them go."""
    cdef TlbEntry* e = tlb_slot(c, lin)
    cdef int i
    if e.page == (lin >> 12) and (globals_too or not e.glob) and (e.glob or e.pcid == pcid):
        e.gen = 0
        e.epoch = 0
    if (c.tlb_large & (TLB_LARGE_ALWAYS | tlb_large_bit(lin, 21) | tlb_large_bit(lin, 22) |
                       tlb_large_bit(lin, 30))) or pcid != tlb_pcid(c):
        # Other PCIDs' entries for the page (global ones too) sit in other
        # slots, and a large page's in many: look at them all.
        for i in range(TLB_ENTRIES):
            e = &c.tlb[i]
            if e.epoch == c.tlb_epoch and ((e.page << 12) >> e.lshift) == (lin >> e.lshift) and \
                    (globals_too or not e.glob) and (e.glob or e.pcid == pcid):
                e.gen = 0
                e.epoch = 0
    c.tlb_gen += 1


cdef inline int tlb_revalidate(Cpu* c, TlbEntry* e, uint64_t page) noexcept nogil:
    """Whether a stale entry for page survived the flushes since it was filled
    (see above); if so it is made current again."""
    cdef uint32_t pcid
    if e.page != page or e.epoch != c.tlb_epoch:
        return 0
    if not e.glob:
        pcid = tlb_pcid(c)
        if e.pcid != pcid or e.pgen != c.pcid_gen[pcid] or e.ngen != c.tlb_ngen:
            return 0
    e.gen = c.tlb_gen
    return 1


cdef void icache_invalidate_page(Cpu* c, uint64_t hpa) noexcept nogil:
    """Drop every decoded instruction that starts in the RAM page at hpa
    (docs/architecture.rst, decision 4: a write that hits a code page).  The cache is
    indexed by host address, so one page is one run of slots."""
    cdef uint64_t page = <uint64_t>(<size_t>(c.ram + (hpa & ~0xFFFULL)))
    cdef uint64_t i, start, n
    cdef Insn* d
    spend(c, 64)            # a few microseconds: see spend() in state.pxi
    if c.icache_mask >= 0xFFF:
        start = page & c.icache_mask
        n = 4096
    else:
        start = 0
        n = c.icache_mask + 1
    for i in range(n):
        d = &c.icache[start + i]
        if ((d.tag & 0xFFFFFFFFFFFFFFULL) & ~0xFFFULL) == page:
            d.tag = 0


cdef inline uint32_t withhold_write(uint32_t perm) noexcept nogil:
    """TLB permissions for a page with decoded code: writes go to the chunk check."""
    if perm & TLB_W:
        perm = (perm & ~(<uint32_t>TLB_W)) | TLB_WC
    if perm & TLB_UW:
        perm = (perm & ~(<uint32_t>TLB_UW)) | TLB_UWC
    return perm


cdef void mark_code_page(Cpu* c, uint64_t hpa, int length) noexcept nogil:
    """Remember that a decoded instruction occupies [hpa, hpa + length) (one
    page), by page and by 64-byte chunk, and withhold write permission from
    the TLB entries that map the page, so that a write to it takes the path
    that checks the chunks (code_write_ok) and drops the decoded code it hits
    (docs/architecture.rst, "Self-modifying code")."""
    cdef uint64_t pg
    cdef uint64_t first, last, bits
    cdef int i
    if hpa >= c.ram_size:
        return
    pg = hpa >> 12
    first = (hpa & 0xFFF) >> 6
    last = ((hpa & 0xFFF) + <uint64_t>length - 1) >> 6
    if last > 63:
        last = 63
    bits = ((~0ULL) >> (63 - last)) & ((~0ULL) << first)
    cdef int k
    cdef TlbEntry* tlb
    c.code_bits[pg] |= bits
    if c.code_pages[pg]:
        return
    c.code_pages[pg] = 1
    # Stale entries too: one may be made current again (tlb_revalidate).
    # Every processor's: another one's write must reach the chunk check too
    # (docs/architecture.rst, "Several vCPUs").
    for k in range(c.ncpus):
        tlb = c.cpus[k].tlb
        for i in range(TLB_ENTRIES):
            if tlb[i].hpa == (hpa & ~0xFFFULL):
                tlb[i].perm = withhold_write(tlb[i].perm)


cdef inline void code_page_written(Cpu* c, uint64_t hpa) noexcept nogil:
    """A write reaches decoded code in the RAM page at hpa: drop the page's
    decoded instructions.  Its TLB entries keep the chunk check until they
    are refilled; with no code marked it lets every write through.  The
    tracking is shared by the machine's processors, so the decoded code of
    every one of them goes (docs/architecture.rst, "Several vCPUs")."""
    cdef int k
    for k in range(c.ncpus):
        icache_invalidate_page(c.cpus[k], hpa)
        c.cpus[k].code_writes += 1     # the block running now, if any
    c.code_pages[hpa >> 12] = 0
    c.code_bits[hpa >> 12] = 0
    c.code_gen[hpa >> 12] += 1         # the page's translated blocks, in every processor


cdef inline int code_write_ok(Cpu* c, uint64_t hpa) noexcept nogil:
    """Whether a write of up to 16 bytes at hpa (within its page) misses every
    64-byte chunk that holds decoded code.  Callers write at most 8 bytes
    per translation (lin_write, stack_write); 16 leaves a margin."""
    cdef uint64_t off = hpa & 0xFFF
    cdef uint64_t end = off + 15
    cdef uint64_t bits = c.code_bits[hpa >> 12]
    if end > 0xFFF:
        end = 0xFFF
    return not ((bits >> (off >> 6)) & 1) and not ((bits >> (end >> 6)) & 1)


# ---------------------------------------------------------------------------
# Faults and exits raised by the MMU

cdef inline int raise_exc(Cpu* c, int vector, int has_error, uint32_t error) noexcept nogil:
    c.exc_vector = vector
    c.exc_has_error = has_error
    c.exc_error = error
    c.exc_type = 3
    return RC_EXCEPTION


cdef inline int raise_gp0(Cpu* c) noexcept nogil:
    return raise_exc(c, EXC_GP, 1, 0)


cdef inline int raise_ud(Cpu* c) noexcept nogil:
    return raise_exc(c, EXC_UD, 0, 0)


cdef inline int raise_pf(Cpu* c, uint64_t lin, uint32_t error) noexcept nogil:
    c.exc_cr2 = lin
    return raise_exc(c, EXC_PF, 1, error)


# ---------------------------------------------------------------------------
# EPT (SDM Vol. 3 29.3)

cdef int pml_log(Cpu* c, uint64_t gpa) noexcept nogil:
    """Page-modification logging (SDM Vol. 3C 29.3.6): the processor is about
    to set the dirty flag of the EPT entry that maps gpa; with "enable PML"
    it first writes the 4 KiB-aligned guest-physical address into the log at
    PML_ADDRESS + 8 * PML_INDEX and decrements the index.  An index outside
    0-511 is a page-modification-log-full VM exit (reason 62) instead, and
    the access does not happen.  A log no memory backs loses the entry."""
    cdef uint64_t idx = vr(c, VMCS_OFF_PML_INDEX, 2)
    cdef uint64_t v = gpa & ~0xFFFULL
    cdef uint8_t* p
    if idx > 511:
        return vmexit_event(c, EXIT_REASON_PAGE_MODIFICATION_LOG_FULL, 0)
    p = hpa_ptr(c, (vr(c, VMCS_OFF_PML_ADDRESS, 8) & PHYS_MASK) + 8 * idx, 8, c.vmx.host_x86)
    if p != NULL:
        memcpy(p, &v, 8)
        if c.dirty_log:
            dirty_ptr(c, p)
    vw(c, VMCS_OFF_PML_INDEX, 2, (idx - 1) & 0xFFFF)
    return RC_OK


cdef inline void ept_set_flag(Cpu* c, uint8_t* p, uint64_t entry, uint64_t flag) noexcept nogil:
    """Set the accessed (bit 8) and/or dirty (bit 9) flags `flag` in the EPT
    entry at p, whose value is `entry`."""
    if (entry & flag) != flag:
        entry |= flag
        memcpy(p, &entry, 8)
        if c.dirty_log:
            dirty_ptr(c, p)


cdef int ept_translate(Cpu* c, uint64_t gpa, int kind, uint64_t lin, int lin_valid,
                       int final_access, uint64_t* hpa_out, uint32_t* perm_out) noexcept nogil:
    """Translate a guest-physical address through the EPT paging structures.

    On a not-present or forbidden access stage an EPT-violation exit (reason
    48) with the qualification of SDM 28.2.1 Table 28-7; on a malformed entry
    an EPT-misconfiguration exit (reason 49).

    With EPTP bit 6 (accessed and dirty flags, SDM 29.3.5) every entry used
    gets its accessed flag and the leaf of a write its dirty flag (after
    page-modification logging, pml_log); an access to a guest paging
    structure counts as a write (29.3.3.2).  A translation for a read or a
    fetch whose leaf is not dirty yet does not hand out write permission,
    so the TLB sends the first write back here to set the flag."""
    cdef uint64_t table = c.vmx.ctl.eptp & PHYS_MASK
    cdef uint64_t entry = 0, qual
    cdef uint8_t* p
    cdef uint8_t* used[4]
    cdef uint64_t used_e[4]
    cdef int nused = 0
    cdef int level, shift, rc
    cdef uint32_t perm = 7
    cdef uint64_t page_mask
    cdef int ad = (c.vmx.ctl.eptp & 0x40) != 0
    if ad and not final_access:
        kind = ACC_WRITE
    for level in range(4, 0, -1):
        shift = 12 + 9 * (level - 1)
        p = hpa_ptr(c, table + ((gpa >> shift) & 511) * 8, 8, 0)
        if p == NULL:
            c.bad_addr = table + ((gpa >> shift) & 511) * 8
            c.bad_write = 0
            return RC_BAD_PHYS
        memcpy(&entry, p, 8)
        used[nused] = p
        used_e[nused] = entry
        nused += 1
        if (entry & 7) == 0:
            perm = 0
            break
        # Misconfigurations (SDM 29.3.3.1): write without read, execute-only
        # (not supported, IA32_VMX_EPT_VPID_CAP bit 0 = 0), reserved bits.
        if (entry & 3) == 2 or (entry & 7) == 4 or (entry & RSVD_HIGH):
            c.vmx.x_gpa = gpa
            vmexit_event(c, EXIT_REASON_EPT_MISCONFIGURATION, 0)
            c.vmx.x_gpa = gpa
            return RC_VMEXIT
        perm &= <uint32_t>(entry & 7)
        if level == 4 and (entry & 0x80):
            c.vmx.x_gpa = gpa
            vmexit_event(c, EXIT_REASON_EPT_MISCONFIGURATION, 0)
            c.vmx.x_gpa = gpa
            return RC_VMEXIT
        if level == 1 or ((level == 3 or level == 2) and (entry & 0x80)):
            # A leaf: memory types 2, 3 and 7 are reserved, and so are bits
            # 20:12 of a 2 MiB page and 29:12 of a 1 GiB page (SDM 29.3.3.1).
            if ((entry >> 3) & 7) in (2, 3, 7) or \
                    (level > 1 and (entry & ((1ULL << (12 + 9 * (level - 1))) - 1) & ~0xFFFULL)):
                vmexit_event(c, EXIT_REASON_EPT_MISCONFIGURATION, 0)
                c.vmx.x_gpa = gpa
                return RC_VMEXIT
            break
        if (entry & 0x78) != 0:   # bits 6:3 reserved in non-leaf entries
            vmexit_event(c, EXIT_REASON_EPT_MISCONFIGURATION, 0)
            c.vmx.x_gpa = gpa
            return RC_VMEXIT
        table = entry & PHYS_MASK
    cdef uint32_t need = 1 if kind == ACC_READ else (2 if kind == ACC_WRITE else 4)
    cdef int spp_ok = 0
    if perm != 0 and not (perm & need) and kind == ACC_WRITE and final_access and lin_valid and \
            level == 1 and (perm & 3) == 1 and ((entry >> EPT_LEAF_SPP) & 1) and \
            (c.vmx.ctl.proc2 & PROC2_SUB_PAGE_WRITE_PERMISSIONS):
        # [SPP] A write to a read-only 4-KByte page with sub-page write
        # permissions (core/vmx/spp.pxi): the TLB entry stays read-only.
        rc = spp_write_allowed(c, gpa, lin, &spp_ok)
        if rc:
            return rc
    if (perm == 0 or not (perm & need)) and not spp_ok:
        qual = (1ULL if kind == ACC_READ else 0) | (2ULL if kind == ACC_WRITE else 0) | \
               (4ULL if kind == ACC_FETCH else 0) | (<uint64_t>perm << 3)
        vmexit_event(c, EXIT_REASON_EPT_VIOLATION, qual)
        if lin_valid:
            c.vmx.x_qual |= 1ULL << 7
            if final_access:
                c.vmx.x_qual |= 1ULL << 8
            c.vmx.x_gla = lin
            c.vmx.x_gla_valid = 1
        c.vmx.x_gpa = gpa
        return RC_VMEXIT
    if ad:
        if kind == ACC_WRITE and not (entry & 0x200):
            if c.vmx.ctl.proc2 & PROC2_ENABLE_PML:
                rc = pml_log(c, gpa)
                if rc:
                    return rc
            ept_set_flag(c, used[nused - 1], entry, 0x300)
        for level in range(nused - 1):
            ept_set_flag(c, used[level], used_e[level], 0x100)
        ept_set_flag(c, used[nused - 1], entry | (0x200 if kind == ACC_WRITE else 0), 0x100)
        if not (entry & 0x200) and kind != ACC_WRITE:
            perm &= ~2U
    page_mask = (1ULL << shift) - 1
    hpa_out[0] = (entry & PHYS_MASK & ~page_mask) | (gpa & page_mask)
    perm_out[0] = perm
    return RC_OK


cdef int hpa_cached(Cpu* c, uint64_t hpa) noexcept nogil:
    """Whether code at hpa may stay decoded (the slot's `cached`)."""
    cdef int i
    cdef Slot* s
    for i in range(c.nslots - 1, -1, -1):
        s = &c.slots[i]
        if hpa >= s.base and hpa - s.base < s.size:
            return s.cached
    return 0


# Dirty-page logging (docs/architecture.rst, "Memory slots and MMIO"), as a
# hypervisor does it with write protection: while a slot logs, a TLB entry
# for one of its pages gets write permission only once the page is marked
# dirty, so the first guest write to a clean page takes the slow path, which
# marks it.  Reading the log clears it and flushes the TLB.  The processor's
# own writes to paging structures (accessed and dirty flags) are guest writes
# too and are logged where they land.

cdef inline void dirty_mark(Slot* s, uint64_t off) noexcept nogil:
    s.dirty[off >> 18] |= 1ULL << ((off >> 12) & 63)


cdef int dirty_note(Cpu* c, uint64_t hpa, int kind) noexcept nogil:
    """For translate_slow: mark the page dirty on a write; return 1 when
    the TLB entry must not get write permission (a clean logged page)."""
    cdef int i
    cdef Slot* s
    for i in range(c.nslots - 1, -1, -1):
        s = &c.slots[i]
        if hpa >= s.base and hpa - s.base < s.size:
            if s.dirty == NULL:
                return 0
            if kind == ACC_WRITE:
                dirty_mark(s, hpa - s.base)
                return 0
            return not ((s.dirty[(hpa - s.base) >> 18] >> (((hpa - s.base) >> 12) & 63)) & 1)
    return 0


cdef void dirty_ptr(Cpu* c, uint8_t* p) noexcept nogil:
    """Mark the page of host pointer p dirty if a logging slot holds it."""
    cdef int i
    cdef Slot* s
    for i in range(c.nslots):
        s = &c.slots[i]
        if s.dirty != NULL and p >= s.ptr and p < s.ptr + s.size:
            dirty_mark(s, <uint64_t>(p - s.ptr))
            return


cdef int gpa_is_mmio(Cpu* c, uint64_t gpa, int kind) noexcept nogil:
    """Whether a guest access to gpa is MMIO: a device claims the address and
    no guest-visible slot backs it, or it is a write to read-only memory whose
    writes go to the host.  (The hosted hypervisor's EPT maps each slot at
    its own address.)  Anything else that no slot backs stays what it is on
    the processor: an EPT violation (or, without EPT, RC_BAD_PHYS)."""
    cdef int i
    cdef Slot* s
    for i in range(c.nslots - 1, -1, -1):
        s = &c.slots[i]
        if s.guest_visible and gpa >= s.base and gpa - s.base < s.size:
            return kind == ACC_WRITE and s.readonly and s.mmio_writes
    for i in range(c.mmio_nranges):
        if c.mmio_range[i][0] <= gpa < c.mmio_range[i][1]:
            return 1
    return 0


cdef int gpa_to_host(Cpu* c, uint64_t gpa, int kind, uint64_t lin, int lin_valid, int final_access,
                     uint8_t** ptr, uint64_t* hpa_out, uint32_t* perm_out) noexcept nogil:
    """Guest-physical -> host pointer, through EPT when it is on.  Without EPT
    the guest reaches only guest-visible slots (its RAM and ROMs).  A ROM
    slot adds EPERM_ROM to the permissions: the caller sends writes to the
    sink (translate_slow), so they are ignored, as a PC's ROM ignores them."""
    cdef uint64_t hpa = gpa
    cdef uint32_t perm = 7
    cdef int rc, i
    cdef uint8_t* p = NULL
    cdef Slot* s
    if c.vmx.ept:
        rc = ept_translate(c, gpa, kind, lin, lin_valid, final_access, &hpa, &perm)
        if rc:
            # [MMIO] An EPT violation on a data access to an address no slot
            # backs, or a write to read-only memory, is the host's to emulate.
            if rc == RC_VMEXIT and c.mmio_on and final_access and kind != ACC_FETCH and \
                    c.vmx.x_reason == EXIT_REASON_EPT_VIOLATION and gpa_is_mmio(c, gpa, kind):
                c.mmio_gpa = gpa
                return RC_MMIO
            return rc
    if c.vmx.non_root and (c.vmx.ctl.proc2 & PROC2_VIRTUALIZE_APIC_ACCESSES) and \
            ((hpa ^ c.vmx.ctl.apic_access) & ~0xFFFULL) == 0:
        # [APIC virtualization] The APIC-access page (core/vmx/apicv.pxi):
        # never a TLB entry; data accesses come back as RC_MMIO marked
        # with MMIO_APIC_PAGE.
        return apic_touch(c, hpa, kind, final_access)
    # The slots from the last: a ROM mapped over RAM (below 1 MiB) wins.
    for i in range(c.nslots - 1, -1, -1):
        s = &c.slots[i]
        if (hpa & ~0xFFFULL) >= s.base and (hpa & ~0xFFFULL) - s.base + 4096 <= s.size and \
                (s.guest_visible or c.vmx.ept):
            p = s.ptr + ((hpa & ~0xFFFULL) - s.base)
            if s.readonly:
                if s.mmio_writes and kind == ACC_WRITE and c.mmio_on and final_access:
                    c.mmio_gpa = gpa
                    return RC_MMIO
                perm |= EPERM_ROM
            break
    if p == NULL:
        if c.mmio_on and final_access and kind != ACC_FETCH and gpa_is_mmio(c, gpa, kind):
            c.mmio_gpa = gpa
            return RC_MMIO
        c.bad_addr = hpa
        c.bad_write = kind == ACC_WRITE
        return RC_BAD_PHYS
    ptr[0] = p + (hpa & 0xFFF)
    hpa_out[0] = hpa
    perm_out[0] = perm
    return RC_OK


cdef int pt_entry(Cpu* c, uint64_t gpa, int wide, uint64_t lin, uint8_t** ptr, uint64_t* val) noexcept nogil:
    """Read one paging-structure entry at guest-physical gpa (through EPT).
    Without EPT accessed/dirty flags (EPTP bit 6) reading a guest
    paging-structure entry is a data read for EPT, with them a write
    (SDM Vol. 3C 29.3.3.2; ept_translate); the accessed/dirty updates that
    follow are data writes and are checked separately (pt_update)."""
    cdef uint64_t hpa
    cdef uint32_t perm
    cdef uint32_t v32
    cdef int rc = gpa_to_host(c, gpa, ACC_READ, lin, 1, 0, ptr, &hpa, &perm)
    if rc:
        return rc
    if wide:
        memcpy(val, ptr[0], 8)
    else:
        memcpy(&v32, ptr[0], 4)
        val[0] = v32
    if perm & EPERM_ROM:
        ptr[0] = ROM_SINK + (hpa & 0xFFF)     # paging structures in a ROM: A/D updates are lost
    return RC_OK


cdef int pt_update(Cpu* c, uint64_t gpa, uint64_t lin, int wide, uint64_t old, uint64_t bits) noexcept nogil:
    """Check that setting accessed/dirty bits in the paging-structure entry at
    gpa would be allowed: writes by the processor to guest paging structures
    to update A/D flags are data writes for EPT (SDM Vol. 3C 29.3.3.2)."""
    cdef uint8_t* p
    cdef uint64_t hpa
    cdef uint32_t perm
    if (old | bits) == old or not c.vmx.ept:
        return RC_OK
    return gpa_to_host(c, gpa, ACC_WRITE, lin, 1, 0, &p, &hpa, &perm)


cdef inline void pt_set_bits(uint8_t* p, int wide, uint64_t old, uint64_t bits) noexcept nogil:
    cdef uint64_t v = old | bits
    cdef uint32_t v32
    if v == old:
        return
    if wide:
        memcpy(p, &v, 8)
    else:
        v32 = <uint32_t>v
        memcpy(p, &v32, 4)


# Who makes an access, for paging (SDM Vol. 3A 4.6): the `user` argument of
# the translation functions.  Accesses at CPL 3 are user-mode accesses, except
# the implicit ones to system data structures (GDT, LDT, IDT, TSS), which are
# supervisor-mode accesses whatever the CPL; those at CPL < 3 are explicit
# supervisor-mode accesses.  Callers pass `c.cpl == 3` for ordinary accesses
# and AM_IMPLICIT for the system structures.
cdef enum:
    AM_SUPERVISOR = 0
    AM_USER = 1
    AM_IMPLICIT = 2

# Extra bits of page_walk's perm_out, stripped before the TLB keeps them.
cdef enum:
    WALK_GLOBAL = 1 << 16
    WALK_SHIFT = 24             # bits 31:24: log2 of the page size


cdef int page_walk(Cpu* c, uint64_t lin, int kind, int user, uint64_t* gpa_out, uint32_t* perm_out) noexcept nogil:
    """Linear -> guest-physical for 32-bit, PAE and 4-level paging (SDM Vol. 3A
    4.3-4.5), with the protection of 4.6, the accessed and dirty updates of
    4.8 and the #PF error codes of 4.7.

    The walk reads each paging-structure entry in turn and stops at the
    first not-present entry (P = 0 in the error code) or reserved bit (P = 1,
    RSVD = 1); only a walk that reaches a page and passes the access-rights
    checks sets accessed flags (on every entry it used) and, for a write,
    the leaf's dirty flag, so a faulting access writes nothing.  perm_out
    gets the TLB_* rights for every kind of access to the page (writes only
    once the dirty flag is set, so the first write comes back here), plus
    WALK_GLOBAL and the page size."""
    cdef int levels, level, wide, shift, i
    cdef uint64_t table, entry, page_size, gpa, rsvd, bits
    cdef uint8_t* eptr
    cdef uint8_t* ptrs[4]
    cdef uint64_t vals[4]
    cdef uint64_t gpas[4]
    cdef int rc
    cdef int allow_w = 1, allow_u = 1, allow_x = 1
    cdef int is_user = user == AM_USER
    cdef uint32_t pfec_base = (2 if kind == ACC_WRITE else 0) | (4 if is_user else 0)
    cdef int nxe = (c.efer & EFER_NXE) != 0
    cdef int smap = (c.cr4 & CR4_SMAP) != 0
    cdef uint32_t perm
    c.acct.page_walks += 1      # accounting (docs/architecture.rst, "Accounting and cost profiles")
    # I/D (bit 4) reports a fetch when CR4.SMEP = 1, or with PAE or 4-level
    # paging and EFER.NXE = 1 (SDM Vol. 3A 4.7).
    if kind == ACC_FETCH and ((c.cr4 & CR4_SMEP) or (nxe and c.paging != 2)):
        pfec_base |= 16
    if c.paging == 4:
        levels = 4
        wide = 1
        table = c.cr3 & PHYS_MASK
        rsvd = RSVD_HIGH
    elif c.paging == 3:
        # The four PDPTEs were loaded with CR3 (SDM 4.4.1): not read here.
        entry = c.pdpte[(lin >> 30) & 3]
        if not (entry & 1):
            return raise_pf(c, lin, pfec_base)
        if entry & RSVD_PDPTE:
            return raise_pf(c, lin, pfec_base | 9)
        levels = 2
        wide = 1
        table = entry & PHYS_MASK
        rsvd = RSVD_PAE
    else:
        levels = 2
        wide = 0
        table = c.cr3 & 0xFFFFF000ULL
        rsvd = 0
    if wide and not nxe:
        # XD (bit 63) is reserved while EFER.NXE = 0 (Tables 4-11, 4-14 to 4-19).
        rsvd |= 1ULL << 63
    page_size = 4096
    for level in range(levels, 0, -1):
        if wide:
            shift = 12 + 9 * (level - 1)
            gpas[level - 1] = table + ((lin >> shift) & 511) * 8
        else:
            shift = 12 + 10 * (level - 1)
            gpas[level - 1] = table + ((lin >> shift) & 1023) * 4
        rc = pt_entry(c, gpas[level - 1], wide, lin, &eptr, &entry)
        if rc:
            return rc
        ptrs[level - 1] = eptr
        vals[level - 1] = entry
        if not (entry & 1):
            return raise_pf(c, lin, pfec_base)
        if entry & rsvd:
            return raise_pf(c, lin, pfec_base | 9)
        if level > 1 and (entry & 0x80):
            if wide and level == 4:
                # PS is reserved in a PML4E (Table 4-15).
                return raise_pf(c, lin, pfec_base | 9)
            if wide and level == 3 and not cpu_has(c, FEAT_PDPE1GB):
                # Without 1-GByte pages PS is reserved in a PDPTE (4.5.4).
                return raise_pf(c, lin, pfec_base | 9)
            if wide and level == 3 and (entry & 0x3FFFE000ULL):
                return raise_pf(c, lin, pfec_base | 9)      # bits 29:13 (Table 4-16)
            if wide and level == 2 and (entry & 0x1FE000ULL):
                return raise_pf(c, lin, pfec_base | 9)      # bits 20:13 (Tables 4-9, 4-18)
            if not wide and (c.cr4 & CR4_PSE):
                # 4 MiB page: bit 21, and bits 20:13 beyond MAXPHYADDR - 1
                # (with PSE-36; without it all of bits 21:13) (Table 4-4).
                if entry & (RSVD_PDE4M if cpu_has(c, FEAT_PSE36) else 0x3FE000ULL):
                    return raise_pf(c, lin, pfec_base | 9)
        if not (entry & 2):
            allow_w = 0
        if not (entry & 4):
            allow_u = 0
        if wide and (entry >> 63):
            allow_x = 0
        if level > 1 and (entry & 0x80) and (wide or (c.cr4 & CR4_PSE)):
            page_size = 1ULL << shift
            if wide:
                gpa = (entry & PHYS_MASK & ~(page_size - 1)) | (lin & (page_size - 1))
            else:
                # 4 MiB page, PSE-36: bits 20:13 hold physical bits 39:32.
                gpa = (entry & 0xFFC00000ULL) | (((entry >> 13) & 0xFF) << 32) | (lin & 0x3FFFFF)
            break
        if level == 1:
            gpa = (entry & (PHYS_MASK if wide else 0xFFFFF000ULL)) | (lin & 0xFFF)
            break
        table = entry & (PHYS_MASK if wide else 0xFFFFF000ULL)
    # Access rights (SDM Vol. 3A 4.6.1): U/S, R/W and XD of every level
    # combined; CR0.WP, SMEP, SMAP with RFLAGS.AC.
    if is_user:
        if not allow_u:
            return raise_pf(c, lin, pfec_base | 1)
        if kind == ACC_WRITE and not allow_w:
            return raise_pf(c, lin, pfec_base | 1)
    else:
        if kind == ACC_WRITE and not allow_w and (c.cr0 & CR0_WP):
            return raise_pf(c, lin, pfec_base | 1)
        if allow_u and kind == ACC_FETCH and (c.cr4 & CR4_SMEP):
            return raise_pf(c, lin, pfec_base | 1)
        # SMAP: a supervisor-mode data access to a user-mode page faults
        # unless it is explicit with RFLAGS.AC = 1; implicit ones always do.
        if allow_u and kind != ACC_FETCH and smap and (user == AM_IMPLICIT or not (c.rflags & F_AC)):
            return raise_pf(c, lin, pfec_base | 1)
    if kind == ACC_FETCH and not allow_x:
        return raise_pf(c, lin, pfec_base | 1)
    # Accessed flags on every level used, dirty on the leaf for writes.
    for i in range(level - 1, levels):
        rc = pt_update(c, gpas[i], lin, wide, vals[i],
                       (0x20 | (0x40 if kind == ACC_WRITE else 0)) if i == level - 1 else 0x20)
        if rc:
            return rc
    for i in range(level - 1, levels):
        if i == level - 1:
            bits = 0x20 | (0x40 if kind == ACC_WRITE else 0)
        else:
            bits = 0x20
        if c.dirty_log and (vals[i] | bits) != vals[i]:
            dirty_ptr(c, ptrs[i])       # [dirty log] the processor writes the entry
        pt_set_bits(ptrs[i], wide, vals[i], bits)
    # The rights the TLB keeps, for every kind of access and CPL.  SMAP
    # depends on RFLAGS.AC, which changes without a flush: supervisor data
    # rights on a user page are left out, so those accesses walk every time.
    perm = (TLB_R | (TLB_X if allow_x else 0) |
            ((TLB_W if (allow_w or not (c.cr0 & CR0_WP)) else 0) if (kind == ACC_WRITE or (vals[level - 1] & 0x40)) else 0))
    if allow_u:
        perm |= TLB_UR | (TLB_UX if allow_x else 0)
        if allow_w and (kind == ACC_WRITE or (vals[level - 1] & 0x40)):
            perm |= TLB_UW
        if c.cr4 & CR4_SMEP:
            perm &= ~(<uint32_t>TLB_X)
        if smap:
            perm &= ~(<uint32_t>(TLB_R | TLB_W))
    if (c.cr4 & CR4_PGE) and (vals[level - 1] & 0x100):
        perm |= WALK_GLOBAL
    perm |= <uint32_t>(12 + (level - 1) * (9 if wide else 10)) << WALK_SHIFT
    perm_out[0] = perm
    gpa_out[0] = gpa
    return RC_OK


cdef int translate_slow(Cpu* c, uint64_t lin, int kind, int user, uint8_t** host) noexcept nogil:
    cdef uint64_t gpa, hpa
    cdef uint32_t perm, eperm, walk
    cdef uint8_t* p
    cdef int rc
    cdef TlbEntry* e = tlb_slot(c, lin)
    cdef uint32_t wc
    cdef uint32_t need = (1 << kind) << (3 if user == AM_USER else 0)
    cdef uint32_t pcid
    if e.gen != c.tlb_gen and tlb_revalidate(c, e, lin >> 12) and (e.perm & need):
        host[0] = e.host + (lin & 0xFFF)
        return RC_OK
    if kind == ACC_WRITE and e.gen == c.tlb_gen and e.page == (lin >> 12):
        # A write to a page that holds decoded code, through a valid entry:
        # no walk needed, only the chunk check.
        wc = TLB_UWC if user == AM_USER else TLB_WC
        if e.perm & wc:
            if code_write_ok(c, e.hpa | (lin & 0xFFF)):
                if c.dirty_log:
                    dirty_note(c, e.hpa, ACC_WRITE)
                host[0] = e.host + (lin & 0xFFF)
                return RC_OK
            code_page_written(c, e.hpa)
    spend(c, 2)
    if c.paging:
        rc = page_walk(c, lin, kind, user, &gpa, &walk)
        if rc:
            return rc
        perm = walk & 0xFFFF
    else:
        gpa = lin
        perm = TLB_R | TLB_W | TLB_X | TLB_UR | TLB_UW | TLB_UX
        walk = 12 << WALK_SHIFT
    rc = gpa_to_host(c, gpa, kind, lin, 1, 1, &p, &hpa, &eperm)
    if rc:
        if rc == RC_MMIO:
            # No TLB entry: every access to the page comes back here.  A
            # caller that is not lin_read/lin_write cannot emulate it.
            c.mmio_req.size = 0
            c.mmio_req.gpa = c.mmio_gpa & ~MMIO_APIC_PAGE
            c.mmio_req.write = kind == ACC_WRITE
            c.mmio_lin = lin
        return rc
    # EPT permissions narrow the paging permissions.
    if not (eperm & 1):
        perm &= ~(<uint32_t>(TLB_R | TLB_UR))
    if not (eperm & 2):
        perm &= ~(<uint32_t>(TLB_W | TLB_UW))
    if not (eperm & 4):
        perm &= ~(<uint32_t>(TLB_X | TLB_UX))
    if eperm & EPERM_ROM:
        # A ROM: reads and fetches through the TLB, writes never (each one
        # comes back here and goes to the sink).
        perm &= ~(<uint32_t>(TLB_W | TLB_UW))
    if kind == ACC_WRITE and hpa < c.ram_size and c.code_pages[hpa >> 12] and not code_write_ok(c, hpa):
        code_page_written(c, hpa)
    if hpa < c.ram_size and c.code_pages[hpa >> 12]:
        perm = withhold_write(perm)
    if c.dirty_log and dirty_note(c, hpa, kind):
        perm &= ~(<uint32_t>(TLB_W | TLB_UW | TLB_WC | TLB_UWC))
    if (c.dr7 & 0xFF) or c.hwp_n:
        # [debug] a watched page keeps its accesses on the slow path (core/insn/debug.pxi)
        perm = dbg_tlb_perm(c, lin, hpa, perm)
    pcid = tlb_pcid(c)
    e.page = lin >> 12
    e.gen = c.tlb_gen
    e.epoch = c.tlb_epoch
    e.ngen = c.tlb_ngen
    e.pcid = <uint16_t>pcid
    e.pgen = c.pcid_gen[pcid]
    e.glob = (walk & WALK_GLOBAL) != 0
    e.lshift = <uint8_t>(walk >> WALK_SHIFT)
    if e.lshift > 12:
        # INVLPG must look beyond this page's slot for it (tlb_invalidate_page).
        c.tlb_large |= tlb_large_bit(lin, e.lshift)
    if e.glob and (c.cr4 & CR4_PCIDE):
        c.tlb_large |= TLB_LARGE_ALWAYS
    e.host = p - (hpa & 0xFFF)
    e.hpa = hpa & ~0xFFFULL
    e.perm = perm
    if kind == ACC_WRITE and (eperm & EPERM_ROM):
        host[0] = ROM_SINK + (hpa & 0xFFF)
        return RC_OK
    host[0] = p
    return RC_OK


cdef inline int translate(Cpu* c, uint64_t lin, int kind, int user, uint8_t** host) noexcept nogil:
    """Linear address -> host pointer, through the TLB."""
    cdef TlbEntry* e = tlb_slot(c, lin)
    cdef uint32_t need = (1 << kind) << (3 if user == AM_USER else 0)
    if e.gen == c.tlb_gen and e.page == (lin >> 12) and (e.perm & need):
        host[0] = e.host + (lin & 0xFFF)
        return RC_OK
    return translate_slow(c, lin, kind, user, host)


# ---------------------------------------------------------------------------
# MMIO (docs/architecture.rst, "Memory slots and MMIO")
#
# An access to guest-physical memory that no slot backs (or a write to
# read-only memory whose writes go to the host) is emulated by the host, one
# access at a time, by replaying the instruction: the first run stops at the
# access (RC_MMIO, nothing retired, RIP on the instruction, c.mmio_req), the
# host performs it and appends it, with the value read, to c.mmio_log, and
# the next run takes the answered accesses from the log in order and stops at
# the next new one.  So every instruction form that reaches memory through
# lin_read/lin_write completes exactly as with RAM (read-modify-write, PUSH
# and POP, string instructions one iteration at a time, SSE loads), and the
# device sees its accesses once each, in program order.  The log belongs to
# one instruction: it holds while icount, events and RIP are those of the
# run that stopped, which a retired instruction, a REP iteration or a
# delivered event changes.

cdef int mmio_access(Cpu* c, uint64_t gpa, uint64_t lin, int size, int write, uint64_t* val) noexcept nogil:
    """Perform an MMIO access from the log, or stage it for the host (RC_MMIO).
    An access to the APIC-access page (MMIO_APIC_PAGE) goes to APIC
    virtualization instead (core/vmx/apicv.pxi)."""
    cdef MmioAccess* a
    if gpa & MMIO_APIC_PAGE:
        return apic_data_access(c, gpa & ~MMIO_APIC_PAGE, size, write, val)
    if c.mmio_n and (c.icount != c.mmio_icount or c.events != c.mmio_events or c.rip != c.mmio_rip):
        c.mmio_n = 0
        c.mmio_pos = 0
    if c.mmio_pos < c.mmio_n:
        a = &c.mmio_log[c.mmio_pos]
        if a.gpa == gpa and a.size == <uint32_t>size and a.write == <uint32_t>write and \
                (not write or a.value == val[0]):
            c.mmio_pos += 1
            if not write:
                val[0] = a.value
            return RC_OK
        # This run took another path than the last (the host changed the
        # state in between): the log no longer describes it.
        c.mmio_n = 0
        c.mmio_pos = 0
    c.mmio_req.gpa = gpa
    c.mmio_req.size = size if c.mmio_n < 32 else 0     # more than the log holds: not emulated
    c.mmio_req.write = write
    c.mmio_req.value = val[0] if write else 0
    c.mmio_lin = lin
    return RC_MMIO


cdef int lin_read_split(Cpu* c, uint64_t lin, int size, int user, uint64_t* out) noexcept nogil:
    """lin_read of an access that crosses a page boundary, or reaches MMIO:
    part by part, each from RAM or from the host."""
    cdef uint8_t* p[2]
    cdef uint64_t gpa[2]
    cdef uint64_t at[2]
    cdef int n[2]
    cdef int parts = 1
    cdef uint64_t v = 0, part
    cdef int rc, i, off = 0
    at[0] = lin
    n[0] = size
    if (lin & 0xFFF) + size > 4096:
        parts = 2
        n[0] = 4096 - <int>(lin & 0xFFF)
        n[1] = size - n[0]
        at[1] = (lin + n[0]) & (0xFFFFFFFFFFFFFFFFULL if c.long64 else 0xFFFFFFFFULL)
    # Translate every part before reading any: a fault on the second page
    # comes before an access to the first.
    for i in range(parts):
        rc = translate(c, at[i], ACC_READ, user, &p[i])
        if rc == RC_MMIO:
            p[i] = NULL
            gpa[i] = c.mmio_gpa
        elif rc:
            return rc
    for i in range(parts):
        if p[i] == NULL:
            part = 0
            rc = mmio_access(c, gpa[i], at[i], n[i], 0, &part)
            if rc:
                return rc
            memcpy((<uint8_t*>&v) + off, &part, n[i])
        else:
            memcpy((<uint8_t*>&v) + off, p[i], n[i])
        off += n[i]
    out[0] = v
    if (c.dr7 & 0xFF) or c.hwp_n:
        dbg_data(c, lin, size, 0)       # [debug] data breakpoints (core/insn/debug.pxi)
    return RC_OK


cdef int lin_write_split(Cpu* c, uint64_t lin, int size, int user, uint64_t v) noexcept nogil:
    """lin_write of an access that crosses a page boundary, or reaches MMIO."""
    cdef uint8_t* p[2]
    cdef uint64_t gpa[2]
    cdef uint64_t at[2]
    cdef int n[2]
    cdef int parts = 1
    cdef uint64_t part
    cdef int rc, i, off = 0
    at[0] = lin
    n[0] = size
    if (lin & 0xFFF) + size > 4096:
        parts = 2
        n[0] = 4096 - <int>(lin & 0xFFF)
        n[1] = size - n[0]
        at[1] = (lin + n[0]) & (0xFFFFFFFFFFFFFFFFULL if c.long64 else 0xFFFFFFFFULL)
    # Translate both pages before writing either: a fault on the second
    # page must leave memory untouched.
    for i in range(parts):
        rc = translate(c, at[i], ACC_WRITE, user, &p[i])
        if rc == RC_MMIO:
            p[i] = NULL
            gpa[i] = c.mmio_gpa
        elif rc:
            return rc
    # The MMIO parts first: one the host has not performed yet stops the
    # instruction before it has written anything.
    for i in range(parts):
        if p[i] == NULL:
            part = 0
            memcpy(&part, (<uint8_t*>&v) + (0 if i == 0 else n[0]), n[i])
            rc = mmio_access(c, gpa[i], at[i], n[i], 1, &part)
            if rc:
                return rc
    for i in range(parts):
        if p[i] != NULL:
            memcpy(p[i], (<uint8_t*>&v) + off, n[i])
        off += n[i]
    if (c.dr7 & 0xFF) or c.hwp_n:
        dbg_data(c, lin, size, 1)       # [debug] data breakpoints (core/insn/debug.pxi)
    return RC_OK


cdef int lin_read(Cpu* c, uint64_t lin, int size, int user, uint64_t* out) noexcept nogil:
    cdef uint8_t* p
    cdef uint64_t v = 0
    cdef int rc
    if (lin & 0xFFF) + size <= 4096:
        rc = translate(c, lin, ACC_READ, user, &p)
        if rc:
            if rc == RC_MMIO:
                return lin_read_split(c, lin, size, user, out)
            return rc
        memcpy(&v, p, size)
    else:
        return lin_read_split(c, lin, size, user, out)
    out[0] = v
    if (c.dr7 & 0xFF) or c.hwp_n:
        dbg_data(c, lin, size, 0)       # [debug] data breakpoints (core/insn/debug.pxi)
    return RC_OK


cdef int lin_write(Cpu* c, uint64_t lin, int size, int user, uint64_t v) noexcept nogil:
    cdef uint8_t* p
    cdef int rc
    if (lin & 0xFFF) + size <= 4096:
        rc = translate(c, lin, ACC_WRITE, user, &p)
        if rc:
            if rc == RC_MMIO:
                return lin_write_split(c, lin, size, user, v)
            return rc
        memcpy(p, &v, size)
    else:
        return lin_write_split(c, lin, size, user, v)
    if (c.dr7 & 0xFF) or c.hwp_n:
        dbg_data(c, lin, size, 1)       # [debug] data breakpoints (core/insn/debug.pxi)
    return RC_OK


# ---------------------------------------------------------------------------
# Segmentation (SDM Vol. 3 5.3, 5.4; 64-bit mode 3.4.2.1)

cdef inline int seg_fault(Cpu* c, int s) noexcept nogil:
    if s == S_SS:
        return raise_exc(c, EXC_SS, 1, 0)
    return raise_gp0(c)


cdef int seg_linear(Cpu* c, int s, uint64_t off, int size, int kind, uint64_t* lin) noexcept nogil:
    """Segment:offset -> linear address, with the limit, type and canonical
    checks of the current mode."""
    cdef Seg* sg = &c.seg[s]
    cdef uint64_t a, last
    cdef uint32_t t
    if c.long64:
        a = off
        if s == S_FS or s == S_GS:
            a = a + sg.base
        if not is_canonical(a) or not is_canonical(a + size - 1):
            return seg_fault(c, s)
        lin[0] = a
        return RC_OK
    if c.cr0 & CR0_PE and not (c.rflags & F_VM):
        if sg.ar & AR_UNUSABLE:
            return seg_fault(c, s)
        t = sg.ar & AR_TYPE
        if t & 8:
            # code segment: never writable, readable only if type bit 1
            if kind == ACC_WRITE or (kind == ACC_READ and not (t & 2)):
                return seg_fault(c, s)
        elif kind == ACC_WRITE and not (t & 2):
            return seg_fault(c, s)
        last = off + size - 1
        if (t & 0xC) == 4:
            # expand-down data segment: valid offsets are (limit, top]
            if off <= sg.limit or last > (0xFFFFFFFFULL if (sg.ar & AR_DB) else 0xFFFF):
                return seg_fault(c, s)
        elif last > sg.limit:
            return seg_fault(c, s)
    else:
        # real and virtual-8086 mode: the hidden limit still applies
        if off + size - 1 > sg.limit:
            return seg_fault(c, s)
    lin[0] = (sg.base + off) & 0xFFFFFFFFULL
    return RC_OK


# --- the inline fast path of a data access ------------------------------------
# The common access stays within one page, hits the TLB with the permission it
# needs, and goes through a segment without base or limit (in 64-bit mode any
# but FS and GS; elsewhere a flat segment, as every 32-bit OS sets up): it
# costs one inline lookup and no stack.  Everything else (page crossings, TLB
# misses, permission withheld, code pages, FS/GS, segments with a base or a
# limit) takes the out-of-line path, which does the full checks.

cdef inline uint8_t* tlb_hit(Cpu* c, uint64_t lin, int size, int kind) noexcept nogil:
    """The host pointer for a one-page access that hits the TLB, else NULL."""
    cdef TlbEntry* e
    cdef uint32_t need = (1 << kind) << (3 if c.cpl == 3 else 0)
    if (lin & 0xFFF) + size > 4096:
        return NULL
    e = tlb_slot(c, lin)
    if e.gen == c.tlb_gen and e.page == (lin >> 12) and (e.perm & need):
        return e.host + (lin & 0xFFF)
    return NULL


cdef inline uint64_t load_le(uint8_t* p, int size) noexcept nogil:
    cdef uint64_t v8 = 0
    cdef uint32_t v4
    cdef uint16_t v2
    if size == 4:
        memcpy(&v4, p, 4)
        return v4
    if size == 8:
        memcpy(&v8, p, 8)
        return v8
    if size == 1:
        return p[0]
    if size == 2:
        memcpy(&v2, p, 2)
        return v2
    memcpy(&v8, p, size)
    return v8


cdef inline void store_le(uint8_t* p, int size, uint64_t v) noexcept nogil:
    cdef uint32_t v4
    cdef uint16_t v2
    if size == 4:
        v4 = <uint32_t>v
        memcpy(p, &v4, 4)
    elif size == 8:
        memcpy(p, &v, 8)
    elif size == 1:
        p[0] = <uint8_t>v
    elif size == 2:
        v2 = <uint16_t>v
        memcpy(p, &v2, 2)
    else:
        memcpy(p, &v, size)


cdef inline int seg_linear_fast(Cpu* c, int s, uint64_t off, int size, int kind, uint64_t* lin) noexcept nogil:
    """seg_linear, with its common cases inline and the same checks: 64-bit
    mode through a segment other than FS and GS, and protected mode through
    a usable expand-up segment that allows the access (a readable data or
    code segment for a read, a writable data segment for a write) within its
    limit.  Everything else (expand-down, faults, real and virtual-8086
    mode, FS/GS in 64-bit mode) takes seg_linear."""
    cdef Seg* sg
    cdef uint32_t t
    if c.long64:
        if s != S_FS and s != S_GS and is_canonical(off) and is_canonical(off + size - 1):
            lin[0] = off
            return RC_OK
    elif (c.cr0 & CR0_PE) and not (c.rflags & F_VM):
        sg = &c.seg[s]
        t = sg.ar & (AR_UNUSABLE | AR_TYPE)
        if ((((t & 0x1000C) == 0 or (t & 0x1000A) == 0xA) if kind == ACC_READ else (t & 0x1000E) == 2)
                and off + <uint64_t>size - 1 <= sg.limit):
            lin[0] = (sg.base + off) & 0xFFFFFFFFULL
            return RC_OK
    return seg_linear(c, s, off, size, kind, lin)


cdef inline uint8_t* data_hit(Cpu* c, int s, uint64_t off, int size, int kind) noexcept nogil:
    """The common data access in one inline lookup: through a segment whose
    linear address is the offset and whose checks cannot fail for an access
    within one page, a TLB hit gives the host pointer; NULL otherwise (the
    caller takes the out-of-line path, which does every check).

    In 64-bit mode that is any segment but FS and GS: a TLB hit also proves
    the canonical checks (the TLB holds canonical pages only, seg_linear
    having refused the others, and tlb_hit keeps the access within the
    page).  Outside it, a flat segment: base 0, limit 4 GiB - 1, usable, and
    of a type that allows the access (seg_linear_fast's test).  With such a
    segment seg_linear succeeds in every mode (protected, real, virtual-8086)
    for an offset below 4 GiB whose access stays within a page, and gives
    the offset as the linear address."""
    cdef Seg* sg
    cdef uint32_t t
    if c.long64:
        if s == S_FS or s == S_GS:
            return NULL
    else:
        sg = &c.seg[s]
        t = sg.ar & (AR_UNUSABLE | AR_TYPE)
        if (sg.base != 0 or sg.limit != 0xFFFFFFFFU or (off >> 32) != 0 or not (
                ((t & 0x1000C) == 0 or (t & 0x1000A) == 0xA) if kind == ACC_READ else (t & 0x1000E) == 2)):
            return NULL
    return tlb_hit(c, off, size, kind)


cdef int mem_read_slow(Cpu* c, int s, uint64_t off, int size, uint64_t* out) noexcept nogil:
    """mem_read past its inline lookup: the segment checks, then the TLB or
    the page walk (out of line, so that the inline path needs no stack)."""
    cdef uint64_t lin
    cdef uint8_t* p
    cdef int rc = seg_linear_fast(c, s, off, size, ACC_READ, &lin)
    if rc:
        return rc
    p = tlb_hit(c, lin, size, ACC_READ)
    if p != NULL:
        out[0] = load_le(p, size)
        return RC_OK
    return lin_read(c, lin, size, c.cpl == 3, out)


cdef int mem_write_slow(Cpu* c, int s, uint64_t off, int size, uint64_t v) noexcept nogil:
    """mem_write past its inline lookup (as mem_read_slow)."""
    cdef uint64_t lin
    cdef uint8_t* p
    cdef int rc = seg_linear_fast(c, s, off, size, ACC_WRITE, &lin)
    if rc:
        return rc
    p = tlb_hit(c, lin, size, ACC_WRITE)
    if p != NULL:
        store_le(p, size, v)
        return RC_OK
    return lin_write(c, lin, size, c.cpl == 3, v)


cdef inline int mem_read(Cpu* c, int s, uint64_t off, int size, uint64_t* out) noexcept nogil:
    cdef uint8_t* p = data_hit(c, s, off, size, ACC_READ)
    if p != NULL:
        out[0] = load_le(p, size)
        return RC_OK
    return mem_read_slow(c, s, off, size, out)


cdef inline int mem_write(Cpu* c, int s, uint64_t off, int size, uint64_t v) noexcept nogil:
    cdef uint8_t* p = data_hit(c, s, off, size, ACC_WRITE)
    if p != NULL:
        store_le(p, size, v)
        return RC_OK
    return mem_write_slow(c, s, off, size, v)


cdef inline int mem_check_write(Cpu* c, int s, uint64_t off, int size) noexcept nogil:
    """Probe that a write would succeed (segment, paging, EPT) without
    writing: used before an instruction commits other state."""
    cdef uint64_t lin
    cdef uint8_t* p
    cdef int rc
    if data_hit(c, s, off, size, ACC_WRITE) != NULL:
        return RC_OK
    rc = seg_linear_fast(c, s, off, size, ACC_WRITE, &lin)
    if rc:
        return rc
    if tlb_hit(c, lin, size, ACC_WRITE) != NULL:
        return RC_OK
    # [MMIO] A write the host will emulate passes the probe: the write itself
    # (lin_write) stops the instruction for the host, or takes the answer.
    rc = translate(c, lin, ACC_WRITE, c.cpl == 3, &p)
    if rc and rc != RC_MMIO:
        return rc
    if (lin & 0xFFF) + size > 4096:
        rc = translate(c, ((lin | 0xFFF) + 1) & (0xFFFFFFFFFFFFFFFFULL if c.long64 else 0xFFFFFFFFULL),
                       ACC_WRITE, c.cpl == 3, &p)
    return RC_OK if rc == RC_MMIO else rc


cdef inline int mem_read_rmw(Cpu* c, int s, uint64_t off, int size, uint64_t* out) noexcept nogil:
    """Read the memory destination of a read-modify-write instruction.  It is
    accessed with write intent: the write checks (segment, paging, EPT) come
    first, so a fault on it reports a write, as an EPT violation during a
    read-modify-write sets the data-write bit (SDM Vol. 3C 28.2.1, Table
    28-7, bit 1) and a page fault the W/R bit."""
    cdef int rc = mem_check_write(c, s, off, size)
    if rc:
        return rc
    return mem_read(c, s, off, size, out)
