"""vtx.pc.PcMachine: a PC's devices under a guest, and the bad inputs of a
guest that programs them to their limits."""

import random

import pytest

import vtx
from guest_idt import IDTR, LIDT, gate
from vtx.pc import PcMachine
from vtx.platform import Platform

PIC_INIT = """
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 4
    out 0x21, al
    mov al, 2
    out 0xa1, al
    mov al, 1
    out 0x21, al
    out 0xa1, al
    mov al, 0xfe            # only IRQ 0
    out 0x21, al
"""
IDT = gate(0x20, "tick") + LIDT
TAIL = """
tick:
    inc r12
    push rax
    mov al, 0x20            # non-specific EOI
    out 0x20, al
    pop rax
    iretq
""" + IDTR


def pc(body, memory=4 << 20):
    m = PcMachine(memory=memory)
    m.vm.load(0x1000, vtx.asm(IDT + PIC_INIT + body + TAIL, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    return m


# The PIT in mode 2 with count 2, the guest spinning with IF = 1.
PIT_STORM = """
    mov al, 0x34
    out 0x43, al
    mov al, 2
    out 0x40, al
    xor al, al
    out 0x40, al
    sti
1:  inc r13
    jmp 1b
"""


def test_pit_at_its_fastest_rate_keeps_the_budget():
    # Mode 2 with count 2: an interrupt every 1.7 us of guest time, i.e.
    # every ~1,700 instructions; the guest spins with IF = 1.
    m = pc(PIT_STORM)
    assert m.run(max_instructions=2_000_000) == "budget"
    assert 2_000_000 <= m.vcpu.instructions < 2_100_000
    # About one tick per 1676 ns of guest time, each taken by the handler.
    assert abs(m.vcpu.r12 - m.clock.now_ns() // 1676) <= 2
    assert m.vcpu.r13 > 100_000


def test_uart_transmits_through_the_console_and_the_debug_exit_stops():
    seen = bytearray()
    m = PcMachine(memory=4 << 20, console=seen.extend)
    m.vm.load(0x1000, vtx.asm("""
    lea rsi, [rip + msg]
1:  lodsb
    test al, al
    jz 2f
    mov dx, 0x3f8
    out dx, al
    jmp 1b
2:  mov al, 5
    out 0xf4, al
    hlt
msg: .asciz "hi from COM1"
""", bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    assert m.run(max_instructions=10_000) == "debug-exit 11"
    assert bytes(seen) == b"hi from COM1"


def test_string_io_into_a_device_goes_device_to_device():
    m = pc("""
    mov rdi, 0xFEB00000
    mov ecx, 4
    mov dx, 0x3f8 + 7       # the UART's scratch register
    mov al, 0x5a
    out dx, al
    cld
    rep insb
    hlt""")
    got = []
    m.vm.map_mmio(0xFEB00000, 0x1000, lambda vcpu, gpa, size, w, v: got.append((gpa, size, w, v)) or 0)
    m.run(max_instructions=10_000)
    assert got == [(0xFEB00000 + i, 1, True, 0x5A) for i in range(4)]


def test_string_io_into_nothing_is_a_clear_error():
    m = pc("""
    mov rdi, 0xFEB00000
    mov dx, 0x3f8 + 7
    mov ecx, 4
    rep insb
    hlt""")
    with pytest.raises(vtx.GuestMemoryError, match="neither memory nor a device"):
        m.run(max_instructions=10_000)
    # Not one iteration was done: the registers say so, RIP is on the REP INSB.
    assert (m.vcpu.rcx, m.vcpu.rdi, m.vm.read(m.vcpu.rip, 2)) == (4, 0xFEB00000, b"\xf3\x6c")


@pytest.mark.parametrize("seed", range(3))
def test_random_writes_to_every_port_of_the_pc(seed):
    """Every device register written with random values, from a guest: the
    machine keeps its budget, raises nothing, and memory outside the guest's
    RAM is never touched (the private memory is unchanged apart from the VMCS)."""
    rnd = random.Random(seed)
    ports = [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x70, 0x71,
             0x60, 0x64, 0x92, 0x80, 0x3F8, 0x3F9, 0x3FA, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x3FF,
             0xCF8, 0xCFC, 0xCFD, 0xCFE, 0xCFF]
    body = []
    for _ in range(400):
        p = rnd.choice(ports)
        if p in (0x64, 0x92):
            v = rnd.randrange(0, 0xF0)          # not a reset pulse: the run goes on
            v &= ~1 if p == 0x92 else 0xFF
        else:
            v = rnd.randrange(256)
        body.append(f"mov dx, {p:#x}\n    mov al, {v:#x}\n    out dx, al\n    in al, dx")
    m = pc("\n    ".join(body) + "\n    sti\n1:  hlt\n    jmp 1b")
    priv_tables = m.vm._machine.priv_bytes(0x1000)       # bitmaps and EPT (the VMCS is at 0)
    why = m.run(max_instructions=300_000)
    # Random vectors (ICW2) and unmasked lines may deliver interrupts through
    # IDT entries the guest never set: a triple fault is an outcome too.
    assert why in ("budget", "halted", "reset", "triple fault")
    assert m.vm._machine.priv_bytes(0x1000) == priv_tables


def test_wall_clock_mode_runs_timer_ticks_in_real_time():
    from vtx.devices import WallClock
    m = PcMachine(memory=4 << 20, clock=WallClock())
    m.vm.load(0x1000, vtx.asm(IDT + PIC_INIT + """
    mov al, 0x34            # counter 0, mode 2, LSB then MSB
    out 0x43, al
    mov ax, 11932           # 100 Hz
    out 0x40, al
    mov al, ah
    out 0x40, al
    xor r12, r12
    sti
1:  hlt
    cmp r12, 3
    jb 1b
    mov al, 1
    out 0xf4, al
""" + TAIL, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    assert m.run(max_instructions=10_000_000) == "debug-exit 3"
    assert m.vcpu.r12 == 3
    assert m.clock.now_ns() >= 25_000_000          # three 10 ms ticks took real time


APIC_TIMER_GUEST = gate(0x40, "apic_tick") + LIDT + """
    mov rbx, 0xFEE00000
    mov dword ptr [rbx + 0xF0], 0x1FF       # SVR: APIC software enabled, spurious vector FFH
    mov dword ptr [rbx + 0x3E0], 0xB        # divide by 1
    mov dword ptr [rbx + 0x320], 0x20040    # LVT timer: periodic, vector 40H
    mov dword ptr [rbx + 0x380], 1          # initial count 1: the fastest rate
    sti
1:  inc r13
    jmp 1b
apic_tick:
    inc r12
    mov dword ptr [rbx + 0xB0], 0           # EOI
    iretq
""" + IDTR


def test_apic_timer_at_its_fastest_rate_keeps_the_budget():
    m = PcMachine(memory=4 << 20, apic=True)
    m.vm.load(0x1000, vtx.asm(APIC_TIMER_GUEST, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    assert m.run(max_instructions=200_000) == "budget"
    assert 200_000 <= m.vcpu.instructions < 210_000
    # An interrupt is pending at every boundary the platform looks at; the
    # guest still makes progress between them, and every EOI is an MMIO write.
    assert m.vcpu.r12 > 100 and m.vcpu.r13 > 100
    assert m.platform.stats()["exits"][vtx.ExitReason.EPT_VIOLATION] >= m.vcpu.r12


def test_self_ipi_storm_keeps_the_budget():
    m = PcMachine(memory=4 << 20, apic=True)
    m.vm.load(0x1000, vtx.asm(gate(0x41, "ipi") + LIDT + """
    mov rbx, 0xFEE00000
    mov dword ptr [rbx + 0xF0], 0x1FF
    sti
1:  mov dword ptr [rbx + 0x300], 0x40041   # ICR: fixed, vector 41H, to self (shorthand 01)
    jmp 1b
ipi:
    inc r12
    mov dword ptr [rbx + 0xB0], 0
    iretq
""" + IDTR, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    assert m.run(max_instructions=100_000) == "budget"
    assert m.vcpu.r12 > 10


# --- several vCPUs (docs/architecture.rst, "Several vCPUs on the platform") -----

R = vtx.ExitReason
APIC_BASE = 0xFEE00000


def smp_pc(cpus=2):
    return PcMachine(memory=4 << 20, apic=True, cpus=cpus)


def start_in_long_mode(m, code, stacks=(0x70000, 0x60000)):
    """Both vCPUs at ``code`` (0x1000) in 64-bit mode, as a host sets them
    up (the AP leaves wait-for-SIPI), each with its own stack."""
    m.vm.load(0x1000, vtx.asm(code, bits=64))
    for v, stack in zip(m.vcpus, stacks):
        m.vm.setup_long_mode(entry=0x1000, stack=stack, vcpu=v)


def test_ap_starts_by_init_sipi_sipi_from_the_bsp_and_again_after_init():
    """The MP initialization of SDM Vol. 3A 9.4.4 done by a guest BSP: INIT,
    the de-assert (ignored), two SIPIs; the AP runs its trampoline in real
    mode at vector * 1000H.  An INIT to the running AP is a VM exit that puts
    it back in wait-for-SIPI; the next SIPI starts it at another vector."""
    m = smp_pc()
    bsp, ap = m.vcpus
    assert ap.activity_state == 3 and bsp.activity_state == 0
    m.vm.load(0x1000, vtx.asm(f"""
    mov rbx, {APIC_BASE}
    mov dword ptr [rbx + 0xF0], 0x1FF
    mov dword ptr [rbx + 0x310], 0x01000000  # destination: APIC ID 1
    mov dword ptr [rbx + 0x300], 0xC500      # INIT, level assert
    mov dword ptr [rbx + 0x300], 0x8500      # INIT, level de-assert
    mov dword ptr [rbx + 0x300], 0x4620      # STARTUP, vector 20H
    mov dword ptr [rbx + 0x300], 0x4620      # the second SIPI of the protocol
1:  cmp word ptr [0x602], 0x1111
    jne 1b
    mov dword ptr [rbx + 0x300], 0xC500      # INIT the running AP
    mov dword ptr [rbx + 0x300], 0x4621      # STARTUP, vector 21H
1:  cmp word ptr [0x602], 0x2222
    jne 1b
    mov al, 7
    out 0xF4, al
    """, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    m.vm.load(0x20000, vtx.asm("""
    mov ax, cs
    mov word ptr [0x600], ax
    mov word ptr [0x602], 0x1111
1:  jmp 1b
    """, bits=16))
    m.vm.load(0x21000, vtx.asm("""
    mov ax, cs
    mov word ptr [0x604], ax
    mov word ptr [0x602], 0x2222
    cli
    hlt
    """, bits=16))
    assert m.run(max_instructions=1_000_000) == "debug-exit 15"       # (7 << 1) | 1, the isa-debug-exit convention
    assert m.vm.read_u16(0x600) == 0x2000 and m.vm.read_u16(0x604) == 0x2100
    assert (ap.cs.selector, ap.cs.base) == (0x2100, 0x21000)
    assert ap.activity_state == 1                # halted with IF = 0, for good
    exits = m.platform.stats()["exits"]
    # The first INIT finds the AP waiting for a SIPI (no exit: INIT is
    # blocked there); the second is an exit.  Each started trampoline is one
    # STARTUP_IPI exit (the repeated SIPI finds the AP running: discarded).
    assert exits[R.INIT_SIGNAL] == 1 and exits[R.STARTUP_IPI] == 2
    assert m.ipis == {"init": 2, "startup": 3}
    # The AP's APIC took its INIT state: software-disabled, ID kept.
    assert m.lapics[1].svr == 0xFF and m.lapics[1].apic_id == 1


IPI_GUEST = gate(0x40, "ping") + gate(0x41, "pong") + gate(0x02, "nmi") + LIDT + f"""
    mov eax, 1
    cpuid
    shr ebx, 24                              # the initial APIC ID
    mov r15d, ebx
    mov rbx, {APIC_BASE}
    mov eax, dword ptr [rbx + 0x20]          # the APIC ID register
    shr eax, 24
    mov dword ptr [0x620 + r15 * 4], eax
    mov dword ptr [0x610 + r15 * 4], r15d
    mov dword ptr [rbx + 0xF0], 0x1FF        # SVR: software-enabled
    mov eax, 1
    mov ecx, r15d
    shl eax, cl
    shl eax, 24
    mov dword ptr [rbx + 0xD0], eax          # LDR: logical ID bit (APIC ID), flat model
    test r15d, r15d
    jnz ap
    xor r12, r12
    xor r14, r14
    cli
1:  cmp dword ptr [0x704], 1                 # the AP's APIC is enabled
    jne 1b
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x40        # fixed 40H, physical, to APIC ID 1
    call wait
    mov dword ptr [rbx + 0x310], 0x02000000
    mov dword ptr [rbx + 0x300], 0x840       # fixed 40H, logical, to logical ID bit 1
    call wait
    mov dword ptr [rbx + 0x300], 0xC0040     # fixed 40H, all excluding self
    call wait
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x400       # NMI to APIC ID 1
1:  cmp dword ptr [0x708], 1
    jne 1b
    mov al, 9
    out 0xF4, al
wait:
    inc r14
1:  sti
    hlt
    cli
    cmp r12, r14
    jne 1b
    ret
ap:
    mov dword ptr [0x704], 1
    sti
1:  hlt
    jmp 1b
ping:                                        # on the AP: answer with 41H to APIC ID 0
    inc dword ptr [0x700]
    mov dword ptr [rbx + 0x310], 0
    mov dword ptr [rbx + 0x300], 0x41
    mov dword ptr [rbx + 0xB0], 0
    iretq
pong:
    inc r12
    mov dword ptr [rbx + 0xB0], 0
    iretq
nmi:
    inc dword ptr [0x708]
    iretq
""" + IDTR


def test_ipis_between_vcpus_physical_logical_shorthand_and_nmi():
    m = smp_pc()
    start_in_long_mode(m, IPI_GUEST)
    assert m.run(max_instructions=1_000_000) == "debug-exit 19"
    bsp, ap = m.vcpus
    # CPUID.01H:EBX[31:24] and the APIC ID register name each vCPU.
    assert [m.vm.read_u32(0x610 + 4 * i) for i in range(2)] == [0, 1]
    assert [m.vm.read_u32(0x620 + 4 * i) for i in range(2)] == [0, 1]
    # Three pings, three pongs (each woke a halted vCPU), one NMI.
    assert m.vm.read_u32(0x700) == 3 and bsp.r12 == 3 and m.vm.read_u32(0x708) == 1
    assert m.ipis == {"fixed": 6, "nmi": 1}
    assert [lapic.isr for lapic in m.lapics] == [0, 0] and [lapic.irr for lapic in m.lapics] == [0, 0]
    assert ap.activity_state == 1                # back in its HLT loop
    assert m.platform.injected == 6


PIT_TO_AP = gate(0x50, "tick") + LIDT + f"""
    mov eax, dword ptr [{APIC_BASE} + 0x20]
    test eax, eax
    jnz ap
    mov rbx, 0xFEC00000
    mov dword ptr [rbx], 0x14                # I/O APIC redirection entry 2 (the PIT's GSI), low
    mov dword ptr [rbx + 0x10], 0x50         # vector 50H, fixed, physical, edge, unmasked
    mov dword ptr [rbx], 0x15
    mov dword ptr [rbx + 0x10], 0x01000000   # destination APIC ID 1
    mov al, 0x34                             # PIT channel 0, mode 2, count 1000
    out 0x43, al
    mov ax, 1000
    out 0x40, al
    mov al, ah
    out 0x40, al
    cli
1:  hlt
    jmp 1b
ap:
    mov rbx, {APIC_BASE}
    mov dword ptr [rbx + 0xF0], 0x1FF
    sti
1:  hlt
    jmp 1b
tick:
    inc dword ptr [0x700]
    mov dword ptr [rbx + 0xB0], 0
    iretq
""" + IDTR
PIT_PERIOD_NS = 1000 * 10 ** 9 // 1193182       # 1000 input clocks of 1.193182 MHz


def test_io_apic_delivers_to_apic_id_1_while_the_bsp_halts():
    m = smp_pc()
    start_in_long_mode(m, PIT_TO_AP)
    assert m.run(max_instructions=20_000) == "budget"
    ticks = m.vm.read_u32(0x700)
    # Both vCPUs halt between the ticks: time skips to each deadline.
    assert ticks > 1000
    assert abs(ticks - m.clock.now_ns() // PIT_PERIOD_NS) <= 1
    assert m.vcpus[0].activity_state == 1 and m.vcpus[0].rflags & (1 << 9) == 0
    assert m.lapics[0].irr == 0 and m.lapics[0].isr == 0
    assert m.platform.injected == ticks


class TscProbe(vtx.devices.Device):
    """Port E0H: each write records (value, the clock's time)."""
    name = "tsc-probe"
    ports = ((0xE0, 1),)

    def __init__(self, clock):
        self.clock, self.seen = clock, []

    def io_write(self, port, size, value):
        self.seen.append((value, self.clock.now_ns()))


@pytest.mark.parametrize("quantum", [1, 7, 1000])
def test_every_vcpus_tsc_reads_the_one_clock(quantum):
    """Linux's TSC warp check needs this: a TSC read on one vCPU after a
    read on another is not smaller.  Here each RDTSC reads the clock exactly
    (the OUT after it sees the clock one instruction later)."""
    m = smp_pc()
    probe = m.platform.attach(TscProbe(m.clock))
    m.platform.quantum = quantum
    start_in_long_mode(m, """
1:  rdtsc
    out 0xE0, eax
    jmp 1b
    """)
    assert m.run(max_instructions=30_000) == "budget"
    # RDTSC and JMP retire; the OUT is an exit that the platform completes.
    assert sum(v.instructions for v in m.vcpus) == 30_000 and all(v.instructions > 14_000 for v in m.vcpus)
    assert len({v for v, _ in probe.seen}) == len(probe.seen) >= 14_999    # an OUT may wait for the next run
    # Each RDTSC read the clock at its instruction: one instruction before
    # the OUT, or, when a turn ended between the two, one quantum of the
    # other vCPU more.  (So reads in time order are in TSC order.)
    gaps = {now - 1 - value for value, now in probe.seen}
    assert gaps == {1} if quantum == 1 else (0 in gaps and gaps <= {0, quantum})


def test_ipi_storm_and_ipis_to_nobody_keep_the_budget():
    m = smp_pc()
    start_in_long_mode(m, IPI_STORM)     # (defined with the Ctrl-C tests below)
    assert m.run(max_instructions=200_000) == "budget"
    assert 200_000 <= sum(v.instructions for v in m.vcpus) < 210_000
    assert all(v.r12 > 100 and v.r13 > 100 for v in m.vcpus)
    assert m.ipis["fixed"] > 200 and m.ipis["nmi"] > 100


def test_nmi_and_init_to_self_come_after_the_store_that_sends_them():
    """A vCPU's NMI or INIT to itself is taken after its ICR store retires
    (not before the store's replay, which would send it again: an endless
    NMI loop); the INIT then sends it to wait-for-SIPI."""
    m = smp_pc()
    start_in_long_mode(m, gate(0x02, "nmi") + LIDT + f"""
    mov eax, dword ptr [{APIC_BASE} + 0x20]
    shr eax, 22                              # APIC ID * 4
    mov r15, rax
    mov rbx, {APIC_BASE}
    mov dword ptr [rbx + 0xF0], 0x1FF
    mov dword ptr [rbx + 0x300], 0x40400     # NMI to self
    mov dword ptr [0x710 + r15], 0x55
    mov dword ptr [rbx + 0x300], 0x44500     # INIT to self
    mov dword ptr [0x720 + r15], 0x66        # never: the INIT comes first
1:  jmp 1b
nmi:
    inc dword ptr [0x700 + r15]
    iretq
    """ + IDTR)
    assert m.run(max_instructions=50_000) == "halted"
    assert [m.vm.read_u32(0x700 + 4 * i) for i in range(2)] == [1, 1]
    assert [m.vm.read_u32(0x710 + 4 * i) for i in range(2)] == [0x55, 0x55]
    assert [m.vm.read_u32(0x720 + 4 * i) for i in range(2)] == [0, 0]
    assert [v.activity_state for v in m.vcpus] == [3, 3]
    assert m.ipis == {"nmi": 2, "init": 2}
    assert m.platform.stats()["exits"][R.INIT_SIGNAL] == 2


def test_each_vcpu_sees_its_own_apic_at_its_own_base():
    """The xAPIC page is one MMIO range for all: an access reaches the APIC
    of the vCPU that made it, and only at that APIC's base (IA32_APIC_BASE,
    which the AP moves here)."""
    m = smp_pc()
    start_in_long_mode(m, f"""
    mov eax, dword ptr [{APIC_BASE} + 0x20]
    test eax, eax
    jnz ap
1:  cmp dword ptr [0x704], 1
    jne 1b
    mov eax, dword ptr [{APIC_BASE} + 0x20]
    mov dword ptr [0x730], eax
    mov eax, dword ptr [0xFED00020]
    mov dword ptr [0x734], eax
    cli
    hlt
ap:
    mov ecx, 0x1B
    rdmsr
    mov dword ptr [0x740], eax
    and eax, 0xFFF
    or eax, 0xFED00000
    wrmsr
    mov eax, dword ptr [0xFED00020]
    mov dword ptr [0x738], eax
    mov eax, dword ptr [{APIC_BASE} + 0x20]
    mov dword ptr [0x73C], eax
    mov dword ptr [0x704], 1
    cli
    hlt
    """)
    assert m.run(max_instructions=100_000) == "halted"
    assert m.vm.read_u32(0x740) == 0xFEE00800                  # enabled, not the BSP
    assert [m.vm.read_u32(0x730 + 4 * i) for i in range(4)] == [0, 0xFFFFFFFF, 0x01000000, 0xFFFFFFFF]
    assert m.lapics[1].base == 0xFED00000 and m.lapics[0].base == APIC_BASE


def test_all_halted_with_an_nmi_blocked_by_nmi_ends_the_run():
    """vCPU 0 halts with IF = 0 inside its NMI handler; vCPU 1 sends it
    another NMI, which blocking by NMI holds, and halts too: nothing can
    wake either, and the run ends instead of waiting for ever."""
    m = smp_pc()
    start_in_long_mode(m, gate(0x02, "nmi") + LIDT + f"""
    mov rbx, {APIC_BASE}
    mov dword ptr [rbx + 0xF0], 0x1FF
    mov eax, dword ptr [rbx + 0x20]
    test eax, eax
    jnz ap
    mov dword ptr [rbx + 0x300], 0x40400     # NMI to self
1:  jmp 1b
ap:
    mov ecx, 1000
2:  dec ecx
    jnz 2b
    mov dword ptr [rbx + 0x310], 0
    mov dword ptr [rbx + 0x300], 0x400       # NMI to APIC ID 0
    cli
    hlt
nmi:
    inc r13
    cli
    hlt
    """ + IDTR)
    assert m.run(max_instructions=50_000) == "halted"
    assert [(v.activity_state, v.r13, v.nmi_pending) for v in m.vcpus] == [(1, 1, True), (1, 0, False)]


def _smp_state(m):
    regs = tuple(tuple(getattr(v, r) for r in ("rax", "rbx", "rip", "rflags", "instructions"))
                 for v in m.vcpus)
    return regs, m.vm.read(0, 0x10000), m.clock.now_ns(), [lapic.get_state() for lapic in m.lapics]


def test_snapshot_of_two_vcpus_replays_exactly(tmp_path):
    m = smp_pc()
    start_in_long_mode(m, PIT_TO_AP)
    m.run(max_instructions=3_000)
    path = tmp_path / "smp.snap"
    m.save(path)
    m.run(max_instructions=5_000)
    first = _smp_state(m)
    assert m.vm.read_u32(0x700) > 500
    m.restore(path)
    m.run(max_instructions=5_000)
    assert _smp_state(m) == first
    other = smp_pc()
    other.restore(path)
    other.run(max_instructions=5_000)
    assert _smp_state(other) == first
    with pytest.raises(vtx.SnapshotError, match="vCPU|devices"):
        PcMachine(memory=4 << 20, apic=True, cpus=3).restore(path)


@pytest.mark.parametrize("kw, match", [
    (dict(cpus=2), "apic"), (dict(cpus=0, apic=True), "cpus"), (dict(cpus=65, apic=True), "cpus"),
    (dict(cpus="2", apic=True), "cpus"), (dict(cpus=True, apic=True), "cpus")])
def test_cpus_argument_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        PcMachine(memory=4 << 20, **kw)


def test_madt_and_cpuid_describe_every_vcpu():
    m = smp_pc(cpus=4)
    assert [lapic.apic_id for lapic in m.lapics] == [0, 1, 2, 3]
    assert [bool(lapic.base_msr & (1 << 8)) for lapic in m.lapics] == [True, False, False, False]
    assert [v.activity_state for v in m.vcpus] == [0, 3, 3, 3]
    # The MADT: four enabled Processor Local APIC entries, then the I/O APIC (ID 4).
    tables = m.vm.read(0xE0000, 0x400)
    madt = tables[tables.index(b"APIC"):]
    entries = madt[44:44 + 4 * 8 + 12]
    assert [tuple(entries[8 * i:8 * i + 5]) for i in range(4)] == [(0, 8, i, i, 1) for i in range(4)]
    assert entries[32:35] == bytes([1, 12, 4])
    for v in m.vcpus:
        assert v.model_cpuid(1)[1] >> 24 == v.index and v.model_cpuid(0xB)[3] == v.index
    # The most vCPUs: 64 processors in the MADT; the I/O APIC's 4-bit ID is 0.
    big = smp_pc(cpus=64)
    tables = big.vm.read(0xE0000, 0x800)
    madt = tables[tables.index(b"APIC"):]
    assert int.from_bytes(madt[4:8], "little") == 44 + 64 * 8 + 12 + 2 * 10
    assert [tuple(madt[44 + 8 * i:44 + 8 * i + 5]) for i in (0, 63)] == [(0, 8, 0, 0, 1), (0, 8, 63, 63, 1)]
    assert madt[44 + 64 * 8:44 + 64 * 8 + 3] == bytes([1, 12, 0])
    assert [lapic.apic_id for lapic in big.lapics] == list(range(64))


# --- Ctrl-C under interrupt storms, random writes to the APICs' registers ------

IPI_STORM = gate(0x41, "ipi") + gate(0x02, "nmi") + LIDT + f"""
    mov rbx, {APIC_BASE}
    mov dword ptr [rbx + 0xF0], 0x1FF
    sti
1:  mov dword ptr [rbx + 0x310], 0x09000000  # APIC ID 9: no such processor
    mov dword ptr [rbx + 0x300], 0x4041
    mov dword ptr [rbx + 0x300], 0x80041     # fixed 41H to all including self
    mov dword ptr [rbx + 0x300], 0xC0400     # NMI to all excluding self
    jmp 1b
ipi:
    inc r12
    mov dword ptr [rbx + 0xB0], 0
    iretq
nmi:
    inc r13
    iretq
""" + IDTR


def _storm(kind):
    if kind == "pit":
        return pc(PIT_STORM)
    if kind == "apic timer":
        m = PcMachine(memory=4 << 20, apic=True)
        m.vm.load(0x1000, vtx.asm(APIC_TIMER_GUEST, bits=64))
        m.vm.setup_long_mode(entry=0x1000)
        return m
    m = smp_pc()
    start_in_long_mode(m, IPI_STORM)
    return m


@pytest.mark.parametrize("kind", ["pit", "apic timer", "ipi storm"])
def test_ctrl_c_stops_an_interrupt_storm_and_the_machine_runs_on(kind):
    """A guest with its timer at the fastest rate (or two vCPUs sending one
    another IPIs and NMIs without end) and no budget: SIGINT, as Ctrl-C
    sends it, ends PcMachine.run with KeyboardInterrupt, wherever it lands
    (in the core, a device's handler or the platform's loop); every vCPU's
    state still passes the VM-entry checks, and the next run keeps its
    budget with the interrupts still coming."""
    import os
    import signal
    import threading
    m = _storm(kind)
    m.run(max_instructions=20_000)                  # the storm is going
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            # Bounded, so that a missed signal fails the test instead of hanging it.
            m.run(max_instructions=20_000_000_000)
    finally:
        timer.cancel()
    assert [v.check_entry() for v in m.vcpus] == [None] * len(m.vcpus)
    before = [v.r12 for v in m.vcpus]
    retired = sum(v.instructions for v in m.vcpus)
    assert m.run(max_instructions=100_000) == "budget"
    assert 100_000 <= sum(v.instructions for v in m.vcpus) - retired < 110_000
    assert all(v.r12 > b for v, b in zip(m.vcpus, before))     # interrupts still taken


@pytest.mark.parametrize("seed, nmis", [(0, 1), (1, 1), (2, 1), (3, 0)])
def test_random_writes_to_the_apic_and_io_apic_registers(seed, nmis):
    """Every register of the local APIC page and the I/O APIC (through
    IOREGSEL/IOWIN) written with random values of random sizes, and read
    back, from a guest: each access is an emulated MMIO access; the machine
    keeps its budget, raises nothing, and the memory outside the guest's RAM
    (the hypervisor's bitmaps and EPT) is never touched."""
    rnd = random.Random(seed)
    body = []
    for _ in range(400):
        if rnd.random() < 0.7:
            addr = APIC_BASE + rnd.randrange(0x40) * 0x10 + rnd.choice((0, 0, 0, 1, 2, 4, 8))
        else:
            addr = 0xFEC00000 + rnd.choice((0x00, 0x10, 0x20, 0x40, 0x3))
        size, reg = rnd.choice(((1, "al"), (2, "ax"), (4, "eax"), (8, "rax")))
        body.append(f"mov rbx, {addr:#x}\n    mov rax, {rnd.getrandbits(64):#x}\n"
                    f"    mov [rbx], {reg}\n    mov {reg}, [rbx]")
    m = PcMachine(memory=4 << 20, apic=True)
    # An ICR write can send the vCPU an NMI (IF does not hold it): the guest
    # counts them in R13.
    m.vm.load(0x1000, vtx.asm(gate(2, "nmi") + LIDT + "\n    ".join(body)
                              + "\n    sti\n1:  hlt\n    jmp 1b\nnmi:\n    inc r13\n    iretq\n" + IDTR, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    priv_tables = m.vm._machine.priv_bytes(0x1000)
    assert m.run(max_instructions=300_000) == "halted"
    # Every one of the 800 accesses was served (none faulted or got lost),
    # and what the random writes left behind wakes nobody.
    assert m.platform.stats()["exits"] == {vtx.ExitReason.EPT_VIOLATION: 800, vtx.ExitReason.HLT: 1}
    assert m.vcpu.r13 == nmis
    assert m.vm._machine.priv_bytes(0x1000) == priv_tables


# --- x2APIC mode (PcMachine(x2apic=True)) ----------------------------------------

def _x2apic_eoi():
    return """
    push rcx
    push rax
    push rdx
    mov ecx, 0x80B                # EOI
    xor eax, eax
    xor edx, edx
    wrmsr
    pop rdx
    pop rax
    pop rcx
    iretq
"""


X2APIC_GUEST = gate(0x40, "tick") + gate(0x41, "ipi") + gate(0x0D, "gp") + LIDT + """
    mov eax, 1
    cpuid
    mov r8d, ecx                  # CPUID.1:ECX (bit 21: x2APIC)
    mov ecx, 0x1B
    rdmsr
    or eax, 0x400                 # EXTD: x2APIC mode
    wrmsr
    mov ecx, 0x802                # x2APIC ID
    rdmsr
    mov r9d, eax
    mov ecx, 0x803                # version
    rdmsr
    mov r10d, eax
    mov rbx, 0xFEE00030
    mov r11d, dword ptr [rbx]     # the xAPIC page decodes nothing now
    mov ecx, 0x80F                # SVR: enabled, spurious vector FFH
    mov eax, 0x1FF
    xor edx, edx
    wrmsr
    sti
    mov ecx, 0x83F                # SELF IPI, vector 41H
    mov eax, 0x41
    wrmsr
    mov r15d, r12d                # the IPI was taken before this instruction
    mov ecx, 0x80B                # RDMSR of EOI (write-only): #GP
    rdmsr
    mov ecx, 0x808                # TPR with reserved bit 8: #GP
    mov eax, 0x100
    wrmsr
    mov ecx, 0x1B                 # x2APIC -> xAPIC: #GP
    rdmsr
    and eax, ~0x400
    wrmsr
    mov ecx, 0x83E                # divide by 1
    mov eax, 0xB
    wrmsr
    mov ecx, 0x832                # LVT timer: periodic, vector 40H
    mov eax, 0x20040
    wrmsr
    mov ecx, 0x838                # initial count 250: 10 us at 25 MHz
    mov eax, 250
    wrmsr
1:  hlt
    cmp r13, 3
    jb 1b
    mov ecx, 0x832                # masked
    mov eax, 0x30040
    wrmsr
    mov al, 0
    out 0xf4, al
tick:
    inc r13""" + _x2apic_eoi() + """
ipi:
    inc r12""" + _x2apic_eoi() + """
gp:
    inc r14
    add qword ptr [rsp + 8], 2    # over the 2-byte RDMSR/WRMSR (past the error code)
    add rsp, 8
    iretq
""" + IDTR


def test_x2apic_mode_serves_the_apic_msrs():
    """With x2apic=True CPUID.1:ECX[21] is set, IA32_APIC_BASE.EXTD turns
    the APIC to x2APIC mode (SDM Vol. 3A 11.12.1), and RDMSR/WRMSR of
    800H-8FFH reach it: the ID and version, a self-IPI taken right after its
    WRMSR, #GP(0) for a read of the write-only EOI, a reserved TPR bit and
    the x2APIC -> xAPIC transition (11.12.1.2, 11.12.5), the periodic timer
    with its EOIs; the xAPIC page reads all ones."""
    m = PcMachine(memory=4 << 20, apic=True, x2apic=True)
    m.vm.load(0x1000, vtx.asm(X2APIC_GUEST, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    assert m.run(max_instructions=1_000_000) == "debug-exit 1"
    v = m.vcpu
    assert v.r8 >> 21 & 1 == 1 and v.r8 >> 31 & 1 == 1       # x2APIC, hypervisor
    assert m.lapic.x2apic_mode and m.lapic.base_msr == 0xFEE00000 | 0xD00   # EN, EXTD, BSP
    assert (v.r9, v.r10, v.r11) == (0, 0x50014, 0xFFFFFFFF)
    assert (v.r12, v.r15) == (1, 1)
    assert v.r14 == 3 and v.r13 == 3
    # Three periods of 10 us after the initial count was written.
    assert 30_000 <= m.clock.now_ns() < 30_200
    exits = m.platform.stats()["exits"]
    assert exits[vtx.ExitReason.RDMSR] == 5 and exits[vtx.ExitReason.WRMSR] == 13
    assert exits[vtx.ExitReason.EPT_VIOLATION] == 1             # the one xAPIC-page read


def test_without_x2apic_extd_is_reserved():
    """apic=True alone: CPUID.1:ECX[21] is clear, so IA32_APIC_BASE bit 10
    is reserved (#GP(0)) and the APIC stays in xAPIC mode; the x2APIC MSRs
    are not served (#GP(0), the model has no such MSRs)."""
    m = PcMachine(memory=4 << 20, apic=True)
    m.vm.load(0x1000, vtx.asm(gate(0x0D, "gp") + LIDT + """
    mov eax, 1
    cpuid
    mov r8d, ecx
    mov ecx, 0x1B
    rdmsr
    or eax, 0x400
    wrmsr
    mov ecx, 0x802
    rdmsr
    hlt
gp:
    inc r14
    add qword ptr [rsp + 8], 2
    add rsp, 8
    iretq
""" + IDTR, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    assert m.run(max_instructions=10_000) == "halted"
    assert m.vcpu.r8 >> 21 & 1 == 0 and m.vcpu.r14 == 2
    assert not m.lapic.x2apic_mode and m.lapic.base_msr == 0xFEE00000 | 0x900
    with pytest.raises(ValueError, match="x2apic=True needs apic=True"):
        PcMachine(memory=4 << 20, x2apic=True)


def test_x2apic_ipis_between_two_vcpus():
    """Two vCPUs in x2APIC mode: the BSP sends fixed IPIs by WRMSR of the
    64-bit ICR (830H) with the destination x2APIC ID in bits 63:32 (SDM Vol.
    3A 11.12.9), the AP answers each one, and an ICR with reserved bits set
    is #GP(0) (11.12.1.3)."""
    m = PcMachine(memory=4 << 20, apic=True, cpus=2, x2apic=True)
    start_in_long_mode(m, gate(0x41, "ping") + gate(0x42, "pong") + gate(0x0D, "gp") + LIDT + """
    mov ecx, 0x1B
    rdmsr
    or eax, 0x400
    wrmsr
    mov ecx, 0x80F
    mov eax, 0x1FF
    xor edx, edx
    wrmsr
    mov ecx, 0x802
    rdmsr
    test eax, eax
    jnz ap
1:  cmp dword ptr [0x704], 1      # the AP's APIC is enabled
    jne 1b
    mov ecx, 0x830
    mov eax, 0x100041             # reserved bit 20: #GP
    mov edx, 1
    wrmsr
2:  cli
    inc r13
    mov ecx, 0x830
    mov eax, 0x41                 # fixed 41H, physical, to x2APIC ID 1
    mov edx, 1
    wrmsr
3:  sti
    hlt
    cli
    cmp r12, r13
    jne 3b
    cmp r13, 10
    jne 2b
    mov al, 0
    out 0xf4, al
ap:
    mov dword ptr [0x704], 1
    sti
4:  hlt
    jmp 4b
ping:                             # on the AP: 42H back to x2APIC ID 0
    inc r12
    mov ecx, 0x830
    mov eax, 0x42
    xor edx, edx
    wrmsr""" + _x2apic_eoi() + """
pong:
    inc r12""" + _x2apic_eoi() + """
gp:
    inc r14
    add qword ptr [rsp + 8], 2
    add rsp, 8
    iretq
""" + IDTR)
    assert m.run(max_instructions=1_000_000) == "debug-exit 1"
    bsp, ap = m.vcpus
    assert (bsp.r13, bsp.r12, ap.r12, bsp.r14, ap.r14) == (10, 10, 10, 1, 0)
    assert all(lapic.x2apic_mode for lapic in m.lapics)
    assert m.ipis["fixed"] == 20


TSC_DEADLINE_GUEST = gate(0x40, "tick") + gate(0x0D, "gp") + LIDT + f"""
    mov eax, 1
    cpuid
    mov r8d, ecx                  # CPUID.1:ECX (bit 24: TSC deadline)
    mov rbx, {APIC_BASE}
    mov dword ptr [rbx + 0xF0], 0x1FF
    mov dword ptr [rbx + 0x320], 0x40040     # LVT timer: TSC-deadline mode, vector 40H
    rdtsc
    shl rdx, 32
    or rax, rdx
    add rax, 5000
    mov r9, rax                   # the deadline: 5 us from now
    mov rdx, rax
    shr rdx, 32
    mov ecx, 0x6E0
    wrmsr
    sti
1:  hlt
    test r13, r13
    jz 1b
    mov ecx, 0x6E0                # cleared when it fired
    rdmsr
    mov r11d, eax
    mov rsi, r10                  # the first interrupt's RDTSC
    mov eax, 1                    # a deadline already passed: at once
    xor edx, edx
    wrmsr
    mov r15, r13
    mov dword ptr [rbx + 0x320], 0x40 # one-shot mode: the MSR is ignored and reads 0
    mov eax, -1
    mov edx, 0x7fffffff
    wrmsr
    rdmsr
    mov r14d, eax
    mov al, 0
    out 0xf4, al
tick:
    push rax
    push rdx
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r10, rax
    inc r13
    mov dword ptr [rbx + 0xB0], 0
    pop rdx
    pop rax
    iretq
gp:
    inc r12
    add qword ptr [rsp + 8], 2
    add rsp, 8
    iretq
""" + IDTR


def test_tsc_deadline_mode():
    """tsc_deadline=True: CPUID.1:ECX[24] is set and IA32_TSC_DEADLINE
    (6E0H) arms the APIC timer in TSC-deadline mode (SDM Vol. 3A 11.5.4.1):
    the interrupt comes when the TSC reaches the deadline, the MSR reads 0
    after it fired, a deadline already passed fires right after its WRMSR,
    and in one-shot mode a write is ignored and the MSR reads 0."""
    m = PcMachine(memory=4 << 20, apic=True, tsc_deadline=True)
    m.vm.load(0x1000, vtx.asm(TSC_DEADLINE_GUEST, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    assert m.run(max_instructions=1_000_000) == "debug-exit 1"
    v = m.vcpu
    assert v.r8 >> 24 & 1 == 1
    # The halted guest skipped ahead to the deadline: its handler's RDTSC,
    # two PUSHes into it, reads the deadline plus those two instructions.
    assert v.rsi == v.r9 + 2
    assert (v.r11, v.r15, v.r13, v.r14, v.r12) == (0, 2, 2, 0, 0)
    assert m.lapic.tsc_deadline == 0


def test_without_tsc_deadline_the_msr_is_not_there():
    m = PcMachine(memory=4 << 20, apic=True)
    m.vm.load(0x1000, vtx.asm(TSC_DEADLINE_GUEST, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    assert m.run(max_instructions=100_000) == "halted"          # for good: no timer is armed
    v = m.vcpu
    assert v.r8 >> 24 & 1 == 0
    assert v.r12 == 1 and v.r13 == 0          # WRMSR 6E0H: #GP(0), and no timer interrupt
    with pytest.raises(ValueError, match="tsc_deadline=True needs apic=True"):
        PcMachine(memory=4 << 20, tsc_deadline=True)


@pytest.mark.parametrize("seed", range(3))
def test_random_x2apic_msr_writes_from_a_guest(seed):
    """In x2APIC mode, random values written to random MSRs 800H-8FFH and
    read back: every access is a RDMSR/WRMSR exit the APIC serves, each one
    the SDM makes #GP (11.12.1.2-11.12.1.3) is a #GP(0) the guest takes (as
    many as a LocalApic of its own refuses the same accesses with), nothing
    raises, and the memory outside RAM is untouched."""
    from vtx.devices import ApicGp, InstructionClock, LocalApic
    rnd = random.Random(seed)
    accesses = []
    for _ in range(300):
        msr = 0x800 + rnd.randrange(0x40) if rnd.random() < 0.9 else 0x800 + rnd.randrange(0x100)
        accesses.append((msr, rnd.getrandbits(64) if rnd.random() < 0.5 else rnd.getrandbits(32)))
    ref = LocalApic(InstructionClock(lambda: 0))       # which accesses #GP does not depend on time
    ref.set_base_msr(ref.base_msr | 0x400)
    gps = 0
    for msr, value in accesses:
        for op in (lambda: ref.msr_write(msr, value), lambda: ref.msr_read(msr)):
            try:
                op()
            except ApicGp:
                gps += 1
    body = "\n    ".join(f"mov ecx, {msr:#x}\n    mov eax, {v & 0xFFFFFFFF:#x}\n    mov edx, {v >> 32:#x}\n"
                         "    wrmsr\n    rdmsr" for msr, v in accesses)
    m = PcMachine(memory=4 << 20, apic=True, x2apic=True)
    m.vm.load(0x1000, vtx.asm(gate(0x0D, "gp") + LIDT + """
    mov ecx, 0x1B
    rdmsr
    or eax, 0x400
    wrmsr
    """ + body + """
    sti
1:  hlt
    jmp 1b
gp:
    inc r14
    add qword ptr [rsp + 8], 2
    add rsp, 8
    iretq
""" + IDTR, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    priv_tables = m.vm._machine.priv_bytes(0x1000)
    assert m.run(max_instructions=300_000) == "halted"
    assert m.platform.stats()["exits"] == {vtx.ExitReason.RDMSR: 301, vtx.ExitReason.WRMSR: 301,
                                           vtx.ExitReason.HLT: 1}
    assert m.vcpu.r14 == gps > 100
    assert m.vm._machine.priv_bytes(0x1000) == priv_tables


DMA_GUEST = """
    mov rdi, 0x10000000
    mov rcx, 0x4000000            # 256 MiB of dwords
    mov dx, 0x3f8 + 7
    cld
    rep insd
    hlt
"""


def _dma_pc():
    """A guest streaming the UART's scratch register into a 256 MiB MMIO
    device with one REP INSD (the platform emulates string I/O)."""
    m = PcMachine(memory=4 << 20)
    writes = [0, None]          # how many, the last address

    def dma(vcpu, gpa, size, w, v):
        # No call after the side effect: a signal cannot land between this
        # write and the platform counting its iteration.
        writes[0] += 1
        writes[1] = gpa
        return 0
    m.vm.map_mmio(0x10000000, 0x10000000, dma)
    m.vm.load(0x1000, vtx.asm(DMA_GUEST, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    return m, writes


def test_rep_string_io_at_mmio_keeps_the_budget():
    """A REP INSD of 2**26 elements into MMIO: the platform emulates it a
    chunk at a time, with RCX and RDI after each iteration as the processor
    leaves them, RIP on the instruction until it is done; the iterations are
    steps of the budget, which ends the run exactly (4 instructions and
    99,996 iterations); the next runs go on where it stopped."""
    m, writes = _dma_pc()
    priv_tables = m.vm._machine.priv_bytes(0x1000)
    rip = 0x1000 + len(vtx.asm(DMA_GUEST.split("rep insd")[0], bits=64))
    for budget, done in ((100_000, 99_996), (1000, 100_996), (1, 100_997)):
        assert m.run(max_instructions=budget) == "budget"
        v = m.vcpu
        assert (v.rip, v.rcx, v.rdi, v.instructions) == (rip, 0x4000000 - done, 0x10000000 + 4 * done, 4)
        assert m.platform.string_iterations == done == writes[0]
        assert writes[1] == 0x10000000 + 4 * (done - 1)
    assert m.vm._machine.priv_bytes(0x1000) == priv_tables


def test_ctrl_c_in_the_middle_of_a_rep_string_io():
    """SIGINT while the platform emulates the REP INSD: KeyboardInterrupt,
    and RCX and RDI agree with the device's writes (as after an iteration),
    so the next run goes on with the rest."""
    import os
    import signal
    import threading
    m, writes = _dma_pc()
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            m.run(max_instructions=0x4000000)      # bounded: a missed signal fails instead of hanging
    finally:
        timer.cancel()
    v = m.vcpu
    done = writes[0]
    assert 0 < done < 0x4000000
    assert (v.rcx, v.rdi) == (0x4000000 - done, 0x10000000 + 4 * done)
    assert m.vm.read(v.rip, 2) == b"\xf3\x6d"                  # on the REP INSD
    assert m.run(max_instructions=1000) == "budget"
    assert writes[0] == done + 1000 and v.rcx == 0x4000000 - done - 1000


def test_an_interrupt_is_taken_between_two_chunks_of_a_rep_ins():
    """An interrupt request raised while the platform does a REP INSD (here
    by the device the INSD writes to, at its 1500th write) is injected when
    the chunk ends: the guest's handler runs with RIP on the REP INSD and
    RCX counting what is left (SDM Vol. 2 REP), and after its IRET the
    instruction goes on to the end."""
    m = PcMachine(memory=4 << 20)
    writes = [0]

    def dev(vcpu, gpa, size, w, v):
        writes[0] += 1
        if writes[0] == 1500:
            # IRQ 3 rises (edge triggered; an 8259A wants the line high
            # until the INTA, so it stays up: no second edge follows).
            m.platform.set_irq(3, 1)
        return 0
    m.vm.map_mmio(0x10000000, 0x100000, dev)
    m.vm.load(0x1000, vtx.asm(gate(0x23, "irq3") + LIDT + PIC_INIT + """
    mov al, 0xf7                  # only IRQ 3 (COM2's line, which nothing else drives)
    out 0x21, al
    mov rdi, 0x10000000
    mov rcx, 5000
    mov dx, 0x3f8 + 7
    cld
    sti
    nop                           # past the STI shadow
    rep insd
    hlt
irq3:
    inc r12
    mov r13, rcx
    mov r14, [rsp]                # the return RIP
    push rax
    mov al, 0x20
    out 0x20, al
    pop rax
    iretq
""" + IDTR, bits=64))
    m.vm.setup_long_mode(entry=0x1000)
    assert m.run(max_instructions=100_000) == "halted"
    v = m.vcpu
    assert v.r12 == 1 and v.r13 == 5000 - 2 * Platform.STRING_CHUNK     # after the chunk of the 1500th
    assert v.r14 == v.rip - 2                    # the REP INSD (F3 6D), before the HLT
    assert v.rcx == 0 and v.rdi == 0x10000000 + 4 * 5000 and writes[0] == 5000


def test_snapshot_of_a_pc_in_x2apic_mode_replays_and_needs_the_same_options(tmp_path):
    """A PC saved with its APIC in x2APIC mode replays in another PC built
    the same way (the same ticks, #GPs and time); a PC built without
    x2apic refuses the file, naming both sets of options, and is left as
    it was."""
    def made(**kw):
        m = PcMachine(memory=4 << 20, apic=True, **kw)
        m.vm.load(0x1000, vtx.asm(X2APIC_GUEST, bits=64))
        m.vm.setup_long_mode(entry=0x1000)
        return m
    m = made(x2apic=True)
    assert m.run(max_instructions=70) == "budget" and m.lapic.x2apic_mode
    path = tmp_path / "x2apic.snap"
    m.save(path)
    assert m.run(max_instructions=1_000_000) == "debug-exit 1"
    first = (m.vcpu.r13, m.vcpu.r14, m.vcpu.rip, m.clock.now_ns())
    other = made(x2apic=True)
    other.restore(path)
    assert other.lapic.x2apic_mode
    assert other.run(max_instructions=1_000_000) == "debug-exit 1"
    assert (other.vcpu.r13, other.vcpu.r14, other.vcpu.rip, other.clock.now_ns()) == first
    plain = made()
    before = (plain.vcpu.rip, plain.vcpu.rsp, plain.vm.read(0, 0x10000), plain.lapic.base_msr)
    with pytest.raises(vtx.SnapshotError) as e:
        plain.restore(path)
    assert str(e.value) == (f"{path} is a snapshot of a PC built with {{'apic': True, 'cpus': 1, "
                            "'tsc_deadline': False, 'x2apic': True}, this one is built with {'apic': True, "
                            "'cpus': 1, 'tsc_deadline': False, 'x2apic': False}")
    assert (plain.vcpu.rip, plain.vcpu.rsp, plain.vm.read(0, 0x10000), plain.lapic.base_msr) == before


def test_rep_ins_into_a_page_not_present_is_a_page_fault():
    """A REP INSB that runs from a mapped page into one whose PDE the guest
    cleared: #PF (SDM Vol. 3A 4.7) after the iterations on the mapped page,
    CR2 the first address of the other, error code W (INS writes memory,
    not present, supervisor), RIP on the instruction and RCX counting what
    is left; the handler maps the page again and the IRET goes on with the
    rest."""
    m = pc("""
    mov rax, cr3
    lea rbx, [rax + 0x2000 + 8]   # the PDE of 200000H-3FFFFFH (vtx.vm.long_mode_tables)
    mov qword ptr [rbx], 0
    invlpg [0x200000]
    mov dx, 0x3f8 + 7             # the UART's scratch register
    mov al, 0x5a
    out dx, al
    mov rdi, 0x1ffff8
    mov ecx, 16
    cld
    rep insb
    hlt
pf:
    mov r13, cr2
    mov r14, [rsp]                # the error code
    mov r15, rcx
    mov qword ptr [rbx], 0x200083
    add rsp, 8
    iretq
""".replace("    mov rax, cr3", gate(0x0E, "pf") + "    mov rax, cr3", 1), memory=8 << 20)   # stack and tables above 6 MiB
    assert m.run(max_instructions=10_000) == "halted"
    v = m.vcpu
    assert (v.r13, v.r14, v.r15) == (0x200000, 0b010, 8)
    assert v.rcx == 0 and v.rdi == 0x200008
    assert m.vm.read(0x1FFFF8, 16) == b"\x5a" * 16
