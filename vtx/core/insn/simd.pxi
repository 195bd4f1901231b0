# Groundwork shared by the x87, MMX and SSE instruction files: the
# availability checks every SIMD instruction makes first, and operand access
# for XMM/MMX registers and 64/128-bit memory operands (SDM Vol. 1 chapters
# 9-11; Vol. 2 2.4 and the exception-condition classes of Vol. 2 2.5).
# The state itself is Cpu.fpu (FpuState, vtx/_core.pxd).


cdef inline int sse_avail(Cpu* c) noexcept nogil:
    """The checks before any SSE/SSE2/SSE3/SSSE3/SSE4 instruction (SDM Vol. 2
    Table 2-21 and its classes): CR0.EM = 1 or CR4.OSFXSR = 0 is #UD, then
    CR0.TS = 1 is #NM.  RC_OK when the instruction may run."""
    if (c.cr0 & CR0_EM) or not (c.cr4 & CR4_OSFXSR):
        return raise_ud(c)
    if c.cr0 & CR0_TS:
        return raise_exc(c, EXC_NM, 0, 0)
    return RC_OK


cdef inline int mmx_avail(Cpu* c) noexcept nogil:
    """The checks before an MMX instruction (SDM Vol. 1 9.6.3 and
    the MMX instructions' "Protected Mode Exceptions"): CR0.EM = 1 is #UD, CR0.TS = 1 is #NM, and a
    pending unmasked x87 exception (FSW.ES) is #MF."""
    if c.cr0 & CR0_EM:
        return raise_ud(c)
    if c.cr0 & CR0_TS:
        return raise_exc(c, EXC_NM, 0, 0)
    if c.fpu.fsw & 0x80:
        return raise_exc(c, EXC_MF, 0, 0)
    return RC_OK


cdef inline void mmx_enter(Cpu* c) noexcept nogil:
    """What every MMX instruction but EMMS does to the x87 state (SDM Vol. 1
    9.5.1): TOP = 0 and every register tagged valid."""
    c.fpu.fsw &= ~(<uint16_t>0x3800)
    c.fpu.ftw = 0


cdef inline void mmx_set(Cpu* c, int r, uint64_t v) noexcept nogil:
    """Write MMi: bits 63:0 of R[i], and bits 79:64 set to 1s (SDM Vol. 1 9.5.1)."""
    cdef uint8_t* p = c.fpu.st[r & 7]
    memcpy(p, &v, 8)
    p[8] = 0xFF
    p[9] = 0xFF


cdef inline uint64_t mmx_get(Cpu* c, int r) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, c.fpu.st[r & 7], 8)
    return v


cdef inline uint64_t simd_linear_hint(Cpu* c, Insn* d, uint64_t off) noexcept nogil:
    """The linear address of a memory operand for the alignment test (the
    segment base plus the offset; in 64-bit mode only FS and GS have one)."""
    if c.long64 and d.seg != S_FS and d.seg != S_GS:
        return off
    return c.seg[d.seg].base + off


cdef inline int simd_misaligned(Cpu* c, Insn* d, uint64_t off, int align) noexcept nogil:
    """A 16-byte-aligned operand that is not aligned: #GP(0) for every
    segment, SS included (SDM Vol. 2 2.5, "Exceptions Type 1": MOVAPS,
    MOVDQA, the legacy-SSE 128-bit memory operands)."""
    if align and (simd_linear_hint(c, d, off) & <uint64_t>(align - 1)):
        return raise_gp0(c)
    return RC_OK


cdef int simd_load(Cpu* c, Insn* d, int size, int align, uint64_t* out) noexcept nogil:
    """The r/m operand of an XMM instruction: XMM[d.rm] when mod = 3, else
    `size` bytes (4, 8 or 16) of memory, aligned to `align` (0: any).  out[0]
    gets bits 63:0 and out[1] bits 127:64 (0 for the narrower loads)."""
    cdef uint64_t off
    cdef int rc
    if d.mod == 3:
        out[0] = c.fpu.xmm[d.rm][0]
        out[1] = c.fpu.xmm[d.rm][1]
        return RC_OK
    off = ea_offset(c, d)
    rc = simd_misaligned(c, d, off, align)
    if rc:
        return rc
    out[1] = 0
    if size <= 8:
        return mem_read(c, d.seg, off, size, out)
    rc = mem_read(c, d.seg, off, 8, out)
    if rc:
        return rc
    return mem_read(c, d.seg, (off + 8) & SIZE_MASK[d.asz], 8, out + 1)


cdef int simd_store(Cpu* c, Insn* d, int size, int align, const uint64_t* v) noexcept nogil:
    """Store `size` bytes (4, 8 or 16) of v to the r/m memory operand; the
    whole destination is checked before any byte is written."""
    cdef uint64_t off = ea_offset(c, d)
    cdef int rc = simd_misaligned(c, d, off, align)
    if rc:
        return rc
    if size <= 8:
        return mem_write(c, d.seg, off, size, v[0])
    rc = mem_check_write(c, d.seg, off, 16)
    if rc:
        return rc
    rc = mem_write(c, d.seg, off, 8, v[0])
    if rc:
        return rc
    return mem_write(c, d.seg, (off + 8) & SIZE_MASK[d.asz], 8, v[1])


cdef int mmx_load(Cpu* c, Insn* d, uint64_t* out) noexcept nogil:
    """The r/m operand of an MMX instruction: MM[d.rm & 7] or 8 bytes of memory."""
    if d.mod == 3:
        out[0] = mmx_get(c, d.rm)
        return RC_OK
    return mem_read(c, d.seg, ea_offset(c, d), 8, out)
