"""wss:// with GnuTLS: shared plain/TLS port, tls-only, bad handshakes, reload, client certificates,
and tls:// peers with and without a trusted certificate."""
import asyncio
import hashlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import time

import pytest
import websockets

import tlscerts
from conftest import refusal_status
from test_lifecycle import run_binary
from wsraw import RawClient, frame, request


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make test certificates (.ci/run installs it)")
    return tlscerts.make(tmp_path_factory.mktemp("certs"))


def client_context(certs, client_cert=False):
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    ctx.set_alpn_protocols(["http/1.1"])
    if client_cert:
        ctx.load_cert_chain(os.path.join(certs, "client.pem"), os.path.join(certs, "client.key"))
    return ctx


def tls_gateway(gateway_factory, certs, *extra, cert="server.pem", key="server.key"):
    args = ["--tls-cert", os.path.join(certs, cert)]
    if key:
        args += ["--tls-key", os.path.join(certs, key)]
    return gateway_factory("-c", "host=echo://", *args, *extra)


def wss(g):
    return f"wss://localhost:{g.port}/"


def run(coro):
    return asyncio.run(coro)


def test_wss_echo_verified_against_the_test_ca(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs)

    async def go():
        async with websockets.connect(wss(g), ssl=client_context(certs)) as ws:
            await ws.send("over TLS")
            assert await ws.recv() == "over TLS"
            assert ws.transport.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
            assert ws.transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    run(go())


def test_plain_and_tls_share_the_port(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs)

    async def go():
        async with websockets.connect(g.url) as plain, websockets.connect(wss(g), ssl=client_context(certs)) as secure:
            await plain.send("plain")
            await secure.send("secure")
            assert await plain.recv() == "plain"
            assert await secure.recv() == "secure"
    run(go())


def test_key_in_certificate_file_and_chain(gateway_factory, certs):
    for cert, key in [("combined.pem", None), ("chain.pem", "server.key")]:
        g = tls_gateway(gateway_factory, certs, cert=cert, key=key)

        async def go():
            async with websockets.connect(wss(g), ssl=client_context(certs)) as ws:
                await ws.send(b"x")
                assert await ws.recv() == b"x"
        run(go())


def test_tls_only_refuses_plain(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs, "--tls-only")
    c = RawClient(g.port)
    c.send(request())
    status, headers = c.read_response()
    assert status == 400
    assert b"TLS" in c.read_body(int(headers["content-length"]))

    async def go():
        async with websockets.connect(wss(g), ssl=client_context(certs)) as ws:
            await ws.send("ok")
            assert await ws.recv() == "ok"
    run(go())


def test_garbage_client_hello_costs_one_log_line(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs)
    s = socket.create_connection(("127.0.0.1", g.port))
    s.sendall(b"\x16\x03\x01\x00\x10" + os.urandom(16) + b"\x16" * 100)
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    assert g.wait_for_log("TLS handshake failed")

    async def go():  # others are unaffected
        async with websockets.connect(wss(g), ssl=client_context(certs)) as ws:
            await ws.send("still fine")
            assert await ws.recv() == "still fine"
    run(go())


def test_client_stalling_mid_handshake_is_freed(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs, "--handshake-timeout", "1")
    time.sleep(0.2)
    before = g.fd_count()
    s = socket.create_connection(("127.0.0.1", g.port))
    s.sendall(b"\x16\x03\x01\x02\x00")  # the start of a ClientHello, then nothing
    s.settimeout(5)
    assert s.recv(100) == b""
    assert g.wait_for_log("handshake not completed in time")
    assert g.fd_count() == before


def test_sixteen_mebibytes_over_tls(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs)
    data = os.urandom(16 << 20)

    async def go():
        async with websockets.connect(wss(g), ssl=client_context(certs), max_size=None) as ws:
            await ws.send(data)
            answer = await ws.recv()
            assert hashlib.sha256(answer).digest() == hashlib.sha256(data).digest()
    run(go())


def test_keepalive_pings_over_tls(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs, "-k", "1")

    async def go():
        async with websockets.connect(wss(g), ssl=client_context(certs), ping_interval=None) as ws:
            await asyncio.sleep(3.5)
            await ws.send("alive")
            assert await ws.recv() == "alive"
    run(go())


def test_sighup_reloads_the_certificate_for_new_connections(gateway_factory, certs, tmp_path):
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(os.path.join(certs, "server.pem"), live_cert)
    shutil.copy(os.path.join(certs, "server.key"), live_key)
    g = gateway_factory("-c", "host=echo://", "--tls-cert", str(live_cert), "--tls-key", str(live_key))

    def serial():
        ctx = client_context(certs)
        with socket.create_connection(("127.0.0.1", g.port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert()["serialNumber"]

    first = serial()
    shutil.copy(os.path.join(certs, "server2.pem"), live_cert)
    shutil.copy(os.path.join(certs, "server2.key"), live_key)
    g.proc.send_signal(signal.SIGHUP)
    assert g.wait_for_log("reloaded TLS certificate")
    second = serial()
    assert second != first
    # A broken file: the reload fails, the previous certificate stays.
    live_cert.write_text("not a certificate")
    g.proc.send_signal(signal.SIGHUP)
    assert g.wait_for_log("TLS reload failed")
    assert serial() == second


def test_client_certificates(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs, "--tls-ca", os.path.join(certs, "ca.pem"), "--tls-verify-client")

    async def go():
        async with websockets.connect(wss(g), ssl=client_context(certs, client_cert=True)) as ws:
            await ws.send("with certificate")
            assert await ws.recv() == "with certificate"
        with pytest.raises((ssl.SSLError, OSError, websockets.exceptions.InvalidMessage, EOFError)):
            async with websockets.connect(wss(g), ssl=client_context(certs), open_timeout=5) as ws:
                await ws.send("without")
                await ws.recv()
    run(go())


def test_tls_peer_verified(gateway_factory, peer_factory, certs):
    peer = peer_factory("tcp", "tls-echo", f"{certs}/server.pem:{certs}/server.key")
    port = peer.address.rsplit(":", 1)[1]
    g = gateway_factory("-c", f"host=tls://localhost:{port}", "-c", "framing=binary",
                        "--peer-tls-ca", os.path.join(certs, "ca.pem"))

    async def go():
        async with websockets.connect(g.url, max_size=None) as ws:
            data = os.urandom(200000)
            await ws.send(data)
            got = b""
            while len(got) < len(data):
                got += await asyncio.wait_for(ws.recv(), 5)
            assert got == data
    run(go())


def test_tls_peer_with_untrusted_certificate_is_502(gateway_factory, peer_factory, certs):
    peer = peer_factory("tcp", "tls-echo", f"{certs}/server.pem:{certs}/server.key")
    port = peer.address.rsplit(":", 1)[1]
    g = gateway_factory("-c", f"host=tls://localhost:{port}")  # system trust store: test CA unknown

    assert refusal_status(g.url) == 502
    assert g.wait_for_log("TLS handshake with tls://localhost")


def test_tls_peer_verification_off(gateway_factory, peer_factory, certs):
    peer = peer_factory("tcp", "tls-echo", f"{certs}/server.pem:{certs}/server.key")
    port = peer.address.rsplit(":", 1)[1]
    g = gateway_factory("-c", f"host=tls://127.0.0.1:{port}", "-c", "framing=binary", "--peer-tls-verify", "no")
    assert g.wait_for_log("peer-tls-verify = no")

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send(b"unverified")
            assert await asyncio.wait_for(ws.recv(), 5) == b"unverified"
    run(go())


@pytest.mark.parametrize("args,message", [
    (["--tls-cert", "/nonexistent.pem"], "/nonexistent.pem"),
    (["--tls-cert", "{certs}/server.pem", "--tls-key", "{certs}/server2.key"], "server.pem"),
    (["--tls-cert", "{certs}/server.pem", "--tls-key", "{certs}/server.key", "--tls-priority", "NORMAL:+BOGUS"], "tls-priority"),
    (["--tls-key", "{certs}/server.key"], "tls-key"),
    (["--tls-only"], "tls-only"),
    (["--tls-cert", "{certs}/server.pem", "--tls-key", "{certs}/server.key", "--tls-verify-client"], "tls-verify-client"),
    (["--peer-tls-ca", "/nonexistent-ca.pem"], "peer-tls-ca"),
    (["--tls-ticket-key", "/dev/null"], "is set but tls-cert is not"),
    (["--tls-cert", "{certs}/server.pem", "--tls-key", "{certs}/server.key", "--tls-ticket-key", "/nonexistent.key"], "/nonexistent.key"),
    (["--tls-cert", "{certs}/server.pem", "--tls-key", "{certs}/server.key", "--tls-tickets", "no",
      "--tls-ticket-key", "/dev/null"], "tls-tickets = no"),
    (["--tls-cert", "{certs}/server.pem", "--tls-key", "{certs}/server.key", "--tls-ca", "{certs}/ca.pem",
      "--tls-verify-client", "--tls-ticket-key", "/dev/null"], "cannot be combined with tls-verify-client"),
    (["--tls-cert", "{certs}/server.pem", "--tls-key", "{certs}/server.key", "--tls-ticket-key", "/tmp"], "not a regular file"),
])
def test_tls_configuration_errors(certs, args, message):
    r = run_binary("-c", "host=echo://", *[a.format(certs=certs) for a in args])
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_web_root_over_tls_streams_files_on_a_kept_connection(gateway_factory, certs, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    data = os.urandom(3 << 20)
    (root / "f.bin").write_bytes(data)
    g = tls_gateway(gateway_factory, certs, "--web", str(root))
    conn = http.client.HTTPSConnection("localhost", g.port, context=client_context(certs), timeout=10)
    conn.request("GET", "/f.bin")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == data and not response.will_close
    first = conn.sock
    conn.request("GET", "/f.bin")
    assert conn.getresponse().read() == data and conn.sock is first
    conn.close()


def test_tls_client_on_a_plain_port_is_closed_at_once(echo_gateway, certs):
    s = socket.create_connection(("127.0.0.1", echo_gateway.port), timeout=5)
    start = time.monotonic()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        client_context(certs).wrap_socket(s, server_hostname="localhost")
    assert time.monotonic() - start < 1
    assert echo_gateway.wait_for_log("TLS handshake on a port without TLS")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")  # an outdated client, on purpose
def test_refused_protocol_version_gets_an_alert(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    with pytest.raises(ssl.SSLError) as refused:
        ctx.wrap_socket(s, server_hostname="localhost")
    # An alert names the reason; a bare EOF would be SSLEOFError ("unexpected eof").
    assert not isinstance(refused.value, ssl.SSLEOFError), refused.value
    assert "ALERT" in str(refused.value).upper(), refused.value


# Session resumption from tickets.

def tls_upgrade(port, ctx, session=None, message=b"resumed?"):
    """One wss:// upgrade and echo over a raw TLS socket; returns (session for next time, reused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        s.sendall(request())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = s.recv(4096)
            assert chunk, response
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response
        s.sendall(frame(0x2, message))
        echoed = response.split(b"\r\n\r\n", 1)[1]
        while len(echoed) < 2 + len(message):
            echoed += s.recv(4096)
        assert echoed == bytes([0x82, len(message)]) + message
        # The ticket of a TLS 1.3 session arrives after the handshake: it has been read by now.
        return s.session, s.session_reused


def returning_client(certs, tls12=False):
    ctx = client_context(certs)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_returning_client_resumes_its_session(gateway_factory, certs, tls12):
    g = tls_gateway(gateway_factory, certs)
    ctx = returning_client(certs, tls12)
    session, reused = tls_upgrade(g.port, ctx)
    assert not reused and session is not None and session.has_ticket
    for _ in range(3):  # each resumed session gets a new ticket, and that one resumes too
        session, reused = tls_upgrade(g.port, ctx, session)
        assert reused


def test_tickets_off_means_full_handshakes(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs, "--tls-tickets", "no")
    ctx = returning_client(certs)
    session, _ = tls_upgrade(g.port, ctx)
    assert not session.has_ticket
    _, reused = tls_upgrade(g.port, ctx, session)
    assert not reused


def test_a_fleet_sharing_a_ticket_key_resumes_on_any_instance(gateway_factory, certs, tmp_path):
    key, other = tmp_path / "ticket.key", tmp_path / "other.key"
    key.write_bytes(os.urandom(64))
    other.write_bytes(os.urandom(64))
    a = tls_gateway(gateway_factory, certs, "--tls-ticket-key", str(key))
    b = tls_gateway(gateway_factory, certs, "--tls-ticket-key", str(key))
    c = tls_gateway(gateway_factory, certs, "--tls-ticket-key", str(other))
    random_key = tls_gateway(gateway_factory, certs)
    ctx = returning_client(certs)
    session, _ = tls_upgrade(a.port, ctx)
    assert tls_upgrade(b.port, ctx, session)[1]
    # A ticket another key sealed is not an error: the handshake is a full one.
    assert not tls_upgrade(c.port, ctx, session)[1]
    assert not tls_upgrade(random_key.port, ctx, session)[1]


def test_sighup_rereads_the_ticket_key(gateway_factory, certs, tmp_path):
    key = tmp_path / "ticket.key"
    key.write_bytes(os.urandom(64))
    g = tls_gateway(gateway_factory, certs, "--tls-ticket-key", str(key))
    ctx = returning_client(certs)
    old, _ = tls_upgrade(g.port, ctx)
    key.write_bytes(os.urandom(64))
    g.proc.send_signal(signal.SIGHUP)
    assert g.wait_for_log("reloaded the session ticket key")
    new, reused = tls_upgrade(g.port, ctx, old)
    assert not reused  # sealed with the replaced key
    # A broken file keeps the key in use.
    key.write_bytes(b"short")
    g.proc.send_signal(signal.SIGHUP)
    assert g.wait_for_log("session ticket key reload failed")
    assert tls_upgrade(g.port, ctx, new)[1]


@pytest.mark.parametrize("content,message", [
    (b"x" * 63, "this file has 63"),
    (b"x" * 65, "this file has more"),
    (b"", "this file has 0"),
])
def test_ticket_key_of_the_wrong_size_stops_start_up(certs, tmp_path, content, message):
    key = tmp_path / "ticket.key"
    key.write_bytes(content)
    r = run_binary("-c", "host=echo://", "--tls-cert", os.path.join(certs, "server.pem"),
                   "--tls-key", os.path.join(certs, "server.key"), "--tls-ticket-key", str(key))
    assert r.returncode == 2 and "tls-ticket-key" in r.stderr and message in r.stderr, r.stderr


def test_no_tickets_with_client_certificates(gateway_factory, certs):
    """GnuTLS checks a client certificate in full handshakes only: a resumed session would skip
    the check, with a ticket from an instance that asks for none or from before a CA change."""
    lenient = tls_gateway(gateway_factory, certs)
    strict = tls_gateway(gateway_factory, certs, "--tls-ca", os.path.join(certs, "ca.pem"), "--tls-verify-client")
    ctx = returning_client(certs)
    foreign, _ = tls_upgrade(lenient.port, ctx)
    with pytest.raises((ssl.SSLError, OSError, AssertionError)):
        tls_upgrade(strict.port, ctx, foreign)  # no certificate: refused, ticket or not
    with_cert = client_context(certs, client_cert=True)
    session, _ = tls_upgrade(strict.port, with_cert)
    assert not session.has_ticket
    assert not tls_upgrade(strict.port, with_cert, session)[1]


def test_fifo_as_ticket_key_is_refused_without_hanging(certs, tmp_path):
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    r = run_binary("-c", "host=echo://", "--tls-cert", os.path.join(certs, "server.pem"),
                   "--tls-key", os.path.join(certs, "server.key"), "--tls-ticket-key", str(fifo))
    assert r.returncode == 2 and "not a regular file" in r.stderr, r.stderr
    assert time.monotonic() - started < 5


def test_workers_share_the_random_ticket_key(gateway_factory, certs):
    g = tls_gateway(gateway_factory, certs, "-w", "2")
    assert g.wait_for_log("with 2 workers")
    ctx = returning_client(certs)
    session, _ = tls_upgrade(g.port, ctx)
    resumed = 0
    for _ in range(30):  # new source ports: SO_REUSEPORT spreads them over both workers
        session, reused = tls_upgrade(g.port, ctx, session)
        resumed += reused
    assert resumed == 30
