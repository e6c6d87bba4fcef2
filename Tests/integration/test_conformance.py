"""A conformance matrix in the spirit of the Autobahn categories, against `echo://`.

Each case speaks raw RFC 6455 to the real binary: framing at every length form and segmentation,
pings, reserved bits and opcodes, fragmentation, UTF-8 (Markus Kuhn's test sequences, whole and one
byte per fragment), and the closing handshake. Valid traffic must be echoed byte for byte; each
violation must end with its close code and a TCP close.
"""
import pytest

from conftest import Gateway
from wsraw import RawClient, close_body, frame


@pytest.fixture(scope="module")
def gateway():
    g = Gateway(["-l", "127.0.0.1", "-p", "0", "-c", "host=echo://"])
    yield g
    assert g.stop() == 0


def connect(gateway):
    c = RawClient(gateway.port, timeout=10)
    c.handshake()
    return c


def send_in_pieces(c, data, piece):
    for i in range(0, len(data), piece):
        c.send(data[i:i + piece])


def expect_echo(c, opcode, payload):
    assert c.recv_frame() == (True, opcode, payload)


def finish(c):
    """A clean close after the scenario: the server must echo our 1000."""
    c.send(frame(8, close_body(1000)))
    c.expect_close(1000)
    c.close()


# 1. Framing: text and binary at every length form, whole and cut into odd pieces.
LENGTHS = [0, 1, 2, 125, 126, 127, 128, 65535, 65536, 65537, 1 << 17]


@pytest.mark.parametrize("opcode", [1, 2])
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("piece", [0, 997])
def test_framing(gateway, opcode, length, piece):
    c = connect(gateway)
    payload = (b"*" if opcode == 1 else bytes(range(256))) * (length // (1 if opcode == 1 else 256) + 1)
    payload = payload[:length]
    data = frame(opcode, payload)
    send_in_pieces(c, data, piece or len(data) or 1)
    expect_echo(c, opcode, payload)
    finish(c)


# 2. Pings.
@pytest.mark.parametrize("payload", [b"", b"x", b"\x00\xff\xfe\xfd" * 31, b"p" * 125])
@pytest.mark.parametrize("piece", [0, 1])
def test_ping(gateway, payload, piece):
    c = connect(gateway)
    data = frame(9, payload)
    send_in_pieces(c, data, piece or len(data))
    expect_echo(c, 10, payload)
    finish(c)


def test_ten_pings_ten_pongs(gateway):
    c = connect(gateway)
    c.send(b"".join(frame(9, b"ping %d" % i) for i in range(10)))
    for i in range(10):
        expect_echo(c, 10, b"ping %d" % i)
    finish(c)


def test_unsolicited_pong_then_message(gateway):
    c = connect(gateway)
    c.send(frame(10, b"unsolicited") + frame(1, b"Hello"))
    expect_echo(c, 1, b"Hello")
    finish(c)


# 3. Reserved bits: on each kind of frame, and after a valid message (which is still echoed).
@pytest.mark.parametrize("rsv", range(1, 8))
@pytest.mark.parametrize("opcode,payload", [(1, b"text"), (2, b"\x00\x01"), (9, b"ping"), (8, close_body(1000))])
def test_reserved_bits(gateway, rsv, opcode, payload):
    c = connect(gateway)
    c.send(frame(1, b"before") + frame(opcode, payload, rsv=rsv) + frame(9, b"after"))
    expect_echo(c, 1, b"before")
    c.expect_close(1002)


# 4. Reserved opcodes, with and without payload, after a valid message.
@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
@pytest.mark.parametrize("payload", [b"", b"reserved"])
def test_reserved_opcodes(gateway, opcode, payload):
    c = connect(gateway)
    c.send(frame(2, b"before") + frame(opcode, payload) + frame(9, b"after"))
    expect_echo(c, 2, b"before")
    c.expect_close(1002)


# 5. Fragmentation.
@pytest.mark.parametrize("opcode", [1, 2])
@pytest.mark.parametrize("count", [2, 3, 10])
@pytest.mark.parametrize("ping_at", [None, 0, 1])
@pytest.mark.parametrize("piece", [0, 1])
def test_fragmented(gateway, opcode, count, ping_at, piece):
    c = connect(gateway)
    parts = [b"fragment%d-" % i for i in range(count)]
    data = b""
    for i, part in enumerate(parts):
        data += frame(opcode if i == 0 else 0, part, fin=i == count - 1)
        if ping_at == i:
            data += frame(9, b"between")
    send_in_pieces(c, data, piece or len(data))
    if ping_at is not None and ping_at < count - 1:
        expect_echo(c, 10, b"between")
        expect_echo(c, opcode, b"".join(parts))
    else:
        expect_echo(c, opcode, b"".join(parts))
        if ping_at is not None:
            expect_echo(c, 10, b"between")
    finish(c)


@pytest.mark.parametrize("name,data", [
    ("continuation alone", frame(0, b"x")),
    ("final continuation alone", frame(0, b"x", fin=True)),
    ("non-final continuation alone", frame(0, b"x", fin=False)),
    ("continuation after complete message", frame(1, b"a") + frame(0, b"b")),
    ("text inside text", frame(1, b"a", fin=False) + frame(1, b"b")),
    ("binary inside text", frame(1, b"a", fin=False) + frame(2, b"b")),
    ("text inside binary", frame(2, b"a", fin=False) + frame(1, b"b")),
    ("fragmented ping", frame(9, b"a", fin=False) + frame(0, b"b")),
    ("fragmented pong", frame(10, b"a", fin=False) + frame(0, b"b")),
    ("fragmented close", frame(8, close_body(1000), fin=False) + frame(0, b"")),
    ("empty fragmented ping", frame(9, b"", fin=False)),
])
def test_fragmentation_violations(gateway, name, data):
    c = connect(gateway)
    c.send(data)
    c.expect_close(1002)


def test_empty_fragments(gateway):
    c = connect(gateway)
    c.send(frame(1, b"", fin=False) + frame(0, b"", fin=False) + frame(0, b"abc", fin=False) + frame(0, b""))
    expect_echo(c, 1, b"abc")
    finish(c)


# 6. UTF-8, from Markus Kuhn's "UTF-8 decoder capability and stress test".
VALID_UTF8 = [
    "κόσμε".encode(), b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
    b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80",          # first of each length
    b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf",          # last of each length
    b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd",                    # around the surrogates
    b"\xef\xbf\xbe", b"\xef\xbf\xbf",                                     # noncharacters are valid
    "Hello-µ@ßöäüàá-UTF-8!!".encode(), "\U0001F600 emoji".encode(),
]
INVALID_UTF8 = [
    b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80",                       # unexpected continuations
    bytes(range(0x80, 0xc0)),
    b"\xc0 ", b"\xdf ", b"\xe0 ", b"\xef ", b"\xf0 ", b"\xf7 ",            # lonely start bytes
    b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf",  # last byte missing
    b"\xfe", b"\xff", b"\xfe\xfe\xff\xff",                                # impossible bytes
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x80\x80\x80\xaf", b"\xfc\x80\x80\x80\x80\xaf",
    b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf",                    # maximum overlongs
    b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80",                    # overlong NUL
    b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",   # single surrogates
    b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf",
    b"\xed\xa0\x80\xed\xb0\x80", b"\xed\xaf\xbf\xed\xbf\xbf",             # paired surrogates
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf7\xbf\xbf\xbf",        # above U+10FFFF
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
]


@pytest.mark.parametrize("payload", VALID_UTF8)
@pytest.mark.parametrize("fragmented", [False, True])
def test_valid_utf8(gateway, payload, fragmented):
    c = connect(gateway)
    if fragmented:
        parts = [payload[i:i + 1] for i in range(len(payload))] or [b""]
        c.send(b"".join(frame(1 if i == 0 else 0, p, fin=i == len(parts) - 1) for i, p in enumerate(parts)))
    else:
        c.send(frame(1, payload))
    expect_echo(c, 1, payload)
    finish(c)


@pytest.mark.parametrize("payload", INVALID_UTF8)
@pytest.mark.parametrize("fragmented", [False, True])
def test_invalid_utf8(gateway, payload, fragmented):
    c = connect(gateway)
    if fragmented:
        parts = [payload[i:i + 1] for i in range(len(payload))]
        c.send(b"".join(frame(1 if i == 0 else 0, p, fin=i == len(parts) - 1) for i, p in enumerate(parts)))
    else:
        c.send(frame(1, payload))
    c.expect_close(1007)


# 7. Closing handshake.
@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999])
def test_valid_close_codes_echoed(gateway, code):
    c = connect(gateway)
    c.send(frame(8, close_body(code, b"reason")))
    c.expect_close(code)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_invalid_close_codes(gateway, code):
    c = connect(gateway)
    c.send(frame(8, close_body(code)))
    c.expect_close(1002)


@pytest.mark.parametrize("name,data,code", [
    ("empty", frame(8, b""), 1000),
    ("one byte", frame(8, b"\x03"), 1002),
    ("123-byte reason", frame(8, close_body(1000, b"r" * 123)), 1000),
    ("124-byte reason (payload 126)", frame(8, close_body(1000, b"r" * 124)), 1002),
    ("invalid utf-8 reason", frame(8, close_body(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")), 1007),
    ("valid utf-8 reason", frame(8, close_body(1000, "κόσμε".encode())), 1000),
    ("two closes", frame(8, close_body(1000)) + frame(8, close_body(1001)), 1000),
    ("ping after close", frame(8, close_body(1000)) + frame(9, b"x"), 1000),
    ("text after close", frame(8, close_body(1000)) + frame(1, b"x"), 1000),
    ("fragment, close, fragment", frame(1, b"a", fin=False) + frame(8, close_body(1000)) + frame(0, b"b"), 1000),
])
def test_close_cases(gateway, name, data, code):
    c = connect(gateway)
    c.send(data)
    c.expect_close(code)


def test_large_message_then_close_then_ping(gateway):
    c = connect(gateway)
    payload = b"*" * (256 << 10)
    c.send(frame(2, payload) + frame(8, close_body(1000)) + frame(9, b"late"))
    expect_echo(c, 2, payload)
    c.expect_close(1000)


# 9. Limits: the default maximum message size is 16 MiB.
def test_message_over_16_mib_is_1009(gateway):
    c = connect(gateway)
    c.send(frame(2, b"", length=(16 << 20) + 1)[:14])
    c.expect_close(1009)


def test_fragmented_total_over_16_mib_is_1009(gateway):
    c = connect(gateway)
    c.send(frame(2, b"a" * (8 << 20), fin=False))
    c.send(frame(0, b"", fin=True, length=(8 << 20) + 1)[:14])
    c.expect_close(1009)
