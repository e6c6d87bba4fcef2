"""`websocksy FILE [FLAG]...`: flags over the configuration file, observed through the running
gateway; --print-config read back as a file; --check-config; SIGHUP re-reading the file under the
same flags."""
import asyncio
import os
import shutil
import signal
import socket
import subprocess

import pytest
import websockets

import tlscerts
from conftest import BINARY, ROOT, Gateway, free_port
from wsraw import RawClient, frame, request

TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(ROOT, ".build", "test-plugins"))


def run(coro):
    return asyncio.run(coro)


def run_binary(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=20)


def settings(text):
    """The key = value lines of a configuration, without comments and section headers."""
    return [line for line in text.splitlines() if line and not line.startswith((";", "#", "["))]


async def first_message(url):
    async with websockets.connect(url) as ws:
        return await asyncio.wait_for(ws.recv(), 5)


@pytest.fixture
def need_test_plugins():
    if not os.path.exists(os.path.join(TEST_PLUGINS, "backend_abitest.so")):
        pytest.fail(f"test plugins missing in {TEST_PLUGINS}: run the tests with `make test`")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make test certificates (.ci/run installs it)")
    return tlscerts.make(tmp_path_factory.mktemp("certs"))


def test_flags_override_the_files_listen_port_and_peer(tmp_path, peer_factory):
    file_peer = peer_factory("tcp", "script", repr([b"from the file's peer"]))
    flag_peer = peer_factory("tcp", "script", repr([b"from the flag's peer"]))
    socket_path = tmp_path / "file.sock"
    cfg = tmp_path / "ws.cfg"
    cfg.write_text(f"[core]\nlisten = unix:{socket_path}\nport = {free_port()}\n\n[backend]\nhost = {file_peer.url}\n")
    port = free_port()
    g = Gateway([str(cfg), "-p", str(port), "-l", "127.0.0.1", "-c", f"host={flag_peer.url}"])
    try:
        assert g.port == port  # -p and -l beat the file's port and Unix socket
        assert not socket_path.exists()
        assert run(first_message(g.url)) in ("from the flag's peer", b"from the flag's peer")
    finally:
        assert g.stop() == 0


def test_keys_no_flag_names_still_come_from_the_file(tmp_path):
    cfg = tmp_path / "ws.cfg"
    cfg.write_text("[core]\nlisten = 127.0.0.1\nport = 0\nmax-message = 1k\n\n[backend]\nhost = echo://\n")
    for flags, limit in [([], 1024), (["--max-message", "64k"], 65536)]:
        g = Gateway([str(cfg), *flags])
        try:
            c = RawClient(g.port)
            c.handshake()
            c.send(frame(2, b"x" * 4000))
            if limit < 4000:
                c.expect_close(1009)
            else:
                assert c.recv_frame() == (True, 2, b"x" * 4000)
        finally:
            assert g.stop() == 0


def test_backend_flag_replaces_a_file_backend_that_cannot_load(tmp_path):
    """-b after a file drops the file's backend and its options without loading it."""
    cfg = tmp_path / "ws.cfg"
    cfg.write_text("[core]\nlisten = 127.0.0.1\nport = 0\nbackend = not-installed-here\n\n[backend]\npath = /srv/routes\n")
    assert run_binary(str(cfg)).returncode == 2
    g = Gateway([str(cfg), "-b", "defaultpeer", "-c", "host=echo://"])
    try:
        async def go():
            async with websockets.connect(g.url) as ws:
                await ws.send("replaced")
                assert await asyncio.wait_for(ws.recv(), 5) == "replaced"
        run(go())
    finally:
        assert g.stop() == 0
    # -c given before -b would go to the file's backend, which is never configured: refused.
    r = run_binary(str(cfg), "-c", "host=echo://", "-b", "defaultpeer")
    assert r.returncode == 2 and "give -c after -b" in r.stderr, r.stderr


def test_c_options_follow_the_files_for_a_plugin_backend(tmp_path, need_test_plugins):
    """A plugin gets the file's [backend] options, then each -c, in order; backend_abitest keeps the
    last value of a key, as defaultpeer does."""
    log = tmp_path / "abitest.log"
    cfg = tmp_path / "ws.cfg"
    cfg.write_text(f"[core]\nlisten = 127.0.0.1\nport = 0\nplugins = {TEST_PLUGINS}\nbackend = abitest\n\n"
                   f"[backend]\nlog = {log}\npeer = tcp://127.0.0.1:1\n")
    g = Gateway([str(cfg), "-c", "peer=echo://"])
    try:
        async def go():
            async with websockets.connect(g.url) as ws:
                await ws.send("through the flag's peer")
                assert await asyncio.wait_for(ws.recv(), 5) == "through the flag's peer"
        run(go())
    finally:
        assert g.stop() == 0
    assert log.read_text().splitlines()[:3] == ["configure log", "configure peer", "configure peer"]


def test_print_config_shows_origins_and_reads_back_the_same(tmp_path, peer_factory):
    peer = peer_factory("tcp", "echo")
    cfg = tmp_path / "ws.cfg"
    cfg.write_text("; a comment\n[core]\nlisten = 127.0.0.1\nport = 8001\nping = 7\norigin = https://a.example\n"
                   "access-log = -\n\n[backend]\nhost = tcp://127.0.0.1:1\nprotocol = *\n")
    r = run_binary(str(cfg), "-p", "0", "--origin", "https://b.example", "-c", f"host={peer.url}", "--print-config")
    assert r.returncode == 0, r.stderr
    printed = r.stdout
    # Each setting after a comment naming its origin.
    assert "; flag -p\nport = 0\n" in printed
    assert f"; {cfg}:3\nlisten = 127.0.0.1\n" in printed
    assert f"; {cfg}:5\nping = 7\n" in printed
    assert "; default\nmax-message = 16M\n" in printed
    assert "; flag --origin\norigin = https://b.example\n" in printed and "a.example" not in printed
    assert "; user: not set (default)" in printed
    assert f"; {cfg}:10 (replaced by a later host)\nhost = tcp://127.0.0.1:1\n" in printed
    assert f"; flag -c\nhost = {peer.url}\n" in printed
    assert f"; {cfg}:11\nprotocol = *\n" in printed
    assert printed.index("[core]") < printed.index("backend = defaultpeer") < printed.index("[backend]")

    copy = tmp_path / "printed.cfg"
    copy.write_text(printed)
    again = run_binary(str(copy), "--print-config")
    assert again.returncode == 0, again.stderr
    assert settings(again.stdout) == settings(printed)
    assert f"; {copy}:" in again.stdout  # now every setting comes from the copy, or is a default

    # The copy runs the same gateway: the flag's peer, the flag's origin.
    g = Gateway([str(copy)])
    try:
        c = RawClient(g.port)
        c.send(request())
        assert c.read_response()[0] == 403
        c = RawClient(g.port)
        c.handshake(extra="Origin: https://b.example\r\n")
        c.send(frame(1, b"via the copy"))
        assert c.recv_frame() == (True, 1, b"via the copy")
    finally:
        assert g.stop() == 0


def test_check_config_accepts_a_good_configuration_without_listening(tmp_path, certs, need_test_plugins):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    web = tmp_path / "www"
    web.mkdir()
    access_log = tmp_path / "logs" / "access.log"
    access_log.parent.mkdir()
    cfg = tmp_path / "ws.cfg"
    cfg.write_text(f"[core]\nlisten = 127.0.0.1\nport = {port}\nplugins = {TEST_PLUGINS}\nbackend = abitest\n"
                   f"tls-cert = {certs}/server.pem\ntls-key = {certs}/server.key\nweb = {web}\n"
                   f"access-log = {access_log}\nuser = nobody\nworkers = 2\n\n[backend]\npeer = echo://\n")
    try:
        r = run_binary(str(cfg), "--check-config")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "configuration OK\n"
        assert not access_log.exists()  # checked, not created
        # Flags are checked with the file: -b drops the file's plugin backend unloaded.
        r = run_binary(str(cfg), "-b", "defaultpeer", "-c", "host=echo://", "--check-config")
        assert r.returncode == 0 and r.stdout == "configuration OK\n", r.stderr
    finally:
        busy.close()


@pytest.mark.parametrize("text,flags,messages", [
    ("[core]\nport = 0\nprot = 1\n", [], ["{cfg}:3: unknown [core] key 'prot'"]),
    ("[core]\nport = 0\n", ["-p", "99999"], ["command line (-p): port must be 0–65535"]),
    ("[core]\nplugins = {plugins}\nbackend = nosuch\n", [], ["{cfg}:3: {plugins}/backend_nosuch.so: cannot load backend"]),
    ("[core]\nplugins = {plugins}\nbackend = badversion\n", [], ["{cfg}:3:", "API version 2"]),
    ("[core]\nplugins = {plugins}\nbackend = abitest\n[backend]\npeer = echo://\nnope = 1\n", [],
     ["{cfg}:6: backend abitest: option 'nope' rejected"]),
    ("[core]\nplugins = {plugins}\n[backend]\nhost = echo://\n", ["-b", "noquery"],
     ["command line (-b): {plugins}/backend_noquery.so: backend has no 'query' symbol"]),
    ("[core]\ntls-cert = /nonexistent/cert.pem\n[backend]\nhost = echo://\n", [],
     ["{cfg}:2: /nonexistent/cert.pem: cannot load certificate"]),
    ("[core]\nweb = /nonexistent/www\n[backend]\nhost = echo://\n", [], ["{cfg}:2: web: cannot use /nonexistent/www"]),
    ("[core]\naccess-log = /nonexistent/dir/access.log\n[backend]\nhost = echo://\n", [],
     ["{cfg}:2: access-log: cannot create /nonexistent/dir/access.log"]),
    ("[core]\nport = 0\n", [], ["backend defaultpeer: no peer configured"]),
])
def test_check_config_reports_the_first_problem(tmp_path, need_test_plugins, text, flags, messages):
    cfg = tmp_path / "ws.cfg"
    cfg.write_text(text.format(plugins=TEST_PLUGINS))
    r = run_binary(str(cfg), *flags, "--check-config")
    assert r.returncode == 2
    assert r.stdout == ""
    for message in messages:
        assert message.format(cfg=cfg, plugins=TEST_PLUGINS) in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1].startswith("websocksy: ")  # after any log lines of the plugins loaded


def test_start_up_errors_point_at_the_setting_too(tmp_path):
    cfg = tmp_path / "ws.cfg"
    cfg.write_text("[core]\nport = 0\nweb = /nonexistent/www\n[backend]\nhost = echo://\n")
    r = run_binary(str(cfg))
    assert r.returncode == 2 and f"{cfg}:3: web: cannot use /nonexistent/www" in r.stderr, r.stderr


def test_sighup_rereads_the_file_and_keeps_the_flags(tmp_path):
    cfg = tmp_path / "ws.cfg"
    cfg.write_text("[core]\nlisten = 127.0.0.1\nport = 0\nmax-message = 1k\n\n[backend]\nhost = tcp://127.0.0.1:1\n")
    g = Gateway([str(cfg), "--max-message", "64k", "-c", "host=echo://"])
    try:
        held = RawClient(g.port)
        held.handshake()
        held.send(frame(2, b"x" * 4000))
        assert held.recv_frame() == (True, 2, b"x" * 4000)
        # The file changes the origin list and tries to change what the flags set.
        cfg.write_text("[core]\nlisten = 127.0.0.1\nport = 0\nmax-message = 2k\norigin = https://ok.example\n\n"
                       "[backend]\nhost = tcp://127.0.0.1:2\n")
        g.proc.send_signal(signal.SIGHUP)
        assert g.wait_for_log("configuration reloaded")
        c = RawClient(g.port)
        c.send(request())
        assert c.read_response()[0] == 403  # the file's new origin list
        c = RawClient(g.port)
        c.handshake(extra="Origin: https://ok.example\r\n")
        c.send(frame(2, b"y" * 4000))
        assert c.recv_frame() == (True, 2, b"y" * 4000)  # still --max-message 64k and -c host=echo://
        held.send(frame(1, b"still here"))
        assert held.recv_frame() == (True, 1, b"still here")
        # A broken line in the file fails the reload even where a flag would override the key.
        cfg.write_text("[core]\nmax-message = lots\n")
        g.proc.send_signal(signal.SIGHUP)
        assert g.wait_for_log(f"configuration reload failed, keeping the running one: {cfg}:2: max-message")
        c = RawClient(g.port)
        c.handshake(extra="Origin: https://ok.example\r\n")
    finally:
        assert g.stop() == 0
