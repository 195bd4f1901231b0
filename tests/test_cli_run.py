"""The command line (vtx/__main__.py, vtx/cli_run.py): ``vtx run FILE`` with
an ELF file and a flat binary on the PC with its serial console and debug
port, its exit status, and ``vtx demo`` with its options."""

import subprocess
import sys

import pytest

import vtx
from vtx.__main__ import main
from vtx.cguest import missing_tools

needs_gcc = pytest.mark.skipif(bool(missing_tools()), reason=f"needs {' and '.join(missing_tools())}")

DEBUG_PORT_AND_EXIT = r"""
#include "rt.h"
int main(void) { printf("hello from %d-bit code\n", (int)sizeof(void *) * 8); outb(0xf4, 3); return 0; }
"""

# COM1 as a driver writes it: wait for THR empty (LSR bit 5), then write;
# then halt with interrupts off, which ends the run.
SERIAL = r"""
#include "rt.h"
int main(void)
{
    const char *s = "via COM1\r\n";
    while (*s) {
        while (!(inb(0x3fd) & 0x20))
            ;
        outb(0x3f8, *s++);
    }
    return 0;
}
"""


@needs_gcc
@pytest.mark.parametrize("mode", [32, 64])
def test_run_an_elf_file(tmp_path, capfd, mode):
    path = tmp_path / "guest.elf"
    path.write_bytes(vtx.cc(DEBUG_PORT_AND_EXIT, mode=mode).elf)
    # isa-debug-exit: a write of 3 to port F4H ends the run with status (3 << 1) | 1
    assert main(["run", str(path), "--stats"]) == 7
    out, err = capfd.readouterr()
    assert out == f"hello from {mode}-bit code\n"
    assert "[vtx] stopped: debug-exit 7" in err and "IO_INSTRUCTION" in err


@needs_gcc
def test_run_a_flat_binary_on_the_serial_console(tmp_path, capfd):
    path = tmp_path / "guest.bin"
    g = vtx.cc(SERIAL, mode=32, load_address=0x2000)
    path.write_bytes(g.image)
    assert main(["run", str(path), "--load", "0x2000", "--memory", "4", "--max-instructions", "1000000"]) == 0
    assert capfd.readouterr().out == "via COM1\r\n"


@needs_gcc
def test_run_in_real_mode(tmp_path, capfd):
    path = tmp_path / "guest.elf"
    path.write_bytes(vtx.cc(DEBUG_PORT_AND_EXIT, mode=16).elf)
    assert main(["run", str(path), "--mode", "real"]) == 7
    assert capfd.readouterr().out == "hello from 32-bit code\n"       # -m16: 32-bit pointers


def test_run_errors(tmp_path, capfd):
    assert main(["run", str(tmp_path / "missing.elf")]) == 1
    assert "cannot read" in capfd.readouterr().err
    bad = tmp_path / "bad.elf"
    bad.write_bytes(b"\x7fELF\x02\x02" + bytes(58))
    assert main(["run", str(bad)]) == 1
    assert "big-endian" in capfd.readouterr().err
    assert main(["run", str(bad), "--memory", "0"]) == 2


def test_budget_ends_a_spinning_guest(tmp_path, capfd):
    path = tmp_path / "spin.bin"
    path.write_bytes(b"\xeb\xfe")                 # jmp $
    assert main(["run", str(path), "--max-instructions", "5000", "--stats"]) == 0
    assert "[vtx] stopped: budget; 5000 instructions" in capfd.readouterr().err


def test_help_names_itself():
    p = subprocess.run([sys.executable, "-m", "vtx", "run", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("usage: python -m vtx run ")
    assert "--max-instructions" in p.stdout and "--memory" in p.stdout


def test_demo_options(capsys):
    assert main(["demo", "--mode", "protected"]) == 0
    out = capsys.readouterr().out
    assert "guest: Hello from 32-bit protected mode! The CPU vendor is: vtxVMXmodel!\n" in out
    assert "16-bit" not in out and "64-bit" not in out


@needs_gcc
def test_demo_c_guest(capsys):
    assert main(["demo", "--guest", "c"]) == 0
    out = capsys.readouterr().out
    for mode in ("16-bit real mode", "32-bit protected mode", "64-bit long mode"):
        assert f"guest: Hello from {mode}, in C! The CPU vendor is: vtxVMXmodel!\n" in out


def test_progress_line():
    import io
    from types import SimpleNamespace

    from vtx.cli_run import Progress
    times = iter([0.0, 0.5, 1.0, 1.5, 2.5])
    machine = SimpleNamespace(vcpu=SimpleNamespace(instructions=0))
    out = io.StringIO()
    p = Progress(machine, budget=4_000_000, stream=out, clock=lambda: next(times))
    for n in (1_000_000, 2_000_000, 3_000_000, 4_000_000):
        machine.vcpu.instructions = n
        assert p() is False                       # it never ends the run
    p.done()
    # shown at t = 1.0 and t = 2.5 only (once a second)
    assert out.getvalue() == ("\r[vtx] 2,000,000 instructions, 2 M/s, 50% of the budget"
                              "\r[vtx] 4,000,000 instructions, 2 M/s, 100% of the budget\n")


def test_progress_on_a_run(tmp_path, capfd):
    path = tmp_path / "spin.bin"
    path.write_bytes(b"\xeb\xfe")
    assert main(["run", str(path), "--max-instructions", "2000", "--progress"]) == 0
    assert capfd.readouterr().err == ""           # shorter than a second: nothing shown
