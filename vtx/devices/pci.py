"""PCI configuration space: configuration mechanism #1 and a host bridge.

Facts from the PCI Local Bus Specification 3.0: configuration mechanism #1
(3.2.2.3.2: CONFIG_ADDRESS at CF8h, a dword register with the enable bit 31,
bus 23:16, device 15:11, function 10:8, register 7:2 and bits 1:0 reading 0,
claimed by the host bridge for dword accesses only; CONFIG_DATA at
CFCh-CFFh, any byte/word/dword within), reads of an absent function
returning all ones (the vendor ID FFFFh means "no function"), the type 0
header (6.1: vendor and device ID, command, status with its write-1-to-clear
bits, class code, header type with bit 7 = multi-function, BARs at 10h-24h,
interrupt line and pin at 3Ch/3Dh), and BAR sizing (6.2.5.1: software writes
all ones and reads back the bits that the size leaves writable).  The host
bridge at 00:00.0 is the Intel 82441FX PCI and Memory Controller (ID
8086:1237, class 06 00 00: a host bridge).
"""

from ..errors import ArgumentError
from .base import Device

# Command register bits a plain function implements: I/O space, memory space,
# bus master, parity error response, SERR# enable, interrupt disable.
_COMMAND_WRITABLE = 0x0547
# Status bits that software clears by writing 1: master data parity error,
# signaled target abort, received target abort, received master abort,
# signaled system error, detected parity error.
_STATUS_W1C = 0xF900


class PciFunction:
    """One PCI function: a 256-byte configuration space with a mask of the
    bits software can write (``wmask``) and of those it clears by writing 1
    (``w1cmask``).  Subclass it and override :meth:`config_read` /
    :meth:`config_write` for registers with side effects (call the base
    class for the plain storage)."""

    name = "pci-function"

    def __init__(self, vendor_id, device_id, class_code, revision=0, header_type=0,
                 subsystem_vendor_id=0, subsystem_id=0, interrupt_pin=0):
        for what, v, bits in (("vendor_id", vendor_id, 16), ("device_id", device_id, 16),
                              ("class_code", class_code, 24), ("revision", revision, 8),
                              ("header_type", header_type, 8),
                              ("subsystem_vendor_id", subsystem_vendor_id, 16),
                              ("subsystem_id", subsystem_id, 16), ("interrupt_pin", interrupt_pin, 8)):
            if not isinstance(v, int) or not 0 <= v < (1 << bits):
                raise ArgumentError(f"PciFunction: {what} must be an int of {bits} bits, not {v!r}")
        if not 0 <= interrupt_pin <= 4:
            raise ArgumentError(f"PciFunction: interrupt_pin must be 0 (none) or 1-4 (INTA#-INTD#), "
                                f"not {interrupt_pin}")
        self.config = bytearray(256)
        self.wmask = bytearray(256)
        self.w1cmask = bytearray(256)
        self.bars = {}              # index -> (size, kind, flag bits)
        self._put(0x00, 2, vendor_id)
        self._put(0x02, 2, device_id)
        self._put(0x08, 1, revision)
        self._put(0x09, 3, class_code)
        self._put(0x0E, 1, header_type)
        self._put(0x2C, 2, subsystem_vendor_id)
        self._put(0x2E, 2, subsystem_id)
        self._put(0x3D, 1, interrupt_pin)
        self._mask(self.wmask, 0x04, 2, _COMMAND_WRITABLE)
        self._mask(self.w1cmask, 0x06, 2, _STATUS_W1C)
        self._mask(self.wmask, 0x0C, 2, 0xFFFF)     # cache line size, latency timer
        self._mask(self.wmask, 0x3C, 1, 0xFF)       # interrupt line
        self._initial = bytes(self.config)

    # --- building ---------------------------------------------------------------------------

    def _put(self, offset, size, value):
        self.config[offset:offset + size] = value.to_bytes(size, "little")

    def _mask(self, mask, offset, size, value):
        mask[offset:offset + size] = value.to_bytes(size, "little")

    def add_bar(self, index, size, io=False, prefetchable=False, is64=False):
        """Base address register ``index`` (0-5) decoding ``size`` bytes (a
        power of two: at least 16 for memory, 4 for I/O) of memory or, with
        ``io``, I/O space.  A 64-bit memory BAR also takes register
        ``index + 1``."""
        if not isinstance(index, int) or not 0 <= index <= 5:
            raise ArgumentError(f"add_bar: index must be 0-5, not {index!r}")
        least = 4 if io else 16
        limit = (1 << 16) if io else (1 << (63 if is64 else 31))
        if not isinstance(size, int) or size < least or size & (size - 1) or size > limit:
            raise ArgumentError(f"add_bar: size must be a power of two from {least} to {limit:#x} bytes, "
                                f"not {size!r}")
        if io and (prefetchable or is64):
            raise ArgumentError("add_bar: an I/O BAR is neither prefetchable nor 64-bit")
        if is64 and index == 5:
            raise ArgumentError("add_bar: a 64-bit BAR needs two registers: index 0-4")
        taken = set()
        for i, (_, _, _, wide) in self.bars.items():
            taken.update((i, i + 1) if wide else (i,))
        if index in taken or (is64 and index + 1 in taken):
            raise ArgumentError(f"add_bar: BAR {index} is already in use")
        off = 0x10 + 4 * index
        if io:
            flags = 0x1
            mask = (~(size - 1)) & 0xFFFFFFFC
        else:
            flags = (0x8 if prefetchable else 0) | (0x4 if is64 else 0)
            mask = (~(size - 1)) & 0xFFFFFFF0
        self._put(off, 4, flags)
        self._mask(self.wmask, off, 4, mask)
        if is64:
            self._mask(self.wmask, off + 4, 4, (~(size - 1) >> 32) & 0xFFFFFFFF)
        self.bars[index] = (size, io, flags, is64)
        self._initial = bytes(self.config)

    def bar_address(self, index):
        """The address BAR ``index`` holds now (None: no such BAR)."""
        if index not in self.bars:
            return None
        size, io, _, is64 = self.bars[index]
        off = 0x10 + 4 * index
        value = int.from_bytes(self.config[off:off + (8 if is64 else 4)], "little")
        return value & ~(3 if io else 15)

    # --- configuration accesses --------------------------------------------------------------

    def config_read(self, offset, size):
        """``size`` bytes at ``offset`` (within the dword)."""
        return int.from_bytes(self.config[offset:offset + size], "little")

    def config_write(self, offset, size, value):
        for i in range(size):
            o = offset + i
            b = (value >> (8 * i)) & 0xFF
            wm = self.wmask[o]
            c = self.config[o]
            c = (c & ~wm) | (b & wm)
            c &= ~(b & self.w1cmask[o])
            self.config[o] = c

    def reset(self):
        self.config[:] = self._initial

    def get_state(self):
        return {"config": list(self.config)}

    def set_state(self, state):
        self.config[:] = bytes(state["config"])


class PciHostBridge(PciFunction):
    """The 82441FX host bridge at 00:00.0."""

    name = "host-bridge"

    def __init__(self):
        super().__init__(0x8086, 0x1237, 0x060000)


class PciHost(Device):
    """Configuration mechanism #1 at CF8h-CFFh and bus 0 with the host
    bridge at 00:00.0.  ``add(function, dev, fn)`` puts a
    :class:`PciFunction` on the bus."""

    name = "pci"
    ports = ((0xCF8, 8),)

    def __init__(self):
        self.address = 0
        self.functions = {}
        self.add(PciHostBridge(), 0, 0)

    def add(self, function, dev, fn=0):
        """Put ``function`` at 00:``dev``.``fn`` (dev 0-31, fn 0-7).
        Function 0 of a device comes first; adding another function marks
        function 0 multi-function (header type bit 7).  Returns it."""
        if not isinstance(function, PciFunction):
            raise ArgumentError(f"PciHost.add: a PciFunction is needed, not {type(function).__name__}")
        if not isinstance(dev, int) or not 0 <= dev <= 31:
            raise ArgumentError(f"PciHost.add: dev must be 0-31, not {dev!r}")
        if not isinstance(fn, int) or not 0 <= fn <= 7:
            raise ArgumentError(f"PciHost.add: fn must be 0-7, not {fn!r}")
        if (dev, fn) in self.functions:
            raise ArgumentError(f"PciHost.add: 00:{dev:02x}.{fn} is already taken by "
                                f"{self.functions[dev, fn].name}")
        if fn and (dev, 0) not in self.functions:
            raise ArgumentError(f"PciHost.add: function 0 of device {dev:#x} must be added before function {fn}")
        self.functions[dev, fn] = function
        if fn:
            f0 = self.functions[dev, 0]
            f0.config[0x0E] |= 0x80
            f0._initial = bytes(f0.config)
        return function

    def _target(self):
        a = self.address
        if not a & 0x80000000 or (a >> 16) & 0xFF:
            return None             # disabled, or a bus other than 0: nothing answers
        return self.functions.get(((a >> 11) & 0x1F, (a >> 8) & 7))

    def io_read(self, port, size):
        ones = (1 << (8 * size)) - 1
        if port < 0xCFC:
            if port == 0xCF8 and size == 4:
                return self.address
            return ones
        if not self.address & 0x80000000:
            return ones
        f = self._target()
        if f is None:
            return ones
        offset = (self.address & 0xFC) + (port - 0xCFC)
        if offset + size > 256:
            return ones
        return f.config_read(offset, size) & ones

    def io_write(self, port, size, value):
        if port < 0xCFC:
            if port == 0xCF8 and size == 4:
                self.address = value & 0xFFFFFFFC & ~0x7F000000   # reserved bits read 0
            return
        f = self._target()
        if f is None:
            return
        offset = (self.address & 0xFC) + (port - 0xCFC)
        if offset + size <= 256:
            f.config_write(offset, size, value & ((1 << (8 * size)) - 1))

    def reset(self):
        self.address = 0
        for f in self.functions.values():
            f.reset()

    def get_state(self):
        return {"address": self.address,
                "functions": {f"{d}.{fn}": f.get_state() for (d, fn), f in sorted(self.functions.items())}}

    def set_state(self, state):
        self.address = state["address"]
        for key, s in state["functions"].items():
            d, fn = key.split(".")
            f = self.functions.get((int(d), int(fn)))
            if f is None:
                raise ArgumentError(f"PciHost.set_state: no function at 00:{int(d):02x}.{fn} to restore")
            f.set_state(s)
