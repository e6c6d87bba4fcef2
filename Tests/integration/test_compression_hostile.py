"""permessage-deflate (RFC 7692) against hostile clients and slow or dying parties: compressed
messages cut to single bytes, fragments with pings between them, tails and final blocks where a
sender should not put them, UTF-8 split by the 64 KiB inflate steps, the max-message boundary,
bombs that are never read, resets mid-inflate and mid-send, many lent inflaters at once, a flood
towards a slow reader, every window size zlib can make, SIGHUP under load, malformed offers and
garbage after good messages. Tests marked "defect" in their docstring fail on the binary they were
written against and describe the expected behaviour."""
import asyncio
import os
import random
import signal
import socket
import struct
import threading
import time
import zlib

import pytest
import websockets

from conftest import Gateway, rss_kib
from wsraw import RawClient, frame, request

TAIL = b"\x00\x00\xff\xff"


# Helpers

def deflate_raw(data, wbits=15, level=6):
    """A permessage-deflate payload: raw DEFLATE, sync-flushed, the 00 00 ff ff tail removed."""
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def cframe(opcode, payload, fin=True, rsv=0):
    """A client frame masked with a zero key (payload goes as is): cheap for large payloads."""
    return frame(opcode, b"", fin=fin, rsv=rsv, key=b"\0\0\0\0", length=len(payload)) + payload


def reset(sock):
    """Close with an RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(predicate, timeout=6, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class Client(RawClient):
    """A raw client that reads server frames (RSV1 included) without copying its buffer per frame,
    and inflates compressed messages itself."""

    def __init__(self, port, timeout=10):
        super().__init__(port, timeout)
        self.rbuf, self.pos = bytearray(), 0

    def _fill(self, n):
        if self.buf:
            self.rbuf += self.buf
            self.buf = b""
        while len(self.rbuf) - self.pos < n:
            if self.pos > 1 << 20:
                del self.rbuf[:self.pos]
                self.pos = 0
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self.rbuf += chunk

    def next_frame(self):
        """(fin, rsv, opcode, payload)."""
        self._fill(2)
        b0, b1 = self.rbuf[self.pos], self.rbuf[self.pos + 1]
        assert b1 & 0x80 == 0, "server frames must not be masked"
        n, head = b1 & 0x7F, 2
        if n == 126:
            self._fill(4)
            n, head = struct.unpack("!H", self.rbuf[self.pos + 2:self.pos + 4])[0], 4
        elif n == 127:
            self._fill(10)
            n, head = struct.unpack("!Q", self.rbuf[self.pos + 2:self.pos + 10])[0], 10
        self._fill(head + n)
        payload = bytes(self.rbuf[self.pos + head:self.pos + head + n])
        self.pos += head + n
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload

    def message(self, inflater=None, wbits=15, skip_pongs=True):
        """(opcode, payload, compressed) of the next data message, inflated; (8, body, False) for
        a Close. `inflater` is kept across messages (server context takeover)."""
        parts, opcode, compressed = [], None, False
        while True:
            fin, rsv, op, payload = self.next_frame()
            if op == 8:
                return 8, payload, False
            if op in (9, 10):
                if skip_pongs:
                    continue
                return op, payload, False
            if opcode is None:
                opcode, compressed = op, rsv == 4
            else:
                assert op == 0 and rsv == 0, (op, rsv)
            parts.append(payload)
            if fin:
                break
        data = b"".join(parts)
        if compressed:
            data = (inflater or zlib.decompressobj(-wbits)).decompress(data + TAIL)
        return opcode, data, compressed

    def close_code(self):
        while True:
            _, _, op, payload = self.next_frame()
            if op == 8:
                return struct.unpack("!H", payload[:2])[0]


def upgrade(port, offer="permessage-deflate"):
    c = Client(port)
    headers = c.handshake(extra=f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else "")
    return c, headers.get("sec-websocket-extensions")


def server_bits(agreed):
    for part in agreed.split(";"):
        if part.strip().startswith("server_max_window_bits="):
            return int(part.split("=")[1])
    return 15


@pytest.fixture
def echo(gateway_factory):
    return gateway_factory("-c", "host=echo://", "--compression", "on", "--shutdown-timeout", "1")


# 1. Byte by byte, pings between fragments, empty fragments

@pytest.mark.parametrize("offer", ["permessage-deflate", "permessage-deflate; client_max_window_bits"])
def test_compressed_message_one_byte_per_segment(echo, offer):
    c, agreed = upgrade(echo.port, offer)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    inflater = zlib.decompressobj(-server_bits(agreed))
    keeps = "client_no_context_takeover" not in agreed
    compressor = zlib.compressobj(6, zlib.DEFLATED, -11)
    for text in ["héllo wörld € 𝄞 " * 20, "second message, same window " * 10, "héllo wörld € 𝄞 " * 21]:
        if keeps:
            data = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
            data = data[:-4]
        else:
            data = deflate_raw(text.encode())
        wire = frame(1, data, rsv=4)
        for i in range(len(wire)):
            c.send(wire[i:i + 1])
            if i % 7 == 0:
                time.sleep(0.0005)
        assert c.message(inflater) == (1, text.encode(), True)


def test_pings_between_compressed_fragments_and_empty_continuations(echo):
    c, agreed = upgrade(echo.port)
    message = os.urandom(3000) + b"compressible " * 2000
    data = deflate_raw(message)
    wire = b""
    chunks = [data[i:i + 97] for i in range(0, len(data), 97)]
    for i, chunk in enumerate(chunks):
        wire += frame(2 if i == 0 else 0, chunk, fin=False, rsv=4 if i == 0 else 0)
        wire += frame(9, b"p%d" % i)
        wire += frame(0, b"", fin=False) * 20      # empty continuation frames
    wire += frame(0, b"")                          # the last frame is empty too
    c.send(wire)
    pongs = 0
    while True:
        fin, rsv, op, payload = c.next_frame()
        if op == 10:
            assert payload == b"p%d" % pongs
            pongs += 1
            continue
        break
    assert pongs == len(chunks)
    parts = [payload]
    while not fin:
        fin, _, _, payload = c.next_frame()
        parts.append(payload)
    got = b"".join(parts)
    if rsv == 4:
        got = zlib.decompressobj(-server_bits(agreed)).decompress(got + TAIL)
    assert (op, got) == (2, message)
    # An empty compressed first frame, thousands of empty continuations, then the data.
    c.send(frame(2, b"", fin=False, rsv=4) + frame(0, b"", fin=False) * 3000 + frame(0, deflate_raw(b"late")))
    assert c.message(wbits=server_bits(agreed))[:2] == (2, b"late")


# 2. Tails and final blocks where a sender should not put them

def test_tail_in_payload_and_final_blocks_followed_by_junk(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--compression", "on", "--shutdown-timeout", "1")
    # Without context takeover a payload that keeps its own 00 00 ff ff (or carries it in its
    # last fragment) decodes: the appended tail is an incomplete block nobody reads.
    c, agreed = upgrade(g.port)
    assert "client_no_context_takeover" in agreed
    inflater = zlib.decompressobj(-11)
    for n in range(3):
        full = deflate_raw(b"kept tail %d " % n * 50) + TAIL
        c.send(frame(1, full[:-4], fin=False, rsv=4) + frame(0, full[-4:]))
        assert c.message(inflater)[:2] == (1, b"kept tail %d " % n * 50)
    # With context takeover: a message ended by a BFINAL block followed by junk in the same frame
    # and by further fragments; the junk is ignored, and later messages (new streams) decode.
    c, agreed = upgrade(g.port, "permessage-deflate; client_max_window_bits")
    assert "client_no_context_takeover" not in agreed
    inflater = zlib.decompressobj(-11)
    f = zlib.compressobj(6, zlib.DEFLATED, -11)
    c.send(frame(1, f.compress(b"Hello") + f.flush(zlib.Z_FINISH) + b"\x00junk\xff\xff", rsv=4))
    assert c.message(inflater)[:2] == (1, b"Hello")
    f = zlib.compressobj(6, zlib.DEFLATED, -11)
    final = f.compress(b"Frag") + f.flush(zlib.Z_FINISH)
    c.send(frame(1, final, fin=False, rsv=4) + frame(9, b"!") + frame(0, b"junk" * 100, fin=False) + frame(0, b"\xff" * 9))
    assert c.message(inflater)[:2] == (1, b"Frag")
    compressor = zlib.compressobj(6, zlib.DEFLATED, -11)
    for n in range(3):
        data = compressor.compress(b"context message %d " % n * 30) + compressor.flush(zlib.Z_SYNC_FLUSH)
        c.send(frame(1, data[:-4], rsv=4))
        assert c.message(inflater)[:2] == (1, b"context message %d " % n * 30)


def test_final_block_keeps_the_window_with_context_takeover(gateway_factory):
    """Defect. RFC 7692 §7.2.3.4 allows a sender to end a message with a BFINAL block instead of
    the empty stored block, and §7.2.2 says that without client_no_context_takeover the server
    MUST decompress each new message using the LZ77 sliding window used to process the last
    compressed message. The gateway instead resets its inflater after a final block
    (PerMessageDeflate.endMessage: ownInflater.reset()), forgetting the window, so a next message
    that refers back into the previous one is failed with 1007 ("invalid distance too far back")."""
    g = gateway_factory("-c", "host=echo://", "--compression", "on", "--shutdown-timeout", "1")
    c, agreed = upgrade(g.port, "permessage-deflate; client_max_window_bits")
    assert agreed == "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11"
    inflater = zlib.decompressobj(-11)
    first = b"0123456789abcdefghij-the-window-" * 8
    f = zlib.compressobj(6, zlib.DEFLATED, -11)
    c.send(frame(1, f.compress(first) + f.flush(zlib.Z_FINISH), rsv=4))
    assert c.message(inflater)[:2] == (1, first)
    # The next message: a new DEFLATE stream that refers back into the first message's window.
    f = zlib.compressobj(6, zlib.DEFLATED, -11, zdict=first)
    second = f.compress(first[:200]) + f.flush(zlib.Z_SYNC_FLUSH)
    c.send(frame(1, second[:-4], rsv=4))
    assert c.message(inflater)[:2] == (1, first[:200])


# 3. UTF-8 split by inflate steps and fragments

def test_utf8_split_across_inflate_steps_and_fragments(echo):
    c, agreed = upgrade(echo.port)
    bits = server_bits(agreed)
    for before in range(65531, 65537):
        text = b"a" * before + "€𝄞é".encode() * 3 + b"b" * 70000
        data = deflate_raw(text)
        half = len(data) // 2
        # Whole, then split into one-byte fragments around the middle.
        c.send(cframe(1, data, rsv=4))
        assert c.message(wbits=bits)[:2] == (1, text)
        wire = cframe(1, data[:half], fin=False, rsv=4)
        wire += b"".join(cframe(0, data[i:i + 1], fin=False) for i in range(half, min(half + 200, len(data))))
        wire += cframe(0, data[half + 200:])
        c.send(wire)
        assert c.message(wbits=bits)[:2] == (1, text)
    # Invalid sequences straddling the 64 KiB step: 1007, whichever byte crosses it.
    for bad in [b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\xaf", b"\xe2\x82"]:
        for shift in range(len(bad)):
            c2, _ = upgrade(echo.port)
            text = b"a" * (65536 - shift) + bad + (b"z" if bad != b"\xe2\x82" or shift else b"")
            c2.send(cframe(1, deflate_raw(text), rsv=4))
            assert c2.close_code() == 1007, (bad, shift)


# 4. The max-message boundary, once inflated

@pytest.mark.parametrize("peer_kind", ["echo", "sink"])
def test_max_message_exactly_passes_one_more_byte_is_1009(gateway_factory, peer_factory, peer_kind):
    limit = 200_000
    sink = peer_factory("tcp", "sink") if peer_kind == "sink" else None
    host = sink.url if sink else "echo://"
    g = gateway_factory("-c", f"host={host}", "--compression", "on", "--max-message", str(limit),
                        "--shutdown-timeout", "1")
    for size, fill in [(limit, "zeros"), (limit, "random"), (3 * 65536, "zeros"), (limit - 1, "random")]:
        message = bytes(size) if fill == "zeros" else os.urandom(size)
        c, agreed = upgrade(g.port)
        c.send(cframe(2, deflate_raw(message), rsv=4))
        if sink:
            c.send(frame(1, deflate_raw(b"after"), rsv=4) + frame(8, struct.pack("!H", 1000)))
            assert c.close_code() == 1000, (size, fill)
            assert sink.output_line().split()[2] == str(size + 5)
        else:
            assert c.message(wbits=server_bits(agreed))[:2] == (2, message), (size, fill)
    for message in [bytes(limit + 1), os.urandom(limit + 1)]:
        c, _ = upgrade(g.port)
        c.send(cframe(2, deflate_raw(message), rsv=4))
        assert c.close_code() == 1009
        if sink:
            c.sock.close()
            assert int(sink.output_line().split()[2]) <= limit
    assert g.wait_for_log("exceeds 200000 bytes once decompressed")


def test_fragmented_message_within_max_message_is_not_refused_for_its_wire_size(gateway_factory):
    """Defect. README: "max-message applies to the inflated size". A client that streams a message
    in small fragments (Python websockets, Node's ws) sync-flushes each fragment, adding about ten
    bytes of DEFLATE framing per fragment; a 64 KiB message of 256-byte fragments then takes 68 092
    bytes on the wire. The gateway refuses it with 1009 "message exceeds 65536 bytes" although it
    inflates to exactly max-message (and the same message uncompressed passes):
    WebSocketReader.check caps the compressed bytes at compressedLimit (limit + limit/64 + 1 KiB),
    (67 584 here), which legitimate flushing senders exceed. Fragments of 512 bytes pass."""
    g = gateway_factory("-c", "host=echo://", "--compression", "on", "--max-message", "64k", "--shutdown-timeout", "1")
    message = os.urandom(64 << 10)

    async def send_fragmented(compressed):
        options = {} if compressed else {"compression": None}
        async with websockets.connect(g.url, max_size=None, **options) as ws:
            await ws.send([message[i:i + 256] for i in range(0, len(message), 256)])
            try:
                return await ws.recv() == message
            except websockets.ConnectionClosed as closed:
                return f"closed with {closed.rcvd.code}"
    assert asyncio.run(send_fragmented(False)) is True
    assert asyncio.run(send_fragmented(True)) is True


# 5. Bombs that are never read, resets mid-inflate and mid-send

def test_bomb_towards_a_peer_that_never_reads_pauses_without_spinning(gateway_factory, peer_factory):
    """The client sends decompression bombs as fast as the gateway takes them; the peer reads
    nothing. Inflating must stop (reading paused mid-message), the process must then be idle
    (no CPU over 2 s) with bounded memory, and a reset client must leave no descriptor behind."""
    hold = peer_factory("tcp", "hold")
    g = gateway_factory("-c", f"host={hold.url}", "--compression", "on", "--shutdown-timeout", "1")
    baseline_fds, baseline_rss = g.fd_count(), rss_kib(g.proc.pid)
    c, _ = upgrade(g.port)
    bomb = cframe(2, deflate_raw(bytes(16 << 20), level=9), rsv=4)
    c.sock.setblocking(False)
    pending, stalled, started = b"", 0, time.time()
    while stalled < 10 and time.time() - started < 10:
        try:
            pending = pending or bomb
            pending = pending[c.sock.send(pending):]
            stalled = 0
        except BlockingIOError:
            stalled += 1
            time.sleep(0.05)
    assert stalled >= 10, "the gateway never stopped reading"
    time.sleep(0.3)
    before = cpu_seconds(g.proc.pid)
    time.sleep(2)
    spent = cpu_seconds(g.proc.pid) - before
    assert spent < 0.2, f"{spent:.2f} s of CPU in 2 s while paused"
    grown = rss_kib(g.proc.pid) - baseline_rss
    assert grown < 16 << 10, f"RSS grew {grown} KiB"
    reset(c.sock)
    hold.stop()              # the peer's queued bytes can go nowhere: let it go too
    assert wait_for(lambda: g.fd_count() <= baseline_fds), (g.fd_count(), baseline_fds)
    assert g.proc.poll() is None


def test_resets_mid_inflate_and_mid_compressed_send_leave_nothing_behind(gateway_factory, peer_factory):
    sink = peer_factory("tcp", "sink")
    flood = peer_factory("tcp", "flood", str(256 << 20))
    to_sink = gateway_factory("-c", f"host={sink.url}", "--compression", "on", "--shutdown-timeout", "1")
    to_flood = gateway_factory("-c", f"host={flood.url}", "--compression", "on", "--shutdown-timeout", "1")
    baseline = to_sink.fd_count(), to_flood.fd_count()
    bomb = cframe(2, deflate_raw(bytes(8 << 20), level=9), rsv=4)
    for i in range(12):
        c, _ = upgrade(to_sink.port, "permessage-deflate; client_max_window_bits" if i % 2 else "permessage-deflate")
        c.send(bomb[:len(bomb) * (i + 1) // 13])      # reset somewhere inside the compressed payload
        time.sleep(0.01 * (i % 4))
        reset(c.sock)
        c, _ = upgrade(to_flood.port, "permessage-deflate; client_max_window_bits" if i % 2 else "permessage-deflate")
        c.next_frame()                                  # compressed frames are on their way
        time.sleep(0.02 * (i % 3))
        reset(c.sock)
    assert wait_for(lambda: (to_sink.fd_count(), to_flood.fd_count()) == baseline), \
        ((to_sink.fd_count(), to_flood.fd_count()), baseline)
    c, agreed = upgrade(to_sink.port)
    c.send(frame(1, deflate_raw(b"alive"), rsv=4) + frame(8, struct.pack("!H", 1000)))
    assert c.close_code() == 1000
    c, agreed = upgrade(to_flood.port)
    fin, rsv, op, payload = c.next_frame()
    assert rsv == 4 and set(zlib.decompressobj(-11).decompress(payload + TAIL)) <= {ord("z")}


ATTACKER = r"""
import base64, os, socket, struct, sys, zlib
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n" % key).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(4096)
c = zlib.compressobj(9, zlib.DEFLATED, -15)
data = (c.compress(bytes((16 << 20) - 1)) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
bomb = bytes([0xC2, 0xFF]) + struct.pack("!Q", len(data)) + bytes(4) + data
print("ready", flush=True)
while True:
    s.sendall(bomb * 16)
"""


def test_inflating_does_not_starve_other_connections(gateway_factory, peer_factory):
    """Architecture: "one wake-up reads at most 256 KiB from a stream endpoint, then the loop
    serves other descriptors". With compression that bound alone is not enough: 256 KiB of 16 KiB
    bombs is 16 messages of 16 MiB each, which used to be inflated and written to the peer within
    one turn of the loop, stalling every other connection for seconds. Payload handed on per
    wake-up is now bounded too, so a bystander is answered within a fraction of a second. The
    attacker runs in its own process, at a lower priority than this one, so that what is measured
    is the gateway's fairness and not this machine's scheduler."""
    import subprocess
    import sys
    sink = peer_factory("tcp", "sink")
    g = gateway_factory("-c", f"host={sink.url}", "--compression", "on", "--shutdown-timeout", "1")
    bystander = Client(g.port, timeout=30)
    bystander.handshake()
    attacker = subprocess.Popen([sys.executable, "-c", ATTACKER, str(g.port)], stdout=subprocess.PIPE, text=True,
                                preexec_fn=lambda: os.nice(10))
    assert attacker.stdout.readline().strip() == "ready"
    try:
        time.sleep(0.2)
        waits, started = [], time.time()
        while time.time() - started < 3 and len(waits) < 6:
            sent = time.time()
            bystander.send(frame(9, b"still there?"))
            while bystander.next_frame()[2] != 10:
                pass
            waits.append(time.time() - sent)
            time.sleep(0.05)
        assert max(waits) < 0.5, f"a bystander's pings waited {', '.join('%.2f' % w for w in waits)} s behind another client's inflating"
    finally:
        attacker.kill()
        attacker.wait()
        g.proc.kill()


# 6. Many lent inflaters at once

def test_many_connections_mid_message_with_lent_inflaters(gateway_factory):
    """40 clients (half told to keep no context, so their inflaters are lent per message) each
    send a fragmented compressed message in seven pieces, round-robin, so that all are
    mid-message — some mid-frame — at once; every echo must come back intact, three rounds."""
    g = gateway_factory("-c", "host=echo://", "--compression", "on", "--shutdown-timeout", "1")
    rnd = random.Random(7)
    clients = []
    for i in range(40):
        offer = "permessage-deflate" if i % 2 else "permessage-deflate; client_max_window_bits=15"
        c, agreed = upgrade(g.port, offer)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        keeps = "client_no_context_takeover" not in agreed
        clients.append((c, zlib.compressobj(6, zlib.DEFLATED, -11) if keeps else None, zlib.decompressobj(-11)))
    for round_ in range(3):
        expected, pieces = [], []
        for i, (c, compressor, _) in enumerate(clients):
            message = (b"client %d round %d " % (i, round_)) * 2000 + rnd.randbytes(5000)
            if compressor:
                data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
                data = data[:-4]
            else:
                data = deflate_raw(message)
            a, b = len(data) // 3, 2 * len(data) // 3
            wire = cframe(2, data[:a], fin=False, rsv=4) + frame(9, b"x") + cframe(0, data[a:b], fin=False) + cframe(0, data[b:])
            cuts = sorted(rnd.sample(range(1, len(wire)), 6))
            pieces.append([wire[x:y] for x, y in zip([0] + cuts, cuts + [len(wire)])])
            expected.append(message)
        for k in range(7):
            for i, (c, _, _) in enumerate(clients):
                c.send(pieces[i][k])
            time.sleep(0.005)
        for i, (c, _, inflater) in enumerate(clients):
            assert c.message(inflater)[:2] == (2, expected[i]), (round_, i)


# 7. A flood towards a slow reader

def test_json_flood_to_a_slow_compressed_reader_loses_nothing(gateway_factory):
    """A TCP peer writes newline-delimited JSON as fast as it can (random content, so it compresses
    only ~2:1); the client reads slowly. Backpressure must bound the gateway's memory and every
    line must arrive once, in order, intact — with context takeover both ways."""
    total = 8 << 20
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def lines():
        rnd, seq = random.Random(11), 0
        while True:
            yield b'{"seq":%d,"r":"%s"}' % (seq, rnd.randbytes(300).hex().encode())
            seq += 1

    def serve():
        conn, _ = listener.accept()
        sent, source = 0, lines()
        try:
            while sent < total:
                block = b"".join(next(source) + b"\n" for _ in range(100))
                conn.sendall(block)
                sent += len(block)
        except OSError:
            pass
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    g = gateway_factory("-c", f"host=tcp://127.0.0.1:{listener.getsockname()[1]}", "-c", "framing=newline",
                        "-c", "framing-config=lf", "--compression", "on", "--shutdown-timeout", "1")
    before = rss_kib(g.proc.pid)
    c, agreed = upgrade(g.port, "permessage-deflate; client_max_window_bits")
    assert agreed == "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11"
    inflater, expected, received, peak, count = zlib.decompressobj(-11), lines(), 0, 0, 0
    while received < total - 1000:
        op, data, compressed = c.message(inflater)
        assert op == 1, (op, data[:40])
        want = next(expected)
        assert data.rstrip(b"\n") == want, (received, data[:40], want[:40])
        received += len(want) + 1
        count += 1
        if count % 500 == 0:          # a slow reader: pauses long enough for queues to fill
            peak = max(peak, rss_kib(g.proc.pid) - before)
            time.sleep(0.05)
    assert peak < 12 << 10, f"RSS grew {peak} KiB while the client read slowly"
    listener.close()


# 8. Every window size zlib can make

def test_every_window_size_with_real_zlib_streams(gateway_factory):
    """server_max_window_bits 9-15 and client_max_window_bits 8-15 offered; the client compresses
    with context takeover at its window (zlib makes 9 when asked for 8), with repeats at distances
    just inside each window; the replies must inflate with exactly the announced server window."""
    g = gateway_factory("-c", "host=echo://", "--compression", "on", "--server-max-window-bits", "15",
                        "--client-max-window-bits", "15", "--shutdown-timeout", "1")
    rnd = random.Random(3)
    for server in range(9, 16):
        for client in range(8, 16):
            c, agreed = upgrade(g.port, f"permessage-deflate; server_max_window_bits={server}; client_max_window_bits={client}")
            assert agreed == f"permessage-deflate; server_max_window_bits={server}; client_max_window_bits={client}"
            compressor = zlib.compressobj(9, zlib.DEFLATED, -max(9, client))
            inflater = zlib.decompressobj(-server)
            for _ in range(2):
                near = rnd.randbytes((1 << max(9, client)) - 300)
                far = rnd.randbytes((1 << server) - 300)
                message = near + near[:250] + far + far[:250] + near[-100:]
                data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
                c.send(cframe(2, data[:-4], rsv=4))
                assert c.message(inflater)[:2] == (2, message), (server, client)
            c.close()
    # The configured client window of 8 bits (answered as 8): a zlib client's 9-bit stream decodes.
    g = gateway_factory("-c", "host=echo://", "--compression", "on", "--server-max-window-bits", "9",
                        "--client-max-window-bits", "8", "--shutdown-timeout", "1")
    c, agreed = upgrade(g.port, "permessage-deflate; client_max_window_bits")
    assert agreed == "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8"
    compressor, inflater = zlib.compressobj(9, zlib.DEFLATED, -9), zlib.decompressobj(-9)
    for _ in range(3):
        block = rnd.randbytes(200)
        message = block * 3 + rnd.randbytes(1000) + block
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        c.send(cframe(2, data[:-4], rsv=4))
        assert c.message(inflater)[:2] == (2, message)


# 9. SIGHUP while compressed connections are open

def test_sighup_reload_with_compressed_connections_mid_message(tmp_path):
    config = tmp_path / "ws.ini"

    def write(core):
        config.write_text("[core]\nport = 0\nlisten = 127.0.0.1\nping = 0\nshutdown-timeout = 1\n"
                          + core + "\n[backend]\nhost = echo://\n")
    write("compression = on\nserver-max-window-bits = 15\nclient-max-window-bits = 15\n")
    g = Gateway([str(config)])
    try:
        keeping, agreed1 = upgrade(g.port, "permessage-deflate; client_max_window_bits")
        lending, agreed2 = upgrade(g.port, "permessage-deflate; client_no_context_takeover")
        assert "client_no_context_takeover" not in agreed1 and "client_no_context_takeover" in agreed2
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        inflater1, inflater2 = zlib.decompressobj(-15), zlib.decompressobj(-15)
        message = os.urandom(3000) * 30
        data1 = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        data2 = deflate_raw(message)
        keeping.send(cframe(2, data1[:1000], fin=False, rsv=4))
        lending.send(cframe(2, data2[:1000], fin=False, rsv=4))
        time.sleep(0.1)
        for core, expect in [("compression = on\nserver-max-window-bits = 9\nclient-max-window-bits = 8\ncompression-level = 1\n"
                              "server-no-context-takeover = yes\nclient-no-context-takeover = yes\n",
                              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                              "server_max_window_bits=9; client_max_window_bits=8"),
                             ("compression = off\n", None),
                             ("compression = 100\n", "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11")]:
            g.lines.clear()
            write(core)
            g.proc.send_signal(signal.SIGHUP)
            assert g.wait_for_log("configuration reloaded")
            fresh, agreed = upgrade(g.port, "permessage-deflate; client_max_window_bits")
            assert agreed == expect
            text = b"a new connection " * 20
            fresh.send(frame(1, deflate_raw(text, wbits=9), rsv=4) if agreed else frame(1, text))
            assert fresh.message(wbits=server_bits(agreed) if agreed else 15)[:2] == (1, text)
        keeping.send(cframe(0, data1[1000:]))
        lending.send(cframe(0, data2[1000:]))
        assert keeping.message(inflater1)[:2] == (2, message)
        assert lending.message(inflater2)[:2] == (2, message)
        for n in range(3):              # the old connection's windows both ways are intact
            text = b"after the reload %d " % n * 40
            data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
            keeping.send(frame(1, data[:-4], rsv=4))
            assert keeping.message(inflater1)[:2] == (1, text)
    finally:
        assert g.stop() == 0


# 10. Malformed offers

def test_malformed_extension_headers_get_101_or_a_clean_refusal(echo):
    offers = {
        "huge parameter": ["permessage-deflate; " + "x" * 12000],
        "1000 offers": [", ".join(["permessage-deflate; server_max_window_bits=%d" % (8 + i % 8) for i in range(1000)])[:15000]],
        "90 header lines": ["permessage-deflate; bogus"] * 90 + ["permessage-deflate"],
        "NUL in name": ["permessage-deflate\x00; client_max_window_bits"],
        "NUL in value": ["permessage-deflate; client_max_window_bits=\x0015"],
        "control bytes": ["permessage-deflate;\x01\x02\x7f client_max_window_bits"],
        "high bytes": ["permessage-deflate; \xff\xfe=\xe9"],
        "unterminated quote": ["permessage-deflate; a=\"" + "\\" * 5000],
        "quotes": ["\"" * 10000],
        "semicolons": [";" * 12000],
        "commas": ["," * 12000],
        "huge bits": ["permessage-deflate; client_max_window_bits=99999999999999999999999999"],
        "signed bits": ["permessage-deflate; client_max_window_bits=-9, permessage-deflate; server_max_window_bits=+9"],
        "non-ASCII digits": ["permessage-deflate; client_max_window_bits=\u0661\u0665".encode().decode("latin-1")],
        "bare CR": ["permessage-deflate\r; client_max_window_bits"],
        "folded": ["permessage-deflate;\r\n client_max_window_bits"],
        "empty": [""],
    }
    for name, values in offers.items():
        c = Client(echo.port)
        c.send(request()[:-2] + "".join(f"Sec-WebSocket-Extensions: {v}\r\n" for v in values).encode("latin-1") + b"\r\n")
        status, headers = c.read_response()
        assert status in (101, 400, 431), (name, status)
        if status == 101:
            agreed = headers.get("sec-websocket-extensions")
            assert agreed is None or agreed.startswith("permessage-deflate"), (name, agreed)
            c.send(frame(1, b"plain works"))
            assert c.message(wbits=server_bits(agreed or ""))[:2] == (1, b"plain works"), name
        c.close()
        assert echo.proc.poll() is None, name


# 11. Garbage after good messages

@pytest.mark.parametrize("offer", ["permessage-deflate", "permessage-deflate; client_max_window_bits"])
@pytest.mark.parametrize("opcode,code", [(1, 1007), (2, 1002)])
def test_undecodable_data_after_good_messages(gateway_factory, peer_factory, offer, opcode, code):
    sink = peer_factory("tcp", "sink")
    g = gateway_factory("-c", f"host={sink.url}", "--compression", "on", "--shutdown-timeout", "1")
    c, agreed = upgrade(g.port, offer)
    keeps = "client_no_context_takeover" not in agreed
    compressor = zlib.compressobj(6, zlib.DEFLATED, -11)
    good = b""
    for n in range(5):
        text = b"good message %d; " % n * 100
        data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH) if keeps else deflate_raw(text) + TAIL
        c.send(frame(opcode, data[:-4], rsv=4))
        good += text
    # A valid start, then a block type 3 (reserved) in the second fragment.
    data = deflate_raw(b"starts well " * 50)
    c.send(frame(opcode, data, fin=False, rsv=4) + frame(9, b"") + frame(0, b"\xff\xff\xff\xff"))
    assert c.close_code() == code
    c.sock.close()
    line = sink.output_line()
    assert line.startswith("SHA256") and int(line.split()[2]) >= len(good)
    c, agreed = upgrade(g.port, offer)
    c.send(frame(1, deflate_raw(b"next client"), rsv=4) + frame(8, struct.pack("!H", 1000)))
    assert c.close_code() == 1000


# 12. Sending without context takeover

def test_no_context_takeover_sends_incompressible_messages_uncompressed(gateway_factory):
    """README: without context takeover, a message that compressing would not shrink is sent
    uncompressed — judged when its first 64 KiB frame is due (65536 random bytes used to go out
    as 65862). A larger message is committed to compression by then and may grow, by at most the
    cost of coding random bytes as literals (about 0.5 %), never more."""
    g = gateway_factory("-c", "host=echo://", "--compression", "on", "--server-no-context-takeover", "yes",
                        "--shutdown-timeout", "1")
    c, agreed = upgrade(g.port)
    assert agreed.startswith("permessage-deflate; server_no_context_takeover")
    for size in [60000, 65536, 300_000]:
        message = os.urandom(size)
        c.send(cframe(2, message))
        frames = []
        while True:
            fin, rsv, op, payload = c.next_frame()
            frames.append((rsv, len(payload)))
            if fin:
                break
        wire = sum(n for _, n in frames)
        if size <= 65536:
            assert frames[0][0] == 0 and wire == size, f"{size}-byte random message sent as {frames[:3]}... ({wire} bytes)"
        else:
            assert wire <= size * 1.006, f"{size}-byte random message sent as {wire} bytes"
