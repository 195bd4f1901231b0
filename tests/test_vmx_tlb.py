"""The TLB across VM exits and entries (vtx/core/vmx/exit.pxi, SDM Vol. 3C
29.4.3.3).  Without VPID every exit and entry invalidates the mappings of
VPID 0000H: the guest sees an EPT change made by the hypervisor at once.
With VPID (the default VMCS enables it, VPID 1) the guest's mappings survive
the round trip as on the processor, until the hypervisor invalidates them
(vcpu.invept / invvpid), writes guest memory through vm.write (which
invalidates), or enters with a different context (another CR3).
"""

import pytest

import vtx
from vtx import ExitReason as R, VmcsField as F
from vtx import ProcBased2

from conftest import guest, needs_as
from engine_paging import Paging64

pytestmark = needs_as

DATA = 0x300000                # in the second 2 MiB EPT page
OTHER = 0x100000               # DATA once that EPT page points at host-physical 0

# Read DATA, exit, read DATA again, exit; OUT reports each value.
GUEST = f"""
    mov eax, [{DATA:#x}]
    out 0x80, eax
    mov eax, [{DATA:#x}]
    out 0x80, eax
    hlt
"""
EPT_PD = 0x6000                # vtx/vm.py: the EPT page directory in private memory


def make(vpid, src=GUEST):
    vm = guest(src, 64, memory=6 << 20)       # setup's page tables at the top, beyond 4 MiB
    vm.write_u32(DATA, 0xAAAA)
    vm.write_u32(OTHER, 0xBBBB)
    if not vpid:
        v = vm.vcpu
        v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) & ~ProcBased2.ENABLE_VPID)
    return vm


def run(vm, between):
    """Run the guest; at the first OUT exit call between(vm); the values."""
    seen = []

    @vm.on(R.IO_INSTRUCTION)
    def out(vcpu, e):
        seen.append(e.value)
        if len(seen) == 1:
            between(vm)
        return vtx.RESUME
    r = vm.run()
    assert r.exit.reason == R.HLT
    return seen


def repoint_ept(vm):
    """Guest-physical [2 MiB, 4 MiB) -> host-physical [0, 2 MiB): the EPT
    PDE rewritten through the raw view of private memory, no INVEPT."""
    priv = vm._machine.priv_view()
    priv[EPT_PD + 8:EPT_PD + 16] = (0 | 7 | (6 << 3) | 0x80).to_bytes(8, "little")


def test_default_vmcs_enables_vpid_1():
    v = make(vpid=True).vcpu
    assert v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) & ProcBased2.ENABLE_VPID
    assert v.vmread(F.VIRTUAL_PROCESSOR_ID) == 1


def test_without_vpid_exit_and_entry_invalidate():
    assert run(make(vpid=False), repoint_ept) == [0xAAAA, 0xBBBB]


def test_with_vpid_the_guest_mapping_survives_the_round_trip():
    assert run(make(vpid=True), repoint_ept) == [0xAAAA, 0xAAAA]


@pytest.mark.parametrize("flush", ["invept", "invvpid"])
def test_with_vpid_invalidation_by_the_hypervisor(flush):
    def between(vm):
        repoint_ept(vm)
        getattr(vm.vcpu, flush)()
    assert run(make(vpid=True), between) == [0xAAAA, 0xBBBB]


def test_with_vpid_vm_write_invalidates():
    def between(vm):
        repoint_ept(vm)
        vm.write(0x800, b"\0")              # any write through the API
    assert run(make(vpid=True), between) == [0xAAAA, 0xBBBB]


def test_with_vpid_a_new_cr3_is_a_new_context():
    """Two hierarchies built before the run map linear 0x200000 to different
    pages; the hypervisor switches CR3 in the VMCS between exits (no memory
    write): the entry does not reuse the first context's mapping."""
    src = """
        mov eax, [0x200000]
        out 0x80, eax
        mov eax, [0x200000]
        out 0x80, eax
        hlt
    """
    vm = make(vpid=True, src=src)
    a, b = Paging64(vm, 0x180000), Paging64(vm, 0x190000)
    a.map(0x200000, DATA)
    b.map(0x200000, OTHER)
    vm.vcpu.cr3 = a.cr3
    assert run(vm, lambda vm: setattr(vm.vcpu, "cr3", b.cr3)) == [0xAAAA, 0xBBBB]
