"""vtx/debug/debugger.py and core/debugger.pxi: vcpu.step(), execute
breakpoints and watchpoints of the host debugger."""

import pytest

import vtx
from vtx.debug import BreakpointHit, StepResult, WatchpointHit

CODE = 0x1000


def machine(src, bits=64, memory=1 << 20, stop_on_hlt=True):
    vm = vtx.VM(memory=memory)
    vm.load(CODE, vtx.asm(src, bits=bits))
    vm.add_vcpu()
    {64: vm.setup_long_mode, 32: vm.setup_protected_mode, 16: vm.setup_real_mode}[bits](entry=CODE)
    if stop_on_hlt:
        vm.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    return vm


def addr_of(src_before, bits=64):
    """The address of the instruction that follows src_before at CODE."""
    return CODE + len(vtx.asm(src_before, bits=bits)) if src_before.strip() else CODE


LOOP = """
    mov ecx, 5
    xor eax, eax
top:
    add eax, 3
    mov [0x5000], eax
    dec ecx
    jnz top
    mov ebx, [0x5000]
    hlt
"""
TOP = addr_of("mov ecx, 5\nxor eax, eax")
STORE = TOP + 3


# --- step -----------------------------------------------------------------------------------


def test_step_runs_exactly_one_instruction_and_reports_it():
    vm = machine(LOOP)
    v = vm.vcpu
    r = v.step()
    assert isinstance(r, StepResult)
    assert (r.stop, r.rip_before, r.rip_after, r.length, r.instructions, r.event) == ("step", CODE, CODE + 5, 5, 1, False)
    assert r.bytes == bytes.fromhex("b905000000")
    assert (r.cs, r.mode, r.exit, r.hit) == (0x18, "long64", None, None)
    assert v.rcx == 5 and v.rip == CODE + 5
    r = v.step()
    assert (r.rip_before, r.rip_after, r.bytes) == (CODE + 5, TOP, b"\x31\xc0")
    assert v.instructions == 2


def test_step_disassembles_when_a_disassembler_is_there():
    if vtx.debug.backend() == "none":
        pytest.skip("neither capstone nor objdump is installed")
    vm = machine(LOOP)
    assert vm.vcpu.step().disassembly == "mov ecx, 5"


def test_step_that_exits_does_not_run_the_next_instruction():
    # The complaint: run(max_instructions=1) on an OUT also ran the
    # instruction after it.  A step that exits returns after the handler.
    vm = machine("mov al, 7\nout 0xe9, al\nmov al, 9\nhlt")
    seen = []
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(lambda v, e: (seen.append(e.value), vtx.RESUME)[1])
    v = vm.vcpu
    v.step()
    r = v.step()
    assert r.stop == "exit" and r.exit.reason == vtx.ExitReason.IO_INSTRUCTION
    assert seen == [7]
    assert (r.rip_before, r.rip_after, r.bytes, r.instructions) == (CODE + 2, CODE + 4, b"\xe6\xe9", 0)
    assert v.al == 7                      # "mov al, 9" has not run
    r = v.step()
    assert (r.stop, r.rip_after, v.al) == ("step", CODE + 6, 9)


def test_step_on_a_handler_that_stops():
    vm = machine("nop\nhlt")
    v = vm.vcpu
    v.step()
    r = v.step()
    assert (r.stop, r.exit.reason, r.rip_after) == ("stop", vtx.ExitReason.HLT, CODE + 1)


def test_step_of_rep_movsb_is_one_iteration():
    vm = machine("mov rsi, 0x6000\nmov rdi, 0x7000\nmov ecx, 4\nrep movsb\nhlt")
    vm.write(0x6000, b"abcd")
    v = vm.vcpu
    for _ in range(3):
        v.step()
    rep = v.rip
    r = v.step()
    assert (r.stop, r.rip_before, r.rip_after, r.instructions) == ("step", rep, rep, 1)
    assert (v.rcx, v.rsi, v.rdi) == (3, 0x6001, 0x7001)
    assert vm.read(0x7000, 4) == b"a\0\0\0"
    for _ in range(3):
        v.step()
    assert v.rip == rep + 2 and v.rcx == 0 and vm.read(0x7000, 4) == b"abcd"


def test_step_that_delivers_an_event():
    # #UD not intercepted, delivered through the real-mode IVT: the step is
    # the delivery, no instruction retires.
    vm = machine("ud2\nhlt", bits=16)
    v = vm.vcpu
    v.vmwrite(vtx.VmcsField.EXCEPTION_BITMAP, 0xFFFFFFFF & ~(1 << 6))
    vm.write(6 * 4, (0x2000).to_bytes(2, "little") + b"\0\0")
    vm.write(0x2000, b"\xf4")
    r = v.step()
    assert (r.stop, r.event, r.instructions, r.rip_before, r.rip_after) == ("step", True, 0, CODE, 0x2000)
    assert v.sp == 0xFFFA and vm.read(0xFFFA, 2) == CODE.to_bytes(2, "little")


def test_step_is_refused_during_a_run():
    vm = machine("out 0xe9, al\nhlt")
    errors = []

    def io(v, e):
        with pytest.raises(vtx.VmStateError) as exc:
            v.step()
        errors.append(exc.value)
        return vtx.RESUME
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(io)
    assert vm.run().stop == "stop"
    assert len(errors) == 1


# --- breakpoints ------------------------------------------------------------------------------


def test_breakpoint_stops_before_the_instruction_and_continue_passes_it():
    vm = machine(LOOP)
    v = vm.vcpu
    bp = vm.add_breakpoint(STORE)
    assert vm.breakpoints == (bp,)
    for i in range(1, 6):
        r = vm.run()
        assert r.stop == "breakpoint" and isinstance(r.hit, BreakpointHit)
        assert (r.hit.breakpoint, r.hit.rip, r.vcpu, v.rip) == (bp, STORE, v, STORE)
        assert v.eax == 3 * i                        # the add ran, the store did not
        assert vm.read_u32(0x5000) == 3 * (i - 1)
    vm.remove_breakpoint(bp)
    r = vm.run()
    assert (r.stop, v.ebx) == ("stop", 15)


def test_breakpoint_counts_each_instruction_exactly():
    vm = machine(LOOP)
    vm.add_breakpoint(STORE)
    r = vm.run()
    # mov, xor, add: three instructions before the breakpoint.
    assert r.instructions == 3 and vm.vcpu.instructions == 3


def test_breakpoint_where_a_run_starts_stops_it_at_once():
    vm = machine(LOOP)
    vm.add_breakpoint(CODE)
    r = vm.run()
    assert (r.stop, r.instructions, vm.vcpu.rip) == ("breakpoint", 0, CODE)
    assert vm.run().stop == "stop"


def test_a_budget_that_ends_on_a_breakpoint_does_not_pass_it():
    vm = machine(LOOP)
    vm.add_breakpoint(STORE)
    r = vm.run(max_instructions=3)
    assert (r.stop, vm.vcpu.rip) == ("budget", STORE)
    r = vm.run()
    assert (r.stop, r.instructions, vm.vcpu.rip) == ("breakpoint", 0, STORE)


def test_step_from_a_breakpoint_runs_the_instruction():
    vm = machine(LOOP)
    vm.add_breakpoint(TOP)
    vm.setup_long_mode(entry=TOP)
    r = vm.vcpu.step()
    assert (r.stop, r.rip_after) == ("step", STORE)


def test_breakpoint_in_real_mode_uses_the_linear_address():
    vm = vtx.VM(memory=1 << 20)
    code = vtx.asm("mov ax, 1\nmov bx, 2\nhlt", bits=16)
    vm.load(0x12000, code)
    vm.add_vcpu()
    vm.setup_real_mode(entry=0x0000, cs=0x1200)
    vm.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    vm.add_breakpoint(0x12003)
    r = vm.run()
    assert (r.stop, vm.vcpu.rip, vm.vcpu.ax, vm.vcpu.bx) == ("breakpoint", 3, 1, 0)


def test_breakpoint_stops_any_vcpu():
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm("inc eax\njmp $-2", bits=64))
    vm.load(0x2000, vtx.asm("inc ebx\nnop\njmp 0x2000", bits=64, org=0x2000))
    a, b = vm.add_vcpu(), vm.add_vcpu()
    vm.setup_long_mode(entry=CODE, vcpu=a, tables=0xF0000)
    vm.setup_long_mode(entry=0x2000, vcpu=b, tables=0xE0000)
    vm.add_breakpoint(0x2002)
    r = vm.run(max_instructions=100_000, quantum=50)
    assert (r.stop, r.vcpu, b.rip, b.ebx) == ("breakpoint", b, 0x2002, 1)


def test_breakpoint_errors():
    vm = machine(LOOP)
    with pytest.raises(TypeError):
        vm.add_breakpoint("0x1000")
    with pytest.raises(vtx.ArgumentError):
        vm.add_breakpoint(1 << 64)
    with pytest.raises(vtx.ArgumentError):
        vm.remove_breakpoint(99)
    for i in range(32):
        vm.add_breakpoint(0x8000 + i)
    with pytest.raises(vtx.ArgumentError):
        vm.add_breakpoint(0x9000)
    vm.clear_breakpoints()
    assert vm.breakpoints == () and vm.run().stop == "stop"


# --- watchpoints ------------------------------------------------------------------------------


def test_write_watchpoint_reports_the_access_after_it():
    vm = machine(LOOP)
    v = vm.vcpu
    wp = vm.add_watchpoint(0x5002, 1, "write")
    r = vm.run()
    assert r.stop == "watchpoint" and isinstance(r.hit, WatchpointHit)
    h = r.hit
    assert (h.watchpoint, h.address, h.size, h.access, h.value, h.rip) == (wp, 0x5000, 4, "write", 3, STORE + 7)
    assert v.rip == STORE + 7 and v.eax == 3
    r = vm.run()
    assert (r.stop, r.hit.value) == ("watchpoint", 6)
    vm.remove_watchpoint(wp)
    assert vm.run().stop == "stop"


def test_read_watchpoint_ignores_writes():
    vm = machine(LOOP)
    vm.add_watchpoint(0x5000, 4, "read")
    r = vm.run()
    assert (r.stop, r.hit.access, r.hit.value, vm.vcpu.ebx) == ("watchpoint", "read", 15, 15)
    assert vm.vcpu.rip == addr_of(LOOP.split("hlt")[0])


def test_access_watchpoint_sees_both():
    vm = machine(LOOP)
    vm.add_watchpoint(0x5000, 4, "access")
    kinds = []
    while True:
        r = vm.run()
        if r.stop != "watchpoint":
            break
        kinds.append(r.hit.access)
    assert kinds == ["write"] * 5 + ["read"]


def test_watchpoint_outside_the_accessed_bytes_does_not_fire():
    vm = machine(LOOP)
    vm.add_watchpoint(0x5004, 4, "access")
    assert vm.run().stop == "stop"


def test_physical_watchpoint_sees_an_alias():
    # Linear 0x205000 is mapped to guest-physical 0x5000 (PD entry 1 aliased
    # onto the first 2 MiB): only a physical watchpoint catches the store.
    vm = machine("mov dword ptr [0x205000], 0x1234\nhlt", memory=4 << 20)
    pd = vm.vcpu.cr3 + 0x2000
    vm.write_u64(pd + 8, 0x83)
    vm.vcpu.invvpid()
    lin = vm.add_watchpoint(0x5000, 4, "write")
    assert vm.run().stop == "stop"
    vm.remove_watchpoint(lin)
    vm.vcpu.rip = CODE
    vm.add_watchpoint(0x5000, 4, "write", physical=True)
    r = vm.run()
    assert (r.stop, r.hit.address, r.hit.value) == ("watchpoint", 0x5000, 0x1234)


def test_watchpoint_stops_rep_stos_at_the_iteration():
    vm = machine("mov rdi, 0x6000\nmov ecx, 16\nmov al, 0xaa\nrep stosb\nhlt")
    vm.add_watchpoint(0x6005, 1, "write")
    r = vm.run()
    v = vm.vcpu
    assert (r.stop, r.hit.address, r.hit.size) == ("watchpoint", 0x6005, 1)
    assert (v.rcx, v.rdi) == (10, 0x6006)
    assert vm.read(0x6000, 8) == b"\xaa" * 6 + b"\0\0"
    assert vm.run().stop == "stop" and vm.read(0x6000, 16) == b"\xaa" * 16


def test_watchpoint_errors():
    vm = machine(LOOP)
    with pytest.raises(vtx.ArgumentError):
        vm.add_watchpoint(0x5000, 4, "execute")
    with pytest.raises(vtx.ArgumentError):
        vm.add_watchpoint(0x5000, 0)
    with pytest.raises(vtx.ArgumentError):
        vm.add_watchpoint((1 << 64) - 2, 4)
    with pytest.raises(TypeError):
        vm.add_watchpoint(0x5000, 4, "write", physical=1)


def test_breakpoints_leave_the_guest_state_alone():
    # The host debugger's breakpoints are not the guest's: no DR register
    # changes and the code bytes are the original ones.
    vm = machine(LOOP)
    vm.add_breakpoint(STORE)
    vm.add_watchpoint(0x5000, 4)
    vm.run()
    v = vm.vcpu
    assert (v.dr7, v.dr0) == (0x400, 0)
    assert vm.read(STORE, 3) == vtx.asm("mov [0x5000], eax", bits=64)[:3]


def test_results_equal_an_undebugged_run():
    plain = machine(LOOP)
    plain.run()
    vm = machine(LOOP)
    vm.add_breakpoint(TOP)
    vm.add_watchpoint(0x5000, 4, "access")
    n = 0
    while vm.run().stop != "stop":
        n += 1
    assert n == 5 + 6
    for reg in ("rax", "rbx", "rcx", "rip", "rflags"):
        assert getattr(vm.vcpu, reg) == getattr(plain.vcpu, reg)
    assert vm.vcpu.instructions == plain.vcpu.instructions


def test_snapshot_does_not_carry_breakpoints(tmp_path):
    vm = machine(LOOP)
    vm.add_breakpoint(STORE)
    assert vm.run().stop == "breakpoint"
    vm.save(tmp_path / "s.snap")
    other = vtx.VM.load_snapshot(tmp_path / "s.snap")
    other.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    r = other.run()
    assert (r.stop, other.vcpu.ebx) == ("stop", 15)


def test_physical_breakpoint_through_an_alias():
    # The code at guest-physical 0x1000 runs at linear 0x201000 (PD entry 1
    # aliased onto the first 2 MiB): a linear breakpoint at 0x1000 never
    # fires, a physical one does, with RIP at the alias.
    vm = machine("mov eax, 1\nmov ebx, 2\nhlt", memory=4 << 20)
    v = vm.vcpu
    vm.setup_long_mode(entry=0x201000)
    vm.write_u64(v.cr3 + 0x2000 + 8, 0x83)      # vm.write invalidates the TLB by itself
    vm.add_breakpoint(CODE + 5)
    assert vm.run().stop == "stop"
    vm.setup_long_mode(entry=0x201000)
    vm.write_u64(v.cr3 + 0x2000 + 8, 0x83)
    vm.clear_breakpoints()
    v.rbx = 0
    bp = vm.add_breakpoint(CODE + 5, physical=True)
    r = vm.run()
    assert (r.stop, r.hit.breakpoint, r.hit.rip, v.eax, v.ebx) == ("breakpoint", bp, 0x201005, 1, 0)
    assert vm.run().stop == "stop" and v.ebx == 2


def test_linear_and_physical_breakpoints_together():
    vm = machine(LOOP)
    lin = vm.add_breakpoint(STORE)
    phys = vm.add_breakpoint(TOP, physical=True)
    hits = [vm.run().hit.breakpoint for _ in range(4)]
    assert hits == [phys, lin, phys, lin]


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_random_code_under_the_debugger(bits):
    # Random guest bytes with breakpoints, watchpoints (linear and physical)
    # and the trace on: every run ends in a known way (or a vtx error), the
    # trace counts what retired, and a breakpoint stop is where it says.
    import random
    rng = random.Random(bits)
    total = 0
    stops = set()
    for case in range(40):
        vm = vtx.VM(memory=1 << 20)
        vm.load(CODE, bytes(rng.randrange(256) for _ in range(256)))
        vm.add_vcpu()
        {64: vm.setup_long_mode, 32: vm.setup_protected_mode, 16: vm.setup_real_mode}[bits](entry=CODE)
        vm.default(lambda v, e: rng.choice([vtx.RESUME, vtx.RESUME, vtx.STOP]) if e.instruction_length
                   else vtx.STOP)

        def skip(v, e):
            # A fault: go on one byte further (random code faults often).
            v.rip = (v.rip + 1) & (0xFFFF if bits == 16 else 0xFFFFFFFF)
            return vtx.RETRY
        vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)(skip)
        vm.add_breakpoint(CODE)             # where every run of a case starts, the first stops there
        for _ in range(3):
            vm.add_breakpoint(CODE + rng.randrange(256))
        vm.add_watchpoint(rng.randrange(0x10000), rng.randrange(1, 64), rng.choice(["read", "write", "access"]))
        below = ((vm.vcpu.rsp - 64) & 0xFFFF) if bits == 16 else vm.vcpu.rsp - 64
        vm.add_watchpoint(below, 64, rng.choice(["write", "access"]))        # pushes and calls
        vm.add_watchpoint(rng.randrange(0x10000), rng.randrange(1, 64), "access", physical=True)
        with vm.trace() as t:
            for _ in range(5):
                try:
                    r = vm.run(max_instructions=500)
                except vtx.VtxError:
                    break
                assert r.stop in ("stop", "budget", "halted", "shutdown", "breakpoint", "watchpoint")
                stops.add(r.stop)
                if r.stop == "breakpoint":
                    assert vtx.debug.linear_rip(vm.vcpu) == r.hit.breakpoint.address
                if r.stop in ("stop", "halted", "shutdown"):
                    break
        assert len(t.entries) >= vm.vcpu.instructions
        for e in t.entries:
            assert 1 <= len(e.bytes) <= 15
        total += vm.vcpu.instructions
    assert total > 1000                 # the debugger saw real work
    assert {"breakpoint", "watchpoint"} <= stops
