/*
 * framing_fixedlength: binary messages of exactly N bytes, N given as the framing configuration.
 * A configuration of 0 (or none) frames everything available at once.
 */
#include <stdlib.h>
#include <websocksy.h>

static int64_t framing_fixedlength(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode,
                                   void** framing_data, const char* config) {
	(void)last_read;
	(void)framing_data;
	if (!data) {
		return 0; /* nothing allocated per connection */
	}
	size_t size = config ? (size_t)strtoull(config, NULL, 0) : 0;
	*opcode = ws_frame_binary;
	if (size == 0) {
		return (int64_t)length;
	}
	return length >= size ? (int64_t)size : 0;
}

static void __attribute__((constructor)) register_fixedlength(void) {
	core_register_framing("fixedlength", framing_fixedlength);
}
