"""A real Prometheus server scrapes a gateway's admin listener every second: the target is up with
no scrape error, every sample of /metrics is ingested, and queries return what the traffic made."""
import asyncio
import http.client
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse

import pytest
import websockets

from conftest import free_port
from test_admin import get
from wsraw import RawClient, request


@pytest.fixture
def prometheus(tmp_path):
    """start(TARGET) -> the port of a Prometheus scraping http://TARGET/metrics every second."""
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("the prometheus binary is missing (.ci/run installs the Debian package prometheus)")
    procs = []

    def start(target):
        config = tmp_path / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                          "scrape_configs:\n  - job_name: websocksy\n    static_configs:\n"
                          f"      - targets: ['{target}']\n")
        port = free_port()
        output = open(tmp_path / "prometheus.out", "w")
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=output, stderr=subprocess.STDOUT)
        procs.append((proc, output))
        deadline = time.time() + 10
        while True:
            try:
                if get(port, "/-/ready")[0] == 200:
                    return port
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "prometheus.out").read_text()
            time.sleep(0.05)

    yield start
    for proc, output in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        output.close()


def api(port, path, **params):
    status, _, body = get(port, path + ("?" + urllib.parse.urlencode(params) if params else ""))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    return answer["data"]


def query(port, expression):
    """The value of an instant query returning one series, or None when it returns none."""
    result = api(port, "/api/v1/query", query=expression)["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def wait_for(condition, what, timeout=15):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, what()
        time.sleep(0.1)


def test_prometheus_scrapes_the_admin_listener(gateway_factory, prometheus):
    g = gateway_factory("-c", "host=echo://", "--admin-listen", "127.0.0.1:0")
    assert g.wait_for_log(r"admin listener .* on 127\.0\.0\.1:\d+")
    admin = int(re.search(r"admin listener .* on 127\.0\.0\.1:(\d+)", g.log()).group(1))
    port = prometheus(f"127.0.0.1:{admin}")

    async def traffic():
        for _ in range(3):
            async with websockets.connect(g.url) as ws:
                for message in ("one", b"two"):
                    await ws.send(message)
                    assert await ws.recv() == message
    asyncio.run(traffic())
    refused = RawClient(g.port)
    refused.send(request(version="8"))
    assert refused.read_response()[0] == 426
    refused.close()
    done = time.time()

    # Once a scrape has followed the traffic, the counters are in Prometheus as they are:
    # three upgrades, six messages in, one 426.
    wait_for(lambda: (query(port, 'timestamp(up{job="websocksy"})') or 0) > done,
             lambda: f"no scrape since the traffic: {api(port, '/api/v1/targets')}")
    assert query(port, "websocksy_upgrades_total") == 3
    assert query(port, 'websocksy_messages_total{direction="in"}') == 6
    assert query(port, 'websocksy_payload_bytes_total{direction="out"}') == 18
    assert query(port, 'websocksy_websocket_closes_total{code="1000"}') == 3
    assert query(port, 'websocksy_handshake_refusals_total{status="426"}') == 1
    assert query(port, "websocksy_backend_query_seconds_count") == 3
    assert query(port, 'websocksy_backend_query_seconds_bucket{le="+Inf"}') == 3
    assert query(port, "websocksy_ready") == 1
    assert query(port, 'up{job="websocksy"}') == 1

    targets = api(port, "/api/v1/targets")["activeTargets"]
    assert len(targets) == 1
    target = targets[0]
    assert target["health"] == "up" and target["lastError"] == "", target
    assert target["scrapeUrl"] == f"http://127.0.0.1:{admin}/metrics"

    # Every sample line of /metrics was ingested: Prometheus rejects none of them.
    _, _, body = get(admin, "/metrics")
    lines = [line for line in body.splitlines() if line and not line.startswith("#")]
    wait_for(lambda: query(port, "scrape_samples_scraped") == len(lines),
             lambda: f"{query(port, 'scrape_samples_scraped')} samples scraped, {len(lines)} served")
    assert query(port, "scrape_samples_post_metric_relabeling") == len(lines)
    assert query(port, 'count({job="websocksy", __name__=~"websocksy_.*"})') == len(lines)
