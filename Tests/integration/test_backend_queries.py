"""A plugin backend's `query` runs off the event loop: a backend that blocks delays only the
upgrades it answers, a query past `backend-timeout` gets 504, and a late answer is dropped."""
import os
import signal
import threading
import time

import pytest

from conftest import Gateway
from wsraw import RawClient, frame, request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(ROOT, ".build", "test-plugins"))


@pytest.fixture
def sleepy(tmp_path):
    started = []

    def start(*args):
        if not os.path.exists(os.path.join(TEST_PLUGINS, "backend_sleepy.so")):
            pytest.fail(f"test plugins missing in {TEST_PLUGINS}: run the tests with `make test`")
        g = Gateway(["-l", "127.0.0.1", "-p", "0", "--plugins", TEST_PLUGINS, *args])
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


def status_of(port, path, timeout=15):
    c = RawClient(port, timeout=timeout)
    c.send(request(path=path))
    status, _ = c.read_response()
    return c, status


def echo_round_trip(c, payload):
    c.send(frame(2, payload))
    _, opcode, data = c.recv_frame()
    assert (opcode, data) == (2, payload)


def test_a_blocking_backend_does_not_stall_other_connections(sleepy):
    """Every /slow query sleeps 2 s on the query thread while a bridged client keeps echoing:
    its round trips stay fast, and the slow upgrades still succeed, one after another."""
    g = sleepy("-b", "sleepy", "-c", "delay=2000", "-c", "delay-path=/slow", "--backend-timeout", "10")
    fast, status = status_of(g.port, "/fast")
    assert status == 101
    results = []

    def slow_upgrade():
        started = time.monotonic()
        c, status = status_of(g.port, "/slow")
        results.append((status, time.monotonic() - started))
        c.sock.close()

    slow = [threading.Thread(target=slow_upgrade) for _ in range(3)]
    for t in slow:
        t.start()
    time.sleep(0.2)
    times = []
    until = time.monotonic() + 4.5
    while time.monotonic() < until:
        start = time.perf_counter()
        echo_round_trip(fast, b"ping" * 8)
        times.append(time.perf_counter() - start)
        time.sleep(0.005)
    for t in slow:
        t.join(15)
    times.sort()
    p99 = times[int(len(times) * 0.99)]
    assert len(times) > 200
    assert p99 < 0.05, f"p99 {p99 * 1000:.1f} ms over {len(times)} round trips"
    # Calls are serialised: the three answers come about 2, 4 and 6 s after they were asked.
    assert sorted(s for s, _ in results) == [101, 101, 101], results
    assert max(t for _, t in results) > 5.5, results


def test_a_query_past_the_timeout_gets_504_and_its_late_answer_is_dropped(sleepy, tmp_path):
    log = tmp_path / "queries.log"
    g = sleepy("-b", "sleepy", "-c", "delay=2500", "-c", "delay-path=/slow", "-c", f"log={log}",
               "--backend-timeout", "1")
    c, status = status_of(g.port, "/slow")
    assert status == 504
    assert c.sock.recv(100) == b""  # and the connection ends
    # The late answer for /slow (after 2.5 s) goes nowhere; the next query is answered.
    time.sleep(1.7)
    d, status = status_of(g.port, "/fast")
    assert status == 101
    echo_round_trip(d, b"after")
    assert g.wait_for_log(r"refused with 504: the backend did not answer within 1 s")
    assert log.read_text().split() == ["/slow", "/fast"]
    assert g.proc.poll() is None


def test_a_client_that_leaves_while_waiting_cancels_its_query(sleepy, tmp_path):
    """Queries not started when their clients go are never asked."""
    log = tmp_path / "queries.log"
    g = sleepy("-b", "sleepy", "-c", "delay=1000", "-c", f"log={log}", "--backend-timeout", "10")
    first = RawClient(g.port)
    first.send(request(path="/first"))
    time.sleep(0.3)  # /first is being answered
    gone = []
    for i in range(5):
        c = RawClient(g.port)
        c.send(request(path=f"/gone{i}"))
        gone.append(c)
    time.sleep(0.2)
    for c in gone:
        c.sock.close()
    status, _ = first.read_response()
    assert status == 101
    last, status = status_of(g.port, "/last")
    assert status == 101
    assert log.read_text().split() == ["/first", "/last"]


def test_reload_waits_for_the_running_query_and_hands_the_others_to_the_new_backend(sleepy, tmp_path):
    cfg = tmp_path / "gw.cfg"
    log = tmp_path / "queries.log"
    cfg.write_text(f"[core]\nbackend = sleepy\nplugins = {TEST_PLUGINS}\nbackend-timeout = 10\n"
                   f"[backend]\ndelay = 1000\nlog = {log}\n")
    g = Gateway([str(cfg), "-l", "127.0.0.1", "-p", "0"])
    try:
        results = {}

        def upgrade(path):
            c, status = status_of(g.port, path)
            results[path] = status

        threads = [threading.Thread(target=upgrade, args=(f"/{n}",)) for n in ("a", "b", "c")]
        for t in threads:
            t.start()
            time.sleep(0.1)
        os.kill(g.proc.pid, signal.SIGHUP)
        for t in threads:
            t.join(15)
        assert results == {"/a": 101, "/b": 101, "/c": 101}
        assert g.wait_for_log("configuration reloaded")
        assert sorted(log.read_text().split()) == ["/a", "/b", "/c"]
    finally:
        g.stop()


def test_a_shutdown_answers_waiting_clients_503(sleepy):
    g = sleepy("-b", "sleepy", "-c", "delay=1500", "--backend-timeout", "10")
    c = RawClient(g.port)
    c.send(request(path="/waiting"))
    time.sleep(0.3)
    g.proc.send_signal(signal.SIGTERM)
    status, _ = c.read_response()
    assert status == 503
    assert g.proc.wait(10) == 0


def test_reload_does_not_stall_the_loop_behind_a_running_query(tmp_path):
    """SIGHUP while a query runs: the old backend finishes it off the loop; echo clients are
    served meanwhile, and the slow client still gets its 504 on time."""
    cfg = tmp_path / "gw.cfg"
    cfg.write_text(f"[core]\nbackend = sleepy\nplugins = {TEST_PLUGINS}\nbackend-timeout = 1\n"
                   "[backend]\ndelay = 3000\ndelay-path = /slow\n")
    g = Gateway([str(cfg), "-l", "127.0.0.1", "-p", "0"])
    try:
        fast, status = status_of(g.port, "/fast")
        assert status == 101
        slow = RawClient(g.port)
        slow.send(request(path="/slow"))
        time.sleep(0.2)
        os.kill(g.proc.pid, signal.SIGHUP)
        worst = 0
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            start = time.perf_counter()
            echo_round_trip(fast, b"x")
            worst = max(worst, time.perf_counter() - start)
        assert worst < 0.2, f"an echo took {worst:.2f} s during the reload"
        assert slow.read_response()[0] == 504
        assert g.wait_for_log("configuration reloaded", timeout=5)
        again, status = status_of(g.port, "/fast")
        assert status == 101
    finally:
        g.stop()


def test_sigterm_does_not_wait_for_a_running_query(sleepy):
    g = sleepy("-b", "sleepy", "-c", "delay=30000", "--backend-timeout", "60", "--shutdown-timeout", "1")
    c = RawClient(g.port)
    c.send(request(path="/stuck"))
    time.sleep(0.3)
    g.proc.send_signal(signal.SIGTERM)
    assert c.read_response()[0] == 503
    assert g.proc.wait(5) == 0
    assert g.wait_for_log("exiting without the backend's cleanup")
