"""``python -m vtx.fuzz``: run the campaigns, triage what they find, report.

The parent hands out batches of case indices to worker subprocesses (one
batch in flight per worker, sized to about half a second of work) and
collects their histograms and findings.  It watches each worker's progress
file: a worker that dies is a crash and one whose heartbeat stops for
--timeout seconds is a hang (it is killed); either way the case it was
running is the suspect, the rest of its batch is handed out again and a
fresh worker takes its place.

When the campaign is over (--seconds or --count), each distinct finding
(kind, campaign, mode, key) is triaged once: its first case is re-run alone
in a fresh subprocess (for a crash or hang that does not reproduce alone,
the batch's earlier cases are re-run one at a time to find the guilty one),
minimized, confirmed and written out as a reproducer script.  The exit
status is 0 only when there are no findings.
"""

import argparse
import collections
import json
import os
import pprint
import queue
import random
import shutil
import sys
import tempfile
import time

from .cases import CAMPAIGNS, DEFAULT_BUDGET, MODES, case_id, make_spec, mode_of, parse_case_id
from .minimize import Minimizer, same_failure
from .pool import Evaluator, Worker, describe_returncode
from .report import KINDS, describe_spec, summary, write_findings_json, write_reproducer

BATCH_SECONDS = 0.5
#: Triage order: the worst kinds first, so --max-minimize keeps them.
PRIORITY = {kind: i for i, (kind, _label) in enumerate(KINDS)}


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m vtx.fuzz",
        description="Adversarial campaigns against the vtx core: random and mutated instruction "
                    "streams, random VMCS mutations, and adversarial VMX root operation on a bare "
                    "machine, with invariant checks after every case.")
    p.add_argument("campaign", nargs="?", choices=CAMPAIGNS + ("all",), default="all",
                   help="which campaign to run (default: all of them, interleaved)")
    p.add_argument("--seconds", type=float,
                   help="stop handing out cases after this many seconds (default 60 without --count)")
    p.add_argument("--count", type=int, help="cases per campaign")
    p.add_argument("--seed", type=int, help="campaign seed (default: random, printed in the summary)")
    p.add_argument("--mode", choices=MODES + ("all",), default="all",
                   help="guest mode (default: all three, case i in mode i %% 3)")
    p.add_argument("--budget", type=int,
                   help="max_instructions of a case (default: " +
                        ", ".join(f"{c} {DEFAULT_BUDGET[c]}" for c in CAMPAIGNS) + ")")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                   help="worker subprocesses (default: the number of cores)")
    p.add_argument("--out", default="fuzz-findings", help="directory for reproducers (default ./fuzz-findings)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="wall seconds a case may run before it counts as a hang (default 10)")
    p.add_argument("--minimize-seconds", type=float, default=120.0,
                   help="time limit for minimizing one finding (default 120)")
    p.add_argument("--max-minimize", type=int, default=20,
                   help="distinct findings to triage and minimize (default 20)")
    p.add_argument("--replay", metavar="CASE_ID", help="run one case in this process, verbosely")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    args = p.parse_args(argv)
    if args.count is not None and args.count <= 0:
        p.error("--count must be positive")
    if args.workers <= 0:
        p.error("--workers must be positive")
    if args.budget is not None and args.budget <= 0:
        p.error("--budget must be positive")
    if args.seconds is None and args.count is None:
        args.seconds = 60.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    return args


def replay(cid):
    from .harness import describe, run_case
    try:
        parse_case_id(cid)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    spec = make_spec(cid)
    print(f"case {cid}")
    for line in describe_spec(spec):
        print("  " + line)
    print("spec = " + pprint.pformat(spec, width=100, sort_dicts=False))
    t0 = time.perf_counter()
    result = run_case(spec)
    print(f"{describe(result)}\n({(time.perf_counter() - t0) * 1000:.1f} ms)")
    return 1 if result["findings"] else 0


class Campaign:
    """The case indices of one campaign: handed out in order, with the
    remains of batches whose worker died handed out first."""

    def __init__(self, name, args):
        self.name = name
        self.budget = args.budget or DEFAULT_BUDGET[name]
        self.limit = args.count
        self.next = 0
        self.pending = collections.deque()
        self.rate = None                  # cases per worker-second, measured

    def exhausted(self):
        return not self.pending and self.limit is not None and self.next >= self.limit

    def take(self):
        if self.pending:
            return self.pending.popleft()
        size = 16 if self.rate is None else max(4, min(4000, int(self.rate * BATCH_SECONDS)))
        if self.limit is not None:
            size = min(size, self.limit - self.next)
        start = self.next
        self.next += size
        return start, size

    def give_back(self, start, count):
        if count > 0:
            self.pending.append((start, count))


class Run:
    def __init__(self, args, tmpdir):
        self.args = args
        self.tmpdir = tmpdir
        self.campaigns = [Campaign(c, args) for c in
                          (CAMPAIGNS if args.campaign == "all" else (args.campaign,))]
        self.answers = queue.Queue()
        self.workers = []
        self.cases = collections.defaultdict(collections.Counter)      # campaign -> mode -> n
        self.outcomes = collections.defaultdict(collections.Counter)   # campaign -> outcome -> n
        self.seconds = collections.Counter()                           # campaign -> worker-seconds
        self.findings = []
        self.turn = 0

    def log(self, text):
        if not self.args.quiet:
            print(text, file=sys.stderr, flush=True)

    def spawn(self):
        w = Worker(self.tmpdir, self.answers)
        self.workers.append(w)
        return w

    def assign(self, w):
        live = [c for c in self.campaigns if not c.exhausted()]
        if not live:
            return
        c = live[self.turn % len(live)]
        self.turn += 1
        start, count = c.take()
        w.batch = {"campaign": c, "start": start, "count": count}
        w.beat = (w.progress()[1], time.monotonic())
        w.send({"op": "batch", "campaign": c.name, "mode": self.args.mode, "seed": self.args.seed,
                "start": start, "count": count, "budget": c.budget})

    def merge(self, w, msg):
        c = w.batch["campaign"]
        for key, n in msg["hist"].items():
            campaign, mode, outcome = key.split("|", 2)
            self.cases[campaign][mode] += n
            self.outcomes[campaign][outcome] += n
        self.findings.extend(msg["findings"])
        self.seconds[c.name] += msg["seconds"]
        rate = msg["count"] / max(msg["seconds"], 1e-6)
        c.rate = rate if c.rate is None else 0.7 * c.rate + 0.3 * rate
        w.batch = None

    def lost(self, w, kind, key, detail):
        """A worker died (crash) or was killed (hang): blame the case it was
        running, hand out the rest of its batch again, start a new worker."""
        idx, _beat = w.progress()
        w.kill()
        self.workers.remove(w)
        b = w.batch
        if b is not None:
            c, start, end = b["campaign"], b["start"], b["start"] + b["count"]
            if start <= idx < end:
                mode = mode_of(self.args.mode, idx)
                cid = case_id(c.name, mode, self.args.seed, idx, c.budget)
                self.cases[c.name][mode] += 1
                self.outcomes[c.name][kind] += 1
                self.findings.append({"kind": kind, "key": key, "detail": detail, "id": cid,
                                      "campaign": c.name, "mode": mode, "batch": [start, idx]})
                self.log(f"{kind}: {cid} ({key})")
                c.give_back(start, idx - start)       # their results died with the worker
                c.give_back(idx + 1, end - idx - 1)
            else:
                c.give_back(start, b["count"])
        elif not w.ready:
            raise RuntimeError(f"a fuzz worker died while starting ({describe_returncode(w.proc.returncode)}):\n"
                               f"{w.stderr_tail()}")
        self.spawn()

    def check_hangs(self, now):
        for w in list(self.workers):
            if w.batch is None:
                continue
            idx, beat = w.progress()
            if beat != w.beat[0]:
                w.beat = (beat, now)
            elif idx >= 0 and now - w.beat[1] > self.args.timeout:
                self.lost(w, "hang", "no progress",
                          f"no progress for {self.args.timeout:g} s; the worker was killed\n{w.stderr_tail()}")

    def run(self):
        args = self.args
        t0 = time.monotonic()
        deadline = t0 + args.seconds if args.seconds else None
        for _ in range(args.workers):
            self.spawn()
        next_log = t0 + 10
        while True:
            now = time.monotonic()
            stopping = deadline is not None and now >= deadline
            if not stopping:
                for w in self.workers:
                    if w.ready and w.batch is None:
                        self.assign(w)
            busy = any(w.batch is not None for w in self.workers)
            if not busy and (stopping or all(c.exhausted() for c in self.campaigns)):
                break
            try:
                w, line = self.answers.get(timeout=0.1)
            except queue.Empty:
                w = None
            if w is not None and w in self.workers:
                if line is None:
                    w.proc.wait()
                    self.lost(w, "crash", describe_returncode(w.proc.returncode),
                              f"the worker died ({describe_returncode(w.proc.returncode)})\n{w.stderr_tail()}")
                else:
                    msg = json.loads(line)
                    if msg["op"] == "ready":
                        w.ready = True
                    elif msg["op"] == "batch":
                        self.merge(w, msg)
            now = time.monotonic()
            self.check_hangs(now)
            if now >= next_log:
                next_log = now + 10
                self.log(f"[{now - t0:6.0f} s] " + ", ".join(
                    f"{c.name} {sum(self.cases[c.name].values())} cases" for c in self.campaigns)
                    + f", {len(self.findings)} findings")
        for w in self.workers:
            w.close()
        return time.monotonic() - t0


def find_guilty(ev, f, args):
    """The case of a crash or hang that did not reproduce alone: re-run the
    batch's earlier cases one at a time in fresh processes (up to 40)."""
    campaign, mode, seed, idx, budget = parse_case_id(f["id"])
    start = f["batch"][0]
    for i in range(idx - 1, max(start, idx - 40) - 1, -1):
        spec = make_spec(case_id(campaign, mode_of(args.mode, i), seed, i, budget))
        if same_failure((f["kind"], f["key"]), ev.run(spec, fresh=True)):
            return spec
    return None


def failure_detail(signature, outcome):
    """What the run that confirmed a finding said about it."""
    status, result, err = outcome
    if status != "ok":
        return f"{status}: {result or ''}\n{err}".strip()
    for f in result["findings"]:
        if (f["kind"], f["key"]) == signature:
            return f["detail"]
    return None


def triage(run, args):
    """Confirm, minimize and write a reproducer for each distinct finding."""
    groups = {}
    for f in run.findings:
        groups.setdefault((f["kind"], f["campaign"], f["mode"], f["key"]), []).append(f)
    order = sorted(groups, key=lambda s: PRIORITY.get(s[0], 99))
    distinct = []
    ev = Evaluator(run.tmpdir, args.timeout)
    try:
        for n, sig in enumerate(order):
            fs = groups[sig]
            first = fs[0]
            d = {"kind": sig[0], "campaign": sig[1], "mode": sig[2], "key": sig[3], "count": len(fs),
                 "id": first["id"], "detail": first["detail"], "cases": [f["id"] for f in fs[:20]]}
            distinct.append(d)
            if n >= args.max_minimize:
                d["status"] = "not triaged (--max-minimize)"
                continue
            run.log(f"triage {n + 1}/{min(len(order), args.max_minimize)}: [{sig[0]}] {sig[1]} {sig[2]} "
                    f"{sig[3]} ({first['id']})")
            spec = make_spec(first["id"])
            signature = (sig[0], sig[3])
            ev.timeout = args.timeout
            if not same_failure(signature, ev.run(spec, fresh=True)):
                guilty = find_guilty(ev, first, args) if sig[0] in ("crash", "hang") else None
                if guilty is None:
                    d["status"] = "did not reproduce in a fresh process"
                    d["reproducer"] = write_reproducer(args.out, d, spec, spec)
                    continue
                spec = guilty
                d["id"] = spec["id"]
            # Candidates get a shorter leash than the campaign: a case takes
            # milliseconds, so two seconds without an answer is a hang.
            ev.timeout = min(args.timeout, 2.0)
            m = Minimizer(ev, signature, args.minimize_seconds)
            small = m.minimize(spec)
            ev.timeout = args.timeout
            confirm = ev.run(small, fresh=True)
            if small is not spec and not same_failure(signature, confirm):
                small = spec                       # the short leash misjudged: keep the original
                confirm = ev.run(small, fresh=True)
            d["status"] = (f"reproduced alone; minimized in {m.tries} runs from {len(spec['code']) // 2} "
                           f"to {len(small['code']) // 2} code bytes")
            d["spec"] = small
            d["detail"] = failure_detail(signature, confirm) or d["detail"]
            d["reproducer"] = write_reproducer(args.out, d, small, spec)
    finally:
        ev.close()
    return distinct


def main(argv=None):
    args = parse_args(argv)
    if args.replay:
        return replay(args.replay)
    tmpdir = tempfile.mkdtemp(prefix="vtx-fuzz-")
    run = Run(args, tmpdir)
    interrupted = False
    try:
        try:
            wall = run.run()
        except KeyboardInterrupt:
            interrupted = True
            wall = 0.0
            for w in run.workers:
                w.kill()
        distinct = [] if interrupted else triage(run, args)
        stats = {"cases": run.cases, "outcomes": run.outcomes, "seconds": run.seconds}
        text = summary(stats, run.findings, distinct, args, wall)
        if run.findings:
            write_findings_json(args.out, run.findings, distinct)
            with open(os.path.join(args.out, "summary.txt"), "w") as f:
                f.write(text + "\n")
        print(text)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if interrupted:
        return 130
    return 1 if run.findings else 0
