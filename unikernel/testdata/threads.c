// threads.c: threads, futexes, epoll, eventfd, poll and socketpair in a UC. Prints "ok NAME"
// or "FAIL NAME: detail" per check and "done N" (N failures); the exit status is N.
// Modes: (none) all checks; "bomb" creates threads until pthread_create fails; "busy"
// leaves a thread spinning without system calls and exits from main; "spin" spins in
// three threads forever; "touch" writes to memory it never committed.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// <linux/futex.h> (musl-gcc has no kernel headers)
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAKE_OP 5
#define FUTEX_WAIT_BITSET 9
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_WAIT_PRIVATE (FUTEX_WAIT | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAKE_PRIVATE (FUTEX_WAKE | FUTEX_PRIVATE_FLAG)
#define FUTEX_REQUEUE_PRIVATE (FUTEX_REQUEUE | FUTEX_PRIVATE_FLAG)
#define FUTEX_CMP_REQUEUE_PRIVATE (FUTEX_CMP_REQUEUE | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAKE_OP_PRIVATE (FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAIT_BITSET_PRIVATE (FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG)
#define FUTEX_BITSET_MATCH_ANY 0xffffffff
#define FUTEX_OP_ADD 1
#define FUTEX_OP_CMP_EQ 0
#define FUTEX_OP(op, oparg, cmp, cmparg) ((((op) & 0xf) << 28) | (((cmp) & 0xf) << 24) | (((oparg) & 0xfff) << 12) | ((cmparg) & 0xfff))

static int fails;
#define CHECK(name, cond) do { if (cond) printf("ok %s\n", name); else { printf("FAIL %s: errno %d (%s)\n", name, errno, strerror(errno)); fails++; } fflush(stdout); } while (0)

static long futex(void *addr, int op, uint32_t val, const struct timespec *ts, void *addr2, uint32_t val3) {
	return syscall(SYS_futex, addr, op, val, ts, addr2, val3);
}

static long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void msleep(long ms) {
	struct timespec ts = {ms / 1000, ms % 1000 * 1000000};
	nanosleep(&ts, 0);
}

// --- threads ---

static atomic_int counter;
static void *adder(void *arg) {
	for (int i = 0; i < 1000; i++)
		atomic_fetch_add(&counter, 1);
	return (void *)(intptr_t)(syscall(SYS_gettid));
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int shared, turns;
static void *pingpong(void *arg) {
	int me = (int)(intptr_t)arg;
	for (int i = 0; i < 200; i++) {
		pthread_mutex_lock(&mu);
		while (turns % 2 != me)
			pthread_cond_wait(&cv, &mu);
		shared++;
		turns++;
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
	}
	return 0;
}

// --- futex ---

static uint32_t fword, fword2;
static atomic_int woken;
static void *waiter(void *arg) {
	long r = futex(&fword, FUTEX_WAIT_PRIVATE, 0, 0, 0, 0);
	if (r == 0)
		atomic_fetch_add(&woken, 1);
	return 0;
}
static uint32_t sword;
static void *shared_waiter(void *arg) {
	long r = futex(&sword, FUTEX_WAIT, 0, 0, 0, 0);
	if (r == 0)
		atomic_fetch_add(&woken, 1);
	return 0;
}

// --- preemption ---

static atomic_int stop_spin, spinning;
static void *spinner(void *arg) {
	atomic_store(&spinning, 1);
	volatile unsigned long n = 0;
	while (!atomic_load(&stop_spin))
		n++;
	return (void *)n;
}

static int late_fd;
static void *late_writer(void *arg) {
	msleep(30);
	write(late_fd, "z", 1);
	return 0;
}

// Clock across vCPUs: a thread created late reads the clock, then main reads it.
static struct timespec thread_ts;
static void *clock_reader(void *arg) {
	clock_gettime(CLOCK_MONOTONIC, &thread_ts);
	return 0;
}

static long ts_ns(struct timespec t) { return t.tv_sec * 1000000000L + t.tv_nsec; }

static void *idle(void *arg) {
	pause();
	return 0;
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "bomb") == 0) {
		int n = 0;
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setstacksize(&at, 64 << 10);
		int e;
		while ((e = pthread_create(&t, &at, idle, 0)) == 0)
			n++;
		printf("created %d threads then error %d (%s)\n", n, e, strerror(e));
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "touch") == 0) {
		// Write to a PROT_NONE reservation (Linux would fault; a UC's page tables do not):
		// the memory guard must stop this before it costs much host memory.
		size_t n = (size_t)1 << 30;
		char *p = mmap(0, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED) {
			printf("mmap failed\n");
			return 1;
		}
		for (int round = 0; round < 100; round++)
			for (size_t i = 0; i < n; i += 4096)
				p[i] = 1;
		printf("touched 100 GiB unhindered\n");
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "procfd") == 0) {
		// Hold /proc/self/stat open, part read, while blocked in read(0) (a snapshot point).
		int fd = open("/proc/self/stat", O_RDONLY);
		char b[8];
		printf("fd %d read %zd\n", fd, read(fd, b, 3));
		fflush(stdout);
		read(0, b, 1);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "spin") == 0) {
		// Every thread computes forever without a system call.
		pthread_t t;
		pthread_create(&t, 0, spinner, 0);
		pthread_create(&t, 0, spinner, 0);
		printf("spinning\n");
		fflush(stdout);
		spinner(0);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "busy") == 0) {
		pthread_t t;
		pthread_create(&t, 0, spinner, 0);
		while (!atomic_load(&spinning))
			msleep(1);
		msleep(50);
		printf("main runs while a thread spins\n");
		fflush(stdout);
		exit(7); // exit_group must stop the spinning vCPU
	}

	// Threads: create, join (CLONE_CHILD_CLEARTID wake), distinct tids, shared memory.
	pthread_t ts[8];
	void *ret[8];
	for (int i = 0; i < 8; i++)
		pthread_create(&ts[i], 0, adder, 0);
	int distinct = 1;
	for (int i = 0; i < 8; i++) {
		pthread_join(ts[i], &ret[i]);
		if ((intptr_t)ret[i] == getpid())
			distinct = 0;
		for (int j = 0; j < i; j++)
			if (ret[j] == ret[i])
				distinct = 0;
	}
	CHECK("threads-join", atomic_load(&counter) == 8000);
	CHECK("threads-tids", distinct);
	// Reuse: more threads than ever lived at once, one after another.
	for (int i = 0; i < 20; i++) {
		pthread_t t;
		pthread_create(&t, 0, adder, 0);
		pthread_join(t, 0);
	}
	CHECK("threads-reuse", atomic_load(&counter) == 28000);
	pthread_t a, b;
	pthread_create(&a, 0, pingpong, (void *)0);
	pthread_create(&b, 0, pingpong, (void *)1);
	pthread_join(a, 0);
	pthread_join(b, 0);
	CHECK("mutex-condvar", shared == 400);

	// Futex: value mismatch, timeout, wake, bitsets, requeue.
	struct timespec t50 = {0, 50 * 1000000};
	fword = 1;
	errno = 0;
	CHECK("futex-eagain", futex(&fword, FUTEX_WAIT_PRIVATE, 0, 0, 0, 0) == -1 && errno == EAGAIN);
	fword = 0;
	long t0 = now_ms();
	errno = 0;
	CHECK("futex-timeout", futex(&fword, FUTEX_WAIT_PRIVATE, 0, &t50, 0, 0) == -1 && errno == ETIMEDOUT && now_ms() - t0 >= 45);
	struct timespec abs;
	clock_gettime(CLOCK_MONOTONIC, &abs);
	abs.tv_nsec += 30 * 1000000;
	if (abs.tv_nsec >= 1000000000) {
		abs.tv_sec++;
		abs.tv_nsec -= 1000000000;
	}
	t0 = now_ms();
	errno = 0;
	CHECK("futex-bitset-abs-timeout", futex(&fword, FUTEX_WAIT_BITSET_PRIVATE, 0, &abs, 0, FUTEX_BITSET_MATCH_ANY) == -1 && errno == ETIMEDOUT && now_ms() - t0 >= 25);
	CHECK("futex-wake-none", futex(&fword, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0) == 0);

	pthread_t w[4];
	pthread_create(&w[0], 0, shared_waiter, 0);
	msleep(50);
	long n = futex(&sword, FUTEX_WAKE, 1, 0, 0, 0);
	pthread_join(w[0], 0);
	CHECK("futex-shared-wake", n == 1 && atomic_load(&woken) == 1);
	atomic_store(&woken, 0);
	for (int i = 0; i < 4; i++)
		pthread_create(&w[i], 0, waiter, 0);
	msleep(50);
	n = futex(&fword, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
	msleep(20);
	CHECK("futex-wake-one", n == 1 && atomic_load(&woken) == 1);
	// Requeue: wake none, move the other three to fword2, then wake them there.
	errno = 0;
	long moved = futex(&fword, FUTEX_CMP_REQUEUE_PRIVATE, 0, (void *)(uintptr_t)10, &fword2, 1);
	CHECK("futex-cmp-requeue-eagain", moved == -1 && errno == EAGAIN);
	moved = futex(&fword, FUTEX_CMP_REQUEUE_PRIVATE, 0, (void *)(uintptr_t)10, &fword2, 0);
	CHECK("futex-cmp-requeue", moved == 3);
	CHECK("futex-requeued-not-on-old", futex(&fword, FUTEX_WAKE_PRIVATE, 10, 0, 0, 0) == 0);
	msleep(20);
	CHECK("futex-requeued-still-waiting", atomic_load(&woken) == 1);
	n = futex(&fword2, FUTEX_WAKE_PRIVATE, 10, 0, 0, 0);
	for (int i = 0; i < 4; i++)
		pthread_join(w[i], 0);
	CHECK("futex-wake-requeued", n == 3 && atomic_load(&woken) == 4);
	// Plain requeue and wake_op.
	pthread_create(&w[0], 0, waiter, 0);
	msleep(30);
	CHECK("futex-requeue", futex(&fword, FUTEX_REQUEUE_PRIVATE, 0, (void *)(uintptr_t)1, &fword2, 0) == 1);
	fword2 = 5;
	// wake_op: fword2 += 1; wake 1 on fword (none), wake 1 on fword2 if old value == 5.
	n = futex(&fword, FUTEX_WAKE_OP_PRIVATE, 1, (void *)(uintptr_t)1, &fword2, FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 5));
	pthread_join(w[0], 0);
	CHECK("futex-wake-op", n == 1 && fword2 == 6 && atomic_load(&woken) == 5);

	// eventfd and epoll.
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t v = 0;
	errno = 0;
	CHECK("eventfd-empty-eagain", read(efd, &v, 8) == -1 && errno == EAGAIN);
	v = 3;
	write(efd, &v, 8);
	write(efd, &v, 8);
	CHECK("eventfd-sum", read(efd, &v, 8) == 8 && v == 6);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int p[2];
	pipe2(p, O_NONBLOCK | O_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 111}, out[4];
	CHECK("epoll-add-eventfd", epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0);
	ev.data.u64 = 222;
	CHECK("epoll-add-pipe", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
	errno = 0;
	CHECK("epoll-add-twice", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == -1 && errno == EEXIST);
	int rf = open("/data.txt", O_RDONLY);
	errno = 0;
	CHECK("epoll-regular-eperm", epoll_ctl(ep, EPOLL_CTL_ADD, rf, &ev) == -1 && errno == EPERM);
	close(rf);
	t0 = now_ms();
	CHECK("epoll-timeout", epoll_wait(ep, out, 4, 40) == 0 && now_ms() - t0 >= 35);
	write(p[1], "x", 1);
	n = epoll_wait(ep, out, 4, 1000);
	CHECK("epoll-pipe-ready", n == 1 && out[0].data.u64 == 222 && (out[0].events & EPOLLIN));
	CHECK("epoll-level-triggered", epoll_wait(ep, out, 4, 0) == 1);
	char c;
	read(p[0], &c, 1);
	CHECK("epoll-drained", epoll_wait(ep, out, 4, 0) == 0);
	// A writer thread wakes a blocked epoll_wait.
	pthread_t wr;
	late_fd = p[1];
	pthread_create(&wr, 0, late_writer, 0);
	n = epoll_wait(ep, out, 4, 5000);
	pthread_join(wr, 0);
	CHECK("epoll-woken-by-thread", n == 1 && out[0].data.u64 == 222);
	read(p[0], &c, 1);
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 111;
	CHECK("epoll-mod", epoll_ctl(ep, EPOLL_CTL_MOD, efd, &ev) == 0);
	v = 1;
	write(efd, &v, 8);
	CHECK("epoll-eventfd-ready", epoll_wait(ep, out, 4, 1000) == 1 && out[0].data.u64 == 111);
	CHECK("epoll-edge-once", epoll_wait(ep, out, 4, 0) == 0);
	CHECK("epoll-del", epoll_ctl(ep, EPOLL_CTL_DEL, efd, 0) == 0);
	write(efd, &v, 8);
	CHECK("epoll-deleted-silent", epoll_wait(ep, out, 4, 0) == 0);
	close(p[1]);
	n = epoll_wait(ep, out, 4, 0);
	CHECK("epoll-hup", n == 1 && (out[0].events & EPOLLHUP));
	close(p[0]);
	CHECK("epoll-closed-forgotten", epoll_wait(ep, out, 4, 0) == 0);

	// poll on a pipe: a thread writes after 30 ms.
	pipe2(p, 0);
	struct pollfd pf[2] = {{.fd = p[0], .events = POLLIN}, {.fd = 999, .events = POLLIN}};
	CHECK("poll-timeout", poll(pf, 1, 20) == 0);
	CHECK("poll-nval", poll(pf, 2, 0) == 1 && pf[1].revents == POLLNVAL);
	late_fd = p[1];
	pthread_create(&wr, 0, late_writer, 0);
	CHECK("poll-woken-by-thread", poll(pf, 1, 5000) == 1 && pf[0].revents == POLLIN);
	pthread_join(wr, 0);
	close(p[0]);
	close(p[1]);

	// socketpair.
	int sv[2];
	CHECK("socketpair", socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK("socket-send", send(sv[0], "ping", 4, 0) == 4);
	char buf[8] = {0};
	CHECK("socket-recv", recv(sv[1], buf, sizeof buf, 0) == 4 && memcmp(buf, "ping", 4) == 0);
	CHECK("socket-write-read", write(sv[1], "pong", 4) == 4 && read(sv[0], buf, 8) == 4 && memcmp(buf, "pong", 4) == 0);
	errno = 0;
	CHECK("socket-dontwait", recv(sv[0], buf, 8, MSG_DONTWAIT) == -1 && errno == EAGAIN);
	close(sv[1]);
	CHECK("socket-eof", read(sv[0], buf, 8) == 0);

	// Preemption: a thread spins without system calls; this thread still runs and stops it.
	pthread_t sp;
	pthread_create(&sp, 0, spinner, 0);
	while (!atomic_load(&spinning))
		msleep(1);
	msleep(30);
	atomic_store(&stop_spin, 1);
	void *spins;
	pthread_join(sp, &spins);
	CHECK("preempt-busy-thread", spins != 0);

	// Clocks (the vDSO): monotonic never goes back, also across a time-page refresh
	// (every second, at a system call), and agrees with sleeps and other threads.
	struct timespec c0, c1, prev;
	clock_gettime(CLOCK_MONOTONIC, &c0);
	prev = c0;
	int backwards = 0;
	long iters = 0;
	do {
		clock_gettime(CLOCK_MONOTONIC, &c1);
		if (ts_ns(c1) < ts_ns(prev))
			backwards++;
		prev = c1;
		if (++iters % 4096 == 0)
			getppid(); // an exit: lets the VMM refresh the time page
	} while (ts_ns(c1) - ts_ns(c0) < 1200000000L);
	CHECK("clock-monotonic", backwards == 0);
	clock_gettime(CLOCK_MONOTONIC, &c0);
	msleep(100);
	clock_gettime(CLOCK_MONOTONIC, &c1);
	CHECK("clock-vs-nanosleep", ts_ns(c1) - ts_ns(c0) >= 99000000L && ts_ns(c1) - ts_ns(c0) < 5000000000L);
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	long tnow = time(0);
	CHECK("clock-realtime-vs-time", rt.tv_sec - tnow <= 1 && tnow - rt.tv_sec <= 1 && rt.tv_sec > 1700000000L);
	pthread_t cr;
	pthread_create(&cr, 0, clock_reader, 0);
	pthread_join(cr, 0);
	clock_gettime(CLOCK_MONOTONIC, &c1);
	CHECK("clock-across-threads", ts_ns(c1) >= ts_ns(thread_ts));

	printf("done %d\n", fails);
	return fails;
}
