"""VMX root operation by x86 code on the bare machine (vtx.BareMetal), and the
same VMX operations from Python: VMXON, VMXOFF, VMCLEAR, VMPTRLD, VMPTRST,
VMREAD, VMWRITE, VMLAUNCH, VMRESUME, VMCALL, with RFLAGS and the
VM-instruction error numbers of Intel SDM Vol. 3C 31.2 and 31.4 (325462-080US);
the exits of a guest that executes them (SDM 28.2.5 instruction information);
host-state loading at VM exit (SDM 28.5) through the type-1 hypervisor of
examples/; RDRAND and RDSEED.
"""

import pathlib
import sys

import pytest

import vtx
from vtx import ExitReason as R, VmcsField as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
import type1_hypervisor  # noqa: E402

CF, PF, AF, ZF, SF, OF = 1, 4, 0x10, 0x40, 0x80, 0x800
STATUS = CF | PF | AF | ZF | SF | OF
VMXON_REGION, VMCS_A, VMCS_B = 0x10000, 0x11000, 0x12000
REV = vtx.spec.capabilities.VMCS_REVISION_ID

# Enter VMX operation with a current VMCS (VMCS_A); RFLAGS after each step
# is pushed at 0x9000 - 8 * n.
PROLOGUE = f"""
    mov rax, cr4
    or eax, 0x2000
    mov cr4, rax
    mov dword ptr [{VMXON_REGION}], {REV}
    mov dword ptr [{VMCS_A}], {REV}
    mov dword ptr [{VMCS_B}], {REV}
    mov qword ptr [0x8000], {VMXON_REGION}
    mov qword ptr [0x8008], {VMCS_A}
    mov qword ptr [0x8010], {VMCS_B}
    vmxon [0x8000]
    vmclear [0x8008]
    vmptrld [0x8008]
"""


def bare(code, prologue=PROLOGUE, budget=100_000):
    hw = vtx.BareMetal(memory=4 << 20)
    hw.load(0x1000, vtx.asm(prologue + code + "\nhlt\n", bits=64, org=0x1000))
    hw.setup_long_mode(entry=0x1000, stack=0x7000)
    r = hw.run(max_instructions=budget)
    assert r.stop == "halted", r
    return hw


def flags_after(code, prologue=PROLOGUE):
    """RFLAGS status bits right after `code`, and the VM-instruction error
    field (or None without a current VMCS)."""
    hw = bare(code + "\npushfq\npop r15\n", prologue)
    err = hw.cpu.vmread(F.VM_INSTRUCTION_ERROR) if hw.cpu.current_vmcs is not None else None
    return hw.cpu.r15 & STATUS, err


# --- VMsucceed, VMfailInvalid, VMfailValid from x86 code ------------------------

def test_vmxon_vmptrld_succeed_with_status_flags_clear():
    hw = bare("stc\nvmptrld [0x8008]\npushfq\npop r15")
    assert hw.cpu.r15 & STATUS == 0
    assert hw.cpu.in_vmx_operation and hw.cpu.vmxon_pointer == VMXON_REGION
    assert hw.cpu.current_vmcs == VMCS_A


@pytest.mark.parametrize("pointer,why", [(VMXON_REGION + 8, "misaligned"), (1 << 39, "beyond MAXPHYADDR"),
                                         (0x13000, "revision 0")])
def test_vmxon_bad_region_is_vmfail_invalid(pointer, why):
    pro = PROLOGUE.split("    vmxon")[0]
    hw = bare(f"mov rax, {pointer}\nmov [0x8000], rax\nvmxon [0x8000]\npushfq\npop r15", prologue=pro)
    assert hw.cpu.r15 & STATUS == CF, why
    assert not hw.cpu.in_vmx_operation


@pytest.mark.parametrize("code,error", [
    ("vmxon [0x8000]", 15),                                    # VMXON in VMX root operation
    ("vmcall", 1),                                             # VMCALL in VMX root operation
    ("mov qword ptr [0x8020], 0x11008\nvmclear [0x8020]", 2),  # misaligned
    ("vmclear [0x8000]", 3),                                   # the VMXON pointer
    ("mov qword ptr [0x8020], 0x11008\nvmptrld [0x8020]", 9),
    ("vmptrld [0x8000]", 10),
    ("mov qword ptr [0x8020], 0x13000\nvmptrld [0x8020]", 11),  # revision 0 there
    ("mov rdx, 0x1234\nvmread rax, rdx", 12),
    ("mov rdx, 0x1234\nvmwrite rdx, rax", 12),
    ("mov rdx, 0x100004402\nvmread rax, rdx", 12),              # encoding bits 63:32 set
    ("vmresume", 5),                                           # the VMCS is clear
])
def test_vmfail_valid_error_numbers(code, error):
    status, err = flags_after(code)
    assert (status, err) == (ZF, error)


def test_vmfail_invalid_without_current_vmcs():
    pro = PROLOGUE.replace("    vmptrld [0x8008]\n", "")
    for code in ("mov rdx, 0x4402\nvmread rax, rdx", "vmlaunch", "vmresume", "vmcall",
                 "mov qword ptr [0x8020], 0x11008\nvmptrld [0x8020]"):
        status, err = flags_after(code, pro)
        assert (status, err) == (CF, None), code


def test_vmlaunch_of_launched_vmcs_is_error_4_and_bad_controls_error_7():
    # All-zero controls violate the allowed-0 settings: error 7, and the VMCS
    # stays clear.  Then a launch state set by hand: error 4.
    status, err = flags_after("vmlaunch")
    assert (status, err) == (ZF, 7)
    status, err = flags_after(f"mov byte ptr [{VMCS_A + 8}], 1\nvmlaunch")
    assert (status, err) == (ZF, 4)


def test_vmresume_after_vmxoff_is_error_6():
    code = f"""
        mov byte ptr [{VMCS_A + 8}], 1
        mov dword ptr [{VMCS_A + 12}], 1      # launched under the first VMXON
        vmxoff
        vmxon [0x8000]
        vmptrld [0x8008]
        vmresume
    """
    assert flags_after(code) == (ZF, 6)


def test_mov_ss_blocking_is_error_26():
    code = """
        mov ax, ss
        mov ss, ax
        vmlaunch
    """
    assert flags_after(code) == (ZF, 26)


def test_vmxon_after_vmxoff_leaves_x86_code_the_root_software():
    """x86 code that leaves VMX operation and enters it again is still the
    root-mode software: the next run() goes on with it (found by the root
    fuzz campaign, case root:long:1:206:3000)."""
    hw = vtx.BareMetal(memory=4 << 20)
    hw.load(0x1000, vtx.asm(PROLOGUE + "vmxoff\nvmxon [0x8000]\nmov eax, 7\nhlt", bits=64, org=0x1000))
    hw.setup_long_mode(entry=0x1000, stack=0x7000)
    steps = len([line for line in PROLOGUE.splitlines() if line.strip()]) + 2
    assert hw.run(max_instructions=steps).stop == "budget"
    assert hw.cpu.in_vmx_operation and not hw.cpu.non_root and hw.cpu.rax != 7
    r = hw.run(max_instructions=100)
    assert r.stop == "halted" and hw.cpu.rax == 7


def test_vmptrst_vmread_vmwrite_operand_forms():
    hw = bare(f"""
        vmptrst [0x8100]
        mov rdx, {int(F.GUEST_RIP)}
        mov rax, 0x123456789
        mov [0x8108], rax
        vmwrite rdx, [0x8108]
        vmread [0x8110], rdx
        mov rdx, {int(F.GUEST_ES_SELECTOR)}
        mov rax, 0xFFFFFFFFFFFF1234
        vmwrite rdx, rax
        vmread rbx, rdx
    """)
    assert hw.read_u64(0x8100) == VMCS_A
    assert hw.read_u64(0x8110) == 0x123456789
    assert hw.cpu.vmread(F.GUEST_RIP) == 0x123456789
    assert hw.cpu.rbx == 0x1234               # a 16-bit field keeps its bits, read zero-extended


def test_vmclear_of_current_vmcs_leaves_none():
    hw = bare("vmclear [0x8008]\nvmptrst [0x8100]")
    assert hw.cpu.current_vmcs is None
    assert hw.read_u64(0x8100) == (1 << 64) - 1


def test_vmx_instructions_ud_outside_vmx_operation_and_in_real_mode():
    hw = vtx.BareMetal(memory=1 << 20)
    # #UD with no IDT: a triple fault shuts the machine down.
    hw.load(0x1000, vtx.asm("mov rdx, 0x4402\nvmread rax, rdx\nhlt", bits=64, org=0x1000))
    hw.setup_long_mode(entry=0x1000)
    assert hw.run(max_instructions=100).stop == "shutdown"
    # Real mode: the #UD goes through the IVT (vector 6 at 0x18) to a
    # handler that records it.
    hw = vtx.BareMetal(memory=1 << 20)
    hw.load(0x1000, vtx.asm("mov ebx, 0x2000\nmov cr4, ebx\nvmxon [0x100]\nhlt", bits=16, org=0x1000))
    hw.load(0x2000, vtx.asm("mov al, 6\nhlt", bits=16, org=0x2000))
    hw.write(0x18, (0x2000).to_bytes(2, "little") + bytes(2))
    hw.setup_real_mode(entry=0x1000)
    assert hw.run(max_instructions=100).stop == "halted"
    assert hw.cpu.rax & 0xFF == 6 and hw.cpu.rip == 0x2003


def test_feature_control_is_locked_at_reset():
    hw = vtx.BareMetal(memory=1 << 20)
    assert hw.cpu.rdmsr(0x3A) == 5
    with pytest.raises(vtx.VtxError, match="WRMSR 0x3a"):
        hw.cpu.wrmsr(0x3A, 0)


# --- the type-1 hypervisor of examples/, and the type-2 one beside it ---------------

def test_type1_hypervisor_runs_its_guest_and_counts_its_exits():
    hw, result, counts = type1_hypervisor.run_type1()
    assert hw.console == b"hello from the guest; my hypervisor is VtxType1Hyp!\n"
    # 40 characters of message, 12 of vendor, 1 newline; one CPUID; one HLT.
    assert counts == {R.IO_INSTRUCTION: 52, R.CPUID: 1, R.HLT: 1}
    assert result.exits == counts
    assert result.stop == "halted"
    # The hypervisor left VMX operation (VMXOFF) and halted in root mode.
    assert not hw.cpu.in_vmx_operation and not hw.cpu.non_root
    assert hw.cpu.cs.selector == 0x18 and hw.cpu.rsp == 0xA000
    # Host state loaded at the last exit (SDM 28.5): flat segments, RFLAGS 2,
    # GDTR limit FFFFH, TR a busy TSS with limit 67H.
    assert hw.cpu.gdtr.limit == 0xFFFF
    assert hw.cpu.tr.limit == 0x67 and hw.cpu.tr.access_rights & 0xF == 0xB
    assert hw.cpu.ds.access_rights == 0xC093


def test_type2_runs_the_same_guest_with_the_same_exits():
    console, result = type1_hypervisor.run_type2()
    assert console == b"hello from the guest; my hypervisor is VtxPythonHv!\n"
    assert result.exits == {R.IO_INSTRUCTION: 52, R.CPUID: 1, R.HLT: 1}


def test_guest_state_failure_returns_to_host_rip_with_reason_33():
    # The type-1 hypervisor with a broken guest RFLAGS (bit 1 clear): the
    # entry fails after the host-state checks, reported as an exit with
    # bit 31 set at HOST_RIP, whose handler records the unexpected reason.
    src = (type1_hypervisor.HERE / "hypervisor.s").read_text().replace(
        ".quad 0x6820, 2               # GUEST_RFLAGS", ".quad 0x6820, 0")
    hw = vtx.BareMetal(memory=4 << 20)
    hw.load(0x1000, vtx.asm(src, bits=64, org=0x1000))
    hw.load(type1_hypervisor.GUEST, type1_hypervisor.guest_image())
    hw.setup_long_mode(entry=0x1000, stack=0x8000)
    r = hw.run(max_instructions=100_000)
    assert r.stop == "halted"
    assert hw.read_u64(type1_hypervisor.FAILURE) == 2          # "unexpected exit"
    assert hw.read_u64(type1_hypervisor.FAILURE + 8) == 33      # its basic reason
    assert hw.cpu.vmread(F.EXIT_REASON) == 0x80000021
    assert hw.cpu.vmread(F.EXIT_QUALIFICATION) == 0
    assert r.exits == {R.ENTRY_FAILURE_INVALID_GUEST_STATE: 1}
    assert not hw.cpu.non_root and hw.cpu.rsp == 0xA000 - 48


# --- the same operations from Python ----------------------------------------------

def python_root(vmxe=False):
    """A bare machine in long mode with revision identifiers in the VMXON
    region and the VMCS regions; with vmxe, its code has set CR4.VMXE."""
    hw = vtx.BareMetal(memory=4 << 20)
    code = "mov rax, cr4\nor eax, 0x2000\nmov cr4, rax\nhlt" if vmxe else "hlt"
    hw.load(0x1000, vtx.asm(code, bits=64, org=0x1000))
    hw.setup_long_mode(entry=0x1000)
    for a in (VMXON_REGION, VMCS_A, VMCS_B):
        hw.write(a, REV.to_bytes(4, "little"))
    if vmxe:
        hw.run(max_instructions=10)
    return hw


def test_python_vmx_operations_raise_vmfail_with_number_and_name():
    hw = python_root()
    cpu = hw.cpu
    with pytest.raises(vtx.VmStateError, match="CR4.VMXE"):
        cpu.vmxon(VMXON_REGION)
    hw.load(0x1000, vtx.asm("mov rax, cr4\nor eax, 0x2000\nmov cr4, rax\nhlt", bits=64, org=0x1000))
    hw.setup_long_mode(entry=0x1000)
    hw.run(max_instructions=10)
    cpu.vmxon(VMXON_REGION)
    with pytest.raises(vtx.VmFail) as e:
        cpu.vmread(F.GUEST_RIP)
    assert (e.value.number, e.value.name) == (0, "FAIL_INVALID")
    cpu.vmclear(VMCS_A)
    cpu.vmptrld(VMCS_A)
    assert cpu.vmptrst() == VMCS_A
    with pytest.raises(vtx.VmFail) as e:
        cpu.vmresume()
    assert (e.value.number, e.value.name) == (5, "VMRESUME_NONLAUNCHED_VMCS")
    with pytest.raises(vtx.VmFail) as e:
        cpu.vmptrld(VMXON_REGION)
    assert (e.value.number, e.value.name) == (10, "VMPTRLD_VMXON_POINTER")
    with pytest.raises(vtx.VmFail) as e:
        cpu.vmlaunch()                    # zero controls
    assert (e.value.number, e.value.name) == (7, "ENTRY_INVALID_CONTROL_FIELDS")
    hw.write(VMCS_A + 8, b"\x01")
    with pytest.raises(vtx.VmFail) as e:
        cpu.vmlaunch()
    assert (e.value.number, e.value.name) == (4, "VMLAUNCH_NONCLEAR_VMCS")
    assert cpu.rflags & STATUS == ZF
    cpu.vmxoff()
    assert not cpu.in_vmx_operation and cpu.current_vmcs is None


# --- VMX instructions in a guest exit, with their instruction information ------------

@pytest.mark.parametrize("code,reason,info,qual", [
    # VMPTRLD [rbx + 8]: scaling 0, address size 64 (2 << 7), memory, DS (3 << 15),
    # no index (bit 22), base RBX (3 << 23); qualification = displacement 8.
    ("vmptrld [rbx + 8]", R.VMPTRLD, (2 << 7) | (3 << 15) | (1 << 22) | (3 << 23), 8),
    ("vmclear [rbx + rcx*4 - 16]", R.VMCLEAR, 2 | (2 << 7) | (3 << 15) | (1 << 18) | (3 << 23),
     (1 << 64) - 16),
    ("vmptrst [rsp]", R.VMPTRST, (2 << 7) | (2 << 15) | (1 << 22) | (4 << 23), 0),
    ("vmxon [rbx]", R.VMXON, (2 << 7) | (3 << 15) | (1 << 22) | (3 << 23), 0),
    # VMREAD rax, rdx: register operand (bit 10), reg1 = RAX in 6:3, reg2 = RDX in 31:28.
    ("vmread rax, rdx", R.VMREAD, (1 << 10) | (0 << 3) | (2 << 7) | (2 << 28), 0),
    ("vmwrite rsi, [rbx]", R.VMWRITE, (2 << 7) | (3 << 15) | (1 << 22) | (3 << 23) | (6 << 28), 0),
])
def test_vmx_instruction_in_guest_exits_with_information(code, reason, info, qual):
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(code + "\nhlt", bits=64, org=0x1000))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    vm.vcpu.rbx = 0x2000
    seen = []

    @vm.default
    def stop(vcpu, ex):
        seen.append(ex)
        return vtx.STOP

    vm.run(max_instructions=100)
    ex = seen[0]
    assert ex.reason == reason
    assert ex.instruction_info == info
    assert ex.qualification == qual
    assert ex.instruction_length == len(vtx.asm(code, bits=64))


# --- RDRAND, RDSEED ----------------------------------------------------------------

def test_rdrand_rdseed_set_cf_and_repeat_run_to_run():
    code = "mov ax, 0x8d5\nsahf\nrdrand rax\npushfq\npop r14\nrdseed ebx\nrdrand cx\nhlt"
    values = []
    for _ in range(2):
        hw = vtx.BareMetal(memory=1 << 20)
        hw.load(0x1000, vtx.asm(code, bits=64, org=0x1000))
        hw.setup_long_mode(entry=0x1000)
        assert hw.run(max_instructions=100).stop == "halted"
        values.append((hw.cpu.rax, hw.cpu.rbx, hw.cpu.rcx))
        assert hw.cpu.r14 & STATUS == CF
    assert values[0] == values[1]
    rax, rbx, rcx = values[0]
    assert rbx >> 32 == 0 and rcx >> 16 == 0 and len({rax, rbx, rcx}) == 3


# --- any VMCS contents, launched from Python on a bare machine ----------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from vtx.spec import FIELDS, MODEL_FIELDS, capabilities  # noqa: E402

GUEST_CODE = 0x20000


def good_guest_vmcs(hw):
    """VMXON and a current VMCS (VMCS_A) that enters a 64-bit guest at
    GUEST_CODE sharing the machine's page tables and GDT: the Python
    counterpart of the table in examples/type1/hypervisor.s."""
    cpu = hw.cpu
    hw.load(0x1000, vtx.asm("mov rax, cr4\nor eax, 0x2000\nmov cr4, rax\nhlt", bits=64, org=0x1000))
    hw.setup_long_mode(entry=0x1000, stack=0x8000)
    hw.run(max_instructions=10)
    for a in (VMXON_REGION, VMCS_A):
        hw.write(a, REV.to_bytes(4, "little"))
    cpu.vmxon(VMXON_REGION)
    cpu.vmclear(VMCS_A)
    cpu.vmptrld(VMCS_A)
    lo = lambda msr: msr & 0xFFFFFFFF  # noqa: E731
    cpu.vmwrite(F.PIN_BASED_CONTROLS, lo(capabilities.TRUE_PINBASED_CTLS))
    cpu.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, lo(capabilities.TRUE_PROCBASED_CTLS) | (1 << 7) | (1 << 24))
    cpu.vmwrite(F.VM_EXIT_CONTROLS, lo(capabilities.TRUE_EXIT_CTLS) | (1 << 9))
    cpu.vmwrite(F.VM_ENTRY_CONTROLS, lo(capabilities.TRUE_ENTRY_CTLS) | (1 << 9))
    cpu.vmwrite(F.VMCS_LINK_POINTER, (1 << 64) - 1)
    for name in ("CR0", "CR3", "CR4"):
        v = getattr(cpu, name.lower())
        cpu.vmwrite(F["HOST_" + name], v)
        cpu.vmwrite(F["GUEST_" + name], v)
    gdt = cpu.gdtr
    cpu.vmwrite(F.HOST_GDTR_BASE, gdt.base)
    cpu.vmwrite(F.GUEST_GDTR_BASE, gdt.base)
    cpu.vmwrite(F.GUEST_GDTR_LIMIT, gdt.limit)
    cpu.vmwrite(F.HOST_CS_SELECTOR, 0x18)
    cpu.vmwrite(F.HOST_TR_SELECTOR, 0x20)
    cpu.vmwrite(F.HOST_TR_BASE, cpu.tr.base)
    for s in ("ES", "SS", "DS", "FS", "GS"):
        cpu.vmwrite(F["HOST_" + s + "_SELECTOR"], 0x10)
        cpu.vmwrite(F["GUEST_" + s + "_SELECTOR"], 0x10)
        cpu.vmwrite(F["GUEST_" + s + "_LIMIT"], 0xFFFFFFFF)
        cpu.vmwrite(F["GUEST_" + s + "_ACCESS_RIGHTS"], 0xC093)
    cpu.vmwrite(F.GUEST_CS_SELECTOR, 0x18)
    cpu.vmwrite(F.GUEST_CS_LIMIT, 0xFFFFFFFF)
    cpu.vmwrite(F.GUEST_CS_ACCESS_RIGHTS, 0xA09B)
    cpu.vmwrite(F.GUEST_LDTR_ACCESS_RIGHTS, 0x10000)
    cpu.vmwrite(F.GUEST_TR_SELECTOR, 0x20)
    cpu.vmwrite(F.GUEST_TR_BASE, cpu.tr.base)
    cpu.vmwrite(F.GUEST_TR_LIMIT, 0x67)
    cpu.vmwrite(F.GUEST_TR_ACCESS_RIGHTS, 0x8B)
    cpu.vmwrite(F.GUEST_RFLAGS, 2)
    cpu.vmwrite(F.GUEST_RSP, 0x30000)
    cpu.vmwrite(F.GUEST_RIP, GUEST_CODE)
    return cpu


def test_good_guest_vmcs_launches_from_python_and_exits_back():
    hw = vtx.BareMetal(memory=4 << 20)
    cpu = good_guest_vmcs(hw)
    hw.load(GUEST_CODE, vtx.asm("mov eax, 7\ncpuid\nhlt", bits=64, org=GUEST_CODE))
    cpu.vmlaunch()
    assert cpu.non_root
    r = hw.run(max_instructions=100)
    assert r.stop == "vmexit" and r.exit.reason == R.CPUID and r.exit.rax == 7
    assert r.exits == {R.CPUID: 1}
    assert not cpu.non_root and cpu.vmread(F.GUEST_RIP) == GUEST_CODE + 5
    cpu.vmwrite(F.GUEST_RIP, GUEST_CODE + 7)
    cpu.vmresume()
    r = hw.run(max_instructions=100)
    assert r.stop == "vmexit" and r.exit.reason == R.HLT


ENCODINGS = [int(enc) for n, enc, _d in FIELDS if n in MODEL_FIELDS]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes=st.lists(st.tuples(st.sampled_from(ENCODINGS),
                                 st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from((0, 1, (1 << 64) - 1)))),
                       max_size=4),
       code=st.binary(min_size=1, max_size=24), launch=st.booleans())
def test_any_vmcs_contents_end_in_an_sdm_outcome(writes, code, launch):
    """Random values in random fields of a good VMCS, then VMLAUNCH (or a
    VMRESUME of it marked launched) from Python and a run of random guest
    bytes: a VMfail, an entry failure, or a run that ends by budget, halt,
    shutdown or a VM exit (or a GuestMemoryError: without EPT the guest's
    physical addresses are the machine's, and it may read memory the machine
    does not have); never another exception, a crash or a hang."""
    hw = vtx.BareMetal(memory=4 << 20)
    cpu = good_guest_vmcs(hw)
    hw.load(GUEST_CODE, code)
    for enc, value in writes:
        cpu.vmwrite(enc, value)
    if not launch:
        hw.write(VMCS_A + 8, b"\x01")
        hw.write(VMCS_A + 12, (1).to_bytes(4, "little"))
    try:
        cpu.vmresume() if not launch else cpu.vmlaunch()
    except (vtx.VmFail, vtx.VmEntryError):
        assert not cpu.non_root
        return
    try:
        r = hw.run(max_instructions=200)
    except vtx.GuestMemoryError:
        return
    assert r.stop in ("vmexit", "halted", "shutdown", "budget")
    if r.stop == "vmexit":
        assert not cpu.non_root and r.exit.reason in set(R) | {R.ENTRY_FAILURE_INVALID_GUEST_STATE}


@pytest.mark.parametrize("field", ["ENCLV_EXITING_BITMAP", "ENCLS_EXITING_BITMAP", "VMREAD_BITMAP_ADDRESS",
                                   "EPTP_INDEX", "EXECUTIVE_VMCS_POINTER"])
def test_fields_of_features_not_offered_are_error_12(field):
    """A field whose feature the capability MSRs deny does not exist: VMREAD
    and VMWRITE fail with error 12, from x86 code and from both Python APIs."""
    enc = int(F[field])
    assert field not in vtx.spec.MODEL_FIELDS
    assert flags_after(f"mov rdx, {enc}\nvmread rax, rdx") == (ZF, 12)
    assert flags_after(f"mov rdx, {enc}\nvmwrite rdx, rax") == (ZF, 12)
    vm = vtx.VM(memory=1 << 20)
    vm.add_vcpu()
    with pytest.raises(vtx.VtxError, match="error 12"):
        vm.vcpu.vmread(enc)


def test_fields_of_offered_features_exist():
    for field in ("VIRTUAL_PROCESSOR_ID", "EPT_POINTER", "GUEST_PDPTE0", "GUEST_IA32_EFER", "GUEST_SMBASE"):
        assert field in vtx.spec.MODEL_FIELDS
        assert flags_after(f"mov rdx, {int(F[field])}\nvmread rax, rdx") == (0, 0)


# --- exit information from the spec rows (vtx/spec/exit_reasons.py EXIT_INFO) ---------

def test_exit_information_follows_the_spec_row():
    """An exit writes the fields its reason's row lists and clears the rest:
    after a VMPTRLD exit (qualification, length, information), a CPUID exit
    (length only) leaves no stale qualification or information."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("vmptrld [rbx + 0x10]\ncpuid\nout 0x80, al\nhlt", bits=64, org=0x1000))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    vm.vcpu.rbx = 0x2000
    seen = []

    @vm.default
    def go(vcpu, ex):
        seen.append(ex)
        return vtx.RESUME if ex.reason != R.HLT else vtx.STOP

    vm.run(max_instructions=100)
    vmptrld, cpuid, out, hlt = seen
    assert vmptrld.info_fields == ("qualification", "instruction_length", "instruction_info")
    assert (vmptrld.qualification, vmptrld.instruction_info != 0) == (0x10, True)
    assert vmptrld.qualification_fields() == {"displacement": 0x10}
    assert cpuid.info_fields == ("instruction_length",)
    assert (cpuid.qualification, cpuid.instruction_info, cpuid.instruction_length) == (0, 0, 2)
    assert out.qualification_fields() == {"size_minus_1": 0, "direction": 0, "string": 0, "rep": 0,
                                          "immediate": 1, "port": 0x80}
    assert out.instruction_info == 0 and out.guest_linear_address == 0


def test_every_exit_reason_the_model_produces_has_a_row():
    from vtx.spec import EXIT_INFO, INFO_FIELDS
    attrs = {name for name, _field in INFO_FIELDS}
    for name, (fields, _where, bits) in EXIT_INFO.items():
        assert set(fields) <= attrs, name
        assert all(hasattr(vtx.Exit, f) for f in fields)
        for b, lo, hi in bits:
            assert 0 <= lo <= hi <= 63, (name, b)
    for r in (R.CPUID, R.HLT, R.IO_INSTRUCTION, R.RDMSR, R.WRMSR, R.CONTROL_REGISTER_ACCESS, R.EPT_VIOLATION,
              R.EPT_MISCONFIGURATION, R.VMCALL, R.VMPTRLD, R.VMREAD, R.INVLPG, R.RDTSC, R.RDRAND):
        assert r.name in EXIT_INFO


# --- INVEPT, INVVPID ---------------------------------------------------------------

GOOD_EPTP = 0x5000 | 6 | (3 << 3)


def invept(typ, eptp):
    return f"mov rax, {eptp}\nmov [0x8200], rax\nmov qword ptr [0x8208], 0\nmov ecx, {typ}\ninvept rcx, [0x8200]"


def invvpid(typ, lo, hi):
    return (f"mov rax, {lo}\nmov [0x8200], rax\nmov rax, {hi}\nmov [0x8208], rax\nmov ecx, {typ}\n"
            f"invvpid rcx, [0x8200]")


@pytest.mark.parametrize("code,outcome", [
    (invept(1, GOOD_EPTP), (0, 0)),
    (invept(2, 0), (0, 0)),
    (invept(1, GOOD_EPTP | 0x80), (ZF, 28)),           # reserved bit 7
    (invept(1, 0x5000 | 1 | (3 << 3)), (ZF, 28)),      # memory type 1
    (invept(1, 0x5000 | 6 | (2 << 3)), (ZF, 28)),      # walk length 3
    (invept(0, GOOD_EPTP), (ZF, 28)),
    (invept(3, GOOD_EPTP), (ZF, 28)),
    (invvpid(0, 5, 0x1000), (0, 0)),
    (invvpid(1, 5, 0), (0, 0)),
    (invvpid(2, 0, 0), (0, 0)),
    (invvpid(3, 5, 0), (0, 0)),
    (invvpid(0, 0, 0x1000), (ZF, 28)),                 # VPID 0
    (invvpid(1, 0, 0), (ZF, 28)),
    (invvpid(0, 5, 1 << 63), (ZF, 28)),                # not canonical
    (invvpid(2, 1 << 16, 0), (ZF, 28)),                # bits 63:16 of the descriptor
    (invvpid(4, 5, 0), (ZF, 28)),
])
def test_invept_invvpid_outcomes(code, outcome):
    assert flags_after(code) == outcome


def test_invept_without_current_vmcs_succeeds_or_fails_invalid():
    # INVEPT needs no current VMCS; its failures are VMfailInvalid without one.
    pro = PROLOGUE.replace("    vmptrld [0x8008]\n", "")
    assert flags_after(invept(2, 0), pro) == (0, None)
    assert flags_after(invept(3, 0), pro) == (CF, None)


@pytest.mark.parametrize("code,reason", [("invept rdx, [rbx + 0x20]", R.INVEPT),
                                         ("invvpid rsi, [rbx + 0x20]", R.INVVPID)])
def test_invept_invvpid_in_guest_exit(code, reason):
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(code + "\nhlt", bits=64, org=0x1000))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    vm.vcpu.rbx = 0x2000
    seen = []
    vm.default(lambda v, ex: seen.append(ex) or vtx.STOP)
    vm.run(max_instructions=10)
    ex = seen[0]
    reg2 = 2 if "rdx" in code else 6
    assert ex.reason == reason and ex.qualification == 0x20
    assert ex.instruction_info == (2 << 7) | (3 << 15) | (1 << 22) | (3 << 23) | (reg2 << 28)
    assert ex.instruction_length == len(vtx.asm(code, bits=64))


def test_invept_invvpid_from_python():
    hw = python_root(vmxe=True)
    cpu = hw.cpu
    cpu.vmxon(VMXON_REGION)
    cpu.invept(2)
    with pytest.raises(vtx.VmFail) as e:
        cpu.invept(7)
    assert e.value.number == 0
    cpu.vmptrld(VMCS_A)
    cpu.invept(1, GOOD_EPTP)
    cpu.invvpid(2)
    with pytest.raises(vtx.VmFail) as e:
        cpu.invvpid(1, vpid=0)
    assert (e.value.number, e.value.name) == (28, "INVALID_OPERAND_TO_INVEPT_INVVPID")


def test_vmcs_as_a_mapping_on_both_kinds_of_vcpu():
    hw = python_root(vmxe=True)
    cpu = hw.cpu
    cpu.vmxon(VMXON_REGION)
    cpu.vmptrld(VMCS_A)
    cpu.vmcs[F.GUEST_RIP] = 0x4321
    assert cpu.vmcs["GUEST_RIP"] == 0x4321 == cpu.vmread(F.GUEST_RIP)
    with pytest.raises(vtx.VmFail) as e:
        cpu.vmcs[F.VMREAD_BITMAP_ADDRESS] = 1
    assert e.value.number == 12
    vm = vtx.VM(memory=1 << 20)
    v = vm.add_vcpu()
    v.vmcs[F.GUEST_RSP] = 0x7000
    assert v.rsp == 0x7000 and v.vmcs[F.GUEST_RSP] == 0x7000
    with pytest.raises(TypeError):
        iter(v.vmcs)


def test_getsec_exits_in_a_guest_and_is_ud_outside():
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("getsec\nhlt", bits=64, org=0x1000))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    seen = []
    vm.default(lambda v, ex: seen.append(ex) or vtx.STOP)
    vm.run(max_instructions=10)
    assert (seen[0].reason, seen[0].instruction_length, seen[0].qualification) == (R.GETSEC, 2, 0)
    hw = vtx.BareMetal(memory=1 << 20)
    hw.load(0x1000, vtx.asm("getsec\nhlt", bits=64, org=0x1000))
    hw.setup_long_mode(entry=0x1000)
    assert hw.run(max_instructions=10).stop == "shutdown"       # #UD with no IDT


# --- VMFUNC: EPTP switching -------------------------------------------------------

def vmfunc_vm(code, enable=True):
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(code + "\nhlt", bits=64, org=0x1000))
    v = vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    if enable:
        eptp = v.vmread(F.EPT_POINTER)
        # The EPTP list (in guest RAM here, for brevity: any physical page
        # will do): entry 1 a valid EPTP (the current one), entry 3 a bad
        # one (walk length 3), the rest 0 (not valid).
        lst = 0x8000
        vm.write(lst + 8, eptp.to_bytes(8, "little"))
        vm.write(lst + 24, ((eptp & ~0x38) | (2 << 3)).to_bytes(8, "little"))
        v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS,
                  v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) | vtx.ProcBased2.ENABLE_VM_FUNCTIONS)
        v.vmwrite(F.VM_FUNCTION_CONTROLS, 1)
        v.vmwrite(F.EPTP_LIST_ADDRESS, lst)
    seen = []
    vm.default(lambda vcpu, ex: seen.append(ex) or vtx.STOP)
    return vm, seen


def test_vmfunc_eptp_switching_switches_without_exit():
    # Entry 2: a second EPT root (a copy of the PML4 page, so the same
    # mappings): after VMFUNC the EPT pointer is that one, and the guest
    # goes on to its HLT.
    vm, seen = vmfunc_vm("xor eax, eax\nmov ecx, 2\nvmfunc")
    v = vm.vcpu
    root = v.vmread(F.EPT_POINTER) & ~0xFFF
    vm.write(0x9000, vm._machine.priv_bytes(root - vtx._core.PRIV_BASE, 4096))
    vm.write(0x8000 + 16, (0x9000 | 6 | (3 << 3)).to_bytes(8, "little"))
    vm.run(max_instructions=20)
    assert seen[0].reason == R.HLT and v.rip == 0x1000 + len(vtx.asm("xor eax, eax\nmov ecx, 2\nvmfunc", bits=64))
    assert v.vmread(F.EPT_POINTER) == 0x9000 | 6 | (3 << 3)


@pytest.mark.parametrize("eax,ecx", [(0, 0), (0, 3), (0, 512), (1, 1), (64, 1)])
def test_vmfunc_failures_exit_with_reason_59(eax, ecx):
    code = f"mov eax, {eax}\nmov ecx, {ecx}\nvmfunc"
    vm, seen = vmfunc_vm(code)
    vm.run(max_instructions=20)
    ex = seen[0]
    assert (ex.reason, ex.instruction_length, ex.qualification) == (R.VMFUNC, 3, 0)
    assert ex.guest_rip == 0x1000 + len(vtx.asm(code, bits=64)) - 3


def test_vmfunc_without_the_control_is_ud():
    vm, seen = vmfunc_vm("xor eax, eax\nvmfunc", enable=False)
    vm.run(max_instructions=20)
    assert seen[0].reason == R.EXCEPTION_OR_NMI and seen[0].interruption_info & 0xFF == 6
