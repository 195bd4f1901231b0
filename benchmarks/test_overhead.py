"""The exit-overhead workload suite (vtx/overhead/workloads.py) under
pytest-benchmark, and what the accounting's detail costs.

- ``test_overhead_<workload>``: one round is the workload's ``exiting``
  setting for OPS operations (its ``native`` twin beside it where it has
  one); extra_info holds ops/s, exits per operation, wall ns per exit and
  the modeled cycles per operation under two profiles.  The summary at the
  end prints them as a table.
  The not-exiting setting (the control clear) is measured too where the
  architecture allows one; ``linux_boot`` (minutes a boot) runs one round.
- ``test_accounting_*[on|off]``: the OUT exit round trip and the tight loop
  with the accounting's detail on and off (vtx._core.set_accounting), in
  the same run, so the difference is the detail's cost.
- ``test_accounting_interleaved[out_exit|tight_loop]``: the same two guests,
  the detail switched on and off every other run within each round, so
  that a change in the machine's load (other processes on a shared host)
  falls on both settings alike; the summary gives each setting's best and
  median run and their difference.  Read this one on a busy machine: the
  separate [on] and [off] benchmarks run minutes apart.

Save a run with --benchmark-autosave; compare with --benchmark-compare.
"""

import statistics
import time

import pytest
from conftest import OUT_LOOP, EXIT_COUNT, make_vm, per_exit, record, rewind

import vtx
from vtx.overhead import WORKLOADS, run_workload
from vtx.overhead.model import price

OPS = 5000
PROFILES = ("core2-merom", "haswell-coffeelake")
TIGHT = 1_000_000


def _describe(benchmark, m):
    benchmark.extra_info["overhead"] = {
        "ops_per_s": m.ops_per_s, "exits_per_op": m.exits_per_op, "ns_per_exit": m.ns_per_exit,
        **{f"cycles_per_op[{p}]": price(m.counts(), p).total / m.ops for p in PROFILES}}


@pytest.mark.parametrize("variant", ["exiting", "not-exiting", "native"])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_overhead(benchmark, name, variant):
    if variant not in WORKLOADS[name].variants:
        pytest.skip(f"{name} has no {variant} setting")
    if WORKLOADS[name].runner is not None:
        # A mixed workload (a Linux boot) takes minutes: one round.
        m = benchmark.pedantic(run_workload, (name, variant, OPS), rounds=1, iterations=1)
    else:
        m = benchmark(run_workload, name, variant, OPS)
    if m.wall_ns == 0:
        pytest.skip(m.note)            # its assets are missing (linux_boot)
    _describe(benchmark, m)
    record(benchmark, "ns_per_op", lambda mean: mean / OPS * 1e9)


@pytest.mark.parametrize("detail", ["on", "off"])
def test_accounting_out_exit(benchmark, detail):
    vm = make_vm(OUT_LOOP)
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(lambda vcpu, exit: vtx.RESUME)

    def run():
        rewind(vm)
        return vm.run()
    vtx._core.set_accounting(detail == "on")
    try:
        r = benchmark(run)
    finally:
        vtx._core.set_accounting(True)
    assert r.exits[vtx.ExitReason.IO_INSTRUCTION] == EXIT_COUNT
    per_exit(benchmark, EXIT_COUNT)


@pytest.mark.parametrize("detail", ["on", "off"])
def test_accounting_tight_loop(benchmark, detail):
    vm = make_vm(f"""
        mov ecx, {TIGHT}
    1:  dec ecx
        jnz 1b
        hlt
    """)

    def run():
        rewind(vm)
        return vm.run()
    vtx._core.set_accounting(detail == "on")
    try:
        r = benchmark(run)
    finally:
        vtx._core.set_accounting(True)
    assert r.instructions == 1 + 2 * TIGHT
    record(benchmark, "ns_per_instr", lambda mean: mean / (1 + 2 * TIGHT) * 1e9)


#: The interleaved comparison's runs are short (about half a millisecond),
#: so that on a shared machine many of them run without being preempted,
#: and its best runs are those.
SHORT_EXITS = 2000
SHORT_TIGHT = 100_000


def _interleaved_guest(what):
    """The guest of the interleaved comparison and the check of its run;
    the unit the summary divides by (exits or instructions)."""
    if what == "out_exit":
        vm = make_vm(f"""
            mov ecx, {SHORT_EXITS}
        1:  out 0x80, al
            dec ecx
            jnz 1b
            hlt
        """)
        vm.on(vtx.ExitReason.IO_INSTRUCTION)(lambda vcpu, exit: vtx.RESUME)

        def check(r):
            assert r.exits[vtx.ExitReason.IO_INSTRUCTION] == SHORT_EXITS
        return vm, check, SHORT_EXITS
    vm = make_vm(f"""
        mov ecx, {SHORT_TIGHT}
    1:  dec ecx
        jnz 1b
        hlt
    """)

    def check(r):
        assert r.instructions == 1 + 2 * SHORT_TIGHT
    return vm, check, 1 + 2 * SHORT_TIGHT


ROUNDS = 200


@pytest.mark.parametrize("what", ["out_exit", "tight_loop"])
def test_accounting_interleaved(benchmark, what):
    vm, check, units = _interleaved_guest(what)
    times = {True: [], False: []}
    turn = [0]

    def one(on):
        vtx._core.set_accounting(on)
        rewind(vm)
        t0 = time.perf_counter_ns()
        r = vm.run()
        times[on].append(time.perf_counter_ns() - t0)
        check(r)

    def pair():
        # Which goes first alternates too, so neither setting always runs
        # on the caches the other warmed.
        order = (True, False) if turn[0] % 2 == 0 else (False, True)
        turn[0] += 1
        for on in order:
            one(on)
    try:
        pair()                          # warm-up: blocks translated, buffers pooled
        times[True].clear()
        times[False].clear()
        benchmark.pedantic(pair, rounds=ROUNDS, iterations=1)
    finally:
        vtx._core.set_accounting(True)
    unit = "ns_per_exit" if what == "out_exit" else "ns_per_instr"
    benchmark.extra_info["interleaved"] = {
        "unit": unit, "runs": len(times[True]),
        **{f"{k}_{stat}": f(times[k == "on"]) / units
           for k in ("on", "off") for stat, f in (("min", min), ("median", statistics.median))}}
