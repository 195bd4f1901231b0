/* Guest 2: talks to its hypervisor.  CPUID (standard leaves and the
 * hypervisor leaves at 0x40000000), RDMSR/WRMSR of a synthetic MSR, VMCALL
 * hypercalls with the number in EAX/RAX and the argument in EBX/RBX (the
 * result comes back in EAX/RAX), and IN from ports the hypervisor answers.
 * Every one of them is a VM exit; the test counts them exactly. */
#include "rt.h"

#define HC_VERSION 0          /* -> the interface version */
#define HC_SQUARE 1           /* arg -> arg * arg */
#define HC_LOG 2              /* arg = address of a string -> its length */

#define MSR_SCRATCH 0x40000020u
#define MSR_TSC_AUX 0xC0000103u

#define PORT_MESSAGE 0x511    /* inb: the next byte of the host's message, 0 at the end */
#define PORT_MAGIC 0x512      /* inl: a 32-bit magic number */

static inline void cpuid(u32 leaf, u32 sub, u32 r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}

static inline void wrmsr(u32 msr, u64 v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}

static inline unsigned long vmcall(unsigned long nr, unsigned long arg)
{
    unsigned long ret;
    __asm__ volatile("vmcall" : "=a"(ret) : "a"(nr), "b"(arg) : "memory");
    return ret;
}

/* The 12 bytes of a CPUID vendor-style string, in register order b, c, d
 * (the hypervisor leaf) or b, d, c (leaf 0). */
static void regs_to_str(char *out, u32 a, u32 b, u32 c)
{
    memcpy(out, &a, 4);
    memcpy(out + 4, &b, 4);
    memcpy(out + 8, &c, 4);
    out[12] = 0;
}

static const char log_line[] = "guest log: hello, host";

int main(void)
{
    u32 r[4];
    char str[16], msg[64];
    unsigned long total = 0;
    u64 v;
    unsigned i;

    cpuid(0, 0, r);
    regs_to_str(str, r[1], r[3], r[2]);
    printf("cpu vendor: %s, max leaf %u\n", str, r[0]);
    cpuid(1, 0, r);
    printf("family %u model %u stepping %u\n", ((r[0] >> 8) & 0xf) + ((r[0] >> 20) & 0xff),
           ((r[0] >> 4) & 0xf) | ((r[0] >> 12) & 0xf0), r[0] & 0xf);
    cpuid(0x40000000, 0, r);
    regs_to_str(str, r[1], r[2], r[3]);
    printf("hypervisor: %s, leaves to %x\n", str, r[0]);
    cpuid(0x40000001, 0, r);
    printf("hypervisor features: %x\n", r[0]);

    wrmsr(MSR_SCRATCH, 0x1122334455667788ULL);
    v = rdmsr(MSR_SCRATCH);
    printf("scratch msr: %llx\n", v);
    wrmsr(MSR_TSC_AUX, 7);
    printf("tsc_aux: %llu\n", rdmsr(MSR_TSC_AUX));

    printf("hypercall version: %lx\n", vmcall(HC_VERSION, 0));
    for (i = 1; i <= 5; i++) {
        unsigned long sq = vmcall(HC_SQUARE, i * 111);
        total += sq;
        printf("square(%u) = %lu\n", i * 111, sq);
    }
    printf("logged %lu bytes\n", vmcall(HC_LOG, (unsigned long)log_line));

    for (i = 0; i < sizeof(msg) - 1; i++) {
        msg[i] = (char)inb(PORT_MESSAGE);
        if (!msg[i])
            break;
    }
    msg[i] = 0;
    printf("host says: %s\n", msg);
    printf("magic: %x\n", inl(PORT_MAGIC));
    return (int)(total + i);
}
