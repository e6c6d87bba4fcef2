"""The example configurations of docs/choosing-a-framing.md and docs/production.md (docs/examples/):
every file passes --check-config, every file is quoted verbatim in one of the guides, and the
examples carry real traffic when the gateway is started from the file with `-p 0 -l 127.0.0.1`
appended and the peer overridden with `-c host=...` (an IRC-like line peer, an MQTT broker that
speaks real packets, a DNS responder, JSON feeds, routes, wss:// with an origin list, HAProxy)."""
import asyncio
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest
import websockets

import tlscerts
from conftest import BINARY, ROOT, Gateway, free_port, lines_of

TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(ROOT, ".build", "test-plugins"))
EXAMPLES = os.path.join(ROOT, "docs", "examples")
GUIDES = [os.path.join(ROOT, "docs", "choosing-a-framing.md"), os.path.join(ROOT, "docs", "production.md")]
CONFIGS = sorted(name for name in os.listdir(EXAMPLES) if name.endswith(".cfg"))


def example_files():
    """Every file below docs/examples/, as a path relative to it."""
    found = []
    for directory, _, names in os.walk(EXAMPLES):
        for name in names:
            found.append(os.path.relpath(os.path.join(directory, name), EXAMPLES))
    return sorted(found)


def read(path):
    with open(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make test certificates (.ci/run installs it)")
    return tlscerts.make(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def example(tmp_path, certs):
    """example(NAME) -> the path of a copy of docs/examples/NAME whose machine paths (certificate,
    key, access log, route directory) point into the test's directories; nothing else changes."""
    def make(name):
        text = read(os.path.join(EXAMPLES, name))
        for original, replacement in [("/etc/websocksy/fullchain.pem", os.path.join(certs, "chain.pem")),
                                      ("/etc/websocksy/privkey.pem", os.path.join(certs, "server.key")),
                                      ("/var/log/websocksy/access.log", str(tmp_path / "access.log")),
                                      ("/etc/websocksy/routes", str(tmp_path / "routes"))]:
            text = text.replace(original, replacement)
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return make


@pytest.fixture
def start(example):
    """start(NAME, FLAG...) -> a Gateway run from the example file with the test's flags after it."""
    started = []

    def run(name, *flags):
        g = Gateway([example(name), "-p", "0", "-l", "127.0.0.1", "--plugins", TEST_PLUGINS, *flags])
        started.append(g)
        return g
    yield run
    for g in started:
        g.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def until_closed(ws):
    """The messages still to come, and the close code."""
    messages = []
    try:
        while True:
            messages.append(await asyncio.wait_for(ws.recv(), 10))
    except websockets.ConnectionClosed:
        return messages, ws.close_code


# (a) every example passes --check-config; (c) every example is quoted in a guide


@pytest.mark.parametrize("name", CONFIGS)
def test_example_passes_check_config(name, example):
    r = subprocess.run([BINARY, example(name), "--plugins", TEST_PLUGINS, "--check-config"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout == "configuration OK\n", r.stderr


def test_the_tls_priority_the_guide_shows_is_accepted(example):
    guide = read(GUIDES[1])
    priority = re.search(r"tls-priority = ([^`\s]+)", guide).group(1)
    r = subprocess.run([BINARY, example("production-tls.cfg"), "--tls-priority", priority, "--check-config"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout == "configuration OK\n", r.stderr


@pytest.mark.parametrize("name", example_files())
def test_example_is_quoted_verbatim_in_a_guide(name):
    text = read(os.path.join(EXAMPLES, name))
    assert any(text in read(guide) for guide in GUIDES), f"docs/examples/{name} is not quoted whole in a guide"


def test_every_ini_block_in_the_guides_is_a_checked_example():
    examples = {read(os.path.join(EXAMPLES, name)) for name in example_files()}
    for guide in GUIDES:
        for block in re.findall(r"```ini\n(.*?)```", read(guide), re.S):
            assert block in examples, f"{os.path.basename(guide)}: an ini block that is no example file:\n{block}"


# (b) the examples carry traffic


def test_irc_lines_become_messages(start, peer_factory):
    peer = peer_factory("tcp", "echo")
    g = start("irc.cfg", "-c", f"host={peer.url}")

    async def go():
        async with websockets.connect(g.url) as ws:
            # The gateway adds no line ends towards the peer: the client sends its own CR LF.
            await ws.send("NICK alice\r\nUSER alice 0 * :Alice\r\n")
            assert await ws.recv() == "NICK alice\r\n"
            assert await ws.recv() == "USER alice 0 * :Alice\r\n"
    run(go())


def test_irc_a_partial_line_at_close_is_the_last_message(start, peer_factory):
    peer = peer_factory("tcp", "script", repr([b":irc.example NOTICE * :hello\r\n:irc.example ERR",
                                               b"OR :Closing link\r\n:irc.example PART"]))
    g = start("irc.cfg", "-c", f"host={peer.url}")

    async def go():
        async with websockets.connect(g.url) as ws:
            return await until_closed(ws)
    messages, code = run(go())
    assert messages == [":irc.example NOTICE * :hello\r\n", ":irc.example ERROR :Closing link\r\n",
                        ":irc.example PART"]
    assert code == 1000


def mqtt_packet(type_and_flags, body=b""):
    out, x = bytearray([type_and_flags]), len(body)
    while True:
        digit, x = x % 128, x // 128
        out.append(digit | (0x80 if x else 0))
        if not x:
            return bytes(out) + body


def mqtt_string(s):
    return len(s).to_bytes(2, "big") + s


CONNECT = mqtt_packet(0x10, mqtt_string(b"MQTT") + bytes([4, 0x02, 0, 60]) + mqtt_string(b"docs-test"))
CONNACK = mqtt_packet(0x20, b"\x00\x00")
PUBLISH = mqtt_packet(0x30, mqtt_string(b"sensors/1") + b'{"celsius": 21.5}')
PINGREQ = mqtt_packet(0xC0)
PINGRESP = mqtt_packet(0xD0)


class MqttBroker:
    """A TCP peer in this process that speaks MQTT 3.1.1 packets: CONNECT -> CONNACK and a PUBLISH in
    one write; PINGREQ -> PINGRESP in two writes; then half a PUBLISH and the close."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.received = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def read_exactly(self, conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def serve(self):
        conn, _ = self.listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            self.received.append(self.read_exactly(conn, len(CONNECT)))
            conn.sendall(CONNACK + PUBLISH)
            self.received.append(self.read_exactly(conn, len(PINGREQ)))
            conn.sendall(PINGRESP[:1])
            time.sleep(0.05)
            conn.sendall(PINGRESP[1:])
            time.sleep(0.05)
            conn.sendall(PUBLISH[:7])
            time.sleep(0.05)
        self.listener.close()


def test_mqtt_one_packet_per_message(start):
    broker = MqttBroker()
    g = start("mqtt.cfg", "-c", f"host={broker.url}")

    async def go():
        async with websockets.connect(g.url, subprotocols=["mqtt"]) as ws:
            assert ws.subprotocol == "mqtt"
            await ws.send(CONNECT)
            assert await ws.recv() == CONNACK
            assert await ws.recv() == PUBLISH
            await ws.send(PINGREQ)
            assert await ws.recv() == PINGRESP
            return await until_closed(ws)
    messages, code = run(go())
    # The half PUBLISH the broker sent before closing is dropped, not delivered.
    assert messages == [] and code == 1000
    broker.thread.join(5)
    assert broker.received == [CONNECT, PINGREQ]


class DnsResponder:
    """A UDP DNS server in this process: answers every A query with 192.0.2.1."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"udp://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    @staticmethod
    def answer(query):
        ident, = struct.unpack("!H", query[:2])
        question = query[12:]
        return (struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question
                + struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([192, 0, 2, 1]))

    def serve(self):
        while True:
            query, sender = self.sock.recvfrom(65535)
            self.sock.sendto(self.answer(query), sender)


def dns_query(ident, name):
    labels = b"".join(bytes([len(part)]) + part for part in name.split(b".")) + b"\x00"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)


def test_dns_one_datagram_per_message(start):
    resolver = DnsResponder()
    g = start("dns.cfg", "-c", f"host={resolver.url}")

    async def go():
        async with websockets.connect(g.url) as ws:
            for ident, name in [(0x1234, b"example.com"), (0x4321, b"www.example.org")]:
                query = dns_query(ident, name)
                await ws.send(query)
                reply = await ws.recv()
                assert reply == DnsResponder.answer(query)
                assert reply[-4:] == bytes([192, 0, 2, 1])
    run(go())


def test_dns_binary_framing_keeps_utf8_looking_datagrams_binary(start, peer_factory):
    peer = peer_factory("udp", "echo")
    g = start("dns.cfg", "-c", f"host={peer.url}")

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send(b"plain ASCII bytes")
            assert await ws.recv() == b"plain ASCII bytes"  # bytes: a binary message
    run(go())


def test_vnc_selects_binary_and_never_compresses(start, peer_factory):
    peer = peer_factory("tcp", "echo")
    g = start("vnc.cfg", "-c", f"host={peer.url}")

    async def go():
        async with websockets.connect(g.url, subprotocols=["binary"]) as ws:
            assert ws.subprotocol == "binary"
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send(b"RFB 003.008\n")
            assert await ws.recv() == b"RFB 003.008\n"
        async with websockets.connect(g.url) as ws:  # no subprotocol offered: served too
            assert ws.subprotocol is None
    run(go())


def test_console_auto_sends_text_and_binary(start, peer_factory):
    peer = peer_factory("tcp", "echo")
    g = start("console.cfg", "-c", f"host={peer.url}")

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send("login: ")
            assert await ws.recv() == "login: "
            await ws.send(b"\xff\xfb\x01")  # telnet IAC WILL ECHO
            assert await ws.recv() == b"\xff\xfb\x01"
    run(go())


def test_json_feed_lines_compressed(start, peer_factory):
    peer = peer_factory("tcp", "script", repr([b'{"t": 1, "price": 10.5}\n{"t": 2, ', b'"price": 10.7}\n']))
    g = start("json-feed.cfg", "-c", f"host={peer.url}")

    async def go():
        async with websockets.connect(g.url) as ws:
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
            return await until_closed(ws)
    messages, code = run(go())
    assert messages == ['{"t": 1, "price": 10.5}\n', '{"t": 2, "price": 10.7}\n'] and code == 1000


def test_json_stream_plugin_one_value_per_message(start, peer_factory):
    if not os.path.exists(os.path.join(TEST_PLUGINS, "framing_json.so")):
        pytest.fail(f"framing_json.so missing in {TEST_PLUGINS}: run the tests with `make test`")
    peer = peer_factory("tcp", "script", repr([b'{"a": 1}{"a"', b': 2} [3, 4]']))
    g = start("json-stream.cfg", "-c", f"host={peer.url}")

    async def go():
        async with websockets.connect(g.url) as ws:
            return await until_closed(ws)
    messages, code = run(go())
    assert messages == ['{"a": 1}', '{"a": 2}', '[3, 4]'] and code == 1000


def test_mixed_routes_compress_the_feed_and_not_vnc(tmp_path, start, peer_factory):
    vnc, feed = peer_factory("tcp", "echo"), peer_factory("tcp", "echo")
    routes = tmp_path / "routes"
    routes.mkdir()
    for name, url in [("vnc", vnc.url), ("feed", feed.url)]:
        text = read(os.path.join(EXAMPLES, "routes", name))
        (routes / name).write_text(text.replace("tcp://localhost:5900", url).replace("tcp://localhost:9000", url))
    g = start("mixed.cfg")

    async def go():
        async with websockets.connect(g.url + "/vnc", subprotocols=["binary"]) as ws:
            assert ws.subprotocol == "binary"
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send(b"RFB 003.008\n")
            assert await ws.recv() == b"RFB 003.008\n"
        async with websockets.connect(g.url + "/feed") as ws:
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
            await ws.send('{"subscribe": "prices"}\n')
            assert await ws.recv() == '{"subscribe": "prices"}\n'
    run(go())


def test_production_tls(tmp_path, certs, start, peer_factory):
    peer = peer_factory("tcp", "echo")
    g = start("production-tls.cfg", "-w", "1", "-c", f"host={peer.url}")
    context = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    url = f"wss://localhost:{g.port}/"

    async def go():
        async with websockets.connect(url, ssl=context, origin="https://app.example.com",
                                      subprotocols=["binary"]) as ws:
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, ssl=context, origin="https://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        with pytest.raises(Exception):  # tls-only: plain ws:// is refused
            async with websockets.connect(f"ws://127.0.0.1:{g.port}/", origin="https://app.example.com",
                                          open_timeout=5):
                pass
    run(go())
    lines = lines_of(str(tmp_path / "access.log"), count=3)
    assert any(re.search(r'"GET /" 101 bytes=- proto=binary .* close=1000 by=client', line) for line in lines), lines
    assert any(re.search(r'"GET /" 403 ', line) for line in lines), lines


def test_production_proxy_trusts_forwarded_for_from_the_proxy(tmp_path, start, peer_factory):
    peer = peer_factory("tcp", "echo")
    g = start("production-proxy.cfg", "-c", f"host={peer.url}")

    async def go():
        # What nginx sends (config/nginx-websocksy.conf), from 127.0.0.1, the trusted proxy.
        async with websockets.connect(g.url + "/ws/feed", origin="https://app.example.com",
                                      additional_headers={"X-Forwarded-For": "203.0.113.7"}) as ws:
            await ws.send("hello\n")
            assert await ws.recv() == "hello\n"
    run(go())
    assert lines_of(str(tmp_path / "access.log"))[-1].split()[2] == "fwd=203.0.113.7"


def test_the_proxy_header_names_the_client(start, tmp_path):
    """production-proxy.cfg takes PROXY headers from 127.0.0.1: the access log shows the client."""
    g = start("production-proxy.cfg", "-c", "host=echo://")
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
        s.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 8001\r\nGET / HTTP/1.1\r\nHost: x\r\n"
                  b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://app.example.com\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 101 ")
    assert lines_of(str(tmp_path / "access.log"))[-1].split()[1] == "203.0.113.7:40000"


def test_haproxy_tcp_mode_in_front(tmp_path, certs, start, peer_factory):
    if not shutil.which("haproxy"):
        pytest.fail("haproxy is needed for this test (.ci/run installs it)")
    peer = peer_factory("tcp", "echo")
    g = start("production-proxy.cfg", "-c", f"host={peer.url}")
    front = free_port()
    conf = read(os.path.join(EXAMPLES, "haproxy.conf"))
    conf = (conf.replace("bind :443", f"bind 127.0.0.1:{front}")
                .replace("/etc/haproxy/site.pem", os.path.join(certs, "combined.pem"))
                .replace("127.0.0.1:8001", f"127.0.0.1:{g.port}"))
    (tmp_path / "haproxy.conf").write_text(conf)
    check = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.conf")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proxy = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "haproxy.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", front), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        context = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))

        async def go():
            async with websockets.connect(f"wss://localhost:{front}/", ssl=context,
                                          origin="https://app.example.com") as ws:
                await ws.send("through haproxy\n")
                assert await ws.recv() == "through haproxy\n"
                return ws.local_address[1]
        client_port = run(go())
    finally:
        proxy.terminate()
        proxy.wait(10)
    # The PROXY header names the client: the access log shows its own port, not HAProxy's.
    assert lines_of(str(tmp_path / "access.log"))[-1].split()[1] == f"127.0.0.1:{client_port}"


def test_a_plugin_framing_drops_a_partial_record_at_close(gateway_factory, peer_factory):
    """choosing-a-framing.md, "The rule": plugin framings (fixedlength here) drop what is unframed."""
    peer = peer_factory("tcp", "script", repr([b"abcdef"]))
    g = gateway_factory("--plugins", TEST_PLUGINS, "-c", f"host={peer.url}", "-c", "framing=fixedlength",
                        "-c", "framing-config=4")

    async def go():
        async with websockets.connect(g.url) as ws:
            return await until_closed(ws)
    assert run(go()) == ([b"abcd"], 1000)
