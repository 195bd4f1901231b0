"""The I/O APIC: 24 interrupt inputs turned into messages to the local APICs.

Intel 82093AA I/O Advanced Programmable Interrupt Controller (IOAPIC)
datasheet (order number 290566-001, May 1996); section numbers are its.

Two registers in memory (3.0): IOREGSEL at base + 0x00 selects a register,
IOWIN at base + 0x10 reads or writes it.  Both are 32-bit registers; the model
decodes IOREGSEL at any size up to 4 bytes at +0x00 (its bits 7:0 are the
address) and IOWIN only as an aligned 32-bit access (other sizes and offsets:
reads 0, writes ignored).  The indirect registers (3.2): IOAPICID (0x00),
IOAPICVER (0x01, 0x00170011: 24 entries, version 0x11), IOAPICARB (0x02) and
the redirection table (0x10-0x3F, two 32-bit halves per entry).  Other
addresses read 0 and ignore writes.

Each message goes out during :meth:`IoApic.set_irq` (or the EOI or unmask
that releases it), so the delivery status bit (bit 12) always reads 0 (idle).
The destination field is the 8 bits 63:56 in both destination modes (the
82093AA decodes only bits 59:56 in physical mode; later I/O APICs use all 8,
as the xAPIC does).  Delivery modes (3.2.4): fixed and lowest priority go to
the local APICs' IRR through the :class:`~vtx.devices.lapic.ApicBus`; NMI and
INIT to their processors; SMI and the reserved modes are ignored (no SMM);
ExtINT calls each target's ``deliver_extint()``, whose ``on_extint`` callback
tells the platform to take the vector from the 8259 PIC.
"""

from ..errors import ArgumentError
from .base import Device
from .lapic import DM_EXTINT, DM_FIXED, DM_INIT, DM_LOWEST, DM_NMI

DEFAULT_BASE = 0xFEC00000
IOREGSEL = 0x00
IOWIN = 0x10

IOAPICID = 0x00
IOAPICVER = 0x01
IOAPICARB = 0x02
IOREDTBL = 0x10

NUM_PINS = 24
VERSION_VALUE = 0x00170011     # max redirection entry 23 (bits 23:16), version 0x11

# Redirection entry, low half (3.2.4)
RTE_MASK = 1 << 16
RTE_LEVEL = 1 << 15            # trigger mode: 1 = level
RTE_REMOTE_IRR = 1 << 14       # read-only
RTE_POLARITY_LOW = 1 << 13     # 1 = active low
RTE_LOGICAL = 1 << 11
RTE_LOW_WRITABLE = 0x1AFFF     # vector, mode, dest mode, polarity, trigger, mask
RTE_HIGH_WRITABLE = 0xFF000000  # destination 63:56


class IoApic(Device):
    """An 82093AA I/O APIC at ``base``.  ``bus`` is the
    :class:`~vtx.devices.lapic.ApicBus` its messages go to (``ApicBus.add_ioapic``
    sets it); ``clock`` is accepted like every device's and not needed (the
    I/O APIC has no timer)."""

    name = "ioapic"

    def __init__(self, clock=None, base=DEFAULT_BASE, ioapic_id=0, bus=None):
        if isinstance(base, bool) or not isinstance(base, int) or base & 0xFF or base < 0:
            raise ArgumentError(f"IoApic base must be a 256-byte aligned address, not {base!r}")
        if (isinstance(ioapic_id, bool) or not isinstance(ioapic_id, int)
                or not 0 <= ioapic_id <= 15):
            raise ArgumentError(f"ioapic_id must be an int in [0, 15], not {ioapic_id!r}")
        self.clock = clock
        self.base = base
        self.initial_id = ioapic_id
        self.bus = bus
        self.reset()

    def reset(self):
        """After RESET (3.2): every entry masked, the ID the platform gave."""
        self.ioregsel = 0
        self.id = self.initial_id
        self.arb_id = self.initial_id
        self.redtbl = [[RTE_MASK, 0] for _ in range(NUM_PINS)]
        self.pins = [False] * NUM_PINS

    def get_state(self):
        return {"device": self.name, "ioregsel": self.ioregsel, "id": self.id,
                "arb_id": self.arb_id, "redtbl": [list(e) for e in self.redtbl],
                "pins": list(self.pins)}

    def set_state(self, state):
        if not isinstance(state, dict) or state.get("device") != self.name:
            raise ArgumentError("set_state: not a saved ioapic state (missing 'device': 'ioapic')")
        for k in ("ioregsel", "id", "arb_id", "redtbl", "pins"):
            if k not in state:
                raise ArgumentError(f"set_state: saved ioapic state lacks {k}")
        if len(state["redtbl"]) != NUM_PINS or len(state["pins"]) != NUM_PINS:
            raise ArgumentError(f"set_state: saved ioapic state must have {NUM_PINS} entries")
        self.ioregsel = state["ioregsel"]
        self.id = state["id"]
        self.arb_id = state["arb_id"]
        self.redtbl = [[int(lo), int(hi)] for lo, hi in state["redtbl"]]
        self.pins = [bool(p) for p in state["pins"]]

    # ------------------------------------------------------------ registers

    def read_register(self, index):
        """The indirect register ``index`` (what IOWIN reads)."""
        if index == IOAPICID:
            return self.id << 24
        if index == IOAPICVER:
            return VERSION_VALUE
        if index == IOAPICARB:
            return self.arb_id << 24
        if IOREDTBL <= index < IOREDTBL + 2 * NUM_PINS:
            return self.redtbl[(index - IOREDTBL) >> 1][index & 1]
        return 0

    def write_register(self, index, value):
        """Write the indirect register ``index`` (what IOWIN writes)."""
        value &= 0xFFFFFFFF
        if index == IOAPICID:
            self.id = (value >> 24) & 0xF
            # The arbitration ID is loaded from the ID when the ID is written (3.2.3).
            self.arb_id = self.id
        elif IOREDTBL <= index < IOREDTBL + 2 * NUM_PINS:
            pin = (index - IOREDTBL) >> 1
            entry = self.redtbl[pin]
            if index & 1:
                entry[1] = value & RTE_HIGH_WRITABLE
            else:
                entry[0] = (entry[0] & RTE_REMOTE_IRR) | (value & RTE_LOW_WRITABLE)
                if not entry[0] & RTE_LEVEL:
                    entry[0] &= ~RTE_REMOTE_IRR     # remote IRR is for level entries
                # An asserted level input goes out as soon as the entry allows
                # it (unmasked, level, the right polarity).
                self._level_service(pin)
        # IOAPICVER, IOAPICARB and unknown addresses are read-only / nothing.

    def mmio_read(self, addr, size):
        off = addr - self.base if self.base <= addr < self.base + 0x100 else addr & 0xFF
        if off == IOREGSEL and size in (1, 2, 4):
            return self.ioregsel & ((1 << (8 * size)) - 1)
        if off == IOWIN and size == 4:
            return self.read_register(self.ioregsel)
        return 0

    def mmio_write(self, addr, size, value):
        off = addr - self.base if self.base <= addr < self.base + 0x100 else addr & 0xFF
        if off == IOREGSEL and size in (1, 2, 4):
            self.ioregsel = value & 0xFF
        elif off == IOWIN and size == 4:
            self.write_register(self.ioregsel, value)

    # ------------------------------------------------------------ inputs

    def _active(self, pin):
        return self.pins[pin] != bool(self.redtbl[pin][0] & RTE_POLARITY_LOW)

    def set_irq(self, line, level):
        """Input ``line`` (0-23) goes to ``level``.  An edge entry sends on the
        change to active (a masked edge is lost); a level entry sends while
        the input is active and unmasked and its remote IRR is clear, and sets
        remote IRR until the local APIC's EOI (3.2.4)."""
        if isinstance(line, bool) or not isinstance(line, int) or not 0 <= line < NUM_PINS:
            raise ArgumentError(f"set_irq: line must be an int in [0, {NUM_PINS - 1}], "
                                f"not {line!r}")
        was = self._active(line)
        self.pins[line] = bool(level)
        lo = self.redtbl[line][0]
        if lo & RTE_LEVEL and (lo >> 8) & 7 in (DM_FIXED, DM_LOWEST):
            self._level_service(line)
        elif self._active(line) and not was and not lo & RTE_MASK:
            self._send(line, "edge")

    def _level_service(self, pin):
        # Remote IRR only means something for fixed and lowest-priority
        # messages, which a local APIC's EOI answers; the other modes take
        # the rising edge whatever the trigger mode.
        lo = self.redtbl[pin][0]
        if (lo & RTE_LEVEL and (lo >> 8) & 7 in (DM_FIXED, DM_LOWEST)
                and not lo & (RTE_MASK | RTE_REMOTE_IRR) and self._active(pin)):
            self.redtbl[pin][0] |= RTE_REMOTE_IRR
            self._send(pin, "level")

    def eoi(self, vector):
        """The EOI of a level-triggered ``vector`` by a local APIC: clears the
        remote IRR of the level entries with that vector (3.2.4); an input
        still active sends again."""
        for pin in range(NUM_PINS):
            lo = self.redtbl[pin][0]
            if lo & RTE_REMOTE_IRR and lo & 0xFF == vector:
                self.redtbl[pin][0] = lo & ~RTE_REMOTE_IRR
                self._level_service(pin)

    def _send(self, pin, trigger):
        lo, hi = self.redtbl[pin]
        mode = (lo >> 8) & 7
        if self.bus is None or mode not in (DM_FIXED, DM_LOWEST, DM_NMI, DM_INIT, DM_EXTINT):
            return
        self.bus.deliver(1 if lo & RTE_LOGICAL else 0, hi >> 24, mode, lo & 0xFF, trigger)
