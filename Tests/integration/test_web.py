"""The web root (--web DIR) and the 426 page for plain requests without one."""
import os
import socket
import time

import pytest

from wsraw import RawClient, frame


def http(port, method="GET", path="/", headers=""):
    c = RawClient(port)
    c.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    status, head = c.read_response()
    body = c.read_body(int(head.get("content-length", 0))) if method != "HEAD" else b""
    c.expect_eof()
    return status, head, body


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<h1>demo</h1>")
    (root / "sub" / "style.css").write_text("body {}")
    (root / "sub" / "index.html").write_text("sub index")
    (root / "data.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    return root


def test_files_types_and_index(gateway_factory, site):
    g = gateway_factory("-c", "host=echo://", "--web", str(site))
    status, head, body = http(g.port, path="/")
    assert (status, head["content-type"], body) == (200, "text/html; charset=utf-8", b"<h1>demo</h1>")
    assert http(g.port, path="/sub/")[2] == b"sub index"
    status, head, body = http(g.port, path="/sub/style.css?v=3")
    assert (status, head["content-type"]) == (200, "text/css; charset=utf-8")
    status, head, body = http(g.port, path="/data.bin")
    assert head["content-type"] == "application/octet-stream" and body == bytes(range(256)) * 10


def test_head_conditional_and_methods(gateway_factory, site):
    g = gateway_factory("-c", "host=echo://", "--web", str(site))
    status, head, body = http(g.port, "HEAD", "/")
    assert status == 200 and head["content-length"] == "13" and body == b""
    assert http(g.port, headers=f"If-Modified-Since: {head['last-modified']}\r\n")[0] == 304
    assert http(g.port, headers="If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n")[0] == 200
    status, head, _ = http(g.port, "POST", "/")
    assert status == 405 and head["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/sub/..%2f..%2fsecret.txt",
                                  "/escape.txt", "/nothing", "/sub/%00x", "/%zz"])
def test_nothing_outside_the_root(gateway_factory, site, path):
    g = gateway_factory("-c", "host=echo://", "--web", str(site))
    c = RawClient(g.port)
    c.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    status, head = c.read_response()
    assert status == 404 and b"outside" not in c.read_body(int(head["content-length"]))


def test_websocket_still_works_beside_the_web_root(gateway_factory, site):
    g = gateway_factory("-c", "host=echo://", "--web", str(site))
    c = RawClient(g.port)
    c.handshake()


def test_without_web_root_a_plain_get_gets_426(echo_gateway):
    status, head, body = http(echo_gateway.port)
    assert status == 426 and head["upgrade"] == "websocket"
    assert b"WebSocket endpoint" in body
    assert echo_gateway.wait_for_log("refused with 426")


def get(c, path="/", version="1.1", headers=""):
    """Sends one request on an open RawClient and reads the whole response."""
    c.send(f"GET {path} HTTP/{version}\r\nHost: x\r\n{headers}\r\n".encode())
    status, head = c.read_response()
    return status, head, c.read_body(int(head.get("content-length", 0)))


def server_closed(c):
    """The server closes the connection by itself (our side stays open)."""
    c.sock.settimeout(5)
    return not c.buf and c.sock.recv(10) == b""


def test_keep_alive_serves_requests_on_one_connection(gateway_factory, site):
    g = gateway_factory("-c", "host=echo://", "--web", str(site))
    c = RawClient(g.port)
    assert get(c, "/")[::2] == (200, b"<h1>demo</h1>")
    status, head, body = get(c, "/sub/style.css")
    assert (status, body, "connection" in head) == (200, b"body {}", False)
    assert get(c, "/nothing")[0] == 404
    c.send(b"HEAD /data.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_response()[1]["content-length"] == "2560"
    status, head, body = get(c, "/", headers="Connection: close\r\n")
    assert (status, head["connection"], body) == (200, "close", b"<h1>demo</h1>")
    assert server_closed(c)


def test_pipelined_requests_are_answered_in_order(gateway_factory, site):
    g = gateway_factory("-c", "host=echo://", "--web", str(site))
    c = RawClient(g.port)
    c.send(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in ["/sub/", "/data.bin", "/"]))
    for expected in [b"sub index", bytes(range(256)) * 10, b"<h1>demo</h1>"]:
        status, head = c.read_response()
        assert c.read_body(int(head["content-length"])) == expected


@pytest.mark.parametrize("version,headers,stays_open", [
    ("1.0", "", False),
    ("1.0", "Connection: Keep-Alive\r\n", True),
    ("1.1", "Connection: keep-alive, Close\r\n", False),
    ("1.1", "Content-Length: 3\r\n", False),  # a body is never read, so nothing can follow it
])
def test_which_requests_keep_the_connection(gateway_factory, site, version, headers, stays_open):
    g = gateway_factory("-c", "host=echo://", "--web", str(site))
    c = RawClient(g.port)
    status, head, body = get(c, "/", version, headers)
    assert (status, body) == (200, b"<h1>demo</h1>")
    if stays_open:
        assert head["connection"] == "keep-alive" and get(c, "/sub/")[2] == b"sub index"
    else:
        assert head["connection"] == "close" and server_closed(c)


def test_upgrade_after_files_on_the_same_connection(gateway_factory, site):
    g = gateway_factory("-c", "host=echo://", "--web", str(site))
    c = RawClient(g.port)
    assert get(c, "/")[0] == 200
    c.handshake()
    c.send(frame(1, b"still here"))
    assert c.recv_frame() == (True, 1, b"still here")


def test_a_connection_serves_at_most_100_requests(gateway_factory, site):
    g = gateway_factory("-c", "host=echo://", "--web", str(site))
    c = RawClient(g.port)
    c.send(b"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n" * 101)
    for n in range(1, 101):
        status, head = c.read_response()
        assert c.read_body(int(head["content-length"])) == b"sub index"
        assert ("connection" in head) == (n == 100)
    assert server_closed(c)


def test_one_access_log_line_per_request(gateway_factory, site, tmp_path):
    log = tmp_path / "access.log"
    g = gateway_factory("-c", "host=echo://", "--web", str(site), "--access-log", str(log))
    c = RawClient(g.port)
    get(c, "/"), get(c, "/nothing")
    c.close()
    assert wait_lines(log, 2)
    lines = open(log).read().splitlines()
    assert len(lines) == 2 and '"GET /" 200 ' in lines[0] and '"GET /nothing" 404 ' in lines[1]


def wait_lines(path, count, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and len(open(path).read().splitlines()) >= count:
            time.sleep(0.2)  # and no more than that
            return True
        time.sleep(0.02)
    return False


def gateway_rss_kb(g):
    with open(f"/proc/{g.proc.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_large_file_streams_to_a_slow_reader_in_bounded_memory(gateway_factory, site):
    # 48 MiB taken over about 6 s: more than the close timeout in total, never idle for long, and
    # never held in the gateway's memory.
    data = os.urandom(1 << 20) * 48
    (site / "big.bin").write_bytes(data)
    g = gateway_factory("-c", "host=echo://", "--web", str(site))
    before = gateway_rss_kb(g)
    c = RawClient(g.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    status, head = c.read_response()
    assert status == 200 and int(head["content-length"]) == len(data)
    received = bytearray(c.buf)
    c.buf = b""
    peak = 0
    started = time.monotonic()
    while len(received) < len(data):
        chunk = c.sock.recv(1 << 16)
        assert chunk, f"closed after {len(received)} bytes"
        received += chunk
        if len(received) % (4 << 20) < len(chunk):
            peak = max(peak, gateway_rss_kb(g) - before)
            time.sleep(max(0, len(received) / len(data) * 6 - (time.monotonic() - started)))
    assert received == data
    assert time.monotonic() - started > 5
    assert peak < 8 << 10, f"gateway RSS grew by {peak} KiB while streaming"
