"""Capture range of `recon register`: success (final mTRE < 1 mm) against the distance of the
true pose from the start.

Synthetic X-rays of the bundled chest CT (`recon synth xray` rendering and degradation, 128 px)
are made at true poses offset from the nominal AP pose (0, 0, 0 deg; 0, 850, 0 mm) by a random
direction in the six ZXY Euler/translation parameters, with a rotation magnitude and a
translation magnitude drawn in each bin (bin k of --bins covers k/B..(k+1)/B of --max-rot deg
and --max-xyz mm), --per-bin X-rays per bin and detector convention (--conventions L = Patient
Orientation L\\F, R = R\\F; read from the DICOM header as `recon register` reads it). Each X-ray
is registered from two starts: `fixed`, the nominal pose (what `--init fixed` gives), and
`model`, the prediction of a `recon train pose` checkpoint (--model; skipped without one).
Prints per bin the median start mTRE and the success rate of each start, and draws the rates in
capture_range.png (matplotlib when installed, else PIL). --plateau-threshold sets the
registration's (as `recon register --plateau-threshold`); --compare-threshold T also registers
each X-ray from the fixed start at T, alternating with the first, and prints both thresholds'
success, median final mTRE and median time, and their time ratio, all from this one run.

    .venv/bin/python benchmarks/capture_range.py --per-bin 1 --bins 2 --conventions L --heights 32
    .venv/bin/python benchmarks/capture_range.py --per-bin 8 --device cuda --model best.ckpt
    .venv/bin/python benchmarks/capture_range.py --conventions L --compare-threshold 1e-5
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from _args import device, positive_float, positive_int, positive_ints


def offset_poses(bin_index: int, count: int, args, generator: torch.Generator) -> torch.Tensor:
    """True poses (count, 4, 4) whose rotation and translation offsets from the nominal pose
    have magnitudes drawn uniformly within bin `bin_index`, in random directions."""
    from recon.pipelines.xray.pose import pose_from_euler

    low, high = bin_index / args.bins, (bin_index + 1) / args.bins
    poses = []
    for _ in range(count):
        fraction = low + (high - low) * torch.rand(2, generator=generator)
        rot_dir = torch.nn.functional.normalize(torch.randn(3, generator=generator), dim=0)
        xyz_dir = torch.nn.functional.normalize(torch.randn(3, generator=generator), dim=0)
        rot = torch.deg2rad(rot_dir * fraction[0] * args.max_rot)
        xyz = torch.tensor([0.0, 850.0, 0.0]) + xyz_dir * fraction[1] * args.max_xyz
        poses.append(pose_from_euler(rot[None], xyz[None]))
    return torch.cat(poses)


def run(args) -> dict:
    from recon.pipelines.common.metrics import mtre
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.registration import RegistrationConfig, register, retain_freed_memory
    from recon.pipelines.xray.synth_xray import SynthXrayConfig, synthesize_xrays
    from recon.pipelines.xray.volume import coarsen, load_ct
    from recon.pipelines.xray.xray import preprocess, read_xray

    if torch.device(args.device).type == "cpu":
        retain_freed_memory()
    heights = args.heights
    config = RegistrationConfig(
        heights=heights,
        iterations=[200, 100, 100][: len(heights)],
        patience=[10] * len(heights),
        threshold=args.plateau_threshold,
    )
    configs = {"fixed": config}
    if args.compare_threshold is not None:
        configs[f"fixed@{args.compare_threshold:g}"] = replace(
            config, threshold=args.compare_threshold
        )
    subject = load_ct()
    coarse = coarsen(subject, config.ct_spacing_mm)
    predictor = None
    if args.model is not None:
        from recon.pipelines.xray.pose_task import PosePredictor

        predictor = PosePredictor.load(args.model, "auto", args.device, border=4)
    nominal = pose_from_degrees([0, 0, 0], [0, 850, 0])
    generator = torch.Generator().manual_seed(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="recon-capture-") as temporary:
        folder = Path(temporary)  # the X-rays of every bin, removed at the end
        for convention in args.conventions:
            for bin_index in range(args.bins):
                truths = offset_poses(bin_index, args.per_bin, args, generator)
                where = folder / f"{convention}{bin_index}"
                where.mkdir()
                synth = synthesize_xrays(
                    where,
                    SynthXrayConfig(count=len(truths), reverse_x_axis=convention == "L"),
                    seed=args.seed + bin_index,
                    device=args.device,
                    poses=truths,
                    subject=subject,
                )
                fiducials = synth["fiducials"]
                for path, truth in zip(synth["files"], truths, strict=True):
                    xray = read_xray(path)
                    image, intrinsics = preprocess(xray, crop=8)
                    starts = {name: (nominal, cfg) for name, cfg in configs.items()}
                    if predictor is not None:
                        starts["model"] = (predictor(xray), config)
                    for init, (start, cfg) in starts.items():
                        clock = time.perf_counter()
                        result = register(coarse, image, intrinsics, start, cfg, args.device)
                        final = float(mtre(result.final_pose, truth[None], fiducials)[0])
                        rows.append(
                            {
                                "convention": convention,
                                "bin": bin_index,
                                "init": init,
                                "start_mtre_mm": float(mtre(start, truth[None], fiducials)[0]),
                                "final_mtre_mm": final if math.isfinite(final) else None,
                                "success": math.isfinite(final) and final < 1.0,
                                "seconds": time.perf_counter() - clock,
                            }
                        )
                        print(
                            f"{convention}\\F bin {bin_index} {init:>5}: start "
                            f"{rows[-1]['start_mtre_mm']:6.1f} mm -> {final:7.2f} mm "
                            f"in {rows[-1]['seconds']:.1f} s",
                            flush=True,
                        )
    return {"rows": rows, "config": vars(args) | {"model": str(args.model)}}


def compare_thresholds(rows: list[dict], args) -> None:
    """Both plateau thresholds over the same X-rays of this run: success, median final mTRE,
    median seconds, and the time ratio."""
    sides = {}
    for init, threshold in (
        ("fixed", args.plateau_threshold),
        (f"fixed@{args.compare_threshold:g}", args.compare_threshold),
    ):
        chosen = [r for r in rows if r["init"] == init]
        finals = [r["final_mtre_mm"] for r in chosen if r["final_mtre_mm"] is not None]
        sides[threshold] = statistics.median(r["seconds"] for r in chosen)
        print(
            f"plateau threshold {threshold:g}: {sum(r['success'] for r in chosen)}/{len(chosen)} "
            f"below 1 mm, median final mTRE {statistics.median(finals):.2f} mm, median "
            f"{sides[threshold]:.1f} s per registration",
            flush=True,
        )
    ratio = sides[args.compare_threshold] / sides[args.plateau_threshold]
    print(f"time ratio {args.compare_threshold:g} / {args.plateau_threshold:g}: x{ratio:.2f}")


def summarise(rows: list[dict], args) -> list[dict]:
    """Per bin and start: counts, success rate, median start mTRE."""
    table = []
    for bin_index in range(args.bins):
        entry = {
            "bin": bin_index,
            "rot_deg": [
                args.max_rot * bin_index / args.bins,
                args.max_rot * (bin_index + 1) / args.bins,
            ],
            "xyz_mm": [
                args.max_xyz * bin_index / args.bins,
                args.max_xyz * (bin_index + 1) / args.bins,
            ],
        }
        for init in ("fixed", "model"):
            chosen = [r for r in rows if r["bin"] == bin_index and r["init"] == init]
            if chosen:
                entry[init] = {
                    "count": len(chosen),
                    "success_rate": sum(r["success"] for r in chosen) / len(chosen),
                    "median_start_mtre_mm": statistics.median(r["start_mtre_mm"] for r in chosen),
                    "median_seconds": statistics.median(r["seconds"] for r in chosen),
                }
        table.append(entry)
    return table


def plot(table: list[dict], path: Path) -> str:
    """Success rate per bin for each start; returns the library used."""
    labels = [f"{e['rot_deg'][1]:g} deg\n{e['xyz_mm'][1]:g} mm" for e in table]
    series = {
        init: [e[init]["success_rate"] if init in e else math.nan for e in table]
        for init in ("fixed", "model")
        if any(init in e for e in table)
    }
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_pil(labels, series, path)
    figure, axes = plt.subplots(figsize=(6, 4))
    for init, rates in series.items():
        axes.plot(range(len(rates)), [100 * r for r in rates], marker="o", label=f"--init {init}")
    axes.set_xticks(range(len(labels)), labels)
    axes.set_xlabel("offset of the true pose from the start (bin upper edge)")
    axes.set_ylabel("success (final mTRE < 1 mm), %")
    axes.set_ylim(-5, 105)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return "matplotlib"


def _plot_pil(labels: list[str], series: dict, path: Path) -> str:
    from PIL import Image, ImageDraw

    width, height, margin = 640, 400, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([margin, 20, width - 20, height - margin], outline="black")
    colours = {"fixed": (200, 40, 40), "model": (40, 80, 200)}
    step = (width - margin - 40) / max(1, len(labels) - 1)
    for init, rates in series.items():
        points = [
            (margin + 10 + i * step, height - margin - r * (height - margin - 30))
            for i, r in enumerate(rates)
            if not math.isnan(r)
        ]
        draw.line(points, fill=colours[init], width=2)
        draw.text((width - 140, 30 + 15 * list(series).index(init)), init, fill=colours[init])
    for i, label in enumerate(labels):
        draw.text((margin + i * step, height - margin + 5), label, fill="black")
    image.save(path)
    return "PIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-bin", "--count", type=positive_int, default=8, help="X-rays per bin")
    parser.add_argument("--bins", type=positive_int, default=6)
    parser.add_argument("--max-rot", type=positive_float, default=30.0, help="deg")
    parser.add_argument("--max-xyz", type=positive_float, default=60.0, help="mm")
    parser.add_argument("--conventions", default="L,R", help="L, R or L,R")
    parser.add_argument(
        "--heights", type=positive_ints, default=[64, 128], help="registration stages, px (1-3)"
    )
    parser.add_argument(
        "--plateau-threshold", type=float, default=1e-4, help="as recon register's (default 1e-4)"
    )
    parser.add_argument(
        "--compare-threshold",
        type=float,
        help="also register each X-ray from the fixed start with this plateau threshold, "
        "alternating with the first, and print both sides' success, median mTRE and time",
    )
    parser.add_argument("--model", type=Path, help="`recon train pose` checkpoint (--init model)")
    parser.add_argument("--device", type=device, default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("capture_range.png"))
    args = parser.parse_args()
    args.conventions = [c.strip().upper() for c in args.conventions.split(",") if c.strip()]
    if not args.conventions or any(c not in ("L", "R") for c in args.conventions):
        parser.error("--conventions takes L, R or L,R")
    if len(args.heights) > 3:
        parser.error("--heights takes 1 to 3 stages, e.g. 64,128")
    torch.set_num_threads(args.threads)
    result = run(args)
    table = summarise(result["rows"], args)
    print(f"{'bin':>3} {'rot deg':>9} {'xyz mm':>9} {'fixed':>14} {'model':>14}")
    for entry in table:
        cells = []
        for init in ("fixed", "model"):
            if init in entry:
                e = entry[init]
                cells.append(
                    f"{100 * e['success_rate']:4.0f}% ({e['median_start_mtre_mm']:4.0f} mm)"
                )
            else:
                cells.append(f"{'-':>14}")
        rot, xyz = entry["rot_deg"], entry["xyz_mm"]
        print(
            f"{entry['bin']:>3} {rot[0]:4g}-{rot[1]:<4g} {xyz[0]:4g}-{xyz[1]:<4g} "
            f"{cells[0]:>14} {cells[1]:>14}"
        )
    if args.compare_threshold is not None:
        compare_thresholds(result["rows"], args)
    library = plot(table, args.out)
    print(f"success = final mTRE < 1 mm; (median start mTRE); plot {args.out} ({library})")
    print(json.dumps({"table": table, "rows": result["rows"]}, default=str))


if __name__ == "__main__":
    main()
