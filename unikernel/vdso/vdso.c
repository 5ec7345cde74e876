// vdso.c: the UC's vDSO. Built by gen.sh into vdso.so, which vdso.go embeds; the VMM maps
// it user read-only at vdsoAddr and keeps the time page at timePageAddr current.
// clock_gettime, gettimeofday and time read the TSC and the time page without an exit;
// anything else falls back to a system call (a direct write to the system-call port).
#include <stdint.h>

#define TIME_PAGE 0x60000UL

struct timepage {
	volatile uint32_t seq;     // odd while the VMM writes
	uint32_t shift;
	uint64_t tsc0;             // guest TSC at the base point
	uint64_t mono0;            // CLOCK_MONOTONIC ns at tsc0
	uint64_t mult;             // ns = ((tsc - tsc0) * mult) >> shift
	int64_t  realoff;          // CLOCK_REALTIME ns - CLOCK_MONOTONIC ns
	uint64_t ok;               // 0: no usable TSC, always fall back
};

struct ts { long sec, nsec; };
struct tv { long sec, usec; };

static inline uint64_t rdtsc(void) {
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline long sys2(long nr, long a, long b) {
	long ret;
	register long rdi __asm__("rdi") = a;
	register long rsi __asm__("rsi") = b;
	__asm__ volatile("outb %%al, $0xf0" : "=a"(ret) : "a"(nr), "r"(rdi), "r"(rsi) : "rcx", "r11", "memory");
	return ret;
}

// mono returns CLOCK_MONOTONIC in ns and the realtime offset, or 0 when the page says to
// fall back.
static inline int mono(uint64_t *ns, int64_t *off) {
	const struct timepage *p = (const struct timepage *)TIME_PAGE;
	uint32_t s;
	do {
		s = p->seq;
		__asm__ volatile("" ::: "memory");
		if (!p->ok)
			return 0;
		uint64_t d = rdtsc() - p->tsc0;
		if ((int64_t)d < 0)
			d = 0;
		*ns = p->mono0 + (uint64_t)(((unsigned __int128)d * p->mult) >> p->shift);
		*off = p->realoff;
		__asm__ volatile("" ::: "memory");
	} while ((s & 1) || s != p->seq);
	return 1;
}

int __vdso_clock_gettime(int clock, struct ts *t) {
	uint64_t ns;
	int64_t off;
	switch (clock) {
	case 0: case 1: case 4: case 5: case 6: case 7: case 11:
		// REALTIME, MONOTONIC, MONOTONIC_RAW, REALTIME_COARSE, MONOTONIC_COARSE,
		// BOOTTIME, TAI
		if (!mono(&ns, &off))
			break;
		if (clock == 0 || clock == 5 || clock == 11)
			ns += off;
		t->sec = ns / 1000000000;
		t->nsec = ns % 1000000000;
		return 0;
	}
	return sys2(228, clock, (long)t);
}

int __vdso_gettimeofday(struct tv *tv, void *tz) {
	uint64_t ns;
	int64_t off;
	if (!mono(&ns, &off))
		return sys2(96, (long)tv, (long)tz);
	ns += off;
	if (tv) {
		tv->sec = ns / 1000000000;
		tv->usec = ns % 1000000000 / 1000;
	}
	if (tz) {
		((int *)tz)[0] = 0;
		((int *)tz)[1] = 0;
	}
	return 0;
}

long __vdso_time(long *t) {
	uint64_t ns;
	int64_t off;
	if (!mono(&ns, &off))
		return sys2(201, (long)t, 0);
	long s = (ns + off) / 1000000000;
	if (t)
		*t = s;
	return s;
}

int __vdso_getcpu(unsigned *cpu, unsigned *node, void *cache) {
	(void)cache;
	if (cpu)
		*cpu = 0;
	if (node)
		*node = 0;
	return 0;
}

int __vdso_clock_getres(int clock, struct ts *t) {
	return sys2(229, clock, (long)t);
}

int clock_gettime(int, struct ts *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct tv *, void *) __attribute__((weak, alias("__vdso_gettimeofday")));
long time(long *) __attribute__((weak, alias("__vdso_time")));
int getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));
int clock_getres(int, struct ts *) __attribute__((weak, alias("__vdso_clock_getres")));
