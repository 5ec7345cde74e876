// syscalls.c: exercises the library OS's system calls one by one. Prints "ok NAME" or
// "FAIL NAME: detail" per check; the exit status is the number of failures.
// Expects the root to hold /data.txt ("hello root\n"), /dir/{a,b} and /link -> data.txt.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

static int fails;
#define CHECK(name, cond) do { if (cond) printf("ok %s\n", name); else { printf("FAIL %s: errno %d (%s)\n", name, errno, strerror(errno)); fails++; } } while (0)
static long sys(long n, long a, long b, long c, long d, long e, long f) { return syscall(n, a, b, c, d, e, f); }

int main(void) {
	char buf[256];
	struct stat st;

	CHECK("getpid", getpid() > 0);
	CHECK("gettid", syscall(SYS_gettid) == getpid());
	CHECK("getuid", getuid() == geteuid());

	int fd = open("/data.txt", O_RDONLY);
	CHECK("open", fd >= 0);
	ssize_t n = read(fd, buf, sizeof buf);
	CHECK("read", n == 11 && memcmp(buf, "hello root\n", 11) == 0);
	CHECK("pread", pread(fd, buf, 4, 6) == 4 && memcmp(buf, "root", 4) == 0);
	CHECK("lseek", lseek(fd, 1, SEEK_SET) == 1 && read(fd, buf, 4) == 4 && memcmp(buf, "ello", 4) == 0);
	CHECK("fstat", fstat(fd, &st) == 0 && st.st_size == 11 && S_ISREG(st.st_mode));
	CHECK("stat", stat("/dir/../data.txt", &st) == 0 && st.st_size == 11);
	CHECK("lstat", lstat("/link", &st) == 0 && S_ISLNK(st.st_mode));
	CHECK("stat-follows", stat("/link", &st) == 0 && S_ISREG(st.st_mode));
	CHECK("fstatat", fstatat(AT_FDCWD, "data.txt", &st, 0) == 0 && st.st_size == 11);
	n = readlink("/link", buf, sizeof buf);
	CHECK("readlink", n == 8 && memcmp(buf, "data.txt", 8) == 0);
	CHECK("access", access("/data.txt", R_OK) == 0 && access("/nope", F_OK) == -1 && errno == ENOENT);
	CHECK("access-w-erofs", access("/data.txt", W_OK) == -1 && errno == EROFS);
	CHECK("close", close(fd) == 0 && close(fd) == -1 && errno == EBADF);
	CHECK("open-enoent", open("/missing", O_RDONLY) == -1 && errno == ENOENT);
	CHECK("open-erofs", open("/data.txt", O_WRONLY) == -1 && errno == EROFS);
	CHECK("creat-erofs", open("/new.txt", O_WRONLY | O_CREAT, 0644) == -1 && errno == EROFS);

	DIR *d = opendir("/dir");
	int seen = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (!strcmp(de->d_name, "a") || !strcmp(de->d_name, "b")) seen++;
	CHECK("getdents64", d && seen == 2);
	if (d) closedir(d);

	int dfd = open("/dir", O_RDONLY | O_DIRECTORY);
	CHECK("openat-dirfd", dfd >= 0 && (fd = openat(dfd, "a", O_RDONLY)) >= 0 && read(fd, buf, 1) == 1 && buf[0] == 'A');
	close(fd);
	CHECK("fchdir-getcwd", fchdir(dfd) == 0 && getcwd(buf, sizeof buf) && !strcmp(buf, "/dir"));
	CHECK("chdir", chdir("..") == 0 && getcwd(buf, sizeof buf) && !strcmp(buf, "/"));
	close(dfd);

	int p[2];
	CHECK("pipe2", pipe2(p, O_CLOEXEC) == 0 && write(p[1], "xyz", 3) == 3 && read(p[0], buf, 3) == 3 && memcmp(buf, "xyz", 3) == 0);
	int p2 = dup(p[1]);
	CHECK("dup", p2 > p[1] && write(p2, "q", 1) == 1 && read(p[0], buf, 1) == 1 && buf[0] == 'q');
	CHECK("dup2", dup2(p[1], 50) == 50 && write(50, "r", 1) == 1 && read(p[0], buf, 1) == 1);
	CHECK("dup3", dup3(p[1], 51, O_CLOEXEC) == 51 && fcntl(51, F_GETFD) == FD_CLOEXEC);
	CHECK("fcntl-dupfd", fcntl(p[1], F_DUPFD, 60) == 60);
	CHECK("fcntl-getfl", (fcntl(p[0], F_GETFL) & O_ACCMODE) == O_RDONLY);
	CHECK("fcntl-nonblock", fcntl(p[0], F_SETFL, O_NONBLOCK) == 0 && read(p[0], buf, 1) == -1 && errno == EAGAIN);
	close(p2); close(50); close(51); close(60); close(p[1]);
	fcntl(p[0], F_SETFL, 0);
	CHECK("pipe-eof", read(p[0], buf, 1) == 0);
	close(p[0]);

	CHECK("mkdir-tmp", mkdir("/tmp/d", 0755) == 0 && mkdir("/tmp/d", 0755) == -1 && errno == EEXIST);
	fd = open("/tmp/d/f", O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK("tmp-create", fd >= 0 && write(fd, "tmpdata", 7) == 7);
	CHECK("tmp-readback", lseek(fd, 0, SEEK_SET) == 0 && read(fd, buf, 16) == 7 && memcmp(buf, "tmpdata", 7) == 0);
	CHECK("tmp-ftruncate", ftruncate(fd, 3) == 0 && fstat(fd, &st) == 0 && st.st_size == 3);
	close(fd);
	CHECK("tmp-rename", rename("/tmp/d/f", "/tmp/d/g") == 0 && stat("/tmp/d/g", &st) == 0 && stat("/tmp/d/f", &st) == -1);
	d = opendir("/tmp/d");
	seen = 0;
	while (d && (de = readdir(d))) if (!strcmp(de->d_name, "g")) seen++;
	CHECK("tmp-getdents", d && seen == 1);
	if (d) closedir(d);
	CHECK("tmp-unlink", unlink("/tmp/d/g") == 0 && rmdir("/tmp/d") == 0);
	CHECK("unlink-erofs", unlink("/data.txt") == -1 && errno == EROFS);

	char *m = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK("mmap-anon", m != MAP_FAILED && m[12345] == 0);
	memset(m, 7, 1 << 20);
	CHECK("madvise-dontneed", madvise(m, 8192, MADV_DONTNEED) == 0 && m[0] == 0 && m[8192] == 7);
	CHECK("mprotect", mprotect(m, 4096, PROT_READ) == 0);
	CHECK("munmap", munmap(m, 1 << 20) == 0);
	CHECK("munmap-unaligned", munmap((char *)m + 1, 4096) == -1 && errno == EINVAL);
	fd = open("/data.txt", O_RDONLY);
	m = mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	CHECK("mmap-file", m != MAP_FAILED && memcmp(m, "hello root\n", 11) == 0 && m[11] == 0);
	munmap(m, 4096);
	close(fd);
	long b0 = syscall(SYS_brk, 0);
	CHECK("brk", b0 > 0 && syscall(SYS_brk, b0 + (1 << 16)) == b0 + (1 << 16) && syscall(SYS_brk, 0) == b0 + (1 << 16));
	((char *)b0)[100] = 1;
	CHECK("brk-shrink", syscall(SYS_brk, b0) == b0);

	struct utsname u;
	CHECK("uname", uname(&u) == 0 && !strcmp(u.sysname, "Linux") && !strcmp(u.machine, "x86_64"));
	struct sysinfo si;
	CHECK("sysinfo", sysinfo(&si) == 0 && si.totalram > 0);
	CHECK("getrandom", getrandom(buf, 32, 0) == 32);
	struct rlimit rl;
	CHECK("prlimit", getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 3);
	struct timespec ts, ts2;
	CHECK("clock_gettime", clock_gettime(CLOCK_MONOTONIC, &ts) == 0 && clock_gettime(CLOCK_REALTIME, &ts2) == 0 && ts2.tv_sec > 1600000000);
	struct timespec sl = {0, 2000000};
	CHECK("nanosleep", nanosleep(&sl, 0) == 0);
	struct timeval tv;
	CHECK("gettimeofday", gettimeofday(&tv, 0) == 0 && tv.tv_sec > 1600000000);

	int fw = 5;
	CHECK("futex-wake", sys(SYS_futex, (long)&fw, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0) == 0);
	CHECK("futex-eagain", sys(SYS_futex, (long)&fw, FUTEX_WAIT_PRIVATE, 6, 0, 0, 0) == -1 && errno == EAGAIN);
	struct timespec to = {0, 1000000};
	CHECK("futex-timeout", sys(SYS_futex, (long)&fw, FUTEX_WAIT_PRIVATE, 5, (long)&to, 0, 0) == -1 && errno == ETIMEDOUT);

	struct sigaction sa = {0}, old;
	sa.sa_handler = SIG_IGN;
	CHECK("sigaction", sigaction(SIGPIPE, &sa, 0) == 0 && sigaction(SIGPIPE, 0, &old) == 0 && old.sa_handler == SIG_IGN);
	sigset_t set, oset;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	CHECK("sigprocmask", sigprocmask(SIG_BLOCK, &set, 0) == 0 && sigprocmask(SIG_BLOCK, 0, &oset) == 0 && sigismember(&oset, SIGUSR1));

	CHECK("ioctl-enotty", ioctl(1, 0x5401, buf) == -1 && errno == ENOTTY);
	CHECK("enosys", syscall(999) == -1 && errno == ENOSYS);
	CHECK("efault-write", sys(SYS_write, 1, 8, 5, 0, 0, 0) == -1 && errno == EFAULT);
	CHECK("efault-read", (fd = open("/data.txt", O_RDONLY)) >= 0 && sys(SYS_read, fd, 0x1000, 5, 0, 0, 0) == -1 && errno == EFAULT);
	close(fd);
	CHECK("efault-open", sys(SYS_open, 1, O_RDONLY, 0, 0, 0, 0) == -1 && errno == EFAULT);
	CHECK("efault-stat", sys(SYS_stat, (long)"/data.txt", 0x7ffffffff000L, 0, 0, 0, 0) == -1 && errno == EFAULT);
	CHECK("efault-huge", sys(SYS_write, 1, (long)buf, -1L, 0, 0, 0) == -1 && errno == EFAULT);
	CHECK("ebadf", write(77, "x", 1) == -1 && errno == EBADF);

	struct iovec iov[2] = {{"ab", 2}, {"cd", 2}};
	CHECK("pipe-writev-readv", pipe(p) == 0 && writev(p[1], iov, 2) == 4);
	char r1[1], r2[3];
	struct iovec riov[2] = {{r1, 1}, {r2, 3}};
	CHECK("readv", readv(p[0], riov, 2) == 4 && r1[0] == 'a' && !memcmp(r2, "bcd", 3));
	close(p[0]); close(p[1]);
	fd = open("/tmp/pw", O_RDWR | O_CREAT, 0600);
	CHECK("pwrite", pwrite(fd, "XY", 2, 10) == 2 && pread(fd, buf, 2, 10) == 2 && buf[0] == 'X' && lseek(fd, 0, SEEK_CUR) == 0);
	close(fd);
	umask(077);
	CHECK("umask", umask(022) == 077);
	CHECK("time", time(0) > 1600000000);
	CHECK("clock_getres", clock_getres(CLOCK_MONOTONIC, &ts) == 0 && ts.tv_sec == 0);
	CHECK("clock_getres-einval", clock_getres(12345, &ts) == -1 && errno == EINVAL);
	sl.tv_nsec = 1000000;
	CHECK("clock_nanosleep", clock_nanosleep(CLOCK_MONOTONIC, 0, &sl, 0) == 0);
	cpu_set_t cs;
	CHECK("sched_getaffinity", sched_getaffinity(0, sizeof cs, &cs) == 0 && CPU_COUNT(&cs) == 1);
	CHECK("sched_yield", sched_yield() == 0);
	stack_t ss = {0}, oss;
	ss.ss_sp = malloc(65536); ss.ss_size = 65536;
	CHECK("sigaltstack", sigaltstack(&ss, 0) == 0 && sigaltstack(0, &oss) == 0 && oss.ss_size == 65536);
	char *mr = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mr[0] = 'm';
	char *mr2 = mremap(mr, 8192, 1 << 20, MREMAP_MAYMOVE);
	CHECK("mremap", mr2 != MAP_FAILED && mr2[0] == 'm' && mremap(mr2, 1 << 20, 4096, 0) == mr2);
	CHECK("kill-0", kill(getpid(), 0) == 0 && kill(12345, 0) == -1 && errno == ESRCH);
	CHECK("getppid", getppid() >= 0);
	unsigned long fsb = 0;
	CHECK("arch_prctl-getfs", syscall(SYS_arch_prctl, 0x1003, &fsb) == 0 && fsb != 0);
	CHECK("set_robust_list-einval", syscall(SYS_set_robust_list, 0, 1) == -1 && errno == EINVAL);
	CHECK("mkdirat-renameat", mkdirat(AT_FDCWD, "/tmp/m", 0700) == 0 && renameat(AT_FDCWD, "/tmp/pw", AT_FDCWD, "/tmp/m/pw") == 0 && faccessat(AT_FDCWD, "/tmp/m/pw", R_OK, 0) == 0);
	CHECK("rename-exdev", rename("/tmp/m/pw", "/pw") == -1 && errno == EXDEV);
	CHECK("dev-null", (fd = open("/dev/null", O_RDWR)) >= 0 && write(fd, "x", 1) == 1 && read(fd, buf, 1) == 0);
	close(fd);
	CHECK("proc-absent", open("/proc/self/environ", O_RDONLY) == -1 && errno == ENOENT);
	CHECK("socket-eacces", syscall(SYS_socket, 1, 1, 0) == -1 && errno == EACCES);

	printf("done %d\n", fails);
	return fails;
}
