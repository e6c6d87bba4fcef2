"""Session recording (`record = DIR`, `--record`, route option `record=DIR|off`), read back with
websocksy-replay: byte-exact both ways, mode 0600, per-route on/off, the size cap, and a disk
that fails (RLIMIT_FSIZE) without the session noticing."""
import asyncio
import os
import re
import stat
import subprocess
import sys
import time

import pytest
import websockets

import conftest
from conftest import Gateway

REPLAY = os.environ.get("WEBSOCKSY_REPLAY", os.path.join(os.path.dirname(conftest.BINARY), "websocksy-replay"))
PLUGINS = os.environ.get("WEBSOCKSY_TEST_PLUGINS",
                         os.path.join(os.path.dirname(__file__), "..", "..", ".build", "test-plugins"))


def replay(*args, check=True):
    result = subprocess.run([REPLAY, *args], capture_output=True, timeout=30)
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


def recordings(directory):
    return sorted(os.path.join(directory, name) for name in os.listdir(directory))


def wait_closed(path, timeout=10):
    """Waits until the recording ends with its `end` or `capped` record; returns the listing."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = replay(path, check=False)
        lines = result.stdout.decode(errors="replace").splitlines()
        if result.returncode == 0 and lines and re.match(r"\s*\d+\.\d+\s+(end|capped)\b", lines[-1]):
            time.sleep(0.05)  # the truncated flag is written after the last record
            return replay(path).stdout.decode(errors="replace")
        time.sleep(0.02)
    raise AssertionError(f"{path} was not closed: {replay(path, check=False)}")


def wait_for_files(directory, count, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        files = recordings(directory)
        if len(files) >= count:
            return files
        time.sleep(0.02)
    raise AssertionError(f"{directory}: {len(recordings(directory))} recording(s), expected {count}")


def as_bytes(message):
    return message.encode() if isinstance(message, str) else message


async def exchange(url, messages, timeout=10):
    """Sends each message and reads replies until as many bytes came back (a stream peer's echo
    may come back cut differently); returns the bytes received."""
    received = b""
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        for message in messages:
            expected = len(received) + len(as_bytes(message))
            await ws.send(message)
            while len(received) < expected:
                received += as_bytes(await asyncio.wait_for(ws.recv(), timeout))
    return received


MESSAGES = ["", "hello", "héllo wörld ✓" * 100, "t" * 70000,
            b"\x00", os.urandom(1000), os.urandom(65536), os.urandom(200_000), os.urandom(1 << 20)]


def test_tcp_peer_recorded_byte_exact(gateway_factory, peer_factory, tmp_path):
    records = tmp_path / "rec"
    records.mkdir()
    peer = peer_factory("tcp")
    g = gateway_factory("-c", f"host={peer.url}", "--record", str(records))
    received = asyncio.run(exchange(g.url + "/audit/me?x=1", MESSAGES))
    sent = b"".join(as_bytes(m) for m in MESSAGES)
    assert received == sent
    [path] = wait_for_files(records, 1)
    listing = wait_closed(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    name = os.path.basename(path)
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-p\d+-n\d{6}-127\.0\.0\.1_\d+\.wsrec", name), name
    # Byte-exact both ways.
    assert replay("--direction", "in", "--raw", path).stdout == sent
    assert replay("--direction", "out", "--raw", path).stdout == received
    # The header and one FIN per client message; text shown as text.
    assert "# client 127.0.0.1:" in listing
    assert "# target /audit/me?x=1" in listing
    assert f"# peer {peer.url}" in listing
    assert "truncated" not in listing
    fins_in = [line for line in listing.splitlines() if re.match(r"\s*\d+\.\d+\s+in\s+\S+\s+fin\b", line)]
    assert len(fins_in) == len(MESSAGES)
    assert re.search(r'in\s+text\s+fin\s+5\s+"hello"', listing)
    assert re.search(r"in\s+binary\s+fin\s+1\s+00$", listing, re.M)
    # The 1 MiB message arrived (and was recorded) in chunks: continuation records.
    assert re.search(r"in\s+cont\s+", listing)


def test_echo_peer_and_compression_record_inflated_bytes(gateway_factory, tmp_path):
    """An echo peer: both directions are whole messages; with permessage-deflate the recording
    holds what the session delivered, inflated, not the compressed bytes."""
    records = tmp_path / "rec"
    records.mkdir()
    g = gateway_factory("-c", "host=echo://", "--record", str(records), "--compression", "on")
    messages = ["a" * 100_000, b"\x01\x02" * 50_000, "short"]

    async def run():
        out = []
        async with websockets.connect(g.url, max_size=None) as ws:  # offers permessage-deflate
            assert ws.response.headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate")
            for m in messages:
                await ws.send(m)
                out.append(await ws.recv())
        return out
    assert asyncio.run(run()) == messages
    [path] = wait_for_files(records, 1)
    listing = wait_closed(path)
    expected = b"".join(as_bytes(m) for m in messages)
    assert replay("--direction", "in", "--raw", path).stdout == expected
    assert replay("--direction", "out", "--raw", path).stdout == expected
    assert len(re.findall(r"out\s+\S+\s+fin", listing)) == 3


def test_routes_turn_recording_on_and_off(gateway_factory, peer_factory, tmp_path):
    """backend_file passes `?record=DIR|off` through core_peer_option; it overrides [core] record."""
    peer = peer_factory("tcp")
    core, route = tmp_path / "core", tmp_path / "route"
    core.mkdir()
    route.mkdir()
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "on").write_text(f"{peer.url}?record={route} *\n")
    (routes / "off").write_text(f"{peer.url}?record=off *\n")
    (routes / "default").write_text(f"{peer.url} *\n")
    (routes / "both").write_text(f"{peer.url}?compression=off&record={route} *\n")
    backend = ["--plugins", PLUGINS, "-b", "file", "-c", f"path={routes}", "-c", "expression=%endpoint%"]

    g = gateway_factory(*backend, "--record", str(core))
    for endpoint in ["on", "off", "default", "both"]:
        assert asyncio.run(exchange(f"{g.url}/{endpoint}", [endpoint])) == endpoint.encode()
    wait_for_files(route, 2)
    wait_for_files(core, 1)
    time.sleep(0.2)
    assert len(recordings(route)) == 2 and len(recordings(core)) == 1
    assert [replay("-d", "in", "--raw", p).stdout for p in recordings(route)] == [b"on", b"both"]
    assert replay("-d", "in", "--raw", recordings(core)[0]).stdout == b"default"

    # No [core] record: only the route that asks is recorded.
    g2 = gateway_factory(*backend)
    for endpoint in ["on", "off", "default"]:
        assert asyncio.run(exchange(f"{g2.url}/{endpoint}", [endpoint])) == endpoint.encode()
    wait_for_files(route, 3)
    time.sleep(0.2)
    assert len(recordings(route)) == 3 and len(recordings(core)) == 1
    assert replay("-d", "in", "--raw", recordings(route)[2]).stdout == b"on"
    assert not re.search(r"core_peer_option", g.log() + g2.log())


def test_size_cap(gateway_factory, peer_factory, tmp_path):
    records = tmp_path / "rec"
    records.mkdir()
    peer = peer_factory("tcp")
    g = gateway_factory("-c", f"host={peer.url}", "--record", str(records), "--record-max", "64k")
    messages = [os.urandom(20_000) for _ in range(10)]
    assert asyncio.run(exchange(g.url, messages)) == b"".join(messages)
    [path] = wait_for_files(records, 1)
    listing = wait_closed(path)
    assert os.path.getsize(path) <= 65536
    lines = listing.splitlines()
    assert re.match(r"\s*\d+\.\d+\s+capped\b", lines[-1])
    assert sum(1 for line in lines if "capped" in line) == 1
    assert "# truncated" in listing
    recorded_in = replay("-d", "in", "--raw", path).stdout
    assert b"".join(messages).startswith(recorded_in) and 0 < len(recorded_in) < 65536


def test_failing_disk_leaves_the_session_alone(monkeypatch, peer_factory, tmp_path):
    """RLIMIT_FSIZE as a full disk: the recording's writes fail (EFBIG, not SIGXFSZ), the file is
    marked truncated, and messages keep flowing at full speed on this and later connections."""
    records = tmp_path / "rec"
    records.mkdir()
    limit = 256 << 10
    wrapper = tmp_path / "limited"
    wrapper.write_text(f"#!{sys.executable}\nimport os, resource, sys\n"
                       f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
                       f"os.execv({conftest.BINARY!r}, [{conftest.BINARY!r}] + sys.argv[1:])\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(conftest, "BINARY", str(wrapper))
    peer = peer_factory("tcp")
    g = Gateway(["-l", "127.0.0.1", "-p", "0", "-c", f"host={peer.url}", "--record", str(records)])
    try:
        messages = [os.urandom(64 << 10) for _ in range(16)] + ["still", "flowing"]
        started = time.time()
        assert asyncio.run(exchange(g.url, messages)) == b"".join(as_bytes(m) for m in messages)
        assert time.time() - started < 10
        [path] = wait_for_files(records, 1)
        assert g.wait_for_log(r"recording .*\.wsrec: write failed: File too large; the session goes on unrecorded")
        # The flag is set when the file closes (after the session): wait for it.
        deadline = time.time() + 10
        while time.time() < deadline and "# truncated" not in replay(path, check=False).stdout.decode(errors="replace"):
            time.sleep(0.05)
        result = replay(path, check=False)
        assert "# truncated" in result.stdout.decode(errors="replace")
        assert result.returncode in (0, 1)  # 1: the file ends inside the record a write cut
        assert os.path.getsize(path) <= limit
        # The gateway is alive and serves the next connection as before.
        assert asyncio.run(exchange(g.url, ["next"])) == b"next"
        assert g.proc.poll() is None
    finally:
        g.stop()
    assert g.proc.returncode == 0


def test_bad_record_directory_is_refused_at_start(tmp_path):
    config = tmp_path / "ws.cfg"
    config.write_text(f"[core]\nport = 0\nrecord = {tmp_path}/missing\n")
    result = subprocess.run([conftest.BINARY, str(config), "--check-config"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"{config}:3: record: cannot record into {tmp_path}/missing: No such file or directory" in result.stderr
    result = subprocess.run([conftest.BINARY, "-p", "0", "--record-max", "1k"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "record-max must be a size from 64k" in result.stderr
