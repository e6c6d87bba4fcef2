/*
 * Test-only framing plugin that checks the ABI from the plugin's side. Its log (the file named by
 * $ABITEST_LOG) records every per-connection allocation and release of framing_data, so a test can
 * count them. Framing: lines starting with '#' are discarded (ws_frame_discard); other lines are cut
 * by the built-in "newline" framing, reached through core_framing().
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <websocksy.h>

static void log_line(const char* what) {
	const char* path = getenv("ABITEST_LOG");
	if (!path) {
		return;
	}
	FILE* f = fopen(path, "a");
	if (f) {
		fprintf(f, "%s\n", what);
		fclose(f);
	}
}

typedef struct {
	void* inner; /* the newline framing's own framing_data */
	unsigned calls;
} abitest_state;

static int64_t framing_abitest(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode,
                               void** framing_data, const char* config) {
	ws_framing newline = core_framing("newline");
	abitest_state* state = *framing_data;
	if (!data) {
		if (state) {
			if (state->inner) {
				newline(NULL, 0, 0, opcode, &state->inner, "lf");
			}
			free(state);
			*framing_data = NULL;
			log_line("free");
		}
		return 0;
	}
	if (!config || !newline || core_framing("no-such-framing") != NULL || core_framing(NULL) == NULL) {
		return -1; /* the core API broke its promises */
	}
	if (!state) {
		state = calloc(1, sizeof(abitest_state));
		if (!state) {
			return -1;
		}
		*framing_data = state;
		log_line("alloc");
	}
	state->calls++;
	if (length > 0 && data[0] == '#') {
		uint8_t* end = memchr(data, '\n', length);
		if (!end) {
			return 0;
		}
		*opcode = ws_frame_discard;
		return end - data + 1;
	}
	return newline(data, length, last_read, opcode, &state->inner, "lf");
}

/* Registered twice: the second registration replaces the first (and the core logs it). */
static int64_t framing_placeholder(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode,
                                   void** framing_data, const char* config) {
	(void)data; (void)length; (void)last_read; (void)opcode; (void)framing_data; (void)config;
	return -1;
}

static void __attribute__((constructor)) register_abitest(void) {
	core_register_framing("abitest", framing_placeholder);
	core_register_framing("abitest", framing_abitest);
}
