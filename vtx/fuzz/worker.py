"""The worker subprocess: ``python -m vtx.fuzz.worker PROGRESS_FILE``.

It reads commands as JSON lines on stdin and answers with JSON lines on the
stdout it was started with (anything the library prints goes to stderr
instead, so it cannot corrupt the protocol):

- ``{"op": "batch", "campaign", "mode", "seed", "start", "count", "budget"}``
  runs cases start..start+count-1 and answers with the outcome histogram and
  the findings of the batch;
- ``{"op": "case", "spec": {...}}`` runs one spec (the minimizer's candidates)
  and answers with its result;
- ``{"op": "exit"}``.

Before each case it writes the case index and a heartbeat counter into the
16-byte PROGRESS_FILE, which the parent maps too: when the worker dies or
stops making progress, the parent knows which case did it without any
per-case message on the pipe.
"""

import faulthandler
import json
import mmap
import os
import struct
import sys
import time
import traceback

PROGRESS = struct.Struct("<qq")      # (index of the running case or -1 when idle, heartbeat)
IDLE, SINGLE = -1, -2                # index values: between cases, running a "case" command


def open_progress(path):
    with open(path, "r+b") as f:
        return mmap.mmap(f.fileno(), PROGRESS.size)


def guarded(run_case, spec):
    """run_case, with a bug in the fuzzer itself reported as a finding
    rather than killing the worker."""
    try:
        return run_case(spec)
    except Exception as ex:                   # noqa: BLE001
        return {"outcome": "harness:" + type(ex).__name__, "instructions": 0, "events": 0,
                "findings": [{"kind": "python", "key": f"harness {type(ex).__name__}",
                              "detail": traceback.format_exc(limit=-3)}]}


def main(argv):
    progress = open_progress(argv[0])
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    faulthandler.enable()              # a crash leaves a Python traceback on stderr

    from .cases import case_id, make_spec, mode_of
    from .harness import run_case

    beat = 0
    out.write(json.dumps({"op": "ready", "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "exit":
            break
        t0 = time.perf_counter()
        if op == "case":
            beat += 1
            PROGRESS.pack_into(progress, 0, SINGLE, beat)
            result = guarded(run_case, cmd["spec"])
            PROGRESS.pack_into(progress, 0, IDLE, beat)
            out.write(json.dumps({"op": "case", "result": result}) + "\n")
            continue
        campaign, seed, budget = cmd["campaign"], cmd["seed"], cmd["budget"]
        hist, findings = {}, []
        for i in range(cmd["start"], cmd["start"] + cmd["count"]):
            beat += 1
            PROGRESS.pack_into(progress, 0, i, beat)
            mode = mode_of(cmd["mode"], i)
            cid = case_id(campaign, mode, seed, i, budget)
            result = guarded(run_case, make_spec(cid))
            key = f"{campaign}|{mode}|{result['outcome']}"
            hist[key] = hist.get(key, 0) + 1
            for f in result["findings"]:
                f.update(id=cid, campaign=campaign, mode=mode)
                findings.append(f)
        PROGRESS.pack_into(progress, 0, IDLE, beat)
        out.write(json.dumps({"op": "batch", "start": cmd["start"], "count": cmd["count"],
                              "hist": hist, "findings": findings,
                              "seconds": time.perf_counter() - t0}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
