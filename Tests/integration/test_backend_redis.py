"""backend_redis (Plugins-C/backend_redis.c) against a real redis-server started here: routing by
endpoint, cookie, header and query parameter, route lines and subprotocols, one-time keys, AUTH and
SELECT, values that must never reach Redis, and 503 while Redis is down, silent or failing."""
import asyncio
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import websockets

from conftest import BINARY, ROOT, free_port, refusal_status
from wsraw import RawClient, request

TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(ROOT, ".build", "test-plugins"))
PREFIX = "websocksy:route:"


@pytest.fixture(autouse=True)
def need_redis_and_plugin():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    if not os.path.exists(os.path.join(TEST_PLUGINS, "backend_redis.so")):
        pytest.fail(f"backend_redis.so missing in {TEST_PLUGINS}: run the tests with `make test`")


def run(coro):
    return asyncio.run(coro)


class RedisError(Exception):
    pass


class Redis:
    """A minimal RESP client: commands as binary-safe arrays, so test keys may hold any byte."""

    def __init__(self, port=None, unix=None, password=None, user=None, timeout=5):
        if unix:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            self.sock.connect(unix)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if password:
            self("AUTH", *([user] if user else []), password)

    def __call__(self, *args):
        self.send(*args)
        return self.reply()

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)

    def _read(self, n=None):
        while (b"\r\n" not in self.buf) if n is None else (len(self.buf) < n):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("redis closed the connection")
            self.buf += chunk
        if n is None:
            line, self.buf = self.buf.split(b"\r\n", 1)
            return line
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def reply(self):
        line = self._read()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._read(n + 2)[:n]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RedisError(f"unexpected reply {line!r}")

    def close(self):
        self.sock.close()


class RedisServer:
    """redis-server on a free port and a Unix socket, without persistence; can be stopped and
    started again on the same port."""

    def __init__(self, *extra, password=None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="wsredis-")  # short: Unix socket paths are limited
        self.socket = os.path.join(self.dir, "redis.sock")
        self.extra = list(extra) + (["--requirepass", password] if password else [])
        self.password = password
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--unixsocket", self.socket, "--unixsocketperm", "700",
                                      "--save", "", "--appendonly", "no", "--dir", self.dir, *self.extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                c = self.client()
                c("PING")
                c.close()
                return
            except (OSError, EOFError, RedisError):
                if time.time() > deadline:
                    raise
                time.sleep(0.05)

    def client(self, **kw):
        return Redis(self.port, password=self.password, **kw)

    def set(self, key, value, db=0):
        c = self.client()
        if db:
            c("SELECT", db)
        c("SET", key, value)
        c.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_factory():
    started = []

    def start(*extra, **kw):
        server = RedisServer(*extra, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        server.cleanup()


@pytest.fixture
def redis(redis_factory):
    return redis_factory()


@pytest.fixture
def backend(gateway_factory):
    """Starts a gateway on backend_redis with `-c` options (and core flags before `-b`)."""

    def start(*options, core=()):
        args = ["--plugins", TEST_PLUGINS, *core, "-b", "redis"]
        for option in options:
            args += ["-c", option]
        return gateway_factory(*args)

    return start


def server_options(redis):
    return [f"server=127.0.0.1:{redis.port}", f"prefix={PREFIX}"]


async def echo_through(url, **kw):
    """Connects, checks that bytes come back unchanged, returns the agreed subprotocol."""
    async with websockets.connect(url, **kw) as ws:
        for payload in (bytes(range(256)), b"second message\r\n"):
            await ws.send(payload)
            assert await asyncio.wait_for(ws.recv(), 5) == payload
        return ws.subprotocol


async def first_message(url, **kw):
    async with websockets.connect(url, **kw) as ws:
        return ws.subprotocol, await asyncio.wait_for(ws.recv(), 5)


def raw_status(port, path, extra=""):
    """The status of an upgrade request sent byte for byte as given."""
    c = RawClient(port)
    try:
        c.send(request(path=path, extra=extra))
        return c.read_response()[0]
    finally:
        c.sock.close()


class Monitor:
    """Redis MONITOR on its own connection: every command Redis executes, as text lines."""

    def __init__(self, redis):
        self.client = redis.client()
        self.client.send("MONITOR")
        assert self.client.reply() == "OK"
        self.lines = []
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self):
        self.client.sock.settimeout(None)
        try:
            while True:
                self.lines.append(self.client.reply())
        except (OSError, EOFError):
            pass

    def commands(self, name, settle=0.3):
        time.sleep(settle)
        return [line for line in self.lines if f'"{name}"' in line.upper()]

    def close(self):
        self.client.sock.shutdown(socket.SHUT_RDWR)
        self.client.close()
        self.thread.join(2)


def test_routes_by_endpoint_with_the_default_key(redis, backend, peer_factory):
    peer = peer_factory("tcp")
    redis.set(PREFIX + "echo", f"{peer.url} * binary")
    redis.set(PREFIX + "deep/path", f"{peer.url} * binary")
    redis.set("echo", "tcp://127.0.0.1:1 * binary")  # without the prefix: never looked up
    g = backend(*server_options(redis))
    assert run(echo_through(g.url + "/echo")) is None
    assert run(echo_through(g.url + "/echo/?x=1")) is None
    assert run(echo_through(g.url + "/deep/path")) is None
    assert refusal_status(g.url + "/missing") == 404
    assert g.wait_for_log(rf"backend_redis: connected to 127\.0\.0\.1:{redis.port}")


def test_routes_by_cookie_header_and_query_in_template_order(redis, backend, peer_factory):
    alpha = peer_factory("tcp", "script", repr([b"from alpha\n"]))
    beta = peer_factory("tcp", "script", repr([b"from beta\n"]))
    redis.set(PREFIX + "tenant:7", f"{beta.url} * newline lf")
    redis.set(PREFIX + "header:by-header", f"{beta.url} * newline lf")
    redis.set(PREFIX + "token:ab-c d", f"{alpha.url} * newline lf")  # never: spaces skip the template
    redis.set(PREFIX + "token:ab-c", f"{beta.url} * newline lf")
    redis.set(PREFIX + "alpha", f"{alpha.url} * newline lf")
    g = backend(*server_options(redis), "key=tenant:%cookie:tenant%", "key=header:%header:X-Route%",
                "key=token:%query:token%", "key=%endpoint%")
    beta_reply = (None, "from beta\n")
    alpha_reply = (None, "from alpha\n")
    assert run(first_message(g.url + "/alpha")) == alpha_reply
    assert run(first_message(g.url + "/alpha", additional_headers={"Cookie": "a=1; tenant=7"})) == beta_reply
    assert run(first_message(g.url + "/alpha", additional_headers={"x-route": "by-header"})) == beta_reply
    assert run(first_message(g.url + "/alpha?x=1&token=ab%2Dc")) == beta_reply  # percent-decoded
    # A key without a value in Redis falls through to the next template; so does a missing variable.
    assert run(first_message(g.url + "/alpha", additional_headers={"Cookie": "tenant=8"})) == alpha_reply
    assert run(first_message(g.url + "/alpha?token=ab-c+d")) == alpha_reply  # '+' is a space: skipped
    assert refusal_status(g.url + "/nothing?token=unknown") == 404


def test_several_lines_and_subprotocol_selection(redis, backend, peer_factory):
    chat = peer_factory("tcp", "script", repr([b"from chat\n"]))
    mqtt = peer_factory("tcp", "script", repr([b"from mqtt\n"]))
    redis.set(PREFIX + "multi", f"# two services\r\n{chat.url} chat newline lf\r\n\r\n{mqtt.url} mqtt newline lf\r\n")
    redis.set(PREFIX + "any", f"{mqtt.url} * newline lf")
    g = backend(*server_options(redis))
    assert run(first_message(g.url + "/multi")) == (None, "from chat\n")
    assert run(first_message(g.url + "/multi", subprotocols=["mqtt"])) == ("mqtt", "from mqtt\n")
    assert run(first_message(g.url + "/multi", subprotocols=["x", "chat", "mqtt"])) == ("chat", "from chat\n")
    assert run(first_message(g.url + "/any", subprotocols=["first", "second"])) == ("first", "from mqtt\n")
    assert refusal_status(g.url + "/multi", subprotocols=["unknown"]) == 404


def test_one_time_keys_route_once(redis, backend, peer_factory):
    peer = peer_factory("tcp")
    redis.set(PREFIX + "ticket:t0k3n", f"{peer.url} * binary")
    redis.set(PREFIX + "ticket:other", f"{peer.url} * binary")
    g = backend(*server_options(redis), "key=ticket:%query:ticket%", "one-time=yes")
    assert run(echo_through(g.url + "/?ticket=t0k3n")) is None
    assert refusal_status(g.url + "/?ticket=t0k3n") == 404
    c = redis.client()
    assert c("EXISTS", PREFIX + "ticket:t0k3n") == 0
    assert c("EXISTS", PREFIX + "ticket:other") == 1


def test_password_user_and_database(redis_factory, backend, peer_factory):
    redis = redis_factory(password="s3cret")
    peer = peer_factory("tcp")
    redis.set(PREFIX + "db3", f"{peer.url} * binary", db=3)
    redis.set(PREFIX + "db0", f"{peer.url} * binary")
    c = redis.client()
    # A user that may only read route keys.
    c("ACL", "SETUSER", "gateway", "on", ">gw-pass", f"~{PREFIX}*", "+get", "+getdel", "+select")
    g = backend(*server_options(redis), "password=s3cret", "database=3")
    assert run(echo_through(g.url + "/db3")) is None
    assert refusal_status(g.url + "/db0") == 404  # in database 0 only
    acl = backend(*server_options(redis), "user=gateway", "password=gw-pass", "database=3")
    assert run(echo_through(acl.url + "/db3")) is None
    wrong = backend(*server_options(redis), "password=wrong")
    assert refusal_status(wrong.url + "/db0") == 503
    assert wrong.wait_for_log(r"backend_redis: .* unreachable \(AUTH: WRONGPASS")
    no_password = backend(*server_options(redis), "user=gateway")
    assert refusal_status(no_password.url + "/db0") == 503
    assert no_password.wait_for_log(r"unreachable \(option 'user' needs 'password'\)")


def test_unix_socket_server(redis, backend, peer_factory):
    peer = peer_factory("tcp")
    redis.set(PREFIX + "local", f"{peer.url} * binary")
    g = backend(f"server=unix:{redis.socket}", f"prefix={PREFIX}")
    assert run(echo_through(g.url + "/local")) is None
    assert g.wait_for_log(rf"connected to unix:{redis.socket}")


def test_unsafe_values_never_reach_redis(redis, backend, peer_factory):
    peer = peer_factory("tcp")
    route = f"{peer.url} * binary"
    # Keys these values would name if they were used as they are: any of them would route.
    for value in [b"a*", b"*", b"a b", b"[ab]", b"x?", b"a\r\nb", b"a\r\nFLUSHALL", b"a\tb", b"a\x7f",
                  b"a\x00b", b"a" * 257]:
        for kind in (b"q:", b"h:", b"c:"):
            redis.set(PREFIX.encode() + kind + value, route)
    redis.set(PREFIX + "q:ab", route)
    redis.set(PREFIX + "q:" + "a" * 256, route)
    keys_before = redis.client()("DBSIZE")
    g = backend(*server_options(redis), "key=q:%query:t%", "key=h:%header:X-Route%", "key=c:%cookie:c%")
    monitor = Monitor(redis)
    try:
        for query in ["a*", "a%2A", "*", "a%20b", "a+b", "%5Bab%5D", "x%3F", "a%0D%0Ab", "a%0d%0aFLUSHALL",
                      "a%0D%0ASET%20websocksy:route:q:evil%20x", "a%09b", "a%7F", "a%00b", "a" * 257,
                      "%zz", "a%2", ""]:
            assert raw_status(g.port, f"/?t={query}") == 404, query
        for value in ["a*", "*", "a b", "[ab]", "x?", "a\tb"]:
            assert raw_status(g.port, "/", f"X-Route: {value}\r\n") == 404, value
            assert raw_status(g.port, "/", f"Cookie: c={value}\r\n") == 404, value
        assert monitor.commands("GET") == []
        # The longest value allowed, and a plain one, are looked up (and route).
        assert run(echo_through(g.url + "/?t=" + "a" * 256)) is None
        assert run(echo_through(g.url + "/?t=ab")) is None
        gets = monitor.commands("GET")
        assert len(gets) == 2 and f'"GET" "{PREFIX}q:ab"' in gets[1], gets
    finally:
        monitor.close()
    c = redis.client()
    assert c("DBSIZE") == keys_before
    assert c("EXISTS", PREFIX + "q:evil") == 0


def test_keys_longer_than_1024_bytes_are_skipped(redis, backend, peer_factory):
    peer = peer_factory("tcp")
    prefix = "p" * 1000
    redis.set(prefix + "a" * 24, f"{peer.url} * binary")
    redis.set(prefix + "a" * 25, f"{peer.url} * binary")
    g = backend(f"server=127.0.0.1:{redis.port}", f"prefix={prefix}")
    assert run(echo_through(g.url + "/" + "a" * 24)) is None  # 1024 bytes
    assert refusal_status(g.url + "/" + "a" * 25) == 404


def test_redis_down_then_back(redis, backend, peer_factory):
    peer = peer_factory("tcp")
    redis.set(PREFIX + "svc", f"{peer.url} * binary")
    g = backend(*server_options(redis))
    assert run(echo_through(g.url + "/svc")) is None
    redis.stop()
    # Several clients over more than the one-second back-off: all 503, one log line.
    for _ in range(6):
        assert refusal_status(g.url + "/svc") == 503
        time.sleep(0.25)
    assert g.log().count("unreachable") == 1, g.log()
    assert g.wait_for_log(rf"backend_redis: 127\.0\.0\.1:{redis.port} unreachable \(.*\): clients get 503")
    redis.start()
    redis.set(PREFIX + "svc", f"{peer.url} * binary")
    deadline = time.time() + 5
    while refusal_status_or_none(g.url + "/svc") == 503 and time.time() < deadline:
        time.sleep(0.1)
    assert run(echo_through(g.url + "/svc")) is None
    assert run(echo_through(g.url + "/svc")) is None
    assert g.log().count("reconnected") == 1 and g.log().count("unreachable") == 1, g.log()


def test_a_connection_closed_by_redis_is_replaced_unnoticed(redis, backend, peer_factory):
    peer = peer_factory("tcp")
    redis.set(PREFIX + "svc", f"{peer.url} * binary")
    g = backend(*server_options(redis))
    assert run(echo_through(g.url + "/svc")) is None
    c = redis.client()
    assert c("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") == 1  # the gateway's connection
    assert run(echo_through(g.url + "/svc")) is None
    assert "unreachable" not in g.log() and g.log().count("connected to") == 1


def refusal_status_or_none(url):
    """The refusal status, or None when the upgrade is accepted."""
    try:
        return refusal_status(url)
    except AssertionError:
        return None


def test_a_silent_redis_times_out_with_503(backend):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []

    def accept():
        try:
            while True:
                held.append(listener.accept()[0])  # and never answer
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        g = backend(f"server=127.0.0.1:{listener.getsockname()[1]}", "query-timeout=600")
        started = time.monotonic()
        assert refusal_status(g.url + "/any") == 503
        waited = time.monotonic() - started
        assert 0.55 <= waited < 2, waited
        # Within the back-off the next client is refused at once, without a connection attempt.
        started = time.monotonic()
        assert refusal_status(g.url + "/any") == 503
        assert time.monotonic() - started < 0.4
        assert len(held) == 1
        assert g.wait_for_log(r"unreachable \(no answer within 600 ms\)")
    finally:
        listener.close()
        for c in held:
            c.close()


def test_a_redis_that_does_not_accept_times_out_with_503(backend):
    # A full accept queue: the kernel drops further SYNs, so connecting hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())
    try:
        g = backend(f"server=127.0.0.1:{listener.getsockname()[1]}", "connect-timeout=600", "query-timeout=4000")
        started = time.monotonic()
        assert refusal_status(g.url + "/any") == 503
        waited = time.monotonic() - started
        assert 0.55 <= waited < 2, waited
        assert g.wait_for_log(r"backend_redis: 127\.0\.0\.1:\d+ unreachable \(.+\)")
    finally:
        filler.close()
        listener.close()


def test_an_error_reply_or_a_broken_value_is_503(redis, backend):
    redis.client()("HSET", PREFIX + "hash", "field", "value")
    redis.set(PREFIX + "nul", b"tcp://127.0.0.1:1\x00 * binary")
    g = backend(*server_options(redis))
    assert refusal_status(g.url + "/hash") == 503
    assert refusal_status(g.url + "/hash") == 503
    assert refusal_status(g.url + "/nul") == 503
    assert g.wait_for_log(r"backend_redis: .* answered 'WRONGTYPE .*' for key 'websocksy:route:hash'")
    assert g.log().count("answered") == 1  # error replies are logged at most every 10 s
    assert "unreachable" not in g.log()


def test_route_options_choose_compression(redis, backend, peer_factory):
    peer = peer_factory("tcp")
    redis.set(PREFIX + "vnc", f"{peer.url}?compression=off * binary")
    redis.set(PREFIX + "json", f"{peer.url} * binary")
    g = backend(*server_options(redis), core=["--compression", "on"])

    async def extensions(path):
        async with websockets.connect(g.url + path) as ws:  # offers permessage-deflate
            await ws.send(b"through " + path.encode())
            assert await asyncio.wait_for(ws.recv(), 5) == b"through " + path.encode()
            return ws.response.headers.get("Sec-WebSocket-Extensions")

    assert run(extensions("/vnc")) is None
    assert "permessage-deflate" in run(extensions("/json"))


@pytest.mark.parametrize("option", ["bogus=1", "server=localhost:99999", "server=[::1", "server=unix:",
                                    "database=-1", "database=x", "one-time=maybe", "query-timeout=0",
                                    "connect-timeout=1.5", "key=%nope%", "key=%endpoint", "prefix=" + "p" * 1024])
def test_bad_options_stop_start_up(option):
    r = subprocess.run([BINARY, "--plugins", TEST_PLUGINS, "-b", "redis", "-c", option, "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r.stderr
    assert f"command line (-c {option[:20]}" in r.stderr and "backend_redis: " in r.stderr, r.stderr


def test_good_options_pass_the_check():
    options = ["server=[::1]:6380", "server=redis.example:6379", "server=unix:///run/redis.sock",
               "password=p", "user=u", "database=15", "prefix=x:", "key=%cookie:a%-%query:b%",
               "one-time=no", "connect-timeout=1", "query-timeout=3600000"]
    args = [a for o in options for a in ("-c", o)]
    r = subprocess.run([BINARY, "--plugins", TEST_PLUGINS, "-b", "redis", *args, "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "configuration OK" in r.stdout + r.stderr, r.stderr


def test_the_pages_example(redis, backend, peer_factory):
    """Plugins-C/backend_redis.md's worked example, its commands run as written, with test peers
    in place of the services it names."""
    commands, in_block = [], False
    for line in open(os.path.join(ROOT, "Plugins-C", "backend_redis.md")).read().splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block:
            commands.append(line)
    vnc = peer_factory("tcp")
    irc = peer_factory("tcp", "script", repr([b"from irc\r\n"]))
    chat = peer_factory("unix", "script", repr([b"from chat\n"]))
    console = peer_factory("tcp")
    peers = {"tcp://localhost:5900": vnc.url, "tcp://localhost:6667": irc.url,
             "unix:///run/chat.sock": chat.url, "tcp://10.0.0.5:5900": console.url}

    def gateway(flags, *core):
        args = shlex.split(flags)
        assert args[:3] == ["websocksy", "-b", "redis"]
        return backend(*[a for a in args[3:] if a != "-c"], f"server=127.0.0.1:{redis.port}", core=core)

    for line in commands:
        if line.startswith(("redis-cli SET", "redis-cli ACL")):
            for name, url in peers.items():
                line = line.replace(name, url)
            subprocess.run(["bash", "-c", line.replace("redis-cli", f"redis-cli -p {redis.port}", 1)],
                           check=True, capture_output=True)
    routes = gateway(next(c for c in commands if c.startswith("websocksy -b redis -c prefix=websocksy:route:")),
                     "--compression", "on")

    async def vnc_route():
        async with websockets.connect(routes.url + "/vnc") as ws:
            await ws.send(b"\x00frame")
            assert await asyncio.wait_for(ws.recv(), 5) == b"\x00frame"
            return ws.response.headers.get("Sec-WebSocket-Extensions")

    assert run(vnc_route()) is None  # ?compression=off
    assert run(first_message(routes.url + "/chat", subprotocols=["irc"])) == ("irc", "from irc\r\n")
    assert run(first_message(routes.url + "/chat")) == (None, "from irc\r\n")
    assert run(first_message(routes.url + "/chat", subprotocols=["chat"])) == ("chat", "from chat\n")
    assert refusal_status(routes.url + "/other") == 404
    tickets = gateway(next(c for c in commands if "one-time=yes" in c))
    assert run(echo_through(tickets.url + "/console?ticket=7f3a9c2e")) is None
    assert refusal_status(tickets.url + "/console?ticket=7f3a9c2e") == 404
    # The user that can only read routes, through the Unix socket.
    reader = backend(f"server=unix:{redis.socket}", "user=websocksy", "password=long-password",
                     "prefix=websocksy:route:")
    assert run(first_message(reader.url + "/chat")) == (None, "from irc\r\n")


def test_a_bad_route_option_is_logged_once_however_often_it_is_used(redis, backend):
    """Whoever writes routes cannot flood the log: one warning per distinct problem per 10 s."""
    redis.set(PREFIX + "typo", "echo://?compression=maybe *")
    g = backend(*server_options(redis))
    for _ in range(20):
        c = RawClient(g.port)
        c.handshake(path="/typo")
        c.close()
    assert g.wait_for_log("core_peer_option: compression must be")
    time.sleep(0.2)
    assert g.log().count("core_peer_option: compression must be") == 1
