// residue.c: a guest for the memory guard's test across recycled VMs. It prints "ready" and
// reads commands from stdin: "touch" maps 48 MiB of anonymous memory and writes every page
// of it (printing "touched"); "spin" computes for about 800 ms without a system call
// (printing "spun"), long enough for the guard to look at the UC several times.
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void) {
	char line[64];
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		ssize_t k = read(0, line, sizeof line - 1);
		if (k <= 0)
			return 0;
		line[k] = 0;
		if (!strncmp(line, "touch", 5)) {
			size_t n = 48 << 20;
			char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				return 2;
			for (size_t i = 0; i < n; i += 4096)
				p[i] = 1;
			printf("touched\n");
		} else if (!strncmp(line, "spin", 4)) {
			volatile unsigned long x = 0;
			for (double t0 = now(); now() - t0 < 0.8;)
				for (int i = 0; i < 100000; i++)
					x += i;
			printf("spun\n");
		}
		fflush(stdout);
	}
}
