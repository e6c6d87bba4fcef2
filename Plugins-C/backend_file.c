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
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <websocksy.h>

#define MAX_PATH_LENGTH 4096

/* Weak, so this backend still loads in a core without it (where route options are ignored). */
extern int core_peer_option(websocket* ws, const char* key, const char* value) __attribute__((weak));

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

/* The value of a header (case-insensitive name), or NULL. */
static const char* header_value(const char* name, size_t name_length, size_t headers, ws_http_header* header) {
	for (size_t i = 0; i < headers; i++) {
		if (strlen(header[i].tag) == name_length && !strncasecmp(header[i].tag, name, name_length)) {
			return header[i].value;
		}
	}
	return NULL;
}

/* Finds cookie `name` in a Cookie header; sets *length and returns its value, or NULL. */
static const char* cookie_value(const char* cookies, const char* name, size_t name_length, size_t* length) {
	const char* p = cookies;
	while (p && *p) {
		while (*p == ' ' || *p == ';') {
			p++;
		}
		const char* end = strchr(p, ';');
		size_t item = end ? (size_t)(end - p) : strlen(p);
		if (item > name_length && p[name_length] == '=' && !strncmp(p, name, name_length)) {
			*length = item - name_length - 1;
			return p + name_length + 1;
		}
		p = end;
	}
	return NULL;
}

/* Appends a substituted value, sanitised. Returns 0 when the expression must be skipped. */
static int append_value(char* out, size_t* used, const char* value, size_t length) {
	if (length == 0 || (length == 1 && value[0] == '.') || (length == 2 && !strncmp(value, "..", 2))) {
		return 0;
	}
	if (*used + length >= MAX_PATH_LENGTH) {
		return 0;
	}
	for (size_t i = 0; i < length; i++) {
		out[(*used)++] = value[i] == '/' ? '_' : value[i];
	}
	out[*used] = 0;
	return 1;
}

/* Expands one expression into `out` (below base_path). Returns 0 when a variable has no value. */
static int expand(const char* expression, const char* endpoint, size_t headers, ws_http_header* header, char* out) {
	size_t used = (size_t)snprintf(out, MAX_PATH_LENGTH, "%s/", base_path);
	if (used >= MAX_PATH_LENGTH) {
		return 0;
	}
	for (const char* p = expression; *p;) {
		if (*p != '%') {
			if (used + 1 >= MAX_PATH_LENGTH) {
				return 0;
			}
			out[used++] = *p++;
			out[used] = 0;
			continue;
		}
		const char* close = strchr(p + 1, '%');
		if (!close) {
			return 0;
		}
		const char* variable = p + 1;
		size_t variable_length = (size_t)(close - variable);
		const char* value = NULL;
		size_t value_length = 0;
		if (variable_length == 8 && !strncmp(variable, "endpoint", 8)) {
			value = endpoint;
			while (*value == '/') {
				value++;
			}
			const char* query = strchr(value, '?');
			value_length = query ? (size_t)(query - value) : strlen(value);
			while (value_length > 0 && value[value_length - 1] == '/') {
				value_length--;
			}
		} else if (variable_length > 7 && !strncmp(variable, "cookie:", 7)) {
			const char* cookies = header_value("Cookie", 6, headers, header);
			value = cookies ? cookie_value(cookies, variable + 7, variable_length - 7, &value_length) : NULL;
		} else if (variable_length > 7 && !strncmp(variable, "header:", 7)) {
			value = header_value(variable + 7, variable_length - 7, headers, header);
			value_length = value ? strlen(value) : 0;
		}
		if (!value || !append_value(out, &used, value, value_length)) {
			return 0;
		}
		p = close + 1;
	}
	return 1;
}

/* Splits a line into up to four space-separated fields; returns how many. */
static size_t split_fields(char* line, char* fields[4]) {
	size_t count = 0;
	char* p = line;
	while (*p && count < 4) {
		while (*p == ' ' || *p == '\t') {
			p++;
		}
		if (!*p) {
			break;
		}
		fields[count++] = p;
		if (count == 4) {
			break; /* the framing configuration is the rest of the line */
		}
		while (*p && *p != ' ' && *p != '\t') {
			p++;
		}
		if (*p) {
			*p++ = 0;
		}
	}
	return count;
}

/* Cuts `?KEY=VALUE&...` off the peer field and hands each option to the core. */
static void apply_route_options(char* peer, websocket* ws) {
	char* options = strchr(peer, '?');
	if (!options) {
		return;
	}
	*options++ = 0;
	char* rest = NULL;
	for (char* option = strtok_r(options, "&", &rest); option; option = strtok_r(NULL, "&", &rest)) {
		char* equals = strchr(option, '=');
		if (equals && core_peer_option) {
			*equals = 0;
			core_peer_option(ws, option, equals + 1);
		}
	}
}

ws_peer_info query(char* endpoint, size_t protocols, char** protocol, size_t headers, ws_http_header* header, websocket* ws) {
	ws_peer_info peer = { .transport = peer_transport_detect, .protocol = protocols };
	char path[MAX_PATH_LENGTH];
	char* line = NULL;
	size_t capacity = 0;

	for (size_t e = 0; e < expression_count && !peer.host; e++) {
		if (!expand(expressions[e], endpoint, headers, header, path)) {
			continue;
		}
		FILE* file = fopen(path, "r");
		if (!file) {
			continue;
		}
		while (!peer.host && getline(&line, &capacity, file) >= 0) {
			size_t n = strlen(line);
			while (n > 0 && isspace((unsigned char)line[n - 1])) {
				line[--n] = 0;
			}
			char* fields[4] = { NULL, NULL, NULL, NULL };
			size_t count = split_fields(line, fields);
			if (count == 0 || fields[0][0] == '#') {
				continue;
			}
			size_t selected = protocols;
			if (protocols > 0) {
				if (count < 2) {
					continue;
				}
				if (!strcmp(fields[1], "*")) {
					selected = 0;
				} else {
					for (size_t i = 0; i < protocols; i++) {
						if (!strcmp(fields[1], protocol[i])) {
							selected = i;
							break;
						}
					}
				}
				if (selected == protocols) {
					continue;
				}
			}
			apply_route_options(fields[0], ws);
			peer.host = strdup(fields[0]);
			peer.protocol = selected;
			peer.framing = core_framing(count > 2 ? fields[2] : NULL);
			peer.framing_config = count > 3 ? strdup(fields[3]) : NULL;
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
