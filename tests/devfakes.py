"""A clock whose time the test sets, and an interrupt router that records."""

from vtx.devices.base import Clock


class FakeClock(Clock):
    def __init__(self, ns=0):
        self.ns = ns

    def now_ns(self):
        return self.ns


class Router:
    """Records every set_irq(line, level) call, in order."""

    def __init__(self):
        self.calls = []

    def set_irq(self, line, level):
        self.calls.append((line, level))

    def edges(self, line):
        """How many times ``line`` went from low to high."""
        return sum(1 for ln, lv in self.calls if ln == line and lv)
