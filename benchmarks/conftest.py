"""Shared guests for the benchmarks.

Run with ``pytest benchmarks/`` (they are not part of the default test run).
Each benchmark puts its peers in the same run, so the figures to read are the
ratios between rows on one machine: Unicorn (QEMU's TCG) always, real KVM
through /dev/kvm where it works.
"""

import pytest

import vtx

LOOP_COUNT = 2_000_000
EXIT_COUNT = 20_000

TIGHT_LOOP = f"""
    mov ecx, {LOOP_COUNT}
1:  dec ecx
    jnz 1b
    hlt
"""

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


try:
    import unicorn  # noqa: F401
    HAVE_UNICORN = True
except ImportError:  # pragma: no cover
    HAVE_UNICORN = False

needs_unicorn = pytest.mark.skipif(not HAVE_UNICORN, reason="unicorn is not installed")


# --- the summary a reader sees without reading code ---------------------------

_ENGINES = ("vtx", "unicorn", "kvm")
_WORKLOAD_NAMES = {"out": "OUT exit to a trivial handler", "cpuid": "CPUID exit (read 1, write 4 regs)",
                   "tight_loop": "tight loop (dec ecx; jnz)", "startup": "VM creation to first exit",
                   "startup_long_mode": "VM creation to first exit, long mode",
                   "run_fixed_cost": "vm.run() fixed cost (guest: one HLT)"}


def _split(name):
    """test_<engine>_<workload>[_exit|_hook] -> (engine, workload)."""
    name = name.split("[")[0][len("test_"):]
    engine, _, workload = name.partition("_")
    for suffix in ("_exit", "_hook"):
        if workload.endswith(suffix) and workload != "tight_loop":
            workload = workload[: -len(suffix)]
    return engine, workload


def _figure(bench):
    info = bench.get("extra_info", {})
    if "mips" in info:
        return info["mips"], "M instr/s", True
    if "ns_per_exit" in info:
        return info["ns_per_exit"], "ns/exit", False
    return bench["stats"]["mean"] * 1e6, "us", False


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
    tw = terminalreporter
    tw.write_sep("=", "vtx beside its peers (one run, one machine: read the ratios)")
    tw.write_line(f"{'workload':<40} {'vtx':>16} {'Unicorn':>16} {'KVM':>16} {'vtx/Unicorn':>12}")
    for workload in sorted(rows):
        r = rows[workload]
        cells, unit = [], ""
        for e in _ENGINES:
            if e in r:
                v, unit, higher_better = r[e]
                cells.append(f"{v:,.1f} {unit}")
            else:
                cells.append("-")
        ratio = "-"
        if "vtx" in r and "unicorn" in r:
            (v, _, hb), (u, _, _) = r["vtx"], r["unicorn"]
            # The ratio is vtx's speed relative to Unicorn's: above 1 is faster.
            ratio = f"{(v / u) if hb else (u / v):.2f}"
        tw.write_line(f"{_WORKLOAD_NAMES.get(workload, workload):<40} {cells[0]:>16} {cells[1]:>16} "
                      f"{cells[2]:>16} {ratio:>12}")
    tw.write_line("Save a run with --benchmark-autosave; compare with --benchmark-compare.")
