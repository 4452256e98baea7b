"""One frame of a long multi-frame X-ray run: recon's reader (which decodes the frame asked for)
against pydicom's `pixel_array` (every frame, then one taken), measured in the same run.

An XA run of --frames frames of --size x --size px, 12 bits stored, RLE Lossless (written with
pydicom here; each frame a smooth field with noise, as a fluoroscopy frame compresses). Each
side reads it in a process of its own (the peak resident memory of a process only grows): the
table gives the seconds and the process's peak memory (libraries included), and whether the
two reads give the same frame (recon's is the stored values turned within their range so that
dense is bright: the run's LOG values rise with the beam).

    .venv/bin/python benchmarks/dicom_frames.py [--frames 120] [--size 1024] [--frame 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _args import positive_int
from _child import child_result
from _memory import peak_gb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SIDES = ("pydicom", "recon")


def read(side: str, path: str, frame: int, out: str) -> None:
    """Frame `frame` (1-based) on `side`; saves it to out, prints {"seconds", "peak_gb"}."""
    import numpy as np
    import pydicom
    import pydicom.pixels  # noqa: F401 - both sides' imports before the clock

    if side == "pydicom":
        clock = time.perf_counter()
        pixels = pydicom.dcmread(path).pixel_array[frame - 1]
    else:
        from recon.pipelines.common.dicom import read_dicom_image

        clock = time.perf_counter()
        pixels = read_dicom_image(Path(path), frame=frame).pixels
    seconds = time.perf_counter() - clock
    np.save(out, pixels)
    print(json.dumps({"seconds": seconds, "peak_gb": peak_gb()}))


def write_run(path: Path, frames: int, size: int) -> None:
    """The XA run: frames smooth 12-bit fields with noise, RLE Lossless."""
    import numpy as np
    import pydicom
    from dicom_files import compress, film_tags, write_dx
    from pydicom.uid import RLELossless
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    field = gaussian_filter(rng.normal(size=(size, size)), size / 16)
    field = (field - field.min()) / np.ptp(field)
    stacked = np.empty((frames * size, size), dtype=np.uint16)
    for k in range(frames):
        shifted = np.roll(field, k * size // (4 * frames), axis=1)
        noisy = 3000 * shifted + 500 + rng.normal(0, 20, field.shape)
        stacked[k * size : (k + 1) * size] = np.clip(np.round(noisy), 0, 4095)
    tags = {**film_tags(0.3), "Modality": "XA", "PixelIntensityRelationship": "LOG"}
    write_dx(path, stacked[:size], **tags)  # one frame's tags; Rows holds at most 65535
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = str(frames)
    ds.PixelData = stacked.tobytes()
    ds.save_as(path, enforce_file_format=True)
    compress(path, RLELossless)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=positive_int, default=120)
    parser.add_argument("--size", type=positive_int, default=1024)
    parser.add_argument("--frame", type=positive_int, default=60)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        read(args.side, args.path, args.frame, args.out)
        return
    if args.frame > args.frames:
        parser.error(f"--frame {args.frame} is not one of {args.frames} frames")

    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "run.dcm"
        clock = time.perf_counter()
        write_run(path, args.frames, args.size)
        print(
            f"{args.frames} frames of {args.size} x {args.size} px, RLE, "
            f"{path.stat().st_size / 2**20:.0f} MB (written in {time.perf_counter() - clock:.0f} s)"
            f"; frame {args.frame}, a process each"
        )
        rows, frames = {}, {}
        for side in SIDES:
            out = str(Path(scratch) / f"{side}.npy")
            command = [sys.executable, __file__, "--side", side, "--path", str(path)]
            command += ["--frame", str(args.frame), "--out", out]
            rows[side] = child_result(command)
            frames[side] = np.load(out).astype(np.float64)
    stored = frames["pydicom"]
    same = bool(np.array_equal(frames["recon"], stored.max() + stored.min() - stored))
    for side in SIDES:
        print(f"{side}: {rows[side]['seconds']:.2f} s, {rows[side]['peak_gb']:.2f} GB peak")
    print(
        f"pydicom / recon: time {rows['pydicom']['seconds'] / rows['recon']['seconds']:.1f}, "
        f"memory {rows['pydicom']['peak_gb'] / rows['recon']['peak_gb']:.1f}; same frame {same}"
    )


if __name__ == "__main__":
    main()
