"""Flags fidelity for the execution engine, with the host CPU as the oracle.

Every flag-setting instruction (ADD ADC SUB SBB CMP AND OR XOR TEST INC DEC
NEG, SHL SHR SAR ROL ROR RCL RCR, BT BTS BTR BTC, BSF BSR, MUL IMUL, XADD,
CMPXCHG, SAHF, CLC STC CMC) in every operand size, on operands that exercise
carry, overflow, zero and sign, followed by one *reader* of the flags: Jcc,
SETcc, CMOVcc (all sixteen conditions), ADC, SBB, PUSHFQ or LAHF.  The same
case code runs natively on the host (a static 64-bit program built with GNU
as and ld; one process runs all the cases) and on vtx in long mode; records of
registers, the memory operand, the reader's result and the final RFLAGS must
agree wherever the SDM defines the outcome.

The same setters are then observed by vtx alone through paths that an engine
with lazily computed flags must materialise them on, and compared with the
host's PUSHFQ record of the setter:

- an exception between setter and reader (#UD, #BP, #GP, #PF), delivered
  through the guest's IDT: the RFLAGS image in the exception frame, PUSHFQ in
  the handler, and PUSHFQ after IRETQ;
- a VM exit between setter and reader (OUT and CPUID), where the Python
  handler reads ``vcpu.rflags`` and, for half of the cases, writes it back
  with every status flag inverted: the guest must then see the hypervisor's
  value, not the setter's;
- the end of a ``max_instructions`` budget exactly between setter and reader,
  with ``vcpu.rflags`` checked at the stop (and sometimes rewritten) before
  the run resumes into the reader;
- the pause of a REP string instruction at the budget.

Flags the SDM leaves undefined are masked out (``effects``); the host is an
AMD processor; where AMD and Intel differed in a flag the SDM defines, the
SDM would decide, but on these cases the host agreed with the SDM on every
defined flag (BT keeps ZF, SAR by >= the width defines CF, RCL/RCR by a
multiple of width + 1 keep CF, a masked count of 0 changes nothing).  The
host and vtx differ only in flags the SDM leaves undefined (AF after shifts,
OF after multi-bit shifts and rotates, SF ZF AF PF after MUL/IMUL, all but
ZF after BSF/BSR), which are masked.
"""

import os
import platform
import random
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest

import vtx
from vtx import ExitReason as R, VmcsField as F

pytestmark = [
    pytest.mark.skipif(shutil.which("as") is None or shutil.which("ld") is None,
                       reason="GNU as and ld are needed for the native oracle and the guests"),
    pytest.mark.skipif(not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"),
                       reason="the native oracle is a static x86-64 Linux program"),
]

CF, PF, AF, ZF, SF, OF = 1, 4, 0x10, 0x40, 0x80, 0x800
STATUS = CF | PF | AF | ZF | SF | OF
ALL = STATUS

CODE = 0x10000
HANDLERS = 0x4000
IDT = 0x6000
OUT = 0x400000
MEMORY = 8 << 20
STACK = 0x8000
REC = 80                      # bytes per record: 10 qwords
SEED = 0xF1A65EED

# Record slots (qword index).
S_RAX, S_RBX, S_RCX, S_RDX, S_MEM, S_FLAGS, S_AUX, S_CC = range(8)     # S_CC: 16 bytes

CC = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"]
# The flags each condition reads (SDM Vol. 1 Table B-1).
CC_DEPS = [OF, OF, CF, CF, ZF, ZF, CF | ZF, CF | ZF, SF, SF, PF, PF, SF | OF, SF | OF,
           ZF | SF | OF, ZF | SF | OF]


def cc_true(cc, f):
    c, z, s, o, p = bool(f & CF), bool(f & ZF), bool(f & SF), bool(f & OF), bool(f & PF)
    v = [o, c, z, c or z, s, p, s != o, z or (s != o)][cc >> 1]
    return v if cc % 2 == 0 else not v


READERS = ["pushf", "jcc", "setcc", "cmovcc", "lahf", "adc", "sbb"]


def mask(size):
    return (1 << (8 * size)) - 1


def corners(size):
    sb = 1 << (8 * size - 1)
    return [0, 1, sb - 1, sb, mask(size)]


REG = {
    "a": {1: "al", 2: "ax", 4: "eax", 8: "rax"},
    "b": {1: "bl", 2: "bx", 4: "ebx", 8: "rbx"},
    "c": {1: "cl", 2: "cx", 4: "ecx", 8: "rcx"},
    "d": {1: "dl", 2: "dx", 4: "edx", 8: "rdx"},
}
PTR = {1: "byte", 2: "word", 4: "dword", 8: "qword"}


# --- which flags each setter defines (SDM Vol. 2, "Flags Affected") ---------
#
# effects() returns (new, kept): `new` the status flags the instruction sets
# to defined values, `kept` those it leaves unchanged.  Everything else is
# undefined after it.  After a sequence, a flag is defined if the last
# instruction set it, or kept it and it was defined before.

def effects(op, size=4, count=None):
    w = 8 * size
    if op in ("add", "adc", "sub", "sbb", "cmp", "neg", "xadd", "cmpxchg"):
        return ALL, 0
    if op in ("inc", "dec"):
        return ALL & ~CF, CF
    if op in ("and", "or", "xor", "test"):
        return ALL & ~AF, 0                       # AF undefined
    if op in ("shl", "shr", "sar", "rol", "ror", "rcl", "rcr"):
        c = count & (0x3F if size == 8 else 0x1F)
        if c == 0:
            return 0, ALL                         # a masked count of 0 affects no flag
        if op in ("shl", "shr", "sar"):
            new = SF | ZF | PF | CF | (OF if c == 1 else 0)
            if op in ("shl", "shr") and c >= w:
                new &= ~CF                        # CF undefined when count >= width
            return new, 0                         # AF undefined
        if op in ("rol", "ror"):
            return CF | (OF if c == 1 else 0), SF | ZF | AF | PF
        t = c % (w + 1) if size < 4 else c        # RCL/RCR rotate through CF
        new = (CF if t else 0) | (OF if c == 1 else 0)
        return new, SF | ZF | AF | PF | (0 if t else CF)
    if op in ("bt", "bts", "btr", "btc"):
        return CF, ZF                             # ZF unaffected; OF SF AF PF undefined
    if op in ("bsf", "bsr"):
        return ZF, 0
    if op in ("mul", "imul"):
        return CF | OF, 0
    if op == "sahf":
        return SF | ZF | AF | PF | CF, OF
    if op in ("clc", "stc", "cmc"):
        return CF, ALL & ~CF
    raise KeyError(op)


class Case:
    def __init__(self, setter, regs, base, defined, mem=0, desc="", regmask=None):
        self.setter = setter              # instruction lines; {m} is the memory operand
        self.regs = regs                  # rax rbx rcx rdx -> 64-bit value
        self.base = base                  # RFLAGS loaded with POPFQ before the setter
        self.defined = defined            # status flags defined after the setter
        self.mem = mem
        self.desc = desc or "; ".join(setter)
        self.regmask = regmask or {}      # slot -> bits to compare (default all)
        self.reader = "pushf"


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.n = 0

    def base(self):
        self.n += 1
        k = self.n % 3
        if k == 0:
            return 0x2
        if k == 1:
            return 0x2 | STATUS
        return 0x2 | (self.r.getrandbits(12) & STATUS)

    def regs(self, **named):
        out = {p: self.r.getrandbits(64) for p in ("rax", "rbx", "rcx", "rdx")}
        for fam, (size, v) in named.items():
            p = "r" + fam + "x"
            out[p] = (out[p] & ~mask(size)) | (v & mask(size))
        return out

    def value(self, size):
        return self.r.getrandbits(8 * size)


def compose(before, op_effects):
    new, kept = op_effects
    return new | (kept & before)


def imm_ok(v, size):
    """v (an operand-size value) as a sign-extended imm32, if it is one."""
    if size < 8:
        return True
    s = v - (1 << 64) if v >> 63 else v
    return -(1 << 31) <= s < (1 << 31)


def imm_text(v, size):
    if size == 8:
        s = v - (1 << 64) if v >> 63 else v
        return str(s)
    return hex(v & mask(size))


def alu_cases(gen):
    out = []
    for op in ("add", "adc", "sub", "sbb", "cmp", "and", "or", "xor", "test"):
        for size in (1, 2, 4, 8):
            pairs = [(a, b) for a in corners(size) for b in corners(size)]
            pairs += [(gen.value(size), gen.value(size)) for _ in range(3)]
            for i, (a, b) in enumerate(pairs):
                form = i % 4
                A, B = REG["a"][size], REG["b"][size]
                regs = gen.regs(a=(size, a), b=(size, b))
                mem = 0
                if form == 1:
                    text = f"{op} {PTR[size]} ptr {{m}}, {B}"
                    mem = (gen.r.getrandbits(64) & ~mask(size)) | a
                elif form == 2 and op != "test":
                    text = f"{op} {A}, {PTR[size]} ptr {{m}}"
                    mem = (gen.r.getrandbits(64) & ~mask(size)) | b
                elif form == 3 and imm_ok(b, size):
                    text = f"{op} {A}, {imm_text(b, size)}"
                elif size == 1 and i % 5 == 0:
                    # the legacy high-byte registers
                    regs = gen.regs()
                    regs["rax"] = (regs["rax"] & ~0xFF00) | (a << 8)
                    regs["rbx"] = (regs["rbx"] & ~0xFF00) | (b << 8)
                    text = f"{op} ah, bh"
                else:
                    text = f"{op} {A}, {B}"
                out.append(Case([text], regs, gen.base(), effects(op)[0], mem=mem,
                                desc=f"{text} a={a:#x} b={b:#x}"))
    return out


def unary_cases(gen):
    out = []
    for op in ("inc", "dec", "neg"):
        for size in (1, 2, 4, 8):
            vals = corners(size) + [gen.value(size) for _ in range(2)]
            for i, a in enumerate(vals):
                base = gen.base()
                defined = compose(ALL, effects(op))
                if i % 2:
                    mem = (gen.r.getrandbits(64) & ~mask(size)) | a
                    out.append(Case([f"{op} {PTR[size]} ptr {{m}}"], gen.regs(), base, defined, mem=mem,
                                    desc=f"{op} [m]={a:#x}"))
                else:
                    out.append(Case([f"{op} {REG['a'][size]}"], gen.regs(a=(size, a)), base, defined,
                                    desc=f"{op} {a:#x}"))
    return out


def shift_counts(size):
    w = 8 * size
    return sorted({0, 1, 2, w - 1, w, w + 1, 31, 32, 33, 63, 64} & set(range(256)))


def shift_cases(gen):
    out = []
    for op in ("shl", "shr", "sar", "rol", "ror", "rcl", "rcr"):
        for size in (1, 2, 4, 8):
            sb = 1 << (8 * size - 1)
            vals = [1, sb, mask(size), gen.value(size)]
            k = 0
            for a in vals:
                for cnt in shift_counts(size):
                    k += 1
                    base = gen.base()
                    defined = compose(ALL, effects(op, size, cnt))
                    A = REG["a"][size]
                    regs = gen.regs(a=(size, a), c=(1, cnt))
                    mem = 0
                    if k % 5 == 0:
                        dst = f"{PTR[size]} ptr {{m}}"
                        mem = (gen.r.getrandbits(64) & ~mask(size)) | a
                    else:
                        dst = A
                    if k % 2 or cnt == 0:
                        text = f"{op} {dst}, cl"
                    else:
                        text = f"{op} {dst}, {cnt}"       # `, 1` assembles as the D0/D1 form
                    out.append(Case([text], regs, base, defined, mem=mem, desc=f"{text} a={a:#x} count={cnt}"))
    return out


def bt_cases(gen):
    out = []
    for op in ("bt", "bts", "btr", "btc"):
        for size in (2, 4, 8):
            w = 8 * size
            for v in (0, mask(size), 0x5555555555555555 & mask(size), gen.value(size)):
                for off in (0, 1, w - 1, w, w + 5, gen.r.randrange(256)):
                    base = gen.base()
                    defined = compose(ALL, effects(op))
                    A, B = REG["a"][size], REG["b"][size]
                    k = len(out) % 3
                    if k == 0:
                        text = f"{op} {A}, {B}"
                        regs = gen.regs(a=(size, v), b=(size, off))
                        mem = 0
                    elif k == 1:
                        text = f"{op} {A}, {off & 0xFF}"
                        regs = gen.regs(a=(size, v))
                        mem = 0
                    else:
                        text = f"{op} {PTR[size]} ptr {{m}}, {off & 0xFF}"
                        regs = gen.regs()
                        mem = (gen.r.getrandbits(64) & ~mask(size)) | v
                    out.append(Case([text], regs, base, defined, mem=mem, desc=f"{text} v={v:#x} off={off}"))
    return out


def bsf_cases(gen):
    out = []
    for op in ("bsf", "bsr"):
        for size in (2, 4, 8):
            for i, v in enumerate([0, 1, 1 << (8 * size - 1), mask(size), gen.value(size), 0, 0x100 & mask(size)]):
                A, B = REG["a"][size], REG["b"][size]
                regmask = {}
                if v == 0:
                    regmask[S_RAX] = 0        # destination undefined for a zero source (Intel)
                mem = 0
                if i % 2:
                    text = f"{op} {A}, {PTR[size]} ptr {{m}}"
                    mem = (gen.r.getrandbits(64) & ~mask(size)) | v
                    regs = gen.regs()
                else:
                    text = f"{op} {A}, {B}"
                    regs = gen.regs(b=(size, v))
                out.append(Case([text], regs, gen.base(), compose(ALL, effects(op)), mem=mem,
                                desc=f"{text} src={v:#x}", regmask=regmask))
    return out


def mul_cases(gen):
    out = []
    for op in ("mul", "imul"):
        for size in (1, 2, 4, 8):
            pairs = [(a, b) for a in corners(size) for b in corners(size)][::2]
            pairs += [(gen.value(size), gen.value(size)) for _ in range(2)]
            for i, (a, b) in enumerate(pairs):
                regs = gen.regs(a=(size, a), b=(size, b))
                mem = 0
                if i % 3 == 1:
                    text = f"{op} {PTR[size]} ptr {{m}}"
                    mem = (gen.r.getrandbits(64) & ~mask(size)) | b
                else:
                    text = f"{op} {REG['b'][size]}"
                out.append(Case([text], regs, gen.base(), effects(op)[0], mem=mem,
                                desc=f"{text} a={a:#x} b={b:#x}"))
    for size in (2, 4, 8):
        pairs = [(a, b) for a in corners(size) for b in corners(size)][1::2]
        for i, (a, b) in enumerate(pairs):
            A, B = REG["a"][size], REG["b"][size]
            regs = gen.regs(a=(size, a), b=(size, b))
            mem = 0
            k = i % 4
            if k == 0:
                text = f"imul {A}, {B}"
            elif k == 1:
                text = f"imul {A}, {PTR[size]} ptr {{m}}"
                mem = (gen.r.getrandbits(64) & ~mask(size)) | b
            elif k == 2:
                text = f"imul {A}, {B}, {[-1, 127, -128, 2, 3][i % 5]}"
            else:
                text = f"imul {A}, {B}, {[0x7fff, -0x8000, 0x1234, 3][i % 4]}"
            out.append(Case([text], regs, gen.base(), effects("imul")[0], mem=mem,
                            desc=f"{text} a={a:#x} b={b:#x}"))
    return out


def xchg_cases(gen):
    out = []
    for size in (1, 2, 4, 8):
        A, B, C = REG["a"][size], REG["b"][size], REG["c"][size]
        pairs = [(a, b) for a in corners(size) for b in corners(size)][::2]
        for i, (a, b) in enumerate(pairs):
            if i % 2:
                mem = (gen.r.getrandbits(64) & ~mask(size)) | a
                out.append(Case([f"xadd {PTR[size]} ptr {{m}}, {B}"], gen.regs(b=(size, b)), gen.base(), ALL,
                                mem=mem, desc=f"xadd [m]={a:#x}, {b:#x}"))
            else:
                out.append(Case([f"xadd {C}, {B}"], gen.regs(c=(size, a), b=(size, b)), gen.base(), ALL,
                                desc=f"xadd {a:#x}, {b:#x}"))
        for i, (a, b) in enumerate(pairs):
            # CMPXCHG: compare the accumulator (b, or equal to the destination
            # every third case) with the destination a
            acc = a if i % 3 == 0 else b
            new = gen.value(size)
            if i % 2:
                mem = (gen.r.getrandbits(64) & ~mask(size)) | a
                out.append(Case([f"cmpxchg {PTR[size]} ptr {{m}}, {C}"], gen.regs(a=(size, acc), c=(size, new)),
                                gen.base(), ALL, mem=mem, desc=f"cmpxchg [m]={a:#x}, acc={acc:#x}"))
            else:
                out.append(Case([f"cmpxchg {B}, {C}"], gen.regs(a=(size, acc), b=(size, a), c=(size, new)),
                                gen.base(), ALL, desc=f"cmpxchg {a:#x}, acc={acc:#x}"))
    return out


def misc_cases(gen):
    out = []
    for i in range(12):
        ah = gen.r.getrandbits(8) if i > 1 else (0xFF if i else 0)
        regs = gen.regs()
        regs["rax"] = (regs["rax"] & ~0xFF00) | (ah << 8)
        out.append(Case(["sahf"], regs, gen.base(), compose(ALL, effects("sahf")), desc=f"sahf ah={ah:#x}"))
    for op in ("clc", "stc", "cmc"):
        for _ in range(3):
            out.append(Case([op], gen.regs(), gen.base(), ALL, desc=op))
    return out


# Chains: a full setter, then one that keeps some flags (INC/DEC keep CF,
# rotates keep SF ZF AF PF, BT keeps ZF, a zero count keeps everything) or
# reads CF (ADC, SBB, RCL, RCR, CMC): the kept or read flags come from the
# first instruction, not from POPFQ.
FIRST = [("add", "add eax, ebx"), ("sub", "sub eax, ebx"), ("cmp", "cmp bl, al"), ("neg", "neg rbx"),
         ("sbb", "sbb ax, bx"), ("adc", "adc rax, rbx"), ("xor", "xor al, bl"), ("shl", "shl ebx, 1"),
         ("sahf", "sahf")]
SECOND = [("inc", "inc ecx", None, 4), ("dec", "dec cx", None, 2), ("inc", "inc {m8}", None, 1),
          ("rol", "rol edx, 3", 3, 4), ("ror", "ror dl, 1", 1, 1), ("rcl", "rcl rdx, 5", 5, 8),
          ("rcr", "rcr dx, cl", "cl", 2), ("rcl", "rcl dl, 9", 9, 1), ("bt", "bt edx, 3", None, 4),
          ("bts", "bts rdx, 63", None, 8), ("btc", "btc {m32}, 7", None, 4),
          ("shl", "shl edx, cl", "cl", 4), ("sar", "sar rdx, 64", 64, 8), ("rol", "rol dl, 8", 8, 1),
          ("bsf", "bsf edx, edx", None, 4), ("cmc", "cmc", None, 4), ("stc", "stc", None, 4),
          ("mul", "mul dl", None, 1), ("adc", "adc edx, ecx", None, 4), ("sbb", "sbb dl, cl", None, 1),
          ("adc", "adc {m64}, rcx", None, 8), ("cmc", "cmc", None, 4)]


def chain_cases(gen):
    out = []
    for i in range(160):
        op1, t1 = FIRST[i % len(FIRST)]
        op2, t2, cnt, size = SECOND[(i * 7 + i // len(FIRST)) % len(SECOND)]
        regs = gen.regs()
        vals = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF]
        regs["rax"] = gen.r.choice(vals + [gen.r.getrandbits(64)])
        regs["rbx"] = gen.r.choice(vals + [gen.r.getrandbits(64)])
        c_count = gen.r.choice([0, 0, 1, 8, 9, 17, 32, 33, gen.r.randrange(256)])
        regs["rcx"] = (regs["rcx"] & ~0xFF) | c_count
        if op2 == "bsf" and i % 2:
            regs["rdx"] &= ~0xFFFFFFFF
        if op2 == "mul":
            regs["rax"] = gen.r.choice([0, 1, 0xFF, 0x80, gen.r.getrandbits(64)])
        if cnt == "cl":
            cnt = c_count
        d1 = compose(ALL, effects(op1, 4, 1))
        e2 = effects(op2, size, cnt if cnt is not None else 1)
        defined = compose(d1, e2)
        regmask = {}
        if op2 == "bsf" and regs["rdx"] & 0xFFFFFFFF == 0:
            regmask[S_RDX] = 0
        t2 = t2.format(m8="byte ptr {m}", m32="dword ptr {m}", m64="qword ptr {m}")
        out.append(Case([t1, t2], regs, gen.base(), defined, mem=gen.r.getrandbits(64),
                        desc=f"{t1}; {t2} rax={regs['rax']:#x} rbx={regs['rbx']:#x} cl={c_count}",
                        regmask=regmask))
    return out


def all_cases():
    gen = Gen(SEED)
    cases = []
    for f in (alu_cases, unary_cases, shift_cases, bt_cases, bsf_cases, mul_cases, xchg_cases, misc_cases,
              chain_cases):
        cases += f(gen)
    for i, c in enumerate(cases):
        c.reader = READERS[i % len(READERS)]
    return cases


# --- the case code ------------------------------------------------------------
#
# r15 points at the records, r14 holds 1, r13 is the reader's scratch.  The
# setters use rax rbx rcx rdx and the record's memory slot.

def setup_lines(c, off):
    lines = [f"mov {p}, {v:#x}" for p, v in c.regs.items()]
    lines.append(f"mov r13, {c.mem:#x}")
    lines.append(f"mov qword ptr [r15 + {off + 8 * S_MEM}], r13")
    lines.append("mov r13d, 0")
    lines.append(f"push {c.base:#x}")
    lines.append("popfq")
    return lines


def setter_lines(c, off):
    return [s.format(m=f"[r15 + {off + 8 * S_MEM}]") for s in c.setter]


def reader_lines(reader, off):
    cc0 = off + 8 * S_CC
    if reader == "pushf":
        return ["pushfq", f"pop qword ptr [r15 + {off + 8 * S_AUX}]"]
    if reader == "jcc":
        out = []
        for k, cc in enumerate(CC):
            out += [f"j{cc} 1f", f"lea r13, [r13 + {1 << k}]", "1:"]
        return out + [f"mov [r15 + {off + 8 * S_AUX}], r13"]
    if reader == "setcc":
        return [f"set{cc} byte ptr [r15 + {cc0 + k}]" for k, cc in enumerate(CC)]
    if reader == "cmovcc":
        out = []
        for k, cc in enumerate(CC):
            out += ["mov r13d, 0", f"cmov{cc} r13d, r14d", f"mov byte ptr [r15 + {cc0 + k}], r13b"]
        return out
    if reader == "lahf":
        return [f"mov [r15 + {off}], rax", "lahf", "mov r13, rax", f"mov rax, [r15 + {off}]",
                f"mov [r15 + {off + 8 * S_AUX}], r13"]
    if reader == "adc":
        return ["adc r13, 0", f"mov [r15 + {off + 8 * S_AUX}], r13"]
    if reader == "sbb":
        return ["sbb r13, r13", f"mov [r15 + {off + 8 * S_AUX}], r13"]
    raise KeyError(reader)


def store_lines(off):
    return [f"mov [r15 + {off + 8 * k}], {r}" for k, r in enumerate(("rax", "rbx", "rcx", "rdx"))] + \
           ["pushfq", f"pop qword ptr [r15 + {off + 8 * S_FLAGS}]"]


def case_code(c, off, reader):
    return setup_lines(c, off) + setter_lines(c, off) + reader_lines(reader, off) + store_lines(off)


def oracle_source(cases):
    """Section A: every case with its own reader; section B: every case with
    PUSHFQ as its reader (the setter's flags, for the vtx-only variants)."""
    lines = []
    n = len(cases)
    for i, c in enumerate(cases):
        lines += case_code(c, i * REC, c.reader)
    for i, c in enumerate(cases):
        lines += case_code(c, (n + i) * REC, "pushf")
    return lines


NATIVE_PROLOGUE = """
.intel_syntax noprefix
.text
.globl _start
_start:
    lea r15, [rip + outbuf]
    mov r14d, 1
"""

NATIVE_EPILOGUE = """
    lea rsi, [rip + outbuf]
    mov rdx, {size}
2:  mov eax, 1
    mov edi, 1
    syscall
    test rax, rax
    jle 3f
    add rsi, rax
    sub rdx, rax
    jnz 2b
3:  mov eax, 60
    xor edi, edi
    syscall
.bss
.balign 64
outbuf: .space {size}
"""


def run_native(lines, size):
    """Assemble the case code as a static x86-64 program, run it on the host
    and return its records."""
    src = NATIVE_PROLOGUE + "\n".join(lines) + NATIVE_EPILOGUE.format(size=size)
    with tempfile.TemporaryDirectory() as d:
        s, o, x = (os.path.join(d, n) for n in ("h.s", "h.o", "h"))
        with open(s, "w") as f:
            f.write(src)
        subprocess.run(["as", "--64", "-o", o, s], check=True, capture_output=True)
        subprocess.run(["ld", "-static", "-o", x, o], check=True, capture_output=True)
        p = subprocess.run([x], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout) == size, (len(p.stdout), size)
    return p.stdout


def long_vm(code, org=CODE):
    vm = vtx.VM(memory=MEMORY)
    v = vm.add_vcpu()
    vm.setup_long_mode(entry=org, stack=STACK)
    vm.load(org, code)
    v.r15 = OUT
    v.r14 = 1
    return vm


_ORACLE = {}


def oracle():
    """(cases, native records) computed once per session."""
    if "v" not in _ORACLE:
        cases = all_cases()
        n = len(cases)
        _ORACLE["v"] = (cases, run_native(oracle_source(cases), 2 * n * REC))
    return _ORACLE["v"]


def rec(blob, i):
    q = struct.unpack_from("<10Q", blob, i * REC)
    return q, blob[i * REC + 8 * S_CC: i * REC + 8 * S_CC + 16]


def cc_mask(defined):
    return [k for k in range(16) if CC_DEPS[k] & ~defined == 0]


def final_defined(c, reader):
    if reader in ("adc", "sbb"):
        return STATUS if c.defined & CF else 0
    return c.defined & STATUS


def compare_records(cases, got, want, got_base=0, want_base=0, reader_of=lambda c: c.reader, limit=15):
    problems = []
    checked_bits = 0
    for i, c in enumerate(cases):
        reader = reader_of(c)
        (g, gcc), (w, wcc) = rec(got, got_base + i), rec(want, want_base + i)
        diffs = []
        for slot, name in ((S_RAX, "rax"), (S_RBX, "rbx"), (S_RCX, "rcx"), (S_RDX, "rdx"), (S_MEM, "mem")):
            m = c.regmask.get(slot, (1 << 64) - 1)
            if (g[slot] ^ w[slot]) & m:
                diffs.append(f"{name} vtx {g[slot]:#x} host {w[slot]:#x}")
        fd = final_defined(c, reader)
        checked_bits += bin(fd).count("1")
        if (g[S_FLAGS] ^ w[S_FLAGS]) & fd:
            diffs.append(f"final flags (defined {fd:#x}) vtx {g[S_FLAGS] & fd:#x} host {w[S_FLAGS] & fd:#x}")
        d = c.defined & STATUS
        if reader == "pushf":
            if (g[S_AUX] ^ w[S_AUX]) & d:
                diffs.append(f"pushfq (defined {d:#x}) vtx {g[S_AUX] & d:#x} host {w[S_AUX] & d:#x}")
        elif reader == "lahf":
            ga, wa = (g[S_AUX] >> 8) & 0xFF, (w[S_AUX] >> 8) & 0xFF
            if (ga ^ wa) & d or ga & 0x2A != 2:
                diffs.append(f"lahf ah (defined {d:#x}) vtx {ga:#x} host {wa:#x}")
        elif reader == "jcc":
            for k in cc_mask(d):
                if (g[S_AUX] ^ w[S_AUX]) >> k & 1:
                    diffs.append(f"j{CC[k]} vtx {'not ' if g[S_AUX] >> k & 1 else ''}taken, host the other way")
        elif reader in ("setcc", "cmovcc"):
            for k in cc_mask(d):
                if gcc[k] != wcc[k] or gcc[k] not in (0, 1):
                    diffs.append(f"{reader[:-2]}{CC[k]} vtx {gcc[k]} host {wcc[k]}")
        elif reader in ("adc", "sbb") and d & CF:
            if g[S_AUX] != w[S_AUX]:
                diffs.append(f"{reader} reader vtx {g[S_AUX]:#x} host {w[S_AUX]:#x}")
        if diffs:
            problems.append(f"case {i} [{c.desc}] base={c.base:#x} reader={reader}: " + "; ".join(diffs))
            if len(problems) >= limit:
                break
    return problems, checked_bits


# --- 1. every setter, every reader, against the host ----------------------------

def test_oracle_is_not_vacuous():
    """The case list covers every setter family and every reader, and the
    host's records hold what the SDM says for a few hand-checked cases."""
    cases, native = oracle()
    assert len(cases) > 2000
    ops = {c.setter[-1].split()[0] for c in cases}
    for op in ("add", "adc", "sub", "sbb", "cmp", "and", "or", "xor", "test", "inc", "dec", "neg", "shl", "shr",
               "sar", "rol", "ror", "rcl", "rcr", "bt", "bts", "btr", "btc", "bsf", "bsr", "mul", "imul", "xadd",
               "cmpxchg", "sahf"):
        assert op in ops, op
    assert {c.reader for c in cases} == set(READERS)
    n = len(cases)
    # hand-checked against the SDM: the host's PUSHFQ records (section B)
    want = {
        "add al, 0x1 a=0x7f b=0x1": OF | SF | AF,                 # 0x7F + 1 = 0x80
        "add ah, bh a=0x0 b=0x0": ZF | PF,
        "sub eax, 0x1 a=0x7fffffff b=0x1": 0,                     # 0x7FFFFFFE: PF of 0xFE is odd
        "sub eax, ebx a=0x80000000 b=0x1": OF | AF | PF,          # 0x7FFFFFFF
        "cmp rax, rbx a=0x8000000000000000 b=0x1": OF | AF | PF,  # 0x7FFF...F: PF of 0xFF
    }
    seen = 0
    for i, c in enumerate(cases):
        if c.desc in want:
            w, _ = rec(native, n + i)
            assert w[S_AUX] & STATUS == want[c.desc], c.desc
            seen += 1
    assert seen == len(want)


def test_setters_and_readers_match_the_host():
    cases, native = oracle()
    n = len(cases)
    code = vtx.asm("\n".join(sum((case_code(c, i * REC, c.reader) for i, c in enumerate(cases)), []))
                   + "\nhlt\n", bits=64, org=CODE)
    vm = long_vm(code)
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=10_000_000)
    assert r.stop == "stop" and r.exit.reason == R.HLT, r
    assert r.exit.guest_rip == CODE + len(code) - 1
    got = vm.read(OUT, n * REC)
    problems, bits = compare_records(cases, got, native)
    assert not problems, f"{len(problems)}+ mismatches with the host:\n" + "\n".join(problems)
    assert bits > 4 * n


def test_pushf_reader_matches_the_host():
    """Every setter read first by PUSHFQ (the section the vtx-only variants
    compare with)."""
    cases, native = oracle()
    n = len(cases)
    code = vtx.asm("\n".join(sum((case_code(c, i * REC, "pushf") for i, c in enumerate(cases)), []))
                   + "\nhlt\n", bits=64, org=CODE)
    vm = long_vm(code)
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=10_000_000)
    assert r.stop == "stop" and r.exit.reason == R.HLT, r
    problems, _ = compare_records(cases, vm.read(OUT, n * REC), native, want_base=n, reader_of=lambda c: "pushf")
    assert not problems, f"{len(problems)}+ mismatches with the host:\n" + "\n".join(problems)


# --- reading a known RFLAGS value back through each reader -------------------------

def parity_even(v):
    return bin(v & 0xFF).count("1") % 2 == 0


def after_reader_flags(reader, e):
    """RFLAGS status bits after `reader` ran on status flags e."""
    if reader == "adc":               # r13 = 0 + 0 + CF
        cf = e & CF
        return 0 if cf else (ZF | PF)
    if reader == "sbb":               # r13 = -CF
        return (CF | SF | AF | PF) if e & CF else (ZF | PF)
    return e & STATUS


def reader_diffs(reader, g, gcc, e):
    """What a reader recorded (record g, cc bytes gcc) against status flags e
    that the guest must have seen exactly."""
    diffs = []
    if reader == "pushf" and (g[S_AUX] ^ e) & STATUS:
        diffs.append(f"pushfq {g[S_AUX] & STATUS:#x} want {e & STATUS:#x}")
    if reader == "lahf" and (g[S_AUX] >> 8) & 0xFF != (e & 0xD5) | 2:
        diffs.append(f"lahf {(g[S_AUX] >> 8) & 0xFF:#x} want {(e & 0xD5) | 2:#x}")
    if reader == "jcc":
        for k in range(16):
            if (g[S_AUX] >> k & 1) != (not cc_true(k, e)):
                diffs.append(f"j{CC[k]} wrong with flags {e & STATUS:#x}")
    if reader in ("setcc", "cmovcc"):
        for k in range(16):
            if gcc[k] != int(cc_true(k, e)):
                diffs.append(f"{reader[:-2]}{CC[k]} {gcc[k]} with flags {e & STATUS:#x}")
    if reader == "adc" and g[S_AUX] != (e & CF):
        diffs.append(f"adc {g[S_AUX]:#x} with CF {e & CF}")
    if reader == "sbb" and g[S_AUX] != (-(e & CF)) & ((1 << 64) - 1):
        diffs.append(f"sbb {g[S_AUX]:#x} with CF {e & CF}")
    want = after_reader_flags(reader, e)
    if (g[S_FLAGS] & STATUS) != want:
        diffs.append(f"final flags {g[S_FLAGS] & STATUS:#x} want {want:#x}")
    return diffs


def reg_diffs(c, g, w):
    diffs = []
    for slot, name in ((S_RAX, "rax"), (S_RBX, "rbx"), (S_RCX, "rcx"), (S_RDX, "rdx"), (S_MEM, "mem")):
        m = c.regmask.get(slot, (1 << 64) - 1)
        if (g[slot] ^ w[slot]) & m:
            diffs.append(f"{name} vtx {g[slot]:#x} host {w[slot]:#x}")
    return diffs


# --- 1b. an exception between the setter and the reader --------------------------

HANDLER_SRC = """
ud:     pushfq
        pop qword ptr [r11 + 48]
        mov r10, [rsp + 16]
        mov [r11 + 56], r10
        mov r10, 0x600000000
        mov [r11 + 64], r10
        add qword ptr [rsp], 2
        iretq
bp:     pushfq
        pop qword ptr [r11 + 48]
        mov r10, [rsp + 16]
        mov [r11 + 56], r10
        mov r10, 0x300000000
        mov [r11 + 64], r10
        iretq
gp:     pushfq
        pop qword ptr [r11 + 48]
        mov r10, [rsp + 24]
        mov [r11 + 56], r10
        mov r10, [rsp]
        bts r10, 32 + 0
        bts r10, 32 + 2
        bts r10, 32 + 3
        mov [r11 + 64], r10
        add qword ptr [rsp + 8], 4
        add rsp, 8
        iretq
pf:     pushfq
        pop qword ptr [r11 + 48]
        mov r10, [rsp + 24]
        mov [r11 + 56], r10
        mov r10, [rsp]
        bts r10, 32 + 1
        bts r10, 32 + 2
        bts r10, 32 + 3
        mov [r11 + 64], r10
        mov r10, cr2
        mov [r11 + 72], r10
        add qword ptr [rsp + 8], 4
        add rsp, 8
        iretq
"""

# vector -> (the faulting instruction, r12, the record's vector|error word,
# CR2).  The #GP and the second #PF come from flag-setting instructions (CMP,
# SUB) that fault on their memory operand: a faulting instruction changes no
# flag, so the frame still holds the setter's flags.
FAULTS = [
    (6, "ud2", 0, 6 << 32, 0),
    (3, "int3", 0, 3 << 32, 0),
    (13, "cmp r13, qword ptr [r12]", 0x8000000000000000, 13 << 32, 0),     # non-canonical: #GP(0)
    (14, "mov r13, qword ptr [r12]", 1 << 32, 14 << 32, 1 << 32),          # PDPTE 4 not present: #PF(0)
    (14, "sub r13, qword ptr [r12]", 3 << 32, 14 << 32, 3 << 32),
]


def install_idt(vm, handlers_code):
    """A 64-bit IDT at IDT with interrupt gates for #UD #BP #GP #PF to the
    handlers in HANDLER_SRC, and those vectors taken out of the exception
    bitmap so the guest handles them."""
    labels = {}
    for name in ("ud", "bp", "gp", "pf"):
        labels[name] = HANDLERS + len(vtx.asm(HANDLER_SRC.split(f"\n{name}:")[0], bits=64, org=HANDLERS))
    vm.load(HANDLERS, handlers_code)
    for vec, name in ((6, "ud"), (3, "bp"), (13, "gp"), (14, "pf")):
        off = labels[name]
        lo = (off & 0xFFFF) | (0x18 << 16) | (0x8E00 << 32) | (((off >> 16) & 0xFFFF) << 48)
        vm.write_u64(IDT + 16 * vec, lo)
        vm.write_u64(IDT + 16 * vec + 8, off >> 32)
    v = vm.vcpu
    v.idtr = vtx.DescriptorTable(IDT, 16 * 256 - 1)
    v.vmwrite(F.EXCEPTION_BITMAP, v.vmread(F.EXCEPTION_BITMAP) & ~((1 << 3) | (1 << 6) | (1 << 13) | (1 << 14)))


def test_flags_across_a_guest_exception():
    """Setter, then a fault or INT3 handled by the guest: the RFLAGS image in
    the frame, PUSHFQ in the handler and PUSHFQ after IRETQ all hold the
    setter's flags; the reader after IRETQ agrees with the host."""
    cases, native = oracle()
    n = len(cases)
    lines = []
    for i, c in enumerate(cases):
        off = i * REC
        vec, insn, r12, _, _ = FAULTS[i % len(FAULTS)]
        setup = setup_lines(c, off)
        lines += setup[:-2] + [f"lea r11, [r15 + {off}]", f"mov r12, {r12:#x}"] + setup[-2:]
        lines += setter_lines(c, off) + [insn] + store_lines(off)
    for f in FAULTS[2:]:
        assert len(vtx.asm(f[1], bits=64)) == 4         # what the handlers skip
    code = vtx.asm("\n".join(lines) + "\nhlt\n", bits=64, org=CODE)
    vm = long_vm(code)
    install_idt(vm, vtx.asm(HANDLER_SRC, bits=64, org=HANDLERS))
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=10_000_000)
    assert r.stop == "stop" and r.exit.reason == R.HLT, r
    assert r.events == sum(1 for i in range(n) if FAULTS[i % len(FAULTS)][0] != 3)   # INT3 is an instruction
    got = vm.read(OUT, n * REC)
    problems = []
    for i, c in enumerate(cases):
        (g, _), (w, _) = rec(got, i), rec(native, n + i)
        d = c.defined & STATUS
        diffs = reg_diffs(c, g, w)
        for slot, what in ((6, "pushfq in the handler"), (7, "frame RFLAGS"), (S_FLAGS, "pushfq after iretq")):
            if (g[slot] ^ w[S_AUX]) & d:
                diffs.append(f"{what} vtx {g[slot] & d:#x} host {w[S_AUX] & d:#x} (defined {d:#x})")
        # the three observations are of one RFLAGS value, undefined bits included
        if len({g[6] & STATUS, g[7] & STATUS, g[S_FLAGS] & STATUS}) != 1:
            diffs.append(f"handler {g[6]:#x}, frame {g[7]:#x}, after iretq {g[S_FLAGS]:#x} disagree")
        if g[7] & (1 << 9) or not g[7] & 2:
            diffs.append(f"frame RFLAGS {g[7]:#x}: IF set or bit 1 clear")
        _, _, _, word, cr2 = FAULTS[i % len(FAULTS)]
        if g[8] != word or g[9] != cr2:
            diffs.append(f"vector/error {g[8]:#x} cr2 {g[9]:#x}, want {word:#x} {cr2:#x}")
        if diffs:
            problems.append(f"case {i} [{c.desc}] via {FAULTS[i % len(FAULTS)][1]}: " + "; ".join(diffs))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:15])


# --- 1c. a VM exit between the setter and the reader ---------------------------

def test_flags_across_a_vm_exit():
    """Setter, then OUT or CPUID, which exit to Python: the handler sees the
    setter's flags in vcpu.rflags; for every other case it writes them back
    with the six status flags inverted.  After RESUME the reader must see
    exactly what the hypervisor left there, undefined flags included."""
    cases, native = oracle()
    n = len(cases)
    lines = []
    for i, c in enumerate(cases):
        off = i * REC
        lines += setup_lines(c, off) + setter_lines(c, off)
        lines.append("out 0x80, al" if i % 2 == 0 else "cpuid")
        lines += reader_lines(c.reader, off) + store_lines(off)
    code = vtx.asm("\n".join(lines) + "\nhlt\n", bits=64, org=CODE)
    vm = long_vm(code)
    seen = []

    @vm.on(R.IO_INSTRUCTION, R.CPUID)
    def exit_(vcpu, exit):
        i = len(seen)
        want = (R.IO_INSTRUCTION, 0x80) if i % 2 == 0 else (R.CPUID, None)
        assert (exit.exit_reason, getattr(exit, "port", None)) == want
        h = vcpu.rflags
        e = h ^ STATUS if (i // 2) % 2 else h
        vcpu.rflags = e
        seen.append((h, e))
        return vtx.RESUME          # CPUID: the registers stay as they were

    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=10_000_000)
    assert r.stop == "stop" and r.exit.reason == R.HLT, r
    assert len(seen) == n
    got = vm.read(OUT, n * REC)
    problems = []
    for i, c in enumerate(cases):
        (g, gcc), (w, _) = rec(got, i), rec(native, n + i)
        d = c.defined & STATUS
        h, e = seen[i]
        diffs = []
        if (h ^ w[S_AUX]) & d:
            diffs.append(f"vcpu.rflags at the exit {h & d:#x} host {w[S_AUX] & d:#x} (defined {d:#x})")
        diffs += reg_diffs(c, g, w)
        diffs += reader_diffs(c.reader, g, gcc, e)
        if diffs:
            problems.append(f"case {i} [{c.desc}] reader={c.reader}: " + "; ".join(diffs))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:15])


# --- 4. the budget ends between the setter and the reader ------------------------

def test_flags_at_a_budget_boundary():
    """max_instructions stops the run right after each setter: vcpu.rflags
    and the registers hold its results there; every third time Python
    inverts the status flags; the run then resumes into the reader, which
    must see exactly the flags the stopped vCPU showed (or Python wrote)."""
    cases, native = oracle()
    n = len(cases)
    lines, stops, count = [], [], 0
    for i, c in enumerate(cases):
        off = i * REC
        reader = "setcc" if c.reader == "jcc" else c.reader      # straight-line: exact counts
        pre = setup_lines(c, off) + setter_lines(c, off)
        post = reader_lines(reader, off) + store_lines(off)
        count += len(pre)
        stops.append(count)
        count += len(post)
        lines += pre + [f"stop{i}:"] + post
    lines.append("hlt")
    lines.append(".balign 8")
    lines.append("stops: " + "\n".join(f".quad stop{i}" for i in range(n)))
    code = vtx.asm("\n".join(lines) + "\n", bits=64, org=CODE)
    addrs = struct.unpack_from(f"<{n}Q", code, len(code) - 8 * n)
    vm = long_vm(code)
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    v = vm.vcpu
    done, problems, flags = 0, [], []
    for i, c in enumerate(cases):
        r = vm.run(max_instructions=stops[i] - done)
        done = stops[i]
        assert r.stop == "budget" and v.rip == addrs[i], (i, r, hex(v.rip), hex(addrs[i]))
        w, _ = rec(native, n + i)
        d = c.defined & STATUS
        h = v.rflags
        diffs = []
        if (h ^ w[S_AUX]) & d:
            diffs.append(f"vcpu.rflags {h & d:#x} host {w[S_AUX] & d:#x} (defined {d:#x})")
        regs = (v.rax, v.rbx, v.rcx, v.rdx, vm.read_u64(OUT + i * REC + 8 * S_MEM))
        for k, name in enumerate(("rax", "rbx", "rcx", "rdx", "mem")):
            if (regs[k] ^ w[k]) & c.regmask.get(k, (1 << 64) - 1):
                diffs.append(f"{name} {regs[k]:#x} host {w[k]:#x}")
        if i % 3 == 0:
            v.rflags = h ^ STATUS
        flags.append(v.rflags)
        if diffs:
            problems.append(f"case {i} [{c.desc}] at the stop: " + "; ".join(diffs))
    r = vm.run(max_instructions=count - done + 1)
    assert r.stop == "stop" and r.exit.reason == R.HLT and r.instructions == count - done, r
    got = vm.read(OUT, n * REC)
    for i, c in enumerate(cases):
        reader = "setcc" if c.reader == "jcc" else c.reader
        g, gcc = rec(got, i)
        diffs = reader_diffs(reader, g, gcc, flags[i])
        if diffs:
            problems.append(f"case {i} [{c.desc}] reader={reader} after resuming: " + "; ".join(diffs))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:15])


# --- 4b. the pause of a REP string instruction at the budget ---------------------

def test_flags_across_rep_string_pauses():
    """Setter, then REP MOVSB of 20 bytes (which changes no flag), then SETcc
    and PUSHFQ.  The budget pauses the REP after 5 and after 14 iterations:
    at each pause RIP is on the REP, RCX counts down and vcpu.rflags holds
    the setter's flags (inverted by Python at the first pause for every other
    case); the readers after the REP see the flags of the last pause."""
    cases, native = oracle()
    n = len(cases)
    picked = list(range(0, n, 29))
    src, dst = OUT + 0x100000, OUT + 0x180000
    lines, plan, count = [], [], 0
    for j, i in enumerate(picked):
        c = cases[i]
        off = j * REC
        pre = setup_lines(c, off) + setter_lines(c, off)
        pre += [f"mov [r15 + {off + 8 * k}], {r}" for k, r in enumerate(("rax", "rbx", "rcx", "rdx"))]
        pre += [f"mov rsi, {src + 32 * j:#x}", f"mov rdi, {dst + 32 * j:#x}", "mov ecx, 20"]
        post = reader_lines("setcc", off) + ["pushfq", f"pop qword ptr [r15 + {off + 8 * S_FLAGS}]"]
        plan.append((count + len(pre), count + len(pre) + 20))
        count += len(pre) + 20 + len(post)
        lines += pre + [f"rep{j}: rep movsb"] + post
    lines += ["hlt", ".balign 8"] + [f".quad rep{j}" for j in range(len(picked))]
    code = vtx.asm("\n".join(lines) + "\n", bits=64, org=CODE)
    reps = struct.unpack_from(f"<{len(picked)}Q", code, len(code) - 8 * len(picked))
    vm = long_vm(code)
    pattern = bytes(random.Random(SEED).getrandbits(8) for _ in range(32 * len(picked)))
    vm.write(src, pattern)
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    v = vm.vcpu
    done, problems, final = 0, [], []
    for j, i in enumerate(picked):
        c = cases[i]
        w, _ = rec(native, n + i)
        d = c.defined & STATUS
        start, _ = plan[j]
        want = None
        for iters in (5, 14):
            r = vm.run(max_instructions=start + iters - done)
            done = start + iters
            assert r.stop == "budget" and v.rip == reps[j] and v.ecx == 20 - iters, (j, iters, hex(v.rip), v.ecx)
            assert v.rsi == src + 32 * j + iters and v.rdi == dst + 32 * j + iters
            h = v.rflags
            if want is None:
                if (h ^ w[S_AUX]) & d:
                    problems.append(f"case {i} [{c.desc}]: vcpu.rflags {h & d:#x} host {w[S_AUX] & d:#x} "
                                    f"(defined {d:#x}) at the first pause")
                want = h ^ STATUS if j % 2 else h
                v.rflags = want
            elif (h ^ want) & STATUS:
                problems.append(f"case {i} [{c.desc}]: vcpu.rflags {h:#x}, want {want:#x} at the second pause")
        final.append(want)
    r = vm.run(max_instructions=count - done + 1)
    assert r.stop == "stop" and r.exit.reason == R.HLT and r.instructions == count - done, r
    assert vm.read(dst, 32 * len(picked)) == bytes(b if k % 32 < 20 else 0 for k, b in enumerate(pattern))
    got = vm.read(OUT, len(picked) * REC)
    for j, i in enumerate(picked):
        g, gcc = rec(got, j)
        w, _ = rec(native, n + i)
        diffs = reader_diffs("setcc", g, gcc, final[j]) + reg_diffs(cases[i], g, w)
        if diffs:
            problems.append(f"case {i} [{cases[i].desc}] after the REP: " + "; ".join(diffs))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:15])


def sub_flags(a, b, size):
    """Status flags of CMP a, b (a - b) on `size`-byte operands."""
    m = mask(size)
    r = (a - b) & m
    sb = 1 << (8 * size - 1)
    f = 0
    f |= CF if a < b else 0
    f |= ZF if r == 0 else 0
    f |= SF if r & sb else 0
    f |= PF if parity_even(r) else 0
    f |= AF if (a ^ b ^ r) & 0x10 else 0
    f |= OF if ((a ^ b) & (a ^ r)) & sb else 0
    return f


@pytest.mark.parametrize("size,insn", [(1, "repe cmpsb"), (2, "repe cmpsw"), (4, "repne scasd"), (8, "repe cmpsq")])
def test_flags_of_a_paused_flag_setting_rep(size, insn):
    """REPE CMPS / REPNE SCAS set the flags on every iteration.  Paused by
    the budget after k iterations, vcpu.rflags holds the flags of the k-th
    compare; resumed, the instruction ends on the terminating compare and
    SETcc, PUSHFQ and LAHF after it see that compare's flags."""
    n = 9
    rnd = random.Random(f"{SEED}-{insn}")
    a = [rnd.getrandbits(8 * size) for _ in range(n)]
    if insn.startswith("repe"):
        b = list(a)
        b[6] = (a[6] - 1) & mask(size)            # the 7th compare mismatches: a > b there
        stop_at = 7
    else:
        b = [rnd.getrandbits(8 * size) | 1 for _ in range(n)]
        a = [0x1234 & mask(size)] * n             # EAX: the value SCAS looks for
        b[5] = a[0]
        stop_at = 6
    src, dst = 0x300000, 0x310000
    vm = long_vm(vtx.asm(f"""
        mov rsi, {src:#x}
        mov rdi, {dst:#x}
        mov ecx, {n}
        mov rax, {a[0]:#x}
        push 0x8d7
        popfq
        {insn}
        {' '.join('set' + cc + ' byte ptr [r15 + ' + str(8 * S_CC + k) + '];' for k, cc in enumerate(CC))}
        pushfq
        pop qword ptr [r15 + {8 * S_FLAGS}]
        lahf
        mov [r15 + {8 * S_AUX}], rax
        hlt
    """, bits=64, org=CODE))
    for k in range(n):
        vm.write(src + size * k, a[k].to_bytes(size, "little"))
        vm.write(dst + size * k, b[k].to_bytes(size, "little"))
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    v = vm.vcpu

    def cmp_flags(k):                       # flags of iteration k (0-based)
        if insn.startswith("repne"):
            return sub_flags(a[0], b[k], size)     # SCAS: rAX - [rDI]
        return sub_flags(a[k], b[k], size)         # CMPS: [rSI] - [rDI]

    r = vm.run(max_instructions=7)                  # 6 set-up instructions, 1 iteration
    assert r.stop == "budget" and v.ecx == n - 1
    assert v.rflags & STATUS == cmp_flags(0)
    r = vm.run(max_instructions=3)
    assert r.stop == "budget" and v.ecx == n - 4 and v.rip == CODE + len(vtx.asm(f"""
        mov rsi, {src:#x}
        mov rdi, {dst:#x}
        mov ecx, {n}
        mov rax, {a[0]:#x}
        push 0x8d7
        popfq""", bits=64))
    assert v.rflags & STATUS == cmp_flags(3)
    r = vm.run()
    assert r.stop == "stop" and r.exit.reason == R.HLT
    assert v.ecx == n - stop_at
    f = cmp_flags(stop_at - 1)
    assert f & ZF == (0 if insn.startswith("repe") else ZF)
    g, gcc = rec(vm.read(OUT, REC), 0)
    assert g[S_FLAGS] & STATUS == f
    assert (g[S_AUX] >> 8) & 0xFF == (f & 0xD5) | 2
    assert [gcc[k] for k in range(16)] == [int(cc_true(k, f)) for k in range(16)]
