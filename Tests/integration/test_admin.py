"""The admin listener: /metrics in the Prometheus text format (read back with prometheus_client's
own parser), /healthz, /readyz turning 503 when a graceful stop begins, and what it refuses."""
import http.client
import re
import signal
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wsraw import RawClient, close_body, frame, request


def admin_port(g):
    assert g.wait_for_log(r"admin listener .* on 127\.0\.0\.1:\d+")
    return int(re.search(r"admin listener .* on 127\.0\.0\.1:(\d+)", g.log()).group(1))


def get(port, path, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path)
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, response.getheader("Content-Type"), body


def scrape(port):
    status, kind, body = get(port, "/metrics")
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


@pytest.fixture
def admin_gateway(gateway_factory):
    def start(*extra):
        g = gateway_factory("-c", "host=echo://", "--admin-listen", "127.0.0.1:0", *extra)
        return g, admin_port(g)
    return start


def test_metrics_count_what_happened(admin_gateway):
    g, port = admin_gateway()
    before = scrape(port)
    assert value(before, "websocksy_up") == 1
    assert value(before, "websocksy_ready") == 1
    c = RawClient(g.port)
    c.handshake()
    c.send(frame(1, b"hello") + frame(2, b"0123456789"))
    c.recv_frame(), c.recv_frame()
    during = scrape(port)
    assert value(during, "websocksy_websockets_open") == 1
    assert value(during, "websocksy_messages_total", direction="in") == 2
    assert value(during, "websocksy_payload_bytes_total", direction="out") == 15
    c.send(frame(8, close_body(1000)))
    c.expect_close(1000)
    bad = RawClient(g.port)
    bad.send(request(version="8"))
    bad.read_response()
    socket.create_connection(("127.0.0.1", g.port)).close()  # a port check: no request
    time.sleep(0.3)
    after = scrape(port)
    assert value(after, "websocksy_websockets_open") == 0
    assert value(after, "websocksy_upgrades_total") == 1
    assert value(after, "websocksy_connections_accepted_total") == 3
    assert value(after, "websocksy_websocket_closes_total", code="1000") == 1
    assert value(after, "websocksy_handshake_refusals_total", status="426") == 1
    assert value(after, "websocksy_connections_without_request_total") == 1
    # Counters of ended connections keep what the open ones had.
    assert value(after, "websocksy_messages_total", direction="in") == 2
    assert value(after, "websocksy_payload_bytes_total", direction="in") == 15
    assert value(after, "websocksy_backend_query_seconds_count") == 1
    assert value(after, "websocksy_backend_query_seconds_bucket", le="+Inf") == 1


def test_peer_connect_latency_is_observed(gateway_factory, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    g = gateway_factory("-c", f"host=tcp://127.0.0.1:{listener.getsockname()[1]}", "--admin-listen", "127.0.0.1:0")
    port = admin_port(g)
    c = RawClient(g.port)
    c.handshake()
    samples = scrape(port)
    assert value(samples, "websocksy_peer_connect_seconds_count") == 1
    assert value(samples, "websocksy_peer_connect_seconds_bucket", le="1") == 1
    listener.close()


def test_health_and_readiness(admin_gateway):
    g, port = admin_gateway("--shutdown-timeout", "3")
    assert get(port, "/healthz")[::2] == (200, "ok\n")
    assert get(port, "/readyz")[::2] == (200, "ready\n")
    assert get(port, "/readyz", "HEAD")[::2] == (200, "")
    # A bridged client holds the gateway in its graceful stop: /readyz says 503 meanwhile.
    c = RawClient(g.port)
    c.handshake()
    g.proc.send_signal(signal.SIGTERM)
    _, opcode, payload = c.recv_frame()
    assert opcode == 8 and payload[:2] == close_body(1001)
    assert get(port, "/readyz")[0] == 503
    assert get(port, "/healthz")[0] == 200
    assert value(scrape(port), "websocksy_ready") == 0
    c.send(frame(8, close_body(1001)))
    assert g.proc.wait(5) == 0


@pytest.mark.parametrize("raw,status", [
    (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
    (b"GET /nothing HTTP/1.1\r\n\r\n", 404),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 431),
])
def test_what_the_admin_listener_refuses(admin_gateway, raw, status):
    g, port = admin_gateway()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(raw)
    answer = s.recv(200)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer
    assert g.proc.poll() is None


def test_a_silent_admin_client_is_dropped(admin_gateway):
    g, port = admin_gateway("--handshake-timeout", "1")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    start = time.monotonic()
    assert s.recv(10) == b""
    assert time.monotonic() - start < 3


def test_admin_listen_is_checked_at_start(tmp_path):
    from test_lifecycle import run_binary
    result = run_binary("-c", "host=echo://", "--admin-listen", "9090")
    assert result.returncode != 0 and "admin-listen must be HOST:PORT" in result.stderr
    for extra in (["--check-config"], []):
        result = run_binary("-c", "host=echo://", "-w", "2", "-p", "0", "--admin-listen", "127.0.0.1:0", *extra)
        assert result.returncode == 2 and "admin-listen: needs workers = 1" in result.stderr, result.stderr


def test_drain_delay_keeps_serving_while_readyz_says_503(admin_gateway):
    g, port = admin_gateway("--drain-delay", "1", "--shutdown-timeout", "2")
    old = RawClient(g.port)
    old.handshake()
    g.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    assert get(port, "/readyz")[0] == 503
    started = time.monotonic()
    late = RawClient(g.port)
    late.handshake()  # still accepted and upgraded while draining
    late.send(frame(1, b"still here"))
    assert late.recv_frame() == (True, 1, b"still here")
    _, opcode, payload = old.recv_frame()  # then the stop: Close 1001
    assert opcode == 8 and payload[:2] == close_body(1001)
    assert time.monotonic() - started > 0.6
    old.send(frame(8, close_body(1001)))
    _, opcode, _ = late.recv_frame()
    assert opcode == 8
    late.send(frame(8, close_body(1001)))
    assert g.proc.wait(5) == 0


def test_a_request_in_flight_at_sigterm_gets_503(gateway_factory):
    g = gateway_factory("-c", "host=echo://")
    c = RawClient(g.port)
    whole = request()
    c.send(whole[:30])
    time.sleep(0.2)
    g.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    c.send(whole[30:])
    assert c.read_response()[0] == 503
    assert g.proc.wait(5) == 0


def test_an_idle_kept_alive_connection_does_not_hold_the_stop(gateway_factory, tmp_path):
    (tmp_path / "index.html").write_text("hi\n")
    g = gateway_factory("-c", "host=echo://", "--web", str(tmp_path), "--shutdown-timeout", "8")
    c = RawClient(g.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _ = c.read_response()
    assert status == 200
    started = time.monotonic()
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(5) == 0
    assert time.monotonic() - started < 2


def test_requests_queued_in_the_backlog_at_the_stop_are_answered(gateway_factory):
    g = gateway_factory("-c", "host=echo://")
    g.proc.send_signal(signal.SIGSTOP)  # the kernel queues what arrives meanwhile
    try:
        clients = [RawClient(g.port) for _ in range(5)]
        for c in clients:
            c.send(request())
        g.proc.send_signal(signal.SIGTERM)
    finally:
        g.proc.send_signal(signal.SIGCONT)
    # Whether the loop takes the queued connections or the signal first is epoll's order: either
    # way each gets an answer — 503, or its 101 and then Close 1001 — never a reset.
    for c in clients:
        status, _ = c.read_response()
        assert status in (101, 503)
        if status == 101:
            _, opcode, payload = c.recv_frame()
            assert (opcode, payload[:2]) == (8, close_body(1001))
            c.send(frame(8, close_body(1001)))
    assert g.proc.wait(5) == 0
