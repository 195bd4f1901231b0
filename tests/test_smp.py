"""Several vCPUs per VM (docs/architecture.rst, "Several vCPUs"): shared
memory, the deterministic round-robin of vm.run, self-modifying code across
processors, the wait-for-SIPI state and the INIT and SIPI VM exits (SDM Vol.
3C 26.2, 27.7.2; Vol. 3A 9.4.4)."""

import pytest

import vtx
from vtx import ExitReason as R, VmcsField as F

from conftest import needs_as

pytestmark = needs_as

MEMORY = 1 << 20
COUNTERS = 0x8000          # one dword per vCPU
SHARED = 0x9000            # the LOCK XADD counter
LOG = 0xA000               # the interleaving log (bytes)
LOG_IDX = 0x9100


def halt_for_good(vm):
    """HLT exits: the vCPU stays halted (activity state HLT), as a
    hypervisor does for a vCPU that nothing will wake."""
    seen = []

    @vm.on(R.HLT)
    def hlt(vcpu, exit):
        seen.append(vcpu.index)
        vcpu.vmwrite(F.GUEST_ACTIVITY_STATE, 1)
        return vtx.RESUME
    return seen


def counting_vm(loops):
    """One vCPU per entry of `loops`; vCPU i adds 1 to its own counter and,
    with LOCK XADD, to the shared one, loops[i] times, then halts."""
    vm = vtx.VM(memory=MEMORY)
    for i, n in enumerate(loops):
        code = 0x1000 * (i + 1)
        vm.load(code, vtx.asm(f"""
            mov ecx, {n}
        1:  inc dword ptr [{COUNTERS + 4 * i}]
            mov eax, 1
            lock xadd dword ptr [{SHARED}], eax
            dec ecx
            jnz 1b
            hlt
        """, bits=32, org=code))
        v = vm.add_vcpu()
        vm.setup_protected_mode(entry=code, stack=0x70000 + 0x1000 * i, vcpu=v)
    return vm


@pytest.mark.parametrize("loops", [(1000, 3000), (500, 1500, 2500, 3500)])
def test_vcpus_share_memory_and_lock_xadd_sums(loops):
    vm = counting_vm(loops)
    halts = halt_for_good(vm)
    r = vm.run(quantum=97)
    assert r.stop == "halted"
    assert [vm.read_u32(COUNTERS + 4 * i) for i in range(len(loops))] == list(loops)
    assert vm.read_u32(SHARED) == sum(loops)
    # Each halts once; the shortest loop first (round-robin, equal quanta).
    assert halts == list(range(len(loops)))
    assert r.exits == {R.HLT: len(loops)}
    # 5 instructions per iteration, MOV ECX before, HLT exits (not retired).
    assert r.instructions == sum(1 + 5 * n for n in loops)
    assert [v.instructions for v in vm.vcpus] == [1 + 5 * n for n in loops]


def test_vpid_and_vmcs_per_vcpu():
    vm = counting_vm((1, 1, 1))
    assert [v.index for v in vm.vcpus] == [0, 1, 2]
    assert [v.vmread(F.VIRTUAL_PROCESSOR_ID) for v in vm.vcpus] == [1, 2, 3]
    assert [v.rip for v in vm.vcpus] == [0x1000, 0x2000, 0x3000]
    vm.vcpus[1].rip = 0x2345
    assert [v.rip for v in vm.vcpus] == [0x1000, 0x2345, 0x3000]
    # Shared controls: one EPT, one set of bitmaps.
    assert len({v.vmread(F.EPT_POINTER) for v in vm.vcpus}) == 1
    assert len({v.vmread(F.IO_BITMAP_A) for v in vm.vcpus}) == 1
    assert vm.vcpu is vm.vcpus[0]
    # The initial APIC ID (CPUID.01H:EBX[31:24]) and the x2APIC ID
    # (CPUID.0BH:EDX) are the vCPU's number.
    assert [v.model_cpuid(1)[1] >> 24 for v in vm.vcpus] == [0, 1, 2]
    assert [v.model_cpuid(0xB)[3] for v in vm.vcpus] == [0, 1, 2]
    assert len({v.model_cpuid(1)[0] for v in vm.vcpus}) == 1


def test_a_single_vcpu_run_names_the_vcpu_on_stop():
    vm = counting_vm((3,))
    vm.on(R.HLT)(lambda vcpu, exit: vtx.STOP)
    r = vm.run()
    assert r.stop == "stop" and r.vcpu is vm.vcpu
    vm.discard_pending()          # enter at the HLT again rather than complete it (vtx.STOP)
    r = vm.run(max_instructions=1)
    assert r.stop == "stop" and r.vcpu is vm.vcpu


def log_vm():
    """Two vCPUs that append their index to a shared log, 20 times each."""
    vm = vtx.VM(memory=MEMORY)
    for i in range(2):
        code = 0x1000 * (i + 1)
        vm.load(code, log_code(i, code))
        vm.setup_protected_mode(entry=code, vcpu=vm.add_vcpu())
    exits = []

    @vm.on(R.HLT)
    def hlt(vcpu, exit):
        exits.append((vcpu.index, exit.reason, exit.guest_rip, vcpu.instructions))
        vcpu.vmwrite(F.GUEST_ACTIVITY_STATE, 1)
        return vtx.RESUME
    return vm, exits


def log_code(i, code):
    return vtx.asm(f"""
            mov ecx, 20
        1:  mov eax, 1
            lock xadd dword ptr [{LOG_IDX}], eax
            mov byte ptr [{LOG} + eax], {i}
            dec ecx
            jnz 1b
            hlt
        """, bits=32, org=code)


def test_round_robin_interleaving_is_exact_and_repeats():
    results = []
    for _ in range(2):
        vm, exits = log_vm()
        r = vm.run(quantum=10)
        assert r.stop == "halted" and r.vcpu is None
        results.append((vm.read(0, MEMORY), exits))
    # Ten steps a turn: each vCPU logs twice per turn (its k-th write is its
    # (5k - 1)-th instruction), vCPU 0 first.
    log = results[0][0][LOG:LOG + 40]
    assert log == bytes([0, 0, 1, 1] * 10)
    hlt = len(log_code(0, 0x1000)) - 1
    assert results[0][1] == [(0, R.HLT, 0x1000 + hlt, 101), (1, R.HLT, 0x2000 + hlt, 101)]
    assert results[0] == results[1]


def test_budget_counts_all_vcpus_and_next_run_goes_on():
    vm, exits = log_vm()
    r = vm.run(max_instructions=25, quantum=10)
    assert r.stop == "budget"
    assert r.instructions == 25
    assert [v.instructions for v in vm.vcpus] == [15, 10]
    # The next run starts with the vCPU after the one whose turn ended.
    r = vm.run(max_instructions=5, quantum=10)
    assert [v.instructions for v in vm.vcpus] == [15, 15]
    r = vm.run(quantum=10)
    assert r.stop == "halted"
    assert [e[0] for e in exits] == [0, 1]


def test_stop_names_the_vcpu():
    vm = counting_vm((10, 3))

    @vm.on(R.HLT)
    def hlt(vcpu, exit):
        vcpu.rip += exit.instruction_length
        vcpu.vmwrite(F.GUEST_ACTIVITY_STATE, 1)
        return vtx.STOP
    r = vm.run(quantum=1000)
    assert r.stop == "stop" and r.vcpu is vm.vcpus[0] and r.exit.reason == R.HLT
    assert r.instructions == 51 and vm.vcpus[1].instructions == 0
    # The next run starts with vCPU 0 again: halted, it is passed over, and
    # vCPU 1 runs to its HLT.
    r = vm.run(quantum=1000)
    assert r.stop == "stop" and r.vcpu is vm.vcpus[1] and r.instructions == 16
    assert vm.read_u32(SHARED) == 13
    assert vm.run().stop == "halted"


# --- self-modifying code across vCPUs ------------------------------------------

PATCH = 0x2000             # vCPU 1's loop: MOV EDX, imm32 first
OLD, NEW = 0x11111111, 0x22222222
SMC_LOG = 0x30000


def smc_vm():
    vm = vtx.VM(memory=MEMORY)
    # vCPU 1: one block that branches to its own start, logging EDX.
    loop = vtx.asm(f"""
        xor ebx, ebx
    1:  mov edx, {OLD}
        mov dword ptr [{SMC_LOG} + ebx * 4], edx
        inc ebx
        jmp 1b
    """, bits=32, org=PATCH)
    imm = PATCH + loop.index(OLD.to_bytes(4, "little"))
    vm.load(PATCH, loop)
    # vCPU 0: a write into the code page before vCPU 1 decodes anything there
    # (its TLB keeps write permission for the page), 61 instructions of
    # delay, then the patch of vCPU 1's immediate, then HLT.
    vm.load(0x1000, vtx.asm(f"""
        mov dword ptr [{PATCH + 0x800}], 1
        mov ecx, 30
    1:  dec ecx
        jnz 1b
        mov dword ptr [{imm}], {NEW}
        hlt
    """, bits=32, org=0x1000))
    for entry in (0x1000, PATCH):
        vm.setup_protected_mode(entry=entry, vcpu=vm.add_vcpu())
    return vm


def test_a_patch_by_one_vcpu_reaches_the_next_fetch_of_another():
    vm = smc_vm()
    halt_for_good(vm)
    r = vm.run(max_instructions=40 + 40 + 23 + 40, quantum=40)
    assert r.stop == "budget"
    # Turn 1: vCPU 0, 40 steps.  Turn 2: vCPU 1, XOR, nine iterations of 4
    # and three more instructions: 10 entries with the old immediate.  Turn
    # 3: vCPU 0 patches and halts.  Turn 4: from vCPU 1's JMP on, only the
    # new code runs.
    log = [vm.read_u32(SMC_LOG + 4 * k) for k in range(20)]
    assert log == [OLD] * 10 + [NEW] * 10
    assert vm.read_u32(SMC_LOG + 4 * 20) == 0


def test_vm_write_from_a_handler_reaches_another_vcpus_code():
    vm = smc_vm()
    # vCPU 0 now spins 25 instructions (its first turn and 5 of its second),
    # then exits with OUT: the handler patches vCPU 1's code with vm.write.
    vm.load(0x1000, vtx.asm("mov ecx, 12\n1: dec ecx\njnz 1b\nout 0x80, al\nhlt", bits=32, org=0x1000))
    imm = PATCH + vm.read(PATCH, 64).index(OLD.to_bytes(4, "little"))
    halt_for_good(vm)
    turns = []

    @vm.on(R.IO_INSTRUCTION)
    def io(vcpu, exit):
        turns.append((vcpu.index, vm.vcpus[1].instructions))
        vm.write_u32(imm, NEW)
        return vtx.RESUME
    r = vm.run(max_instructions=20 + 20 + 5 + 20, quantum=20)
    assert r.stop == "budget"
    assert turns == [(0, 20)]
    # vCPU 1's first turn: XOR and 19 instructions = 5 entries, the old
    # immediate; its second turn: 5 entries, the new one.
    log = [vm.read_u32(SMC_LOG + 4 * k) for k in range(11)]
    assert log == [OLD] * 5 + [NEW] * 5 + [0]


# --- wait-for-SIPI, INIT and SIPI ------------------------------------------------

def ap_code():
    return vtx.asm("""
        mov ax, cs
        mov word ptr [0x600], ax
        mov word ptr [0x602], 0x1234
        hlt
    """, bits=16, org=0)


def ap_vm():
    """vCPU 0 in protected mode; vCPU 1 an application processor waiting
    for a SIPI, with real-mode code for vector 5 at 5000H."""
    vm = vtx.VM(memory=MEMORY)
    vm.load(0x1000, vtx.asm("out 0x80, al\nhlt", bits=32, org=0x1000))
    vm.load(0x5000, ap_code())
    vm.setup_protected_mode(entry=0x1000, vcpu=vm.add_vcpu())
    ap = vm.add_vcpu(wait_for_sipi=True)
    return vm, ap


def test_wait_for_sipi_ap_does_not_run_until_sipi():
    vm, ap = ap_vm()
    assert ap.activity_state == 3
    assert (ap.cs.selector, ap.cs.base, ap.rip) == (0xF000, 0xFFFF0000, 0xFFF0)
    vm.on(R.IO_INSTRUCTION)(lambda vcpu, exit: vtx.RESUME)
    halt_for_good(vm)
    r = vm.run()
    assert r.stop == "halted"
    assert ap.instructions == 0 and ap.activity_state == 3
    # A SIPI raised while it waits: exit 4 with the vector; the handler starts it.
    seen = []

    @vm.on(R.STARTUP_IPI)
    def sipi(vcpu, exit):
        seen.append((vcpu.index, exit.reason, exit.qualification, exit.instruction_length))
        vcpu.sipi(exit.qualification)
        return vtx.RETRY
    ap.raise_sipi(5)
    assert ap.sipi_pending == 5
    r = vm.run()
    assert r.stop == "halted"
    assert seen == [(1, R.STARTUP_IPI, 5, 0)]
    assert vm.read_u16(0x600) == 0x500 and vm.read_u16(0x602) == 0x1234
    assert (ap.cs.selector, ap.cs.base) == (0x500, 0x5000)
    assert ap.rip == len(ap_code()) and ap.activity_state == 1        # after its HLT


def test_sipi_from_another_vcpus_exit_starts_the_ap():
    vm, ap = ap_vm()

    @vm.on(R.IO_INSTRUCTION)
    def io(vcpu, exit):
        vm.vcpus[1].sipi(5)
        return vtx.RESUME
    halt_for_good(vm)
    r = vm.run()
    assert r.stop == "halted"
    assert vm.read_u16(0x602) == 0x1234 and ap.cs.selector == 0x500
    # The INIT state keeps the x87/SSE state but resets the rest.
    assert ap.rdx == vm.vcpu.model_cpuid(1)[0]


def test_init_and_sipi_exits_back_to_back():
    vm = vtx.VM(memory=MEMORY)
    vm.load(0x1000, vtx.asm("1: inc dword ptr [0x700]\njmp 1b", bits=32, org=0x1000))
    vm.load(0x5000, vtx.asm("mov word ptr [0x602], 0x4321\nhlt", bits=16, org=0))
    v = vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000, vcpu=v)
    seen = []

    @vm.on(R.INIT_SIGNAL)
    def init(vcpu, exit):
        seen.append((exit.reason, exit.qualification, exit.guest_rip, vcpu.init_pending, vcpu.sipi_pending))
        vcpu.init()
        return vtx.RETRY

    @vm.on(R.STARTUP_IPI)
    def sipi(vcpu, exit):
        seen.append((exit.reason, exit.qualification, vcpu.activity_state))
        vcpu.sipi(exit.qualification)
        return vtx.RETRY
    vm.on(R.HLT)(lambda vcpu, exit: vtx.STOP)
    r = vm.run(max_instructions=100)
    assert r.stop == "budget" and vm.read_u32(0x700) == 50
    v.raise_init()
    v.raise_sipi(5)
    r = vm.run(max_instructions=100)
    assert r.stop == "stop" and r.exit.reason == R.HLT
    # The INIT exit comes at the first boundary, before any instruction:
    # RIP where the budget left it, the SIPI still pending.
    assert seen == [(R.INIT_SIGNAL, 0, 0x1000, False, 5), (R.STARTUP_IPI, 5, 3)]
    assert vm.read_u16(0x602) == 0x4321 and vm.read_u32(0x700) == 50
    assert r.exits == {R.INIT_SIGNAL: 1, R.STARTUP_IPI: 1, R.HLT: 1}


def test_sipi_without_wait_is_discarded_and_init_is_blocked_in_wait_for_sipi():
    vm = vtx.VM(memory=MEMORY)
    vm.load(0x1000, vtx.asm("hlt", bits=32, org=0x1000))
    v = vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000, vcpu=v)
    v.raise_sipi(9)                      # active, no INIT before it: discarded
    assert v.sipi_pending is None
    v.init()
    v.raise_init()
    vm.on(R.INIT_SIGNAL)(lambda vcpu, exit: vtx.STOP)
    r = vm.run(max_instructions=1000)
    assert r.stop == "halted" and v.init_pending and v.activity_state == 3
    assert v.instructions == 0


def test_wait_for_sipi_is_an_activity_state_the_entry_accepts_without_injection():
    vm = vtx.VM(memory=MEMORY)
    v = vm.add_vcpu()
    assert (vtx.spec.capabilities.MISC >> 6) & 7 == 0b111       # HLT, shutdown and wait-for-SIPI
    v.vmwrite(F.GUEST_ACTIVITY_STATE, 3)
    assert v.check_entry() is None
    v.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, 0x80000000 | (2 << 8) | 2)   # an NMI
    err = v.check_entry()
    assert err is not None and err.check == "GUEST_ACTIVITY_STATE_HLT_INJECTION"


def test_bad_input():
    vm = vtx.VM(memory=MEMORY)
    with pytest.raises(TypeError, match="wait_for_sipi"):
        vm.add_vcpu(wait_for_sipi=1)
    v = vm.add_vcpu()
    for bad in (-1, 256, "5", True):
        with pytest.raises(vtx.ArgumentError, match="SIPI vector"):
            v.raise_sipi(bad)
        with pytest.raises(vtx.ArgumentError, match="SIPI vector"):
            v.sipi(bad)
    with pytest.raises(vtx.VmStateError, match="wait-for-SIPI"):
        v.sipi(5)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(vtx.ArgumentError, match="quantum"):
            vm.run(quantum=bad)
    while len(vm.vcpus) < vtx.vm.MAX_VCPUS:
        vm.add_vcpu()
    assert vm.vcpus[-1].vmread(F.VIRTUAL_PROCESSOR_ID) == 64
    with pytest.raises(vtx.VmStateError, match="64 vCPUs"):
        vm.add_vcpu()
    with pytest.raises(vtx.ArgumentError, match="processors"):
        vtx._core.VCpu(vm._machine, 64)


def test_add_vcpu_from_a_handler_is_refused():
    vm = counting_vm((5, 5))
    errors = []

    @vm.on(R.HLT)
    def hlt(vcpu, exit):
        with pytest.raises(vtx.VmStateError, match="running"):
            vm.add_vcpu()
        errors.append(1)
        return vtx.STOP
    vm.run()
    assert errors == [1]


def test_an_interrupt_raised_from_another_vcpus_exit_wakes_a_halted_vcpu():
    vm = vtx.VM(memory=MEMORY)
    # vCPU 0: spins 100 instructions (so vCPU 1 halts first), then OUT.
    vm.load(0x1000, vtx.asm("mov ecx, 50\n1: dec ecx\njnz 1b\nout 0x80, al\nhlt", bits=32, org=0x1000))
    # vCPU 1, real mode: STI, HLT; the interrupt handler for vector 20H
    # marks 801H; after its IRET, 800H.
    vm.load(0x3000, vtx.asm("""
        sti
        hlt
        mov word ptr [0x800], 0x77
        hlt
    handler:
        mov byte ptr [0x802], 1
        iret
    """, bits=16, org=0x3000))
    handler = 0x3000 + len(vtx.asm("sti\nhlt\nmov word ptr [0x800], 0x77\nhlt", bits=16, org=0x3000))
    vm.write(0x20 * 4, handler.to_bytes(2, "little") + b"\0\0")
    vm.setup_protected_mode(entry=0x1000, vcpu=vm.add_vcpu())
    ap = vm.add_vcpu()
    vm.setup_real_mode(entry=0x3000, stack=0x7000, vcpu=ap)
    halts = halt_for_good(vm)

    @vm.on(R.IO_INSTRUCTION)
    def io(vcpu, exit):
        assert ap.activity_state == 1 and vm.read_u16(0x800) == 0
        ap.raise_interrupt(0x20)
        return vtx.RESUME
    r = vm.run(quantum=30)
    assert r.stop == "halted"
    assert halts == [1, 0, 1]
    assert vm.read_u16(0x800) == 0x77 and vm.read_u8(0x802) == 1
    assert ap.pending_interrupts == ()


def test_on_turn_is_called_before_each_turn_and_can_end_the_run():
    """vm.on_turn (what a platform uses to set each vCPU's TSC offset and
    inject its interrupts): called with the vCPU before each of its turns,
    never for a vCPU waiting for a SIPI; a true result ends the run, as a
    budget, before that turn, and the next run starts with that vCPU."""
    vm = counting_vm((100, 100))
    waiting = vm.add_vcpu(wait_for_sipi=True)
    halt_for_good(vm)
    turns = []

    def on_turn(v):
        turns.append((v.index, v.instructions))
        return len(turns) == 5
    vm.on_turn = on_turn
    r = vm.run(quantum=50)
    assert r.stop == "budget" and r.instructions == 200
    assert turns == [(0, 0), (1, 0), (0, 50), (1, 50), (0, 100)]
    assert waiting.instructions == 0
    vm.on_turn = None
    r = vm.run(quantum=50)
    assert r.stop == "halted" and [v.instructions for v in vm.vcpus] == [501, 501, 0]


def test_each_vcpu_can_have_its_own_exit_handlers():
    """vm.on(..., vcpu=v): v's exits of those reasons go to its own handler,
    the other vCPUs' to the VM's; remove_handler(reason, vcpu=v) gives v the
    VM's again; a handler registered for the VM later still reaches the
    vCPUs without one of their own for that reason."""
    vm = vtx.VM(memory=MEMORY)
    for i in range(3):
        code = 0x1000 * (i + 1)
        vm.load(code, vtx.asm("""
        1:  mov eax, 0
            cpuid
            out 0x80, al
            jmp 1b
        """, bits=32, org=code))
        vm.setup_protected_mode(entry=code, stack=0x70000 + 0x1000 * i, vcpu=vm.add_vcpu())
    seen = []
    vm.on(R.CPUID)(lambda vcpu, exit: seen.append(("vm", vcpu.index)) or vtx.RESUME)
    vm.on(R.CPUID, R.IO_INSTRUCTION, vcpu=vm.vcpus[1])(
        lambda vcpu, exit: seen.append(("own", vcpu.index, exit.reason)) or vtx.RESUME)
    vm.on(R.IO_INSTRUCTION)(lambda vcpu, exit: seen.append(("vm io", vcpu.index)) or vtx.RESUME)
    # A turn of 4 steps is two rounds of the loop (the CPUID and the OUT
    # the handlers emulate retire no guest instruction of their own).
    vm.run(max_instructions=12, quantum=4)
    assert seen == [("vm", 0), ("vm io", 0)] * 2 \
        + [("own", 1, int(R.CPUID)), ("own", 1, int(R.IO_INSTRUCTION))] * 2 + [("vm", 2), ("vm io", 2)] * 2
    seen.clear()
    vm.remove_handler(R.CPUID, vcpu=vm.vcpus[1])
    vm.run(max_instructions=12, quantum=4)
    assert seen == [("vm", 0), ("vm io", 0)] * 2 \
        + [("vm", 1), ("own", 1, int(R.IO_INSTRUCTION))] * 2 + [("vm", 2), ("vm io", 2)] * 2
    with pytest.raises(vtx.ArgumentError, match="vCPU 1 has no handler of its own for CPUID"):
        vm.remove_handler(R.CPUID, vcpu=vm.vcpus[1])
    other = vtx.VM(memory=MEMORY)
    with pytest.raises(vtx.ArgumentError, match="vcpu is a vCPU of another VM"):
        vm.on(R.HLT, vcpu=other.add_vcpu())
    with pytest.raises(TypeError, match="vcpu is a vtx.VCpu of this VM"):
        vm.on(R.HLT, vcpu=1)
