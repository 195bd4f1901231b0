"""VMRESUME re-checks what changed since the last successful VM entry
(docs/architecture.rst, "Entry checks at VMRESUME"), exactly: the same
outcome as the full pass of SDM Vol. 3C chapter 27 (26 in older editions).

- a field written between exits is checked: for checks of every area, an
  invalid value written through the API after an exit fails the VMRESUME
  with the named check, as the full pass (check_entry) says it must; the
  value put back (or another valid one) and the guest continues;
- what one write marks: each bit of each field against the table
  (vtx/spec/entry_checks.py INPUTS), and the steady state of an exit loop;
- the verification mode agrees with the full pass over random writes
  between exits (hypothesis), and catches a change that went unrecorded;
- writes the API does not see: a view of the private memory, and a guest
  that EPT lets reach the VMCS, make every check run.

Tests run in the incremental mode unless they say otherwise (the rest of the
suite runs in the verification mode: tests/conftest.py).
"""

import subprocess
import sys
import threading

import attrs
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import vtx
from vtx import (EntryControls as EC, ExitControls as XC, ProcBased, ProcBased2, VmcsField as F, Segment,
                 DescriptorTable)
from vtx._core import get_entry_check_mode, set_entry_check_mode
from vtx.errors import EntryCheckMismatch
from vtx.spec import FIELDS, MODEL_FIELDS, FieldWidth, field_info, field_offset, field_size
from vtx.spec.entry_checks import ALWAYS, ENTRY_CHECKS, INPUTS

from conftest import apply_changes, clrb, setb
from entry_check_scenarios import NOT_SHOWN, SCENARIOS

CHECK_NAMES = [row[0] for row in ENTRY_CHECKS]


def in_table_order(names):
    """`names` and the checks run at every VMRESUME (ALWAYS), in the table's order."""
    want = set(names) | set(ALWAYS)
    return [c for c in CHECK_NAMES if c in want]

AREA = {row[0]: row[1] for row in ENTRY_CHECKS}
NUMBER = {"control": ("vm-instruction-error", 7), "host": ("vm-instruction-error", 8),
          "guest": ("invalid-guest-state", 33)}
NONCANON = 0x0000800000000000
CODE = 0x1000
MODES = {"real": 16, "protected": 32, "long": 64}
IF = 1 << 9
#: The checks a change of bits 31:0 of guest RIP marks (SDM 27.3.1.4; the
#: other RIP check reads bits 63:32).
RIP_CHECKS = ["GUEST_RIP_CANONICAL"]


@pytest.fixture(autouse=True)
def incremental():
    old = set_entry_check_mode("incremental")
    yield
    set_entry_check_mode(old)


@pytest.fixture
def verify():
    old = set_entry_check_mode("verify")
    yield
    set_entry_check_mode(old)


def launched_vm(mode="protected", source="out 0x80, al\nout 0x80, al\nout 0x80, al\nhlt"):
    """A VM stopped at its first exit (the OUT at CODE, not stepped over):
    launched, so the next entry is a VMRESUME."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm(source, bits=MODES[mode], org=CODE))
    vm.add_vcpu()
    getattr(vm, f"setup_{mode}_mode")(entry=CODE)
    vm.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    stop = vm.on(vtx.ExitReason.IO_INSTRUCTION)(lambda v, e: vtx.STOP)
    r = vm.run()
    assert r.exit.reason == vtx.ExitReason.IO_INSTRUCTION and r.exit.guest_rip == CODE
    assert vm.vcpu.launched
    vm.remove_handler(vtx.ExitReason.IO_INSTRUCTION)
    del stop
    return vm


def resume_all_outs(vm):
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(lambda v, e: vtx.RESUME)
    return vm.run()


def expect_resume_failure(vm, check):
    """VMRESUME fails with `check`, as the full pass predicts, with the
    SDM's side effects; the VMCS stays launched."""
    v = vm.vcpu
    predicted = v.check_entry()
    assert predicted is not None and predicted.check == check, predicted
    kind, number = NUMBER[AREA[check]]
    v.vmwrite(F.VM_INSTRUCTION_ERROR, 0)
    v.vmwrite(F.EXIT_REASON, 0x1234)
    entries = v.entries
    with pytest.raises(vtx.VmEntryError) as ei:
        vm.run()
    e = ei.value
    assert (e.kind, e.number, e.check) == (kind, number, check)
    assert v.entries == entries and v.launched
    if number == 33:
        assert v.vmread(F.EXIT_REASON) == 0x80000021 and v.vmread(F.VM_INSTRUCTION_ERROR) == 0
    else:
        assert v.vmread(F.VM_INSTRUCTION_ERROR) == number and v.vmread(F.EXIT_REASON) == 0x1234
    return e


# (id, mode, [(field, value or old -> new)], the check that fails).  Several
# fail a check other than the one of the field written: the dependency runs
# through the check's inputs (an SS DPL breaks the CS check, RFLAGS.VM the
# virtual-8086 segment check, an exit control the host EFER check).
CASES = [
    # 27.2.1 / 26.2.1 control fields: VM-instruction error 7
    ("pin-reserved", "protected", [(F.PIN_BASED_CONTROLS, setb(1 << 31))], "PIN_BASED_CONTROLS"),
    ("cr3-target-count", "protected", [(F.CR3_TARGET_COUNT, 5)], "CR3_TARGET_COUNT"),
    ("io-bitmap-misaligned", "protected", [(F.PRIMARY_PROC_BASED_CONTROLS, setb(ProcBased.USE_IO_BITMAPS)),
                                           (F.IO_BITMAP_A, lambda a: a + 0x10)], "IO_BITMAP_A_ALIGNMENT"),
    ("eptp-reserved", "long", [(F.EPT_POINTER, setb(1 << 7))], "EPT_POINTER_SUPERVISOR_SHADOW_STACK"),
    ("ug-without-ept", "real", [(F.SECONDARY_PROC_BASED_CONTROLS, clrb(ProcBased2.ENABLE_EPT))],
     "UNRESTRICTED_GUEST_NEEDS_EPT"),
    ("entry-info-type-1", "protected", [(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000100)], "VM_ENTRY_INTERRUPTION_TYPE_RESERVED"),
    ("entry-msr-load", "long", [(F.VM_ENTRY_MSR_LOAD_ADDRESS, 0x5008), (F.VM_ENTRY_MSR_LOAD_COUNT, 1)],
     "VM_ENTRY_MSR_LOAD_ADDRESS_ALIGNMENT"),
    # 27.2.2 - 27.2.4 host state: VM-instruction error 8
    ("host-cr0-pe", "protected", [(F.HOST_CR0, clrb(1))], "HOST_CR0"),
    ("host-tr-null", "real", [(F.HOST_TR_SELECTOR, 0)], "HOST_TR_SELECTOR_NULL"),
    ("host-rip", "long", [(F.HOST_RIP, NONCANON)], "HOST_RIP_CANONICAL"),
    ("exit-ctl-host-efer", "real", [(F.VM_EXIT_CONTROLS, clrb(XC.HOST_ADDRESS_SPACE_SIZE))], "HOST_IA32_EFER_LMA"),
    # 27.3.1 guest state: exit reason 33
    ("cr0-ne", "protected", [(F.GUEST_CR0, clrb(1 << 5))], "GUEST_CR0"),
    ("cr4-vmxe", "protected", [(F.GUEST_CR4, clrb(1 << 13))], "GUEST_CR4"),
    ("cr0-pg-in-long-mode", "long", [(F.GUEST_CR0, clrb(1 << 31))], "GUEST_IA32E_MODE_CR0_PG"),
    ("cr4-pae-in-long-mode", "long", [(F.GUEST_CR4, clrb(1 << 5))], "GUEST_IA32E_MODE_CR4_PAE"),
    ("entry-ctl-ia32e-cleared", "long", [(F.VM_ENTRY_CONTROLS, clrb(EC.IA32E_MODE_GUEST))], "GUEST_IA32_EFER_LMA"),
    ("rip-above-4g", "protected", [(F.GUEST_RIP, 1 << 32)], "GUEST_RIP_HIGH_BITS"),
    ("rip-noncanonical", "long", [(F.GUEST_RIP, NONCANON)], "GUEST_RIP_CANONICAL"),
    ("cs-ar-reserved", "protected", [(F.GUEST_CS_ACCESS_RIGHTS, setb(0xF00))], "GUEST_CS_RESERVED_11_8"),
    ("ss-dpl-breaks-cs", "protected", [(F.GUEST_SS_ACCESS_RIGHTS, setb(0x60))], "GUEST_CS_DPL_NONCONFORMING"),
    ("ss-ar-type", "real", [(F.GUEST_SS_ACCESS_RIGHTS, lambda ar: (ar & ~0xF) | 1)], "GUEST_SS_TYPE"),
    ("tr-available-tss", "protected", [(F.GUEST_TR_ACCESS_RIGHTS, 0x89)], "GUEST_TR_TYPE"),
    ("gdtr-limit", "long", [(F.GUEST_GDTR_LIMIT, 0x10000)], "GUEST_GDTR_LIMIT"),
    ("rflags-bit-1", "protected", [(F.GUEST_RFLAGS, clrb(2))], "GUEST_RFLAGS_BIT_1"),
    ("rflags-vm-in-long-mode", "long", [(F.GUEST_RFLAGS, setb(1 << 17))], "GUEST_CS_BASE_V86"),
    ("activity-shutdown-injecting-ud", "protected", [(F.GUEST_ACTIVITY_STATE, 2),
                                                     (F.VM_ENTRY_INTERRUPTION_INFO, 0x80000306)],
     "GUEST_ACTIVITY_STATE_HLT_INJECTION"),
    ("activity-hlt-in-sti-shadow", "protected", [(F.GUEST_RFLAGS, setb(IF)), (F.GUEST_INTERRUPTIBILITY_STATE, 1),
                                                 (F.GUEST_ACTIVITY_STATE, 1)], "GUEST_ACTIVITY_STATE_BLOCKING"),
    ("interruptibility-reserved", "long", [(F.GUEST_INTERRUPTIBILITY_STATE, 1 << 5)],
     "GUEST_INTERRUPTIBILITY_RESERVED_BITS"),
    ("sti-blocking-with-if-0", "protected", [(F.GUEST_INTERRUPTIBILITY_STATE, 1)], "GUEST_INTERRUPTIBILITY_STI_IF"),
    ("pending-debug-reserved", "protected", [(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 1 << 4)],
     "GUEST_PENDING_DEBUG_RESERVED_BITS"),
    ("vmcs-link-pointer", "real", [(F.VMCS_LINK_POINTER, 0)], "GUEST_VMCS_LINK_POINTER_REVISION"),
]


@pytest.mark.parametrize("name,mode,changes,check", CASES, ids=[c[0] for c in CASES])
def test_a_field_written_between_exits_is_checked(name, mode, changes, check):
    vm = launched_vm(mode)
    v = vm.vcpu
    old = apply_changes(v, changes)
    assert check in v._dirty_checks()
    e = expect_resume_failure(vm, check)
    if check.startswith("GUEST_VMCS_LINK_POINTER"):
        assert v.vmread(F.EXIT_QUALIFICATION) == 4
    # The failure changed nothing the checks read: it fails again.
    assert expect_resume_failure(vm, check).check == e.check
    # Put back, the guest goes on from its first OUT to the HLT.
    for field, o in reversed(old):
        v.vmwrite(field, o)
    r = resume_all_outs(vm)
    assert r.stop == "stop" and r.exit.reason == vtx.ExitReason.HLT and r.exit.guest_rip == CODE + 6
    assert r.exits[vtx.ExitReason.IO_INSTRUCTION] == 3


def test_registers_and_segments_written_through_their_setters_are_checked():
    """The register, segment and table setters write the VMCS too."""
    for mode, write, check in [
        ("long", lambda v: setattr(v, "rip", NONCANON), "GUEST_RIP_CANONICAL"),
        ("protected", lambda v: setattr(v, "eflags", 0), "GUEST_RFLAGS_BIT_1"),
        ("protected", lambda v: setattr(v, "cr0", v.cr0 & ~(1 << 5)), "GUEST_CR0"),
        ("protected", lambda v: setattr(v, "cr3", 1 << 40), "GUEST_CR3"),
        ("long", lambda v: setattr(v, "cs", attrs.evolve(v.cs, access_rights=v.cs.access_rights | 0x4000)),
         "GUEST_CS_DB_WITH_L"),
        ("protected", lambda v: setattr(v, "ds", Segment(0x10, 1 << 32, 0xFFFFFFFF, 0xC093)),
         "GUEST_DS_BASE_HIGH_BITS"),
        ("protected", lambda v: setattr(v, "tr", Segment(4, 0, 0x67, 0x8B)), "GUEST_TR_SELECTOR_TI"),
        ("protected", lambda v: setattr(v, "idtr", DescriptorTable(NONCANON, 0)), "GUEST_IDTR_BASE_CANONICAL"),
        ("long", lambda v: setattr(v, "efer", 0x100), "GUEST_IA32_EFER_LMA"),
    ]:
        vm = launched_vm(mode)
        write(vm.vcpu)
        expect_resume_failure(vm, check)


def test_a_write_inside_a_handler_is_checked_at_the_resume():
    """The write happens between two exits of one run: RESUME steps over the
    OUT and the VMRESUME that follows fails."""
    vm = launched_vm("protected")

    def out(v, e):
        v.vmwrite(F.HOST_CR4, v.vmread(F.HOST_CR4) & ~(1 << 5))       # PAE: a 64-bit host needs it
        return vtx.RESUME
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(out)
    with pytest.raises(vtx.VmEntryError) as ei:
        vm.run()
    assert (ei.value.number, ei.value.check) == (8, "HOST_CR4_PAE")
    assert vm.vcpu.check_entry().check == "HOST_CR4_PAE"
    assert vm.vcpu.rip == CODE + 2          # stepped over, not entered


def test_a_change_that_only_a_later_write_makes_invalid():
    """Blocking by STI with IF = 1 enters (and the exit keeps it); clearing
    IF alone then fails the interruptibility check: RFLAGS.IF is one of its
    inputs (SDM Vol. 3C 27.3.1.5)."""
    vm = launched_vm("protected")
    v = vm.vcpu
    v.rflags |= IF
    v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 1)
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(lambda v, e: vtx.STOP)
    r = vm.run()
    assert r.exit.reason == vtx.ExitReason.IO_INSTRUCTION and v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 1
    v.rflags &= ~IF
    assert v._dirty_checks() == in_table_order({"GUEST_RFLAGS_IF", "GUEST_INTERRUPTIBILITY_STI_IF"})
    expect_resume_failure(vm, "GUEST_INTERRUPTIBILITY_STI_IF")


@pytest.mark.parametrize("mode", MODES)
def test_valid_writes_between_exits_resume(mode):
    """Writes that keep the state valid: the guest continues (here from the
    second OUT, RIP having been moved past the first)."""
    vm = launched_vm(mode)
    v = vm.vcpu
    v.rip = CODE + 2
    v.vmwrite(F.GUEST_IA32_SYSENTER_ESP, 0x1234)
    v.vmwrite(F.GUEST_DR7, 0x401)
    v.vmwrite(F.EXCEPTION_BITMAP, 0)
    v.rflags |= 1
    v.gdtr = DescriptorTable(v.gdtr.base, 0x3F)
    r = resume_all_outs(vm)
    assert r.exit.reason == vtx.ExitReason.HLT and r.exits[vtx.ExitReason.IO_INSTRUCTION] == 2
    assert v.vmread(F.GUEST_IA32_SYSENTER_ESP) == 0x1234


# --- what one write marks -----------------------------------------------------------

ALL_BITS = (1 << 64) - 1


def expected_checks(name, delta):
    """The checks a change `delta` of field `name` must mark, from the table."""
    out = set(ALWAYS)
    for check, inputs in INPUTS.items():
        for item in inputs:
            field, bits = (item, ALL_BITS) if isinstance(item, str) else item
            if field == name and delta & bits:
                out.add(check)
    return [c for c in CHECK_NAMES if c in out]


def test_each_bit_of_each_field_marks_the_checks_that_read_it():
    """vmcs_check_mask (generated C) against INPUTS (the table), for every
    bit of every VMCS field, written through VMWRITE and, for the 64-bit
    fields, through the high-half encoding."""
    vm = launched_vm("protected")
    v = vm.vcpu
    v._set_dirty_checks([])
    assert v._dirty_checks() == list(ALWAYS)
    for name, enc, _ in FIELDS:
        if name not in MODEL_FIELDS:
            continue
        width = 8 * field_size(enc)
        old = v.vmread(enc)
        for bit in range(width):
            v.vmwrite(enc, old ^ (1 << bit))
            assert v._dirty_checks() == expected_checks(name, 1 << bit), (name, bit)
            v.vmwrite(enc, old)
            v._set_dirty_checks([])
        if field_info(enc).width == FieldWidth.BITS64:
            for bit in range(32):
                v.vmwrite(enc | 1, (old >> 32) ^ (1 << bit))
                assert v._dirty_checks() == expected_checks(name, 1 << (32 + bit)), (name, "high", bit)
                v.vmwrite(enc, old)
                v._set_dirty_checks([])
        # Writing the value a field holds changes no input.
        v.vmwrite(enc, old)
        assert v._dirty_checks() == list(ALWAYS)


@pytest.mark.parametrize("check,field,mode,s0,new", SCENARIOS,
                         ids=[f"{k}<-{f}" for k, f, *_ in SCENARIOS])
def test_each_input_of_each_check_is_re_checked(check, field, mode, s0, new):
    """For each input F of each check K (vtx/spec/entry_checks.py INPUTS; the
    scenarios come from tools/entry_check_scenarios.py): from a state S0
    that passes every check, taken as the last successful entry, writing F
    alone makes the VMRESUME fail at K.  Were F missing from K's inputs, the
    incremental checks would not run K."""
    vm = launched_vm(mode)
    v = vm.vcpu
    for name, value in s0:
        v.vmwrite(F[name], value)
    assert v.check_entry() is None
    v._set_dirty_checks([])
    v.vmwrite(F[field], new)
    assert check in v._dirty_checks()
    expect_resume_failure(vm, check)


def test_every_input_has_a_scenario_or_a_reason():
    pairs = {(k, i if isinstance(i, str) else i[0]) for k, inputs in INPUTS.items() if k not in ALWAYS
             for i in inputs}
    shown = {(k, f) for k, f, *_ in SCENARIOS}
    assert pairs == shown | set(NOT_SHOWN) and not shown & set(NOT_SHOWN)


def test_an_exit_loop_re_checks_rip_only():
    """The benchmark's loop (OUT; DEC; JNZ): each exit saves a new RIP (the
    arithmetic flags that DEC changes are inputs of no check), RESUME moves
    it again; nothing else is re-checked."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm("mov ecx, 20\n1: out 0x80, al\ndec ecx\njnz 1b\nhlt", bits=32, org=CODE))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=CODE)
    seen = []

    def out(v, e):
        seen.append(v._dirty_checks())
        return vtx.RESUME
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(out)
    vm.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    r = vm.run()
    assert r.exits[vtx.ExitReason.IO_INSTRUCTION] == 20 and vm.vcpu.entries == 21
    # The first exit comes after the VMLAUNCH loaded RIP = CODE and ran MOV.
    assert all(s == in_table_order(RIP_CHECKS) for s in seen), seen


GUEST_CHANGES = [
    # (what the guest runs before its OUT exit, the checks the next VMRESUME runs)
    ("mov eax, cr0\nxor eax, 2\nmov cr0, eax", ["GUEST_CR0"]),                       # CR0.MP: CR0's own check
    ("mov eax, cr4\nor eax, 0x10\nmov cr4, eax", ["GUEST_CR4"]),                      # CR4.PSE
    # FS unusable: its access rights are read by every FS check that looks at them
    ("xor eax, eax\nmov fs, ax", [f"GUEST_FS_{k}" for k in (
        "BASE_V86", "LIMIT_V86", "ACCESS_RIGHTS_V86", "TYPE_ACCESSED", "TYPE_READABLE", "S", "DPL_RPL", "P",
        "RESERVED_11_8", "G_LIMIT_LOW", "G_LIMIT_HIGH", "RESERVED_31_17")]),
    # IF, and blocking by STI
    ("sti", ["GUEST_RFLAGS_IF", "GUEST_ACTIVITY_STATE_BLOCKING", "GUEST_INTERRUPTIBILITY_STI_AND_MOV_SS",
             "GUEST_INTERRUPTIBILITY_STI_IF", "GUEST_INTERRUPTIBILITY_STI_EXTERNAL_INTERRUPT",
             "GUEST_PENDING_DEBUG_BS_SET", "GUEST_PENDING_DEBUG_BS_CLEAR"]),
    ("push eax\npop ebx\nadd eax, 1", []),                                            # RSP, arithmetic flags
]


@pytest.mark.parametrize("source,checks", GUEST_CHANGES, ids=[c[0].split("\n")[-1] for c in GUEST_CHANGES])
def test_what_the_guest_changed_is_re_checked(source, checks):
    """The model's own save at the VM exit marks what the guest changed
    (compared with what the entry loaded), and only that."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm(source + "\nout 0x80, al\nhlt", bits=32, org=CODE))
    v = vm.add_vcpu()
    vm.setup_protected_mode(entry=CODE)
    vm.default(lambda vcpu, e: vtx.STOP)
    assert vm.run().exit.reason == vtx.ExitReason.IO_INSTRUCTION
    assert v._dirty_checks() == [c for c in CHECK_NAMES if c in set(checks) | set(RIP_CHECKS) | set(ALWAYS)]


def test_vmlaunch_and_vmclear_run_every_check():
    vm = launched_vm("protected")
    v = vm.vcpu
    assert v._dirty_checks() == list(ALWAYS)
    v.clear()
    assert v._dirty_checks() == CHECK_NAMES
    r = resume_all_outs(vm)            # a VMLAUNCH again
    assert r.exit.reason == vtx.ExitReason.HLT


# --- the modes ------------------------------------------------------------------------

def test_entry_check_modes():
    assert get_entry_check_mode() == "incremental"
    assert set_entry_check_mode("full") == "incremental"
    assert set_entry_check_mode("verify") == "full"
    assert get_entry_check_mode() == "verify"
    with pytest.raises(vtx.ArgumentError):
        set_entry_check_mode("fast")
    assert get_entry_check_mode() == "verify"


@pytest.mark.parametrize("value,out", [("full", "full"), ("verify", "verify"), ("incremental", "incremental"),
                                       ("", "incremental")])
def test_entry_check_mode_from_the_environment(value, out):
    p = subprocess.run([sys.executable, "-c", "import vtx._core as c; print(c.get_entry_check_mode())"],
                       env={**__import__("os").environ, "VTX_ENTRY_CHECKS": value}, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == out, p.stderr


def test_a_bad_entry_check_mode_in_the_environment_is_refused():
    p = subprocess.run([sys.executable, "-c", "import vtx"], env={**__import__("os").environ,
                                                               "VTX_ENTRY_CHECKS": "fast"},
                       capture_output=True, text=True)
    assert p.returncode != 0 and "VTX_ENTRY_CHECKS is one of incremental, full, verify, not 'fast'" in p.stderr


def forget_an_invalid_rip():
    vm = launched_vm("protected")
    vm.vcpu.rip = 1 << 32
    vm.vcpu._set_dirty_checks([])          # as if the write had not been recorded
    return vm


def test_the_verification_mode_catches_an_unrecorded_change(verify):
    vm = forget_an_invalid_rip()
    with pytest.raises(EntryCheckMismatch) as ei:
        vm.run()
    msg = str(ei.value)
    assert "incremental entry checks gave pass, the full checks GUEST_RIP_HIGH_BITS failed" in msg
    assert "re-checked: " + ", ".join(ALWAYS) + ")" in msg
    assert not isinstance(ei.value, vtx.VtxError) and isinstance(ei.value, AssertionError)
    assert vm.vcpu.rip == 1 << 32 and vm.vcpu.launched          # nothing entered


def test_the_full_mode_checks_everything():
    set_entry_check_mode("full")
    expect_resume_failure(forget_an_invalid_rip(), "GUEST_RIP_HIGH_BITS")


def test_the_incremental_mode_trusts_the_record():
    """What the two tests above guard against: with the change forgotten,
    the incremental VMRESUME does not look at RIP."""
    vm = forget_an_invalid_rip()
    vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=10)
    assert vm.vcpu.entries == 2 and r.stop == "stop"        # entered; the fetch then faults


# --- writes the API does not see ---------------------------------------------------------

def test_a_raw_write_to_the_vmcs_region_marks_every_check():
    vm = launched_vm("long")
    v = vm.vcpu
    off = field_offset(F.HOST_RIP)
    assert vm._machine.priv_bytes(off, 8) == v.vmread(F.HOST_RIP).to_bytes(8, "little")
    assert v._dirty_checks() == list(ALWAYS)          # a copy cannot write
    vm._priv[off:off + 8] = NONCANON.to_bytes(8, "little")
    assert v._dirty_checks() == CHECK_NAMES
    expect_resume_failure(vm, "HOST_RIP_CANONICAL")


def test_a_live_view_of_the_private_memory_makes_every_resume_full():
    """A view kept across exits: the write through it comes in a handler,
    long after the view was made; the next VMRESUME still sees it.  Once the
    view is gone, the record is trusted again."""
    vm = launched_vm("protected")
    v = vm.vcpu
    view = vm._machine.priv_view()
    off = field_offset(F.GUEST_TR_ACCESS_RIGHTS)
    exits = []

    def out(vcpu, e):
        exits.append(vcpu._dirty_checks())
        if len(exits) == 2:
            view[off:off + 4] = (0x89).to_bytes(4, "little")
        return vtx.RESUME
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(out)
    with pytest.raises(vtx.VmEntryError) as ei:
        vm.run()
    assert ei.value.check == "GUEST_TR_TYPE" and len(exits) == 2
    assert all(d == CHECK_NAMES for d in exits)
    view[off:off + 4] = (0x8B).to_bytes(4, "little")
    view.release()
    assert v._dirty_checks() == CHECK_NAMES         # once more after the view went
    exits.clear()
    r = vm.run()
    assert r.exit.reason == vtx.ExitReason.HLT
    assert exits == [list(ALWAYS)]              # the third OUT: RIP as loaded, nothing else changed


EPT_PT = 0x7000      # vm.py's layout: the page table after one PD page (a 1 MiB VM)


def test_a_guest_that_ept_lets_write_the_vmcs():
    """EPT maps guest page 0x80000 onto the VMCS region; between two exits
    the guest writes the CR3-target count there, which no API call saw.  A
    guest that can reach the private memory makes every VMRESUME run every
    check."""
    off = field_offset(F.CR3_TARGET_COUNT)
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm(f"out 0x80, al\nmov dword ptr [{0x80000 + off}], 5\nout 0x80, al\nhlt",
                          bits=32, org=CODE))
    v = vm.add_vcpu()
    vm.setup_protected_mode(entry=CODE)
    pte = EPT_PT + 8 * 0x80
    assert int.from_bytes(vm._priv[pte:pte + 8], "little") == 0x80000 | 7 | (6 << 3)
    vm._priv[pte:pte + 8] = (vtx._core.PRIV_BASE | 7 | (6 << 3)).to_bytes(8, "little")
    exits = []

    def out(vcpu, e):
        exits.append(vcpu._dirty_checks())
        return vtx.RESUME
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(out)
    with pytest.raises(vtx.VmEntryError) as ei:
        vm.run()
    assert (ei.value.number, ei.value.check) == (7, "CR3_TARGET_COUNT")
    assert exits == [CHECK_NAMES, CHECK_NAMES] and v.vmread(F.CR3_TARGET_COUNT) == 5
    assert v.entries == 2


def test_ept_paging_structures_in_guest_memory_make_every_resume_full():
    """The guest (or vm.write) could remap a page onto the VMCS while it runs."""
    vm = launched_vm("protected")
    v = vm.vcpu
    tables = 0x40000
    for i in range(4):                              # PML4, PDPT, PD, PT copied into guest RAM
        page = bytearray(vm._priv[0x4000 + 0x1000 * i:0x5000 + 0x1000 * i])
        if i < 3:
            e = int.from_bytes(page[:8], "little")
            page[:8] = ((e & 0xFFF) | (tables + 0x1000 * (i + 1))).to_bytes(8, "little")
        vm.write(tables + 0x1000 * i, bytes(page))
    v.vmwrite(F.EPT_POINTER, tables | 6 | (3 << 3))
    seen = []

    def out(vcpu, e):
        seen.append(vcpu._dirty_checks())
        return vtx.RESUME
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(out)
    r = vm.run()
    assert r.exit.reason == vtx.ExitReason.HLT
    assert seen == [CHECK_NAMES] * 3


def test_the_default_ept_keeps_the_guest_out_of_the_private_memory():
    vm = launched_vm("long")
    assert vm.vcpu._dirty_checks() == list(ALWAYS)


def test_vmcs_writes_while_the_guest_runs_in_another_thread_are_refused():
    """The API writes the VMCS between runs only: a write from another thread
    while the guest executes would race the record of what changed."""
    vm = vtx.VM(memory=1 << 16)
    vm.load(0x1000, b"\xeb\xfe")                 # jmp $
    v = vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", vm.run(max_instructions=50_000_000)))
    t.start()
    refused = 0
    while t.is_alive():
        for write in (lambda: v.vmwrite(F.GUEST_RIP, 0x1000), lambda: setattr(v, "rflags", 2),
                      lambda: setattr(v, "ds", v.ds), lambda: v.clear()):
            try:
                write()
            except vtx.VmStateError:
                refused += 1
    t.join()
    assert result["r"].stop == "budget" and refused > 0
    assert v.check_entry() is None


# --- the verification mode over random writes between exits ---------------------------------

INPUT_FIELDS = sorted({item if isinstance(item, str) else item[0] for inputs in INPUTS.values()
                       for item in inputs})
WRITABLE = INPUT_FIELDS + ["GUEST_RSP", "EXCEPTION_BITMAP", "GUEST_IA32_DEBUGCTL", "CR0_READ_SHADOW"]
SPECIAL = [0, 1, 2, 0x3, 0xF3, 0xFFFF, 0x10000, 0xFFFFFFFF, 1 << 32, NONCANON, NONCANON - 1,
           0xFFFF800000000000, (1 << 64) - 1, 0x80000000, 0x80000021, 0xFFFFFFFFFFFFFFFF]
SEGS = ["es", "cs", "ss", "ds", "fs", "gs", "ldtr", "tr"]

WRITE = st.one_of(
    st.tuples(st.just("flip"), st.sampled_from(WRITABLE), st.integers(0, 63)),
    st.tuples(st.just("flip"), st.sampled_from(WRITABLE), st.integers(0, 63)),
    st.tuples(st.just("set"), st.sampled_from(WRITABLE), st.one_of(st.sampled_from(SPECIAL),
                                                                    st.integers(0, (1 << 64) - 1))),
    st.tuples(st.just("seg"), st.sampled_from(SEGS), st.integers(0, 3), st.integers(0, 63)),
    st.tuples(st.just("reg"), st.sampled_from(["rip", "rflags", "cr0", "cr4", "cr3", "dr7", "efer", "flags"]),
              st.integers(0, 63)),
    st.tuples(st.just("raw"), st.sampled_from(WRITABLE), st.integers(0, 63)),
)

GUESTS = {
    16: "1: out 0x80, al\ninc ax\npush ax\npop bx\njmp 1b",
    32: "1: out 0x80, al\ninc eax\npush eax\npop ebx\ncpuid\njmp 1b",
    64: "1: out 0x80, al\ninc rax\npush rax\npop rbx\ncpuid\njmp 1b",
}


def apply_write(vm, w, undo):
    v = vm.vcpu
    kind = w[0]
    if kind in ("flip", "set", "raw"):
        enc = int(F[w[1]])
        width = 8 * field_size(enc)
        old = v.vmread(enc)
        new = (old ^ (1 << w[2]) if kind != "set" else w[2]) & ((1 << width) - 1)
        undo.append(lambda: v.vmwrite(enc, old))
        if kind == "raw":
            off = field_offset(enc)
            vm._priv[off:off + width // 8] = new.to_bytes(width // 8, "little")
        else:
            v.vmwrite(enc, new)
    elif kind == "seg":
        name, part, bit = w[1:]
        old = getattr(v, name)
        fields = list(attrs.astuple(old))
        width = (16, 64, 32, 32)[part]
        fields[part] = (fields[part] ^ (1 << bit)) & ((1 << width) - 1)
        undo.append(lambda: setattr(v, name, old))
        setattr(v, name, Segment(*fields))
    else:
        name, bit = w[1:]
        old = getattr(v, name)
        width = 16 if name == "flags" else 64
        undo.append(lambda: setattr(v, name, old))
        setattr(v, name, old ^ (1 << (bit % width)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bits=st.sampled_from([16, 32, 64]),
       steps=st.lists(st.lists(WRITE, min_size=1, max_size=3), min_size=1, max_size=8),
       resume=st.booleans())
def test_verification_mode_agrees_over_random_writes_between_exits(bits, steps, resume):
    """Random writes (API, register and segment setters, raw bytes) between
    exits; a VMRESUME that fails has the batch undone and tries again.  The
    verification mode raises EntryCheckMismatch if the incremental checks
    ever disagree with the full pass; a failure names the check that
    check_entry() (the full pass) names, or is one of MSR loading after
    check_entry() passed."""
    old_mode = set_entry_check_mode("verify")
    try:
        vm = vtx.VM(memory=1 << 20)
        vm.load(CODE, vtx.asm(GUESTS[bits], bits=bits, org=CODE))
        vm.add_vcpu()
        getattr(vm, {16: "setup_real_mode", 32: "setup_protected_mode", 64: "setup_long_mode"}[bits])(entry=CODE)
        pending = list(steps)
        undo = []

        def handler(v, e):
            if not pending:
                return vtx.STOP
            undo.clear()
            for w in pending.pop(0):
                apply_write(vm, w, undo)
            if resume and e.instruction_length:
                return vtx.RESUME
            return vtx.RETRY
        vm.default(handler)
        for _ in range(2 * len(steps) + 2):
            try:
                r = vm.run(max_instructions=40)
            except vtx.VmEntryError as ex:
                err = vm.vcpu.check_entry()
                if ex.kind == "msr-loading":
                    # SDM 27.4, after the checks check_entry() runs: they passed.
                    assert err is None and ex.number == 34
                else:
                    assert err is not None and err.check == ex.check
                for u in reversed(undo):
                    u()
                undo.clear()
                continue
            except vtx.VtxError:
                break                  # event injection (not modeled), a guest access outside memory, ...
            if not pending or r.stop in ("halted", "shutdown"):
                break
    finally:
        set_entry_check_mode(old_mode)


def test_the_fuzz_campaigns_run_in_the_verification_mode():
    """Every fuzz case runs with both passes, and a disagreement is a
    finding of its own kind."""
    from vtx.fuzz import harness
    from vtx.fuzz.cases import case_id, make_spec
    findings = []
    assert harness.classify_error(EntryCheckMismatch("x"), findings) == "entry-check-mismatch"
    assert [f["kind"] for f in findings] == ["entry_checks"]
    result = harness.run_case(make_spec(case_id("vmcs", "protected", 1, 3, 200)))
    assert get_entry_check_mode() == "verify"
    assert not [f for f in result["findings"] if f["kind"] == "entry_checks"]
