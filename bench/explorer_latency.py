"""Round-trip time of the explorer's requests over real HTTP, on one 28x28 image.

    python bench/explorer_latency.py RUN [--requests 30] [--clients 1 20]

Starts `perceptreg explore RUN` in its own process on 127.0.0.1 (a free port), as a user
would, and times from an HTTP client in this process each kind of request the page makes: an attack (L-inf, eps 0.2,
100 steps, the page's default), a 9-frame latent walk, a gallery page of 24 images and a
perception of an uploaded PNG. The goal for an attack is under 300 ms.

Then ``--clients`` at once, each sending attacks one after another as the page does
(waiting out a 503's Retry-After and trying again): the time from sending to the answer,
retries included, the 503s met, and the time the page itself (GET /) takes meanwhile.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx
from PIL import Image, ImageDraw


def start_server(run: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "perceptreg", "explore", run, "--port", str(port)],
                               stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/api/info").raise_for_status()
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the explorer did not answer on {url}")


def summary(times: list[float]) -> str:
    times = sorted(times)
    p90, p95 = (times[min(len(times) - 1, int(q * len(times)))] for q in (0.9, 0.95))
    return f"{statistics.median(times):>10.1f}{p90:>9.1f}{p95:>9.1f}{times[-1]:>9.1f}"


def attack_as_the_page_does(client: httpx.Client, index: int, refused: list) -> float:
    began = time.perf_counter()
    while True:
        response = client.post("/api/attack", json={"index": index, "eps": 0.2, "steps": 100})
        if response.status_code != 503:
            response.raise_for_status()
            return 1000 * (time.perf_counter() - began)
        refused.append(1)
        time.sleep(float(response.headers["Retry-After"]))


def concurrent(url: str, clients: int, requests: int) -> None:
    times, refused, page = [], [], []

    def client_loop(k):
        with httpx.Client(base_url=url, timeout=120) as client:
            for i in range(requests):
                times.append(attack_as_the_page_does(client, k * requests + i, refused))
    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    with httpx.Client(base_url=url, timeout=120) as client:
        while any(thread.is_alive() for thread in threads):
            began = time.perf_counter()
            client.get("/").raise_for_status()
            page.append(1000 * (time.perf_counter() - began))
            time.sleep(0.1)
    for thread in threads:
        thread.join()
    print(f"{f'attack, {clients} clients':<24}{summary(times)}   ({len(times)} attacks, {len(refused)} 503s)")
    print(f"{'  GET / meanwhile':<24}{summary(page)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 20], help="concurrent clients to time")
    args = parser.parse_args()
    server, url = start_server(args.run)
    picture = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(picture).line([(140, 40), (140, 240)], fill=255, width=22)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    calls = {
        "attack, 100 steps": lambda c, i: c.post("/api/attack", json={"index": i, "eps": 0.2, "steps": 100}),
        "latent walk, 9 frames": lambda c, i: c.post("/api/edit", json={"index": i, "target": 8}),
        "gallery page of 24": lambda c, i: c.get("/api/gallery", params={"offset": 24 * (i % 40), "limit": 24}),
        "perceive an upload": lambda c, i: c.post("/api/perceive", files={"file": ("d.png", buffer.getvalue(), "image/png")}),
    }
    print(f"explorer of {args.run} at {url}; {args.requests} requests each, after 3 warm-up requests")
    print(f"{'request':<24}{'median ms':>10}{'p90 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    with httpx.Client(base_url=url, timeout=30) as client:
        for name, call in calls.items():
            for i in range(3):
                call(client, i).raise_for_status()
            times = []
            for i in range(args.requests):
                began = time.perf_counter()
                call(client, i).raise_for_status()
                times.append(1000 * (time.perf_counter() - began))
            print(f"{name:<24}{summary(times)}")
    for clients in args.clients:
        concurrent(url, clients, max(1, args.requests // clients))
    server.terminate()
    server.wait()


if __name__ == "__main__":
    main()
