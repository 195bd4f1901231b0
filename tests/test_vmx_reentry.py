"""A guest cannot make its own VM unresumable (vtx/core/vmx/exit.pxi and the
instructions that change guest state).

After any guest instruction sequence that ends in a VM exit, the budget or a
halt, the guest state the model saved into the VMCS must pass the VM-entry
checks (SDM Vol. 3C 27.3.1): whatever the guest did, it did through
instructions that either succeed with a consistent result or fault.  Each
regression below was once accepted and stored (hardware: #GP), or left a
blocking state that the next VMRESUME rejected; the property test runs random
instruction streams and asks vcpu.check_entry() after each.
"""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import vtx
from vtx import ExitReason as R, ProcBased, VmcsField as F

from conftest import guest, needs_as

GP, UD = 13, 6


def exception_of(r):
    assert r.stop == "stop" and r.exit.reason == R.EXCEPTION_OR_NMI, r
    return r.exit.interruption_info & 0xFF, r.exit.interruption_error_code


def stop_everything(vm):
    vm.default(lambda vcpu, exit: vtx.STOP)
    return vm


# --- blocking by STI and MOV SS ----------------------------------------------

@needs_as
def test_sti_then_fault_delivered_through_ivt_ends_sti_blocking():
    """STI; UD2 with #UD delivered through the IVT: delivery clears IF, and
    blocking by STI ends with it (saved as 1 with IF = 0 it failed entry)."""
    vm = stop_everything(guest("sti\nud2", bits=16))
    vm.load(0x2000, vtx.asm("hlt", bits=16, org=0x2000))
    vm.write_u32(UD * 4, 0x2000)
    vm.vcpu.rsp = 0x8000
    vm.vcpu.vmwrite(F.EXCEPTION_BITMAP, 0)
    r = vm.run(max_instructions=100)
    assert r.exit.reason == R.HLT and r.exit.guest_rip == 0x2000 and r.events == 1
    assert vm.vcpu.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 0
    assert vm.vcpu.rflags & (1 << 9) == 0
    assert vm.vcpu.check_entry() is None


@needs_as
def test_sti_then_exit_keeps_sti_blocking():
    """The exit itself reports blocking by STI (the guest is still in the
    shadow), and that state is valid: IF = 1."""
    vm = stop_everything(guest("sti\ncpuid", bits=32))
    r = vm.run()
    assert r.exit.reason == R.CPUID
    assert vm.vcpu.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 1
    assert vm.vcpu.check_entry() is None


@needs_as
@pytest.mark.parametrize("src,blocking", [("sti\nhlt", 1), ("mov ax, ss\nmov ss, ax\nhlt", 2)])
def test_halt_in_a_shadow_saves_no_blocking(src, blocking):
    """HLT without HLT exiting right after STI or MOV SS: the processor is
    halted and the shadow has ended (activity HLT with blocking fails entry,
    SDM Vol. 3C 27.3.1.5)."""
    vm = guest(src, bits=16, stop_on_hlt=False)
    ctl = vm.vcpu.vmread(F.PRIMARY_PROC_BASED_CONTROLS)
    vm.vcpu.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, ctl & ~ProcBased.HLT_EXITING)
    r = vm.run(max_instructions=100)
    assert r.stop == "halted"
    assert vm.vcpu.vmread(F.GUEST_ACTIVITY_STATE) == 1
    assert vm.vcpu.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 0
    assert vm.vcpu.check_entry() is None


# --- control registers and MSRs: #GP, never a stored bad value ---------------

CR3_CASES = [
    # (cr4 bits to set first, bits ORed into the present CR3, expect #GP)
    ("pcide off, bit 63", 0, 1 << 63, True),
    ("pcide off, bit 62", 0, 1 << 62, True),
    ("pcide off, bit 39", 0, 1 << 39, True),
    ("pcide on, bit 63 is the no-flush hint", 1 << 17, 1 << 63, False),
    ("pcide on, bit 62", 1 << 17, 1 << 62, True),
]


@needs_as
@pytest.mark.parametrize("name,cr4,bits,gp", CR3_CASES, ids=[c[0] for c in CR3_CASES])
def test_mov_cr3_reserved_bits(name, cr4, bits, gp):
    vm = stop_everything(guest(f"""
    mov rax, cr4
    or rax, {cr4}
    mov cr4, rax
    mov rax, cr3
    mov rdx, {bits}
    or rax, rdx
    mov cr3, rax
    hlt
""", bits=64))
    cr3 = vm.vcpu.cr3
    r = vm.run(max_instructions=100)
    if gp:
        assert exception_of(r) == (GP, 0)
        assert vm.read(r.exit.guest_rip, 3) == b"\x0f\x22\xd8"       # at the MOV CR3, RAX
    else:
        assert r.exit.reason == R.HLT
    # Bit 63 is never stored, nor any reserved bit.
    assert vm.vcpu.cr3 == cr3
    assert vm.vcpu.check_entry() is None


@needs_as
def test_pcide_outside_ia32e_mode_is_gp():
    vm = stop_everything(guest("mov eax, cr4\nor eax, 1 << 17\nmov cr4, eax\nhlt", bits=32))
    r = vm.run(max_instructions=100)
    assert exception_of(r) == (GP, 0) and r.exit.guest_rip == 0x1008     # at the MOV CR4
    assert vm.vcpu.cr4 & (1 << 17) == 0
    assert vm.vcpu.check_entry() is None


@needs_as
def test_pcide_with_nonzero_pcid_in_cr3_is_gp():
    vm = stop_everything(guest("mov rax, cr3\nor rax, 5\nmov cr3, rax\n"
                               "mov rax, cr4\nor rax, 1 << 17\nmov cr4, rax\nhlt", bits=64))
    r = vm.run(max_instructions=100)
    assert exception_of(r) == (GP, 0)
    assert vm.vcpu.cr3 & 0xFFF == 5 and vm.vcpu.cr4 & (1 << 17) == 0
    assert vm.vcpu.check_entry() is None


@needs_as
@pytest.mark.parametrize("pat,ok", [
    (0x0007040600070406, True),           # the power-on value
    (0x0007040600070402, False),          # type 2 is reserved
    (0x0007040600070403, False),          # type 3 too
    (0x0807040600070406, False),          # types above 7
    (0x0101010101010101, True),
])
def test_wrmsr_pat_checks_memory_types(pat, ok):
    vm = stop_everything(guest(f"mov ecx, 0x277\nmov eax, {pat & 0xFFFFFFFF}\nmov edx, {pat >> 32}\n"
                               f"wrmsr\nhlt", bits=32))
    bm = vm.vcpu.vmread(F.PRIMARY_PROC_BASED_CONTROLS)
    vm.vcpu.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, bm | ProcBased.USE_MSR_BITMAPS)   # all-zero bitmap: no exit
    r = vm.run(max_instructions=100)
    if ok:
        assert r.exit.reason == R.HLT
        assert vm.vcpu.vmread(F.GUEST_IA32_PAT) == pat
    else:
        assert exception_of(r) == (GP, 0) and r.exit.guest_rip == 0x100F
        assert vm.vcpu.vmread(F.GUEST_IA32_PAT) == 0x0007040600070406
    assert vm.vcpu.check_entry() is None


# --- event delivery to a handler address the gate may not name -----------------

@needs_as
def test_64bit_gate_with_noncanonical_offset_is_gp_ext():
    """A 64-bit interrupt gate whose offset is not canonical: #GP(EXT) before
    anything is pushed, reported with the #UD being delivered; RIP stays on
    the faulting instruction (a saved non-canonical RIP failed entry)."""
    vm = stop_everything(guest("ud2", bits=64))
    idt = 0x20000
    off = 0x0000800000000000
    lo = (off & 0xFFFF) | (0x18 << 16) | (0x8E << 40) | (((off >> 16) & 0xFFFF) << 48)
    vm.write_u64(idt + 16 * UD, lo)
    vm.write_u64(idt + 16 * UD + 8, off >> 32)
    vm.vcpu.idtr = vtx.DescriptorTable(idt, 16 * 32 - 1)
    vm.vcpu.vmwrite(F.EXCEPTION_BITMAP, 1 << GP)
    rsp = vm.vcpu.rsp
    r = vm.run(max_instructions=100)
    assert exception_of(r) == (GP, 1)
    assert r.exit.idt_vectoring_info == 0x80000000 | (3 << 8) | UD
    assert vm.vcpu.rip == 0x1000 and vm.vcpu.rsp == rsp
    assert vm.vcpu.check_entry() is None


@needs_as
def test_32bit_gate_offset_beyond_cs_limit_is_gp_ext():
    vm = stop_everything(guest("ud2", bits=32))
    idt = 0x20000
    # A code segment with limit 0xFFFF at GDT slot 0x20 (free for the guest).
    gdt = vm.vcpu.gdtr.base
    vm.write_u64(gdt + 0x20, 0x00409B000000FFFF)
    off = 0x12345
    lo = (off & 0xFFFF) | (0x20 << 16) | (0x8E << 40) | (((off >> 16) & 0xFFFF) << 48)
    vm.write_u64(idt + 8 * UD, lo)
    vm.vcpu.idtr = vtx.DescriptorTable(idt, 8 * 32 - 1)
    vm.vcpu.vmwrite(F.EXCEPTION_BITMAP, 1 << GP)
    r = vm.run(max_instructions=100)
    assert exception_of(r) == (GP, 1)
    assert vm.vcpu.rip == 0x1000
    assert vm.vcpu.check_entry() is None


# --- the property ---------------------------------------------------------------

MODES = ("real", "protected", "long")


def run_stream(code, mode, bitmap, regs, resume):
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, code)
    vm.add_vcpu()
    getattr(vm, f"setup_{mode}_mode")(entry=0x1000)
    v = vm.vcpu
    for name, value in zip(("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp"), regs):
        setattr(v, name, value)
    v.vmwrite(F.EXCEPTION_BITMAP, bitmap)
    if resume:
        vm.default(lambda vcpu, e: vtx.RESUME if e.instruction_length else vtx.STOP)
    else:
        vm.default(lambda vcpu, e: vtx.STOP)
    try:
        r = vm.run(max_instructions=300)
    except vtx.GuestMemoryError:
        return vm, None
    assert r.instructions + r.events <= 300
    return vm, r


REG = st.one_of(st.sampled_from([0, 1, 0xFFFF, 0xFFFFFFFF, 0x8000, 0x1000, 0xFFF0]),
                st.integers(0, (1 << 64) - 1))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=st.binary(min_size=1, max_size=48), mode=st.sampled_from(MODES),
       bitmap=st.sampled_from([0, 0xFFFFFFFF, 1 << GP, 1 << UD, 0xFFFFBFFF]),
       regs=st.lists(REG, min_size=7, max_size=7), resume=st.booleans())
def test_saved_state_always_reenters(code, mode, bitmap, regs, resume):
    """Random instruction streams in every mode, random exception bitmaps and
    registers, handlers that stop or step over: the saved state passes the
    VM-entry checks at the end, whatever the stream did."""
    vm, r = run_stream(code, mode, bitmap, regs, resume)
    err = vm.vcpu.check_entry()
    assert err is None, f"{mode} {code.hex()}: {err}"


def test_check_entry_reports_what_entry_would():
    """check_entry() names the failing check and writes nothing."""
    vm = vtx.VM(memory=1 << 16)
    v = vm.add_vcpu()
    vm.load(0, b"\xf4")                          # code at 0000:0000, where add_vcpu starts it
    assert v.check_entry() is None
    v.vmwrite(F.GUEST_RFLAGS, 0)                 # bit 1 must be 1
    before = bytes(vm._priv[:0x1000])
    err = v.check_entry()
    assert isinstance(err, vtx.VmEntryError) and err.number == 33 and err.check == "GUEST_RFLAGS_BIT_1"
    assert bytes(vm._priv[:0x1000]) == before
    with pytest.raises(vtx.VmEntryError) as ei:
        vm.run(max_instructions=1)
    assert ei.value.check == err.check


@needs_as
def test_real_mode_load_of_a_null_segment_makes_it_usable_data():
    """A null selector loaded into FS in protected mode (FS unusable), then
    CR0.PE cleared and FS loaded again in real mode: FS is a present,
    accessed read/write data segment (found by the fuzz campaign: the old
    type 0 failed the data-segment check of the next entry)."""
    vm = stop_everything(guest("""
    xor edx, edx
    mov fs, dx
    mov eax, cr0
    and al, 0xfe
    mov cr0, eax
    mov fs, dx
    hlt
""", bits=32))
    r = vm.run(max_instructions=20)
    assert r.exit.reason == R.HLT
    fs = vm.vcpu.fs
    assert (fs.selector, fs.base, fs.access_rights) == (0, 0, 0x93)
    assert vm.vcpu.check_entry() is None


def test_descriptor_table_limits_read_back_whatever_the_vmcs_holds():
    """GDTR/IDTR limits are 32-bit VMCS fields: reading one back never
    fails, and entry names the check (found by the fuzz campaign)."""
    vm = vtx.VM(memory=1 << 16)
    v = vm.add_vcpu()
    v.vmwrite(F.GUEST_IDTR_LIMIT, 0xFFFFFFFF)
    assert v.idtr.limit == 0xFFFFFFFF
    assert v.check_entry().check == "GUEST_IDTR_LIMIT"
