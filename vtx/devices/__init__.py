"""Devices a virtual PC is made of (docs/architecture.rst, "The platform")."""

from .base import Clock, Device, InstructionClock, IrqLine, NoIrq, WallClock
from .ioapic import IoApic
from .lapic import ApicBus, ApicGp, LocalApic
from .pic import Pic8259Pair
from .pit import Pit8254
from .uart import Uart16550

__all__ = ["ApicBus", "ApicGp", "Clock", "Device", "InstructionClock", "IoApic", "IrqLine",
           "LocalApic", "NoIrq", "WallClock", "Pic8259Pair", "Pit8254", "Uart16550"]
