"""Cost per instruction as the code footprint grows.

The same straight-line block of register ALU instructions (add, xor, lea,
rol, mov, sub, inc, shl, sar, dec on eax..edi), replicated to fill 1 KiB to
1 MiB of code and closed by ``dec ebp; jnz top``, runs in 32-bit protected
mode.  The loop count shrinks as the block grows, so every footprint executes
the same 2**18 blocks (about 3.7 M instructions) and ends in the same
register state.  A small footprint measures the interpreter's best case; a
large one whatever a decoded-instruction cache, a TLB or the host's caches
cost when the code no longer fits in them.  Issue 6's target: at 1 MiB, at
most 1.3x the time per instruction of 1 KiB (the summary shows the ratio).

Rounds start warm (one warm-up run each): the figure is the steady state of
a guest that keeps running the same code, not its first pass.

Unicorn (QEMU's TCG) translates straight-line guest code into blocks of host
code of up to a few hundred instructions and drops the flag computations no
one reads, so on this workload it runs close to native speed: its column is
a reference for its own slowdown with size, and vtx's row to read is its
slowdown from 1 KiB to 1 MiB.
"""

import pytest
from conftest import ENTRY, needs_unicorn, record

import vtx

MEMORY = 4 << 20                 # 1 MiB of code, the tables and stack above it
TOP = ENTRY + 0x1000             # the block starts on a page of its own

# 32 bytes, 14 instructions.  ebp is the loop counter; esp is not touched.
BLOCK = """
    add eax, ebx
    xor ecx, eax
    lea edx, [ecx + edx*2 + 0x11]
    rol ebx, 3
    mov esi, edx
    sub edi, esi
    inc ebx
    shl esi, 2
    add edi, esi
    xor eax, edx
    lea ecx, [eax + edi + 7]
    mov edx, ebx
    sar edx, 1
    dec edi
"""
BLOCK_BYTES, BLOCK_INSNS = 32, 14
BLOCKS_PER_RUN = 1 << 18

START = """
    mov eax, 0x12345678
    mov ebx, 0x9abcdef0
    mov ecx, 1
    mov edx, 2
    mov esi, 3
    mov edi, 4
    mov ebp, {passes}
    jmp {top}
"""
START_INSNS = 8

# eax, ebx, ecx, edx, esi, edi after 2**18 blocks, worked out with a Python
# model of BLOCK (and the same on Unicorn).
FINAL = (0xA8EE917F, 0x9ABCDEF0, 0x3751E9B2, 0xCD5E6F78, 0x8EE3DCCC, 0x8E63582B)

FOOTPRINTS = {"1KiB": 1 << 10, "16KiB": 16 << 10, "64KiB": 64 << 10, "256KiB": 256 << 10, "1MiB": 1 << 20}


def program(size):
    """(image at ENTRY, instructions up to the HLT, HLT address) for a block
    of size bytes.  The block is assembled once and its bytes replicated:
    assembling a megabyte of text would take GNU as seconds."""
    blocks = size // BLOCK_BYTES
    passes = BLOCKS_PER_RUN // blocks
    block = vtx.asm(BLOCK, bits=32)
    assert len(block) == BLOCK_BYTES, "BLOCK_BYTES must match the assembled block"
    start = vtx.asm(START.format(passes=passes, top=TOP), bits=32, org=ENTRY)
    # dec ebp; jnz rel32 back to TOP (relative to the end of the jnz); hlt
    tail_at = TOP + size
    back = TOP - (tail_at + 1 + 6)
    tail = b"\x4d\x0f\x85" + back.to_bytes(4, "little", signed=True) + b"\xf4"
    image = start.ljust(TOP - ENTRY, b"\0") + block * blocks + tail
    insns = START_INSNS + passes * (blocks * BLOCK_INSNS + 2)
    return image, insns, tail_at + 7


def _per_instruction(benchmark, insns):
    benchmark.extra_info["guest_instructions"] = insns
    record(benchmark, "ns_per_instr", lambda mean: mean / insns * 1e9)


@pytest.mark.parametrize("size", list(FOOTPRINTS))
def test_vtx_footprint(benchmark, size):
    image, insns, hlt_at = program(FOOTPRINTS[size])
    vm = vtx.VM(memory=MEMORY)
    vm.load(ENTRY, image)
    vm.add_vcpu()
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)

    def rewind():
        vm.setup_protected_mode(entry=ENTRY)

    r = benchmark.pedantic(vm.run, setup=rewind, rounds=8, warmup_rounds=1)
    assert r.exit.guest_rip == hlt_at and r.instructions == insns
    v = vm.vcpu
    assert (v.eax, v.ebx, v.ecx, v.edx, v.esi, v.edi) == FINAL
    _per_instruction(benchmark, insns)


@needs_unicorn
@pytest.mark.parametrize("size", list(FOOTPRINTS))
def test_unicorn_footprint(benchmark, size):
    from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
    from unicorn.x86_const import (UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDI,
                                   UC_X86_REG_EDX, UC_X86_REG_ESI)

    image, insns, hlt_at = program(FOOTPRINTS[size])
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, MEMORY)
    uc.mem_write(ENTRY, image)
    regs = (UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_ESI, UC_X86_REG_EDI)

    def run():
        uc.emu_start(ENTRY, hlt_at)          # stops before the HLT: the same instructions as vtx
        return tuple(uc.reg_read(r) for r in regs)

    assert benchmark.pedantic(run, rounds=8, warmup_rounds=1) == FINAL
    _per_instruction(benchmark, insns)
