"""Differential tests: ALU, shift, multiply and divide instructions on vtx and
on Unicorn, in 32-bit and 64-bit mode.

For each instruction family one guest program is generated: for every operand
set it loads the registers (and a memory operand), loads RFLAGS with POPF,
executes the instruction under test, and stores RFLAGS (PUSHF) and the
general registers to a record in memory.  The same bytes run once on vtx and
once on Unicorn; the records must agree in every register and in the status
flags the SDM defines for that instruction and operand (flags the SDM leaves
undefined are masked out, see ``defined_flags``).

Operands: the corner values 0, 1, max, sign bit and sign bit - 1 of the
operand size, paired with each other, plus a fixed seeded random set; the
input flags are random (so INC/DEC, NOT and shifts by 0 are seen to keep
them), with CF alternating so ADC and SBB see both carries.
"""

import random
import struct

import pytest

import vtx

unicorn = pytest.importorskip("unicorn")
from unicorn import x86_const as ux  # noqa: E402

from insn_harness import AF, CF, OF, STATUS  # noqa: E402

CODE = 0x10000
OUT = 0x200000
STACK = 0x8000
MEMORY = 4 << 20
SEED = 0x5EED_0F_F1A6

# Registers stored after every case (per mode), in record order; then RFLAGS,
# then the memory operand slot.
SAVED = {
    64: ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r9", "r10"],
    32: ["eax", "ebx", "ecx", "edx", "esi", "edi"],
}
SLOT = 8


def rec_size(bits):
    return SLOT * (len(SAVED[bits]) + 2)


def flags_off(bits):
    return SLOT * len(SAVED[bits])


def mem_off(bits):
    return SLOT * (len(SAVED[bits]) + 1)


# name -> (parent 64-bit register, bit shift, width in bytes)
SUBREG = {}
for _p, _names in {
    "rax": ("eax", "ax", "al", "ah"), "rbx": ("ebx", "bx", "bl", "bh"),
    "rcx": ("ecx", "cx", "cl", "ch"), "rdx": ("edx", "dx", "dl", "dh"),
    "rsi": ("esi", "si", "sil", None), "rdi": ("edi", "di", "dil", None),
}.items():
    SUBREG[_p] = (_p, 0, 8)
    SUBREG[_names[0]] = (_p, 0, 4)
    SUBREG[_names[1]] = (_p, 0, 2)
    SUBREG[_names[2]] = (_p, 0, 1)
    if _names[3]:
        SUBREG[_names[3]] = (_p, 8, 1)
for _n in range(8, 16):
    SUBREG[f"r{_n}"] = (f"r{_n}", 0, 8)
    SUBREG[f"r{_n}d"] = (f"r{_n}", 0, 4)
    SUBREG[f"r{_n}w"] = (f"r{_n}", 0, 2)
    SUBREG[f"r{_n}b"] = (f"r{_n}", 0, 1)

PTR = {1: "byte", 2: "word", 4: "dword", 8: "qword"}
ACC = {1: "al", 2: "ax", 4: "eax", 8: "rax"}

# (destination, source) register pairs per mode and size: the accumulator
# pair, and a pair that needs REX (64-bit) or uses the legacy high bytes.
PAIRS = {
    64: {1: [("al", "bl"), ("sil", "r10b"), ("ah", "ch")], 2: [("ax", "bx"), ("r9w", "si")],
         4: [("eax", "ebx"), ("r9d", "r10d")], 8: [("rax", "rbx"), ("r9", "r10")]},
    32: {1: [("al", "bl"), ("ah", "bh")], 2: [("ax", "bx"), ("si", "di")],
         4: [("eax", "ebx"), ("esi", "edi")]},
}


def sizes(bits):
    return (1, 2, 4, 8) if bits == 64 else (1, 2, 4)


def mask(size):
    return (1 << (8 * size)) - 1


def sext(v, size):
    v &= mask(size)
    sb = 1 << (8 * size - 1)
    return v - (sb << 1) if v & sb else v


def corners(size):
    sb = 1 << (8 * size - 1)
    return [0, 1, mask(size), sb, sb - 1]


class Case:
    """One operand set for one instruction form."""

    def __init__(self, text, regs, flags, defined, mem=None, desc="", ignore=None):
        self.text = text          # the instruction, with {m} for the memory operand
                                  # ("[addr]"), {a} for the slot's address alone
        self.regs = regs          # register name -> value (placed into its parent)
        self.flags = flags        # RFLAGS loaded before the instruction
        self.defined = defined    # status flags compared afterwards
        self.mem = mem            # initial 64-bit value of the memory slot, or None
        self.desc = desc
        self.ignore = ignore or {}   # saved register name -> bits not compared


class Gen:
    """Operand generator: corner pairs and seeded random values."""

    def __init__(self, seed):
        self.r = random.Random(seed)
        self.n = 0

    def fill(self, size):
        """A random 64-bit value: the bits the operand does not use are random."""
        return self.r.getrandbits(64)

    def value(self, size):
        return self.r.getrandbits(8 * size)

    def flags(self):
        self.n += 1
        f = 0x2 | (self.r.getrandbits(12) & STATUS & ~CF)
        return f | (self.n & 1)

    def pairs(self, size, extra=16):
        return self.pairs2(size, size, extra)

    def pairs2(self, size_a, size_b, extra=16):
        """Corner values of size_a paired with corner values of size_b, and
        `extra` random pairs."""
        out = [(a, b) for a in corners(size_a) for b in corners(size_b)]
        out += [(self.value(size_a), self.value(size_b)) for _ in range(extra)]
        return out


def place(regs, name, value, gen):
    """Put an operand value into a register name, with the rest of its parent
    register random.  Returns the parent register and its full value."""
    parent, shift, width = SUBREG[name]
    m = mask(width) << shift
    base = regs.get(parent)
    if base is None:
        base = gen.fill(8)
    regs[parent] = (base & ~m) | ((value & mask(width)) << shift)


def imm_text(v, size):
    """An immediate as GNU as accepts it for this operand size (64-bit
    immediates are sign-extended imm32, written signed)."""
    return str(sext(v, size)) if size == 8 else hex(v & mask(size))


def sign_ext_imm(v, size, imm_size):
    """The operand value an imm of imm_size bytes stands for."""
    return sext(v, imm_size) & mask(size)


# --- which flags are defined (SDM Vol. 2, "Flags Affected" of each page) -----

ARITH = STATUS                      # ADD ADC SUB SBB CMP NEG INC DEC: all six
LOGIC = STATUS & ~AF                # AND OR XOR TEST: AF undefined
MULF = CF | OF                      # MUL IMUL: SF ZF AF PF undefined
DIVF = 0                            # DIV IDIV: all six undefined


def shift_defined(op, size, count):
    """SAL/SAR/SHL/SHR: count masked to 5 bits (6 with REX.W); count 0
    affects no flag; AF undefined for a non-zero count; OF defined only for a
    count of 1; CF undefined for SHL/SHR when the count >= the operand width."""
    c = count & (0x3F if size == 8 else 0x1F)
    if c == 0:
        return STATUS
    d = STATUS & ~AF
    if c != 1:
        d &= ~OF
    if op in ("shl", "sal", "shr") and c >= 8 * size:
        d &= ~CF
    return d


# --- case builders per family ---------------------------------------------------

def alu_cases(op, bits, gen):
    defined = LOGIC if op in ("and", "or", "xor", "test") else ARITH
    cases = []
    for size in sizes(bits):
        ptr = PTR[size]
        for dst, src in PAIRS[bits][size]:
            for a, b in gen.pairs(size):
                regs = {}
                place(regs, dst, a, gen)
                place(regs, src, b, gen)
                cases.append(Case(f"{op} {dst}, {src}", regs, gen.flags(), defined,
                                  desc=f"{op} {dst}={a:#x}, {src}={b:#x}"))
        dst, src = PAIRS[bits][size][0]
        for a, b in gen.pairs(size, extra=8):
            # memory destination, register source; register destination, memory source
            regs = {}
            place(regs, src, b, gen)
            mem = (gen.fill(8) & ~mask(size)) | a
            cases.append(Case(f"{op} {ptr} ptr {{m}}, {src}", regs, gen.flags(), defined, mem=mem,
                              desc=f"{op} [m]={a:#x}, {src}={b:#x}"))
            if op != "test":
                regs = {}
                place(regs, dst, a, gen)
                mem = (gen.fill(8) & ~mask(size)) | b
                cases.append(Case(f"{op} {dst}, {ptr} ptr {{m}}", regs, gen.flags(), defined, mem=mem,
                                  desc=f"{op} {dst}={a:#x}, [m]={b:#x}"))
        # immediates: the accumulator short form, another register (80/81/83,
        # F6/F7 for TEST), and memory
        imm_sizes = [1] if size == 1 else [1, min(size, 4)]
        for isz in imm_sizes:
            for a, b in gen.pairs2(size, isz, extra=6):
                bv = sign_ext_imm(b, size, isz)
                for dst_i in (ACC[size], PAIRS[bits][size][-1][0]):
                    regs = {}
                    place(regs, dst_i, a, gen)
                    cases.append(Case(f"{op} {dst_i}, {imm_text(bv, size)}", regs, gen.flags(), defined,
                                      desc=f"{op} {dst_i}={a:#x}, imm={bv:#x}"))
                mem = (gen.fill(8) & ~mask(size)) | a
                cases.append(Case(f"{op} {ptr} ptr {{m}}, {imm_text(bv, size)}", {}, gen.flags(), defined,
                                  mem=mem, desc=f"{op} [m]={a:#x}, imm={bv:#x}"))
    return cases


def unary_cases(op, bits, gen):
    defined = ARITH      # NOT: no flag changes, so all six must be kept
    cases = []
    for size in sizes(bits):
        vals = corners(size) + [gen.value(size) for _ in range(10)]
        for reg, _ in PAIRS[bits][size]:
            for a in vals:
                regs = {}
                place(regs, reg, a, gen)
                cases.append(Case(f"{op} {reg}", regs, gen.flags(), defined, desc=f"{op} {reg}={a:#x}"))
        for a in vals:
            mem = (gen.fill(8) & ~mask(size)) | a
            cases.append(Case(f"{op} {PTR[size]} ptr {{m}}", {}, gen.flags(), defined, mem=mem,
                              desc=f"{op} [m]={a:#x}"))
    return cases


def shift_counts(size, gen):
    w = 8 * size
    base = {0, 1, 2, w - 1, w, w + 1, 31, 32, 33, 63, 64, 65, 255, 0x80}
    return sorted(base) + [gen.r.randrange(256) for _ in range(4)]


def shift_cases(op, bits, gen):
    cases = []
    for size in sizes(bits):
        vals = corners(size) + [gen.value(size) for _ in range(4)]
        regs_used = [p[0] for p in PAIRS[bits][size] if SUBREG[p[0]][0] != "rcx"]
        for reg in regs_used:
            for a in vals:
                regs = {}
                place(regs, reg, a, gen)
                cases.append(Case(f"{op} {reg}, 1", regs, gen.flags(), shift_defined(op, size, 1),
                                  desc=f"{op} {reg}={a:#x}, 1"))
                for cnt in shift_counts(size, gen):
                    regs = {}
                    place(regs, reg, a, gen)
                    place(regs, "cl", cnt, gen)
                    cases.append(Case(f"{op} {reg}, cl", regs, gen.flags(), shift_defined(op, size, cnt),
                                      desc=f"{op} {reg}={a:#x}, cl={cnt:#x}"))
                    regs = {}
                    place(regs, reg, a, gen)
                    cases.append(Case(f"{op} {reg}, {cnt}", regs, gen.flags(), shift_defined(op, size, cnt),
                                      desc=f"{op} {reg}={a:#x}, {cnt:#x}"))
        for a in vals:
            for cnt in shift_counts(size, gen):
                regs = {}
                place(regs, "cl", cnt, gen)
                mem = (gen.fill(8) & ~mask(size)) | a
                cases.append(Case(f"{op} {PTR[size]} ptr {{m}}, cl", regs, gen.flags(),
                                  shift_defined(op, size, cnt), mem=mem, desc=f"{op} [m]={a:#x}, cl={cnt:#x}"))
            mem = (gen.fill(8) & ~mask(size)) | a
            cases.append(Case(f"{op} {PTR[size]} ptr {{m}}, 1", {}, gen.flags(),
                              shift_defined(op, size, 1), mem=mem, desc=f"{op} [m]={a:#x}, 1"))
    return cases


def mul1_cases(op, bits, gen):
    """MUL / IMUL with one operand: rDX:rAX (AX for bytes) = rAX * r/m."""
    cases = []
    for size in sizes(bits):
        src = {1: "bl", 2: "bx", 4: "ebx", 8: "rbx"}[size]
        for a, b in gen.pairs(size):
            regs = {}
            place(regs, ACC[size], a, gen)
            place(regs, src, b, gen)
            regs["rdx"] = gen.fill(8)
            cases.append(Case(f"{op} {src}", regs, gen.flags(), MULF, desc=f"{op} a={a:#x}, {src}={b:#x}"))
            regs = {}
            place(regs, ACC[size], a, gen)
            regs["rdx"] = gen.fill(8)
            mem = (gen.fill(8) & ~mask(size)) | b
            cases.append(Case(f"{op} {PTR[size]} ptr {{m}}", regs, gen.flags(), MULF, mem=mem,
                              desc=f"{op} a={a:#x}, [m]={b:#x}"))
    return cases


def imul_multi_cases(bits, gen):
    """IMUL r, r/m (0F AF) and IMUL r, r/m, imm8/imm (6B / 69)."""
    cases = []
    for size in sizes(bits):
        if size == 1:
            continue
        for dst, src in PAIRS[bits][size]:
            for a, b in gen.pairs(size):
                regs = {}
                place(regs, dst, a, gen)
                place(regs, src, b, gen)
                cases.append(Case(f"imul {dst}, {src}", regs, gen.flags(), MULF,
                                  desc=f"imul {dst}={a:#x}, {src}={b:#x}"))
        dst = PAIRS[bits][size][-1][0]
        for a, b in gen.pairs(size, extra=8):
            regs = {}
            place(regs, dst, a, gen)
            mem = (gen.fill(8) & ~mask(size)) | b
            cases.append(Case(f"imul {dst}, {PTR[size]} ptr {{m}}", regs, gen.flags(), MULF, mem=mem,
                              desc=f"imul {dst}={a:#x}, [m]={b:#x}"))
        for isz in (1, min(size, 4)):
            for a, b in gen.pairs(size, extra=8):
                imm = sign_ext_imm(b, size, isz)
                regs = {}
                place(regs, "rbx" if size == 8 else {2: "bx", 4: "ebx"}[size], a, gen)
                src = {2: "bx", 4: "ebx", 8: "rbx"}[size]
                cases.append(Case(f"imul {dst}, {src}, {imm_text(imm, size)}", regs, gen.flags(), MULF,
                                  desc=f"imul {dst}, {src}={a:#x}, {imm:#x}"))
                mem = (gen.fill(8) & ~mask(size)) | a
                cases.append(Case(f"imul {dst}, {PTR[size]} ptr {{m}}, {imm_text(imm, size)}", {}, gen.flags(),
                                  MULF, mem=mem, desc=f"imul {dst}, [m]={a:#x}, {imm:#x}"))
    return cases


def tdiv(n, d):
    """Division truncating toward zero (SDM Vol. 2 IDIV)."""
    q = abs(n) // abs(d)
    return q if (n < 0) == (d < 0) else -q


def div_cases(op, bits, gen):
    """DIV / IDIV with operands that do not fault (#DE is tested exactly in
    test_insn.py).  The dividend is AX for bytes, else rDX:rAX."""
    cases = []
    for size in sizes(bits):
        n = 8 * size
        src = {1: "bl", 2: "bx", 4: "ebx", 8: "rbx"}[size]
        divisors = [b for b in corners(size) if b] + [gen.value(size) or 3 for _ in range(12)]
        divisors += [2, 3, 7, mask(size) - 1]
        for b in divisors:
            for k in range(6):
                if op == "div":
                    hi = 0 if k == 0 else gen.r.randrange(b)
                    lo = [0, mask(size), gen.value(size)][k % 3]
                else:
                    bs = sext(b, size)
                    lim = 1 << (n - 1)
                    q = [0, 1, -1, lim - 1, -lim, gen.r.randrange(-lim, lim)][k]
                    r = gen.r.randrange(abs(bs))
                    prod = q * bs
                    dividend = prod + (r if prod > 0 or (prod == 0 and k & 1) else -r)
                    if not -lim <= tdiv(dividend, bs) < lim:
                        continue
                    dividend &= mask(2 * size)
                    hi, lo = dividend >> n, dividend & mask(size)
                regs = {}
                if size == 1:
                    place(regs, "ax", (hi << 8) | lo, gen)
                else:
                    place(regs, ACC[size], lo, gen)
                    place(regs, {2: "dx", 4: "edx", 8: "rdx"}[size], hi, gen)
                place(regs, src, b, gen)
                if "rdx" not in regs:
                    regs["rdx"] = gen.fill(8)
                cases.append(Case(f"{op} {src}", regs, gen.flags(), DIVF,
                                  desc=f"{op} hi={hi:#x} lo={lo:#x} / {b:#x}"))
                regs = dict(regs)
                mem = (gen.fill(8) & ~mask(size)) | b
                cases.append(Case(f"{op} {PTR[size]} ptr {{m}}", regs, gen.flags(), DIVF, mem=mem,
                                  desc=f"{op} hi={hi:#x} lo={lo:#x} / [m]={b:#x}"))
    return cases


FAMILIES = {
    **{op: (lambda op: lambda bits, gen: alu_cases(op, bits, gen))(op)
       for op in ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp", "test")},
    **{op: (lambda op: lambda bits, gen: unary_cases(op, bits, gen))(op)
       for op in ("inc", "dec", "neg", "not")},
    **{op: (lambda op: lambda bits, gen: shift_cases(op, bits, gen))(op)
       for op in ("shl", "shr", "sar")},
    "mul": lambda bits, gen: mul1_cases("mul", bits, gen),
    "imul1": lambda bits, gen: mul1_cases("imul", bits, gen),
    "imul": imul_multi_cases,
    "div": lambda bits, gen: div_cases("div", bits, gen),
    "idiv": lambda bits, gen: div_cases("idiv", bits, gen),
}


# --- the program ----------------------------------------------------------------

def program(cases, bits):
    """The guest source for a list of cases; ends with HLT."""
    rs = rec_size(bits)
    lines = []
    for i, cs in enumerate(cases):
        rec = OUT + i * rs
        m = rec + mem_off(bits)
        if cs.mem is not None:
            if bits == 64:
                lines.append(f"mov rax, {cs.mem:#x}")
                lines.append(f"mov qword ptr [{m:#x}], rax")
            else:
                lines.append(f"mov dword ptr [{m:#x}], {cs.mem & 0xFFFFFFFF:#x}")
                lines.append(f"mov dword ptr [{m + 4:#x}], {cs.mem >> 32:#x}")
        for parent, v in cs.regs.items():
            if bits == 64:
                lines.append(f"mov {parent}, {v:#x}")
            else:
                lines.append(f"mov e{parent[1:]}, {v & 0xFFFFFFFF:#x}")
        lines.append(f"push {cs.flags:#x}")
        lines.append("popfq" if bits == 64 else "popfd")
        lines.append(cs.text.format(m=f"[{m:#x}]", a=f"{m:#x}"))
        lines.append("pushfq" if bits == 64 else "pushfd")
        w = "qword" if bits == 64 else "dword"
        lines.append(f"pop {w} ptr [{rec + flags_off(bits):#x}]")
        for k, r in enumerate(SAVED[bits]):
            lines.append(f"mov {w} ptr [{rec + SLOT * k:#x}], {r}")
    lines.append("hlt")
    return "\n".join(lines) + "\n"


def run_vtx(code, bits, n):
    vm = vtx.VM(memory=MEMORY)
    vm.add_vcpu()
    if bits == 64:
        vm.setup_long_mode(entry=CODE, stack=STACK)
    else:
        vm.setup_protected_mode(entry=CODE, stack=STACK)
    vm.load(CODE, code)

    @vm.default
    def stop(vcpu, exit):
        return vtx.STOP

    r = vm.run(max_instructions=50 * n + 1000)
    assert r.stop == "stop" and r.exit.reason == vtx.ExitReason.HLT, f"vtx run ended with {r.exit!r}"
    assert r.exit.guest_rip == CODE + len(code) - 1
    return vm.read(OUT, n * rec_size(bits))


def run_unicorn(code, bits, n):
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64 if bits == 64 else unicorn.UC_MODE_32)
    uc.mem_map(0, MEMORY)
    uc.mem_write(CODE, code)
    uc.reg_write(ux.UC_X86_REG_RSP if bits == 64 else ux.UC_X86_REG_ESP, STACK)
    uc.emu_start(CODE, CODE + len(code) - 1)     # stop at the final HLT
    return bytes(uc.mem_read(OUT, n * rec_size(bits)))


def compare(cases, bits, got, want):
    rs = rec_size(bits)
    names = SAVED[bits]
    problems = []
    for i, cs in enumerate(cases):
        g = struct.unpack_from(f"<{len(names) + 2}Q", got, i * rs)
        w = struct.unpack_from(f"<{len(names) + 2}Q", want, i * rs)
        diffs = []
        for k, name in enumerate(names):
            if (g[k] ^ w[k]) & ~cs.ignore.get(name, 0):
                diffs.append(f"{name}: vtx {g[k]:#x}, unicorn {w[k]:#x}")
        fk = len(names)
        if (g[fk] ^ w[fk]) & cs.defined:
            diffs.append(f"flags (defined {cs.defined:#x}): vtx {g[fk] & cs.defined:#x}, "
                         f"unicorn {w[fk] & cs.defined:#x} (in {cs.flags:#x})")
        if g[fk + 1] != w[fk + 1]:
            diffs.append(f"memory operand: vtx {g[fk + 1]:#x}, unicorn {w[fk + 1]:#x}")
        if diffs:
            problems.append(f"case {i} [{cs.text}] {cs.desc}: " + "; ".join(diffs))
            if len(problems) >= 12:
                break
    return problems


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_against_unicorn(family, bits):
    check_family(FAMILIES, family, bits)


def check_family(families, family, bits):
    """Run every case of one instruction family as one program on vtx and on
    Unicorn, and compare the results and the defined flags."""
    gen = Gen(f"{SEED}-{family}-{bits}")
    cases = families[family](bits, gen)
    assert len(cases) > 50
    code = vtx.asm(program(cases, bits), bits=bits, org=CODE)
    got = run_vtx(code, bits, len(cases))
    want = run_unicorn(code, bits, len(cases))
    problems = compare(cases, bits, got, want)
    assert not problems, f"{len(problems)}+ mismatches in {family} ({bits}-bit):\n" + "\n".join(problems)


def test_shift_defined_masks():
    """The masks themselves follow the SDM's SAL/SAR/SHL/SHR flags text."""
    assert shift_defined("shl", 4, 0) == STATUS
    assert shift_defined("shl", 4, 32) == STATUS           # masked to 0
    assert shift_defined("shl", 8, 32) == STATUS & ~AF & ~OF
    assert shift_defined("shl", 4, 1) == STATUS & ~AF
    assert shift_defined("shr", 1, 8) == STATUS & ~AF & ~OF & ~CF
    assert shift_defined("sar", 1, 8) == STATUS & ~AF & ~OF
    assert shift_defined("shr", 2, 17) == STATUS & ~AF & ~OF & ~CF
    assert shift_defined("shr", 4, 33) == STATUS & ~AF      # count 1 after masking
