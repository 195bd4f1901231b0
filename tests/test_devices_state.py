"""Every legacy device's saved state is JSON data that restores exactly."""

import json

import pytest
from devfakes import FakeClock

from vtx.devices import (CmosRtc, DebugCon, DebugExit, I8042, PciFunction, PciHost, Pic8259Pair, Pit8254,
                         PostCode, SystemControlA, Uart16550)


def busy(dev, clock):
    """Some accesses on every port of ``dev``, with time passing."""
    for first, count in dev.ports:
        for port in range(first, first + count):
            for value in (0x11, 0x34, 0x80, 0x03):
                clock.ns += 12345
                dev.io_write(port, 1, value)
                dev.io_read(port, 1)


def makers(clock):
    f = PciFunction(0x1234, 0x5678, 0x020000)
    f.add_bar(0, 0x1000)
    pci = PciHost()
    pci.add(f, 3)
    return [Pic8259Pair(), Pit8254(clock=clock), Uart16550(clock=clock), CmosRtc(clock=clock), I8042(),
            SystemControlA(), DebugExit(), DebugCon(), PostCode(), pci]


@pytest.mark.parametrize("index", range(10))
def test_state_is_json_and_round_trips(index):
    clock = FakeClock(1000)
    dev = makers(clock)[index]
    busy(dev, clock)
    state = dev.get_state()
    text = json.dumps(state)
    fresh = makers(clock)[index]
    fresh.set_state(json.loads(text))
    assert fresh.get_state() == state
    assert json.dumps(fresh.get_state()) == text
