/* The guests' runtime (see rt.h).  The memory functions are written as
 * plain loops; loop-pattern recognition is off for them so that gcc does not
 * turn memset's own loop into a call to memset. */
#include "rt.h"

#define NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))

NO_LIBCALL void *memcpy(void *dst, const void *src, size_t n)
{
    u8 *d = dst;
    const u8 *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

NO_LIBCALL void *memmove(void *dst, const void *src, size_t n)
{
    u8 *d = dst;
    const u8 *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        d += n;
        s += n;
        while (n--)
            *--d = *--s;
    }
    return dst;
}

NO_LIBCALL void *memset(void *dst, int c, size_t n)
{
    u8 *d = dst;
    while (n--)
        *d++ = (u8)c;
    return dst;
}

NO_LIBCALL int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x < *y ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (u8)*a - (u8)*b;
}

#ifndef __x86_64__
/* 64-bit division for the 32-bit build: gcc calls these libgcc helpers for
 * u64/i64 '/' and '%'.  Restoring shift-and-subtract, one quotient bit per
 * step; a zero divisor gives an all-ones quotient (the callers never pass one). */
static u64 udivmod64(u64 n, u64 d, u64 *rem)
{
    u64 q = 0, r = 0;
    int i;
    for (i = 63; i >= 0; i--) {
        r = (r << 1) | ((n >> i) & 1);
        if (r >= d) {
            r -= d;
            q |= 1ULL << i;
        }
    }
    if (rem)
        *rem = r;
    return q;
}

u64 __udivdi3(u64 n, u64 d)
{
    return udivmod64(n, d, 0);
}

/* Quotient and remainder at once: gcc calls this for a '/' and '%' pair. */
u64 __udivmoddi4(u64 n, u64 d, u64 *rem)
{
    return udivmod64(n, d, rem);
}

u64 __umoddi3(u64 n, u64 d)
{
    u64 r;
    udivmod64(n, d, &r);
    return r;
}

/* Signed: truncation toward zero, the remainder takes the dividend's sign. */
i64 __divdi3(i64 n, i64 d)
{
    int neg = (n < 0) != (d < 0);
    u64 q = udivmod64(n < 0 ? -(u64)n : (u64)n, d < 0 ? -(u64)d : (u64)d, 0);
    return neg ? -(i64)q : (i64)q;
}

i64 __moddi3(i64 n, i64 d)
{
    u64 r;
    udivmod64(n < 0 ? -(u64)n : (u64)n, d < 0 ? -(u64)d : (u64)d, &r);
    return n < 0 ? -(i64)r : (i64)r;
}

/* Bit scans of a 64-bit value, which the 32-bit build calls at -O0. */
int __ctzdi2(u64 x)
{
    u32 lo = (u32)x;
    return lo ? __builtin_ctz(lo) : 32 + __builtin_ctz((u32)(x >> 32));
}

int __clzdi2(u64 x)
{
    u32 hi = (u32)(x >> 32);
    return hi ? __builtin_clz(hi) : 32 + __builtin_clz((u32)x);
}
#endif

#ifdef GUEST_NATIVE
/* The same code as a Linux user program on the host CPU (the native oracle of
 * tests/test_guests_fp.py): each character is a write(1, ...) system call. */
void putchar_port(char c)
{
    long ret;
#ifdef __x86_64__
    __asm__ volatile("syscall" : "=a"(ret) : "a"(1L), "D"(1L), "S"(&c), "d"(1L) : "rcx", "r11", "memory");
#else
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(4L), "b"(1L), "c"(&c), "d"(1L) : "memory");
#endif
    (void)ret;
}
#else
void putchar_port(char c)
{
    outb(DEBUG_PORT, (u8)c);
}
#endif

void puts_port(const char *s)
{
    while (*s)
        putchar_port(*s++);
    putchar_port('\n');
}

/* Digits of v in base 10 or 16, most significant first, into buf (no NUL);
 * returns the count. */
static int utoa(u64 v, unsigned base, int upper, char *buf)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0, i;
    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    for (i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

/* printf with %d %i %u %x %X %c %s %p %%, the length modifiers l and ll,
 * a field width, and the flags '-' and '0'. */
int vprintf_port(const char *fmt, va_list ap)
{
    int count = 0;
    for (; *fmt; fmt++) {
        char buf[24];
        const char *s = buf;
        int len, width = 0, left = 0, zero = 0, lng = 0, neg = 0, pad;
        u64 v;
        if (*fmt != '%') {
            putchar_port(*fmt);
            count++;
            continue;
        }
        fmt++;
        for (;; fmt++) {
            if (*fmt == '-')
                left = 1;
            else if (*fmt == '0')
                zero = 1;
            else
                break;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng++;
            fmt++;
        }
        switch (*fmt) {
        case 'd':
        case 'i':
            if (lng >= 2) {
                i64 x = va_arg(ap, i64);
                neg = x < 0;
                v = neg ? -(u64)x : (u64)x;
            } else if (lng == 1) {
                long x = va_arg(ap, long);
                neg = x < 0;
                v = neg ? -(u64)(i64)x : (u64)x;
            } else {
                int x = va_arg(ap, int);
                neg = x < 0;
                v = neg ? -(u64)(i64)x : (u64)x;
            }
            len = utoa(v, 10, 0, buf);
            break;
        case 'u':
        case 'x':
        case 'X':
            if (lng >= 2)
                v = va_arg(ap, u64);
            else if (lng == 1)
                v = va_arg(ap, unsigned long);
            else
                v = va_arg(ap, unsigned);
            len = utoa(v, *fmt == 'u' ? 10 : 16, *fmt == 'X', buf);
            break;
        case 'p':
            v = (unsigned long)va_arg(ap, void *);
            buf[0] = '0';
            buf[1] = 'x';
            len = 2 + utoa(v, 16, 0, buf + 2);
            break;
        case 'c':
            buf[0] = (char)va_arg(ap, int);
            len = 1;
            break;
        case 's':
            s = va_arg(ap, const char *);
            len = (int)strlen(s);
            break;
        case '%':
            buf[0] = '%';
            len = 1;
            break;
        default:                       /* unknown: print it as it is */
            buf[0] = '%';
            buf[1] = *fmt;
            len = 2;
            if (!*fmt)
                return count;
            break;
        }
        pad = width - len - neg;
        if (!left && !zero)
            for (; pad > 0; pad--, count++)
                putchar_port(' ');
        if (neg) {
            putchar_port('-');
            count++;
        }
        if (!left && zero)
            for (; pad > 0; pad--, count++)
                putchar_port('0');
        for (int i = 0; i < len; i++, count++)
            putchar_port(s[i]);
        for (; left && pad > 0; pad--, count++)
            putchar_port(' ');
    }
    return count;
}

int printf_port(const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vprintf_port(fmt, ap);
    va_end(ap);
    return n;
}
