"""Latency of ``/api/inpaint`` under 1, 4, 16 concurrent clients: a real ``zoo serve`` on loopback, clients here.

    python tools/bench_serve.py --model deepfill_v2,tiny --size 64 --requests 48 --concurrency 1 4 16

The server runs as a subprocess (its own Python, one inference thread); this process sends the requests from
a thread per client with httpx and prints p50 / p95 latency, throughput and how many answered 503.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def start_server(model: str, threads: int | None, queue_size: int):
    script = Path(sys.executable).with_name("zoo")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "zoo.cli"]
    command += ["serve", "--port", "0", "--model", model, "--queue-size", str(queue_size), "--device", "cpu"]
    if threads:
        command += ["--threads", str(threads)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    match = re.search(r"at (http://127\.0\.0\.1:\d+/)", proc.stdout.readline())
    if not match:
        proc.kill()
        raise SystemExit("the server did not start")
    url = match.group(1)
    for _ in range(300):
        try:
            if httpx.get(url + "api/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not answer")


def run_level(url: str, name: str, files: dict, clients: int, requests: int):
    latencies, statuses, lock = [], [], threading.Lock()
    per_client = [requests // clients + (k < requests % clients) for k in range(clients)]

    def client(count):
        with httpx.Client(timeout=120) as session:
            for _ in range(count):
                start = time.perf_counter()
                r = session.post(url + "api/inpaint", files=files, data={"models": name})
                with lock:
                    latencies.append(time.perf_counter() - start)
                    statuses.append(r.status_code)

    threads = [threading.Thread(target=client, args=(n,)) for n in per_client]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = [lat for lat, s in zip(latencies, statuses) if s == 200]
    return dict(clients=clients, requests=len(statuses), ok=len(ok), busy=statuses.count(503),
                other=len(statuses) - len(ok) - statuses.count(503), p50=np.percentile(ok, 50) * 1e3,
                p95=np.percentile(ok, 95) * 1e3, throughput=len(ok) / wall)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="deepfill_v2,tiny")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--threads", type=int, default=1, help="server's torch threads (0: torch's default)")
    p.add_argument("--queue-size", type=int, default=32)
    args = p.parse_args()

    rng = np.random.default_rng(0)
    image = (rng.random((args.size, args.size, 3)) * 255).astype(np.uint8)
    mask = np.zeros((args.size, args.size), np.uint8)
    mask[args.size // 4 : args.size // 2, args.size // 4 : 3 * args.size // 4] = 255
    files = {"image": ("photo.png", png(image)), "mask": ("mask.png", png(mask))}
    proc, url = start_server(args.model, args.threads or None, args.queue_size)
    try:
        name = httpx.get(url + "api/models").json()[0]["name"]
        run_level(url, name, files, 1, 3)  # warm-up
        print(f"{args.model} at {args.size} px, {args.requests} requests per level, server threads {args.threads}")
        print("| clients | ok | 503 | other | p50 ms | p95 ms | requests/s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for clients in args.concurrency:
            r = run_level(url, name, files, clients, args.requests)
            print(f"| {r['clients']} | {r['ok']} | {r['busy']} | {r['other']} | {r['p50']:.1f} | {r['p95']:.1f} | "
                  f"{r['throughput']:.1f} |", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
