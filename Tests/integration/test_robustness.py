"""Slow, hostile and dying parties: backpressure without spinning, fairness under a flood, bounded
memory, a peer that half-closes, a client that vanishes mid-connect. Each test measures what a user
would notice (CPU time of the gateway, upgrade latency of a bystander, RSS, bytes delivered)."""
import os
import resource
import signal
import socket
import struct
import threading
import time

from conftest import rss_kib
from wsraw import RawClient, close_body, frame, request

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_share_over(pid, seconds=2.0):
    """Share of one core the process used over the next `seconds`."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def reset(sock):
    """Closes with a TCP reset (SO_LINGER 0), as a crashing client or a middlebox does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_for_fds(gateway, count, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline and gateway.fd_count() != count:
        time.sleep(0.05)
    return gateway.fd_count()


def flood_until_blocked(sock, data, settle=0.5, limit=64 << 20):
    """Sends `data` again and again until the gateway has stopped reading for `settle` seconds."""
    sock.setblocking(False)
    sent, last_progress = 0, time.time()
    while time.time() - last_progress < settle and sent < limit:
        try:
            sent += sock.send(data)
            last_progress = time.time()
        except BlockingIOError:
            time.sleep(0.01)
    sock.setblocking(True)
    return sent


def blackhole():
    """A TCP port whose accept queue is full: a connect to it stays pending (the SYN is dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.1)
    return port, [listener, *fillers]


# 1. Backpressure pauses reading by dropping EPOLLIN: no busy loop while paused.

def test_echo_client_that_does_not_read_costs_no_cpu_and_is_cleaned_up_after_a_reset(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "-k", "0")
    baseline = g.fd_count()
    c = RawClient(g.port)
    c.handshake()
    sent = flood_until_blocked(c.sock, frame(2, b"e" * 65536))
    assert sent > 1 << 20, "the gateway stopped reading before its queue was over the high-water mark"
    assert cpu_share_over(g.proc.pid) < 0.05
    reset(c.sock)
    assert wait_for_fds(g, baseline) == baseline
    assert cpu_share_over(g.proc.pid, 1.0) < 0.05


def test_peer_that_does_not_read_costs_no_cpu(gateway_factory, peer_factory):
    p = peer_factory("tcp", "hold")
    g = gateway_factory("-c", f"host={p.url}", "-c", "framing=binary", "-k", "0")
    baseline = g.fd_count()
    c = RawClient(g.port)
    c.handshake()
    flood_until_blocked(c.sock, frame(2, b"h" * 65536))
    assert cpu_share_over(g.proc.pid) < 0.05
    reset(c.sock)
    assert wait_for_fds(g, baseline) == baseline


# 2. Fairness: a client flooding tiny frames does not freeze the loop.

def test_a_second_client_upgrades_quickly_while_another_floods_empty_fragments(gateway_factory, peer_factory):
    p = peer_factory("tcp", "sink")
    g = gateway_factory("-c", f"host={p.url}", "-c", "framing=binary", "-k", "0")
    flooder = RawClient(g.port)
    flooder.handshake()
    flooder.send(frame(2, b"", fin=False))
    empties = frame(0, b"", fin=False) * 20000 + frame(0, b"x", fin=False) * 20000
    stop = threading.Event()

    def flood():
        try:
            while not stop.is_set():
                flooder.sock.sendall(empties)
        except OSError:
            pass

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        latencies = []
        for _ in range(5):
            start = time.monotonic()
            c = RawClient(g.port)
            c.handshake()
            latencies.append(time.monotonic() - start)
            c.close()
        assert min(latencies) < 0.1, latencies
        assert sorted(latencies)[2] < 0.1, latencies
    finally:
        stop.set()
        reset(flooder.sock)
        t.join(5)


# 3. Replies the gateway queues on its own count against the high-water mark.

def test_a_million_unread_pings_keep_memory_bounded(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "-k", "0")
    c = RawClient(g.port)
    c.handshake()
    before = rss_kib(g.proc.pid)
    pings = frame(9, b"p" * 100, key=b"\x01\x02\x03\x04") * 100_000
    sent = 0
    c.sock.settimeout(3)
    try:
        for _ in range(10):
            c.sock.sendall(pings)
            sent += 100_000
    except socket.timeout:
        pass  # the gateway stopped reading: exactly what bounds its memory
    # Every ping read is answered (a syscall each): wait until the backlog is worked off.
    deadline = time.time() + 20
    while time.time() < deadline and cpu_share_over(g.proc.pid, 0.5) > 0.05:
        pass
    grown = rss_kib(g.proc.pid) - before
    assert grown < 8 << 10, f"RSS grew by {grown} KiB after {sent} unread pings"
    assert cpu_share_over(g.proc.pid, 1.0) < 0.05


# 4. A client that vanishes while its peer is still connecting.

def test_client_reset_during_a_pending_peer_connect(gateway_factory):
    port, holders = blackhole()
    try:
        g = gateway_factory("-c", f"host=tcp://127.0.0.1:{port}", "--connect-timeout", "30", "-k", "0")
        baseline = g.fd_count()
        c = RawClient(g.port)
        c.send(request())
        time.sleep(0.3)
        assert g.fd_count() == baseline + 2  # the client and the pending connect
        reset(c.sock)
        time.sleep(0.3)
        assert cpu_share_over(g.proc.pid) < 0.05
        assert wait_for_fds(g, baseline) == baseline
    finally:
        for s in holders:
            s.close()


def test_shutdown_answers_clients_waiting_for_their_peer_at_once(gateway_factory):
    port, holders = blackhole()
    try:
        g = gateway_factory("-c", f"host=tcp://127.0.0.1:{port}", "--connect-timeout", "30",
                            "--shutdown-timeout", "20")
        c = RawClient(g.port)
        c.send(request())
        time.sleep(0.3)
        start = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        status, _ = c.read_response()
        assert status == 503
        c.close()
        g.proc.wait(5)
        assert time.monotonic() - start < 2
    finally:
        for s in holders:
            s.close()


# 5. A peer that half-closes still receives what the client sends.

def test_messages_reach_a_peer_that_has_half_closed(gateway_factory, peer_factory):
    p = peer_factory("tcp", "halfclose", "bye\n")
    g = gateway_factory("-c", f"host={p.url}", "-c", "framing=newline", "-c", "framing-config=lf", "-k", "0")
    c = RawClient(g.port)
    c.handshake()
    for i in range(20):
        c.send(frame(1, b"message %02d\n" % i))
    fin, opcode, payload = c.recv_frame()
    assert (opcode, payload) == (1, b"bye\n")
    fin, opcode, payload = c.recv_frame()
    assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1000
    c.send(frame(8, close_body(1000)))
    c.expect_eof()
    line = p.output_line()
    assert line.startswith("LINES 20 "), line


# 6. Memory goes back to the system after a peak.

def test_rss_returns_near_the_baseline_after_5000_connections(gateway_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 12000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 12000), hard))
    g = gateway_factory("-c", "host=echo://", "-k", "0", "--max-connections", "6000")
    warm = RawClient(g.port)
    warm.handshake()
    warm.send(frame(2, b"w" * 60000))
    assert warm.recv_frame()[2] == b"w" * 60000
    time.sleep(1.5)
    baseline = rss_kib(g.proc.pid)
    clients = []
    message = frame(2, b"p" * 60000)
    for _ in range(5000):
        c = RawClient(g.port, timeout=10)
        c.send(request() + message)
        clients.append(c)
    for c in clients:
        assert c.read_response()[0] == 101
        assert len(c.recv_frame()[2]) == 60000
    peak = rss_kib(g.proc.pid)
    for c in clients:
        c.close()
    deadline = time.time() + 10
    while time.time() < deadline and rss_kib(g.proc.pid) > 2 * baseline:
        time.sleep(0.25)
    after = rss_kib(g.proc.pid)
    assert after <= 2 * baseline, f"RSS {after} KiB after a peak of {peak} KiB; baseline {baseline} KiB"


# 7. A process-wide budget for assembled messages.

def test_buffer_budget_closes_the_largest_holder_with_1009(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "-k", "0", "--buffer-memory", "4M")
    chunk = b"b" * (512 << 10)
    small, large = RawClient(g.port), RawClient(g.port)
    small.handshake()
    large.handshake()
    small.send(frame(2, chunk, fin=False))
    large.send(frame(2, chunk, fin=False))
    for _ in range(8):
        large.send(frame(0, chunk, fin=False))
    large.expect_close(1009)
    assert g.wait_for_log("buffer budget")
    # The connection that held less goes on: its message completes and is echoed whole.
    small.send(frame(0, chunk, fin=True))
    fin, opcode, payload = small.recv_frame()
    assert (opcode, len(payload)) == (2, 2 * len(chunk))
