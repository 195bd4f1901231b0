"""The 8254 programmable interval timer of a PC, and port 61h.

Facts from the Intel 8254 datasheet (order no. 231164): the control word
(SC1 SC0 RW1 RW0 M2 M1 M0 BCD), modes 0-5, the counter latch command, the
read-back command and its status byte (OUTPUT, NULL COUNT, RW, mode, BCD),
the gate's role in each mode, and when a written count reaches the counting
element (CE): on the CLK pulse after the write (modes 0, 2, 3, 4), or after a
gate trigger (modes 1, 5).  On a PC the counters are clocked at 1.193182 MHz,
the gates of counters 0 and 1 are tied high, counter 0's OUT is IRQ0, and
counter 2's gate and OUT are bits 0 and 5 of port 61h, the "NMI Status and
Control" register (PIIX datasheet: bit 0 TIM2 gate, bit 1 speaker data
enable, bits 2-3 SERR#/IOCHK# NMI enables, bit 4 refresh cycle toggle, bit 5
OUT2, bits 6-7 NMI sources, read only).

Nothing happens per tick: a counter keeps the CLK pulse at which its count was
loaded and the pulses it has counted, and its value and OUT at a time are
computed from them.  The CLK pulses up to ``ns`` nanoseconds of the
platform's clock are ``ns * 1193182 // 10**9`` (exact integers, no drift).
"""

from .base import Device, NoIrq

PIT_HZ = 1193182
_NS = 10 ** 9
# The refresh request toggles every 18 PIT clocks (15.085 us): the DRAM
# refresh period that the PC BIOS programs into counter 1.
_REFRESH_CLOCKS = 18


def ticks(ns):
    """The CLK pulses of the 8254 up to ``ns``."""
    return ns * PIT_HZ // _NS


def tick_time(t):
    """The first time (ns) at which CLK pulse ``t`` has happened."""
    return -(-t * _NS // PIT_HZ)


def _to_bcd(v):
    return (v % 10) | (v // 10 % 10) << 4 | (v // 100 % 10) << 8 | (v // 1000 % 10) << 12


def _from_bcd(v):
    return (v & 0xF) + 10 * ((v >> 4) & 0xF) + 100 * ((v >> 8) & 0xF) + 1000 * ((v >> 12) & 0xF)


class _Counter:
    _FIELDS = ("mode", "mode_bits", "rw", "bcd", "cr", "n", "write_hi", "write_lsb", "read_hi",
               "latch", "latch_hi", "status", "gate", "armed", "load", "start", "base", "running",
               "pre_ce", "pre_out", "frozen_ce", "next_n", "next_at", "null_until", "has_count")

    def __init__(self, gate):
        self.gate = gate
        self.reset()

    def reset(self):
        # The power-on state is undefined in the datasheet; this is mode 0
        # after its count expired: OUT high, so that the first control word
        # of a guest makes no IRQ0 edge (mode 2/3 start with OUT high too).
        self.mode = 0
        self.mode_bits = 0
        self.rw = 3
        self.bcd = False
        self.cr = 0
        self.n = 0x10000
        self.write_hi = False       # rw 3: the LSB was written, the MSB comes next
        self.write_lsb = 0
        self.read_hi = False        # rw 3: the next read returns the MSB
        self.latch = None           # the output latch after a latch command
        self.latch_hi = False
        self.status = None          # the status latched by a read-back
        self.armed = False          # a count is loaded (or a gate trigger came)
        self.load = 0               # the CLK pulse that loads the CE
        self.start = 0              # the CLK pulse the current counting run starts after
        self.base = 0               # pulses counted before the current run
        self.running = False
        self.pre_ce = 0             # the CE and OUT before the load
        self.pre_out = True
        self.frozen_ce = 0          # modes 2/3 with the gate low
        self.next_n = None          # modes 2/3: a count that loads at the end of the period
        self.next_at = 0
        self.null_until = None      # NULL COUNT is 1 before this pulse (None: until a load)
        self.has_count = False      # a count was written since the control word

    # --- the counting element ---------------------------------------------------------

    def _modulus(self):
        return 10000 if self.bcd else 0x10000

    def _count_of(self, value):
        """The initial count N of a written value (0 is the largest)."""
        if self.bcd:
            value = _from_bcd(value)
        return value or self._modulus()

    def _settle(self, t):
        """Apply a count written in modes 2/3 whose period has ended."""
        if self.next_n is not None and t >= self.next_at:
            self.n = self.next_n
            self.load = self.start = self.next_at
            self.base = 0
            self.next_n = None

    def counted(self, t):
        if self.running and t > self.start:
            return self.base + t - self.start
        return self.base

    def at(self, t):
        """(CE, OUT) at CLK pulse ``t``."""
        self._settle(t)
        mode = self.mode
        if not self.armed or t < self.load:
            return self.pre_ce, self.pre_out
        if mode in (2, 3) and not self.gate:
            return self.frozen_ce, True
        c = self.counted(t)
        n = self.n
        if mode == 0 or mode == 1:
            return (n - c) % self._modulus(), c >= n
        if mode == 2:
            p = c % n
            return n - p, p != n - 1
        if mode == 3:
            p = c % n
            high = (n + 1) // 2
            even = n & ~1
            if p < high:
                return even - 2 * p, True
            return even - 2 * (p - high), False
        return (n - c) % self._modulus(), c != n        # modes 4 and 5

    def next_rise(self, after):
        """The first CLK pulse after ``after`` at which OUT goes from low to
        high, or None (while nothing but a gate change would make one)."""
        self._settle(after)
        if not self.armed or not self.running:
            return None
        n = self.n
        t0 = self.start - self.base         # the pulse at which counted() would be 0
        c = self.counted(after) if after >= self.load else -1
        mode = self.mode
        if mode in (0, 1):                  # OUT goes high when the CE reaches 0
            return t0 + n if c < n else None
        if mode in (4, 5):                  # after the one-pulse strobe at 0
            return t0 + n + 1 if c < n + 1 else None
        if n == 1:                          # modes 2/3 with count 1: OUT never rises
            return None
        # Modes 2/3: OUT rises at each reload, every N pulses.  A count
        # written meanwhile loads at one of these reloads, so the first one
        # after ``after`` is the same.
        return t0 + (c // n + 1) * n if c >= 0 else t0 + n

    def null_count(self, t):
        return self.null_until is None or t < self.null_until

    # --- programming ----------------------------------------------------------------------

    def control(self, value, t):
        ce, _ = self.at(t)
        self.rw = (value >> 4) & 3
        self.mode_bits = (value >> 1) & 7
        self.mode = self.mode_bits & 3 if self.mode_bits & 2 else self.mode_bits
        self.bcd = bool(value & 1)
        self.write_hi = False
        self.read_hi = False
        self.latch = None
        self.status = None
        self.armed = False
        self.running = False
        self.next_n = None
        self.pre_ce = ce
        self.pre_out = self.mode != 0       # mode 0: OUT low; the others: OUT high
        self.null_until = None
        self.has_count = False

    def write(self, value, t):
        if self.rw == 1:
            count = value
        elif self.rw == 2:
            count = value << 8
        elif not self.write_hi:
            self.write_lsb = value
            self.write_hi = True
            return
        else:
            count = self.write_lsb | value << 8
            self.write_hi = False
        self.cr = count
        n = self._count_of(count)
        mode = self.mode
        self.has_count = True
        if mode in (1, 5):
            self.null_until = None          # loaded at the next trigger
            return
        if mode in (2, 3) and self.armed:
            # Loaded at the end of the current period.
            self._settle(t)
            if self.gate:
                c = self.counted(t) if t >= self.load else -1
                p = c % self.n if c >= 0 else -1
                at = (self.start - self.base) + (c - p) + self.n if c >= 0 else self.load
                self.next_n = n
                self.next_at = at
                self.null_until = at
            else:
                self.n = n
                self.null_until = None
            return
        ce, _ = self.at(t)
        self.pre_ce = ce
        self.pre_out = False if mode == 0 else True
        self.n = n
        self._arm(t + 1)
        if mode == 2 or mode == 3:
            if not self.gate:
                self.running = False
                self.frozen_ce = ce

    def _arm(self, load):
        self.armed = True
        self.load = load
        self.start = load
        self.base = 0
        self.running = self.gate or self.mode in (1, 5)
        self.null_until = load
        self.next_n = None

    def set_gate(self, level, t):
        level = bool(level)
        if level == self.gate:
            return
        mode = self.mode
        if not level:
            if mode in (0, 4) and self.armed:
                self.base = self.counted(t) if t >= self.load else 0
                self.running = False
            if mode in (2, 3):
                self.frozen_ce, _ = self.at(t)
                self.running = False
            self.gate = False
            return
        self.gate = True
        if mode in (0, 4):
            if self.armed:
                self.start = max(t, self.load)
                self.running = True
        elif mode in (1, 5) and self.has_count:
            # A trigger: the count is loaded on the next CLK pulse.
            ce, out = self.at(t)
            self.pre_ce = ce
            self.pre_out = True if mode == 5 else out
            self.n = self._count_of(self.cr)
            self._arm(t + 1)
        else:
            # Modes 2 and 3: the rising gate reloads the count.
            if self.has_count:
                self.pre_ce = self.frozen_ce
                self.pre_out = True
                self._arm(t + 1)

    # --- reading --------------------------------------------------------------------------

    def latch_count(self, t):
        if self.latch is None:
            ce, _ = self.at(t)
            self.latch = ce
            self.latch_hi = False

    def latch_status(self, t):
        if self.status is None:
            _, out = self.at(t)
            self.status = ((0x80 if out else 0) | (0x40 if self.null_count(t) else 0)
                           | self.rw << 4 | self.mode_bits << 1 | int(self.bcd))

    def read(self, t):
        if self.status is not None:
            v = self.status
            self.status = None
            return v
        if self.latch is not None:
            value = self.latch
            if self.bcd:
                value = _to_bcd(value)
            if self.rw == 3 and not self.latch_hi:
                self.latch_hi = True
                return value & 0xFF
            self.latch = None
            return (value >> 8) & 0xFF if self.rw in (2, 3) else value & 0xFF
        ce, _ = self.at(t)
        value = _to_bcd(ce) if self.bcd else ce
        if self.rw == 1:
            return value & 0xFF
        if self.rw == 2:
            return (value >> 8) & 0xFF
        self.read_hi = not self.read_hi
        return (value >> 8) & 0xFF if not self.read_hi else value & 0xFF

    def get_state(self):
        return {k: getattr(self, k) for k in self._FIELDS}

    def set_state(self, state):
        for k in self._FIELDS:
            setattr(self, k, state[k])


class Pit8254(Device):
    """The 8254 at ports 40h-43h and the NMI Status and Control register at
    port 61h.  ``irq`` is counter 0's OUT (IRQ0); ``clock`` the platform's
    clock (None: time stands at 0).

    IRQ0 follows OUT0: every low-to-high transition of OUT0 is an edge on the
    line (an edge-triggered request at the PIC).  :meth:`next_deadline` is the
    time of the next such transition and :meth:`advance` makes the edge; the
    line then stays at OUT0's level."""

    name = "pit"
    ports = ((0x40, 4), (0x61, 1))

    def __init__(self, irq=None, clock=None):
        self.irq = irq if irq is not None else NoIrq()
        self.clock = clock
        self.counters = [_Counter(True), _Counter(True), _Counter(False)]
        self.nmi_sc = 0             # port 61h bits 3:0
        self._done = 0              # CLK pulses up to which OUT0's edges were made
        self.irq.set(True)          # OUT0 is high at power-on (see _Counter.reset)

    def _now(self):
        return ticks(self.clock.now_ns()) if self.clock is not None else 0

    # --- time -------------------------------------------------------------------------------

    def next_deadline(self):
        t = self.counters[0].next_rise(self._done)
        return None if t is None else tick_time(t)

    def advance(self, now_ns):
        self._fire(ticks(now_ns))

    def _fire(self, t):
        c0 = self.counters[0]
        if t < self._done:
            return
        rise = c0.next_rise(self._done)
        self._done = t
        _, out = c0.at(t)
        if rise is not None and rise <= t:
            self.irq.set(False)
            self.irq.set(True)
        self.irq.set(out)

    def out(self, counter):
        """The OUT pin of ``counter`` (0-2) now."""
        return self.counters[counter].at(self._now())[1]

    def count(self, counter):
        """The counting element of ``counter`` (0-2) now (binary)."""
        return self.counters[counter].at(self._now())[0]

    # --- ports ------------------------------------------------------------------------------

    def io_read(self, port, size):
        extra = ((1 << (8 * size)) - 1) & ~0xFF
        t = self._now()
        if port == 0x61:
            c2 = self.counters[2]
            _, out2 = c2.at(t)
            refresh = (t // _REFRESH_CLOCKS) & 1
            return extra | self.nmi_sc | refresh << 4 | (0x20 if out2 else 0)
        if port == 0x43:
            return extra | 0xFF     # the control word register cannot be read
        return extra | self.counters[port - 0x40].read(t)

    def io_write(self, port, size, value):
        value &= 0xFF
        t = self._now()
        self._fire(t)
        if port == 0x61:
            self.nmi_sc = value & 0x0F
            self.counters[2].set_gate(value & 1, t)
        elif port == 0x43:
            sc = value >> 6
            if sc == 3:                             # read-back command
                for i in range(3):
                    if value & (2 << i):
                        if not value & 0x20:
                            self.counters[i].latch_count(t)
                        if not value & 0x10:
                            self.counters[i].latch_status(t)
            elif value & 0x30 == 0:                 # counter latch command
                self.counters[sc].latch_count(t)
            else:
                self.counters[sc].control(value, t)
        else:
            self.counters[port - 0x40].write(value, t)
        if port != 0x61:
            self.irq.set(self.counters[0].at(t)[1])

    # --- state ------------------------------------------------------------------------------

    def reset(self):
        for c in self.counters:
            c.reset()
        self.counters[2].gate = False
        self.nmi_sc = 0
        self._done = self._now()
        self.irq.set(True)

    def get_state(self):
        return {"counters": [c.get_state() for c in self.counters], "nmi_sc": self.nmi_sc,
                "done": self._done}

    def set_state(self, state):
        for c, s in zip(self.counters, state["counters"]):
            c.set_state(s)
        self.nmi_sc = state["nmi_sc"]
        self._done = state["done"]
