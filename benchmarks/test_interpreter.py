"""Guest instructions per second on a tight loop (``dec ecx; jnz``)."""

from conftest import ENTRY, LOOP_COUNT, TIGHT_LOOP, make_vm, needs_unicorn, rewind

import vtx

INSNS = 2 * LOOP_COUNT + 1


def test_vtx_tight_loop(benchmark):
    vm = make_vm(TIGHT_LOOP)

    def run():
        rewind(vm)
        return vm.run()

    r = benchmark(run)
    assert r.instructions == INSNS
    benchmark.extra_info["guest_instructions"] = INSNS
    benchmark.extra_info["mips"] = INSNS / benchmark.stats.stats.mean / 1e6


@needs_unicorn
def test_unicorn_tight_loop(benchmark):
    from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
    from unicorn.x86_const import UC_X86_REG_ECX

    code = vtx.asm(TIGHT_LOOP, bits=32, org=ENTRY)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 1 << 20)
    uc.mem_write(ENTRY, code)
    end = ENTRY + len(code) - 1          # stop before the HLT

    def run():
        uc.emu_start(ENTRY, end)
        return uc.reg_read(UC_X86_REG_ECX)

    assert benchmark(run) == 0
    benchmark.extra_info["guest_instructions"] = INSNS - 1
    benchmark.extra_info["mips"] = (INSNS - 1) / benchmark.stats.stats.mean / 1e6
