"""Paging on its own (core/mmu.pxi; SDM Vol. 3A chapter 4): every paging mode
and page size against every access-rights bit, with the exact #PF error
code, CR2 and accessed/dirty flags, faults on the second page of an access
that crosses pages, reserved bits per level, SMAP with RFLAGS.AC and
STAC/CLAC, implicit supervisor-mode accesses, and what the TLB keeps across
MOV to CR3 (global pages, PCIDs) and drops on INVLPG and INVPCID.

The guest runs under the hosted VM with its state set directly in the VMCS:
the page tables are built here, in Python, one chain for the system pages
(identity-mapped, the handler, GDT, IDT, TSS, stacks, code) and one for the
page under test, so the accessed and dirty flags of the test chain change
only by the access under test.  The access is one instruction followed by
CPUID (which always exits: success); a page fault goes to the guest's own
handler, which stores the error code and CR2 and halts (HLT exits).  The
expected outcome comes from `expect`, written from SDM Vol. 3A 4.6 and 4.7
independently of the model.
"""

import functools
import itertools

import pytest

import vtx
from vtx import DescriptorTable, Segment, VmcsField as F

MEMORY = 8 << 20

# System pages (identity-mapped, supervisor unless said otherwise).
HANDLER = 0x1000
GDT = 0x2000
IDT = 0x2800
TSS = 0x3000
UCODE = 0x4000          # the access under test, run at CPL 3 (a user page)
KCODE = 0x5000          # the same, run at CPL 0 (a supervisor page)
KSTACK = 0x8000         # top of the kernel stack (page 0x7000)
USTACK = 0xA000         # top of the user stack (page 0x9000, a user page)
RESULT = 0xB000         # the handler's record: error code, CR2, a flag
UGDT = 0xCFD8           # a second GDT: entries 00H-20H in a supervisor page, 28H on in a user page
USER_PAGES = (0x4000, 0x9000, 0xD000)
TABLES = 0x100000       # paging structures of the system chain
TEST_TABLES = 0x180000  # those of the test chain (made anew by every map_test)
SYS_PT_PAGES = 1        # the system chain maps the first 2 (PAE/4-level) or 4 MiB (32-bit)

# The page under test: physical page TP (and TP2 after it); linear base per mode.
TP = 0x605000
TP2 = 0x606000
LBASE = {32: 0x00800000, "pae": 0x40000000, 64: 0x0000008000000000}
SIZES = {32: ("4K", "4M"), "pae": ("4K", "2M"), 64: ("4K", "2M", "1G")}
MODES = (32, "pae", 64)

P, W, U, PS, A, D, G = 1, 2, 4, 0x80, 0x20, 0x40, 0x100
XD = 1 << 63

# #PF error code bits (SDM Vol. 3A 4.7).
EP, EW, EU, ER, EI = 1, 2, 4, 8, 16


def bits_of(mode):
    return 64 if mode == 64 else 32


@functools.lru_cache(maxsize=None)
def handler_code(bits):
    r = "rax" if bits == 64 else "eax"
    return vtx.asm(f"""
        pop {r}
        mov [{RESULT}], {r}
        mov {r}, cr2
        mov [{RESULT + 8}], {r}
        mov dword ptr [{RESULT + 16}], 1
        hlt
    """, bits=bits, org=HANDLER)


@functools.lru_cache(maxsize=None)
def access_code(bits, kind):
    b = "rbx" if bits == 64 else "ebx"
    insn = {"read": "mov eax, [%s]" % b, "write": "mov [%s], eax" % b, "fetch": "jmp %s" % b}[kind]
    return vtx.asm(insn + "\ncpuid\n", bits=bits)


def gdt_bytes():
    descs = [0,
             0x00CF9B000000FFFF,   # 0x08 code32 DPL 0
             0x00CF93000000FFFF,   # 0x10 data DPL 0
             0x00AF9B000000FFFF,   # 0x18 code64 DPL 0
             0x00CFFB000000FFFF,   # 0x20 code32 DPL 3
             0x00CFF3000000FFFF,   # 0x28 data DPL 3
             0x00AFFB000000FFFF]   # 0x30 code64 DPL 3
    # 0x38: the TSS (busy, 32- or 64-bit by mode: type 11), base TSS, limit 67H
    descs.append(0x67 | ((TSS & 0xFFFFFF) << 16) | (0x8B << 40) | ((TSS >> 24) << 56))
    descs.append(0)
    return b"".join(d.to_bytes(8, "little") for d in descs)


def idt_bytes(bits):
    """Gate 14 (#PF) to the handler; the others absent (the VM intercepts
    every other exception, so they exit instead)."""
    out = bytearray(16 * 32 if bits == 64 else 8 * 32)
    if bits == 64:
        lo = (HANDLER & 0xFFFF) | (0x18 << 16) | (0x8E << 40) | (((HANDLER >> 16) & 0xFFFF) << 48)
        out[16 * 14:16 * 14 + 16] = lo.to_bytes(8, "little") + (HANDLER >> 32).to_bytes(8, "little")
    else:
        lo = (HANDLER & 0xFFFF) | (0x08 << 16) | (0x8E << 40) | (((HANDLER >> 16) & 0xFFFF) << 48)
        out[8 * 14:8 * 14 + 8] = lo.to_bytes(8, "little")
    return bytes(out)


class Machine:
    """A VM with the system pages, and page tables built from Python."""

    def __init__(self, mode, cpu="default"):
        self.mode = mode
        self.bits = bits_of(mode)
        self.wide = mode != 32
        self.vm = vtx.VM(memory=MEMORY, cpu=cpu)
        self.v = self.vm.add_vcpu()
        self.next_table = TABLES
        self.vm.write(HANDLER, handler_code(self.bits))
        self.vm.write(GDT, gdt_bytes())
        self.vm.write(UGDT, gdt_bytes())
        self.vm.write(IDT, idt_bytes(self.bits))
        tss = bytearray(0x68)
        if self.bits == 64:
            tss[4:12] = KSTACK.to_bytes(8, "little")          # RSP0
        else:
            tss[4:8] = KSTACK.to_bytes(4, "little")           # ESP0
            tss[8:10] = (0x10).to_bytes(2, "little")          # SS0
        self.vm.write(TSS, bytes(tss))
        self.root = self.table()
        self.build_system_chain()

        @self.vm.on(vtx.ExitReason.CPUID, vtx.ExitReason.HLT, vtx.ExitReason.EXCEPTION_OR_NMI,
                    vtx.ExitReason.EPT_VIOLATION)
        def stop(vcpu, exit):
            return vtx.STOP

    # --- paging structures -------------------------------------------------
    def table(self):
        t = self.next_table
        self.next_table += 0x1000
        self.vm.write(t, bytes(4096))
        return t

    def esize(self):
        return 8 if self.wide else 4

    def set_entry(self, table, index, value):
        n = self.esize()
        self.vm.write(table + n * index, value.to_bytes(n, "little"))

    def entry(self, table, index):
        n = self.esize()
        return int.from_bytes(self.vm.read(table + n * index, n), "little")

    def build_system_chain(self):
        """Identity-map the first 2 MiB with 4 KiB pages: supervisor,
        writable, except USER_PAGES (user, and the code page read-only)."""
        pt = self.table()
        n = 1024 if self.mode == 32 else 512
        for i in range(n if self.mode == 32 else 512):
            pa = i << 12
            bits = P | W
            if pa in USER_PAGES:
                bits |= U
            self.set_entry(pt, i, pa | bits)
        upper = P | W | U       # the leaves decide
        if self.mode == 32:
            self.set_entry(self.root, 0, pt | upper)
            self.cr3 = self.root
        elif self.mode == "pae":
            pd = self.table()
            self.set_entry(pd, 0, pt | upper)
            self.pdpt = [pd | P, 0, 0, 0]
            self.cr3 = self.root          # the PDPT (32-byte aligned)
            self.vm.write(self.root, b"".join(e.to_bytes(8, "little") for e in self.pdpt))
        else:
            pdpt, pd = self.table(), self.table()
            self.set_entry(self.root, 0, pdpt | upper)
            self.set_entry(pdpt, 0, pd | upper)
            self.set_entry(pd, 0, pt | upper)
            self.cr3 = self.root

    def map_test(self, size, leaf, upper=(P | W | U, P | W | U, P | W | U), lin=None, pa=TP):
        """Map the test page: a chain of fresh tables from the root to a leaf
        of `size` with bits `leaf`; `upper` are the bits of the non-leaf
        entries from the top.  Returns (linear address, [(table, index)] of
        the entries used, top first)."""
        lin = LBASE[self.mode] if lin is None else lin
        self.next_table = TEST_TABLES
        used = []
        if self.mode == 32:
            if size == "4M":
                x = lin + (pa & 0x3FFFFF)
                self.set_entry(self.root, (x >> 22) & 1023, (pa & ~0x3FFFFF) | leaf | PS)
                return x, [(self.root, (x >> 22) & 1023)]
            x = lin + (pa & 0xFFF)
            pt = self.table()
            self.set_entry(self.root, (x >> 22) & 1023, pt | upper[-1])
            self.set_entry(pt, (x >> 12) & 1023, (pa & ~0xFFF) | leaf)
            return x, [(self.root, (x >> 22) & 1023), (pt, (x >> 12) & 1023)]
        if self.mode == "pae":
            pd = self.table()
            self.pdpt[(lin >> 30) & 3] = pd | P
            self.vm.write(self.root, b"".join(e.to_bytes(8, "little") for e in self.pdpt))
            if size == "2M":
                x = lin + (pa & 0x1FFFFF)
                self.set_entry(pd, (x >> 21) & 511, (pa & ~0x1FFFFF) | leaf | PS)
                return x, [(pd, (x >> 21) & 511)]
            x = lin + (pa & 0xFFF)
            pt = self.table()
            self.set_entry(pd, (x >> 21) & 511, pt | upper[-1])
            self.set_entry(pt, (x >> 12) & 511, (pa & ~0xFFF) | leaf)
            return x, [(pd, (x >> 21) & 511), (pt, (x >> 12) & 511)]
        # 4-level
        pdpt = self.table()
        if size == "1G":
            x = lin + (pa & 0x3FFFFFFF)
        elif size == "2M":
            x = lin + (pa & 0x1FFFFF)
        else:
            x = lin + (pa & 0xFFF)
        self.set_entry(self.root, (x >> 39) & 511, pdpt | upper[0])
        used = [(self.root, (x >> 39) & 511)]
        if size == "1G":
            self.set_entry(pdpt, (x >> 30) & 511, (pa & ~0x3FFFFFFF) | leaf | PS)
            return x, used + [(pdpt, (x >> 30) & 511)]
        pd = self.table()
        self.set_entry(pdpt, (x >> 30) & 511, pd | upper[1])
        used.append((pdpt, (x >> 30) & 511))
        if size == "2M":
            self.set_entry(pd, (x >> 21) & 511, (pa & ~0x1FFFFF) | leaf | PS)
            return x, used + [(pd, (x >> 21) & 511)]
        pt = self.table()
        self.set_entry(pd, (x >> 21) & 511, pt | upper[2])
        self.set_entry(pt, (x >> 12) & 511, (pa & ~0xFFF) | leaf)
        return x, used + [(pd, (x >> 21) & 511), (pt, (x >> 12) & 511)]

    # --- processor state ------------------------------------------------------
    def enter(self, cpl, rip, rbx=0, wp=False, pse=False, pge=False, smep=False, smap=False, ac=False,
              nxe=True, pcide=False, gdt=GDT):
        vm, v = self.vm, self.v
        vm._common(v, rip)
        long = self.mode == 64
        if cpl:
            v.cs = Segment(0x33 if long else 0x23, 0, 0xFFFFFFFF, 0xA0FB if long else 0xC0FB)
        else:
            v.cs = Segment(0x18 if long else 0x08, 0, 0xFFFFFFFF, 0xA09B if long else 0xC09B)
        data = Segment(0x28 | 3, 0, 0xFFFFFFFF, 0xC0F3) if cpl else Segment(0x10, 0, 0xFFFFFFFF, 0xC093)
        for name in ("ds", "es", "ss", "fs", "gs"):
            setattr(v, name, data)
        v.tr = Segment(0x38, TSS, 0x67, 0x8B)
        v.gdtr = DescriptorTable(gdt, 0x47)
        v.idtr = DescriptorTable(IDT, 32 * (16 if long else 8) - 1)
        v.cr0 = 0x80000031 | (0x10000 if wp else 0)
        cr4 = ((1 << 4) if pse else 0) | ((1 << 5) if self.wide else 0) | ((1 << 7) if pge else 0) | \
              ((1 << 17) if pcide else 0) | ((1 << 20) if smep else 0) | ((1 << 21) if smap else 0)
        vm._set_cr4(v, cr4)
        v.cr3 = self.cr3
        v.efer = ((1 << 11) if nxe else 0) | (0x500 if long else 0)
        vm._entry_ia32e(v, long)
        if self.mode == "pae":
            for i, e in enumerate(self.pdpt):
                v.vmwrite(getattr(F, f"GUEST_PDPTE{i}"), e)
        v.rflags = 2 | ((1 << 18) if ac else 0)
        v.rsp = USTACK if cpl else KSTACK
        v.rbx = rbx
        v.rax = 0x11223344
        # every exception but #PF exits; #PF goes to the guest's handler
        v.vmwrite(F.EXCEPTION_BITMAP, 0xFFFFFFFF & ~(1 << 14))
        vm.write(RESULT, bytes(24))

    def run(self):
        """'ok' (the access completed: CPUID exit), ('pf', error, cr2), or
        the exit that stopped the run."""
        r = self.vm.run(max_instructions=1000)
        ex = r.exit
        if ex is not None and ex.reason == vtx.ExitReason.CPUID:
            return "ok"
        if ex is not None and ex.reason == vtx.ExitReason.HLT and self.vm.read_u32(RESULT + 16) == 1:
            mask = 0xFFFFFFFFFFFFFFFF if self.bits == 64 else 0xFFFFFFFF
            return ("pf", self.vm.read_u64(RESULT) & mask, self.vm.read_u64(RESULT + 8) & mask)
        return ex


def expect(mode, cpl, kind, u, w, x, wp=False, smep=False, smap=False, ac=False, nxe=True):
    """The outcome of an access by SDM Vol. 3A 4.6.1 (access rights) and 4.7
    (error code), for a translation whose entries are present with no
    reserved bit set: `u`, `w` and `x` are the combined U/S, R/W and
    not-XD of every level."""
    user = cpl == 3
    fault = False
    if user:
        fault = not u or (kind == "write" and not w) or (kind == "fetch" and not x)
    else:
        if kind == "write" and not w and wp:
            fault = True
        if kind == "fetch" and (not x or (u and smep)):
            fault = True
        if kind != "fetch" and u and smap and not ac:
            fault = True
    if not fault:
        return "ok"
    err = EP | (EW if kind == "write" else 0) | (EU if user else 0)
    if kind == "fetch" and (smep or (nxe and mode != 32)):
        err |= EI
    return err


# --- every mode x page size x leaf U/S, R/W, XD x CPL x access --------------------

LEAF_CASES = [(u, w, xd) for u in (0, 1) for w in (0, 1) for xd in (0, 1)]


def _cases():
    for mode in MODES:
        for size in SIZES[mode]:
            for (u, w, xd) in LEAF_CASES:
                if mode == 32 and xd:
                    continue
                for cpl in (0, 3):
                    for kind in ("read", "write", "fetch"):
                        yield mode, size, u, w, xd, cpl, kind


@pytest.fixture(scope="module")
def machines():
    cache = {}

    def get(mode, cpu="default"):
        if (mode, cpu) not in cache:
            cache[(mode, cpu)] = Machine(mode, cpu)
        return cache[(mode, cpu)]
    return get


def run_case(m, size, leaf, cpl, kind, upper=(P | W | U,) * 3, **ctl):
    x, used = m.map_test(size, leaf, upper=upper)
    if kind == "fetch":
        m.vm.write(TP, b"\x0f\xa2")              # CPUID at the target
    else:
        m.vm.write(TP, b"\xaa\xbb\xcc\xdd")
    code = UCODE if cpl == 3 else KCODE
    m.vm.write(code, access_code(m.bits, kind))
    m.enter(cpl, code, rbx=x, pse=(size == "4M"), **ctl)
    return x, used, m.run()


def check_ad(m, used, outcome, kind):
    """Accessed on every entry used and dirty on the leaf for a write when the
    access completes; nothing written when it faults (SDM Vol. 3A 4.8)."""
    for i, (t, idx) in enumerate(used):
        e = m.entry(t, idx)
        leaf = i == len(used) - 1
        if outcome == "ok":
            assert e & A, (hex(t), idx)
            assert bool(e & D) == (leaf and kind == "write"), (hex(t), idx, hex(e))
        else:
            assert not e & (A | D), (hex(t), idx, hex(e))


@pytest.mark.parametrize("mode,size,u,w,xd,cpl,kind", list(_cases()))
def test_leaf_rights(machines, mode, size, u, w, xd, cpl, kind):
    m = machines(mode)
    leaf = P | (U if u else 0) | (W if w else 0) | (XD if xd else 0)
    for wp in (False, True):
        x, used, got = run_case(m, size, leaf, cpl, kind, wp=wp)
        want = expect(mode, cpl, kind, u, w, not xd, wp=wp)
        if want == "ok":
            assert got == "ok", (got, wp)
        else:
            assert got == ("pf", want, x), (got, wp, hex(want))
        check_ad(m, used, got, kind)
        if got == "ok" and kind == "write":
            assert m.vm.read_u32(TP) == 0x11223344


@pytest.mark.parametrize("kind", ["read", "write", "fetch"])
@pytest.mark.parametrize("mode,level", [(32, 0), ("pae", 0), (64, 0), (64, 1), (64, 2)])
def test_upper_level_rights_combine(machines, mode, kind, level):
    """U/S, R/W and XD of a non-leaf entry restrict the whole translation
    (SDM Vol. 3A 4.6.1: the rights are those of every level); `level`
    counts the non-leaf entries from the top."""
    m = machines(mode)
    for clear, cpl in ((U, 3), (W, 3), (W, 0), (XD, 0)):
        if clear == XD and mode == 32:
            continue
        upper = [P | W | U] * 3
        if clear == XD:
            upper[level] |= XD
        else:
            upper[level] &= ~clear
        if mode != 64:
            upper = (upper[level],) * 3
        x, used, got = run_case(m, "4K", P | W | U, cpl, kind, upper=tuple(upper), wp=True)
        want = expect(mode, cpl, kind, u=clear != U, w=clear != W, x=clear != XD, wp=True)
        assert got == ("ok" if want == "ok" else ("pf", want, x)), (clear, cpl, got)


# --- CR0.WP, SMEP, SMAP ------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_supervisor_write_to_read_only_page_follows_cr0_wp(machines, mode):
    m = machines(mode)
    for u in (0, U):
        x, used, got = run_case(m, "4K", P | u, 0, "write", wp=False)
        assert got == "ok"
        assert m.entry(*used[-1]) & D       # the write sets D even on a read-only page
        x, used, got = run_case(m, "4K", P | u, 0, "write", wp=True)
        assert got == ("pf", EP | EW, x)


@pytest.mark.parametrize("mode", MODES)
def test_smep(machines, mode):
    m = machines(mode)
    x, used, got = run_case(m, "4K", P | U, 0, "fetch", smep=True)
    assert got == ("pf", EP | EI, x)        # I/D with SMEP, even in 32-bit paging
    check_ad(m, used, got, "fetch")
    x, used, got = run_case(m, "4K", P, 0, "fetch", smep=True)
    assert got == "ok"
    x, used, got = run_case(m, "4K", P | U, 3, "fetch", smep=True)
    assert got == "ok"                      # SMEP does not concern user-mode fetches


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["read", "write"])
def test_smap_with_ac(machines, mode, kind):
    m = machines(mode)
    for ac in (False, True):
        for w in (0, W):
            for wp in (False, True):
                x, used, got = run_case(m, "4K", P | U | w, 0, kind, smap=True, ac=ac, wp=wp)
                want = expect(mode, 0, kind, True, bool(w), True, wp=wp, smap=True, ac=ac)
                assert got == ("ok" if want == "ok" else ("pf", want, x)), (ac, w, wp, got)
                check_ad(m, used, got, kind)
    # supervisor pages are not SMAP's concern; nor are user-mode accesses
    x, used, got = run_case(m, "4K", P | W, 0, kind, smap=True)
    assert got == "ok"
    x, used, got = run_case(m, "4K", P | W | U, 3, kind, smap=True)
    assert got == "ok"


def test_smap_does_not_apply_to_fetches(machines):
    m = machines(64)
    x, used, got = run_case(m, "4K", P | U, 0, "fetch", smap=True)
    assert got == "ok"


@pytest.mark.parametrize("mode", [32, 64])
def test_implicit_supervisor_accesses_ignore_ac_under_smap(machines, mode):
    """Loading a segment reads the GDT: an implicit supervisor-mode access,
    which SMAP forbids on a user page even with RFLAGS.AC = 1 (SDM Vol. 3A
    4.6); the error code has U/S = 0 at CPL 3 too.  (UGDT's descriptor 28H
    is in a user page, those the #PF delivery reads in a supervisor page.)"""
    m = machines(mode)
    load_ds = vtx.asm("mov ax, 0x2b\nmov ds, ax\ncpuid\n", bits=m.bits)
    for cpl, code in ((0, KCODE), (3, UCODE)):
        m.vm.write(code, load_ds)
        for smap, ac in ((False, False), (True, False), (True, True)):
            m.enter(cpl, code, smap=smap, ac=ac, gdt=UGDT)
            got = m.run()
            if smap:
                assert got == ("pf", EP, UGDT + 0x28), (cpl, ac, got)
            else:
                assert got == "ok", (cpl, got)
        # the GDT in a supervisor page: readable implicitly from CPL 3
        m.enter(cpl, code, smap=True, gdt=GDT)
        assert m.run() == "ok"


@pytest.mark.parametrize("cpl", [0, 3])
def test_stac_clac(machines, cpl):
    m = machines(64)
    code = KCODE if cpl == 0 else UCODE
    m.vm.write(code, vtx.asm("stac\npushfq\npop rbx\nclac\npushfq\npop rcx\ncpuid\n", bits=64))
    m.vm.write(USTACK - 0x1000, bytes(8))
    m.enter(cpl, code)
    got = m.run()
    if cpl == 0:
        assert got == "ok"
        assert m.v.rbx & (1 << 18) and not m.v.rcx & (1 << 18)
    else:
        assert got.reason == vtx.ExitReason.EXCEPTION_OR_NMI and got.vector == 6


def test_stac_clac_without_smap_are_ud(machines):
    m = machines(64, vtx.CpuModel("default", remove={"SMAP"}))
    for insn in ("stac", "clac"):
        m.vm.write(KCODE, vtx.asm(insn + "\ncpuid\n", bits=64))
        m.enter(0, KCODE)
        got = m.run()
        assert got.reason == vtx.ExitReason.EXCEPTION_OR_NMI and got.vector == 6


def test_cr4_smap_needs_the_feature():
    from vtx.spec.capabilities import CR4_BITS
    vm = vtx.VM(memory=1 << 20, cpu=vtx.CpuModel("default", remove={"SMAP"}))
    assert not vm.cpu_model.cr4_fixed1 & (1 << CR4_BITS["SMAP"])
    assert vtx.VM(memory=1 << 20).cpu_model.cr4_fixed1 & (1 << CR4_BITS["SMAP"])


# --- not present, reserved bits ----------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["read", "write", "fetch"])
@pytest.mark.parametrize("cpl", [0, 3])
def test_not_present(machines, mode, kind, cpl):
    m = machines(mode)
    x, used, got = run_case(m, "4K", U | W, cpl, kind)
    err = (EW if kind == "write" else 0) | (EU if cpl == 3 else 0) | \
        (EI if kind == "fetch" and mode != 32 else 0)
    assert got == ("pf", err, x)
    check_ad(m, used, got, kind)


def rsvd(mode, kind, cpl=0):
    return EP | ER | (EW if kind == "write" else 0) | (EU if cpl == 3 else 0) | \
        (EI if kind == "fetch" and mode != 32 else 0)


@pytest.mark.parametrize("kind", ["read", "write", "fetch"])
def test_reserved_bits_4level(machines, kind):
    m = machines(64)
    # bits 51:MAXPHYADDR (39) of a leaf
    for size in ("4K", "2M", "1G"):
        x, used, got = run_case(m, size, P | W | U | (1 << 45), 0, kind)
        assert got == ("pf", rsvd(64, kind), x), size
        check_ad(m, used, got, kind)
    # bits 20:13 of a 2 MiB page, 29:13 of a 1 GiB page
    x, used, got = run_case(m, "2M", P | W | U | (1 << 13), 0, kind)
    assert got == ("pf", rsvd(64, kind), x)
    x, used, got = run_case(m, "1G", P | W | U | (1 << 21), 0, kind)
    assert got == ("pf", rsvd(64, kind), x)
    # PAT (bit 12 of a large page, bit 7 of a 4 KiB one) is not reserved
    x, used, got = run_case(m, "2M", P | W | U | (1 << 12), 0, kind)
    assert got != ("pf", rsvd(64, kind), x)
    # an upper level: bit 40 of a PDPTE pointing to a table
    x, used, got = run_case(m, "4K", P | W | U, 0, kind, upper=(P | W | U, P | W | U | (1 << 40), P | W | U))
    assert got == ("pf", rsvd(64, kind), x)
    # PS in a PML4E
    x, used, got = run_case(m, "4K", P | W | U, 0, kind, upper=(P | W | U | PS, P | W | U, P | W | U))
    assert got == ("pf", rsvd(64, kind), x)
    # bits 62:52 are ignored in 4-level paging
    x, used, got = run_case(m, "4K", P | W | U | (1 << 55), 0, kind)
    assert got == "ok"
    # XD with EFER.NXE = 0 is reserved
    x, used, got = run_case(m, "4K", P | W | U | XD, 0, kind, nxe=False)
    err = rsvd(64, kind) & ~EI
    assert got == ("pf", err, x)


def test_1g_pages_need_pdpe1gb(machines):
    m = machines(64, vtx.CpuModel("default", remove={"PDPE1GB"}))
    x, used, got = run_case(m, "1G", P | W | U, 0, "read")
    assert got == ("pf", EP | ER, x)
    m = machines(64)
    x, used, got = run_case(m, "1G", P | W | U, 0, "read")
    assert got == "ok"


@pytest.mark.parametrize("kind", ["read", "write", "fetch"])
def test_reserved_bits_pae(machines, kind):
    m = machines("pae")
    # bits 62:MAXPHYADDR of a PAE PTE (4-level paging ignores 62:52; PAE does not)
    for bit in (40, 55):
        x, used, got = run_case(m, "4K", P | W | U | (1 << bit), 0, kind)
        assert got == ("pf", rsvd("pae", kind), x), bit
    x, used, got = run_case(m, "2M", P | W | U | (1 << 14), 0, kind)
    assert got == ("pf", rsvd("pae", kind), x)
    x, used, got = run_case(m, "4K", P | W | U | XD, 0, kind, nxe=False)
    assert got == ("pf", rsvd("pae", kind) & ~EI, x)


@pytest.mark.parametrize("kind", ["read", "write"])
def test_pse_4m_reserved_bits_and_pse36(machines, kind):
    m = machines(32)
    # bit 21 is always reserved in a 4 MiB PDE
    x, used, got = run_case(m, "4M", P | W | U | (1 << 21), 0, kind)
    assert got == ("pf", rsvd(32, kind), x)
    # PSE-36: bits 20:13 are physical bits 39:32; bit 20 (PA bit 39) is beyond MAXPHYADDR
    x, used, got = run_case(m, "4M", P | W | U | (1 << 20), 0, kind)
    assert got == ("pf", rsvd(32, kind), x)
    # without PSE-36 in the CPU model all of bits 21:13 are reserved
    m2 = machines(32, vtx.CpuModel("default", remove={"PSE36"}))
    x, used, got = run_case(m2, "4M", P | W | U | (1 << 13), 0, kind)
    assert got == ("pf", rsvd(32, kind), x)


def test_pse36_reaches_above_4g():
    """A 4 MiB page with PDE bits 20:13 = 1 maps physical 1_0000_0000H + ...:
    beyond this VM's memory, which EPT does not map: an EPT violation whose
    guest-physical address shows the PSE-36 bits were used."""
    m = Machine(32)
    x, used, got = run_case(m, "4M", P | W | U | (1 << 13), 0, "read")
    assert got.reason == vtx.ExitReason.EPT_VIOLATION
    assert m.v.vmread(F.GUEST_PHYSICAL_ADDRESS) == (1 << 32) + TP


def test_ps_without_cr4_pse_is_ignored(machines):
    """32-bit paging with CR4.PSE = 0: PS in a PDE is ignored and the entry
    points to a page table (SDM Vol. 3A 4.3)."""
    m = machines(32)
    x, used = m.map_test("4K", P | W | U)
    t, idx = used[0]
    m.set_entry(t, idx, m.entry(t, idx) | PS)
    m.vm.write(TP, b"\x78\x56\x34\x12")
    m.vm.write(KCODE, access_code(32, "read"))
    m.enter(0, KCODE, rbx=x, pse=False)
    assert m.run() == "ok" and m.v.rax & 0xFFFFFFFF == 0x12345678


# --- accesses that cross a page --------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["read", "write"])
def test_fault_on_second_page_of_a_crossing_access(machines, mode, kind):
    """The first page is fine, the second is not present or read-only: #PF
    with CR2 = the first byte of the second page; a write changes neither
    page (core/mmu.pxi lin_write translates both first)."""
    m = machines(mode)
    x, used = m.map_test("4K", P | W | U)
    # the next linear page: same table, next entry, physical TP2
    t, idx = used[-1]
    for second, err in ((0, 0), (P | U, EP)):
        if kind == "read" and second:
            continue
        m.set_entry(t, idx + 1, TP2 | second)
        m.set_entry(t, idx, TP | P | W | U)
        m.vm.write(TP + 0xFFE, b"\x11\x22")
        m.vm.write(TP2, b"\x33\x44")
        m.vm.write(KCODE, access_code(m.bits, kind))
        m.enter(0, KCODE, rbx=x + 0xFFE, wp=True)
        got = m.run()
        assert got == ("pf", err | (EW if kind == "write" else 0), x + 0x1000), (second, got)
        assert m.vm.read(TP + 0xFFE, 2) == b"\x11\x22" and m.vm.read(TP2, 2) == b"\x33\x44"
        # the first page's translation completed before the second faulted:
        # its leaf is accessed, and dirty for a write (the model translates
        # both pages for writing before it writes either)
        assert m.entry(t, idx) & A
        assert bool(m.entry(t, idx) & D) == (kind == "write")
        assert not m.entry(t, idx + 1) & (A | D)


@pytest.mark.parametrize("mode", ["pae", 64])
def test_fetch_crossing_into_an_xd_page(machines, mode):
    """An instruction whose last bytes are on an XD page: #PF (I/D = 1) with
    CR2 = that page's first byte; the first page is executed from."""
    m = machines(mode)
    x, used = m.map_test("4K", P | W)
    t, idx = used[-1]
    m.set_entry(t, idx + 1, TP2 | P | W | XD)
    m.vm.write(TP + 0xFFF, b"\x0f")
    m.vm.write(TP2, b"\xa2")
    m.vm.write(KCODE, access_code(m.bits, "fetch"))
    m.enter(0, KCODE, rbx=x + 0xFFF)
    assert m.run() == ("pf", EP | EI, x + 0x1000)
    m.set_entry(t, idx + 1, TP2 | P | W)
    m.enter(0, KCODE, rbx=x + 0xFFF)
    assert m.run() == "ok"


# --- the TLB: global pages, PCIDs, INVLPG, INVPCID ---------------------------------

def tlb_program(body):
    """64-bit guest code around `body`: rbx = the test page, rsi = its PTE,
    r8 = the PTE's value mapping TP2 (TP's value is in r9), rdi a place for
    results; reads of [rbx] go to consecutive qwords at rdi."""
    return vtx.asm(body + "\ncpuid\n", bits=64)


def tlb_machine(machines, glob):
    m = Machine(64)
    x, used = m.map_test("4K", P | W | (G if glob else 0))
    t, idx = used[-1]
    m.vm.write(TP, (0xAAAA).to_bytes(8, "little"))
    m.vm.write(TP2, (0xBBBB).to_bytes(8, "little"))
    return m, x, t + 8 * idx


def run_tlb(m, x, pte, body, pge=True, pcide=False, cr3=None):
    m.vm.write(KCODE, tlb_program(body))
    m.enter(0, KCODE, rbx=x, pge=pge, pcide=pcide)
    if cr3 is not None:
        m.v.cr3 = cr3
    m.v.rsi = pte
    m.v.r8 = TP2 | P | W
    m.v.r9 = TP | P | W
    m.v.rdi = RESULT + 0x100
    assert m.run() == "ok"
    return [m.vm.read_u64(RESULT + 0x100 + 8 * i) for i in range(4)]


RETARGET = """
    mov rax, [rbx]          # fills the TLB entry
    mov [rdi], rax
    mov [rsi], r8           # the PTE now maps TP2, the TLB still holds TP
    {flush}
    mov rax, [rbx]
    mov [rdi + 8], rax
"""


@pytest.mark.parametrize("glob", [False, True])
def test_mov_cr3_keeps_global_pages(machines, glob):
    m, x, pte = tlb_machine(machines, glob)
    got = run_tlb(m, x, pte, RETARGET.format(flush="mov rax, cr3\nmov cr3, rax"))
    assert got[0] == 0xAAAA
    assert got[1] == (0xAAAA if glob else 0xBBBB)


def test_global_bit_needs_cr4_pge(machines):
    m, x, pte = tlb_machine(machines, True)
    got = run_tlb(m, x, pte, RETARGET.format(flush="mov rax, cr3\nmov cr3, rax"), pge=False)
    assert got[:2] == [0xAAAA, 0xBBBB]


def test_toggling_cr4_pge_drops_global_pages(machines):
    m, x, pte = tlb_machine(machines, True)
    flush = "mov rax, cr4\nxor rax, 0x80\nmov cr4, rax\nxor rax, 0x80\nmov cr4, rax"
    got = run_tlb(m, x, pte, RETARGET.format(flush=flush))
    assert got[:2] == [0xAAAA, 0xBBBB]


@pytest.mark.parametrize("glob", [False, True])
def test_invlpg_drops_global_and_non_global(machines, glob):
    m, x, pte = tlb_machine(machines, glob)
    got = run_tlb(m, x, pte, RETARGET.format(flush="invlpg [rbx]"))
    assert got[:2] == [0xAAAA, 0xBBBB]


def test_invlpg_of_another_page_keeps_this_one(machines):
    m, x, pte = tlb_machine(machines, False)
    got = run_tlb(m, x, pte, RETARGET.format(flush="invlpg [rbx + 0x1000]"))
    assert got[:2] == [0xAAAA, 0xAAAA]


def test_invlpg_drops_a_whole_large_page():
    """INVLPG of any address in a 2 MiB page drops the translation of all
    of it: the model splits it into 4 KiB entries, all of which go."""
    m = Machine(64)
    x, used = m.map_test("2M", P | W)
    t, idx = used[-1]
    pte = t + 8 * idx
    m.vm.write(TP, (0xAAAA).to_bytes(8, "little"))
    m.vm.write(TP - 0x200000, (0xBBBB).to_bytes(8, "little"))
    m.vm.write(KCODE, tlb_program("""
        mov rax, [rbx]
        mov [rdi], rax
        mov rax, [rsi]
        sub rax, 0x200000       # the PDE now maps the 2 MiB below
        mov [rsi], rax
        invlpg [rbx + 0x10000]  # another 4 KiB part of the same page
        mov rax, [rbx]
        mov [rdi + 8], rax
    """))
    m.enter(0, KCODE, rbx=x)
    m.v.rsi = pte
    m.v.rdi = RESULT + 0x100
    assert m.run() == "ok"
    assert [m.vm.read_u64(RESULT + 0x100), m.vm.read_u64(RESULT + 0x108)] == [0xAAAA, 0xBBBB]


PCID_PROGRAM = """
    mov rax, [rbx]          # PCID 1 caches TP
    mov [rdi], rax
    mov rax, cr3
    mov rcx, rax
    and rcx, ~0xfff
    or rcx, 2
    mov cr3, rcx            # PCID 2, flushing PCID 2
    mov [rsi], r8           # the PTE now maps TP2
    mov rax, [rbx]          # PCID 2 sees TP2
    mov [rdi + 8], rax
    and rcx, ~0xfff
    or rcx, 1
    bts rcx, 63
    mov cr3, rcx            # back to PCID 1 without flushing it
    mov rax, [rbx]          # PCID 1 still has TP
    mov [rdi + 16], rax
    {after}
    mov rax, [rbx]
    mov [rdi + 24], rax
"""


def pcid_run(machines, after, glob=False):
    m, x, pte = tlb_machine(machines, glob)
    v = m.v
    v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS,
              v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) | vtx.ProcBased2.ENABLE_INVPCID)
    return run_tlb(m, x, pte, PCID_PROGRAM.format(after=after), pcide=True, cr3=m.cr3 | 1)


def test_pcid_retention_and_cr3_bit_63(machines):
    got = pcid_run(machines, "")
    assert got == [0xAAAA, 0xBBBB, 0xAAAA, 0xAAAA]


def test_mov_cr3_without_bit_63_flushes_the_pcid(machines):
    got = pcid_run(machines, "btr rcx, 63\nmov cr3, rcx")
    assert got == [0xAAAA, 0xBBBB, 0xAAAA, 0xBBBB]


INVPCID = """
    sub rsp, 16
    mov qword ptr [rsp], {pcid}
    mov [rsp + 8], rbx
    mov rax, {typ}
    invpcid rax, [rsp]
    add rsp, 16
"""


@pytest.mark.parametrize("typ,pcid,glob,dropped", [
    (0, 1, False, True),        # individual address, this PCID
    (0, 2, False, False),       # individual address, another PCID
    (0, 1, True, False),        # individual address: not global entries
    (1, 1, False, True),        # single context
    (1, 3, False, False),       # another context
    (1, 1, True, False),        # single context: not global entries
    (2, 0, True, True),         # all contexts, globals too
    (3, 0, False, True),        # all contexts except globals
    (3, 0, True, False),
])
def test_invpcid_types(machines, typ, pcid, glob, dropped):
    got = pcid_run(machines, INVPCID.format(pcid=pcid, typ=typ), glob=glob)
    # PCID 2 walks and sees TP2: the model looks a page up in a slot of its
    # own PCID, so a global entry PCID 1 filled does not serve PCID 2 (the
    # SDM lets a processor use it or not)
    assert got[:3] == [0xAAAA, 0xBBBB, 0xAAAA]
    assert got[3] == (0xBBBB if dropped else 0xAAAA)


def test_remapped_code_page_runs_the_new_code(machines):
    """A code page remapped by its PTE and INVLPG: the next fetch runs the
    new page's code, not translated blocks of the old one (core/run.pxi)."""
    m = Machine(64)
    x, used = m.map_test("4K", P)
    t, idx = used[-1]
    m.vm.write(TP, vtx.asm("mov eax, 1\ncpuid\n", bits=64))
    m.vm.write(TP2, vtx.asm("mov eax, 2\ncpuid\n", bits=64))
    m.vm.write(KCODE, access_code(64, "fetch"))
    m.enter(0, KCODE, rbx=x)
    assert m.run() == "ok" and m.v.rax == 1
    m.vm.write(KCODE, vtx.asm(f"""
        mov qword ptr [{t + 8 * idx}], {TP2 | P}
        invlpg [rbx]
        jmp rbx
    """, bits=64))
    m.enter(0, KCODE, rbx=x)
    assert m.run() == "ok" and m.v.rax == 2


# --- loading CR3 -------------------------------------------------------------------

def test_pae_mov_cr3_checks_the_pdptes(machines):
    """PAE paging loads the four PDPTEs with CR3; a present one with a
    reserved bit (here R/W, bit 1) is #GP(0) and CR3 keeps its value (SDM
    Vol. 3A 4.4.1)."""
    m = machines("pae")
    bad = TEST_TABLES + 0x3000
    m.vm.write(bad, ((m.pdpt[0] | 2)).to_bytes(8, "little") + bytes(24))
    m.vm.write(KCODE, vtx.asm(f"mov eax, {bad}\nmov cr3, eax\ncpuid\n", bits=32))
    m.enter(0, KCODE)
    got = m.run()
    assert got.reason == vtx.ExitReason.EXCEPTION_OR_NMI and (got.vector, got.error_code) == (13, 0)
    assert m.v.cr3 == m.cr3
    m.vm.write(bad, m.pdpt[0].to_bytes(8, "little"))
    m.enter(0, KCODE)
    assert m.run() == "ok" and m.v.cr3 == bad


def test_cr3_bit_63_needs_pcide(machines):
    m = machines(64)
    m.vm.write(KCODE, vtx.asm("mov rax, cr3\nbts rax, 63\nmov cr3, rax\ncpuid\n", bits=64))
    m.enter(0, KCODE)
    got = m.run()
    assert got.reason == vtx.ExitReason.EXCEPTION_OR_NMI and got.vector == 13
    m.enter(0, KCODE, pcide=True)
    assert m.run() == "ok" and m.v.cr3 == m.cr3          # bit 63 is not stored


def test_cr4_pcide_needs_cr3_pcid_zero(machines):
    """MOV to CR4 setting PCIDE with CR3[11:0] != 0 is #GP(0) (SDM Vol. 2 MOV CR)."""
    m = machines(64)
    m.vm.write(KCODE, vtx.asm("mov rax, cr4\nbts rax, 17\nmov cr4, rax\ncpuid\n", bits=64))
    m.enter(0, KCODE)
    m.v.cr3 = m.cr3 | 0x5
    got = m.run()
    assert got.reason == vtx.ExitReason.EXCEPTION_OR_NMI and got.vector == 13
    m.enter(0, KCODE)
    assert m.run() == "ok"
