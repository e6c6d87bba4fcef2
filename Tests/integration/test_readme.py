"""The plugin examples in the README compile cleanly and work in the gateway."""
import asyncio
import os
import re
import subprocess

import websockets

from conftest import ROOT, Gateway


def readme_blocks():
    text = open(os.path.join(ROOT, "README.md")).read()
    return {m.group(2): m.group(0)[5:-3] for m in re.finditer(r"```c\n/\* ((\w+)\.c) .*?```", text, re.S)}


def build(tmp_path, name, source):
    (tmp_path / f"{name}.c").write_text(source)
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-shared", "-fPIC",
                    "-I", os.path.join(ROOT, "Sources", "CWebsocksy", "include"),
                    "-o", str(tmp_path / f"{name}.so"), str(tmp_path / f"{name}.c")], check=True)


def test_readme_plugins_compile_and_run(tmp_path, peer_factory):
    blocks = readme_blocks()
    assert set(blocks) == {"framing_records", "backend_split"}
    for name, source in blocks.items():
        build(tmp_path, name, source)
    peer = peer_factory("tcp", "script", repr([b"one\x00tw", b"o\x00"]))
    g = Gateway(["-l", "127.0.0.1", "-p", "0", "--plugins", str(tmp_path), "-b", "split", "-c", f"vnc={peer.url}"])
    try:
        async def go():
            # backend_split routes /vnc/ with "binary" framing: the bytes arrive as sent.
            async with websockets.connect(g.url + "/vnc/1") as ws:
                got = b""
                while len(got) < 8:
                    got += await asyncio.wait_for(ws.recv(), 5)
                assert got == b"one\x00two\x00"
        asyncio.run(go())
    finally:
        assert g.stop() == 0
    records_peer = peer_factory("tcp", "script", repr([b"one\x00tw", b"o\x00"]))
    g = Gateway(["-l", "127.0.0.1", "-p", "0", "--plugins", str(tmp_path), "-c", f"host={records_peer.url}",
                 "-c", "framing=records"])
    try:
        async def go():
            async with websockets.connect(g.url) as ws:
                assert [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)] == ["one", "two"]
        asyncio.run(go())
    finally:
        assert g.stop() == 0
