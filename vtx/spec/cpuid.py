"""CPUID feature flags the model knows (Intel SDM Vol. 2A, CPUID, Tables 3-8 to
3-11 and the leaf 07H/80000001H descriptions).

Each row is ``(name, leaf, subleaf, register, bit, description)``.  The row's
position is the feature's index in the processor's feature set (the C core
spells it ``FEAT_<name>`` and tests it with ``cpu_has(c, FEAT_<name>)``); the
CPUID instruction reports bit ``bit`` of ``register`` for leaf/subleaf only
while the feature is in the set.  An instruction whose feature is not in the
set behaves as on a processor without it (#UD, or its older meaning, e.g.
F3 0F BC is BSF without BMI1): "whatever CPUID advertises works; nothing works
that it does not advertise".

``PRESETS`` name feature sets; ``DEFAULT_PRESET`` is the one a new processor
gets.  A feature belongs in a preset only once the model implements it.
"""

__all__ = ["FEATURES", "PRESETS", "DEFAULT_PRESET", "IDENTITIES", "feature_index", "signature"]

EAX, EBX, ECX, EDX = "eax", "ebx", "ecx", "edx"

FEATURES = (
    # CPUID.01H:EDX
    ("FPU", 1, 0, EDX, 0, "x87 FPU on chip"),
    ("VME", 1, 0, EDX, 1, "Virtual-8086 mode enhancements"),
    ("DE", 1, 0, EDX, 2, "Debugging extensions (CR4.DE, I/O breakpoints)"),
    ("PSE", 1, 0, EDX, 3, "Page size extension (4 MiB pages)"),
    ("TSC", 1, 0, EDX, 4, "Time-stamp counter, RDTSC"),
    ("MSR", 1, 0, EDX, 5, "RDMSR and WRMSR"),
    ("PAE", 1, 0, EDX, 6, "Physical address extension"),
    ("MCE", 1, 0, EDX, 7, "Machine-check exception"),
    ("CX8", 1, 0, EDX, 8, "CMPXCHG8B"),
    ("APIC", 1, 0, EDX, 9, "APIC on chip"),
    ("SEP", 1, 0, EDX, 11, "SYSENTER and SYSEXIT"),
    ("MTRR", 1, 0, EDX, 12, "Memory type range registers"),
    ("PGE", 1, 0, EDX, 13, "Global pages (CR4.PGE)"),
    ("MCA", 1, 0, EDX, 14, "Machine-check architecture"),
    ("CMOV", 1, 0, EDX, 15, "CMOVcc (and FCMOVcc with FPU)"),
    ("PAT", 1, 0, EDX, 16, "Page attribute table"),
    ("PSE36", 1, 0, EDX, 17, "36-bit page size extension"),
    ("CLFSH", 1, 0, EDX, 19, "CLFLUSH"),
    ("MMX", 1, 0, EDX, 23, "MMX technology"),
    ("FXSR", 1, 0, EDX, 24, "FXSAVE and FXRSTOR, CR4.OSFXSR"),
    ("SSE", 1, 0, EDX, 25, "SSE"),
    ("SSE2", 1, 0, EDX, 26, "SSE2"),
    # CPUID.01H:ECX
    ("SSE3", 1, 0, ECX, 0, "SSE3"),
    ("PCLMULQDQ", 1, 0, ECX, 1, "PCLMULQDQ"),
    ("MONITOR", 1, 0, ECX, 3, "MONITOR and MWAIT (reported while IA32_MISC_ENABLE[18] is set)"),
    ("VMX", 1, 0, ECX, 5, "Virtual machine extensions"),
    ("SSSE3", 1, 0, ECX, 9, "Supplemental SSE3"),
    ("CX16", 1, 0, ECX, 13, "CMPXCHG16B"),
    ("PCID", 1, 0, ECX, 17, "Process-context identifiers (CR4.PCIDE)"),
    ("SSE4_1", 1, 0, ECX, 19, "SSE4.1"),
    ("SSE4_2", 1, 0, ECX, 20, "SSE4.2 (CRC32, PCMPxSTRx, PCMPGTQ)"),
    ("X2APIC", 1, 0, ECX, 21, "x2APIC"),
    ("MOVBE", 1, 0, ECX, 22, "MOVBE"),
    ("POPCNT", 1, 0, ECX, 23, "POPCNT"),
    ("TSC_DEADLINE", 1, 0, ECX, 24, "APIC timer TSC-deadline mode"),
    ("XSAVE", 1, 0, ECX, 26, "XSAVE/XRSTOR, XSETBV/XGETBV, XCR0"),
    ("OSXSAVE", 1, 0, ECX, 27, "CR4.OSXSAVE is set (reported from CR4, not from the set)"),
    ("RDRAND", 1, 0, ECX, 30, "RDRAND"),
    # CPUID.(EAX=07H,ECX=0):EBX/ECX/EDX
    ("FSGSBASE", 7, 0, EBX, 0, "RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE (CR4.FSGSBASE)"),
    ("BMI1", 7, 0, EBX, 3, "BMI1 (ANDN, BEXTR, BLSI, BLSMSK, BLSR, TZCNT)"),
    ("SMEP", 7, 0, EBX, 7, "Supervisor-mode execution prevention"),
    ("BMI2", 7, 0, EBX, 8, "BMI2 (BZHI, MULX, PDEP, PEXT, RORX, SARX, SHLX, SHRX)"),
    ("ERMS", 7, 0, EBX, 9, "Enhanced REP MOVSB/STOSB"),
    ("INVPCID", 7, 0, EBX, 10, "INVPCID"),
    ("RDSEED", 7, 0, EBX, 18, "RDSEED"),
    ("ADX", 7, 0, EBX, 19, "ADCX and ADOX"),
    ("SMAP", 7, 0, EBX, 20, "Supervisor-mode access prevention, STAC and CLAC"),
    ("CLFLUSHOPT", 7, 0, EBX, 23, "CLFLUSHOPT"),
    ("UMIP", 7, 0, ECX, 2, "User-mode instruction prevention (CR4.UMIP)"),
    ("WAITPKG", 7, 0, ECX, 5, "UMONITOR, UMWAIT, TPAUSE and IA32_UMWAIT_CONTROL"),
    ("RDPID", 7, 0, ECX, 22, "RDPID"),
    # CPUID.(EAX=0DH,ECX=1):EAX
    ("XSAVEOPT", 0xD, 1, EAX, 0, "XSAVEOPT"),
    ("XSAVEC", 0xD, 1, EAX, 1, "XSAVEC and the compacted form of XRSTOR"),
    ("XSAVES", 0xD, 1, EAX, 3, "XSAVES, XRSTORS and the IA32_XSS MSR"),
    # CPUID.(EAX=0DH,ECX=1):ECX, the IA32_XSS bits (supervisor state components)
    ("XSS_PASID", 0xD, 1, ECX, 10, "IA32_XSS[10]: the PASID state component (the IA32_PASID MSR)"),
    # CPUID.80000001H:ECX/EDX
    ("LAHF_LM", 0x80000001, 0, ECX, 0, "LAHF and SAHF in 64-bit mode"),
    ("ABM", 0x80000001, 0, ECX, 5, "LZCNT"),
    ("PREFETCHW", 0x80000001, 0, ECX, 8, "PREFETCHW"),
    ("SYSCALL", 0x80000001, 0, EDX, 11, "SYSCALL and SYSRET (in 64-bit mode on Intel)"),
    ("NX", 0x80000001, 0, EDX, 20, "Execute-disable bit (EFER.NXE)"),
    ("PDPE1GB", 0x80000001, 0, EDX, 26, "1 GiB pages"),
    ("RDTSCP", 0x80000001, 0, EDX, 27, "RDTSCP and IA32_TSC_AUX"),
    ("LM", 0x80000001, 0, EDX, 29, "Intel 64 architecture (long mode)"),
)

# What the model implements today.  The feature helpers of issue 8 add the
# names of what they implement here (and in the narrower presets).
_BASE = ("DE", "PSE", "TSC", "MSR", "PAE", "VMX", "MONITOR", "XSAVE", "OSXSAVE", "INVPCID",
         "LAHF_LM", "NX", "RDTSCP", "LM", "CMOV", "RDRAND", "RDSEED", "SMEP",
         "SEP", "SYSCALL", "UMIP",
         "PGE", "PSE36", "PAT", "PDPE1GB", "SMAP", "PCID",
         "CX8", "CX16", "POPCNT", "ABM", "MOVBE", "ADX", "RDPID",
         "MMX", "SSSE3", "SSE4_1", "SSE4_2", "PCLMULQDQ",
         "FXSR", "SSE", "SSE2", "SSE3", "CLFSH", "PREFETCHW", "FSGSBASE", "CLFLUSHOPT",
         "XSAVEOPT", "XSAVEC", "XSAVES", "XSS_PASID", "WAITPKG",
         "FPU")

# The CPUs the presets stand for, with every feature they have (their
# CPUID.01H/07H/80000001H bits among FEATURES); a preset keeps those the
# model implements (_BASE).
_CORE2 = ("FPU", "VME", "DE", "PSE", "TSC", "MSR", "PAE", "MCE", "CX8", "APIC", "SEP", "MTRR", "PGE",
          "MCA", "CMOV", "PAT", "PSE36", "CLFSH", "MMX", "FXSR", "SSE", "SSE2",
          "SSE3", "MONITOR", "VMX", "SSSE3", "CX16", "SSE4_1", "XSAVE", "OSXSAVE",
          "LAHF_LM", "SYSCALL", "NX", "LM")
_SKYLAKE = _CORE2 + ("PCLMULQDQ", "PCID", "SSE4_2", "X2APIC", "MOVBE", "POPCNT", "TSC_DEADLINE", "RDRAND",
                     "FSGSBASE", "BMI1", "SMEP", "BMI2", "ERMS", "INVPCID", "RDSEED", "ADX", "SMAP",
                     "CLFLUSHOPT", "ABM", "PREFETCHW", "PDPE1GB", "RDTSCP", "XSAVEOPT", "XSAVEC", "XSAVES")

PRESETS = {
    # the modeled processor: a recent Intel Core with everything vtx implements
    "default": _BASE,
    # a Skylake desktop part (Core i7-6700K, 2015): what it has of what vtx implements
    "skylake": tuple(f for f in _SKYLAKE if f in _BASE),
    # a Penryn Core 2 (Core 2 Duo E8400, 2008): SSE4.1 but no SSE4.2, POPCNT,
    # RDTSCP, PCID, 1 GiB pages, SMEP or SMAP
    "core2": tuple(f for f in _CORE2 if f in _BASE),
}

DEFAULT_PRESET = "default"

#: What the features leave out of CPUID, per preset: the identity (vendor,
#: family/model/stepping of CPUID.01H:EAX, brand string of leaves
#: 80000002H-80000004H), the highest basic leaf, and the caches of leaf 04H
#: as ``(level, type, size in KiB, ways)`` with 64-byte lines (type 1 data,
#: 2 instruction, 3 unified; SDM Vol. 2A CPUID, Table 3-8, leaf 04H).  Every
#: preset is one core with one thread (leaves 01H:EBX, 04H, 0BH).
IDENTITIES = {
    "default": dict(vendor="GenuineIntel", family=6, model=0x9E, stepping=0xA, max_leaf=0xD,
                    brand="Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz",
                    caches=((1, 1, 32, 8), (1, 2, 32, 8), (2, 3, 256, 4), (3, 3, 12288, 16))),
    "skylake": dict(vendor="GenuineIntel", family=6, model=0x5E, stepping=3, max_leaf=0xD,
                    brand="Intel(R) Core(TM) i7-6700K CPU @ 4.00GHz",
                    caches=((1, 1, 32, 8), (1, 2, 32, 8), (2, 3, 256, 4), (3, 3, 8192, 16))),
    "core2": dict(vendor="GenuineIntel", family=6, model=0x17, stepping=0xA, max_leaf=0xD,
                  brand="Intel(R) Core(TM)2 Duo CPU     E8400  @ 3.00GHz",
                  caches=((1, 1, 32, 8), (1, 2, 32, 8), (2, 3, 6144, 24))),
}


def signature(family, model, stepping):
    """CPUID.01H:EAX for a family, model and stepping (SDM Vol. 2A CPUID,
    Figure 3-6): family above 0FH goes in the extended family field (27:20)
    with 0FH in bits 11:8; the model's high nibble goes in bits 19:16 for
    families 06H and 0FH."""
    if not (0 <= family <= 0xFF + 0xF and 0 <= model <= 0xFF and 0 <= stepping <= 0xF):
        raise ValueError(f"family {family:#x}, model {model:#x}, stepping {stepping:#x} out of range")
    if family >= 0xF:
        fam, ext_fam = 0xF, family - 0xF
    else:
        fam, ext_fam = family, 0
    if model > 0xF and family not in (6, 0xF) and family < 0xF:
        raise ValueError(f"model {model:#x} needs family 06H or 0FH and above")
    return stepping | ((model & 0xF) << 4) | (fam << 8) | ((model >> 4) << 16) | (ext_fam << 20)


def feature_index(name):
    """The index of feature ``name`` (its bit in the processor's feature set)."""
    for i, row in enumerate(FEATURES):
        if row[0] == name:
            return i
    raise KeyError(f"unknown CPUID feature {name!r}")
