"""The CPU model (vtx/cpu_model.py, vtx/spec/cpuid.py): what CPUID reports
for each preset and with user overrides, that the processor does exactly
what CPUID advertises (a feature removed makes its instructions #UD and its
CR4 bit reserved), and that IA32_VMX_CR4_FIXED1 follows the model."""

import pytest

import vtx
from vtx import CpuModel
from vtx.spec import cpuid as spec
from vtx.spec.capabilities import CR4_BITS, cr4_fixed1

IMPLEMENTED = frozenset(spec.PRESETS["default"])


def leaf(model, n, sub=0):
    vm = vtx.VM(memory=1 << 20, cpu=model)
    return vm.add_vcpu().model_cpuid(n, sub)


def regs_str(*regs):
    return b"".join(r.to_bytes(4, "little") for r in regs).decode()


def has_bit(model, name):
    row = next(r for r in spec.FEATURES if r[0] == name)
    _, lf, sub, reg, bit, _ = row
    out = leaf(model, lf, sub)
    return bool((out[("eax", "ebx", "ecx", "edx").index(reg)] >> bit) & 1)


# --- identity -------------------------------------------------------------------

@pytest.mark.parametrize("preset,sig,brand", [
    ("default", 0x000906EA, "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"),
    ("skylake", 0x000506E3, "Intel(R) Core(TM) i7-6700K CPU @ 4.00GHz"),
    ("core2", 0x0001067A, "Intel(R) Core(TM)2 Duo CPU     E8400  @ 3.00GHz"),
])
def test_identity_leaves(preset, sig, brand):
    eax, ebx, ecx, edx = leaf(preset, 0)
    assert eax == 0xD
    assert regs_str(ebx, edx, ecx) == "GenuineIntel"
    eax, ebx, ecx, edx = leaf(preset, 1)
    assert eax == sig
    # EBX: brand index 0, CLFLUSH line 8 * 8 bytes, 1 logical processor, APIC ID 0
    assert ebx == 0x00010800
    assert not edx & (1 << 28)          # no HTT: one thread
    assert leaf(preset, 0x80000000)[0] == 0x80000008
    text = regs_str(*leaf(preset, 0x80000002), *leaf(preset, 0x80000003), *leaf(preset, 0x80000004))
    assert text == brand.ljust(48, "\0")
    assert leaf(preset, 0x80000008) == (0x3027, 0, 0, 0)       # 39-bit physical, 48-bit linear
    assert CpuModel(preset).signature == sig


def test_signature_fields():
    # SDM Vol. 2A CPUID Figure 3-6: family 0FH and above use the extended family
    assert spec.signature(6, 0x9E, 0xA) == 0x906EA
    assert spec.signature(0xF, 0x2, 0x9) == 0xF29
    assert spec.signature(0x10, 0x2, 0x0) == 0x100F20
    with pytest.raises(ValueError):
        spec.signature(5, 0x1F, 0)


def decode_leaf4(eax, ebx, ecx, edx):
    return dict(type=eax & 0x1F, level=(eax >> 5) & 7, self_init=(eax >> 8) & 1,
                sharing=((eax >> 14) & 0xFFF) + 1, cores=((eax >> 26) & 0x3F) + 1,
                line=(ebx & 0xFFF) + 1, partitions=((ebx >> 12) & 0x3FF) + 1, ways=((ebx >> 22) & 0x3FF) + 1,
                sets=ecx + 1, inclusive=(edx >> 1) & 1)


@pytest.mark.parametrize("preset", ["default", "skylake", "core2"])
def test_cache_leaf_4(preset):
    caches = spec.IDENTITIES[preset]["caches"]
    for i, (level, typ, kib, ways) in enumerate(caches):
        d = decode_leaf4(*leaf(preset, 4, i))
        assert (d["type"], d["level"], d["ways"], d["line"], d["partitions"]) == (typ, level, ways, 64, 1)
        assert d["ways"] * d["partitions"] * d["line"] * d["sets"] == kib * 1024
        assert d["self_init"] == 1 and d["sharing"] == 1 and d["cores"] == 1
    assert leaf(preset, 4, len(caches))[0] & 0x1F == 0      # no more caches
    assert leaf(preset, 2) == (0x0000FF01, 0, 0, 0)          # "use leaf 04H"


def test_leaf_80000006():
    # L2: 64-byte lines; 256 KiB 4-way (encoding 04H); Core 2: 6 MiB, 24-way (reported 16-way, 08H)
    assert leaf("skylake", 0x80000006) == (0, 0, (256 << 16) | (4 << 12) | 64, 0)
    assert leaf("core2", 0x80000006) == (0, 0, (6144 << 16) | (8 << 12) | 64, 0)


def test_topology_leaf_0b():
    # SMT level: 1 thread; core level: 1 core; then an invalid level (SDM Vol. 2A CPUID 0BH)
    assert leaf("default", 0xB, 0) == (0, 1, 0x100, 0)
    assert leaf("default", 0xB, 1) == (0, 1, 0x201, 0)
    assert leaf("default", 0xB, 2) == (0, 0, 2, 0)
    assert leaf("default", 0xB, 7) == (0, 0, 7, 0)


def test_leaves_above_the_maximum_answer_as_the_highest_basic_leaf():
    top = leaf("default", 0xD)
    assert leaf("default", 0x20) == top
    assert leaf("default", 0x40000000) == top
    assert leaf("default", 0x80000009) == top
    assert leaf("default", 0x3) == (0, 0, 0, 0)             # within range, nothing to report


# --- features -----------------------------------------------------------------

def test_presets_hold_only_implemented_features():
    for name, feats in spec.PRESETS.items():
        assert set(feats) <= IMPLEMENTED, name


def test_core2_lacks_what_penryn_lacks():
    core2 = CpuModel("core2").features
    for f in ("SSE4_2", "POPCNT", "RDTSCP", "PCID", "PDPE1GB", "SMEP", "SMAP", "INVPCID", "RDRAND", "FSGSBASE"):
        assert f not in core2, f
        assert not has_bit("core2", f), f
    for f in ("PAE", "NX", "LM", "PGE", "PSE36", "PAT", "CMOV", "VMX"):
        assert f in core2 and has_bit("core2", f), f


@pytest.mark.parametrize("name", sorted(IMPLEMENTED - {"OSXSAVE", "MONITOR"}))
def test_default_advertises_each_implemented_feature(name):
    assert has_bit("default", name)


def test_skylake_and_default():
    sky = CpuModel("skylake").features
    assert sky <= IMPLEMENTED
    assert {"PCID", "INVPCID", "SMEP", "SMAP", "PDPE1GB", "RDTSCP", "RDRAND", "RDSEED"} <= sky


def test_overrides():
    m = CpuModel("skylake", remove={"SMAP", "PCID"})
    assert "SMAP" not in m.features and "PCID" not in m.features
    assert not has_bit(m, "SMAP") and not has_bit(m, "PCID")
    assert has_bit(m, "SMEP")
    m2 = CpuModel("core2", add={"PCID", "SMEP"})
    assert has_bit(m2, "PCID") and has_bit(m2, "SMEP")
    assert repr(m) == "vtx.CpuModel('skylake', remove=['PCID', 'SMAP'])"
    assert CpuModel("core2") == CpuModel("core2") != CpuModel("default")
    # a model derived from a model
    assert CpuModel(m, add={"PCID"}).features == m.features | {"PCID"}
    # identity overrides
    m3 = CpuModel("default", family=0xF, model=0x6, stepping=5, brand="vtx test CPU", vendor="GenuineIotel")
    assert leaf(m3, 1)[0] == 0xF65
    assert regs_str(*leaf(m3, 0x80000002))[:12] == "vtx test CPU"
    eax, ebx, ecx, edx = leaf(m3, 0)
    assert regs_str(ebx, edx, ecx) == "GenuineIotel"
    # removing XSAVE takes OSXSAVE along
    assert "OSXSAVE" not in CpuModel("default", remove={"XSAVE"}).features


@pytest.mark.parametrize("kwargs,error", [
    (dict(preset="pentium"), vtx.ArgumentError),
    (dict(add={"AVX512"}), vtx.ArgumentError),
    # a feature the model knows but does not implement
    (dict(add={next(f[0] for f in spec.FEATURES if f[0] not in IMPLEMENTED and f[0] != "OSXSAVE")}),
     vtx.ArgumentError),
    (dict(add={"PCID"}, remove={"PCID"}), vtx.ArgumentError),
    (dict(add=[3]), TypeError),
    (dict(brand="x" * 48), vtx.ArgumentError),
    (dict(vendor="Intel"), vtx.ArgumentError),
    (dict(family="6"), TypeError),
    (dict(stepping=16), vtx.ArgumentError),
])
def test_bad_models(kwargs, error):
    preset = kwargs.pop("preset", "default")
    with pytest.raises(error):
        CpuModel(preset, **kwargs)


def test_changing_the_model_of_a_machine():
    vm = vtx.VM(memory=1 << 20)
    v = vm.add_vcpu()
    assert vm.cpu_model == CpuModel()
    vm.cpu_model = "core2"
    assert vm.cpu_model == CpuModel("core2")
    assert v.model_cpuid(1)[0] == 0x1067A
    with pytest.raises(TypeError):
        vm.cpu_model = 3
    bm = vtx.BareMetal(memory=1 << 20, cpu=CpuModel("skylake"))
    assert bm.cpu_model.preset == "skylake"


# --- nothing works that CPUID does not advertise --------------------------------

def run64(src, cpu):
    vm = vtx.VM(memory=1 << 20, cpu=cpu)
    v = vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    vm.write(0x1000, vtx.asm(src + "\nhlt\n", bits=64))
    v.vmwrite(vtx.VmcsField.SECONDARY_PROC_BASED_CONTROLS,
              v.vmread(vtx.VmcsField.SECONDARY_PROC_BASED_CONTROLS) | vtx.ProcBased2.ENABLE_RDTSCP
              | vtx.ProcBased2.ENABLE_INVPCID | vtx.ProcBased2.ENABLE_XSAVES_XRSTORS
              | vtx.ProcBased2.ENABLE_USER_WAIT_AND_PAUSE)

    @vm.default
    def stop(vcpu, exit):
        return vtx.STOP
    return vm.run(max_instructions=100).exit


def outcome(ex):
    if ex.reason == vtx.ExitReason.EXCEPTION_OR_NMI:
        return ex.vector
    return vtx.ExitReason(ex.reason).name


@pytest.mark.parametrize("feature,src,absent", [
    ("RDTSCP", "rdtscp", 6),
    ("RDRAND", "rdrand eax", 6),
    ("INVPCID", "sub rsp, 16\nmov qword ptr [rsp], 0\nmov qword ptr [rsp+8], 0\nmov eax, 2\ninvpcid rax, [rsp]", 6),
    ("SMAP", "stac", 6),
    ("PCID", "mov rax, cr4\nbts rax, 17\nmov cr4, rax", 13),
    ("SMEP", "mov rax, cr4\nbts rax, 20\nmov cr4, rax", 13),
    ("SMAP", "mov rax, cr4\nbts rax, 21\nmov cr4, rax", 13),
    ("PGE", "mov rax, cr4\nbts rax, 7\nmov cr4, rax", 13),
    ("XSAVES", "mov rax, cr4\nbts rax, 18\nmov cr4, rax\nsub rsp, 1024\nand rsp, -64\nxor eax, eax\n"
     "xor edx, edx\nxsaves [rsp]", 6),
    ("WAITPKG", "xor ecx, ecx\ntpause ecx", 6),
])
def test_a_removed_feature_does_not_work(feature, src, absent):
    assert outcome(run64(src, CpuModel("default"))) == "HLT"
    assert outcome(run64(src, CpuModel("default", remove={feature}))) == absent


def test_1g_pages_follow_the_model():
    """The long-mode tables setup_long_mode builds use 2 MiB pages; a 1 GiB
    PDPTE faults as reserved without PDPE1GB (tests/test_mmu.py has more)."""
    assert "PDPE1GB" in CpuModel("skylake").features and "PDPE1GB" not in CpuModel("core2").features


@pytest.mark.parametrize("preset", ["default", "skylake", "core2"])
def test_vmx_cr4_fixed1_follows_the_model(preset):
    bm = vtx.BareMetal(memory=1 << 20, cpu=preset)
    fixed1 = bm.cpu.rdmsr(0x489)
    assert fixed1 == cr4_fixed1(CpuModel(preset).features) == bm.cpu_model.cr4_fixed1
    feats = CpuModel(preset).features
    for bit, feature in (("PCIDE", "PCID"), ("SMEP", "SMEP"), ("SMAP", "SMAP"), ("PGE", "PGE"),
                         ("OSFXSR", "FXSR"), ("OSXMMEXCPT", "SSE"), ("UMIP", "UMIP"), ("FSGSBASE", "FSGSBASE"),
                         ("OSXSAVE", "XSAVE"), ("VMXE", "VMX"), ("PAE", "PAE"), ("PSE", "PSE")):
        assert bool(fixed1 & (1 << CR4_BITS[bit])) == (feature in feats), bit
    assert fixed1 & (1 << CR4_BITS["PCE"])                  # no feature flag: always there
    assert not fixed1 & (1 << CR4_BITS["LA57"]) and not fixed1 & (1 << CR4_BITS["PKE"])
    assert bm.cpu.rdmsr(0x488) == 1 << 13                   # CR4_FIXED0: VMXE


def test_a_hosted_guest_can_be_shown_no_vmx():
    """A model without VMX hides it from the guest's CPUID and makes CR4.VMXE
    reserved outside VMX operation, but the processor that runs a hosted
    guest is in VMX operation: its CR4.VMXE (the host's, behind the CR4
    guest/host mask) still passes the entry checks, and the guest's own MOV
    to CR4 works."""
    model = CpuModel("default", remove={"VMX"})
    assert not has_bit(model, "VMX")
    assert not model.cr4_fixed1 & (1 << CR4_BITS["VMXE"])
    ex = run64("mov rax, cr4\nbts rax, 7\nmov cr4, rax\nmov rbx, cr4", model)
    assert outcome(ex) == "HLT"
    bm = vtx.BareMetal(memory=1 << 20, cpu=model)
    assert bm.cpu.rdmsr(0x489) & (1 << CR4_BITS["VMXE"])   # IA32_VMX_CR4_FIXED1 of a VMX processor
