"""Guest page tables with 4 KiB pages for the engine fidelity tests
(test_engine_smc.py, test_engine_tlb.py).

setup_long_mode maps the first 4 GiB with 2 MiB pages; the tests here need
4 KiB pages whose entries the guest (or the test) can edit, aliases, and a
second hierarchy for MOV CR3.  A hierarchy lives in guest-physical memory at
`base` (below 2 MiB, so the guest reaches its own entries through the
identity mapping) and maps:

- 64-bit (4-level): linear [0, 2 MiB) identity with 4 KiB pages (PT0), linear
  [2 MiB, 4 MiB) with 4 KiB pages that start not present (PT1, for aliases and
  test pages), the rest of guest memory identity with 2 MiB pages;
- 32-bit paging: linear [0, 4 MiB) identity with 4 KiB pages (PT0), linear
  [4 MiB, 8 MiB) with 4 KiB pages that start not present (PT1).
"""

import vtx

P, RW = 1, 2


class Paging64:
    SIZE = 0x5000

    def __init__(self, vm, base):
        self.vm, self.base = vm, base
        pml4, pdpt, pd, pt0, pt1 = (base + 0x1000 * k for k in range(5))
        self.pt0, self.pt1 = pt0, pt1
        vm.write(base, bytes(self.SIZE))
        vm.write_u64(pml4, pdpt | 3)
        vm.write_u64(pdpt, pd | 3)
        vm.write_u64(pd, pt0 | 3)
        vm.write_u64(pd + 8, pt1 | 3)
        for k in range(2, 512):
            if k << 21 >= vm.memory_size:
                break
            vm.write_u64(pd + 8 * k, (k << 21) | 0x83)
        vm.write(pt0, b"".join(((i << 12) | 3).to_bytes(8, "little") for i in range(512)))
        self.cr3 = pml4

    def pte(self, lin):
        """The guest-physical address of the PTE for linear lin."""
        assert 0 <= lin < 4 << 20
        return (self.pt0 if lin < 2 << 20 else self.pt1) + 8 * ((lin >> 12) & 511)

    def map(self, lin, phys, flags=P | RW):
        self.vm.write_u64(self.pte(lin), (phys & ~0xFFF) | flags)

    def unmap(self, lin):
        self.vm.write_u64(self.pte(lin), 0)

    def entry(self, phys, flags=P | RW):
        return (phys & ~0xFFF) | flags


class Paging32:
    SIZE = 0x3000

    def __init__(self, vm, base):
        self.vm, self.base = vm, base
        pd, pt0, pt1 = base, base + 0x1000, base + 0x2000
        self.pt0, self.pt1 = pt0, pt1
        vm.write(base, bytes(self.SIZE))
        vm.write_u32(pd, pt0 | 3)
        vm.write_u32(pd + 4, pt1 | 3)
        vm.write(pt0, b"".join(((i << 12) | 3).to_bytes(4, "little") for i in range(1024)))
        self.cr3 = pd

    def pte(self, lin):
        assert 0 <= lin < 8 << 20
        return (self.pt0 if lin < 4 << 20 else self.pt1) + 4 * ((lin >> 12) & 1023)

    def map(self, lin, phys, flags=P | RW):
        self.vm.write_u32(self.pte(lin), (phys & ~0xFFF) | flags)

    def unmap(self, lin):
        self.vm.write_u32(self.pte(lin), 0)

    def entry(self, phys, flags=P | RW):
        return (phys & ~0xFFF) | flags


SYSTEM_TABLES = 0x70000      # the GDT setup_*_mode writes (32 KiB), identity-mapped by PT0


def paged_vm(bits, base, memory=4 << 20, entry=0x10000, stack=0x9000):
    """A VM in 64-bit mode or 32-bit protected mode (its GDT at SYSTEM_TABLES)
    with a hierarchy at base
    active (CR3 = its root), and a default handler that stops the run at any
    exit."""
    vm = vtx.VM(memory=memory)
    v = vm.add_vcpu()
    if bits == 64:
        vm.setup_long_mode(entry=entry, stack=stack, tables=SYSTEM_TABLES)
        pg = Paging64(vm, base)
    else:
        vm.setup_protected_mode(entry=entry, stack=stack, tables=SYSTEM_TABLES)
        pg = Paging32(vm, base)
        v.cr0 = 0x80000031                     # PG NE ET PE; CR4 stays 0: 32-bit paging
    v.cr3 = pg.cr3
    vm.default(lambda vcpu, exit: vtx.STOP)
    return vm, pg


def make_paging(bits, vm, base):
    return (Paging64 if bits == 64 else Paging32)(vm, base)
