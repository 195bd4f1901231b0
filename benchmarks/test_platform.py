"""The platform's round trips (issue 9): an MMIO read served by a Python
device, an EPT-violation exit handled in Python (the raw VT-x view of the
same access), and timer interrupts injected into a halting guest.

Peers: Unicorn's mmio_map with a Python read callback, and real KVM's
KVM_EXIT_MMIO where /dev/kvm works.
"""

from conftest import ENTRY, EXIT_COUNT, needs_unicorn, per_exit, record

import kvm_peer
import vtx
from vtx.devices import Device, IrqLine
from vtx.platform import Platform

MMIO = 0x80000          # a hole: the benchmark VMs have 512 KiB of RAM

MMIO_LOOP = f"""
    mov ecx, {EXIT_COUNT}
1:  mov eax, [{MMIO:#x}]
    dec ecx
    jnz 1b
    hlt
"""



def _vm(source, bits=32):
    vm = vtx.VM(memory=512 << 10)
    vm.load(ENTRY, vtx.asm(source, bits=bits, org=ENTRY))
    vm.add_vcpu()
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    return vm


def test_vtx_mmio_exit(benchmark):
    vm = _vm(MMIO_LOOP)
    vm.map_mmio(MMIO, 0x1000, lambda vcpu, gpa, size, is_write, value: 0x1234)

    def run():
        vm.setup_protected_mode(entry=ENTRY)
        return vm.run()
    r = benchmark(run)
    assert r.exits[vtx.ExitReason.EPT_VIOLATION] == EXIT_COUNT and vm.vcpu.rax == 0x1234
    per_exit(benchmark, EXIT_COUNT)


def test_vtx_ept_violation_exit(benchmark):
    vm = _vm(MMIO_LOOP)

    @vm.on(vtx.ExitReason.EPT_VIOLATION)
    def ev(vcpu, exit):
        # The raw view: decode nothing, step over the 5-byte MOV by hand.
        vcpu.eax = 0x1234
        vcpu.rip += 5
        return vtx.RETRY

    def run():
        vm.setup_protected_mode(entry=ENTRY)
        return vm.run()
    r = benchmark(run)
    assert r.exits[vtx.ExitReason.EPT_VIOLATION] == EXIT_COUNT
    per_exit(benchmark, EXIT_COUNT)


@needs_unicorn
def test_unicorn_mmio_hook(benchmark):
    from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
    code = vtx.asm(MMIO_LOOP, bits=32, org=ENTRY)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 512 << 10)
    uc.mem_write(ENTRY, code)
    seen = [0]

    def read(uc, offset, size, data):
        seen[0] += 1
        return 0x1234
    uc.mmio_map(MMIO, 0x1000, read, None, lambda *a: None, None)

    def run():
        seen[0] = 0
        uc.emu_start(ENTRY, ENTRY + len(code) - 1)
        return seen[0]
    assert benchmark(run) == EXIT_COUNT
    per_exit(benchmark, EXIT_COUNT)


@kvm_peer.needs_kvm
def test_kvm_mmio_exit(benchmark):
    n = 2000        # nested KVM of the PVM kind: each exit is ~10 us; keep it short
    source = MMIO_LOOP.replace(str(EXIT_COUNT), str(n)).replace("ecx", "cx").replace("eax", "ax")
    source = source.replace(f"[{MMIO:#x}]", "[0xFFF0]").replace("mov cx", "mov bx, 0xF000\n    mov ds, bx\n    mov cx")
    guest = kvm_peer.KvmGuest(vtx.asm(source, bits=16, org=ENTRY), ENTRY, mem_size=512 << 10)
    try:
        assert benchmark(guest.run_mmio_loop) == n
    finally:
        guest.close()
    per_exit(benchmark, n)


class _Pic:
    """The smallest interrupt controller: one request line, vector 0x20."""

    def __init__(self):
        self.req = False

    def set_irq(self, line, level):
        self.req = self.req or level

    def pending(self):
        return self.req

    def acknowledge(self):
        self.req = False
        return 0x20


class _Tick(Device):
    name = "tick"

    def __init__(self, irq, period):
        self.irq, self.period, self.next = irq, period, period

    def next_deadline(self):
        return self.next

    def advance(self, now):
        while self.next <= now:
            self.next += self.period
            self.irq.pulse()


TICKS = 5000
TIMER_GUEST = f"""
    lea rax, [rip + handler]
    mov rdi, 0x8000 + 0x20 * 16
    mov word ptr [rdi], ax
    mov word ptr [rdi + 2], 0x18
    mov word ptr [rdi + 4], 0x8E00
    shr rax, 16
    mov word ptr [rdi + 6], ax
    shr rax, 16
    mov dword ptr [rdi + 8], eax
    lidt [rip + idtr]
    xor ebx, ebx
1:  sti
    hlt
    cmp ebx, {TICKS}
    jb 1b
    cli
    hlt
handler:
    inc ebx
    iretq
idtr: .word 0xFFF
      .quad 0x8000
"""


def test_vtx_timer_injection(benchmark):
    """Interrupts from a timer device injected into a guest that halts
    between them: each costs the HLT exit, the skip to the deadline, the
    injection and the guest's handler."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(TIMER_GUEST, bits=64))
    vm.add_vcpu()

    def run():
        vm.setup_long_mode(entry=0x1000)
        p = Platform(vm)
        p.pic = _Pic()
        p.attach(_Tick(IrqLine(p, 0), 10_000))
        assert p.run() == "halted"
        return p.injected
    assert benchmark(run) == TICKS
    benchmark.extra_info["interrupts"] = TICKS
    record(benchmark, "ns_per_exit", lambda mean: mean / TICKS * 1e9)


IPIS = 1000
IPI_GUEST = f"""
    lea rax, [rip + ping]
    call gate40
    lea rax, [rip + pong]
    add rdi, 16
    call gate_at
    lidt [rip + idtr]
    mov rbx, 0xFEE00000
    mov dword ptr [rbx + 0xF0], 0x1FF
    mov eax, dword ptr [rbx + 0x20]
    test eax, eax
    jnz ap
1:  cmp dword ptr [0x704], 1                 # the AP's APIC is enabled
    jne 1b
    xor r12, r12
    xor r14, r14
    cli
    mov dword ptr [rbx + 0x310], 0x01000000
2:  inc r14
    mov dword ptr [rbx + 0x300], 0x40        # fixed 40H to APIC ID 1
3:  sti
    hlt
    cli
    cmp r12, r14
    jne 3b
    cmp r14, {IPIS // 2}
    jne 2b
    mov al, 0
    out 0xF4, al
ap:
    mov dword ptr [0x704], 1
    sti
4:  hlt
    jmp 4b
ping:                                        # on the AP: answer with 41H to APIC ID 0
    mov dword ptr [rbx + 0x310], 0
    mov dword ptr [rbx + 0x300], 0x41
    mov dword ptr [rbx + 0xB0], 0
    iretq
pong:
    inc r12
    mov dword ptr [rbx + 0xB0], 0
    iretq
gate40:
    mov rdi, 0x8000 + 0x40 * 16
gate_at:
    mov word ptr [rdi], ax
    mov word ptr [rdi + 2], 0x18
    mov word ptr [rdi + 4], 0x8E00
    shr rax, 16
    mov word ptr [rdi + 6], ax
    shr rax, 16
    mov dword ptr [rdi + 8], eax
    ret
idtr: .word 0xFFF
      .quad 0x8000
"""


def test_vtx_ipi(benchmark):
    """Fixed IPIs between the two vCPUs of a PcMachine, ping and pong: each
    is the ICR store (an emulated MMIO access), the end of the sender's turn,
    the injection at the target's turn (waking it from HLT) and the EOI."""
    from vtx.pc import PcMachine
    code = vtx.asm(IPI_GUEST, bits=64)

    def setup():
        m = PcMachine(memory=1 << 20, apic=True, cpus=2)
        m.vm.load(0x1000, code)
        for v, stack in zip(m.vcpus, (0x70000, 0x60000)):
            m.vm.setup_long_mode(entry=0x1000, stack=stack, vcpu=v)
        return (m,), {}

    def run(m):
        assert m.run(max_instructions=10_000_000) == "debug-exit 1"
        return m.ipis["fixed"]
    assert benchmark.pedantic(run, setup=setup, rounds=5) == IPIS
    benchmark.extra_info["ipis"] = IPIS
    record(benchmark, "ns_per_exit", lambda mean: mean / IPIS * 1e9)
