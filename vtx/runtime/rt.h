/* The guests' small runtime: port I/O, the memory functions gcc may call
 * even in freestanding code, and a printf that writes to the debug port
 * 0xE9 (one OUT, so one VM exit, per character). */
#ifndef GUEST_RT_H
#define GUEST_RT_H

#include <stdarg.h>

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;
typedef __SIZE_TYPE__ size_t;

#define DEBUG_PORT 0xE9

static inline void outb(u16 port, u8 v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline u32 inl(u16 port)
{
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

void putchar_port(char c);
void puts_port(const char *s);
int vprintf_port(const char *fmt, va_list ap);
int printf_port(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define printf printf_port
#define puts puts_port

#endif
