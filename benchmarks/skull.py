"""Skull -> face acceptance run: train on procedural heads, score held-out heads (another seed).

    python benchmarks/skull.py [--train DIR] [--test DIR] [--subjects 320] [--test-subjects 60]
                               [--minutes 20] [--epochs 40] [--threads 2] [--out RUN] [--json]

Missing sets are made with `synth_skull_dataset` (seed 0 for training, seed 1 held out; lateral
radiographs, 64^3, 3.75 mm voxels). Training runs on the CPU for at most --minutes. Prints one
table: the model, the training set's mean shape per head, and the TRUE skull covered with the
table-mean tissue depths (what one builds from the real skull and a depth table), each with
IoU@0.5 per head, the face's mean and 95th-percentile symmetric surface distance (mm), the share
of the true face within +-2.5 mm, the share of heads whose predicted face has no surface (left
out of the distances), the mean soft-tissue depth error at the landmarks (mm; the
depth measured on the predicted grids against the same measurement on the true grids), and how
far the true grids' measured depths lie from the depths the heads were built with. The last row
scores the true grids against themselves (a check: zero error). A held-out set that shares a
head with the training set (the same grids) stops the run.
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
    ("face_missing", "no face surface"),
    ("depth_error", "depth error mm"),
    ("true_depth_vs_table", "true vs table mm"),
)


def ensure_set(folder: Path, subjects: int, seed: int) -> Path:
    """folder, with `subjects` heads of seed made in it when it has no dataset.json; a set
    already there is used as it is (its size is said on stderr when it differs)."""
    from recon.pipelines.skull.data import list_pairs
    from recon.pipelines.skull.synth import synth_skull_dataset

    if not (folder / "dataset.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        clock = time.perf_counter()
        synth_skull_dataset(folder, subjects, seed)
        print(f"synth {folder}: {subjects} heads in {time.perf_counter() - clock:.0f} s",
              file=sys.stderr)  # fmt: skip
    elif len(list_pairs(folder)) != subjects:
        print(f"{folder}: using the {len(list_pairs(folder))} heads there, not {subjects}",
              file=sys.stderr)  # fmt: skip
    return folder


def grids_digest(grids: dict) -> str:
    """SHA-256 of a head's skull and face grids (shape and occupancy)."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for head in ("skull", "face"):
        digest.update(repr(grids[head].shape).encode())
        digest.update(np.packbits(grids[head]).tobytes())
    return digest.hexdigest()


def shared_heads(train_grids: list[dict], test: Path) -> list[str]:
    """The pairs of the held-out set test whose grids equal a training head's: the same head
    on both sides (one folder given twice, or two sets of one seed)."""
    from recon.pipelines.skull.data import list_pairs, load_grids

    seen = {grids_digest(grids) for grids in train_grids}
    return [p.name for p in list_pairs(test) if grids_digest(load_grids(p.voxels)) in seen]


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
    grids = [load_grids(p.voxels) for p in list_pairs(train)]
    shared = shared_heads(grids, test)
    if shared:
        print(f"error: {test}: {len(shared)} of its heads are also training heads in {train} "
              f"({shared[0]}, ...); score heads the model never saw", file=sys.stderr)  # fmt: skip
        sys.exit(2)
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
