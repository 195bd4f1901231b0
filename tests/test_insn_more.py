"""Exact-value tests of the instructions gcc-built freestanding code needs
beyond the basic set: LEAVE ENTER, PUSHA POPA, PUSH/POP of segment
registers, BSWAP, LAHF SAHF, the hint NOPs 0F 18-0F 1F, and the corners of
BT* BSF BSR CMPXCHG CMOVcc SETcc and the rotates that the Unicorn
differential test (test_insn_bitops_unicorn.py) leaves out, each in every mode
where it is valid.

Expected values are worked out by hand from the SDM Vol. 2 instruction
pages; flags the SDM leaves undefined are not asserted.
"""

import pytest

import vtx
from insn_harness import AF, CF, OF, PF, SF, STATUS, ZF, run, run_hlt
from insn_harness import ALL_MODES, PTR, R, WIDTH

DATA = 0x3000
UPPER = 0xA5A5A5A5_00000000


def exc(out, vector):
    assert isinstance(out.exit, vtx.ExceptionExit), f"expected vector {vector}, got {out.exit!r}"
    assert out.exit.vector == vector, f"expected vector {vector}, got {out.exit!r}"
    return out.exit


def rd(out, addr, size):
    return int.from_bytes(out.vm.read(addr, size), "little")


def words(values, size):
    return b"".join(v.to_bytes(size, "little") for v in values)


# ============================================================================
# LEAVE
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_leave(bits):
    w = WIDTH[bits]
    saved = 0x1122334455667788 & ((1 << (8 * w)) - 1)
    out = run_hlt("leave", bits, regs={"rbp": 0x7000, "rsp": 0x1234},
                  data={0x7000: saved.to_bytes(w, "little")})
    assert out.rbp == saved
    assert out.rsp == 0x7000 + w
    assert out.vm.read(0x1000, 1) == b"\xc9"


def test_leave_16bit_operand_in_64bit_mode():
    # 66 C9: SP := BP by the stack-address size (64), then a 16-bit pop into BP
    out = run_hlt(".byte 0x66, 0xc9", 64, regs={"rbp": 0x7000, "rsp": 0x10},
                  data={0x7000: b"\x34\x12\xff\xff"})
    assert out.rsp == 0x7002
    assert out.rbp == 0x1234


def test_leave_with_a_16bit_stack_in_protected_mode():
    """SS.B = 0: SP := BP keeps ESP[31:16]; POP EBP is still 32 bits."""
    def small_stack(vm, v):
        v.ss = vtx.Segment(0x10, 0, 0xFFFFF, 0x0093)
    out = run_hlt("leave", 32, regs={"rbp": 0x0009_7000, "rsp": 0x0003_0010}, setup=small_stack,
                  data={0x7000: b"\x78\x56\x34\x12"})
    assert out.rsp == 0x0003_7004
    assert out.rbp == 0x12345678


def test_leave_fault_changes_nothing():
    # real mode: BP = 0xFFFF, a 2-byte read there crosses the SS limit: #SS(0)
    out = run("leave", 16, regs={"rbp": 0xFFFF, "rsp": 0x100})
    e = exc(out, 12)
    assert e.error_code is None              # real mode: no error code is delivered
    assert out.rsp == 0x100 and out.rbp == 0xFFFF


# ============================================================================
# ENTER
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_enter_level_0(bits):
    w = WIDTH[bits]
    out = run_hlt("enter 0x20, 0", bits, regs={"rbp": 0x6543, "rsp": 0x8000})
    assert rd(out, 0x8000 - w, w) == 0x6543
    assert out.rbp == 0x8000 - w
    assert out.rsp == 0x8000 - w - 0x20


@pytest.mark.parametrize("bits", ALL_MODES)
def test_enter_level_1(bits):
    w = WIDTH[bits]
    out = run_hlt("enter 8, 1", bits, regs={"rbp": 0x6543, "rsp": 0x8000})
    assert rd(out, 0x8000 - w, w) == 0x6543          # the caller's frame pointer
    assert rd(out, 0x8000 - 2 * w, w) == 0x8000 - w  # the new frame pointer
    assert out.rbp == 0x8000 - w
    assert out.rsp == 0x8000 - 2 * w - 8


@pytest.mark.parametrize("bits", ALL_MODES)
def test_enter_level_3(bits):
    """Level 3: after the frame pointer, two pointers copied from the
    enclosing frame ([BP - w], [BP - 2w]), then the new frame pointer."""
    w = WIDTH[bits]
    outer = [0x1111, 0x2222]
    out = run_hlt("enter 0x10, 3", bits, regs={"rbp": 0x7000, "rsp": 0x8000},
                  data={0x7000 - 2 * w: words([outer[1], outer[0]], w)})
    assert [rd(out, 0x8000 - k * w, w) for k in (1, 2, 3, 4)] == [0x7000, 0x1111, 0x2222, 0x8000 - w]
    assert out.rbp == 0x8000 - w
    assert out.rsp == 0x8000 - 4 * w - 0x10
    # the enclosing frame was only read
    assert rd(out, 0x7000 - 2 * w, 2 * w) == int.from_bytes(words([outer[1], outer[0]], w), "little")


def test_enter_level_taken_modulo_32():
    # level 33 is level 1
    out = run_hlt("enter 0, 33", 32, regs={"rbp": 0x6543, "rsp": 0x8000})
    assert out.rbp == 0x7FFC and out.rsp == 0x7FF8 and rd(out, 0x7FF8, 4) == 0x7FFC


def test_enter_16bit_operand_in_32bit_mode():
    # 66 C8: pushes of 2 bytes, BP := FrameTemp (EBP[31:16] kept)
    # the copy comes from [EBP - 2]: the whole EBP, as the stack is 32-bit
    out = run_hlt(".byte 0x66, 0xc8, 4, 0, 2", 32, regs={"rbp": 0x0005_7000, "rsp": 0x8000},
                  data={0x5_6FFE: b"\xcd\xab"})
    assert rd(out, 0x7FFE, 2) == 0x7000
    assert rd(out, 0x7FFC, 2) == 0xABCD
    assert rd(out, 0x7FFA, 2) == 0x7FFE
    assert out.rbp == 0x0005_7FFE
    assert out.rsp == 0x7FFA - 4


def test_enter_64bit_level_2_and_alloc():
    out = run_hlt("enter 0x1000, 2", 64, regs={"rbp": 0x7000, "rsp": 0x9000},
                  data={0x6FF8: (0xDEADBEEF_CAFEF00D).to_bytes(8, "little")})
    assert rd(out, 0x8FF8, 8) == 0x7000
    assert rd(out, 0x8FF0, 8) == 0xDEADBEEF_CAFEF00D
    assert rd(out, 0x8FE8, 8) == 0x8FF8
    assert out.rbp == 0x8FF8 and out.rsp == 0x8FE8 - 0x1000


def test_enter_fault_in_nested_read_changes_nothing():
    """Real mode, level 2: the copy from [BP - 2] = [0xFFFF] crosses the SS
    limit (#SS(0)) before anything is written."""
    out = run("enter 8, 2", 16, regs={"rbp": 0x0001, "rsp": 0x0010},
              data={0x0A: b"\x5a" * 6})
    e = exc(out, 12)
    assert e.error_code is None
    assert out.rsp == 0x0010 and out.rbp == 0x0001
    assert out.vm.read(0x0A, 6) == b"\x5a" * 6


# ============================================================================
# PUSHA POPA
# ============================================================================

REGS8 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"]


@pytest.mark.parametrize("bits,osz", [(16, 2), (16, 4), (32, 4), (32, 2)])
def test_pusha(bits, osz):
    vals = {r: 0x11111111 * (i + 1) for i, r in enumerate(REGS8)}
    vals["rsp"] = 0x8000
    insn = {2: "pushaw", 4: "pushad"}[osz]
    out = run_hlt(insn, bits, regs=vals)
    m = (1 << (8 * osz)) - 1
    stored = [rd(out, 0x8000 - osz * (i + 1), osz) for i in range(8)]
    assert stored == [vals[r] & m for r in REGS8]      # ESP slot: the value before the first push
    assert out.rsp == 0x8000 - 8 * osz
    for r in REGS8:
        if r != "rsp":
            assert getattr(out, r) == vals[r]


@pytest.mark.parametrize("bits,osz", [(16, 2), (16, 4), (32, 4), (32, 2)])
def test_popa(bits, osz):
    # memory from low to high: DI SI BP (skipped SP) BX DX CX AX
    mem = [0xD1D1D1D1, 0x51515151, 0xB9B9B9B9, 0xEEEEEEEE, 0xB1B1B1B1, 0xD2D2D2D2, 0xC1C1C1C1, 0xA1A1A1A1]
    m = (1 << (8 * osz)) - 1
    start = 0x8000 - 8 * osz
    init = 0x0F0F0F0F_0F0F0F0F if bits == 16 else 0x0F0F0F0F
    regs = {r: init for r in REGS8}
    regs["rsp"] = start
    out = run_hlt({2: "popaw", 4: "popad"}[osz], bits, regs=regs,
                  data={start: words([v & m for v in mem], osz)})
    order = ["rdi", "rsi", "rbp", None, "rbx", "rdx", "rcx", "rax"]
    for r, v in zip(order, mem):
        if r:
            if osz == 2:
                assert getattr(out, r) == (init & ~m) | (v & m), r
            else:                   # bits 63:32 are undefined outside 64-bit mode
                assert getattr(out, r) & 0xFFFFFFFF == v, r
    assert out.rsp == 0x8000


def test_pusha_popa_round_trip_32():
    out = run_hlt("pushad\nxor eax, eax\nmov ebx, eax\nmov ecx, eax\nmov edx, eax\n"
                  "mov esi, eax\nmov edi, eax\nmov ebp, eax\npopad", 32,
                  regs={"rax": 1, "rbx": 2, "rcx": 3, "rdx": 4, "rsi": 5, "rdi": 6, "rbp": 7, "rsp": 0x8000})
    assert [out.rax, out.rbx, out.rcx, out.rdx, out.rsi, out.rdi, out.rbp, out.rsp] == \
        [1, 2, 3, 4, 5, 6, 7, 0x8000]


def test_pusha_fault_writes_nothing():
    # real mode, SP = 3: the first slot is [1, 2], the second [0xFFFF, 0x10000]
    # straddles the top of the segment: #SS before any slot is written.
    out = run("pusha", 16, regs={"rsp": 0x0003}, data={0x0000: b"\x77" * 4})
    exc(out, 12)
    assert out.rsp == 0x0003
    assert out.vm.read(0x0000, 4) == b"\x77" * 4


# ============================================================================
# PUSH / POP segment registers
# ============================================================================

def test_push_pop_sreg_real_mode():
    src = ("mov ax, 0x1234\nmov es, ax\n"
           "push es\npop fs\n"            # FS = 0x1234, base 0x12340
           "push cs\npush ss\npush ds\n"
           "mov ax, 0x0042\npush ax\npop gs\n"
           "push gs\npop ds\n"
           "push fs\npop es\n")
    out = run_hlt(src, 16, regs={"rsp": 0x8000})
    assert out.fs.selector == 0x1234 and out.fs.base == 0x12340
    assert out.gs.selector == 0x42 and out.gs.base == 0x420
    assert out.ds.selector == 0x42 and out.ds.base == 0x420
    assert out.es.selector == 0x1234
    assert rd(out, 0x7FFE, 2) == 0x0000      # CS
    assert rd(out, 0x7FFC, 2) == 0x0000      # SS
    assert rd(out, 0x7FFA, 2) == 0x0000      # DS
    assert out.rsp == 0x7FFA


def test_pop_ss_real_mode():
    out = run_hlt("push 0x0100\npop ss", 16, regs={"rsp": 0x8000})
    assert out.ss.selector == 0x100 and out.ss.base == 0x1000
    assert out.rsp == 0x8000


@pytest.mark.parametrize("sreg", ["es", "cs", "ss", "ds", "fs", "gs"])
def test_push_sreg_32bit_writes_only_the_selector(sreg):
    """With a 32-bit operand ESP moves by 4, but recent Intel processors write
    only the 16-bit selector (SDM Vol. 2 PUSH); the upper half of the slot
    keeps its bytes."""
    out = run_hlt(f"push {sreg}", 32, regs={"rsp": 0x8000}, data={0x7FFC: b"\xaa\xbb\xcc\xdd"})
    sel = {"cs": 0x08}.get(sreg, 0x10)
    assert out.rsp == 0x7FFC
    assert out.vm.read(0x7FFC, 4) == sel.to_bytes(2, "little") + b"\xcc\xdd"


def test_push_sreg_16bit_operand_32bit_mode():
    out = run_hlt(".byte 0x66, 0x1e\n.byte 0x66, 0x0f, 0xa0", 32, regs={"rsp": 0x8000})
    assert out.rsp == 0x7FFC and rd(out, 0x7FFC, 4) == 0x0010_0010


@pytest.mark.parametrize("sreg", ["es", "ds", "fs", "gs", "ss"])
def test_pop_sreg_32bit(sreg):
    # loads the flat data selector 0x10 through the GDT; a null selector for
    # the data segments (not SS: #GP)
    out = run_hlt(f"pop {sreg}", 32, regs={"rsp": 0x7FFC}, data={0x7FFC: b"\x10\x00\xee\xee"})
    s = getattr(out, sreg)
    assert s.selector == 0x10 and s.base == 0 and s.limit == 0xFFFFFFFF and not s.unusable
    assert out.rsp == 0x8000
    if sreg != "ss":
        out = run_hlt(f"pop {sreg}", 32, regs={"rsp": 0x7FFC}, data={0x7FFC: b"\x00\x00\xee\xee"})
        assert getattr(out, sreg).unusable and out.rsp == 0x8000


@pytest.mark.parametrize("sreg", ["ds", "ss", "gs"])
def test_pop_sreg_bad_selector_faults_without_pop(sreg):
    # 0x28 lies beyond the GDT limit (five descriptors): #GP(0x28), ESP kept
    out = run(f"pop {sreg}", 32, regs={"rsp": 0x7FFC}, data={0x7FFC: b"\x28\x00\x00\x00"})
    e = exc(out, 13)
    assert e.error_code == 0x28
    assert out.rsp == 0x7FFC
    assert getattr(out, sreg).selector == 0x10


def test_pop_ss_null_selector_is_gp_in_protected_mode():
    out = run("pop ss", 32, regs={"rsp": 0x7FFC}, data={0x7FFC: b"\x00\x00\x00\x00"})
    e = exc(out, 13)
    assert e.error_code == 0 and out.rsp == 0x7FFC


def test_push_pop_fs_gs_64bit():
    out = run_hlt("push fs\npush gs\npop fs\npushw gs\npopw gs", 64, regs={"rsp": 0x8000},
                  data={0x7FF0: b"\xaa" * 16})
    # push fs: RSP -= 8, only the selector written
    assert rd(out, 0x7FF8, 8) == 0xAAAAAAAA_AAAA0010
    assert out.rsp == 0x7FF8           # push, push, pop, pushw, popw
    assert out.fs.selector == 0x10 and out.gs.selector == 0x10


@pytest.mark.parametrize("opcode", [0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F])
def test_push_pop_legacy_sreg_invalid_in_64bit(opcode):
    out = run(f".byte {opcode:#x}", 64)
    exc(out, 6)


# ============================================================================
# BSWAP
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_bswap_32(bits):
    out = run_hlt("bswap eax\nbswap edi", bits, regs={"rax": UPPER | 0x11223344, "rdi": 0x80000001})
    if bits == 64:
        assert out.rax == 0x44332211        # a 32-bit write clears bits 63:32
    assert out.rax & 0xFFFFFFFF == 0x44332211
    assert out.rdi & 0xFFFFFFFF == 0x01000080


def test_bswap_64_and_rex_registers():
    out = run_hlt("bswap rax\nbswap r12\nbswap r9d", 64,
                  regs={"rax": 0x1122334455667788, "r12": 0x0102030405060708, "r9": 0xFFFFFFFF_AABBCCDD})
    assert out.rax == 0x8877665544332211
    assert out.r12 == 0x0807060504030201
    assert out.r9 == 0xDDCCBBAA


# ============================================================================
# LAHF SAHF
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_lahf(bits):
    for flags, ah in [(0x2, 0x02), (0x2 | STATUS, 0xD7), (0x2 | CF | ZF | OF, 0x43), (0x2 | SF | AF | PF, 0x96)]:
        out = run_hlt("lahf", bits, regs={"rax": UPPER | 0x5A5A}, rflags=flags)
        assert out.rax == UPPER | (ah << 8) | 0x5A, hex(flags)
        assert out.rflags & STATUS == flags & STATUS


@pytest.mark.parametrize("bits", ALL_MODES)
def test_sahf(bits):
    # AH = 0xFF: SF ZF AF PF CF set, OF kept, bits 1/3/5 keep their fixed values
    out = run_hlt("sahf", bits, regs={"rax": 0xFF00}, rflags=0x2)
    assert out.rflags & 0xFFF == 0x2 | SF | ZF | AF | PF | CF
    out = run_hlt("sahf", bits, regs={"rax": 0x0000}, rflags=0x2 | STATUS)
    assert out.rflags & 0xFFF == 0x2 | OF
    out = run_hlt("sahf\nlahf", bits, regs={"rax": 0x4100}, rflags=0x2)
    assert out.rflags & STATUS == ZF | CF and (out.rax >> 8) & 0xFF == 0x43


def test_cpuid_reports_lahf_sahf_in_64bit_mode():
    vm = vtx.VM(memory=1 << 20)
    v = vm.add_vcpu()
    assert v.model_cpuid(0x80000001, 0)[2] & 1


# ============================================================================
# Hint NOPs 0F 18-0F 1F
# ============================================================================

def hint_nops(bits):
    """Every hint-NOP opcode with every ModRM.reg, in register and memory
    forms (the memory forms address [BX+SI] in 16-bit mode, [rAX] elsewhere)."""
    out = []
    for op in range(0x18, 0x20):
        for reg in range(8):
            out.append(f".byte 0x0f, {op:#x}, {0xC0 | (reg << 3) | 1:#x}")
            out.append(f".byte 0x0f, {op:#x}, {(reg << 3):#x}")
    return out


@pytest.mark.parametrize("bits", ALL_MODES)
def test_hint_nops(bits):
    """No operand is accessed: the memory forms point outside guest memory
    (in 64-bit mode at a non-canonical address), which neither faults nor
    exits."""
    lines = hint_nops(bits) + ["prefetchnta [eax]" if bits != 16 else "prefetchnta [bx]",
                               "prefetcht0 [eax]" if bits != 16 else "prefetcht0 [bx]",
                               "endbr32" if bits != 64 else "endbr64",
                               "nop word ptr [eax+eax*1+0]" if bits != 16 else "nop word ptr [bx]"]
    addr = {16: 0x8000, 32: 0xFFFFF000, 64: 0x8000_0000_0000_0000}[bits]
    regs = {"rax": addr, "rbx": 0x8000, "rsi": 0x8000, "rcx": 0x5555}
    out = run_hlt("\n".join(lines), bits, regs=regs, rflags=0x2 | STATUS, memory=1 << 20)
    assert out.rflags & STATUS == STATUS
    assert out.rax == addr and out.rcx == 0x5555
    assert out.vcpu.instructions == len(lines)


@pytest.mark.parametrize("bits", [32, 64])
def test_hint_nop_with_disp32_and_rex(bits):
    src = ".byte 0x0f, 0x18, 0x05, 0x78, 0x56, 0x34, 0x12\n"   # prefetchnta [disp32 / rip+disp32]
    if bits == 64:
        src += ".byte 0x4d, 0x0f, 0x1e, 0x7c, 0x24, 0x10\n"    # REX.WRB 0F 1E /7 [r12+0x10]
    src += "mov ebx, 7"
    out = run_hlt(src, bits, regs={"rbx": 0})
    assert out.rbx == 7


# ============================================================================
# Corners of the bit instructions
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_bt_memory_bit_string_beyond_the_operand(bits):
    """A register bit offset addresses the bit string: BTS [m], reg with
    offset 77 sets bit 77 - that is byte m+9, bit 5 - whatever the operand
    size; a negative offset addresses bits below m."""
    bx, ptr = R(bits, "b"), PTR(bits)
    base = DATA + 0x40
    for off, byte, bit in [(77, 9, 5), (-1, -1, 7), (-9, -2, 7), (-70, -9, 2), (255, 31, 7)]:
        out = run_hlt(f"bts {ptr} ptr [{base:#x}], {bx}", bits, regs={"rbx": off & ((1 << 64) - 1)},
                      rflags=0x2 | CF, data={DATA: bytes(0x80)})
        mem = out.vm.read(DATA, 0x80)
        want = bytearray(0x80)
        want[0x40 + byte] = 1 << bit
        assert mem == bytes(want), off
        assert not out.rflags & CF, off
        # BT reads the same bit back; BTR clears it, BTC toggles it
        out = run_hlt(f"bt {ptr} ptr [{base:#x}], {bx}\nsetc cl\nbtr {ptr} ptr [{base:#x}], {bx}\n"
                      f"setc ch\nbtc {ptr} ptr [{base:#x}], {bx}\nbtc {ptr} ptr [{base:#x}], {bx}",
                      bits, regs={"rbx": off & ((1 << 64) - 1), "rcx": 0}, data={DATA: bytes(want)})
        assert out.rcx & 0xFFFF == 0x0101, off
        assert out.vm.read(DATA, 0x80) == bytes(0x80), off
        assert out.rflags & CF


def test_bt_16bit_offset_is_signed_16():
    # 16-bit operand: the offset register is a signed 16-bit value
    out = run_hlt(f"bts word ptr [{DATA + 0x40:#x}], bx", 32, regs={"rbx": 0x1234_FFF0},
                  data={DATA: bytes(0x80)})
    # -16 bits: the word at m - 2, bit 0
    assert rd(out, DATA + 0x3E, 2) == 1 and rd(out, DATA + 0x40, 2) == 0


@pytest.mark.parametrize("bits", ALL_MODES)
def test_bt_immediate_and_register_offsets_wrap(bits):
    a, ptr, w = R(bits, "a"), PTR(bits), 8 * WIDTH[bits]
    out = run_hlt(f"bts {a}, {w + 3}\nbtc {ptr} ptr [{DATA:#x}], {w + 1}", bits,
                  regs={"rax": 0}, data={DATA: bytes(16)})
    assert out.rax == 8
    assert rd(out, DATA, 16) == 2                # imm offsets never leave the operand


def test_bt_flags():
    out = run_hlt("bt eax, 3", 32, regs={"rax": 8}, rflags=0x2 | ZF)
    assert out.rflags & (CF | ZF) == CF | ZF     # ZF unchanged
    out = run_hlt("bt eax, 3", 32, regs={"rax": 0}, rflags=0x2 | CF)
    assert out.rflags & (CF | ZF) == 0


@pytest.mark.parametrize("bits", ALL_MODES)
def test_lock_bt_family(bits):
    out = run_hlt(f"lock bts dword ptr [{DATA}], 4\nlock btr dword ptr [{DATA}], 0\n"
                  f"lock btc dword ptr [{DATA}], ebx", bits, regs={"rbx": 9}, data={DATA: b"\x01\x00\x00\x00"})
    assert rd(out, DATA, 4) == 0x210
    for bad in (f"0xf0, 0x0f, 0xa3, 0x1e, {DATA & 0xFF}, {DATA >> 8}" if bits == 16 else
                f"0xf0, 0x0f, 0xa3, 0x1d, 0, 0x30, 0, 0",      # lock bt [DATA], ebx
                "0xf0, 0x0f, 0xab, 0xd8",                    # lock bts eax, ebx: register destination
                "0xf0, 0x0f, 0xba, 0xe8, 1"):                # lock bts eax, 1
        if bits == 64 and "0x1d" in bad:
            bad = "0xf0, 0x0f, 0xa3, 0x1c, 0x25, 0, 0x30, 0, 0"
        out = run(f".byte {bad}", bits, regs={"rbx": 0})
        exc(out, 6)


@pytest.mark.parametrize("bits", ALL_MODES)
def test_0fba_undefined_digits(bits):
    for digit in range(4):
        out = run(f".byte 0x0f, 0xba, {0xC0 | (digit << 3):#x}, 1", bits)
        exc(out, 6)


@pytest.mark.parametrize("bits", ALL_MODES)
def test_bsf_bsr(bits):
    a, b = R(bits, "a"), R(bits, "b")
    out = run_hlt(f"bsf {a}, {b}\nmov {R(bits, 'c')}, {a}\nbsr {a}, {b}", bits, regs={"rbx": 0x0810},
                  rflags=0x2 | ZF)
    assert out.rcx & 0xFFFF == 4 and out.rax & 0xFFFF == 11 and not out.rflags & ZF


@pytest.mark.parametrize("bits", ALL_MODES)
def test_bsf_bsr_zero_source_keeps_destination(bits):
    for op in ("bsf", "bsr"):
        for size, a, b in [(2, "ax", "bx"), (4, "eax", "ebx")] + ([(8, "rax", "rbx")] if bits == 64 else []):
            # the source is 0 in the operand's bits (only there, below 64)
            src = UPPER if size < 8 else 0
            out = run_hlt(f"{op} {a}, {b}", bits, regs={"rax": UPPER | 0x12345678, "rbx": src}, rflags=0x2)
            assert out.rflags & ZF
            assert out.rax & 0xFFFFFFFF == 0x12345678, (op, size)
            if bits == 64:
                # a 32-bit destination is written back (bits 63:32 cleared, as
                # Intel processors do); 16- and 64-bit ones keep every bit
                assert out.rax == (0x12345678 if size == 4 else UPPER | 0x12345678), (op, size)
    # a memory source of 0, and 0 only in the operand's bits
    out = run_hlt(f"bsr {R(bits, 'a')}, {PTR(bits)} ptr [{DATA}]", bits, regs={"rax": 77},
                  data={DATA: bytes(WIDTH[bits]) + b"\xff"})
    assert out.rax == 77 and out.rflags & ZF


def test_cmpxchg_32bit_upper_halves_in_64bit_mode():
    """Equal: the destination gets the source (zero-extended), RAX is not
    written.  Not equal: EAX gets the destination (zero-extended), a register
    destination is not written."""
    hi = 0xDEADBEEF_00000000
    out = run_hlt("cmpxchg ebx, ecx", 64, regs={"rax": hi | 5, "rbx": hi | 5, "rcx": hi | 9})
    assert out.rflags & ZF and out.rax == hi | 5 and out.rbx == 9
    out = run_hlt("cmpxchg ebx, ecx", 64, regs={"rax": hi | 5, "rbx": hi | 6, "rcx": hi | 9})
    assert not out.rflags & ZF and out.rax == 6 and out.rbx == hi | 6
    out = run_hlt(f"cmpxchg dword ptr [{DATA}], ecx", 64, regs={"rax": hi | 5, "rcx": 9},
                  data={DATA: b"\x05\0\0\0\x77"})
    assert out.rflags & ZF and out.rax == hi | 5 and out.vm.read(DATA, 5) == b"\x09\0\0\0\x77"
    out = run_hlt(f"cmpxchg dword ptr [{DATA}], ecx", 64, regs={"rax": hi | 5, "rcx": 9},
                  data={DATA: b"\x07\0\0\0\x77"})
    assert not out.rflags & ZF and out.rax == 7 and out.vm.read(DATA, 5) == b"\x07\0\0\0\x77"


@pytest.mark.parametrize("bits", ALL_MODES)
def test_cmpxchg_flags_and_byte_form(bits):
    out = run_hlt("cmpxchg bh, cl", bits, regs={"rax": 0x10, "rbx": 0x2000, "rcx": 0x33})
    # AL - BH = 0x10 - 0x20: CF SF, not equal: AL := 0x20
    assert out.rax & 0xFF == 0x20 and out.rbx == 0x2000
    assert out.rflags & (CF | ZF | SF | OF) == CF | SF
    out = run_hlt("cmpxchg bh, cl", bits, regs={"rax": 0x20, "rbx": 0x2000, "rcx": 0x33})
    assert out.rax & 0xFF == 0x20 and out.rbx == 0x3300 and out.rflags & ZF


@pytest.mark.parametrize("bits", ALL_MODES)
def test_xadd_same_register_and_memory(bits):
    a, ptr = R(bits, "a"), PTR(bits)
    out = run_hlt(f"xadd {a}, {a}", bits, regs={"rax": 0x21})
    assert out.rax & 0xFFFF == 0x42
    out = run_hlt(f"lock xadd {ptr} ptr [{DATA}], {R(bits, 'b')}", bits, regs={"rbx": 5},
                  data={DATA: b"\xff" * 8})
    w = WIDTH[bits]
    assert out.rbx & ((1 << (8 * w)) - 1) == (1 << (8 * w)) - 1
    assert rd(out, DATA, w) == 4 and out.rflags & CF


def test_cmov_false_condition_zero_extends_32bit_destination():
    out = run_hlt("cmp eax, eax\ncmovne ebx, ecx\ncmove esi, ecx", 64,
                  regs={"rax": 0, "rbx": UPPER | 1, "rcx": UPPER | 2, "rsi": UPPER | 3})
    assert out.rbx == 1 and out.rsi == 2
    out = run_hlt("cmp eax, eax\ncmovne bx, cx\ncmovne rdx, rcx", 64,
                  regs={"rax": 0, "rbx": UPPER | 1, "rcx": UPPER | 2, "rdx": UPPER | 4})
    assert out.rbx == UPPER | 1 and out.rdx == UPPER | 4


@pytest.mark.parametrize("bits", [16, 64])
def test_cmov_memory_source_read_even_when_false(bits):
    # the source is read whatever the condition: a read beyond the DS limit
    # (real mode) or at a non-canonical address (64-bit) faults
    addr = {16: "[0xffff]", 64: "[rbx]"}[bits]
    out = run(f"cmp eax, eax\ncmovne {R(bits, 'a')}, {PTR(bits)} ptr {addr}", bits,
              regs={"rax": 0, "rbx": 0x8000_0000_0000_0000})
    exc(out, 13)


@pytest.mark.parametrize("bits", ALL_MODES)
def test_setcc_registers_and_memory(bits):
    out = run_hlt(f"stc\nsetc ah\nsetnc bl\nsetb byte ptr [{DATA}]\nsetz byte ptr [{DATA + 1}]", bits,
                  regs={"rax": 0x5555, "rbx": 0xFF77}, rflags=0x2 | ZF, data={DATA: b"\xaa\xaa"})
    assert out.rax == 0x0155 and out.rbx == 0xFF00
    assert out.vm.read(DATA, 2) == b"\x01\x01"


def test_setcc_rex_byte_registers():
    out = run_hlt("stc\nsetc sil\nsetc r10b\nsetnc dil", 64,
                  regs={"rsi": 0xFF00, "r10": 0xFF00, "rdi": 0x12FF})
    assert out.rsi == 0xFF01 and out.r10 == 0xFF01 and out.rdi == 0x1200


@pytest.mark.parametrize("bits", ALL_MODES)
def test_rotates(bits):
    a = R(bits, "a")
    w = 8 * WIDTH[bits]
    m = (1 << w) - 1
    s = 1 << (w - 1)
    cases = [
        # insn, operand, CF in, result, CF/OF out (OF only for a count of 1)
        (f"rol {a}, 1", s | 1, 0, 3, CF | OF),              # OF = MSB(3) = 0 xor CF = 1
        (f"ror {a}, 1", 3, 0, s | 1, CF | OF),              # OF = MSB 1 xor MSB-1 0
        (f"rcl {a}, 1", s, CF, 1, CF | OF),                 # CF in at bit 0, MSB out
        (f"rcr {a}, 1", 1, CF, s, CF | OF),                 # OF = old MSB 0 xor CF 1
        (f"rcr {a}, 1", 2, 0, 1, 0),
        (f"rol {a}, 4", 0xF << (w - 4), 0, 0xF, CF),
        (f"ror {a}, 4", 0xF, 0, 0xF << (w - 4), CF),
        ("rol al, 8", 0x81, 0, 0x81, CF),                   # a whole turn still sets CF = LSB
        ("rcl al, 9", 0x81, CF, 0x81, CF),                  # 9 mod 9 = 0: CF kept
        ("rcr ax, 17", 0x1234, 0, 0x1234, 0),               # 17 mod 17 = 0
        # CF:AL = 1:A5 -> 1:4B -> 0:97 -> 1:2E
        ("rcl al, 3", 0xA5, CF, 0x2E, CF),
    ]
    for insn, x, fin, res, fl in cases:
        defined = CF | (OF if insn.endswith(", 1") else 0)
        keep = SF | ZF | PF | AF
        out = run_hlt(insn, bits, regs={"rax": x}, rflags=0x2 | fin | keep)
        size_mask = 0xFF if " al," in insn else (0xFFFF if " ax," in insn else m)
        assert out.rax & size_mask == res & size_mask, insn
        assert out.rflags & defined == fl & defined, insn
        assert out.rflags & keep == keep, insn           # never changed by rotates


def test_rotate_count_zero_32bit_register_zero_extends():
    out = run_hlt("rol ebx, cl\nshld esi, edi, 0", 64,
                  regs={"rbx": UPPER | 5, "rcx": 32, "rsi": UPPER | 6, "rdi": 0}, rflags=0x2 | STATUS)
    assert out.rbx == 5 and out.rsi == 6 and out.rflags & STATUS == STATUS


@pytest.mark.parametrize("bits", ALL_MODES)
def test_shld_shrd(bits):
    out = run_hlt("shld ax, bx, 4\nshrd dx, bx, 4", bits,
                  regs={"rax": 0x1234, "rbx": 0xABCD, "rdx": 0x1234})
    assert out.rax & 0xFFFF == 0x234A and out.rdx & 0xFFFF == 0xD123
    out = run_hlt("shld eax, ebx, cl", bits, regs={"rax": 0x80000001, "rbx": 0x40000000, "rcx": 1},
                  rflags=0x2)
    assert out.rax & 0xFFFFFFFF == 0x00000002 and out.rflags & (CF | OF | ZF) == CF | OF


@pytest.mark.parametrize("bits", ALL_MODES)
def test_f3_bsf_runs_as_bsf(bits):
    """F3 0F BC is TZCNT on processors with BMI1; the model does not report
    BMI1, so the prefix is ignored and the instruction is BSF, as on older
    processors (gcc emits it for __builtin_ctz)."""
    a, b = R(bits, "a"), R(bits, "b")
    out = run_hlt(f"rep bsf {a}, {b}", bits, regs={"rax": 0x77, "rbx": 0x40}, rflags=0x2 | ZF)
    assert out.rax == 6 and not out.rflags & ZF
    out = run_hlt(f"rep bsf {a}, {b}", bits, regs={"rax": 0x77, "rbx": 0}, rflags=0x2)
    assert out.rax == 0x77 and out.rflags & ZF
