"""Exact-value tests of the general-purpose instructions in real (16-bit),
protected (32-bit) and long (64-bit) mode.

Each test runs a short snippet followed by HLT (see insn_harness.run) and
asserts exact register, memory and flag values.  Expected values are worked
out by hand from the instruction pages of the Intel SDM Vol. 2; flags the SDM
leaves undefined for an instruction are masked out, never asserted.
"""

import pytest

import vtx
from insn_harness import AF, CF, DF, IF, OF, PF, SF, STATUS, ZF, run, run_hlt
from insn_harness import ALL_MODES, PTR, R, WIDTH

DATA = 0x3000           # scratch data, reachable with DS = 0 in real mode too
FULL = (1 << 64) - 1


def M(bits):
    """All ones at the natural operand size."""
    return (1 << (8 * WIDTH[bits])) - 1


def S(bits):
    """The sign bit at the natural operand size."""
    return 1 << (8 * WIDTH[bits] - 1)


def merge(bits, old, new):
    """The full 64-bit register after writing `new` at the natural operand
    size: 16-bit writes keep bits 63:16, 32-bit writes zero bits 63:32
    (SDM Vol. 1 3.4.1.1)."""
    if bits == 16:
        return (old & ~0xFFFF) | (new & 0xFFFF)
    return new & M(bits)


UPPER = 0xA5A5A5A5_00000000     # upper-half junk that 16/32-bit writes must treat correctly


def UP(bits):
    """Junk for bits 63:32 of a register before the test.  Outside 64-bit mode
    those bits are undefined after a 32-bit write (SDM Vol. 1 3.4.1.1), so the
    32-bit mode tests start them at 0 and do not depend on them; in 64-bit
    mode the natural operand size is the whole register."""
    return UPPER if bits == 16 else 0


def lo32(v):
    return v & 0xFFFFFFFF


def status(out):
    return out.rflags & STATUS


def exc(out, vector):
    """Assert that the run stopped on an exception exit with this vector."""
    assert isinstance(out.exit, vtx.ExceptionExit), f"expected vector {vector}, got {out.exit!r}"
    assert out.exit.vector == vector, f"expected vector {vector}, got {out.exit!r}"
    return out.exit


def asm_bytes(src, bits):
    return vtx.asm(src, bits=bits, org=0x1000)


# ============================================================================
# MOV
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_mov_reg_imm(bits):
    a = R(bits, "a")
    out = run_hlt(f"mov {a}, 0x1234\nmov bl, 0x56\nmov bh, 0x78\nmov cl, 0xff",
                  bits, regs={"rax": UP(bits) | 0xFFFF_FFFF, "rbx": UP(bits) | 0xAAAA_AAAA, "rcx": UP(bits)})
    assert out.rax == merge(bits, UP(bits) | 0xFFFF_FFFF, 0x1234)
    assert out.rbx == UP(bits) | 0xAAAA_7856          # byte writes keep every other bit
    assert out.rcx == UP(bits) | 0xFF


def test_mov_imm64_and_zero_extension():
    out = run_hlt("mov rax, 0x1122334455667788\nmov ebx, 0xdeadbeef\nmov cx, 0xbeef\n"
                  "mov rdx, -1\nmov r9d, 0x80000000\nmov r10w, 7\nmov r11b, 0x80", 64,
                  regs={"rbx": FULL, "rcx": FULL, "r9": FULL, "r10": FULL, "r11": FULL})
    assert asm_bytes("mov rax, 0x1122334455667788", 64)[:2] == b"\x48\xb8"      # B8+r imm64
    assert asm_bytes("mov rdx, -1", 64)[:3] == b"\x48\xc7\xc2"                  # C7 /0 imm32, sign-extended
    assert out.rax == 0x1122334455667788
    assert out.rbx == 0xDEADBEEF                   # 32-bit write zero-extends
    assert out.rcx == 0xFFFFFFFFFFFFBEEF
    assert out.rdx == FULL
    assert out.r9 == 0x80000000
    assert out.r10 == 0xFFFFFFFFFFFF0007
    assert out.r11 == 0xFFFFFFFFFFFFFF80


@pytest.mark.parametrize("bits", ALL_MODES)
def test_mov_reg_reg_and_memory(bits):
    a, b, c, d = R(bits, "a"), R(bits, "b"), R(bits, "c"), R(bits, "d")
    src = (f"mov {b}, {a}\n"                       # 89 /r
           f"mov {PTR(bits)} ptr [{DATA}], {a}\n"  # 89 /r to memory
           f"mov {c}, {PTR(bits)} ptr [{DATA}]\n"  # 8B /r from memory
           f"mov byte ptr [{DATA + 16}], 0x5a\n"   # C6 /0
           f"mov {PTR(bits)} ptr [{DATA + 24}], 0x7eadbeef\n"    # C7 /0
           f"mov dl, byte ptr [{DATA + 16}]\n")    # 8A /r
    if bits == 16:
        src = src.replace("0x7eadbeef", "0x7ead")
    v = 0x1122334455667788 & M(bits)
    out = run_hlt(src, bits, regs={"rax": v, "rbx": UP(bits), "rcx": UP(bits), "rdx": UP(bits) | 0x1234})
    assert out.rbx == merge(bits, UP(bits), v)
    assert out.rcx == merge(bits, UP(bits), v)
    assert out.vm.read(DATA, WIDTH[bits]) == v.to_bytes(WIDTH[bits], "little")
    assert out.rdx == UP(bits) | 0x125A
    imm = 0x7EAD if bits == 16 else 0x7EADBEEF
    assert int.from_bytes(out.vm.read(DATA + 24, 8), "little") == imm


def test_mov_mem_imm_sign_extended_64():
    out = run_hlt(f"mov qword ptr [{DATA}], -2\nmov dword ptr [{DATA + 8}], -2\n"
                  f"mov word ptr [{DATA + 16}], -2", 64,
                  data={DATA: b"\x11" * 24})
    assert out.vm.read(DATA, 24) == (b"\xfe" + b"\xff" * 7 + b"\xfe\xff\xff\xff" + b"\x11" * 4
                                     + b"\xfe\xff" + b"\x11" * 6)


@pytest.mark.parametrize("bits", ALL_MODES)
def test_mov_moffs(bits):
    """A0-A3: MOV between the accumulator and a memory offset that follows
    the opcode (address-size wide: 2, 4 or 8 bytes)."""
    mov = "movabs" if bits == 64 else "mov"
    acc = R(bits, "a")
    src = (f"{mov} al, ds:{DATA}\n{mov} {acc}, ds:{DATA + 8}\n"
           f"{mov} ds:{DATA + 16}, {acc}\n{mov} ds:{DATA + 32}, al")
    code = asm_bytes(src, bits)
    opcodes = [b for b in code if b in (0xA0, 0xA1, 0xA2, 0xA3)]
    assert opcodes == [0xA0, 0xA1, 0xA3, 0xA2]
    assert len(code) == 4 * (1 + WIDTH[bits]) + (1 if bits == 64 else 0) * 2
    blob = bytes(range(0x80, 0x80 + 16))
    out = run_hlt(src, bits, regs={"rax": UP(bits)}, data={DATA: blob, DATA + 16: b"\xcc" * 24})
    w = WIDTH[bits]
    want = int.from_bytes(blob[8:8 + w], "little")
    assert out.rax == merge(bits, UP(bits), want)
    assert out.vm.read(DATA + 16, w) == blob[8:8 + w]
    assert out.vm.read(DATA + 32, 2) == bytes([blob[8], 0xCC])   # AL is the low byte of rAX


def test_mov_moffs_32bit_address_in_64bit_mode():
    """67 A1: a 4-byte moffs in 64-bit mode."""
    out = run_hlt(f".byte 0x67, 0xa1\n.long {DATA}", 64, data={DATA: (0x0BADF00D).to_bytes(4, "little")},
                  regs={"rax": FULL})
    assert out.rax == 0x0BADF00D


def test_mov_sreg_real_mode():
    """MOV Sreg, r/m16 in real mode: the base becomes selector * 16 (SDM Vol. 3
    20.1.1); MOV r/m16, Sreg stores the selector."""
    out = run_hlt("mov ax, 0x200\nmov ds, ax\nmov bx, word ptr [0x10]\n"    # reads 0x2010
                  "mov cx, 0x300\nmov es, cx\nmov dx, es\n"
                  f"mov word ptr es:[0x20], ds\n"                        # 8C to memory (0x3020)
                  "mov si, 0x400\nmov fs, si\nmov gs, word ptr es:[0x20]\n"   # 8E from memory
                  "mov di, fs\nmov bp, gs\n"
                  "mov ax, 0\nmov ss, ax\nmov sp, 0x7000\npush 0x55aa\nmov ax, ss", 16,
                  regs={"rdx": UPPER, "rdi": UPPER},
                  data={0x2010: b"\x34\x12"})
    v = out.vcpu
    assert out.rbx & 0xFFFF == 0x1234
    assert v.ds.selector == 0x200 and v.ds.base == 0x2000
    assert v.es.selector == 0x300 and v.es.base == 0x3000
    assert out.rdx == UPPER | 0x300               # 16-bit register destination
    assert out.vm.read(0x3020, 2) == b"\x00\x02"
    assert v.fs.base == 0x4000 and v.gs.selector == 0x200 and v.gs.base == 0x2000
    assert out.rdi == UPPER | 0x400
    assert out.rbp & 0xFFFF == 0x200
    assert out.vm.read(0x6FFE, 2) == b"\xaa\x55"
    assert out.rax & 0xFFFF == 0


@pytest.mark.parametrize("bits", ALL_MODES)
def test_mov_sreg_32bit_register_destination(bits):
    """MOV r32, Sreg zero-extends the selector (SDM Vol. 2 MOV: "the upper
    bits of the destination are cleared" on current processors)."""
    out = run_hlt("mov eax, ds\nmov bx, ds", bits, regs={"rax": FULL, "rbx": FULL})
    sel = 0 if bits == 16 else 0x10
    assert lo32(out.rax) == sel
    if bits == 64:
        assert out.rax == sel
    assert out.rbx == FULL & ~0xFFFF | sel


@pytest.mark.parametrize("bits", ALL_MODES)
def test_mov_to_cs_is_ud(bits):
    out = run(".byte 0x8e, 0xc8", bits)            # MOV CS, AX
    e = exc(out, 6)
    assert e.guest_rip == 0x1000


# ============================================================================
# ADD ADC SUB SBB AND OR XOR CMP TEST
# ============================================================================

def alu_table(bits):
    """(op, a, b, CF in, result, status flags out, flags that are defined)."""
    m, s = M(bits), S(bits)
    arith, logic = STATUS, STATUS & ~AF
    return [
        ("add", m, 1, 0, 0, CF | ZF | PF | AF, arith),
        ("add", s - 1, 1, 1, s, OF | SF | PF | AF, arith),
        ("add", 0x10, 0x20, 1, 0x30, PF, arith),
        ("add", s, s, 0, 0, CF | OF | ZF | PF, arith),
        ("adc", m, 0, 1, 0, CF | ZF | PF | AF, arith),
        ("adc", 5, 6, 1, 12, PF, arith),
        ("adc", 5, 6, 0, 11, 0, arith),
        ("adc", s - 1, 0, 1, s, OF | SF | PF | AF, arith),
        ("sub", 0, 1, 0, m, CF | SF | PF | AF, arith),
        ("sub", s, 1, 1, s - 1, OF | PF | AF, arith),
        ("sub", 5, 5, 1, 0, ZF | PF, arith),
        ("sbb", 5, 5, 1, m, CF | SF | PF | AF, arith),
        ("sbb", 7, 2, 1, 4, 0, arith),
        ("sbb", 7, 2, 0, 5, PF, arith),
        ("sbb", 0, m, 1, 0, CF | ZF | PF | AF, arith),
        ("cmp", 3, 5, 0, 3, CF | SF | AF, arith),
        ("cmp", s, 1, 0, s, OF | PF | AF, arith),
        ("cmp", 9, 9, 1, 9, ZF | PF, arith),
        ("and", 0xF0F0, 0x0FF0, 1, 0x00F0, PF, logic),
        ("and", m, s, 1, s, SF | PF, logic),
        ("or", s, 1, 1, s + 1, SF, logic),
        ("or", 0, 0, 1, 0, ZF | PF, logic),
        ("xor", m, m, 1, 0, ZF | PF, logic),
        ("xor", 0x0F, 0x01, 1, 0x0E, 0, logic),
        ("test", s, m, 1, s, SF | PF, logic),
        ("test", 0xF0, 0x0F, 1, 0xF0, ZF | PF, logic),
    ]


@pytest.mark.parametrize("bits", ALL_MODES)
def test_alu_reg_reg(bits):
    a, b = R(bits, "a"), R(bits, "b")
    for op, x, y, cf, res, flags, defined in alu_table(bits):
        # All status flags set (or all clear but CF) on entry, so each one
        # the instruction writes is seen to be written.
        fin = 0x2 | (STATUS if cf else (STATUS & ~CF))
        out = run_hlt(f"{op} {a}, {b}", bits, regs={"rax": UP(bits) | x, "rbx": y}, rflags=fin)
        assert out.rax == merge(bits, UP(bits) | x, res), (op, hex(x), hex(y))
        assert out.rbx == y
        assert status(out) & defined == flags, (op, hex(x), hex(y), hex(out.rflags))


@pytest.mark.parametrize("bits", ALL_MODES)
@pytest.mark.parametrize("form", ["r_m", "m_r", "m_imm", "r_imm", "acc_imm", "imm8_sx"])
def test_alu_forms(bits, form):
    """The six ALU forms (SDM Vol. 2 Table A-2 rows 0x-3x and group 1):
    op r, r/m; op r/m, r; op r/m, imm (81); op r/m, imm8 sign-extended (83);
    op AL/rAX, imm (05, 2D, ...)."""
    a, b, p = R(bits, "a"), R(bits, "b"), PTR(bits)
    m = M(bits)
    mem = f"{p} ptr [{DATA}]"
    if form == "r_m":
        src, regs, data = f"sub {b}, {mem}", {"rbx": 10}, 3
        want_b, want_mem, flags = 7, 3, 0
    elif form == "m_r":
        src, regs, data = f"sub {mem}, {b}", {"rbx": 10}, 3
        want_b, want_mem, flags = 10, m - 6, CF | SF | AF | PF    # 3 - 10 = -7 = ...F9
    elif form == "m_imm":
        src, regs, data = f"add {mem}, 0x1234", {"rbx": 0}, 0x0FFF
        want_b, want_mem, flags = 0, 0x2233, AF | PF
    elif form == "r_imm":
        src, regs, data = f"and {b}, 0x7ff0", {"rbx": m}, 0
        want_b, want_mem, flags = 0x7FF0, 0, PF
    elif form == "acc_imm":
        src, regs, data = f"cmp {a}, 0x1000", {"rax": 0x1000}, 0
        want_b, want_mem, flags = None, 0, ZF | PF
    else:
        src, regs, data = f"add {b}, -1", {"rbx": 1}, 0
        want_b, want_mem, flags = 0, 0, CF | ZF | PF | AF
    code = asm_bytes(src, bits)
    opc = code[1 if code[0] in (0x48, 0x66) else 0]
    expected_opcode = {"r_m": 0x2B, "m_r": 0x29, "m_imm": 0x81, "r_imm": 0x81, "acc_imm": 0x3D,
                       "imm8_sx": 0x83}[form]
    assert opc == expected_opcode, code.hex()
    out = run_hlt(src, bits, regs=regs, rflags=0x2 | (STATUS if form != "r_imm" else 0),
                  data={DATA: data.to_bytes(8, "little")})
    if want_b is not None:
        assert out.rbx == want_b
    assert int.from_bytes(out.vm.read(DATA, WIDTH[bits]), "little") == want_mem
    defined = STATUS & ~AF if form == "r_imm" else STATUS
    assert status(out) & defined == flags


@pytest.mark.parametrize("bits", ALL_MODES)
def test_alu_byte_forms(bits):
    """00/02/04/80/82 and the byte group: byte operands, including the legacy
    high-byte registers."""
    src = ("add al, 0x7f\n"          # 04 ib: 0x01 + 0x7f = 0x80
           "adc ah, bl\n"            # 12 /r: 0xff + 0x01 + CF(0) = 0x00, CF=1
           "sbb bh, 0\n"             # 80 /3 ib: 0x10 - 0 - 1 = 0x0f
           "xor byte ptr [{d}], ch\n"  # 30 /r
           "or cl, byte ptr [{d}]\n")  # 0A /r
    out = run_hlt(src.format(d=DATA), bits, regs={"rax": 0xFF01, "rbx": 0x1001, "rcx": 0x3300},
                  data={DATA: b"\x0f"})
    assert out.rax & 0xFFFF == 0x0080
    assert out.rbx & 0xFFFF == 0x0F01
    assert out.vm.read(DATA, 1) == b"\x3c"
    assert out.rcx & 0xFFFF == 0x333C
    assert status(out) & ~AF == PF         # OR: 0x3c has four bits set


def test_alu_opcode_82_is_alias_of_80_outside_64bit():
    for bits in (16, 32):
        out = run_hlt(".byte 0x82, 0xc0, 0x05", bits, regs={"rax": 0x10})   # add al, 5
        assert out.rax == 0x15
    out = run(".byte 0x82, 0xc0, 0x05", 64)     # invalid in 64-bit mode (SDM Table A-2, i64)
    exc(out, 6)


@pytest.mark.parametrize("bits", ALL_MODES)
def test_test_forms(bits):
    a, b = R(bits, "a"), R(bits, "b")
    out = run_hlt(f"test {a}, {b}", bits, regs={"rax": 0xF0, "rbx": 0x0F}, rflags=0x2 | STATUS)
    assert status(out) & ~AF == ZF | PF and out.rax == 0xF0
    out = run_hlt("test al, 0x80", bits, regs={"rax": 0x80})           # A8 ib
    assert status(out) & ~AF == SF
    out = run_hlt(f"test {PTR(bits)} ptr [{DATA}], 1", bits, data={DATA: b"\x03"})   # F7 /0
    assert status(out) & ~AF == 0
    out = run_hlt(f"test byte ptr [{DATA}], bl", bits, regs={"rbx": 0x04}, data={DATA: b"\x03"})  # 84 /r
    assert status(out) & ~AF == ZF | PF
    # F6 /1 is an undocumented alias of F6 /0 on Intel processors.
    out = run_hlt(".byte 0xf6, 0xc8, 0x01", bits, regs={"rax": 0x01})
    assert status(out) & ~AF == 0


# ============================================================================
# INC DEC NEG NOT
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_inc_dec(bits):
    a, b, p = R(bits, "a"), R(bits, "b"), PTR(bits)
    m, s = M(bits), S(bits)
    # INC and DEC leave CF alone (SDM Vol. 2 INC: "The CF flag is not affected").
    out = run_hlt(f"inc {a}", bits, regs={"rax": UP(bits) | m if bits != 64 else m}, rflags=0x2 | CF)
    assert out.rax == merge(bits, UP(bits) | m, 0)
    assert status(out) == CF | ZF | PF | AF
    out = run_hlt(f"dec {b}", bits, regs={"rbx": 0}, rflags=0x2)
    assert out.rbx == m and status(out) == SF | PF | AF
    out = run_hlt(f"inc {b}", bits, regs={"rbx": s - 1}, rflags=0x2)
    assert out.rbx == s and status(out) == OF | SF | PF | AF
    out = run_hlt(f"dec {p} ptr [{DATA}]", bits, rflags=0x2 | CF, data={DATA: s.to_bytes(8, "little")})
    assert int.from_bytes(out.vm.read(DATA, 8), "little") == s - 1
    assert status(out) == CF | OF | PF | AF
    out = run_hlt("inc al\ndec bh", bits, regs={"rax": 0xFF, "rbx": 0x0100}, rflags=0x2)
    assert out.rax == 0 and out.rbx == 0 and status(out) == ZF | PF
    if bits != 64:
        # 40+r / 48+r: the one-byte forms (REX prefixes in 64-bit mode).
        assert asm_bytes(f"inc {a}", bits) == b"\x40"
        assert asm_bytes(f"dec {b}", bits) == b"\x4b"


@pytest.mark.parametrize("bits", ALL_MODES)
def test_neg(bits):
    a, m, s = R(bits, "a"), M(bits), S(bits)
    for x, res, flags in [(0, 0, ZF | PF), (1, m, CF | SF | PF | AF), (s, s, CF | OF | SF | PF),
                          (m, 1, CF | AF)]:
        out = run_hlt(f"neg {a}", bits, regs={"rax": x}, rflags=0x2 | (STATUS if x == 0 else 0))
        assert out.rax == res and status(out) == flags, hex(x)
    out = run_hlt(f"neg byte ptr [{DATA}]", bits, data={DATA: b"\x80\x11"})
    assert out.vm.read(DATA, 2) == b"\x80\x11" and status(out) == CF | OF | SF
    out = run_hlt("neg ah", bits, regs={"rax": 0x0500})
    assert out.rax == 0xFB00


@pytest.mark.parametrize("bits", ALL_MODES)
def test_not(bits):
    a, m = R(bits, "a"), M(bits)
    for fin in (0x2, 0x2 | STATUS):
        out = run_hlt(f"not {a}\nnot byte ptr [{DATA}]\nnot bh", bits,
                      regs={"rax": UP(bits) | 0x0F0F, "rbx": 0x1200}, rflags=fin, data={DATA: b"\x5a"})
        assert out.rax == merge(bits, UP(bits) | 0x0F0F, m ^ 0x0F0F)
        assert out.vm.read(DATA, 1) == b"\xa5"
        assert out.rbx == 0xED00
        assert out.rflags & STATUS == fin & STATUS          # NOT affects no flags


# ============================================================================
# LEA
# ============================================================================

def test_lea_16bit():
    out = run_hlt("lea ax, [bx+si+5]\nlea cx, [bp+di-1]\nlea dx, [bx+0xfff0]\n"
                  "lea si, [0x1234]\nlea edi, [bx+si]", 16,
                  regs={"rbx": 0x20, "rsi": 0x3, "rbp": 0x100, "rdi": FULL, "rdx": UPPER})
    assert out.rax == 0x28
    assert out.rcx == 0xFE                 # 0x100 + 0xffff - 1 wraps at 16 bits
    assert out.rdx == UPPER | 0x10         # 0x20 + 0xfff0 wraps at 16 bits
    assert out.rsi == 0x1234
    # 32-bit destination, 16-bit address: the 16-bit offset, zero-extended
    assert lo32(out.rdi) == 0x1254         # bx (0x20) + si (0x1234, from the LEA above)


def test_lea_32bit():
    out = run_hlt("lea eax, [ebx+ecx*4+0x10]\nlea edx, [ecx*8]\nlea si, [ebx+ecx*2+0xfff]\n"
                  "lea edi, [ebx-0x41]", 32,
                  regs={"rbx": 0x40, "rcx": 0x3, "rsi": 0xAAAA0000, "rdi": 0})
    assert out.rax == 0x40 + 12 + 0x10
    assert out.rdx == 24
    assert out.rsi == 0xAAAA0000 | (0x40 + 6 + 0xFFF)     # 16-bit destination: low half only
    assert out.rdi == 0xFFFFFFFF                           # wraps at 32 bits


def test_lea_64bit():
    code = "lea rax, [rip+0x10]\nlea rcx, [rbx+r8*8-8]\nlea edx, [rbx+r8*8]\nlea r9, [ebx+0x10]"
    out = run_hlt(code, 64, regs={"rbx": 0xFFFFFFFF_FFFFFFF8, "r8": 3, "rdx": FULL, "r9": FULL})
    assert out.rax == 0x1000 + 7 + 0x10                    # RIP of the next instruction + disp
    assert out.rcx == 0x8
    assert out.rdx == 0x10                                 # 32-bit destination: truncated
    assert out.r9 == 0x8                                   # 67: 32-bit address, zero-extended


@pytest.mark.parametrize("bits", ALL_MODES)
def test_lea_register_operand_is_ud(bits):
    out = run(".byte 0x8d, 0xc0", bits)                    # LEA with ModRM.mod = 3
    exc(out, 6)


# ============================================================================
# MOVZX MOVSX MOVSXD
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_movzx_movsx(bits):
    out = run_hlt(f"movzx eax, bl\nmovsx ecx, bl\nmovzx edx, bh\nmovsx esi, word ptr [{DATA}]\n"
                  f"movzx edi, word ptr [{DATA}]\nmovsx bp, byte ptr [{DATA}]", bits,
                  regs={"rax": FULL, "rbx": 0x7F80, "rcx": FULL, "rdx": FULL, "rbp": UPPER | 0xFFFF},
                  data={DATA: b"\x90\x80"})
    # 32-bit destinations: bits 63:32 are defined (zero) only in 64-bit mode
    low = (lambda v: v) if bits == 64 else lo32
    assert low(out.rax) == 0x80
    assert low(out.rcx) == 0xFFFFFF80
    assert low(out.rdx) == 0x7F
    assert low(out.rsi) == 0xFFFF8090
    assert low(out.rdi) == 0x8090
    assert out.rbp == UPPER | 0xFF90                       # 16-bit destination keeps the rest


def test_movzx_movsx_64():
    out = run_hlt(f"movsx rax, bl\nmovzx rcx, word ptr [{DATA}]\nmovsx rdx, word ptr [{DATA}]\n"
                  "movsx r8d, sil\nmovzx r9, r10b", 64,
                  regs={"rax": 0, "rbx": 0x80, "rsi": 0x80, "r8": FULL, "r9": FULL, "r10": 0x1FF},
                  data={DATA: b"\x01\x80"})
    assert out.rax == 0xFFFFFFFF_FFFFFF80
    assert out.rcx == 0x8001
    assert out.rdx == 0xFFFFFFFF_FFFF8001
    assert out.r8 == 0xFFFFFF80            # SIL (REX) sign-extended into r8d, zero above
    assert out.r9 == 0xFF


def test_movsxd():
    out = run_hlt(f"movsxd rax, ebx\nmovsxd rcx, dword ptr [{DATA}]\nmovsxd r8, r9d\n"
                  ".byte 0x63, 0xd3", 64,          # 63 /r without REX.W: MOVSXD r32, r/m32
                  regs={"rbx": 0x1_80000000, "r9": 0x7FFFFFFF, "rdx": FULL},
                  data={DATA: b"\xfe\xff\xff\xff"})
    assert out.rax == 0xFFFFFFFF_80000000
    assert out.rcx == FULL - 1
    assert out.r8 == 0x7FFFFFFF
    assert out.rdx == 0x80000000           # 32-bit move, zero-extended


def test_arpl_outside_64bit():
    """Opcode 63 is ARPL outside 64-bit mode: protected mode adjusts the RPL
    and sets ZF; real mode does not recognize it (#UD) (SDM Vol. 2 ARPL)."""
    out = run_hlt("arpl ax, bx", 32, regs={"rax": 0x1230 | 1, "rbx": 3}, rflags=0x2)
    assert out.rax == 0x1233 and out.rflags & ZF
    out = run_hlt("arpl word ptr [0x3000], bx", 32, regs={"rbx": 2}, rflags=0x2 | ZF,
                  data={DATA: b"\x13\x00"})
    assert out.vm.read(DATA, 2) == b"\x13\x00" and not out.rflags & ZF
    exc(run("arpl ax, bx", 16), 6)


# ============================================================================
# XCHG
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_xchg(bits):
    a, b, c, d = R(bits, "a"), R(bits, "b"), R(bits, "c"), R(bits, "d")
    src = f"xchg {a}, {b}\nxchg {c}, {d}\nxchg {PTR(bits)} ptr [{DATA}], {d}\nxchg al, ah"
    code = asm_bytes(src, bits)
    assert (code[1] if bits != 16 and code[0] in (0x48, 0x66) else code[0]) == 0x93    # 90+r short form
    out = run_hlt(src, bits, regs={"rax": UP(bits) | 0x1122, "rbx": UP(bits) | 0x3344, "rcx": 5, "rdx": 6},
                  data={DATA: (0x77).to_bytes(8, "little")})
    assert out.rax == merge(bits, UP(bits) | 0x3344, 0x4433)
    assert out.rbx == merge(bits, UP(bits) | 0x3344, UP(bits) | 0x1122)
    assert out.rcx == 6
    assert out.rdx == 0x77
    assert int.from_bytes(out.vm.read(DATA, 8), "little") == 5


def test_xchg_64bit_nop_and_zero_extension():
    # 90 is NOP even though it is "xchg eax, eax": RAX keeps its upper half;
    # 87 C0 is a real 32-bit exchange and zero-extends (SDM Vol. 2 XCHG).
    assert asm_bytes("xchg eax, eax", 64) == b"\x87\xc0"
    out = run_hlt("nop", 64, regs={"rax": FULL})
    assert out.rax == FULL
    out = run_hlt("xchg eax, eax", 64, regs={"rax": FULL})
    assert out.rax == 0xFFFFFFFF
    out = run_hlt("xchg r8, rax", 64, regs={"rax": 1, "r8": 2})        # 49 90: not a NOP
    assert out.rax == 2 and out.r8 == 1
    out = run_hlt("xchg sil, dil\nxchg r9b, al", 64, regs={"rsi": 0x1234, "rdi": 0x5678, "r9": 0xAB, "rax": 0xCD})
    assert out.rsi == 0x1278 and out.rdi == 0x5634 and out.r9 == 0xCD and out.rax == 0xAB


# ============================================================================
# PUSH POP
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_push_pop(bits):
    w = WIDTH[bits]
    a, b, sp = R(bits, "a"), R(bits, "b"), R(bits, "sp")
    src = (f"push {a}\n"           # 50+r
           "push -2\n"             # 6A ib, sign-extended
           "push 0x1234\n"         # 68 iw/id
           f"push {PTR(bits)} ptr [{DATA}]\n"   # FF /6
           f"pop {b}\n"            # 58+r
           f"pop {PTR(bits)} ptr [{DATA + 8}]\n"    # 8F /0
           f"pop {R(bits, 'c')}\n"
           f"push {sp}\n"          # pushes the value before the push
           f"pop {R(bits, 'd')}\n")
    out = run_hlt(src, bits, regs={"rax": 0x1111_2222_3333_4444 & M(bits), "rbx": UP(bits), "rcx": UP(bits)},
                  data={DATA: (0x5555_6666_7777_8888).to_bytes(8, "little")})
    top = 0x8000
    assert out.rsp == top - w                   # one value (the push of rAX) left
    assert out.vm.read(top - w, w) == (0x1111_2222_3333_4444 & M(bits)).to_bytes(w, "little")
    assert out.rbx == merge(bits, UP(bits), 0x5555_6666_7777_8888)
    assert int.from_bytes(out.vm.read(DATA + 8, w), "little") == 0x1234
    assert out.rcx == merge(bits, UP(bits), FULL - 1)
    assert out.rdx == top - w
    assert out.vm.read(top - 2 * w, w) == (top - w).to_bytes(w, "little")


@pytest.mark.parametrize("bits", [32, 64])
def test_push_pop_16bit_operand(bits):
    """66 50+r / 66 58+r: a 2-byte push and pop outside 16-bit mode."""
    out = run_hlt("push ax\npushw 7\npop cx\npop dx", bits,
                  regs={"rax": 0xAAAA_BBBB, "rcx": FULL, "rdx": FULL})
    assert out.rsp == 0x8000
    assert out.vm.read(0x8000 - 4, 4) == b"\x07\x00\xbb\xbb"
    assert out.rcx == FULL & ~0xFFFF | 7 and out.rdx == FULL & ~0xFFFF | 0xBBBB


def test_push_pop_32bit_operand_real_mode():
    out = run_hlt("push eax\npop ebx\n.byte 0x66, 0x68\n.long 0x12345678\npop ecx", 16,
                  regs={"rax": 0xDEADBEEF})
    assert out.rbx == 0xDEADBEEF and out.rcx == 0x12345678 and out.rsp == 0x8000
    assert out.vm.read(0x8000 - 4, 4) == (0x12345678).to_bytes(4, "little")


@pytest.mark.parametrize("bits", ALL_MODES)
def test_pop_sp_and_pop_mem_sp_relative(bits):
    sp, w = R(bits, "sp"), WIDTH[bits]
    # POP rSP loads the popped value (SDM Vol. 2 POP: "POP ESP ... ESP is
    # ... written with the value from the stack").
    out = run_hlt(f"push 0x4000\npop {sp}", bits)
    assert out.rsp == 0x4000
    # POP [rSP]: the address is computed after rSP is incremented.
    esp = "esp" if bits == 16 else sp         # [sp] has no 16-bit addressing form
    out = run_hlt(f"push 0x11\npush 0x22\npop {PTR(bits)} ptr [{esp}]", bits)
    assert out.rsp == 0x8000 - w
    assert out.vm.read(0x8000 - w, 1) == b"\x22"


# ============================================================================
# CALL RET JMP
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_call_ret(bits):
    w = WIDTH[bits]
    src = ("call f1\n"             # E8, at 0x1000
           "mov ebx, 0x55\n"
           "hlt\n"
           "f1: mov eax, 0x66\n"
           "ret\n")
    out = run_hlt(src, bits)
    call_len = 1 + (2 if bits == 16 else 4)
    assert out.rax == 0x66 and out.rbx == 0x55
    assert out.rsp == 0x8000
    assert out.vm.read(0x8000 - w, w) == (0x1000 + call_len).to_bytes(w, "little")


@pytest.mark.parametrize("bits", ALL_MODES)
def test_ret_imm16(bits):
    w = WIDTH[bits]
    src = "push 1\npush 2\ncall f\nhlt\nf: ret 2*{w}\n".format(w=w)
    out = run_hlt(src, bits)
    assert out.rsp == 0x8000            # the return address and two arguments released
    assert asm_bytes("ret 8", bits)[0] == 0xC2


@pytest.mark.parametrize("bits", ALL_MODES)
def test_call_jmp_indirect(bits):
    b, p = R(bits, "b"), PTR(bits)
    src = (f"mov {b}, offset f1\n"
           f"call {b}\n"                        # FF /2 register
           f"mov {p} ptr [{DATA}], offset f2\n"
           f"call {p} ptr [{DATA}]\n"           # FF /2 memory
           f"mov {b}, offset j1\n"
           f"jmp {b}\n"                         # FF /4 register
           "hlt\n"
           f"j1: mov {p} ptr [{DATA}], offset j2\n"
           f"jmp {p} ptr [{DATA}]\n"            # FF /4 memory
           "hlt\n"
           "j2: mov edx, 3\n"
           "hlt\n"
           "f1: mov eax, 1\nret\n"
           "f2: mov ecx, 2\nret\n")
    out = run_hlt(src, bits)
    assert (out.rax, out.rcx, out.rdx) == (1, 2, 3)
    assert out.rsp == 0x8000


@pytest.mark.parametrize("bits", ALL_MODES)
def test_jmp_rel(bits):
    src = "jmp short_t\nhlt\nshort_t: jmp near_t\n.space 300, 0xf4\nnear_t: mov eax, 7\njmp back\n" \
          ".space 10, 0xf4\nback2: mov ecx, 9\nhlt\nback: mov ebx, 8\njmp back2\n"
    code = asm_bytes(src, bits)
    assert code[0] == 0xEB and code[3] == 0xE9
    out = run_hlt(src, bits)
    assert (out.rax, out.rbx, out.rcx) == (7, 8, 9)


def test_jmp_16bit_wraps_ip():
    """In 16-bit mode a near jump's target is truncated to 16 bits (SDM Vol. 2
    JMP: "IF OperandSize = 16 THEN EIP := tempEIP AND 0000FFFFH")."""
    # At 0xFFF0: jmp +0x20 -> 0x10012 wraps to 0x0012.
    vm_src = ".byte 0xe9, 0x1d, 0x00"        # jmp rel16 0x1d: 0xfff3 + 0x1d = 0x10010 -> 0x0010
    out = run(vm_src, 16, org=0xFFF0, data={0x10: b"\xb8\x34\x12\xf4"})    # mov ax, 0x1234; hlt
    assert out.halted and out.rax & 0xFFFF == 0x1234 and out.rip == 0x13


def test_jmp_outside_cs_limit_is_gp():
    out = run("jmp ebx", 32, setup=lambda vm, v: setattr(v, "cs", vtx.Segment(0x08, 0, 0x1FFF, 0xC09B)),
              regs={"rbx": 0x2000})
    e = exc(out, 13)
    assert e.error_code == 0 and e.guest_rip == 0x1000


@pytest.mark.parametrize("bits", [16, 32])
def test_instruction_crossing_cs_limit_is_gp(bits):
    """An instruction whose last byte lies beyond the CS limit faults (#GP(0),
    no error code in real mode) before it executes (SDM Vol. 3 5.3)."""
    ar = 0x409B if bits == 32 else 0x9B
    last = 0x1003 + (6 if bits == 16 else 5) - 1    # last byte of mov eax, 1 (66 B8 in 16-bit mode)

    def cs_limit(limit):
        return lambda vm, v: setattr(v, "cs", vtx.Segment(0x08 if bits == 32 else 0, 0, limit, ar))

    for limit in (0x1004, last - 1):
        out = run("nop\nnop\nnop\nmov eax, 1", bits, regs={"rax": 7}, setup=cs_limit(limit))
        e = exc(out, 13)
        assert e.guest_rip == 0x1003 and out.rax == 7
        assert e.error_code == (0 if bits == 32 else None)
    # Ending exactly at the limit is fine; the HLT after it is then beyond.
    out = run("nop\nnop\nnop\nmov eax, 1", bits, regs={"rax": 7}, setup=cs_limit(last))
    assert out.rax == 1 and exc(out, 13).guest_rip == last + 1


def test_real_mode_stack_wrap_and_segment_limit():
    """Real mode: SP wraps at 64 KiB; a word access across offset 0xFFFF is
    #GP, or #SS through SS, with no error code (SDM Vol. 3 20.1.4)."""
    out = run_hlt("push 0x1234\npop bx\npush 0x5678", 16, stack=0)
    assert out.rsp == 0xFFFE and out.vm.read(0xFFFE, 2) == b"\x78\x56" and out.rbx == 0x1234
    e = exc(run("mov ax, word ptr [0xffff]", 16), 13)
    assert e.error_code is None and e.guest_rip == 0x1000
    e = exc(run("mov bp, 0xffff\nmov ax, word ptr [bp]", 16), 12)
    assert e.error_code is None and e.guest_rip == 0x1003
    out = run_hlt("mov al, byte ptr [0xffff]\nmov bx, 0xfffe\nmov cx, word ptr [bx]", 16,
                  data={0xFFFE: b"\x34\x12"})
    assert out.rax & 0xFF == 0x12 and out.rcx == 0x1234


def test_jmp_non_canonical_is_gp():
    out = run("jmp rbx", 64, regs={"rbx": 0x0000_8000_0000_0000})
    e = exc(out, 13)
    assert e.guest_rip == 0x1000 and out.rbx == 0x0000_8000_0000_0000


# Jcc: the 16 conditions (SDM Vol. 1 Appendix B, Table B-1), by tttn.
CONDITIONS = [
    ("o", lambda f: f & OF), ("no", lambda f: not f & OF),
    ("b", lambda f: f & CF), ("ae", lambda f: not f & CF),
    ("e", lambda f: f & ZF), ("ne", lambda f: not f & ZF),
    ("be", lambda f: f & (CF | ZF)), ("a", lambda f: not f & (CF | ZF)),
    ("s", lambda f: f & SF), ("ns", lambda f: not f & SF),
    ("p", lambda f: f & PF), ("np", lambda f: not f & PF),
    ("l", lambda f: bool(f & SF) != bool(f & OF)), ("ge", lambda f: bool(f & SF) == bool(f & OF)),
    ("le", lambda f: f & ZF or bool(f & SF) != bool(f & OF)),
    ("g", lambda f: not f & ZF and bool(f & SF) == bool(f & OF)),
]
FLAG_SETS = [0, CF, ZF, SF, OF, PF, SF | OF, ZF | SF, CF | ZF, ZF | OF, STATUS]


@pytest.mark.parametrize("bits", ALL_MODES)
@pytest.mark.parametrize("near", [False, True], ids=["rel8", "rel16_32"])
def test_jcc_all_conditions(bits, near):
    pad = ".space 200, 0xf4\n" if near else ""
    for tttn, (cc, pred) in enumerate(CONDITIONS):
        src = f"j{cc} taken\nmov eax, 1\nhlt\n{pad}taken: mov eax, 2\n"
        code = asm_bytes(src, bits)
        if near:
            assert code[0] == 0x0F and code[1] == 0x80 + tttn, code[:2].hex()
        else:
            assert code[0] == 0x70 + tttn
        for f in FLAG_SETS:
            out = run_hlt(src, bits, rflags=0x2 | f)
            want = 2 if pred(f) else 1
            assert out.rax == want, (cc, hex(f))
            assert out.rflags & STATUS == f


# ============================================================================
# NOP
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_nops(bits):
    src = ("nop\n"                                   # 90
           "xchg ax, ax\n"                           # 66 90
           "nop dword ptr [eax]\n"                   # 0F 1F /0
           "nop word ptr [eax+eax*1+0]\n"            # 66 0F 1F 44 00 00
           "nop dword ptr [eax+eax*1+0x12345678]\n"   # 0F 1F 84 00 disp32
           "pause\n"                                 # F3 90
           "mov eax, 1")
    out = run_hlt(src, bits, regs={"rax": 0, "rbx": 0}, rflags=0x2 | STATUS)
    assert out.rax == 1 and out.rflags & STATUS == STATUS
    assert out.vcpu.instructions == 7        # HLT exits before it retires


# ============================================================================
# SHL SHR SAR
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_shift_by_one_cl_imm(bits):
    a, m, s = R(bits, "a"), M(bits), S(bits)
    # by 1 (D1): OF defined.  SHL: OF = MSB(result) XOR CF; SHR: OF = MSB of
    # the original operand; SAR: OF = 0 (SDM Vol. 2 SAL/SAR/SHL/SHR).
    for op, x, res, flags in [
        ("shl", s | 1, 2, CF | OF),
        ("shl", s >> 1, s, OF | SF | PF),
        ("shl", m, m - 1, CF | SF),           # low byte 0xFE: seven bits set
        ("shr", s | 1, s >> 1, CF | OF | PF),
        ("shr", 2, 1, 0),
        ("sar", s | 1, s | (s >> 1), CF | SF | PF),
        ("sar", 1, 0, CF | ZF | PF),
    ]:
        out = run_hlt(f"{op} {a}, 1", bits, regs={"rax": x}, rflags=0x2 | (STATUS & ~flags))
        assert out.rax == res, (op, hex(x))
        assert status(out) & ~AF == flags, (op, hex(x), hex(out.rflags))
        assert asm_bytes(f"{op} {a}, 1", bits)[-2] == 0xD1
    # by CL (D3) and by imm8 (C1): OF undefined for counts other than 1
    for op, x, cnt, res, flags in [
        ("shl", 0x81, 4, 0x810, 0),
        ("shl", s >> 3, 4, 0, CF | ZF | PF),
        ("shr", 0x81, 4, 0x8, 0),
        ("shr", 0x18, 4, 1, CF),
        ("sar", s, 3, s | (s >> 1) | (s >> 2) | (s >> 3), SF | PF),
        ("sar", m, 7, m, CF | SF | PF),
    ]:
        defined = STATUS & ~AF & ~OF
        out = run_hlt(f"{op} {a}, cl", bits, regs={"rax": x, "rcx": cnt}, rflags=0x2 | (STATUS & ~flags))
        assert out.rax == res and status(out) & defined == flags, (op, hex(x), cnt)
        out = run_hlt(f"{op} {a}, {cnt}", bits, regs={"rax": x}, rflags=0x2 | (STATUS & ~flags))
        assert out.rax == res and status(out) & defined == flags, (op, hex(x), cnt)


@pytest.mark.parametrize("bits", ALL_MODES)
@pytest.mark.parametrize("form", ["cl", "imm"])
def test_shift_count_zero_keeps_flags(bits, form):
    a = R(bits, "a")
    for fin in (0x2, 0x2 | STATUS):
        for cnt in ((0, 32, 64) if bits != 64 else (0, 64, 128)):
            src = f"shl {a}, cl\nsar byte ptr [{DATA}], cl" if form == "cl" else \
                  f"shl {a}, {cnt}\nsar byte ptr [{DATA}], {cnt}"
            out = run_hlt(src, bits, regs={"rax": 0x1234, "rcx": cnt}, rflags=fin, data={DATA: b"\x81"})
            assert out.rflags & STATUS == fin & STATUS
            assert out.rax == 0x1234 and out.vm.read(DATA, 1) == b"\x81"


def test_shift_count_masked_to_5_bits():
    """Counts are masked to 5 bits (6 with REX.W in 64-bit mode)."""
    out = run_hlt("shl eax, cl\nshr ebx, 33\nshl dx, 17\nsar si, cl\nshl di, 33", 32,
                  regs={"rax": 1, "rcx": 33, "rbx": 4, "rdx": 3, "rsi": 0x8000, "rdi": 3})
    assert out.rax == 2 and out.rbx == 2 and out.rsi == 0xC000
    assert out.rdx == 0                           # 17 & 31 = 17: beyond the 16-bit width
    assert out.rdi == 6                           # 33 & 31 = 1
    out = run_hlt("shl rax, cl\nshr rbx, 65\nshl r8, 33\nshl ecx, 33\nshl edi, 32", 64,
                  regs={"rax": 1, "rcx": 65, "rbx": 4, "r8": 1, "rdi": FULL})
    assert out.rax == 2 and out.rbx == 2 and out.r8 == 1 << 33
    assert out.rcx == 130                         # 65 << 1: a 32-bit shift of ecx by 33 & 31
    assert out.rdi == 0xFFFFFFFF                  # count 0 after masking; still a 32-bit write


@pytest.mark.parametrize("bits", ALL_MODES)
def test_shift_byte_counts_beyond_width(bits):
    """8- and 16-bit operands: the count is masked to 5 bits, not to the
    width, so counts 8..31 (16..31) shift everything out."""
    out = run_hlt("shl al, 9\nshr bl, 10\nsar cl, 12\nsar dl, 31\nshl si, 20\nshr di, 16", bits,
                  regs={"rax": 0xFF, "rbx": 0xFF, "rcx": 0x80, "rdx": 0x7F, "rsi": 0xFFFF, "rdi": 0x8000})
    assert (out.rax, out.rbx, out.rcx, out.rdx, out.rsi, out.rdi) == (0, 0, 0xFF, 0, 0, 0)
    # SAR keeps CF defined for any count: it is the sign bit shifted out last.
    out = run_hlt("sar al, 12", bits, regs={"rax": 0x80}, rflags=0x2)
    assert out.rax == 0xFF and status(out) & (CF | ZF | SF | PF) == CF | SF | PF
    out = run_hlt("shl al, 8", bits, regs={"rax": 0x01}, rflags=0x2 | STATUS)
    assert out.rax == 0 and status(out) & (ZF | SF | PF) == ZF | PF    # CF undefined (count >= width)


@pytest.mark.parametrize("bits", ALL_MODES)
def test_shift_memory_operand(bits):
    out = run_hlt(f"shl {PTR(bits)} ptr [{DATA}], 4\nshr word ptr [{DATA + 8}], cl\n"
                  f"sar byte ptr [{DATA + 12}], 1", bits,
                  regs={"rcx": 3}, data={DATA: (0x1234).to_bytes(8, "little") + b"\x00\x80\x00\x00\xfe"})
    assert int.from_bytes(out.vm.read(DATA, 8), "little") == 0x12340 & M(bits)
    assert out.vm.read(DATA + 8, 2) == b"\x00\x10"
    assert out.vm.read(DATA + 12, 1) == b"\xff"


# ============================================================================
# MUL IMUL
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_mul_one_operand(bits):
    b, m, s = R(bits, "b"), M(bits), S(bits)
    w = 8 * WIDTH[bits]
    for x, y, lo, hi in [(s, 2, 0, 1), (m, m, 1, m - 1), (3, 5, 15, 0), (m, 1, m, 0), (0, m, 0, 0)]:
        out = run_hlt(f"mul {b}", bits, regs={"rax": x, "rbx": y, "rdx": UP(bits) | 0x77})
        assert out.rax == merge(bits, 0, lo) and out.rdx == merge(bits, UP(bits), hi), (hex(x), hex(y))
        assert status(out) & (CF | OF) == (CF | OF if hi else 0)
        assert ((x * y) >> w, (x * y) & m) == (hi, lo)
    out = run_hlt("mul bl", bits, regs={"rax": 0xAB80, "rbx": 0x04, "rdx": 0x99})
    assert out.rax == 0x0200 and out.rdx == 0x99 and status(out) & (CF | OF) == CF | OF
    out = run_hlt("mul byte ptr [0x3000]", bits, regs={"rax": 0x0010}, data={DATA: b"\x0f"})
    assert out.rax == 0x00F0 and status(out) & (CF | OF) == 0


@pytest.mark.parametrize("bits", ALL_MODES)
def test_imul_one_operand(bits):
    b, m, s = R(bits, "b"), M(bits), S(bits)
    for x, y, lo, hi, ovf in [
        (m, 3, m - 2, m, False),          # -1 * 3 = -3: fits
        (s, m, s, 0, True),               # INT_MIN * -1 = 2^(n-1): does not fit
        (s >> 1, 2, s, 0, True),          # 2^(n-2) * 2 = 2^(n-1): does not fit
        (s | (s >> 1), 2, s, m, False),   # -2^(n-2) * 2 = -2^(n-1): fits
        (7, 6, 42, 0, False),
    ]:
        out = run_hlt(f"imul {b}", bits, regs={"rax": x, "rbx": y})
        assert out.rax == lo and out.rdx == hi, (hex(x), hex(y))
        assert status(out) & (CF | OF) == (CF | OF if ovf else 0), (hex(x), hex(y))
    out = run_hlt("imul bl", bits, regs={"rax": 0xFE, "rbx": 3})     # -2 * 3 = -6 in AX
    assert out.rax == 0xFFFA and status(out) & (CF | OF) == 0
    out = run_hlt("imul bl", bits, regs={"rax": 0x40, "rbx": 2})     # 128: overflows 8 bits
    assert out.rax == 0x0080 and status(out) & (CF | OF) == CF | OF


@pytest.mark.parametrize("bits", ALL_MODES)
def test_imul_two_and_three_operands(bits):
    a, b, c, p = R(bits, "a"), R(bits, "b"), R(bits, "c"), PTR(bits)
    m, s = M(bits), S(bits)
    src = (f"imul {a}, {b}\n"                 # 0F AF
           f"imul {c}, {p} ptr [{DATA}], -3\n"  # 6B ib
           f"imul {R(bits, 'd')}, {b}, 0x1001\n")   # 69 iw/id
    out = run_hlt(src, bits, regs={"rax": 0x100, "rbx": 0x10, "rcx": UP(bits), "rdx": UP(bits)},
                  data={DATA: (5).to_bytes(8, "little")})
    assert out.rax == 0x1000
    assert out.rcx == merge(bits, UP(bits), m - 14)       # 5 * -3 = -15
    assert out.rdx == merge(bits, UP(bits), 0x10010)
    # CF = OF = 1 exactly when the signed product does not fit the destination
    for x, y, ovf in [(s >> 1, 2, True), (s | (s >> 1), 2, False), (m, m, False), (s, m, True),
                      (s, 1, False), (s - 1, 1, False), (s - 1, 2, True)]:
        out = run_hlt(f"imul {a}, {b}", bits, regs={"rax": x, "rbx": y}, rflags=0x2)
        assert out.rax == (x * y) & m
        assert status(out) & (CF | OF) == (CF | OF if ovf else 0), (hex(x), hex(y))
    # IMUL r, r/m, 2: INT_MIN * 2 and (2^(n-2)) * 2 overflow, -1 * 2 does not
    for x, ovf in [(s, True), (s >> 1, True), (s - 1, True), (m, False), (s | (s >> 1), False), (1, False)]:
        out = run_hlt(f"imul {a}, {b}, 2", bits, regs={"rbx": x}, rflags=0x2)
        assert out.rax == (x * 2) & m
        assert status(out) & (CF | OF) == (CF | OF if ovf else 0), hex(x)


def test_imul_64_three_operand_imm32_sign_extended():
    out = run_hlt("imul rax, rbx, -0x10000000", 64, regs={"rbx": 0x10})
    assert out.rax == (0x10 * -0x10000000) & FULL and status(out) & (CF | OF) == 0
    out = run_hlt("imul rax, rbx, 0x7fffffff", 64, regs={"rbx": 0x1_0000_0001})     # fits
    assert out.rax == 0x7FFFFFFF_7FFFFFFF and status(out) & (CF | OF) == 0
    out = run_hlt("imul rax, rbx, 0x7fffffff", 64, regs={"rbx": 1 << 33})           # 2^64 - 2^33
    assert out.rax == 0xFFFFFFFE_00000000 and status(out) & (CF | OF) == CF | OF


# ============================================================================
# DIV IDIV
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_div_idiv_values(bits):
    b = R(bits, "b")
    m, s = M(bits), S(bits)
    out = run_hlt(f"div {b}", bits, regs={"rax": 100, "rdx": 0, "rbx": 7})
    assert (out.rax, out.rdx) == (14, 2)
    out = run_hlt(f"div {b}", bits, regs={"rax": 0, "rdx": 1, "rbx": 2})    # 2^n / 2
    assert (out.rax, out.rdx) == (s, 0)
    out = run_hlt(f"div {b}", bits, regs={"rax": m, "rdx": m - 1, "rbx": m})   # largest quotient
    assert (out.rax, out.rdx) == (m, m - 1)
    out = run_hlt(f"idiv {b}", bits, regs={"rax": m - 6, "rdx": m, "rbx": 4})  # -7 / 4
    assert (out.rax, out.rdx) == (m, m - 2)                                   # -1 rem -3: toward zero
    out = run_hlt(f"idiv {b}", bits, regs={"rax": 7, "rdx": 0, "rbx": m - 1})  # 7 / -2
    assert (out.rax, out.rdx) == (m - 2, 1)                                   # -3 rem 1
    out = run_hlt(f"idiv {b}", bits, regs={"rax": s, "rdx": m, "rbx": 1})     # INT_MIN / 1
    assert (out.rax, out.rdx) == (s, 0)
    out = run_hlt(f"idiv {PTR(bits)} ptr [{DATA}]", bits, regs={"rax": s, "rdx": m},
                  data={DATA: (2).to_bytes(8, "little")})                     # INT_MIN / 2
    assert (out.rax, out.rdx) == (s | (s >> 1), 0)                          # -2^(n-2)
    out = run_hlt("div bl", bits, regs={"rax": 0x1234, "rbx": 0x40, "rdx": 5})
    assert out.rax == 0x3448 and out.rdx == 5                                 # AH=rem 0x34, AL=0x48
    out = run_hlt("idiv bl", bits, regs={"rax": 0xFF81, "rbx": 0x02})          # -127 / 2
    assert out.rax == 0xFFC1                                                  # AL=-63, AH=-1


DE_CASES = {
    # name: (instruction, rax, rdx, rbx)
    "div_by_zero": ("div {b}", 5, 0, 0),
    "div_quotient_overflow": ("div {b}", 0, 2, 2),            # 2^(n+1) / 2 = 2^n
    "div_rdx_equal_divisor": ("div {b}", 0, 7, 7),
    "idiv_by_zero": ("idiv {b}", 5, 0, 0),
    "idiv_min_by_minus_one": ("idiv {b}", "S", "M", "M"),     # INT_MIN / -1 = 2^(n-1)
    "idiv_positive_overflow": ("idiv {b}", "S", 0, 1),        # 2^(n-1) / 1
    "idiv_negative_overflow": ("idiv {b}", "S-1", "M", 1),    # -(2^(n-1)) - 1 ... / 1
    "div8_by_zero": ("div bl", 0x1234, 0, 0x100),
    "div8_overflow": ("div bl", 0x1234, 0, 0x12),
    "idiv8_min_by_minus_one": ("idiv bl", 0xFF80, 0, 0xFF),
    "idiv8_overflow": ("idiv bl", 0x8000, 0, 0xFF),
}


@pytest.mark.parametrize("bits", ALL_MODES)
@pytest.mark.parametrize("case", list(DE_CASES))
def test_divide_error(bits, case):
    """#DE (vector 0) on a zero divisor or a quotient too large for the
    destination; the registers are left as they were and RIP points at the
    divide (a fault, SDM Vol. 3 6.15 "Interrupt 0")."""
    insn, x, y, z = DE_CASES[case]
    sym = {"S": S(bits), "M": M(bits), "S-1": S(bits) - 1}
    x, y, z = (sym.get(v, v) if isinstance(v, str) else v for v in (x, y, z))
    regs = {"rax": x, "rdx": y, "rbx": z, "rcx": 0x1234}
    out = run(f"mov ecx, 0x1234\n{insn.format(b=R(bits, 'b'))}\nmov ecx, 1", bits, regs=regs,
              rflags=0x2 | CF | ZF)
    e = exc(out, 0)
    assert e.exception == "#DE"
    assert e.error_code is None
    len_mov = 5 if bits != 16 else 6
    assert e.guest_rip == 0x1000 + len_mov
    assert (out.rax, out.rdx, out.rbx, out.rcx) == (x, y, z, 0x1234)
    assert out.rflags & STATUS == CF | ZF


def test_idiv_128bit_dividend_overflow():
    """RDX:RAX = -2^127 divided by -1, and 2^64 divided by 1: both #DE."""
    out = run("idiv rbx", 64, regs={"rax": 0, "rdx": 1 << 63, "rbx": FULL})
    exc(out, 0)
    out = run("idiv rbx", 64, regs={"rax": 0, "rdx": 1, "rbx": 1})
    exc(out, 0)
    out = run("div rbx", 64, regs={"rax": 0, "rdx": 1, "rbx": 1})
    exc(out, 0)
    out = run_hlt("div rbx", 64, regs={"rax": 5, "rdx": 1, "rbx": 2})    # (2^64 + 5) / 2
    assert (out.rax, out.rdx) == ((1 << 63) + 2, 1)


# ============================================================================
# CLC STC CMC CLD STD CLI STI
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_flag_instructions(bits):
    other = PF | ZF | SF | OF | AF
    steps = [("stc", CF, CF), ("clc", CF, 0), ("cmc", CF, CF), ("cmc", CF, 0),
             ("std", DF, DF), ("cld", DF, 0), ("sti", IF, IF), ("cli", IF, 0)]
    for fin in (0x2, 0x2 | other):
        src = ""
        for insn, bit, want in steps:
            src += f"{insn}\npushf\n"
        out = run_hlt(src, bits, rflags=fin)
        w = WIDTH[bits]                                   # PUSHF pushes the operand size
        for k, (insn, bit, want) in enumerate(steps):
            f = int.from_bytes(out.vm.read(0x8000 - w * (k + 1), w), "little")
            assert f & bit == want, (insn, k)
            assert f & other == fin & other, insn        # the status flags stay
        assert out.rflags & (CF | DF | IF) == 0


def test_sti_real_mode():
    out = run_hlt("sti", 16, rflags=0x2)
    assert out.rflags & IF


# ============================================================================
# CBW CWDE CDQE, CWD CDQ CQO
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_convert(bits):
    cases = [
        ("cbw", {"rax": 0x1234_5680}, "rax", 0x1234_FF80),
        ("cbw", {"rax": 0x1234_567F}, "rax", 0x1234_007F),
        ("cwde", {"rax": 0x1234_8000}, "rax", 0xFFFF_8000),
        ("cwde", {"rax": 0x1234_7000}, "rax", 0x0000_7000),
        ("cwd", {"rax": 0x8000, "rdx": 0x1234_5678}, "rdx", 0x1234_FFFF),
        ("cwd", {"rax": 0x7FFF, "rdx": 0x1234_5678}, "rdx", 0x1234_0000),
        ("cdq", {"rax": 0x8000_0000, "rdx": 5}, "rdx", 0xFFFF_FFFF),
        ("cdq", {"rax": 0x7FFF_FFFF, "rdx": 5}, "rdx", 0),
    ]
    if bits == 64:
        cases += [
            ("cdqe", {"rax": 0x1234_5678_8000_0000}, "rax", 0xFFFF_FFFF_8000_0000),
            ("cdqe", {"rax": 0xFFFF_FFFF_7000_0000}, "rax", 0x7000_0000),
            ("cqo", {"rax": 1 << 63, "rdx": 5}, "rdx", FULL),
            ("cqo", {"rax": (1 << 63) - 1, "rdx": 5}, "rdx", 0),
            ("cdq", {"rax": 0x8000_0000, "rdx": FULL}, "rdx", 0xFFFF_FFFF),
        ]
    for insn, regs, reg, want in cases:
        code = asm_bytes(insn, bits)
        assert code[-1] in (0x98, 0x99)
        out = run_hlt(insn, bits, regs=regs, rflags=0x2 | STATUS)
        got = getattr(out, reg)
        if bits != 64 and insn in ("cwde", "cdq"):
            got = lo32(got)                 # 32-bit writes outside 64-bit mode
        assert got == want, (insn, regs)
        assert out.rflags & STATUS == STATUS


# ============================================================================
# Undefined opcodes
# ============================================================================

UD_BYTES = {
    "ud2": "0x0f, 0x0b",
    "ud1": "0x0f, 0xb9, 0xc0",
    "ud0": "0x0f, 0xff, 0xc0",
    # 0F 38 50 and 0F 3A 7F exist only VEX-encoded (SDM Vol. 2 Tables A-4
    # and A-5): blank in the legacy maps.  0F 38 FF is blank too.
    "0f38": "0x0f, 0x38, 0x50, 0xc0",
    "0f38ff": "0x0f, 0x38, 0xff, 0xc0",
    "0f3a": "0x0f, 0x3a, 0x7f, 0xc0, 0x00",
}


@pytest.mark.parametrize("bits", ALL_MODES)
@pytest.mark.parametrize("name", list(UD_BYTES))
def test_undefined_opcode(bits, name):
    out = run(f"mov eax, 1\n.byte {UD_BYTES[name]}\nmov eax, 2", bits, rflags=0x2 | CF)
    e = exc(out, 6)
    assert e.exception == "#UD" and e.error_code is None
    assert e.guest_rip == 0x1000 + (6 if bits == 16 else 5)
    assert out.rax == 1 and out.rflags & STATUS == CF


@pytest.mark.parametrize("opcode", [0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, 0x27, 0x2F, 0x37, 0x3F,
                                    0x60, 0x61, 0xD4, 0xD5, 0xCE])
def test_opcodes_invalid_in_64bit_mode(opcode):
    """Opcodes marked i64 in SDM Vol. 2 Table A-2 (PUSH/POP ES CS SS DS, DAA
    DAS AAA AAS, PUSHA POPA, AAM AAD, INTO) are #UD in 64-bit mode."""
    out = run(f".byte {opcode:#x}, 0x0a", 64)
    e = exc(out, 6)
    assert e.guest_rip == 0x1000


# ============================================================================
# Byte registers: AH CH DH BH without REX, SPL BPL SIL DIL with REX
# ============================================================================

def test_high_byte_registers_16bit():
    out = run_hlt("mov ah, 0x12\nmov ch, 0x34\nmov dh, 0x56\nmov bh, 0x78\nadd ah, bh\nmov al, ch", 16,
                  regs={"rax": UPPER | 0xFFFF, "rbx": UPPER, "rcx": 0xFF, "rdx": 0})
    assert out.rax == UPPER | 0x8A34
    assert out.rbx == UPPER | 0x7800 and out.rcx == 0x34FF and out.rdx == 0x5600


def test_rex_byte_registers_64bit():
    # Without REX, ModRM register 4..7 is AH CH DH BH; any REX turns them into
    # SPL BPL SIL DIL (SDM Vol. 2 3.7.2.1 / Table 3-1).
    out = run_hlt(".byte 0x88, 0xe0\n"          # mov al, ah
                  ".byte 0x40, 0x88, 0xe0\n"    # mov al, spl
                  ".byte 0x40, 0x88, 0xf9\n"    # mov cl, dil
                  ".byte 0x88, 0xf9\n"          # mov cl, bh ... then dil below
                  "mov sil, 0x11\nmov bpl, 0x22\nmov spl, 0x33\nmov dil, 0x44\n"
                  "mov ah, 0x55\nmov r8b, dil\nmov r15b, 0x66", 64,
                  regs={"rax": 0xAABB, "rsp": 0x8010, "rdi": 0x1000_0077, "rbx": 0x9900,
                        "rsi": FULL, "rbp": FULL, "r8": 0, "r15": FULL})
    assert out.rcx == 0x99                       # mov cl, bh overwrote mov cl, dil
    assert out.rax & 0xFF == 0x10                # al = spl (0x10) after al = ah (0xAA)
    assert out.rax >> 8 == 0x55
    assert out.rsi == FULL & ~0xFF | 0x11
    assert out.rbp == FULL & ~0xFF | 0x22
    assert out.rsp == 0x8033
    assert out.rdi == 0x1000_0044
    assert out.r8 == 0x44 and out.r15 == FULL & ~0xFF | 0x66


def test_rex_byte_register_in_alu_and_modrm_rm():
    out = run_hlt("add sil, dil\nsub spl, bpl\n.byte 0x40, 0x00, 0xe7\n"    # add dil, spl
                  ".byte 0x00, 0xe7", 64,                                  # add bh, ah
                  regs={"rsi": 0x10, "rdi": 0x01, "rsp": 0x8005, "rbp": 0x03, "rax": 0x0200, "rbx": 0x0300})
    assert out.rsi == 0x11 and out.rsp == 0x8002 and out.rdi == 0x03 and out.rbx == 0x0500


# ============================================================================
# Operand-size and address-size prefixes
# ============================================================================

def test_operand_size_prefix_16bit_mode():
    out = run_hlt("mov eax, 0x12345678\nadd eax, 0x11111111\nmov ebx, eax\nshr ebx, 16\n"
                  "mov dword ptr [0x3000], eax", 16)
    assert asm_bytes("mov eax, 0x12345678", 16)[0] == 0x66
    assert lo32(out.rax) == 0x23456789 and lo32(out.rbx) == 0x2345
    assert out.vm.read(DATA, 4) == (0x23456789).to_bytes(4, "little")


@pytest.mark.parametrize("bits", [32, 64])
def test_operand_size_prefix_32_64(bits):
    out = run_hlt("mov ax, 0x1234\nadd ax, 0xffff\nmov word ptr [0x3000], ax", bits,
                  regs={"rax": 0xAAAA_0000})
    assert out.rax == 0xAAAA_1233 and status(out) & CF
    assert out.vm.read(DATA, 4) == b"\x33\x12\x00\x00"


def test_address_size_prefix_16bit_mode():
    """67 in real mode: 32-bit addressing ([eax+ebx*4], SIB)."""
    out = run_hlt("mov cx, word ptr [eax+ebx*4+0x10]\nlea edx, [eax+ebx*8]", 16,
                  regs={"rax": 0x2000, "rbx": 0x0400}, data={0x3010: b"\xcd\xab"})
    assert asm_bytes("mov cx, word ptr [eax+ebx*4+0x10]", 16)[0] == 0x67
    assert out.rcx & 0xFFFF == 0xABCD and out.rdx & 0xFFFF == 0x4000


def test_address_size_prefix_32bit_mode():
    """67 in protected mode: 16-bit addressing ([bx+si]), offsets wrap at 64 KiB."""
    out = run_hlt("mov ecx, dword ptr [bx+si]\nmov edx, dword ptr [bx+di+0x10]", 32,
                  regs={"rbx": 0x1_2000, "rsi": 0x1000, "rdi": 0xFFFF},
                  data={0x3000: (0x11223344).to_bytes(4, "little"), 0x200F: (0x55667788).to_bytes(4, "little")})
    assert out.rcx == 0x11223344
    assert out.rdx == 0x55667788                # 0x2000 + 0xffff + 0x10 wraps to 0x200f


def test_address_size_prefix_64bit_mode():
    out = run_hlt("mov ecx, dword ptr [ebx]\nlea rdx, [ebx+esi]", 64,
                  regs={"rbx": 0xFFFF_FFFF_0000_3000, "rsi": 0xFFFF_F000},
                  data={0x3000: (0x0BADCAFE).to_bytes(4, "little")})
    assert out.rcx == 0x0BADCAFE           # [ebx]: 0x3000, the upper half of rbx ignored
    assert out.rdx == 0x2000               # 0x3000 + 0xfffff000 wraps at 32 bits


def test_16bit_addressing_bp_defaults_to_ss():
    """BP-based 16-bit addressing defaults to SS (SDM Vol. 1 3.7.4, Vol. 2
    Table 2-1); a DS override takes it back."""
    out = run_hlt("mov ax, 0x400\nmov ss, ax\nmov bp, 0x10\nmov di, 0x2\nmov cx, word ptr [bp+di]\n"
                  "mov dx, word ptr [bp]\nmov si, word ptr ds:[bp+0x10]", 16,
                  data={0x4012: b"\x34\x12", 0x4010: b"\x78\x56", 0x20: b"\xbc\x9a", 0x4020: b"\x11\x11"})
    assert out.rcx & 0xFFFF == 0x1234
    assert out.rdx & 0xFFFF == 0x5678
    assert out.rsi & 0xFFFF == 0x9ABC
