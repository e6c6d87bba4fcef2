"""Fixtures that start the real websocksy binary and talk to it over real sockets."""
import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("WEBSOCKSY_BIN", os.path.join(ROOT, ".build", "release", "websocksy"))


def free_port():
    """A TCP port nothing listens on right now (for servers that cannot take port 0)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Gateway:
    """One running websocksy process; its stderr is collected line by line."""

    def __init__(self, args, cwd=None):
        self.args = args
        self.lines = []
        self.proc = subprocess.Popen([BINARY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=cwd)
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        self.port = None
        deadline = time.time() + 10
        while time.time() < deadline and self.port is None:
            for line in list(self.lines):
                m = re.search(r"listening on .*:(\d+) ", line)
                if m:
                    self.port = int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        if self.port is None:
            self.stop()
            raise RuntimeError("websocksy did not start: " + "".join(self.lines))

    def _collect(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}"

    def log(self):
        return "".join(self.lines)

    def wait_for_log(self, pattern, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if re.search(pattern, self.log()):
                return True
            time.sleep(0.02)
        return False

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        return self.proc.returncode


def lines_of(path, count=1, timeout=5):
    """The lines of a file (an access log) once it has at least `count`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            lines = open(path).read().splitlines()
            if len(lines) >= count:
                return lines
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} lines in {path}")


def status_kib(pid, field):
    """A memory figure of a process from /proc/PID/status (VmRSS, VmSize, ...), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field}")


def rss_kib(pid):
    """Resident memory of a process, in KiB."""
    return status_kib(pid, "VmRSS")


@pytest.fixture
def gateway_factory():
    started = []

    def start(*args):
        g = Gateway(["-l", "127.0.0.1", "-p", "0", *args])
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@pytest.fixture
def echo_gateway(gateway_factory):
    return gateway_factory("-c", "host=echo://")


class Peer:
    """A peer process (Tests/integration/peer.py) listening on a real socket."""

    def __init__(self, transport, mode="echo", arg=None, address=None):
        if address is None:
            address = "127.0.0.1:0" if transport in ("tcp", "udp") else f"/tmp/websocksy-test-{os.getpid()}-{id(self)}.sock"
        args = [sys.executable, os.path.join(os.path.dirname(__file__), "peer.py"), transport, address, mode]
        if arg is not None:
            args.append(arg)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("READY "), line
        self.address = line.split(" ", 1)[1].strip()
        self.url = f"{'unix-dgram' if transport == 'unix-dgram' else transport}://{self.address}"

    def output_line(self, timeout=10):
        result = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        return result[0] if result else ""

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def peer_factory():
    started = []

    def start(*args, **kwargs):
        p = Peer(*args, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def refusal_status(url, **connect_options):
    """The HTTP status with which the gateway refuses a WebSocket upgrade (fails if it accepts)."""
    import websockets
    from websockets.exceptions import InvalidStatus

    async def attempt():
        try:
            async with websockets.connect(url, **connect_options):
                pass
        except InvalidStatus as refused:
            return refused.response.status_code
        raise AssertionError(f"{url}: the upgrade was accepted")
    return asyncio.run(attempt())

