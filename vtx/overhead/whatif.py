"""What-if studies: one workload under several hypervisor set-ups, and how
each choice changes the exits and the modeled cycles.

``what_if("msr_bitmap")`` runs the study and returns a :class:`WhatIf`
whose ``table()`` compares the settings under each profile.  A study is
one entry of :data:`WHAT_IFS`: a title and its settings, each a label, a
workload of the suite, the variant and an optional ``configure(vm)`` that
changes the standard set-up (vtx/overhead/workloads.py, make_vm).
"""

import attrs

from ..spec import ProcBased, VmcsField as F
from .profiles import profiles as _profiles
from .workloads import _msr_bitmap_bit, run_workload

__all__ = ["Setting", "Study", "WhatIf", "WHAT_IFS", "what_if"]


@attrs.frozen
class Setting:
    """One set-up of a study: a workload of the suite in a variant, with
    ``configure(vm)`` applied to the standard VM; or ``run(n)``, any
    callable returning a :class:`~vtx.overhead.workloads.Measurement`.
    ``host`` prices it as another kind of hypervisor than the study's
    (vtx.overhead.model: "x86" for a hypervisor running on the model)."""

    label: str
    workload: str = ""
    variant: str = "exiting"
    configure: object = None
    run: object = None
    host: str = None


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


def _type1_example():
    """examples/type1_hypervisor.py of a source checkout: an x86 hypervisor
    (examples/type1/hypervisor.s) and a Python one for the same guest."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "type1_hypervisor.py"
    if not path.exists():
        raise FileNotFoundError(f"the type1_vs_type2 study runs examples/type1_hypervisor.py of a vtx source "
                                f"checkout; {path} does not exist")
    spec = importlib.util.spec_from_file_location("vtx_example_type1_hypervisor", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _guest_run(label, stats, exits, wall_ns):
    from .workloads import Measurement
    # One operation: the whole guest run.  Its instructions: the guest's and
    # the hypervisor's handlers' (set-up code before the first entry is not
    # the workload's).
    return Measurement(label, "exiting", 1, wall_ns, stats.guest_instructions + stats.handler_instructions,
                       dict(exits), stats)


def _run_type1(n):
    hw, r, _counts = _type1_example().run_type1()
    return _guest_run("type1_example", r.stats, r.exits, r.wall_ns)


def _run_type2(n):
    _console, r = _type1_example().run_type2()
    return _guest_run("type1_example", r.stats, r.exits, r.wall_ns)


#: The virtual-APIC page of the TPR-shadow setting: a guest RAM page the
#: workload kernel does not use.
VIRTUAL_APIC_PAGE = 0x300000


def _tpr_shadow(vm):
    """"Use TPR shadow" (SDM Vol. 3C 30.1): MOV to CR8 writes the VTPR of
    the virtual-APIC page; with TPR_THRESHOLD 0 no write drops below it."""
    v = vm.vcpu
    v.vmwrite(F.VIRTUAL_APIC_ADDRESS, VIRTUAL_APIC_PAGE)
    v.vmwrite(F.TPR_THRESHOLD, 0)
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | ProcBased.USE_TPR_SHADOW)


def _shadow(vm):
    from .shadow import ShadowPaging
    ShadowPaging(vm).enable()


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
    "type1_vs_type2": Study("an x86 hypervisor in VMX root operation against the Python hypervisor, "
                            "same guest (examples/type1_hypervisor.py; one operation = the guest's run)", (
        Setting("x86 hypervisor on the model (type 1)", run=_run_type1, host="x86"),
        Setting("Python hypervisor (hosted)", run=_run_type2),
    )),
    "tpr_shadow": Study("TPR shadow against CR8-load exiting (MOV to CR8)", (
        Setting("CR8-load exiting", "cr8_write", "exiting"),
        Setting("TPR shadow", "cr8_write", "not-exiting", _tpr_shadow),
    )),
    "shadow_paging": Study("EPT against shadow page tables kept by the Python hypervisor "
                           "(vtx/overhead/shadow.py)", (
        Setting("EPT: PTE update + INVLPG", "pte_update", "not-exiting"),
        Setting("shadow paging: PTE update + INVLPG", "pte_update", "not-exiting", _shadow),
        Setting("EPT: #PF handled by the guest", "page_fault", "not-exiting"),
        Setting("shadow paging: #PF handled by the guest", "page_fault", "not-exiting", _shadow),
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

    def host_of(self, m):
        for s, x in zip(self.study.settings, self.measurements):
            if x is m and s.host:
                return s.host
        return self.host

    def cycles(self, m, profile):
        from .model import price
        return price(m.counts(), profile, self.host_of(m)).total / m.ops

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
        lines = [self.study.title + f" (modeled cycles per operation; the Python hypervisor priced as "
                                    f"{self.host!r})"]
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
    ms = tuple(s.run(n) if s.run is not None else run_workload(s.workload, s.variant, n, s.configure)
               for s in study.settings)
    return WhatIf(name, study, ms, _profiles(profiles), host)
