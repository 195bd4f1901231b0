"""Debug exceptions (core/insn/debug.pxi; SDM Vol. 3B chapter 18, Vol. 3A
6.15): TF single-step, RF, DR0-DR3 instruction, data and I/O breakpoints,
DR6 and DR7.GD, INT1, and #DB in VMX non-root operation (the exception
bitmap's exit qualification, the pending-debug-exceptions field).

The guests run in 64-bit mode under the hosted hypervisor with an IDT whose
#DB handler logs (RIP, RFLAGS image, DR6, DR7) and the count, clears DR6,
sets RF in the image (so an instruction breakpoint lets the instruction
run) and returns with IRETQ.
"""

import pytest

import vtx
from insn_harness import make_vm

F = vtx.VmcsField
CODE = 0x1000
IDT = 0x3000
HANDLERS = 0x4000
COUNT = 0x30000
LOG = 0x30100
DATA = 0x40000
TF = 1 << 8
RF = 1 << 16
DR6_FIXED = 0xFFFF0FF0
BS = 1 << 14
BD = 1 << 13

DB_HANDLER = f"""
    push rax
    push rbx
    mov rbx, [{COUNT}]
    shl rbx, 5
    mov rax, [rsp + 16]
    mov [{LOG} + rbx], rax
    mov rax, [rsp + 32]
    mov [{LOG + 8} + rbx], rax
    mov rax, dr6
    mov [{LOG + 16} + rbx], rax
    mov rax, dr7
    mov [{LOG + 24} + rbx], rax
    xor eax, eax
    mov dr6, rax
    inc qword ptr [{COUNT}]
    or qword ptr [rsp + 32], {RF}
    pop rbx
    pop rax
    iretq
"""
IRET_HANDLER = "iretq"


def gate(handler):
    lo = (handler & 0xFFFF) | (0x18 << 16) | (0x8E << 40) | (((handler >> 16) & 0xFFFF) << 48)
    return lo.to_bytes(8, "little") + (handler >> 32).to_bytes(8, "little")


def lengths(lines):
    """Addresses of each line of 64-bit code assembled at CODE, and the end."""
    addrs = []
    at = CODE
    for line in lines:
        addrs.append(at)
        at += len(vtx.asm(line, bits=64, org=at))
    return addrs, at


def debug_vm(lines, intercept=0, regs=None, setup=None):
    vm, vcpu = make_vm(64, memory=1 << 20)
    vm.load(CODE, vtx.asm("\n".join(lines) + "\nhlt\n", bits=64, org=CODE))
    vm.load(HANDLERS, vtx.asm(DB_HANDLER, bits=64, org=HANDLERS))
    vm.load(HANDLERS + 0x200, vtx.asm(IRET_HANDLER, bits=64, org=HANDLERS + 0x200))
    idt = bytearray(16 * 256)
    for v in range(256):
        idt[16 * v:16 * v + 16] = gate(HANDLERS + 0x200)
    idt[16:32] = gate(HANDLERS)
    vm.write(IDT, bytes(idt))
    vcpu.idtr = vtx.DescriptorTable(IDT, 16 * 256 - 1)
    vcpu.vmwrite(F.EXCEPTION_BITMAP, intercept)
    for k, v in (regs or {}).items():
        setattr(vcpu, k, v)
    if setup:
        setup(vm, vcpu)
    return vm, vcpu


def run_until(vm, stop=(vtx.ExitReason.HLT,), budget=100_000):
    seen = []

    @vm.default
    def on_exit(vcpu, ex):
        seen.append(ex)
        if ex.reason in stop:
            return vtx.STOP
        return vtx.RETRY if ex.reason == vtx.ExitReason.EXCEPTION_OR_NMI else vtx.RESUME

    r = vm.run(max_instructions=budget)
    return seen, r


def log(vm):
    n = vm.read_u64(COUNT)
    return [tuple(vm.read_u64(LOG + 32 * i + 8 * k) for k in range(4)) for i in range(n)]


SET_TF = ["pushfq", f"or qword ptr [rsp], {TF}", "popfq"]
CLEAR_TF = ["pushfq", f"and qword ptr [rsp], {~TF}", "popfq"]


def test_single_step_traps_after_each_instruction():
    body = ["nop", "mov eax, 1", "add eax, 2"]
    lines = SET_TF + body + CLEAR_TF
    addrs, end = lengths(lines)
    vm, vcpu = debug_vm(lines)
    seen, r = run_until(vm)
    assert seen[-1].reason == vtx.ExitReason.HLT and vcpu.rax & 0xFF == 3
    entries = log(vm)
    # No trap after the POPF that set TF; one after every instruction that
    # began with TF = 1, including the POPF that clears it.
    expected_rips = addrs[4:] + [end]
    assert [e[0] for e in entries] == expected_rips
    for rip, fl, dr6, dr7 in entries:
        assert dr6 == DR6_FIXED | BS
        assert not fl & RF                         # a trap pushes RF as it was (0)
    # TF is in every pushed image but the last (after the POPF that cleared it).
    assert [bool(e[1] & TF) for e in entries] == [True] * (len(entries) - 1) + [False]
    assert not vcpu.rflags & TF


def test_single_step_after_mov_ss_is_held_one_instruction():
    body = ["mov ax, ss", "mov ss, ax", "nop", "nop"]
    lines = SET_TF + body + CLEAR_TF
    addrs, end = lengths(lines)
    vm, vcpu = debug_vm(lines)
    run_until(vm)
    rips = [e[0] for e in log(vm)]
    # After MOV SS no trap: it is held to the boundary after the first NOP,
    # where one #DB reports both.
    assert rips[:3] == [addrs[4], addrs[6], addrs[7]]


def test_int_n_clears_tf_and_traps_are_discarded():
    body = ["nop", "int 0x80", "nop", "nop"]
    lines = SET_TF + body + CLEAR_TF
    addrs, end = lengths(lines)
    vm, vcpu = debug_vm(lines)
    run_until(vm)
    rips = [e[0] for e in log(vm)]
    # No trap after INT 0x80: its delivery clears TF and drops the trap, the
    # handler (IRETQ) runs without TF, and IRETQ, which sets TF again, is
    # not followed by one either.  The NOP after INT 0x80 traps.
    assert rips[:3] == [addrs[4], addrs[6], addrs[7]]


def test_instruction_breakpoint_fault_and_rf():
    body = ["mov eax, 1", "add eax, 1", "add eax, 1"]
    addrs, end = lengths(body)

    def setup(vm, vcpu):
        vcpu.dr0 = addrs[1]
        vcpu.dr7 = 0x401            # L0, R/W0 = 00 (execution), LEN0 = 00
    vm, vcpu = debug_vm(body, setup=setup)
    vcpu.vmwrite(F.VM_ENTRY_CONTROLS, vcpu.vmread(F.VM_ENTRY_CONTROLS) | (1 << 2))   # load debug controls
    seen, r = run_until(vm)
    entries = log(vm)
    assert len(entries) == 1
    rip, fl, dr6, dr7 = entries[0]
    assert rip == addrs[1]                   # a fault: before the instruction
    assert dr6 == DR6_FIXED | 1              # B0
    assert not fl & RF                       # the handler sets RF itself
    assert vcpu.rax & 0xFF == 3              # it ran exactly once after the return
    assert not vcpu.rflags & RF              # cleared once an instruction completed


def test_data_write_and_readwrite_breakpoints():
    body = [f"mov eax, [{DATA}]", f"mov dword ptr [{DATA + 2}], 5", "nop",
            f"mov eax, [{DATA + 0x10}]", f"mov byte ptr [{DATA + 0x13}], 1", "nop"]
    addrs, end = lengths(body)

    def setup(vm, vcpu):
        vcpu.dr1 = DATA + 4                  # 4-byte write watch at DATA+4 (LEN1 = 11)
        vcpu.dr2 = DATA + 0x10               # 8-byte read/write watch (LEN2 = 10)
        dr7 = 0x400 | (1 << 2) | (1 << 4)
        dr7 |= (0b01 | (0b11 << 2)) << 20    # R/W1 = 01, LEN1 = 11
        dr7 |= (0b11 | (0b10 << 2)) << 24    # R/W2 = 11, LEN2 = 10
        vcpu.dr7 = dr7
    vm, vcpu = debug_vm(body, setup=setup)
    vcpu.vmwrite(F.VM_ENTRY_CONTROLS, vcpu.vmread(F.VM_ENTRY_CONTROLS) | (1 << 2))
    run_until(vm)
    entries = log(vm)
    # The read of DATA does not hit the write watch; the write of DATA+2..5
    # overlaps DATA+4 (trap after it); the read at DATA+0x10 and the write at
    # DATA+0x13 hit the read/write watch.
    assert [(e[0], e[2]) for e in entries] == [
        (addrs[2], DR6_FIXED | 2), (addrs[4], DR6_FIXED | 4), (addrs[5], DR6_FIXED | 4)]


def test_data_breakpoint_in_rep_stos_traps_after_the_iteration():
    body = ["cld", f"mov rdi, {DATA}", "mov ecx, 8", "mov al, 0xAB", "rep stosb", "nop"]
    addrs, end = lengths(body)

    def setup(vm, vcpu):
        vcpu.dr3 = DATA + 3
        vcpu.dr7 = 0x400 | (1 << 6) | (0b01 << 28)      # L3, write, 1 byte
    vm, vcpu = debug_vm(body, setup=setup)
    vcpu.vmwrite(F.VM_ENTRY_CONTROLS, vcpu.vmread(F.VM_ENTRY_CONTROLS) | (1 << 2))
    run_until(vm)
    entries = log(vm)
    assert len(entries) == 1
    rip, fl, dr6, dr7 = entries[0]
    assert rip == addrs[4]                    # still on REP STOSB
    assert fl & RF                            # a trap between iterations pushes RF = 1
    assert dr6 == DR6_FIXED | 8
    assert vm.read(DATA, 8) == b"\xab" * 8
    assert vcpu.rcx == 0


def test_general_detect():
    body = ["mov rax, 0x2000", "mov dr7, rax", "mov rbx, dr0", "nop"]
    addrs, end = lengths(body)
    vm, vcpu = debug_vm(body)
    run_until(vm)
    entries = log(vm)
    assert len(entries) == 1
    rip, fl, dr6, dr7 = entries[0]
    assert rip == addrs[2]                    # a fault on the MOV DR
    assert dr6 == DR6_FIXED | BD
    assert dr7 == 0x400                       # GD cleared on entry to the handler
    assert vcpu.rip == end                    # the MOV then ran (stopped at the HLT)


def test_icebp_is_a_db_trap_that_leaves_dr6():
    body = ["mov eax, 0x4002", "mov dr6, rax", ".byte 0xF1", "nop"]
    addrs, end = lengths(body)
    vm, vcpu = debug_vm(body)
    run_until(vm)
    entries = log(vm)
    assert [(e[0], e[2]) for e in entries] == [(addrs[3], DR6_FIXED | 0x4002)]


def test_icebp_at_cpl3_ignores_gate_dpl():
    # INT1 is not INT n: a DPL-0 gate does not make it #GP (it has no DPL
    # check), unlike INT 1 (CD 01), which is #GP(0x0A) at CPL 3 through a
    # DPL-0 gate.  Checked through the exception exits (both intercepted).
    vm, vcpu = debug_vm([".byte 0xF1"], intercept=(1 << 1) | (1 << 13))
    seen, r = run_until(vm, stop=(vtx.ExitReason.EXCEPTION_OR_NMI, vtx.ExitReason.HLT))
    ex = seen[0]
    assert ex.interruption_info & 0x7FF == 0x501            # #DB, type 5


def test_mov_dr4_dr5_alias_and_ud_with_de():
    body = ["mov eax, 0x4003", "mov dr4, rax", "mov rbx, dr6", "mov rcx, dr5"]
    vm, vcpu = debug_vm(body)
    run_until(vm)
    assert vcpu.rbx == DR6_FIXED | 0x4003
    assert vcpu.rcx == 0x400
    vm, vcpu = debug_vm(["mov rax, cr4", "or rax, 8", "mov cr4, rax", "mov rbx, dr4"], intercept=1 << 6)
    seen, r = run_until(vm, stop=(vtx.ExitReason.EXCEPTION_OR_NMI, vtx.ExitReason.HLT))
    assert seen[0].interruption_info & 0xFF == 6


def test_mov_dr7_high_bits_gp_in_64bit_mode():
    vm, vcpu = debug_vm(["mov rax, 1 << 32", "mov dr7, rax"], intercept=1 << 13)
    seen, r = run_until(vm, stop=(vtx.ExitReason.EXCEPTION_OR_NMI, vtx.ExitReason.HLT))
    assert seen[0].interruption_info & 0xFF == 13


def test_io_breakpoint_with_cr4_de():
    body = ["mov rax, cr4", "or rax, 8", "mov cr4, rax", "mov al, 1", "out 0x81, al", "out 0x90, al", "nop"]
    addrs, end = lengths(body)

    def setup(vm, vcpu):
        vcpu.dr0 = 0x80
        vcpu.dr7 = 0x401 | (0b10 << 16) | (0b01 << 18)     # L0, I/O, 2 bytes: ports 80H-81H
        vcpu.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS,
                     vcpu.vmread(F.PRIMARY_PROC_BASED_CONTROLS) & ~(1 << 24))   # no I/O exits
    vm, vcpu = debug_vm(body, setup=setup)
    vcpu.vmwrite(F.VM_ENTRY_CONTROLS, vcpu.vmread(F.VM_ENTRY_CONTROLS) | (1 << 2))
    seen, r = run_until(vm)
    assert not any(e.reason == vtx.ExitReason.IO_INSTRUCTION for e in seen)    # I/O exiting is off
    assert [(e[0], e[2]) for e in log(vm)] == [(addrs[5], DR6_FIXED | 1)]


# --- VMX -------------------------------------------------------------------------------


def test_single_step_exits_through_the_exception_bitmap():
    """The Python hypervisor single-steps the guest: TF set from the API,
    #DB intercepted; each exit reports BS in the qualification, a hardware
    exception (type 3), guest RIP on the next instruction, and DR6 is not
    written."""
    body = ["nop", "mov eax, 1", "add eax, 2", "nop"]
    addrs, end = lengths(body)
    vm, vcpu = debug_vm(body, intercept=1 << 1)
    vcpu.rflags = vcpu.rflags | TF
    seen, r = run_until(vm, budget=1000)
    db = [e for e in seen if e.reason == vtx.ExitReason.EXCEPTION_OR_NMI]
    assert [e.guest_rip for e in db] == addrs[1:] + [end]
    for e in db:
        assert e.qualification == BS
        assert e.interruption_info == 0x80000301
    assert vcpu.dr6 == DR6_FIXED
    assert vm.read_u64(COUNT) == 0


def test_pending_debug_exceptions_saved_in_mov_ss_shadow():
    body = ["mov ax, ss", "mov ss, ax", "cpuid"]
    vm, vcpu = debug_vm(body, intercept=1 << 1)
    vcpu.rflags = vcpu.rflags | TF
    seen, r = run_until(vm, stop=(vtx.ExitReason.CPUID, vtx.ExitReason.HLT), budget=1000)
    ex = seen[-1]
    assert ex.reason == vtx.ExitReason.CPUID
    assert vcpu.vmread(F.GUEST_INTERRUPTIBILITY_STATE) & 2
    assert vcpu.vmread(F.GUEST_PENDING_DEBUG_EXCEPTIONS) == BS


def test_pending_debug_exceptions_delivered_after_entry():
    vm, vcpu = debug_vm(["nop", "nop"], intercept=1 << 1)
    vcpu.vmwrite(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x1000 | 4)    # B2 and "enabled breakpoint"
    seen, r = run_until(vm, stop=(vtx.ExitReason.EXCEPTION_OR_NMI, vtx.ExitReason.HLT), budget=100)
    ex = seen[0]
    assert ex.reason == vtx.ExitReason.EXCEPTION_OR_NMI
    assert ex.guest_rip == CODE and ex.qualification == 4


def test_dr6_dr7_fixed_bits():
    body = ["xor eax, eax", "mov dr6, rax", "mov dr7, rax", "mov rbx, dr6", "mov rcx, dr7",
            "mov rax, -1", "mov eax, eax", "mov dr6, rax", "mov rdx, dr6"]
    vm, vcpu = debug_vm(body)
    run_until(vm)
    assert vcpu.rbx == DR6_FIXED               # reserved bits read as 1, B0-B3 BD BS BT as written
    assert vcpu.rcx == 0x400                   # DR7 bit 10 reads as 1
    assert vcpu.rdx == 0xFFFFFFFF & ~(0x1000)  # bit 12 reads as 0; bits 11, 16 (active low) as 1


def test_fault_image_has_rf_and_int_n_image_has_not():
    """A fault's pushed RFLAGS has RF = 1, a software interrupt's RF = 0
    (SDM Vol. 3B 18.3.1.1); an exception exit saves RF as that image would
    have it (Vol. 3C 28.3.3)."""
    handler = HANDLERS + 0x300
    body = ["ud2"]
    vm, vcpu = debug_vm(body)
    # #UD handler: record the RFLAGS image and skip the 2-byte UD2.
    vm.load(handler, vtx.asm(f"mov rax, [rsp + 16]\nmov [{DATA}], rax\nadd qword ptr [rsp], 2\n"
                             f"and qword ptr [rsp + 16], {~RF}\niretq", bits=64, org=handler))
    vm.write(IDT + 16 * 6, gate(handler))
    run_until(vm)
    assert vm.read_u64(DATA) & RF
    assert not vcpu.rflags & RF

    vm, vcpu = debug_vm(["int 0x40"])
    vm.load(handler, vtx.asm(f"mov rax, [rsp + 16]\nmov [{DATA}], rax\niretq", bits=64, org=handler))
    vm.write(IDT + 16 * 0x40, gate(handler))
    vm.write_u64(DATA, RF)
    run_until(vm)
    assert not vm.read_u64(DATA) & RF

    vm, vcpu = debug_vm(["ud2"], intercept=1 << 6)
    seen, r = run_until(vm, stop=(vtx.ExitReason.EXCEPTION_OR_NMI, vtx.ExitReason.HLT))
    assert seen[0].reason == vtx.ExitReason.EXCEPTION_OR_NMI
    assert vcpu.rflags & RF


def test_rf_alone_is_cleared_after_one_instruction():
    vm, vcpu = debug_vm(["nop", "nop"])
    vcpu.rflags = vcpu.rflags | RF
    run_until(vm)
    assert not vcpu.rflags & RF


def test_disabled_breakpoints_do_nothing_and_bits_report_only_enabled_ones():
    body = [f"mov dword ptr [{DATA}], 1", "nop"]
    addrs, end = lengths(body)

    def setup(vm, vcpu):
        vcpu.dr0 = DATA
        vcpu.dr1 = DATA
        vcpu.dr2 = addrs[1]
        # DR0 enabled (write, 4 bytes); DR1 the same condition but not
        # enabled; DR2 an execution breakpoint that is not enabled.
        vcpu.dr7 = 0x401 | ((0b01 | 0b11 << 2) << 16) | ((0b01 | 0b11 << 2) << 20)
    vm, vcpu = debug_vm(body, setup=setup)
    vcpu.vmwrite(F.VM_ENTRY_CONTROLS, vcpu.vmread(F.VM_ENTRY_CONTROLS) | (1 << 2))
    run_until(vm)
    assert [(e[0], e[2]) for e in log(vm)] == [(addrs[1], DR6_FIXED | 1)]


# --- 16- and 32-bit code ----------------------------------------------------------------


def test_single_step_in_real_mode():
    """The IVT's vector 1 counts the traps; TF is set and cleared with
    PUSHF/POPF as real-mode software does."""
    body = ["pushf", "pop ax", "or ax, 0x100", "push ax", "popf", "nop", "nop",
            "pushf", "pop ax", "and ax, 0xFEFF", "push ax", "popf"]
    vm, vcpu = make_vm(16)
    vm.load(0x1000, vtx.asm("\n".join(body) + "\nhlt", bits=16, org=0x1000))
    vm.load(0x600, vtx.asm("inc word ptr [0x500]\niret", bits=16, org=0x600))
    vm.write(4, (0x600).to_bytes(2, "little") + b"\x00\x00")
    vm.write(0x500, b"\x00\x00")
    vcpu.vmwrite(F.EXCEPTION_BITMAP, 0)
    seen, r = run_until(vm)
    assert seen[-1].reason == vtx.ExitReason.HLT
    assert int.from_bytes(vm.read(0x500, 2), "little") == 7     # after each instruction from the first NOP
    assert not vcpu.rflags & TF


def test_data_breakpoint_in_protected_mode():
    body = [f"mov eax, [{DATA}]", f"mov [{DATA}], eax", "nop", "mov eax, dr6"]
    vm, vcpu = make_vm(32)
    vm.load(0x1000, vtx.asm("\n".join(body) + "\nhlt", bits=32, org=0x1000))
    handler = 0x600
    vm.load(handler, vtx.asm(f"push eax\nmov eax, dr6\nmov [{COUNT}], eax\nmov eax, [esp + 4]\n"
                             f"mov [{COUNT + 4}], eax\npop eax\niretd", bits=32, org=handler))
    gate32 = (handler & 0xFFFF) | (0x08 << 16) | (0x8E << 40) | ((handler >> 16) << 48)
    vm.write_u64(IDT + 8, gate32)
    vcpu.idtr = vtx.DescriptorTable(IDT, 8 * 32 - 1)
    vcpu.vmwrite(F.EXCEPTION_BITMAP, 0)
    vcpu.dr0 = DATA | (1 << 32)               # outside IA-32e mode only bits 31:0 take part
    vcpu.dr7 = 0x401 | ((0b01 | 0b11 << 2) << 16)
    vcpu.vmwrite(F.VM_ENTRY_CONTROLS, vcpu.vmread(F.VM_ENTRY_CONTROLS) | (1 << 2))
    seen, r = run_until(vm)
    assert seen[-1].reason == vtx.ExitReason.HLT
    addrs = [0x1000]
    for line in body:
        addrs.append(addrs[-1] + len(vtx.asm(line, bits=32, org=addrs[-1])))
    assert vm.read_u64(COUNT) & 0xFFFFFFFF == DR6_FIXED | 1
    assert vm.read_u64(COUNT) >> 32 == addrs[2]        # trap after the write, none after the read
