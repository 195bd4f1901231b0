"""Many VMs at once: one VM alone, then two at the same time in two threads
and in two processes (vtx.sweep), each running the same guest.

The guest is a tight loop without exits (the core runs it with the GIL
released, ``with nogil`` in vtx/_core.pyx) or the same loop with an OUT, a
VM exit to a Python handler, every ``EXIT_EVERY`` iterations (the handler
takes the GIL).  The figure is the speed-up of running two:
``2 * t(one) / t(two)``, 2.0 when two processors run them fully in parallel,
1.0 when they take turns.  It is printed and kept in the benchmark's
extra_info (``speedup``), with the load average: it depends on how many
idle processors the machine has at the time.  For threads the process's CPU
time over the wall time is printed too: above 1.0 only when both threads ran
at the same moments, which the GIL would forbid (docs/architecture.rst,
"Many VMs at once").
"""

import os
import threading
import time

import pytest

import vtx
from vtx.sweep import default_workers, sweep

LOOPS = 60_000_000
EXIT_EVERY = 1000

GUESTS = {
    "no-exits": f"""
    mov ecx, {LOOPS}
1:  dec ecx
    jnz 1b
    hlt
""",
    "exits": f"""
    mov ecx, {LOOPS}
1:  test ecx, {EXIT_EVERY - 1}
    jnz 2f
    out 0x80, al
2:  dec ecx
    jnz 1b
    hlt
""",
}


def one_vm(kind):
    """Build and run one VM with guest ``kind``; its wall time in seconds
    and its instruction count."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(GUESTS[kind], bits=32, org=0x1000))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(lambda vcpu, exit: vtx.RESUME)
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    t0 = time.perf_counter()
    r = vm.run()
    return time.perf_counter() - t0, r.instructions


def two_in_threads(kind):
    """Wall time, results and the process's CPU time over the wall time: above
    1.0 only if the two threads ran at the same moments (the GIL released)."""
    results = [None, None]

    def work(i):
        results[i] = one_vm(kind)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    c0, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return wall, results, (time.process_time() - c0) / wall


def two_in_processes(kind):
    t0 = time.perf_counter()
    results = sweep(one_vm, [kind, kind], workers=2, kind="process")
    return time.perf_counter() - t0, results, None



@pytest.mark.parametrize("kind", sorted(GUESTS))
@pytest.mark.parametrize("how", ["threads", "processes"])
def test_two_vms_at_once(benchmark, kind, how):
    one_vm(kind)                                 # assemble (cached) and warm up
    single, insns = one_vm(kind)
    run = two_in_threads if how == "threads" else two_in_processes
    wall, results, cpu = benchmark.pedantic(run, args=(kind,), rounds=1, iterations=1)
    assert [n for _, n in results] == [insns, insns]
    speedup = 2 * single / wall
    benchmark.extra_info.update(speedup=round(speedup, 2), one_vm_s=round(single, 3),
                                processors=default_workers(), load=round(os.getloadavg()[0], 2))
    overlap = f", CPU time / wall time {cpu:.2f}" if cpu is not None else ""
    print(f"\n{kind}, two VMs in two {how}: one alone {single * 1e3:.0f} ms, two at once "
          f"{wall * 1e3:.0f} ms: speed-up {speedup:.2f} of 2{overlap} ({default_workers()} processors, "
          f"load average {os.getloadavg()[0]:.1f})")
