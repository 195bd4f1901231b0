"""The vmcs campaign: random mutations of a known-good VMCS.

A case starts from the VMCS that vm.setup_{real,protected,long}_mode leaves
(often after a few instructions have run, so that the entry is a VMRESUME
of a launched VMCS), changes 1-4 random fields with vcpu.vmwrite, and runs a
short corpus program.  Every field VMWRITE accepts is a candidate, the
read-only exit-information fields and the high halves of 64-bit fields
included.  A mutation is ``[encoding, op, value]``: op "set" writes value,
"xor" flips the bits of value in the field's current (good) value, "add"
adds value to it; the harness applies them, so a spec stays exact without
knowing the good values in advance.

The values are where entry checks have edges: 0, all-ones, the sign bit,
single-bit flips of the good value, off-by-one, and page-aligned addresses
in RAM, at its end, beyond it, at 4 GiB, at MAXPHYADDR and in the
hypervisor's private memory (PRIV_BASE).
"""

from vtx._core import PRIV_BASE
from vtx.spec import FIELDS, MODEL_FIELDS, FieldWidth, capabilities, field_info

from .cases import BITS
from .corpus import BY_BITS
from .streams import make_handler_policy

#: Every encoding vmwrite accepts, with its width in bits; the high halves
#: of the 64-bit fields are drawn less often (they alias the full field).
FULL = [(enc, 64 if field_info(enc).width in (FieldWidth.BITS64, FieldWidth.NATURAL)
         else 32 if field_info(enc).width == FieldWidth.BITS32 else 16) for n, enc, _d in FIELDS if n in MODEL_FIELDS]
HIGH = [(enc | 1, 32) for n, enc, _d in FIELDS if n in MODEL_FIELDS and field_info(enc).width == FieldWidth.BITS64]

MAXPHYADDR = capabilities.MAXPHYADDR


def address(rng, memory):
    return rng.choice((
        rng.randrange(memory // 0x1000) * 0x1000, 0, 0x1000, memory, memory - 0x1000,
        memory + 0x1000 * rng.randint(0, 16), 1 << 32, (1 << 32) - 0x1000,
        (1 << MAXPHYADDR) - 0x1000, 1 << MAXPHYADDR, PRIV_BASE + 0x1000 * rng.randint(0, 8),
        PRIV_BASE - 0x1000, PRIV_BASE + rng.randrange(0x8000), rng.randrange(memory)))


def mutation(rng, memory):
    enc, width = rng.choice(FULL) if rng.random() < 0.9 else rng.choice(HIGH)
    ones = (1 << width) - 1
    x = rng.random()
    if x < 0.35:
        mask = 0
        for _ in range(rng.randint(1, 3)):
            mask |= 1 << rng.randrange(width)
        return [enc, "xor", mask]
    if x < 0.45:
        return [enc, "add", rng.choice((1, -1, 0x1000, -0x1000, 2, -2))]
    value = rng.choice((
        rng.getrandbits(width), 0, ones, 1 << (width - 1), (1 << (width - 1)) - 1,
        rng.randint(1, 16), address(rng, memory), address(rng, memory) | rng.randrange(0x1000)))
    return [enc, "set", value & ones]


def make_vmcs_spec(rng, mode, budget):
    memory = rng.choice((0x200000, 0x200000, 0x201000, 0x20000))
    _name, code = rng.choice(BY_BITS[BITS[mode]])
    spec = {"campaign": "vmcs", "mode": mode, "memory": memory, "code": code.hex(),
            "code_at": 0x1000, "fill": []}
    if mode != "real":
        spec["tables"] = memory - 0x8000
    spec["prerun"] = rng.randint(1, 5) if rng.random() < 0.3 else 0
    spec["mutations"] = [mutation(rng, memory) for _ in range(rng.randint(1, 4))]
    spec["handler"] = make_handler_policy(rng, max_exits=16)
    spec["budget"] = budget
    return spec
