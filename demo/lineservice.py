"""The demo's line-based service: greets each client with a line, then answers every line it
receives with another. Plain TCP, like the daemons websocksy puts in a browser.

    python3 lineservice.py HOST:PORT
"""
import asyncio
import sys


async def serve(reader, writer):
    writer.write(b"welcome to the line service: send a line, get one back\n")
    count = 0
    try:
        while line := await reader.readline():
            count += 1
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            writer.write(f"line {count}: {text.upper()!s} ({len(text)} characters)\n".encode())
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(address):
    host, port = address.rsplit(":", 1)
    server = await asyncio.start_server(serve, host, int(port))
    print(f"line service on {address}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8002"))
    except KeyboardInterrupt:
        pass
