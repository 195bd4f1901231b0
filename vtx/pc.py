"""A PC as a hosted hypervisor builds one: :class:`PcMachine`.

What a small KVM-based VMM gives its guest, in Python on vtx: RAM at 0, the
legacy devices of a PC at their usual ports (the 8259A PIC pair, the 8254 PIT
with port 61H, the MC146818 RTC, a 16550A UART as COM1, the 8042 keyboard
controller's reset line and port 92H, the POST port, PCI configuration
mechanism #1 with a host bridge, a debug-exit port), and the exit handling
every guest OS needs beyond the devices (docs/architecture.rst, "The
platform"):

- CPUID from the CPU model, with the "hypervisor present" bit (CPUID.1:ECX
  bit 31) that a VMM sets, and an empty hypervisor leaf range 40000000H;
- no MSR exits (the MSR bitmap is clear): the model's MSRs serve the guest;
- XSETBV, which exits unconditionally in VMX non-root operation (SDM Vol. 3C
  26.1.2), emulated with its #GP conditions (SDM Vol. 2 XSETBV);
- INVD, also unconditional, as a no-op (the model has no caches to drop);
- "enable INVPCID" and "enable RDTSCP", without which those instructions are
  #UD in VMX non-root operation (SDM Vol. 3C 26.3), as KVM sets them;
- a triple fault, the reset line and the debug-exit port stop the machine
  with the reason in ``platform.stopped``.

With ``cpus=N`` (and ``apic``) it is a multiprocessor: vCPU 0 is the
bootstrap processor, the others application processors waiting for the
INIT-SIPI-SIPI sequence (SDM Vol. 3A 9.4), each with its own local APIC on one
APIC bus (docs/architecture.rst, "Several vCPUs on the platform").
"""

from . import devices as _dev
from .cpu_model import CpuModel
from .devices.lapic import BASE_EXTD, MSR_TSC_DEADLINE, ApicGp
from .platform import Platform
from .spec import EntryControls, ProcBased, ProcBased2, VmcsField as F
from .vm import RESUME, RETRY, STOP, VM

#: The hypervisor-present bit: CPUID.1:ECX[31] (SDM Vol. 2A CPUID: "not used",
#: which VMMs set and guests read as "running on a hypervisor").
CPUID_HYPERVISOR = 1 << 31
#: "APIC on chip": CPUID.1:EDX[9].  The local APIC is a device of the platform
#: here (vtx.devices.LocalApic), so the platform, not the CPU model, says so.
CPUID_APIC = 1 << 9
#: x2APIC: CPUID.1:ECX[21], likewise the platform's to say (``x2apic``).
CPUID_X2APIC = 1 << 21
#: The APIC timer's TSC-deadline mode: CPUID.1:ECX[24] (``tsc_deadline``).
CPUID_TSC_DEADLINE = 1 << 24
#: ISA IRQ -> I/O APIC input (the MADT's Interrupt Source Override): the
#: PIT's IRQ 0 is wired to input 2, as on PCs (input 0 takes the 8259's INTR).
ISA_TO_GSI = {0: 2}
#: Where the ACPI tables go: in the BIOS area below 1 MiB, which the E820 map
#: reserves (an OS also finds the RSDP there by scanning E0000H-FFFFFH).
ACPI_TABLES = 0xE0000
_MSR_BITMAP = 0x3000          # vtx.vm's private-memory layout

#: The time-stamp counter's frequency, as CPUID tells it (SDM Vol. 2A CPUID
#: leaves 15H and 16H): the model's TSC advances one tick per retired
#: instruction and the platform's clock takes that as 1 ns, so the TSC runs at
#: 1 GHz: a 25 MHz crystal times 40/1, base and maximum frequency 1000 MHz,
#: bus 100 MHz.  A kernel that reads these (Linux does on Intel processors)
#: needs no calibration against the PIT.  The leaves between the model's
#: highest and 16H enumerate nothing (zeros).
TSC_LEAVES = {0x15: (1, 40, 25_000_000, 0), 0x16: (1000, 1000, 100, 0)}
TSC_LEAVES_MAX = 0x16


class ApicRouter:
    """What the vCPU's INTR sees with a local APIC in front of the 8259 PIC
    (SDM Vol. 3A 11.4.1; the MP specification's "virtual wire" mode): the
    APIC's own pending vector first, else the PIC's request through LINT0
    when that is programmed as ExtINT (or the APIC is disabled and LINT0 is
    the INTR pin).  A device's ISA interrupt line goes to the PIC and to the
    I/O APIC input the ACPI tables name for it (IRQ 0 on GSI 2, the others
    on the input of their number).  ``pic`` None: an application processor,
    whose LINT0 the 8259 does not drive (only the BSP's is wired to it)."""

    def __init__(self, lapic, pic, ioapic=None):
        self.lapic = lapic
        self.pic = pic
        self.ioapic = ioapic

    def set_irq(self, line, level):
        self.pic.set_irq(line, level)
        if self.ioapic is not None:
            self.ioapic.set_irq(ISA_TO_GSI.get(line, line), level)

    def pending(self):
        if self.lapic.pending() is not None:
            return True
        return self.pic is not None and self.pic.pending() and self.lapic.lint0_extint()

    def acknowledge(self):
        if self.lapic.pending() is not None:
            return self.lapic.acknowledge()
        return self.pic.acknowledge()


def legacy_cpu_model():
    """The CPU model of a PC without a local APIC: interrupts come from the
    8259A PIC through INTR (what the PIC-only :class:`PcMachine` serves)."""
    return CpuModel("default", remove=["APIC", "X2APIC", "TSC_DEADLINE"])


def apic_cpu_model():
    """The CPU model of a PC with an xAPIC: the CPU's own features (the
    x2APIC and the TSC-deadline timer are not among them: the platform
    serves the xAPIC page by MMIO, with ``x2apic`` the x2APIC MSRs by
    RDMSR/WRMSR exits, and adds the APIC and x2APIC bits to CPUID)."""
    return CpuModel("default", remove=["X2APIC", "TSC_DEADLINE"])


_GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
_CR0_NE, _CR0_NW, _CR0_CD, _CR0_PG = 1 << 5, 1 << 29, 1 << 30, 1 << 31
_DELIVERY_NAMES = {0: "fixed", 1: "lowest", 2: "smi", 4: "nmi", 5: "init", 6: "startup", 7: "extint"}


class _ApicWindow:
    """One vCPU's view of an xAPIC page mapped at ``base``: its own APIC,
    if its IA32_APIC_BASE is that page; otherwise nothing answers there
    (reads all ones, writes dropped), as on a processor whose APIC is
    elsewhere.  The timer is the APIC's."""

    def __init__(self, lapic, base):
        self.lapic = lapic
        self.base = base
        self.name = lapic.name

    def mmio_read(self, addr, size):
        if self.lapic.base != self.base:
            return (1 << (8 * size)) - 1
        return self.lapic.mmio_read(addr, size)

    def mmio_write(self, addr, size, value):
        if self.lapic.base == self.base:
            self.lapic.mmio_write(addr, size, value)

    def next_deadline(self):
        return self.lapic.next_deadline()


class PcMachine:
    """A VM with a PC's devices, served by a :class:`~vtx.platform.Platform`.

    ``memory``: RAM size in bytes (at guest-physical 0).  ``cpu``: a
    :class:`vtx.CpuModel` (default :func:`legacy_cpu_model`, or
    :func:`apic_cpu_model` with ``apic``).  ``console``: called with the
    bytes the guest writes to COM1 (default: collected only, in
    ``machine.uart.output``).  ``clock``: a :mod:`vtx.devices` clock
    (default deterministic, one nanosecond per instruction).  ``apic``: add a
    local APIC (FEE00000H, by MMIO), an I/O APIC (FEC00000H) and the ACPI
    tables that describe them (RSDP at ``machine.acpi_rsdp``).  ``cpus``:
    the number of vCPUs (1-64; more than one needs ``apic``): vCPU 0
    (``machine.vcpu``) is the bootstrap processor, the others
    (``machine.vcpus``) wait for a SIPI, each with its local APIC
    (``machine.lapics``, APIC IDs 0 to N-1).  ``x2apic`` (needs ``apic``):
    CPUID offers the x2APIC, and a guest that sets IA32_APIC_BASE.EXTD
    reaches its APIC's registers by RDMSR/WRMSR of MSRs 800H-8FFH (SDM Vol.
    3A 11.12); without it EXTD is a reserved bit (#GP).  ``tsc_deadline``
    (needs ``apic``): CPUID offers the timer's TSC-deadline mode and
    IA32_TSC_DEADLINE (6E0H) is the APIC's (SDM Vol. 3A 11.5.4.1)."""

    def __init__(self, memory=256 << 20, cpu=None, console=None, clock=None, apic=False, cpus=1,
                 x2apic=False, tsc_deadline=False):
        from .vm import MAX_VCPUS
        if isinstance(cpus, bool) or not isinstance(cpus, int) or not 1 <= cpus <= MAX_VCPUS:
            raise ValueError(f"cpus is an int in [1, {MAX_VCPUS}], not {cpus!r}")
        if cpus > 1 and not apic:
            raise ValueError(f"cpus={cpus} needs apic=True: the processors start one another, and "
                             "take their interrupts, through their local APICs")
        if x2apic and not apic:
            raise ValueError("x2apic=True needs apic=True: the x2APIC is a mode of the local APIC")
        if tsc_deadline and not apic:
            raise ValueError("tsc_deadline=True needs apic=True: the TSC deadline is the local APIC timer's")
        self.x2apic = bool(x2apic)
        self.tsc_deadline = bool(tsc_deadline)
        if cpu is None:
            cpu = apic_cpu_model() if apic else legacy_cpu_model()
        self.vm = VM(memory=memory, cpu=cpu)
        self.vcpu = self.vm.add_vcpu()
        for _ in range(cpus - 1):
            # An application processor after RESET: it waits for the
            # INIT-SIPI-SIPI of the BSP (SDM Vol. 3A 9.4.1).
            self.vm.add_vcpu(wait_for_sipi=True)
        self.vcpus = self.vm.vcpus
        self.platform = p = Platform(self.vm, clock)
        self.clock = p.clock
        priv = self.vm._priv
        priv[_MSR_BITMAP:_MSR_BITMAP + 4096] = bytes(4096)
        del priv
        # The instructions CPUID offers run in the guest instead of #UD, as
        # KVM sets them up: INVPCID, RDTSCP, XSAVES/XRSTORS, with which Linux
        # keeps its tasks' FPU state (the XSS-exiting bitmap stays 0), and
        # UMONITOR/UMWAIT/TPAUSE, with which it waits in udelay.
        for v in self.vcpus:
            v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS,
                      v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | ProcBased.USE_MSR_BITMAPS)
            v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, v.vmread(F.SECONDARY_PROC_BASED_CONTROLS)
                      | ProcBased2.ENABLE_INVPCID | ProcBased2.ENABLE_RDTSCP
                      | ProcBased2.ENABLE_XSAVES_XRSTORS | ProcBased2.ENABLE_USER_WAIT_AND_PAUSE)
        self._attach_devices(console)
        self._firmware_init()
        self.lapic = None
        self.lapics = ()
        self.ipis = {}                 # delivery mode name -> messages delivered (one per target)
        if apic:
            self._attach_apic()
        self._max_leaf = self.vcpu.model_cpuid(0, 0)[0]
        vm = self.vm
        vm.on("CPUID")(self._cpuid)
        vm.on("XSETBV")(self._xsetbv)
        vm.on("INVD")(lambda vcpu, exit: RESUME)
        vm.on("TRIPLE_FAULT")(self._triple_fault)
        vm.on("RDMSR", "WRMSR")(self._msr)
        vm.on("CONTROL_REGISTER_ACCESS")(self._cr_access)
        vm.on("INIT_SIGNAL")(self._init_signal)
        vm.on("STARTUP_IPI")(self._startup_ipi)

    def _attach_devices(self, console):
        p = self.platform
        self.pic = p.attach(_dev.Pic8259Pair())
        p.pic = self.pic
        self.pit = p.attach(_dev.Pit8254(clock=p.clock, irq=_dev.IrqLine(p, 0)))
        self.rtc = p.attach(_dev.CmosRtc(clock=p.clock, irq=_dev.IrqLine(p, 8)))
        self.rtc.set_memory_size(self.vm.memory_size)
        self.uart = p.attach(_dev.Uart16550(base=0x3F8, irq=_dev.IrqLine(p, 4), clock=p.clock))
        if console is not None:
            self.uart.on_output = console
        self.kbc = p.attach(_dev.I8042(on_reset=lambda: self._stop("reset")))
        p.attach(_dev.SystemControlA(on_reset=lambda: self._stop("reset")))
        self.post = p.attach(_dev.PostCode())
        self.debug_exit = p.attach(_dev.DebugExit(on_exit=lambda code: self._stop(f"debug-exit {code}")))
        self.pci = p.attach(_dev.PciHost()) if hasattr(_dev, "PciHost") else None

    def _attach_apic(self):
        """A local APIC per vCPU at FEE00000H, APIC IDs 0 to N-1, on one APIC
        bus with the I/O APIC.  The timers count at the crystal frequency
        CPUID leaf 15H reports (25 MHz), which is what a kernel that trusts
        that leaf programs them for.  IA32_APIC_BASE exits (the MSR bitmap's
        read and write bits for 1BH, SDM Vol. 3C 25.6.9) so an APIC sees
        moves and disables.  The BSP's LINT0 takes the 8259's INTR."""
        from . import acpi
        p = self.platform
        self.apic_bus = _dev.ApicBus()
        bus_hz = TSC_LEAVES[0x15][2]
        self.lapics = tuple(_dev.LocalApic(p.clock, apic_id=i, bsp=(i == 0), bus_hz=bus_hz)
                            for i in range(len(self.vcpus)))
        self.lapic = self.lapics[0]
        for v, lapic in zip(self.vcpus, self.lapics):
            self.apic_bus.add(lapic)
            self._connect(v, lapic)
        self.apic_bus.on_message = self._count_ipi
        # The I/O APIC's ID after the processors' (4 bits: with 16 vCPUs or
        # more, 0; I/O APIC IDs are a name space of their own for the OS).
        n = len(self.vcpus)
        self.ioapic = self.apic_bus.add_ioapic(_dev.IoApic(ioapic_id=n if n < 16 else 0))
        for lapic in self.lapics:
            p.attach(lapic, ports=(), mmio=())
        self._apic_windows = {}
        self._map_apics()
        p.attach(self.ioapic, mmio=(self.ioapic.base & ~0xFFF, 0x1000))
        p.pic = ApicRouter(self.lapic, self.pic, self.ioapic)
        for v, lapic in zip(self.vcpus[1:], self.lapics[1:]):
            p.intr[v.index] = ApicRouter(lapic, None)
        self.acpi_pm = p.attach(_dev.AcpiPm(acpi.PM1A_EVT_BLK, acpi.PM1A_CNT_BLK,
                                            on_sleep=lambda typ: self._stop("power off")))
        tables, self.acpi_rsdp = acpi.build(ACPI_TABLES, apic_ids=tuple(range(n)), ioapic_base=self.ioapic.base,
                                            ioapic_id=self.ioapic.initial_id)
        self.vm.write(ACPI_TABLES, tables)
        priv = self.vm._priv
        for off in (0, 2048):                      # read low, write low
            priv[_MSR_BITMAP + off + (0x1B >> 3)] |= 1 << (0x1B & 7)
            if self.x2apic:
                # MSRs 800H-8FFH (SDM Vol. 3A Table 11-6) exit too: the
                # APIC is the platform's device, not the model's.
                priv[_MSR_BITMAP + off + (0x800 >> 3):_MSR_BITMAP + off + (0x900 >> 3)] = b"\xff" * 32
            if self.tsc_deadline:
                priv[_MSR_BITMAP + off + (MSR_TSC_DEADLINE >> 3)] |= 1 << (MSR_TSC_DEADLINE & 7)
        del priv

    def _connect(self, vcpu, lapic):
        """What the APIC bus delivers to a processor (SDM Vol. 3A 11.6.1):
        an NMI is pending at the vCPU; INIT is the INIT signal, a VM exit in
        VMX non-root operation (SDM Vol. 3C 26.2) that :meth:`_init_signal`
        answers, except for a processor already waiting for a SIPI, which
        blocks INIT (27.7.2): what a hypervisor emulating the APIC does for
        it is to leave it waiting, in its INIT state; a start-up IPI is the
        SIPI signal, an exit in the wait-for-SIPI state (discarded in the
        others), which :meth:`_startup_ipi` answers."""
        p = self.platform

        def init():
            if vcpu.activity_state == 3:
                vcpu.init()
            else:
                vcpu.raise_init()
        lapic.on_nmi = lambda: p.signal(vcpu, vcpu.raise_nmi)
        lapic.on_init = lambda: p.signal(vcpu, init)
        lapic.on_sipi = lambda vector: p.signal(vcpu, lambda: vcpu.raise_sipi(vector))

    def _count_ipi(self, source, mode, targets):
        """Each interrupt message the bus delivered: counted per delivery
        mode (``machine.ipis``); one for another processor ends the
        sender's turn (the platform's kick), so the target runs soon."""
        name = _DELIVERY_NAMES.get(mode, str(mode))
        self.ipis[name] = self.ipis.get(name, 0) + len(targets)
        if any(t is not source for t in targets):
            self.platform._kick = True

    def _map_apics(self):
        """Map the xAPIC page at every base an APIC has (FEE00000H unless a
        guest moved one): an access there goes to the APIC of the vCPU that
        made it, which decodes it only if its own base is that one."""
        bases = {lapic.base for lapic in self.lapics}
        for base in list(self._apic_windows):
            if base not in bases:
                self.vm.unmap_mmio(base)
                del self._apic_windows[base]
        for base in sorted(bases - set(self._apic_windows)):
            windows = [_ApicWindow(lapic, base) for lapic in self.lapics]
            self._apic_windows[base] = windows
            self.vm.map_mmio(base, 0x1000, self.platform.mmio_target(windows))

    def _apic_msr(self, vcpu, exit):
        lapic = self.lapics[vcpu.index]
        if exit.reason == 31:          # RDMSR
            value = lapic.base_msr
            vcpu.rax, vcpu.rdx = value & 0xFFFFFFFF, value >> 32
            return RESUME
        value = ((vcpu.rdx & 0xFFFFFFFF) << 32) | (vcpu.rax & 0xFFFFFFFF)
        # EXTD (bit 10) is reserved where CPUID.1:ECX[21] says no x2APIC
        # (SDM Vol. 3A 11.12.1, Table 11-5): #GP(0) like any reserved bit.
        if value & BASE_EXTD and not self.x2apic:
            vcpu.inject(13, error_code=0)
            return RETRY
        try:
            lapic.set_base_msr(value)
        except ApicGp:
            vcpu.inject(13, error_code=0)
            return RETRY
        self._map_apics()
        self.platform.sync_interrupts(vcpu)
        return RESUME

    def _x2apic_msr(self, vcpu, exit):
        """RDMSR/WRMSR of an x2APIC register (MSR 800H + offset / 16, SDM
        Vol. 3A 11.12.1.2), or of IA32_TSC_DEADLINE (11.5.4.1: a write
        arms the timer in TSC-deadline mode and is ignored in the others,
        which read 0): served by the vCPU's own APIC, #GP(0) for every
        condition of 11.12.1.2-11.12.1.3 (not in x2APIC mode, a reserved or
        write-only/read-only register, reserved bits).  After a write the
        platform looks at what it changed, as after an MMIO store: an
        interrupt now deliverable (a self-IPI, an EOI that uncovers a
        lower vector) is injected at this entry, after the WRMSR, which
        is where the processor recognizes it; an IPI to another vCPU or a
        timer deadline inside the slice ends the run there."""
        lapic = self.lapics[vcpu.index]
        msr = vcpu.rcx & 0xFFFFFFFF
        try:
            if exit.reason == 31:      # RDMSR
                value = lapic.msr_read(msr)
                vcpu.rax, vcpu.rdx = value & 0xFFFFFFFF, value >> 32
                return RESUME
            lapic.msr_write(msr, ((vcpu.rdx & 0xFFFFFFFF) << 32) | (vcpu.rax & 0xFFFFFFFF))
        except ApicGp:
            vcpu.inject(13, error_code=0)
            return RETRY
        self.platform.sync_interrupts(vcpu)
        self.platform.after_write(vcpu, lapic)
        return RESUME

    def _init_signal(self, vcpu, exit):
        """INIT (exit reason 3): the vCPU takes its INIT state and waits for
        a SIPI (SDM Vol. 3A 9.4.4; its APIC took its INIT state when the
        message arrived)."""
        vcpu.init()
        self.platform._set_window(vcpu, False)
        return RETRY

    def _startup_ipi(self, vcpu, exit):
        """SIPI (exit reason 4, the vector in the qualification): real mode
        at CS = vector << 8, base vector << 12, IP = 0 (SDM Vol. 3A 9.4.4,
        11.6.1)."""
        vcpu.sipi(exit.qualification & 0xFF)
        return RETRY

    def _firmware_init(self):
        """What PC firmware leaves in the interrupt controllers before it
        starts an OS (the IBM PC BIOS convention): the 8259 pair initialized
        (ICW1-ICW4: edge triggered, cascaded on IR2, vectors 08H-0FH and
        70H-77H, 8086 mode) and every line masked.  An OS that uses the APIC
        never programs the 8259 and relies on it being masked."""
        for port, value in ((0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01),
                            (0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01),
                            (0x21, 0xFF), (0xA1, 0xFF)):
            self.pic.io_write(port, 1, value)

    def _stop(self, why):
        self.platform.stopped = why

    # --- exits ----------------------------------------------------------------------

    def _cpuid(self, vcpu, exit):
        leaf, sub = vcpu.rax & 0xFFFFFFFF, vcpu.rcx & 0xFFFFFFFF
        if 0x40000000 <= leaf <= 0x400000FF:
            a = b = c = d = 0             # no hypervisor interface to advertise
        elif self._max_leaf < leaf <= TSC_LEAVES_MAX:
            a, b, c, d = TSC_LEAVES.get(leaf, (0, 0, 0, 0))
        else:
            a, b, c, d = vcpu.model_cpuid(leaf, sub)
            if leaf == 0:
                a = max(a, TSC_LEAVES_MAX)
            elif leaf == 1:
                c |= CPUID_HYPERVISOR
                if self.x2apic:
                    c |= CPUID_X2APIC
                if self.tsc_deadline:
                    c |= CPUID_TSC_DEADLINE
                if self.lapic is not None:
                    d |= CPUID_APIC           # the platform's local APIC is on the "chip"
        vcpu.rax, vcpu.rbx, vcpu.rcx, vcpu.rdx = a, b, c, d
        return RESUME

    def _xsetbv(self, vcpu, exit):
        """XSETBV (SDM Vol. 2 XSETBV): ECX must be 0 and the value must keep
        x87 (bit 0), set only supported components, and not AVX without SSE;
        otherwise #GP(0).  The CPL and CR4.OSXSAVE faults come before the exit."""
        value = ((vcpu.rdx & 0xFFFFFFFF) << 32) | (vcpu.rax & 0xFFFFFFFF)
        supported = vcpu.model_cpuid(0xD, 0)[0] | (vcpu.model_cpuid(0xD, 0)[3] << 32)
        if vcpu.rcx & 0xFFFFFFFF or not value & 1 or value & ~supported or (value & 6) == 4:
            vcpu.inject(13, error_code=0)
            return RETRY
        vcpu.xcr0 = value
        return RESUME

    def _msr(self, vcpu, exit):
        """MSR exits: IA32_APIC_BASE with an APIC, the x2APIC MSRs with
        ``x2apic``, IA32_TSC_DEADLINE with ``tsc_deadline``; the MSRs the bitmap cannot
        cover (outside 0-1FFFH and C0000000H-C0001FFFH always exit, SDM Vol.
        3C 26.1.3) are not the model's: #GP(0), as for a missing MSR."""
        msr = vcpu.rcx & 0xFFFFFFFF
        if self.lapics and msr == 0x1B:
            return self._apic_msr(vcpu, exit)
        if (self.x2apic and 0x800 <= msr <= 0x8FF) or (self.tsc_deadline and msr == MSR_TSC_DEADLINE):
            return self._x2apic_msr(vcpu, exit)
        vcpu.inject(13, error_code=0)
        return RETRY

    def _cr_access(self, vcpu, exit):
        """MOV to CR0 of a bit the hypervisor owns (SDM Vol. 3C 26.1.3:
        a bit set in CR0_GUEST_HOST_MASK whose new value differs from the
        read shadow).  After INIT a processor has CR0.NE = 0, which VMX
        operation does not allow (IA32_VMX_CR0_FIXED0, SDM Vol. 3D A.7), so
        an application processor runs with NE = 1 and the guest reads 0
        through the shadow (vtx.VCpu.init); its first MOV to CR0 that
        changes NE exits here and is emulated (SDM Vol. 2B MOV, "Move
        to/from Control Registers"): #GP(0) for bits 63:32, NW without CD,
        or PG without PE; else CR0 with NE forced to 1, the shadow the
        value written, and, when PG turns on with IA32_EFER.LME, IA-32e mode
        (EFER.LMA and the "IA-32e mode guest" entry control, SDM Vol. 3A
        10.8.5).  Once the guest's own NE is 1 the hypervisor needs no
        shadow: the mask is cleared.  A write of CR4.VMXE (the other bit the
        hypervisor owns) is #GP(0): the guest has no VMX."""
        q = exit.qualification
        cr, kind, gpr = q & 15, (q >> 4) & 3, (q >> 8) & 15
        if cr != 0 or kind != 0:
            vcpu.inject(13, error_code=0)
            return RETRY
        value = getattr(vcpu, _GPRS[gpr])
        long_mode = vcpu.efer & (1 << 10)
        if not long_mode:
            value &= 0xFFFFFFFF
        if value >> 32 or (value & _CR0_NW and not value & _CR0_CD) or (value & _CR0_PG and not value & 1):
            vcpu.inject(13, error_code=0)
            return RETRY
        old = vcpu.cr0
        if value & _CR0_PG and not old & _CR0_PG and vcpu.efer & (1 << 8):
            vcpu.efer = vcpu.efer | (1 << 10)
            vcpu.vmwrite(F.VM_ENTRY_CONTROLS, vcpu.vmread(F.VM_ENTRY_CONTROLS) | EntryControls.IA32E_MODE_GUEST)
        elif not value & _CR0_PG and old & _CR0_PG and long_mode:
            vcpu.efer = vcpu.efer & ~(1 << 10)
            vcpu.vmwrite(F.VM_ENTRY_CONTROLS, vcpu.vmread(F.VM_ENTRY_CONTROLS) & ~EntryControls.IA32E_MODE_GUEST)
        vcpu.cr0 = value | _CR0_NE
        vcpu.vmwrite(F.CR0_READ_SHADOW, value)
        if value & _CR0_NE:
            vcpu.vmwrite(F.CR0_GUEST_HOST_MASK, 0)
        return RESUME

    def _triple_fault(self, vcpu, exit):
        self._stop("triple fault")
        return STOP

    # --- running --------------------------------------------------------------------

    def run(self, max_instructions=None, until=None):
        """Run until a device stops the machine, ``until()`` is true, or
        ``max_instructions``; returns why (see :meth:`Platform.run`)."""
        return self.platform.run(max_instructions=max_instructions, until=until)

    def gdb_serve(self, port=1234, host="127.0.0.1", ready=None):
        """Serve gdb (:meth:`vtx.VM.gdb_serve`) with the PC's run loop, so
        that its devices keep time while gdb continues the guest."""
        return self.vm.gdb_serve(port, host, ready, run=lambda n: self.run(max_instructions=n))

    def save(self, path):
        """Save the whole machine: the VM (processor, VMCS, memory) and every
        device's state (vtx.snapshot; a file that does not fit is refused
        with a SnapshotError and changes nothing)."""
        return self.vm.save(path, extra={"platform": self.platform.get_state(), "pc": self._options()})

    def _options(self):
        """What the PC was built with that its exit handling depends on (the
        devices alone do not tell x2APIC or TSC-deadline support apart)."""
        return {"apic": bool(self.lapics), "cpus": len(self.vcpus), "tsc_deadline": self.tsc_deadline,
                "x2apic": self.x2apic}

    def restore(self, path):
        """Bring the machine back to a state :meth:`save` wrote."""
        from . import snapshot
        from .errors import SnapshotError
        snap = snapshot.read(path)
        state = snap.extra.get("platform")
        if not isinstance(state, dict):
            raise SnapshotError(f"{path} is a snapshot of a VM, not of a PC (no platform state)")
        names = [name for name, _ in state.get("devices", [])]
        if names != [d.name for d in self.platform.devices]:
            raise SnapshotError(f"the snapshot's devices {names} are not this PC's "
                                f"{[d.name for d in self.platform.devices]}")
        options = snap.extra.get("pc")          # (absent from snapshots of earlier versions)
        if options is not None and options != self._options():
            raise SnapshotError(f"{path} is a snapshot of a PC built with {dict(sorted(options.items()))}, "
                                f"this one is built with {self._options()}")
        snapshot.apply(snap, self.vm)
        self.platform.set_state(state)
        if self.lapics:
            self._map_apics()           # the APIC pages where the saved APICs have them

    def type(self, text):
        """Send ``text`` to the guest through COM1's receiver."""
        if isinstance(text, str):
            text = text.encode()
        self.uart.feed(bytes(text))
        self.platform.sync_interrupts()
