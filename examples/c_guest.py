"""A C guest from vtx.cc, loaded as an ELF file with vtx.load_elf, in each
processor mode: it asks the hypervisor for a limit through an IN from port
0x510, prints the primes below it with printf (port 0xE9) and returns their
count from main, which the hypervisor reads in EAX at the final HLT.

    python examples/c_guest.py
"""

import sys
import tempfile
from pathlib import Path

import vtx

SOURCE = r"""
#include "rt.h"

int main(void)
{
    u32 limit = inl(0x510);           /* the hypervisor answers */
    int count = 0;
    printf("primes below %u:", limit);
    for (u32 n = 2; n < limit; n++) {
        u32 d = 2;
        while (d * d <= n && n % d)
            d++;
        if (d * d > n) {
            printf(" %u", n);
            count++;
        }
    }
    printf("\n");
    return count;
}
"""


def run(mode, limit=50):
    guest = vtx.cc(SOURCE, mode=mode)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "primes.elf"
        path.write_bytes(guest.elf)             # a file, as a build system would leave it
        vm = vtx.VM(memory=1 << 20)
        vm.add_vcpu()
        image = vtx.load_elf(vm, path, mode=mode)
    out = []

    @vm.on(vtx.ExitReason.IO_INSTRUCTION)
    def port_io(vcpu, exit):
        if exit.direction == "in" and exit.port == 0x510:
            vcpu.eax = limit
        elif exit.port == 0xE9:
            out.append(chr(exit.value))
        return vtx.RESUME

    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    result = vm.run(max_instructions=1_000_000)
    assert result.exit.guest_rip == guest.halt_address
    return "".join(out), vm.vcpu.eax, image


def main():
    for mode in ("real", "protected", "long"):
        text, count, image = run(mode)
        print(f"{mode:>9} mode, entry {image.entry:#x}: {text.strip()} ({count} primes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
