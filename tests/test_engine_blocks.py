"""Translated blocks (vtx/core/run.pxi): a run of decoded instructions
executed with the checks done once per block.  The outcome must be that of
one instruction at a time: a budget that ends inside a block stops exactly
there, a fault inside a block leaves the instructions before it retired and
RIP on the faulting one, and a loop of one block stops at its budget.
"""

import pytest

import vtx
from vtx import ExitReason as R

from conftest import guest, needs_as

pytestmark = needs_as

STRAIGHT = "\n".join(["inc eax", "add ebx, eax"] * 6) + "\nhlt\n"     # 12 instructions, one block


@pytest.mark.parametrize("bits", [16, 32, 64])
@pytest.mark.parametrize("budget", range(1, 13))
def test_budget_inside_a_block(bits, budget):
    vm = guest(STRAIGHT, bits)
    v = vm.vcpu
    r = vm.run(max_instructions=budget)
    assert r.stop == "budget" and r.instructions == budget
    incs = (budget + 1) // 2
    assert v.eax == incs
    assert v.ebx == sum(range(1, budget // 2 + 1))
    r = vm.run()
    assert r.exit.reason == R.HLT and v.eax == 6 and v.ebx == 21


@pytest.mark.parametrize("bits", [32, 64])
def test_fault_inside_a_block(bits):
    """The third instruction of a block reads guest-physical memory that EPT
    does not map: an EPT violation on it, with the first two retired, RIP on
    the load, and nothing after it run."""
    vm = guest("""
        inc eax
        inc eax
        mov ebx, [0x7fff0000]
        inc eax
        hlt
    """, bits)
    seen = []
    vm.on(R.EPT_VIOLATION)(lambda vcpu, e: seen.append(e) or vtx.STOP)
    r = vm.run()
    v = vm.vcpu
    load_at = 0x1000 + (2 if bits == 32 else 4)          # inc eax: 40 / FF C0
    assert [e.reason for e in seen] == [R.EPT_VIOLATION]
    assert seen[0].guest_rip == load_at and seen[0].guest_physical_address == 0x7FFF0000
    assert r.instructions == 2 and v.eax == 2 and v.rip == load_at


@pytest.mark.parametrize("bits", [32, 64])
def test_loop_of_one_block_with_budget(bits):
    """A loop whose body is one block (it branches back to its own start)
    stops at the budget inside an iteration."""
    vm = guest("""
        mov ecx, 100
    1:  inc eax
        add ebx, 3
        sub ecx, 1
        jnz 1b
        hlt
    """, bits)
    v = vm.vcpu
    r = vm.run(max_instructions=1 + 4 * 10 + 2)
    assert r.instructions == 43
    assert v.eax == 11 and v.ebx == 33 and v.ecx == 90
    r = vm.run()
    assert r.exit.reason == R.HLT and v.eax == 100 and v.ecx == 0


def test_large_footprint_translates_each_block_once():
    """256 KiB of straight-line code run 1 and 3 times: the later passes
    find every block translated (no block evicts another), so both runs
    translate the same number of blocks.  (The run stays within one slice of
    2^20 steps: a slice boundary resumes mid-block, which translates one
    block more.)"""
    unit = vtx.asm("inc eax\nadd ebx, eax\nrol ebx, 3\n", bits=32)      # ROL ends a block
    body = unit * ((256 << 10) // len(unit))
    built = []
    for passes in (1, 3):
        head = vtx.asm(f"mov ecx, {passes}\njmp 1f\n1:", bits=32, org=0x1000)    # the loop's top starts a block
        top = 0x1000 + len(head)
        tail_at = top + len(body)
        back = top - (tail_at + 1 + 6)
        image = head + body + b"\x49\x0f\x85" + back.to_bytes(4, "little", signed=True) + b"\xf4"
        vm = vtx.VM(memory=2 << 20)
        vm.load(0x1000, image)
        vm.add_vcpu()
        vm.setup_protected_mode(entry=0x1000)
        vm.on(R.HLT)(lambda vcpu, e: vtx.STOP)
        b0 = vm.vcpu.blocks_built
        r = vm.run()
        assert r.exit.reason == R.HLT and r.instructions == 2 + passes * (3 * (len(body) // len(unit)) + 2)
        built.append(vm.vcpu.blocks_built - b0)
    assert built[0] == built[1] and built[0] >= len(body) // len(unit)


@pytest.mark.parametrize("budget", range(1, 40))
def test_budget_in_a_loop_of_chained_blocks(budget):
    """A loop of two blocks (ROL ends the first) that run chained: any
    budget stops at exactly that many instructions, with the state of one
    instruction at a time, and the run then continues to the same end."""
    src = """
        mov ecx, 6
    1:  inc eax
        rol ebx, 1
        add ebx, eax
        dec ecx
        jnz 1b
        hlt
    """
    ref = guest(src, 32)
    # the reference state after `budget` steps, taken one instruction at a time
    for _ in range(budget):
        r = ref.run(max_instructions=1)
        if r.stop != "budget":
            break
    vm = guest(src, 32)
    r = vm.run(max_instructions=budget)
    v, w = vm.vcpu, ref.vcpu
    assert (v.eax, v.ebx, v.ecx, v.rip, v.rflags) == (w.eax, w.ebx, w.ecx, w.rip, w.rflags)
    if r.stop == "budget":
        assert r.instructions == budget
        r = vm.run()
    assert r.exit.reason == R.HLT and v.eax == 6 and v.ecx == 0


ALTERNATING = """
        mov ecx, 12
    1:  inc eax
        test al, 1
        jz 2f
        add ebx, 3              # odd turns: one successor of the branch
        jmp 3f
    2:  add edx, 5              # even turns: the other
    3:  dec ecx
        jnz 1b
        hlt
"""


# A Jcc does not end a block: here the block from 1: runs on through both
# pairs to the HLT, and leaves early (a side exit, into the middle of its own
# bytes) on the turns where JZ is taken.
SIDE_EXITS = """
        mov ecx, 12
    1:  inc eax
        test al, 3
        jz 2f
        add ebx, 3
        add ebx, 0
    2:  add edx, 5
        dec ecx
        jnz 1b
        hlt
"""


@pytest.mark.parametrize("src,want", [(ALTERNATING, (12, 18, 30, 0)), (SIDE_EXITS, (12, 27, 60, 0))])
@pytest.mark.parametrize("budget", range(1, 90, 4))
def test_budget_in_a_loop_whose_branch_alternates(src, want, budget):
    """The conditional branch leaves its block one way on some turns and
    the other on the rest, so the block has two successors (or a side
    exit): any budget stops at exactly that many instructions, in the state
    of one instruction at a time, and the run then continues to the same
    end."""
    ref = guest(src, 32)
    for _ in range(budget):
        if ref.run(max_instructions=1).stop != "budget":
            break
    vm = guest(src, 32)
    r = vm.run(max_instructions=budget)
    v, w = vm.vcpu, ref.vcpu
    assert (v.eax, v.ebx, v.ecx, v.edx, v.rip, v.rflags) == (w.eax, w.ebx, w.ecx, w.edx, w.rip, w.rflags)
    if r.stop == "budget":
        assert r.instructions == budget
        r = vm.run()
    assert r.exit.reason == R.HLT and (v.eax, v.ebx, v.edx, v.ecx) == want


@pytest.mark.parametrize("bits", [32, 64])
def test_a_chained_successor_rewritten_by_the_loop(bits):
    """Both successors of the branch are linked after the first turns; on
    turn 6 the loop rewrites the immediate of the odd successor's ADD (3 ->
    100).  The turns after it add 100: a link never leads to dropped code."""
    vm = guest("""
        mov ecx, 12
    1:  inc eax
        cmp eax, 6
        jne 4f
        mov byte ptr [5f + 2], 100
    4:  test al, 1
        jz 2f
    5:  add ebx, 3
        jmp 3f
    2:  add edx, 5
    3:  dec ecx
        jnz 1b
        hlt
    """, bits)
    r = vm.run()
    v = vm.vcpu
    assert r.exit.reason == R.HLT
    assert v.ebx == 3 * 3 + 3 * 100 and v.edx == 30


def test_a_loop_entered_at_two_ips_branches_relative_to_each():
    """The same bytes (physical 1000H) run as one block from 0000:1000 and
    from 0100:0000.  The loop's branch goes back within its own block, so
    its target is taken without a check of its own (CC2_LOCAL): it must
    still be relative to the IP the block was entered at."""
    code = vtx.asm("""
        mov cx, 5
    1:  inc ax
        dec cx
        jnz 1b
        hlt
    """, bits=16, org=0)
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, code)
    vm.add_vcpu()
    vm.on(R.HLT)(lambda vcpu, exit: vtx.STOP)
    v = vm.vcpu
    hlt_at = len(code) - 1
    for cs, ip in ((0, 0x1000), (0x100, 0)):
        vm.setup_real_mode(entry=ip, cs=cs)
        v.eax = 0
        r = vm.run()
        assert r.exit.reason == R.HLT and r.exit.guest_rip == ip + hlt_at
        assert v.cs.selector == cs and v.ax == 5 and v.cx == 0 and r.instructions == 1 + 3 * 5


def test_a_16_bit_jcc_in_32_bit_code_wraps_its_target():
    """66H Jcc in 32-bit code has a 16-bit operand size: EIP <- (EIP + rel)
    AND FFFFH (SDM Vol. 2, Jcc).  Its target is inside its own block before
    the wrap, so this also checks that a block never takes such a branch as
    one within itself: the loop at 10000H goes back to 0000H + its offset,
    where a HLT waits."""
    entry = 0x10000
    vm = guest("""
        mov ecx, 3
    1:  dec ecx
        .byte 0x66
        jnz 1b
        hlt
    """, 32, entry=entry)
    loop_off = 5                                 # mov ecx, imm32
    vm.write(loop_off, b"\xf4")                  # the wrapped target: 0000:0005
    r = vm.run()
    v = vm.vcpu
    assert r.exit.reason == R.HLT and r.exit.guest_rip == loop_off
    assert v.ecx == 2 and r.instructions == 3


# Loops that stay inside one block (RC_LOCAL, core/run.pxi): the Jcc's
# target is one of the block's own ops, and the block goes on there without
# leaving.  Each runs to the end with the counts of one instruction at a time
# and stops at any budget in that state.
IN_BLOCK_LOOPS = {
    # The loop starts at the block's second op (after the MOV).
    "mid_block": ("""
        mov ecx, 7
    1:  add eax, 2
        dec ecx
        jnz 1b
        hlt
    """, 1 + 7 * 3),
    # Two loops nested in one block: the inner goes back to op 2, the outer
    # to op 1.
    "nested": ("""
        mov edx, 3
    1:  mov ecx, 4
    2:  inc eax
        dec ecx
        jnz 2b
        add ebx, eax
        dec edx
        jnz 1b
        hlt
    """, 1 + 3 * (1 + 4 * 3 + 3)),
    # A forward Jcc within the block (skips two ops on odd turns), fused and
    # plain.
    "forward": ("""
        mov ecx, 9
    1:  inc eax
        test al, 1
        jz 2f
        add ebx, 3
        add ebx, 0
    2:  mov esi, eax
        bt esi, 1
        jc 3f
        add edx, 1
    3:  dec ecx
        jnz 1b
        hlt
    """, None),
    # A Jcc to the Jcc of a pair (the second half of an op) and into the
    # middle of an instruction: not an op of the block, so a side exit.
    "inside_an_op": ("""
        mov ecx, 5
        mov edx, 2
    1:  add eax, 1
    2:  jz 3f
        dec edx
        jnz 2b
        .byte 0xb8              # mov eax, imm32 whose immediate is "dec ecx; jnz 1b; nop; nop"
    3:  dec ecx
        jnz 1b
        nop
        nop
        hlt
    """, None),
}


def _step_reference(src, bits, budget):
    ref = guest(src, bits)
    for _ in range(budget):
        if ref.run(max_instructions=1).stop != "budget":
            break
    return ref.vcpu


@pytest.mark.parametrize("bits", [16, 32, 64])
@pytest.mark.parametrize("name", IN_BLOCK_LOOPS)
def test_loop_within_a_block_runs_as_one_instruction_at_a_time(name, bits):
    src, want = IN_BLOCK_LOOPS[name]
    ref = guest(src, bits)
    n = 0
    while ref.run(max_instructions=1).stop == "budget":
        n += 1
    vm = guest(src, bits)
    r = vm.run()
    v, w = vm.vcpu, ref.vcpu
    assert r.exit.reason == R.HLT and r.instructions == n
    if want is not None:
        assert n == want
    assert (v.eax, v.ebx, v.ecx, v.edx, v.esi, v.rip, v.rflags) == (w.eax, w.ebx, w.ecx, w.edx, w.esi, w.rip, w.rflags)


@pytest.mark.parametrize("name", IN_BLOCK_LOOPS)
@pytest.mark.parametrize("budget", [1, 2, 3, 4, 5, 7, 11, 16, 23, 30, 37, 44])
def test_budget_in_a_loop_within_a_block(name, budget):
    src = IN_BLOCK_LOOPS[name][0]
    w = _step_reference(src, 32, budget)
    vm = guest(src, 32)
    r = vm.run(max_instructions=budget)
    v = vm.vcpu
    assert (v.eax, v.ebx, v.ecx, v.edx, v.esi, v.rip, v.rflags) == (w.eax, w.ebx, w.ecx, w.edx, w.esi, w.rip, w.rflags)
    if r.stop == "budget":
        assert r.instructions == budget


def test_in_block_loop_counts_instructions_exactly():
    """The mid-block loop: 1 + 7 turns of 3 instructions, then the MOV
    after it, in the same block: the count and the values are exact."""
    vm = guest("""
        mov ecx, 7
    1:  add eax, 2
        dec ecx
        jnz 1b
        mov ebx, eax
        hlt
    """, 32)
    r = vm.run()
    v = vm.vcpu
    assert r.exit.reason == R.HLT and r.instructions == 1 + 7 * 3 + 1
    assert v.eax == 14 and v.ebx == 14 and v.ecx == 0 and v.rflags & 0x40
