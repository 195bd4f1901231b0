"""Events in VMX non-root operation (core/vmx/events.pxi): VM-entry event
injection (SDM Vol. 3C 27.6), external interrupts and NMIs raised from
Python, blocking by STI, MOV SS and NMI, interrupt- and NMI-window exiting
(26.7.5, 26.7.6), and the HLT activity state.  Section numbers are those of
the pinned SDM edition (325462-080US).

The guests get an IVT or IDT whose every vector points at its own `hlt`
(HANDLERS + 16 * vector), so the HLT exit's RIP names the vector and the
frame the processor pushed is on the guest stack at that moment.
"""

import pytest

import vtx
from vtx import ExitControls, ExitReason as R, PinBased, ProcBased, VmcsField as F
from conftest import needs_as

pytestmark = needs_as

MODES = {"real": 16, "protected": 32, "long": 64}
CODE = 0x1000
HANDLERS = 0x3000           # vector v's handler: `hlt` at HANDLERS + 16 * v
IDT = 0x6000
STACK = 0x8000
MEM = 1 << 20
CS = {"real": 0, "protected": 0x08, "long": 0x18}
VALID = 1 << 31
IF = 1 << 9

INTERRUPT_GATE = 0xE
TRAP_GATE = 0xF


def gate(mode, vector, handler, kind=INTERRUPT_GATE, present=True):
    """The IVT entry or IDT gate descriptor for `vector` (SDM Vol. 3A 6.11,
    6.14.1; real mode 20.1.4)."""
    if mode == "real":
        return (handler & 0xFFFF) | (0 << 16)
    attr = (0x80 if present else 0) | (kind if mode == "long" else kind)
    lo = (handler & 0xFFFF) | (CS[mode] << 16) | (attr << 40) | (((handler >> 16) & 0xFFFF) << 48)
    return lo | ((handler >> 32) << 64) if mode == "long" else lo


def gate_size(mode):
    return {"real": 4, "protected": 8, "long": 16}[mode]


def write_gate(vm, mode, vector, **kw):
    base = 0 if mode == "real" else IDT
    size = gate_size(mode)
    vm.write(base + size * vector, gate(mode, vector, HANDLERS + 16 * vector, **kw).to_bytes(size, "little"))


def make_vm(src, mode="protected", handlers=True, idt_limit=None, rflags=0x2, hlt_stops=True):
    """A guest at CODE with a handler for every vector (each a `hlt`, or an
    own one written by the test) and STACK as its stack."""
    vm = vtx.VM(memory=MEM)
    vm.load(CODE, vtx.asm(src, bits=MODES[mode], org=CODE))
    vm.add_vcpu()
    v = getattr(vm, f"setup_{mode}_mode")(entry=CODE, stack=STACK)
    if handlers:
        vm.write(HANDLERS, b"\xf4" * 0x1000)
        for vector in range(256):
            write_gate(vm, mode, vector)
    size = gate_size(mode)
    v.idtr = vtx.DescriptorTable(0 if mode == "real" else IDT,
                                 256 * size - 1 if idt_limit is None else idt_limit)
    v.rflags = rflags
    if hlt_stops:
        vm.on(R.HLT)(lambda vcpu, e: vtx.STOP)
    return vm


def set_ctl(v, field, set_bits=0, clear_bits=0):
    v.vmwrite(field, (v.vmread(field) | int(set_bits)) & ~int(clear_bits))


def inject(v, typ, vector, error_code=None, length=0):
    info = VALID | (typ << 8) | vector | ((1 << 11) if error_code is not None else 0)
    v.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, info)
    v.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, error_code or 0)
    v.vmwrite(F.VM_ENTRY_INSTRUCTION_LENGTH, length)
    return info


def frame(vm, mode, n):
    """The n stack slots the processor pushed, from the top."""
    v = vm.vcpu
    if mode == "real":
        return [vm.read_u16(v.ss.base + ((v.rsp + 2 * i) & 0xFFFF)) for i in range(n)]
    if mode == "protected":
        return [vm.read_u32(v.rsp + 4 * i) for i in range(n)]
    return [vm.read_u64(v.rsp + 8 * i) for i in range(n)]


def handler_of(rip):
    assert HANDLERS <= rip < HANDLERS + 0x1000 and rip % 16 == 0, hex(rip)
    return (rip - HANDLERS) // 16


# ---------------------------------------------------------------------------
# VM-entry event injection (SDM 27.6.1): every vectored type, every mode
# ---------------------------------------------------------------------------

# (type, vector, error code or None, instruction length, what the event is)
INJECTIONS = [
    (0, 0x20, None, 0, "external interrupt"),
    (2, 2, None, 0, "NMI"),
    (3, 6, None, 0, "#UD"),
    (3, 13, 0x1234, 0, "#GP with an error code"),
    (4, 0x80, None, 2, "INT 0x80"),
    (5, 1, None, 1, "INT1"),
    (6, 3, None, 1, "INT3"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("typ,vector,err,length,what", INJECTIONS, ids=[i[4] for i in INJECTIONS])
def test_injection_delivers_through_the_ivt_or_idt(mode, typ, vector, err, length, what):
    if mode == "real" and err is not None:
        err = None          # no error codes in real mode (entry check: deliver-error-code needs CR0.PE)
    vm = make_vm("nop\nhlt", mode, rflags=0x202 | (1 << 0))      # IF and CF set
    v = vm.vcpu
    if typ != 0:
        # STI blocking (not allowed with an injected external interrupt):
        # a vectoring entry ends it (27.7.1).
        v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 1)
    inject(v, typ, vector, err, length)
    assert v.check_entry() is None
    r = vm.run()
    # The handler of that vector ran (not the guest's first instruction),
    # although the exception bitmap intercepts every exception: it does not
    # apply to the injected event (27.6.1.2).
    assert r.exits == {R.HLT: 1} and handler_of(r.exit.guest_rip) == vector
    ret = CODE + length             # software types return past the instruction
    if mode == "real":
        assert frame(vm, mode, 3) == [ret, 0, 0x203]
        assert v.rsp == STACK - 6
    else:
        words = frame(vm, mode, 6)
        if err is not None:
            assert words[0] == err
            words = words[1:]
        assert words[:3] == [ret, CS[mode], 0x203]
        if mode == "long":
            assert words[3:5] == [STACK, 0x10]       # RSP and SS, always pushed in 64-bit mode
            assert v.rsp == STACK - 8 * (5 + (err is not None))
        else:
            assert v.rsp == STACK - 4 * (3 + (err is not None))
    assert v.cs.selector == CS[mode]
    assert not v.rflags & IF                    # an interrupt gate (and real mode) clears IF
    state = v.vmread(F.GUEST_INTERRUPTIBILITY_STATE)
    assert state == (8 if typ == 2 else 0)      # an NMI blocks NMIs until IRET
    assert v.vmread(F.VM_ENTRY_INTERRUPTION_INFO) & VALID == 0
    assert v.events == 1 and v.instructions == 0     # the delivery is an event; the handler's HLT exits


def test_injected_event_through_a_trap_gate_keeps_if():
    vm = make_vm("hlt", "protected", rflags=0x202)
    write_gate(vm, "protected", 0x40, kind=TRAP_GATE)
    inject(vm.vcpu, 0, 0x40)
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 0x40 and vm.vcpu.rflags & IF


def test_injection_wakes_a_halted_guest():
    """27.7.2: after a vectoring entry the processor is active, although the
    activity state said HLT."""
    vm = make_vm("nop\nhlt", "protected", rflags=0x202)
    v = vm.vcpu
    v.vmwrite(F.GUEST_ACTIVITY_STATE, 1)
    inject(v, 0, 0x21)
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 0x21 and frame(vm, "protected", 1) == [CODE]
    assert v.vmread(F.GUEST_ACTIVITY_STATE) == 0


def test_injected_software_interrupt_into_a_guest_that_irets():
    """The injected INT n returns past its instruction: the guest's IRET
    lands at RIP + VM-entry instruction length."""
    vm = make_vm("""
        int 0x50                # injected below as if it had run: its 2 bytes are skipped
        mov eax, 1
        hlt
    handler:
        mov ebx, 2
        iretd
    """, "protected", rflags=0x202)
    v = vm.vcpu
    handler = CODE + 2 + 5 + 1
    vm.write(IDT + 8 * 0x50, gate("protected", 0x50, handler).to_bytes(8, "little"))
    inject(v, 4, 0x50, length=2)
    r = vm.run()
    assert r.exit.reason == R.HLT and r.exit.guest_rip == CODE + 7
    assert (v.eax, v.ebx) == (1, 2) and v.rflags & IF


# --- a fault while delivering the injected event ------------------------------

def test_idt_limit_fault_while_delivering_an_injected_interrupt_exits_with_idt_vectoring_info():
    vm = make_vm("hlt", "protected", idt_limit=0xFF, rflags=0x202)      # vector 0x20 is beyond it
    v = vm.vcpu
    info = inject(v, 0, 0x20)
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: vtx.STOP)
    r = vm.run()
    e = r.exit
    # #GP(vector * 8 + 2 + EXT): the IDT bit and EXT, an external event.
    assert (e.reason, e.interruption_info, e.interruption_error_code) == (0, VALID | 0xB00 | 13, 0x20 * 8 + 3)
    assert (e.idt_vectoring_info, e.idt_vectoring_error_code) == (info, 0)
    assert e.instruction_length == 0 and e.guest_rip == CODE
    assert v.rsp == STACK and v.vmread(F.GUEST_RFLAGS) == 0x202     # nothing was delivered


def test_not_present_gate_for_an_injected_software_interrupt():
    """#NP(vector * 8 + 2): EXT is 0 for INT n; the exit reports the injected
    INT n and its instruction length (28.2.4, 28.2.5)."""
    vm = make_vm("hlt", "protected", rflags=0x202)
    write_gate(vm, "protected", 0x80, present=False)
    v = vm.vcpu
    info = inject(v, 4, 0x80, length=2)
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: vtx.STOP)
    e = vm.run().exit
    assert (e.interruption_info, e.interruption_error_code) == (VALID | 0xB00 | 11, 0x80 * 8 + 2)
    assert (e.idt_vectoring_info, e.instruction_length) == (info, 2)


def test_not_present_gate_for_an_injected_exception_the_guest_takes_as_a_fault():
    """With #NP not intercepted, the fault while delivering the injected #UD
    goes to the guest's own #NP handler (a benign event, then a
    contributory fault: handled one after the other, SDM Vol. 3A Table 6-5)."""
    vm = make_vm("hlt", "long")
    write_gate(vm, "long", 6, present=False)
    v = vm.vcpu
    set_ctl(v, F.EXCEPTION_BITMAP, clear_bits=1 << 11)
    inject(v, 3, 6)
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 11
    assert frame(vm, "long", 2) == [6 * 8 + 3, CODE]      # #NP(vector * 8 | IDT | EXT), then the return RIP


def test_double_fault_while_delivering_an_injected_exception():
    """Injected #GP whose gate is not present: #NP while delivering a
    contributory exception is a #DF (Table 6-5), which the bitmap
    intercepts."""
    vm = make_vm("hlt", "protected")
    write_gate(vm, "protected", 13, present=False)
    v = vm.vcpu
    set_ctl(v, F.EXCEPTION_BITMAP, clear_bits=(1 << 11) | (1 << 13))
    inject(v, 3, 13, error_code=0)
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: vtx.STOP)
    e = vm.run().exit
    assert (e.interruption_info, e.interruption_error_code) == (VALID | 0xB00 | 8, 0)


def test_triple_fault_while_delivering_an_injected_exception():
    vm = make_vm("hlt", "protected", idt_limit=0)
    v = vm.vcpu
    v.vmwrite(F.EXCEPTION_BITMAP, 0)
    inject(v, 3, 13, error_code=0)
    vm.on(R.TRIPLE_FAULT)(lambda vcpu, e: vtx.STOP)
    assert vm.run().exit.reason == R.TRIPLE_FAULT


def test_fault_delivering_an_injected_event_is_an_exit_even_with_no_budget_left():
    vm = make_vm("hlt", "protected", idt_limit=0, rflags=0x202)
    inject(vm.vcpu, 0, 0x30)
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: vtx.STOP)
    r = vm.run(max_instructions=1)
    assert r.stop == "stop" and r.exit.idt_vectoring_info == VALID | 0x30


TSS_SEL = 0x28


def task_gate_to_tss(vm, vector, busy=False):
    """IDT entry `vector` a task gate for TSS_SEL, and GDT entry TSS_SEL a
    present 32-bit TSS descriptor (limit 67H at 9000H; busy or available):
    the checks on the TSS descriptor come before the task-switch exit (SDM
    Vol. 3C 26.4.2)."""
    vm.write(IDT + 8 * vector, ((TSS_SEL << 16) | (0x85 << 40)).to_bytes(8, "little"))
    desc = 0x67 | (0x9000 << 16) | ((0x8B if busy else 0x89) << 40)
    vm.write(vm.vcpu.gdtr.base + TSS_SEL, desc.to_bytes(8, "little"))


def test_injection_through_a_task_gate_is_a_task_switch_exit():
    # A task switch in VMX non-root operation is a VM exit (SDM 26.2): reason
    # 9, qualification = the gate's TSS selector with source 3 (Table 28-2),
    # during the injected event's delivery (IDT-vectoring information).
    vm = make_vm("hlt", "protected", rflags=0x202)
    task_gate_to_tss(vm, 0x22)
    v = vm.vcpu
    inject(v, 0, 0x22)
    seen = []
    vm.default(lambda vcpu, ex: seen.append(ex) or vtx.STOP)
    vm.run(max_instructions=10)
    ex = seen[0]
    assert ex.reason == R.TASK_SWITCH
    assert ex.qualification == TSS_SEL | (3 << 30)
    assert ex.qualification_fields() == {"selector": TSS_SEL, "source": 3}
    assert ex.idt_vectoring_info == VALID | 0x22 and ex.instruction_length == 0
    assert v.rip == CODE


def test_int_n_through_a_task_gate_exits_with_its_length():
    vm = make_vm("int 0x23", "protected")
    task_gate_to_tss(vm, 0x23)
    seen = []
    vm.default(lambda vcpu, ex: seen.append(ex) or vtx.STOP)
    vm.run(max_instructions=10)
    ex = seen[0]
    assert (ex.reason, ex.qualification) == (R.TASK_SWITCH, TSS_SEL | (3 << 30))
    assert ex.idt_vectoring_info == VALID | (4 << 8) | 0x23 and ex.instruction_length == 2


def test_iret_with_nt_is_a_task_switch_exit():
    # IRET with NT = 1 returns to the task in the previous-task link of the
    # current TSS: source 1 (Table 28-2), the link as the selector.
    vm = make_vm("iret", "protected")
    v = vm.vcpu
    tss = 0x9000
    vm.write(tss, (TSS_SEL).to_bytes(2, "little"))
    task_gate_to_tss(vm, 0x23, busy=True)       # the link must name a busy TSS
    v.tr = vtx.Segment(0x20, tss, 0x67, 0x8B)
    v.rflags = 0x4002                   # NT
    seen = []
    vm.default(lambda vcpu, ex: seen.append(ex) or vtx.STOP)
    vm.run(max_instructions=10)
    ex = seen[0]
    assert (ex.reason, ex.qualification, ex.instruction_length) == (R.TASK_SWITCH, TSS_SEL | (1 << 30), 1)
    assert ex.idt_vectoring_info == 0


@pytest.mark.parametrize("state,info,check", [
    (1, VALID | (4 << 8) | 0x80, "GUEST_ACTIVITY_STATE_HLT_INJECTION"),       # HLT: no INT n
    (1, VALID | (3 << 8) | 6, "GUEST_ACTIVITY_STATE_HLT_INJECTION"),          # HLT: no #UD (only #DB, #MC)
    (0, VALID | (7 << 8) | 1, "VM_ENTRY_INTERRUPTION_VECTOR_OTHER_EVENT"),    # other event: only vector 0 (MTF)
    (0, VALID | (1 << 8) | 2, "VM_ENTRY_INTERRUPTION_TYPE_RESERVED"),         # type 1 is reserved
])
def test_injection_entry_checks(state, info, check):
    vm = make_vm("hlt", "protected", rflags=0x202)
    v = vm.vcpu
    v.vmwrite(F.GUEST_ACTIVITY_STATE, state)
    v.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, info)
    v.vmwrite(F.VM_ENTRY_INSTRUCTION_LENGTH, 2)
    err = v.check_entry()
    assert err is not None and err.check == check
    with pytest.raises(vtx.VmEntryError):
        vm.run()


def test_injecting_an_nmi_under_virtual_nmi_blocking_fails_the_entry():
    vm = make_vm("hlt", "protected")
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.NMI_EXITING | PinBased.VIRTUAL_NMIS)
    v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 8)
    inject(v, 2, 2)
    assert v.check_entry().check == "GUEST_INTERRUPTIBILITY_NMI_VIRTUAL_NMIS"
    v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 0)
    assert v.check_entry() is None
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 2
    assert v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 8        # virtual-NMI blocking


# ---------------------------------------------------------------------------
# External interrupts raised from Python
# ---------------------------------------------------------------------------

def test_interrupt_waits_for_sti_and_one_more_instruction():
    """Blocking by STI lasts exactly one instruction (SDM Vol. 3C Table
    25-3): the interrupt pending since before STI is taken after the
    instruction that follows it."""
    vm = make_vm("""
        mov esi, 5
        sti
        mov esi, 6
        mov esi, 7
        hlt
    """, "protected")
    v = vm.vcpu
    v.raise_interrupt(0x30)
    assert v.pending_interrupts == (0x30,)
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 0x30
    assert v.esi == 6
    assert frame(vm, "protected", 3) == [CODE + 5 + 1 + 5, 0x08, 0x202]
    assert v.pending_interrupts == ()


def test_interrupt_after_popf_and_in_a_translated_loop():
    """IF set by POPF opens the window at once, and a loop that runs as a
    translated block is interrupted at the boundary where the interrupt
    became deliverable, not at the end of its run."""
    vm = make_vm("""
        push 0x202
        popfd
        mov ecx, 0
    1:  inc ecx
        cmp ecx, 100000
        jne 1b
        hlt
    """, "protected")
    v = vm.vcpu
    v.raise_interrupt(0x41)
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 0x41
    assert v.ecx == 0 and frame(vm, "protected", 1) == [CODE + 5 + 1]     # PUSH imm32, POPFD


def test_highest_pending_vector_first():
    vm = make_vm("nop\nhlt", "protected", rflags=0x202)
    v = vm.vcpu
    for vec in (0x31, 0x90, 0x45):
        v.raise_interrupt(vec)
    assert v.pending_interrupts == (0x31, 0x45, 0x90)
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 0x90
    assert v.pending_interrupts == (0x31, 0x45)       # IF = 0 in the handler: the rest wait
    v.clear_interrupt(0x45)
    assert v.pending_interrupts == (0x31,)
    v.clear_interrupt()
    assert v.pending_interrupts == ()


def test_masked_interrupt_does_not_keep_the_run_from_its_budget():
    vm = make_vm("1: jmp 1b", "protected")
    v = vm.vcpu
    v.raise_interrupt(0x30)
    r = vm.run(max_instructions=1000)
    assert r.stop == "budget" and r.instructions == 1000 and v.pending_interrupts == (0x30,)


@pytest.mark.parametrize("ack", [True, False])
def test_external_interrupt_exiting(ack):
    """Reason 1.  RFLAGS.IF does not mask the interrupt (Table 25-5).  With
    "acknowledge interrupt on exit" the exit takes the vector (valid, type
    0); without it the information is invalid and the interrupt stays
    pending (28.2.2)."""
    vm = make_vm("nop\nhlt", "long")
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.EXTERNAL_INTERRUPT_EXITING)
    set_ctl(v, F.VM_EXIT_CONTROLS, ExitControls.ACKNOWLEDGE_INTERRUPT_ON_EXIT if ack else 0,
            0 if ack else ExitControls.ACKNOWLEDGE_INTERRUPT_ON_EXIT)
    v.raise_interrupt(0x33)
    seen = []

    @vm.on(R.EXTERNAL_INTERRUPT)
    def ext(vcpu, e):
        assert isinstance(e, vtx.ExternalInterruptExit)
        seen.append((e.guest_rip, e.interruption_info, e.qualification, e.instruction_length,
                     vcpu.pending_interrupts, e.vector))
        vcpu.clear_interrupt()
        return vtx.RETRY

    r = vm.run()
    assert seen == [(CODE, (VALID | 0x33) if ack else 0, 0, 0, () if ack else (0x33,), 0x33 if ack else None)]
    assert r.exit.reason == R.HLT and r.exit.guest_rip == CODE + 1


def test_external_interrupt_exit_waits_for_the_mov_ss_shadow():
    """MOV SS blocks external interrupts (and so their exits) for the
    instruction after it; the blocking saved when the budget stops the run
    right after MOV SS is loaded again by the next entry."""
    head = "mov ax, ss\nmov ss, ax\n"
    vm = make_vm(head + "mov eax, 1\nhlt", "protected")
    after = CODE + len(vtx.asm(head, bits=32, org=CODE))
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.EXTERNAL_INTERRUPT_EXITING)
    set_ctl(v, F.VM_EXIT_CONTROLS, ExitControls.ACKNOWLEDGE_INTERRUPT_ON_EXIT)
    vm.on(R.EXTERNAL_INTERRUPT)(lambda vcpu, e: vtx.STOP)
    assert vm.run(max_instructions=2).stop == "budget"
    assert v.rip == after and v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 2
    v.raise_interrupt(0x20)
    r = vm.run()
    assert r.exit.reason == R.EXTERNAL_INTERRUPT and r.exit.guest_rip == after + 5
    assert r.exit.interruption_info == VALID | 0x20


# ---------------------------------------------------------------------------
# HLT: woken by an event it can take (SDM Vol. 2 HLT; 27.7.2)
# ---------------------------------------------------------------------------

def test_halted_guest_wakes_on_an_interrupt():
    vm = make_vm("""
        sti
        hlt
        mov esi, 1
        out 0x80, al
    """, "protected", hlt_stops=False)
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, clear_bits=ProcBased.HLT_EXITING)
    r = vm.run()
    assert r.stop == "halted" and v.rip == CODE + 2
    assert v.vmread(F.GUEST_ACTIVITY_STATE) == 1
    r = vm.run()
    assert r.stop == "halted" and v.instructions == 2      # still nothing to wake it
    v.raise_interrupt(0x30)
    vm.on(R.HLT)(lambda vcpu, e: vtx.STOP)
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.HLT_EXITING)
    r = vm.run()
    # The handler's own HLT exits: it was entered with the return address
    # past the guest's HLT.
    assert handler_of(r.exit.guest_rip) == 0x30
    assert frame(vm, "protected", 3) == [CODE + 2, 0x08, 0x202]
    assert v.vmread(F.GUEST_ACTIVITY_STATE) == 0


def test_halted_guest_with_interrupts_masked_stays_halted():
    vm = make_vm("cli\nhlt", "protected", hlt_stops=False)
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, clear_bits=ProcBased.HLT_EXITING)
    v.raise_interrupt(0x30)
    r = vm.run()
    assert r.stop == "halted" and v.pending_interrupts == (0x30,)
    v.raise_nmi()               # an NMI wakes it
    vm.on(R.HLT)(lambda vcpu, e: vtx.STOP)
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.HLT_EXITING)
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 2 and frame(vm, "protected", 1) == [CODE + 2]


def test_external_interrupt_exit_from_the_hlt_state():
    """The exit leaves the guest halted (the saved activity state is HLT);
    injecting the acknowledged interrupt wakes it."""
    vm = make_vm("hlt\nmov eax, 1\nhlt", "protected")
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, clear_bits=ProcBased.HLT_EXITING)
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.EXTERNAL_INTERRUPT_EXITING)
    set_ctl(v, F.VM_EXIT_CONTROLS, ExitControls.ACKNOWLEDGE_INTERRUPT_ON_EXIT)
    assert vm.run().stop == "halted"
    v.raise_interrupt(0x61)
    seen = []

    @vm.on(R.EXTERNAL_INTERRUPT)
    def ext(vcpu, e):
        seen.append((e.guest_rip, vcpu.vmread(F.GUEST_ACTIVITY_STATE)))
        vcpu.rflags = vcpu.rflags | IF
        vcpu.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, e.interruption_info)
        set_ctl(vcpu, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.HLT_EXITING)
        return vtx.RETRY

    r = vm.run()
    assert seen == [(CODE + 1, 1)]
    assert handler_of(r.exit.guest_rip) == 0x61 and frame(vm, "protected", 1) == [CODE + 1]


# ---------------------------------------------------------------------------
# NMIs: blocking until IRET, NMI exiting, virtual NMIs
# ---------------------------------------------------------------------------

NMI_GUEST = """
        mov esi, 0
    1:  inc esi
        cmp esi, 50
        jne 1b
        hlt
    nmi:
        inc dword ptr [0x5000]          # NMIs taken
        inc dword ptr [0x5004]          # depth
        mov eax, [0x5004]
        cmp eax, [0x5008]
        jbe 2f
        mov [0x5008], eax               # deepest nesting seen
    2:  mov eax, [0x5000]
        mov [0x5010 + eax * 4], esi     # where the main loop was
        out 0x80, al                    # the host raises a second NMI here, once
        mov ecx, 20                     # the rest of the handler: the second NMI must wait for IRET
    3:  dec ecx
        jnz 3b
        dec dword ptr [0x5004]
        iretd
"""


def nmi_vm():
    vm = make_vm(NMI_GUEST, "protected")
    nmi = CODE + len(vtx.asm(NMI_GUEST.split("nmi:")[0], bits=32, org=CODE))
    vm.write(IDT + 8 * 2, gate("protected", 2, nmi).to_bytes(8, "little"))
    return vm


def test_nmi_blocking_lasts_until_iret():
    vm = nmi_vm()
    v = vm.vcpu
    raised = []

    @vm.on(R.IO_INSTRUCTION)
    def out(vcpu, e):
        if not raised:
            raised.append(vcpu.vmread(F.GUEST_INTERRUPTIBILITY_STATE))
            vcpu.raise_nmi()
        return vtx.RESUME

    v.raise_nmi()
    r = vm.run()
    assert r.exit.reason == R.HLT and v.esi == 50
    assert raised == [8]                                # blocking by NMI in the handler
    count, depth, deepest = (vm.read_u32(0x5000 + 4 * i) for i in range(3))
    # Two NMIs, never nested; the second was taken right after the first's
    # IRET, before the main loop went on.
    assert (count, depth, deepest) == (2, 0, 1)
    assert [vm.read_u32(0x5014), vm.read_u32(0x5018)] == [0, 0]
    assert v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 0
    assert not v.nmi_pending


def test_nmi_blocked_by_the_interruptibility_state_at_entry():
    """Bit 3 loaded at VM entry blocks NMIs until the guest's IRET."""
    vm = make_vm("""
        pushfd
        push cs
        push offset 1f
        iretd
    1:  nop
        hlt
    """, "protected")
    v = vm.vcpu
    v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 8)
    v.raise_nmi()
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 2
    assert frame(vm, "protected", 1) == [CODE + 8]          # after PUSHFD, PUSH CS, PUSH imm32, IRETD


def test_nmi_exiting():
    vm = make_vm("nop\nhlt", "protected")
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.NMI_EXITING)
    v.raise_nmi()
    assert v.nmi_pending
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: vtx.STOP)
    e = vm.run().exit
    assert (e.reason, e.interruption_info, e.qualification, e.guest_rip) == (0, VALID | (2 << 8) | 2, 0, CODE)
    assert e.type == 2 and e.vector == 2 and not v.nmi_pending


def test_nmi_exiting_keeps_real_nmi_blocking_across_iret():
    """With "NMI exiting" and without "virtual NMIs", blocking by NMI stays
    while in non-root operation: the guest's IRET does not end it (27.7.1,
    26.3)."""
    vm = make_vm("""
        pushfd
        push cs
        push offset 1f
        iretd
    1:  nop
        hlt
    """, "protected")
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.NMI_EXITING)
    v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 8)
    v.raise_nmi()
    r = vm.run()
    assert r.exit.reason == R.HLT and r.exit.guest_rip == CODE + 9
    assert v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 8 and v.nmi_pending


def test_iret_fault_reports_nmi_unblocking():
    """Bit 12 of the exit interruption information: the faulting IRET had
    removed virtual-NMI blocking (28.2.2)."""
    vm = make_vm("""
        pushfd
        push 0x30                       # not a code segment selector: #GP
        push 0
        iretd
    """, "protected")
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.NMI_EXITING | PinBased.VIRTUAL_NMIS)
    v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 8)
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: vtx.STOP)
    e = vm.run().exit
    assert e.interruption_info == VALID | (1 << 12) | 0xB00 | 13 and e.interruption_error_code == 0x30
    assert v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 0


# ---------------------------------------------------------------------------
# Interrupt-window (reason 7) and NMI-window (reason 8) exiting
# ---------------------------------------------------------------------------

def window_exits(vm, reason):
    seen = []

    @vm.on(reason)
    def window(vcpu, e):
        seen.append((e.guest_rip, e.qualification, e.instruction_length, e.interruption_info))
        return vtx.STOP

    return seen


@pytest.mark.parametrize("mode", MODES)
def test_interrupt_window_opens_after_sti_and_one_instruction(mode):
    vm = make_vm("nop\nsti\nnop\nnop\nhlt", mode)
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.INTERRUPT_WINDOW_EXITING)
    seen = window_exits(vm, R.INTERRUPT_WINDOW)
    r = vm.run()
    assert r.stop == "stop" and seen == [(CODE + 3, 0, 0, 0)]
    assert v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 0 and v.instructions == 3


def test_interrupt_window_open_at_entry_exits_at_once():
    vm = make_vm("nop\nhlt", "protected", rflags=0x202)
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.INTERRUPT_WINDOW_EXITING)
    seen = window_exits(vm, R.INTERRUPT_WINDOW)
    vm.run()
    assert seen == [(CODE, 0, 0, 0)] and v.instructions == 0
    # STI blocking in the VMCS keeps it closed for one instruction.
    v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 1)
    vm.run()
    assert seen[-1][0] == CODE + 1


def test_interrupt_window_exit_comes_before_the_interrupt_and_after_an_nmi():
    vm = make_vm("nop\nhlt", "protected", rflags=0x202)
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.INTERRUPT_WINDOW_EXITING)
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.NMI_EXITING)
    order = []
    vm.on(R.INTERRUPT_WINDOW)(lambda vcpu, e: order.append("window") or vtx.STOP)
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: order.append("nmi") or vtx.RETRY)
    v.raise_interrupt(0x30)
    v.raise_nmi()
    vm.run()
    assert order == ["nmi", "window"] and v.pending_interrupts == (0x30,)
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, clear_bits=ProcBased.INTERRUPT_WINDOW_EXITING)
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 0x30


def test_interrupt_window_wakes_a_halted_guest():
    vm = make_vm("sti\nhlt\nnop", "protected", hlt_stops=False)
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, clear_bits=ProcBased.HLT_EXITING)
    assert vm.run().stop == "halted"
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.INTERRUPT_WINDOW_EXITING)
    seen = window_exits(vm, R.INTERRUPT_WINDOW)
    vm.run()
    assert seen == [(CODE + 2, 0, 0, 0)]


def test_nmi_window_opens_at_the_iret_that_ends_virtual_nmi_blocking():
    vm = make_vm("""
        pushfd
        push cs
        push offset 1f
        iretd
    1:  nop
        hlt
    """, "protected")
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.NMI_EXITING | PinBased.VIRTUAL_NMIS)
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.NMI_WINDOW_EXITING)
    v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 8)
    seen = window_exits(vm, R.NMI_WINDOW)
    vm.run()
    assert seen == [(CODE + 8, 0, 0, 0)]                    # right after the IRETD
    assert v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 0
    # Without blocking the window is open at entry.
    vm.run()
    assert seen[-1][0] == CODE + 8 and v.instructions == 4


def test_nmi_window_needs_virtual_nmis():
    vm = make_vm("hlt", "protected")
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.NMI_EXITING)
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.NMI_WINDOW_EXITING)
    assert v.check_entry().check == "NMI_WINDOW_EXITING"


def test_raise_arguments_are_checked():
    vm = make_vm("hlt", "protected")
    v = vm.vcpu
    for bad in (-1, 256, 1.0, True, "0x20"):
        with pytest.raises(vtx.ArgumentError):
            v.raise_interrupt(bad)
        with pytest.raises(vtx.ArgumentError):
            v.clear_interrupt(bad)


# ---------------------------------------------------------------------------
# The monitor trap flag (reason 37, SDM 26.5.2) and the VMX-preemption timer
# (reason 52, SDM 26.5.1, 27.7.4)
# ---------------------------------------------------------------------------

def record(vm, reason, action=vtx.RETRY):
    seen = []

    @vm.on(reason)
    def rec(vcpu, e):
        seen.append((e.guest_rip, e.qualification, e.instruction_length, e.interruption_info))
        return action

    return seen


def test_monitor_trap_flag_exits_after_each_instruction():
    vm = make_vm("mov eax, 1\nmov ebx, 2\nadd eax, ebx\nhlt", "protected")
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.MONITOR_TRAP_FLAG)
    seen = record(vm, R.MONITOR_TRAP_FLAG)
    r = vm.run()
    # Not after the HLT: it exits instead of completing.
    assert [s[0] for s in seen] == [CODE + 5, CODE + 10, CODE + 12]
    assert all(s[1:] == (0, 0, 0) for s in seen)
    assert r.exit.reason == R.HLT and v.eax == 3


def test_monitor_trap_flag_after_an_injected_event_and_a_delivered_fault():
    """The MTF exit comes on the boundary after the delivery, before the
    handler's first instruction (26.5.2)."""
    vm = make_vm("ud2\nhlt", "protected", rflags=0x202)
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.MONITOR_TRAP_FLAG)
    set_ctl(v, F.EXCEPTION_BITMAP, clear_bits=1 << 6)
    inject(v, 0, 0x20)
    seen = record(vm, R.MONITOR_TRAP_FLAG, vtx.STOP)
    vm.run()
    assert seen[-1][0] == HANDLERS + 16 * 0x20 and frame(vm, "protected", 1) == [CODE]
    # Back from the handler (by hand), the UD2 faults into the guest's #UD
    # handler: MTF exit before its first instruction.
    v.rip, v.rsp = CODE, STACK
    vm.run()
    assert seen[-1][0] == HANDLERS + 16 * 6 and frame(vm, "protected", 1) == [CODE]


def test_pending_mtf_exit_injected_without_the_control():
    vm = make_vm("nop\nhlt", "protected")
    v = vm.vcpu
    v.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, VALID | (7 << 8))
    assert v.check_entry() is None
    seen = record(vm, R.MONITOR_TRAP_FLAG)
    r = vm.run()
    assert seen == [(CODE, 0, 0, 0)] and r.exit.reason == R.HLT and r.exit.guest_rip == CODE + 1


def timer_vm(value, src="1: inc eax\njmp 1b", save=False, **kw):
    vm = make_vm(src, "protected", **kw)
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.ACTIVATE_VMX_PREEMPTION_TIMER)
    if save:
        set_ctl(v, F.VM_EXIT_CONTROLS, ExitControls.SAVE_VMX_PREEMPTION_TIMER)
    v.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, value)
    return vm


@pytest.mark.parametrize("save", [False, True])
def test_preemption_timer_expires_after_its_ticks(save):
    """The timer ticks each time bit 5 of the TSC changes (IA32_VMX_MISC
    bits 4:0 = 5), and the model's TSC advances one per instruction: from
    TSC 0, value 3 runs out at TSC 96."""
    vm = timer_vm(3, save=save)
    v = vm.vcpu
    assert vtx.spec.capabilities.MISC & 0x1F == 5
    seen = record(vm, R.VMX_PREEMPTION_TIMER_EXPIRED, vtx.STOP)
    vm.run()
    assert seen == [(CODE, 0, 0, 0)] and v.instructions == 96 and v.eax == 48     # 48 INC, 48 JMP
    assert v.vmread(F.VMX_PREEMPTION_TIMER_VALUE) == (0 if save else 3)


def test_preemption_timer_value_saved_at_another_exit():
    src = "mov ecx, 19\n1: dec ecx\njnz 1b\nout 0x80, al\nhlt"     # 1 + 2 * 19 = 39 instructions, then OUT
    for save, expect in ((True, 100 - 1), (False, 100)):
        vm = timer_vm(100, src, save=save)
        v = vm.vcpu
        vm.on(R.IO_INSTRUCTION)(lambda vcpu, e: vtx.STOP)
        vm.run()
        assert v.instructions == 39
        # TSC 39: one tick (at 32) of the 100 has gone.
        assert v.vmread(F.VMX_PREEMPTION_TIMER_VALUE) == expect


def test_preemption_timer_zero_exits_before_the_first_instruction():
    vm = timer_vm(0)
    seen = record(vm, R.VMX_PREEMPTION_TIMER_EXPIRED, vtx.STOP)
    vm.run()
    assert seen == [(CODE, 0, 0, 0)] and vm.vcpu.instructions == 0


def test_preemption_timer_wakes_a_halted_guest():
    """Time passes in the HLT state: the timer runs out instead of the run
    returning "halted"."""
    vm = timer_vm(2, "hlt\nnop", save=True, hlt_stops=False)
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, clear_bits=ProcBased.HLT_EXITING)
    seen = record(vm, R.VMX_PREEMPTION_TIMER_EXPIRED, vtx.STOP)
    r = vm.run()
    assert r.stop == "stop" and seen == [(CODE + 1, 0, 0, 0)]
    assert v.vmread(F.GUEST_ACTIVITY_STATE) == 1 and v.vmread(F.VMX_PREEMPTION_TIMER_VALUE) == 0


def test_preemption_timer_counts_across_budget_stops():
    vm = timer_vm(2)
    v = vm.vcpu
    seen = record(vm, R.VMX_PREEMPTION_TIMER_EXPIRED, vtx.STOP)
    for _ in range(6):
        assert vm.run(max_instructions=10).stop == "budget"
    vm.run()
    assert len(seen) == 1 and v.instructions == 64


def test_mtf_exit_comes_before_the_preemption_timer():
    vm = timer_vm(0)
    v = vm.vcpu
    v.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, VALID | (7 << 8))
    order = []
    vm.on(R.MONITOR_TRAP_FLAG)(lambda vcpu, e: order.append("mtf") or vtx.RETRY)
    vm.on(R.VMX_PREEMPTION_TIMER_EXPIRED)(lambda vcpu, e: order.append("timer") or vtx.STOP)
    vm.run()
    assert order == ["mtf", "timer"]


def test_fabricated_external_interrupt_exit():
    e = vtx.fabricate_exit(R.EXTERNAL_INTERRUPT, interruption_info=VALID | 0x41)
    assert type(e) is vtx.ExternalInterruptExit and e.vector == 0x41 and "vector=0x41" in repr(e)
    assert vtx.fabricate_exit(1).vector is None


def test_exit_while_delivering_an_injected_nmi_saves_virtual_nmi_blocking():
    """Virtual-NMI blocking is in effect when a VM exit interrupts the
    delivery of the injected NMI, so the VMM must clear it to inject the
    NMI again (the entry check on injecting an NMI)."""
    vm = make_vm("hlt", "protected")
    write_gate(vm, "protected", 2, present=False)
    v = vm.vcpu
    set_ctl(v, F.PIN_BASED_CONTROLS, PinBased.NMI_EXITING | PinBased.VIRTUAL_NMIS)
    info = inject(v, 2, 2)
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: vtx.STOP)
    e = vm.run().exit
    assert (e.interruption_info, e.interruption_error_code, e.idt_vectoring_info) == (VALID | 0xB00 | 11, 2 * 8 + 3, info)
    assert v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) == 8
    v.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, e.idt_vectoring_info)
    assert v.check_entry().check == "GUEST_INTERRUPTIBILITY_NMI_VIRTUAL_NMIS"


def test_mtf_exit_is_not_lost_at_the_budget():
    vm = make_vm("nop\nnop\nhlt", "protected")
    v = vm.vcpu
    set_ctl(v, F.PRIMARY_PROC_BASED_CONTROLS, ProcBased.MONITOR_TRAP_FLAG)
    seen = record(vm, R.MONITOR_TRAP_FLAG, vtx.STOP)
    r = vm.run(max_instructions=1)
    assert r.stop == "stop" and seen == [(CODE + 1, 0, 0, 0)]
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) & ~ProcBased.MONITOR_TRAP_FLAG)
    v.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, VALID | (7 << 8))
    vm.run(max_instructions=1)          # the injected MTF exit comes first, budget or not
    assert seen[-1] == (CODE + 1, 0, 0, 0) and v.instructions == 1


def test_interrupt_taken_right_after_the_iret_that_sets_if():
    vm = make_vm("""
        pushfd
        or dword ptr [esp], 0x200       # IF in the popped flags
        push cs
        push offset 1f
        iretd
    1:  nop
        hlt
    """, "protected")
    v = vm.vcpu
    v.raise_interrupt(0x30)
    r = vm.run()
    label = CODE + len(vtx.asm("pushfd\nor dword ptr [esp], 0x200\npush cs\npush 0x1000\niretd", bits=32))
    assert handler_of(r.exit.guest_rip) == 0x30 and frame(vm, "protected", 3) == [label, 0x08, 0x202]


def test_nmi_unblocked_by_a_faulting_iret_is_taken_before_the_fault_handler():
    """IRET ends blocking by NMI even when it faults (SDM Vol. 3A 6.7.1):
    the held NMI comes at the boundary after the #GP's delivery."""
    vm = make_vm("""
        pushfd
        push 0x30                       # not a code segment: #GP
        push 0
        iretd
    """, "protected")
    v = vm.vcpu
    set_ctl(v, F.EXCEPTION_BITMAP, clear_bits=1 << 13)
    v.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, 8)
    v.raise_nmi()
    r = vm.run()
    assert handler_of(r.exit.guest_rip) == 2
    # On the stack: the NMI's frame (returning to the #GP handler's first
    # instruction), then the #GP's error code and frame (the IRETD).
    assert frame(vm, "protected", 5) == [HANDLERS + 16 * 13, 0x08, 0x2, 0x30, CODE + 1 + 2 + 2]


# --- the shutdown activity state (SDM Vol. 3C 25.4.2, 27.3.1.5) -------------------

def shutdown_vm(mode="protected"):
    vm = make_vm("nop\nhlt", mode=mode)
    vm.vcpu.vmwrite(F.GUEST_ACTIVITY_STATE, 2)
    return vm


def test_entry_in_the_shutdown_state_stays_there():
    vm = shutdown_vm()
    r = vm.run(max_instructions=100)
    assert r.stop == "halted" and r.instructions == 0
    assert vm.vcpu.vmread(F.GUEST_ACTIVITY_STATE) == 2


def test_an_nmi_ends_the_shutdown_state():
    vm = shutdown_vm()
    assert vm.run(max_instructions=100).stop == "halted"
    vm.vcpu.raise_nmi()
    e = vm.run(max_instructions=100).exit
    assert e.reason == R.HLT and e.guest_rip == HANDLERS + 16 * 2       # the NMI handler
    assert vm.vcpu.vmread(F.GUEST_ACTIVITY_STATE) == 0


def test_an_nmi_exits_from_the_shutdown_state_with_nmi_exiting():
    vm = shutdown_vm()
    set_ctl(vm.vcpu, F.PIN_BASED_CONTROLS, PinBased.NMI_EXITING)
    vm.vcpu.raise_nmi()
    vm.default(lambda v, e: vtx.STOP)
    e = vm.run(max_instructions=100).exit
    assert e.reason == R.EXCEPTION_OR_NMI and e.interruption_info == VALID | (2 << 8) | 2
    assert vm.vcpu.vmread(F.GUEST_ACTIVITY_STATE) == 2


def test_an_external_interrupt_does_not_end_the_shutdown_state():
    vm = shutdown_vm()
    vm.vcpu.rflags = 0x202
    vm.vcpu.raise_interrupt(0x30)
    assert vm.run(max_instructions=100).stop == "halted"
    assert vm.vcpu.pending_interrupts == (0x30,)


def test_injecting_an_nmi_into_the_shutdown_state():
    vm = shutdown_vm()
    inject(vm.vcpu, 2, 2)
    e = vm.run(max_instructions=100).exit
    assert e.reason == R.HLT and e.guest_rip == HANDLERS + 16 * 2


def test_init_exits_from_the_shutdown_state():
    vm = shutdown_vm()
    vm.vcpu.raise_init()
    vm.default(lambda v, e: vtx.STOP)
    assert vm.run(max_instructions=100).exit.reason == R.INIT_SIGNAL
