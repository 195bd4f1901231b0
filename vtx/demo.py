"""``python -m vtx demo``: one guest, three processor modes, one small
hypervisor in Python.

The guest prints a greeting through port 0xE9 (the debug port Bochs and QEMU
use), asks CPUID for the vendor string and prints it, then halts.  Every OUT,
the CPUID and the HLT are VM exits that the handlers below serve.
"""

import sys

from . import ExitReason, RESUME, STOP, VM, asm

ENTRY = 0x1000

# The same guest for every mode; only the pointer register differs.
GUEST = r"""
    mov {si}, offset greeting
    call puts
    xor eax, eax
    cpuid                       # leaf 0: vendor string in EBX, EDX, ECX
    mov {si}, offset vendor
    mov [{si}], ebx
    mov [{si} + 4], edx
    mov [{si} + 8], ecx
    call puts
    mov al, 10
    out 0xe9, al
    hlt

puts:                           # print the NUL-terminated string at {si}
    mov al, [{si}]
    test al, al
    jz 1f
    out 0xe9, al
    inc {si}
    jmp puts
1:  ret

greeting: .asciz "Hello from {mode}! The CPU vendor is: "
vendor:   .asciz "????????????"
"""

MODES = [
    (16, "16-bit real mode", "si"),
    (32, "32-bit protected mode", "esi"),
    (64, "64-bit long mode", "rsi"),
]

VENDOR = b"vtxVMXmodel!"     # what our hypervisor answers for CPUID leaf 0


def make_vm(bits, mode, si, out, image=True):
    vm = VM(memory=1 << 20)
    vm.add_vcpu()
    if image:
        vm.load(ENTRY, asm(GUEST.format(si=si, mode=mode), bits=bits, org=ENTRY))
        {16: vm.setup_real_mode, 32: vm.setup_protected_mode, 64: vm.setup_long_mode}[bits](entry=ENTRY)

    @vm.on(ExitReason.IO_INSTRUCTION)
    def port_io(vcpu, exit):
        if exit.direction == "out" and exit.port == 0xE9:
            out.append(chr(exit.value))
        return RESUME

    @vm.on(ExitReason.CPUID)
    def cpuid(vcpu, exit):
        eax, ebx, ecx, edx = vcpu.model_cpuid(exit.leaf, exit.subleaf)
        if exit.leaf == 0:
            ebx, edx, ecx = (int.from_bytes(VENDOR[i:i + 4], "little") for i in (0, 4, 8))
        vcpu.eax, vcpu.ebx, vcpu.ecx, vcpu.edx = eax, ebx, ecx, edx
        return RESUME

    @vm.on(ExitReason.HLT)
    def hlt(vcpu, exit):
        return STOP

    return vm


# The C guest of ``vtx demo --guest c`` (built by vtx.cc for each mode): the
# same greeting, CPUID by inline assembly, printf from vtx's runtime.
C_GUEST = r"""
#include "rt.h"

int main(void)
{
    u32 a = 0, b, c, d;
    char vendor[13];
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    vendor[12] = 0;
    printf("Hello from %s, in C! The CPU vendor is: %s\n", MODE, vendor);
    return 0;
}
"""

MODE_NAMES = {"real": 16, "protected": 32, "long": 64}


def make_c_vm(bits, mode, out):
    """The C guest for ``bits`` under the same handlers as the assembly one."""
    from .cguest import cc
    guest = cc(C_GUEST, mode=bits, cflags=[f'-DMODE="{mode}"'])
    vm = make_vm(bits, mode, None, out, image=None)
    guest.load(vm)
    return vm


def demo(stream=None, mode="all", guest="hello"):
    """Run the demo guest (``guest``: "hello", the assembly one, or "c") in
    ``mode`` ("real", "protected", "long" or "all") and write what it printed
    and its exits to ``stream``."""
    stream = stream or sys.stdout
    if mode != "all" and mode not in MODE_NAMES:
        raise ValueError(f"mode is 'real', 'protected', 'long' or 'all', not {mode!r}")
    if guest not in ("hello", "c"):
        raise ValueError(f"guest is 'hello' or 'c', not {guest!r}")
    for bits, name, si in MODES:
        if mode != "all" and MODE_NAMES[mode] != bits:
            continue
        out = []
        vm = make_c_vm(bits, name, out) if guest == "c" else make_vm(bits, name, si, out)
        mode_name = name
        result = vm.run()
        stream.write(f"== {mode_name} ==\n")
        stream.write("guest: " + "".join(out))
        stream.write(f"{result.instructions} guest instructions, {result.total_exits} VM exits, "
                     f"{result.wall_ns / 1000:.0f} us\n")
        stream.write(result.table() + "\n\n")
    return 0
