"""``vtx run FILE``: an ELF executable or a flat binary on a PC with a serial
console, as ``qemu-system-x86_64 -kernel`` runs one (docs/architecture.rst,
"The command line").

The machine is a :class:`vtx.pc.PcMachine` (PIC, PIT, RTC, COM1, the
keyboard controller, QEMU's isa-debug-exit at port F4H) with a Bochs/QEMU
debug console at port E9H, where vtx's C runtime prints.  What the guest
writes to COM1 or port E9H goes to standard output.  The run ends when the
guest halts with interrupts off (or with nothing that could wake it), writes
the debug-exit port, resets, or spends ``--max-instructions``; the exit status
is 0, the debug-exit code, or 1 for a triple fault or an error.
"""

from __future__ import annotations

import sys
import time

from .errors import VtxError
from .loader import ElfError, load_elf, load_flat

_DEFAULT_MODE = {32: "protected", 64: "long"}


def make_machine(data: bytes, memory_mib: int = 64, mode=None, load=0x1000, output=None):
    """A PcMachine with the guest in ``data`` loaded and its vCPU set up:
    (machine, LoadedImage).  ``output(bytes)`` gets the console's bytes."""
    from .devices import DebugCon
    from .pc import PcMachine
    m = PcMachine(memory=memory_mib << 20, console=output)
    m.platform.attach(DebugCon(on_output=output))
    if data[:4] == b"\x7fELF":
        from .loader import parse_elf
        bits = parse_elf(data)[0]
        image = load_elf(m.vm, data, mode=mode or _DEFAULT_MODE[bits])
    else:
        image = load_flat(m.vm, data, load, mode=mode or "protected")
    return m, image


class Progress:
    """The ``until`` of a run that writes, at most once per ``every``
    seconds, the instructions retired so far and their rate (and the share
    of the budget) to ``stream``; it never ends the run."""

    def __init__(self, machine, budget=None, stream=None, every=1.0, clock=time.monotonic):
        self.machine, self.budget, self.every, self.clock = machine, budget, every, clock
        self.stream = stream or sys.stderr
        self.t0 = self.last = clock()
        self.shown = False

    def __call__(self) -> bool:
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            n = self.machine.vcpu.instructions
            line = f"[vtx] {n:,} instructions, {n / max(now - self.t0, 1e-9) / 1e6:.0f} M/s"
            if self.budget:
                line += f", {100 * n / self.budget:.0f}% of the budget"
            self.stream.write("\r" + line)
            self.stream.flush()
            self.shown = True
        return False

    def done(self):
        if self.shown:
            self.stream.write("\n")


def run_file(args) -> int:
    """The ``vtx run`` subcommand (args from vtx.__main__)."""
    def out(b):
        sys.stdout.buffer.write(b)
        sys.stdout.buffer.flush()
    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as e:
        print(f"vtx run: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 1
    if args.memory < 1:
        print("vtx run: --memory is at least 1 (MiB)", file=sys.stderr)
        return 2
    try:
        m, image = make_machine(data, args.memory, args.mode, args.load, out)
        until = Progress(m, args.max_instructions) if args.progress else None
        why = m.run(max_instructions=args.max_instructions, until=until)
        if until is not None:
            until.done()
    except (ElfError, VtxError, ValueError) as e:
        print(f"vtx run: {args.file}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        why = "interrupted"
    sys.stdout.flush()
    if args.stats:
        print(f"\n[vtx] stopped: {why}; {m.vcpu.instructions} instructions", file=sys.stderr)
        from .spec import ExitReason
        for r, n in enumerate(m.vcpu.exit_counts()):
            if n:
                name = ExitReason(r).name if r in ExitReason._value2member_map_ else str(r)
                print(f"[vtx] {name:>24} {n}", file=sys.stderr)
    if isinstance(why, str) and why.startswith("debug-exit "):
        return int(why.split()[1])
    if why in ("triple fault", "shutdown"):
        print(f"\nvtx run: the guest stopped by a {why}", file=sys.stderr)
        return 1
    return 0
