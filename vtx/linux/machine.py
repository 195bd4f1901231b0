"""An unmodified Linux kernel on a :class:`vtx.pc.PcMachine`: boot it to a
shell, type commands, and see what virtualizing it cost.

``python -m vtx linux`` runs it for a user (docs/tutorials/linux.rst).
"""

import time

from ..pc import PcMachine
from ..spec import ExitReason

#: What the kernel is told: the serial console, no kernel address-space
#: randomization (so addresses repeat run to run), no ACPI tables to look
#: for (the PC has none), and the TSC trusted as a clocksource (the model's
#: TSC is exact by construction: docs/architecture.rst, "The platform").
DEFAULT_CMDLINE = "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr acpi=off tsc=reliable panic=-1"
#: With the local APIC and the I/O APIC the kernel finds them in the ACPI
#: tables (vtx.acpi), so ACPI stays on.
APIC_CMDLINE = "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr tsc=reliable panic=-1"

#: Phases of the boot, each ending when the console shows its marker.
PHASES = (
    ("decompress", b"Linux version"),          # the bzImage's decompressor to the kernel's first line
    ("kernel init", b"Run /init as init process"),
    ("userspace", b"~ # "),                     # busybox /init to the shell prompt
)
PROMPT = b"~ # "


class LinuxMachine(PcMachine):
    """A PC with a Linux kernel and a busybox initramfs loaded by the 64-bit
    boot protocol (vtx.linux.load_linux).  ``assets``: what
    :func:`vtx.linux.fetch` returns (fetched on demand when None).  ``apic``
    and ``cpus`` as for :class:`~vtx.pc.PcMachine`: with ``cpus=2`` the
    kernel finds two processors in the MADT and starts the second itself."""

    def __init__(self, assets=None, memory=256 << 20, cmdline=DEFAULT_CMDLINE, console=None, cpu=None,
                 init_script=None, apic=False, cpus=1):
        from . import busybox_initramfs, fetch, load_linux
        super().__init__(memory=memory, cpu=cpu, console=console, apic=apic, cpus=cpus)
        self.assets = assets if assets is not None else fetch()
        kernel = self.assets.kernel.read_bytes()
        initrd = busybox_initramfs(self.assets.busybox, init_script)
        if apic and cmdline == DEFAULT_CMDLINE:
            cmdline = APIC_CMDLINE
        self.boot_info = load_linux(self.vm, kernel, initrd, cmdline,
                                    acpi_rsdp=self.acpi_rsdp if apic else 0)
        self.cmdline = cmdline
        self.phases = []            # (name, stats dict, wall seconds) per finished phase
        # The console watches for the marker that ends the current boot phase
        # and stops the platform right after the OUT that completes it, so a
        # phase ends at an exact instruction.
        self._marker = None
        user_console = self.uart.on_output

        def watch(data):
            if user_console is not None:
                user_console(data)
            m = self._marker
            out = self.uart.output
            # A match that ends in the new bytes (not an old prompt before them).
            if m is not None and out.find(m, len(out) - len(data) - len(m) + 1) >= 0:
                self._marker = None
                self.platform.stopped = "marker"
        self.uart.on_output = watch

    @property
    def console(self):
        """Everything the guest wrote to COM1, as text."""
        return self.uart.output.decode("utf-8", "replace")

    def boot(self, max_instructions=20_000_000_000):
        """Run to the shell prompt, recording each phase's exits.  Returns
        True at the prompt, False if the budget ran out or the machine
        stopped first (``platform.stopped`` says why)."""
        self.platform.reset_stats()
        for name, marker in PHASES:
            if marker in self.uart.output:
                continue
            t0 = time.perf_counter()
            start = self.platform.stats()
            self._marker = marker
            why = self.run(max_instructions=max(1, max_instructions - self.platform.instructions))
            self._marker = None
            self.phases.append((name, _delta(self.platform.stats(), start), time.perf_counter() - t0))
            if why != "marker":
                return False
        return True

    def command(self, text, max_instructions=5_000_000_000):
        """Type ``text`` (a newline is added) at the prompt and run until the
        next prompt; returns what the guest printed in between (the echo of
        the command included)."""
        out = self.uart.output
        mark = len(out)
        self.type(text.rstrip("\n") + "\n")
        self._marker = PROMPT
        # The echo of the command comes first; the prompt after it ends the run.
        self.run(max_instructions=max_instructions, until=lambda: out.rfind(PROMPT) >= mark)
        self._marker = None
        return out[mark:].decode("utf-8", "replace")

    def report(self):
        """A text table: per boot phase, instructions, wall time, and the VM
        exits per reason with their count and mean wall time per exit."""
        lines = []
        reasons = sorted({r for _, s, _ in self.phases for r in s["exits"]}, key=int)
        head = f"{'phase':<13} {'instructions':>14} {'wall s':>8} {'exits':>9} {'injected':>9}"
        lines.append(head)
        lines.append("-" * len(head))
        total = {"instructions": 0, "wall": 0.0, "exits": 0, "injected": 0}
        for name, s, wall in self.phases:
            n = sum(s["exits"].values())
            lines.append(f"{name:<13} {s['instructions']:>14,} {wall:>8.2f} {n:>9,} {s['injected']:>9,}")
            total["instructions"] += s["instructions"]
            total["wall"] += wall
            total["exits"] += n
            total["injected"] += s["injected"]
        lines.append(f"{'total':<13} {total['instructions']:>14,} {total['wall']:>8.2f} {total['exits']:>9,} "
                     f"{total['injected']:>9,}")
        lines.append("")
        head = f"{'exit reason':<28}" + "".join(f"{name:>16}" for name, _, _ in self.phases) + f"{'ns/exit':>10}"
        lines.append(head)
        lines.append("-" * len(head))
        for r in reasons:
            cells = "".join(f"{s['exits'].get(r, 0):>16,}" for _, s, _ in self.phases)
            n = sum(s["exits"].get(r, 0) for _, s, _ in self.phases)
            ns = sum(s["exit_ns"].get(r, 0) for _, s, _ in self.phases)
            name = r.name if isinstance(r, ExitReason) else str(r)
            lines.append(f"{name:<28}{cells}{ns / n if n else 0:>10,.0f}")
        lines.append("(ns/exit: wall time from the exit to the next entry, the Python handler included; an "
                     "EPT_VIOLATION here is an emulated MMIO access)")
        if self.ipis:
            lines.append("")
            lines.append("IPIs delivered: " + ", ".join(f"{mode} {n:,}" for mode, n in sorted(self.ipis.items())))
        return "\n".join(lines)


def _delta(now, then):
    return {
        "instructions": now["instructions"] - then["instructions"],
        "wall_ns": now["wall_ns"] - then["wall_ns"],
        "injected": now["injected"] - then["injected"],
        "exits": {k: v - then["exits"].get(k, 0) for k, v in now["exits"].items() if v - then["exits"].get(k, 0)},
        "exit_ns": {k: v - then["exit_ns"].get(k, 0) for k, v in now["exit_ns"].items()},
    }
