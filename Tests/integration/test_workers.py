"""workers = N: a supervisor with N worker processes sharing the port through SO_REUSEPORT."""
import asyncio
import os
import signal
import subprocess
import time

import websockets

from conftest import BINARY


def children(pid):
    path = f"/proc/{pid}/task/{pid}/children"
    return sorted(int(p) for p in open(path).read().split())


async def exchange(url, n):
    async def one(i):
        async with websockets.connect(url) as ws:
            await ws.send(f"message {i}")
            assert await ws.recv() == f"message {i}"
    await asyncio.gather(*(one(i) for i in range(n)))


def wait_for(predicate, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_workers_share_the_port_restart_and_stop(gateway_factory):
    g = gateway_factory("-c", "host=echo://", "-w", "2")
    assert wait_for(lambda: len(children(g.proc.pid)) == 2)
    assert g.wait_for_log("with 2 workers")
    asyncio.run(exchange(g.url, 60))
    first = children(g.proc.pid)
    os.kill(first[0], signal.SIGKILL)
    assert g.wait_for_log(f"worker {first[0]} ended")
    assert wait_for(lambda: len(children(g.proc.pid)) == 2 and first[0] not in children(g.proc.pid))
    time.sleep(0.3)
    asyncio.run(exchange(g.url, 60))
    g.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: g.log().count("configuration reloaded") == 2)
    workers = children(g.proc.pid)
    assert g.stop() == 0
    assert "all workers stopped" in g.log()
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()


def test_worker_configuration_error_stops_everything():
    r = subprocess.run([BINARY, "-p", "0", "-w", "2", "-c", "host=nope://x"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2
    assert "unsupported peer scheme" in r.stderr


def test_workers_need_a_tcp_listener(tmp_path):
    r = subprocess.run([BINARY, "-l", f"unix:{tmp_path}/s.sock", "-w", "2", "-c", "host=echo://"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "workers" in r.stderr
