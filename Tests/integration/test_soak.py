"""Soak: thousands of connections behaving randomly — clean exchanges, aborts mid-frame, peers killed
mid-stream, slow readers — while a control client keeps talking. Bounded in time, loopback only.
At the end the gateway holds exactly the descriptors it started with, and nothing accepted from
either side of a clean exchange went missing."""
import asyncio
import os
import random
import struct
import time

import websockets

from conftest import Gateway, Peer
from wsraw import frame, request

TOTAL = 3000
CONCURRENCY = 200


async def clean_exchange(url, rng):
    async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
        for _ in range(rng.randint(1, 6)):
            data = os.urandom(rng.choice([1, 100, 3000, 70000]))
            await ws.send(data)
            got = b""
            while len(got) < len(data):
                got += await asyncio.wait_for(ws.recv(), 20)
            assert got == data


async def abort_mid_frame(port, rng):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request(path="/stable") + frame(2, os.urandom(5000))[:rng.randint(2, 4000)])
    await writer.drain()
    await asyncio.sleep(rng.random() * 0.05)
    writer.transport.abort()


async def slow_reader(url, rng):
    async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
        data = os.urandom(200000)
        await ws.send(data)
        await asyncio.sleep(0.3)
        got = b""
        while len(got) < len(data):
            got += await asyncio.wait_for(ws.recv(), 20)
        assert got == data


async def fragile(url, rng):
    """Through the peer that gets killed: anything may happen but a clean close or an error code."""
    try:
        async with websockets.connect(url, ping_interval=None) as ws:
            for _ in range(5):
                await ws.send(os.urandom(1000))
                await asyncio.wait_for(ws.recv(), 10)
    except (websockets.ConnectionClosed, websockets.InvalidStatus, asyncio.TimeoutError, ConnectionError):
        pass


def test_soak(tmp_path):
    stable = Peer("tcp", "aecho")
    fragile_peer = Peer("tcp", "aecho")
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "stable").write_text(f"{stable.url} * binary\n")
    (routes / "fragile").write_text(f"{fragile_peer.url} * binary\n")
    g = Gateway(["-l", "127.0.0.1", "-p", "0", "-k", "0", "-b", "file", "-c", f"path={routes}",
                 "-c", "expression=%endpoint%", "--connect-timeout", "2"])
    try:
        time.sleep(0.2)
        baseline = g.fd_count()
        base = g.url

        async def control(stop):
            sent = 0
            async with websockets.connect(base + "/stable", ping_interval=None) as ws:
                while not stop.is_set():
                    msg = struct.pack("!Q", sent) * 16
                    await ws.send(msg)
                    got = b""
                    while len(got) < len(msg):
                        got += await asyncio.wait_for(ws.recv(), 10)
                    assert got == msg
                    sent += 1
                    await asyncio.sleep(0.05)
            return sent

        async def killer(stop):
            nonlocal fragile_peer
            while not stop.is_set():
                await asyncio.sleep(1.5)
                address = fragile_peer.address
                fragile_peer.stop()
                await asyncio.sleep(0.3)
                fragile_peer = Peer("tcp", "aecho", address=address)

        async def soak():
            rng = random.Random(42)
            stop = asyncio.Event()
            control_task = asyncio.create_task(control(stop))
            killer_task = asyncio.create_task(killer(stop))
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(i):
                kind = rng.random()
                async with gate:
                    if kind < 0.5:
                        await clean_exchange(base + "/stable", rng)
                    elif kind < 0.7:
                        await abort_mid_frame(g.port, rng)
                    elif kind < 0.8:
                        await slow_reader(base + "/stable", rng)
                    else:
                        await fragile(base + "/fragile", rng)

            started = time.time()
            await asyncio.gather(*(one(i) for i in range(TOTAL)))
            stop.set()
            control_sent = await control_task
            killer_task.cancel()
            return time.time() - started, control_sent

        elapsed, control_sent = asyncio.run(soak())
        assert control_sent > 10
        assert g.proc.poll() is None
        deadline = time.time() + 10
        while time.time() < deadline and g.fd_count() != baseline:
            time.sleep(0.2)
        assert g.fd_count() == baseline, f"{g.fd_count()} descriptors, {baseline} at the start"
        print(f"soak: {TOTAL} connections in {elapsed:.1f} s, control client exchanged {control_sent} messages")
    finally:
        g.stop()
        stable.stop()
        fragile_peer.stop()
