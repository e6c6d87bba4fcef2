"""permessage-deflate (RFC 7692) with an independent client (Python websockets) and raw sockets:
negotiation, messages of every size both ways, fragmentation, window bits and context takeover,
malformed offers and frames, the decompression bomb, per-route choice and idle memory."""
import asyncio
import os
import socket
import struct
import time
import zlib

import pytest
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from conftest import Gateway, rss_kib
from wsraw import RawClient, frame, request

# The answer to a bare offer: the client's window cannot be limited, so it keeps no context.
PLAIN = "permessage-deflate; client_no_context_takeover; server_max_window_bits=11"


def run(coro):
    return asyncio.run(coro)


def deflate_raw(data, wbits=15, level=6):
    """What a permessage-deflate sender puts in a message: raw DEFLATE, sync-flushed, tail removed."""
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class CompressedRaw(RawClient):
    """A raw client that reads server frames with RSV1 (`recv_frame_rsv`) and their close code."""

    def close_code(self):
        while True:
            _, _, opcode, payload = self.recv_frame_rsv()
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0]


def upgrade(port, extensions):
    c = CompressedRaw(port)
    headers = c.handshake(extra=f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else "")
    return c, headers.get("sec-websocket-extensions")


@pytest.fixture
def compressed_echo(gateway_factory):
    return gateway_factory("-c", "host=echo://", "--compression", "on")


SIZES = [0, 1, 5, 125, 126, 1000, 65535, 65536, 65537, 300_000, 4 << 20, 16 << 20]


@pytest.mark.parametrize("factory", [
    ClientPerMessageDeflateFactory(),
    ClientPerMessageDeflateFactory(client_max_window_bits=None),
    ClientPerMessageDeflateFactory(client_max_window_bits=9),
    ClientPerMessageDeflateFactory(server_max_window_bits=9, client_max_window_bits=15),
    ClientPerMessageDeflateFactory(server_max_window_bits=15),
    ClientPerMessageDeflateFactory(server_no_context_takeover=True, client_no_context_takeover=True),
], ids=["default", "no-client-bits", "client-9", "server-9", "server-15", "no-context"])
def test_messages_of_every_size_round_trip(compressed_echo, factory):
    rnd = os.urandom(1 << 20)

    async def go():
        async with websockets.connect(compressed_echo.url, extensions=[factory], max_size=None,
                                      compression=None) as ws:
            agreed = ws.response.headers["Sec-WebSocket-Extensions"]
            assert agreed.startswith("permessage-deflate")
            for n in SIZES:
                # At most n bytes of UTF-8 with multi-byte characters (a cut one is dropped).
                line = ("{\"seq\": %d, \"v\": \"é€𝄞\"}\n" % n).encode()
                text = (line * (n // len(line) + 1))[:n].decode(errors="ignore")
                await ws.send(text)
                assert await ws.recv() == text
                binary = (rnd * (n // len(rnd) + 1))[:n] if n % 2 else bytes(n)
                await ws.send(binary)
                assert await ws.recv() == binary
            return agreed
    agreed = run(go())
    if factory.server_max_window_bits == 9:
        assert "server_max_window_bits=9" in agreed


def test_fragmented_messages_both_ways(compressed_echo):
    async def go():
        async with websockets.connect(compressed_echo.url, max_size=None) as ws:
            parts = [("part %d " % i) * 2000 for i in range(20)]
            await ws.send(parts)              # fragmented: one frame per part, RSV1 on the first
            assert await ws.recv() == "".join(parts)
            await ws.send([os.urandom(100_000) for _ in range(3)])
            await ws.recv()
    run(go())
    # Server → client: an incompressible 300 KB message leaves in several frames, RSV1 on the first.
    c, agreed = upgrade(compressed_echo.port, "permessage-deflate")
    assert agreed == PLAIN
    message = os.urandom(300_000)
    c.send(frame(2, deflate_raw(message), rsv=4))
    frames = []
    while True:
        fin, rsv, opcode, payload = c.recv_frame_rsv()
        frames.append((rsv, opcode, payload))
        if fin:
            break
    assert len(frames) > 1
    assert frames[0][:2] == (4, 2) and all(f[:2] == (0, 0) for f in frames[1:])
    inflater = zlib.decompressobj(-11)
    assert inflater.decompress(b"".join(f[2] for f in frames) + b"\x00\x00\xff\xff") == message


def test_declined_offers_leave_the_connection_uncompressed(compressed_echo):
    for offer in ["permessage-deflate; server_max_window_bits=7", "permessage-deflate; bogus",
                  "permessage-deflate; client_max_window_bits=16", "permessage-deflate; server_no_context_takeover=yes",
                  "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                  "x-webkit-deflate-frame", "\"garbage", ";;;,,,", "permessage-deflate; server_max_window_bits=\"1\\"]:
        c, agreed = upgrade(compressed_echo.port, offer)
        assert agreed is None, offer
        c.send(frame(1, b"plain"))
        assert c.recv_frame_rsv() == (True, 0, 1, b"plain")
    # A bad offer followed by a good one: the good one is taken.
    _, agreed = upgrade(compressed_echo.port, "permessage-deflate; bogus, permessage-deflate; client_max_window_bits")
    assert agreed == "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11"
    # Quoted values and case.
    _, agreed = upgrade(compressed_echo.port, "Permessage-Deflate; Server_Max_Window_Bits=\"10\"")
    assert agreed == "permessage-deflate; client_no_context_takeover; server_max_window_bits=10"


def test_compression_off_by_default_and_when_configured_off(gateway_factory):
    for args in [(), ("--compression", "off")]:
        g = gateway_factory("-c", "host=echo://", *args)
        _, agreed = upgrade(g.port, "permessage-deflate; client_max_window_bits")
        assert agreed is None


@pytest.mark.parametrize("payload,opcode,code", [
    (b"\xff\xff\xff\xff", 1, 1007),          # undecodable, text
    (b"\xff\xff\xff\xff", 2, 1002),          # undecodable, binary
    (None, 1, 1007),                          # decodes to invalid UTF-8
])
def test_malformed_compressed_frames(compressed_echo, payload, opcode, code):
    c, _ = upgrade(compressed_echo.port, "permessage-deflate")
    c.send(frame(opcode, payload if payload is not None else deflate_raw(b"a\xc3\x28a"), rsv=4))
    assert c.close_code() == code
    assert compressed_echo.wait_for_log(f"closing with {code}")


def test_rsv1_rules(compressed_echo):
    c, _ = upgrade(compressed_echo.port, "permessage-deflate")
    c.send(frame(9, b"", rsv=4))
    assert c.close_code() == 1002
    c, _ = upgrade(compressed_echo.port, "permessage-deflate")
    data = deflate_raw(b"Hello")
    c.send(frame(1, data[:2], fin=False, rsv=4) + frame(0, data[2:], rsv=4))
    assert c.close_code() == 1002
    c, _ = upgrade(compressed_echo.port, None)      # not negotiated
    c.send(frame(1, data, rsv=4))
    assert c.close_code() == 1002
    # Control frames stay uncompressed even with compression on, and are answered.
    c, _ = upgrade(compressed_echo.port, "permessage-deflate")
    c.send(frame(9, b"are you there"))
    assert c.recv_frame_rsv() == (True, 0, 10, b"are you there")


def test_decompression_bomb_closes_1009_with_flat_memory(gateway_factory, peer_factory):
    """256 MiB of zeros compress to ~250 KiB; against the default 16 MiB limit the gateway closes
    with 1009 once the limit is passed, streaming what it inflated to the peer in bounded steps."""
    sink = peer_factory("tcp", "sink")
    g = gateway_factory("-c", f"host={sink.url}", "--compression", "on")
    bomb = deflate_raw(bytes(256 << 20), level=9)
    assert len(bomb) < 300_000
    before = rss_kib(g.proc.pid)
    c, _ = upgrade(g.port, "permessage-deflate")
    c.send(frame(2, bomb, rsv=4))
    assert c.close_code() == 1009
    assert g.wait_for_log("exceeds 16777216 bytes once decompressed")
    assert rss_kib(g.proc.pid) - before < 8 << 10, "memory grew with the inflated size"
    # What reached the peer is at most the limit.
    c.sock.close()
    line = sink.output_line()
    assert line.startswith("SHA256") and int(line.split()[2]) <= 16 << 20


def test_inflating_respects_backpressure(gateway_factory):
    """A paused client whose compressed bytes inflate to far more than the queues hold: the
    gateway stops inflating (its memory stays bounded) and the client's messages arrive whole."""
    g = gateway_factory("-c", "host=echo://", "--compression", "on")

    async def go():
        async with websockets.connect(g.url, max_size=None, write_limit=1 << 30) as ws:
            before = rss_kib(g.proc.pid)
            message = "0123456789abcdef" * (1 << 20)   # 16 MiB minus nothing: the default limit
            message = message[:(16 << 20)]
            for _ in range(4):
                await ws.send(message)
            await asyncio.sleep(1.5)                  # nothing read meanwhile
            grown = rss_kib(g.proc.pid) - before
            for _ in range(4):
                assert await ws.recv() == message
            return grown
    grown = run(go())
    # One message assembled for the echo (16 MiB) plus queues; never the 64 MiB sent.
    assert grown < 40 << 10, f"RSS grew {grown} KiB"


def test_json_lines_from_a_tcp_peer_are_compressed(gateway_factory, peer_factory):
    lines = [b'{"type":"trade","seq":%d,"symbol":"AAPL","price":%d.25,"size":100}\n' % (i, 100 + i % 50) for i in range(200)]
    peer = peer_factory("tcp", "script", repr([b"".join(lines)]))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=newline", "-c", "framing-config=lf",
                        "--compression", "on")
    c, agreed = upgrade(g.port, "permessage-deflate")
    assert agreed == PLAIN
    inflater = zlib.decompressobj(-11)
    wire = 0
    for expected in lines:
        fin, rsv, opcode, payload = c.recv_frame_rsv()
        assert fin and opcode == 1 and rsv == 4
        wire += len(payload)
        assert inflater.decompress(payload + b"\x00\x00\xff\xff") == expected
    raw = sum(len(l) for l in lines)
    assert wire * 3 < raw, f"{raw} bytes of JSON took {wire} compressed"


def test_minimum_size_sends_short_messages_plain(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--compression", "100")
    c, _ = upgrade(g.port, "permessage-deflate")
    c.send(frame(1, b"short"))
    assert c.recv_frame_rsv() == (True, 0, 1, b"short")
    c.send(frame(1, b"long " * 40))
    fin, rsv, opcode, payload = c.recv_frame_rsv()
    assert (fin, rsv, opcode) == (True, 4, 1)
    assert zlib.decompressobj(-11).decompress(payload + b"\x00\x00\xff\xff") == b"long " * 40


def test_no_context_takeover_from_the_configuration(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--compression", "on", "--server-no-context-takeover", "yes",
                        "--client-no-context-takeover", "yes", "--server-max-window-bits", "15")
    c, agreed = upgrade(g.port, "permessage-deflate")
    assert agreed == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    message = b"the same message, twice over " * 4
    payloads = []
    for _ in range(2):
        c.send(frame(1, deflate_raw(message), rsv=4))   # each from an empty window, as agreed
        payloads.append(c.recv_frame_rsv())
    assert payloads[0] == payloads[1], "without context each message compresses alike"
    assert zlib.decompressobj(-15).decompress(payloads[0][3] + b"\x00\x00\xff\xff") == message
    # Incompressible messages go plain rather than grow.
    noise = os.urandom(2000)
    c.send(frame(2, noise))
    assert c.recv_frame_rsv() == (True, 0, 2, noise)


@pytest.mark.parametrize("offer", ["permessage-deflate; client_max_window_bits", "permessage-deflate"])
def test_idle_compressed_connections_cost_little_memory(gateway_factory, offer):
    """Each connection has sent and received a message both ways, so its windows exist. Chromium
    offers client_max_window_bits (we keep an 11-bit window for it); Firefox does not (we ask it to
    keep no context)."""
    g = gateway_factory("-c", "host=echo://", "--compression", "on")
    count = 300
    json_line = b'{"type":"trade","seq":1,"symbol":"AAPL","price":101.25,"size":100}'
    before = rss_kib(g.proc.pid)
    clients = []
    for _ in range(count):
        c, _ = upgrade(g.port, offer)
        c.send(frame(1, deflate_raw(json_line, wbits=11), rsv=4))
        clients.append(c)
    for c in clients:
        c.recv_frame_rsv()
    per_connection = (rss_kib(g.proc.pid) - before) * 1024 / count
    assert per_connection <= 64 << 10, f"{per_connection:.0f} bytes per idle compressed connection"
    print(f"idle compressed connection: {per_connection:.0f} bytes")


def test_routes_choose_compression(gateway_factory, tmp_path):
    """backend_file route options (through core_peer_option) override the [core] key per route."""
    plugins = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "test-plugins"))
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "vnc").write_text("echo://?compression=off *\n")
    (routes / "json").write_text("echo://?compression=64 *\n")
    (routes / "default").write_text("echo:// *\n")
    (routes / "typo").write_text("echo://?compression=maybe&colour=blue *\n")
    for core in ["on", "off"]:
        g = gateway_factory("--plugins", plugins, "--compression", core, "-b", "file", "-c", f"path={routes}",
                            "-c", "expression=%endpoint%")
        offered = "permessage-deflate"
        expected = {"vnc": None, "json": PLAIN, "default": PLAIN if core == "on" else None,
                    "typo": PLAIN if core == "on" else None}
        for route, agreed in expected.items():
            c = CompressedRaw(g.port)
            headers = c.handshake(path=f"/{route}", extra=f"Sec-WebSocket-Extensions: {offered}\r\n")
            assert headers.get("sec-websocket-extensions") == agreed, (core, route)
        assert g.wait_for_log(r"core_peer_option: compression must be off, on or a minimum message size, not 'maybe'")
        assert g.wait_for_log(r"core_peer_option: unknown option 'colour'")
    # The json route's minimum size: short messages plain, longer ones compressed.
    c = CompressedRaw(g.port)
    c.handshake(path="/json", extra=f"Sec-WebSocket-Extensions: {offered}\r\n")
    c.send(frame(1, b"x" * 63))
    assert c.recv_frame_rsv()[1] == 0
    c.send(frame(1, b"x" * 64))
    assert c.recv_frame_rsv()[1] == 4
