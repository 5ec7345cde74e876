// signals.c: self-sent signals in a UC. Prints "ok NAME" or "FAIL NAME" per check and
// "done N"; the exit status is N. Mode "term" ends by raise(SIGTERM) with no handler.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fails;
#define CHECK(name, cond) do { if (cond) printf("ok %s\n", name); else { printf("FAIL %s\n", name); fails++; } fflush(stdout); } while (0)

static volatile int got, gotcode, nested, onalt;
static volatile uintptr_t handler_sp;
static char altstack[64 << 10];

static void h1(int sig, siginfo_t *si, void *uc) {
	got = si->si_signo;
	gotcode = si->si_code;
	int local;
	handler_sp = (uintptr_t)&local;
}

static void h2(int sig) {
	nested++;
	if (nested == 1)
		raise(SIGUSR2); // blocked while in this handler (no SA_NODEFER): runs after
}

static void halt(int sig) {
	int local;
	onalt = (uintptr_t)&local >= (uintptr_t)altstack && (uintptr_t)&local < (uintptr_t)altstack + sizeof altstack;
}

// pthread_kill: the handler runs on the target thread (at its next system call return).
static volatile int handled_tid, stop_worker;
static void hthread(int sig) { handled_tid = syscall(SYS_gettid); stop_worker = 1; }
static volatile int worker_tid;
static void *worker(void *arg) {
	worker_tid = syscall(SYS_gettid);
	while (!stop_worker)
		getppid();
	return 0;
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "term") == 0) {
		printf("raising SIGTERM\n");
		fflush(stdout);
		raise(SIGTERM);
		printf("still here\n");
		return 0;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = h1;
	sa.sa_flags = SA_SIGINFO;
	CHECK("sigaction", sigaction(SIGUSR1, &sa, 0) == 0);
	volatile double d = 1.5;
	long keep1 = 0x1122334455667788, keep2 = argc * 7;
	CHECK("raise-returns-0", raise(SIGUSR1) == 0);
	CHECK("handler-ran", got == SIGUSR1);
	CHECK("registers-kept", keep1 == 0x1122334455667788 && keep2 == 7 && d == 1.5);
	got = 0;
	CHECK("kill-self", kill(getpid(), SIGUSR1) == 0 && got == SIGUSR1 && gotcode == 0);

	// Blocked: pending until unblocked.
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, &old);
	got = 0;
	raise(SIGUSR1);
	CHECK("blocked-pending", got == 0);
	sigprocmask(SIG_SETMASK, &old, 0);
	CHECK("unblocked-delivered", got == SIGUSR1);

	// A signal raised in a handler waits for the handler to return.
	signal(SIGUSR2, h2);
	raise(SIGUSR2);
	CHECK("nested-after-return", nested == 2);

	// Alternate stack.
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
	CHECK("sigaltstack", sigaltstack(&ss, 0) == 0);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = halt;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGWINCH, &sa, 0);
	raise(SIGWINCH);
	CHECK("on-altstack", onalt);

	// Ignored and default-ignored signals.
	signal(SIGUSR2, SIG_IGN);
	CHECK("ignored", raise(SIGUSR2) == 0);
	signal(SIGCHLD, SIG_DFL);
	CHECK("default-ignored", raise(SIGCHLD) == 0);

	// SA_RESETHAND: the second one takes the default action (for SIGURG: ignore).
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = h1;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigaction(SIGURG, &sa, 0);
	got = 0;
	raise(SIGURG);
	CHECK("resethand-first", got == SIGURG);
	got = 0;
	raise(SIGURG);
	CHECK("resethand-second", got == 0);

	signal(SIGUSR2, hthread);
	pthread_t w;
	pthread_create(&w, 0, worker, 0);
	while (!worker_tid)
		usleep(1000);
	CHECK("pthread-kill", pthread_kill(w, SIGUSR2) == 0);
	pthread_join(w, 0);
	CHECK("handler-on-target-thread", handled_tid == worker_tid && handled_tid != getpid());
	errno = 0;
	CHECK("tgkill-esrch", syscall(SYS_tgkill, getpid(), 99999, SIGUSR2) == -1 && errno == ESRCH);

	printf("done %d\n", fails);
	return fails;
}
