# The x87 FPU (SDM Vol. 1 chapter 8; the instructions of Vol. 2 with the
# escape opcodes D8-DF and WAIT/FWAIT 9B; the opcode maps of Vol. 2 A.4).
#
# How the results are made bit-exact (docs/architecture.rst, "The x87 FPU"):
# the host is an x86-64 processor, so every computational x87 instruction is
# executed by the host's own x87 unit on the guest's state.  The guest's
# control word (precision, rounding and exception masks), condition codes,
# TOP and tag word and its eight registers are loaded into the host FPU with
# FRSTOR, the very same instruction (same opcode and ModRM; a memory operand
# is a host buffer holding the bytes read from guest memory) runs there, and
# FNSAVE brings the state back.  The host therefore computes the numeric
# result, the masked responses (QNaN indefinite, infinities, denormals,
# rounding of the integer and BCD stores), stack overflow and underflow with
# C1 and SF, the condition codes of FCOM/FXAM/FPREM, and - because the
# guest's exception masks are in force - the responses to unmasked
# exceptions too (destination left alone for #I/#Z/#D, the bias-adjusted
# result for #O/#U, SDM Vol. 1 8.5).  The status is read with the no-wait
# FNSAVE, so a pending unmasked exception never traps on the host; FNSAVE
# re-initializes the host FPU and the host control word is put back.
#
# Faster ways to the same result (the host's FRSTOR and FNSAVE cost about
# 230 ns): x87_fast does the register moves in C, and x87_quick runs the
# instruction on the host without them when every exception is masked and
# no stack fault can occur (the full path remains for everything else).
#
# What this file does itself: the control instructions (FNINIT, FNCLEX,
# FLDCW, FNSTCW, FNSTSW, FLDENV, FNSTENV, FRSTOR, FNSAVE, WAIT), the
# bookkeeping around each instruction (#UD for reserved encodings and
# features the CPU model lacks, #NM from CR0.EM/TS/MP, #MF for a pending
# unmasked exception, the last-instruction pointers FIP/FCS/FOP/FDP/FDS),
# the memory operands through the guest's segmentation and paging, and the
# environment and state images of the four formats (SDM Vol. 1 8.1.10,
# Figures 8-9 to 8-12).
#
# The transcendental instructions (F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN,
# FSIN, FCOS, FSINCOS) also run on the host: their results are the host
# processor's approximations (SDM Vol. 1 8.3.10: accuracy within 1 ulp),
# which may differ in the last bit between processor generations and
# vendors.  Where Intel and AMD are known to differ otherwise it is said
# where it matters (tests/test_insn_x87.py).
#
# FSW.ES (with B, its copy) is a summary: it is set exactly while some
# exception flag is set whose mask bit is clear, as the processor keeps it
# (FLDCW and FLDENV that unmask or mask a raised flag set or clear it).  A
# waiting x87 instruction finds ES set and takes #MF when CR0.NE = 1; with
# CR0.NE = 0 real hardware signals FERR# to an external interrupt
# controller and freezes until IGNNE# or an interrupt: the model has no such
# wiring, so the exception is simply not delivered and the instruction runs
# (SDM Vol. 1 8.7, Vol. 3 "CR0.NE").

from libc.string cimport memcmp

cdef extern from *:
    """
    #include <stdint.h>
    /* One x87 instruction run on the host's FPU (core/insn/x87.pxi): the
       state image st (108 bytes, the 32-bit FSAVE format) is loaded with
       FRSTOR, AH is loaded into the status flags (FCMOVcc reads them), the
       two instruction bytes run (a memory form addresses [rsi], the
       operand buffer), the flags come back through LAHF (FCOMI and FUCOMI
       write them) and FNSAVE stores the state and re-initializes the FPU.
       key = first opcode byte << 8 | ModRM, with mod = 00 and r/m = 110
       for a memory form.  Only the encodings x87.pxi sends here are used. */
    #define VX87_ONE(op, m) case ((op) << 8) | (m): __asm__ volatile ("frstor (%1); sahf; .byte " #op ", " #m "; lahf; fnsave (%1)" : "+a"(ax) : "D"(st), "S"(mem) : "memory", "cc"); break;
    #define VX87_8(op, m) VX87_ONE(op, m + 0) VX87_ONE(op, m + 1) VX87_ONE(op, m + 2) VX87_ONE(op, m + 3) VX87_ONE(op, m + 4) VX87_ONE(op, m + 5) VX87_ONE(op, m + 6) VX87_ONE(op, m + 7)
    #define VX87_MEM(op) VX87_ONE(op, 0x06) VX87_ONE(op, 0x0E) VX87_ONE(op, 0x16) VX87_ONE(op, 0x1E) VX87_ONE(op, 0x26) VX87_ONE(op, 0x2E) VX87_ONE(op, 0x36) VX87_ONE(op, 0x3E)
    #define VX87_OP(op) VX87_8(op, 0xC0) VX87_8(op, 0xC8) VX87_8(op, 0xD0) VX87_8(op, 0xD8) VX87_8(op, 0xE0) VX87_8(op, 0xE8) VX87_8(op, 0xF0) VX87_8(op, 0xF8) VX87_MEM(op)
    static unsigned vx87_host(unsigned key, uint8_t* st, uint8_t* mem, unsigned flags)
    {
        unsigned long ax = (unsigned long)(flags & 0xFF) << 8;
        uint16_t saved;
        __asm__ volatile ("fnstcw %0" : "=m"(saved));
        switch (key) {
        VX87_OP(0xD8) VX87_OP(0xD9) VX87_OP(0xDA) VX87_OP(0xDB)
        VX87_OP(0xDC) VX87_OP(0xDD) VX87_OP(0xDE) VX87_OP(0xDF)
        default: break;
        }
        __asm__ volatile ("fldcw %0" : : "m"(saved));
        return (unsigned)(ax >> 8) & 0xFF;
    }
    /* The fast path (x87.pxi, x87_quick): with every exception masked
       nothing can trap, so no FRSTOR/FNSAVE: load the guest's control word,
       clear the flags, push the n operand registers (b, the deeper, then
       a) with FLD m80 (exact, no exception), run the instruction, read the
       status and pop what is left into out[] (top first).  The host stack
       is empty before and after; the control word is switched only when
       the guest's differs from the host's. */
    #define VXF_ONE(op, m) case ((op) << 8) | (m): __asm__ volatile (".byte " #op ", " #m : : "S"(mem) : "memory", "cc"); break;
    #define VXF_8(op, m) VXF_ONE(op, m + 0) VXF_ONE(op, m + 1) VXF_ONE(op, m + 2) VXF_ONE(op, m + 3) VXF_ONE(op, m + 4) VXF_ONE(op, m + 5) VXF_ONE(op, m + 6) VXF_ONE(op, m + 7)
    #define VXF_MEM(op) VXF_ONE(op, 0x06) VXF_ONE(op, 0x0E) VXF_ONE(op, 0x16) VXF_ONE(op, 0x1E) VXF_ONE(op, 0x26) VXF_ONE(op, 0x2E) VXF_ONE(op, 0x36) VXF_ONE(op, 0x3E)
    #define VXF_OP(op) VXF_8(op, 0xC0) VXF_8(op, 0xC8) VXF_8(op, 0xD0) VXF_8(op, 0xD8) VXF_8(op, 0xE0) VXF_8(op, 0xE8) VXF_8(op, 0xF0) VXF_8(op, 0xF8) VXF_MEM(op)
    static unsigned vx87_quick(unsigned key, uint16_t cw, const uint8_t* b, const uint8_t* a, int n,
                               uint8_t* mem, uint8_t* out, int* left)
    {
        uint16_t saved, sw0, sw1;
        int k, depth;
        __asm__ volatile ("fnstcw %0" : "=m"(saved));
        if (cw != saved)
            __asm__ volatile ("fldcw %0" : : "m"(cw));
        __asm__ volatile ("fnclex; fnstsw %0" : "=m"(sw0));
        if (n >= 2) __asm__ volatile ("fldt %0" : : "m"(*(const uint8_t (*)[10])b));
        if (n >= 1) __asm__ volatile ("fldt %0" : : "m"(*(const uint8_t (*)[10])a));
        switch (key) {
        VXF_OP(0xD8) VXF_OP(0xD9) VXF_OP(0xDA) VXF_OP(0xDB)
        VXF_OP(0xDC) VXF_OP(0xDD) VXF_OP(0xDE) VXF_OP(0xDF)
        default: break;
        }
        __asm__ volatile ("fnstsw %0" : "=m"(sw1));
        depth = (((sw0 >> 11) & 7) - ((sw1 >> 11) & 7)) & 7;
        for (k = 0; k < depth; k++)
            __asm__ volatile ("fstpt %0" : "=m"(*(uint8_t (*)[10])(out + 10 * k)));
        /* the flags this raised stay behind, masked (the next use clears them) */
        if (cw != saved)
            __asm__ volatile ("fldcw %0" : : "m"(saved));
        *left = depth;
        return sw1;
    }
    """
    unsigned vx87_host(unsigned key, uint8_t* st, uint8_t* mem, unsigned flags) nogil
    unsigned vx87_quick(unsigned key, uint16_t cw, const uint8_t* b, const uint8_t* a, int n,
                        uint8_t* mem, uint8_t* out, int* left) nogil


# What an x87 encoding is (X87_REG for the register forms, by opcode and
# ModRM low 6 bits; X87_MEM for the memory forms, by opcode and ModRM.reg).
cdef enum:
    XK_UD = 0           # reserved: #UD (the host CPU raises #UD for these too)
    XK_HOST = 1         # computed on the host
    XK_HOST_CMOV = 2    # on the host; needs CPUID.CMOV (FCMOVcc, FCOMI, FUCOMI)
    XK_HOST_FLAGS = 3   # FCOMI/FUCOMI(P): on the host, writes ZF PF CF; needs CMOV
    XK_FNCLEX = 4
    XK_FNINIT = 5
    XK_FNSTSW_AX = 6
    XK_LEGACY = 7       # DB E0 FNENI, DB E1 FNDISI, DB E4 FNSETPM: 8087/287 control
                        # instructions, no-ops since the 387 (no wait, no pointer update)
    XK_LOAD = 8         # memory forms: read X87_MSIZE bytes, then on the host
    XK_STORE = 9        # compute on the host, write X87_MSIZE bytes
    XK_STORE_SSE3 = 10  # FISTTP: needs CPUID.SSE3
    XK_FLDENV = 11
    XK_FLDCW = 12
    XK_FNSTENV = 13
    XK_FNSTCW = 14
    XK_FRSTOR = 15
    XK_FNSAVE = 16
    XK_FNSTSW_M = 17

cdef uint8_t X87_REG[8][64]
cdef uint8_t X87_MEM[8][8]
cdef uint8_t X87_MSIZE[8][8]

cdef enum:
    FSW_IE = 0x01
    FSW_EXC = 0x3F      # IE DE ZE OE UE PE
    FSW_SF = 0x40
    FSW_ES = 0x80
    FSW_B = 0x8000
    FSW_KEEP = 0x7F00   # C0 C1 C2 TOP C3


cdef void init_x87_tables() noexcept:
    """Register the escape opcodes D8-DF and WAIT (9B), and classify every
    x87 encoding (SDM Vol. 2 Tables A-7 to A-22)."""
    cdef int op, m, r
    memset(X87_REG, XK_HOST, sizeof(X87_REG))
    memset(X87_MEM, XK_LOAD, sizeof(X87_MEM))
    memset(X87_MSIZE, 0, sizeof(X87_MSIZE))
    for op in range(8):
        op_set(OP1, 0xD8 + op, h_x87, OPF_MODRM | OPF_MODRM_IMM, 0, FEAT_FPU)
    op_set(OP1, 0x9B, h_fwait, 0, 0, FEAT_FPU)
    # Memory operand sizes: m32fp, m32int, m64fp, m16int for the arithmetic
    # rows; the loads and stores of D9, DB, DD, DF by ModRM.reg.
    for r in range(8):
        X87_MSIZE[0][r] = 4
        X87_MSIZE[2][r] = 4
        X87_MSIZE[4][r] = 8
        X87_MSIZE[6][r] = 2
    # D9: /0 FLD m32fp, /1 reserved, /2 FST, /3 FSTP m32fp, /4 FLDENV,
    # /5 FLDCW, /6 FNSTENV, /7 FNSTCW.
    X87_MSIZE[1][0] = 4
    X87_MEM[1][1] = XK_UD
    X87_MSIZE[1][2] = 4
    X87_MSIZE[1][3] = 4
    X87_MEM[1][2] = XK_STORE
    X87_MEM[1][3] = XK_STORE
    X87_MEM[1][4] = XK_FLDENV
    X87_MEM[1][5] = XK_FLDCW
    X87_MEM[1][6] = XK_FNSTENV
    X87_MEM[1][7] = XK_FNSTCW
    # DB: /0 FILD m32int, /1 FISTTP m32int (SSE3), /2 FIST, /3 FISTP m32int,
    # /4 reserved, /5 FLD m80fp, /6 reserved, /7 FSTP m80fp.
    X87_MSIZE[3][0] = 4
    X87_MSIZE[3][1] = 4
    X87_MSIZE[3][2] = 4
    X87_MSIZE[3][3] = 4
    X87_MSIZE[3][5] = 10
    X87_MSIZE[3][7] = 10
    X87_MEM[3][1] = XK_STORE_SSE3
    X87_MEM[3][2] = XK_STORE
    X87_MEM[3][3] = XK_STORE
    X87_MEM[3][4] = XK_UD
    X87_MEM[3][6] = XK_UD
    X87_MEM[3][7] = XK_STORE
    # DD: /0 FLD m64fp, /1 FISTTP m64int (SSE3), /2 FST, /3 FSTP m64fp,
    # /4 FRSTOR, /5 reserved, /6 FNSAVE, /7 FNSTSW m16.
    X87_MSIZE[5][0] = 8
    X87_MSIZE[5][1] = 8
    X87_MSIZE[5][2] = 8
    X87_MSIZE[5][3] = 8
    X87_MEM[5][1] = XK_STORE_SSE3
    X87_MEM[5][2] = XK_STORE
    X87_MEM[5][3] = XK_STORE
    X87_MEM[5][4] = XK_FRSTOR
    X87_MEM[5][5] = XK_UD
    X87_MEM[5][6] = XK_FNSAVE
    X87_MEM[5][7] = XK_FNSTSW_M
    # DF: /0 FILD m16int, /1 FISTTP m16int (SSE3), /2 FIST, /3 FISTP m16int,
    # /4 FBLD m80bcd, /5 FILD m64int, /6 FBSTP m80bcd, /7 FISTP m64int.
    X87_MSIZE[7][0] = 2
    X87_MSIZE[7][1] = 2
    X87_MSIZE[7][2] = 2
    X87_MSIZE[7][3] = 2
    X87_MSIZE[7][4] = 10
    X87_MSIZE[7][5] = 8
    X87_MSIZE[7][6] = 10
    X87_MSIZE[7][7] = 8
    X87_MEM[7][1] = XK_STORE_SSE3
    X87_MEM[7][2] = XK_STORE
    X87_MEM[7][3] = XK_STORE
    X87_MEM[7][6] = XK_STORE
    X87_MEM[7][7] = XK_STORE
    # Register forms.  Every cell of D8, DC, DE (but DE D8-DF) and DD C0-EF
    # is an instruction (the cells the SDM leaves blank there - DC D0-DF,
    # DD C8-CF, DE D0-D7 - are the aliases FCOM, FCOMP, FXCH and FCOMP that
    # Intel and AMD processors execute as such).  Blank cells elsewhere are
    # #UD, as on the processor (checked on the host CPU, tests/test_insn_x87.py).
    # D9: C0 FLD, C8 FXCH, D0 FNOP, D8-DF FSTP (alias), E0 FCHS, E1 FABS,
    # E4 FTST, E5 FXAM, E8-EE the constants, F0-FF the rest.
    for m in range(0x11, 0x18):
        X87_REG[1][m] = XK_UD
    for m in (0x22, 0x23, 0x26, 0x27, 0x2F):
        X87_REG[1][m] = XK_UD
    # DA: C0-DF FCMOVB/E/BE/U, E9 FUCOMPP.
    for m in range(0x00, 0x20):
        X87_REG[2][m] = XK_HOST_CMOV
    for m in range(0x20, 0x40):
        X87_REG[2][m] = XK_UD
    X87_REG[2][0x29] = XK_HOST
    # DB: C0-DF FCMOVNB/NE/NBE/NU, E0 E1 E4 legacy, E2 FNCLEX, E3 FNINIT,
    # E8-EF FUCOMI, F0-F7 FCOMI.
    for m in range(0x00, 0x20):
        X87_REG[3][m] = XK_HOST_CMOV
    for m in range(0x20, 0x28):
        X87_REG[3][m] = XK_UD
    X87_REG[3][0x20] = XK_LEGACY
    X87_REG[3][0x21] = XK_LEGACY
    X87_REG[3][0x22] = XK_FNCLEX
    X87_REG[3][0x23] = XK_FNINIT
    X87_REG[3][0x24] = XK_LEGACY
    for m in range(0x28, 0x38):
        X87_REG[3][m] = XK_HOST_FLAGS
    for m in range(0x38, 0x40):
        X87_REG[3][m] = XK_UD
    # DD: C0 FFREE, C8 FXCH (alias), D0 FST, D8 FSTP, E0 FUCOM, E8 FUCOMP.
    for m in range(0x30, 0x40):
        X87_REG[5][m] = XK_UD
    # DE: D9 FCOMPP; D8 and DA-DF blank.
    for m in range(0x18, 0x20):
        X87_REG[6][m] = XK_UD
    X87_REG[6][0x19] = XK_HOST
    # DF: C0 FFREEP, C8 FXCH (alias), D0/D8 FSTP (aliases), E0 FNSTSW AX,
    # E8 FUCOMIP, F0 FCOMIP.
    for m in range(0x20, 0x28):
        X87_REG[7][m] = XK_UD
    X87_REG[7][0x20] = XK_FNSTSW_AX
    for m in range(0x28, 0x38):
        X87_REG[7][m] = XK_HOST_FLAGS
    for m in range(0x38, 0x40):
        X87_REG[7][m] = XK_UD


# ---------------------------------------------------------------------------
# State helpers

cdef inline int x87_top(Cpu* c) noexcept nogil:
    return (c.fpu.fsw >> 11) & 7


cdef inline uint16_t x87_fcw(uint16_t v) noexcept nogil:
    """A control word as loaded: the reserved bit 6 reads as 1 and bits 15:13
    as 0 (SDM Vol. 1 Figure 8-6; what the host processor does too)."""
    return (v & 0x1F3F) | 0x40


cdef inline void x87_summary(Cpu* c) noexcept nogil:
    """ES and B from the exception flags and masks (see the file comment)."""
    if c.fpu.fsw & ~c.fpu.fcw & FSW_EXC:
        c.fpu.fsw |= FSW_ES | FSW_B
    else:
        c.fpu.fsw &= ~(<uint16_t>(FSW_ES | FSW_B))


cdef inline int x87_tag_of(const uint8_t* r) noexcept nogil:
    """The tag a non-empty register's contents give (SDM Vol. 1 8.1.7):
    00 valid (a normal), 01 zero, 10 special (NaN, infinity, denormal,
    pseudo-denormal, unnormal and the other unsupported encodings)."""
    cdef uint16_t se
    cdef uint64_t sig
    memcpy(&se, r + 8, 2)
    memcpy(&sig, r, 8)
    se &= 0x7FFF
    if se == 0x7FFF:
        return 2
    if se == 0:
        return 1 if sig == 0 else 2
    return 0 if (sig >> 63) else 2


cdef uint16_t x87_tags(Cpu* c, uint16_t ftw) noexcept nogil:
    """A full tag word with the non-empty tags of `ftw` recomputed from the
    registers' contents: what FNSTENV/FNSAVE store, and what the model keeps
    (the processor itself remembers only empty or not)."""
    cdef uint16_t out = 0
    cdef int i
    for i in range(8):
        if ((ftw >> (2 * i)) & 3) == 3:
            out |= <uint16_t>(3 << (2 * i))
        else:
            out |= <uint16_t>(x87_tag_of(c.fpu.st[i]) << (2 * i))
    return out


cdef void x87_init(Cpu* c) noexcept nogil:
    """FNINIT (SDM Vol. 2 FINIT/FNINIT, Vol. 1 Table 8-?): FCW 037FH, FSW 0,
    all registers empty, the pointers and FOP cleared; contents kept."""
    c.fpu.fcw = 0x37F
    c.fpu.fsw = 0
    c.fpu.ftw = 0xFFFF
    c.fpu.fop = 0
    c.fpu.fip = 0
    c.fpu.fdp = 0
    c.fpu.fcs = 0
    c.fpu.fds = 0


cdef inline void x87_pointers(Cpu* c, Insn* d, uint64_t off) noexcept nogil:
    """After a non-control instruction: FIP/FCS (the instruction, prefixes
    included), FOP (bits 2:0 of the first opcode byte and the ModRM byte,
    SDM Vol. 1 8.1.9), and for a memory form FDP/FDS (its operand).  A
    register form leaves FDP/FDS alone."""
    c.fpu.fip = c.rip
    c.fpu.fcs = c.seg[S_CS].sel
    c.fpu.fop = <uint16_t>(((d.op & 7) << 8) | (d.imm & 0xFF))
    if d.mod != 3:
        c.fpu.fdp = off
        c.fpu.fds = c.seg[d.seg].sel


cdef inline void x87_pack(Cpu* c, uint8_t* s) noexcept nogil:
    """The guest's state as a 32-bit FSAVE image for the host: its control
    word, its condition codes and TOP (exception flags clear, so nothing is
    pending on the host), its tags and registers in stack order."""
    cdef uint16_t w
    cdef int top = x87_top(c), i
    memset(s, 0, 28)
    w = c.fpu.fcw
    memcpy(s, &w, 2)
    w = c.fpu.fsw & FSW_KEEP
    memcpy(s + 4, &w, 2)
    w = c.fpu.ftw
    memcpy(s + 8, &w, 2)
    for i in range(8):
        memcpy(s + 28 + 10 * i, c.fpu.st[(top + i) & 7], 10)


cdef inline void x87_unpack(Cpu* c, const uint8_t* s) noexcept nogil:
    """Take the host's result: registers, tags, condition codes and TOP, and
    the exception flags raised (sticky: ORed into the guest's)."""
    cdef uint16_t fsw, ftw
    cdef int top, i
    memcpy(&fsw, s + 4, 2)
    memcpy(&ftw, s + 8, 2)
    top = (fsw >> 11) & 7
    for i in range(8):
        memcpy(c.fpu.st[(top + i) & 7], s + 28 + 10 * i, 10)
    c.fpu.ftw = ftw
    c.fpu.fsw = (fsw & (FSW_KEEP | FSW_EXC | FSW_SF)) | (c.fpu.fsw & (FSW_EXC | FSW_SF))
    x87_summary(c)


cdef inline int x87_mem_read(Cpu* c, Insn* d, uint64_t off, int n, uint8_t* buf) noexcept nogil:
    """n bytes (2, 4, 8, 10, or an image) of the memory operand at `off`."""
    cdef uint64_t v
    cdef int k = 0, m, rc
    while k < n:
        m = 8 if n - k >= 8 else (4 if n - k >= 4 else 2)
        rc = mem_read(c, d.seg, (off + k) & SIZE_MASK[d.asz], m, &v)
        if rc:
            return rc
        memcpy(buf + k, &v, m)
        k += m
    return RC_OK


cdef inline int x87_mem_write(Cpu* c, Insn* d, uint64_t off, int n, const uint8_t* buf) noexcept nogil:
    """Write n bytes to the memory operand; the whole destination is checked
    first, so a fault leaves memory and the FPU as they were."""
    cdef uint64_t v
    cdef int k = 0, m, rc
    rc = mem_check_write(c, d.seg, off, n)
    if rc:
        return rc
    while k < n:
        m = 8 if n - k >= 8 else (4 if n - k >= 4 else 2)
        v = 0
        memcpy(&v, buf + k, m)
        rc = mem_write(c, d.seg, (off + k) & SIZE_MASK[d.asz], m, v)
        if rc:
            return rc
        k += m
    return RC_OK


# ---------------------------------------------------------------------------
# Environment and state images (SDM Vol. 1 8.1.10, Figures 8-9 to 8-12)

cdef inline int x87_real_format(Cpu* c) noexcept nogil:
    """Real-address and virtual-8086 mode use the real-mode layouts."""
    return not (c.cr0 & CR0_PE) or (c.rflags & F_VM) != 0


cdef inline void put16(uint8_t* p, uint32_t v) noexcept nogil:
    cdef uint16_t w = <uint16_t>v
    memcpy(p, &w, 2)


cdef inline void put32(uint8_t* p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)


cdef inline uint32_t get16(const uint8_t* p) noexcept nogil:
    cdef uint16_t w
    memcpy(&w, p, 2)
    return w


cdef inline uint32_t get32(const uint8_t* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef int x87_env_store(Cpu* c, uint8_t* p, int bits32) noexcept nogil:
    """The environment image: 28 bytes (32-bit operand size; 64-bit mode uses
    this format too) or 14 bytes (16-bit).  The reserved upper halves of the
    32-bit format's words are stored as 1s, as the processors do.  Returns
    its size."""
    cdef uint16_t ftw = x87_tags(c, c.fpu.ftw)
    cdef uint32_t ip, dp
    cdef int real = x87_real_format(c)
    if real:
        # the 20/32-bit linear addresses: selector * 16 + offset
        ip = <uint32_t>((<uint64_t>c.fpu.fcs << 4) + c.fpu.fip)
        dp = <uint32_t>((<uint64_t>c.fpu.fds << 4) + c.fpu.fdp)
    else:
        ip = <uint32_t>c.fpu.fip
        dp = <uint32_t>c.fpu.fdp
    if bits32:
        put32(p + 0, 0xFFFF0000u | c.fpu.fcw)
        put32(p + 4, 0xFFFF0000u | c.fpu.fsw)
        put32(p + 8, 0xFFFF0000u | ftw)
        if real:
            put32(p + 12, 0xFFFF0000u | (ip & 0xFFFF))
            put32(p + 16, ((ip >> 16) << 12) | (c.fpu.fop & 0x7FF))
            put32(p + 20, 0xFFFF0000u | (dp & 0xFFFF))
            put32(p + 24, (dp >> 16) << 12)
        else:
            put32(p + 12, ip)
            put32(p + 16, c.fpu.fcs | (<uint32_t>(c.fpu.fop & 0x7FF) << 16))
            put32(p + 20, dp)
            put32(p + 24, 0xFFFF0000u | c.fpu.fds)
        return 28
    put16(p + 0, c.fpu.fcw)
    put16(p + 2, c.fpu.fsw)
    put16(p + 4, ftw)
    if real:
        put16(p + 6, ip)
        put16(p + 8, (((ip >> 16) & 0xF) << 12) | (c.fpu.fop & 0x7FF))
        put16(p + 10, dp)
        put16(p + 12, ((dp >> 16) & 0xF) << 12)
    else:
        put16(p + 6, ip)
        put16(p + 8, c.fpu.fcs)
        put16(p + 10, dp)
        put16(p + 12, c.fpu.fds)
    return 14


cdef void x87_env_load(Cpu* c, const uint8_t* p, int bits32) noexcept nogil:
    """Load an environment image (FLDENV, FRSTOR).  Only empty / not empty
    of each tag is taken (x87_tags makes the rest from the contents, which
    FRSTOR loads before this is called); ES and B follow the loaded flags
    and masks."""
    cdef int real = x87_real_format(c)
    cdef uint32_t w
    if bits32:
        c.fpu.fcw = x87_fcw(<uint16_t>get16(p + 0))
        c.fpu.fsw = <uint16_t>get16(p + 4)
        c.fpu.ftw = <uint16_t>get16(p + 8)
        if real:
            w = get32(p + 16)
            c.fpu.fip = get16(p + 12) | (((w >> 12) & 0xFFFF) << 16)
            c.fpu.fop = w & 0x7FF
            c.fpu.fcs = 0
            c.fpu.fdp = get16(p + 20) | (((get32(p + 24) >> 12) & 0xFFFF) << 16)
            c.fpu.fds = 0
        else:
            c.fpu.fip = get32(p + 12)
            w = get32(p + 16)
            c.fpu.fcs = <uint16_t>w
            c.fpu.fop = (w >> 16) & 0x7FF
            c.fpu.fdp = get32(p + 20)
            c.fpu.fds = <uint16_t>get16(p + 24)
    else:
        c.fpu.fcw = x87_fcw(<uint16_t>get16(p + 0))
        c.fpu.fsw = <uint16_t>get16(p + 2)
        c.fpu.ftw = <uint16_t>get16(p + 4)
        if real:
            w = get16(p + 8)
            c.fpu.fip = get16(p + 6) | (((w >> 12) & 0xF) << 16)
            c.fpu.fop = w & 0x7FF
            c.fpu.fcs = 0
            c.fpu.fdp = get16(p + 10) | (((get16(p + 12) >> 12) & 0xF) << 16)
            c.fpu.fds = 0
        else:
            c.fpu.fip = get16(p + 6)
            c.fpu.fop = 0
            c.fpu.fcs = <uint16_t>get16(p + 8)
            c.fpu.fdp = get16(p + 10)
            c.fpu.fds = <uint16_t>get16(p + 12)
    c.fpu.ftw = x87_tags(c, c.fpu.ftw)
    x87_summary(c)


# ---------------------------------------------------------------------------
# Handlers

cdef int x87_control(Cpu* c, Insn* d, int kind, uint64_t off) noexcept nogil:
    """The control instructions with a memory operand: FLDENV, FLDCW,
    FNSTENV, FNSTCW, FRSTOR, FNSAVE, FNSTSW m16."""
    cdef uint8_t img[108]
    cdef uint64_t v
    cdef int rc, n, i, top
    cdef int bits32 = d.osz != 2
    if kind == XK_FNSTCW:
        return mem_write(c, d.seg, off, 2, c.fpu.fcw)
    if kind == XK_FNSTSW_M:
        return mem_write(c, d.seg, off, 2, c.fpu.fsw)
    if kind == XK_FLDCW:
        rc = mem_read(c, d.seg, off, 2, &v)
        if rc:
            return rc
        c.fpu.fcw = x87_fcw(<uint16_t>v)
        x87_summary(c)
        return RC_OK
    if kind == XK_FNSTENV or kind == XK_FNSAVE:
        n = x87_env_store(c, img, bits32)
        if kind == XK_FNSAVE:
            top = x87_top(c)
            for i in range(8):
                memcpy(img + n + 10 * i, c.fpu.st[(top + i) & 7], 10)
            n += 80
        rc = x87_mem_write(c, d, off, n, img)
        if rc:
            return rc
        if kind == XK_FNSAVE:
            x87_init(c)
        else:
            # FNSTENV then masks every exception (SDM Vol. 2 FSTENV/FNSTENV).
            c.fpu.fcw |= FSW_EXC
            x87_summary(c)
        return RC_OK
    # FLDENV, FRSTOR: read the whole image before changing anything.
    n = 28 if bits32 else 14
    if kind == XK_FRSTOR:
        n += 80
    rc = x87_mem_read(c, d, off, n, img)
    if rc:
        return rc
    if kind == XK_FRSTOR:
        top = (get16(img + (4 if bits32 else 2)) >> 11) & 7
        for i in range(8):
            memcpy(c.fpu.st[(top + i) & 7], img + (28 if bits32 else 14) + 10 * i, 10)
    x87_env_load(c, img, bits32)
    return RC_OK


cdef inline int x87_empty(Cpu* c, int r) noexcept nogil:
    return ((c.fpu.ftw >> (2 * (r & 7))) & 3) == 3


cdef inline void x87_settag(Cpu* c, int r) noexcept nogil:
    """Tag physical register r from its contents."""
    r &= 7
    c.fpu.ftw = (c.fpu.ftw & ~(<uint16_t>(3 << (2 * r)))) | <uint16_t>(x87_tag_of(c.fpu.st[r]) << (2 * r))


cdef int x87_fast(Cpu* c, int op, int m) noexcept nogil:
    """The register moves that cannot raise a numeric exception, done here
    rather than on the host (the host's FRSTOR and FNSAVE cost far more than
    they do), when no stack fault can occur: FXCH, FLD ST(i), FST/FSTP ST(i),
    FCHS, FABS, FLD1, FLDZ.  Each sets C1 to 0 and leaves C0, C2, C3 (SDM
    Vol. 2: "undefined"; the host keeps them).  Returns 1 when it did the
    instruction, 0 to leave it to the host (which then produces the stack
    fault and its masked or unmasked response)."""
    cdef int top = x87_top(c)
    cdef int i = m & 7
    cdef uint8_t tmp[16]
    cdef uint16_t t
    if op == 1 and (m & 0xF8) == 0xC8:                  # D9 C8+i FXCH ST(i)
        if x87_empty(c, top) or x87_empty(c, top + i):
            return 0
        memcpy(tmp, c.fpu.st[top], 10)
        memcpy(c.fpu.st[top], c.fpu.st[(top + i) & 7], 10)
        memcpy(c.fpu.st[(top + i) & 7], tmp, 10)
        x87_settag(c, top)
        x87_settag(c, top + i)
    elif op == 1 and (m & 0xF8) == 0xC0:                # D9 C0+i FLD ST(i)
        if x87_empty(c, top + i) or not x87_empty(c, top - 1):
            return 0
        memcpy(c.fpu.st[(top - 1) & 7], c.fpu.st[(top + i) & 7], 10)
        top = (top - 1) & 7
        x87_settag(c, top)
    elif op == 5 and (m & 0xF0) == 0xD0:                # DD D0+i FST, DD D8+i FSTP ST(i)
        if x87_empty(c, top):
            return 0
        memcpy(c.fpu.st[(top + i) & 7], c.fpu.st[top], 10)
        x87_settag(c, top + i)
        if m & 8:
            c.fpu.ftw |= <uint16_t>(3 << (2 * top))
            top = (top + 1) & 7
    elif op == 1 and (m == 0xE0 or m == 0xE1):         # FCHS, FABS
        if x87_empty(c, top):
            return 0
        if m == 0xE0:
            c.fpu.st[top][9] ^= 0x80
        else:
            c.fpu.st[top][9] &= 0x7F
    elif op == 1 and (m == 0xE8 or m == 0xEE):         # FLD1, FLDZ
        if not x87_empty(c, top - 1):
            return 0
        top = (top - 1) & 7
        memset(c.fpu.st[top], 0, 10)
        if m == 0xE8:
            c.fpu.st[top][7] = 0x80                     # 1.0: significand 8000...0H,
            c.fpu.st[top][8] = 0xFF                     # exponent 3FFFH
            c.fpu.st[top][9] = 0x3F
        x87_settag(c, top)
    else:
        return 0
    t = c.fpu.fsw & ~(<uint16_t>(0x3800 | 0x200))
    c.fpu.fsw = t | <uint16_t>(top << 11)
    return 1


cdef int x87_quick_shape(int op, int mod, int modrm, int kind, int* nload, int* idx, int* cc,
                         unsigned* key) noexcept nogil:
    """Whether the fast path (vx87_quick) can run this instruction, and how:
    nload operand registers pushed on the host (0: the instruction pushes
    one itself; 1: ST(0); 2: ST(idx) below ST(0), the ModRM then naming
    ST(1)), cc = 1 when it defines C0, C2 and C3 (the compares, FTST,
    FXAM), else the guest keeps its own (SDM: "undefined"; the host keeps
    them too).  Instructions that push more than one value, FCOMI/FCMOV
    (flags), FXCH/FFREE/FINCSTP/FDECSTP, FPREM/FPREM1 (which keep C0-C3
    for a NaN operand) and the transcendentals stay on the full path."""
    cdef int g = (modrm >> 3) & 7
    cdef int i = modrm & 7
    cdef int m = modrm & 0x3F
    cc[0] = 0
    idx[0] = 0
    if mod != 3:
        if kind == XK_STORE or kind == XK_STORE_SSE3:
            nload[0] = 1
        elif op & 1:
            nload[0] = 0                          # FLD, FILD, FBLD: a push
        else:
            nload[0] = 1                          # arithmetic and FCOM with m32/m64/m16/m32int
            cc[0] = g == 2 or g == 3
        key[0] = <unsigned>((0xD8 + op) << 8 | (g << 3) | 6)
        return 1
    if op == 0 or op == 4 or (op == 6 and i != 0 and g != 3) or (op == 6 and m == 0x19) or \
            (op == 5 and (g == 4 or g == 5)) or (op == 2 and m == 0x29):
        idx[0] = i
        nload[0] = 2 if i else 1
        cc[0] = g == 2 or g == 3 or op == 5 or op == 2
        key[0] = <unsigned>((0xD8 + op) << 8 | 0xC0 | (g << 3) | (1 if i else 0))
        return 1
    if op == 1:
        key[0] = <unsigned>(0xD900 | 0xC0 | m)
        if m == 0x20 or m == 0x21 or m == 0x3A or m == 0x3C:     # FCHS FABS FSQRT FRNDINT
            nload[0] = 1
            return 1
        if m == 0x24 or m == 0x25:                               # FTST FXAM
            nload[0] = 1
            cc[0] = 1
            return 1
        if m == 0x3D:                                            # FSCALE
            nload[0] = 2
            idx[0] = 1
            return 1
        if 0x28 <= m <= 0x2E:                                    # the constants
            nload[0] = 0
            return 1
    return 0


cdef int x87_quick(Cpu* c, Insn* d, int kind, int op, int modrm, uint64_t off, int n) noexcept nogil:
    """Run the instruction by the fast path when every exception is masked
    and no stack fault can occur: its registers are non-empty and a push has
    an empty register to go to (x87_quick_shape).  Returns -1 to leave it to
    the full path, else RC_OK or the fault of its memory operand."""
    cdef int nload, idx, cc, left, rc, k, r, ta
    cdef int top = x87_top(c)
    cdef unsigned key, sw
    cdef uint8_t mem[16]
    cdef uint8_t out[40]
    cdef int phys[3]
    if not x87_quick_shape(op, d.mod, modrm, kind, &nload, &idx, &cc, &key):
        return -1
    if nload >= 1 and x87_empty(c, top):
        return -1
    if nload == 2 and x87_empty(c, top + idx):
        return -1
    if nload == 0 and not x87_empty(c, top - 1):
        return -1
    memset(mem, 0, 16)
    if d.mod != 3:
        if kind == XK_LOAD:
            rc = x87_mem_read(c, d, off, n, mem)
        else:
            rc = mem_check_write(c, d.seg, off, n)
        if rc:
            return rc
    sw = vx87_quick(key, c.fpu.fcw, c.fpu.st[(top + idx) & 7], c.fpu.st[top], nload, mem, out, &left)
    if cc and (sw & FSW_IE):
        # An invalid operand may leave C0-C3 as they were (FPREM does), and
        # the host's were not the guest's: the full path, which loads them.
        return -1
    if d.mod != 3 and kind != XK_LOAD:
        rc = x87_mem_write(c, d, off, n, mem)
        if rc:
            return rc
    # Host stack positions relative to the guest's ST(0): -1 a push, 0 ST(0),
    # 1 ST(idx); ta = where the host's top ended (pops positive).
    phys[0] = (top - 1) & 7
    phys[1] = top
    phys[2] = (top + idx) & 7
    ta = nload - left
    for k in range(left):
        r = phys[ta + k + 1]
        memcpy(c.fpu.st[r], out + 10 * k, 10)
        x87_settag(c, r)
    for k in range(ta if ta > 0 else 0):
        r = phys[k + 1]
        c.fpu.ftw |= <uint16_t>(3 << (2 * r))
    k = (0x4700 if cc else 0x0200) | 0x3800
    c.fpu.fsw = (c.fpu.fsw & ~(<uint16_t>k)) | <uint16_t>(sw & k & ~0x3800) | \
        <uint16_t>(((top + ta) & 7) << 11) | <uint16_t>(sw & FSW_EXC)
    x87_summary(c)
    return RC_OK


cdef int h_x87(Cpu* c, Insn* d) noexcept nogil:
    """D8-DF: every x87 instruction (see the file comment)."""
    cdef uint8_t s[108]
    cdef uint8_t s2[108]
    cdef uint8_t mem[16]
    cdef uint8_t mem2[16]
    cdef int op = d.op & 7
    cdef int modrm = <int>(d.imm & 0xFF)
    cdef int kind, n = 0, rc
    cdef unsigned key, fl
    cdef uint64_t off = 0, v
    if d.mod == 3:
        kind = X87_REG[op][modrm & 0x3F]
        key = (0xD8 + op) << 8 | (0xC0 | (modrm & 0x3F))
    else:
        kind = X87_MEM[op][(modrm >> 3) & 7]
        n = X87_MSIZE[op][(modrm >> 3) & 7]
        key = (0xD8 + op) << 8 | (modrm & 0x38) | 6
    # Reserved encodings and features the model lacks: #UD (before #NM).
    if kind == XK_UD:
        return raise_ud(c)
    if (kind == XK_HOST_CMOV or kind == XK_HOST_FLAGS) and not cpu_has(c, FEAT_CMOV):
        return raise_ud(c)
    if kind == XK_STORE_SSE3 and not cpu_has(c, FEAT_SSE3):
        return raise_ud(c)
    # CR0.EM or CR0.TS: #NM for every x87 instruction (SDM Vol. 3 2.5, CR0).
    if c.cr0 & (CR0_EM | CR0_TS):
        return raise_exc(c, EXC_NM, 0, 0)
    # A pending unmasked exception: #MF before any waiting instruction; the
    # no-wait control instructions do not look (SDM Vol. 1 8.6, 8.7).
    if (c.fpu.fsw & FSW_ES) and (c.cr0 & CR0_NE) and not (
            kind == XK_FNCLEX or kind == XK_FNINIT or kind == XK_FNSTSW_AX or kind == XK_LEGACY or
            kind == XK_FNSTENV or kind == XK_FNSTCW or kind == XK_FNSAVE or kind == XK_FNSTSW_M):
        return raise_exc(c, EXC_MF, 0, 0)
    if d.mod != 3:
        off = ea_offset(c, d)
    if kind == XK_FNINIT:
        x87_init(c)
        return RC_OK
    if kind == XK_FNCLEX:
        c.fpu.fsw &= ~(<uint16_t>(FSW_EXC | FSW_SF | FSW_ES | FSW_B))
        return RC_OK
    if kind == XK_FNSTSW_AX:
        set_reg(c, R_AX, 2, c.fpu.fsw)
        return RC_OK
    if kind == XK_LEGACY:
        return RC_OK
    if kind >= XK_FLDENV:
        return x87_control(c, d, kind, off)
    # Computational instructions: on the host.
    if kind == XK_HOST and d.mod == 3 and x87_fast(c, op, 0xC0 | (modrm & 0x3F)):
        x87_pointers(c, d, off)
        return RC_OK
    if (c.fpu.fcw & FSW_EXC) == FSW_EXC and (kind == XK_HOST or kind == XK_LOAD or kind == XK_STORE or
                                              kind == XK_STORE_SSE3):
        rc = x87_quick(c, d, kind, op, modrm, off, n)
        if rc >= 0:
            if rc == RC_OK:
                x87_pointers(c, d, off)
            return rc
    memset(mem, 0, 16)
    if kind == XK_LOAD:
        rc = x87_mem_read(c, d, off, n, mem)
        if rc:
            return rc
    elif kind == XK_STORE or kind == XK_STORE_SSE3:
        rc = mem_check_write(c, d.seg, off, n)
        if rc:
            return rc
    x87_pack(c, s)
    if kind == XK_STORE or kind == XK_STORE_SSE3:
        memcpy(s2, s, 108)
    fl = vx87_host(key, s, mem, <unsigned>(c.rflags & 0xFF) | 0x90)
    if kind == XK_STORE or kind == XK_STORE_SSE3:
        # A store that raised an unmasked exception may have left memory
        # alone (#I, #O, #U: SDM Vol. 1 8.5): run it again over other bytes;
        # the host wrote the operand if both runs leave the same bytes.
        if get16(s + 4) & FSW_ES:
            memset(mem2, 0xFF, 16)
            vx87_host(key, s2, mem2, <unsigned>(c.rflags & 0xFF) | 0x90)
            if memcmp(mem, mem2, n) != 0:
                n = 0
        if n:
            rc = x87_mem_write(c, d, off, n, mem)
            if rc:
                return rc
    x87_unpack(c, s)
    if kind == XK_HOST_FLAGS and not (fl & 0x80):
        # FCOMI/FUCOMI wrote ZF, PF, CF and cleared SF and AF (the input had
        # them set); OF is cleared as well (SDM Vol. 2 FCOMI).  Without the
        # write (an unmasked #I), RFLAGS stay.
        c.rflags = (c.rflags & ~(<uint64_t>F_STATUS)) | (fl & 0x45)
    x87_pointers(c, d, off)
    return RC_OK


cdef int h_fwait(Cpu* c, Insn* d) noexcept nogil:
    """9B WAIT/FWAIT: #NM when CR0.MP and CR0.TS are both set, then #MF for a
    pending unmasked x87 exception (with CR0.NE = 1; see the file comment)."""
    if (c.cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS):
        return raise_exc(c, EXC_NM, 0, 0)
    if (c.fpu.fsw & FSW_ES) and (c.cr0 & CR0_NE):
        return raise_exc(c, EXC_MF, 0, 0)
    return RC_OK


# ---------------------------------------------------------------------------
# The Python view (vtx/spec/registers.py: fcw fsw ftw st0-st7)

cdef object x87_get(Cpu* c, str name):
    """st0-st7: ST(i), the register TOP + i, as an 80-bit integer (sign bit
    79, exponent 78:64, significand 63:0)."""
    cdef int i = int(name[2:])
    cdef uint64_t lo
    cdef uint16_t hi
    memcpy(&lo, c.fpu.st[(x87_top(c) + i) & 7], 8)
    memcpy(&hi, c.fpu.st[(x87_top(c) + i) & 7] + 8, 2)
    return (<object>hi << 64) | lo


cdef object x87_set(Cpu* c, str name, object value):
    """Write ST(i) and tag it non-empty (its tag from the contents)."""
    cdef int i = int(name[2:])
    cdef int r = (x87_top(c) + i) & 7
    cdef uint64_t lo, hi
    if type(value) is not int or value < 0 or value >> 80:
        raise ValueError(f"{value!r} is not an 80-bit value for {name}")
    lo = value & 0xFFFFFFFFFFFFFFFF
    hi = value >> 64
    memcpy(c.fpu.st[r], &lo, 8)
    memcpy(c.fpu.st[r] + 8, &hi, 2)
    c.fpu.ftw = (c.fpu.ftw & ~(<uint16_t>(3 << (2 * r)))) | <uint16_t>(x87_tag_of(c.fpu.st[r]) << (2 * r))


def _x87_read(Machine machine, str name):
    """An x87 register of a machine's processor by its API name (fcw, fsw,
    ftw, st0-st7; for vtx.BareCpu)."""
    cdef Cpu* c = machine.c
    if name == "fcw":
        return c.fpu.fcw
    if name == "fsw":
        return c.fpu.fsw
    if name == "ftw":
        return c.fpu.ftw
    return x87_get(c, name)


def _x87_write(Machine machine, str name, value):
    cdef Cpu* c = machine.c
    if c.in_guest:
        raise VmStateError("the processor is running (run() is active in another thread)")
    if name in ("fcw", "fsw", "ftw"):
        v = _fit(value, 16, name)
        if name == "fcw":
            c.fpu.fcw = v
        elif name == "fsw":
            c.fpu.fsw = v
        else:
            c.fpu.ftw = v
        return
    x87_set(c, name, value)
