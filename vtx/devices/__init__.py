"""Devices a virtual PC is made of (docs/architecture.rst, "The platform")."""

from .acpipm import AcpiPm
from .base import Clock, Device, InstructionClock, IrqLine, NoIrq, WallClock
from .debugexit import DebugCon, DebugExit, PostCode
from .i8042 import I8042, SystemControlA
from .ioapic import IoApic
from .lapic import ApicBus, ApicGp, LocalApic
from .pci import PciFunction, PciHost, PciHostBridge
from .pic import Pic8259Pair
from .pit import Pit8254
from .rtc import CmosRtc
from .uart import Uart16550

__all__ = ["AcpiPm", "Clock", "Device", "InstructionClock", "IrqLine", "NoIrq", "WallClock",
           "ApicBus", "ApicGp", "IoApic", "LocalApic", "PciFunction", "PciHost",
           "CmosRtc", "DebugCon", "DebugExit", "I8042", "Pic8259Pair", "Pit8254", "PostCode",
           "SystemControlA", "Uart16550", "PciHostBridge"]
