"""The two cascaded 8259A programmable interrupt controllers of a PC.

Facts from the Intel 8259A datasheet (order no. 231468): the initialization
words ICW1-ICW4, the operation command words OCW1-OCW3, priorities with
rotation, automatic EOI, special mask mode, poll mode and the IR7 default
(spurious) vector; and from the Intel PIIX/PIIX3 datasheet: the edge/level
control registers ELCR1/ELCR2 at ports 4D0h/4D1h, which replace the ICW1 LTIM
bit on a PC chipset (LTIM is ignored here), with IRQ0, 1, 2, 8 and 13 always
edge triggered (their ELCR bits are reserved and read 0).

The slave's INT output drives the master's IR2 (ICW3 = 04h / 02h on a PC).

Edge-triggered requests: a rising edge latches the IRR bit, which stays set
until the INTA cycle takes it (a request that is raised and lowered at once,
``IrqLine.pulse()``, is kept).  Level-triggered requests (ELCR bit set): the
IRR bit follows the input, so a request that is withdrawn before
:meth:`Pic8259Pair.acknowledge` gives the spurious IR7 vector (IRQ7, or IRQ15
from the slave with the master's IR2 in service), as the datasheet describes.
"""

from .base import Device

# PIIX ELCR1/ELCR2: bits of IRQ0, 1, 2 (ELCR1) and IRQ8, 13 (ELCR2) are reserved.
_ELCR_MASK = (0xF8, 0xDE)


class _Chip:
    """One 8259A."""

    __slots__ = ("irr", "isr", "imr", "levels", "elcr", "vector_base", "icw3", "init_step",
                 "need_icw4", "single", "auto_eoi", "sfnm", "rotate_aeoi", "lowest",
                 "read_isr", "poll", "special_mask", "is_master")

    def __init__(self, is_master):
        self.is_master = is_master
        self.levels = 0
        self.elcr = 0
        self.reset()

    def reset(self):
        self.irr = 0
        self.isr = 0
        self.imr = 0
        self.vector_base = 0
        self.icw3 = 0
        self.init_step = 0          # 0: initialized (or never); 2/3/4: the ICW expected next
        self.need_icw4 = False
        self.single = False
        self.auto_eoi = False
        self.sfnm = False
        self.rotate_aeoi = False
        self.lowest = 7             # the IR with the lowest priority (rotation)
        self.read_isr = False
        self.poll = False
        self.special_mask = False
        # Level-triggered inputs that are high request at once.
        self.irr = self.levels & self.elcr

    # --- priorities ---------------------------------------------------------------

    def _order(self):
        """IR numbers from the highest priority to the lowest."""
        first = (self.lowest + 1) & 7
        return [(first + i) & 7 for i in range(8)]

    def _highest(self, bits):
        if not bits:
            return None
        for ir in self._order():
            if bits & (1 << ir):
                return ir
        return None

    def best_request(self):
        """The IR that INT is raised for, or None: the highest-priority
        unmasked request above every in-service level that blocks it."""
        req = self.irr & ~self.imr & 0xFF
        if not req:
            return None
        blocking = self.isr
        if self.special_mask:
            # Special mask mode: a masked level in service inhibits nothing.
            blocking &= ~self.imr
        if self.is_master and self.sfnm:
            # Special fully nested mode: a slave's later, higher request
            # passes its own in-service cascade input.
            blocking &= ~self.icw3
        for ir in self._order():
            bit = 1 << ir
            if blocking & bit:
                return None
            if req & bit:
                return ir
        return None

    # --- inputs ---------------------------------------------------------------------

    def set_input(self, ir, level):
        bit = 1 << ir
        old = self.levels & bit
        if level:
            self.levels |= bit
            if self.elcr & bit or not old:
                self.irr |= bit
        else:
            self.levels &= ~bit
            if self.elcr & bit:
                self.irr &= ~bit

    # --- INTA -----------------------------------------------------------------------

    def take(self, ir):
        """The INTA cycle for ``ir``: IRR to ISR (or, with AEOI, rotation only)."""
        bit = 1 << ir
        if not self.elcr & bit:
            self.irr &= ~bit
        if self.auto_eoi:
            if self.rotate_aeoi:
                self.lowest = ir
        else:
            self.isr |= bit

    # --- the command port (A0 = 0) and the data port (A0 = 1) --------------------------

    def write_command(self, value):
        if value & 0x10:                        # ICW1
            self.reset()
            self.need_icw4 = bool(value & 0x01)
            self.single = bool(value & 0x02)
            self.init_step = 2
            # The edge sense is reset: an edge-triggered input that is high
            # must go low and high again (8259A datasheet, "Initialization").
            self.irr = self.levels & self.elcr
        elif value & 0x08:                      # OCW3
            if value & 0x04:
                self.poll = True
            if value & 0x02:
                self.read_isr = bool(value & 0x01)
            if value & 0x40:
                self.special_mask = bool(value & 0x20)
        else:                                   # OCW2
            cmd = value >> 5
            level = value & 7
            if cmd == 0b001:                    # non-specific EOI
                ir = self._highest(self.isr)
                if ir is not None:
                    self.isr &= ~(1 << ir)
            elif cmd == 0b011:                  # specific EOI
                self.isr &= ~(1 << level)
            elif cmd == 0b101:                  # rotate on non-specific EOI
                ir = self._highest(self.isr)
                if ir is not None:
                    self.isr &= ~(1 << ir)
                    self.lowest = ir
            elif cmd == 0b100:                  # set rotate in automatic EOI mode
                self.rotate_aeoi = True
            elif cmd == 0b000:                  # clear rotate in automatic EOI mode
                self.rotate_aeoi = False
            elif cmd == 0b111:                  # rotate on specific EOI
                self.isr &= ~(1 << level)
                self.lowest = level
            elif cmd == 0b110:                  # set priority
                self.lowest = level
            # 0b010: no operation

    def write_data(self, value):
        step = self.init_step
        if step == 2:                           # ICW2: T7-T3 of the vector
            self.vector_base = value & 0xF8
            self.init_step = 3 if not self.single else (4 if self.need_icw4 else 0)
        elif step == 3:                         # ICW3
            self.icw3 = value & (0xFF if self.is_master else 0x07)
            self.init_step = 4 if self.need_icw4 else 0
        elif step == 4:                         # ICW4
            self.auto_eoi = bool(value & 0x02)
            self.sfnm = bool(value & 0x10)
            self.init_step = 0
        else:                                   # OCW1
            self.imr = value & 0xFF

    def read_command(self):
        return self.isr if self.read_isr else self.irr

    def get_state(self):
        return {k: (getattr(self, k)) for k in self.__slots__}

    def set_state(self, state):
        for k in self.__slots__:
            setattr(self, k, state[k])


class Pic8259Pair(Device):
    """The master (ports 20h/21h) and slave (A0h/A1h) 8259A and the PIIX ELCR
    (4D0h/4D1h).

    The platform calls :meth:`set_irq` from the interrupt router,
    :meth:`pending` to know whether INTR is asserted, and :meth:`acknowledge`
    for the INTA cycle.  ``on_intr(level)``, if given, is called whenever
    INTR changes (to wake a halted processor)."""

    name = "pic"
    ports = ((0x20, 2), (0xA0, 2), (0x4D0, 2))

    def __init__(self, on_intr=None):
        self.on_intr = on_intr
        self.master = _Chip(True)
        self.slave = _Chip(False)
        self._intr = False

    # --- the lines ------------------------------------------------------------------

    def set_irq(self, line, level):
        """Input ``line`` (0-15) to ``level`` (true: asserted)."""
        if line < 8:
            self.master.set_input(line, level)
        else:
            self.slave.set_input(line - 8, level)
            self._cascade()
        self._update()

    def _cascade(self):
        """The slave's INT output to the master's IR2 (the input named by
        the master's ICW3 on a PC: IR2).  A master in single mode has no slave."""
        if not self.master.single:
            self.master.set_input(2, self.slave.best_request() is not None)

    def _update(self):
        intr = self.master.best_request() is not None
        if intr != self._intr:
            self._intr = intr
            if self.on_intr is not None:
                self.on_intr(intr)

    def pending(self):
        """True while INTR is asserted to the processor."""
        return self._intr

    def acknowledge(self):
        """The INTA cycle: the vector of the highest-priority request, moved
        from IRR to ISR (through the slave when it is the cascade input), or
        the IR7 vector of the chip where the request vanished (spurious)."""
        m = self.master
        ir = m.best_request()
        if ir is None:
            vector = m.vector_base | 7
        else:
            m.take(ir)
            if not m.single and m.icw3 & (1 << ir):
                s = self.slave
                sir = s.best_request()
                if sir is None:
                    vector = s.vector_base | 7
                else:
                    s.take(sir)
                    vector = s.vector_base | sir
                self._cascade()
            else:
                vector = m.vector_base | ir
        self._update()
        return vector

    def irq_in_service(self):
        """ISR of both chips as a 16-bit mask (slave in bits 15:8)."""
        return self.master.isr | (self.slave.isr << 8)

    # --- ports ----------------------------------------------------------------------

    def _poll(self, chip):
        """Poll command: the read acts as INTA; bit 7 = a request, bits 2:0 its level."""
        chip.poll = False
        ir = chip.best_request()
        if ir is None:
            return 0
        chip.take(ir)
        if chip is self.slave:
            self._cascade()
        elif not chip.single and chip.icw3 & (1 << ir):
            # Polling the master for a cascade input: the slave's request stays.
            pass
        self._update()
        return 0x80 | ir

    def io_read(self, port, size):
        value = self._read8(port)
        if size > 1:
            value |= ((1 << (8 * size)) - 1) & ~0xFF
            if port == 0x4D0:
                value = (value & ~0xFF00) | (self.slave.elcr << 8)
        return value

    def _read8(self, port):
        if port in (0x4D0, 0x4D1):
            return (self.master if port == 0x4D0 else self.slave).elcr
        chip = self.master if port < 0xA0 else self.slave
        if port & 1:
            if chip.poll:
                return self._poll(chip)
            return chip.imr
        if chip.poll:
            return self._poll(chip)
        return chip.read_command()

    def io_write(self, port, size, value):
        self._write8(port, value & 0xFF)
        if size > 1 and port == 0x4D0:
            self._write8(0x4D1, (value >> 8) & 0xFF)

    def _write8(self, port, value):
        if port in (0x4D0, 0x4D1):
            slave = port == 0x4D1
            chip = self.slave if slave else self.master
            chip.elcr = value & _ELCR_MASK[slave]
            # An input switched to level mode requests while it is high; one
            # switched to edge mode keeps what it latched.
            chip.irr |= chip.levels & chip.elcr
        else:
            chip = self.master if port < 0xA0 else self.slave
            if port & 1:
                chip.write_data(value)
            else:
                chip.write_command(value)
        self._cascade()
        self._update()

    # --- state ----------------------------------------------------------------------

    def reset(self):
        for chip in (self.master, self.slave):
            chip.elcr = 0
            chip.reset()
        self._cascade()
        self._update()

    def get_state(self):
        return {"master": self.master.get_state(), "slave": self.slave.get_state(), "intr": self._intr}

    def set_state(self, state):
        self.master.set_state(state["master"])
        self.slave.set_state(state["slave"])
        self._intr = bool(state["intr"])
