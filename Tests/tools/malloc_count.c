/*
 * Test tool, preloaded into the gateway: counts malloc, calloc and realloc calls. SIGUSR2 writes
 * the count to the file named by $MALLOC_COUNT_FILE, so a test can measure allocations per message.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong calls;
static void* (*real_malloc)(size_t);
static void* (*real_calloc)(size_t, size_t);
static void* (*real_realloc)(void*, size_t);

/* dlsym may itself calloc before real_calloc is known: serve that from a small static pool. */
static char bootstrap[4096];
static size_t bootstrap_used;

void* malloc(size_t n) {
	if (!real_malloc) real_malloc = dlsym(RTLD_NEXT, "malloc");
	atomic_fetch_add(&calls, 1);
	return real_malloc(n);
}

void* calloc(size_t count, size_t n) {
	if (!real_calloc) {
		size_t size = (count * n + 15) & ~(size_t)15;
		if (bootstrap_used + size <= sizeof bootstrap) {
			void* p = bootstrap + bootstrap_used;
			bootstrap_used += size;
			return p;
		}
		real_calloc = dlsym(RTLD_NEXT, "calloc");
	}
	atomic_fetch_add(&calls, 1);
	return real_calloc(count, n);
}

void* realloc(void* p, size_t n) {
	if (!real_realloc) real_realloc = dlsym(RTLD_NEXT, "realloc");
	atomic_fetch_add(&calls, 1);
	return real_realloc(p, n);
}

static void report(int signo) {
	(void)signo;
	const char* path = getenv("MALLOC_COUNT_FILE");
	if (!path) return;
	char text[32];
	int len = snprintf(text, sizeof text, "%lu\n", atomic_load(&calls));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		ssize_t ignored = write(fd, text, (size_t)len);
		(void)ignored;
		close(fd);
	}
}

static void __attribute__((constructor)) install(void) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = report;
	sigaction(SIGUSR2, &sa, NULL);
}
