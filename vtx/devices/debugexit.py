"""Ports for test guests: an exit port, a debug console, the POST code port.

* :class:`DebugExit` follows the convention of QEMU's isa-debug-exit device:
  a write of ``v`` ends the machine with exit status ``(v << 1) | 1`` (so a
  guest can never produce 0, the status of an ordinary stop).
* :class:`DebugCon` follows the Bochs/QEMU debug console convention on port
  E9h: each byte written is output; a read returns E9h (how a guest detects
  the port).
* :class:`PostCode` is port 80h, where PC firmware writes its power-on
  self-test progress codes (and Linux writes for an I/O delay).
"""

from ..errors import ArgumentError
from .base import Device


def _check_port(port, size, what):
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF - (size - 1):
        raise ArgumentError(f"{what}: port must be an int in [0, {0x10000 - size:#x}], not {port!r}")


class DebugExit(Device):
    """A write of ``v`` to ``port`` (``size`` bytes wide: 1, 2 or 4) stops
    the machine with exit code ``(v << 1) | 1``: ``exit_code`` is set and
    ``on_exit(code)`` called (the platform stops the guest)."""

    name = "debug-exit"

    def __init__(self, on_exit=None, port=0xF4, size=1):
        if size not in (1, 2, 4):
            raise ArgumentError(f"DebugExit: size must be 1, 2 or 4 bytes, not {size!r}")
        _check_port(port, size, "DebugExit")
        self.on_exit = on_exit
        self.port = port
        self.size = size
        self.ports = ((port, size),)
        self.exit_code = None

    def io_write(self, port, size, value):
        value &= (1 << (8 * min(size, self.size))) - 1
        self.exit_code = (value << 1) | 1
        if self.on_exit is not None:
            self.on_exit(self.exit_code)

    def reset(self):
        self.exit_code = None

    def get_state(self):
        return {"exit_code": self.exit_code}

    def set_state(self, state):
        self.exit_code = state["exit_code"]


class DebugCon(Device):
    """Port E9h: every byte written is appended to ``output`` and passed to
    ``on_output(bytes)``; reads return E9h."""

    name = "debugcon"

    def __init__(self, on_output=None, port=0xE9):
        _check_port(port, 1, "DebugCon")
        self.on_output = on_output
        self.ports = ((port, 1),)
        self.output = bytearray()

    def io_read(self, port, size):
        return (((1 << (8 * size)) - 1) & ~0xFF) | 0xE9

    def io_write(self, port, size, value):
        b = value & 0xFF
        self.output.append(b)
        if self.on_output is not None:
            self.on_output(bytes((b,)))

    # The output is the host's: reset and state keep it where it is.


class PostCode(Device):
    """Port 80h: ``last`` is the last byte written (None before any); reads
    return it (FFh before any)."""

    name = "post"

    def __init__(self, port=0x80):
        _check_port(port, 1, "PostCode")
        self.ports = ((port, 1),)
        self.last = None

    def io_read(self, port, size):
        return (((1 << (8 * size)) - 1) & ~0xFF) | (0xFF if self.last is None else self.last)

    def io_write(self, port, size, value):
        self.last = value & 0xFF

    def reset(self):
        self.last = None

    def get_state(self):
        return {"last": self.last}

    def set_state(self, state):
        self.last = state["last"]
