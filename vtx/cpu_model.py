"""The CPU model: what the processor says it is through CPUID, and so what it
does (docs/tutorials/cpu_model.rst).

A :class:`CpuModel` is a preset of vtx/spec/cpuid.py (``"default"``,
``"skylake"``, ``"core2"``) with features added or removed by name, and an
identity (vendor, family/model/stepping, brand string, caches) the preset
gives or the caller overrides.  A machine takes one when it is made
(``vtx.VM(cpu="core2")``, ``vtx.BareMetal(cpu=CpuModel("skylake",
remove={"SMAP"}))``) or later through ``machine.cpu_model = ...``.

The model decides three things at once, so they never disagree:

- what CPUID answers (the feature bits, the identity leaves, leaf 04H caches,
  leaf 0BH topology: one core with one thread);
- what exists: an instruction whose feature is absent is #UD (the decoder
  gates opcode entries by feature), a CR4 bit whose feature is absent is
  reserved (MOV to CR4 #GP(0)), and paging bits follow (without PDPE1GB the
  PS bit of a PDPTE is reserved, without NX the XD bit is);
- the VMX capability MSRs that depend on it (IA32_VMX_CR4_FIXED1).

Features can be added only among those the model implements (the
``"default"`` preset): advertising an instruction vtx cannot execute would
break "whatever CPUID advertises works".
"""

import attrs

from .errors import ArgumentError
from .spec import cpuid as _spec
from .spec.capabilities import MAXPHYADDR, cr4_fixed1

__all__ = ["CpuModel", "PRESETS"]

#: The preset names.
PRESETS = tuple(_spec.PRESETS)

_KNOWN = tuple(row[0] for row in _spec.FEATURES)
_IMPLEMENTED = frozenset(_spec.PRESETS["default"])
#: Linear-address width reported in CPUID.80000008H:EAX[15:8].
LINEAR_WIDTH = 48


def _names(what, names):
    if isinstance(names, str):
        names = (names,)
    try:
        names = frozenset(names)
    except TypeError:
        raise TypeError(f"{what} is a set of CPUID feature names, not {names!r}") from None
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{what}: a CPUID feature name is a str, not {n!r}")
        if n not in _KNOWN:
            raise ArgumentError(f"{what}: unknown CPUID feature {n!r}; the model knows {', '.join(_KNOWN)}")
    return names


def _brand_check(_self, _attr, value):
    if not isinstance(value, str) or not value.isascii() or len(value) > 47:
        raise ArgumentError(f"the brand string is ASCII text of at most 47 characters, not {value!r}")


def _vendor_check(_self, _attr, value):
    if not isinstance(value, str) or not value.isascii() or len(value) != 12:
        raise ArgumentError(f"the vendor string is 12 ASCII characters, not {value!r}")


@attrs.frozen(init=False)
class CpuModel:
    """A CPU model: a preset, features added and removed, an identity.

    ``CpuModel("skylake", remove={"SMAP"})`` is a Skylake without SMAP;
    ``CpuModel("core2", add={"PCID"})`` a Core 2 with PCID.  Keyword
    arguments ``vendor``, ``family``, ``model``, ``stepping`` and ``brand``
    replace the preset's identity.  The object is immutable; compare
    models with ``==``."""

    preset: str
    features: frozenset
    vendor: str = attrs.field(validator=_vendor_check)
    family: int
    model: int
    stepping: int
    brand: str = attrs.field(validator=_brand_check)
    max_leaf: int
    caches: tuple

    def __init__(self, preset="default", *, add=(), remove=(), vendor=None, family=None, model=None,
                 stepping=None, brand=None):
        if isinstance(preset, CpuModel):
            base = preset
            feats = set(base.features)
            ident = dict(vendor=base.vendor, family=base.family, model=base.model, stepping=base.stepping,
                         brand=base.brand, max_leaf=base.max_leaf, caches=base.caches)
            preset = base.preset
        else:
            if preset not in _spec.PRESETS:
                raise ArgumentError(f"unknown CPU preset {preset!r}; the presets are {', '.join(PRESETS)}")
            feats = set(_spec.PRESETS[preset])
            ident = dict(_spec.IDENTITIES[preset])
        add = _names("add", add)
        remove = _names("remove", remove)
        missing = add - _IMPLEMENTED
        if missing:
            raise ArgumentError(f"add: vtx does not implement {', '.join(sorted(missing))}, so a CPU model "
                                f"cannot advertise it")
        if add & remove:
            raise ArgumentError(f"features both added and removed: {', '.join(sorted(add & remove))}")
        feats = (feats | add) - remove
        # OSXSAVE mirrors CR4.OSXSAVE and needs XSAVE (SDM Vol. 2A CPUID).
        if "XSAVE" not in feats:
            feats.discard("OSXSAVE")
        # A supervisor state component exists only for XSAVES/XRSTORS and
        # IA32_XSS (SDM Vol. 1 13.3).
        if "XSAVES" not in feats:
            feats.discard("XSS_PASID")
        for key, value in (("vendor", vendor), ("family", family), ("model", model), ("stepping", stepping),
                           ("brand", brand)):
            if value is not None:
                ident[key] = value
        for key in ("family", "model", "stepping"):
            if isinstance(ident[key], bool) or not isinstance(ident[key], int):
                raise TypeError(f"{key} is an int, not {ident[key]!r}")
        try:
            _spec.signature(ident["family"], ident["model"], ident["stepping"])
        except ValueError as e:
            raise ArgumentError(str(e)) from None
        self.__attrs_init__(preset, frozenset(feats), ident["vendor"], ident["family"], ident["model"],
                            ident["stepping"], ident["brand"], ident["max_leaf"], tuple(ident["caches"]))

    def __repr__(self):
        base = frozenset(_spec.PRESETS[self.preset])
        parts = [repr(self.preset)]
        if self.features - base:
            parts.append(f"add={sorted(self.features - base)!r}")
        if base - self.features:
            parts.append(f"remove={sorted(base - self.features)!r}")
        return f"vtx.CpuModel({', '.join(parts)})"

    def _with_features(self, names):
        """This model with exactly the features ``names`` (for the core's raw
        feature set, which tests set by name)."""
        m = object.__new__(CpuModel)
        m.__attrs_init__(self.preset, frozenset(names), self.vendor, self.family, self.model, self.stepping,
                         self.brand, self.max_leaf, self.caches)
        return m

    def has(self, feature):
        """Whether CPUID advertises ``feature`` (a name of vtx/spec/cpuid.py)."""
        _names("has", (feature,))
        return feature in self.features

    @property
    def signature(self):
        """CPUID.01H:EAX: family, model and stepping (also EDX after reset)."""
        return _spec.signature(self.family, self.model, self.stepping)

    @property
    def cr4_fixed1(self):
        """The CR4 bits this model lets software set.  IA32_VMX_CR4_FIXED1
        is this with VMXE: a processor in VMX operation has VMX, even where
        a model without it is what a hosted guest is shown."""
        return cr4_fixed1(self.features)

    def cpuid_leaves(self):
        """The fixed part of CPUID: ``(leaf, subleaf, eax, ebx, ecx, edx)``
        rows, before the feature bits are ORed in and the bits that follow
        processor state (OSXSAVE, MONITOR) are set (core/insn/system.pxi)."""
        rows = []
        v = self.vendor.encode()
        rows.append((0, 0, self.max_leaf, int.from_bytes(v[0:4], "little"), int.from_bytes(v[8:12], "little"),
                     int.from_bytes(v[4:8], "little")))
        # 01H:EBX: brand index 0, CLFLUSH line 8 x 8 bytes, one logical
        # processor ID in the package, initial APIC ID 0 (SDM Vol. 2A CPUID).
        rows.append((1, 0, self.signature, (8 << 8) | (1 << 16), 0, 0))
        # 02H: one iteration, descriptor FFH: "no cache descriptors, use leaf 04H".
        rows.append((2, 0, 0x0000FF01, 0, 0, 0))
        # 04H: the deterministic cache parameters, one subleaf per cache; the
        # fields are the value minus one; one core, one thread shares each.
        for i, (level, typ, kib, ways) in enumerate(self.caches):
            line = 64
            sets = kib * 1024 // (line * ways)
            eax = typ | (level << 5) | (1 << 8)
            ebx = (line - 1) | (0 << 12) | ((ways - 1) << 22)
            edx = 2 if level == 3 else 0      # the last level is inclusive
            rows.append((4, i, eax, ebx, sets - 1, edx))
        # 0BH: the x2APIC topology: SMT level (1 thread), core level (1
        # core), then an invalid level; EDX the x2APIC ID (0).
        rows.append((0xB, 0, 0, 1, 0 | (1 << 8), 0))
        rows.append((0xB, 1, 0, 1, 1 | (2 << 8), 0))
        rows.append((0xB, 2, 0, 0, 2, 0))
        rows.append((0x80000000, 0, 0x80000008, 0, 0, 0))
        brand = self.brand.encode().ljust(48, b"\0")
        for i in range(3):
            chunk = brand[16 * i:16 * i + 16]
            rows.append((0x80000002 + i, 0) + tuple(int.from_bytes(chunk[4 * j:4 * j + 4], "little")
                                                     for j in range(4)))
        # 80000006H:ECX: L2 line size, associativity (the encoding of the
        # SDM's table: 04H 4-way, 06H 8-way, 08H 16-way, 0FH full) and size.
        l2 = [c for c in self.caches if c[0] == 2]
        if l2:
            _lvl, _typ, kib, ways = l2[0]
            assoc = {1: 1, 2: 2, 4: 4, 8: 6, 16: 8}.get(ways, 8 if ways > 16 else 6)
            rows.append((0x80000006, 0, 0, 0, 64 | (assoc << 12) | (kib << 16), 0))
        rows.append((0x80000008, 0, MAXPHYADDR | (LINEAR_WIDTH << 8), 0, 0, 0))
        return rows
