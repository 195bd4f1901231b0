"""PCI configuration mechanism #1 and PciFunction (vtx.devices.pci)."""

import random

import pytest

from vtx.devices import PciFunction, PciHost
from vtx.errors import ArgumentError


def cfg(bus, dev, fn, reg):
    return 0x80000000 | bus << 16 | dev << 11 | fn << 8 | reg


def read(pci, addr, size=4, byte=0):
    pci.io_write(0xCF8, 4, addr)
    return pci.io_read(0xCFC + byte, size)


def write(pci, addr, value, size=4, byte=0):
    pci.io_write(0xCF8, 4, addr)
    pci.io_write(0xCFC + byte, size, value)


def test_host_bridge_identity():
    pci = PciHost()
    assert pci.ports == ((0xCF8, 8),)
    assert read(pci, cfg(0, 0, 0, 0)) == 0x12378086
    assert read(pci, cfg(0, 0, 0, 8)) == 0x06000000          # class 06 00 00, revision 0
    assert read(pci, cfg(0, 0, 0, 0x0C)) == 0x00000000       # header type 0
    assert read(pci, cfg(0, 0, 0, 0), 2, 2) == 0x1237
    assert read(pci, cfg(0, 0, 0, 0), 1, 1) == 0x80
    assert read(pci, cfg(0, 0, 0, 8), 1, 3) == 0x06


def test_address_register():
    pci = PciHost()
    pci.io_write(0xCF8, 4, 0xFFFFFFFF)
    assert pci.io_read(0xCF8, 4) == 0x80FFFFFC               # reserved 30:24 and 1:0 read 0
    pci.io_write(0xCF8, 1, 0x00)                              # not a dword: not CONFIG_ADDRESS
    assert pci.io_read(0xCF8, 4) == 0x80FFFFFC
    assert pci.io_read(0xCF8, 1) == 0xFF and pci.io_read(0xCFA, 2) == 0xFFFF


def test_absent_functions_and_disabled_access_read_all_ones():
    pci = PciHost()
    assert read(pci, cfg(0, 1, 0, 0)) == 0xFFFFFFFF
    assert read(pci, cfg(0, 0, 1, 0)) == 0xFFFFFFFF
    assert read(pci, cfg(1, 0, 0, 0)) == 0xFFFFFFFF
    assert read(pci, cfg(0, 0, 0, 0) & 0x7FFFFFFF) == 0xFFFFFFFF
    assert read(pci, cfg(0, 5, 0, 0), 2) == 0xFFFF
    write(pci, cfg(0, 5, 0, 4), 0x7)                          # ignored


def test_writable_masks_and_status_write_one_to_clear():
    pci = PciHost()
    write(pci, cfg(0, 0, 0, 0), 0xFFFFFFFF)                   # IDs are read-only
    assert read(pci, cfg(0, 0, 0, 0)) == 0x12378086
    write(pci, cfg(0, 0, 0, 4), 0x0000FFFF)
    assert read(pci, cfg(0, 0, 0, 4)) == 0x00000547
    bridge = pci.functions[0, 0]
    bridge.config[6:8] = (0x2110).to_bytes(2, "little")       # master abort, parity, capabilities list
    write(pci, cfg(0, 0, 0, 4), 0x2010, 2, 2)                 # clear master abort; bit 4 is read-only
    assert read(pci, cfg(0, 0, 0, 4)) == 0x01100547
    write(pci, cfg(0, 0, 0, 0x3C), 0x0B, 1)
    assert read(pci, cfg(0, 0, 0, 0x3C)) == 0x0000000B


def test_bar_sizing_memory_io_and_64_bit():
    pci = PciHost()
    f = PciFunction(0x1234, 0x5678, 0x020000, revision=3, interrupt_pin=1)
    f.add_bar(0, 0x1000)
    f.add_bar(1, 0x20, io=True)
    f.add_bar(2, 1 << 33, prefetchable=True, is64=True)
    pci.add(f, 3)
    a = cfg(0, 3, 0, 0)
    assert read(pci, a) == 0x56781234
    assert read(pci, a | 8) == 0x02000003
    assert read(pci, a | 0x3C) == 0x00000100                  # INTA#
    for reg in (0x10, 0x14, 0x18, 0x1C):
        write(pci, a | reg, 0xFFFFFFFF)
    assert read(pci, a | 0x10) == 0xFFFFF000
    assert read(pci, a | 0x14) == 0xFFFFFFE1
    assert read(pci, a | 0x18) == 0x0000000C
    assert read(pci, a | 0x1C) == 0xFFFFFFFE
    write(pci, a | 0x10, 0xFEBF1234)
    write(pci, a | 0x14, 0xC047)
    write(pci, a | 0x18, 0x00000000)
    write(pci, a | 0x1C, 0x00000004)
    assert f.bar_address(0) == 0xFEBF1000
    assert f.bar_address(1) == 0xC040
    assert f.bar_address(2) == 0x4_0000_0000
    assert f.bar_address(3) is None
    assert read(pci, a | 0x20) == 0 and read(pci, a | 0x24) == 0  # no BAR: read-only 0


def test_bad_arguments():
    f = PciFunction(0x1234, 0x5678, 0x020000)
    with pytest.raises(ArgumentError, match="power of two"):
        f.add_bar(0, 0x1800)
    with pytest.raises(ArgumentError, match="power of two"):
        f.add_bar(0, 8)
    with pytest.raises(ArgumentError, match="index must be 0-5"):
        f.add_bar(6, 0x1000)
    with pytest.raises(ArgumentError, match="index 0-4"):
        f.add_bar(5, 0x1000, is64=True)
    with pytest.raises(ArgumentError, match="neither prefetchable"):
        f.add_bar(0, 0x10, io=True, prefetchable=True)
    f.add_bar(0, 0x1000, is64=True)
    with pytest.raises(ArgumentError, match="already in use"):
        f.add_bar(1, 0x1000)
    with pytest.raises(ArgumentError, match="vendor_id must be an int of 16 bits"):
        PciFunction(0x10000, 0, 0)
    with pytest.raises(ArgumentError, match="interrupt_pin"):
        PciFunction(1, 2, 3, interrupt_pin=5)
    pci = PciHost()
    with pytest.raises(ArgumentError, match="already taken by host-bridge"):
        pci.add(PciFunction(1, 2, 3), 0, 0)
    with pytest.raises(ArgumentError, match="dev must be 0-31"):
        pci.add(PciFunction(1, 2, 3), 32)
    with pytest.raises(ArgumentError, match="function 0 of device 0x4 must be added"):
        pci.add(PciFunction(1, 2, 3), 4, 1)
    with pytest.raises(ArgumentError, match="a PciFunction is needed"):
        pci.add(object(), 4)


def test_multi_function_bit():
    pci = PciHost()
    pci.add(PciFunction(0x8086, 0x7000, 0x060100), 1, 0)
    assert read(pci, cfg(0, 1, 0, 0x0C)) == 0x00000000
    pci.add(PciFunction(0x8086, 0x7010, 0x010180), 1, 1)
    assert read(pci, cfg(0, 1, 0, 0x0C)) == 0x00800000
    assert read(pci, cfg(0, 1, 1, 0)) == 0x70108086


def test_subclass_side_effects():
    class Doorbell(PciFunction):
        def __init__(self):
            super().__init__(0x1AF4, 0x1000, 0xFF0000)
            self.rings = []

        def config_write(self, offset, size, value):
            if offset == 0x40:
                self.rings.append(value)
            super().config_write(offset, size, value)

    pci = PciHost()
    d = pci.add(Doorbell(), 2)
    write(pci, cfg(0, 2, 0, 0x40), 0xAB, 1)
    assert d.rings == [0xAB]
    assert read(pci, cfg(0, 2, 0, 0x40)) == 0                 # not writable storage


def test_reset_and_state_round_trip():
    pci = PciHost()
    f = PciFunction(0x1234, 0x5678, 0x020000)
    f.add_bar(0, 0x100)
    pci.add(f, 3)
    write(pci, cfg(0, 3, 0, 0x10), 0xE0000000)
    write(pci, cfg(0, 3, 0, 4), 0x6)
    state = pci.get_state()
    other = PciHost()
    g = PciFunction(0x1234, 0x5678, 0x020000)
    g.add_bar(0, 0x100)
    other.add(g, 3)
    other.set_state(state)
    assert other.get_state() == state
    assert read(other, cfg(0, 3, 0, 0x10)) == 0xE0000000
    with pytest.raises(ArgumentError, match="no function at 00:03.0"):
        PciHost().set_state(state)
    pci.reset()
    assert pci.io_read(0xCF8, 4) == 0
    assert read(pci, cfg(0, 3, 0, 0x10)) == 0 and read(pci, cfg(0, 3, 0, 4)) == 0


def test_random_accesses_never_raise():
    rng = random.Random(0xCF8)
    pci = PciHost()
    f = PciFunction(0x1234, 0x5678, 0x020000)
    f.add_bar(0, 0x1000)
    pci.add(f, 3)
    for _ in range(20000):
        port = 0xCF8 + rng.randrange(8)
        size = rng.choice((1, 2, 4))
        if rng.random() < 0.5:
            pci.io_write(port, size, rng.getrandbits(32) | (0x80000000 if rng.random() < 0.5 else 0))
        else:
            assert 0 <= pci.io_read(port, size) < (1 << (8 * size))
    assert read(pci, cfg(0, 3, 0, 0)) == 0x56781234
