"""exec:// program peers through the real binary: one program per WebSocket connection, its
stdin/stdout bridged, stderr logged, CGI-style environment, exit statuses as close codes, signals
after the client has gone, reaping, descriptors, max-programs, backpressure, routes."""
import asyncio
import hashlib
import os
import re
import stat
import subprocess
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from conftest import BINARY, ROOT, Gateway, refusal_status, rss_kib
from wsraw import RawClient, close_body, frame

TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(ROOT, ".build", "test-plugins"))


def run(coro):
    return asyncio.run(coro)


# --- helpers ----------------------------------------------------------------------------------------

@pytest.fixture
def gw():
    """Starts gateways (optionally with extra environment variables); stops them at the end."""
    started = []

    def start(*args, env=None):
        old = dict(os.environ)
        os.environ.update(env or {})
        try:
            g = Gateway(["-l", "127.0.0.1", "-p", "0", *args])
        finally:
            os.environ.clear()
            os.environ.update(old)
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


def script(directory, name, body):
    """An executable /bin/sh script in `directory`; returns its absolute path."""
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def lines(*extra):
    return ["-c", "framing=newline", "-c", "framing-config=lf", *extra]


def binary(*extra):
    return ["-c", "framing=binary", *extra]


async def until_close(ws, timeout=10):
    """Every message until the gateway's Close: (messages, code, reason)."""
    messages = []
    try:
        while True:
            messages.append(await asyncio.wait_for(ws.recv(), timeout))
    except ConnectionClosed as closed:
        rcvd = closed.rcvd
    return messages, (rcvd.code if rcvd else None), (rcvd.reason if rcvd else None)


async def receive_bytes(ws, count, timeout=20):
    got = bytearray()
    while len(got) < count:
        m = await asyncio.wait_for(ws.recv(), timeout)
        got += m if isinstance(m, bytes) else m.encode()
    return bytes(got)


def as_bytes(messages):
    return b"".join(m if isinstance(m, bytes) else m.encode() for m in messages)


def children(pid):
    """(pid, state, command) of every child process of `pid`."""
    out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid=,stat=,comm="], capture_output=True, text=True).stdout
    result = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            result.append((int(parts[0]), parts[1], parts[2]))
    return result


def wait_until(predicate, timeout=5, step=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def process_state(pid):
    """The state letter of a process, or None once it is gone (reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def program_fds(pid):
    return sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))


def client_prefix(ws):
    host, port = ws.local_address[:2]
    return f"{host}:{port}"


# --- echo round trips through cat -------------------------------------------------------------------

def test_cat_binary_round_trip_one_mebibyte_in_order(gw):
    g = gw("-c", "host=exec:///bin/cat", *binary())
    data = os.urandom(1 << 20)

    async def go():
        async with websockets.connect(g.url, max_size=None) as ws:
            await ws.send(b"hello")
            assert await receive_bytes(ws, 5) == b"hello"

            async def writer():
                for i in range(0, len(data), 10000):  # many messages of odd sizes
                    await ws.send(data[i:i + 10000])

            got, _ = await asyncio.gather(receive_bytes(ws, len(data)), writer())
            assert len(got) == len(data)
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    run(go())


def test_cat_line_framing_gives_one_message_per_line(gw):
    g = gw("-c", "host=exec:///bin/cat", *lines())

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send("one\ntwo\nthr")
            await ws.send(b"ee\nfour\n")
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
            assert [m.rstrip("\n") if isinstance(m, str) else m.rstrip(b"\n").decode() for m in got] == \
                ["one", "two", "three", "four"]
            # A large number of lines arrive in order, one message each.
            count = 5000
            await ws.send("".join(f"line {i}\n" for i in range(count)))
            for i in range(count):
                m = await asyncio.wait_for(ws.recv(), 5)
                m = m if isinstance(m, str) else m.decode()
                assert m.rstrip("\n") == f"line {i}"
    run(go())


def test_client_data_reaches_stdin_completely_before_eof(gw, tmp_path):
    out = tmp_path / "count"
    prog = script(tmp_path, "sink.sh", f"wc -c > {out}\n")
    g = gw("-c", f"host=exec://{prog}", *binary())
    data = os.urandom(300000)

    async def go():
        async with websockets.connect(g.url, max_size=None) as ws:
            for i in range(0, len(data), 7000):
                await ws.send(data[i:i + 7000])
    run(go())
    assert wait_until(lambda: out.exists() and out.read_text().strip() != "", 5)
    assert out.read_text().strip() == str(len(data))


# --- environment, working directory ------------------------------------------------------------------

ENV_SCRIPT = 'echo "PWD_IS=$(pwd)"\nenv\n'


def env_of(messages):
    text = as_bytes(messages).decode()
    result = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            result.setdefault(k, v)
    return result


def test_environment_is_cgi_style_and_leaks_nothing(gw, tmp_path):
    prog = script(tmp_path, "env.sh", ENV_SCRIPT)
    g = gw("-c", f"host=exec://{prog}", "-c", "protocol=chat", *binary(), env={"SECRET_X": "1", "SECRET_Y": "2"})

    async def go():
        async with websockets.connect(g.url + "/some/path?a=1&b=x%20y", subprotocols=["chat"],
                                      additional_headers={"X-Custom": "hello there", "X-Other-Thing": "v"}) as ws:
            messages, code, reason = await until_close(ws)
            return messages, code, client_prefix(ws), ws.local_address[1]
    messages, code, _, local_port = run(go())
    assert code == 1000
    env = env_of(messages)
    expected = {
        "GATEWAY_INTERFACE": "websocksy/1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": "/some/path?a=1&b=x%20y",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/some/path",
        "QUERY_STRING": "a=1&b=x%20y",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(g.port),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": str(local_port),
        "WEBSOCKET_PROTOCOL": "chat",
        "HTTP_X_CUSTOM": "hello there",
        "HTTP_X_OTHER_THING": "v",
        "HTTP_HOST": f"127.0.0.1:{g.port}",
        "HTTP_SEC_WEBSOCKET_PROTOCOL": "chat",
        "HTTP_UPGRADE": "websocket",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PWD_IS": str(tmp_path),
    }
    for k, v in expected.items():
        assert env.get(k) == v, (k, env.get(k), env)
    assert env["SERVER_SOFTWARE"].startswith("websocksy")
    assert "SECRET_X" not in env and "SECRET_Y" not in env
    assert "REMOTE_USER" not in env
    # Nothing else of the gateway's (or the test runner's) environment.
    for name in ("HOME", "USER", "LANG", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST", "WEBSOCKSY_BIN"):
        if name in os.environ:
            assert name not in env, name
    allowed = set(expected) | {"SERVER_SOFTWARE", "PWD", "SHLVL", "_", "OLDPWD"}
    extra = {k for k in env if not k.startswith("HTTP_")} - allowed
    assert not extra, extra


def test_environment_without_subprotocol_or_query(gw, tmp_path):
    prog = script(tmp_path, "env.sh", ENV_SCRIPT)
    g = gw("-c", f"host=exec://{prog}", *binary())
    c = RawClient(g.port)
    c.handshake(path="/x", host="example.test:8443", extra="X-Custom: a-b\r\n")
    data = b""
    while True:
        _, opcode, payload = c.recv_frame()
        if opcode == 8:
            break
        data += payload
    c.close()
    env = env_of([data])
    assert env["SERVER_NAME"] == "example.test"
    assert env["HTTP_HOST"] == "example.test:8443"
    assert env["QUERY_STRING"] == "" and env["PATH_INFO"] == "/x" and env["REQUEST_URI"] == "/x"
    assert env["HTTP_X_CUSTOM"] == "a-b"
    assert "WEBSOCKET_PROTOCOL" not in env


def test_exec_env_passes_named_variables_and_exec_dir_sets_cwd(gw, tmp_path):
    prog = script(tmp_path, "env.sh", ENV_SCRIPT)
    workdir = tmp_path / "work"
    workdir.mkdir()
    g = gw("-c", f"host=exec://{prog}", *binary(), "--exec-env", "SECRET_X,PATH", "--exec-dir", str(workdir),
           env={"SECRET_X": "visible", "SECRET_Y": "hidden", "PATH": "/opt/test/bin:/usr/bin:/bin"})

    async def go():
        async with websockets.connect(g.url) as ws:
            return await until_close(ws)
    messages, code, _ = run(go())
    env = env_of(messages)
    assert code == 1000
    assert env.get("SECRET_X") == "visible"
    assert "SECRET_Y" not in env
    assert env.get("PATH") == "/opt/test/bin:/usr/bin:/bin"
    assert env.get("PWD_IS") == str(workdir)


# --- exit statuses ------------------------------------------------------------------------------------

def test_exit_zero_closes_with_1000_after_its_output(gw, tmp_path):
    prog = script(tmp_path, "hello.sh", "echo hello\necho world\nexit 0\n")
    g = gw("-c", f"host=exec://{prog}", *lines())

    async def go():
        async with websockets.connect(g.url) as ws:
            return await until_close(ws)
    messages, code, reason = run(go())
    assert [m.rstrip("\n") if isinstance(m, str) else m.rstrip(b"\n").decode() for m in messages] == ["hello", "world"]
    assert code == 1000
    time.sleep(0.2)
    assert "ended with" not in g.log()


def test_exit_three_closes_with_1011_and_logs(gw, tmp_path):
    prog = script(tmp_path, "fail.sh", "echo partial\nexit 3\n")
    g = gw("-c", f"host=exec://{prog}", *lines())

    async def go():
        async with websockets.connect(g.url) as ws:
            return (await until_close(ws)), client_prefix(ws)
    (messages, code, reason), prefix = run(go())
    assert [m.rstrip("\n") if isinstance(m, str) else m.rstrip(b"\n").decode() for m in messages] == ["partial"]
    assert code == 1011
    assert reason == "program ended with status 3"
    assert g.wait_for_log(re.escape(prefix) + r": .*fail\.sh.* ended with status 3")
    assert len(re.findall(r"ended with status 3", g.log())) == 1


def test_killed_by_a_signal_closes_with_1011_naming_the_signal(gw, tmp_path):
    prog = script(tmp_path, "suicide.sh", "echo bye\nkill -KILL $$\n")
    g = gw("-c", f"host=exec://{prog}", *lines())

    async def go():
        async with websockets.connect(g.url) as ws:
            return await until_close(ws)
    messages, code, reason = run(go())
    assert code == 1011
    assert reason.startswith("program ended with signal 9"), reason
    assert g.wait_for_log(r"suicide\.sh .*ended with signal 9")


def test_program_exit_ends_the_websocket_even_if_a_background_child_keeps_stdout(gw, tmp_path):
    """The program itself exits with 3 but leaves a background child holding its stdout: the
    program's exit ends the WebSocket (1011), and the child does not keep the client waiting."""
    pidfile = tmp_path / "bg.pid"
    prog = script(tmp_path, "daemonish.sh", f"sleep 30 &\necho $! > {pidfile}\necho started\nexit 3\n")
    g = gw("-c", f"host=exec://{prog}", *lines(), "--exec-grace", "1")
    try:
        async def go():
            async with websockets.connect(g.url) as ws:
                first = await asyncio.wait_for(ws.recv(), 5)
                try:
                    await asyncio.wait_for(ws.recv(), 3)
                except ConnectionClosed as closed:
                    return first, closed.rcvd.code if closed.rcvd else None, closed.rcvd.reason if closed.rcvd else None
                except asyncio.TimeoutError:
                    return first, None, None
                return first, "unexpected message", None
        first, code, reason = run(go())
        assert code == 1011 and reason == "program ended with status 3", (first, code, reason)
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), 9)
            except (ProcessLookupError, ValueError):
                pass


# --- stderr -------------------------------------------------------------------------------------------

def test_stderr_lines_are_logged_with_prefix_and_rate_limited(gw, tmp_path):
    prog = script(tmp_path, "noisy.sh",
                  'i=1\nwhile [ $i -le 50 ]; do echo "err line $i" >&2; i=$((i+1)); done\n'
                  'echo done\nread x\n')
    g = gw("-c", f"host=exec://{prog}", *lines())

    async def go():
        async with websockets.connect(g.url) as ws:
            assert (await asyncio.wait_for(ws.recv(), 5)).rstrip("\n") == "done"
            prefix = client_prefix(ws)
            assert g.wait_for_log(re.escape(f"{prefix}: noisy.sh: err line 20") + r"\n")
            await asyncio.sleep(0.3)
            log = g.log()
            await ws.send("bye\n")  # the script reads a line and exits 0
            messages, code, _ = await until_close(ws)
            assert code == 1000
            return prefix, log
    prefix, during = run(go())
    logged = re.findall(re.escape(prefix) + r": noisy\.sh: err line (\d+)\n", during)
    assert logged == [str(i) for i in range(1, 21)], logged
    # The 30 not logged are reported (at the latest when the program ends).
    assert g.wait_for_log(re.escape(prefix) + r": noisy\.sh: 30\b.*not logged"), g.log()[-2000:]
    assert len(re.findall(r"err line \d", g.log())) == 20


def test_stderr_rate_limit_window_moves_on(gw, tmp_path):
    """25 lines, a pause over one second, 5 lines: 20 + the report of 5 dropped + 5."""
    prog = script(tmp_path, "bursts.sh",
                  'i=1\nwhile [ $i -le 25 ]; do echo "a$i" >&2; i=$((i+1)); done\n'
                  'sleep 1.3\n'
                  'i=1\nwhile [ $i -le 5 ]; do echo "b$i" >&2; i=$((i+1)); done\n')
    g = gw("-c", f"host=exec://{prog}", *lines())

    async def go():
        async with websockets.connect(g.url) as ws:
            await until_close(ws)
            return client_prefix(ws)
    prefix = run(go())
    assert g.wait_for_log(re.escape(prefix) + r": bursts\.sh: b5\n")
    log = g.log()
    assert re.findall(r"bursts\.sh: (a\d+)\n", log) == [f"a{i}" for i in range(1, 21)]
    assert re.findall(r"bursts\.sh: (b\d+)\n", log) == [f"b{i}" for i in range(1, 6)]
    assert re.search(r"bursts\.sh: 5 stderr line\(s\) not logged", log), log


# --- signals after the client has gone, reaping ---------------------------------------------------------

def test_program_that_ignores_sigterm_is_killed_after_twice_the_grace_and_reaped(gw, tmp_path):
    pidfile = tmp_path / "pids"
    prog = script(tmp_path, "stubborn.sh",
                  f"trap '' TERM\nsleep 1000 &\necho \"$$ $!\" > {pidfile}\necho ready\nwait\nwait\n")
    g = gw("-c", f"host=exec://{prog}", *lines(), "--exec-grace", "1")

    async def go():
        async with websockets.connect(g.url) as ws:
            assert (await asyncio.wait_for(ws.recv(), 5)).rstrip("\n") == "ready"
    run(go())
    left = time.time()
    shell, sleeper = map(int, pidfile.read_text().split())
    assert g.wait_for_log(r"stubborn\.sh .*SIGTERM", 4)
    term_after = time.time() - left
    assert process_state(shell) not in (None, "Z"), "SIGTERM was not ignored?"
    assert g.wait_for_log(r"stubborn\.sh .*SIGKILL", 4)
    kill_after = time.time() - left
    assert 0.7 <= term_after <= 2.0, term_after
    assert 1.7 <= kill_after <= 3.0, kill_after
    # Reaped (no zombie child of the gateway), and the whole process group is gone.
    assert wait_until(lambda: process_state(shell) is None, 3), process_state(shell)
    assert wait_until(lambda: process_state(sleeper) in (None, "Z"), 3), process_state(sleeper)
    assert children(g.proc.pid) == []
    assert g.wait_for_log(r"stubborn\.sh .*ended with signal 9")


def test_program_that_stops_on_eof_gets_no_signal(gw, tmp_path):
    g = gw("-c", "host=exec:///bin/cat", *binary(), "--exec-grace", "1")

    async def go():
        async with websockets.connect(g.url) as ws:
            await ws.send(b"x")
            assert await receive_bytes(ws, 1) == b"x"
            return [pid for pid, _, comm in children(g.proc.pid) if comm == "cat"]
    pids = run(go())
    assert len(pids) == 1
    assert wait_until(lambda: process_state(pids[0]) is None, 3)
    time.sleep(1.5)
    assert "SIGTERM" not in g.log() and "SIGKILL" not in g.log()
    assert children(g.proc.pid) == []


def test_program_ignoring_eof_gets_sigterm_after_the_grace(gw, tmp_path):
    g = gw("-c", "host=exec:///bin/sleep?1000", *binary(), "--exec-grace", "1")

    async def go():
        async with websockets.connect(g.url) as ws:
            await asyncio.sleep(0.2)
            return [pid for pid, _, comm in children(g.proc.pid) if comm == "sleep"]
    pids = run(go())
    assert len(pids) == 1
    time.sleep(0.5)
    assert process_state(pids[0]) not in (None, "Z")  # within the grace period it runs on
    assert g.wait_for_log(r"sleep .*SIGTERM", 3)
    assert wait_until(lambda: process_state(pids[0]) is None, 3)
    assert g.wait_for_log(r"sleep .*ended with signal 15")
    time.sleep(1.2)
    assert "SIGKILL" not in g.log()


def test_programs_get_only_three_descriptors(gw):
    g = gw("-c", "host=exec:///bin/cat", *binary())

    async def go():
        conns = [await websockets.connect(g.url) for _ in range(5)]
        try:
            for ws in conns:
                await ws.send(b"p")
                assert await receive_bytes(ws, 1) == b"p"
            pids = [pid for pid, _, comm in children(g.proc.pid) if comm == "cat"]
            assert len(pids) == 5
            for pid in pids:
                assert program_fds(pid) == [0, 1, 2], (pid, os.listdir(f"/proc/{pid}/fd"))
                # stdin and stdout are one socket, stderr a pipe
                assert os.readlink(f"/proc/{pid}/fd/0") == os.readlink(f"/proc/{pid}/fd/1")
                assert os.readlink(f"/proc/{pid}/fd/0").startswith("socket:")
                assert os.readlink(f"/proc/{pid}/fd/2").startswith("pipe:")
        finally:
            for ws in conns:
                await ws.close()
    run(go())


def test_two_hundred_programs_no_zombies_no_descriptor_leak(gw):
    g = gw("-c", "host=exec:///bin/cat", *binary(), "--exec-grace", "1")
    time.sleep(0.2)
    baseline = g.fd_count()

    async def go():
        conns = await asyncio.gather(*[websockets.connect(g.url) for _ in range(200)])
        try:
            for i, ws in enumerate(conns):
                await ws.send(b"n%d" % i)
            for i, ws in enumerate(conns):
                assert await receive_bytes(ws, len(b"n%d" % i)) == b"n%d" % i
            kids = [pid for pid, _, comm in children(g.proc.pid) if comm == "cat"]
            assert len(kids) == 200
            # With 200 connections open, a program still sees only its own three descriptors.
            for pid in kids[::40]:
                assert program_fds(pid) == [0, 1, 2]
            assert g.fd_count() >= baseline + 200
        finally:
            await asyncio.gather(*[ws.close() for ws in conns])
    run(go())
    assert wait_until(lambda: children(g.proc.pid) == [], 5), children(g.proc.pid)
    assert wait_until(lambda: g.fd_count() == baseline, 5), (g.fd_count(), baseline)
    assert "SIGTERM" not in g.log()


# --- limits and start failures -----------------------------------------------------------------------

def test_max_programs_refuses_with_503_and_recovers(gw):
    g = gw("-c", "host=exec:///bin/cat", *binary(), "--max-programs", "3")

    async def go():
        conns = [await websockets.connect(g.url) for _ in range(3)]
        for ws in conns:
            await ws.send(b"k")
            assert await receive_bytes(ws, 1) == b"k"
        assert await asyncio.to_thread(refusal_status, g.url) == 503
        await conns[0].close()
        # cat ends on EOF: a place frees up.
        deadline = time.time() + 3
        while True:
            try:
                ws = await websockets.connect(g.url)
                break
            except websockets.exceptions.InvalidStatus as refused:
                assert refused.response.status_code == 503
                assert time.time() < deadline, "no place freed after a program ended"
                await asyncio.sleep(0.05)
        await ws.send(b"again")
        assert await receive_bytes(ws, 5) == b"again"
        assert await asyncio.to_thread(refusal_status, g.url) == 503
        for c in conns[1:] + [ws]:
            await c.close()
    run(go())
    assert g.wait_for_log(r"refused with 503")


def test_programs_whose_clients_left_still_count_until_they_exit(gw):
    g = gw("-c", "host=exec:///bin/sleep?1000", *binary(), "--max-programs", "2", "--exec-grace", "1")

    async def go():
        conns = [await websockets.connect(g.url) for _ in range(2)]
        for ws in conns:
            await ws.close()
    run(go())
    # The clients have gone but both sleeps run on (they ignore EOF): still full.
    assert refusal_status(g.url) == 503
    # After the grace period they get SIGTERM and end: room again.
    assert g.wait_for_log(r"SIGTERM", 3)

    def accepted():
        async def attempt():
            try:
                async with websockets.connect(g.url):
                    return True
            except websockets.exceptions.InvalidStatus:
                return False
        return run(attempt())
    assert wait_until(accepted, 4, 0.1)


@pytest.mark.parametrize("kind", ["missing", "not-executable", "directory"])
def test_program_that_cannot_start_gets_502(gw, tmp_path, kind):
    if kind == "missing":
        path = str(tmp_path / "no-such-program")
    elif kind == "not-executable":
        path = str(tmp_path / "plain.txt")
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho hi\n")
        os.chmod(path, 0o644)
    else:
        path = str(tmp_path)
    g = gw("-c", f"host=exec://{path}", *binary())
    time.sleep(0.1)
    baseline = g.fd_count()
    for _ in range(5):
        assert refusal_status(g.url) == 502
    assert g.wait_for_log(r"refused with 502")
    assert wait_until(lambda: g.fd_count() == baseline, 3), (g.fd_count(), baseline)
    assert children(g.proc.pid) == []


# --- backpressure -------------------------------------------------------------------------------------

def program_written(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def test_flooding_program_with_a_non_reading_client_is_bounded(gw):
    g = gw("-c", "host=exec:///usr/bin/seq?1&1000000000", *binary())
    time.sleep(0.1)
    before = rss_kib(g.proc.pid)
    c = RawClient(g.port, timeout=10)
    c.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 65536)
    c.handshake()
    pid = wait_until(lambda: next((p for p, _, comm in children(g.proc.pid) if comm == "seq"), None), 3)
    assert pid
    time.sleep(1.5)
    written_a = program_written(pid)
    time.sleep(1.5)
    written_b = program_written(pid)
    grown = rss_kib(g.proc.pid) - before
    assert grown < 60 * 1024, f"gateway RSS grew by {grown} KiB while the client read nothing"
    # The program is blocked on its stdout: it wrote (almost) nothing more meanwhile.
    assert written_b - written_a < 1 << 20, (written_a, written_b)
    assert written_b < 64 << 20, written_b
    # Now read: everything in order, from 1 on.
    data = bytearray()
    while len(data) < 8 << 20:
        _, opcode, payload = c.recv_frame()
        assert opcode == 2
        data += payload
    numbers = bytes(data).split(b"\n")[:-1]
    assert [int(n) for n in numbers[:5]] == [1, 2, 3, 4, 5]
    for i, n in enumerate(numbers):
        assert int(n) == i + 1, (i, n)
    c.close()
    assert wait_until(lambda: process_state(pid) is None, 5)


def test_yes_flood_bounded_then_readable(gw):
    g = gw("-c", "host=exec:///usr/bin/yes?websocksy", *lines(), "--exec-grace", "1")
    time.sleep(0.1)
    before = rss_kib(g.proc.pid)
    c = RawClient(g.port, timeout=10)
    c.handshake()
    time.sleep(3)
    grown = rss_kib(g.proc.pid) - before
    assert grown < 60 * 1024, f"gateway RSS grew by {grown} KiB while the client read nothing"
    for _ in range(10000):
        _, opcode, payload = c.recv_frame()
        assert payload.rstrip(b"\n") == b"websocksy", payload
    c.close()


# --- addresses: arguments, backend_file routes, token backend ---------------------------------------------

ARGS_SCRIPT = 'for a in "$@"; do printf "[%s]" "$a"; done\necho\n'


def output_of(url):
    async def go():
        async with websockets.connect(url) as ws:
            messages, code, reason = await until_close(ws)
            return as_bytes(messages), code
    return run(go())


def test_arguments_are_percent_decoded(gw, tmp_path):
    prog = script(tmp_path, "args.sh", ARGS_SCRIPT)
    g = gw("-c", f"host=exec://{prog}?a%20b&c%26d&e+f&%25&&last%3Fq%3Dv", *binary())
    assert output_of(g.url) == (b"[a b][c&d][e+f][%][][last?q=v]\n", 1000)


def test_shell_only_when_asked_for(gw, tmp_path):
    marker = tmp_path / "marker"
    g = gw("-c", f"host=exec:///bin/sh?-c&printf%20'%25s|%25s'%20\"$0\"%20\"$1\"&x%20y&$(touch%20{marker})", *binary())
    assert output_of(g.url) == (b"x y|$(touch " + str(marker).encode() + b")", 1000)
    assert not marker.exists()
    prog = script(tmp_path, "args.sh", ARGS_SCRIPT)
    g2 = gw("-c", f"host=exec://{prog}?$(touch%20{marker})&;&|&*", *binary())
    assert output_of(g2.url) == (f"[$(touch {marker})][;][|][*]\n".encode(), 1000)
    assert not marker.exists()


def test_bad_percent_escape_or_relative_path_is_a_start_up_error(tmp_path):
    for host in ["exec:///bin/echo?%zz", "exec:///bin/echo?%4", "exec://bin/echo", "exec://"]:
        r = subprocess.run([BINARY, "-l", "127.0.0.1", "-p", "0", "-c", f"host={host}", "--check-config"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (host, r.returncode, r.stdout, r.stderr)


@pytest.fixture
def file_routes(tmp_path, gw):
    if not os.path.exists(os.path.join(TEST_PLUGINS, "backend_file.so")):
        pytest.fail(f"backend_file.so missing in {TEST_PLUGINS}")
    base = tmp_path / "routes"
    base.mkdir()
    args = script(tmp_path, "args.sh", ARGS_SCRIPT)
    env = script(tmp_path, "env.sh", ENV_SCRIPT)
    (base / "cat").write_text("exec:///bin/cat * binary\n")
    (base / "args").write_text(f"exec://{args}?one&two%20three * binary\n")
    (base / "env").write_text(f"exec://{env} * binary\n")
    (base / "missing").write_text(f"exec://{tmp_path}/nothing-here * binary\n")
    return gw("--plugins", TEST_PLUGINS, "-b", "file", "-c", f"path={base}", "-c", "expression=%endpoint%")


def test_backend_file_route_to_a_program(file_routes):
    g = file_routes

    async def go():
        async with websockets.connect(g.url + "/cat") as ws:
            await ws.send(b"via route")
            assert await receive_bytes(ws, 9) == b"via route"
    run(go())
    out, code = output_of(g.url + "/env?q=1")
    env = env_of([out])
    assert code == 1000
    assert env["PATH_INFO"] == "/env" and env["QUERY_STRING"] == "q=1"
    assert refusal_status(g.url + "/missing") == 502


def test_backend_file_route_passes_program_arguments(file_routes):
    assert output_of(file_routes.url + "/args") == (b"[one][two three]\n", 1000)


@pytest.fixture
def token_secret(tmp_path):
    secret = os.urandom(24).hex().encode()
    path = tmp_path / "secret"
    path.write_bytes(secret + b"\n")
    return secret, str(path)


def hs_token(secret, **claims):
    import jwt
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + 300, **claims}, secret, algorithm="HS256")


def test_token_backend_allows_listed_programs_only(gw, tmp_path, token_secret):
    secret, path = token_secret
    env = script(tmp_path, "env.sh", ENV_SCRIPT)
    g = gw("--auth-secret", path, "-b", "token", "-c", "allow=exec:///bin/cat", "-c", f"allow=exec://{env}",
           "-c", "framing=binary")

    async def go():
        async with websockets.connect(g.url + "/?token=" + hs_token(secret, peer="exec:///bin/cat")) as ws:
            await ws.send(b"tok")
            assert await receive_bytes(ws, 3) == b"tok"
    run(go())
    out, code = output_of(g.url + "/?token=" + hs_token(secret, peer=f"exec://{env}?ignored%20arg", sub="bob"))
    assert code == 1000
    assert env_of([out]).get("REMOTE_USER") == "bob"
    for peer in ["exec:///bin/sh?-c&id", "exec:///bin/../bin/cat", "exec:///usr/bin/cat", "exec:///bin//cat"]:
        assert refusal_status(g.url + "/?token=" + hs_token(secret, peer=peer)) == 403, peer


def test_gateway_shutdown_ends_its_programs(gw, tmp_path):
    pidfile = tmp_path / "pid"
    prog = script(tmp_path, "waiter.sh", f"echo $$ > {pidfile}\necho ready\nexec sleep 1000\n")
    g = gw("-c", f"host=exec://{prog}", *lines(), "--shutdown-timeout", "1")

    async def go():
        ws = await websockets.connect(g.url)
        assert (await asyncio.wait_for(ws.recv(), 5)).rstrip("\n") == "ready"
        return ws
    loop = asyncio.new_event_loop()
    try:
        ws = loop.run_until_complete(go())
        pid = int(pidfile.read_text())
        assert process_state(pid) not in (None, "Z")
        assert g.stop() == 0
        # The program got SIGTERM when the gateway stopped (sleep dies of it).
        assert wait_until(lambda: process_state(pid) in (None, "Z"), 5), process_state(pid)
    finally:
        loop.run_until_complete(ws.close()) if 'ws' in locals() else None
        loop.close()


def test_output_written_before_exit_is_all_delivered_to_a_slow_client(gw):
    """seq writes ~2 MB and exits 0 while the client is not reading: all of it arrives, in order,
    before Close 1000."""
    g = gw("-c", "host=exec:///usr/bin/seq?1&300000", *binary())
    c = RawClient(g.port, timeout=10)
    c.handshake()
    time.sleep(1.5)
    data = bytearray()
    while True:
        _, opcode, payload = c.recv_frame()
        if opcode == 8:
            break
        data += payload
    assert payload[:2] == close_body(1000), payload
    c.send(frame(8, close_body(1000)))
    c.expect_eof()
    assert bytes(data) == b"".join(b"%d\n" % i for i in range(1, 300001))


def test_gateway_shutdown_kills_a_program_that_ignores_sigterm(gw, tmp_path):
    """No program outlives the gateway: SIGTERM to each process group at exit, SIGKILL after a second."""
    pidfile = tmp_path / "pid"
    prog = script(tmp_path, "deaf.sh", f"trap '' TERM\necho $$ > {pidfile}\necho ready\nwhile :; do sleep 1; done\n")
    g = gw("-c", f"host=exec://{prog}", *lines(), "--shutdown-timeout", "1")

    async def go():
        ws = await websockets.connect(g.url)
        assert (await asyncio.wait_for(ws.recv(), 5)).rstrip("\n") == "ready"
        return ws
    loop = asyncio.new_event_loop()
    try:
        ws = loop.run_until_complete(go())
        pid = int(pidfile.read_text())
        assert g.stop() == 0
        assert wait_until(lambda: process_state(pid) in (None, "Z"), 3), process_state(pid)
    finally:
        loop.run_until_complete(ws.close()) if 'ws' in locals() else None
        loop.close()


def test_a_flooding_program_is_not_drained_after_its_client_leaves(gw):
    """When the client goes, the program's socket is closed, not read until it stops: `yes`
    dies of EPIPE at once instead of being read at full speed for the grace period."""
    g = gw("-c", "host=exec:///usr/bin/yes?websocksy", *binary(), "--exec-grace", "5")

    async def go():
        async with websockets.connect(g.url, max_size=None) as ws:
            await asyncio.wait_for(ws.recv(), 5)
    run(go())
    assert wait_until(lambda: children(g.proc.pid) == [], 2), children(g.proc.pid)
    assert not g.wait_for_log(r"yes .*SIGTERM", 0.5)
