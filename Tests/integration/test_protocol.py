"""RFC 6455 rules checked with raw sockets: every violation gets its close code, then TCP closes."""
import socket
import struct
import time

import pytest

from wsraw import RawClient, close_body, frame, request


@pytest.fixture
def client(echo_gateway):
    c = RawClient(echo_gateway.port)
    c.handshake()
    yield c
    c.close()


def test_echo_of_masked_frames_with_any_segmentation(client):
    data = frame(2, b"0123456789" * 30) + frame(1, "κόσμε".encode())
    for byte in data:
        client.send(bytes([byte]))
    assert client.recv_frame() == (True, 2, b"0123456789" * 30)
    assert client.recv_frame() == (True, 1, "κόσμε".encode())


def test_ping_between_fragments_is_answered_first(client):
    client.send(frame(1, b"Hel", fin=False) + frame(9, b"are you there") + frame(0, b"lo"))
    assert client.recv_frame() == (True, 10, b"are you there")
    assert client.recv_frame() == (True, 1, b"Hello")


def test_unsolicited_pong_is_ignored(client):
    client.send(frame(10, b"unasked") + frame(1, b"after"))
    assert client.recv_frame() == (True, 1, b"after")


def test_ping_with_125_bytes(client):
    client.send(frame(9, b"p" * 125))
    assert client.recv_frame() == (True, 10, b"p" * 125)


@pytest.mark.parametrize("name,data,code", [
    ("unmasked", frame(1, b"hi", masked=False), 1002),
    ("rsv1", frame(1, b"hi", rsv=4), 1002),
    ("rsv2", frame(1, b"hi", rsv=2), 1002),
    ("rsv3", frame(2, b"hi", rsv=1), 1002),
    ("opcode 3", frame(3, b""), 1002),
    ("opcode 7", frame(7, b"x"), 1002),
    ("opcode 11", frame(11, b""), 1002),
    ("opcode 15", frame(15, b"x"), 1002),
    ("control over 125", frame(9, b"x" * 126), 1002),
    ("fragmented ping", frame(9, b"x", fin=False), 1002),
    ("fragmented close", frame(8, close_body(1000), fin=False), 1002),
    ("continuation first", frame(0, b"x"), 1002),
    ("new data inside fragmented", frame(1, b"a", fin=False) + frame(2, b"b"), 1002),
    ("64-bit length top bit", bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]), 1002),
    ("invalid utf-8", frame(1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"), 1007),
    ("overlong utf-8", frame(1, b"\xc0\xaf"), 1007),
    ("truncated utf-8", frame(1, b"abc\xe2\x82"), 1007),
    ("utf-8 broken across fragments", frame(1, b"\xce", fin=False) + frame(0, b"A"), 1007),
    ("close with 1 byte", frame(8, b"\x03"), 1002),
    ("close code 1005", frame(8, close_body(1005)), 1002),
    ("close code 999", frame(8, close_body(999)), 1002),
    ("close code 2999", frame(8, close_body(2999)), 1002),
    ("close code 5000", frame(8, close_body(5000)), 1002),
    ("close reason not utf-8", frame(8, close_body(1000, b"\xff")), 1007),
])
def test_violation_closes_with_code(client, echo_gateway, name, data, code):
    client.send(data)
    client.expect_close(code)


def test_invalid_utf8_fails_fast_before_the_message_ends(client):
    # Announce a 100000-byte text frame but send only the first bad bytes: the close must come anyway.
    payload = b"ok \xf5" + b"a" * 99996
    client.send(frame(1, payload)[:20])
    client.expect_close(1007)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 3000, 4999])
def test_close_echoes_code(client, code):
    client.send(frame(8, close_body(code, b"bye")))
    client.expect_close(code)


def test_empty_close_is_answered_with_1000(client):
    client.send(frame(8, b""))
    client.expect_close(1000)


def test_nothing_is_sent_after_close(client):
    client.send(frame(8, close_body(1000)) + frame(1, b"too late") + frame(9, b"ping"))
    client.expect_close(1000)


def test_server_closes_tcp_after_close_handshake(client):
    client.send(frame(8, close_body(1000)))
    fin, opcode, payload = client.recv_frame()
    assert opcode == 8
    # Without us closing first, the server sends FIN.
    client.sock.settimeout(5)
    assert client.sock.recv(10) == b""


@pytest.mark.parametrize("data,code", [(frame(8, close_body(1000)), 1000), (frame(3, b""), 1002)])
def test_close_reply_and_fin_come_without_delay(client, data, code):
    # The reply is handed to the kernel to go out with the FIN: a close reply held back (corked)
    # without the socket being closed right after would arrive ~200 ms late.
    started = time.monotonic()
    client.send(data)
    fin, opcode, payload = client.recv_frame()
    assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == code
    client.sock.settimeout(1)
    assert not client.buf and client.sock.recv(10) == b""  # the FIN, with our side still open
    assert time.monotonic() - started < 0.15


def test_message_too_big_is_1009(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--max-message", "1k")
    c = RawClient(g.port)
    c.handshake()
    c.send(frame(2, b"x" * 1024))
    assert c.recv_frame() == (True, 2, b"x" * 1024)
    c.send(frame(2, b"x" * 600, fin=False) + frame(0, b"y" * 600))
    c.expect_close(1009)


def test_oversized_frame_is_refused_from_its_header(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "--max-message", "1k")
    c = RawClient(g.port)
    c.handshake()
    c.send(frame(2, b"", length=1 << 40)[:14])  # only the header of a 1 TiB frame
    c.expect_close(1009)


def test_frames_pipelined_behind_the_request(echo_gateway):
    c = RawClient(echo_gateway.port)
    c.send(request() + frame(1, b"early") + frame(2, b"bird"))
    status, _ = c.read_response()
    assert status == 101
    assert c.recv_frame() == (True, 1, b"early")
    assert c.recv_frame() == (True, 2, b"bird")


def test_accept_header_value(echo_gateway):
    c = RawClient(echo_gateway.port)
    headers = c.handshake()
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert headers["upgrade"].lower() == "websocket"
    assert "sec-websocket-protocol" not in headers


def test_handshake_one_byte_per_segment(echo_gateway):
    c = RawClient(echo_gateway.port)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in request():
        c.send(bytes([byte]))
    status, _ = c.read_response()
    assert status == 101
