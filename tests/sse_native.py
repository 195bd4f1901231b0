"""The host CPU as an oracle for SSE instructions: a small C program, built
once with gcc and kept running, executes a code fragment natively on a state
block and sends the block back.

The fragment (tests/test_insn_sse.py builds it with vtx.asm) loads MXCSR,
XMM0, XMM1 and RAX from the block at RDI, runs the instruction under test,
and stores them back with RFLAGS.  An unmasked SIMD floating-point exception
arrives as SIGFPE: the helper then reports MXCSR and XMM0 from the signal
context (the state the fault left) and the vector 19.

The block: 0 XMM0, 16 XMM1, 32 MXCSR in, 36 MXCSR out, 40 RAX, 48 RFLAGS.
"""

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = r"""
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

static sigjmp_buf env;
static uint32_t fault_mxcsr;
static uint8_t fault_xmm0[16];

static void on_fpe(int sig, siginfo_t* si, void* ctx) {
    ucontext_t* uc = ctx;
    (void)sig; (void)si;
    fault_mxcsr = uc->uc_mcontext.fpregs->mxcsr;
    memcpy(fault_xmm0, &uc->uc_mcontext.fpregs->_xmm[0], 16);
    siglongjmp(env, 1);
}

static int unhex(const char* s, uint8_t* out, int max) {
    int n = 0;
    unsigned v;
    while (n < max && sscanf(s + 2 * n, "%2x", &v) == 1) out[n++] = (uint8_t)v;
    return n;
}

int main(void) {
    static char line[8192];
    uint8_t* page = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fpe;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGFPE, &sa, 0);
    setvbuf(stdout, 0, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        uint8_t block[64];
        char* sp = strchr(line, ' ');
        int vec = 0, i;
        uint32_t def = 0x1F80;
        if (!sp) break;
        *sp = 0;
        memset(page, 0xC3, 4096);
        unhex(line, page, 4000);
        memset(block, 0, sizeof block);
        unhex(sp + 1, block, 56);
        if (sigsetjmp(env, 1) == 0) {
            ((void (*)(uint8_t*))page)(block);
        } else {
            vec = 19;
            memcpy(block + 36, &fault_mxcsr, 4);
            memcpy(block, fault_xmm0, 16);
        }
        __asm__ volatile("ldmxcsr %0" : : "m"(def));
        for (i = 0; i < 56; i++) printf("%02x", block[i]);
        printf(" %d\n", vec);
    }
    return 0;
}
"""


def available():
    return shutil.which("gcc") is not None


class Native:
    """A running oracle process: ``run(code, block) -> (block, vector)``."""

    def __init__(self):
        d = Path(tempfile.gettempdir()) / "vtx-sse-native"
        d.mkdir(exist_ok=True)
        tag = hashlib.sha256(SOURCE.encode()).hexdigest()[:16]
        exe = d / f"oracle-{tag}"
        if not exe.exists():
            src = d / f"oracle-{tag}.c"
            src.write_text(SOURCE)
            tmp = d / f"oracle-{tag}.tmp"
            subprocess.run(["gcc", "-O1", "-o", str(tmp), str(src)], check=True, capture_output=True)
            tmp.replace(exe)
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def run(self, code, block):
        self.proc.stdin.write(f"{code.hex()} {block.hex()}\n")
        self.proc.stdin.flush()
        out, vec = self.proc.stdout.readline().split()
        return bytes.fromhex(out), int(vec)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
