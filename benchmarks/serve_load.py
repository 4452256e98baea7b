"""Load on `recon serve`: many uploads from concurrent clients to a local server, small model.

    python benchmarks/serve_load.py [--checkpoint CKPT] [--uploads 50] [--clients 10]
                                    [--workers 2]

Without --checkpoint it trains a tiny voxel model first (`recon synth pix3d`, 1 epoch of
`recon train voxel` at 32 px). Each client uploads its share of distinct images one after the
other and polls its job every --poll seconds until it ends. Checks that every job finishes, that
no id repeats and that each job's stored input is the image its client sent; prints jobs/s, the
p50/p95 time to done (as the client sees it, and the server's own), and the p50/p95/max latency
of GET /api/jobs/{id} while inference runs. `name: value` lines; --json prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _args import positive_float, positive_int


def tiny_checkpoint(folder: Path) -> Path:
    """A 1-epoch `recon train voxel` checkpoint on a small synthetic Pix3D set."""
    recon = [sys.executable, "-m", "recon.cli.app"]
    subprocess.run(
        [*recon, "synth", "pix3d", "-o", folder / "pix3d", "--count", "1", "--views", "2", "-q"],
        check=True,
    )
    train = [*recon, "train", "voxel", "--data", folder / "pix3d", "--epochs", "1", "-q"]
    train += ["--set", "size=32", "--set", "hidden=32", "-o", folder / "run", "--device", "cpu"]
    subprocess.run(train, check=True)
    return folder / "run" / "checkpoints" / "best.ckpt"


def upload_images(count: int, seed: int = 0) -> list[bytes]:
    """count distinct PNGs: a shaded box of random size and place on a white background."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        pixels = np.full((128, 128, 3), 255, np.uint8)
        x0, y0 = rng.integers(10, 50, 2)
        x1, y1 = x0 + rng.integers(30, 70), y0 + rng.integers(30, 70)
        pixels[y0:y1, x0:x1] = rng.integers(40, 200, 3)
        pixels[y0 : y0 + 6, x0:x1] = 230 - pixels[y0, x0] // 4  # a lit top face
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def start_server(checkpoint: Path, data: Path, workers: int, queue_limit: int):
    """`recon serve` on a free localhost port; (process, base URL) once /healthz answers."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "recon.cli.app", "serve", "-c", f"voxel={checkpoint}"]
    command += ["--port", str(port), "--data", str(data), "--workers", str(workers)]
    command += ["--queue-limit", str(queue_limit), "--device", "cpu", "-q"]
    server = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("recon serve exited")
        try:
            httpx.get(f"{base}/healthz")
            return server, base
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("recon serve did not start")


def run_job(client, base: str, image: bytes, poll: float, latencies: list) -> dict:
    """Upload, poll until the job ends; the job's final view plus client-side timings."""
    start = time.perf_counter()
    response = client.post(
        f"{base}/api/jobs", files={"image": ("box.png", image, "image/png")}, data={"task": "voxel"}
    )
    if response.status_code != 202:
        raise RuntimeError(f"upload refused: {response.status_code} {response.text}")
    url = base + response.json()["status_url"]
    while True:
        clock = time.perf_counter()
        job = client.get(url).json()
        latencies.append((time.perf_counter() - clock, job["status"]))
        if job["status"] in ("done", "failed"):
            job["client_seconds"] = time.perf_counter() - start
            return job
        time.sleep(poll)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def load_test(base: str, images: list[bytes], clients: int, poll: float) -> dict:
    import httpx

    latencies: list[tuple[float, str]] = []
    lock = threading.Lock()
    shares = [list(range(i, len(images), clients)) for i in range(clients)]

    def client_run(indices: list[int]) -> list[tuple[int, dict]]:
        own: list[tuple[float, str]] = []
        with httpx.Client(timeout=60) as client:
            jobs = [(i, run_job(client, base, images[i], poll, own)) for i in indices]
        with lock:
            latencies.extend(own)
        return jobs

    clock = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [job for share in pool.map(client_run, shares) for job in share]
    wall = time.perf_counter() - clock

    with httpx.Client() as client:  # every job's stored input is the image its client sent
        for index, job in results:
            [image] = [f["url"] for f in job["files"] if f["role"] == "image"]
            stored = client.get(base + image).content
            assert hashlib.sha256(stored).digest() == hashlib.sha256(images[index]).digest()
        counts = client.get(f"{base}/healthz").json()["jobs"]
    ids = [job["id"] for _, job in results]
    done = [job for _, job in results if job["status"] == "done"]
    during = [seconds for seconds, status in latencies if status in ("queued", "running")]
    return {
        "uploads": len(images),
        "clients": clients,
        "jobs_done": len(done),
        "jobs_failed": len(results) - len(done),
        "distinct_ids": len(set(ids)),
        "server_done_count": counts["done"],
        "wall_s": round(wall, 2),
        "jobs_per_s": round(len(done) / wall, 3),
        "time_to_done_p50_s": round(percentile([j["client_seconds"] for j in done], 50), 2),
        "time_to_done_p95_s": round(percentile([j["client_seconds"] for j in done], 95), 2),
        "server_seconds_p50": round(percentile([j["seconds"] for j in done], 50), 2),
        "server_seconds_p95": round(percentile([j["seconds"] for j in done], 95), 2),
        "status_polls_during_inference": len(during),
        "status_latency_p50_ms": round(1000 * percentile(during, 50), 2),
        "status_latency_p95_ms": round(1000 * percentile(during, 95), 2),
        "status_latency_max_ms": round(1000 * max(during, default=float("nan")), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a `recon train voxel` checkpoint")
    parser.add_argument("--uploads", type=positive_int, default=50)
    parser.add_argument("--clients", type=positive_int, default=10)
    parser.add_argument("--workers", type=positive_int, default=2, help="server worker processes")
    parser.add_argument(
        "--poll", type=positive_float, default=0.2, help="seconds between status polls"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        folder = Path(tmp)
        checkpoint = args.checkpoint or tiny_checkpoint(folder)
        server, base = start_server(checkpoint, folder / "data", args.workers, args.uploads + 1)
        try:
            # warm-up, one job per worker at once: each imports its libraries and reads the model
            load_test(base, upload_images(args.workers, seed=1), args.workers, args.poll)
            figures = load_test(base, upload_images(args.uploads), args.clients, args.poll)
        finally:
            server.terminate()
            server.wait(timeout=30)
    figures.update(workers=args.workers, cpu_count=os.cpu_count())
    ok = figures["jobs_done"] == figures["distinct_ids"] == args.uploads
    figures["all_jobs_done_once"] = (
        ok and figures["server_done_count"] == args.uploads + args.workers
    )
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name}: {value}")
    if not figures["all_jobs_done_once"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
