/*
 * framing_json: one complete JSON value (object, array, string, number or literal) per text
 * message. Whitespace between values is dropped. Bytes that cannot be JSON go out as one binary
 * message, so nothing the peer sent is lost.
 */
#include <stddef.h>
#include <string.h>
#include <websocksy.h>

enum { JSON_MORE = 0, JSON_DONE = 1, JSON_BAD = -1 };
/* Nesting deeper than this is treated as malformed (bounds the recursion). */
#define JSON_MAX_DEPTH 256

typedef struct {
	const uint8_t* p;
	size_t n;
	size_t i;
	int depth;
} scanner;

static int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static int is_hex(uint8_t c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static void skip_space(scanner* s) {
	while (s->i < s->n && is_space(s->p[s->i])) {
		s->i++;
	}
}

static int scan_value(scanner* s);

static int scan_string(scanner* s) {
	s->i++; /* opening quote */
	while (s->i < s->n) {
		uint8_t c = s->p[s->i];
		if (c == '"') {
			s->i++;
			return JSON_DONE;
		}
		if (c < 0x20) {
			return JSON_BAD;
		}
		if (c == '\\') {
			if (s->i + 1 >= s->n) {
				return JSON_MORE;
			}
			uint8_t e = s->p[s->i + 1];
			if (e == 'u') {
				for (size_t k = 2; k < 6; k++) {
					if (s->i + k >= s->n) {
						return JSON_MORE;
					}
					if (!is_hex(s->p[s->i + k])) {
						return JSON_BAD;
					}
				}
				s->i += 6;
				continue;
			}
			if (!strchr("\"\\/bfnrt", e) || e == 0) {
				return JSON_BAD;
			}
			s->i += 2;
			continue;
		}
		s->i++;
	}
	return JSON_MORE;
}

/* One or more digits (of a fraction or an exponent). */
static int scan_digits(scanner* s) {
	if (s->i >= s->n) {
		return JSON_MORE;
	}
	if (!is_digit(s->p[s->i])) {
		return JSON_BAD;
	}
	while (s->i < s->n && is_digit(s->p[s->i])) {
		s->i++;
	}
	return JSON_DONE;
}

/* A number ends at the first byte that cannot continue it; at the end of the buffer it may go on. */
static int scan_number(scanner* s) {
	if (s->p[s->i] == '-') {
		s->i++;
	}
	if (s->i >= s->n) {
		return JSON_MORE;
	}
	if (s->p[s->i] == '0') {
		s->i++;
	} else if (is_digit(s->p[s->i])) {
		while (s->i < s->n && is_digit(s->p[s->i])) {
			s->i++;
		}
	} else {
		return JSON_BAD;
	}
	if (s->i < s->n && s->p[s->i] == '.') {
		s->i++;
		int r = scan_digits(s);
		if (r != JSON_DONE) {
			return r;
		}
	}
	if (s->i < s->n && (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
		s->i++;
		if (s->i < s->n && (s->p[s->i] == '+' || s->p[s->i] == '-')) {
			s->i++;
		}
		int r = scan_digits(s);
		if (r != JSON_DONE) {
			return r;
		}
	}
	return s->i >= s->n ? JSON_MORE : JSON_DONE;
}

static int scan_literal(scanner* s, const char* word) {
	size_t len = strlen(word);
	for (size_t k = 0; k < len; k++) {
		if (s->i + k >= s->n) {
			return JSON_MORE;
		}
		if (s->p[s->i + k] != (uint8_t)word[k]) {
			return JSON_BAD;
		}
	}
	s->i += len;
	return JSON_DONE;
}

/* Objects and arrays: members separated by commas up to the closing bracket. */
static int scan_container(scanner* s, uint8_t close, int keyed) {
	if (++s->depth > JSON_MAX_DEPTH) {
		return JSON_BAD;
	}
	s->i++;
	skip_space(s);
	if (s->i >= s->n) {
		return JSON_MORE;
	}
	if (s->p[s->i] == close) {
		s->i++;
		s->depth--;
		return JSON_DONE;
	}
	for (;;) {
		int r;
		if (keyed) {
			skip_space(s);
			if (s->i >= s->n) {
				return JSON_MORE;
			}
			if (s->p[s->i] != '"') {
				return JSON_BAD;
			}
			if ((r = scan_string(s)) != JSON_DONE) {
				return r;
			}
			skip_space(s);
			if (s->i >= s->n) {
				return JSON_MORE;
			}
			if (s->p[s->i++] != ':') {
				return JSON_BAD;
			}
		}
		if ((r = scan_value(s)) != JSON_DONE) {
			/* A number at the end of the buffer inside a container is simply unfinished. */
			return r;
		}
		skip_space(s);
		if (s->i >= s->n) {
			return JSON_MORE;
		}
		uint8_t c = s->p[s->i++];
		if (c == close) {
			s->depth--;
			return JSON_DONE;
		}
		if (c != ',') {
			return JSON_BAD;
		}
	}
}

static int scan_value(scanner* s) {
	skip_space(s);
	if (s->i >= s->n) {
		return JSON_MORE;
	}
	switch (s->p[s->i]) {
	case '{': return scan_container(s, '}', 1);
	case '[': return scan_container(s, ']', 0);
	case '"': return scan_string(s);
	case 't': return scan_literal(s, "true");
	case 'f': return scan_literal(s, "false");
	case 'n': return scan_literal(s, "null");
	default: return scan_number(s);
	}
}

static int64_t framing_json(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode,
                            void** framing_data, const char* config) {
	(void)last_read;
	(void)framing_data;
	(void)config;
	if (!data) {
		return 0;
	}
	scanner s = { data, length, 0, 0 };
	skip_space(&s);
	if (s.i > 0) {
		*opcode = ws_frame_discard; /* whitespace between values */
		return (int64_t)s.i;
	}
	switch (scan_value(&s)) {
	case JSON_DONE:
		*opcode = ws_frame_text;
		return (int64_t)s.i;
	case JSON_MORE:
		return 0;
	default:
		*opcode = ws_frame_binary; /* not JSON: pass it on as it is */
		return (int64_t)length;
	}
}

static void __attribute__((constructor)) register_json(void) {
	core_register_framing("json", framing_json);
}
