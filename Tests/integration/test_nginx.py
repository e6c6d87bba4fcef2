"""A real nginx on loopback in front of the gateway, configured from config/nginx-websocksy.conf."""
import asyncio
import os
import shutil
import socket
import subprocess
import time

import pytest
import websockets

from conftest import ROOT, free_port


@pytest.mark.skipif(not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"),
                    reason="nginx is not installed (.ci/run installs it)")
def test_through_nginx(gateway_factory, peer_factory, tmp_path):
    peer = peer_factory("tcp", "script", repr([b"hello through nginx\n"]))
    log = tmp_path / "access.log"
    g = gateway_factory("-c", f"host={peer.url}", "--access-log", str(log), "--trusted-proxy", "127.0.0.1")
    port = free_port()
    example = open(os.path.join(ROOT, "config", "nginx-websocksy.conf")).read()
    example = example.replace("listen 80;", f"listen 127.0.0.1:{port};").replace("127.0.0.1:8001", f"127.0.0.1:{g.port}")
    (tmp_path / "websocksy.conf").write_text(example)
    (tmp_path / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/websocksy.conf;
}}
""")
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                             stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                assert time.time() < deadline and nginx.poll() is None, "nginx did not start"
                time.sleep(0.05)

        async def go():
            # The client connects from 127.0.0.2, so its address can only have come from nginx's headers.
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", port))
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/chat", sock=sock) as ws:
                assert await asyncio.wait_for(ws.recv(), 5) == "hello through nginx\n"
        asyncio.run(go())
        deadline = time.time() + 5
        while time.time() < deadline and not (log.exists() and log.read_text()):
            time.sleep(0.05)
        line = log.read_text().splitlines()[0]
        # The client column is nginx's socket; the browser's address is in fwd=.
        assert line.split()[1].startswith("127.0.0.1:") and line.split()[2] == "fwd=127.0.0.2"
        assert '"GET /ws/chat" 101' in line and f"peer={peer.url}" in line
    finally:
        nginx.terminate()
        nginx.wait(5)
