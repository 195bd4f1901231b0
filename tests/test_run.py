"""The run loop (vtx/core/run.pxi) and VCpu._run: every run ends when asked.

A run stops at its budget whatever the guest does: event delivery counts toward
the budget (a guest whose every instruction faults, or that loops in INT n, is
no exception), a REP string instruction stops between iterations with RIP on
it, and Python's signals are looked at between slices of bounded length, so
Ctrl-C stops any guest within milliseconds and leaves a VM that runs again.
The shapes that once hung the host run in child processes with a timeout far
above their expected time, so a regression fails instead of hanging the suite.
"""

import os
import subprocess
import sys
import textwrap

import pytest

import vtx
from vtx import ExitReason as R, VmcsField as F

from conftest import guest, needs_as

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# --- guests that never retire an instruction, or never stop -----------------

# Each builds a VM whose guest would loop forever; `budget` bounds it.
HANG_SHAPES = {
    # INT 0x20 whose IVT entry points back at the INT itself: every
    # iteration is a software interrupt (it retires: RIP moves past it
    # before the handler, which is the INT again).
    "int-n-to-itself": """
vm = mk("int 0x20", 16)
vm.write_u32(0x20 * 4, 0x1000)          # IVT[0x20] = 0000:1000
vm.vcpu.rsp = 0x8000
""",
    # UD2 at the #UD vector, #UD not intercepted: a fault whose handler
    # faults again; no instruction ever retires.
    "fault-handler-faults": """
vm = mk("ud2", 16)
vm.write_u32(6 * 4, 0x1000)
vm.vcpu.rsp = 0x8000
""",
    # CS limit 0 with #GP not intercepted: every fetch faults, and the #GP
    # handler's fetch faults too.
    "cs-limit-0": """
vm = mk("nop", 16)
cs = vm.vcpu.cs
vm.vcpu.cs = vtx.Segment(cs.selector, cs.base, 0, cs.access_rights)
""",
    # REP LODSB with ECX = 2^32 - 1 over 4 GiB of linear addresses that
    # 32-bit paging aliases to one physical page: billions of iterations in
    # one instruction.
    "rep-lodsb-4g": """
vm = mk("rep lodsb", 32)
pd, pt = 0x10000, 0x11000
vm.write(pd, b"".join((pt | 3).to_bytes(4, "little") for _ in range(1024)))
vm.write(pt, b"".join((0x1000 | 3).to_bytes(4, "little") for _ in range(1024)))
vm.vcpu.cr3 = pd
vm.vcpu.cr0 = vm.vcpu.cr0 | 0x80000000
vm.vcpu.ecx = 0xFFFFFFFF
""",
    # REP STOSB over 960 KiB of memory, again and again.
    "rep-stosb-960k": """
vm = mk("2: mov ecx, 983040; mov edi, 0x10000; rep stosb; jmp 2b", 32)
""",
    # A plain infinite loop.
    "jmp-self": """
vm = mk("2: jmp 2b", 64)
""",
}

PRELUDE = """
import signal, sys, time
import vtx
from vtx import VmcsField as F

SETUP = {16: "setup_real_mode", 32: "setup_protected_mode", 64: "setup_long_mode"}

def mk(src, bits):
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(src, bits=bits, org=0x1000))
    vm.add_vcpu()
    getattr(vm, SETUP[bits])(entry=0x1000)
    vm.vcpu.vmwrite(F.EXCEPTION_BITMAP, 0)     # the guest handles its own faults
    return vm
"""


def run_child(body, timeout=60):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-X", "faulthandler", "-c", PRELUDE + textwrap.dedent(body)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"child exited with {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


@needs_as
@pytest.mark.parametrize("shape", sorted(HANG_SHAPES))
def test_hang_shape_stops_at_budget(shape):
    """Budget 10 000: the run stops with exactly that many steps
    (instructions + events), and the saved state enters again."""
    out = run_child(HANG_SHAPES[shape] + """
r = vm.run(max_instructions=10000)
assert r.stop == "budget", r
assert r.instructions + r.events == 10000, (r.instructions, r.events)
assert vm.vcpu.check_entry() is None, vm.vcpu.check_entry()
# and it goes on from there
r2 = vm.run(max_instructions=5)
assert r2.stop == "budget" and r2.instructions + r2.events == 5, r2
print("ok", r.instructions, r.events)
""")
    assert out.startswith("ok")


@needs_as
@pytest.mark.parametrize("shape", sorted(HANG_SHAPES))
def test_hang_shape_stops_on_signal(shape):
    """No budget: a signal handler that raises (as Ctrl-C does) stops the run
    within a bounded time, and the VM runs again afterwards."""
    out = run_child(HANG_SHAPES[shape] + """
def alarm(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGALRM, alarm)
signal.setitimer(signal.ITIMER_REAL, 0.2)
t0 = time.monotonic()
try:
    vm.run()
except KeyboardInterrupt:
    pass
else:
    raise AssertionError("the run ended by itself")
dt = time.monotonic() - t0
assert dt < 5.0, dt
assert vm.vcpu.check_entry() is None, vm.vcpu.check_entry()
r = vm.run(max_instructions=100)
assert r.stop == "budget", r
print("ok", round(dt, 3))
""")
    assert out.startswith("ok")


# --- REP string instructions at the budget ------------------------------------

@needs_as
def test_rep_lodsb_pauses_with_rip_on_it():
    vm = guest("rep lodsb\nhlt", bits=32)
    v = vm.vcpu
    v.ecx = 0xFFFFFFFF
    v.esi = 0x2000
    r = vm.run(max_instructions=10)
    assert (r.stop, r.instructions, r.events) == ("budget", 10, 0)
    assert v.rip == 0x1000                   # still on the REP LODSB
    assert v.ecx == 0xFFFFFFFF - 10
    assert v.esi == 0x2000 + 10
    assert v.check_entry() is None


@needs_as
def test_rep_stosb_split_runs_match_one_run():
    """A REP STOSB stopped at every 7th iteration and resumed gives the same
    memory, registers and step count as one uninterrupted run."""
    def fresh():
        vm = guest("rep stosb\nhlt", bits=32)
        vm.vcpu.ecx = 1000
        vm.vcpu.edi = 0x4000
        vm.vcpu.eax = 0x5A
        return vm
    one = fresh()
    r = one.run()
    assert r.stop == "stop" and r.instructions == 1000     # 1000 iterations, then HLT exits
    split = fresh()
    total, runs = 0, 0
    while True:
        r = split.run(max_instructions=7)
        total += r.instructions
        runs += 1
        if r.stop == "stop":
            break
        assert r.stop == "budget" and r.instructions == 7
    assert runs == 143 and total == 1000
    assert split.read(0x4000, 1000) == b"\x5A" * 1000
    assert split.read(0x4000 + 1000, 16) == bytes(16)
    for reg in ("ecx", "edi", "eip"):
        assert getattr(split.vcpu, reg) == getattr(one.vcpu, reg), reg
    assert split.vcpu.instructions == one.vcpu.instructions


@needs_as
def test_repe_cmpsb_counts_iterations_until_mismatch():
    vm = guest("repe cmpsb\nhlt", bits=32)
    vm.write(0x3000, b"abcdefXh")
    vm.write(0x4000, b"abcdefYh")
    v = vm.vcpu
    v.esi, v.edi, v.ecx = 0x3000, 0x4000, 8
    r = vm.run()
    assert r.stop == "stop" and r.instructions == 7          # 7 compares, the 7th mismatches
    assert (v.esi, v.edi, v.ecx) == (0x3007, 0x4007, 1)
    assert v.rflags & 0x40 == 0                               # ZF = 0


@needs_as
def test_rep_with_zero_count_retires_once():
    vm = guest("rep movsb\nhlt", bits=32)
    vm.vcpu.ecx = 0
    r = vm.run()
    assert r.instructions == 1 and vm.vcpu.rip == 0x1002


# --- events count toward the budget -------------------------------------------

@needs_as
def test_events_counted_in_run_result():
    """A real-mode #DE handled by the guest's own IVT handler: one event per
    fault, and INT n counted as an instruction, not an event."""
    vm = guest("""
    mov cx, 3
1:  xor dx, dx
    xor ax, ax
    div ax              # #DE: the handler skips the 2-byte DIV
    dec cx
    jnz 1b
    int 0x21
    hlt
""", bits=16)
    vm.load(0x2000, vtx.asm("""
    push bp
    mov bp, sp
    add word ptr [bp + 2], 2
    pop bp
    iret
""", bits=16, org=0x2000))
    vm.load(0x2100, vtx.asm("iret", bits=16, org=0x2100))
    vm.write_u32(0 * 4, 0x2000)
    vm.write_u32(0x21 * 4, 0x2100)
    vm.vcpu.vmwrite(F.EXCEPTION_BITMAP, 0)
    vm.vcpu.rsp = 0x8000
    r = vm.run()
    assert r.stop == "stop" and r.exit.reason == R.HLT
    assert r.events == 3
    # mov, 3 x (xor, xor, the handler's 5, dec, jnz), int, iret: 1 + 27 + 2
    assert r.instructions == 30
    assert vm.vcpu.events == 3


@needs_as
def test_budget_exact_with_faults_and_instructions_mixed():
    vm = guest("ud2", bits=16)
    vm.load(0x2000, vtx.asm("nop\nnop\nnop\niret", bits=16, org=0x2000))
    vm.write_u32(6 * 4, 0x2000)
    vm.vcpu.vmwrite(F.EXCEPTION_BITMAP, 0)
    vm.vcpu.rsp = 0x8000
    for budget in (1, 2, 5, 6, 1000, 12345):
        r = vm.run(max_instructions=budget)
        assert r.stop == "budget"
        assert r.instructions + r.events == budget, (budget, r.instructions, r.events)


# --- slices: long runs are not cut short --------------------------------------

@needs_as
def test_run_longer_than_a_slice_is_exact():
    """Three million instructions (several signal slices) without a budget:
    the count is exact and the result the same as on hardware."""
    vm = guest("""
    mov ecx, 1000000
    xor eax, eax
1:  add eax, 3
    dec ecx
    jnz 1b
    hlt
""", bits=32)
    r = vm.run()
    assert r.stop == "stop" and r.exit.reason == R.HLT
    assert r.instructions == 2 + 3 * 1000000
    assert vm.vcpu.eax == 3000000


@needs_as
def test_budget_larger_than_a_slice():
    vm = guest("2: jmp 2b", bits=64)
    r = vm.run(max_instructions=3_000_001)
    assert r.stop == "budget" and r.instructions == 3_000_001


# --- re-entry and bad budgets -------------------------------------------------

@needs_as
def test_run_from_a_handler_is_refused():
    vm = guest("cpuid\nhlt\nhlt", bits=32, stop_on_hlt=False)
    seen = []

    @vm.on(R.CPUID)
    def cpuid(vcpu, exit):
        with pytest.raises(vtx.VmStateError, match="already active"):
            vm.run()
        seen.append(vcpu.rip)
        return vtx.RESUME

    vm.on(R.HLT)(lambda vcpu, exit: vtx.STOP)
    r = vm.run()
    # The inner call changed nothing: the outer RESUME stepped over CPUID
    # only, and the guest went on to its HLT.
    assert seen == [0x1000]
    assert r.stop == "stop" and r.exit.reason == R.HLT and r.exit.guest_rip == 0x1002
    assert r.instructions == 0 and r.exits == {R.CPUID: 1, R.HLT: 1}
    # and the VM runs again normally: the HLT the STOP left is completed
    # first (vtx.STOP), so the run stops at the next one
    r = vm.run()
    assert r.exit.reason == R.HLT and r.exit.guest_rip == 0x1003


@needs_as
def test_vcpu_run_directly_is_not_reentrant_either():
    vm = guest("cpuid\nhlt", bits=32)
    calls = []

    @vm.on(R.CPUID)
    def cpuid(vcpu, exit):
        with pytest.raises(vtx.VmStateError):
            vcpu._run([None] * 128, None, 0, vtx.RESUME, vtx.RETRY, vtx.STOP)
        calls.append(1)
        return vtx.RESUME
    assert vm.run().exit.reason == R.HLT and calls == [1]


@pytest.mark.parametrize("bad", [0, -1, 2 ** 64, 2 ** 62 + 1, 1.5, "10", True])
def test_bad_budgets(bad):
    vm = vtx.VM(memory=1 << 16)
    vm.add_vcpu()
    with pytest.raises(vtx.ArgumentError, match=r"max_instructions is an int in \[1, 0x4000000000000000\]"):
        vm.run(max_instructions=bad)


def test_largest_budget_is_accepted():
    vm = vtx.VM(memory=1 << 16)
    vm.load(0, b"\xF4")                      # HLT
    vm.add_vcpu()
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=vtx._core.MAX_BUDGET)
    assert r.stop == "stop" and r.exit.reason == R.HLT
