"""The VMX tables as a Python API (docs/architecture.rst, decision 2: one table per domain).

The tables live in the modules next to this one; this module builds enums and
lookup helpers from them when it is imported:

- :class:`VmcsField` (IntEnum: field name -> full encoding) and the helpers
  :func:`field_width`, :func:`field_size`, :func:`field_type`,
  :func:`field_index`, :func:`field_offset`, :func:`field_is_readonly`,
  :func:`field_by_name`, :func:`field_info`, :func:`is_supported`;
- :class:`ExitReason`, :class:`VmInstructionError` (IntEnum);
- :class:`PinBased`, :class:`ProcBased`, :class:`ProcBased2`, :class:`ProcBased3`,
  :class:`ExitControls`, :class:`ExitControls2`, :class:`EntryControls` (IntFlag);
- :class:`Msr` (IntEnum) and the :mod:`~vtx.spec.capabilities` values.

``python -m vtx.spec.generate`` writes the C header, the Cython declarations and
the documentation tables from the same modules.
"""

from enum import IntEnum, IntFlag
from typing import NamedTuple

from . import capabilities
from . import controls as _controls
from .exit_reasons import EXIT_INFO, EXIT_REASONS, EXIT_REASON_FLAGS, INFO_FIELDS
from .msrs import MSRS
from .vm_instruction_errors import VM_INSTRUCTION_ERRORS
from .vmcs_fields import (
    FIELDS,
    FieldType,
    FieldWidth,
    OFF_ABORT,
    OFF_LAUNCH_STATE,
    OFF_LAUNCH_EPOCH,
    OFF_REVISION,
    VMCS_REGION_SIZE,
    compute_layout,
)
from . import vmcs_fields as _vf

__all__ = [
    "FIELDS",
    "FieldType",
    "FieldWidth",
    "FieldInfo",
    "VmcsField",
    "LAYOUT",
    "VMCS_REGION_SIZE",
    "OFF_REVISION",
    "OFF_ABORT",
    "OFF_LAUNCH_STATE",
    "OFF_LAUNCH_EPOCH",
    "MODEL_FIELDS",
    "EXIT_INFO",
    "INFO_FIELDS",
    "in_model",
    "field_width",
    "field_size",
    "field_type",
    "field_index",
    "field_offset",
    "field_is_readonly",
    "field_by_name",
    "field_info",
    "is_supported",
    "ExitReason",
    "ExitReasonFlag",
    "VmInstructionError",
    "PinBased",
    "ProcBased",
    "ProcBased2",
    "ProcBased3",
    "ExitControls",
    "ExitControls2",
    "EntryControls",
    "Msr",
    "capabilities",
]

#: Where each field lives in the VMCS region.
LAYOUT = compute_layout()

VmcsField = IntEnum("VmcsField", [(name, enc) for name, enc, _ in FIELDS], module=__name__)
VmcsField.__doc__ = "VMCS field names mapped to their full VMREAD/VMWRITE encodings (SDM Appendix B)."


class FieldInfo(NamedTuple):
    """Everything known about one VMCS field (a row of the table plus what is derived)."""

    name: str
    encoding: int
    width: FieldWidth
    type: FieldType
    index: int
    size: int  # bytes the field takes in the VMCS region
    offset: int  # byte offset in the VMCS region
    readonly: bool
    description: str


def _build_info():
    by_enc = {}
    for name, enc, desc in FIELDS:
        width = _vf.field_width(enc)
        ftype = _vf.field_type(enc)
        by_enc[enc] = FieldInfo(
            name=name,
            encoding=enc,
            width=width,
            type=ftype,
            index=_vf.field_index(enc),
            size=_vf.width_bytes(width),
            offset=LAYOUT.offsets[name],
            readonly=ftype == FieldType.READ_ONLY,
            description=desc,
        )
    return by_enc


_BY_ENCODING = _build_info()
_BY_NAME = {info.name: info for info in _BY_ENCODING.values()}


def _lookup(enc):
    """``(info, high)`` for a supported encoding; ValueError otherwise."""
    enc = int(enc)
    info = _BY_ENCODING.get(enc)
    if info is not None:
        return info, False
    if enc & 1:
        info = _BY_ENCODING.get(enc & ~1)
        if info is not None and info.width == FieldWidth.BITS64:
            return info, True
    raise ValueError(f"unsupported VMCS component encoding {enc:#x}")


def is_supported(enc):
    """True if ``enc`` names a VMCS component of the model (full or high access)."""
    try:
        _lookup(enc)
    except ValueError:
        return False
    return True


def _feature_offered(name):
    """Whether the model offers the feature of field ``name`` (vmcs_fields.FEATURE)."""
    need = _vf.FEATURE.get(name, ())
    if isinstance(need, str):
        return False
    if not need:
        return True
    for alt in need:
        prefix, control = alt.split(".")
        if capabilities.allowed1(prefix) & _controls.group_by_prefix(prefix).mask(control):
            return True
    return False


#: Names of the fields the modeled processor has: those of the features it
#: offers (VMREAD/VMWRITE of any other fails with VM-instruction error 12).
MODEL_FIELDS = frozenset(name for name, _enc, _d in FIELDS if _feature_offered(name))


def in_model(enc):
    """True if ``enc`` names a VMCS component the modeled processor has:
    a field of the SDM's table whose feature the capability MSRs offer."""
    try:
        info, _high = _lookup(enc)
    except ValueError:
        return False
    return info.name in MODEL_FIELDS


def field_info(enc):
    """The :class:`FieldInfo` of the field ``enc`` names (its high encoding names the same field)."""
    return _lookup(enc)[0]


def field_by_name(name):
    """The :class:`FieldInfo` of the field called ``name`` (``"GUEST_RIP"`` or ``"VMCS_GUEST_RIP"``)."""
    key = str(name).upper()
    info = _BY_NAME.get(key)
    if info is None and key.startswith("VMCS_"):
        info = _BY_NAME.get(key[5:])
    if info is None:
        raise KeyError(f"no VMCS field named {name!r}")
    return info


def field_width(enc):
    """Bits a VMREAD/VMWRITE of ``enc`` transfers: 16, 32 or 64 (natural width is 64; high access 32)."""
    info, high = _lookup(enc)
    return 32 if high else _vf.width_bits(info.width)


def field_size(enc):
    """Bytes a VMREAD/VMWRITE of ``enc`` reads or writes in the region: 2, 4 or 8 (high access 4)."""
    return field_width(enc) // 8


def field_type(enc):
    """The :class:`FieldType` of ``enc`` (control, read-only, guest or host)."""
    return _lookup(enc)[0].type


def field_index(enc):
    """The index (bits 9:1) of ``enc``."""
    return _lookup(enc)[0].index


def field_offset(enc):
    """Byte offset of ``enc`` in the VMCS region (the high half of a 64-bit field is at +4)."""
    info, high = _lookup(enc)
    return info.offset + 4 if high else info.offset


def field_is_readonly(enc):
    """True if ``enc`` is a read-only data (VM-exit information) field."""
    return _lookup(enc)[0].readonly


ExitReason = IntEnum("ExitReason", [(name, num) for name, num, _ in EXIT_REASONS], module=__name__)
ExitReason.__doc__ = "Basic exit reasons (SDM Appendix C)."

ExitReasonFlag = IntFlag("ExitReasonFlag", [(name, 1 << bit) for name, bit, _ in EXIT_REASON_FLAGS],
                         module=__name__)
ExitReasonFlag.__doc__ = "Flag bits of the exit-reason field besides the basic reason."

VmInstructionError = IntEnum(
    "VmInstructionError", [(name, num) for name, num, _ in VM_INSTRUCTION_ERRORS], module=__name__
)
VmInstructionError.__doc__ = "VM-instruction error numbers (SDM Vol. 3C 31.4)."


def _flag(group):
    cls = IntFlag(group.pyname, [(name, 1 << bit) for name, bit, _ in group.bits], module=__name__)
    cls.__doc__ = f"{group.title} (C prefix ``{group.prefix}_``)."
    cls.DEFAULT1 = group.default1_mask  # plain int: default1 bits are not named controls
    return cls


PinBased = _flag(_controls.PIN_BASED)
ProcBased = _flag(_controls.PRIMARY_PROC_BASED)
ProcBased2 = _flag(_controls.SECONDARY_PROC_BASED)
ProcBased3 = _flag(_controls.TERTIARY_PROC_BASED)
ExitControls = _flag(_controls.VM_EXIT)
ExitControls2 = _flag(_controls.SECONDARY_VM_EXIT)
EntryControls = _flag(_controls.VM_ENTRY)

Msr = IntEnum("Msr", [(name, num) for name, num, _ in MSRS], module=__name__)
Msr.__doc__ = "MSR numbers the model uses."
