"""The inline data path (vtx/core/mmu.pxi, data_hit; core/insn/fast_mem.pxi):
a load or store through a segment without base or limit hits the TLB in
one lookup, and a MOV whose address is base + displacement or base +
index * scale + displacement has a handler of its own for that form.
Neither may change an outcome: a segment with a base, a limit, a type that
forbids the access or an expand-down limit takes the full checks, even
right after flat accesses to the same offsets filled the TLB; and an
address computed with a 32-bit address size wraps at 4 GiB in every form.
"""

import pytest

import vtx
from vtx import ExitReason as R

from conftest import guest, needs_as
from prot_harness import DATA, DATA0, FREE, Prot, seg

pytestmark = needs_as

BASED, LIMITED, READ_ONLY, EXPAND_DOWN = FREE, FREE + 8, FREE + 16, FREE + 24
MARK = 0x5A5A5A5A
# Flat loads and stores at (and just below) an offset, so that its page is
# in the TLB with read and write permission before the segment changes.
WARM = """
        mov ecx, 4
    1:  mov eax, [{off}]
        mov [{off} - 4], eax
        dec ecx
        jnz 1b
"""


def machine():
    p = Prot(32)
    p.gdt[BASED] = seg(base=0x1000, typ=0x3)                    # read/write, base 4 KiB
    p.gdt[LIMITED] = seg(limit=0x21FFF, typ=0x3, g=0)           # read/write, limit 136 KiB - 1
    p.gdt[READ_ONLY] = seg(typ=0x1)                             # read-only data, flat
    p.gdt[EXPAND_DOWN] = seg(limit=0x21FFF, typ=0x7, g=0)       # expand-down, valid offsets above the limit
    return p


def test_a_segment_base_applies_after_flat_accesses_filled_the_tlb():
    """Loads and stores at DATA through the flat DS (TLB filled for that
    page), then DS with base 4 KiB: the same offset now reaches DATA + 4
    KiB, for a load and for a store, in both addressing forms."""
    p = machine()
    p.hw.write(DATA, (0x11111111).to_bytes(4, "little"))
    p.hw.write(DATA + 0x1000, (0x22222222).to_bytes(4, "little"))
    cpu, vec, _ = p.run(WARM.format(off=DATA + 8) + f"""
        mov ax, {BASED}
        mov ds, ax
        mov edx, [{DATA}]
        mov ebx, {DATA}
        xor ecx, ecx
        mov ebp, [ebx + ecx * 4]
        mov dword ptr [ebx + 8], 0x33333333
        mov ax, {DATA0}
        mov ds, ax
    """)
    assert vec is None
    assert cpu.edx & 0xFFFFFFFF == 0x22222222 and cpu.ebp & 0xFFFFFFFF == 0x22222222
    assert p.u32(DATA + 0x1008) == 0x33333333 and p.u32(DATA + 8) == 0


@pytest.mark.parametrize("form", ["[{off}]", "[ebx + {d}]", "[ebx + ecx * 2 + {d}]"])
def test_a_limit_below_4gib_faults_after_flat_accesses(form):
    """Through a segment whose limit ends at DATA + 8 KiB - 1: a load of the
    last dword within it works (EDX gets the mark), one that ends a byte
    beyond it is #GP(0), though the flat DS just hit the TLB there."""
    p = machine()
    top = DATA + 0x2000 - 4                 # the last dword within the limit
    p.hw.write(top, MARK.to_bytes(4, "little"))
    ok = form.format(off=top, d=top - DATA)
    bad = form.format(off=top + 1, d=top + 1 - DATA)
    cpu, vec, err = p.run(WARM.format(off=top) + f"""
        mov ebx, {DATA}
        xor ecx, ecx
        xor edx, edx
        mov ax, {LIMITED}
        mov ds, ax
        mov edx, dword ptr {ok}
        mov edx, dword ptr {bad}
    """)
    assert (vec, err) == (13, 0)
    assert cpu.edx == MARK


def test_a_read_only_segment_refuses_a_store():
    p = machine()
    p.hw.write(DATA, MARK.to_bytes(4, "little"))
    cpu, vec, err = p.run(WARM.format(off=DATA) + f"""
        xor edx, edx
        mov ax, {READ_ONLY}
        mov ds, ax
        mov edx, [{DATA}]
        mov ebx, {DATA}
        mov [ebx + 4], edx
    """)
    assert (vec, err) == (13, 0)
    assert cpu.edx == MARK and p.u32(DATA + 4) == 0


def test_an_expand_down_segment_refuses_offsets_up_to_its_limit():
    """Valid offsets of an expand-down segment lie above its limit: a load
    above it works, the flat-looking offset DATA (below it) is #GP(0)."""
    p = machine()
    p.hw.write(DATA + 0x2000, MARK.to_bytes(4, "little"))
    cpu, vec, err = p.run(WARM.format(off=DATA) + f"""
        xor edx, edx
        mov ax, {EXPAND_DOWN}
        mov ds, ax
        mov edx, [{DATA + 0x2000}]
        mov edx, [{DATA}]
    """)
    assert (vec, err) == (13, 0)
    assert cpu.edx == MARK


@pytest.mark.parametrize("bits", [32, 64])
def test_32_bit_addresses_wrap_in_every_form(bits):
    """With a 32-bit address size (the default in 32-bit mode, a 67H prefix
    in 64-bit mode) base + displacement and base + index * scale +
    displacement wrap at 4 GiB: both forms reach offset 0x800 from just
    below 4 GiB, for a load and for a store."""
    vm = guest("""
        mov ebx, 0xFFFFFFF0
        mov ecx, 4
        mov eax, [ebx + 0x810]
        mov edx, [ebx + ecx * 4 + 0x810]
        mov [ebx + 0x818], eax
        mov [ebx + ecx * 2 + 0x814], edx
        hlt
    """, bits)
    vm.write(0x800, (0xCAFEF00D).to_bytes(4, "little"))
    vm.write(0x810, (0x0BADBEEF).to_bytes(4, "little"))
    r = vm.run()
    v = vm.vcpu
    assert r.exit.reason == R.HLT
    assert v.eax == 0xCAFEF00D and v.edx == 0x0BADBEEF
    assert int.from_bytes(vm.read(0x808, 4), "little") == 0xCAFEF00D
    assert int.from_bytes(vm.read(0x80C, 4), "little") == 0x0BADBEEF


def test_64_bit_addresses_do_not_wrap_at_4gib():
    """The same form with a 64-bit address size reaches above 4 GiB, which
    the guest's page tables do not map: a page fault at that linear
    address, not a read of offset 0x800."""
    vm = guest("""
        mov ebx, 0xFFFFFFF0
        mov eax, [rbx + 0x810]
        hlt
    """, 64, memory=1 << 20)
    seen = []
    vm.on(R.EXCEPTION_OR_NMI)(lambda vcpu, e: seen.append(e) or vtx.STOP)
    vm.run()
    assert [(e.vector, e.fault_address) for e in seen] == [(14, 0x100000800)]
