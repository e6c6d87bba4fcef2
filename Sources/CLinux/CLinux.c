#define _GNU_SOURCE
#include <sys/socket.h>
#include <crypt.h>
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
    return crypt_checksalt(hash) == CRYPT_SALT_OK;
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
