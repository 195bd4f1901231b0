"""vtx.platform: device dispatch, interrupt injection, virtual time."""

import pytest

import vtx
from guest_idt import IDTR, LIDT, gate
from vtx.devices import Device, IrqLine
from vtx.platform import Platform


class OnePic:
    """An interrupt controller with lines 0-7 at vectors 0x20-0x27, lowest first."""

    def __init__(self):
        self.irr = 0
        self.acks = []

    def set_irq(self, line, level):
        if level:
            self.irr |= 1 << line

    def pending(self):
        return self.irr != 0

    def acknowledge(self):
        line = (self.irr & -self.irr).bit_length() - 1
        self.irr &= ~(1 << line)
        self.acks.append(line)
        return 0x20 + line


class Tick(Device):
    name = "tick"

    def __init__(self, irq, period):
        self.irq, self.period, self.next, self.fired = irq, period, period, []

    def next_deadline(self):
        return self.next

    def advance(self, now):
        while self.next <= now:
            self.fired.append(self.next)
            self.next += self.period
            self.irq.pulse()


class Port(Device):
    name = "port"

    def __init__(self, ports=(0xE9, 1)):
        self.ports = ports
        self.writes = []
        self.reads = []
        self.value = 0xA5A5A5A5

    def io_read(self, port, size):
        self.reads.append((port, size))
        return self.value

    def io_write(self, port, size, value):
        self.writes.append((port, size, value))


IDT_SETUP = gate(0x20, "handler") + LIDT
IDT_TAIL = IDTR


def machine(body, handler="inc ebx\n    iretq"):
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(IDT_SETUP + body + "\nhandler:\n    " + handler + IDT_TAIL, bits=64))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    p = Platform(vm)
    p.pic = OnePic()
    return vm, p


def test_halting_guest_takes_each_tick_and_time_skips_to_the_deadlines():
    vm, p = machine("""
    xor ebx, ebx
1:  sti
    hlt
    cmp ebx, 5
    jb 1b
    rdtsc
    cli
    hlt""")
    t = p.attach(Tick(IrqLine(p, 0), 1000))
    assert p.run(max_instructions=100_000) == "halted"
    assert vm.vcpu.rbx == 5 and p.injected == 5
    assert t.fired == [1000, 2000, 3000, 4000, 5000]
    # The guest's TSC includes the time skipped in HLT (the TSC offset).
    assert 5000 <= vm.vcpu.rax < 5100
    assert p.clock.now_ns() >= 5000


def test_two_vcpus_each_take_their_own_source_and_time_is_one_clock():
    """vCPU 0's interrupts come from ``pic``, vCPU 1's from ``intr[1]``:
    each halts between its ticks, and while both are halted the clock skips
    to the next deadline.  The clock counts both vCPUs' instructions; each
    RDTSC reads it."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(IDT_SETUP + """
    xor ebx, ebx
1:  sti
    hlt
    cmp ebx, 4
    jb 1b
    rdtsc
    mov r8, rax
    cli
    hlt
handler:
    inc ebx
    iretq""" + IDT_TAIL, bits=64))
    for stack in (0x70000, 0x60000):
        vm.setup_long_mode(entry=0x1000, stack=stack, vcpu=vm.add_vcpu())
    p = Platform(vm)
    p.pic, p.intr[1] = OnePic(), OnePic()
    fast = p.attach(Tick(IrqLine(p.pic, 0), 1000))
    slow = p.attach(Tick(IrqLine(p.intr[1], 0), 3000))
    assert p.run(max_instructions=100_000) == "halted"
    v0, v1 = vm.vcpus
    assert (v0.rbx, v1.rbx) == (4, 4) and p.injected == 8
    assert p.pic.acks == [0] * 4 and p.intr[1].acks == [0] * 4
    assert fast.fired[:4] == [1000, 2000, 3000, 4000] and slow.fired[:4] == [3000, 6000, 9000, 12000]
    # Each vCPU's RDTSC came right after its fourth tick: the clock there,
    # which counts the other vCPU's instructions too.
    assert 4000 < v0.r8 < 4100 and 12000 < v1.r8 < 12100
    # Both end halted with IF = 0: nothing can wake them, the run ends.
    assert [v.activity_state for v in vm.vcpus] == [1, 1]
    assert 12000 < p.clock.now_ns() < 12200


def test_interrupt_waits_for_the_window_when_the_guest_has_if_clear():
    # The guest keeps IF = 0 through a long loop, then opens a window.
    vm, p = machine("""
    xor ebx, ebx
    cli
    mov ecx, 3000
1:  dec ecx
    jnz 1b
    mov r8, rbx
    sti
    nop
    mov r9, rbx
    cli
    hlt""")
    p.attach(Tick(IrqLine(p, 0), 500))
    p.run(max_instructions=100_000)
    assert vm.vcpu.r8 == 0                       # nothing delivered while IF = 0
    assert vm.vcpu.r9 == 1                       # one delivery (all ticks were one edge-latched request)
    assert vm.vcpu.rbx == 1
    assert p.pic.acks == [0]


def test_port_dispatch_sizes_and_open_bus():
    vm, p = machine("""
    mov al, 0x11
    out 0xe9, al
    mov ax, 0x2233
    mov dx, 0xe9
    out dx, ax
    mov rax, -1
    in eax, dx
    mov r8, rax
    mov rax, -1
    in al, 0x80
    mov r9, rax
    mov rax, 0
    in ax, dx
    mov r10, rax
    cli
    hlt""")
    d = p.attach(Port())
    p.run(max_instructions=1000)
    assert d.writes == [(0xE9, 1, 0x11), (0xE9, 2, 0x2233)]
    assert vm.vcpu.r8 == 0xA5A5A5A5              # IN EAX zero-extends
    assert vm.vcpu.r9 == 0xFFFFFFFFFFFFFFFF      # nothing at port 0x80: all ones
    assert vm.vcpu.r10 == 0xA5A5
    assert d.reads == [(0xE9, 4), (0xE9, 2)]


def test_string_io_rep_outsb_and_insw():
    vm, p = machine("""
    lea rsi, [rip + msg]
    mov ecx, 5
    mov dx, 0xe9
    cld
    rep outsb
    mov r8, rsi
    mov rdi, 0x3000
    mov ecx, 2
    rep insw
    cli
    hlt
msg: .ascii "hello"
""")
    d = p.attach(Port())
    d.value = 0xBEEF
    p.run(max_instructions=1000)
    assert bytes(w[2] for w in d.writes) == b"hello"
    assert vm.vcpu.rcx == 0
    assert vm.read(0x3000, 4) == b"\xef\xbe\xef\xbe"
    assert vm.vcpu.rdi == 0x3004


def test_port_conflicts_are_errors():
    vm, p = machine("hlt")
    p.attach(Port())
    with pytest.raises(vtx.ArgumentError, match="already served"):
        p.attach(Port())
    with pytest.raises(vtx.ArgumentError, match="outside the I/O space"):
        p.attach(Port((0xFFFF, 2)))
