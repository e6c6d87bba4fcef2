/*
 * deflatebench: a stream of JSON lines through the gateway, compressed with permessage-deflate
 * (RFC 7692) or not, checked byte for byte.
 *
 *   deflatebench -u HOST:PORT -P PEER_PORT [-d SEC | -n MSGS] [-s BYTES] [-o chromium|firefox|none]
 *                [-b MB] [-S SEED] [-T SEC] [-q]
 *
 * One process, two threads. The peer thread listens on 127.0.0.1:PEER_PORT (the gateway runs with
 * -c host=tcp://127.0.0.1:PEER_PORT -c framing=newline -c framing-config=lf) and, once the gateway
 * connects, writes a pre-built buffer of JSON lines in a loop as fast as the socket takes them.
 * The main thread is the WebSocket client: it upgrades (offering permessage-deflate as Chromium
 * does, `client_max_window_bits`, or bare as Firefox does, or nothing), reads frames, inflates
 * compressed messages (raw inflate, window 15, 00 00 ff ff appended to each message, the window
 * reset after each message when the answer has server_no_context_takeover) and compares every
 * byte with what the peer wrote, in order; each message must be exactly one line.
 *
 * The lines are market ticks, trades, order book updates, chat and presence events of 100-300 bytes,
 * generated from SEED (prices walk, sequence numbers and timestamps rise, names and words vary);
 * with -s BYTES each line is instead a batch of such events of about BYTES. The buffer (-b MB)
 * is far longer than any deflate window, so looping over it does not flatter the ratio.
 *
 * -d SEC: count for SEC seconds from the 101. -n MSGS: the peer writes exactly MSGS lines and the
 * run ends when they have all arrived (for callgrind, where time means little). -T: keep trying
 * to connect for SEC seconds (a gateway under valgrind starts slowly).
 *
 * Output: one RESULT line: MBps = inflated payload (10^6 bytes/s), wire_MBps = bytes of frames
 * received, ratio = payload / wire, msgs_per_s; deflate=1 when the gateway accepted the offer,
 * server_ctx=0 when it answered server_no_context_takeover. Exit status 1 on any mismatch.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static char *gen;           /* the lines the peer writes, looped */
static size_t gen_len;
static size_t *line_end;    /* offset after each line's '\n' */
static size_t line_count;
static long long max_msgs;  /* -n: 0 = run for a duration */
static int listen_fd;

static void die(const char *what) { perror(what); exit(1); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the JSON lines ---- */

static uint64_t rng_state;
static uint64_t rnd(void) {  /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static unsigned pick(unsigned n) { return rnd() % n; }

static const char *symbols[] = { "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B", "JPM", "V",
    "UNH", "XOM", "JNJ", "WMT", "MA", "PG", "AVGO", "HD", "CVX", "MRK", "ABBV", "KO", "PEP", "COST", "ADBE",
    "CSCO", "CRM", "TMO", "MCD", "ACN", "NFLX", "AMD", "INTC", "ORCL", "QCOM", "TXN", "IBM", "BA", "CAT", "GE" };
#define NSYM (sizeof symbols / sizeof *symbols)
static const char *venues[] = { "XNAS", "XNYS", "ARCX", "BATS", "EDGX", "IEXG" };
static const char *users[] = { "alice", "bob_k", "carol.m", "dmitri", "eve", "farah_92", "gustavo", "hana",
    "ivan.petrov", "jules", "kenji", "lucia", "mo", "nadia_s", "oscar", "priya", "quentin", "rosa", "sam_w",
    "tomasz", "ulla", "victor.h", "wen", "xavier", "yusuf", "zoe" };
static const char *rooms[] = { "general", "trading-desk", "random", "support", "release-2026-12", "ops-alerts" };
static const char *words[] = { "the", "a", "to", "is", "it", "and", "we", "on", "for", "this", "that", "deploy",
    "build", "failed", "again", "looks", "good", "can", "you", "check", "latency", "spike", "after", "merge",
    "ok", "thanks", "lunch", "meeting", "in", "5", "min", "ticket", "closed", "rollback", "why", "not",
    "price", "moved", "sell", "buy", "limit", "order", "filled", "partial", "market", "open", "close", "today",
    "tomorrow", "PR", "review", "please", ":)", "lol", "agreed", "no", "yes", "maybe", "logs", "server" };
#define N(a) (sizeof a / sizeof *a)

static long long price[NSYM];   /* in cents, random walk */
static unsigned long long seq = 1, ts = 1764460800000ULL;

static int event(char *out, size_t room) {  /* one JSON object, no newline */
    seq++;
    ts += pick(40);
    unsigned s = pick(NSYM);
    price[s] += (long long)pick(21) - 10;
    if (price[s] < 500) price[s] = 500;
    long long p = price[s];
    switch (pick(10)) {
    case 0: case 1: case 2: case 3:
        return snprintf(out, room, "{\"type\":\"tick\",\"seq\":%llu,\"ts\":%llu,\"sym\":\"%s\",\"bid\":%lld.%02lld,"
            "\"ask\":%lld.%02lld,\"bid_size\":%u,\"ask_size\":%u,\"venue\":\"%s\"}", seq, ts, symbols[s],
            p / 100, p % 100, (p + 1 + pick(3)) / 100, (p + 1 + pick(3)) % 100, 100 * (1 + pick(50)),
            100 * (1 + pick(50)), venues[pick(N(venues))]);
    case 4: case 5:
        return snprintf(out, room, "{\"type\":\"trade\",\"seq\":%llu,\"ts\":%llu,\"sym\":\"%s\",\"price\":%lld.%02lld,"
            "\"qty\":%u,\"side\":\"%s\",\"trade_id\":\"T%010llu\",\"venue\":\"%s\",\"conditions\":[\"@\",\"%c\"]}",
            seq, ts, symbols[s], p / 100, p % 100, 1 + pick(2000), pick(2) ? "buy" : "sell",
            (unsigned long long)(rnd() % 10000000000ULL), venues[pick(N(venues))], "FTIZ"[pick(4)]);
    case 6: {
        int n = snprintf(out, room, "{\"type\":\"book\",\"seq\":%llu,\"ts\":%llu,\"sym\":\"%s\",\"bids\":[", seq, ts, symbols[s]);
        for (int side = 0; side < 2; side++) {
            for (int i = 0; i < 3; i++) {
                long long q = side ? p + 1 + i : p - i;
                n += snprintf(out + n, room - n, "%s[%lld.%02lld,%u]", i ? "," : "", q / 100, q % 100, 100 * (1 + pick(90)));
            }
            n += snprintf(out + n, room - n, side ? "]}" : "],\"asks\":[");
        }
        return n;
    }
    case 7: case 8: {
        int n = snprintf(out, room, "{\"type\":\"chat\",\"seq\":%llu,\"ts\":%llu,\"room\":\"%s\",\"user\":{\"id\":%u,"
            "\"name\":\"%s\",\"role\":\"%s\"},\"text\":\"", seq, ts, rooms[pick(N(rooms))], 1000 + pick(90000),
            users[pick(N(users))], pick(8) ? "member" : "moderator");
        for (unsigned i = 0, k = 3 + pick(20); i < k; i++)
            n += snprintf(out + n, room - n, "%s%s", i ? " " : "", words[pick(N(words))]);
        return n + snprintf(out + n, room - n, "\",\"reply_to\":%s}", pick(3) ? "null" : "\"m-4711\"");
    }
    default:
        return snprintf(out, room, "{\"type\":\"presence\",\"seq\":%llu,\"ts\":%llu,\"user\":{\"id\":%u,\"name\":\"%s\"},"
            "\"status\":\"%s\",\"client\":\"web/1.%u.%u\"}", seq, ts, 1000 + pick(90000), users[pick(N(users))],
            (const char *[]){ "online", "away", "offline" }[pick(3)], 40 + pick(5), pick(10));
    }
}

/* Fills `size` bytes (whole lines only) from `seed`; `batch` > 0: lines of about `batch` bytes. */
static void generate(size_t size, uint64_t seed, int batch) {
    rng_state = seed;
    for (size_t i = 0; i < NSYM; i++) price[i] = 2000 + pick(60000);
    gen = malloc(size);
    line_end = malloc(size / 16 * sizeof *line_end);
    if (!gen || !line_end) die("malloc");
    char line[16384];
    for (;;) {
        int n;
        if (batch <= 0) {
            n = event(line, sizeof line);
        } else {
            n = snprintf(line, sizeof line, "{\"type\":\"batch\",\"seq\":%llu,\"events\":[", seq);
            for (int first = 1; n < batch - 80 && n < (int)sizeof line - 1024; first = 0) {
                if (!first) line[n++] = ',';
                n += event(line + n, sizeof line - n);
            }
            n += snprintf(line + n, sizeof line - n, "]}");
        }
        line[n++] = '\n';
        if (gen_len + n > size) break;
        memcpy(gen + gen_len, line, n);
        gen_len += n;
        line_end[line_count++] = gen_len;
    }
}

/* ---- the peer ---- */

static void *peer(void *unused) {
    (void)unused;
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) die("accept");
    /* -n: exactly max_msgs lines, then wait for the end of the run. */
    unsigned long long total = max_msgs ? (max_msgs / line_count) * gen_len
        + (max_msgs % line_count ? line_end[max_msgs % line_count - 1] : 0) : ~0ULL;
    size_t pos = 0;
    while (total > 0) {
        size_t chunk = gen_len - pos < 65536 ? gen_len - pos : 65536;
        if (chunk > total) chunk = total;
        ssize_t n = write(fd, gen + pos, chunk);
        if (n <= 0) return NULL;  /* the gateway closed: the client sees why */
        total -= n;
        pos = (pos + n) % gen_len;
    }
    char sink[256];
    while (read(fd, sink, sizeof sink) > 0) {}
    return NULL;
}

/* ---- the client ---- */

static size_t expect_pos;  /* where the next payload byte must come from in `gen` */
static long long mismatches;

static void check(const unsigned char *data, size_t len) {
    while (len > 0) {
        size_t k = gen_len - expect_pos < len ? gen_len - expect_pos : len;
        if (memcmp(data, gen + expect_pos, k) != 0) {
            if (mismatches++ == 0) fprintf(stderr, "deflatebench: payload differs at stream offset %zu\n", expect_pos);
        }
        data += k;
        len -= k;
        expect_pos = (expect_pos + k) % gen_len;
    }
}

static int connect_gateway(const char *host, int port, double timeout) {
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "deflatebench: bad address %s\n", host); exit(2); }
    double give_up = now() + timeout;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        close(fd);
        if (now() > give_up) die("connect");
        usleep(50000);
    }
}

int main(int argc, char **argv) {
    const char *target = NULL, *offer = "chromium";
    int peer_port = 0, batch = 0, quiet = 0, opt;
    double duration = 4, timeout = 10, size_mb = 4;
    uint64_t seed = 42;
    while ((opt = getopt(argc, argv, "u:P:d:n:s:o:b:S:T:q")) != -1) {
        switch (opt) {
        case 'u': target = optarg; break;
        case 'P': peer_port = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'n': max_msgs = atoll(optarg); break;
        case 's': batch = atoi(optarg); break;
        case 'o': offer = optarg; break;
        case 'b': size_mb = atof(optarg); break;
        case 'S': seed = strtoull(optarg, NULL, 0); break;
        case 'T': timeout = atof(optarg); break;
        case 'q': quiet = 1; break;
        default: target = NULL; peer_port = 0; optind = argc; break;
        }
    }
    const char *extension = !strcmp(offer, "chromium") ? "permessage-deflate; client_max_window_bits"
        : !strcmp(offer, "firefox") ? "permessage-deflate" : !strcmp(offer, "none") ? NULL : "?";
    if (!target || !peer_port || (extension && *extension == '?')) {
        fprintf(stderr, "usage: deflatebench -u HOST:PORT -P PEER_PORT [-d SEC | -n MSGS] [-s BYTES] "
                        "[-o chromium|firefox|none] [-b MB] [-S SEED] [-T SEC] [-q]\n");
        return 2;
    }
    if (!strncmp(target, "ws://", 5)) target += 5;
    char host[256];
    int port;
    if (sscanf(target, "%255[^:]:%d", host, &port) != 2) { fprintf(stderr, "deflatebench: bad target %s\n", target); return 2; }

    generate((size_t)(size_mb * 1048576), seed, batch);

    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in pa = { .sin_family = AF_INET, .sin_port = htons(peer_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(listen_fd, (struct sockaddr *)&pa, sizeof pa) || listen(listen_fd, 4)) die("peer listen");
    pthread_t peer_thread;
    pthread_create(&peer_thread, NULL, peer, NULL);

    /* Upgrade. */
    int fd = connect_gateway(host, port, timeout);
    char request[512];
    int n = snprintf(request, sizeof request, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n", target,
        extension ? "Sec-WebSocket-Extensions: " : "", extension ? extension : "", extension ? "\r\n" : "");
    if (write(fd, request, n) != n) die("write");
    enum { RBUF = 1 << 20 };
    unsigned char *rbuf = malloc(RBUF);
    size_t have = 0;
    char *headers_end = NULL;
    while (!headers_end) {
        ssize_t r = read(fd, rbuf + have, RBUF - 1 - have);
        if (r <= 0) { fprintf(stderr, "deflatebench: no answer to the upgrade\n"); return 1; }
        have += r;
        rbuf[have] = 0;
        headers_end = strstr((char *)rbuf, "\r\n\r\n");
    }
    *headers_end = 0;
    if (strncmp((char *)rbuf, "HTTP/1.1 101", 12)) { fprintf(stderr, "deflatebench: upgrade refused: %s\n", rbuf); return 1; }
    char *ext = strcasestr((char *)rbuf, "\nSec-WebSocket-Extensions:");
    int deflate = ext && strstr(ext, "permessage-deflate");
    int server_ctx = !(ext && strstr(ext, "server_no_context_takeover"));
    char answer[256] = "none";
    if (deflate) snprintf(answer, sizeof answer, "%.*s", (int)strcspn(ext + 27, "\r\n"), ext + 27);
    size_t header_len = (unsigned char *)headers_end + 4 - rbuf;
    memmove(rbuf, rbuf + header_len, have - header_len);
    have -= header_len;

    z_stream z = { 0 };
    if (inflateInit2(&z, -15) != Z_OK) die("inflateInit2");
    static unsigned char out[65536];
    static const unsigned char tail[4] = { 0x00, 0x00, 0xff, 0xff };

    long long msgs = 0, payload = 0, wire = 0, errors = 0;
    int in_message = 0, compressed = 0, done = 0;
    unsigned char last_byte = 0;
    double start = now(), end = start + duration;
    while (!done) {
        /* Every complete frame in the buffer. */
        size_t at = 0;
        while (!done && have - at >= 2) {
            unsigned char *f = rbuf + at;
            int fin = f[0] & 0x80, rsv1 = f[0] & 0x40, opcode = f[0] & 0x0f;
            uint64_t len = f[1] & 0x7f;
            size_t hlen = 2;
            if (f[1] & 0x80) { fprintf(stderr, "deflatebench: masked frame from the server\n"); return 1; }
            if (len == 126) { if (have - at < 4) break; len = (uint64_t)f[2] << 8 | f[3]; hlen = 4; }
            else if (len == 127) {
                if (have - at < 10) break;
                len = 0;
                for (int i = 0; i < 8; i++) len = len << 8 | f[2 + i];
                hlen = 10;
            }
            if (hlen + len > RBUF) { fprintf(stderr, "deflatebench: frame of %llu bytes too large\n", (unsigned long long)len); return 1; }
            if (have - at < hlen + len) break;
            unsigned char *data = f + hlen;
            at += hlen + len;
            wire += hlen + len;
            if (opcode == 8) { done = 1; if (!max_msgs || msgs < max_msgs) errors++; break; }
            if (opcode & 8) continue;  /* ping, pong: none with -k 0 */
            if ((opcode == 0) != in_message || (rsv1 && (opcode == 0 || !deflate))) {
                fprintf(stderr, "deflatebench: unexpected frame (opcode %d, rsv1 %d)\n", opcode, !!rsv1);
                return 1;
            }
            if (opcode != 0) { in_message = 1; compressed = rsv1; }
            if (!compressed) {
                check(data, len);
                payload += len;
                if (len) last_byte = data[len - 1];
            } else {
                for (int part = 0; part < 2; part++) {  /* the frame, then at the message's end the tail */
                    if (part == 1 && !fin) break;
                    z.next_in = part ? (unsigned char *)tail : data;
                    z.avail_in = part ? 4 : len;
                    do {
                        z.next_out = out;
                        z.avail_out = sizeof out;
                        int rc = inflate(&z, Z_SYNC_FLUSH);
                        if (rc != Z_OK && rc != Z_BUF_ERROR) { fprintf(stderr, "deflatebench: inflate: %s\n", z.msg); return 1; }
                        size_t produced = sizeof out - z.avail_out;
                        check(out, produced);
                        payload += produced;
                        if (produced) last_byte = out[produced - 1];
                    } while (z.avail_in > 0 || z.avail_out == 0);
                }
                if (fin && !server_ctx) inflateReset(&z);
            }
            if (fin) {
                in_message = 0;
                msgs++;
                /* One line per message: it ends the line, and the expected stream is at a line end. */
                if (last_byte != '\n' || (expect_pos && gen[expect_pos - 1] != '\n')) {
                    if (errors++ == 0) fprintf(stderr, "deflatebench: message %lld is not one whole line\n", msgs);
                }
                if (max_msgs && msgs == max_msgs) done = 1;
            }
        }
        memmove(rbuf, rbuf + at, have - at);
        have -= at;
        if (done || (!max_msgs && now() >= end)) break;
        ssize_t r = read(fd, rbuf + have, RBUF - have);
        if (r <= 0) { errors++; break; }
        have += r;
    }
    double secs = now() - start;
    unsigned char close_frame[8] = { 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8 };  /* 1000, zero mask */
    if (write(fd, close_frame, sizeof close_frame) < 0) {}
    errors += mismatches;
    if (!quiet)
        fprintf(stderr, "# deflatebench: %lld msgs, %.1f MB payload in %.1f MB of frames (%.2fx) in %.2f s; extensions: %s\n",
                msgs, payload / 1e6, wire / 1e6, wire ? (double)payload / wire : 0, secs,
                answer);
    printf("RESULT mode=json offer=%s deflate=%d server_ctx=%d line_bytes=%.0f msgs=%lld payload_bytes=%lld wire_bytes=%lld "
           "secs=%.3f MBps=%.3f wire_MBps=%.3f ratio=%.3f msgs_per_s=%.1f errors=%lld\n",
           offer, deflate, server_ctx, (double)gen_len / line_count, msgs, payload, wire, secs, payload / secs / 1e6,
           wire / secs / 1e6, wire ? (double)payload / wire : 0, msgs / secs, errors);
    fflush(stdout);
    _exit(errors ? 1 : 0);  /* the peer thread may be blocked in write */
}
