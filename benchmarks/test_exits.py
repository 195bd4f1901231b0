"""The round trip of one VM exit handled in Python.

- an OUT loop whose handler only returns RESUME: the bare cost of an exit,
  the dispatch to Python and the re-entry with its checks;
- a CPUID loop whose handler reads one register and writes four.

Peers: Unicorn with an instruction hook doing the same work, and real KVM
(/dev/kvm, driven from Python through ioctl) where it is usable.
"""

from conftest import CPUID_LOOP, ENTRY, EXIT_COUNT, OUT_LOOP, make_vm, needs_unicorn, per_exit, rewind

import kvm_peer
import vtx



def test_vtx_out_exit(benchmark):
    vm = make_vm(OUT_LOOP)
    vm.on(vtx.ExitReason.IO_INSTRUCTION)(lambda vcpu, exit: vtx.RESUME)

    def run():
        rewind(vm)
        return vm.run()

    r = benchmark(run)
    assert r.exits[vtx.ExitReason.IO_INSTRUCTION] == EXIT_COUNT
    per_exit(benchmark, EXIT_COUNT)


def _cpuid_handler(vcpu, exit):
    leaf = vcpu.eax
    vcpu.eax = leaf
    vcpu.ebx = 0x756E6547
    vcpu.ecx = 0x6C65746E
    vcpu.edx = 0x49656E69
    return vtx.RESUME


def test_vtx_cpuid_exit(benchmark):
    vm = make_vm(CPUID_LOOP)
    vm.on(vtx.ExitReason.CPUID)(_cpuid_handler)

    def run():
        rewind(vm)
        return vm.run()

    r = benchmark(run)
    assert r.exits[vtx.ExitReason.CPUID] == EXIT_COUNT
    per_exit(benchmark, EXIT_COUNT)


CR8_LOOP = f"""
    mov esi, {EXIT_COUNT}
1:  mov eax, 2
    mov cr8, rax
    dec esi
    jnz 1b
    hlt
"""


def _cr8_vm(shadow):
    """The CR8 loop in 64-bit mode, with CR8-load exiting (a handler that
    steps over the MOV) or with the TPR shadow, where the write lands in the
    virtual-APIC page without an exit (SDM Vol. 3C 30.3)."""
    vm = make_vm(CR8_LOOP, bits=64)
    v = vm.vcpu
    proc = v.vmread(vtx.VmcsField.PRIMARY_PROC_BASED_CONTROLS)
    if shadow:
        v.vmwrite(vtx.VmcsField.PRIMARY_PROC_BASED_CONTROLS, proc | vtx.ProcBased.USE_TPR_SHADOW)
        v.vmwrite(vtx.VmcsField.VIRTUAL_APIC_ADDRESS, 0x9000)
    else:
        v.vmwrite(vtx.VmcsField.PRIMARY_PROC_BASED_CONTROLS, proc | vtx.ProcBased.CR8_LOAD_EXITING)
        vm.on(vtx.ExitReason.CONTROL_REGISTER_ACCESS)(lambda vcpu, exit: vtx.RESUME)
    return vm


def test_vtx_cr8_exit(benchmark):
    vm = _cr8_vm(shadow=False)

    def run():
        rewind(vm, 64)
        return vm.run()

    r = benchmark(run)
    assert r.exits[vtx.ExitReason.CONTROL_REGISTER_ACCESS] == EXIT_COUNT
    per_exit(benchmark, EXIT_COUNT)


def test_vtx_cr8shadow_exit(benchmark):
    vm = _cr8_vm(shadow=True)

    def run():
        rewind(vm, 64)
        return vm.run()

    r = benchmark(run)
    assert vtx.ExitReason.CONTROL_REGISTER_ACCESS not in r.exits and vm.read(0x9080, 1) == b"\x20"
    per_exit(benchmark, EXIT_COUNT)      # per MOV to CR8: no exit is taken


@needs_unicorn
def test_unicorn_out_hook(benchmark):
    from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_32, Uc
    from unicorn.x86_const import UC_X86_INS_OUT

    code = vtx.asm(OUT_LOOP, bits=32, org=ENTRY)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 1 << 20)
    uc.mem_write(ENTRY, code)
    seen = [0]

    def on_out(uc, port, size, value, data):
        seen[0] += 1

    uc.hook_add(UC_HOOK_INSN, on_out, None, 1, 0, UC_X86_INS_OUT)

    def run():
        seen[0] = 0
        uc.emu_start(ENTRY, ENTRY + len(code) - 1)
        return seen[0]

    assert benchmark(run) == EXIT_COUNT
    per_exit(benchmark, EXIT_COUNT)


@needs_unicorn
def test_unicorn_cpuid_hook(benchmark):
    from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_32, Uc
    from unicorn.x86_const import (UC_X86_INS_CPUID, UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX,
                                   UC_X86_REG_EDX)

    code = vtx.asm(CPUID_LOOP, bits=32, org=ENTRY)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 1 << 20)
    uc.mem_write(ENTRY, code)
    seen = [0]

    def on_cpuid(uc, data):
        seen[0] += 1
        leaf = uc.reg_read(UC_X86_REG_EAX)
        uc.reg_write(UC_X86_REG_EAX, leaf)
        uc.reg_write(UC_X86_REG_EBX, 0x756E6547)
        uc.reg_write(UC_X86_REG_ECX, 0x6C65746E)
        uc.reg_write(UC_X86_REG_EDX, 0x49656E69)
        return 1    # skip the instruction: the hook emulated it

    uc.hook_add(UC_HOOK_INSN, on_cpuid, None, 1, 0, UC_X86_INS_CPUID)

    def run():
        seen[0] = 0
        uc.emu_start(ENTRY, ENTRY + len(code) - 1)
        return seen[0]

    assert benchmark(run) == EXIT_COUNT
    per_exit(benchmark, EXIT_COUNT)


@kvm_peer.needs_kvm
def test_kvm_out_exit(benchmark):
    n = 2000          # PVM-style nested KVM exits cost ~10 us: keep it short
    guest = kvm_peer.KvmGuest(vtx.asm(OUT_LOOP.replace(str(EXIT_COUNT), str(n)), bits=16, org=ENTRY), ENTRY)

    def run():
        return guest.run_out_loop()

    assert benchmark.pedantic(run, rounds=5, iterations=1) == n
    per_exit(benchmark, n)


def _startup(benchmark, bits, memory):
    code = vtx.asm("hlt", bits=bits, org=ENTRY)
    setup = {32: "setup_protected_mode", 64: "setup_long_mode"}[bits]

    def start():
        vm = vtx.VM(memory=memory)
        vm.load(ENTRY, code)
        vm.add_vcpu()
        getattr(vm, setup)(entry=ENTRY)
        vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
        return vm.run()

    assert benchmark(start).stop == "stop"


def test_vtx_startup(benchmark):
    """VM creation to the first exit: memory, vCPU, VMCS, entry checks."""
    _startup(benchmark, 32, 1 << 20)


def test_vtx_startup_long_mode(benchmark):
    """VM creation to the first exit in 64-bit mode (the long-mode page
    tables and the EPT identity map are built on the way)."""
    _startup(benchmark, 64, 16 << 20)


def test_vtx_run_fixed_cost(benchmark):
    """One vm.run() whose guest exits at once (HLT, handler STOP): what a
    user pays per call when stepping a guest from Python."""
    vm = vtx.VM(memory=1 << 16)
    # hlt; jmp back to it: a STOP leaves RIP after the HLT (the exit is
    # handled, not repeated), so each run takes the JMP and exits again.
    vm.load(0, b"\xf4\xeb\xfd")
    vm.add_vcpu()
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    assert benchmark(vm.run).exit.reason == vtx.ExitReason.HLT


def test_vtx_run_budget_fixed_cost(benchmark):
    """One vm.run(max_instructions=1) on a guest that loops in place: the
    other way users step a guest, with no exit and no completion."""
    vm = vtx.VM(memory=1 << 16)
    vm.load(0, b"\xeb\xfe")          # jmp $
    vm.add_vcpu()
    r = benchmark(lambda: vm.run(max_instructions=1))
    assert r.stop == "budget" and r.instructions == 1 and vm.vcpu.rip == 0
