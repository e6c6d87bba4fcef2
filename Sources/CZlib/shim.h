#include <zlib.h>

/* deflateInit2 and inflateInit2 are macros (they pass the library version and the stream size),
   which Swift cannot call: these wrappers can. Negative window bits select raw DEFLATE, the
   format permessage-deflate carries (RFC 7692 section 7.2.1). */
static inline int czlib_deflate_init_raw(z_stream* stream, int level, int window_bits, int mem_level, int strategy) {
    return deflateInit2(stream, level, Z_DEFLATED, -window_bits, mem_level, strategy);
}

static inline int czlib_inflate_init_raw(z_stream* stream, int window_bits) {
    return inflateInit2(stream, -window_bits);
}
