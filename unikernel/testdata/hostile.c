// hostile.c: a guest that misbehaves in the way argv[1] names.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
	const char *m = argc > 1 ? argv[1] : "";
	if (!strcmp(m, "null")) { *(volatile int *)0x10 = 1; }
	if (!strcmp(m, "wild")) { *(volatile int *)0x7f0000000000L = 1; }
	if (!strcmp(m, "sysarea")) { printf("%d\n", *(volatile int *)0x1000); }
	if (!strcmp(m, "port")) { __asm__ volatile("outb %%al, $0x80" ::"a"(0)); }
	if (!strcmp(m, "excport")) { __asm__ volatile("outb %%al, $0xf1" ::"a"(0)); }
	if (!strcmp(m, "stubjump")) {
		// Enter the system-call stub directly with IOPL=3 in R11, then try a closed port.
		__asm__ volatile("mov $0x7000, %%rdx; lea 1f(%%rip), %%rcx; mov $0x3202, %%r11; mov $39, %%eax; jmp *%%rdx; 1: outb %%al, $0x80"
				 ::: "rax", "rcx", "rdx", "r11", "memory");
		printf("port 0x80 was writable\n");
		return 0;
	}
	if (!strcmp(m, "hlt")) { __asm__ volatile("hlt"); }
	if (!strcmp(m, "ud2")) { __asm__ volatile("ud2"); }
	if (!strcmp(m, "int80")) { __asm__ volatile("int $0x80"); }
	if (!strcmp(m, "loop")) { for (;;) __asm__ volatile(""); }
	if (!strcmp(m, "sleep")) { struct timespec t = {1000, 0}; nanosleep(&t, 0); }
	if (!strcmp(m, "bomb")) {
		long n = 0;
		for (;;) {
			char *p = malloc(1 << 20);
			if (!p) break;
			memset(p, 1, 1 << 20);
			n++;
		}
		printf("allocated %ld MiB then ENOMEM\n", n);
		return 0;
	}
	if (!strcmp(m, "mmapbomb")) {
		long n = 0;
		while (mmap(0, 1 << 24, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) n++;
		printf("mapped %ld x 16 MiB then errno %d\n", n, errno);
		return 0;
	}
	if (!strcmp(m, "enosys")) {
		long r = syscall(4242);
		printf("syscall 4242 = %ld errno %d\n", r, errno);
		r = syscall(335);
		printf("syscall 335 = %ld errno %d\n", r, errno);
		return 0;
	}
	if (!strcmp(m, "escape")) {
		const char *paths[] = {"../../../../etc/passwd", "/../../etc/passwd", "/dir/../../etc/passwd",
			"/abslink", "/rellink", "/dir/../abslink", "/proc/self/root/etc/passwd", 0};
		for (int i = 0; paths[i]; i++) {
			int fd = open(paths[i], O_RDONLY);
			char buf[64] = {0};
			if (fd >= 0) { read(fd, buf, sizeof buf - 1); close(fd); }
			printf("%s: %s\n", paths[i], fd >= 0 ? buf : strerror(errno));
		}
		return 0;
	}
	if (!strcmp(m, "fds")) {
		int n = 0;
		while (open("/data.txt", O_RDONLY) >= 0) n++;
		printf("opened %d then errno %d\n", n, errno);
		return 0;
	}
	if (!strcmp(m, "output")) {
		char b[4096];
		memset(b, 'x', sizeof b);
		for (int i = 0; i < 1000; i++) write(1, b, sizeof b);
		return 0;
	}
	if (!strcmp(m, "getpid")) {
		long n = argc > 2 ? atol(argv[2]) : 1;
		for (long i = 0; i < n; i++) syscall(SYS_getpid);
		return 0;
	}
	if (!strcmp(m, "echo")) {
		char b[256];
		ssize_t n;
		while ((n = read(0, b, sizeof b)) > 0) write(1, b, n);
		return 0;
	}
	if (!strcmp(m, "abort")) { abort(); }
	if (!strcmp(m, "exit")) { return argc > 2 ? atoi(argv[2]) : 0; }
	printf("unknown mode %s\n", m);
	return 99;
}
