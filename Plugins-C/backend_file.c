/*
 * backend_file: picks the peer from files, by request path, cookie or header.
 *
 * Options:
 *   path        base directory of the peer files
 *   expression  file name template, repeatable, tried in order; variables:
 *               %endpoint%       the request path without leading and trailing '/'
 *               %cookie:NAME%    the value of cookie NAME
 *               %header:NAME%    the value of request header NAME (case-insensitive)
 *               A variable that has no value skips the expression. Every '/' in a value becomes
 *               '_', and a value of "." or ".." skips the expression, so nothing escapes `path`.
 * File lines: <peer> <subprotocol> [<framing> [<framing-config>]]   ('#' starts a comment line)
 *   <peer> may end in ?KEY=VALUE[&KEY=VALUE...]: options of the route, given to the core with
 *   core_peer_option (e.g. tcp://vnc:5900?compression=off).
 *   With subprotocols offered, the first line whose subprotocol is offered (or is '*') wins;
 *   otherwise the first line.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <websocksy.h>
#include "common/route.h"

#define MAX_PATH_LENGTH 4096

static char* base_path = NULL;
static char** expressions = NULL;
static size_t expression_count = 0;

uint64_t init(void) {
	base_path = strdup(".");
	return base_path ? WEBSOCKSY_API_VERSION : 0;
}

uint64_t configure(char* key, char* value) {
	if (!strcmp(key, "path")) {
		char* copy = strdup(value);
		if (!copy) {
			return 1;
		}
		size_t n = strlen(copy);
		while (n > 1 && copy[n - 1] == '/') {
			copy[--n] = 0;
		}
		free(base_path);
		base_path = copy;
		return 0;
	}
	if (!strcmp(key, "expression")) {
		char** grown = realloc(expressions, (expression_count + 1) * sizeof(char*));
		if (!grown) {
			return 1;
		}
		expressions = grown;
		expressions[expression_count] = strdup(value);
		if (!expressions[expression_count]) {
			return 1;
		}
		expression_count++;
		return 0;
	}
	fprintf(stderr, "backend_file: unknown option '%s' (known: path, expression)\n", key);
	return 1;
}

/* A substituted value, copied with every '/' made '_'; "." and ".." skip the expression. */
static int file_name_value(char* out, const char* value, size_t length) {
	if ((length == 1 && value[0] == '.') || (length == 2 && !strncmp(value, "..", 2))) {
		return 0;
	}
	for (size_t i = 0; i < length; i++) {
		out[i] = value[i] == '/' ? '_' : value[i];
	}
	return 1;
}

ws_peer_info query(char* endpoint, size_t protocols, char** protocol, size_t headers, ws_http_header* header, websocket* ws) {
	ws_peer_info peer = { .transport = peer_transport_detect, .protocol = protocols };
	route_request request = { .endpoint = endpoint, .headers = headers, .header = header, .ws = ws };
	char path[MAX_PATH_LENGTH];
	char* line = NULL;
	size_t capacity = 0;

	for (size_t e = 0; e < expression_count && !peer.host; e++) {
		int prefix = snprintf(path, sizeof path, "%s/", base_path);
		size_t used = (size_t)prefix;
		if (prefix < 0 || used >= sizeof path
		    || !route_expand(expressions[e], &request, 0, file_name_value, path, &used, sizeof path)) {
			continue;
		}
		FILE* file = fopen(path, "r");
		if (!file) {
			continue;
		}
		while (!peer.host && getline(&line, &capacity, file) >= 0) {
			route_line(line, protocols, protocol, ws, &peer);
		}
		fclose(file);
	}
	free(line);
	return peer;
}

void cleanup(void) {
	for (size_t i = 0; i < expression_count; i++) {
		free(expressions[i]);
	}
	free(expressions);
	expressions = NULL;
	expression_count = 0;
	free(base_path);
	base_path = NULL;
}
