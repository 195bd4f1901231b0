"""FXSAVE/FXRSTOR, the XSAVE family, MXCSR and the rest of the 0F AE group
(vtx/core/insn/fxsave.pxi): the images byte by byte (SDM Vol. 2 FXSAVE
tables; SDM Vol. 1 chapter 13), the header rules and #GP conditions of
XRSTOR, the init optimization, #UD/#NM/#GP, the FS/GS base instructions,
CLFLUSH and the fences."""

import struct

import pytest

import vtx
from insn_harness import DATA, run

OSFXSR, OSXMMEXCPT, FSGSBASE, OSXSAVE = 1 << 9, 1 << 10, 1 << 16, 1 << 18
PAD = 0xA5


def guest(src, bits=64, cr4=OSFXSR | OSXMMEXCPT | OSXSAVE, xcr0=None, **kw):
    r = "rcx" if bits == 64 else "ecx"
    pre = f"mov {r}, cr4\nor {r}, {cr4}\nmov cr4, {r}\n"
    if xcr0 is not None:
        # XSETBV exits unconditionally in VMX non-root operation: the
        # hypervisor (here the API) sets XCR0.
        kw["regs"] = {**kw.get("regs", {}), "xcr0": xcr0}
    return run(pre + src, bits, **kw)


def vector(out):
    return None if out.halted else out.exit.vector


def xmm_pattern(i):
    return int.from_bytes(bytes((i * 16 + k) & 0xFF for k in range(16)), "little")


XMM_REGS = {f"xmm{i}": xmm_pattern(i + 1) for i in range(16)}


def expected_legacy(xmms=16, mxcsr=0x1F80, fcw=0x37F, fsw=0, ftw=0, fop=0, st=None):
    img = bytearray([PAD] * 512)
    img[0:24] = struct.pack("<HHBBHIHHIHH", fcw, fsw, ftw, 0, fop, 0, 0, 0, 0, 0, 0)
    img[24:32] = struct.pack("<II", mxcsr, 0xFFFF)
    for i in range(8):
        img[32 + 16 * i:48 + 16 * i] = (st[i] if st else bytes(10)) + bytes(6)
    for i in range(xmms):
        img[160 + 16 * i:176 + 16 * i] = xmm_pattern(i + 1).to_bytes(16, "little")
    return img


# --- FXSAVE / FXRSTOR -------------------------------------------------------------

def test_fxsave_image_after_reset_64():
    out = guest("fxsave [rdi]", regs={"rdi": DATA, **XMM_REGS}, data={DATA: bytes([PAD] * 600)})
    assert out.halted
    assert out.vm.read(DATA, 512) == expected_legacy()
    assert out.vm.read(DATA + 512, 88) == bytes([PAD] * 88)


def test_fxsave_protected_mode_saves_xmm0_7():
    out = guest("fxsave [edi]", bits=32, regs={"rdi": DATA, **XMM_REGS}, data={DATA: bytes([PAD] * 512)})
    assert out.halted
    assert out.vm.read(DATA, 512) == expected_legacy(xmms=8)


def test_fxsave_without_osfxsr_skips_sse_state():
    out = guest("fxsave [rdi]", cr4=0, regs={"rdi": DATA, **XMM_REGS}, data={DATA: bytes([PAD] * 512)})
    assert out.halted
    want = expected_legacy(xmms=0)
    want[24:32] = bytes([PAD] * 8)
    assert out.vm.read(DATA, 512) == want


def make_image(fip=0x1122334455667788, fdp=0x99AABBCCDDEEFF00, fcs=0x1234, fds=0x5678, rexw=False,
               mxcsr=0x3F80, ftw=0xFF, fsw=0x3800 | 0x41, fcw=0x27F, fop=0x7FF):
    img = bytearray(512)
    img[0:8] = struct.pack("<HHBBH", fcw, fsw, ftw, 0, fop)
    if rexw:
        img[8:24] = struct.pack("<QQ", fip, fdp)
    else:
        img[8:24] = struct.pack("<IHHIHH", fip & 0xFFFFFFFF, fcs, 0, fdp & 0xFFFFFFFF, fds, 0)
    img[24:32] = struct.pack("<II", mxcsr, 0)
    regs = [bytes(10),                                                   # zero
            (1 << 63 | 5).to_bytes(8, "little") + (0x3FFF).to_bytes(2, "little"),   # valid
            (1 << 63).to_bytes(8, "little") + (0x7FFF).to_bytes(2, "little"),       # infinity: special
            (5).to_bytes(8, "little") + bytes(2),                                     # denormal: special
            (5).to_bytes(8, "little") + (0x4000).to_bytes(2, "little"),             # unnormal: special
            (1 << 63).to_bytes(8, "little") + (0xBFFF).to_bytes(2, "little"),       # -1.0: valid
            bytes(8) + (0x8000).to_bytes(2, "little"),                               # -0: zero
            (3 << 62).to_bytes(8, "little") + (0xFFFF).to_bytes(2, "little")]       # NaN: special
    for i in range(8):
        img[32 + 16 * i:42 + 16 * i] = regs[i]
        img[42 + 16 * i:48 + 16 * i] = b"\xEE" * 6                # reserved: not kept
    for i in range(16):
        img[160 + 16 * i:176 + 16 * i] = xmm_pattern(i + 40).to_bytes(16, "little")
    img[464:512] = b"\x77" * 48
    return img, regs


@pytest.mark.parametrize("rexw", [False, True])
def test_fxrstor_then_fxsave_round_trip(rexw):
    img, regs = make_image(rexw=rexw)
    w = "64" if rexw else ""
    out = guest(f"fxrstor{w} [rdi]\nfxsave{w} [rdi + 512]", regs={"rdi": DATA},
                data={DATA: bytes(img), DATA + 512: bytes([PAD] * 512)})
    assert out.halted
    got = out.vm.read(DATA + 512, 512)
    want = bytearray(img)
    want[5] = 0
    want[7] = 0x07                                     # FOP is 11 bits
    want[28:32] = struct.pack("<I", 0xFFFF)            # MXCSR_MASK
    if not rexw:
        want[14:16] = bytes(2)
        want[22:24] = bytes(2)
    for i in range(8):
        want[42 + 16 * i:48 + 16 * i] = bytes(6)
    want[416:512] = bytes([PAD] * 96)
    assert got == want
    assert out.mxcsr == 0x3F80
    assert out.xmm15 == xmm_pattern(55)


def test_fxsave_rexw_keeps_64_bit_pointers_and_plain_fxsave_truncates():
    img, _ = make_image(rexw=True)
    out = guest("fxrstor64 [rdi]\nfxsave [rdi + 512]", regs={"rdi": DATA},
                data={DATA: bytes(img), DATA + 512: bytes(512)})
    got = out.vm.read(DATA + 512, 24)
    assert struct.unpack("<IHHIHH", got[8:24]) == (0x55667788, 0, 0, 0xDDEEFF00, 0, 0)


def test_fxrstor_tag_word_from_contents():
    # The abridged tag byte comes back as saved, physical register by
    # physical register: TOP = 7 here, and registers marked empty stay so.
    img, _ = make_image(ftw=0b10110101)
    out = guest("fxrstor [rdi]\nfxsave [rdi + 512]", regs={"rdi": DATA},
                data={DATA: bytes(img), DATA + 512: bytes(512)})
    assert out.vm.read(DATA + 512 + 4, 1) == bytes([0b10110101])


def test_fxrstor_reserved_mxcsr_gp_and_nothing_loaded():
    img, _ = make_image(mxcsr=0x10000)
    out = guest("fxrstor [rdi]", regs={"rdi": DATA}, data={DATA: bytes(img)})
    assert vector(out) == 13 and out.exit.error_code == 0
    assert out.mxcsr == 0x1F80 and out.xmm0 == 0


def test_fxrstor_without_osfxsr_keeps_sse_state():
    img, _ = make_image(mxcsr=0x10000)          # not even checked
    out = guest("fxrstor [rdi]", cr4=0, regs={"rdi": DATA}, data={DATA: bytes(img)})
    assert out.halted and out.mxcsr == 0x1F80 and out.xmm0 == 0


@pytest.mark.parametrize("insn,off,cr0,vec", [
    ("fxsave", 8, 0, 13), ("fxrstor", 4, 0, 13),
    ("fxsave", 0, 8, 7), ("fxrstor", 0, 4, 7),       # CR0.TS, CR0.EM: #NM
    ("xsave", 32, 0, 13), ("xrstor", 16, 0, 13), ("xsaveopt", 48, 0, 13), ("xsavec", 8, 0, 13),
    ("xsave", 0, 8, 7), ("xrstor", 0, 8, 7),
])
def test_save_area_faults(insn, off, cr0, vec):
    src = (f"mov rax, cr0\nor rax, {cr0}\nmov cr0, rax\n" if cr0 else "") + \
        f"mov eax, -1\nmov edx, -1\n{insn} [rdi + {off}]"
    out = guest(src, xcr0=3, regs={"rdi": DATA})
    assert vector(out) == vec
    if vec == 13:
        assert out.exit.error_code == 0


def test_xsave_cr0_em_is_ignored():
    out = guest("mov rax, cr0\nor rax, 4\nmov cr0, rax\nmov eax, 3\nxor edx, edx\nxsave [rdi]",
                xcr0=3, regs={"rdi": DATA})
    assert out.halted


@pytest.mark.parametrize("insn", ["xsave", "xrstor", "xsaveopt", "xsavec"])
def test_xsave_family_needs_osxsave(insn):
    out = guest(f"{insn} [rdi]", cr4=OSFXSR, regs={"rdi": DATA})
    assert vector(out) == 6


# --- XSAVE / XSAVEOPT / XSAVEC ------------------------------------------------------

def test_xsave_standard_image():
    out = guest("mov eax, -1\nmov edx, -1\nxsave [rdi]", xcr0=3,
                regs={"rdi": DATA, **XMM_REGS},
                data={DATA: bytes([PAD] * 512) + struct.pack("<QQ", 0xF0, 0x1234) + bytes([PAD] * 48)})
    assert out.halted
    assert out.vm.read(DATA, 512) == expected_legacy()
    # XSTATE_BV: x87 in its initial configuration (0), SSE in use (1); the
    # bits outside RFBM keep their value; XCOMP_BV untouched.
    assert struct.unpack("<QQ", out.vm.read(DATA + 512, 16)) == (0xF2, 0x1234)
    assert out.vm.read(DATA + 528, 48) == bytes([PAD] * 48)


def test_xsave_rfbm_x87_only():
    out = guest("mov eax, 1\nxor edx, edx\nxsave [rdi]", xcr0=3, regs={"rdi": DATA, **XMM_REGS},
                data={DATA: bytes([PAD] * 512) + struct.pack("<Q", 0x3)})
    assert out.halted
    img = out.vm.read(DATA, 512)
    want = expected_legacy(xmms=0)
    want[24:32] = bytes([PAD] * 8)                    # MXCSR only with RFBM[1] or RFBM[2]
    assert img == want
    assert struct.unpack("<Q", out.vm.read(DATA + 512, 8))[0] == 0x2   # XINUSE[0] = 0 written


def test_xsave_xcr0_limits_rfbm():
    out = guest("mov eax, 3\nxor edx, edx\nxsave [rdi]", xcr0=1, regs={"rdi": DATA, **XMM_REGS},
                data={DATA: bytes([PAD] * 576)})
    assert out.vm.read(DATA + 160, 16) == bytes([PAD] * 16)
    assert out.vm.read(DATA + 24, 8) == bytes([PAD] * 8)


def test_xsaveopt_init_optimization():
    # Reset state: x87 and SSE both in their initial configuration: nothing
    # but MXCSR (no optimization applies to it) and XSTATE_BV is written.
    out = guest("mov eax, 3\nxor edx, edx\nxsaveopt [rdi]", xcr0=3, regs={"rdi": DATA},
                data={DATA: bytes([PAD] * 512) + struct.pack("<Q", 0xFF)})
    assert out.halted
    img = bytearray([PAD] * 512)
    img[24:32] = struct.pack("<II", 0x1F80, 0xFFFF)
    assert out.vm.read(DATA, 512) == img
    assert struct.unpack("<Q", out.vm.read(DATA + 512, 8))[0] == 0xFC


def test_xsavec_compacted_header():
    out = guest("mov eax, -1\nmov edx, -1\nxsavec [rdi]", xcr0=3, regs={"rdi": DATA, "xmm3": 7},
                data={DATA: bytes([PAD] * 576)})
    assert out.halted
    assert struct.unpack("<QQ", out.vm.read(DATA + 512, 16)) == (0x2, 0x8000000000000003)
    assert out.vm.read(DATA + 528, 48) == bytes([PAD] * 48)
    img = out.vm.read(DATA, 512)
    assert img[0:24] == bytes([PAD] * 24)               # x87 in its initial configuration: not saved
    assert img[24:32] == struct.pack("<II", 0x1F80, 0xFFFF)
    assert img[160 + 48:160 + 64] == (7).to_bytes(16, "little")


def test_xsavec_needs_its_feature():
    def setup(vm, vcpu):
        m = vm._machine
        m._set_features([n for n in m._features() if n != "XSAVEC"])
    out = guest("xsavec [rdi]", xcr0=3, regs={"rdi": DATA}, setup=setup)
    assert vector(out) == 6


# --- XRSTOR ----------------------------------------------------------------------

def xsave_area(img, xstate_bv, xcomp_bv=0, rest=bytes(48)):
    return bytes(img) + struct.pack("<QQ", xstate_bv, xcomp_bv) + rest


def test_xrstor_standard_loads_and_inits():
    img, _ = make_image()
    # XSTATE_BV = 1: x87 loaded, SSE set to its initial configuration (XMM = 0),
    # MXCSR loaded from memory all the same (RFBM[1] = 1).
    out = guest("mov eax, 3\nxor edx, edx\nxrstor [rdi]\nxsave [rdi + 1024]", xcr0=3,
                regs={"rdi": DATA, **XMM_REGS},
                data={DATA: xsave_area(img, 1), DATA + 1024: bytes(576)})
    assert out.halted
    assert out.mxcsr == 0x3F80
    assert all(getattr(out, f"xmm{i}") == 0 for i in range(16))
    saved = out.vm.read(DATA + 1024, 576)
    assert saved[0:4] == img[0:4] and saved[32:42] == img[32:42]
    # SSE state (XMM and MXCSR) is not in its initial configuration: MXCSR 3F80H.
    assert struct.unpack("<Q", saved[512:520])[0] == 3


def test_xrstor_init_x87():
    img, _ = make_image()
    out = guest("mov eax, 3\nxor edx, edx\nxrstor [rdi]\nxsave [rdi + 1024]\nxrstor [rdi + 2048]\n"
                "xsave [rdi + 1024]", xcr0=3, regs={"rdi": DATA},
                data={DATA: xsave_area(img, 3), DATA + 2048: xsave_area(img, 2), DATA + 1024: bytes(576)})
    assert out.halted
    saved = out.vm.read(DATA + 1024, 576)
    assert saved[0:24] == struct.pack("<HHBBHIHHIHH", 0x37F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert saved[32:160] == bytes(128)
    assert struct.unpack("<Q", saved[512:520])[0] == 2


@pytest.mark.parametrize("hdr,vec", [
    (struct.pack("<QQ", 4, 0) + bytes(48), 13),              # XSTATE_BV bit not in XCR0
    (struct.pack("<QQ", 3, 1) + bytes(48), 13),              # XCOMP_BV without bit 63
    (struct.pack("<QQQ", 3, 0, 1) + bytes(40), 13),          # bytes 23:16
    (struct.pack("<QQ", 3, 0) + bytes(40) + b"\1" + bytes(7), None),   # bytes 63:24: ignored (standard)
    (struct.pack("<QQ", 3, (1 << 63) | 3) + bytes(48), None),          # compacted
    (struct.pack("<QQ", 3, (1 << 63) | 1) + bytes(48), 13),  # XSTATE_BV not within XCOMP_BV
    (struct.pack("<QQ", 1, (1 << 63) | 5) + bytes(48), 13),  # XCOMP_BV beyond XCR0
    (struct.pack("<QQ", 3, (1 << 63) | 3) + bytes(40) + b"\1" + bytes(7), 13),   # compacted: 63:16 zero
])
def test_xrstor_header_checks(hdr, vec):
    img, _ = make_image()
    out = guest("mov eax, 3\nxor edx, edx\nxrstor [rdi]", xcr0=3, regs={"rdi": DATA, "xmm0": 9},
                data={DATA: bytes(img) + hdr})
    assert vector(out) == vec
    if vec:
        assert out.exit.error_code == 0 and out.xmm0 == 9 and out.mxcsr == 0x1F80


def test_xrstor_compacted_sse_init_resets_mxcsr():
    img, _ = make_image(mxcsr=0x3F80)
    out = guest("mov eax, 3\nxor edx, edx\nldmxcsr [rdi + 2048]\nxrstor [rdi]", xcr0=3,
                regs={"rdi": DATA, "xmm0": 9},
                data={DATA: xsave_area(img, 1, (1 << 63) | 3), DATA + 2048: struct.pack("<I", 0x1F00)})
    assert out.halted and out.mxcsr == 0x1F80 and out.xmm0 == 0


def test_xrstor_reserved_mxcsr_gp():
    img, _ = make_image(mxcsr=0x40000)
    out = guest("mov eax, 2\nxor edx, edx\nxrstor [rdi]", xcr0=3, regs={"rdi": DATA},
                data={DATA: xsave_area(img, 0)})
    assert vector(out) == 13
    # RFBM without SSE: MXCSR is neither loaded nor checked.
    out = guest("mov eax, 1\nxor edx, edx\nxrstor [rdi]", xcr0=3, regs={"rdi": DATA},
                data={DATA: xsave_area(img, 0)})
    assert out.halted and out.mxcsr == 0x1F80


def test_xsave_xrstor_round_trip_32_bit():
    out = guest("mov eax, 3\nxor edx, edx\nxsave [edi]\n"
                "xorps xmm1, xmm1\nxorps xmm7, xmm7\nxrstor [edi]\n", bits=32, xcr0=3,
                regs={"rdi": DATA, "xmm1": 11, "xmm7": 77}, data={DATA: bytes(576)})
    assert out.halted and out.xmm1 == 11 and out.xmm7 == 77


# --- LDMXCSR / STMXCSR, fences, CLFLUSH, FS/GS base ------------------------------------

def test_stmxcsr_ldmxcsr():
    out = guest("ldmxcsr [rdi]\nstmxcsr [rdi + 8]", regs={"rdi": DATA},
                data={DATA: struct.pack("<I", 0x7FC0)})
    assert out.halted and out.vm.read(DATA + 8, 4) == struct.pack("<I", 0x7FC0)


@pytest.mark.parametrize("code", [
    "0f ae c0",            # /0 with mod = 3, no prefix
    "0f ae d8",            # /3
    "f3 0f ae 27",         # F3 /4 memory: PTWRITE
    "66 0f ae 37",         # 66 /6 memory: CLWB
    "f3 0f ae e8",         # INCSSP
    "66 0f ae f0",         # TPAUSE
    "f2 0f ae f0",         # UMWAIT
    "0f c7 e0",            # XSAVEC register form
])
def test_0fae_undefined(code):
    out = guest(f".byte {', '.join('0x' + b for b in code.split())}", regs={"rdi": DATA})
    assert vector(out) == 6


def test_clflush_and_clflushopt():
    out = guest("clflush [rdi]\nclflushopt [rdi + 64]\nlfence\nmfence\nsfence\nprefetchw [rdi]", regs={"rdi": DATA})
    assert out.halted


def test_clflush_checks_segment_limit():
    out = guest("clflush [rdi]", regs={"rdi": 1 << 63})      # non-canonical: #GP(0)
    assert vector(out) == 13


def test_fsgsbase():
    src = """
        mov rax, 0x123456789a
        wrfsbase rax
        mov ebx, 0xfedcba98
        wrgsbase ebx
        rdfsbase rcx
        rdgsbase rdx
        rdfsbase esi
        mov eax, 0x10000
        wrgsbase rax
        mov dword ptr [rdi + 0x10000], 0x42
        mov r8d, gs:[rdi]
    """
    out = guest(src, cr4=FSGSBASE | OSFXSR, regs={"rdi": DATA, "rsi": -1})
    assert out.halted
    assert out.fs.base == 0x123456789A and out.gs.base == 0x10000
    assert out.rcx == 0x123456789A and out.rdx == 0xFEDCBA98 and out.rsi == 0x3456789A
    assert out.r8 == 0x42


def test_fsgsbase_faults():
    assert vector(guest("rdfsbase rax", cr4=0)) == 6                         # CR4.FSGSBASE = 0
    assert vector(guest("wrgsbase rax", cr4=FSGSBASE, regs={"rax": 1 << 60})) == 13
    assert vector(guest("rdfsbase eax", bits=32, cr4=FSGSBASE)) == 6          # outside 64-bit mode


def test_fxsave_real_mode():
    src = "mov ax, 0x2000\nmov ds, ax\nfxsave [0]\naddps xmm1, xmm2\nfxrstor [0]\n"
    out = guest(src, bits=16, regs=XMM_REGS, data={DATA: bytes([PAD] * 512)})
    assert out.halted
    assert out.vm.read(DATA, 512) == expected_legacy(xmms=8)
    assert out.xmm1 == xmm_pattern(2)                     # restored
    out = guest("mov ax, 0x2000\nmov ds, ax\nfxsave [8]\n", bits=16)
    assert vector(out) == 13
