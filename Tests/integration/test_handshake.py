"""Malformed or unacceptable upgrade requests get the right HTTP status, a reason, and a close."""
import pytest

from wsraw import RawClient, request


def refused(port, data):
    c = RawClient(port)
    c.send(data)
    status, headers = c.read_response()
    body = c.read_body(int(headers["content-length"]))
    c.expect_eof()
    return status, headers, body


@pytest.mark.parametrize("name,data,status", [
    ("POST", request().replace(b"GET", b"POST"), 400),
    ("HTTP/1.0", request().replace(b"HTTP/1.1", b"HTTP/1.0"), 400),
    ("no Host", request(host="").replace(b"Host: \r\n", b""), 400),
    ("no Connection upgrade", request().replace(b"Connection: Upgrade", b"Connection: close"), 400),
    ("short key", request(key="c2hvcnQ="), 400),
    ("key not base64", request(key="!!!!!!!!!!!!!!!!!!!!!!=="), 400),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ("version 8", request(version="8"), 426),
    ("huge header", request(extra="X-Big: " + "a" * 20000 + "\r\n"), 431),
    ("too many headers", request(extra="".join(f"X-{i}: v\r\n" for i in range(150))), 431),
])
def test_refusals(echo_gateway, name, data, status):
    got, headers, body = refused(echo_gateway.port, data)
    assert got == status
    assert body.endswith(b"\n") and len(body.splitlines()) == 1
    if status == 426:
        assert headers["sec-websocket-version"] == "13"
    assert echo_gateway.wait_for_log(f"refused with {status}")


def test_header_flood_without_end_is_cut_at_the_limit(echo_gateway):
    c = RawClient(echo_gateway.port)
    c.send(b"GET / HTTP/1.1\r\nX: " + b"a" * 17000)
    status, _ = c.read_response()
    assert status == 431


def test_silent_client_is_dropped_after_handshake_timeout(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--handshake-timeout", "1")
    c = RawClient(g.port)
    c.send(b"GET / HTTP/1.1\r\n")
    c.sock.settimeout(5)
    assert c.sock.recv(100) == b""
    assert g.wait_for_log("handshake not completed in time")
