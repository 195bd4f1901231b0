# Exits are data (docs/architecture.rst, decision 9): immutable objects that carry the raw
# exit-information fields of the VMCS and decode them on access.  They are
# cdef classes so that making one costs tens of nanoseconds, not microseconds.

from vtx.spec.exit_reasons import EXIT_INFO as _EXIT_INFO_BY_NAME, EXIT_REASONS as _EXIT_REASON_ROWS

#: EXIT_INFO rows by basic reason number.
_EXIT_INFO = {num: _EXIT_INFO_BY_NAME[name] for name, num, _d in _EXIT_REASON_ROWS if name in _EXIT_INFO_BY_NAME}

_EXCEPTION_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
                    8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF",
                    17: "#AC", 18: "#MC", 19: "#XM", 20: "#VE", 21: "#CP"}


cdef class Exit:
    """A VM exit: the exit-information fields as the VMCS holds them.

    ``reason`` is the basic exit reason (an int; ``exit.name`` gives the
    :class:`vtx.ExitReason`), ``qualification`` the exit qualification,
    ``instruction_length`` the VM-exit instruction length (0 when the exit
    has none), ``guest_rip`` the guest RIP of the exiting instruction.
    ``raw`` maps VMCS field names to the values read at the exit.
    """

    @property
    def exit_reason(self):
        """The basic exit reason as a :class:`vtx.ExitReason`."""
        return _exit_reason_enum(self.reason)

    @property
    def name(self):
        """The basic exit reason's name, as in :class:`vtx.ExitReason`
        (``"IO_INSTRUCTION"``)."""
        return _exit_reason_enum(self.reason).name

    @property
    def raw(self):
        """The exit-information fields (SDM Vol. 3C 25.9) by VMCS field name."""
        return {
            "EXIT_REASON": self.raw_reason,
            "EXIT_QUALIFICATION": self.qualification,
            "VM_EXIT_INSTRUCTION_LENGTH": self.instruction_length,
            "VM_EXIT_INSTRUCTION_INFO": self.instruction_info,
            "VM_EXIT_INTERRUPTION_INFO": self.interruption_info,
            "VM_EXIT_INTERRUPTION_ERROR_CODE": self.interruption_error_code,
            "IDT_VECTORING_INFO": self.idt_vectoring_info,
            "IDT_VECTORING_ERROR_CODE": self.idt_vectoring_error_code,
            "GUEST_LINEAR_ADDRESS": self.guest_linear_address,
            "GUEST_PHYSICAL_ADDRESS": self.guest_physical_address,
            "GUEST_RIP": self.guest_rip,
        }

    @property
    def info_fields(self):
        """The exit-information fields this exit's reason defines (SDM Vol. 3C
        28.2; the spec row in vtx/spec/exit_reasons.py EXIT_INFO): names of
        this object's attributes.  The model clears the others."""
        return _EXIT_INFO.get(self.reason & 0x7F, ((), "", ()))[0]

    def qualification_fields(self):
        """The exit qualification decoded into the bit fields of its SDM
        table (a dict of name to value; empty when the reason defines no
        qualification or gives it no fields)."""
        row = _EXIT_INFO.get(self.reason & 0x7F)
        if row is None or "qualification" not in row[0]:
            return {}
        q = self.qualification
        return {name: (q >> lo) & ((1 << (hi - lo + 1)) - 1) for name, lo, hi in row[2]}

    def _fields(self):
        return ""

    def __repr__(self):
        extra = self._fields()
        return f"<{type(self).__name__} {self.name} at rip={self.guest_rip:#x}{(' ' + extra) if extra else ''}>"

    def __reduce__(self):
        raise TypeError("VM exits are views of one moment of a VM and are not pickled")


cdef class IoExit(Exit):
    """IN, OUT, INS or OUTS (exit reason 30).  The exit qualification
    (SDM Vol. 3 Table 28-5) decoded: ``size`` in bytes, ``direction``
    ("in" or "out"), ``string``, ``rep``, ``immediate`` (port operand was an
    immediate rather than DX) and ``port``.  ``value`` is what an OUT writes
    (the low ``size`` bytes of RAX), None for IN and string instructions: an
    IN handler puts its result in the guest's AL/AX/EAX and returns RESUME."""

    @property
    def size(self):
        """The access size in bytes, 1, 2 or 4 (qualification bits 2:0 plus
        one)."""
        return <int>(self.qualification & 7) + 1

    @property
    def is_in(self):
        """True for IN and INS, False for OUT and OUTS (qualification bit 3)."""
        return bool(self.qualification & 8)

    @property
    def direction(self):
        """``"in"`` or ``"out"`` (qualification bit 3)."""
        return "in" if self.qualification & 8 else "out"

    @property
    def string(self):
        """True for INS and OUTS (qualification bit 4)."""
        return bool(self.qualification & 16)

    @property
    def rep(self):
        """True when a string instruction had a REP prefix (qualification bit
        5)."""
        return bool(self.qualification & 32)

    @property
    def immediate(self):
        """True when the port was an immediate operand, False for DX
        (qualification bit 6)."""
        return bool(self.qualification & 64)

    @property
    def port(self):
        """The port number (qualification bits 31:16)."""
        return <int>((self.qualification >> 16) & 0xFFFF)

    @property
    def value(self):
        """What an OUT writes: the low ``size`` bytes of RAX at the exit; None
        for IN and the string instructions."""
        if self.qualification & (8 | 16):
            return None
        # Size field (SDM Table 28-5): 0, 1 or 3 for 1, 2 or 4 bytes.  The mask
        # is computed in 64 bits: a C int shifted by 32 would be undefined.
        cdef uint64_t mask = (1ULL << (8 * ((self.qualification & 7) + 1))) - 1
        return self.rax & mask

    def _fields(self):
        v = self.value
        return f"{self.direction} port={self.port:#x} size={self.size}" + ("" if v is None else f" value={v:#x}")


cdef class CpuidExit(Exit):
    """CPUID (exit reason 10): ``leaf`` is EAX and ``subleaf`` ECX at the exit.
    The handler writes the result into EAX EBX ECX EDX and returns RESUME."""

    def _fields(self):
        return f"leaf={self.leaf:#x} subleaf={self.subleaf:#x}"


cdef class MsrExit(Exit):
    """RDMSR (31) or WRMSR (32): ``index`` is ECX; ``value`` is EDX:EAX for
    WRMSR and None for RDMSR (whose handler writes EDX:EAX)."""

    @property
    def is_write(self):
        """True for WRMSR (exit reason 32), False for RDMSR (31)."""
        return self.reason == 32

    @property
    def value(self):
        """WRMSR: the value EDX:EAX that the guest writes; None for RDMSR."""
        return self._value if self.reason == 32 else None

    def _fields(self):
        return f"index={self.index:#x}" + (f" value={self._value:#x}" if self.reason == 32 else "")


cdef class HltExit(Exit):
    """HLT with "HLT exiting" (exit reason 12)."""


cdef class VmcallExit(Exit):
    """VMCALL (exit reason 18): a hypercall; by convention the number is in RAX."""


cdef class RdtscExit(Exit):
    """RDTSC with "RDTSC exiting" (exit reason 16), or RDTSCP with "RDTSC
    exiting" and "enable RDTSCP" (51)."""


cdef class ExceptionExit(Exit):
    """An exception intercepted by the exception bitmap (exit reason 0).

    Decoded from the VM-exit interruption information (SDM Vol. 3C 25.9.2):
    ``vector``, ``type`` (3 hardware exception, 6 software exception, 2 NMI),
    ``error_code`` (None when the exception delivers none).  For #PF the
    qualification is the faulting linear address (``fault_address``)."""

    @property
    def vector(self):
        """The exception's vector, 0-31 (interruption information bits 7:0)."""
        return <int>(self.interruption_info & 0xFF)

    @property
    def type(self):
        """The interruption type: 2 NMI, 3 hardware exception, 5 privileged
        software exception (INT1), 6 software exception (INT3, INTO) (bits
        10:8)."""
        return <int>((self.interruption_info >> 8) & 7)

    @property
    def error_code(self):
        """The error code the exception delivers, or None when it delivers none
        (bit 11 clear)."""
        if self.interruption_info & 0x800:
            return self.interruption_error_code
        return None

    @property
    def exception(self):
        """The mnemonic of the vector: "#GP", "#PF", ..."""
        return _EXCEPTION_NAMES.get(self.interruption_info & 0xFF, f"vector {self.interruption_info & 0xFF}")

    @property
    def fault_address(self):
        """#PF: the faulting linear address (the exit qualification, which
        would have gone to CR2); None for other vectors."""
        return self.qualification if (self.interruption_info & 0xFF) == 14 else None

    def _fields(self):
        ec = self.error_code
        s = self.exception + ("" if ec is None else f" error_code={ec:#x}")
        if (self.interruption_info & 0xFF) == 14:
            s += f" address={self.qualification:#x}"
        return s


cdef class ExternalInterruptExit(Exit):
    """An external interrupt with "external-interrupt exiting" (exit reason
    1, SDM Vol. 3C 26.2).  With "acknowledge interrupt on exit" the exit
    took the interrupt and ``vector`` is its vector (interruption
    information valid, type 0, SDM 28.2.2); without it ``vector`` is None
    and the interrupt is still pending (``vcpu.pending_interrupts``)."""

    @property
    def vector(self):
        """The interrupt's vector when "acknowledge interrupt on exit" took it;
        None when the interrupt is still pending."""
        if self.interruption_info & 0x80000000:
            return <int>(self.interruption_info & 0xFF)
        return None

    def _fields(self):
        v = self.vector
        return "not acknowledged" if v is None else f"vector={v:#x}"


cdef class TripleFaultExit(Exit):
    """A triple fault (exit reason 2): the guest would have shut down."""


cdef class EptViolationExit(Exit):
    """An EPT violation (exit reason 48), qualification per SDM Table 28-7."""

    @property
    def read(self):
        """The access was a data read (qualification bit 0)."""
        return bool(self.qualification & 1)

    @property
    def write(self):
        """The access was a data write (qualification bit 1)."""
        return bool(self.qualification & 2)

    @property
    def fetch(self):
        """The access was an instruction fetch (qualification bit 2)."""
        return bool(self.qualification & 4)

    @property
    def readable(self):
        """The EPT entries of the guest-physical address allowed reads
        (qualification bit 3; False when the address is not mapped at all)."""
        return bool(self.qualification & 8)

    @property
    def writable(self):
        """The EPT entries allowed writes (qualification bit 4)."""
        return bool(self.qualification & 16)

    @property
    def executable(self):
        """The EPT entries allowed instruction fetches (qualification bit 5)."""
        return bool(self.qualification & 32)

    @property
    def linear_address_valid(self):
        """The guest linear address field is valid (qualification bit 7): clear
        when the access had no linear address, as when MOV to CR3 loads the
        PAE PDPTEs."""
        return bool(self.qualification & 128)

    @property
    def gpa(self):
        """The guest-physical address that was accessed
        (GUEST_PHYSICAL_ADDRESS)."""
        return self.guest_physical_address

    @property
    def gla(self):
        """The guest linear address of the access (GUEST_LINEAR_ADDRESS), or
        None when the qualification marks it invalid."""
        return self.guest_linear_address if self.qualification & 128 else None

    def _fields(self):
        kind = "write" if self.qualification & 2 else ("fetch" if self.qualification & 4 else "read")
        return f"{kind} gpa={self.guest_physical_address:#x}"


cdef class EptMisconfigExit(Exit):
    """An EPT misconfiguration (exit reason 49)."""

    @property
    def gpa(self):
        """The guest-physical address whose translation met the misconfigured
        EPT entry (GUEST_PHYSICAL_ADDRESS)."""
        return self.guest_physical_address


cdef class CrAccessExit(Exit):
    """A control-register access (exit reason 28), SDM Table 28-3: MOV to or
    from CR0/CR3/CR4/CR8, CLTS (access type 2) or LMSW (3)."""

    @property
    def cr(self):
        """The control register: 0, 3, 4 or 8 (qualification bits 3:0; 0 for
        CLTS and LMSW)."""
        return <int>(self.qualification & 0xF)

    @property
    def access_type(self):
        """0 MOV to CR, 1 MOV from CR, 2 CLTS, 3 LMSW."""
        return <int>((self.qualification >> 4) & 3)

    @property
    def gpr(self):
        """The general register of MOV CR (0 = RAX ... 15 = R15)."""
        return <int>((self.qualification >> 8) & 0xF)

    @property
    def lmsw_memory(self):
        """LMSW: True if the source was a memory operand (bit 6); the
        guest_linear_address is then its linear address.  None otherwise."""
        if (self.qualification >> 4) & 3 != 3:
            return None
        return bool(self.qualification & 0x40)

    @property
    def lmsw_source(self):
        """LMSW: the 16-bit source operand (bits 31:16); None otherwise."""
        if (self.qualification >> 4) & 3 != 3:
            return None
        return <int>((self.qualification >> 16) & 0xFFFF)

    def _fields(self):
        t = self.access_type
        if t == 2:
            return "clts"
        if t == 3:
            return f"lmsw source={self.lmsw_source:#x}" + (" memory" if self.lmsw_memory else "")
        return f"cr{self.cr} {'mov-to' if t == 0 else 'mov-from'} gpr={self.gpr}"


cdef class MovDrExit(Exit):
    """MOV to or from a debug register with "MOV-DR exiting" (exit reason
    29), SDM Table 28-4: ``dr`` the debug register (0-7), ``direction``
    ("to" or "from" the debug register), ``gpr`` the general register."""

    @property
    def dr(self):
        """The debug register, 0-7 (qualification bits 2:0)."""
        return <int>(self.qualification & 7)

    @property
    def direction(self):
        """``"to"`` for MOV to DRn, ``"from"`` for MOV from DRn (qualification
        bit 4)."""
        return "from" if self.qualification & 0x10 else "to"

    @property
    def gpr(self):
        """The general register operand (0 = RAX ... 15 = R15; qualification
        bits 11:8)."""
        return <int>((self.qualification >> 8) & 0xF)

    def _fields(self):
        return f"mov-{self.direction} dr{self.dr} gpr={self.gpr}"


_DT_NAMES = {46: ("SGDT", "SIDT", "LGDT", "LIDT"), 47: ("SLDT", "STR", "LLDT", "LTR")}


cdef class DescriptorTableExit(Exit):
    """LGDT, LIDT, SGDT, SIDT (exit reason 46) or LLDT, LTR, SLDT, STR (47)
    with "descriptor-table exiting".  Decoded from the instruction
    information (SDM Tables 28-10 and 28-11): ``instruction`` the mnemonic
    (bits 29:28), ``register_operand`` (bit 10; LLDT/LTR/SLDT/STR only),
    ``register`` (bits 6:3, for a register operand; None for memory).  The
    exit qualification is the operand's displacement (SDM 28.2.1)."""

    @property
    def identity(self):
        """The instruction identity from the instruction information bits 29:28
        (reason 46: 0 SGDT, 1 SIDT, 2 LGDT, 3 LIDT; reason 47: 0 SLDT, 1
        STR, 2 LLDT, 3 LTR)."""
        return <int>((self.instruction_info >> 28) & 3)

    @property
    def instruction(self):
        """The instruction's mnemonic, such as ``"LGDT"``."""
        return _DT_NAMES[self.reason][(self.instruction_info >> 28) & 3]

    @property
    def register_operand(self):
        """True when LLDT, LTR, SLDT or STR had a register operand (instruction
        information bit 10)."""
        return bool(self.instruction_info & (1 << 10))

    @property
    def register(self):
        """The register operand's number (instruction information bits 6:3), or
        None for a memory operand."""
        if self.instruction_info & (1 << 10):
            return <int>((self.instruction_info >> 3) & 0xF)
        return None

    @property
    def displacement(self):
        """The memory operand's displacement (the exit qualification)."""
        return self.qualification

    def _fields(self):
        return self.instruction


cdef class MwaitExit(Exit):
    """MWAIT with "MWAIT exiting" (exit reason 36): ``armed`` is the exit
    qualification's bit 0, whether address-range monitoring was armed."""

    @property
    def armed(self):
        """Address-range monitoring was armed by MONITOR when MWAIT executed
        (qualification bit 0)."""
        return bool(self.qualification & 1)

    def _fields(self):
        return f"armed={self.armed}"


cdef class VmxInstructionExit(Exit):
    """A VMX instruction executed in non-root operation (exit reasons 18-27,
    50, 53): these always exit (SDM Vol. 3 26.1.2)."""


cdef object EXIT_CLASSES = [Exit] * 128
EXIT_CLASSES[EXIT_REASON_EXCEPTION_OR_NMI] = ExceptionExit
EXIT_CLASSES[EXIT_REASON_EXTERNAL_INTERRUPT] = ExternalInterruptExit
EXIT_CLASSES[EXIT_REASON_TRIPLE_FAULT] = TripleFaultExit
EXIT_CLASSES[EXIT_REASON_CPUID] = CpuidExit
EXIT_CLASSES[EXIT_REASON_HLT] = HltExit
EXIT_CLASSES[EXIT_REASON_RDTSC] = RdtscExit
EXIT_CLASSES[EXIT_REASON_RDTSCP] = RdtscExit
EXIT_CLASSES[EXIT_REASON_MOV_DR] = MovDrExit
EXIT_CLASSES[EXIT_REASON_GDTR_IDTR_ACCESS] = DescriptorTableExit
EXIT_CLASSES[EXIT_REASON_LDTR_TR_ACCESS] = DescriptorTableExit
EXIT_CLASSES[EXIT_REASON_MWAIT] = MwaitExit
EXIT_CLASSES[EXIT_REASON_VMCALL] = VmcallExit
for _r in (19, 20, 21, 22, 23, 24, 25, 26, 27, 50, 53):
    EXIT_CLASSES[_r] = VmxInstructionExit
EXIT_CLASSES[EXIT_REASON_CONTROL_REGISTER_ACCESS] = CrAccessExit
EXIT_CLASSES[EXIT_REASON_IO_INSTRUCTION] = IoExit
EXIT_CLASSES[EXIT_REASON_RDMSR] = MsrExit
EXIT_CLASSES[EXIT_REASON_WRMSR] = MsrExit
EXIT_CLASSES[EXIT_REASON_EPT_VIOLATION] = EptViolationExit
EXIT_CLASSES[EXIT_REASON_EPT_MISCONFIGURATION] = EptMisconfigExit


cdef Exit make_exit(Cpu* c):
    """Build the typed exit object from the VMCS exit-information fields."""
    cdef uint32_t raw = <uint32_t>vr(c, VMCS_OFF_EXIT_REASON, 4)
    cdef uint32_t reason = raw & 0xFFFF
    cdef type cls = EXIT_CLASSES[reason & 0x7F]
    cdef Exit e = cls.__new__(cls)
    e.reason = reason
    e.raw_reason = raw
    e.qualification = vr(c, VMCS_OFF_EXIT_QUALIFICATION, 8)
    e.instruction_length = <uint32_t>vr(c, VMCS_OFF_VM_EXIT_INSTRUCTION_LENGTH, 4)
    e.instruction_info = <uint32_t>vr(c, VMCS_OFF_VM_EXIT_INSTRUCTION_INFO, 4)
    e.interruption_info = <uint32_t>vr(c, VMCS_OFF_VM_EXIT_INTERRUPTION_INFO, 4)
    e.interruption_error_code = <uint32_t>vr(c, VMCS_OFF_VM_EXIT_INTERRUPTION_ERROR_CODE, 4)
    e.idt_vectoring_info = <uint32_t>vr(c, VMCS_OFF_IDT_VECTORING_INFO, 4)
    e.idt_vectoring_error_code = <uint32_t>vr(c, VMCS_OFF_IDT_VECTORING_ERROR_CODE, 4)
    e.guest_rip = vr(c, VMCS_OFF_GUEST_RIP, 8)
    e.guest_linear_address = vr(c, VMCS_OFF_GUEST_LINEAR_ADDRESS, 8)
    e.guest_physical_address = vr(c, VMCS_OFF_GUEST_PHYSICAL_ADDRESS, 8)
    e.rax = c.regs[R_AX]
    if reason == EXIT_REASON_CPUID:
        (<CpuidExit>e).leaf = <uint32_t>c.regs[R_AX]
        (<CpuidExit>e).subleaf = <uint32_t>c.regs[R_CX]
    elif reason == EXIT_REASON_RDMSR or reason == EXIT_REASON_WRMSR:
        (<MsrExit>e).index = <uint32_t>c.regs[R_CX]
        (<MsrExit>e)._value = (c.regs[R_AX] & 0xFFFFFFFFULL) | ((c.regs[R_DX] & 0xFFFFFFFFULL) << 32)
    return e


def fabricate_exit(reason, *, qualification=0, instruction_length=0, instruction_info=0,
                   interruption_info=0, interruption_error_code=0, idt_vectoring_info=0,
                   idt_vectoring_error_code=0, guest_rip=0, guest_linear_address=0,
                   guest_physical_address=0, rax=0, rcx=0, rdx=0):
    """Make the exit object a VM exit with these exit-information fields
    would produce, without running a guest: exit handlers are functions of
    (vcpu, exit), and this lets them be tested as such.  ``rax``, ``rcx`` and
    ``rdx`` stand for the guest registers the typed fields read (CPUID leaf
    and subleaf, MSR index and value, OUT value)."""
    cdef uint32_t raw = <uint32_t>int(reason)
    cdef uint32_t basic = raw & 0xFFFF
    cls = EXIT_CLASSES[basic & 0x7F] if basic < 128 else Exit
    cdef Exit e = cls.__new__(cls)
    e.reason = basic
    e.raw_reason = raw
    e.qualification = qualification
    e.instruction_length = instruction_length
    e.instruction_info = instruction_info
    e.interruption_info = interruption_info
    e.interruption_error_code = interruption_error_code
    e.idt_vectoring_info = idt_vectoring_info
    e.idt_vectoring_error_code = idt_vectoring_error_code
    e.guest_rip = guest_rip
    e.guest_linear_address = guest_linear_address
    e.guest_physical_address = guest_physical_address
    e.rax = rax
    if basic == EXIT_REASON_CPUID:
        (<CpuidExit>e).leaf = <uint32_t>(rax & 0xFFFFFFFF)
        (<CpuidExit>e).subleaf = <uint32_t>(rcx & 0xFFFFFFFF)
    elif basic == EXIT_REASON_RDMSR or basic == EXIT_REASON_WRMSR:
        (<MsrExit>e).index = <uint32_t>(rcx & 0xFFFFFFFF)
        (<MsrExit>e)._value = (rax & 0xFFFFFFFF) | ((rdx & 0xFFFFFFFF) << 32)
    return e
