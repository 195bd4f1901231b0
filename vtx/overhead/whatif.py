"""What-if studies: one workload under several hypervisor set-ups, and how
each choice changes the exits and the modeled cycles.

``what_if("msr_bitmap")`` runs the study and returns a :class:`WhatIf`
whose ``table()`` compares the settings under each profile.  A study is
one entry of :data:`WHAT_IFS`: a title and its settings, each a label, a
workload of the suite, the variant and an optional ``configure(vm)`` that
changes the standard set-up (vtx/overhead/workloads.py, make_vm).  TPR
shadow against CR8 exiting becomes one more entry once the model offers
those controls.
"""

import attrs

from ..spec import ProcBased, VmcsField as F
from .profiles import profiles as _profiles
from .workloads import _msr_bitmap_bit, run_workload

__all__ = ["Setting", "Study", "WhatIf", "WHAT_IFS", "what_if"]


@attrs.frozen
class Setting:
    label: str
    workload: str
    variant: str = "exiting"
    configure: object = None


@attrs.frozen
class Study:
    title: str
    settings: tuple


def _all_msrs_exit(vm):
    """No MSR bitmap: every RDMSR and WRMSR exits (SDM Vol. 3C 26.1.3)."""
    v = vm.vcpu
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) & ~ProcBased.USE_MSR_BITMAPS)


def _io_bitmap_port(port):
    """I/O bitmaps with only ``port``'s bit set (SDM Vol. 3C 25.6.4)."""
    def configure(vm):
        v = vm.vcpu
        v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS,
                  v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | ProcBased.USE_IO_BITMAPS)
        priv = vm._priv
        base = 0x1000 if port < 0x8000 else 0x2000
        priv[base + ((port & 0x7FFF) >> 3)] |= 1 << (port & 7)
        del priv
    return configure


def _msr_bitmap_read(vm):
    _msr_bitmap_bit(vm, 0xC0000103, write=False)


WHAT_IFS = {
    "msr_bitmap": Study("MSR bitmaps against exiting on every MSR access (RDMSR IA32_TSC_AUX)", (
        Setting("MSR bitmap, the MSR passed through", "rdmsr", "not-exiting"),
        Setting("MSR bitmap, the MSR's bit set", "rdmsr", "not-exiting", _msr_bitmap_read),
        Setting("no MSR bitmap: every MSR access exits", "rdmsr", "not-exiting", _all_msrs_exit),
    )),
    "io_bitmap": Study("I/O bitmaps against unconditional I/O exiting (IN AL, 71H)", (
        Setting("I/O bitmaps, the port passed through", "io_in", "not-exiting"),
        Setting("I/O bitmaps, the port's bit set", "io_in", "not-exiting", _io_bitmap_port(0x71)),
        Setting("unconditional I/O exiting", "io_in", "exiting"),
    )),
    "exception_bitmap": Study("a guest's page faults: intercepted and reflected, or left to the guest", (
        Setting("#PF not in the exception bitmap", "page_fault", "not-exiting"),
        Setting("#PF intercepted and reflected by the hypervisor", "page_fault", "exiting"),
    )),
}


@attrs.frozen
class WhatIf:
    """A study's measurements, one per setting, priced under ``profiles``."""

    name: str
    study: Study
    measurements: tuple
    profiles: list
    host: str

    def cycles(self, m, profile):
        from .model import price
        return price(m.counts(), profile, self.host).total / m.ops

    def to_dict(self):
        return {"study": self.name, "title": self.study.title, "host": self.host,
                "settings": [dict(m.to_dict(), label=s.label,
                                  cycles_per_op={p.name: self.cycles(m, p) for p in self.profiles})
                             for s, m in zip(self.study.settings, self.measurements)]}

    def table(self):
        head = ["setting", "exits/op", "ns/exit"] + [p.name for p in self.profiles]
        rows = [head]
        for s, m in zip(self.study.settings, self.measurements):
            rows.append([s.label, f"{m.exits_per_op:.2f}", f"{m.ns_per_exit:.0f}" if m.total_exits else "-"]
                        + [f"{self.cycles(m, p):,.0f}" for p in self.profiles])
        w = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [self.study.title + f" (modeled cycles per operation, hypervisor priced as {self.host!r})"]
        for i, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w[j]) if j == 0 else c.rjust(w[j]) for j, c in enumerate(r)))
            if i == 0:
                lines.append("-" * len(lines[-1]))
        return "\n".join(lines)


def what_if(name, n=1000, profiles=None, host="type2"):
    """Run the study ``name`` (a key of :data:`WHAT_IFS`) with ``n``
    operations per setting; a :class:`WhatIf`."""
    if name not in WHAT_IFS:
        raise ValueError(f"no what-if study {name!r}; there are {', '.join(WHAT_IFS)}")
    study = WHAT_IFS[name]
    ms = tuple(run_workload(s.workload, s.variant, n, s.configure) for s in study.settings)
    return WhatIf(name, study, ms, _profiles(profiles), host)
