/* Test-only backend built against a future API: init returns a version this core does not speak. */
#include <websocksy.h>

uint64_t init(void) { return WEBSOCKSY_API_VERSION + 1; }

ws_peer_info query(char* endpoint, size_t protocols, char** protocol, size_t headers, ws_http_header* header, websocket* ws) {
	(void)endpoint; (void)protocol; (void)headers; (void)header; (void)ws;
	ws_peer_info info = { .transport = peer_transport_detect, .protocol = protocols };
	return info;
}
