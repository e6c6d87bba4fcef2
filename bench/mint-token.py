#!/usr/bin/env python3
"""Prints a JWT for the auth rows of `make bench`, with the standard library and openssl only:
mint-token.py HS256 SECRET_FILE | ES256 EC_PRIVATE_KEY_PEM. Valid for a day; no claims but sub and exp."""
import base64, hashlib, hmac, json, subprocess, sys, time


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_to_raw(der, size=32):
    """An ECDSA-Sig-Value (SEQUENCE of two INTEGERs) as r || s, each `size` bytes (RFC 7518 §3.4)."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(size, b"\0")
        i += 2 + n
    return out


alg, key = sys.argv[1], sys.argv[2]
head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 86400}).encode())
signing_input = f"{head}.{body}".encode()
if alg == "HS256":
    secret = open(key, "rb").read().rstrip(b"\n")
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
elif alg == "ES256":
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input,
                         capture_output=True, check=True).stdout
    signature = der_to_raw(der)
else:
    sys.exit(f"unsupported algorithm {alg}")
print(f"{head}.{body}.{b64(signature)}")
