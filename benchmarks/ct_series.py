"""Reading a CT DICOM series: recon's series reader against torchio/SimpleITK (which read series
before), the same files in the same run.

Run: uv run python benchmarks/ct_series.py [--repeat 3]   (prints figures; no assertions)
The bundled chest CT (512 x 512 x 133) is written slice by slice by pydicom into a temporary
folder, uncompressed and as JPEG 2000 lossless. Each figure is the median wall time of --repeat
reads (to HU in memory). Target: within 2x SimpleITK's time (recon also reads every header to
check the series, and decodes JPEG 2000 with OpenJPEG through pylibjpeg); the HU volumes agree
exactly.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _args import positive_int

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def timed(read, repeat: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeat):
        clock = time.perf_counter()
        result = read()
        times.append(time.perf_counter() - clock)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=positive_int, default=3)
    args = parser.parse_args()

    import nibabel as nib
    from dicom_files import write_ct_series
    from torchio import ScalarImage

    from recon.pipelines.common.dicom_series import read_ct_series
    from recon.pipelines.xray.volume import example_ct_paths

    image = nib.load(example_ct_paths()[0])
    hu = np.asarray(image.dataobj, dtype=np.float32)
    print(f"CT {hu.shape} at {np.round(image.header.get_zooms(), 3).tolist()} mm")
    print(f"{'slices':<22}{'recon s':>9}{'SimpleITK s':>13}{'ratio':>7}{'same HU':>9}")
    with tempfile.TemporaryDirectory() as work:
        for name, syntax in (
            ("uncompressed", None),
            ("JPEG 2000 lossless", "1.2.840.10008.1.2.4.90"),
        ):
            folder = Path(work) / name.split()[0]
            write_ct_series(folder, hu, image.affine, syntax=syntax)
            ours, (volume, _) = timed(lambda f=folder: read_ct_series(f), args.repeat)
            theirs, other = timed(lambda f=folder: ScalarImage(f).data[0].numpy(), args.repeat)
            # SimpleITK orders the slices as recon does (along the normal): compare directly
            same = volume.shape == other.shape and np.array_equal(volume, other.astype(np.float32))
            print(f"{name:<22}{ours:>9.2f}{theirs:>13.2f}{ours / theirs:>7.2f}{str(same):>9}")


if __name__ == "__main__":
    main()
