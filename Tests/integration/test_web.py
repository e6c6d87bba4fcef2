"""The web root (--web DIR) and the 426 page for plain requests without one."""
import os
import socket
import time

import pytest

from wsraw import RawClient


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
