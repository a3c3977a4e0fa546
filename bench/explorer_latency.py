"""Round-trip time of the explorer's requests over real HTTP, on one 28x28 image.

    python bench/explorer_latency.py RUN [--requests 30]

Starts `perceptreg explore RUN` in its own process on 127.0.0.1 (a free port), as a user
would, and times from an HTTP client in this process each kind of request the page makes: an attack (L-inf, eps 0.2,
100 steps, the page's default), a 9-frame latent walk, a gallery page of 24 images and a
perception of an uploaded PNG. The goal for an attack is under 300 ms.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import subprocess
import sys
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--requests", type=int, default=30)
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
    print(f"{'request':<24}{'median ms':>10}{'p95 ms':>9}{'max ms':>9}")
    with httpx.Client(base_url=url, timeout=30) as client:
        for name, call in calls.items():
            for i in range(3):
                call(client, i).raise_for_status()
            times = []
            for i in range(args.requests):
                began = time.perf_counter()
                call(client, i).raise_for_status()
                times.append(1000 * (time.perf_counter() - began))
            times.sort()
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
            print(f"{name:<24}{statistics.median(times):>10.1f}{p95:>9.1f}{times[-1]:>9.1f}")
    server.terminate()
    server.wait()


if __name__ == "__main__":
    main()
