"""The accounting (vtx/core/acct.pxi, vtx.overhead.Stats), the cost profiles
and model, the workload suite, the what-if studies and ``python -m vtx
bench`` (docs/architecture.rst, "Accounting and cost profiles")."""

import csv
import io
import json
import pathlib
import sys

import pytest

import vtx
from vtx import ExitReason as R, ProcBased, VmcsField as F
from vtx.overhead import Profile, Stats, load_profile, price, profile_names
from vtx.overhead.stats import bucket_bounds
from vtx.overhead.workloads import run_workload

from conftest import needs_as

N = 200


def cpuid_vm(n, bits=32):
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(f"""
        mov esi, {n}
    1:  xor eax, eax
        cpuid
        dec esi
        jnz 1b
        hlt
    """, bits=bits, org=0x1000))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)
    vm.on(R.CPUID)(lambda vcpu, ex: vtx.RESUME)
    vm.on(R.HLT)(lambda vcpu, ex: vtx.STOP)
    return vm


# --- the accounting -----------------------------------------------------------------------

@needs_as
def test_n_cpuid_ops_are_n_cpuid_exits_with_their_split_and_distribution():
    vm = cpuid_vm(N)
    vm.reset_stats()
    r = vm.run()
    s = r.stats
    assert isinstance(s, Stats)
    assert s.exits == {R.CPUID: N, R.HLT: 1} == r.exits
    c = s.reasons[R.CPUID]
    assert c.count == N
    # The guest ran the loop: before the first CPUID, mov and xor; before
    # each later one, dec, jnz and xor.
    assert c.guest_instructions == 2 + 3 * (N - 1)
    assert c.handler_instructions == 0           # a Python hypervisor runs no x86 code
    assert 0 < c.handler_ns <= c.round_trip_ns
    assert c.exit_path_ns == c.round_trip_ns - c.handler_ns
    assert sum(c.hist.values()) == N
    assert 0 < c.min_ns <= c.median_ns <= c.p90_ns <= c.p99_ns <= c.max_ns
    assert c.min_ns <= c.mean_ns <= c.max_ns
    # N exits resumed, plus the launch: N + 1 entries; the STOP has none.
    assert s.entries == N + 1
    # mov, then xor, dec and jnz per round: the CPUIDs and the HLT exit, not retire.
    assert s.instructions == r.instructions == 1 + 3 * N
    # The cumulative view is the same after one run, and starts again.
    assert vm.stats().reasons[R.CPUID].count == N
    assert vm.stats().entries == N + 1
    vm.reset_stats()
    assert vm.stats().reasons == {} and vm.stats().entries == 0
    # exit_counts, the processor's history, stays.
    assert vm.vcpu.exit_counts()[int(R.CPUID)] == N


@needs_as
def test_a_second_run_is_its_own_delta_and_the_cumulative_view_sums():
    vm = cpuid_vm(50)
    vm.reset_stats()
    vm.run()
    vm.setup_protected_mode(entry=0x1000)
    r2 = vm.run()
    assert r2.stats.reasons[R.CPUID].count == 50
    assert sum(r2.stats.reasons[R.CPUID].hist.values()) == 50
    assert vm.stats().reasons[R.CPUID].count == 100
    assert sum(vm.stats().reasons[R.CPUID].hist.values()) == 100


@needs_as
def test_each_run_has_its_own_reasons_ports_msrs_and_crs():
    """Three runs with different exits, their stats read only after all
    three: each has exactly its own reasons, I/O ports, MSRs and CR kinds,
    with its own counts and distribution (a run's rows are kept from its
    first exit of each reason, core/acct.pxi)."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("""
        out 0x80, al
        out 0x80, al
        out 0x80, al
        cpuid
        hlt
        in al, 0x71
        mov ecx, 0xC0000103
        rdmsr
        rdmsr
        hlt
        mov rax, cr3
        mov cr3, rax
        out 0x80, al
        hlt
    """, bits=64, org=0x1000))
    v = vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS,
              v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | ProcBased.CR3_LOAD_EXITING)
    for reason in (R.IO_INSTRUCTION, R.CPUID, R.RDMSR, R.CONTROL_REGISTER_ACCESS):
        vm.on(reason)(lambda vcpu, ex: vtx.RESUME)
    vm.on(R.HLT)(lambda vcpu, ex: vtx.STOP)
    runs = [vm.run() for _ in range(3)]
    counts = [{r: s.count for r, s in run.stats.reasons.items()} for run in runs]
    assert counts == [{R.IO_INSTRUCTION: 3, R.CPUID: 1, R.HLT: 1},
                      {R.IO_INSTRUCTION: 1, R.RDMSR: 2, R.HLT: 1},
                      {R.CONTROL_REGISTER_ACCESS: 1, R.IO_INSTRUCTION: 1, R.HLT: 1}]
    assert [run.stats.io_ports for run in runs] == [{(0x80, "out", 1): 3}, {(0x71, "in", 1): 1},
                                                     {(0x80, "out", 1): 1}]
    assert [run.stats.msrs for run in runs] == [{}, {(0xC0000103, "read"): 2}, {}]
    assert [run.stats.crs for run in runs] == [{}, {}, {(3, "mov-to-cr"): 1}]
    for run, c in zip(runs, counts):
        assert run.exits == c
        for reason, st in run.stats.reasons.items():
            assert sum(st.hist.values()) == c[reason]
    total = vm.stats()
    assert total.reasons[R.IO_INSTRUCTION].count == 5 and total.io_ports[(0x80, "out", 1)] == 4


@needs_as
def test_reset_during_a_run_is_refused():
    vm = cpuid_vm(3)

    @vm.on(R.CPUID)
    def h(vcpu, ex):
        vm.reset_stats()
        return vtx.RESUME
    with pytest.raises(vtx.VmStateError):
        vm.run()


@needs_as
def test_vmread_vmwrite_through_the_api_are_counted_per_call():
    vm = cpuid_vm(N)

    @vm.on(R.CPUID)
    def h(vcpu, ex):
        vcpu.vmread(F.GUEST_RIP)
        vcpu.vmread(F.VM_EXIT_INSTRUCTION_LENGTH)
        vcpu.vmwrite(F.GUEST_RIP, vcpu.vmread(F.GUEST_RIP) + 2)
        return vtx.RETRY
    vm.reset_stats()
    s = vm.run().stats
    assert (s.vmread_api, s.vmwrite_api) == (3 * N, N)
    assert (s.vmread_x86, s.vmwrite_x86) == (0, 0)


@needs_as
def test_the_x86_hypervisor_vmreads_vmwrites_and_handler_instructions():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
    import type1_hypervisor
    hw, r, counts = type1_hypervisor.run_type1()
    s = r.stats
    # examples/type1/hypervisor.s reads the exit reason at every exit; an
    # I/O exit also the qualification, and every resumed exit GUEST_RIP and
    # the instruction length, then writes GUEST_RIP: 52 OUT, 1 CPUID, 1 HLT.
    assert s.vmread_x86 == s.vmread_x86_exits == 52 * 4 + 1 * 3 + 1
    # One VMWRITE (GUEST_RIP) per resumed exit; the rest set up the VMCS.
    assert s.vmwrite_x86_exits == 53 and s.vmwrite_x86 > 53
    assert s.exits == {R.IO_INSTRUCTION: 52, R.CPUID: 1, R.HLT: 1}
    assert s.entries == 54                      # VMLAUNCH and 53 VMRESUMEs
    # The handler of an OUT exit: 12 instructions to the dispatch, 9 in
    # io_exit, 14 from next to VMRESUME (included).
    assert s.reasons[R.IO_INSTRUCTION].handler_instructions == 52 * 35
    assert s.reasons[R.HLT].handler_instructions == 0      # no entry after it
    assert hw.stats().vmread_x86 == s.vmread_x86


@needs_as
def test_io_port_msr_and_cr_kinds():
    m = run_workload("io_in", "exiting", N)
    assert m.stats.io_ports == {(0x71, "in", 1): N}
    m = run_workload("rdmsr", "exiting", N)
    assert m.stats.msrs == {(0xC0000103, "read"): N}
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(f"""
        mov esi, {N}
    1:  mov rax, cr3
        mov cr3, rax
        dec esi
        jnz 1b
        hlt
    """, bits=64, org=0x1000))
    v = vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS,
              v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | ProcBased.CR3_LOAD_EXITING)
    vm.on(R.CONTROL_REGISTER_ACCESS)(lambda vcpu, ex: vtx.RESUME)
    vm.on(R.HLT)(lambda vcpu, ex: vtx.STOP)
    s = vm.run().stats
    assert s.crs == {(3, "mov-to-cr"): N}


@needs_as
def test_events_page_walks_and_tlb_flushes():
    m = run_workload("page_fault", "not-exiting", N)
    assert m.stats.delivered == {"hardware-exception": N}
    assert m.stats.total_exits == 1                    # the VMCALL that ends it
    m = run_workload("int_iret", "exiting", N)
    assert m.stats.delivered == {"software-interrupt": N}
    m = run_workload("pte_update", "not-exiting", N)
    assert m.stats.page_walks >= N                     # every load after INVLPG walks
    m = run_workload("pte_update", "exiting", N)
    assert m.stats.tlb_flushes >= N                    # the handler's INVVPID: a flush per exit


@needs_as
def test_mmio_accesses_count_as_ept_violations():
    m = run_workload("mmio", "exiting", N)
    assert m.exits == {R.EPT_VIOLATION: N}
    assert m.stats.reasons[R.EPT_VIOLATION].handler_ns > 0


@needs_as
def test_accounting_detail_switch_keeps_counts():
    vtx._core.set_accounting(False)
    try:
        assert not vtx._core.accounting_enabled()
        vm = cpuid_vm(N)
        s = vm.run().stats
        c = s.reasons[R.CPUID]
        assert c.count == N and c.round_trip_ns > 0
        assert c.hist == {} and c.guest_instructions == 0 and c.percentile(0.5) == 0.0
    finally:
        vtx._core.set_accounting(True)
    with pytest.raises(TypeError):
        vtx._core.set_accounting(1)


@needs_as
def test_stats_export_to_dict_json_csv_and_table():
    s = cpuid_vm(N).run().stats
    d = json.loads(s.to_json())
    assert [r["reason"] for r in d["reasons"]] == ["CPUID", "HLT"]
    assert d["reasons"][0]["count"] == N and d["vm_entries"] == N + 1
    rows = list(csv.DictReader(io.StringIO(s.to_csv())))
    assert [r["reason"] for r in rows] == ["CPUID", "HLT"] and rows[0]["count"] == str(N)
    assert tuple(rows[0]) == Stats.CSV_COLUMNS
    assert "CPUID (10)" in s.table()


def test_histogram_buckets_tile_the_tick_range():
    assert [bucket_bounds(b) for b in range(6)] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    assert bucket_bounds(8) == (8, 10) and bucket_bounds(12) == (16, 20)
    for b in range(126):
        assert bucket_bounds(b)[1] == bucket_bounds(b + 1)[0]
    assert bucket_bounds(127)[0] == 7 << 30


# --- profiles and the model --------------------------------------------------------------

def test_every_shipped_profile_loads_and_every_number_has_a_source():
    for name in profile_names():
        p = load_profile(name)
        assert p.name == name and p.path.endswith(f"{name}.toml")
        for key in ("cpi", "round_trip", "vmread", "vmwrite", "kvm_handler", "world_switch"):
            assert key in p.sources, (name, key)
            ref = p.sources[key].split(":")[0]
            assert ref in p.references, (name, key, ref)
    merom = load_profile("core2-merom")
    # Adams & Agesen 2006, Table 1: Merom VMREAD 52, VMWRITE 44; page-fault
    # exit 1186 + VM entry 937.
    assert (merom.vmread, merom.vmwrite) == (52, 44)
    assert merom.round_trip_of(R.EXCEPTION_OR_NMI) == 1186 + 937
    assert merom.round_trip_of(R.CPUID) == 1681
    prescott = load_profile("p4-prescott")
    assert (prescott.round_trip, prescott.vmread, prescott.vmwrite) == (2409 + 1931, 178, 171)


def test_a_copied_and_edited_profile_loads(tmp_path):
    src = pathlib.Path(vtx.overhead.__file__).parent / "profiles" / "haswell-coffeelake.toml"
    text = src.read_text().replace("round_trip = 550", "round_trip = 600").replace(
        'name = "haswell-coffeelake"', 'name = "mine"')
    path = tmp_path / "mine.toml"
    path.write_text(text)
    p = load_profile(str(path))
    assert (p.name, p.round_trip) == ("mine", 600)
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("vmread = 52", 'vmread = "fast"'))
    with pytest.raises(ValueError, match="vmread"):
        load_profile(str(bad))
    with pytest.raises(ValueError, match="no cost profile"):
        load_profile("pentium-pro")
    with pytest.raises(TypeError):
        load_profile(3)


def test_a_malformed_profile_file_says_what_is_wrong_and_where(tmp_path):
    src = pathlib.Path(vtx.overhead.__file__).parent / "profiles" / "nehalem.toml"
    text = src.read_text()
    cases = {
        # a TOML syntax error: the file is named
        "syntax": (text.replace("round_trip = 950", "round_trip = "), r"syntax\.toml is not valid TOML"),
        # [cycles] as a number instead of a table
        "scalar": (text.replace("[cycles]\n", "cycles = 5\n[other]\n"), r"cycles is a table"),
        # a misspelt price is not ignored
        "typo": (text.replace("world_switch = 5000", "world_switch = 5000\nwold_switch = 1"),
                 r"'wold_switch', which the cost model does not read"),
        # a per-class CPI the model has no place for
        "class": (text.replace("cpi = 1.0", "cpi = 1.0\ncpi_load = 2"), r"'cpi_load'"),
        "name": (text.replace('name = "nehalem"', "name = 3"), r"name and cpu are strings"),
    }
    for stem, (body, message) in cases.items():
        path = tmp_path / f"{stem}.toml"
        path.write_text(body)
        with pytest.raises(ValueError, match=message):
            load_profile(str(path))
    # A directory is not a profile file.
    with pytest.raises(ValueError, match="no cost profile"):
        load_profile(str(tmp_path))
    # The unmodified copy loads: the cases above fail for their one change.
    good = tmp_path / "good.toml"
    good.write_text(text)
    assert load_profile(str(good)).round_trip == 950


def test_model_is_the_hand_computed_sum():
    counts = {"exits": {R.CPUID: 10, R.IO_INSTRUCTION: 5, R.EXCEPTION_OR_NMI: 2}, "instructions": 1000,
              "vmread_api": 4, "vmwrite_api": 3}
    # Merom: CPI 1, round trip 1681 (page-fault exits 2123), VMREAD 52,
    # VMWRITE 44, kernel handling 750, world switch 5000.
    c = price(counts, "core2-merom", "type2")
    assert c.guest == 1000
    assert c.round_trips == 15 * 1681 + 2 * 2123
    assert c.handler == 17 * 750 and c.world_switch == 17 * 5000
    assert c.vmcs == 4 * 52 + 3 * 44
    assert c.total == 1000 + 15 * 1681 + 2 * 2123 + 17 * (750 + 5000) + 4 * 52 + 3 * 44
    assert c.per_reason[R.CPUID] == 10 * (1681 + 750 + 5000)
    # KVM: only port I/O (and MMIO) go to user space.
    k = price(counts, "core2-merom", "kvm")
    assert k.world_switch == 5 * 5000
    assert price(counts, "core2-merom", "type1").world_switch == 0
    # An x86 hypervisor: its handler instructions at the CPI, its VMREADs
    # and VMWRITEs (among those instructions) at their own price.
    x = price({"exits": {R.CPUID: 10}, "instructions": 2000, "handler_instructions": 400,
               "vmread_x86": 30, "vmwrite_x86": 10}, "haswell-coffeelake", "x86")
    assert x.guest == 1600 and x.round_trips == 10 * 550
    assert x.handler == 400 - 40 and x.vmcs == 30 * 52 + 10 * 44 and x.world_switch == 0
    with pytest.raises(ValueError):
        price(counts, "core2-merom", "type3")


def test_a_profile_object_prices_directly():
    p = Profile("toy", "a toy", 2.0, 100, 10, 20, 0, 1000)
    c = price({"exits": {R.HLT: 3}, "instructions": 50}, p, "type2")
    assert c.total == 50 * 2 + 3 * (100 + 1000)


# --- the suite, the studies, the command line --------------------------------------------

@needs_as
@pytest.mark.parametrize("name, reason", [("cpuid", R.CPUID), ("io_in", R.IO_INSTRUCTION),
                                          ("rdtsc", R.RDTSC), ("hlt_timer", R.HLT),
                                          ("divide_error", R.EXCEPTION_OR_NMI), ("pte_update", R.INVLPG)])
def test_each_exiting_workload_exits_once_per_operation(name, reason):
    m = run_workload(name, "exiting", N)
    assert m.exits == {reason: N} and m.exits_per_op == 1.0
    assert m.ops_per_s > 0 and m.ns_per_exit > 0
    if "not-exiting" in vtx.overhead.WORKLOADS[name].variants:
        assert run_workload(name, "not-exiting", N).exits == {}


@needs_as
@pytest.mark.parametrize("name", ["compute", "call_ret", "syscall", "int_iret", "page_fault", "rdtsc"])
def test_native_runs_the_same_kernel_without_vmx(name):
    vmx = run_workload(name, "not-exiting" if name in ("page_fault", "rdtsc") else "exiting", N)
    native = run_workload(name, "native", N)
    assert native.exits == {} and native.stats.entries == 0
    # The same instructions, but HLT retires natively where VMCALL exits.
    assert native.instructions == vmx.instructions + 1


@needs_as
def test_cr8_writes_exit():
    m = run_workload("cr8_write", "exiting", N)
    assert m.exits == {R.CONTROL_REGISTER_ACCESS: N}
    assert m.stats.crs == {(8, "mov-to-cr"): N}


@needs_as
def test_what_if_tpr_shadow_against_cr8_exiting():
    from vtx.overhead import what_if
    w = what_if("tpr_shadow", n=N, profiles=["nehalem"])
    exiting, shadow = w.measurements
    assert exiting.exits == {R.CONTROL_REGISTER_ACCESS: N} and shadow.exits == {}


@needs_as
def test_suite_table_json_and_csv(tmp_path):
    from vtx.overhead import run_suite
    res = run_suite(["cpuid", "compute"], n=50, profiles=["core2-merom"])
    t = res.table()
    assert "core2-merom" in t and "cpuid" in t and "native" in t and res.machine["vtx"] in t
    cpuid = res.get("cpuid", "exiting")
    # Merom, type 2: per CPUID one round trip, the kernel's handling and the
    # world switch, plus the loop's guest instructions.
    assert res.cycles(cpuid, load_profile("core2-merom")) == pytest.approx(
        (cpuid.instructions + 50 * (1681 + 750 + 5000)) / 50)
    d = json.loads(res.to_json(str(tmp_path / "r.json")))
    assert (tmp_path / "r.json").exists() and d["profiles"][0]["name"] == "core2-merom"
    rows = list(csv.DictReader(io.StringIO(res.to_csv(str(tmp_path / "r.csv")))))
    assert {(r["workload"], r["variant"]) for r in rows} >= {("cpuid", "exiting"), ("compute", "native")}


def test_suite_matrix_is_workload_by_profile_with_the_native_column(tmp_path):
    from vtx.overhead import run_suite
    src = pathlib.Path(vtx.overhead.__file__).parent / "profiles" / "nehalem.toml"
    slow = tmp_path / "slow.toml"
    slow.write_text(src.read_text().replace('name = "nehalem"', 'name = "slow"').replace("cpi = 1.0", "cpi = 2.0"))
    res = run_suite(["cpuid", "hlt_timer"], n=40, profiles=["nehalem", str(slow)])
    lines = res.matrix()
    # The profiles' CPIs differ: the native column says whose it uses.
    assert lines[1].split() == ["workload", "nehalem", "slow", "native", "(nehalem)"]
    cpuid = dict(zip(["workload", "nehalem", "slow", "native"], lines[3].split()))
    ex, nat = res.get("cpuid", "exiting"), res.get("cpuid", "native")
    # Per CPUID exit under type 2: round trip, kernel handling, world switch
    # (950 + 750 + 5000); the guest's instructions at each profile's CPI.
    assert cpuid["nehalem"] == f"{(ex.instructions + 40 * 6700) / 40:,.0f}"
    assert cpuid["slow"] == f"{(2 * ex.instructions + 40 * 6700) / 40:,.0f}"
    # The native run has no exits: its instructions at the first profile's CPI.
    assert nat.total_exits == 0 and cpuid["native"] == f"{nat.instructions / 40:,.0f}"
    # HLT woken by a timer has no native run (no timer on the bare machine).
    assert lines[4].split()[0] == "hlt_timer" and lines[4].split()[-1] == "-"
    assert "\n".join(lines) in res.table()
    # Profiles of one CPI: the column is plain "native".
    assert run_suite(["cpuid"], n=10, profiles=["nehalem", "core2-merom"]).matrix()[1].split() == [
        "workload", "nehalem", "core2-merom", "native"]


def test_suite_table_labels_a_mixed_workload_exiting_and_a_loop_without_exits_vmx():
    from vtx.overhead.suite import SuiteResult, machine_info
    from vtx.overhead.workloads import Measurement
    ms = [Measurement("linux_boot", "exiting", 1, 10, 100, {R.CPUID: 5}),
          Measurement("compute", "exiting", 1, 10, 7, {})]
    rows = {}
    for line in SuiteResult(ms, [load_profile("nehalem")], "type2", machine_info(), 1).table().splitlines():
        if line.startswith(("linux_boot ", "compute ")):
            rows.setdefault(line.split()[0], line.split())      # the first table's row, not the overview's
    assert rows["linux_boot"][:2] == ["linux_boot", "exiting"]
    assert rows["compute"][:2] == ["compute", "vmx"]


@needs_as
def test_what_if_msr_bitmap_against_every_msr_exiting():
    from vtx.overhead import what_if
    w = what_if("msr_bitmap", n=N, profiles=["haswell-coffeelake"])
    passed, bit, none = w.measurements
    assert passed.exits == {} and bit.exits == {R.RDMSR: N}
    # Without a bitmap the kernel's three WRMSRs (the SYSCALL MSRs) exit too.
    assert none.exits == {R.RDMSR: N, R.WRMSR: 3}
    assert w.cycles(passed, w.profiles[0]) < w.cycles(bit, w.profiles[0])
    assert "no MSR bitmap" in w.table()
    with pytest.raises(ValueError):
        what_if("tpr_magic")


@needs_as
def test_python_m_vtx_bench(tmp_path, capsys):
    from vtx.__main__ import main
    j, c = tmp_path / "b.json", tmp_path / "b.csv"
    assert main(["bench", "cpuid", "-n", "20", "--profile", "nehalem", "--json", str(j), "--csv", str(c),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nehalem" in out and "cpuid" in out and "vtx " in out
    assert json.loads(j.read_text())["results"][0]["workload"] == "cpuid"
    assert c.read_text().startswith("workload,variant,")
    assert main(["bench", "nonesuch", "--no-progress"]) == 2


def test_bench_progress_goes_to_stderr_and_stdout_is_the_table(capsys):
    # With the progress bar on (rich, tqdm or plain lines, whichever is
    # installed), stdout is the report from its first character.
    from vtx.__main__ import main
    assert main(["bench", "cpuid", "-n", "20", "--profile", "nehalem"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vtx ")


@needs_as
def test_what_if_type1_against_type2_same_guest_same_exits():
    from vtx.overhead import what_if
    w = what_if("type1_vs_type2", profiles=["core2-merom"])
    x86, py = w.measurements
    assert x86.exits == py.exits == {R.IO_INSTRUCTION: 52, R.CPUID: 1, R.HLT: 1}
    # The same guest instructions under both; the x86 one adds its handlers'.
    assert x86.instructions - x86.stats.handler_instructions == py.instructions
    merom = w.profiles[0]
    c86 = price(x86.counts(), merom, "x86")
    assert w.cycles(x86, merom) == c86.total and c86.world_switch == 0
    assert c86.handler == x86.stats.handler_instructions - 212 - 53
    assert c86.vmcs == 212 * merom.vmread + 53 * merom.vmwrite
    assert w.cycles(py, merom) == price(py.counts(), merom, "type2").total
    assert w.cycles(x86, merom) < w.cycles(py, merom)


@needs_as
def test_shadow_paging_follows_the_guest_tables_at_invlpg():
    from vtx.overhead.shadow import ShadowPaging
    from vtx.overhead.workloads import PTE_VA, make_vm
    for n, frame in ((N, PTE_VA), (N + 1, PTE_VA - 0x1000)):
        box = {}

        def shadow(vm):
            box["s"] = ShadowPaging(vm).enable()
        vm = make_vm("pte_update", n, exiting=False, configure=shadow)
        vm.write_u64(PTE_VA, 0x1111)
        vm.write_u64(PTE_VA - 0x1000, 0x2222)
        r = vm.run()
        # Each round: the guest's PTE write (no exit: its tables are its
        # memory), INVLPG (exits: the shadow entry goes), the load (a #PF
        # exit: the shadow entry is made again from the guest's tables).
        # Three more fills: the kernel's code, stack and IDT pages.
        s = box["s"]
        assert r.exits == {R.INVLPG: n, R.EXCEPTION_OR_NMI: n + 3, R.VMCALL: 1}
        assert (s.fills, s.reflected) == (n + 3, 0)
        # After an even number of flips the page is its own again.
        assert vm.vcpu.rax == vm.read_u64(frame) == (0x1111 if frame == PTE_VA else 0x2222)
        # The guest's tables got the accessed flags the walks set.
        assert vm.read_u64(0x200000 + 8) & 0x20


@needs_as
def test_what_if_shadow_paging_against_ept():
    from vtx.overhead import what_if
    w = what_if("shadow_paging", n=N, profiles=["nehalem"])
    ept_pte, sh_pte, ept_pf, sh_pf = w.measurements
    assert ept_pte.exits == {} and ept_pf.exits == {}
    assert sh_pte.exits == {R.INVLPG: N, R.EXCEPTION_OR_NMI: N + 3}
    # The guest's own #PF now exits and is reflected: one exit per fault, and
    # the fills of the code, stack, IDT and handler pages.
    assert sh_pf.exits == {R.EXCEPTION_OR_NMI: N + 4}
    nehalem = w.profiles[0]
    assert w.cycles(sh_pte, nehalem) > w.cycles(ept_pte, nehalem)


@needs_as
def test_a_run_over_two_vcpus_sums_their_accounting():
    vm = vtx.VM(memory=1 << 20)
    for entry in (0x1000, 0x2000):
        vm.load(entry, vtx.asm(f"""
            mov esi, {N}
        1:  xor eax, eax
            cpuid
            dec esi
            jnz 1b
            hlt
        """, bits=32, org=entry))
    vm.add_vcpu()
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000, stack=0x9000, vcpu=vm.vcpus[0])
    vm.setup_protected_mode(entry=0x2000, stack=0xA000, vcpu=vm.vcpus[1])
    vm.on(R.CPUID)(lambda vcpu, ex: vtx.RESUME)
    vm.on(R.HLT)(lambda vcpu, ex: vtx.RESUME)
    r = vm.run(max_instructions=20 * N, quantum=3)
    assert r.stats.reasons[R.CPUID].count == 2 * N == r.exits[R.CPUID]
    assert sum(r.stats.reasons[R.CPUID].hist.values()) == 2 * N
    assert r.stats.instructions == r.instructions
    assert vm.stats().reasons[R.CPUID].count == 2 * N
    # Hundreds of turns, one mark per vCPU: a run's accounting does not grow
    # with its turns (an interrupt storm makes millions).
    assert len(r.acct) == 2


@needs_as
def test_linux_boot_is_a_mixed_workload_outside_the_default_suite():
    from vtx.linux import LinuxAssetsUnavailable, fetch
    from vtx.overhead.workloads import DEFAULT_WORKLOADS
    assert "linux_boot" not in DEFAULT_WORKLOADS and "cpuid" in DEFAULT_WORKLOADS
    try:
        fetch()
    except LinuxAssetsUnavailable as e:
        pytest.skip(f"the Debian kernel and busybox packages cannot be fetched here: {e}")
    m = run_workload("linux_boot")
    assert m.ops == 1 and m.wall_ns > 0
    s = m.stats
    assert s.total_exits == m.total_exits > 1000
    assert s.io_ports and s.exits == m.exits
    assert m.instructions == s.instructions > 10_000_000
