/*
 * Test-only framing plugin that lies: it frames everything it is given as one text message, UTF-8
 * or not, so the tests can check that the core never sends invalid UTF-8 as text (RFC 6455 §8.1).
 */
#include <websocksy.h>

static int64_t framing_liar(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode,
                            void** framing_data, const char* config) {
	(void)last_read;
	(void)framing_data;
	(void)config;
	if (!data) {
		return 0; /* the end-of-connection call: nothing to free */
	}
	*opcode = ws_frame_text;
	return (int64_t)length;
}

static void __attribute__((constructor)) register_liar(void) {
	core_register_framing("liar", framing_liar);
}
