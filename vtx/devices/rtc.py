"""The MC146818A real-time clock and CMOS RAM of a PC (ports 70h/71h, IRQ 8).

Facts from the Motorola MC146818A datasheet: the address map (seconds,
minutes, hours and their alarms, day of week, date, month, year at 0-9;
registers A-D at 0Ah-0Dh; RAM up to 7Fh), BCD or binary data (register B DM
bit) and 12- or 24-hour mode (bit 1; in 12-hour mode bit 7 of the hours is
PM), the alarm "don't care" codes (C0h-FFh), the divider (register A DV2-0,
010 = 32.768 kHz time base running; 11x holds the divider in reset and the
first update comes 500 ms after it is released), the periodic rates (RS3-0:
1 and 2 give 256 and 128 Hz, 3-15 give 32768 >> (RS - 1) Hz), UIP (set from
244 us before an update until the 1984 us update cycle is over), the
interrupt flags of register C (PF, AF, UF set whatever the enables; IRQF =
PF.PIE + AF.AIE + UF.UIE; reading C clears them), SET (updates inhibited;
setting it clears UIE) and VRT (register D bit 7).  On a PC, bit 7 of the
index written to port 70h masks NMI; the century is the CMOS byte 32h, and
the firmware leaves the memory sizes in bytes 15h-18h, 30h-31h and 34h-35h.

The century byte is kept with the time here (it reads the time's century
and rolls over with the year; writing it sets the century, 19-99).

Time is the start time given at construction plus the platform's clock; the
registers change at whole seconds of the divider chain, counted from the
clock's 0 (or from 500 ms before the divider's release).  Nothing happens per
second: values and flags are computed from the time when they are looked at.
"""

import calendar
import datetime

from ..errors import ArgumentError
from .base import Device, NoIrq

_NS = 10 ** 9
_UIP_BEFORE = 244_000       # ns before the update
_UPDATE = 1_984_000         # ns the update cycle lasts
_DEFAULT_START = calendar.timegm((2026, 1, 1, 0, 0, 0))
_MAX_T = calendar.timegm((9999, 12, 31, 23, 59, 59))
_MIN_T = calendar.timegm((1900, 1, 1, 0, 0, 0))     # century 19 is the lowest a guest can write
_EPOCH = datetime.datetime(1970, 1, 1)


def _bcd(v):
    return (v // 10) << 4 | v % 10


def _unbcd(v):
    return (v >> 4) * 10 + (v & 0xF)


class CmosRtc(Device):
    """The RTC at ports 70h (index, bit 7 = NMI mask) and 71h (data).

    ``start``: the time at the clock's 0, as seconds since 1970 (UTC) or a
    :class:`datetime.datetime` (naive means UTC); default 2026-01-01 00:00:00
    (pass ``time.time()`` for wall-clock use).  ``irq`` is IRQ 8."""

    name = "rtc"
    ports = ((0x70, 2),)

    def __init__(self, irq=None, clock=None, start=None):
        self.irq = irq if irq is not None else NoIrq()
        self.clock = clock
        if start is None:
            start = _DEFAULT_START
        elif isinstance(start, datetime.datetime):
            if start.tzinfo is None:
                start = start.replace(tzinfo=datetime.timezone.utc)
            start = start.timestamp()
        self.ram = bytearray(128)
        self.index = 0
        self.nmi_masked = False
        self.reg_a = 0x26           # 32.768 kHz time base, 1024 Hz periodic rate
        self.reg_b = 0x02           # 24-hour, BCD
        self.epoch = int(start)     # the time at ns ``phase`` (a second boundary)
        self.phase = 0
        self.frozen = None          # the time while updates are inhibited
        self.dow_offset = 0
        self.flags = 0              # PF, AF, UF (register C bits 6:4)
        # Flags are computed from here on (the update that made ``start``
        # the time at the clock's 0 sets no UF).
        self.synced = max(self._now(), _UPDATE)

    # --- time ------------------------------------------------------------------------------

    def _now(self):
        return self.clock.now_ns() if self.clock is not None else 0

    def _running(self):
        return (self.reg_a >> 4) & 7 == 2 and not self.reg_b & 0x80

    def time_at(self, ns):
        """The RTC's time (seconds since 1970) at ``ns``."""
        if self.frozen is not None:
            return self.frozen
        return self.epoch + (ns - self.phase) // _NS

    def _freeze(self, ns):
        if self.frozen is None:
            self.frozen = self.time_at(ns)

    def _thaw(self, ns, new_phase=None):
        if self.frozen is not None:
            if new_phase is not None:
                self.phase = new_phase
            self.epoch = self.frozen - (ns - self.phase) // _NS
            self.frozen = None

    def _fields(self, t=None):
        """(year, month, day, hours, minutes, seconds, weekday 1-7 from Sunday)."""
        if t is None:
            t = self.time_at(self._now())
        t = min(max(t, _MIN_T), _MAX_T)
        d = _EPOCH + datetime.timedelta(seconds=t)
        dow = (d.isoweekday() % 7 + self.dow_offset) % 7 + 1
        return d.year, d.month, d.day, d.hour, d.minute, d.second, dow

    # --- flags ------------------------------------------------------------------------------

    def _period_units(self):
        """The periodic interrupt's period in 1/32768 s, or None (RS = 0)."""
        rs = self.reg_a & 0x0F
        if rs == 0:
            return None
        if rs < 3:
            rs += 7
        return 1 << (rs - 1)

    def _edges(self, a, b, units):
        """Periodic edges in the time interval (a, b] (ns)."""
        step = units * _NS
        return (b - self.phase) * 32768 // step - (a - self.phase) * 32768 // step

    def _sync(self, now):
        """Set the flags of what happened between the last look and ``now``."""
        last = self.synced
        if now <= last:
            return
        self.synced = now
        if (self.reg_a >> 4) & 7 != 2:
            return
        units = self._period_units()
        if units is not None and self._edges(last, now, units):
            self.flags |= 0x40
        if self.frozen is None:
            # Update cycles end 1984 us after each second boundary.
            first = self.time_at(last - _UPDATE) + 1
            end = self.time_at(now - _UPDATE)
            if end >= first:
                self.flags |= 0x10
                if not self.flags & 0x20:
                    for t in range(max(first, end - 86400), end + 1):
                        if self._alarm_matches(t):
                            self.flags |= 0x20
                            break

    def _alarm_matches(self, t):
        _, _, _, h, m, s, _ = self._fields(t)
        for reg, value in ((1, s), (3, m), (5, h)):
            a = self.ram[reg]
            if a >= 0xC0:
                continue
            if self._encode(reg - 1, value) != a:
                return False
        return True

    def _irqf(self):
        return bool(self.flags & self.reg_b & 0x70)

    def _update_irq(self):
        self.irq.set(self._irqf())

    def next_deadline(self):
        """The next time a flag whose interrupt is enabled will be set, while
        IRQF is clear."""
        if self._irqf() or (self.reg_a >> 4) & 7 != 2:
            return None
        b = self.reg_b
        best = None
        units = self._period_units()
        if b & 0x40 and units is not None:
            step = units * _NS
            k = (self.synced - self.phase) * 32768 // step + 1
            best = self.phase + -(-k * step // 32768)
        if b & 0x30 and self.frozen is None:
            # The end of the next update cycle after ``synced``.
            n = (self.synced - _UPDATE - self.phase) // _NS + 1
            t = self.phase + n * _NS + _UPDATE
            if b & 0x10 or self._alarm_matches(self.time_at(t - _UPDATE)):
                best = t if best is None else min(best, t)
            elif b & 0x20 and best is None:
                best = t            # look again each second for the alarm
        return best

    def advance(self, now_ns):
        self._sync(now_ns)
        self._update_irq()

    # --- register formats ---------------------------------------------------------------------

    def _encode(self, reg, value):
        """A time value as register ``reg`` shows it (BCD/binary, 12/24 h)."""
        b = self.reg_b
        pm = 0
        if reg == 4 and not b & 0x02:
            pm = 0x80 if value >= 12 else 0
            value = value % 12 or 12
        if not b & 0x04:
            value = _bcd(value)
        return value | pm

    def _decode(self, reg, raw):
        b = self.reg_b
        pm = False
        if reg == 4 and not b & 0x02:
            pm = bool(raw & 0x80)
            raw &= 0x7F
        value = raw if b & 0x04 else _unbcd(raw)
        if reg == 4 and not b & 0x02:
            value = value % 12 + (12 if pm else 0)
        return value

    def _write_time(self, reg, raw):
        now = self._now()
        y, mo, d, h, mi, s, dow = self._fields()
        v = self._decode(reg, raw)
        if reg == 6:
            self.dow_offset = (self.dow_offset + (v - dow)) % 7
            return
        if reg == 0:
            s = v % 60
        elif reg == 2:
            mi = v % 60
        elif reg == 4:
            h = v % 24
        elif reg == 7:
            d = v
        elif reg == 8:
            mo = min(max(v, 1), 12)
        elif reg == 9:
            y = y - y % 100 + v % 100
        elif reg == 0x32:
            y = min(max(v, 19), 99) * 100 + y % 100
        d = min(max(d, 1), calendar.monthrange(y, mo)[1])
        dow_before = dow
        t = calendar.timegm((y, mo, d, h, mi, s))
        if self.frozen is not None:
            self.frozen = t
        else:
            self.epoch = t - (now - self.phase) // _NS
        # The day of week is a register of its own: keep it as written.
        self.dow_offset = (self.dow_offset + dow_before - self._fields()[6]) % 7

    # --- ports ----------------------------------------------------------------------------------

    def io_read(self, port, size):
        extra = ((1 << (8 * size)) - 1) & ~0xFF
        if port == 0x70:
            return extra | 0xFF     # the index register is write-only
        return extra | self._read(self.index)

    def io_write(self, port, size, value):
        value &= 0xFF
        if port == 0x70:
            self.index = value & 0x7F
            self.nmi_masked = bool(value & 0x80)
            return
        self._write(self.index, value)

    def _read(self, reg):
        now = self._now()
        self._sync(now)
        if reg in (0, 2, 4, 6, 7, 8, 9, 0x32):
            y, mo, d, h, mi, s, dow = self._fields()
            value = {0: s, 2: mi, 4: h, 6: dow, 7: d, 8: mo, 9: y % 100, 0x32: y // 100}[reg]
            return self._encode(reg, value)
        if reg == 0x0A:
            uip = 0
            if self._running():
                frac = (now - self.phase) % _NS
                if frac >= _NS - _UIP_BEFORE or frac < _UPDATE:
                    uip = 0x80
            return self.reg_a | uip
        if reg == 0x0B:
            return self.reg_b
        if reg == 0x0C:
            value = self.flags | (0x80 if self._irqf() else 0)
            self.flags = 0
            self._update_irq()
            return value
        if reg == 0x0D:
            return 0x80             # VRT: the RAM and time are valid
        return self.ram[reg]

    def _write(self, reg, value):
        now = self._now()
        self._sync(now)
        if reg in (0, 2, 4, 6, 7, 8, 9, 0x32):
            self._write_time(reg, value)
        elif reg == 0x0A:
            old_dv = (self.reg_a >> 4) & 7
            self.reg_a = value & 0x7F
            dv = (value >> 4) & 7
            if dv != 2:
                self._freeze(now)
            elif old_dv != 2 and not self.reg_b & 0x80:
                # The divider leaves reset: the first update 500 ms later.
                self._thaw(now, new_phase=now - _NS // 2)
        elif reg == 0x0B:
            if value & 0x80:
                value &= ~0x10      # SET clears UIE
                self._freeze(now)
            self.reg_b = value
            if not value & 0x80 and (self.reg_a >> 4) & 7 == 2:
                self._thaw(now)
        elif reg in (0x0C, 0x0D):
            pass                    # read only
        else:
            self.ram[reg] = value
        self._update_irq()

    # --- the platform's side ----------------------------------------------------------------------

    def set_memory_size(self, size):
        """Leave the memory size of ``size`` bytes in the CMOS bytes where a
        PC firmware does: 15h-16h base memory in KB (at most 640), 17h-18h
        and 30h-31h memory above 1 MB in KB (at most FFFFh), 34h-35h memory
        above 16 MB in 64 KB units (at most FFFFh)."""
        if not isinstance(size, int) or size < 0:
            raise ArgumentError(f"memory size must be a non-negative int of bytes, not {size!r}")
        base = min(640, size >> 10)
        ext = min(0xFFFF, max(0, size - (1 << 20)) >> 10)
        high = min(0xFFFF, max(0, size - (16 << 20)) >> 16)
        for reg, v in ((0x15, base), (0x17, ext), (0x30, ext), (0x34, high)):
            self.ram[reg] = v & 0xFF
            self.ram[reg + 1] = v >> 8

    # --- state ------------------------------------------------------------------------------------

    def reset(self):
        """The RESET pin (the machine's reset; the clock runs on its battery):
        PIE, AIE, UIE and SQWE cleared, the flags cleared; time and RAM kept."""
        self._sync(self._now())
        self.reg_b &= ~0x78
        self.flags = 0
        self._update_irq()

    _FIELDS = ("index", "nmi_masked", "reg_a", "reg_b", "epoch", "phase", "frozen", "dow_offset",
               "flags", "synced")

    def get_state(self):
        state = {k: getattr(self, k) for k in self._FIELDS}
        state["ram"] = list(self.ram)
        return state

    def set_state(self, state):
        for k in self._FIELDS:
            setattr(self, k, state[k])
        self.ram = bytearray(state["ram"])
        self._update_irq()
