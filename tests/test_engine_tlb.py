"""Translations that change under a running loop: what a bigger TLB, cached
translated blocks and chained blocks must not keep.

Only outcomes the SDM defines are tested (Vol. 3A 4.10.4): after MOV to CR3
every non-global translation is invalidated (the tests use no global pages),
so a loop that switches CR3 to a second hierarchy, or edits a PTE and then
reloads CR3, sees the new translation on its very next access or fetch;
INVLPG does the same for one page.  A not-present entry is never cached, so
making a page present needs no invalidation.  Without VPID every VM entry
and exit invalidates the guest's translations (Vol. 3C 29.4.3.1 /
28.3.3.1), so a PTE the hypervisor edits between runs takes effect at once.
What the guest sees *without* an invalidation after it changes a present
entry is left open by the architecture and is not tested.

The hierarchies come from engine_paging: identity 4 KiB pages for the low
linear memory (PT0), and a window of 4 KiB pages that start not present
(PT1, at 2 MiB in 64-bit mode and 4 MiB with 32-bit paging) where the tests
map their pages.
"""

import shutil

import pytest

import vtx
from vtx import ExitReason as R

from engine_paging import make_paging, paged_vm

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU as (binutils) is not installed")

CODE = 0x10000
H1, H2 = 0x60000, 0x68000           # two hierarchies
RECS = 0x1C0000
PT1_LIN = {64: 0x200000, 32: 0x400000}
PHYS_A, PHYS_B = 0x30000, 0x31000   # two physical pages with different contents

def regs(bits):
    if bits == 64:
        return dict(ax="rax", bx="rbx", cx="rcx", dx="rdx", si="rsi", di="rdi", bp="rbp", ptr="qword")
    return dict(ax="eax", bx="ebx", cx="ecx", dx="edx", si="esi", di="edi", bp="ebp", ptr="dword")


def two_hierarchies(bits, lin):
    """H1 and H2 alike, except that linear page lin maps PHYS_A in H1 and
    PHYS_B in H2; H1 is active."""
    vm, h1 = paged_vm(bits, H1, entry=CODE)
    h2 = make_paging(bits, vm, H2)
    h1.map(lin, PHYS_A)
    h2.map(lin, PHYS_B)
    return vm, h1, h2


def run_to_hlt(vm, budget=200_000):
    r = vm.run(max_instructions=budget)
    assert r.stop == "stop" and r.exit.reason == R.HLT, r.exit
    return r


def recs(vm, n, size=4):
    return [int.from_bytes(vm.read(RECS + size * i, size), "little") for i in range(n)]


# --- MOV CR3 to a second hierarchy in the middle of a loop ------------------------------

@pytest.mark.parametrize("bits", [32, 64])
def test_cr3_switch_changes_called_code(bits):
    """A loop calls a function at linear F on every iteration and switches
    CR3 between H1 (F -> PHYS_A: returns 0xA) and H2 (F -> PHYS_B: returns
    0xB) after iterations 2, 5 and 6: each call runs the code of the
    hierarchy active at that moment."""
    r = regs(bits)
    f = PT1_LIN[bits] + 0x7000
    vm, h1, h2 = two_hierarchies(bits, f)
    vm.load(PHYS_A, vtx.asm("mov eax, 0xA\nret", bits=bits))
    vm.load(PHYS_B, vtx.asm("mov eax, 0xB\nret", bits=bits))
    vm.load(CODE, vtx.asm(f"""
        mov ebp, 0
        mov ebx, {h2.cr3:#x}
        mov ecx, {h1.cr3:#x}
        mov edx, {f:#x}
    top:
        call {r['dx']}
        mov [{RECS:#x} + {r['bp']} * 4], eax
        cmp ebp, 2
        je switch
        cmp ebp, 5
        je switch
        cmp ebp, 6
        jne next
    switch:
        mov cr3, {r['bx']}
        xchg {r['bx']}, {r['cx']}
    next:
        inc ebp
        cmp ebp, 10
        jne top
        hlt
    """, bits=bits, org=CODE))
    run_to_hlt(vm)
    assert recs(vm, 10) == [0xA, 0xA, 0xA, 0xB, 0xB, 0xB, 0xA, 0xB, 0xB, 0xB]


@pytest.mark.parametrize("bits", [32, 64])
def test_cr3_switch_changes_loaded_data(bits):
    """The same with a load from linear D, and a store to it: the store of
    each iteration goes to the page of the hierarchy active then."""
    r = regs(bits)
    d = PT1_LIN[bits] + 0x9000
    vm, h1, h2 = two_hierarchies(bits, d)
    vm.write_u32(PHYS_A + 0x10, 0xAAAA0000)
    vm.write_u32(PHYS_B + 0x10, 0xBBBB0000)
    vm.load(CODE, vtx.asm(f"""
        mov ebp, 0
        mov ebx, {h2.cr3:#x}
        mov ecx, {h1.cr3:#x}
    top:
        mov eax, [{d + 0x10:#x}]
        mov [{RECS:#x} + {r['bp']} * 4], eax
        inc dword ptr [{d + 0x10:#x}]
        test ebp, 1
        jz next
        mov cr3, {r['bx']}
        xchg {r['bx']}, {r['cx']}
    next:
        inc ebp
        cmp ebp, 8
        jne top
        hlt
    """, bits=bits, org=CODE))
    run_to_hlt(vm)
    # switches after iterations 1, 3, 5, 7: A A B B A A B B
    assert recs(vm, 8) == [0xAAAA0000, 0xAAAA0001, 0xBBBB0000, 0xBBBB0001,
                           0xAAAA0002, 0xAAAA0003, 0xBBBB0002, 0xBBBB0003]
    assert (vm.read_u32(PHYS_A + 0x10), vm.read_u32(PHYS_B + 0x10)) == (0xAAAA0004, 0xBBBB0004)


@pytest.mark.parametrize("bits", [32, 64])
def test_cr3_switch_remaps_the_running_code(bits):
    """The loop itself runs in linear page L, which maps PHYS_A in H1 and
    PHYS_B in H2.  Both pages hold the same code except for one immediate
    right after the MOV CR3: the instruction after MOV CR3 comes from the
    page of the new hierarchy, on every iteration."""
    r = regs(bits)
    lin = PT1_LIN[bits] + 0xB000
    vm, h1, h2 = two_hierarchies(bits, lin)

    def page(mark):
        return vtx.asm(f"""
            mov ebp, 0
        top:
            mov cr3, {r['bx']}
            mov edx, {mark:#x}
            mov [{RECS:#x} + {r['bp']} * 4], edx
            xchg {r['bx']}, {r['cx']}
            inc ebp
            cmp ebp, 9
            jne top
            hlt
        """, bits=bits, org=lin)

    a, b = page(0xA1), page(0xB2)
    assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
    vm.load(PHYS_A, a)
    vm.load(PHYS_B, b)
    v = vm.vcpu
    v.rip = lin
    v.rbx, v.rcx = h2.cr3, h1.cr3
    run_to_hlt(vm)
    assert recs(vm, 9) == [0xB2, 0xA1] * 4 + [0xB2]


# --- a PTE edited by the guest, then CR3 reloaded or INVLPG -------------------------

def pte_edit_guest(bits, flush, what):
    """A loop that reads (what="data") or calls (what="code") linear page P,
    then at iteration 3 rewrites P's PTE from PHYS_A to PHYS_B and
    invalidates (MOV CR3 with the same value, or INVLPG P), and at
    iteration 6 rewrites it back."""
    r = regs(bits)
    p = PT1_LIN[bits] + 0xD000
    vm, pg = paged_vm(bits, H1, entry=CODE)
    pg.map(p, PHYS_A)
    if what == "data":
        vm.write_u32(PHYS_A, 0xA0A0)
        vm.write_u32(PHYS_B, 0xB0B0)
        use = f"mov eax, [{p:#x}]"
    else:
        vm.load(PHYS_A, vtx.asm("mov eax, 0xA0A0\nret", bits=bits))
        vm.load(PHYS_B, vtx.asm("mov eax, 0xB0B0\nret", bits=bits))
        use = f"mov edx, {p:#x}\ncall {r['dx']}"
    inval = f"mov {r['ax']}, cr3\nmov cr3, {r['ax']}" if flush == "mov-cr3" else f"invlpg [{p:#x}]"
    vm.load(CODE, vtx.asm(f"""
        mov ebp, 0
    top:
        {use}
        mov [{RECS:#x} + {r['bp']} * 4], eax
        cmp ebp, 3
        jne 1f
        mov {r['ptr']} ptr [{pg.pte(p):#x}], {pg.entry(PHYS_B):#x}
        {inval}
    1:  cmp ebp, 6
        jne 2f
        mov {r['ptr']} ptr [{pg.pte(p):#x}], {pg.entry(PHYS_A):#x}
        {inval}
    2:  inc ebp
        cmp ebp, 9
        jne top
        hlt
    """, bits=bits, org=CODE))
    return vm


@pytest.mark.parametrize("what", ["data", "code"])
@pytest.mark.parametrize("flush", ["mov-cr3", "invlpg"])
@pytest.mark.parametrize("bits", [32, 64])
def test_pte_edit_then_invalidate(bits, flush, what):
    vm = pte_edit_guest(bits, flush, what)
    run_to_hlt(vm)
    assert recs(vm, 9) == [0xA0A0] * 4 + [0xB0B0] * 3 + [0xA0A0] * 2


def skip_pf_handler(vm, bits, length, at=0x4000, idt=0x6000):
    """A guest #PF handler that counts the faults at RECS + 0x800 and
    returns past the faulting instruction (`length` bytes)."""
    if bits == 64:
        src = f"inc dword ptr [{RECS + 0x800:#x}]\nadd qword ptr [rsp + 8], {length}\nadd rsp, 8\niretq"
        gate = (at & 0xFFFF) | (0x18 << 16) | (0x8E00 << 32) | ((at >> 16) << 48)
        vm.write_u64(idt + 16 * 14, gate)
        vm.write_u64(idt + 16 * 14 + 8, 0)
        vm.vcpu.idtr = vtx.DescriptorTable(idt, 16 * 256 - 1)
    else:
        src = f"inc dword ptr [{RECS + 0x800:#x}]\nadd dword ptr [esp + 4], {length}\nadd esp, 4\niretd"
        vm.write_u64(idt + 8 * 14, (at & 0xFFFF) | (0x08 << 16) | (0x8E00 << 32) | ((at >> 16) << 48))
        vm.vcpu.idtr = vtx.DescriptorTable(idt, 8 * 256 - 1)
    vm.load(at, vtx.asm(src, bits=bits, org=at))
    v = vm.vcpu
    v.vmwrite(vtx.VmcsField.EXCEPTION_BITMAP, v.vmread(vtx.VmcsField.EXCEPTION_BITMAP) & ~(1 << 14))


@pytest.mark.parametrize("bits", [32, 64])
def test_not_present_to_present_needs_no_invalidation(bits):
    """A load from a not-present page faults (the guest's handler skips it);
    the guest then makes the page present, with no invalidation, and the
    same load, next, succeeds: not-present entries are never cached (SDM
    Vol. 3A 4.10.4.3).  The same for a call into a not-present code page."""
    r = regs(bits)
    p, f = PT1_LIN[bits] + 0xE000, PT1_LIN[bits] + 0xF000
    vm, pg = paged_vm(bits, H1, entry=CODE)
    vm.write_u32(PHYS_B + 0x40, 0xB0B0)
    vm.load(PHYS_A, vtx.asm("mov ecx, 0xC0DE\nret", bits=bits))
    load = f"mov eax, dword ptr [{p + 0x40:#x}]"
    skip_pf_handler(vm, bits, len(vtx.asm(load, bits=bits)))
    vm.load(CODE, vtx.asm(f"""
        mov eax, 0x1111
        {load}
        mov esi, eax
        mov {r['ptr']} ptr [{pg.pte(p):#x}], {pg.entry(PHYS_B):#x}
        {load}
        mov {r['ptr']} ptr [{pg.pte(f):#x}], {pg.entry(PHYS_A):#x}
        mov edx, {f:#x}
        call {r['dx']}
        hlt
    """, bits=bits, org=CODE))
    res = run_to_hlt(vm, 100)
    assert (vm.vcpu.esi, vm.vcpu.eax, vm.vcpu.ecx) == (0x1111, 0xB0B0, 0xC0DE)
    assert res.events == 1 and vm.read_u32(RECS + 0x800) == 1


# --- an instruction crossing into a page whose mapping changes ------------------------

@pytest.mark.parametrize("flush", ["mov-cr3", "invlpg"])
@pytest.mark.parametrize("bits", [32, 64])
def test_crossing_instruction_second_page_remapped(bits, flush):
    """MOV EDX, imm32 starts 2 bytes before the end of page X; page X+1 maps
    PHYS_A (immediate bytes 2-3 = 0xA1 0xA1) and then, after the guest
    edits its PTE and invalidates, PHYS_B (0xB2 0xB2).  The loop runs the
    instruction 6 times and remaps after the 3rd: a cached decode of the
    crossing instruction must not outlive the mapping of its second page."""
    r = regs(bits)
    x = PT1_LIN[bits] + 0x20000
    vm, pg = paged_vm(bits, H1, entry=CODE)
    inval = (f"mov {r['si']}, cr3\nmov cr3, {r['si']}" if flush == "mov-cr3"
             else f"invlpg [{x + 0x1000:#x}]")
    # page X: at its end BA 11 11 (MOV EDX, imm32: first 3 bytes)
    xpage = bytearray(b"\xcc" * 0x1000)
    xpage[0xFFD:] = b"\xba\x11\x11"
    vm.write(0x34000, bytes(xpage))
    pg.map(x, 0x34000)
    back = vtx.asm(f"mov ecx, {CODE + 0x100:#x}\njmp {r['cx']}", bits=bits)
    vm.write(PHYS_A, b"\xa1\xa1" + back)
    vm.write(PHYS_B, b"\xb2\xb2" + back)
    pg.map(x + 0x1000, PHYS_A)
    vm.load(CODE, vtx.asm(f"""
        mov ebp, 0
        mov eax, {x + 0xFFD:#x}
        jmp {r['ax']}
        .org 0x100, 0xcc
        mov [{RECS:#x} + {r['bp']} * 4], edx
        inc ebp
        cmp ebp, 3
        jne 1f
        mov {r['ptr']} ptr [{pg.pte(x + 0x1000):#x}], {pg.entry(PHYS_B):#x}
        {inval}
    1:  cmp ebp, 6
        je 2f
        jmp {r['ax']}
    2:  hlt
    """, bits=bits, org=CODE))
    run_to_hlt(vm)
    assert recs(vm, 6) == [0xA1A11111] * 3 + [0xB2B21111] * 3


# --- more pages than a small TLB holds, remapped -------------------------------------

@pytest.mark.parametrize("bits", [32, 64])
def test_many_pages_remapped(bits):
    """512 linear pages map 512 physical pages (page i -> j = 37 * i mod 512,
    each holding its number j); the guest reads all of them, then rewrites
    the 512 PTEs to the reversed permutation, reloads CR3, and reads them
    again, from the last page down (the pages read last before the switch
    come first), then from the first up.  Every read returns the page of
    the mapping current at the time, whatever a TLB of any size held."""
    r = regs(bits)
    n = 512
    base = PT1_LIN[bits]
    phys0 = 0x200000
    vm, pg = paged_vm(bits, H1, entry=CODE)
    for j in range(n):
        vm.write_u32(phys0 + 0x1000 * j + 8 * (j % 500), j)
    first = [(37 * i) % n for i in range(n)]
    second = [first[n - 1 - i] for i in range(n)]
    for i in range(n):
        pg.map(base + 0x1000 * i, phys0 + 0x1000 * first[i])
    # the guest's new PTEs, and the offset of each page's value
    table2 = b"".join(pg.entry(phys0 + 0x1000 * j).to_bytes(8, "little") for j in second)
    vm.write(0x180000, table2)
    offs = b"".join((8 * (first[i] % 500)).to_bytes(4, "little") for i in range(n))
    offs2 = b"".join((8 * (second[i] % 500)).to_bytes(4, "little") for i in range(n))
    vm.write(0x188000, offs)
    vm.write(0x189000, offs2)
    step = 8 if bits == 64 else 4
    vm.load(CODE, vtx.asm(f"""
        mov edi, {RECS:#x}
        mov esi, 0x188000
        call readall
        mov ecx, 0
    1:  mov eax, [0x180000 + {r['cx']} * 8]
        mov [{pg.pte(base):#x} + {r['cx']} * {step}], {r['ax']}
        inc ecx
        cmp ecx, {n}
        jne 1b
        mov {r['ax']}, cr3
        mov cr3, {r['ax']}
        mov esi, 0x189000
        call readdown
        mov esi, 0x189000
        call readall
        hlt
    readdown:
        mov ecx, {n - 1}
    3:  mov eax, ecx
        shl eax, 12
        add eax, [{r['si']} + {r['cx']} * 4]
        mov eax, [{base:#x} + {r['ax']}]
        mov [{r['di']} + {r['cx']} * 4], eax
        dec ecx
        jns 3b
        add edi, {4 * n}
        ret
    readall:
        mov ecx, 0
    2:  mov eax, ecx
        shl eax, 12
        add eax, [{r['si']} + {r['cx']} * 4]
        mov eax, [{base:#x} + {r['ax']}]
        mov [{r['di']}], eax
        add edi, 4
        inc ecx
        cmp ecx, {n}
        jne 2b
        ret
    """, bits=bits, org=CODE))
    run_to_hlt(vm, 1_000_000)
    got = recs(vm, 3 * n)
    assert got[:n] == first
    assert got[n:2 * n] == second
    assert got[2 * n:] == second


@pytest.mark.parametrize("bits", [32, 64])
def test_many_code_pages_remapped(bits):
    """The same for code: 300 linear pages, each with a function returning
    the number of the physical page behind it; called, remapped (reversed),
    CR3 reloaded, called again."""
    r = regs(bits)
    n = 300
    base = PT1_LIN[bits]
    phys0 = 0x200000
    vm, pg = paged_vm(bits, H1, entry=CODE)
    for j in range(n):
        vm.load(phys0 + 0x1000 * j, b"\xb8" + j.to_bytes(4, "little") + b"\xc3")    # MOV EAX, j; RET
    for i in range(n):
        pg.map(base + 0x1000 * i, phys0 + 0x1000 * i)
    step = 8 if bits == 64 else 4
    table2 = b"".join(pg.entry(phys0 + 0x1000 * (n - 1 - i)).to_bytes(step, "little") for i in range(n))
    vm.write(0x180000, table2)
    vm.load(CODE, vtx.asm(f"""
        mov edi, {RECS:#x}
        call callall
        mov ecx, 0
    1:  mov {r['ax']}, [0x180000 + {r['cx']} * {step}]
        mov [{pg.pte(base):#x} + {r['cx']} * {step}], {r['ax']}
        inc ecx
        cmp ecx, {n}
        jne 1b
        mov {r['ax']}, cr3
        mov cr3, {r['ax']}
        call callall
        hlt
    callall:
        mov esi, 0
    2:  mov edx, esi
        shl edx, 12
        add edx, {base:#x}
        call {r['dx']}
        mov [{r['di']}], eax
        add edi, 4
        inc esi
        cmp esi, {n}
        jne 2b
        ret
    """, bits=bits, org=CODE))
    run_to_hlt(vm, 1_000_000)
    got = recs(vm, 2 * n)
    assert got[:n] == list(range(n))
    assert got[n:] == list(range(n - 1, -1, -1))


# --- a PTE edited by the hypervisor between exits ------------------------------------

@pytest.mark.parametrize("bits", [32, 64])
def test_hypervisor_edits_a_pte_between_exits(bits):
    """The guest loads from linear D and calls linear F, then OUT exits;
    the handler remaps D and F to other physical pages (a VM entry without
    VPID invalidates the guest's translations) and RESUMEs: the next
    iteration reads and runs the new pages."""
    r = regs(bits)
    d, f = PT1_LIN[bits] + 0x3000, PT1_LIN[bits] + 0x4000
    vm, pg = paged_vm(bits, H1, entry=CODE)
    pages = [0x40000 + 0x2000 * k for k in range(5)]
    for k, p in enumerate(pages):
        vm.write_u32(p, 0xD0 + k)
        vm.load(p + 0x1000, vtx.asm(f"mov ebx, {0xF0 + k}\nret", bits=bits))
    pg.map(d, pages[0])
    pg.map(f, pages[0] + 0x1000)
    vm.load(CODE, vtx.asm(f"""
    top:
        mov eax, [{d:#x}]
        mov edx, {f:#x}
        call {r['dx']}
        out 0x80, al
        jmp top
    """, bits=bits, org=CODE))
    seen = []

    @vm.on(R.IO_INSTRUCTION)
    def out(vcpu, exit):
        seen.append((vcpu.eax, vcpu.ebx))
        k = len(seen)
        if k == len(pages):
            return vtx.STOP
        pg.map(d, pages[k])
        pg.map(f, pages[k] + 0x1000)
        return vtx.RESUME

    res = vm.run(max_instructions=10_000)
    assert res.stop == "stop" and res.exit.reason == R.IO_INSTRUCTION
    assert seen == [(0xD0 + k, 0xF0 + k) for k in range(len(pages))]
