/*
 * Code shared by the backends that route by request: the key or file name templates
 * (%endpoint%, %cookie:NAME%, %header:NAME%, %client%, %claim:NAME%, %query:NAME%) and the route line format
 * `<peer> <subprotocol> [<framing> [<framing-config>]]`.
 * Compiled into each backend's .so; nothing here is exported to the core.
 */
#ifndef WEBSOCKSY_PLUGIN_ROUTE_H
#define WEBSOCKSY_PLUGIN_ROUTE_H
#include <stddef.h>
#include <websocksy.h>

/* Weak, so a backend still loads in a core without it (where route options are ignored). */
extern int core_peer_option(websocket* ws, const char* key, const char* value) __attribute__((weak));
extern const char* core_client_address(websocket* ws) __attribute__((weak));
extern const char* core_claim(websocket* ws, const char* name) __attribute__((weak));

/* Hidden: two backends loaded in one process must each keep their own copy. */
#define ROUTE_INTERNAL __attribute__((visibility("hidden")))

/* The request a template is expanded against, as `query` got it. */
typedef struct {
	const char* endpoint;
	size_t headers;
	ws_http_header* header;
	websocket* ws;
} route_request;

/* Which variables a backend offers besides %endpoint%, %cookie:NAME%, %header:NAME%, %client%
 * (the client's IP address from core_client_address) and %claim:NAME% (a claim of the client's
 * verified token, from core_claim); the last two have no value in a core without them. */
#define ROUTE_VARIABLE_QUERY 1 /* %query:NAME%, percent-decoded */

/*
 * Copies a substituted value (`length` > 0 bytes) to `out`, changing bytes if it needs to.
 * Returns 0 when the value is not acceptable: the template is then skipped.
 */
typedef int (*route_value_filter)(char* out, const char* value, size_t length);

/*
 * Appends the expansion of `template` to `out`, which holds `*used` bytes and room for `capacity`
 * (the terminating NUL included). Returns 0 when a variable has no value, is empty, is refused by
 * `filter`, or the result does not fit: the template is to be skipped.
 */
ROUTE_INTERNAL int route_expand(const char* template, const route_request* request, int variables,
                                route_value_filter filter, char* out, size_t* used, size_t capacity);

/*
 * Considers one route line (changed in place). Returns 1 and fills `peer` when the line is the
 * route: with subprotocols offered, its subprotocol is offered or is '*'; without, any line.
 * Empty lines and lines starting with '#' are never the route. The chosen peer's `?KEY=VALUE&...`
 * options go to the core through core_peer_option.
 */
ROUTE_INTERNAL int route_line(char* line, size_t protocols, char** protocol, websocket* ws, ws_peer_info* peer);

/* route_line over each line of `text` (changed in place) until one is the route. */
ROUTE_INTERNAL int route_text(char* text, size_t protocols, char** protocol, websocket* ws, ws_peer_info* peer);

#endif
