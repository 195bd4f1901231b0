"""MMX and the SSE/SSE2 packed-integer instructions (core/insn/simd_int.pxi):
exact results on chosen operands, the exception conditions (#UD, #NM, #MF,
#GP for a misaligned 128-bit operand), the x87/MMX state transition, and a
differential test of every instruction against the host CPU running the same
instruction natively on the same hypothesis-drawn operands."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import vtx
from insn_harness import DATA, run
import simd_host
from simd_host import enable_simd

SKIP_HOST = simd_host.host_usable()

# ---------------------------------------------------------------------------
# operands

EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x81, 0xFE, 0xFF)


@st.composite
def vec16(draw):
    """16 bytes biased towards the values packed-integer edge cases need:
    all-zero/all-one/sign-boundary elements and repeated patterns."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(min_size=16, max_size=16))
    if kind == 1:
        return bytes(draw(st.lists(st.sampled_from(EDGE_BYTES), min_size=16, max_size=16)))
    if kind == 2:
        w = draw(st.sampled_from((2, 4, 8)))
        elems = draw(st.lists(st.sampled_from((0, 1, -1, 0x7F, 0x80, 0x7FFF, 0x8000, 0x7FFFFFFF,
                                               0x80000000, 0xFFFF, 3, 100, -100)),
                              min_size=16 // w, max_size=16 // w))
        return b"".join((e & ((1 << 8 * w) - 1)).to_bytes(w, "little") for e in elems)
    if kind == 3:
        return bytes(draw(st.lists(st.integers(0, 3), min_size=16, max_size=16)))
    return bytes(draw(st.lists(st.integers(0, 8), min_size=16, max_size=16)))


@st.composite
def case(draw):
    a = draw(vec16())
    b = draw(st.one_of(vec16(), st.just(a)))
    if draw(st.booleans()):
        # a small shift count in b's low quadword, the rest kept
        b = draw(st.integers(0, 70)).to_bytes(8, "little") + b[8:]
    x0 = draw(vec16())
    rax = draw(st.one_of(st.integers(-20, 20), st.integers(-(1 << 63), (1 << 63) - 1)))
    rdx = draw(st.one_of(st.integers(-20, 20), st.integers(-(1 << 63), (1 << 63) - 1)))
    rcx = draw(st.integers(0, (1 << 64) - 1))
    fl = 0x202 | (draw(st.integers(0, 0xFFF)) & simd_host.STATUS)
    return (a + b + x0 + struct.pack("<qqQQ", rax, rdx, rcx, fl))


batches = st.lists(case(), min_size=24, max_size=24)

# ---------------------------------------------------------------------------
# the instructions

BINOPS = """punpcklbw punpcklwd punpckldq packsswb pcmpgtb pcmpgtw pcmpgtd packuswb punpckhbw
punpckhwd punpckhdq packssdw pcmpeqb pcmpeqw pcmpeqd psrlw psrld psrlq paddq pmullw psubusb
psubusw pminub pand paddusb paddusw pmaxub pandn pavgb psraw psrad pavgw pmulhuw pmulhw psubsb
psubsw pminsw por paddsb paddsw pmaxsw pxor psllw pslld psllq pmuludq pmaddwd psadbw psubb psubw
psubd psubq paddb paddw paddd""".split()

INSNS = []
for _op in BINOPS:
    INSNS.append(f"{_op} xmm1, xmm2")
    INSNS.append(f"{_op} mm1, mm2")
INSNS += ["punpcklqdq xmm1, xmm2", "punpckhqdq xmm1, xmm2"]
# memory forms: 128-bit (aligned), 64-bit and the 32-bit one of the MMX PUNPCKL*
INSNS += ["paddw xmm1, xmmword ptr [r8+16]", "pmaddwd xmm1, xmmword ptr [r8+16]",
          "psraw xmm1, xmmword ptr [r8+16]", "packsswb xmm1, xmmword ptr [r8+16]",
          "paddsb mm1, qword ptr [r8+16]", "psllq mm1, qword ptr [r8+16]",
          "punpcklbw mm1, dword ptr [r8+16]", "punpckldq mm1, dword ptr [r8+16]",
          "psadbw mm1, qword ptr [r8+16]"]
for _imm in (0, 1, 3, 7, 8, 15, 16, 31, 32, 63, 64, 200):
    for _op in ("psrlw", "psraw", "psllw", "psrld", "psrad", "pslld", "psrlq", "psllq"):
        INSNS.append(f"{_op} xmm1, {_imm}")
        INSNS.append(f"{_op} mm1, {_imm}")
for _imm in (0, 1, 5, 8, 15, 16, 255):
    INSNS.append(f"psrldq xmm1, {_imm}")
    INSNS.append(f"pslldq xmm1, {_imm}")
for _imm in (0x00, 0x1B, 0x4E, 0xE4, 0xFF, 0x93):
    INSNS += [f"pshufd xmm1, xmm2, {_imm}", f"pshufhw xmm1, xmm2, {_imm}",
              f"pshuflw xmm1, xmm2, {_imm}", f"pshufw mm1, mm2, {_imm}"]
INSNS += ["pshufd xmm1, xmmword ptr [r8+16], 0x1B", "pshufw mm1, qword ptr [r8+16], 0x1B"]
for _imm in (0, 3, 5, 7):
    INSNS += [f"pinsrw xmm1, eax, {_imm}", f"pinsrw mm1, edx, {_imm}",
              f"pextrw eax, xmm2, {_imm}", f"pextrw ecx, mm2, {_imm}",
              f"pinsrw xmm1, word ptr [r8+18], {_imm}"]
INSNS += ["pmovmskb eax, xmm2", "pmovmskb ecx, mm2", "movq2dq xmm1, mm2", "movdq2q mm1, xmm2",
          "movd mm1, eax", "movq mm1, rdx", "movd eax, mm2", "movq rcx, mm2",
          "movd mm1, dword ptr [r8+20]", "movq mm1, mm2", "movq mm1, qword ptr [r8+24]"]


@pytest.fixture(scope="module")
def oracle():
    if SKIP_HOST:
        pytest.skip(SKIP_HOST)
    o = simd_host.HostOracle(INSNS)
    yield o
    o.close()


GROUPS = simd_host.chunks(INSNS, 48)


@pytest.mark.parametrize("group", range(len(GROUPS)))
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(cases=batches)
def test_against_host(oracle, group, cases):
    texts = GROUPS[group]
    simd_host.compare(texts, cases, oracle.run(texts, cases), simd_host.run_guest(texts, cases))


# ---------------------------------------------------------------------------
# exact values

def run_simd(src, bits=64, data=None, cr0_set=0, cr0_clear=0, cr4_clear=0, features=("SSE", "SSE2", "FXSR"),
             fsw=None, without=(), **kw):
    def setup(vm, vcpu):
        enable_simd(vm, vcpu, features, without)
        vcpu.cr0 = (vcpu.cr0 | cr0_set) & ~cr0_clear
        vcpu.cr4 = vcpu.cr4 & ~cr4_clear
    return run(src, bits, data=data, setup=setup, **kw)


def q(vm, addr, n=1):
    return struct.unpack_from(f"<{n}Q", vm.read(addr, 8 * n))


LOAD = f"""
mov esi, {DATA}
pxor xmm1, xmm1
por xmm1, [esi]
pxor xmm2, xmm2
por xmm2, [esi+16]
"""
STORE = """
pextrd [esi+32], xmm1, 0
pextrd [esi+36], xmm1, 1
pextrd [esi+40], xmm1, 2
pextrd [esi+44], xmm1, 3
"""


@pytest.mark.parametrize("bits", [32, 64])
def test_xmm_values(bits):
    a = bytes(range(16))
    b = bytes([0xF0 + i for i in range(16)])
    cases = [
        ("paddb xmm1, xmm2", bytes((x + y) & 0xFF for x, y in zip(a, b))),
        ("psubusb xmm1, xmm2", bytes(16)),
        ("pcmpeqb xmm1, xmm1", b"\xff" * 16),
        ("punpcklbw xmm1, xmm2", bytes(v for i in range(8) for v in (a[i], b[i]))),
        ("punpckhqdq xmm1, xmm2", a[8:] + b[8:]),
        ("pshufb xmm1, xmm2", bytes(16)),          # every control byte has bit 7 set
        ("pxor xmm1, xmm1", bytes(16)),
    ]
    for text, want in cases:
        out = run_simd(LOAD + text + STORE, bits, data={DATA: a + b})
        assert out.halted, (text, out.exit)
        assert out.vm.read(DATA + 32, 16) == want, text


def test_mmx_values_and_state():
    out = run_simd("""
        mov eax, 0x80007fff
        movd mm0, eax
        mov eax, 0x00010001
        movd mm1, eax
        paddsw mm0, mm1
        movd ebx, mm0
        paddw mm1, mm1
        movd ecx, mm1
        """, 32)
    assert out.halted
    assert out.rbx == 0x80017FFF
    assert out.rcx == 0x00020002


def test_emms_keeps_the_data():
    out = run_simd("""
        mov eax, 5
        movd mm3, eax
        emms
        movd ebx, mm3
        """, 32)
    assert out.halted
    assert out.rbx == 5        # EMMS only retags; the data stays


def fxsave_image(src, features=("SSE", "SSE2", "FXSR")):
    """Run src then FXSAVE to DATA+0x200 (64-bit guest); the 512-byte image."""
    out = run_simd(src + f"\nmov esi, {DATA + 0x200}\nfxsave [rsi]\n", 64, features=features)
    assert out.halted, out.exit
    return out.vm.read(DATA + 0x200, 512)


def test_mmx_instruction_sets_top_0_and_tags_valid():
    """SDM Vol. 1 9.5.1: an MMX instruction sets TOP to 0 and every tag to
    valid; MMi is R[i] with bits 79:64 set to 1s."""
    img = fxsave_image("""
        mov eax, 0x12345678
        movd mm2, eax
        """)
    fsw, ftw = struct.unpack_from("<HB", img, 2)
    assert (fsw >> 11) & 7 == 0
    assert ftw == 0xFF                      # abridged tag word: all valid
    assert img[32 + 2 * 16:32 + 2 * 16 + 10] == bytes.fromhex("78563412000000 00ffff".replace(" ", ""))


def test_emms_tags_every_register_empty():
    img = fxsave_image("""
        mov eax, 1
        movd mm2, eax
        emms
        """)
    assert img[4] == 0x00                   # abridged tag word: all empty


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_pshufd_pshufw_and_pextrw(bits):
    a = struct.pack("<4I", 0x11111111, 0x22222222, 0x33333333, 0x44444444)
    base = 0x4000 if bits == 16 else DATA      # within the real-mode segment limit
    out = run_simd(f"""
        mov esi, {base}
        pxor xmm1, xmm1
        por xmm1, [esi]
        pshufd xmm2, xmm1, 0x1B
        pextrd eax, xmm2, 0
        pextrw ecx, xmm2, 7
        movq mm1, [esi]
        pshufw mm2, mm1, 0x4E
        pextrw edx, mm2, 0
        """, bits, data={base: a})
    assert out.halted, out.exit
    assert out.rax & 0xFFFFFFFF == 0x44444444
    assert out.rcx & 0xFFFFFFFF == 0x1111
    assert out.rdx & 0xFFFFFFFF == 0x2222


def test_maskmovq_and_maskmovdqu():
    a = bytes(range(0x10, 0x20))
    m = bytes([0x80 if i % 3 == 0 else 0x7F for i in range(16)])
    out = run_simd(f"""
        mov esi, {DATA}
        pxor xmm1, xmm1
        por xmm1, [rsi]
        pxor xmm2, xmm2
        por xmm2, [rsi+16]
        lea rdi, [rsi+64]
        maskmovdqu xmm1, xmm2
        movq mm1, [rsi]
        movq mm2, [rsi+16]
        lea rdi, [rsi+96]
        maskmovq mm1, mm2
        """, 64, data={DATA: a + m + b"\xee" * 128})
    assert out.halted, out.exit
    want = bytes(a[i] if i % 3 == 0 else 0xEE for i in range(16))
    assert out.vm.read(DATA + 64, 16) == want
    assert out.vm.read(DATA + 96, 16) == want[:8] + b"\xee" * 8


def test_misaligned_xmm_operand_is_gp():
    out = run_simd(f"mov esi, {DATA + 8}\npaddd xmm1, [rsi]\n", 64)
    assert out.exit.reason == vtx.ExitReason.EXCEPTION_OR_NMI
    assert out.exit.vector == 13 and out.exit.error_code == 0


def test_mmx_memory_operand_need_not_be_aligned():
    out = run_simd(f"mov esi, {DATA + 3}\npaddd mm1, [rsi]\n", 64)
    assert out.halted


def exc_vector(out):
    assert out.exit.reason == vtx.ExitReason.EXCEPTION_OR_NMI, out.exit
    return out.exit.vector


@pytest.mark.parametrize("text,needs_osfxsr", [
    ("paddb mm1, mm2", False), ("paddb xmm1, xmm2", True), ("pavgb mm1, mm2", False),
    # SSSE3's MMX forms follow "Exceptions Type 4" (SDM Vol. 2 2.5): OSFXSR too
    ("pshufb mm1, mm2", True), ("pshufb xmm1, xmm2", True), ("emms", False)])
def test_exception_conditions(text, needs_osfxsr):
    # CR0.EM = 1: #UD for both
    assert exc_vector(run_simd(text, 64, cr0_set=4)) == 6
    # CR0.TS = 1: #NM
    assert exc_vector(run_simd(text, 64, cr0_set=8)) == 7
    # CR4.OSFXSR = 0: #UD for the XMM forms and SSSE3
    out = run_simd(text, 64, cr4_clear=1 << 9)
    if not needs_osfxsr:
        assert out.halted
    else:
        assert exc_vector(out) == 6


def test_features_gate_decoding():
    # without SSE2 the XMM forms are #UD; without SSE the SSE-added MMX forms are
    out = run_simd("paddb xmm1, xmm2", 64, features=("SSE", "FXSR"), without=("SSE2",))
    assert exc_vector(out) == 6
    out = run_simd("pavgb mm1, mm2", 64, features=("FXSR",), without=("SSE", "SSE2"))
    assert exc_vector(out) == 6
    out = run_simd("paddb mm1, mm2", 64, features=("FXSR",), without=("SSE", "SSE2"))
    assert out.halted


def test_psrldq_requires_66_and_register():
    # 0F 73 /3 (no 66) is undefined; 66 0F 73 /3 with a memory operand too
    out = run_simd(".byte 0x0f, 0x73, 0xd9, 0x01", 64)
    assert exc_vector(out) == 6
    out = run_simd(".byte 0x66, 0x0f, 0x73, 0x19, 0x01", 64)
    assert exc_vector(out) == 6
