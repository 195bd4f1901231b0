"""C guests compiled by the system gcc (tests/guests/, built by
tests/guests/build.py) running on vtx: 32-bit builds in protected mode,
64-bit builds in long mode, each at -O0, -O2 and -Os.  Each run must print
exactly the expected text, return the expected value from main, and cause
exactly the expected VM exits.

The printing guest also runs on Unicorn (when installed) as a second
opinion: the same image must print the same text there.
"""

import pytest

import vtx
from guests.build import LOAD_ADDRESS, build, missing_tools

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"needs {' and '.join(missing_tools())}")

R = vtx.ExitReason
OPTS = ["-O0", "-O2", "-Os"]
BITS = [32, 64]
MEMORY = 4 << 20
HLT_AT = LOAD_ADDRESS + 5            # start.S: call main (5 bytes), then hlt


def make_vm(image, bits):
    vm = vtx.VM(memory=MEMORY)
    vm.add_vcpu()
    if bits == 32:
        vm.setup_protected_mode(entry=LOAD_ADDRESS)
    else:
        vm.setup_long_mode(entry=LOAD_ADDRESS)
    vm.load(LOAD_ADDRESS, image)
    return vm


def run(vm, max_instructions=20_000_000):
    result = vm.run(max_instructions=max_instructions)
    assert result.stop == "stop", f"run ended with {result.stop!r} after {result.instructions} instructions"
    assert result.exit.reason == R.HLT and result.exit.guest_rip == HLT_AT, f"stopped by {result.exit!r}"
    return result


# ============================================================================
# Guest 1: printf, recursion, sorting, 64-bit arithmetic, switch, copies
# ============================================================================

PRINTING = """\
vtx guest: printf over port 0xe9, {bits}-bit code
ints: 0 -1 2147483647 4294967295 00042 [-12   ] [   345]
hex: deadbeef CAFEBABE 00001234 ff 123456789abcdef
64-bit: 9223372036854775807 -9223372036854775808 18446744073709551615
chars: vtx str|   right|left    | 100%
fib: 0 3 21 144 987 6765
fact(20) = 2432902008176640000
u64: 18364758544493064720 / 1000000007 = 18364758415 rem 939755815
i64: -1234567890123 / 1000 = -1234567890 rem -123
mul: 5534de8ee5c7db50 shifts: 97530eca86420000 1fdb97530eca864 ffffffff7047027d
sorted: -300 -7 -1 0 3 7 7 12 19 42 1000 65535
reversed: 65535 1000 42 19 12 7 7 3 0 -1 -7 -300
people: ada(36,1815) barbara(36,1939) alan(41,1912) edsger(72,1930) donald(85,1938) grace(85,1906)
add=103 sub=97 mul=300 div=33 mod=1 shl=800 sar=12 and=0 or=103 xor=103 ?=-1
blocks: 1344 1442 block-tag
big: a4a4a4a4 25252525 1 0
memmove: overoverlapping-
rot: 00000003 c0000000 def0123456789abc
bswap: 01000080 efcdab8967452301
scan: ctz=31 clz=4 ctzll=5 clzll=7 pop=32
max3: 9 -5 8  lt: 1 0
hello world!
checksum 78c56e22
"""
# main's return value: the checksum printed on the last line (worked out
# independently in Python from the same sequence of values).
PRINTING_CHECKSUM = 0x78C56E22


def run_printing(image, bits):
    vm = make_vm(image, bits)
    out = []

    @vm.on(R.IO_INSTRUCTION)
    def port(vcpu, exit):
        assert exit.direction == "out" and exit.port == 0xE9 and exit.size == 1, exit
        out.append(chr(exit.value))
        return vtx.RESUME

    @vm.on(R.HLT)
    def hlt(vcpu, exit):
        return vtx.STOP

    result = run(vm)
    return "".join(out), result, vm.vcpu


@pytest.mark.parametrize("opt", OPTS)
@pytest.mark.parametrize("bits", BITS)
def test_printing_guest(bits, opt):
    image, _ = build("printing", bits, opt)
    text, result, vcpu = run_printing(image, bits)
    want = PRINTING.format(bits=bits)
    assert text == want
    assert result.exits == {R.IO_INSTRUCTION: len(want), R.HLT: 1}
    assert vcpu.eax == PRINTING_CHECKSUM


@pytest.mark.parametrize("opt", OPTS)
@pytest.mark.parametrize("bits", BITS)
def test_printing_guest_on_unicorn(bits, opt):
    """The same image on Unicorn prints the same text (a check of the guest
    and of the expected text, independent of vtx)."""
    unicorn = pytest.importorskip("unicorn")
    from unicorn import x86_const as ux

    image, _ = build("printing", bits, opt)
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32 if bits == 32 else unicorn.UC_MODE_64)
    uc.mem_map(0, MEMORY)
    uc.mem_write(LOAD_ADDRESS, image)
    uc.reg_write(ux.UC_X86_REG_ESP if bits == 32 else ux.UC_X86_REG_RSP, MEMORY - 0x8000)
    out = []

    def on_out(uc, port, size, value, data):
        out.append(chr(value & 0xFF))

    uc.hook_add(unicorn.UC_HOOK_INSN, on_out, None, 1, 0, ux.UC_X86_INS_OUT)
    uc.emu_start(LOAD_ADDRESS, HLT_AT, count=50_000_000)
    assert "".join(out) == PRINTING.format(bits=bits)
    assert uc.reg_read(ux.UC_X86_REG_EAX) == PRINTING_CHECKSUM


# ============================================================================
# Guest 2: CPUID, RDMSR/WRMSR, VMCALL and IN, served by a Python hypervisor
# ============================================================================

HV_SIGNATURE = b"vtxPythonHV!"
HOST_MESSAGE = "greetings from the host"
MAGIC = 0xFEEDFACE
HC_VERSION, HC_SQUARE, HC_LOG = 0, 1, 2


class Host:
    """A small hypervisor for the hypercalls guest: it answers CPUID (the
    model's leaves plus two hypervisor leaves), keeps the MSRs the guest
    writes, serves three hypercalls and two I/O ports."""

    def __init__(self, vm, bits):
        self.vm = vm
        self.word = (1 << bits) - 1
        self.out = []
        self.msrs = {}
        self.logged = []
        self.message = iter(HOST_MESSAGE.encode() + b"\0")
        for reason, handler in [(R.CPUID, self.cpuid), (R.RDMSR, self.rdmsr), (R.WRMSR, self.wrmsr),
                                (R.VMCALL, self.vmcall), (R.IO_INSTRUCTION, self.io), (R.HLT, self.hlt)]:
            vm.on(reason)(handler)

    def cpuid(self, vcpu, exit):
        if exit.leaf == 0x40000000:
            b, c, d = (int.from_bytes(HV_SIGNATURE[i:i + 4], "little") for i in (0, 4, 8))
            regs = (0x40000001, b, c, d)
        elif exit.leaf == 0x40000001:
            regs = (0x5, 0, 0, 0)
        else:
            regs = vcpu.model_cpuid(exit.leaf, exit.subleaf)
        # CPUID writes the 32-bit registers: bits 63:32 are cleared
        vcpu.rax, vcpu.rbx, vcpu.rcx, vcpu.rdx = regs
        return vtx.RESUME

    def rdmsr(self, vcpu, exit):
        v = self.msrs.get(exit.index, 0)
        vcpu.rax, vcpu.rdx = v & 0xFFFFFFFF, v >> 32
        return vtx.RESUME

    def wrmsr(self, vcpu, exit):
        self.msrs[exit.index] = exit.value
        return vtx.RESUME

    def vmcall(self, vcpu, exit):
        nr, arg = vcpu.rax, vcpu.rbx & self.word
        if nr == HC_VERSION:
            vcpu.rax = 0x10002
        elif nr == HC_SQUARE:
            vcpu.rax = (arg * arg) & self.word
        elif nr == HC_LOG:
            # the argument is a guest address (identity-mapped in both modes)
            raw = self.vm.read(arg, 256)
            text = raw[:raw.index(0)].decode()
            self.logged.append(text)
            vcpu.rax = len(text)
        else:
            vcpu.rax = self.word             # -1: no such hypercall
        return vtx.RESUME

    def io(self, vcpu, exit):
        if exit.direction == "out":
            assert exit.port == 0xE9 and exit.size == 1, exit
            self.out.append(chr(exit.value))
        elif exit.port == 0x511 and exit.size == 1:
            vcpu.al = next(self.message)
        elif exit.port == 0x512 and exit.size == 4:
            vcpu.rax = MAGIC                 # IN EAX: a 32-bit write clears bits 63:32
        else:
            raise AssertionError(f"unexpected port access {exit!r}")
        return vtx.RESUME

    def hlt(self, vcpu, exit):
        return vtx.STOP


HYPERCALLS = """\
cpu vendor: GenuineIntel, max leaf 13
family 6 model 158 stepping 10
hypervisor: vtxPythonHV!, leaves to 40000001
hypervisor features: 5
scratch msr: 1122334455667788
tsc_aux: 7
hypercall version: 10002
square(111) = 12321
square(222) = 49284
square(333) = 110889
square(444) = 197136
square(555) = 308025
logged 22 bytes
host says: greetings from the host
magic: feedface
"""


@pytest.mark.parametrize("opt", OPTS)
@pytest.mark.parametrize("bits", BITS)
def test_hypercalls_guest(bits, opt):
    image, _ = build("hypercalls", bits, opt)
    vm = make_vm(image, bits)
    host = Host(vm, bits)
    result = run(vm)
    text = "".join(host.out)
    assert text == HYPERCALLS
    assert host.logged == ["guest log: hello, host"]
    assert host.msrs == {0x40000020: 0x1122334455667788, 0xC0000103: 7}
    ins = len(HOST_MESSAGE) + 1 + 1          # the message and its NUL byte by INB, the magic by INL
    assert result.exits == {R.CPUID: 4, R.WRMSR: 2, R.RDMSR: 2, R.VMCALL: 7,
                            R.IO_INSTRUCTION: len(HYPERCALLS) + ins, R.HLT: 1}
    # main returns the sum of the squares plus the message length
    assert vm.vcpu.eax == 12321 + 49284 + 110889 + 197136 + 308025 + len(HOST_MESSAGE)


# ============================================================================
# The build helper
# ============================================================================

def test_build_is_cached_and_keyed_by_options(tmp_path, monkeypatch):
    monkeypatch.setenv("VTX_GUEST_CACHE", str(tmp_path))
    a, map_a = build("hypercalls", 32, "-Os")
    b, map_b = build("hypercalls", 32, "-Os")
    c, _ = build("hypercalls", 64, "-Os")
    assert a == b and map_a == map_b and a != c
    assert len(list(tmp_path.glob("*.bin"))) == 2
    # the entry is first, at the load address: call main; hlt
    assert a[0] == 0xE8 and a[5] == 0xF4
