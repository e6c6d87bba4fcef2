"""A real peer process for the integration tests: TCP, UDP, Unix stream or Unix datagram.

    python peer.py TRANSPORT ADDRESS MODE [ARG]

Modes: echo (send back what arrives), sink (read to EOF, then print "SHA256 <hex> <bytes>"),
script (send each chunk of ARG, a Python literal list of bytes, 50 ms apart, then close),
flood (send ARG bytes of "z"), hold (accept and never read), halfclose (send the text ARG, shut down
the sending side, read to EOF, then print "LINES <count> <bytes>"),
tls-echo (echo over TLS; ARG is CERT:KEY), aecho (echo with asyncio, for many connections). Prints "READY <address>" once listening.
"""
import ast
import hashlib
import os
import socket
import sys
import threading
import time


def listen(transport, address):
    if transport in ("tcp", "udp"):
        host, port = address.rsplit(":", 1)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host.strip("[]"), int(port)))
        bound = s.getsockname()
        shown = f"{host}:{bound[1]}"
    else:
        kind = socket.SOCK_STREAM if transport == "unix" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_UNIX, kind)
        if os.path.exists(address):
            os.unlink(address)
        s.bind(address)
        shown = address
    if kind == socket.SOCK_STREAM:
        s.listen(64)
    return s, shown


def serve_stream(conn, mode, arg):
    if mode == "echo":
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            conn.sendall(data)
    elif mode == "sink":
        h, n = hashlib.sha256(), 0
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            h.update(data)
            n += len(data)
        print(f"SHA256 {h.hexdigest()} {n}", flush=True)
    elif mode == "script":
        for chunk in ast.literal_eval(arg):
            conn.sendall(chunk)
            time.sleep(0.05)
    elif mode == "flood":
        block = b"z" * (1 << 20)
        for _ in range(int(arg) >> 20):
            conn.sendall(block)
    elif mode == "hold":
        time.sleep(3600)
    elif mode == "halfclose":
        conn.sendall(arg.encode())
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while data := conn.recv(1 << 20):
            received += data
        lines = received.count(b"\n")
        print(f"LINES {lines} {len(received)}", flush=True)
    conn.close()


def serve_asyncio_echo(s):
    """Echo with asyncio (mode aecho): thousands of connections without a thread each."""
    import asyncio

    async def handle(reader, writer):
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def run():
        server = await asyncio.start_server(handle, sock=s, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


def main():
    transport, address, mode = sys.argv[1:4]
    arg = sys.argv[4] if len(sys.argv) > 4 else None
    s, shown = listen(transport, address)
    print(f"READY {shown}", flush=True)
    if mode == "aecho":
        serve_asyncio_echo(s)
        return
    if s.type == socket.SOCK_DGRAM:
        while True:
            data, sender = s.recvfrom(1 << 17)
            if mode == "echo":
                s.sendto(data, sender)
            elif mode == "script":
                for chunk in ast.literal_eval(arg):
                    s.sendto(chunk, sender)
    tls = None
    if mode == "tls-echo":
        import ssl
        certificate, key = arg.split(":")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(certificate, key)
        mode = "echo"
    while True:
        conn, _ = s.accept()
        if tls:
            try:
                conn = tls.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                continue
        threading.Thread(target=serve_stream, args=(conn, mode, arg), daemon=True).start()


if __name__ == "__main__":
    main()
