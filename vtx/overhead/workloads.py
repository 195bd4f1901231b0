"""The workload suite: one small 64-bit guest kernel, assembled with
:func:`vtx.asm`, whose main loop repeats one sensitive operation N times.

Each workload runs in up to three settings:

``exiting``      under the Python hypervisor (:class:`vtx.VM`), with the
                 control that makes the operation exit set (or, for an
                 operation that always exits such as CPUID, as it is);
``not-exiting``  the same with that control clear, where the architecture
                 allows it (the operation then runs in the guest);
``native``       on a bare machine (:class:`vtx.BareMetal`), no VMX at all.

The kernel sets up an IDT (#DE, #PF, a timer vector and INT 80H), the
SYSCALL MSRs and paging with user-accessible pages; exceptions and
interrupts are handled by the guest's own handlers.  The run ends with
VMCALL under the hypervisor (its exit stops the run and is not counted as
an operation's) and HLT on the bare machine.
"""

import time

import attrs

from .. import asm as _asm
from ..bare import BareMetal
from ..spec import ExitReason, ProcBased, VmcsField as F, capabilities
from ..vm import RESUME, RETRY, STOP, VM, long_mode_tables

__all__ = ["Workload", "Measurement", "WORKLOADS", "DEFAULT_WORKLOADS", "workload_names", "run_workload",
           "VARIANTS"]

ENTRY = 0x1000
MEMORY = 16 << 20
IDT = 0x8000
PT_PAGE = 0x200000          # the page table of [400000H, 600000H) (pte_update)
PTE_VA = 0x401000           # the page pte_update remaps
PF_VA = 0x600000            # a 2 MiB page left not present (page_fault)
MMIO_BASE = 0xD0000000      # an MMIO range (mmio)
TIMER_VECTOR = 0x20
VARIANTS = ("exiting", "not-exiting", "native")

_KERNEL = """
{gates}
    lidt [rip + idtr]
    mov ecx, 0xC0000082         # IA32_LSTAR: the SYSCALL entry
    lea rax, [rip + sys_entry]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov ecx, 0xC0000081         # IA32_STAR: kernel CS 18H, SYSRET base 28H (SS 33H, CS 3BH)
    xor eax, eax
    mov edx, 0x00280018
    wrmsr
    mov ecx, 0xC0000084         # IA32_FMASK: keep RFLAGS
    xor eax, eax
    xor edx, edx
    wrmsr
    xor r13d, r13d
    mov r12, {n}
{setup}
op_loop:
{body}
    dec r12
    jnz op_loop
{tail}
done:
{end}
de_handler:                     # #DE: step over the 3-byte DIV
    add qword ptr [rsp], 3
    iretq
pf_handler:                     # #PF: drop the error code, step over the 3-byte load
    add rsp, 8
    add qword ptr [rsp], 3
    iretq
irq_handler:
    iretq
int_handler:
    iretq
sys_entry:                      # SYSCALL: return at once, or end the run (r13 set)
    test r13d, r13d
    jnz done
    sysretq
leaf:
    ret
.balign 8
idtr: .word 0xFFF
      .quad {idt:#x}
"""


def _gate(vector, label):
    return f"""
    lea rax, [rip + {label}]
    mov rdi, {IDT + 16 * vector:#x}
    mov word ptr [rdi], ax
    mov word ptr [rdi + 2], 0x18
    mov word ptr [rdi + 4], 0x8E00
    shr rax, 16
    mov word ptr [rdi + 6], ax
    shr rax, 16
    mov dword ptr [rdi + 8], eax
"""


_GATES = "".join(_gate(v, l) for v, l in ((0, "de_handler"), (14, "pf_handler"),
                                          (TIMER_VECTOR, "irq_handler"), (0x80, "int_handler")))


@attrs.frozen
class Workload:
    """One operation repeated in the kernel's loop.  ``control`` names what
    the exiting setting sets and the not-exiting one clears (None: the
    operation exits always, or never); ``exits_always``: it exits whatever
    the controls (CPUID, MMIO); ``native``: it runs on a bare machine."""

    name: str
    title: str
    body: str
    setup: str = ""
    tail: str = ""
    control: str = None
    exits_always: bool = False
    native: bool = True
    #: The exit reason of one operation in the exiting setting (None: none).
    reason: object = None
    #: A workload that is not the kernel's loop: run(n) returns a
    #: Measurement (the mixed workloads; not in the default suite).
    runner: object = None

    @property
    def variants(self):
        if self.runner is not None:
            return ("exiting",)
        v = ["exiting"]
        if self.control is not None:
            v.append("not-exiting")
        if self.native:
            v.append("native")
        return tuple(v)


WORKLOADS = {w.name: w for w in (
    Workload("compute", "compute loop (ALU, no exits)",
             "    imul rax, rax, 3\n    add rax, r12\n    xor rbx, rax\n    rol rbx, 7\n    add rcx, rbx\n"),
    Workload("call_ret", "CALL and RET (the control: no exits)", "    call leaf\n"),
    Workload("syscall", "SYSCALL / SYSRET round trip from user mode",
             "    syscall\n",
             setup="    lea rcx, [rip + 1f]\n    mov r11d, 2\n    sysretq\n1:\n",
             tail="    mov r13d, 1\n    syscall\n"),
    Workload("int_iret", "INT 80H / IRETQ round trip", "    int 0x80\n"),
    Workload("io_in", "port I/O: IN AL, 71H", "    in al, 0x71\n", control="UNCONDITIONAL_IO_EXITING",
             reason=ExitReason.IO_INSTRUCTION),
    Workload("cr8_write", "MOV to CR8 (TPR)", "    mov cr8, rax\n", setup="    mov eax, 5\n",
             control="CR8_LOAD_EXITING", reason=ExitReason.CONTROL_REGISTER_ACCESS),
    Workload("page_fault", "a #PF handled by the guest kernel", "    mov rax, qword ptr [rsi]\n",
             setup=f"    mov rsi, {PF_VA:#x}\n", control="EXCEPTION_BITMAP[14]",
             reason=ExitReason.EXCEPTION_OR_NMI),
    Workload("divide_error", "a #DE handled by the guest kernel", "    div rcx\n",
             setup="    xor ecx, ecx\n", control="EXCEPTION_BITMAP[0]", reason=ExitReason.EXCEPTION_OR_NMI),
    Workload("pte_update", "a PTE update, INVLPG and a load through it",
             "    xor qword ptr [rsi], 0x1000\n    invlpg [rdi]\n    mov rax, qword ptr [rdi]\n",
             setup=f"    mov rsi, {PT_PAGE + 8:#x}\n    mov rdi, {PTE_VA:#x}\n", control="INVLPG_EXITING",
             reason=ExitReason.INVLPG),
    Workload("rdmsr", "RDMSR of IA32_TSC_AUX (passed through by the MSR bitmap)", "    rdmsr\n",
             setup="    mov ecx, 0xC0000103\n", control="MSR_BITMAP", reason=ExitReason.RDMSR),
    Workload("cpuid", "CPUID (leaf 0)", "    xor eax, eax\n    cpuid\n", exits_always=True,
             reason=ExitReason.CPUID),
    Workload("rdtsc", "RDTSC", "    rdtsc\n", control="RDTSC_EXITING", reason=ExitReason.RDTSC),
    Workload("hlt_timer", "HLT woken by a timer interrupt the hypervisor injects",
             "    hlt\n", setup="    sti\n", tail="    cli\n", exits_always=True, native=False,
             reason=ExitReason.HLT),
    Workload("mmio", "MMIO read of a device register", "    mov eax, dword ptr [rsi]\n",
             setup=f"    mov rsi, {MMIO_BASE:#x}\n", exits_always=True, native=False,
             reason=ExitReason.EPT_VIOLATION),
)}


def _linux_boot(n):
    """An unmodified Debian kernel booting to the busybox shell under the
    PC's Python hypervisor (vtx.linux; the assets are fetched once and
    cached).  One operation: the boot."""
    from ..linux import LinuxAssetsUnavailable, fetch
    from ..linux.machine import LinuxMachine
    try:
        assets = fetch()
    except LinuxAssetsUnavailable as e:
        return Measurement("linux_boot", "exiting", 1, 0, 0, {}, None, f"not run: {e}")
    m = LinuxMachine(assets)
    m.vm.reset_stats()
    t0 = time.perf_counter_ns()
    if not m.boot():
        raise RuntimeError(f"the Linux boot did not reach the shell ({m.platform.stopped or 'budget spent'})")
    wall = time.perf_counter_ns() - t0
    s = m.vm.stats()
    return Measurement("linux_boot", "exiting", 1, wall, s.instructions, s.exits, s)


WORKLOADS["linux_boot"] = Workload("linux_boot", "mixed: a Linux boot to the shell prompt (vtx.linux)", "",
                                   reason=None, runner=_linux_boot)

#: The workloads ``run_suite`` and ``python -m vtx bench`` run unless named:
#: all but the mixed ones, which take much longer.
DEFAULT_WORKLOADS = tuple(n for n, w in WORKLOADS.items() if w.runner is None)


def workload_names():
    return tuple(WORKLOADS)


@attrs.frozen
class Measurement:
    """One workload in one setting: ``ops`` operations in ``wall_ns``, the
    guest's ``instructions``, ``exits`` per reason (the VMCALL that ends the
    run left out) and the run's :class:`~vtx.overhead.Stats` (None
    native).  ``note`` says why a setting did not run or what is not
    modeled."""

    workload: str
    variant: str
    ops: int
    wall_ns: int
    instructions: int
    exits: dict
    stats: object = None
    note: str = ""

    @property
    def ops_per_s(self):
        return self.ops / (self.wall_ns / 1e9) if self.wall_ns else 0.0

    @property
    def total_exits(self):
        return sum(self.exits.values())

    @property
    def exits_per_op(self):
        return self.total_exits / self.ops if self.ops else 0.0

    @property
    def ns_per_exit(self):
        """Wall nanoseconds per exit, from the exit to the next entry (the
        model's exit path and the handler)."""
        if not self.total_exits or self.stats is None:
            return 0.0
        return sum(s.round_trip_ns for r, s in self.stats.reasons.items() if r in self.exits) / self.total_exits

    def counts(self):
        """The counts the cost model prices (vtx.overhead.price)."""
        s = self.stats
        return {"exits": self.exits, "instructions": self.instructions,
                "handler_instructions": s.handler_instructions if s else 0,
                "vmread_api": s.vmread_api if s else 0, "vmwrite_api": s.vmwrite_api if s else 0,
                "vmread_x86": s.vmread_x86 if s else 0, "vmwrite_x86": s.vmwrite_x86 if s else 0,
                "vmread_x86_exits": s.vmread_x86_exits if s else 0,
                "vmwrite_x86_exits": s.vmwrite_x86_exits if s else 0}

    def cycles_per_op(self, profile, host="type2"):
        from .model import price
        return price(self.counts(), profile, "type2" if self.variant == "native" else host).total / self.ops

    def to_dict(self):
        return {"workload": self.workload, "variant": self.variant, "ops": self.ops, "wall_ns": self.wall_ns,
                "instructions": self.instructions, "exits": {_name(r): n for r, n in self.exits.items()},
                "ops_per_s": self.ops_per_s, "exits_per_op": self.exits_per_op,
                "ns_per_exit": self.ns_per_exit, "note": self.note}


def _name(r):
    return r.name if isinstance(r, ExitReason) else str(r)


def source(w, n, end):
    """The kernel's source for workload ``w`` (a Workload or a name), ``n``
    operations, ending with ``end`` (an instruction)."""
    w = WORKLOADS[w] if isinstance(w, str) else w
    return _KERNEL.format(gates=_GATES, n=n, setup=w.setup, body=w.body, tail=w.tail, end=end, idt=IDT)


def _user_tables(machine, at):
    """The long-mode tables of setup_long_mode again, every entry user
    accessible (the syscall workload runs its loop at CPL 3), [400000H,
    600000H) through a page table at PT_PAGE, and [600000H, 800000H) not
    present; GDT entries 30H (user data) and 38H (user 64-bit code) for
    SYSRET."""
    pml4 = at + 0x1000
    tables = bytearray(long_mode_tables(pml4))
    for off in range(0, len(tables), 8):
        if tables[off] & 1:
            tables[off] |= 4
    pd = 0x2000             # the first PD, within the tables
    tables[pd + 8 * 2:pd + 8 * 3] = (PT_PAGE | 7).to_bytes(8, "little")
    tables[pd + 8 * 3:pd + 8 * 4] = bytes(8)
    machine.write(pml4, bytes(tables))
    machine.write(PT_PAGE, b"".join(((0x400000 + 0x1000 * i) | 7).to_bytes(8, "little") for i in range(512)))
    machine.write(at + 0x30, (0x00CFF3000000FFFF).to_bytes(8, "little"))
    machine.write(at + 0x38, (0x00AFFB000000FFFF).to_bytes(8, "little"))


_CODE_CACHE = {}


def _code(w, n, end):
    key = (w.name, n, end)
    if key not in _CODE_CACHE:
        _CODE_CACHE[key] = _asm(source(w, n, end), bits=64, org=ENTRY)
    return _CODE_CACHE[key]


def make_vm(w, n, exiting=True, configure=None):
    """A VM ready to run workload ``w`` (n operations) with its control set
    (``exiting``) or clear, its handlers registered and its accounting
    reset; ``configure(vm)`` changes the set-up before that (a what-if
    study's setting)."""
    w = WORKLOADS[w] if isinstance(w, str) else w
    vm = VM(memory=MEMORY)
    vm.load(ENTRY, _code(w, n, "vmcall"))
    vm.add_vcpu()
    v = vm.setup_long_mode(entry=ENTRY)
    _user_tables(vm, MEMORY - 0x8000)
    v.efer = v.efer | 1                    # SCE: SYSCALL and SYSRET
    # MSR bitmaps, all clear: the kernel's WRMSRs to the SYSCALL MSRs run in
    # the guest, as KVM lets them.
    priv = vm._priv
    priv[0x3000:0x4000] = bytes(4096)
    del priv
    proc = v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) | ProcBased.USE_MSR_BITMAPS
    bitmap = 0
    if w.control == "MSR_BITMAP" and exiting:
        _msr_bitmap_bit(vm, 0xC0000103, write=False)
    if w.control == "UNCONDITIONAL_IO_EXITING" and not exiting:
        proc |= ProcBased.USE_IO_BITMAPS    # with every bit clear: no port exits
    elif w.control and w.control.startswith("EXCEPTION_BITMAP"):
        if exiting:
            bitmap = 1 << int(w.control[len("EXCEPTION_BITMAP["):-1])
    elif w.control in ProcBased.__members__ and exiting:
        proc |= ProcBased[w.control]
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, proc)
    v.vmwrite(F.EXCEPTION_BITMAP, bitmap)
    _handlers(vm, w)
    if configure is not None:
        configure(vm)
    vm.reset_stats()
    return vm


def _handlers(vm, w):
    vm.on(ExitReason.VMCALL)(lambda vcpu, ex: STOP)

    @vm.on(ExitReason.IO_INSTRUCTION)
    def io(vcpu, ex):
        if ex.is_in:
            vcpu.al = 0
        return RESUME

    @vm.on(ExitReason.CPUID)
    def cpuid(vcpu, ex):
        vcpu.eax, vcpu.ebx, vcpu.ecx, vcpu.edx = vcpu.model_cpuid(vcpu.eax, vcpu.ecx)
        return RESUME

    tsc = [0]

    @vm.on(ExitReason.RDTSC)
    def rdtsc(vcpu, ex):
        tsc[0] += 100
        vcpu.eax = tsc[0] & 0xFFFFFFFF
        vcpu.edx = tsc[0] >> 32
        return RESUME

    @vm.on(ExitReason.EXCEPTION_OR_NMI)
    def reflect(vcpu, ex):
        # Give the exception back to the guest, as a VMM that intercepts it
        # only to look does (CR2 first for a #PF: SDM Vol. 3C 27.6.1.3
        # leaves it to the hypervisor).
        if ex.vector == 14:
            vcpu.cr2 = ex.qualification
            vcpu.inject(14, "exception", error_code=ex.error_code)
        else:
            vcpu.inject(ex.vector, "exception")
        return RETRY

    @vm.on(ExitReason.RDMSR)
    def rdmsr(vcpu, ex):
        vcpu.eax = vcpu.edx = 0
        return RESUME

    # An exit on WRMSR (every MSR exiting: vtx.overhead.whatif) drops the
    # write; the workloads that run then need none of those MSRs.
    vm.on(ExitReason.WRMSR)(lambda vcpu, ex: RESUME)

    @vm.on(ExitReason.INVLPG)
    def invlpg(vcpu, ex):
        vcpu.invvpid()
        return RESUME

    @vm.on(ExitReason.CONTROL_REGISTER_ACCESS)
    def cr(vcpu, ex):
        return RESUME

    @vm.on(ExitReason.HLT)
    def hlt(vcpu, ex):
        vcpu.inject(TIMER_VECTOR, "interrupt")
        return RESUME

    vm.map_mmio(MMIO_BASE, 0x1000, lambda vcpu, gpa, size, is_write, value: 0)


def _msr_bitmap_bit(vm, msr, write):
    """Set the MSR bitmap's bit for msr (SDM Vol. 3C 25.6.9: read bitmaps
    for low and high MSRs, then write bitmaps, 1 KiB each)."""
    off = 0x3000 + (2048 if write else 0) + (1024 if msr >= 0xC0000000 else 0) + ((msr & 0x1FFF) >> 3)
    priv = vm._priv
    priv[off] |= 1 << (msr & 7)
    del priv


def _bare(w, n):
    m = BareMetal(memory=MEMORY)
    m.load(ENTRY, _code(w, n, "hlt"))
    cpu = m.setup_long_mode(entry=ENTRY)
    _user_tables(m, MEMORY - 0x8000)
    cpu.wrmsr(0xC0000080, cpu.efer | 1)
    return m


_BUDGET = 1 << 40


def _allowed(bit):
    """Whether the model lets a hypervisor set this primary processor-based
    control (its allowed-1 setting, SDM Vol. 3D A.3.2)."""
    return bool((capabilities.TRUE_PROCBASED_CTLS >> 32) & int(bit))


def run_workload(w, variant="exiting", n=1000, configure=None):
    """Run workload ``w`` (a name or a :class:`Workload`) for ``n``
    operations in ``variant`` (one of :data:`VARIANTS`); a
    :class:`Measurement`.  ``configure(vm)``, for the VMX settings, changes
    the VM after the standard set-up (see :func:`make_vm`)."""
    w = WORKLOADS[w] if isinstance(w, str) else w
    if variant not in VARIANTS:
        raise ValueError(f"a variant is one of {', '.join(VARIANTS)}, not {variant!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n is a positive number of operations, not {n!r}")
    if w.runner is not None and variant == "exiting":
        return w.runner(n)
    if variant not in w.variants:
        why = ("the exits cannot be switched off" if variant == "not-exiting"
               else "it needs a device or timer the bare machine does not have")
        return Measurement(w.name, variant, n, 0, 0, {}, None, f"not run: {why}")
    if variant == "exiting" and w.control in ProcBased.__members__ and not _allowed(ProcBased[w.control]):
        return Measurement(w.name, variant, n, 0, 0, {}, None,
                           f"not run: the model does not offer {w.control} yet (IA32_VMX_TRUE_PROCBASED_CTLS)")
    if variant == "native":
        m = _bare(w, n)
        t0 = time.perf_counter_ns()
        r = m.run(max_instructions=_BUDGET)
        wall = time.perf_counter_ns() - t0
        if r.stop != "halted":
            raise RuntimeError(f"workload {w.name} (native) ended {r.stop!r} at rip {m.cpu.rip:#x}")
        return Measurement(w.name, variant, n, wall, r.instructions, {}, r.stats)
    vm = make_vm(w, n, exiting=variant == "exiting", configure=configure)
    r = vm.run(max_instructions=_BUDGET)
    if r.stop != "stop" or r.exit.reason != ExitReason.VMCALL:
        raise RuntimeError(f"workload {w.name} ({variant}) ended {r.stop!r} at rip {vm.vcpu.rip:#x}")
    exits = dict(r.exits)
    exits[ExitReason.VMCALL] -= 1           # the end of the run, not an operation's
    if not exits[ExitReason.VMCALL]:
        del exits[ExitReason.VMCALL]
    note = ""
    if variant == "exiting" and w.reason is not None and not exits.get(w.reason):
        note = f"{w.control or 'the operation'} does not exit in the model yet"
    return Measurement(w.name, variant, n, r.wall_ns, r.instructions, exits, r.stats, note)
