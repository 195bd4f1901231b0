"""The streams campaign: random and mutated instruction streams.

A stream case is code bytes placed somewhere in guest RAM (often at a page
boundary or in the very last bytes of RAM) of one of the three modes, with
random initial registers (RCX large for REP, RSP at the end of RAM, ...), a
random exception bitmap, sometimes an IVT/IDT whose vectors lead back into
the code or to an IRET (so that exceptions are delivered through the guest
and can loop), and an exit handler that randomly resumes, retries or stops.

The code comes from three generators: random bytes; "biased" streams built
from prefixes, opcode bytes, ModRM/SIB and immediates so that more of them
decode into real instructions; and mutations (bit flips, byte insert,
delete and overwrite, splices, duplication) of the seed corpus in
corpus.py.
"""

import struct

from vtx.spec import EntryControls, ProcBased, ProcBased2, VmcsField as F

from .cases import BITS
from .corpus import BY_BITS

LEGACY_PREFIXES = (0x66, 0x67, 0xF2, 0xF3, 0xF0, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65)

# One-byte opcodes the model implements that are most likely to stress it:
# string instructions, INT/IRET, stack, branches, loops, segment moves, far
# control transfers, flags, I/O, HLT.  Half of the one-byte opcodes are drawn
# from here, half uniformly.
HOT_OPCODES = (
    0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF, 0x6C, 0x6D, 0x6E, 0x6F,
    0xCC, 0xCD, 0xCE, 0xCF, 0xF1, 0x50, 0x58, 0x60, 0x61, 0x68, 0x6A, 0x8F, 0x9C, 0x9D,
    0xC8, 0xC9, 0xE8, 0xE9, 0xEB, 0x74, 0x75, 0xE0, 0xE1, 0xE2, 0xE3, 0xC2, 0xC3, 0xCA,
    0xCB, 0x9A, 0xEA, 0xFF, 0x8E, 0x8C, 0x17, 0x1F, 0x07, 0xC4, 0xC5, 0xFA, 0xFB, 0xFC,
    0xFD, 0xE4, 0xE6, 0xEC, 0xEE, 0xF4, 0xF6, 0xF7, 0x88, 0x89, 0x8A, 0x8B, 0xC6, 0xC7,
    0x86, 0x87, 0x8D, 0x62, 0x9E, 0x9F, 0xD7,
    0x27, 0x2F, 0x37, 0x3F, 0xD4, 0xD5, 0xD6,      # BCD, SALC's blank cell (core/insn/misc.pxi)
)
# The x87 escape opcodes and WAIT (core/insn/x87.pxi): every ModRM of D8-DF
# decodes to something (an instruction, an alias or #UD).
HOT_OPCODES += (0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0x9B)
# Two-byte (0F xx) opcodes: system instructions (LGDT/LIDT group 0F 01,
# MOV CR/DR, CPUID, RDTSC, RDMSR/WRMSR, UD2, SYSCALL, VMX), bit ops, CMPXCHG.
HOT_0F = (0x00, 0x01, 0x20, 0x21, 0x22, 0x23, 0xA2, 0x31, 0x32, 0x30, 0x0B, 0x05, 0x07, 0x06,
          0xB0, 0xB1, 0xC0, 0xC1, 0xA3, 0xAB, 0xB3, 0xBB, 0xBA, 0xBC, 0xBD, 0xA4, 0xA5, 0xAC,
          0x80, 0x84, 0x85, 0x8F, 0x90, 0x94, 0x40, 0x44, 0xB6, 0xB7, 0xBE, 0xBF, 0xA0, 0xA1,
          0xA8, 0xA9, 0x78, 0x79, 0x08, 0x09, 0x0D, 0x1F, 0xC7, 0xAF, 0x02, 0x03,
          0xB8, 0xB9, 0xFF,                              # POPCNT, UD1, UD0 (core/insn/misc.pxi)
          # MMX/SSE integer (with 66/F2/F3 from the prefixes) and the
          # three-byte maps 0F 38 and 0F 3A, whose third byte follows
          0x38, 0x3A, 0x38, 0x3A, 0x60, 0x63, 0x6E, 0x6F, 0x70, 0x71, 0x73, 0x77, 0x7E, 0x7F,
          0xC4, 0xC5, 0xD6, 0xD7, 0xE7, 0xF7, 0xFC)
# Third bytes of 0F 38 (SSSE3, SSE4.1/4.2; MOVBE, CRC32, ADCX/ADOX; the
# VMX/INVPCID ones) and 0F 3A (PALIGNR, blends, inserts/extracts, ROUND*,
# DPP*, MPSADBW, PCLMULQDQ, PCMPxSTRx), with the mandatory prefixes that
# select them coming from the prefixes.
HOT_0F38 = (0x00, 0x04, 0x0B, 0x10, 0x15, 0x17, 0x1C, 0x20, 0x25, 0x2A, 0x2B, 0x37, 0x41,
            0x80, 0x81, 0x82, 0xF0, 0xF1, 0xF6)
HOT_0F3A = (0x08, 0x0B, 0x0E, 0x0F, 0x14, 0x16, 0x17, 0x20, 0x21, 0x22, 0x40, 0x41, 0x42,
            0x44, 0x60, 0x61, 0x62, 0x63)
# The SSE/SSE2/SSE3 floating-point and data-movement opcodes and the 0F AE
# group (FXSAVE, XSAVE, LDMXCSR, fences, FS/GS base), each drawn with one of
# the mandatory prefixes 66/F2/F3 or none.
SSE_0F = (0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D,
          0x2E, 0x2F, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x5B,
          0x5C, 0x5D, 0x5E, 0x5F, 0xC2, 0xC3, 0xC6, 0xE6, 0x7C, 0x7D, 0xD0, 0xF0, 0xE7, 0xD6,
          0x6E, 0x7E, 0x6F, 0x7F, 0xAE, 0xAE, 0xAE, 0x0D, 0xC7)
MANDATORY_PREFIXES = (None, 0x66, 0xF2, 0xF3)
INTERESTING_BYTES = (0x00, 0xFF, 0x7F, 0x80, 0xCC, 0xCD, 0xCF, 0xF3, 0xF2, 0x66, 0x67, 0x0F,
                     0x90, 0xF4, 0xE8, 0xEB, 0xC3, 0x48)

# RFLAGS bits a stream may start with: the status flags, TF (single-step
# traps are events), IF, DF (backwards strings), IOPL, NT, RF, AC.  VM and
# the reserved bits are left out: they fail the entry checks before the
# stream runs, which tests nothing about the stream.
RFLAGS_BITS = (0x1, 0x4, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000, 0x4000,
               0x10000, 0x40000)

MEMORY_SIZES = (0x200000, 0x200000, 0x200000, 0x201000, 0x20000, 0x100000, 0x101000, 0x1000000)


def random_code(rng):
    n = rng.choice((1, 2, 3, 4, 8, 16, 16, 32, 32, 64))
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, n)))


def biased_instruction(rng, bits):
    out = bytearray()
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3))):
        out.append(rng.choice(LEGACY_PREFIXES))
    if bits == 64 and rng.random() < 0.3:
        out.append(0x40 | rng.getrandbits(4))
    if rng.random() < 0.05:
        out.append(0x0F)
        out.append(0x38)
        out.append(rng.choice(HOT_0F38) if rng.random() < 0.7 else rng.getrandbits(8))
    elif rng.random() < 0.15:
        pfx = rng.choice(MANDATORY_PREFIXES)
        if pfx is not None:
            out.append(pfx)
        if bits == 64 and rng.random() < 0.3:
            out.append(0x40 | rng.getrandbits(4))
        out.append(0x0F)
        out.append(rng.choice(SSE_0F))
    elif rng.random() < 0.3:
        out.append(0x0F)
        out.append(rng.choice(HOT_0F) if rng.random() < 0.7 else rng.getrandbits(8))
        if out[-1] == 0x38:
            out.append(rng.choice(HOT_0F38) if rng.random() < 0.7 else rng.getrandbits(8))
        elif out[-1] == 0x3A:
            out.append(rng.choice(HOT_0F3A) if rng.random() < 0.7 else rng.getrandbits(8))
    else:
        out.append(rng.choice(HOT_OPCODES) if rng.random() < 0.5 else rng.getrandbits(8))
    if rng.random() < 0.8:
        # ModRM with register-direct and memory forms equally likely
        mod = rng.choice((0, 1, 2, 3, 3))
        out.append(mod << 6 | rng.getrandbits(6))
        if mod != 3 and rng.random() < 0.3:
            out.append(rng.getrandbits(8))              # SIB
    out += bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 0, 1, 2, 4, 4, 8))))
    return bytes(out)


# Selectors of the GDT entries system_descriptors() fills (0x20-0x38, free in
# vm.py's GDT), with any RPL.
SYSTEM_SELECTORS = tuple(range(0x20, 0x40))


def far_instruction(rng, bits):
    """A far JMP/CALL/RETF aimed at the system descriptors: EA/9A ptr16:32
    outside 64-bit mode, else FF /3 or /5 through a memory operand that
    random registers point somewhere, or RETF (CA/CB) with whatever the
    stack holds."""
    sel = rng.choice(SYSTEM_SELECTORS)
    x = rng.random()
    if bits != 64 and x < 0.6:
        off = rng.choice((0, 0x1000, rng.getrandbits(16)))
        n = 2 if bits == 16 else 4
        return bytes([rng.choice((0xEA, 0x9A))]) + off.to_bytes(n, "little") + sel.to_bytes(2, "little")
    if x < 0.85:
        return bytes([0x48] if bits == 64 and rng.random() < 0.3 else []) + \
            bytes([0xFF, rng.choice((0x18, 0x28, 0x19, 0x2B))])          # FF /3, /5 [reg]
    return bytes([rng.choice((0xCA, 0xCB))]) + (b"\x08\x00" if rng.random() < 0.3 else b"")


# MOV EAX, CR4; OR EAX, OSFXSR | OSXMMEXCPT | FSGSBASE | OSXSAVE; MOV CR4, EAX
# (RAX in 64-bit mode): so that SSE instructions run rather than #UD.
_SSE_ON = {16: bytes.fromhex("0f20e0660d00060500" "0f22e0"),
           32: bytes.fromhex("0f20e00d00060500" "0f22e0"),
           64: bytes.fromhex("0f20e0480d00060500" "0f22e0")}


def biased_code(rng, bits):
    pre = _SSE_ON[bits] if rng.random() < 0.3 else b""
    return pre + b"".join(far_instruction(rng, bits) if rng.random() < 0.08 else biased_instruction(rng, bits)
                          for _ in range(rng.randint(1, 12)))


def _descriptor(base=0, limit=0xFFFFF, typ=0xB, dpl=0, s=1, p=1, db=1, g=1, l=0):
    return ((limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (typ << 40) | (s << 44) | (dpl << 45) |
            (p << 47) | (((limit >> 16) & 0xF) << 48) | (l << 53) | (db << 54) | (g << 55) |
            (((base >> 24) & 0xFF) << 56))


def _gate(sel, off, typ, dpl, count=0, p=1):
    return ((off & 0xFFFF) | (sel << 16) | (count << 32) | (typ << 40) | (dpl << 45) | (p << 47) |
            (((off >> 16) & 0xFFFF) << 48))


def system_descriptors(rng, spec, mode, code_at, avoid):
    """Fill GDT entries 0x20-0x38 with call gates (16-, 32-, 64-bit), TSS
    descriptors (available or busy, 16- or 32-bit, over a random page) and
    task gates, ring-3, ring-1 and conforming code and data, so that the far
    transfers reach the gate, privilege and task-switch paths (core/insn/
    far.pxi, core/task.pxi; a task switch exits in VMX non-root operation
    after the TSS checks)."""
    if mode == "real" or rng.random() < 0.5:
        return
    memory = spec["memory"]
    tss = free_page(rng, memory, avoid) or 0
    code_sel = 0x18 if mode == "long" else 0x08
    out = []
    i = 0
    while i < 4:
        k = rng.randrange(9)
        dpl = rng.choice((0, 0, 3, 3, 1, 2))
        if k == 0:
            out.append(_gate(code_sel, code_at, rng.choice((0xC, 0xC, 0x4)), dpl, rng.choice((0, 0, 1, 2, 31)),
                             p=int(rng.random() < 0.9)))
        elif k == 1 and i < 3:
            out.append(_gate(rng.choice((0x18, 0x08, 0x28)), code_at, 0xC, dpl))
            out.append(code_at >> 32)                   # upper half of a 16-byte gate
            i += 1
        elif k == 2:
            out.append(_descriptor(tss, rng.choice((0x67, 0x67, 0x2B, 0x66, 0xFFF)), rng.choice((9, 9, 0xB, 1, 3)),
                                   dpl, s=0, db=0, g=0, p=int(rng.random() < 0.9)))
        elif k == 3:
            out.append(_gate(rng.choice((0x20, 0x28, 0x30, 0x38, 0x24)), 0, 0x5, dpl))
        elif k == 4:
            out.append(_descriptor(typ=0xB, dpl=3, l=int(mode == "long"), db=int(mode != "long")))
        elif k == 5:
            out.append(_descriptor(typ=0x3, dpl=rng.choice((1, 3))))
        elif k == 6:
            out.append(_descriptor(typ=0xF, dpl=rng.choice((0, 3))))
        elif k == 7:
            out.append(_descriptor(typ=0xB, dpl=1))
        else:
            out.append(rng.getrandbits(64))
        i += 1
    spec["fill"].append([spec["tables"] + 0x20, b"".join(d.to_bytes(8, "little") for d in out[:4]).hex()])
    if tss and rng.random() < 0.8:
        # A TSS image with flat selectors and the code as its EIP, the rest random.
        img = bytearray(rng.getrandbits(8) for _ in range(0x68))
        img[0x20:0x24] = (code_at & 0xFFFFFFFF).to_bytes(4, "little")
        for j, sel in enumerate((0x10, code_sel, 0x10, 0x10, 0x10, 0x10)):
            if rng.random() < 0.9:
                img[0x48 + 4 * j:0x4A + 4 * j] = sel.to_bytes(2, "little")
        if rng.random() < 0.9:
            img[0x60:0x62] = b"\x00\x00"
            img[0x1C:0x20] = b"\x00\x00\x00\x00"
        spec["fill"].append([tss, bytes(img).hex()])
        avoid.append((tss, 0x1000))


def mutate(rng, code, bits):
    """1-8 random edits of code (corpus bytes)."""
    data = bytearray(code)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(8)
        if not data:
            data.append(rng.getrandbits(8))
            continue
        i = rng.randrange(len(data))
        if op == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[i] = rng.choice(INTERESTING_BYTES) if rng.random() < 0.5 else rng.getrandbits(8)
        elif op == 2:
            data[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4)))
        elif op == 3:
            del data[i:i + rng.randint(1, 4)]
        elif op == 4:                                   # splice in a piece of another snippet
            _name, other = rng.choice(BY_BITS[bits])
            j = rng.randrange(len(other))
            data[i:i] = other[j:j + rng.randint(1, 16)]
        elif op == 5:                                   # duplicate a chunk
            j = rng.randint(i, min(len(data), i + 16))
            data[i:i] = data[i:j]
        elif op == 6:
            data[i:i] = biased_instruction(rng, bits)
        else:
            del data[i:]
    return bytes(data)


def corpus_code(rng, bits):
    # Now and then a snippet written for another mode: same bytes, different decoding.
    b = bits if rng.random() < 0.9 else rng.choice((16, 32, 64))
    _name, code = rng.choice(BY_BITS[b])
    if rng.random() < 0.4:
        _n2, more = rng.choice(BY_BITS[b])
        code = code + more if rng.random() < 0.5 else code[:rng.randrange(len(code))] + more
    return mutate(rng, code, bits) if rng.random() < 0.9 else code


def make_code(rng, bits):
    x = rng.random()
    if x < 0.25:
        return random_code(rng)
    if x < 0.6:
        return biased_code(rng, bits)
    return corpus_code(rng, bits)


def overlaps(a, alen, b, blen):
    return a < b + blen and b < a + alen


def free_page(rng, memory, avoid, size=0x1000):
    """A page-aligned region of size bytes in RAM that overlaps none of the
    (start, length) regions in avoid (None if the dice find none)."""
    for _ in range(16):
        p = rng.choice((0x2000, 0x5000, 0x6000, 0xA000, rng.randrange(memory // 0x1000) * 0x1000))
        if p + size <= memory and not any(overlaps(p, size, a, n) for a, n in avoid):
            return p
    return None


def place_code(rng, mode, memory, n):
    """(memory, code_at, at_end): where the code goes."""
    limit = min(memory, 0x10FFF0) if mode == "real" else memory    # real mode reaches 1 MiB + 64 KiB
    x = rng.random()
    if x < 0.2:
        if mode == "real" and memory > 0x101000:
            memory = rng.choice((0x20000, 0x100000, 0x101000))
        return memory, memory - n, True
    if x < 0.45:
        return memory, 0x1000, False
    if x < 0.6:                                         # straddle a page boundary
        page = rng.randrange(1, (limit - n) // 0x1000 + 1) * 0x1000
        return memory, max(0, min(limit - n, page - rng.randint(1, 15))), False
    if x < 0.65:
        return memory, 0, False
    return memory, rng.randrange(max(1, limit - n)), False


def interesting(rng, memory, code_at, n):
    return rng.choice((
        0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
        0xFFFFFFFF, 1 << 32, 1 << 63, (1 << 64) - 1, memory - 1, memory, memory - rng.randint(1, 16),
        code_at, code_at + n, rng.getrandbits(8), rng.getrandbits(16), rng.getrandbits(32),
        rng.getrandbits(64)))


def make_registers(rng, mode, memory, code_at, n):
    regs = {}
    names = ["rax", "rbx", "rdx", "rbp"] + (["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
                                             if mode == "long" else [])
    for name in names:
        if rng.random() < 0.5:
            regs[name] = interesting(rng, memory, code_at, n)
    if rng.random() < 0.7:
        regs["rcx"] = rng.choice((0, 1, 2, 3, 0x10, 0x1000, 0xFFFF, 0x10000, 0xFFFFFFFF, 1 << 32,
                                  (1 << 64) - 1, rng.getrandbits(64), rng.getrandbits(20)))
    for name in ("rsi", "rdi"):
        if rng.random() < 0.6:
            regs[name] = rng.choice((memory - rng.randint(1, 64), code_at, code_at + rng.randint(0, n),
                                     0, 0xFFFF, rng.randrange(memory), interesting(rng, memory, code_at, n)))
    if rng.random() < 0.7:
        top = memory if mode != "real" else 0x10000
        regs["rsp"] = rng.choice((top - rng.choice((0, 1, 2, 4, 8, 16, 256)), 0, 1, 2, 3,
                                  code_at + n, rng.randrange(top), interesting(rng, memory, code_at, n)))
        if mode != "long":
            regs["rsp"] &= 0xFFFFFFFF
    if rng.random() < 0.6:
        flags = 2
        for bit in RFLAGS_BITS:
            if rng.random() < (0.08 if bit == 0x100 else 0.15):
                flags |= bit
        regs["rflags"] = flags
    if rng.random() < 0.1:
        # Breakpoint addresses for the debug registers (core/insn/debug.pxi);
        # DR7 itself comes with the "load debug controls" tweak.
        for i in range(4):
            if rng.random() < 0.5:
                regs[f"dr{i}"] = rng.choice((code_at, code_at + rng.randint(0, n), regs.get("rsp", memory - 8),
                                             regs.get("rsi", 0), regs.get("rdi", 0), rng.choice((0x80, 0xE9)),
                                             interesting(rng, memory, code_at, n)))
    return regs


def real_mode_segments(rng, memory):
    """Data and stack segments with base = selector << 4, SS often at the top
    of RAM so pushes run off its end."""
    segs = {}
    for name in ("ds", "es", "ss"):
        if rng.random() < 0.3:
            sel = rng.choice((0, 0xFFFF, min(0xFFFF, (memory - 0x10000) >> 4), rng.getrandbits(16)))
            segs[name] = [sel, sel << 4, 0xFFFF, 0x93]
    return segs


def gate32(offset):
    return struct.pack("<HHHH", offset & 0xFFFF, 0x08, 0x8E00, offset >> 16)


def gate64(offset):
    return struct.pack("<HHHHII", offset & 0xFFFF, 0x18, 0x8E00, (offset >> 16) & 0xFFFF,
                       offset >> 32, 0)


def vector_table(rng, spec, mode, entry_linear, avoid):
    """Fill the IVT (real mode) or an IDT with vectors that lead back into
    the code, to an IRET, or nowhere sensible, so that exceptions the
    bitmap does not intercept are delivered through the guest."""
    kind = rng.choice(("none", "none", "code", "iret", "garbage", "short"))
    if kind == "none":
        return
    memory = spec["memory"]
    if mode == "real":
        stub = free_page(rng, memory, avoid)
        if kind == "garbage":
            spec["fill"].append([0, bytes(rng.getrandbits(8) for _ in range(0x400)).hex()])
            return
        if kind == "iret" and stub is not None and stub < 0x10000:
            spec["fill"].append([stub, "cf"])
            target = (0, stub)
        else:
            cs = entry_linear >> 4 if entry_linear < 0x100000 else 0
            target = (cs, entry_linear - 16 * cs) if entry_linear - 16 * cs <= 0xFFFF else (0, 0)
        count = 256 if kind != "short" else rng.randint(1, 32)
        spec["fill"].append([0, (struct.pack("<HH", target[1], target[0]) * count).hex()])
        return
    size = 16 if mode == "long" else 8
    base = free_page(rng, memory, avoid, 0x1000)
    if base is None:
        return
    avoid.append((base, 0x1000))
    if kind == "garbage":
        spec["fill"].append([base, bytes(rng.getrandbits(8) for _ in range(0x100)).hex()])
        spec["idtr"] = [base, rng.choice((0xFF, 0xFFF, rng.getrandbits(16)))]
        return
    target = entry_linear
    if kind == "iret":
        stub = free_page(rng, memory, avoid)
        if stub is not None:
            spec["fill"].append([stub, "48cf" if mode == "long" else "cf"])
            target = stub
    gate = gate64 if mode == "long" else gate32
    count = 256 if kind != "short" else rng.randint(1, 32)
    spec["fill"].append([base, (gate(target) * count).hex()])
    spec["idtr"] = [base, count * size - 1]


def make_stream_spec(rng, mode, budget_max):
    bits = BITS[mode]
    code = make_code(rng, bits)
    n = len(code)
    memory = rng.choice(MEMORY_SIZES)
    memory, code_at, at_end = place_code(rng, mode, memory, n)
    spec = {"campaign": "streams", "mode": mode, "memory": memory, "code": code.hex(),
            "code_at": code_at, "fill": []}
    if at_end:
        spec["code_at_end"] = True
    avoid = [(code_at, n)]
    if mode == "real":
        # CS 0 puts IP at the code; the default puts IP near FFFF, where it wraps.
        spec["cs"] = rng.choice((None, 0)) if code_at < 0x10000 else None
    else:
        # The 32 KiB of system tables must not sit on the code (a few cases
        # are allowed to, which corrupts the GDT or the page tables).
        cands = [memory - 0x8000, 0x10000, 0x8000, 0x18000, 0x20000]
        ok = [t for t in cands if t + 0x8000 <= memory and not overlaps(t, 0x8000, code_at, n)]
        spec["tables"] = ok[0] if ok and rng.random() < 0.97 else memory - 0x8000
        avoid.append((spec["tables"], 0x8000))
    spec["regs"] = make_registers(rng, mode, memory, code_at, n)
    if mode == "real":
        spec["segs"] = real_mode_segments(rng, memory)
    vector_table(rng, spec, mode, code_at, avoid)
    system_descriptors(rng, spec, mode, code_at, avoid)
    spec["exception_bitmap"] = rng.choice((
        0xFFFFFFFF, 0xFFFFFFFF, 0, 0, rng.getrandbits(32),
        1 << rng.randrange(32), 0xFFFFFFFF & ~(1 << rng.randrange(32))))
    tweaks = control_tweaks(rng)
    if tweaks:
        spec["vmwrites"] = tweaks
    spec["handler"] = make_handler_policy(rng)
    x = rng.random()
    spec["budget"] = budget_max if x < 0.7 else rng.randint(1, min(16, budget_max)) if x < 0.85 \
        else rng.randint(1, budget_max)
    if rng.random() < 0.3:
        # More runs after the first: small budgets first cut REP strings and
        # event loops in the middle, and the next run has to resume them.
        spec["budget"] = rng.randint(1, min(50, budget_max))
        spec["more"] = [rng.randint(1, min(50, budget_max)) for _ in range(rng.randint(0, 2))] + [budget_max]
    if rng.random() < 0.5:
        # CR4.OSFXSR (and OSXMMEXCPT): without them every XMM instruction is #UD
        # and the SSE handlers would never see random operands.
        spec["cr4_or"] = rng.choice((1 << 9, (1 << 9) | (1 << 10)))
    return spec


def control_tweaks(rng):
    """Other valid configurations of the hypervisor than the default one:
    HLT that halts instead of exiting, I/O and MSR accesses that the model
    carries out (zeroed bitmaps), RDTSC and CR3 exits, guest/host-owned CR0
    bits, a TSC offset.  Each is [encoding, op, value] as in vmcs.py."""
    proc = int(F.PRIMARY_PROC_BASED_CONTROLS)
    w = []
    if rng.random() < 0.15:
        w.append([proc, "xor", int(ProcBased.HLT_EXITING)])
    if rng.random() < 0.1:
        w.append([proc, "xor", int(ProcBased.UNCONDITIONAL_IO_EXITING | ProcBased.USE_IO_BITMAPS)])
    if rng.random() < 0.1:
        w.append([proc, "or", int(ProcBased.USE_MSR_BITMAPS)])
    if rng.random() < 0.05:
        w.append([proc, "or", int(ProcBased.RDTSC_EXITING)])
    if rng.random() < 0.05:
        w.append([proc, "or", int(ProcBased.CR3_LOAD_EXITING | ProcBased.CR3_STORE_EXITING)])
    if rng.random() < 0.05:
        w.append([proc, "or", int(ProcBased.USE_TSC_OFFSETTING)])
        w.append([int(F.TSC_OFFSET), "set", rng.getrandbits(64)])
    if rng.random() < 0.05:
        w.append([int(F.CR0_GUEST_HOST_MASK), "set", rng.choice((1, 0x80000001, 0xFFFFFFFF, rng.getrandbits(32)))])
        w.append([int(F.CR0_READ_SHADOW), "set", rng.choice((0, 0x11, 0x80000011, rng.getrandbits(32)))])
    if rng.random() < 0.08:
        # Breakpoints armed by VM entry: "load debug controls" with a DR7 of
        # random enables, R/W and LEN fields (GD now and then), sometimes a
        # pending debug exception (core/insn/debug.pxi).
        w.append([int(F.VM_ENTRY_CONTROLS), "or", int(EntryControls.LOAD_DEBUG_CONTROLS)])
        w.append([int(F.GUEST_DR7), "set", 0x400 | (rng.getrandbits(8)) | (rng.getrandbits(16) << 16)
                  | (0x2000 if rng.random() < 0.1 else 0)])
        if rng.random() < 0.2:
            w.append([int(F.GUEST_PENDING_DEBUG_EXCEPTIONS), "set", rng.choice((0x4000, 0x1001, 0x100F, 0x5002))])
    if rng.random() < 0.1:
        # The instruction exits (core/insn/system.pxi, systab.pxi): their
        # controls, and PAUSE-loop exiting with small windows.
        w.append([proc, "or", rng.choice((int(ProcBased.MWAIT_EXITING | ProcBased.MONITOR_EXITING),
                                           int(ProcBased.RDPMC_EXITING | ProcBased.PAUSE_EXITING),
                                           int(ProcBased.MOV_DR_EXITING), int(ProcBased.INVLPG_EXITING)))])
        w.append([int(F.SECONDARY_PROC_BASED_CONTROLS), "or",
                  rng.getrandbits(32) & int(ProcBased2.DESCRIPTOR_TABLE_EXITING | ProcBased2.ENABLE_RDTSCP
                                            | ProcBased2.WBINVD_EXITING | ProcBased2.PAUSE_LOOP_EXITING
                                            | ProcBased2.ENABLE_INVPCID | ProcBased2.ENABLE_XSAVES_XRSTORS
                                            | ProcBased2.ENABLE_USER_WAIT_AND_PAUSE
                                            | ProcBased2.VMM_BUS_LOCK_DETECTION)])
        w.append([int(F.XSS_EXITING_BITMAP), "set", rng.choice((0, 1 << 10, (1 << 64) - 1))])
        w.append([int(F.PLE_GAP), "set", rng.choice((0, 1, 8, 128))])
        w.append([int(F.PLE_WINDOW), "set", rng.choice((0, 4, 64, 4096))])
    return w


def make_handler_policy(rng, max_exits=None):
    return {"seed": rng.getrandbits(32),
            "stop": rng.choice((0.02, 0.1, 0.3, 0.6)),
            "retry": rng.choice((0.0, 0.05, 0.2, 0.4)),
            "raise": 0.01, "nested": 0.01,
            "max_exits": max_exits or rng.choice((1, 4, 16, 64, 256))}
