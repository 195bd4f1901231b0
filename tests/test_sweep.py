"""vtx.sweep: independent VMs fanned out over processes and threads, results
in the order of the parameters, exceptions passed on."""

import concurrent.futures as cf

import pytest

import vtx
from conftest import needs_as
from vtx.sweep import default_workers, sweep


def loop_guest(n):
    """A VM that counts ECX down from n: (n, instructions retired, ECX at the HLT)."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("1: dec ecx\njnz 1b\nhlt", bits=32, org=0x1000))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)
    vm.vcpu.ecx = n
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    r = vm.run()
    return n, r.instructions, vm.vcpu.ecx


def fails(n):
    if n == 3:
        raise ValueError("three")
    return n


EXPECTED = [(n, 2 * n, 0) for n in (10, 1000, 5, 70000)]


@needs_as
@pytest.mark.parametrize("kind", ["process", "thread", "serial"])
def test_sweep_runs_vms_in_order(kind):
    assert sweep(loop_guest, [10, 1000, 5, 70000], workers=2, kind=kind) == EXPECTED


@needs_as
def test_sweep_with_an_executor_of_ones_own():
    with cf.ThreadPoolExecutor(max_workers=2) as ex:
        assert sweep(loop_guest, [10, 1000, 5, 70000], executor=ex) == EXPECTED


def test_sweep_errors():
    with pytest.raises(ValueError, match="three"):
        sweep(fails, range(5), workers=2)
    with pytest.raises(ValueError, match="workers is a positive int"):
        sweep(fails, [1], workers=0)
    with pytest.raises(ValueError, match="kind is 'process', 'thread' or 'serial'"):
        sweep(fails, [1], kind="cluster")
    assert sweep(fails, []) == []
    assert default_workers() >= 1


@needs_as
def test_a_run_releases_the_gil():
    """While one thread runs a guest without exits for a few hundred
    milliseconds, another thread keeps running Python: the core gives up the
    GIL for the guest's execution (with nogil in vtx/_core.pyx), so VMs in
    threads can run at the same time.  Were the GIL held, this thread would
    not get it back before the run ended."""
    import threading
    import time
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("1: dec ecx\njnz 1b\nhlt", bits=32, org=0x1000))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)
    vm.vcpu.ecx = 150_000_000
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    done = threading.Event()
    result = []
    t = threading.Thread(target=lambda: (result.append(vm.run()), done.set()))
    ticks = []
    t0 = time.perf_counter()
    t.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    t.join()
    run_time = time.perf_counter() - t0
    assert result[0].instructions == 300_000_000 and vm.vcpu.ecx == 0
    gaps = [b - a for a, b in zip([t0] + ticks, ticks)]
    assert run_time > 0.2 and len(ticks) > 20
    assert max(gaps) < run_time / 2, (max(gaps), run_time)
