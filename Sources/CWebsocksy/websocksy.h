/* Lets plugins written for the C websocksy, which include "../websocksy.h", build unchanged with
 * -I Sources/CWebsocksy/include (the path resolves to this file). */
#include "include/websocksy.h"
