#include <nettle/sha1.h>
#include <nettle/base64.h>
#include <nettle/version.h>
#include <nettle/memops.h>
