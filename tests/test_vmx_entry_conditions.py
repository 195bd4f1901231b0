"""One VM-entry check per SDM condition (SDM Vol. 3C 325462-080US, 27.2 and
27.3.1): for every check of vtx/spec/entry_checks.py, a mutation of the
known-good VMCS that fails exactly that check, in each guest mode where the
condition applies (real mode with "unrestricted guest", 32-bit protected
mode, long mode), with the exact error number or exit reason and exit
qualification (the kvm-unit-tests style of tests/test_vmx_entry.py, whose
helpers this file uses).  The checks of 27.2.4 that need the processor
outside IA-32e mode run with x86 host state on a bare machine in protected
mode.  At the end, the meta-test: every check of the table is failed by some
test here or in tests/test_vmx_entry.py.
"""

import pytest

import vtx
from vtx import (EntryControls as EC, ExitControls as XC, ProcBased2, VmcsField as F)
from vtx.spec import capabilities
from vtx.spec.entry_checks import ENTRY_CHECKS, EXIT_QUALIFICATION, NEEDS_CONTROL, SDM_SEGMENTS

import test_vmx_entry as base
from conftest import apply_changes, clrb, setb
from test_vmx_entry import CTL, GUEST, HOST, NONCANON, PRIV, assert_runs, expect_failure, good_vm

# These guests never run an instruction (each entry fails, or stops at once):
# their zeros at RIP are not a forgotten load (vtx.VtxWarning, vm.run).
pytestmark = pytest.mark.filterwarnings("ignore::vtx.errors.VtxWarning")

ALL_MODES = ("real", "protected", "long")
DATA = ("DS", "ES", "FS", "GS")
G, UNUSABLE = 1 << 15, 1 << 16
V86_RFLAGS = 0x20002


def F_(seg, kind):
    return getattr(F, f"GUEST_{seg}_{kind}")


def no_ug():
    return (F.SECONDARY_PROC_BASED_CONTROLS, clrb(ProcBased2.UNRESTRICTED_GUEST))


def v86_state():
    """Virtual-8086 mode: RFLAGS.VM and the six segments as 27.3.1.2 wants them."""
    out = [(F.GUEST_RFLAGS, V86_RFLAGS)]
    for s in SDM_SEGMENTS:
        out += [(F_(s, "SELECTOR"), 0x100), (F_(s, "BASE"), 0x1000), (F_(s, "LIMIT"), 0xFFFF),
                (F_(s, "ACCESS_RIGHTS"), 0xF3)]
    return out


def usable_ldtr():
    return [(F.GUEST_LDTR_SELECTOR, 0x28), (F.GUEST_LDTR_BASE, 0x5000), (F.GUEST_LDTR_LIMIT, 0xFFF),
            (F.GUEST_LDTR_ACCESS_RIGHTS, 0x82)]


def fails(mode, changes, kind_number, check, prep=None):
    """Mutate the known-good VMCS of `mode` (after prep(vm)), expect exactly
    `check` with its exit qualification, put the fields back and run."""
    vm = good_vm(mode)
    v = vm.vcpu
    if prep:
        prep(vm)
    old = apply_changes(v, changes)
    v.vmwrite(F.VM_INSTRUCTION_ERROR, 0)
    v.vmwrite(F.EXIT_REASON, 0x1234)
    expect_failure(vm, *kind_number, check)
    if kind_number[1] == 33:
        assert v.vmread(F.EXIT_QUALIFICATION) == EXIT_QUALIFICATION.get(check, 0)
        assert v.vmread(F.VM_INSTRUCTION_ERROR) == 0
    else:
        assert v.vmread(F.EXIT_REASON) == 0x1234
    for field, o in reversed(old):
        v.vmwrite(field, o)
    assert_runs(vm)


# (id, modes, changes, check); kind from the check's area.
CASES = []


def case(cid, modes, changes, check):
    CASES.append((cid, modes, changes, check))


# --- 27.2.1.1 -------------------------------------------------------------------
case("io-bitmap-b-width", ALL_MODES, [(F.PRIMARY_PROC_BASED_CONTROLS, setb(vtx.ProcBased.USE_IO_BITMAPS)),
                                      (F.IO_BITMAP_B, 1 << 39)], "IO_BITMAP_B_WIDTH")
case("io-bitmap-a-alignment-before-b", ("long",),
     [(F.PRIMARY_PROC_BASED_CONTROLS, setb(vtx.ProcBased.USE_IO_BITMAPS)), (F.IO_BITMAP_A, PRIV + 0x1001),
      (F.IO_BITMAP_B, 1 << 45)], "IO_BITMAP_A_ALIGNMENT")

case("virtual-nmis-without-nmi-exiting", ALL_MODES, [(F.PIN_BASED_CONTROLS, setb(vtx.PinBased.VIRTUAL_NMIS))],
     "VIRTUAL_NMIS")
case("nmi-window-without-virtual-nmis", ALL_MODES,
     [(F.PIN_BASED_CONTROLS, setb(vtx.PinBased.NMI_EXITING)),
      (F.PRIMARY_PROC_BASED_CONTROLS, setb(vtx.ProcBased.NMI_WINDOW_EXITING))], "NMI_WINDOW_EXITING")

# --- 27.2.2 / 27.2.3 host -----------------------------------------------------------
for i in range(8):
    case(f"host-pat-pa{i}", ("real", "long"), [(F.HOST_IA32_PAT, lambda o, i=i: (o & ~(0xFF << 8 * i)) | (2 << 8 * i))],
         f"HOST_IA32_PAT_PA{i}")
    case(f"guest-pat-pa{i}", ALL_MODES,
         [(F.GUEST_IA32_PAT, lambda o, i=i: (o & ~(0xFF << 8 * i)) | (3 << 8 * i))], f"GUEST_IA32_PAT_PA{i}")
for s in ("ES", "CS", "SS", "DS", "FS", "GS", "TR"):
    case(f"host-{s}-rpl", ("long",), [(getattr(F, f"HOST_{s}_SELECTOR"), setb(1))], f"HOST_{s}_SELECTOR_RPL")
    case(f"host-{s}-ti", ("real", "long"), [(getattr(F, f"HOST_{s}_SELECTOR"), setb(4))], f"HOST_{s}_SELECTOR_TI")

# --- 27.3.1.1 guest control registers and MSRs -----------------------------------
case("debugctl-bit-2", ALL_MODES, [(F.GUEST_IA32_DEBUGCTL, 4)], "GUEST_IA32_DEBUGCTL")
case("debugctl-bit-63", ("long",), [(F.GUEST_IA32_DEBUGCTL, 1 << 63)], "GUEST_IA32_DEBUGCTL")

# --- 27.3.1.2 segment registers -------------------------------------------------------
for s in SDM_SEGMENTS:
    case(f"{s}-base-v86", ("protected",), v86_state() + [(F_(s, "BASE"), 0x1010)], f"GUEST_{s}_BASE_V86")
    case(f"{s}-limit-v86", ("protected",), v86_state() + [(F_(s, "LIMIT"), 0xFFFFF)], f"GUEST_{s}_LIMIT_V86")
    case(f"{s}-ar-v86", ("protected",), v86_state() + [(F_(s, "ACCESS_RIGHTS"), 0xFB)],
         f"GUEST_{s}_ACCESS_RIGHTS_V86")
case("gs-base-noncanonical", ALL_MODES, [(F.GUEST_GS_BASE, NONCANON)], "GUEST_GS_BASE_CANONICAL")
case("fs-base-noncanonical", ("real", "protected"), [(F.GUEST_FS_BASE, NONCANON)], "GUEST_FS_BASE_CANONICAL")
case("tr-base-noncanonical", ("protected", "long"), [(F.GUEST_TR_BASE, NONCANON)], "GUEST_TR_BASE_CANONICAL")
case("ldtr-base-noncanonical", ALL_MODES, usable_ldtr() + [(F.GUEST_LDTR_BASE, NONCANON)],
     "GUEST_LDTR_BASE_CANONICAL")
for s in ("SS", "DS", "ES"):
    case(f"{s}-base-high", ALL_MODES, [(F_(s, "BASE"), setb(1 << 32))], f"GUEST_{s}_BASE_HIGH_BITS")
case("cs-base-high", ALL_MODES, [(F.GUEST_CS_BASE, setb(1 << 40))], "GUEST_CS_BASE_HIGH_BITS")
for s in DATA:
    case(f"{s}-not-accessed", ALL_MODES, [(F_(s, "ACCESS_RIGHTS"), clrb(1))], f"GUEST_{s}_TYPE_ACCESSED")
    case(f"{s}-execute-only", ALL_MODES, [(F_(s, "ACCESS_RIGHTS"), lambda ar: (ar & ~0xF) | 9)],
         f"GUEST_{s}_TYPE_READABLE")
    case(f"{s}-dpl-below-rpl", ("long",), [no_ug(), (F_(s, "SELECTOR"), setb(3))],
         f"GUEST_{s}_DPL_RPL")
for s in SDM_SEGMENTS:
    case(f"{s}-s-clear", ALL_MODES, [(F_(s, "ACCESS_RIGHTS"), clrb(0x10))], f"GUEST_{s}_S")
    case(f"{s}-not-present", ALL_MODES, [(F_(s, "ACCESS_RIGHTS"), clrb(0x80))], f"GUEST_{s}_P")
    case(f"{s}-reserved-8", ALL_MODES, [(F_(s, "ACCESS_RIGHTS"), setb(1 << 8))], f"GUEST_{s}_RESERVED_11_8")
    case(f"{s}-reserved-11", ("long",), [(F_(s, "ACCESS_RIGHTS"), setb(1 << 11))], f"GUEST_{s}_RESERVED_11_8")
    case(f"{s}-g-limit-low", ALL_MODES, [(F_(s, "LIMIT"), clrb(0xFFF)), (F_(s, "ACCESS_RIGHTS"), setb(G))],
         f"GUEST_{s}_G_LIMIT_LOW")
    case(f"{s}-g-limit-high", ALL_MODES, [(F_(s, "LIMIT"), setb(0xFFF00000)), (F_(s, "ACCESS_RIGHTS"), clrb(G))],
         f"GUEST_{s}_G_LIMIT_HIGH")
    case(f"{s}-reserved-17", ALL_MODES, [(F_(s, "ACCESS_RIGHTS"), setb(1 << 17))], f"GUEST_{s}_RESERVED_31_17")
    case(f"{s}-reserved-31", ("protected",), [(F_(s, "ACCESS_RIGHTS"), setb(1 << 31))],
         f"GUEST_{s}_RESERVED_31_17")
case("cs-conforming-dpl-above-ss", ("protected", "long"), [(F.GUEST_CS_ACCESS_RIGHTS, lambda ar: ar | 0x4 | 0x60)],
     "GUEST_CS_DPL_CONFORMING")
case("cs-nonconforming-dpl-below-ss", ("protected",), [(F.GUEST_SS_ACCESS_RIGHTS, setb(0x60)),
                                                       (F.GUEST_SS_SELECTOR, setb(3))],
     "GUEST_CS_DPL_NONCONFORMING")
case("ss-dpl-not-rpl", ("long",), [no_ug(), (F.GUEST_CS_ACCESS_RIGHTS, setb(0x4 | 0x60)),
                                              (F.GUEST_SS_ACCESS_RIGHTS, setb(0x60))], "GUEST_SS_DPL_RPL")
case("tr-reserved-8", ALL_MODES, [(F.GUEST_TR_ACCESS_RIGHTS, setb(1 << 8))], "GUEST_TR_RESERVED_11_8")
case("tr-g-limit-low", ("protected", "long"), [(F.GUEST_TR_ACCESS_RIGHTS, setb(G))], "GUEST_TR_G_LIMIT_LOW")
case("tr-g-limit-high", ALL_MODES, [(F.GUEST_TR_LIMIT, 0x100FFF)], "GUEST_TR_G_LIMIT_HIGH")
case("tr-reserved-17", ALL_MODES, [(F.GUEST_TR_ACCESS_RIGHTS, setb(1 << 17))], "GUEST_TR_RESERVED_31_17")
case("tr-type-in-v86", ("protected",), v86_state() + [(F.GUEST_TR_ACCESS_RIGHTS, 0x89)], "GUEST_TR_TYPE")
for cid, change, check in (
        ("type", (F.GUEST_LDTR_ACCESS_RIGHTS, 0x83), "GUEST_LDTR_TYPE"),
        ("s", (F.GUEST_LDTR_ACCESS_RIGHTS, 0x92), "GUEST_LDTR_S"),
        ("not-present", (F.GUEST_LDTR_ACCESS_RIGHTS, 0x02), "GUEST_LDTR_P"),
        ("reserved-8", (F.GUEST_LDTR_ACCESS_RIGHTS, 0x182), "GUEST_LDTR_RESERVED_11_8"),
        ("g-limit-low", (F.GUEST_LDTR_ACCESS_RIGHTS, 0x8082), "GUEST_LDTR_G_LIMIT_LOW"),
        ("g-limit-high", (F.GUEST_LDTR_LIMIT, 0x100FFF), "GUEST_LDTR_G_LIMIT_HIGH"),
        ("reserved-17", (F.GUEST_LDTR_ACCESS_RIGHTS, 0x20082), "GUEST_LDTR_RESERVED_31_17")):
    extra = [(F.GUEST_LDTR_LIMIT, 0xFFFFF000)] if cid.startswith("g-limit-low") else []
    case(f"ldtr-{cid}", ALL_MODES, usable_ldtr() + extra + [change], check)

# --- 27.3.1.4 RFLAGS ---------------------------------------------------------------------
case("rflags-vm-ia32e", ("long",), v86_state(), "GUEST_RFLAGS_VM_IA32E")
case("rflags-vm-real-mode", ("real",), v86_state(), "GUEST_RFLAGS_VM_CR0_PE")

# --- 27.3.1.5 activity state, interruptibility, pending debug exceptions ------------
case("hlt-ss-dpl-3", ("protected", "long"), [(F.GUEST_CS_ACCESS_RIGHTS, setb(0x4 | 0x60)),
                                            (F.GUEST_SS_ACCESS_RIGHTS, setb(0x60)), (F.GUEST_ACTIVITY_STATE, 1)],
     "GUEST_ACTIVITY_STATE_HLT_SS_DPL")
case("hlt-injecting-ud", ("protected", "long"), [(F.GUEST_ACTIVITY_STATE, 1),
                                                (F.VM_ENTRY_INTERRUPTION_INFO, 0x80000306)],
     "GUEST_ACTIVITY_STATE_HLT_INJECTION")
case("hlt-injecting-soft-int", ALL_MODES, [(F.GUEST_ACTIVITY_STATE, 1), (F.VM_ENTRY_INSTRUCTION_LENGTH, 2),
                                          (F.VM_ENTRY_INTERRUPTION_INFO, 0x80000480)],
     "GUEST_ACTIVITY_STATE_HLT_INJECTION")
case("sti-injecting-interrupt", ALL_MODES, [(F.GUEST_RFLAGS, 0x202), (F.GUEST_INTERRUPTIBILITY_STATE, 1),
                                           (F.VM_ENTRY_INTERRUPTION_INFO, 0x80000020)],
     "GUEST_INTERRUPTIBILITY_STI_EXTERNAL_INTERRUPT")
case("enclave-interruption", ALL_MODES, [(F.GUEST_INTERRUPTIBILITY_STATE, 0x10)], "GUEST_INTERRUPTIBILITY_ENCLAVE")
case("bs-missing-mov-ss", ALL_MODES, [(F.GUEST_RFLAGS, 0x102), (F.GUEST_INTERRUPTIBILITY_STATE, 2)],
     "GUEST_PENDING_DEBUG_BS_SET")
case("bs-missing-sti", ("protected",), [(F.GUEST_RFLAGS, 0x302), (F.GUEST_INTERRUPTIBILITY_STATE, 1)],
     "GUEST_PENDING_DEBUG_BS_SET")
case("bs-missing-hlt", ("long",), [(F.GUEST_RFLAGS, 0x102), (F.GUEST_ACTIVITY_STATE, 1)],
     "GUEST_PENDING_DEBUG_BS_SET")
case("bs-without-tf", ALL_MODES, [(F.GUEST_INTERRUPTIBILITY_STATE, 2), (F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x4000)],
     "GUEST_PENDING_DEBUG_BS_CLEAR")
case("bs-with-btf", ("protected",), [(F.GUEST_RFLAGS, 0x102), (F.GUEST_IA32_DEBUGCTL, 2),
                                     (F.GUEST_ACTIVITY_STATE, 1), (F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x4000)],
     "GUEST_PENDING_DEBUG_BS_CLEAR")
case("rtm-with-b0", ALL_MODES, [(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x11001)], "GUEST_PENDING_DEBUG_RTM_BITS_11_0")
case("rtm-with-bs", ALL_MODES, [(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x15000)], "GUEST_PENDING_DEBUG_RTM_BITS_15_13")
case("rtm-without-bit-12", ALL_MODES, [(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x10000)],
     "GUEST_PENDING_DEBUG_RTM_BIT_12")
case("rtm-unsupported", ALL_MODES, [(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x11000)], "GUEST_PENDING_DEBUG_RTM_SUPPORT")

# --- VMCS link pointer (exit qualification 4) -------------------------------------------
LINK = 0x20000


def link_region(rev):
    def prep(vm):
        vm.write(LINK, int(rev).to_bytes(4, "little"))
    return prep


case("link-misaligned", ALL_MODES, [(F.VMCS_LINK_POINTER, LINK + 0x10)], "GUEST_VMCS_LINK_POINTER_ALIGNMENT")
case("link-all-ones-low", ("protected",), [(F.VMCS_LINK_POINTER, 0xFFFFFFFF)], "GUEST_VMCS_LINK_POINTER_ALIGNMENT")
case("link-beyond-maxphyaddr", ALL_MODES, [(F.VMCS_LINK_POINTER, 1 << 39)], "GUEST_VMCS_LINK_POINTER_WIDTH")
case("link-no-memory", ALL_MODES, [(F.VMCS_LINK_POINTER, 0x10000000)], "GUEST_VMCS_LINK_POINTER_REVISION")
case("link-wrong-revision", ALL_MODES, [(F.VMCS_LINK_POINTER, LINK)], "GUEST_VMCS_LINK_POINTER_REVISION")
case("link-is-current-vmcs", ALL_MODES, [(F.VMCS_LINK_POINTER, PRIV)], "GUEST_VMCS_LINK_POINTER_CURRENT_VMCS")

IDS = [f"{c[0]}-{m}" for c in CASES for m in c[1]]
PARAMS = [(m, ch, ck) for _cid, modes, ch, ck in CASES for m in modes]
AREA = {name: area for name, area, _s, _d in ENTRY_CHECKS}
KIND = {"control": CTL, "host": HOST, "guest": GUEST}


@pytest.mark.parametrize("mode,changes,check", PARAMS, ids=IDS)
def test_condition(mode, changes, check):
    fails(mode, changes, KIND[AREA[check]], check)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_link_pointer_to_a_shadow_vmcs_without_shadowing(mode):
    rev = capabilities.VMCS_REVISION_ID
    fails(mode, [(F.VMCS_LINK_POINTER, LINK)], GUEST, "GUEST_VMCS_LINK_POINTER_SHADOW",
          prep=link_region(rev | 0x80000000))
    # The same region with bit 31 clear is a good link pointer: the guest runs.
    vm = good_vm(mode)
    link_region(rev)(vm)
    vm.vcpu.vmwrite(F.VMCS_LINK_POINTER, LINK)
    assert_runs(vm)


def test_link_pointer_into_the_private_memory_is_read_there():
    """The hosted hypervisor's memory includes the private slot: a link
    pointer to a region there with the revision identifier passes."""
    vm = good_vm("long")
    off = 0x3000
    vm._priv[off:off + 4] = capabilities.VMCS_REVISION_ID.to_bytes(4, "little")
    vm.vcpu.vmwrite(F.VMCS_LINK_POINTER, PRIV + off)
    assert_runs(vm)


def test_the_link_pointer_region_is_read_at_every_resume():
    """GUEST_VMCS_LINK_POINTER_REVISION reads memory no VMCS write changes:
    re-checked at each VMRESUME (entry_checks.ALWAYS)."""
    vm = good_vm("protected")
    link_region(capabilities.VMCS_REVISION_ID)(vm)
    vm.vcpu.vmwrite(F.VMCS_LINK_POINTER, LINK)
    assert_runs(vm)
    vm.write(LINK, b"\0\0\0\0")
    with pytest.raises(vtx.VmEntryError) as ei:
        vm.run()
    assert ei.value.check == "GUEST_VMCS_LINK_POINTER_REVISION"
    assert vm.vcpu.vmread(F.EXIT_QUALIFICATION) == 4


# --- 27.3.1.6 PDPTEs (exit qualification 2) ------------------------------------------------
@pytest.mark.parametrize("i", range(4))
@pytest.mark.parametrize("ept", [True, False])
def test_pdpte(i, ept):
    """Each PDPTE of a PAE guest: from the VMCS with EPT, from the table
    guest CR3 references without it."""
    pdpt, pd = 0x10000, 0x11000

    def prep(vm):
        vm.write_u64(pdpt, pd | 1)
        vm.write_u64(pd, 0x83)
        v = vm.vcpu
        v.cr3, v.cr4, v.cr0 = pdpt, 0x2020, 0x80000031
        v.vmwrite(F.GUEST_PDPTE0, pd | 1)
        if not ept:
            v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS,
                      v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) & ~int(ProcBased2.ENABLE_EPT | ProcBased2.UNRESTRICTED_GUEST))
            vm.write_u64(pdpt + 8 * i, 0x12000 | 1 | 0x80)     # bit 7: reserved in a PDPTE
    if ept:
        fails("protected", [(getattr(F, f"GUEST_PDPTE{i}"), 0x12000 | 1 | 0x80)], GUEST, f"GUEST_PDPTE{i}", prep=prep)
        return
    vm = good_vm("protected")
    prep(vm)
    expect_failure(vm, *GUEST, f"GUEST_PDPTE{i}")
    assert vm.vcpu.vmread(F.EXIT_QUALIFICATION) == 2
    vm.write_u64(pdpt + 8 * i, (pd | 1) if i == 0 else 0)
    assert_runs(vm)


# --- 27.2.4 outside IA-32e mode: x86 host state on a bare machine ------------------
VMXON_REGION, VMCS_A = 0x10000, 0x11000


def bare_32bit_root():
    """A bare machine in 32-bit protected mode (IA32_EFER.LMA 0) with CR4.VMXE
    set, in VMX root operation with a current VMCS that holds a valid
    32-bit host and guest (host address-space size 0)."""
    hw = vtx.BareMetal(memory=4 << 20)
    # 32-bit paging (VMX operation needs CR0.PG): one 4-MByte page maps the
    # machine's memory one to one.
    hw.load(0x1000, vtx.asm("""
        mov dword ptr [0x20000], 0x83
        mov eax, 0x20000
        mov cr3, eax
        mov eax, cr4
        or eax, 0x2010
        mov cr4, eax
        mov eax, cr0
        or eax, 0x80000000
        mov cr0, eax
        hlt""", bits=32, org=0x1000))
    hw.setup_protected_mode(entry=0x1000, stack=0x8000)
    # (stop before the HLT: the processor stays active for launch_from_x86)
    assert hw.run(max_instructions=9).stop != "halted"
    cpu = hw.cpu
    assert not (cpu.efer & (1 << 10))
    rev = capabilities.VMCS_REVISION_ID
    for a in (VMXON_REGION, VMCS_A):
        hw.write(a, rev.to_bytes(4, "little"))
    cpu.vmxon(VMXON_REGION)
    cpu.vmclear(VMCS_A)
    cpu.vmptrld(VMCS_A)
    lo = lambda msr: msr & 0xFFFFFFFF  # noqa: E731
    cpu.vmwrite(F.PIN_BASED_CONTROLS, lo(capabilities.TRUE_PINBASED_CTLS))
    cpu.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, lo(capabilities.TRUE_PROCBASED_CTLS) | (1 << 7))
    cpu.vmwrite(F.VM_EXIT_CONTROLS, lo(capabilities.TRUE_EXIT_CTLS))
    cpu.vmwrite(F.VM_ENTRY_CONTROLS, lo(capabilities.TRUE_ENTRY_CTLS))
    cpu.vmwrite(F.VMCS_LINK_POINTER, (1 << 64) - 1)
    for name in ("CR0", "CR3", "CR4"):
        v = getattr(cpu, name.lower())
        cpu.vmwrite(F["HOST_" + name], v)
        cpu.vmwrite(F["GUEST_" + name], v)
    gdt = cpu.gdtr
    cpu.vmwrite(F.HOST_GDTR_BASE, gdt.base)
    cpu.vmwrite(F.GUEST_GDTR_BASE, gdt.base)
    cpu.vmwrite(F.GUEST_GDTR_LIMIT, gdt.limit)
    cs, ds, tr = cpu.cs.selector, cpu.ds.selector, cpu.tr.selector
    cpu.vmwrite(F.HOST_CS_SELECTOR, cs)
    cpu.vmwrite(F.HOST_TR_SELECTOR, tr)
    cpu.vmwrite(F.HOST_TR_BASE, cpu.tr.base)
    for s in ("ES", "SS", "DS", "FS", "GS"):
        cpu.vmwrite(F["HOST_" + s + "_SELECTOR"], ds)
        cpu.vmwrite(F["GUEST_" + s + "_SELECTOR"], ds)
        cpu.vmwrite(F["GUEST_" + s + "_LIMIT"], 0xFFFFFFFF)
        cpu.vmwrite(F["GUEST_" + s + "_ACCESS_RIGHTS"], 0xC093)
    cpu.vmwrite(F.GUEST_CS_SELECTOR, cs)
    cpu.vmwrite(F.GUEST_CS_LIMIT, 0xFFFFFFFF)
    cpu.vmwrite(F.GUEST_CS_ACCESS_RIGHTS, 0xC09B)
    cpu.vmwrite(F.GUEST_LDTR_ACCESS_RIGHTS, 0x10000)
    cpu.vmwrite(F.GUEST_TR_SELECTOR, tr)
    cpu.vmwrite(F.GUEST_TR_BASE, cpu.tr.base)
    cpu.vmwrite(F.GUEST_TR_LIMIT, cpu.tr.limit)
    cpu.vmwrite(F.GUEST_TR_ACCESS_RIGHTS, 0x8B)
    cpu.vmwrite(F.GUEST_RFLAGS, 2)
    cpu.vmwrite(F.GUEST_RIP, 0x30000)
    cpu.vmwrite(F.HOST_RIP, ENTER + 3)
    cpu.vmwrite(F.HOST_RSP, 0x8000)
    hw.load(ENTER, vtx.asm("vmlaunch\nhlt", bits=32, org=ENTER))
    return hw


ENTER = 0x1800


def launch_from_x86(hw):
    """VMLAUNCH from 32-bit x86 host code at ENTER (then HLT, which a VM exit
    also reaches: HOST_RIP is ENTER + 3)."""
    cpu = hw.cpu
    cpu.rip = ENTER
    return hw.run(max_instructions=1000)


def test_bare_32bit_root_vmcs_enters():
    hw = bare_32bit_root()
    hw.load(0x30000, vtx.asm("cpuid\nhlt", bits=32, org=0x30000))
    r = launch_from_x86(hw)
    assert r.stop == "halted" and r.exits == {vtx.ExitReason.CPUID: 1}
    assert hw.cpu.vmread(F.EXIT_REASON) == vtx.ExitReason.CPUID and hw.cpu.rip == ENTER + 4


@pytest.mark.parametrize("changes,check", [
    ([(F.VM_ENTRY_CONTROLS, setb(EC.IA32E_MODE_GUEST))], "IA32E_MODE_GUEST_OUTSIDE_IA32E"),
    ([(F.VM_EXIT_CONTROLS, setb(XC.HOST_ADDRESS_SPACE_SIZE))], "HOST_ADDRESS_SPACE_SIZE_OUTSIDE_IA32E"),
    ([(F.HOST_CR4, setb(1 << 17))], "HOST_CR4_PCIDE"),
    ([(F.HOST_RIP, setb(1 << 32))], "HOST_RIP_HIGH_BITS"),
    ([(F.HOST_SS_SELECTOR, 0)], "HOST_SS_SELECTOR_NULL"),
], ids=["ia32e-guest", "host-address-space-size", "cr4-pcide", "rip-high", "ss-null"])
def test_host_outside_ia32e_mode(changes, check):
    """SDM 27.2.4 (and the SS rule of 27.2.3) for a host outside IA-32e
    mode: VMLAUNCH by 32-bit x86 code fails with VM-instruction error 8
    (ZF set) and the named check."""
    hw = bare_32bit_root()
    hw.load(0x30000, vtx.asm("cpuid\nhlt", bits=32, org=0x30000))
    cpu = hw.cpu
    for f, new in changes:
        cpu.vmwrite(f, new(cpu.vmread(f)) if callable(new) else new)
    r = launch_from_x86(hw)
    assert r.stop == "halted" and not r.exits and hw.cpu.rip == ENTER + 4
    assert cpu.rflags & 0x41 == 0x40                         # VMfailValid: ZF
    assert cpu.vmread(F.VM_INSTRUCTION_ERROR) == 8 and cpu.failed_entry_check == check
    # (the VMCS without the change enters: test_bare_32bit_root_vmcs_enters)


def test_wrmsr_of_a_reserved_debugctl_bit_is_gp():
    """The model implements LBR and BTF of IA32_DEBUGCTL; the other bits are
    reserved (the same set the guest-state check uses)."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("mov ecx, 0x1d9\nmov eax, 2\nxor edx, edx\nwrmsr\nmov eax, 4\nwrmsr\nhlt", bits=64))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    v = vm.vcpu
    v.vmwrite(F.EXCEPTION_BITMAP, 1 << 13)
    # An MSR bitmap of zeros (in RAM the guest does not touch): WRMSR runs in the guest.
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | vtx.ProcBased.USE_MSR_BITMAPS)
    v.vmwrite(F.MSR_BITMAP, 0x80000)
    vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)(lambda v, e: vtx.STOP)
    r = vm.run()
    assert r.exit.reason == 0 and r.exit.vector == 13 and r.exit.guest_rip == 0x1013


# --- 27.4 the VM-entry MSR-load area ---------------------------------------------------------
AREA_ADDR = 0x6000
MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_PAT = 0x174, 0x175, 0x277


def msr_area(vm, entries, addr=AREA_ADDR):
    """Write 16-byte entries (index, data[, reserved dword]) and point the VMCS at them."""
    raw = b"".join(idx.to_bytes(4, "little") + (rest[1] if len(rest) > 1 else 0).to_bytes(4, "little")
                   + rest[0].to_bytes(8, "little") for idx, *rest in entries)
    vm.write(addr, raw)
    vm.vcpu.vmwrite(F.VM_ENTRY_MSR_LOAD_ADDRESS, addr)
    vm.vcpu.vmwrite(F.VM_ENTRY_MSR_LOAD_COUNT, len(entries))


@pytest.mark.parametrize("mode", ALL_MODES)
def test_msr_load_area_loads_its_msrs(mode):
    """A good list: after the guest state (which loads SYSENTER_CS from the
    VMCS), each MSR in order; the guest reads the values back with RDMSR."""
    vm = vtx.VM(memory=1 << 20)
    bits = base.MODES[mode]
    vm.load(0x1000, vtx.asm(f"mov ecx, {MSR_SYSENTER_ESP}\nrdmsr\nmov ebx, eax\nmov ecx, {MSR_SYSENTER_CS}\n"
                            "rdmsr\nmov esi, eax\nmov ecx, 0x277\nrdmsr\nhlt", bits=bits))
    v = vm.add_vcpu()
    getattr(vm, f"setup_{mode}_mode")(entry=0x1000)
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | vtx.ProcBased.USE_MSR_BITMAPS)
    v.vmwrite(F.MSR_BITMAP, 0x80000)                     # zeros: RDMSR does not exit
    v.vmwrite(F.GUEST_IA32_SYSENTER_CS, 0x8)
    msr_area(vm, [(MSR_SYSENTER_CS, 0x10), (MSR_SYSENTER_ESP, 0x7000), (MSR_SYSENTER_CS, 0x23),
                  (MSR_PAT, 0x0007040600070006)])          # PA1: WT -> UC
    vm.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    r = vm.run()
    assert r.exit.reason == vtx.ExitReason.HLT
    assert (v.rbx & 0xFFFF_FFFF, v.rsi & 0xFFFF_FFFF) == (0x7000, 0x23)      # the later entry wins
    assert (v.rdx << 32 | (v.rax & 0xFFFF_FFFF)) == 0x0007040600070006
    # The exit saves the guest's SYSENTER MSRs (SDM 28.3.1): the API reads them back.
    assert (v.vmread(F.GUEST_IA32_SYSENTER_CS), v.vmread(F.GUEST_IA32_SYSENTER_ESP)) == (0x23, 0x7000)


MSR_FAILURES = [
    ((0xC0000100, 0), "MSR_LOAD_FS_GS_BASE"),
    ((0xC0000101, 0x1000), "MSR_LOAD_FS_GS_BASE"),
    ((0x800, 0), "MSR_LOAD_X2APIC"),
    ((0x8FF, 0), "MSR_LOAD_X2APIC"),
    ((0x9B, 0), "MSR_LOAD_SMM_MONITOR_CTL"),
    ((MSR_SYSENTER_CS, 0, 1), "MSR_LOAD_RESERVED_BITS"),
    ((MSR_SYSENTER_CS, 0, 0x80000000), "MSR_LOAD_RESERVED_BITS"),
    ((MSR_PAT, 2), "MSR_LOAD_WRMSR"),                       # memory type 2 is reserved: #GP
    ((0x12345, 0), "MSR_LOAD_WRMSR"),                       # no such MSR: #GP
    ((MSR_SYSENTER_ESP, 1 << 63), "MSR_LOAD_WRMSR"),        # not canonical: #GP
]


def expect_msr_failure(vm, check, index):
    v = vm.vcpu
    v.vmwrite(F.VM_INSTRUCTION_ERROR, 0)
    with pytest.raises(vtx.VmEntryError) as ei:
        vm.run()
    e = ei.value
    assert (e.kind, e.number, e.check, e.section) == ("msr-loading", 34, check, "27.4")
    assert f"entry {index}:" in str(e)
    assert v.vmread(F.EXIT_REASON) == 0x80000022 and v.vmread(F.EXIT_QUALIFICATION) == index
    assert v.vmread(F.VM_INSTRUCTION_ERROR) == 0 and not v.launched


@pytest.mark.parametrize("entry,check", MSR_FAILURES, ids=[f"{c}-{e[0]:#x}" for e, c in MSR_FAILURES])
@pytest.mark.parametrize("mode", ALL_MODES)
def test_msr_load_entry_fails_with_reason_34_and_its_index(mode, entry, check):
    """The second entry fails: exit reason 34 with bit 31, exit qualification
    2; put right, the guest runs."""
    vm = good_vm(mode)
    msr_area(vm, [(MSR_SYSENTER_CS, 0x10), entry])
    expect_msr_failure(vm, check, 2)
    msr_area(vm, [(MSR_SYSENTER_CS, 0x10), (MSR_SYSENTER_CS, 0x18)])
    assert_runs(vm)


def test_msr_load_area_where_no_memory_is_reads_all_ones():
    vm = good_vm("long")
    vm.vcpu.vmwrite(F.VM_ENTRY_MSR_LOAD_ADDRESS, 0x10000000)
    vm.vcpu.vmwrite(F.VM_ENTRY_MSR_LOAD_COUNT, 1)
    expect_msr_failure(vm, "MSR_LOAD_RESERVED_BITS", 1)


def test_msr_load_area_in_the_private_memory():
    """The hosted hypervisor's memory includes the private slot."""
    vm = good_vm("protected")
    off = 0x3000
    vm._priv[off:off + 16] = MSR_SYSENTER_CS.to_bytes(4, "little") + bytes(4) + (0x10).to_bytes(8, "little")
    vm.vcpu.vmwrite(F.VM_ENTRY_MSR_LOAD_ADDRESS, PRIV + off)
    vm.vcpu.vmwrite(F.VM_ENTRY_MSR_LOAD_COUNT, 1)
    assert_runs(vm)


def test_msr_load_count_beyond_the_recommended_maximum():
    """IA32_VMX_MISC bits 27:25 = 0: at most 512 entries; the model fails at
    the 513th (Appendix A.6 leaves the behavior undefined)."""
    assert (capabilities.MISC >> 25) & 7 == 0
    vm = good_vm("protected")
    msr_area(vm, [(MSR_SYSENTER_CS, 0x10)] * 512)
    assert_runs(vm)
    vm = good_vm("protected")
    msr_area(vm, [(MSR_SYSENTER_CS, 0x10)] * 513)
    expect_msr_failure(vm, "MSR_LOAD_COUNT", 513)
    vm = good_vm("protected")
    vm.vcpu.vmwrite(F.VM_ENTRY_MSR_LOAD_ADDRESS, (1 << 39) - (1 << 35))
    vm.vcpu.vmwrite(F.VM_ENTRY_MSR_LOAD_COUNT, 0xFFFFFFFF)       # ends beyond MAXPHYADDR
    expect_failure(vm, *CTL, "VM_ENTRY_MSR_LOAD_LAST_BYTE_WIDTH")


def test_msr_load_failure_with_an_x86_host_loads_the_host_state():
    """SDM 27.8: the failure is reported like a VM exit to HOST_RIP."""
    hw = bare_32bit_root()
    hw.load(0x30000, vtx.asm("cpuid\nhlt", bits=32, org=0x30000))
    cpu = hw.cpu
    hw.write(AREA_ADDR, (0x800).to_bytes(4, "little") + bytes(12))
    cpu.vmwrite(F.VM_ENTRY_MSR_LOAD_ADDRESS, AREA_ADDR)
    cpu.vmwrite(F.VM_ENTRY_MSR_LOAD_COUNT, 1)
    r = launch_from_x86(hw)
    assert r.stop == "halted" and r.exits == {vtx.ExitReason.ENTRY_FAILURE_MSR_LOADING: 1}
    assert hw.cpu.rip == ENTER + 4
    assert cpu.vmread(F.EXIT_REASON) == 0x80000022 and cpu.vmread(F.EXIT_QUALIFICATION) == 1
    assert cpu.failed_entry_check == "MSR_LOAD_X2APIC"


# --- every check is exercised -----------------------------------------------------------------
def unreachable():
    """Checks the capabilities make unreachable (entry_checks.NEEDS_CONTROL)."""
    out = set()
    for check, (prefix, control, offered) in NEEDS_CONTROL.items():
        allowed = bool(capabilities.allowed1(prefix) & vtx.spec.controls.group_by_prefix(prefix).mask(control))
        if allowed != offered:
            out.add(check)
    return out


def test_every_check_in_the_table_is_tested():
    tested = {c[-1] for c in base.CONTROL_CASES} | {c[-1] for c in base.HOST_CASES} | {c[-1] for c in base.GUEST_CASES}
    tested |= {c[-1] for c in CASES}
    tested |= {"GUEST_VMCS_LINK_POINTER_SHADOW", "IA32E_MODE_GUEST_OUTSIDE_IA32E",
               "HOST_ADDRESS_SPACE_SIZE_OUTSIDE_IA32E", "HOST_CR4_PCIDE", "HOST_RIP_HIGH_BITS",
               "HOST_SS_SELECTOR_NULL"} | {f"GUEST_PDPTE{i}" for i in range(4)}
    tested |= {c for _e, c in MSR_FAILURES} | {"MSR_LOAD_COUNT"}
    names = {row[0] for row in ENTRY_CHECKS}
    assert tested <= names
    # Type 7 is reserved only on processors without the monitor trap flag,
    # which the model offers.
    assert names - tested == unreachable() == {"VM_ENTRY_INTERRUPTION_TYPE_OTHER_EVENT"}


def test_check_counts_per_area():
    """One check per SDM condition that applies to what the model offers;
    Bochs's counts (65 / 36 / 94) are the yardstick of the issue."""
    count = {}
    for name, area, _s, _d in ENTRY_CHECKS:
        if name not in unreachable():
            count[area] = count.get(area, 0) + 1
    assert count == {"control": 67, "host": 45, "guest": 162, "msr": 6}
