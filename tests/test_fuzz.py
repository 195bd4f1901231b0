"""The fuzz campaigns (python -m vtx.fuzz): tiny slices of the three
campaigns must find nothing, and the finding machinery must work: with the test-only
VTX_FUZZ_SELFTEST hook a case that carries a marker crashes, hangs or
reports a fake overrun, and the parent has to notice it, kill the hang,
minimize the case down to the marker and write a reproducer that runs.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from vtx.fuzz import corpus
from vtx.fuzz.cases import make_spec, parse_case_id
from vtx.fuzz.harness import SELFTEST_BYTE, SELFTEST_FIELD
from vtx.fuzz.minimize import ddmin

from conftest import needs_as

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def env_with(**extra):
    env = dict(os.environ)
    env.pop("VTX_FUZZ_SELFTEST", None)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def fuzz(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "vtx.fuzz", *args], cwd=REPO, env=env or env_with(),
                          capture_output=True, text=True, timeout=timeout)


def findings_line(stdout):
    line = next(l for l in stdout.splitlines() if l.startswith("findings: "))
    pairs = (item.rsplit(" ", 1) for item in line[len("findings: "):].split(", "))
    return {label: int(n) for label, n in pairs}


def spec_of(reproducer):
    """The SPEC literal of a reproducer script."""
    text = open(reproducer).read()
    return eval(text[text.index("SPEC = ") + len("SPEC = "):text.index('\nif __name__')])  # noqa: S307


# --- slices of the campaigns ------------------------------------------------------

@pytest.mark.parametrize("campaign,count", [("streams", 300), ("vmcs", 300), ("root", 300)])
def test_campaign_slice_finds_nothing(tmp_path, campaign, count):
    p = fuzz(campaign, "--count", str(count), "--seed", "20240601", "--workers", "2", "-q",
             "--out", str(tmp_path / "out"))
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert f"{campaign}: {count} cases (long 100, protected 100, real 100)" in out
    assert "cases/s" in out
    assert all(n == 0 for n in findings_line(out).values()), out
    assert not (tmp_path / "out").exists()           # nothing to report, no directory
    print(out)                                       # the outcome counts, with -s


def test_root_slice_reaches_guests_and_both_kinds_of_case():
    """The root campaign is worth its time only if its x86 hypervisors get
    as far as a guest and Python drives the processor too: outcomes are
    "kind:stop", with "+guest" when a VM entry succeeded."""
    p = fuzz("root", "--count", "300", "--seed", "7", "--workers", "2", "-q", "--out", "/nonexistent")
    assert p.returncode == 0, p.stdout + p.stderr
    outcomes = dict(line.split() for line in p.stdout.splitlines() if line.startswith("    "))
    assert sum(int(n) for o, n in outcomes.items() if o.endswith("+guest")) >= 20, p.stdout
    assert any(o.startswith("python:") for o in outcomes) and any(o.startswith("x86:") for o in outcomes)


def test_replay_runs_one_case_verbosely():
    p = fuzz("--replay", "streams:long:1:7:2000")
    assert p.returncode in (0, 1), p.stderr
    assert "case streams:long:1:7:2000" in p.stdout and "outcome " in p.stdout
    bad = fuzz("--replay", "streams:nomode:1:7:2000")
    assert bad.returncode == 2 and "campaign:mode:seed:index:budget" in bad.stderr


def test_bad_arguments():
    for args in (["--count", "0"], ["--workers", "0"], ["--budget", "-1"], ["nosuch"]):
        assert fuzz(*args).returncode == 2


# --- the finding machinery ----------------------------------------------------------

def selftest_run(tmp_path, kind, *args):
    out = tmp_path / "out"
    p = fuzz(*args, "--out", str(out), "--workers", "2", env=env_with(VTX_FUZZ_SELFTEST=kind))
    assert p.returncode == 1, p.stdout + p.stderr
    return p, out


def test_selftest_crash_is_found_minimized_and_reproduced(tmp_path):
    p, out = selftest_run(tmp_path, "crash", "streams", "--count", "40", "--mode", "real", "--seed", "3")
    assert findings_line(p.stdout)["crashes"] >= 1
    assert "crash" in p.stdout and "killed by SIGABRT" in p.stdout
    [repro] = glob.glob(str(out / "crash-streams-real-*.py"))
    code = bytes.fromhex(spec_of(repro)["code"])
    assert SELFTEST_BYTE in code and len(code) <= 4
    text = open(repro).read()
    assert not re.search(r"^\s*(from|import) vtx\.fuzz|^\s*from \.", text, re.M)   # standalone
    # The reproducer aborts under the hook, as the worker did, and runs without it.
    r = subprocess.run([sys.executable, repro], env=env_with(VTX_FUZZ_SELFTEST="crash"),
                       capture_output=True, timeout=60)
    assert r.returncode == -signal.SIGABRT
    r = subprocess.run([sys.executable, repro], env=env_with(), capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1) and r.stdout.startswith("outcome ")
    data = json.load(open(out / "findings.json"))
    assert any(d["kind"] == "crash" and d.get("reproducer") == repro for d in data["distinct"])


def test_selftest_hang_is_killed_minimized_and_reproduced(tmp_path):
    p, out = selftest_run(tmp_path, "hang", "streams", "--count", "20", "--mode", "real", "--seed", "3",
                          "--timeout", "1", "--minimize-seconds", "30")
    assert findings_line(p.stdout)["hangs"] >= 1
    assert "streams: 20 cases" in p.stdout              # the rest of the batch still ran
    [repro] = glob.glob(str(out / "hang-streams-real-*.py"))
    code = bytes.fromhex(spec_of(repro)["code"])
    assert SELFTEST_BYTE in code and len(code) <= 4
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, repro], env=env_with(VTX_FUZZ_SELFTEST="hang"),
                       capture_output=True, timeout=3)


def test_selftest_overrun_is_reported_and_minimized(tmp_path):
    p, out = selftest_run(tmp_path, "overrun", "streams", "--count", "40", "--mode", "real", "--seed", "3")
    assert findings_line(p.stdout)["budget overruns"] >= 1
    [repro] = glob.glob(str(out / "overrun-streams-real-selftest*.py"))
    code = bytes.fromhex(spec_of(repro)["code"])
    assert SELFTEST_BYTE in code and len(code) <= 4
    r = subprocess.run([sys.executable, repro], env=env_with(VTX_FUZZ_SELFTEST="overrun"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "FINDING overrun [selftest]" in r.stdout


def test_selftest_vmcs_mutations_are_dropped_to_the_guilty_one(tmp_path):
    p, out = selftest_run(tmp_path, "overrun", "vmcs", "--count", "80", "--mode", "long", "--seed", "3")
    assert findings_line(p.stdout)["budget overruns"] >= 1
    [repro] = glob.glob(str(out / "overrun-vmcs-long-selftest*.py"))
    spec = spec_of(repro)
    assert [m[0] for m in spec["mutations"]] == [SELFTEST_FIELD]


# --- pieces ---------------------------------------------------------------------------

def test_case_ids_rebuild_the_same_case():
    a, b = make_spec("streams:protected:9:123:2000"), make_spec("streams:protected:9:123:2000")
    assert a == b and json.loads(json.dumps(a)) == a
    assert make_spec("vmcs:real:9:5:200")["mutations"]
    root = make_spec("root:long:9:5:3000")
    assert root == make_spec("root:long:9:5:3000") and json.loads(json.dumps(root)) == root
    assert root["calls"] and root["calls"][-1][0] == "run"
    assert parse_case_id("vmcs:long:1:2:3") == ("vmcs", "long", 1, 2, 3)
    for bad in ("streams:long:1:2", "x:long:1:2:3", "streams:long:a:2:3", "streams:long:1:-2:3"):
        with pytest.raises(ValueError):
            parse_case_id(bad)


def test_ddmin_finds_a_minimal_failing_subsequence():
    data = bytes(range(0x10, 0x40)) + b"\xf1" + bytes(range(0x50, 0x80)) + b"\x07"
    tried = []

    def test(d):
        tried.append(d)
        return b"\xf1" in d and b"\x07" in d
    assert ddmin(data, test) == b"\xf1\x07"
    assert len(tried) < 100


@needs_as
def test_corpus_bytes_match_their_sources():
    import vtx
    for (name, bits), hexcode in corpus.HEX.items():
        assert vtx.asm(corpus.source_for(name, bits), bits=bits, org=corpus.ORG).hex() == hexcode, (name, bits)
    assert {n for n, _ in corpus.HEX} == {n for n, _w, _s in corpus.SOURCES}
