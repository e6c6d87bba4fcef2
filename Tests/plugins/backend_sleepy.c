/* Test-only backend whose queries block: `delay` milliseconds (for endpoints containing
 * `delay-path`, every endpoint when unset), then the peer `peer` (any scheme, "echo://" by
 * default). `log` names a file that gets one line per query, written as it starts. */
#define _POSIX_C_SOURCE 200809L
#include <websocksy.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long delay_ms;
static char* delay_path;
static char* peer;
static char* log_path;

uint64_t init(void) { return WEBSOCKSY_API_VERSION; }

uint64_t configure(char* key, char* value) {
	if (!strcmp(key, "delay")) {
		delay_ms = strtol(value, NULL, 10);
	} else if (!strcmp(key, "delay-path")) {
		delay_path = value;
	} else if (!strcmp(key, "peer")) {
		peer = value;
	} else if (!strcmp(key, "log")) {
		log_path = value;
	} else {
		return 1;
	}
	return 0;
}

ws_peer_info query(char* endpoint, size_t protocols, char** protocol, size_t headers, ws_http_header* header, websocket* ws) {
	(void)protocols; (void)protocol; (void)headers; (void)header; (void)ws;
	ws_peer_info info = {0};
	if (log_path) {
		FILE* f = fopen(log_path, "a");
		if (f) {
			fprintf(f, "%s\n", endpoint);
			fclose(f);
		}
	}
	if (!delay_path || strstr(endpoint, delay_path)) {
		struct timespec pause = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
		nanosleep(&pause, NULL);
	}
	info.transport = peer_transport_detect;
	info.host = strdup(peer ? peer : "echo://");
	info.protocol = protocols;
	return info;
}
