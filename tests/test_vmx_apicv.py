"""APIC virtualization (core/vmx/apicv.pxi; SDM Vol. 3C chapter 30 of the
pinned edition 325462-080US): CR8-load and CR8-store exiting, the TPR shadow
and the TPR-below-threshold exit, the APIC-access page (exits and
virtualized accesses, APIC-write emulation), virtual-interrupt delivery
with EOI and self-IPI virtualization, the x2APIC MSRs, and posted
interrupts.

The guests come from test_vmx_events: an IDT whose vector v points at a
`hlt` at HANDLERS + 16 * v, so a HLT exit's RIP names the vector taken.
"""

import pytest

import vtx
from vtx import ExitControls, ExitReason as R, PinBased, ProcBased, ProcBased2, VmcsField as F
from conftest import needs_as
from test_vmx_events import CODE, HANDLERS, make_vm as _make_vm, set_ctl

pytestmark = needs_as

VAPIC = 0x9000              # the virtual-APIC page, in guest RAM the guests leave alone
APIC = 0xFEE00000           # the APIC-access page
PI_DESC = 0xA000            # the posted-interrupt descriptor


def make_vm(src, mode, **kw):
    """test_vmx_events's guest, and every exit without a handler stops the run."""
    vm = _make_vm(src, mode=mode, **kw)
    vm.default(lambda v, e: vtx.STOP)
    return vm


def vapic(vm, off):
    return int.from_bytes(vm.read(VAPIC + off, 4), "little")


def set_vapic(vm, off, value):
    vm.write(VAPIC + off, value.to_bytes(4, "little"))


def vbit(vm, base, vec):
    """Bit `vec` of VISR (base 100H) or VIRR (200H), SDM 30.1.1."""
    return (vapic(vm, base | ((vec & 0xE0) >> 1)) >> (vec & 31)) & 1


def set_vbit(vm, base, vec):
    off = base | ((vec & 0xE0) >> 1)
    set_vapic(vm, off, vapic(vm, off) | (1 << (vec & 31)))


def tpr_shadow(vm, threshold=0):
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.USE_TPR_SHADOW)
    v.vmwrite(F.VIRTUAL_APIC_ADDRESS, VAPIC)
    v.vmwrite(F.TPR_THRESHOLD, threshold)


def apic_accesses(vm, *extra):
    """TPR shadow and "virtualize APIC accesses" at APIC, with more secondary controls."""
    tpr_shadow(vm)
    v = vm.vcpu
    bits = ProcBased2.VIRTUALIZE_APIC_ACCESSES
    for b in extra:
        bits |= b
    set_ctl(v, F.SECONDARY_PROC_BASED_CONTROLS, bits)
    v.vmwrite(F.APIC_ACCESS_ADDRESS, APIC)
    vm.map_apic_access_page(APIC)


def vid(vm, status=0, accesses=True):
    """Virtual-interrupt delivery (with "external-interrupt exiting", which
    it needs) and the guest interrupt status RVI | SVI << 8."""
    v = vm.vcpu
    if accesses:
        apic_accesses(vm, ProcBased2.VIRTUAL_INTERRUPT_DELIVERY)
    else:
        tpr_shadow(vm)
        set_ctl(v, F.SECONDARY_PROC_BASED_CONTROLS, ProcBased2.VIRTUAL_INTERRUPT_DELIVERY)
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.EXTERNAL_INTERRUPT_EXITING)
    v.vmwrite(F.GUEST_INTERRUPT_STATUS, status)


# --- 30.3: CR8 -----------------------------------------------------------------------

def test_cr8_load_exiting():
    vm = make_vm("mov eax, 5\nmov cr8, rax\nhlt", mode="long")
    set_ctl(vm.vcpu, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.CR8_LOAD_EXITING)
    r = vm.run()
    e = r.exit
    assert e.reason == R.CONTROL_REGISTER_ACCESS and (e.cr, e.access_type, e.gpr) == (8, 0, 0)
    assert e.guest_rip == CODE + 5 and e.instruction_length == 4
    assert vm.vcpu.cr8 == 0


def test_cr8_load_exiting_comes_before_the_reserved_bit_check():
    vm = make_vm("mov ecx, 0x10\nmov cr8, rcx\nhlt", mode="long")
    set_ctl(vm.vcpu, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.CR8_LOAD_EXITING)
    e = vm.run().exit
    assert e.reason == R.CONTROL_REGISTER_ACCESS and (e.cr, e.access_type, e.gpr) == (8, 0, 1)


def test_cr8_store_exiting():
    vm = make_vm("mov rbx, cr8\nhlt", mode="long")
    set_ctl(vm.vcpu, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.CR8_STORE_EXITING)
    e = vm.run().exit
    assert e.reason == R.CONTROL_REGISTER_ACCESS and (e.cr, e.access_type, e.gpr) == (8, 1, 3)
    assert e.guest_rip == CODE


def test_cr8_without_controls_is_the_processors():
    vm = make_vm("mov eax, 9\nmov cr8, rax\nmov rbx, cr8\nhlt", mode="long")
    assert vm.run().exit.reason == R.HLT
    assert vm.vcpu.cr8 == 9 and vm.vcpu.rbx == 9


# --- 30.1.2, 30.3: the TPR shadow ----------------------------------------------------------

def test_tpr_shadow_moves_cr8_to_vtpr():
    """MOV to CR8 writes VTPR[7:4] and clears the rest of VTPR; MOV from CR8
    reads VTPR[7:4]; the processor's CR8 is untouched."""
    vm = make_vm("mov eax, 7\nmov cr8, rax\nmov rbx, cr8\nhlt", mode="long")
    tpr_shadow(vm)
    set_vapic(vm, 0x80, 0xFFFFFF0F)
    e = vm.run().exit
    assert e.reason == R.HLT
    assert vapic(vm, 0x80) == 0x70 and vm.vcpu.rbx == 7 and vm.vcpu.cr8 == 0


def test_tpr_shadow_reserved_bits_are_gp():
    vm = make_vm("mov eax, 0x10\nmov cr8, rax\nhlt", mode="long")
    tpr_shadow(vm)
    e = vm.run().exit
    assert e.reason == R.EXCEPTION_OR_NMI and e.vector == 13 and e.guest_rip == CODE + 5
    assert vapic(vm, 0x80) == 0


def test_tpr_below_threshold_is_trap_like():
    vm = make_vm("mov eax, 3\nmov cr8, rax\nnop\nhlt", mode="long")
    tpr_shadow(vm, threshold=5)
    set_vapic(vm, 0x80, 0x50)
    e = vm.run().exit
    assert e.reason == R.TPR_BELOW_THRESHOLD and e.qualification == 0
    assert e.guest_rip == CODE + 9           # after the MOV to CR8: the NOP
    assert vapic(vm, 0x80) == 0x30


def test_tpr_at_the_threshold_does_not_exit():
    vm = make_vm("mov eax, 5\nmov cr8, rax\nhlt", mode="long")
    tpr_shadow(vm, threshold=5)
    set_vapic(vm, 0x80, 0x50)
    assert vm.run().exit.reason == R.HLT


def test_tpr_below_threshold_right_after_entry():
    """With "virtualize APIC accesses" the entry check of VTPR does not
    apply, and the comparison comes right after VM entry (27.7.7)."""
    vm = make_vm("nop\nhlt", mode="protected")
    apic_accesses(vm)
    vm.vcpu.vmwrite(F.TPR_THRESHOLD, 4)
    set_vapic(vm, 0x80, 0x30)
    e = vm.run().exit
    assert e.reason == R.TPR_BELOW_THRESHOLD and e.guest_rip == CODE


# --- 30.4: the APIC-access page -----------------------------------------------------------

def run_protected(src, *extra, vapic_values=()):
    vm = make_vm(src, mode="protected")
    apic_accesses(vm, *extra)
    for off, value in vapic_values:
        set_vapic(vm, off, value)
    return vm, vm.run().exit


def test_apic_access_tpr_read_is_virtualized():
    vm, e = run_protected(f"mov eax, [{APIC + 0x80:#x}]\nmov bx, [{APIC + 0x82:#x}]\nhlt",
                          vapic_values=[(0x80, 0x12345660)])
    assert e.reason == R.HLT and vm.vcpu.eax == 0x12345660 and vm.vcpu.ebx & 0xFFFF == 0x1234


def test_apic_access_read_of_another_register_exits():
    vm, e = run_protected(f"mov eax, [{APIC + 0x30:#x}]\nhlt")
    assert e.reason == R.APIC_ACCESS and e.guest_rip == CODE and e.instruction_length == 5
    assert e.qualification_fields() == {"offset": 0x30, "access_type": 0}


def test_apic_access_outside_the_low_four_bytes_exits():
    vm, e = run_protected(f"mov eax, [{APIC + 0x84:#x}]\nhlt")
    assert e.reason == R.APIC_ACCESS and e.qualification == 0x084


def test_apic_access_across_the_register_exits():
    vm, e = run_protected(f"mov eax, [{APIC + 0x82:#x}]\nhlt")
    assert e.reason == R.APIC_ACCESS and e.qualification == 0x082


def test_apic_access_write_exits_with_type_1():
    vm, e = run_protected(f"mov dword ptr [{APIC + 0x310:#x}], 5\nhlt")
    assert e.reason == R.APIC_ACCESS and e.qualification == 0x1310 and e.guest_rip == CODE


def test_apic_access_fetch_exits_with_type_2():
    vm, e = run_protected(f"mov eax, {APIC + 0x40:#x}\njmp eax")
    assert e.reason == R.APIC_ACCESS and e.qualification == 0x2040 and e.guest_rip == APIC + 0x40


def test_apic_access_without_tpr_shadow_exits_on_tpr():
    vm = make_vm(f"mov eax, [{APIC + 0x80:#x}]\nhlt", mode="protected")
    set_ctl(vm.vcpu, F.SECONDARY_PROC_BASED_CONTROLS, ProcBased2.VIRTUALIZE_APIC_ACCESSES)
    vm.vcpu.vmwrite(F.APIC_ACCESS_ADDRESS, APIC)
    vm.map_apic_access_page(APIC)
    e = vm.run().exit
    assert e.reason == R.APIC_ACCESS and e.qualification == 0x080


def test_apic_access_tpr_write_virtualizes_the_tpr():
    """A write to 080H goes to VTPR (bytes 3:1 cleared by the emulation)
    and TPR virtualization follows it: below the threshold, a trap-like
    exit."""
    vm = make_vm(f"mov dword ptr [{APIC + 0x80:#x}], 0x1234520\nnop\nhlt", mode="protected")
    apic_accesses(vm)
    vm.vcpu.vmwrite(F.TPR_THRESHOLD, 3)
    set_vapic(vm, 0x80, 0x30)
    e = vm.run().exit
    assert e.reason == R.TPR_BELOW_THRESHOLD and e.guest_rip == CODE + 10
    assert vapic(vm, 0x80) == 0x20


def test_apic_register_virtualization_reads_and_apic_write_exit():
    vm, e = run_protected(f"mov eax, [{APIC + 0x30:#x}]\nmov dword ptr [{APIC + 0x380:#x}], 0x777\nnop\nhlt",
                          ProcBased2.APIC_REGISTER_VIRTUALIZATION, vapic_values=[(0x30, 0x50014)])
    assert vm.vcpu.eax == 0x50014
    assert e.reason == R.APIC_WRITE and e.qualification == 0x380
    assert e.guest_rip == CODE + 15          # trap-like: after the write
    assert vapic(vm, 0x380) == 0x777


def test_apic_register_virtualization_still_exits_on_current_count():
    vm, e = run_protected(f"mov eax, [{APIC + 0x390:#x}]\nhlt", ProcBased2.APIC_REGISTER_VIRTUALIZATION)
    assert e.reason == R.APIC_ACCESS and e.qualification == 0x390


def test_apic_access_with_ept_off_uses_the_physical_address():
    vm = make_vm(f"mov eax, [{APIC + 0x80:#x}]\nhlt", mode="long")
    apic_accesses(vm)
    set_ctl(vm.vcpu, F.SECONDARY_PROC_BASED_CONTROLS, 0,
            ProcBased2.ENABLE_EPT | ProcBased2.UNRESTRICTED_GUEST | ProcBased2.ENABLE_VPID)
    set_vapic(vm, 0x80, 0x40)
    assert vm.run().exit.reason == R.HLT and vm.vcpu.eax == 0x40


# --- 30.2: virtual-interrupt delivery -------------------------------------------------

def test_virtual_interrupt_delivered_at_entry():
    vm = make_vm("sti\nnop\nhlt", mode="protected")
    vid(vm, status=0x41)
    set_vbit(vm, 0x200, 0x41)
    r = vm.run()
    e = r.exit
    assert e.reason == R.HLT and e.guest_rip == HANDLERS + 16 * 0x41
    v = vm.vcpu
    assert vbit(vm, 0x100, 0x41) == 1 and vbit(vm, 0x200, 0x41) == 0
    assert v.vmread(F.GUEST_INTERRUPT_STATUS) == 0x4100       # RVI 0, SVI 41H
    assert vapic(vm, 0xA0) == 0x40                              # VPPR


def test_virtual_interrupt_waits_for_if_and_the_tpr():
    """Masked by RFLAGS.IF until STI (plus its shadow); a VTPR at the
    vector's class keeps it from being recognized at all."""
    vm = make_vm("nop\nsti\nnop\nhlt", mode="protected")
    vid(vm, status=0x41)
    set_vbit(vm, 0x200, 0x41)
    assert vm.run().exit.guest_rip == HANDLERS + 16 * 0x41
    # after the STI and the instruction its shadow covers
    assert int.from_bytes(vm.read(0x8000 - 12, 4), "little") == CODE + 3
    vm2 = make_vm("sti\nnop\nhlt", mode="protected")
    vid(vm2, status=0x41)
    set_vbit(vm2, 0x200, 0x41)
    set_vapic(vm2, 0x80, 0x40)
    e = vm2.run().exit
    assert e.guest_rip == CODE + 2 and vm2.vcpu.vmread(F.GUEST_INTERRUPT_STATUS) == 0x41


def test_eoi_virtualization_and_the_next_interrupt():
    """The handler of 51H writes EOI: 51H leaves VISR, and 41H, which waited
    behind it, is delivered next."""
    vm = make_vm("sti\nnop\nhlt", mode="protected")
    vid(vm, status=0x51)
    set_vbit(vm, 0x200, 0x41)
    set_vbit(vm, 0x200, 0x51)
    handler = HANDLERS + 16 * 0x51
    vm.load(handler, vtx.asm(f"mov dword ptr [{APIC + 0xB0:#x}], 0\niretd", bits=32, org=handler))
    e = vm.run().exit
    assert e.guest_rip == HANDLERS + 16 * 0x41
    assert vbit(vm, 0x100, 0x51) == 0 and vbit(vm, 0x100, 0x41) == 1
    assert vm.vcpu.vmread(F.GUEST_INTERRUPT_STATUS) == 0x4100


def test_eoi_exit_bitmap_gives_a_virtualized_eoi_exit():
    vm = make_vm("sti\nnop\nhlt", mode="protected")
    vid(vm, status=0x51)
    set_vbit(vm, 0x200, 0x51)
    vm.vcpu.vmwrite(F.EOI_EXIT_BITMAP_1, 1 << (0x51 - 64))
    handler = HANDLERS + 16 * 0x51
    vm.load(handler, vtx.asm(f"mov dword ptr [{APIC + 0xB0:#x}], 0\nnop\nhlt", bits=32, org=handler))
    e = vm.run().exit
    assert e.reason == R.VIRTUALIZED_EOI and e.qualification == 0x51
    assert e.guest_rip == handler + 10          # trap-like
    assert vm.vcpu.vmread(F.GUEST_INTERRUPT_STATUS) == 0


def test_self_ipi_through_the_icr():
    vm = make_vm(f"sti\nmov dword ptr [{APIC + 0x300:#x}], 0x40061\nnop\nhlt", mode="protected")
    vid(vm)
    e = vm.run().exit
    assert e.reason == R.HLT and e.guest_rip == HANDLERS + 16 * 0x61
    # delivered right after the write: the pushed return address is the NOP
    assert int.from_bytes(vm.read(0x8000 - 12, 4), "little") == CODE + 11


def test_icr_write_that_is_not_a_self_ipi_is_an_apic_write_exit():
    vm = make_vm(f"mov dword ptr [{APIC + 0x300:#x}], 0x4061\nnop\nhlt", mode="protected")
    vid(vm)
    e = vm.run().exit
    assert e.reason == R.APIC_WRITE and e.qualification == 0x300 and e.guest_rip == CODE + 10
    assert vapic(vm, 0x300) == 0x4061


def test_interrupt_window_exiting_blocks_recognition():
    vm = make_vm("sti\nnop\nhlt", mode="protected")
    vid(vm, status=0x41)
    set_vbit(vm, 0x200, 0x41)
    set_ctl(vm.vcpu, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.INTERRUPT_WINDOW_EXITING)
    e = vm.run().exit
    assert e.reason == R.INTERRUPT_WINDOW and vm.vcpu.vmread(F.GUEST_INTERRUPT_STATUS) == 0x41


def test_virtual_interrupt_wakes_hlt():
    vm = make_vm("sti\nhlt\nhlt", mode="protected", hlt_stops=False)
    vid(vm)
    set_ctl(vm.vcpu, F.PRIMARY_PROC_BASED_CONTROLS, 0, ProcBased.HLT_EXITING)
    handler = HANDLERS + 16 * 0x61
    vm.load(handler, vtx.asm("out 0x80, al", bits=32, org=handler))
    vm.on(R.IO_INSTRUCTION)(lambda v, e: vtx.STOP)
    r = vm.run(max_instructions=1000)
    assert r.stop == "halted"
    set_vbit(vm, 0x200, 0x61)
    vm.vcpu.vmwrite(F.GUEST_INTERRUPT_STATUS, 0x61)
    e = vm.run(max_instructions=1000).exit
    assert e.reason == R.IO_INSTRUCTION and e.guest_rip == handler


# --- 30.5: the x2APIC MSRs -------------------------------------------------------------

def x2apic_vm(src, *extra):
    vm = make_vm(src, mode="long")
    tpr_shadow(vm)
    v = vm.vcpu
    bits = ProcBased2.VIRTUALIZE_X2APIC_MODE
    for b in extra:
        bits |= b
    set_ctl(v, F.SECONDARY_PROC_BASED_CONTROLS, bits)
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.USE_MSR_BITMAPS)
    priv = vm._priv
    priv[0x3000:0x4000] = bytes(4096)       # no MSR exits
    del priv
    return vm


def test_x2apic_tpr_msr_is_virtualized():
    vm = x2apic_vm("mov ecx, 0x808\nmov eax, 0x60\nxor edx, edx\nwrmsr\nmov eax, 1\nrdmsr\nmov rbx, cr8\nhlt")
    assert vm.run().exit.reason == R.HLT
    v = vm.vcpu
    assert vapic(vm, 0x80) == 0x60 and v.eax == 0x60 and v.edx == 0 and v.rbx == 6


def test_x2apic_tpr_msr_reserved_bits_are_gp():
    vm = x2apic_vm("mov ecx, 0x808\nmov eax, 0x160\nxor edx, edx\nwrmsr\nhlt")
    e = vm.run().exit
    assert e.reason == R.EXCEPTION_OR_NMI and e.vector == 13 and e.guest_rip == CODE + 12


def test_x2apic_msr_bitmap_exit_comes_first():
    vm = x2apic_vm("mov ecx, 0x808\nrdmsr\nhlt")
    priv = vm._priv
    priv[0x3000 + 0x808 // 8] = 1 << (0x808 % 8)
    del priv
    assert vm.run().exit.reason == R.RDMSR


def test_x2apic_other_registers_need_register_virtualization():
    vm = x2apic_vm("mov ecx, 0x803\nrdmsr\nhlt")
    e = vm.run().exit                       # the model's RDMSR: no such MSR
    assert e.reason == R.EXCEPTION_OR_NMI and e.vector == 13 and e.guest_rip == CODE + 5
    vm = x2apic_vm("mov ecx, 0x803\nrdmsr\nhlt", ProcBased2.APIC_REGISTER_VIRTUALIZATION)
    set_vapic(vm, 0x30, 0x50014)
    assert vm.run().exit.reason == R.HLT and vm.vcpu.eax == 0x50014


def test_x2apic_self_ipi_and_eoi():
    vm = x2apic_vm("sti\nmov ecx, 0x83F\nmov eax, 0x71\nxor edx, edx\nwrmsr\nnop\nhlt",
                   ProcBased2.VIRTUAL_INTERRUPT_DELIVERY)
    set_ctl(vm.vcpu, F.PIN_BASED_CONTROLS, PinBased.EXTERNAL_INTERRUPT_EXITING)
    handler = HANDLERS + 16 * 0x71
    vm.load(handler, vtx.asm("mov ecx, 0x80B\nxor eax, eax\nwrmsr\nhlt", bits=64, org=handler))
    e = vm.run().exit
    assert e.reason == R.HLT and e.guest_rip == handler + 9
    assert vbit(vm, 0x100, 0x71) == 0 and vm.vcpu.vmread(F.GUEST_INTERRUPT_STATUS) == 0


# --- 30.6: posted interrupts -----------------------------------------------------------

def posted_vm(src="sti\nnop\nnop\nnop\nhlt"):
    vm = make_vm(src, mode="protected")
    vid(vm)
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.PROCESS_POSTED_INTERRUPTS)
    set_ctl(v, F.VM_EXIT_CONTROLS, ExitControls.ACKNOWLEDGE_INTERRUPT_ON_EXIT)
    v.vmwrite(F.POSTED_INTERRUPT_NOTIFICATION_VECTOR, 0xF2)
    v.vmwrite(F.POSTED_INTERRUPT_DESCRIPTOR_ADDRESS, PI_DESC)
    return vm


def test_posted_interrupt_is_delivered_without_an_exit():
    vm = posted_vm()
    vm.write(PI_DESC, (1 << 0x55).to_bytes(32, "little") + b"\x01")      # PIR[55H], ON
    vm.vcpu.raise_interrupt(0xF2)
    e = vm.run().exit
    assert e.reason == R.HLT and e.guest_rip == HANDLERS + 16 * 0x55
    assert vm.read(PI_DESC, 33) == bytes(33)          # PIR moved out, ON cleared
    assert vm.vcpu.vmread(F.GUEST_INTERRUPT_STATUS) == 0x5500


def test_post_interrupt_from_python():
    vm = posted_vm()
    v = vm.vcpu
    assert v.post_interrupt(0x66) is True
    assert v.post_interrupt(0x67) is False          # ON already set: no second notification
    assert v.pending_interrupts == (0xF2,)
    e = vm.run().exit
    assert e.reason == R.HLT and e.guest_rip == HANDLERS + 16 * 0x67
    assert vbit(vm, 0x200, 0x66) == 1 and v.vmread(F.GUEST_INTERRUPT_STATUS) == 0x6766
    with pytest.raises(vtx.ArgumentError):
        v.post_interrupt(15)
    v.vmwrite(F.POSTED_INTERRUPT_DESCRIPTOR_ADDRESS, 1 << 36)
    with pytest.raises(vtx.GuestMemoryError):
        v.post_interrupt(0x66)


def test_other_vectors_still_exit():
    vm = posted_vm()
    vm.vcpu.raise_interrupt(0x30)
    e = vm.run().exit
    assert e.reason == R.EXTERNAL_INTERRUPT and e.interruption_info == (1 << 31) | 0x30


def test_controls_make_the_model_advertise_them():
    caps = vtx.spec.capabilities
    assert (caps.PROCBASED_CTLS >> 32) & ProcBased.USE_TPR_SHADOW
    assert (caps.PROCBASED_CTLS2 >> 32) & ProcBased2.VIRTUAL_INTERRUPT_DELIVERY


def test_map_apic_access_page_rejects_bad_addresses():
    vm = vtx.VM(memory=1 << 20)
    for bad in (0xFEE00010, -4096, 1 << 38, "x", True):
        with pytest.raises(vtx.ArgumentError):
            vm.map_apic_access_page(bad)
