"""Tests of the VMX tables in vtx/spec/ and the files generated from them.

These need only the pure-Python package vtx.spec, not the compiled core: if
``import vtx`` fails (the extension is not built), vtx/spec is loaded straight
from its directory.
"""

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _load_spec():
    try:
        return importlib.import_module("vtx.spec")
    except Exception:  # vtx/__init__.py needs the compiled core, or vtx is not on the path
        pass
    # vtx/__init__.py could not be imported: load vtx/spec as a standalone package.
    name = "_vtx_spec_standalone"
    if name in sys.modules:
        return sys.modules[name]
    spec_dir = os.path.join(REPO, "vtx", "spec")
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(spec_dir, "__init__.py"), submodule_search_locations=[spec_dir]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


S = _load_spec()
caps = importlib.import_module(S.__name__ + ".capabilities")
controls = importlib.import_module(S.__name__ + ".controls")
generate = importlib.import_module(S.__name__ + ".generate")
vf = importlib.import_module(S.__name__ + ".vmcs_fields")


# ---------------------------------------------------------------------------
# (a) the generated files are up to date, and generation is deterministic
# ---------------------------------------------------------------------------

def test_generated_files_are_up_to_date():
    stale = generate.stale_files(REPO)
    assert stale == [], f"stale generated files {stale}: run python -m vtx.spec.generate"


def test_generator_is_deterministic():
    assert generate.render_all() == generate.render_all()


def test_check_mode_reports_stale_files(tmp_path, capsys):
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for rel in generate.render_all():
        assert f"stale: {rel}" in out
    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.main(["--check", "--root", str(tmp_path)]) == 0


def test_generated_files_carry_the_marker():
    for rel, text in generate.render_all().items():
        assert generate.MARKER in text.splitlines()[0] or generate.MARKER in text.splitlines()[1], rel


def test_pxi_declares_every_macro_of_the_header():
    outputs = generate.render_all()
    header = outputs[generate.HEADER_PATH]
    pxi = outputs[generate.PXI_PATH]
    assert pxi.startswith("from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t\n")
    assert 'cdef extern from "spec_gen.h" nogil:' in pxi
    declared = {line.split()[-1].split("[")[0] for line in pxi.splitlines() if line.strip().startswith("const ")}
    defined = {line.split()[1] for line in header.splitlines() if line.startswith("#define ")}
    defined.discard("VTX_SPEC_GEN_H")
    # the constant sets of checks (CKM_*) and the families' arrays (CKS_*)
    defined |= {line.split()[3].split("[")[0] for line in header.splitlines() if line.startswith("static const ")}
    assert declared == defined
    assert "void vmcs_check_mark(ck_mask_t* d, int off, uint64_t delta)" in pxi
    for fn in ("vmcs_field_offset", "vmcs_field_width", "vmcs_field_is_readonly"):
        assert f"int {fn}(uint32_t enc)" in pxi
        assert f"static inline int {fn}(uint32_t enc)" in header
    assert "const uint64_t VMX_CAP_BASIC" in pxi
    assert "const uint32_t VMCS_GUEST_RIP" in pxi


def test_rst_files_start_with_a_title():
    for rel, text in generate.render_all().items():
        if not rel.endswith(".rst"):
            continue
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith("..")]
        assert set(lines[1]) == {"="} and len(lines[1]) == len(lines[0]), rel


# ---------------------------------------------------------------------------
# (b) width, type and index derived from the encoding bits
# ---------------------------------------------------------------------------

def test_guest_rip_is_natural_width_guest_state_index_15():
    enc = S.VmcsField.GUEST_RIP
    assert enc == 0x681E
    info = S.field_info(enc)
    assert info.width == S.FieldWidth.NATURAL
    assert info.type == S.FieldType.GUEST
    assert info.index == 15
    assert S.field_width(enc) == 64
    assert S.field_size(enc) == 8
    assert not S.field_is_readonly(enc)


def test_exit_qualification_is_read_only():
    enc = S.VmcsField.EXIT_QUALIFICATION
    assert enc == 0x6400
    assert S.field_type(enc) == S.FieldType.READ_ONLY
    assert S.field_is_readonly(enc)
    assert S.field_width(enc) == 64


def test_io_bitmap_a_is_64_bit_control_with_high_access():
    enc = S.VmcsField.IO_BITMAP_A
    assert enc == 0x2000
    assert S.field_info(enc).width == S.FieldWidth.BITS64
    assert S.field_type(enc) == S.FieldType.CONTROL
    assert S.field_index(enc) == 0
    assert S.is_supported(0x2001)
    assert S.field_info(0x2001).name == "IO_BITMAP_A"
    assert S.field_width(0x2001) == 32
    assert S.field_size(0x2001) == 4
    assert S.field_offset(0x2001) == S.field_offset(0x2000) + 4


@pytest.mark.parametrize("enc", [0x681F, 0x4001, 0x0001, 0x4C01, 0x482C, 0x1000, 0x8000, 0x12345678, -2])
def test_unsupported_encodings(enc):
    assert not S.is_supported(enc)
    with pytest.raises(ValueError):
        S.field_offset(enc)


def test_derived_bits_match_the_encoding_for_every_field():
    for name, enc, _ in S.FIELDS:
        info = S.field_by_name(name)
        assert info.encoding == enc
        assert info.index == (enc >> 1) & 0x1FF
        assert info.type == (enc >> 10) & 3
        assert info.width == (enc >> 13) & 3
        assert enc & 1 == 0 and enc & ~0x6FFE == 0
        assert info.size == {0: 2, 1: 8, 2: 4, 3: 8}[info.width]
        assert info.readonly == (info.type == 1)


def test_field_by_name_accepts_prefix_and_case():
    assert S.field_by_name("vmcs_guest_rip") == S.field_by_name("GUEST_RIP")
    with pytest.raises(KeyError):
        S.field_by_name("NO_SUCH_FIELD")


# Names and encodings the core relies on (SDM Appendix B).
REQUIRED_FIELDS = {
    "VIRTUAL_PROCESSOR_ID": 0x0000, "POSTED_INTERRUPT_NOTIFICATION_VECTOR": 0x0002, "EPTP_INDEX": 0x0004,
    "GUEST_ES_SELECTOR": 0x0800, "GUEST_CS_SELECTOR": 0x0802, "GUEST_SS_SELECTOR": 0x0804,
    "GUEST_DS_SELECTOR": 0x0806, "GUEST_FS_SELECTOR": 0x0808, "GUEST_GS_SELECTOR": 0x080A,
    "GUEST_LDTR_SELECTOR": 0x080C, "GUEST_TR_SELECTOR": 0x080E, "GUEST_INTERRUPT_STATUS": 0x0810,
    "PML_INDEX": 0x0812, "HOST_ES_SELECTOR": 0x0C00, "HOST_CS_SELECTOR": 0x0C02, "HOST_SS_SELECTOR": 0x0C04,
    "HOST_DS_SELECTOR": 0x0C06, "HOST_FS_SELECTOR": 0x0C08, "HOST_GS_SELECTOR": 0x0C0A,
    "HOST_TR_SELECTOR": 0x0C0C,
    "IO_BITMAP_A": 0x2000, "IO_BITMAP_B": 0x2002, "MSR_BITMAP": 0x2004, "VM_EXIT_MSR_STORE_ADDRESS": 0x2006,
    "VM_EXIT_MSR_LOAD_ADDRESS": 0x2008, "VM_ENTRY_MSR_LOAD_ADDRESS": 0x200A, "EXECUTIVE_VMCS_POINTER": 0x200C,
    "PML_ADDRESS": 0x200E, "TSC_OFFSET": 0x2010, "VIRTUAL_APIC_ADDRESS": 0x2012, "APIC_ACCESS_ADDRESS": 0x2014,
    "POSTED_INTERRUPT_DESCRIPTOR_ADDRESS": 0x2016, "VM_FUNCTION_CONTROLS": 0x2018, "EPT_POINTER": 0x201A,
    "EOI_EXIT_BITMAP_0": 0x201C, "EOI_EXIT_BITMAP_1": 0x201E, "EOI_EXIT_BITMAP_2": 0x2020,
    "EOI_EXIT_BITMAP_3": 0x2022, "EPTP_LIST_ADDRESS": 0x2024, "VMREAD_BITMAP_ADDRESS": 0x2026,
    "VMWRITE_BITMAP_ADDRESS": 0x2028, "VIRTUALIZATION_EXCEPTION_INFORMATION_ADDRESS": 0x202A,
    "XSS_EXITING_BITMAP": 0x202C, "ENCLS_EXITING_BITMAP": 0x202E, "SUB_PAGE_PERMISSION_TABLE_POINTER": 0x2030,
    "TSC_MULTIPLIER": 0x2032, "TERTIARY_PROC_BASED_CONTROLS": 0x2034,
    "GUEST_PHYSICAL_ADDRESS": 0x2400,
    "VMCS_LINK_POINTER": 0x2800, "GUEST_IA32_DEBUGCTL": 0x2802, "GUEST_IA32_PAT": 0x2804,
    "GUEST_IA32_EFER": 0x2806, "GUEST_IA32_PERF_GLOBAL_CTRL": 0x2808, "GUEST_PDPTE0": 0x280A,
    "GUEST_PDPTE1": 0x280C, "GUEST_PDPTE2": 0x280E, "GUEST_PDPTE3": 0x2810, "GUEST_IA32_BNDCFGS": 0x2812,
    "HOST_IA32_PAT": 0x2C00, "HOST_IA32_EFER": 0x2C02, "HOST_IA32_PERF_GLOBAL_CTRL": 0x2C04,
    "PIN_BASED_CONTROLS": 0x4000, "PRIMARY_PROC_BASED_CONTROLS": 0x4002, "EXCEPTION_BITMAP": 0x4004,
    "PAGE_FAULT_ERROR_CODE_MASK": 0x4006, "PAGE_FAULT_ERROR_CODE_MATCH": 0x4008, "CR3_TARGET_COUNT": 0x400A,
    "VM_EXIT_CONTROLS": 0x400C, "VM_EXIT_MSR_STORE_COUNT": 0x400E, "VM_EXIT_MSR_LOAD_COUNT": 0x4010,
    "VM_ENTRY_CONTROLS": 0x4012, "VM_ENTRY_MSR_LOAD_COUNT": 0x4014, "VM_ENTRY_INTERRUPTION_INFO": 0x4016,
    "VM_ENTRY_EXCEPTION_ERROR_CODE": 0x4018, "VM_ENTRY_INSTRUCTION_LENGTH": 0x401A, "TPR_THRESHOLD": 0x401C,
    "SECONDARY_PROC_BASED_CONTROLS": 0x401E, "PLE_GAP": 0x4020, "PLE_WINDOW": 0x4022,
    "VM_INSTRUCTION_ERROR": 0x4400, "EXIT_REASON": 0x4402, "VM_EXIT_INTERRUPTION_INFO": 0x4404,
    "VM_EXIT_INTERRUPTION_ERROR_CODE": 0x4406, "IDT_VECTORING_INFO": 0x4408, "IDT_VECTORING_ERROR_CODE": 0x440A,
    "VM_EXIT_INSTRUCTION_LENGTH": 0x440C, "VM_EXIT_INSTRUCTION_INFO": 0x440E,
    "GUEST_ES_LIMIT": 0x4800, "GUEST_TR_LIMIT": 0x480E, "GUEST_GDTR_LIMIT": 0x4810, "GUEST_IDTR_LIMIT": 0x4812,
    "GUEST_ES_ACCESS_RIGHTS": 0x4814, "GUEST_TR_ACCESS_RIGHTS": 0x4822, "GUEST_INTERRUPTIBILITY_STATE": 0x4824,
    "GUEST_ACTIVITY_STATE": 0x4826, "GUEST_SMBASE": 0x4828, "GUEST_IA32_SYSENTER_CS": 0x482A,
    "VMX_PREEMPTION_TIMER_VALUE": 0x482E, "HOST_IA32_SYSENTER_CS": 0x4C00,
    "CR0_GUEST_HOST_MASK": 0x6000, "CR4_GUEST_HOST_MASK": 0x6002, "CR0_READ_SHADOW": 0x6004,
    "CR4_READ_SHADOW": 0x6006, "CR3_TARGET_VALUE_0": 0x6008, "CR3_TARGET_VALUE_1": 0x600A,
    "CR3_TARGET_VALUE_2": 0x600C, "CR3_TARGET_VALUE_3": 0x600E,
    "EXIT_QUALIFICATION": 0x6400, "IO_RCX": 0x6402, "IO_RSI": 0x6404, "IO_RDI": 0x6406, "IO_RIP": 0x6408,
    "GUEST_LINEAR_ADDRESS": 0x640A,
    "GUEST_CR0": 0x6800, "GUEST_CR3": 0x6802, "GUEST_CR4": 0x6804, "GUEST_ES_BASE": 0x6806,
    "GUEST_TR_BASE": 0x6814, "GUEST_GDTR_BASE": 0x6816, "GUEST_IDTR_BASE": 0x6818, "GUEST_DR7": 0x681A,
    "GUEST_RSP": 0x681C, "GUEST_RIP": 0x681E, "GUEST_RFLAGS": 0x6820, "GUEST_PENDING_DEBUG_EXCEPTIONS": 0x6822,
    "GUEST_IA32_SYSENTER_ESP": 0x6824, "GUEST_IA32_SYSENTER_EIP": 0x6826, "GUEST_IA32_S_CET": 0x6828,
    "HOST_CR0": 0x6C00, "HOST_CR3": 0x6C02, "HOST_CR4": 0x6C04, "HOST_FS_BASE": 0x6C06, "HOST_GS_BASE": 0x6C08,
    "HOST_TR_BASE": 0x6C0A, "HOST_GDTR_BASE": 0x6C0C, "HOST_IDTR_BASE": 0x6C0E, "HOST_IA32_SYSENTER_ESP": 0x6C10,
    "HOST_IA32_SYSENTER_EIP": 0x6C12, "HOST_RSP": 0x6C14, "HOST_RIP": 0x6C16,
}


def test_required_field_names_and_encodings():
    for name, enc in REQUIRED_FIELDS.items():
        assert S.VmcsField[name] == enc, name


# ---------------------------------------------------------------------------
# (c) known numbers
# ---------------------------------------------------------------------------

EXPECTED_EXIT_REASONS = dict(
    EXCEPTION_OR_NMI=0, EXTERNAL_INTERRUPT=1, TRIPLE_FAULT=2, INIT_SIGNAL=3, STARTUP_IPI=4, IO_SMI=5,
    OTHER_SMI=6, INTERRUPT_WINDOW=7, NMI_WINDOW=8, TASK_SWITCH=9, CPUID=10, GETSEC=11, HLT=12, INVD=13,
    INVLPG=14, RDPMC=15, RDTSC=16, RSM=17, VMCALL=18, VMCLEAR=19, VMLAUNCH=20, VMPTRLD=21, VMPTRST=22,
    VMREAD=23, VMRESUME=24, VMWRITE=25, VMXOFF=26, VMXON=27, CONTROL_REGISTER_ACCESS=28, MOV_DR=29,
    IO_INSTRUCTION=30, RDMSR=31, WRMSR=32, ENTRY_FAILURE_INVALID_GUEST_STATE=33, ENTRY_FAILURE_MSR_LOADING=34,
    MWAIT=36, MONITOR_TRAP_FLAG=37, MONITOR=39, PAUSE=40, ENTRY_FAILURE_MACHINE_CHECK=41,
    TPR_BELOW_THRESHOLD=43, APIC_ACCESS=44, VIRTUALIZED_EOI=45, GDTR_IDTR_ACCESS=46, LDTR_TR_ACCESS=47,
    EPT_VIOLATION=48, EPT_MISCONFIGURATION=49, INVEPT=50, RDTSCP=51, VMX_PREEMPTION_TIMER_EXPIRED=52,
    INVVPID=53, WBINVD=54, XSETBV=55, APIC_WRITE=56, RDRAND=57, INVPCID=58, VMFUNC=59, ENCLS=60, RDSEED=61,
    PAGE_MODIFICATION_LOG_FULL=62, XSAVES=63, XRSTORS=64, PCONFIG=65, SPP_RELATED_EVENT=66, UMWAIT=67,
    TPAUSE=68, LOADIWKEY=69, ENCLV=70, ENQCMD_PASID_TRANSLATION_FAILURE=72,
    ENQCMDS_PASID_TRANSLATION_FAILURE=73, BUS_LOCK=74, INSTRUCTION_TIMEOUT=75, SEAMCALL=76, TDCALL=77,
    RDMSRLIST=78, WRMSRLIST=79,
)


def test_exit_reasons():
    assert {m.name: m.value for m in S.ExitReason} == EXPECTED_EXIT_REASONS
    assert S.ExitReason.IO_INSTRUCTION == 30
    assert S.ExitReasonFlag.ENTRY_FAILURE == 1 << 31


EXPECTED_VM_INSTRUCTION_ERRORS = dict(
    VMCALL_IN_VMX_ROOT=1, VMCLEAR_INVALID_ADDRESS=2, VMCLEAR_VMXON_POINTER=3, VMLAUNCH_NONCLEAR_VMCS=4,
    VMRESUME_NONLAUNCHED_VMCS=5, VMRESUME_AFTER_VMXOFF=6, ENTRY_INVALID_CONTROL_FIELDS=7,
    ENTRY_INVALID_HOST_STATE=8, VMPTRLD_INVALID_ADDRESS=9, VMPTRLD_VMXON_POINTER=10,
    VMPTRLD_INCORRECT_REVISION=11, UNSUPPORTED_VMCS_COMPONENT=12, VMWRITE_READ_ONLY_COMPONENT=13,
    VMXON_IN_VMX_ROOT=15, ENTRY_INVALID_EXECUTIVE_VMCS_POINTER=16, ENTRY_NONLAUNCHED_EXECUTIVE_VMCS=17,
    ENTRY_EXECUTIVE_VMCS_NOT_VMXON_POINTER=18, VMCALL_NONCLEAR_VMCS=19, VMCALL_INVALID_EXIT_CONTROLS=20,
    VMCALL_INCORRECT_MSEG_REVISION=22, VMXOFF_UNDER_DUAL_MONITOR=23, VMCALL_INVALID_SMM_MONITOR_FEATURES=24,
    ENTRY_INVALID_EXECUTIVE_CONTROLS=25, ENTRY_EVENTS_BLOCKED_BY_MOV_SS=26, INVALID_OPERAND_TO_INVEPT_INVVPID=28,
)


def test_vm_instruction_errors():
    assert {m.name: m.value for m in S.VmInstructionError} == EXPECTED_VM_INSTRUCTION_ERRORS


def _bits(flag_cls):
    return {m.name: m.value.bit_length() - 1 for m in flag_cls}


def test_control_bits():
    proc = _bits(S.ProcBased)
    assert proc == dict(
        INTERRUPT_WINDOW_EXITING=2, USE_TSC_OFFSETTING=3, HLT_EXITING=7, INVLPG_EXITING=9, MWAIT_EXITING=10,
        RDPMC_EXITING=11, RDTSC_EXITING=12, CR3_LOAD_EXITING=15, CR3_STORE_EXITING=16,
        ACTIVATE_TERTIARY_CONTROLS=17, CR8_LOAD_EXITING=19, CR8_STORE_EXITING=20, USE_TPR_SHADOW=21,
        NMI_WINDOW_EXITING=22, MOV_DR_EXITING=23, UNCONDITIONAL_IO_EXITING=24, USE_IO_BITMAPS=25,
        MONITOR_TRAP_FLAG=27, USE_MSR_BITMAPS=28, MONITOR_EXITING=29, PAUSE_EXITING=30,
        ACTIVATE_SECONDARY_CONTROLS=31,
    )
    assert _bits(S.PinBased) == dict(EXTERNAL_INTERRUPT_EXITING=0, NMI_EXITING=3, VIRTUAL_NMIS=5,
                                     ACTIVATE_VMX_PREEMPTION_TIMER=6, PROCESS_POSTED_INTERRUPTS=7)
    proc2 = _bits(S.ProcBased2)
    assert proc2["ENABLE_EPT"] == 1 and proc2["ENABLE_VPID"] == 5 and proc2["UNRESTRICTED_GUEST"] == 7
    assert proc2["VIRTUALIZE_APIC_ACCESSES"] == 0 and proc2["DESCRIPTOR_TABLE_EXITING"] == 2
    assert proc2["ENABLE_RDTSCP"] == 3 and proc2["WBINVD_EXITING"] == 6 and proc2["ENABLE_XSAVES_XRSTORS"] == 20
    exit_ = _bits(S.ExitControls)
    for name, bit in dict(SAVE_DEBUG_CONTROLS=2, HOST_ADDRESS_SPACE_SIZE=9, LOAD_IA32_PERF_GLOBAL_CTRL=12,
                          ACKNOWLEDGE_INTERRUPT_ON_EXIT=15, SAVE_IA32_PAT=18, LOAD_IA32_PAT=19, SAVE_IA32_EFER=20,
                          LOAD_IA32_EFER=21, SAVE_VMX_PREEMPTION_TIMER=22).items():
        assert exit_[name] == bit, name
    entry = _bits(S.EntryControls)
    for name, bit in dict(LOAD_DEBUG_CONTROLS=2, IA32E_MODE_GUEST=9, ENTRY_TO_SMM=10, DEACTIVATE_DUAL_MONITOR=11,
                          LOAD_IA32_PERF_GLOBAL_CTRL=13, LOAD_IA32_PAT=14, LOAD_IA32_EFER=15).items():
        assert entry[name] == bit, name


def test_default1_classes():
    assert S.PinBased.DEFAULT1 == 0x16
    assert S.ProcBased.DEFAULT1 == 0x0401E172  # bits 1, 4-6, 8, 13-16, 26
    assert S.ExitControls.DEFAULT1 == 0x00036DFF  # bits 0-8, 10, 11, 13, 14, 16, 17
    assert S.EntryControls.DEFAULT1 == 0x000011FF  # bits 0-8, 12
    assert S.ProcBased2.DEFAULT1 == 0


def test_control_header_macros():
    header = generate.render_all()[generate.HEADER_PATH]
    assert "#define PROC_HLT_EXITING" in header and "(1u << 7)" in header
    assert "#define PIN_DEFAULT1" in header
    assert "#define EXIT_REASON_IO_INSTRUCTION" in header
    assert "#define VMXERR_ENTRY_INVALID_CONTROL_FIELDS" in header


def test_msrs():
    assert S.Msr.IA32_EFER == 0xC0000080
    assert S.Msr.IA32_FEATURE_CONTROL == 0x3A
    assert S.Msr.IA32_TSC_AUX == 0xC0000103
    vmx = [m for m in S.Msr if m.name.startswith("IA32_VMX_")]
    assert [m.value for m in vmx] == list(range(0x480, 0x494))
    assert S.Msr.IA32_VMX_VMFUNC == 0x491
    assert S.Msr.IA32_VMX_TRUE_PROCBASED_CTLS == 0x48E


# ---------------------------------------------------------------------------
# (d) layout and uniqueness
# ---------------------------------------------------------------------------

def test_names_and_encodings_unique():
    names = [n for n, _, _ in S.FIELDS]
    encs = [e for _, e, _ in S.FIELDS]
    assert len(set(names)) == len(names)
    assert len(set(encs)) == len(encs)


def test_no_two_fields_share_bytes_and_layout_fits():
    spans = sorted((S.field_offset(e), S.field_offset(e) + S.field_size(e), n) for n, e, _ in S.FIELDS)
    assert spans[0][0] >= 16  # after revision id, abort indicator, model bytes
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        assert end <= start, (a, b)
    assert spans[-1][1] <= S.VMCS_REGION_SIZE == 4096
    assert S.LAYOUT.end <= 4096


def test_offsets_aligned_and_derived_from_index():
    for name, enc, _ in S.FIELDS:
        info = S.field_by_name(name)
        assert info.offset % info.size == 0, name
        base = next(g[2] for g in S.LAYOUT.groups if g[0] == info.width and g[1] == info.type)
        assert info.offset == base + info.index * info.size


def test_group_order_in_region():
    order = [(g[0], g[1]) for g in S.LAYOUT.groups]
    rank_w = {S.FieldWidth.BITS16: 0, S.FieldWidth.BITS32: 1, S.FieldWidth.BITS64: 2, S.FieldWidth.NATURAL: 3}
    assert order == sorted(order, key=lambda wt: (rank_w[wt[0]], int(wt[1])))
    bases = [g[2] for g in S.LAYOUT.groups]
    assert bases == sorted(bases) and bases[0] == 16


def test_header_region_constants():
    assert (S.OFF_REVISION, S.OFF_ABORT, S.OFF_LAUNCH_STATE) == (0, 4, 8)


# ---------------------------------------------------------------------------
# (e) capability values
# ---------------------------------------------------------------------------

CONTROL_MSRS = {
    "PIN": ("PINBASED_CTLS", "TRUE_PINBASED_CTLS"),
    "PROC": ("PROCBASED_CTLS", "TRUE_PROCBASED_CTLS"),
    "PROC2": ("PROCBASED_CTLS2", None),
    "EXIT_CTL": ("EXIT_CTLS", "TRUE_EXIT_CTLS"),
    "ENTRY_CTL": ("ENTRY_CTLS", "TRUE_ENTRY_CTLS"),
}


@pytest.mark.parametrize("prefix", sorted(CONTROL_MSRS))
def test_control_capabilities(prefix):
    group = controls.group_by_prefix(prefix)
    plain_name, true_name = CONTROL_MSRS[prefix]
    plain = getattr(caps, plain_name)
    lo, hi = plain & 0xFFFFFFFF, plain >> 32
    assert lo & ~hi == 0, "allowed-0 bits must be allowed-1 bits"
    assert group.default1_mask & ~lo == 0, "default1 bits must be in allowed-0 of the plain MSR"
    for name in caps.SUPPORTED_CONTROLS.get(prefix, ()):
        assert hi & group.mask(name), name
        assert not lo & group.mask(name) or bit_is_default1(group, name), name
    if true_name:
        true = getattr(caps, true_name)
        tlo, thi = true & 0xFFFFFFFF, true >> 32
        assert tlo & ~thi == 0
        assert thi == hi
        assert tlo & ~lo == 0, "TRUE allowed-0 is a subset of the plain allowed-0"


def bit_is_default1(group, name):
    return bool(group.default1_mask & group.mask(name))


def test_model_controls():
    assert caps.PINBASED_CTLS >> 32 == (0x16 | S.PinBased.EXTERNAL_INTERRUPT_EXITING | S.PinBased.NMI_EXITING
                                        | S.PinBased.VIRTUAL_NMIS | S.PinBased.ACTIVATE_VMX_PREEMPTION_TIMER
                                        | S.PinBased.PROCESS_POSTED_INTERRUPTS)
    assert caps.PROCBASED_CTLS2 == (S.ProcBased2.VIRTUALIZE_APIC_ACCESSES | S.ProcBased2.VIRTUALIZE_X2APIC_MODE
                                    | S.ProcBased2.APIC_REGISTER_VIRTUALIZATION
                                    | S.ProcBased2.VIRTUAL_INTERRUPT_DELIVERY | S.ProcBased2.ENABLE_EPT | S.ProcBased2.DESCRIPTOR_TABLE_EXITING
                                    | S.ProcBased2.ENABLE_RDTSCP | S.ProcBased2.ENABLE_VPID
                                    | S.ProcBased2.WBINVD_EXITING | S.ProcBased2.UNRESTRICTED_GUEST
                                    | S.ProcBased2.PAUSE_LOOP_EXITING | S.ProcBased2.ENABLE_INVPCID
                                    | S.ProcBased2.RDRAND_EXITING | S.ProcBased2.RDSEED_EXITING
                                    | S.ProcBased2.ENABLE_VM_FUNCTIONS | S.ProcBased2.ENABLE_PML
                                    | S.ProcBased2.ENABLE_XSAVES_XRSTORS
                                    | S.ProcBased2.ENABLE_USER_WAIT_AND_PAUSE
                                    | S.ProcBased2.SUB_PAGE_WRITE_PERMISSIONS
                                    | S.ProcBased2.VMM_BUS_LOCK_DETECTION) << 32
    for name in ("MWAIT_EXITING", "RDPMC_EXITING", "MOV_DR_EXITING", "MONITOR_EXITING", "PAUSE_EXITING"):
        assert (caps.PROCBASED_CTLS >> 32) & S.ProcBased[name]
    true_lo = caps.TRUE_PROCBASED_CTLS & 0xFFFFFFFF
    assert not true_lo & (S.ProcBased.CR3_LOAD_EXITING | S.ProcBased.CR3_STORE_EXITING)
    assert (caps.PROCBASED_CTLS >> 32) & S.ProcBased.INTERRUPT_WINDOW_EXITING
    assert (caps.PROCBASED_CTLS >> 32) & S.ProcBased.NMI_WINDOW_EXITING
    assert (caps.PROCBASED_CTLS >> 32) & S.ProcBased.MONITOR_TRAP_FLAG
    assert (caps.PROCBASED_CTLS >> 32) & S.ProcBased.USE_TPR_SHADOW
    assert (caps.PROCBASED_CTLS >> 32) & S.ProcBased.CR8_LOAD_EXITING
    assert (caps.PROCBASED_CTLS >> 32) & S.ProcBased.CR8_STORE_EXITING
    for name in ("VIRTUALIZE_APIC_ACCESSES", "VIRTUALIZE_X2APIC_MODE", "APIC_REGISTER_VIRTUALIZATION",
                 "VIRTUAL_INTERRUPT_DELIVERY"):
        assert (caps.PROCBASED_CTLS2 >> 32) & S.ProcBased2[name]
    assert (caps.PINBASED_CTLS >> 32) & S.PinBased.PROCESS_POSTED_INTERRUPTS
    assert (caps.ENTRY_CTLS >> 32) & S.EntryControls.IA32E_MODE_GUEST
    assert not (caps.ENTRY_CTLS >> 32) & S.EntryControls.ENTRY_TO_SMM


def test_vmx_basic():
    b = caps.BASIC
    assert b & 0x7FFFFFFF == caps.VMCS_REVISION_ID == 1
    assert not b & (1 << 31)
    assert (b >> 32) & 0x1FFF == 4096
    assert (b >> 50) & 0xF == 6
    assert b & (1 << 54) and b & (1 << 55)
    assert not b & (1 << 48)


def test_vmx_misc_fixed_and_ept():
    m = caps.MISC
    assert m & 0x1F == 5
    assert m & (1 << 5)
    assert (m >> 6) & 7 == 0b111  # HLT, shutdown and wait-for-SIPI (bits 6 to 8)
    assert (m >> 16) & 0x1FF == 4
    assert (m >> 25) & 7 == 0
    assert m & (1 << 29)
    assert m >> 32 == 0
    assert caps.CR0_FIXED0 == 0x80000021
    assert caps.CR0_FIXED1 == 0xFFFFFFFF
    assert caps.CR4_FIXED0 == 1 << 13
    assert caps.CR4_FIXED0 & ~caps.CR4_FIXED1 == 0
    assert caps.CR0_FIXED0 & ~caps.CR0_FIXED1 == 0
    # every CR4 bit the model implements (a CPU model reports those of its
    # features: tests/test_cpuid_model.py): no LA57, SMXE, PKE, CET
    assert caps.CR4_FIXED1 == 0x00372FFF
    e = caps.EPT_VPID_CAP
    assert not e & 1
    for bit in (6, 14, 16, 17, 20, 21, 25, 26, 32, 40, 41, 42, 43):
        assert e & (1 << bit), bit
    assert caps.MAXPHYADDR == 39


def test_vmcs_enum():
    assert caps.VMCS_ENUM == max(S.field_index(e) for _, e, _ in S.FIELDS) << 1
    assert caps.VMCS_ENUM & ~0x3FE == 0


def test_msr_values_map():
    assert caps.MSR_VALUES[S.Msr.IA32_VMX_BASIC] == caps.BASIC
    assert caps.MSR_VALUES[S.Msr.IA32_VMX_TRUE_ENTRY_CTLS] == caps.TRUE_ENTRY_CTLS
    assert set(caps.MSR_VALUES) == set(range(0x480, 0x492))
    assert caps.MSR_VALUES[S.Msr.IA32_VMX_VMFUNC] == 1


# ---------------------------------------------------------------------------
# The C header compiles and agrees with the Python lookups (needs a C compiler).
# ---------------------------------------------------------------------------

_C_PROGRAM = r"""
#include <stdio.h>
#include "spec_gen.h"
int main(void)
{
    for (uint32_t e = 0; e < 0x10000u; e++) {
        int o = vmcs_field_offset(e), w = vmcs_field_width(e), r = vmcs_field_is_readonly(e);
        if (o >= 0 || w != 0 || r != 0)
            printf("%u %d %d %d\n", e, o, w, r);
    }
    printf("basic %llu\n", (unsigned long long)VMX_CAP_BASIC);
    return 0;
}
"""


def test_c_header_agrees_with_python(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    (tmp_path / "spec_gen.h").write_text(generate.render_all()[generate.HEADER_PATH])
    (tmp_path / "dump.c").write_text(_C_PROGRAM)
    exe = tmp_path / "dump"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path), str(tmp_path / "dump.c"),
                    "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    assert out[-1] == f"basic {caps.BASIC}"
    got = {}
    for line in out[:-1]:
        enc, off, width, ro = map(int, line.split())
        got[enc] = (off, width, ro)
    # The header's lookups answer for the fields of the model; every other
    # encoding of the SDM's table is "no such component" (-1, width 0).
    expected = {
        enc: (S.field_offset(enc), S.field_size(enc), int(S.field_is_readonly(enc))) if S.in_model(enc)
        else (-1, 0, int(S.field_is_readonly(enc)))
        for enc in range(0x10000)
        if S.is_supported(enc) and (S.in_model(enc) or S.field_is_readonly(enc))
    }
    assert got == expected
    assert sum(1 for v in expected.values() if v[0] >= 0) == \
        sum(2 if S.field_info(e).width == S.FieldWidth.BITS64 else 1 for n, e, _ in S.FIELDS if n in S.MODEL_FIELDS)
