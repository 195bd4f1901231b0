"""The 8254 and port 61h (vtx.devices.pit): counts, OUT and IRQ0 edges at exact times."""

import random

from devfakes import FakeClock, Router

from vtx.devices import IrqLine, Pit8254
from vtx.devices.pit import tick_time, ticks


def make(ns=0):
    clock = FakeClock(ns)
    router = Router()
    return Pit8254(IrqLine(router, 0), clock), clock, router


def counter(pit, n, lsb_msb=True):
    return pit.io_read(0x40 + n, 1) | pit.io_read(0x40 + n, 1) << 8 if lsb_msb else pit.io_read(0x40 + n, 1)


def test_ports_and_clock_arithmetic():
    assert Pit8254.ports == ((0x40, 4), (0x61, 1))
    assert ticks(10 ** 9) == 1193182
    assert ticks(838) == 0 and ticks(839) == 1      # 1 / 1.193182 MHz = 838.0965 ns
    assert tick_time(1) == 839 and tick_time(1193182) == 10 ** 9
    assert ticks(tick_time(11933)) == 11933 and ticks(tick_time(11933) - 1) == 11932


def test_mode2_rate_generator_irq0_edges_at_exact_times():
    pit, clock, router = make()
    assert router.calls == [(0, True)]              # OUT0 high at power-on
    pit.io_write(0x43, 1, 0x34)                     # counter 0, LSB/MSB, mode 2, binary
    pit.io_write(0x40, 1, 0x9C)
    pit.io_write(0x40, 1, 0x2E)                     # 11932: 100 Hz
    assert router.calls == [(0, True)]              # and high in mode 2: no edge
    # Loaded at CLK pulse 1; OUT low at pulse 11932, high again (IRQ0) at 11933.
    assert pit.next_deadline() == tick_time(11933) == 10000989
    clock.ns = 10000988
    pit.advance(clock.ns)
    assert router.calls == [(0, True), (0, False)]  # the line follows OUT0: low for one pulse
    clock.ns = 10000989
    pit.advance(clock.ns)
    assert router.calls == [(0, True), (0, False), (0, True)]
    assert pit.next_deadline() == tick_time(11933 + 11932) == 20001140
    # Late: three periods passed; one edge (the PIC latches one request).
    clock.ns = tick_time(11933 + 3 * 11932)
    pit.advance(clock.ns)
    assert router.edges(0) == 3
    assert pit.next_deadline() == tick_time(11933 + 4 * 11932)


def test_mode2_counter_values_and_latch():
    pit, clock, _ = make()
    pit.io_write(0x43, 1, 0x34)
    pit.io_write(0x40, 1, 100)
    pit.io_write(0x40, 1, 0)
    clock.ns = tick_time(1)
    assert counter(pit, 0) == 100
    clock.ns = tick_time(100)
    assert counter(pit, 0) == 1
    assert not pit.out(0)                           # the one-pulse low at count 1
    clock.ns = tick_time(101)
    assert counter(pit, 0) == 100 and pit.out(0)
    clock.ns = tick_time(131)
    pit.io_write(0x43, 1, 0x00)                     # latch counter 0
    clock.ns = tick_time(150)
    assert pit.io_read(0x40, 1) == 70
    clock.ns = tick_time(160)
    assert pit.io_read(0x40, 1) == 0                # MSB of the latched 70
    assert counter(pit, 0) == 41                    # unlatched again: pulse 160


def test_mode0_one_shot_on_counter0():
    pit, clock, router = make(5000)
    pit.io_write(0x43, 1, 0x30)                     # mode 0
    assert pit.out(0) is False
    pit.io_write(0x40, 1, 0xE8)
    pit.io_write(0x40, 1, 0x03)                     # 1000
    t0 = ticks(5000)
    assert pit.next_deadline() == tick_time(t0 + 1001)
    clock.ns = tick_time(t0 + 1001)
    pit.advance(clock.ns)
    # High at power-on, low from the mode 0 control word, high at the count's end.
    assert router.calls == [(0, True), (0, False), (0, True)]
    assert pit.out(0) and pit.next_deadline() is None
    # A new count drops OUT until it expires again.
    pit.io_write(0x40, 1, 10)
    pit.io_write(0x40, 1, 0)
    assert router.calls == [(0, True), (0, False), (0, True), (0, False)]
    assert pit.next_deadline() == tick_time(t0 + 1001 + 11)


def test_linux_pit_calibrate_tsc_through_port_61():
    """Gate on, speaker off, mode 0 on counter 2, poll OUT2 in bit 5."""
    pit, clock, _ = make(123456)
    pit.io_write(0x61, 1, (pit.io_read(0x61, 1) & ~0x02) | 0x01)
    pit.io_write(0x43, 1, 0xB0)
    latch = 11932 * 5                               # 50 ms
    pit.io_write(0x42, 1, latch & 0xFF)
    pit.io_write(0x42, 1, latch >> 8)
    t0 = ticks(123456)
    high = tick_time(t0 + 1 + latch)
    clock.ns = high - 1
    assert pit.io_read(0x61, 1) & 0x20 == 0
    clock.ns = high
    assert pit.io_read(0x61, 1) & 0x20 == 0x20
    assert pit.io_read(0x61, 1) & 0x0F == 0x01


def test_linux_quick_pit_calibrate_msb_reads():
    pit, clock, _ = make()
    pit.io_write(0x61, 1, 0x01)
    pit.io_write(0x43, 1, 0xB0)
    pit.io_write(0x42, 1, 0xFF)
    pit.io_write(0x42, 1, 0xFF)
    for t in (1, 2, 256, 257, 1000, 65535):
        clock.ns = tick_time(t)
        lsb = pit.io_read(0x42, 1)
        msb = pit.io_read(0x42, 1)
        assert (msb << 8 | lsb) == 0xFFFF - (t - 1)
    clock.ns = tick_time(65536)
    assert counter(pit, 2) == 0 and pit.io_read(0x61, 1) & 0x20
    clock.ns = tick_time(65537)
    assert counter(pit, 2) == 0xFFFF                # mode 0 keeps counting after 0


def test_gate_low_pauses_mode0():
    pit, clock, _ = make()
    pit.io_write(0x61, 1, 0x01)
    pit.io_write(0x43, 1, 0xB0)
    pit.io_write(0x42, 1, 50)
    pit.io_write(0x42, 1, 0)
    clock.ns = tick_time(11)
    pit.io_write(0x61, 1, 0x00)                     # gate off after 10 pulses
    clock.ns = tick_time(500)
    assert counter(pit, 2) == 40
    pit.io_write(0x61, 1, 0x01)
    clock.ns = tick_time(539)
    assert counter(pit, 2) == 1 and not pit.io_read(0x61, 1) & 0x20
    clock.ns = tick_time(540)
    assert counter(pit, 2) == 0 and pit.io_read(0x61, 1) & 0x20


def test_read_back_status_and_null_count():
    pit, clock, _ = make()
    pit.io_write(0x43, 1, 0xB0)
    pit.io_write(0x43, 1, 0xE8)                     # read-back: status of counter 2
    assert pit.io_read(0x42, 1) == 0x70             # NULL COUNT, RW=3, mode 0, OUT low
    pit.io_write(0x61, 1, 1)
    pit.io_write(0x42, 1, 5)
    pit.io_write(0x42, 1, 0)
    pit.io_write(0x43, 1, 0xE8)
    assert pit.io_read(0x42, 1) == 0x70             # not loaded before the next CLK pulse
    clock.ns = tick_time(1)
    pit.io_write(0x43, 1, 0xE8)
    assert pit.io_read(0x42, 1) == 0x30
    clock.ns = tick_time(6)
    pit.io_write(0x43, 1, 0xC8)                     # count and status
    assert pit.io_read(0x42, 1) == 0xB0             # OUT high
    assert counter(pit, 2) == 0
    # A second status latch before the read is ignored.
    pit.io_write(0x43, 1, 0xE8)
    clock.ns = tick_time(7)
    pit.io_write(0x43, 1, 0xE8)
    assert pit.io_read(0x42, 1) == 0xB0


def test_read_back_count_of_several_counters():
    pit, clock, _ = make()
    pit.io_write(0x43, 1, 0x34)
    pit.io_write(0x40, 1, 0)
    pit.io_write(0x40, 1, 0x10)                     # 4096
    pit.io_write(0x43, 1, 0x74)                     # counter 1 mode 2
    pit.io_write(0x41, 1, 0)
    pit.io_write(0x41, 1, 0x20)
    clock.ns = tick_time(17)
    pit.io_write(0x43, 1, 0xD6)                     # latch counts of 0 and 1
    clock.ns = tick_time(99)
    assert counter(pit, 0) == 4096 - 16
    assert counter(pit, 1) == 8192 - 16


def test_mode3_square_wave_even_and_odd():
    pit, clock, _ = make()
    pit.io_write(0x61, 1, 0x01)
    pit.io_write(0x43, 1, 0xB6)                     # counter 2, mode 3
    pit.io_write(0x42, 1, 4)
    pit.io_write(0x42, 1, 0)
    outs = []
    vals = []
    for t in range(1, 10):
        clock.ns = tick_time(t)
        outs.append(bool(pit.io_read(0x61, 1) & 0x20))
        vals.append(counter(pit, 2))
    assert outs == [True, True, False, False, True, True, False, False, True]
    assert vals == [4, 2, 4, 2, 4, 2, 4, 2, 4]
    pit.io_write(0x43, 1, 0xB6)
    pit.io_write(0x42, 1, 5)                        # odd: high 3 pulses, low 2
    pit.io_write(0x42, 1, 0)
    outs = []
    for t in range(10, 20):
        clock.ns = tick_time(t)
        outs.append(pit.out(2))
    assert outs == [True, True, True, False, False, True, True, True, False, False]


def test_mode3_irq0_edge_each_period():
    pit, clock, router = make()
    pit.io_write(0x43, 1, 0x36)
    pit.io_write(0x40, 1, 0x00)
    pit.io_write(0x40, 1, 0x00)                     # 65536: 18.2 Hz
    assert pit.next_deadline() == tick_time(1 + 65536)
    clock.ns = tick_time(1 + 65536)
    pit.advance(clock.ns)
    assert router.edges(0) == 2 and router.calls[-1] == (0, True)
    assert pit.next_deadline() == tick_time(1 + 2 * 65536)


def test_mode2_new_count_loads_at_end_of_period():
    pit, clock, _ = make()
    pit.io_write(0x43, 1, 0x34)
    pit.io_write(0x40, 1, 100)
    pit.io_write(0x40, 1, 0)
    clock.ns = tick_time(30)
    pit.io_write(0x40, 1, 10)
    pit.io_write(0x40, 1, 0)
    assert counter(pit, 0) == 71
    clock.ns = tick_time(100)
    assert counter(pit, 0) == 1
    assert pit.next_deadline() == tick_time(101)
    clock.ns = tick_time(101)
    assert counter(pit, 0) == 10
    pit.advance(clock.ns)
    assert pit.next_deadline() == tick_time(111)


def test_bcd_counting():
    pit, clock, _ = make()
    pit.io_write(0x61, 1, 0x01)
    pit.io_write(0x43, 1, 0xB1)                     # mode 0, BCD
    pit.io_write(0x42, 1, 0x00)
    pit.io_write(0x42, 1, 0x10)                     # 1000 decimal
    clock.ns = tick_time(2)
    assert counter(pit, 2) == 0x0999
    clock.ns = tick_time(1001)
    assert counter(pit, 2) == 0 and pit.out(2)
    clock.ns = tick_time(1002)
    assert counter(pit, 2) == 0x9999


def test_lsb_only_and_msb_only():
    pit, clock, _ = make()
    pit.io_write(0x61, 1, 0x01)
    pit.io_write(0x43, 1, 0x90)                     # counter 2, LSB only, mode 0
    pit.io_write(0x42, 1, 0x30)
    clock.ns = tick_time(1)
    assert pit.io_read(0x42, 1) == 0x30 and pit.io_read(0x42, 1) == 0x30
    pit.io_write(0x43, 1, 0xA0)                     # MSB only
    pit.io_write(0x42, 1, 0x02)
    clock.ns = tick_time(2)
    assert pit.count(2) == 0x200 and pit.io_read(0x42, 1) == 0x02
    clock.ns = tick_time(3)
    assert pit.io_read(0x42, 1) == 0x01             # 0x1FF


def test_mode1_one_shot_triggered_by_gate():
    pit, clock, _ = make()
    pit.io_write(0x43, 1, 0xB2)                     # counter 2, mode 1
    pit.io_write(0x42, 1, 3)
    pit.io_write(0x42, 1, 0)
    clock.ns = tick_time(10)
    assert pit.out(2)
    pit.io_write(0x61, 1, 0x01)                     # trigger
    outs = []
    for t in range(10, 16):
        clock.ns = tick_time(t)
        outs.append(pit.out(2))
    assert outs == [True, False, False, False, True, True]
    clock.ns = tick_time(20)
    pit.io_write(0x61, 1, 0x00)
    pit.io_write(0x61, 1, 0x01)                     # retrigger
    clock.ns = tick_time(21)
    assert not pit.out(2) and pit.count(2) == 3


def test_modes_4_and_5_strobe():
    pit, clock, _ = make()
    pit.io_write(0x61, 1, 0x01)
    pit.io_write(0x43, 1, 0xB8)                     # mode 4
    pit.io_write(0x42, 1, 2)
    pit.io_write(0x42, 1, 0)
    outs = []
    for t in range(1, 6):
        clock.ns = tick_time(t)
        outs.append(pit.out(2))
    assert outs == [True, True, False, True, True]  # low for the pulse at count 0
    pit.io_write(0x61, 1, 0x00)
    pit.io_write(0x43, 1, 0xBA)                     # mode 5
    pit.io_write(0x42, 1, 2)
    pit.io_write(0x42, 1, 0)
    clock.ns = tick_time(9)
    assert pit.out(2)
    pit.io_write(0x61, 1, 0x01)
    outs = []
    for t in range(9, 14):
        clock.ns = tick_time(t)
        outs.append(pit.out(2))
    assert outs == [True, True, True, False, True]


def test_mode2_gate_low_forces_out_high_and_reloads():
    pit, clock, _ = make()
    pit.io_write(0x61, 1, 0x01)
    pit.io_write(0x43, 1, 0xB4)                     # counter 2 mode 2
    pit.io_write(0x42, 1, 5)
    pit.io_write(0x42, 1, 0)
    clock.ns = tick_time(4)
    pit.io_write(0x61, 1, 0x00)
    clock.ns = tick_time(30)
    assert pit.out(2) and pit.count(2) == 2
    pit.io_write(0x61, 1, 0x01)
    clock.ns = tick_time(31)
    assert pit.count(2) == 5
    clock.ns = tick_time(35)
    assert not pit.out(2)


def test_port_61_refresh_toggle_and_writable_bits():
    pit, clock, _ = make()
    pit.io_write(0x61, 1, 0xFF)
    assert pit.io_read(0x61, 1) & 0xDF == 0x0F
    clock.ns = tick_time(17)
    assert pit.io_read(0x61, 1) & 0x10 == 0
    clock.ns = tick_time(18)
    assert pit.io_read(0x61, 1) & 0x10 == 0x10
    clock.ns = tick_time(36)
    assert pit.io_read(0x61, 1) & 0x10 == 0
    assert pit.io_read(0x43, 1) == 0xFF


def test_no_clock_means_time_zero():
    pit = Pit8254()
    pit.io_write(0x43, 1, 0x34)
    pit.io_write(0x40, 1, 0x10)
    pit.io_write(0x40, 1, 0)
    assert pit.next_deadline() == tick_time(17)
    assert counter(pit, 0) == 0                     # before the load pulse: the CE of before


def test_state_round_trip_and_reset():
    pit, clock, router = make()
    pit.io_write(0x61, 1, 0x01)
    pit.io_write(0x43, 1, 0x34)
    pit.io_write(0x40, 1, 0x9C)
    pit.io_write(0x40, 1, 0x2E)
    pit.io_write(0x43, 1, 0xB0)
    pit.io_write(0x42, 1, 0x34)
    clock.ns = 5 * 10 ** 6
    pit.io_write(0x43, 1, 0x80)                     # latch counter 2
    state = pit.get_state()
    other = Pit8254(IrqLine(Router(), 0), clock)
    other.set_state(state)
    assert other.get_state() == state
    assert other.next_deadline() == pit.next_deadline()
    assert [other.io_read(0x42, 1) for _ in range(3)] == [pit.io_read(0x42, 1) for _ in range(3)]
    pit.reset()
    assert pit.io_read(0x61, 1) & 0x2F == 0x20      # gate 2 off; OUT2 high (as after a count)
    assert pit.next_deadline() is None and pit.irq.level is True
    pit.io_write(0x43, 1, 0x00)
    pit.io_write(0x43, 1, 0xC2)                     # read-back status of counter 0
    assert pit.io_read(0x40, 1) == 0x70 | 0x80


def test_random_writes_never_raise():
    rng = random.Random(8254)
    pit, clock, _ = make()
    for _ in range(20000):
        clock.ns += rng.randrange(5000)
        port = rng.choice((0x40, 0x41, 0x42, 0x43, 0x61))
        if rng.random() < 0.6:
            pit.io_write(port, 1, rng.getrandbits(8))
        else:
            assert 0 <= pit.io_read(port, 1) <= 0xFF
        d = pit.next_deadline()
        if d is not None and d <= clock.ns:
            pit.advance(clock.ns)
            d = pit.next_deadline()
            assert d is None or d > clock.ns        # advance fired everything due
