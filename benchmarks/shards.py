"""Batch jobs: one run of a `recon synth` command against the same set made by 3 shards one after
the other, then a `--skip-done` rerun after one output is deleted and one with nothing left to
do, all measured in the same run.

Each command runs as its own process (`recon ... -q`, OMP_NUM_THREADS=1), one at a time, timed
from start to exit (start-up included, as a job scheduler sees it). "same files" compares the
relative paths the whole run and the shards wrote (without the run records, which differ by
design); the tests (tests/test_batch_occupancy.py, tests/test_batch_more.py,
tests/test_drr_batch.py) compare their contents.

    .venv/bin/python benchmarks/shards.py [--only pix3d,corset,pairs,xray,skull] [--shards 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _args import positive_int

# name -> (the command's arguments after `recon`, a glob of one output a --skip-done rerun remakes)
COMMANDS = {
    "pix3d": (["synth", "pix3d", "-n", "4", "--views", "4"], "model/*/*/voxel.mat"),
    "corset": (["synth", "corset", "-n", "9", "--size", "128"], "p*/corset.stl"),
    "pairs": (["synth", "pairs", "-n", "16", "--size", "128", "--device", "cpu"], "xray/*.png"),
    "xray": (["synth", "xray", "-n", "9", "--size", "128"], "xray_*.dcm"),
    "skull": (["synth", "skull", "-n", "9", "--resolution", "32"], "skull_*_vox.npz"),
}
RECORDS = ("run.json", "run.shard-")  # a run's own record: not part of the set


def recon_executable() -> str:
    """The `recon` beside this Python (the project's environment)."""
    path = Path(sys.executable).with_name("recon")
    if not path.exists():
        sys.exit(f"error: no recon beside {sys.executable}; run it with the project's Python")
    return str(path)


def timed(command: list[str]) -> float:
    """Seconds one command takes; exits with its stderr when it fails."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    clock = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - clock
    if done.returncode:
        sys.exit(f"error: {' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return seconds


def set_files(folder: Path) -> set[str]:
    """Relative paths of the files a set holds, without the runs' records."""
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(RECORDS)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(COMMANDS), help="e.g. pix3d,corset")
    parser.add_argument("--shards", type=positive_int, default=3)
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(COMMANDS))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(COMMANDS)})")
    recon = recon_executable()
    n = args.shards
    print(f"one process at a time, OMP_NUM_THREADS=1, seconds from start to exit; {n} shards")
    print(
        f"{'command':<44} {'one run':>8} {'shards':>22} {'sum':>6} {'redo 1':>7} {'none':>6} same"
    )
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            command, victim = COMMANDS[name]
            whole, sharded = Path(scratch, name, "whole"), Path(scratch, name, "shards")
            whole.parent.mkdir()
            one = timed([recon, *command, "-o", str(whole), "-q"])
            parts = [
                timed([recon, *command, "-o", str(sharded), "--shard", f"{k}/{n}", "-q"])
                for k in range(1, n + 1)
            ]
            same = set_files(whole) == set_files(sharded)
            removed = sorted(whole.glob(victim))[0]
            removed.unlink()
            redo = timed([recon, *command, "-o", str(whole), "--skip-done", "-q"])
            if not removed.exists():
                sys.exit(f"error: the --skip-done rerun did not remake {removed}")
            none = timed([recon, *command, "-o", str(whole), "--skip-done", "-q"])
            shown = " + ".join(f"{s:.1f}" for s in parts)
            print(
                f"{' '.join(command):<44} {one:>8.1f} {shown:>22} {sum(parts):>6.1f} "
                f"{redo:>7.1f} {none:>6.1f} {'yes' if same else 'NO'}"
            )


if __name__ == "__main__":
    main()
