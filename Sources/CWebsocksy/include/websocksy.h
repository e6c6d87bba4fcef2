/*
 * websocksy.h — the plugin interface of websocksy, API version 1.
 *
 * Backends (peer discovery) and framing functions are shared objects loaded with dlopen(3).
 * This header is all a plugin needs; it includes only standard C headers and compiles as C99 or C11.
 */
#ifndef WEBSOCKSY_HEADER_INCLUDED
#define WEBSOCKSY_HEADER_INCLUDED
#include <ctype.h> /* websocksy's own file backend uses isprint() without including it */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The API version. A backend's `init` returns the version it was built against. */
#define WEBSOCKSY_API_VERSION 1

/*
 * WebSocket opcodes (RFC 6455 section 5.2), as a framing function reports them.
 * `ws_frame_discard` is not an opcode on the wire: a framing function returning it asks the core
 * to drop the bytes it framed instead of sending them.
 */
typedef enum {
	ws_frame_continuation = 0,
	ws_frame_text = 1,
	ws_frame_binary = 2,
	ws_frame_close = 8,
	ws_frame_ping = 9,
	ws_frame_pong = 10,
	ws_frame_discard
} ws_operation;

/* Close status codes (RFC 6455 section 7.4.1). `ws_close_http` marks a refusal before the upgrade. */
typedef enum {
	ws_close_http = 100,
	ws_close_normal = 1000,
	ws_close_shutdown = 1001,
	ws_close_proto = 1002,
	ws_close_data = 1003,
	ws_close_format = 1007,
	ws_close_policy = 1008,
	ws_close_limit = 1009,
	ws_close_unexpected = 1011
} ws_close_reason;

/* One HTTP request header, name (`tag`) spelled as the client sent it. Owned by the core. */
typedef struct /*_ws_http_header*/ {
	char* tag;
	char* value;
} ws_http_header;

/*
 * Framing function: cuts the byte stream read from a peer into WebSocket messages.
 *
 * Called after every successful read from the peer with all buffered, not yet framed bytes
 * (`data`, `length`) and the size of the read that just completed (`last_read`; the newest bytes
 * are the last `last_read` of `data`). It returns how many bytes from the start of `data` form the
 * next message: 0 asks for more data, a negative value is an error and closes the connection (1011).
 * `*opcode` is preset to `ws_frame_binary`; set it to `ws_frame_text` for a text message or to
 * `ws_frame_discard` to drop the framed bytes. While it frames something and bytes remain, it is
 * called again with the rest.
 *
 * `*framing_data` belongs to the function, one pointer per connection, initially NULL. When the
 * connection ends and it is not NULL, the function is called once more with `data == NULL` so it
 * can free it. `config` is the peer's framing configuration, "" when none is set (never NULL).
 */
typedef int64_t (*ws_framing)(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode, void** framing_data, const char* config);

/* Peer transports. `peer_transport_detect` takes the transport from the scheme of `host`.
 * `peer_fifo_rx`: the core receives from the named pipe `host` (fifo://), `peer_fifo_tx`: it
 * transmits what clients send into it (fifo-out://); both are shared by all their clients. */
typedef enum {
	peer_transport_detect,
	peer_tcp_client,
	peer_udp_client,
	peer_fifo_tx,
	peer_fifo_rx,
	peer_unix_stream,
	peer_unix_dgram
} peer_transport;

/*
 * The peer a backend picked for one connection. The strings are allocated with malloc/calloc by
 * the backend and freed by the core. `host == NULL` means no peer: the client gets HTTP 404.
 * `framing == NULL` selects `auto`. `protocol` is the index of the selected subprotocol in the
 * offered list; the count of offered protocols means none.
 */
typedef struct /*_ws_peer_info*/ {
	peer_transport transport;
	char* host;
	char* port;
	ws_framing framing;
	char* framing_config;
	size_t protocol;
} ws_peer_info;

/* A client connection. Opaque: plugins only pass it back to the core. */
typedef struct websocket websocket;

/*
 * Backend API. A backend `backend_NAME.so` exports:
 *   init      required  called after loading; returns WEBSOCKSY_API_VERSION. It runs again on
 *                       each reload (SIGHUP) in the same loaded file: reset every global there
 *   configure optional  called for every option in order; returns 0 on success
 *   query     required  called once per upgrade request to pick the peer
 *   cleanup   optional  called before the backend is unloaded or the core exits
 * The calls never overlap. `init`, `configure` and `cleanup` run on the core's event loop; `query`
 * runs on a thread of its own (one per loaded backend), so it may block — on a database, a file
 * system — without stalling other connections. A query that takes longer than `backend-timeout`
 * gets its client 504; its answer, when it comes, is discarded. From `query`, only
 * `core_framing`, `core_peer_option`, `core_client_address`, `core_claim` and `xstr_lower` may be
 * called (not `core_register_framing`).
 */
typedef uint64_t (*ws_backend_init)(void);
typedef uint64_t (*ws_backend_configure)(char* key, char* value);
/* `endpoint` is the request target; `protocol[0..protocols)` the offered subprotocols;
 * `header[0..headers)` the request headers. All are owned by the core and valid during the call. */
typedef ws_peer_info (*ws_backend_query)(char* endpoint, size_t protocols, char** protocol, size_t headers, ws_http_header* header, websocket* ws);
typedef void (*ws_backend_cleanup)(void);

typedef struct /*_ws_backend*/ {
	ws_backend_init init;
	ws_backend_configure config;
	ws_backend_query query;
	ws_backend_cleanup cleanup;
} ws_backend;

/* Core API, exported by the websocksy executable. */

/* Registers a framing function under `name` (a later registration of a name replaces the older one).
 * Framing plugins call it from a constructor when they are loaded. Returns 0 on success. */
int core_register_framing(char* name, ws_framing func);
/* The framing function registered as `name`, `auto` for NULL, NULL for an unknown name. */
ws_framing core_framing(char* name);
/* Lower-cases an ASCII string in place and returns it. */
char* xstr_lower(char* in);
/* An addition to API 1 (the C websocksy does not have it: declare it weak to stay loadable there).
 * From `query` only, with the `ws` it was given: sets an option for the connection being routed.
 * Keys: "compression" = off, on or a minimum message size (as the [core] key, for this route);
 * "record" = off or a directory; "status" = the HTTP status (400-504) the client gets when `query`
 * then names no peer (e.g. "503" while the backend's database is unreachable; 404 otherwise).
 * Returns 0 when applied, 1 for an unknown key or an invalid value (logged). */
int core_peer_option(websocket* ws, const char* key, const char* value);
/* An addition to API 1 (declare it weak, as above). From `query` only: the client's IP address as
 * text ("203.0.113.7", "2001:db8::7"; the one a trusted load balancer's PROXY header carries), or
 * NULL for a client on a Unix socket. Valid until `query` returns. */
const char* core_client_address(websocket* ws);
/* An addition to API 1 (declare it weak, as above). From `query` only: the claim `name` of the
 * client's verified token (auth-keys / auth-secret) as text — strings as they are, numbers as
 * written, booleans as true/false — or NULL when there is no token, no such claim, or it is an
 * object, an array or null. Valid until `query` returns. */
const char* core_claim(websocket* ws, const char* name);

#ifdef __cplusplus
}
#endif
#endif
