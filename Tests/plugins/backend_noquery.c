/* Test-only backend that lacks the required `query` symbol. */
#include <websocksy.h>

uint64_t init(void) { return WEBSOCKSY_API_VERSION; }
