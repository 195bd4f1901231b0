"""An unmodified Debian kernel boots to a busybox shell under the Python
hypervisor of vtx.pc, and answers a command typed on its serial console."""

import pytest

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
