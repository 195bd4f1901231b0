"""The ACPI fixed-hardware registers of a PC without power management.

ACPI Specification 6.4, 4.8.3: the PM1 event block (PM1_STS, then PM1_EN,
16 bits each) and the PM1 control block (PM1_CNT).  The model's platform has
no power button, sleep states or PM timer, so no status bit ever sets; the
enable bits are kept as written; PM1_CNT reads SCI_EN = 1 (the platform is in
ACPI mode from the start: its FADT names no SMI command port) and keeps the
other writable bits.  A write of SLP_EN (bit 13) would enter the sleep type
in SLP_TYP: S5 (soft off) is reported to the platform through ``on_sleep``.
"""

from .base import Device

SCI_EN = 1
SLP_EN = 1 << 13


class AcpiPm(Device):
    name = "acpi-pm"

    def __init__(self, evt_blk=0x600, cnt_blk=0x604, on_sleep=None):
        self.evt_blk = evt_blk
        self.cnt_blk = cnt_blk
        self.on_sleep = on_sleep
        self.ports = ((evt_blk, 4), (cnt_blk, 2))
        self.reset()

    def reset(self):
        self.pm1_en = 0
        self.pm1_cnt = SCI_EN

    def io_read(self, port, size):
        regs = (0).to_bytes(2, "little") + self.pm1_en.to_bytes(2, "little")     # PM1_STS is 0
        if self.evt_blk <= port < self.evt_blk + 4:
            off = port - self.evt_blk
            return int.from_bytes(regs[off:off + size].ljust(size, b"\xff"), "little")
        off = port - self.cnt_blk
        return int.from_bytes(self.pm1_cnt.to_bytes(2, "little")[off:off + size].ljust(size, b"\xff"), "little")

    def io_write(self, port, size, value):
        data = value.to_bytes(size, "little")
        if self.evt_blk <= port < self.evt_blk + 4:
            regs = bytearray((0).to_bytes(2, "little") + self.pm1_en.to_bytes(2, "little"))
            off = port - self.evt_blk
            regs[off:off + size] = data[:4 - off]
            self.pm1_en = int.from_bytes(regs[2:4], "little")      # PM1_STS: write 1 to clear, nothing set
            return
        regs = bytearray(self.pm1_cnt.to_bytes(2, "little"))
        off = port - self.cnt_blk
        regs[off:off + size] = data[:2 - off]
        v = int.from_bytes(regs, "little")
        if v & SLP_EN and self.on_sleep is not None:
            self.on_sleep((v >> 10) & 7)
        self.pm1_cnt = (v & ~SLP_EN & 0x3FFF) | SCI_EN

    def get_state(self):
        return {"pm1_en": self.pm1_en, "pm1_cnt": self.pm1_cnt}

    def set_state(self, state):
        self.pm1_en = int(state["pm1_en"]) & 0xFFFF
        self.pm1_cnt = (int(state["pm1_cnt"]) & 0x3FFF) | SCI_EN
