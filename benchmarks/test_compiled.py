"""Guest instructions per second on compiled C.

benchmarks/guests/suite.c is a freestanding program in the style of the
embedded benchmark suites: linked-list build, walk and merge sort, a 16x16
integer matrix multiply, a tokenizer (a state machine over text), CRC-16
(bitwise) and CRC-32 (with a table built at run time), and recursion (fib).
main runs each kernel a fixed number of times and returns a checksum.  It is
built at test time with the system gcc at -O2 for -m32 (run in protected
mode) and -m64 (long mode, paging on), the same binary on vtx and on
Unicorn.  Unlike the tight loop, this is the mix of instructions a compiler
emits: loads and stores, calls and returns, indexed addressing, multiplies,
byte and word operations, unpredictable branches.
"""

import pytest
from conftest import needs_unicorn, record

import guest_build
import vtx

pytestmark = pytest.mark.skipif(bool(guest_build.missing_tools()),
                                reason=f"needs {' and '.join(guest_build.missing_tools())}")

MEMORY = 4 << 20
STACK = MEMORY - 0x8000          # where vtx's setup puts the stack: below its tables
# main's return value for both builds (the kernels' results are 32-bit
# arithmetic on values only), worked out independently with a Python model
# of the kernels (zlib/binascii for the CRCs, sorted() for the sort).
CHECKSUM = 0x09D5F25B

BUILDS = {"m32": 32, "m64": 64}


def image(build):
    bits = BUILDS[build]
    data, syms = guest_build.build("suite", bits, "-O2")
    return bits, data, syms["halt"]


# vtx's count of the instructions up to the HLT, per build.  Unicorn has no
# instruction counter without a per-instruction hook (which would dominate
# its time), but it executes the same binary from the same state to the same
# HLT, hence the same instructions: both engines' M instr/s use vtx's count.
_counted = {}


def _instructions_per_run(build, bits, data, halt):
    if build not in _counted:            # the Unicorn test alone (-k): count on a fresh VM
        vm = _vm(bits, data)
        r = vm.run()
        assert r.exit.guest_rip == halt and vm.vcpu.eax == CHECKSUM
        _counted[build] = r.instructions
    return _counted[build]


def _vm(bits, data):
    vm = vtx.VM(memory=MEMORY)
    vm.add_vcpu()
    vm.load(guest_build.LOAD_ADDRESS, data)
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    _rewind(vm, bits)
    return vm


# A run needs a fresh processor state only: the program writes neither its
# code nor its initialized data, and it never reads .bss before writing it.
# The image stays loaded (on Unicorn, rewriting it would also throw away the
# translated code every round).
def _rewind(vm, bits):
    (vm.setup_protected_mode if bits == 32 else vm.setup_long_mode)(entry=guest_build.LOAD_ADDRESS,
                                                                    stack=STACK)


def _mips(benchmark, insns):
    benchmark.extra_info["guest_instructions"] = insns
    record(benchmark, "mips", lambda mean: insns / mean / 1e6)


@pytest.mark.parametrize("build", list(BUILDS))
def test_vtx_compiled(benchmark, build):
    bits, data, halt = image(build)
    vm = _vm(bits, data)
    # One run is a few tenths of a second: five rounds after a warm one.
    r = benchmark.pedantic(vm.run, setup=lambda: _rewind(vm, bits), rounds=5, warmup_rounds=1)
    assert r.exit.reason == vtx.ExitReason.HLT and r.exit.guest_rip == halt
    assert vm.vcpu.eax == CHECKSUM
    _counted[build] = r.instructions
    _mips(benchmark, r.instructions)


@needs_unicorn
@pytest.mark.parametrize("build", list(BUILDS))
def test_unicorn_compiled(benchmark, build):
    import unicorn
    from unicorn import x86_const as ux

    bits, data, halt = image(build)
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32 if bits == 32 else unicorn.UC_MODE_64)
    uc.mem_map(0, MEMORY)
    uc.mem_write(guest_build.LOAD_ADDRESS, data)
    sp = ux.UC_X86_REG_ESP if bits == 32 else ux.UC_X86_REG_RSP

    def reset():
        uc.reg_write(sp, STACK)
        uc.reg_write(ux.UC_X86_REG_EAX, 0)      # so that the check sees this run's result

    def run():
        uc.emu_start(guest_build.LOAD_ADDRESS, halt)     # stops before the HLT
        return uc.reg_read(ux.UC_X86_REG_EAX)

    assert benchmark.pedantic(run, setup=reset, rounds=10, warmup_rounds=1) == CHECKSUM
    _mips(benchmark, _instructions_per_run(build, bits, data, halt))
