"""Keepalive, graceful shutdown, configuration errors, and resource hygiene under bad input."""
import asyncio
import signal
import socket
import struct
import subprocess
import time

import pytest
import websockets

from conftest import BINARY, Gateway
from wsraw import RawClient, close_body, frame, request


def test_keepalive_pings_and_closes_a_silent_client(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "-k", "1")
    c = RawClient(g.port, timeout=10)
    c.handshake()
    started = time.time()
    fin, opcode, payload = c.recv_frame()
    assert opcode == 9, "expected a keepalive ping"
    assert 0.7 <= time.time() - started <= 3
    # We do not answer: after another interval the server gives up.
    c.expect_close(1001)
    assert time.time() - started <= 6
    assert g.wait_for_log("no answer to the keepalive ping")


def test_keepalive_keeps_an_answering_client(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "-k", "1")

    async def go():
        async with websockets.connect(g.url, ping_interval=None) as ws:
            await asyncio.sleep(3.5)  # websockets answers the server's pings by itself
            await ws.send("still here")
            assert await ws.recv() == "still here"
    asyncio.run(go())


def test_sigterm_sends_1001_and_exits_zero(gateway_factory):
    g = gateway_factory("-c", "host=echo://")
    clients = [RawClient(g.port) for _ in range(3)]
    for c in clients:
        c.handshake()
    half_open = RawClient(g.port)
    half_open.send(b"GET / HTTP/1.1\r\n")
    time.sleep(0.1)
    g.proc.send_signal(signal.SIGTERM)
    for c in clients:
        fin, opcode, payload = c.recv_frame()
        assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1001
        c.send(frame(8, close_body(1001)))
        c.expect_eof()
    assert g.proc.wait(10) == 0


def test_shutdown_waits_for_close_replies_only_so_long(gateway_factory):
    g = gateway_factory("-c", "host=echo://")
    c = RawClient(g.port)
    c.handshake()
    started = time.time()
    g.proc.send_signal(signal.SIGTERM)
    assert c.recv_frame()[1] == 8  # we never answer
    assert g.proc.wait(10) == 0
    assert time.time() - started < 8


def run_binary(*args, cwd=None):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=10, cwd=cwd)


@pytest.mark.parametrize("args,message", [
    (["-x"], "unknown option '-x'"),
    (["-p"], "-p needs a value"),
    (["-p", "99999"], "port must be"),
    (["-c", "host=echo://", "-c", "colour=red"], "unknown option 'colour'"),
    (["-b", "nosuch"], "backend_nosuch.so: cannot load backend"),
    ([], "no peer configured"),
    (["-c", "host=gopher://x"], "unsupported peer scheme"),
])
def test_bad_flags_exit_2(args, message):
    r = run_binary(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_config_file_names_file_and_line(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[core]\nport = 8001\nprot = 1\n")
    r = run_binary(str(cfg))
    assert r.returncode == 2
    assert f"{cfg}:3: unknown [core] key 'prot'" in r.stderr


def test_bad_backend_option_in_file_names_line(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[core]\nport = 0\n\n[backend]\nhost = echo://\nnonsense = 1\n")
    r = run_binary(str(cfg))
    assert r.returncode == 2
    assert f"{cfg}:6:" in r.stderr


def test_unreadable_config_file():
    r = run_binary("/nonexistent/websocksy.cfg")
    assert r.returncode == 2 and "/nonexistent/websocksy.cfg" in r.stderr


def test_config_file_runs(tmp_path):
    cfg = tmp_path / "ok.cfg"
    cfg.write_text("; example\n[core]\nport = 0\nlisten = 127.0.0.1\nping = 0\n\n[backend]\nhost = echo://\n")
    g = Gateway([str(cfg)])
    try:
        c = RawClient(g.port)
        c.handshake()
        c.send(frame(1, b"from file config"))
        assert c.recv_frame() == (True, 1, b"from file config")
    finally:
        assert g.stop() == 0


def test_help_and_version():
    r = run_binary("--help")
    assert r.returncode == 0
    for flag in ["-p", "-l", "-k", "-b", "-c", "-v", "--max-message", "--handshake-timeout", "default 8001"]:
        assert flag in r.stdout
    r = run_binary("-V")
    assert r.returncode == 0 and r.stdout.startswith("websocksy ")


def test_no_descriptor_leaks_under_hostile_input(gateway_factory):
    # Every state has a deadline (handshake 3 s here, closing 5 s), so all must be freed within 8 s.
    g = gateway_factory("-c", "host=echo://", "--handshake-timeout", "3")
    time.sleep(0.2)
    before = g.fd_count()
    port = g.port
    for i in range(30):
        # Refused handshakes, frames cut off mid-way, resets, violations, clean and unclean closes.
        for data in [b"GARBAGE\r\n\r\n", request(version="7"), request() + frame(2, b"x" * 1000)[:300],
                     request() + frame(1, b"\xff"), request() + frame(8, close_body(1000)), request()[:30]]:
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(data)
            if i % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            s.close()
    # Connections that closed uncleanly linger at most the close timeout.
    deadline = time.time() + 8
    while time.time() < deadline and g.fd_count() != before:
        time.sleep(0.1)
    assert g.fd_count() == before
    assert g.proc.poll() is None
    c = RawClient(port)
    c.handshake()
    c.send(frame(1, b"alive"))
    assert c.recv_frame() == (True, 1, b"alive")


def test_slow_reader_does_not_grow_memory_without_bound(echo_gateway):
    """A client that sends but never reads: the server stops reading it once its queue is full."""
    c = RawClient(echo_gateway.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.handshake()
    c.sock.settimeout(0.5)
    chunk = frame(2, b"z" * 65536)
    sent = 0
    try:
        while sent < 256 << 20:
            c.sock.sendall(chunk)
            sent += len(chunk)
    except socket.timeout:
        pass
    assert sent < 64 << 20, "the server kept reading from a client that does not read"
    status = open(f"/proc/{echo_gateway.proc.pid}/status").read()
    rss_kb = int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1])
    assert rss_kb < 64 * 1024
