"""Small immutable value types of the public API."""

import attrs


def _u64(name, bits):
    def check(instance, attribute, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} takes an int, not {type(value).__name__}")
        if value < 0 or value >> bits:
            raise ValueError(f"{name} {value:#x} does not fit in {bits} bits")
    return check


@attrs.frozen
class Segment:
    """A segment register with its hidden part, in VMCS form (SDM Vol. 3C 25.4.1).

    ``access_rights`` uses the VMCS access-rights layout: type in bits 3:0, S 4,
    DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15, and bit 16 = segment unusable.
    """

    selector: int = attrs.field(validator=_u64("selector", 16))
    base: int = attrs.field(validator=_u64("base", 64))
    limit: int = attrs.field(validator=_u64("limit", 32))
    access_rights: int = attrs.field(validator=_u64("access_rights", 32))

    @property
    def type(self):
        return self.access_rights & 0xF

    @property
    def dpl(self):
        return (self.access_rights >> 5) & 3

    @property
    def present(self):
        return bool(self.access_rights & 0x80)

    @property
    def unusable(self):
        return bool(self.access_rights & 0x10000)

    @property
    def long(self):
        return bool(self.access_rights & 0x2000)

    @property
    def db(self):
        return bool(self.access_rights & 0x4000)


@attrs.frozen
class DescriptorTable:
    """GDTR or IDTR: a linear base address and a limit.

    The limit is the VMCS field's 32 bits, so any value a VMCS holds can be
    read back; the processor's registers have 16 (VM entry checks that bits
    31:16 are 0, SDM Vol. 3C 27.3.1.3)."""

    base: int = attrs.field(validator=_u64("base", 64))
    limit: int = attrs.field(validator=_u64("limit", 32))


class VmcsView:
    """The current VMCS as a mapping from field (a :class:`vtx.VmcsField`,
    its encoding or its name) to value: ``cpu.vmcs[VmcsField.GUEST_RIP] =
    0x1000`` is a VMWRITE, ``cpu.vmcs["EXIT_REASON"]`` a VMREAD, with their
    errors.  Not iterable: a VMCS has no list of what it holds."""

    __slots__ = ("_cpu",)

    def __init__(self, cpu):
        self._cpu = cpu

    def __getitem__(self, field):
        return self._cpu.vmread(field)

    def __setitem__(self, field, value):
        self._cpu.vmwrite(field, value)

    def __iter__(self):
        raise TypeError("a VMCS view is not iterable: read the fields you need by name or encoding")

    def __repr__(self):
        return f"<VMCS view of {type(self._cpu).__name__}>"
