"""What every device of :mod:`vtx.devices` is: registers behind ports or a
guest-physical range, time, interrupt lines and saved state.

A device is a plain Python object.  The platform (``vtx.platform``) routes
the guest's port I/O and MMIO accesses to it, advances its time, and asks it
for its state when the VM is saved.  A user's own device subclasses
:class:`Device` and overrides what it has: most need only ``io_read`` /
``io_write`` or ``mmio_read`` / ``mmio_write``.

Time is virtual: the platform's :class:`Clock` says what ``now`` is in
nanoseconds, derived from the guest instructions retired by default (so a run
repeats exactly), and a device that needs to act at a given time (a timer)
says when through :meth:`Device.next_deadline`; the platform stops the guest
at that time and calls :meth:`Device.advance`.
"""

import time


class Clock:
    """The platform's time, in nanoseconds since the machine was made."""

    def now_ns(self):
        raise NotImplementedError


class InstructionClock(Clock):
    """Deterministic time: ``ns_per_instruction`` nanoseconds per guest
    instruction retired (1 by default: the model's TSC runs at 1 GHz, one tick
    per instruction).  ``source`` is a callable that returns the instructions
    retired so far (the platform passes the vCPUs' counter)."""

    def __init__(self, source, ns_per_instruction=1):
        self._source = source
        self.ns_per_instruction = ns_per_instruction
        self._offset = 0

    def now_ns(self):
        return self._source() * self.ns_per_instruction + self._offset

    def skip_to(self, ns):
        """Move time forward to ``ns`` without instructions (an idle
        processor in the HLT state waits for the next timer this way)."""
        now = self.now_ns()
        if ns > now:
            self._offset += ns - now


class WallClock(Clock):
    """Host wall-clock time (not deterministic: for interactive use)."""

    def __init__(self):
        self._t0 = time.monotonic_ns()

    def now_ns(self):
        return time.monotonic_ns() - self._t0

    def skip_to(self, ns):
        """A halted guest waits for real: sleep until ``ns``."""
        wait = ns - self.now_ns()
        if wait > 0:
            time.sleep(wait / 1e9)


class IrqLine:
    """One interrupt request line from a device to an interrupt controller.
    ``router`` is anything with ``set_irq(line, level)`` (the platform's
    router, which forwards to the PIC and the I/O APIC)."""

    __slots__ = ("router", "line", "level")

    def __init__(self, router, line):
        self.router = router
        self.line = line
        self.level = False

    def set(self, level):
        level = bool(level)
        if level != self.level:
            self.level = level
            if self.router is not None:
                self.router.set_irq(self.line, level)

    def raise_(self):
        self.set(True)

    def lower(self):
        self.set(False)

    def pulse(self):
        """An edge: raise then lower (an edge-triggered request)."""
        self.set(True)
        self.set(False)


class NoIrq(IrqLine):
    """A line connected to nothing."""

    def __init__(self):
        super().__init__(None, -1)


class Device:
    """Base class of devices.  Accesses that a device does not implement read
    as all ones and ignore writes, as on a PC bus with nothing decoding the
    address (subclasses override)."""

    #: A short name, used in error messages and saved state.
    name = "device"

    def io_read(self, port, size):
        """An IN of ``size`` bytes (1, 2 or 4) from ``port``: the value."""
        return (1 << (8 * size)) - 1

    def io_write(self, port, size, value):
        """An OUT of ``size`` bytes of ``value`` to ``port``."""

    def mmio_read(self, addr, size):
        """A read of ``size`` bytes (1, 2, 4 or 8) at guest-physical ``addr``."""
        return (1 << (8 * size)) - 1

    def mmio_write(self, addr, size, value):
        """A write of ``size`` bytes of ``value`` at guest-physical ``addr``."""

    def next_deadline(self):
        """The time (ns, on the platform's clock) at which :meth:`advance`
        must next be called, or None if the device waits for nothing."""
        return None

    def advance(self, now_ns):
        """Bring the device's time to ``now_ns``: fire what is due."""

    def reset(self):
        """The state after a hardware reset."""

    def get_state(self):
        """The device's state as JSON-able data (ints, strings, lists,
        dicts; bytes as lists of ints) for a snapshot."""
        return {}

    def set_state(self, state):
        """Restore what :meth:`get_state` returned."""
