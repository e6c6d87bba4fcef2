/*
 * wssbench: WebSocket load over TLS (or plain TCP with -p), for what wsload (ws:// only) cannot do.
 *
 *   wssbench -M stream    -a HOST:PORT [-s BYTES] [-d SEC] [-p]   one connection, echoed MB/s
 *   wssbench -M handshake -a HOST:PORT [-c CONNS] [-d SEC] [-p | -r]   upgrades/s (connect, TLS, 101, close)
 *   wssbench -M echo      -a HOST:PORT [-c CONNS] [-s BYTES] [-d SEC] [-p]
 *                          CONNS connections, each sends one message, waits for all of its payload to
 *                          come back (checked byte for byte), sends the next: echoed msgs/s
 *
 * Certificates are not verified (it measures cost, not trust). Every TLS handshake is a full one unless
 * -r (handshake mode over TLS only; refused otherwise): then each of the CONNS connection slots offers the
 * session data of its previous connection (gnutls_session_set_data), taken from every connection once its
 * 101 has been read (a TLS 1.3 NewSessionTicket arrives after the handshake). A slot's first connection,
 * and one after a connection that brought no ticket, is a full handshake. The handshake RESULT line counts
 * the handshakes the server actually resumed (resumed=N, 0 without -r). -v prints the first connection's
 * TLS parameters on stderr (with -r also the first resumed one's). Prints one RESULT line.
 */
#define _GNU_SOURCE
#include <gnutls/gnutls.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char* host = "127.0.0.1";
static const char* port = "8001";
static int plain = 0;
static int verbose = 0;
static int resume = 0;
static atomic_int described; /* bit 1: a full handshake was described, bit 2: a resumed one */
static double duration = 5;
static size_t message = 65536;
static gnutls_certificate_credentials_t credentials;
static atomic_long upgrades;
static atomic_long resumed;
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

/* For a blocking socket. GnuTLS returns GNUTLS_E_AGAIN from gnutls_record_recv after it has processed a
 * post-handshake message (a TLS 1.3 NewSessionTicket, a KeyUpdate) even when the socket blocks: read again. */
static ssize_t conn_recv_blocking(conn* c, void* data, size_t n) {
	ssize_t r;
	do { r = conn_recv(c, data, n); } while (!plain && (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED));
	return r;
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

/* Connects, runs TLS (offering session data if given, to resume) and the HTTP upgrade; returns 0 on a 101. */
static int open_conn(conn* c, const gnutls_datum_t* session_data) {
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
		if (session_data && session_data->size > 0) /* unusable data just means a full handshake */
			gnutls_session_set_data(c->tls, session_data->data, session_data->size);
		do { rc = gnutls_handshake(c->tls); } while (rc < 0 && !gnutls_error_is_fatal(rc));
		if (rc < 0) return -1;
		int kind = gnutls_session_is_resumed(c->tls) ? 2 : 1;
		if (verbose && !(atomic_fetch_or(&described, kind) & kind)) {
			char* desc = gnutls_session_get_desc(c->tls);
			fprintf(stderr, "wssbench: %s%s\n", desc, gnutls_session_is_resumed(c->tls) ? " (resumed)" : "");
			gnutls_free(desc);
		}
	}
	const char* req = "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
	if (send_all(c, (const uint8_t*)req, strlen(req)) != 0) return -1;
	char response[1024];
	size_t got = 0;
	while (got < sizeof response - 1) {
		ssize_t r = conn_recv_blocking(c, response + got, 1); /* byte by byte: nothing after the header is taken */
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
	gnutls_datum_t session_data = { NULL, 0 }; /* -r: this slot's previous connection's session */
	while (!atomic_load(&stop)) {
		conn c;
		if (open_conn(&c, resume ? &session_data : NULL) != 0) {
			fprintf(stderr, "wssbench: upgrade failed\n");
			exit(1);
		}
		int was_resumed = !plain && gnutls_session_is_resumed(c.tls);
		if (resume) {
			/* The 101 has been read, so a TLS 1.3 ticket sent after the handshake has been processed.
			 * Without one, gnutls_session_get_data2 would wait ~60 ms for it and return data that
			 * cannot resume: the next connection of this slot is then a full handshake. */
			gnutls_free(session_data.data);
			session_data = (gnutls_datum_t){ NULL, 0 };
			if ((gnutls_protocol_get_version(c.tls) != GNUTLS_TLS1_3 ||
			     (gnutls_session_get_flags(c.tls) & GNUTLS_SFLAGS_SESSION_TICKET)) &&
			    gnutls_session_get_data2(c.tls, &session_data) < 0)
				session_data = (gnutls_datum_t){ NULL, 0 };
		}
		send_all(&c, close_frame, sizeof close_frame);
		uint8_t buf[256];
		while (conn_recv_blocking(&c, buf, sizeof buf) > 0) {
		}
		close_conn(&c);
		atomic_fetch_add(&upgrades, 1);
		if (was_resumed) atomic_fetch_add(&resumed, 1);
	}
	gnutls_free(session_data.data);
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
		ssize_t n = conn_recv_blocking(&stream_conn, buf, sizeof buf);
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

/* Echo mode: one epoll loop over all connections (non-blocking once upgraded). */
typedef struct {
	conn c;
	uint8_t* frame;      /* the masked message being sent (all-zero mask: payload as is) */
	size_t frame_size;
	size_t sent;         /* bytes of frame written (plain); TLS: 0 or frame_size */
	int send_pending;    /* TLS: a record send returned EAGAIN and must be repeated */
	size_t echoed;       /* payload bytes of the current message received */
	uint8_t header[10];
	size_t header_have, header_need;
	uint64_t frame_left;
	int data_frame;      /* the frame being read carries payload (not a control frame) */
	uint8_t seq;
	int want_out;
} echo_conn;

static long echo_errors;

static void echo_fail(echo_conn* e, const char* why) {
	if (echo_errors++ < 5) fprintf(stderr, "wssbench: connection %d: %s\n", e->c.fd, why);
}

static void echo_fill(echo_conn* e) {
	size_t header = e->frame_size - message;
	memset(e->frame + header, (int)(uint8_t)(e->seq + e->c.fd), message);
	e->sent = 0;
	e->echoed = 0;
}

/* Writes what is left of the current frame; returns -1 on error, 0 when it must wait for EPOLLOUT. */
static int echo_send(echo_conn* e) {
	while (e->sent < e->frame_size) {
		ssize_t w;
		if (plain) {
			w = send(e->c.fd, e->frame + e->sent, e->frame_size - e->sent, MSG_NOSIGNAL);
			if (w < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		} else {
			w = e->send_pending ? gnutls_record_send(e->c.tls, NULL, 0)
			                    : gnutls_record_send(e->c.tls, e->frame + e->sent, e->frame_size - e->sent);
			if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED) { e->send_pending = 1; return 0; }
			e->send_pending = 0;
			if (w < 0) return -1;
		}
		e->sent += (size_t)w;
	}
	return 1;
}

/* Takes received bytes; returns the number of messages completed (0 or 1), -1 on a mismatch. */
static int echo_take(echo_conn* e, const uint8_t* buf, size_t n) {
	int done = 0;
	size_t header = e->frame_size - message;
	for (size_t i = 0; i < n;) {
		if (e->frame_left > 0) {
			size_t take = n - i < e->frame_left ? n - i : (size_t)e->frame_left;
			if (e->data_frame) {
				if (e->echoed + take > message || memcmp(buf + i, e->frame + header + e->echoed, take) != 0) return -1;
				e->echoed += take;
				if (e->echoed == message) done = 1;
			}
			e->frame_left -= take;
			i += take;
			continue;
		}
		e->header[e->header_have++] = buf[i++];
		if (e->header_have == 2) {
			uint8_t len = e->header[1] & 0x7F;
			e->header_need = len == 126 ? 4 : len == 127 ? 10 : 2;
		}
		if (e->header_have == e->header_need) {
			uint8_t len = e->header[1] & 0x7F;
			if (len < 126) e->frame_left = len;
			else if (len == 126) e->frame_left = (uint64_t)e->header[2] << 8 | e->header[3];
			else { e->frame_left = 0; for (int k = 2; k < 10; k++) e->frame_left = e->frame_left << 8 | e->header[k]; }
			uint8_t opcode = e->header[0] & 0x0F;
			if (opcode == 8) return -1; /* Close from the server */
			e->data_frame = opcode < 8;
			e->header_have = 0;
			e->header_need = 2;
		}
	}
	return done;
}

static int echo_mode(int conns) {
	echo_conn* all = calloc((size_t)conns, sizeof *all);
	int ep = epoll_create1(0);
	size_t frame_size = message + (message < 126 ? 6 : message < 65536 ? 8 : 14);
	for (int i = 0; i < conns; i++) {
		echo_conn* e = &all[i];
		if (open_conn(&e->c, NULL) != 0) { fprintf(stderr, "wssbench: upgrade failed\n"); return 1; }
		fcntl(e->c.fd, F_SETFL, fcntl(e->c.fd, F_GETFL) | O_NONBLOCK);
		e->frame_size = frame_size;
		e->frame = calloc(1, frame_size);
		e->frame[0] = 0x82;
		if (message < 126) e->frame[1] = 0x80 | (uint8_t)message;
		else if (message < 65536) { e->frame[1] = 0x80 | 126; e->frame[2] = (uint8_t)(message >> 8); e->frame[3] = (uint8_t)message; }
		else { e->frame[1] = 0x80 | 127; for (int k = 0; k < 8; k++) e->frame[2 + k] = (uint8_t)((uint64_t)message >> (56 - 8 * k)); }
		e->header_need = 2;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = e };
		epoll_ctl(ep, EPOLL_CTL_ADD, e->c.fd, &ev);
	}
	/* The window starts once every connection is open. */
	long msgs = 0;
	int open_conns = conns;
	double start = now(), end = start + duration;
	for (int i = 0; i < conns; i++) {
		echo_fill(&all[i]);
		if (echo_send(&all[i]) < 0) { echo_fail(&all[i], "send failed"); return 1; }
	}
	static uint8_t buf[1 << 16];
	struct epoll_event events[256];
	while (open_conns > 0) {
		double left = end - now();
		if (left <= 0) break;
		int n = epoll_wait(ep, events, 256, (int)(left * 1000) + 1);
		for (int k = 0; k < n; k++) {
			echo_conn* e = events[k].data.ptr;
			if (e->frame == NULL) continue;
			int bad = 0;
			if ((events[k].events & EPOLLOUT) && echo_send(e) < 0) bad = 1;
			while (!bad && (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
				ssize_t r = conn_recv(&e->c, buf, sizeof buf);
				if (plain ? r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) : r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) break;
				if (r <= 0) { echo_fail(e, r == 0 ? "closed by the server" : "receive failed"); bad = 1; break; }
				int done = echo_take(e, buf, (size_t)r);
				if (done < 0) { echo_fail(e, "echo differs from what was sent, or a Close"); bad = 1; break; }
				if (done) {
					if (e->sent < e->frame_size) { echo_fail(e, "echo before the message was sent"); bad = 1; break; }
					msgs++;
					e->seq++;
					echo_fill(e);
					if (echo_send(e) < 0) { echo_fail(e, "send failed"); bad = 1; break; }
				}
				if (plain && (size_t)r < sizeof buf) break; /* drained; TLS may hold decrypted records */
			}
			if (bad) {
				epoll_ctl(ep, EPOLL_CTL_DEL, e->c.fd, NULL);
				free(e->frame);
				e->frame = NULL;
				open_conns--;
				continue;
			}
			int want_out = e->sent < e->frame_size;
			if (want_out != e->want_out) {
				struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = e };
				epoll_ctl(ep, EPOLL_CTL_MOD, e->c.fd, &ev);
				e->want_out = want_out;
			}
		}
	}
	double secs = now() - start;
	printf("RESULT mode=echo tls=%d conns=%d size=%zu secs=%.3f msgs=%ld msgs_per_s=%.1f errors=%ld open_at_end=%d\n",
	       !plain, conns, message, secs, msgs, msgs / secs, echo_errors, open_conns);
	for (int i = 0; i < conns; i++) if (all[i].frame) close(all[i].c.fd);
	return echo_errors ? 1 : 0;
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
		else if (!strcmp(argv[i], "-r")) resume = 1;
		else if (!strcmp(argv[i], "-v")) verbose = 1;
		else { fprintf(stderr, "usage: wssbench -M stream|handshake|echo -a HOST:PORT [-s BYTES] [-c CONNS] [-d SEC] [-p | -r] [-v]\n"); return 2; }
	}
	if (resume && (strcmp(mode, "handshake") != 0 || plain)) {
		fprintf(stderr, "wssbench: -r (TLS session resumption) needs -M handshake and TLS (not -p)\n");
		return 2;
	}
	gnutls_certificate_allocate_credentials(&credentials);
	if (!strcmp(mode, "echo")) return echo_mode(conns);
	double start = now();
	if (!strcmp(mode, "handshake")) {
		pthread_t threads[256];
		if (conns > 256) conns = 256;
		for (int i = 0; i < conns; i++) pthread_create(&threads[i], NULL, handshake_worker, NULL);
		usleep((useconds_t)(duration * 1e6));
		atomic_store(&stop, 1);
		double secs = now() - start;
		for (int i = 0; i < conns; i++) pthread_join(threads[i], NULL);
		printf("RESULT mode=handshake tls=%d conns=%d secs=%.3f upgrades=%ld upgrades_per_s=%.1f resumed=%ld\n",
		       !plain, conns, secs, atomic_load(&upgrades), atomic_load(&upgrades) / secs, atomic_load(&resumed));
		return 0;
	}
	if (open_conn(&stream_conn, NULL) != 0) { fprintf(stderr, "wssbench: upgrade failed\n"); return 1; }
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
