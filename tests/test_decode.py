"""Decoder edge cases: legacy prefixes, REX, ModRM/SIB corner forms,
RIP-relative addressing, the 15-byte limit, instructions that cross a page
boundary, and the decode cache (self-modifying code, writes from Python,
mode changes)."""

import pytest

import vtx
from insn_harness import make_vm, run, run_hlt

ALL_MODES = [16, 32, 64]
DATA = 0x3000
FULL = (1 << 64) - 1


def exc(out, vector):
    assert isinstance(out.exit, vtx.ExceptionExit), f"expected vector {vector}, got {out.exit!r}"
    assert out.exit.vector == vector, f"expected vector {vector}, got {out.exit!r}"
    return out.exit


def data_seg(base, limit=0xFFFFFFFF, sel=0x10):
    """A flat-style writable data segment with the given base."""
    return vtx.Segment(sel, base, limit, 0xC093 if limit > 0xFFFFF else 0x93)


def with_segs(**segs):
    def setup(vm, vcpu):
        for name, seg in segs.items():
            setattr(vcpu, name, seg)
    return setup


def u32(v):
    return v.to_bytes(4, "little")


# ============================================================================
# Legacy prefixes
# ============================================================================

def test_segment_overrides_32bit():
    """26 2E 36 3E 64 65 select ES CS SS DS FS GS; the base is added to the
    offset and the sum wraps at 4 GiB (SDM Vol. 3 3.4)."""
    src = ("mov eax, es:[0x10]\nmov ebx, fs:[0x10]\nmov ecx, gs:[0x10]\nmov edx, ss:[0x10]\n"
           "mov esi, ds:[0x10]\nmov edi, cs:[0x1000]\nmov ebp, es:[0xfffff010]")
    code = vtx.asm(src, bits=32, org=0x1000)
    for seg, prefix in (("es", 0x26), ("fs", 0x64), ("gs", 0x65), ("ss", 0x36), ("cs", 0x2E)):
        assert vtx.asm(f"mov eax, {seg}:[0x10]", bits=32)[0] == prefix
    out = run_hlt(src, 32, setup=with_segs(es=data_seg(0x4000), fs=data_seg(0x5000), gs=data_seg(0x6000),
                                            ss=data_seg(0x7000), ds=data_seg(0x3000)),
                  data={0x4010: u32(0xE5), 0x5010: u32(0xF5), 0x6010: u32(0x65), 0x7010: u32(0x55),
                        0x3010: u32(0xD5)})
    assert (out.rax, out.rbx, out.rcx, out.rdx, out.rsi) == (0xE5, 0xF5, 0x65, 0x55, 0xD5)
    assert out.rdi == int.from_bytes(code[:4], "little")     # CS base 0: the code itself
    assert out.rbp == 0xD5                                  # 0x4000 + 0xfffff010 wraps to 0x3010


def test_segment_base_wraps_at_4gib():
    out = run_hlt("mov eax, es:[0xfffff010]", 32, setup=with_segs(es=data_seg(0x4000)),
                  data={0x3010: u32(0x12345678)})
    assert out.rax == 0x12345678


def test_segment_overrides_real_mode():
    out = run_hlt("mov ax, 0x300\nmov es, ax\nmov bx, es:[0x10]\nmov cx, ss:[0x10]\nmov dx, cs:[0x1000]", 16,
                  data={0x3010: b"\x22\x11", 0x10: b"\x44\x33"})
    assert out.rbx == 0x1122 and out.rcx == 0x3344
    assert out.rdx == 0x00B8                    # the first two code bytes: B8 00 (mov ax, 0x300)


def test_fs_gs_base_64bit():
    """In 64-bit mode FS and GS add their base; ES CS SS DS overrides are
    ignored and those bases are treated as 0 (SDM Vol. 1 3.3.7.1)."""
    setup = with_segs(fs=data_seg(0x4000), gs=data_seg(0x5000), es=data_seg(0x6000), ds=data_seg(0x7000))
    src = ("mov eax, fs:[0x10]\nmov rbx, gs:[rsi*8+0x8]\nmov ecx, es:[0x3010]\nmov edx, [0x3010]\n"
           "mov edi, fs:[ebp]\nmov dword ptr gs:[0x20], 0xabcd")
    out = run_hlt(src, 64, setup=setup, regs={"rsi": 1, "rbp": 0xFFFF_FFFF_0000_0018},
                  data={0x4010: u32(0xF5), 0x5010: (0x1122334455667788).to_bytes(8, "little"),
                        0x3010: u32(0x30), 0x6010: u32(0x60), 0x7010: u32(0x70), 0x4018: u32(0x18)})
    assert out.rax == 0xF5
    assert out.rbx == 0x1122334455667788
    assert out.rcx == 0x30 and out.rdx == 0x30
    assert out.rdi == 0x18                     # 67: [ebp] is 32-bit, then FS.base is added
    assert out.vm.read(0x5020, 4) == u32(0xABCD)


def test_non_canonical_address_faults():
    """A non-canonical linear address is #GP(0), or #SS(0) when the stack
    segment is used (SDM Vol. 3 6.15 "Interrupt 12", "Interrupt 13")."""
    e = exc(run("mov eax, [rbx]", 64, regs={"rbx": 0x0000_8000_0000_0000}), 13)
    assert e.error_code == 0
    e = exc(run("mov eax, [rbp+8]", 64, regs={"rbp": 0x0000_8000_0000_0000}), 12)
    assert e.error_code == 0
    # base + offset leaves the canonical range (VM entry wants the base itself canonical)
    e = exc(run("mov eax, gs:[0x20]", 64, setup=with_segs(gs=data_seg(0x0000_7FFF_FFFF_FFF0))), 13)
    assert e.guest_rip == 0x1000


def test_operand_size_prefix_repeated_and_rex_w_wins():
    out = run_hlt(".byte 0x66, 0x66, 0x66, 0xb8, 0x34, 0x12", 32, regs={"rax": 0xAAAA0000})   # mov ax, 0x1234
    assert out.rax == 0xAAAA1234
    out = run_hlt(".byte 0x66, 0x48, 0xb8\n.quad 0x1122334455667788", 64)       # REX.W beats 66
    assert out.rax == 0x1122334455667788
    out = run_hlt(".byte 0x66, 0x48, 0x01, 0xd8", 64, regs={"rax": 1 << 40, "rbx": 1 << 40})   # add rax, rbx
    assert out.rax == 1 << 41


def test_rex_not_last_before_opcode_is_ignored():
    """A REX prefix followed by a legacy prefix has no effect (SDM Vol. 2
    2.2.1)."""
    out = run_hlt(".byte 0x48, 0x66, 0x89, 0xd8", 64, regs={"rax": FULL, "rbx": 0x1234})   # mov ax, bx
    assert out.rax == FULL & ~0xFFFF | 0x1234
    out = run_hlt(".byte 0x41, 0x48, 0x89, 0xd8", 64, regs={"rax": 0, "rbx": FULL, "r8": 5})   # last REX: 48
    assert out.rax == FULL and out.r8 == 5


def test_rep_prefix_on_non_string_instruction_is_ignored():
    out = run_hlt(".byte 0xf3, 0x01, 0xd8\n.byte 0xf2, 0x40, 0x90", 32, regs={"rax": 2, "rbx": 3})
    assert out.rax == 6               # add eax, ebx; then F2 inc eax; nop


@pytest.mark.parametrize("bits", [32, 64])
def test_lock_prefix(bits):
    """LOCK is valid only on ADD ADC AND BTC BTR BTS CMPXCHG DEC INC NEG NOT
    OR SBB SUB XOR XADD XCHG with a memory destination; otherwise #UD (SDM
    Vol. 2 LOCK)."""
    out = run_hlt(f"lock add dword ptr [{DATA}], 5\nlock inc dword ptr [{DATA}]\nlock not byte ptr [{DATA + 4}]\n"
                  f"lock xchg dword ptr [{DATA + 8}], eax\nstc\nlock sbb word ptr [{DATA + 12}], 1", bits,
                  regs={"rax": 7}, data={DATA: u32(1) + u32(0x0F) + u32(9) + u32(3)})
    assert out.vm.read(DATA, 16) == u32(7) + u32(0xF0) + u32(7) + u32(1)
    assert out.rax == 9
    for bad in ("0xf0, 0x01, 0xd8",                 # lock add eax, ebx: register destination
                "0xf0, 0x89, 0x05, 0, 0x30, 0, 0",  # lock mov [..], eax
                "0xf0, 0x39, 0x05, 0, 0x30, 0, 0",  # lock cmp [..], eax
                "0xf0, 0x83, 0x3d, 0, 0x30, 0, 0, 1",   # lock cmp dword [..], 1 (group 1 /7)
                "0xf0, 0x85, 0x05, 0, 0x30, 0, 0",  # lock test [..], eax
                "0xf0, 0x90",                       # lock nop
                "0xf0, 0xf7, 0xd0",                 # lock not eax
                "0xf0, 0xc7, 0x05, 0, 0x30, 0, 0, 1, 0, 0, 0"):   # lock mov dword [..], 1
        out = run(f"mov ecx, 1\n.byte {bad}", bits)
        e = exc(out, 6)
        assert e.guest_rip == 0x1005, bad


def test_operand_size_prefix_on_near_branches_64bit_is_ignored():
    """In 64-bit mode near CALL/RET/JMP/Jcc are 64-bit whatever the operand-size
    prefix (SDM Vol. 1 6.3.7: "operand size prefixes are silently ignored")."""
    out = run_hlt(".byte 0x66, 0xe8\n.long 2\n"        # call +2 (rel32, 8-byte push)
                  "hlt\nhlt\n"
                  "mov rax, rsp\n"
                  ".byte 0x66, 0xc3\n", 64)             # ret: 8-byte pop, back to the first hlt
    assert out.rax == 0x8000 - 8
    assert out.rsp == 0x8000 and out.exit.guest_rip == 0x1006
    out = run_hlt("mov rbx, offset t\n.byte 0x66, 0xff, 0xe3\nhlt\nt: mov ecx, 5", 64)   # 66 jmp rbx
    assert out.rcx == 5


def test_operand_size_prefix_on_near_branches_32bit():
    """66 CALL/RET in 32-bit mode push and pop 2 bytes, and a 16-bit JMP
    truncates EIP to 16 bits (SDM Vol. 2 CALL, RET, JMP)."""
    out = run_hlt(".byte 0x66, 0xe8, 0x02, 0x00\n"      # call rel16 +2: pushes IP (2 bytes)
                  "hlt\nhlt\n"
                  "mov eax, esp\n"
                  ".byte 0x66, 0xc3\n", 32)             # ret: 2-byte pop
    assert out.rax == 0x8000 - 2 and out.vm.read(0x8000 - 2, 2) == b"\x04\x10"
    assert out.rsp == 0x8000 and out.exit.guest_rip == 0x1004
    vm, vcpu = make_vm(32, entry=0x10000)
    vm.load(0x10000, bytes([0x66, 0xE9, 0x10, 0x00]))   # jmp rel16: (0x10004 + 0x10) & 0xffff
    vm.load(0x14, vtx.asm("mov eax, 0x14\nhlt", bits=32))
    vm.default(lambda vcpu, exit: vtx.STOP)
    r = vm.run(max_instructions=10)
    assert r.exit.reason == vtx.ExitReason.HLT and vcpu.rax == 0x14 and r.exit.guest_rip == 0x19


def test_operand_size_prefix_on_near_call_16bit():
    out = run_hlt(".byte 0x66, 0xe8\n.long 2\nhlt\nhlt\nmov ax, sp\n.byte 0x66, 0xc3", 16)
    assert out.rax & 0xFFFF == 0x8000 - 4
    assert out.vm.read(0x8000 - 4, 4) == u32(0x1006)
    assert out.rsp == 0x8000 and out.exit.guest_rip == 0x1006


# ============================================================================
# REX
# ============================================================================

def test_rex_bits():
    src = (".byte 0x48, 0x89, 0xd8\n"          # REX.W: mov rax, rbx
           ".byte 0x89, 0xd9\n"                # no REX: mov ecx, ebx
           ".byte 0x4c, 0x89, 0xc2\n"          # REX.W+R: mov rdx, r8
           ".byte 0x49, 0x89, 0xc1\n"          # REX.W+B: mov r9, rax
           ".byte 0x41, 0x51\n"                # REX.B: push r9
           ".byte 0x41, 0x5a\n"                # REX.B: pop r10
           ".byte 0x4d, 0x8d, 0x5c, 0x24, 0x08\n"   # REX.W+R+B: lea r11, [r12+8]
           ".byte 0x41, 0xb8\n.long 0x11\n"   # REX.B: mov r8d, imm32 (B8+r)
           ".byte 0x49, 0xbe\n.quad -2\n")    # REX.W+B: mov r14, imm64
    out = run_hlt(src, 64, regs={"rbx": 0xFFFF_0000_0000_1111, "rcx": FULL, "r8": 0x2000, "rdi": 0x2F00,
                                  "r12": 0x1000, "r9": 0, "rsi": 0})
    assert out.rax == 0xFFFF_0000_0000_1111
    assert out.rcx == 0x1111
    assert out.rdx == 0x2000
    assert out.r9 == 0xFFFF_0000_0000_1111
    assert out.r10 == 0xFFFF_0000_0000_1111
    assert out.r11 == 0x1008
    assert out.r8 == 0x11 and out.r14 == FULL - 1


def test_rex_x_and_b_in_addressing():
    data = {0x2F00 + 0x40: u32(0xAA), 0x3000: u32(0xBB)}
    out = run_hlt(".byte 0x42, 0x8b, 0x34, 0x8f\n"     # mov esi, [rdi + r9*4]
                  ".byte 0x43, 0x8b, 0x3c, 0x20\n"     # mov edi, [r8 + r12]  (index 100 + REX.X = r12)
                  ".byte 0x41, 0x8b, 0x45, 0x00\n"     # mov eax, [r13+0]  (mod 01: r13 needs a disp8)
                  ".byte 0x41, 0x8b, 0x0c, 0x24\n",    # mov ecx, [r12]    (rm 100 + REX.B: SIB, base r12)
                  64, regs={"rdi": 0x2F00, "r9": 0x10, "r8": 0x2000, "r12": 0x1000, "r13": 0x3000},
                  data=data)
    assert out.rsi == 0xAA
    assert out.rdi == 0xBB
    assert out.rax == 0xBB
    assert out.rcx == int.from_bytes(out.vm.read(0x1000, 4), "little")


def test_rex_b_does_not_change_special_encodings():
    """ModRM.rm = 101 with mod 00 is RIP-relative even with REX.B (not r13),
    and SIB.base = 101 with mod 00 is "no base" even with REX.B (SDM Vol. 2
    Table 2-5)."""
    out = run_hlt(".byte 0x41, 0x8b, 0x05\n.long 0x10\n"           # mov eax, [rip+0x10]
                  ".byte 0x41, 0x8b, 0x0c, 0x25\n.long 0x3000\n",  # mov ecx, [0x3000]
                  64, regs={"r13": 0x5000}, data={0x1007 + 0x10: u32(0x77), 0x3000: u32(0x88),
                                                  0x5000: u32(0x99), 0x5010: u32(0x99)})
    assert out.rax == 0x77 and out.rcx == 0x88


def test_rex_in_32bit_mode_is_inc_dec():
    out = run_hlt(".byte 0x40, 0x48, 0x48, 0x43", 32, regs={"rax": 5, "rbx": 1})
    assert out.rax == 4 and out.rbx == 2


# ============================================================================
# ModRM / SIB
# ============================================================================

def test_sib_no_base_no_index_64():
    out = run_hlt(".byte 0x8b, 0x04, 0x25\n.long 0x3000\n"          # [disp32]: SIB base 101 mod 00, index 100
                  ".byte 0x8b, 0x0c, 0x9d\n.long 0x2ff0\n"          # [rbx*4 + disp32]: no base
                  ".byte 0x8b, 0x14, 0x24\n"                        # [rsp]: base rsp, index 100 = none
                  ".byte 0x8b, 0x74, 0x25, 0x08\n",                 # [rbp + 8]: index 100 = none, mod 01
                  64, regs={"rbx": 4, "rbp": 0x3000, "rsp": 0x5000},
                  data={0x3000: u32(0x11), 0x5000: u32(0x33), 0x3008: u32(0x44)})
    assert (out.rax, out.rcx, out.rdx, out.rsi) == (0x11, 0x11, 0x33, 0x44)


def test_modrm_disp32_is_absolute_in_32bit_and_rip_relative_in_64bit():
    code = ".byte 0x8b, 0x05\n.long 0x3000\n"          # mov eax, [disp32] / [rip+disp32]
    out = run_hlt(code, 32, data={0x3000: u32(0x32), 0x1006 + 0x3000: u32(0x64)})
    assert out.rax == 0x32
    out = run_hlt(code, 64, data={0x3000: u32(0x32), 0x1006 + 0x3000: u32(0x64)})
    assert out.rax == 0x64


def test_sib_default_segment_32bit():
    """With SS and DS bases different: [ebp+d8] and [esp] use SS; SIB with
    no base (even with EBP as the index) uses DS (SDM Vol. 1 3.7.5)."""
    setup = with_segs(ss=data_seg(0x10000), ds=data_seg(0))
    out = run_hlt(".byte 0x8b, 0x45, 0x10\n"                 # mov eax, [ebp+0x10]       -> SS
                  ".byte 0x8b, 0x0c, 0x24\n"                 # mov ecx, [esp]            -> SS
                  ".byte 0x8b, 0x14, 0x2d\n.long 0x3000\n"   # mov edx, [ebp*1+0x3000]   -> DS
                  ".byte 0x8b, 0x34, 0x28\n",                # mov esi, [eax+ebp]: base eax -> DS
                  32, setup=setup, regs={"rbp": 0x10, "rsp": 0x200},
                  data={0x10020: u32(0x3000), 0x10200: u32(0xCC), 0x3010: u32(0xDD), 0x13010: u32(0xEE)})
    assert out.rax == 0x3000 and out.rcx == 0xCC and out.rdx == 0xDD
    assert out.rsi == 0xDD


@pytest.mark.parametrize("rm, base, index", [(0, "bx", "si"), (1, "bx", "di"), (2, "bp", "si"), (3, "bp", "di"),
                                             (4, "si", None), (5, "di", None), (6, "bp", None), (7, "bx", None)])
def test_modrm16_all_forms(rm, base, index):
    regs = {"rbx": 0x100, "rsi": 0x20, "rdi": 0x3, "rbp": 0x4000}
    addr = (regs["r" + base] + (regs["r" + index] if index else 0) + 0x2000) & 0xFFFF
    seg_base = 0x10000 if base == "bp" else 0       # BP-based forms default to SS
    code = f".byte 0x8b, {0x80 | rm:#x}, 0x00, 0x20"    # mov ax, [... + 0x2000] (mod 10, disp16)
    out = run_hlt("mov cx, 0x1000\nmov ss, cx\n" + code, 16, regs=regs,
                  data={seg_base + addr: b"\x5a\xa5"})
    assert out.rax & 0xFFFF == 0xA55A


def test_modrm16_disp16_only():
    out = run_hlt(".byte 0x8b, 0x06, 0x00, 0x30", 16, data={0x3000: b"\x34\x12"})    # mov ax, [0x3000]
    assert out.rax == 0x1234


# ============================================================================
# RIP-relative addressing
# ============================================================================

def test_rip_relative_is_relative_to_the_next_instruction():
    """The base is the address of the next instruction, after any immediate
    (SDM Vol. 2 2.2.1.6)."""
    src = ("mov eax, [rip+val]\n"
           "mov dword ptr [rip+slot], 0x11223344\n"     # C7 05 disp32 imm32: imm after disp
           "add byte ptr [rip+slot], 1\n"               # 80 05 disp32 imm8
           "lea rbx, [rip]\n"
           "hlt\n"
           "val: .long 0xcafe\n"
           "slot: .long 0\n")
    out = run(src, 64)
    assert out.halted
    assert out.rax == 0xCAFE
    code = vtx.asm(src, bits=64, org=0x1000)
    slot = code.index(bytes([0xFE, 0xCA, 0, 0])) + 4 + 0x1000
    assert out.vm.read(slot, 4) == u32(0x11223345)
    lea_at = 0x1000 + 6 + 10 + 7
    assert out.rbx == lea_at + 7


def test_rip_relative_negative_displacement_and_eip_relative():
    """Without 67 the sum is a 64-bit address; with 67 it wraps at 32 bits
    (EIP-relative)."""
    # [rip - 0x2000] from 0x1007: 0xffff_ffff_ffff_f007 is canonical but not
    # mapped by the long-mode page tables (4 GiB identity map): #PF.
    out = run(".byte 0x8b, 0x05\n.long -0x2000", 64)
    e = exc(out, 14)
    assert e.fault_address == 0xFFFF_FFFF_FFFF_F006
    # With 67: 0xffff_f006 lies in the identity map, beyond guest memory: an
    # EPT violation at that guest-physical address.
    out = run(".byte 0x67, 0x8b, 0x05\n.long -0x2000", 64)
    assert isinstance(out.exit, vtx.EptViolationExit), out.exit
    assert out.exit.gpa == 0xFFFF_F007 and out.exit.read


# ============================================================================
# Instruction length
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_fifteen_bytes_ok_sixteen_gp(bits):
    """An instruction may be at most 15 bytes long; longer is #GP(0) (SDM Vol. 2
    2.3.11)."""
    out = run_hlt(".byte " + ", ".join(["0x66"] * 14) + ", 0x90\nmov eax, 1", bits, regs={"rax": 0})
    assert out.rax == 1
    out = run("mov ecx, 1\n.byte " + ", ".join(["0x66"] * 15) + ", 0x90\nmov ecx, 2", bits)
    e = exc(out, 13)
    assert e.error_code == (None if bits == 16 else 0)     # real mode: no error code (SDM Vol. 3 20.1.4)
    assert e.guest_rip == 0x1000 + (6 if bits == 16 else 5)
    assert out.rcx == 1


def test_long_real_instruction_15_and_16_bytes():
    # es: 66 67 REX.W 81 /0 [rax+rbx*4+disp32], imm32 = 15 bytes; one more prefix: 16.
    insn = "0x66, 0x67, 0x48, 0x81, 0x84, 0x98, 0x00, 0x30, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00"
    out = run_hlt(f".byte 0x26, {insn}", 64, regs={"rax": 0, "rbx": 0}, data={0x3000: (5).to_bytes(8, "little")})
    assert int.from_bytes(out.vm.read(0x3000, 8), "little") == 6
    out = run(f".byte 0x26, 0x26, {insn}", 64, regs={"rax": 0, "rbx": 0})
    exc(out, 13)


# ============================================================================
# Crossing a 4 KiB page boundary
# ============================================================================

def halt_vm(bits, **kw):
    vm, vcpu = make_vm(bits, **kw)
    vm.default(lambda vcpu, exit: vtx.STOP)
    return vm, vcpu


@pytest.mark.parametrize("bits", ALL_MODES)
@pytest.mark.parametrize("split", range(1, 6))
def test_instruction_crossing_page_boundary(bits, split):
    """mov eax, imm32 (B8 + 4 bytes, 66 first in 16-bit mode) placed so the
    page boundary falls after `split` bytes; run three times in a loop.  With
    split 5 in 32/64-bit mode the instruction ends exactly at the boundary
    (decoded from one page and cached)."""
    mov = vtx.asm("mov eax, 0x12345678", bits=bits)
    start = 0x2000 - split
    vm, vcpu = halt_vm(bits, entry=start)
    vm.load(start, vtx.asm("top: mov eax, 0x12345678\nadd ebx, eax\ndec ecx\njnz top\nhlt",
                           bits=bits, org=start))
    vcpu.rcx, vcpu.rbx = 3, 0
    r = vm.run(max_instructions=1000)
    assert r.exit.reason == vtx.ExitReason.HLT
    assert vcpu.rax & 0xFFFFFFFF == 0x12345678
    assert vcpu.rbx & 0xFFFFFFFF == (3 * 0x12345678) & 0xFFFFFFFF
    # Rewrite the immediate (partly or wholly on the second page) from
    # Python: the next run must use the new bytes.
    vm.write(start + len(mov) - 4, u32(0x01010101))
    vcpu.rip, vcpu.rcx, vcpu.rbx = start, 3, 0
    r = vm.run(max_instructions=1000)
    assert r.exit.reason == vtx.ExitReason.HLT
    assert vcpu.rbx & 0xFFFFFFFF == 3 * 0x01010101


@pytest.mark.parametrize("split", range(1, 10))
def test_ten_byte_instruction_crossing_page_boundary(split):
    """mov rax, imm64 (REX.W B8 + 8 bytes) split at every position, so the
    REX, the opcode and every immediate byte each start the second page once."""
    start = 0x2000 - split
    vm, vcpu = halt_vm(64, entry=start)
    vm.load(start, vtx.asm("mov rax, 0x1122334455667788\nhlt", bits=64, org=start))
    r = vm.run(max_instructions=10)
    assert r.exit.reason == vtx.ExitReason.HLT and r.exit.guest_rip == start + 10
    assert vcpu.rax == 0x1122334455667788


def test_crossing_into_unbacked_memory_is_an_ept_violation():
    """The bytes after the page boundary are beyond guest memory: the fetch
    is an EPT violation for the second page and nothing executes."""
    mem = 1 << 20
    vm, vcpu = halt_vm(32, memory=mem, entry=mem - 2)
    vm.load(mem - 2, b"\xb8\x78")                # mov eax, imm32 missing three bytes
    vcpu.rax = 0x55
    r = vm.run(max_instructions=10)
    assert isinstance(r.exit, vtx.EptViolationExit), r.exit
    assert r.exit.gpa == mem and r.exit.fetch
    assert r.exit.guest_rip == mem - 2
    assert vcpu.rax == 0x55


def test_crossing_instruction_with_guest_written_tail():
    """The guest rewrites a page-crossing instruction's immediate (which
    straddles the boundary); the next execution uses the new bytes."""
    start = 0x2000 - 2
    vm, vcpu = halt_vm(32, entry=start)
    vm.load(start, vtx.asm("top: mov eax, 0x00000001\nadd ebx, eax\n"
                           "mov dword ptr [0x1fff], 0x00000007\n"     # bytes 1..4 of the mov
                           "dec ecx\njnz top\nhlt", bits=32, org=start))
    vcpu.rcx, vcpu.rbx = 3, 0
    r = vm.run(max_instructions=1000)
    assert r.exit.reason == vtx.ExitReason.HLT
    assert vcpu.rbx == 1 + 7 + 7


# ============================================================================
# The decode cache
# ============================================================================

@pytest.mark.parametrize("bits", ALL_MODES)
def test_self_modifying_code_in_a_loop(bits):
    """Each iteration executes `target` and then rewrites it: first the
    immediate, then the opcode.  Every new instruction runs (SDM Vol. 3
    11.6: a write to code that is cached for execution is seen)."""
    ref = "cs:" if bits == 16 else ("rip+" if bits == 64 else "")
    src = (f"mov ecx, 4\nmov ebx, 0\nmov edx, 0\n"
           "top:\n"
           "target: add ebx, 1\n"                              # 83 C3 ib  (66 in 16-bit mode)
           f"cmp ecx, 3\njne 1f\n"
           f"mov byte ptr [{ref}target + {2 if bits != 16 else 3}], 5\n"    # add ebx, 5
           "1: cmp ecx, 2\njne 2f\n"
           f"mov byte ptr [{ref}target + {1 if bits != 16 else 2}], 0xc2\n"  # add edx, 5
           "2: dec ecx\njnz top\n")
    if bits == 16:
        src = src.replace("[cs:target", "cs:[target")
    out = run_hlt(src, bits)
    # ecx 4: add ebx, 1; ecx 3: add ebx, 1 then imm := 5; ecx 2: add ebx, 5
    # then ModRM := edx; ecx 1: add edx, 5
    assert out.rbx & 0xFFFFFFFF == 1 + 1 + 5
    assert out.rdx & 0xFFFFFFFF == 5


def test_self_modifying_code_next_instruction():
    """A store that rewrites the very next instruction: the new one runs."""
    out = run_hlt("mov byte ptr [rip+1f+1], 0x42\n"    # changes the imm8 below (the disp is after imm8)
                  "1: mov al, 0x11", 64)
    assert out.rax & 0xFF == 0x42


def test_self_modifying_code_write_straddling_pages():
    """A 2-byte store across a page boundary rewrites the first byte of an
    instruction at the start of the second page, which already ran."""
    vm, vcpu = halt_vm(32)
    vm.load(0x1000, vtx.asm("mov ecx, 2\nmov ebx, 0\n"
                            "top: call 0x2000\n"
                            "mov word ptr [0x1fff], 0x4b00\n"   # 0x2000: 43 (inc ebx) -> 4b (dec ebx)
                            "dec ecx\njnz top\nhlt", bits=32, org=0x1000))
    vm.load(0x2000, vtx.asm("inc ebx\ninc ebx\nret", bits=32, org=0x2000))
    vm.default(lambda vcpu, exit: vtx.STOP)
    r = vm.run(max_instructions=1000)
    assert r.exit.reason == vtx.ExitReason.HLT
    assert vcpu.rbx == 2 + 0                    # second call: dec ebx; inc ebx
    assert vm.read(0x1FFF, 2) == b"\x00\x4b"


def test_self_modifying_code_through_a_paging_alias():
    """The guest writes the code through a second linear mapping of the same
    physical page (long mode, a 2 MiB alias at 1 GiB): the decode cache is
    keyed by physical address, so the change is seen."""
    vm, vcpu = make_vm(64)
    at = vm.memory_size - 0x8000
    vm.write_u64(at + 0x4000, 0x83)               # PD for GiB 1, entry 0 -> physical 0, 2 MiB page
    vm.load(0x1000, vtx.asm("mov ecx, 3\nxor ebx, ebx\n"
                            "top: target: add ebx, 1\n"
                            "mov byte ptr [0x40000000 + target + 2], 0x10\n"
                            "dec ecx\njnz top\nhlt", bits=64, org=0x1000))
    vm.default(lambda vcpu, exit: vtx.STOP)
    r = vm.run(max_instructions=1000)
    assert r.exit.reason == vtx.ExitReason.HLT
    assert vcpu.rbx == 1 + 0x10 + 0x10


@pytest.mark.parametrize("bits", ALL_MODES)
def test_python_write_over_decoded_code_between_runs(bits):
    vm, vcpu = make_vm(bits)
    vm.load(0x1000, vtx.asm("mov ecx, 5\ntop: add ebx, 1\ndec ecx\njnz top\nhlt", bits=bits, org=0x1000))
    vm.default(lambda vcpu, exit: vtx.STOP)
    vcpu.rbx = 0
    vm.run()
    assert vcpu.rbx & 0xFFFF == 5
    # Same layout, different immediate and a different first instruction.
    new = vtx.asm("mov ecx, 2\ntop: add ebx, 7\ndec ecx\njnz top\nhlt", bits=bits, org=0x1000)
    vm.write(0x1000, new)
    vcpu.rip = 0x1000
    vcpu.rbx = 0
    r = vm.run()
    assert r.exit.reason == vtx.ExitReason.HLT
    assert vcpu.rbx & 0xFFFF == 14


def test_same_bytes_decoded_again_after_a_mode_change():
    """The cache is keyed by mode: 48 05 imm32 is DEC EAX; ADD EAX, imm32 in
    32-bit mode and ADD RAX, imm32 in 64-bit mode."""
    vm, vcpu = make_vm(32)
    vm.load(0x1000, bytes([0x48, 0x05, 1, 0, 0, 0, 0xF4]))
    vm.default(lambda vcpu, exit: vtx.STOP)
    vcpu.rax = 10
    vm.run()
    assert vcpu.rax == 10                       # dec, then add 1
    vm.setup_long_mode(entry=0x1000)
    vcpu.rax = 0xFFFFFFFF
    vm.run()
    assert vcpu.rax == 0x1_0000_0000            # 64-bit add


def long_mode_with_hole(hole):
    """Long mode whose first 2 MiB are mapped with 4 KiB pages, all present
    but the page at `hole`."""
    vm, vcpu = halt_vm(64)
    at = vm.memory_size - 0x8000
    pt = 0x50000
    vm.write(pt, b"".join(((i << 12) | 3 if (i << 12) != hole else 0).to_bytes(8, "little") for i in range(512)))
    vm.write_u64(at + 0x3000, pt | 3)             # PD[0] -> the page table
    return vm, vcpu


@pytest.mark.parametrize("split", [1, 2, 4])
def test_crossing_into_a_not_present_page_is_pf(split):
    """The fetch of the second page faults: #PF with CR2 (the exit's fault
    address) on that page, RIP at the start of the instruction, nothing
    executed (SDM Vol. 3 4.7: error code 0 = not present, supervisor read;
    the I/D bit is 0 with EFER.NXE = 0 and CR4.SMEP = 0)."""
    vm, vcpu = long_mode_with_hole(0x2000)
    start = 0x2000 - split
    vm.load(start, vtx.asm("mov eax, 0x12345678", bits=64))
    vcpu.rip, vcpu.rax = start, 7
    r = vm.run(max_instructions=10)
    assert isinstance(r.exit, vtx.ExceptionExit) and r.exit.vector == 14, r.exit
    assert r.exit.fault_address == 0x2000
    assert r.exit.error_code == 0
    assert r.exit.guest_rip == start and vcpu.rax == 7


# ============================================================================
# Property: random bytes decode to an architectural outcome, and the cached
# decode behaves exactly like a fresh one
# ============================================================================

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_FUZZ_VMS = {}
_GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
         "r12", "r13", "r14", "r15")


def _fuzz_vm(bits):
    if bits not in _FUZZ_VMS:
        vm, vcpu = halt_vm(bits)
        _FUZZ_VMS[bits] = (vm, vcpu, vm.read(0, vm.memory_size))
    return _FUZZ_VMS[bits]


def _reset(vm, vcpu, bits, regs):
    {16: lambda: vm.setup_real_mode(entry=0x1000, stack=0x8000),
     32: lambda: vm.setup_protected_mode(entry=0x1000, stack=0x8000),
     64: lambda: vm.setup_long_mode(entry=0x1000, stack=0x8000)}[bits]()
    for name, v in zip(_GPRS[:7], regs):
        setattr(vcpu, name, v)
    # Every other register too: a value left over from an earlier example
    # would make the two runs start from different states.
    for name in _GPRS[7:]:
        if name not in ("rsp", "esp", "sp"):
            setattr(vcpu, name, 0)


def _one_step(vm, vcpu):
    try:
        r = vm.run(max_instructions=1)
    except vtx.VtxError as e:            # a clear Python error is an allowed outcome, a crash is not
        return ("error", type(e).__name__, str(e))
    e = r.exit
    state = tuple(getattr(vcpu, n) for n in _GPRS) + (vcpu.rip, vcpu.rflags)
    if e is None:
        return (r.stop, r.instructions, state)
    info = (e.reason, e.guest_rip, e.qualification)
    if isinstance(e, vtx.ExceptionExit):
        info += (e.vector, e.error_code)
    return (r.stop, r.instructions, info, state)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bits=st.sampled_from([16, 32, 64]), code=st.binary(min_size=1, max_size=16),
       regs=st.lists(st.sampled_from([0, 1, 0x1000, 0x7FF0, 0xFFFF_FFFF, (1 << 64) - 1]), min_size=7, max_size=7))
def test_random_bytes_cold_and_warm_decode_agree(bits, code, regs):
    vm, vcpu, clean = _fuzz_vm(bits)
    vm.write(0, clean)                              # fresh memory: every decoded entry dropped
    vm.write(0x1000, code)
    _reset(vm, vcpu, bits, regs)
    cold = _one_step(vm, vcpu)
    assert cold[0] in ("budget", "stop", "error")
    if cold[0] == "budget":
        assert cold[1] == 1
    after = vm.read(0, vm.memory_size)
    # An instruction that rewrote its own page is re-decoded, not a cache test.
    hypothesis.assume(after[0x1000:0x2000] == code + clean[0x1000 + len(code):0x2000])
    # Put back every other page the instruction wrote, leaving the code page
    # (and so its decoded instructions) alone, and run the same step again.
    for page in range(0, vm.memory_size, 0x1000):
        if page != 0x1000 and after[page:page + 0x1000] != clean[page:page + 0x1000]:
            vm.write(page, clean[page:page + 0x1000])
    _reset(vm, vcpu, bits, regs)
    warm = _one_step(vm, vcpu)
    assert warm == cold
