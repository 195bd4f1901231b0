"""Sub-page write permissions for EPT (core/vmx/spp.pxi; SDM Vol. 3C 29.3.4
of the pinned edition 325462-080US): writes to a read-only 4-KByte EPT page
whose leaf sets bit 61 are let through per 128-byte sub-page by the SPP
table, and the SPP-related event exits (reason 66) for an SPPT miss and an
SPPT misconfiguration."""

import pytest

import vtx
from vtx import ExitReason as R, ProcBased2, VmcsField as F
from conftest import needs_as
from test_vmx_ept_ad import ept_entries, make_vm

pytestmark = needs_as

PAGE = 0x6000                       # the sub-page-protected page
SPPT = (0x9000, 0xA000, 0xB000, 0xC000)     # the SPP table's four levels, in guest RAM
SPP_BIT = 1 << 61
EPT_W = 2


def vector(*subpages):
    v = 0
    for i in subpages:
        v |= 1 << (2 * i)
    return v


def spp_vm(src, vec=vector(0), mode="protected", spp_bit=True, control=True):
    vm = make_vm(src + "\nhlt", mode, ad=False)
    v = vm.vcpu
    if control:
        v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS,
                  v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) | ProcBased2.SUB_PAGE_WRITE_PERMISSIONS)
    v.vmwrite(F.SUB_PAGE_PERMISSION_TABLE_POINTER, SPPT[0])
    # L4, L3, L2 entries: present, pointing at the next level; L1: the vector.
    for level, table in zip((4, 3, 2), SPPT):
        idx = (PAGE >> (12 + 9 * (level - 1))) & 511
        vm.write(table + 8 * idx, (SPPT[4 - level + 1] | 1).to_bytes(8, "little"))
    set_vector(vm, vec)
    off, leaf = ept_entries(vm, PAGE)[-1]
    leaf &= ~EPT_W
    if spp_bit:
        leaf |= SPP_BIT
    vm._priv[off:off + 8] = leaf.to_bytes(8, "little")
    v.invept()
    return vm


def set_vector(vm, vec):
    vm.write(SPPT[3] + 8 * ((PAGE >> 12) & 511), vec.to_bytes(8, "little"))


def violation_qual(write=True):
    # write (bit 1), EPT permissions R and X (bits 3, 5), linear address valid
    # and the access to the translation (bits 7, 8).
    return (2 if write else 0) | (0b101 << 3) | (1 << 7) | (1 << 8)


@pytest.mark.parametrize("mode", ["protected", "long"])
def test_write_to_a_writable_sub_page_goes_through(mode):
    vm = spp_vm(f"mov dword ptr [{PAGE + 0x104:#x}], 0x11223344", vector(2), mode)
    assert vm.run().exit.reason == R.HLT
    assert vm.read(PAGE + 0x104, 4) == bytes.fromhex("44332211")


def test_write_to_a_protected_sub_page_is_an_ept_violation():
    vm = spp_vm(f"mov dword ptr [{PAGE + 0x80:#x}], 1", vector(0, 2))
    ex = vm.run().exit
    assert ex.reason == R.EPT_VIOLATION
    assert ex.qualification == violation_qual()
    assert ex.guest_physical_address == PAGE + 0x80 and ex.guest_linear_address == PAGE + 0x80
    assert vm.read(PAGE + 0x80, 4) == bytes(4)


def test_every_write_is_looked_up():
    """The first write's translation gives the TLB no write permission: the
    second write, to another sub-page, is looked up again and refused."""
    vm = spp_vm(f"mov byte ptr [{PAGE:#x}], 7\nmov byte ptr [{PAGE + 0x7F:#x}], 8\n"
                f"mov byte ptr [{PAGE + 0xF80:#x}], 9", vector(0))
    ex = vm.run().exit
    assert ex.reason == R.EPT_VIOLATION and ex.guest_physical_address == PAGE + 0xF80
    assert vm.read(PAGE, 1) == b"\x07" and vm.read(PAGE + 0x7F, 1) == b"\x08"


def test_sub_page_31_is_bit_62():
    vm = spp_vm(f"mov byte ptr [{PAGE + 0xFFF:#x}], 5", vector(31))
    assert vm.run().exit.reason == R.HLT
    assert vm.read(PAGE + 0xFFF, 1) == b"\x05"


def test_reads_are_not_affected():
    vm = spp_vm(f"mov eax, [{PAGE + 0x80:#x}]", vector())
    assert vm.run().exit.reason == R.HLT


@pytest.mark.parametrize("spp_bit,control", [(False, True), (True, False)])
def test_without_the_ept_bit_or_the_control_ept_decides(spp_bit, control):
    vm = spp_vm(f"mov dword ptr [{PAGE:#x}], 1", vector(0), spp_bit=spp_bit, control=control)
    ex = vm.run().exit
    assert ex.reason == R.EPT_VIOLATION and ex.qualification == violation_qual()


@pytest.mark.parametrize("level", [4, 3, 2])
def test_sppt_miss(level):
    vm = spp_vm(f"mov dword ptr [{PAGE + 0x10:#x}], 1")
    table = SPPT[4 - level]
    vm.write(table + 8 * ((PAGE >> (12 + 9 * (level - 1))) & 511), bytes(8))
    ex = vm.run().exit
    assert ex.reason == R.SPP_RELATED_EVENT and ex.name == "SPP_RELATED_EVENT"
    assert ex.qualification == 1 << 11
    assert ex.qualification_fields() == {"sppt_miss": 1, "nmi_unblocking": 0}
    assert ex.guest_physical_address == PAGE + 0x10 and ex.guest_linear_address == PAGE + 0x10
    assert vm.read(PAGE + 0x10, 4) == bytes(4)


@pytest.mark.parametrize("where,value", [
    ("leaf", vector(0) | (1 << 1)),                 # an odd bit of the vector
    ("leaf", vector(0) | (1 << 63)),
    ("L2", SPPT[3] | 1 | (1 << 5)),                 # bits 11:1 of a non-leaf entry
    ("L3", SPPT[2] | 1 | (1 << 45)),                # beyond the physical-address width
])
def test_sppt_misconfiguration(where, value):
    vm = spp_vm(f"mov dword ptr [{PAGE:#x}], 1")
    if where == "leaf":
        set_vector(vm, value)
    else:
        level = int(where[1])
        vm.write(SPPT[4 - level] + 8 * ((PAGE >> (12 + 9 * (level - 1))) & 511), value.to_bytes(8, "little"))
    ex = vm.run().exit
    assert ex.reason == R.SPP_RELATED_EVENT and ex.qualification == 0
    assert ex.guest_physical_address == PAGE


def test_a_write_the_ept_allows_never_walks_the_sppt():
    vm = spp_vm(f"mov dword ptr [{PAGE:#x}], 1", vector())
    off, leaf = ept_entries(vm, PAGE)[-1]
    vm._priv[off:off + 8] = (leaf | EPT_W).to_bytes(8, "little")
    vm.write(SPPT[0] + 8 * ((PAGE >> 39) & 511), bytes(8))     # a walk would miss
    vm.vcpu.invept()
    assert vm.run().exit.reason == R.HLT


# --- the Python API: vm.protect_subpages -------------------------------------------

def api_vm(src, memory=1 << 20, mode="protected"):
    vm = vtx.VM(memory=memory)
    vm.load(0x1000, vtx.asm(src + "\nhlt", bits={"protected": 32, "long": 64}[mode], org=0x1000))
    vm.add_vcpu()
    getattr(vm, f"setup_{mode}_mode")(entry=0x1000)
    vm.default(lambda v, e: vtx.STOP)
    return vm


def test_protect_subpages_lets_the_mask_through():
    vm = api_vm(f"mov dword ptr [{PAGE + 0x100:#x}], 1\nmov dword ptr [{PAGE + 0x180:#x}], 2")
    vm.protect_subpages(PAGE, 1 << 2)          # sub-page 2 (0x100-0x17F) only
    ex = vm.run().exit
    assert ex.reason == R.EPT_VIOLATION and ex.guest_physical_address == PAGE + 0x180
    assert vm.read(PAGE + 0x100, 4) == b"\x01\0\0\0" and vm.read(PAGE + 0x180, 4) == bytes(4)
    # A handler lets the write through by widening the mask and retrying.
    vm.protect_subpages(PAGE, (1 << 2) | (1 << 3))
    vm.default(lambda v, e: vtx.STOP)
    assert vm.run().exit.reason == R.HLT
    assert vm.read(PAGE + 0x180, 4) == b"\x02\0\0\0"


def test_protect_subpages_none_ends_the_protection():
    vm = api_vm(f"mov dword ptr [{PAGE + 0x800:#x}], 3")
    vm.protect_subpages(PAGE, 0)
    vm.protect_subpages(PAGE, None)
    assert vm.run().exit.reason == R.HLT
    assert vm.read(PAGE + 0x800, 4) == b"\x03\0\0\0"
    off, leaf = ept_entries(vm, PAGE)[-1]
    assert leaf & EPT_W and not leaf & SPP_BIT


def test_protect_subpages_splits_a_2m_page():
    """RAM of 4 MiB is mapped with 2 MiB EPT pages: the one around the page
    is split, and its other pages stay writable."""
    target = 0x201000
    vm = api_vm(f"mov dword ptr [{target + 0x10:#x}], 5\nmov dword ptr [{target + 0x1000:#x}], 6\n"
                f"mov dword ptr [{target + 0x80:#x}], 7", memory=4 << 20, mode="long")
    assert len(ept_entries(vm, target)) == 3            # a 2 MiB leaf
    vm.protect_subpages(target, 1)
    assert len(ept_entries(vm, target)) == 4
    ex = vm.run().exit
    assert ex.reason == R.EPT_VIOLATION and ex.guest_physical_address == target + 0x80
    assert vm.read(target + 0x10, 4) == b"\x05\0\0\0" and vm.read(target + 0x1000, 4) == b"\x06\0\0\0"


@pytest.mark.parametrize("gpa,writable", [(PAGE + 8, 1), (PAGE, 1 << 32), (PAGE, -1), (PAGE, True),
                                          (0x10000000, 1)])
def test_protect_subpages_bad_arguments(gpa, writable):
    vm = api_vm("nop")
    with pytest.raises(vtx.ArgumentError):
        vm.protect_subpages(gpa, writable)


def test_protection_survives_a_snapshot(tmp_path):
    vm = api_vm(f"mov dword ptr [{PAGE:#x}], 1\nmov dword ptr [{PAGE + 0x80:#x}], 2")
    vm.protect_subpages(PAGE, 1)
    path = tmp_path / "spp.snap"
    vm.save(path)
    vm2 = vtx.VM.load_snapshot(path)
    vm2.default(lambda v, e: vtx.STOP)
    ex = vm2.run().exit
    assert ex.reason == R.EPT_VIOLATION and ex.guest_physical_address == PAGE + 0x80
    vm2.protect_subpages(PAGE, 3)               # the table found again, not a new one
    assert vm2._pool_next == vm._pool_next
    assert vm2.run().exit.reason == R.HLT and vm2.read(PAGE + 0x80, 4) == b"\x02\0\0\0"
