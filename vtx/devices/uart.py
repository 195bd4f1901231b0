"""A 16550A UART (a PC's COM port).

Facts from the National Semiconductor / TI PC16550D datasheet: the registers
at offsets 0-7 (RBR/THR and DLL with LCR.DLAB = 1, IER and DLM, IIR/FCR, LCR,
MCR, LSR, MSR, SCR), the 16-byte FIFOs and the receiver trigger levels
(FCR bits 7:6: 1, 4, 8, 14 bytes), the interrupt identification codes and
their priorities (IIR bits 3:1: 011 receiver line status, 010 received data
available, 110 character timeout, 001 THR empty, 000 modem status), the
character timeout (4 character times without a character received or read),
and loopback (MCR bit 4: the transmitter feeds the receiver; CTS, DSR, RI and
DCD read RTS, DTR, OUT1 and OUT2; the modem control outputs are forced
inactive).  On a PC the interrupt output reaches the PIC only while OUT2 is
set (MCR bit 3) -- the OUT2 pin gates the IRQ driver -- so with loopback,
where the OUT2 pin is inactive, the UART raises no IRQ.

Transmission completes at once: a byte written to THR goes to ``output``
(and ``on_output``) immediately, so LSR.THRE and LSR.TEMT are always 1 and the
THR empty interrupt follows every write.  Reception: :meth:`Uart16550.feed`.
"""

from .base import Device, NoIrq

# LSR bits
DR, OE, PE, FE, BI, THRE, TEMT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40
# IIR interrupt identification codes (bits 3:0 with bit 0 = 0: pending)
IIR_NONE, IIR_LS, IIR_RDA, IIR_CTI, IIR_THRE, IIR_MS = 0x01, 0x06, 0x04, 0x0C, 0x02, 0x00
_TRIGGER = (1, 4, 8, 14)
_FIFO_SIZE = 16
_XTAL_HZ = 1843200          # the PC's UART clock: 16 x 115200 baud at divisor 1


class Uart16550(Device):
    """A 16550A at ``base`` (COM1: 3F8h, IRQ 4; COM2: 2F8h, IRQ 3).

    ``irq`` is its interrupt line; ``clock`` the platform's clock (for the
    character timeout; None: a character timeout is due at once);
    ``on_output(bytes)`` is called with each transmitted byte, which is also
    appended to ``output``.  ``modem_inputs`` are the MSR bits 7:4 (DCD, RI,
    DSR, CTS) the far end drives outside loopback: by default DCD, DSR and
    CTS, a terminal that is connected and ready."""

    name = "uart"
    COM1 = (0x3F8, 4)
    COM2 = (0x2F8, 3)
    COM3 = (0x3E8, 4)
    COM4 = (0x2E8, 3)

    def __init__(self, irq=None, clock=None, base=0x3F8, on_output=None, modem_inputs=0xB0):
        self.irq = irq if irq is not None else NoIrq()
        self.clock = clock
        self.base = base
        self.ports = ((base, 8),)
        self.on_output = on_output
        self.modem_inputs = modem_inputs & 0xF0
        self.output = bytearray()
        self.input_queue = bytearray()  # bytes fed that wait for room in the receiver
        self.dll = 12                   # the divisor latch (not changed by reset): 9600 baud
        self.dlm = 0
        self.reset()

    # --- the host side ------------------------------------------------------------

    def feed(self, data, flow_control=True):
        """Bytes that arrive on the receive line.  With ``flow_control``
        (the default) what does not fit in the receiver waits in
        ``input_queue`` and moves in as the guest reads, as a sender held by
        RTS/CTS would; without, a byte that finds the receiver full is an
        overrun (LSR.OE): in FIFO mode it is lost, without FIFOs it replaces
        the unread one (datasheet, LSR bit 1)."""
        if isinstance(data, int):
            data = bytes((data,))
        data = bytes(data)
        if flow_control:
            self.input_queue += data
            self._fill()
        else:
            for b in data:
                self._receive(b)
        self._update()

    def _capacity(self):
        return _FIFO_SIZE if self.fcr & 1 else 1

    def _receive(self, b):
        self._activity()
        if len(self.rx) < self._capacity():
            self.rx.append(b)
        else:
            self.lsr |= OE
            if not self.fcr & 1:
                self.rx[-1] = b

    def _fill(self):
        q = self.input_queue
        room = self._capacity() - len(self.rx)
        if q and room > 0:
            self.rx += q[:room]
            del q[:room]
            self._activity()

    # --- time: the character timeout --------------------------------------------------

    def _now(self):
        return self.clock.now_ns() if self.clock is not None else None

    def _activity(self):
        self.rx_time = self._now()

    def char_time_ns(self):
        """One character's time at the programmed divisor and format: start
        bit, 5-8 data bits, parity, 1 or 2 stop bits, 16 clocks of the
        1.8432 MHz crystal a bit."""
        lcr = self.lcr
        bits = 1 + 5 + (lcr & 3) + (1 if lcr & 0x08 else 0) + (2 if lcr & 0x04 else 1)
        divisor = (self.dlm << 8 | self.dll) or 0x10000
        return -(-bits * divisor * 16 * 10 ** 9 // _XTAL_HZ)

    def _timeout_at(self):
        if self.rx_time is None:
            return None
        return self.rx_time + 4 * self.char_time_ns()

    def _timed_out(self):
        if not (self.fcr & 1 and self.rx):
            return False
        if self.clock is None or self.rx_time is None:
            return True
        return self.clock.now_ns() >= self._timeout_at()

    def next_deadline(self):
        """The character timeout, while it would raise the IRQ that is not
        raised yet (it stays the deadline after it passed, until
        :meth:`advance` raised the line)."""
        if self.ier & 1 and self.fcr & 1 and self.rx and self.clock is not None \
                and self.rx_time is not None and not self.irq.level and (self.mcr & 0x18) == 0x08:
            return self._timeout_at()
        return None

    def advance(self, now_ns):
        self._update()

    # --- interrupts ---------------------------------------------------------------------

    def interrupt_id(self):
        """IIR bits 3:0: the highest-priority pending interrupt."""
        ier = self.ier
        if ier & 0x04 and self.lsr & (OE | PE | FE | BI):
            return IIR_LS
        if ier & 0x01 and self.rx:
            if not self.fcr & 1 or len(self.rx) >= _TRIGGER[self.fcr >> 6]:
                return IIR_RDA
            if self._timed_out():
                return IIR_CTI
        if ier & 0x02 and self.thre_pending:
            return IIR_THRE
        if ier & 0x08 and self.msr_delta:
            return IIR_MS
        return IIR_NONE

    def _update(self):
        self.irq.set(self.interrupt_id() != IIR_NONE and (self.mcr & 0x18) == 0x08)

    # --- the modem lines -----------------------------------------------------------------

    def _lines(self):
        """MSR bits 7:4 (DCD, RI, DSR, CTS) now."""
        m = self.mcr
        if m & 0x10:
            # Loopback: CTS = RTS, DSR = DTR, RI = OUT1, DCD = OUT2.
            return ((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
        return self.modem_inputs

    def _lines_changed(self, old):
        new = self._lines()
        delta = 0
        if (old ^ new) & 0x10:
            delta |= 0x01                   # DCTS
        if (old ^ new) & 0x20:
            delta |= 0x02                   # DDSR
        if old & 0x40 and not new & 0x40:
            delta |= 0x04                   # TERI: RI went inactive
        if (old ^ new) & 0x80:
            delta |= 0x08                   # DDCD
        self.msr_delta |= delta

    def set_modem_inputs(self, bits):
        """The far end changes DCD/RI/DSR/CTS (MSR bits 7:4)."""
        old = self._lines()
        self.modem_inputs = bits & 0xF0
        self._lines_changed(old)
        self._update()

    # --- ports ------------------------------------------------------------------------------

    def io_read(self, port, size):
        value = self._read8(port - self.base)
        self._update()
        return value | (((1 << (8 * size)) - 1) & ~0xFF)

    def _read8(self, reg):
        dlab = self.lcr & 0x80
        if reg == 0:
            if dlab:
                return self.dll
            if not self.rx:
                return self.last_rx
            b = self.rx.pop(0)
            self.last_rx = b
            self._activity()
            self._fill()
            return b
        if reg == 1:
            return self.dlm if dlab else self.ier
        if reg == 2:
            iid = self.interrupt_id()
            if iid == IIR_THRE:
                self.thre_pending = False   # reading IIR with THRE the source clears it
            return iid | (0xC0 if self.fcr & 1 else 0)
        if reg == 3:
            return self.lcr
        if reg == 4:
            return self.mcr
        if reg == 5:
            v = self.lsr | THRE | TEMT | (DR if self.rx else 0)
            self.lsr &= ~(OE | PE | FE | BI)   # reading LSR clears the error bits
            return v
        if reg == 6:
            v = self._lines() | self.msr_delta
            self.msr_delta = 0
            return v
        return self.scr

    def io_write(self, port, size, value):
        self._write8(port - self.base, value & 0xFF)
        self._update()

    def _write8(self, reg, value):
        dlab = self.lcr & 0x80
        if reg == 0:
            if dlab:
                self.dll = value
                return
            if self.mcr & 0x10:
                self._receive(value)            # loopback: to the receiver, not the line
            else:
                self.output.append(value)
                if self.on_output is not None:
                    self.on_output(bytes((value,)))
            self.thre_pending = True            # sent at once: THR empty again
        elif reg == 1:
            if dlab:
                self.dlm = value
                return
            if value & 0x02 and not self.ier & 0x02:
                self.thre_pending = True        # enabling ETBEI with THR empty
            self.ier = value & 0x0F
        elif reg == 2:
            if (value ^ self.fcr) & 1:
                self.rx.clear()                 # changing the FIFO mode clears both FIFOs
            elif value & 0x02:
                self.rx.clear()
            self.fcr = value & 0xC1 if value & 1 else 0
            self._fill()
        elif reg == 3:
            self.lcr = value
        elif reg == 4:
            old = self._lines()
            self.mcr = value & 0x1F
            self._lines_changed(old)
            self._fill()
        elif reg == 7:
            self.scr = value
        # reg 5 (LSR) and 6 (MSR): writes are for factory test; ignored.

    # --- state ------------------------------------------------------------------------------

    def reset(self):
        self.ier = 0
        self.fcr = 0
        self.lcr = 0
        self.mcr = 0
        self.lsr = 0
        self.msr_delta = 0
        self.scr = 0
        self.rx = bytearray()
        self.last_rx = 0
        self.rx_time = None
        self.thre_pending = False
        self.irq.set(False)

    _FIELDS = ("ier", "fcr", "lcr", "mcr", "lsr", "msr_delta", "scr", "dll", "dlm", "last_rx",
               "rx_time", "thre_pending", "modem_inputs")

    def get_state(self):
        state = {k: getattr(self, k) for k in self._FIELDS}
        state["rx"] = list(self.rx)
        state["input_queue"] = list(self.input_queue)
        return state

    def set_state(self, state):
        for k in self._FIELDS:
            setattr(self, k, state[k])
        self.rx = bytearray(state["rx"])
        self.input_queue = bytearray(state["input_queue"])
        self._update()
