"""Edges outside the connection core (issue 13): web-root escape through a symlinked index, log
injection, privileges of the supervisor, close codes 1012–1014, out-of-range numbers in the
configuration, `auto` framing on datagram peers, text from framing plugins that is not UTF-8, and
what happens to bytes left unframed when the peer closes."""
import asyncio
import http.client
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import websockets

from conftest import BINARY, ROOT, Gateway
from wsraw import RawClient, close_body, frame, request

TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(ROOT, ".build", "test-plugins"))


def run(coro):
    return asyncio.run(coro)


def get(port, path):
    """Status and body of a plain GET."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def raw_exchange(port, data):
    """Sends raw bytes and returns everything the gateway answers before it closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    s.close()
    return answer


async def messages_until_close(url):
    """Every message the gateway sends, then the close code."""
    got = []
    async with websockets.connect(url, max_size=None) as ws:
        try:
            while True:
                got.append(await asyncio.wait_for(ws.recv(), 5))
        except websockets.ConnectionClosed:
            return got, ws.close_code


def start_with_plugins(*args):
    return Gateway(["-l", "127.0.0.1", "-p", "0", "--plugins", TEST_PLUGINS, *args])


# 1. Web root: an index.html that is a symbolic link out of the root.

def test_symlinked_index_cannot_escape_the_web_root(gateway_factory, tmp_path):
    (tmp_path / "secret.html").write_text("outside the root")
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "index.html").symlink_to(tmp_path / "secret.html")
    (root / "inside").mkdir()
    (root / "page.html").write_text("inside the root")
    (root / "inside" / "index.html").symlink_to(root / "page.html")
    g = gateway_factory("--web", str(root), "-c", "host=echo://")
    for path in ["/docs/index.html", "/docs/", "/docs"]:
        status, body = get(g.port, path)
        assert status == 404 and b"outside" not in body, path
    # A link that stays inside the root is still followed.
    assert get(g.port, "/inside/") == (200, b"inside the root")


# 2. Log injection: control characters and quotes are escaped, reflected values capped.

def test_request_target_cannot_forge_log_lines(gateway_factory):
    g = gateway_factory("-c", "host=echo://")  # no web root: plain requests are refused with 426
    answer = raw_exchange(g.port, b'GET /x\rFORGED:line\x1b[2J"\x0b\x00 HTTP/1.1\r\nHost: a\r\n\r\n')
    assert answer.startswith(b"HTTP/1.1 426")
    assert g.wait_for_log(r"refused with 426")
    log = g.log()
    assert not any(line.startswith("FORGED") for line in log.splitlines())
    assert "\x1b" not in log and "\x0b" not in log and "\x00" not in log
    assert r"GET /x\x0DFORGED:line\x1B[2J" in log and r"\x0B\x00 is not" in log


def test_header_values_in_refusals_are_escaped(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--origin", "https://ok.example")
    c = RawClient(g.port)
    c.send(request(extra="Origin: https://evil.example\x1b]0;owned\x07\x7f\r\n"))
    assert c.read_response()[0] == 403
    assert g.wait_for_log(r"refused with 403")
    assert r"https://evil.example\x1B]0;owned\x07\x7F is not allowed" in g.log()
    assert "\x1b" not in g.log()


def test_reflected_values_are_capped(gateway_factory):
    g = gateway_factory("-c", "host=echo://")
    long_method = b"M" * 10000
    answer = raw_exchange(g.port, request().replace(b"GET", long_method, 1))
    assert answer.startswith(b"HTTP/1.1 400") and len(answer) < 1000
    offered = ", ".join(f"proto{i}" for i in range(1000))
    c = RawClient(g.port)
    c.send(request(extra=f"Sec-WebSocket-Protocol: {offered}\r\n"))
    assert c.read_response()[0] == 400
    raw_exchange(g.port, b"GET /" + b"t" * 15000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")  # 426 without a web root
    assert g.wait_for_log(r"refused with 426")
    refusals = [line for line in g.lines if "refused with" in line]
    assert len(refusals) == 3
    assert "MMMM…(10000 bytes) is not GET" in refusals[0] and len(refusals[0]) < 500
    assert "proto0, proto1" in refusals[1] and "…(" in refusals[1] and len(refusals[1]) < 500
    assert len(refusals[2]) < 4200  # the whole message is bounded too


def test_access_log_fields_are_escaped(gateway_factory, tmp_path):
    log = tmp_path / "access.log"
    g = gateway_factory("-c", "host=echo://", "--access-log", str(log))
    c = RawClient(g.port)
    c.handshake(path='/a"b\x1bc\x7f')
    c.send(frame(8, close_body(1000)))
    c.expect_close(1000)
    c.close()
    deadline = time.time() + 5
    while time.time() < deadline and not (log.exists() and log.read_bytes()):
        time.sleep(0.05)
    line = log.read_bytes().decode()
    assert line.count("\n") == 1 and "\x1b" not in line and "\x7f" not in line
    assert r'"GET /a\x22b\x1Bc\x7F" 101 ' in line


# 3. Privileges: with workers, the supervisor drops to the user too.

def supervisor_and_workers(g):
    workers = []
    deadline = time.time() + 5
    while time.time() < deadline and len(workers) < 2:
        workers = [int(p) for p in open(f"/proc/{g.proc.pid}/task/{g.proc.pid}/children").read().split()]
        time.sleep(0.05)
    return [g.proc.pid, *workers]


def uids(pid):
    status = open(f"/proc/{pid}/status").read()
    return set(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:])


def privileged_free_port():
    for port in range(1023, 900, -1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.fail("no free port below 1024")


async def echo_once(port, text):
    async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
        await ws.send(text)
        assert await asyncio.wait_for(ws.recv(), 5) == text


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root (CI runs as root)")
def test_supervisor_drops_privileges_and_restarts_on_a_privileged_port():
    port = privileged_free_port()
    g = Gateway(["-l", "127.0.0.1", "-p", str(port), "-c", "host=echo://", "-n", "nobody", "-w", "2"])
    try:
        processes = supervisor_and_workers(g)
        assert len(processes) == 3
        for pid in processes:
            assert uids(pid) == {"65534"}, pid
        run(echo_once(port, "as nobody"))
        # The replacement of a dead worker starts as nobody and still serves the port below 1024.
        os.kill(processes[1], signal.SIGKILL)
        assert g.wait_for_log(f"worker {processes[1]} ended")
        time.sleep(1.5)
        for i in range(10):
            run(echo_once(port, f"after the restart {i}"))
        assert "could not start" not in g.log()
    finally:
        assert g.stop() == 0


def test_sigusr1_to_the_supervisor_only_reopens_logs(gateway_factory, tmp_path):
    g = gateway_factory("-c", "host=echo://", "-w", "2", "--access-log", str(tmp_path / "access.log"))
    workers = supervisor_and_workers(g)[1:]
    for _ in range(2):
        g.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
    assert supervisor_and_workers(g)[1:] == workers
    run(echo_once(g.port, "still serving"))


# 9. Close codes from the IANA registry.

@pytest.mark.parametrize("code", [1012, 1013, 1014])
def test_close_codes_1012_to_1014_are_echoed(echo_gateway, code):
    c = RawClient(echo_gateway.port)
    c.handshake()
    c.send(frame(8, close_body(code, b"restarting")))
    c.expect_close(code)


# 10. Numbers in the configuration are range-checked; nothing computed from them can trap.

@pytest.mark.parametrize("flag,value,key", [
    ("--handshake-timeout", "9999999999999999", "handshake-timeout"),
    ("--handshake-timeout", "9223372036854775", "handshake-timeout"),
    ("--connect-timeout", "9223372036854775", "connect-timeout"),
    ("--shutdown-timeout", "9223372036854775", "shutdown-timeout"),
    ("--idle-timeout", "9223372036854775", "idle-timeout"),
    ("-k", "9223372036854775", "ping"),
    ("--max-connections", "9223372036854775807", "max-connections"),
    ("--buffer-memory", "1k", "buffer-memory"),
])
def test_out_of_range_numbers_stop_start_up(flag, value, key):
    proc = subprocess.Popen([BINARY, "-l", "127.0.0.1", "-p", "0", "-c", "host=echo://", flag, value],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.wait(10) == 2
    finally:
        proc.kill()
    message = proc.stderr.read()
    assert f"command line ({flag}): {key} must be" in message
    assert len(message.strip().splitlines()) == 1


def test_out_of_range_number_in_a_file_names_file_and_line(tmp_path):
    cfg = tmp_path / "huge.cfg"
    cfg.write_text("[core]\nport = 0\nconnect-timeout = 99999999999999\n\n[backend]\nhost = echo://\n")
    r = subprocess.run([BINARY, str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert f"{cfg}:3: connect-timeout must be a number of seconds from 1 to 31536000 (365 days)" in r.stderr


def test_largest_timeouts_run(gateway_factory, peer_factory):
    peer = peer_factory("tcp")
    year = "31536000"
    g = gateway_factory("-c", f"host={peer.url}", "--handshake-timeout", year, "--connect-timeout", year,
                        "--idle-timeout", year, "-k", year, "--shutdown-timeout", year, "--buffer-memory", "64M")
    run(echo_once(g.port, "a year"))
    assert g.stop() == 0


# 6. `auto` on datagram peers: one datagram, one message, whatever its bytes.

@pytest.mark.parametrize("transport", ["udp", "unix-dgram"])
def test_auto_framing_keeps_datagram_boundaries(gateway_factory, peer_factory, transport):
    # A datagram ending inside a character, one that completes it, and a lone lead byte.
    peer = peer_factory(transport, "script", repr([b"ab\xe2\x82", b"\xac", b"\xf0", b"text"]))
    g = gateway_factory("-c", f"host={peer.url}")  # framing auto

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send(b"hello")  # the peer learns our address from this datagram
            return [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
    assert run(go()) == [b"ab\xe2\x82", b"\xac", b"\xf0", "text"]


# 7. Text from a framing plugin that is not UTF-8 goes out as binary, logged once per connection.

def test_invalid_text_from_a_plugin_goes_out_as_binary(peer_factory):
    peer = peer_factory("tcp", "script", repr([b"fine", b"\xff\xfe", b"caf\xc3", b"\xa9"]))
    g = start_with_plugins("-c", f"host={peer.url}", "-c", "framing=liar")
    try:
        got, code = run(messages_until_close(g.url))
        assert got == ["fine", b"\xff\xfe", b"caf\xc3", b"\xa9"] and code == 1000
        assert len(re.findall(r"framing 'liar' marked a message that is not UTF-8 as text", g.log())) == 1
    finally:
        assert g.stop() == 0


def test_framing_json_cannot_send_invalid_text(peer_factory):
    peer = peer_factory("tcp", "script", repr([b'{"name":"\xff\xfe"}', b' {"name":"ok"}']))
    g = start_with_plugins("-c", f"host={peer.url}", "-c", "framing=json")
    try:
        got, _ = run(messages_until_close(g.url))
        assert got == [b'{"name":"\xff\xfe"}', '{"name":"ok"}']
    finally:
        g.stop()


# 8. Bytes left unframed when the peer closes: plugins drop them, built-ins deliver them.

def test_plugin_framing_drops_a_partial_record_at_close(peer_factory):
    peer = peer_factory("tcp", "script", repr([b"abcdefghij"]))
    g = start_with_plugins("-c", f"host={peer.url}", "-c", "framing=fixedlength", "-c", "framing-config=4", "-v")
    try:
        got, code = run(messages_until_close(g.url))
        assert got == [b"abcd", b"efgh"] and code == 1000
        assert g.wait_for_log(r"dropping 2 bytes framing 'fixedlength' never framed")
    finally:
        g.stop()


@pytest.mark.parametrize("framing,config,sent,expected", [
    ("newline", "lf", [b"one\ntwo"], ["one\n", "two"]),
    ("newline", "lf", [b"one\n\xff"], ["one\n", b"\xff"]),
    ("separator", "|", [b"a|b"], [b"a|", b"b"]),
    ("auto", None, [b"ab\xe2\x82"], ["ab", b"\xe2\x82"]),
])
def test_builtin_framings_deliver_the_remainder_at_close(gateway_factory, peer_factory, framing, config, sent, expected):
    peer = peer_factory("tcp", "script", repr(sent))
    g = gateway_factory("-c", f"host={peer.url}", "-c", f"framing={framing}", *(["-c", f"framing-config={config}"] if config else []))
    got, code = run(messages_until_close(g.url))
    assert got == expected and code == 1000


# 5. Datagrams from the peer arrive whole, or close the connection with 1009: never cut.

def test_large_unix_datagram_arrives_whole(gateway_factory, peer_factory):
    peer = peer_factory("unix-dgram", "script", repr([b"d" * 100_000]))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=binary")

    async def go():
        async with websockets.connect(g.url, max_size=None) as ws:
            await ws.send(b"hello")  # the peer learns our address from this datagram
            return await asyncio.wait_for(ws.recv(), 5)
    assert run(go()) == b"d" * 100_000


@pytest.mark.parametrize("transport", ["udp", "unix-dgram"])
def test_datagram_over_peer_buffer_closes_with_1009(gateway_factory, peer_factory, transport):
    peer = peer_factory(transport, "script", repr([b"small", b"L" * 20_000]))
    g = gateway_factory("-c", f"host={peer.url}", "-c", "framing=binary", "--peer-buffer", "16k")

    async def go():
        async with websockets.connect(g.url, max_size=None) as ws:
            await ws.send(b"hello")
            got = [await asyncio.wait_for(ws.recv(), 5)]
            with pytest.raises(websockets.ConnectionClosed):
                got.append(await asyncio.wait_for(ws.recv(), 5))
            return got, ws.close_code
    assert run(go()) == ([b"small"], 1009)
    assert g.wait_for_log("20000-byte datagram from the peer exceeds")
