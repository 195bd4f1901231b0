/* Guest 1: formatted output through port 0xE9, and the code shapes gcc emits
 * for ordinary C: recursion, a sort through function pointers, 64-bit
 * arithmetic and division, switch statements (jump tables), struct copies
 * (rep movs or a memcpy call), memset/memcpy loops, bit tricks (rotates,
 * byte swaps, bit scans) and conditional moves and sets.
 *
 * main returns a checksum of the results, which the test also asserts. */
#include "rt.h"

static unsigned fib(unsigned n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static u64 fact(unsigned n)
{
    return n ? n * fact(n - 1) : 1;
}

/* --- a qsort-like sort through a comparison function ------------------- */

typedef int (*cmp_fn)(const void *, const void *);

static void swap_mem(void *a, void *b, size_t size)
{
    u8 *x = a, *y = b;
    while (size--) {
        u8 t = *x;
        *x++ = *y;
        *y++ = t;
    }
}

/* Quicksort (Lomuto partition, last element as the pivot) of n elements. */
static void sort(void *base, size_t n, size_t size, cmp_fn cmp)
{
    u8 *b = base;
    size_t i, store = 0;
    if (n < 2)
        return;
    for (i = 0; i + 1 < n; i++)
        if (cmp(b + i * size, b + (n - 1) * size) < 0)
            swap_mem(b + i * size, b + store++ * size, size);
    swap_mem(b + store * size, b + (n - 1) * size, size);
    sort(b, store, size, cmp);
    sort(b + (store + 1) * size, n - store - 1, size, cmp);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_int_rev(const void *a, const void *b)
{
    return cmp_int(b, a);
}

struct person {
    char name[12];
    int age;
    i64 id;
};

static int cmp_person(const void *a, const void *b)
{
    const struct person *p = a, *q = b;
    if (p->age != q->age)
        return p->age < q->age ? -1 : 1;
    return strcmp(p->name, q->name);
}

/* --- switch statements ------------------------------------------------ */

static int calc(int op, int a, int b)
{
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return a / b;
    case 4: return a % b;
    case 5: return a << b;
    case 6: return a >> b;
    case 7: return a & b;
    case 8: return a | b;
    case 9: return a ^ b;
    default: return -1;
    }
}

static const char *opname(int op)
{
    switch (op) {
    case 0: return "add";
    case 1: return "sub";
    case 2: return "mul";
    case 3: return "div";
    case 4: return "mod";
    case 5: return "shl";
    case 6: return "sar";
    case 7: return "and";
    case 8: return "or";
    case 9: return "xor";
    default: return "?";
    }
}

/* --- struct copies ---------------------------------------------------- */

struct block {
    int v[30];
    char tag[16];
};

struct big {
    u32 words[256];
};

static struct block make_block(int seed)
{
    struct block b;
    int i;
    for (i = 0; i < 30; i++)
        b.v[i] = seed * i + 1;
    memcpy(b.tag, "block-tag", 10);
    return b;
}

static u32 sum_block(struct block b)          /* passed by value: a copy */
{
    u32 s = 0;
    int i;
    for (i = 0; i < 30; i++)
        s += b.v[i];
    return s + (u32)strlen(b.tag);
}

static struct big big_a, big_b;

/* --- bits ------------------------------------------------------------- */

static u32 rotl32(u32 x, unsigned r)
{
    return (x << (r & 31)) | (x >> ((32 - r) & 31));
}

static u64 rotr64(u64 x, unsigned r)
{
    return (x >> (r & 63)) | (x << ((64 - r) & 63));
}

static int popcount64(u64 x)
{
    int n = 0;
    while (x) {
        x &= x - 1;
        n++;
    }
    return n;
}

static int max3(int a, int b, int c)
{
    int m = a > b ? a : b;
    return m > c ? m : c;
}

static void reverse(char *s)
{
    size_t i, n = strlen(s);
    for (i = 0; i < n / 2; i++) {
        char t = s[i];
        s[i] = s[n - 1 - i];
        s[n - 1 - i] = t;
    }
}

static u32 checksum;

static void mix(u64 v)
{
    checksum = rotl32(checksum, 5) ^ (u32)v ^ (u32)(v >> 32);
}

int main(void)
{
    static int nums[] = {42, -7, 19, 0, 1000, -300, 7, 7, 65535, -1, 12, 3};
    static struct person people[] = {
        {"ada", 36, 1815}, {"grace", 85, 1906}, {"alan", 41, 1912},
        {"edsger", 72, 1930}, {"barbara", 36, 1939}, {"donald", 85, 1938},
    };
    const size_t nn = sizeof(nums) / sizeof(nums[0]);
    const size_t np = sizeof(people) / sizeof(people[0]);
    char buf[64];
    size_t i;
    int k;

    printf("vtx guest: printf over port 0x%x, %u-bit code\n", DEBUG_PORT, (unsigned)(sizeof(void *) * 8));
    printf("ints: %d %d %i %u %05d [%-6d] [%6d]\n", 0, -1, 2147483647, 4294967295u, 42, -12, 345);
    printf("hex: %x %X %08x %lx %llx\n", 0xdeadbeefu, 0xcafebabeu, 0x1234u, 255ul,
           0x0123456789abcdefULL);
    printf("64-bit: %lld %lld %llu\n", (i64)0x7fffffffffffffffLL, (i64)(-0x7fffffffffffffffLL - 1),
           0xffffffffffffffffULL);
    printf("chars: %c%c%c %s|%8s|%-8s| 100%%\n", 'v', 't', 'x', "str", "right", "left");

    /* recursion */
    printf("fib:");
    for (k = 0; k <= 20; k += 4) {
        printf(" %u", fib(k));
        mix(fib(k));
    }
    printf("\nfact(20) = %llu\n", fact(20));
    mix(fact(20));

    /* 64-bit arithmetic and division */
    {
        volatile u64 big = 0xfedcba9876543210ULL;
        volatile u64 d = 1000000007ULL;
        volatile i64 neg = -1234567890123LL;
        volatile i64 sd = 1000;
        u64 q = big / d, r = big % d;
        printf("u64: %llu / %llu = %llu rem %llu\n", (u64)big, (u64)d, q, r);
        printf("i64: %lld / %lld = %lld rem %lld\n", (i64)neg, (i64)sd, neg / sd, neg % sd);
        printf("mul: %llx shifts: %llx %llx %llx\n", big * 0x9e3779b97f4a7c15ULL, big << 13, big >> 7,
               (u64)(neg >> 9));
        mix(q);
        mix(r);
        mix((u64)(neg / sd));
        mix((u64)(neg % sd));
    }

    /* sorting through function pointers */
    sort(nums, nn, sizeof(nums[0]), cmp_int);
    printf("sorted:");
    for (i = 0; i < nn; i++) {
        printf(" %d", nums[i]);
        mix((u32)nums[i]);
    }
    sort(nums, nn, sizeof(nums[0]), cmp_int_rev);
    printf("\nreversed:");
    for (i = 0; i < nn; i++)
        printf(" %d", nums[i]);
    sort(people, np, sizeof(people[0]), cmp_person);
    printf("\npeople:");
    for (i = 0; i < np; i++) {
        printf(" %s(%d,%lld)", people[i].name, people[i].age, people[i].id);
        mix((u64)people[i].id);
    }
    printf("\n");

    /* switch with a jump table */
    for (k = 0; k <= 10; k++) {
        int v = calc(k, 100, 3);
        printf("%s=%d%c", opname(k), v, k == 10 ? '\n' : ' ');
        mix((u32)v);
    }

    /* struct copies and memset/memcpy */
    {
        struct block b1 = make_block(3), b2;
        b2 = b1;                       /* struct assignment */
        b2.v[0] = 99;
        printf("blocks: %u %u %s\n", sum_block(b1), sum_block(b2), b2.tag);
        mix(sum_block(b2));
        memset(&big_a, 0xA5, sizeof(big_a));
        for (i = 0; i < 256; i++)
            big_a.words[i] ^= (u32)i * 0x01010101u;
        big_b = big_a;                 /* 1 KiB struct copy */
        big_b.words[255] = 0;
        printf("big: %08x %08x %d %d\n", big_b.words[1], big_b.words[128],
               memcmp(&big_a, &big_b, sizeof(big_a)) > 0, memcmp(&big_a, &big_a, sizeof(big_a)));
        mix(big_b.words[200]);
        memmove(buf, "overlapping-move", 17);
        memmove(buf + 4, buf, 12);
        printf("memmove: %s\n", buf);
    }

    /* bits, conditional moves and sets */
    {
        volatile u32 x = 0x80000001u;
        volatile u64 y = 0x0123456789abcdefULL;
        printf("rot: %08x %08x %016llx\n", rotl32(x, 1), rotl32(x, 31), rotr64(y, 12));
        printf("bswap: %08x %016llx\n", __builtin_bswap32(x), (u64)__builtin_bswap64(y));
        printf("scan: ctz=%d clz=%d ctzll=%d clzll=%d pop=%d\n", __builtin_ctz(x & ~1u), __builtin_clz(x >> 4),
               __builtin_ctzll(y & ~0xfULL), __builtin_clzll(y), popcount64(y));
        printf("max3: %d %d %d  lt: %d %d\n", max3(1, 9, 4), max3(-5, -9, -6), max3(7, 7, 8),
               (int)x < 0, x < 5u);
        mix(rotr64(y, 12));
        mix((u64)__builtin_bswap64(y));
    }

    memcpy(buf, "!dlrow olleh", 13);
    reverse(buf);
    puts(buf);
    printf("checksum %08x\n", checksum);
    return (int)checksum;
}
