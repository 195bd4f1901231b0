"""The keyboard controller, port 92h, the debug exit/console ports and port 80h."""

import random

import pytest
from devfakes import Router

from vtx.devices import DebugCon, DebugExit, I8042, IrqLine, PostCode, SystemControlA
from vtx.errors import ArgumentError


def make_kbc():
    router = Router()
    events = []
    kbc = I8042(IrqLine(router, 1), IrqLine(router, 12), on_reset=lambda: events.append("reset"),
                on_a20=lambda on: events.append(("a20", on)))
    return kbc, router, events


def test_kbc_status_and_empty_buffer():
    kbc, _, _ = make_kbc()
    assert kbc.ports == ((0x60, 1), (0x64, 1))
    assert kbc.io_read(0x64, 1) == 0x14     # system flag, not inhibited; nothing to read


def test_kbc_self_test_and_interface_test():
    kbc, router, _ = make_kbc()
    kbc.io_write(0x64, 1, 0xAA)
    assert kbc.io_read(0x64, 1) == 0x1D     # OBF, SYS, A2 (a command), not inhibited
    assert router.calls == [(1, True)]      # command byte bit 0: IRQ1
    assert kbc.io_read(0x60, 1) == 0x55
    assert router.calls == [(1, True), (1, False)]
    kbc.io_write(0x64, 1, 0xAB)
    assert kbc.io_read(0x60, 1) == 0x00
    assert kbc.io_read(0x64, 1) & 1 == 0


def test_kbc_command_byte_read_write():
    kbc, router, _ = make_kbc()
    kbc.io_write(0x64, 1, 0x20)
    assert kbc.io_read(0x60, 1) == 0x45
    kbc.io_write(0x64, 1, 0x60)
    kbc.io_write(0x60, 1, 0x74)             # interrupts off, both clocks off, SYS
    assert kbc.io_read(0x64, 1) & 0x08 == 0  # the last write was data
    kbc.io_write(0x64, 1, 0x20)
    assert kbc.io_read(0x64, 1) & 0x21 == 0x01
    assert kbc.io_read(0x60, 1) == 0x74
    assert router.edges(1) == 1             # only the first read-back (bit 0 was set then)
    kbc.io_write(0x64, 1, 0xA8)
    kbc.io_write(0x64, 1, 0xAE)
    kbc.io_write(0x64, 1, 0x20)
    assert kbc.io_read(0x60, 1) == 0x44


def test_kbc_aux_output_buffer_and_irq12():
    kbc, router, _ = make_kbc()
    kbc.io_write(0x64, 1, 0x60)
    kbc.io_write(0x60, 1, 0x47)             # both interrupts on
    kbc.io_write(0x64, 1, 0xD3)
    kbc.io_write(0x60, 1, 0x5A)
    assert kbc.io_read(0x64, 1) & 0x21 == 0x21
    assert router.calls == [(12, True)]
    assert kbc.io_read(0x60, 1) == 0x5A
    assert router.calls == [(12, True), (12, False)]
    kbc.io_write(0x64, 1, 0xD2)
    kbc.io_write(0x60, 1, 0x1C)
    assert router.calls[-1] == (1, True) and kbc.io_read(0x60, 1) == 0x1C


def test_kbc_data_to_absent_keyboard_is_dropped():
    kbc, router, _ = make_kbc()
    kbc.io_write(0x60, 1, 0xFF)             # keyboard reset command: nobody answers
    kbc.io_write(0x64, 1, 0xD4)
    kbc.io_write(0x60, 1, 0xF2)
    assert kbc.io_read(0x64, 1) & 1 == 0 and router.calls == []


def test_kbc_output_port_a20_and_reset():
    kbc, _, events = make_kbc()
    kbc.io_write(0x64, 1, 0xD0)
    assert kbc.io_read(0x60, 1) == 0x03
    kbc.io_write(0x64, 1, 0xD1)
    kbc.io_write(0x60, 1, 0x01)             # A20 off
    assert events == [("a20", False)] and not kbc.a20
    kbc.io_write(0x64, 1, 0xDF)
    assert events[-1] == ("a20", True)
    kbc.io_write(0x64, 1, 0xD1)
    kbc.io_write(0x60, 1, 0x02)             # bit 0 low: reset
    assert events[-1] == "reset"


@pytest.mark.parametrize("cmd,resets", [(0xFE, 1), (0xF0, 1), (0xFA, 1), (0xFF, 0), (0xF1, 0)])
def test_kbc_pulse_commands(cmd, resets):
    kbc, _, events = make_kbc()
    kbc.io_write(0x64, 1, cmd)
    assert events.count("reset") == resets == kbc.resets


def test_kbc_state_round_trip_and_reset():
    kbc, _, _ = make_kbc()
    kbc.io_write(0x64, 1, 0x61)
    kbc.io_write(0x60, 1, 0x99)
    kbc.io_write(0x64, 1, 0xAA)
    kbc.io_write(0x64, 1, 0xD1)
    state = kbc.get_state()
    other = I8042()
    other.set_state(state)
    assert other.get_state() == state
    assert other.io_read(0x60, 1) == 0x55
    other.io_write(0x64, 1, 0x21)
    assert other.io_read(0x60, 1) == 0x99
    kbc.reset()
    assert kbc.io_read(0x64, 1) == 0x14 and kbc.pending is None


def test_port92():
    events = []
    p = SystemControlA(on_reset=lambda: events.append("reset"), on_a20=lambda on: events.append(on))
    assert p.ports == ((0x92, 1),) and p.io_read(0x92, 1) == 0x02 and p.a20
    p.io_write(0x92, 1, 0x00)
    assert events == [False] and not p.a20
    p.io_write(0x92, 1, 0x03)
    assert events == [False, True, "reset"]
    p.io_write(0x92, 1, 0x03)               # no 0-to-1 transition
    assert events == [False, True, "reset"]
    assert p.io_read(0x92, 1) == 0x03
    state = p.get_state()
    q = SystemControlA()
    q.set_state(state)
    assert q.get_state() == state
    p.reset()
    assert p.io_read(0x92, 1) == 0x02


def test_debug_exit_codes():
    codes = []
    d = DebugExit(on_exit=codes.append)
    assert d.ports == ((0xF4, 1),)
    d.io_write(0xF4, 1, 0)
    d.io_write(0xF4, 1, 0x31)
    assert codes == [1, 0x63] and d.exit_code == 0x63
    wide = DebugExit(port=0x501, size=4)
    assert wide.ports == ((0x501, 4),)
    wide.io_write(0x501, 4, 0x12345678)
    assert wide.exit_code == 0x2468ACF1
    d.io_write(0xF4, 2, 0x1234)             # a 1-byte port keeps the low byte
    assert d.exit_code == 0x69
    state = d.get_state()
    d.reset()
    assert d.exit_code is None
    d.set_state(state)
    assert d.exit_code == 0x69


def test_debug_exit_bad_arguments():
    with pytest.raises(ArgumentError, match="size must be 1, 2 or 4"):
        DebugExit(size=3)
    with pytest.raises(ArgumentError, match="port must be"):
        DebugExit(port=0xFFFF, size=2)
    with pytest.raises(ArgumentError, match="port must be"):
        DebugCon(port=-1)


def test_debugcon_and_postcode():
    seen = []
    con = DebugCon(on_output=seen.append)
    for b in b"ok\n":
        con.io_write(0xE9, 1, b)
    assert con.output == bytearray(b"ok\n") and seen == [b"o", b"k", b"\n"]
    assert con.io_read(0xE9, 1) == 0xE9
    post = PostCode()
    assert post.ports == ((0x80, 1),) and post.io_read(0x80, 1) == 0xFF
    post.io_write(0x80, 1, 0x1AB)
    assert post.last == 0xAB and post.io_read(0x80, 1) == 0xAB
    other = PostCode()
    other.set_state(post.get_state())
    assert other.last == 0xAB
    post.reset()
    assert post.last is None


def test_random_writes_never_raise():
    rng = random.Random(8042)
    kbc, _, _ = make_kbc()
    p92 = SystemControlA()
    for _ in range(20000):
        port = rng.choice((0x60, 0x64))
        if rng.random() < 0.6:
            kbc.io_write(port, 1, rng.getrandbits(8))
        else:
            assert 0 <= kbc.io_read(port, 1) <= 0xFF
        p92.io_write(0x92, 1, rng.getrandbits(8))
