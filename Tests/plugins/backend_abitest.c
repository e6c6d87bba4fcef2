/*
 * Test-only backend that records what the core hands it. Options: "peer" (returned as the host),
 * "framing" (a framing name for core_framing), "log" (file to record calls in). query logs the
 * endpoint, the offered subprotocols and the header names as received, and selects the last
 * offered subprotocol. An endpoint of "/none" returns no peer.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <websocksy.h>

static char* peer = NULL;
static char* framing = NULL;
static char* log_path = NULL;

static void record(const char* a, const char* b) {
	if (!log_path) {
		return;
	}
	FILE* f = fopen(log_path, "a");
	if (f) {
		fprintf(f, "%s %s\n", a, b);
		fclose(f);
	}
}

uint64_t init(void) {
	return WEBSOCKSY_API_VERSION;
}

uint64_t configure(char* key, char* value) {
	char** slot = !strcmp(key, "peer") ? &peer : !strcmp(key, "framing") ? &framing : !strcmp(key, "log") ? &log_path : NULL;
	if (!slot) {
		return 7;
	}
	free(*slot);
	*slot = strdup(value);
	record("configure", key);
	return 0;
}

ws_peer_info query(char* endpoint, size_t protocols, char** protocol, size_t headers, ws_http_header* header, websocket* ws) {
	(void)ws;
	ws_peer_info info = { .transport = peer_transport_detect, .protocol = protocols };
	record("endpoint", endpoint);
	for (size_t i = 0; i < protocols; i++) {
		record("protocol", protocol[i]);
	}
	for (size_t i = 0; i < headers; i++) {
		record("header", header[i].tag);
	}
	endpoint[0] = '!'; /* the core's copy is ours to modify */
	if (!strcmp(endpoint + 1, "none") || !peer) {
		return info;
	}
	info.host = strdup(peer);
	info.framing = framing ? core_framing(framing) : NULL;
	info.framing_config = NULL;
	info.protocol = protocols ? protocols - 1 : 0;
	return info;
}

void cleanup(void) {
	record("cleanup", "-");
	free(peer);
	free(framing);
	free(log_path);
	peer = framing = log_path = NULL;
}
