"""The workload suite as one call, and its report: a table of workloads by
profile with the native column, JSON, CSV and charts (``python -m vtx
bench``)."""

import csv
import io
import json
import os
import platform

import attrs

from .model import price
from .profiles import profiles as _profiles
from .workloads import DEFAULT_WORKLOADS, VARIANTS, WORKLOADS, run_workload

__all__ = ["SuiteResult", "run_suite", "machine_info"]


def machine_info():
    """The host the suite ran on and the vtx that ran it."""
    from .. import __version__
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"vtx": __version__, "python": platform.python_version(), "system": platform.platform(),
            "cpu": cpu, "cpus": os.cpu_count()}


@attrs.frozen
class SuiteResult:
    """Measurements of the suite (:class:`~vtx.overhead.workloads.Measurement`
    per workload and variant), the profiles they are priced under, the
    hypervisor's kind for pricing (``host``), and the machine."""

    measurements: list
    profiles: list
    host: str
    machine: dict
    n: int

    def get(self, workload, variant):
        for m in self.measurements:
            if m.workload == workload and m.variant == variant:
                return m
        return None

    def workloads(self):
        seen = []
        for m in self.measurements:
            if m.workload not in seen:
                seen.append(m.workload)
        return seen

    def cycles(self, m, profile):
        """Modeled cycles per operation of measurement m under profile."""
        if m.wall_ns == 0:
            return None
        return price(m.counts(), profile, "type2" if m.variant == "native" else self.host).total / m.ops

    def rows(self):
        """One dict per measurement: its figures and its cycles per
        operation under each profile."""
        out = []
        for m in self.measurements:
            d = m.to_dict()
            d["title"] = WORKLOADS[m.workload].title
            for p in self.profiles:
                c = self.cycles(m, p)
                d[f"cycles_per_op[{p.name}]"] = None if c is None else round(c, 1)
            out.append(d)
        return out

    def to_dict(self):
        return {"machine": self.machine, "n": self.n, "host": self.host,
                "profiles": [p.to_dict() for p in self.profiles], "results": self.rows()}

    def to_json(self, path=None):
        text = json.dumps(self.to_dict(), indent=2, default=str)
        if path:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text

    def to_csv(self, path=None):
        rows = self.rows()
        cols = ["workload", "variant", "ops", "wall_ns", "instructions", "ops_per_s", "exits_per_op",
                "ns_per_exit"] + [f"cycles_per_op[{p.name}]" for p in self.profiles] + ["note"]
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r)
        if path:
            with open(path, "w") as f:
                f.write(out.getvalue())
        return out.getvalue()

    def table(self):
        """Per workload: the measured figures of each setting, then the
        modeled cycles per operation under each profile for the exiting
        setting, the not-exiting one and the native one."""
        lines = []
        m = self.machine
        lines.append(f"vtx {m['vtx']} on {m['cpu']} ({m['system']}, Python {m['python']}); "
                     f"{self.n} operations per workload; hypervisor priced as {self.host!r}")
        lines.append("profiles: " + "; ".join(f"{p.name} ({p.path})" for p in self.profiles))
        lines.append("")
        head = ["workload", "setting", "ops/s", "exits/op", "ns/exit"] + [p.name for p in self.profiles]
        rows = [head]
        for wname in self.workloads():
            w = WORKLOADS[wname]
            for v in VARIANTS:
                me = self.get(wname, v)
                if me is None or (v not in w.variants):
                    continue
                label = v
                if v == "exiting" and w.reason is None and w.runner is None:
                    # Nothing in the loop exits: the guest under VMX.  A mixed
                    # workload (a runner) exits for many reasons: "exiting".
                    label = "vmx"
                if me.wall_ns == 0:
                    rows.append([wname, label, "-", "-", "-"] + ["-"] * len(self.profiles))
                    continue
                rate = f"{me.ops_per_s:,.0f}" if me.ops_per_s >= 10 else f"{me.ops_per_s:.3g}"
                row = [wname, label, rate, f"{me.exits_per_op:,.2f}",
                       f"{me.ns_per_exit:.0f}" if me.total_exits else "-"]
                row += [f"{self.cycles(me, p):,.0f}" for p in self.profiles]
                rows.append(row)
        w = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for i, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w[j]) if j < 2 else c.rjust(w[j]) for j, c in enumerate(r)))
            if i == 0:
                lines.append("-" * len(lines[-1]))
        lines.append("")
        lines += self.matrix()
        lines.append("")
        lines.append("ops/s and ns/exit: this machine's wall time on the model; the profile columns: modeled "
                     "cycles per operation (docs/reference/cost_profiles.rst).  exiting: the control that "
                     "makes the operation exit is set; not-exiting: clear; native: a bare machine, no VMX.")
        notes = [f"{me.workload} ({me.variant}): {me.note}" for me in self.measurements
                 if me.note and me.variant in WORKLOADS[me.workload].variants]
        lines += notes
        refs = {}
        for p in self.profiles:
            for key in sorted({v.split(":")[0] for v in p.sources.values()}):
                if key in p.references:
                    refs.setdefault(key, p.references[key])
        if refs:
            lines.append("sources of the profiles' numbers:")
            lines += [f"  {k}: {v}" for k, v in refs.items()]
        return "\n".join(lines)

    def matrix(self):
        """The overview as lines of text: one row per workload, its modeled
        cycles per operation under VMX (the exiting setting) for each
        profile, then the native column (the bare machine's run priced at
        the first profile's CPI: a native run has no exits, so only the CPI
        of a profile changes it)."""
        first = self.profiles[0]
        same_cpi = all(p.cpi == first.cpi for p in self.profiles)
        native_head = "native" if same_cpi else f"native ({first.name})"
        head = ["workload"] + [p.name for p in self.profiles] + [native_head]
        rows = [head]
        for wname in self.workloads():
            ex, nat = self.get(wname, "exiting"), self.get(wname, "native")
            row = [wname]
            row += [f"{self.cycles(ex, p):,.0f}" if ex is not None and ex.wall_ns else "-" for p in self.profiles]
            row.append(f"{self.cycles(nat, first):,.0f}" if nat is not None and nat.wall_ns else "-")
            rows.append(row)
        w = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["modeled cycles per operation: workload x profile under VMX (the exiting setting), and native"]
        for i, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w[j]) if j == 0 else c.rjust(w[j]) for j, c in enumerate(r)))
            if i == 0:
                lines.append("-" * len(lines[-1]))
        return lines

    def charts(self, directory):
        """Write PNG charts (matplotlib): modeled cycles per operation by
        workload and profile, exiting against native.  Returns the paths, or
        raises ImportError without matplotlib."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        os.makedirs(directory, exist_ok=True)
        paths = []
        names = [w for w in self.workloads() if self.get(w, "exiting") and self.get(w, "exiting").wall_ns]
        width = 0.8 / max(1, len(self.profiles))
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4.5))
        for i, p in enumerate(self.profiles):
            ys = [self.cycles(self.get(w, "exiting"), p) for w in names]
            ax.bar([k + i * width for k in range(len(names))], ys, width, label=p.name)
        natives = [self.get(w, "native") for w in names]
        ax.scatter([k + 0.4 - width / 2 for k in range(len(names))],
                   [self.cycles(m, self.profiles[-1]) if m and m.wall_ns else 0 for m in natives],
                   color="black", marker="_", s=200, label=f"native ({self.profiles[-1].name})", zorder=3)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))])
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("modeled cycles per operation")
        ax.set_title(f"Modeled cost per operation under VMX ({self.host})")
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = os.path.join(directory, "cycles_per_op.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
        return paths


def run_suite(names=None, n=2000, profiles=None, host="type2", progress=None):
    """Run the workloads ``names`` (default all but the mixed ones, such as
    ``linux_boot``, which take minutes) in every setting each
    offers, ``n`` operations each, and price them under ``profiles``
    (names, paths or Profiles; default every shipped one) for a hypervisor
    of kind ``host`` (vtx.overhead.model).  ``progress(done, total,
    label)`` is called after each run.  A :class:`SuiteResult`."""
    names = list(names or DEFAULT_WORKLOADS)
    for w in names:
        if w not in WORKLOADS:
            raise ValueError(f"no workload {w!r}; the suite has {', '.join(WORKLOADS)}")
    profs = _profiles(profiles)
    jobs = [(w, v) for w in names for v in VARIANTS]
    out = []
    for i, (w, v) in enumerate(jobs):
        out.append(run_workload(w, v, n))
        if progress is not None:
            progress(i + 1, len(jobs), f"{w} ({v})")
    return SuiteResult(out, profs, host, machine_info(), n)
