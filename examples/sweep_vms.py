"""Many VMs at once: a sweep of one guest over its inputs, fanned out over
processes with vtx.sweep.  Each call builds its own VM from a flat binary
(vtx.load_flat) and runs the Collatz sequence of one number in 64-bit mode;
the results come back in the order of the inputs.

    python examples/sweep_vms.py
"""

import sys

import vtx
from vtx.sweep import sweep

COLLATZ = """
    xor ecx, ecx                # steps
1:  cmp rax, 1
    je 3f
    inc ecx
    test al, 1
    jz 2f
    lea rax, [rax + 2 * rax + 1]
    jmp 1b
2:  shr rax, 1
    jmp 1b
3:  hlt
"""


def steps(n):
    """The Collatz steps of n, counted by a guest: (n, steps, instructions)."""
    vm = vtx.VM(memory=1 << 20)
    vm.add_vcpu()
    vtx.load_flat(vm, vtx.asm(COLLATZ, bits=64, org=0x1000), 0x1000, mode="long")
    vm.vcpu.rax = n
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    r = vm.run(max_instructions=10_000_000)
    return n, vm.vcpu.ecx, r.instructions


def main():
    for n, s, insns in sweep(steps, [27, 97, 871, 6171, 77031, 837799], kind="process"):
        print(f"{n:>7}: {s:>4} steps ({insns} guest instructions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
