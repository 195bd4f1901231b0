/* Ordinary compiled C with floating point and vectorizable loops, built
 * without -mgeneral-regs-only: in 32-bit code gcc does the floating point on
 * the x87 FPU (and uses SSE2 where -msse2 lets it), in 64-bit code on SSE2,
 * and `long double` on the x87 in both.  Doubles are printed by a formatter
 * written here in floating point, so the printing itself runs on the FPU.
 *
 * The expected output is what the host CPU prints running the same code as a
 * Linux user program (tests/test_guests_fp.py). */
#include "rt.h"

static u32 checksum = 0x811C9DC5u;

static void mix(u64 v)
{
    for (int i = 0; i < 8; i++) {
        checksum ^= (u8)(v >> (8 * i));
        checksum *= 16777619u;
    }
}

static u64 bits_of(double x)
{
    u64 v;
    memcpy(&v, &x, sizeof v);
    return v;
}

/* x with `prec` digits after the point, rounded half away from zero in
 * double arithmetic. */
static void print_fixed(double x, int prec)
{
    double scale = 1.0;
    if (x != x) {
        printf("nan");
        return;
    }
    if (x < 0) {
        putchar_port('-');
        x = -x;
    }
    if (x > 1e18) {
        printf("inf-ish");
        return;
    }
    for (int i = 0; i < prec; i++)
        scale *= 10.0;
    double r = x * scale + 0.5;
    u64 whole = (u64)(r / scale);
    double frac = r - (double)whole * scale;
    u64 f = (u64)frac;
    if (f >= (u64)scale) {
        whole += 1;
        f -= (u64)scale;
    }
    printf("%llu", whole);
    if (prec) {
        char buf[24];
        for (int i = prec - 1; i >= 0; i--) {
            buf[i] = (char)('0' + f % 10);
            f /= 10;
        }
        buf[prec] = 0;
        printf(".%s", buf);
    }
}

/* x as d.ddddde+XX (scientific), exponent found by scaling. */
static void print_sci(double x, int prec)
{
    int e = 0;
    if (x < 0) {
        putchar_port('-');
        x = -x;
    }
    if (x != 0.0) {
        while (x >= 10.0) {
            x /= 10.0;
            e++;
        }
        while (x < 1.0) {
            x *= 10.0;
            e--;
        }
    }
    print_fixed(x, prec);
    printf("e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
}

static double harmonic(int n)
{
    double s = 0.0;
    for (int i = 1; i <= n; i++)
        s += 1.0 / i;
    return s;
}

static double leibniz_pi(int n)
{
    double s = 0.0, sign = 1.0;
    for (int i = 0; i < n; i++) {
        s += sign / (2 * i + 1);
        sign = -sign;
    }
    return 4.0 * s;
}

static double newton_sqrt(double a)
{
    double x = a > 1.0 ? a : 1.0;
    for (int i = 0; i < 60; i++)
        x = 0.5 * (x + a / x);
    return x;
}

static float basel_float(int n)
{
    float s = 0.0f;
    for (int i = n; i >= 1; i--)
        s += 1.0f / ((float)i * (float)i);
    return s;
}

#define N 8
static double ma[N][N], mb[N][N], mc[N][N];

static void matmul(void)
{
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            ma[i][j] = (i + 1) * 0.5 - j * 0.25;
            mb[i][j] = (i == j) ? 2.0 : 1.0 / (1 + i + j);
        }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < N; k++)
                s += ma[i][k] * mb[k][j];
            mc[i][j] = s;
        }
}

#define M 1000
static int ia[M], ib[M];
static short sa[M], sb[M];
static unsigned char bytes[M];
static float fa[M], fb[M];

struct rec {
    int id;
    double weight;
    char name[20];
    short tags[6];
};

static struct rec recs[16];

static void sort_doubles(double *v, int n)
{
    for (int i = 1; i < n; i++) {
        double x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

int main(void)
{
    printf("vtx fp guest, %d-bit code\n", (int)(sizeof(void *) * 8));

    double h = harmonic(1000);
    printf("harmonic(1000) = ");
    print_fixed(h, 12);
    printf("\n");
    mix(bits_of(h));

    double pi = leibniz_pi(20000);
    printf("pi ~ ");
    print_fixed(pi, 10);
    printf(" sci ");
    print_sci(pi * 12345.678, 6);
    printf("\n");
    mix(bits_of(pi));

    double r2 = newton_sqrt(2.0), r10 = newton_sqrt(1e10);
    printf("sqrt: ");
    print_fixed(r2, 15);
    printf(" ");
    print_fixed(r10, 3);
    printf(" ");
    print_sci(newton_sqrt(3e-7), 8);
    printf("\n");
    mix(bits_of(r2));
    mix(bits_of(r10));

    float bf = basel_float(3000);
    printf("basel(float) = ");
    print_fixed(bf, 7);
    printf("  pi^2/6 = ");
    print_fixed(pi * pi / 6.0, 7);
    printf("\n");
    mix((u64)(u32)(bf * 1e7f));

    matmul();
    double tr = 0.0;
    for (int i = 0; i < N; i++)
        tr += mc[i][i];
    printf("matmul: trace ");
    print_fixed(tr, 9);
    printf(" c[3][5] ");
    print_fixed(mc[3][5], 9);
    printf(" c[7][0] ");
    print_sci(mc[7][0], 9);
    printf("\n");
    mix(bits_of(tr));

    /* conversions: truncation toward zero, rounding in the FPU's mode */
    volatile double vneg = -2.5, vbig = 1e18, vmid = 3.999999999, v3e9 = 3e9;
    int t1 = (int)vneg;
    long long t2 = (long long)vbig;
    int t3 = (int)vmid;
    unsigned t4 = (unsigned)v3e9;
    printf("conv: %d %lld %d %u", t1, t2, t3, t4);
#ifdef __x86_64__
    volatile u64 big = 0xFFFFFFFFFFFFF800ull;
    double db = (double)big;
    u64 back = (u64)(db / 2.0);
    printf(" %llx", back);
#endif
    volatile int vi = -7;
    double dv = vi;
    printf(" %d\n", (int)(dv * dv * dv));
    mix((u64)t2 ^ (u64)(u32)t1 ^ t4);

    /* long double: the x87 in every mode */
    long double ld = 1.0L;
    for (int i = 1; i <= 25; i++)
        ld *= i;
    long double third = 1.0L / 3.0L;
    printf("long double: 25! ~ ");
    print_sci((double)ld, 12);
    printf(" third*3-1 = ");
    print_sci((double)(third * 3.0L - 1.0L), 3);
    printf(" %d\n", (int)(sizeof(long double)));
    mix(bits_of((double)ld));

    /* integer loops gcc vectorizes at -O2/-O3 */
    for (int i = 0; i < M; i++) {
        ia[i] = i * i * 3 + 7;
        ib[i] = (i ^ 0x55) - 300;
        sa[i] = (short)(i * 37);
        sb[i] = (short)(1000 - i);
        bytes[i] = (unsigned char)(i * 13 + (i >> 3));
    }
    long long sum = 0;
    int mx = -2147483647 - 1, mn = 2147483647;
    for (int i = 0; i < M; i++) {
        sum += ia[i] + ib[i];
        mx = ia[i] - ib[i] > mx ? ia[i] - ib[i] : mx;
        mn = ib[i] < mn ? ib[i] : mn;
    }
    int dot = 0;
    for (int i = 0; i < M; i++)
        dot += sa[i] * sb[i];
    unsigned hist[4] = {0, 0, 0, 0};
    for (int i = 0; i < M; i++)
        hist[bytes[i] >> 6]++;
    unsigned char bmax = 0;
    for (int i = 0; i < M; i++)
        bmax = bytes[i] > bmax ? bytes[i] : bmax;
    printf("ints: sum %lld max %d min %d dot %d hist %u %u %u %u bmax %u\n", sum, mx, mn, dot,
           hist[0], hist[1], hist[2], hist[3], bmax);
    mix((u64)sum ^ ((u64)(u32)dot << 32));

    /* float loops */
    for (int i = 0; i < M; i++) {
        fa[i] = (float)i * 0.001f + 1.0f;
        fb[i] = 2.0f - (float)i * 0.0005f;
    }
    float fdot = 0.0f, fmx = -1e30f;
    for (int i = 0; i < M; i++) {
        fdot += fa[i] * fb[i];
        fmx = fa[i] * fb[i] > fmx ? fa[i] * fb[i] : fmx;
    }
    for (int i = 0; i < M; i++)
        fa[i] = fa[i] * 0.5f + fb[i];
    printf("floats: dot ");
    print_fixed(fdot, 3);
    printf(" max ");
    print_fixed(fmx, 6);
    printf(" fa[999] ");
    print_fixed(fa[999], 6);
    printf("\n");
    mix((u64)(u32)(fdot * 8.0f));

    /* structure copies and zeroing (SSE moves in 64-bit code) */
    for (int i = 0; i < 16; i++) {
        struct rec r;
        memset(&r, 0, sizeof r);
        r.id = i * 7;
        r.weight = i * 1.25 - 3.0;
        for (int k = 0; k < 6; k++)
            r.tags[k] = (short)(i * k);
        r.name[0] = (char)('a' + i);
        r.name[1] = (char)('z' - i);
        recs[i] = r;
    }
    struct rec swap = recs[3];
    recs[3] = recs[12];
    recs[12] = swap;
    double wsum = 0.0;
    int tsum = 0;
    for (int i = 0; i < 16; i++) {
        wsum += recs[i].weight * (i + 1);
        for (int k = 0; k < 6; k++)
            tsum += recs[i].tags[k] * (i + 1);
    }
    printf("structs: %s %s %d ", recs[3].name, recs[12].name, recs[3].id);
    print_fixed(wsum, 4);
    printf(" %d\n", tsum);
    mix(bits_of(wsum) ^ (u64)tsum);

    /* sorting doubles, comparisons, min/max */
    double dv8[12] = {3.5, -1.25, 1e-3, 42.0, -0.0, 7.75, 1e6, -1e-6, 2.5, 2.5, 0.1, -33.0};
    sort_doubles(dv8, 12);
    printf("sorted:");
    for (int i = 0; i < 12; i++) {
        printf(" ");
        print_fixed(dv8[i], 4);
    }
    printf("\n");
    double lo = dv8[0], hi = dv8[0];
    for (int i = 1; i < 12; i++) {
        lo = dv8[i] < lo ? dv8[i] : lo;
        hi = dv8[i] > hi ? dv8[i] : hi;
    }
    printf("range ");
    print_sci(hi - lo, 5);
    printf("\n");
    mix(bits_of(hi - lo));

    printf("checksum %08x\n", checksum);
    return (int)checksum;
}
