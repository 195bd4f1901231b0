"""vtx.pc.PcMachine: a PC's devices under a guest, and the bad inputs of a
guest that programs them to their limits."""

import random

import pytest

import vtx
from guest_idt import IDTR, LIDT, gate
from vtx.pc import PcMachine

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


def test_pit_at_its_fastest_rate_keeps_the_budget():
    # Mode 2 with count 2: an interrupt every 1.7 us of guest time, i.e.
    # every ~1,700 instructions; the guest spins with IF = 1.
    m = pc("""
    mov al, 0x34
    out 0x43, al
    mov al, 2
    out 0x40, al
    xor al, al
    out 0x40, al
    sti
1:  inc r13
    jmp 1b
""")
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
