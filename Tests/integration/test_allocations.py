"""The steady-state message path allocates nothing: counted with a malloc-counting preload."""
import os
import signal
import time

import pytest

from conftest import Gateway
from wsraw import RawClient, frame

SHIM = os.path.join(os.environ.get("WEBSOCKSY_TEST_PLUGINS", ""), "malloc_count.so")


def count(g, path):
    g.proc.send_signal(signal.SIGUSR2)
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            text = open(path).read()
            if text.endswith("\n"):
                os.unlink(path)
                return int(text)
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise AssertionError("no count from the preload")


def start(tmp_path, *args):
    if not os.path.exists(SHIM):
        pytest.fail(f"{SHIM} missing: run the tests with `make test`")
    old = dict(os.environ)
    os.environ.update({"LD_PRELOAD": SHIM, "MALLOC_COUNT_FILE": str(tmp_path / "count")})
    try:
        return Gateway(["-l", "127.0.0.1", "-p", "0", "-k", "0", *args])
    finally:
        os.environ.clear()
        os.environ.update(old)


def echo_messages(c, n, size):
    payload = os.urandom(size)
    for _ in range(n):
        c.send(frame(2, payload))
        got = b""
        while len(got) < size:
            fin, opcode, body = c.recv_frame()
            got += body
        assert got == payload


@pytest.mark.parametrize("peer", ["echo", "tcp"])
def test_no_allocation_per_message(tmp_path, peer_factory, peer):
    host = "echo://" if peer == "echo" else peer_factory("tcp").url
    g = start(tmp_path, "-c", f"host={host}", "-c", "framing=binary") if peer == "tcp" else start(tmp_path, "-c", f"host={host}")
    try:
        c = RawClient(g.port)
        c.handshake()
        echo_messages(c, 200, 1024)  # warm up: buffers reach their working size
        before = count(g, str(tmp_path / "count"))
        assert before > 100, "the preload does not see the gateway's allocations"
        echo_messages(c, 2000, 1024)
        after = count(g, str(tmp_path / "count"))
        print(f"{peer}: {after - before} allocations in 2000 messages")
        assert (after - before) / 2000 < 0.01, f"{after - before} allocations for 2000 messages"
    finally:
        g.stop()
