"""The local APIC (vtx/devices/lapic.py) driven directly, on a clock the test
sets: registers, priorities, acceptance, EOI, the timer, IPIs and the bus,
x2APIC MSRs and their #GP cases, saved state."""

import json
import random
from fractions import Fraction

import pytest

from vtx.devices import ApicBus, ApicGp, Clock, LocalApic
from vtx.devices import lapic as L
from vtx.errors import ArgumentError

BASE = 0xFEE00000


class FakeClock(Clock):
    def __init__(self):
        self.now = 0

    def now_ns(self):
        return self.now


class Log:
    """Records the callbacks an APIC makes."""

    def __init__(self):
        self.events = []

    def hook(self, apic):
        apic.on_nmi = lambda: self.events.append(("nmi", apic.x2apic_id))
        apic.on_init = lambda: self.events.append(("init", apic.x2apic_id))
        apic.on_sipi = lambda v: self.events.append(("sipi", apic.x2apic_id, v))
        apic.on_extint = lambda: self.events.append(("extint", apic.x2apic_id))
        return apic


def make(apic_id=0, **kw):
    clock = FakeClock()
    return clock, LocalApic(clock, apic_id=apic_id, **kw)


def rd(apic, off):
    return apic.mmio_read(BASE + off, 4)


def wr(apic, off, value):
    apic.mmio_write(BASE + off, 4, value)


def enable(apic, svr=0x1FF):
    wr(apic, L.SVR, svr)


def x2(apic):
    apic.set_base_msr(BASE | L.BASE_EN | L.BASE_EXTD)


# ---------------------------------------------------------------- reset


def test_power_on_values():
    clock, a = make(apic_id=3, bsp=True)
    assert a.base_msr == 0xFEE00900            # base, EN, BSP
    assert rd(a, L.ID) == 3 << 24
    assert rd(a, L.VERSION) == 0x00050014
    assert rd(a, L.TPR) == 0 and rd(a, L.PPR) == 0 and rd(a, L.LDR) == 0
    assert rd(a, L.DFR) == 0xFFFFFFFF
    assert rd(a, L.SVR) == 0xFF
    for off in (L.LVT_CMCI, L.LVT_TIMER, L.LVT_THERMAL, L.LVT_PERF, L.LVT_LINT0,
                L.LVT_LINT1, L.LVT_ERROR):
        assert rd(a, off) == 0x00010000
    for i in range(8):
        assert rd(a, L.IRR + 16 * i) == rd(a, L.ISR + 16 * i) == rd(a, L.TMR + 16 * i) == 0
    assert rd(a, L.TIMER_INITIAL) == rd(a, L.TIMER_CURRENT) == rd(a, L.TIMER_DIVIDE) == 0
    assert rd(a, L.ICR_LOW) == rd(a, L.ICR_HIGH) == 0
    _, ap = make(apic_id=1)
    assert ap.base_msr == 0xFEE00800           # not the BSP


def test_reset_restores_power_on_state():
    clock, a = make()
    fresh = a.get_state()
    enable(a)
    wr(a, L.TPR, 0x40)
    wr(a, L.ID, 0x7 << 24)
    a.accept(0x50)
    wr(a, L.TIMER_INITIAL, 100)
    x2(a)
    a.reset()
    assert a.get_state() == fresh


def test_init_keeps_id_and_mode():
    clock, a = make(apic_id=5)
    enable(a)
    wr(a, L.ID, 0x9 << 24)
    wr(a, L.TPR, 0x20)
    a.accept(0x40)
    a.init()
    assert rd(a, L.ID) == 0x9 << 24
    assert rd(a, L.TPR) == 0 and rd(a, L.SVR) == 0xFF and a.irr == 0
    x2(a)
    a.init()
    assert a.x2apic_mode and a.msr_read(0x802) == 5


# -------------------------------------------------------- register page


def test_register_masks():
    clock, a = make()
    enable(a)
    wr(a, L.ID, 0xFFFFFFFF)
    assert rd(a, L.ID) == 0xFF000000
    wr(a, L.TPR, 0xFFFFFFFF)
    assert rd(a, L.TPR) == 0xFF
    wr(a, L.LDR, 0xFFFFFFFF)
    assert rd(a, L.LDR) == 0xFF000000
    wr(a, L.DFR, 0)
    assert rd(a, L.DFR) == 0x0FFFFFFF          # cluster model, 27:0 all ones
    wr(a, L.SVR, 0xFFFFFFFF)
    assert rd(a, L.SVR) == 0x3FF
    wr(a, L.LVT_TIMER, 0xFFFFFFFF)
    assert rd(a, L.LVT_TIMER) == 0x000700FF
    wr(a, L.LVT_LINT0, 0xFFFFFFFF)
    assert rd(a, L.LVT_LINT0) == 0x0001A7FF    # no delivery status, no remote IRR
    wr(a, L.LVT_ERROR, 0xFFFFFFFF)
    assert rd(a, L.LVT_ERROR) == 0x000100FF
    wr(a, L.LVT_PERF, 0xFFFFFFFF)
    assert rd(a, L.LVT_PERF) == 0x000107FF
    wr(a, L.TIMER_DIVIDE, 0xFFFFFFFF)
    assert rd(a, L.TIMER_DIVIDE) == 0xB
    wr(a, L.ICR_HIGH, 0xFFFFFFFF)
    assert rd(a, L.ICR_HIGH) == 0xFF000000
    wr(a, L.VERSION, 0)
    assert rd(a, L.VERSION) == 0x00050014
    wr(a, L.APR, 0xFF)
    assert rd(a, L.APR) == 0


def test_bad_sizes_and_offsets():
    clock, a = make()
    enable(a)
    wr(a, L.TPR, 0x30)
    assert a.mmio_read(BASE + L.TPR, 1) == 0
    assert a.mmio_read(BASE + L.TPR, 8) == 0
    assert a.mmio_read(BASE + L.TPR + 4, 4) == 0
    a.mmio_write(BASE + L.TPR, 2, 0x50)
    a.mmio_write(BASE + L.TPR + 4, 4, 0x50)
    assert rd(a, L.TPR) == 0x30
    assert a.esr == 0 and a._esr_pending == 0
    # A reserved register: reads 0, sets "illegal register address" (bit 7).
    assert rd(a, 0x040) == 0
    wr(a, L.ESR, 0)
    assert rd(a, L.ESR) == 0x80
    wr(a, L.ESR, 0)
    assert rd(a, L.ESR) == 0


def test_esr_write_then_read():
    clock, a = make()
    enable(a)
    wr(a, L.ICR_LOW, 0x000C0005)       # fixed, all excl. self, vector 5: illegal
    assert rd(a, L.ESR) == 0           # not visible before a write
    wr(a, L.ESR, 0x12345)
    assert rd(a, L.ESR) == 0x20        # send illegal vector
    a.accept(3)
    assert rd(a, L.ESR) == 0x20
    wr(a, L.ESR, 0)
    assert rd(a, L.ESR) == 0x40        # receive illegal vector
    assert a.irr == 0


def test_error_lvt_raises_interrupt():
    clock, a = make()
    enable(a)
    wr(a, L.LVT_ERROR, 0xFE)
    rd(a, 0x050)                       # illegal register address
    assert a.irr == 1 << 0xFE
    # An illegal vector in the error LVT only logs.
    wr(a, L.LVT_ERROR, 0x02)
    a.accept(1)
    wr(a, L.ESR, 0)
    assert rd(a, L.ESR) == 0xC0
    assert a.irr == 1 << 0xFE


# ----------------------------------------------------- priority, accept, EOI


@pytest.mark.parametrize("tpr, isr_vec, ppr", [
    (0x00, None, 0x00),
    (0x35, None, 0x35),
    (0x35, 0x41, 0x40),
    (0x45, 0x41, 0x45),
    (0x40, 0x4F, 0x40),
    (0x3F, 0x4F, 0x40),
    (0x00, 0xFE, 0xF0),
])
def test_ppr(tpr, isr_vec, ppr):
    clock, a = make()
    enable(a)
    if isr_vec is not None:
        a.accept(isr_vec)
        assert a.acknowledge() == isr_vec
    wr(a, L.TPR, tpr)
    assert rd(a, L.PPR) == ppr


def test_pending_and_acknowledge_order():
    clock, a = make()
    enable(a)
    for v in (0x31, 0x62, 0x65, 0x20):
        assert a.accept(v)
    assert rd(a, L.IRR + 0x10) == (1 << (0x31 - 32)) | 1 and rd(a, L.IRR + 0x30) == 0x24
    assert a.pending() == 0x65
    assert a.acknowledge() == 0x65
    assert a.isr == 1 << 0x65 and rd(a, L.ISR + 0x30) == 0x20
    # 0x62 is in the same class as the one in service: held.
    assert a.pending() is None
    wr(a, L.EOI, 0)
    assert a.isr == 0
    assert a.acknowledge() == 0x62
    wr(a, L.TPR, 0x70)
    wr(a, L.EOI, 0)
    assert a.pending() is None
    # Nothing to offer: INTA gets the spurious vector and no ISR bit.
    assert a.acknowledge() == 0xFF
    assert a.isr == 0
    wr(a, L.TPR, 0x2F)
    assert a.pending() == 0x31
    wr(a, L.TPR, 0x30)
    assert a.pending() is None


def test_eoi_order_and_level_callback():
    clock, a = make()
    enable(a)
    eois = []
    a.on_eoi = eois.append
    a.accept(0x40, trigger="level")
    assert a.tmr == 1 << 0x40
    a.acknowledge()
    a.accept(0x80)
    a.acknowledge()                    # nested: 0x80 over 0x40
    assert a.isr == (1 << 0x40) | (1 << 0x80)
    wr(a, L.EOI, 0)
    assert a.isr == 1 << 0x40 and eois == []      # 0x80 was edge
    wr(a, L.EOI, 0)
    assert a.isr == 0 and eois == [0x40]
    wr(a, L.EOI, 0)                    # no ISR bit: nothing
    assert eois == [0x40]
    a.accept(0x40)                     # edge clears the TMR bit
    assert a.tmr == 0


def test_disabled_apic_refuses_fixed():
    clock, a = make()
    assert not a.accept(0x40)          # software-disabled after reset
    assert a.irr == 0
    enable(a)
    wr(a, L.LVT_TIMER, 0x20)
    assert rd(a, L.LVT_TIMER) == 0x20
    a.accept(0x50)
    wr(a, L.SVR, 0x0FF)                # software disable: every LVT masked
    assert rd(a, L.LVT_TIMER) == 0x10020
    wr(a, L.LVT_TIMER, 0x21)           # cannot unmask
    assert rd(a, L.LVT_TIMER) == 0x10021
    assert a.irr == 1 << 0x50          # held (SDM 11.4.7.2)
    assert a.pending() == 0x50


def test_accept_argument_errors():
    clock, a = make()
    with pytest.raises(ArgumentError, match="vector"):
        a.accept(256)
    with pytest.raises(ArgumentError, match="trigger"):
        a.accept(0x40, trigger="rising")
    with pytest.raises(ArgumentError, match="apic_id"):
        LocalApic(clock, apic_id=-1)
    with pytest.raises(ArgumentError, match="clock"):
        LocalApic(None)
    with pytest.raises(ArgumentError, match="pin"):
        a.set_lint(2, True)
    with pytest.raises(ArgumentError, match="source"):
        a.trigger_lvt("timer")


def test_irq_pending_changed_called():
    clock, a = make()
    calls = []
    a.irq_pending_changed = lambda: calls.append(a.pending())
    enable(a)
    a.accept(0x41)
    assert calls[-1] == 0x41
    wr(a, L.TPR, 0x50)
    assert calls[-1] is None


# ------------------------------------------------------- LINT0 / LINT1


def test_lint0_extint_virtual_wire():
    clock, a = make()
    assert a.lint0_extint()            # after reset: the PIC passes
    enable(a)
    assert not a.lint0_extint()        # LINT0 masked
    wr(a, L.LVT_LINT0, 0x700)          # ExtINT, unmasked
    assert a.lint0_extint()
    wr(a, L.LVT_LINT0, 0x10700)
    assert not a.lint0_extint()
    wr(a, L.LVT_LINT0, 0x700)
    a.set_base_msr(BASE)               # globally disabled: LINT0 is INTR
    assert a.lint0_extint()


def test_lint1_nmi_and_lint0_fixed_level():
    clock, a = make()
    log = Log()
    log.hook(a)
    a.set_lint(1, True)                # reset state: LINT1 is the NMI pin
    assert log.events == [("nmi", 0)]
    a.set_lint(1, False)
    enable(a)
    wr(a, L.LVT_LINT1, 0x400)          # NMI
    a.set_lint(1, True)
    a.set_lint(1, True)                # no new edge
    assert log.events == [("nmi", 0), ("nmi", 0)]
    # LINT0 fixed, level-triggered, active low.
    a.set_lint(0, True)                # inactive (active low)
    wr(a, L.LVT_LINT0, 0xA000 | 0x33)
    assert a.irr == 0
    a.set_lint(0, False)
    assert a.irr == 1 << 0x33 and a.tmr == 1 << 0x33
    assert rd(a, L.LVT_LINT0) == 0xE033    # remote IRR
    assert a.acknowledge() == 0x33
    wr(a, L.EOI, 0)                    # still active: again
    assert rd(a, L.LVT_LINT0) == 0xE033 and a.irr == 1 << 0x33
    a.acknowledge()
    a.set_lint(0, True)
    wr(a, L.EOI, 0)
    assert rd(a, L.LVT_LINT0) == 0xA033 and a.irr == 0


def test_trigger_lvt_modes():
    clock, a = make()
    log = Log()
    log.hook(a)
    enable(a)
    wr(a, L.LVT_PERF, 0x400)           # NMI
    a.trigger_lvt("perf")
    wr(a, L.LVT_THERMAL, 0x55)
    a.trigger_lvt("thermal")
    wr(a, L.LVT_CMCI, 0x10066)         # masked
    a.trigger_lvt("cmci")
    wr(a, L.LVT_CMCI, 0x200)           # SMI: ignored
    a.trigger_lvt("cmci")
    assert log.events == [("nmi", 0)]
    assert a.irr == 1 << 0x55


# ---------------------------------------------------------------- timer


def test_timer_one_shot_counts_and_fires():
    clock, a = make()
    enable(a)
    wr(a, L.TIMER_DIVIDE, 0x1)         # divide by 4
    wr(a, L.LVT_TIMER, 0x40)
    clock.now = 1000
    wr(a, L.TIMER_INITIAL, 100)
    assert a.next_deadline() == 1400
    clock.now = 1003
    assert rd(a, L.TIMER_CURRENT) == 100
    clock.now = 1004
    assert rd(a, L.TIMER_CURRENT) == 99
    clock.now = 1399
    a.advance(1399)
    assert a.irr == 0 and rd(a, L.TIMER_CURRENT) == 1
    a.advance(1400)
    assert a.irr == 1 << 0x40
    assert a.next_deadline() is None
    clock.now = 5000
    assert rd(a, L.TIMER_CURRENT) == 0


def test_timer_periodic_and_masked():
    clock, a = make()
    enable(a)
    wr(a, L.TIMER_DIVIDE, 0xB)         # divide by 1
    wr(a, L.LVT_TIMER, 0x20000 | 0x41)
    wr(a, L.TIMER_INITIAL, 10)
    assert a.next_deadline() == 10
    a.advance(10)
    assert a.irr == 1 << 0x41
    clock.now = 10
    assert rd(a, L.TIMER_CURRENT) == 10    # reloaded
    clock.now = 13
    assert rd(a, L.TIMER_CURRENT) == 7
    assert a.next_deadline() == 20
    a.acknowledge()
    wr(a, L.EOI, 0)
    a.advance(35)                      # two periods: one IRR bit
    assert a.irr == 1 << 0x41 and a.next_deadline() == 40
    a.acknowledge()
    wr(a, L.EOI, 0)
    wr(a, L.LVT_TIMER, 0x30000 | 0x41)  # masked: counts, no interrupt
    a.advance(40)
    assert a.irr == 0 and a.next_deadline() == 50
    clock.now = 41
    wr(a, L.TIMER_INITIAL, 0)          # 0 stops it
    assert a.next_deadline() is None and rd(a, L.TIMER_CURRENT) == 0


@pytest.mark.parametrize("dcr, div", [(0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16),
                                      (0x8, 32), (0x9, 64), (0xA, 128), (0xB, 1)])
def test_timer_divide(dcr, div):
    clock, a = make()
    enable(a)
    wr(a, L.TIMER_DIVIDE, dcr)
    wr(a, L.LVT_TIMER, 0x40)
    wr(a, L.TIMER_INITIAL, 5)
    assert a.next_deadline() == 5 * div


def test_timer_bus_frequency_and_divide_change():
    clock, a = make(bus_hz=100_000_000)    # 10 ns per tick before the divider
    enable(a)
    wr(a, L.TIMER_DIVIDE, 0xB)
    wr(a, L.LVT_TIMER, 0x40)
    wr(a, L.TIMER_INITIAL, 1000)
    assert a.next_deadline() == 10000
    clock.now = 2005
    assert rd(a, L.TIMER_CURRENT) == 800
    wr(a, L.TIMER_DIVIDE, 0x0)         # divide by 2 from here: 800 ticks of 20 ns
    assert rd(a, L.TIMER_CURRENT) == 800
    assert a.next_deadline() == 2005 + 16000


def test_timer_mode_change_disarms():
    clock, a = make()
    enable(a)
    wr(a, L.LVT_TIMER, 0x40)
    wr(a, L.TIMER_INITIAL, 100)
    wr(a, L.LVT_TIMER, 0x20040)        # to periodic
    assert a.next_deadline() is None and rd(a, L.TIMER_CURRENT) == 0


def test_tsc_deadline_timer():
    clock, a = make(tsc_per_ns=3)
    enable(a)
    a.msr_write(L.MSR_TSC_DEADLINE, 999)    # not in TSC-deadline mode: ignored
    assert a.msr_read(L.MSR_TSC_DEADLINE) == 0
    wr(a, L.LVT_TIMER, 0x40040)
    wr(a, L.TIMER_INITIAL, 50)         # ignored in this mode
    assert rd(a, L.TIMER_INITIAL) == 0
    clock.now = 100
    a.msr_write(L.MSR_TSC_DEADLINE, 1000)
    assert a.msr_read(L.MSR_TSC_DEADLINE) == 1000
    assert a.next_deadline() == 334        # ceil(1000 / 3)
    a.advance(333)
    assert a.irr == 0
    a.advance(334)
    assert a.irr == 1 << 0x40
    assert a.msr_read(L.MSR_TSC_DEADLINE) == 0 and a.next_deadline() is None
    a.acknowledge()
    wr(a, L.EOI, 0)
    a.msr_write(L.MSR_TSC_DEADLINE, 5)      # already passed: fires now
    assert a.irr == 1 << 0x40
    a.msr_write(L.MSR_TSC_DEADLINE, 10_000)
    wr(a, L.LVT_TIMER, 0x40)               # leaving the mode clears the MSR
    assert a.tsc_deadline == 0


def test_tsc_fraction():
    clock, a = make(tsc_per_ns=Fraction(5, 2))
    assert a.tsc(7) == 17
    enable(a)
    wr(a, L.LVT_TIMER, 0x40040)
    a.msr_write(L.MSR_TSC_DEADLINE, 18)
    assert a.next_deadline() == 8          # 8 * 2.5 = 20 >= 18 > 7 * 2.5


# ---------------------------------------------------------------- IPIs


def bus_of(n, **kw):
    clock = FakeClock()
    bus = ApicBus()
    log = Log()
    apics = [log.hook(bus.add(LocalApic(clock, apic_id=i, **kw))) for i in range(n)]
    for a in apics:
        enable(a)
    return clock, bus, apics, log


def send(a, low, dest=0):
    wr(a, L.ICR_HIGH, dest << 24)
    wr(a, L.ICR_LOW, low)


def test_ipi_physical_fixed():
    clock, bus, (a0, a1, a2), log = bus_of(3)
    send(a0, 0x4051, dest=2)
    assert a2.irr == 1 << 0x51 and a0.irr == a1.irr == 0
    assert rd(a0, L.ICR_LOW) == 0x4051     # delivery status idle
    send(a0, 0x4052, dest=0xFF)            # broadcast
    assert all(a.irr >> 0x52 & 1 for a in (a0, a1, a2))
    send(a0, 0x4053, dest=7)               # nobody
    assert not any(a.irr >> 0x53 & 1 for a in (a0, a1, a2))


def test_ipi_shorthands():
    clock, bus, (a0, a1, a2), log = bus_of(3)
    send(a1, 0x44060)                      # self
    assert [a.irr >> 0x60 & 1 for a in (a0, a1, a2)] == [0, 1, 0]
    send(a1, 0x84061, dest=0)              # all including self, dest ignored
    assert [a.irr >> 0x61 & 1 for a in (a0, a1, a2)] == [1, 1, 1]
    send(a1, 0xC4062)                      # all excluding self
    assert [a.irr >> 0x62 & 1 for a in (a0, a1, a2)] == [1, 0, 1]


def test_ipi_logical_flat_and_cluster():
    clock, bus, apics, log = bus_of(4)
    for i, a in enumerate(apics):
        wr(a, L.LDR, (1 << i) << 24)
    send(apics[0], 0x4850, dest=0b1010)    # logical flat
    assert [a.irr >> 0x50 & 1 for a in apics] == [0, 1, 0, 1]
    for i, a in enumerate(apics):
        wr(a, L.DFR, 0x0FFFFFFF)           # cluster model
        wr(a, L.LDR, ((i // 2) << 28) | ((1 << (i % 2)) << 24))
    send(apics[0], 0x4851, dest=0x13)      # cluster 1, members 0 and 1
    assert [a.irr >> 0x51 & 1 for a in apics] == [0, 0, 1, 1]
    send(apics[0], 0x4852, dest=0x02)      # cluster 0, member 1
    assert [a.irr >> 0x52 & 1 for a in apics] == [0, 1, 0, 0]


def test_ipi_lowest_priority():
    clock, bus, apics, log = bus_of(3)
    for a in apics:
        wr(a, L.LDR, 0x01000000)
    wr(apics[0], L.TPR, 0x50)
    wr(apics[1], L.TPR, 0x20)
    wr(apics[2], L.TPR, 0x20)
    send(apics[0], 0x4970, dest=0xFF)
    assert [a.irr >> 0x70 & 1 for a in apics] == [0, 1, 0]
    # The focus processor: 0x71 already pending at APIC 2.
    apics[2].accept(0x71)
    send(apics[0], 0x4971, dest=0xFF)
    assert [a.irr >> 0x71 & 1 for a in apics] == [0, 0, 1]


def test_ipi_nmi_init_sipi_smi():
    clock, bus, (a0, a1), log = bus_of(2)
    a1.accept(0x80)
    send(a0, 0x4400, dest=1)               # NMI
    send(a0, 0x4200, dest=1)               # SMI: ignored
    send(a0, 0x8500, dest=1)               # INIT level de-assert: ignored
    assert a1.irr == 1 << 0x80
    send(a0, 0x4500, dest=1)               # INIT
    assert a1.irr == 0 and rd(a1, L.SVR) == 0xFF
    send(a0, 0x4610, dest=1)               # STARTUP, vector 0x10 (page 0x10000)
    assert log.events == [("nmi", 1), ("init", 1), ("sipi", 1, 0x10)]


def test_bus_reports_each_ipi_with_the_apics_it_reached():
    clock, bus, (a0, a1, a2), log = bus_of(3)
    seen = []
    bus.on_message = lambda src, mode, targets: seen.append((src.apic_id, mode, [t.apic_id for t in targets]))
    send(a0, 0x4041, dest=2)               # fixed, physical
    send(a1, 0xC0042)                      # fixed, all excluding self
    send(a0, 0x4043, dest=7)               # an APIC ID nobody has: delivered to none
    send(a0, 0xC500, dest=1)               # INIT assert
    send(a0, 0x8500, dest=1)               # INIT de-assert: reaches none (ignored, SDM 11.6.1)
    send(a2, 0x4620, dest=1)               # STARTUP
    assert seen == [(0, L.DM_FIXED, [2]), (1, L.DM_FIXED, [0, 2]), (0, L.DM_FIXED, []),
                    (0, L.DM_INIT, [1]), (0, L.DM_INIT, []), (2, L.DM_STARTUP, [1])]
    assert a2.irr == (1 << 0x41) | (1 << 0x42) and a0.irr == 1 << 0x42 and a1.irr == 0
    assert log.events == [("init", 1), ("sipi", 1, 0x20)]


def test_ipi_illegal_vector_not_sent():
    clock, bus, (a0, a1), log = bus_of(2)
    send(a0, 0x4005, dest=1)
    assert a1.irr == 0
    wr(a0, L.ESR, 0)
    assert rd(a0, L.ESR) == 0x20
    send(a0, 0x4605, dest=1)               # a SIPI vector may be below 16
    assert log.events == [("sipi", 1, 5)]


def test_lone_apic_sends_to_itself():
    clock, a = make(apic_id=4)
    enable(a)
    send(a, 0x4044, dest=4)
    send(a, 0x4045, dest=5)
    assert a.irr == 1 << 0x44


def test_bus_add_errors_and_get():
    clock = FakeClock()
    bus = ApicBus()
    a = bus.add(LocalApic(clock, apic_id=1))
    assert bus.get(1) is a and bus.get(2) is None
    with pytest.raises(ArgumentError, match="already"):
        bus.add(LocalApic(clock, apic_id=1))
    with pytest.raises(ArgumentError, match="LocalApic"):
        bus.add(object())


# ------------------------------------------------------------- x2APIC


def test_base_msr_transitions():
    clock, a = make()
    with pytest.raises(ApicGp, match="invalid"):
        a.set_base_msr(BASE | L.BASE_EXTD)
    with pytest.raises(ApicGp, match="reserved"):
        a.set_base_msr(BASE | L.BASE_EN | 0x200)
    with pytest.raises(ApicGp, match="reserved"):
        a.set_base_msr((1 << 40) | L.BASE_EN)
    a.set_base_msr(0xFED00000 | L.BASE_EN)   # move the page (BSP bit kept)
    assert a.base_msr == 0xFED00900 and a.base == 0xFED00000
    x2(a)
    assert a.x2apic_mode and a.base_msr == 0xFEE00D00
    with pytest.raises(ApicGp, match="x2APIC mode to xAPIC"):
        a.set_base_msr(BASE | L.BASE_EN)
    a.set_base_msr(BASE)                     # disable
    assert not a.enabled and a.base_msr == 0xFEE00100
    with pytest.raises(ApicGp, match="disabled to x2APIC"):
        x2(a)
    assert a.mmio_read(BASE + L.VERSION, 4) == 0xFFFFFFFF
    a.msr_write(L.MSR_APIC_BASE, BASE | L.BASE_EN)
    assert a.msr_read(L.MSR_APIC_BASE) == 0xFEE00900


def test_disable_loses_state():
    clock, a = make()
    enable(a)
    wr(a, L.TPR, 0x40)
    a.accept(0x60)
    a.set_base_msr(BASE)
    a.set_base_msr(BASE | L.BASE_EN)
    assert rd(a, L.TPR) == 0 and a.irr == 0 and rd(a, L.SVR) == 0xFF


def test_x2apic_registers():
    clock, a = make(apic_id=0x123)
    enable(a)
    x2(a)
    assert a.msr_read(0x802) == 0x123
    assert a.msr_read(0x803) == 0x00050014
    assert a.msr_read(0x80D) == (0x12 << 16) | (1 << 3)   # cluster 0x12, bit 3
    assert a.msr_read(0x80F) == 0x1FF
    a.msr_write(0x808, 0x20)
    assert a.msr_read(0x808) == 0x20 and a.msr_read(0x80A) == 0x20
    assert a.mmio_read(BASE + L.TPR, 4) == 0xFFFFFFFF  # no page in x2APIC mode
    a.msr_write(0x83F, 0x90)               # SELF IPI
    assert a.msr_read(0x824) == 1 << 16    # IRR bits 159:128
    assert a.acknowledge() == 0x90
    assert a.msr_read(0x814) == 1 << 16
    a.msr_write(0x80B, 0)
    assert a.isr == 0


def test_x2apic_icr_64_bit():
    clock = FakeClock()
    bus = ApicBus()
    a = bus.add(LocalApic(clock, apic_id=0))
    b = bus.add(LocalApic(clock, apic_id=0x10005))
    for x in (a, b):
        enable(x)
        x2(x)
    a.msr_write(0x830, (0x10005 << 32) | 0x4055)
    assert b.irr == 1 << 0x55
    assert a.msr_read(0x830) == (0x10005 << 32) | 0x4055
    # Logical: cluster 0x1000, member bit 5.
    a.msr_write(0x830, (((0x1000 << 16) | (1 << 5)) << 32) | 0x4856)
    assert b.irr >> 0x56 & 1
    a.msr_write(0x830, (0xFFFFFFFF << 32) | 0x4057)   # broadcast
    assert a.irr >> 0x57 & 1 and b.irr >> 0x57 & 1


@pytest.mark.parametrize("msr, value, words", [
    (0x802, 0, "read-only"),
    (0x803, 0, "read-only"),
    (0x80A, 0, "read-only"),
    (0x80D, 0, "read-only"),
    (0x810, 0, "read-only"),
    (0x839, 0, "read-only"),
    (0x809, 0, "reserved"),        # APR is not in x2APIC mode
    (0x80E, 0, "reserved"),        # DFR
    (0x831, 0, "reserved"),        # ICR high
    (0x8FF, 0, "reserved"),
    (0x808, 0x100, "reserved bits"),
    (0x808, 1 << 32, "reserved bits"),
    (0x80B, 1, "reserved bits"),   # EOI: only 0
    (0x828, 1, "reserved bits"),   # ESR: only 0
    (0x80F, 0x1000, "reserved bits"),
    (0x830, 0x2000, "reserved bits"),
    (0x830, 0x30000, "reserved bits"),
    (0x830, 0x100000, "reserved bits"),
    (0x832, 0x80000, "reserved bits"),
    (0x835, 0x20000, "reserved bits"),
    (0x83E, 0x4, "reserved bits"),
    (0x83F, 0x100, "reserved bits"),
])
def test_x2apic_gp_on_write(msr, value, words):
    clock, a = make()
    enable(a)
    x2(a)
    before = a.get_state()
    with pytest.raises(ApicGp, match=words):
        a.msr_write(msr, value)
    assert a.get_state() == before


@pytest.mark.parametrize("msr, words", [(0x80B, "write-only"), (0x83F, "write-only"),
                                        (0x809, "reserved"), (0x831, "reserved"),
                                        (0x800, "reserved")])
def test_x2apic_gp_on_read(msr, words):
    clock, a = make()
    x2(a)
    with pytest.raises(ApicGp, match=words):
        a.msr_read(msr)


def test_x2apic_msrs_need_x2apic_mode():
    clock, a = make()
    with pytest.raises(ApicGp, match="x2APIC mode"):
        a.msr_read(0x802)
    with pytest.raises(ApicGp, match="x2APIC mode"):
        a.msr_write(0x808, 0)
    with pytest.raises(ArgumentError, match="not a local APIC MSR"):
        a.msr_read(0x10)
    with pytest.raises(ArgumentError, match="value"):
        a.msr_write(0x808, -1)


def test_x2apic_ro_bits_ignored():
    clock, a = make()
    enable(a)
    x2(a)
    a.msr_write(0x835, 0x5000 | 0x700)     # delivery status, remote IRR: read-only
    assert a.msr_read(0x835) == 0x700
    a.msr_write(0x830, 0x1000 | 0x44090)   # ICR delivery status: read-only
    assert a.msr_read(0x830) == 0x44090


# ------------------------------------------------------- state, fuzzing


def test_state_round_trip():
    clock, a = make(apic_id=2)
    enable(a)
    wr(a, L.TPR, 0x21)
    wr(a, L.LVT_TIMER, 0x20044)
    wr(a, L.TIMER_DIVIDE, 0x3)
    clock.now = 77
    wr(a, L.TIMER_INITIAL, 1000)
    a.accept(0x90, trigger="level")
    a.acknowledge()
    a.accept(0x91)
    a.set_lint(0, True)
    rd(a, 0x040)
    state = json.loads(json.dumps(a.get_state()))
    clock2 = FakeClock()
    b = LocalApic(clock2, apic_id=2)
    b.set_state(state)
    assert b.get_state() == a.get_state()
    clock.now = clock2.now = 5000
    assert rd(b, L.TIMER_CURRENT) == rd(a, L.TIMER_CURRENT)
    assert b.next_deadline() == a.next_deadline()
    with pytest.raises(ArgumentError, match="APIC ID"):
        LocalApic(clock, apic_id=3).set_state(state)
    with pytest.raises(ArgumentError, match="lapic"):
        b.set_state({"device": "pic"})
    del state["tpr"]
    with pytest.raises(ArgumentError, match="tpr"):
        b.set_state(state)


def test_random_writes_never_raise():
    rng = random.Random(1234)
    clock, a = make()
    for _ in range(5000):
        clock.now += rng.randrange(0, 50)
        off = rng.randrange(0, 0x1000) & ~3 if rng.random() < 0.3 else rng.randrange(0, 0x40) * 16
        size = rng.choice((1, 2, 4, 4, 4, 8))
        if rng.random() < 0.5:
            a.mmio_write(BASE + off, size, rng.getrandbits(8 * size))
        else:
            a.mmio_read(BASE + off, size)
        a.advance(clock.now)
        if a.pending() is not None and rng.random() < 0.5:
            a.acknowledge()
        d = a.next_deadline()
        assert d is None or isinstance(d, int)
    assert a.enabled


def test_random_x2apic_writes_raise_only_apicgp():
    rng = random.Random(99)
    clock, a = make()
    x2(a)
    gps = 0
    for _ in range(3000):
        clock.now += rng.randrange(0, 50)
        msr = 0x800 + rng.randrange(0, 0x40)
        try:
            if rng.random() < 0.5:
                a.msr_write(msr, rng.getrandbits(rng.choice((8, 16, 32, 64))))
            else:
                a.msr_read(msr)
        except ApicGp:
            gps += 1
        a.advance(clock.now)
    assert 0 < gps < 3000
