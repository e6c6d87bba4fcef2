"""PROXY protocol v1/v2 from trusted load balancers (proxy-protocol-from), v2 to peers
(proxy-protocol=v2), and per-client limits (max-connections-per-client, upgrade-rate) on the
address the header carries. Headers are built by hand here, byte by byte from the spec."""
import os
import socket
import ssl
import struct
import time

import pytest

import tlscerts
from conftest import lines_of
from wsraw import RawClient, frame, request

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src="203.0.113.7", sport=51000, dst="198.51.100.1", dport=443, family="TCP4"):
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src="203.0.113.7", sport=51000, dst="198.51.100.1", dport=443, command=1, tlvs=b""):
    if ":" in src:
        block = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        family = 0x21
    else:
        block = socket.inet_aton(src) + socket.inet_aton(dst)
        family = 0x11
    block += struct.pack("!HH", sport, dport) + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def connect(g):
    return RawClient(g.port)


def upgrade_after(g, header, path="/"):
    c = connect(g)
    c.send(header + request(path=path))
    return c


@pytest.fixture
def proxied(gateway_factory, tmp_path):
    log = tmp_path / "access.log"

    def start(*extra):
        g = gateway_factory("-c", "host=echo://", "--proxy-protocol-from", "127.0.0.0/8",
                            "--access-log", str(log), *extra)
        return g, log
    return start


def echo_once(c):
    c.send(frame(1, b"hi"))
    assert c.recv_frame() == (True, 1, b"hi")


@pytest.mark.parametrize("header,client", [
    (v1(), "203.0.113.7:51000"),
    (v1("2001:db8::7", 4242, "2001:db8::1", 443, "TCP6"), "[2001:db8::7]:4242"),
    (v2(), "203.0.113.7:51000"),
    (v2("2001:db8::7", 4242, "2001:db8::1"), "[2001:db8::7]:4242"),
    (v2(tlvs=b"\x01\x00\x08http/1.1" + b"\x05\x00\x03abc"), "203.0.113.7:51000"),  # ALPN, unique id
])
def test_the_header_names_the_client_everywhere(proxied, header, client):
    g, log = proxied("-v")
    c = upgrade_after(g, header)
    status, _ = c.read_response()
    assert status == 101
    echo_once(c)
    c.close()
    assert lines_of(log, 1)[0].split(" ")[1] == client
    assert f"{client}: / → echo://" in g.log()  # the debug line of the backend's choice


def test_a_header_arriving_byte_by_byte(proxied):
    g, log = proxied()
    c = connect(g)
    for b in v2() + request():
        c.sock.send(bytes([b]))
        time.sleep(0.0005)
    assert c.read_response()[0] == 101
    c.close()
    assert lines_of(log, 1)[0].split(" ")[1] == "203.0.113.7:51000"


@pytest.mark.parametrize("header", [
    v2(command=0),                                  # LOCAL: the balancer's own connection
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
    b"",                                            # no header at all (a direct health check)
])
def test_no_client_in_the_header_keeps_the_connection_address(proxied, header):
    g, log = proxied()
    c = upgrade_after(g, header)
    assert c.read_response()[0] == 101
    c.close()
    assert lines_of(log, 1)[0].split(" ")[1].startswith("127.0.0.1:")


@pytest.mark.parametrize("bad", [
    b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    b"PROXY " + b"x" * 120 + b"\r\n",
    V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\0" * 12,       # version 3
    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\0" * 4,        # INET block too short
    V2_SIGNATURE + b"\x21\x11\xff\xff" + b"\0" * 12,       # 64 KiB of header
    v2(tlvs=b"\x01\x00\x09http/1.1"),                      # TLV runs past the header
])
def test_a_malformed_header_gets_400_and_one_line(proxied, bad):
    g, _ = proxied()
    c = upgrade_after(g, bad)
    status, _ = c.read_response()
    assert status == 400
    assert g.wait_for_log("refused with 400: malformed PROXY protocol header")
    assert g.log().count("malformed PROXY") == 1


def test_a_truncated_header_times_out_quietly(proxied):
    g, _ = proxied("--handshake-timeout", "1")
    c = connect(g)
    c.send(v2()[:20])
    c.sock.settimeout(4)
    assert c.sock.recv(100) == b""  # closed after the handshake timeout
    assert g.proc.poll() is None


def test_a_header_from_an_untrusted_source_is_a_bad_request(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--proxy-protocol-from", "10.0.0.0/8")
    for header in (v1(), v2()):
        c = upgrade_after(g, header)
        assert c.read_response()[0] == 400
    assert g.wait_for_log("(not in proxy-protocol-from(.|\n)*){2}")
    # Without the option at all, the same.
    g = gateway_factory("-c", "host=echo://")
    c = upgrade_after(g, v1())
    assert c.read_response()[0] == 400


def test_a_header_before_tls(gateway_factory, tmp_path_factory):
    """HAProxy in TCP mode in front of wss: the header comes before the ClientHello."""
    certs = tlscerts.make(tmp_path_factory.mktemp("certs"))
    log = tmp_path_factory.mktemp("log") / "access.log"
    g = gateway_factory("-c", "host=echo://", "--tls-cert", os.path.join(certs, "server.pem"),
                        "--tls-key", os.path.join(certs, "server.key"), "--tls-only",
                        "--proxy-protocol-from", "127.0.0.1", "--access-log", str(log))
    raw = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    raw.sendall(v2("2001:db8::9", 6000, "2001:db8::1"))
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(request())
    assert tls.recv(100).startswith(b"HTTP/1.1 101")
    tls.close()
    assert lines_of(log, 1)[0].split(" ")[1] == "[2001:db8::9]:6000"


def test_the_peer_is_told_the_client_with_a_v2_header(gateway_factory):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    g = gateway_factory("-c", f"host=tcp://127.0.0.1:{listener.getsockname()[1]}", "-c", "framing=binary",
                        "-c", "proxy-protocol=v2", "--proxy-protocol-from", "127.0.0.1")
    c = upgrade_after(g, v1("203.0.113.7", 51000, "198.51.100.1", 443))
    listener.settimeout(5)
    peer, _ = listener.accept()
    assert c.read_response()[0] == 101
    c.send(frame(2, b"payload"))
    peer.settimeout(5)
    got = b""
    while len(got) < 16 + 12 + 7:
        got += peer.recv(100)
    assert got[:12] == V2_SIGNATURE
    assert got[12:16] == b"\x21\x11\x00\x0c"
    assert got[16:28] == socket.inet_aton("203.0.113.7") + socket.inet_aton("198.51.100.1") + struct.pack("!HH", 51000, 443)
    assert got[28:] == b"payload"
    # A direct client: its own address, and the gateway's as the destination.
    d = RawClient(g.port)
    d.send(request())
    peer2, _ = listener.accept()
    header = peer2.recv(28)
    assert header[12:14] == b"\x21\x11"
    assert header[16:20] == socket.inet_aton("127.0.0.1")
    assert struct.unpack("!H", header[26:28])[0] == g.port
    listener.close()


def test_max_connections_per_client(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--max-connections-per-client", "2")
    a, b = RawClient(g.port), RawClient(g.port)
    a.handshake(), b.handshake()
    c = RawClient(g.port)
    c.send(request())
    assert c.read_response()[0] == 429
    for _ in range(5):
        d = RawClient(g.port)
        d.send(request())
        assert d.read_response()[0] == 429
    assert g.wait_for_log("too many connections from this address")
    time.sleep(0.2)  # any further line would be in by now
    assert g.log().count("too many connections from this address") == 1  # one line per interval
    a.close()
    time.sleep(0.2)
    e = RawClient(g.port)
    e.handshake()


def test_limits_follow_the_proxied_address(proxied):
    g, _ = proxied("--max-connections-per-client", "1")
    a = upgrade_after(g, v1("203.0.113.7"))
    assert a.read_response()[0] == 101
    b = upgrade_after(g, v1("203.0.113.8"))
    assert b.read_response()[0] == 101
    c = upgrade_after(g, v1("203.0.113.7"))
    assert c.read_response()[0] == 429


def test_upgrade_rate_with_burst_and_retry_after(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--upgrade-rate", "2", "--upgrade-burst", "3")
    statuses, retry = [], None
    for _ in range(6):
        c = RawClient(g.port)
        c.send(request())
        status, headers = c.read_response()
        statuses.append(status)
        if status == 429:
            retry = headers.get("retry-after")
        c.sock.close()
    assert statuses[:3] == [101, 101, 101]
    assert 429 in statuses[3:]
    assert retry == "1"
    assert g.wait_for_log("upgrade rate exceeded")
    time.sleep(0.2)  # any further line would be in by now
    assert g.log().count("upgrade rate exceeded") == 1
    time.sleep(1.1)  # two tokens back
    c = RawClient(g.port)
    c.handshake()


def test_backends_route_by_the_proxied_client_address(tmp_path):
    """%client% in a backend_file expression is the address the PROXY header carries."""
    from test_plugins import TEST_PLUGINS
    from conftest import Gateway
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "203.0.113.7").write_text("echo:// *\n")
    (routes / "2001:db8::7").write_text("echo:// *\n")
    g = Gateway(["-l", "127.0.0.1", "-p", "0", "--plugins", TEST_PLUGINS, "--proxy-protocol-from", "127.0.0.1",
                 "-b", "file", "-c", f"path={routes}", "-c", "expression=%client%"])
    try:
        for header in (v1("203.0.113.7"), v2("2001:db8::7", 1, "2001:db8::1")):
            c = upgrade_after(g, header)
            assert c.read_response()[0] == 101
            echo_once(c)
        c = upgrade_after(g, v1("203.0.113.8"))
        assert c.read_response()[0] == 404  # no file for that client
        c = upgrade_after(g, b"")
        assert c.read_response()[0] == 404  # 127.0.0.1 itself has no file either
    finally:
        g.stop()


@pytest.mark.parametrize("case", ["over-limit", "malformed-header"])
def test_a_refused_client_on_a_tls_port_that_keeps_sending(gateway_factory, tmp_path_factory, case):
    """Refused before its TLS handshake (429, a malformed PROXY header), a client sends on: the
    gateway discards it without calling back into the connection it refused."""
    certs = tlscerts.make(tmp_path_factory.mktemp("certs"))
    g = gateway_factory("-c", "host=echo://", "--tls-cert", os.path.join(certs, "server.pem"),
                        "--tls-key", os.path.join(certs, "server.key"), "--max-connections-per-client", "1",
                        "--proxy-protocol-from", "127.0.0.1")
    holder = upgrade_after(g, v1("203.0.113.7"))
    assert holder.read_response()[0] == 101
    for _ in range(3):
        c = RawClient(g.port)
        first = v1("203.0.113.7") if case == "over-limit" else b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n"
        c.send(first + b"\x16\x03\x01\x00\x05hello")
        status, _ = c.read_response()
        assert status == (429 if case == "over-limit" else 400)
        try:
            c.send(b"more bytes after the refusal")
        except OSError:
            pass
        time.sleep(0.1)
        assert g.proc.poll() is None, g.log()
    echo_once(holder)
