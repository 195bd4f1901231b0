"""A platform around a :class:`vtx.VM`: devices, interrupt routing, virtual time.

The :class:`Platform` is the part of a hosted hypervisor that is not about
VT-x itself (docs/architecture.rst, "The platform"): it serves the guest's
port I/O and MMIO from :mod:`vtx.devices` objects, routes their interrupt
requests to the interrupt controller, and *injects* the interrupts the
controller presents, the way a VMX hypervisor does it (SDM Vol. 3C 27.6,
"Event injection"): when the guest can take an interrupt (RFLAGS.IF = 1, no
blocking by STI or MOV SS) the vector goes into the VM-entry
interruption-information field at the next VM entry; when it cannot, the
platform sets "interrupt-window exiting" and injects at the exit that follows
the moment it can.  Time is the guest's: a :class:`~vtx.devices.InstructionClock`
advances one nanosecond per retired instruction (the model's TSC runs at
1 GHz), the platform runs the guest up to the next timer deadline, and a
halted guest skips ahead to it (its TSC follows, through the TSC offset).

With several vCPUs (``vm.add_vcpu`` before the platform is made) each has its
own interrupt source (``platform.intr``), injection and interrupt window; they
run round-robin (``vm.run``), and the clock counts the instructions of all of
them: time is sequential, and at the start of each vCPU's turn its TSC offset
makes its TSC read that one clock (docs/architecture.rst, "Several vCPUs on
the platform").
"""

from .devices.base import InstructionClock
from .errors import ArgumentError, GuestMemoryError
from .spec import ProcBased, VmcsField as F
from .vm import RESUME, RETRY, STOP

_VALID = 1 << 31
_IF = 1 << 9
_MASK64 = (1 << 64) - 1
_HLT = 1                        # GUEST_ACTIVITY_STATE: HLT (SDM Vol. 3C 25.4.2)
_WAIT_FOR_SIPI = 3


class Platform:
    """Devices attached to a VM's ports and guest-physical ranges, and the
    interrupt and time plumbing between them and the vCPU.

    ``vm`` must have its vCPUs (``vm.add_vcpu()``); the platform serves all
    of them (``platform.vcpus``), the first (``vm.vcpu``) being the one whose
    INTR the interrupt controller ``platform.pic`` drives; another vCPU's
    interrupts come from ``platform.intr[index]`` (an object with ``pending()``
    and ``acknowledge()``, as a local APIC router).  It registers its handlers
    for I/O, HLT and interrupt-window exits; register your own for other
    reasons as usual."""

    def __init__(self, vm, clock=None):
        self.vm = vm
        self.vcpu = vm.vcpu
        self.vcpus = list(vm.vcpus)
        self._smp = len(self.vcpus) > 1
        vcpus = self.vcpus
        if self._smp:
            # Sequential time: every instruction of every vCPU is a
            # nanosecond of the one clock.
            self.clock = clock or InstructionClock(lambda: sum(v.instructions for v in vcpus))
        else:
            self.clock = clock or InstructionClock(lambda: self.vcpu.instructions)
        self.devices = []
        self._ports = [None] * 0x10000
        self.pic = None                 # the interrupt controller whose INTR the first vCPU sees
        self.intr = [None] * len(vcpus)  # the other vCPUs' interrupt sources (pending(), acknowledge())
        self.timers = []                # devices with deadlines
        self.stopped = None             # why the platform stopped the guest (set by devices)
        self.injected = 0               # interrupts injected
        self.io_exits = 0
        # Accounting over every vm.run the platform made (reset_stats).
        self.exits = {}                 # ExitReason -> count
        self.exit_ns = {}               # ExitReason -> wall ns, exit to next entry
        self.instructions = 0
        self.wall_ns = 0
        self._windows = [False] * len(vcpus)   # interrupt-window exiting, per vCPU
        self._slice_end = 0             # clock time at which the current vm.run slice ends
        self._in_run = False            # inside Platform.run (whose slices may be ended early)
        self._reslice = False
        #: REP INS/OUTS iterations the platform emulated (string I/O exits).
        #: They count toward Platform.run's budget as the steps they are.
        self.string_iterations = 0
        self._slice_budget = 0          # steps the current vm.run slice may take
        self._slice_string = 0          # string I/O iterations emulated in it
        self._slice_start = 0           # instructions retired when it started
        self._string_stop = None        # the vCPU a STOP left on an unfinished REP INS/OUTS
        self._kick = False              # an event for another vCPU: end the sender's turn
        self._writer = None             # the vCPU whose MMIO store a device is serving
        self._deferred = []             # (vcpu, signal) for that vCPU after its store
        self.quantum = 10_000           # steps per vCPU turn with several vCPUs
        for v in vcpus:
            # The guest's own exceptions go to its own IDT; port I/O exits for
            # the devices; the TSC offset carries the time a halted guest
            # skipped (and, with several vCPUs, the others' instructions).
            v.vmwrite(F.EXCEPTION_BITMAP, 0)
            v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS,
                      v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | ProcBased.USE_TSC_OFFSETTING)
        if self._smp:
            vm.on_turn = self._turn
        vm.on("IO_INSTRUCTION")(self._io_exit)
        vm.on("HLT")(self._hlt_exit)
        vm.on("INTERRUPT_WINDOW")(self._window_exit)

    # --- attaching ---------------------------------------------------------------

    def attach(self, device, ports=None, mmio=None):
        """Attach ``device`` at ``ports`` ((first, count) or a list of them;
        default: its ``ports`` attribute) and at ``mmio`` ((base, size);
        default: its ``mmio`` attribute).  A device whose class has
        ``next_deadline`` overridden is a timer: the platform stops the guest
        at its deadlines and calls its ``advance``.  Returns the device."""
        ports = ports if ports is not None else getattr(device, "ports", None)
        mmio = mmio if mmio is not None else getattr(device, "mmio", None)
        if ports:
            if isinstance(ports[0], int):
                ports = [ports]
            for first, count in ports:
                if not (0 <= first and count > 0 and first + count <= 0x10000):
                    raise ArgumentError(f"ports [{first:#x}, +{count}) are outside the I/O space [0, 0x10000)")
                for p in range(first, first + count):
                    if self._ports[p] is not None:
                        raise ArgumentError(f"port {p:#x} is already served by {self._ports[p].name}")
            for first, count in ports:
                for p in range(first, first + count):
                    self._ports[p] = device
        timer = type(device).next_deadline is not _base_next_deadline
        if mmio:
            self.vm.map_mmio(mmio[0], mmio[1], self.mmio_target(device))
        self.devices.append(device)
        if timer:
            self.timers.append(device)
        return device

    def mmio_target(self, device):
        """What to map for a device served by MMIO (``device``, or a list
        of one device per vCPU, each serving the accesses of its own vCPU,
        as the local APICs): the device, and after
        each write two looks, since a store can change what the platform
        decided when it started the slice the guest is running: an interrupt
        request now pending (a self-IPI, an EOI that uncovers a lower
        vector) ends the run after the store, so the platform injects it at
        once; a timer deadline now inside the slice (a timer programmed by a
        store) ends the run there (VCpu.end_run_after), so the interrupt
        comes on time.  (The injection itself waits for the run's end: an
        event injected while the store's instruction waits to be replayed
        would run the guest's handler first.)"""
        per_vcpu = isinstance(device, (list, tuple))
        timer = type(device[0] if per_vcpu else device).next_deadline is not _base_next_deadline

        def serve(vcpu, gpa, size, is_write, value):
            dev = device[vcpu.index] if per_vcpu else device
            if not is_write:
                return dev.mmio_read(gpa, size)
            self._writer = vcpu
            try:
                dev.mmio_write(gpa, size, value)
            finally:
                self._writer = None
            self.after_write(vcpu, dev if timer else None)
            return 0
        serve.device = device
        serve.name = getattr(device[0] if per_vcpu else device, "name", "device")
        return serve

    def after_write(self, vcpu, timer=None):
        """What the platform looks at after ``vcpu`` wrote a device register
        inside a run (an MMIO store served by :meth:`mmio_target`, or a
        WRMSR exit a handler serves, as the PC's x2APIC MSRs): a signal the
        vCPU sent itself, an interrupt now pending, or an IPI to another
        vCPU ends the run after one more instruction, so the platform
        delivers it at once; a deadline of ``timer`` (the device written,
        if it is a timer) now inside the slice ends the run there."""
        if self._deferred:
            vcpu.end_run_after(1)
        if not self._in_run:
            return                      # a vm.run of the user's own: its budget is the user's
        if self._pending(vcpu) and not self._windows[vcpu.index]:
            vcpu.end_run_after(1)
        elif self._kick:
            # An IPI to another vCPU: let it run now (the sender
            # usually waits for its answer).
            self._kick = False
            vcpu.end_run_after(1)
        elif timer is not None:
            d = timer.next_deadline()
            if d is not None and d < self._slice_end:
                now = self.clock.now_ns()
                vcpu.end_run_after(max(1, (d - now) // max(1, getattr(self.clock, "ns_per_instruction", 1))))
                # With several vCPUs the run goes on with the next one:
                # the turn hook ends it at the deadline.
                self._slice_end = d

    def set_irq(self, line, level):
        """The router the devices' IrqLines call: to the interrupt controller
        (``platform.pic``: the PIC, or a router in front of it)."""
        if self.pic is not None:
            self.pic.set_irq(line, level)

    # --- time -----------------------------------------------------------------------

    def next_deadline(self):
        d = None
        for t in self.timers:
            x = t.next_deadline()
            if x is not None and (d is None or x < d):
                d = x
        return d

    def advance(self):
        now = self.clock.now_ns()
        for t in self.timers:
            x = t.next_deadline()
            if x is not None and x <= now:
                t.advance(now)

    # --- interrupts -----------------------------------------------------------------

    def signal(self, vcpu, fn):
        """Raise a signal at ``vcpu`` (``fn()``: its ``raise_nmi``,
        ``raise_init`` or ``raise_sipi``): now, unless ``vcpu`` is the one
        whose store a device is serving (an NMI or INIT to itself), whose
        instruction has not retired yet: then after it, when its turn ends
        (an event taken before the replayed store would run the guest's
        handler first, and the store again after it)."""
        if vcpu is self._writer:
            self._deferred.append((vcpu, fn))
        else:
            fn()
            self._kick = True

    def _raise_deferred(self, v=None):
        keep = []
        for vcpu, fn in self._deferred:
            if v is None or vcpu is v:
                fn()
            else:
                keep.append((vcpu, fn))
        self._deferred = keep

    def source(self, vcpu):
        """The interrupt source of ``vcpu``: ``intr[index]``, else for the
        first vCPU the controller ``pic``; None if it has none."""
        s = self.intr[vcpu.index]
        if s is None and vcpu.index == 0:
            return self.pic
        return s

    def _pending(self, vcpu=None):
        s = self.source(vcpu or self.vcpu)
        return s is not None and s.pending()

    def sync_interrupts(self, vcpu=None):
        """Inject the interrupt ``vcpu``'s controller presents (default: the
        first vCPU's) if the guest can take it now, else ask for an
        interrupt window (SDM Vol. 3C 26.7.5).  A vCPU waiting for a SIPI
        takes none (SDM Vol. 3C 27.7.2)."""
        v = vcpu or self.vcpu
        i = v.index
        if not self._pending(v):
            if self._windows[i]:
                self._set_window(v, False)
            return
        if self._smp and v.activity_state == _WAIT_FOR_SIPI:
            return
        if v.vmread(F.VM_ENTRY_INTERRUPTION_INFO) & _VALID:
            # An event is being injected already: look again after it.
            self._set_window(v, True)
            return
        if v.rflags & _IF and not v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) & 3:
            vector = self.source(v).acknowledge()
            v.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, _VALID | vector)    # type 0: external interrupt
            self.injected += 1
            if self._windows[i] and not self._pending(v):
                self._set_window(v, False)
        else:
            self._set_window(v, True)

    def _set_window(self, v, on):
        if on == self._windows[v.index]:
            return
        ctl = v.vmread(F.PRIMARY_PROC_BASED_CONTROLS)
        ctl = ctl | ProcBased.INTERRUPT_WINDOW_EXITING if on else ctl & ~ProcBased.INTERRUPT_WINDOW_EXITING
        v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, ctl)
        self._windows[v.index] = on

    @property
    def _window(self):
        """The first vCPU's interrupt-window flag."""
        return self._windows[0]

    def _turn(self, v):
        """``vm.on_turn`` with several vCPUs: the slice's end has come (a
        timer deadline moved into it): end the run; else the vCPU's TSC
        reads the clock (TSC_OFFSET = now - its own instructions, SDM Vol.
        3C 26.6.5: RDTSC returns its TSC plus the offset) and its pending
        interrupt is injected or waits for its window."""
        now = self.clock.now_ns()
        if self._in_run and now >= self._slice_end:
            return True
        self._kick = False
        if self._deferred:
            self._raise_deferred(v)
        v.vmwrite(F.TSC_OFFSET, (now - v.instructions) & _MASK64)
        self.sync_interrupts(v)
        return False

    def _wakeable(self):
        """Whether a vCPU halted with RFLAGS.IF = 1 has an interrupt
        pending, or one can take a pending NMI (not blocked by NMI: SDM Vol.
        3C 25.4.2, Table 25-3), INIT or SIPI (all halted)."""
        if self._deferred:
            return True
        for v in self.vcpus:
            st = v.activity_state
            if st == _WAIT_FOR_SIPI:
                if v.sipi_pending is not None:
                    return True
                continue
            if v.init_pending or (v.nmi_pending and not v.vmread(F.GUEST_INTERRUPTIBILITY_STATE) & 8):
                return True
            if v.rflags & _IF and self._pending(v):
                return True
        return False

    # --- exit handlers ----------------------------------------------------------------

    def _io_exit(self, vcpu, exit):
        self.io_exits += 1
        q = exit.qualification
        size = (q & 7) + 1
        port = (q >> 16) & 0xFFFF
        dev = self._ports[port]
        if q & 16:
            r = self._string_io(vcpu, exit, size, port, bool(q & 8), bool(q & 32))
            if r is not None:
                return r
        else:
            if q & 8:
                value = dev.io_read(port, size) if dev is not None else (1 << (8 * size)) - 1
                value &= (1 << (8 * size)) - 1
                if size == 4:
                    vcpu.rax = value                # a 32-bit result zero-extends to 64 bits
                else:
                    mask = (1 << (8 * size)) - 1
                    vcpu.rax = (vcpu.rax & ~mask) | value
                # A read changes no deadline; an interrupt request it lowers
                # costs at most one interrupt-window exit that finds nothing.
                # (Polling loops, such as a PIT calibration, read millions of times.)
                if not self.stopped:
                    return RESUME
            elif dev is not None:
                dev.io_write(port, size, exit.value)
        if self.stopped:
            # A device stopped the machine (a reset, the debug-exit port, a
            # marker on the console): the access is done, so the run stops
            # after the instruction and goes on from the next one.
            return self._stop_after(vcpu, exit)
        self.advance()
        self.sync_interrupts(vcpu)
        if dev is not None and dev in self.timers:
            d = dev.next_deadline()
            if d is not None and d < self._slice_end:
                # The guest programmed a timer that expires before the current
                # slice ends: end the slice after this instruction.
                self._reslice = True
                return self._stop_after(vcpu, exit)
        return RESUME

    def _stop_after(self, vcpu, exit):
        """STOP with the exiting instruction retired, as RESUME would have
        left it (RIP past it, blocking by STI or MOV SS ended)."""
        vcpu.rip = vcpu.rip + exit.instruction_length
        vcpu.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, vcpu.vmread(F.GUEST_INTERRUPTIBILITY_STATE) & ~3)
        return STOP

    def _retired_now(self):
        """Instructions the vCPUs have retired (every vCPU's, with several)."""
        return sum(x.instructions for x in self.vcpus) if self._smp else self.vcpu.instructions

    #: REP INS/OUTS iterations emulated per exit at most (a REP with RCX
    #: near 2**64 must not hold the run: see _string_io).
    STRING_CHUNK = 1024

    def _string_io(self, vcpu, exit, size, port, is_in, rep):
        """INS/OUTS (SDM Vol. 2 INS, OUTS): the VM-exit instruction
        information gives the address size (bits 9:7) and, for OUTS, the
        segment (bits 17:15); the guest-linear address field, the first
        element's address.  Each element goes through the guest's paging.

        A REP form is emulated :attr:`STRING_CHUNK` iterations at a time,
        each one leaving RCX and RDI/RSI as the processor does after an
        iteration (SDM Vol. 2 REP: the registers reflect the iterations
        done), so an exception raised in the middle (Ctrl-C, memory no
        device backs) leaves a state that can run again.  While RCX is not
        0 RIP stays on the instruction: the guest enters it again (and
        exits again), after an interrupt the platform injects between two
        chunks, as one is taken between iterations; when the iterations of
        the current slice reach its budget the run stops there (STOP, the
        instruction left to be entered again), so a REP whose count is
        near 2**64 keeps Platform.run's budget.  Returns None when the
        instruction is done, else what the exit handler returns."""
        info = exit.instruction_info
        asz = (2, 4, 8)[(info >> 7) & 7] if (info >> 7) & 7 < 3 else 8
        amask = (1 << (8 * asz)) - 1
        count = min(vcpu.rcx & amask, self.STRING_CHUNK) if rep else 1
        if rep and self._in_run:
            # No more than the slice's budget has left (its instructions and
            # the iterations so far taken off).
            used = self._slice_string + self._retired_now() - self._slice_start
            count = min(count, max(1, self._slice_budget - used))
        step = -size if vcpu.rflags & (1 << 10) else size
        lin = exit.guest_linear_address
        dev = self._ports[port]
        reg = "rdi" if is_in else "rsi"
        done = 0
        start, rcx = getattr(vcpu, reg), vcpu.rcx
        user = (vcpu.ss.access_rights >> 5) & 3 == 3       # CPL = SS.DPL (SDM Vol. 3A 5.5)
        fault = None
        try:
            for _ in range(count):
                gpa = self.vm.translate(lin, vcpu, write=is_in, user=user)
                if gpa is None:
                    fault = lin
                    break
                if is_in:
                    value = dev.io_read(port, size) if dev is not None else (1 << (8 * size)) - 1
                    self._mem_write(vcpu, gpa, size, value & ((1 << (8 * size)) - 1))
                else:
                    value = self._mem_read(vcpu, gpa, size)
                    if dev is not None:
                        dev.io_write(port, size, value)
                # Counted right after the access, with nothing between that
                # a signal handler could run at: the registers follow from it.
                done += 1
                lin = (lin + step) & ((1 << 64) - 1)
        finally:
            # The registers after `done` iterations, also when an exception
            # (Ctrl-C, memory nothing backs) ended the loop.
            if done:
                setattr(vcpu, reg, (start & ~amask) | ((start + step * done) & amask))
                if rep:
                    vcpu.rcx = (rcx & ~amask) | ((rcx - done) & amask)
            self.string_iterations += done
            self._slice_string += done
        if fault is not None:
            # The element's page is not mapped, or not for this access: #PF
            # (SDM Vol. 3A 4.7) with CR2 the linear address, P if the page
            # is present (a protection fault), W/R for INS (it writes
            # memory), U/S at CPL 3; RIP stays on the instruction, RCX and
            # RDI/RSI say which iterations were done (SDM Vol. 2 REP).
            present = self.vm.translate(fault, vcpu) is not None
            vcpu.cr2 = fault
            vcpu.inject(14, error_code=int(present) | (2 if is_in else 0) | (4 if user else 0))
            return RETRY
        if not rep or not vcpu.rcx & amask:
            return None
        # Iterations left: RIP stays on the instruction.
        if self.stopped:
            # A device stopped the machine in the middle (a reset, the debug
            # exit): the REP waits there for the next run.
            self._string_stop = vcpu
            return STOP
        self.advance()
        self.sync_interrupts(vcpu)
        if self._in_run and self._slice_string + self._retired_now() - self._slice_start >= self._slice_budget:
            self._string_stop = vcpu
            self._reslice = True
            return STOP
        return RETRY

    def _mem_read(self, vcpu, gpa, size):
        """Guest memory for string I/O: RAM or a slot, else a device's MMIO
        (DMA-like I/O between a port and MMIO goes device to device)."""
        try:
            return int.from_bytes(self.vm.read(gpa, size), "little")
        except GuestMemoryError:
            return self._mmio_or_fail(vcpu, gpa, size, False, 0)

    def _mem_write(self, vcpu, gpa, size, value):
        try:
            self.vm.write(gpa, value.to_bytes(size, "little"))
        except GuestMemoryError:
            self._mmio_or_fail(vcpu, gpa, size, True, value)

    def _mmio_or_fail(self, vcpu, gpa, size, is_write, value):
        try:
            return self.vm._mmio(vcpu, gpa, size, is_write, value)
        except GuestMemoryError:
            raise GuestMemoryError(f"string I/O {'into' if is_write else 'from'} guest-physical {gpa:#x}, "
                                   f"which neither memory nor a device backs, at rip {vcpu.rip:#x}") from None

    def _hlt_exit(self, vcpu, exit):
        """HLT: the guest waits for an interrupt.  Time skips to the next
        deadline of a timer (the guest's TSC with it); the HLT is stepped
        over and the interrupt injected.  Nothing to wait for: STOP.

        With several vCPUs the HLT is stepped over and the vCPU enters the
        HLT activity state (SDM Vol. 3C 25.4.2), as the processor does: the
        others go on, and an interrupt injected at a later turn wakes it;
        when every vCPU is halted, :meth:`run` skips the time."""
        if self._smp:
            self.advance()
            vcpu.rip = vcpu.rip + exit.instruction_length
            vcpu.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, vcpu.vmread(F.GUEST_INTERRUPTIBILITY_STATE) & ~3)
            if self._pending(vcpu) and vcpu.rflags & _IF:
                self.sync_interrupts(vcpu)
            else:
                vcpu.vmwrite(F.GUEST_ACTIVITY_STATE, _HLT)
            return RETRY
        while True:
            self.advance()
            if self._pending() and vcpu.rflags & _IF:
                vcpu.rip = vcpu.rip + exit.instruction_length
                vcpu.vmwrite(F.GUEST_INTERRUPTIBILITY_STATE, vcpu.vmread(F.GUEST_INTERRUPTIBILITY_STATE) & ~3)
                self.sync_interrupts(vcpu)
                return RETRY
            d = self.next_deadline()
            if d is None or not vcpu.rflags & _IF or self.stopped:
                self.stopped = self.stopped or "halted"
                return STOP
            before = self.clock.now_ns()
            self.clock.skip_to(d)
            skipped = self.clock.now_ns() - before
            if skipped > 0:
                vcpu.vmwrite(F.TSC_OFFSET, (vcpu.vmread(F.TSC_OFFSET) + skipped) & ((1 << 64) - 1))

    def _window_exit(self, vcpu, exit):
        self.sync_interrupts(vcpu)
        return RETRY

    # --- running ------------------------------------------------------------------

    def _account(self, r):
        for k, n in r.exits.items():
            self.exits[k] = self.exits.get(k, 0) + n
            self.exit_ns[k] = self.exit_ns.get(k, 0) + r.exit_ns.get(k, 0)
        self.instructions += r.instructions
        self.wall_ns += r.wall_ns

    def stats(self):
        """The accounting since the platform was made (or reset_stats): a
        dict with ``instructions``, ``wall_ns``, ``injected`` and per exit
        reason ``exits`` and ``exit_ns``."""
        return {"instructions": self.instructions, "wall_ns": self.wall_ns, "injected": self.injected,
                "exits": dict(self.exits), "exit_ns": dict(self.exit_ns)}

    # --- saved state (snapshots) -------------------------------------------------------

    def get_state(self):
        """The platform's state as JSON data: each device's, in the order they
        were attached, the clock's offset and the interrupt-window flag."""
        return {
            "devices": [[d.name, d.get_state()] for d in self.devices],
            "clock_offset": getattr(self.clock, "_offset", 0),
            "window": self._windows[0],
            "windows": list(self._windows),
        }

    def set_state(self, state):
        """Restore :meth:`get_state`'s data into the same set of devices
        (checked first: a mismatch changes nothing)."""
        from .errors import SnapshotError
        try:
            names = [name for name, _ in state["devices"]]
        except (TypeError, KeyError, ValueError):
            raise SnapshotError("the platform state is malformed") from None
        if names != [d.name for d in self.devices]:
            raise SnapshotError(f"the snapshot's devices {names} are not this platform's "
                                f"{[d.name for d in self.devices]}")
        windows = state.get("windows", [state.get("window", False)])
        if not isinstance(windows, list) or len(windows) != len(self._windows):
            raise SnapshotError(f"the platform state has the interrupt windows {windows!r}, "
                                f"not those of {len(self._windows)} vCPUs")
        for d, (_, st) in zip(self.devices, state["devices"]):
            d.set_state(st)
        if hasattr(self.clock, "_offset"):
            self.clock._offset = state.get("clock_offset", 0)
        self._windows = [bool(w) for w in windows]

    def reset_stats(self):
        self.exits, self.exit_ns = {}, {}
        self.instructions = self.wall_ns = self.injected = 0

    def run(self, max_instructions=None, until=None, slice_instructions=None):
        """Run the guest until a device or handler stops it, ``until()``
        (called between slices and after each timer event) returns true, or
        ``max_instructions`` more instructions retired.  Returns why: the
        reason a device gave (``platform.stopped``), "until", "budget", or
        the VM's own stop ("halted", "shutdown", "stop")."""
        v = self.vcpu
        vcpus = self.vcpus

        def retired():
            # The REP INS/OUTS iterations the platform emulated are steps too.
            n = sum(x.instructions for x in vcpus) if self._smp else v.instructions
            return n + self.string_iterations
        start = retired()
        self.stopped = None
        if slice_instructions is None:
            # until() is looked at between slices: a few milliseconds of guest time.
            slice_instructions = 5_000_000 if until is not None else 50_000_000
        while True:
            if until is not None and until():
                return "until"
            now = self.clock.now_ns()
            budget = slice_instructions
            d = self.next_deadline()
            if d is not None:
                budget = max(1, min(budget, -(-(d - now) // max(1, getattr(self.clock, "ns_per_instruction", 1)))))
            if max_instructions is not None:
                left = max_instructions - (retired() - start)
                if left <= 0:
                    return "budget"
                budget = min(budget, left)
            if not self._smp:
                if self._deferred:
                    self._raise_deferred()
                self.sync_interrupts(v)     # (with several, at each vCPU's turn)
            self._slice_end = now + budget * getattr(self.clock, "ns_per_instruction", 1)
            self._slice_budget = budget
            self._slice_string = 0
            self._slice_start = self._retired_now()
            self._in_run = True
            try:
                r = self.vm.run(max_instructions=budget, quantum=self.quantum)
            finally:
                self._in_run = False
                if self._string_stop is not None:
                    # A REP INS/OUTS stopped between chunks is entered again,
                    # not stepped over (the STOP's completion of an I/O exit).
                    self.vm.discard_pending(self._string_stop)
                    self._string_stop = None
            self._account(r)
            if self._deferred:
                # The stores that sent them have retired: a run ends at an
                # instruction boundary (and a saved machine holds none).
                self._raise_deferred()
            self.advance()
            if self.stopped:
                return self.stopped
            if r.stop == "stop" and self._reslice:
                self._reslice = False
                continue
            if r.stop == "halted" and self._smp:
                # Every vCPU is halted: wake one that can take what is
                # pending, else skip to the next deadline (their TSCs
                # follow at their next turns).
                if self._wakeable():
                    continue
                d = self.next_deadline()
                if d is None or not any(x.activity_state == _HLT and x.rflags & _IF for x in vcpus):
                    # Nothing to wait for, or no vCPU an interrupt could wake.
                    return "halted"
                self.clock.skip_to(d)
                continue
            if r.stop != "budget":
                return r.stop


_base_next_deadline = __import__("vtx.devices.base", fromlist=["Device"]).Device.next_deadline
