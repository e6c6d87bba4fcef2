/*
 * upgradefloor: the least a WebSocket-to-TCP gateway can do per upgrade, as a yardstick for the
 * handshake figure of `make bench`.
 *
 *   upgradefloor -p PORT -P PEER_PORT      (both on 127.0.0.1)
 *
 * Per connection it does the kernel work any such gateway must do: accept, read the request,
 * connect to the peer and watch it, answer 101 with the Sec-WebSocket-Accept value, answer the
 * client's Close, close both sockets. It validates nothing, frames nothing and buffers nothing: it
 * is not a server, only the floor under one, so the gateway's handshake rate can be given as a
 * ratio to what this machine allows at all (the load generator and the peer share its cores).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
enum { FREE, REQUEST, OPEN, PEER };
static unsigned char state[MAX_FDS];
static int partner[MAX_FDS];  /* client <-> peer */
static int epfd;
static struct sockaddr_in peer_address;

static void watch(int fd) {
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void close_pair(int fd) {
    int other = partner[fd];
    state[fd] = FREE;
    close(fd);
    if (other >= 0 && state[other] != FREE) {
        state[other] = FREE;
        close(other);
    }
}

static void no_delay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* The request is in `request` (complete): connect the peer, send the 101. */
static void upgrade(int fd, char *request) {
    char *key = strcasestr(request, "\nSec-WebSocket-Key:");
    if (!key) { close_pair(fd); return; }
    key += 19;
    while (*key == ' ') key++;
    struct sha1_ctx sha;
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_init(&sha);
    sha1_update(&sha, 24, (const uint8_t *)key);
    sha1_update(&sha, 36, (const uint8_t *)"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    sha1_digest(&sha, sizeof digest, digest);

    int peer = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (peer < 0 || peer >= MAX_FDS) { if (peer >= 0) close(peer); close_pair(fd); return; }
    no_delay(peer);
    if (connect(peer, (struct sockaddr *)&peer_address, sizeof peer_address) < 0 && errno != EINPROGRESS) {
        close(peer);
        close_pair(fd);
        return;
    }
    state[peer] = PEER;
    partner[peer] = fd;
    partner[fd] = peer;
    watch(peer);

    char response[160];
    int n = sprintf(response, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Accept: ");
    base64_encode_raw(response + n, sizeof digest, digest);
    n += BASE64_ENCODE_RAW_LENGTH(sizeof digest);
    memcpy(response + n, "\r\n\r\n", 4);
    n += 4;
    state[fd] = OPEN;
    if (write(fd, response, n) != n) close_pair(fd);
}

static void client_readable(int fd) {
    char buffer[4096];
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN) return;
        close_pair(fd);
        return;
    }
    if (state[fd] == REQUEST) {
        buffer[n] = 0;
        if (!strstr(buffer, "\r\n\r\n")) { close_pair(fd); return; }  /* one read holds it on loopback */
        upgrade(fd, buffer);
    } else if ((unsigned char)buffer[0] == 0x88 && n >= 8) {
        /* A masked Close with a status code: echo the code, FIN in the same segment, close both. */
        char close_frame[4] = { (char)0x88, 2, buffer[6] ^ buffer[2], buffer[7] ^ buffer[3] };
        send(fd, close_frame, sizeof close_frame, MSG_MORE | MSG_NOSIGNAL);
        close_pair(fd);
    }
}

int main(int argc, char **argv) {
    int port = 0, peer_port = 0, opt;
    while ((opt = getopt(argc, argv, "p:P:")) != -1) {
        if (opt == 'p') port = atoi(optarg);
        else if (opt == 'P') peer_port = atoi(optarg);
    }
    if (!port || !peer_port) { fprintf(stderr, "usage: upgradefloor -p PORT -P PEER_PORT\n"); return 2; }
    peer_address = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(peer_port),
                                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, seconds = 10;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(listener, IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 4096) < 0) {
        perror("upgradefloor: listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    watch(listener);

    struct epoll_event events[256];
    for (;;) {
        int ready = epoll_wait(epfd, events, 256, -1);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (client >= MAX_FDS) { close(client); continue; }
                    no_delay(client);
                    state[client] = REQUEST;
                    partner[client] = -1;
                    watch(client);
                    client_readable(client);  /* deferred accept: the request is usually there */
                }
            } else if (state[fd] == PEER) {
                char discard[4096];
                ssize_t n = read(fd, discard, sizeof discard);
                if (n == 0 || (n < 0 && errno != EAGAIN)) close_pair(fd);
            } else if (state[fd] != FREE) {
                client_readable(fd);
            }
        }
    }
}
