"""embed-spine on large films: traced on block means (what measure_spine does above TRACE_ROWS
rows) against pixel by pixel, measured in the same run.

`recon synth corset`'s spine X-ray drawn at 3000 x 2400 px (Cobb 0-50 deg, either side). Each
film is measured in a process of its own on each side (the peak resident memory of a process
only grows): the table gives the seconds, the process's peak memory (the film and the libraries
loaded, about 0.1 GB, included: what a machine must have) and the Cobb error of each side, then
the ratios pixel / block.

    .venv/bin/python benchmarks/spine_large.py [--films 10] [--rows 3000]
"""

from __future__ import annotations

import argparse
import json
import sys

from _args import positive_int
from _child import child_result
from _memory import peak_gb

SIDES = ("block", "pixel")


def measure(side: str, film: str, spacing: float) -> None:
    """One film on `side`; prints {"cobb", "seconds", "peak_gb"}."""
    import time

    import numpy as np

    from recon.pipelines.corset import spine

    image = np.load(film)
    if side == "pixel":
        spine.TRACE_ROWS = image.shape[0]  # no block means
    clock = time.perf_counter()
    result = spine.measure_spine(image, (spacing, spacing))
    seconds = time.perf_counter() - clock
    print(json.dumps({"cobb": result.cobb_deg, "seconds": seconds, "peak_gb": peak_gb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=positive_int, default=10)
    parser.add_argument("--rows", type=positive_int, default=3000)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--film", help=argparse.SUPPRESS)
    parser.add_argument("--spacing", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        measure(args.side, args.film, args.spacing)
        return

    import tempfile
    from pathlib import Path

    import numpy as np

    from recon.pipelines.common.metrics import cobb_error
    from recon.pipelines.corset.spine_xray import synth_spine_xray

    rng = np.random.default_rng(321)
    results = {side: [] for side in SIDES}
    print(
        f"{args.films} synthetic films of {args.rows} x {round(args.rows * 0.8)} px, a process each"
    )
    print(
        f"{'film':>4} {'Cobb':>6} " + " ".join(f"{s + ' s':>8} {'GB':>5} {'err':>5}" for s in SIDES)
    )
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.films):
            cobb = 50.0 * i / max(args.films - 1, 1) * rng.choice([-1, 1])
            xray = synth_spine_xray(
                cobb, rng.uniform(420, 560), rng.uniform(250, 360), args.rows, seed=i
            )
            film = str(Path(scratch) / "film.npy")
            np.save(film, (xray.image / 65535.0).astype(np.float32))
            cells = []
            for side in SIDES:
                command = [sys.executable, __file__, "--side", side, "--film", film]
                command += ["--spacing", repr(xray.spacing_mm)]
                row = child_result(command)
                row["error"] = cobb_error(row["cobb"], xray.cobb_deg)
                results[side].append(row)
                cells.append(f"{row['seconds']:>8.2f} {row['peak_gb']:>5.2f} {row['error']:>5.2f}")
            print(f"{i:>4} {xray.cobb_deg:>6.1f} " + " ".join(cells), flush=True)
    mean = {
        s: {k: float(np.mean([r[k] for r in results[s]])) for k in ("seconds", "error")}
        for s in SIDES
    }
    peak = {s: max(r["peak_gb"] for r in results[s]) for s in SIDES}
    for side in SIDES:
        print(
            f"{side}: {mean[side]['seconds']:.2f} s a film, at most {peak[side]:.2f} GB peak, "
            f"Cobb MAE {mean[side]['error']:.2f} deg"
        )
    print(
        f"pixel / block: time {mean['pixel']['seconds'] / mean['block']['seconds']:.1f}, "
        f"memory {peak['pixel'] / peak['block']:.1f}"
    )


if __name__ == "__main__":
    main()
