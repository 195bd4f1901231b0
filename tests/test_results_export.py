"""What a user keeps of a run: RunResult as dict, JSON and CSV, and the
run's Stats drawn as a chart (vtx/vm.py RunResult.to_*, vtx/overhead/stats.py
Stats.chart)."""

import csv
import importlib.util
import io
import json
import sys

import pytest

import vtx
from conftest import needs_as


def _asan_runtime():
    """Whether AddressSanitizer's runtime is preloaded into this process
    (tools/asan_tests.sh): matplotlib's font module throws C++ exceptions
    that runtime cannot intercept, and aborts the process.  The plain test
    run draws the charts; the sanitized one checks vtx's C, not matplotlib."""
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None or _asan_runtime(),
    reason="matplotlib is not installed, or cannot load under the AddressSanitizer runtime")

# 3 rounds of OUT and CPUID, then HLT: 3 OUT, 3 CPUID and 1 HLT exits; the
# MOV and the three LOOPs retire (the exiting instructions are completed by
# the handlers, not retired by the guest).
GUEST = "mov cx, 3\n1: out 0xe9, al\ncpuid\nloop 1b\nhlt"


def run_guest(breakpoint=False):
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(GUEST, bits=16, org=0x1000))
    vm.add_vcpu()
    vm.setup_real_mode(entry=0x1000)
    vm.on(vtx.ExitReason.IO_INSTRUCTION, vtx.ExitReason.CPUID)(lambda v, e: vtx.RESUME)
    vm.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    if breakpoint:
        vm.add_breakpoint(0x1005)           # the CPUID
    return vm, vm.run()


@needs_as
def test_run_result_to_dict_and_json():
    vm, r = run_guest()
    d = r.to_dict()
    assert d["stop"] == "stop" and d["exit"] == {"reason": "HLT", "number": 12}
    assert d["vcpu"] == 0 and d["hit"] is None
    assert d["instructions"] == 4 and d["events"] == 0 and d["wall_ns"] == r.wall_ns
    assert [(e["reason"], e["number"], e["count"]) for e in d["exits"]] == [
        ("CPUID", 10, 3), ("HLT", 12, 1), ("IO_INSTRUCTION", 30, 3)]
    for e in d["exits"]:
        reason = vtx.ExitReason(e["number"])
        assert e["total_ns"] == r.exit_ns[reason]
        assert e["ns_per_exit"] == round(r.exit_ns[reason] / e["count"], 1)
    assert json.loads(r.to_json()) == d
    assert r.to_json(indent=2).startswith('{\n  "stop": "stop"')


@needs_as
def test_run_result_to_csv():
    vm, r = run_guest()
    text = r.to_csv()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "reason,number,count,total_ns,ns_per_exit"
    assert [(row["reason"], row["number"], row["count"]) for row in rows] == [
        ("CPUID", "10", "3"), ("HLT", "12", "1"), ("IO_INSTRUCTION", "30", "3")]
    buf = io.StringIO()
    assert r.to_csv(buf) is None and buf.getvalue() == text


@needs_as
def test_run_result_to_dict_names_the_breakpoint():
    vm, r = run_guest(breakpoint=True)
    d = r.to_dict()
    assert d["stop"] == "breakpoint" and d["exit"] is None
    assert d["hit"] == {"kind": "breakpoint", "rip": 0x1005, "id": vm.breakpoints[0].id}
    assert [(e["reason"], e["count"]) for e in d["exits"]] == [("IO_INSTRUCTION", 1)]


@needs_as
@needs_matplotlib
@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_stats_chart(tmp_path, suffix, magic):
    vm, r = run_guest()
    path = tmp_path / f"exits{suffix}"
    assert r.stats.chart(path) == path
    data = path.read_bytes()
    assert data.startswith(magic)
    if suffix == ".svg":
        # text kept as text, so the reasons' names are in the file
        import matplotlib
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            r.stats.chart(path)
        text = path.read_text()
        for name in ("CPUID (10)", "HLT (12)", "IO_INSTRUCTION (30)"):
            assert name in text


@needs_as
def test_stats_chart_without_matplotlib(tmp_path, monkeypatch):
    vm, r = run_guest()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="needs matplotlib"):
        r.stats.chart(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    assert "CPUID (10)" in r.stats.table()           # the text report needs nothing


def test_stats_chart_of_no_exits(tmp_path):
    vm = vtx.VM(memory=1 << 20)
    vm.add_vcpu()
    with pytest.raises(ValueError, match="no VM exits"):
        vm.stats().chart(tmp_path / "x.png")
