"""Image -> voxel benchmarks: speed figures and the acceptance runs of tasks `voxel` / `parts`.

    python benchmarks/voxel.py speed              images/s, voxelisation, convert-mat rate
    python benchmarks/voxel.py accept voxel       synth set -> train <= --minutes -> IoU@0.5
    python benchmarks/voxel.py accept parts           (held-out shapes) vs the mean-shape baseline

Every figure is printed as `name: value`; --json prints one JSON object instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _args import count_int, device, positive_float, positive_int


def timed(function, repeat: int = 3) -> float:
    """Best wall time of repeat calls, seconds."""
    best = float("inf")
    for _ in range(repeat):
        clock = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - clock)
    return best


STEPS = 7  # training steps timed per network: one step alone varied 4x between runs


def median_time(function, repeat: int) -> float:
    """Median wall time of repeat calls, seconds."""
    import statistics

    times = []
    for _ in range(repeat):
        clock = time.perf_counter()
        function()
        times.append(time.perf_counter() - clock)
    return statistics.median(times)


def training_images_per_s(device: str = "cpu", precision: str = "32") -> dict:
    """Forward + backward + Adam step images/s of both networks at their default input sizes
    (the median of STEPS steps after one warm-up step)."""
    import torch

    from recon.models.parts_net import PartsNet
    from recon.models.voxel_net import VoxelNet

    results = {}
    for name, net, size in (
        ("voxel", VoxelNet(), 224),
        ("voxel@64", VoxelNet(), 64),
        ("parts", PartsNet(), 128),
        ("parts@64", PartsNet(), 64),
    ):
        net = net.to(device)
        optimiser = torch.optim.Adam(net.parameters(), 1e-4)
        batch = 8
        images = torch.randn(batch, 3, size, size, device=device)
        target = (torch.rand(batch, 32, 32, 32, device=device) > 0.7).float()
        dtype = torch.bfloat16 if precision == "bf16" else None

        def step(net=net, optimiser=optimiser, images=images, target=target, dtype=dtype):
            with torch.autocast(
                device_type=device.split(":")[0], dtype=dtype, enabled=dtype is not None
            ):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(images), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        step()  # warm-up
        seconds = median_time(step, STEPS)
        results[f"train_images_per_s.{name}.{device}.{precision}"] = batch / seconds
    return results


def voxelisation_speed() -> dict:
    """Seconds to voxelise one part STL at 32^3 and 128^3: ours vs open3d's and trimesh's calls."""
    import open3d as o3d

    from recon.pipelines.occupancy.parts import make_part
    from recon.pipelines.shapes.solids import fitted_occupancy, solid_mesh
    from recon.pipelines.shapes.voxelize import voxelize_mesh

    solid = make_part("flange", np.random.default_rng(0))
    mesh = solid_mesh(solid, 96)
    results = {"mesh_faces": len(mesh.faces)}
    voxelize_mesh(mesh, 8)  # open3d start-up outside the timings
    for resolution in (32, 128):
        pitch = float(mesh.extents.max()) / resolution
        truth = fitted_occupancy(solid, resolution)
        for method in ("raycast", "winding"):
            seconds = timed(lambda m=method, r=resolution: voxelize_mesh(mesh, r, m), 1)
            grid = voxelize_mesh(mesh, resolution, method)
            results[f"voxelize_s.{method}.{resolution}"] = seconds
            results[f"voxelize_iou_vs_analytic.{method}.{resolution}"] = float(
                (grid & truth).sum() / (grid | truth).sum()
            )
        legacy = o3d.geometry.TriangleMesh(
            o3d.utility.Vector3dVector(mesh.vertices), o3d.utility.Vector3iVector(mesh.faces)
        )
        results[f"voxelize_s.open3d_surface_voxelgrid.{resolution}"] = timed(
            lambda m=legacy, p=pitch: o3d.geometry.VoxelGrid.create_from_triangle_mesh(m, p), 1
        )
        results[f"voxelize_s.trimesh_voxelized_fill.{resolution}"] = timed(
            lambda p=pitch: mesh.voxelized(p).fill(), 1
        )
    return results


def convert_mat_rate(count: int = 1000, workers: int = 0) -> dict:
    """Files/s of `recon convert-mat --resolution 32` over a tree of count 128^3 .mat files."""
    from recon.pipelines.occupancy.matfiles import write_voxel_mat

    folder = Path(tempfile.mkdtemp(prefix="convert-mat-bench."))
    try:
        rng = np.random.default_rng(0)
        for i in range(count):
            grid = np.zeros((128, 128, 128), np.uint8)
            low = rng.integers(10, 50, 3)
            high = low + rng.integers(20, 70, 3)
            grid[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = 1
            target = folder / "src" / f"c{i % 10}" / f"m{i:04d}"
            target.mkdir(parents=True)
            write_voxel_mat(target / "voxel.mat", grid, "7.3" if i % 3 == 2 else "5")
        command = [
            sys.executable,
            "-m",
            "recon.cli.app",
            "convert-mat",
            str(folder / "src"),
            "-o",
            str(folder / "npy"),
            "--resolution",
            "32",
            "--json",
            "-q",
        ]
        if workers:
            command += ["--workers", str(workers)]
        result = json.loads(
            subprocess.run(command, capture_output=True, text=True, check=True).stdout
        )
        return {
            "convert_mat_files": count,
            "convert_mat_files_per_s": result["files_per_s"],
            "convert_mat_workers": result["workers"],
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def accept(task: str, minutes: float, models: int, views: int, size: int, seed: int) -> dict:
    """Synthesise a 5-class set, train task for at most minutes on CPU, report the held-out
    IoU@0.5 at the last epoch and the mean-shape baseline's IoU@0.5 on the same validation
    shapes; the best epoch's IoU is reported too, named as what it is: chosen on the same
    shapes, so not a held-out figure."""
    folder = Path(tempfile.mkdtemp(prefix=f"accept-{task}."))
    recon = [sys.executable, "-m", "recon.cli.app"]
    kind = "pix3d" if task == "voxel" else "parts"
    clock = time.perf_counter()
    subprocess.run(
        [
            *recon,
            "synth",
            kind,
            "-o",
            str(folder / "data"),
            "--count",
            str(models),
            "--views",
            str(views),
            "--seed",
            str(seed),
            "-q",
        ],
        check=True,
    )
    synth_s = time.perf_counter() - clock
    clock = time.perf_counter()
    subprocess.run(
        [
            *recon,
            "train",
            task,
            "--data",
            str(folder / "data"),
            "--epochs",
            "200",
            "--lr",
            "1e-3",
            "--batch-size",
            "16",
            "--set",
            f"size={size}",
            "--max-time",
            str(minutes),
            "-o",
            str(folder / "run"),
            "--device",
            "cpu",
            "-q",
            "--seed",
            str(seed),
        ],
        check=True,
    )
    train_s = time.perf_counter() - clock
    with (folder / "run" / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val/iou")]
    best = max(rows, key=lambda r: float(r["val/iou"]))
    last = rows[-1]
    return {
        f"accept.{task}.images": len(list((folder / "data").rglob("*.png"))),
        f"accept.{task}.size_px": size,
        f"accept.{task}.synth_s": synth_s,
        f"accept.{task}.train_s": train_s,
        f"accept.{task}.epochs": len(rows),
        f"accept.{task}.val_iou@0.5": float(last["val/iou"]),
        f"accept.{task}.val_dice@0.5": float(last["val/dice"]),
        f"accept.{task}.mean_shape_iou@0.5": float(last["val/iou_mean_shape"]),
        f"accept.{task}.best_epoch_chosen_on_val": int(best["epoch"]),
        f"accept.{task}.best_val_iou@0.5_chosen_on_val": float(best["val/iou"]),
        f"accept.{task}.run": str(folder / "run"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["speed", "accept"])
    parser.add_argument("task", nargs="?", choices=["voxel", "parts"], default="voxel")
    parser.add_argument("--minutes", type=positive_float, default=15.0)
    parser.add_argument("--models", type=positive_int, default=20, help="models (parts) per class")
    parser.add_argument("--views", type=positive_int, default=6)
    parser.add_argument(
        "--size", type=positive_int, default=64, help="input side for the accept run"
    )
    parser.add_argument(
        "--files", type=positive_int, default=1000, help="convert-mat benchmark files"
    )
    parser.add_argument("--device", type=device, default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=count_int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "speed":
        results = {"torch_threads": torch.get_num_threads()}
        results.update(training_images_per_s(args.device, "32"))
        if args.device.startswith("cuda"):
            results.update(training_images_per_s(args.device, "bf16"))
        results.update(voxelisation_speed())
        results.update(convert_mat_rate(args.files))
    else:
        results = accept(args.task, args.minutes, args.models, args.views, args.size, args.seed)
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
