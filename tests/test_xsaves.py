"""XSAVES, XRSTORS, IA32_XSS and the PASID state component
(vtx/core/insn/xsaves.pxi; SDM Vol. 1 13.11 and 13.12), and the VMX side:
"enable XSAVES/XRSTORS" and the XSS-exiting bitmap, with exits 63 and 64
(SDM Vol. 3C 25.6.2, 25.6.20, 26.1.3, 28.2.1, 28.2.5).  The images are
checked byte by byte, the faults in their priority order."""

import struct

import pytest

import vtx
from vtx import ExitReason as R, ProcBased as P, ProcBased2 as P2

from test_insn_system import run_real
from test_vmx_exits_insn import assert_exception, assert_insn_exit, first_exit, ii_mem, make_vm, run_to_hlt

OSFXSR, OSXSAVE = 1 << 9, 1 << 18
XSS_PASID = 1 << 10
COMPACT = 1 << 63
PASID = 0x80012345                  # valid bit 31, PASID 12345H
AREA = 0x3000                       # the XSAVE area, 64-byte aligned
PAD = 0xA5
ALL = "mov eax, -1\nmov edx, -1\n"  # EDX:EAX requests every component
MODE_BITS = {"real": 16, "protected": 32, "long": 64}


def xvm(src, mode="protected", proc2=P2.ENABLE_XSAVES_XRSTORS, xss=XSS_PASID, pasid=PASID, area=None,
        **kw):
    vm = make_vm(src, mode, proc2=proc2, **kw)
    v = vm.vcpu
    v.cr4 |= OSXSAVE | OSFXSR
    v.xcr0 = 3
    v.xss = xss
    v.pasid = pasid
    vm.write(AREA, bytes([PAD] * 704) if area is None else area)
    return vm


def header(vm):
    return struct.unpack("<QQ", vm.read(AREA + 512, 16))


def area(xstate_bv, xcomp_bv, pasid=PASID, legacy=None, rest=bytes(48)):
    leg = bytearray(512) if legacy is None else legacy
    struct.pack_into("<I", leg, 24, 0x1F80)
    return bytes(leg) + struct.pack("<QQ", xstate_bv, xcomp_bv) + rest + struct.pack("<Q", pasid)


# --- enumeration and the MSRs -----------------------------------------------------

def test_cpuid_leaf_0dh_enumerates_xsaves_and_pasid_state():
    v = xvm("nop").vcpu
    v.xss = 0
    # EAX: XSAVEOPT, XSAVEC, XSAVES; EBX: the compacted area for XCR0 | XSS;
    # ECX: the IA32_XSS bits (PASID, bit 10).
    assert v.model_cpuid(0xD, 1) == (0b1011, 576, XSS_PASID, 0)
    v.xss = XSS_PASID
    assert v.model_cpuid(0xD, 1) == (0b1011, 584, XSS_PASID, 0)
    # Component 10: 8 bytes, no standard-form offset, supervisor, not aligned.
    assert v.model_cpuid(0xD, 10) == (8, 0, 1, 0)
    assert v.model_cpuid(0xD, 9) == (0, 0, 0, 0)
    assert v.model_cpuid(0xD, 0)[0] == 3        # XCR0 never takes a supervisor bit


def test_skylake_preset_has_xsaves_without_pasid_state():
    vm = vtx.VM(memory=1 << 20, cpu="skylake")
    v = vm.add_vcpu()
    assert v.model_cpuid(0xD, 1)[0] & 8 and v.model_cpuid(0xD, 1)[2] == 0
    assert v.model_cpuid(0xD, 10) == (0, 0, 0, 0)


MSR_SRC = ("mov ecx, 0xda0\nmov eax, 0x400\nxor edx, edx\nwrmsr\nxor eax, eax\nrdmsr\nmov edi, eax\n"
           "mov ecx, 0xd93\nmov eax, 0x80012345\nwrmsr\nxor eax, eax\nrdmsr\nmov ebp, eax\n")


def test_xss_and_pasid_msrs_on_a_bare_processor():
    cpu, vec = run_real(MSR_SRC)
    assert vec is None
    assert cpu.rdi & 0xFFFFFFFF == 0x400 and cpu.rbp & 0xFFFFFFFF == PASID
    assert cpu.rdmsr(0xDA0) == 0x400 and cpu.rdmsr(0xD93) == PASID


@pytest.mark.parametrize("msr,value", [
    (0xDA0, 1 << 8),            # IA32_XSS: PT state is not a component of the model
    (0xDA0, 1),                 # x87 is a user component: never in IA32_XSS
    (0xDA0, 1 << 32),
    (0xD93, 1 << 20),           # IA32_PASID: bits 30:20 and 63:32 are reserved
    (0xD93, 1 << 32),
])
def test_msr_reserved_bits_are_gp(msr, value):
    cpu, vec = run_real(f"mov ecx, {msr:#x}\nmov eax, {value & 0xFFFFFFFF:#x}\nmov edx, {value >> 32:#x}\nwrmsr")
    assert vec == 13
    assert cpu.rdmsr(msr) == 0


def test_msrs_absent_without_the_features():
    hw = vtx.BareMetal(memory=1 << 20)
    m = hw._machine
    m._set_features([n for n in m._features() if n not in ("XSAVES", "XSS_PASID")])
    cpu = hw.setup_real_mode(entry=0x1000, stack=0x8000)
    for msr in (0xDA0, 0xD93):
        with pytest.raises(vtx.VtxError, match="no such MSR"):
            cpu.rdmsr(msr)


# --- XSAVES -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODE_BITS)
def test_xsaves_writes_the_compacted_form(mode):
    vm = xvm(ALL + f"xsaves [{AREA:#x}]", mode)
    vm.vcpu.xmm3 = 7
    run_to_hlt(vm)
    # x87 is in its initial configuration (XINUSE[0] = 0): not written; SSE
    # and PASID state are; XCOMP_BV = 8000000000000000H | RFBM.
    assert header(vm) == (0x402, COMPACT | 0x403)
    img = vm.read(AREA, 704)
    assert img[0:24] == bytes([PAD] * 24) and img[32:160] == bytes([PAD] * 128)
    assert img[24:32] == struct.pack("<II", 0x1F80, 0xFFFF)
    assert img[160 + 48:160 + 64] == (7).to_bytes(16, "little")
    assert img[528:576] == bytes([PAD] * 48)     # header bytes 63:16 are not written
    assert img[576:584] == struct.pack("<Q", PASID)
    assert img[584:] == bytes([PAD] * 120)


def test_xsaves_init_optimization_skips_pasid_state_at_zero():
    vm = xvm(ALL + f"xsaves [{AREA:#x}]", pasid=0)
    run_to_hlt(vm)
    assert header(vm) == (0, COMPACT | 0x403)
    assert vm.read(AREA + 576, 8) == bytes([PAD] * 8)


def test_xsaves_rfbm_is_edx_eax_within_xcr0_and_xss():
    vm = xvm(f"mov eax, 0x402\nxor edx, edx\nxsaves [{AREA:#x}]", xss=0)
    run_to_hlt(vm)
    assert header(vm) == (0, COMPACT | 2)              # bit 10 is not in IA32_XSS
    assert vm.read(AREA + 576, 8) == bytes([PAD] * 8)
    vm = xvm(f"mov eax, 0x401\nxor edx, edx\nxsaves [{AREA:#x}]")
    run_to_hlt(vm)
    assert header(vm) == (0x400, COMPACT | 0x401)


def test_xsave_and_xsavec_never_touch_supervisor_state():
    vm = xvm(ALL + f"xsave [{AREA:#x}]\n" + ALL + f"xsavec [{AREA + 1024:#x}]",
             area=bytes([PAD] * 512) + struct.pack("<Q", 0x400) + bytes([PAD] * 1400))
    vm.vcpu.xmm1 = 1
    run_to_hlt(vm)
    # XSAVE writes XSTATE_BV[1:0] (x87 in its initial configuration, SSE
    # not) and keeps bit 10 as it was: RFBM is within XCR0.
    assert header(vm)[0] == 0x402
    assert vm.read(AREA + 576, 8) == bytes([PAD] * 8)
    assert struct.unpack("<QQ", vm.read(AREA + 1024 + 512, 16)) == (2, COMPACT | 3)
    assert vm.read(AREA + 1024 + 576, 8) == bytes([PAD] * 8)


# --- XRSTORS ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODE_BITS)
def test_xrstors_loads_pasid_and_inits_the_rest(mode):
    vm = xvm(ALL + f"xrstors [{AREA:#x}]", mode, pasid=0, area=area(0x400, COMPACT | 0x403))
    v = vm.vcpu
    v.xmm0 = 9
    v.mxcsr = 0x3F80
    run_to_hlt(vm)
    assert v.pasid == PASID
    assert v.xmm0 == 0 and v.mxcsr == 0x1F80 and v.fcw == 0x37F      # XSTATE_BV[1:0] = 0: initialized


def test_xrstors_inits_pasid_with_xstate_bv_10_clear():
    vm = xvm(ALL + f"xrstors [{AREA:#x}]", area=area(0, COMPACT | 0x403, pasid=0x80000077))
    run_to_hlt(vm)
    assert vm.vcpu.pasid == 0


def test_xrstors_leaves_unrequested_pasid_alone():
    vm = xvm(f"mov eax, 3\nxor edx, edx\nxrstors [{AREA:#x}]", area=area(0x400, COMPACT | 0x403, pasid=0x80000077))
    run_to_hlt(vm)
    assert vm.vcpu.pasid == PASID


def test_xsaves_xrstors_round_trip():
    vm = xvm(ALL + f"xsaves [{AREA:#x}]\nmov ecx, 0xd93\nxor eax, eax\nxor edx, edx\nwrmsr\n" + ALL
             + f"xrstors [{AREA:#x}]", proc=P.USE_MSR_BITMAPS, area=bytes(704))
    # (A zeroed area: XSAVES writes no header byte past XCOMP_BV, and
    # XRSTORS wants bytes 63:16 to be 0.)
    # The MSRs are the guest's: let WRMSR of IA32_PASID through the MSR bitmap.
    from vtx.vm import _MSR_BITMAP
    vm._priv[_MSR_BITMAP:_MSR_BITMAP + 4096] = bytes(4096)
    vm.vcpu.xmm5 = 0x1234
    run_to_hlt(vm)
    assert vm.vcpu.pasid == PASID and vm.vcpu.xmm5 == 0x1234


@pytest.mark.parametrize("hdr_bv,hdr_comp,rest,pasid,xss", [
    (0x400, 0x403, bytes(48), PASID, XSS_PASID),                  # standard form: XRSTORS takes only compacted
    (0x400, COMPACT | 0x403, bytes(48), PASID, 0),                 # XCOMP_BV[10] outside XCR0 | IA32_XSS
    (0x400, COMPACT | 0x003, bytes(48), PASID, XSS_PASID),         # XSTATE_BV not within XCOMP_BV
    (0x400, COMPACT | 0x403, bytes(47) + b"\1", PASID, XSS_PASID),  # header bytes 63:16 not 0
    (0x400, COMPACT | 0x403, bytes(48), 1 << 20, XSS_PASID),       # a value IA32_PASID refuses
    (0x400, COMPACT | 0x403, bytes(48), 1 << 40, XSS_PASID),
])
def test_xrstors_gp_conditions_change_nothing(hdr_bv, hdr_comp, rest, pasid, xss):
    vm = xvm(ALL + f"xrstors [{AREA:#x}]", pasid=7, xss=xss, area=area(hdr_bv, hdr_comp, pasid=pasid, rest=rest))
    vm.vcpu.xmm0 = 9
    ex = first_exit(vm)
    assert_exception(ex, 13, 0)
    assert vm.vcpu.pasid == 7 and vm.vcpu.xmm0 == 9


def test_xrstor_refuses_a_compacted_area_with_supervisor_state():
    vm = xvm(ALL + f"xrstor [{AREA:#x}]", area=area(0x400, COMPACT | 0x403))
    assert_exception(first_exit(vm), 13, 0)


# --- #UD, #NM and #GP, in priority order ------------------------------------------------

@pytest.mark.parametrize("insn", ["xsaves", "xrstors"])
def test_ud_without_enable_xsaves_xrstors_in_non_root(insn):
    vm = xvm(ALL + f"{insn} [{AREA:#x}]", proc2=0)
    assert_exception(first_exit(vm), 6)


@pytest.mark.parametrize("insn", ["xsaves", "xrstors"])
def test_ud_without_cr4_osxsave(insn):
    vm = xvm(ALL + f"{insn} [{AREA:#x}]")
    vm.vcpu.cr4 &= ~OSXSAVE
    assert_exception(first_exit(vm), 6)


@pytest.mark.parametrize("modrm", [0xE8, 0xD8])      # 0F C7 /5 and /3 with a register operand
def test_register_forms_are_ud(modrm):
    vm = xvm(f".byte 0x0f, 0xc7, {modrm:#x}")
    assert_exception(first_exit(vm), 6)


def test_ud_without_the_feature():
    vm = xvm(ALL + f"xsaves [{AREA:#x}]")
    m = vm._machine
    m._set_features([n for n in m._features() if n != "XSAVES"])
    assert_exception(first_exit(vm), 6)


@pytest.mark.parametrize("insn", ["xsaves", "xrstors"])
def test_nm_with_cr0_ts_comes_before_the_cpl_fault_and_the_exit(insn):
    vm = xvm(ALL + f"{insn} [{AREA:#x}]", ring3=True)
    vm.vcpu.cr0 |= 1 << 3
    vm.vcpu.vmwrite(vtx.VmcsField.XSS_EXITING_BITMAP, XSS_PASID)
    assert_exception(first_exit(vm), 7)


@pytest.mark.parametrize("insn", ["xsaves", "xrstors"])
def test_cpl3_is_gp_before_the_exit(insn):
    vm = xvm(ALL + f"{insn} [{AREA:#x}]", ring3=True)
    vm.vcpu.vmwrite(vtx.VmcsField.XSS_EXITING_BITMAP, XSS_PASID)
    assert_exception(first_exit(vm), 13, 0)


@pytest.mark.parametrize("insn", ["xsaves", "xrstors"])
def test_misaligned_area_is_gp_after_the_exit(insn):
    vm = xvm(ALL + f"{insn} [{AREA + 8:#x}]")
    assert_exception(first_exit(vm), 13, 0)
    vm = xvm(ALL + f"{insn} [{AREA + 8:#x}]")
    vm.vcpu.vmwrite(vtx.VmcsField.XSS_EXITING_BITMAP, XSS_PASID)
    assert first_exit(vm).reason == (R.XSAVES if insn == "xsaves" else R.XRSTORS)


# --- the exits -------------------------------------------------------------------------

EXIT_CASES = [
    # mode, operand, instruction information, qualification, length
    ("real", "[bx+0x40]", ii_mem(asz=0, base=3), 0x40, 4),
    ("protected", "[ebx+ecx*4+0x3000]", ii_mem(scale=2, asz=1, base=3, index=1), 0x3000, 8),
    ("long", "[rsp+0x10]", ii_mem(asz=2, seg=2, base=4), 0x10, 5),
]


@pytest.mark.parametrize("mode,operand,info,qual,length", EXIT_CASES)
@pytest.mark.parametrize("insn,reason", [("xsaves", 63), ("xrstors", 64)])
def test_exit_under_the_xss_exiting_bitmap(mode, operand, info, qual, length, insn, reason):
    src = "mov eax, 0x400\nxor edx, edx\nxor ecx, ecx\n"
    pre = len(vtx.asm(src, bits=MODE_BITS[mode], org=0x1000))
    vm = xvm(src + f"{insn} {operand}", mode, pasid=0x80000001)
    vm.vcpu.vmwrite(vtx.VmcsField.XSS_EXITING_BITMAP, (1 << 64) - 1)
    ex = first_exit(vm)
    assert_insn_exit(ex, reason, length, 0x1000 + pre, qual=qual, info=info)
    assert ex.name == ("XSAVES" if reason == 63 else "XRSTORS")
    assert ex.qualification_fields() == {"displacement": qual}
    assert vm.read(AREA, 704) == bytes([PAD] * 704)          # nothing saved before the exit
    assert vm.vcpu.pasid == 0x80000001


@pytest.mark.parametrize("eax,xss,bitmap", [
    (3, XSS_PASID, (1 << 64) - 1),          # EDX:EAX does not request bit 10
    (0x403, 0, (1 << 64) - 1),              # IA32_XSS has no bit
    (0x403, XSS_PASID, 0x3),                # the bitmap selects only user bits
])
def test_no_exit_without_a_common_bit(eax, xss, bitmap):
    vm = xvm(f"mov eax, {eax:#x}\nxor edx, edx\nxsaves [{AREA:#x}]", xss=xss)
    vm.vcpu.vmwrite(vtx.VmcsField.XSS_EXITING_BITMAP, bitmap)
    run_to_hlt(vm)
    assert header(vm)[1] == COMPACT | (eax & (3 | xss))


def test_bitmap_ignored_without_the_control():
    """The XSS-exiting bitmap exists only with "enable XSAVES/XRSTORS"
    (VMREAD/VMWRITE of the field work whenever the control can be 1); with
    the control 0 the instruction is #UD, never the exit."""
    vm = xvm(ALL + f"xsaves [{AREA:#x}]", proc2=0)
    vm.vcpu.vmwrite(vtx.VmcsField.XSS_EXITING_BITMAP, (1 << 64) - 1)
    assert_exception(first_exit(vm), 6)


# --- root operation, and Linux ----------------------------------------------------------

def test_bare_processor_round_trip_in_real_mode():
    src = ("mov eax, cr4\nor eax, 1 << 18\nmov cr4, eax\nxor ecx, ecx\nmov eax, 3\nxor edx, edx\nxsetbv\n"
           "mov ecx, 0xda0\nmov eax, 0x400\nwrmsr\nmov ecx, 0xd93\nmov eax, 0x80012345\nwrmsr\n"
           + ALL + "xsaves [0x3000]\n"
           "mov ecx, 0xd93\nxor eax, eax\nxor edx, edx\nwrmsr\n" + ALL + "xrstors [0x3000]\n"
           "mov ecx, 0xd93\nrdmsr\nmov edi, eax\nmov ebp, [0x3000 + 576]\n")
    cpu, vec = run_real(src)
    assert vec is None
    assert cpu.rdi & 0xFFFFFFFF == PASID and cpu.rbp & 0xFFFFFFFF == PASID
