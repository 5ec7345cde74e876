// regions.c: a guest that writes into every kind of region, for the page scans' tests
// (MemoryRuns, RecycleVM). At start it sets up a brk heap, an anonymous mapping, a private
// file mapping, a thread parked in a futex wait (its stack), a hole (mapped and unmapped
// again) and a read buffer, prints "regions heap=... " with their addresses and reads
// stdin. For each line it reads (the library OS writes it into the read buffer) it maps
// fresh anonymous memory and the file again, copies the line into every region, the
// hole included (the guest's page tables map it all), and prints "done N fresh=... ffile=...".
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FUTEX_WAIT_PRIVATE 128

static atomic_int ready;
static uint32_t park;
static char *volatile tstack;

static void *parked(void *arg) {
	volatile char buf[16384];
	buf[0] = 1;
	tstack = (char *)buf + 8192;
	atomic_store(&ready, 1);
	for (;;)
		syscall(SYS_futex, &park, FUTEX_WAIT_PRIVATE, 0, 0, 0, 0);
	return arg;
}

int main(void) {
	const int rw = PROT_READ | PROT_WRITE;
	char *heap = (char *)syscall(SYS_brk, 0);
	if ((char *)syscall(SYS_brk, heap + 65536) != heap + 65536)
		return 1;
	char *anon = mmap(0, 1 << 20, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open("/data.txt", O_RDONLY);
	char *file = mmap(0, 4096, rw, MAP_PRIVATE, fd, 0);
	char *hole = mmap(0, 2 << 20, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *rbuf = mmap(0, 4096, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fd < 0 || anon == MAP_FAILED || file == MAP_FAILED || hole == MAP_FAILED || rbuf == MAP_FAILED)
		return 2;
	munmap(hole, 2 << 20);
	hole += 1 << 20;
	pthread_t t;
	if (pthread_create(&t, 0, parked, 0))
		return 3;
	while (!atomic_load(&ready))
		sched_yield();
	heap += 8192, anon += 512 << 10, file += 100;
	printf("regions heap=%p anon=%p stack=%p file=%p hole=%p rbuf=%p\n", heap, anon, tstack, file, hole, rbuf + 100);
	fflush(stdout);
	for (int n = 1;; n++) {
		ssize_t k = read(0, rbuf + 100, 200);
		if (k <= 0)
			return 0;
		char *fresh = mmap(0, 65536, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char *ffile = mmap(0, 4096, rw, MAP_PRIVATE, fd, 0);
		if (fresh == MAP_FAILED || ffile == MAP_FAILED)
			return 4;
		fresh += 4096, ffile += 200;
		char *to[] = {heap, anon, tstack, file, hole, fresh, ffile};
		for (unsigned i = 0; i < sizeof to / sizeof to[0]; i++)
			memcpy(to[i], rbuf + 100, k);
		printf("done %d fresh=%p ffile=%p\n", n, fresh, ffile);
		fflush(stdout);
	}
}
