"""The MC146818A RTC and CMOS RAM (vtx.devices.rtc)."""

import datetime
import random

import pytest
from devfakes import FakeClock, Router

from vtx.devices import CmosRtc, IrqLine
from vtx.errors import ArgumentError

S = 10 ** 9


def make(ns=0, **kw):
    clock = FakeClock(ns)
    router = Router()
    return CmosRtc(IrqLine(router, 8), clock, **kw), clock, router


def rd(rtc, reg):
    rtc.io_write(0x70, 1, reg)
    return rtc.io_read(0x71, 1)


def wr(rtc, reg, value):
    rtc.io_write(0x70, 1, reg)
    rtc.io_write(0x71, 1, value)


TIME_REGS = (0, 2, 4, 6, 7, 8, 9, 0x32)


def test_default_start_time_in_bcd_24h():
    rtc, clock, _ = make()
    assert rtc.ports == ((0x70, 2),)
    # 2026-01-01 00:00:00 is a Thursday: day of week 5 (Sunday = 1).
    assert [rd(rtc, r) for r in TIME_REGS] == [0, 0, 0, 5, 1, 1, 0x26, 0x20]
    assert (rd(rtc, 0x0A), rd(rtc, 0x0B), rd(rtc, 0x0D)) == (0xA6, 0x02, 0x80)


def test_time_follows_the_clock():
    rtc, clock, _ = make(start=datetime.datetime(2026, 2, 28, 23, 59, 58))
    clock.ns = 2 * S - 1
    assert [rd(rtc, r) for r in (0, 2, 4, 7, 8)] == [0x59, 0x59, 0x23, 0x28, 0x02]
    clock.ns = 2 * S
    assert [rd(rtc, r) for r in (0, 2, 4, 6, 7, 8, 9)] == [0x00, 0x00, 0x00, 0x01, 0x01, 0x03, 0x26]
    clock.ns = (2 + 86400 * 365) * S                # 2027-03-01
    assert [rd(rtc, r) for r in (7, 8, 9)] == [0x01, 0x03, 0x27]


def test_binary_and_12_hour_modes():
    rtc, clock, _ = make(start=datetime.datetime(2026, 7, 4, 13, 45, 30))
    wr(rtc, 0x0B, 0x06)                             # binary, 24 h
    assert [rd(rtc, r) for r in (0, 2, 4)] == [30, 45, 13]
    wr(rtc, 0x0B, 0x04)                             # binary, 12 h
    assert rd(rtc, 4) == 0x81                       # 1 PM
    wr(rtc, 0x0B, 0x00)                             # BCD, 12 h
    assert rd(rtc, 4) == 0x81
    clock.ns = (10 * 3600 + 14 * 60 + 30) * S       # 00:00:00 next day: 12 AM
    assert rd(rtc, 4) == 0x12
    clock.ns += 12 * 3600 * S                       # noon: 12 PM
    assert rd(rtc, 4) == 0x92


def test_set_bit_and_writing_the_time():
    rtc, clock, _ = make()
    wr(rtc, 0x0B, 0x82)                             # SET: updates inhibited
    for reg, v in ((0, 0x56), (2, 0x34), (4, 0x12), (7, 0x15), (8, 0x06), (9, 0x30), (0x32, 0x20)):
        wr(rtc, reg, v)
    clock.ns = 5 * S
    assert [rd(rtc, r) for r in (0, 2, 4, 7, 8, 9)] == [0x56, 0x34, 0x12, 0x15, 0x06, 0x30]
    wr(rtc, 0x0B, 0x02)
    clock.ns = 6 * S                                # the divider chain's next second
    assert rd(rtc, 0) == 0x57
    assert rd(rtc, 6) == 5                          # the day of week keeps its own count


def test_century_register_and_years_before_1970():
    rtc, clock, _ = make()
    wr(rtc, 0x0B, 0x82)
    wr(rtc, 0x32, 0x19)
    wr(rtc, 9, 0x69)
    wr(rtc, 8, 0x07)
    wr(rtc, 7, 0x20)
    assert [rd(rtc, r) for r in (7, 8, 9, 0x32)] == [0x20, 0x07, 0x69, 0x19]
    wr(rtc, 0x0B, 0x06)                             # binary
    assert [rd(rtc, r) for r in (9, 0x32)] == [69, 19]
    wr(rtc, 0x32, 20)
    wr(rtc, 9, 99)
    clock.ns = 165 * 86400 * S                      # 2099-07-20 + 165 days: 2100-01-01
    assert [rd(rtc, r) for r in (7, 8, 9, 0x32)] == [1, 1, 0, 21]


def test_day_of_week_is_its_own_register():
    rtc, clock, _ = make()
    wr(rtc, 6, 2)
    assert rd(rtc, 6) == 2
    clock.ns = 86400 * S
    assert rd(rtc, 6) == 3
    clock.ns = 86400 * 6 * S
    assert rd(rtc, 6) == 1                          # wraps 7 -> 1


def test_uip_window():
    rtc, clock, _ = make()
    clock.ns = 500_000_000
    assert rd(rtc, 0x0A) == 0x26
    clock.ns = S - 244_000
    assert rd(rtc, 0x0A) == 0xA6
    clock.ns = S + 1_983_999
    assert rd(rtc, 0x0A) == 0xA6
    clock.ns = S + 1_984_000
    assert rd(rtc, 0x0A) == 0x26


def test_periodic_interrupt_deadlines_and_register_c():
    rtc, clock, router = make()
    wr(rtc, 0x0A, 0x2F)                             # RS = 15: 2 Hz
    assert rtc.next_deadline() is None
    wr(rtc, 0x0B, 0x42)                             # PIE
    assert rtc.next_deadline() == S // 2
    clock.ns = S // 2
    rtc.advance(clock.ns)
    assert router.calls == [(8, True)]
    assert rtc.next_deadline() is None              # IRQF stays until C is read
    assert rd(rtc, 0x0C) == 0xC0
    assert router.calls == [(8, True), (8, False)]
    assert rd(rtc, 0x0C) == 0x00
    assert rtc.next_deadline() == S
    wr(rtc, 0x0A, 0x23)                             # RS = 3: 8192 Hz, 122.07 us
    assert rtc.next_deadline() == S // 2 + 122071   # edge 4097 of 8192 Hz, rounded up


def test_rates_1_and_2_are_256_and_128_hz():
    rtc, clock, _ = make()
    wr(rtc, 0x0B, 0x42)
    wr(rtc, 0x0A, 0x21)
    assert rtc.next_deadline() == 3_906_250
    wr(rtc, 0x0A, 0x22)
    assert rtc.next_deadline() == 7_812_500


def test_flags_set_without_enables_and_irq_when_enabled():
    rtc, clock, router = make()
    clock.ns = 3 * S
    assert rd(rtc, 0x0C) == 0x50                    # PF (1024 Hz) and UF, no IRQF
    clock.ns = 4 * S + 2_000_000
    wr(rtc, 0x0B, 0x12)                             # UIE with UF already set
    assert router.calls == [(8, True)]
    assert rd(rtc, 0x0C) == 0xD0


def test_update_ended_interrupt_deadline():
    rtc, clock, router = make()
    wr(rtc, 0x0A, 0x20)                             # no periodic rate
    wr(rtc, 0x0B, 0x12)
    assert rtc.next_deadline() == S + 1_984_000
    clock.ns = S + 1_984_000
    rtc.advance(clock.ns)
    assert router.calls == [(8, True)] and rd(rtc, 0x0C) == 0x90
    wr(rtc, 0x0B, 0x92)                             # SET clears UIE
    assert rd(rtc, 0x0B) == 0x82


def test_alarm_with_dont_care():
    rtc, clock, router = make()
    wr(rtc, 0x0A, 0x20)
    wr(rtc, 1, 0x05)                                # seconds 05
    wr(rtc, 3, 0xC0)                                # any minute
    wr(rtc, 5, 0xFF)                                # any hour
    wr(rtc, 0x0B, 0x22)                             # AIE
    while rtc.next_deadline() is not None and not router.calls:
        clock.ns = rtc.next_deadline()
        rtc.advance(clock.ns)
    assert clock.ns == 5 * S + 1_984_000
    assert rd(rtc, 0x0C) == 0xB0                    # IRQF, AF, UF
    clock.ns = 64 * S + 1_984_000
    assert rd(rtc, 0x0C) == 0x10                    # UF only (no IRQF: UIE is clear)
    clock.ns = 65 * S + 1_984_000
    assert rd(rtc, 0x0C) == 0xB0


def test_divider_reset_holds_time_and_first_update_half_second_after():
    rtc, clock, _ = make()
    clock.ns = 10 * S + 300_000_000
    wr(rtc, 0x0A, 0x66)                             # divider in reset
    clock.ns = 50 * S
    assert rd(rtc, 0) == 0x10
    wr(rtc, 0x0A, 0x26)
    clock.ns = 50 * S + 499_999_999
    assert rd(rtc, 0) == 0x10
    clock.ns = 50 * S + 500_000_000
    assert rd(rtc, 0) == 0x11


def test_index_nmi_bit_and_ram():
    rtc, _, _ = make()
    rtc.io_write(0x70, 1, 0x8F)
    assert rtc.nmi_masked and rtc.index == 0x0F
    rtc.io_write(0x71, 1, 0xA5)
    assert rd(rtc, 0x0F) == 0xA5 and not rtc.nmi_masked
    assert rtc.io_read(0x70, 1) == 0xFF
    wr(rtc, 0x0C, 0xFF)
    wr(rtc, 0x0D, 0x00)
    assert rd(rtc, 0x0D) == 0x80
    wr(rtc, 0x7F, 0x42)
    assert rd(rtc, 0x7F) == 0x42


def test_memory_size_bytes():
    rtc, _, _ = make()
    rtc.set_memory_size(256 << 20)
    ram = rtc.ram
    assert ram[0x15] | ram[0x16] << 8 == 640
    assert ram[0x17] | ram[0x18] << 8 == 0xFFFF     # 261120 KB: capped
    assert ram[0x30] | ram[0x31] << 8 == 0xFFFF
    assert ram[0x34] | ram[0x35] << 8 == (240 << 20) >> 16
    rtc.set_memory_size(32 << 20)
    assert ram[0x17] | ram[0x18] << 8 == 31 * 1024
    assert ram[0x34] | ram[0x35] << 8 == 256
    with pytest.raises(ArgumentError, match="memory size"):
        rtc.set_memory_size(-1)


def test_reset_keeps_time_and_ram():
    rtc, clock, router = make()
    wr(rtc, 0x20, 0x77)
    wr(rtc, 0x0B, 0x7A)
    clock.ns = 7 * S
    rtc.advance(clock.ns)
    assert router.calls == [(8, True)]
    rtc.reset()
    assert rd(rtc, 0x0B) == 0x02 and rd(rtc, 0x0C) == 0 and rd(rtc, 0x20) == 0x77
    assert rd(rtc, 0) == 0x07
    assert router.calls[-1] == (8, False)


def test_state_round_trip():
    rtc, clock, _ = make()
    wr(rtc, 0x0B, 0x46)
    wr(rtc, 0x40, 9)
    clock.ns = 3 * S + 17
    rtc.io_write(0x70, 1, 0x84)
    state = rtc.get_state()
    other = CmosRtc(clock=clock)
    other.set_state(state)
    assert other.get_state() == state
    clock.ns = 99 * S
    assert [rd(other, r) for r in range(0x0E)] == [rd(rtc, r) for r in range(0x0E)]


def test_random_writes_never_raise():
    rng = random.Random(146818)
    rtc, clock, _ = make()
    for _ in range(20000):
        clock.ns += rng.randrange(10 ** 8)
        if rng.random() < 0.5:
            rtc.io_write(0x70 + rng.randrange(2), 1, rng.getrandbits(8))
        else:
            assert 0 <= rtc.io_read(0x70 + rng.randrange(2), 1) <= 0xFF
        d = rtc.next_deadline()
        if d is not None and d <= clock.ns:
            rtc.advance(clock.ns)
