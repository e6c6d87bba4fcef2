/*
 * backend_redis: picks the peer from Redis, by a key built from the request.
 *
 * Options:
 *   server           host:port (default 127.0.0.1:6379), [v6addr]:port, or unix:/path
 *   password, user   AUTH [user] password after connecting
 *   database         SELECT n after connecting (default 0)
 *   prefix           put before every key (e.g. websocksy:route:)
 *   key              key template, repeatable, tried in order (default %endpoint%); variables as in
 *                    backend_file plus %query:NAME%. A variable without a value, or with a value that
 *                    is longer than 256 bytes or holds '*', '?', '[', ']', a space or a control byte,
 *                    skips the template; so does a key longer than 1024 bytes.
 *   one-time         yes: GETDEL instead of GET, so a key routes one connection only (Redis >= 6.2)
 *   connect-timeout, query-timeout   milliseconds (default 1000 each)
 * Value: route lines as in backend_file, `<peer> <subprotocol> [<framing> [<framing-config>]]`.
 * A missing key is 404. Redis unreachable, too slow or answering an error is 503; after a failed
 * attempt, queries fail at once for a second before the next connection attempt.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <websocksy.h>
#include "common/route.h"

#define MAX_KEY_LENGTH 1024
#define MAX_VALUE_LENGTH 256
#define DEFAULT_PORT 6379
#define RETRY_DELAY_MS 1000
/* Error replies are logged at most once in this interval, with a count of the ones not logged. */
#define ERROR_LOG_INTERVAL_MS 10000

static struct {
	char* server; /* as configured, for log lines */
	char* host;   /* NULL when connecting to `socket_path` */
	int port;
	char* socket_path;
	char* password;
	char* user;
	long database;
	char* prefix;
	char** keys;
	size_t key_count;
	int one_time;
	long connect_timeout_ms;
	long query_timeout_ms;
} config;

static redisContext* redis = NULL;
static enum { never_connected, connected, unreachable } state = never_connected;
static long long retry_at_ms = 0;
static long long error_logged_at_ms = -1;
static unsigned long errors_not_logged = 0;

static const char default_key[] = "%endpoint%";

static long long now_ms(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static struct timeval milliseconds(long ms) {
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	return tv;
}

static void say(const char* format, ...) {
	char line[1024] = "backend_redis: ";
	size_t used = strlen(line);
	va_list args;
	va_start(args, format);
	int length = vsnprintf(line + used, sizeof line - used - 1, format, args);
	va_end(args);
	used = length < 0 ? used : used + (size_t)length < sizeof line - 1 ? used + (size_t)length : sizeof line - 2;
	line[used++] = '\n';
	line[used] = 0;
	/* One write per line, so lines from several workers do not interleave. */
	fputs(line, stderr);
}

/* Replaces *slot with a copy of value; 0 on success. */
static int set_string(char** slot, const char* value) {
	char* copy = strdup(value);
	if (!copy) {
		return 1;
	}
	free(*slot);
	*slot = copy;
	return 0;
}

/* A decimal number in [min, max] with nothing around it. */
static int parse_number(const char* text, long min, long max, long* out) {
	if (!*text) {
		return 0;
	}
	long value = 0;
	for (const char* p = text; *p; p++) {
		if (*p < '0' || *p > '9' || value > (LONG_MAX - (*p - '0')) / 10) {
			return 0;
		}
		value = value * 10 + (*p - '0');
	}
	if (value < min || value > max) {
		return 0;
	}
	*out = value;
	return 1;
}

/* Splits `server` into a socket path or host and port; 0 when it is not usable. */
static int parse_server(const char* value) {
	char* host = NULL;
	char* path = NULL;
	long port = DEFAULT_PORT;
	if (!strncmp(value, "unix:", 5)) {
		const char* p = value + 5;
		if (!strncmp(p, "//", 2)) {
			p += 2; /* unix:///run/redis.sock, as peers are written */
		}
		if (!*p) {
			return 0;
		}
		path = strdup(p);
		if (!path) {
			return 0;
		}
	} else {
		const char* port_text = NULL;
		size_t host_length;
		if (value[0] == '[') {
			const char* close = strchr(value, ']');
			if (!close || (close[1] && close[1] != ':')) {
				return 0;
			}
			value++;
			host_length = (size_t)(close - value);
			port_text = close[1] ? close + 2 : NULL;
		} else {
			const char* colon = strchr(value, ':');
			if (colon && !strchr(colon + 1, ':')) {
				host_length = (size_t)(colon - value);
				port_text = colon + 1;
			} else {
				host_length = strlen(value); /* a bare IPv6 address, or a host without port */
			}
		}
		if (host_length == 0 || (port_text && !parse_number(port_text, 1, 65535, &port))) {
			return 0;
		}
		for (size_t i = 0; i < host_length; i++) {
			if ((unsigned char)value[i] <= ' ') {
				return 0;
			}
		}
		host = strndup(value, host_length);
		if (!host) {
			return 0;
		}
	}
	free(config.host);
	free(config.socket_path);
	config.host = host;
	config.socket_path = path;
	config.port = (int)port;
	return 1;
}

/* Whether every %...% in a key template names a variable this backend knows. */
static int valid_template(const char* template) {
	for (const char* p = strchr(template, '%'); p; p = strchr(p, '%')) {
		const char* close = strchr(p + 1, '%');
		if (!close) {
			return 0;
		}
		const char* name = p + 1;
		size_t length = (size_t)(close - name);
		int known = (length == 8 && !strncmp(name, "endpoint", 8))
		            || (length == 6 && !strncmp(name, "client", 6))
		            || (length > 7 && !strncmp(name, "cookie:", 7))
		            || (length > 7 && !strncmp(name, "header:", 7))
		            || (length > 6 && !strncmp(name, "query:", 6));
		if (!known) {
			return 0;
		}
		p = close + 1;
	}
	return 1;
}

uint64_t init(void) {
	memset(&config, 0, sizeof config);
	config.port = DEFAULT_PORT;
	config.connect_timeout_ms = 1000;
	config.query_timeout_ms = 1000;
	config.server = strdup("127.0.0.1:6379");
	config.host = strdup("127.0.0.1");
	config.prefix = strdup("");
	redis = NULL;
	state = never_connected;
	retry_at_ms = 0;
	error_logged_at_ms = -1;
	errors_not_logged = 0;
	return config.server && config.host && config.prefix ? WEBSOCKSY_API_VERSION : 0;
}

static uint64_t bad_value(const char* key, const char* value, const char* expected) {
	say("option '%s': %s, not '%.200s'", key, expected, value);
	return 1;
}

uint64_t configure(char* key, char* value) {
	if (!strcmp(key, "server")) {
		if (!parse_server(value)) {
			return bad_value(key, value, "expected host:port, [address]:port or unix:/path");
		}
		return set_string(&config.server, value);
	}
	if (!strcmp(key, "password")) {
		return set_string(&config.password, value);
	}
	if (!strcmp(key, "user")) {
		return set_string(&config.user, value);
	}
	if (!strcmp(key, "database")) {
		return parse_number(value, 0, INT_MAX, &config.database) ? 0 : bad_value(key, value, "expected a number from 0");
	}
	if (!strcmp(key, "prefix")) {
		if (strlen(value) >= MAX_KEY_LENGTH) {
			return bad_value(key, value, "expected fewer than 1024 bytes");
		}
		return set_string(&config.prefix, value);
	}
	if (!strcmp(key, "key")) {
		if (!*value || !valid_template(value)) {
			return bad_value(key, value, "expected a template with %endpoint%, %cookie:NAME%, %header:NAME% or %query:NAME%");
		}
		char** grown = realloc(config.keys, (config.key_count + 1) * sizeof(char*));
		if (!grown) {
			return 1;
		}
		config.keys = grown;
		config.keys[config.key_count] = strdup(value);
		if (!config.keys[config.key_count]) {
			return 1;
		}
		config.key_count++;
		return 0;
	}
	if (!strcmp(key, "one-time")) {
		if (strcmp(value, "yes") && strcmp(value, "no")) {
			return bad_value(key, value, "expected yes or no");
		}
		config.one_time = !strcmp(value, "yes");
		return 0;
	}
	if (!strcmp(key, "connect-timeout") || !strcmp(key, "query-timeout")) {
		long* slot = key[0] == 'c' ? &config.connect_timeout_ms : &config.query_timeout_ms;
		return parse_number(value, 1, 3600000, slot) ? 0 : bad_value(key, value, "expected milliseconds from 1 to 3600000");
	}
	say("unknown option '%.200s' (known: server, password, user, database, prefix, key, one-time, connect-timeout, query-timeout)", key);
	return 1;
}

/* Takes a reply to AUTH or SELECT; 1 when it is +OK, else the reason in `reason`. */
static int accepted(redisContext* c, redisReply* reply, const char* command, char* reason, size_t size) {
	int ok = reply && reply->type == REDIS_REPLY_STATUS;
	if (!reply) {
		snprintf(reason, size, "%s: %s", command, c->errstr);
	} else if (!ok) {
		snprintf(reason, size, "%s: %.200s", command, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
	}
	freeReplyObject(reply);
	return ok;
}

/* Opens, authenticates and selects; sets `redis` or returns 0 with the reason. */
static int open_connection(char* reason, size_t size) {
	if (config.user && !config.password) {
		snprintf(reason, size, "option 'user' needs 'password'");
		return 0;
	}
	struct timeval connect_timeout = milliseconds(config.connect_timeout_ms);
	redisContext* c = config.socket_path ? redisConnectUnixWithTimeout(config.socket_path, connect_timeout)
	                                     : redisConnectWithTimeout(config.host, config.port, connect_timeout);
	if (!c) {
		snprintf(reason, size, "out of memory");
		return 0;
	}
	if (c->err) {
		snprintf(reason, size, "%s", c->errstr);
		redisFree(c);
		return 0;
	}
	if (redisSetTimeout(c, milliseconds(config.query_timeout_ms)) != REDIS_OK) {
		snprintf(reason, size, "cannot set the query timeout");
		redisFree(c);
		return 0;
	}
	if (config.password) {
		redisReply* reply = config.user
			? redisCommand(c, "AUTH %b %b", config.user, strlen(config.user), config.password, strlen(config.password))
			: redisCommand(c, "AUTH %b", config.password, strlen(config.password));
		if (!accepted(c, reply, "AUTH", reason, size)) {
			redisFree(c);
			return 0;
		}
	}
	if (config.database) {
		char number[24];
		int length = snprintf(number, sizeof number, "%ld", config.database);
		if (!accepted(c, redisCommand(c, "SELECT %b", number, (size_t)length), "SELECT", reason, size)) {
			redisFree(c);
			return 0;
		}
	}
	redis = c;
	return 1;
}

static void mark_unreachable(const char* reason) {
	retry_at_ms = now_ms() + RETRY_DELAY_MS;
	if (state != unreachable) {
		say("%s unreachable (%s): clients get 503 until it answers again", config.server, reason);
		state = unreachable;
	}
}

static void mark_connected(void) {
	if (state == never_connected) {
		say("connected to %s", config.server);
	} else if (state == unreachable) {
		say("reconnected to %s", config.server);
	}
	state = connected;
}

/* The reason a command got no reply, in `reason`; whether a fresh connection may help. */
static int broken_connection(int saved_errno, char* reason, size_t size) {
	if (redis->err == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
		snprintf(reason, size, "no answer within %ld ms", config.query_timeout_ms);
		return 0;
	}
	snprintf(reason, size, "%s", redis->errstr);
	/* A connection Redis closed while idle (restart, `timeout`) fails on its next use. */
	return redis->err == REDIS_ERR_EOF || (redis->err == REDIS_ERR_IO && (saved_errno == ECONNRESET || saved_errno == EPIPE));
}

/* GET (or GETDEL) `key`; NULL when Redis cannot answer now. */
static redisReply* fetch(const char* key, size_t length) {
	char reason[256];
	int reused = redis != NULL;
	if (!redis) {
		if (now_ms() < retry_at_ms) {
			return NULL; /* fail fast: Redis failed less than a second ago */
		}
		if (!open_connection(reason, sizeof reason)) {
			mark_unreachable(reason);
			return NULL;
		}
		mark_connected();
	}
	for (;;) {
		redisReply* reply = redisCommand(redis, config.one_time ? "GETDEL %b" : "GET %b", key, length);
		if (reply) {
			return reply;
		}
		int retry = broken_connection(errno, reason, sizeof reason) && reused;
		redisFree(redis);
		redis = NULL;
		if (!retry || !open_connection(reason, sizeof reason)) {
			mark_unreachable(reason);
			return NULL;
		}
		reused = 0;
	}
}

static void log_error_reply(const char* key, size_t key_length, const char* error) {
	long long now = now_ms();
	if (error_logged_at_ms >= 0 && now - error_logged_at_ms < ERROR_LOG_INTERVAL_MS) {
		errors_not_logged++;
		return;
	}
	if (errors_not_logged) {
		say("%s answered %s for key '%.*s' (and %lu more errors not logged): the client gets 503",
		    config.server, error, (int)(key_length < 200 ? key_length : 200), key, errors_not_logged);
	} else {
		say("%s answered %s for key '%.*s': the client gets 503",
		    config.server, error, (int)(key_length < 200 ? key_length : 200), key);
	}
	error_logged_at_ms = now;
	errors_not_logged = 0;
}

/* A substituted value as it is, unless it could act as a pattern, split a line, or is too long. */
static int key_value(char* out, const char* value, size_t length) {
	if (length > MAX_VALUE_LENGTH) {
		return 0;
	}
	for (size_t i = 0; i < length; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c < 0x20 || c == 0x7f || c == '*' || c == '?' || c == '[' || c == ']' || c == ' ') {
			return 0;
		}
	}
	memcpy(out, value, length);
	return 1;
}

/* The client gets 503 rather than 404: the route may exist, Redis could not say. */
static ws_peer_info unavailable(ws_peer_info peer, websocket* ws) {
	if (core_peer_option) {
		core_peer_option(ws, "status", "503");
	}
	return peer;
}

ws_peer_info query(char* endpoint, size_t protocols, char** protocol, size_t headers, ws_http_header* header, websocket* ws) {
	ws_peer_info peer = { .transport = peer_transport_detect, .protocol = protocols };
	route_request request = { .endpoint = endpoint, .headers = headers, .header = header, .ws = ws };
	char key[MAX_KEY_LENGTH + 1];
	size_t prefix_length = strlen(config.prefix);
	size_t templates = config.key_count ? config.key_count : 1;

	for (size_t t = 0; t < templates; t++) {
		const char* template = config.key_count ? config.keys[t] : default_key;
		size_t used = prefix_length;
		memcpy(key, config.prefix, prefix_length);
		if (!route_expand(template, &request, ROUTE_VARIABLE_QUERY, key_value, key, &used, sizeof key)) {
			continue;
		}
		redisReply* reply = fetch(key, used);
		if (!reply) {
			return unavailable(peer, ws);
		}
		if (reply->type == REDIS_REPLY_NIL) {
			freeReplyObject(reply);
			continue;
		}
		/* A NUL would cut a line short without a word: such a value is as broken as an error. */
		if (reply->type != REDIS_REPLY_STRING || memchr(reply->str, 0, reply->len)) {
			char what[256];
			snprintf(what, sizeof what, reply->type == REDIS_REPLY_ERROR ? "'%.200s'" : "%s",
			         reply->type == REDIS_REPLY_ERROR ? reply->str
			         : reply->type == REDIS_REPLY_STRING ? "a value with a NUL byte" : "a reply that is not a string");
			log_error_reply(key, used, what);
			freeReplyObject(reply);
			return unavailable(peer, ws);
		}
		char* text = malloc(reply->len + 1);
		if (text) {
			memcpy(text, reply->str, reply->len);
			text[reply->len] = 0;
		}
		freeReplyObject(reply);
		if (!text) {
			return unavailable(peer, ws);
		}
		int found = route_text(text, protocols, protocol, ws, &peer);
		free(text);
		if (found) {
			break;
		}
	}
	return peer;
}

void cleanup(void) {
	if (redis) {
		redisFree(redis);
		redis = NULL;
	}
	for (size_t i = 0; i < config.key_count; i++) {
		free(config.keys[i]);
	}
	free(config.keys);
	free(config.server);
	free(config.host);
	free(config.socket_path);
	free(config.password);
	free(config.user);
	free(config.prefix);
	memset(&config, 0, sizeof config);
	state = never_connected;
}
