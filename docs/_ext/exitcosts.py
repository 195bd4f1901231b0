"""``.. exit-costs::``: measure a few VM-exit round trips while the docs build
and show them as a bar chart (with matplotlib) and a table.

Each measurement runs a small guest that repeats one exiting instruction
``ROUNDS`` times under a handler that does the least it can (step over the
instruction, or answer the MMIO read), and reports the wall-clock time per
round trip: exit, dispatch to Python, handler, re-entry with its checks. The
numbers belong to the machine that built the page, which the page says.

The whole directive costs well under a second of build time. When vtx
cannot be imported (the extension is not built), the page says so instead
of failing the build.
"""

import io
import platform
import time

from docutils import nodes
from docutils.parsers.rst import Directive, directives

ROUNDS = 2000
REPEATS = 3
CODE = 0x1000
HOLE = 0x200000          # above the 1 MiB of RAM: an EPT violation
MMIO = 0x300000          # a hole claimed by a Python device


def _loop(body):
    return f"""
        mov esi, {ROUNDS}
    1:  {body}
        dec esi
        jnz 1b
        vmcall
    """


# (label, guest loop body, how the handler is set up)
CASES = [
    ("OUT to a port", "out 0xe9, al", "resume"),
    ("CPUID", "cpuid", "cpuid"),
    ("HLT", "hlt", "resume"),
    ("VMCALL (hypercall)", "vmcall", "vmcall"),
    ("EPT violation (unbacked read)", f"mov eax, dword ptr [{HOLE:#x}]", "ept"),
    ("MMIO read (Python device)", f"mov eax, dword ptr [{MMIO:#x}]", "mmio"),
]


def measure_case(vtx, body, how):
    """(nanoseconds per round trip, the last run's RunResult) of one case,
    the best of REPEATS runs."""
    code = vtx.asm(_loop(body), bits=32, org=CODE)
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, code)
    vm.add_vcpu()
    vm.setup_protected_mode(entry=CODE)
    # The loop's last VMCALL ends the run; the measured VMCALLs resume.
    end = CODE + len(code)

    def finish_or_resume(vcpu, exit):
        return vtx.STOP if vcpu.rip == end - 3 else vtx.RESUME

    if how == "resume":
        vm.default(lambda vcpu, exit: vtx.RESUME)
        vm.on(vtx.ExitReason.VMCALL)(lambda vcpu, exit: vtx.STOP)
    elif how == "cpuid":
        def cpuid(vcpu, exit):
            vcpu.eax, vcpu.ebx, vcpu.ecx, vcpu.edx = 0, 0x756E6547, 0x6C65746E, 0x49656E69
            return vtx.RESUME
        vm.on(vtx.ExitReason.CPUID)(cpuid)
        vm.on(vtx.ExitReason.VMCALL)(lambda vcpu, exit: vtx.STOP)
    elif how == "vmcall":
        vm.on(vtx.ExitReason.VMCALL)(finish_or_resume)
    elif how == "ept":
        # No instruction length is reported for an EPT violation: the
        # handler knows its guest and steps over the 5-byte MOV itself.
        def ept(vcpu, exit):
            vcpu.rip += 5
            return vtx.RETRY
        vm.on(vtx.ExitReason.EPT_VIOLATION)(ept)
        vm.on(vtx.ExitReason.VMCALL)(lambda vcpu, exit: vtx.STOP)
    elif how == "mmio":
        vm.map_mmio(MMIO, 0x1000, lambda vcpu, gpa, size, is_write, value: 0x12345678)
        vm.on(vtx.ExitReason.VMCALL)(lambda vcpu, exit: vtx.STOP)
    best = None
    for _ in range(REPEATS):
        vm.setup_protected_mode(entry=CODE)
        t0 = time.perf_counter_ns()
        r = vm.run(max_instructions=50 * ROUNDS)
        ns = time.perf_counter_ns() - t0
        if r.stop != "stop":
            raise RuntimeError(f"the {body!r} loop ended with {r.stop!r}")
        best = ns if best is None else min(best, ns)
    return best / ROUNDS, r


def measure():
    """[(label, ns per round trip)] for every case, or None without vtx."""
    try:
        import vtx
    except ImportError:
        return None
    return [(label, measure_case(vtx, body, how)[0]) for label, body, how in CASES]


def _sanitized():
    """Whether this process runs with AddressSanitizer's runtime preloaded
    (tools/asan_tests.sh builds the docs that way): matplotlib's font module
    throws C++ exceptions, which that runtime cannot intercept there (it
    aborts the build), so the chart is left out and the table stays."""
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def _svg_chart(rows):
    """A horizontal bar chart as inline SVG text, or None without matplotlib
    (or under the sanitizer, see _sanitized)."""
    if _sanitized():
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = [r[0] for r in rows][::-1]
    values = [r[1] / 1000 for r in rows][::-1]
    grey = "#808080"           # readable on furo's light and dark backgrounds
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 10, "text.color": grey,
                                "axes.labelcolor": grey, "xtick.color": grey, "ytick.color": grey,
                                "axes.edgecolor": grey}):
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1))
        bars = ax.barh(labels, values, color="#4a6fa5")
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3)
        ax.set_xlabel("microseconds per exit round trip (lower is faster)")
        ax.set_xlim(0, max(values) * 1.2)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", transparent=True)
        plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _table(rows):
    table = nodes.table(classes=["exit-costs"])
    group = nodes.tgroup(cols=2)
    table += group
    group += nodes.colspec(colwidth=3)
    group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    body = nodes.tbody()
    group += body

    def row(cells, parent, num=False):
        r = nodes.row()
        for i, text in enumerate(cells):
            entry = nodes.entry(classes=["num"] if (num and i) else [])
            entry += _untranslated(nodes.paragraph(text=text))
            r += entry
        parent += r

    row(["exit", "ns per round trip"], head)
    for label, ns in rows:
        row([label, f"{ns:,.0f}"], body, num=True)
    return table


def _untranslated(node):
    """Generated text (numbers of this machine) is no message for gettext:
    a catalog could never keep up with it."""
    node["translatable"] = False
    return node


class ExitCosts(Directive):
    has_content = False
    option_spec = {"no-chart": directives.flag}

    def run(self):
        env = self.state.document.settings.env
        # One measurement per build, however many pages show it.
        rows = getattr(env.app, "_vtx_exit_costs", "unset")
        if rows == "unset":
            rows = measure()
            env.app._vtx_exit_costs = rows
        if rows is None:
            return [_untranslated(nodes.paragraph(text="(vtx could not be imported while these pages were "
                                                       "built, so this build has no measurements.)"))]
        out = []
        svg = None if "no-chart" in self.options else _svg_chart(rows)
        if svg:
            out.append(nodes.raw("", f'<div class="exit-costs-chart">{svg}</div>', format="html"))
        out.append(_table(rows))
        machine = f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}"
        out.append(_untranslated(nodes.paragraph(text=f"Measured while this page was built ({machine}), the "
                                                      f"best of {REPEATS} runs of {ROUNDS} exits each.")))
        return out


def setup(app):
    app.add_directive("exit-costs", ExitCosts)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

