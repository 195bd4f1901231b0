import shutil

import pytest

import vtx

needs_as = pytest.mark.skipif(shutil.which("as") is None, reason="GNU as (binutils) is not installed")

SETUP = {16: "setup_real_mode", 32: "setup_protected_mode", 64: "setup_long_mode"}


def guest(source, bits=32, memory=1 << 20, entry=0x1000, stop_on_hlt=True):
    """A VM with `source` assembled at `entry`, set up for `bits`, and a HLT
    handler that stops the run."""
    vm = vtx.VM(memory=memory)
    vm.load(entry, vtx.asm(source, bits=bits, org=entry))
    vm.add_vcpu()
    getattr(vm, SETUP[bits])(entry=entry)
    if stop_on_hlt:
        vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    return vm
