"""Ordinary gcc output on vtx: C built WITHOUT -mgeneral-regs-only at -O0,
-O2 and -O3, for 32-bit code (x87 floating point, SSE2 where gcc uses it)
and 64-bit code (SSE2 floating point and vector loops, x87 for long double),
printing floating-point values through the FPU (tests/guests/fpu.c).

The oracle is the host CPU: the same C, built as a static Linux user program
(tests/guests/build.py, flavour "native"), runs natively and must print the
same text, character for character, as the guest prints on vtx.  The guest's
main also returns its checksum, which must be in EAX at the HLT.
"""

import shutil
import subprocess

import pytest

import vtx
from guests.build import build, missing_tools, run_native, symbols

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"needs {' and '.join(missing_tools())}")

R = vtx.ExitReason
LOAD = 0x1000
MEMORY = 4 << 20


def run_guest(image, mapfile, bits):
    vm = vtx.VM(memory=MEMORY)
    vm.add_vcpu()
    if bits == 32:
        vm.setup_protected_mode(entry=LOAD)
    else:
        vm.setup_long_mode(entry=LOAD)
    vm.load(LOAD, image)
    out = []

    @vm.on(R.IO_INSTRUCTION)
    def port(vcpu, exit):
        assert exit.direction == "out" and exit.port == 0xE9 and exit.size == 1, exit
        out.append(chr(exit.value))
        return vtx.RESUME

    @vm.on(R.HLT)
    def hlt(vcpu, exit):
        return vtx.STOP

    result = vm.run(max_instructions=50_000_000)
    assert result.stop == "stop", f"run ended with {result.stop!r} after {result.instructions} instructions"
    halt = symbols(mapfile)["guest_halt"]
    assert result.exit.reason == R.HLT and result.exit.guest_rip == halt, \
        f"stopped by {result.exit!r}; output so far:\n{''.join(out)}"
    return "".join(out), vm.vcpu


def uses(image, bits, what):
    """How many instructions of the image's disassembly match `what` (a
    predicate on the mnemonic): proof that the build exercises the FPU/SSE."""
    objdump = shutil.which("objdump")
    if objdump is None:
        return None
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(image)
        f.flush()
        text = subprocess.run([objdump, "-D", "-b", "binary", "-m", "i386" if bits == 32 else "i386:x86-64",
                               f.name], capture_output=True, text=True).stdout
    n = 0
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2].split() and what(parts[2].split()[0]):
            n += 1
    return n


@pytest.mark.parametrize("opt", ["-O0", "-O2", "-O3"])
@pytest.mark.parametrize("bits", [32, 64])
def test_fp_guest_matches_the_host_cpu(bits, opt):
    want, status = run_native("fpu", bits, opt)
    assert want.startswith(f"vtx fp guest, {bits}-bit code\n") and "checksum" in want
    image, mapfile = build("fpu", bits, opt, flavour="fp")
    got, vcpu = run_guest(image, mapfile, bits)
    assert got == want
    checksum = int(want.rsplit("checksum ", 1)[1].split()[0], 16)
    assert vcpu.eax == checksum
    assert status == checksum & 0xFF


@pytest.mark.parametrize("bits", [32, 64])
def test_fp_guest_images_use_x87_and_sse(bits):
    """The -O3 image really is ordinary code: x87 instructions in both modes,
    SSE instructions on XMM registers too."""
    image, _ = build("fpu", bits, "-O3", flavour="fp")
    x87 = uses(image, bits, lambda m: m.startswith("f") and m not in ("fs", "fwait"))
    sse = uses(image, bits, lambda m: m.endswith(("ps", "pd", "sd", "ss", "dqa", "dqu")) or m.startswith("p")
               and m not in ("push", "pop", "popa", "pushf", "popf", "pause", "pusha"))
    if x87 is None:
        pytest.skip("needs objdump")
    assert x87 >= (20 if bits == 32 else 5) and sse > 20, (x87, sse)
