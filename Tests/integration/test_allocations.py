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


@pytest.mark.parametrize("peer", ["echo", "tcp", "tcp+admin"])
def test_no_allocation_per_message(tmp_path, peer_factory, peer):
    """tcp+admin: with the admin listener on, the metrics cost the message path nothing either."""
    host = "echo://" if peer == "echo" else peer_factory("tcp").url
    admin = ["--admin-listen", "127.0.0.1:0"] if peer.endswith("+admin") else []
    g = start(tmp_path, "-c", f"host={host}", "-c", "framing=binary", *admin) if peer != "echo" else start(tmp_path, "-c", f"host={host}")
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


@pytest.mark.parametrize("takeover", ["context", "no-context"])
def test_no_allocation_per_compressed_message(tmp_path, takeover):
    """permessage-deflate in steady state: the zlib streams and buffers exist after the first
    messages; inflating and deflating a message allocates nothing more."""
    import zlib
    args = ["--server-no-context-takeover", "yes", "--client-no-context-takeover", "yes"] if takeover == "no-context" else []
    g = start(tmp_path, "-c", "host=echo://", "--compression", "on", *args)
    try:
        c = RawClient(g.port)
        c.handshake(extra="Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
        fresh = lambda: (zlib.compressobj(6, zlib.DEFLATED, -11), zlib.decompressobj(-11))
        streams = fresh()

        def exchange(n):
            nonlocal streams
            for i in range(n):
                message = b'{"type":"trade","seq":%d,"symbol":"AAPL","price":%d.25,"size":100}' % (i, 100 + i % 50) * 12
                if takeover == "no-context":
                    streams = fresh()
                compressor, inflater = streams
                data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
                c.send(frame(1, data[:-4], rsv=4))
                _, rsv, _, payload = c.recv_frame_rsv()
                assert rsv & 4, "the echo should come back compressed"
                assert inflater.decompress(payload + b"\x00\x00\xff\xff") == message

        exchange(200)
        before = count(g, str(tmp_path / "count"))
        exchange(2000)
        after = count(g, str(tmp_path / "count"))
        print(f"compressed ({takeover}): {after - before} allocations in 2000 messages")
        assert (after - before) / 2000 < 0.01, f"{after - before} allocations for 2000 messages"
    finally:
        g.stop()
