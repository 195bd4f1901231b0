/* The host-CPU oracle of tests/test_insn_x87.py: runs position-independent
   x86-64 code blobs natively and reports what they leave.  Input on stdin,
   repeated: u32 code length, the code, u32 data length, the data.  Each blob
   is called as f(data, save) after FRSTOR of the power-on state (FCW 037F,
   FSW 0, all tags empty, all registers 0); it ends by FNSAVE to `save`
   itself.  Output per blob: one line "ok|trap|ill <data hex> <save hex>"; a
   trap is a SIGFPE (#MF), ill a SIGILL (#UD) raised by the blob, the save
   area then being zeros. */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static sigjmp_buf jb;
static void on_fpe(int s) { siglongjmp(jb, s == SIGILL ? 2 : 1); }

static int get(void* p, size_t n) { return fread(p, 1, n, stdin) == n; }

int main(void) {
    uint8_t* code = mmap(0, 1 << 16, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static uint8_t data[4096], save[108], init[108];
    uint32_t n, m;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fpe;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGFPE, &sa, 0);
    sigaction(SIGILL, &sa, 0);
    memset(init, 0, sizeof init);
    init[0] = 0x7F; init[1] = 0x03; init[8] = 0xFF; init[9] = 0xFF;
    while (get(&n, 4)) {
        if (n > (1 << 16) || !get(code, n) || !get(&m, 4) || m > sizeof data || !get(data, m))
            return 2;
        memset(save, 0, sizeof save);
        int trapped = sigsetjmp(jb, 1);
        if (!trapped) {
            __asm__ volatile("fninit; frstor %0" : : "m"(init));
            ((void (*)(uint8_t*, uint8_t*))code)(data, save);
        } else {
            memset(save, 0, sizeof save);
        }
        __asm__ volatile("fninit");
        printf(trapped == 2 ? "ill " : trapped ? "trap " : "ok ");
        for (uint32_t i = 0; i < m; i++) printf("%02x", data[i]);
        printf(" ");
        for (int i = 0; i < 108; i++) printf("%02x", save[i]);
        printf("\n");
        fflush(stdout);
    }
    return 0;
}
