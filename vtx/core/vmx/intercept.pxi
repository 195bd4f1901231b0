# The intercept module (docs/architecture.rst, "The VMX layer"; decision 5):
# the one place that stages a VM exit and formats its exit information.
# Instruction handlers and event delivery ask here, in one call, and never
# build exit encodings themselves; the run loop then performs the exit
# (core/vmx/exit.pxi).
#
# SDM references are to the pinned edition (Intel SDM, order number
# 325462-080US, June 2023): Vol. 3C chapter 28 "VM Exits" for the exit
# information, 26 for what causes exits in VMX non-root operation.


cdef inline int vmexit_event(Cpu* c, uint32_t reason, uint64_t qual) noexcept nogil:
    """Stage a VM exit with basic reason `reason` and exit qualification
    `qual`; every other exit-information field starts at 0.  Returns
    RC_VMEXIT for the caller to pass up: the run loop performs it."""
    c.vmx.x_reason = reason
    c.vmx.x_qual = qual
    c.vmx.x_len = 0
    c.vmx.x_info = 0
    c.vmx.x_intr_info = 0
    c.vmx.x_intr_error = 0
    c.vmx.x_gla_valid = 0
    return RC_VMEXIT


cdef inline int insn_exit(Cpu* c, Insn* d, uint32_t reason, uint64_t qual) noexcept nogil:
    """Stage a VM exit caused by executing d: the VM-exit instruction length
    is valid for it (SDM 28.2.5)."""
    vmexit_event(c, reason, qual)
    c.vmx.x_len = d.len
    return RC_VMEXIT


cdef inline int insn_exit_info(Cpu* c, Insn* d, uint32_t reason, uint64_t qual, uint32_t info) noexcept nogil:
    """insn_exit with the VM-exit instruction-information field (SDM 28.2.5,
    Tables 28-9 to 28-15)."""
    vmexit_event(c, reason, qual)
    c.vmx.x_len = d.len
    c.vmx.x_info = info
    return RC_VMEXIT


# --- the VM-exit instruction-information field (SDM 28.2.5) -----------------
# The formats for INVEPT/INVPCID/INVVPID, LIDT/LGDT/SIDT/SGDT,
# LLDT/LTR/SLDT/STR, VMCLEAR/VMPTRLD/VMPTRST/VMXON/XSAVES/XRSTORS,
# VMREAD/VMWRITE and RDRAND/RDSEED share the description of the operand:
#   1:0 scaling, 9:7 address size (0 16-bit, 1 32-bit, 2 64-bit),
#   10 register (1) or memory (0) operand, 17:15 segment register,
#   21:18 index register, 22 index invalid, 26:23 base register,
#   27 base invalid;
# with a register operand only bits 6:3 (reg1) and 10 describe it.  Fields
# an instruction's table leaves undefined are written 0.

cdef enum:
    II_REG_OPERAND = 1 << 10


cdef inline uint32_t insn_info_addr_size(Insn* d) noexcept nogil:
    return <uint32_t>(0 if d.asz == 2 else (1 if d.asz == 4 else 2)) << 7


cdef inline uint32_t insn_info_operand(Insn* d) noexcept nogil:
    """Bits 1:0, 9:7, 10, 17:15 and 21:18, 22, 26:23, 27 for the ModRM r/m
    operand of d; a register operand puts its number in bits 6:3."""
    cdef uint32_t v
    if d.mod == 3:
        return II_REG_OPERAND | ((<uint32_t>d.rm & 15) << 3) | insn_info_addr_size(d)
    v = (<uint32_t>d.scale & 3) | insn_info_addr_size(d) | ((<uint32_t>d.seg & 7) << 15)
    if d.index == 0xFF:
        v |= 1 << 22
    else:
        v |= (<uint32_t>d.index & 15) << 18
    if d.base == 0xFF or (d.flags & INSN_RIPREL):
        v |= 1 << 27
    else:
        v |= (<uint32_t>d.base & 15) << 23
    return v


cdef inline uint64_t insn_qual_disp(Cpu* c, Insn* d) noexcept nogil:
    """The exit qualification of the instructions with a memory operand
    whose exit reports it through the instruction-information field: the
    displacement, sign-extended to 64 bits (SDM 28.2.1), 0 for a register
    operand.  RIP-relative addressing is the exception the SDM makes: the
    qualification is the displacement plus the RIP of the next instruction."""
    if d.mod == 3:
        return 0
    if d.flags & INSN_RIPREL:
        return <uint64_t>d.disp + c.next_rip
    return <uint64_t>d.disp


# --- instruction identities and formats of SDM 28.2.5 ------------------------

cdef enum:
    # Table 28-10 (LIDT, LGDT, SIDT, SGDT), bits 29:28
    II_SGDT = 0
    II_SIDT = 1
    II_LGDT = 2
    II_LIDT = 3
    # Table 28-11 (LLDT, LTR, SLDT, STR), bits 29:28
    II_SLDT = 0
    II_STR = 1
    II_LLDT = 2
    II_LTR = 3


cdef inline int desc_table_exit(Cpu* c, Insn* d, int ident) noexcept nogil:
    """Stage the exit of LGDT, LIDT, SGDT or SIDT under "descriptor-table
    exiting" (reason 46, SDM 26.1.3).  Instruction information as Table
    28-10: the memory operand's description (bit 10 is 0: these instructions
    take only memory), operand size in bit 11 (0 16-bit, 1 32-bit; the SDM
    leaves it undefined for exits from 64-bit mode, where the model writes 0)
    and the identity in bits 29:28.  Qualification: the displacement."""
    cdef uint32_t info = insn_info_operand(d) | (<uint32_t>ident << 28)
    if not c.long64 and d.osz != 2:
        info |= 1 << 11
    return insn_exit_info(c, d, EXIT_REASON_GDTR_IDTR_ACCESS, insn_qual_disp(c, d), info)


cdef inline int ldtr_tr_exit(Cpu* c, Insn* d, int ident) noexcept nogil:
    """Stage the exit of LLDT, LTR, SLDT or STR under "descriptor-table
    exiting" (reason 47, SDM 26.1.3).  Instruction information as Table
    28-11: the r/m operand (register number in bits 6:3 and bit 10 set for a
    register) and the identity in bits 29:28.  Qualification: the
    displacement (0 for a register operand)."""
    return insn_exit_info(c, d, EXIT_REASON_LDTR_TR_ACCESS, insn_qual_disp(c, d),
                          insn_info_operand(d) | (<uint32_t>ident << 28))


cdef inline int invpcid_exit(Cpu* c, Insn* d) noexcept nogil:
    """Stage the exit of INVPCID (reason 58).  Instruction information as
    Table 28-9 (INVEPT, INVPCID, INVVPID): the memory operand and reg2, the
    register operand (the INVPCID type), in bits 31:28.  Qualification: the
    displacement."""
    return insn_exit_info(c, d, EXIT_REASON_INVPCID, insn_qual_disp(c, d),
                          insn_info_operand(d) | ((<uint32_t>d.reg & 15) << 28))
