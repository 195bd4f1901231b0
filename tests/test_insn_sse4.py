"""SSSE3, SSE4.1, SSE4.2 (PCMPxSTRx in every imm8 mode, PCMPGTQ) and
PCLMULQDQ (core/insn/simd_int.pxi, core/insn/sse4.pxi): differential tests
against the host CPU on hypothesis-drawn operands, exact values for the
documented examples, and the decoding and exception rules."""

import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import vtx
from insn_harness import DATA, make_vm, run
import simd_host
from simd_host import enable_simd
from test_insn_simd_int import case, run_simd, exc_vector

SKIP_HOST = simd_host.host_usable()

SSSE3 = "pshufb phaddw phaddd phaddsw pmaddubsw phsubw phsubd phsubsw psignb psignw psignd pmulhrsw pabsb pabsw pabsd".split()
SSE41 = """pmuldq pcmpeqq packusdw pminsb pminsd pminuw pminud pmaxsb pmaxsd pmaxuw pmaxud pmulld
phminposuw pcmpgtq pmovsxbw pmovsxbd pmovsxbq pmovsxwd pmovsxwq pmovsxdq pmovzxbw pmovzxbd pmovzxbq
pmovzxwd pmovzxwq pmovzxdq ptest""".split()

INSNS = []
for _op in SSSE3:
    INSNS += [f"{_op} xmm1, xmm2", f"{_op} mm1, mm2"]
INSNS += ["pshufb xmm1, xmmword ptr [r8+16]", "phaddsw mm1, qword ptr [r8+16]"]
for _imm in (0, 1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 200):
    INSNS += [f"palignr xmm1, xmm2, {_imm}", f"palignr mm1, mm2, {_imm}"]
for _op in SSE41:
    INSNS.append(f"{_op} xmm1, xmm2")
for _op, _size in (("pmovsxbw", "qword"), ("pmovsxbq", "word"), ("pmovzxwq", "dword"),
                   ("pmovzxdq", "qword"), ("pmaxsd", "xmmword"), ("ptest", "xmmword")):
    INSNS.append(f"{_op} xmm1, {_size} ptr [r8+16]")
INSNS += ["pblendvb xmm1, xmm2, xmm0", "blendvps xmm1, xmm2, xmm0", "blendvpd xmm1, xmm2, xmm0"]
for _imm in (0x00, 0x01, 0x05, 0x0A, 0x0F, 0x5A, 0xA5, 0xFF):
    INSNS += [f"blendps xmm1, xmm2, {_imm}", f"blendpd xmm1, xmm2, {_imm}",
              f"pblendw xmm1, xmm2, {_imm}", f"insertps xmm1, xmm2, {_imm}",
              f"insertps xmm1, xmm2, {_imm ^ 0xC0}"]
INSNS.append("insertps xmm1, dword ptr [r8+20], 0x90")
for _imm in range(8):
    INSNS.append(f"mpsadbw xmm1, xmm2, {_imm}")
for _imm in (0x00, 0x01, 0x10, 0x11, 0xFE):
    INSNS.append(f"pclmulqdq xmm1, xmm2, {_imm}")
for _imm in (0, 1, 2, 3, 5, 7, 9, 15):
    INSNS += [f"pextrb eax, xmm2, {_imm}", f"pextrw eax, xmm2, {_imm}",
              f"pextrd eax, xmm2, {_imm & 3}", f"pextrq rax, xmm2, {_imm & 1}",
              f"extractps eax, xmm2, {_imm & 3}", f"pinsrb xmm1, eax, {_imm}",
              f"pinsrd xmm1, edx, {_imm & 3}", f"pinsrq xmm1, rdx, {_imm & 1}",
              f"pinsrb xmm1, byte ptr [r8+17], {_imm}"]
INSNS += ["pextrw word ptr [r9+32], xmm2, 5", "pextrb byte ptr [r9+40], xmm2, 9"]

# SSE4.2 string compares: every aggregation, polarity, format and output
# selection (imm8 bits 0-6) for the four instructions.
STR = []
for _imm in range(0x80):
    for _op in ("pcmpestri", "pcmpestrm", "pcmpistri", "pcmpistrm"):
        STR.append(f"{_op} xmm1, xmm2, {_imm:#x}")
STR += ["pcmpestri xmm1, xmmword ptr [r8+24], 0x0c", "pcmpistrm xmm1, xmmword ptr [r8+24], 0x44"]
# REX.W: the explicit lengths come from RAX and RDX
STR += ["rex64 pcmpestri xmm1, xmm2, 0x18", "rex64 pcmpestrm xmm1, xmm2, 0x04"]

ALL = INSNS + STR


@pytest.fixture(scope="module")
def oracle():
    if SKIP_HOST:
        pytest.skip(SKIP_HOST)
    o = simd_host.HostOracle(ALL + FP)
    yield o
    o.close()


GROUPS = simd_host.chunks(INSNS, 48) + simd_host.chunks(STR, 64)


@st.composite
def string_case(draw):
    """Operands for the string compares: short alphabets so that matches,
    ranges and terminating zero elements are frequent."""
    c = bytearray(draw(case()))
    alpha = draw(st.sampled_from((b"\x00ab", b"abc", b"\x00\x01\x02\x03\xff\x80", bytes(range(0, 256, 37)))))
    for off in (0, 16):
        if draw(st.booleans()):
            c[off:off + 16] = bytes(draw(st.lists(st.sampled_from(alpha), min_size=16, max_size=16)))
    if draw(st.booleans()):
        c[16:32] = c[0:16]
    return bytes(c)


HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


@pytest.mark.parametrize("group", range(len(GROUPS)))
@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=HEALTH)
@given(cases=st.lists(string_case(), min_size=24, max_size=24))
def test_against_host(oracle, group, cases):
    texts = GROUPS[group]
    simd_host.compare(texts, cases, oracle.run(texts, cases), simd_host.run_guest(texts, cases))


# --- ROUND* and DPPS/DPPD: floating point on the host's SSE4.1 ---------------

FP = []
for _imm in range(16):
    FP += [f"roundps xmm1, xmm2, {_imm}", f"roundpd xmm1, xmm2, {_imm}",
           f"roundss xmm1, xmm2, {_imm}", f"roundsd xmm1, xmm2, {_imm}"]
FP += ["roundsd xmm1, qword ptr [r8+16], 4", "roundss xmm1, dword ptr [r8+16], 1",
       "roundpd xmm1, xmmword ptr [r8+16], 2"]
for _imm in (0xFF, 0xF1, 0x31, 0x7F, 0x0F, 0xA5, 0x5A, 0xE3):
    FP += [f"dpps xmm1, xmm2, {_imm}", f"dppd xmm1, xmm2, {_imm}"]

SPECIAL_F32 = (0.0, -0.0, 0.5, 1.5, 2.5, -2.5, -0.5, 1e-40, -1e-42, 3.4e38, float("inf"),
               float("-inf"), float("nan"), 1.0, 8388609.5, 0.49999997, 123456.789)
SPECIAL_F64 = (0.0, -0.0, 0.5, 1.5, 2.5, -2.5, -0.5, 5e-324, -2e-310, 1.7e308, float("inf"),
               float("-inf"), float("nan"), 4503599627370497.5, 0.49999999999999994, -7.25)


@st.composite
def fp_vec(draw):
    if draw(st.booleans()):
        vals = draw(st.lists(st.one_of(st.sampled_from(SPECIAL_F32), st.floats(width=32)),
                             min_size=4, max_size=4))
        return struct.pack("<4f", *vals)
    vals = draw(st.lists(st.one_of(st.sampled_from(SPECIAL_F64), st.floats()), min_size=2, max_size=2))
    raw = struct.pack("<2d", *vals)
    if draw(st.booleans()):                 # a signalling NaN now and then
        raw = struct.pack("<Q", 0x7FF0000000000001) + raw[8:]
    return raw


@st.composite
def fp_case(draw):
    c = bytearray(draw(case()))
    c[0:16] = draw(fp_vec())
    c[16:32] = draw(fp_vec())
    return bytes(c)


@pytest.mark.parametrize("group", range(len(simd_host.chunks(FP, 48))))
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=HEALTH)
@given(cases=st.lists(fp_case(), min_size=24, max_size=24))
def test_fp_against_host(oracle, group, cases):
    """Results under the power-on MXCSR (round to nearest, all exceptions
    masked): bit-exact equal to the host's, NaNs included."""
    texts = simd_host.chunks(FP, 48)[group]
    simd_host.compare(texts, cases, oracle.run(texts, cases), simd_host.run_guest(texts, cases))


# --- exact values ---------------------------------------------------------------------

def xmm_run(src, a=bytes(16), b=bytes(16), x0=bytes(16), bits=64, **kw):
    """Load xmm1 = a, xmm2 = b, xmm0 = x0 from DATA, run src, store xmm1 and
    xmm0 at DATA+48/DATA+64; returns (outcome, xmm1 bytes, xmm0 bytes)."""
    out = run_simd(f"""
        mov esi, {DATA}
        pxor xmm1, xmm1
        por xmm1, [esi]
        pxor xmm2, xmm2
        por xmm2, [esi+16]
        pxor xmm0, xmm0
        por xmm0, [esi+32]
        {src}
        pextrq [esi+48], xmm1, 0
        pextrq [esi+56], xmm1, 1
        pextrq [esi+64], xmm0, 0
        pextrq [esi+72], xmm0, 1
        """, bits, data={DATA: a + b + x0}, **kw)
    return out, out.vm.read(DATA + 48, 16), out.vm.read(DATA + 64, 16)


def test_pcmpistri_finds_a_substring():
    hay = b"hello, world!\x00\x00\x00"
    out, _, _ = xmm_run("pcmpistri xmm1, xmm2, 0x0c", a=b"world\x00" + bytes(10), b=hay)
    assert out.halted
    assert out.rcx == 7
    f = out.rflags
    assert f & 0x1 and f & 0x40 and f & 0x80 and not f & 0x800    # CF ZF SF, not OF


def test_pcmpestrm_ranges_byte_mask():
    # ranges 'a'-'z': the mask marks the lower-case letters of b (EAX = 2, EDX = 16)
    b = b"aB3zQ_x" + bytes(9)
    out, _, x0 = xmm_run("mov eax, 2\nmov edx, 16\npcmpestrm xmm1, xmm2, 0x44", a=b"az" + bytes(14), b=b)
    assert out.halted
    assert x0 == bytes(0xFF if 0x61 <= c <= 0x7A else 0 for c in b)
    # CF (a match), OF (element 0 matched), SF (EAX = 2 < 16); EDX = 16: ZF clear
    assert out.rflags & 0x8D5 == 0x881


def test_pclmulqdq_known_product():
    a = struct.pack("<QQ", 0x8000000000000001, 0x0)
    b = struct.pack("<QQ", 0x3, 0xFFFF)
    out, r, _ = xmm_run("pclmulqdq xmm1, xmm2, 0x00", a=a, b=b)
    assert r == struct.pack("<QQ", 0x8000000000000003, 0x1)


def test_ptest_flags():
    out, _, _ = xmm_run("ptest xmm1, xmm2", a=b"\x0f" * 16, b=b"\xf0" * 16)
    assert out.rflags & 0x8D5 == 0x40      # ZF only
    out, _, _ = xmm_run("ptest xmm1, xmm2", a=b"\xff" * 16, b=b"\x01" * 16)
    assert out.rflags & 0x8D5 == 0x01      # CF only


def test_roundsd_modes():
    b = struct.pack("<dd", -2.5, 0.0)
    for imm, want in ((0, -2.0), (1, -3.0), (2, -2.0), (3, -2.0), (4, -2.0)):
        _, r, _ = xmm_run(f"roundsd xmm1, xmm2, {imm}", a=struct.pack("<dd", 9.0, 7.0), b=b)
        assert struct.unpack("<dd", r) == (want, 7.0), imm


def test_sse41_needs_the_66_prefix_and_the_feature():
    # 0F 38 10 without 66 is undefined (PBLENDVB has no MMX form)
    out = run_simd(".byte 0x0f, 0x38, 0x10, 0xca", 64)
    assert exc_vector(out) == 6
    # PCMPGTQ is SSE4.2: #UD in a model without it
    def setup(vm, vcpu):
        enable_simd(vm, vcpu)
        vm._machine._set_features([f for f in vm._machine._features() if f != "SSE4_2"])
    out = run("pcmpgtq xmm1, xmm2", 64, setup=setup)
    assert exc_vector(out) == 6


def test_string_compare_memory_operand_may_be_misaligned():
    out = run_simd(f"mov esi, {DATA + 1}\npcmpistri xmm1, [rsi], 0\n", 64)
    assert out.halted
    out = run_simd(f"mov esi, {DATA + 1}\nptest xmm1, [rsi]\n", 64)
    assert exc_vector(out) == 13


def test_movntdqa_register_form_is_ud():
    out = run_simd(".byte 0x66, 0x0f, 0x38, 0x2a, 0xca", 64)
    assert exc_vector(out) == 6


# --- Unicorn as a second opinion -------------------------------------------------------

UNICORN_INSNS = ["pshufb xmm1, xmm2", "phaddsw xmm1, xmm2", "pmaddubsw mm1, mm2", "palignr xmm1, xmm2, 9",
                 "pmulhrsw xmm1, xmm2", "psignw xmm1, xmm2", "pabsd xmm1, xmm2", "packusdw xmm1, xmm2",
                 "pmovsxwq xmm1, xmm2", "phminposuw xmm1, xmm2", "mpsadbw xmm1, xmm2, 5",
                 "pclmulqdq xmm1, xmm2, 0x11", "pcmpgtq xmm1, xmm2", "ptest xmm1, xmm2",
                 "pcmpistri xmm1, xmm2, 0x0c", "pcmpestrm xmm1, xmm2, 0x44", "pcmpistrm xmm1, xmm2, 0x34",
                 "pcmpestri xmm1, xmm2, 0x48", "paddsw mm1, mm2", "pmaddwd xmm1, xmm2", "psadbw xmm1, xmm2",
                 "packsswb mm1, mm2", "psraw xmm1, xmm2", "pshufhw xmm1, xmm2, 0x1b", "pinsrb xmm1, eax, 13"]


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=HEALTH)
@given(cases=st.lists(string_case(), min_size=8, max_size=8))
def test_against_unicorn(cases):
    pytest.importorskip("unicorn")
    simd_host.compare(UNICORN_INSNS, cases, simd_host.run_unicorn(UNICORN_INSNS, cases),
                      simd_host.run_guest(UNICORN_INSNS, cases))


# --- MXCSR: rounding control and exception flags (needs LDMXCSR/STMXCSR) --------------

def mxcsr_run(src, mxcsr, a, b):
    out, r, _ = xmm_run(f"""
        mov dword ptr [esi+96], {mxcsr:#x}
        ldmxcsr [esi+96]
        {src}
        stmxcsr [esi+100]
        """, a=a, b=b, features=("SSE", "SSE2", "FXSR"))
    return out, r, int.from_bytes(out.vm.read(DATA + 100, 4), "little")


@pytest.mark.parametrize("rc,want", [(0, -2.0), (1, -3.0), (2, -2.0), (3, -2.0)])
def test_roundsd_uses_mxcsr_rc_with_imm_bit_2(rc, want):
    out, r, mx = mxcsr_run("roundsd xmm1, xmm2, 4", 0x1F80 | rc << 13,
                           struct.pack("<dd", 0, 0), struct.pack("<dd", -2.5, 0))
    assert out.halted
    assert struct.unpack("<d", r[:8])[0] == want
    assert mx & 0x3F == 0x20                # precision: imm8[3] = 0 reports it


def test_roundss_suppresses_precision_with_imm_bit_3():
    out, r, mx = mxcsr_run("roundss xmm1, xmm2, 8", 0x1F80,
                           bytes(16), struct.pack("<4f", 1.5, 0, 0, 0))
    assert out.halted
    assert struct.unpack("<f", r[:4])[0] == 2.0
    assert mx & 0x3F == 0


def test_unmasked_invalid_is_xm_and_leaves_the_destination():
    snan = struct.pack("<Q", 0x7FF0000000000001) + bytes(8)
    out, r, _ = mxcsr_run("roundsd xmm1, xmm2, 0", 0x1F80 & ~0x80,
                          struct.pack("<dd", 3.0, 4.0), snan)
    assert exc_vector(out) == 19


# Under every rounding mode, FTZ and DAZ, with the sticky flags it starts
# with: the MXCSR goes in through the case's RCX slot and the MXCSR after the
# instruction comes back in RCX.  All exceptions stay masked (an unmasked one
# would trap in the host program).
MX_FP = [f"ldmxcsr [r8+64]\n    {t}\n    push 0x1f80\n    stmxcsr [rsp+4]\n    mov ecx, [rsp+4]\n"
         f"    ldmxcsr [rsp]\n    lea rsp, [rsp+8]"
         for t in ("roundps xmm1, xmm2, 4", "roundpd xmm1, xmm2, 12", "roundss xmm1, xmm2, 4",
                   "roundsd xmm1, xmm2, 4", "roundsd xmm1, xmm2, 1", "dpps xmm1, xmm2, 0xff",
                   "dpps xmm1, xmm2, 0x73", "dppd xmm1, xmm2, 0x33", "dppd xmm1, xmm2, 0x12")]


@st.composite
def fp_mx_case(draw):
    c = bytearray(draw(fp_case()))
    mx = 0x1F80 | draw(st.integers(0, 3)) << 13 | draw(st.sampled_from((0, 0x8000))) \
        | draw(st.sampled_from((0, 0x40))) | draw(st.sampled_from((0, 0, 0x3F, 0x20, 0x01)))
    c[64:72] = mx.to_bytes(8, "little")
    return bytes(c)


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=HEALTH)
@given(cases=st.lists(fp_mx_case(), min_size=24, max_size=24))
def test_fp_mxcsr_against_host(mx_oracle, cases):
    simd_host.compare(MX_FP, cases, mx_oracle.run(MX_FP, cases), simd_host.run_guest(MX_FP, cases))


@pytest.fixture(scope="module")
def mx_oracle():
    if SKIP_HOST:
        pytest.skip(SKIP_HOST)
    o = simd_host.HostOracle(MX_FP)
    yield o
    o.close()


# --- random bytes in the SIMD opcode space ---------------------------------------------

@pytest.mark.parametrize("bits", [16, 32, 64])
def test_random_simd_encodings_end_architecturally(bits):
    """Random prefixes, 0F / 0F 38 / 0F 3A opcodes, ModRM, SIB and
    immediates, with CR4.OSFXSR set: every run ends in an exit (HLT or an
    exception), never a crash or a Python error."""
    import random
    rng = random.Random(0x5171 + bits)
    for _ in range(150):
        code = bytearray()
        for _ in range(rng.randint(1, 6)):
            for _ in range(rng.choice((0, 1, 1, 2))):
                code.append(rng.choice((0x66, 0xF2, 0xF3, 0x67, 0xF0, 0x2E, 0x64)))
            if bits == 64 and rng.random() < 0.4:
                code.append(0x40 | rng.getrandbits(4))
            code.append(0x0F)
            m = rng.random()
            if m < 0.35:
                code += bytes((0x38, rng.getrandbits(8)))
            elif m < 0.7:
                code += bytes((0x3A, rng.getrandbits(8)))
            else:
                code.append(rng.choice((rng.getrandbits(8), 0x60 + rng.getrandbits(5), 0xD0 + rng.getrandbits(5))))
            code += bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 2, 3, 6))))
        vm, vcpu = make_vm(bits)
        enable_simd(vm, vcpu)
        vm.load(0x1000, bytes(code) + b"\xf4")
        vcpu.rsi = vcpu.rdi = vcpu.rbx = DATA if bits != 16 else 0x4000
        vcpu.rax = rng.getrandbits(5)

        @vm.default
        def stop(vcpu, exit):
            return vtx.STOP

        result = vm.run(max_instructions=50)
        assert result.stop in ("stop", "budget"), result.stop
