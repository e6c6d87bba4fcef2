#include <nettle/sha1.h>
#include <nettle/base64.h>
#include <nettle/version.h>
#include <nettle/memops.h>
#include <nettle/hmac.h>

/* An HMAC key prepared once (its inner and outer hash states), so that each token check hashes
 * only the token: SHA-256, SHA-384 or SHA-512 by `size`, the digest length. */
typedef struct {
    int size;
    union {
        struct hmac_sha256_ctx sha256;
        struct hmac_sha512_ctx sha512; /* also SHA-384's */
    } u;
} cnettle_hmac_key;

static inline void cnettle_hmac_prepare(cnettle_hmac_key *key, int size, const uint8_t *secret, size_t length) {
    key->size = size;
    if (size == 32) hmac_sha256_set_key(&key->u.sha256, length, secret);
    else if (size == 48) hmac_sha384_set_key(&key->u.sha512, length, secret);
    else hmac_sha512_set_key(&key->u.sha512, length, secret);
}

static inline void cnettle_hmac_compute(const cnettle_hmac_key *key, const uint8_t *data, size_t length, uint8_t *digest) {
    cnettle_hmac_key copy = *key;
    if (copy.size == 32) {
        hmac_sha256_update(&copy.u.sha256, length, data);
        hmac_sha256_digest(&copy.u.sha256, 32, digest);
    } else if (copy.size == 48) {
        hmac_sha384_update(&copy.u.sha512, length, data);
        hmac_sha384_digest(&copy.u.sha512, 48, digest);
    } else {
        hmac_sha512_update(&copy.u.sha512, length, data);
        hmac_sha512_digest(&copy.u.sha512, 64, digest);
    }
}
