"""Self-modifying code: what an engine that caches decoded instructions,
translated blocks or chains must notice.

The architecture (SDM Vol. 3A 11.6) lets a write to code take effect for the
next instruction fetched after the write, on the same linear address or not:
these tests write code at a distance d from the end of the writing
instruction (the first byte written is d bytes after it) for d = 1, 2, 15, 16,
4095 and 4096, in 32-bit protected mode and in 64-bit mode, and assert that the
new code runs, and, where the old code ran first, that it did.

Three ways to reach the modified instruction:
- fresh: the writer falls through to it; it never ran before (in a block
  engine it is in the same block as the writer);
- loop: a first pass jumps straight to it (the old code runs and is cached),
  the second runs the writer and falls through to it;
- jump: like loop, but after the writer a taken JMP goes to it (filler INT3
  bytes in between, which would stop the run with a #BP exit).

Three kinds of modification, of the target instruction at T:
- imm:    MOV EDX, imm32 whose immediate is patched;
- opcode: INC EDX (FF C2) patched to DEC EDX (FF CA);
- length: five NOPs whose first byte becomes BA: one MOV EDX, 0x90909090.

And many writers (MOV, RIP-relative MOV, MOV of a dword, ADD/XADD/CMPXCHG/XCHG
read-modify-writes, BTS, STOSB, REP STOSB, MOVSB, PUSH with the stack pointer
aimed at the code).  Then: a loop that patches its own next instruction every
iteration; writes through a second linear mapping of the code page; code
changed by the hypervisor between runs and inside an exit handler;
instructions that cross into a page that is not present; overlapping
instructions; and a page unmapped under the code that ran from it.
"""

import shutil

import pytest

import vtx
from vtx import ExitReason as R, VmcsField as F

from engine_paging import paged_vm

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU as (binutils) is not installed")

BASE = 0x10000
RECS = 0x1C0000
SRCB = 0x1C1000
MEMORY = 4 << 20

TARGETS = {
    # name: (bytes, offset of the patched byte, old byte, new byte, EDX after
    # the old code, EDX after the new code); EDX is 100 before the target.
    "imm": (bytes.fromhex("ba11111111") + b"\x90" * 4, 1, 0x11, 0x22, 0x11111111, 0x11111122),
    "opcode": (bytes.fromhex("ffc2"), 1, 0xC2, 0xCA, 101, 99),
    "length": (b"\x90" * 5, 0, 0x90, 0xBA, 100, 0x90909090),
}
NEW32 = 0x22222222           # dword writers replace the whole immediate of "imm"


def writer_lines(kind, bits, p, w_end, old, new):
    """The instructions of a writer; the last one writes `new` at p (p is
    w_end + d).  Absolute addresses are disp32, so the length does not depend
    on p."""
    sp = "rsp" if bits == 64 else "esp"
    return {
        "mov8": [f"mov byte ptr [{p:#x}], {new:#x}"],
        "mov8-rip": [f"mov byte ptr [rip + {p - w_end}], {new:#x}"],
        "mov32": [f"mov dword ptr [{p:#x}], {NEW32:#x}"],
        "add8": [f"add byte ptr [{p:#x}], {(new - old) & 0xFF:#x}"],
        "xadd8": [f"mov bl, {(new - old) & 0xFF:#x}", f"xadd byte ptr [{p:#x}], bl"],
        "cmpxchg8": [f"mov al, {old:#x}", f"mov bl, {new:#x}", f"cmpxchg byte ptr [{p:#x}], bl"],
        "xchg8": [f"mov bl, {new:#x}", f"xchg byte ptr [{p:#x}], bl"],
        "bts": [f"bts dword ptr [{p:#x}], 3"],                   # C2 -> CA: bit 3
        "stosb": [f"mov edi, {p:#x}", f"mov al, {new:#x}", "stosb"],
        "rep-stosb": [f"mov edi, {p:#x}", f"mov al, {new:#x}", "mov ecx, 1", "rep stosb"],
        "movsb": [f"mov esi, {SRCB:#x}", f"mov edi, {p:#x}", "movsb"],
        "push": ([f"mov esp, {p + 8:#x}", f"mov rbx, {NEW32 | (0x90909090 << 32):#x}", "push rbx"] if bits == 64
                 else [f"mov esp, {p + 4:#x}", f"push {NEW32:#x}"]),
    }[kind]


DWORD_WRITERS = ("mov32", "push")          # only for the "imm" target


SLOT = 0x4000               # guest memory per case: the cases of a group run one after another


class SmcCase:
    def __init__(self, bits, flavor, d, align, target, writer="mov8"):
        self.bits, self.flavor, self.d, self.align, self.target, self.writer = bits, flavor, d, align, target, writer
        self.name = f"{bits}-{flavor}-d{d}-{align}-{target}-{writer}"

    def source(self, i, base):
        """The guest code of case i at base (slot-aligned): it records EDX
        after each pass at RECS + 16 * i and jumps to the next case."""
        tbytes, k, old, new, _, _ = TARGETS[self.target]
        w_end = base + ALIGNS[self.align]
        p = w_end + self.d
        t = p - k
        self.p, self.t, self.w_end = p, t, w_end
        wl = writer_lines(self.writer, self.bits, p, w_end, old, new)
        wlen = len(vtx.asm("\n".join(writer_lines(self.writer, self.bits, 0x12345, 0x12000, old, new)),
                           bits=self.bits))
        idx = "rbp" if self.bits == 64 else "ebp"
        npass = 1 if self.flavor == "fresh" else 2
        first = f"w_start{i}" if self.flavor == "fresh" else f"t{i}"
        if self.flavor == "jump":
            assert t - w_end >= 2
            filler = f"jmp t{i}\n.org {t - BASE:#x}, 0xcc"
        else:
            filler = f".org {t - BASE:#x}, 0x90"
        return f"""
        .org {base - BASE:#x}, 0xcc
    case{i}:
        mov ebp, 0
        mov edx, 100
        jmp {first}
        .org {w_end - wlen - BASE:#x}, 0xcc
    w_start{i}:
        {chr(10).join(wl)}
    w_end{i}:
        {filler}
    t{i}: .byte {", ".join(hex(b) for b in tbytes)}
        mov dword ptr [{RECS + 16 * i:#x} + {idx} * 4], edx
        mov edx, 100
        inc ebp
        cmp ebp, {npass}
        jb w_start{i}
        jmp case{i + 1}
        """

    def check(self, vm, i):
        """The problems with case i after the run, as a list of strings."""
        _, _, _, new, old_v, _ = TARGETS[self.target]
        new_v = NEW32 if self.writer in DWORD_WRITERS else TARGETS[self.target][5]
        want = [new_v] if self.flavor == "fresh" else [old_v, new_v]
        got = [vm.read_u32(RECS + 16 * i + 4 * k) for k in range(len(want))]
        out = []
        if got != want:
            out.append(f"EDX per pass {[hex(x) for x in got]}, want {[hex(x) for x in want]}")
        if self.writer in DWORD_WRITERS:
            if vm.read_u32(self.p) != NEW32:
                out.append(f"dword at the patch {vm.read_u32(self.p):#x}")
        elif vm.read_u8(self.p) != new:
            out.append(f"byte at the patch {vm.read_u8(self.p):#x}")
        return out


def make_vm(bits, code, memory=MEMORY):
    vm = vtx.VM(memory=memory)
    vm.add_vcpu()
    if bits == 64:
        vm.setup_long_mode(entry=BASE)
    else:
        vm.setup_protected_mode(entry=BASE)
    vm.load(BASE, code)
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    return vm


def run_group(cases):
    """All cases as one guest, one after another (each in its own 16 KiB),
    checked case by case."""
    bits = cases[0].bits
    src = "".join(c.source(i, BASE + SLOT * i) for i, c in enumerate(cases))
    src += f"""
        .org {SLOT * len(cases):#x}, 0xcc
    case{len(cases)}:
        hlt
        .balign 8
        {chr(10).join(f".long w_end{i}, t{i}" for i in range(len(cases)))}
    """
    code = vtx.asm(src, bits=bits, org=BASE)
    assert BASE + len(code) <= RECS
    labels = memoryview(code)[SLOT * len(cases) + 8:].cast("I")
    for i, c in enumerate(cases):
        assert (labels[2 * i], labels[2 * i + 1]) == (c.w_end, c.t), c.name
    vm = make_vm(bits, code)
    vm.write(SRCB, bytes([TARGETS["length"][3]]))      # what MOVSB copies (its target is "length")
    r = vm.run(max_instructions=1_000_000)
    assert r.stop == "stop" and r.exit.reason == R.HLT, r.exit
    assert r.exit.guest_rip == BASE + SLOT * len(cases)
    problems = []
    for i, c in enumerate(cases):
        p = c.check(vm, i)
        if p:
            problems.append(f"{c.name}: " + "; ".join(p))
    assert not problems, f"{len(problems)} of {len(cases)} cases failed:\n" + "\n".join(problems)


DISTANCES = [1, 2, 15, 16, 4095, 4096]
# Where the writer ends within its slot: mid-page, and at the last byte and
# three bytes before the end of a page (so that short distances cross into
# the next page, and the target straddles the boundary).
ALIGNS = {"mid": 0x1800, "end-1": 0x1FFF, "end-3": 0x1FFD}


@pytest.mark.parametrize("flavor", ["fresh", "loop", "jump"])
@pytest.mark.parametrize("bits", [32, 64])
def test_smc_distance(bits, flavor):
    """Every distance, the three kinds of patch mid-page, and the immediate
    patch with the writer ending at and near the end of a page."""
    cases = []
    for d in DISTANCES:
        for align, target in [("mid", "imm"), ("mid", "opcode"), ("mid", "length"),
                              ("end-1", "imm"), ("end-3", "imm")]:
            if flavor == "jump" and d - TARGETS[target][1] < 2:
                continue            # no room for a JMP between writer and target
            cases.append(SmcCase(bits, flavor, d, align, target))
    run_group(cases)


WRITERS = ("mov8", "mov8-rip", "mov32", "add8", "xadd8", "cmpxchg8", "xchg8", "bts", "stosb", "rep-stosb",
           "movsb", "push")


@pytest.mark.parametrize("flavor", ["fresh", "loop"])
@pytest.mark.parametrize("bits", [32, 64])
def test_smc_writer_kinds(bits, flavor):
    cases = []
    for writer in WRITERS:
        if writer == "mov8-rip" and bits == 32:
            continue
        target = "imm" if writer in DWORD_WRITERS else ("opcode" if writer == "bts" else "length")
        assert writer != "movsb" or target == "length"
        for d, align in ((1, "mid"), (1, "end-1"), (2, "end-3"), (16, "end-3"), (4096, "mid")):
            cases.append(SmcCase(bits, flavor, d, align, target, writer))
    run_group(cases)


# --- a loop that patches its own next instruction every iteration ------------------

@pytest.mark.parametrize("bits", [32, 64])
def test_loop_patches_its_next_instruction_every_iteration(bits):
    """Each iteration writes i*3+1 into the immediate of the MOV right after
    the writer, then the MOV runs: EDX follows the iteration, 40 times."""
    idx = "rbp" if bits == 64 else "ebp"
    code = vtx.asm(f"""
        mov ebp, 0
    top:
        lea ebx, [ebp + ebp * 2 + 1]
        mov byte ptr [imm], bl
    insn:
        mov edx, 0x55555555
        imm = insn + 1
        mov dword ptr [{RECS:#x} + {idx} * 4], edx
        inc ebp
        cmp ebp, 40
        jne top
        hlt
    """, bits=bits, org=BASE)
    vm = make_vm(bits, code)
    r = vm.run(max_instructions=10_000)
    assert r.stop == "stop" and r.exit.reason == R.HLT
    assert r.instructions == 1 + 40 * 7
    got = [vm.read_u32(RECS + 4 * i) for i in range(40)]
    assert got == [0x55555500 | ((3 * i + 1) & 0xFF) for i in range(40)]


# --- writes through a second linear mapping of the code page --------------------------

CODE_LIN = 0x10000           # where the code runs (identity)
ALIAS = {64: 0x200000 + 0x5000, 32: 0x400000 + 0x5000}   # a PT1 page, mapped to the code's page
TABLES = 0x60000


@pytest.mark.parametrize("flavor", ["fresh", "loop"])
@pytest.mark.parametrize("bits", [32, 64])
def test_write_through_an_alias_of_the_code_page(bits, flavor):
    """The code page is mapped at CODE_LIN and at ALIAS; the guest writes the
    immediate of an instruction through ALIAS, and executes it through
    CODE_LIN: the new immediate (and, in the loop, the old one first).  A
    second patch turns INC EDX into DEC EDX the same way, across a page
    boundary of the alias (the patched byte is the first of the next page)."""
    alias = ALIAS[bits]
    idx = "rbp" if bits == 64 else "ebp"
    npass = 1 if flavor == "fresh" else 2
    first = "w" if flavor == "fresh" else "t"
    code = vtx.asm(f"""
        mov ebp, 0
        jmp {first}
    w:  mov byte ptr [{alias:#x} + (t + 1 - {CODE_LIN:#x})], 0x22
        mov byte ptr [{alias:#x} + (u + 1 - {CODE_LIN:#x})], 0xca
    t:  mov edx, 0x11111111
        .org 0xfff, 0x90
    u:  .byte 0xff, 0xc2            # INC EDX across the page boundary: C2 at 0x11000
        mov dword ptr [{RECS:#x} + {idx} * 4], edx
        inc ebp
        cmp ebp, {npass}
        jb w
        hlt
    """, bits=bits, org=CODE_LIN)
    assert code[0xFFF:0x1001] == b"\xff\xc2"
    vm, pg = paged_vm(bits, TABLES, entry=CODE_LIN)
    vm.load(CODE_LIN, code)
    pg.map(alias, CODE_LIN)
    pg.map(alias + 0x1000, CODE_LIN + 0x1000)
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=100_000)
    assert r.stop == "stop" and r.exit.reason == R.HLT, r.exit
    got = [vm.read_u32(RECS + 4 * i) for i in range(npass)]
    new = 0x11111122 - 1
    assert got == ([new] if flavor == "fresh" else [0x11111111 + 1, new])
    assert vm.read(CODE_LIN + 0xFFF, 2) == b"\xff\xca"


@pytest.mark.parametrize("bits", [32, 64])
def test_loop_patches_through_an_alias_every_iteration(bits):
    """Every iteration writes a new immediate through the alias and runs the
    instruction through the original mapping: the alias's translation is
    used for writes again and again while the page holds decoded code."""
    alias = ALIAS[bits]
    idx = "rbp" if bits == 64 else "ebp"
    code = vtx.asm(f"""
        mov ebp, 0
    top:
        lea ebx, [ebp + ebp * 4 + 3]
        mov byte ptr [{alias:#x} + (t + 1 - {CODE_LIN:#x})], bl
    t:  mov edx, 0x11111111
        mov dword ptr [{RECS:#x} + {idx} * 4], edx
        inc ebp
        cmp ebp, 20
        jb top
        hlt
    """, bits=bits, org=CODE_LIN)
    vm, pg = paged_vm(bits, TABLES, entry=CODE_LIN)
    vm.load(CODE_LIN, code)
    pg.map(alias, CODE_LIN)
    r = vm.run(max_instructions=100_000)
    assert r.stop == "stop" and r.exit.reason == R.HLT, r.exit
    assert [vm.read_u32(RECS + 4 * i) for i in range(20)] == [0x11111100 | (5 * i + 3) for i in range(20)]


# --- code changed by the hypervisor ------------------------------------------------------

LOOP_SRC = """
    top:
        mov edx, 0x11111111
        .org 0xffe, 0x90
    straddle:
        mov ebx, 0x33333333         # BB 33 | 33 33 33: crosses into the next page
        out 0x80, al
        jmp top
"""


@pytest.mark.parametrize("bits", [32, 64])
def test_hypervisor_patches_code_between_runs(bits):
    """Each OUT stops the run with RIP past it; Python writes new code with
    vm.write between runs, and the guest, back at `top`, runs the new code:
    a patched immediate, a changed opcode (so a different length), and bytes
    of an instruction that straddles a page boundary, in the second page."""
    code = vtx.asm(LOOP_SRC, bits=bits, org=BASE)
    vm = make_vm(bits, code)
    seen = []

    @vm.on(R.IO_INSTRUCTION)
    def out(vcpu, exit):
        seen.append((vcpu.edx, vcpu.ebx))
        vcpu.rip = exit.guest_rip + exit.instruction_length
        return vtx.STOP

    def step():
        r = vm.run(max_instructions=10_000)
        assert r.stop == "stop" and r.exit.reason == R.IO_INSTRUCTION
        return seen[-1]

    assert step() == (0x11111111, 0x33333333)
    assert step() == (0x11111111, 0x33333333)
    vm.write(BASE + 1, (0x22222222).to_bytes(4, "little"))
    assert step() == (0x22222222, 0x33333333)
    vm.write(BASE + 0x1000, b"\x44")                 # MOV EBX's immediate byte 1, in the second page
    assert step() == (0x22222222, 0x33334433)
    vm.write(BASE, b"\xff\xca\x90\x90\x90")          # MOV EDX, imm -> DEC EDX; NOPs
    vm.vcpu.edx = 7
    assert step() == (6, 0x33334433)
    assert step() == (5, 0x33334433)
    # Both halves of the straddling instruction replaced: two NOPs in the
    # first page, MOV BL, 0x5A and a NOP in the second.
    vm.write(BASE + 0xFFE, b"\x90\x90")
    vm.write(BASE + 0x1000, b"\xb3\x5a\x90")
    vm.vcpu.ebx = 0
    assert step() == (4, 0x5A)


@pytest.mark.parametrize("bits", [32, 64])
def test_hypervisor_patches_code_inside_an_exit_handler(bits):
    """The handler writes the code and returns RESUME: the next iteration,
    in the same run, runs the new code."""
    code = vtx.asm(LOOP_SRC, bits=bits, org=BASE)
    vm = make_vm(bits, code)
    seen = []

    @vm.on(R.IO_INSTRUCTION)
    def out(vcpu, exit):
        n = len(seen)
        seen.append((vcpu.edx, vcpu.ebx))
        if n == 5:
            return vtx.STOP
        vm.write(BASE + 1, bytes([n + 1]))           # low byte of MOV EDX's immediate
        vm.write(BASE + 0x1000, bytes([0x40 + n]))   # a byte of the straddling MOV, second page
        return vtx.RESUME

    r = vm.run(max_instructions=100_000)
    assert r.stop == "stop" and r.exit.reason == R.IO_INSTRUCTION
    assert seen == [(0x11111111, 0x33333333)] + [(0x11111100 | n, 0x33330033 | ((0x40 + n - 1) << 8))
                                                 for n in range(1, 6)]


# --- an instruction that crosses into a page that is not present ------------------------

PT1_LIN = {64: 0x200000, 32: 0x400000}      # linear pages mapped through PT1 (not present at first)
XPAGE_PHYS = 0x30000                          # the first page of the crossing instruction
NEXT_PHYS = 0x31000                           # what the second page maps to, once it is present
PF_REC = 0x1C0000
MOV_EAX = bytes.fromhex("b878563412")         # MOV EAX, 0x12345678


def pf_handler(bits, pte, value):
    """A #PF handler that records CR2, the error code and the saved RIP at
    PF_REC, then makes the page present (a not-present entry is never cached,
    SDM Vol. 3A 4.10.4.3: no invalidation is needed) and returns."""
    if bits == 64:
        return f"""
        mov rbx, cr2
        mov [{PF_REC:#x}], rbx
        mov rbx, [rsp]
        mov [{PF_REC + 8:#x}], rbx
        mov rbx, [rsp + 8]
        mov [{PF_REC + 16:#x}], rbx
        inc dword ptr [{PF_REC + 24:#x}]
        mov qword ptr [{pte:#x}], {value:#x}
        add rsp, 8
        iretq
        """
    return f"""
        mov ebx, cr2
        mov [{PF_REC:#x}], ebx
        mov ebx, [esp]
        mov [{PF_REC + 8:#x}], ebx
        mov ebx, [esp + 4]
        mov [{PF_REC + 16:#x}], ebx
        inc dword ptr [{PF_REC + 24:#x}]
        mov dword ptr [{pte:#x}], {value:#x}
        add esp, 4
        iretd
        """


def install_pf_handler(vm, bits, pte, value, at=0x4000, idt=0x6000):
    vm.load(at, vtx.asm(pf_handler(bits, pte, value), bits=bits, org=at))
    v = vm.vcpu
    if bits == 64:
        vm.write_u64(idt + 16 * 14, (at & 0xFFFF) | (0x18 << 16) | (0x8E00 << 32) | ((at >> 16) << 48))
        vm.write_u64(idt + 16 * 14 + 8, 0)
        v.idtr = vtx.DescriptorTable(idt, 16 * 256 - 1)
    else:
        vm.write_u64(idt + 8 * 14, (at & 0xFFFF) | (0x08 << 16) | (0x8E00 << 32) | ((at >> 16) << 48))
        v.idtr = vtx.DescriptorTable(idt, 8 * 256 - 1)
    v.vmwrite(F.EXCEPTION_BITMAP, v.vmread(F.EXCEPTION_BITMAP) & ~(1 << 14))


def crossing_vm(bits, first, reach):
    """Linear page X (through PT1) holds the first `first` bytes of MOV EAX,
    imm32 at its end; page X + 4 KiB is not present.  The guest reaches the
    instruction by a jump to it, or by falling through NOPs from mid-page."""
    x = PT1_LIN[bits]
    start = x + 0x1000 - first
    entry = start if reach == "jump" else x + 0x800
    vm, pg = paged_vm(bits, TABLES, entry=CODE_LIN)
    vm.load(CODE_LIN, vtx.asm(f"""
        mov eax, 0
        mov ecx, {entry:#x}
        jmp {"ecx" if bits == 32 else "rcx"}
    """, bits=bits, org=CODE_LIN))
    page = bytearray(b"\x90" * 0x1000)
    page[0x1000 - first:] = MOV_EAX[:first]
    vm.write(XPAGE_PHYS, bytes(page))
    vm.write(NEXT_PHYS, MOV_EAX[first:] + b"\xf4")     # the rest of it, then HLT
    pg.map(x, XPAGE_PHYS)
    return vm, pg, x, start


@pytest.mark.parametrize("reach", ["jump", "fall-through"])
@pytest.mark.parametrize("first", [1, 2, 4])
@pytest.mark.parametrize("bits,nxe", [(32, False), (64, False), (64, True)])
def test_crossing_into_a_not_present_page_exits_with_pf(bits, nxe, first, reach):
    """Intercepted #PF (exception bitmap): the exit names the second page as
    the fault address, RIP is the instruction's start, the error code is a
    not-present supervisor read, with I/D set when IA32_EFER.NXE = 1 (SDM Vol.
    3A 4.7); CR2 is not written by a #PF VM exit, and nothing of the
    instruction has happened."""
    vm, pg, x, start = crossing_vm(bits, first, reach)
    if nxe:
        vm.vcpu.efer = vm.vcpu.efer | (1 << 11)
    vm.vcpu.cr2 = 0xC2C2
    r = vm.run(max_instructions=10_000)
    e = r.exit
    assert r.stop == "stop" and e.reason == R.EXCEPTION_OR_NMI and e.vector == 14, e
    assert e.fault_address == x + 0x1000
    assert e.error_code == (0x10 if nxe else 0)
    assert e.guest_rip == start
    assert vm.vcpu.cr2 == 0xC2C2 and vm.vcpu.eax == 0
    # Map the second page and go on from the faulting instruction.
    pg.map(x + 0x1000, NEXT_PHYS)
    r = vm.run(max_instructions=10_000)
    assert r.exit.reason == R.HLT and r.exit.guest_rip == x + 0x1000 + 5 - first
    assert vm.vcpu.eax == 0x12345678


@pytest.mark.parametrize("bits,nxe,smep,err", [
    (32, False, False, 0),
    (32, False, True, 0x10),
    (64, False, False, 0),
    (64, True, False, 0x10),
    (64, False, True, 0x10),
    (64, True, True, 0x10),
])
def test_fetch_fault_error_code_id_bit(bits, nxe, smep, err):
    """The I/D bit of a fetch #PF (here: an instruction crossing into a
    not-present page) follows SDM Vol. 3A 4.7 in each paging mode: set when
    CR4.SMEP = 1, or with 4-level paging when IA32_EFER.NXE = 1."""
    vm, pg, x, start = crossing_vm(bits, 2, "jump")
    v = vm.vcpu
    if nxe:
        v.efer = v.efer | (1 << 11)
    if smep:
        v.cr4 = v.cr4 | (1 << 20)
        v.vmwrite(F.CR4_READ_SHADOW, v.vmread(F.CR4_READ_SHADOW) | (1 << 20))
    assert v.check_entry() is None
    r = vm.run(max_instructions=10_000)
    e = r.exit
    assert e.reason == R.EXCEPTION_OR_NMI and e.vector == 14 and e.fault_address == x + 0x1000, e
    assert e.guest_rip == start
    assert e.error_code == err


@pytest.mark.parametrize("first", [1, 3, 4])
@pytest.mark.parametrize("bits", [32, 64])
def test_crossing_into_a_not_present_page_guest_handler(bits, first):
    """The guest's own #PF handler sees CR2 = the second page, error code 0
    and the instruction's start as the saved RIP; it makes the page present
    and IRETs, and the instruction then runs whole, once."""
    vm, pg, x, start = crossing_vm(bits, first, "fall-through")
    install_pf_handler(vm, bits, pg.pte(x + 0x1000), pg.entry(NEXT_PHYS))
    r = vm.run(max_instructions=10_000)
    assert r.stop == "stop" and r.exit.reason == R.HLT, r.exit
    assert r.exit.guest_rip == x + 0x1000 + 5 - first
    assert vm.vcpu.eax == 0x12345678
    assert r.events == 1
    assert (vm.read_u64(PF_REC), vm.read_u64(PF_REC + 8), vm.read_u64(PF_REC + 16), vm.read_u32(PF_REC + 24)) \
        == (x + 0x1000, 0, start, 1)
    assert vm.vcpu.cr2 == x + 0x1000


# --- overlapping instructions ------------------------------------------------------------

@pytest.mark.parametrize("bits", [32, 64])
def test_jump_into_the_middle_of_an_instruction(bits):
    """B8 B1 5A EB 00 is MOV EAX, 0x00EB5AB1 from its first byte, and MOV CL,
    0x5A; JMP +0 from its second; both paths end at the same place.  The
    loop alternates between the two entry points: each time the bytes decode
    as the entry point says."""
    idx = "rbp" if bits == 64 else "ebp"
    code = vtx.asm(f"""
        mov ebp, 0
        mov eax, 0
        mov ecx, 0
        jmp x
    x:  .byte 0xb8, 0xb1, 0x5a, 0xeb, 0x00
        mov [{RECS:#x} + {idx} * 8], eax
        mov [{RECS + 4:#x} + {idx} * 8], ecx
        mov eax, 0
        mov ecx, 0
        inc ebp
        cmp ebp, 6
        je done
        test ebp, 1
        jnz x + 1
        jmp x
    done:
        hlt
    """, bits=bits, org=BASE)
    vm = make_vm(bits, code)
    r = vm.run(max_instructions=1000)
    assert r.stop == "stop" and r.exit.reason == R.HLT
    got = [(vm.read_u32(RECS + 8 * i), vm.read_u32(RECS + 8 * i + 4)) for i in range(6)]
    assert got == [(0x00EB5AB1, 0), (0, 0x5A)] * 3


# --- a page unmapped under code that ran from it ---------------------------------------

FUNC_PHYS = 0x32000


@pytest.mark.parametrize("flush", ["mov-cr3", "invlpg"])
@pytest.mark.parametrize("bits", [32, 64])
def test_call_into_an_unmapped_page_faults(bits, flush):
    """A function in page F is called once (it runs); the guest clears F's
    PTE and invalidates the translation (MOV CR3 or INVLPG); the second call
    faults: #PF with the fault address F, error code 0 (not present,
    supervisor, read: no I/D without NXE) at RIP F, with the return address
    pushed."""
    f = PT1_LIN[bits] + 0x3000
    sp = "rsp" if bits == 64 else "esp"
    ax = "rax" if bits == 64 else "eax"
    pte_ptr = "qword" if bits == 64 else "dword"
    vm, pg = paged_vm(bits, TABLES, entry=CODE_LIN)
    inval = f"mov {ax}, cr3\nmov cr3, {ax}" if flush == "mov-cr3" else f"invlpg [{f:#x}]"
    code = vtx.asm(f"""
        mov edx, {f:#x}
        call {"rdx" if bits == 64 else "edx"}
        mov esi, eax
        mov {pte_ptr} ptr [{pg.pte(f):#x}], 0
        {inval}
        mov eax, 0
    again:
        call {"rdx" if bits == 64 else "edx"}
        hlt
    """, bits=bits, org=CODE_LIN)
    vm.load(CODE_LIN, code)
    vm.load(FUNC_PHYS, vtx.asm("mov eax, 0x5a5a\nret", bits=bits))
    pg.map(f, FUNC_PHYS)
    stack = vm.vcpu.rsp
    r = vm.run(max_instructions=1000)
    e = r.exit
    assert e.reason == R.EXCEPTION_OR_NMI and e.vector == 14, e
    assert (e.fault_address, e.error_code, e.guest_rip) == (f, 0, f)
    assert vm.vcpu.esi == 0x5A5A and vm.vcpu.eax == 0
    w = 8 if bits == 64 else 4
    assert vm.vcpu.rsp == stack - w
    assert int.from_bytes(vm.read(stack - w, w), "little") == CODE_LIN + len(code) - 1    # the HLT


@pytest.mark.parametrize("bits", [32, 64])
def test_code_unmaps_its_own_page(bits):
    """Code in page F clears F's own PTE and reloads CR3: the next
    instruction, in the same page and never executed before, faults on its
    fetch (#PF at its address, not present)."""
    f = PT1_LIN[bits] + 0x3000
    ax = "rax" if bits == 64 else "eax"
    pte_ptr = "qword" if bits == 64 else "dword"
    vm, pg = paged_vm(bits, TABLES, entry=f)
    body = f"""
        mov ecx, 1
        mov {pte_ptr} ptr [{pg.pte(f):#x}], 0
        mov {ax}, cr3
        mov cr3, {ax}
    next:
        mov ecx, 2
        hlt
    """
    code = vtx.asm(body, bits=bits, org=f)
    nxt = f + len(vtx.asm(body.split("next:")[0], bits=bits, org=f))
    vm.load(FUNC_PHYS, code)
    pg.map(f, FUNC_PHYS)
    r = vm.run(max_instructions=1000)
    e = r.exit
    assert e.reason == R.EXCEPTION_OR_NMI and e.vector == 14, e
    assert (e.fault_address, e.error_code, e.guest_rip) == (nxt, 0, nxt)
    assert vm.vcpu.ecx == 1 and r.instructions == 4


# --- an instruction that rewrites its own immediate -----------------------------------

@pytest.mark.parametrize("bits", [32, 64])
def test_instruction_rewrites_its_own_immediate(bits):
    """ADD byte [its own imm8], imm8, five times: each execution adds the
    immediate it was fetched with, so the byte doubles (1, 2, 4, ... 32).
    Code that kept the first decode would add 1 each time."""
    mem = "[rip - 1]" if bits == 64 else "[self + 6]"
    code = vtx.asm(f"""
        mov ecx, 5
    self:
        add byte ptr {mem}, 1
        dec ecx
        jnz self
        hlt
    """, bits=bits, org=BASE)
    vm = make_vm(bits, code)
    off = len(vtx.asm("mov ecx, 5", bits=bits))
    assert code[off:off + 2] == b"\x80\x05" and code[off + 6] == 1
    r = vm.run(max_instructions=100)
    assert r.stop == "stop" and r.exit.reason == R.HLT
    assert vm.read_u8(BASE + off + 6) == 32


# --- patches between two runs that stop in the middle of straight-line code -----------------

@pytest.mark.parametrize("bits", [32, 64])
def test_patch_after_a_budget_stop_mid_block(bits):
    """Twelve INC EDX in a row.  The run stops at its budget after four
    (EDX = 4); the hypervisor turns the 5th to 12th into DEC EDX (including
    the one RIP points at); three of them run (EDX = 1) before the next
    stop; the hypervisor turns the last five back into INC EDX (again from
    the one at RIP), and the run ends at HLT with EDX = 6."""
    code = b"\xff\xc2" * 12 + b"\xf4"
    vm = make_vm(bits, code)
    v = vm.vcpu
    v.edx = 0
    r = vm.run(max_instructions=4)
    assert r.stop == "budget" and v.rip == BASE + 8 and v.edx == 4
    vm.write(BASE + 8, b"\xff\xca" * 8)
    r = vm.run(max_instructions=3)
    assert r.stop == "budget" and v.rip == BASE + 14 and v.edx == 1
    vm.write(BASE + 14, b"\xff\xc2" * 5)
    r = vm.run(max_instructions=100)
    assert r.stop == "stop" and r.exit.reason == R.HLT and r.instructions == 5
    assert v.edx == 6
