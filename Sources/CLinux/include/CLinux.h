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
#include <malloc.h>
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

#include <sys/eventfd.h>
#include <sys/un.h>
#include <netdb.h>

/* Non-blocking name resolution with glibc's getaddrinfo_a (a GNU extension, wrapped in CLinux.c).
 * A lookup runs on glibc's helper thread; when it completes, 1 is added to `notify_fd` (an eventfd
 * the reactor watches). Poll it with clinux_resolve_status, take the list with clinux_resolve_result,
 * and free the request with clinux_resolve_free once it is no longer in progress. */
struct clinux_resolve;
struct clinux_resolve *clinux_resolve_start(const char *host, const char *service, int socktype, int notify_fd);
/* 0 when done, EAI_INPROGRESS while running, another EAI_ code on failure. */
int clinux_resolve_status(struct clinux_resolve *request);
struct addrinfo *clinux_resolve_result(struct clinux_resolve *request);
void clinux_resolve_free(struct clinux_resolve *request);
const char *clinux_gai_strerror(int code);
int clinux_eai_inprogress(void);

/* The plugin directory chosen at build time (-DWEBSOCKSY_PLUGIN_DIR=...), see the Makefile. */
const char *clinux_default_plugin_dir(void);

/* dlopen/dlsym flags are macros with values Swift does not import everywhere. */
static inline int clinux_rtld_now_local(void) { return RTLD_NOW | RTLD_LOCAL; }

#include <time.h>
/* strptime needs _XOPEN_SOURCE, which Swift's Glibc module is not built with; defined in CLinux.c. */
char *clinux_strptime(const char *text, const char *format, struct tm *parts);

/* accept4 is a GNU extension that Swift's Glibc module does not show; defined in CLinux.c. */
int clinux_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

/* htpasswd checks through libcrypt (bcrypt, SHA-crypt, yescrypt), defined in CLinux.c.
 * clinux_crypt_supported: 1 when libcrypt can check hashes written like `hash` (its method and
 * salt parse). clinux_crypt_matches: 1 when `password` hashes to exactly `hash` (compared in
 * constant time); slow by design (bcrypt), so never called on the event loop. */
int clinux_crypt_supported(const char *hash);
int clinux_crypt_matches(const char *password, const char *hash);

/* exec:// peers, defined in CLinux.c. clinux_spawn starts `path` with posix_spawn (no code of ours
 * runs between fork and exec): stdin and stdout on `stdio_fd`, stderr on `stderr_fd`, in
 * `directory`, in a process group of its own, every signal unblocked and at its default.
 * Returns 0 or an errno value. clinux_pidfd_open: a descriptor that becomes readable when the
 * process exits (Linux 5.3), or -1. */
#include <sys/types.h>
int clinux_spawn(const char *path, char *const argv[], char *const envp[], const char *directory,
                 int stdio_fd, int stderr_fd, pid_t *pid);
int clinux_pidfd_open(pid_t pid);
/* pipe2 with O_CLOEXEC (a GNU extension Swift's Glibc module does not show). */
int clinux_pipe_cloexec(int fds[2]);
#endif
