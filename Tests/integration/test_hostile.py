"""Regressions from an adversarial pass over the connection core: parties that stall, reset, flood
or linger at the worst moment, and an operator who lowers a limit under load. Each test plays the
hostile side with plain sockets and checks what a user would notice: the close code, bytes that
arrive (or not), the latency of a bystander, the gateway's memory."""
import os
import resource
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import Gateway, rss_kib, status_kib
from test_robustness import reset
from wsraw import RawClient, frame, request


# Shared helpers

def fast_frame(opcode, payload, fin=True):
    """A client frame masked with a zero key (the payload goes as is): cheap for megabytes."""
    return frame(opcode, b"", fin=fin, key=b"\0\0\0\0", length=len(payload)) + payload


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0]


class FrameReader:
    """Server frames off a client socket (whose timeout it sets), without wsraw's copying of the
    whole buffer per frame."""

    def __init__(self, client, timeout=5):
        self.sock, self.buf, self.pos = client.sock, bytearray(client.buf), 0
        client.buf = b""
        self.sock.settimeout(timeout)

    def _need(self, n):
        while len(self.buf) - self.pos < n:
            if self.pos > 1 << 20:
                del self.buf[:self.pos]
                self.pos = 0
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def next(self):
        """(opcode, payload) of the next frame."""
        self._need(2)
        n, head = self.buf[self.pos + 1] & 0x7F, 2
        if n == 126:
            self._need(4)
            n, head = struct.unpack("!H", self.buf[self.pos + 2:self.pos + 4])[0], 4
        elif n == 127:
            self._need(10)
            n, head = struct.unpack("!Q", self.buf[self.pos + 2:self.pos + 10])[0], 10
        self._need(head + n)
        opcode = self.buf[self.pos] & 0x0F
        payload = bytes(self.buf[self.pos + head:self.pos + head + n])
        self.pos += head + n
        return opcode, payload

    def until_close(self):
        """The data payloads before the server's Close, and the Close's code."""
        messages = []
        while True:
            opcode, payload = self.next()
            if opcode == 8:
                return messages, close_code(payload)
            messages.append(payload)


class Streamer(threading.Thread):
    """Sends one whole message again and again from its own thread (so a gateway that stops
    reading blocks it, not the test) until stopped or the connection fails."""

    def __init__(self, sock, message):
        super().__init__(daemon=True)
        self.sock, self.message = sock, message
        self.lock = threading.Lock()  # held while a message is on its way: frames never interleave
        self.sent = 0
        self.last_progress = time.monotonic()
        self.stopping = threading.Event()
        self.start()

    def send_one(self):
        self.sock.sendall(self.message)

    def run(self):
        try:
            while not self.stopping.is_set():
                with self.lock:
                    self.send_one()
                self.sent += 1
                self.last_progress = time.monotonic()
        except OSError:
            pass

    def send(self, data):
        """Sends between two of the streamed messages."""
        with self.lock:
            self.sock.sendall(data)

    def wait_blocked(self, settle=0.3, timeout=10):
        """Waits until the gateway has stopped taking the messages for `settle` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last_progress < settle:
            assert time.monotonic() < deadline, "the gateway never stopped reading"
            time.sleep(0.05)

    def stop(self, timeout=2):
        """Stops after the message in flight; True if that message got through within `timeout`."""
        self.stopping.set()
        self.join(timeout)
        return not self.is_alive()


class FileFlood(Streamer):
    """Streams a file again and again with sendfile: the sender copies nothing, so it outpaces a
    reader that does."""

    def __init__(self, sock, path):
        self.path = path
        super().__init__(sock, None)

    def send_one(self):
        with open(self.path, "rb") as f:
            self.sock.sendfile(f)


@pytest.fixture
def tcp_peer():
    """A TCP listener the test plays the peer on: (socket, tcp:// address for host=)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener, f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def bridged_client(g, listener):
    """An upgraded client and the peer-side socket the gateway connected for it."""
    c = RawClient(g.port)
    c.handshake()
    listener.settimeout(5)
    peer, _ = listener.accept()
    return c, peer


def client_stalled_behind_a_peer_that_resets(gateway_factory, tcp_peer):
    """A client streams to a peer that reads nothing until the gateway stops reading the client;
    then the peer resets. Returns the client, its streamer and the gateway's next frame to it."""
    listener, url = tcp_peer
    g = gateway_factory("-c", f"host={url}", "-c", "framing=binary", "-k", "0")
    c, peer = bridged_client(g, listener)
    streamer = Streamer(c.sock, fast_frame(2, b"x" * 65536))
    streamer.wait_blocked()
    reset(peer)
    return c, streamer, FrameReader(c).next()


# 1. Echo replies the client never reads count against --buffer-memory.

def test_unread_echo_replies_are_held_within_the_buffer_budget(gateway_factory):
    """Clients that send a large message to echo:// and never read the reply: the replies count
    against buffer-memory, so the largest holder is let go and the gateway's memory stays bounded."""
    budget_mib, clients = 16, 12
    g = gateway_factory("-c", "host=echo://", "-k", "0", "--buffer-memory", f"{budget_mib}M",
                        "--max-message", "16M")
    before = rss_kib(g.proc.pid)
    message = fast_frame(2, os.urandom(15 << 20))
    held = []
    for _ in range(clients):
        c = RawClient(g.port)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.handshake()
        try:
            c.send(message)
        except OSError:
            pass  # reset as the largest holder while still sending: the budget at work
        held.append(c)
        time.sleep(0.05)
    time.sleep(1)
    grown = rss_kib(g.proc.pid) - before
    assert grown < (budget_mib + 2 * clients + 30) << 10, f"RSS grew by {grown} KiB"
    assert "resetting the connection" in g.log() or "closing with 1009" in g.log()


# 2. A UDP peer that fails while the gateway is not reading it.

def test_udp_peer_error_while_paused_closes_the_client_with_1011(gateway_factory):
    """A UDP peer vanishes while its reading is paused (the client is not reading): the ICMP error
    that follows is reported to the client as Close 1011, not swallowed with the peer socket."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        g = gateway_factory("-c", f"host=udp://127.0.0.1:{udp.getsockname()[1]}", "-c", "framing=binary",
                            "-k", "0")
        c = RawClient(g.port)
        c.handshake()
        c.send(frame(2, b"hello"))
        udp.settimeout(5)
        _, gateway_address = udp.recvfrom(65536)
        for i in range(1200):  # 9.4 MiB towards a client that does not read: the gateway pauses
            udp.sendto(bytes([i % 256]) * 8192, gateway_address)
            if i % 16 == 15:
                time.sleep(0.002)
        time.sleep(0.5)
    finally:
        udp.close()  # the peer goes away
    c.send(frame(2, b"to a peer that is gone"))  # draws ICMP port unreachable
    time.sleep(0.3)
    try:
        messages, code = FrameReader(c, timeout=3).until_close()
    except socket.timeout:
        raise AssertionError("no Close: the connection lives on with its peer gone")
    assert code == 1011, f"close {code} after {len(messages)} messages"
    assert g.wait_for_log("peer error")


def test_udp_peer_flooding_after_our_close_costs_no_memory(gateway_factory):
    """The gateway has sent Close (idle timeout) and waits for the client's, which never comes,
    while the UDP peer floods: what it sends can no longer reach the client and must not pile up."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        g = gateway_factory("-c", f"host=udp://127.0.0.1:{udp.getsockname()[1]}", "-c", "framing=binary",
                            "-k", "0", "--idle-timeout", "1")
        c = RawClient(g.port)
        c.handshake()
        c.send(frame(2, b"hello"))
        udp.settimeout(5)
        _, gateway_address = udp.recvfrom(65536)
        _, opcode, payload = c.recv_frame()  # Close 1001 after a second of silence; never answered
        assert opcode == 8 and close_code(payload) == 1001
        before = rss_kib(g.proc.pid)
        datagram = os.urandom(65507)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # about 1 GB offered, if the loopback takes it
            for _ in range(64):
                try:
                    udp.sendto(datagram, gateway_address)
                except OSError:
                    pass
        grown = rss_kib(g.proc.pid) - before
        assert grown < 20 << 10, f"RSS grew by {grown} KiB while the Close was unanswered"
    finally:
        udp.close()


def test_partial_frames_keep_their_buffers_in_the_pool(gateway_factory):
    """Clients that send a frame a few bytes at a time: each read's few bytes stay in the
    connection's pool block (they slide to its front) instead of moving to a larger malloc'd one."""
    g = gateway_factory("-c", "host=echo://", "-k", "0")
    clients = []
    for _ in range(300):
        c = RawClient(g.port)
        c.handshake()
        clients.append(c)
    head = frame(2, os.urandom(70000))
    for c in clients:
        c.send(head[:5])
    time.sleep(0.5)
    before = status_kib(g.proc.pid, "VmSize")
    for c in clients:
        c.send(head[5:6])
    time.sleep(0.5)
    grown = status_kib(g.proc.pid, "VmSize") - before
    assert grown < 300 * 32, f"address space grew by {grown} KiB for 300 one-byte reads"
    for c in clients:  # the rest of the frame still arrives whole
        c.send(head[6:])
    for c in clients:
        c.close()


# 3. A peer reset with bytes queued to it is an error.

def test_peer_reset_with_bytes_queued_to_it_closes_with_1011(gateway_factory, tcp_peer):
    """The peer resets while the gateway holds bytes for it: the client is told 1011 (peer error),
    not 1000 as for an orderly end."""
    c, streamer, (opcode, payload) = client_stalled_behind_a_peer_that_resets(gateway_factory, tcp_peer)
    streamer.stopping.set()
    assert opcode == 8
    assert close_code(payload) == 1011, payload


# 4. What the peer sent before its reset still reaches the client.

def test_peer_last_words_before_a_reset_reach_the_client(gateway_factory, tcp_peer):
    """A peer says BYE and closes while the client is still streaming to it, so its close is a reset
    that the gateway's next write finds first: the BYE read before it must reach the client."""
    listener, url = tcp_peer
    g = gateway_factory("-c", f"host={url}", "-c", "framing=newline", "-c", "framing-config=lf", "-k", "0")
    lost = []
    for attempt in range(20):
        c, peer = bridged_client(g, listener)
        streamer = Streamer(c.sock, frame(2, b"q" * 1000))
        time.sleep(0.05)
        peer.setblocking(False)
        keep_up_until = time.monotonic() + 0.1
        while time.monotonic() < keep_up_until:  # keeps the gateway's queue for the peer empty
            try:
                peer.recv(1 << 20)
            except BlockingIOError:
                pass
        peer.setblocking(True)
        peer.sendall(b"BYE\n")
        peer.close()  # unread bytes: the kernel sends a reset right after BYE
        messages, code = FrameReader(c).until_close()
        streamer.stop()
        c.close()
        if b"BYE\n" not in messages:
            lost.append((attempt, code))
    assert not lost, f"BYE lost in (attempt, close code): {lost}"


# 5. A client paused for a peer that goes away is read again.

def test_client_paused_for_a_peer_that_resets_closes_cleanly(gateway_factory, tcp_peer):
    """A client the gateway stopped reading (its peer took nothing) is read again once the peer
    resets: the message it was sending goes through, its Close is answered and the TCP connection
    ends with a FIN within a second, not a reset at the close timeout."""
    c, streamer, (opcode, payload) = client_stalled_behind_a_peer_that_resets(gateway_factory, tcp_peer)
    assert opcode == 8
    assert streamer.stop(1.0), "the gateway did not read the client again after its peer went away"
    c.sock.settimeout(1.0)
    c.send(frame(8, payload[:2]))
    try:
        rest = c.sock.recv(65536)
    except ConnectionResetError:
        raise AssertionError("the gateway reset the connection instead of closing it")
    except socket.timeout:
        raise AssertionError("the connection was still open a second after the client's Close")
    assert rest == b"", rest


# 6. A tls:// peer's pending handshake does not let the client's bytes pile up.

def test_client_is_not_read_while_a_tls_peer_handshake_is_pending(gateway_factory, tcp_peer):
    """A tls:// peer accepts but never answers the TLS handshake while the client, waiting for its
    101, streams: the gateway stops reading the client instead of buffering all it sends."""
    listener, _ = tcp_peer
    g = gateway_factory("-c", f"host=tls://127.0.0.1:{listener.getsockname()[1]}", "-c", "framing=binary",
                        "--peer-tls-verify", "no", "--connect-timeout", "10", "-k", "0")
    c = socket.create_connection(("127.0.0.1", g.port))
    c.sendall(request())
    listener.settimeout(5)
    peer, _ = listener.accept()  # and never a byte of TLS
    time.sleep(0.2)
    before = rss_kib(g.proc.pid)  # with the TLS session set up
    block = b"\x82" * (1 << 20)
    c.settimeout(0.25)
    sent, until = 0, time.monotonic() + 2
    while time.monotonic() < until and sent < 256 << 20:
        try:
            sent += c.send(block)
        except socket.timeout:
            pass
    time.sleep(0.3)
    grown = rss_kib(g.proc.pid) - before
    reset(c)
    peer.close()
    assert grown < 8 << 10, f"RSS grew by {grown} KiB while the client sent {sent >> 20} MiB"


# 7. Keepalive does not blame a client for its peer's slowness.

def test_keepalive_spares_a_client_paused_by_backpressure(gateway_factory, tcp_peer):
    """With -k 1, a peer stops reading for 3 s: the live client (which answers pings) is paused,
    cannot send its pong, and must not be closed for it; all it sent reaches the peer."""
    listener, url = tcp_peer
    g = gateway_factory("-c", f"host={url}", "-c", "framing=binary", "-k", "1")
    c, peer = bridged_client(g, listener)
    start = time.monotonic()
    # Made blocking before the streamer starts: changing a socket's timeout while another thread
    # is in sendall on it can make that sendall fail with EAGAIN.
    reader = FrameReader(c, timeout=None)
    streamer = Streamer(c.sock, fast_frame(2, b"x" * 65536))
    seen = []

    def answer_pings():  # as a browser does
        try:
            while True:
                opcode, payload = reader.next()
                seen.append((round(time.monotonic() - start, 2), opcode, payload[:2]))
                if opcode == 9:
                    streamer.send(frame(10, payload))
                if opcode == 8:
                    return
        except OSError:
            pass

    threading.Thread(target=answer_pings, daemon=True).start()
    time.sleep(0.5)
    streamer.stopping.set()  # the message in flight goes when the peer reads again
    time.sleep(2.5)  # the peer reads nothing for 3 s in all
    peer.settimeout(1.0)
    received = 0
    try:
        while data := peer.recv(1 << 20):
            received += len(data)
    except socket.timeout:
        pass
    assert streamer.stop(1.0), "the client's last message never went through"
    assert not [s for s in seen if s[1] == 8], f"the client was closed: {seen}"
    assert received == streamer.sent * 65536, (received, streamer.sent)
    assert "keepalive" not in g.log()


# 8. A lingering endpoint reads within the same budget as any other.

def test_a_flood_after_close_does_not_stall_other_connections(echo_gateway, tmp_path):
    """Two clients get Close 1002 and then flood without end while the gateway lingers for their FIN:
    the discarding is budgeted per wake-up, so another client's echo round trip stays short."""
    zeros = tmp_path / "zeros"
    zeros.write_bytes(bytes(8 << 20))
    control = RawClient(echo_gateway.port)
    control.handshake()
    replies = FrameReader(control, timeout=5)
    floods = []
    for _ in range(2):
        flooder = RawClient(echo_gateway.port)
        flooder.handshake()
        flooder.send(frame(2, b"bad", rsv=4))  # a protocol error: 1002, then the gateway lingers
        floods.append(FileFlood(flooder.sock, zeros))
    try:
        time.sleep(0.3)
        worst, until = 0.0, time.monotonic() + 2
        while time.monotonic() < until:
            sent_at = time.monotonic()
            control.send(frame(1, b"ping?"))
            try:
                assert replies.next() == (1, b"ping?")
            except socket.timeout:
                raise AssertionError("no echo for 5 s during the flood")
            worst = max(worst, time.monotonic() - sent_at)
            time.sleep(0.05)
    finally:
        for flood in floods:
            flood.stopping.set()
            flood.sock.shutdown(socket.SHUT_RDWR)  # wakes a sendfile in progress
            flood.join(2)
            flood.sock.close()
    assert worst < 0.05, f"worst round trip {worst * 1000:.0f} ms during the flood"


# 9. Lingering endpoints count against max-connections.

def test_lingering_refused_clients_do_not_lock_out_a_new_client(gateway_factory):
    """Clients refused with 400 that keep their sockets open linger on the gateway's descriptors:
    at max-connections the oldest of them makes room, so with descriptors sized for
    max-connections (here 64 for 20) a legitimate client still upgrades."""
    g = gateway_factory("-c", "host=echo://", "-k", "0", "--max-connections", "20")
    resource.prlimit(g.proc.pid, resource.RLIMIT_NOFILE, (64, 64))
    refused = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", g.port), timeout=2)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            refused.append(s)
        time.sleep(0.3)
        c = RawClient(g.port, timeout=3)
        try:
            c.handshake()
        except (OSError, EOFError) as e:
            raise AssertionError(f"a new client could not upgrade: {e!r}; gateway holds {g.fd_count()} descriptors")
        c.send(frame(1, b"hi"))
        assert c.recv_frame() == (True, 1, b"hi")
    finally:
        for s in refused:
            s.close()


# 10. A busy unix:// peer is waited for, as a busy TCP peer is.

def test_clients_wait_for_a_unix_peer_with_a_full_backlog(gateway_factory):
    """A unix:// peer whose listen backlog is full (connect fails with EAGAIN, where TCP would
    retry the SYN) and that accepts half a second later: every client gets its 101, none a 502."""
    path = f"/tmp/websocksy-hostile-{os.getpid()}.sock"
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    accepted = []
    try:
        g = gateway_factory("-c", f"host=unix://{path}", "-c", "framing=binary", "--connect-timeout", "10",
                            "-k", "0")
        clients = [RawClient(g.port, timeout=5) for _ in range(5)]
        for c in clients:
            c.send(request())
        time.sleep(0.8)  # the peer gets to its accept loop late

        def accept_all():
            try:
                while True:
                    accepted.append(listener.accept()[0])
            except OSError:
                pass  # shut down at the end of the test

        threading.Thread(target=accept_all, daemon=True).start()
        statuses = [c.read_response()[0] for c in clients]
        assert statuses == [101] * 5
    finally:
        for s in accepted:
            s.close()
        listener.shutdown(socket.SHUT_RDWR)  # ends the accept loop
        listener.close()
        os.unlink(path)


# 11. A buffer budget lowered by SIGHUP does not stall anyone.

def test_lowering_the_buffer_budget_by_sighup_stalls_no_connection(tmp_path):
    """Three clients hold fragmented messages for echo:// (3.5, 8 and 1 MiB) when a reload lowers
    buffer-memory from 64M to 4M: the one that goes on sending gets its echo or a 1009 at once."""
    config = tmp_path / "budget.ini"

    def write_config(budget):
        config.write_text(f"[core]\nport = 0\nlisten = 127.0.0.1\nping = 0\nbuffer-memory = {budget}\n"
                          "[backend]\nhost = echo://\n")

    write_config("64M")
    g = Gateway([str(config)])
    try:
        chunk = fast_frame(0, b"h" * 65536, fin=False)

        def holding(fragments):
            c = RawClient(g.port)
            c.handshake()
            c.send(fast_frame(2, b"h" * 65536, fin=False) + chunk * (fragments - 1))
            return c

        holders = [holding(56), holding(128)]
        a = holding(16)
        time.sleep(0.3)
        write_config("4M")
        g.proc.send_signal(signal.SIGHUP)
        assert g.wait_for_log("configuration reloaded")
        a.send(chunk + fast_frame(0, b"a" * 1000))
        try:
            opcode, payload = FrameReader(a, timeout=2).next()
        except socket.timeout:
            raise AssertionError("no echo and no close within 2 s of the message's last fragment")
        if opcode == 8:
            assert close_code(payload) == 1009
        else:
            assert (opcode, len(payload)) == (2, 17 * 65536 + 1000)
        for c in [*holders, a]:
            c.close()
    finally:
        g.stop()
