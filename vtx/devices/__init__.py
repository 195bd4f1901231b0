"""Devices a virtual PC is made of (docs/architecture.rst, "The platform")."""

from .base import Clock, Device, InstructionClock, IrqLine, NoIrq, WallClock
from .ioapic import IoApic
from .lapic import ApicBus, ApicGp, LocalApic

__all__ = ["ApicBus", "ApicGp", "Clock", "Device", "InstructionClock", "IoApic", "IrqLine",
           "LocalApic", "NoIrq", "WallClock"]
