"""The demo (config/demo.cfg): its page from the web root, /echo and /lines, driven by a Python client
and, where Chromium is installed (.ci/run installs it), by a real browser through the DevTools protocol."""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import websockets

from conftest import ROOT, Gateway, free_port


@pytest.fixture
def demo(tmp_path):
    """config/demo.cfg on free ports: its line service, its routes and its web root."""
    line_port = free_port()
    service = subprocess.Popen([sys.executable, os.path.join(ROOT, "demo", "lineservice.py"), f"127.0.0.1:{line_port}"],
                               stdout=subprocess.PIPE, text=True)
    assert service.stdout.readline().startswith("line service on")
    routes = tmp_path / "routes"
    shutil.copytree(os.path.join(ROOT, "demo", "routes"), routes)
    (routes / "lines").write_text((routes / "lines").read_text().replace("127.0.0.1:8002", f"127.0.0.1:{line_port}"))
    cfg = open(os.path.join(ROOT, "config", "demo.cfg")).read()
    assert "\nlisten = 127.0.0.1\n" in cfg  # localhost only unless told otherwise (test_quiet_logs.py)
    cfg = cfg.replace("port = 8001", "port = 0")
    cfg = cfg.replace("web = demo", f"web = {ROOT}/demo").replace("path = demo/routes", f"path = {routes}")
    (tmp_path / "demo.cfg").write_text(cfg)
    g = Gateway([str(tmp_path / "demo.cfg")])
    yield g
    g.stop()
    service.kill()
    service.wait()


def test_demo_endpoints(demo):
    async def go():
        async with websockets.connect(demo.url + "/echo") as ws:
            await ws.send("text")
            assert await ws.recv() == "text"
            await ws.send(b"\x00bin")
            assert await ws.recv() == b"\x00bin"
        async with websockets.connect(demo.url + "/lines") as ws:
            assert (await ws.recv()).startswith("welcome")
            await ws.send("hello\n")
            assert await ws.recv() == "line 1: HELLO (5 characters)\n"
    asyncio.run(go())
    page = demo.url.replace("ws://", "http://") + "/"
    import urllib.request
    with urllib.request.urlopen(page) as response:
        assert b"websocksy" in response.read()


def find_chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(not find_chromium(), reason="Chromium is not installed (.ci/run installs it)")
def test_demo_in_a_real_browser(demo):
    """Headless Chromium loads the page through the web root and runs its scripted exchange."""
    page = demo.url.replace("ws://", "http://") + "/?auto=1"
    debug_port = free_port()
    profile = tempfile.mkdtemp()
    browser = subprocess.Popen([find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                                f"--remote-debugging-port={debug_port}", "--remote-allow-origins=*", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = asyncio.run(drive(debug_port, page))
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)
    assert result == {
        "echoText": "ping from the browser",
        "echoBinary": "ping from the browser",
        "echoExtensions": "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11",
        "bigTextIntact": True,
        "bigBinaryIntact": True,
        "linesGreeting": "welcome to the line service: send a line, get one back\n",
        "linesAnswer": "line 1: HELLO LINES (11 characters)\n",
        "linesExtensions": "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11",
    }
    assert demo.wait_for_log(r'"GET /lines" 101 bytes=- proto=- peer=tcp://127\.0\.0\.1:\d+ in=1/12 out=2/')


async def drive(debug_port, page):
    """Navigates with the DevTools protocol and polls #result until the page wrote it."""
    import urllib.request
    deadline = time.time() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list") as r:
                targets = [t for t in json.load(r) if t.get("type") == "page"]
            if targets:
                break
        except OSError:
            pass
        if time.time() > deadline:
            raise AssertionError("Chromium did not start")
        await asyncio.sleep(0.2)
    async with websockets.connect(targets[0]["webSocketDebuggerUrl"], max_size=None) as cdp:
        ids = iter(range(1, 1000))

        async def call(method, **params):
            i = next(ids)
            await cdp.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                message = json.loads(await cdp.recv())
                if message.get("id") == i:
                    return message.get("result", {})

        await call("Page.navigate", url=page)
        while time.time() < deadline:
            value = await call("Runtime.evaluate", expression="document.getElementById('result').textContent")
            text = value.get("result", {}).get("value", "")
            if text:
                return json.loads(text)
            await asyncio.sleep(0.2)
    raise AssertionError("the page did not finish its exchange")
