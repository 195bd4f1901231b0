"""The examples in examples/ run, as a reader would start them, and print
exactly what they should (examples/type1_hypervisor.py is run by
tests/test_vmx_root.py)."""

import os
import pathlib
import subprocess
import sys

import pytest

from conftest import needs_as
from vtx.cguest import missing_tools

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
ROOT = EXAMPLES.parent


def run_example(name):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {' and '.join(missing_tools())}")
def test_c_guest():
    primes = "primes below 50: 2 3 5 7 11 13 17 19 23 29 31 37 41 43 47 (15 primes)"
    assert run_example("c_guest.py") == (f"     real mode, entry 0x1000: {primes}\n"
                                         f"protected mode, entry 0x1000: {primes}\n"
                                         f"     long mode, entry 0x1000: {primes}\n")


@needs_as
def test_sweep_vms():
    assert run_example("sweep_vms.py") == (
        "     27:  111 steps (780 guest instructions)\n"
        "     97:  118 steps (829 guest instructions)\n"
        "    871:  178 steps (1249 guest instructions)\n"
        "   6171:  261 steps (1830 guest instructions)\n"
        "  77031:  350 steps (2453 guest instructions)\n"
        " 837799:  524 steps (3671 guest instructions)\n")


@needs_as
def test_hello_hypervisor():
    assert run_example("hello_hypervisor.py").startswith("Hello from long mode\n")
