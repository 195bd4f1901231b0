"""Type 1 and type 2 side by side: the same 64-bit guest under a hypervisor
written in x86 assembly that runs in VMX root operation on the bare modeled
machine (examples/type1/hypervisor.s), and under a hypervisor written in
Python (vtx.VM).  Both count the guest's exits; both answer its CPUID with
their own vendor string.

    python examples/type1_hypervisor.py
"""

import pathlib

import vtx
from vtx import ExitReason as R

HERE = pathlib.Path(__file__).parent / "type1"
HYPERVISOR = 0x1000
GUEST = 0x20000            # GUEST_ENTRY in hypervisor.s
COUNTS = 0x12000           # the hypervisor's exit counters, one quad per reason
FAILURE = 0x12400


def guest_image():
    return vtx.asm((HERE / "guest.s").read_text(), bits=64, org=GUEST)


def run_type1(memory=4 << 20):
    """The bare machine: firmware leaves it in 64-bit mode at the hypervisor's
    entry; the hypervisor does the rest.  Returns (machine, run result,
    the hypervisor's own exit counts by reason)."""
    hw = vtx.BareMetal(memory=memory)
    hw.load(HYPERVISOR, vtx.asm((HERE / "hypervisor.s").read_text(), bits=64, org=HYPERVISOR))
    hw.load(GUEST, guest_image())
    hw.setup_long_mode(entry=HYPERVISOR, stack=0x8000)
    result = hw.run(max_instructions=1_000_000)
    if hw.read_u64(FAILURE):
        raise RuntimeError(f"the hypervisor failed: kind {hw.read_u64(FAILURE)}, "
                           f"detail {hw.read_u64(FAILURE + 8)}")
    counts = {R(r): hw.read_u64(COUNTS + 8 * r) for r in (R.CPUID, R.HLT, R.IO_INSTRUCTION)}
    return hw, result, counts


def run_type2(memory=4 << 20):
    """The same guest under a Python hypervisor.  Returns (console bytes,
    run result)."""
    vm = vtx.VM(memory=memory)
    vm.load(GUEST, guest_image())
    vm.add_vcpu()
    vm.setup_long_mode(entry=GUEST, stack=0x30000)
    console = bytearray()

    @vm.on(R.IO_INSTRUCTION)
    def io(vcpu, ex):
        console.append(ex.value & 0xFF)
        return vtx.RESUME

    @vm.on(R.CPUID)
    def cpuid(vcpu, ex):
        vcpu.rax = 0
        vcpu.rbx, vcpu.rdx, vcpu.rcx = (int.from_bytes(s, "little") for s in (b"VtxP", b"ytho", b"nHv!"))
        return vtx.RESUME

    @vm.on(R.HLT)
    def hlt(vcpu, ex):
        return vtx.STOP

    result = vm.run(max_instructions=1_000_000)
    return bytes(console), result


def main():
    hw, r1, counts = run_type1()
    console2, r2 = run_type2()
    print("type 1 (x86 hypervisor in VMX root operation on the bare machine):")
    print("  guest says:", hw.console.decode().rstrip())
    print("  exits the hypervisor counted:", {r.name: n for r, n in counts.items()})
    print(f"  instructions (hypervisor and guest): {r1.instructions}")
    print("type 2 (Python hypervisor, vtx.VM):")
    print("  guest says:", console2.decode().rstrip())
    print("  exits:", {r.name: n for r, n in r2.exits.items()})
    print(f"  guest instructions: {r2.instructions}")


if __name__ == "__main__":
    main()
