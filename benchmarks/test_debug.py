"""What the debugger costs (vtx/debug, core/debugger.pxi): the tight loop of
test_interpreter.py with nothing set (the figure to compare with
test_vtx_tight_loop before the debugger existed), with a breakpoint and a
watchpoint that never hit (every instruction on the one-at-a-time debug
path), and with the instruction trace on (records delivered, not
disassembled)."""

import pytest

from conftest import make_vm, record, rewind
from test_interpreter import INSNS, TIGHT_LOOP

BITS = 32


def _loop(benchmark, setup):
    vm = make_vm(TIGHT_LOOP[BITS], BITS)
    setup(vm)

    def run():
        rewind(vm, BITS)
        return vm.run()

    r = benchmark(run)
    assert r.stop == "stop" and r.instructions == INSNS[BITS] and vm.vcpu.ecx == 0
    benchmark.extra_info["guest_instructions"] = INSNS[BITS]
    record(benchmark, "mips", lambda mean: INSNS[BITS] / mean / 1e6)
    return vm


def test_debug_off(benchmark):
    _loop(benchmark, lambda vm: None)


def test_debug_breakpoint_not_hit(benchmark):
    _loop(benchmark, lambda vm: vm.add_breakpoint(0x8000))


def test_debug_watchpoint_not_hit(benchmark):
    _loop(benchmark, lambda vm: vm.add_watchpoint(0x8000, 4, "access"))


def test_debug_trace(benchmark):
    # A shorter loop: every instruction becomes a Python TraceEntry.
    vm = make_vm("mov ecx, 50000\n1: dec ecx\njnz 1b\nhlt", BITS)
    tracer = vm.trace(callback=lambda e: None, capacity=65536)

    def run():
        rewind(vm, BITS)
        return vm.run()

    r = benchmark(run)
    tracer.stop()
    assert r.instructions == 100_001
    record(benchmark, "us_per_traced_insn", lambda mean: mean / 100_001 * 1e6)


@pytest.mark.parametrize("steps", [1000])
def test_debug_step(benchmark, steps):
    vm = make_vm(TIGHT_LOOP[BITS], BITS)

    def run():
        rewind(vm, BITS)
        for _ in range(steps):
            vm.vcpu.step()

    benchmark(run)
    record(benchmark, "us_per_step", lambda mean: mean / steps * 1e6)
