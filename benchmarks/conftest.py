"""Shared guests for the benchmarks.

Run with ``pytest benchmarks/`` (they are not part of the default test run).
Each benchmark puts its peers in the same run, so the figures to read are the
ratios between rows on one machine: Unicorn (QEMU's TCG) always, real KVM
through /dev/kvm where it works.
"""

import pytest

import vtx

EXIT_COUNT = 20_000

OUT_LOOP = f"""
    mov ecx, {EXIT_COUNT}
1:  out 0x80, al
    dec ecx
    jnz 1b
    hlt
"""

CPUID_LOOP = f"""
    mov esi, {EXIT_COUNT}
1:  mov eax, 1
    cpuid
    dec esi
    jnz 1b
    hlt
"""

ENTRY = 0x1000


def make_vm(source, bits=32):
    vm = vtx.VM(memory=1 << 20)
    vm.load(ENTRY, vtx.asm(source, bits=bits, org=ENTRY))
    vm.add_vcpu()
    {16: vm.setup_real_mode, 32: vm.setup_protected_mode, 64: vm.setup_long_mode}[bits](entry=ENTRY)
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    return vm


def rewind(vm, bits=32):
    {16: vm.setup_real_mode, 32: vm.setup_protected_mode, 64: vm.setup_long_mode}[bits](entry=ENTRY)


def record(benchmark, key, of_mean):
    """extra_info[key] = of_mean(mean seconds per round), the figure the
    summary shows.  Under --benchmark-disable each benchmark runs once as a
    plain test, untimed (its assertions still hold): nothing to record."""
    if benchmark.stats is not None:
        benchmark.extra_info[key] = of_mean(benchmark.stats.stats.mean)


def per_exit(benchmark, n):
    """Record ns per exit for a benchmark whose round makes ``n`` exits."""
    benchmark.extra_info["exits"] = n
    record(benchmark, "ns_per_exit", lambda mean: mean / n * 1e9)


try:
    import unicorn  # noqa: F401
    HAVE_UNICORN = True
except ImportError:  # pragma: no cover
    HAVE_UNICORN = False

needs_unicorn = pytest.mark.skipif(not HAVE_UNICORN, reason="unicorn is not installed")


# --- the summary a reader sees without reading code ---------------------------

_ENGINES = ("vtx", "unicorn", "kvm")
# Workload -> its row's label, in the order of the table.  A parametrized
# benchmark's workload keeps its parameter: test_vtx_tight_loop[16] is
# workload "tight_loop[16]".
_WORKLOAD_NAMES = {
    "tight_loop[16]": "tight loop, real mode (dec cx; jnz)",
    "tight_loop[32]": "tight loop, 32-bit (dec ecx; jnz)",
    "tight_loop[64]": "tight loop, 64-bit (dec ecx; jnz)",
    "compiled[m32]": "compiled C suite, gcc -O2 -m32",
    "compiled[m64]": "compiled C suite, gcc -O2 -m64",
    "footprint[1KiB]": "code footprint 1 KiB",
    "footprint[16KiB]": "code footprint 16 KiB",
    "footprint[64KiB]": "code footprint 64 KiB",
    "footprint[256KiB]": "code footprint 256 KiB",
    "footprint[1MiB]": "code footprint 1 MiB",
    "out": "OUT exit to a trivial handler",
    "cpuid": "CPUID exit (read 1, write 4 regs)",
    "cr8": "MOV to CR8 with CR8-load exiting",
    "cr8shadow": "MOV to CR8 with the TPR shadow (per write, no exit)",
    "run_fixed_cost": "vm.run() fixed cost (HLT exit, STOP)",
    "run_budget_fixed_cost": "vm.run(max_instructions=1) fixed cost",
    "mmio": "MMIO read served by a Python device",
    "ept_violation": "EPT-violation exit, raw view",
    "timer_injection": "timer interrupt injected (per interrupt)",
    "ipi": "IPI between two vCPUs (per IPI)",
    "linux_boot": "Linux boot to the shell prompt",
    "startup": "VM creation to first exit",
    "startup_long_mode": "VM creation to first exit, long mode",
}
# Issue 6: per instruction, 1 MiB of code at most 1.3x slower than 1 KiB.
_FOOTPRINT_SMALL, _FOOTPRINT_LARGE, _FOOTPRINT_TARGET = "footprint[1KiB]", "footprint[1MiB]", 1.3


def _split(name):
    """test_<engine>_<workload>[_exit|_hook][[param]] -> (engine, workload[param])."""
    name, _, param = name.partition("[")
    engine, _, workload = name[len("test_"):].partition("_")
    for suffix in ("_exit", "_hook"):
        if workload.endswith(suffix):
            workload = workload[: -len(suffix)]
    return engine, workload + ("[" + param if param else "")


def _figure(bench):
    """(value, unit, higher is better) of one benchmark."""
    info = bench.get("extra_info", {})
    if "mips" in info:
        return info["mips"], "M instr/s", True
    if "ns_per_instr" in info:
        return info["ns_per_instr"], "ns/instr", False
    if "ns_per_exit" in info:
        return info["ns_per_exit"], "ns/exit", False
    return bench["stats"]["mean"] * 1e6, "us", False


def _cell(figure):
    v, unit, _ = figure
    return f"{v:,.{2 if v < 10 else 1}f} {unit}"


def _speed_ratio(ours, theirs):
    """How many times faster vtx is than the peer (above 1: vtx is faster),
    whether the unit is a rate (higher is better) or a time."""
    (v, _, higher_better), (u, _, _) = ours, theirs
    return v / u if higher_better else u / v


def _footprint_slowdown(tw, rows):
    small, large = rows.get(_FOOTPRINT_SMALL, {}), rows.get(_FOOTPRINT_LARGE, {})
    cells = [f"{large[e][0] / small[e][0]:.2f}x" if e in small and e in large else "-" for e in _ENGINES]
    tw.write_line(f"{'  1 MiB / 1 KiB, time per instruction':<40} {cells[0]:>17} {cells[1]:>17} "
                  f"{cells[2]:>17} {'-':>12}")
    tw.write_line(f"  (issue 6 target for vtx: at most {_FOOTPRINT_TARGET}x)")


# After pytest-benchmark's own table, so that this one ends the report.
@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    rows = {}
    for b in session.benchmarks:
        if not b.has_error and b.stats:
            d = b.as_dict()
            engine, workload = _split(d["name"])
            if engine in _ENGINES:
                rows.setdefault(workload, {})[engine] = _figure(d)
    order = list(_WORKLOAD_NAMES)
    tw = terminalreporter
    tw.write_sep("=", "vtx beside its peers (one run, one machine: read the ratios)")
    tw.write_line(f"{'workload':<40} {'vtx':>17} {'Unicorn':>17} {'KVM':>17} {'vtx/Unicorn':>12}")
    for workload in sorted(rows, key=lambda w: (order.index(w) if w in order else len(order), w)):
        r = rows[workload]
        cells = [_cell(r[e]) if e in r else "-" for e in _ENGINES]
        ratio = "-"
        if "vtx" in r and "unicorn" in r:
            x = _speed_ratio(r["vtx"], r["unicorn"])
            ratio = f"{x:.{2 if x >= 0.1 else 3}f}"      # two significant digits below 0.1 too
        tw.write_line(f"{_WORKLOAD_NAMES.get(workload, workload):<40} {cells[0]:>17} {cells[1]:>17} "
                      f"{cells[2]:>17} {ratio:>12}")
        if workload == _FOOTPRINT_LARGE:
            _footprint_slowdown(tw, rows)
    tw.write_line("vtx/Unicorn: vtx's speed over Unicorn's, above 1 when vtx is faster (for a time or "
                  "ns figure, Unicorn's time over vtx's).")
    _overhead_summary(tw, session.benchmarks)
    tw.write_line("Save a run with --benchmark-autosave; compare with --benchmark-compare.")


def _overhead_summary(tw, benchmarks):
    """benchmarks/test_overhead.py: per workload and setting, the measured
    figures and the modeled cycles per operation; then the accounting's
    detail on and off."""
    rows, acct, inter = [], {}, {}
    for b in benchmarks:
        if b.has_error or not b.stats:
            continue
        d = b.as_dict()
        info = d.get("extra_info", {})
        if "overhead" in info:
            rows.append((d["param"] or d["name"], info["overhead"]))
        elif "interleaved" in info:
            inter[d["param"]] = info["interleaved"]
        elif d["name"].startswith("test_accounting_"):
            acct[d["name"]] = info.get("ns_per_exit", info.get("ns_per_instr"))
    if rows:
        cycles = [k for k in rows[0][1] if k.startswith("cycles_per_op[")]
        tw.write_sep("=", "exit overhead per workload (modeled cycles per operation by profile)")
        tw.write_line(f"{'workload-setting':<26} {'ops/s':>12} {'exits/op':>9} {'ns/exit':>8} "
                      + " ".join(f"{c[len('cycles_per_op['):-1]:>20}" for c in cycles))
        for name, o in rows:
            # A mixed workload is one slow operation (a boot: 0.07/s).
            rate = f"{o['ops_per_s']:>12,.0f}" if o["ops_per_s"] >= 10 else f"{o['ops_per_s']:>12.3g}"
            tw.write_line(f"{name:<26} {rate} {o['exits_per_op']:>9.2f} "
                          f"{o['ns_per_exit']:>8.0f} " + " ".join(f"{o[c]:>20,.0f}" for c in cycles))
    if acct:
        tw.write_sep("=", "the accounting's detail on and off (same run, means of separate benchmarks)")
        for what, unit in (("out_exit", "ns/exit"), ("tight_loop", "ns/instr")):
            on, off = acct.get(f"test_accounting_{what}[on]"), acct.get(f"test_accounting_{what}[off]")
            if on is not None and off is not None:
                tw.write_line(f"{what:<12} on {on:8.2f} {unit}   off {off:8.2f} {unit}   "
                              f"cost {on - off:+.2f} {unit} ({100 * (on - off) / off:+.1f}%)")
    if inter:
        tw.write_sep("=", "the accounting's detail on and off, interleaved run by run")
        for what in ("out_exit", "tight_loop"):
            i = inter.get(what)
            if i is None:
                continue
            unit = i["unit"].replace("ns_per_", "ns/")
            for stat in ("min", "median"):
                on, off = i[f"on_{stat}"], i[f"off_{stat}"]
                tw.write_line(f"{what:<12} {stat:<6} on {on:8.2f} {unit}   off {off:8.2f} {unit}   "
                              f"cost {on - off:+.2f} {unit} ({100 * (on - off) / off:+.1f}%)")
        tw.write_line(f"(best and median of {i['runs']} runs per setting; on/off alternate within each round, "
                      f"so load changes on a shared machine fall on both)")
