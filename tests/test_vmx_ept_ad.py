"""EPT accessed and dirty flags, the page-modification log, and the EPT
leaf checks (core/mmu.pxi ept_translate, pml_log; SDM Vol. 3C 29.3.3.1,
29.3.5, 29.3.6 of the pinned edition 325462-080US).

The hosted hypervisor's EPT lives in its private memory; the helpers here
walk it from the EPTP to find the entries that map a guest-physical address.
"""

import pytest

import vtx
from vtx import ExitReason as R, ProcBased2, VmcsField as F
from conftest import needs_as

pytestmark = needs_as

PRIV = vtx._core.PRIV_BASE
CODE = 0x1000
PML = 0x8000                # the page-modification log (a page of guest RAM the guests leave alone)
A, D = 1 << 8, 1 << 9


def make_vm(src, mode="protected", memory=1 << 20, ad=True):
    vm = vtx.VM(memory=memory)
    vm.load(CODE, vtx.asm(src, bits={"protected": 32, "long": 64}[mode], org=CODE))
    vm.add_vcpu()
    getattr(vm, f"setup_{mode}_mode")(entry=CODE)
    if ad:
        vm.vcpu.vmwrite(F.EPT_POINTER, vm.vcpu.vmread(F.EPT_POINTER) | 0x40)
    vm.default(lambda v, e: vtx.STOP)
    return vm


def ept_entries(vm, gpa):
    """[(private-memory offset, value)] of the EPT entries that map gpa, from
    the PML4E to the leaf."""
    table = vm.vcpu.vmread(F.EPT_POINTER) & 0x000FFFFFFFFFF000
    out = []
    for level in (4, 3, 2, 1):
        off = table - PRIV + 8 * ((gpa >> (12 + 9 * (level - 1))) & 511)
        e = int.from_bytes(vm._priv[off:off + 8], "little")
        out.append((off, e))
        if level == 1 or e & 0x80:
            break
        table = e & 0x000FFFFFFFFFF000
    return out


def leaf(vm, gpa):
    return ept_entries(vm, gpa)[-1][1]


def clear_ad(vm):
    """Clear every accessed and dirty flag on the way to the pages the tests use."""
    for gpa in (CODE, 0x5000, 0x6000):
        for off, e in ept_entries(vm, gpa):
            vm._priv[off:off + 8] = (e & ~(A | D)).to_bytes(8, "little")
    vm.vcpu.invept()


def test_accessed_and_dirty_flags():
    vm = make_vm("mov eax, [0x5000]\nmov dword ptr [0x6000], 1\nhlt")
    clear_ad(vm)
    assert vm.run().exit.reason == R.HLT
    assert leaf(vm, 0x5000) & (A | D) == A
    assert leaf(vm, 0x6000) & (A | D) == A | D
    assert leaf(vm, CODE) & (A | D) == A
    assert all(e & A for _o, e in ept_entries(vm, 0x6000))


def test_without_the_eptp_bit_nothing_is_set():
    vm = make_vm("mov dword ptr [0x6000], 1\nhlt", ad=False)
    clear_ad(vm)
    assert vm.run().exit.reason == R.HLT
    assert all(not e & (A | D) for _o, e in ept_entries(vm, 0x6000))


def test_a_write_after_a_read_sets_dirty():
    """The read's translation gave no write permission to the TLB: the
    write comes back to the walk and sets the dirty flag."""
    vm = make_vm("mov eax, [0x5000]\nmov dword ptr [0x5004], 7\nhlt")
    clear_ad(vm)
    assert vm.run().exit.reason == R.HLT
    assert leaf(vm, 0x5000) & D and vm.read(0x5004, 4) == b"\x07\0\0\0"


def test_guest_paging_structure_accesses_count_as_writes():
    vm = make_vm("mov rax, [0x5000]\nhlt", mode="long")
    pml4 = vm.vcpu.cr3 & ~0xFFF
    assert vm.run().exit.reason == R.HLT
    assert leaf(vm, pml4) & (A | D) == A | D


def pml_vm(src, index=511):
    vm = make_vm(src)
    clear_ad(vm)
    v = vm.vcpu
    v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) | ProcBased2.ENABLE_PML)
    v.vmwrite(F.PML_ADDRESS, PML)
    v.vmwrite(F.PML_INDEX, index)
    return vm


def log(vm, i):
    return int.from_bytes(vm.read(PML + 8 * i, 8), "little")


def test_page_modification_log():
    vm = pml_vm("mov dword ptr [0x5010], 1\nmov dword ptr [0x6000], 2\nmov dword ptr [0x5020], 3\nhlt")
    assert vm.run().exit.reason == R.HLT
    assert (log(vm, 511), log(vm, 510)) == (0x5000, 0x6000)
    assert vm.vcpu.vmread(F.PML_INDEX) == 509           # a page already dirty is not logged again
    assert log(vm, 509) == 0


def test_page_modification_log_full():
    vm = pml_vm("mov dword ptr [0x5000], 1\nmov dword ptr [0x6000], 2\nhlt", index=0)
    e = vm.run().exit
    assert e.reason == R.PAGE_MODIFICATION_LOG_FULL and e.qualification == 0
    assert e.guest_rip == CODE + 10                      # fault-like: on the second write
    assert log(vm, 0) == 0x5000 and vm.vcpu.vmread(F.PML_INDEX) == 0xFFFF
    assert vm.read(0x6000, 4) == bytes(4) and not leaf(vm, 0x6000) & D
    # The hypervisor empties the log and the guest goes on.
    vm.vcpu.vmwrite(F.PML_INDEX, 511)
    assert vm.run().exit.reason == R.HLT
    assert log(vm, 511) == 0x6000 and vm.read(0x6000, 4) == b"\x02\0\0\0"


@pytest.mark.parametrize("memtype", [2, 3, 7])
def test_reserved_memory_type_is_a_misconfiguration(memtype):
    vm = make_vm("mov eax, [0x5000]\nhlt", ad=False)
    off, e = ept_entries(vm, 0x5000)[-1]
    vm._priv[off:off + 8] = ((e & ~0x38) | (memtype << 3)).to_bytes(8, "little")
    vm.vcpu.invept()
    ex = vm.run().exit
    assert ex.reason == R.EPT_MISCONFIGURATION and ex.gpa == 0x5000


def test_reserved_bit_of_a_2mib_page_is_a_misconfiguration():
    vm = make_vm("mov eax, [0x200000]\nhlt", memory=4 << 20, ad=False)
    off, e = ept_entries(vm, 0x200000)[-1]
    assert e & 0x80
    vm._priv[off:off + 8] = (e | (1 << 12)).to_bytes(8, "little")
    vm.vcpu.invept()
    ex = vm.run().exit
    assert ex.reason == R.EPT_MISCONFIGURATION and ex.gpa == 0x200000
