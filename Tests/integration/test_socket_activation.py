"""systemd socket activation: the gateway serves on descriptor 3 when LISTEN_PID/LISTEN_FDS say so."""
import asyncio
import signal
import socket
import subprocess

import pytest
import websockets

from conftest import BINARY


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serves_the_inherited_socket(workers):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    # As systemd does: the socket is descriptor 3, LISTEN_PID is the service's own pid (sh's $$,
    # kept across exec), LISTEN_FDS the count. The -l/-p given are ignored for the inherited socket.
    script = 'exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"'
    proc = subprocess.Popen(["sh", "-c", script, "sh", BINARY, "-l", "127.0.0.1", "-p", "1", "-w", workers,
                             "-c", "host=echo://"], stdin=listener.fileno(), stderr=subprocess.PIPE, text=True)
    listener.close()  # only the gateway holds it now
    try:
        line = proc.stderr.readline()
        assert "listening on" in line and ("127.0.0.1:%d" % port in line or "passed by the service manager" in line), line

        async def go():
            for i in range(6):
                async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
                    await ws.send(f"activated {i}")
                    assert await ws.recv() == f"activated {i}"
        asyncio.run(go())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_ignored_when_meant_for_another_process():
    """LISTEN_PID of another process: the gateway binds its own socket as configured."""
    proc = subprocess.Popen(["sh", "-c", 'LISTEN_PID=1 LISTEN_FDS=1 exec "$@"', "sh", BINARY, "-l", "127.0.0.1", "-p", "0",
                             "-c", "host=echo://"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        port = int(line.split("listening on 127.0.0.1:")[1].split()[0])

        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("own socket")
                assert await ws.recv() == "own socket"
        asyncio.run(go())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
