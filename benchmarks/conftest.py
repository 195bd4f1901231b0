"""Shared guests for the benchmarks.

Run with ``pytest benchmarks/`` (they are not part of the default test run).
Each benchmark puts its peers in the same run, so the figures to read are the
ratios between rows on one machine: Unicorn (QEMU's TCG) always, real KVM
through /dev/kvm where it works.
"""

import pytest

import vtx

LOOP_COUNT = 2_000_000
EXIT_COUNT = 20_000

TIGHT_LOOP = f"""
    mov ecx, {LOOP_COUNT}
1:  dec ecx
    jnz 1b
    hlt
"""

OUT_LOOP = f"""
    mov ecx, {EXIT_COUNT}
1:  out 0x80, al
    dec ecx
    jnz 1b
    hlt
"""

CPUID_LOOP = f"""
    mov esi, {EXIT_COUNT}
1:  mov eax, 1
    cpuid
    dec esi
    jnz 1b
    hlt
"""

ENTRY = 0x1000


def make_vm(source, bits=32):
    vm = vtx.VM(memory=1 << 20)
    vm.load(ENTRY, vtx.asm(source, bits=bits, org=ENTRY))
    vm.add_vcpu()
    {16: vm.setup_real_mode, 32: vm.setup_protected_mode, 64: vm.setup_long_mode}[bits](entry=ENTRY)
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    return vm


def rewind(vm, bits=32):
    {16: vm.setup_real_mode, 32: vm.setup_protected_mode, 64: vm.setup_long_mode}[bits](entry=ENTRY)


try:
    import unicorn  # noqa: F401
    HAVE_UNICORN = True
except ImportError:  # pragma: no cover
    HAVE_UNICORN = False

needs_unicorn = pytest.mark.skipif(not HAVE_UNICORN, reason="unicorn is not installed")
