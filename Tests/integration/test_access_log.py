"""access-log: one line per connection when it ends; trusted proxies; SIGUSR1 reopens.

Format: time client fwd= "request" status bytes= proto= peer= in=msgs/bytes out=msgs/bytes time= close= by= user=
(client is the socket's address and port, or a trusted balancer's PROXY header's; fwd the address a trusted proxy forwarded for, or -)."""
import os
import re
import signal
import time

from conftest import lines_of
from wsraw import RawClient, close_body, frame, request


def test_one_line_per_connection(gateway_factory, tmp_path):
    log = tmp_path / "access.log"
    g = gateway_factory("-c", "host=echo://", "-c", "protocol=*", "--access-log", str(log))
    c = RawClient(g.port)
    c.handshake(path="/room/7?x=1", extra="Sec-WebSocket-Protocol: chat\r\n")
    c.send(frame(1, b"hello") + frame(2, b"0123456789"))
    c.recv_frame(), c.recv_frame()
    c.send(frame(8, close_body(1000)))
    c.expect_close(1000)
    line = lines_of(log, 1)[0]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 127\.0\.0\.1:\d+ fwd=- \"GET /room/7\?x=1\" 101 bytes=- proto=chat "
                    r"peer=echo:// in=2/15 out=2/15 time=\d+\.\d{3} close=1000 by=client user=-$", line), line
    bad = RawClient(g.port)
    bad.send(request(version="8"))
    bad.read_response()
    bad.close()
    # A refused upgrade: its traffic is the refusal, not a response body (bytes=-).
    assert re.search(r'^\S+ 127\.0\.0\.1:\d+ fwd=- "[^"]*" 426 bytes=- proto=- ', lines_of(log, 2)[1])


def test_closed_by_the_peer(gateway_factory, peer_factory, tmp_path):
    log = tmp_path / "access.log"
    peer = peer_factory("tcp", "script", repr([b"bye"]))
    g = gateway_factory("-c", f"host={peer.url}", "--access-log", str(log))
    c = RawClient(g.port)
    c.handshake()
    assert c.recv_frame() == (True, 1, b"bye")
    c.expect_close(1000)
    line = lines_of(log, 1)[0]
    assert f"peer={peer.url}" in line and "out=1/3" in line and line.endswith("close=1000 by=peer user=-")


def client_and_fwd(line):
    """The client column and the fwd= field."""
    fields = line.split()
    assert fields[2].startswith("fwd="), line
    return fields[1], fields[2][4:]


def test_forwarded_client_only_from_trusted_proxies(gateway_factory, tmp_path):
    log = tmp_path / "access.log"
    g = gateway_factory("-c", "host=echo://", "--access-log", str(log), "--trusted-proxy", "127.0.0.1")
    c = RawClient(g.port)
    c.handshake(extra="X-Forwarded-For: 198.51.100.9, 203.0.113.7, 127.0.0.1\r\n")
    c.close()
    client, fwd = client_and_fwd(lines_of(log, 1)[0])
    # The proxy stays in the client column; the address it forwarded for has its own field.
    assert re.fullmatch(r"127\.0\.0\.1:\d+", client) and fwd == "203.0.113.7"
    untrusted = tmp_path / "untrusted.log"
    g2 = gateway_factory("-c", "host=echo://", "--access-log", str(untrusted))
    c = RawClient(g2.port)
    c.handshake(extra="X-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 203.0.113.8\r\n")
    c.close()
    client, fwd = client_and_fwd(lines_of(untrusted, 1)[0])
    assert re.fullmatch(r"127\.0\.0\.1:\d+", client) and fwd == "-"
    g3 = gateway_factory("-c", "host=echo://", "--access-log", str(tmp_path / "real.log"), "--trusted-proxy", "127.0.0.1")
    c = RawClient(g3.port)
    c.handshake(extra="X-Real-IP: 203.0.113.8\r\n")
    c.close()
    client, fwd = client_and_fwd(lines_of(tmp_path / "real.log", 1)[0])
    assert re.fullmatch(r"127\.0\.0\.1:\d+", client) and fwd == "203.0.113.8"
    # From a trusted proxy that forwarded nothing: fwd=-.
    c = RawClient(g3.port)
    c.handshake()
    c.close()
    assert client_and_fwd(lines_of(tmp_path / "real.log", 2)[1])[1] == "-"


def test_sigusr1_reopens_the_log(gateway_factory, tmp_path):
    log = tmp_path / "access.log"
    g = gateway_factory("-c", "host=echo://", "--access-log", str(log))
    RawClient(g.port).handshake()
    time.sleep(0.1)
    os.rename(log, tmp_path / "access.log.1")
    g.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    c = RawClient(g.port)
    c.handshake()
    c.close()
    assert len(lines_of(log, 1)) == 1
