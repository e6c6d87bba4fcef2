#ifndef WEBSOCKSY_CLINUX_H
#define WEBSOCKSY_CLINUX_H
/* Linux interfaces that Swift's Glibc module does not export, and small helpers over macros and
 * unions that do not import well. Nothing here holds state. */
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stddef.h>

/* A signal set holding exactly the given signals (sigaddset is a macro in some libcs). */
static inline sigset_t clinux_sigset(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    return set;
}

/* SIG_IGN is a cast macro Swift cannot import. */
static inline int clinux_ignore_signal(int signo) {
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN;
    return sigaction(signo, &sa, NULL);
}

static inline int clinux_errno(void) { return errno; }

/* accept4 is a GNU extension that Swift's Glibc module does not show; defined in CLinux.c. */
int clinux_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);
#endif
