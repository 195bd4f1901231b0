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

__all__ = ["FEATURES", "PRESETS", "DEFAULT_PRESET", "feature_index"]

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
    ("RDPID", 7, 0, ECX, 22, "RDPID"),
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
         "FPU")

PRESETS = {
    # the modeled processor: a recent Intel Core with everything vtx implements
    "default": _BASE,
}

DEFAULT_PRESET = "default"


def feature_index(name):
    """The index of feature ``name`` (its bit in the processor's feature set)."""
    for i, row in enumerate(FEATURES):
        if row[0] == name:
            return i
    raise KeyError(f"unknown CPUID feature {name!r}")
