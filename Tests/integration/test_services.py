"""wsgw's model on the defaultpeer backend: several services on one port, one per path
(`-c service=PATH,PEER[,MODE[,LINE-END]]`), text mode both ways (a line end added to each client
message unless it has one, each peer line a message without it), `auto` from `?encoding=text`,
ports given by service name. The text mode is checked against a real line-based daemon:
redis-server's inline protocol (.ci/run installs it)."""
import asyncio
import os
import shutil
import subprocess
import sys
import time

import pytest
import websockets

from conftest import BINARY, ROOT, Gateway, free_port


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def redis():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    import socket
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.kill()
    proc.wait()


@pytest.fixture
def lineservice():
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "demo", "lineservice.py"), f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("line service on")
    yield port
    proc.kill()
    proc.wait()


async def exchange(url, messages, replies, **kw):
    """Sends each message and collects `replies` messages in order."""
    got = []
    async with websockets.connect(url, **kw) as ws:
        for m in messages:
            await ws.send(m)
        while len(got) < replies:
            got.append(await asyncio.wait_for(ws.recv(), 5))
    return got


def test_text_mode_against_redis_inline_protocol(gateway_factory, redis):
    g = gateway_factory("-c", f"service=/redis,tcp://127.0.0.1:{redis},text,crlf")
    url = g.url + "/redis"
    # Each message gets CR LF; each reply line comes back as one text message without it.
    got = run(exchange(url, ["PING", "SET greeting hello", "GET greeting", "ECHO already\r\n"], 6))
    assert got == ["+PONG", "+OK", "$5", "hello", "$7", "already"]
    # A message fragmented by the client still gets one line end, at its end.
    async def fragmented():
        async with websockets.connect(url) as ws:
            await ws.send(["GET ", "greet", "ing"])
            return [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)]
    assert run(fragmented()) == ["$5", "hello"]


def test_several_services_on_one_port(gateway_factory, lineservice, peer_factory):
    echo = peer_factory("tcp")
    g = gateway_factory("-c", f"service=/lines,tcp://127.0.0.1:{lineservice},text",
                        "-c", f"service=/raw,{echo.url}",
                        "-c", f"service=/either/,{echo.url},auto")
    got = run(exchange(g.url + "/lines", ["hello", "two\n"], 3))
    assert got == ["welcome to the line service: send a line, get one back",
                   "line 1: HELLO (5 characters)", "line 2: TWO (3 characters)"]
    # binary mode: bytes as they come, no line end added, binary messages.
    assert run(exchange(g.url + "/raw", [b"\x00\x01no newline"], 1)) == [b"\x00\x01no newline"]
    # auto: text with ?encoding=text (a line end added, lines without it), else binary.
    assert run(exchange(g.url + "/either?encoding=text", ["abc"], 1)) == ["abc"]
    assert run(exchange(g.url + "/either", ["abc"], 1)) == [b"abc"]
    # Another path: 404 (no host configured as the fallback).
    from conftest import refusal_status
    assert refusal_status(g.url + "/nothing") == 404
    assert g.wait_for_log(r"refused with 404: no service at /nothing")


def test_host_is_the_fallback_for_other_paths(gateway_factory, lineservice):
    g = gateway_factory("-c", "host=echo://", "-c", f"service=/lines,tcp://127.0.0.1:{lineservice},text")
    assert run(exchange(g.url + "/anything", ["echoed"], 1)) == ["echoed"]
    assert run(exchange(g.url + "/lines/", [], 1)) == ["welcome to the line service: send a line, get one back"]


def test_service_names_and_bad_services_stop_start_up():
    # A port named in /etc/services is accepted; an unknown name, a bad mode, a path without /,
    # a duplicate path: start-up errors naming the option.
    def start(*args):
        return subprocess.run([BINARY, "-l", "127.0.0.1", "-p", "0", "--check-config", *args],
                              capture_output=True, text=True, timeout=10)
    ok = start("-c", "service=/mail,tcp://127.0.0.1:pop3,text", "-c", "service=/redis,tcp://localhost:redis")
    assert ok.returncode == 0, ok.stderr
    for option, why in [("service=/x,tcp://127.0.0.1:no-such-service", "unknown service name 'no-such-service' for tcp"),
                        ("service=/x,tcp://127.0.0.1:1,loud", "mode must be text, binary or auto"),
                        ("service=x,tcp://127.0.0.1:1", "service path must start with /"),
                        ("service=/x,tcp://127.0.0.1:1,text,nl", "unknown line end 'nl'"),
                        ("service=/x", "service must be PATH,PEER")]:
        bad = start("-c", option)
        assert bad.returncode == 2 and why in bad.stderr and f"-c {option}" in bad.stderr, (option, bad.stderr)
    dup = start("-c", "service=/x,echo://", "-c", "service=/x/,echo://")
    assert dup.returncode == 2 and "service path /x is given twice" in dup.stderr


def test_service_by_name_connects(gateway_factory, redis):
    """`tcp://HOST:NAME` resolves the name like a number (getaddrinfo): with no server on the
    named port the client gets 502 naming the connect failure, not a start-up or parse error."""
    from conftest import refusal_status
    g = gateway_factory("-c", "service=/mail,tcp://127.0.0.1:pop3")
    assert refusal_status(g.url + "/mail") == 502
