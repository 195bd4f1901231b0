"""The local APIC of a vCPU, and the bus that carries its interrupt messages.

Intel SDM Vol. 3A chapter 11, "Advanced Programmable Interrupt Controller
(APIC)" (edition 325462-080US, June 2023); the section numbers in comments are
that edition's.

Register access (SDM 11.4.1, Table 11-1; 11.12.1.2, Table 11-6):

* xAPIC mode: the 4 KiB page at the APIC base (IA32_APIC_BASE, default
  0xFEE00000) through :meth:`LocalApic.mmio_read` / :meth:`mmio_write`.  Each
  register is 32 bits at a 16-byte aligned offset and must be accessed with an
  aligned 32-bit access (SDM 11.4.1); any other size or a misaligned offset
  reads 0 and a write is ignored.  An offset that names no register reads 0,
  ignores the write and sets "illegal register address" (bit 7) in the ESR
  (SDM 11.5.3).  APR reads 0 (the model keeps no arbitration priority), the
  remote read register (RRD) reads 0 (remote read is gone since the Pentium
  4, SDM 11.6.1).  In x2APIC mode or with the APIC disabled the page decodes
  nothing (reads all ones, writes ignored).
* x2APIC mode: :meth:`LocalApic.msr_read` / :meth:`msr_write` on MSRs
  0x800-0x8FF; every #GP condition of SDM 11.12.1.2 and 11.12.1.3 raises
  :class:`ApicGp`, which the platform turns into #GP(0).

The model sends a message during the write that starts it, so the delivery
status bits (ICR bit 12, LVT bit 12) always read 0 (idle).

Interrupts: :meth:`LocalApic.accept` is the receipt of a fixed interrupt
(SDM 11.8.4): it sets the IRR bit.  :meth:`LocalApic.pending` is what the
processor would be offered (SDM 11.8.3: the highest IRR vector whose priority
class is above the PPR's), :meth:`LocalApic.acknowledge` the INTA cycle that
moves it to the ISR, a write to EOI retires the highest ISR vector (SDM
11.8.5).  NMI, INIT and STARTUP messages go straight to the callbacks
``on_nmi()``, ``on_init()`` and ``on_sipi(vector)`` that the platform connects
to its vCPU; SMI is accepted and ignored (the model has no SMM).

Time: the timer (SDM 11.5.4) counts down at the bus frequency (``bus_hz``,
1 GHz by default, so one tick per ns before the divider) divided by the
divide configuration; the current count is computed from the platform's clock
when read.  The TSC is the clock in ns times ``tsc_per_ns`` (1 by default: a
1 GHz TSC, as the model's InstructionClock).
"""

from fractions import Fraction

from ..errors import ArgumentError, VtxError
from ..spec.capabilities import MAXPHYADDR
from .base import Clock, Device


class ApicGp(VtxError):
    """An access that makes the processor raise #GP(0) (x2APIC MSR accesses of
    SDM 11.12.1.2-11.12.1.3, IA32_APIC_BASE transitions of SDM 11.12.5)."""


# --- register offsets in the xAPIC page (SDM Table 11-1); x2APIC MSR =
# 0x800 + offset / 16 (SDM 11.12.1.2) ---------------------------------------
ID = 0x020
VERSION = 0x030
TPR = 0x080
APR = 0x090
PPR = 0x0A0
EOI = 0x0B0
RRD = 0x0C0
LDR = 0x0D0
DFR = 0x0E0
SVR = 0x0F0
ISR = 0x100          # 8 registers, 0x100-0x170
TMR = 0x180          # 8 registers, 0x180-0x1F0
IRR = 0x200          # 8 registers, 0x200-0x270
ESR = 0x280
LVT_CMCI = 0x2F0
ICR_LOW = 0x300
ICR_HIGH = 0x310
LVT_TIMER = 0x320
LVT_THERMAL = 0x330
LVT_PERF = 0x340
LVT_LINT0 = 0x350
LVT_LINT1 = 0x360
LVT_ERROR = 0x370
TIMER_INITIAL = 0x380
TIMER_CURRENT = 0x390
TIMER_DIVIDE = 0x3E0
SELF_IPI = 0x3F0     # x2APIC only (MSR 0x83F)

MSR_APIC_BASE = 0x1B
MSR_TSC_DEADLINE = 0x6E0

# IA32_APIC_BASE (SDM 11.4.4, Figure 11-5; 11.12.1 Figure 11-26)
BASE_BSP = 1 << 8
BASE_EXTD = 1 << 10
BASE_EN = 1 << 11
DEFAULT_BASE = 0xFEE00000

# Version register (SDM 11.4.8): version 0x14, max LVT entry 5 (6 LVTs).
VERSION_VALUE = 0x00050014

# SVR (SDM 11.9, Figure 11-23): vector 7:0, APIC software enable bit 8, focus
# processor checking bit 9 (1 = disabled).  EOI-broadcast suppression (bit 12)
# is not modelled, so version bit 24 is 0 and SVR bit 12 is reserved.
SVR_ENABLE = 1 << 8
SVR_FOCUS_DISABLE = 1 << 9
SVR_WRITABLE = 0x3FF

# ESR bits (SDM 11.5.3, Figure 11-9)
ESR_SEND_CHECKSUM = 1 << 0
ESR_RECV_CHECKSUM = 1 << 1
ESR_SEND_ACCEPT = 1 << 2
ESR_RECV_ACCEPT = 1 << 3
ESR_REDIRECTABLE_IPI = 1 << 4
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECV_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7

# Delivery modes (ICR bits 10:8, SDM 11.6.1; LVT bits 10:8, SDM 11.5.1;
# I/O APIC redirection entries, 82093AA 3.2.4)
DM_FIXED = 0
DM_LOWEST = 1
DM_SMI = 2
DM_NMI = 4
DM_INIT = 5
DM_STARTUP = 6
DM_EXTINT = 7

DEST_PHYSICAL = 0
DEST_LOGICAL = 1

# Destination shorthands (ICR bits 19:18, SDM 11.6.1)
SH_NONE = 0
SH_SELF = 1
SH_ALL_INCL_SELF = 2
SH_ALL_EXCL_SELF = 3

# LVT fields (SDM 11.5.1, Figure 11-8)
LVT_MASK = 1 << 16
LVT_LEVEL = 1 << 15        # trigger mode, LINT0/LINT1 only
LVT_REMOTE_IRR = 1 << 14   # LINT0/LINT1 only, read-only
LVT_POLARITY_LOW = 1 << 13  # LINT0/LINT1 only
LVT_STATUS = 1 << 12       # delivery status, read-only (always 0 here)

TIMER_ONESHOT = 0
TIMER_PERIODIC = 1
TIMER_TSC_DEADLINE = 2

# Per LVT: bits software writes, bits that are read-only (x2APIC: any other
# bit is reserved and a 1 there is #GP, SDM 11.12.1.3).
_LVT_BITS = {
    LVT_CMCI: (0x107FF, LVT_STATUS),
    LVT_TIMER: (0x700FF, LVT_STATUS),      # vector, mask, mode 18:17
    LVT_THERMAL: (0x107FF, LVT_STATUS),
    LVT_PERF: (0x107FF, LVT_STATUS),
    LVT_LINT0: (0x1A7FF, LVT_STATUS | LVT_REMOTE_IRR),
    LVT_LINT1: (0x1A7FF, LVT_STATUS | LVT_REMOTE_IRR),
    LVT_ERROR: (0x100FF, LVT_STATUS),
}
_LVT_NAMES = {"cmci": LVT_CMCI, "thermal": LVT_THERMAL, "perf": LVT_PERF}

# ICR low (SDM 11.6.1, Figure 11-12): vector, delivery mode, destination mode,
# level, trigger mode, shorthand are written; delivery status is read-only.
_ICR_LOW_WRITABLE = 0x000CCFFF
# x2APIC ICR (SDM 11.12.9, Figure 11-28): bits 31:20, 17:16 and 13 reserved.
_X2_ICR_RESERVED = 0xFFF32000
_DCR_WRITABLE = 0xB        # divide configuration bits 0, 1, 3 (SDM Figure 11-10)

# Offsets of the xAPIC page that name a register (SDM Table 11-1).
_XAPIC_REGS = frozenset(
    [ID, VERSION, TPR, APR, PPR, EOI, RRD, LDR, DFR, SVR, ESR, LVT_CMCI,
     ICR_LOW, ICR_HIGH, LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1,
     LVT_ERROR, TIMER_INITIAL, TIMER_CURRENT, TIMER_DIVIDE]
    + [ISR + 16 * i for i in range(8)]
    + [TMR + 16 * i for i in range(8)]
    + [IRR + 16 * i for i in range(8)])

# x2APIC MSRs (SDM Table 11-6): offset of the register, and its access.
_X2_REGS = {}
for _off in (ID, VERSION, PPR, LDR, TIMER_CURRENT):
    _X2_REGS[0x800 + (_off >> 4)] = (_off, "ro")
for _i in range(8):
    for _base in (ISR, TMR, IRR):
        _X2_REGS[0x800 + ((_base + 16 * _i) >> 4)] = (_base + 16 * _i, "ro")
for _off in (TPR, SVR, ESR, ICR_LOW, TIMER_INITIAL, TIMER_DIVIDE) + tuple(_LVT_BITS):
    _X2_REGS[0x800 + (_off >> 4)] = (_off, "rw")
for _off in (EOI, SELF_IPI):
    _X2_REGS[0x800 + (_off >> 4)] = (_off, "wo")
del _off, _i, _base

_TRIGGERS = ("edge", "level")


def _top(bits):
    """The highest set bit of a 256-bit vector bitmap, or -1."""
    return bits.bit_length() - 1


def _check_int(what, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ArgumentError(f"{what} must be an int in [{lo:#x}, {hi:#x}], not {value!r}")
    return value


class LocalApic(Device):
    """One vCPU's local APIC.

    ``clock`` is the platform's :class:`~vtx.devices.base.Clock`;
    ``apic_id`` the x2APIC ID the hardware gives the processor (its low 8 bits
    are the xAPIC ID); ``bsp`` whether this is the bootstrap processor
    (IA32_APIC_BASE bit 8; default: ``apic_id == 0``); ``bus_hz`` the timer's
    input frequency before the divider; ``tsc_per_ns`` the TSC ticks per ns of
    the clock (an int or a :class:`fractions.Fraction`).

    Callbacks (attributes, all optional, default None = do nothing):
    ``send_ipi(source, dest_mode, dest, shorthand, delivery_mode, vector,
    level, trigger)`` carries an IPI to the bus (without one, the APIC is a
    system of one and delivers to itself what names it); ``on_eoi(vector)`` an
    EOI of a level-triggered vector (for the I/O APICs); ``on_nmi()``,
    ``on_init()``, ``on_sipi(vector)``, ``on_extint()`` the events delivered
    to this processor; ``irq_pending_changed()`` when :meth:`pending` may have
    changed (to wake a halted vCPU).
    """

    name = "lapic"

    def __init__(self, clock, apic_id=0, bsp=None, bus_hz=1_000_000_000, tsc_per_ns=1,
                 phys_bits=MAXPHYADDR, send_ipi=None, on_eoi=None, on_nmi=None,
                 on_init=None, on_sipi=None, on_extint=None, irq_pending_changed=None):
        if not isinstance(clock, Clock) and not callable(getattr(clock, "now_ns", None)):
            raise ArgumentError(f"clock must be a vtx.devices.Clock, not {clock!r}")
        # x2APIC ID 0xFFFFFFFF is the broadcast address and cannot be a
        # processor's (SDM 11.12.1.3 after Table 11-6).
        _check_int("apic_id", apic_id, 0, 0xFFFFFFFE)
        _check_int("bus_hz", bus_hz, 1, 1 << 64)
        _check_int("phys_bits", phys_bits, 32, 52)
        if isinstance(tsc_per_ns, bool) or not isinstance(tsc_per_ns, (int, Fraction)) \
                or tsc_per_ns <= 0:
            raise ArgumentError("tsc_per_ns must be a positive int or Fraction, "
                                f"not {tsc_per_ns!r}")
        self.clock = clock
        self.x2apic_id = apic_id
        self.bsp = (apic_id == 0) if bsp is None else bool(bsp)
        self.bus_hz = bus_hz
        self.tsc_per_ns = Fraction(tsc_per_ns)
        self.phys_bits = phys_bits
        self.send_ipi = send_ipi
        self.on_eoi = on_eoi
        self.on_nmi = on_nmi
        self.on_init = on_init
        self.on_sipi = on_sipi
        self.on_extint = on_extint
        self.irq_pending_changed = irq_pending_changed
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self):
        """Power-up or RESET (SDM 11.4.7.1, 11.12.5.1): xAPIC mode, enabled,
        at 0xFEE00000, every register at its reset value."""
        self._base_msr = DEFAULT_BASE | BASE_EN | (BASE_BSP if self.bsp else 0)
        self._xapic_id = self.x2apic_id & 0xFF
        self._clear_registers()

    def init(self):
        """INIT (SDM 11.4.7.3, 11.12.5.1): every register to its reset value
        except the APIC ID and IA32_APIC_BASE (the mode is kept)."""
        self._clear_registers()

    def _clear_registers(self):
        self.tpr = 0
        self.ldr = 0
        self.dfr = 0xFFFFFFFF
        self.svr = 0xFF
        self.irr = 0
        self.isr = 0
        self.tmr = 0
        self.esr = 0
        self._esr_pending = 0
        self.icr = 0
        self.lvt = {off: LVT_MASK for off in _LVT_BITS}
        self.timer_initial = 0
        self.timer_divide = 0
        self.tsc_deadline = 0
        self._t_running = False
        self._t_start = 0
        self._t_count0 = 0
        self._t_fired = 0
        self._lint_level = [False, False]
        # After RESET/INIT the software enable bit is 0 but software has not
        # cleared it: LINT0/LINT1 still pass the 8259's INTR and NMI to the
        # processor (SDM 11.4.7.2 treats only an explicit clear as the
        # software-disabled state).  The first write to the SVR ends this.
        self._svr_untouched = True
        self._notify()

    _STATE_KEYS = ("base_msr", "xapic_id", "tpr", "ldr", "dfr", "svr", "irr", "isr",
                   "tmr", "esr", "esr_pending", "icr", "lvt", "timer_initial",
                   "timer_divide", "tsc_deadline", "t_running", "t_start", "t_count0",
                   "t_fired", "lint_level", "svr_untouched")

    def get_state(self):
        return {
            "device": self.name, "x2apic_id": self.x2apic_id,
            "base_msr": self._base_msr, "xapic_id": self._xapic_id, "tpr": self.tpr,
            "ldr": self.ldr, "dfr": self.dfr, "svr": self.svr, "irr": self.irr,
            "isr": self.isr, "tmr": self.tmr, "esr": self.esr,
            "esr_pending": self._esr_pending, "icr": self.icr,
            "lvt": {str(off): v for off, v in self.lvt.items()},
            "timer_initial": self.timer_initial, "timer_divide": self.timer_divide,
            "tsc_deadline": self.tsc_deadline, "t_running": self._t_running,
            "t_start": self._t_start, "t_count0": self._t_count0, "t_fired": self._t_fired,
            "lint_level": list(self._lint_level), "svr_untouched": self._svr_untouched,
        }

    def set_state(self, state):
        if not isinstance(state, dict) or state.get("device") != self.name:
            raise ArgumentError("set_state: not a saved lapic state (missing 'device': 'lapic')")
        missing = [k for k in self._STATE_KEYS if k not in state]
        if missing:
            raise ArgumentError(f"set_state: saved lapic state lacks {', '.join(missing)}")
        if state.get("x2apic_id") != self.x2apic_id:
            raise ArgumentError(f"set_state: saved state is of APIC ID {state.get('x2apic_id')!r}, "
                                f"this APIC is {self.x2apic_id}")
        lvt = state["lvt"]
        if not isinstance(lvt, dict) or sorted(int(k) for k in lvt) != sorted(_LVT_BITS):
            raise ArgumentError("set_state: saved 'lvt' must hold the 7 LVT registers")
        self._base_msr = state["base_msr"]
        self._xapic_id = state["xapic_id"]
        for k in ("tpr", "ldr", "dfr", "svr", "irr", "isr", "tmr", "esr", "icr",
                  "timer_initial", "timer_divide", "tsc_deadline"):
            setattr(self, k, state[k])
        self._esr_pending = state["esr_pending"]
        self.lvt = {int(k): v for k, v in lvt.items()}
        self._t_running = bool(state["t_running"])
        self._t_start = state["t_start"]
        self._t_count0 = state["t_count0"]
        self._t_fired = state["t_fired"]
        self._lint_level = [bool(x) for x in state["lint_level"]]
        self._svr_untouched = bool(state["svr_untouched"])
        self._notify()

    # ------------------------------------------------------------------ modes

    @property
    def base_msr(self):
        """IA32_APIC_BASE (MSR 0x1B)."""
        return self._base_msr

    @property
    def base(self):
        """The guest-physical address of the xAPIC register page."""
        return self._base_msr & ((1 << self.phys_bits) - 1) & ~0xFFF

    @property
    def enabled(self):
        """IA32_APIC_BASE.EN: the APIC is globally enabled."""
        return bool(self._base_msr & BASE_EN)

    @property
    def x2apic_mode(self):
        return bool(self._base_msr & BASE_EXTD) and self.enabled

    @property
    def software_enabled(self):
        """SVR bit 8 (SDM 11.4.7.2)."""
        return bool(self.svr & SVR_ENABLE)

    @property
    def apic_id(self):
        """The ID the APIC answers to: the 32-bit x2APIC ID in x2APIC mode,
        else the 8-bit xAPIC ID (APIC ID register bits 31:24)."""
        return self.x2apic_id if self.x2apic_mode else self._xapic_id

    @property
    def logical_id(self):
        """LDR: in x2APIC mode derived from the x2APIC ID, cluster in bits
        31:16 and one bit of 15:0 (SDM 11.12.10.2)."""
        if self.x2apic_mode:
            i = self.x2apic_id
            return ((i >> 4) << 16) | (1 << (i & 0xF))
        return self.ldr

    def set_base_msr(self, value):
        """WRMSR to IA32_APIC_BASE with the checks of SDM 11.4.4 and the state
        transitions of SDM 11.12.5 (Figure 11-29): #GP (ApicGp) for reserved
        bits (7:0, 9, MAXPHYADDR and up), for EN=0 with EXTD=1, for x2APIC ->
        xAPIC and for disabled -> x2APIC.  The BSP flag is the hardware's: the
        written bit 8 is ignored."""
        _check_int("IA32_APIC_BASE value", value, 0, (1 << 64) - 1)
        reserved = 0xFF | (1 << 9) | (((1 << 64) - 1) & ~((1 << self.phys_bits) - 1))
        if value & reserved:
            raise ApicGp(f"IA32_APIC_BASE: reserved bits {value & reserved:#x} set")
        en, extd = bool(value & BASE_EN), bool(value & BASE_EXTD)
        if extd and not en:
            raise ApicGp("IA32_APIC_BASE: EXTD=1 with EN=0 is the invalid state (SDM 11.12.5)")
        if self.x2apic_mode and en and not extd:
            raise ApicGp("IA32_APIC_BASE: x2APIC mode to xAPIC mode is illegal; disable first "
                         "(SDM 11.12.5)")
        if not self.enabled and extd:
            raise ApicGp("IA32_APIC_BASE: disabled to x2APIC mode is illegal; enable xAPIC "
                         "mode first (SDM 11.12.5)")
        was_enabled = self.enabled
        self.advance(self.clock.now_ns())
        self._base_msr = (value & ~BASE_BSP) | (BASE_BSP if self.bsp else 0)
        if was_enabled and not en:
            # Disabling loses the APIC's state (SDM 11.4.3: it may return to
            # the state after power-up; 11.12.5.1: only the IDs are kept).
            self._clear_registers()
        self._notify()

    # --------------------------------------------------------------- priority

    def ppr(self):
        """Processor priority (SDM 11.8.3.1): the TPR if its class is at least
        that of the highest in-service vector, else that vector's class."""
        isrv = max(_top(self.isr), 0)
        if (self.tpr >> 4) >= (isrv >> 4):
            return self.tpr & 0xFF
        return isrv & 0xF0

    def pending(self):
        """The vector the APIC offers the processor: the highest IRR vector
        whose priority class is above the PPR's class (SDM 11.8.3), or None."""
        if not self.enabled:
            return None
        v = _top(self.irr)
        if v < 0 or (v >> 4) <= (self.ppr() >> 4):
            return None
        return v

    def acknowledge(self):
        """The processor takes the interrupt (INTA): the pending vector moves
        from IRR to ISR and is returned.  With nothing pending (the TPR rose
        after the request) the answer is the spurious vector of the SVR and no
        ISR bit is set (SDM 11.9)."""
        v = self.pending()
        if v is None:
            return self.svr & 0xFF
        self.irr &= ~(1 << v)
        self.isr |= 1 << v
        self._notify()
        return v

    def accept(self, vector, level=False, trigger="edge"):
        """A fixed interrupt arrives (from an I/O APIC, an IPI or an LVT):
        set its IRR bit, and its TMR bit if level-triggered (SDM 11.8.4).
        ``level`` is the message's level flag, which a fixed interrupt does
        not use.  Vectors 0-15 are refused: "received illegal vector" is
        logged in the ESR (SDM 11.5.3).  A disabled APIC (IA32_APIC_BASE.EN
        = 0 or SVR bit 8 = 0, SDM 11.4.7.2) takes no fixed interrupts.
        Returns whether the interrupt was accepted."""
        _check_int("vector", vector, 0, 255)
        if trigger not in _TRIGGERS:
            raise ArgumentError(f"trigger must be 'edge' or 'level', not {trigger!r}")
        if not self.enabled or not self.software_enabled:
            return False
        if vector < 16:
            self._error(ESR_RECV_ILLEGAL_VECTOR)
            return False
        self.irr |= 1 << vector
        if trigger == "level":
            self.tmr |= 1 << vector
        else:
            self.tmr &= ~(1 << vector)
        self._notify()
        return True

    def _eoi(self):
        """A write to EOI (SDM 11.8.5): retire the highest ISR vector; if it
        was level-triggered, tell the I/O APICs (``on_eoi``), and clear a
        LINT remote IRR that waits for it."""
        v = _top(self.isr)
        if v < 0:
            return
        self.isr &= ~(1 << v)
        if self.tmr >> v & 1:
            if self.on_eoi is not None:
                self.on_eoi(v)
            for pin, off in enumerate((LVT_LINT0, LVT_LINT1)):
                lvt = self.lvt[off]
                if lvt & LVT_REMOTE_IRR and lvt & 0xFF == v:
                    self.lvt[off] = lvt & ~LVT_REMOTE_IRR
                    self._lint_eval(pin, False)
        self._notify()

    def _notify(self):
        if getattr(self, "irq_pending_changed", None) is not None:
            self.irq_pending_changed()

    def _error(self, bit):
        """Log an error in the ESR and raise the LVT error interrupt (SDM
        11.5.3).  An illegal vector in the error LVT itself only logs."""
        self._esr_pending |= bit
        lvt = self.lvt[LVT_ERROR]
        if lvt & LVT_MASK or not self.enabled:
            return
        v = lvt & 0xFF
        if v < 16:
            self._esr_pending |= ESR_RECV_ILLEGAL_VECTOR
        else:
            self.accept(v)

    # ------------------------------------------------------------ local pins

    def _lvt_deliver(self, off, trigger="edge"):
        """Deliver what the LVT at ``off`` says (SDM 11.5.1)."""
        lvt = self.lvt[off]
        if lvt & LVT_MASK or not self.enabled:
            return
        mode = 0 if off in (LVT_TIMER, LVT_ERROR) else (lvt >> 8) & 7
        if mode == DM_FIXED:
            self.accept(lvt & 0xFF, trigger=trigger)
        elif mode == DM_NMI:
            self.deliver_nmi()
        elif mode == DM_INIT:
            self.deliver_init()
        # SMI: nothing (the model has no SMM); ExtINT is LINT0's, which the
        # platform asks through lint0_extint(); the other modes are reserved.

    def trigger_lvt(self, source):
        """A local event of ``source`` ('cmci', 'thermal' or 'perf') raises its
        LVT interrupt."""
        if source not in _LVT_NAMES:
            raise ArgumentError(f"trigger_lvt: source must be one of {sorted(_LVT_NAMES)}, "
                                f"not {source!r}")
        self._lvt_deliver(_LVT_NAMES[source])

    def set_lint(self, pin, level):
        """The level of pin LINT0 (``pin`` 0) or LINT1 (1).  A fixed-mode LVT
        takes an edge, or while the pin is active a level (with remote IRR,
        SDM 11.5.1); NMI and INIT take the rising edge.  ExtINT needs nothing
        here: the platform asks :meth:`lint0_extint`."""
        if pin not in (0, 1):
            raise ArgumentError(f"set_lint: pin must be 0 (LINT0) or 1 (LINT1), not {pin!r}")
        old = self._lint_active(pin)
        self._lint_level[pin] = bool(level)
        self._lint_eval(pin, old)

    def _lint_active(self, pin):
        lvt = self.lvt[LVT_LINT1 if pin else LVT_LINT0]
        return self._lint_level[pin] != bool(lvt & LVT_POLARITY_LOW)

    def _lint_eval(self, pin, was_active):
        off = LVT_LINT1 if pin else LVT_LINT0
        active = self._lint_active(pin)
        lvt = self.lvt[off]
        if not self.enabled or (self._svr_untouched and not self.software_enabled):
            # Hardware-disabled APIC, or the state after RESET/INIT: LINT1 is
            # the processor's NMI pin (SDM 11.4.3, 11.4.7.2).
            if pin == 1 and active and not was_active:
                self.deliver_nmi()
            return
        if lvt & LVT_MASK:
            return
        mode = (lvt >> 8) & 7
        if mode == DM_FIXED and lvt & LVT_LEVEL:
            if active and not lvt & LVT_REMOTE_IRR:
                if self.accept(lvt & 0xFF, trigger="level"):
                    self.lvt[off] |= LVT_REMOTE_IRR
        elif mode in (DM_FIXED, DM_NMI, DM_INIT) and active and not was_active:
            self._lvt_deliver(off)

    def lint0_extint(self):
        """Whether an interrupt of the 8259 PIC on LINT0 reaches the processor
        (virtual wire mode): LINT0 unmasked with delivery mode ExtINT, or the
        APIC globally disabled (its LINT0 is then the INTR pin, SDM 11.4.3),
        or the state after RESET/INIT before software writes the SVR."""
        if not self.enabled or (self._svr_untouched and not self.software_enabled):
            return True
        lvt = self.lvt[LVT_LINT0]
        return not lvt & LVT_MASK and (lvt >> 8) & 7 == DM_EXTINT

    # ------------------------------------------------- messages from the bus

    def deliver_fixed(self, vector, trigger="edge"):
        return self.accept(vector, trigger=trigger)

    def deliver_nmi(self):
        """NMI: to the processor, even when software-disabled (SDM 11.4.7.2)."""
        if self.on_nmi is not None:
            self.on_nmi()

    def deliver_init(self):
        """INIT: the APIC takes its INIT state (SDM 11.4.7.3), then the
        processor (``on_init``)."""
        self.init()
        if self.on_init is not None:
            self.on_init()

    def deliver_sipi(self, vector):
        if self.on_sipi is not None:
            self.on_sipi(vector)

    def deliver_extint(self):
        """An ExtINT message (from an I/O APIC): the vector comes from the
        8259, which the platform asks (``on_extint``)."""
        if self.on_extint is not None:
            self.on_extint()

    # ---------------------------------------------------------------- timer

    def _divisor(self):
        v = ((self.timer_divide >> 1) & 4) | (self.timer_divide & 3)
        return 1 << ((v + 1) & 7)          # SDM Figure 11-10: 000 = 2 ... 111 = 1

    def _timer_mode(self):
        return (self.lvt[LVT_TIMER] >> 17) & 3

    def _ticks(self, now):
        return ((now - self._t_start) * self.bus_hz) // (10 ** 9 * self._divisor())

    def _tick_time(self, ticks):
        """The first ns at which ``ticks`` ticks have passed since the start."""
        return self._t_start + -(-(ticks * 10 ** 9 * self._divisor()) // self.bus_hz)

    def tsc(self, now_ns=None):
        """The TSC at ``now_ns`` (default: now)."""
        if now_ns is None:
            now_ns = self.clock.now_ns()
        return int(now_ns * self.tsc_per_ns)

    def current_count(self, now_ns=None):
        """The timer's current count (SDM 11.5.4) at ``now_ns`` (default now)."""
        if now_ns is None:
            now_ns = self.clock.now_ns()
        if not self._t_running or self._timer_mode() == TIMER_TSC_DEADLINE:
            return 0
        t = self._ticks(now_ns)
        if t < self._t_count0:
            return self._t_count0 - t
        if self._timer_mode() == TIMER_PERIODIC:
            return self.timer_initial - (t - self._t_count0) % self.timer_initial
        return 0

    def next_deadline(self):
        if not self.enabled:
            return None
        if self._timer_mode() == TIMER_TSC_DEADLINE:
            if self.tsc_deadline == 0:
                return None
            d = Fraction(self.tsc_deadline) / self.tsc_per_ns
            return -(-d.numerator // d.denominator)
        if not self._t_running:
            return None
        return self._tick_time(self._t_count0 + self._t_fired * self.timer_initial)

    def advance(self, now_ns):
        if not self.enabled:
            return
        mode = self._timer_mode()
        if mode == TIMER_TSC_DEADLINE:
            if self.tsc_deadline and self.tsc(now_ns) >= self.tsc_deadline:
                self.tsc_deadline = 0     # the MSR clears when it fires (SDM 11.5.4.1)
                self._lvt_deliver(LVT_TIMER)
            return
        if not self._t_running:
            return
        t = self._ticks(now_ns)
        if t < self._t_count0:
            return
        if mode == TIMER_PERIODIC:
            n = (t - self._t_count0) // self.timer_initial + 1
            if n > self._t_fired:
                # Periods the platform let pass unseen coalesce into one IRR bit.
                self._t_fired = n
                self._lvt_deliver(LVT_TIMER)
        else:
            # One-shot (and the reserved mode 3, which the model counts as one-shot).
            self._t_running = False
            self._lvt_deliver(LVT_TIMER)

    def _timer_start(self, now, count):
        self._t_start = now
        self._t_count0 = count
        self._t_fired = 0
        self._t_running = count != 0

    # -------------------------------------------------------- register file

    def _read(self, off, now):
        """A register's value (32 bits; the ICR 64 in x2APIC mode)."""
        if off == ID:
            return self.x2apic_id if self.x2apic_mode else self._xapic_id << 24
        if off == VERSION:
            return VERSION_VALUE
        if off == TPR:
            return self.tpr
        if off == PPR:
            return self.ppr()
        if off == LDR:
            return self.logical_id
        if off == DFR:
            return self.dfr
        if off == SVR:
            return self.svr
        if ISR <= off < ISR + 0x80:
            return self.isr >> (32 * ((off - ISR) >> 4)) & 0xFFFFFFFF
        if TMR <= off < TMR + 0x80:
            return self.tmr >> (32 * ((off - TMR) >> 4)) & 0xFFFFFFFF
        if IRR <= off < IRR + 0x80:
            return self.irr >> (32 * ((off - IRR) >> 4)) & 0xFFFFFFFF
        if off == ESR:
            return self.esr
        if off in self.lvt:
            return self.lvt[off]
        if off == ICR_LOW:
            return self.icr if self.x2apic_mode else self.icr & 0xFFFFFFFF
        if off == ICR_HIGH:
            return self.icr >> 32
        if off == TIMER_INITIAL:
            return self.timer_initial
        if off == TIMER_CURRENT:
            return self.current_count(now)
        if off == TIMER_DIVIDE:
            return self.timer_divide
        return 0          # APR, RRD, EOI

    def _write(self, off, value, now):
        """A register write (value already checked in x2APIC mode)."""
        if off == ID:
            self._xapic_id = value >> 24          # xAPIC only: bits 31:24
        elif off == TPR:
            self.tpr = value & 0xFF
            self._notify()
        elif off == EOI:
            self._eoi()
        elif off == LDR:
            self.ldr = value & 0xFF000000
        elif off == DFR:
            self.dfr = value | 0x0FFFFFFF         # bits 27:0 read as 1s (SDM 11.6.2.2)
        elif off == SVR:
            self._write_svr(value)
        elif off == ESR:
            # Write then read: the write latches the errors logged since the
            # previous write (SDM 11.5.3).
            self.esr = self._esr_pending
            self._esr_pending = 0
        elif off in self.lvt:
            self._write_lvt(off, value, now)
        elif off == ICR_LOW:
            if self.x2apic_mode:
                self.icr = value & ((0xFFFFFFFF << 32) | _ICR_LOW_WRITABLE)
            else:
                self.icr = (self.icr & ~0xFFFFFFFF) | (value & _ICR_LOW_WRITABLE)
            self._send_icr()
        elif off == ICR_HIGH:
            self.icr = (self.icr & 0xFFFFFFFF) | ((value & 0xFF000000) << 32)
        elif off == TIMER_INITIAL:
            if self._timer_mode() != TIMER_TSC_DEADLINE:   # ignored there (SDM 11.5.4.1)
                self.timer_initial = value
                self._timer_start(now, value)
        elif off == TIMER_DIVIDE:
            if self._t_running and self._timer_mode() != TIMER_TSC_DEADLINE:
                # Go on from the count reached, at the new rate.
                count = self.current_count(now)
                self.timer_divide = value & _DCR_WRITABLE
                self._timer_start(now, count)
            else:
                self.timer_divide = value & _DCR_WRITABLE
        elif off == SELF_IPI:
            self._route(DEST_PHYSICAL, 0, SH_SELF, DM_FIXED, value & 0xFF, True, "edge")

    def _write_svr(self, value):
        self._svr_untouched = False
        self.svr = value & SVR_WRITABLE
        if not self.svr & SVR_ENABLE:
            # Software disable masks every LVT (SDM 11.4.7.2).
            for off in self.lvt:
                self.lvt[off] |= LVT_MASK
        self._notify()

    def _write_lvt(self, off, value, now):
        writable, readonly = _LVT_BITS[off]
        new = (self.lvt[off] & readonly) | (value & writable)
        if not self.software_enabled:
            new |= LVT_MASK                      # cannot unmask (SDM 11.4.7.2)
        if off == LVT_TIMER and (new >> 17) & 3 != self._timer_mode():
            # A mode change disarms the timer (SDM 11.5.4.1).
            self._t_running = False
            self.tsc_deadline = 0
        pin = {LVT_LINT0: 0, LVT_LINT1: 1}.get(off)
        was = self._lint_active(pin) if pin is not None else False
        self.lvt[off] = new
        if pin is not None:
            self._lint_eval(pin, was)

    # ------------------------------------------------------------------ IPIs

    def _send_icr(self):
        low = self.icr & 0xFFFFFFFF
        dest = self.icr >> 32 if self.x2apic_mode else (self.icr >> 56) & 0xFF
        self._route((low >> 11) & 1, dest, (low >> 18) & 3, (low >> 8) & 7, low & 0xFF,
                    bool(low >> 14 & 1), "level" if low >> 15 & 1 else "edge")

    def _route(self, dest_mode, dest, shorthand, mode, vector, level, trigger):
        if mode in (DM_FIXED, DM_LOWEST) and vector < 16:
            self._error(ESR_SEND_ILLEGAL_VECTOR)   # not sent (SDM 11.5.3)
            return
        if self.send_ipi is not None:
            self.send_ipi(self, dest_mode, dest, shorthand, mode, vector, level, trigger)
        else:
            ApicBus.route([self], self, dest_mode, dest, shorthand, mode, vector, level,
                          trigger)

    # --------------------------------------------------------- xAPIC page

    def mmio_read(self, addr, size):
        if not self.enabled or self.x2apic_mode:
            return (1 << (8 * size)) - 1
        off = addr & 0xFFF
        if size != 4 or off & 0xF:
            return 0
        if off not in _XAPIC_REGS:
            self._error(ESR_ILLEGAL_REGISTER)
            return 0
        now = self.clock.now_ns()
        self.advance(now)
        return self._read(off, now)

    def mmio_write(self, addr, size, value):
        if not self.enabled or self.x2apic_mode:
            return
        off = addr & 0xFFF
        if size != 4 or off & 0xF:
            return
        if off not in _XAPIC_REGS:
            self._error(ESR_ILLEGAL_REGISTER)
            return
        now = self.clock.now_ns()
        self.advance(now)
        self._write(off, value & 0xFFFFFFFF, now)

    # ------------------------------------------------------------- MSRs

    def msr_read(self, msr):
        """RDMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register."""
        _check_int("msr", msr, 0, 0xFFFFFFFF)
        if msr == MSR_APIC_BASE:
            return self._base_msr
        now = self.clock.now_ns()
        if msr == MSR_TSC_DEADLINE:
            self.advance(now)
            # Other timer modes read 0 (SDM 11.5.4.1).
            return self.tsc_deadline if self._timer_mode() == TIMER_TSC_DEADLINE else 0
        off, access = self._x2_check(msr)
        if access == "wo":
            raise ApicGp(f"RDMSR {msr:#x}: write-only x2APIC register (SDM Table 11-6)")
        self.advance(now)
        return self._read(off, now)

    def msr_write(self, msr, value):
        """WRMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register."""
        _check_int("msr", msr, 0, 0xFFFFFFFF)
        _check_int("MSR value", value, 0, (1 << 64) - 1)
        if msr == MSR_APIC_BASE:
            self.set_base_msr(value)
            return
        now = self.clock.now_ns()
        if msr == MSR_TSC_DEADLINE:
            self.advance(now)
            if self._timer_mode() == TIMER_TSC_DEADLINE and self.enabled:
                self.tsc_deadline = value
                self.advance(now)         # a deadline already passed fires now
            return
        off, access = self._x2_check(msr)
        if access == "ro":
            raise ApicGp(f"WRMSR {msr:#x}: read-only x2APIC register (SDM Table 11-6)")
        if off == ICR_LOW:
            bad = value & _X2_ICR_RESERVED
        elif value >> 32:
            bad = value & ~0xFFFFFFFF
        elif off == TPR:
            bad = value & ~0xFF
        elif off == SVR:
            bad = value & ~SVR_WRITABLE
        elif off in (EOI, ESR):
            bad = value               # only 0 may be written (SDM 11.12.1.2)
        elif off in _LVT_BITS:
            bad = value & ~(_LVT_BITS[off][0] | _LVT_BITS[off][1])
        elif off == TIMER_DIVIDE:
            bad = value & ~_DCR_WRITABLE
        elif off == SELF_IPI:
            bad = value & ~0xFF
        else:
            bad = 0                   # initial count: all 32 bits
        if bad:
            raise ApicGp(f"WRMSR {msr:#x}: reserved bits {bad:#x} set (SDM 11.12.1.3)")
        self.advance(now)
        self._write(off, value, now)

    def _x2_check(self, msr):
        if not 0x800 <= msr <= 0x8FF:
            raise ArgumentError(f"msr {msr:#x} is not a local APIC MSR "
                                "(0x1B, 0x6E0, 0x800-0x8FF)")
        if not self.x2apic_mode:
            raise ApicGp(f"MSR {msr:#x}: x2APIC registers need x2APIC mode (SDM 11.12.1.2)")
        reg = _X2_REGS.get(msr)
        if reg is None:
            raise ApicGp(f"MSR {msr:#x}: reserved x2APIC register (SDM Table 11-6)")
        return reg


class ApicBus:
    """The interrupt messages between local APICs and I/O APICs: holds the
    LocalApics and delivers each message to those its destination names
    (SDM 11.6.2).  :meth:`add` connects an APIC's ``send_ipi`` and ``on_eoi``
    to the bus; :meth:`add_ioapic` an I/O APIC's ``bus`` (so EOIs of
    level-triggered vectors reach it).  ``on_message(source, delivery_mode,
    targets)``, if set, sees each IPI after its delivery (the APICs it
    reached: none for a destination no APIC has)."""

    def __init__(self):
        self.apics = []
        self.ioapics = []
        self.on_message = None

    def add(self, apic):
        if not isinstance(apic, LocalApic):
            raise ArgumentError(f"ApicBus.add takes a LocalApic, not {apic!r}")
        if any(a.x2apic_id == apic.x2apic_id for a in self.apics):
            raise ArgumentError(f"ApicBus.add: APIC ID {apic.x2apic_id} is already on the bus")
        apic.send_ipi = self.send_ipi
        apic.on_eoi = self.eoi
        self.apics.append(apic)
        return apic

    def add_ioapic(self, ioapic):
        ioapic.bus = self
        self.ioapics.append(ioapic)
        return ioapic

    def get(self, apic_id):
        """The LocalApic whose x2APIC ID is ``apic_id``, or None."""
        for a in self.apics:
            if a.x2apic_id == apic_id:
                return a
        return None

    def eoi(self, vector):
        """An EOI of a level-triggered vector, broadcast to the I/O APICs."""
        for io in self.ioapics:
            io.eoi(vector)

    def send_ipi(self, source, dest_mode, dest, shorthand, delivery_mode, vector, level, trigger):
        """An IPI from ``source`` (the ICR's fields)."""
        targets = self.route(self.apics, source, dest_mode, dest, shorthand, delivery_mode, vector,
                             level, trigger)
        if self.on_message is not None:
            self.on_message(source, delivery_mode, targets)

    def deliver(self, dest_mode, dest, delivery_mode, vector, trigger="edge"):
        """A message from an I/O APIC (8-bit destination, no shorthand)."""
        self.route(self.apics, None, dest_mode, dest, SH_NONE, delivery_mode, vector, True,
                   trigger)

    @staticmethod
    def matches(apic, dest_mode, dest, x2):
        """Whether ``apic`` is named by ``dest`` (SDM 11.6.2.1-11.6.2.2,
        11.12.10).  ``x2``: a 32-bit destination (from an x2APIC-mode sender),
        else 8 bits.  All ones is the broadcast in both modes."""
        if not apic.enabled:
            return False
        if dest == (0xFFFFFFFF if x2 else 0xFF):
            return True
        if dest_mode == DEST_PHYSICAL:
            return apic.apic_id == dest
        if apic.x2apic_mode:
            ldr = apic.logical_id
            if not x2:
                return False
            return dest >> 16 == ldr >> 16 and bool(dest & ldr & 0xFFFF)
        ldr = apic.ldr >> 24
        if apic.dfr >> 28 == 0xF:                   # flat model
            return bool(dest & ldr)
        return dest >> 4 == ldr >> 4 and bool(dest & ldr & 0xF)   # cluster model

    @classmethod
    def route(cls, apics, source, dest_mode, dest, shorthand, mode, vector, level, trigger):
        """Deliver one message to those of ``apics`` it names; returns them."""
        if trigger not in _TRIGGERS:
            raise ArgumentError(f"trigger must be 'edge' or 'level', not {trigger!r}")
        if mode == DM_INIT and not level and trigger == "level":
            # INIT level de-assert (level 0, level-triggered) only
            # synchronised arbitration IDs on the 3-wire APIC bus: the
            # Pentium 4 and later ignore it (SDM 11.6.1).
            return []
        if shorthand == SH_SELF:
            targets = [source] if source is not None and source.enabled else []
        elif shorthand == SH_ALL_INCL_SELF:
            targets = [a for a in apics if a.enabled]
        elif shorthand == SH_ALL_EXCL_SELF:
            targets = [a for a in apics if a.enabled and a is not source]
        else:
            x2 = source is not None and source.x2apic_mode
            targets = [a for a in apics if cls.matches(a, dest_mode, dest, x2)]
        if not targets:
            return targets
        if mode == DM_LOWEST:
            targets = [cls.arbitrate(targets, vector)]
            mode = DM_FIXED
        for t in targets:
            if mode == DM_FIXED:
                t.deliver_fixed(vector, trigger)
            elif mode == DM_NMI:
                t.deliver_nmi()
            elif mode == DM_INIT:
                t.deliver_init()
            elif mode == DM_STARTUP:
                t.deliver_sipi(vector)
            elif mode == DM_EXTINT:
                t.deliver_extint()
            # SMI and the reserved modes 3: ignored (no SMM in the model).
        return targets

    @staticmethod
    def arbitrate(targets, vector):
        """Lowest-priority delivery (SDM 11.6.2.4): the focus processor (one
        that has the vector in service or pending, with focus checking on),
        else the processor with the lowest PPR, the lowest APIC ID on ties."""
        for t in targets:
            if not t.svr & SVR_FOCUS_DISABLE and ((t.isr | t.irr) >> vector) & 1:
                return t
        return min(targets, key=lambda t: (t.ppr() >> 4, t.apic_id))
