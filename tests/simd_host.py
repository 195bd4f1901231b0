"""Differential testing of SIMD instructions: the same instruction text runs
natively on the host CPU (a small program built with gcc, in a subprocess)
and as a 64-bit guest of the model, on the same operands.

A case is 80 bytes: xmm1 (and mm1 = its low half) 0:16, xmm2 (mm2) 16:32,
xmm0 32:48, rax 48:56, rdx 56:64, rcx 64:72, rflags 72:80.  Its outcome is
72 bytes: xmm1 0:16, xmm0 16:32, rcx 32:40, rax 40:48, rflags 48:56, rdx
56:64, mm1 64:72.  Inside the stub r8 points at the case and r9 at the
outcome, so an instruction may name ``[r8+16]`` as a memory operand (the
second operand's bytes, 16-byte aligned) in both worlds.

Operands are loaded with PXOR/POR and MOVQ mm, and stored with PEXTRQ and
MOVQ, so the harness itself only needs the instructions under test's own
family (and SSE2 integer + SSE4.1), nothing from the SSE data-movement set.
"""

import os
import platform
import shutil
import subprocess
import tempfile

import vtx
from insn_harness import make_vm

IN_SIZE = 80
OUT_SIZE = 72
GUEST_IN = 0x20000
GUEST_OUT = 0x40000

STUB_HEAD = """\
    pxor xmm0, xmm0
    por xmm0, [r8+32]
    pxor xmm1, xmm1
    por xmm1, [r8]
    pxor xmm2, xmm2
    por xmm2, [r8+16]
    movq mm1, [r8]
    movq mm2, [r8+16]
    mov rax, [r8+48]
    mov rdx, [r8+56]
    mov rcx, [r8+64]
    push qword ptr [r8+72]
    popfq
"""
STUB_TAIL = """\
    mov [r9+32], rcx
    mov [r9+40], rax
    mov [r9+56], rdx
    pushfq
    pop rax
    mov [r9+48], rax
    pextrq [r9], xmm1, 0
    pextrq [r9+8], xmm1, 1
    pextrq [r9+16], xmm0, 0
    pextrq [r9+24], xmm0, 1
    movq [r9+64], mm1
    emms
"""

HOST_FLAGS = ("sse4_1", "sse4_2", "ssse3", "pclmulqdq")


def host_usable():
    """None if the host can serve as the oracle, else the reason it cannot."""
    if platform.machine() != "x86_64":
        return "the host is not x86-64"
    if shutil.which("gcc") is None:
        return "no gcc"
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "no /proc/cpuinfo"
    for flag in HOST_FLAGS:
        if f" {flag}" not in text:
            return f"the host CPU lacks {flag}"
    return None


class HostOracle:
    """One native program holding a stub per instruction; run(idx, cases)."""

    def __init__(self, insns):
        self.insns = list(insns)
        self.index = {t: i for i, t in enumerate(self.insns)}
        self.dir = tempfile.mkdtemp(prefix="vtx-simd-")
        parts = [".intel_syntax noprefix", ".text", ".globl run_case", "run_case:",
                 "    push rbx", "    push r12", "    push r13", "    mov r8, rsi", "    mov r9, rdx",
                 "    lea r10, [rip + stub_table]", "    jmp qword ptr [r10 + rdi*8]",
                 "stub_done:", "    pop r13", "    pop r12", "    pop rbx", "    ret"]
        for i, text in enumerate(self.insns):
            parts.append(f"stub{i}:")
            parts.append(STUB_HEAD + "    " + text + "\n" + STUB_TAIL + "    jmp stub_done")
        parts.append(".section .data.rel.ro")
        parts.append("stub_table:")
        for i in range(len(self.insns)):
            parts.append(f"    .quad stub{i}")
        parts.append('.section .note.GNU-stack,"",@progbits')
        asm = os.path.join(self.dir, "stubs.S")
        with open(asm, "w") as f:
            f.write("\n".join(parts) + "\n")
        main = os.path.join(self.dir, "main.c")
        with open(main, "w") as f:
            f.write(r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>
void run_case(long idx, const void *in, void *out);
static uint8_t in[80] __attribute__((aligned(16)));
static uint8_t out[72] __attribute__((aligned(16)));
int main(void) {
    long idx; char hex[256];
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    while (scanf("%ld %255s", &idx, hex) == 2) {
        for (int i = 0; i < 80; i++) { unsigned v; sscanf(hex + 2 * i, "%2x", &v); in[i] = (uint8_t)v; }
        memset(out, 0, sizeof out);
        run_case(idx, in, out);
        for (int i = 0; i < 72; i++) printf("%02x", out[i]);
        printf("\n");
    }
    return 0;
}
""")
        self.exe = os.path.join(self.dir, "oracle")
        subprocess.run(["gcc", "-O1", "-o", self.exe, main, asm], check=True,
                       capture_output=True)

    def run(self, texts, cases):
        """{text: [outcome per case]} from one run of the native program."""
        feed = "".join(f"{self.index[t]} {c.hex()}\n" for t in texts for c in cases)
        out = subprocess.run([self.exe], input=feed, capture_output=True, text=True, check=True)
        lines = [bytes.fromhex(line) for line in out.stdout.split()]
        n = len(cases)
        return {t: lines[k * n:(k + 1) * n] for k, t in enumerate(texts)}

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


_GUEST_CODE = {}


def guest_code(texts):
    """One guest program that runs each stub in turn over all the cases
    (their count at GUEST_IN - 8); stub k's outcomes start at GUEST_OUT +
    k * count * OUT_SIZE."""
    key = tuple(texts)
    code = _GUEST_CODE.get(key)
    if code is None:
        lines = [f"mov r9, {GUEST_OUT}"]
        for k, text in enumerate(texts):
            lines.append(f"mov r8, {GUEST_IN}\nmov rbx, [{GUEST_IN - 8}]\n{k + 10}:\n" + STUB_HEAD +
                         "    " + text + "\n" + STUB_TAIL +
                         f"    add r8, {IN_SIZE}\n    add r9, {OUT_SIZE}\n    dec rbx\n    jnz {k + 10}b")
        lines.append("hlt")
        code = vtx.asm("\n".join(lines) + "\n", bits=64, org=0x1000)
        _GUEST_CODE[key] = code
    return code


def enable_simd(vm, vcpu, extra=("SSE", "SSE2", "FXSR"), without=()):
    """CR4.OSFXSR and OSXMMEXCPT, and SSE/SSE2 in the CPU model (the packed
    integer XMM forms need SSE2, which the SSE part of the model advertises);
    the features in `without` taken out of the model."""
    names = [n for n in vm._machine._features() if n not in without]
    names += [n for n in extra if n not in names and n not in without]
    vm._machine._set_features(names)
    # CR4.OSXMMEXCPT exists only with SSE (vtx/spec/capabilities.py CR4_FEATURES)
    vcpu.cr4 = vcpu.cr4 | (1 << 9) | ((1 << 10) if "SSE" in names else 0)


def run_guest(texts, cases):
    """Run the stub of each of ``texts`` on each case in one 64-bit guest;
    returns {text: [outcome per case]}."""
    vm, vcpu = make_vm(64, memory=4 << 20)
    enable_simd(vm, vcpu)
    vm.load(0x1000, guest_code(texts))
    vm.write(GUEST_IN - 8, len(cases).to_bytes(8, "little"))
    vm.write(GUEST_IN, b"".join(cases))

    @vm.default
    def stop(vcpu, exit):
        return vtx.STOP

    result = vm.run(max_instructions=40 * len(texts) * len(cases) + 1000)
    exit = result.exit
    assert exit is not None and exit.reason == vtx.ExitReason.HLT, \
        f"the guest ended with {exit!r} (rip {vcpu.rip:#x})"
    n = len(cases)
    data = vm.read(GUEST_OUT, OUT_SIZE * n * len(texts))
    return {t: [data[(k * n + i) * OUT_SIZE:(k * n + i + 1) * OUT_SIZE] for i in range(n)]
            for k, t in enumerate(texts)}


STATUS = 0x8D5


def describe(out):
    """The outcome as named fields, for readable assertion messages."""
    return {
        "xmm1": out[0:16][::-1].hex(), "xmm0": out[16:32][::-1].hex(),
        "rcx": out[32:40][::-1].hex(), "rax": out[40:48][::-1].hex(),
        "flags": hex(int.from_bytes(out[48:56], "little") & STATUS),
        "rdx": out[56:64][::-1].hex(), "mm1": out[64:72][::-1].hex(),
    }


def compare(texts, cases, host, guest):
    """Assert the model's outcome equals the host's for every text and case;
    the message lists every disagreement (up to 20)."""
    bad = []
    for t in texts:
        for case, h, g in zip(cases, host[t], guest[t]):
            dh, dg = describe(h), describe(g)
            if dg != dh:
                bad.append(f"{t} on {case.hex()}:\n host  {dh}\n model {dg}")
    assert not bad, f"{len(bad)} disagreements:\n" + "\n".join(bad[:20])


def chunks(seq, size):
    return [seq[i:i + size] for i in range(0, len(seq), size)]


def run_unicorn(texts, cases):
    """The same stubs in Unicorn (QEMU's x86 emulator, Haswell CPU model):
    a second opinion beside the host.  Returns {text: [outcome per case]}."""
    import unicorn
    from unicorn import x86_const as X
    out = {}
    for text in texts:
        code = vtx.asm(f"mov r8, {GUEST_IN}\nmov r9, {GUEST_OUT}\n" + STUB_HEAD + "    " + text +
                       "\n" + STUB_TAIL + "    nop\n", bits=64, org=0x1000)
        res = []
        for c in cases:
            uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
            uc.ctl_set_cpu_model(X.UC_CPU_X86_HASWELL)
            uc.mem_map(0, 1 << 20)
            uc.mem_write(0x1000, code)
            uc.mem_write(GUEST_IN, c)
            uc.reg_write(X.UC_X86_REG_RSP, 0x9000)
            uc.emu_start(0x1000, 0x1000 + len(code))
            res.append(bytes(uc.mem_read(GUEST_OUT, OUT_SIZE)))
        out[text] = res
    return out
