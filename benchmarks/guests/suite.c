/* A small compiled workload for the interpreter benchmarks
 * (benchmarks/test_compiled.py): the kinds of kernels embedded benchmark
 * suites are made of, written for vtx.  Freestanding, no libc: the image is
 * loaded at 0x1000 and entered at _start with flat segments and a stack;
 * main's return value (a checksum of every kernel's result) is left in EAX
 * at the HLT.
 *
 * Every kernel builds its input at run time from one pseudo-random stream,
 * so the compiler cannot fold the work away and a run does not depend on
 * memory left over from the previous run (the benchmark re-runs the same
 * VM).  Only 32-bit integer arithmetic on values, never on addresses, goes
 * into the checksum: the -m32 and -m64 builds return the same value.
 */

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

/* Kernel repetitions: sized for a few tens of millions of instructions. */
#define ITERATIONS 200

/* The entry: call main, then halt where the host expects the exit (the
 * symbol is in the linker map; call rel32 is five bytes in both modes). */
__asm__(".section .text.start, \"ax\"\n"
        ".globl _start\n"
        "_start:\n"
        "    call main\n"
        ".globl halt\n"
        "halt:\n"
        "    hlt\n"
        "    jmp halt\n"
        ".previous\n");

/* Read once at start: volatile, so the stream's seed is not a constant. */
static volatile u32 seed = 0x2545F491u;
static u32 state;

/* xorshift32 */
static u32 next(void)
{
    u32 x = state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return state = x;
}

static u32 mix(u32 h, u32 v)
{
    h = (h ^ v) * 0x01000193u;
    return h ^ (h >> 15);
}

/* --- linked list: build, walk, merge sort, walk ------------------------- */

#define LIST_LEN 200

struct node {
    struct node *next;
    u32 key;
};

static struct node pool[LIST_LEN];

static struct node *merge(struct node *a, struct node *b)
{
    struct node head, *tail = &head;
    while (a && b) {
        if (b->key < a->key) {
            tail->next = b;
            b = b->next;
        } else {
            tail->next = a;
            a = a->next;
        }
        tail = tail->next;
    }
    tail->next = a ? a : b;
    return head.next;
}

static struct node *sort(struct node *list)
{
    if (!list || !list->next)
        return list;
    /* Split in the middle: the fast pointer moves two nodes per step. */
    struct node *slow = list, *fast = list->next;
    while (fast && fast->next) {
        slow = slow->next;
        fast = fast->next->next;
    }
    struct node *second = slow->next;
    slow->next = 0;
    return merge(sort(list), sort(second));
}

static u32 list_kernel(void)
{
    struct node *list = 0, *p;
    for (u32 i = 0; i < LIST_LEN; i++) {
        pool[i].key = next() & 0xFFFF;
        pool[i].next = list;
        list = &pool[i];
    }
    u32 sum = 0;
    for (p = list; p; p = p->next)
        sum += p->key;
    list = sort(list);
    u32 h = sum, pos = 0, prev = 0, ordered = 1;
    for (p = list; p; p = p->next) {
        if (p->key < prev)
            ordered = 0;
        prev = p->key;
        h = mix(h, p->key + pos++);
    }
    return mix(h, ordered);
}

/* --- 16x16 integer matrix multiply ---------------------------------------- */

#define N 16

static int ma[N][N], mb[N][N], mc[N][N];

static u32 matrix_kernel(void)
{
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            ma[i][j] = (int)(next() & 0xFF) - 128;
            mb[i][j] = (int)(next() & 0xFF) - 128;
        }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            int s = 0;
            for (int k = 0; k < N; k++)
                s += ma[i][k] * mb[k][j];
            mc[i][j] = s;
        }
    u32 h = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            h = mix(h, (u32)mc[i][j]);
    return h;
}

/* --- a tokenizer: a state machine over text ------------------------------ */

static const char text[] =
    "let total = 0; for item in [12, 7, 3041, 99, 5] { total += item * 2; }\n"
    "print(total) -- 42 words and 17 numbers, x1 y22 3z (mixed) a_b_c 65535!\n"
    "if (total >= 6400) { warn(\"too many: \", total - 6400); } else { ok(); }\n"
    "the quick brown fox jumps over the lazy dog 1234567 times, then 89 more.\n";

enum { BETWEEN, IN_WORD, IN_NUMBER };
enum { END, SPACE, DIGIT, ALPHA, PUNCT };

static u32 classify(char c)
{
    if (c == 0)
        return END;
    if (c >= '0' && c <= '9')
        return DIGIT;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return ALPHA;
    if (c == ' ' || c == '\n' || c == '\t')
        return SPACE;
    return PUNCT;
}

static u32 tokenize(const char *s)
{
    u32 st = BETWEEN, words = 0, numbers = 0, punct = 0, sum = 0;
    u32 value = 0, len = 0, word = 0, h = 0;
    for (;; s++) {
        char c = *s;
        u32 cls = classify(c);
        /* Inside a token: extend it, or end it and treat c as between tokens. */
        switch (st) {
        case IN_WORD:
            if (cls == ALPHA || cls == DIGIT) {
                len++;
                word = word * 31 + (u32)c;
                continue;
            }
            words++;
            h = mix(h, word ^ len);
            break;
        case IN_NUMBER:
            if (cls == DIGIT) {
                value = value * 10 + (u32)(c - '0');
                continue;
            }
            numbers++;
            sum += value;
            break;
        }
        if (cls == END)
            break;
        if (cls == ALPHA) {
            st = IN_WORD;
            len = 1;
            word = (u32)c;
        } else if (cls == DIGIT) {
            st = IN_NUMBER;
            value = (u32)(c - '0');
        } else {
            st = BETWEEN;
            if (cls == PUNCT)
                punct++;
        }
    }
    return mix(mix(mix(h, words), numbers * 1000 + punct), sum);
}

/* --- CRC-16 (CCITT, bitwise) and CRC-32 (table built at run time) -------- */

#define BUF_LEN 256

static u8 buf[BUF_LEN];
static u32 crc32_table[256];

static u32 crc16(const u8 *p, u32 n)
{
    u16 crc = 0xFFFF;
    while (n--) {
        crc ^= (u16)(*p++ << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (u16)((crc << 1) ^ 0x1021) : (u16)(crc << 1);
    }
    return crc;
}

static void crc32_init(void)
{
    for (u32 i = 0; i < 256; i++) {
        u32 c = i;
        for (int b = 0; b < 8; b++)
            c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        crc32_table[i] = c;
    }
}

static u32 crc32(const u8 *p, u32 n)
{
    u32 crc = 0xFFFFFFFFu;
    while (n--)
        crc = crc32_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static u32 crc_kernel(void)
{
    for (u32 i = 0; i < BUF_LEN; i++)
        buf[i] = (u8)next();
    return mix(crc16(buf, BUF_LEN), crc32(buf, BUF_LEN));
}

/* --- recursion ------------------------------------------------------------ */

static u32 fib(u32 n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

int main(void)
{
    u32 h = 0;
    state = seed;
    crc32_init();
    for (u32 it = 0; it < ITERATIONS; it++) {
        h = mix(h, list_kernel());
        h = mix(h, matrix_kernel());
        h = mix(h, tokenize(text + (it & 3)));
        h = mix(h, crc_kernel());
        h = mix(h, fib(12 + (it & 3)));
    }
    return (int)h;
}
