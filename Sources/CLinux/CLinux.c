#define _GNU_SOURCE
#include <sys/socket.h>
#include <crypt.h>
#include <spawn.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "CLinux.h"

#ifndef WEBSOCKSY_PLUGIN_DIR
#define WEBSOCKSY_PLUGIN_DIR "/usr/local/lib/websocksy"
#endif

const char *clinux_default_plugin_dir(void) { return WEBSOCKSY_PLUGIN_DIR; }

char *clinux_strptime(const char *text, const char *format, struct tm *parts) {
    return strptime(text, format, parts);
}

int clinux_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}

struct clinux_resolve {
    struct gaicb request;
    struct addrinfo hints;
    char *host;
    char *service;
};

/* Runs on glibc's resolver thread: only wakes the reactor. */
static void clinux_resolve_done(union sigval value) {
    uint64_t one = 1;
    ssize_t ignored = write(value.sival_int, &one, sizeof one);
    (void)ignored;
}

struct clinux_resolve *clinux_resolve_start(const char *host, const char *service, int socktype, int notify_fd) {
    struct clinux_resolve *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->host = strdup(host);
    r->service = strdup(service);
    r->hints.ai_family = AF_UNSPEC;
    r->hints.ai_socktype = socktype;
    r->hints.ai_flags = AI_ADDRCONFIG;
    r->request.ar_name = r->host;
    r->request.ar_service = r->service;
    r->request.ar_request = &r->hints;
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD;
    event.sigev_notify_function = clinux_resolve_done;
    event.sigev_value.sival_int = notify_fd;
    struct gaicb *list[1] = { &r->request };
    if (!r->host || !r->service || getaddrinfo_a(GAI_NOWAIT, list, 1, &event) != 0) {
        free(r->host);
        free(r->service);
        free(r);
        return NULL;
    }
    return r;
}

int clinux_resolve_status(struct clinux_resolve *request) {
    return gai_error(&request->request);
}

struct addrinfo *clinux_resolve_result(struct clinux_resolve *request) {
    return request->request.ar_result;
}

void clinux_resolve_free(struct clinux_resolve *request) {
    if (request->request.ar_result) freeaddrinfo(request->request.ar_result);
    free(request->host);
    free(request->service);
    free(request);
}

const char *clinux_gai_strerror(int code) { return gai_strerror(code); }

int clinux_eai_inprogress(void) { return EAI_INPROGRESS; }

int clinux_crypt_supported(const char *hash) {
    /* libxcrypt calls SHA-crypt $5$ "legacy" (still fine for passwords; which methods are
     * accepted is decided by the caller's list of prefixes). */
    int verdict = crypt_checksalt(hash);
    return verdict == CRYPT_SALT_OK || verdict == CRYPT_SALT_METHOD_LEGACY;
}

int clinux_crypt_matches(const char *password, const char *hash) {
    /* struct crypt_data is about 32 KiB: on the heap, not the worker thread's stack. */
    struct crypt_data *data = calloc(1, sizeof *data);
    if (data == NULL) return 0;
    const char *out = crypt_r(password, hash, data);
    int same = 0;
    size_t n = strlen(hash);
    if (out != NULL && out[0] != '*' && strlen(out) == n) {
        unsigned char diff = 0;
        for (size_t i = 0; i < n; i++) diff |= (unsigned char)out[i] ^ (unsigned char)hash[i];
        same = diff == 0;
    }
    explicit_bzero(data, sizeof *data);
    free(data);
    return same;
}

int clinux_spawn(const char *path, char *const argv[], char *const envp[], const char *directory,
                 int stdio_fd, int stderr_fd, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attributes);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    /* dup2 clears close-on-exec on the copies; every other descriptor of ours is close-on-exec. */
    posix_spawn_file_actions_adddup2(&actions, stdio_fd, 0);
    posix_spawn_file_actions_adddup2(&actions, stdio_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
    if (directory != NULL) posix_spawn_file_actions_addchdir_np(&actions, directory);
    /* The event loop blocks the signals it takes through a signalfd: the program gets none blocked. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setpgroup(&attributes, 0);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    rc = posix_spawn(pid, path, &actions, &attributes, argv, envp);
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

int clinux_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int clinux_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}
