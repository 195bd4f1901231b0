"""The keyboard controller (8042) at ports 60h/64h, and System Control Port A
at port 92h.

Facts from the IBM PC AT Technical Reference ("Keyboard Controller") and the
PS/2 keyboard controller documentation: the status register at 64h (bit 0
OBF, 1 IBF, 2 SYS, 3 A2 = last write was a command, 4 keyboard not
inhibited, 5 AUX OBF, 6 time-out, 7 parity error), the command byte (bit 0
keyboard interrupt, 1 auxiliary interrupt, 2 system flag, 4 keyboard clock
disabled, 5 auxiliary clock disabled, 6 scan code translation), commands 20h
(read command byte; 21h-3Fh the other RAM bytes), 60h (write it; 61h-7Fh),
A7h/A8h (disable/enable the auxiliary port), A9h (auxiliary interface test),
AAh (self-test: 55h), ABh (keyboard interface test: 00h), ADh/AEh
(disable/enable the keyboard), D0h/D1h (read/write the output port: bit 0
system reset, active low; bit 1 gate A20), D2h/D3h (write the keyboard's /
auxiliary device's output buffer), DDh/DFh (A20 off/on), and F0h-FFh (pulse
the output port bits 3:0 whose command bits are 0: bit 0 is the reset line).
System Control Port A (92h, PS/2 and PIIX): bit 0 fast reset (a 0 to 1
transition), bit 1 A20 gate.

No keyboard or mouse is attached: bytes sent to them are dropped and nothing
arrives from them (the guest's probes time out).  The controller answers at
once, so IBF is always 0.  Power-on state is what firmware leaves: command
byte 45h (keyboard interrupt, system flag, translation), A20 on.
"""

from .base import Device, NoIrq


class I8042(Device):
    """The 8042 at 60h (data) and 64h (status/command).  ``irq1`` and
    ``irq12`` are the keyboard's and auxiliary device's interrupt lines;
    ``on_reset()`` is called when the guest pulses the reset line,
    ``on_a20(enabled)`` when it changes the A20 gate."""

    name = "i8042"
    ports = ((0x60, 1), (0x64, 1))

    def __init__(self, irq1=None, irq12=None, on_reset=None, on_a20=None):
        self.irq1 = irq1 if irq1 is not None else NoIrq()
        self.irq12 = irq12 if irq12 is not None else NoIrq()
        self.on_reset = on_reset
        self.on_a20 = on_a20
        self.reset()

    # --- the output buffer -------------------------------------------------------------

    def _put(self, value, aux=False):
        self.out = value & 0xFF
        self.obf = True
        self.aux = aux
        self._update()

    def _update(self):
        cb = self.ram[0]
        self.irq1.set(self.obf and not self.aux and bool(cb & 0x01))
        self.irq12.set(self.obf and self.aux and bool(cb & 0x02))

    def status(self):
        return ((0x01 if self.obf else 0) | (self.ram[0] & 0x04) | (0x08 if self.last_was_command else 0)
                | 0x10 | (0x20 if self.obf and self.aux else 0))

    # --- the output port -----------------------------------------------------------------

    def _set_output_port(self, value):
        old = self.output_port
        self.output_port = value & 0xFF
        if (old ^ value) & 0x02:
            self._a20(bool(value & 0x02))
        if not value & 0x01:
            self._reset_line()

    def _a20(self, on):
        self.a20 = on
        if self.on_a20 is not None:
            self.on_a20(on)

    def _reset_line(self):
        self.resets += 1
        if self.on_reset is not None:
            self.on_reset()

    # --- ports -----------------------------------------------------------------------------

    def io_read(self, port, size):
        extra = ((1 << (8 * size)) - 1) & ~0xFF
        if port == 0x64:
            return extra | self.status()
        self.obf = False
        self._update()
        return extra | self.out

    def io_write(self, port, size, value):
        value &= 0xFF
        if port == 0x64:
            self.last_was_command = True
            self._command(value)
        else:
            self.last_was_command = False
            self._data(value)

    def _data(self, value):
        pending = self.pending
        self.pending = None
        if pending is None:
            return                      # to the keyboard: none attached
        if 0x60 <= pending <= 0x7F:
            self.ram[pending - 0x60] = value
            self._update()
        elif pending == 0xD1:
            self._set_output_port(value)
        elif pending == 0xD2:
            self._put(value)
        elif pending == 0xD3:
            self._put(value, aux=True)
        # 0xD4: to the auxiliary device: none attached

    def _command(self, cmd):
        self.pending = None
        cb = self.ram[0]
        if 0x20 <= cmd <= 0x3F:
            self._put(self.ram[cmd - 0x20])
        elif 0x60 <= cmd <= 0x7F or cmd in (0xD1, 0xD2, 0xD3, 0xD4):
            self.pending = cmd
        elif cmd == 0xA7:
            self.ram[0] = cb | 0x20
        elif cmd == 0xA8:
            self.ram[0] = cb & ~0x20
        elif cmd == 0xA9 or cmd == 0xAB:
            self._put(0x00)             # interface test: no error
        elif cmd == 0xAA:
            self.ram[0] = cb | 0x04     # the self-test sets the system flag
            self._put(0x55)
        elif cmd == 0xAD:
            self.ram[0] = cb | 0x10
        elif cmd == 0xAE:
            self.ram[0] = cb & ~0x10
        elif cmd == 0xC0:
            self._put(0xA0)             # input port: keyboard not inhibited, colour display
        elif cmd == 0xD0:
            self._put(self.output_port)
        elif cmd == 0xDD:
            self._set_output_port(self.output_port & ~0x02)
        elif cmd == 0xDF:
            self._set_output_port(self.output_port | 0x02)
        elif cmd == 0xE0:
            self._put(0x00)             # test inputs
        elif cmd >= 0xF0:
            if not cmd & 0x01:
                self._reset_line()      # pulse the reset line (output port bit 0)
        self._update()

    # --- state -----------------------------------------------------------------------------

    def reset(self):
        self.ram = bytearray(32)
        self.ram[0] = 0x45
        self.out = 0
        self.obf = False
        self.aux = False
        self.last_was_command = False
        self.pending = None
        self.output_port = 0x03         # not in reset, A20 on
        self.a20 = True
        self.resets = 0
        self._update()

    _FIELDS = ("out", "obf", "aux", "last_was_command", "pending", "output_port", "a20", "resets")

    def get_state(self):
        state = {k: getattr(self, k) for k in self._FIELDS}
        state["ram"] = list(self.ram)
        return state

    def set_state(self, state):
        for k in self._FIELDS:
            setattr(self, k, state[k])
        self.ram = bytearray(state["ram"])
        self._update()


class SystemControlA(Device):
    """System Control Port A at 92h: bit 0 fast reset (``on_reset()`` on a
    0-to-1 write), bit 1 A20 gate (``on_a20(enabled)``); the other bits read
    back as written."""

    name = "port92"
    ports = ((0x92, 1),)

    def __init__(self, on_reset=None, on_a20=None):
        self.on_reset = on_reset
        self.on_a20 = on_a20
        self.reset()

    @property
    def a20(self):
        return bool(self.value & 0x02)

    def io_read(self, port, size):
        return (((1 << (8 * size)) - 1) & ~0xFF) | self.value

    def io_write(self, port, size, value):
        value &= 0xFF
        old = self.value
        self.value = value
        if (old ^ value) & 0x02 and self.on_a20 is not None:
            self.on_a20(bool(value & 0x02))
        if value & 0x01 and not old & 0x01:
            self.resets += 1
            if self.on_reset is not None:
                self.on_reset()

    def reset(self):
        self.value = 0x02               # A20 on, as firmware leaves it
        self.resets = 0

    def get_state(self):
        return {"value": self.value, "resets": self.resets}

    def set_state(self, state):
        self.value = state["value"]
        self.resets = state["resets"]
