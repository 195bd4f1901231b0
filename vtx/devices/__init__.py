"""Devices a virtual PC is made of (docs/architecture.rst, "The platform")."""

from .base import Clock, Device, InstructionClock, IrqLine, NoIrq, WallClock
from .pic import Pic8259Pair
from .pit import Pit8254
from .rtc import CmosRtc
from .uart import Uart16550

__all__ = ["Clock", "Device", "InstructionClock", "IrqLine", "NoIrq", "WallClock",
           "CmosRtc", "Pic8259Pair", "Pit8254", "Uart16550"]
