#!/usr/bin/env python3
"""A loopback HTTP/1.1 proxy that holds every request for DELAY_MS before forwarding it, to
emulate the per-request latency of a remote S3 in the benchmark (scripts/bench.sh).

Usage: latency_proxy.py UPSTREAM_PORT DELAY_MS   (prints its own http://127.0.0.1:PORT)

It counts the requests it forwards by S3 price class: on SIGUSR1 it prints one JSON line on stdout,
{"GET": n, "HEAD": n, "PUT": n, "POST": n, "LIST": n, "DELETE": n, ...} since it started (LIST: a GET
of a bucket, i.e. ListObjects; billed as a PUT-class request). scripts/bench-many.sh reads it.

Requests are framed by Content-Length (what the S3 SDK sends for in-memory bodies); responses
are passed through as they come. Only for local measurements: it listens on 127.0.0.1 alone.
"""
import json
import signal
import socket
import sys
import threading
import time


COUNTS = {}
COUNTS_LOCK = threading.Lock()


def count(request_line):
    """Counts one request by method; a GET of a bucket alone (`/bucket?list-type=2`) is LIST."""
    parts = request_line.split(b" ")
    method = parts[0].decode("ascii", "replace")
    if method == "GET" and len(parts) > 1:
        path = parts[1].split(b"?", 1)[0].strip(b"/")
        if b"/" not in path:
            method = "LIST"
    with COUNTS_LOCK:
        COUNTS[method] = COUNTS.get(method, 0) + 1


def print_counts(*_):
    with COUNTS_LOCK:
        line = json.dumps(COUNTS, sort_keys=True)
    print(line, flush=True)


def pump(src, dst):
    try:
        while True:
            b = src.recv(1 << 16)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def handle(client, upstream, delay):
    server = socket.create_connection(("127.0.0.1", upstream))
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=pump, args=(server, client), daemon=True).start()
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                b = client.recv(1 << 16)
                if not b:
                    return
                buf += b
            head, buf = buf.split(b"\r\n\r\n", 1)
            count(head.split(b"\r\n", 1)[0])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    print("latency_proxy: chunked requests are not supported", file=sys.stderr)
                    return
            time.sleep(delay)
            server.sendall(head + b"\r\n\r\n")
            while length > 0:
                if not buf:
                    buf = client.recv(1 << 16)
                    if not buf:
                        return
                n = min(length, len(buf))
                server.sendall(buf[:n])
                buf, length = buf[n:], length - n
    except OSError:
        pass
    finally:
        try:
            server.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def main():
    upstream, delay = int(sys.argv[1]), float(sys.argv[2]) / 1000
    signal.signal(signal.SIGUSR1, print_counts)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=handle, args=(client, upstream, delay), daemon=True).start()


if __name__ == "__main__":
    main()
