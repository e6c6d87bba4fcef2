"""Limits, timeouts and access policy: each has its own test."""
import asyncio
import os
import signal
import socket
import stat
import subprocess
import time

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from conftest import BINARY, Gateway
from wsraw import RawClient, close_body, frame, request


def run(coro):
    return asyncio.run(coro)


async def status_of(url, **kw):
    try:
        async with websockets.connect(url, **kw) as ws:
            await ws.send("x")
            await ws.recv()
            return 101
    except InvalidStatus as e:
        return e.response.status_code


def test_max_connections_gets_503(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--max-connections", "3")
    clients = []
    for _ in range(3):
        c = RawClient(g.port)
        c.handshake()
        clients.append(c)
    extra = RawClient(g.port)
    extra.send(request())
    status, _ = extra.read_response()
    assert status == 503
    assert g.wait_for_log("max-connections = 3")
    clients[0].send(frame(8, close_body(1000)))
    clients[0].expect_close(1000)
    time.sleep(0.2)
    assert run(status_of(g.url)) == 101


def test_header_limits_are_configurable(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--max-header-bytes", "2k", "--max-headers", "10")
    for extra in ["X-Big: " + "a" * 3000 + "\r\n", "".join(f"X-{i}: v\r\n" for i in range(12))]:
        c = RawClient(g.port)
        c.send(request(extra=extra))
        assert c.read_response()[0] == 431


def test_idle_timeout(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--idle-timeout", "1", "-k", "0")

    async def go():
        async with websockets.connect(g.url) as idle, websockets.connect(g.url) as busy:
            for _ in range(8):  # 2 s of traffic on one, silence on the other
                await busy.send("tick")
                assert await busy.recv() == "tick"
                await asyncio.sleep(0.25)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(idle.recv(), 3)
            assert idle.close_code == 1001
    run(go())


@pytest.mark.parametrize("origin,status", [
    ("https://good.example", 101),
    ("HTTPS://GOOD.EXAMPLE/", 101),
    ("null", 101),
    ("https://evil.example", 403),
    ("https://good.example.evil.example", 403),
    (None, 403),
])
def test_origin_allow_list(gateway_factory, origin, status):
    g = gateway_factory("-c", "host=echo://", "--origin", "https://good.example", "--origin", "null")
    c = RawClient(g.port)
    c.send(request(extra=f"Origin: {origin}\r\n" if origin else ""))
    assert c.read_response()[0] == status
    if status == 403:
        assert g.wait_for_log("refused with 403")


def test_unix_socket_listener(tmp_path):
    path = str(tmp_path / "ws.sock")
    proc = subprocess.Popen([BINARY, "-l", f"unix:{path}", "--unix-mode", "0600", "-c", "host=echo://"],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 5
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.02)
        assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        c = RawClient.__new__(RawClient)
        c.sock, c.buf = s, b""
        c.sock.settimeout(5)
        c.handshake()
        c.send(frame(1, b"over a unix socket"))
        assert c.recv_frame() == (True, 1, b"over a unix socket")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not os.path.exists(path)  # removed on exit


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root (CI runs as root)")
def test_drops_to_user_after_binding(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "-n", "nobody")
    status = open(f"/proc/{g.proc.pid}/status").read()
    uids = next(l for l in status.splitlines() if l.startswith("Uid:")).split()[1:]
    assert set(uids) == {"65534"}
    assert g.wait_for_log("running as nobody")
    assert run(status_of(g.url)) == 101


def test_unknown_user_stops_start_up():
    r = subprocess.run([BINARY, "-p", "0", "-c", "host=echo://", "-n", "no-such-user-here"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "no such user" in r.stderr


def test_shutdown_timeout(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--shutdown-timeout", "1")
    c = RawClient(g.port)
    c.handshake()
    started = time.time()
    g.proc.send_signal(signal.SIGTERM)
    assert c.recv_frame()[1] == 8  # close 1001, which we never answer
    assert g.proc.wait(10) == 0
    assert time.time() - started < 2.5


def test_shutdown_flushes_queued_data_to_the_peer(gateway_factory, peer_factory):
    peer = peer_factory("tcp", "sink")
    g = gateway_factory("-c", f"host={peer.url}")
    c = RawClient(g.port)
    c.handshake()
    payload = os.urandom(4 << 20)
    c.send(frame(2, payload))
    g.proc.send_signal(signal.SIGTERM)
    fin, opcode, body = c.recv_frame()
    assert opcode == 8
    c.send(frame(8, close_body(1001)))
    assert g.proc.wait(10) == 0
    assert peer.output_line().split()[2] == str(len(payload))


def test_sighup_reloads_the_configuration(tmp_path):
    cfg = tmp_path / "ws.cfg"
    cfg.write_text("[core]\nport = 0\nlisten = 127.0.0.1\nmax-message = 1k\n\n[backend]\nhost = echo://\n")
    g = Gateway([str(cfg)])
    try:
        held = RawClient(g.port)
        held.handshake()
        cfg.write_text("[core]\nport = 0\nlisten = 127.0.0.1\nmax-message = 64k\norigin = https://ok.example\n\n[backend]\nhost = echo://\n")
        g.proc.send_signal(signal.SIGHUP)
        assert g.wait_for_log("configuration reloaded")
        c = RawClient(g.port)
        c.handshake(extra="Origin: https://ok.example\r\n")
        c.send(frame(2, b"x" * 4000))
        assert c.recv_frame() == (True, 2, b"x" * 4000)  # the new limit
        c = RawClient(g.port)
        c.send(request())
        assert c.read_response()[0] == 403  # the new origin list
        held.send(frame(1, b"still here"))  # an established connection is untouched
        assert held.recv_frame() == (True, 1, b"still here")
        cfg.write_text("[core]\nport = 0\nbogus line\n")
        g.proc.send_signal(signal.SIGHUP)
        assert g.wait_for_log("configuration reload failed")
        c = RawClient(g.port)
        c.handshake(extra="Origin: https://ok.example\r\n")
    finally:
        assert g.stop() == 0


def test_descriptor_exhaustion_does_not_spin(tmp_path):
    """With the descriptor limit reached, waiting clients are accepted and closed, not left to spin
    the loop: the process stays almost idle and logs at most once a second."""
    proc = subprocess.Popen(["prlimit", "--nofile=40:40", BINARY, "-l", "127.0.0.1", "-p", "0", "-c", "host=echo://"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
        socks = []
        for _ in range(60):
            s = socket.create_connection(("127.0.0.1", port))
            socks.append(s)
        time.sleep(0.5)
        fields = open(f"/proc/{proc.pid}/stat").read().split()
        before = int(fields[13]) + int(fields[14])
        time.sleep(2)
        fields = open(f"/proc/{proc.pid}/stat").read().split()
        after = int(fields[13]) + int(fields[14])
        assert after - before < 50, f"{after - before} clock ticks of CPU in 2 s"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    log = proc.stderr.read()
    assert 1 <= log.count("out of file descriptors") <= 4
