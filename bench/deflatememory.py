#!/usr/bin/env python3
"""What permessage-deflate costs the gateway: memory per idle compressed connection, and the
compression ratio and CPU of the settings on a JSON stream. Re-run with

    .venv/bin/python bench/deflatememory.py memory [--gateway PATH] [--runs 3] [--modes abcdefg] [--fill BYTES]
    .venv/bin/python bench/deflatememory.py cpu    [--gateway PATH] [--runs 3] [--line-size BYTES]

memory: for each mode (a-g below: the gateway's settings and the client's offer) a fresh gateway
bridges to a TCP echo peer (echopeer, -c framing=newline -c framing-config=lf). 50 warm-up
connections are opened first (one-time costs: zlib's code pages, the shared 64 KiB buffers); after
2 s of quiet (the gateway gives an idle connection's buffers back after 1 s) VmRSS is read, 500 more
connections each send one ~150-byte JSON line (compressed when agreed) and read its echo (compressed
by the gateway when agreed), and after another 2 s VmRSS is read again: bytes per connection =
difference / 500, median of --runs. Mode (f), compression off, is the baseline. --fill BYTES makes
each of the 500 also send one message of BYTES of JSON lines and read the echoed lines back, so the
windows kept between messages are full: the cost of a connection that has carried traffic rather
than one that has just opened (it also includes the gateway's own buffers kept after traffic).

cpu: compression off, then level 1 and 6, server window 11 and 15 bits, each with and without server
context takeover: the gateway pushes deflatebench's JSON stream (bench/deflatebench.c; --line-size
0 = events of 100-300 bytes, else batches of about that size) to one client: ratio = payload /
frame bytes (deterministic), gateway instructions per message (callgrind, the difference of a 2000-
and a 6000-message run (--messages), so start-up cancels), and payload MB/s with the gateway pinned
on core 1 and deflatebench on core 0 (median of --runs x 3 s; noisy on a shared machine).

The load tools are built into .build/bench as bench/run.sh does (BENCH_OUT=DIR to build elsewhere,
SHARED=DIR for ../shared/bench). The client side is raw sockets and Python's zlib only.
"""
import argparse
import base64
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, ".build", "bench"))
SHARED = os.environ.get("SHARED", os.path.join(ROOT, "..", "shared", "bench"))
TWO_CORES = os.cpu_count() >= 2
RELAY = ["taskset", "-c", "1"] if TWO_CORES else []
LOAD = ["taskset", "-c", "0"] if TWO_CORES else []
JSON_FRAMING = ["-c", "framing=newline", "-c", "framing-config=lf"]
CHROMIUM = "permessage-deflate; client_max_window_bits"
FIREFOX = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"
# The gateway gives an idle connection's client buffers back after a second without data (its
# sweep runs every 250 ms): RSS is read once that has happened.
SETTLE = 2.0


def build():
    os.makedirs(OUT, exist_ok=True)
    for name, source, libs in [("echopeer", os.path.join(SHARED, "echopeer.c"), []),
                               ("deflatebench", os.path.join(ROOT, "bench", "deflatebench.c"), ["-lz", "-lpthread"])]:
        binary = os.path.join(OUT, name)
        if not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(source):
            subprocess.run(["cc", "-O2", "-o", binary, source, *libs], check=True)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_listening(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_gateway(gateway, port, peer_port, flags, log, valgrind=False):
    command = [gateway, "-l", "127.0.0.1", "-p", str(port), "-k", "0", "--max-connections", "20000",
               "-c", f"host=tcp://127.0.0.1:{peer_port}", *JSON_FRAMING, *flags]
    if valgrind:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]
    else:
        command = RELAY + command
    return subprocess.Popen(command, stderr=open(log, "w"))


def stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- a minimal permessage-deflate client (raw sockets + zlib) ----

class Client:
    def __init__(self, port, offer):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        extensions = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise RuntimeError(f"upgrade refused: {lines[0]}")
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        self.answer = headers.get("sec-websocket-extensions")
        params = {}
        if self.answer:
            for item in self.answer.split(";")[1:]:
                name, _, value = item.strip().partition("=")
                params[name] = value
        self.deflate = self.answer is not None
        self.client_bits = max(9, int(params.get("client_max_window_bits") or 15))
        self.client_takeover = "client_no_context_takeover" not in params
        self.server_takeover = "server_no_context_takeover" not in params
        self.compressor = self._new_compressor()
        self.decompressor = zlib.decompressobj(-15)

    def _new_compressor(self):
        return zlib.compressobj(6, zlib.DEFLATED, -self.client_bits)

    def _fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise RuntimeError("connection closed")
        self.buf += data

    def send(self, data):
        rsv = 0
        if self.deflate:
            data = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
            assert data.endswith(TAIL)
            data, rsv = data[:-4], 0x40
            if not self.client_takeover:
                self.compressor = self._new_compressor()
        n = len(data)
        header = bytes([0x80 | rsv | 1])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = (int.from_bytes(data, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        self.sock.sendall(header + mask + masked)

    def recv(self):
        """One data message (single frame, as the gateway sends them), inflated."""
        while len(self.buf) < 2:
            self._fill()
        b0, b1 = self.buf[0], self.buf[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            while len(self.buf) < 4:
                self._fill()
            n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill()
            n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < pos + n:
            self._fill()
        payload, self.buf = self.buf[pos:pos + n], self.buf[pos + n:]
        assert b0 & 0x80 and b0 & 0x0F in (1, 2), f"unexpected frame {b0:#x}"
        if b0 & 0x40:
            payload = self.decompressor.decompress(payload + TAIL)
            if not self.server_takeover:
                self.decompressor = zlib.decompressobj(-15)
        return payload

    def exchange(self, line):
        """Sends `line` (whole JSON lines) and reads the echoed lines back until all have come."""
        self.send(line)
        got = b""
        while len(got) < len(line):
            got += self.recv()
        assert got == line, "echo differs"


def json_line(i):
    return (f'{{"type":"chat","seq":{i},"ts":{1764460800000 + 37 * i},"room":"general","user":{{"id":{1000 + 7 * i},'
            f'"name":"user{i}","role":"member"}},"text":"hello from connection {i}, see you at the meeting"}}\n').encode()


def json_lines(size, seed):
    lines, i = [], seed
    while sum(map(len, lines)) < size:
        lines.append(json_line(i))
        i += 1
    return b"".join(lines)


MEMORY_MODES = [
    ("a", "defaults, Chromium's offer (client_max_window_bits)", ["--compression", "on"], CHROMIUM),
    ("b", "defaults, Firefox's bare offer", ["--compression", "on"], FIREFOX),
    ("c", "--server-max-window-bits 15 (memLevel 8), Chromium's offer", ["--compression", "on", "--server-max-window-bits", "15"], CHROMIUM),
    ("d", "--server/client-no-context-takeover yes, Chromium's offer",
     ["--compression", "on", "--server-no-context-takeover", "yes", "--client-no-context-takeover", "yes"], CHROMIUM),
    ("e", "--client-max-window-bits 15, Chromium's offer", ["--compression", "on", "--client-max-window-bits", "15"], CHROMIUM),
    ("f", "--compression off (baseline), Chromium's offer declined", ["--compression", "off"], CHROMIUM),
    ("g", "--server-max-window-bits 13 (memLevel 6), Chromium's offer", ["--compression", "on", "--server-max-window-bits", "13"], CHROMIUM),
]


def memory_run(gateway, flags, offer, count, warm, fill, port=19320, peer_port=19321):
    peer = subprocess.Popen(LOAD + [os.path.join(OUT, "echopeer"), "-t", "tcp", "-a", f"127.0.0.1:{peer_port}", "-q"])
    g = start_gateway(gateway, port, peer_port, flags, os.path.join(OUT, "deflatememory-gateway.log"))
    clients = []
    try:
        wait_listening(peer_port, peer)
        wait_listening(port, g)
        for i in range(warm):
            c = Client(port, offer)
            c.exchange(json_line(i))
            clients.append(c)
        time.sleep(SETTLE)
        before = rss_kib(g.pid)
        for i in range(count):
            c = Client(port, offer)
            c.exchange(json_line(warm + i))
            if fill:
                c.exchange(json_lines(fill, 1000 * i))
            clients.append(c)
        time.sleep(SETTLE)
        after = rss_kib(g.pid)
        return (after - before) * 1024 / count, clients[-1].answer
    finally:
        for c in clients:
            c.sock.close()
        stop(g)
        stop(peer)


def memory(args):
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    results = {}
    print(f"# {args.count} connections after {args.warm} warm-up ones, median of {args.runs}"
          f"{f', each also exchanged {args.fill} bytes' if args.fill else ''}", file=sys.stderr)
    for key, label, flags, offer in MEMORY_MODES:
        if key not in args.modes:
            continue
        values = []
        for _ in range(args.runs):
            per_connection, answer = memory_run(args.gateway, flags, offer, args.count, args.warm, args.fill)
            values.append(per_connection)
        results[key] = (label, statistics.median(values), values, answer)
        print(f"# ({key}) {[round(v) for v in values]} {answer}", file=sys.stderr)
    base = results["f"][1] if "f" in results else None
    print(f"| mode | answer (Sec-WebSocket-Extensions) | RSS bytes per connection (runs) | over (f) |")
    print("|---|---|---|---|")
    for key, (label, median, values, answer) in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"| ({key}) {label} | {answer or '—'} | **{median:.0f}** ({runs}) | {'—' if base is None else f'{median - base:+.0f}'} |")


# ---- ratio and CPU on the JSON stream ----

def field(line, name):
    for item in line.split():
        if item.startswith(name + "="):
            return item.split("=", 1)[1]
    raise KeyError(name)


def deflatebench(port, peer_port, *extra, load=True):
    out = subprocess.run((LOAD if load else []) + [os.path.join(OUT, "deflatebench"), "-q", "-T", "60",
                          "-u", f"127.0.0.1:{port}", "-P", str(peer_port), *extra],
                         capture_output=True, text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT")), None)
    if line is None or field(line, "errors") != "0":
        raise RuntimeError(f"deflatebench failed: {out.stdout} {out.stderr}")
    return line


def instructions(gateway, flags, size, messages, port=19322, peer_port=19323):
    log = os.path.join(OUT, "deflatememory-callgrind.log")
    g = start_gateway(gateway, port, peer_port, flags, log, valgrind=True)
    try:
        deflatebench(port, peer_port, "-n", str(messages), "-s", str(size), load=False)
    finally:
        g.terminate()
        g.wait()
    with open(log) as f:
        for line in f:
            if "Collected :" in line:
                return int(line.split(":")[-1])
    raise RuntimeError("no callgrind total")


def cpu(args):
    configs = [("off", ["--compression", "off"])]
    for level in (1, 6):
        for bits in (11, 15):
            for takeover in (True, False):
                name = f"level {level}, window {bits}{'' if takeover else ', no context takeover'}"
                flags = ["--compression", "on", "--compression-level", str(level), "--server-max-window-bits", str(bits)]
                if not takeover:
                    flags += ["--server-no-context-takeover", "yes"]
                configs.append((name, flags))
    n1, n2 = args.messages
    print(f"| settings | ratio | instructions per message | payload MB/s (runs) | line bytes |")
    print("|---|---|---|---|---|")
    for name, flags in configs:
        port, peer_port = 19324, 19325
        g = start_gateway(args.gateway, port, peer_port, flags, os.path.join(OUT, "deflatememory-gateway.log"))
        try:
            wait_listening(port, g)
            line = deflatebench(port, peer_port, "-n", "50000", "-s", str(args.line_size))
            ratio, line_bytes = float(field(line, "ratio")), float(field(line, "line_bytes"))
            speeds = [float(field(deflatebench(port, peer_port, "-d", "3", "-s", str(args.line_size)), "MBps"))
                      for _ in range(args.runs)]
        finally:
            stop(g)
        i1 = instructions(args.gateway, flags, args.line_size, n1)
        i2 = instructions(args.gateway, flags, args.line_size, n2)
        per_message = (i2 - i1) / (n2 - n1)
        print(f"| {name} | {ratio:.3f} | {per_message:,.0f} | {statistics.median(speeds):.1f} "
              f"({', '.join(f'{s:.1f}' for s in speeds)}) | {line_bytes:.0f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["memory", "cpu"])
    parser.add_argument("--gateway", default=os.environ.get("GATEWAY", os.path.join(ROOT, ".build", "release", "websocksy")))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=500, help="memory: connections measured")
    parser.add_argument("--warm", type=int, default=50, help="memory: warm-up connections opened first")
    parser.add_argument("--modes", default="abcdefg", help="memory: which modes (letters) to run, f is the baseline")
    parser.add_argument("--fill", type=int, default=0, help="memory: bytes of JSON lines each connection also exchanges")
    parser.add_argument("--line-size", type=int, default=0, help="cpu: 0 = 100-300 byte events, else batch lines of about this size")
    parser.add_argument("--messages", type=int, nargs=2, default=[2000, 6000], help="cpu: the two callgrind run lengths")
    args = parser.parse_args()
    build()
    memory(args) if args.what == "memory" else cpu(args)


if __name__ == "__main__":
    main()
