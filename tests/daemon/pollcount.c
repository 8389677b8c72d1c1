/*
 * tests/daemon/pollcount.so, preloaded into qrxferd by spin.test: counts the event loop's
 * epoll_wait calls, and those that asked for no wait and found nothing (a loop spinning
 * until a timer is due). Written to $POLLCOUNT_FILE as "CALLS EMPTY" when the process exits.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
static atomic_ulong calls, spins;
int epoll_wait(int fd, struct epoll_event *ev, int max, int timeout)
{
	static int (*real)(int, struct epoll_event *, int, int);
	int n;
	if (!real)
		real = (int (*)(int, struct epoll_event *, int, int))dlsym(RTLD_NEXT, "epoll_wait");
	n = real(fd, ev, max, timeout);
	calls++;
	if (timeout == 0 && n == 0)
		spins++;
	return n;
}
__attribute__((destructor)) static void report(void)
{
	const char *p = getenv("POLLCOUNT_FILE");
	FILE *f = p ? fopen(p, "w") : NULL;
	if (f) {
		fprintf(f, "%lu %lu\n", (unsigned long)calls, (unsigned long)spins);
		fclose(f);
	}
}
