/*
 * wssbench: WebSocket load over TLS (or plain TCP with -p), for what wsload (ws:// only) cannot do.
 *
 *   wssbench -M stream    -a HOST:PORT [-s BYTES] [-d SEC] [-p]   one connection, echoed MB/s
 *   wssbench -M handshake -a HOST:PORT [-c CONNS] [-d SEC] [-p]   upgrades/s (connect, TLS, 101, close)
 *
 * Certificates are not verified (it measures cost, not trust). Prints one RESULT line.
 */
#define _GNU_SOURCE
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char* host = "127.0.0.1";
static const char* port = "8001";
static int plain = 0;
static double duration = 5;
static size_t message = 65536;
static gnutls_certificate_credentials_t credentials;
static atomic_long upgrades;
static atomic_long echoed;
static atomic_int stop;

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
	int fd;
	gnutls_session_t tls;
} conn;

static ssize_t conn_send(conn* c, const void* data, size_t n) {
	return plain ? send(c->fd, data, n, MSG_NOSIGNAL) : gnutls_record_send(c->tls, data, n);
}

static ssize_t conn_recv(conn* c, void* data, size_t n) {
	return plain ? recv(c->fd, data, n, 0) : gnutls_record_recv(c->tls, data, n);
}

static int send_all(conn* c, const uint8_t* data, size_t n) {
	while (n > 0) {
		ssize_t w = conn_send(c, data, n);
		if (w <= 0) return -1;
		data += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Connects, runs TLS and the HTTP upgrade; returns 0 on a 101. */
static int open_conn(conn* c) {
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0) return -1;
	c->fd = socket(ai->ai_family, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	int rc = connect(c->fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (rc != 0) return -1;
	if (!plain) {
		gnutls_init(&c->tls, GNUTLS_CLIENT);
		gnutls_set_default_priority(c->tls);
		gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, credentials);
		gnutls_transport_set_int(c->tls, c->fd);
		do { rc = gnutls_handshake(c->tls); } while (rc < 0 && !gnutls_error_is_fatal(rc));
		if (rc < 0) return -1;
	}
	const char* req = "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
	if (send_all(c, (const uint8_t*)req, strlen(req)) != 0) return -1;
	char response[1024];
	size_t got = 0;
	while (got < sizeof response - 1) {
		ssize_t r = conn_recv(c, response + got, 1); /* byte by byte: nothing after the header is taken */
		if (r <= 0) return -1;
		got += (size_t)r;
		response[got] = 0;
		if (got >= 4 && !memcmp(response + got - 4, "\r\n\r\n", 4)) break;
	}
	return strncmp(response, "HTTP/1.1 101", 12) == 0 ? 0 : -1;
}

static void close_conn(conn* c) {
	if (!plain) {
		gnutls_bye(c->tls, GNUTLS_SHUT_WR);
		gnutls_deinit(c->tls);
	}
	close(c->fd);
}

static void* handshake_worker(void* unused) {
	(void)unused;
	static const uint8_t close_frame[] = { 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8 };
	while (!atomic_load(&stop)) {
		conn c;
		if (open_conn(&c) != 0) {
			fprintf(stderr, "wssbench: upgrade failed\n");
			exit(1);
		}
		send_all(&c, close_frame, sizeof close_frame);
		uint8_t buf[256];
		while (conn_recv(&c, buf, sizeof buf) > 0) {
		}
		close_conn(&c);
		atomic_fetch_add(&upgrades, 1);
	}
	return NULL;
}

static conn stream_conn;

/* Counts echoed payload bytes: parses server frame headers from the stream. */
static void* stream_reader(void* unused) {
	(void)unused;
	static uint8_t buf[1 << 16];
	uint64_t frame_left = 0;
	uint8_t header[10];
	size_t header_have = 0, header_need = 2;
	while (!atomic_load(&stop)) {
		ssize_t n = conn_recv(&stream_conn, buf, sizeof buf);
		if (n <= 0) break;
		for (ssize_t i = 0; i < n;) {
			if (frame_left > 0) {
				size_t take = (size_t)(n - i) < frame_left ? (size_t)(n - i) : frame_left;
				frame_left -= take;
				i += take;
				atomic_fetch_add(&echoed, (long)take);
				continue;
			}
			header[header_have++] = buf[i++];
			if (header_have == 2) {
				uint8_t len = header[1] & 0x7F;
				header_need = len == 126 ? 4 : len == 127 ? 10 : 2;
			}
			if (header_have == header_need) {
				uint8_t len = header[1] & 0x7F;
				if (len < 126) frame_left = len;
				else if (len == 126) frame_left = (uint64_t)header[2] << 8 | header[3];
				else { frame_left = 0; for (int k = 2; k < 10; k++) frame_left = frame_left << 8 | header[k]; }
				header_have = 0;
				header_need = 2;
			}
		}
	}
	return NULL;
}

int main(int argc, char** argv) {
	const char* mode = "stream";
	int conns = 10;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-M") && i + 1 < argc) mode = argv[++i];
		else if (!strcmp(argv[i], "-a") && i + 1 < argc) {
			char* a = strdup(argv[++i]);
			char* colon = strrchr(a, ':');
			if (!colon) { fprintf(stderr, "wssbench: -a HOST:PORT\n"); return 2; }
			*colon = 0;
			host = a;
			port = colon + 1;
		}
		else if (!strcmp(argv[i], "-s") && i + 1 < argc) message = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-d") && i + 1 < argc) duration = atof(argv[++i]);
		else if (!strcmp(argv[i], "-c") && i + 1 < argc) conns = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-p")) plain = 1;
		else { fprintf(stderr, "usage: wssbench -M stream|handshake -a HOST:PORT [-s BYTES] [-c CONNS] [-d SEC] [-p]\n"); return 2; }
	}
	gnutls_certificate_allocate_credentials(&credentials);
	double start = now();
	if (!strcmp(mode, "handshake")) {
		pthread_t threads[256];
		if (conns > 256) conns = 256;
		for (int i = 0; i < conns; i++) pthread_create(&threads[i], NULL, handshake_worker, NULL);
		usleep((useconds_t)(duration * 1e6));
		atomic_store(&stop, 1);
		double secs = now() - start;
		for (int i = 0; i < conns; i++) pthread_join(threads[i], NULL);
		printf("RESULT mode=handshake tls=%d conns=%d secs=%.3f upgrades=%ld upgrades_per_s=%.1f\n",
		       !plain, conns, secs, atomic_load(&upgrades), atomic_load(&upgrades) / secs);
		return 0;
	}
	if (open_conn(&stream_conn) != 0) { fprintf(stderr, "wssbench: upgrade failed\n"); return 1; }
	/* A batch of masked binary frames (the all-zero mask keeps the payload as is). */
	size_t frame_size = message + (message < 126 ? 6 : message < 65536 ? 8 : 14);
	size_t count = (1 << 20) / frame_size + 1;
	uint8_t* batch = calloc(count, frame_size);
	for (size_t f = 0; f < count; f++) {
		uint8_t* p = batch + f * frame_size;
		p[0] = 0x82;
		if (message < 126) { p[1] = 0x80 | (uint8_t)message; }
		else if (message < 65536) { p[1] = 0x80 | 126; p[2] = (uint8_t)(message >> 8); p[3] = (uint8_t)message; }
		else { p[1] = 0x80 | 127; for (int k = 0; k < 8; k++) p[2 + k] = (uint8_t)((uint64_t)message >> (56 - 8 * k)); }
	}
	pthread_t reader;
	pthread_create(&reader, NULL, stream_reader, NULL);
	while (now() - start < duration) {
		if (send_all(&stream_conn, batch, count * frame_size) != 0) break;
	}
	double secs = now() - start;
	long bytes = atomic_load(&echoed);
	atomic_store(&stop, 1);
	shutdown(stream_conn.fd, SHUT_RDWR);
	pthread_join(reader, NULL);
	printf("RESULT mode=stream tls=%d size=%zu secs=%.3f bytes=%ld MBps=%.1f\n", !plain, message, secs, bytes, bytes / secs / 1e6);
	return 0;
}
