"""The C plugin ABI through the real binary: framing plugins, dlopen'd backends, Plugins-C."""
import asyncio
import os
import struct
import subprocess

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from conftest import BINARY, ROOT, Gateway, refusal_status

TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(ROOT, ".build", "test-plugins"))


@pytest.fixture(autouse=True)
def need_test_plugins():
    if not os.path.exists(os.path.join(TEST_PLUGINS, "backend_abitest.so")):
        pytest.fail(f"test plugins missing in {TEST_PLUGINS}: run the tests with `make test`")


def run(coro):
    return asyncio.run(coro)


def start(*args, env=None):
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        return Gateway(["-l", "127.0.0.1", "-p", "0", "--plugins", TEST_PLUGINS, *args])
    finally:
        os.environ.clear()
        os.environ.update(old)


def run_binary(*args, env=None):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=10,
                          env={**os.environ, **(env or {})})


async def recv_all(ws, count):
    return [await asyncio.wait_for(ws.recv(), 5) for _ in range(count)]


def test_framing_data_lifetime_discard_and_composition(peer_factory, tmp_path):
    log = tmp_path / "abitest.log"
    peer = peer_factory("tcp", "script", repr([b"# a comment\nline one\n#", b" another\nli", b"ne two\n"]))
    g = start("-c", f"host={peer.url}", "-c", "framing=abitest", env={"ABITEST_LOG": str(log)})
    try:
        async def go():
            for _ in range(3):
                async with websockets.connect(g.url) as ws:
                    assert await recv_all(ws, 2) == ["line one\n", "line two\n"]
        run(go())
        assert g.wait_for_log("framing 'abitest' registered again")
    finally:
        assert g.stop() == 0
    # Allocated on the first call, freed by the NULL-data call at close: once per connection.
    assert log.read_text().split() == ["alloc", "free"] * 3


def test_backend_query_arguments_and_cleanup(tmp_path):
    log = tmp_path / "backend.log"
    g = start("-b", "abitest", "-c", f"log={log}", "-c", "peer=echo://")
    try:
        async def go():
            async with websockets.connect(g.url + "/some/path?q=1", subprotocols=["first", "second"],
                                          additional_headers={"X-Custom-CASE": "v"}) as ws:
                assert ws.subprotocol == "second"
                await ws.send("through a plugin backend")
                assert await ws.recv() == "through a plugin backend"
            with pytest.raises(InvalidStatus) as info:
                async with websockets.connect(g.url + "/none"):
                    pass
            assert info.value.response.status_code == 404
        run(go())
    finally:
        assert g.stop() == 0
    lines = log.read_text().splitlines()
    assert "endpoint /some/path?q=1" in lines
    assert lines.index("protocol first") < lines.index("protocol second")
    assert "header X-Custom-CASE" in lines  # spelled as the client sent it
    assert lines[-1] == "cleanup -"


def test_second_backend_flag_cleans_up_the_first(tmp_path):
    log = tmp_path / "backend.log"
    g = start("-b", "abitest", "-c", f"log={log}", "-c", "peer=tcp://127.0.0.1:1",
              "-b", "abitest", "-c", f"log={log}", "-c", "peer=echo://")
    try:
        async def go():
            async with websockets.connect(g.url) as ws:
                await ws.send("second backend")
                assert await ws.recv() == "second backend"
        run(go())
    finally:
        g.stop()
    lines = log.read_text().splitlines()
    assert lines[:4] == ["configure log", "configure peer", "cleanup -", "configure log"]


@pytest.mark.parametrize("args,messages", [
    (["-b", "badversion"], ["backend_badversion.so", "API version 2"]),
    (["-b", "noquery"], ["backend_noquery.so", "no 'query' symbol"]),
    (["-b", "nosuch"], ["backend_nosuch.so", "cannot open shared object file"]),
    (["-b", "abitest", "-c", "bogus=1"], ["command line (-c bogus=1)", "option 'bogus' rejected (configure returned 7)"]),
    (["-b", "../abitest"], ["must not contain '/'"]),
])
def test_backend_load_errors(args, messages):
    r = run_binary("--plugins", TEST_PLUGINS, *args)
    assert r.returncode == 2
    for m in messages:
        assert m in r.stderr, r.stderr


def test_backend_option_error_names_file_and_line(tmp_path):
    cfg = tmp_path / "plugin.cfg"
    cfg.write_text(f"[core]\nplugins = {TEST_PLUGINS}\nbackend = abitest\n\n[backend]\npeer = echo://\nnope = 1\n")
    r = run_binary(str(cfg))
    assert r.returncode == 2 and f"{cfg}:7:" in r.stderr


def test_missing_plugin_directory_named_explicitly():
    r = run_binary("--plugins", "/nonexistent/plugins", "-c", "host=echo://")
    assert r.returncode == 2 and "/nonexistent/plugins" in r.stderr


def test_plugin_directory_from_environment(peer_factory):
    peer = peer_factory("tcp", "script", repr([b'{"a": [1, 2', b']} "s" 7\n']))
    g = Gateway(["-l", "127.0.0.1", "-p", "0", "-c", f"host={peer.url}", "-c", "framing=json"])  # no --plugins
    try:
        async def go():
            async with websockets.connect(g.url) as ws:
                assert await recv_all(ws, 3) == ['{"a": [1, 2]}', '"s"', "7"]
        run(go())
    finally:
        g.stop()
    # The test plugins through WEBSOCKSY_PLUGINS.
    old = dict(os.environ)
    os.environ.update({"WEBSOCKSY_PLUGINS": TEST_PLUGINS, "ABITEST_LOG": "/dev/null"})
    try:
        g = Gateway(["-l", "127.0.0.1", "-p", "0", "-c", "host=echo://", "-c", "framing=abitest"])
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert f"from {TEST_PLUGINS}" in g.log()
    assert g.stop() == 0


# Plugins-C framings on split reads.

def test_fixedlength(peer_factory):
    peer = peer_factory("tcp", "script", repr([b"abc", b"defgh", b"ijklmnop", b"q"]))
    g = start("-c", f"host={peer.url}", "-c", "framing=fixedlength", "-c", "framing-config=4")
    try:
        async def go():
            async with websockets.connect(g.url) as ws:
                assert await recv_all(ws, 4) == [b"abcd", b"efgh", b"ijkl", b"mnop"]
                # The partial record "q" left at the peer's close is dropped, as websocksy does.
                with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                    await ws.recv()
        run(go())
    finally:
        g.stop()


def test_dynamic32(peer_factory):
    def record(payload):
        return b"HD" + struct.pack(">I", len(payload)) + b"\x00" + payload

    stream = record(b"first") + record(b"") + record(b"third record")
    pieces = [stream[i:i + 3] for i in range(0, len(stream), 3)]
    peer = peer_factory("tcp", "script", repr(pieces))
    g = start("-c", f"host={peer.url}", "-c", "framing=dynamic32", "-c", "framing-config=offset=2,static=1,endian=big")
    try:
        async def go():
            async with websockets.connect(g.url) as ws:
                assert await recv_all(ws, 3) == [record(b"first"), record(b""), record(b"third record")]
        run(go())
    finally:
        g.stop()


def test_json(peer_factory):
    chunks = [b'  {"k": "v\\"}', b'", "n": [1, 2.5e3, true, null]}\n[', b'] "str\\u00e9" ', b'-12 ', b"{bad json"]
    peer = peer_factory("tcp", "script", repr(chunks))
    g = start("-c", f"host={peer.url}", "-c", "framing=json")
    try:
        async def go():
            async with websockets.connect(g.url) as ws:
                got = await recv_all(ws, 5)
                assert got[:4] == ['{"k": "v\\"}", "n": [1, 2.5e3, true, null]}', "[]", '"str\\u00e9"', "-12"]
                assert got[4] == b"{bad json"  # not JSON: passed on as binary
        run(go())
    finally:
        g.stop()


# The file backend: routing by endpoint, cookie and header, and no way out of `path`.

@pytest.fixture
def routes(tmp_path, peer_factory):
    base = tmp_path / "routes"
    base.mkdir()
    alpha = peer_factory("tcp", "script", repr([b"from alpha\n"]))
    beta = peer_factory("tcp", "script", repr([b"from beta\n"]))
    (base / "alpha").write_text(f"# the alpha service\n{alpha.url} * newline lf\n")
    (base / "beta").write_text(f"{beta.url} chat newline lf\n{alpha.url} mqtt newline lf\n")
    (base / "tenant-7").write_text(f"{beta.url} * newline lf\n")
    (base / "by-header").write_text(f"{alpha.url} * newline lf\n")
    (tmp_path / "secret").write_text(f"{alpha.url} * newline lf\n")  # outside `path`
    g = start("-b", "file", "-c", f"path={base}", "-c", "expression=%cookie:tenant%",
              "-c", "expression=%header:X-Route%", "-c", "expression=%endpoint%")
    yield g
    g.stop()


async def first_message(url, **kw):
    async with websockets.connect(url, **kw) as ws:
        return ws.subprotocol, await asyncio.wait_for(ws.recv(), 5)


def test_file_backend_routes_by_endpoint(routes):
    assert run(first_message(routes.url + "/alpha")) == (None, "from alpha\n")
    assert run(first_message(routes.url + "/alpha/")) == (None, "from alpha\n")
    assert run(first_message(routes.url + "/beta", subprotocols=["mqtt"])) == ("mqtt", "from alpha\n")
    assert run(first_message(routes.url + "/beta", subprotocols=["x", "chat"])) == ("chat", "from beta\n")


def test_file_backend_routes_by_cookie_and_header(routes):
    assert run(first_message(routes.url + "/alpha", additional_headers={"Cookie": "a=1; tenant=tenant-7"})) == (None, "from beta\n")
    assert run(first_message(routes.url + "/beta", additional_headers={"x-route": "by-header"})) == (None, "from alpha\n")


@pytest.mark.parametrize("path", ["/../secret", "/..", "/%2e%2e/secret", "/..%2fsecret", "/nothing", "/beta"])
def test_file_backend_refuses_what_it_cannot_route(routes, path):
    assert refusal_status(routes.url + path, subprotocols=["unknown"] if path == "/beta" else None) == 404


def test_a_backend_rejecting_an_option_is_cleaned_up(tmp_path):
    """Loaded is initialised: a backend whose configure fails (at start-up or on a reload) gets its
    cleanup before anything else is loaded in its place."""
    import signal
    import time
    log = tmp_path / "backend.log"
    cfg = tmp_path / "gw.cfg"
    good = f"[core]\nplugins = {TEST_PLUGINS}\nbackend = abitest\n[backend]\nlog = {log}\npeer = echo://\n"
    cfg.write_text(good)
    g = Gateway([str(cfg), "-l", "127.0.0.1", "-p", "0"])
    try:
        cfg.write_text(good + "bogus = 1\n")
        g.proc.send_signal(signal.SIGHUP)
        assert g.wait_for_log("configuration reload failed, keeping the running one")
        time.sleep(0.2)
        lines = log.read_text().splitlines()
        # The running one, its cleanup, the rejected one (log, peer, then bogus refused), its
        # cleanup, and the running configuration loaded again.
        assert lines == ["configure log", "configure peer", "cleanup -",
                         "configure log", "configure peer", "cleanup -",
                         "configure log", "configure peer"], lines
    finally:
        g.stop()
