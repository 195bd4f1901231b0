"""A bare machine with the system tables protection tests need: a GDT with
ring-0, ring-1 and ring-3 segments and room for gates and TSSs, a TSS, an
IDT whose every vector (0-63) has a stub that records the vector in ESI
and the error code (for the vectors that have one) in EDI, then halts.
Built from Python with the descriptor formats of SDM Vol. 3A 3.4.5, 3.5,
5.8.3 (call gates), 6.11/6.14.1 (IDT gates), 8.2 (TSS).

A guest ends normally with ``hlt`` at CPL 0 (ESI keeps NO_FAULT) or with
``int 0x40`` from any CPL (vector 0x40: reported as a normal end, "done").
"""

import vtx
from vtx.vm import long_mode_tables

CODE = 0x1000
GDT = 0x10000
IDT = 0x11000
STUBS = 0x12000
TSS = 0x13000              # the initial task's TSS (32-bit or 64-bit)
TSS2 = 0x14000             # room for other tasks' TSSs
TSS3 = 0x15000
IOMAP = 0x68               # I/O permission bitmap offset in TSS
DATA = 0x20000
STACK0 = 0x9000            # ring 0 stack (TSS SS0:ESP0 / RSP0)
STACK1 = 0x8800            # ring 1
STACK3 = 0x7000            # ring 3 (set up by the test code)
IST1 = 0xA000
NO_FAULT = 0xFFFF
DONE = 0x40
NVEC = 0x48

# Selectors of the standard GDT.
CODE0, DATA0, CODE64, TSS_SEL = 0x08, 0x10, 0x18, 0x20
CODE3, DATA3, CODE64_3 = 0x30 | 3, 0x38 | 3, 0x40 | 3
CONF0 = 0x48               # conforming code, DPL 0
CODE16 = 0x50              # 16-bit code, DPL 0
DATA1, CODE1 = 0x58 | 1, 0x60 | 1
DATA16 = 0x68              # 16-bit (B = 0) data, DPL 0
FREE = 0x70                # first free entry: tests put gates and TSSs from here

ERR_VECTORS = {8, 10, 11, 12, 13, 14, 17}


def seg(base=0, limit=0xFFFFF, typ=0xB, dpl=0, s=1, p=1, db=1, g=1, l=0):
    """A segment descriptor (SDM Vol. 3A Figure 3-8)."""
    return ((limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (typ << 40) | (s << 44) | (dpl << 45) |
            (p << 47) | (((limit >> 16) & 0xF) << 48) | (l << 53) | (db << 54) | (g << 55) |
            (((base >> 24) & 0xFF) << 56))


def tss_desc(base, limit=0x67, typ=0x9, dpl=0, p=1):
    return seg(base, limit, typ, dpl, s=0, p=p, db=0, g=0)


def gate(sel, off=0, typ=0xC, dpl=0, count=0, p=1):
    """A call gate (types 4, C), task gate (5), or interrupt/trap gate (6, 7,
    E, F) descriptor's low 8 bytes (SDM Vol. 3A Figures 5-8, 6-2, 7-8)."""
    return ((off & 0xFFFF) | (sel << 16) | (count << 32) | (typ << 40) | (dpl << 45) | (p << 47) |
            (((off >> 16) & 0xFFFF) << 48))


def base_gdt():
    return {
        CODE0: seg(typ=0xB), DATA0: seg(typ=0x3), CODE64: seg(typ=0xB, l=1, db=0),
        CODE3 & ~3: seg(typ=0xB, dpl=3), DATA3 & ~3: seg(typ=0x3, dpl=3),
        CODE64_3 & ~3: seg(typ=0xB, dpl=3, l=1, db=0), CONF0: seg(typ=0xF),
        CODE16: seg(limit=0xFFFF, typ=0xB, db=0, g=0), DATA1 & ~3: seg(typ=0x3, dpl=1),
        CODE1 & ~3: seg(typ=0xB, dpl=1), DATA16: seg(limit=0xFFFF, typ=0x3, db=0, g=0),
    }


class Prot:
    """One bare machine in 32-bit protected mode (bits=32) or 64-bit mode
    (bits=64) with the tables above."""

    def __init__(self, bits=32, memory=2 << 20, iomap_bytes=0):
        self.bits = bits
        self.hw = vtx.BareMetal(memory=memory)
        self.gdt = base_gdt()
        self.long = bits == 64
        # With an I/O bitmap: IOMAP + its bytes + the final FFH byte (SDM Vol. 1 19.5.2).
        self.tss_limit = IOMAP + iomap_bytes if iomap_bytes else 0x67
        if self.long:
            self.gdt[TSS_SEL] = tss_desc(TSS, self.tss_limit)
            self.gdt[TSS_SEL + 8] = 0
        else:
            self.gdt[TSS_SEL] = tss_desc(TSS, self.tss_limit)
        self.idt = {}
        gsize = 16 if self.long else 8
        stubs = bytearray()
        for v in range(NVEC):
            stub = b"\xbe" + v.to_bytes(4, "little") + (b"\x5f" if v in ERR_VECTORS else b"") + b"\xf4"
            stubs += stub.ljust(16, b"\x90")
            self.idt[v] = (gate(CODE64 if self.long else CODE0, STUBS + 16 * v, typ=0xE,
                                dpl=3 if v == DONE else 0), 0)
        self.hw.write(STUBS, bytes(stubs))
        self.gsize = gsize
        tss = bytearray(0x68)
        if self.long:
            tss[4:12] = STACK0.to_bytes(8, "little")       # RSP0
            tss[12:20] = STACK1.to_bytes(8, "little")      # RSP1
            tss[0x24:0x2C] = IST1.to_bytes(8, "little")    # IST1
        else:
            tss[4:8] = STACK0.to_bytes(4, "little")
            tss[8:10] = DATA0.to_bytes(2, "little")
            tss[0x0C:0x10] = STACK1.to_bytes(4, "little")
            tss[0x10:0x12] = DATA1.to_bytes(2, "little")
        tss[0x66:0x68] = IOMAP.to_bytes(2, "little")
        self.hw.write(TSS, bytes(tss))
        if iomap_bytes:
            self.hw.write(TSS + IOMAP, b"\xff" * iomap_bytes + b"\xff")

    def write_tables(self):
        n = max(self.gdt) + 8
        gdt = bytearray(n)
        for sel, d in self.gdt.items():
            gdt[sel:sel + 8] = d.to_bytes(8, "little")
        self.hw.write(GDT, bytes(gdt))
        self.gdt_limit = n - 1
        idt = bytearray(self.gsize * NVEC)
        for v, (lo, hi) in self.idt.items():
            idt[self.gsize * v:self.gsize * v + 8] = lo.to_bytes(8, "little")
            if self.gsize == 16:
                idt[16 * v + 8:16 * v + 16] = hi.to_bytes(8, "little")
        self.hw.write(IDT, bytes(idt))

    def preamble(self):
        """Load GDTR, IDTR, TR and the data segments (CPL 0)."""
        ptr = "q" if self.long else "d"
        return f"""
            lgdt [gdtr_{id(self)}]
            lidt [idtr_{id(self)}]
            mov ax, {TSS_SEL}
            ltr ax
            mov ax, {DATA0}
            mov ds, ax
            mov es, ax
            mov ss, ax
            mov fs, ax
            mov gs, ax
            jmp start_{id(self)}
        gdtr_{id(self)}: .word {self.gdt_limit}
            .{'quad' if self.long else 'long'} {GDT}
        idtr_{id(self)}: .word {self.gsize * NVEC - 1}
            .{'quad' if self.long else 'long'} {IDT}
        start_{id(self)}:
        """

    def run(self, src, budget=10_000, regs=None):
        """Run preamble + src + hlt; returns (cpu, vector or None, error code
        or None).  A DONE vector counts as a normal end."""
        self.write_tables()
        code = vtx.asm(self.preamble() + src + "\nhlt\n", bits=self.bits, org=CODE)
        self.hw.load(CODE, code)
        if self.long:
            cpu = self.hw.setup_long_mode(entry=CODE, stack=STACK0)
            # The same identity map with U/S = 1 everywhere, so CPL 3 runs too.
            t = bytearray(long_mode_tables(cpu.cr3))
            for i in range(0, len(t), 8):
                if t[i] & 1:
                    t[i] |= 4
            self.hw.write(cpu.cr3, bytes(t))
        else:
            cpu = self.hw.setup_protected_mode(entry=CODE, stack=STACK0)
        cpu.rsi = NO_FAULT
        cpu.rdi = NO_FAULT
        for k, v in (regs or {}).items():
            setattr(cpu, k, v)
        r = self.hw.run(max_instructions=budget)
        self.result = r
        assert r.stop in ("halted", "shutdown"), r
        self.cpu = cpu
        vec = cpu.rsi & 0xFFFFFFFF
        if vec == NO_FAULT or vec == DONE:
            return cpu, None, None
        err = cpu.rdi & 0xFFFFFFFF if vec in ERR_VECTORS else None
        return cpu, vec, err

    def u32(self, addr):
        return int.from_bytes(bytes(self.hw.memory[addr:addr + 4]), "little")

    def u16(self, addr):
        return int.from_bytes(bytes(self.hw.memory[addr:addr + 2]), "little")

    def u64(self, addr):
        return int.from_bytes(bytes(self.hw.memory[addr:addr + 8]), "little")

    def desc(self, sel):
        return self.u64(GDT + (sel & ~7))


def to_ring3(bits=32, label="user"):
    """Code that enters CPL 3 at `label` with IRET (SS 0x3B, ESP STACK3)."""
    if bits == 64:
        return f"""
            push {DATA3}
            push {STACK3}
            pushfq
            push {CODE64_3}
            lea rax, [rip + {label}]
            push rax
            iretq
        """
    return f"""
        push {DATA3}
        push {STACK3}
        pushfd
        push {CODE3}
        push offset {label}
        iretd
    """
