"""A fleet as docs/fleet.md sets it up: HAProxy, run from config/haproxy-websocksy.cfg unchanged (its
addresses come from the environment), in TCP mode with PROXY v2 and /readyz health checks, in front
of two gateways routing from one Redis (backend_redis) to a TCP echo peer. Clients spread over both
gateways, the access logs name the clients themselves, and a gateway stopped with SIGTERM drains:
HAProxy takes it out on its /readyz 503, its clients get 1001, new clients go to the other gateway,
and the other gateway's clients lose no message."""
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from conftest import ROOT, Gateway, Peer, free_port, lines_of
from test_admin import get, scrape, value
from test_backend_redis import RedisServer
from wsraw import RawClient

TEST_PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS", os.path.join(ROOT, ".build", "test-plugins"))
HAPROXY_CFG = os.path.join(ROOT, "config", "haproxy-websocksy.cfg")
PREFIX = "websocksy:route:"
SHUTDOWN_TIMEOUT = 3


@pytest.fixture(autouse=True)
def need_tools():
    for tool in ("haproxy", "redis-server"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    if not os.path.exists(os.path.join(TEST_PLUGINS, "backend_redis.so")):
        pytest.fail(f"backend_redis.so missing in {TEST_PLUGINS}: run the tests with `make test`")


def admin_port(g):
    assert g.wait_for_log(r"admin listener .* on 127\.0\.0\.1:\d+")
    return int(re.search(r"admin listener .* on 127\.0\.0\.1:(\d+)", g.log()).group(1))


class HAProxy:
    """haproxy -db on the shipped file, plus a file of the test's own with a stats socket."""

    def __init__(self, directory, env):
        self.stats_path = os.path.join(directory, "stats.sock")
        extra = os.path.join(directory, "stats.cfg")
        with open(extra, "w") as f:
            f.write(f"global\n    stats socket {self.stats_path} mode 600 level admin\n")
        self.env = {**os.environ, **env}
        files = ["-f", HAPROXY_CFG, "-f", extra]
        check = subprocess.run(["haproxy", "-c", *files], env=self.env, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.output_path = os.path.join(directory, "haproxy.out")
        # Appending: HAProxy writes at the end whatever this process reads meanwhile.
        self.output = open(self.output_path, "ab")
        self.proc = subprocess.Popen(["haproxy", "-db", *files], env=self.env,
                                     stdout=self.output, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while not os.path.exists(self.stats_path):
            assert self.proc.poll() is None and time.time() < deadline, self.log()
            time.sleep(0.02)

    def servers(self):
        """`show stat` of the websocksy backend's servers: {name: {column: value}}."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(self.stats_path)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        lines = data.decode().splitlines()
        columns = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(columns, line.split(","))) for line in lines[1:] if line]
        return {r["svname"]: r for r in rows if r["pxname"] == "websocksy" and r["svname"] not in ("BACKEND", "FRONTEND")}

    def log(self):
        with open(self.output_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output.close()


class Fleet:
    """Redis, a TCP echo peer, two gateways (with the extra flags given) and HAProxy."""

    def __init__(self, directory, *extra):
        self.directory = directory
        self.extra = extra
        self.started = []  # how to stop what is running, in start order
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise

    def start(self):
        self.redis = RedisServer()
        self.started.append(self.redis.cleanup)
        self.peer = Peer("tcp", "echo")
        self.started.append(self.peer.stop)
        # One message per line: the echoes come back as the lines the clients sent.
        self.redis.set(PREFIX + "stream", f"{self.peer.url} * newline lf")
        self.gateways = [self.gateway(n) for n in (1, 2)]
        env = {"WEBSOCKSY_FRONTEND": f"127.0.0.1:{free_port()}", "HAPROXY_LOG": "stdout"}
        for n, g in enumerate(self.gateways, 1):
            env[f"WS{n}_ADDR"] = f"127.0.0.1:{g.port}"
            env[f"WS{n}_ADMIN_PORT"] = str(g.admin)
        self.haproxy = HAProxy(self.directory, env)
        self.started.append(self.haproxy.stop)
        self.url = f"ws://{env['WEBSOCKSY_FRONTEND']}/stream"

    def gateway(self, n):
        access_log = os.path.join(self.directory, f"access{n}.log")
        g = Gateway(["-l", "127.0.0.1", "-p", "0", "-v", "--plugins", TEST_PLUGINS,
                     "--proxy-protocol-from", "127.0.0.1/32", "--admin-listen", "127.0.0.1:0",
                     "--access-log", access_log, "--shutdown-timeout", str(SHUTDOWN_TIMEOUT), *self.extra,
                     "-b", "redis", "-c", f"server=127.0.0.1:{self.redis.port}", "-c", f"prefix={PREFIX}",
                     "-c", "key=%endpoint%"])
        self.started.append(g.stop)
        g.admin = admin_port(g)
        g.access_log = access_log
        return g

    def cleanup(self):
        failure = None
        for stop in reversed(self.started):
            try:
                stop()
            except Exception as e:  # stop the others all the same
                failure = failure or e
        if failure:
            raise failure


@pytest.fixture
def fleet_factory():
    started = []

    def start(*extra):
        directory = tempfile.mkdtemp(prefix="wsfleet-")  # short: the stats socket's path is limited
        started.append(directory)
        f = Fleet(directory, *extra)
        started.append(f)
        return f

    yield start
    for item in reversed(started):
        if isinstance(item, Fleet):
            item.cleanup()
        else:
            shutil.rmtree(item, ignore_errors=True)


@pytest.fixture
def fleet(fleet_factory):
    return fleet_factory()


class Streamer:
    """One client sending numbered lines at a steady pace; every echo must be the next line it
    sent, so each comes back once and in order."""

    def __init__(self, url, name):
        self.url, self.name = url, name
        self.sent = self.echoed = 0
        self.wrong = None
        self.stopping = False

    async def open(self):
        self.ws = await websockets.connect(self.url)
        self.port = self.ws.local_address[1]
        self.sender = asyncio.create_task(self._send())
        self.receiver = asyncio.create_task(self._receive())
        return self

    async def _send(self):
        try:
            while not self.stopping:
                await self.ws.send(f"{self.name} {self.sent}\n")
                self.sent += 1
                await asyncio.sleep(0.02)
        except ConnectionClosed:
            pass

    async def _receive(self):
        try:
            async for message in self.ws:
                if message != f"{self.name} {self.echoed}\n":
                    self.wrong = (self.echoed, message)
                    break
                self.echoed += 1
        except ConnectionClosed:
            pass

    @property
    def closed(self):
        return self.receiver.done()

    async def finish(self):
        """Stops sending, waits for the echo of everything sent, then closes normally."""
        self.stopping = True
        await self.sender
        deadline = time.monotonic() + 5
        while self.echoed < self.sent and not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.ws.close()
        await self.receiver


def client_ports_in_log(g):
    """Client port → path, from the gateway's debug line naming each backend choice."""
    return {int(port): path for port, path in re.findall(r"127\.0\.0\.1:(\d+): (\S+) → ", g.log())}


def connections_to(port):
    """Local ports of the established TCP connections to 127.0.0.1:port (HAProxy's side)."""
    found = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, remote, state = line.split()[1:4]
            if state == "01" and remote == f"0100007F:{port:04X}":
                found.add(int(local.split(":")[1], 16))
    return found


async def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def test_the_shipped_haproxy_file_is_valid_as_is():
    check = subprocess.run(["haproxy", "-c", "-f", HAPROXY_CFG], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_gateway_drains_behind_haproxy(fleet):
    gw1, gw2 = fleet.gateways
    haproxy = fleet.haproxy

    async def scenario():
        # Both gateways pass the /readyz check (which carries no PROXY header: the admin
        # listener would answer 400 to one).
        await wait_until(lambda: all(s["status"] == "UP" and s["check_status"] == "L7OK"
                                     for s in haproxy.servers().values()), 5, haproxy.log())

        first = [await Streamer(fleet.url, f"a{i}").open() for i in range(20)]
        await asyncio.sleep(1)
        assert not any(c.closed for c in first)

        # leastconn spreads the clients evenly; each gateway logs the client's own address.
        open1 = value(scrape(gw1.admin), "websocksy_websockets_open")
        open2 = value(scrape(gw2.admin), "websocksy_websockets_open")
        assert (open1, open2) == (10, 10)
        on1, on2 = client_ports_in_log(gw1), client_ports_in_log(gw2)
        assert set(on1) | set(on2) == {c.port for c in first} and not set(on1) & set(on2)
        assert set(on1.values()) == set(on2.values()) == {"/stream"}
        balancer_ports = connections_to(gw1.port) | connections_to(gw2.port)
        # HAProxy's own ports are other ones (the kernel may reuse a number for another
        # destination, so single ports can coincide; the sets cannot).
        assert len(balancer_ports) == 20 and balancer_ports != {c.port for c in first}
        mine1 = [c for c in first if c.port in on1]
        mine2 = [c for c in first if c.port in on2]

        # A client that never answers the close keeps gw1 in its graceful stop until
        # shutdown-timeout, so HAProxy's checks meet the 503 of /readyz, not a closed port.
        laggard = RawClient(gw1.port)
        laggard.handshake(path="/stream")

        gw1.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert get(gw1.admin, "/readyz")[0] == 503
        assert get(gw2.admin, "/readyz")[0] == 200
        await wait_until(lambda: haproxy.servers()["gw1"]["status"] == "DOWN", 2, haproxy.log())
        down = haproxy.servers()["gw1"]
        assert (down["check_status"], down["check_code"]) == ("L7STS", "503"), down
        assert haproxy.servers()["gw2"]["status"] == "UP"
        assert time.monotonic() - signalled < 1.5

        # gw1's clients get 1001 after an unbroken, ordered stream of echoes.
        await wait_until(lambda: all(c.closed for c in mine1), 3, "gw1's clients still open")
        for c in mine1:
            assert c.ws.close_code == 1001, (c.name, c.ws.close_code)
            assert c.wrong is None and 0 < c.echoed <= c.sent, (c.name, c.wrong)
        assert not any(c.closed for c in mine2)

        # New clients all go to gw2 and work, while gw1 is still finishing.
        assert gw1.proc.poll() is None
        later = [await Streamer(fleet.url, f"b{i}").open() for i in range(10)]
        ports = {c.port for c in later}
        await wait_until(lambda: ports <= set(client_ports_in_log(gw2)) or ports & set(client_ports_in_log(gw1)), 2,
                         "a new client is in neither gateway's log")
        assert ports <= set(client_ports_in_log(gw2)), ("routed to the draining gw1", ports & set(client_ports_in_log(gw1)))
        await asyncio.sleep(0.5)

        # gw1 gives up on the laggard at shutdown-timeout and exits cleanly.
        _, opcode, payload = await asyncio.to_thread(laggard.recv_frame)
        assert (opcode, payload[:2]) == (8, b"\x03\xe9")
        laggard.sock.settimeout(SHUTDOWN_TIMEOUT + 3)
        assert await asyncio.to_thread(laggard.sock.recv, 100) == b""
        assert await asyncio.to_thread(gw1.proc.wait, 5) == 0
        laggard.close()

        # gw2's clients, old and new, got every message back exactly once, in order.
        for c in mine2 + later:
            assert not c.closed, c.name
            await c.finish()
            assert c.wrong is None and c.echoed == c.sent > 0, (c.name, c.sent, c.echoed, c.wrong)
            assert c.ws.close_code == 1000
        return mine1, mine2, later, laggard

    mine1, mine2, later, laggard = asyncio.run(asyncio.wait_for(scenario(), 25))

    # Access logs: one line per connection, naming the client's own address and port.
    def clients(g, count):
        return {line.split(" ")[1]: line for line in lines_of(g.access_log, count)}

    logged1 = clients(gw1, len(mine1) + 1)
    logged2 = clients(gw2, len(mine2) + len(later))
    for c in mine1:
        assert "close=1001" in logged1[f"127.0.0.1:{c.port}"]
    for c in mine2 + later:
        assert "close=1000" in logged2[f"127.0.0.1:{c.port}"]
    assert set(logged2) == {f"127.0.0.1:{c.port}" for c in mine2 + later}
    assert len(logged1) == len(mine1) + 1  # and the laggard, connected directly


def test_per_client_limits_apply_to_the_address_behind_haproxy(fleet_factory):
    """Clients from 127.0.0.2 and 127.0.0.3 all reach the gateways from HAProxy's 127.0.0.1; the
    PROXY header keeps them apart. Each gateway counts on its own: two gateways with a limit of
    two let one address hold four WebSockets."""
    fleet = fleet_factory("--max-connections-per-client", "2")
    gw1, gw2 = fleet.gateways

    def connect(source):
        return websockets.connect(fleet.url, local_addr=(source, 0))

    async def scenario():
        await wait_until(lambda: all(s["check_status"] == "L7OK" for s in fleet.haproxy.servers().values()),
                         5, fleet.haproxy.log())
        held = [await connect("127.0.0.2") for _ in range(4)]
        assert value(scrape(gw1.admin), "websocksy_websockets_open") == 2
        assert value(scrape(gw2.admin), "websocksy_websockets_open") == 2
        with pytest.raises(websockets.InvalidStatus) as refused:
            await connect("127.0.0.2")
        assert refused.value.response.status_code == 429
        async with connect("127.0.0.3") as other:
            await other.send("still welcome\n")
            assert await asyncio.wait_for(other.recv(), 5) == "still welcome\n"
        for ws in held:
            await ws.close()

    asyncio.run(asyncio.wait_for(scenario(), 15))
    assert re.search(r"127\.0\.0\.2\b.*too many connections from this address", gw1.log() + gw2.log())


def test_the_peer_learns_the_client_across_both_hops(fleet):
    """A route with ?proxy-protocol=v2: the gateway passes the client's address, which it has
    from HAProxy's header, on to the peer in a v2 header of its own."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(5)
    fleet.redis.set(PREFIX + "told", f"tcp://127.0.0.1:{listener.getsockname()[1]}?proxy-protocol=v2 * binary")
    front = fleet.url.split("/")[2]

    async def scenario():
        await wait_until(lambda: all(s["check_status"] == "L7OK" for s in fleet.haproxy.servers().values()),
                         5, fleet.haproxy.log())
        async with websockets.connect(f"ws://{front}/told", local_addr=("127.0.0.2", 0)) as ws:
            peer, _ = await asyncio.to_thread(listener.accept)
            peer.settimeout(5)
            header = b""
            while len(header) < 28:
                header += await asyncio.to_thread(peer.recv, 28 - len(header))
            await ws.send(b"after the header")
            assert await asyncio.to_thread(peer.recv, 100) == b"after the header"
            peer.close()
            return header, ws.local_address[1]

    header, client_port = asyncio.run(asyncio.wait_for(scenario(), 15))
    listener.close()
    assert header[:12] == b"\r\n\r\n\x00\r\nQUIT\n" and header[12:16] == b"\x21\x11\x00\x0c"
    source, destination = socket.inet_ntoa(header[16:20]), socket.inet_ntoa(header[20:24])
    ports = int.from_bytes(header[24:26], "big"), int.from_bytes(header[26:28], "big")
    assert (source, ports[0]) == ("127.0.0.2", client_port)
    assert f"{destination}:{ports[1]}" == front  # where the client connected: HAProxy's frontend
