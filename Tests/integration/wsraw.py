"""A deliberately small raw WebSocket client for sending what real clients never would."""
import os
import socket
import struct

GOOD_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(path="/", key=GOOD_KEY, extra="", version="13", host="localhost"):
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n").encode()


def frame(opcode, payload=b"", fin=True, rsv=0, masked=True, key=None, length=None):
    """A client frame; `length` overrides the encoded length field (to lie about it)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = key or os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_body(code, reason=b""):
    return struct.pack("!H", code) + reason


class RawClient:
    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def handshake(self, **kw):
        self.send(request(**kw))
        status, headers = self.read_response()
        assert status == 101, (status, headers)
        return headers

    def read_response(self):
        """Status code and headers (lower-cased names) of an HTTP response; body stays in the buffer."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed before the response ended: %r" % self.buf)
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def read_body(self, length):
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        body, self.buf = self.buf[:length], self.buf[length:]
        return body

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def recv_frame(self):
        """(fin, opcode, payload) of the next server frame, which must be unmasked and RSV-free."""
        fin, rsv, opcode, payload = self.recv_frame_rsv()
        assert rsv == 0, "server set RSV bits"
        return fin, opcode, payload

    def recv_frame_rsv(self):
        """(fin, rsv, opcode, payload) of the next server frame, which must be unmasked; RSV1
        marks a compressed message's first frame (permessage-deflate)."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80 == 0, "server frames must not be masked"
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        self._need(pos + n)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload

    def expect_close(self, code):
        """Reads until the server's Close, checks its code, then expects the server to close TCP."""
        while True:
            fin, opcode, payload = self.recv_frame()
            if opcode == 8:
                break
        assert len(payload) >= 2, "close frame without a status code"
        got = struct.unpack("!H", payload[:2])[0]
        assert got == code, f"close code {got}, expected {code} (reason {payload[2:]!r})"
        self.expect_eof()
        return payload[2:]

    def expect_eof(self, timeout=6):
        """The server closes the TCP connection (possibly after we close our side)."""
        self.sock.settimeout(timeout)
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
            assert not self.buf, "unexpected data after close"
            raise AssertionError(f"data after the close frame: {chunk!r}")

    def close(self):
        self.sock.close()
