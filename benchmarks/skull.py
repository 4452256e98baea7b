"""Skull -> face acceptance run: train on procedural heads, score held-out heads (another seed).

    python benchmarks/skull.py [--train DIR] [--test DIR] [--subjects 320] [--test-subjects 60]
                               [--minutes 20] [--epochs 40] [--threads 2] [--out RUN] [--json]

Missing sets are made with `synth_skull_dataset` (seed 0 for training, seed 1 held out; lateral
radiographs, 64^3, 3.75 mm voxels). Training runs on the CPU for at most --minutes. Prints one
table: the model, the training set's mean shape per head, and the TRUE skull covered with the
table-mean tissue depths (what one builds from the real skull and a depth table), each with
IoU@0.5 per head, the face's mean and 95th-percentile symmetric surface distance (mm), the share
of the true face within +-2.5 mm, the mean soft-tissue depth error at the landmarks (mm; the
depth measured on the predicted grids against the same measurement on the true grids), and how
far the true grids' measured depths lie from the depths the heads were built with. The last row
scores the true grids against themselves (a check: zero error).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

COLUMNS = (
    ("skull_iou", "skull IoU"),
    ("face_iou", "face IoU"),
    ("face_mean", "face mean mm"),
    ("face_p95", "face p95 mm"),
    ("face_within", "face within 2.5 mm"),
    ("depth_error", "depth error mm"),
    ("true_depth_vs_table", "true vs table mm"),
)


def ensure_set(folder: Path, subjects: int, seed: int) -> Path:
    from recon.pipelines.skull.synth import synth_skull_dataset

    if not (folder / "dataset.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        clock = time.perf_counter()
        synth_skull_dataset(folder, subjects, seed)
        print(f"synth {folder}: {subjects} heads in {time.perf_counter() - clock:.0f} s",
              file=sys.stderr)  # fmt: skip
    return folder


def truth_check(test: Path) -> dict:
    """The true grids scored against themselves (every error zero: a check of the scoring)."""
    from recon.pipelines.skull.data import list_pairs, load_grids, read_voxel_mm
    from recon.pipelines.skull.score import score_subject, summarise

    voxel_mm = read_voxel_mm(test)
    subjects = json.loads((test / "truth.json").read_text())["subjects"]
    rows = []
    for pair in list_pairs(test):
        grids = load_grids(pair.voxels)
        probability = {k: v.astype("float32") for k, v in grids.items()}
        rows.append(score_subject(probability, grids, voxel_mm, subjects[pair.name]["landmarks"]))
    return summarise(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=Path("runs/skull_bench/train"))
    parser.add_argument("--test", type=Path, default=Path("runs/skull_bench/test"))
    parser.add_argument("--subjects", type=int, default=320)
    parser.add_argument("--test-subjects", type=int, default=60)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/skull_bench/run"))
    parser.add_argument("--checkpoint", type=Path, help="Score this checkpoint; no training.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import torch

    from recon.pipelines.common.engine import RunOptions, fit
    from recon.pipelines.skull.data import list_pairs, load_grids
    from recon.pipelines.skull.score import score_folder
    from recon.pipelines.skull.task import TASK, SkullConfig

    torch.set_num_threads(args.threads)
    train = ensure_set(args.train, args.subjects, 0)
    test = ensure_set(args.test, args.test_subjects, 1)
    result: dict = {"train_subjects": len(list_pairs(train)), "threads": args.threads}
    checkpoint = args.checkpoint
    if checkpoint is None:
        cfg = SkullConfig(
            data=str(train),
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            val_fraction=0.1,
        )
        run = RunOptions(
            out=args.out, device="cpu", quiet=True, overwrite=True, max_time=str(args.minutes)
        )
        fit_result = fit(TASK, cfg, run)
        checkpoint = Path(fit_result["best_checkpoint"] or fit_result["last_checkpoint"])
        result.update(
            train_seconds=round(fit_result["seconds"], 1), epochs=fit_result["epochs_run"]
        )
    else:
        record = checkpoint.resolve().parent.parent / "run.json"
        if record.is_file():  # the run that wrote the checkpoint
            fitted = json.loads(record.read_text())["metrics"]
            result.update(train_seconds=round(fitted["seconds"], 1), epochs=fitted["epochs_run"])
    grids = [load_grids(p.voxels) for p in list_pairs(train)]
    mean_shape = {h: np.mean([g[h] for g in grids], axis=0) for h in ("skull", "face")}
    clock = time.perf_counter()
    scores = score_folder(checkpoint, test, mean_shape)
    scores["true grids (check)"] = truth_check(test)
    result.update(checkpoint=str(checkpoint), score_seconds=round(time.perf_counter() - clock, 1))
    result["scores"] = {k: v for k, v in scores.items() if isinstance(v, dict)}
    result.update(test_subjects=scores["subjects"], voxel_mm=scores["voxel_mm"])
    if args.json:
        print(json.dumps(result, indent=2))
        return
    names = {
        "model": "image-only model",
        "mean_shape": "mean shape (train)",
        "mean_depth": "true skull + mean depths",
    }
    print(f"held-out heads: {result['test_subjects']}, voxel {result['voxel_mm']} mm, "
          f"training heads: {result['train_subjects']}, "
          f"training {result.get('train_seconds', '-')} s / {result.get('epochs', '-')} epochs "
          f"on {args.threads} CPU threads")  # fmt: skip
    header = f"{'':28s}" + "".join(f"{title:>20s}" for _, title in COLUMNS)
    print(header)
    for key, row in result["scores"].items():
        cells = "".join(f"{row.get(column, float('nan')):>20.3f}" for column, _ in COLUMNS)
        print(f"{names.get(key, key):28s}{cells}")


if __name__ == "__main__":
    main()
