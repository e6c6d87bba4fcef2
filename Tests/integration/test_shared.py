"""Shared peers: one peer for every client of a route (share = broadcast|readonly), the slow-client
policies (drop, close, hold) with bounded memory, client messages reaching the peer whole, the peer
reopened after it ends, fifo:// / fifo-out:// and stdin:// sources. Real processes, real sockets."""
import asyncio
import http.client
import os
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import threading
import time

import pytest
import websockets

from conftest import BINARY, refusal_status, rss_kib
from wsraw import RawClient, close_body, frame

LINES = ("-c", "framing=newline", "-c", "framing-config=lf")


def run(coro):
    return asyncio.run(coro)


# --- helpers ------------------------------------------------------------------------------------

class TcpPeer:
    """An in-process TCP peer: accepts connections (counted), records what arrives, sends on demand."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.conns = []
        self.accept_times = []
        self.received = bytearray()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
                self.accept_times.append(time.time())
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        while True:
            try:
                data = conn.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.received += data

    def wait_conns(self, n, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.conns) >= n:
                return True
            time.sleep(0.01)
        return len(self.conns) >= n

    def wait_received(self, n, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.received) >= n:
                break
            time.sleep(0.01)
        return bytes(self.received)

    def send(self, data):
        self.conns[-1].sendall(data)

    def close_current(self):
        c = self.conns[-1]
        c.shutdown(socket.SHUT_RDWR)
        c.close()

    def stop(self):
        self.closed = True
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.listener.close()


@pytest.fixture
def tcp_peer():
    peers = []

    def make():
        p = TcpPeer()
        peers.append(p)
        return p
    yield make
    for p in peers:
        p.stop()


def slow_client(port, path="/"):
    """A raw client that does the handshake and then never reads (a tiny receive buffer)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    c = RawClient.__new__(RawClient)
    c.sock, c.buf = s, b""
    c.handshake(path=path)
    return c


def metric(port, name):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    m = re.search(rf"^{name} (\S+)$", body, re.M)
    assert m, f"{name} missing from /metrics:\n{body}"
    return float(m.group(1))


def admin_port(g):
    assert g.wait_for_log(r"admin listener .* on 127\.0\.0\.1:\d+")
    return int(re.search(r"admin listener .* on 127\.0\.0\.1:(\d+)", g.log()).group(1))


def log_line_of(log, port, timeout=8):
    """The access-log line of the client whose local port is `port`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(log):
            for line in open(log).read().splitlines():
                if f" 127.0.0.1:{port} " in line:
                    return line
        time.sleep(0.05)
    raise AssertionError(f"no access-log line for port {port}: {open(log).read() if os.path.exists(log) else ''}")


def seq_message(i, size):
    head = b"%08d " % i
    return head + b"x" * (size - len(head) - 1) + b"\n"


def seq_of(message):
    if isinstance(message, str):
        message = message.encode()
    return int(message[:8])


def gateway_children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


class RssWatch:
    """Samples a process's RSS every 50 ms in a thread; `peak` is the highest seen."""

    def __init__(self, pid):
        self.pid, self.peak, self.stopped = pid, rss_kib(pid), False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (OSError, AssertionError):
                return
            time.sleep(0.05)

    def stop(self):
        self.stopped = True
        self.thread.join(2)
        return self.peak


# --- broadcast ----------------------------------------------------------------------------------

def test_broadcast_to_a_hundred_clients_in_order(gateway_factory, tcp_peer):
    peer = tcp_peer()
    g = gateway_factory("-c", f"host={peer.url}", *LINES, "-c", "share=broadcast")
    count = 200

    async def go():
        clients = await asyncio.gather(*[websockets.connect(g.url, max_size=None) for _ in range(100)])
        try:
            assert peer.wait_conns(1)
            await asyncio.sleep(0.2)
            assert len(peer.conns) == 1, "the shared peer was connected more than once"
            threading.Thread(target=lambda: [peer.send(seq_message(i, 100)) for i in range(count)], daemon=True).start()

            async def collect(ws):
                return [await asyncio.wait_for(ws.recv(), 10) for _ in range(count)]
            results = await asyncio.gather(*[collect(ws) for ws in clients])
            for got in results:
                assert [seq_of(m) for m in got] == list(range(count))
                assert all(len(m) == 100 for m in got)
            # Client → peer: each client's message reaches the one peer.
            for i, ws in enumerate(clients[:10]):
                await ws.send(f"from {i}\n")
            expected = sorted(f"from {i}\n".encode() for i in range(10))
            data = await asyncio.to_thread(peer.wait_received, sum(map(len, expected)))
            assert sorted(data.splitlines(keepends=True)) == expected
        finally:
            await asyncio.gather(*[ws.close() for ws in clients])
    run(go())
    assert len(peer.conns) == 1


# --- slow clients -------------------------------------------------------------------------------

LIMIT = 1 << 20  # drop and close: room for a Python client's hiccups at RATE
HOLD_LIMIT = 64 << 10
FLOOD_SIZE = 16 << 10


RATE = 40e6  # bytes/s: what the Python test clients can take comfortably


def flood(peer, count, size=FLOOD_SIZE, rate=None):
    """The peer sends `count` numbered lines, paced at `rate` bytes/s (as fast as it can: None)."""
    def go():
        start = time.time()
        try:
            for i in range(count):
                peer.send(seq_message(i, size))
                if rate and i % 32 == 31:
                    pause = start + (i + 1) * size / rate - time.time()
                    if pause > 0:
                        time.sleep(pause)
        except OSError:
            pass
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


async def read_all(ws, count, timeout=20):
    got = []
    for _ in range(count):
        got.append(seq_of(await asyncio.wait_for(ws.recv(), timeout)))
    return got


def read_raw_messages(c, until_close=True, timeout=10):
    """Sequence numbers of the data messages a raw client has, then the close code (or None)."""
    c.sock.settimeout(timeout)
    seqs = []
    while True:
        fin, opcode, payload = c.recv_frame()
        assert fin
        if opcode == 8:
            return seqs, struct.unpack("!H", payload[:2])[0], payload[2:]
        seqs.append(seq_of(payload))


def test_slow_client_drop(gateway_factory, tcp_peer, tmp_path):
    log = tmp_path / "access.log"
    peer = tcp_peer()
    g = gateway_factory("-c", f"host={peer.url}", *LINES, "-c", "share=broadcast", "-c", "slow-client=drop",
                        "-c", "slow-client-limit=1M", "--access-log", str(log), "--admin-listen", "127.0.0.1:0",
                        "--peer-buffer", "1M")
    aport = admin_port(g)
    count = 6000  # ~94 MiB through the gateway, to each fast client

    async def go():
        fast = [await websockets.connect(g.url, max_size=None) for _ in range(2)]
        slow = slow_client(g.port)
        assert peer.wait_conns(1)
        base = rss_kib(g.proc.pid)
        watch = RssWatch(g.proc.pid)
        started = time.time()
        flood(peer, count, rate=RATE)
        results = await asyncio.gather(*[read_all(ws, count) for ws in fast])
        elapsed = time.time() - started
        peak = watch.stop()
        for got in results:
            assert got == list(range(count)), "a fast client lost messages"
        paced = count * FLOOD_SIZE / RATE
        assert elapsed < paced + 3, f"fast clients were slowed down: {elapsed:.1f} s for {paced:.1f} s of flood"
        growth_mb = (peak - base) / 1024
        assert growth_mb < LIMIT * 3 / 2**20 + 50, f"RSS grew by {growth_mb:.0f} MB with one client never reading"
        assert metric(aport, "websocksy_shared_dropped_messages_total") > 0
        # The slow one reads now: a prefix of what was sent, in order, the rest dropped.
        for ws in fast:
            await ws.close()
        slow.send(frame(8, close_body(1000)))
        seqs, code, _ = await asyncio.to_thread(read_raw_messages, slow)
        assert code == 1000
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        slow_port = slow.sock.getsockname()[1]
        slow.close()
        return seqs, slow_port, [ws.local_address[1] for ws in fast]
    seqs, slow_port, fast_ports = run(go())
    line = log_line_of(log, slow_port)
    m = re.search(r" dropped=(\d+)$", line)
    assert m, line
    dropped = int(m.group(1))
    assert dropped > 0 and dropped + len(seqs) == count, (dropped, len(seqs), line)
    for p in fast_ports:
        assert "dropped=" not in log_line_of(log, p)
    assert metric(aport, "websocksy_shared_dropped_messages_total") == dropped


def test_slow_client_close(gateway_factory, tcp_peer, tmp_path):
    log = tmp_path / "access.log"
    peer = tcp_peer()
    g = gateway_factory("-c", f"host={peer.url}", *LINES, "-c", "share=broadcast", "-c", "slow-client=close",
                        "-c", "slow-client-limit=1M", "--access-log", str(log))
    count = 6000

    async def go():
        fast = [await websockets.connect(g.url, max_size=None) for _ in range(2)]
        slow = slow_client(g.port)
        assert peer.wait_conns(1)
        base = rss_kib(g.proc.pid)
        watch = RssWatch(g.proc.pid)
        flood(peer, count, rate=RATE)
        results = await asyncio.gather(*[read_all(ws, count) for ws in fast])
        peak = watch.stop()
        for got in results:
            assert got == list(range(count))
        growth_mb = (peak - base) / 1024
        assert growth_mb < LIMIT * 3 / 2**20 + 50, f"RSS grew by {growth_mb:.0f} MB"
        seqs, code, reason = await asyncio.to_thread(read_raw_messages, slow)
        assert code == 1008 and reason == b"too slow for the shared peer"
        assert seqs == list(range(len(seqs)))  # what it got before, in order and without gaps
        slow_port = slow.sock.getsockname()[1]
        # The others are fine and still served.
        peer.send(b"after\n")
        for ws in fast:
            assert await asyncio.wait_for(ws.recv(), 5) == "after\n"
            await ws.close()
        slow.close()
        return slow_port
    slow_port = run(go())
    line = log_line_of(log, slow_port)
    assert "close=1008 by=server" in line, line


def test_slow_client_hold(gateway_factory, tcp_peer, tmp_path):
    log = tmp_path / "access.log"
    peer = tcp_peer()
    g = gateway_factory("-c", f"host={peer.url}", *LINES, "-c", "share=broadcast", "-c", "slow-client=hold",
                        "-c", "slow-client-limit=64k", "--access-log", str(log))
    count = 3000  # ~47 MiB

    async def go():
        fast = [await websockets.connect(g.url, max_size=None) for _ in range(2)]
        slow = slow_client(g.port)
        assert peer.wait_conns(1)
        base = rss_kib(g.proc.pid)
        watch = RssWatch(g.proc.pid)
        flood(peer, count)
        progress = [[] for _ in fast]

        async def reader(i, ws):
            while len(progress[i]) < count:
                progress[i].append(seq_of(await asyncio.wait_for(ws.recv(), 30)))
        tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(fast)]
        await asyncio.sleep(1.5)
        stuck_at = [len(p) for p in progress]
        await asyncio.sleep(1.0)
        assert [len(p) for p in progress] == stuck_at, "the fast clients kept going while one was held"
        assert all(n < count for n in stuck_at), "hold did not hold the peer"
        peak = watch.stop()
        growth_mb = (peak - base) / 1024
        assert growth_mb < HOLD_LIMIT * 3 / 2**20 + 50, f"RSS grew by {growth_mb:.0f} MB"
        # The slow one reads: everything, in order; then everyone continues to the end.
        slow.sock.settimeout(20)
        seqs = []

        def drain():
            while len(seqs) < count:
                fin, opcode, payload = slow.recv_frame()
                assert opcode == 1
                seqs.append(seq_of(payload))
        await asyncio.to_thread(drain)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert seqs == list(range(count))
        for p in progress:
            assert p == list(range(count))
        for ws in fast:
            await ws.close()
        slow.send(frame(8, close_body(1000)))
        slow.expect_close(1000)
        return slow.sock.getsockname()[1]
    slow_port = run(go())
    assert "dropped=" not in log_line_of(log, slow_port)


# --- readonly, whole messages, exec ----------------------------------------------------------------

def test_readonly_drops_client_messages(gateway_factory, tcp_peer, tmp_path):
    log = tmp_path / "access.log"
    peer = tcp_peer()
    g = gateway_factory("-c", f"host={peer.url}", *LINES, "-c", "share=readonly", "--access-log", str(log),
                        "--admin-listen", "127.0.0.1:0")
    aport = admin_port(g)

    async def go():
        a = await websockets.connect(g.url)
        b = await websockets.connect(g.url)
        for i in range(5):
            await a.send(f"a{i}\n")
            await b.send(f"b{i}\n".encode())
        peer.wait_conns(1)
        peer.send(b"view\n")
        assert await asyncio.wait_for(a.recv(), 5) == "view\n"
        assert await asyncio.wait_for(b.recv(), 5) == "view\n"
        await asyncio.sleep(0.3)
        ports = [a.local_address[1], b.local_address[1]]
        assert metric(aport, "websocksy_shared_dropped_messages_total") == 10
        await a.close()
        await b.close()
        return ports
    ports = run(go())
    assert bytes(peer.received) == b"", "a read-only shared peer got client messages"
    for p in ports:
        line = log_line_of(log, p)
        assert line.endswith(" dropped=5"), line
    assert len(peer.conns) == 1


def test_fragmented_messages_of_two_clients_never_interleave(gateway_factory, tcp_peer):
    peer = tcp_peer()
    g = gateway_factory("-c", f"host={peer.url}", *LINES, "-c", "share=broadcast")
    a, b = RawClient(g.port), RawClient(g.port)
    a.handshake()
    b.handshake()
    assert peer.wait_conns(1)
    expected = []
    for r in range(40):
        ma = [b"A%03d-%d:" % (r, k) + b"a" * (37 * k + r) for k in range(4)]
        mb = [b"B%03d-%d:" % (r, k) + b"b" * (53 * k + r) for k in range(3)]
        ma[-1] += b"\n"
        mb[-1] += b"\n"
        expected += [b"".join(ma), b"".join(mb)]
        # Fragments alternate between the two clients, each one in its own TCP write.
        order = [(a, ma, 0), (b, mb, 0), (a, ma, 1), (b, mb, 1), (a, ma, 2), (b, mb, 2), (a, ma, 3)]
        for client, parts, k in order:
            opcode = 1 if k == 0 else 0
            client.send(frame(opcode, parts[k], fin=(k == len(parts) - 1)))
            time.sleep(0.001)
    total = sum(map(len, expected))
    data = peer.wait_received(total, timeout=10)
    assert len(data) == total
    got = data.splitlines(keepends=True)
    assert sorted(got) == sorted(expected), "messages interleaved or corrupted at the shared peer"
    # Each client's own messages stay in order.
    assert [m for m in got if m.startswith(b"A")] == [m for m in expected if m.startswith(b"A")]
    assert [m for m in got if m.startswith(b"B")] == [m for m in expected if m.startswith(b"B")]
    for c in (a, b):
        c.send(frame(8, close_body(1000)))
        c.expect_close(1000)


def test_shared_exec_cat_echoes_to_every_client(gateway_factory):
    g = gateway_factory("-c", "host=exec:///bin/cat", *LINES, "-c", "share=broadcast")

    async def go():
        clients = [await websockets.connect(g.url) for _ in range(3)]
        children = gateway_children(g.proc.pid)
        assert len(children) == 1, f"one shared program expected, got {children}"
        for i, ws in enumerate(clients):
            await ws.send(f"line from {i}\n")
        for ws in clients:
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
            assert sorted(got) == [f"line from {i}\n" for i in range(3)]
        assert gateway_children(g.proc.pid) == children
        for ws in clients:
            await ws.close()
    run(go())


# --- the peer ending ---------------------------------------------------------------------------

def test_shared_peer_reopened_after_it_closes(gateway_factory, tcp_peer):
    peer = tcp_peer()
    g = gateway_factory("-c", f"host={peer.url}", *LINES, "-c", "share=broadcast")

    async def go():
        clients = [await websockets.connect(g.url) for _ in range(3)]
        assert peer.wait_conns(1)
        peer.send(b"one\n")
        for ws in clients:
            assert await asyncio.wait_for(ws.recv(), 5) == "one\n"
        closed_at = time.time()
        peer.close_current()
        assert await asyncio.to_thread(peer.wait_conns, 2, 5), "the shared peer was not opened again"
        delay = peer.accept_times[1] - closed_at
        assert 0.5 < delay < 3, f"reopened after {delay:.2f} s"
        # The clients stayed connected and get what the new connection sends.
        peer.send(b"two\n")
        for ws in clients:
            assert await asyncio.wait_for(ws.recv(), 5) == "two\n"
        await clients[0].send("back\n")
        assert await asyncio.to_thread(peer.wait_received, 5) == b"back\n"
        # A client joining after the reopen shares the same connection.
        late = await websockets.connect(g.url)
        peer.send(b"three\n")
        for ws in clients + [late]:
            assert await asyncio.wait_for(ws.recv(), 5) == "three\n"
        assert len(peer.conns) == 2
        for ws in clients + [late]:
            await ws.close()
    run(go())


# --- FIFOs -------------------------------------------------------------------------------------

def test_fifo_writers_come_and_go(gateway_factory, tmp_path):
    path = tmp_path / "in.fifo"
    g = gateway_factory("-c", f"host=fifo://{path}", *LINES)

    async def go():
        clients = [await websockets.connect(g.url) for _ in range(3)]
        assert stat.S_ISFIFO(os.stat(path).st_mode), "the FIFO was not created"
        for i in range(50):
            with open(path, "w") as f:  # opens, writes, closes: a new writer every time
                f.write(f"line {i}\n")
            if i % 10 == 9:
                subprocess.run(["sh", "-c", f"echo shell {i} > '{path}'"], check=True, timeout=5)
        expected = []
        for i in range(50):
            expected.append(f"line {i}\n")
            if i % 10 == 9:
                expected.append(f"shell {i}\n")
        for ws in clients:
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(len(expected))]
            assert got == expected
        for ws in clients:
            await ws.close()
        # A new client later joins the same FIFO and gets later lines.
        async with websockets.connect(g.url) as late:
            with open(path, "w") as f:
                f.write("late\n")
            assert await asyncio.wait_for(late.recv(), 5) == "late\n"
    run(go())


def read_fifo(path, count, timeout=5):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    data = b""
    deadline = time.time() + timeout
    try:
        while len(data) < count and time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    data += os.read(fd, 65536)
                except BlockingIOError:
                    pass
    finally:
        os.close(fd)
    return data


def test_fifo_out_option(gateway_factory, tmp_path):
    path, out = tmp_path / "in.fifo", tmp_path / "out.fifo"
    g = gateway_factory("-c", f"host=fifo://{path}?out={out}", *LINES)

    async def go():
        a = await websockets.connect(g.url)
        b = await websockets.connect(g.url)
        assert stat.S_ISFIFO(os.stat(out).st_mode), "the out FIFO was not created"
        reader = asyncio.create_task(asyncio.to_thread(read_fifo, out, len("from a\nfrom b\n")))
        await asyncio.sleep(0.1)
        await a.send("from a\n")
        await asyncio.sleep(0.1)
        await b.send(b"from b\n")
        assert await reader == b"from a\nfrom b\n"
        # The read side still broadcasts.
        with open(path, "w") as f:
            f.write("to all\n")
        assert await asyncio.wait_for(a.recv(), 5) == "to all\n"
        assert await asyncio.wait_for(b.recv(), 5) == "to all\n"
        await a.close()
        await b.close()
    run(go())


def test_fifo_out_only(gateway_factory, tmp_path):
    out = tmp_path / "only-out.fifo"
    g = gateway_factory("-c", f"host=fifo-out://{out}", *LINES)

    async def go():
        async with websockets.connect(g.url) as a, websockets.connect(g.url) as b:
            assert stat.S_ISFIFO(os.stat(out).st_mode)
            # Written even while no one reads the FIFO (the pipe holds it).
            await a.send("one\n")
            await b.send("two\n")
            await asyncio.sleep(0.2)
            # Two clients on two connections: either may arrive first, each message whole.
            written = await asyncio.to_thread(read_fifo, out, 8)
            assert sorted(written.splitlines(keepends=True)) == [b"one\n", b"two\n"], written
    run(go())


def test_fifo_path_that_is_a_regular_file(gateway_factory, tmp_path):
    path = tmp_path / "regular"
    path.write_text("not a fifo\n")
    g = gateway_factory("-c", f"host=fifo://{path}", *LINES)
    assert refusal_status(g.url) == 502
    assert g.wait_for_log(rf"{re.escape(str(path))}.*not a FIFO"), g.log()
    assert path.read_text() == "not a fifo\n" and stat.S_ISREG(os.stat(path).st_mode)
    # The gateway is still there and refuses the next one the same way.
    time.sleep(1.1)
    assert refusal_status(g.url) == 502


# --- stdin:// ------------------------------------------------------------------------------------

class StdinGateway:
    """websocksy with a pipe as its standard input."""

    def __init__(self, *args):
        self.lines = []
        self.proc = subprocess.Popen([BINARY, "-l", "127.0.0.1", "-p", "0", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._collect, daemon=True).start()
        self.port = None
        deadline = time.time() + 10
        while time.time() < deadline and self.port is None and self.proc.poll() is None:
            m = re.search(r"listening on .*:(\d+) ", self.log())
            if m:
                self.port = int(m.group(1))
            time.sleep(0.01)
        assert self.port, self.log()
        self.url = f"ws://127.0.0.1:{self.port}"

    def _collect(self):
        for line in self.proc.stderr:
            self.lines.append(line.decode(errors="replace"))

    def log(self):
        return "".join(self.lines)

    def write(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_stdin_source_until_end_of_input():
    g = StdinGateway("-c", "host=stdin://", *LINES)
    try:
        async def go():
            a = await websockets.connect(g.url)
            b = await websockets.connect(g.url)
            for i in range(5):
                g.write(f"tick {i}\n")
                await asyncio.sleep(0.05)
            for ws in (a, b):
                assert [await asyncio.wait_for(ws.recv(), 5) for _ in range(5)] == [f"tick {i}\n" for i in range(5)]
            late = await websockets.connect(g.url)
            g.write("partial ")
            await asyncio.sleep(0.1)
            g.write("line\n")
            for ws in (a, b, late):
                assert await asyncio.wait_for(ws.recv(), 5) == "partial line\n"
            # A client message has nowhere to go: dropped, the connection stays.
            await a.send("ignored\n")
            g.proc.stdin.close()
            for ws in (a, b, late):
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 1000 and ws.close_reason == "end of input", (ws.close_code, ws.close_reason)
        run(go())
        assert refusal_status(g.url) == 502
        assert g.proc.poll() is None, "the gateway exited at the end of its input"
    finally:
        g.stop()


def test_stdin_source_that_already_ended_or_is_a_file(tmp_path):
    """`printf ... | websocksy` (the writer gone before the first client) and `websocksy < FILE`:
    the lines there are delivered, then Close 1000 "end of input"."""
    source = tmp_path / "input.txt"
    source.write_text("alpha\nbeta\n")
    for how in ("closed pipe", "regular file"):
        stdin = open(source) if how == "regular file" else subprocess.PIPE
        proc = subprocess.Popen([BINARY, "-l", "127.0.0.1", "-p", "0", "-c", "host=stdin://", *LINES],
                                stdin=stdin, stderr=subprocess.PIPE, text=True)
        try:
            if how == "closed pipe":
                proc.stdin.write("alpha\nbeta\n")
                proc.stdin.close()
            port = int(re.search(r"listening on .*:(\d+) ", proc.stderr.readline()).group(1))

            async def go():
                try:
                    ws = await websockets.connect(f"ws://127.0.0.1:{port}")
                except websockets.InvalidStatus as refused:
                    raise AssertionError(f"{how}: refused with {refused.response.status_code}: "
                                         f"{bytes(refused.response.body)!r}") from None
                got = []
                with pytest.raises(websockets.ConnectionClosed):
                    while True:
                        got.append(await asyncio.wait_for(ws.recv(), 5))
                assert got == ["alpha\n", "beta\n"], (how, got)
                assert (ws.close_code, ws.close_reason) == (1000, "end of input"), how
            run(go())
        finally:
            proc.terminate()
            proc.wait(10)
            if how == "regular file":
                stdin.close()


# --- route options (backend_file) ----------------------------------------------------------------

TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS",
                              os.path.join(os.path.dirname(BINARY), "..", "test-plugins"))


def file_gateway(gateway_factory, routes, *extra):
    if not os.path.exists(os.path.join(TEST_PLUGINS, "backend_file.so")):
        pytest.fail(f"backend_file.so missing in {TEST_PLUGINS}")
    return gateway_factory("--plugins", TEST_PLUGINS, "-b", "file", "-c", f"path={routes}",
                           "-c", "expression=%endpoint%", *extra)


def test_route_options_share_and_slow_client(gateway_factory, tcp_peer, tmp_path):
    room, room2 = tcp_peer(), tcp_peer()
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "room").write_text(f"{room.url}?share=broadcast&slow-client=close * newline lf\n")
    (routes / "room2").write_text(f"{room2.url}?slow-client=close&share=broadcast * newline lf\n")
    (routes / "solo").write_text(f"{room.url} * newline lf\n")
    g = file_gateway(gateway_factory, routes)
    count = 6000  # far more than the default 1M limit plus socket buffers

    async def go():
        for name, peer in (("room", room), ("room2", room2)):
            fast = [await websockets.connect(f"{g.url}/{name}", max_size=None) for _ in range(2)]
            slow = slow_client(g.port, path=f"/{name}")
            assert peer.wait_conns(1)
            assert len(peer.conns) == 1, name
            flood(peer, count, rate=RATE)
            for got in await asyncio.gather(*[read_all(ws, count) for ws in fast]):
                assert got == list(range(count)), name
            seqs, code, reason = await asyncio.to_thread(read_raw_messages, slow)
            assert (code, reason) == (1008, b"too slow for the shared peer"), name
            slow.close()
            for ws in fast:
                await ws.close()
        # A route to the same address without share= gets a connection of its own.
        async with websockets.connect(f"{g.url}/solo") as solo:
            assert room.wait_conns(2)
            room.send(b"just you\n")
            assert await asyncio.wait_for(solo.recv(), 5) == "just you\n"
    run(go())


def test_readonly_route_cannot_write_when_a_broadcast_route_to_the_same_peer_came_first(gateway_factory, tcp_peer, tmp_path):
    peer = tcp_peer()
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "edit").write_text(f"{peer.url}?share=broadcast * newline lf\n")
    (routes / "view").write_text(f"{peer.url}?share=readonly * newline lf\n")
    g = file_gateway(gateway_factory, routes)

    async def go():
        async with websockets.connect(f"{g.url}/edit") as editor, websockets.connect(f"{g.url}/view") as viewer:
            await editor.send("from the editor\n")
            await viewer.send("from a viewer\n")
            await asyncio.sleep(0.5)
            peer.send(b"news\n")
            assert await asyncio.wait_for(editor.recv(), 5) == "news\n"
            assert await asyncio.wait_for(viewer.recv(), 5) == "news\n"
    run(go())
    assert bytes(peer.received) == b"from the editor\n", \
        f"a client of a share=readonly route wrote to the peer: {bytes(peer.received)!r}"


def test_broadcast_route_can_write_when_a_readonly_route_to_the_same_peer_came_first(gateway_factory, tcp_peer, tmp_path):
    peer = tcp_peer()
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "edit").write_text(f"{peer.url}?share=broadcast * newline lf\n")
    (routes / "view").write_text(f"{peer.url}?share=readonly * newline lf\n")
    g = file_gateway(gateway_factory, routes)

    async def go():
        async with websockets.connect(f"{g.url}/view") as viewer, websockets.connect(f"{g.url}/edit") as editor:
            await viewer.send("from a viewer\n")
            await editor.send("from the editor\n")
            await asyncio.sleep(0.5)
    run(go())
    assert bytes(peer.received) == b"from the editor\n", \
        f"the peer got {bytes(peer.received)!r}: the first route's share mode decided for every route"


# --- more edges ----------------------------------------------------------------------------------

def test_hold_released_when_the_slow_client_leaves(gateway_factory, tcp_peer):
    peer = tcp_peer()
    g = gateway_factory("-c", f"host={peer.url}", *LINES, "-c", "share=broadcast", "-c", "slow-client=hold",
                        "-c", "slow-client-limit=64k")
    count = 3000

    async def go():
        fast = await websockets.connect(g.url, max_size=None)
        slow = slow_client(g.port)
        assert peer.wait_conns(1)
        flood(peer, count)
        got = []

        async def reader():
            while len(got) < count:
                got.append(seq_of(await asyncio.wait_for(fast.recv(), 20)))
        task = asyncio.create_task(reader())
        await asyncio.sleep(1)
        assert len(got) < count, "hold did not hold"
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        slow.sock.close()  # a reset: it is gone without ever catching up
        await asyncio.wait_for(task, 20)
        assert got == list(range(count))
        await fast.close()
    run(go())


def test_shared_unix_stream_peer(gateway_factory, peer_factory):
    peer = peer_factory("unix", "echo")
    g = gateway_factory("-c", f"host={peer.url}", *LINES, "-c", "share=broadcast")

    async def go():
        clients = [await websockets.connect(g.url) for _ in range(4)]
        await clients[2].send("echoed to all\n")
        for ws in clients:
            assert await asyncio.wait_for(ws.recv(), 5) == "echoed to all\n"
        for ws in clients:
            await ws.close()
    run(go())


def test_fifo_without_out_drops_client_messages_and_out_fifo_is_bounded(gateway_factory, tmp_path):
    log = tmp_path / "access.log"
    path, out = tmp_path / "ro.fifo", tmp_path / "full.fifo"
    g = gateway_factory("-c", f"host=fifo://{path}", *LINES, "--access-log", str(log))

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send("nowhere\n")
            await ws.send("nowhere\n")
            return ws.local_address[1]
    port = run(go())
    assert log_line_of(log, port).endswith(" dropped=2")
    # fifo-out with nobody reading: the pipe (64 KiB) and 64k pending are kept, the rest dropped.
    g2 = gateway_factory("-c", f"host=fifo-out://{out}", *LINES, "-c", "slow-client-limit=64k",
                         "--access-log", str(log))
    before = rss_kib(g2.proc.pid)

    async def go2():
        async with websockets.connect(g2.url, max_size=None) as ws:
            for _ in range(200):
                await ws.send(b"y" * 65535 + b"\n")
            await asyncio.sleep(0.3)
            return ws.local_address[1]
    port = run(go2())
    assert (rss_kib(g2.proc.pid) - before) < 30 * 1024
    line = log_line_of(log, port)
    m = re.search(r" dropped=(\d+)$", line)
    assert m and 190 <= int(m.group(1)) <= 199, line
    data = read_fifo(out, 200 << 16, timeout=1)
    assert len(data) % 65536 == 0 and data == b"".join([b"y" * 65535 + b"\n"] * (len(data) // 65536))


def test_share_open_start_opens_before_the_first_client(gateway_factory, tcp_peer, tmp_path):
    """share-open=start: the peer is connected (a FIFO created) when the gateway starts, what it
    sends with no client is read and dropped, later clients get what comes after they joined, and
    it is reopened when it ends even with no client."""
    peer = tcp_peer()
    gateway_factory("-c", f"host={peer.url}", "-c", "share=broadcast", "-c", "share-open=start",
                    "-c", "framing=newline", "-c", "framing-config=lf")
    assert peer.wait_conns(1, 3), "not connected at start-up"
    peer.send(b"before anyone\n")
    peer.close_current()
    assert peer.wait_conns(2, 4), "not reopened without clients"
    fifo = tmp_path / "events"
    g = gateway_factory("-c", f"host=fifo://{fifo}", "-c", "share-open=start", "-c", "framing=newline", "-c", "framing-config=lf")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{g.port}/") as ws:
            with open(fifo, "w") as w:
                w.write("after\n")
            assert await asyncio.wait_for(ws.recv(), 5) == "after\n"
    run(go())
