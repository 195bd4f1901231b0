"""vtx/debug/trace.py and the trace buffer of core/debugger.pxi: every
instruction with its vCPU, mode, CS:RIP and bytes, filtered by address
range and mode in the core."""

import io

import pytest

import vtx
from vtx.debug import TraceEntry

CODE = 0x1000

LOOP = """
    mov ecx, 3
top:
    dec ecx
    jnz top
    hlt
"""


def machine(src, bits=64):
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm(src, bits=bits))
    vm.add_vcpu()
    {64: vm.setup_long_mode, 32: vm.setup_protected_mode, 16: vm.setup_real_mode}[bits](entry=CODE)
    vm.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    return vm


def test_trace_records_every_instruction_in_order():
    vm = machine(LOOP)
    with vm.trace() as t:
        vm.run()
    rips = [e.rip for e in t.entries]
    assert rips == [0x1000, 0x1005, 0x1007, 0x1005, 0x1007, 0x1005, 0x1007, 0x1009]
    e = t.entries[0]
    assert isinstance(e, TraceEntry)
    assert (e.vcpu, e.mode, e.cs, e.address, e.bytes, e.icount) == (0, "long64", 0x18, 0x1000,
                                                                     bytes.fromhex("b903000000"), 0)
    assert [e.icount for e in t.entries] == list(range(8))
    assert t.entries[-1].bytes == b"\xf4"          # the HLT that exits is traced too


def test_trace_format_and_disassembly():
    if vtx.debug.backend() == "none":
        pytest.skip("neither capstone nor objdump is installed")
    vm = machine(LOOP)
    with vm.trace() as t:
        vm.run()
    line = t.entries[0].format()
    assert line.startswith("cpu0 long64 0018:0000000000001000  b9 03 00 00 00")
    assert line.endswith("mov ecx, 3")
    assert t.entries[2].disassembly.startswith("jne")


def test_trace_to_a_callback_and_a_file(tmp_path):
    vm = machine(LOOP)
    seen = []
    with vm.trace(callback=seen.append) as t:
        vm.run()
    assert t.entries is None and len(seen) == 8
    vm.vcpu.rip = CODE
    path = tmp_path / "trace.txt"
    with vm.trace(file=path):
        vm.run()
    lines = path.read_text().splitlines()
    assert len(lines) == 8 and lines[1].startswith("cpu0 long64 0018:0000000000001005  ff c9")
    buf = io.StringIO()
    vm.vcpu.rip = CODE
    with vm.trace(file=buf):
        vm.run()
    assert buf.getvalue().count("\n") == 8


def test_trace_address_range_filter():
    vm = machine(LOOP)
    with vm.trace(start=0x1005, end=0x1006) as t:
        vm.run()
    assert [e.rip for e in t.entries] == [0x1005] * 3


def test_trace_mode_filter_and_real_mode():
    vm = machine("mov ax, 1\nmov bx, 2\nhlt", bits=16)
    with vm.trace(modes=["long64"]) as t:
        vm.run()
    assert t.entries == []
    vm.vcpu.rip = CODE
    with vm.trace(modes="real") as t:
        vm.run()
    assert [(e.mode, e.cs, e.rip) for e in t.entries] == [("real", 0, 0x1000), ("real", 0, 0x1003),
                                                          ("real", 0, 0x1006)]
    assert t.entries[0].format().startswith("cpu0 real   0000:1000  b8 01 00")


def test_trace_buffer_smaller_than_the_run():
    # A full buffer stops the loop in the core, the records go out, and the
    # run goes on without leaving the guest: the result is the same.
    vm = machine("mov ecx, 1000\ntop: dec ecx\njnz top\nhlt")
    with vm.trace(capacity=7) as t:
        r = vm.run()
    assert r.stop == "stop" and len(t.entries) == 2002
    assert [e.icount for e in t.entries] == list(range(2002))


def test_trace_of_one_vcpu():
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm("inc eax\njmp $-2", bits=64))
    vm.load(0x2000, vtx.asm("inc ebx\nhlt", bits=64))
    a, b = vm.add_vcpu(), vm.add_vcpu()
    vm.setup_long_mode(entry=CODE, vcpu=a, tables=0xF0000)
    vm.setup_long_mode(entry=0x2000, vcpu=b, tables=0xE0000)
    vm.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    with b.trace() as t:
        r = vm.run(max_instructions=1000, quantum=10)
    assert (r.stop, r.vcpu, a.eax) == ("stop", b, 5)
    assert [(e.vcpu, e.rip) for e in t.entries] == [(1, 0x2000), (1, 0x2002)]


def test_trace_of_mmio_lists_the_instruction_once():
    vm = machine("mov eax, [0x200000]\nhlt")
    vm.map_mmio(0x200000, 0x1000, lambda vcpu, gpa, size, write, value: 0x55 if not write else None)
    with vm.trace() as t:
        vm.run()
    assert [e.rip for e in t.entries] == [CODE, CODE + 7] and vm.vcpu.eax == 0x55


def test_one_trace_at_a_time_and_errors():
    vm = machine(LOOP)
    t = vm.trace()
    with pytest.raises(vtx.VmStateError):
        vm.trace()
    t.stop()
    t.stop()
    with pytest.raises(vtx.ArgumentError):
        vm.trace(modes=["protected"])
    with pytest.raises(vtx.ArgumentError):
        vm.trace(capacity=0)
    with pytest.raises(TypeError):
        vm.trace(callback=5)


def test_step_while_tracing_goes_to_the_trace():
    vm = machine(LOOP)
    with vm.trace() as t:
        r = vm.vcpu.step()
        vm.vcpu.step()
    assert r.bytes == bytes.fromhex("b903000000")
    assert [e.rip for e in t.entries] == [0x1000, 0x1005]
