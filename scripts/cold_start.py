#!/usr/bin/env python3
"""Cold start of a Lambda binary: process start until its first poll of the Runtime API.

    python3 scripts/cold_start.py BINARY [RUNS]

Serves a Runtime API double on loopback that records the first `GET .../invocation/next` and never
answers it, starts BINARY with the variables Lambda sets RUNS times (default 5), and prints the
median in milliseconds. Used by scripts/bench.sh and scripts/sam-build.sh (BENCHMARKS.md).
"""
import http.server
import os
import statistics
import subprocess
import sys
import threading
import time


def main():
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    hit = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hit.set()
            time.sleep(5)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        os.environ,
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
        AWS_LAMBDA_FUNCTION_NAME="bench",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
        AWS_LAMBDA_FUNCTION_VERSION="1",
    )
    times = []
    for _ in range(runs):
        hit.clear()
        t0 = time.perf_counter()
        p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not hit.wait(10):
            p.kill()
            p.wait()
            sys.exit(f"cold_start: {binary} did not poll the Runtime API within 10 s")
        times.append((time.perf_counter() - t0) * 1000)
        p.kill()
        p.wait()
    print(f"{statistics.median(times):.1f}")


if __name__ == "__main__":
    main()
