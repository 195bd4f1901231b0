"""The root campaign: adversarial VMX root operation on a bare machine.

A case is a vtx.BareMetal machine in one of the three modes whose x86 code
plays a careless type-1 hypervisor: a prologue that usually (not always)
sets CR4.VMXE, turns on paging where VMXON needs it (CR0.PG is a fixed-1
bit), writes revision identifiers into a VMXON region and a few VMCS
regions (whose other bytes are random) and does VMXON, VMCLEAR, VMPTRLD;
then a body that mixes the VMX instructions in their operand forms with
random operands (field encodings from vtx.spec, pointers aligned,
misaligned, beyond RAM, at MAXPHYADDR, at the VMXON region, in the private
slot), VMWRITEs of a mostly-valid VMCS (the table of
examples/type1/hypervisor.s and the control registers read with MOV from
CR, some values mutated), raw stores into the VMCS regions, VMLAUNCH and
VMRESUME, and random instructions from streams.py.  HOST_RIP leads to a
small exit handler that resumes, steps over the exiting instruction,
leaves VMX operation, halts or loops; the guest's code is a random stream.
In real mode every VMX instruction is #UD, which is a fine outcome.

A quarter of the cases drive the processor from Python instead: after a
prologue that only sets CR4.VMXE, the Processor's methods (vmxon,
vmptrld, vmwrite, vmlaunch, ...) are called in random order with random
arguments, with runs of the machine in between.

The spec's "calls" list is what the harness does after building the
machine: ["run", budget] runs it, ["write", addr, hex] stores bytes,
[method, args...] calls hw.cpu.method(*args).  An x86 case is just runs.
"""

import struct

from vtx._core import PRIV_BASE
from vtx.spec import FIELDS, MODEL_FIELDS, FieldWidth, capabilities, field_info
from vtx.spec import VmcsField as F

from vtx.vm import GDT_LIMIT

from .streams import biased_instruction, make_code

REV = capabilities.VMCS_REVISION_ID
MAXPHYADDR = capabilities.MAXPHYADDR

# The layout of a case's memory.  Everything the root code addresses sits
# below 64 KiB, so real mode (DS base 0, 16-bit offsets) reaches it too.
CODE = 0x1000             # the root program (up to 32 KiB)
PTRS = 0x9000             # 8-byte operand slots (pointers, descriptors, values)
STACK = 0xA000            # the root stack, and HOST_RSP
REGIONS = (0xB000, 0xC000, 0xD000, 0xE000)   # the VMXON region, then VMCS regions
HANDLER = 0xF000          # HOST_RIP
COUNTER = 0x9F00          # the exit handler's exit count
ROOT_IDT = 0x18000        # the root's IDT, and its stub at ROOT_IDT + 0x1000
PAGE_DIR = 0x1A000        # a 32-bit page directory of 4 MiB pages (protected mode)
GUEST = 0x20000           # GUEST_RIP
GUEST_STACK = 0x30000

#: VMCS encodings VMWRITE and VMREAD take, with the field's width in bits;
#: the high halves of 64-bit fields alias the field.
WIDTHS = {FieldWidth.BITS16: 16, FieldWidth.BITS32: 32}
FULL = [(enc, WIDTHS.get(field_info(enc).width, 64)) for n, enc, _d in FIELDS if n in MODEL_FIELDS]
HIGH = [(enc | 1, 32) for n, enc, _d in FIELDS if n in MODEL_FIELDS and field_info(enc).width == FieldWidth.BITS64]
#: Encodings no VMCS field has: bits 63:32 set, reserved bits, fields the
#: model does not offer (error 12 either way).
BAD_ENCODINGS = (0x1234, 0x100004402, 0xFFFFFFFF, 1 << 63, 0x401C, 0x200E, 0x8000, 0x4401 | 0x1000)

CR4_VMXE, CR4_PSE = 0x2000, 0x10


def lo(msr):
    return msr & 0xFFFFFFFF


def control(true_msr, wanted):
    """A control adjusted to what the capability MSR allows, as set_control
    in examples/type1/hypervisor.s: the must-be-1 bits on, the may-not-be-1
    bits off."""
    return (wanted | lo(true_msr)) & (true_msr >> 32)


# --- a tiny encoder for the forms the campaign emits -------------------------------

class Code:
    """x86 bytes for one mode (bits 16, 32 or 64).  Memory operands are
    absolute addresses below 64 KiB (or built in a base register); the
    VMX instructions take their register operands in 32 bits outside
    64-bit mode, 64 in it, with no REX.W (SDM 31.3)."""

    def __init__(self, bits):
        self.bits = bits
        self.out = bytearray()

    def raw(self, data):
        self.out += data

    def rex(self, w=0, r=0, b=0, x=0):
        if self.bits == 64 and (w or r > 7 or b > 7 or x > 7):
            self.out.append(0x40 | (w << 3) | ((r > 7) << 2) | ((x > 7) << 1) | (b > 7))

    def modrm_abs(self, reg, addr):
        """ModRM (and SIB) for [addr]: disp16 in 16-bit code, disp32 in
        32-bit code, SIB with no base and no index in 64-bit code (mod 00
        rm 101 is RIP-relative there)."""
        reg &= 7
        if self.bits == 16:
            return bytes((reg << 3 | 6,)) + struct.pack("<H", addr & 0xFFFF)
        if self.bits == 32:
            return bytes((reg << 3 | 5,)) + struct.pack("<I", addr & 0xFFFFFFFF)
        return bytes((reg << 3 | 4, 0x25)) + struct.pack("<I", addr & 0x7FFFFFFF)

    def op32(self):
        """The operand-size prefix that makes a 16-bit mode operand 32 bits."""
        if self.bits == 16:
            self.out.append(0x66)

    def mov_imm(self, reg, value):
        """mov r32, imm32 (zero-extending in 64-bit mode) or mov r64, imm64."""
        if self.bits == 64 and value >> 32:
            self.rex(w=1, b=reg)
            self.out += bytes((0xB8 | (reg & 7),)) + struct.pack("<Q", value & ((1 << 64) - 1))
        else:
            self.op32()
            self.rex(b=reg)
            self.out += bytes((0xB8 | (reg & 7),)) + struct.pack("<I", value & 0xFFFFFFFF)

    def store32(self, addr, value):
        """mov dword ptr [addr], imm32."""
        self.op32()
        self.out += b"\xC7" + self.modrm_abs(0, addr) + struct.pack("<I", value & 0xFFFFFFFF)

    def store64(self, addr, value):
        self.store32(addr, value)
        self.store32(addr + 4, value >> 32)

    def mov_from_cr(self, cr, reg):
        self.rex(b=reg)
        self.out += bytes((0x0F, 0x20, 0xC0 | cr << 3 | (reg & 7)))

    def mov_to_cr(self, cr, reg):
        self.rex(b=reg)
        self.out += bytes((0x0F, 0x22, 0xC0 | cr << 3 | (reg & 7)))

    def or_eax(self, imm):
        self.op32()
        self.out += b"\x0D" + struct.pack("<I", imm)

    def set_cr_bits(self, cr, bits):
        self.mov_from_cr(cr, 0)
        self.or_eax(bits)
        self.mov_to_cr(cr, 0)

    def vmx_mem(self, which, addr, prefix=b""):
        """vmxon/vmclear/vmptrld/vmptrst [addr] (0F C7 /6 or /7)."""
        pre, digit = {"vmxon": (b"\xF3", 6), "vmclear": (b"\x66", 6), "vmptrld": (b"", 6),
                      "vmptrst": (b"", 7)}[which]
        self.out += prefix + pre + b"\x0F\xC7" + self.modrm_abs(digit, addr)

    def vmwrite_reg(self, enc_reg, src_reg):
        self.rex(r=enc_reg, b=src_reg)
        self.out += bytes((0x0F, 0x79, 0xC0 | (enc_reg & 7) << 3 | (src_reg & 7)))

    def vmwrite_mem(self, enc_reg, addr):
        self.rex(r=enc_reg)
        self.out += b"\x0F\x79" + self.modrm_abs(enc_reg, addr)

    def vmread_reg(self, dst_reg, enc_reg):
        self.rex(r=enc_reg, b=dst_reg)
        self.out += bytes((0x0F, 0x78, 0xC0 | (enc_reg & 7) << 3 | (dst_reg & 7)))

    def vmread_mem(self, addr, enc_reg):
        self.rex(r=enc_reg)
        self.out += b"\x0F\x78" + self.modrm_abs(enc_reg, addr)

    def vmwrite_imm(self, enc, value):
        """VMWRITE of a constant: the encoding in RDX, the value in RAX."""
        self.mov_imm(2, enc)
        self.mov_imm(0, value)
        self.vmwrite_reg(2, 0)

    def inv(self, vpid, type_reg, addr):
        """INVEPT (66 0F 38 80) or INVVPID (66 0F 38 81) reg, [addr]."""
        self.out.append(0x66)
        self.rex(r=type_reg)
        self.out += bytes((0x0F, 0x38, 0x81 if vpid else 0x80)) + self.modrm_abs(type_reg, addr)

    def simple(self, name):
        self.out += {"vmcall": b"\x0F\x01\xC1", "vmlaunch": b"\x0F\x01\xC2", "vmresume": b"\x0F\x01\xC3",
                     "vmxoff": b"\x0F\x01\xC4", "hlt": b"\xF4", "loop": b"\xEB\xFE"}[name]

    def lidt(self, addr):
        self.out += b"\x0F\x01" + self.modrm_abs(3, addr)


# --- operands ---------------------------------------------------------------------

def pointer(rng, memory):
    """A VMXON/VMCS pointer: a region, the VMXON region, misaligned,
    beyond RAM, at and beyond MAXPHYADDR, in the private slot (which the
    root's code must not reach), all ones (VMPTRST's "none")."""
    return rng.choice((
        REGIONS[1], REGIONS[2], REGIONS[3], REGIONS[1], REGIONS[0], REGIONS[1] + rng.choice((8, 0x800, 1)),
        rng.randrange(memory // 0x1000) * 0x1000, memory, memory - 0x1000, memory + 0x1000 * rng.randint(0, 16),
        1 << 32, (1 << MAXPHYADDR) - 0x1000, 1 << MAXPHYADDR, PRIV_BASE, PRIV_BASE + 0x1000, (1 << 64) - 1,
        0, rng.getrandbits(64), CODE, HANDLER & ~0xFFF))


def field(rng):
    x = rng.random()
    if x < 0.85:
        return rng.choice(FULL)
    if x < 0.95:
        return rng.choice(HIGH)
    return rng.choice(BAD_ENCODINGS), 64


def value(rng, width, memory):
    ones = (1 << width) - 1
    return rng.choice((rng.getrandbits(width), 0, ones, 1 << (width - 1), rng.randint(1, 16),
                       pointer(rng, memory), rng.randrange(memory), GUEST, HANDLER)) & ones


# --- the mostly-valid VMCS ------------------------------------------------------------

def good_fields(mode, tables):
    """(encoding, value) of a VMCS that enters a guest at GUEST in the
    host's own mode, sharing its page tables and GDT: the table of
    examples/type1/hypervisor.s.  The control registers are not here: the
    program reads them with MOV from CR (host_crs)."""
    long = mode == "long"
    proc = control(capabilities.TRUE_PROCBASED_CTLS, (1 << 7) | (1 << 24))   # HLT, unconditional I/O exiting
    cs = 0x18 if long else 0x08
    tss = tables + 0x7000
    rows = [
        (F.PIN_BASED_CONTROLS, control(capabilities.TRUE_PINBASED_CTLS, 0)),
        (F.PRIMARY_PROC_BASED_CONTROLS, proc),
        (F.VM_EXIT_CONTROLS, control(capabilities.TRUE_EXIT_CTLS, (1 << 9) if long else 0)),
        (F.VM_ENTRY_CONTROLS, control(capabilities.TRUE_ENTRY_CTLS, (1 << 9) if long else 0)),
        (F.EXCEPTION_BITMAP, 0xFFFFFFFF),
        # What VMCLEAR leaves is the model's choice (a region may hold any
        # bytes): a careful hypervisor writes the controls it does not use.
        (F.SECONDARY_PROC_BASED_CONTROLS, 0), (F.CR3_TARGET_COUNT, 0), (F.VM_EXIT_MSR_STORE_COUNT, 0),
        (F.VM_EXIT_MSR_LOAD_COUNT, 0), (F.VM_ENTRY_MSR_LOAD_COUNT, 0), (F.VM_ENTRY_INTERRUPTION_INFO, 0),
        (F.GUEST_INTERRUPTIBILITY_STATE, 0), (F.GUEST_ACTIVITY_STATE, 0), (F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0),
        (F.GUEST_DR7, 0x400), (F.GUEST_IA32_DEBUGCTL, 0),
        (F.VMCS_LINK_POINTER, (1 << 64) - 1),
        (F.HOST_CS_SELECTOR, cs), (F.HOST_TR_SELECTOR, 0x20), (F.HOST_RSP, STACK), (F.HOST_RIP, HANDLER),
        (F.HOST_GDTR_BASE, tables), (F.HOST_TR_BASE, tss),
        (F.GUEST_CS_SELECTOR, cs), (F.GUEST_CS_LIMIT, 0xFFFFFFFF),
        (F.GUEST_CS_ACCESS_RIGHTS, 0xA09B if long else 0xC09B),
        (F.GUEST_LDTR_ACCESS_RIGHTS, 0x10000),
        (F.GUEST_TR_SELECTOR, 0x20), (F.GUEST_TR_BASE, tss), (F.GUEST_TR_LIMIT, 0x67),
        (F.GUEST_TR_ACCESS_RIGHTS, 0x8B),
        (F.GUEST_GDTR_BASE, tables), (F.GUEST_GDTR_LIMIT, GDT_LIMIT),
        (F.GUEST_RFLAGS, 2), (F.GUEST_RSP, GUEST_STACK), (F.GUEST_RIP, GUEST),
    ]
    for s in ("ES", "SS", "DS", "FS", "GS"):
        rows += [(F["HOST_" + s + "_SELECTOR"], 0x10), (F["GUEST_" + s + "_SELECTOR"], 0x10),
                 (F["GUEST_" + s + "_BASE"], 0),
                 (F["GUEST_" + s + "_LIMIT"], 0xFFFFFFFF), (F["GUEST_" + s + "_ACCESS_RIGHTS"], 0xC093)]
    rows += [(F.GUEST_CS_BASE, 0), (F.GUEST_LDTR_SELECTOR, 0), (F.GUEST_IDTR_BASE, 0), (F.GUEST_IDTR_LIMIT, 0),
             (F.HOST_FS_BASE, 0), (F.HOST_GS_BASE, 0), (F.HOST_IDTR_BASE, 0)]
    return [(int(e), v) for e, v in rows]


def host_crs(mode, tables):
    """The control registers after the prologue (for Python-driven cases,
    which cannot read them from x86 code)."""
    if mode == "long":
        return {0: 0x80010031, 3: tables + 0x1000, 4: 0x20 | CR4_VMXE}
    return {0: 0x80000031, 3: PAGE_DIR, 4: CR4_PSE | CR4_VMXE}


def mutate_fields(rng, rows, memory):
    """A few of the good values changed: a bit flipped, a random value,
    off by one (most cases stay enterable)."""
    rows = list(rows)
    for _ in range(rng.choice((0, 0, 0, 0, 0, 1, 1, 2, 3))):
        i = rng.randrange(len(rows))
        enc, v = rows[i]
        width = WIDTHS.get(field_info(enc).width, 64)
        x = rng.random()
        if x < 0.5:
            v ^= 1 << rng.randrange(width)
        elif x < 0.7:
            v += rng.choice((1, -1))
        else:
            v = value(rng, width, memory)
        rows[i] = (enc, v & ((1 << width) - 1))
    if rng.random() < 0.2:
        rng.shuffle(rows)
    return rows


# --- the x86 program ------------------------------------------------------------------

def prologue(rng, c, mode, memory, tables, spec):
    """Into VMX root operation, most of the time."""
    if mode == "protected" and rng.random() < 0.9:
        # CR0.PG is fixed to 1 in VMX operation: identity-map 4 GiB with
        # 4 MiB pages (CR4.PSE) so VMXON can happen at all.
        pd = b"".join(struct.pack("<I", (i << 22) | 0x83) for i in range(1024))
        spec["fill"].append([PAGE_DIR, pd.hex()])
        c.set_cr_bits(4, CR4_PSE)
        c.mov_imm(0, PAGE_DIR)
        c.mov_to_cr(3, 0)
        c.set_cr_bits(0, 0x80000000)
    if rng.random() < 0.95:
        c.set_cr_bits(4, CR4_VMXE)
    for r in REGIONS:
        if rng.random() < 0.97:
            c.store32(r, REV if rng.random() < 0.97 else rng.choice((0, REV | 0x80000000, REV + 1)))
    c.store64(PTRS, REGIONS[0] if rng.random() < 0.95 else pointer(rng, memory))
    c.store64(PTRS + 8, REGIONS[1] if rng.random() < 0.95 else pointer(rng, memory))
    c.store64(PTRS + 16, REGIONS[2])
    if rng.random() < 0.98:
        c.vmx_mem("vmxon", PTRS)
    if rng.random() < 0.9:
        c.vmx_mem("vmclear", PTRS + 8)
    if rng.random() < 0.95:
        c.vmx_mem("vmptrld", PTRS + 8)


def build_vmcs(rng, c, mode, memory, tables):
    """VMWRITEs of the mostly-valid VMCS, the control registers read with
    MOV from CR."""
    for enc, v in mutate_fields(rng, good_fields(mode, tables), memory):
        if rng.random() < 0.995:
            c.vmwrite_imm(enc, v)
            if c.bits != 64 and field_info(enc).width == FieldWidth.BITS64:
                # Outside 64-bit mode VMWRITE takes 32 bits: a 64-bit field's
                # high half is a field of its own (encoding + 1).
                c.vmwrite_imm(enc | 1, v >> 32)
    for cr in (0, 3, 4):
        for base in (int(F.HOST_CR0), int(F.GUEST_CR0)):
            if rng.random() < 0.995:
                c.mov_from_cr(cr, 0)
                c.mov_imm(2, base + 2 * (cr and cr - 2))   # CR0, CR3, CR4 are consecutive fields
                c.vmwrite_reg(2, 0)


def regs(bits):
    return range(16) if bits == 64 else range(8)


def body_op(rng, c, mode, memory, gentle=False):
    """One random step of the body; a gentle one (before VMLAUNCH, so that
    most cases get as far as a guest) only writes and reads fields,
    invalidates, or stores into a region's data."""
    bits = c.bits
    x = rng.uniform(0.2, 0.88) if gentle else rng.random()
    if gentle and 0.6 <= x < 0.7:
        x = rng.uniform(0.2, 0.45)
    slot = PTRS + 8 * rng.randrange(3, 12)
    if x < 0.2:
        which = rng.choice(("vmxon", "vmclear", "vmptrld", "vmptrst", "vmclear", "vmptrld"))
        c.store64(slot, REGIONS[0] if which == "vmxon" and rng.random() < 0.5 else pointer(rng, memory))
        addr = slot if rng.random() < 0.85 else rng.choice((slot + rng.randint(1, 7), 0xFFF8, 0))
        prefix = b"" if rng.random() < 0.9 else bytes((rng.choice((0x66, 0xF2, 0xF3, 0xF0, 0x2E, 0x67)),))
        c.vmx_mem(which, addr, prefix)
    elif x < 0.45:
        enc, width = field(rng)
        if rng.random() < 0.5:
            c.vmwrite_imm(enc, value(rng, width, memory))
        else:
            c.store64(slot, value(rng, width, memory))
            r = rng.choice([r for r in regs(bits) if r != 4])
            c.mov_imm(r, enc)
            c.vmwrite_mem(r, slot)
    elif x < 0.6:
        enc, _width = field(rng)
        r = rng.choice([r for r in regs(bits) if r != 4])
        c.mov_imm(r, enc)
        if rng.random() < 0.5:
            c.vmread_reg(rng.choice([d for d in regs(bits) if d != 4]), r)
        else:
            c.vmread_mem(slot, r)
    elif x < 0.7:
        c.simple(rng.choice(("vmlaunch", "vmresume", "vmlaunch", "vmresume", "vmcall", "vmxoff")))
    elif x < 0.78:
        vpid = rng.random() < 0.5
        c.store64(slot, rng.choice((0, 1, 5, 0x5000 | 6 | (3 << 3), rng.getrandbits(64), 1 << 16)))
        c.store64(slot + 8, rng.choice((0, 0x1000, 1 << 63, rng.getrandbits(64))))
        c.mov_imm(1, rng.choice((0, 1, 2, 3, 4, 7, (1 << 32) + 1, rng.getrandbits(32))))
        c.inv(vpid, 1, slot)
    elif x < 0.88:
        # Raw stores into a VMCS region: the model must cope with any bytes
        # there (the launch state, the abort indicator, the fields' data).
        r = rng.choice(REGIONS)
        off = rng.choice((0, 4, 8, 12, rng.randrange(0x1000 - 8), rng.randrange(0x40) * 4))
        if gentle:
            off = 16 + rng.randrange(0x1000 - 24)
        c.store32(r + off, rng.getrandbits(32) if rng.random() < 0.7 else rng.choice((0, 1, 0xFFFFFFFF)))
    elif x < 0.96:
        c.raw(biased_instruction(rng, bits))
    else:
        c.simple("hlt")


def handler_code(rng, mode, memory):
    """The code at HOST_RIP: resume, step over the exiting instruction
    (a few times, then VMXOFF), leave VMX operation, halt, loop, or
    random VMX steps then VMRESUME."""
    c = Code(64 if mode == "long" else 32)
    kind = rng.choice(("resume", "advance", "advance", "vmxoff", "halt", "loop", "random", "restart"))
    if kind == "advance":
        limit = rng.choice((1, 2, 4, 16, 100))
        c.raw(b"\xFF" + c.modrm_abs(0, COUNTER))                               # inc dword [COUNTER]
        c.raw(b"\x83" + c.modrm_abs(7, COUNTER) + bytes((limit,)))             # cmp dword [COUNTER], limit
        tail = Code(c.bits)
        tail.mov_imm(2, int(F.GUEST_RIP))
        tail.vmread_reg(0, 2)
        tail.mov_imm(2, int(F.VM_EXIT_INSTRUCTION_LENGTH))
        tail.vmread_reg(1, 2)
        tail.rex(w=1)
        tail.raw(b"\x01\xC8")                                                  # add rax, rcx
        tail.mov_imm(2, int(F.GUEST_RIP))
        tail.vmwrite_reg(2, 0)
        tail.simple("vmresume")
        c.raw(bytes((0x73, len(tail.out))))                                    # jae over the tail
        c.raw(tail.out)
        c.simple("vmxoff")
        c.simple("hlt")
    elif kind == "resume":
        c.simple("vmresume")
        c.simple("hlt")
    elif kind == "vmxoff":
        c.simple("vmxoff")
        c.simple("hlt")
    elif kind == "restart":
        # Leave VMX operation and come back: VMXON, the VMCS made current
        # again (cleared or not), VMLAUNCH.
        c.simple("vmxoff")
        c.vmx_mem("vmxon", PTRS)
        if rng.random() < 0.5:
            c.vmx_mem("vmclear", PTRS + 8)
        c.vmx_mem("vmptrld", PTRS + 8)
        c.simple(rng.choice(("vmlaunch", "vmresume", "hlt")))
        c.simple("hlt")
    elif kind == "halt":
        c.simple("hlt")
    elif kind == "loop":
        c.simple("loop")
    else:
        for _ in range(rng.randint(1, 4)):
            body_op(rng, c, mode, memory)
        c.simple("vmresume")
        c.simple("hlt")
    return kind, bytes(c.out)


def root_idt(rng, spec, c, mode):
    """Sometimes an IDT for the root (none: a fault shuts the machine down):
    every vector to a HLT, or to an IRET (the fault repeats until the budget)."""
    kind = rng.choice(("none", "none", "hlt", "iret"))
    if kind == "none":
        return
    if mode == "real":
        # The IVT's #UD vector (6), which every VMX instruction raises here,
        # to a HLT or an IRET at 0:9FF0H (below the stack's few bytes).
        spec["fill"].append([0x9FF0, "f4" if kind == "hlt" else "cf"])
        spec["fill"].append([6 * 4, struct.pack("<HH", 0x9FF0, 0).hex()])
        return
    stub = ROOT_IDT + 0x1000
    spec["fill"].append([stub, "f4" if kind == "hlt" else ("48cf" if mode == "long" else "cf")])
    if mode == "long":
        gate = struct.pack("<HHHHII", stub & 0xFFFF, 0x18, 0x8E00, stub >> 16, 0, 0)
    else:
        gate = struct.pack("<HHHH", stub & 0xFFFF, 0x08, 0x8E00, stub >> 16)
    spec["fill"].append([ROOT_IDT, (gate * 32).hex()])
    # The pseudo-descriptor: a 2-byte limit, then the base (4 bytes, or 8
    # in 64-bit mode), at desc + 2 so the base lies 4-byte aligned.
    desc = PTRS + 8 * 13
    c.store32(desc + 4, ROOT_IDT)
    c.store32(desc + 8, 0)
    c.raw(b"\x66\xC7" + c.modrm_abs(0, desc + 2) + struct.pack("<H", 32 * len(gate) - 1))
    c.lidt(desc + 2)


def region_fill(rng, spec, memory):
    """Random bytes in the VMCS regions now and then (before the prologue
    writes the revision identifier over their first four)."""
    for r in REGIONS[1:]:
        if rng.random() < 0.2:
            n = rng.choice((16, 64, 0x1000))
            spec["fill"].append([r, bytes(rng.getrandbits(8) for _ in range(n)).hex()])


def budgets(rng, budget_max):
    """The runs: one full budget, sometimes cut into pieces first (a run
    that stops on the budget in VMX operation must go on in the next)."""
    runs = [budget_max if rng.random() < 0.7 else rng.randint(1, budget_max)]
    if rng.random() < 0.4:
        runs = [rng.randint(1, min(200, budget_max)) for _ in range(rng.randint(1, 3))] + [budget_max]
    if rng.random() < 0.5:
        runs.append(rng.randint(1, 50))         # a second run after a halt or shutdown
    return [["run", b] for b in runs]


def make_x86_spec(rng, spec, mode, memory, tables, budget_max):
    bits = {"real": 16, "protected": 32, "long": 64}[mode]
    c = Code(bits)
    root_idt(rng, spec, c, mode)
    prologue(rng, c, mode, memory, tables, spec)
    if mode != "real" and rng.random() < 0.92:
        build_vmcs(rng, c, mode, memory, tables)
    for _ in range(rng.randint(0, 6)):
        body_op(rng, c, mode, memory, gentle=rng.random() < 0.95)
    if rng.random() < 0.9:
        c.simple("vmlaunch" if rng.random() < 0.85 else "vmresume")
    for _ in range(rng.randint(0, 4)):
        body_op(rng, c, mode, memory)
    c.simple("hlt")
    spec["code"] = bytes(c.out).hex()
    if mode != "real":
        kind, handler = handler_code(rng, mode, memory)
        spec["exit_handler"] = kind
        spec["fill"].append([HANDLER, handler.hex()])
        guest = make_code(rng, bits) + (b"\xF4" if rng.random() < 0.5 else b"")
        spec["fill"].append([GUEST, guest.hex()])
    spec["calls"] = budgets(rng, budget_max)


# --- the Python-driven cases ----------------------------------------------------------

def api_call(rng, memory):
    x = rng.random()
    if x < 0.15:
        return [rng.choice(("vmxon", "vmclear", "vmptrld", "vmptrld")), pointer(rng, memory)]
    if x < 0.45:
        enc, width = field(rng)
        return ["vmwrite", enc, value(rng, width, memory)]
    if x < 0.55:
        return ["vmread", field(rng)[0]]
    if x < 0.7:
        return [rng.choice(("vmlaunch", "vmresume", "vmlaunch"))]
    if x < 0.75:
        return ["invept", rng.choice((1, 2, 0, 3)), rng.choice((0x5000 | 6 | (3 << 3), 0, rng.getrandbits(64)))]
    if x < 0.8:
        return ["invvpid", rng.randrange(5), rng.choice((0, 1, 5, 1 << 16)), rng.choice((0, 1 << 63, 0x1000))]
    if x < 0.85:
        return [rng.choice(("vmptrst", "vmxoff", "vmxoff"))]
    if x < 0.9:
        r = rng.choice(REGIONS)
        return ["write", r + rng.randrange(0x1000 - 16), bytes(rng.getrandbits(8) for _ in range(8)).hex()]
    if x < 0.95:
        return ["run", rng.randint(1, 200)]
    # Arguments out of range (a clear Python error, never a crash).
    bad = rng.choice((-1, 1 << 64, 1 << 70, -(1 << 64)))
    return rng.choice((["vmxon", bad], ["vmptrld", bad], ["vmread", bad], ["vmwrite", bad, 0],
                       ["vmwrite", int(F.GUEST_RIP), bad], ["invept", bad], ["invvpid", 1, bad]))


def make_api_spec(rng, spec, mode, memory, tables, budget_max):
    bits = {"real": 16, "protected": 32, "long": 64}[mode]
    c = Code(bits)
    # Only what Python cannot do: paging and CR4.VMXE.  Then HLT.
    if mode == "protected":
        pd = b"".join(struct.pack("<I", (i << 22) | 0x83) for i in range(1024))
        spec["fill"].append([PAGE_DIR, pd.hex()])
        c.set_cr_bits(4, CR4_PSE)
        c.mov_imm(0, PAGE_DIR)
        c.mov_to_cr(3, 0)
        c.set_cr_bits(0, 0x80000000)
    if rng.random() < 0.9:
        c.set_cr_bits(4, CR4_VMXE)
    c.simple("hlt")
    spec["code"] = bytes(c.out).hex()
    for r in REGIONS:
        spec["fill"].append([r, struct.pack("<I", REV).hex()])
    region_fill(rng, spec, memory)
    guest = make_code(rng, bits) + (b"\xF4" if rng.random() < 0.5 else b"")
    spec["fill"].append([GUEST, guest.hex()])
    calls = [["run", 100], ["vmxon", REGIONS[0]], ["vmclear", REGIONS[1]], ["vmptrld", REGIONS[1]]]
    if mode != "real" and rng.random() < 0.8:
        crs = host_crs(mode, tables)
        rows = good_fields(mode, tables) + [(int(F.HOST_CR0) + 2 * (n and n - 2), v) for n, v in crs.items()] + \
            [(int(F.GUEST_CR0) + 2 * (n and n - 2), v) for n, v in crs.items()]
        if mode == "protected":
            # Python, the host here, is a 64-bit program: "host
            # address-space size" and a PAE host CR4 (SDM 27.2.4).
            rows = [(e, v | (1 << 9)) if e == int(F.VM_EXIT_CONTROLS) else
                    (e, v | 0x20) if e == int(F.HOST_CR4) else (e, v) for e, v in rows]
        calls += [["vmwrite", e, v] for e, v in mutate_fields(rng, rows, memory)]
    if rng.random() < 0.7:
        calls.append(["vmlaunch"])
    for _ in range(rng.randint(1, 12)):
        calls.append(api_call(rng, memory))
    calls += budgets(rng, budget_max)
    spec["calls"] = calls


def make_root_spec(rng, mode, budget_max):
    memory = rng.choice((0x200000, 0x200000, 0x400000, 0x201000, 0x100000 if mode == "real" else 0x200000))
    tables = memory - 0x8000
    spec = {"campaign": "root", "mode": mode, "memory": memory, "code": "", "code_at": CODE, "stack": STACK,
            "fill": []}
    if mode != "real":
        spec["tables"] = tables
    if rng.random() < 0.75:
        spec["kind"] = "x86"
        region_fill(rng, spec, memory)
        make_x86_spec(rng, spec, mode, memory, tables, budget_max)
    else:
        spec["kind"] = "python"
        make_api_spec(rng, spec, mode, memory, tables, budget_max)
    spec["budget"] = budget_max
    return spec
