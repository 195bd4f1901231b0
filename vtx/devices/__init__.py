"""Devices a virtual PC is made of (docs/architecture.rst, "The platform")."""

from .base import Clock, Device, InstructionClock, IrqLine, NoIrq, WallClock

__all__ = ["Clock", "Device", "InstructionClock", "IrqLine", "NoIrq", "WallClock"]
