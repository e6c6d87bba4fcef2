"""Quiet logs, a safe demo, and the access log's client, fwd= and bytes= fields.

- Connections that close without a request byte (preconnects, port scans, connect-only health
  checks, a preconnect that waits out handshake-timeout) are logged at debug and counted; the
  sweep logs the count at info at most once a minute. The first summary comes on the next sweep
  (so these tests need no test-only setting), later ones when the minute since the last is over.
- A partial request that stalls still costs one info line.
- Access log: `time client fwd= "request" status bytes= proto= peer= in= out= time= close= by= user=`.
- `make run` and config/demo.cfg listen on 127.0.0.1 unless told otherwise.
"""
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

from conftest import ROOT, Gateway, lines_of
from test_tls import certs, client_context, tls_gateway  # noqa: F401 (certs is a fixture)
from wsraw import RawClient

SUMMARY = r"(\d+) connections? closed without a request in the last 60 s"
ACCESS = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (?P<client>\S+) fwd=(?P<fwd>\S+) "(?P<request>[^"]*)" (?P<status>\d+) '
                    r'bytes=(?P<bytes>\d+|-) proto=\S+ peer=\S+ in=\d+/\d+ out=\d+/\d+ time=\d+\.\d{3} close=\S+ by=\S+ user=\S+$')


def summaries(g):
    return [int(m.group(1)) for line in list(g.lines) if (m := re.search(SUMMARY, line))]


def about_clients(g, levels="info|warning|error"):
    """Log lines about one connection (they start with its address) at the given levels."""
    return [line for line in list(g.lines) if re.search(rf" ({levels}): (127\.0\.0\.1|\[::1\]):\d+: ", line)]


def access_lines(path, count, timeout=5):
    lines_of(path, count, timeout)
    time.sleep(0.2)  # and no more than that
    return [ACCESS.match(line) or pytest.fail(f"not an access-log line: {line!r}")
            for line in open(path).read().splitlines()]


def connect_and_close(port, count=1):
    for _ in range(count):
        socket.create_connection(("127.0.0.1", port)).close()


def wait_closed(sock, timeout=5):
    sock.settimeout(timeout)
    assert sock.recv(100) == b""


# 2. Connections without a request: counted, summarized, never one info line each.

def test_connect_and_close_is_counted_not_logged(gateway_factory, tmp_path):
    log = tmp_path / "access.log"
    g = gateway_factory("-c", "host=echo://", "--access-log", str(log))
    connect_and_close(g.port, 3)
    assert g.wait_for_log(SUMMARY)
    time.sleep(0.5)
    # One summary (the sweep may have run between the closes: the rest wait for the next minute).
    assert len(summaries(g)) == 1 and 1 <= summaries(g)[0] <= 3, g.log()
    assert about_clients(g, "info|warning|error|debug") == [], g.log()
    # The access log stays complete: one line each, no request, status 0.
    for line in access_lines(log, 3):
        assert re.fullmatch(r"127\.0\.0\.1:\d+", line["client"]) and line["fwd"] == "-"
        assert (line["request"], line["status"], line["bytes"]) == ("-", "0", "-")


def test_the_summary_comes_at_most_once_a_minute(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "-v")
    connect_and_close(g.port)
    assert g.wait_for_log(SUMMARY)
    assert summaries(g) == [1]
    connect_and_close(g.port, 5)
    time.sleep(1.5)  # six sweeps: none may write another summary within the minute
    assert summaries(g) == [1], g.log()
    # Counted all the same, and each is a debug line (with -v).
    closed = about_clients(g, "debug")
    assert len(closed) == 6 and all(line.endswith(": closed without a request\n") for line in closed), closed
    assert about_clients(g) == []


def test_an_idle_preconnect_waiting_out_the_handshake_timeout_is_counted(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--handshake-timeout", "1")
    s = socket.create_connection(("127.0.0.1", g.port))
    wait_closed(s)  # closed by the gateway after the timeout, having sent nothing
    assert g.wait_for_log(SUMMARY)
    assert summaries(g) == [1]
    assert "handshake not completed" not in g.log() and about_clients(g) == [], g.log()


def test_with_v_each_is_one_debug_line(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--handshake-timeout", "1", "-v")
    s = socket.create_connection(("127.0.0.1", g.port))
    wait_closed(s)
    assert g.wait_for_log(r"debug: 127\.0\.0\.1:\d+: closed without a request \(handshake timeout\)")
    assert g.wait_for_log(SUMMARY)
    assert about_clients(g) == [] and summaries(g) == [1]


def test_an_idle_tls_preconnect_is_counted_not_logged(gateway_factory, certs):  # noqa: F811
    """A browser's preconnect to wss:// completes the TLS handshake and then sends nothing."""
    g = tls_gateway(gateway_factory, certs, "--handshake-timeout", "1")
    raw = socket.create_connection(("127.0.0.1", g.port))
    s = client_context(certs).wrap_socket(raw, server_hostname="localhost")
    s.settimeout(5)
    try:
        assert s.recv(100) == b""
    except (ssl.SSLError, ConnectionResetError):
        pass
    s.close()
    assert g.wait_for_log(SUMMARY)
    assert summaries(g) == [1]
    assert "handshake not completed" not in g.log() and about_clients(g) == [], g.log()


# 3. A client that sent part of a request and stalled is still worth one info line.

def test_a_partial_request_that_stalls_is_logged(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--handshake-timeout", "1")
    c = RawClient(g.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    wait_closed(c.sock)
    assert g.wait_for_log(r"info: 127\.0\.0\.1:\d+: handshake not completed in time \(25 bytes of a request\)")
    time.sleep(0.5)
    assert len(about_clients(g)) == 1 and summaries(g) == [], g.log()


def test_a_partial_request_then_close_is_not_counted(gateway_factory):
    g = gateway_factory("-c", "host=echo://")
    c = RawClient(g.port)
    c.send(b"GET /")
    time.sleep(0.1)
    c.close()
    time.sleep(0.6)
    assert summaries(g) == [], g.log()


def test_a_kept_alive_connection_asking_for_nothing_more_is_not_an_error(gateway_factory, tmp_path):
    (tmp_path / "index.html").write_text("hi")
    g = gateway_factory("-c", "host=echo://", "--web", str(tmp_path), "--handshake-timeout", "1")
    c = RawClient(g.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, head = c.read_response()
    assert status == 200 and c.read_body(2) == b"hi"
    wait_closed(c.sock)  # the handshake timeout between requests
    time.sleep(0.5)
    assert "handshake not completed" not in g.log() and about_clients(g) == [] and summaries(g) == [], g.log()


# 4. The client column is always address:port; a trusted proxy's client is in fwd=.

def test_client_column_is_address_and_port_with_fwd_apart(gateway_factory, tmp_path):
    log = tmp_path / "access.log"
    g = gateway_factory("-c", "host=echo://", "--access-log", str(log), "--trusted-proxy", "127.0.0.1")
    c = RawClient(g.port)
    c.handshake(extra="X-Forwarded-For: 203.0.113.9\r\n")
    c.close()
    c = RawClient(g.port)
    c.handshake()
    c.close()
    first, second = access_lines(log, 2)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", first["client"]) and first["fwd"] == "203.0.113.9"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", second["client"]) and second["fwd"] == "-"
    assert first["client"] != second["client"]  # the port tells connections apart


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_client_column_is_bracketed(tmp_path):
    log = tmp_path / "access.log"
    g = Gateway(["-l", "::1", "-p", "0", "-c", "host=echo://", "--access-log", str(log)])
    try:
        s = socket.create_connection(("::1", g.port))
        port = s.getsockname()[1]
        s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        while s.recv(4096):
            pass
        s.close()
        (line,) = access_lines(log, 1)
        assert line["client"] == f"[::1]:{port}" and line["fwd"] == "-"
    finally:
        g.stop()


# 5. Web-root lines show the body bytes sent.

def test_web_root_lines_show_the_body_bytes_sent(gateway_factory, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("<h1>demo</h1>")  # 13 bytes
    (root / "data.bin").write_bytes(bytes(range(256)) * 1000)
    log = tmp_path / "access.log"
    g = gateway_factory("-c", "host=echo://", "--web", str(root), "--access-log", str(log))
    c = RawClient(g.port)
    expected = []
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, head = c.read_response()
    assert c.read_body(13) == b"<h1>demo</h1>"
    expected.append(("GET /", "200", "13"))
    c.send(b"HEAD /data.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_response()[0] == 200
    expected.append(("HEAD /data.bin", "200", "0"))
    c.send(f"GET / HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {head['last-modified']}\r\n\r\n".encode())
    assert c.read_response()[0] == 304
    expected.append(("GET /", "304", "0"))
    c.send(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    status, missing = c.read_response()
    assert status == 404
    c.read_body(int(missing["content-length"]))
    expected.append(("GET /nothing", "404", missing["content-length"]))
    c.send(b"GET /data.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, head = c.read_response()
    assert status == 200 and len(c.read_body(256000)) == 256000
    expected.append(("GET /data.bin", "200", "256000"))
    c.close()
    lines = access_lines(log, len(expected))
    assert [(m["request"], m["status"], m["bytes"]) for m in lines] == expected
    # The 426 page of a gateway without a web root counts its body too.
    log426 = tmp_path / "426.log"
    g = gateway_factory("-c", "host=echo://", "--access-log", str(log426))
    c = RawClient(g.port)
    c.send(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
    status, head = c.read_response()
    assert status == 426
    (line,) = access_lines(log426, 1)
    assert line["bytes"] == head["content-length"]


def test_a_download_cut_short_logs_what_was_sent(gateway_factory, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    size = 64 << 20
    with open(root / "big.bin", "wb") as f:
        f.truncate(size)
    log = tmp_path / "access.log"
    g = gateway_factory("-c", "host=echo://", "--web", str(root), "--access-log", str(log))
    c = RawClient(g.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_response()[0] == 200
    c.read_body(100000)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset
    c.close()
    (line,) = access_lines(log, 1, timeout=10)
    assert line["status"] == "200" and 100000 <= int(line["bytes"]) < size, line.group(0)


# 1. The demo listens on localhost unless told otherwise.

def make_run_command():
    """The gateway's command line from the Makefile's `run` recipe, with its default LISTEN."""
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    listen = re.search(r"^run: LISTEN \?= (\S+)$", makefile, re.M).group(1)
    recipe = re.search(r"^\t.*\./\$\(RELEASE\) (config/demo\.cfg.*)$", makefile, re.M).group(1)
    return recipe.replace("$(LISTEN)", listen).split()


def demo_listening_address(args):
    # The demo's port is fixed (8001): -p 0 after it picks a free one; everything else as given.
    g = Gateway([*args, "-p", "0"], cwd=ROOT)
    try:
        return re.search(r"listening on (\S+):\d+ ", g.log()).group(1)
    finally:
        g.stop()


def test_make_run_listens_on_localhost():
    args = make_run_command()
    assert args[:3] == ["config/demo.cfg", "-l", "127.0.0.1"], args
    assert demo_listening_address(args) == "127.0.0.1"


def test_make_run_listen_override_exposes_it():
    out = subprocess.run(["make", "-n", "-C", ROOT, "run", "LISTEN=::"], capture_output=True, text=True).stdout
    assert re.search(r"websocksy config/demo\.cfg -l ::$", out, re.M), out
    assert demo_listening_address(["config/demo.cfg", "-l", "::"]) == "[::]"


def test_demo_cfg_alone_listens_on_localhost():
    assert demo_listening_address(["config/demo.cfg"]) == "127.0.0.1"
