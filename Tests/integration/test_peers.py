"""Bridging to real peer processes over TCP, UDP, Unix stream and Unix datagram sockets."""
import asyncio
import hashlib
import os
import random
import socket
import struct
import time

import pytest
import websockets

from conftest import refusal_status
from wsraw import RawClient, close_body, frame

TRANSPORTS = ["tcp", "udp", "unix", "unix-dgram"]


def run(coro):
    return asyncio.run(coro)


async def receive_bytes(ws, count, timeout=20):
    got = bytearray()
    while len(got) < count:
        m = await asyncio.wait_for(ws.recv(), timeout)
        got += m if isinstance(m, bytes) else m.encode()
    return bytes(got)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_echo_through_every_transport(gateway_factory, peer_factory, transport):
    peer = peer_factory(transport)
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=binary")

    async def go():
        async with websockets.connect(g.url, max_size=None) as ws:
            for size in [1, 100, 1400, 8000, 60000]:
                data = os.urandom(size)
                await ws.send(data)
                if transport in ("udp", "unix-dgram"):
                    assert await asyncio.wait_for(ws.recv(), 5) == data  # one datagram, one message
                else:
                    assert await receive_bytes(ws, size) == data
    run(go())


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_no_loss_random_sizes(gateway_factory, peer_factory, transport):
    """Thousands of random-sized messages (1 B – 1 MiB) there and back, compared by hash."""
    peer = peer_factory(transport)
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=binary")
    rng = random.Random(6455)
    sizes = [int(2 ** rng.uniform(0, 20)) for _ in range(2000)]
    pool = os.urandom(1 << 20)

    async def go():
        async with websockets.connect(g.url, max_size=None, write_limit=1 << 20) as ws:
            sent = hashlib.sha256()
            total = sum(sizes)

            async def writer():
                for i, size in enumerate(sizes):
                    start = (i * 7919) % (len(pool) - size + 1)
                    chunk = pool[start:start + size]
                    sent.update(chunk)
                    await ws.send(chunk)

            async def reader():
                received, n = hashlib.sha256(), 0
                while n < total:
                    m = await asyncio.wait_for(ws.recv(), 30)
                    received.update(m)
                    n += len(m)
                return received.hexdigest(), n

            (digest, n), _ = await asyncio.gather(reader(), writer())
            assert n == total
            assert digest == sent.hexdigest()
    run(go())


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_sink_hash_on_the_far_side(gateway_factory, peer_factory, transport):
    """Client → peer only: the peer hashes everything it got until the gateway closes it."""
    peer = peer_factory(transport, "sink")
    g = gateway_factory("-c", f"host={peer.url}")
    rng = random.Random(1)
    messages = [os.urandom(int(2 ** rng.uniform(0, 18))) for _ in range(500)]

    async def go():
        async with websockets.connect(g.url, max_size=None) as ws:
            for m in messages:
                await ws.send(m)
    run(go())
    expected = hashlib.sha256(b"".join(messages)).hexdigest()
    assert peer.output_line() .split()[:3] == ["SHA256", expected, str(sum(map(len, messages)))]


def test_sixteen_mebibyte_message_is_streamed_to_the_peer(gateway_factory, peer_factory):
    peer = peer_factory("tcp", "sink")
    g = gateway_factory("-c", f"host={peer.url}")
    data = os.urandom(16 << 20)

    async def go():
        async with websockets.connect(g.url, max_size=None) as ws:
            await ws.send([data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)])
    run(go())
    assert peer.output_line().split()[1] == hashlib.sha256(data).hexdigest()


def test_host_name_is_resolved_without_blocking(gateway_factory, peer_factory):
    peer = peer_factory("tcp")
    port = peer.address.rsplit(":", 1)[1]
    g = gateway_factory("-c", f"host=tcp://localhost:{port}")

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send(b"resolved")
            assert await receive_bytes(ws, 8) == b"resolved"
    run(go())


def test_port_option_fills_in_a_missing_port(gateway_factory, peer_factory):
    peer = peer_factory("tcp")
    host, port = peer.address.rsplit(":", 1)
    g = gateway_factory("-c", f"host=tcp://{host}", "-c", f"port={port}")

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send(b"x")
            assert await receive_bytes(ws, 1) == b"x"
    run(go())


def test_host_without_scheme_is_tcp_with_a_warning(gateway_factory, peer_factory):
    peer = peer_factory("tcp")
    g = gateway_factory("-c", f"host={peer.address}")
    assert g.wait_for_log("has no scheme")

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send(b"y")
            assert await receive_bytes(ws, 1) == b"y"
    run(go())


def test_ipv6_literal(gateway_factory, peer_factory):
    peer = peer_factory("tcp", address="[::1]:0")
    port = peer.address.rsplit(":", 1)[1]
    g = gateway_factory("-c", f"host=tcp://[::1]:{port}")

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send(b"v6")
            assert await receive_bytes(ws, 2) == b"v6"
    run(go())


def test_peer_down_is_502(gateway_factory):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    g = gateway_factory("-c", f"host=tcp://127.0.0.1:{port}")
    c = RawClient(g.port)
    from wsraw import request
    c.send(request())
    status, headers = c.read_response()
    body = c.read_body(int(headers["content-length"]))
    assert status == 502 and b"refused" in body.lower()
    assert g.wait_for_log("refused with 502")


def test_missing_unix_socket_is_502(gateway_factory):
    g = gateway_factory("-c", "host=unix:///nonexistent/websocksy.sock")

    assert refusal_status(g.url) == 502


def test_unreachable_peer_times_out_with_502(gateway_factory):
    # 192.0.2.0/24 is TEST-NET-1 (never routed); the sandbox has no route, so this fails or times out.
    g = gateway_factory("-c", "host=tcp://192.0.2.1:9", "--connect-timeout", "1")

    assert refusal_status(g.url, open_timeout=10) == 502


def test_peer_closing_mid_message_delivers_the_rest_then_1000(gateway_factory, peer_factory):
    peer = peer_factory("tcp", "script", repr([b"line one\n", b"line two\npartial"]))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=newline", "-c", "framing-config=lf")

    async def go():
        async with websockets.connect(g.url) as ws:
            assert await ws.recv() == "line one\n"
            assert await ws.recv() == "line two\n"
            assert await ws.recv() == "partial"  # the unframed remainder, as a last message
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws.recv()
            assert ws.close_code == 1000
    run(go())


def test_client_close_flushes_to_the_peer(gateway_factory, peer_factory):
    peer = peer_factory("unix", "sink")
    g = gateway_factory("-c", f"host={peer.url}")
    c = RawClient(g.port)
    c.handshake()
    payload = os.urandom(3 << 20)
    c.send(frame(2, payload) + frame(8, close_body(1000)))
    c.expect_close(1000)
    assert peer.output_line().split()[1:] == [hashlib.sha256(payload).hexdigest(), str(len(payload))]


def test_client_vanishing_mid_frame_closes_the_peer(gateway_factory, peer_factory):
    peer = peer_factory("tcp", "sink")
    g = gateway_factory("-c", f"host={peer.url}")
    c = RawClient(g.port)
    c.handshake()
    data = frame(2, b"a" * 1000)
    c.send(data[:500])  # header plus part of the payload, then gone
    time.sleep(0.2)
    c.close()
    line = peer.output_line()
    assert line.split()[2] == str(500 - 8)  # the streamed part arrived; the peer saw EOF


@pytest.mark.parametrize("transport", ["udp", "unix-dgram"])
def test_each_message_is_one_datagram(gateway_factory, peer_factory, transport):
    peer = peer_factory(transport)
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=binary")

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send([b"frag", b"mented"])  # reassembled into one datagram
            assert await asyncio.wait_for(ws.recv(), 5) == b"fragmented"
            for i in range(50):
                await ws.send(b"d%d" % i)
            for i in range(50):
                assert await asyncio.wait_for(ws.recv(), 5) == b"d%d" % i
    run(go())


def test_udp_message_over_the_datagram_limit_is_1009(gateway_factory, peer_factory):
    peer = peer_factory("udp")
    g = gateway_factory("-c", f"host={peer.url}")

    async def go():
        async with websockets.connect(g.url, max_size=None) as ws:
            await ws.send(b"x" * 70000)
            with pytest.raises(websockets.ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 1009
    run(go())


def test_datagrams_from_the_peer_are_one_read_each(gateway_factory, peer_factory):
    peer = peer_factory("udp", "script", repr([b"first", b"second", b"third"]))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=binary")

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send(b"hello")  # the peer learns our address from this datagram
            assert [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)] == [b"first", b"second", b"third"]
    run(go())


def test_separator_split_across_reads_and_many_per_read(gateway_factory, peer_factory):
    peer = peer_factory("tcp", "script", repr([b"a|", b"|b||c", b"||d|", b"|"]))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=separator", "-c", "framing-config=||")

    async def go():
        async with websockets.connect(g.url) as ws:
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
            assert got == [b"a||", b"b||", b"c||", b"d||"]
    run(go())


def test_auto_framing_types(gateway_factory, peer_factory):
    peer = peer_factory("tcp", "script", repr([b"plain text", b"\xff\x00binary", "κ".encode()[:1], "κ".encode()[1:]]))
    g = gateway_factory("-c", f"host={peer.url}")

    async def go():
        async with websockets.connect(g.url) as ws:
            assert await ws.recv() == "plain text"
            assert await ws.recv() == b"\xff\x00binary"
            assert await ws.recv() == "κ"  # a character split across reads stays text
    run(go())


def test_unframed_peer_data_over_the_cap_is_1009(gateway_factory, peer_factory):
    peer = peer_factory("tcp", "script", repr([b"x" * 30000] * 4))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=separator", "-c", "framing-config=\\n",
                        "--peer-buffer", "64k")

    async def go():
        async with websockets.connect(g.url) as ws:
            with pytest.raises(websockets.ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 1009
    run(go())
    assert g.wait_for_log("unframed")


def test_slow_client_with_fast_peer_stays_bounded(gateway_factory, peer_factory):
    """A peer that floods a client that never reads: the gateway stops reading the peer."""
    peer = peer_factory("tcp", "flood", str(200 << 20))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=binary")
    c = RawClient(g.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.handshake()
    time.sleep(3)
    status = open(f"/proc/{g.proc.pid}/status").read()
    rss_kb = int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1])
    assert rss_kb < 48 * 1024, f"RSS {rss_kb} kB"
    # Nothing was lost: reading now yields a contiguous stream of 'z'.
    total = 0
    c.sock.settimeout(10)
    while total < 8 << 20:
        fin, opcode, payload = c.recv_frame()
        assert opcode == 2 and payload == b"z" * len(payload)
        total += len(payload)


@pytest.mark.parametrize("args,message", [
    (["-c", "host=tcp://127.0.0.1:1", "-c", "framing=nosuch"], "unknown framing 'nosuch'"),
    (["-c", "host=tcp://127.0.0.1:1", "-c", "framing=separator", "-c", "framing-config=\\q"], "unknown escape"),
    (["-c", "host=tcp://127.0.0.1:1", "-c", "framing=separator"], "needs a separator"),
    (["-c", "host=tcp://127.0.0.1:1", "-c", "framing=newline", "-c", "framing-config=crcr"], "unknown line end"),
    (["-c", "host=tcp://127.0.0.1"], "no port"),
    (["-c", "host=tcp://::1:80"], "brackets"),
    (["-c", "host=sctp://x:1"], "unsupported peer scheme"),
])
def test_peer_configuration_errors(args, message):
    from test_lifecycle import run_binary
    r = run_binary(*args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_clients_resetting_while_the_peer_streams(gateway_factory, peer_factory):
    """Writes to a client that reset fail mid-way through framing peer data: the gateway survives."""
    peer = peer_factory("tcp", "flood", str(8 << 20))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=binary")
    time.sleep(0.2)
    before = g.fd_count()
    for _ in range(20):
        c = RawClient(g.port)
        c.handshake()
        c.recv_frame()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    assert g.proc.poll() is None, g.log()
    deadline = time.time() + 8
    while time.time() < deadline and g.fd_count() != before:
        time.sleep(0.1)
    assert g.fd_count() == before
