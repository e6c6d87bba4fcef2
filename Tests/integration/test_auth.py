"""Authentication at the WebSocket upgrade: JWTs (auth-keys, auth-secret) taken from the query,
a cookie, the Authorization header or a Sec-WebSocket-Protocol entry; HTTP basic auth from an
htpasswd file (auth-basic) for the web root and upgrades; the `-b token` backend that takes the
peer from the token's claims behind an allow-list; `%claim:NAME%` in plugin backends.

Every token is minted here with PyJWT and cryptography (Tests/integration/authkeys.py), every
peer is a real socket (peer.py), every request goes over a real connection."""
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import websockets

import authkeys
from authkeys import ALL_ALGS, EC_ALGS, HMAC_ALGS, RSA_ALGS, Keys, b64u, b64u_json, forge, mint
from conftest import BINARY, ROOT, Gateway, lines_of
from wsraw import RawClient, frame, request

TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(ROOT, ".build", "test-plugins"))

BEARER = 'Bearer realm="websocksy"'
INVALID = 'Bearer realm="websocksy", error="invalid_token"'
BASIC = 'Basic realm="websocksy", charset="UTF-8"'

KIDS = {"rsa": "rsa-1", "P-256": "ec-256", "P-384": "ec-384", "P-521": "ec-521", "Ed25519": "ed-1"}


def run(coro):
    return asyncio.run(coro)


# --- keys and files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture(scope="module")
def other_keys():
    """A second, unrelated set: tokens signed with these must be refused."""
    return Keys()


@pytest.fixture(scope="module")
def files(keys, other_keys, tmp_path_factory):
    d = tmp_path_factory.mktemp("authkeys")
    paths = {}

    def put(name, text):
        path = d / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        paths[name] = str(path)

    put("secret", keys.secret + b"\n")  # one trailing newline is not part of the secret
    for fam in keys.private:
        put(f"{fam}.pem", keys.pem(fam))
    put("all.pem", keys.all_pems())
    jwks = [keys.jwk(fam, kid=KIDS[fam]) for fam in keys.private]
    jwks.append(other_keys.jwk("rsa", kid="rsa-2"))  # several keys of one type: the kid decides
    put("jwks.json", json.dumps({"keys": jwks}, indent=1))
    put("jwks-alg.json", json.dumps({"keys": [keys.jwk("rsa", kid="only-rs256", alg="RS256", use="sig"),
                                              keys.jwk("P-256", kid="only-es256", alg="ES256")]}))
    put("rsa-pem-and-secret.pem", keys.pem("rsa"))
    return paths


def alg_key_flags(files, alg, form="pem"):
    """The core flags that make the gateway accept `alg` (a PEM file of its family, or the JWKS)."""
    fam = authkeys.family(alg)
    if fam == "hmac":
        return ["--auth-secret", files["secret"]]
    return ["--auth-keys", files["jwks.json" if form == "jwks" else f"{fam}.pem"]]


# --- talking to the gateway ---------------------------------------------------------------------

class Answer:
    def __init__(self, status, headers, head):
        self.status = status
        self.headers = headers  # lower-case name -> list of values
        self.head = head

    def one(self, name):
        values = self.headers.get(name.lower(), [])
        assert len(values) <= 1, (name, values)
        return values[0] if values else None


def ask(port, path="/", headers=(), echo=True, raw_extra=""):
    """Sends an upgrade request (extra headers as (name, value) pairs, or raw text) and returns the
    answer; after a 101, a binary message must come back from the echo peer."""
    c = RawClient(port)
    try:
        extra = "".join(f"{n}: {v}\r\n" for n, v in headers) + raw_extra
        c.send(request(path=path, extra=extra))
        while b"\r\n\r\n" not in c.buf:
            chunk = c.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed before the response ended: {c.buf!r}")
            c.buf += chunk
        head, c.buf = c.buf.split(b"\r\n\r\n", 1)
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        status = int(lines[0].split(" ")[1])
        parsed = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            parsed.setdefault(name.strip().lower(), []).append(value.strip())
        if status == 101 and echo:
            c.send(frame(2, b"\x00\xffthrough"))
            assert c.recv_frame() == (True, 2, b"\x00\xffthrough")
        return Answer(status, parsed, text)
    finally:
        c.close()


def query(token, name="token"):
    return f"/?{name}={token}"


def bearer(token):
    return [("Authorization", f"Bearer {token}")]


def assert_accepted(g, token=None, path=None, headers=()):
    a = ask(g.port, path=path or (query(token) if token else "/"), headers=headers)
    assert a.status == 101, (a.status, a.head, g.log()[-2000:])
    return a


def assert_refused(g, status, www, token=None, path=None, headers=(), reason=None):
    """The upgrade gets `status` with exactly this WWW-Authenticate (None: no such header), one
    `refused with STATUS:` log line, and the token's signature is not in the log."""
    before = g.log().count(f"refused with {status}:")
    a = ask(g.port, path=path or (query(token) if token is not None else "/"), headers=headers)
    assert a.status == status, (a.status, a.head)
    if www is not None:
        assert a.one("WWW-Authenticate") == www, a.head
    assert g.wait_for_log(f"refused with {status}:"), g.log()
    deadline = time.time() + 2
    while g.log().count(f"refused with {status}:") <= before and time.time() < deadline:
        time.sleep(0.02)
    assert g.log().count(f"refused with {status}:") == before + 1, g.log()
    if reason:
        assert re.search(reason, g.log().split(f"refused with {status}:")[-1].splitlines()[0], re.I), g.log()
    if token and "." in token and len(authkeys.signature_of(token)) >= 16:
        assert authkeys.signature_of(token) not in g.log(), "the token is in the log"
    return a


def startup_error(*args, timeout=5):
    """Starts the gateway with args that must stop it: returns its stderr (exit status non-zero)."""
    p = subprocess.Popen([BINARY, "-l", "127.0.0.1", "-p", "0", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"started although it should not: {args}\n{err}")
    assert p.returncode != 0, (args, err)
    assert "listening on" not in err, err
    return err


@pytest.fixture
def echo_peer(peer_factory):
    return peer_factory("tcp")


def gateway_to(gateway_factory, peer, *core):
    return gateway_factory(*core, "-c", f"host={peer.url}", "-c", "framing=binary")


# --- every algorithm, PEM and JWKS -----------------------------------------------------------------

@pytest.mark.parametrize("alg", ALL_ALGS)
def test_every_algorithm_end_to_end_with_a_pem_or_secret_file(gateway_factory, echo_peer, keys, other_keys, files, alg):
    g = gateway_to(gateway_factory, echo_peer, *alg_key_flags(files, alg))
    assert_accepted(g, mint(keys, alg))
    assert_accepted(g, headers=bearer(mint(keys, alg, kid="ignored-without-kids-in-pem")))
    # The same algorithm with another key: the signature does not verify.
    assert_refused(g, 401, INVALID, mint(other_keys, alg), reason="signature")


def test_all_algorithms_through_one_gateway_with_every_pem_and_the_secret(gateway_factory, echo_peer, keys, other_keys, files):
    g = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["all.pem"], "--auth-secret", files["secret"])
    for alg in ALL_ALGS:
        assert_accepted(g, mint(keys, alg))
    for alg in ("RS256", "ES384", "EdDSA", "HS512"):
        assert_refused(g, 401, INVALID, mint(other_keys, alg))


def test_jwks_with_kids_and_several_keys(gateway_factory, echo_peer, keys, other_keys, files):
    g = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["jwks.json"])
    for alg in RSA_ALGS + list(EC_ALGS) + ["EdDSA"]:
        fam = authkeys.family(alg)
        assert_accepted(g, mint(keys, alg, kid=KIDS[fam]))
    # The second RSA key, chosen by its kid.
    assert_accepted(g, mint(other_keys, "RS256", kid="rsa-2"))
    # Right key material, wrong kid: the kid picks the other RSA key, whose signature check fails.
    assert_refused(g, 401, INVALID, mint(keys, "RS256", kid="rsa-2"))
    assert_refused(g, 401, INVALID, mint(other_keys, "RS256", kid="rsa-1"))
    # A kid no key has.
    assert_refused(g, 401, INVALID, mint(keys, "RS256", kid="no-such-kid"), reason="unknown (kid|key id)")
    assert_refused(g, 401, INVALID, mint(keys, "ES256", kid="../../../../dev/null"), reason="unknown (kid|key id)")
    # The kid of an EC key on an RSA token.
    assert_refused(g, 401, INVALID, mint(keys, "RS256", kid="ec-256"))
    # No HMAC secret configured: HS tokens are refused whatever their kid.
    assert_refused(g, 401, INVALID, mint(keys, "HS256", kid="rsa-1"))


def test_jwks_key_alg_must_match_the_token_alg(gateway_factory, echo_peer, keys, files):
    g = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["jwks-alg.json"])
    assert_accepted(g, mint(keys, "RS256", kid="only-rs256"))
    assert_accepted(g, mint(keys, "ES256", kid="only-es256"))
    for alg in ("RS512", "PS256"):
        assert_refused(g, 401, INVALID, mint(keys, alg, kid="only-rs256"))


def test_key_file_errors_stop_start_up(echo_peer, files, tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"x" * 31 + b"\n")  # 32 bytes in the file, 31 after the trailing newline
    assert "short" in startup_error("--auth-secret", str(short), "-c", f"host={echo_peer.url}")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n")
    assert "broken.pem" in startup_error("--auth-keys", str(broken), "-c", f"host={echo_peer.url}")
    empty = tmp_path / "empty.json"
    empty.write_text('{"keys": []}')
    startup_error("--auth-keys", str(empty), "-c", f"host={echo_peer.url}")
    startup_error("--auth-keys", str(tmp_path / "missing.pem"), "-c", f"host={echo_peer.url}")


def test_a_32_byte_secret_is_enough(gateway_factory, echo_peer, tmp_path):
    secret = b"0123456789abcdef0123456789abcdef"
    path = tmp_path / "secret32"
    path.write_bytes(secret + b"\n")
    g = gateway_to(gateway_factory, echo_peer, "--auth-secret", str(path))
    assert_accepted(g, mint(Keys(secret=secret, asymmetric=False), "HS256"))
    # The newline is not part of the secret.
    assert_refused(g, 401, INVALID, mint(Keys(secret=secret + b"\n", asymmetric=False), "HS256"))


# --- refusals, their status and header -------------------------------------------------------------

@pytest.fixture
def rsa_gateway(gateway_factory, echo_peer, files):
    return gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"])


def test_no_token_is_401_bearer_without_error(rsa_gateway):
    a = assert_refused(rsa_gateway, 401, BEARER)
    assert "error=" not in a.head
    assert_refused(rsa_gateway, 401, BEARER, path="/?other=1")


def test_plain_http_to_the_web_root_needs_no_token(gateway_factory, echo_peer, files, tmp_path):
    (tmp_path / "index.html").write_text("public page")
    g = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"], "--web", str(tmp_path))
    c = RawClient(g.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, head = c.read_response()
    assert status == 200 and c.read_body(int(head["content-length"])) == b"public page"
    c.close()
    assert_refused(g, 401, BEARER)


@pytest.mark.parametrize("case", ["expired", "not-yet-valid", "garbage-signature", "truncated-signature",
                                  "signature-of-other-payload"])
def test_invalid_tokens_are_401_invalid_token(rsa_gateway, keys, case):
    now = int(time.time())
    if case == "expired":
        token = mint(keys, "RS256", exp=now - 120)
    elif case == "not-yet-valid":
        token = mint(keys, "RS256", nbf=now + 120)
    elif case == "garbage-signature":
        token = mint(keys, "RS256").rsplit(".", 1)[0] + "." + b64u(os.urandom(256))
    elif case == "truncated-signature":
        token = mint(keys, "RS256")[:-10]
    else:
        good, other = mint(keys, "RS256"), mint(keys, "RS256", sub="mallory")
        token = other.rsplit(".", 1)[0] + "." + authkeys.signature_of(good)
    assert_refused(rsa_gateway, 401, INVALID, token)


@pytest.mark.parametrize("token", [
    "abc", "a.b", "a.b.c.d", "a.b.c.d.e", "..", ".", "...", "eyJ!.eyJ!.sig",
    b64u("not json") + "." + b64u_json({"exp": 9999999999}) + ".c2ln",
    b64u_json({"alg": "RS256"}) + "." + b64u("{broken") + ".c2ln",
    b64u_json({"alg": "RS256"}) + "." + b64u("[1,2]") + ".c2ln",
    b64u_json({"alg": "RS256"}) + "." + b64u("null") + ".c2ln",
    b64u('["RS256"]') + "." + b64u_json({"exp": 9999999999}) + ".c2ln",
    b64u('"RS256"') + "." + b64u_json({"exp": 9999999999}) + ".c2ln",
])
def test_malformed_tokens_are_401_invalid_token(rsa_gateway, token):
    assert_refused(rsa_gateway, 401, INVALID, token)
    assert rsa_gateway.proc.poll() is None


def test_unsigned_and_none_tokens_are_refused(gateway_factory, echo_peer, keys, files):
    g = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["all.pem"], "--auth-secret", files["secret"])
    payload = authkeys.claims()
    for alg in ("none", "None", "NONE", "nOnE", "", None, 0, ["HS256"], "HS256 ", "hs256", "RS1", "HS1", "ES256K", "Ed25519"):
        header = {"typ": "JWT"} if alg is None else {"alg": alg, "typ": "JWT"}
        assert_refused(g, 401, INVALID, forge(header, payload))
        # The same with a valid HS256 signature over it: the alg is still not one of ours.
        if alg not in ("HS256 ", "hs256"):
            assert_refused(g, 401, INVALID, forge(header, payload, alg="HS256", key=keys.secret))
    # A header naming alg twice: a parser that keeps the last one would not check anything.
    dup = b64u('{"alg":"HS256","alg":"none"}') + "." + b64u_json(payload) + "."
    assert_refused(g, 401, INVALID, dup)
    assert g.proc.poll() is None


def test_algorithm_confusion_is_refused(gateway_factory, echo_peer, keys, files):
    pem = keys.pem("rsa")
    payload = authkeys.claims()
    only_keys = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"])
    both = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["all.pem"], "--auth-secret", files["secret"])
    jwks = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["jwks.json"])
    for g in (only_keys, both, jwks):
        for secret in (pem, pem.strip(), pem.replace("\n", "\r\n")):
            for alg in HMAC_ALGS:
                assert_refused(g, 401, INVALID, forge({"alg": alg, "typ": "JWT"}, payload, alg=alg, key=secret.encode()))
    # HS256 whose secret is the JWKS document or the JWK of the RSA key.
    jwk_text = json.dumps(keys.jwk("rsa", kid="rsa-1"))
    assert_refused(jwks, 401, INVALID, forge({"alg": "HS256", "kid": "rsa-1"}, payload, alg="HS256",
                                             key=open(files["jwks.json"], "rb").read()))
    assert_refused(jwks, 401, INVALID, forge({"alg": "HS256", "kid": "rsa-1"}, payload, alg="HS256", key=jwk_text.encode()))
    # An RS256 (PKCS#1 v1.5) signature under a PS256 header.
    assert_refused(both, 401, INVALID, authkeys.rs_signature_under_ps_header(keys, payload))
    # An ES256 signature under an ES384 / EdDSA header, an Ed25519 signature under ES256.
    es = mint(keys, "ES256")
    body, sig = es.split(".", 1)[1].rsplit(".", 1)
    for alg in ("ES384", "ES512", "EdDSA"):
        assert_refused(both, 401, INVALID, f"{b64u_json({'alg': alg})}.{body}.{sig}")
    ed_sig = authkeys.sign_raw("EdDSA", keys.private["Ed25519"], f"{b64u_json({'alg': 'ES256'})}.{body}".encode())
    assert_refused(both, 401, INVALID, f"{b64u_json({'alg': 'ES256'})}.{body}.{b64u(ed_sig)}")
    # A token the secret signs with an RS alg name.
    assert_refused(both, 401, INVALID, forge({"alg": "RS256"}, payload, alg="HS256", key=keys.secret))


def test_rsa_and_hmac_tokens_against_the_wrong_kind_of_key(gateway_factory, echo_peer, keys, files):
    secret_only = gateway_to(gateway_factory, echo_peer, "--auth-secret", files["secret"])
    for alg in RSA_ALGS + list(EC_ALGS) + ["EdDSA"]:
        assert_refused(secret_only, 401, INVALID, mint(keys, alg))
    ec_only = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["P-256.pem"])
    for alg in ("RS256", "PS256", "ES384", "ES512", "EdDSA", "HS256"):
        assert_refused(ec_only, 401, INVALID, mint(keys, alg))


def test_embedded_keys_in_the_header_are_not_trusted(rsa_gateway, other_keys):
    attacker = other_keys
    jwk = attacker.jwk("rsa")
    for extra in ({"jwk": jwk}, {"jku": "http://127.0.0.1:1/jwks.json"}, {"x5u": "http://127.0.0.1:1/x"},
                  {"x5c": ["MIIB"]}):
        assert_refused(rsa_gateway, 401, INVALID, mint(attacker, "RS256", headers=extra))


def test_token_size_limit_is_8192_bytes(rsa_gateway, gateway_factory, echo_peer, keys, files):
    g = gateway_to(gateway_factory, echo_peer, "--auth-secret", files["secret"])

    def token_of_length(n):
        for pad in range(n * 3 // 4 - 300, n):
            for hpad in range(4):
                t = mint(keys, "HS256", headers={"x": "h" * hpad} if hpad else None, pad="p" * pad)
                if len(t) == n:
                    return t
                if len(t) > n + 8:
                    break
        raise AssertionError(n)

    exact = token_of_length(8192)
    assert_accepted(g, exact)
    assert_accepted(g, headers=bearer(exact))
    over = token_of_length(8193)
    assert_refused(g, 401, INVALID, over)
    assert_refused(g, 401, INVALID, headers=bearer(over))
    huge = mint(keys, "HS256", pad="p" * 10000)
    a = ask(g.port, headers=bearer(huge), echo=False)
    assert a.status in (401, 431), a.head
    assert authkeys.signature_of(huge) not in g.log()
    assert_accepted(g, mint(keys, "HS256"))


# --- where the token comes from --------------------------------------------------------------------

def test_token_in_query_cookie_and_bearer_by_default(rsa_gateway, keys):
    token = mint(keys, "RS256")
    assert_accepted(rsa_gateway, path=f"/some/path?a=1&token={token}&b=2")
    # Percent-decoded.
    assert_accepted(rsa_gateway, path="/?token=" + token.replace(".", "%2E").replace("-", "%2d"))
    assert_accepted(rsa_gateway, headers=[("Cookie", f"theme=dark; token={token}; other=x")])
    assert_accepted(rsa_gateway, headers=bearer(token))
    # Not a default source.
    assert_refused(rsa_gateway, 401, BEARER, headers=[("Sec-WebSocket-Protocol", f"jwt.{token}")])
    assert_refused(rsa_gateway, 401, BEARER, path=f"/?access_token={token}")
    assert_refused(rsa_gateway, 401, BEARER, headers=[("Cookie", f"session={token}")])
    assert_refused(rsa_gateway, 401, BEARER, headers=[("X-Token", token)])


def test_the_first_configured_source_holding_a_token_is_used(rsa_gateway, keys):
    good = mint(keys, "RS256")
    assert_accepted(rsa_gateway, path=query(good), headers=bearer("junk.junk.junk") + [("Cookie", "token=x.y.z")])
    assert_accepted(rsa_gateway, headers=[("Cookie", f"token={good}")] + bearer("junk.junk.junk"))


def test_protocol_prefix_source_is_removed_from_the_offer(gateway_factory, echo_peer, keys, files):
    token = mint(keys, "ES256")
    g = gateway_factory("--auth-keys", files["P-256.pem"], "--auth-token", "protocol:access_token.",
                        "-c", f"host={echo_peer.url}", "-c", "framing=binary", "-c", "protocol=*")
    a = assert_accepted(g, headers=[("Sec-WebSocket-Protocol", f"access_token.{token}, chat")])
    assert a.one("Sec-WebSocket-Protocol") == "chat"
    a = assert_accepted(g, headers=[("Sec-WebSocket-Protocol", f"chat, access_token.{token}, mqtt")])
    assert a.one("Sec-WebSocket-Protocol") == "chat"
    # The token entry alone: nothing is left to select, and the token is never echoed back.
    a = assert_accepted(g, headers=[("Sec-WebSocket-Protocol", f"access_token.{token}")])
    assert a.one("Sec-WebSocket-Protocol") is None
    assert authkeys.signature_of(token) not in a.head
    # In a header of its own.
    a = assert_accepted(g, headers=[("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", f"access_token.{token}")])
    assert a.one("Sec-WebSocket-Protocol") == "chat"
    # Other sources are not configured.
    assert_refused(g, 401, BEARER, token)
    assert_refused(g, 401, BEARER, headers=bearer(token))
    assert_refused(g, 401, BEARER, headers=[("Sec-WebSocket-Protocol", "chat")])
    assert_refused(g, 401, INVALID, headers=[("Sec-WebSocket-Protocol", "access_token.x.y.z, chat")])

    async def with_client():  # the real client checks the answer against its offer
        async with websockets.connect(g.url, subprotocols=[f"access_token.{token}", "chat"]) as ws:
            await ws.send(b"client")
            assert await asyncio.wait_for(ws.recv(), 5) == b"client"
            return ws.subprotocol
    assert run(with_client()) == "chat"


def test_protocol_prefix_with_a_specific_backend_protocol(gateway_factory, echo_peer, keys, files):
    token = mint(keys, "EdDSA")
    g = gateway_factory("--auth-keys", files["Ed25519.pem"], "--auth-token", "protocol:bearer.",
                        "-c", f"host={echo_peer.url}", "-c", "framing=binary", "-c", "protocol=mqtt")
    a = assert_accepted(g, headers=[("Sec-WebSocket-Protocol", f"bearer.{token}, mqtt")])
    assert a.one("Sec-WebSocket-Protocol") == "mqtt"
    a = ask(g.port, headers=[("Sec-WebSocket-Protocol", f"bearer.{token}, other")], echo=False)
    assert a.status == 400 and authkeys.signature_of(token) not in a.head


def test_auth_token_restricts_and_orders_sources(gateway_factory, echo_peer, keys, files):
    token = mint(keys, "PS256")
    g = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"],
                   "--auth-token", "cookie:sess, query:access_token")
    assert_accepted(g, headers=[("Cookie", f"sess={token}")])
    assert_accepted(g, path=query(token, "access_token"))
    # Places not configured are ignored: it is as if no token came.
    assert_refused(g, 401, BEARER, token)
    assert_refused(g, 401, BEARER, headers=bearer(token))
    assert_refused(g, 401, BEARER, headers=[("Cookie", f"token={token}")])
    # Cookie before query: a good cookie decides, whatever the query holds.
    assert_accepted(g, path=query("x.y.z", "access_token"), headers=[("Cookie", f"sess={token}")])
    only_bearer = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"], "--auth-token", "bearer")
    assert_accepted(only_bearer, headers=bearer(token))
    assert_refused(only_bearer, 401, BEARER, token)
    assert_refused(only_bearer, 401, BEARER, headers=[("Cookie", f"token={token}")])
    assert_refused(only_bearer, 401, BEARER, headers=[("Authorization", f"Basic {b64u('a:b')}")])


# --- time, issuer, audience ------------------------------------------------------------------------

def test_exp_and_nbf_with_the_default_leeway(rsa_gateway, keys):
    now = int(time.time())
    assert_accepted(rsa_gateway, mint(keys, "RS256", exp=now - 10))
    assert_accepted(rsa_gateway, mint(keys, "RS256", nbf=now + 10))
    assert_refused(rsa_gateway, 401, INVALID, mint(keys, "RS256", exp=now - 45), reason="exp")
    assert_refused(rsa_gateway, 401, INVALID, mint(keys, "RS256", nbf=now + 45), reason="nbf|not (yet )?valid|before")


def test_leeway_zero_and_large(gateway_factory, echo_peer, keys, files):
    now = int(time.time())
    strict = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"], "--auth-leeway", "0")
    assert_refused(strict, 401, INVALID, mint(keys, "RS256", exp=now - 5))
    assert_refused(strict, 401, INVALID, mint(keys, "RS256", nbf=now + 5))
    assert_accepted(strict, mint(keys, "RS256", exp=now + 5, nbf=now - 1))
    lenient = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"], "--auth-leeway", "300")
    assert_accepted(lenient, mint(keys, "RS256", exp=now - 200))
    assert_accepted(lenient, mint(keys, "RS256", nbf=now + 200))
    assert_refused(lenient, 401, INVALID, mint(keys, "RS256", exp=now - 400))


def test_require_exp(gateway_factory, echo_peer, keys, files):
    default = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"])
    assert_refused(default, 401, INVALID, mint(keys, "RS256", exp=None))
    relaxed = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"], "--auth-require-exp", "no")
    assert_accepted(relaxed, mint(keys, "RS256", exp=None))
    assert_refused(relaxed, 401, INVALID, mint(keys, "RS256", exp=int(time.time()) - 100))


@pytest.mark.parametrize("bad", [{"exp": "9999999999"}, {"nbf": "0"}, {"exp": [9999999999]},
                                 {"exp": {"t": 1}}, {"exp": True}])
def test_badly_typed_time_claims_are_refused(rsa_gateway, keys, bad):
    assert_refused(rsa_gateway, 401, INVALID, mint(keys, "RS256", **bad))


def test_issuer_and_audience(gateway_factory, echo_peer, keys, files):
    g = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"], "--auth-issuer", "https://idp.example",
                   "--auth-audience", "websocksy, ops-console")
    iss = "https://idp.example"
    assert_accepted(g, mint(keys, "RS256", iss=iss, aud="websocksy"))
    assert_accepted(g, mint(keys, "RS256", iss=iss, aud="ops-console"))
    assert_accepted(g, mint(keys, "RS256", iss=iss, aud=["other", "ops-console"]))
    for claims in ({"iss": "https://idp.example/", "aud": "websocksy"}, {"iss": "https://IDP.example", "aud": "websocksy"},
                   {"aud": "websocksy"}, {"iss": iss}, {"iss": iss, "aud": "websocksy2"},
                   {"iss": iss, "aud": ["other", "third"]}, {"iss": iss, "aud": []},
                   {"iss": iss, "aud": "websocksy, ops-console"}, {"iss": [iss], "aud": "websocksy"},
                   {"iss": iss, "aud": 7}, {"iss": 7, "aud": "websocksy"}):
        # forged (PyJWT refuses to encode a non-string iss), validly signed
        token = forge({"alg": "RS256", "typ": "JWT"}, authkeys.claims(**claims), alg="RS256", key=keys.private["rsa"])
        assert_refused(g, 401, INVALID, token)


# --- the token backend -----------------------------------------------------------------------------

def hs_token(keys, peer=None, **claims):
    if peer is not None:
        claims["peer"] = peer
    return mint(keys, "HS256", **claims)


def token_gateway(gateway_factory, files, *options, core=()):
    args = ["--auth-secret", files["secret"], *core, "-b", "token"]
    for option in options:
        args += ["-c", option]
    return gateway_factory(*args)


def test_token_backend_routes_to_tcp_and_unix_peers(gateway_factory, peer_factory, keys, files):
    d = tempfile.mkdtemp(prefix="wsauth-", dir="/tmp")
    try:
        tcp = peer_factory("tcp")
        unix = peer_factory("unix", address=os.path.join(d, "peer.sock"))
        g = token_gateway(gateway_factory, files, "allow=tcp://127.0.0.1:*", f"allow=unix:{d}/")
        assert_accepted(g, hs_token(keys, tcp.url, framing="binary"))
        assert_accepted(g, hs_token(keys, unix.url, framing="binary"))
        # Missing or unparsable peer claims.
        for claims in ({}, {"peer": ""}, {"peer": 5900}, {"peer": ["tcp://127.0.0.1:1"]}, {"peer": "garbage"},
                       {"peer": "tcp://127.0.0.1:99999"}, {"peer": "tcp://"}, {"peer": f"{tcp.url}\r\nX: y"},
                       {"peer": f"{tcp.url}\x00.evil"}):
            assert_refused(g, 403, None, hs_token(keys, **claims))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_token_backend_framing_and_protocol_claims(gateway_factory, peer_factory, keys, files):
    lines = peer_factory("tcp", "script", repr([b"one\ntwo\n"]))
    echo = peer_factory("tcp")
    g = token_gateway(gateway_factory, files, "allow=tcp://127.0.0.1:*")

    async def messages(token, count, subprotocols=None):
        async with websockets.connect(f"{g.url}/?token={token}", subprotocols=subprotocols) as ws:
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(count)]
            return ws.subprotocol, got

    assert run(messages(hs_token(keys, lines.url, framing="newline", **{"framing-config": "lf"}), 2)) == \
        (None, ["one\n", "two\n"])

    async def echo_protocol(token, subprotocols=None):
        async with websockets.connect(f"{g.url}/?token={token}", subprotocols=subprotocols) as ws:
            await ws.send(b"p")
            assert await asyncio.wait_for(ws.recv(), 5) == b"p"
            return ws.subprotocol

    with_protocol = hs_token(keys, echo.url, framing="binary", protocol="mqtt")
    assert run(echo_protocol(with_protocol, ["x", "mqtt"])) == "mqtt"
    assert_refused(g, 400, None, path=query(with_protocol), headers=[("Sec-WebSocket-Protocol", "x, y")])
    without = hs_token(keys, echo.url, framing="binary")
    assert run(echo_protocol(without, ["first", "second"])) == "first"
    assert run(echo_protocol(without)) is None


def test_token_backend_claim_names_and_default_framing(gateway_factory, peer_factory, keys, files):
    lines = peer_factory("tcp", "script", repr([b"a\r\nb\r\n"]))
    g = token_gateway(gateway_factory, files, "allow=tcp://127.0.0.1:*", "peer-claim=dst",
                      "framing-claim=fr", "framing-config-claim=frc", "protocol-claim=sp", "framing=newline")

    async def messages(token, subprotocols=None):
        async with websockets.connect(f"{g.url}/?token={token}", subprotocols=subprotocols) as ws:
            return ws.subprotocol, [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)]

    assert run(messages(hs_token(keys, dst=lines.url))) == (None, ["a\r\n", "b\r\n"])  # newline, crlf
    assert run(messages(hs_token(keys, dst=lines.url, sp="v1"), ["v0", "v1"])) == ("v1", ["a\r\n", "b\r\n"])
    assert run(messages(hs_token(keys, dst=lines.url, fr="separator", frc="\\r\\n"))) == (None, [b"a\r\n", b"b\r\n"])
    assert_refused(g, 403, None, hs_token(keys, peer=lines.url))  # `peer` is not the claim any more


def test_token_backend_start_up_errors(echo_peer, files):
    startup_error("--auth-secret", files["secret"], "-b", "token")
    startup_error("--auth-secret", files["secret"], "-b", "token", "-c", "allow=")
    startup_error("-b", "token", "-c", "allow=tcp://127.0.0.1:*")
    for bad in ("tcp://127.0.0.1:70000", "tcp://127.0.0.1/33:*", "ftp://127.0.0.1:21",
                "tcp://127.0.0.1:9-1", "tcp://[::1]/129:*", "tcp://127.0.0.1", "unix:relative/dir/"):
        startup_error("--auth-secret", files["secret"], "-b", "token", "-c", f"allow={bad}")


def test_allow_entry_with_an_impossible_ipv4_address_is_an_error(files):
    """Not a host name either (an all-numeric last label): a typo that would never match."""
    for bad in ("tcp://300.0.0.1:*", "tcp://10.0.0.256:*"):
        startup_error("--auth-secret", files["secret"], "-b", "token", "-c", f"allow={bad}")


def test_allow_list_cidr_edges(gateway_factory, peer_factory, keys, files):
    peers = {last: peer_factory("tcp", address=f"127.0.5.{last}:0") for last in (7, 8, 15, 16)}
    g = token_gateway(gateway_factory, files, "allow=tcp://127.0.5.8/29:*")
    for last in (8, 15):
        assert_accepted(g, hs_token(keys, peers[last].url, framing="binary"))
    for last in (7, 16):
        assert_refused(g, 403, None, hs_token(keys, peers[last].url, framing="binary"))


def test_allow_list_port_ranges(gateway_factory, peer_factory, keys, files):
    a, b = peer_factory("tcp"), peer_factory("tcp")
    lo, hi = sorted(int(p.address.rsplit(":", 1)[1]) for p in (a, b))
    url = "tcp://127.0.0.1:{}".format
    g = token_gateway(gateway_factory, files, f"allow=tcp://127.0.0.1:{lo}-{hi}")
    for port in (lo, hi):
        assert_accepted(g, hs_token(keys, url(port), framing="binary"))
    for port in (lo - 1, hi + 1, 1, 65535):
        assert_refused(g, 403, None, hs_token(keys, url(port), framing="binary"))
    single = token_gateway(gateway_factory, files, f"allow=tcp://127.0.0.1:{hi}, tcp://127.0.0.2:{lo}")
    assert_accepted(single, hs_token(keys, url(hi), framing="binary"))
    assert_refused(single, 403, None, hs_token(keys, url(lo), framing="binary"))


def test_allow_list_ipv6(gateway_factory, peer_factory, keys, files):
    v6 = peer_factory("tcp", address="[::1]:0")
    port = v6.address.rsplit(":", 1)[1]
    g = token_gateway(gateway_factory, files, "allow=tcp://[::1]:*")
    assert_accepted(g, hs_token(keys, f"tcp://[::1]:{port}", framing="binary"))
    assert_accepted(g, hs_token(keys, f"tcp://[0:0:0:0:0:0:0:1]:{port}", framing="binary"))
    prefix = token_gateway(gateway_factory, files, "allow=tcp://[fd00::]/8:*")
    assert_refused(prefix, 403, None, hs_token(keys, f"tcp://[::1]:{port}", framing="binary"))
    wide = token_gateway(gateway_factory, files, "allow=tcp://[::]/127:*")  # :: and ::1
    assert_accepted(wide, hs_token(keys, f"tcp://[::1]:{port}", framing="binary"))


def test_allow_list_host_names(gateway_factory, peer_factory, keys, files):
    peer = peer_factory("tcp")
    port = peer.address.rsplit(":", 1)[1]
    by_name = token_gateway(gateway_factory, files, "allow=tcp://LocalHost:*")
    assert_accepted(by_name, hs_token(keys, f"tcp://localhost:{port}", framing="binary"))
    assert_accepted(by_name, hs_token(keys, f"tcp://LOCALHOST:{port}", framing="binary"))
    assert_refused(by_name, 403, None, hs_token(keys, f"tcp://127.0.0.1:{port}", framing="binary"))
    assert_refused(by_name, 403, None, hs_token(keys, f"udp://localhost:{port}"))  # the name, another scheme
    outside = token_gateway(gateway_factory, files, "allow=tcp://10.0.0.0/8:*")
    assert_refused(outside, 403, None, hs_token(keys, f"tcp://localhost:{port}", framing="binary"))
    inside = token_gateway(gateway_factory, files, "allow=tcp://127.0.0.0/8:*")
    assert_accepted(inside, hs_token(keys, f"tcp://localhost:{port}", framing="binary"))


def test_allow_list_address_spelling_tricks(gateway_factory, peer_factory, keys, files):
    """Other spellings of 127.0.0.1 must not slip past an allow-list of 10.0.0.0/8."""
    peer = peer_factory("tcp")
    port = peer.address.rsplit(":", 1)[1]
    g = token_gateway(gateway_factory, files, "allow=tcp://10.0.0.0/8:*")
    for host in ("127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "[::ffff:127.0.0.1]",
                 "[::ffff:7f00:1]", "[::127.0.0.1]", "0.0.0.0", "0"):
        assert_refused(g, 403, None, hs_token(keys, f"tcp://{host}:{port}", framing="binary"))
    # Not addresses at all: refused (403), or at worst unresolvable (502); never connected.
    for host in ("10.0.0.1@127.0.0.1", "10.0.0.1:1@127.0.0.1", "127.0.0.1#10.0.0.1", "127.0.0.1/10.0.0.1",
                 "127.0.0.1%2510.0.0.1", " 127.0.0.1"):
        a = ask(g.port, path=query(hs_token(keys, f"tcp://{host}:{port}", framing="binary")), echo=False)
        assert a.status in (403, 502), (host, a.head)
    assert g.proc.poll() is None


def test_allow_list_scheme_must_match(gateway_factory, peer_factory, keys, files):
    tcp = peer_factory("tcp")
    udp = peer_factory("udp")
    port = tcp.address.rsplit(":", 1)[1]
    g = token_gateway(gateway_factory, files, "allow=udp://127.0.0.1:*")
    assert_accepted(g, hs_token(keys, udp.url, framing="binary"))
    for url in (tcp.url, f"tls://127.0.0.1:{port}", f"127.0.0.1:{port}", "echo://", "unix-dgram:///tmp/x"):
        assert_refused(g, 403, None, hs_token(keys, url, framing="binary"))
    t = token_gateway(gateway_factory, files, "allow=tcp://127.0.0.1:*")
    assert_accepted(t, hs_token(keys, tcp.url, framing="binary"))
    for url in (udp.url, f"tls://127.0.0.1:{port}", "echo://"):
        assert_refused(t, 403, None, hs_token(keys, url, framing="binary"))


def test_allow_list_unix_paths(gateway_factory, peer_factory, keys, files):
    base = tempfile.mkdtemp(prefix="wsauth-", dir="/tmp")
    try:
        inside = os.path.join(base, "in")
        sibling = os.path.join(base, "inx")
        exact_dir = os.path.join(base, "ex")
        for d in (inside, sibling, exact_dir):
            os.mkdir(d)
        ok = peer_factory("unix", address=os.path.join(inside, "a.sock"))
        nested_dir = os.path.join(inside, "sub")
        os.mkdir(nested_dir)
        nested = peer_factory("unix", address=os.path.join(nested_dir, "n.sock"))
        near = peer_factory("unix", address=os.path.join(sibling, "a.sock"))
        exact = peer_factory("unix", address=os.path.join(exact_dir, "e.sock"))
        beside = peer_factory("unix", address=os.path.join(exact_dir, "e.sock2"))
        g = token_gateway(gateway_factory, files, f"allow=unix:{inside}/", f"allow=unix:{exact_dir}/e.sock")
        for url in (ok.url, nested.url, exact.url):
            assert_accepted(g, hs_token(keys, url, framing="binary"))
        for url in (near.url, beside.url, f"unix://{inside}/../inx/a.sock", f"unix://{inside}/sub/../a.sock",
                    f"unix://{inside}/./a.sock/..", f"unix://{exact_dir}/./e.sock/../e.sock2", f"unix://{inside}",
                    f"unix://{base}/in/../in/a.sock", "unix://@abstract", "unix:///etc/passwd",
                    f"unix-dgram://{inside}/a.sock"):
            assert_refused(g, 403, None, hs_token(keys, url, framing="binary"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- key rotation ----------------------------------------------------------------------------------

def hup_until_mentioned(g, path):
    """SIGHUP, then waits for a log line naming `path` (the reload error)."""
    mentions = g.log().count(str(path))
    g.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while g.log().count(str(path)) <= mentions:
        assert time.time() < deadline, g.log()
        time.sleep(0.05)
    time.sleep(0.1)


def test_sighup_rotates_keys_during_traffic(gateway_factory, echo_peer, keys, other_keys, tmp_path):
    live = tmp_path / "live.pem"
    live.write_text(keys.pem("rsa"))
    g = gateway_to(gateway_factory, echo_peer, "--auth-keys", str(live))
    old_token, new_token = mint(keys, "RS256"), mint(other_keys, "RS256")
    c = RawClient(g.port)
    c.send(request(path=query(old_token)))
    assert c.read_response()[0] == 101
    c.send(frame(2, b"before"))
    assert c.recv_frame() == (True, 2, b"before")
    live.write_text(other_keys.pem("rsa"))
    g.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while ask(g.port, path=query(new_token)).status != 101:
        assert time.time() < deadline, g.log()
        time.sleep(0.1)
    # The connection opened with the old key keeps working; new ones need the new key.
    c.send(frame(2, b"after"))
    assert c.recv_frame() == (True, 2, b"after")
    assert_refused(g, 401, INVALID, mint(keys, "RS256"))
    assert_accepted(g, new_token)
    # A broken file: the error names it, the keys stay.
    live.write_text("-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")
    hup_until_mentioned(g, live)
    assert_accepted(g, new_token)
    assert_refused(g, 401, INVALID, mint(keys, "RS256"))
    live.unlink()  # a missing file too
    hup_until_mentioned(g, live)
    assert_accepted(g, new_token)
    c.send(frame(2, b"still"))
    assert c.recv_frame() == (True, 2, b"still")
    c.close()
    assert g.proc.poll() is None


def test_sighup_rotates_the_secret(gateway_factory, echo_peer, tmp_path):
    path = tmp_path / "secret"
    first, second = Keys(secret=b"a" * 40, asymmetric=False), Keys(secret=b"b" * 40, asymmetric=False)
    path.write_bytes(first.secret)
    g = gateway_to(gateway_factory, echo_peer, "--auth-secret", str(path))
    assert_accepted(g, mint(first, "HS384"))
    path.write_bytes(second.secret + b"\n")
    g.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while ask(g.port, path=query(mint(second, "HS384"))).status != 101:
        assert time.time() < deadline, g.log()
        time.sleep(0.1)
    assert_refused(g, 401, INVALID, mint(first, "HS384"))
    path.write_bytes(b"short")  # too short now: refused, the second secret stays
    hup_until_mentioned(g, path)
    assert_accepted(g, mint(second, "HS384"))


# --- basic auth ------------------------------------------------------------------------------------

USERS = {"alice": "alice-pw", "bob": "bob:pw", "carol": "carol-pw", "dave": "dave-pw",
         "frank": "frank-pw", "grace": "gräce-pw"}


@pytest.fixture(scope="module")
def htpasswd(tmp_path_factory):
    path = tmp_path_factory.mktemp("htpasswd") / "users"
    lines = ["# websocksy users", "",
             f"alice:{authkeys.bcrypt_hash(USERS['alice'])}",
             f"bob:{authkeys.bcrypt_hash(USERS['bob'], '$2y$')}",
             "   ",
             f"carol:{authkeys.bcrypt_hash(USERS['carol'], '$2a$')}",
             "# a comment between entries",
             f"dave:{authkeys.openssl_crypt(USERS['dave'], 6)}",
             f"frank:{authkeys.yescrypt_hash(USERS['frank'])}",
             f"grace:{authkeys.bcrypt_hash(USERS['grace'])}", ""]
    path.write_text("\n".join(lines))
    return str(path)


def basic(user, password):
    import base64
    return [("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())]


def http_get(port, path="/", headers=()):
    c = RawClient(port)
    extra = "".join(f"{n}: {v}\r\n" for n, v in headers)
    c.send(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
    status, head = c.read_response()
    body = c.read_body(int(head.get("content-length", 0)))
    c.close()
    return status, head, body


def test_basic_auth_on_the_web_root_and_upgrades(gateway_factory, echo_peer, htpasswd, tmp_path):
    (tmp_path / "index.html").write_text("members only")
    g = gateway_to(gateway_factory, echo_peer, "--auth-basic", htpasswd, "--web", str(tmp_path))
    for user, password in USERS.items():
        status, head, body = http_get(g.port, headers=basic(user, password))
        assert (status, body) == (200, b"members only"), (user, status)
        assert_accepted(g, headers=basic(user, password))
    bad = ([], basic("alice", "wrong"), basic("alice", ""), basic("nobody", "x"), basic("bob", "bob"),
                    basic("alice", USERS["alice"] + " "), basic("ALICE", USERS["alice"]),
                    [("Authorization", "Basic !!!")], [("Authorization", "Basic")],
                    [("Authorization", "Basic " + b64u("alice"))], [("Authorization", "Bearer x.y.z")])
    for headers in bad:
        status, head, body = http_get(g.port, headers=headers)
        assert status == 401 and head.get("www-authenticate") == BASIC, (headers, status, head)
        assert b"members only" not in body
    time.sleep(0.3)
    for headers in bad:
        assert_refused(g, 401, BASIC, headers=headers)
    assert g.proc.poll() is None


def test_sha256_crypt_entries_are_accepted(gateway_factory, echo_peer, tmp_path):
    """`$5$` (SHA-crypt, SHA-256) as `openssl passwd -5` makes it, beside a `$6$` one."""
    path = tmp_path / "users"
    path.write_text(f"erin:{authkeys.openssl_crypt('erin-pw', 5)}\n"
                    f"ivan:{authkeys.openssl_crypt('ivan-pw', 5).replace('$5$', '$5$rounds=5000$', 1)}\n"
                    f"dave:{authkeys.openssl_crypt('dave-pw', 6)}\n")
    g = gateway_to(gateway_factory, echo_peer, "--auth-basic", str(path))
    assert_accepted(g, headers=basic("erin", "erin-pw"))
    assert_accepted(g, headers=basic("ivan", "ivan-pw"))
    assert_refused(g, 401, BASIC, headers=basic("erin", "dave-pw"))


def test_basic_auth_realm(gateway_factory, echo_peer, htpasswd):
    g = gateway_to(gateway_factory, echo_peer, "--auth-basic", htpasswd, "--auth-realm", "Staff only")
    assert_refused(g, 401, 'Basic realm="Staff only", charset="UTF-8"')
    assert_accepted(g, headers=basic("dave", USERS["dave"]))


def test_jwt_and_basic_together_need_both(gateway_factory, echo_peer, htpasswd, keys, files):
    g = gateway_to(gateway_factory, echo_peer, "--auth-basic", htpasswd, "--auth-keys", files["P-384.pem"])
    token = mint(keys, "ES384")
    assert_accepted(g, token, headers=basic("frank", USERS["frank"]))
    a = ask(g.port, path=query(token))
    assert a.status == 401 and a.one("WWW-Authenticate").startswith("Basic "), a.head
    a = ask(g.port, headers=basic("frank", USERS["frank"]))
    assert a.status == 401 and a.one("WWW-Authenticate") == BEARER, a.head
    a = ask(g.port, path=query(mint(keys, "ES384", exp=1)), headers=basic("frank", USERS["frank"]))
    assert a.status == 401 and a.one("WWW-Authenticate") == INVALID, a.head


def test_sighup_rereads_the_htpasswd_file(gateway_factory, echo_peer, tmp_path):
    path = tmp_path / "users"
    path.write_text(f"alice:{authkeys.bcrypt_hash('old-pw')}\n")
    g = gateway_to(gateway_factory, echo_peer, "--auth-basic", str(path))
    c = RawClient(g.port)
    c.send(request(extra="".join(f"{n}: {v}\r\n" for n, v in basic("alice", "old-pw"))))
    assert c.read_response()[0] == 101
    path.write_text(f"alice:{authkeys.bcrypt_hash('new-pw')}\nbob:{authkeys.bcrypt_hash('bob-pw')}\n")
    g.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while ask(g.port, headers=basic("bob", "bob-pw")).status != 101:
        assert time.time() < deadline, g.log()
        time.sleep(0.1)
    assert_refused(g, 401, BASIC, headers=basic("alice", "old-pw"))
    assert_accepted(g, headers=basic("alice", "new-pw"))
    path.write_text("alice:plain-text-password\n")  # refused: the previous file stays in force
    hup_until_mentioned(g, path)
    assert_accepted(g, headers=basic("alice", "new-pw"))
    assert_refused(g, 401, BASIC, headers=basic("alice", "plain-text-password"))
    c.send(frame(2, b"opened before"))  # the connection authenticated with the old file
    assert c.recv_frame() == (True, 2, b"opened before")
    c.close()


def test_auth_keys_in_the_configuration_file(echo_peer, keys, files, tmp_path):
    cfg = tmp_path / "auth.cfg"
    cfg.write_text(f"""[core]
auth-keys = {files['jwks.json']}
auth-secret = {files['secret']}
auth-token = bearer, query:jwt
auth-issuer = issuer-1
auth-audience = aud-1
auth-leeway = 0
auth-realm = cfg realm

[backend]
host = {echo_peer.url}
framing = binary
""")
    g = Gateway([str(cfg), "-l", "127.0.0.1", "-p", "0"])
    try:
        assert_accepted(g, headers=bearer(mint(keys, "ES512", kid="ec-521", iss="issuer-1", aud="aud-1")))
        assert_accepted(g, path=query(mint(keys, "HS256", iss="issuer-1", aud="aud-1"), "jwt"))
        assert_refused(g, 401, 'Bearer realm="cfg realm", error="invalid_token"',
                       mint(keys, "HS256", iss="issuer-1", aud="aud-2"), path=query(mint(keys, "HS256", iss="issuer-1", aud="aud-2"), "jwt"))
        assert_refused(g, 401, 'Bearer realm="cfg realm"', path=query(mint(keys, "HS256", iss="issuer-1", aud="aud-1")))
    finally:
        g.stop()


@pytest.mark.parametrize("entry,kind", [
    ("mallory:plaintext", "plain"),
    ("mallory:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "sha"),
    ("mallory:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/", "apr1"),
    ("mallory:rqXexS6ZhobKA", "des"),
    ("mallory", "no colon"),
])
def test_unsupported_htpasswd_hashes_stop_start_up(echo_peer, tmp_path, entry, kind):
    path = tmp_path / "users"
    path.write_text(f"# users\n\nalice:{authkeys.bcrypt_hash('pw')}\n{entry}\n")
    err = startup_error("--auth-basic", str(path), "-c", f"host={echo_peer.url}")
    assert f"{path}:4:" in err, err


# --- access log and secrecy ------------------------------------------------------------------------

def test_access_log_user_field(gateway_factory, echo_peer, htpasswd, keys, files, tmp_path):
    log = tmp_path / "jwt.log"
    g = gateway_to(gateway_factory, echo_peer, "--auth-keys", files["rsa.pem"], "--access-log", str(log))
    assert_accepted(g, mint(keys, "RS256", sub="alice"))
    assert_refused(g, 401, BEARER)
    assert_accepted(g, mint(keys, "RS256", sub="a b\"c\\d\ne"))
    assert_accepted(g, mint(keys, "RS256", sub=None))
    lines = lines_of(log, 4)
    assert lines[0].endswith(" user=alice"), lines[0]
    assert lines[1].endswith(" user=-"), lines[1]
    assert lines[2].endswith(" user=a\\x20b\\x22c\\x5Cd\\x0Ae"), lines[2]
    assert lines[3].endswith(" user=-"), lines[3]
    assert len(lines) == 4
    basic_log = tmp_path / "basic.log"
    b = gateway_to(gateway_factory, echo_peer, "--auth-basic", htpasswd, "--access-log", str(basic_log))
    assert_accepted(b, headers=basic("bob", USERS["bob"]))
    assert_refused(b, 401, BASIC, headers=basic("bob", "nope"))
    lines = lines_of(basic_log, 2)
    assert lines[0].endswith(" user=bob") and lines[1].endswith(" user=-"), lines
    plain_log = tmp_path / "plain.log"
    p = gateway_to(gateway_factory, echo_peer, "--access-log", str(plain_log))
    assert_accepted(p)
    assert lines_of(plain_log, 1)[0].endswith(" user=-")


def test_tokens_never_reach_the_logs(gateway_factory, peer_factory, keys, files, tmp_path):
    peer = peer_factory("tcp")
    access = tmp_path / "access.log"
    g = token_gateway(gateway_factory, files, "allow=tcp://127.0.0.1:*",
                      core=["-v", "-v", "--access-log", str(access), "--auth-keys", files["rsa.pem"]])
    tokens = {
        "accepted": hs_token(keys, peer.url, framing="binary"),
        "forbidden": hs_token(keys, "tcp://10.1.2.3:22"),
        "expired": hs_token(keys, peer.url, exp=int(time.time()) - 3600),
        "bad-signature": mint(Keys(secret=b"z" * 48, asymmetric=False), "HS256", peer=peer.url),
        "alg-confusion": forge({"alg": "HS256"}, authkeys.claims(peer=peer.url), alg="HS256", key=keys.pem("rsa").encode()),
        "rsa": mint(keys, "RS256", peer=peer.url, framing="binary"),
    }
    assert_accepted(g, tokens["accepted"])
    assert_accepted(g, headers=bearer(tokens["rsa"]))
    assert_refused(g, 403, None, tokens["forbidden"])
    for name in ("expired", "bad-signature", "alg-confusion"):
        assert_refused(g, 401, INVALID, tokens[name])
    assert_refused(g, 401, INVALID, headers=[("Cookie", f"token={tokens['bad-signature']}")])
    time.sleep(0.3)
    text = access.read_text()
    for name, token in tokens.items():
        sig = authkeys.signature_of(token)
        assert sig not in g.log(), f"{name} token in stderr"
        assert sig not in text, f"{name} token in the access log"
    assert len(text.splitlines()) >= 7


# --- hostile requests ------------------------------------------------------------------------------

def test_header_injection_attempts(rsa_gateway, keys):
    g = rsa_gateway
    for path in ("/?token=a%0d%0aX-Injected:%20yes", "/?token=a%0aX-Injected:%20yes%0d%0a%0d%0a",
                 "/?token=%22%2C%20error%3D%22none", "/?token=%00"):
        a = ask(g.port, path=path, echo=False)
        assert a.status in (400, 401), a.head
        assert "x-injected" not in a.headers and "X-Injected" not in a.head
        if a.status == 401:
            assert a.one("WWW-Authenticate") in (INVALID, BEARER), a.head
    a = ask(g.port, raw_extra="Authorization: Bearer a\r\n X-Injected: yes\r\n", echo=False)
    assert a.status in (400, 401) and "X-Injected" not in a.head, a.head
    a = ask(g.port, headers=bearer(mint(keys, "RS256") + '", error="none'), echo=False)
    assert a.status in (400, 401) and a.one("WWW-Authenticate") in (INVALID, BEARER, None), a.head
    for line in g.log().splitlines():
        assert not line.lstrip().startswith("X-Injected")
    assert_accepted(g, mint(keys, "RS256"))


def test_deeply_nested_and_odd_json_does_not_hurt(gateway_factory, echo_peer, keys, files):
    """Validly signed (so the claims are parsed) but odd payloads: refused or accepted, never a crash."""
    g = gateway_to(gateway_factory, echo_peer, "--auth-secret", files["secret"])
    header = {"alg": "HS256", "typ": "JWT"}
    far = 9999999999
    refused = ["[" * 5000, '{"a":' * 1000, '{"exp":%d} x' % far, "[]", '"just a string"', "1", "",
               '{"exp":-1e308}', '{"exp":%d' % far]
    either = ['{"exp":%d,"a":%s%s}' % (far, "[" * 3000, "]" * 3000), '{"exp":%d,"sub":"\\ud800"}' % far,
              '{"exp":1e999999}', '{"exp":99999999999999999999999999999}', '{"exp":%d.5}' % far,
              "\ufeff{\"exp\":%d}" % far, '{"exp":1,"exp":%d}' % far, '{"exp":%d,"sub":"a\\u0000b"}' % far,
              '{"exp":%d,"sub":%s}' % (far, "1" * 4000)]
    for payload in refused + either:
        token = forge(header, payload, alg="HS256", key=keys.secret)
        assert len(token) <= 8192, len(token)
        a = ask(g.port, path=query(token), echo=False)
        allowed = (401,) if payload in refused else (101, 401)
        assert a.status in allowed, (payload[:40], a.head)
        if a.status == 401:
            assert a.one("WWW-Authenticate") == INVALID, a.head
        assert g.proc.poll() is None, (payload[:40], g.log()[-3000:])
    for bad_header in ("[" * 5000, '{"alg":' * 700, '{"alg":"HS256"} x'):
        token = forge(bad_header, authkeys.claims(), alg="HS256", key=keys.secret)
        assert ask(g.port, path=query(token), echo=False).status == 401
    assert g.proc.poll() is None
    assert_accepted(g, mint(keys, "HS256"))


def test_many_refusals_leave_the_gateway_serving(rsa_gateway, keys):
    g = rsa_gateway
    before = g.fd_count()
    for i in range(200):
        c = RawClient(g.port)
        c.send(request(path=f"/?token={os.urandom(16).hex()}.{i}.x"))
        c.read_response()
        c.close()
    assert_accepted(g, mint(keys, "RS256"))
    time.sleep(0.3)
    assert g.fd_count() <= before + 2


# --- claims in plugin backends ---------------------------------------------------------------------

def test_claims_as_substitutions_in_backend_file(gateway_factory, peer_factory, keys, files, tmp_path):
    if not os.path.exists(os.path.join(TEST_PLUGINS, "backend_file.so")):
        pytest.fail(f"backend_file.so missing in {TEST_PLUGINS}")
    alice_peer = peer_factory("tcp", "script", repr([b"for alice\n"]))
    admin_peer = peer_factory("tcp", "script", repr([b"for admins\n"]))
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "alice").write_text(f"{alice_peer.url} * newline lf\n")
    (routes / "role-admin").write_text(f"{admin_peer.url} * newline lf\n")
    (routes / "level-7").write_text(f"{admin_peer.url} * newline lf\n")
    (routes / "flag-true").write_text(f"{admin_peer.url} * newline lf\n")
    g = gateway_factory("--auth-secret", files["secret"], "--plugins", TEST_PLUGINS, "-b", "file",
                        "-c", f"path={routes}", "-c", "expression=role-%claim:role%", "-c", "expression=level-%claim:level%",
                        "-c", "expression=flag-%claim:flag%", "-c", "expression=%claim:sub%")

    async def first(token):
        async with websockets.connect(f"{g.url}/?token={token}") as ws:
            return await asyncio.wait_for(ws.recv(), 5)

    assert run(first(mint(keys, "HS256", sub="alice"))) == "for alice\n"
    assert run(first(mint(keys, "HS256", sub="alice", role="admin"))) == "for admins\n"
    assert run(first(mint(keys, "HS256", sub="nobody", level=7))) == "for admins\n"
    assert run(first(mint(keys, "HS256", sub="nobody", flag=True))) == "for admins\n"
    assert ask(g.port, path=query(mint(keys, "HS256", sub="bob")), echo=False).status == 404
    # Objects and arrays are not substituted: the expression is skipped.
    assert run(first(mint(keys, "HS256", sub="alice", role={"x": "admin"}))) == "for alice\n"
    assert run(first(mint(keys, "HS256", sub="alice", role=["admin"]))) == "for alice\n"
    # A claim naming a path outside the directory finds nothing.
    (tmp_path / "outside").write_text(f"{admin_peer.url} * newline lf\n")
    for sub in ("../outside", "..", "/etc/passwd"):
        assert ask(g.port, path=query(mint(keys, "HS256", sub=sub)), echo=False).status == 404
    assert_refused(g, 401, BEARER)


def test_one_address_guessing_passwords_cannot_fill_the_check_queue(gateway_factory, echo_peer, tmp_path):
    """At most two password checks per client address wait at once; more get 429 at once, so a
    guesser keeps neither the queue nor the other clients' checks waiting behind it."""
    import bcrypt as bc
    path = tmp_path / "slow.htpasswd"
    path.write_text("carol:" + bc.hashpw(b"right", bc.gensalt(rounds=12)).decode() + "\n")
    g = gateway_to(gateway_factory, echo_peer, "--auth-basic", str(path))

    async def guess(i):
        return await asyncio.to_thread(ask, g.port, "/", basic("carol", f"wrong{i}"), False)

    async def burst():
        return await asyncio.gather(*(guess(i) for i in range(8)))
    answers = run(burst())
    statuses = sorted(a.status for a in answers)
    assert statuses.count(401) <= 2 + 1 and statuses.count(429) >= 5, statuses
    assert all(a.headers.get("retry-after") == ["1"] for a in answers if a.status == 429)
    assert any("password checks from this address already waiting" in line for line in g.log().splitlines())
