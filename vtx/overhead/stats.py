"""The accounting of a run or of a vCPU's history, as Python data.

The core counts in C (docs/architecture.rst, "Accounting and cost
profiles"); :class:`Stats` is what :attr:`vtx.RunResult.stats` and
:meth:`vtx.VM.stats` return: per basic exit reason the count, the wall time
split into the guest's execution before the exit, the model's exit path and
the handler, and the distribution of the round trip (exit to the next
entry); the qualification kinds the cost of an exit depends on (I/O port,
MSR, control register); VM entries, VMREAD and VMWRITE (executed by x86
code or made through the Python API), events delivered, TLB flushes and
page walks.

The distribution comes from a log2 histogram with four buckets per power of
two of the host's clock ticks, kept in C per reason: a percentile is the
geometric middle of its bucket, within 9% of the true value, clamped to
the exact minimum and maximum.
"""

import csv
import io
import json
import math

import attrs

from ..spec import ExitReason


def write_csv(rows, columns, file=None):
    """Dicts as CSV with a header row of ``columns``: written to ``file`` (a
    text file), or returned as a string when there is none."""
    out = file if file is not None else io.StringIO()
    w = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow(row)
    return None if file is not None else out.getvalue()


__all__ = ["ReasonStats", "Stats", "bucket_bounds"]

#: Interruption types (SDM Vol. 3C 25.8.3) by the index of the core's count.
EVENT_TYPES = ("external-interrupt", "reserved-1", "nmi", "hardware-exception", "software-interrupt",
               "privileged-software-exception", "software-exception", "other-event")

#: CR access types (SDM Vol. 3C Table 28-3, bits 5:4).
CR_ACCESS = ("mov-to-cr", "mov-from-cr", "clts", "lmsw")


def bucket_bounds(b):
    """[low, high) in ticks of histogram bucket ``b`` (core/vmx/exit.pxi,
    acct_bucket): one bucket per tick below 4, then four per power of two."""
    if b < 4:
        return b, b + 1
    k = b // 4 + 1
    low = (4 + b % 4) << (k - 2)
    if b == 127:
        return low, math.inf
    nk = (b + 1) // 4 + 1
    return low, (4 + (b + 1) % 4) << (nk - 2)


def _reason_key(r):
    return ExitReason(r) if r in ExitReason._value2member_map_ else r


def _reason_name(r):
    return r.name if isinstance(r, ExitReason) else str(r)


@attrs.frozen
class ReasonStats:
    """One basic exit reason: ``count`` exits; ``round_trip_ns``, the wall
    time from the exits to the next entries (the model's exit path, the
    handler and the entry checks); ``handler_ns``, of that the time inside
    the Python handler; ``guest_ns`` and ``guest_instructions``, the guest's
    execution from the entries before to these exits;
    ``handler_instructions``, root-mode instructions between the exits and
    the next entries (an x86 hypervisor's handler, its VMRESUME included;
    0 under a Python hypervisor); ``min_ns`` and ``max_ns``, the exact
    extremes of one round trip; ``hist``, the round-trip histogram (bucket
    -> count, see :func:`bucket_bounds`) and ``ns_per_tick`` to read it."""

    reason: object
    count: int
    round_trip_ns: int
    handler_ns: int
    guest_ns: int
    guest_instructions: int
    handler_instructions: int
    min_ns: float
    max_ns: float
    hist: dict = attrs.field(factory=dict, repr=False)
    ns_per_tick: float = attrs.field(default=1.0, repr=False)

    @property
    def exit_path_ns(self):
        """The model's share of the round trip: building the exit, the
        dispatch and the VM entry with its checks."""
        return max(0, self.round_trip_ns - self.handler_ns)

    @property
    def mean_ns(self):
        return self.round_trip_ns / self.count if self.count else 0.0

    def percentile(self, q):
        """The round trip below which a fraction ``q`` (0-1) of these exits
        fell, from the histogram (within 9%), in nanoseconds.  0 when no
        distribution was recorded (the detail was off)."""
        if not 0 <= q <= 1:
            raise ValueError(f"a percentile is a fraction in [0, 1], not {q!r}")
        total = sum(self.hist.values())
        if total == 0:
            return 0.0
        rank = max(1, math.ceil(q * total))
        seen = 0
        for b in sorted(self.hist):
            seen += self.hist[b]
            if seen >= rank:
                low, high = bucket_bounds(b)
                mid = math.sqrt(max(low, 0.5) * high) if high != math.inf else low
                v = mid * self.ns_per_tick
                return min(max(v, self.min_ns), self.max_ns) if self.max_ns else v
        return self.max_ns

    @property
    def median_ns(self):
        return self.percentile(0.5)

    @property
    def p90_ns(self):
        return self.percentile(0.9)

    @property
    def p99_ns(self):
        return self.percentile(0.99)

    def merged(self, other):
        hist = dict(self.hist)
        for b, n in other.hist.items():
            hist[b] = hist.get(b, 0) + n
        mins = [m for m in (self.min_ns, other.min_ns) if m]
        return ReasonStats(self.reason, self.count + other.count, self.round_trip_ns + other.round_trip_ns,
                           self.handler_ns + other.handler_ns, self.guest_ns + other.guest_ns,
                           self.guest_instructions + other.guest_instructions,
                           self.handler_instructions + other.handler_instructions,
                           min(mins) if mins else 0.0, max(self.max_ns, other.max_ns), hist, self.ns_per_tick)

    def to_dict(self):
        return {"reason": _reason_name(self.reason), "number": int(self.reason), "count": self.count,
                "round_trip_ns": self.round_trip_ns, "exit_path_ns": self.exit_path_ns,
                "handler_ns": self.handler_ns, "guest_ns": self.guest_ns,
                "guest_instructions": self.guest_instructions,
                "handler_instructions": self.handler_instructions,
                "mean_ns": round(self.mean_ns, 1), "min_ns": round(self.min_ns, 1),
                "median_ns": round(self.median_ns, 1), "p90_ns": round(self.p90_ns, 1),
                "p99_ns": round(self.p99_ns, 1), "max_ns": round(self.max_ns, 1)}


@attrs.frozen
class Stats:
    """The accounting of a run (:attr:`vtx.RunResult.stats`) or since the
    last reset (:meth:`vtx.VM.stats`).  ``reasons`` maps each
    :class:`vtx.ExitReason` that occurred to its :class:`ReasonStats`;
    ``io_ports`` maps (port, "in"/"out", size) to exits, ``msrs`` (MSR,
    "read"/"write"), ``crs`` (CR number, access type); ``*_other`` count
    exits beyond the 64 distinct keys a table holds.  ``instructions``,
    ``events`` and ``wall_ns`` are filled for a run."""

    reasons: dict
    io_ports: dict
    msrs: dict
    crs: dict
    vmread_x86: int = 0
    vmwrite_x86: int = 0
    vmread_api: int = 0
    vmwrite_api: int = 0
    delivered: dict = attrs.field(factory=dict)
    tlb_flushes: int = 0
    page_walks: int = 0
    entries: int = 0
    io_other: int = 0
    msr_other: int = 0
    instructions: int = 0
    events: int = 0
    wall_ns: int = 0
    #: Of the x86 VMREADs and VMWRITEs, those between an exit and the next
    #: entry (a hypervisor's handlers, not its set-up).
    vmread_x86_exits: int = 0
    vmwrite_x86_exits: int = 0

    @classmethod
    def from_core(cls, d, instructions=0, events=0, wall_ns=0):
        """From the dict the core returns (vtx/core/acct.pxi, acct_dict)."""
        k = d["ns_per_tick"]
        reasons = {}
        for r, (n, rt, hn, gn, gi, hi, mn, mx, hist) in d["reasons"].items():
            key = _reason_key(r)
            reasons[key] = ReasonStats(key, n, rt, hn, gn, gi, hi, mn * k, mx * k, hist, k)
        io_ports = {(key & 0xFFFF, "in" if key >> 16 & 1 else "out", key >> 17): n for key, n in d["io"].items()}
        msrs = {(key & 0xFFFFFFFF, "write" if key >> 32 else "read"): n for key, n in d["msr"].items()}
        crs = {(key & 15, CR_ACCESS[key >> 4 & 3]): n for key, n in d["cr"].items()}
        delivered = {EVENT_TYPES[i]: n for i, n in enumerate(d["delivered"]) if n}
        return cls(reasons, io_ports, msrs, crs, d["vmread_x86"], d["vmwrite_x86"], d["vmread_api"],
                   d["vmwrite_api"], delivered, d["tlb_flushes"], d["page_walks"], d["entries"],
                   d["io_other"], d["msr_other"], instructions, events, wall_ns, d["vmread_x86_exits"],
                   d["vmwrite_x86_exits"])

    @classmethod
    def from_runs(cls, dicts, instructions=0, events=0, wall_ns=0):
        """The sum of several of the core's dicts (the turns of a run over
        several vCPUs), with a run's totals."""
        total = cls({}, {}, {}, {})
        for d in dicts:
            total = total.merged(cls.from_core(d if isinstance(d, dict) else d.to_dict()))
        return attrs.evolve(total, instructions=instructions, events=events, wall_ns=wall_ns)

    # --- sums ---------------------------------------------------------------------

    @property
    def exits(self):
        """Exits per reason (a dict like :attr:`vtx.RunResult.exits`)."""
        return {r: s.count for r, s in self.reasons.items()}

    @property
    def total_exits(self):
        return sum(s.count for s in self.reasons.values())

    @property
    def exit_ns(self):
        return sum(s.round_trip_ns for s in self.reasons.values())

    @property
    def handler_ns(self):
        return sum(s.handler_ns for s in self.reasons.values())

    @property
    def guest_instructions(self):
        return sum(s.guest_instructions for s in self.reasons.values())

    @property
    def handler_instructions(self):
        return sum(s.handler_instructions for s in self.reasons.values())

    def merged(self, other):
        """The sum of two accountings (the vCPUs of a VM, or the turns of a
        run over several)."""
        def add(a, b):
            out = dict(a)
            for k, v in b.items():
                out[k] = out.get(k, 0) + v
            return out
        reasons = dict(self.reasons)
        for r, s in other.reasons.items():
            reasons[r] = reasons[r].merged(s) if r in reasons else s
        return Stats(reasons, add(self.io_ports, other.io_ports), add(self.msrs, other.msrs),
                     add(self.crs, other.crs), self.vmread_x86 + other.vmread_x86,
                     self.vmwrite_x86 + other.vmwrite_x86, self.vmread_api + other.vmread_api,
                     self.vmwrite_api + other.vmwrite_api, add(self.delivered, other.delivered),
                     self.tlb_flushes + other.tlb_flushes, self.page_walks + other.page_walks,
                     self.entries + other.entries, self.io_other + other.io_other,
                     self.msr_other + other.msr_other, self.instructions + other.instructions,
                     self.events + other.events, max(self.wall_ns, other.wall_ns),
                     self.vmread_x86_exits + other.vmread_x86_exits,
                     self.vmwrite_x86_exits + other.vmwrite_x86_exits)

    # --- export -------------------------------------------------------------------

    def to_dict(self):
        """Plain data (JSON-ready): reasons in number order, tables as lists."""
        return {
            "reasons": [self.reasons[r].to_dict() for r in sorted(self.reasons, key=int)],
            "io_ports": [{"port": p, "direction": d, "size": s, "exits": n}
                         for (p, d, s), n in sorted(self.io_ports.items())],
            "io_other": self.io_other,
            "msrs": [{"msr": m, "access": a, "exits": n} for (m, a), n in sorted(self.msrs.items())],
            "msr_other": self.msr_other,
            "crs": [{"cr": c, "access": a, "exits": n} for (c, a), n in sorted(self.crs.items())],
            "vm_entries": self.entries,
            "vmread": {"x86": self.vmread_x86, "x86_in_exits": self.vmread_x86_exits, "api": self.vmread_api},
            "vmwrite": {"x86": self.vmwrite_x86, "x86_in_exits": self.vmwrite_x86_exits,
                        "api": self.vmwrite_api},
            "events_delivered": dict(self.delivered),
            "tlb_flushes": self.tlb_flushes,
            "page_walks": self.page_walks,
            "instructions": self.instructions,
            "events": self.events,
            "wall_ns": self.wall_ns,
        }

    def to_json(self, **kw):
        return json.dumps(self.to_dict(), **kw)

    #: The columns of :meth:`to_csv`, one row per exit reason.
    CSV_COLUMNS = ("reason", "number", "count", "round_trip_ns", "exit_path_ns", "handler_ns", "guest_ns",
                   "guest_instructions", "handler_instructions", "mean_ns", "min_ns", "median_ns", "p90_ns",
                   "p99_ns", "max_ns")

    def to_csv(self, file=None):
        """One row per exit reason (:attr:`CSV_COLUMNS`); written to
        ``file`` (a text file) or returned as a string."""
        return write_csv(self.to_dict()["reasons"], self.CSV_COLUMNS, file)

    def chart(self, path, title="VM exits: round trip per reason"):
        """Draw the round trip per exit reason with matplotlib (the ``bench``
        extra): a bar at the median, a line from the minimum to the 90th
        percentile, a dot at the 99th and the count beside each bar.  The
        format follows ``path``'s suffix (``.png``, ``.svg``, ``.pdf``).
        Returns ``path``; ImportError without matplotlib, ValueError when
        there is no exit to draw."""
        if not self.reasons:
            raise ValueError("no VM exits to draw")
        try:
            import matplotlib
        except ImportError:
            raise ImportError("Stats.chart needs matplotlib: pip install matplotlib "
                              "(or vtx's bench extra); Stats.table() needs nothing") from None
        matplotlib.use("Agg")       # a file, never a window
        import matplotlib.pyplot as plt
        import matplotlib.ticker
        rs = [self.reasons[r] for r in sorted(self.reasons, key=int)]
        names = [f"{_reason_name(s.reason)} ({int(s.reason)})" for s in rs]
        y = list(range(len(rs)))
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(rs) + 1.4))
        try:
            med = [s.median_ns or s.mean_ns for s in rs]
            ax.barh(y, med, color="#5b8def", label="median")
            ax.hlines(y, [s.min_ns for s in rs], [s.p90_ns or s.max_ns for s in rs], color="black",
                      label="min to 90th percentile")
            ax.plot([s.p99_ns or s.max_ns for s in rs], y, "o", color="black", markersize=3,
                    label="99th percentile")
            for i, s in enumerate(rs):
                ax.annotate(f"{s.count:,}", (max(med[i], s.p99_ns, s.max_ns), i), xytext=(4, 0),
                            textcoords="offset points", va="center", fontsize="small")
            ax.set_yticks(y)
            ax.set_yticklabels(names)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("nanoseconds from the exit to the next VM entry (count at the right)")
            ax.set_title(title)
            ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.25),
                      ncol=3, frameon=False)
            fig.savefig(path, bbox_inches="tight")
        finally:
            plt.close(fig)
        return path

    def table(self):
        """Per reason: count, mean and the distribution of the round trip,
        and its split, as a text table."""
        head = ("exit reason", "count", "mean ns", "min", "median", "p90", "p99", "max", "handler %")
        rows = [head]
        for r in sorted(self.reasons, key=int):
            s = self.reasons[r]
            share = 100.0 * s.handler_ns / s.round_trip_ns if s.round_trip_ns else 0.0
            rows.append((f"{_reason_name(r)} ({int(r)})", str(s.count), f"{s.mean_ns:.0f}", f"{s.min_ns:.0f}",
                         f"{s.median_ns:.0f}", f"{s.p90_ns:.0f}", f"{s.p99_ns:.0f}", f"{s.max_ns:.0f}",
                         f"{share:.0f}"))
        w = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)
