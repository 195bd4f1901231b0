"""The vCPU's registers as the Python API names them: one table, from which
the generator writes the Cython properties of :class:`vtx.VCpu`
(``vtx/core/regs_gen.pxi``).

Where a register lives between runs follows VT-x: the general registers stay in
the register file (a VM exit does not save them, SDM Vol. 3 27.1), while RSP,
RIP, RFLAGS, CR0, CR3, CR4 and DR7 are read from and written to the guest-state
area of the VMCS, as a hypervisor on real hardware sees them.
"""

GPR64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
GPR32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"] + [f"r{i}d" for i in range(8, 16)]
GPR16 = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"] + [f"r{i}w" for i in range(8, 16)]
GPR8 = ["al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil"] + [f"r{i}b" for i in range(8, 16)]
GPR8H = ["ah", "ch", "dh", "bh"]

#: (name, storage, bits, shift, doc).  storage is ("gpr", n), ("vmcs", "GUEST_X")
#: or ("cpu", "field").
REGISTERS = []
for _i in range(16):
    _where = ("vmcs", "GUEST_RSP") if _i == 4 else ("gpr", _i)
    REGISTERS.append((GPR64[_i], _where, 64, 0, f"{GPR64[_i].upper()}"))
    REGISTERS.append((GPR32[_i], _where, 32, 0, f"bits 31:0 of {GPR64[_i].upper()}; a write zero-extends "
                      f"into {GPR64[_i].upper()}, as a 32-bit register write does (SDM Vol. 1 3.4.1.1)"))
    REGISTERS.append((GPR16[_i], _where, 16, 0, f"bits 15:0 of {GPR64[_i].upper()}"))
    REGISTERS.append((GPR8[_i], _where, 8, 0, f"bits 7:0 of {GPR64[_i].upper()}"))
for _i, _n in enumerate(GPR8H):
    REGISTERS.append((_n, ("gpr", _i), 8, 8, f"bits 15:8 of {GPR64[_i].upper()}"))
REGISTERS += [
    ("rip", ("vmcs", "GUEST_RIP"), 64, 0, "RIP (the VMCS guest RIP field)"),
    ("eip", ("vmcs", "GUEST_RIP"), 32, 0, "bits 31:0 of RIP"),
    ("ip", ("vmcs", "GUEST_RIP"), 16, 0, "bits 15:0 of RIP"),
    ("rflags", ("vmcs", "GUEST_RFLAGS"), 64, 0, "RFLAGS (the VMCS guest RFLAGS field)"),
    ("eflags", ("vmcs", "GUEST_RFLAGS"), 32, 0, "bits 31:0 of RFLAGS"),
    ("flags", ("vmcs", "GUEST_RFLAGS"), 16, 0, "bits 15:0 of RFLAGS"),
    ("cr0", ("vmcs", "GUEST_CR0"), 64, 0, "CR0 (the VMCS guest CR0 field)"),
    ("cr3", ("vmcs", "GUEST_CR3"), 64, 0, "CR3 (the VMCS guest CR3 field)"),
    ("cr4", ("vmcs", "GUEST_CR4"), 64, 0, "CR4 (the VMCS guest CR4 field)"),
    ("dr7", ("vmcs", "GUEST_DR7"), 64, 0, "DR7 (the VMCS guest DR7 field)"),
    ("cr2", ("cpu", "cr2"), 64, 0, "CR2 (not in the VMCS: kept by the processor)"),
    ("cr8", ("cpu", "cr8"), 64, 0, "CR8, the task-priority register"),
    ("dr0", ("cpu", "dr[0]"), 64, 0, "DR0, breakpoint linear address 0 (not in the VMCS)"),
    ("dr1", ("cpu", "dr[1]"), 64, 0, "DR1, breakpoint linear address 1 (not in the VMCS)"),
    ("dr2", ("cpu", "dr[2]"), 64, 0, "DR2, breakpoint linear address 2 (not in the VMCS)"),
    ("dr3", ("cpu", "dr[3]"), 64, 0, "DR3, breakpoint linear address 3 (not in the VMCS)"),
    ("dr6", ("cpu", "dr6"), 64, 0, "DR6, the debug status (not in the VMCS)"),
    ("xcr0", ("cpu", "xcr0"), 64, 0, "XCR0, the XSAVE feature mask (not in the VMCS)"),
    ("xss", ("cpu", "xss"), 64, 0, "IA32_XSS, the supervisor state components of XSAVES/XRSTORS "
     "(not in the VMCS: a hypervisor switches it itself)"),
    ("pasid", ("cpu", "pasid"), 64, 0, "IA32_PASID, the PASID state component (XSS bit 10)"),
    ("mxcsr", ("mxcsr", "fpu.mxcsr"), 32, 0, "MXCSR, the SSE control and status register; "
     "bits 31:16 are reserved (a write that sets one is refused, as LDMXCSR refuses it with #GP)"),
    # The x87 FPU (SDM Vol. 1 8.1; core/insn/x87.pxi).
    ("fcw", ("cpu", "fpu.fcw"), 16, 0, "the x87 control word (FNINIT: 037FH)"),
    ("fsw", ("cpu", "fpu.fsw"), 16, 0, "the x87 status word (TOP in bits 13:11)"),
    ("ftw", ("cpu", "fpu.ftw"), 16, 0, "the full x87 tag word, 2 bits per physical register R0-R7: "
     "00 valid, 01 zero, 10 special, 11 empty"),
]
#: ST(0)-ST(7) in stack order (the physical register TOP + i), each an 80-bit
#: integer: sign bit 79, exponent 78:64, significand 63:0.  Writing one tags
#: that register non-empty (its tag from the value); write ftw to empty it.
REGISTERS += [(f"st{_i}", ("x87", _i), 80, 0, f"ST({_i}), an 80-bit extended-precision value")
              for _i in range(8)]

#: The XMM registers, 128-bit ints (XMM0-XMM7 outside 64-bit mode).
XMM = [f"xmm{i}" for i in range(16)]

SEGMENTS = ["es", "cs", "ss", "ds", "fs", "gs", "ldtr", "tr"]
TABLES = ["gdtr", "idtr"]

ALL_NAMES = [r[0] for r in REGISTERS] + XMM + SEGMENTS + TABLES + ["efer"]


def render_pxi(marker):
    out = [
        f"# {marker}",
        "#",
        "# The register properties of VCpu, from vtx/spec/registers.py.",
        "",
        "cdef class VCpu(VCpuBase):",
        '    """A virtual CPU: registers by name, its VMCS, and the run loop.',
        "",
        "    General registers (rax..r15 and their 32/16/8-bit parts) live in the",
        "    register file; rsp, rip, rflags, cr0, cr3, cr4 and dr7 are the VMCS",
        "    guest-state fields; segment registers are :class:`vtx.Segment` values.",
        "    Writing a 32-bit register (eax, r8d) zero-extends into the 64-bit one,",
        "    as a 32-bit register write on x86 does; writing a 16- or 8-bit register",
        "    (ax, al, ah) changes only those bits.",
        '    """',
        "",
    ]
    for name, (kind, where), bits, shift, doc in REGISTERS:
        mask = (1 << bits) - 1
        if kind == "x87":
            out += ["    @property", f"    def {name}(self):", f'        """{doc} ({bits} bits)."""',
                    f"        return x87_get(self.c, {name!r})", "", f"    @{name}.setter",
                    f"    def {name}(self, value):", f"        x87_set(self.c, {name!r}, value)", ""]
            continue
        if kind == "gpr":
            get = f"self.c.regs[{where}]"
        elif kind == "vmcs":
            get = f"self._vmcs_u64(VMCS_OFF_{where})"
        else:
            get = f"self.c.{where}"
        if bits == 64:
            rd = get
            wr = f"_fit(value, 64, {name!r})"
        elif name in GPR32:
            rd = f"{get} & 0x{mask:X}"
            wr = f"_fit(value, 32, {name!r})"
        else:
            rd = f"({get} >> {shift}) & 0x{mask:X}" if shift else f"{get} & 0x{mask:X}"
            wr = (f"({get} & ~(<uint64_t>0x{mask << shift:X})) | "
                  f"(_fit(value, {bits}, {name!r}) << {shift})" if shift else
                  f"({get} & ~(<uint64_t>0x{mask:X})) | _fit(value, {bits}, {name!r})")
        out.append("    @property")
        out.append(f"    def {name}(self):")
        out.append(f'        """{doc} ({bits} bits)."""')
        out.append(f"        return {rd}")
        out.append("")
        out.append(f"    @{name}.setter")
        out.append(f"    def {name}(self, value):")
        if kind == "gpr":
            out.append(f"        self.c.regs[{where}] = {wr}")
        elif kind == "mxcsr":
            out.append(f"        cdef uint64_t v = _fit(value, 32, {name!r})")
            out.append("        if v & ~0xFFFFULL:")
            out.append(f"            raise ValueError(f\"{{value:#x}} sets a reserved bit of {name.upper()} (31:16)\")")
            out.append(f"        self.c.{where} = <uint32_t>v")
        elif kind == "vmcs":
            out.append(f"        self._vmcs_set_u64(VMCS_OFF_{where}, {wr})")
        else:
            out.append(f"        self.c.{where} = {wr}")
        out.append("")
    for i, name in enumerate(XMM):
        out += [
            "    @property",
            f"    def {name}(self):",
            f'        """{name.upper()} as a 128-bit int (bits 63:0 and 127:64 of the register)."""',
            f"        return self.c.fpu.xmm[{i}][0] | (<object>self.c.fpu.xmm[{i}][1] << 64)",
            "",
            f"    @{name}.setter",
            f"    def {name}(self, value):",
            f"        self._set_xmm({i}, value)",
            "",
        ]
    for i, name in enumerate(SEGMENTS):
        out += [
            "    @property",
            f"    def {name}(self):",
            f'        """{name.upper()}: a :class:`vtx.Segment` (selector, base, limit, access rights)."""',
            f"        return self._get_segment({i})",
            "",
            f"    @{name}.setter",
            f"    def {name}(self, value):",
            f"        self._set_segment({i}, value, {name!r})",
            "",
        ]
    for i, name in enumerate(TABLES):
        out += [
            "    @property",
            f"    def {name}(self):",
            f'        """{name.upper()}: a :class:`vtx.DescriptorTable` (base, limit)."""',
            f"        return self._get_table({i})",
            "",
            f"    @{name}.setter",
            f"    def {name}(self, value):",
            f"        self._set_table({i}, value, {name!r})",
            "",
        ]
    out.append("")
    return "\n".join(out)
