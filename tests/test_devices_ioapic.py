"""The I/O APIC (vtx/devices/ioapic.py) driven directly: its registers through
IOREGSEL/IOWIN, edge and level inputs, remote IRR and EOI, masks, and delivery
to local APICs over an ApicBus."""

import json
import random

import pytest

from vtx.devices import ApicBus, Clock, IoApic, LocalApic
from vtx.devices import ioapic as IO
from vtx.devices import lapic as L
from vtx.errors import ArgumentError

BASE = 0xFEC00000
LBASE = 0xFEE00000


class FakeClock(Clock):
    def __init__(self):
        self.now = 0

    def now_ns(self):
        return self.now


def reg_read(io, index):
    io.mmio_write(BASE + IO.IOREGSEL, 4, index)
    return io.mmio_read(BASE + IO.IOWIN, 4)


def reg_write(io, index, value):
    io.mmio_write(BASE + IO.IOREGSEL, 4, index)
    io.mmio_write(BASE + IO.IOWIN, 4, value)


def route(io, pin, low, dest=0):
    reg_write(io, 0x11 + 2 * pin, dest << 24)
    reg_write(io, 0x10 + 2 * pin, low)


def system(n=2):
    clock = FakeClock()
    bus = ApicBus()
    events = []
    apics = []
    for i in range(n):
        a = bus.add(LocalApic(clock, apic_id=i))
        a.mmio_write(LBASE + L.SVR, 4, 0x1FF)
        a.on_nmi = lambda i=i: events.append(("nmi", i))
        a.on_init = lambda i=i: events.append(("init", i))
        a.on_extint = lambda i=i: events.append(("extint", i))
        apics.append(a)
    io = bus.add_ioapic(IoApic(clock))
    return io, apics, events


def test_registers_after_reset():
    io = IoApic(FakeClock(), ioapic_id=2)
    assert reg_read(io, IO.IOAPICID) == 0x02000000
    assert reg_read(io, IO.IOAPICVER) == 0x00170011
    assert reg_read(io, IO.IOAPICARB) == 0x02000000
    for i in range(0x10, 0x40, 2):
        assert reg_read(io, i) == 0x00010000 and reg_read(io, i + 1) == 0
    assert reg_read(io, 0x40) == 0
    assert io.mmio_read(BASE + IO.IOREGSEL, 4) == 0x40


def test_register_writes():
    io = IoApic(FakeClock())
    reg_write(io, IO.IOAPICID, 0xFFFFFFFF)
    assert reg_read(io, IO.IOAPICID) == 0x0F000000
    assert reg_read(io, IO.IOAPICARB) == 0x0F000000     # loaded from the ID
    reg_write(io, IO.IOAPICVER, 0)
    reg_write(io, IO.IOAPICARB, 0)
    assert reg_read(io, IO.IOAPICVER) == 0x00170011
    assert reg_read(io, IO.IOAPICARB) == 0x0F000000
    reg_write(io, 0x10 + 2 * 23, 0xFFFFFFFF)
    assert reg_read(io, 0x10 + 2 * 23) == 0x0001AFFF       # no status, no remote IRR
    reg_write(io, 0x11 + 2 * 23, 0xFFFFFFFF)
    assert reg_read(io, 0x11 + 2 * 23) == 0xFF000000
    io.mmio_write(BASE + IO.IOREGSEL, 4, 0x1234)
    assert io.mmio_read(BASE + IO.IOREGSEL, 4) == 0x34
    io.mmio_write(BASE + IO.IOREGSEL, 1, 0x12)
    assert io.mmio_read(BASE + IO.IOREGSEL, 1) == 0x12
    # IOWIN only as a 32-bit access; other offsets read 0.
    assert io.mmio_read(BASE + IO.IOWIN, 2) == 0
    assert io.mmio_read(BASE + 0x20, 4) == 0
    io.mmio_write(BASE + IO.IOREGSEL, 4, 0x10)
    io.mmio_write(BASE + IO.IOWIN, 1, 0)
    assert reg_read(io, 0x10) == 0x00010000


def test_edge_fixed_physical():
    io, (a0, a1), events = system()
    route(io, 4, 0x34, dest=1)
    io.set_irq(4, True)
    assert a1.irr == 1 << 0x34 and a0.irr == 0 and a1.tmr == 0
    io.set_irq(4, True)                  # no new edge
    a1.acknowledge()
    assert a1.irr == 0
    io.set_irq(4, False)
    io.set_irq(4, True)
    assert a1.irr == 1 << 0x34
    assert reg_read(io, 0x18) == 0x34    # delivery status and remote IRR stay 0


def test_masked_edge_is_lost():
    io, (a0, a1), events = system()
    route(io, 2, 0x10032)
    io.set_irq(2, True)
    io.set_irq(2, False)
    route(io, 2, 0x32)
    assert a0.irr == 0
    io.set_irq(2, True)
    assert a0.irr == 1 << 0x32


def test_level_remote_irr_and_eoi():
    io, (a0, a1), events = system()
    route(io, 9, 0x8000 | 0x49)          # level, active high, fixed, APIC 0
    io.set_irq(9, True)
    assert a0.irr == 1 << 0x49 and a0.tmr == 1 << 0x49
    assert reg_read(io, 0x10 + 18) == 0xC049             # remote IRR set
    assert a0.acknowledge() == 0x49
    io.set_irq(9, True)                  # still asserted, remote IRR: nothing
    assert a0.irr == 0
    a0.mmio_write(LBASE + L.EOI, 4, 0)   # EOI: line still active, sent again
    assert a0.irr == 1 << 0x49 and reg_read(io, 0x22) == 0xC049
    a0.acknowledge()
    io.set_irq(9, False)
    a0.mmio_write(LBASE + L.EOI, 4, 0)
    assert a0.irr == 0 and reg_read(io, 0x22) == 0x8049


def test_level_active_low_and_unmask():
    io, (a0, a1), events = system()
    io.set_irq(11, True)                 # deasserted for active low
    route(io, 11, 0x1A000 | 0x5B)        # masked, level, active low
    io.set_irq(11, False)                # asserted but masked
    assert a0.irr == 0
    route(io, 11, 0xA000 | 0x5B)         # unmasking sends the pending level
    assert a0.irr == 1 << 0x5B
    assert reg_read(io, 0x26) == 0xE05B


def test_eoi_other_vector_keeps_remote_irr():
    io, (a0, a1), events = system()
    route(io, 1, 0x8000 | 0x61)
    io.set_irq(1, True)
    assert a0.acknowledge() == 0x61 and a0.irr == 0
    io.eoi(0x62)
    assert reg_read(io, 0x12) == 0xC061 and a0.irr == 0
    io.eoi(0x61)                         # cleared, and resent at once: line active
    assert reg_read(io, 0x12) == 0xC061 and a0.irr == 1 << 0x61
    io.set_irq(1, False)
    io.eoi(0x61)
    assert reg_read(io, 0x12) == 0x8061


def test_logical_destination_and_lowest_priority():
    io, apics, events = system(3)
    for i, a in enumerate(apics):
        a.mmio_write(LBASE + L.LDR, 4, (1 << i) << 24)
    route(io, 5, 0x800 | 0x70, dest=0b110)        # logical, fixed
    io.set_irq(5, True)
    assert [a.irr >> 0x70 & 1 for a in apics] == [0, 1, 1]
    apics[1].mmio_write(LBASE + L.TPR, 4, 0x40)
    route(io, 6, 0x900 | 0x71, dest=0b110)        # logical, lowest priority
    io.set_irq(6, True)
    assert [a.irr >> 0x71 & 1 for a in apics] == [0, 0, 1]


def test_nmi_init_extint_smi():
    io, (a0, a1), events = system()
    route(io, 0, 0x400, dest=1)          # NMI
    route(io, 1, 0x500, dest=0)          # INIT
    route(io, 2, 0x700, dest=0xFF)       # ExtINT, broadcast
    route(io, 3, 0x200, dest=0)          # SMI: ignored
    for pin in range(4):
        io.set_irq(pin, True)
    assert events == [("nmi", 1), ("init", 0), ("extint", 0), ("extint", 1)]
    # A level-triggered NMI entry takes only the rising edge.
    route(io, 7, 0x8400, dest=1)
    io.set_irq(7, True)
    io.set_irq(7, True)
    assert events.count(("nmi", 1)) == 2


def test_no_bus_and_errors():
    io = IoApic(FakeClock())
    route(io, 0, 0x40)
    io.set_irq(0, True)                  # no bus: nowhere to go, no error
    with pytest.raises(ArgumentError, match="line"):
        io.set_irq(24, True)
    with pytest.raises(ArgumentError, match="base"):
        IoApic(None, base=0xFEC00001)
    with pytest.raises(ArgumentError, match="ioapic_id"):
        IoApic(None, ioapic_id=16)
    with pytest.raises(ArgumentError, match="ioapic"):
        io.set_state({"device": "lapic"})


def test_state_round_trip_and_reset():
    io, (a0, a1), events = system()
    fresh = IoApic(None).get_state()
    route(io, 9, 0x8000 | 0x49, dest=1)
    io.set_irq(9, True)
    reg_write(io, IO.IOAPICID, 0x05000000)
    io.mmio_write(BASE, 4, 0x13)
    state = json.loads(json.dumps(io.get_state()))
    other = IoApic(None)
    other.set_state(state)
    assert other.get_state() == io.get_state()
    assert other.read_register(0x22) == 0xC049
    io.reset()
    assert io.get_state() == fresh


def test_random_writes_never_raise():
    rng = random.Random(7)
    io, apics, events = system()
    for _ in range(5000):
        r = rng.random()
        if r < 0.4:
            io.mmio_write(BASE + rng.choice((0, 0x10, 0x10, 0x20, 3)), rng.choice((1, 2, 4, 4, 8)),
                          rng.getrandbits(32))
        elif r < 0.6:
            io.mmio_read(BASE + rng.choice((0, 0x10)), rng.choice((1, 4)))
        elif r < 0.9:
            io.set_irq(rng.randrange(24), rng.random() < 0.5)
        else:
            a = rng.choice(apics)
            if a.pending() is not None:
                a.acknowledge()
            a.mmio_write(LBASE + L.EOI, 4, 0)
    assert reg_read(io, IO.IOAPICVER) == 0x00170011


def test_polarity_change_asserts_level_input():
    io, (a0, a1), events = system()
    route(io, 12, 0x8000 | 0x3C)         # level, active high, line low: idle
    assert a0.irr == 0
    route(io, 12, 0xA000 | 0x3C)         # active low: the low line is asserted
    assert a0.irr == 1 << 0x3C and reg_read(io, 0x28) == 0xE03C
