"""What a campaign tells its user: the summary and the reproducer scripts.

A reproducer is a standalone .py file: the source of harness.py verbatim,
the minimized case's spec as a Python literal, and a main that runs it and
exits 1 when an invariant fails (a crash or a hang shows as such).
"""

import inspect
import json
import os
import pprint
import re

from vtx.spec import VmcsField

from . import harness
from .cases import CAMPAIGNS

#: The finding kinds in the order the summary lists them, with their names.
KINDS = (("crash", "crashes"), ("hang", "hangs"), ("overrun", "budget overruns"),
         ("underrun", "budget underruns"), ("reentry", "re-entry failures"),
         ("memory", "memory changes"), ("python", "python exceptions"),
         ("inspect", "inspection failures"), ("internal", "internal errors"),
         ("check_entry", "check_entry mismatches"), ("entry_checks", "incremental entry-check mismatches"),
         ("nested_run", "nested-run failures"), ("rerun", "refused runs"),
         ("host", "exits to the wrong host"))


def field_name(enc):
    try:
        return VmcsField(enc).name
    except ValueError:
        try:
            return VmcsField(enc & ~1).name + "_HIGH"
        except ValueError:
            return f"{enc:#x}"


def describe_spec(spec):
    """The essentials of a case for a human: mode, code, placement, state."""
    if spec["campaign"] == "root":
        return describe_root(spec)
    budgets = ", then ".join(str(b) for b in [spec["budget"]] + list(spec.get("more", ())))
    lines = [f"mode {spec['mode']}, memory {spec['memory']:#x}, budget {budgets}",
             f"code ({len(spec['code']) // 2} bytes) {spec['code'] or '(none)'} "
             + ("at the end of RAM" if spec.get("code_at_end") else f"at {spec['code_at']:#x}")]
    if spec.get("regs"):
        lines.append("registers " + ", ".join(f"{k}={v:#x}" for k, v in spec["regs"].items()))
    if spec.get("segs"):
        lines.append("segments " + ", ".join(f"{k}={v[0]:#x}" for k, v in spec["segs"].items()))
    if spec.get("idtr"):
        lines.append(f"idtr base {spec['idtr'][0]:#x} limit {spec['idtr'][1]:#x}")
    if spec.get("exception_bitmap") is not None:
        lines.append(f"exception bitmap {spec['exception_bitmap']:#010x}")
    for addr, data in spec.get("fill", ()):
        lines.append(f"memory at {addr:#x}: {len(data) // 2} bytes")
    for enc, op, value in spec.get("vmwrites", ()):
        lines.append(f"vmwrite {field_name(enc)} ({enc:#06x}) {op} {value:#x} (a hypervisor setting)")
    if spec.get("prerun"):
        lines.append(f"{spec['prerun']} instructions run before the mutations")
    for enc, op, value in spec.get("mutations", ()):
        lines.append(f"vmwrite {field_name(enc)} ({enc:#06x}) {op} {value:#x}")
    h = spec["handler"]
    lines.append(f"handler seed {h['seed']}: stop {h['stop']}, retry {h['retry']}, raise {h.get('raise', 0)}, "
                 f"nested {h.get('nested', 0)}, at most {h['max_exits']} exits")
    return lines


def describe_root(spec):
    """A root case: the machine, the root program, what else is in memory,
    and the runs and calls."""
    lines = [f"mode {spec['mode']}, memory {spec['memory']:#x}, a bare machine ({spec.get('kind', 'x86')} case)",
             f"root code ({len(spec['code']) // 2} bytes) {spec['code'] or '(none)'} at {spec['code_at']:#x}"]
    if spec.get("exit_handler"):
        lines.append(f"exit handler at HOST_RIP: {spec['exit_handler']}")
    for addr, data in spec.get("fill", ()):
        lines.append(f"memory at {addr:#x}: {len(data) // 2} bytes")
    for call in spec["calls"]:
        if call[0] == "run":
            lines.append(f"run(max_instructions={call[1]})")
        elif call[0] == "write":
            lines.append(f"write({call[1]:#x}, {call[2]})")
        else:
            lines.append(f"cpu.{call[0]}(" + ", ".join(hex(a) if isinstance(a, int) else repr(a)
                                                      for a in call[1:]) + ")")
    return lines


def slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60]


def write_reproducer(outdir, finding, spec, original):
    os.makedirs(outdir, exist_ok=True)
    name = slug(f"{finding['kind']}-{finding['campaign']}-{finding['mode']}-{finding['key']}")
    path = os.path.join(outdir, name + ".py")
    n = 2
    while os.path.exists(path):
        path = os.path.join(outdir, f"{name}-{n}.py")
        n += 1
    about = "\n".join("    " + line for line in describe_spec(spec))
    text = f'''#!/usr/bin/env python3
"""vtx fuzz reproducer: {finding['kind']} [{finding['key']}] in the {finding['campaign']} campaign, {finding['mode']} mode.

Case {spec.get('id', finding['id'])}, minimized from {len(original['code']) // 2} to {len(spec['code']) // 2} code bytes.
Finding: {finding['detail'].splitlines()[0] if finding['detail'] else ''}

The case:
{about}

Run it where vtx is importable (from the repository: PYTHONPATH=. python {os.path.basename(path)}).
It exits 1 when an invariant fails, 0 when none does; a crash kills the
interpreter with a signal and a hang never returns.  Below: the fuzzer's
harness (vtx/fuzz/harness.py) verbatim, then the case.
"""

# ---- vtx/fuzz/harness.py ------------------------------------------------------
{inspect.getsource(harness)}

# ---- the case -----------------------------------------------------------------
SPEC = {pprint.pformat(spec, width=100, sort_dicts=False)}

if __name__ == "__main__":
    import sys
    result = run_case(SPEC)
    print(describe(result))
    sys.exit(1 if result["findings"] else 0)
'''
    with open(path, "w") as f:
        f.write(text)
    return path


def write_findings_json(outdir, findings, distinct):
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "findings.json")
    with open(path, "w") as f:
        json.dump({"distinct": distinct, "all": findings}, f, indent=1)
    return path


def summary(stats, findings, distinct, args, wall):
    out = [f"vtx.fuzz {args.campaign}: seed {args.seed}, mode {args.mode}, {args.workers} workers, "
           f"{wall:.1f} s"]
    for campaign in CAMPAIGNS:
        per_mode = stats["cases"].get(campaign)
        if not per_mode:
            continue
        total = sum(per_mode.values())
        secs = stats["seconds"].get(campaign, 0.0)
        rate = total / secs if secs else 0.0
        out.append(f"{campaign}: {total} cases (" + ", ".join(f"{m} {n}" for m, n in sorted(per_mode.items()))
                   + f"), {rate:.0f} cases/s per worker, {rate * args.workers:.0f} cases/s with "
                     f"{args.workers} workers")
        hist = stats["outcomes"].get(campaign, {})
        for outcome, n in sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"    {outcome:<48} {n}")
    counts = {}
    for f in findings:
        counts[f["kind"]] = counts.get(f["kind"], 0) + 1
    out.append("findings: " + ", ".join(f"{label} {counts.get(kind, 0)}" for kind, label in KINDS))
    for d in distinct:
        line = (f"  [{d['kind']}] {d['campaign']} {d['mode']} {d['key']}: {d['count']} cases, "
                f"first {d['id']}")
        out.append(line)
        if d.get("status"):
            out.append(f"      {d['status']}")
        if d.get("reproducer"):
            out.append(f"      reproducer {d['reproducer']}")
    return "\n".join(out)
