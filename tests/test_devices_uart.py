"""The 16550A (vtx.devices.uart): registers, FIFOs, IIR codes, IRQ, loopback."""

import random

from devfakes import FakeClock, Router

from vtx.devices import IrqLine, Uart16550

B = 0x3F8


def make(clock=None, **kw):
    router = Router()
    u = Uart16550(IrqLine(router, 4), clock, **kw)
    return u, router


def test_ports_and_com_constants():
    u, _ = make()
    assert u.ports == ((0x3F8, 8),)
    assert Uart16550(base=0x2F8).ports == ((0x2F8, 8),)
    assert Uart16550.COM1 == (0x3F8, 4) and Uart16550.COM2 == (0x2F8, 3)


def test_reset_values():
    u, _ = make()
    assert [u.io_read(B + r, 1) for r in (1, 2, 3, 4, 5)] == [0x00, 0x01, 0x00, 0x00, 0x60]
    assert u.io_read(B + 6, 1) == 0xB0      # DCD, DSR, CTS from the far end


def test_divisor_latch_and_scratch():
    u, _ = make()
    u.io_write(B + 3, 1, 0x83)              # DLAB, 8N1
    u.io_write(B + 0, 1, 0x01)
    u.io_write(B + 1, 1, 0x02)
    assert (u.io_read(B, 1), u.io_read(B + 1, 1)) == (0x01, 0x02)
    u.io_write(B + 3, 1, 0x03)
    assert u.io_read(B + 1, 1) == 0         # IER again
    assert (u.dll, u.dlm) == (1, 2)
    u.io_write(B + 7, 1, 0x5A)
    assert u.io_read(B + 7, 1) == 0x5A
    assert u.output == b""                  # the DLL write sent nothing


def test_transmit_output_and_callback():
    seen = []
    u, _ = make(on_output=seen.append)
    for b in b"hi\n":
        u.io_write(B, 1, b)
    assert u.output == bytearray(b"hi\n")
    assert seen == [b"h", b"i", b"\n"]
    assert u.io_read(B + 5, 1) == 0x60      # THRE and TEMT at once


def test_thre_interrupt_needs_out2_and_clears_on_iir_read():
    u, router = make()
    u.io_write(B + 1, 1, 0x02)              # ETBEI: THR is empty, so it is pending
    assert u.io_read(B + 2, 1) == 0x02      # ... and this read clears it
    assert u.io_read(B + 2, 1) == 0x01
    assert router.calls == []               # OUT2 clear: no IRQ
    u.io_write(B + 4, 1, 0x08)              # OUT2
    u.io_write(B, 1, 0x41)
    assert router.calls == [(4, True)]
    assert u.io_read(B + 2, 1) == 0x02
    assert router.calls == [(4, True), (4, False)]


def test_receive_without_fifo_and_overrun():
    u, router = make()
    u.io_write(B + 4, 1, 0x08)
    u.io_write(B + 1, 1, 0x05)              # ERBFI, ELSI
    u.feed(b"a", flow_control=False)
    assert router.calls == [(4, True)]
    assert u.io_read(B + 5, 1) == 0x61
    assert u.io_read(B + 2, 1) == 0x04
    u.feed(b"b", flow_control=False)        # not read: overrun, replaces 'a'
    assert u.io_read(B + 2, 1) == 0x06      # line status is higher than data
    assert u.io_read(B + 5, 1) == 0x63      # DR, OE; the read clears OE
    assert u.io_read(B + 5, 1) == 0x61
    assert u.io_read(B, 1) == ord("b")
    assert u.io_read(B + 5, 1) == 0x60
    assert u.io_read(B + 2, 1) == 0x01
    assert router.calls[-1] == (4, False)


def test_fifo_trigger_level_and_iir_fifo_bits():
    u, _ = make()
    u.io_write(B + 2, 1, 0x87)              # FIFO on, clear both, trigger 8
    u.io_write(B + 1, 1, 0x01)
    assert u.io_read(B + 2, 1) == 0xC1      # FIFOs on, nothing pending
    u.feed(b"1234567")
    assert u.io_read(B + 2, 1) == 0xCC      # below the trigger: a character timeout (no clock: at once)
    u.feed(b"8")
    assert u.io_read(B + 2, 1) == 0xC4
    assert bytes(u.io_read(B, 1) for _ in range(8)) == b"12345678"
    assert u.io_read(B + 2, 1) == 0xC1
    assert u.io_read(B, 1) == ord("8")      # an empty RBR reads the last byte again
    u.io_write(B + 2, 1, 0x00)
    assert u.io_read(B + 2, 1) == 0x01


def test_fifo_overrun_loses_the_new_byte():
    u, _ = make()
    u.io_write(B + 2, 1, 0x01)
    u.feed(bytes(range(20)), flow_control=False)
    assert u.io_read(B + 5, 1) == 0x63      # DR, OE
    assert bytes(u.io_read(B, 1) for _ in range(16)) == bytes(range(16))
    assert u.io_read(B + 5, 1) == 0x60


def test_flow_control_queue_moves_in_as_the_guest_reads():
    u, _ = make()
    u.io_write(B + 2, 1, 0x01)
    u.feed(bytes(range(40)))
    assert len(u.rx) == 16 and len(u.input_queue) == 24
    got = bytes(u.io_read(B, 1) for _ in range(40))
    assert got == bytes(range(40))
    assert u.io_read(B + 5, 1) == 0x60      # no overrun


def test_character_timeout_at_four_character_times():
    clock = FakeClock(1000)
    u, router = make(clock)
    u.io_write(B + 3, 1, 0x80)
    u.io_write(B, 1, 1)                     # 115200 baud
    u.io_write(B + 3, 1, 0x03)              # 8N1: 10 bits
    u.io_write(B + 2, 1, 0xC1)              # trigger 14
    u.io_write(B + 4, 1, 0x08)
    u.io_write(B + 1, 1, 0x01)
    assert u.char_time_ns() == 86806        # 10 * 16 / 1843200 s, rounded up
    u.feed(b"ab")
    assert u.next_deadline() == 1000 + 4 * 86806
    assert u.io_read(B + 2, 1) == 0xC1
    clock.ns = 1000 + 4 * 86806 + 500       # the platform looks late: the deadline stays
    assert u.next_deadline() == 1000 + 4 * 86806
    u.advance(clock.ns)
    assert router.calls == [(4, True)]
    assert u.io_read(B + 2, 1) == 0xCC
    assert u.next_deadline() is None
    assert u.io_read(B, 1) == ord("a")      # a read restarts the timer
    assert u.io_read(B + 2, 1) == 0xC1
    assert u.next_deadline() == clock.ns + 4 * 86806


def test_loopback_modem_lines_and_data():
    u, router = make()
    u.io_write(B + 1, 1, 0x0F)
    u.io_write(B + 4, 1, 0x1A)              # loopback, RTS, OUT2 (Linux's probe)
    assert u.io_read(B + 6, 1) & 0xF0 == 0x90
    u.io_write(B, 1, 0x55)
    assert u.output == b""
    assert u.io_read(B + 5, 1) & 1
    assert u.io_read(B, 1) == 0x55
    assert router.calls == []               # the OUT2 pin is inactive in loopback
    u.io_write(B + 4, 1, 0x15)              # DTR, OUT1
    assert u.io_read(B + 6, 1) == 0x60 | 0x0B   # DSR, RI; DCTS, DDSR, DDCD (RI rose: no TERI)
    u.io_write(B + 4, 1, 0x11)
    assert u.io_read(B + 6, 1) == 0x20 | 0x04   # TERI


def test_modem_status_interrupt():
    u, router = make()
    u.io_write(B + 4, 1, 0x08)
    u.io_write(B + 1, 1, 0x08)
    u.set_modem_inputs(0x30)                # DCD drops
    assert u.io_read(B + 2, 1) == 0x00
    assert router.calls == [(4, True)]
    assert u.io_read(B + 6, 1) == 0x38
    assert u.io_read(B + 2, 1) == 0x01
    assert router.calls[-1] == (4, False)


def test_interrupt_priority_order():
    u, _ = make()
    u.io_write(B + 1, 1, 0x0F)
    u.set_modem_inputs(0x00)
    u.feed(b"x", flow_control=False)
    u.feed(b"y", flow_control=False)        # overrun
    ids = []
    ids.append(u.io_read(B + 2, 1))
    u.io_read(B + 5, 1)
    ids.append(u.io_read(B + 2, 1))
    u.io_read(B, 1)
    ids.append(u.io_read(B + 2, 1))         # THRE (pending since ETBEI), cleared by this read
    ids.append(u.io_read(B + 2, 1))
    u.io_read(B + 6, 1)
    ids.append(u.io_read(B + 2, 1))
    assert ids == [0x06, 0x04, 0x02, 0x00, 0x01]


def test_state_round_trip_and_reset():
    u, _ = make(FakeClock(5))
    u.io_write(B + 2, 1, 0x41)
    u.io_write(B + 1, 1, 0x03)
    u.io_write(B + 3, 1, 0x1B)
    u.feed(bytes(range(30)))
    state = u.get_state()
    other = Uart16550(clock=FakeClock(5))
    other.set_state(state)
    assert other.get_state() == state
    assert [other.io_read(B + r, 1) for r in (2, 5, 0, 0)] == [u.io_read(B + r, 1) for r in (2, 5, 0, 0)]
    u.reset()
    assert [u.io_read(B + r, 1) for r in (1, 2, 3, 4, 5)] == [0x00, 0x01, 0x00, 0x00, 0x60]


def test_random_writes_never_raise():
    rng = random.Random(16550)
    clock = FakeClock()
    u, _ = make(clock)
    for _ in range(20000):
        clock.ns += rng.randrange(100000)
        r = rng.randrange(8)
        if rng.random() < 0.5:
            u.io_write(B + r, rng.choice((1, 2, 4)), rng.getrandbits(32))
        else:
            assert 0 <= u.io_read(B + r, 1) <= 0xFF
        if rng.random() < 0.05:
            u.feed(bytes(rng.getrandbits(8) for _ in range(rng.randrange(20))), rng.random() < 0.5)
        d = u.next_deadline()
        if d is not None and d <= clock.ns:
            u.advance(clock.ns)
    assert len(u.rx) <= 16
