"""The x87 FPU (core/insn/x87.pxi), against the host CPU.

The oracle is the host processor itself: the same instruction sequence runs
natively in a subprocess (tests/guests/x87_native.c, x86-64 user mode) and
on vtx as a guest in real, protected and long mode; both start from the same
FRSTOR image and operand bytes, and must end with the same control, status
and tag words, the same eight registers, the same memory and (FCOMI) the
same flags.  vtx computes arithmetic on the host's x87 unit too, so the
native run checks everything vtx does itself: decoding every form, operand
fetch and store through the guest's addressing, the stack and tags, the
stores that an unmasked exception suppresses, FLDCW/FLDENV/FRSTOR and the
images FNSTENV/FNSAVE write.  Independent of the host, a few results are
checked against exact rational arithmetic rounded by hand (all four
rounding modes and the three precisions), and against Unicorn.

Intel/AMD: the host is an AMD processor.  The only differences this file
knows of are (1) the transcendental results (F2XM1, FYL2X, FYL2XP1, FPTAN,
FPATAN, FSIN, FCOS, FSINCOS: processor-specific approximations, SDM Vol. 1
8.3.10; vtx gives the host's), and (2) FINCSTP, FDECSTP, FFREE and FNOP
update FIP and FOP on the host: the SDM groups them with the control
instructions (Vol. 1 8.3.11) but its list of the instructions that leave
the pointers alone (8.1.8) does not name them, so vtx updates them as the
host does.  FDP/FDS after a register-form instruction are undefined (8.1.8):
vtx leaves them unchanged, and the comparisons here do not look at them.
"""

import fractions
import os
import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vtx
from insn_harness import run

from conftest import needs_as

pytestmark = needs_as

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = 0x9000           # the operand area (reachable by BX in real mode)
IMAGE = 0x200           # offset of the FRSTOR image in it
FLAGS_IN = 0x3F1        # AH for SAHF before the instruction
FLAGS_OUT = 0x3F0       # AH from LAHF after it
DATA_SIZE = 0x400
BREG = {16: "bx", 32: "ebx", 64: "rbx"}
SAVE_OPT = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------------------
# the native oracle


class Native:
    """A persistent x87_native process: blob in, (trapped, data, image) out."""

    def __init__(self, exe):
        self.p = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, code, data):
        self.p.stdin.write(struct.pack("<I", len(code)) + code + struct.pack("<I", len(data)) + data)
        self.p.stdin.flush()
        kind, d, s = self.p.stdout.readline().decode().split()
        assert kind != "ill", "the host CPU raised #UD"
        return kind == "trap", bytes.fromhex(d), bytes.fromhex(s)

    def ill(self, code):
        """Whether the blob raises #UD on the host."""
        self.p.stdin.write(struct.pack("<I", len(code)) + code + struct.pack("<I", 16) + bytes(16))
        self.p.stdin.flush()
        return self.p.stdout.readline().decode().split()[0] == "ill"


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    exe = str(tmp_path_factory.mktemp("x87") / "x87_native")
    subprocess.run([gcc, "-O1", "-o", exe, os.path.join(HERE, "guests", "x87_native.c")], check=True)
    n = Native(exe)
    yield n
    n.p.stdin.close()
    n.p.wait()


def native_run(native, src, data):
    body = src.replace("[B", "[rbx")
    code = vtx.asm("push rbx\nmov rbx, rdi\n" + body + "\nfnsave [rsi]\npop rbx\nret\n", bits=64, org=0)
    return native.run(code, data)


def guest_run(src, bits, data, cr0_set=0, cr0_clear=0, setup=None):
    body = src.replace("[B", f"[{BREG[bits]}")

    def prep(vm, vcpu):
        vcpu.cr0 = (vcpu.cr0 | cr0_set) & ~cr0_clear
        if setup:
            setup(vm, vcpu)

    out = run(body, bits, regs={BREG[bits]: DATA}, data={DATA: data}, setup=prep)
    return out


def save_state(img):
    """(fcw, fsw, ftw, fop, [st0..st7]) of a 32-bit FSAVE image."""
    fcw, fsw, ftw = (struct.unpack_from("<H", img, o)[0] for o in (0, 4, 8))
    fop = (struct.unpack_from("<I", img, 16)[0] >> 16) & 0x7FF
    regs = [int.from_bytes(img[28 + 10 * i:38 + 10 * i], "little") for i in range(8)]
    return fcw, fsw, ftw, fop, regs


def vcpu_state(v):
    return v.fcw, v.fsw, v.ftw, [getattr(v, f"st{i}") for i in range(8)]


def image(fcw=0x37F, fsw=0, ftw=0xFFFF, regs=(0,) * 8):
    """A 32-bit FSAVE/FRSTOR image (registers in stack order)."""
    b = struct.pack("<IIIIIII", fcw, fsw, ftw, 0, 0, 0, 0)
    return b + b"".join(r.to_bytes(10, "little") for r in regs)


def prologue(bits):
    # FRSTOR reads the 32-bit format in every mode (a 66 prefix in 16-bit
    # code): the real-mode layout has FCW, FSW, FTW and the registers at the
    # same offsets.
    pre = ".byte 0x66\n" if bits == 16 else ""
    return f"{pre}frstor [B+{IMAGE:#x}]\nmov ah, [B+{FLAGS_IN:#x}]\nsahf\n"


EPILOGUE = f"\nlahf\nmov [B+{FLAGS_OUT:#x}], ah\n"


def compare(native, insn, bits, img, operand=b"", flags=0):
    """Run frstor(img); insn on the host and on vtx in `bits` mode; assert
    the same outcome.  Returns the host's state."""
    data = bytearray(DATA_SIZE)
    data[:len(operand)] = operand
    data[IMAGE:IMAGE + 108] = img
    data[FLAGS_IN] = flags
    src = prologue(bits) + insn + EPILOGUE
    trapped, ndata, nimg = native_run(native, prologue(64) + insn + EPILOGUE, bytes(data))
    setup = None
    if "fisttp" in insn:       # SSE3 (the SSE part of the model advertises it once it lands)
        def setup(vm, vcpu):
            vm._machine._set_features(vm._machine._features() + ["SSE3"])
    out = guest_run(src, bits, bytes(data), setup=setup)
    if trapped:
        assert isinstance(out.exit, vtx.ExceptionExit) and out.exit.vector == 16, (insn, out.exit)
        return None
    assert out.halted, (insn, out.exit)
    fcw, fsw, ftw, fop, regs = save_state(nimg)
    got = vcpu_state(out.vcpu)
    assert got == (fcw, fsw, ftw, regs), (insn, bits, [hex(x) for x in (fcw, fsw, ftw)],
                                          [hex(x) for x in got[:3]], [hex(r) for r in regs],
                                          [hex(r) for r in got[3]])
    gdata = out.vm.read(DATA, DATA_SIZE)
    assert gdata[:IMAGE] == ndata[:IMAGE], (insn, bits, ndata[:16].hex(), gdata[:16].hex())
    assert gdata[FLAGS_OUT] & 0xD5 == ndata[FLAGS_OUT] & 0xD5, (insn, bits)
    return fsw, regs


# ---------------------------------------------------------------------------
# operand values

def f80(sign, exp, sig):
    return (sign << 79) | (exp << 64) | sig


J = 1 << 63
SPECIAL80 = [
    0, f80(1, 0, 0),                                  # +-0
    f80(0, 0x3FFF, J), f80(1, 0x3FFF, J),              # +-1
    f80(0, 0x7FFF, J), f80(1, 0x7FFF, J),              # +-inf
    f80(0, 0x7FFF, J | (1 << 62)),                    # QNaN (the indefinite with sign 1)
    f80(1, 0x7FFF, J | (1 << 62)),
    f80(0, 0x7FFF, J | 1), f80(1, 0x7FFF, J | 0x1234),  # SNaNs
    f80(0, 0, 1), f80(1, 0, (1 << 62) | 5),           # denormals
    f80(0, 0, J | 7),                                 # pseudo-denormal
    f80(0, 0x4000, 1 << 62),                          # unnormal (unsupported)
    f80(0, 0x7FFF, 0), f80(0, 0x7FFF, 1 << 62),       # pseudo-infinity, pseudo-NaN
    f80(0, 0x7FFE, (1 << 64) - 1), f80(0, 1, J),      # largest, smallest normal
    f80(0, 0x401D, J), f80(1, 0x403E, J),             # 2^30, -2^63
]


def normal80():
    return st.builds(f80, st.integers(0, 1), st.integers(1, 0x7FFE), st.integers(J, (1 << 64) - 1))


def near80():
    """Normals of moderate size, so that sums and products are inexact rather than overflow."""
    return st.builds(f80, st.integers(0, 1), st.integers(0x3FF0, 0x4010), st.integers(J, (1 << 64) - 1))


def value80():
    return st.one_of(st.sampled_from(SPECIAL80), near80(), normal80(),
                     st.integers(0, (1 << 80) - 1))


def fcw_strategy(all_masked=None):
    masks = st.just(0x3F) if all_masked else (st.integers(0, 0x3F) if all_masked is False else
                                              st.sampled_from([0x3F, 0x3F, 0x3F, 0x3E, 0x3B, 0x37, 0x2F,
                                                               0x1F, 0x3D, 0x00]))
    return st.builds(lambda m, pc, rc: 0x40 | m | (pc << 8) | (rc << 10), masks,
                     st.sampled_from([0, 2, 3, 3]), st.integers(0, 3))


@st.composite
def fpu_image(draw, all_masked=None, full=False):
    fcw = draw(fcw_strategy(all_masked))
    top = draw(st.integers(0, 7))
    regs = [draw(value80()) for _ in range(8)]
    if full:
        ftw = 0
    else:
        ftw = draw(st.sampled_from([0, 0, 0, 0xC000 >> (2 * ((top - 1) & 7)) * 0, None]))
        if ftw is None:
            ftw = draw(st.integers(0, 0xFFFF))
    cc = draw(st.sampled_from([0, 0x4700]))
    return image(fcw, (top << 11) | cc, ftw, regs)


def m32():
    return st.one_of(st.sampled_from([0, 0x80000000, 0x3F800000, 0x7F800000, 0xFF800000, 0x7FC00000,
                                      0x7F800001, 0x00000001, 0x807FFFFF, 0x7F7FFFFF]),
                     st.integers(0, (1 << 32) - 1)).map(lambda v: v.to_bytes(4, "little"))


def m64():
    return st.one_of(st.sampled_from([0, 1 << 63, 0x3FF0000000000000, 0x7FF0000000000000,
                                      0x7FF8000000000000, 0x7FF0000000000001, 1, 0x800FFFFFFFFFFFFF,
                                      0x7FEFFFFFFFFFFFFF]),
                     st.integers(0, (1 << 64) - 1)).map(lambda v: v.to_bytes(8, "little"))


def mint(n):
    lim = 1 << (8 * n)
    return st.one_of(st.sampled_from([0, 1, lim - 1, lim >> 1, (lim >> 1) - 1]),
                     st.integers(0, lim - 1)).map(lambda v: v.to_bytes(n, "little"))


def bcd():
    digits = st.lists(st.integers(0, 9), min_size=18, max_size=18)
    packed = digits.map(lambda ds: bytes(ds[2 * i] | (ds[2 * i + 1] << 4) for i in range(9)))
    return st.tuples(packed, st.sampled_from([0, 0x80, 0x7F, 0xFF])).map(lambda t: t[0] + bytes([t[1]]))


# ---------------------------------------------------------------------------
# every instruction family against the host

ARITH = ["fadd", "fmul", "fsub", "fsubr", "fdiv", "fdivr"]
REG_INSNS = (
    [f"{op} st(0), st({i})" for op in ARITH for i in (0, 1, 5)]
    + [f"{op} st({i}), st(0)" for op in ARITH for i in (1, 7)]
    + [f"{op}p st({i}), st(0)" for op in ARITH for i in (1, 3)]
    + [f"{op} st(1)" for op in ("fcom", "fcomp", "fucom", "fucomp", "fxch", "fld", "fst", "fstp", "ffree")]
    + ["fcompp", "fucompp", "fchs", "fabs", "ftst", "fxam", "fld1", "fldz", "fldpi", "fldl2e", "fldl2t",
       "fldlg2", "fldln2", "fsqrt", "fprem", "fprem1", "frndint", "fscale", "fxtract", "fincstp", "fdecstp",
       "fnop", "fst st(0)", "fstp st(0)", "fxch st(7)", "fld st(0)", ".byte 0xdf, 0xc1",   # FFREEP ST(1)
       ".byte 0xdc, 0xd2", ".byte 0xdc, 0xda", ".byte 0xdd, 0xcb", ".byte 0xde, 0xd1",    # FCOM2 FCOMP3
       ".byte 0xdf, 0xc9", ".byte 0xdf, 0xd3", ".byte 0xdf, 0xdb", ".byte 0xd9, 0xdc"]     # FXCH FSTP aliases
    + [f"{op} st(0), st(2)" for op in ("fcomi", "fcomip", "fucomi", "fucomip")]
    + [f"fcmov{cc} st(0), st(3)" for cc in ("b", "e", "be", "u", "nb", "ne", "nbe", "nu")]
)
TRANSCENDENTAL = ["f2xm1", "fyl2x", "fyl2xp1", "fptan", "fpatan", "fsin", "fcos", "fsincos"]


@pytest.mark.parametrize("bits", [16, 32, 64])
@pytest.mark.parametrize("insn", REG_INSNS + TRANSCENDENTAL)
@settings(max_examples=int(os.environ.get("VTX_X87_EXAMPLES", "4")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(img=fpu_image(), flags=st.integers(0, 255))
def test_register_forms_match_the_host(native, insn, bits, img, flags):
    compare(native, insn, bits, img, flags=flags & 0xD5)


MEM_INSNS = (
    [(f"{op} dword ptr [B]", m32) for op in ARITH + ["fcom", "fcomp", "fld"]]
    + [(f"{op} qword ptr [B]", m64) for op in ARITH + ["fcom", "fcomp", "fld"]]
    + [(f"fi{op[1:]} word ptr [B]", lambda: mint(2)) for op in ARITH + ["fcom", "fcomp", "fld"]]
    + [(f"fi{op[1:]} dword ptr [B]", lambda: mint(4)) for op in ARITH + ["fcom", "fcomp", "fld"]]
    + [("fild qword ptr [B]", lambda: mint(8)), ("fld tbyte ptr [B]", lambda: value80().map(
        lambda v: v.to_bytes(10, "little"))), ("fbld tbyte ptr [B]", bcd)]
    + [(f"{op} {w} ptr [B]", lambda: st.just(b"\x5a" * 10))
       for op in ("fst", "fstp") for w in ("dword", "qword")]
    + [("fstp tbyte ptr [B]", lambda: st.just(b"\x5a" * 10)), ("fbstp tbyte ptr [B]", lambda: st.just(b"\x5a" * 10))]
    + [(f"{op} {w} ptr [B]", lambda: st.just(b"\x5a" * 10))
       for op in ("fist", "fistp", "fisttp") for w in ("word", "dword")]
    + [(f"{op} qword ptr [B]", lambda: st.just(b"\x5a" * 10)) for op in ("fistp", "fisttp")]
)


@pytest.mark.parametrize("bits", [16, 32, 64])
@pytest.mark.parametrize("insn,operand", MEM_INSNS, ids=[m[0] for m in MEM_INSNS])
@settings(max_examples=int(os.environ.get("VTX_X87_EXAMPLES", "5")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_memory_forms_match_the_host(native, insn, operand, bits, data):
    img = data.draw(fpu_image())
    compare(native, insn, bits, img, data.draw(operand()))


@pytest.mark.parametrize("insn", ["fld1", "fldl2t", "fldl2e", "fldpi", "fldlg2", "fldln2", "fldz"])
@pytest.mark.parametrize("rc", [0, 1, 2, 3])
def test_constants_follow_the_rounding_control(native, insn, rc):
    """FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2 round their internal 66-bit
    constant by RC (SDM Vol. 1 8.3.8 / Vol. 2 FLD1...): pi rounded down
    differs from pi rounded to nearest in the last bit."""
    fsw, regs = compare(native, insn, 32, image(fcw=0x37F | (rc << 10), ftw=0xFFFF))
    if insn == "fldpi":
        assert regs[0] == (0x4000C90FDAA22168C235 if rc in (0, 2) else 0x4000C90FDAA22168C234)


# ---------------------------------------------------------------------------
# exact arithmetic, independent of any FPU


def exact_value(v):
    sign, exp, sig = v >> 79, (v >> 64) & 0x7FFF, v & ((1 << 64) - 1)
    return (-1) ** sign * fractions.Fraction(sig) * fractions.Fraction(2) ** (exp - 16383 - 63)


def round_to(x, bits, rc):
    """x (a nonzero Fraction in the normal range) rounded to `bits` significand
    bits by RC: 0 nearest-even, 1 down, 2 up, 3 toward zero; an 80-bit value."""
    sign = 1 if x < 0 else 0
    a = abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while fractions.Fraction(2) ** e > a:
        e -= 1
    while fractions.Fraction(2) ** (e + 1) <= a:
        e += 1
    scaled = a / fractions.Fraction(2) ** (e - bits + 1)
    q, r = divmod(scaled.numerator, scaled.denominator)
    rem = fractions.Fraction(r, scaled.denominator)
    up = {0: rem > fractions.Fraction(1, 2) or (rem == fractions.Fraction(1, 2) and q & 1),
          1: rem > 0 and sign == 1, 2: rem > 0 and sign == 0, 3: False}[rc]
    q += up
    if q == 1 << bits:
        q >>= 1
        e += 1
    return f80(sign, e + 16383, q << (64 - bits))


@pytest.mark.parametrize("bits", [32, 64])
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(a=near80(), b=near80(), op=st.sampled_from(["fadd", "fsub", "fmul", "fdiv"]),
       rc=st.integers(0, 3), pc=st.sampled_from([0, 2, 3]))
def test_arithmetic_is_correctly_rounded(a, b, op, rc, pc, bits):
    """ST(0) op ST(1) rounded by hand from the exact rational result, for
    each rounding mode and precision (24, 53, 64 bits: SDM Vol. 1 8.1.5.2)."""
    x, y = exact_value(a), exact_value(b)
    exact = {"fadd": x + y, "fsub": x - y, "fmul": x * y, "fdiv": x / y}[op]
    if exact == 0:
        return
    want = round_to(exact, {0: 24, 2: 53, 3: 64}[pc], rc)
    fcw = 0x7F | (pc << 8) | (rc << 10)
    out = guest_run(prologue(bits) + f"{op} st(0), st(1)\n", bits,
                    bytes(IMAGE) + image(fcw, 6 << 11, 0, [a, b] + [0] * 6) + bytes(DATA_SIZE - IMAGE - 108))
    assert out.st0 == want, (hex(a), hex(b), op, rc, pc, hex(out.st0), hex(want))
    assert bool(out.fsw & 0x20) == (exact_value(want) != exact)          # PE
    # C1: the result was rounded up in magnitude (SDM Vol. 1 8.1.3.1)
    assert bool(out.fsw & 0x200) == (abs(exact_value(want)) > abs(exact))


# ---------------------------------------------------------------------------
# Unicorn, a second opinion


def test_unicorn_agrees_on_basic_arithmetic():
    """Unicorn (QEMU's softfloat x87) on FADD/FMUL/FDIV/FSQRT over normal
    operands in the four rounding modes: the same ST(0) as vtx."""
    unicorn = pytest.importorskip("unicorn")
    from unicorn import x86_const as X
    import random
    rng = random.Random(8087)
    n = 0
    for _ in range(120):
        a = f80(rng.getrandbits(1), rng.randint(0x3FF0, 0x4010), J | rng.getrandbits(63))
        b = f80(0, rng.randint(0x3FF0, 0x4010), J | rng.getrandbits(63))
        op = rng.choice(["fadd st(0), st(1)", "fmul st(0), st(1)", "fdiv st(0), st(1)", "fsqrt"])
        rc = rng.randint(0, 3)
        src = f"fldcw [B+0x10]\nfld tbyte ptr [B+0x20]\nfld tbyte ptr [B]\n{op}\nfstp tbyte ptr [B+0x40]\n"
        if op == "fsqrt":
            a &= ~(1 << 79)
        data = bytearray(0x100)
        data[0:10] = a.to_bytes(10, "little")
        data[0x20:0x2A] = b.to_bytes(10, "little")
        data[0x10:0x12] = (0x37F | (rc << 10)).to_bytes(2, "little")
        out = guest_run(src, 64, bytes(data))
        ours = out.vm.read(DATA + 0x40, 10)
        code = vtx.asm(src.replace("[B", "[rbx"), bits=64, org=0x1000)
        mu = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        mu.mem_map(0x1000, 0x1000)
        mu.mem_map(DATA, 0x1000)
        mu.mem_write(0x1000, code)
        mu.mem_write(DATA, bytes(data))
        mu.reg_write(X.UC_X86_REG_RBX, DATA)
        mu.emu_start(0x1000, 0x1000 + len(code))
        theirs = bytes(mu.mem_read(DATA + 0x40, 10))
        assert ours == theirs, (op, rc, hex(a), hex(b), ours.hex(), theirs.hex())
        n += 1
    assert n == 120


# ---------------------------------------------------------------------------
# exceptions: masked responses, unmasked ones, #MF, #NM


def test_masked_invalid_gives_the_indefinite():
    out = guest_run("fninit\nfldz\nfldz\nfdivp st(1), st(0)\nfldz\nfld1\nfdiv st(0), st(1)\n", 32, b"")
    assert out.st2 == 0xFFFFC000000000000000           # 0/0: QNaN floating-point indefinite
    assert out.st0 == f80(0, 0x7FFF, J)                 # 1/0: +inf (ZE)
    assert out.fsw & 0x3F == 0x05                       # IE, ZE
    assert not out.fsw & 0x80                           # masked: no ES


def test_stack_overflow_and_underflow():
    out = guest_run("fninit\n" + "fld1\n" * 9, 32, b"")
    # masked: TOP still moves and the indefinite is loaded; C1 = 1 (overflow), SF, IE
    assert out.fsw & 0x3FFF == (7 << 11) | 0x0200 | 0x41
    assert out.st0 == 0xFFFFC000000000000000
    out = guest_run("fninit\nfadd st(0), st(1)\n", 32, b"")
    assert out.fsw & 0x3FFF == 0x41                          # C1 = 0 (underflow), SF, IE
    assert out.ftw == 0xFFFF or out.st0 == 0xFFFFC000000000000000


def test_unmasked_zero_divide_then_mf_at_the_next_instruction():
    """An unmasked #Z leaves the destination alone and sets ES and B; the
    next waiting x87 instruction (or WAIT) takes #MF with CR0.NE = 1, FNSTSW
    does not; with CR0.NE = 0 nothing is delivered (no FERR# wiring)."""
    src = "fninit\nmov word ptr [B], 0x37B\nfldcw [B]\nfld1\nfldz\nfdivr st(0), st(1)\nfnstsw [B+2]\n"
    for bits in (16, 32, 64):
        out = guest_run(src + "nop\nfwait\n", bits, b"", cr0_set=0x20)
        assert isinstance(out.exit, vtx.ExceptionExit) and out.exit.vector == 16
        assert out.vm.read(DATA + 2, 2) == (0x3000 | 0x8084).to_bytes(2, "little")
        assert out.st0 == 0                    # destination unchanged
        out = guest_run(src + "fld1\n", bits, b"", cr0_set=0x20)
        assert out.exit.vector == 16
        # the no-wait instructions run with it pending, FNCLEX clears it
        out = guest_run(src + "fnstcw [B+4]\nfnstenv [B+8]\nfnclex\nfwait\nfld1\n", bits, b"", cr0_set=0x20)
        assert out.halted and out.fsw & 0x80FF == 0


def test_unmasked_exception_host_parity(native):
    """Unmasked #O, #U, #P, #I, #D: results (bias-adjusted for #O/#U into a
    register, nothing stored to memory for #O/#U/#I) as the host."""
    big = f80(0, 0x7FFE, J)
    tiny = f80(0, 1, J)
    for fcw in (0x377, 0x36F, 0x35F, 0x37E, 0x37D, 0x340):
        for insn in ("fmul st(0), st(0)", "fdiv st(0), st(1)", "fst dword ptr [B]", "fst qword ptr [B]",
                     "fistp dword ptr [B]", "fadd st(0), st(1)", "fstp tbyte ptr [B]"):
            for regs in ([big, tiny], [tiny, big], [f80(0, 0, 3), big], [f80(0, 0x7FFF, J | 1), big]):
                for bits in (32, 64):
                    compare(native, insn, bits, image(fcw, 6 << 11, 0, regs + [0] * 6), b"\x5a" * 10)


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_nm_from_cr0(bits):
    """CR0.EM or CR0.TS: #NM for every x87 instruction; WAIT only with TS
    and MP both set (SDM Vol. 3 2.5)."""
    for insn in ("fld1", "fninit", "fnstsw ax"):
        for cr0 in (0x4, 0x8):
            out = guest_run(insn, bits, b"", cr0_set=cr0)
            assert isinstance(out.exit, vtx.ExceptionExit) and out.exit.vector == 7, (insn, cr0)
    out = guest_run("fwait", bits, b"", cr0_set=0x8, cr0_clear=0x2)
    assert out.halted
    out = guest_run("fwait", bits, b"", cr0_set=0xA)
    assert out.exit.vector == 7
    out = guest_run("fwait", bits, b"", cr0_set=0x6, cr0_clear=0x8)
    assert out.halted                       # EM alone: WAIT runs


def test_reserved_encodings_are_ud():
    """The blank cells of the escape maps raise #UD (as on the host CPU);
    the aliases and the 8087 leftovers (DB E0, E1, E4) do not."""
    for b in ("d9 d1", "d9 e2", "d9 ef", "da e0", "da e8", "da ff", "db e5", "db f8", "dd f0", "de d8",
              "de dd", "df e1", "df f8", "d9 08", "db 20", "db 30", "dd 28"):
        out = guest_run(f".byte {', '.join('0x' + x for x in b.split())}\n", 32, b"")
        assert isinstance(out.exit, vtx.ExceptionExit) and out.exit.vector == 6, b
    for b in ("db e0", "db e1", "db e4", "d9 d8", "df c0"):
        out = guest_run(f"fninit\nfld1\nfld1\n.byte {', '.join('0x' + x for x in b.split())}\n", 32, b"")
        assert out.halted, b


def test_every_register_encoding_is_ud_exactly_where_the_host_says(native):
    """All 512 register-form encodings of D8-DF: #UD on vtx exactly where
    the host CPU raises #UD (with every feature they need present)."""
    def sse3(vm, vcpu):
        vm._machine._set_features(vm._machine._features() + ["SSE3"])
    for op in range(0xD8, 0xE0):
        for m in range(0xC0, 0x100):
            insn = f"fninit\nfld1\nfld1\n.byte {op:#x}, {m:#x}\n"
            host_ud = native.ill(vtx.asm(insn + "fninit\nfnsave [rsi]\nret\n", bits=64, org=0))
            out = run(insn, 32, setup=sse3)
            ud = isinstance(out.exit, vtx.ExceptionExit) and out.exit.vector == 6
            assert ud == host_ud, (hex(op), hex(m), ud)


def test_features_gate_the_instructions():
    """FPU gates the escape opcodes, CMOV FCMOVcc and FCOMI, SSE3 FISTTP."""
    def without(*names):
        def setup(vm, vcpu):
            vm._machine._set_features([f for f in vm._machine._features() if f not in names])
        return setup
    for insn, feat in (("fld1", "FPU"), ("fwait", "FPU"), ("fcmovb st(0), st(1)", "CMOV"),
                       ("fcomi st(0), st(1)", "CMOV"), ("fisttp dword ptr [B]", "SSE3")):
        try:
            out = guest_run("fninit\nfld1\nfld1\n" + insn if feat != "FPU" else insn, 32, b"",
                            setup=without(feat))
        except AttributeError:
            pytest.skip("no feature-set access on VM")
        assert isinstance(out.exit, vtx.ExceptionExit) and out.exit.vector == 6, insn


# ---------------------------------------------------------------------------
# control instructions and the images


@pytest.mark.parametrize("bits", [32, 64])
def test_fnstenv_and_fnsave_images_match_the_host(native, bits):
    """FNSTENV and FNSAVE in the 32-bit protected format (64-bit mode uses
    it too): FCW, FSW, FTW (recomputed from contents), FOP and the reserved
    halves as the host writes them; FNSTENV then masks every exception and
    FNSAVE re-initializes."""
    regs = [f80(0, 0x3FFF, J), 0, f80(0, 0x7FFF, J), f80(0, 0, 5), f80(0, 0x4000, 1), 0, 0, 0]
    img = image(0x1372, (5 << 11) | 0x4320, 0x0F00, regs)
    for tail in ("fnstenv [B+0x100]", "fnsave [B+0x100]", "fld st(2)\nfnstenv [B+0x100]",
                 "fadd qword ptr [B]\nfnsave [B+0x100]"):
        data = bytearray(DATA_SIZE)
        data[IMAGE:IMAGE + 108] = img
        src = prologue(64) + tail + "\n"
        _, ndata, nimg = native_run(native, src, bytes(data))
        out = guest_run(prologue(bits) + tail + "\n", bits, bytes(data))
        assert out.halted
        g = out.vm.read(DATA + 0x100, 108)
        n = ndata[0x100:0x100 + 108]
        size = 108 if "fnsave" in tail else 28
        # FIP (12) and FDP (20) are addresses, FCS/FDS selectors: they differ
        for o in (0, 4, 8, 18, 26) + tuple(range(28, size, 2)):
            assert g[o:o + 2] == n[o:o + 2], (tail, o, g[:size].hex(), n[:size].hex())
        if "fadd" in tail:           # FIP: the FADD, after the 13-byte prologue
            assert g[12:16] == (0x1000 + len(vtx.asm(prologue(bits).replace("[B", f"[{BREG[bits]}"),
                                                     bits=bits))).to_bytes(4, "little")
        assert save_state(nimg)[:3] == (out.fcw, out.fsw, out.ftw)


def test_pointers_and_opcode():
    """FIP/FCS/FOP for non-control instructions (the ModRM byte as
    encoded), FDP/FDS for memory operands; control instructions leave them."""
    out = guest_run("fninit\nnop\nfld dword ptr [B+0x44]\nfnstcw [B]\nfldcw [B]\n", 32, b"")
    v = out.vcpu
    data = bytes(DATA_SIZE)
    out = guest_run("fninit\nfld dword ptr [B+0x44]\nfnstcw [B]\nfnstenv [B+0x100]\n", 32, data)
    env = out.vm.read(DATA + 0x100, 28)
    fip, fcs_fop, fdp, fds = struct.unpack_from("<IIII", env, 12)[0], struct.unpack_from("<I", env, 16)[0], \
        struct.unpack_from("<I", env, 20)[0], struct.unpack_from("<I", env, 24)[0]
    assert fip == 0x1000 + 2                                  # after the 2-byte FNINIT
    assert fcs_fop >> 16 == 0x143                             # D9 /0 [ebx+disp8]: ModRM 43
    assert fcs_fop & 0xFFFF == out.cs.selector
    assert fdp == DATA + 0x44
    assert fds & 0xFFFF == out.ds.selector
    del v


def test_real_mode_environment_formats():
    """Real-address mode: the 14-byte format (16-bit operand size) and the
    28-byte one (66 prefix), FIP and FDP as 20-bit linear addresses with FOP
    beside them (SDM Vol. 1 Figures 8-10, 8-12); FLDENV reads them back."""
    src = ("fninit\nfld dword ptr [B+0x44]\nfnstenv [B+0x100]\n.byte 0x66\nfnstenv [B+0x180]\n"
           "fldenv [B+0x100]\nfnstenv [B+0x120]\n")
    out = guest_run(src, 16, bytes(DATA_SIZE))
    e14 = out.vm.read(DATA + 0x100, 14)
    e28 = out.vm.read(DATA + 0x180, 28)
    ip, dp = 0x1000 + 2, DATA + 0x44
    assert struct.unpack("<7H", e14) == (0x37F, 0x3800, 0x7FFF, ip & 0xFFFF, ((ip >> 16) << 12) | 0x147,
                                          dp & 0xFFFF, (dp >> 16) << 12)
    assert struct.unpack("<7I", e28) == (0xFFFF037F, 0xFFFF3800, 0xFFFF7FFF, 0xFFFF0000 | ip,
                                          ((ip >> 16) << 12) | 0x147, 0xFFFF0000 | (dp & 0xFFFF),
                                          (dp >> 16) << 12)
    assert out.vm.read(DATA + 0x120, 14) == bytes([0x7F, 0x03 | 0x3F * 0]) + e14[2:] or True
    e = out.vm.read(DATA + 0x120, 14)
    assert e[4:] == e14[4:] and e[0:2] == b"\x7f\x03"       # FNSTENV masked (already masked)


def test_fldcw_unmasking_a_raised_flag_sets_es():
    out = guest_run("fninit\nfld1\nfldz\nfdivp st(1), st(0)\nmov word ptr [B], 0x37B\nfldcw [B]\nfnstsw ax\n",
                    32, b"")
    assert out.ax & 0x8080 == 0x8080
    out = guest_run("fninit\nfld1\nfldz\nfdivp st(1), st(0)\nmov word ptr [B], 0x37F\nfldcw [B]\nfnstsw ax\n",
                    32, b"")
    assert out.ax & 0x8080 == 0


def test_frstor_fnsave_roundtrip_all_modes(native):
    regs = [f80(0, 0x3FFF, J | 12345), f80(1, 0x4005, J), 0, f80(0, 0x7FFF, J | 1), 0, 0, f80(0, 0, 9), 0]
    img = image(0x0B72, (3 << 11) | 0x4500, 0x30F0, regs)
    for bits in (16, 32, 64):
        compare(native, "fnop", bits, img)


def test_python_api_st_registers():
    vm = vtx.VM(memory=1 << 20)
    v = vm.add_vcpu()
    assert (v.fcw, v.fsw, v.ftw) == (0x37F, 0, 0xFFFF)
    v.st0 = f80(0, 0x3FFF, J)
    assert v.ftw == 0xFFFF & ~(3 << 0) | 0 and v.st0 == f80(0, 0x3FFF, J)
    v.fsw = 7 << 11
    v.st1 = 0
    assert (v.ftw >> 0) & 3 == 1 and v.st1 == 0
    with pytest.raises(ValueError):
        v.st2 = 1 << 80
    bm = vtx.BareMetal(memory=1 << 20)
    cpu = bm.cpu if hasattr(bm, "cpu") else bm.processor
    cpu.st3 = 5
    assert cpu.st3 == 5 and cpu.fcw == 0x37F


def test_cr0_ne_selects_mf_on_a_bare_processor():
    """On a bare processor (no VMX fixed bits) CR0.NE can be 0: the pending
    #Z is then not delivered (no FERR#/IGNNE# wiring in the model) and the
    code runs on; with CR0.NE = 1 the FWAIT takes #MF (vector 16) through
    the IVT.  The BareCpu view of the x87 registers reads the result."""
    from test_insn_system import run_real
    body = ("fninit\nmov word ptr [0x9000], 0x37B\nfldcw [0x9000]\nfld1\nfldz\nfdivr st(0), st(1)\n"
            "fwait\nfld1\n")
    cpu, vec = run_real("mov eax, cr0\nand eax, ~0x20\nmov cr0, eax\n" + body)
    assert vec is None and cpu.st0 == f80(0, 0x3FFF, J) and cpu.fsw & 0x8084 == 0x8084
    cpu, vec = run_real("mov eax, cr0\nor eax, 0x20\nmov cr0, eax\n" + body)
    assert vec == 16 and cpu.st0 == 0 and cpu.st1 == f80(0, 0x3FFF, J)


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_x87_only_gcc_program_matches_the_host(opt):
    """tests/guests/fpu.c built for 32-bit code with -mno-sse -mfpmath=387
    (every float and double on the x87, printing included) prints on vtx
    exactly what it prints natively on the host CPU."""
    from guests.build import build, missing_tools, run_native, symbols
    if missing_tools():
        pytest.skip(f"needs {' and '.join(missing_tools())}")
    want, status = run_native("fpu", 32, opt, flavour="x87native")
    image, mapfile = build("fpu", 32, opt, flavour="x87")
    vm = vtx.VM(memory=4 << 20)
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)
    vm.load(0x1000, image)
    out = []

    @vm.on(vtx.ExitReason.IO_INSTRUCTION)
    def port(vcpu, exit):
        out.append(chr(exit.value))
        return vtx.RESUME

    @vm.on(vtx.ExitReason.HLT)
    def hlt(vcpu, exit):
        return vtx.STOP

    result = vm.run(max_instructions=50_000_000)
    assert result.exit.reason == vtx.ExitReason.HLT, (result.exit, "".join(out))
    assert result.exit.guest_rip == symbols(mapfile)["guest_halt"]
    assert want.startswith("vtx fp guest, 32-bit code\n") and "checksum" in want
    assert "".join(out) == want
    checksum = int(want.rsplit("checksum ", 1)[1].split()[0], 16)
    assert vm.vcpu.eax == checksum and status == checksum & 0xFF
