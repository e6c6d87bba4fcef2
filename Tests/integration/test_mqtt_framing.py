"""framing=mqtt through the real binary: a TCP peer sends MQTT control packets in awkward chunks,
and the client gets exactly one binary message per packet, byte for byte."""
import asyncio
import os
import socket
import threading
import time

import pytest
import websockets

from conftest import ROOT, Gateway

TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(ROOT, ".build", "test-plugins"))


def packet(type_and_flags, payload=b""):
    """A control packet: the type and flags byte, the Remaining Length (MQTT 3.1.1 §2.2.3), the rest."""
    out, x = bytearray([type_and_flags]), len(payload)
    while True:
        encoded, x = x % 128, x // 128
        out.append(encoded | (0x80 if x else 0))
        if not x:
            return bytes(out) + payload


def publish(topic, payload):
    return packet(0x30, len(topic).to_bytes(2, "big") + topic + payload)


CONNACK = bytes([0x20, 0x02, 0x00, 0x00])
PINGRESP = bytes([0xD0, 0x00])
PINGREQ = bytes([0xC0, 0x00])
SUBACK = packet(0x90, bytes([0x00, 0x01, 0x00]))


def chunked(stream, cuts):
    """`stream` cut at the given offsets."""
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:])]


class ScriptPeer:
    """A TCP peer in this process, for scripts too large for peer.py's command line: sends each
    chunk as its own write (no Nagle, a pause between) so the gateway reads them apart, then closes."""

    def __init__(self, chunks):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, args=(chunks,), daemon=True)
        self.thread.start()

    def _serve(self, chunks):
        conn, _ = self.listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            conn.sendall(chunk)
            time.sleep(0.02)
        conn.close()
        self.listener.close()


async def all_messages(url):
    """Every message until the close, and the close code."""
    messages = []
    async with websockets.connect(url, max_size=None) as ws:
        try:
            while True:
                messages.append(await asyncio.wait_for(ws.recv(), 10))
        except websockets.ConnectionClosed:
            return messages, ws.close_code


def test_packets_split_and_joined_across_reads(gateway_factory, peer_factory):
    packets = [CONNACK, SUBACK, publish(b"sensors/1", os.urandom(200)), PINGRESP, PINGRESP,
               packet(0x40, b"\x00\x07"), PINGRESP]
    stream = b"".join(packets)
    a, b, c = len(CONNACK), len(CONNACK) + len(SUBACK), len(CONNACK) + len(SUBACK) + len(packets[2])
    chunks = chunked(stream, [1,           # the type byte alone
                              a + 1,       # CONNACK's tail, SUBACK's type byte
                              b + 2,       # SUBACK's tail, PUBLISH's two-byte Remaining Length cut in half
                              b + 120,     # into the payload
                              c + 3])      # the PUBLISH's end, a PINGRESP and half the next; then the rest
    peer = peer_factory("tcp", "script", repr(chunks))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=mqtt")

    messages, code = asyncio.run(all_messages(g.url))
    assert messages == packets  # bytes, so binary; one per packet; nothing else
    assert code == 1000


def test_one_byte_reads(gateway_factory, peer_factory):
    packets = [CONNACK, PINGRESP, packet(0xB0, b"\x00\x05")]
    stream = b"".join(packets)
    peer = peer_factory("tcp", "script", repr([stream[i:i + 1] for i in range(len(stream))]))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=mqtt")

    messages, code = asyncio.run(all_messages(g.url))
    assert messages == packets and code == 1000


def test_large_publish_in_awkward_chunks(gateway_factory):
    big = publish(b"firmware/image", os.urandom(300_000))  # a three-byte Remaining Length
    packets = [CONNACK, publish(b"a", os.urandom(200)), big, PINGRESP]
    stream = b"".join(packets)
    start = len(CONNACK) + len(packets[1])
    cuts = [start + 1, start + 3, start + 5, start + 70_000, start + 70_001, start + 250_000,
            start + len(big) - 1, start + len(big) + 1]
    peer = ScriptPeer(chunked(stream, cuts))  # the first read: two packets and a type byte
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=mqtt")

    messages, code = asyncio.run(all_messages(g.url))
    assert [len(m) for m in messages] == [len(p) for p in packets]
    assert messages == packets and code == 1000


def test_malformed_remaining_length_closes_1011(gateway_factory, peer_factory):
    # The fourth Remaining Length byte still has the continuation bit: a fifth byte would follow.
    peer = peer_factory("tcp", "script", repr([CONNACK + b"\x30\xff\xff", b"\xff\x80\x01" + b"x" * 20]))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=mqtt")

    messages, code = asyncio.run(all_messages(g.url))
    assert messages == [CONNACK] and code == 1011
    assert g.wait_for_log("closing with 1011")
    time.sleep(0.2)
    lines = [line for line in g.lines if "1011" in line]
    assert len(lines) == 1 and "reported an error" in lines[0], g.log()


def test_packet_larger_than_peer_buffer_is_1009(gateway_factory, peer_factory):
    # The largest Remaining Length (268 435 455): the gateway waits for the packet until peer-buffer is full.
    peer = peer_factory("tcp", "script", repr([b"\x30\xff\xff\xff\x7f", b"x" * 30000, b"x" * 30000, b"x" * 30000]))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=mqtt", "--peer-buffer", "64k")

    messages, code = asyncio.run(all_messages(g.url))
    assert messages == [] and code == 1009
    assert g.wait_for_log("left 65536 bytes from the peer unframed; closing with 1009")


def test_incomplete_packet_at_close_is_dropped(gateway_factory, peer_factory):
    partial = publish(b"t", b"y" * 100)[:60]
    peer = peer_factory("tcp", "script", repr([PINGRESP, partial]))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=mqtt", "-v")

    messages, code = asyncio.run(all_messages(g.url))
    assert messages == [PINGRESP] and code == 1000
    assert g.wait_for_log(r"dropping 60 bytes framing 'mqtt' never framed")


def test_file_backend_route_names_mqtt(tmp_path, peer_factory):
    if not os.path.exists(os.path.join(TEST_PLUGINS, "backend_file.so")):
        pytest.fail(f"test plugins missing in {TEST_PLUGINS}: run the tests with `make test`")
    packets = [CONNACK, publish(b"x/y", b"z" * 200), PINGRESP]
    stream = b"".join(packets)
    peer = peer_factory("tcp", "script", repr(chunked(stream, [3, 9, 150])))
    (tmp_path / "broker").write_text(f"{peer.url} mqtt mqtt\n")
    g = Gateway(["-l", "127.0.0.1", "-p", "0", "--plugins", TEST_PLUGINS,
                 "-b", "file", "-c", f"path={tmp_path}", "-c", "expression=%endpoint%"])
    try:
        async def go():
            async with websockets.connect(g.url + "/broker", subprotocols=["mqtt"]) as ws:
                assert ws.subprotocol == "mqtt"
                return [await asyncio.wait_for(ws.recv(), 5) for _ in packets]
        assert asyncio.run(go()) == packets
    finally:
        g.stop()
