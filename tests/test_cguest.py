"""vtx.cc (vtx/cguest.py): freestanding C guests for real, protected and
long mode, built with the system gcc and ld and vtx's runtime, run with the
exact text they print, main's value and where they halt."""

import pytest

import vtx
from vtx.cguest import CompileError, missing_tools

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"needs {' and '.join(missing_tools())}")
R = vtx.ExitReason

SOURCE = r"""
#include "rt.h"

static u32 fib(u32 n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
static char buffer[64];          /* .bss */

int main(void)
{
    u64 big = 0x123456789ULL * 1000;
    memset(buffer, 'x', 3);
    printf("%d-bit: fib(20)=%u %llu %s %x\n", (int)(sizeof(void *) * 8), fib(20), big / 7, buffer, 0xbeef);
    return 0x5a5a;
}
"""


def run(guest, memory=1 << 20):
    vm = vtx.VM(memory=memory)
    vm.add_vcpu()
    guest.load(vm)
    out = []

    @vm.on(R.IO_INSTRUCTION)
    def io(vcpu, exit):
        assert exit.port == 0xE9 and exit.direction == "out"
        out.append(chr(exit.value))
        return vtx.RESUME

    vm.on(R.HLT)(lambda vcpu, exit: vtx.STOP)
    r = vm.run(max_instructions=5_000_000)
    return vm, r, "".join(out)


@pytest.mark.parametrize("mode,bits,ptr", [(16, 16, 32), ("real", 16, 32), (32, 32, 32), ("long", 64, 64)])
def test_c_guest_in_each_mode(mode, bits, ptr):
    g = vtx.cc(SOURCE, mode=mode)
    assert g.bits == bits and g.entry == g.load_address == 0x1000
    assert g.symbols["_start"] == 0x1000 and g.symbols["main"] > 0x1000
    # start.c: CALL main (E8 rel32; 66 E8 rel32 under .code16gcc), then HLT at _halt
    assert g.halt_address == 0x1000 + (6 if bits == 16 else 5)
    assert g.image[g.halt_address - 0x1000] == 0xF4
    vm, r, out = run(g)
    assert out == f"{ptr}-bit: fib(20)=6765 698102620714 xxx beef\n"
    assert r.stop == "stop" and r.exit.reason == R.HLT and r.exit.guest_rip == g.halt_address
    assert vm.vcpu.eax == 0x5A5A
    assert r.exits[R.IO_INSTRUCTION] == len(out)


def test_the_flat_image_is_the_loaded_bytes():
    g = vtx.cc(SOURCE, mode=32, load_address=0x8000)
    vm = vtx.VM(memory=1 << 20)
    vm.add_vcpu()
    img = g.load(vm)
    assert vm.read(0x8000, len(g.image)) == g.image
    assert img.entry == 0x8000 and vm.vcpu.rip == 0x8000
    assert vtx.cc(SOURCE, mode=32, load_address=0x8000).elf == g.elf        # cached, same bytes


def test_files_and_no_runtime(tmp_path):
    (tmp_path / "entry.S").write_text(
        ".section .text.start, \"ax\"\n.globl _start\n_start:\n    call compute\n    hlt\n")
    (tmp_path / "compute.c").write_text("int compute(void) { int s = 0; for (int i = 1; i <= 100; i++) s += i;"
                                        " return s; }\n")
    g = vtx.cc([tmp_path / "entry.S", tmp_path / "compute.c"], mode=64, runtime=False, opt="-O0")
    vm, r, out = run(g)
    assert vm.vcpu.rax == 5050 and out == "" and r.exit.guest_rip == 0x1005
    assert "printf_port" not in g.symbols


def test_errors():
    with pytest.raises(CompileError, match="undeclared|error"):
        vtx.cc("int main(void) { return nope; }\n", mode=64)
    with pytest.raises(vtx.ArgumentError, match="mode is 16, 32, 64"):
        vtx.cc(SOURCE, mode=8)
    with pytest.raises(vtx.ArgumentError, match="first 64 KiB"):
        vtx.cc(SOURCE, mode=16, load_address=0x10000)
    with pytest.raises(vtx.ArgumentError, match=r"builds \.c, \.S and \.s"):
        vtx.cc("guest.cpp", mode=64)
    with pytest.raises(TypeError, match="C source text"):
        vtx.cc(b"int main;", mode=64)
