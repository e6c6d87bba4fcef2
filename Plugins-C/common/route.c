/* Templates and route lines, shared by backend_file and backend_redis (see route.h). */
#define _POSIX_C_SOURCE 200809L
#include "route.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

static int hex_digit(char c) {
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

/*
 * The percent-decoded value of query parameter `name` (matched as written in the request) in a
 * malloc'd buffer, or NULL: no such parameter, or a malformed escape. '+' is a space, as in forms.
 */
static char* query_value(const char* endpoint, const char* name, size_t name_length, size_t* length) {
	const char* p = strchr(endpoint, '?');
	if (!p) {
		return NULL;
	}
	p++;
	const char* query_end = p + strcspn(p, "#");
	while (p < query_end) {
		const char* item_end = memchr(p, '&', (size_t)(query_end - p));
		if (!item_end) {
			item_end = query_end;
		}
		size_t item = (size_t)(item_end - p);
		if (item > name_length && p[name_length] == '=' && !strncmp(p, name, name_length)) {
			const char* raw = p + name_length + 1;
			size_t raw_length = (size_t)(item_end - raw);
			char* decoded = malloc(raw_length + 1);
			if (!decoded) {
				return NULL;
			}
			size_t n = 0;
			for (size_t i = 0; i < raw_length; i++) {
				if (raw[i] == '%') {
					int high = i + 2 < raw_length ? hex_digit(raw[i + 1]) : -1;
					int low = high >= 0 ? hex_digit(raw[i + 2]) : -1;
					if (high < 0 || low < 0) {
						free(decoded);
						return NULL;
					}
					decoded[n++] = (char)(high * 16 + low);
					i += 2;
				} else {
					decoded[n++] = raw[i] == '+' ? ' ' : raw[i];
				}
			}
			decoded[n] = 0;
			*length = n;
			return decoded;
		}
		p = item_end + 1;
	}
	return NULL;
}

int route_expand(const char* template, const route_request* request, int variables,
                 route_value_filter filter, char* out, size_t* used, size_t capacity) {
	size_t n = *used;
	for (const char* p = template; *p;) {
		if (*p != '%') {
			if (n + 1 >= capacity) {
				return 0;
			}
			out[n++] = *p++;
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
		char* decoded = NULL;
		if (variable_length == 8 && !strncmp(variable, "endpoint", 8)) {
			value = request->endpoint;
			while (*value == '/') {
				value++;
			}
			const char* query = strchr(value, '?');
			value_length = query ? (size_t)(query - value) : strlen(value);
			while (value_length > 0 && value[value_length - 1] == '/') {
				value_length--;
			}
		} else if (variable_length > 7 && !strncmp(variable, "cookie:", 7)) {
			const char* cookies = header_value("Cookie", 6, request->headers, request->header);
			value = cookies ? cookie_value(cookies, variable + 7, variable_length - 7, &value_length) : NULL;
		} else if (variable_length == 6 && !strncmp(variable, "client", 6)) {
			value = core_client_address ? core_client_address(request->ws) : NULL;
			value_length = value ? strlen(value) : 0;
		} else if (variable_length > 6 && !strncmp(variable, "claim:", 6)) {
			char name[128];
			size_t name_length = variable_length - 6;
			if (core_claim && name_length < sizeof name) {
				memcpy(name, variable + 6, name_length);
				name[name_length] = 0;
				value = core_claim(request->ws, name);
			}
			value_length = value ? strlen(value) : 0;
		} else if (variable_length > 7 && !strncmp(variable, "header:", 7)) {
			value = header_value(variable + 7, variable_length - 7, request->headers, request->header);
			value_length = value ? strlen(value) : 0;
		} else if ((variables & ROUTE_VARIABLE_QUERY) && variable_length > 6 && !strncmp(variable, "query:", 6)) {
			value = decoded = query_value(request->endpoint, variable + 6, variable_length - 6, &value_length);
		}
		int accepted = value && value_length > 0 && n + value_length < capacity && filter(out + n, value, value_length);
		free(decoded);
		if (!accepted) {
			return 0;
		}
		n += value_length;
		p = close + 1;
	}
	out[n] = 0;
	*used = n;
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
	/* An exec:// peer's query is the program's arguments: its route options follow a '#'. */
	char* options = strchr(peer, strncmp(peer, "exec://", 7) ? '?' : '#');
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

int route_line(char* line, size_t protocols, char** protocol, websocket* ws, ws_peer_info* peer) {
	size_t n = strlen(line);
	while (n > 0 && isspace((unsigned char)line[n - 1])) {
		line[--n] = 0;
	}
	char* fields[4] = { NULL, NULL, NULL, NULL };
	size_t count = split_fields(line, fields);
	if (count == 0 || fields[0][0] == '#') {
		return 0;
	}
	size_t selected = protocols;
	if (protocols > 0) {
		if (count < 2) {
			return 0;
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
			return 0;
		}
	}
	apply_route_options(fields[0], ws);
	peer->host = strdup(fields[0]);
	peer->protocol = selected;
	peer->framing = core_framing(count > 2 ? fields[2] : NULL);
	peer->framing_config = count > 3 ? strdup(fields[3]) : NULL;
	return 1;
}

int route_text(char* text, size_t protocols, char** protocol, websocket* ws, ws_peer_info* peer) {
	for (char* line = text; line;) {
		char* next = strchr(line, '\n');
		if (next) {
			*next++ = 0;
		}
		if (route_line(line, protocols, protocol, ws, peer)) {
			return 1;
		}
		line = next;
	}
	return 0;
}
