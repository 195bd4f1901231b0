"""Bad input never crashes the host (docs/architecture.rst, decision 13): random guest
bytes, instructions cut off at the end of guest memory, jumps and memory
operands outside it, and wrong use of the Python API all end in an
architectural outcome (a VM exit, the budget, a halt) or a clear Python
exception, never a crash, a read outside a host buffer or a non-vtx
exception out of the run loop.
"""

import os
import random
import subprocess
import sys

import pytest

import vtx
from vtx import ExitReason as R, VmcsField as F

MODES = {"real": 16, "protected": 32, "long": 64}
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def run_python(code, timeout):
    """Run code in a child interpreter (with -X faulthandler) that imports
    this checkout's vtx; a crash there cannot take the test session down."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_random_programs(seed, count, size=64, budget=1000):
    """Run `count` programs of `size` random bytes in each of the three
    modes; return the outcomes.  Raises AssertionError for anything that is
    not an exit, the budget, a halt or a vtx.VtxError."""
    rng = random.Random(seed)
    outcomes = {}
    for i in range(count):
        code = bytes(rng.getrandbits(8) for _ in range(size))
        for mode in MODES:
            vm = vtx.VM(memory=1 << 20)
            vm.load(0x1000, code)
            vm.add_vcpu()
            getattr(vm, f"setup_{mode}_mode")(entry=0x1000)
            vm.default(lambda v, e: vtx.STOP)
            try:
                r = vm.run(max_instructions=budget)
            except vtx.VtxError as e:
                key = type(e).__name__
            except Exception as e:          # noqa: BLE001 - the point of the test
                raise AssertionError(f"program {i} ({code.hex()}) in {mode} mode raised "
                                     f"{type(e).__name__}: {e}") from e
            else:
                assert r.stop in ("stop", "budget", "halted"), (i, mode, r)
                if r.stop == "stop":
                    assert isinstance(r.exit, vtx.Exit)
                    key = r.exit.name
                else:
                    assert r.exit is None
                    key = r.stop
                    if r.stop == "budget":
                        assert r.instructions == budget
            outcomes[(mode, key)] = outcomes.get((mode, key), 0) + 1
    return outcomes


def test_random_guest_bytes():
    outcomes = run_random_programs(seed=20240501, count=300)
    assert sum(outcomes.values()) == 900
    # Random bytes mostly fault: every mode sees exception exits.
    for mode in MODES:
        assert outcomes.get((mode, "EXCEPTION_OR_NMI"), 0) > 0


def test_random_guest_bytes_under_faulthandler():
    """The same kind of run in a child interpreter with -X faulthandler: a
    crash would show as a signal and a C-level traceback, not take the test
    session down."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('bad_input', {os.path.abspath(__file__)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "out = m.run_random_programs(seed=7, count=300)\n"
        "assert sum(out.values()) == 900, out\n"
        "print('ok', sorted(out.items()))\n"
    )
    p = run_python(code, timeout=600)
    assert p.returncode == 0, f"child exited with {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert p.stdout.startswith("ok")


def test_random_memory_and_registers_with_resume():
    """Random code filling 16 KiB, random registers and exception bitmaps,
    and a handler that steps over exiting instructions: still only exits,
    budgets and vtx errors."""
    rng = random.Random(99)
    for i in range(40):
        for mode in MODES:
            vm = vtx.VM(memory=1 << 20)
            vm.load(0, bytes(rng.getrandbits(8) for _ in range(0x4000)))
            vm.add_vcpu()
            getattr(vm, f"setup_{mode}_mode")(entry=0x1000)
            v = vm.vcpu
            for reg in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp"):
                setattr(v, reg, rng.choice([0, rng.getrandbits(64), rng.getrandbits(16), 0xFFFFF000]))
            v.vmwrite(F.EXCEPTION_BITMAP, rng.choice([0, 0xFFFFFFFF, rng.getrandbits(32)]))
            vm.default(lambda vcpu, e: vtx.RESUME if e.instruction_length else vtx.STOP)
            try:
                r = vm.run(max_instructions=2000)
            except vtx.VtxError:
                continue
            assert r.stop in ("stop", "budget", "halted")


# ---------------------------------------------------------------------------
# Instructions cut off at the end of guest memory
# ---------------------------------------------------------------------------

MEM = 0x20000


@pytest.mark.parametrize("mode,tail", [
    ("protected", b"\xB8\x01\x02"),          # mov eax, imm32 with 2 of 4 immediate bytes
    ("protected", b"\x0F"),                  # an escape byte and nothing after it
    ("protected", b"\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66"),   # prefixes only
    ("long", b"\x48\xB8\x11\x22\x33\x44"),   # mov rax, imm64 cut off
    ("long", b"\x8B\x84\x24"),               # mov eax, [rsp + disp32]: no displacement
    ("real", b"\xB8\x01"),                   # mov ax, imm16 with 1 of 2 bytes
])
def test_truncated_instruction_at_end_of_memory(mode, tail):
    vm = vtx.VM(memory=MEM)
    start = MEM - len(tail)
    vm.load(start, tail)
    vm.add_vcpu()
    if mode == "real":
        # CS base 1FF00: IP 0xFE.. stays inside the 64 KiB limit while the
        # linear address runs off the end of memory.
        vm.setup_real_mode(entry=start - 0x1FF00, cs=0x1FF0)
    else:
        getattr(vm, f"setup_{mode}_mode")(entry=start, tables=0x10000)
    vm.default(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=100)
    ex = r.exit
    assert r.stop == "stop"
    assert ex.reason in (R.EPT_VIOLATION, R.EXCEPTION_OR_NMI)
    if ex.reason == R.EPT_VIOLATION:
        assert ex.fetch and not ex.read and not ex.write
        assert ex.gpa == MEM and ex.gla == MEM
    assert vm.vcpu.rip == (start - 0x1FF00 if mode == "real" else start)


@pytest.mark.parametrize("mode", MODES)
def test_running_off_the_end_of_memory(mode):
    vm = vtx.VM(memory=MEM)
    vm.load(MEM - 2, b"\x90\x90")
    vm.add_vcpu()
    if mode == "real":
        vm.setup_real_mode(entry=0xFE, cs=0x1FF0)
    else:
        getattr(vm, f"setup_{mode}_mode")(entry=MEM - 2, tables=0x10000)
    vm.default(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=100)
    assert r.instructions == 2
    assert r.exit.reason == R.EPT_VIOLATION and r.exit.fetch and r.exit.gpa == MEM


def test_real_mode_fetch_past_cs_limit():
    vm = vtx.VM(memory=MEM)
    vm.load(0xFFFF, b"\x90")
    vm.add_vcpu()
    vm.setup_real_mode(entry=0xFFFF)
    vm.default(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=10)
    # IP wraps to 0 after the NOP at FFFF (16-bit IP), so the guest keeps
    # running inside memory: no host access outside the buffer.
    assert r.stop in ("budget", "stop") and r.instructions >= 1


# ---------------------------------------------------------------------------
# Jumps and memory operands outside guest memory
# ---------------------------------------------------------------------------

def guest(src, mode, memory=1 << 20, **setup):
    vm = vtx.VM(memory=memory)
    vm.load(0x1000, vtx.asm(src, bits=MODES[mode], org=0x1000))
    vm.add_vcpu()
    getattr(vm, f"setup_{mode}_mode")(entry=0x1000, **setup)
    vm.default(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=1000)
    assert r.stop == "stop"
    return vm, r.exit


@pytest.mark.parametrize("mode,src,reason,check", [
    ("protected", "mov eax, 0x80000000\njmp eax", R.EPT_VIOLATION, lambda e: e.fetch and e.gpa == 0x80000000),
    ("protected", "mov eax, 0xfffffff0\njmp eax", R.EPT_VIOLATION, lambda e: e.fetch and e.gpa == 0xFFFFFFF0),
    ("long", "mov rax, 0x100000000\njmp rax", R.EXCEPTION_OR_NMI,
     lambda e: e.vector == 14 and e.qualification == 0x100000000),
    ("long", "mov rax, 0x8000000000000000\njmp rax", R.EXCEPTION_OR_NMI, lambda e: e.vector == 13),
    ("long", "mov rax, 0x200000\ncall rax", R.EPT_VIOLATION, lambda e: e.fetch and e.gpa == 0x200000),
    ("real", "jmp 0xf000", R.EPT_VIOLATION, lambda e: e.fetch and e.gpa == 0xF000),
])
def test_jump_outside_memory(mode, src, reason, check):
    vm, ex = guest(src, mode, memory=0x8000 if mode == "real" else 1 << 20)
    assert ex.reason == reason and check(ex)


@pytest.mark.parametrize("mode,src,reason,check", [
    ("protected", "mov eax, [0xfffffff0]", R.EPT_VIOLATION, lambda e: e.read and e.gpa == 0xFFFFFFF0),
    # the last byte lies beyond the 4 GiB limit of DS: #GP(0), not a wrap
    ("protected", "mov eax, [0xfffffffe]", R.EXCEPTION_OR_NMI, lambda e: e.vector == 13 and e.error_code == 0),
    # a dword that starts in the last page of memory and ends beyond it
    ("protected", "mov eax, [0xffffe]", R.EPT_VIOLATION, lambda e: e.read and e.gpa == 0x100000),
    ("protected", "push dword ptr [0x200000]", R.EPT_VIOLATION, lambda e: e.read and e.gpa == 0x200000),
    ("long", "mov rbx, 0x7ffffffffff8\nmov rax, [rbx]", R.EXCEPTION_OR_NMI, lambda e: e.vector == 14),
    ("long", "mov rbx, 0x7ffffffffffc\nmov rax, [rbx]", R.EXCEPTION_OR_NMI, lambda e: e.vector == 13),
    ("long", "mov rbx, 0xfffff\nmov rax, [rbx]", R.EPT_VIOLATION, lambda e: e.read and e.gpa == 0x100000),
    ("real", "mov ax, 0xffff\nmov ds, ax\nmov eax, [0xfffc]", R.EPT_VIOLATION,
     lambda e: e.read and e.gpa == 0x10FFEC),
    ("real", "mov bx, 0xffff\nmov ax, [bx]", R.EXCEPTION_OR_NMI, lambda e: e.vector == 13),
])
def test_memory_operand_outside_memory(mode, src, reason, check):
    vm, ex = guest(src, mode)
    assert ex.reason == reason and check(ex)


def test_straddling_store_writes_nothing():
    """A store whose second page is outside guest memory exits before any
    byte is written (both pages are translated first)."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("mov dword ptr [0xffffe], 0x11223344", bits=32, org=0x1000))
    vm.write(0xFFFFE, b"\xAA\xBB")
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000, tables=0x10000)
    vm.default(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=10)
    assert r.exit.reason == R.EPT_VIOLATION and r.exit.write and r.exit.gpa == 0x100000
    assert vm.read(0xFFFFE, 2) == b"\xAA\xBB"


def _priv_vm():
    base = vtx._core.PRIV_BASE
    src = f"mov rax, {base:#x}\nmov dword ptr [rax], 0x41414141\nhlt"
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(src, bits=64, org=0x1000))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    # Map linear PRIV_BASE to guest-physical PRIV_BASE with a 1 GiB page:
    # PML4 entry 0 (PRIV_BASE < 2^39), PDPT entry PRIV_BASE >> 30.
    pdpt = (1 << 20) - 0x8000 + 0x2000
    vm.write_u64(pdpt + 8 * ((base >> 30) & 511), base | 0x83)
    vm.default(lambda vcpu, e: vtx.STOP)
    return vm, base


def test_guest_cannot_reach_private_memory():
    """The hosted hypervisor's private memory (VMCS, bitmaps, EPT) sits at
    PRIV_BASE above guest RAM; EPT does not map it, so a guest access there
    is an EPT violation, not a write into the VMCS."""
    vm, base = _priv_vm()
    before = bytes(vm._priv)
    r = vm.run(max_instructions=100)
    assert r.exit.reason == R.EPT_VIOLATION and r.exit.write and r.exit.gpa == base
    changed = [i for i in range(len(before)) if before[i] != vm._priv[i]]
    assert all(0 <= i < 0x1000 for i in changed)      # only exit information in the VMCS


def test_guest_without_ept_cannot_reach_private_memory():
    """Without EPT guest-physical addresses are host-physical, and only the
    guest's own RAM backs them: the access stops the run with a
    GuestMemoryError, and the private memory is untouched."""
    vm, base = _priv_vm()
    v = vm.vcpu
    v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, 0)
    before = bytes(vm._priv[0x1000:])
    with pytest.raises(vtx.GuestMemoryError) as ei:
        vm.run(max_instructions=100)
    assert f"{base:#x}" in str(ei.value)
    assert bytes(vm._priv[0x1000:]) == before


# ---------------------------------------------------------------------------
# Wrong use of the Python API
# ---------------------------------------------------------------------------

@pytest.fixture
def vm():
    m = vtx.VM(memory=1 << 16)
    m.add_vcpu()
    return m


@pytest.mark.parametrize("name", ["foo", "eaxx", "cr1", "xmm16", "r16", "RAX", "_c"])
def test_unknown_register_names(vm, name):
    v = vm.vcpu
    with pytest.raises(vtx.RegisterError) as ei:
        getattr(v, name)
    assert isinstance(ei.value, AttributeError) and name in str(ei.value)
    with pytest.raises(vtx.RegisterError):
        setattr(v, name, 1)
    assert not hasattr(v, name)
    assert getattr(v, name, "default") == "default"


def test_read_only_attributes(vm):
    v = vm.vcpu
    for name in ("launched", "instructions", "entries", "machine"):
        with pytest.raises(AttributeError):
            setattr(v, name, 1)


@pytest.mark.parametrize("name,bits", [("rax", 64), ("eax", 32), ("ax", 16), ("al", 8), ("ah", 8),
                                       ("r15", 64), ("r8d", 32), ("rip", 64), ("cr0", 64), ("rflags", 64)])
def test_register_values_must_fit(vm, name, bits):
    v = vm.vcpu
    with pytest.raises(ValueError):
        setattr(v, name, 1 << bits)
    with pytest.raises(ValueError):
        setattr(v, name, -(1 << bits))
    for bad in ("1", 1.0, None, b"\x01", True):
        with pytest.raises(TypeError):
            setattr(v, name, bad)
    setattr(v, name, (1 << bits) - 1)
    assert getattr(v, name) == (1 << bits) - 1
    setattr(v, name, -1)
    assert getattr(v, name) == (1 << bits) - 1


def test_segment_and_table_values(vm):
    v = vm.vcpu
    with pytest.raises(TypeError):
        v.cs = (0, 0, 0xFFFF, 0x9B)
    with pytest.raises(TypeError):
        v.gdtr = vtx.Segment(0, 0, 0, 0)
    with pytest.raises(ValueError):
        vtx.Segment(0x10000, 0, 0, 0)
    with pytest.raises(ValueError):
        vtx.Segment(0, 1 << 64, 0, 0)
    with pytest.raises(ValueError):
        vtx.DescriptorTable(0, 1 << 32)
    with pytest.raises(TypeError):
        vtx.Segment("0", 0, 0, 0)


@pytest.mark.parametrize("addr,data", [
    ((1 << 16) - 1, b"ab"),          # one byte past the end
    (1 << 16, b"a"),
    (-1, b"a"),
    (1 << 64, b"a"),
    (0, bytes((1 << 16) + 1)),
])
def test_load_outside_memory(vm, addr, data):
    with pytest.raises(vtx.GuestMemoryError) as ei:
        vm.load(addr, data)
    assert isinstance(ei.value, IndexError)
    with pytest.raises(vtx.GuestMemoryError):
        vm.write(addr, data)


@pytest.mark.parametrize("addr,size", [((1 << 16) - 1, 2), (0, (1 << 16) + 1), (-1, 1), (0, -1), (1 << 70, 1)])
def test_read_outside_memory(vm, addr, size):
    with pytest.raises(vtx.GuestMemoryError):
        vm.read(addr, size)


def test_memory_edges_are_fine(vm):
    vm.load((1 << 16) - 2, b"ab")
    assert vm.read((1 << 16) - 2, 2) == b"ab"
    assert vm.read(1 << 16, 0) == b""
    assert vm.read_u16((1 << 16) - 2) == 0x6261
    with pytest.raises(vtx.GuestMemoryError):
        vm.read_u32((1 << 16) - 2)
    for bad in ("abc", [1, 2], 3, None):
        with pytest.raises(TypeError):
            vm.load(0, bad)
    with pytest.raises(TypeError):
        vm.read(0.0, 1)
    with pytest.raises(TypeError):
        vm.memory[0:1] = b"x"          # the view is read-only
    # after all the failed calls the VM runs as before
    vm.load(0x1000, vtx.asm("hlt", bits=16))
    vm.setup_real_mode(entry=0x1000)
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    assert vm.run().exit.reason == 12


@pytest.mark.parametrize("bad", [lambda v, e: None, lambda v, e: 0, lambda v, e: "stop",
                                 lambda v, e: [vtx.STOP], lambda v, e: vtx.Action])
def test_handler_returning_garbage(bad):
    m = vtx.VM(memory=1 << 16)
    m.load(0x1000, vtx.asm("cpuid\nhlt", bits=16))
    m.add_vcpu()
    m.setup_real_mode(entry=0x1000)
    m.on(R.CPUID)(bad)
    with pytest.raises(vtx.HandlerReturnError) as ei:
        m.run()
    assert isinstance(ei.value, TypeError)
    # the guest is still at the CPUID; a good handler continues it
    m.on(R.CPUID)(lambda v, e: vtx.RESUME)
    m.on(R.HLT)(lambda v, e: vtx.STOP)
    assert m.run().exit.reason == 12


def test_no_vcpu():
    m = vtx.VM(memory=1 << 16)
    for call in (m.run, lambda: m.vcpu, lambda: m.setup_real_mode(entry=0),
                 lambda: m.setup_protected_mode(entry=0), lambda: m.setup_long_mode(entry=0)):
        with pytest.raises(vtx.VmStateError) as ei:
            call()
        assert isinstance(ei.value, RuntimeError)
    assert m.vcpus == ()


def test_vcpu_limit(vm):
    v = vm.vcpu
    while len(vm.vcpus) < vtx.vm.MAX_VCPUS:
        vm.add_vcpu()
    with pytest.raises(vtx.VmStateError, match="64 vCPUs"):
        vm.add_vcpu()
    assert len(vm.vcpus) == 64 and vm.vcpus[0] is v


@pytest.mark.parametrize("size", [0, -4096, 4095, 4097, 1 << 20 | 1, vtx._core.MAX_RAM + 4096, 1 << 64, 1 << 100])
def test_bad_vm_sizes(size):
    with pytest.raises(ValueError):
        vtx.VM(memory=size)


@pytest.mark.parametrize("size", [1.5, "4096", None, True, 4096.0])
def test_vm_size_types(size):
    with pytest.raises(TypeError):
        vtx.VM(memory=size)


def test_bad_setup_arguments(vm):
    for call in (lambda: vm.setup_real_mode(entry=0x10000), lambda: vm.setup_real_mode(entry=-1),
                 lambda: vm.setup_real_mode(entry=0, cs=0x10000),
                 lambda: vm.setup_protected_mode(entry=0, tables=1 << 16),
                 lambda: vm.setup_protected_mode(entry=0, tables=0x1001),
                 lambda: vm.setup_long_mode(entry=0, tables=-0x1000)):
        with pytest.raises(ValueError):
            call()


def test_bad_handler_registration(vm):
    with pytest.raises(ValueError):
        vm.on("NOT_A_REASON")
    with pytest.raises(ValueError):
        vm.on(999)
    with pytest.raises(TypeError):
        vm.on(1.5)
    with pytest.raises(TypeError):
        vm.on()
    with pytest.raises(TypeError):
        vm.on(R.HLT)(42)
    with pytest.raises(TypeError):
        vm.default("not callable")


@pytest.mark.parametrize("mode", MODES)
def test_vmwrite_garbage_then_run_fails_cleanly(mode):
    """Arbitrary VMCS contents end in a VM-entry failure, an exit, a budget or
    a clean vtx error, never a crash."""
    from vtx.spec import FIELDS, MODEL_FIELDS, field_size
    FIELDS = [row for row in FIELDS if row[0] in MODEL_FIELDS]
    rng = random.Random(5)
    m = vtx.VM(memory=1 << 20)
    m.load(0x1000, vtx.asm("nop\nhlt", bits=MODES[mode]))
    v = m.add_vcpu()
    getattr(m, f"setup_{mode}_mode")(entry=0x1000)
    m.default(lambda vcpu, e: vtx.STOP)
    good = bytes(m._priv)
    ram = bytes(m.memory)
    outcomes = set()
    for i in range(150):
        m._priv[:] = good
        m.load(0, ram)
        for _ in range(rng.randint(1, 3)):
            name, enc, _ = FIELDS[rng.randrange(len(FIELDS))]
            v.vmwrite(enc, rng.getrandbits(8 * field_size(enc)))
        try:
            r = m.run(max_instructions=50)
        except vtx.VtxError as e:
            outcomes.add(type(e).__name__)
        else:
            # "shutdown": a VMX abort, when the exit could not process a
            # random VM-exit MSR-store or MSR-load area (SDM 28.7)
            assert r.stop in ("stop", "budget", "halted", "shutdown")
            if r.stop == "shutdown":
                assert int.from_bytes(m._priv[4:8], "little") in (1, 4)
            outcomes.add(r.stop)
    assert "VmEntryError" in outcomes


# ---------------------------------------------------------------------------
# Public constructors and methods of the extension that once crashed or gave
# errors of the wrong type
# ---------------------------------------------------------------------------

def test_vcpu_of_none_is_a_type_error():
    """VCpu(None).rax once dereferenced a NULL machine and killed the
    interpreter."""
    with pytest.raises(TypeError, match="Machine"):
        vtx.VCpu(None)
    with pytest.raises(TypeError):
        vtx.VCpu(object())
    with pytest.raises(TypeError):
        vtx.VCpu()


def test_machine_and_host_memory_arguments():
    M = vtx._core.Machine
    for bad in (0, -4096, 4097, 1 << 40, 1.0, None, True):
        with pytest.raises((vtx.ArgumentError, TypeError)):
            M(bad, 4096)
    with pytest.raises(vtx.ArgumentError, match="model's limit"):
        M(vtx._core.MAX_RAM + 4096, 4096)
    with pytest.raises(vtx.ArgumentError):
        vtx._core.HostMemory(100, "x")


def test_host_memory_views_outlive_the_vm():
    """A memoryview of guest memory keeps its mapping alive after the VM is
    gone (no use after unmap)."""
    vm = vtx.VM(memory=1 << 16)
    vm.write(0x100, b"kept")
    view = vm.memory
    del vm
    import gc
    gc.collect()
    assert bytes(view[0x100:0x104]) == b"kept"


@pytest.mark.parametrize("i", [-1, 8, 1000, 1 << 30])
def test_segment_register_numbers_are_bounded(vm, i):
    with pytest.raises(vtx.ArgumentError, match=r"\[0, 7\]"):
        vm.vcpu._get_segment(i)
    with pytest.raises(vtx.ArgumentError, match=r"\[0, 7\]"):
        vm.vcpu._set_segment(i, vtx.Segment(0, 0, 0, 0), "x")


def test_a_large_vm_costs_address_space_not_memory():
    """64 GiB of guest memory (more than this machine has) is reserved, not
    committed: the VM is made, and the guest can use its last page."""
    vm = vtx.VM(memory=64 << 30)
    vm.load(0x1000, b"\x48\xa3" + (vm.memory_size - 8).to_bytes(8, "little") + b"\xf4")   # mov [top-8], rax; hlt
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000, tables=0x100000)
    # setup_long_mode maps the first 4 GiB; map the top 2 MiB of RAM too.
    top = vm.memory_size - (2 << 20)
    pdpt = vm.read_u64(vm.vcpu.cr3) & ~0xFFF          # PML4[0] covers the first 512 GiB
    pd = 0x200000
    vm.write(pd, bytes(4096))
    vm.write_u64(pd + 8 * ((top >> 21) & 511), top | 0x83)     # a 2 MiB page
    vm.write_u64(pdpt + 8 * ((top >> 30) & 511), pd | 3)
    vm.vcpu.rax = 0x1122334455667788
    vm.on(R.HLT)(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=10)
    assert r.exit.reason == R.HLT
    assert vm.read_u64(vm.memory_size - 8) == 0x1122334455667788


def test_host_refusing_memory_is_a_clear_error():
    """Under an address-space limit the mapping fails: HostMemoryError says
    how much was asked and what the host answered (not a bare OSError)."""
    code = (
        "import re, resource, vtx\n"
        # 2 GiB above what the process has mapped (which is terabytes under
        # AddressSanitizer, whose shadow memory counts too).
        "used = int(re.search(r'VmSize:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + (2 << 30), used + (2 << 30)))\n"
        "try:\n"
        "    vtx.VM(memory=16 << 30)\n"
        "except vtx.HostMemoryError as e:\n"
        "    assert isinstance(e, MemoryError)\n"
        "    print('ok', e)\n"
    )
    p = run_python(code, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ok guest memory: the host refused to map 0x400000000 bytes"), p.stdout


def test_host_writes_while_the_guest_runs_in_another_thread():
    """A VM is driven by one thread at a time: while a run is in the guest
    (without the GIL), another thread's write to guest memory and a second
    run() are refused with VmStateError instead of racing the decode cache."""
    import threading
    vm = vtx.VM(memory=1 << 16)
    vm.load(0x1000, b"\xeb\xfe")                 # jmp $
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", vm.run(max_instructions=100_000_000)))
    t.start()
    refused = {"write": 0, "run": 0}
    while t.is_alive():
        try:
            vm.write(0x2000, b"x")
        except vtx.VmStateError:
            refused["write"] += 1
        try:
            vm.run(max_instructions=1)
        except vtx.VmStateError:
            refused["run"] += 1
    t.join()
    assert result["r"].stop == "budget" and result["r"].instructions == 100_000_000
    assert refused["write"] > 0 and refused["run"] > 0
