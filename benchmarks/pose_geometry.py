"""Pose-model starts on X-rays of another detector: reprojection against the plain stretch.

Run: uv run python benchmarks/pose_geometry.py [--poses 16] [--seed 7]   (prints figures)

Trains the suite's small pose model (8 epochs of 256 poses at 32 px, 8 mm CT, bundled chest CT;
about a minute on 2 cores) into a temporary folder, then renders DRRs (siddon, 4 mm CT) of
random poses within 15 deg / 30 mm of the nominal AP view on three detectors: the training
one at 64 px, a 900 mm / 360 mm one, and a 1200 mm / 300 x 240 mm one with the columns
mirrored and the principal point off centre. For each it prints the median start mTRE (the
bundled CT's vertebra centroids) of `register --init model`'s reprojection onto the training
detector and, measured in the same run on the same films, of the plain stretch of the film to
the training size (mirrored where the columns run the other way) that it replaced, with the
nominal pose's for reference.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def train(run: Path) -> Path:
    recon = str(Path(sys.executable).parent / "recon")
    args = [recon, "train", "pose", "--epochs", "8", "--batch-size", "16", "--lr", "1e-3",
            "--set", "samples_per_epoch=256", "--set", "val_samples=32", "--set", "size=32",
            "--set", "ct_spacing_mm=8", "--set", "n_points=32", "--out", str(run),
            "--device", "cpu", "-q", "--seed", "0"]  # fmt: skip
    subprocess.run(args, check=True)
    return run / "checkpoints" / "best.ckpt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    import torch

    from recon.pipelines.common.metrics import mtre
    from recon.pipelines.xray.drr import Intrinsics, make_renderer, render_with
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.pose_task import (
        PosePredictor,
        offsets_to_poses,
        standardise_batch,
        training_detector,
    )
    from recon.pipelines.xray.registration import resize_image
    from recon.pipelines.xray.volume import fiducial_tensor, load_ct, vertebra_centroids
    from recon.pipelines.xray.xray import Xray, preprocess

    with tempfile.TemporaryDirectory() as folder:
        predictor = PosePredictor.load(train(Path(folder) / "run"), "auto", "cpu")

    def stretched(xray: Xray) -> torch.Tensor:
        """The start before reprojection: the whole film resized to the training size."""
        image, _ = preprocess(xray, 0, "auto")
        if xray.intrinsics.reverse_x_axis != bool(predictor.config.get("reverse_x_axis", False)):
            image = image.flip(-1)
        size = int(predictor.config["size"])
        with torch.no_grad():
            offsets = predictor.model(standardise_batch(resize_image(image, size, size)))
        return offsets_to_poses(offsets.float(), predictor.config)

    subject = load_ct(None, None, "AP", 4.0)
    fiducials = fiducial_tensor(vertebra_centroids(subject))
    rng = np.random.default_rng(args.seed)
    nominal = pose_from_degrees([0, 0, 0], [0, 850, 0])
    poses = [
        pose_from_degrees(rng.uniform(-15, 15, 3), np.r_[0, 850, 0] + rng.uniform(-30, 30, 3))
        for _ in range(args.poses)
    ]
    detectors = {
        "training detector, 64 px": training_detector(predictor.config).resized(64),
        "900 mm, 360 mm field": Intrinsics(900.0, 72, 72, 5.0, 5.0),
        "1200 mm, 300 x 240 mm, mirrored, principal point (12, -6) mm": Intrinsics(
            1200.0, 80, 100, 3.0, 3.0, x0=12.0, y0=-6.0, reverse_x_axis=True
        ),
    }
    for name, detector in detectors.items():
        drr = make_renderer(subject, detector, "siddon")
        ours, before, start = [], [], []
        for pose in poses:
            image = render_with(drr, pose)
            xray = Xray(Path("drr.png"), image / image.max(), detector, "MONOCHROME2")
            ours.append(float(mtre(predictor(xray), pose, fiducials)[0]))
            before.append(float(mtre(stretched(xray), pose, fiducials)[0]))
            start.append(float(mtre(nominal, pose, fiducials)[0]))
        ratio = np.median(before) / np.median(ours)
        print(
            f"{name}: median start mTRE {np.median(ours):.1f} mm reprojected, "
            f"{np.median(before):.1f} mm stretched (ratio {ratio:.2f}), "
            f"nominal pose {np.median(start):.1f} mm",
            flush=True,
        )


if __name__ == "__main__":
    main()
