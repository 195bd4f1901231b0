"""The 8259A pair (vtx.devices.pic), driven through its ports as Linux drives it."""

import random

from vtx.devices import Pic8259Pair


def linux_init(pic, mask_m=0xFF, mask_s=0xFF):
    """ICW1=11h, ICW2=30h/38h, ICW3=4/2, ICW4=1, then the masks (OCW1)."""
    pic.io_write(0x20, 1, 0x11)
    pic.io_write(0x21, 1, 0x30)
    pic.io_write(0x21, 1, 0x04)
    pic.io_write(0x21, 1, 0x01)
    pic.io_write(0xA0, 1, 0x11)
    pic.io_write(0xA1, 1, 0x38)
    pic.io_write(0xA1, 1, 0x02)
    pic.io_write(0xA1, 1, 0x01)
    pic.io_write(0x21, 1, mask_m)
    pic.io_write(0xA1, 1, mask_s)


def test_ports():
    assert Pic8259Pair.ports == ((0x20, 2), (0xA0, 2), (0x4D0, 2))


def test_init_sequence_and_imr():
    pic = Pic8259Pair()
    linux_init(pic, 0xFB, 0xFF)
    assert pic.io_read(0x21, 1) == 0xFB
    assert pic.io_read(0xA1, 1) == 0xFF
    assert pic.master.vector_base == 0x30 and pic.slave.vector_base == 0x38
    assert pic.master.icw3 == 4 and pic.slave.icw3 == 2
    assert not pic.pending()


def test_icw1_clears_imr_and_a_write_after_is_icw2():
    pic = Pic8259Pair()
    linux_init(pic, 0x5A, 0)
    pic.io_write(0x20, 1, 0x11)
    assert pic.io_read(0x21, 1) == 0
    pic.io_write(0x21, 1, 0x48)        # ICW2, not OCW1
    assert pic.master.vector_base == 0x48
    assert pic.io_read(0x21, 1) == 0


def test_master_irq_vector_isr_and_specific_eoi():
    intr = []
    pic = Pic8259Pair(on_intr=intr.append)
    linux_init(pic, 0x00, 0xFF)
    pic.set_irq(0, True)
    assert pic.pending() and intr == [True]
    pic.io_write(0x20, 1, 0x0A)        # OCW3: read IRR
    assert pic.io_read(0x20, 1) == 0x01
    assert pic.acknowledge() == 0x30
    assert intr == [True, False]
    assert pic.io_read(0x20, 1) == 0x00  # IRR (edge: taken)
    pic.io_write(0x20, 1, 0x0B)        # read ISR
    assert pic.io_read(0x20, 1) == 0x01
    pic.io_write(0x20, 1, 0x60)        # specific EOI IR0
    assert pic.io_read(0x20, 1) == 0x00


def test_masked_request_is_held_in_irr():
    pic = Pic8259Pair()
    linux_init(pic, 0x01, 0xFF)
    pic.set_irq(0, True)
    assert not pic.pending()
    pic.io_write(0x20, 1, 0x0A)
    assert pic.io_read(0x20, 1) == 0x01
    pic.io_write(0x21, 1, 0x00)
    assert pic.pending()
    assert pic.acknowledge() == 0x30


def test_priority_and_nesting():
    pic = Pic8259Pair()
    linux_init(pic, 0x00, 0xFF)
    pic.set_irq(4, True)
    pic.set_irq(3, True)
    assert pic.acknowledge() == 0x33
    # IR4 is lower than IR3 in service: no INTR until the EOI.
    assert not pic.pending()
    pic.set_irq(1, True)               # higher than IR3: nests
    assert pic.pending()
    assert pic.acknowledge() == 0x31
    pic.io_write(0x20, 1, 0x20)        # non-specific EOI: the highest (IR1)
    pic.io_write(0x20, 1, 0x0B)
    assert pic.io_read(0x20, 1) == 0x08
    assert not pic.pending()
    pic.io_write(0x20, 1, 0x20)
    assert pic.io_read(0x20, 1) == 0x00
    assert pic.acknowledge() == 0x34


def test_slave_cascade_and_eois():
    pic = Pic8259Pair()
    linux_init(pic, 0xFB, 0x00)
    pic.set_irq(8, True)
    pic.set_irq(8, False)
    assert pic.pending()
    assert pic.acknowledge() == 0x38
    assert pic.irq_in_service() == 0x0104
    pic.set_irq(12, True)
    assert not pic.pending()           # IR0 of the slave in service blocks IR4
    pic.io_write(0xA0, 1, 0x60)        # slave EOI
    assert not pic.pending()           # the master's IR2 still in service
    pic.io_write(0x20, 1, 0x62)        # master specific EOI IR2
    assert pic.pending()
    assert pic.acknowledge() == 0x3C
    assert pic.irq_in_service() == 0x1004


def test_spurious_irq7_for_a_withdrawn_level_request():
    pic = Pic8259Pair()
    linux_init(pic, 0x00, 0xFF)
    pic.io_write(0x4D0, 1, 0x20)       # IRQ5 level triggered
    pic.set_irq(5, True)
    assert pic.pending()
    pic.set_irq(5, False)
    assert not pic.pending()
    assert pic.acknowledge() == 0x37
    assert pic.irq_in_service() == 0   # a spurious IR7 sets no ISR bit


def test_spurious_irq15_sets_master_ir2_only():
    pic = Pic8259Pair()
    linux_init(pic, 0x00, 0x00)
    pic.io_write(0x4D1, 1, 0x08)       # IRQ11 level
    pic.set_irq(11, True)
    assert pic.pending()
    # The request vanishes at the slave between INTR and INTA: the master's
    # edge-latched IR2 stays, the slave answers its IR7 vector.
    pic.set_irq(11, False)
    assert pic.pending()
    assert pic.acknowledge() == 0x3F
    assert pic.irq_in_service() == 0x0004


def test_level_mode_requests_again_after_eoi_while_high():
    pic = Pic8259Pair()
    linux_init(pic, 0x00, 0xFF)
    pic.io_write(0x4D0, 1, 0x08)       # IRQ3 level
    pic.set_irq(3, True)
    assert pic.acknowledge() == 0x33
    assert not pic.pending()
    pic.io_write(0x20, 1, 0x63)
    assert pic.pending()               # still high: requests again
    pic.set_irq(3, False)
    assert not pic.pending()


def test_edge_mode_needs_a_new_rising_edge():
    pic = Pic8259Pair()
    linux_init(pic, 0x00, 0xFF)
    pic.set_irq(3, True)
    assert pic.acknowledge() == 0x33
    pic.io_write(0x20, 1, 0x63)
    pic.set_irq(3, True)               # still high: no edge
    assert not pic.pending()
    pic.set_irq(3, False)
    pic.set_irq(3, True)
    assert pic.pending()


def test_elcr_reserved_bits_read_zero():
    pic = Pic8259Pair()
    pic.io_write(0x4D0, 1, 0xFF)
    pic.io_write(0x4D1, 1, 0xFF)
    assert pic.io_read(0x4D0, 1) == 0xF8
    assert pic.io_read(0x4D1, 1) == 0xDE
    assert pic.io_read(0x4D0, 2) == 0xDEF8
    pic.io_write(0x4D0, 2, 0x0C20)
    assert (pic.io_read(0x4D0, 1), pic.io_read(0x4D1, 1)) == (0x20, 0x0C)


def test_auto_eoi_and_rotation_in_auto_eoi():
    pic = Pic8259Pair()
    pic.io_write(0x20, 1, 0x13)        # ICW1: single, ICW4 needed
    pic.io_write(0x21, 1, 0x20)        # ICW2
    pic.io_write(0x21, 1, 0x03)        # ICW4 (no ICW3 in single mode): AEOI, 8086
    pic.io_write(0x21, 1, 0x00)
    assert pic.master.single and pic.master.auto_eoi
    pic.set_irq(2, True)
    pic.set_irq(5, True)
    assert pic.acknowledge() == 0x22   # single mode: IR2 is a plain input
    assert pic.irq_in_service() == 0
    pic.io_write(0x20, 1, 0x80)        # rotate in AEOI mode
    pic.set_irq(2, False)
    pic.set_irq(2, True)
    assert pic.acknowledge() == 0x22
    assert pic.master.lowest == 2
    assert pic.acknowledge() == 0x25
    assert pic.master.lowest == 5      # IR5 now has the lowest priority: IR6 the highest
    pic.set_irq(2, False)
    pic.set_irq(2, True)
    pic.set_irq(6, True)
    assert pic.acknowledge() == 0x26
    assert pic.acknowledge() == 0x22
    assert pic.irq_in_service() == 0
    pic.io_write(0x20, 1, 0x00)        # clear rotate in AEOI mode
    assert pic.master.rotate_aeoi is False


def test_set_priority_and_rotate_on_specific_eoi():
    pic = Pic8259Pair()
    linux_init(pic, 0x00, 0xFF)
    pic.io_write(0x20, 1, 0xC3)        # IR3 lowest: IR4 highest
    pic.set_irq(0, True)
    pic.set_irq(4, True)
    assert pic.acknowledge() == 0x34
    pic.io_write(0x20, 1, 0xE4)        # rotate on specific EOI IR4: IR5 highest
    assert pic.master.lowest == 4
    assert pic.acknowledge() == 0x30
    pic.io_write(0x20, 1, 0xA0)        # rotate on non-specific EOI: IR0 lowest
    assert pic.master.lowest == 0 and pic.irq_in_service() == 0


def test_special_mask_mode_lets_lower_levels_in():
    pic = Pic8259Pair()
    linux_init(pic, 0x00, 0xFF)
    pic.set_irq(1, True)
    assert pic.acknowledge() == 0x31
    pic.set_irq(6, True)
    assert not pic.pending()
    pic.io_write(0x21, 1, 0x02)        # mask IR1 (in service)
    pic.io_write(0x20, 1, 0x68)        # OCW3: set special mask mode
    assert pic.pending()
    assert pic.acknowledge() == 0x36
    pic.io_write(0x20, 1, 0x48)        # reset special mask mode
    assert pic.master.special_mask is False


def test_poll_mode():
    pic = Pic8259Pair()
    linux_init(pic, 0x00, 0xFF)
    pic.io_write(0x20, 1, 0x0C)        # OCW3 poll
    assert pic.io_read(0x20, 1) == 0x00
    pic.set_irq(6, True)
    pic.io_write(0x20, 1, 0x0C)
    assert pic.io_read(0x20, 1) == 0x86
    assert pic.irq_in_service() == 0x40
    pic.io_write(0x20, 1, 0x0B)
    assert pic.io_read(0x20, 1) == 0x40  # poll is over: the ISR again


def test_sfnm_lets_a_higher_slave_request_through():
    pic = Pic8259Pair()
    for port, v in ((0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x11)):
        pic.io_write(port, 1, v)
    for port, v in ((0xA0, 0x11), (0xA1, 0x38), (0xA1, 0x02), (0xA1, 0x01)):
        pic.io_write(port, 1, v)
    pic.io_write(0x21, 1, 0)
    pic.io_write(0xA1, 1, 0)
    pic.set_irq(12, True)
    assert pic.acknowledge() == 0x3C
    pic.set_irq(9, True)
    assert pic.pending()
    assert pic.acknowledge() == 0x39


def test_spurious_when_nothing_pending():
    pic = Pic8259Pair()
    linux_init(pic)
    assert pic.acknowledge() == 0x37


def test_reset_and_state_round_trip():
    pic = Pic8259Pair()
    linux_init(pic, 0x12, 0x34)
    pic.io_write(0x4D0, 1, 0x20)
    pic.set_irq(0, True)
    pic.set_irq(5, True)
    pic.acknowledge()
    state = pic.get_state()
    other = Pic8259Pair()
    other.set_state(state)
    assert other.get_state() == state
    assert other.irq_in_service() == 0x01
    for p in (pic, other):
        p.io_write(0x20, 1, 0x20)
        assert p.acknowledge() == 0x35
    pic.reset()
    assert pic.io_read(0x21, 1) == 0 and pic.io_read(0x4D0, 1) == 0 and pic.irq_in_service() == 0
    assert not pic.pending()


def test_random_writes_never_raise():
    rng = random.Random(8259)
    pic = Pic8259Pair()
    ports = [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1]
    for _ in range(20000):
        op = rng.randrange(4)
        if op == 0:
            pic.io_write(rng.choice(ports), rng.choice((1, 2, 4)), rng.getrandbits(32))
        elif op == 1:
            assert 0 <= pic.io_read(rng.choice(ports), 1) <= 0xFF
        elif op == 2:
            pic.set_irq(rng.randrange(16), rng.random() < 0.5)
        elif pic.pending():
            assert 0 <= pic.acknowledge() <= 0xFF
