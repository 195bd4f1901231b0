"""The exceptions vtx raises.

Everything vtx raises on purpose derives from :class:`VtxError`, so a caller can
catch the library's errors without catching its own bugs.
"""


class VtxError(Exception):
    """Base class of every error vtx raises on purpose."""


class AsmError(VtxError):
    """GNU as rejected the source.

    ``line`` is the 1-based line number in the source the caller passed (None
    when the assembler did not name one), ``message`` the assembler's text.
    """

    def __init__(self, message, line=None, text=None):
        self.message = message
        self.line = line
        self.text = text
        where = f"line {line}: " if line is not None else ""
        shown = f"\n    {text}" if text else ""
        super().__init__(f"{where}{message}{shown}")


class AssemblerNotFound(VtxError):
    """GNU binutils (as, ld) are not installed on this machine."""


class GuestMemoryError(VtxError, IndexError):
    """A host-side access (load, read, write) outside the VM's guest memory."""


class RegisterError(VtxError, AttributeError):
    """A register name that the vCPU does not have."""


class VmEntryError(VtxError):
    """VM entry failed.

    ``kind`` is ``"vm-instruction-error"`` (the VMLAUNCH/VMRESUME failed with a
    VM-instruction error number, SDM Vol. 3 31.4) or ``"invalid-guest-state"``
    (the entry failed after the control and host-state checks, which the SDM
    reports as a VM exit with basic reason 33 and bit 31 set, SDM 27.8) or
    ``"msr-loading"`` (an entry of the VM-entry MSR-load area failed while the
    MSRs were loaded: basic reason 34, the exit qualification the entry's
    index counted from 1, SDM 27.4).
    ``check`` names the check that failed and ``section`` the SDM section that
    defines it.
    """

    def __init__(self, kind, number, check, section, detail=""):
        self.kind = kind
        self.number = number
        self.check = check
        self.section = section
        self.detail = detail
        if kind == "vm-instruction-error":
            head = f"VM entry failed: VM-instruction error {number}"
        elif kind == "msr-loading":
            head = f"VM entry failed: exit reason {number} (MSR loading)"
        else:
            head = f"VM entry failed: exit reason {number} (invalid guest state)"
        tail = f" ({detail})" if detail else ""
        super().__init__(f"{head}: check '{check}' failed, SDM {section}{tail}")


class UnhandledExit(VtxError):
    """A VM exit arrived for which no handler (and no default handler) is registered."""

    def __init__(self, exit):
        self.exit = exit
        super().__init__(
            f"no handler for VM exit {exit!r}; register one with @vm.on(...) or @vm.default"
        )


class HandlerReturnError(VtxError, TypeError):
    """An exit handler returned something other than RESUME, RETRY or STOP."""


class VmStateError(VtxError, RuntimeError):
    """The VM cannot do what was asked in its present state (no vCPU, ...)."""


class ArgumentError(VtxError, ValueError):
    """An argument of a public call is out of the range it accepts; the
    message names the argument and the range."""


class HostMemoryError(VtxError, MemoryError):
    """The host could not provide the memory a VM asked for (the message
    says how much and what the host answered)."""


class SnapshotError(VtxError):
    """A snapshot file cannot be restored: not a vtx snapshot, truncated,
    corrupted (its SHA-256 does not match), written by another vtx version
    or processor layout, or made for a machine of another shape (memory
    size, ROM, vCPUs) than the one receiving it.  The message says which;
    the receiving machine is left as it was."""


class EntryCheckMismatch(AssertionError):
    """The verification mode of the VM-entry checks (``VTX_ENTRY_CHECKS=verify``
    or ``vtx._core.set_entry_check_mode("verify")``) found a VMRESUME whose
    incremental checks disagree with the full pass.  A bug in vtx, not in the
    caller's use of it, so it is an AssertionError and not a VtxError."""


class VmFail(VtxError):
    """A VMX instruction executed from Python failed as the SDM's VMfail
    does (Vol. 3C 31.2, 31.4): ``number`` is the VM-instruction error number
    (VMfailValid) or 0 for VMfailInvalid (no current VMCS to hold one), and
    ``name`` its name in :class:`vtx.VmInstructionError` ("FAIL_INVALID" for
    VMfailInvalid)."""

    def __init__(self, instruction, number, name, description):
        self.instruction = instruction
        self.number = number
        self.name = name
        self.description = description
        #: For VMLAUNCH/VMRESUME failing with error 7 or 8: the name and SDM
        #: section of the entry check that failed (vtx/spec/entry_checks.py).
        self.check = None
        self.section = None
        what = f"VMfailValid, VM-instruction error {number} {name}" if number else "VMfailInvalid"
        super().__init__(f"{instruction}: {what} ({description})")


class VtxWarning(UserWarning):
    """Something that is probably a mistake but may be meant: code loaded at
    an address other than its ``org``, a guest that starts at zeros."""
