"""The exit-overhead workload suite (vtx/overhead/workloads.py) under
pytest-benchmark, and what the accounting's detail costs.

- ``test_overhead_<workload>``: one round is the workload's ``exiting``
  setting for OPS operations (its ``native`` twin beside it where it has
  one); extra_info holds ops/s, exits per operation, wall ns per exit and
  the modeled cycles per operation under two profiles.  The summary at the
  end prints them as a table.
- ``test_accounting_*[on|off]``: the OUT exit round trip and the tight loop
  with the accounting's detail on and off (vtx._core.set_accounting), in
  the same run, so the difference is the detail's cost.

Save a run with --benchmark-autosave; compare with --benchmark-compare.
"""

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


@pytest.mark.parametrize("variant", ["exiting", "native"])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_overhead(benchmark, name, variant):
    if variant not in WORKLOADS[name].variants:
        pytest.skip(f"{name} has no {variant} setting")
    m = benchmark(run_workload, name, variant, OPS)
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
