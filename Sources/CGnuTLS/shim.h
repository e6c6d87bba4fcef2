#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

/* Flag and error macros as functions: some do not import into Swift as usable constants. */
static inline unsigned int cgnutls_server_flags(void) { return GNUTLS_SERVER | GNUTLS_NONBLOCK; }
static inline unsigned int cgnutls_client_flags(void) { return GNUTLS_CLIENT | GNUTLS_NONBLOCK; }
static inline int cgnutls_e_again(void) { return GNUTLS_E_AGAIN; }
static inline int cgnutls_e_interrupted(void) { return GNUTLS_E_INTERRUPTED; }
static inline int cgnutls_e_premature_termination(void) { return GNUTLS_E_PREMATURE_TERMINATION; }

/* Token signatures (Auth/): public keys, their signatures, HMAC. */
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
static inline void cgnutls_free(void *p) { gnutls_free(p); }
