#!/usr/bin/env python3
"""A plain TCP proxy that delays every chunk by half the round trip in each direction.

TLS, HTTP/2 and everything else pass through untouched, so every client (gantry, kubectl,
Helm) sees the same network. It logs the time of each chunk a client sends, so the bench can
count the serial round trips on the critical path: a chunk sent more than half a round trip
after the one before starts a new wave (requests sent together, while waiting for nothing,
are one wave).

Usage: latency-proxy.py LISTEN_PORT UPSTREAM_HOST:PORT RTT_MS LOG_FILE
       latency-proxy.py --waves LOG_FILE RTT_MS START END   (waves and connections in a window)
"""
import asyncio
import sys
import time


def waves(log, rtt_ms, start, end):
    times, connections = [], set()
    with open(log) as f:
        for line in f:
            stamp, conn = line.split()
            stamp = float(stamp)
            if start <= stamp <= end:
                times.append(stamp)
                connections.add(conn)
    times.sort()
    count, last = 0, None
    for stamp in times:
        if last is None or stamp - last > rtt_ms / 2000.0:
            count += 1
        last = stamp
    return count, len(connections)


async def pipe(reader, writer, delay, log, conn):
    loop = asyncio.get_running_loop()
    closed = False

    def send(chunk):
        if not closed and not writer.is_closing():
            writer.write(chunk)

    def close():
        if not writer.is_closing():
            try:
                writer.write_eof()
            except (OSError, RuntimeError):
                writer.close()

    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            if log is not None:
                log.write(f"{time.time():.6f} {conn}\n")
            loop.call_later(delay, send, chunk)
    except (ConnectionError, OSError):
        closed = True
        writer.close()
        return
    loop.call_later(delay, close)


async def main(port, upstream, rtt_ms, log_path):
    host, up_port = upstream.rsplit(":", 1)
    log = open(log_path, "a", buffering=1)
    delay = rtt_ms / 2000.0
    counter = [0]

    async def handle(client_reader, client_writer):
        counter[0] += 1
        conn = counter[0]
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(up_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, delay, log, conn),
            pipe(server_reader, client_writer, delay, None, conn),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "--waves":
        count, connections = waves(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
        print(count, connections)
    else:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]))
