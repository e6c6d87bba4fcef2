"""End to end through the real binary with an independent client (Python websockets)."""
import asyncio
import hashlib
import os

import pytest
import websockets

from conftest import refusal_status


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 1 << 20])
def test_binary_echo_every_length_form(echo_gateway, size):
    async def go():
        async with websockets.connect(echo_gateway.url + "/", max_size=None) as ws:
            data = os.urandom(size)
            await ws.send(data)
            assert await ws.recv() == data
    run(go())


def test_text_echo_keeps_opcode(echo_gateway):
    async def go():
        async with websockets.connect(echo_gateway.url) as ws:
            for message in ["", "hello", "κόσμε ✓ 🎉", "x" * 70000]:
                await ws.send(message)
                answer = await ws.recv()
                assert isinstance(answer, str) and answer == message
            await ws.send(b"\xff\xfe")
            assert await ws.recv() == b"\xff\xfe"
    run(go())


def test_sixteen_mebibyte_message(echo_gateway):
    async def go():
        async with websockets.connect(echo_gateway.url, max_size=None) as ws:
            data = os.urandom(16 << 20)
            await ws.send(data)
            answer = await ws.recv()
            assert hashlib.sha256(answer).digest() == hashlib.sha256(data).digest()
    run(go())


def test_fragmented_message_is_reassembled(echo_gateway):
    async def go():
        async with websockets.connect(echo_gateway.url) as ws:
            await ws.send(["frag", "men", "ted ✓"])
            assert await ws.recv() == "fragmented ✓"
            await ws.send([b"\x00" * 1000, b"\x01" * 70000])
            assert await ws.recv() == b"\x00" * 1000 + b"\x01" * 70000
    run(go())


def test_ping_gets_pong_with_same_payload(echo_gateway):
    async def go():
        async with websockets.connect(echo_gateway.url) as ws:
            latency = await asyncio.wait_for(await ws.ping(b"payload-123"), 5)
            assert latency >= 0
    run(go())


def test_many_concurrent_clients(echo_gateway):
    async def client(i):
        async with websockets.connect(echo_gateway.url) as ws:
            for j in range(20):
                data = f"{i}:{j}:".encode() + os.urandom(i * 37 % 3000)
                await ws.send(data)
                assert await ws.recv() == data

    async def go():
        await asyncio.gather(*(client(i) for i in range(100)))
    run(go())


def test_clean_close_handshake(echo_gateway):
    async def go():
        ws = await websockets.connect(echo_gateway.url)
        await ws.close(code=4001, reason="done")
        assert ws.close_code == 4001  # the server echoes the code
    run(go())


@pytest.mark.parametrize("configured,offered,selected", [
    ("*", ["mqtt", "chat"], "mqtt"),
    ("chat", ["mqtt", "CHAT"], "CHAT"),
    ("chat", None, None),
    (None, None, None),
])
def test_subprotocol_selection(gateway_factory, configured, offered, selected):
    args = ["-c", "host=echo://"] + (["-c", f"protocol={configured}"] if configured else [])
    g = gateway_factory(*args)

    async def go():
        async with websockets.connect(g.url, subprotocols=offered) as ws:
            assert ws.subprotocol == selected
            await ws.send("x")
            assert await ws.recv() == "x"
    run(go())


@pytest.mark.parametrize("configured,offered", [(None, ["chat"]), ("chat", ["mqtt"])])
def test_subprotocol_refused_with_400(gateway_factory, configured, offered):
    args = ["-c", "host=echo://"] + (["-c", f"protocol={configured}"] if configured else [])
    g = gateway_factory(*args)

    assert refusal_status(g.url, subprotocols=offered) == 400
    assert g.wait_for_log("refused with 400")
