"""Keys, JSON Web Tokens and htpasswd entries for the authentication tests, made with PyJWT,
cryptography, bcrypt and openssl: never by the gateway under test.

`Keys()` generates one key per asymmetric algorithm family (RSA-2048, P-256, P-384, P-521, Ed25519)
and an HMAC secret; `mint` signs a token with PyJWT; `forge` builds one byte by byte, for tokens no
library would make (alg none, confused algorithms, broken encodings)."""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import warnings

import bcrypt
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

HMAC_ALGS = ["HS256", "HS384", "HS512"]
RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
EC_ALGS = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
ALL_ALGS = HMAC_ALGS + RSA_ALGS + list(EC_ALGS) + ["EdDSA"]

_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_json(obj):
    return b64u(json.dumps(obj, separators=(",", ":")))


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def family(alg):
    if alg in HMAC_ALGS:
        return "hmac"
    if alg in RSA_ALGS:
        return "rsa"
    if alg in EC_ALGS:
        return EC_ALGS[alg]
    return "Ed25519"


class Keys:
    """A private key per family ("rsa", "P-256", "P-384", "P-521", "Ed25519") and an HMAC secret."""

    def __init__(self, secret=None, asymmetric=True):
        self.secret = secret if secret is not None else os.urandom(24).hex().encode()  # 48 bytes
        self.private = {} if not asymmetric else {
            "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "P-256": ec.generate_private_key(ec.SECP256R1()),
            "P-384": ec.generate_private_key(ec.SECP384R1()),
            "P-521": ec.generate_private_key(ec.SECP521R1()),
            "Ed25519": ed25519.Ed25519PrivateKey.generate(),
        }

    def signing_key(self, alg):
        f = family(alg)
        return self.secret if f == "hmac" else self.private[f]

    def pem(self, fam):
        return public_pem(self.private[fam])

    def all_pems(self):
        return "".join(self.pem(f) for f in self.private)

    def jwk(self, fam, kid=None, alg=None, use=None):
        """The public key of a family as a JWK (a dict)."""
        key = self.private[fam].public_key()
        if fam == "rsa":
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True)
        elif fam == "Ed25519":
            jwk = jwt.algorithms.OKPAlgorithm.to_jwk(key, as_dict=True)
        else:
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True)
        for name in ("kid", "alg", "use", "key_ops"):
            jwk.pop(name, None)
        if kid is not None:
            jwk["kid"] = kid
        if alg is not None:
            jwk["alg"] = alg
        if use is not None:
            jwk["use"] = use
        return jwk


def claims(lifetime=300, **extra):
    """Default claims: exp `lifetime` seconds ahead, plus `extra` (None removes a claim)."""
    now = int(time.time())
    c = {"sub": "alice", "iat": now, "exp": now + lifetime}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def mint(keys, alg, kid=None, headers=None, **claim_overrides):
    """A token signed by PyJWT with the key of `alg`'s family."""
    h = dict(headers or {})
    if kid is not None:
        h["kid"] = kid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HS512 with a 48-byte secret: PyJWT recommends 64
        return jwt.encode(claims(**claim_overrides), keys.signing_key(alg), algorithm=alg, headers=h or None)


def sign_raw(alg, key, signing_input):
    """The JWS signature of `signing_input` (bytes) with `alg` and `key`, as PyJWT would make it."""
    if alg in HMAC_ALGS:
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        return hmac.new(key, signing_input, digest).digest()
    algo = jwt.algorithms.get_default_algorithms()[alg]
    return algo.sign(signing_input, key)


def forge(header, payload, alg=None, key=None, signature=None):
    """A token from a header and payload (dicts, or str/bytes used as they are), signed with
    `alg`/`key` when given, else carrying `signature` (bytes) or an empty signature."""
    h = b64u_json(header) if isinstance(header, dict) else b64u(header)
    p = b64u_json(payload) if isinstance(payload, dict) else b64u(payload)
    signing_input = f"{h}.{p}".encode()
    if alg is not None:
        signature = sign_raw(alg, key, signing_input)
    return f"{h}.{p}.{b64u(signature or b'')}"


def rs_signature_under_ps_header(keys, claims_dict):
    """A PS256 header over an RS256 (PKCS#1 v1.5) signature: valid only to a verifier that ignores
    the padding the alg names."""
    h = b64u_json({"alg": "PS256", "typ": "JWT"})
    p = b64u_json(claims_dict)
    sig = keys.private["rsa"].sign(f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{h}.{p}.{b64u(sig)}"


def signature_of(token):
    return token.rsplit(".", 1)[1]


# --- htpasswd entries -------------------------------------------------------------------------

def bcrypt_hash(password, prefix="$2b$"):
    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return prefix + h[4:]


def openssl_crypt(password, variant):
    """`$5$` or `$6$` SHA-crypt made by `openssl passwd -5/-6`."""
    r = subprocess.run(["openssl", "passwd", f"-{variant}", "-stdin"], input=password + "\n",
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()


def yescrypt_hash(password):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import crypt
    h = crypt.crypt(password, "$y$j9T$" + b64u(os.urandom(12)).replace("-", ".").replace("_", "/") + "$")
    assert h and h.startswith("$y$"), "libxcrypt without yescrypt"
    return h
