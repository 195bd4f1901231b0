import os
import shutil

import pytest

import vtx

# Every VMRESUME of the suite runs both the incremental and the full VM-entry
# checks and raises EntryCheckMismatch if they disagree (docs/architecture.rst,
# "Entry checks at VMRESUME"), unless VTX_ENTRY_CHECKS asks for a mode.
if not os.environ.get("VTX_ENTRY_CHECKS"):
    vtx._core.set_entry_check_mode("verify")

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


def setb(bits):
    """A VMCS edit for the entry-check tables: set bits in a field."""
    return lambda old: old | int(bits)


def clrb(bits):
    """A VMCS edit for the entry-check tables: clear bits in a field."""
    return lambda old: old & ~int(bits)


def apply_changes(vcpu, changes):
    """Write [(field, value or function old -> new)] to the VMCS; returns
    [(field, old value)] to put back."""
    old = []
    for field, new in changes:
        o = vcpu.vmread(field)
        old.append((field, o))
        vcpu.vmwrite(field, new(o) if callable(new) else new)
    return old
