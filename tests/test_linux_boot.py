"""An unmodified Debian kernel boots to a busybox shell under the Python
hypervisor of vtx.pc, and answers a command typed on its serial console."""

import pytest

import vtx

from vtx.linux import LinuxAssetsUnavailable, fetch


@pytest.fixture(scope="module")
def booted():
    try:
        assets = fetch()
    except LinuxAssetsUnavailable as e:
        pytest.skip(f"the Debian kernel and busybox packages cannot be fetched here: {e}")
    from vtx.linux.machine import LinuxMachine
    m = LinuxMachine(assets)
    assert m.boot(), f"no shell prompt: {m.platform.stopped}; console tail: {m.console[-2000:]}"
    return m


def test_boot_reaches_the_prompt_through_every_phase(booted):
    m = booted
    assert [name for name, _, _ in m.phases] == ["decompress", "kernel init", "userspace"]
    out = m.console
    assert f"Linux version {m.assets.kernel_release}" in out
    assert "tsc: Detected 1000.000 MHz processor" in out      # CPUID leaf 15H, no PIT calibration
    # CPUID offers XSAVES and vtx.pc enables it: the kernel keeps its tasks'
    # FPU state in the compacted format (XSAVES/XRSTORS), x87 and SSE.
    assert "x86/fpu: Enabled xstate features 0x3, context size is 576 bytes, using 'compacted' format." in out
    assert "vtx-initramfs: init running" in out
    # The boot ends at the prompt (busybox's line editor then asks the
    # terminal where the cursor is, ESC [6n, which the next run prints).
    assert out.endswith("~ # ")
    # The decompressor runs with interrupts off and no device but the UART.
    decompress = m.phases[0][1]
    assert decompress["injected"] == 0
    assert decompress["instructions"] > 10_000_000


def test_command_on_the_serial_console(booted):
    m = booted
    out = m.command("uname -r; cat /proc/cpuinfo | head; echo ok")
    lines = [line.rstrip("\r") for line in out.splitlines()]
    assert lines[0].endswith("uname -r; cat /proc/cpuinfo | head; echo ok")      # the echo
    assert lines[1] == m.assets.kernel_release
    assert lines[2].startswith("processor") and lines[2].endswith(": 0")
    assert "vendor_id\t: GenuineIntel" in lines
    assert "cpu MHz\t\t: 1000.000" in lines
    assert "ok" in lines


def test_report_lists_the_exits_per_phase(booted):
    report = booted.report()
    assert "IO_INSTRUCTION" in report and "CPUID" in report and "HLT" in report
    assert report.splitlines()[0].split() == ["phase", "instructions", "wall", "s", "exits", "injected"]


def _run_m(m, n):
    """Run n instructions; what they did: registers, console output, memory."""
    mark = len(m.uart.output)
    m.run(max_instructions=n)
    v = m.vcpu
    regs = tuple(getattr(v, r) for r in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r15",
                                         "rip", "rflags", "cr3", "instructions"))
    return regs, bytes(m.uart.output[mark:]), m.vm.read(0x1000000, 1 << 20), m.platform.injected


def test_snapshot_replays_a_booting_kernel_exactly(tmp_path):
    """Run N, save, run M; restore, run M again: the same registers, console
    and memory, through the PIT's interrupts and the UART's output."""
    try:
        assets = fetch()
    except LinuxAssetsUnavailable as e:
        pytest.skip(f"the Debian kernel and busybox packages cannot be fetched here: {e}")
    from vtx.linux.machine import LinuxMachine
    m = LinuxMachine(assets)
    m.run(max_instructions=400_000_000)           # in the kernel's initialization, timer running
    assert m.platform.injected > 0
    path = tmp_path / "linux.snap"
    m.save(path)
    m.platform.reset_stats()
    first = _run_m(m, 60_000_000)
    assert first[1] and first[3] > 0              # it printed and took interrupts
    m.restore(path)
    m.platform.reset_stats()
    assert _run_m(m, 60_000_000) == first
    # And into another machine built the same way.
    other = LinuxMachine(assets)
    other.restore(path)
    assert _run_m(other, 60_000_000) == first


def test_boot_with_the_local_apic_and_the_io_apic():
    """With an xAPIC and an I/O APIC described by ACPI tables (vtx.acpi), the
    kernel takes its timer from the local APIC (through MMIO, emulated) and
    routes the ISA interrupts through the I/O APIC."""
    try:
        assets = fetch()
    except LinuxAssetsUnavailable as e:
        pytest.skip(f"the Debian kernel and busybox packages cannot be fetched here: {e}")
    from vtx.linux.machine import LinuxMachine
    m = LinuxMachine(assets, apic=True)
    assert m.boot(), f"no shell prompt: {m.platform.stopped}; console tail: {m.console[-2000:]}"
    out = m.console
    assert "ACPI: Interpreter enabled" in out and "ACPI Error" not in out
    assert "IOAPIC[0]: apic_id 1, version 17, address 0xfec00000, GSI 0-23" in out
    assert "..TIMER: vector=0x30 apic1=0 pin1=2" in out
    irqs = m.command("cat /proc/interrupts")
    rows = {line.split(":")[0].strip(): line.split() for line in irqs.splitlines() if ":" in line}
    assert rows["0"][2:] == ["IO-APIC", "2-edge", "timer"]
    assert rows["4"][2:] == ["IO-APIC", "4-edge", "ttyS0"] and int(rows["4"][1]) > 0
    assert int(rows["LOC"][1]) > 0                       # local APIC timer interrupts
    # The APIC registers are MMIO: each access an emulated EPT violation.
    assert m.platform.stats()["exits"][vtx.ExitReason.EPT_VIOLATION] > 100


def test_boot_on_two_vcpus():
    """Two vCPUs: the MADT lists two processors, the kernel starts the second
    with INIT and two start-up IPIs (SDM Vol. 3A 9.4.4), its TSCs agree
    (vCPUs share one clock), and both take interrupts."""
    try:
        assets = fetch()
    except LinuxAssetsUnavailable as e:
        pytest.skip(f"the Debian kernel and busybox packages cannot be fetched here: {e}")
    from vtx.linux.machine import APIC_CMDLINE, LinuxMachine
    # Without "tsc=reliable" the kernel measures the warp between the two
    # CPUs' TSCs when it starts the second, and would give up the TSC as its
    # clocksource for any warp.
    m = LinuxMachine(assets, apic=True, cpus=2, cmdline=APIC_CMDLINE.replace(" tsc=reliable", ""))
    assert m.boot(), f"no shell prompt: {m.platform.stopped}; console tail: {m.console[-2000:]}"
    out = m.console
    assert "smpboot: Allowing 2 CPUs, 0 hotplug CPUs" in out
    assert "smp: Brought up 1 node, 2 CPUs" in out
    assert "Total of 2 processors activated" in out
    assert "TSC synchronization" not in out and "unstable" not in out
    assert "clocksource: Switched to clocksource tsc\n" in out.replace("\r", "")
    # INIT (its de-assert is no message), then two SIPIs: the first starts
    # the AP, which waited for it, and the second finds it running.
    assert m.ipis["init"] == 1 and m.ipis["startup"] == 2
    exits = m.platform.stats()["exits"]
    assert exits[vtx.ExitReason.STARTUP_IPI] == 1 and vtx.ExitReason.INIT_SIGNAL not in exits
    assert f"IPIs delivered: fixed {m.ipis['fixed']:,}, init 1, startup 2" in m.report()
    lines = [line.rstrip("\r") for line in m.command("grep -c ^processor /proc/cpuinfo; nproc").splitlines()]
    assert lines[1:3] == ["2", "2"]
    irqs = m.command("cat /proc/interrupts")
    rows = {line.split(":")[0].strip(): line.split() for line in irqs.splitlines() if ":" in line}
    assert int(rows["LOC"][1]) > 0 and int(rows["LOC"][2]) > 0     # each vCPU's APIC timer
    assert int(rows["RES"][1]) + int(rows["RES"][2]) > 0            # rescheduling IPIs



def test_snapshot_replays_a_kernel_booting_on_two_vcpus(tmp_path):
    """The replay of a snapshot with two vCPUs, taken after the kernel has
    started the second: both vCPUs' registers, the console and memory are
    the same, in the same machine and in another one built the same way."""
    try:
        assets = fetch()
    except LinuxAssetsUnavailable as e:
        pytest.skip(f"the Debian kernel and busybox packages cannot be fetched here: {e}")
    from vtx.linux.machine import LinuxMachine

    def run(m, n):
        mark = len(m.uart.output)
        m.run(max_instructions=n)
        regs = tuple(tuple(getattr(v, r) for r in ("rax", "rcx", "rsp", "rip", "rflags", "cr3", "instructions"))
                     for v in m.vcpus)
        return regs, bytes(m.uart.output[mark:]), m.vm.read(0x1000000, 1 << 20), m.clock.now_ns()
    m = LinuxMachine(assets, apic=True, cpus=2)
    m.run(max_instructions=300_000_000)
    assert m.vcpus[1].instructions > 0 and m.ipis["startup"] == 2       # the AP runs
    path = tmp_path / "smp.snap"
    m.save(path)
    first = run(m, 40_000_000)
    assert first[1]                                                    # it printed
    m.restore(path)
    assert run(m, 40_000_000) == first
    other = LinuxMachine(assets, apic=True, cpus=2)
    other.restore(path)
    assert run(other, 40_000_000) == first


def test_interactive_console_reads_commands_from_the_terminal(monkeypatch, capsys):
    """python -m vtx linux --interactive: after the boot, each line read from
    the terminal (here a pipe) is typed into the UART and the shell's answer
    comes back on stdout, until EOF; then the exit report."""
    import io

    import vtx.__main__ as main_mod
    try:
        fetch()
    except LinuxAssetsUnavailable as e:
        pytest.skip(f"the Debian kernel and busybox packages cannot be fetched here: {e}")
    monkeypatch.setattr("sys.stdin", io.StringIO("echo hi-$((6*7))\nuname -s\n"))
    assert main_mod.main(["linux", "--interactive", "--quiet"]) == 0
    out = capsys.readouterr().out.replace("\r", "")
    assert "echo hi-$((6*7))\nhi-42\n~ # " in out
    assert "uname -s\nLinux\n~ # " in out
    assert "exit reason" in out and "IO_INSTRUCTION" in out
