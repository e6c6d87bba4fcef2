/* The public header is all this module is; SwiftPM wants one source file to build it. */
#include "websocksy.h"
