/*
 * framing_dynamic32: messages whose length is given by a 32-bit field in their header.
 * Configuration "offset=N,static=N,endian=big|little" (all optional; defaults 0, 0, little).
 * A message is offset + 4 + static + field bytes long.
 */
#include <stdlib.h>
#include <string.h>
#include <websocksy.h>

typedef struct {
	size_t offset;
	size_t fixed;
	int big_endian;
} dynamic32_config;

/* Parses the configuration; returns NULL when it is malformed. */
static dynamic32_config* parse_config(const char* text) {
	dynamic32_config* config = calloc(1, sizeof(dynamic32_config));
	if (!config || !text) {
		return config;
	}
	const char* p = text;
	while (*p) {
		const char* end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n > 7 && !strncmp(p, "offset=", 7)) {
			config->offset = strtoul(p + 7, NULL, 0);
		} else if (n > 7 && !strncmp(p, "static=", 7)) {
			config->fixed = strtoul(p + 7, NULL, 0);
		} else if (n == 10 && !strncmp(p, "endian=big", 10)) {
			config->big_endian = 1;
		} else if (n == 13 && !strncmp(p, "endian=little", 13)) {
			config->big_endian = 0;
		} else if (n > 0) {
			free(config);
			return NULL;
		}
		p += n + (end ? 1 : 0);
	}
	return config;
}

static int64_t framing_dynamic32(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode,
                                 void** framing_data, const char* config) {
	(void)last_read;
	dynamic32_config* state = *framing_data;
	if (!data) {
		free(state);
		*framing_data = NULL;
		return 0;
	}
	if (!state) {
		state = parse_config(config);
		if (!state) {
			return -1; /* malformed configuration */
		}
		*framing_data = state;
	}
	*opcode = ws_frame_binary;
	if (length < state->offset + 4) {
		return 0;
	}
	const uint8_t* f = data + state->offset;
	uint64_t field = state->big_endian
		? ((uint64_t)f[0] << 24 | (uint64_t)f[1] << 16 | (uint64_t)f[2] << 8 | f[3])
		: ((uint64_t)f[3] << 24 | (uint64_t)f[2] << 16 | (uint64_t)f[1] << 8 | f[0]);
	uint64_t total = state->offset + 4 + state->fixed + field;
	return length >= total ? (int64_t)total : 0;
}

static void __attribute__((constructor)) register_dynamic32(void) {
	core_register_framing("dynamic32", framing_dynamic32);
}
